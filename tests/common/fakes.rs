//! Fake Consul and Nacos registries, each a real HTTP server on a free `127.0.0.1` port. They
//! stand in for registries that cannot run on this machine (no Consul or Nacos binary, no
//! containers), implementing only the endpoints of docs/drivers.md §5.2 and §5.3 that dtm's drivers
//! use, with the shapes the real servers answer in. Every request is recorded (method, path,
//! decoded query and form parameters, headers, body) so tests can assert what a driver sent.
//!
//! API:
//!
//! * [`Recorded`]: one request; `param(name)` reads a query or form parameter, `json()` the
//!   body.
//! * [`FakeConsul::start`] → `.address` (`127.0.0.1:port`, for `consul://<address>/<name>`).
//!   Endpoints: `PUT /v1/agent/service/register` (ID defaults to Name; checks without CheckID
//!   get `service:<ID>` or `service:<ID>:<n>` as Consul assigns them), `PUT
//!   /v1/agent/check/register`, `PUT /v1/agent/check/update/<id>` (404 for an unknown check, 500
//!   for a check without TTL, like Consul), `PUT /v1/agent/service/deregister/<id>` (404 when
//!   unknown), `GET /v1/health/service/<name>[?passing=1]` (Consul's entry shape, with the
//!   `lan_ipv4`/`wan_ipv4` tagged addresses Consul adds, and an `X-Consul-Index` header). TTL
//!   checks start `critical` unless registered with a Status and turn `passing` on update;
//!   other checks (TCP, HTTP) are not probed and count as passing.
//!   Helpers: `requests()`, `requests_to(method, path_prefix)`, `wait_requests(method,
//!   path_prefix, count, secs)`, `service(id)` (the stored registration body), `service_ids()`,
//!   `check_status(id)`, `add_service(registration)` (register a business service directly),
//!   `wait_until(what, secs, predicate)`.
//! * [`FakeNacos::start`] / [`FakeNacos::start_with_auth(user, password)`] → `.address`
//!   (`127.0.0.1:port`). Endpoints under `/nacos/v1`: `POST auth/users/login` (answers
//!   `accessToken` "fake-token", `tokenTtl` 18000; 403 `unknown user!` on bad credentials),
//!   `POST ns/instance` (register; text `ok`), `PUT ns/instance/beat` (JSON
//!   `clientBeatInterval`, `code` 10200, or 20404 for an unknown instance), `DELETE ns/instance`
//!   (text `ok`), `GET ns/instance/list` (`name`, `clusters`, `cacheMillis`, `hosts[]` with
//!   `instanceId`, `ip`, `port`, `weight`, `healthy`, `enabled`, `ephemeral`, `clusterName`,
//!   `serviceName`, `metadata`). Parameters are read from the query string and from a form body;
//!   `serviceName` is `<group>@@<service>` (a bare name means `groupName`, default
//!   `DEFAULT_GROUP`); `namespaceId` defaults to `public`; an empty cluster is `DEFAULT`. With
//!   auth, every `ns` call needs `accessToken`, else 403.
//!   Helpers: `requests()`, `requests_to(method, path_prefix)`, `wait_requests(...)`,
//!   `instances(grouped_service)`, `add_instance(grouped_service, ip, port, metadata)`,
//!   `forget_all()` (as if the server lost its ephemeral instances, so beats get 20404),
//!   `wait_until(what, secs, predicate)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::serve;

/// One request a fake registry received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Decoded query parameters, then decoded form-body parameters, in order.
    pub params: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Recorded {
    /// The first value of query or form parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} body is not JSON ({e}): {}",
                self.method, self.path, self.body
            )
        })
    }
}

/// The request log both fakes keep.
#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<Recorded>>,
}

impl Recorder {
    fn record(
        &self,
        method: &Method,
        uri: &Uri,
        query: Option<String>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Recorded {
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let form = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            params.extend(form_urlencoded::parse(body).into_owned());
        }
        let request = Recorded {
            method: method.to_string(),
            path: percent_decode(uri.path()),
            params,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
            at: Instant::now(),
        };
        self.requests.lock().unwrap().push(request.clone());
        request
    }

