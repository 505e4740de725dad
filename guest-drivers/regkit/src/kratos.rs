//! What the kratos and sponge drivers share (docs/drivers.md §4.5, §4.9): kratos' service instance,
//! its etcd registry (a leased key under `/microservices/<name>/`, renewed every 5 s and put
//! again when the lease is lost) and discovery from etcd or Consul, ending in kratos' pick of
//! the first insecure `grpc://` endpoint of each instance.

use std::marker::PhantomData;

use sdk::{Host, LogLevel, Registration, WitHost};
use serde::{Deserialize, Serialize};

use crate::consul::Consul;
use crate::etcd::{Credentials, Etcd};

/// kratos' etcd lease.
const LEASE_TTL_SECS: u64 = 15;
/// The etcd Go client renews a lease at a third of its TTL.
pub const ETCD_KEEP_ALIVE_MS: u64 = LEASE_TTL_SECS * 1000 / 3;
/// kratos watches etcd and long-polls Consul; a driver cannot, so the host re-resolves this
/// often instead.
pub const REFRESH_MS: u64 = 5000;

/// kratos' `registry.ServiceInstance`, fields in its JSON order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub version: String,
    /// Always null in what dtm registers; kept as kratos writes it.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub endpoints: Vec<String>,
}

impl Instance {
    /// The etcd key kratos writes the instance under.
    pub fn key(&self) -> String {
        format!("/microservices/{}/{}", self.name, self.id)
    }
}

/// The parts of an endpoint URL (`grpc://10.0.0.5:36790?isSecure=false`) kratos looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint<'a> {
    /// Lower-cased, as Go's url.Parse leaves it.
    pub scheme: String,
    /// `host:port`.
    pub host: &'a str,
    pub hostname: &'a str,
    /// 0 when absent or not a number (Go's `ParseUint` error ignored).
    pub port: u16,
    query: &'a str,
}

impl<'a> Endpoint<'a> {
    /// None for anything without `scheme://`. Endpoints are plain `scheme://host:port[?query]`,
    /// so this reads them without a full URL parser.
    pub fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !valid {
            return None;
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let host = before_query.split('/').next().unwrap_or_default();
        let (hostname, port) = match host.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => (name, port),
            _ => (host, ""),
        };
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            host,
            hostname: hostname.trim_start_matches('[').trim_end_matches(']'),
            port: port.parse().unwrap_or(0),
            query,
        })
    }

    /// kratos' `IsSecure`: query `isSecure` read with Go's `strconv.ParseBool`, false when
    /// absent or unreadable.
    fn is_secure(&self) -> bool {
        let value = self
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("isSecure="))
            .unwrap_or_default();
        matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
    }
}

/// The address kratos dials for an instance: the host of its first `grpc` endpoint that is not
/// secure (dtm builds kratos' resolver with insecure=true); none when it has no such endpoint.
pub fn grpc_address<S: AsRef<str>>(endpoints: &[S]) -> Option<String> {
    endpoints
        .iter()
        .filter_map(|e| Endpoint::parse(e.as_ref()))
        .find(|e| e.scheme == "grpc" && !e.is_secure() && !e.host.is_empty())
        .map(|e| e.host.to_owned())
}

/// What an etcd registration keeps between keep-alives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdRegistered {
    /// Comma-separated etcd endpoints.
    pub hosts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    pub key: String,
    pub value: String,
    pub lease: String,
}

/// Grants a 15 s lease and puts the instance under it.
pub fn etcd_register(
    host: &dyn Host,
    hosts: &str,
    credentials: Option<Credentials>,
    instance: &Instance,
) -> Result<EtcdRegistered, String> {
    let value = serde_json::to_string(instance)
        .map_err(|e| format!("cannot write the service instance: {e}"))?;
    let mut registered = EtcdRegistered {
        hosts: hosts.to_owned(),
        credentials,
        key: instance.key(),
        value,
        lease: String::new(),
    };
    let etcd = Etcd::connect(host, hosts, registered.credentials.as_ref())?;
    registered.lease = put_leased(&etcd, &registered.key, &registered.value)?;
    Ok(registered)
}

fn put_leased(etcd: &Etcd, key: &str, value: &str) -> Result<String, String> {
    let lease = etcd.grant(LEASE_TTL_SECS)?;
    etcd.put(key, value, Some(&lease))?;
    Ok(lease)
}

