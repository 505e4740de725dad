//! What guest drivers share beyond URL parsing: clients for the registries dtm's frameworks use
//! (docs/drivers.md §5), written against [`Host`] — the host's `send-http`, `env` and `local-ipv4`
//! imports — so they can be unit-tested natively with a fake host.
//!
//! A guest gets its [`Host`] from [`wit_host!`], which forwards to its own wit-bindgen imports,
//! and the exports that do nothing from [`no_call_hooks!`], [`no_grpc_hook!`],
//! [`registers_nothing!`] and [`nothing_registered!`].

pub mod consul;
pub mod etcd;
pub mod kratos;
pub mod nacos;
pub mod polaris;

/// An HTTP request the host sends for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("unexpected answer ({e}): {}", self.text()))
    }
}

/// What a driver may ask of the host (the `host` interface of `wit/driver.wit`).
pub trait Host {
    /// Sends a request to an allow-listed registry address.
    fn send(&self, request: Request) -> Result<Response, String>;
    /// One of the few environment variables the host passes on (`POD_IP`, `DAPR_*_PORT`).
    fn env(&self, name: &str) -> Option<String>;
    /// The first non-loopback IPv4 address of an interface that is up.
    fn local_ipv4(&self) -> Option<String>;
}

/// Sends `body` as JSON with `method` to `url`.
pub fn send_json(
    host: &dyn Host,
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: &serde_json::Value,
) -> Result<Response, String> {
    let mut headers = headers;
    headers.push(("content-type".into(), "application/json".into()));
    host.send(Request {
        method,
        url,
        headers,
        body: body.to_string().into_bytes(),
    })
}

/// The answer to a request when it came and its status is 2xx; else an error naming the
/// request as `what` (e.g. `consul PUT /v1/agent/service/register`), with the status and body.
pub fn successful(answer: Result<Response, String>, what: &str) -> Result<Response, String> {
    let answer = answer.map_err(|e| format!("{what}: {e}"))?;
    if !(200..300).contains(&answer.status) {
        return Err(format!(
            "{what}: status {}: {}",
            answer.status,
            answer.text().trim()
        ));
    }
    Ok(answer)
}

/// Percent-encodes a query or form value (RFC 3986 unreserved characters stay as they are).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `key=value&…`, every part percent-encoded.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A registration's state as the host keeps it: `state` as JSON.
pub fn write_state<T: serde::Serialize>(state: &T) -> Result<String, String> {
    serde_json::to_string(state).map_err(|e| e.to_string())
}

/// A registration's state from the JSON [`write_state`] made of it.
pub fn read_state<T: serde::de::DeserializeOwned>(state: &str) -> Result<T, String> {
    serde_json::from_str(state).map_err(|e| format!("bad registration state ({e}): {state}"))
}

/// Addresses without duplicates, sorted: a stable order (Go's resolvers differ, some sort, some
/// shuffle, which the host's round-robin balancing makes moot).
pub fn merged(addresses: impl IntoIterator<Item = String>) -> Vec<String> {
    addresses
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// An endpoint's host for a registry: `0.0.0.0` or nothing becomes `POD_IP`, else the local
/// IPv4 address (go-zero's consul and nacos rule, docs/drivers.md §4.3.2). Returns `(host, port)`.
pub fn listen_address(host: &dyn Host, endpoint: &str) -> Result<(String, u16), String> {
    let (name, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint '{endpoint}' has no port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("endpoint '{endpoint}' has a bad port"))?;
    let name = if name.is_empty() || name == "0.0.0.0" {
        host.env("POD_IP")
            .filter(|ip| !ip.is_empty())
            .or_else(|| host.local_ipv4())
            .unwrap_or_else(|| name.to_owned())
    } else {
        name.to_owned()
    };
    Ok((name, port))
}

/// Defines `WitHost`, a [`Host`] that forwards to the guest's own wit-bindgen imports. Use it
/// after `wit_bindgen::generate!` at the guest's crate root.
// `crate::` must mean the guest's crate, where wit-bindgen put the imports, not regkit.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! wit_host {
    () => {
        /// The host's imports, as `regkit` wants them.
        pub struct WitHost;

        impl $crate::Host for WitHost {
            fn send(&self, request: $crate::Request) -> Result<$crate::Response, String> {
                let answer =
                    crate::dtm::driver::host::send_http(&crate::dtm::driver::types::HttpRequest {
                        method: request.method.into(),
                        url: request.url,
                        headers: request.headers,
                        body: request.body,
                    })?;
                Ok($crate::Response {
                    status: answer.status,
                    headers: answer.headers,
                    body: answer.body,
                })
            }

            fn env(&self, name: &str) -> Option<String> {
                crate::dtm::driver::host::env(name)
            }

            fn local_ipv4(&self) -> Option<String> {
                crate::dtm::driver::host::local_ipv4()
            }
        }
    };
}

