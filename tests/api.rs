//! dtm's HTTP API surface against the real binary (docs/api.md §11 checklist).

mod common;

use std::time::Duration;

use common::{saga, Busi, Host, Reply};
use serde_json::{json, Value};

#[tokio::test]
async fn version_ping_and_unknown_routes() {
    let host = Host::start().await;
    let (status, body) = host.get("/version").await;
    assert!(status == 200 && body["version"].is_string(), "{body}");
    let ping = host.http.get(host.url("/api/ping")).send().await.unwrap();
    assert_eq!(ping.json::<Value>().await.unwrap(), json!({"msg": "pong"}));
    let missing = host.http.get(host.url("/api/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().await.unwrap(), "404 page not found");
    let wrong_method = host.http.get(host.api("/submit")).send().await.unwrap();
    assert_eq!(wrong_method.status().as_u16() / 100, 4);
}

#[tokio::test]
async fn new_gid_uses_dtm_format() {
    let host = Host::start().await;
    let (status, body) = host.get("/newGid").await;
    assert_eq!(
        (status, body["dtm_result"].as_str()),
        (200, Some("SUCCESS"))
    );
    let gid = body["gid"].as_str().unwrap();
    assert!((20..=22).contains(&gid.len()), "{gid}");
    assert!(
        gid.chars()
            .all(|c| c.is_ascii_alphanumeric() && !"01IOl".contains(c)),
        "{gid}"
    );
}

#[tokio::test]
async fn query_answers() {
    let host = Host::start().await;
    assert_eq!(
        host.get("/query?gid=").await,
        (500, json!({"message": "no gid specified"}))
    );
    assert_eq!(
        host.get("/query?gid=1").await,
        (200, json!({"branches": [], "transaction": null}))
    );
}

#[tokio::test]
async fn python_style_body_stores_http_protocol() {
    let host = Host::start().await;
    let body = json!({"gid":"G-py","trans_type":"tcc","custom_data":null,"query_prepared":null,"protocol":null,"passthrough_headers":[],"branch_headers":{},"steps":[],"payloads":[],"wait_result":false,"timeout_to_fail":0,"request_timeout":8,"retry_interval":0,"concurrent":false});
    assert_eq!(
        host.post("/prepare", body).await,
        (200, json!({"dtm_result": "SUCCESS"}))
    );
    let t = &host.query("G-py").await["transaction"];
    assert_eq!(
        (t["protocol"].as_str(), t["status"].as_str()),
        (Some("http"), Some("prepared"))
    );
    assert_eq!(t["options"], r#"{"request_timeout":8,"concurrent":false}"#);
}

#[tokio::test]
async fn all_pages_and_filters() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    let start = chrono_ms();
    for i in 0..3 {
        let body = json!({"gid": format!("all-{i}"), "trans_type": "msg", "wait_result": true,
            "steps": [{"action": busi.url("/A")}], "payloads": ["{}"]});
        assert_eq!(host.post("/submit", body).await.0, 200);
    }
    let (_, first) = host.get("/all?limit=1").await;
    let cursor = first["next_position"].as_str().unwrap().to_owned();
    assert_ne!(cursor, "");
    let (_, second) = host.get(&format!("/all?limit=1&position={cursor}")).await;
    let cursor2 = second["next_position"].as_str().unwrap();
    assert!(!cursor2.is_empty() && cursor2 != cursor);
    assert_ne!(
        first["transactions"][0]["gid"],
        second["transactions"][0]["gid"]
    );
    let (_, rest) = host
        .get(&format!("/all?limit=1000&position={cursor}"))
        .await;
    assert_eq!(rest["next_position"], "");
    assert_eq!(rest["transactions"].as_array().unwrap().len(), 2);

    let (_, one) = host.get("/all?gid=all-1").await;
    assert_eq!(one["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(
        host.get("/all?gid=nope").await.1["transactions"],
        Value::Null
    );

    let window = format!(
        "/all?limit=10&status=succeed&transType=msg&createTimeStart={}&createTimeEnd={}",
        start - 60_000,
        start + 60_000
    );
    let (_, hits) = host.get(&window).await;
    let hits = hits["transactions"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 3);
    assert!(hits
        .iter()
        .all(|t| t["trans_type"] == "msg" && t["status"] == "succeed"));
    let past = format!(
        "/all?createTimeStart={}&createTimeEnd={}",
        start - 600_000,
        start - 300_000
    );
    assert_eq!(
        host.get(&past).await.1,
        json!({"transactions": [], "next_position": ""})
    );
    assert_eq!(
        host.get("/all?limit=x").await,
        (500, json!({"message": "convert to int error: x"}))
    );
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn topic_api_errors_and_kv_views() {
    let host = Host::start().await;
    let ok = json!({"dtm_result": "SUCCESS"});
    assert_eq!(
        host.get("/subscribe?topic=T&url=http://dtm/test1&remark=r")
            .await,
        (200, ok.clone())
    );
    assert_eq!(
        host.get("/subscribe?topic=T&url=http://dtm/test1&remark=r")
            .await,
        (500, json!({"message": "this url exists"}))
    );
    assert_eq!(
        host.get("/subscribe?topic=&url=http://x").await,
        (500, json!({"message": "empty topic"}))
    );
    assert_eq!(
        host.get("/subscribe?topic=T&url=").await,
        (500, json!({"message": "empty url"}))
    );
    let (_, kv) = host.get("/queryKV?cat=topics&key=T").await;
    let subscribers: Value = serde_json::from_str(kv["kv"][0]["v"].as_str().unwrap()).unwrap();
    assert_eq!(
        subscribers,
        json!([{"url": "http://dtm/test1", "remark": "r"}])
    );
    assert_eq!(
        host.get("/queryKV?cat=topics&key=unknown").await.1,
        json!({"kv": []})
    );
    assert_eq!(
        host.get("/unsubscribe?topic=T&url=http://dtm/test1").await,
        (200, ok.clone())
    );
    assert_eq!(
        host.get("/unsubscribe?topic=T&url=http://dtm/test1").await,
        (500, json!({"message": "this topic is empty"}))
    );
    host.get("/subscribe?topic=T&url=http://dtm/test2").await;
    assert_eq!(
        host.get("/unsubscribe?topic=T&url=http://dtm/test1").await,
        (500, json!({"message": "no such an url "}))
    );
    assert_eq!(
        host.get("/unsubscribe?topic=non_existent_topic&url=http://x")
            .await,
        (500, json!({"message": "no such a topic"}))
    );
    for t in ["T2", "T3"] {
        host.get(&format!("/subscribe?topic={t}&url=http://x"))
            .await;
    }
    let (_, page) = host.get("/scanKV?cat=topics&limit=1").await;
    let cursor = page["next_position"].as_str().unwrap().to_owned();
    assert_ne!(cursor, "");
    for key in ["cat", "k", "v", "version"] {
        assert!(page["kv"][0].get(key).is_some(), "{key}");
    }
    let (_, next) = host
        .get(&format!("/scanKV?cat=topics&limit=1&position={cursor}"))
        .await;
    assert!(!next["next_position"].as_str().unwrap().is_empty() && next["next_position"] != cursor);
    assert_eq!(
        host.get(&format!("/scanKV?cat=topics&limit=1000&position={cursor}"))
            .await
            .1["next_position"],
        ""
    );
    let deleted = host
        .http
        .delete(host.api("/topic/non_existent"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 500);
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({"message": "storage: NotFound"})
    );
    let deleted = host.http.delete(host.api("/topic/T")).send().await.unwrap();
    assert_eq!(deleted.json::<Value>().await.unwrap(), ok);
}

#[tokio::test]
async fn concurrent_subscribes_keep_versions_consistent() {
    let host = Host::start().await;
    let attempts = (0..20).map(|i| {
        let host = &host;
        async move {
            host.get(&format!("/subscribe?topic=busy&url=http://u/{i}"))
                .await
                .0
                == 200
        }
    });
    let succeeded: Vec<usize> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .enumerate()
        .filter(|(_, ok)| *ok)
        .map(|(i, _)| i)
        .collect();
    assert!(!succeeded.is_empty());
    for i in &succeeded {
        assert_eq!(
            host.get(&format!("/unsubscribe?topic=busy&url=http://u/{i}"))
                .await
                .0,
            200
        );
    }
    let (_, kv) = host.get("/queryKV?cat=topics&key=busy").await;
    assert_eq!(kv["kv"][0]["version"], 2 * succeeded.len() as i64);
}

#[tokio::test]
async fn cron_time_resets() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    assert_eq!(
        host.get("/resetCronTime?timeout=10&limit=5").await,
        (200, json!({"has_remaining": false, "succeed_count": 0}))
    );
    busi.always("/Stuck", Reply::error());
    for i in 0..3 {
        let mut body = saga(&format!("stuck-{i}"), &busi, &[("/Stuck", "")]);
        body["retry_interval"] = json!(1000);
        body["wait_result"] = json!(true);
        host.post("/submit", body).await;
    }
    assert_eq!(
        host.get("/resetCronTime?timeout=100&limit=2").await.1,
        json!({"has_remaining": true, "succeed_count": 2})
    );
    assert_eq!(
        host.get("/resetCronTime?timeout=100&limit=2").await.1,
        json!({"has_remaining": false, "succeed_count": 1})
    );

    let before = host.query("stuck-0").await["transaction"]["next_cron_time"].clone();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        host.post("/resetNextCronTime", json!({"gid": "stuck-0"}))
            .await
            .0,
        200
    );
    assert_ne!(
        host.query("stuck-0").await["transaction"]["next_cron_time"],
        before
    );
    let (status, body) = host
        .post("/resetNextCronTime", json!({"gid": "nope"}))
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (500, Some("no TransGlobal with gid: nope found"))
    );
}

#[tokio::test]
async fn force_stop_and_abort_rules() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/Stuck", Reply::ongoing());
    let mut body = saga("stop-me", &busi, &[("/Stuck", "/Undo")]);
    body["wait_result"] = json!(true);
    host.post("/submit", body).await;
    let (status, reply) = host
        .post("/abort", json!({"gid": "stop-me", "trans_type": "saga"}))
        .await;
    assert_eq!(
        (status, reply["message"].as_str()),
        (
            409,
            Some("trans type: 'saga' current status 'submitted', cannot abort. FAILURE")
        )
    );
    assert_eq!(
        host.post("/forceStop", json!({"gid": "stop-me"})).await.0,
        200
    );
    assert_eq!(host.status("stop-me").await, "failed");
    assert!(
        busi.calls("/Undo").is_empty(),
        "force stop compensates nothing"
    );
    let (status, reply) = host.post("/forceStop", json!({"gid": "stop-me"})).await;
    assert_eq!(
        (status, reply["dtm_result"].as_str()),
        (409, Some("FAILURE"))
    );
    assert_eq!(host.post("/forceStop", json!({"gid": "nope"})).await.0, 500);
    assert_eq!(
        host.post("/abort", json!({"gid": "nope", "trans_type": "tcc"}))
            .await
            .0,
        500
    );
    let (status, _) = host
        .post(
            "/prepare",
            json!({"gid": "saga-prep", "trans_type": "saga"}),
        )
        .await;
    assert_eq!(status, 409, "a prepared saga would never run");
}