/// Renews the lease; when etcd lost it, puts the same key again under a new lease, as kratos
/// does. Returns whether it had to. (kratos gives up after 5 failed attempts; the host calls
/// again every period, which keeps trying instead.)
pub fn etcd_keep_alive(host: &dyn Host, registered: &mut EtcdRegistered) -> Result<bool, String> {
    let etcd = Etcd::connect(host, &registered.hosts, registered.credentials.as_ref())?;
    if etcd.keep_alive(&registered.lease)? {
        return Ok(false);
    }
    registered.lease = put_leased(&etcd, &registered.key, &registered.value)?;
    Ok(true)
}

/// Revokes the lease, which deletes the key (kratos leaves it to expire).
pub fn etcd_deregister(host: &dyn Host, registered: &EtcdRegistered) -> Result<(), String> {
    Etcd::connect(host, &registered.hosts, registered.credentials.as_ref())?
        .revoke(&registered.lease)
}

/// The addresses of service `name` in etcd: every instance under `/microservices/<name>` (no
/// trailing slash, as kratos reads it) whose JSON names exactly `name`.
pub fn etcd_discover(
    host: &dyn Host,
    hosts: &str,
    credentials: Option<&Credentials>,
    name: &str,
) -> Result<Vec<String>, String> {
    let etcd = Etcd::connect(host, hosts, credentials)?;
    let addresses = etcd
        .range_prefix(&format!("/microservices/{name}"))?
        .into_iter()
        .filter_map(|(_, value)| serde_json::from_str::<Instance>(&value).ok())
        .filter(|instance| instance.name == name)
        .filter_map(|instance| grpc_address(&instance.endpoints));
    Ok(crate::merged(addresses))
}

/// Consul's tagged addresses that are not instance endpoints.
const CONSUL_OWN_TAGS: [&str; 4] = ["lan_ipv4", "wan_ipv4", "lan_ipv6", "wan_ipv6"];

/// The AgentServiceRegistration kratos sends, without checks: ID (omitted when empty, so Consul
/// uses the name), Name, Tags `version=<version>`, TaggedAddresses per endpoint scheme, and
/// Address/Port from the first endpoint. Each endpoint must be `scheme://host:port`.
pub fn consul_service(instance: &Instance) -> Result<serde_json::Value, String> {
    let mut tagged = serde_json::Map::new();
    let mut first = None;
    for url in &instance.endpoints {
        let endpoint = Endpoint::parse(url)
            .filter(|e| !e.hostname.is_empty() && e.port != 0)
            .ok_or_else(|| {
                format!("endpoint '{url}' is not a URL like grpc://host:port, which consul needs")
            })?;
        tagged.insert(
            endpoint.scheme.clone(),
            serde_json::json!({"Address": url, "Port": endpoint.port}),
        );
        first.get_or_insert(endpoint);
    }
    let first = first.ok_or("no endpoint to register")?;
    let mut service = serde_json::json!({
        "Name": instance.name,
        "Tags": [format!("version={}", instance.version)],
        "Port": first.port,
        "Address": first.hostname,
        "TaggedAddresses": tagged,
    });
    if !instance.id.is_empty() {
        service["ID"] = instance.id.clone().into();
    }
    if let Some(metadata) = &instance.metadata {
        service["Meta"] = metadata.clone().into();
    }
    Ok(service)
}

/// `host:port` of each endpoint, for Consul's TCP checks.
pub fn tcp_check_addresses(instance: &Instance) -> Vec<String> {
    instance
        .endpoints
        .iter()
        .filter_map(|url| Endpoint::parse(url))
        .map(|e| format!("{}:{}", e.hostname, e.port))
        .collect()
}

/// The addresses of service `name` in Consul: passing instances only, each instance's endpoints
/// from its TaggedAddresses (else `http://Address:Port`), then the grpc pick.
pub fn consul_discover(consul: &Consul, name: &str) -> Result<Vec<String>, String> {
    let entries = consul.health_service(name, true)?;
    let addresses = entries
        .iter()
        .filter_map(|entry| grpc_address(&consul_endpoints(&entry["Service"])));
    Ok(crate::merged(addresses))
}

fn consul_endpoints(service: &serde_json::Value) -> Vec<String> {
    let mut endpoints: Vec<String> = service["TaggedAddresses"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| !CONSUL_OWN_TAGS.contains(&key.as_str()))
        .filter_map(|(_, tagged)| tagged["Address"].as_str().map(str::to_owned))
        .collect();
    let address = service["Address"].as_str().unwrap_or_default();
    let port = service["Port"].as_u64().unwrap_or(0);
    if endpoints.is_empty() && !address.is_empty() && port != 0 {
        endpoints.push(format!("http://{address}:{port}"));
    }
    endpoints
}

