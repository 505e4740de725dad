//! Microservice drivers: the built-in `default` driver, or a WebAssembly component loaded from
//! `MicroService.DriverPath` and run sandboxed (see `wit/driver.wit`). The engine sees one
//! [`Driver`] either way.
//!
//! What a wasm driver may do is decided here, one module per host capability: `host_log`,
//! `host_clock`, `host_http` (only to configured registry addresses). WASI is linked with an
//! empty context: no files, environment, sockets or stdio.

mod cache;
pub mod conformance;
mod host_http;
mod native;
mod wasm;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use host_http::HttpPolicy;
pub use native::DefaultDriver;
pub use wasm::{inspect, WasmDriver, WasmLimits};

/// The contract package a driver must target.
pub const CONTRACT: &str = "dtm:driver@0.1.0";

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

    /// URL schemes whose servers it resolves.
    fn schemes(&self) -> &[String];

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
}

/// Whether `server` names one of `driver`'s schemes (so it must be resolved, not dialed).
pub fn needs_resolving(driver: &dyn Driver, server: &str) -> bool {
    server
        .split_once("://")
        .is_some_and(|(scheme, _)| driver.schemes().iter().any(|s| s == scheme))
}

/// The configured driver: `default` is built in; any other name is loaded from `path`.
pub fn load(
    name: &str,
    path: &str,
    limits: WasmLimits,
    policy: HttpPolicy,
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
    let driver = WasmDriver::load(std::path::Path::new(path), limits, policy, clock, cache_dir)?;
    if driver.name() != name {
        return Err(DriverError::NameMismatch {
            path: path.to_owned(),
            configured: name.to_owned(),
            actual: driver.name().to_owned(),
        });
    }
    Ok(Arc::new(driver))
}
