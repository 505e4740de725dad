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
mod limits;
mod metered;
mod native;
pub mod skeleton;
mod wasm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::shutdown::{stopped, Shutdown};

pub use cache::sha256_hex;
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

    /// The SHA-256 (hex) of the file it was loaded from; `None` when built in.
    fn sha256(&self) -> Option<&str> {
        None
    }

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

/// Where the configured driver comes from and what it is granted: enough to load it again
/// when its file changes.
#[derive(Clone)]
pub struct DriverSpec {
    /// `MicroService.Driver`: the name the driver must report.
    pub name: String,
    /// `MicroService.DriverPath`; empty for the built-in `default`.
    pub path: PathBuf,
    pub limits: WasmLimits,
    pub grants: Grants,
    pub clock: Arc<crate::clock::Clock>,
    pub cache_dir: Option<PathBuf>,
    /// Where the loaded driver's calls are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl DriverSpec {
    /// The configured driver: `default` is built in; any other name is loaded from `path`.
    pub fn load(&self) -> Result<Arc<dyn Driver>, DriverError> {
        if self.name == "default" && self.path.as_os_str().is_empty() {
            return Ok(self.metered(Arc::new(DefaultDriver::default())));
        }
        let bytes = std::fs::read(self.wasm_path()?).map_err(|e| DriverError::Load {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.load_bytes(&bytes)
    }

    /// The `.wasm` file to load, or why there is none.
    pub fn wasm_path(&self) -> Result<&Path, DriverError> {
        if self.path.as_os_str().is_empty() {
            return Err(DriverError::Load {
                path: String::new(),
                reason: format!(
                    "MicroService.Driver is '{}' but MicroService.DriverPath names no .wasm file",
                    self.name
                ),
            });
        }
        Ok(&self.path)
    }

    /// Compiles and activates the component `bytes` (the content of `path`), and checks it
    /// reports the configured name.
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<Arc<dyn Driver>, DriverError> {
        let driver = WasmDriver::from_bytes(
            &self.path,
            bytes,
            self.limits,
            self.grants.clone(),
            self.clock.clone(),
            self.cache_dir.as_deref(),
        )?;
        if driver.name() != self.name {
            return Err(DriverError::NameMismatch {
                path: self.path.display().to_string(),
                configured: self.name.clone(),
                actual: driver.name().to_owned(),
            });
        }
        Ok(self.metered(Arc::new(driver)))
    }

    fn metered(&self, driver: Arc<dyn Driver>) -> Arc<dyn Driver> {
        Arc::new(MeteredDriver::new(driver, self.metrics.clone()))
    }
}

/// Renews `registration` through `driver` every period it asks for, until `stop` turns true;
/// resolves to the last state, which `deregister` takes. A failed renewal is logged and tried
/// again next period: the registry may be back by then.
pub async fn keep_alive(
    driver: Arc<dyn Driver>,
    mut registration: Registration,
    stop: Shutdown,
) -> Registration {
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
