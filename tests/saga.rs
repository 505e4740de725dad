//! Saga behaviour against the real binary and a real HTTP business service (docs/engine.md §9).

mod common;

use std::time::Duration;

use common::{run_to_exit, saga, transfer, Busi, Host, Reply};
use serde_json::json;

const SUCCEEDED: [&str; 4] = ["prepared", "succeed", "prepared", "succeed"];

#[tokio::test]
async fn normal_saga_calls_actions_with_dtm_parameters() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["branch_headers"] = json!({"test_header": "test"});
    assert_eq!(
        host.post("/submit", body).await,
        (200, json!({"dtm_result": "SUCCESS"}))
    );
    let q = host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(host.branch_statuses(&gid).await, SUCCEEDED);
    assert_eq!(q["transaction"]["rollback_reason"], "");
    assert!(q["transaction"]["finish_time"].is_string());
    let out = &busi.calls("/TransOut")[0];
    assert_eq!(out.method, "POST");
    assert_eq!(out.body, r#"{"amount":30}"#);
    assert_eq!(out.query["gid"], gid);
    assert_eq!(
        (
            out.query["branch_id"].as_str(),
            out.query["op"].as_str(),
            out.query["trans_type"].as_str()
        ),
        ("01", "action", "saga")
    );
    assert!(!out.query.contains_key("dtm"));
    assert_eq!(out.headers["test_header"], "test");
    assert_eq!(out.headers["content-type"], "application/json");
    assert_eq!(busi.calls("/TransIn")[0].query["branch_id"], "02");
    assert!(busi.calls("/TransOutRevert").is_empty());
}

#[tokio::test]
async fn action_failure_compensates_in_reverse_order() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransIn", Reply::failure("Insufficient balance"));
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["wait_result"] = json!(true);
    let (status, reply) = host.post("/submit", body).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["dtm_result"], "FAILURE");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("Insufficient balance"),
        "{reply}"
    );
    let q = host.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "failed");
    assert!(q["transaction"]["rollback_reason"]
        .as_str()
        .unwrap()
        .contains("Insufficient balance"));
    assert!(q["transaction"]["rollback_time"].is_string());
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "succeed", "succeed", "failed"]
    );
    let (c2, c1) = (
        &busi.calls("/TransInRevert")[0],
        &busi.calls("/TransOutRevert")[0],
    );
    assert!(c2.at <= c1.at, "the failed step is compensated first");
    assert_eq!(c1.query["op"], "compensate");
}

#[tokio::test]
async fn branch_answering_old_style_failure_body_is_a_failure() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransIn", Reply::with(200, r#"{"dtm_result":"FAILURE"}"#));
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "succeed", "succeed", "failed"]
    );
}

#[tokio::test]
async fn ongoing_action_is_finished_by_cron() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/TransOut", Reply::ongoing());
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["wait_result"] = json!(true);
    let (status, reply) = host.post("/submit", body).await;
    assert_eq!(
        (status, reply["message"].as_str()),
        (409, Some("wait result not return success: FAILURE"))
    );
    let q = host.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "submitted");
    assert_eq!(
        q["transaction"]["next_cron_interval"], 10,
        "ONGOING keeps the interval"
    );
    assert_eq!(host.branch_statuses(&gid).await, ["prepared"; 4]);
    host.advance_clock(15).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(host.branch_statuses(&gid).await, SUCCEEDED);
}

#[tokio::test]
async fn failing_compensation_is_retried_by_cron() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransIn", Reply::failure("no"));
    busi.once("/TransOutRevert", Reply::error());
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    let q = host.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "aborting");
    assert_eq!(
        q["transaction"]["next_cron_interval"], 20,
        "an error doubles the interval"
    );
    host.advance_clock(25).await;
    host.wait_status(&gid, "failed", 10).await;
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "succeed", "succeed", "failed"]
    );
    assert_eq!(busi.calls("/TransOutRevert").len(), 2);
}

#[tokio::test]
async fn duplicate_submit_drives_again_and_finished_refuses() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/TransOut", Reply::ongoing());
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body.clone()).await.0, 409);
    assert_eq!(host.status(&gid).await, "submitted");
    assert_eq!(host.post("/submit", body.clone()).await.0, 200);
    assert_eq!(host.status(&gid).await, "succeed");
    assert_eq!(
        host.branch_statuses(&gid).await,
        SUCCEEDED,
        "stored records were reused, not duplicated"
    );
    let (status, reply) = host.post("/submit", body).await;
    assert_eq!(status, 409);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("cannot sumbmit"),
        "{reply}"
    );
}

#[tokio::test]
async fn empty_urls_succeed_without_calls() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    let mut body = saga(&gid, &busi, &[("/TransOut", ""), ("", "")]);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 200);
    assert_eq!(host.branch_statuses(&gid).await, SUCCEEDED);
    assert_eq!(busi.all_calls().len(), 1);
}

