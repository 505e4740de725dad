//! TCC and XA against the real binary (docs/engine.md §9, TCC and XA).

mod common;

use std::time::Duration;

use common::{Busi, Host, Reply};
use serde_json::{json, Value};

async fn prepare(host: &Host, trans_type: &str, extra: Value) -> String {
    let gid = host.new_gid().await;
    let mut body = json!({"gid": gid, "trans_type": trans_type});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    assert_eq!(host.post("/prepare", body).await.0, 200);
    gid
}

async fn register_tcc(host: &Host, busi: &Busi, gid: &str, branch_id: &str) {
    let body = json!({"gid": gid, "trans_type": "tcc", "branch_id": branch_id, "data": format!(r#"{{"b":"{branch_id}"}}"#),
        "confirm": busi.url(&format!("/Confirm{branch_id}")), "cancel": busi.url(&format!("/Cancel{branch_id}"))});
    assert_eq!(
        host.post("/registerBranch", body).await,
        (200, json!({"dtm_result": "SUCCESS"}))
    );
}

async fn register_xa(host: &Host, busi: &Busi, gid: &str, branch_id: &str) {
    let body = json!({"gid": gid, "trans_type": "xa", "branch_id": branch_id, "url": busi.url(&format!("/Xa{branch_id}"))});
    assert_eq!(host.post("/registerBranch", body).await.0, 200);
}

#[tokio::test]
async fn tcc_confirms_last_registered_first() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = prepare(&host, "tcc", json!({})).await;
    register_tcc(&host, &busi, &gid, "01").await;
    register_tcc(&host, &busi, &gid, "02").await;
    let (status, _) = host
        .post(
            "/submit",
            json!({"gid": gid, "trans_type": "tcc", "wait_result": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["prepared", "succeed", "prepared", "succeed"]
    );
    let (c1, c2) = (&busi.calls("/Confirm01")[0], &busi.calls("/Confirm02")[0]);
    assert!(c2.at <= c1.at);
    assert_eq!(
        (c1.method.as_str(), c1.body.as_str()),
        ("POST", r#"{"b":"01"}"#)
    );
    assert_eq!(
        (
            c1.query["op"].as_str(),
            c1.query["branch_id"].as_str(),
            c1.query["trans_type"].as_str()
        ),
        ("confirm", "01", "tcc")
    );
    assert!(busi.calls("/Cancel01").is_empty());
}

#[tokio::test]
async fn tcc_abort_cancels_and_cron_finishes_an_ongoing_cancel() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/Cancel02", Reply::ongoing());
    let gid = prepare(&host, "tcc", json!({"wait_result": true})).await;
    register_tcc(&host, &busi, &gid, "01").await;
    register_tcc(&host, &busi, &gid, "02").await;
    let (status, reply) = host
        .post(
            "/abort",
            json!({"gid": gid, "trans_type": "tcc", "rollback_reason": "try failed FAILURE"}),
        )
        .await;
    assert_eq!(
        (status, reply["dtm_result"].as_str()),
        (425, Some("ONGOING"))
    );
    assert_eq!(host.status(&gid).await, "aborting");
    host.advance_clock(15).await;
    let q = host.wait_status(&gid, "failed", 10).await;
    assert_eq!(q["transaction"]["rollback_reason"], "try failed FAILURE");
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "prepared", "succeed", "prepared"]
    );
}

#[tokio::test]
async fn tcc_prepared_timeout_cancels_and_closes_registration() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = prepare(&host, "tcc", json!({})).await;
    register_tcc(&host, &busi, &gid, "01").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        host.status(&gid).await,
        "prepared",
        "not timed out within 35 s"
    );
    host.advance_clock(300).await;
    let q = host.wait_status(&gid, "failed", 10).await;
    let reason = q["transaction"]["rollback_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Timeout after ") && reason.ends_with(" seconds"),
        "{reason}"
    );
    assert_eq!(host.branch_statuses(&gid).await, ["succeed", "prepared"]);
    let late = json!({"gid": gid, "trans_type": "tcc", "branch_id": "02", "confirm": busi.url("/C"), "cancel": busi.url("/X")});
    let (status, reply) = host.post("/registerBranch", late).await;
    assert_eq!(
        (status, reply["message"].as_str().unwrap()),
        (
            409,
            format!("no trans with gid: {gid} status: prepared found FAILURE").as_str()
        )
    );
    assert_eq!(
        host.post("/abort", json!({"gid": gid, "trans_type": "tcc"}))
            .await
            .0,
        409
    );
}

