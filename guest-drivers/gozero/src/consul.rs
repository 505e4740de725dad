//! zero-contrib's consul registration and resolver (docs/drivers.md §4.3.2, §4.3.4, §5.2).

use gourl::Url;
use regkit::consul::Consul;
use sdk::{Host, Registration, Resolution};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::State;

/// The check's TTL; zero-contrib passes it one second before it runs out.
const TTL_SECS: u64 = 20;
const HEARTBEAT_MS: u64 = (TTL_SECS - 1) * 1000;
/// The Go resolver long-polls Consul; re-reading this often comes close enough.
const REFRESH_MS: u64 = 5000;

#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The agent's `host:port`.
    agent: String,
    /// The service ID, which is also its TTL check's ID.
    id: String,
    /// The bodies sent at registration, sent again if the agent forgets the service.
    service: Value,
    check: Value,
}

impl Registered {
    fn register(&self, consul: &Consul) -> Result<(), String> {
        consul.register_service(&self.service)?;
        consul.register_check(&self.check)
    }
}

pub fn register(host: &dyn Host, target: &Url, endpoint: &str) -> Result<Registration, String> {
    let name = target.path_name();
    let (address, port) = regkit::listen_address(host, endpoint)?;
    let id = format!("{name}-{address}-{port}");
    let ttl = format!("{TTL_SECS}s");
    let deregister_after = format!("{}s", 3 * TTL_SECS);
    let registered = Registered {
        agent: target.host.clone().into_owned(),
        service: json!({
            "ID": id,
            "Name": name,
            "Tags": ["tag", "rpc"],
            "Port": port,
            "Address": address,
            "Meta": {"Protocol": "grpc"},
            "Checks": [{
                "CheckID": id,
                "TTL": ttl,
                "Status": "passing",
                "DeregisterCriticalServiceAfter": deregister_after,
            }],
        }),
        check: json!({
            "ID": id,
            "Name": name,
            "ServiceID": id,
            "TTL": ttl,
            "Status": "passing",
            "DeregisterCriticalServiceAfter": deregister_after,
        }),
        id,
    };
    registered.register(&Consul::new(host, &registered.agent, None))?;
    crate::registration(State::Consul(registered), HEARTBEAT_MS)
}

/// Passes the TTL check. When that fails (an agent that restarted without its state no
/// longer knows the check), registers again; Go only logs, and the service would stay gone.
pub fn keep_alive(host: &dyn Host, registered: Registered) -> Result<Registration, String> {
    let consul = Consul::new(host, &registered.agent, None);
    if let Err(heartbeat) = consul.pass_ttl(&registered.id, "") {
        crate::warn(&format!(
            "consul heartbeat of '{}' failed ({heartbeat}); registering again",
            registered.id
        ));
        registered.register(&consul)?;
    }
    crate::registration(State::Consul(registered), HEARTBEAT_MS)
}

pub fn deregister(host: &dyn Host, registered: &Registered) -> Result<(), String> {
    Consul::new(host, &registered.agent, None).deregister_service(&registered.id)
}

/// Go's `strconv.ParseBool`.
fn go_bool(name: &str, text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("consul parameter {name}={text:?} is not a boolean")),
    }
}

/// `Service.Address` (or the node's when empty) and `Service.Port` of a health entry.
fn entry_endpoint(entry: &Value) -> Option<String> {
    let service = &entry["Service"];
    let port = service["Port"].as_u64()?;
    let address = match service["Address"].as_str() {
        Some(address) if !address.is_empty() => address,
        _ => entry["Node"]["Address"].as_str()?,
    };
    Some(format!("{address}:{port}"))
}

/// The entries of the health endpoint for the server's service, healthy or not unless the
/// server says `healthy=true`. Of the Go resolver's parameters only `healthy`, `limit` and
/// `token` apply here; branch servers never carry any (parse-server-method cuts the query).
pub fn resolve(host: &dyn Host, url: &Url, server: &str) -> Result<Resolution, String> {
    let service = url.path_name();
    if url.host.is_empty() || service.is_empty() {
        return Err(format!(
            "Malformed URL('{server}'). Must be in the next format: \
             'consul://[user:passwd]@host/service?param=value'"
        ));
    }
    let query = url.query();
    let healthy = match query.get("healthy") {
        "" => false,
        text => go_bool("healthy", text)?,
    };
    let limit = match query.get("limit") {
        "" => 0,
        text => text
            .parse::<usize>()
            .map_err(|_| format!("consul parameter limit={text:?} is not a count"))?,
    };
    let token = Some(query.get("token").to_owned()).filter(|t| !t.is_empty());
    let mut entries = Consul::new(host, &url.host, token).health_service(service, healthy)?;
    if limit > 0 {
        entries.truncate(limit);
    }
    Ok(Resolution {
        endpoints: regkit::merged(entries.iter().filter_map(entry_endpoint)),
        refresh_ms: REFRESH_MS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_service_or_else_the_node() {
        let entry = json!({"Node": {"Address": "10.0.0.1"},
                           "Service": {"Address": "", "Port": 8080}});
        assert_eq!(entry_endpoint(&entry).unwrap(), "10.0.0.1:8080");
        let entry = json!({"Node": {"Address": "10.0.0.1"},
                           "Service": {"Address": "10.0.0.2", "Port": 8080}});
        assert_eq!(entry_endpoint(&entry).unwrap(), "10.0.0.2:8080");
        assert_eq!(entry_endpoint(&json!({"Service": {}})), None);
    }

    #[test]
    fn booleans_read_like_go() {
        assert!(go_bool("healthy", "T").unwrap());
        assert!(!go_bool("healthy", "0").unwrap());
        assert!(go_bool("healthy", "yes").is_err());
    }
}
