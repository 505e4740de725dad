//! Counts and times every API request for `dtm_server_process_total` and
//! `dtm_server_response_duration` (docs/engine.md §7): one tower layer, under the HTTP router and
//! the gRPC server alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;

use crate::metrics::{ApiKind, Metrics};

/// Wraps an edge's service in [`Metered`].
#[derive(Clone)]
pub struct MeteredLayer {
    kind: ApiKind,
    metrics: Arc<Metrics>,
}

impl MeteredLayer {
    pub fn new(kind: ApiKind, metrics: Arc<Metrics>) -> Self {
        Self { kind, metrics }
    }
}

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            kind: self.kind,
            metrics: self.metrics.clone(),
        }
    }
}

/// An edge's service that records each request once its response is ready.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    kind: ApiKind,
    metrics: Arc<Metrics>,
}

impl<S, B, ResponseBody> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let api = match self.kind {
            ApiKind::Http => request
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| UNKNOWN.to_owned(), |route| api_label(route.as_str())),
            ApiKind::Grpc => api_label(request.uri().path()),
        };
        let started = Instant::now();
        let (kind, metrics) = (self.kind, self.metrics.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let ok = response.as_ref().is_ok_and(|r| answered_ok(kind, r));
            let api = match &response {
                Ok(r) if kind == ApiKind::Grpc && is_unimplemented(r) => UNKNOWN.to_owned(),
                _ => api,
            };
            metrics.api_request(kind, &api, ok, started.elapsed());
            response
        })
    }
}

/// The `api` label of requests that reached no route (HTTP) or no method (gRPC): so that made-up
/// paths cannot create series without end.
const UNKNOWN: &str = "unknown";

/// dtm's `api` label: the last `/`-separated segment of the route, lower-cased (`submit`,
/// `newgid`; the gRPC method name), or the segment before a path parameter (`topic` for
/// `/api/dtmsvr/topic/{topic}`). dtm labels the raw request path, query string included (its
/// quirk Q15); the route keeps gids, topic names and made-up paths out of the label values.
fn api_label(route: &str) -> String {
    route
        .rsplit('/')
        .find(|segment| !segment.starts_with('{'))
        .unwrap_or_default()
        .to_lowercase()
}

/// tonic's answer to a method no service has.
fn is_unimplemented<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|code| code == "12")
}

/// HTTP: a status below 400. gRPC: no error status, which a failed unary call carries in its
/// headers (a trailers-only response); a successful one sends its `grpc-status: 0` in trailers.
fn answered_ok<B>(kind: ApiKind, response: &http::Response<B>) -> bool {
    match kind {
        ApiKind::Http => response.status().as_u16() < 400,
        ApiKind::Grpc => response
            .headers()
            .get("grpc-status")
            .is_none_or(|code| code == "0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_label_is_the_last_path_segment_lower_cased() {
        assert_eq!(api_label("/api/dtmsvr/newGid"), "newgid");
        assert_eq!(api_label("/dtmgimp.Dtm/Submit"), "submit");
        assert_eq!(api_label("/api/dtmsvr/topic/{topic}"), "topic");
    }

    #[test]
    fn grpc_errors_are_read_from_the_headers() {
        let response = |status: Option<&str>| {
            let mut builder = http::Response::builder();
            if let Some(status) = status {
                builder = builder.header("grpc-status", status);
            }
            builder.body(()).unwrap()
        };
        assert!(answered_ok(ApiKind::Grpc, &response(None)));
        assert!(answered_ok(ApiKind::Grpc, &response(Some("0"))));
        assert!(!answered_ok(ApiKind::Grpc, &response(Some("10"))));
        let teapot = http::Response::builder().status(418).body(()).unwrap();
        assert!(!answered_ok(ApiKind::Http, &teapot));
    }
}
