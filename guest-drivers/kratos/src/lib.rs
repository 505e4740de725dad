//! `dtm-driver-kratos` (docs/drivers.md §4.5): kratos' registries and resolvers as dtm's kratos
//! driver links them.
//!
//! * Schemes: `discovery` (looked up in the registry the coordinator registered into, i.e.
//!   `MicroService.Target`) and `direct` (a fixed list).
//! * parse-server-method: S1 for a URL without `//`, else S2.
//! * Registration at `etcd://` or `discovery://` targets (a leased key
//!   `/microservices/<name>/<id>` holding kratos' instance JSON) and at `consul://` targets
//!   (a service with a TCP and a TTL check). Unlike v0.0.10, each coordinator gets a unique
//!   instance ID (a time-based UUID like v0.0.11's), so several coordinators do not overwrite
//!   one another, and the registration is removed on orderly shutdown, which dtm never did.

use regkit::consul::Consul;
use regkit::kratos::{self, ConsulRegistered, Instance, Registered, Registry};
use sdk::host::now_ms;
use sdk::{Resolution, ServerMethod, WitHost};
use serde_json::json;

/// kratos' TTL check runs out after two heartbeat periods.
const TTL_CHECK: &str = "20s";
/// kratos passes its TTL check this long after registering, then every 10 s.
const FIRST_HEARTBEAT_MS: u64 = 1000;

/// A version-1 (time-based) UUID as v0.0.11 gives each instance: the coordinator's clock in
/// 100 ns ticks since 1582-10-15, and clock sequence and node from a hash of the endpoint
/// (a driver has no MAC address to use), so two coordinators differ by endpoint or start time.
fn instance_id(endpoint: &str, now_ms: u64) -> String {
    const GREGORIAN_OFFSET: u64 = 0x01B2_1DD2_1381_4000;
    let ticks = now_ms.wrapping_mul(10_000).wrapping_add(GREGORIAN_OFFSET);
    // FNV-1a: small, stable, and spread enough for telling endpoints apart.
    let hash = endpoint.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let time_low = ticks & 0xffff_ffff;
    let time_mid = (ticks >> 32) & 0xffff;
    let time_hi = ((ticks >> 48) & 0x0fff) | 0x1000;
    let clock_seq = ((hash >> 48) & 0x3fff) | 0x8000;
    // The multicast bit marks a node that is not a MAC address (RFC 4122 §4.5).
    let node = (hash & 0xffff_ffff_ffff) | 0x0100_0000_0000;
    format!("{time_low:08x}-{time_mid:04x}-{time_hi:04x}-{clock_seq:04x}-{node:012x}")
}

/// The TCP check per endpoint and the TTL check kratos registers with a service.
fn consul_checks(instance: &Instance) -> Vec<serde_json::Value> {
    let mut checks: Vec<_> = kratos::tcp_check_addresses(instance)
        .into_iter()
        .map(|address| {
            json!({"Interval": "10s", "Timeout": "5s", "TCP": address,
                   "DeregisterCriticalServiceAfter": "600s"})
        })
        .collect();
    checks.push(
        json!({"CheckID": format!("service:{}", instance.id), "TTL": TTL_CHECK,
                       "DeregisterCriticalServiceAfter": "600s"}),
    );
    checks
}

/// Where `discovery:///<name>` is looked up: the registry of `MicroService.Target`.
fn registry(target: &str) -> Result<Registry, String> {
    let url = gourl::parse(kratos::discovery_target(target)?)
        .map_err(|e| format!("target '{target}': {e}"))?;
    match url.scheme.as_ref() {
        "etcd" | "discovery" => Ok(Registry::Etcd {
            hosts: url.host.into_owned(),
            credentials: None,
        }),
        "consul" => Ok(Registry::Consul {
            agent: url.host.into_owned(),
            token: None,
        }),
        scheme => Err(format!("unknown scheme: {scheme}")),
    }
}

struct Kratos;

impl sdk::Driver for Kratos {
    const NAME: &'static str = "dtm-driver-kratos";
    const SCHEMES: &'static [&'static str] = &["discovery", "direct"];
    type Registrar = kratos::Registrar<Self>;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        gourl::split_server_method(&uri).map(ServerMethod::from)
    }

    fn resolve(server: String, registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server).map_err(|e| format!("server '{server}': {e}"))?;
        let path = url.path_name();
        match url.scheme.as_ref() {
            // kratos keeps empty pieces, which no dial can use: dropped here.
            "direct" => Ok(Resolution {
                endpoints: path
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect(),
                refresh_ms: 0,
            }),
            "discovery" => Ok(Resolution {
                endpoints: kratos::discover(&WitHost, &self::registry(&registry)?, path)?,
                refresh_ms: kratos::REFRESH_MS,
            }),
            scheme => Err(format!("dtm-driver-kratos does not resolve '{scheme}'")),
        }
    }
}

impl kratos::Register for Kratos {
    fn register(target: &str, endpoint: &str) -> Result<(Registered, u64), String> {
        let target: String = target
            .chars()
            .filter(|c| !matches!(c, '\n' | '\r'))
            .collect();
        let url = gourl::parse(&target).map_err(|e| format!("target '{target}': {e}"))?;
        if url.query().get("tls") == "true" {
            return Err(
                "kratos' tls=true needs certificate files, which a driver cannot read".into(),
            );
        }
        let instance = Instance {
            id: instance_id(endpoint, now_ms()),
            name: url.path_name().to_owned(),
            version: String::new(),
            metadata: None,
            endpoints: endpoint.split(',').map(str::to_owned).collect(),
        };
        match url.scheme.as_ref() {
            "etcd" | "discovery" => {
                let etcd = kratos::etcd_register(&WitHost, &url.host, None, &instance)?;
                Ok((Registered::Etcd(etcd), kratos::ETCD_KEEP_ALIVE_MS))
            }
            "consul" => {
                let mut service = kratos::consul_service(&instance)?;
                service["Checks"] = consul_checks(&instance).into();
                Consul::new(&WitHost, &url.host, None).register_service(&service)?;
                let consul = ConsulRegistered {
                    agent: url.host.clone().into_owned(),
                    token: None,
                    service_id: instance.id.clone(),
                    ttl_check: Some(format!("service:{}", instance.id)),
                };
                Ok((Registered::Consul(consul), FIRST_HEARTBEAT_MS))
            }
            scheme => Err(format!("unknown scheme: {scheme}")),
        }
    }
}

sdk::export_driver!(Kratos);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_version_1_uuids_that_differ_by_endpoint_and_time() {
        let id = instance_id("grpc://localhost:36790", 1_700_000_000_000);
        assert_eq!(id.len(), 36);
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('1'), "{id}");
        assert!(matches!(groups[3].as_bytes()[0], b'8'..=b'b'), "{id}");
        assert_ne!(id, instance_id("grpc://localhost:36791", 1_700_000_000_000));
        assert_ne!(id, instance_id("grpc://localhost:36790", 1_700_000_000_001));
        assert_eq!(id, instance_id("grpc://localhost:36790", 1_700_000_000_000));
    }
}
