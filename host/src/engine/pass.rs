//! One pass over one transaction (`Pass`): its in-memory copy and the bookkeeping every
//! transaction type shares: branch calls (`spawn_call`, `call_now`), when their results are
//! stored (`record`, `flush_writes`), status changes (`change_status`), lease renewals (`touch`,
//! `cover_call`) and what follows a call (`after_call`: backoff, alerts). Running passes is
//! `drive.rs`'s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::schedule::{self, Touch};
use super::{BranchWrites, Engine};
use crate::call::alert::Alert;
use crate::call::{BranchCall, CallResult};
use crate::clock::Millis;
use crate::error::{DtmError, DtmResult};
use crate::model::{branch_status, Branch, GlobalStatus, TransGlobal};
use crate::store::{BranchOutcome, StatusChange, StoreError};

/// How a pass ended.
pub(super) struct PassEnd {
    /// The transaction as the pass left it.
    pub(super) global: TransGlobal,
    /// The branch result or error that stopped the pass early, if one did.
    pub(super) outcome: DtmResult<()>,
    /// Branch calls the pass started are still under way.
    pub(super) calls_outlive: bool,
}

/// A branch status write under way.
type PendingWrite = JoinHandle<DtmResult<()>>;

/// A branch call started by a pass, reported back when it ends.
pub(super) struct Report {
    pub(super) index: usize,
    pub(super) result: CallResult,
    pub(super) outcome: Option<BranchOutcome>,
}

/// One pass over one transaction: its in-memory copy and the bookkeeping shared by all types.
pub(super) struct Pass {
    pub(super) engine: Arc<Engine>,
    pub(super) global: TransGlobal,
    pub(super) branches: Vec<Branch>,
    /// When the cron lease was last renewed by this pass.
    last_touch: Instant,
    /// Branch status writes not yet known to be stored.
    pending_writes: Vec<PendingWrite>,
    /// Branch outcomes kept for the next status change or the end of the pass
    /// ([`BranchWrites::WithNextStatus`]).
    unsaved: Vec<BranchOutcome>,
    /// Branch calls this pass started that have not ended, even after the pass itself ended.
    calls_in_flight: Arc<AtomicUsize>,
}

impl Pass {
    /// A pass over `global` and its records, which the caller holds.
    pub(super) fn new(engine: Arc<Engine>, global: TransGlobal, branches: Vec<Branch>) -> Self {
        Self {
            engine,
            global,
            branches,
            last_touch: Instant::now(),
            pending_writes: Vec::new(),
            unsaved: Vec::new(),
            calls_in_flight: Arc::default(),
        }
    }

    /// Ends the pass after its type's run returned `outcome`: stores the branch results not
    /// stored yet, counts the pass, and says how it ended.
    pub(super) async fn end(mut self, outcome: DtmResult<()>) -> PassEnd {
        let flushed = self.flush_writes().await;
        let outcome = outcome.and(flushed);
        let age = self.now().saturating_sub(self.global.create_time).max(0);
        self.engine.metrics.pass_done(
            self.global.trans_type.as_str(),
            outcome.is_ok(),
            Duration::from_millis(age as u64),
        );
        PassEnd {
            calls_outlive: self.calls_in_flight.load(Ordering::Acquire) > 0,
            global: self.global,
            outcome,
        }
    }

    pub(super) fn now(&self) -> Millis {
        self.engine.now()
    }

    pub(super) fn timed_out(&self) -> bool {
        schedule::is_timed_out(&self.global, &self.engine.conf, self.now())
    }

    pub(super) fn is(&self, status: GlobalStatus) -> bool {
        self.global.status == status
    }

