//! `POST /api/admin/drivers/reload`: loads the microservice driver's file again (README "Hot
//! driver reload"). Answers what now serves, or why the file was refused (409, dtm's FAILURE
//! envelope) while the previous driver keeps serving.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::AdminState;
use crate::reload::Trigger;

/// Why a reload request without a JSON content type is refused.
const NOT_JSON: &str = "send the reload with header Content-Type: application/json";

pub(super) async fn reload(
    State(admin): State<AdminState>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !is_json(&headers) {
        tracing::debug!(reason = NOT_JSON, "driver reload request refused");
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({"dtm_result": "FAILURE", "message": NOT_JSON})),
        );
    }
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

/// Whether the request says it carries JSON. A web page can make a browser send a body-less
/// POST anywhere (a "simple" request), but this content type only after a CORS preflight,
/// which the host never grants: so without `AdminToken` no other site can trigger reloads.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_json_content_types_count() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_json(&headers)
        };
        assert!(!is_json(&HeaderMap::new()));
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        for simple in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
        ] {
            assert!(!with(simple), "{simple}");
        }
    }
}
