//! `dtm-driver-sponge` (docs/drivers.md §4.9): sponge's registries (kratos-style etcd and Consul,
//! and Nacos) and its `discovery` resolver.
//!
//! * Scheme: `discovery`, looked up in the registry of `MicroService.Target`.
//! * parse-server-method: S1 for a URL without `//`, else S2 (kratos' code).
//! * Registration of the coordinator, whose endpoint must be `grpc://` or `http://host:port`,
//!   as instance `<name>_<scheme>_<host>_<port>`: at etcd under a lease renewed every 5 s, at
//!   Consul with a TCP check, at Nacos as service `<name>.<scheme>` through the v1 HTTP API
//!   with beats (sponge's v2 gRPC SDK needs none). Sponge never deregisters; this driver does
//!   on orderly shutdown. Unlike sponge, the target's credentials and Consul token are used
//!   for discovery too (§7 #11).

use gourl::Url;
use regkit::consul::Consul;
use regkit::etcd::Credentials;
use regkit::kratos::{self, ConsulRegistered, Instance, NacosRegistered, Registered, Registry};
use regkit::nacos::{Nacos, BEAT_MS};
use sdk::{Resolution, ServerMethod, WitHost};
use serde_json::json;

const DEFAULT_GROUP: &str = "DEFAULT_GROUP";

/// A target's service name: the last element of its path (`dtmservice` when there is none).
fn service_name(url: &Url) -> String {
    if url.path.is_empty() {
        return "dtmservice".into();
    }
    url.path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// The registry `host:port` of a target, which must name a numeric port.
fn registry_address(url: &Url) -> Result<String, String> {
    let port = url.port();
    if port.is_empty() {
        return Err(format!("port is empty: {}", url.host));
    }
    port.parse::<u16>()
        .map_err(|_| format!("invalid port: {}", url.host))?;
    Ok(url.host.clone().into_owned())
}

/// Nacos' namespace and credentials from a target's query.
fn nacos_account(url: &Url) -> (String, Option<(String, String)>) {
    let query = url.query();
    let namespace = match query.get("namespaceID") {
        "" => "public",
        given => given,
    };
    let user = query.get("username");
    let credentials =
        (!user.is_empty()).then(|| (user.to_owned(), query.get("password").to_owned()));
    (namespace.to_owned(), credentials)
}

fn etcd_credentials(url: &Url) -> Option<Credentials> {
    let query = url.query();
    let user = query.get("username");
    (!user.is_empty()).then(|| Credentials {
        user: user.to_owned(),
        password: query.get("password").to_owned(),
    })
}

fn consul_token(url: &Url) -> Option<String> {
    Some(url.query().get("token").to_owned()).filter(|t| !t.is_empty())
}

/// The coordinator's endpoint: its scheme (`grpc` or `http`), host and port.
fn endpoint_parts(endpoint: &str) -> Result<(String, String, u16), String> {
    let url = gourl::parse(endpoint).map_err(|e| format!("endpoint '{endpoint}': {e}"))?;
    let scheme = url.scheme.as_ref();
    if scheme != "grpc" && scheme != "http" {
        return Err(format!(
            "invalid dtm service protocol: {scheme}, only supports grpc, http, e.g. grpc://localhost:36790"
        ));
    }
    let port = url.port().parse::<u16>().ok();
    match (url.hostname(), port) {
        (host, Some(port)) if !host.is_empty() => Ok((scheme.to_owned(), host.to_owned(), port)),
        _ => Err(format!(
            "endpoint '{endpoint}' needs a host and a port, e.g. grpc://localhost:36790"
        )),
    }
}

/// The addresses of `name` in Nacos: healthy, enabled instances (kratos' nacos registry
/// selects those), each as `<kind>://ip:port`, then kratos' grpc pick.
fn nacos_discover(target: &Url, name: &str) -> Result<(Vec<String>, u64), String> {
    let (namespace, credentials) = nacos_account(target);
    let credentials = credentials
        .as_ref()
        .map(|(user, password)| (user.as_str(), password.as_str()));
    let listing = Nacos::connect(&WitHost, &registry_address(target)?, credentials)?.list(
        &namespace,
        DEFAULT_GROUP,
        name,
        "",
    )?;
    let addresses = listing
        .hosts
        .iter()
        .filter(|listed| listed.healthy && listed.enabled)
        .filter_map(|listed| {
            let kind = listed.metadata.get("kind").and_then(|k| k.as_str());
            let endpoint = format!("{}://{}:{}", kind.unwrap_or("grpc"), listed.ip, listed.port);
            kratos::grpc_address(&[endpoint])
        });
    let refresh = listing.cache_millis.unwrap_or(kratos::REFRESH_MS);
    Ok((regkit::merged(addresses), refresh))
}

fn resolve(name: &str, target: &str) -> Result<Resolution, String> {
    let url = gourl::parse(kratos::discovery_target(target)?)
        .map_err(|e| format!("target '{target}': {e}"))?;
    let registry = match url.scheme.as_ref() {
        "etcd" => Registry::Etcd {
            hosts: registry_address(&url)?,
            credentials: etcd_credentials(&url),
        },
        "consul" => Registry::Consul {
            agent: registry_address(&url)?,
            token: consul_token(&url),
        },
        "nacos" => {
            let (endpoints, refresh_ms) = nacos_discover(&url, name)?;
            return Ok(Resolution {
                endpoints,
                refresh_ms,
            });
        }
        scheme => return Err(format!("invalid registry type: {scheme}")),
    };
    Ok(Resolution {
        endpoints: kratos::discover(&WitHost, &registry, name)?,
        refresh_ms: kratos::REFRESH_MS,
    })
}

struct Sponge;

impl sdk::Driver for Sponge {
    const NAME: &'static str = "dtm-driver-sponge";
    const SCHEMES: &'static [&'static str] = &["discovery"];
    type Registrar = kratos::Registrar<Self>;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        gourl::split_server_method(&uri).map(ServerMethod::from)
    }

    fn resolve(server: String, registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server).map_err(|e| format!("server '{server}': {e}"))?;
        if url.scheme != "discovery" {
            return Err(format!(
                "dtm-driver-sponge does not resolve '{}'",
                url.scheme
            ));
        }
        resolve(url.path_name(), &registry)
    }
}