    /// How long a pass may wait for its branch calls (dtm: RequestTimeout + 2 s).
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.engine.conf.request_timeout.max(0) as u64 + 2)
    }

    /// Takes note of a branch's definite result, to be written as `BranchWrites` says: before
    /// the pass goes on ([`Self::write_unsaved_now`]) or with its next status change.
    pub(super) fn record(&mut self, outcome: Option<BranchOutcome>) {
        let Some(outcome) = outcome else { return };
        // A record called twice in one pass keeps its latest result.
        self.unsaved
            .retain(|u| (&u.branch_id, &u.op) != (&outcome.branch_id, &outcome.op));
        self.unsaved.push(outcome);
    }

    /// With `UpdateBranchSync` ≥ 1, starts writing the results recorded so far: the pass is
    /// about to call another branch or wait for one. (Results followed at once by a status
    /// change go with it instead, one commit, not two, where the store takes them.)
    pub(super) fn write_unsaved_now(&mut self) {
        if self.engine.branch_writes == BranchWrites::EachAtOnce && !self.unsaved.is_empty() {
            let unsaved = std::mem::take(&mut self.unsaved);
            let write = self.engine.spawn_write(self.global.gid.clone(), unsaved);
            self.pending_writes.push(write);
        }
    }

    /// Waits for the branch status writes under way.
    async fn await_writes(&mut self) -> DtmResult<()> {
        for write in std::mem::take(&mut self.pending_writes) {
            write
                .await
                .map_err(|e| DtmError::Other(format!("branch status write failed: {e}")))??;
        }
        Ok(())
    }

    /// Stores every branch result of this pass that is not stored yet.
    async fn flush_writes(&mut self) -> DtmResult<()> {
        self.await_writes().await?;
        let unsaved = std::mem::take(&mut self.unsaved);
        if !unsaved.is_empty() {
            self.engine
                .store
                .save_branch_outcomes(&self.global.gid, &unsaved, self.now())
                .await?;
        }
        Ok(())
    }

    /// Compare-and-set of the global status, in the store and then in memory. Branch results
    /// are stored first or in the same commit, so a final status never stands on unrecorded
    /// branches.
    pub(super) async fn change_status(
        &mut self,
        to: GlobalStatus,
        change: StatusChange,
    ) -> DtmResult<()> {
        if !self.engine.store.status_change_takes_outcomes() {
            self.write_unsaved_now();
        }
        self.await_writes().await?;
        let outcomes = std::mem::take(&mut self.unsaved);
        let change = StatusChange {
            branch_outcomes: outcomes.clone(),
            ..change
        };
        let changed = self
            .engine
            .change_status(&mut self.global, to, change)
            .await;
        if changed.is_err() {
            // Not written with the status: the pass's end stores them on their own.
            self.unsaved = outcomes;
        }
        changed
    }

    pub(super) async fn abort_with(&mut self, reason: String) -> DtmResult<()> {
        let change = StatusChange {
            rollback_reason: Some(reason),
            ..Default::default()
        };
        self.change_status(GlobalStatus::Aborting, change).await
    }

    pub(super) async fn abort_timed_out(&mut self) -> DtmResult<()> {
        let secs = schedule::timeout_secs(&self.global, &self.engine.conf).unwrap_or_default();
        self.abort_with(format!("Timeout after {secs} seconds"))
            .await
    }

    /// Reschedules the transaction: next look after the new interval, or after `delay_secs`.
    pub(super) async fn touch(&mut self, touch: Touch, delay_secs: Option<i64>) -> DtmResult<()> {
        let interval = schedule::next_interval(&self.global, touch, &self.engine.conf);
        let now = self.now();
        let mut next = schedule::after_secs(now, delay_secs.unwrap_or(interval));
        if self.calls_in_flight.load(Ordering::Acquire) > 0 {
            // A shorter lease would let another pass call those branches again meanwhile.
            next = next.max(self.call_lease_end(now));
        }
        self.reschedule(interval, next, now).await
    }

    /// Stores the transaction's next look (`interval`, due at `next`), then its in-memory copy.
    async fn reschedule(&mut self, interval: i64, next: Millis, now: Millis) -> DtmResult<()> {
        let g = &self.global;
        self.engine
            .store
            .touch_cron_time(&g.gid, g.status, &g.owner, interval, next, now)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => DtmError::Other(format!(
                    "the pass stopped: transaction {} is no longer {} under this pass's hold",
                    g.gid, g.status
                )),
                other => other.into(),
            })?;
        self.global.next_cron_interval = interval;
        self.global.next_cron_time = next;
        self.last_touch = Instant::now();
        Ok(())
    }

    fn call_lease_end(&self, now: Millis) -> Millis {
        schedule::call_lease_end(&self.global, &self.engine.conf, now)
    }

    /// Renews the lease, if needed, so it lasts until a branch call starting now has ended:
    /// no other pass (of this host or another sharing the store) claims the transaction and
    /// calls the same branch while this call may still be under way, whatever the
    /// transaction's retry_interval.
    pub(super) async fn cover_call(&mut self) -> DtmResult<()> {
        let now = self.now();
        let call_end = self.call_lease_end(now);
        if self.global.next_cron_time >= call_end {
            return Ok(());
        }
        let interval = self.global.next_cron_interval;
        self.reschedule(interval, call_end + schedule::LEASE_SLACK_MS, now)
            .await
    }

    /// Applies docs/engine.md §3.3 after the call of branch record `index`: success renews the
    /// lease now and then, ONGOING polls at the same interval, anything else backs off (and
    /// may alert).
    pub(super) async fn after_call(
        &mut self,
        index: usize,
        result: &CallResult,
        terminal_failure: bool,
    ) -> DtmResult<()> {
        let definite = match result {
            CallResult::Success => true,
            CallResult::Failure(_) => terminal_failure,
            CallResult::Ongoing(_) | CallResult::Error(_) => false,
        };
        if definite {
            let grown = self.global.next_cron_interval
                > self
                    .engine
                    .conf
                    .retry_interval
                    .max(self.global.options.retry_interval);
            if grown || self.last_touch.elapsed() >= Duration::from_millis(1500) {
                self.touch(Touch::Reset, None).await?;
            }
            return Ok(());
        }
        match result {
            CallResult::Ongoing(_) => self.touch(Touch::Keep, None).await,
            CallResult::Failure(error) | CallResult::Error(error) => {
                self.touch(Touch::Backoff, None).await?;
                self.alert_if_due(index, error);
                Ok(())
            }
            CallResult::Success => Ok(()),
        }
    }

    /// After a backoff: alerts once the failures in a row reach `AlertRetryLimit`.
    fn alert_if_due(&self, index: usize, error: &str) {
        let base = schedule::next_interval(&self.global, Touch::Reset, &self.engine.conf);
        let retry_count = schedule::retry_count(self.global.next_cron_interval, base);
        if !self.engine.alerts.fires_at(retry_count) {
            return;
        }
        let branch = self.branches[index].url.clone();
        info!(
            gid = self.global.gid,
            branch, retry_count, "branch keeps failing; alerting"
        );
        self.engine.alerts.raise(Alert {
            gid: self.global.gid.clone(),
            status: self.global.status.as_str().to_owned(),
            branch,
            error: error.to_owned(),
            retry_count,
        });
    }

    /// The call of branch record `index`.
    fn branch_call(&self, index: usize) -> BranchCall {
        let b = &self.branches[index];
        self.call_to(
            b.url.clone(),
            b.branch_id.clone(),
            b.op.clone(),
            b.bin_data.clone(),
        )
    }

    pub(super) fn call_to(
        &self,
        url: String,
        branch_id: String,
        op: String,
        body: Vec<u8>,
    ) -> BranchCall {
        let g = &self.global;
        BranchCall {
            url,
            body,
            gid: g.gid.clone(),
            trans_type: g.trans_type,
            branch_id,
            op,
            protocol: g.protocol,
            headers: Arc::new(g.options.branch_headers.clone()),
            timeout: Duration::from_secs(
                schedule::request_timeout(g, &self.engine.conf).max(1) as u64
            ),
        }
    }

    /// Starts the call of branch record `index` in the background; its [`Report`] arrives on
    /// `reports`. If the pass has ended by then, the call writes its result itself.
    pub(super) async fn spawn_call(
        &mut self,
        index: usize,
        terminal_failure: bool,
        reports: &tokio::sync::mpsc::UnboundedSender<Report>,
    ) -> DtmResult<()> {
        self.write_unsaved_now();
        self.cover_call().await?;
        let call = self.branch_call(index);
        let engine = self.engine.clone();
        let reports = reports.clone();
        let in_flight = self.calls_in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        self.engine.tasks.spawn(async move {
            let (result, outcome) = engine.call_branch(&call, terminal_failure).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let report = Report {
                index,
                result,
                outcome,
            };
            if let Err(unreported) = reports.send(report) {
                if let Some(outcome) = unreported.0.outcome {
                    let stored = engine
                        .store
                        .save_branch_outcomes(&call.gid, &[outcome], engine.now())
                        .await;
                    if let Err(error) = stored {
                        debug!(gid = call.gid, %error, "result of a call that outlived its pass not stored");
                    }
                }
            }
        });
        Ok(())
    }

    /// Calls branch record `index`, waits for it and applies its result to the schedule.
    pub(super) async fn call_now(&mut self, index: usize) -> DtmResult<CallResult> {
        self.write_unsaved_now();
        self.cover_call().await?;
        let call = self.branch_call(index);
        let (result, outcome) = self.engine.call_branch(&call, false).await;
        self.record(outcome);
        self.after_call(index, &result, false).await?;
        if result == CallResult::Success {
            self.branches[index].status = branch_status::SUCCEED.to_owned();
        }
        Ok(result)
    }
}

