//! Nacos open API v1 (docs/drivers.md §5.3).

use sdk::{Host, Request, Response};
use serde::{Deserialize, Serialize};

/// An instance to register, beat and deregister.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub namespace_id: String,
    /// Without the group.
    pub service_name: String,
    pub group_name: String,
    pub cluster_name: String,
    pub ip: String,
    pub port: u16,
    pub weight: f64,
    pub enable: bool,
    pub healthy: bool,
    pub ephemeral: bool,
    /// A JSON object.
    pub metadata: serde_json::Value,
}

/// What a heartbeat answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// `clientBeatInterval`, when the server sets one.
    pub interval_ms: Option<u64>,
    /// Code 20404: the server does not know the instance; register it again.
    pub unknown_instance: bool,
}

/// One instance of an instance list.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub ip: String,
    pub port: u16,
    pub weight: f64,
    pub healthy: bool,
    pub enabled: bool,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// An instance list and how long it may be cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub cache_millis: Option<u64>,
    pub hosts: Vec<Listed>,
}

/// A client of one Nacos server.
pub struct Nacos<'h> {
    host: &'h dyn Host,
    base: String,
    token: Option<String>,
}

/// The beat Nacos expects, fields in the Go SDK's order (docs/drivers.md §5.3 worked example).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BeatInfo<'a> {
    ip: &'a str,
    port: u16,
    weight: serde_json::Number,
    service_name: &'a str,
    cluster: &'a str,
    metadata: &'a serde_json::Value,
    scheduled: bool,
}

/// Go prints a float64 weight without a fraction when it has none (`1`, not `1.0`).
fn weight_text(weight: f64) -> String {
    weight_number(weight).to_string()
}

fn weight_number(weight: f64) -> serde_json::Number {
    if weight.fract() == 0.0 && weight.abs() < 9.0e15 {
        serde_json::Number::from(weight as i64)
    } else {
        serde_json::Number::from_f64(weight).unwrap_or_else(|| serde_json::Number::from(0))
    }
}

fn grouped_name(group: &str, service: &str) -> String {
    format!("{group}@@{service}")
}

