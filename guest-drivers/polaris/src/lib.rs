//! `dtm-driver-polaris` (docs/drivers.md §4.4): gRPC URLs `polaris://<svc>/<method>?namespace=…`
//! are resolved through Polaris' discovery, and the coordinator registers itself as an instance
//! with a 5 s heartbeat.
//!
//! Deviations from Go, which talks gRPC to a Polaris server named in `polaris.yaml` (v0.0.5) or
//! in environment variables (v0.0.6):
//! * The Polaris server is reached over its HTTP API (docs/drivers.md §5.4) at the address in the
//!   target's query parameter `polaris` (`polaris://<ip>:<port>/<service>?namespace=<ns>&polaris=<host:port>`),
//!   default `127.0.0.1:8090`. Resolution reads it from `MicroService.Target` the same way.
//!   The host may only reach it when `MicroService.RegistryAddresses` names it.
//! * The heartbeat TTL is sent as 5 (Go sends the nanosecond count truncated to 32 bits).
//! * An empty service token skips registration, as in v0.0.5, the version dtm links.
//! * The host balances round robin over the usable instances instead of Polaris' weighted
//!   random choice.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use regkit::polaris::{Discovered, Heartbeat, Instance, Polaris};
use sdk::host::log;
use sdk::{Host, LogLevel, Registrar, Registration, Resolution, ServerMethod, WitHost};
use serde::{Deserialize, Serialize};

/// Where the Polaris HTTP API listens unless the target says otherwise.
const DEFAULT_POLARIS: &str = "127.0.0.1:8090";
/// Go's `PolarisTtl`, in seconds.
const TTL_S: u32 = 5;
/// Go heartbeats once per TTL.
const HEARTBEAT_MS: u64 = 5_000;
/// How long resolved endpoints stand: polaris-go refreshes its service cache every 2 s.
const REFRESH_MS: u64 = 2_000;
/// The namespace a dial target without one is looked up in.
const DEFAULT_NAMESPACE: &str = "default";

/// What the host keeps between heartbeats.
#[derive(Serialize, Deserialize)]
struct State {
    polaris: String,
    instance: Instance,
    /// Empty when Polaris did not tell; it then identifies the instance by its other fields.
    id: String,
}

/// The Polaris HTTP address a target names in its query, or the default.
fn polaris_address(query: &gourl::Query) -> String {
    match query.get("polaris") {
        "" => DEFAULT_POLARIS.to_owned(),
        address => address.to_owned(),
    }
}

/// `text` as Go's `json.Marshal` writes a string: HTML-sensitive `<`, `>`, `&` and the JS
/// line separators are escaped too, so the options value is byte-identical to Go's.
fn go_json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn split(uri: &str) -> Result<ServerMethod, String> {
    if !uri.contains("//") {
        let (server, method) = gourl::split_first_slash(uri)?;
        return Ok(ServerMethod { server, method });
    }
    let url = gourl::parse(uri).map_err(|e| format!("parse url failed, err: {e}"))?;
    let namespace = url.query().get("namespace").to_owned();
    let options = URL_SAFE.encode(format!("{{\"Namespace\":{}}}", go_json_string(&namespace)));
    Ok(ServerMethod {
        server: format!("{}://{}/?options={options}", url.scheme, url.host),
        method: url.path.into_owned(),
    })
}

/// The namespace in a dial target's `options` (b64url of JSON; Go matches the key without
/// regard to case); empty means `default`.
fn options_namespace(options: &str) -> Result<String, String> {
    if options.is_empty() {
        return Ok(DEFAULT_NAMESPACE.into());
    }
    let json = URL_SAFE
        .decode(options)
        .map_err(|e| format!("polaris options are not base64url ({e}): {options}"))?;
    let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json)
        .map_err(|e| format!("polaris options are not a JSON object ({e}): {options}"))?;
    let namespace = value
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("namespace"))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or_default();
    Ok(match namespace {
        "" => DEFAULT_NAMESPACE.into(),
        namespace => namespace.into(),
    })
}

