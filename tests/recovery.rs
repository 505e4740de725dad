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
