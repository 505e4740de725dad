//! `POST /api/admin/drivers/reload`: loads the microservice driver's file again (README "Hot
//! driver reload"). Answers what now serves, or why the file was refused (409, dtm's FAILURE
//! envelope) while the previous driver keeps serving.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AdminState;
use crate::reload::Trigger;

pub(super) async fn reload(State(admin): State<AdminState>) -> (StatusCode, Json<Value>) {
    match admin.reloader.reload(Trigger::Admin).await {
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
