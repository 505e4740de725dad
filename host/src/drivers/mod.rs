//! Microservice drivers: the built-in `default` driver, or a WebAssembly component loaded from
//! `MicroService.DriverPath` and run sandboxed (see `wit/driver.wit`). The engine sees one
//! [`Driver`] either way.
//!
//! What a wasm driver may do is decided here: [`Grants`] holds what the configuration grants it
//! (`host_http`: requests only to configured registry addresses; `host_env`: a few named
//! environment variables and the local IPv4 address). WASI is linked with an empty context: no
//! files, environment, sockets or stdio.

mod cache;
pub mod conformance;
mod host_env;
mod host_http;
mod metered;
mod native;
mod wasm;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use host_env::{driver_env, local_ipv4, DRIVER_ENV};
pub use host_http::HttpPolicy;
pub use metered::MeteredDriver;
pub use native::DefaultDriver;
pub use wasm::{inspect, WasmDriver, WasmLimits};

/// The contract package a driver must target.
pub const CONTRACT: &str = "dtm:driver@0.2.0";

/// What the configuration lets a wasm driver see and reach.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Where `send-http` may go.
    pub http: HttpPolicy,
    /// `MicroService.Target`, handed to `resolve` and `rewrite-http`.
    pub registry: String,
    /// The environment variables `env` answers (names from [`DRIVER_ENV`]).
    pub env: BTreeMap<String, String>,
}

/// The schemes a driver resolves and the call hooks it wants (its `activate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activation {
    pub schemes: Vec<String>,
    pub rewrites_http: bool,
    pub rewrites_grpc: bool,
}

/// Where an HTTP branch call goes after a driver rewrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A gRPC branch call after a driver rewrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    pub method: String,
    pub payload: Vec<u8>,
    pub metadata: Vec<(String, String)>,
}

/// A gRPC branch URL split by a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMethod {
    pub server: String,
    pub method: String,
}

/// What stays registered for the coordinator, and how often to renew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub state: String,
    /// `None`: nothing to renew.
    pub keep_alive: Option<Duration>,
}

/// The endpoints a server resolves to, and for how long they may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub endpoints: Vec<String>,
    /// `None`: the host's default.
    pub refresh: Option<Duration>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DriverError {
    #[error("cannot load driver {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("driver file {path} is named '{actual}', but MicroService.Driver is '{configured}'")]
    NameMismatch {
        path: String,
        configured: String,
        actual: String,
    },
    /// The driver answered with an error of its own.
    #[error("{0}")]
    Refused(String),
    #[error("driver call {call} ran out of time ({limit_ms} ms) and was stopped")]
    Timeout { call: &'static str, limit_ms: u64 },
    #[error("driver call {call} failed in the sandbox: {reason}")]
    Trap { call: &'static str, reason: String },
}

/// A microservice driver, built in or loaded from a wasm component.
#[async_trait]
pub trait Driver: Send + Sync {
    /// dtm's name for it (the value of `MicroService.Driver`).
    fn name(&self) -> &str;

    /// The schemes it resolves and the hooks it wants.
    fn activation(&self) -> &Activation;

    /// Splits a gRPC branch URL into server and method. Fast; never touches the network.
    fn parse_server_method(&self, uri: &str) -> Result<ServerMethod, DriverError>;

    async fn register_service(
        &self,
        target: &str,
        endpoint: &str,
    ) -> Result<Registration, DriverError>;

    async fn keep_alive(&self, state: &str) -> Result<Registration, DriverError>;

    async fn deregister(&self, state: &str) -> Result<(), DriverError>;

    async fn resolve(&self, server: &str) -> Result<Resolution, DriverError>;

    /// Where an HTTP branch call to `url` goes; `None`: unchanged. Asked only when the
    /// activation sets `rewrites_http`.
    async fn rewrite_http(&self, url: &str) -> Result<Option<HttpTarget>, DriverError>;

    /// How a gRPC branch call to `server` goes; `None`: unchanged. Asked only when the
    /// activation sets `rewrites_grpc`. Fast; never touches the network.
    fn rewrite_grpc(
        &self,
        server: &str,
        method: &str,
        payload: &[u8],
    ) -> Result<Option<GrpcCall>, DriverError>;
}

/// Whether `server` names one of `driver`'s schemes (so it must be resolved, not dialed).
pub fn needs_resolving(driver: &dyn Driver, server: &str) -> bool {
    server
        .split_once("://")
        .is_some_and(|(scheme, _)| driver.activation().schemes.iter().any(|s| s == scheme))
}

/// The configured driver: `default` is built in; any other name is loaded from `path`.
pub fn load(
    name: &str,
    path: &str,
    limits: WasmLimits,
    grants: Grants,
    clock: Arc<crate::clock::Clock>,
    cache_dir: Option<&std::path::Path>,
) -> Result<Arc<dyn Driver>, DriverError> {
    if name == "default" && path.is_empty() {
        return Ok(Arc::new(DefaultDriver::default()));
    }
    if path.is_empty() {
        return Err(DriverError::Load {
            path: String::new(),
            reason: format!(
                "MicroService.Driver is '{name}' but MicroService.DriverPath names no .wasm file"
            ),
        });
    }
    let driver = WasmDriver::load(std::path::Path::new(path), limits, grants, clock, cache_dir)?;
    if driver.name() != name {
        return Err(DriverError::NameMismatch {
            path: path.to_owned(),
            configured: name.to_owned(),
            actual: driver.name().to_owned(),
        });
    }
    Ok(Arc::new(driver))
}

/// Renews `registration` through `driver` every period it asks for, until `stop` turns true;
/// resolves to the last state, which `deregister` takes. A failed renewal is logged and tried
/// again next period: the registry may be back by then.
pub async fn keep_alive(
    driver: Arc<dyn Driver>,
    mut registration: Registration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Registration {
    // `()` rather than the watch's guard, which must not live across an await.
    async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
        let _ = stop.wait_for(|stop| *stop).await;
    }
    while let Some(period) = registration.keep_alive {
        tokio::select! {
            _ = tokio::time::sleep(period) => match driver.keep_alive(&registration.state).await {
                Ok(renewed) => registration = renewed,
                Err(e) => tracing::warn!(error = %e, "keeping the registration alive failed; retrying next period"),
            },
            _ = stopped(stop.clone()) => return registration,
        }
    }
    stopped(stop).await;
    registration
}
