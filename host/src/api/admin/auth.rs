//! `AdminToken`: the admin-only JSON answers only requests with `Authorization: Bearer <token>`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AdminState;

/// The configured token, kept as its digest so comparing takes the same time whatever the
/// presented token is (its length included).
pub(super) struct AdminToken([u8; 32]);

impl AdminToken {
    pub(super) fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub(super) fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0
            .iter()
            .zip(presented)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Lets the request through when no token is configured or it carries the right one;
/// otherwise 401 with dtm's error shape.
pub(super) async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let refusal = match bearer(request.headers()) {
        Some(presented) if token.matches(presented) => return next.run(request).await,
        Some(_) => "admin token does not match",
        None => "admin token required: send Authorization: Bearer <AdminToken>",
    };
    tracing::debug!(path = %request.uri().path(), reason = refusal, "admin request refused");
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "message": refusal })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="dtm-host admin""#),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself() {
        let token = AdminToken::new("s3cret");
        assert!(token.matches("s3cret"));
        for other in ["", "s3cre", "s3cret ", "S3CRET", "s3cret-and-more"] {
            assert!(!token.matches(other), "{other}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