#[tokio::test]
async fn tcc_empty_urls_and_node_style_registration() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = prepare(&host, "tcc", json!({"branch_headers": {"h": "v"}})).await;
    let node = json!({"gid": gid, "trans_type": "tcc", "branch_id": "01", "try": busi.url("/Try"), "status": "prepared", "confirm": "", "cancel": ""});
    assert_eq!(host.post("/registerTccBranch", node).await.0, 200);
    assert_eq!(
        host.post(
            "/submit",
            json!({"gid": gid, "trans_type": "tcc", "wait_result": true})
        )
        .await
        .0,
        200
    );
    assert_eq!(host.branch_statuses(&gid).await, ["prepared", "succeed"]);
    assert!(busi.all_calls().is_empty());
}

#[tokio::test]
async fn tcc_confirm_failure_is_retried() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/Confirm01", Reply::failure("not now"));
    let gid = prepare(&host, "tcc", json!({})).await;
    register_tcc(&host, &busi, &gid, "01").await;
    let (status, _) = host
        .post(
            "/submit",
            json!({"gid": gid, "trans_type": "tcc", "wait_result": true}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(host.status(&gid).await, "submitted");
    host.advance_clock(25).await;
    host.wait_status(&gid, "succeed", 10).await;
}

#[tokio::test]
async fn xa_commits_in_order_with_post() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = prepare(&host, "xa", json!({})).await;
    register_xa(&host, &busi, &gid, "01").await;
    register_xa(&host, &busi, &gid, "02").await;
    assert_eq!(
        host.post(
            "/submit",
            json!({"gid": gid, "trans_type": "xa", "wait_result": true})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["prepared", "succeed", "prepared", "succeed"]
    );
    let (x1, x2) = (&busi.calls("/Xa01")[0], &busi.calls("/Xa02")[0]);
    assert!(x1.at <= x2.at);
    assert_eq!(
        (
            x1.method.as_str(),
            x1.body.as_str(),
            x1.query["op"].as_str()
        ),
        ("POST", "", "commit")
    );
}

#[tokio::test]
async fn xa_abort_rolls_back_registered_branches() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = prepare(&host, "xa", json!({"wait_result": true})).await;
    register_xa(&host, &busi, &gid, "01").await;
    assert_eq!(
        host.post("/abort", json!({"gid": gid, "trans_type": "xa"}))
            .await
            .0,
        200
    );
    assert_eq!(host.status(&gid).await, "failed");
    assert_eq!(host.branch_statuses(&gid).await, ["succeed", "prepared"]);
    let rollback = &busi.calls("/Xa01")[0];
    assert_eq!(
        (rollback.method.as_str(), rollback.query["op"].as_str()),
        ("POST", "rollback")
    );
}

#[tokio::test]
async fn xa_timeout_without_branches_then_submit_refused() {
    let host = Host::start().await;
    let gid = prepare(&host, "xa", json!({})).await;
    host.advance_clock(300).await;
    host.wait_status(&gid, "failed", 10).await;
    let (status, reply) = host
        .post("/submit", json!({"gid": gid, "trans_type": "xa"}))
        .await;
    assert_eq!(status, 409);
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("current status 'failed', cannot sumbmit"));
}

#[tokio::test]
async fn xa_ongoing_commit_answers_425_then_cron_finishes() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/Xa01", Reply::ongoing());
    let gid = prepare(&host, "xa", json!({})).await;
    register_xa(&host, &busi, &gid, "01").await;
    let (status, reply) = host
        .post(
            "/submit",
            json!({"gid": gid, "trans_type": "xa", "wait_result": true}),
        )
        .await;
    assert_eq!(
        (status, reply),
        (425, json!({"dtm_result": "ONGOING", "message": "ONGOING"}))
    );
    host.advance_clock(15).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(host.branch_statuses(&gid).await, ["prepared", "succeed"]);
}