/// How often kratos passes its TTL check (it waits 1 s before the first time).
pub const CONSUL_HEARTBEAT_MS: u64 = 10_000;

/// What a Consul registration keeps between keep-alives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsulRegistered {
    /// The agent's `host:port`.
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub service_id: String,
    /// The TTL check to pass every [`CONSUL_HEARTBEAT_MS`]; none when only Consul's own
    /// checks (TCP) watch the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_check: Option<String>,
}

/// What a Nacos registration (sponge) keeps between beats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NacosRegistered {
    /// The server's `host:port`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<(String, String)>,
    pub instance: crate::nacos::Instance,
}

impl NacosRegistered {
    pub fn connect<'h>(&self, host: &'h dyn Host) -> Result<crate::nacos::Nacos<'h>, String> {
        let credentials = self
            .credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()));
        crate::nacos::Nacos::connect(host, &self.address, credentials)
    }
}

/// A kratos or sponge driver's registration state (the host's opaque `state`, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "registry", rename_all = "lowercase")]
pub enum Registered {
    Etcd(EtcdRegistered),
    Consul(ConsulRegistered),
    Nacos(NacosRegistered),
}

impl Registered {
    pub fn from_state(state: &str) -> Result<Self, String> {
        serde_json::from_str(state).map_err(|e| format!("not a registration state ({e}): {state}"))
    }

    pub fn to_state(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| format!("cannot keep the registration: {e}"))
    }

    /// Renews the registration: the etcd lease (put again when lost), the Consul TTL check or a
    /// Nacos beat (registering again when the server forgot the instance). Returns when to
    /// renew next (0 = never) and, when it had to register again, a line to log.
    pub fn keep_alive(&mut self, host: &dyn Host) -> Result<(u64, Option<String>), String> {
        match self {
            Registered::Etcd(etcd) => {
                let again = etcd_keep_alive(host, etcd)?;
                let note = again.then(|| {
                    format!(
                        "etcd lost the lease of {}; put it again under lease {}",
                        etcd.key, etcd.lease
                    )
                });
                Ok((ETCD_KEEP_ALIVE_MS, note))
            }
            Registered::Consul(consul) => match &consul.ttl_check {
                Some(check) => {
                    Consul::new(host, &consul.agent, consul.token.clone())
                        .pass_ttl(check, "pass")?;
                    Ok((CONSUL_HEARTBEAT_MS, None))
                }
                None => Ok((0, None)),
            },
            Registered::Nacos(nacos) => {
                let (next, again) = nacos.connect(host)?.beat_or_register(&nacos.instance)?;
                let note = again.then(|| {
                    format!(
                        "nacos no longer knew {}:{} of '{}'; registered it again",
                        nacos.instance.ip, nacos.instance.port, nacos.instance.service_name
                    )
                });
                Ok((next, note))
            }
        }
    }

    /// [`Registered::keep_alive`] of the registration kept as host state `state` (from
    /// [`Registered::to_state`]; empty when nothing was registered, which stays so): the state
    /// to keep and when to renew next (0 = never). `warn` gets the line to log, if any.
    pub fn renew_state(
        host: &dyn Host,
        state: &str,
        warn: impl FnOnce(&str),
    ) -> Result<(String, u64), String> {
        if state.is_empty() {
            return Ok((String::new(), 0));
        }
        let mut registered = Self::from_state(state)?;
        let (next, note) = registered.keep_alive(host)?;
        if let Some(note) = note {
            warn(&note);
        }
        Ok((registered.to_state()?, next))
    }

    /// [`Registered::deregister`] of the registration kept as host state `state`; nothing to do
    /// when it is empty.
    pub fn deregister_state(host: &dyn Host, state: &str) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        Self::from_state(state)?.deregister(host)
    }

    /// Removes the registration (kratos and sponge never do; they leave it to expire).
    pub fn deregister(&self, host: &dyn Host) -> Result<(), String> {
        match self {
            Registered::Etcd(etcd) => etcd_deregister(host, etcd),
            Registered::Consul(consul) => Consul::new(host, &consul.agent, consul.token.clone())
                .deregister_service(&consul.service_id),
            Registered::Nacos(nacos) => nacos.connect(host)?.deregister(&nacos.instance),
        }
    }
}

