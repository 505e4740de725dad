//! The transaction engine: protocol-free. The edges hand it requests; it stores state through
//! [`Store`] and calls branches through [`Caller`]. One *pass* moves one transaction as far as
//! it can go now; the cron loop runs passes for whatever is due.

pub mod cron;
mod destinations;
mod msg;
mod passes;
mod requests;
mod saga;
pub mod schedule;
mod tcc;
mod topics;
mod workflow;
mod xa;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use passes::{Hold, Passes};
pub use requests::{BranchRequest, TransRequest};
use schedule::{ScheduleConfig, Touch};

use crate::call::alert::{Alert, AlertHook};
use crate::call::{BranchCall, CallResult, Caller};
use crate::clock::{Clock, Millis};
use crate::error::{DtmError, DtmResult};
use crate::metrics::Metrics;
use crate::model::{branch_status, Branch, GlobalStatus, TransGlobal};
use crate::store::{BranchOutcome, StatusChange, Store, StoreError};

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
}

/// When a pass stores the results of its branch calls (`UpdateBranchSync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchWrites {
    /// Each definite result is written as soon as it is known, in a commit of its own, while the
    /// pass goes on (`UpdateBranchSync` ≥ 1, dtm's default).
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

    /// Runs [`Self::run_held`] in the background (detached from the request that asked for it).
    fn spawn_held(self: &Arc<Self>, hold: Hold, global: TransGlobal, branches: Vec<Branch>) {
        let engine = self.clone();
        self.tasks.spawn(async move {
            let end = engine.run_held(hold, global, branches).await;
            if let Err(e) = end.outcome {
                debug!(gid = end.global.gid, error = %e, "background pass ended with an error; cron retries it");
            }
        });
    }

    /// Runs the pass of `global`, which this pass's token (`global.owner`) holds in the store
    /// and `hold` in this process; runs it again while requests asked for that meanwhile; then
    /// ends the store's hold, unless the transaction finished or branch calls the pass started
    /// are still under way (their lease must stand until they end).
    async fn run_held(
        self: &Arc<Self>,
        hold: Hold,
        global: TransGlobal,
        branches: Vec<Branch>,
    ) -> PassEnd {
        let owner = global.owner.clone();
        let mut end = self.process(global, branches).await;
        while hold.take_again() && !end.global.status.is_finished() && !end.calls_outlive {
            match self.reclaim(hold.gid(), &owner).await {
                Ok(Some((global, branches))) => end = self.process(global, branches).await,
                Ok(None) => break,
                Err(e) => {
                    end.outcome = Err(e);
                    break;
                }
            }
        }
        if !end.global.status.is_finished() && !end.calls_outlive {
            if let Err(e) = self.store.release(hold.gid(), &owner, self.now()).await {
                debug!(gid = hold.gid(), error = %e, "ending a pass's hold failed; it ends with its lease");
            }
        }
        end
    }

    /// Claims `gid` for a pass with token `owner`, with the records to run it on; `None` when
    /// it is finished or another pass holds it.
    async fn reclaim(
        &self,
        gid: &str,
        owner: &str,
    ) -> DtmResult<Option<(TransGlobal, Vec<Branch>)>> {
        let now = self.now();
        let lease_until = schedule::after_secs(now, self.conf.retry_interval);
        let Some(global) = self.store.claim(gid, owner, lease_until, now).await? else {
            return Ok(None);
        };
        let branches = self.store.find_branches(gid).await?;
        Ok(Some((global, branches)))
    }

    /// Runs one pass and returns the transaction as it stands at the end of it.
    async fn process(self: &Arc<Self>, global: TransGlobal, branches: Vec<Branch>) -> PassEnd {
        use crate::model::TransType::*;
        let mut pass = Pass {
            engine: self.clone(),
            global,
            branches,
            last_touch: Instant::now(),
            pending_writes: Vec::new(),
            unsaved: Vec::new(),
            calls_in_flight: Arc::default(),
        };
        let outcome = match pass.global.trans_type {
            Saga => saga::run(&mut pass).await,
            Msg => msg::run(&mut pass).await,
            Tcc => tcc::run(&mut pass).await,
            Xa => xa::run(&mut pass).await,
            Workflow => workflow::run(&mut pass).await,
        };
        let flushed = pass.flush_writes().await;
        let outcome = outcome.and(flushed);
        let age = self.now().saturating_sub(pass.global.create_time).max(0);
        self.metrics.pass_done(
            pass.global.trans_type.as_str(),
            outcome.is_ok(),
            Duration::from_millis(age as u64),
        );
        PassEnd {
            calls_outlive: pass.calls_in_flight.load(Ordering::Acquire) > 0,
            global: pass.global,
            outcome,
        }
    }

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

/// How a pass ended.
struct PassEnd {
    /// The transaction as the pass left it.
    global: TransGlobal,
    /// The branch result or error that stopped the pass early, if one did.
    outcome: DtmResult<()>,
    /// Branch calls the pass started are still under way.
    calls_outlive: bool,
}

/// How far past the end of a branch call a lease renewal reaches.
const LEASE_RENEWAL_SLACK_MS: Millis = 3_000;

