//! The go-zero driver against the real binary and a real etcd per test: the coordinator's
//! registration (`dtmservice/<lease>` = its endpoint) through its life, and gRPC branches whose
//! servers are `etcd://…/trans.rpc`, registered the way go-zero registers them.

mod common;

use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::grpc::GrpcBusi;
use common::{free_port, guest_wasm, run_to_exit, Host};
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use serde_json::json;
use tonic::transport::Channel;

const METHOD: &str = "/busi.Busi/TransOut";
/// The refresh interval the driver suggests for etcd servers.
const REFRESH: Duration = Duration::from_secs(5);
/// How long business keys registered by the tests live without renewal: longer than any test.
const BUSI_TTL: u64 = 120;

/// A coordinator with the gozero driver, registered in `etcd` as `dtmservice` at its own gRPC
/// address, plus a gRPC client of it.
struct Coordinator {
    host: Host,
    endpoint: String,
    dtm: DtmClient<Channel>,
}

impl Coordinator {
    async fn start(etcd: &Etcd, target_query: &str) -> Self {
        let wasm = guest_wasm("gozero");
        // The endpoint must be known before the start, so the test picks the gRPC port.
        let grpc_port = free_port();
        let endpoint = format!("127.0.0.1:{grpc_port}");
        let target = format!("etcd://{}/dtmservice{target_query}", etcd.address());
        let host = Host::start_with(&[
            ("MICRO_SERVICE_DRIVER", "dtm-driver-gozero"),
            ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
            ("MICRO_SERVICE_TARGET", &target),
            ("MICRO_SERVICE_END_POINT", &endpoint),
            ("GRPC_PORT", &grpc_port.to_string()),
        ])
        .await;
        let dtm = DtmClient::connect(format!("http://{endpoint}"))
            .await
            .unwrap();
        Self {
            host,
            endpoint,
            dtm,
        }
    }

    /// Submits a one-step saga calling `url` and waits for its result; true when it succeeded.
    async fn saga(&mut self, gid: &str, url: &str) -> bool {
        let request = common::driver::one_step_saga(gid, url.to_owned());
        self.dtm.submit(request).await.is_ok() && self.host.status(gid).await == "succeed"
    }

    /// Like [`Coordinator::saga`], but the saga must succeed.
    async fn must_succeed(&mut self, gid: &str, url: &str) {
        assert!(
            self.saga(gid, url).await,
            "{gid} did not succeed: {}\nlog:\n{}",
            self.host.query(gid).await,
            self.host.log()
        );
    }
}

/// Registers `busi` under `trans.rpc` as go-zero does: `trans.rpc/<lease>` = its address.
async fn register_busi(etcd: &Etcd, busi: &GrpcBusi) -> String {
    let lease = etcd.grant(BUSI_TTL).await;
    etcd.put(&format!("trans.rpc/{lease}"), &busi.server, Some(&lease))
        .await;
    lease
}

/// A branch URL reaching `trans.rpc` through the driver's etcd resolution.
fn trans_url(etcd: &Etcd) -> String {
    format!("etcd://{}/trans.rpc{METHOD}", etcd.address())
}

/// The one key under `dtmservice/`, once the coordinator has registered.
async fn registered(etcd: &Etcd) -> (String, String) {
    let kvs = etcd
        .wait_prefix("dtmservice/", 10, |kvs| !kvs.is_empty())
        .await;
    assert_eq!(kvs.len(), 1, "{kvs:?}");
    kvs.into_iter().next().unwrap()
}

/// The lease ID a go-zero key ends with.
fn lease_of(key: &str) -> &str {
    let lease = key.rsplit('/').next().unwrap();
    assert!(
        lease.parse::<i64>().is_ok(),
        "{key} does not end with a lease ID"
    );
    lease
}