/// Go's checks of the registration target, in its order: namespace, service, ip, port.
fn target_instance(
    host: &dyn Host,
    target: &str,
    token: &str,
) -> Result<(String, Instance), String> {
    let url = gourl::parse(target)?;
    let query = url.query();
    let namespace = query.get("namespace");
    if namespace.is_empty() {
        return Err(format!("namespace not found {target}"));
    }
    if url.path.len() <= 1 {
        return Err(format!("service not found {target}"));
    }
    let ip = match url.hostname().parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        // A DNS name or 0.0.0.0: the address the coordinator is reachable at locally.
        _ => host
            .local_ipv4()
            .ok_or_else(|| format!("ip not found {target}"))?,
    };
    let port = url
        .port()
        .parse::<u16>()
        .map_err(|e| format!("parse port failed {e}, target :{target}"))?;
    let instance = Instance {
        namespace: namespace.to_owned(),
        service: url.path[1..].to_owned(),
        host: ip,
        port,
        token: token.to_owned(),
    };
    Ok((polaris_address(&query), instance))
}

/// Registers and heartbeats at once, as Go does, so the instance is healthy right away. A
/// failed first heartbeat is only logged: the next one comes within the TTL.
fn register(host: &dyn Host, polaris: String, instance: Instance) -> Result<State, String> {
    let client = Polaris::new(host, &polaris);
    let id = client.register(&instance, TTL_S)?;
    if let Err(e) = client.heartbeat(&instance, &id) {
        log(LogLevel::Warn, &format!("first heartbeat failed: {e}"));
    }
    Ok(State {
        polaris,
        instance,
        id,
    })
}

fn registration(state: &State) -> Result<Registration, String> {
    Ok(Registration {
        state: regkit::write_state(state)?,
        keep_alive_ms: HEARTBEAT_MS,
    })
}

struct Driver;

impl sdk::Driver for Driver {
    const NAME: &'static str = "dtm-driver-polaris";
    const SCHEMES: &'static [&'static str] = &["polaris"];
    type Registrar = Self;

    fn parse_server_method(uri: String) -> Result<ServerMethod, String> {
        split(&uri)
    }

    /// `polaris://<service>/?options=<b64url>`: the usable instances, from the Polaris server
    /// that `registry` (`MicroService.Target`) names.
    fn resolve(server: String, registry: String) -> Result<Resolution, String> {
        let url = gourl::parse(&server)?;
        if url.host.is_empty() {
            return Err(format!("'{server}' names no service"));
        }
        let namespace = options_namespace(url.query().get("options"))?;
        let polaris = match registry.as_str() {
            "" => DEFAULT_POLARIS.to_owned(),
            registry => polaris_address(&gourl::parse(registry)?.query()),
        };
        let endpoints = Polaris::new(&WitHost, &polaris)
            .discover(&namespace, &url.host)?
            .iter()
            .filter(|instance| instance.usable())
            .map(Discovered::endpoint)
            .collect();
        Ok(Resolution {
            endpoints,
            refresh_ms: REFRESH_MS,
        })
    }
}

impl Registrar for Driver {
    /// `endpoint` is the service token; empty registers nothing (v0.0.5).
    fn register_service(target: String, endpoint: String) -> Result<Registration, String> {
        if endpoint.is_empty() {
            log(
                LogLevel::Info,
                "no service token (MicroService.EndPoint): not registering, as dtm does",
            );
            return Ok(Registration::nothing());
        }
        let (polaris, instance) = target_instance(&WitHost, &target, &endpoint)?;
        registration(&register(&WitHost, polaris, instance)?)
    }

    /// A heartbeat; an instance Polaris forgot (it missed its TTL) is registered again.
    fn keep_alive(state: String) -> Result<Registration, String> {
        let state: State = regkit::read_state(&state)?;
        let client = Polaris::new(&WitHost, &state.polaris);
        let state = match client.heartbeat(&state.instance, &state.id)? {
            Heartbeat::Alive => state,
            Heartbeat::Unknown => {
                log(
                    LogLevel::Warn,
                    "polaris forgot the instance: registering again",
                );
                register(&WitHost, state.polaris, state.instance)?
            }
        };
        registration(&state)
    }

