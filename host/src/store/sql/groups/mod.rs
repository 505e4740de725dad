//! The writes a PostgreSQL store groups (`../group_commit.rs`): creations, branch results and
//! status changes, each kind with its own queue, written by the statements of `postgres.rs`.
//! Every write of a group gets the answer its own statement would have given, under the same
//! guards. (MySQL writes each alone: grouped in transactions, as MySQL would need, they were
//! slower in the `vs_dtm` bench at 64 clients; README, "PostgreSQL and MySQL stores".)

mod postgres;

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::postgres::Postgres;

use super::group_commit::{GroupCommit, GroupResults, Write};
use super::lender::Lender;
use crate::clock::Millis;
use crate::model::{Branch, GlobalStatus, TransGlobal};
use crate::store::{BranchOutcome, StatusChange, StoreError};

/// A new transaction and its branch records (`Store::save_new`).
pub(super) struct Creation {
    pub global: TransGlobal,
    pub branches: Vec<Branch>,
}

/// New statuses of branch records of one transaction (`Store::save_branch_outcomes`).
pub(super) struct BranchResults {
    pub gid: String,
    pub outcomes: Vec<BranchOutcome>,
    pub now: Millis,
}

/// A status compare-and-set with what it writes besides (`Store::change_status`); the rollback
/// reason is already cut to fit its column.
pub(super) struct StatusWrite {
    pub gid: String,
    pub from: GlobalStatus,
    pub to: GlobalStatus,
    pub change: StatusChange,
    pub now: Millis,
}

impl Write for Creation {
    fn gid(&self) -> &str {
        &self.global.gid
    }
}

impl Write for BranchResults {
    fn gid(&self) -> &str {
        &self.gid
    }
}

impl Write for StatusWrite {
    fn gid(&self) -> &str {
        &self.gid
    }
}

/// The group commits of a PostgreSQL store.
pub(super) struct Groups {
    pub creations: GroupCommit<Creation>,
    pub results: GroupCommit<BranchResults>,
    pub changes: GroupCommit<StatusWrite>,
}

impl Groups {
    /// Starts the three collectors on `lender`'s connections, for dtm's tables `globals` and
    /// `branches`.
    pub fn start(lender: &Arc<Lender<Postgres>>, globals: &str, branches: &str) -> Self {
        let sql = Arc::new(postgres::Sql::new(globals, branches));
        let (l, s) = (lender.clone(), sql.clone());
        let creations =
            GroupCommit::start(move |group| postgres::create(l.clone(), s.create.clone(), group));
        let (l, s) = (lender.clone(), sql.clone());
        let results = GroupCommit::start(move |group| {
            postgres::save_results(l.clone(), s.results.clone(), group)
        });
        let (l, s) = (lender.clone(), sql);
        let changes =
            GroupCommit::start(move |group| postgres::change(l.clone(), s.change.clone(), group));
        Groups {
            creations,
            results,
            changes,
        }
    }
}

/// Each write's answer: `Ok` where its transaction is among `passed`, `missing` elsewhere.
fn answers<W: Write>(
    group: &[W],
    passed: impl IntoIterator<Item = String>,
    missing: StoreError,
) -> Result<GroupResults, StoreError> {
    let passed: HashSet<String> = passed.into_iter().collect();
    Ok(group
        .iter()
        .map(|w| {
            if passed.contains(w.gid()) {
                Ok(())
            } else {
                Err(missing.clone())
            }
        })
        .collect())
}