/// Seconds `lease` has left, as etcd says.
async fn ttl(etcd: &Etcd, lease: &str) -> i64 {
    let answer = etcd.call("lease/timetolive", json!({"ID": lease})).await;
    answer["TTL"].as_str().unwrap_or("0").parse().unwrap()
}

#[test]
fn driver_check_passes_every_gozero_vector() {
    common::driver::vectors_pass("gozero");
}

#[tokio::test]
async fn the_coordinator_is_registered_kept_alive_and_removed_on_sigterm() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let mut coordinator = Coordinator::start(&etcd, "").await;
    let (key, value) = registered(&etcd).await;
    assert_eq!(value, coordinator.endpoint, "the endpoint verbatim");
    let lease = lease_of(&key).to_owned();
    let answer = etcd.call("lease/timetolive", json!({"ID": lease})).await;
    assert_eq!(answer["grantedTTL"], "10", "{answer}");

    // Renewed every ~3.3 s: the remaining time goes back up before it could run out.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut previous = ttl(&etcd, &lease).await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = ttl(&etcd, &lease).await;
        if now > previous {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lease {lease} was not renewed\n{}",
            coordinator.host.log()
        );
        previous = now;
    }

    // What etcd holds is the coordinator's address for real.
    let mut via_registry = DtmClient::connect(format!("http://{value}")).await.unwrap();
    assert!(via_registry.new_gid(()).await.is_ok());

    assert!(coordinator.host.terminate().await.success());
    assert!(
        etcd.get_prefix("dtmservice/").await.is_empty(),
        "the lease is revoked before the coordinator exits\n{}",
        coordinator.host.log()
    );
}

#[tokio::test]
async fn after_kill_9_the_key_expires_with_its_lease() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let mut coordinator = Coordinator::start(&etcd, "").await;
    registered(&etcd).await;
    coordinator.host.kill9();
    assert_eq!(
        etcd.get_prefix("dtmservice/").await.len(),
        1,
        "nobody removed the key"
    );
    let killed = Instant::now();
    etcd.wait_prefix("dtmservice/", 13, |kvs| kvs.is_empty())
        .await;
    assert!(
        killed.elapsed() > Duration::from_secs(3),
        "gone after {:?}: faster than a lease can expire",
        killed.elapsed()
    );
}

#[tokio::test]
async fn a_lost_lease_is_replaced_by_a_new_key() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let coordinator = Coordinator::start(&etcd, "").await;
    let (key, _) = registered(&etcd).await;
    etcd.revoke(lease_of(&key)).await;
    let kvs = etcd
        .wait_prefix("dtmservice/", 10, |kvs| kvs.len() == 1 && kvs[0].0 != key)
        .await;
    assert_eq!(kvs[0].1, coordinator.endpoint);
    let log = coordinator.host.log();
    assert!(log.contains("registering again"), "{log}");
}

#[tokio::test]
async fn credentials_in_the_target_are_used_to_register_and_to_resolve() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    etcd.enable_auth("secret").await;
    let wasm = guest_wasm("gozero");
    let target = format!(
        "etcd://{}/dtmservice?user=root&password=wrong",
        etcd.address()
    );
    let (status, output) = run_to_exit(
        &[
            ("MICRO_SERVICE_DRIVER", "dtm-driver-gozero"),
            ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
            ("MICRO_SERVICE_TARGET", &target),
            ("MICRO_SERVICE_END_POINT", "127.0.0.1:36790"),
        ],
        &[],
    );
    assert!(!status.success(), "a failed registration stops the start");
    assert!(
        output.contains("authentication failed, invalid user ID or password"),
        "etcd's words are in the error: {output}"
    );

    let mut coordinator = Coordinator::start(&etcd, "?user=root&password=secret").await;
    let (_, value) = registered(&etcd).await;
    assert_eq!(value, coordinator.endpoint);
    let busi = GrpcBusi::start().await;
    register_busi(&etcd, &busi).await;
    coordinator.must_succeed("auth", &trans_url(&etcd)).await;
    assert_eq!(busi.calls(METHOD).len(), 1);
}

