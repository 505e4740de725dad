//! The alert webhook (docs/engine.md §3.6): a branch that keeps failing is reported to
//! `AlertWebHook`. Alerts are posted by one background task behind a bounded queue, each POST
//! with a timeout, so a slow or failing hook never holds up a pass; its failures are logged.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{info, warn};

use super::ClientError;

/// Alerts waiting to be posted; more are dropped (and logged) rather than queued without end.
const QUEUE_CAPACITY: usize = 256;

/// The JSON body dtm posts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub gid: String,
    pub status: String,
    pub branch: String,
    pub error: String,
    pub retry_count: i64,
}

/// Where alerts go, and from which retry count on (`AlertRetryLimit`).
#[derive(Debug, Clone)]
pub struct AlertHook {
    retry_limit: i64,
    /// `None`: no `AlertWebHook` configured.
    queue: Option<mpsc::Sender<Alert>>,
}

impl AlertHook {
    /// A hook posting to `url` (none when it is empty), each POST given `timeout`. Starts the
    /// posting task, so it must run inside the runtime.
    pub fn start(url: &str, retry_limit: i64, timeout: Duration) -> Result<Self, ClientError> {
        if url.is_empty() {
            return Ok(Self {
                retry_limit,
                queue: None,
            });
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(ClientError::AlertWebHook)?;
        let (queue, alerts) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(post_alerts(client, url.to_owned(), alerts));
        Ok(Self {
            retry_limit,
            queue: Some(queue),
        })
    }

    /// Whether a failure with this retry count is alerted.
    pub fn fires_at(&self, retry_count: i64) -> bool {
        self.queue.is_some() && retry_count >= self.retry_limit
    }

    /// Queues `alert` for posting; never waits.
    pub fn raise(&self, alert: Alert) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(alert) {
            Ok(()) => {}
            Err(TrySendError::Full(alert)) => {
                warn!(
                    gid = alert.gid,
                    branch = alert.branch,
                    "alert webhook queue full; alert dropped"
                )
            }
            Err(TrySendError::Closed(alert)) => {
                warn!(gid = alert.gid, "alert webhook stopped; alert dropped")
            }
        }
    }
}

async fn post_alerts(client: reqwest::Client, url: String, mut alerts: mpsc::Receiver<Alert>) {
    while let Some(alert) = alerts.recv().await {
        let body = match serde_json::to_vec(&alert) {
            Ok(body) => body,
            Err(e) => {
                warn!(gid = alert.gid, error = %e, "alert not encodable");
                continue;
            }
        };
        let sent = client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) => info!(
                gid = alert.gid,
                branch = alert.branch,
                retry_count = alert.retry_count,
                "alert sent"
            ),
            Err(e) => warn!(gid = alert.gid, url, error = %e, "alert webhook failed"),
        }
    }
}
