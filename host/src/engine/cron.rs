//! The recovery loop: claims due unfinished transactions and runs a pass on each (docs/engine.md
//! §3.1), up to `TransCronConcurrency` passes at once (dtm runs one at a time, so a backlog
//! drains at one transaction's duration per transaction). A claim takes a batch, one due
//! transaction per free slot, in one store round trip, and pushes each one's `next_cron_time`
//! one RetryInterval ahead (a lease), so another coordinator on the same store does not take it
//! meanwhile; claiming stops while every slot is taken.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::destinations::{destination_of, Destinations};
use super::passes::Entry;
use super::Engine;
use crate::metrics::RecoveryOutcome;
use crate::model::TransGlobal;

/// Most transactions one claim takes: one store round trip claims up to this many, or as many
/// as there are free slots if fewer.
const CLAIM_BATCH: usize = 64;

impl Engine {
    /// Claims up to one due transaction per slot in `slots`, in one batch, and runs a pass on
    /// each in the background, holding its slot until the pass ends; returns how many were
    /// claimed (slots left over are given back).
    async fn start_due(
        self: &Arc<Self>,
        mut slots: Vec<OwnedSemaphorePermit>,
        destinations: &Arc<Destinations>,
    ) -> usize {
        let now = self.now();
        let lease_until = super::schedule::after_secs(now, self.conf.retry_interval);
        let claimed = match self
            .store
            .claim_due(now, lease_until, now, slots.len())
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                warn!(error = %e, "cron: claiming due transactions failed");
                return 0;
            }
        };
        let count = claimed.len();
        for global in claimed {
            let Some(slot) = slots.pop() else { break };
            self.start_pass(global, slot, destinations);
        }
        count
    }

    /// Runs the pass of a claimed transaction in the background, holding `slot` until it ends.
    fn start_pass(
        self: &Arc<Self>,
        global: TransGlobal,
        slot: OwnedSemaphorePermit,
        destinations: &Arc<Destinations>,
    ) {
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
                return;
            }
        };
        let engine = self.clone();
        let destinations = destinations.clone();
        self.tasks.spawn(async move {
            let branches = match engine.store.find_branches(&gid).await {
                Ok(branches) => branches,
                Err(e) => {
                    warn!(gid, error = %e, "cron: loading branches failed");
                    return;
                }
            };
            let Some(visit) = destinations.visit(destination_of(&global, &branches)) else {
                // Its claim's lease makes it due again one RetryInterval from now.
                if let Err(e) = engine.store.release(&gid, &global.owner, engine.now()).await {
                    debug!(gid, error = %e, "cron: ending a deferred claim failed; it ends with its lease");
                }
                engine.metrics.recovery_pass_ended(RecoveryOutcome::Deferred);
                return;
            };
            engine.metrics.recovery_pass_started();
            // In a task of its own, so even a bug that panics costs one pass, not the slot.
            let pass = tokio::spawn({
                let engine = engine.clone();
                async move { engine.run_held(hold, global, branches).await }
            });
            let outcome = match pass.await {
                Ok(end) => {
                    if let Err(e) = end.outcome {
                        debug!(gid, error = %e, "cron: pass ended with an error; retried later");
                    }
                    if end.global.status.is_finished() {
                        RecoveryOutcome::Finished
                    } else {
                        RecoveryOutcome::Unfinished
                    }
                }
                Err(e) => {
                    warn!(gid, error = %e, "cron: pass aborted; retried after its lease");
                    RecoveryOutcome::Aborted
                }
            };
            // A service that leaves its transactions unfinished is failing or slow (or
            // answers ONGOING): its share of the slots is limited until one finishes again.
            visit.ended(outcome == RecoveryOutcome::Finished);
            engine.metrics.recovery_pass_ended(outcome);
            drop(slot);
        });
    }

    /// Counts the recovery backlog for its gauge every `interval` until `stop` turns true.
    async fn count_backlog(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            match self.store.count_due(self.now()).await {
                Ok(due) => self.metrics.recovery_due(due),
                Err(e) => debug!(error = %e, "cron: counting the backlog failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// Runs until `stop` turns true: starts passes on whatever is due while a slot is free,
    /// then sleeps TransCronInterval − rand[0,1) s.
    pub async fn run_cron(
        self: Arc<Self>,
        settings: CronSettings,
        mut stop: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let destinations = Destinations::new(settings.concurrency.max(1));
        tokio::spawn(self.clone().count_backlog(settings.interval, stop.clone()));
        loop {
            while !*stop.borrow() {
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                    _ = stop.changed() => break,
                };
                let mut batch = vec![slot];
                while batch.len() < CLAIM_BATCH {
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => batch.push(slot),
                        Err(_) => break,
                    }
                }
                let wanted = batch.len();
                // Fewer due than free slots: nothing more to claim until the next round.
                if self.start_due(batch, &destinations).await < wanted {
                    break;
                }
            }
            let jitter = Duration::from_millis(rand::rng().random_range(0..1000));
            let sleep = settings
                .interval
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

/// The recovery loop's settings.
#[derive(Debug, Clone, Copy)]
pub struct CronSettings {
    /// TransCronInterval: the sleep when nothing is due.
    pub interval: Duration,
    /// TransCronConcurrency: passes at once.
    pub concurrency: usize,
}
