//! The polaris, dapr and springcloud drivers as wasm components against the real binary:
//! registration, heartbeats and deregistration at a fake Polaris (HTTP API) and the fake Nacos,
//! gRPC branches resolved through Polaris, HTTP and gRPC branches through a fake Dapr sidecar,
//! and HTTP branches whose host names a Nacos service.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use common::fakes::{wait_until, FakeNacos};
use common::grpc::GrpcBusi;
use common::{guest_wasm, Busi, Host};
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use dtm_host::proto::dtmgimp::{DtmRequest, DtmTransOptions};
use serde_json::{json, Value};

#[test]
fn the_conformance_vectors_pass() {
    for driver in ["polaris", "dapr", "springcloud"] {
        common::driver::vectors_pass(driver);
    }
}

async fn grpc_client(host: &Host) -> DtmClient<tonic::transport::Channel> {
    DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap()
}

/// A gRPC saga of `(action url, payload)` steps, waiting for its result.
fn grpc_saga(gid: &str, steps: &[(&str, Vec<u8>)]) -> DtmRequest {
    let urls: Vec<Value> = steps
        .iter()
        .map(|(url, _)| json!({"action": url, "compensate": ""}))
        .collect();
    DtmRequest {
        gid: gid.into(),
        trans_type: "saga".into(),
        steps: Value::from(urls).to_string(),
        bin_payloads: steps.iter().map(|(_, payload)| payload.clone()).collect(),
        trans_options: Some(DtmTransOptions {
            wait_result: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Submits an HTTP saga whose steps are the given action URLs, waiting for its result, and
/// checks the submit answered SUCCESS, which it does only if every branch succeeded at the
/// first call.
async fn http_saga_succeeds(host: &Host, gid: &str, actions: &[&str]) {
    let steps: Vec<Value> = actions
        .iter()
        .map(|url| json!({"action": url, "compensate": ""}))
        .collect();
    let payloads: Vec<String> = actions.iter().map(|_| "{}".to_owned()).collect();
    let body = json!({"gid": gid, "trans_type": "saga", "steps": steps, "payloads": payloads,
        "wait_result": true});
    assert_eq!(
        host.post("/submit", body).await,
        (200, json!({"dtm_result": "SUCCESS"})),
        "{}",
        host.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Polaris

#[derive(Default)]
struct PolarisState {
    /// (call, JSON body) in arrival order.
    requests: Mutex<Vec<(String, Value)>>,
    /// What `Discover` answers with.
    instances: Mutex<Vec<Value>>,
}

/// Just enough of Polaris' HTTP API (docs/drivers.md §5.4): registration answers with an id, the
/// second heartbeat is refused as for an instance Polaris forgot (code 400141).
#[derive(Clone)]
struct FakePolaris {
    address: String,
    state: Arc<PolarisState>,
}

async fn polaris_handler(
    State(state): State<Arc<PolarisState>>,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let call = uri.path().trim_start_matches("/v1/").to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut requests = state.requests.lock().unwrap();
    requests.push((call.clone(), body));
    let heartbeats = requests.iter().filter(|(c, _)| c == "Heartbeat").count();
    let answer = match call.as_str() {
        "RegisterInstance" => json!({"code": 200000, "info": "execute success",
            "instance": {"id": "ins-1"}}),
        "Heartbeat" if heartbeats == 2 => {
            json!({"code": 400141, "info": "heartbeat on disabled instance"})
        }
        "Discover" => json!({"code": 200000, "type": "INSTANCE",
            "instances": *state.instances.lock().unwrap()}),
        _ => json!({"code": 200000, "info": "execute success"}),
    };
    // Polaris derives the HTTP status from its code: 400141 comes with 400.
    let status = match answer["code"].as_u64() {
        Some(200000) => StatusCode::OK,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, axum::Json(answer))
}

impl FakePolaris {
    async fn start() -> Self {
        let state = Arc::new(PolarisState::default());
        let app = axum::Router::new()
            .fallback(polaris_handler)
            .with_state(state.clone());
        let address = common::serve(app, 0).await;
        Self { address, state }
    }

    fn requests(&self, call: &str) -> Vec<Value> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == call)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

/// A host with the polaris driver, registering as `dtmservice` in namespace `Test` at
/// `polaris` with service token `token` (`MicroService.EndPoint`; none when `None`).
async fn start_polaris_host(polaris: &FakePolaris, token: Option<&str>) -> Host {
    let target = format!(
        "polaris://127.0.0.1:36790/dtmservice?namespace=Test&polaris={}",
        polaris.address
    );
    let wasm = guest_wasm("polaris");
    let mut env = vec![
        ("MICRO_SERVICE_DRIVER", "dtm-driver-polaris"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_TARGET", &target),
        ("MICRO_SERVICE_REGISTRY_ADDRESSES", &polaris.address),
    ];
    if let Some(token) = token {
        env.push(("MICRO_SERVICE_END_POINT", token));
    }
    Host::start_with(&env).await
}

#[tokio::test]
async fn polaris_registers_heartbeats_resolves_and_deregisters() {
    let (polaris, busi) = (FakePolaris::start().await, GrpcBusi::start().await);
    let (busi_host, busi_port) = busi.server.rsplit_once(':').unwrap();
    let busi_port: u16 = busi_port.parse().unwrap();
    // Only the first is usable; a call to any other would fail the branch.
    *polaris.state.instances.lock().unwrap() = vec![
        json!({"id": "a", "host": busi_host, "port": busi_port, "weight": 100, "healthy": true}),
        json!({"id": "b", "host": "127.0.0.1", "port": 9, "weight": 100, "healthy": false}),
        json!({"id": "c", "host": "127.0.0.1", "port": 9, "weight": 100, "healthy": true,
            "isolate": true}),
        json!({"id": "d", "host": "127.0.0.1", "port": 9, "weight": 0, "healthy": true}),
    ];
    let mut host = start_polaris_host(&polaris, Some("service-token")).await;
    let registered = polaris.requests("RegisterInstance");
    assert_eq!(registered.len(), 1, "{}", host.log());
    assert_eq!(
        registered[0],
        json!({"service": "dtmservice", "namespace": "Test", "host": "127.0.0.1",
            "port": 36790, "service_token": "service-token", "enable_health_check": true,
            "health_check": {"type": "HEARTBEAT", "heartbeat": {"ttl": 5}}})
    );
    let heartbeats = polaris.requests("Heartbeat");
    assert_eq!(heartbeats.len(), 1, "one heartbeat right after registering");
    assert_eq!(
        heartbeats[0],
        json!({"service": "dtmservice", "namespace": "Test", "host": "127.0.0.1",
            "port": 36790, "service_token": "service-token", "id": "ins-1"})
    );

    let mut dtm = grpc_client(&host).await;
    let url = "polaris://busisvc/busi.Busi/TransOut?namespace=Prod";
    // Several calls: round robin would reach an unusable instance left in the list.
    for i in 0..4 {
        let gid = format!("polaris-{i}");
        dtm.submit(grpc_saga(&gid, &[(url, vec![1, 2])]))
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", host.log()));
        assert_eq!(host.status(&gid).await, "succeed");
    }
    let call = &busi.calls("/busi.Busi/TransOut")[0];
    assert_eq!(
        (call.body.as_slice(), call.metadata["dtm-gid"].as_str()),
        (&[1, 2][..], "polaris-0")
    );
    assert_eq!(
        polaris.requests("Discover")[0],
        json!({"type": "INSTANCE", "service": {"name": "busisvc", "namespace": "Prod"}})
    );

    // The second heartbeat, 5 s after the first, finds the instance forgotten: it registers
    // again.
    wait_until("a second registration", 8, || {
        (polaris.requests("RegisterInstance").len() == 2).then_some(())
    })
    .await;
    assert!(polaris.requests("DeregisterInstance").is_empty());
    assert!(host.terminate().await.success());
    let deregistered = polaris.requests("DeregisterInstance");
    assert_eq!(deregistered.len(), 1, "{}", host.log());
    assert_eq!(deregistered[0]["id"], "ins-1");
    assert_eq!(deregistered[0]["service_token"], "service-token");
}

#[tokio::test]
async fn polaris_without_a_service_token_registers_nothing() {
    let polaris = FakePolaris::start().await;
    let mut host = start_polaris_host(&polaris, None).await;
    assert!(host.terminate().await.success());
    assert!(
        polaris.state.requests.lock().unwrap().is_empty(),
        "dtm's polaris driver (v0.0.5) skips registration without a token"
    );
}

// ---------------------------------------------------------------------------------------------
// Dapr

#[tokio::test]
async fn dapr_branches_go_through_the_sidecar() {
    // The fake sidecars: an HTTP one that answers every path, a gRPC one that answers every
    // method.
    let (http_sidecar, grpc_sidecar) = (Busi::start().await, GrpcBusi::start().await);
    let http_port = http_sidecar.base.rsplit_once(':').unwrap().1.to_owned();
    let grpc_port = grpc_sidecar.server.rsplit_once(':').unwrap().1.to_owned();
    let wasm = guest_wasm("dapr");
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-dapr"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("DAPR_HTTP_PORT", &http_port),
        ("DAPR_GRPC_PORT", &grpc_port),
    ])
    .await;

    http_saga_succeeds(
        &host,
        "dapr-http",
        &[
            "daprhttp://DAPR_ENV/busi/api/TransOut?x=1",
            "daprphttp://DAPR_ENV/busi/api/TransIn",
            &http_sidecar.url("/plain"),
        ],
    )
    .await;
    let invoked = &http_sidecar.calls("/v1.0/invoke/busi/method/api/TransOut")[0];
    assert_eq!(invoked.query["x"], "1");
    assert_eq!(invoked.query["gid"], "dapr-http", "dtm's own query is kept");
    assert!(!invoked.headers.contains_key("dapr-app-id"));
    let proxied = &http_sidecar.calls("/api/TransIn")[0];
    assert_eq!(proxied.headers["dapr-app-id"], "busi");
    assert_eq!(
        http_sidecar.calls("/plain").len(),
        1,
        "http:// URLs go as they are"
    );

    // InvokeServiceRequest{id: "x", message: {method: "y", content_type: "{}"}}
    let request = vec![0x0a, 1, b'x', 0x1a, 7, 0x0a, 1, b'y', 0x1a, 2, b'{', b'}'];
    let mut dtm = grpc_client(&host).await;
    dtm.submit(grpc_saga(
        "dapr-grpc",
        &[
            ("daprpgrpc://DAPR_ENV/busi/busi.Busi/TransOut", vec![7]),
            ("daprgrpc://DAPR_ENV/busi/busi.Busi/TransIn", request),
        ],
    ))
    .await
    .unwrap_or_else(|e| panic!("{e:?}\n{}", host.log()));
    let proxied = &grpc_sidecar.calls("/busi.Busi/TransOut")[0];
    assert_eq!(proxied.metadata["dapr-app-id"], "busi");
    assert_eq!(proxied.body, [7]);
    let invoked = &grpc_sidecar.calls("/dapr.proto.runtime.v1.Dapr/InvokeService")[0];
    let mut expected = vec![0x0a, 4];
    expected.extend_from_slice(b"busi");
    expected.extend_from_slice(&[0x1a, 23, 0x0a, 17]);
    expected.extend_from_slice(b"busi.Busi/TransIn");
    expected.extend_from_slice(&[0x1a, 2, b'{', b'}']);
    assert_eq!(
        invoked.body, expected,
        "id and method replaced, the rest kept"
    );
    assert_eq!(invoked.metadata["dtm-gid"], "dapr-grpc");
}

// ---------------------------------------------------------------------------------------------
// Spring Cloud

#[tokio::test]
async fn springcloud_registers_in_nacos_and_routes_by_service_name() {
    let (nacos, busi) = (FakeNacos::start().await, Busi::start().await);
    let busi_port: u16 = busi.base.rsplit_once(':').unwrap().1.parse().unwrap();
    nacos.add_instance("DEFAULT_GROUP@@busi", "127.0.0.1", busi_port, json!({}));
    // An unhealthy instance on a dead port, registered as a business service would: never
    // chosen.
    let sick = reqwest::Client::new()
        .post(format!(
            "http://{}/nacos/v1/ns/instance?serviceName=DEFAULT_GROUP%40%40busi&ip=127.0.0.1&port=9&healthy=false",
            nacos.address
        ))
        .send()
        .await
        .unwrap();
    assert!(sick.status().is_success());
    let target = json!({
        "Addr": nacos.address, "Type": "nacos",
        "ClientConfig": {"BeatInterval": 200},
        "InstanceConfig": {"ServiceName": "dtmService", "Enable": true, "Healthy": true,
            "Ephemeral": true, "Metadata": {"k": "v"}},
    })
    .to_string();
    let wasm = guest_wasm("springcloud");
    let mut host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-springcloud"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_TARGET", &target),
        ("MICRO_SERVICE_END_POINT", "127.0.0.1:36789"),
        ("MICRO_SERVICE_REGISTRY_ADDRESSES", &nacos.address),
    ])
    .await;
    let registered: Vec<_> = nacos
        .requests_to("POST", "/nacos/v1/ns/instance")
        .into_iter()
        .filter(|r| r.param("serviceName") == Some("DEFAULT_GROUP@@dtmService"))
        .collect();
    assert_eq!(registered.len(), 1, "{}", host.log());
    for (param, value) in [
        ("serviceName", "DEFAULT_GROUP@@dtmService"),
        ("ip", "127.0.0.1"),
        ("port", "36789"),
        ("weight", "10"),
        ("ephemeral", "true"),
        ("enable", "true"),
        ("metadata", r#"{"k":"v"}"#),
    ] {
        assert_eq!(registered[0].param(param), Some(value), "{param}");
    }
    // The first beat comes after the configured 200 ms; Nacos then asks for 5 s.
    let beats = nacos
        .wait_requests("PUT", "/nacos/v1/ns/instance/beat", 1, 5)
        .await;
    assert_eq!(
        beats[0].param("serviceName"),
        Some("DEFAULT_GROUP@@dtmService")
    );
    assert_eq!(nacos.instances("DEFAULT_GROUP@@busi").len(), 2);

    // Ten picks: a sick instance among the candidates would be hit at least once.
    for i in 0..5 {
        http_saga_succeeds(
            &host,
            &format!("sc-{i}"),
            &[
                "lb://busi/TransOut?group=DEFAULT_GROUP",
                "lb://busi/TransIn",
            ],
        )
        .await;
    }
    let out = &busi.calls("/TransOut")[0];
    assert_eq!(out.query["group"], "DEFAULT_GROUP", "the query is kept");
    assert_eq!(busi.calls("/TransIn").len(), 5);
    let listed = nacos.requests_to("GET", "/nacos/v1/ns/instance/list");
    assert_eq!(listed[0].param("serviceName"), Some("DEFAULT_GROUP@@busi"));
    assert_eq!(listed[0].param("clusters"), Some("DEFAULT"));

    assert!(host.terminate().await.success());
    assert!(
        nacos.instances("DEFAULT_GROUP@@dtmService").is_empty(),
        "deregistered on shutdown: {:?}",
        nacos.requests()
    );
}
