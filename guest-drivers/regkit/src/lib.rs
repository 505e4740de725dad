//! What guest drivers share beyond URL parsing: clients for the registries dtm's frameworks use
//! (drivers.md §5), written against [`Host`] — the host's `send-http`, `env` and `local-ipv4`
//! imports — so they can be unit-tested natively with a fake host.
//!
//! A guest gets its [`Host`] from [`wit_host!`], which forwards to its own wit-bindgen imports.

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

/// An endpoint's host for a registry: `0.0.0.0` or nothing becomes `POD_IP`, else the local
/// IPv4 address (go-zero's consul and nacos rule, drivers.md §4.3.2). Returns `(host, port)`.
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
    fn components_are_percent_encoded() {
        assert_eq!(
            encode_query(&[("serviceName", "DEFAULT_GROUP@@svc"), ("metadata", "{}")]),
            "serviceName=DEFAULT_GROUP%40%40svc&metadata=%7B%7D"
        );
    }
}
