//! 2-phase messages and topics against the real binary (docs/engine.md §9, msg).

mod common;

use std::time::Duration;

use common::{Busi, Host, Reply};
use serde_json::{json, Value};

fn msg(gid: &str, busi: &Busi, actions: &[&str]) -> Value {
    let steps: Vec<Value> = actions
        .iter()
        .map(|a| json!({"action": if a.starts_with("topic://") { a.to_string() } else { busi.url(a) }}))
        .collect();
    let payloads: Vec<String> = actions
        .iter()
        .map(|_| r#"{"amount":30}"#.to_owned())
        .collect();
    json!({"gid": gid, "trans_type": "msg", "steps": steps, "payloads": payloads, "query_prepared": busi.url("/QueryPrepared")})
}

#[tokio::test]
async fn topic_fans_out_to_every_subscriber() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    for url in ["/U1", "/U2"] {
        let (status, _) = host
            .get(&format!(
                "/subscribe?topic=t2&url={}&remark=r",
                busi.url(url)
            ))
            .await;
        assert_eq!(status, 200);
    }
    host.get(&format!("/subscribe?topic=t1&url={}", busi.url("/Only")))
        .await;
    let gid = host.new_gid().await;
    assert_eq!(
        host.post("/submit", msg(&gid, &busi, &["topic://t2", "topic://t1"]))
            .await
            .0,
        200
    );
    let q = host.wait_status(&gid, "succeed", 10).await;
    let ids: Vec<&str> = q["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["branch_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["01-01", "01-02", "02"]);
    assert_eq!(busi.calls("/U2")[0].query["branch_id"], "01-02");
    assert_eq!(busi.calls("/Only").len(), 1);
}

#[tokio::test]
async fn unknown_topic_stores_nothing() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    let (status, reply) = host
        .post("/submit", msg(&gid, &busi, &["topic://nope"]))
        .await;
    assert_eq!(status, 500);
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("topic not found"));
    assert_eq!(host.query(&gid).await["transaction"], Value::Null);
}

#[tokio::test]
async fn check_back_ongoing_then_success_delivers() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/QueryPrepared", Reply::ongoing());
    let gid = host.new_gid().await;
    assert_eq!(
        host.post("/prepare", msg(&gid, &busi, &["/TransOut", "/TransIn"]))
            .await
            .0,
        200
    );
    host.advance_clock(40).await;
    busi.wait_for("/QueryPrepared", 1).await;
    let check = &busi.calls("/QueryPrepared")[0];
    assert_eq!(check.method, "GET");
    assert_eq!(
        (
            check.query["branch_id"].as_str(),
            check.query["op"].as_str(),
            check.query["trans_type"].as_str()
        ),
        ("00", "msg", "msg")
    );
    assert_eq!(host.status(&gid).await, "prepared");
    host.advance_clock(15).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(host.branch_statuses(&gid).await, ["succeed", "succeed"]);
}

#[tokio::test]
async fn check_back_failure_fails_without_delivering() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/QueryPrepared", Reply::failure("rolled back"));
    let gid = host.new_gid().await;
    assert_eq!(
        host.post("/prepare", msg(&gid, &busi, &["/TransOut", "/TransIn"]))
            .await
            .0,
        200
    );
    host.advance_clock(60).await;
    host.wait_status(&gid, "failed", 10).await;
    assert_eq!(host.branch_statuses(&gid).await, ["prepared", "prepared"]);
    assert!(busi.calls("/TransOut").is_empty());
}

#[tokio::test]
async fn check_back_waits_for_the_timeout() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    let mut body = msg(&gid, &busi, &["/TransOut"]);
    body["timeout_to_fail"] = json!(120);
    assert_eq!(host.post("/prepare", body).await.0, 200);
    host.advance_clock(60).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(busi.calls("/QueryPrepared").is_empty(), "not timed out yet");
    assert_eq!(host.status(&gid).await, "prepared");
    host.advance_clock(120).await;
    host.wait_status(&gid, "succeed", 10).await;
}

