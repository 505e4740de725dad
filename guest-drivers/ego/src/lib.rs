//! `dtm-driver-ego` (docs/drivers.md §4.6): ego's etcd registry and resolver.
//!
//! * Schemes: `etcd` (servers `etcd:///<name>`, read from the etcd cluster of
//!   `MicroService.Target`) and `k8s`, which is claimed only so that a `k8s:///` branch fails
//!   with a clear error rather than being dialed as a plain address: a driver cannot reach the
//!   Kubernetes API.
//! * parse-server-method: S1 without `///`; otherwise every `///` becomes `//` and the URL
//!   splits into `scheme:///host` and its path.
//! * Registration at an `etcd://` target: a permanent key
//!   `/ego/<name>/providers/grpc://<endpoint>` holding ego's service info, deleted on orderly
//!   shutdown (dtm never removed it). A `k8s://` target registers nothing: Kubernetes manages
//!   endpoints.

use gourl::Url;
use regkit::etcd::{Credentials, Etcd};
use sdk::host::now_ms;
use sdk::{Host, Registrar, Registration, Resolution, ServerMethod, WitHost};
use serde::{Deserialize, Serialize};

/// ego's registry prefix.
const PREFIX: &str = "/ego";
/// ego watches etcd; a driver cannot, so the host re-reads this often instead.
const REFRESH_MS: u64 = 5000;

/// ego's `server.ServiceInfo`, fields in its JSON order.
#[derive(Debug, Serialize)]
struct ServiceInfo {
    name: String,
    scheme: String,
    address: String,
    /// A number, so that 100 is written `100` as Go writes a float64, not `100.0`.
    weight: serde_json::Number,
    enable: bool,
    healthy: bool,
    metadata: Metadata,
    region: String,
    zone: String,
    kind: u8,
    deployment: String,
    group: String,
    services: Option<serde_json::Value>,
}

/// ego's app information, as its registry writes it (keys sorted, as Go writes a map).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    app_host: String,
    app_mode: String,
    app_version: String,
    build_time: String,
    ego_version: String,
    start_time: String,
}

/// ego's `constant.ServiceProvider`.
const SERVICE_PROVIDER: u8 = 1;

impl ServiceInfo {
    /// What ego registers for its gRPC server `name` at `address`: enabled, healthy, weight 100.
    fn provider(name: &str, address: &str, metadata: Metadata) -> Self {
        ServiceInfo {
            name: name.to_owned(),
            scheme: "grpc".into(),
            address: address.to_owned(),
            weight: 100.into(),
            enable: true,
            healthy: true,
            metadata,
            region: String::new(),
            zone: String::new(),
            kind: SERVICE_PROVIDER,
            deployment: String::new(),
            group: String::new(),
            services: None,
        }
    }
}

/// What a registration keeps until it is removed.
#[derive(Debug, Serialize, Deserialize)]
struct Registered {
    hosts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials: Option<Credentials>,
    key: String,
}

/// `2006-01-02 15:04:05` (ego's start-time layout) of `ms` since the epoch, in UTC: the
/// coordinator's time zone is not visible to a driver.
fn start_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The etcd account of a target: ego reads `userName` when `enableBasicAuth=true`, and has no
/// password parameter, so the password is empty.
fn credentials(url: &Url) -> Option<Credentials> {
    let query = url.query();
    let user = query.get("userName");
    (query.get("enableBasicAuth") == "true" && !user.is_empty()).then(|| Credentials {
        user: user.to_owned(),
        password: String::new(),
    })
}

/// A target's etcd hosts; ego has no default and Go panics without one.
fn etcd_hosts(url: &Url) -> Result<String, String> {
    if url.host.is_empty() {
        return Err("ego's etcd target needs a host, e.g. etcd://127.0.0.1:2379/dtmservice".into());
    }
    Ok(url.host.clone().into_owned())
}

fn register(host: &dyn Host, target: &str, endpoint: &str) -> Result<Registration, String> {
    let url = gourl::parse(target).map_err(|_| "invalid scheme".to_owned())?;
    match url.scheme.as_ref() {
        "etcd" => {}
        // Kubernetes manages the endpoints: nothing to register.
        "k8s" => return Ok(Registration::nothing()),
        _ => return Err("invalid scheme".into()),
    }
    let name = url.path_name();
    let info = ServiceInfo::provider(
        name,
        endpoint,
        Metadata {
            app_host: host.local_ipv4().unwrap_or_default(),
            start_time: start_time(now_ms()),
            ..Metadata::default()
        },
    );
    let value =
        serde_json::to_string(&info).map_err(|e| format!("cannot write the service info: {e}"))?;
    let registered = Registered {
        hosts: etcd_hosts(&url)?,
        credentials: credentials(&url),
        key: format!("{PREFIX}/{name}/providers/grpc://{endpoint}"),
    };
    Etcd::connect(host, &registered.hosts, registered.credentials.as_ref())?.put(
        &registered.key,
        &value,
        None,
    )?;
    let state = serde_json::to_string(&registered)
        .map_err(|e| format!("cannot keep the registration: {e}"))?;
    // A permanent key: nothing to renew.
    Ok(Registration {
        state,
        keep_alive_ms: 0,
    })
}

