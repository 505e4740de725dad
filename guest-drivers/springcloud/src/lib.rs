//! `dtm-driver-springcloud` (docs/drivers.md §4.8): an HTTP-only driver backed by Nacos. The
//! coordinator registers itself as a Nacos instance described by a JSON target, and every HTTP
//! branch URL that is not already `http(s)://` names a Nacos service as its host: the call goes
//! to one of that service's instances, picked by weighted random choice.
//!
//! Unlike Go, which keeps the Nacos client it made at registration, the driver reads the Nacos
//! servers from `MicroService.Target` on each call (the host passes it), so rewriting works in
//! any driver instance; and it deregisters on orderly shutdown, which Go never does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use regkit::nacos::{Instance, Listed, Nacos};
use sdk::{Host, HttpTarget, Registrar, Registration, ServerMethod, WitHost};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// nacos-sdk-go's defaults for what the target leaves out.
const DEFAULT_GROUP: &str = "DEFAULT_GROUP";
const DEFAULT_CLUSTER: &str = "DEFAULT";
const DEFAULT_NAMESPACE: &str = "public";
const DEFAULT_BEAT_MS: u64 = 5_000;
/// The weight Go gives an instance whose configuration says 0.
const DEFAULT_WEIGHT: f64 = 10.0;

/// `ClientConfig` of nacos-sdk-go v1, the fields the HTTP API needs (the host applies its own
/// request timeout, so `TimeoutMs` and the like are not read).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ClientConfig {
    #[serde(rename = "namespaceid")]
    namespace_id: String,
    #[serde(rename = "beatinterval")]
    beat_interval: i64,
    username: String,
    password: String,
}

/// `vo.RegisterInstanceParam`; `Ip` and `Port` come from the endpoint instead.
#[derive(Deserialize, Default)]
#[serde(default)]
struct InstanceConfig {
    weight: f64,
    enable: bool,
    healthy: bool,
    metadata: BTreeMap<String, String>,
    #[serde(rename = "clustername")]
    cluster_name: String,
    #[serde(rename = "servicename")]
    service_name: String,
    #[serde(rename = "groupname")]
    group_name: String,
    ephemeral: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Target {
    addr: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "clientconfig")]
    client: ClientConfig,
    #[serde(rename = "instanceconfig")]
    instance: InstanceConfig,
}

/// The Nacos servers a target names and how to talk to them.
#[derive(Serialize, Deserialize)]
struct Servers {
    addresses: Vec<String>,
    namespace: String,
    credentials: Option<(String, String)>,
}

/// What the host keeps between beats.
#[derive(Serialize, Deserialize)]
struct State {
    servers: Servers,
    instance: Instance,
    beat_ms: u64,
}