#[tokio::test]
async fn concurrent_saga_runs_actions_in_parallel() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/A", Reply::ok().after(Duration::from_millis(400)));
    busi.always("/B", Reply::ok().after(Duration::from_millis(400)));
    let gid = host.new_gid().await;
    let mut body = saga(&gid, &busi, &[("/A", "/Ar"), ("/B", "/Br")]);
    body["custom_data"] = json!(r#"{"concurrent":true}"#);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 200);
    let (a, b) = (&busi.calls("/A")[0], &busi.calls("/B")[0]);
    let gap = common::apart(a, b);
    assert!(
        gap < Duration::from_millis(300),
        "both started together, {gap:?} apart"
    );
}

#[tokio::test]
async fn concurrent_prerequisite_failure_skips_the_dependent() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/A", Reply::failure("no"));
    let gid = host.new_gid().await;
    let mut body = saga(&gid, &busi, &[("/A", "/Ar"), ("/B", "/Br")]);
    body["custom_data"] = json!(r#"{"concurrent":true,"orders":{"1":[0]}}"#);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "failed", "prepared", "prepared"]
    );
    assert!(busi.calls("/B").is_empty() && busi.calls("/Br").is_empty());
}

#[tokio::test]
async fn concurrent_dependent_failure_compensates_dependents_first() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/B", Reply::failure("no"));
    busi.always("/Br", Reply::ok().after(Duration::from_millis(200)));
    let gid = host.new_gid().await;
    let mut body = saga(&gid, &busi, &[("/A", "/Ar"), ("/B", "/Br")]);
    body["custom_data"] = json!(r#"{"concurrent":true,"orders":{"1":[0]}}"#);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "succeed", "succeed", "failed"]
    );
    let (br, ar) = (&busi.calls("/Br")[0], &busi.calls("/Ar")[0]);
    assert!(
        ar.at >= br.at + Duration::from_millis(200),
        "step 0 compensated after step 1 finished"
    );
}

#[tokio::test]
async fn retry_interval_is_kept_for_ongoing_and_doubled_for_errors() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once("/Slow", Reply::ongoing());
    busi.once("/Broken", Reply::error());
    for (path, interval) in [("/Slow", 150), ("/Broken", 300)] {
        let gid = host.new_gid().await;
        let mut body = saga(&gid, &busi, &[(path, "/R")]);
        body["retry_interval"] = json!(150);
        body["wait_result"] = json!(true);
        assert_eq!(host.post("/submit", body).await.0, 409);
        let q = host.query(&gid).await;
        assert_eq!(q["transaction"]["next_cron_interval"], interval, "{path}");
    }
}

#[tokio::test]
async fn timeout_compensates_the_in_doubt_action() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransOut", Reply::ongoing());
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["timeout_to_fail"] = json!(1800);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    host.advance_clock(3600).await;
    let q = host.wait_status(&gid, "failed", 10).await;
    assert_eq!(
        q["transaction"]["rollback_reason"],
        "Timeout after 1800 seconds"
    );
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "prepared", "prepared", "prepared"]
    );
    assert!(busi.calls("/TransInRevert").is_empty());
}

#[tokio::test]
async fn saga_without_timeout_never_times_out() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransOut", Reply::ongoing());
    let gid = host.new_gid().await;
    let mut body = saga(&gid, &busi, &[("/TransOut", "/TransOutRevert")]);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    host.advance_clock(36_000).await;
    let before = busi.calls("/TransOut").len();
    busi.wait_for("/TransOut", before + 1).await;
    assert_eq!(host.status(&gid).await, "submitted");
    assert!(busi.calls("/TransOutRevert").is_empty());
}

#[tokio::test]
async fn retry_limit_retries_within_the_pass() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    for _ in 0..3 {
        busi.once("/TransIn", Reply::error());
    }
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["retry_limit"] = json!(3);
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 200);
    assert_eq!(busi.calls("/TransIn").len(), 4);
    assert_eq!(host.status(&gid).await, "succeed");
}

#[tokio::test]
async fn retry_limit_exhausted_rolls_back() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransIn", Reply::error());
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["retry_limit"] = json!(1);
    body["wait_result"] = json!(true);
    let (status, reply) = host.post("/submit", body).await;
    assert_eq!(status, 409, "{reply}");
    let q = host.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "failed");
    assert_eq!(
        q["transaction"]["rollback_reason"],
        "RetryCount is greater than RetryLimit, RetryLimit: 1"
    );
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["succeed", "succeed", "succeed", "prepared"]
    );
}

#[tokio::test]
async fn legacy_payload_in_steps_data() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let gid = host.new_gid().await;
    let body = json!({"gid": gid, "trans_type": "saga", "wait_result": true, "steps": [
        {"action": busi.url("/TransOut"), "compensate": busi.url("/R1"), "data": "{\"amount\":1}"},
        {"action": busi.url("/TransIn"), "compensate": busi.url("/R2"), "data": "{\"amount\":2}"},
    ]});
    assert_eq!(host.post("/submit", body).await.0, 200);
    assert_eq!(host.branch_statuses(&gid).await, SUCCEEDED);
    assert_eq!(busi.calls("/TransIn")[0].body, r#"{"amount":2}"#);
}