/// What a kratos-style driver (kratos, sponge) registers: the two differ in the targets they
/// accept and the instance they make of the endpoint.
pub trait Register {
    /// Registers the coordinator, reachable at `endpoint`, in the registry `target` (never
    /// empty) names; returns the registration and how often to renew it (0 = never).
    fn register(target: &str, endpoint: &str) -> Result<(Registered, u64), String>;
}

/// The [`sdk::Registrar`] of a kratos-style driver `R` (`type Registrar = Registrar<Self>`):
/// nothing for an empty target, else what `R` registers, kept as a [`Registered`]; a keep-alive
/// renews it and logs a warning when it had to register again; deregistering removes it.
pub struct Registrar<R>(PhantomData<R>);

impl<R: Register> sdk::Registrar for Registrar<R> {
    fn register_service(target: String, endpoint: String) -> Result<Registration, String> {
        if target.is_empty() {
            return Ok(Registration::nothing());
        }
        let (registered, keep_alive_ms) = R::register(&target, &endpoint)?;
        Ok(Registration {
            state: registered.to_state()?,
            keep_alive_ms,
        })
    }

    fn keep_alive(state: String) -> Result<Registration, String> {
        let (state, keep_alive_ms) = Registered::renew_state(&WitHost, &state, |note| {
            sdk::host::log(LogLevel::Warn, note)
        })?;
        Ok(Registration {
            state,
            keep_alive_ms,
        })
    }

    fn deregister(state: String) -> Result<(), String> {
        Registered::deregister_state(&WitHost, &state)
    }
}

/// `MicroService.Target`, where `discovery:///<name>` is looked up; an error when it is empty.
pub fn discovery_target(target: &str) -> Result<&str, String> {
    if target.is_empty() {
        return Err(
            "discovery:// servers are looked up where the coordinator registered, \
             and MicroService.Target names no registry"
                .into(),
        );
    }
    Ok(target)
}

/// A registry `discovery:///<name>` is looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registry {
    Etcd {
        hosts: String,
        credentials: Option<Credentials>,
    },
    Consul {
        agent: String,
        token: Option<String>,
    },
}