#[tokio::test]
async fn a_saga_reaches_a_service_registered_in_etcd() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let mut coordinator = Coordinator::start(&etcd, "").await;
    let busi = GrpcBusi::start().await;
    register_busi(&etcd, &busi).await;
    let url = trans_url(&etcd);
    coordinator.must_succeed("via-etcd", &url).await;
    let calls = busi.calls(METHOD);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].metadata["dtm-gid"], "via-etcd");
    assert_eq!(calls[0].body, [1]);
}

#[tokio::test]
async fn a_removed_instance_gets_no_calls_after_the_refresh() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let mut coordinator = Coordinator::start(&etcd, "").await;
    let (kept, removed) = (GrpcBusi::start().await, GrpcBusi::start().await);
    register_busi(&etcd, &kept).await;
    let removed_lease = register_busi(&etcd, &removed).await;
    let url = trans_url(&etcd);
    for i in 0..4 {
        coordinator.must_succeed(&format!("both-{i}"), &url).await;
    }
    assert!(!kept.calls(METHOD).is_empty(), "round robin over both");
    assert!(!removed.calls(METHOD).is_empty(), "round robin over both");

    etcd.revoke(&removed_lease).await;
    let revoked = Instant::now();
    // Calls may still reach the removed instance until the list is refreshed; then never.
    let mut quiet_since = 0;
    let mut last = removed.calls(METHOD).len();
    let mut i = 0;
    while quiet_since < 6 {
        assert!(
            revoked.elapsed() < REFRESH + Duration::from_secs(5),
            "the removed instance still gets calls {:?} after its key went",
            revoked.elapsed()
        );
        coordinator.must_succeed(&format!("one-{i}"), &url).await;
        i += 1;
        let now = removed.calls(METHOD).len();
        quiet_since = if now == last { quiet_since + 1 } else { 0 };
        last = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = kept.calls(METHOD).len();
    for j in 0..4 {
        coordinator.must_succeed(&format!("kept-{j}"), &url).await;
    }
    assert_eq!(removed.calls(METHOD).len(), last);
    assert_eq!(kept.calls(METHOD).len(), before + 4);
}

#[tokio::test]
async fn sagas_go_on_while_etcd_is_down_and_see_new_instances_once_it_is_back() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let mut coordinator = Coordinator::start(&etcd, "").await;
    let first = GrpcBusi::start().await;
    register_busi(&etcd, &first).await;
    let url = trans_url(&etcd);
    coordinator.must_succeed("up-0", &url).await;

    etcd.stop().await;
    // Past the refresh interval, re-resolving fails and the cached endpoints serve on.
    let stopped = Instant::now();
    let mut i = 0;
    while !coordinator.host.log().contains("resolving failed") {
        assert!(
            stopped.elapsed() < REFRESH + Duration::from_secs(5),
            "the host did not try to resolve again\n{}",
            coordinator.host.log()
        );
        coordinator.must_succeed(&format!("down-{i}"), &url).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    coordinator.must_succeed("down-after", &url).await;
    assert_eq!(first.calls(METHOD).len(), i + 2);

    etcd.start_again().await;
    let second = GrpcBusi::start().await;
    register_busi(&etcd, &second).await;
    let restarted = Instant::now();
    let mut j = 0;
    while second.calls(METHOD).is_empty() {
        assert!(
            restarted.elapsed() < REFRESH + Duration::from_secs(5),
            "the new instance got no call\n{}",
            coordinator.host.log()
        );
        coordinator.must_succeed(&format!("back-{j}"), &url).await;
        j += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The coordinator's own registration survived the outage (or was renewed).
    let kvs = etcd
        .wait_prefix("dtmservice/", 10, |kvs| kvs.len() == 1)
        .await;
    assert_eq!(kvs[0].1, coordinator.endpoint);
}
