//! What each API request does (docs/engine.md §2.1): validate, build the records, store them, and
//! start a pass. Every check that can refuse a request runs before anything is written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::passes::{Entry, Hold};
use super::{msg, saga, schedule, workflow, Engine};
use crate::error::{DtmError, DtmResult};
use crate::model::{
    op, Branch, GlobalStatus, KvEntry, Protocol, ScanFilter, TransGlobal, TransOptions, TransType,
};
use crate::store::{Page, StatusChange, StoreError};

/// How often a `wait_result` request looks whether a pass on another host has ended.
const HELD_ELSEWHERE_POLL: Duration = Duration::from_millis(100);
/// Longest gid or branch id accepted (the SQL stores' column width).
const MAX_ID_LEN: usize = 128;
/// Longest duration, in seconds, a request may ask for (ten years): keeps schedule arithmetic
/// far from overflow.
pub(super) const MAX_SECONDS: i64 = 10 * 365 * 24 * 3600;

/// A prepare / submit / abort request, as every edge hands it to the engine.
#[derive(Debug, Clone, Default)]
pub struct TransRequest {
    pub gid: String,
    pub trans_type: String,
    /// saga: `action` and `compensate` per step; msg: `action`. A legacy `data` carries the payload.
    pub steps: Vec<BTreeMap<String, String>>,
    pub payloads: Vec<Vec<u8>>,
    pub custom_data: String,
    pub query_prepared: String,
    pub protocol: Option<Protocol>,
    pub options: TransOptions,
    pub rollback_reason: String,
    /// workflow submit: `status`, `rollback_reason`, `result`.
    pub req_extra: BTreeMap<String, String>,
}

/// A registerBranch request: `data` holds tcc `confirm`/`cancel` or xa `url`.
#[derive(Debug, Clone, Default)]
pub struct BranchRequest {
    pub gid: String,
    pub trans_type: String,
    pub branch_id: String,
    pub payload: Vec<u8>,
    pub data: BTreeMap<String, String>,
}

