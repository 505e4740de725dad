//! XA: like TCC, but one URL per branch serves commit and rollback, and the records are walked
//! in registration order (docs/engine.md §1.8).

use super::pass::Pass;
use super::tcc::phase2;
use crate::error::DtmResult;
use crate::model::op;

pub(super) async fn run(pass: &mut Pass) -> DtmResult<()> {
    phase2(pass, op::COMMIT, op::ROLLBACK, false).await
}
