//! Polaris' HTTP client-access API (docs/drivers.md §5.4, default port 8090). Go's driver speaks
//! gRPC to port 8091; the HTTP API carries the same protobuf messages as JSON. Polaris answers
//! with an HTTP status derived from its own `code`, so the `code` in the body decides.

use sdk::Host;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::send_json;

/// Success.
const OK: u64 = 200_000;
/// Discovery: nothing changed since the revision sent (we send none, but a server may say so).
const DATA_NO_CHANGE: u64 = 200_001;
/// Register: the instance exists already, which for a re-registration is what we wanted.
const EXISTED_RESOURCE: u64 = 400_201;
/// Heartbeat: the instance is unknown or has no heartbeat check (it expired or was removed).
const HEARTBEAT_ON_DISABLED_INSTANCE: u64 = 400_141;

/// An instance of a service, as registered, kept alive and deregistered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub namespace: String,
    pub service: String,
    pub host: String,
    pub port: u16,
    /// The service token (dtm's `MicroService.EndPoint`).
    pub token: String,
}

impl Instance {
    /// The body naming this instance, as heartbeat and deregistration want it. `id` may be
    /// empty: Polaris then derives it from namespace, service, host and port.
    fn identified(&self, id: &str) -> Value {
        json!({
            "service": self.service,
            "namespace": self.namespace,
            "host": self.host,
            "port": self.port,
            "service_token": self.token,
            "id": id,
        })
    }
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Alive,
    /// Polaris no longer knows the instance: register it again.
    Unknown,
}

/// One instance of a discovery answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Discovered {
    #[serde(default)]
    pub id: String,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub healthy: bool,
    #[serde(default)]
    pub isolate: bool,
}

impl Discovered {
    /// Whether calls may go to it: healthy, not isolated, with a weight (what Polaris' default
    /// router chain keeps).
    pub fn usable(&self) -> bool {
        self.healthy && !self.isolate && self.weight > 0
    }

    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A client of one Polaris server.
pub struct Polaris<'h> {
    host: &'h dyn Host,
    base: String,
}

/// The part of every answer that says how it went.
#[derive(Deserialize)]
struct Answer {
    code: u64,
}

impl<'h> Polaris<'h> {
    /// `address` is the server's HTTP `host:port`.
    pub fn new(host: &'h dyn Host, address: &str) -> Self {
        Self {
            host,
            base: format!("http://{address}"),
        }
    }

    /// Sends `body` to `/v1/<call>`; returns the answer's code and the whole answer.
    fn post(&self, call: &str, body: &Value) -> Result<(u64, Value), String> {
        let url = format!("{}/v1/{call}", self.base);
        let response = send_json(self.host, "POST", url, vec![], body)?;
        let answer: Value = response
            .json()
            .map_err(|e| format!("polaris {call} (HTTP {}): {e}", response.status))?;
        let Answer { code } = serde_json::from_value(answer.clone())
            .map_err(|e| format!("polaris {call} answered without a code ({e}): {answer}"))?;
        Ok((code, answer))
    }

