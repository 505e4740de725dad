//! What the edges hand the engine: the requests, and the checks and parsing every transaction
//! type shares (ids, durations, `custom_data`, step payloads). Below every other engine file.

use std::collections::BTreeMap;

use crate::error::{DtmError, DtmResult};
use crate::model::{Protocol, TransOptions};

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

impl TransRequest {
    /// One payload per step: `payloads` first, then the legacy non-empty `steps[i].data`.
    pub(super) fn step_payloads(&self) -> DtmResult<Vec<Vec<u8>>> {
        let mut payloads = self.payloads.clone();
        payloads.extend(
            self.steps
                .iter()
                .filter_map(|s| s.get("data"))
                .filter(|d| !d.is_empty())
                .map(|d| d.clone().into_bytes()),
        );
        if payloads.len() < self.steps.len() {
            return Err(DtmError::Internal(format!(
                "{} steps but only {} payloads: give one payload per step",
                self.steps.len(),
                payloads.len()
            )));
        }
        payloads.truncate(self.steps.len());
        Ok(payloads)
    }
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

/// Why a transaction's `custom_data` is refused: before anything is stored, the request's
/// message (`DtmError::BadRequest`); when a pass reads it back, the pass's error.
#[derive(Debug, thiserror::Error)]
pub enum CustomDataError {
    #[error("custom_data is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("custom_data must be a JSON object")]
    NotObject,
    /// A key of the wrong type for the transaction type.
    #[error("custom_data: {0}")]
    Field(serde_json::Error),
    /// saga: an `orders` key that is not a step.
    #[error("custom_data orders: '{step}' is not a step index below {steps}")]
    OrderStep { step: String, steps: usize },
    /// saga: an `orders` prerequisite that is not a step.
    #[error("custom_data orders: step {step} waits for step {prerequisite}, which does not exist")]
    OrderPrerequisite { step: usize, prerequisite: usize },
    #[error("workflow custom_data needs a name")]
    WorkflowName,
    #[error("workflow custom_data data is not base64: {0}")]
    WorkflowData(base64::DecodeError),
    /// msg: a `delay` longer than any request may ask for.
    #[error("custom_data delay {delay} is more than {max} seconds")]
    MsgDelay { delay: u64, max: i64 },
}

/// Parses a `custom_data` text as an object with case-insensitive keys (`""` = all defaults).
pub(super) fn parse_custom_data<T: serde::de::DeserializeOwned + Default>(
    text: &str,
) -> Result<T, CustomDataError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(CustomDataError::NotJson)?;
    if !value.is_object() {
        return Err(CustomDataError::NotObject);
    }
    serde_json::from_value(lowercase_keys(value)).map_err(CustomDataError::Field)
}
