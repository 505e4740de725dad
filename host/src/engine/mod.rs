//! The transaction engine: protocol-free. The edges hand it requests; it stores state through
//! [`Store`] and calls branches through [`Caller`]. One *pass* moves one transaction as far as
//! it can go now; the cron loop runs passes for whatever is due.
//!
//! This file holds the [`Engine`] and the status compare-and-set everything shares. Requests
//! are `input.rs` (what the edges hand in), `requests.rs` (validation and dispatch) and
//! `queries.rs` (read-only); a pass is `pass.rs` (its bookkeeping) and `drive.rs` (running
//! it); each transaction type, its records and its pass, is its own file (`saga.rs`, `msg.rs`,
//! `tcc.rs`, `xa.rs`, `workflow.rs`).

pub mod cron;
mod destinations;
mod drive;
mod input;
mod msg;
mod pass;
mod passes;
mod queries;
mod requests;
mod saga;
pub mod schedule;
mod tcc;
mod topics;
mod workflow;
mod xa;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use input::{lowercase_keys, BranchRequest, TransRequest};
use passes::Passes;
use schedule::ScheduleConfig;

use crate::call::alert::AlertHook;
use crate::call::Caller;
use crate::clock::{Clock, Millis};
use crate::error::{DtmError, DtmResult};
use crate::metrics::Metrics;
use crate::model::{GlobalStatus, TransGlobal};
use crate::store::{StatusChange, Store};

pub struct Engine {
    store: Arc<dyn Store>,
    caller: Caller,
    clock: Arc<Clock>,
    conf: ScheduleConfig,
    branch_writes: BranchWrites,
    metrics: Arc<Metrics>,
    alerts: AlertHook,
    /// Background passes and the branch calls they start; awaited on shutdown.
    tasks: TaskTracker,
    /// The passes running in this process, one per transaction at most.
    passes: Arc<Passes>,
    /// Slots for the passes requests start in the background (a submit without `wait_result`);
    /// see `drive.rs`.
    background: Arc<Semaphore>,
}

/// When a pass stores the results of its branch calls (`UpdateBranchSync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchWrites {
    /// Each definite result is written before the pass goes on: in a commit of its own while
    /// the pass calls the next branch or waits for one, or, when the pass changes the status
    /// next, in that commit where the store takes them (not MySQL: see
    /// `Store::status_change_takes_outcomes`) (`UpdateBranchSync` ≥ 1: dtm-host's default, and
    /// dtm's since December 2025; dtm v1.19.0 defaults to 0).
    EachAtOnce,
    /// The pass keeps its results and writes them with its next status change, in that one
    /// commit, or all together when it ends (`UpdateBranchSync: 0`). A 2-branch saga then costs
    /// two commits instead of four; a crash before them repeats calls, which are idempotent.
    WithNextStatus,
}

impl BranchWrites {
    /// dtm's `UpdateBranchSync` setting.
    pub fn from_update_branch_sync(value: i64) -> Self {
        if value == 0 {
            Self::WithNextStatus
        } else {
            Self::EachAtOnce
        }
    }
}

/// What an engine reports to besides its store: the metrics and the alert webhook.
pub struct Observers {
    pub metrics: Arc<Metrics>,
    pub alerts: AlertHook,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        caller: Caller,
        clock: Arc<Clock>,
        conf: ScheduleConfig,
        branch_writes: BranchWrites,
        observers: Observers,
        background_passes: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            caller,
            clock,
            conf,
            branch_writes,
            metrics: observers.metrics,
            alerts: observers.alerts,
            tasks: TaskTracker::new(),
            passes: Arc::default(),
            background: Arc::new(Semaphore::new(background_passes.max(1))),
        })
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Waits up to `grace` for background passes and branch calls to finish (their results are
    /// written to the store before they end).
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(still_running = self.tasks.len(), "shutdown: background passes did not finish in time; cron resumes them after restart");
        }
    }

    /// Compare-and-set of a transaction's status from the one in `global`: in the store, then
    /// in `global`, then logged.
    async fn change_status(
        &self,
        global: &mut TransGlobal,
        to: GlobalStatus,
        change: StatusChange,
    ) -> DtmResult<()> {
        let now = self.now();
        let from = global.status;
        self.store
            .change_status(&global.gid, from, to, change.clone(), now)
            .await?;
        global.status = to;
        global.update_time = now;
        match to {
            GlobalStatus::Succeed => global.finish_time = Some(now),
            GlobalStatus::Failed => global.rollback_time = Some(now),
            _ => {}
        }
        if let Some(reason) = change.rollback_reason {
            global.rollback_reason = reason;
        }
        if let Some(custom_data) = change.custom_data {
            global.custom_data = custom_data;
        }
        info!(gid = global.gid, trans_type = %global.trans_type, from = %from, to = %to, rollback_reason = global.rollback_reason, "transaction status changed");
        Ok(())
    }
}

/// The error a request on a gid that is not stored answers.
fn unknown_gid(gid: &str) -> DtmError {
    DtmError::Internal(format!("no TransGlobal with gid: {gid} found"))
}
