//! What the admin UI shows about the microservice driver(s).

use std::sync::Arc;

use serde::Serialize;

use crate::drivers::Driver;

/// Asked on every request of the drivers page, so it always shows the driver in use.
pub type DriverStatusFn = Arc<dyn Fn() -> Vec<DriverStatus> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverState {
    /// Branch calls and registration go through it.
    Active,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverStatus {
    pub name: String,
    /// The `.wasm` component it was loaded from; empty for the built-in driver.
    pub path: String,
    /// Of the file the running instance was loaded from; changes with each reload.
    pub sha256: Option<String>,
    pub schemes: Vec<String>,
    pub rewrites_http: bool,
    pub rewrites_grpc: bool,
    /// `MicroService.Target` it registers the coordinator in; empty when it registers nothing.
    pub target: String,
    pub state: DriverState,
}

impl DriverStatus {
    pub fn active(driver: &dyn Driver, path: &str, target: &str) -> Self {
        let activation = driver.activation();
        Self {
            name: driver.name().to_owned(),
            path: path.to_owned(),
            sha256: driver.sha256().map(str::to_owned),
            schemes: activation.schemes.clone(),
            rewrites_http: activation.rewrites_http,
            rewrites_grpc: activation.rewrites_grpc,
            target: target.to_owned(),
            state: DriverState::Active,
        }
    }
}
