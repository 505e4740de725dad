//! Where a gRPC branch call goes: the driver's split of a URL into server and method, and the
//! endpoints a server with a driver scheme resolves to, remembered and picked per `Balancing`
//! (round-robin or first); stale lists are refreshed in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::call::CallError;
use crate::config::Balancing;
use crate::drivers::{needs_resolving, Driver, DriverError, Resolution, ServerMethod};
use crate::metrics::Metrics;

/// How long resolved endpoints are used when the driver suggests no interval.
const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
/// Most parsed URLs remembered; the cache starts over when full.
const PARSE_CACHE_LIMIT: usize = 65_536;
/// Most servers with a resolution kept; the cache starts over when full.
const SERVER_CACHE_LIMIT: usize = 4_096;

/// The endpoints a server with a driver scheme resolved to.
pub(super) struct Resolved {
    endpoints: Vec<String>,
    next: AtomicUsize,
    fresh_until: Mutex<Instant>,
    refreshing: AtomicBool,
}

impl Resolved {
    fn new(resolution: Resolution) -> Self {
        Self {
            fresh_until: Mutex::new(Instant::now() + resolution.refresh.unwrap_or(DEFAULT_REFRESH)),
            endpoints: resolution.endpoints,
            next: AtomicUsize::new(0),
            refreshing: AtomicBool::new(false),
        }
    }

    fn pick(&self, balancing: Balancing) -> Option<&String> {
        let n = self.endpoints.len();
        let at = match balancing {
            Balancing::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n.max(1),
            Balancing::PickFirst => 0,
        };
        self.endpoints.get(at)
    }

    fn is_stale(&self) -> bool {
        self.fresh_until
            .lock()
            .map_or(true, |until| Instant::now() >= *until)
    }

    pub(super) fn mark_stale(&self) {
        if let Ok(mut until) = self.fresh_until.lock() {
            *until = Instant::now();
        }
    }
}

/// A driver with what was learned through it: its URL splits and the endpoints its schemes
/// resolved to. Replaced as one, so a new driver never serves what the old one's rules
/// produced, and a call keeps the routing it started with.
pub(super) struct Routing {
    pub(super) driver: Arc<dyn Driver>,
    metrics: Arc<Metrics>,
    parsed: Mutex<HashMap<String, ServerMethod>>,
    resolved: Mutex<HashMap<String, Arc<Resolved>>>,
}

impl Routing {
    pub(super) fn new(driver: Arc<dyn Driver>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            driver,
            metrics,
            parsed: Mutex::default(),
            resolved: Mutex::default(),
        })
    }

    /// How many URL splits are remembered.
    #[cfg(test)]
    pub(super) fn remembered_splits(&self) -> usize {
        self.parsed.lock().map_or(0, |p| p.len())
    }

    /// The driver's split of a branch URL, remembered.
    pub(super) fn server_method(&self, url: &str) -> Result<ServerMethod, CallError> {
        if let Some(found) = self.parsed.lock().ok().and_then(|p| p.get(url).cloned()) {
            return Ok(found);
        }
        let split = self.driver.parse_server_method(url)?;
        if split.server.is_empty() {
            return Err(CallError::NoServer {
                driver: self.driver.name().to_owned(),
                url: url.to_owned(),
            });
        }
        if let Ok(mut parsed) = self.parsed.lock() {
            if parsed.len() >= PARSE_CACHE_LIMIT {
                parsed.clear();
            }
            parsed.insert(url.to_owned(), split.clone());
        }
        Ok(split)
    }

    /// The endpoint to call for `server`: itself, or the next of those its driver scheme
    /// resolves to. Stale lists are refreshed in the background; the last good list is kept
    /// while resolving fails.
    pub(super) async fn endpoint(
        self: &Arc<Self>,
        server: &str,
        balancing: Balancing,
    ) -> Result<(String, Option<Arc<Resolved>>), CallError> {
        if !needs_resolving(self.driver.as_ref(), server) {
            return Ok((server.to_owned(), None));
        }
        let known = self
            .resolved
            .lock()
            .ok()
            .and_then(|r| r.get(server).cloned());
        let resolved = match known {
            Some(resolved) => {
                if resolved.is_stale() && !resolved.refreshing.swap(true, Ordering::AcqRel) {
                    self.metrics.resolve_refreshed(self.driver.name());
                    let (routing, server) = (self.clone(), server.to_owned());
                    tokio::spawn(async move { routing.resolve(&server).await });
                }
                resolved
            }
            None => self.resolve(server).await?,
        };
        let endpoint = resolved
            .pick(balancing)
            .cloned()
            .ok_or_else(|| CallError::NoEndpoint(server.to_owned()))?;
        Ok((endpoint, Some(resolved)))
    }

    async fn resolve(&self, server: &str) -> Result<Arc<Resolved>, CallError> {
        // An empty list is kept out like a failure: a registry between deregistration and
        // re-registration (or briefly inconsistent) must not strand calls with no endpoint.
        let resolved = self.driver.resolve(server).await.and_then(|resolution| {
            if resolution.endpoints.is_empty() {
                Err(DriverError::Refused("no endpoint registered".into()))
            } else {
                Ok(resolution)
            }
        });
        match resolved {
            Ok(resolution) => {
                tracing::debug!(server, endpoints = ?resolution.endpoints, "resolved");
                let resolved = Arc::new(Resolved::new(resolution));
                if let Ok(mut all) = self.resolved.lock() {
                    if all.len() >= SERVER_CACHE_LIMIT {
                        all.clear();
                    }
                    all.insert(server.to_owned(), resolved.clone());
                }
                Ok(resolved)
            }
            Err(e) => {
                let known = self
                    .resolved
                    .lock()
                    .ok()
                    .and_then(|r| r.get(server).cloned());
                if let Some(known) = &known {
                    known.refreshing.store(false, Ordering::Release);
                }
                tracing::warn!(server, error = %e, kept = known.is_some(), "resolving failed");
                known.ok_or_else(|| CallError::Resolve {
                    server: server.to_owned(),
                    error: e,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_endpoints_are_used_round_robin() {
        let resolved = Resolved::new(Resolution {
            endpoints: vec!["a:1".into(), "b:2".into()],
            refresh: None,
        });
        let picks: Vec<_> = (0..4)
            .map(|_| resolved.pick(Balancing::RoundRobin).unwrap().clone())
            .collect();
        assert_eq!(picks, ["a:1", "b:2", "a:1", "b:2"]);
        assert_eq!(resolved.pick(Balancing::PickFirst).unwrap(), "a:1");
        assert!(!resolved.is_stale());
        resolved.mark_stale();
        assert!(resolved.is_stale());
    }
}