    fn requests_to(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }
}

/// What the handler of a fake asks of its state.
trait FakeState: Send + Sync + 'static {
    fn recorder(&self) -> &Recorder;
    /// The answer to `request`, already recorded.
    fn answer(&self, method: &Method, request: &Recorded) -> Response;
}

/// Every request to a fake: recorded, then answered by its state.
async fn fake_handler<S: FakeState>(
    State(state): State<Arc<S>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = state
        .recorder()
        .record(&method, &uri, query, &headers, &body);
    state.answer(&method, &request)
}

/// Serves a fake with `state` on a free local port; returns `127.0.0.1:port`.
async fn serve_fake<S: FakeState>(state: Arc<S>) -> String {
    let app = axum::Router::new()
        .fallback(fake_handler::<S>)
        .with_state(state);
    serve(app, 0).await
}

/// The request-log and waiting methods of a fake whose `state` keeps a [`Recorder`], inside its
/// `impl`; `$fake` names it when waiting for requests times out.
macro_rules! recorded_requests {
    ($fake:literal) => {
        pub fn requests(&self) -> Vec<Recorded> {
            self.state.recorder.requests.lock().unwrap().clone()
        }

        pub fn requests_to(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
            self.state.recorder.requests_to(method, path_prefix)
        }

        /// Waits until at least `count` requests matched; returns them all.
        pub async fn wait_requests(
            &self,
            method: &str,
            path_prefix: &str,
            count: usize,
            secs: u64,
        ) -> Vec<Recorded> {
            let what = format!("{count} × {method} {path_prefix} at the fake {}", $fake);
            wait_until(&what, secs, || {
                let found = self.requests_to(method, path_prefix);
                (found.len() >= count).then_some(found)
            })
            .await
        }

        /// Polls `predicate` against this fake; panics naming `what` after `secs`.
        pub async fn wait_until<T>(
            &self,
            what: &str,
            secs: u64,
            mut predicate: impl FnMut(&Self) -> Option<T>,
        ) -> T {
            wait_until(what, secs, || predicate(self)).await
        }
    };
}

