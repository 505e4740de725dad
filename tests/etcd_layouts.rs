//! The kratos, sponge and ego drivers against a real etcd (docs/drivers.md §4.5, §4.6, §4.9, §5.1):
//! the key and JSON each registers the coordinator under, how it is kept (lease renewed, put
//! again when lost; ego's permanent key), its removal on orderly shutdown, and sagas over gRPC
//! whose branches resolve through etcd.

mod common;

use std::time::{Duration, Instant};

use common::driver::{saga_succeeds, start_host};
use common::etcd::Etcd;
use common::grpc::GrpcBusi;
use serde_json::{json, Value};

/// The coordinator's endpoint as the drivers register it (nothing dials it here).
const ENDPOINT: &str = "grpc://127.0.0.1:36790";

/// The lease a key is bound to ("0" for none), read from etcd's range answer.
async fn lease_of(etcd: &Etcd, key: &str) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let answer = etcd.call("kv/range", json!({"key": b64(key)})).await;
    answer["kvs"][0]["lease"].as_str().unwrap_or("0").to_owned()
}

/// The seconds `lease` has left.
async fn ttl_of(etcd: &Etcd, lease: &str) -> i64 {
    let answer = etcd.call("lease/timetolive", json!({"ID": lease})).await;
    answer["TTL"].as_str().unwrap_or("0").parse().unwrap()
}

/// kratos' instance JSON, exactly as kratos writes it.
fn kratos_json(id: &str, name: &str, endpoints: &[&str]) -> String {
    format!(
        r#"{{"id":"{id}","name":"{name}","version":"","metadata":null,"endpoints":{}}}"#,
        serde_json::to_string(endpoints).unwrap()
    )
}

#[tokio::test]
async fn kratos_registers_a_leased_instance_puts_it_back_when_lost_and_removes_it() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let target = format!("etcd://{}/dtmservice", etcd.address());
    let mut host = start_host("dtm-driver-kratos", "kratos", &target, ENDPOINT).await;

    let prefix = "/microservices/dtmservice/";
    let kvs = etcd.wait_prefix(prefix, 5, |kvs| kvs.len() == 1).await;
    let (key, value) = &kvs[0];
    let id = key.strip_prefix(prefix).unwrap();
    assert_eq!(id.len(), 36, "a UUID, unique per coordinator: {key}");
    assert_eq!(&id[14..15], "1", "version 1: {id}");
    assert_eq!(value, &kratos_json(id, "dtmservice", &[ENDPOINT]));
    let lease = lease_of(&etcd, key).await;
    assert_ne!(lease, "0", "bound to a lease");
    let ttl = ttl_of(&etcd, &lease).await;
    assert!((10..=15).contains(&ttl), "a 15 s lease: {ttl}");

    // Renewed every 5 s: the time left goes up again well before it runs out.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lowest = ttl;
    loop {
        let now = ttl_of(&etcd, &lease).await;
        if now > lowest {
            break;
        }
        lowest = now;
        assert!(
            Instant::now() < deadline && now > 0,
            "the lease was not renewed: {now} s left\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Lost (revoked behind the driver's back): the same key comes back under a new lease.
    etcd.revoke(&lease).await;
    assert!(etcd.get_prefix(prefix).await.is_empty());
    let kvs = etcd.wait_prefix(prefix, 10, |kvs| kvs.len() == 1).await;
    assert_eq!(&kvs[0].0, key, "the same key");
    assert_eq!(&kvs[0].1, value);
    assert_ne!(lease_of(&etcd, key).await, lease, "a new lease");

    assert!(host.terminate().await.success());
    // Well within the 15 s lease: removed, not expired.
    etcd.wait_prefix(prefix, 3, |kvs| kvs.is_empty()).await;
}

#[tokio::test]
async fn kratos_discovery_finds_a_grpc_service_registered_in_etcd() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let busi = GrpcBusi::start().await;
    let target = format!("etcd://{}/dtmservice", etcd.address());
    let host = start_host("dtm-driver-kratos", "kratos", &target, ENDPOINT).await;
    // The business service as kratos registers it: an http endpoint first, then the grpc one
    // the resolver must pick.
    let endpoint = format!("grpc://{}", busi.server);
    etcd.put(
        "/microservices/trans/a1",
        &kratos_json("a1", "trans", &["http://127.0.0.1:9", &endpoint]),
        None,
    )
    .await;
    // Under the same prefix (`/microservices/trans…`) but another name, and a secure endpoint:
    // both unreachable, so a resolver that kept either would fail a branch.
    etcd.put(
        "/microservices/transfer/b1",
        &kratos_json("b1", "transfer", &["grpc://127.0.0.1:9"]),
        None,
    )
    .await;
    etcd.put(
        "/microservices/trans/c1",
        &kratos_json("c1", "trans", &["grpc://127.0.0.1:9?isSecure=true"]),
        None,
    )
    .await;

    saga_succeeds(&host, &busi, "kratos-discovery", |method| {
        format!("discovery:///trans{method}")
    })
    .await;
}

