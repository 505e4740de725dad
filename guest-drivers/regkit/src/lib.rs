//! What guest drivers share beyond URL parsing: clients for the registries dtm's frameworks use
//! (docs/drivers.md §5), written against [`sdk::Host`] — the host's `send-http`, `env` and
//! `local-ipv4` imports — so they can be unit-tested natively with a fake host. A driver hands
//! them [`sdk::WitHost`].

pub mod consul;
pub mod etcd;
pub mod kratos;
pub mod nacos;
pub mod polaris;

use sdk::{Host, Request, Response};

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

/// A [`Host`] for native unit tests: answers requests from a queue and records them.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    use sdk::{Host, Request, Response};

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
