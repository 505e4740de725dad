//! 2-phase message: check back with the application once a prepared message times out, then
//! deliver every action until all succeed; a message never rolls back (docs/engine.md §1.6).

use serde::Deserialize;
use tokio::sync::mpsc;

use super::input::{parse_custom_data, CustomDataError, TransRequest, MAX_SECONDS};
use super::pass::{call_error, Pass};
use super::schedule::Touch;
use super::Engine;
use crate::call::CallResult;
use crate::error::{DtmError, DtmResult};
use crate::model::{branch_status, op, Branch, GlobalStatus, CHECK_BRANCH_ID};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MsgCustomData {
    /// Seconds after creation before the actions may run.
    delay: u64,
}

/// Checks a message's `custom_data` before anything is stored.
pub(super) fn validate(custom_data: &str) -> Result<(), CustomDataError> {
    let data: MsgCustomData = parse_custom_data(custom_data)?;
    if data.delay > MAX_SECONDS as u64 {
        return Err(CustomDataError::MsgDelay {
            delay: data.delay,
            max: MAX_SECONDS,
        });
    }
    Ok(())
}

/// The records a message request creates: one `action` per step, or one per subscriber of a
/// `topic://` step.
pub(super) async fn branches(
    engine: &Engine,
    req: &TransRequest,
    now: i64,
) -> DtmResult<Vec<Branch>> {
    let payloads = req.step_payloads()?;
    let mut branches = Vec::new();
    for (i, (step, payload)) in req.steps.iter().zip(payloads).enumerate() {
        let id = format!("{:02}", i + 1);
        let action = step.get("action").cloned().unwrap_or_default();
        let Some(topic) = action.strip_prefix("topic://") else {
            branches.push(Branch::new(&req.gid, id, op::ACTION, action, payload, now));
            continue;
        };
        let urls = engine.topic_subscribers(topic).await?;
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

pub(super) async fn run(pass: &mut Pass) -> DtmResult<()> {
    if pass.is(GlobalStatus::Prepared) && pass.timed_out() {
        check_back(pass).await?;
    }
    if !pass.is(GlobalStatus::Submitted) {
        return Ok(());
    }
    let delay = parse_custom_data::<MsgCustomData>(&pass.global.custom_data)
        .map_err(|e| DtmError::Other(e.to_string()))?
        .delay as i64;
    if delay > 0 && pass.now() < super::schedule::after_secs(pass.global.create_time, delay) {
        return pass.touch(Touch::Keep, Some(delay)).await;
    }
    let pending: Vec<usize> = (0..pass.branches.len())
        .filter(|&i| {
            pass.branches[i].op == op::ACTION && pass.branches[i].is(branch_status::PREPARED)
        })
        .collect();
    let outcome = if pass.global.options.concurrent {
        deliver_concurrently(pass, pending).await?
    } else {
        deliver_in_order(pass, pending).await?
    };
    match outcome {
        CallResult::Success => {
            pass.change_status(GlobalStatus::Succeed, Default::default())
                .await
        }
        CallResult::Ongoing(_) => Ok(()),
        other => call_error(other),
    }
}

/// Asks the application whether its local transaction committed (op `msg`, branch `00`).
async fn check_back(pass: &mut Pass) -> DtmResult<()> {
    pass.cover_call().await?;
    let call = pass.call_to(
        pass.global.query_prepared.clone(),
        CHECK_BRANCH_ID.into(),
        op::MSG.into(),
        Vec::new(),
    );
    let result = pass.engine.caller.call(&call).await;
    match result {
        CallResult::Success => {
            pass.change_status(GlobalStatus::Submitted, Default::default())
                .await
        }
        CallResult::Failure(_) => {
            pass.change_status(GlobalStatus::Failed, Default::default())
                .await
        }
        CallResult::Ongoing(_) => pass.touch(Touch::Reset, None).await,
        CallResult::Error(_) => pass.touch(Touch::Backoff, None).await,
    }
}

/// Calls the actions one at a time; stops at the first that does not succeed.
async fn deliver_in_order(pass: &mut Pass, pending: Vec<usize>) -> DtmResult<CallResult> {
    for index in pending {
        let result = pass.call_now(index).await?;
        if result != CallResult::Success {
            return Ok(result);
        }
    }
    Ok(CallResult::Success)
}

/// Calls all actions at once; the first non-success (an error before ONGOING) is the outcome.
async fn deliver_concurrently(pass: &mut Pass, pending: Vec<usize>) -> DtmResult<CallResult> {
    let (tx, mut reports) = mpsc::unbounded_channel();
    for &index in &pending {
        pass.spawn_call(index, false, &tx).await?;
    }
    drop(tx);
    let mut outcome = CallResult::Success;
    loop {
        pass.write_unsaved_now();
        let Some(report) = reports.recv().await else {
            break;
        };
        pass.record(report.outcome);
        pass.after_call(report.index, &report.result, false).await?;
        outcome = match (outcome, report.result) {
            (CallResult::Success, r)
            | (CallResult::Ongoing(_), r @ (CallResult::Failure(_) | CallResult::Error(_))) => r,
            (kept, _) => kept,
        };
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    #[test]
    fn delay_is_read_case_insensitively() {
        let d: super::MsgCustomData = super::parse_custom_data(r#"{"Delay":10}"#).unwrap();
        assert_eq!(d.delay, 10);
        assert!(super::validate(r#"{"delay":-1}"#).is_err());
    }
}
