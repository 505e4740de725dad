//! dtm-host: a distributed-transaction coordinator that speaks dtm's protocols.
//!
//! Data flows edge (`api`) → `engine` → `store` / `call`.

pub mod api;
pub mod call;
pub mod clock;
pub mod config;
pub mod drivers;
pub mod engine;
pub mod error;
pub mod gid;
pub mod health;
pub mod metrics;
pub mod model;
pub mod proto;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod store;
