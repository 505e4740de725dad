//! Workflow: the client SDK runs the workflow and records each step's definite outcome; the
//! coordinator stores that progress and, when a workflow stops half-way, calls the application
//! back so it resumes (docs/engine.md §1.9). The coordinator never sets a workflow's status itself.

use std::sync::Arc;

use base64::Engine as _;
use prost::Message;
use serde::Deserialize;

use super::input::{check_id, parse_custom_data, BranchRequest, CustomDataError, TransRequest};
use super::pass::{call_error, Pass};
use super::Engine;
use crate::call::goes_over_http;
use crate::error::{DtmError, DtmResult};
use crate::model::{Branch, GlobalStatus, TransGlobal, TransType, CHECK_BRANCH_ID};
use crate::proto::workflow::WorkflowData;
use crate::store::{StatusChange, StoreError};

/// A workflow's `custom_data`: its registered name and its input (base64, as Go encodes bytes).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WorkflowCustomData {
    name: String,
    data: String,
}

impl WorkflowCustomData {
    fn parse(text: &str) -> Result<(String, Vec<u8>), CustomDataError> {
        let parsed: Self = parse_custom_data(text)?;
        if parsed.name.is_empty() {
            return Err(CustomDataError::WorkflowName);
        }
        let input = base64::engine::general_purpose::STANDARD
            .decode(&parsed.data)
            .map_err(CustomDataError::WorkflowData)?;
        Ok((parsed.name, input))
    }
}

/// Checks a workflow's `custom_data` before anything is stored.
pub(super) fn validate(custom_data: &str) -> Result<(), CustomDataError> {
    WorkflowCustomData::parse(custom_data).map(|_| ())
}

impl Engine {
    /// Creates the workflow if it is new; either way returns it with its recorded progress.
    pub async fn prepare_workflow(
        self: &Arc<Self>,
        req: TransRequest,
    ) -> DtmResult<(TransGlobal, Vec<Branch>)> {
        if req.trans_type != TransType::Workflow.as_str() {
            return Err(DtmError::InvalidInput(format!(
                "prepareWorkflow needs trans_type 'workflow', got '{}'",
                req.trans_type
            )));
        }
        let (global, _) = self
            .build(&req, TransType::Workflow, GlobalStatus::Prepared)
            .await?;
        match self.store.save_new(&global, &[]).await {
            Ok(()) => {
                tracing::info!(
                    gid = global.gid,
                    trans_type = "workflow",
                    to = "prepared",
                    "transaction created"
                );
                Ok((global, Vec::new()))
            }
            Err(StoreError::UniqueConflict) => {
                let stored = self
                    .store
                    .find_global(&req.gid)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let progress = self.store.find_branches(&req.gid).await?;
                Ok((stored, progress))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The client's final word: `req_extra.status` is `succeed` or `failed`.
    pub(super) async fn submit_workflow(&self, req: TransRequest) -> DtmResult<()> {
        let extra = |key: &str| req.req_extra.get(key).filter(|v| !v.is_empty()).cloned();
        let to = match extra("status").as_deref() {
            Some("succeed") => GlobalStatus::Succeed,
            Some("failed") => GlobalStatus::Failed,
            other => {
                return Err(DtmError::BadRequest(format!(
                    "workflow submit needs req_extra.status 'succeed' or 'failed', got '{}'",
                    other.unwrap_or_default()
                )))
            }
        };
        let mut stored = self
            .store
            .find_global(&req.gid)
            .await?
            .ok_or(StoreError::NotFound)?;
        if stored.status != GlobalStatus::Prepared {
            return Err(StoreError::NotFound.into());
        }
        let change = StatusChange {
            rollback_reason: extra("rollback_reason"),
            result: extra("result"),
            ..Default::default()
        };
        self.change_status(&mut stored, to, change).await
    }

    /// Records one step outcome (`op`, `status` from the request's data) while the workflow is
    /// prepared; a second record of the same (branch_id, op) is refused.
    pub(super) async fn register_progress(&self, req: BranchRequest) -> DtmResult<()> {
        check_id("gid", &req.gid)?;
        check_id("branch_id", &req.branch_id)?;
        let field = |key: &str| req.data.get(key).cloned().unwrap_or_default();
        let (op, status) = (field("op"), field("status"));
        if op.is_empty() || status.is_empty() {
            return Err(DtmError::BadRequest(
                "workflow progress needs op and status".into(),
            ));
        }
        let mut progress = Branch::new(
            &req.gid,
            req.branch_id.clone(),
            &op,
            String::new(),
            req.payload,
            self.now(),
        );
        progress.status = status;
        progress.finish_time = Some(progress.create_time);
        self.append_or_explain(&req.gid, &[progress]).await
    }
}

/// Calls the application back (branch `00`, op = the workflow's name, body = its input) so it
/// resumes the workflow; the call's outcome only decides whether the pass reports an error.
pub(super) async fn run(pass: &mut Pass) -> DtmResult<()> {
    if pass.global.status.is_finished() {
        return Ok(());
    }
    let (name, input) = WorkflowCustomData::parse(&pass.global.custom_data)
        .map_err(|e| DtmError::Other(e.to_string()))?;
    let url = pass.global.query_prepared.clone();
    let body = if goes_over_http(&url, pass.global.protocol) {
        input
    } else {
        WorkflowData { data: input }.encode_to_vec()
    };
    pass.cover_call().await?;
    let call = pass.call_to(url, CHECK_BRANCH_ID.into(), name, body);
    let result = pass.engine.caller.call(&call).await;
    call_error(result)
}