    fn deregister(state: String) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        let state: State = regkit::read_state(&state)?;
        Polaris::new(&WitHost, &state.polaris).deregister(&state.instance, &state.id)
    }
}

sdk::export_driver!(Driver);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_the_namespace_as_go_marshals_it() {
        let escaped = split("polaris://svc/a.B/C?namespace=a%26b").unwrap();
        assert_eq!(
            escaped.server,
            "polaris://svc/?options=eyJOYW1lc3BhY2UiOiJhXHUwMDI2YiJ9"
        );
        assert_eq!(escaped.method, "/a.B/C");
        assert_eq!(
            go_json_string("<\"\\\u{1}\u{8}\n\u{2028}é>"),
            r#""\u003c\"\\\u0001\b\n\u2028é\u003e""#
        );
        assert!(split("polaris://svc:abc/a")
            .unwrap_err()
            .starts_with("parse url failed"));
        assert!(split("polaris").is_err());
    }

    #[test]
    fn options_decode_back_to_the_namespace() {
        assert_eq!(
            options_namespace("eyJOYW1lc3BhY2UiOiJUZXN0In0=").unwrap(),
            "Test"
        );
        assert_eq!(
            options_namespace("eyJOYW1lc3BhY2UiOiIifQ==").unwrap(),
            "default"
        );
        assert_eq!(options_namespace("").unwrap(), "default");
        let lower = URL_SAFE.encode(r#"{"namespace":"ns"}"#);
        assert_eq!(options_namespace(&lower).unwrap(), "ns");
        assert!(options_namespace("!!").is_err());
        assert!(options_namespace(&URL_SAFE.encode("[]")).is_err());
    }

    #[test]
    fn targets_are_checked_as_go_does() {
        let host = fake_host(Some("10.0.0.7"));
        let (polaris, instance) = target_instance(
            &host,
            "polaris://0.0.0.0:36790/dtm/svc?namespace=ns&polaris=p:8090",
            "t",
        )
        .unwrap();
        assert_eq!(polaris, "p:8090");
        assert_eq!(
            instance,
            Instance {
                namespace: "ns".into(),
                service: "dtm/svc".into(),
                host: "10.0.0.7".into(),
                port: 36790,
                token: "t".into(),
            }
        );
        let (polaris, instance) =
            target_instance(&host, "polaris://127.0.0.1:1/dtm?namespace=ns", "t").unwrap();
        assert_eq!(
            (polaris.as_str(), instance.host.as_str()),
            (DEFAULT_POLARIS, "127.0.0.1")
        );
        for (target, error) in [
            ("polaris://1.2.3.4:1/dtm", "namespace not found"),
            ("polaris://1.2.3.4:1/?namespace=ns", "service not found"),
            ("polaris://1.2.3.4/dtm?namespace=ns", "parse port failed"),
        ] {
            let e = target_instance(&host, target, "t").unwrap_err();
            assert!(e.starts_with(error), "{target}: {e}");
        }
        let e = target_instance(
            &fake_host(None),
            "polaris://localhost:1/dtm?namespace=ns",
            "t",
        )
        .unwrap_err();
        assert!(e.starts_with("ip not found"), "{e}");
    }

    /// A host with only a local address: the target checks send nothing.
    fn fake_host(ipv4: Option<&str>) -> impl Host {
        struct Local(Option<String>);
        impl Host for Local {
            fn send(&self, _: sdk::Request) -> Result<sdk::Response, String> {
                Err("no network in this test".into())
            }
            fn env(&self, _: &str) -> Option<String> {
                None
            }
            fn local_ipv4(&self) -> Option<String> {
                self.0.clone()
            }
        }
        Local(ipv4.map(str::to_owned))
    }
}