#[tokio::test]
async fn per_transaction_request_timeout() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/Slow", Reply::ok().after(Duration::from_millis(1500)));
    let slow = |gid: &str, timeout: i64| {
        let mut body = saga(gid, &busi, &[("/Slow", "")]);
        body["request_timeout"] = json!(timeout);
        body["wait_result"] = json!(true);
        body
    };
    let patient = host.new_gid().await;
    assert_eq!(host.post("/submit", slow(&patient, 3)).await.0, 200);
    let hasty = host.new_gid().await;
    assert_eq!(host.post("/submit", slow(&hasty, 1)).await.0, 409);
    assert_eq!(host.status(&hasty).await, "submitted");
}

#[tokio::test]
async fn branch_headers_replace_dtm_defaults_and_answers_are_read_in_part() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let huge = format!(
        "{{\"dtm_result\":\"FAILURE\",\"pad\":\"{}\"}}",
        "x".repeat(1 << 20)
    );
    busi.always("/TransIn", Reply::with(409, &huge));
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, &busi);
    body["branch_headers"] = json!({"Content-Type": "text/plain"});
    body["wait_result"] = json!(true);
    assert_eq!(host.post("/submit", body).await.0, 409);
    let call = &busi.calls("/TransOut")[0];
    assert_eq!(
        call.headers["content-type"], "text/plain",
        "one Content-Type, the branch header's"
    );
    let reason = host.query(&gid).await["transaction"]["rollback_reason"]
        .as_str()
        .unwrap()
        .len();
    assert!(
        reason < 70 * 1024,
        "only the start of a 1 MiB answer is kept: {reason} bytes"
    );
}

#[tokio::test]
async fn out_of_range_options_are_refused() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    for (key, value) in [
        ("request_timeout", json!(400_000_000_000i64)),
        ("retry_interval", json!(9_223_372_036_854_775i64)),
        ("timeout_to_fail", json!(-1)),
        ("retry_limit", json!(-5)),
        ("branch_headers", json!({"bad header": "x"})),
    ] {
        let gid = format!("range-{key}");
        let mut body = transfer(&gid, &busi);
        body[key] = value;
        let (status, reply) = host.post("/submit", body).await;
        assert_eq!(status, 400, "{key}: {reply}");
        assert!(
            reply["message"]
                .as_str()
                .unwrap()
                .contains(if key == "branch_headers" {
                    "bad header"
                } else {
                    key
                }),
            "{reply}"
        );
        assert_eq!(
            host.query(&gid).await["transaction"],
            serde_json::Value::Null
        );
    }
    assert!(busi.all_calls().is_empty());
}

/// dtm's client sends branch calls through the proxy in `HTTP_PROXY`, except to loopback; so
/// does dtm-host.
#[tokio::test]
async fn branch_calls_go_through_the_proxy_named_in_http_proxy() {
    use test_servers::{non_loopback_address, ForwardProxy, ProxyKind};
    let Some(proxy) = ForwardProxy::start(ProxyKind::Http, Some(("alice", "s3cret"))) else {
        return;
    };
    let remote = Busi::start_at((non_loopback_address(), 0).into()).await;
    let local = Busi::start().await;
    // None of the machine's own exceptions.
    let env = [
        ("HTTP_PROXY", proxy.url()),
        ("NO_PROXY", String::new()),
        ("no_proxy", String::new()),
    ];
    let host = Host::start_with(&env).await;
    for busi in [&remote, &local] {
        let gid = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&gid, busi)).await.0, 200);
        host.wait_status(&gid, "succeed", 10).await;
    }
    let via = |busi: &Busi| -> Vec<String> {
        let calls = busi.all_calls();
        let via = calls.iter().map(|c| c.headers.get("via").cloned());
        via.map(Option::unwrap_or_default).collect()
    };
    let proxied = via(&remote);
    assert_eq!(proxied.len(), 2, "{}", proxy.log());
    assert!(
        proxied.iter().all(|v| v.contains("tinyproxy")),
        "{proxied:?}"
    );
    assert_eq!(
        via(&local),
        ["", ""],
        "loopback branches are called directly"
    );
}

/// A proxy setting dtm-host cannot use stops the start, naming the variable but not its value.
#[test]
fn an_unusable_proxy_setting_stops_the_start() {
    let env = [("HTTPS_PROXY", "https://bob:secret@127.0.0.1:3128")];
    let (status, output) = run_to_exit(&env, &[]);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains(
            "cannot use the proxy setting HTTPS_PROXY: only http://, socks5:// and socks5h:// proxies are supported"
        ),
        "{output}"
    );
    assert!(!output.contains("secret"), "{output}");
}