pub(super) fn check_id(what: &str, id: &str) -> DtmResult<()> {
    if id.is_empty() {
        return Err(DtmError::BadRequest(format!("{what} is empty")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(DtmError::BadRequest(format!(
            "{what} is longer than {MAX_ID_LEN} bytes"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(DtmError::BadRequest(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

/// Durations within [0, MAX_SECONDS], counts not negative, and header names and values that
/// can go on the wire.
fn check_options(o: &TransOptions) -> DtmResult<()> {
    for (name, value) in [
        ("timeout_to_fail", o.timeout_to_fail),
        ("request_timeout", o.request_timeout),
        ("retry_interval", o.retry_interval),
    ] {
        if !(0..=MAX_SECONDS).contains(&value) {
            return Err(DtmError::BadRequest(format!(
                "{name} must be between 0 and {MAX_SECONDS} seconds, got {value}"
            )));
        }
    }
    if o.retry_limit < 0 {
        return Err(DtmError::BadRequest(format!(
            "retry_limit must not be negative, got {}",
            o.retry_limit
        )));
    }
    for (name, value) in &o.branch_headers {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let valid_value = value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if !valid_name || !valid_value {
            return Err(DtmError::BadRequest(format!(
                "branch header '{name}' is not a valid HTTP header"
            )));
        }
    }
    Ok(())
}

fn parse_trans_type(text: &str) -> DtmResult<TransType> {
    text.parse().map_err(|()| {
        DtmError::InvalidInput(format!(
            "unknown trans_type '{text}': expected saga, msg, tcc, xa or workflow"
        ))
    })
}

fn unknown_gid(gid: &str) -> DtmError {
    DtmError::Internal(format!("no TransGlobal with gid: {gid} found"))
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

impl Engine {
    pub fn new_gid(&self) -> String {
        crate::gid::new_gid()
    }

    pub async fn prepare(self: &Arc<Self>, req: TransRequest) -> DtmResult<()> {
        let trans_type = parse_trans_type(&req.trans_type)?;
        if trans_type == TransType::Saga {
            return Err(DtmError::failure("a saga cannot be prepared; submit it"));
        }
        let (global, branches) = self.build(&req, trans_type, GlobalStatus::Prepared).await?;
        match self.store.save_new(&global, &branches).await {
            Ok(()) => {
                tracing::info!(gid = global.gid, trans_type = %trans_type, to = "prepared", "transaction created");
                Ok(())
            }
            Err(StoreError::UniqueConflict) => {
                let stored = self
                    .store
                    .find_global(&req.gid)
                    .await?
                    .ok_or_else(|| unknown_gid(&req.gid))?;
                if stored.status == GlobalStatus::Prepared {
                    return Ok(());
                }
                Err(DtmError::failure(format!(
                    "current status '{}', cannot prepare.",
                    stored.status
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn submit(self: &Arc<Self>, req: TransRequest) -> DtmResult<()> {
        let trans_type = parse_trans_type(&req.trans_type)?;
        if trans_type == TransType::Workflow {
            return self.submit_workflow(req).await;
        }
        let (global, branches) = self
            .build(&req, trans_type, GlobalStatus::Submitted)
            .await?;
        let wait = req.options.wait_result;
        match self.store.save_new(&global, &branches).await {
            Ok(()) => {
                tracing::info!(gid = global.gid, trans_type = %trans_type, to = "submitted", "transaction created");
                // The new record is this pass's: its owner token and first lease came with it.
                let hold = self.passes.hold(&global.gid).await;
                return submitted_answer(self.run_or_spawn(hold, global, branches, wait).await?);
            }
            Err(StoreError::UniqueConflict) => {}
            Err(e) => return Err(e.into()),
        }
        loop {
            let mut stored = self
                .store
                .find_global(&req.gid)
                .await?
                .ok_or_else(|| unknown_gid(&req.gid))?;
            match stored.status {
                GlobalStatus::Prepared => {
                    // What the client sends at submit (e.g. a msg's delay) wins over prepare's
                    // copy.
                    let custom_data = (!req.custom_data.is_empty()
                        && req.custom_data != stored.custom_data)
                        .then(|| req.custom_data.clone());
                    let change = StatusChange {
                        custom_data,
                        ..Default::default()
                    };
                    match self
                        .change_status(&mut stored, GlobalStatus::Submitted, change)
                        .await
                    {
                        Ok(()) => break,
                        // Another request moved it on meanwhile: answer for where it is now.
                        Err(DtmError::Store(StoreError::NotFound)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                // Submitted again: driven again, unless a pass is under way.
                GlobalStatus::Submitted => break,
                status => {
                    return Err(DtmError::failure(format!(
                        "current status '{status}', cannot sumbmit."
                    )))
                }
            }
        }
        submitted_answer(self.drive(&req.gid, wait).await?)
    }

    pub async fn abort(self: &Arc<Self>, req: TransRequest) -> DtmResult<()> {
        let wait = loop {
            let mut stored = self
                .store
                .find_global(&req.gid)
                .await?
                .ok_or_else(|| unknown_gid(&req.gid))?;
            let (to, change) =
                if stored.trans_type == TransType::Msg && stored.status == GlobalStatus::Prepared {
                    (GlobalStatus::Failed, StatusChange::default())
                } else {
                    let abortable_type = matches!(req.trans_type.as_str(), "tcc" | "xa");
                    let abortable_status = matches!(
                        stored.status,
                        GlobalStatus::Prepared | GlobalStatus::Aborting
                    );
                    if !abortable_type || !abortable_status {
                        return Err(DtmError::failure(format!(
                            "trans type: '{}' current status '{}', cannot abort.",
                            stored.trans_type, stored.status
                        )));
                    }
                    if stored.status == GlobalStatus::Aborting {
                        break stored.options.wait_result;
                    }
                    let change = StatusChange {
                        rollback_reason: (!req.rollback_reason.is_empty())
                            .then(|| req.rollback_reason.clone()),
                        ..Default::default()
                    };
                    (GlobalStatus::Aborting, change)
                };
            match self.change_status(&mut stored, to, change).await {
                // A prepared msg ends here: no branch was called.
                Ok(()) if to == GlobalStatus::Failed => return Ok(()),
                Ok(()) => break stored.options.wait_result,
                // Another request moved it on meanwhile: answer for where it is now.
                Err(DtmError::Store(StoreError::NotFound)) => continue,
                Err(e) => return Err(e),
            }
        };
        self.drive(&req.gid, wait).await.map(drop)
    }

    pub async fn register_branch(&self, req: BranchRequest) -> DtmResult<()> {
        // (op, the data key holding its URL), in storage order.
        let ops = match req.trans_type.as_str() {
            "tcc" => [(op::CANCEL, "cancel"), (op::CONFIRM, "confirm")],
            "xa" => [(op::ROLLBACK, "url"), (op::COMMIT, "url")],
            "workflow" => return self.register_progress(req).await,
            other => return Err(DtmError::Other(format!("unknow trans type: {other}"))),
        };
        check_id("gid", &req.gid)?;
        check_id("branch_id", &req.branch_id)?;
        let now = self.now();
        let branches: Vec<Branch> = ops
            .into_iter()
            .map(|(op, key)| {
                let url = req.data.get(key).cloned().unwrap_or_default();
                Branch::new(
                    &req.gid,
                    req.branch_id.clone(),
                    op,
                    url,
                    req.payload.clone(),
                    now,
                )
            })
            .collect();
        self.append_or_explain(&req.gid, &branches).await
    }

    /// Appends branch records while the transaction is prepared, in dtm's words when it is not.
    pub(super) async fn append_or_explain(&self, gid: &str, branches: &[Branch]) -> DtmResult<()> {
        match self
            .store
            .append_branches(gid, GlobalStatus::Prepared, branches)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(DtmError::failure(format!(
                "no trans with gid: {gid} status: prepared found"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn force_stop(&self, gid: &str) -> DtmResult<()> {
        let mut stored = self
            .store
            .find_global(gid)
            .await?
            .ok_or_else(|| unknown_gid(gid))?;
        if stored.status.is_finished() {
            return Err(DtmError::Failure(format!(
                "global transaction force stop error. status: {}. error: FAILURE",
                stored.status
            )));
        }
        self.change_status(&mut stored, GlobalStatus::Failed, StatusChange::default())
            .await
    }

    pub async fn reset_next_cron_time(&self, gid: &str) -> DtmResult<()> {
        match self.store.reset_cron_time(gid, self.now()).await {
            Err(StoreError::NotFound) => Err(unknown_gid(gid)),
            other => Ok(other?),
        }
    }

    /// Makes up to `limit` transactions whose next look is more than `timeout_secs` away due
    /// now (default timeout: 3 × TimeoutToFail). Returns (changed, has_remaining).
    pub async fn reset_cron_times(
        &self,
        timeout_secs: Option<i64>,
        limit: usize,
    ) -> DtmResult<(usize, bool)> {
        let timeout = timeout_secs.unwrap_or(3 * self.conf.timeout_to_fail);
        let now = self.now();
        Ok(self
            .store
            .reset_cron_times(schedule::after_secs(now, timeout), limit, now)
            .await?)
    }

    pub async fn query(&self, gid: &str) -> DtmResult<(Option<TransGlobal>, Vec<Branch>)> {
        if gid.is_empty() {
            return Err(DtmError::Other("no gid specified".into()));
        }
        let global = self.store.find_global(gid).await?;
        let branches = self.store.find_branches(gid).await?;
        Ok((global, branches))
    }

    pub async fn find(&self, gid: &str) -> DtmResult<Option<TransGlobal>> {
        Ok(self.store.find_global(gid).await?)
    }

    pub async fn list(
        &self,
        position: &str,
        limit: usize,
        filter: &ScanFilter,
    ) -> DtmResult<Page<TransGlobal>> {
        Ok(self.store.scan_globals(position, limit, filter).await?)
    }

    pub async fn scan_kv(
        &self,
        cat: &str,
        position: &str,
        limit: usize,
    ) -> DtmResult<Page<KvEntry>> {
        Ok(self.store.scan_kv(cat, position, limit).await?)
    }

    pub async fn query_kv(&self, cat: &str, key: &str) -> DtmResult<Vec<KvEntry>> {
        Ok(self.store.find_kv(cat, key).await?)
    }

    /// Runs the pass that `hold` allows, in the background, or inline for `wait_result`: then
    /// the transaction as the pass left it, or the branch result that stopped it.
    async fn run_or_spawn(
        self: &Arc<Self>,
        hold: Hold,
        global: TransGlobal,
        branches: Vec<Branch>,
        wait: bool,
    ) -> DtmResult<Option<TransGlobal>> {
        if !wait {
            self.spawn_held(hold, global, branches);
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
    async fn drive(self: &Arc<Self>, gid: &str, wait: bool) -> DtmResult<Option<TransGlobal>> {
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

    /// Builds the global record and the branch records a request creates.
    pub(super) async fn build(
        &self,
        req: &TransRequest,
        trans_type: TransType,
        status: GlobalStatus,
    ) -> DtmResult<(TransGlobal, Vec<Branch>)> {
        check_id("gid", &req.gid)?;
        let protocol = req.protocol.unwrap_or(Protocol::Http);
        check_options(&req.options)?;
        let now = self.now();
        let branches = match trans_type {
            TransType::Saga => {
                saga::validate(&req.custom_data, req.steps.len()).map_err(DtmError::BadRequest)?;
                saga_branches(req, now)?
            }
            TransType::Workflow => {
                workflow::validate(&req.custom_data).map_err(DtmError::BadRequest)?;
                self.caller
                    .check_url(&req.query_prepared, protocol)
                    .map_err(DtmError::BadRequest)?;
                Vec::new()
            }
            TransType::Msg => {
                msg::validate(&req.custom_data).map_err(DtmError::BadRequest)?;
                self.caller
                    .check_url(&req.query_prepared, protocol)
                    .map_err(DtmError::BadRequest)?;
                self.msg_branches(req, now).await?
            }
            _ => Vec::new(),
        };
        for b in &branches {
            self.caller
                .check_url(&b.url, protocol)
                .map_err(DtmError::BadRequest)?;
        }
        let interval = schedule::base_interval(
            req.options.retry_interval,
            req.options.timeout_to_fail,
            &self.conf,
        );
        let global = TransGlobal {
            id: 0,
            gid: req.gid.clone(),
            trans_type,
            status,
            query_prepared: req.query_prepared.clone(),
            protocol,
            create_time: now,
            update_time: now,
            finish_time: None,
            rollback_time: None,
            options: req.options.clone(),
            custom_data: req.custom_data.clone(),
            next_cron_interval: interval,
            next_cron_time: schedule::after_secs(now, interval),
            // A submitted transaction is created held by the pass that follows at once; a
            // prepared one waits for its submit, abort or timeout.
            owner: if status == GlobalStatus::Submitted {
                crate::gid::new_gid()
            } else {
                String::new()
            },
            ext_data: String::new(),
            result: String::new(),
            rollback_reason: String::new(),
        };
        Ok((global, branches))
    }

    async fn msg_branches(&self, req: &TransRequest, now: i64) -> DtmResult<Vec<Branch>> {
        let payloads = step_payloads(req)?;
        let mut branches = Vec::new();
        for (i, (step, payload)) in req.steps.iter().zip(payloads).enumerate() {
            let id = format!("{:02}", i + 1);
            let action = step.get("action").cloned().unwrap_or_default();
            let Some(topic) = action.strip_prefix("topic://") else {
                branches.push(Branch::new(&req.gid, id, op::ACTION, action, payload, now));
                continue;
            };
            let urls = self.topic_subscribers(topic).await?;
            let fan_out = urls.len() > 1;
            for (k, url) in urls.into_iter().enumerate() {
                let branch_id = if fan_out {
                    format!("{id}-{:02}", k + 1)
                } else {
                    id.clone()
                };
                branches.push(Branch::new(
                    &req.gid,
                    branch_id,
                    op::ACTION,
                    url,
                    payload.clone(),
                    now,
                ));
            }
        }
        Ok(branches)
    }
}

/// Submit's answer: with `wait_result`, success only if the transaction succeeded.
fn submitted_answer(end: Option<TransGlobal>) -> DtmResult<()> {
    match end {
        Some(end) if end.status != GlobalStatus::Succeed && !end.rollback_reason.is_empty() => {
            Err(DtmError::failure(end.rollback_reason))
        }
        Some(end) if end.status != GlobalStatus::Succeed => Err(DtmError::Failure(
            "wait result not return success: FAILURE".into(),
        )),
        _ => Ok(()),
    }
}

/// One payload per step: `payloads` first, then the legacy non-empty `steps[i].data`.
fn step_payloads(req: &TransRequest) -> DtmResult<Vec<Vec<u8>>> {
    let mut payloads = req.payloads.clone();
    payloads.extend(
        req.steps
            .iter()
            .filter_map(|s| s.get("data"))
            .filter(|d| !d.is_empty())
            .map(|d| d.clone().into_bytes()),
    );
    if payloads.len() < req.steps.len() {
        return Err(DtmError::Internal(format!(
            "{} steps but only {} payloads: give one payload per step",
            req.steps.len(),
            payloads.len()
        )));
    }
    payloads.truncate(req.steps.len());
    Ok(payloads)
}

fn saga_branches(req: &TransRequest, now: i64) -> DtmResult<Vec<Branch>> {
    let payloads = step_payloads(req)?;
    let mut branches = Vec::with_capacity(req.steps.len() * 2);
    for (i, (step, payload)) in req.steps.iter().zip(payloads).enumerate() {
        let id = format!("{:02}", i + 1);
        for op in [op::COMPENSATE, op::ACTION] {
            let url = step.get(op).cloned().unwrap_or_default();
            branches.push(Branch::new(
                &req.gid,
                id.clone(),
                op,
                url,
                payload.clone(),
                now,
            ));
        }
    }
    Ok(branches)
}
