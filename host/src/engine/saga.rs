//! Saga: actions forward, compensations backward (docs/engine.md §1.5.3).
//!
//! Records are stored as `[compensate, action]` per step, so record `2k` is step k's
//! compensation and `2k + 1` its action. Sequential sagas run one step at a time; concurrent
//! ones run every action whose `orders` prerequisites succeeded, and compensate in reverse
//! dependency order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::input::{parse_custom_data, CustomDataError, TransRequest};
use super::pass::{Pass, Report};
use crate::call::CallResult;
use crate::error::DtmResult;
use crate::model::{branch_status::*, op, Branch, GlobalStatus};

/// The saga options carried in `custom_data`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SagaCustomData {
    concurrent: bool,
    /// step → steps whose action must have succeeded first (0-based).
    orders: BTreeMap<String, Vec<usize>>,
}

/// Who may run when, derived from `custom_data`.
struct Plan {
    concurrent: bool,
    /// step → its prerequisite steps.
    prerequisites: Vec<Vec<usize>>,
    /// step → the steps that have it as a prerequisite.
    dependents: Vec<Vec<usize>>,
}

/// Checks a saga's `custom_data` before anything is stored.
pub(super) fn validate(custom_data: &str, steps: usize) -> Result<(), CustomDataError> {
    Plan::parse(custom_data, steps).map(|_| ())
}

/// The records a saga request creates: `[compensate, action]` per step.
pub(super) fn branches(req: &TransRequest, now: i64) -> DtmResult<Vec<Branch>> {
    let payloads = req.step_payloads()?;
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

impl Plan {
    fn parse(custom_data: &str, steps: usize) -> Result<Self, CustomDataError> {
        let data: SagaCustomData = parse_custom_data(custom_data)?;
        let mut prerequisites = vec![Vec::new(); steps];
        let mut dependents = vec![Vec::new(); steps];
        for (step, before) in data.orders {
            let step: usize = match step.parse().ok().filter(|s| *s < steps) {
                Some(index) => index,
                None => return Err(CustomDataError::OrderStep { step, steps }),
            };
            for &p in &before {
                if p >= steps {
                    return Err(CustomDataError::OrderPrerequisite {
                        step,
                        prerequisite: p,
                    });
                }
                dependents[p].push(step);
            }
            prerequisites[step] = before;
        }
        Ok(Self {
            concurrent: data.concurrent,
            prerequisites,
            dependents,
        })
    }

    /// Whether action record `j` may start, given the statuses `st`.
    fn action_may_run(&self, j: usize, st: &[String]) -> bool {
        let sequential_ok = self.concurrent || j < 2 || st[j - 2] == SUCCEED;
        sequential_ok
            && self.prerequisites[j / 2]
                .iter()
                .all(|p| st[2 * p + 1] == SUCCEED)
    }

    /// Compensation record `i` is done, or has nothing to undo.
    fn rolled_back(i: usize, st: &[String]) -> bool {
        st[i] == SUCCEED || st[i + 1] == PREPARED
    }

    fn compensation_may_run(&self, i: usize, st: &[String]) -> bool {
        let later_done = self.concurrent || i + 2 >= st.len() || Self::rolled_back(i + 2, st);
        !Self::rolled_back(i, st)
            && later_done
            && self.dependents[i / 2]
                .iter()
                .all(|d| Self::rolled_back(2 * d, st))
    }
}

/// Waits for the next report until `deadline`, at most 3 s at a time (dtm's pace).
async fn next_report(
    reports: &mut mpsc::UnboundedReceiver<Report>,
    deadline: Instant,
) -> Option<Report> {
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(3));
    tokio::time::timeout(wait, reports.recv())
        .await
        .ok()
        .flatten()
}