#[tokio::test]
async fn prepare_is_idempotent_until_finished() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    let body = msg(&gid, &busi, &["/TransOut"]);
    assert_eq!(host.post("/prepare", body.clone()).await.0, 200);
    assert_eq!(host.post("/prepare", body.clone()).await.0, 200);
    assert_eq!(host.post("/submit", body.clone()).await.0, 200);
    host.wait_status(&gid, "succeed", 10).await;
    let (status, reply) = host.post("/prepare", body.clone()).await;
    assert_eq!(
        (status, reply["message"].as_str()),
        (
            409,
            Some("current status 'succeed', cannot prepare. FAILURE")
        )
    );
    let (status, reply) = host.post("/submit", body).await;
    assert_eq!(status, 409);
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("cannot sumbmit"));
}

#[tokio::test]
async fn concurrent_msg_delivers_in_parallel() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/A", Reply::ok().after(Duration::from_millis(400)));
    busi.always("/B", Reply::ok().after(Duration::from_millis(400)));
    let gid = host.new_gid().await;
    let mut body = msg(&gid, &busi, &["/A", "/B"]);
    body["concurrent"] = json!(true);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 200);
    let (a, b) = (&busi.calls("/A")[0], &busi.calls("/B")[0]);
    let gap = common::apart(a, b);
    assert!(gap < Duration::from_millis(300), "{gap:?}");
}

#[tokio::test]
async fn delay_holds_delivery() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    let mut body = msg(&gid, &busi, &["/TransOut"]);
    body["custom_data"] = json!(r#"{"Delay":10}"#);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    assert!(busi.calls("/TransOut").is_empty());
    host.advance_clock(12).await;
    host.wait_status(&gid, "succeed", 10).await;
}

#[tokio::test]
async fn failed_action_is_retried_never_rolled_back() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/TransIn", Reply::failure("later"));
    let gid = host.new_gid().await;
    let mut body = msg(&gid, &busi, &["/TransOut", "/TransIn"]);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    let q = host.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "submitted");
    assert_eq!(q["transaction"]["next_cron_interval"], 20);
    host.advance_clock(25).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(
        busi.calls("/TransOut").len(),
        1,
        "a delivered action is not repeated"
    );
}

#[tokio::test]
async fn abort_of_prepared_and_submitted_msg() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    assert_eq!(
        host.post("/prepare", msg(&gid, &busi, &["/TransOut"]))
            .await
            .0,
        200
    );
    assert_eq!(
        host.post("/abort", json!({"gid": gid, "trans_type": "msg"}))
            .await
            .0,
        200
    );
    assert_eq!(host.status(&gid).await, "failed");
    let delivered = host.new_gid().await;
    let mut body = msg(&delivered, &busi, &["/TransOut"]);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 200);
    let (status, reply) = host
        .post("/abort", json!({"gid": delivered, "trans_type": "msg"}))
        .await;
    assert_eq!(
        (status, reply["dtm_result"].as_str()),
        (409, Some("FAILURE"))
    );
    assert_eq!(busi.calls("/TransOut").len(), 1);
}

/// Submits without `wait_result` run their passes in at most `TransCronConcurrency` background
/// slots, waiting for a free one before they are answered: with 2 slots and a branch that
/// takes a second, six msgs are called two at a time, and every one succeeds.
#[tokio::test]
async fn background_passes_wait_for_a_free_slot() {
    let host = Host::start_with(&[("TRANS_CRON_CONCURRENCY", "2")]).await;
    let busi = Busi::start().await;
    busi.always("/Slow", Reply::ok().after(Duration::from_millis(1000)));
    let gids: Vec<String> = (0..6).map(|i| format!("slots-{i}")).collect();
    for gid in &gids {
        let (status, body) = host.post("/submit", msg(gid, &busi, &["/Slow"])).await;
        assert_eq!(status, 200, "{body}");
    }
    for gid in &gids {
        host.wait_status(gid, "succeed", 20).await;
    }
    let calls = busi.calls("/Slow");
    assert_eq!(calls.len(), 6, "{calls:?}");
    for call in &calls {
        let together = calls
            .iter()
            .filter(|other| other.at >= call.at && other.at - call.at < Duration::from_millis(900))
            .count();
        assert!(together <= 2, "{together} calls within 0.9 s: {calls:?}");
    }
}