#[tokio::test]
async fn register_branch_errors() {
    let host = Host::start().await;
    host.post("/prepare", json!({"gid": "tcc-done", "trans_type": "tcc"}))
        .await;
    host.post(
        "/submit",
        json!({"gid": "tcc-done", "trans_type": "tcc", "wait_result": true}),
    )
    .await;
    let late = json!({"gid": "tcc-done", "trans_type": "tcc", "branch_id": "09", "confirm": "http://c", "cancel": "http://x"});
    let (status, reply) = host.post("/registerBranch", late).await;
    assert_eq!(
        (status, reply["message"].as_str()),
        (
            409,
            Some("no trans with gid: tcc-done status: prepared found FAILURE")
        )
    );
    let (status, reply) = host
        .post(
            "/registerBranch",
            json!({"gid": "g", "trans_type": "nope", "branch_id": "01"}),
        )
        .await;
    assert_eq!(
        (status, reply["message"].as_str()),
        (500, Some("unknow trans type: nope"))
    );
    assert_eq!(host.post("/registerBranch", json!({"gid": 1})).await.0, 400);
    host.post("/prepare", json!({"gid": "tcc-dup", "trans_type": "tcc"}))
        .await;
    let branch = json!({"gid": "tcc-dup", "trans_type": "tcc", "branch_id": "01", "confirm": "http://c", "cancel": "http://x"});
    assert_eq!(host.post("/registerBranch", branch.clone()).await.0, 200);
    assert_eq!(
        host.post("/registerBranch", branch).await,
        (500, json!({"message": "storage: UniqueKeyConflict"}))
    );
    assert_eq!(host.branch_statuses("tcc-dup").await.len(), 2);
}
