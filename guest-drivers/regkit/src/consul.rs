//! Consul's agent and health HTTP API (drivers.md §5.2). STUB: signatures fixed, bodies being
//! written.

use crate::Host;

/// A client of one Consul agent.
pub struct Consul<'h> {
    #[allow(dead_code)]
    host: &'h dyn Host,
    #[allow(dead_code)]
    base: String,
    #[allow(dead_code)]
    token: Option<String>,
}

impl<'h> Consul<'h> {
    /// `address` is the agent's `host:port`, optionally `user:pass@host:port` (basic auth);
    /// `token` goes out as `X-Consul-Token`.
    pub fn new(host: &'h dyn Host, address: &str, token: Option<String>) -> Self {
        Self {
            host,
            base: format!("http://{address}"),
            token,
        }
    }

    /// `PUT /v1/agent/service/register` with an AgentServiceRegistration.
    pub fn register_service(&self, registration: &serde_json::Value) -> Result<(), String> {
        let _ = registration;
        Err("consul: not written yet".into())
    }

    /// `PUT /v1/agent/check/register`.
    pub fn register_check(&self, check: &serde_json::Value) -> Result<(), String> {
        let _ = check;
        Err("consul: not written yet".into())
    }

    /// `PUT /v1/agent/check/update/<check_id>` with status `passing` and `output`.
    pub fn pass_ttl(&self, check_id: &str, output: &str) -> Result<(), String> {
        let _ = (check_id, output);
        Err("consul: not written yet".into())
    }

    /// `PUT /v1/agent/service/deregister/<service_id>`.
    pub fn deregister_service(&self, service_id: &str) -> Result<(), String> {
        let _ = service_id;
        Err("consul: not written yet".into())
    }

    /// `GET /v1/health/service/<service>` (with `passing=1` when `passing_only`): the entries
    /// as Consul sent them.
    pub fn health_service(
        &self,
        service: &str,
        passing_only: bool,
    ) -> Result<Vec<serde_json::Value>, String> {
        let _ = (service, passing_only);
        Err("consul: not written yet".into())
    }
}
