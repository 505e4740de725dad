//! The recovery loop: claims one due unfinished transaction at a time and runs a pass on it
//! (engine.md §3.1). The claim pushes the transaction's `next_cron_time` one RetryInterval
//! ahead (a lease), so another coordinator on the same store does not take it meanwhile.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::passes::Entry;
use super::Engine;

impl Engine {
    /// Claims and processes one due transaction; `false` when none was due.
    pub async fn process_one_due(self: &Arc<Self>) -> bool {
        let now = self.now();
        let lease_until = super::schedule::after_secs(now, self.conf.retry_interval);
        let global = match self.store.claim_due(now, lease_until, now).await {
            Ok(Some(global)) => global,
            Ok(None) => return false,
            Err(e) => {
                warn!(error = %e, "cron: claiming a due transaction failed");
                return false;
            }
        };
        let gid = global.gid.clone();
        debug!(gid, status = %global.status, "cron: claimed");
        let hold = match self.passes.enter(&gid, false) {
            Entry::Mine(hold) => hold,
            // Its pass here outlived its lease (a store write slower than the lease): that
            // pass stops at its next renewal, which the new owner token refuses, and the
            // transaction is claimable again once this claim's lease has passed.
            Entry::Busy(_) => {
                warn!(
                    gid,
                    "cron: claimed a transaction whose pass still runs here; left to it"
                );
                return true;
            }
        };
        let branches = match self.store.find_branches(&gid).await {
            Ok(branches) => branches,
            Err(e) => {
                warn!(gid, error = %e, "cron: loading branches failed");
                return true;
            }
        };
        // In its own task, so even a bug that panics costs one pass, not the loop.
        let engine = self.clone();
        match tokio::spawn(async move { engine.run_held(hold, global, branches).await.outcome })
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(gid, error = %e, "cron: pass ended with an error; retried later"),
            Err(e) => warn!(gid, error = %e, "cron: pass aborted; retried after its lease"),
        }
        true
    }

    /// Runs until `stop` turns true: process whatever is due, then sleep
    /// TransCronInterval − rand[0,1) s.
    pub async fn run_cron(
        self: Arc<Self>,
        cron_interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            while !*stop.borrow() && self.process_one_due().await {}
            let jitter = Duration::from_millis(rand::rng().random_range(0..1000));
            let sleep = cron_interval
                .saturating_sub(jitter)
                .max(Duration::from_millis(100));
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}
