//! JSON-RPC 2.0 at /api/json-rpc and JSON-RPC branches against the real binary (docs/api.md §6).

mod common;

use common::{Busi, Host, Reply};
use serde_json::{json, Value};

async fn rpc(host: &Host, body: &str) -> (u16, Value) {
    let r = host
        .http
        .post(host.url("/api/json-rpc"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn call(host: &Host, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": "t", "method": method, "params": params});
    let (status, reply) = rpc(host, &body.to_string()).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

#[tokio::test]
async fn envelope_errors_and_new_gid() {
    let host = Host::start().await;
    let (status, reply) = rpc(&host, "hello").await;
    assert_eq!(
        (status, reply["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    let (_, reply) = rpc(
        &host,
        r#"{"jsonrpc":"1.0","method":"newGid","params":"","id":"x"}"#,
    )
    .await;
    assert_eq!(reply["error"]["code"], -32600);
    let (_, reply) = rpc(
        &host,
        r#"{"jsonrpc":"2.0","method":"not-exists","params":"","id":"x"}"#,
    )
    .await;
    assert_eq!(
        (
            reply["error"]["code"].as_i64(),
            reply["error"]["message"].as_str()
        ),
        (Some(-32601), Some("Method not found: not-exists"))
    );
    let (status, reply) = rpc(
        &host,
        r#"{"jsonrpc":"2.0","id":"no-use","method":"newGid","params":""}"#,
    )
    .await;
    assert_eq!(
        (status, reply["error"].clone(), reply["id"].as_str()),
        (200, Value::Null, Some("no-use"))
    );
    assert!(!reply["result"]["gid"].as_str().unwrap().is_empty());
    let reply = call(
        &host,
        "registerBranch",
        json!({"gid": "g", "trans_type": "nope", "branch_id": "01"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], -32603);
}

#[tokio::test]
async fn msg_with_http_and_json_rpc_branches() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always(
        "/api/json-rpc",
        Reply::with(
            200,
            r#"{"jsonrpc":"2.0","id":"1","result":{},"error":null}"#,
        ),
    );
    let msg = json!({"gid": "rpc-msg", "trans_type": "msg", "protocol": "json-rpc", "wait_result": true,
        "steps": [{"action": busi.url("/TransOut")}, {"action": busi.url("/api/json-rpc?method=TransIn")}],
        "payloads": ["{\"amount\":30}", "{\"amount\":30}"]});
    assert_eq!(
        call(&host, "prepare", msg.clone()).await["error"],
        Value::Null
    );
    assert_eq!(
        call(&host, "submit", msg.clone()).await["error"],
        Value::Null
    );
    assert_eq!(host.status("rpc-msg").await, "succeed");
    assert_eq!(busi.calls("/TransOut")[0].query["op"], "action");
    let rpc_call = &busi.calls("/api/json-rpc")[0];
    assert!(
        !rpc_call.query.contains_key("gid"),
        "no dtm query parameters on JSON-RPC calls"
    );
    let envelope: Value = serde_json::from_str(&rpc_call.body).unwrap();
    assert_eq!(
        (envelope["jsonrpc"].as_str(), envelope["method"].as_str()),
        (Some("2.0"), Some("TransIn"))
    );
    assert_eq!(
        envelope["params"],
        json!({"amount": 30, "gid": "rpc-msg", "trans_type": "msg", "branch_id": "02", "op": "action"})
    );
    let again = call(&host, "submit", msg).await;
    assert_eq!(again["error"]["code"], -32901);
}

#[tokio::test]
async fn json_rpc_branch_error_codes() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.once(
        "/rpc",
        Reply::with(
            200,
            r#"{"jsonrpc":"2.0","id":"1","result":null,"error":{"code":-32902,"message":"wait"}}"#,
        ),
    );
    busi.once(
        "/rpc",
        Reply::with(
            200,
            r#"{"jsonrpc":"2.0","id":"1","result":null,"error":{"code":-32603,"message":"boom"}}"#,
        ),
    );
    busi.always(
        "/rpc",
        Reply::with(
            200,
            r#"{"jsonrpc":"2.0","id":"1","result":{},"error":null}"#,
        ),
    );
    for (gid, interval) in [("rpc-ongoing", 10), ("rpc-error", 20)] {
        let msg = json!({"gid": gid, "trans_type": "msg", "protocol": "json-rpc", "wait_result": true,
            "steps": [{"action": busi.url("/rpc?method=TransIn")}], "payloads": ["{}"]});
        call(&host, "submit", msg).await;
        let q = host.query(gid).await;
        assert_eq!(
            (
                q["transaction"]["status"].as_str(),
                q["transaction"]["next_cron_interval"].as_i64()
            ),
            (Some("submitted"), Some(interval)),
            "{gid}"
        );
    }
    host.advance_clock(25).await;
    host.wait_status("rpc-ongoing", "succeed", 10).await;
    host.wait_status("rpc-error", "succeed", 10).await;
}