#[tokio::test]
async fn sponge_registers_its_instance_id_resolves_and_removes_it() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let busi = GrpcBusi::start().await;
    let target = format!("etcd://{}/dtmservice", etcd.address());
    let mut host = start_host("dtm-driver-sponge", "sponge", &target, ENDPOINT).await;

    let prefix = "/microservices/dtmservice/";
    let kvs = etcd.wait_prefix(prefix, 5, |kvs| kvs.len() == 1).await;
    let id = "dtmservice_grpc_127.0.0.1_36790";
    assert_eq!(kvs[0].0, format!("{prefix}{id}"));
    assert_eq!(kvs[0].1, kratos_json(id, "dtmservice", &[ENDPOINT]));
    let lease = lease_of(&etcd, &kvs[0].0).await;
    assert!((10..=15).contains(&ttl_of(&etcd, &lease).await));

    let endpoint = format!("grpc://{}", busi.server);
    etcd.put(
        "/microservices/trans/t1",
        &kratos_json("t1", "trans", &[&endpoint]),
        None,
    )
    .await;
    saga_succeeds(&host, &busi, "sponge-discovery", |method| {
        format!("discovery:///trans{method}")
    })
    .await;

    assert!(host.terminate().await.success());
    etcd.wait_prefix(prefix, 3, |kvs| kvs.is_empty()).await;
}

#[tokio::test]
async fn ego_registers_a_permanent_provider_key_resolves_and_deletes_it() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let busi = GrpcBusi::start().await;
    let target = format!("etcd://{}/dtmservice", etcd.address());
    let mut host = start_host("dtm-driver-ego", "ego", &target, "127.0.0.1:36790").await;

    let prefix = "/ego/dtmservice/";
    let kvs = etcd.wait_prefix(prefix, 5, |kvs| kvs.len() == 1).await;
    assert_eq!(kvs[0].0, "/ego/dtmservice/providers/grpc://127.0.0.1:36790");
    let info: Value = serde_json::from_str(&kvs[0].1).unwrap();
    for (field, expected) in [
        ("name", json!("dtmservice")),
        ("scheme", json!("grpc")),
        ("address", json!("127.0.0.1:36790")),
        ("weight", json!(100)),
        ("enable", json!(true)),
        ("healthy", json!(true)),
        ("kind", json!(1)),
        ("deployment", json!("")),
        ("group", json!("")),
        ("services", Value::Null),
    ] {
        assert_eq!(info[field], expected, "{field}: {info}");
    }
    let metadata = info["metadata"].as_object().unwrap();
    let keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "appHost",
            "appMode",
            "appVersion",
            "buildTime",
            "egoVersion",
            "startTime"
        ]
    );
    assert_eq!(
        lease_of(&etcd, &kvs[0].0).await,
        "0",
        "permanent, as ego writes it"
    );

    // A provider of `hello`, a routing configurator next to it, and a decoy under `hello2`:
    // only the provider may be dialed.
    let provider = json!({"name": "hello", "scheme": "grpc", "address": busi.server,
                          "weight": 100, "enable": true, "healthy": true, "metadata": {},
                          "region": "", "zone": "", "kind": 1, "deployment": "", "group": "",
                          "services": null});
    etcd.put(
        &format!("/ego/hello/providers/grpc://{}", busi.server),
        &provider.to_string(),
        None,
    )
    .await;
    etcd.put(
        "/ego/hello/configurators/grpc:///routes",
        r#"{"address":"127.0.0.1:9"}"#,
        None,
    )
    .await;
    let mut decoy = provider.clone();
    decoy["address"] = json!("127.0.0.1:9");
    etcd.put(
        "/ego/hello2/providers/grpc://127.0.0.1:9",
        &decoy.to_string(),
        None,
    )
    .await;
    saga_succeeds(&host, &busi, "ego-etcd", |method| {
        format!("etcd:///hello{method}")
    })
    .await;

    assert!(host.terminate().await.success());
    etcd.wait_prefix(prefix, 3, |kvs| kvs.is_empty()).await;
}
