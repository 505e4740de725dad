//! The admin UI (docs/engine.md §8), served by the host on `HttpPort` under `AdminBasePath`: static
//! HTML, CSS and vanilla JS embedded in the binary, which read and act through dtm's JSON API at
//! `/api/dtmsvr/*`, plus three admin-only routes at `/api/admin/*`: the session check, the driver
//! status (with each driver file's SHA-256) and the driver reload behind the Drivers page's
//! Reload button. With `AdminToken` set those need the token; dtm's API stays open, because
//! dtm's SDKs call it without credentials.

mod auth;
mod drivers;
mod reload;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde_json::{json, Value};

use crate::reload::DriverReloader;

pub use drivers::{DriverState, DriverStatus, DriverStatusFn};

const INDEX_TEMPLATE: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");
const FAVICON_SVG: &str = include_str!("ui/favicon.svg");

/// Scripts and styles only from this origin, no framing: table cells hold user data (gids,
/// URLs, payloads), so an injection must not be able to run or exfiltrate anything.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the admin routes need.
#[derive(Clone)]
pub struct AdminState {
    base_path: Arc<str>,
    index_html: Arc<str>,
    token: Option<Arc<auth::AdminToken>>,
    drivers: DriverStatusFn,
    reloader: Arc<DriverReloader>,
}

impl AdminState {
    /// `base_path` is `AdminBasePath` (already checked when the config was loaded); an empty
    /// `token` leaves the UI open, as dtm's is.
    pub fn new(
        base_path: &str,
        token: &str,
        drivers: DriverStatusFn,
        reloader: Arc<DriverReloader>,
    ) -> Self {
        let base_path = base_path.trim_end_matches('/');
        Self {
            base_path: base_path.into(),
            index_html: index_html(base_path).into(),
            token: (!token.is_empty()).then(|| Arc::new(auth::AdminToken::new(token))),
            drivers,
            reloader,
        }
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }
}

/// The single page, its links under `base_path` (without a trailing `/`).
fn index_html(base_path: &str) -> String {
    INDEX_TEMPLATE
        .replace("{{BASE}}", base_path)
        .replace("{{VERSION}}", env!("CARGO_PKG_VERSION"))
}

/// The UI's pages and assets under the base path, and `/api/admin/*`.
pub fn router(state: AdminState) -> Router {
    let admin_api = Router::new()
        .route("/session", get(session))
        .route("/drivers", get(driver_list))
        .route("/drivers/reload", post(reload::reload))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let base = state.base_path.to_string();
    let mut pages = Router::new()
        .route(&format!("{base}/"), get(index))
        .route(&format!("{base}/admin"), get(index))
        .route(&format!("{base}/admin/{{*page}}"), get(index))
        .route(&format!("{base}/assets/{{file}}"), get(asset))
        .route(&format!("{base}/favicon.ico"), get(favicon));
    if !base.is_empty() {
        pages = pages.route(&base, get(index));
    }
    Router::new()
        .nest("/api/admin", admin_api)
        .merge(pages)
        .with_state(state)
}

/// Every page is the same single-page app; it holds no data, so it is served without the
/// token and asks for it (login form) before it reads anything.
async fn index(State(s): State<AdminState>) -> Response {
    static_file("text/html; charset=utf-8", s.index_html.to_string())
}

async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => static_file("text/javascript; charset=utf-8", APP_JS),
        "app.css" => static_file("text/css; charset=utf-8", APP_CSS),
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

async fn favicon() -> Response {
    static_file("image/svg+xml", FAVICON_SVG)
}

fn static_file(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut response = body.into().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary; revalidating them is cheap.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Answers only when the request may use the admin UI: the login form's check.
async fn session(State(s): State<AdminState>) -> Json<Value> {
    Json(json!({"token_required": s.token_required()}))
}

async fn driver_list(State(s): State<AdminState>) -> Json<Value> {
    Json(json!({"drivers": (s.drivers)()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_path_goes_into_the_page() {
        let page = index_html("/ops");
        assert!(page.contains(r#"src="/ops/assets/app.js"#));
        assert!(page.contains(r#"content="/ops""#));
        assert!(!page.contains("{{"));
    }
}
