//! A driver whose every call is counted in the driver metrics (`dtm_driver_calls_total`,
//! `…_errors_total`, `…_traps_total`, `…_timeouts_total`, by driver name and operation).

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Activation, Driver, DriverError, GrpcCall, HttpTarget, Registration, Resolution, ServerMethod,
};
use crate::metrics::{DriverOutcome, Metrics};

pub struct MeteredDriver {
    inner: Arc<dyn Driver>,
    metrics: Arc<Metrics>,
}

impl MeteredDriver {
    pub fn new(inner: Arc<dyn Driver>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn record<T>(
        &self,
        operation: &'static str,
        outcome: Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        let counted = match &outcome {
            Ok(_) => DriverOutcome::Ok,
            Err(DriverError::Trap { .. }) => DriverOutcome::Trap,
            Err(DriverError::Timeout { .. }) => DriverOutcome::Timeout,
            Err(_) => DriverOutcome::Error,
        };
        self.metrics
            .driver_called(self.inner.name(), operation, counted);
        outcome
    }
}

#[async_trait]
impl Driver for MeteredDriver {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn sha256(&self) -> Option<&str> {
        self.inner.sha256()
    }

    fn activation(&self) -> &Activation {
        self.inner.activation()
    }

    fn parse_server_method(&self, uri: &str) -> Result<ServerMethod, DriverError> {
        self.record("parse-server-method", self.inner.parse_server_method(uri))
    }

    async fn register_service(
        &self,
        target: &str,
        endpoint: &str,
    ) -> Result<Registration, DriverError> {
        let outcome = self.inner.register_service(target, endpoint).await;
        self.record("register-service", outcome)
    }

    async fn keep_alive(&self, state: &str) -> Result<Registration, DriverError> {
        let outcome = self.inner.keep_alive(state).await;
        self.record("keep-alive", outcome)
    }

    async fn deregister(&self, state: &str) -> Result<(), DriverError> {
        let outcome = self.inner.deregister(state).await;
        self.record("deregister", outcome)
    }

    async fn resolve(&self, server: &str) -> Result<Resolution, DriverError> {
        let outcome = self.inner.resolve(server).await;
        self.record("resolve", outcome)
    }

    async fn rewrite_http(&self, url: &str) -> Result<Option<HttpTarget>, DriverError> {
        let outcome = self.inner.rewrite_http(url).await;
        self.record("rewrite-http", outcome)
    }

    fn rewrite_grpc(
        &self,
        server: &str,
        method: &str,
        payload: &[u8],
    ) -> Result<Option<GrpcCall>, DriverError> {
        self.record(
            "rewrite-grpc",
            self.inner.rewrite_grpc(server, method, payload),
        )
    }
}