/// A URL path with its `%XX` escapes decoded, as Go's servers see it (`service%3Ax` is
/// check `service:x`); a bad escape stays as it is.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `predicate` every 20 ms; panics naming `what` after `secs`.
pub async fn wait_until<T>(what: &str, secs: u64, mut predicate: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = predicate() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

// ---------------------------------------------------------------------------------------------
// Consul

#[derive(Debug, Clone)]
struct ConsulCheck {
    service_id: String,
    ttl: bool,
    status: String,
}

#[derive(Default)]
struct ConsulState {
    recorder: Recorder,
    /// Registration bodies by service ID, as sent (ID filled in).
    services: Mutex<BTreeMap<String, Value>>,
    checks: Mutex<BTreeMap<String, ConsulCheck>>,
    index: Mutex<u64>,
}

impl ConsulState {
    fn bump(&self) {
        *self.index.lock().unwrap() += 1;
    }

    fn register_service(&self, mut registration: Value) -> Result<(), String> {
        let name = registration["Name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or("Missing service name")?
            .to_owned();
        let id = match registration["ID"].as_str() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => name,
        };
        registration["ID"] = json!(id);
        let mut declared: Vec<Value> = registration["Checks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if registration["Check"].is_object() {
            declared.insert(0, registration["Check"].clone());
        }
        let mut checks = self.checks.lock().unwrap();
        // Re-registering replaces the service's checks, as the agent does.
        checks.retain(|_, c| c.service_id != id);
        let several = declared.len() > 1;
        for (n, check) in declared.iter().enumerate() {
            let check_id = match check["CheckID"].as_str() {
                Some(given) if !given.is_empty() => given.to_owned(),
                _ if several => format!("service:{id}:{}", n + 1),
                _ => format!("service:{id}"),
            };
            checks.insert(check_id, Self::check(&id, check));
        }
        drop(checks);
        self.services.lock().unwrap().insert(id, registration);
        self.bump();
        Ok(())
    }

    fn check(service_id: &str, body: &Value) -> ConsulCheck {
        let ttl = body["TTL"].as_str().is_some_and(|t| !t.is_empty());
        let declared = body["Status"].as_str().filter(|s| !s.is_empty());
        ConsulCheck {
            service_id: service_id.to_owned(),
            ttl,
            // Unprobed checks count as passing; TTL checks wait for their first update.
            status: declared
                .unwrap_or(if ttl { "critical" } else { "passing" })
                .to_owned(),
        }
    }

    fn handle(&self, method: &Method, request: &Recorded) -> Response {
        let path = request.path.as_str();
        let put = method == Method::PUT;
        if put && path == "/v1/agent/service/register" {
            return match serde_json::from_str(&request.body)
                .map_err(|e| e.to_string())
                .and_then(|body| self.register_service(body))
            {
                Ok(()) => text(StatusCode::OK, ""),
                Err(e) => text(
                    StatusCode::BAD_REQUEST,
                    format!("Request decode failed: {e}"),
                ),
            };
        }
        if put && path == "/v1/agent/check/register" {
            let Ok(body) = serde_json::from_str::<Value>(&request.body) else {
                return text(StatusCode::BAD_REQUEST, "Request decode failed");
            };
            let id = body["ID"]
                .as_str()
                .or(body["CheckID"].as_str())
                .or(body["Name"].as_str())
                .unwrap_or_default()
                .to_owned();
            let service_id = body["ServiceID"].as_str().unwrap_or_default();
            if !service_id.is_empty() && !self.services.lock().unwrap().contains_key(service_id) {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("ServiceID \"{service_id}\" does not exist"),
                );
            }
            self.checks
                .lock()
                .unwrap()
                .insert(id, Self::check(service_id, &body));
            self.bump();
            return text(StatusCode::OK, "");
        }
        if let (true, Some(id)) = (put, path.strip_prefix("/v1/agent/check/update/")) {
            let mut checks = self.checks.lock().unwrap();
            let Some(check) = checks.get_mut(id) else {
                return text(StatusCode::NOT_FOUND, format!("Unknown check ID \"{id}\""));
            };
            if !check.ttl {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("CheckID \"{id}\" does not have associated TTL"),
                );
            }
            let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
            check.status = body["Status"].as_str().unwrap_or("passing").to_owned();
            drop(checks);
            self.bump();
            return text(StatusCode::OK, "");
        }
        if let (true, Some(id)) = (put, path.strip_prefix("/v1/agent/service/deregister/")) {
            if self.services.lock().unwrap().remove(id).is_none() {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("Unknown service ID \"{id}\""),
                );
            }
            self.checks
                .lock()
                .unwrap()
                .retain(|_, c| c.service_id != id);
            self.bump();
            return text(StatusCode::OK, "");
        }
        if let (true, Some(name)) = (
            method == Method::GET,
            path.strip_prefix("/v1/health/service/"),
        ) {
            let passing_only = request
                .param("passing")
                .is_some_and(|p| p.is_empty() || p == "1" || p == "true");
            let entries = self.health(name, passing_only);
            let index = self.index.lock().unwrap().to_string();
            return (
                StatusCode::OK,
                [
                    ("content-type", "application/json".to_owned()),
                    ("x-consul-index", index),
                ],
                Value::Array(entries).to_string(),
            )
                .into_response();
        }
        text(
            StatusCode::NOT_FOUND,
            format!("fake consul: no route {method} {path}"),
        )
    }

    /// Health entries of service `name` in Consul's shape.
    fn health(&self, name: &str, passing_only: bool) -> Vec<Value> {
        let services = self.services.lock().unwrap();
        let checks = self.checks.lock().unwrap();
        services
            .values()
            .filter(|s| s["Name"] == name)
            .filter_map(|s| {
                let id = s["ID"].as_str().unwrap_or_default();
                let own: Vec<(&String, &ConsulCheck)> =
                    checks.iter().filter(|(_, c)| c.service_id == id).collect();
                if passing_only && own.iter().any(|(_, c)| c.status != "passing") {
                    return None;
                }
                let address = s["Address"].as_str().unwrap_or_default();
                let port = s["Port"].as_u64().unwrap_or(0);
                let mut tagged = s["TaggedAddresses"].as_object().cloned().unwrap_or_default();
                if !address.is_empty() {
                    // Consul adds these to every service with an address.
                    for key in ["lan_ipv4", "wan_ipv4"] {
                        tagged.insert(key.into(), json!({"Address": address, "Port": port}));
                    }
                }
                Some(json!({
                    "Node": {"ID": "fake-node", "Node": "fake", "Address": "127.0.0.1",
                             "Datacenter": "dc1", "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"}},
                    "Service": {
                        "ID": id, "Service": name, "Tags": s["Tags"].clone(),
                        "Address": address, "Port": port, "Meta": s["Meta"].clone(),
                        "TaggedAddresses": tagged, "Weights": {"Passing": 1, "Warning": 1},
                        "EnableTagOverride": false,
                    },
                    "Checks": own.iter().map(|(check_id, c)| json!({
                        "Node": "fake", "CheckID": check_id, "Status": c.status,
                        "ServiceID": id, "ServiceName": name,
                    })).collect::<Vec<_>>(),
                }))
            })
            .collect()
    }
}