/// A branch status write under way.
type PendingWrite = JoinHandle<DtmResult<()>>;

/// A branch call started by a pass, reported back when it ends.
struct Report {
    index: usize,
    result: CallResult,
    outcome: Option<BranchOutcome>,
}

/// One pass over one transaction: its in-memory copy and the bookkeeping shared by all types.
struct Pass {
    engine: Arc<Engine>,
    global: TransGlobal,
    branches: Vec<Branch>,
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
    fn now(&self) -> Millis {
        self.engine.now()
    }

    fn timed_out(&self) -> bool {
        schedule::is_timed_out(&self.global, &self.engine.conf, self.now())
    }

    fn is(&self, status: GlobalStatus) -> bool {
        self.global.status == status
    }

    /// How long a pass may wait for its branch calls (dtm: RequestTimeout + 2 s).
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.engine.conf.request_timeout.max(0) as u64 + 2)
    }

    /// Takes note of a branch's definite result: written now, or kept for the next status
    /// change, as `BranchWrites` says.
    fn record(&mut self, outcome: Option<BranchOutcome>) {
        let Some(outcome) = outcome else { return };
        match self.engine.branch_writes {
            BranchWrites::EachAtOnce => {
                let write = self
                    .engine
                    .spawn_write(self.global.gid.clone(), vec![outcome]);
                self.pending_writes.push(write);
            }
            BranchWrites::WithNextStatus => {
                // A record called twice in one pass keeps its latest result.
                self.unsaved
                    .retain(|u| (&u.branch_id, &u.op) != (&outcome.branch_id, &outcome.op));
                self.unsaved.push(outcome);
            }
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
    async fn change_status(&mut self, to: GlobalStatus, change: StatusChange) -> DtmResult<()> {
        self.await_writes().await?;
        let change = StatusChange {
            branch_outcomes: std::mem::take(&mut self.unsaved),
            ..change
        };
        self.engine
            .change_status(&mut self.global, to, change)
            .await
    }

    async fn abort_with(&mut self, reason: String) -> DtmResult<()> {
        let change = StatusChange {
            rollback_reason: Some(reason),
            ..Default::default()
        };
        self.change_status(GlobalStatus::Aborting, change).await
    }

    async fn abort_timed_out(&mut self) -> DtmResult<()> {
        let secs = schedule::timeout_secs(&self.global, &self.engine.conf).unwrap_or_default();
        self.abort_with(format!("Timeout after {secs} seconds"))
            .await
    }

    /// Reschedules the transaction: next look after the new interval, or after `delay_secs`.
    async fn touch(&mut self, touch: Touch, delay_secs: Option<i64>) -> DtmResult<()> {
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

    /// Until when the lease must hold for a branch call starting at `now`: its timeout, plus
    /// the 2 s dtm allows for the pass around it.
    fn call_lease_end(&self, now: Millis) -> Millis {
        schedule::after_secs(
            now,
            schedule::request_timeout(&self.global, &self.engine.conf).max(1) + 2,
        )
    }

    /// Renews the lease, if needed, so it lasts until a branch call starting now has ended:
    /// no other pass (of this host or another sharing the store) claims the transaction and
    /// calls the same branch while this call may still be under way, whatever the
    /// transaction's retry_interval.
    async fn cover_call(&mut self) -> DtmResult<()> {
        let now = self.now();
        let call_end = self.call_lease_end(now);
        if self.global.next_cron_time >= call_end {
            return Ok(());
        }
        // A little beyond, so the calls a pass starts one after another share one renewal.
        let interval = self.global.next_cron_interval;
        self.reschedule(interval, call_end + LEASE_RENEWAL_SLACK_MS, now)
            .await
    }

    /// Applies docs/engine.md §3.3 after the call of branch record `index`: success renews the
    /// lease now and then, ONGOING polls at the same interval, anything else backs off (and
    /// may alert).
    async fn after_call(
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

    fn call_to(&self, url: String, branch_id: String, op: String, body: Vec<u8>) -> BranchCall {
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
    async fn spawn_call(
        &mut self,
        index: usize,
        terminal_failure: bool,
        reports: &tokio::sync::mpsc::UnboundedSender<Report>,
    ) -> DtmResult<()> {
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
    async fn call_now(&mut self, index: usize) -> DtmResult<CallResult> {
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

/// A branch result that stops a pass, as the error the pass returns.
fn call_error(result: CallResult) -> DtmResult<()> {
    match result {
        CallResult::Success => Ok(()),
        CallResult::Failure(text) => Err(DtmError::Failure(text)),
        CallResult::Ongoing(text) => Err(DtmError::Ongoing(text)),
        CallResult::Error(text) => Err(DtmError::Other(text)),
    }
}

/// Lower-cases the keys of a JSON object, since dtm (Go) matches JSON keys case-insensitively.
pub fn lowercase_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        ),
        other => other,
    }
}

/// Parses a `custom_data` text as an object with case-insensitive keys (`""` = all defaults).
fn parse_custom_data<T: serde::de::DeserializeOwned + Default>(text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("custom_data is not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("custom_data must be a JSON object".into());
    }
    serde_json::from_value(lowercase_keys(value)).map_err(|e| format!("custom_data: {e}"))
}
