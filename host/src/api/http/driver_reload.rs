//! `POST /api/admin/drivers/reload`: loads the microservice driver's file again (README "Hot
//! driver reload"). Answers what now serves, or why the file was refused (409, dtm's FAILURE
//! envelope) while the previous driver keeps serving.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::reload::{DriverReloader, Trigger};

pub fn routes(reloader: Arc<DriverReloader>) -> Router {
    Router::new()
        .route("/api/admin/drivers/reload", post(reload))
        .with_state(reloader)
}

async fn reload(State(reloader): State<Arc<DriverReloader>>) -> (StatusCode, Json<Value>) {
    match reloader.reload(Trigger::Admin).await {
        Ok(reloaded) => (
            StatusCode::OK,
            Json(json!({
                "dtm_result": "SUCCESS",
                "driver": reloaded.driver,
                "sha256": reloaded.sha256,
                "previous_sha256": reloaded.previous_sha256,
                "schemes": reloaded.schemes,
            })),
        ),
        Err(e) => (
            StatusCode::CONFLICT,
            Json(json!({"dtm_result": "FAILURE", "message": e.to_string()})),
        ),
    }
}