impl FakeState for ConsulState {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn answer(&self, method: &Method, request: &Recorded) -> Response {
        self.handle(method, request)
    }
}

/// A fake Consul agent (see the module doc).
#[derive(Clone)]
pub struct FakeConsul {
    /// `127.0.0.1:port`.
    pub address: String,
    state: Arc<ConsulState>,
}

impl FakeConsul {
    pub async fn start() -> Self {
        let state = Arc::new(ConsulState::default());
        Self {
            address: serve_fake(state.clone()).await,
            state,
        }
    }

    recorded_requests!("consul");

    /// The registration body stored for service `id`.
    pub fn service(&self, id: &str) -> Option<Value> {
        self.state.services.lock().unwrap().get(id).cloned()
    }

    pub fn service_ids(&self) -> Vec<String> {
        self.state
            .services
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    pub fn check_status(&self, id: &str) -> Option<String> {
        self.state
            .checks
            .lock()
            .unwrap()
            .get(id)
            .map(|c| c.status.clone())
    }

    /// Registers a service directly (not recorded as a request), e.g. a business service.
    pub fn add_service(&self, registration: Value) {
        self.state.register_service(registration).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Nacos

const NACOS_TOKEN: &str = "fake-token";

#[derive(Debug, Clone)]
struct NacosInstance {
    namespace: String,
    /// `<group>@@<service>`.
    service: String,
    cluster: String,
    ip: String,
    port: u16,
    weight: f64,
    healthy: bool,
    enabled: bool,
    ephemeral: bool,
    metadata: Value,
}

impl NacosInstance {
    fn same(&self, namespace: &str, service: &str, cluster: &str, ip: &str, port: u16) -> bool {
        self.namespace == namespace
            && self.service == service
            && self.cluster == cluster
            && self.ip == ip
            && self.port == port
    }

    fn to_json(&self) -> Value {
        json!({
            "instanceId": format!("{}#{}#{}#{}", self.ip, self.port, self.cluster, self.service),
            "ip": self.ip, "port": self.port, "weight": self.weight, "healthy": self.healthy,
            "enabled": self.enabled, "ephemeral": self.ephemeral, "clusterName": self.cluster,
            "serviceName": self.service, "metadata": self.metadata,
            "instanceHeartBeatInterval": 5000, "instanceHeartBeatTimeOut": 15000,
            "ipDeleteTimeout": 30000,
        })
    }
}

#[derive(Default)]
struct NacosState {
    recorder: Recorder,
    credentials: Option<(String, String)>,
    instances: Mutex<Vec<NacosInstance>>,
}

/// What a request names: namespace, `<group>@@<service>`, cluster.
fn nacos_names(request: &Recorded, cluster_key: &str) -> (String, String, String) {
    let namespace = request
        .param("namespaceId")
        .filter(|n| !n.is_empty())
        .unwrap_or("public")
        .to_owned();
    let raw = request.param("serviceName").unwrap_or_default();
    let service = if raw.contains("@@") {
        raw.to_owned()
    } else {
        let group = request
            .param("groupName")
            .filter(|g| !g.is_empty())
            .unwrap_or("DEFAULT_GROUP");
        format!("{group}@@{raw}")
    };
    let cluster = request
        .param(cluster_key)
        .filter(|c| !c.is_empty())
        .unwrap_or("DEFAULT")
        .to_owned();
    (namespace, service, cluster)
}

fn param_bool(request: &Recorded, name: &str, default: bool) -> bool {
    request.param(name).map_or(default, |v| v == "true")
}

impl NacosState {
    fn handle(&self, method: &Method, request: &Recorded) -> Response {
        let path = request.path.as_str();
        let Some(route) = path.strip_prefix("/nacos/v1/") else {
            return text(
                StatusCode::NOT_FOUND,
                format!("fake nacos: no route {method} {path}"),
            );
        };
        if route == "auth/users/login" && method == Method::POST {
            let given = (request.param("username"), request.param("password"));
            let ok = match &self.credentials {
                Some((user, password)) => given == (Some(user), Some(password)),
                None => true,
            };
            return if ok {
                let body =
                    json!({"accessToken": NACOS_TOKEN, "tokenTtl": 18000, "globalAdmin": true});
                json_response(body)
            } else {
                text(StatusCode::FORBIDDEN, "unknown user!")
            };
        }
        if self.credentials.is_some() && request.param("accessToken") != Some(NACOS_TOKEN) {
            return text(StatusCode::FORBIDDEN, "token invalid!");
        }
        match (method.as_str(), route) {
            ("POST", "ns/instance") => self.register(request),
            ("PUT", "ns/instance/beat") => self.beat(request),
            ("DELETE", "ns/instance") => {
                let (namespace, service, cluster) = nacos_names(request, "clusterName");
                let ip = request.param("ip").unwrap_or_default();
                let port = request
                    .param("port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                self.instances
                    .lock()
                    .unwrap()
                    .retain(|i| !i.same(&namespace, &service, &cluster, ip, port));
                text(StatusCode::OK, "ok")
            }
            ("GET", "ns/instance/list") => self.list(request),
            _ => text(
                StatusCode::NOT_FOUND,
                format!("fake nacos: no route {method} {path}"),
            ),
        }
    }

    fn register(&self, request: &Recorded) -> Response {
        let (namespace, service, cluster) = nacos_names(request, "clusterName");
        let ip = request.param("ip").unwrap_or_default().to_owned();
        let port = request.param("port").and_then(|p| p.parse::<u16>().ok());
        let (Some(port), false, false) = (port, ip.is_empty(), service.ends_with("@@")) else {
            return text(
                StatusCode::BAD_REQUEST,
                "caused: ip, port and serviceName are required;",
            );
        };
        let metadata = match request.param("metadata").filter(|m| !m.is_empty()) {
            None => json!({}),
            Some(m) => match serde_json::from_str::<Value>(m) {
                Ok(v) if v.is_object() => v,
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "caused: metadata is not a JSON object;",
                    )
                }
            },
        };
        let instance = NacosInstance {
            weight: request
                .param("weight")
                .and_then(|w| w.parse().ok())
                .unwrap_or(1.0),
            healthy: param_bool(request, "healthy", true),
            enabled: param_bool(request, "enable", true),
            ephemeral: param_bool(request, "ephemeral", true),
            metadata,
            namespace,
            service,
            cluster,
            ip,
            port,
        };
        let mut instances = self.instances.lock().unwrap();
        instances.retain(|i| {
            !i.same(
                &instance.namespace,
                &instance.service,
                &instance.cluster,
                &instance.ip,
                instance.port,
            )
        });
        instances.push(instance);
        text(StatusCode::OK, "ok")
    }

    fn beat(&self, request: &Recorded) -> Response {
        let Some(beat) = request
            .param("beat")
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
        else {
            return text(StatusCode::BAD_REQUEST, "caused: beat is not JSON;");
        };
        let (namespace, service, _) = nacos_names(request, "clusterName");
        let cluster = beat["cluster"]
            .as_str()
            .filter(|c| !c.is_empty())
            .unwrap_or("DEFAULT");
        let ip = beat["ip"].as_str().unwrap_or_default();
        let port = beat["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        let known = self
            .instances
            .lock()
            .unwrap()
            .iter()
            .any(|i| i.same(&namespace, &service, cluster, ip, port));
        let code = if known { 10200 } else { 20404 };
        json_response(json!({"clientBeatInterval": 5000, "code": code, "lightBeatEnabled": false}))
    }

    fn list(&self, request: &Recorded) -> Response {
        let (namespace, service, _) = nacos_names(request, "clusters");
        let clusters: Vec<&str> = request
            .param("clusters")
            .unwrap_or_default()
            .split(',')
            .filter(|c| !c.is_empty())
            .collect();
        let healthy_only = param_bool(request, "healthyOnly", false);
        let hosts: Vec<Value> = self
            .instances
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.namespace == namespace && i.service == service)
            .filter(|i| clusters.is_empty() || clusters.contains(&i.cluster.as_str()))
            .filter(|i| !healthy_only || i.healthy)
            .map(NacosInstance::to_json)
            .collect();
        json_response(json!({
            "name": service, "groupName": service.split("@@").next().unwrap_or_default(),
            "clusters": clusters.join(","), "cacheMillis": 3000, "hosts": hosts,
            "lastRefTime": 0, "checksum": "", "allIPs": false, "reachProtectionThreshold": false,
            "valid": true,
        }))
    }
}

fn json_response(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl FakeState for NacosState {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn answer(&self, method: &Method, request: &Recorded) -> Response {
        self.handle(method, request)
    }
}

/// A fake Nacos server (see the module doc).
#[derive(Clone)]
pub struct FakeNacos {
    /// `127.0.0.1:port`.
    pub address: String,
    state: Arc<NacosState>,
}

impl FakeNacos {
    /// Without auth: login succeeds for anyone and no call needs a token.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// With auth: only `user`/`password` may log in, and every `ns` call needs the token.
    pub async fn start_with_auth(user: &str, password: &str) -> Self {
        Self::launch(Some((user.to_owned(), password.to_owned()))).await
    }

    async fn launch(credentials: Option<(String, String)>) -> Self {
        let state = Arc::new(NacosState {
            credentials,
            ..Default::default()
        });
        Self {
            address: serve_fake(state.clone()).await,
            state,
        }
    }

    recorded_requests!("nacos");

    /// The registered instances of `<group>@@<service>` (any namespace) as the list endpoint
    /// shows them.
    pub fn instances(&self, grouped_service: &str) -> Vec<Value> {
        self.state
            .instances
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.service == grouped_service)
            .map(NacosInstance::to_json)
            .collect()
    }

    /// Registers an instance directly in namespace `public`, cluster `DEFAULT` (not recorded
    /// as a request), e.g. a business service.
    pub fn add_instance(&self, grouped_service: &str, ip: &str, port: u16, metadata: Value) {
        self.state.instances.lock().unwrap().push(NacosInstance {
            namespace: "public".into(),
            service: grouped_service.into(),
            cluster: "DEFAULT".into(),
            ip: ip.into(),
            port,
            weight: 1.0,
            healthy: true,
            enabled: true,
            ephemeral: true,
            metadata,
        });
    }

    /// Drops every instance, as a Nacos server does with ephemeral instances it lost.
    pub fn forget_all(&self) {
        self.state.instances.lock().unwrap().clear();
    }
}