impl kratos::Register for Sponge {
    fn register(target: &str, endpoint: &str) -> Result<(Registered, u64), String> {
        let url = gourl::parse(target).map_err(|e| format!("target '{target}': {e}"))?;
        let scheme = url.scheme.as_ref();
        if !matches!(scheme, "consul" | "etcd" | "nacos") {
            return Err(format!(
                "invalid registry type: {scheme}, only supports consul, etcd, nacos, usage: <sheme>://<host>:<ip>/dtmservice"
            ));
        }
        let name = service_name(&url);
        let address = registry_address(&url)?;
        let (kind, host, port) = endpoint_parts(endpoint)?;
        let instance = Instance {
            id: format!("{name}_{kind}_{host}_{port}"),
            name,
            version: String::new(),
            metadata: None,
            endpoints: vec![endpoint.to_owned()],
        };
        match scheme {
            "etcd" => {
                let etcd =
                    kratos::etcd_register(&WitHost, &address, etcd_credentials(&url), &instance)?;
                Ok((Registered::Etcd(etcd), kratos::ETCD_KEEP_ALIVE_MS))
            }
            "consul" => {
                let mut service = kratos::consul_service(&instance)?;
                service["Checks"] = json!([{
                    "Interval": "20s", "Timeout": "5s", "TCP": format!("{host}:{port}"),
                    "Status": "passing", "DeregisterCriticalServiceAfter": "60s",
                }]);
                let token = consul_token(&url);
                Consul::new(&WitHost, &address, token.clone()).register_service(&service)?;
                // Sponge's TTL updates name its TCP check, which Consul refuses: not sent.
                let consul = ConsulRegistered {
                    agent: address,
                    token,
                    service_id: instance.id,
                    ttl_check: None,
                };
                Ok((Registered::Consul(consul), 0))
            }
            _ => {
                let (namespace_id, credentials) = nacos_account(&url);
                let nacos = NacosRegistered {
                    address,
                    credentials,
                    instance: regkit::nacos::Instance {
                        namespace_id,
                        service_name: format!("{}.{kind}", instance.name),
                        group_name: DEFAULT_GROUP.into(),
                        cluster_name: "DEFAULT".into(),
                        ip: host,
                        port,
                        weight: 100.0,
                        enable: true,
                        healthy: true,
                        ephemeral: true,
                        metadata: json!({"id": instance.id, "kind": kind, "version": instance.version}),
                    },
                };
                nacos.connect(&WitHost)?.register(&nacos.instance)?;
                Ok((Registered::Nacos(nacos), BEAT_MS))
            }
        }
    }
}

sdk::export_driver!(Sponge);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_endpoints_are_checked_as_sponge_does() {
        let name = |t: &str| service_name(&gourl::parse(t).unwrap());
        assert_eq!(name("etcd://127.0.0.1:2379/dtmservice"), "dtmservice");
        assert_eq!(name("etcd://127.0.0.1:2379/a/b"), "b");
        assert_eq!(name("etcd://127.0.0.1:2379"), "dtmservice");
        assert_eq!(name("etcd://127.0.0.1:2379/"), "");
        let address = |t: &str| registry_address(&gourl::parse(t).unwrap());
        assert_eq!(address("consul://h:8500/x").unwrap(), "h:8500");
        assert_eq!(address("consul://h/x").unwrap_err(), "port is empty: h");
        assert_eq!(
            endpoint_parts("grpc://127.0.0.1:36790").unwrap(),
            ("grpc".into(), "127.0.0.1".into(), 36790)
        );
        assert!(endpoint_parts("tcp://127.0.0.1:36790")
            .unwrap_err()
            .starts_with("invalid dtm service protocol: tcp"));
        assert!(endpoint_parts("127.0.0.1:36790").is_err());
        assert!(endpoint_parts("grpc://127.0.0.1").is_err());
        let nacos = gourl::parse("nacos://h:8848/x?namespaceID=dev&username=u&password=p").unwrap();
        assert_eq!(
            nacos_account(&nacos),
            ("dev".into(), Some(("u".into(), "p".into())))
        );
        assert_eq!(
            nacos_account(&gourl::parse("nacos://h:8848/x").unwrap()),
            ("public".into(), None)
        );
    }
}
