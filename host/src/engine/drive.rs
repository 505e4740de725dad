//! Running passes (docs/engine.md §3.10): `process` runs one pass, dispatching on the
//! transaction type; `run_held` runs passes while this process holds the transaction and then
//! ends the store's hold; `run_or_spawn` and `drive` start the pass a request asks for, in the
//! background or, for `wait_result`, inline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::pass::{Pass, PassEnd};
use super::passes::{Entry, Hold};
use super::{msg, saga, schedule, tcc, unknown_gid, workflow, xa, Engine};
use crate::error::{DtmError, DtmResult};
use crate::model::{Branch, TransGlobal};

/// How often a `wait_result` request looks whether a pass on another host has ended.
const HELD_ELSEWHERE_POLL: Duration = Duration::from_millis(100);

impl Engine {
    /// Runs [`Self::run_held`] in the background (detached from the request that asked for it),
    /// in one of the engine's background slots: the request waits for a free one, up to one
    /// `RequestTimeout`, before it is answered. A burst of submits is held back there, with
    /// their leases barely started, instead of all calling branches and writing the store at
    /// once. The wait is bounded because a pass holding a slot may be waiting for a branch that
    /// itself submits to this coordinator; past it the pass runs without a slot.
    async fn spawn_held(self: &Arc<Self>, hold: Hold, global: TransGlobal, branches: Vec<Branch>) {
        let wait = Duration::from_secs(self.conf.request_timeout.max(0) as u64);
        let slot = tokio::time::timeout(wait, self.background.clone().acquire_owned()).await;
        let engine = self.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
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
    pub(super) async fn run_held(
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
        let mut pass = Pass::new(self.clone(), global, branches);
        let outcome = match pass.global.trans_type {
            Saga => saga::run(&mut pass).await,
            Msg => msg::run(&mut pass).await,
            Tcc => tcc::run(&mut pass).await,
            Xa => xa::run(&mut pass).await,
            Workflow => workflow::run(&mut pass).await,
        };
        pass.end(outcome).await
    }

    /// Runs the pass that `hold` allows, in the background, or inline for `wait_result`: then
    /// the transaction as the pass left it, or the branch result that stopped it.
    pub(super) async fn run_or_spawn(
        self: &Arc<Self>,
        hold: Hold,
        global: TransGlobal,
        branches: Vec<Branch>,
        wait: bool,
    ) -> DtmResult<Option<TransGlobal>> {
        if !wait {
            self.spawn_held(hold, global, branches).await;
            return Ok(None);
        }
        let end = self.run_held(hold, global, branches).await;
        end.outcome.map_err(unexpected_result)?;
        Ok(Some(end.global))
    }

    /// Runs a pass on existing transaction `gid` for a request, unless a pass runs already:
    /// then, without `wait`, that pass runs once more when it ends if it runs on this host (on
    /// another host, the transaction's schedule brings the next one) and the request is
    /// answered at once; with `wait`, the request waits for that pass, then runs one itself if
    /// the transaction still needs it. `None` when not waited for; else the transaction as
    /// its pass left it (after [`Self::wait_limit`], as it stands then).
    pub(super) async fn drive(
        self: &Arc<Self>,
        gid: &str,
        wait: bool,
    ) -> DtmResult<Option<TransGlobal>> {
        let give_up = Instant::now() + self.wait_limit();
        loop {
            let hold = match self.passes.enter(gid, !wait) {
                Entry::Mine(hold) => hold,
                Entry::Busy(_) if !wait => return Ok(None),
                Entry::Busy(busy) => {
                    busy.ended().await;
                    continue;
                }
            };
            if let Some((global, branches)) = self.reclaim(gid, &crate::gid::new_gid()).await? {
                return self.run_or_spawn(hold, global, branches, wait).await;
            }
            drop(hold);
            // Finished, or a pass on another host holds it.
            let stored = self
                .store
                .find_global(gid)
                .await?
                .ok_or_else(|| unknown_gid(gid))?;
            if !wait {
                return Ok(None);
            }
            if stored.status.is_finished() || Instant::now() >= give_up {
                return Ok(Some(stored));
            }
            tokio::time::sleep(HELD_ELSEWHERE_POLL).await;
        }
    }

    /// How long a `wait_result` request waits for a pass on another host: long enough for a
    /// few branch calls of that pass.
    fn wait_limit(&self) -> Duration {
        let call = u64::try_from(self.conf.request_timeout.max(1)).unwrap_or(1) + 2;
        Duration::from_secs(3 * call)
    }
}

/// The error a `wait_result` request answers when the pass stopped on a branch result.
fn unexpected_result(e: DtmError) -> DtmError {
    const HELP: &str = "your http/grpc result should be specified as in:\n\
        http://d.dtm.pub/practice/arch.html#proto\nunkown result will be retried: ";
    match e {
        DtmError::Ongoing(_) => DtmError::Ongoing("ONGOING".into()),
        DtmError::Failure(text) => DtmError::Failure(format!("{HELP}{text}")),
        DtmError::Other(text) => DtmError::Other(format!("{HELP}{text}")),
        other => other,
    }
}
