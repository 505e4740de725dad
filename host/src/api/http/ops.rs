//! Operating endpoints beside dtm's API: `/api/metrics`, `/api/health`, `/api/ready`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::HttpState;

pub(super) async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
        .into_response()
}

/// Liveness: answered while the process serves.
pub(super) async fn health() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

/// Readiness: 200 while the store answers, else 503 with dtm's error shape and the reason.
pub(super) async fn ready(State(s): State<HttpState>) -> Result<Json<Value>, ApiError> {
    let ready = s
        .readiness
        .check()
        .await
        .map_err(|e| ApiError::Status(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(
        json!({"status": "ready", "store": ready.store, "driver": ready.driver}),
    ))
}
