//! A small business service for trying dtm-host by hand: the transfer branches of dtm's
//! examples, on BUSI_PORT (default 8081).
//!
//! `POST /api/busi/TransOut` and `/TransIn` move `{"amount": N}`; `/TransOutRevert` and
//! `/TransInRevert` undo them; `/TransInFailed` refuses (HTTP 409, dtm's FAILURE), so a saga
//! using it rolls back. Every call is logged with dtm's query parameters.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

async fn branch(
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> (StatusCode, Json<Value>) {
    let amount = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["amount"].as_i64())
        .unwrap_or(0);
    let who = |k: &str| q.get(k).cloned().unwrap_or_default();
    let tag = format!(
        "gid={} branch_id={} op={}",
        who("gid"),
        who("branch_id"),
        who("op")
    );
    match name.as_str() {
        "TransOut" => println!("TransOut {amount} from user 1 ({tag})"),
        "TransIn" => println!("TransIn {amount} to user 2 ({tag})"),
        "TransOutRevert" => println!("TransOutRevert: {amount} back to user 1 ({tag})"),
        "TransInRevert" => println!("TransInRevert: {amount} taken back from user 2 ({tag})"),
        "TransInFailed" => {
            println!("TransIn refused: insufficient balance ({tag})");
            return (
                StatusCode::CONFLICT,
                Json(json!({"dtm_result": "FAILURE", "message": "insufficient balance"})),
            );
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"message": format!("no branch {name}")})),
            )
        }
    }
    (StatusCode::OK, Json(json!({"dtm_result": "SUCCESS"})))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("BUSI_PORT").unwrap_or_else(|_| "8081".into());
    let app = Router::new().route("/api/busi/{name}", post(branch).get(branch));
    let listener = tokio::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    println!("busi listening on :{port}");
    axum::serve(listener, app).await
}