/// The empty registration (an empty `state`, never renewed) of a driver that registers nothing,
/// for an empty target or for good: `regkit::nothing_registered!()`, an expression of the
/// guest's `Registration` type.
// `crate::` must mean the guest's crate, where wit-bindgen put the types, not regkit.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! nothing_registered {
    () => {
        crate::dtm::driver::types::Registration {
            state: String::new(),
            keep_alive_ms: 0,
        }
    };
}

/// For a driver that never registers the coordinator: defines `register-service`,
/// `keep-alive` and `deregister` inside `impl Guest for … { regkit::registers_nothing!(); }`.
/// The registration is empty and never renewed; a keep-alive hands the state back unchanged.
#[allow(clippy::crate_in_macro_def)] // `crate::`: the guest's types, as in `nothing_registered!`
#[macro_export]
macro_rules! registers_nothing {
    () => {
        fn register_service(
            _target: String,
            _endpoint: String,
        ) -> Result<crate::dtm::driver::types::Registration, String> {
            Ok($crate::nothing_registered!())
        }

        fn keep_alive(state: String) -> Result<crate::dtm::driver::types::Registration, String> {
            Ok(crate::dtm::driver::types::Registration {
                state,
                keep_alive_ms: 0,
            })
        }

        fn deregister(_state: String) -> Result<(), String> {
            Ok(())
        }
    };
}

/// For a driver without call hooks: defines `activate`, claiming the scheme literals given and
/// neither hook, and `rewrite-http` and `rewrite-grpc` leaving every call as it is (the host
/// never calls them then), inside `impl Guest for … { regkit::no_call_hooks!("etcd"); }`.
#[allow(clippy::crate_in_macro_def)] // `crate::`: the guest's types, as in `nothing_registered!`
#[macro_export]
macro_rules! no_call_hooks {
    ($($scheme:literal),* $(,)?) => {
        fn activate() -> crate::dtm::driver::types::Activation {
            crate::dtm::driver::types::Activation {
                schemes: vec![$(String::from($scheme)),*],
                rewrites_http: false,
                rewrites_grpc: false,
            }
        }

        fn rewrite_http(
            _url: String,
            _registry: String,
        ) -> Result<Option<crate::dtm::driver::types::HttpTarget>, String> {
            Ok(None)
        }

        $crate::no_grpc_hook!();
    };
}

/// For a driver whose activation leaves `rewrites-grpc` unset: defines `rewrite-grpc` leaving
/// every call as it is, inside `impl Guest for … { regkit::no_grpc_hook!(); }`.
#[allow(clippy::crate_in_macro_def)] // `crate::`: the guest's types, as in `nothing_registered!`
#[macro_export]
macro_rules! no_grpc_hook {
    () => {
        fn rewrite_grpc(
            _server: String,
            _method: String,
            _payload: Vec<u8>,
        ) -> Result<Option<crate::dtm::driver::types::GrpcCall>, String> {
            Ok(None)
        }
    };
}

/// A [`Host`] for native unit tests: answers requests from a queue and records them.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    use super::{Host, Request, Response};

    #[derive(Default)]
    pub struct FakeHost {
        pub answers: RefCell<VecDeque<Result<Response, String>>>,
        pub sent: RefCell<Vec<Request>>,
        pub env: HashMap<String, String>,
        pub ipv4: Option<String>,
    }

    impl FakeHost {
        /// Queues a JSON answer with `status`.
        pub fn answer(&self, status: u16, body: serde_json::Value) {
            self.answers.borrow_mut().push_back(Ok(Response {
                status,
                headers: vec![],
                body: body.to_string().into_bytes(),
            }));
        }
    }

    impl Host for FakeHost {
        fn send(&self, request: Request) -> Result<Response, String> {
            self.sent.borrow_mut().push(request);
            self.answers
                .borrow_mut()
                .pop_front()
                .unwrap_or_else(|| Err("no answer queued".into()))
        }

        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).cloned()
        }

        fn local_ipv4(&self) -> Option<String> {
            self.ipv4.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_hosts_become_the_pod_or_local_address() {
        let mut host = fake::FakeHost {
            ipv4: Some("10.0.0.7".into()),
            ..Default::default()
        };
        assert_eq!(
            listen_address(&host, "0.0.0.0:36790").unwrap(),
            ("10.0.0.7".to_owned(), 36790)
        );
        assert_eq!(
            listen_address(&host, "localhost:36790").unwrap(),
            ("localhost".to_owned(), 36790)
        );
        host.env.insert("POD_IP".into(), "10.1.1.1".into());
        assert_eq!(listen_address(&host, ":1").unwrap().0, "10.1.1.1");
        assert!(listen_address(&host, "nohost").is_err());
        assert!(listen_address(&host, "h:x").is_err());
    }

    #[test]
    fn merging_sorts_and_drops_duplicates() {
        let list = ["b:1", "a:1", "b:1"].map(String::from);
        assert_eq!(merged(list), ["a:1", "b:1"]);
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(
            encode_query(&[("serviceName", "DEFAULT_GROUP@@svc"), ("metadata", "{}")]),
            "serviceName=DEFAULT_GROUP%40%40svc&metadata=%7B%7D"
        );
    }
}