impl Engine {
    /// Calls a branch and returns, besides the result, the branch's new status when the
    /// result is definite (a FAILURE marks the branch `failed` only where it is terminal: a
    /// saga action).
    async fn call_branch(
        &self,
        call: &BranchCall,
        terminal_failure: bool,
    ) -> (CallResult, Option<BranchOutcome>) {
        let result = self.caller.call(call).await;
        self.metrics.branch_called(
            call.trans_type.as_str(),
            &call.branch_id,
            &call.op,
            result == CallResult::Success,
        );
        let status = match &result {
            CallResult::Success => branch_status::SUCCEED,
            CallResult::Failure(_) if terminal_failure => branch_status::FAILED,
            _ => return (result, None),
        };
        let outcome = BranchOutcome {
            branch_id: call.branch_id.clone(),
            op: call.op.clone(),
            status,
        };
        (result, Some(outcome))
    }

    /// Starts writing branch outcomes of `gid` in the background.
    fn spawn_write(self: &Arc<Self>, gid: String, outcomes: Vec<BranchOutcome>) -> PendingWrite {
        let engine = self.clone();
        self.tasks.spawn(async move {
            engine
                .store
                .save_branch_outcomes(&gid, &outcomes, engine.now())
                .await
                .map_err(DtmError::from)
        })
    }
}

/// A branch result that stops a pass, as the error the pass returns.
pub(super) fn call_error(result: CallResult) -> DtmResult<()> {
    match result {
        CallResult::Success => Ok(()),
        CallResult::Failure(text) => Err(DtmError::Failure(text)),
        CallResult::Ongoing(text) => Err(DtmError::Ongoing(text)),
        CallResult::Error(text) => Err(DtmError::Other(text)),
    }
}