/// The addresses of service `name` in `registry`.
pub fn discover(host: &dyn Host, registry: &Registry, name: &str) -> Result<Vec<String>, String> {
    match registry {
        Registry::Etcd { hosts, credentials } => {
            etcd_discover(host, hosts, credentials.as_ref(), name)
        }
        Registry::Consul { agent, token } => {
            consul_discover(&Consul::new(host, agent, token.clone()), name)
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;
    use crate::fake::FakeHost;

    fn instance() -> Instance {
        Instance {
            id: "id1".into(),
            name: "dtmservice".into(),
            version: String::new(),
            metadata: None,
            endpoints: vec!["grpc://localhost:36790".into()],
        }
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn body(host: &FakeHost, n: usize) -> serde_json::Value {
        serde_json::from_slice(&host.sent.borrow()[n].body).unwrap()
    }

    #[test]
    fn an_empty_state_is_nothing_to_renew_or_remove() {
        let host = FakeHost::default();
        let renewed = Registered::renew_state(&host, "", |note| panic!("{note}")).unwrap();
        assert_eq!(renewed, (String::new(), 0));
        Registered::deregister_state(&host, "").unwrap();
        assert!(host.sent.borrow().is_empty());
    }

    /// A driver whose registrations all fail, naming the target.
    struct Refusing;

    impl Register for Refusing {
        fn register(target: &str, _endpoint: &str) -> Result<(Registered, u64), String> {
            Err(format!("asked for '{target}'"))
        }
    }

    #[test]
    fn only_a_target_is_registered_at() {
        use sdk::Registrar as _;
        type Tried = Registrar<Refusing>;
        let nothing = Tried::register_service(String::new(), "grpc://h:1".into());
        assert_eq!(nothing, Ok(Registration::nothing()));
        let tried = Tried::register_service("etcd://e:2379/dtm".into(), "grpc://h:1".into());
        assert_eq!(tried.unwrap_err(), "asked for 'etcd://e:2379/dtm'");
        assert_eq!(
            Tried::keep_alive(String::new()),
            Ok(Registration::nothing())
        );
        assert_eq!(Tried::deregister(String::new()), Ok(()));
    }

    #[test]
    fn instances_are_written_as_kratos_does() {
        assert_eq!(
            serde_json::to_string(&instance()).unwrap(),
            r#"{"id":"id1","name":"dtmservice","version":"","metadata":null,"endpoints":["grpc://localhost:36790"]}"#
        );
        assert_eq!(instance().key(), "/microservices/dtmservice/id1");
    }

    #[test]
    fn endpoints_pick_the_first_insecure_grpc_one() {
        let pick = |list: &[&str]| grpc_address(list);
        assert_eq!(pick(&["grpc://a:1"]), Some("a:1".into()));
        assert_eq!(
            pick(&[
                "http://h:80",
                "grpc://s:1?isSecure=true",
                "GRPC://b:2?isSecure=false",
                "grpc://c:3"
            ]),
            Some("b:2".into())
        );
        assert_eq!(pick(&["grpc://a:1?isSecure=1"]), None);
        assert_eq!(pick(&["grpc://a:1?isSecure=maybe"]), Some("a:1".into()));
        assert_eq!(pick(&["localhost:36790", "http://h:80"]), None);
        assert_eq!(pick(&["grpc://[::1]:9/x"]), Some("[::1]:9".into()));
        let e = Endpoint::parse("grpc://[::1]:9").unwrap();
        assert_eq!((e.hostname, e.port), ("::1", 9));
    }

    #[test]
    fn etcd_registration_lease_loss_and_deregistration() {
        let host = FakeHost::default();
        host.answer(200, json!({"ID": "7", "TTL": "15"}));
        host.answer(200, json!({"header": {}}));
        let mut registered = etcd_register(&host, "127.0.0.1:2379", None, &instance()).unwrap();
        assert_eq!(registered.lease, "7");
        assert_eq!(body(&host, 0)["TTL"], 15);
        assert_eq!(
            body(&host, 1),
            json!({
                "key": b64("/microservices/dtmservice/id1"),
                "value": b64(r#"{"id":"id1","name":"dtmservice","version":"","metadata":null,"endpoints":["grpc://localhost:36790"]}"#),
                "lease": "7",
            })
        );

        host.answer(200, json!({"result": {"ID": "7", "TTL": "15"}}));
        assert!(!etcd_keep_alive(&host, &mut registered).unwrap());
        // Lost: the same key goes back under a new lease.
        host.answer(200, json!({"result": {"ID": "7"}}));
        host.answer(200, json!({"ID": "8", "TTL": "15"}));
        host.answer(200, json!({"header": {}}));
        assert!(etcd_keep_alive(&host, &mut registered).unwrap());
        assert_eq!(registered.lease, "8");
        assert_eq!(body(&host, 5)["key"], b64("/microservices/dtmservice/id1"));
        assert_eq!(body(&host, 5)["lease"], "8");

        host.answer(200, json!({"header": {}}));
        etcd_deregister(&host, &registered).unwrap();
        let sent = host.sent.borrow();
        assert_eq!(sent[6].url, "http://127.0.0.1:2379/v3/lease/revoke");
        assert_eq!(body(&host, 6), json!({"ID": "8"}));
    }

    #[test]
    fn etcd_discovery_reads_the_prefix_and_filters_by_name() {
        let host = FakeHost::default();
        let value = |name: &str, endpoints: &[&str]| {
            b64(&json!({"id": "x", "name": name, "version": "", "metadata": null, "endpoints": endpoints}).to_string())
        };
        host.answer(
            200,
            json!({"kvs": [
                {"key": b64("/microservices/trans/a"), "value": value("trans", &["http://h:1", "grpc://10.0.0.1:9000"])},
                {"key": b64("/microservices/trans/b"), "value": value("trans", &["grpc://10.0.0.1:9000"])},
                {"key": b64("/microservices/transfer/c"), "value": value("transfer", &["grpc://10.0.0.9:9000"])},
                {"key": b64("/microservices/trans/d"), "value": b64("not json")},
                {"key": b64("/microservices/trans/e"), "value": value("trans", &["grpc://10.0.0.2:9000?isSecure=true"])},
            ], "count": "5"}),
        );
        let found = etcd_discover(&host, "127.0.0.1:2379", None, "trans").unwrap();
        assert_eq!(found, ["10.0.0.1:9000"]);
        assert_eq!(
            body(&host, 0),
            json!({"key": "L21pY3Jvc2VydmljZXMvdHJhbnM=", "range_end": "L21pY3Jvc2VydmljZXMvdHJhbnQ="})
        );
    }

    #[test]
    fn consul_service_matches_the_worked_example() {
        let mut kratos = instance();
        kratos.id.clear();
        let mut service = consul_service(&kratos).unwrap();
        service["Checks"] = json!([
            {"Interval": "10s", "Timeout": "5s", "TCP": tcp_check_addresses(&kratos)[0], "DeregisterCriticalServiceAfter": "600s"},
            {"CheckID": "service:", "TTL": "20s", "DeregisterCriticalServiceAfter": "600s"},
        ]);
        let expected: serde_json::Value = serde_json::from_str(r#"{"Name":"dtmservice","Tags":["version="],"Port":36790,"Address":"localhost","TaggedAddresses":{"grpc":{"Address":"grpc://localhost:36790","Port":36790}},"Checks":[{"Interval":"10s","Timeout":"5s","TCP":"localhost:36790","DeregisterCriticalServiceAfter":"600s"},{"CheckID":"service:","TTL":"20s","DeregisterCriticalServiceAfter":"600s"}]}"#).unwrap();
        assert_eq!(service, expected);
        assert_eq!(consul_service(&instance()).unwrap()["ID"], "id1");
        let mut bare = instance();
        bare.endpoints = vec!["localhost:36790".into()];
        assert!(consul_service(&bare).is_err());
        bare.endpoints.clear();
        assert!(consul_service(&bare).is_err());
    }

    #[test]
    fn states_round_trip_and_renew_their_registry() {
        let consul = Registered::Consul(ConsulRegistered {
            agent: "127.0.0.1:8500".into(),
            token: None,
            service_id: "id1".into(),
            ttl_check: Some("service:id1".into()),
        });
        let state = consul.to_state().unwrap();
        assert_eq!(
            state,
            r#"{"registry":"consul","agent":"127.0.0.1:8500","service_id":"id1","ttl_check":"service:id1"}"#
        );
        let mut back = Registered::from_state(&state).unwrap();
        assert_eq!(back, consul);
        assert!(Registered::from_state("").is_err());

        let host = FakeHost::default();
        host.answer(200, json!(null));
        host.answer(200, json!(null));
        assert_eq!(back.keep_alive(&host).unwrap(), (CONSUL_HEARTBEAT_MS, None));
        back.deregister(&host).unwrap();
        let sent = host.sent.borrow();
        assert_eq!(
            sent[0].url,
            "http://127.0.0.1:8500/v1/agent/check/update/service%3Aid1"
        );
        assert_eq!(
            sent[1].url,
            "http://127.0.0.1:8500/v1/agent/service/deregister/id1"
        );
        drop(sent);

        let mut tcp_only = Registered::Consul(ConsulRegistered {
            agent: "a:1".into(),
            token: None,
            service_id: "x".into(),
            ttl_check: None,
        });
        assert_eq!(tcp_only.keep_alive(&host).unwrap(), (0, None));
        assert_eq!(host.sent.borrow().len(), 2, "nothing sent");
    }

    #[test]
    fn consul_discovery_uses_tagged_addresses() {
        let host = FakeHost::default();
        host.answer(
            200,
            json!([
                {"Node": {"Address": "127.0.0.1"}, "Service": {"Address": "10.0.0.1", "Port": 9000,
                  "TaggedAddresses": {"grpc": {"Address": "grpc://10.0.0.1:9000", "Port": 9000},
                                      "lan_ipv4": {"Address": "10.0.0.1", "Port": 9000}}}},
                {"Node": {"Address": "127.0.0.1"}, "Service": {"Address": "10.0.0.2", "Port": 9001,
                  "TaggedAddresses": {"lan_ipv4": {"Address": "10.0.0.2", "Port": 9001}}}},
                {"Node": {"Address": "127.0.0.1"}, "Service": {"Address": "10.0.0.3", "Port": 9002,
                  "TaggedAddresses": {"grpc": {"Address": "grpc://10.0.0.3:9002", "Port": 9002}}}}
            ]),
        );
        let consul = Consul::new(&host, "127.0.0.1:8500", None);
        let found = consul_discover(&consul, "trans").unwrap();
        // The second has only http://10.0.0.2:9001: no grpc endpoint, skipped.
        assert_eq!(found, ["10.0.0.1:9000", "10.0.0.3:9002"]);
        assert_eq!(
            host.sent.borrow()[0].url,
            "http://127.0.0.1:8500/v1/health/service/trans?passing=1"
        );
    }
}
