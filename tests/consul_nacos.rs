//! The gozero, kratos and sponge drivers against Consul and Nacos (docs/drivers.md §4.3.2, §4.5,
//! §4.9, §5.2, §5.3), which cannot run on this machine: the fakes of `common::fakes` stand in
//! for them, record every request, and answer in the real servers' shapes. Checked: the exact
//! registration bodies, heartbeats and beats, deregistration on orderly shutdown, and sagas
//! over gRPC whose branches resolve through the registry.

mod common;

use common::driver::{saga_succeeds, start_host};
use common::fakes::{FakeConsul, FakeNacos, Recorded};
use common::grpc::GrpcBusi;
use serde_json::json;

/// The coordinator's endpoint for gozero (a plain `host:port`) and for kratos and sponge (a
/// URL); nothing dials it here.
const PLAIN_ENDPOINT: &str = "localhost:36790";
const URL_ENDPOINT: &str = "grpc://127.0.0.1:36790";

/// The port of a `127.0.0.1:port` server.
fn port_of(server: &str) -> u16 {
    server.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// A request's parameters as (name, value) pairs, for comparing with the spec's examples.
fn params(request: &Recorded) -> Vec<(&str, &str)> {
    request
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn gozero_registers_at_consul_heartbeats_deregisters_and_resolves() {
    let consul = FakeConsul::start().await;
    let busi = GrpcBusi::start().await;
    let target = format!("consul://{}/dtmservice", consul.address);
    let mut host = start_host("dtm-driver-gozero", "gozero", &target, PLAIN_ENDPOINT).await;

    let id = "dtmservice-localhost-36790";
    let registered = consul.requests_to("PUT", "/v1/agent/service/register");
    assert_eq!(registered.len(), 1, "{}", host.log());
    assert_eq!(
        registered[0].json(),
        json!({"ID": id, "Name": "dtmservice", "Tags": ["tag", "rpc"], "Port": 36790,
               "Address": "localhost", "Meta": {"Protocol": "grpc"},
               "Checks": [{"CheckID": id, "TTL": "20s", "Status": "passing",
                           "DeregisterCriticalServiceAfter": "60s"}]})
    );
    let checks = consul.requests_to("PUT", "/v1/agent/check/register");
    assert_eq!(checks.len(), 1);
    assert_eq!(
        checks[0].json(),
        json!({"ID": id, "Name": "dtmservice", "ServiceID": id, "TTL": "20s",
               "Status": "passing", "DeregisterCriticalServiceAfter": "60s"})
    );
    assert!(!registered[0].headers.contains_key("x-consul-token"));

    // A business service as go-zero registers it: Service.Address and Port.
    consul.add_service(
        json!({"ID": "trans-1", "Name": "trans", "Address": "127.0.0.1",
                              "Port": port_of(&busi.server), "Tags": ["tag", "rpc"]}),
    );
    saga_succeeds(&host, &busi, "gozero-consul", |method| {
        format!("consul://{}/trans{method}", consul.address)
    })
    .await;
    let query = &consul.requests_to("GET", "/v1/health/service/trans")[0];
    assert_eq!(query.param("passing"), None, "no health filter by default");

    // The TTL check is passed every 19 s.
    let beats = consul
        .wait_requests("PUT", &format!("/v1/agent/check/update/{id}"), 1, 25)
        .await;
    assert_eq!(beats[0].json(), json!({"Status": "passing", "Output": ""}));
    let since_start = beats[0].at - registered[0].at;
    assert!(
        (18..=21).contains(&since_start.as_secs()),
        "after {since_start:?}"
    );

    assert!(host.terminate().await.success());
    consul
        .wait_requests("PUT", &format!("/v1/agent/service/deregister/{id}"), 1, 5)
        .await;
    assert_eq!(consul.service_ids(), ["trans-1"]);
}

#[tokio::test]
async fn gozero_registers_at_nacos_beats_deregisters_and_resolves() {
    let nacos = FakeNacos::start().await;
    let busi = GrpcBusi::start().await;
    let target = format!("nacos://{}/dtmservice", nacos.address);
    let mut host = start_host("dtm-driver-gozero", "gozero", &target, PLAIN_ENDPOINT).await;

    let registered = nacos.requests_to("POST", "/nacos/v1/ns/instance");
    assert_eq!(registered.len(), 1, "{}", host.log());
    assert_eq!(
        params(&registered[0]),
        [
            ("namespaceId", "public"),
            ("serviceName", "DEFAULT_GROUP@@dtmservice"),
            ("groupName", "DEFAULT_GROUP"),
            ("clusterName", ""),
            ("ip", "localhost"),
            ("port", "36790"),
            ("weight", "1"),
            ("enable", "true"),
            ("healthy", "true"),
            ("metadata", "{}"),
            ("ephemeral", "true"),
            ("app", ""),
        ]
    );
    assert_eq!(nacos.instances("DEFAULT_GROUP@@dtmservice").len(), 1);

    nacos.add_instance(
        "DEFAULT_GROUP@@trans",
        "127.0.0.1",
        port_of(&busi.server),
        json!({}),
    );
    saga_succeeds(&host, &busi, "gozero-nacos", |method| {
        format!("nacos://{}/trans{method}", nacos.address)
    })
    .await;
    let list = &nacos.requests_to("GET", "/nacos/v1/ns/instance/list")[0];
    assert_eq!(list.param("serviceName"), Some("DEFAULT_GROUP@@trans"));
    assert_eq!(list.param("healthyOnly"), Some("false"));

    let beats = nacos
        .wait_requests("PUT", "/nacos/v1/ns/instance/beat", 2, 12)
        .await;
    assert_eq!(
        params(&beats[0]),
        [
            ("namespaceId", "public"),
            ("serviceName", "DEFAULT_GROUP@@dtmservice"),
            (
                "beat",
                r#"{"ip":"localhost","port":36790,"weight":1,"serviceName":"DEFAULT_GROUP@@dtmservice","cluster":"","metadata":{},"scheduled":false}"#
            ),
        ]
    );
    let apart = beats[1].at - beats[0].at;
    assert!((4..=6).contains(&apart.as_secs()), "every 5 s: {apart:?}");

    assert!(host.terminate().await.success());
    let gone = nacos
        .wait_requests("DELETE", "/nacos/v1/ns/instance", 1, 5)
        .await;
    assert_eq!(
        params(&gone[0]),
        [
            ("namespaceId", "public"),
            ("serviceName", "DEFAULT_GROUP@@dtmservice"),
            ("clusterName", ""),
            ("ip", "localhost"),
            ("port", "36790"),
            ("ephemeral", "true"),
        ]
    );
    assert!(nacos.instances("DEFAULT_GROUP@@dtmservice").is_empty());
}

#[tokio::test]
async fn kratos_registers_at_consul_passes_its_ttl_check_and_resolves_tagged_addresses() {
    let consul = FakeConsul::start().await;
    let busi = GrpcBusi::start().await;
    let target = format!("consul://{}/dtmservice", consul.address);
    let mut host = start_host("dtm-driver-kratos", "kratos", &target, URL_ENDPOINT).await;

    let registered = consul.requests_to("PUT", "/v1/agent/service/register");
    assert_eq!(registered.len(), 1, "{}", host.log());
    let mut body = registered[0].json();
    // Unique per coordinator (v0.0.10 sent none, so coordinators overwrote one another).
    let id = body["ID"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    body.as_object_mut().unwrap().remove("ID");
    let ttl_check = format!("service:{id}");
    assert_eq!(
        body,
        json!({"Name": "dtmservice", "Tags": ["version="], "Port": 36790, "Address": "127.0.0.1",
               "TaggedAddresses": {"grpc": {"Address": URL_ENDPOINT, "Port": 36790}},
               "Checks": [{"Interval": "10s", "Timeout": "5s", "TCP": "127.0.0.1:36790",
                           "DeregisterCriticalServiceAfter": "600s"},
                          {"CheckID": ttl_check, "TTL": "20s",
                           "DeregisterCriticalServiceAfter": "600s"}]})
    );

    // The first heartbeat comes after about 1 s, the next 10 s later.
    let beats = consul
        .wait_requests("PUT", &format!("/v1/agent/check/update/{ttl_check}"), 1, 5)
        .await;
    assert_eq!(
        beats[0].json(),
        json!({"Status": "passing", "Output": "pass"})
    );
    let first = beats[0].at - registered[0].at;
    assert!(first.as_millis() < 2500, "after {first:?}");
    assert_eq!(consul.check_status(&ttl_check).as_deref(), Some("passing"));

    // A business service as kratos registers it, an instance without a grpc endpoint, and one
    // whose TTL check is critical (a resolver without `passing=1` would dial it): only the
    // first may be called.
    let service = |id: &str, address: &str, ttl: bool| {
        let mut checks = vec![json!({"TCP": address, "Interval": "10s"})];
        if ttl {
            checks.push(json!({"CheckID": format!("service:{id}"), "TTL": "20s"}));
        }
        json!({"ID": id, "Name": "trans", "Tags": ["version="], "Address": "127.0.0.1",
               "Port": port_of(address),
               "TaggedAddresses": {"grpc": {"Address": format!("grpc://{address}"),
                                            "Port": port_of(address)}},
               "Checks": checks})
    };
    consul.add_service(service("t-live", &busi.server, false));
    consul.add_service(service("t-critical", "127.0.0.1:9", true));
    consul.add_service(json!({"ID": "t-http", "Name": "trans", "Address": "127.0.0.1", "Port": 9,
                              "TaggedAddresses": {"http": {"Address": "http://127.0.0.1:9", "Port": 9}}}));
    saga_succeeds(&host, &busi, "kratos-consul", |method| {
        format!("discovery:///trans{method}")
    })
    .await;
    let query = &consul.requests_to("GET", "/v1/health/service/trans")[0];
    assert_eq!(query.param("passing"), Some("1"));

    assert!(host.terminate().await.success());
    consul
        .wait_requests("PUT", &format!("/v1/agent/service/deregister/{id}"), 1, 5)
        .await;
    assert!(!consul.service_ids().contains(&id));
}

#[tokio::test]
async fn sponge_registers_at_consul_with_a_tcp_check_and_deregisters() {
    let consul = FakeConsul::start().await;
    let target = format!("consul://{}/dtmservice?token=secret", consul.address);
    let mut host = start_host("dtm-driver-sponge", "sponge", &target, URL_ENDPOINT).await;

    let registered = consul.requests_to("PUT", "/v1/agent/service/register");
    assert_eq!(registered.len(), 1, "{}", host.log());
    let id = "dtmservice_grpc_127.0.0.1_36790";
    assert_eq!(
        registered[0].json(),
        json!({"ID": id, "Name": "dtmservice", "Tags": ["version="], "Port": 36790,
               "Address": "127.0.0.1",
               "TaggedAddresses": {"grpc": {"Address": URL_ENDPOINT, "Port": 36790}},
               "Checks": [{"Interval": "20s", "Timeout": "5s", "TCP": "127.0.0.1:36790",
                           "Status": "passing", "DeregisterCriticalServiceAfter": "60s"}]})
    );
    assert_eq!(
        registered[0]
            .headers
            .get("x-consul-token")
            .map(String::as_str),
        Some("secret")
    );

    assert!(host.terminate().await.success());
    consul
        .wait_requests("PUT", &format!("/v1/agent/service/deregister/{id}"), 1, 5)
        .await;
    assert!(consul.service_ids().is_empty());
    assert!(
        consul
            .requests_to("PUT", "/v1/agent/check/update/")
            .is_empty(),
        "sponge's TTL update of a TCP check, which Consul refuses, is not sent"
    );
}

#[tokio::test]
async fn sponge_registers_at_nacos_beats_registers_again_and_resolves() {
    let nacos = FakeNacos::start_with_auth("nacos", "pw").await;
    let busi = GrpcBusi::start().await;
    let target = format!(
        "nacos://{}/dtmservice?namespaceID=public&username=nacos&password=pw",
        nacos.address
    );
    let mut host = start_host("dtm-driver-sponge", "sponge", &target, URL_ENDPOINT).await;

    let registered = nacos.requests_to("POST", "/nacos/v1/ns/instance");
    assert_eq!(registered.len(), 1, "{}", host.log());
    assert_eq!(
        params(&registered[0]),
        [
            ("namespaceId", "public"),
            ("serviceName", "DEFAULT_GROUP@@dtmservice.grpc"),
            ("groupName", "DEFAULT_GROUP"),
            ("clusterName", "DEFAULT"),
            ("ip", "127.0.0.1"),
            ("port", "36790"),
            ("weight", "100"),
            ("enable", "true"),
            ("healthy", "true"),
            (
                "metadata",
                r#"{"id":"dtmservice_grpc_127.0.0.1_36790","kind":"grpc","version":""}"#
            ),
            ("ephemeral", "true"),
            ("app", ""),
            ("accessToken", "fake-token"),
        ]
    );
    assert_eq!(
        nacos
            .requests_to("POST", "/nacos/v1/auth/users/login")
            .len(),
        1
    );

    // A business service as sponge registers it (`<name>.<kind>`, addressed by that name) and
    // an http-only instance of it, which kratos' pick skips.
    nacos.add_instance(
        "DEFAULT_GROUP@@trans.grpc",
        "127.0.0.1",
        port_of(&busi.server),
        json!({"kind": "grpc", "id": "t1", "version": ""}),
    );
    nacos.add_instance(
        "DEFAULT_GROUP@@trans.grpc",
        "127.0.0.1",
        9,
        json!({"kind": "http"}),
    );
    saga_succeeds(&host, &busi, "sponge-nacos", |method| {
        format!("discovery:///trans.grpc{method}")
    })
    .await;

    nacos
        .wait_requests("PUT", "/nacos/v1/ns/instance/beat", 1, 8)
        .await;
    // The server loses the instance: the next beat gets 20404 and registers it again.
    nacos.forget_all();
    nacos
        .wait_requests("POST", "/nacos/v1/ns/instance", 2, 8)
        .await;
    assert_eq!(nacos.instances("DEFAULT_GROUP@@dtmservice.grpc").len(), 1);

    assert!(host.terminate().await.success());
    let gone = nacos
        .wait_requests("DELETE", "/nacos/v1/ns/instance", 1, 5)
        .await;
    assert_eq!(
        gone[0].param("serviceName"),
        Some("DEFAULT_GROUP@@dtmservice.grpc")
    );
    assert!(nacos.instances("DEFAULT_GROUP@@dtmservice.grpc").is_empty());
}