pub(super) async fn run(pass: &mut Pass) -> DtmResult<()> {
    if pass.is(GlobalStatus::Submitted) && pass.timed_out() {
        pass.abort_timed_out().await?;
    }
    let n = pass.branches.len();
    let plan = Plan::parse(&pass.global.custom_data, n / 2)
        .map_err(|e| crate::error::DtmError::Other(e.to_string()))?;
    let mut st: Vec<String> = pass.branches.iter().map(|b| b.status.clone()).collect();
    let mut started = vec![false; n];
    let deadline = pass.deadline();
    let (tx, mut reports) = mpsc::unbounded_channel();
    let actions = || (1..n).step_by(2);

    let to_start = actions().filter(|&j| st[j] == PREPARED).count();
    let mut failed = actions().filter(|&j| st[j] == FAILED).count();
    let mut succeeded = 0;
    let mut actions_running = 0;
    let mut retries = 0;
    let mut failure_reason = None;
    let retry_limit = pass.global.options.retry_limit;

    while Instant::now() < deadline
        && pass.is(GlobalStatus::Submitted)
        && !pass.timed_out()
        && failed == 0
    {
        for j in actions() {
            if st[j] == PREPARED && !started[j] && plan.action_may_run(j, &st) {
                started[j] = true;
                actions_running += 1;
                pass.spawn_call(j, true, &tx).await?;
            }
        }
        if actions_running == 0 {
            break;
        }
        pass.write_unsaved_now();
        let Some(report) = next_report(&mut reports, deadline).await else {
            continue;
        };
        actions_running -= 1;
        pass.record(report.outcome);
        pass.after_call(report.index, &report.result, true).await?;
        let j = report.index;
        match report.result {
            CallResult::Success => {
                st[j] = SUCCEED.into();
                succeeded += 1;
            }
            CallResult::Failure(detail) => {
                st[j] = FAILED.into();
                failed += 1;
                failure_reason = Some(format!(
                    "url:{} return failed: {detail}",
                    pass.branches[j].url
                ));
            }
            CallResult::Ongoing(_) | CallResult::Error(_) if retry_limit > 0 => {
                if retries < retry_limit {
                    retries += 1;
                    actions_running += 1;
                    pass.spawn_call(j, true, &tx).await?;
                } else {
                    pass.abort_with(format!(
                        "RetryCount is greater than RetryLimit, RetryLimit: {retry_limit}"
                    ))
                    .await?;
                }
            }
            CallResult::Ongoing(_) | CallResult::Error(_) => {}
        }
    }

    if pass.is(GlobalStatus::Submitted) && failed == 0 && succeeded == to_start {
        return pass
            .change_status(GlobalStatus::Succeed, Default::default())
            .await;
    }
    if pass.is(GlobalStatus::Submitted) && failed > 0 {
        let reason = failure_reason.unwrap_or_else(|| "fail message lost".into());
        pass.abort_with(reason).await?;
    }
    if pass.is(GlobalStatus::Submitted) && pass.timed_out() {
        pass.abort_timed_out().await?;
    }
    if !pass.is(GlobalStatus::Aborting) {
        return Ok(());
    }

    // Whatever may have run, or may still be running, has to be undone.
    for j in actions() {
        if st[j] == PREPARED && plan.action_may_run(j, &st) {
            started[j] = true;
        }
    }
    for j in actions() {
        if started[j] && st[j] == PREPARED {
            st[j] = SUCCEED.into();
        }
    }
    let compensations = || (0..n).step_by(2).rev();
    let to_compensate = compensations()
        .filter(|&i| st[i] != SUCCEED && st[i + 1] != PREPARED)
        .count();
    let mut compensated = 0;
    let mut compensations_running = 0;
    while Instant::now() < deadline && pass.is(GlobalStatus::Aborting) {
        for i in compensations() {
            if st[i] == PREPARED && !started[i] && plan.compensation_may_run(i, &st) {
                started[i] = true;
                compensations_running += 1;
                pass.spawn_call(i, false, &tx).await?;
            }
        }
        if compensations_running == 0 {
            break;
        }
        pass.write_unsaved_now();
        let Some(report) = next_report(&mut reports, deadline).await else {
            continue;
        };
        if report.index % 2 == 1 {
            // A late action result: already written by its task, and already counted as
            // possibly done above.
            continue;
        }
        compensations_running -= 1;
        pass.record(report.outcome);
        pass.after_call(report.index, &report.result, false).await?;
        if report.result == CallResult::Success {
            st[report.index] = SUCCEED.into();
            compensated += 1;
        }
    }
    if pass.is(GlobalStatus::Aborting) && compensated == to_compensate {
        pass.change_status(GlobalStatus::Failed, Default::default())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sequential_actions_wait_for_the_previous_step() {
        let plan = Plan::parse("", 2).unwrap();
        let s = st(&[PREPARED, PREPARED, PREPARED, PREPARED]);
        assert!(plan.action_may_run(1, &s));
        assert!(!plan.action_may_run(3, &s));
        let s = st(&[PREPARED, SUCCEED, PREPARED, PREPARED]);
        assert!(plan.action_may_run(3, &s));
    }

    #[test]
    fn sequential_compensation_runs_in_reverse() {
        let plan = Plan::parse("", 2).unwrap();
        let s = st(&[PREPARED, SUCCEED, PREPARED, FAILED]);
        assert!(
            plan.compensation_may_run(2, &s),
            "the failed step is compensated first"
        );
        assert!(!plan.compensation_may_run(0, &s));
        let s = st(&[PREPARED, SUCCEED, SUCCEED, FAILED]);
        assert!(plan.compensation_may_run(0, &s));
    }

    #[test]
    fn concurrent_orders_gate_actions_and_compensations() {
        let plan = Plan::parse(r#"{"concurrent":true,"orders":{"1":[0]}}"#, 2).unwrap();
        let s = st(&[PREPARED, PREPARED, PREPARED, PREPARED]);
        assert!(plan.action_may_run(1, &s));
        assert!(!plan.action_may_run(3, &s));
        let s = st(&[PREPARED, SUCCEED, PREPARED, FAILED]);
        assert!(
            !plan.compensation_may_run(0, &s),
            "step 0 waits for its dependent"
        );
        assert!(plan.compensation_may_run(2, &s));
    }

    #[test]
    fn custom_data_keys_are_case_insensitive_and_checked() {
        assert!(Plan::parse(r#"{"Concurrent":true}"#, 1).unwrap().concurrent);
        assert!(Plan::parse(r#"{"orders":{"5":[0]}}"#, 2).is_err());
        assert!(Plan::parse(r#"{"orders":{"1":[7]}}"#, 2).is_err());
        assert!(Plan::parse("[1]", 2).is_err());
        assert!(Plan::parse("{", 2).is_err());
    }
}
