//! Consul's agent and health HTTP API (docs/drivers.md §5.2).

use base64::Engine as _;
use sdk::{Host, Request, Response};

/// A client of one Consul agent.
pub struct Consul<'h> {
    host: &'h dyn Host,
    base: String,
    /// `Authorization` value from the address's userinfo.
    basic_auth: Option<String>,
    token: Option<String>,
}

impl<'h> Consul<'h> {
    /// `address` is the agent's `host:port`, optionally `user:pass@host:port` (basic auth);
    /// `token` goes out as `X-Consul-Token`.
    pub fn new(host: &'h dyn Host, address: &str, token: Option<String>) -> Self {
        let (userinfo, agent) = match address.rsplit_once('@') {
            Some((userinfo, agent)) => (Some(userinfo), agent),
            None => (None, address),
        };
        let basic_auth = userinfo.map(|userinfo| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(userinfo)
            )
        });
        Self {
            host,
            base: format!("http://{agent}"),
            basic_auth,
            token: token.filter(|t| !t.is_empty()),
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(auth) = &self.basic_auth {
            headers.push(("authorization".to_owned(), auth.clone()));
        }
        if let Some(token) = &self.token {
            headers.push(("x-consul-token".to_owned(), token.clone()));
        }
        headers
    }

    /// Sends one request; anything but a 2xx answer is an error carrying Consul's text.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, String> {
        let url = format!("{}{path}", self.base);
        let answer = match body {
            Some(body) => crate::send_json(self.host, method, url, self.headers(), body),
            None => self.host.send(Request {
                method,
                url,
                headers: self.headers(),
                body: Vec::new(),
            }),
        };
        crate::successful(answer, &format!("consul {method} {path}"))
    }

    /// `PUT /v1/agent/service/register` with an AgentServiceRegistration.
    pub fn register_service(&self, registration: &serde_json::Value) -> Result<(), String> {
        self.call("PUT", "/v1/agent/service/register", Some(registration))
            .map(drop)
    }

    /// `PUT /v1/agent/check/register`.
    pub fn register_check(&self, check: &serde_json::Value) -> Result<(), String> {
        self.call("PUT", "/v1/agent/check/register", Some(check))
            .map(drop)
    }

    /// `PUT /v1/agent/check/update/<check_id>` with status `passing` and `output`.
    pub fn pass_ttl(&self, check_id: &str, output: &str) -> Result<(), String> {
        let body = serde_json::json!({"Status": "passing", "Output": output});
        let path = format!(
            "/v1/agent/check/update/{}",
            crate::encode_component(check_id)
        );
        self.call("PUT", &path, Some(&body)).map(drop)
    }

    /// `PUT /v1/agent/service/deregister/<service_id>`.
    pub fn deregister_service(&self, service_id: &str) -> Result<(), String> {
        let path = format!(
            "/v1/agent/service/deregister/{}",
            crate::encode_component(service_id)
        );
        self.call("PUT", &path, None).map(drop)
    }

    /// `GET /v1/health/service/<service>` (with `passing=1` when `passing_only`): the entries
    /// as Consul sent them.
    pub fn health_service(
        &self,
        service: &str,
        passing_only: bool,
    ) -> Result<Vec<serde_json::Value>, String> {
        // No blocking `index`: the host polls, so every query must answer at once.
        let mut path = format!("/v1/health/service/{}", crate::encode_component(service));
        if passing_only {
            path.push_str("?passing=1");
        }
        self.call("GET", &path, None)?.json()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fake::FakeHost;

    fn body(request: &Request) -> serde_json::Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn gozero_worked_example() {
        let host = FakeHost::default();
        for _ in 0..4 {
            host.answer(200, json!(null));
        }
        let consul = Consul::new(&host, "127.0.0.1:8500", None);
        let registration = json!({"ID":"dtmservice-localhost-36790","Name":"dtmservice","Tags":["tag","rpc"],"Port":36790,"Address":"localhost","Meta":{"Protocol":"grpc"},"Checks":[{"CheckID":"dtmservice-localhost-36790","TTL":"20s","Status":"passing","DeregisterCriticalServiceAfter":"60s"}]});
        consul.register_service(&registration).unwrap();
        let check = json!({"ID":"dtmservice-localhost-36790","Name":"dtmservice","ServiceID":"dtmservice-localhost-36790","TTL":"20s","Status":"passing","DeregisterCriticalServiceAfter":"60s"});
        consul.register_check(&check).unwrap();
        consul.pass_ttl("dtmservice-localhost-36790", "").unwrap();
        consul
            .deregister_service("dtmservice-localhost-36790")
            .unwrap();

        let sent = host.sent.borrow();
        let calls: Vec<_> = sent.iter().map(|r| (r.method, r.url.as_str())).collect();
        assert_eq!(
            calls,
            [
                ("PUT", "http://127.0.0.1:8500/v1/agent/service/register"),
                ("PUT", "http://127.0.0.1:8500/v1/agent/check/register"),
                (
                    "PUT",
                    "http://127.0.0.1:8500/v1/agent/check/update/dtmservice-localhost-36790"
                ),
                (
                    "PUT",
                    "http://127.0.0.1:8500/v1/agent/service/deregister/dtmservice-localhost-36790"
                ),
            ]
        );
        assert_eq!(body(&sent[0]), registration);
        assert_eq!(body(&sent[1]), check);
        assert_eq!(body(&sent[2]), json!({"Status":"passing","Output":""}));
        assert!(sent[3].body.is_empty());
        assert!(sent[0].headers.iter().all(|(k, _)| k != "x-consul-token"));
    }

    #[test]
    fn kratos_heartbeat_escapes_the_check_id_and_sends_credentials() {
        let host = FakeHost::default();
        host.answer(200, json!(null));
        let consul = Consul::new(&host, "u:p@127.0.0.1:8500", Some("secret".into()));
        consul.pass_ttl("service:", "pass").unwrap();
        let sent = host.sent.borrow();
        assert_eq!(
            sent[0].url,
            "http://127.0.0.1:8500/v1/agent/check/update/service%3A"
        );
        assert_eq!(body(&sent[0]), json!({"Status":"passing","Output":"pass"}));
        let header = |name: &str| {
            sent[0]
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("authorization").as_deref(), Some("Basic dTpw"));
        assert_eq!(header("x-consul-token").as_deref(), Some("secret"));
    }

    #[test]
    fn failures_carry_consul_text() {
        let host = FakeHost::default();
        host.answers.borrow_mut().push_back(Ok(Response {
            status: 500,
            headers: vec![],
            body: b"CheckID \"service:x\" does not have associated TTL\n".to_vec(),
        }));
        let err = Consul::new(&host, "h:8500", None)
            .pass_ttl("service:x", "pass")
            .unwrap_err();
        assert!(
            err.contains("500") && err.contains("does not have associated TTL"),
            "{err}"
        );
        assert!(Consul::new(&host, "h:8500", None)
            .deregister_service("x")
            .unwrap_err()
            .contains("no answer queued"));
    }

    #[test]
    fn health_entries_come_back_as_sent() {
        let host = FakeHost::default();
        let entries = json!([
            {"Node": {"Address": "10.0.0.1"}, "Service": {"ID": "a", "Service": "trans", "Address": "", "Port": 8081}},
            {"Node": {"Address": "10.0.0.1"}, "Service": {"ID": "b", "Service": "trans", "Address": "10.0.0.2", "Port": 8082}},
            {"Node": {"Address": "10.0.0.1"}, "Service": {"ID": "c", "Service": "trans", "Address": "10.0.0.3", "Port": 0}}
        ]);
        host.answer(200, entries.clone());
        host.answer(200, json!([]));
        let consul = Consul::new(&host, "127.0.0.1:8500", None);
        let got = consul.health_service("trans", false).unwrap();
        assert_eq!(got, entries.as_array().unwrap().clone());
        assert!(consul.health_service("a b", true).unwrap().is_empty());
        let sent = host.sent.borrow();
        assert_eq!(sent[0].url, "http://127.0.0.1:8500/v1/health/service/trans");
        assert_eq!(sent[0].method, "GET");
        assert_eq!(
            sent[1].url,
            "http://127.0.0.1:8500/v1/health/service/a%20b?passing=1"
        );
    }
}