    /// Registers `instance` with a heartbeat check of `ttl_s` seconds; returns its id (empty
    /// when Polaris did not say, which heartbeat and deregistration accept).
    pub fn register(&self, instance: &Instance, ttl_s: u32) -> Result<String, String> {
        let body = json!({
            "service": instance.service,
            "namespace": instance.namespace,
            "host": instance.host,
            "port": instance.port,
            "service_token": instance.token,
            "enable_health_check": true,
            "health_check": {"type": "HEARTBEAT", "heartbeat": {"ttl": ttl_s}},
        });
        let (code, answer) = self.post("RegisterInstance", &body)?;
        if code != OK && code != EXISTED_RESOURCE {
            return Err(refused("RegisterInstance", code, &answer));
        }
        Ok(answer["instance"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub fn heartbeat(&self, instance: &Instance, id: &str) -> Result<Heartbeat, String> {
        match self.post("Heartbeat", &instance.identified(id))? {
            (OK, _) => Ok(Heartbeat::Alive),
            (HEARTBEAT_ON_DISABLED_INSTANCE, _) => Ok(Heartbeat::Unknown),
            (code, answer) => Err(refused("Heartbeat", code, &answer)),
        }
    }

    pub fn deregister(&self, instance: &Instance, id: &str) -> Result<(), String> {
        match self.post("DeregisterInstance", &instance.identified(id))? {
            (OK, _) => Ok(()),
            (code, answer) => Err(refused("DeregisterInstance", code, &answer)),
        }
    }

    /// Every instance of `service` in `namespace`, usable or not.
    pub fn discover(&self, namespace: &str, service: &str) -> Result<Vec<Discovered>, String> {
        let body =
            json!({"type": "INSTANCE", "service": {"name": service, "namespace": namespace}});
        let (code, answer) = self.post("Discover", &body)?;
        if code != OK && code != DATA_NO_CHANGE {
            return Err(refused("Discover", code, &answer));
        }
        match answer.get("instances") {
            None | Some(Value::Null) => Ok(vec![]),
            Some(instances) => serde_json::from_value(instances.clone())
                .map_err(|e| format!("polaris Discover sent unreadable instances ({e}): {answer}")),
        }
    }
}

fn refused(call: &str, code: u64, answer: &Value) -> String {
    let info = answer["info"].as_str().unwrap_or_default();
    format!("polaris {call} refused: code {code} {info}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    fn instance() -> Instance {
        Instance {
            namespace: "Test".into(),
            service: "dtmservice".into(),
            host: "10.0.0.7".into(),
            port: 36790,
            token: "secret".into(),
        }
    }

    fn body(host: &FakeHost, n: usize) -> Value {
        serde_json::from_slice(&host.sent.borrow()[n].body).unwrap()
    }

    #[test]
    fn registers_with_a_heartbeat_check_and_returns_the_id() {
        let host = FakeHost::default();
        host.answer(200, json!({"code": 200000, "instance": {"id": "abc"}}));
        let polaris = Polaris::new(&host, "127.0.0.1:8090");
        assert_eq!(polaris.register(&instance(), 5).unwrap(), "abc");
        let sent = &host.sent.borrow()[0];
        assert_eq!(
            (sent.method, sent.url.as_str()),
            ("POST", "http://127.0.0.1:8090/v1/RegisterInstance")
        );
        assert_eq!(
            body(&host, 0),
            json!({"service": "dtmservice", "namespace": "Test", "host": "10.0.0.7",
                "port": 36790, "service_token": "secret", "enable_health_check": true,
                "health_check": {"type": "HEARTBEAT", "heartbeat": {"ttl": 5}}})
        );
    }

    #[test]
    fn an_existing_instance_counts_as_registered() {
        let host = FakeHost::default();
        host.answer(400, json!({"code": 400201, "info": "existed resource"}));
        host.answer(400, json!({"code": 400001, "info": "invalid request"}));
        let polaris = Polaris::new(&host, "p:8090");
        assert_eq!(polaris.register(&instance(), 5).unwrap(), "");
        let error = polaris.register(&instance(), 5).unwrap_err();
        assert!(error.contains("400001 invalid request"), "{error}");
    }

    #[test]
    fn heartbeats_tell_an_unknown_instance_apart() {
        let host = FakeHost::default();
        host.answer(200, json!({"code": 200000}));
        host.answer(400, json!({"code": 400141}));
        host.answer(500, json!({"code": 500000, "info": "boom"}));
        let polaris = Polaris::new(&host, "p:8090");
        assert_eq!(
            polaris.heartbeat(&instance(), "abc").unwrap(),
            Heartbeat::Alive
        );
        assert_eq!(
            polaris.heartbeat(&instance(), "abc").unwrap(),
            Heartbeat::Unknown
        );
        assert!(polaris.heartbeat(&instance(), "abc").is_err());
        assert_eq!(host.sent.borrow()[0].url, "http://p:8090/v1/Heartbeat");
        assert_eq!(
            body(&host, 0),
            json!({"service": "dtmservice", "namespace": "Test", "host": "10.0.0.7",
                "port": 36790, "service_token": "secret", "id": "abc"})
        );
    }

    #[test]
    fn deregisters_by_id() {
        let host = FakeHost::default();
        host.answer(200, json!({"code": 200000}));
        host.answer(404, json!({"code": 400202, "info": "not found"}));
        let polaris = Polaris::new(&host, "p:8090");
        polaris.deregister(&instance(), "abc").unwrap();
        assert!(polaris.deregister(&instance(), "abc").is_err());
        assert_eq!(
            host.sent.borrow()[0].url,
            "http://p:8090/v1/DeregisterInstance"
        );
        assert_eq!(body(&host, 0)["id"], "abc");
    }

    #[test]
    fn discovers_instances_and_tells_which_are_usable() {
        let host = FakeHost::default();
        host.answer(
            200,
            json!({"code": 200000, "instances": [
                {"id": "1", "host": "10.0.0.1", "port": 80, "weight": 100, "healthy": true},
                {"id": "2", "host": "10.0.0.2", "port": 80, "weight": 100, "healthy": false},
                {"id": "3", "host": "10.0.0.3", "port": 80, "weight": 100, "healthy": true,
                    "isolate": true},
                {"id": "4", "host": "::1", "port": 80, "weight": 0, "healthy": true},
            ]}),
        );
        host.answer(200, json!({"code": 200001}));
        host.answer(200, json!({"code": 200000, "instances": [{"host": 1}]}));
        host.answer(500, json!({"info": "no code"}));
        let polaris = Polaris::new(&host, "p:8090");
        let found = polaris.discover("default", "busi").unwrap();
        assert_eq!(
            body(&host, 0),
            json!({"type": "INSTANCE", "service": {"name": "busi", "namespace": "default"}})
        );
        let usable: Vec<String> = found
            .iter()
            .filter(|i| i.usable())
            .map(Discovered::endpoint)
            .collect();
        assert_eq!(usable, ["10.0.0.1:80"]);
        assert_eq!(found[3].endpoint(), "[::1]:80");
        assert!(polaris.discover("default", "busi").unwrap().is_empty());
        assert!(polaris.discover("default", "busi").is_err());
        assert!(polaris.discover("default", "busi").is_err());
    }
}
