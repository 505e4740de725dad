//! Crashes, restarts, unreachable branches and load, against the real binary.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{free_port, saga, transfer, Busi, Host, Reply};
use serde_json::json;

/// A transfer saga whose TransOut succeeded and whose TransIn is under way.
const MID_FLIGHT: [&str; 4] = ["prepared", "succeed", "prepared", "prepared"];

#[tokio::test]
async fn saga_killed_mid_flight_completes_after_restart() {
    let (mut host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/TransIn", Reply::ok().after(Duration::from_secs(30)));
    let gid = host.new_gid().await;
    let body = transfer(&gid, &busi);
    assert_eq!(host.post("/submit", body).await.0, 200);
    busi.wait_for("/TransIn", 1).await;
    // TransOut's result is written beside the TransIn call (UpdateBranchSync: 1 writes each
    // result at once, without holding the pass back): the kill comes once it is stored.
    host.wait_branch_statuses(&gid, &MID_FLIGHT, 10).await;
    host.kill9();
    host.restart().await;
    assert_eq!(host.status(&gid).await, "submitted");
    assert_eq!(host.branch_statuses(&gid).await, MID_FLIGHT);
    host.advance_clock(15).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(
        busi.calls("/TransOut").len(),
        1,
        "a recorded success is not repeated"
    );
    assert_eq!(busi.calls("/TransIn").len(), 2);
    assert!(busi.calls("/TransOutRevert").is_empty());
}

#[tokio::test]
async fn acknowledged_submit_survives_kill9() {
    let (mut host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransOut", Reply::ongoing());
    let gids: Vec<String> = (0..20).map(|i| format!("durable-{i}")).collect();
    for gid in &gids {
        let body = saga(gid, &busi, &[("/TransOut", "/TransOutRevert")]);
        assert_eq!(host.post("/submit", body).await.0, 200);
    }
    host.kill9();
    host.restart().await;
    for gid in &gids {
        assert_eq!(host.status(gid).await, "submitted", "{gid} lost");
    }
}

#[tokio::test]
async fn unreachable_branch_is_retried_with_backoff_until_it_is_up() {
    let host = Host::start().await;
    let port = free_port();
    let gid = host.new_gid().await;
    let url = format!("http://127.0.0.1:{port}");
    let body = json!({"gid": gid, "trans_type": "saga", "wait_result": true,
        "steps": [{"action": format!("{url}/TransOut"), "compensate": format!("{url}/TransOutRevert")}], "payloads": ["{}"]});
    assert_eq!(host.post("/submit", body).await.0, 409);
    assert_eq!(
        host.query(&gid).await["transaction"]["next_cron_interval"],
        20
    );
    host.advance_clock(25).await;
    for _ in 0..200 {
        if host.query(&gid).await["transaction"]["next_cron_interval"] == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        host.query(&gid).await["transaction"]["next_cron_interval"],
        40,
        "second failure doubles again"
    );
    let busi = Busi::start_on(port).await;
    host.advance_clock(45).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(busi.calls("/TransOut").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sagas_all_finish_with_the_right_calls() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransIn", Reply::ok().after(Duration::from_millis(5)));
    let submits = (0..200).map(|i| {
        let (host, busi) = (&host, &busi);
        async move {
            let gid = format!("load-{i}");
            // Every tenth saga fails its second step and must be compensated.
            let action = if i % 10 == 0 { "/Refuse" } else { "/TransIn" };
            let body = saga(
                &gid,
                busi,
                &[("/TransOut", "/TransOutRevert"), (action, "/TransInRevert")],
            );
            assert_eq!(host.post("/submit", body).await.0, 200);
            gid
        }
    });
    busi.always("/Refuse", Reply::failure("no"));
    let gids = futures::future::join_all(submits).await;
    for (i, gid) in gids.iter().enumerate() {
        let expected = if i % 10 == 0 { "failed" } else { "succeed" };
        host.wait_status(gid, expected, 30).await;
    }
    let per_gid = |path: &str| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for call in busi.calls(path) {
            *counts.entry(call.query["gid"].clone()).or_default() += 1;
        }
        counts
    };
    let (outs, ins, reverts) = (
        per_gid("/TransOut"),
        per_gid("/TransIn"),
        per_gid("/TransOutRevert"),
    );
    for (i, gid) in gids.iter().enumerate() {
        assert_eq!(outs.get(gid), Some(&1), "{gid}");
        if i % 10 == 0 {
            assert_eq!((ins.get(gid), reverts.get(gid)), (None, Some(&1)), "{gid}");
        } else {
            assert_eq!((ins.get(gid), reverts.get(gid)), (Some(&1), None), "{gid}");
        }
    }
}

#[tokio::test]
async fn sigterm_finishes_running_passes_before_exit() {
    let (mut host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/TransIn", Reply::ok().after(Duration::from_millis(800)));
    let gid = host.new_gid().await;
    let body = transfer(&gid, &busi);
    assert_eq!(host.post("/submit", body).await.0, 200);
    busi.wait_for("/TransIn", 1).await;
    let status = host.terminate().await;
    assert!(status.success(), "{status}");
    assert!(host.log().contains("stopped"));
    host.restart().await;
    assert_eq!(
        host.status(&gid).await,
        "succeed",
        "the in-flight pass finished before exit; log:\n{}",
        host.log()
    );
}

#[tokio::test]
async fn a_branch_call_under_way_is_not_repeated_when_retry_interval_is_short() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/TransIn", Reply::ok().after(Duration::from_secs(5)));
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["retry_interval"] = json!(1);
    body["request_timeout"] = json!(10);
    assert_eq!(host.post("/submit", body).await.0, 200);
    busi.wait_for("/TransIn", 1).await;
    // Past the transaction's retry_interval while its call still runs: the recovery loop
    // (every TransCronInterval, 3 s) must not claim it and call TransIn a second time.
    host.advance_clock(2).await;
    host.wait_status(&gid, "succeed", 15).await;
    assert_eq!(busi.calls("/TransIn").len(), 1);
}

/// A transfer saga whose branches are at `base` (a service that may not be up yet).
fn transfer_at(gid: &str, base: &str) -> serde_json::Value {
    json!({"gid": gid, "trans_type": "saga",
        "steps": [
            {"action": format!("{base}/TransOut"), "compensate": format!("{base}/TransOutRevert")},
            {"action": format!("{base}/TransIn"), "compensate": format!("{base}/TransInRevert")},
        ],
        "payloads": ["{}", "{}"]})
}

/// Waits (at most `secs`) until every saga of `gids` succeeded; returns how long it took.
async fn all_succeed(host: &Host, gids: &[String], secs: u64) -> Duration {
    let started = std::time::Instant::now();
    for gid in gids {
        let left = secs.saturating_sub(started.elapsed().as_secs()).max(1);
        host.wait_status(gid, "succeed", left).await;
    }
    started.elapsed()
}

/// How long each call of the drain tests takes once the service is up.
const CALL: Duration = Duration::from_millis(500);

/// A backlog left by a business-service outage drains many passes at once: 100 sagas whose
/// first call was refused take two calls of 500 ms each; one after another that is 100 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_many_passes_at_once() {
    let host = Host::start_with(&[("TRANS_CRON_INTERVAL", "1")]).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let gids: Vec<String> = (0..100).map(|i| format!("backlog-{i}")).collect();
    for gid in &gids {
        assert_eq!(host.post("/submit", transfer_at(gid, &base)).await.0, 200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busi = Busi::start_on(port).await;
    for path in ["/TransOut", "/TransIn"] {
        busi.always(path, Reply::ok().after(CALL));
    }
    host.advance_clock(25).await;
    let took = all_succeed(&host, &gids, 60).await;
    assert!(
        took < Duration::from_secs(20),
        "100 sagas of 2 × 500 ms took {took:?} to drain"
    );
    let (_, metrics) = (
        0,
        host.http
            .get(host.url("/api/metrics"))
            .send()
            .await
            .unwrap(),
    );
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("dtm_recovery_passes_total{outcome=\"finished\"} 100"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dtm_recovery_passes_in_flight 0"),
        "{metrics}"
    );
}

/// A host killed with sagas in flight: the restarted host finishes them all together once
/// their lease has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_in_flight_at_a_kill_finish_together_after_the_restart() {
    let (mut host, busi) = (
        Host::start_with(&[("TRANS_CRON_INTERVAL", "1")]).await,
        Busi::start().await,
    );
    for path in ["/TransOut", "/TransIn"] {
        busi.always(path, Reply::ok().after(Duration::from_secs(2)));
    }
    let gids: Vec<String> = (0..150).map(|i| format!("crash-{i}")).collect();
    for gid in &gids {
        assert_eq!(host.post("/submit", transfer(gid, &busi)).await.0, 200);
    }
    busi.wait_for("/TransOut", gids.len()).await;
    host.kill9();
    host.restart().await;
    // Past every lease the dead host's passes held.
    host.advance_clock(15).await;
    let took = all_succeed(&host, &gids, 60).await;
    assert!(
        took < Duration::from_secs(25),
        "150 sagas of 2 × 2 s took {took:?} after the restart"
    );
}

/// A business service that hangs cannot take every recovery slot: once its passes fail, it
/// gets a quarter of them, and the backlog of a healthy service drains beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_service_leaves_slots_for_the_others() {
    let host = Host::start_with(&[
        ("TRANS_CRON_INTERVAL", "1"),
        ("TRANS_CRON_CONCURRENCY", "8"),
    ])
    .await;
    // Accepts connections and never answers: every call waits for RequestTimeout (3 s).
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_base = format!("http://{}", hanging.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    let stuck: Vec<String> = (0..100).map(|i| format!("hangs-{i}")).collect();
    for gid in &stuck {
        assert_eq!(
            host.post("/submit", transfer_at(gid, &hanging_base))
                .await
                .0,
            200
        );
    }
    // Their first calls time out; the healthy service's sagas come after them in the backlog.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let port = free_port();
    let healthy: Vec<String> = (0..40).map(|i| format!("healthy-{i}")).collect();
    for gid in &healthy {
        let body = transfer_at(gid, &format!("http://127.0.0.1:{port}"));
        assert_eq!(host.post("/submit", body).await.0, 200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busi = Busi::start_on(port).await;
    for path in ["/TransOut", "/TransIn"] {
        busi.always(path, Reply::ok().after(CALL));
    }
    host.advance_clock(60).await;
    // Without a share per service: 100 hanging sagas × 3 s over 8 slots first, 37 s.
    let took = all_succeed(&host, &healthy, 60).await;
    assert!(
        took < Duration::from_secs(20),
        "the healthy service's backlog took {took:?} beside a hanging one"
    );
    held.abort();
}
