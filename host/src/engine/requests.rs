//! What each API request does (docs/engine.md §2.1): validate, build the records (each type's
//! in its own file: `saga::branches`, `msg::branches`), store them, and start a pass
//! (`drive.rs`). Every check that can refuse a request runs before anything is written.

use std::sync::Arc;

use super::input::{check_id, BranchRequest, TransRequest, MAX_SECONDS};
use super::{msg, saga, schedule, unknown_gid, workflow, Engine};
use crate::error::{DtmError, DtmResult};
use crate::model::{op, Branch, GlobalStatus, Protocol, TransGlobal, TransOptions, TransType};
use crate::store::{StatusChange, StoreError};

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
                saga::validate(&req.custom_data, req.steps.len())
                    .map_err(|e| DtmError::BadRequest(e.to_string()))?;
                saga::branches(req, now)?
            }
            TransType::Workflow => {
                workflow::validate(&req.custom_data)
                    .map_err(|e| DtmError::BadRequest(e.to_string()))?;
                self.caller
                    .check_url(&req.query_prepared, protocol)
                    .map_err(|e| DtmError::BadRequest(e.to_string()))?;
                Vec::new()
            }
            TransType::Msg => {
                msg::validate(&req.custom_data).map_err(|e| DtmError::BadRequest(e.to_string()))?;
                self.caller
                    .check_url(&req.query_prepared, protocol)
                    .map_err(|e| DtmError::BadRequest(e.to_string()))?;
                msg::branches(self, req, now).await?
            }
            _ => Vec::new(),
        };
        for b in &branches {
            self.caller
                .check_url(&b.url, protocol)
                .map_err(|e| DtmError::BadRequest(e.to_string()))?;
        }
        let interval = schedule::base_interval(
            req.options.retry_interval,
            req.options.timeout_to_fail,
            &self.conf,
        );
        let mut global = TransGlobal {
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
        if status == GlobalStatus::Submitted {
            global.next_cron_time = schedule::first_lease(&global, &self.conf, now);
        }
        Ok((global, branches))
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