/// Go's `parseIpPort`: exactly one `:` and a 16-bit port.
fn ip_port(endpoint: &str) -> Result<(String, u16), String> {
    let parts: Vec<&str> = endpoint.split(':').collect();
    let [ip, port] = parts[..] else {
        return Err(format!("invalid endpoint: {endpoint}"));
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port in host {endpoint}, port: {port}"))?;
    Ok((ip.to_owned(), port))
}

/// Lower-cases the keys of a JSON object, as Go's decoder matches field names without regard
/// to case. Of two keys differing only in case, the lower-case one is kept.
fn fold_keys(object: &mut Value) {
    if let Value::Object(map) = object {
        let folded = std::mem::take(map).into_iter().fold(
            serde_json::Map::new(),
            |mut folded, (key, value)| {
                let lower = key.to_ascii_lowercase();
                if key == lower || !folded.contains_key(&lower) {
                    folded.insert(lower, value);
                }
                folded
            },
        );
        *map = folded;
    }
}

/// The JSON target, checked as Go checks it.
fn parse_target(target: &str) -> Result<(Servers, Target), String> {
    let invalid = |e: String| format!("invalid options: {target} error: {e}");
    let mut json: Value = serde_json::from_str(target).map_err(|e| invalid(e.to_string()))?;
    fold_keys(&mut json);
    for nested in ["clientconfig", "instanceconfig"] {
        if let Some(object) = json.get_mut(nested) {
            fold_keys(object);
        }
    }
    let target: Target = serde_json::from_value(json).map_err(|e| invalid(e.to_string()))?;
    if target.kind != "nacos" {
        return Err(format!("unknown type: {}", target.kind));
    }
    let addresses = target
        .addr
        .split(',')
        .map(|addr| ip_port(addr).map(|_| addr.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("new nacos client error: {e}"))?;
    let client = &target.client;
    let servers = Servers {
        addresses,
        namespace: match client.namespace_id.as_str() {
            "" => DEFAULT_NAMESPACE.to_owned(),
            namespace => namespace.to_owned(),
        },
        credentials: (!client.username.is_empty())
            .then(|| (client.username.clone(), client.password.clone())),
    };
    Ok((servers, target))
}

impl Servers {
    /// Runs `call` against the first server that answers, as nacos-sdk-go fails over.
    fn call<T>(
        &self,
        host: &dyn Host,
        call: impl Fn(&Nacos) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut errors = Vec::new();
        for address in &self.addresses {
            let credentials = self
                .credentials
                .as_ref()
                .map(|(user, password)| (user.as_str(), password.as_str()));
            match Nacos::connect(host, address, credentials).and_then(|nacos| call(&nacos)) {
                Ok(answer) => return Ok(answer),
                Err(e) => errors.push(format!("{address}: {e}")),
            }
        }
        Err(errors.join("; "))
    }
}

/// The instance Go registers for `endpoint`.
fn instance(servers: &Servers, config: InstanceConfig, endpoint: &str) -> Result<Instance, String> {
    let (ip, port) = ip_port(endpoint)?;
    Ok(Instance {
        namespace_id: servers.namespace.clone(),
        service_name: config.service_name,
        group_name: match config.group_name.as_str() {
            "" => DEFAULT_GROUP.to_owned(),
            group => group.to_owned(),
        },
        cluster_name: config.cluster_name,
        ip,
        port,
        weight: if config.weight == 0.0 {
            DEFAULT_WEIGHT
        } else {
            config.weight
        },
        enable: config.enable,
        healthy: config.healthy,
        ephemeral: config.ephemeral,
        metadata: serde_json::to_value(config.metadata).map_err(|e| e.to_string())?,
    })
}

fn registration(state: &State) -> Result<Registration, String> {
    Ok(Registration {
        state: regkit::write_state(state)?,
        // A persistent instance needs no beats.
        keep_alive_ms: if state.instance.ephemeral {
            state.beat_ms
        } else {
            0
        },
    })
}

/// Advances on every pick, so picks within one millisecond differ.
static PICKS: AtomicU64 = AtomicU64::new(0);

/// A number in `0..bound` (bound > 0): the host's clock and a counter through splitmix64.
/// Balancing needs spread, not unpredictability, and the sandbox has no entropy source.
fn random_below(bound: u64) -> u64 {
    let pick = PICKS.fetch_add(1, Ordering::Relaxed);
    let mut z = sdk::host::now_ms().wrapping_add(pick.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % bound
}

/// nacos-sdk-go's choice among healthy, enabled instances with a weight: weighted random, each
/// weight truncated to an integer. `draw` gives a number below the bound it is passed.
fn choose(hosts: &[Listed], draw: impl FnOnce(u64) -> u64) -> Result<&Listed, String> {
    let candidates: Vec<(&Listed, u64)> = hosts
        .iter()
        .filter(|h| h.healthy && h.enabled && h.weight > 0.0)
        .map(|h| (h, h.weight as u64))
        .collect();
    if candidates.is_empty() {
        return Err("instance list is empty!".into());
    }
    let total: u64 = candidates.iter().map(|(_, weight)| weight).sum();
    if total == 0 {
        // Go would panic drawing from an empty range.
        return Err("no usable instance has a weight of 1 or more".into());
    }
    let mut point = draw(total);
    for (host, weight) in candidates {
        if point < weight {
            return Ok(host);
        }
        point -= weight;
    }
    Err(format!("the draw fell beyond the total weight {total}"))
}

/// What follows the authority of `url` (path and query as written), fragment dropped.
fn after_authority(url: &str) -> &str {
    let url = url.split('#').next().unwrap_or_default();
    let rest = url.split_once("//").map_or("", |(_, rest)| rest);
    rest.find(['/', '?']).map_or("", |at| &rest[at..])
}

fn rewrite(url: &str, registry: &str) -> Result<Option<HttpTarget>, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(None);
    }
    let parsed = gourl::parse(url)?;
    if parsed.host.is_empty() {
        return Err(format!("'{url}' names no nacos service as its host"));
    }
    let query = parsed.query();
    let group = match query.get("group") {
        "" => DEFAULT_GROUP,
        group => group,
    };
    let clusters: Vec<&str> = query.all("clusters").collect();
    let clusters = if clusters.is_empty() {
        DEFAULT_CLUSTER.to_owned()
    } else {
        clusters.join(",")
    };
    let (servers, _) = parse_target(registry)?;
    let listing = servers.call(&WitHost, |nacos| {
        nacos.list(&servers.namespace, group, &parsed.host, &clusters)
    })?;
    let chosen = choose(&listing.hosts, random_below)
        .map_err(|e| format!("nacos service '{}': {e}", parsed.host))?;
    let address = if chosen.ip.contains(':') {
        format!("[{}]:{}", chosen.ip, chosen.port)
    } else {
        format!("{}:{}", chosen.ip, chosen.port)
    };
    Ok(Some(HttpTarget {
        url: format!("http://{address}{}", after_authority(url)),
        headers: vec![],
    }))
}

struct Driver;

impl sdk::Driver for Driver {
    const NAME: &'static str = "dtm-driver-springcloud";
    const REWRITES_HTTP: bool = true;
    type Registrar = Self;

    /// gRPC branches cannot work with this driver; Go returns an empty pair, not an error.
    fn parse_server_method(_uri: String) -> Result<ServerMethod, String> {
        Ok(ServerMethod {
            server: String::new(),
            method: String::new(),
        })
    }

    fn rewrite_http(url: String, registry: String) -> Result<Option<HttpTarget>, String> {
        rewrite(&url, &registry)
    }
}

impl Registrar for Driver {
    fn register_service(target: String, endpoint: String) -> Result<Registration, String> {
        let (servers, target) = parse_target(&target)?;
        let beat_ms = match u64::try_from(target.client.beat_interval) {
            Ok(0) | Err(_) => DEFAULT_BEAT_MS,
            Ok(ms) => ms,
        };
        let instance = instance(&servers, target.instance, &endpoint)?;
        servers.call(&WitHost, |nacos| nacos.register(&instance))?;
        registration(&State {
            servers,
            instance,
            beat_ms,
        })
    }

    /// A beat; the server may ask for another interval, or say it forgot the instance, which
    /// is then registered again.
    fn keep_alive(state: String) -> Result<Registration, String> {
        let mut state: State = regkit::read_state(&state)?;
        let beat = state
            .servers
            .call(&WitHost, |nacos| nacos.beat(&state.instance))?;
        if beat.unknown_instance {
            state
                .servers
                .call(&WitHost, |nacos| nacos.register(&state.instance))?;
        }
        if let Some(ms) = beat.interval_ms.filter(|&ms| ms > 0) {
            state.beat_ms = ms;
        }
        registration(&state)
    }

    fn deregister(state: String) -> Result<(), String> {
        let state: State = regkit::read_state(&state)?;
        state
            .servers
            .call(&WitHost, |nacos| nacos.deregister(&state.instance))
    }
}

sdk::export_driver!(Driver);

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = r#"{"addr": "127.0.0.1:8848,10.0.0.2:8848", "TYPE": "nacos",
        "ClientConfig": {"NamespaceId": "dev", "Username": "u", "Password": "p"},
        "instanceconfig": {"ServiceName": "dtmService", "Metadata": {"k": "v"},
            "Ephemeral": true, "Enable": true}}"#;

    #[test]
    fn targets_are_json_matched_without_case() {
        let (servers, target) = parse_target(TARGET).unwrap();
        assert_eq!(servers.addresses, ["127.0.0.1:8848", "10.0.0.2:8848"]);
        assert_eq!(servers.namespace, "dev");
        assert_eq!(servers.credentials, Some(("u".into(), "p".into())));
        let instance = instance(&servers, target.instance, "10.0.0.9:36789").unwrap();
        assert_eq!(
            instance,
            Instance {
                namespace_id: "dev".into(),
                service_name: "dtmService".into(),
                group_name: "DEFAULT_GROUP".into(),
                cluster_name: String::new(),
                ip: "10.0.0.9".into(),
                port: 36789,
                weight: 10.0,
                enable: true,
                healthy: false,
                ephemeral: true,
                metadata: serde_json::json!({"k": "v"}),
            }
        );
    }

    #[test]
    fn bad_targets_fail_as_in_go() {
        for (target, error) in [
            ("", "invalid options: "),
            (r#"{"Weight": "x"}"#, "unknown type: "),
            (
                r#"{"Type": "nacos", "InstanceConfig": {"Weight": "x"}}"#,
                "invalid options: ",
            ),
            (r#"{"Type": "eureka"}"#, "unknown type: eureka"),
            (
                r#"{"Type": "nacos", "Addr": "h"}"#,
                "new nacos client error: invalid endpoint: h",
            ),
            (
                r#"{"Type": "nacos", "Addr": "h:99999"}"#,
                "new nacos client error: invalid port in host h:99999, port: 99999",
            ),
        ] {
            let e = parse_target(target).err().unwrap();
            assert!(e.starts_with(error), "{target}: {e}");
        }
        assert!(ip_port("[::1]:80").is_err());
    }

    fn listed(ip: &str, weight: f64, healthy: bool, enabled: bool) -> Listed {
        Listed {
            ip: ip.into(),
            port: 80,
            weight,
            healthy,
            enabled,
            metadata: Default::default(),
        }
    }

    #[test]
    fn picks_by_truncated_weight_among_usable_instances() {
        let hosts = [
            listed("a", 1.9, true, true),
            listed("sick", 5.0, false, true),
            listed("off", 5.0, true, false),
            listed("b", 3.0, true, true),
            listed("zero", 0.0, true, true),
        ];
        let pick = |n| {
            choose(&hosts, |total| {
                assert_eq!(total, 4);
                n
            })
            .unwrap()
            .ip
            .clone()
        };
        assert_eq!([pick(0), pick(1), pick(3)], ["a", "b", "b"]);
        assert!(choose(&hosts[1..3], |_| 0).is_err());
        assert!(choose(&[listed("half", 0.5, true, true)], |_| 0).is_err());
    }

    #[test]
    fn the_rest_of_the_url_is_kept() {
        assert_eq!(
            after_authority("svc://busi/api/TransIn?group=g#f"),
            "/api/TransIn?group=g"
        );
        assert_eq!(after_authority("svc://busi?x=1"), "?x=1");
        assert_eq!(after_authority("svc://busi"), "");
    }
}
