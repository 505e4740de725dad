//! TCC: the application registers branches and calls try itself; the coordinator confirms
//! (after submit) or cancels (after abort or a prepared-state timeout), walking the records
//! from the last registered to the first (docs/engine.md §1.7).

use super::pass::{call_error, Pass};
use crate::call::CallResult;
use crate::error::DtmResult;
use crate::model::{branch_status, op, GlobalStatus};

pub(super) async fn run(pass: &mut Pass) -> DtmResult<()> {
    phase2(pass, op::CONFIRM, op::CANCEL, true).await
}

/// The second phase shared by TCC and XA: call every record of the phase's op that has not
/// succeeded yet, in stored order or reversed, stopping at the first that does not succeed.
pub(super) async fn phase2(
    pass: &mut Pass,
    commit_op: &str,
    rollback_op: &str,
    reverse: bool,
) -> DtmResult<()> {
    if pass.is(GlobalStatus::Prepared) && pass.timed_out() {
        pass.abort_timed_out().await?;
    }
    let (phase_op, done) = match pass.global.status {
        GlobalStatus::Submitted => (commit_op, GlobalStatus::Succeed),
        GlobalStatus::Aborting => (rollback_op, GlobalStatus::Failed),
        _ => return Ok(()),
    };
    let mut order: Vec<usize> = (0..pass.branches.len()).collect();
    if reverse {
        order.reverse();
    }
    for index in order {
        let b = &pass.branches[index];
        if b.op != phase_op || b.is(branch_status::SUCCEED) {
            continue;
        }
        let result = pass.call_now(index).await?;
        if result != CallResult::Success {
            return call_error(result);
        }
    }
    pass.change_status(done, Default::default()).await
}
