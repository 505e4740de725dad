//! etcd through its v3 JSON gateway (drivers.md §5.1). STUB: signatures fixed, bodies being written.

use serde::{Deserialize, Serialize};

use crate::Host;

/// User and password from a target's query (`?user=root&password=secret`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// A client of one etcd cluster: requests go to the first endpoint that answers.
pub struct Etcd<'h> {
    #[allow(dead_code)]
    host: &'h dyn Host,
    #[allow(dead_code)]
    endpoints: Vec<String>,
    #[allow(dead_code)]
    token: Option<String>,
}

impl<'h> Etcd<'h> {
    /// `hosts` is a comma-separated `host:port` list (empty pieces dropped); with credentials
    /// it authenticates first and sends the token on every call.
    pub fn connect(
        host: &'h dyn Host,
        hosts: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Self, String> {
        let _ = (host, hosts, credentials);
        Err("etcd: not written yet".into())
    }

    /// Grants a lease of `ttl_secs`; returns its ID as the decimal string etcd gave.
    pub fn grant(&self, ttl_secs: u64) -> Result<String, String> {
        let _ = ttl_secs;
        Err("etcd: not written yet".into())
    }

    /// Puts `key` = `value`, bound to `lease` when given (else permanent).
    pub fn put(&self, key: &str, value: &str, lease: Option<&str>) -> Result<(), String> {
        let _ = (key, value, lease);
        Err("etcd: not written yet".into())
    }

    /// Renews `lease` once; `Ok(false)` when etcd no longer knows it (TTL 0 or missing).
    pub fn keep_alive(&self, lease: &str) -> Result<bool, String> {
        let _ = lease;
        Err("etcd: not written yet".into())
    }

    /// Revokes `lease`, deleting its keys.
    pub fn revoke(&self, lease: &str) -> Result<(), String> {
        let _ = lease;
        Err("etcd: not written yet".into())
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<(), String> {
        let _ = key;
        Err("etcd: not written yet".into())
    }

    /// Every key under `prefix` with its value, both as text.
    pub fn range_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let _ = prefix;
        Err("etcd: not written yet".into())
    }
}
