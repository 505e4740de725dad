//! `dtm-driver-gozero` (docs/drivers.md §4.3): go-zero's service discovery as dtm's gozero driver
//! links it.
//!
//! * Schemes: `etcd` and `discov` (go-zero's etcd publisher and subscriber), `consul` and
//!   `nacos` (zero-contrib), `direct` (a fixed list), and `k8s`, which is claimed only so that
//!   a `k8s://` branch fails with a clear error rather than being dialed as a plain address: a
//!   driver cannot reach the Kubernetes API.
//! * parse-server-method: §4.3.1, the consul/nacos query cut included.
//! * Registration of the coordinator at `etcd`/`discov`, `consul` or `nacos` targets (§4.3.2);
//!   the registration's state is JSON naming the registry and what to renew and remove.
//! * Resolution re-reads the registry every few seconds (the Go clients watch or long-poll,
//!   which a driver cannot); the host balances over the endpoints, so go-zero's shuffle is not
//!   needed.

mod consul;
mod etcd;
mod nacos;

use sdk::host::log;
use sdk::{LogLevel, Registrar, Registration, Resolution, ServerMethod, WitHost};
use serde::{Deserialize, Serialize};

/// go-zero hands its balancer at most this many endpoints (etcd and direct).
const MAX_ENDPOINTS: usize = 32;

/// What a registration keeps between keep-alives: the host's opaque `state`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "registry", rename_all = "lowercase")]
enum State {
    Etcd(etcd::Registered),
    Consul(consul::Registered),
    Nacos(nacos::Registered),
}

/// A registration whose state is `state` as JSON.
fn registration(state: State, keep_alive_ms: u64) -> Result<Registration, String> {
    let state = serde_json::to_string(&state)
        .map_err(|e| format!("cannot keep the registration's state: {e}"))?;
    Ok(Registration {
        state,
        keep_alive_ms,
    })
}

fn state(text: &str) -> Result<State, String> {
    serde_json::from_str(text).map_err(|e| format!("not a gozero registration state ({e}): {text}"))
}

fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// §4.3.1: a URI naming consul or nacos loses its registry query (the text from the first `?`
/// up to the next `/`, and anything after a second `?`) before the usual split.
fn parse(uri: &str) -> Result<(String, String), String> {
    if !uri.contains("//") {
        return gourl::split_first_slash(uri);
    }
    if (uri.contains("consul") || uri.contains("nacos")) && uri.contains('?') {
        let mut parts = uri.split('?');
        let before = parts.next().unwrap_or_default();
        let query = parts.next().unwrap_or_default();
        let slash = query
            .find('/')
            .ok_or_else(|| format!("bad url: '{uri}'. no '/' found"))?;
        return gourl::split_service_segment(&format!("{before}{}", &query[slash..]));
    }
    gourl::split_service_segment(uri)
}

/// `direct:///a:1,b:2`: the listed endpoints, at most 32 like go-zero's.
fn direct(server: &str, url: &gourl::Url) -> Result<Resolution, String> {
    let mut endpoints: Vec<String> = url
        .path
        .trim_matches('/')
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        return Err(format!(
            "'{server}' lists no endpoint (direct:///host:port,host:port)"
        ));
    }
    endpoints.truncate(MAX_ENDPOINTS);
    Ok(Resolution {
        endpoints,
        // A fixed list never changes: the host's default interval is plenty.
        refresh_ms: 0,
    })
}

struct GoZero;

impl sdk::Driver for GoZero {
    const NAME: &'static str = "dtm-driver-gozero";
    const SCHEMES: &'static [&'static str] =
        &["etcd", "discov", "direct", "consul", "nacos", "k8s"];
    type Registrar = Self;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        parse(&uri).map(ServerMethod::from)
    }

    fn resolve(server: String, registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server).map_err(|e| format!("server '{server}': {e}"))?;
        match url.scheme.as_ref() {
            "etcd" | "discov" => etcd::resolve(&WitHost, &url, &registry),
            "consul" => consul::resolve(&WitHost, &url, &server),
            "nacos" => nacos::resolve(&WitHost, &url),
            "direct" => direct(&server, &url),
            "k8s" => Err(format!(
                "'{server}': k8s:// needs the Kubernetes API, which is not available to \
                 drivers; name the endpoints with direct:/// or use a registry"
            )),
            scheme => Err(format!("unknown scheme: {scheme}")),
        }
    }
}

impl Registrar for GoZero {
    fn register_service(target: String, endpoint: String) -> Result<Registration, String> {
        if target.is_empty() {
            return Ok(Registration::nothing());
        }
        let url = gourl::parse(&target).map_err(|e| format!("target '{target}': {e}"))?;
        match url.scheme.as_ref() {
            "etcd" | "discov" => etcd::register(&WitHost, &url, &endpoint),
            "consul" => consul::register(&WitHost, &url, &endpoint),
            "nacos" => nacos::register(&WitHost, &url, &endpoint),
            scheme => Err(format!("unknown scheme: {scheme}")),
        }
    }

    fn keep_alive(text: String) -> Result<Registration, String> {
        if text.is_empty() {
            return Ok(Registration::nothing());
        }
        match state(&text)? {
            State::Etcd(registered) => etcd::keep_alive(&WitHost, registered),
            State::Consul(registered) => consul::keep_alive(&WitHost, registered),
            State::Nacos(registered) => nacos::keep_alive(&WitHost, registered),
        }
    }

    fn deregister(text: String) -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        match state(&text)? {
            State::Etcd(registered) => etcd::deregister(&WitHost, &registered),
            State::Consul(registered) => consul::deregister(&WitHost, &registered),
            State::Nacos(registered) => nacos::deregister(&WitHost, &registered),
        }
    }
}

sdk::export_driver!(GoZero);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_and_nacos_lose_their_registry_query() {
        assert_eq!(
            parse("consul://127.0.0.1:8500/trans.rpc?wait=14s/trans.TransSvc/TransOut").unwrap(),
            (
                "consul://127.0.0.1:8500/trans.rpc".to_owned(),
                "/trans.TransSvc/TransOut".to_owned()
            )
        );
        assert_eq!(
            parse("nacos://127.0.0.1:8848/trans.rpc?a=1?b=2/x.Y/Z").unwrap_err(),
            "bad url: 'nacos://127.0.0.1:8848/trans.rpc?a=1?b=2/x.Y/Z'. no '/' found"
        );
        assert_eq!(
            parse("etcd://localhost:2379/trans?x=1/trans.TransSvc/TransOut").unwrap(),
            ("etcd://localhost:2379".to_owned(), "/trans".to_owned())
        );
        assert_eq!(
            parse("localhost:8080/a.B/C").unwrap(),
            ("localhost:8080".to_owned(), "/a.B/C".to_owned())
        );
        assert!(parse("etcd://localhost:2379").is_err());
    }

    #[test]
    fn direct_lists_drop_empty_pieces_and_stop_at_32() {
        let resolve = |server: &str| direct(server, &gourl::parse(server).unwrap());
        assert_eq!(
            resolve("direct:///a:1,,b:2").unwrap().endpoints,
            ["a:1", "b:2"]
        );
        let many: Vec<String> = (0..40).map(|i| format!("h:{i}")).collect();
        let server = format!("direct:///{}", many.join(","));
        assert_eq!(resolve(&server).unwrap().endpoints.len(), 32);
        assert!(resolve("direct://a:1/").is_err());
    }
}
