//! JSON-RPC 2.0 at `POST /api/json-rpc` on the HTTP port, with dtm's method names, envelope
//! and error codes (docs/api.md §6). Unlike the REST routes, gids are used exactly as sent.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::http::decode;
use crate::engine::Engine;
use crate::error::DtmError;
use crate::protocol::jsonrpc::FAILURE_CODE;

/// dtm's envelope, its fields in dtm's order: a refused envelope is quoted back re-encoded.
#[derive(Debug, Deserialize, Serialize)]
struct Envelope {
    #[serde(default)]
    method: String,
    #[serde(default)]
    jsonrpc: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    id: String,
}

fn reply(id: &str, result: Value, error: Option<(i64, String)>) -> Json<Value> {
    let error = error.map_or(
        Value::Null,
        |(code, message)| json!({"code": code, "message": message}),
    );
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result, "error": error}))
}

/// dtm answers an error it returned with that error marshalled (an object without fields), and
/// one it raised as a panic (see `DtmError::Internal`; an unknown trans type is a nil
/// dereference there) with no result.
fn result_of_error(e: &DtmError) -> Value {
    match e {
        DtmError::Internal(_) | DtmError::InvalidInput(_) => Value::Null,
        _ => json!({}),
    }
}

fn error_code(e: &DtmError) -> i64 {
    match e {
        DtmError::Failure(_) => FAILURE_CODE,
        _ => -32603,
    }
}

/// Answers one JSON-RPC request; the HTTP status is 200 except for an unreadable envelope.
pub async fn handle(engine: &Arc<Engine>, body: &[u8]) -> (StatusCode, Json<Value>) {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            let error = Some((-32700, format!("Parse json error: {e}")));
            return (StatusCode::BAD_REQUEST, reply("", Value::Null, error));
        }
    };
    if envelope.id.is_empty() || envelope.jsonrpc != "2.0" {
        let text = serde_json::to_string(&envelope).unwrap_or_default();
        let error = Some((-32600, format!("Bad json request: {text}")));
        return (StatusCode::OK, reply(&envelope.id, Value::Null, error));
    }
    let params = serde_json::to_vec(&envelope.params).unwrap_or_default();
    let outcome = match envelope.method.as_str() {
        "newGid" => Ok(json!({"gid": engine.new_gid()})),
        "prepare" => {
            run(decode::trans_request_as_sent(&params), |r| {
                engine.prepare(r)
            })
            .await
        }
        "submit" => run(decode::trans_request_as_sent(&params), |r| engine.submit(r)).await,
        "abort" => run(decode::trans_request_as_sent(&params), |r| engine.abort(r)).await,
        "registerBranch" => {
            let request =
                decode::branch_request(&params).map_err(|e| DtmError::Internal(e.to_string()));
            run(request, |r| engine.register_branch(r)).await
        }
        other => {
            let error = Some((-32601, format!("Method not found: {other}")));
            return (StatusCode::OK, reply(&envelope.id, Value::Null, error));
        }
    };
    let response = match outcome {
        Ok(result) => reply(&envelope.id, result, None),
        Err(e) => reply(
            &envelope.id,
            result_of_error(&e),
            Some((error_code(&e), e.to_string())),
        ),
    };
    (StatusCode::OK, response)
}

async fn run<R, F, Fut>(request: Result<R, DtmError>, call: F) -> Result<Value, DtmError>
where
    F: FnOnce(R) -> Fut,
    Fut: std::future::Future<Output = Result<(), DtmError>>,
{
    // dtm reads the params with a panic on failure.
    let request = request.map_err(|e| match e {
        DtmError::BadRequest(_) => e,
        other => DtmError::Internal(other.to_string()),
    })?;
    call(request).await.map(|()| Value::Null)
}
