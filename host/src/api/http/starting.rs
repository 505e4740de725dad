//! What the HTTP port serves. It may open before the coordinator is set up: while the
//! coordinator waits for a shared store that does not answer yet, liveness (`/api/health`)
//! answers 200, so an orchestrator does not restart a process that is only waiting for its
//! database; readiness and every other route answer 503 in dtm's error shape with the reason.
//! Once the coordinator is set up, its whole API takes over on the same port.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;

use super::error::ApiError;

/// What the HTTP port serves: the full API once it is in place, the waiting answers before.
pub struct StartingApp {
    app: OnceLock<Router>,
    /// `Store.Driver`, for the answers.
    store_driver: String,
    /// Why the store did not answer at the last attempt.
    last_error: Mutex<String>,
}

impl StartingApp {
    pub fn new(store_driver: &str) -> Arc<Self> {
        Arc::new(Self {
            app: OnceLock::new(),
            store_driver: store_driver.to_owned(),
            last_error: Mutex::new("not tried yet".to_owned()),
        })
    }

    /// Records why the store could not be opened yet.
    pub fn store_unreachable(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// Puts the full API in place; later calls change nothing.
    pub fn serve(&self, app: Router) {
        let _ = self.app.set(app);
    }

    /// The service to serve on the HTTP port for the whole life of the process: the full API
    /// itself once it is in place, else a stand-in that hands over to it when it is.
    pub fn router(self: &Arc<Self>) -> Router {
        if let Some(app) = self.app.get() {
            return app.clone();
        }
        let this = self.clone();
        Router::new().fallback_service(tower::service_fn(move |request: Request| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.answer(request).await) }
        }))
    }

    async fn answer(&self, request: Request) -> Response {
        if let Some(app) = self.app.get() {
            return match app.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        if request.uri().path() == "/api/health" {
            return super::ops::health().await.into_response();
        }
        let reason = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let message = format!(
            "not ready: waiting for the {} store, which does not answer yet: {reason}",
            self.store_driver
        );
        ApiError::Status(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
    }
}
