//! Workflow over HTTP against the real binary (docs/engine.md §9, workflow): progress recorded by
//! the client, the final status from its submit, and the resume callback after a crash.

mod common;

use base64::Engine as _;
use common::{Busi, Host};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn workflow(gid: &str, busi: &Busi) -> Value {
    json!({"gid": gid, "trans_type": "workflow", "query_prepared": busi.url("/api/workflow/resume"),
        "custom_data": json!({"name": "wf_saga", "data": b64(b"{\"amount\":30}")}).to_string()})
}

fn progress(gid: &str, branch_id: &str, op: &str, status: &str, data: &str) -> Value {
    json!({"gid": gid, "trans_type": "workflow", "branch_id": branch_id, "op": op, "status": status, "data": data})
}

#[tokio::test]
async fn workflow_records_progress_and_keeps_its_result() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let (status, reply) = host.post("/prepareWorkflow", workflow("wf-1", &busi)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (
            reply["transaction"]["status"].as_str(),
            reply["progresses"].clone()
        ),
        (Some("prepared"), json!([]))
    );
    assert_eq!(
        host.post(
            "/registerBranch",
            progress("wf-1", "01", "action", "succeed", "out done")
        )
        .await
        .0,
        200
    );
    let (status, reply) = host
        .post(
            "/registerBranch",
            progress("wf-1", "01", "action", "succeed", "again"),
        )
        .await;
    assert_eq!(
        (status, reply["message"].as_str()),
        (500, Some("storage: UniqueKeyConflict"))
    );
    assert_eq!(
        host.post(
            "/registerBranch",
            progress("wf-1", "02", "action", "succeed", "in done")
        )
        .await
        .0,
        200
    );
    let submit = json!({"gid": "wf-1", "trans_type": "workflow", "req_extra": {"status": "succeed", "result": b64(b"all done")}});
    assert_eq!(host.post("/submit", submit.clone()).await.0, 200);
    let (status, _) = host.post("/submit", submit).await;
    assert_eq!(status, 500, "a second submit loses the compare-and-set");

    let (_, reply) = host.post("/prepareWorkflow", workflow("wf-1", &busi)).await;
    assert_eq!(reply["transaction"]["status"], "succeed");
    assert_eq!(reply["transaction"]["result"], b64(b"all done"));
    let steps: Vec<(&str, &str, &str)> = reply["progresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["branch_id"].as_str().unwrap(),
                p["status"].as_str().unwrap(),
                p["bin_data"].as_str().unwrap(),
            )
        })
        .collect();
    let (out, inn) = (b64(b"out done"), b64(b"in done"));
    assert_eq!(
        steps,
        [
            ("01", "succeed", out.as_str()),
            ("02", "succeed", inn.as_str())
        ]
    );
    let late = host
        .post(
            "/registerBranch",
            progress("wf-1", "03", "action", "succeed", ""),
        )
        .await;
    assert_eq!(late.0, 409);
}

#[tokio::test]
async fn failed_workflow_keeps_its_reason() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    host.post("/prepareWorkflow", workflow("wf-2", &busi)).await;
    host.post(
        "/registerBranch",
        progress("wf-2", "01", "action", "failed", "insufficient balance"),
    )
    .await;
    let submit = json!({"gid": "wf-2", "trans_type": "workflow", "req_extra": {"status": "failed", "rollback_reason": "insufficient balance"}});
    assert_eq!(host.post("/submit", submit).await.0, 200);
    let q = host.query("wf-2").await;
    assert_eq!(
        (
            q["transaction"]["status"].as_str(),
            q["transaction"]["rollback_reason"].as_str()
        ),
        (Some("failed"), Some("insufficient balance"))
    );
    let bad = json!({"gid": "wf-2", "trans_type": "workflow", "req_extra": {"status": "maybe"}});
    assert_eq!(host.post("/submit", bad).await.0, 400);
}

#[tokio::test]
async fn interrupted_workflow_is_called_back_after_a_crash() {
    let (mut host, busi) = (Host::start().await, Busi::start().await);
    host.post("/prepareWorkflow", workflow("wf-3", &busi)).await;
    host.post(
        "/registerBranch",
        progress("wf-3", "01", "action", "succeed", ""),
    )
    .await;
    host.kill9();
    host.restart().await;
    assert!(busi.calls("/api/workflow/resume").is_empty());
    host.advance_clock(15).await;
    busi.wait_for("/api/workflow/resume", 1).await;
    let call = &busi.calls("/api/workflow/resume")[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.body, "{\"amount\":30}");
    assert_eq!(
        (
            call.query["op"].as_str(),
            call.query["branch_id"].as_str(),
            call.query["trans_type"].as_str()
        ),
        ("wf_saga", "00", "workflow")
    );
    assert_eq!(
        host.status("wf-3").await,
        "prepared",
        "the coordinator changes nothing itself"
    );
}

#[tokio::test]
async fn prepare_workflow_checks_its_input() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let mut no_name = workflow("wf-4", &busi);
    no_name["custom_data"] = json!("{\"data\":\"\"}");
    assert_eq!(host.post("/prepareWorkflow", no_name).await.0, 400);
    let mut saga = workflow("wf-4", &busi);
    saga["trans_type"] = json!("saga");
    assert_eq!(host.post("/prepareWorkflow", saga).await.0, 500);
    assert_eq!(host.query("wf-4").await["transaction"], Value::Null);
}
