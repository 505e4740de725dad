//! Nacos open API v1 (drivers.md §5.3). STUB: signatures fixed, bodies being written.

use serde::{Deserialize, Serialize};

use crate::Host;

/// An instance to register, beat and deregister.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub namespace_id: String,
    /// Without the group.
    pub service_name: String,
    pub group_name: String,
    pub cluster_name: String,
    pub ip: String,
    pub port: u16,
    pub weight: f64,
    pub enable: bool,
    pub healthy: bool,
    pub ephemeral: bool,
    /// A JSON object.
    pub metadata: serde_json::Value,
}

/// What a heartbeat answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// `clientBeatInterval`, when the server sets one.
    pub interval_ms: Option<u64>,
    /// Code 20404: the server does not know the instance; register it again.
    pub unknown_instance: bool,
}

/// One instance of an instance list.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub ip: String,
    pub port: u16,
    pub weight: f64,
    pub healthy: bool,
    pub enabled: bool,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// An instance list and how long it may be cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub cache_millis: Option<u64>,
    pub hosts: Vec<Listed>,
}

/// A client of one Nacos server.
pub struct Nacos<'h> {
    #[allow(dead_code)]
    host: &'h dyn Host,
    #[allow(dead_code)]
    base: String,
    #[allow(dead_code)]
    token: Option<String>,
}

impl<'h> Nacos<'h> {
    /// `address` is `host:port`; with `(user, password)` it logs in first and sends the
    /// access token on every call.
    pub fn connect(
        host: &'h dyn Host,
        address: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<Self, String> {
        let _ = (host, address, credentials);
        Err("nacos: not written yet".into())
    }

    pub fn register(&self, instance: &Instance) -> Result<(), String> {
        let _ = instance;
        Err("nacos: not written yet".into())
    }

    pub fn beat(&self, instance: &Instance) -> Result<Beat, String> {
        let _ = instance;
        Err("nacos: not written yet".into())
    }

    pub fn deregister(&self, instance: &Instance) -> Result<(), String> {
        let _ = instance;
        Err("nacos: not written yet".into())
    }

    /// The instance list of `service` in `group` (healthy or not); `clusters` comma-separated
    /// or empty.
    pub fn list(
        &self,
        namespace_id: &str,
        group: &str,
        service: &str,
        clusters: &str,
    ) -> Result<Listing, String> {
        let _ = (namespace_id, group, service, clusters);
        Err("nacos: not written yet".into())
    }
}