/// The addresses of ego service `name`: the providers under `/ego/<name>/`.
fn resolve(host: &dyn Host, name: &str, target: &str) -> Result<Vec<String>, String> {
    let url = gourl::parse(target).map_err(|e| format!("target '{target}': {e}"))?;
    if url.scheme != "etcd" {
        return Err(format!(
            "etcd:/// servers are read from the etcd cluster of MicroService.Target, \
             and '{target}' names none"
        ));
    }
    let prefix = format!("{PREFIX}/{name}/");
    let etcd = Etcd::connect(host, &etcd_hosts(&url)?, credentials(&url).as_ref())?;
    let addresses = etcd
        .range_prefix(&prefix)?
        .into_iter()
        .filter(|(key, _)| {
            key.strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with("providers/grpc"))
        })
        // Only `address` matters here; other services' writers may leave fields out.
        .filter_map(|(_, value)| {
            let info = serde_json::from_str::<serde_json::Value>(&value).ok()?;
            info["address"].as_str().map(str::to_owned)
        })
        .filter(|address| !address.is_empty());
    Ok(regkit::merged(addresses))
}

struct Ego;

impl sdk::Driver for Ego {
    const NAME: &'static str = "dtm-driver-ego";
    const SCHEMES: &'static [&'static str] = &["etcd", "k8s"];
    type Registrar = Self;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        if !uri.contains("///") {
            let (server, method) = gourl::split_first_slash(&uri)?;
            return Ok(ServerMethod { server, method });
        }
        // Go's `strings.Replace(uri, "///", "//", -1)` scans the same way.
        let uri = uri.replace("///", "//");
        let Ok(url) = gourl::parse(&uri) else {
            // Go swallows the parse error: an empty pair, which the host fails as a branch.
            return Ok(ServerMethod {
                server: String::new(),
                method: String::new(),
            });
        };
        Ok(ServerMethod {
            server: format!("{}:///{}", url.scheme, url.host),
            method: url.path.into_owned(),
        })
    }

    fn resolve(server: String, registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server).map_err(|e| format!("server '{server}': {e}"))?;
        match url.scheme.as_ref() {
            "etcd" => {
                let name = url.path_name();
                if name.is_empty() {
                    return Err(format!("server '{server}' names no service"));
                }
                Ok(Resolution {
                    endpoints: resolve(&WitHost, name, &registry)?,
                    refresh_ms: REFRESH_MS,
                })
            }
            scheme => Err(format!(
                "'{scheme}' servers need the Kubernetes API, which a driver cannot reach"
            )),
        }
    }
}

/// The key is permanent: the default keep-alive, never renewed, is all it needs.
impl Registrar for Ego {
    fn register_service(target: String, endpoint: String) -> Result<Registration, String> {
        if target.is_empty() {
            return Ok(Registration::nothing());
        }
        register(&WitHost, &target, &endpoint)
    }

    fn deregister(state: String) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        let registered: Registered = serde_json::from_str(&state)
            .map_err(|e| format!("not an ego registration state ({e}): {state}"))?;
        Etcd::connect(&WitHost, &registered.hosts, registered.credentials.as_ref())?
            .delete(&registered.key)
    }
}

sdk::export_driver!(Ego);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_use_go_layout() {
        assert_eq!(start_time(0), "1970-01-01 00:00:00");
        assert_eq!(start_time(1_709_210_096_789), "2024-02-29 12:34:56");
        assert_eq!(start_time(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn service_info_is_written_as_ego_does() {
        let info = ServiceInfo::provider("dtmservice", "localhost:36790", Metadata::default());
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"name":"dtmservice","scheme":"grpc","address":"localhost:36790","weight":100,"enable":true,"healthy":true,"metadata":{"appHost":"","appMode":"","appVersion":"","buildTime":"","egoVersion":"","startTime":""},"region":"","zone":"","kind":1,"deployment":"","group":"","services":null}"#
        );
    }
}
