//! The one mapping from engine errors to dtm's HTTP result envelope (docs/api.md §2.1).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::DtmError;

/// An error answered over HTTP.
#[derive(Debug)]
pub enum ApiError {
    Engine(DtmError),
    /// An answer in dtm's error shape with its own status: a body dtm-host refuses to decode
    /// (400 or 413), or a readiness check that failed (503).
    Status(StatusCode, String),
}

impl From<DtmError> for ApiError {
    fn from(e: DtmError) -> Self {
        Self::Engine(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Engine(DtmError::Failure(m)) => (
                StatusCode::CONFLICT,
                json!({"dtm_result": "FAILURE", "message": m}),
            ),
            Self::Engine(DtmError::Ongoing(m)) => (
                StatusCode::TOO_EARLY,
                json!({"dtm_result": "ONGOING", "message": m}),
            ),
            Self::Engine(DtmError::BadRequest(m)) => {
                (StatusCode::BAD_REQUEST, json!({"message": m}))
            }
            Self::Engine(
                e @ (DtmError::Internal(_)
                | DtmError::Other(_)
                | DtmError::InvalidInput(_)
                | DtmError::Store(_)),
            ) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": e.to_string()}),
            ),
            Self::Status(status, m) => (status, json!({"message": m})),
        };
        (status, axum::Json(body)).into_response()
    }
}