impl Instance {
    fn grouped_name(&self) -> String {
        grouped_name(&self.group_name, &self.service_name)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    access_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BeatAnswer {
    client_beat_interval: Option<u64>,
    code: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAnswer {
    cache_millis: Option<u64>,
    #[serde(default)]
    hosts: Vec<ListedHost>,
}

#[derive(Deserialize)]
struct ListedHost {
    ip: String,
    port: u16,
    #[serde(default)]
    weight: f64,
    #[serde(default)]
    healthy: bool,
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How often the Go SDKs beat an ephemeral instance unless the server says otherwise.
pub const BEAT_MS: u64 = 5000;

/// Nacos' code for a beat of an instance it does not know.
const UNKNOWN_INSTANCE: u64 = 20404;

impl<'h> Nacos<'h> {
    /// `address` is `host:port`; with `(user, password)` it logs in first and sends the
    /// access token on every call.
    pub fn connect(
        host: &'h dyn Host,
        address: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<Self, String> {
        let mut nacos = Self {
            host,
            base: format!("http://{address}/nacos"),
            token: None,
        };
        if let Some((user, password)) = credentials {
            let answer = nacos.call(
                "POST",
                "/v1/auth/users/login",
                &[("username", user), ("password", password)],
            )?;
            nacos.token = Some(answer.json::<LoginAnswer>()?.access_token);
        }
        Ok(nacos)
    }

    /// Sends every parameter in the query string (which Nacos reads for every method, §5.3);
    /// anything but a 2xx answer is an error carrying Nacos' text.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Response, String> {
        let mut params = params.to_vec();
        if let Some(token) = &self.token {
            params.push(("accessToken", token));
        }
        let answer = self.host.send(Request {
            method,
            url: format!("{}{path}?{}", self.base, crate::encode_query(&params)),
            headers: Vec::new(),
            body: Vec::new(),
        });
        crate::successful(answer, &format!("nacos {method} {path}"))
    }

    pub fn register(&self, instance: &Instance) -> Result<(), String> {
        let service = instance.grouped_name();
        let (port, weight) = (instance.port.to_string(), weight_text(instance.weight));
        let metadata = instance.metadata.to_string();
        self.call(
            "POST",
            "/v1/ns/instance",
            &[
                ("namespaceId", &instance.namespace_id),
                ("serviceName", &service),
                ("groupName", &instance.group_name),
                ("clusterName", &instance.cluster_name),
                ("ip", &instance.ip),
                ("port", &port),
                ("weight", &weight),
                ("enable", bool_text(instance.enable)),
                ("healthy", bool_text(instance.healthy)),
                ("metadata", &metadata),
                ("ephemeral", bool_text(instance.ephemeral)),
                ("app", ""),
            ],
        )
        .map(drop)
    }

    pub fn beat(&self, instance: &Instance) -> Result<Beat, String> {
        let service = instance.grouped_name();
        let beat = BeatInfo {
            ip: &instance.ip,
            port: instance.port,
            weight: weight_number(instance.weight),
            service_name: &service,
            cluster: &instance.cluster_name,
            metadata: &instance.metadata,
            scheduled: false,
        };
        let beat = serde_json::to_string(&beat).map_err(|e| format!("nacos beat: {e}"))?;
        let answer: BeatAnswer = self
            .call(
                "PUT",
                "/v1/ns/instance/beat",
                &[
                    ("namespaceId", &instance.namespace_id),
                    ("serviceName", &service),
                    ("beat", &beat),
                ],
            )?
            .json()?;
        Ok(Beat {
            interval_ms: answer.client_beat_interval.filter(|ms| *ms > 0),
            unknown_instance: answer.code == Some(UNKNOWN_INSTANCE),
        })
    }

    /// One beat of the Go SDKs' beat loop: registers again when the server no longer knows
    /// the instance (code 20404). Returns when to beat next (the server's `clientBeatInterval`,
    /// else [`BEAT_MS`]) and whether it registered again.
    pub fn beat_or_register(&self, instance: &Instance) -> Result<(u64, bool), String> {
        let beat = self.beat(instance)?;
        if beat.unknown_instance {
            self.register(instance)?;
        }
        Ok((beat.interval_ms.unwrap_or(BEAT_MS), beat.unknown_instance))
    }

    pub fn deregister(&self, instance: &Instance) -> Result<(), String> {
        let service = instance.grouped_name();
        let port = instance.port.to_string();
        self.call(
            "DELETE",
            "/v1/ns/instance",
            &[
                ("namespaceId", &instance.namespace_id),
                ("serviceName", &service),
                ("clusterName", &instance.cluster_name),
                ("ip", &instance.ip),
                ("port", &port),
                ("ephemeral", bool_text(instance.ephemeral)),
            ],
        )
        .map(drop)
    }

    /// The instance list of `service` in `group` (healthy or not); `clusters` comma-separated
    /// or empty.
    pub fn list(
        &self,
        namespace_id: &str,
        group: &str,
        service: &str,
        clusters: &str,
    ) -> Result<Listing, String> {
        let service = grouped_name(group, service);
        let answer: ListAnswer = self
            .call(
                "GET",
                "/v1/ns/instance/list",
                &[
                    ("namespaceId", namespace_id),
                    ("serviceName", &service),
                    ("clusters", clusters),
                    ("healthyOnly", "false"),
                ],
            )?
            .json()?;
        Ok(Listing {
            cache_millis: answer.cache_millis.filter(|ms| *ms > 0),
            hosts: answer
                .hosts
                .into_iter()
                .map(|h| Listed {
                    ip: h.ip,
                    port: h.port,
                    weight: h.weight,
                    healthy: h.healthy,
                    enabled: h.enabled,
                    metadata: h.metadata.unwrap_or_default(),
                })
                .collect(),
        })
    }
}

fn bool_text(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fake::FakeHost;

    fn gozero_instance() -> Instance {
        Instance {
            namespace_id: "public".into(),
            service_name: "dtmservice".into(),
            group_name: "DEFAULT_GROUP".into(),
            cluster_name: String::new(),
            ip: "localhost".into(),
            port: 36790,
            weight: 1.0,
            enable: true,
            healthy: true,
            ephemeral: true,
            metadata: json!({}),
        }
    }

    fn text(host: &FakeHost, body: &str) {
        host.answers.borrow_mut().push_back(Ok(Response {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }));
    }

    /// The query of a sent URL, decoded, for comparing with the spec's unencoded examples.
    fn decoded_query(url: &str) -> Vec<(String, String)> {
        let (_, query) = url.split_once('?').unwrap();
        query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                let decode = |s: &str| {
                    let bytes = s.as_bytes();
                    let mut out = Vec::new();
                    let mut i = 0;
                    while i < bytes.len() {
                        if bytes[i] == b'%' {
                            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                            i += 3;
                        } else {
                            out.push(bytes[i]);
                            i += 1;
                        }
                    }
                    String::from_utf8(out).unwrap()
                };
                (decode(k), decode(v))
            })
            .collect()
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        text.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn gozero_worked_example() {
        let host = FakeHost::default();
        text(&host, "ok");
        host.answer(
            200,
            json!({"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": true}),
        );
        text(&host, "ok");
        let nacos = Nacos::connect(&host, "127.0.0.1:8848", None).unwrap();
        let instance = gozero_instance();
        nacos.register(&instance).unwrap();
        let beat = nacos.beat(&instance).unwrap();
        assert_eq!(
            beat,
            Beat {
                interval_ms: Some(5000),
                unknown_instance: false
            }
        );
        nacos.deregister(&instance).unwrap();

        let sent = host.sent.borrow();
        assert_eq!(sent.len(), 3, "no login without credentials");
        assert_eq!(sent[0].method, "POST");
        assert_eq!(
            sent[0].url,
            "http://127.0.0.1:8848/nacos/v1/ns/instance?namespaceId=public&serviceName=DEFAULT_GROUP%40%40dtmservice&groupName=DEFAULT_GROUP&clusterName=&ip=localhost&port=36790&weight=1&enable=true&healthy=true&metadata=%7B%7D&ephemeral=true&app="
        );
        assert_eq!(
            decoded_query(&sent[0].url),
            pairs("namespaceId=public&serviceName=DEFAULT_GROUP@@dtmservice&groupName=DEFAULT_GROUP&clusterName=&ip=localhost&port=36790&weight=1&enable=true&healthy=true&metadata={}&ephemeral=true&app=")
        );
        assert_eq!(sent[1].method, "PUT");
        assert!(sent[1]
            .url
            .starts_with("http://127.0.0.1:8848/nacos/v1/ns/instance/beat?"));
        assert_eq!(
            decoded_query(&sent[1].url),
            [
                ("namespaceId".to_owned(), "public".to_owned()),
                ("serviceName".to_owned(), "DEFAULT_GROUP@@dtmservice".to_owned()),
                (
                    "beat".to_owned(),
                    r#"{"ip":"localhost","port":36790,"weight":1,"serviceName":"DEFAULT_GROUP@@dtmservice","cluster":"","metadata":{},"scheduled":false}"#
                        .to_owned()
                ),
            ]
        );
        assert_eq!(sent[2].method, "DELETE");
        assert!(sent[2]
            .url
            .starts_with("http://127.0.0.1:8848/nacos/v1/ns/instance?"));
        assert_eq!(
            decoded_query(&sent[2].url),
            pairs("namespaceId=public&serviceName=DEFAULT_GROUP@@dtmservice&clusterName=&ip=localhost&port=36790&ephemeral=true")
        );
    }

    #[test]
    fn logs_in_and_sends_the_token() {
        let host = FakeHost::default();
        host.answer(
            200,
            json!({"accessToken": "tok en", "tokenTtl": 18000, "globalAdmin": true}),
        );
        host.answer(200, json!({"code": 20404}));
        let nacos = Nacos::connect(&host, "n:8848", Some(("nacos", "p&w"))).unwrap();
        let beat = nacos.beat(&gozero_instance()).unwrap();
        assert_eq!(
            beat,
            Beat {
                interval_ms: None,
                unknown_instance: true
            }
        );
        let sent = host.sent.borrow();
        assert_eq!(sent[0].method, "POST");
        assert_eq!(
            sent[0].url,
            "http://n:8848/nacos/v1/auth/users/login?username=nacos&password=p%26w"
        );
        assert!(
            sent[1].url.ends_with("&accessToken=tok%20en"),
            "{}",
            sent[1].url
        );
    }

    #[test]
    fn a_forgotten_instance_is_registered_again() {
        let host = FakeHost::default();
        host.answer(200, json!({"code": 20404}));
        text(&host, "ok");
        host.answer(200, json!({"clientBeatInterval": 7000, "code": 10200}));
        let nacos = Nacos::connect(&host, "n:8848", None).unwrap();
        assert_eq!(
            nacos.beat_or_register(&gozero_instance()).unwrap(),
            (BEAT_MS, true)
        );
        assert_eq!(
            nacos.beat_or_register(&gozero_instance()).unwrap(),
            (7000, false)
        );
        let sent = host.sent.borrow();
        let calls: Vec<_> = sent.iter().map(|r| r.method).collect();
        assert_eq!(calls, ["PUT", "POST", "PUT"]);
    }

    #[test]
    fn failures_carry_nacos_text() {
        let host = FakeHost::default();
        host.answers.borrow_mut().push_back(Ok(Response {
            status: 403,
            headers: vec![],
            body: b"unknown user!".to_vec(),
        }));
        let err = Nacos::connect(&host, "n:8848", Some(("u", "p")))
            .err()
            .unwrap();
        assert!(
            err.contains("403") && err.contains("unknown user!"),
            "{err}"
        );
        let nacos = Nacos::connect(&host, "n:8848", None).unwrap();
        assert!(nacos.register(&gozero_instance()).is_err(), "no answer");
    }

    #[test]
    fn sponge_weight_and_metadata() {
        let host = FakeHost::default();
        text(&host, "ok");
        host.answer(200, json!({"clientBeatInterval": 5000, "code": 10200}));
        let nacos = Nacos::connect(&host, "n:8848", None).unwrap();
        let instance = Instance {
            service_name: "dtmservice.grpc".into(),
            cluster_name: "DEFAULT".into(),
            weight: 100.0,
            metadata: json!({"id": "dtmservice_grpc_127.0.0.1_36790", "kind": "grpc", "version": ""}),
            ..gozero_instance()
        };
        nacos.register(&instance).unwrap();
        nacos.beat(&instance).unwrap();
        let sent = host.sent.borrow();
        let register = decoded_query(&sent[0].url);
        assert!(register.contains(&("weight".into(), "100".into())));
        assert!(register.contains(&(
            "metadata".into(),
            r#"{"id":"dtmservice_grpc_127.0.0.1_36790","kind":"grpc","version":""}"#.into()
        )));
        assert!(register.contains(&(
            "serviceName".into(),
            "DEFAULT_GROUP@@dtmservice.grpc".into()
        )));
        assert_eq!(
            decoded_query(&sent[1].url)[2].1,
            r#"{"ip":"localhost","port":36790,"weight":100,"serviceName":"DEFAULT_GROUP@@dtmservice.grpc","cluster":"DEFAULT","metadata":{"id":"dtmservice_grpc_127.0.0.1_36790","kind":"grpc","version":""},"scheduled":false}"#
        );
    }

    #[test]
    fn lists_instances() {
        let host = FakeHost::default();
        host.answer(
            200,
            json!({
                "name": "DEFAULT_GROUP@@trans", "clusters": "", "cacheMillis": 3000,
                "hosts": [
                    {"ip": "10.0.0.1", "port": 8081, "weight": 1.0, "healthy": true, "enabled": true,
                     "ephemeral": true, "clusterName": "DEFAULT", "instanceId": "x", "metadata": {"kind": "grpc"}},
                    {"ip": "10.0.0.2", "port": 8082, "weight": 2.5, "healthy": false, "enabled": false,
                     "metadata": null}
                ]
            }),
        );
        host.answer(200, json!({"name": "DEFAULT_GROUP@@none", "hosts": []}));
        let nacos = Nacos::connect(&host, "127.0.0.1:8848", None).unwrap();
        let listing = nacos.list("public", "DEFAULT_GROUP", "trans", "").unwrap();
        assert_eq!(listing.cache_millis, Some(3000));
        assert_eq!(listing.hosts.len(), 2);
        assert_eq!(
            (listing.hosts[0].ip.as_str(), listing.hosts[0].port),
            ("10.0.0.1", 8081)
        );
        assert_eq!(listing.hosts[0].metadata["kind"], "grpc");
        assert!(!listing.hosts[1].healthy && !listing.hosts[1].enabled);
        assert_eq!(listing.hosts[1].weight, 2.5);
        let empty = nacos.list("public", "DEFAULT_GROUP", "none", "").unwrap();
        assert_eq!(
            empty,
            Listing {
                cache_millis: None,
                hosts: vec![]
            }
        );
        assert_eq!(
            host.sent.borrow()[0].url,
            "http://127.0.0.1:8848/nacos/v1/ns/instance/list?namespaceId=public&serviceName=DEFAULT_GROUP%40%40trans&clusters=&healthyOnly=false"
        );
    }
}
