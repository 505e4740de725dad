//! Durable storage of transactions, branch records and key-value entries.
//!
//! Every backend implements [`Store`]; the engine relies only on the guarantees written on each
//! method (atomic create-if-absent, status compare-and-set, status-guarded branch writes, atomic
//! claims), which is what lets several coordinators share one store.

mod common;
pub mod options;
pub mod redis;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
pub mod suite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Millis;
use crate::model::{Branch, GlobalStatus, KvEntry, ScanFilter, TransGlobal};

pub use options::{StoreKind, StoreOptions};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// The record is missing, or a compare-and-set found another status or version.
    #[error("storage: NotFound")]
    NotFound,
    /// A record with the same key already exists.
    #[error("storage: UniqueKeyConflict")]
    UniqueConflict,
    /// A listing cursor that this store did not hand out.
    #[error("convert to int error: {0}")]
    BadCursor(String),
    /// The backend failed (I/O, connection, corruption…).
    #[error("storage error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens the store `options.kind` names: the embedded one in `data_dir` (wiped first with
/// `reset`), or a connection to a shared PostgreSQL, MySQL or Redis server.
pub async fn open(
    options: &StoreOptions,
    data_dir: &Path,
    reset: bool,
) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match options.kind {
        StoreKind::Postgres => sql::open(sql::Dialect::Postgres, options).await?,
        StoreKind::MySql => sql::open(sql::Dialect::MySql, options).await?,
        StoreKind::Redis => redis::open(options).await?,
        StoreKind::Embedded => Arc::new(sqlite::SqliteStore::open(data_dir)?),
    };
    if reset {
        store.wipe_all().await?;
    }
    Ok(store)
}

/// What a status change writes besides the status itself.
#[derive(Debug, Clone, Default)]
pub struct StatusChange {
    pub rollback_reason: Option<String>,
    pub result: Option<String>,
    pub custom_data: Option<String>,
    pub options: Option<String>,
    /// Branch results written in the same atomic step, so one commit carries a pass's branch
    /// results and the status they lead to.
    pub branch_outcomes: Vec<BranchOutcome>,
}

/// A branch record's new status, after a call with a definite result.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchOutcome {
    pub branch_id: String,
    pub op: String,
    pub status: &'static str,
}

/// A page of a listing plus the cursor of the next page (`""` when there is none).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_position: String,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Checks that the backend answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Deletes every transaction, branch and KV entry of this store (dtm's `-r`): on a shared
    /// server only this store's tables or key prefix, nothing else.
    async fn wipe_all(&self) -> StoreResult<()>;

    async fn find_global(&self, gid: &str) -> StoreResult<Option<TransGlobal>>;

    /// Newest first; `position` is the cursor a previous page returned (`""` = start).
    async fn scan_globals(
        &self,
        position: &str,
        limit: usize,
        filter: &ScanFilter,
    ) -> StoreResult<Page<TransGlobal>>;

    /// Branch records of a transaction, in insertion order.
    async fn find_branches(&self, gid: &str) -> StoreResult<Vec<Branch>>;

    /// Creates the transaction and its branch records atomically, only if no transaction with
    /// this gid exists; otherwise writes nothing and returns `UniqueConflict`.
    async fn save_new(&self, global: &TransGlobal, branches: &[Branch]) -> StoreResult<()>;

    /// Appends branch records atomically, only while the transaction exists with status
    /// `expected` (`NotFound` otherwise). A record whose (branch_id, op) exists already makes
    /// the whole append fail with `UniqueConflict`.
    async fn append_branches(
        &self,
        gid: &str,
        expected: GlobalStatus,
        branches: &[Branch],
    ) -> StoreResult<()>;

    /// Writes the new status of branch records of `gid`, all of them or none, only while the
    /// transaction is unfinished (`NotFound` otherwise, or when a branch does not exist).
    async fn save_branch_outcomes(
        &self,
        gid: &str,
        outcomes: &[BranchOutcome],
        now: Millis,
    ) -> StoreResult<()>;

    /// Whether a status change should carry the branch results a pass learned just before it
    /// ([`Store::change_status`] with outcomes): one commit instead of two.
    fn status_change_takes_outcomes(&self) -> bool {
        true
    }

    /// Compare-and-set of the global status: only if the stored status is `from`
    /// (`NotFound` otherwise). Sets finish/rollback time when the new status is final. The
    /// change's branch outcomes are written with it, or nothing is (`NotFound` when a branch
    /// does not exist).
    async fn change_status(
        &self,
        gid: &str,
        from: GlobalStatus,
        to: GlobalStatus,
        change: StatusChange,
        now: Millis,
    ) -> StoreResult<()>;

    /// Reschedules a transaction for the pass holding it: only while its status is still
    /// `status` and its `owner` is `owner` (`NotFound` otherwise: the status moved on, or the
    /// pass's lease passed and another pass holds the transaction now).
    async fn touch_cron_time(
        &self,
        gid: &str,
        status: GlobalStatus,
        owner: &str,
        interval_secs: i64,
        next_cron_time: Millis,
        now: Millis,
    ) -> StoreResult<()>;

    /// Atomically claims up to `limit` unfinished transactions with `next_cron_time <
    /// due_before`, in one store round trip where the backend allows (a batch): pushes each one's
    /// `next_cron_time` to `lease_until` and sets a fresh `owner` token (one per batch; every
    /// batch has its own), so no other claim returns them before then. Rows another
    /// coordinator is claiming at that moment are skipped, not waited for; an empty batch means
    /// none was free and due.
    async fn claim_due(
        &self,
        due_before: Millis,
        lease_until: Millis,
        now: Millis,
        limit: usize,
    ) -> StoreResult<Vec<TransGlobal>>;

    /// How many unfinished transactions are due (`next_cron_time < due_before`) and not claimed
    /// (a claim moves `next_cron_time` to the end of its lease): the recovery backlog. (Redis
    /// counts its schedule index, which may still hold entries of transactions that have just
    /// finished, or whose lease has just been renewed.)
    async fn count_due(&self, due_before: Millis) -> StoreResult<u64>;

    /// Claims transaction `gid` for a pass whose token is `owner`: only while it is unfinished
    /// and no other pass holds it (its owner is empty or `owner`, or its lease has passed:
    /// `next_cron_time < now`). Pushes `next_cron_time` to `lease_until` and sets `owner`;
    /// returns the record as claimed, or `None` (held by another pass, finished, or unknown).
    async fn claim(
        &self,
        gid: &str,
        owner: &str,
        lease_until: Millis,
        now: Millis,
    ) -> StoreResult<Option<TransGlobal>>;

    /// Ends the hold of the pass whose token is `owner` (empties the owner; the schedule stays
    /// as the pass left it). Does nothing when another pass holds the transaction.
    async fn release(&self, gid: &str, owner: &str, now: Millis) -> StoreResult<()>;

    /// Makes at most `limit` unfinished transactions whose `next_cron_time > after`, and that
    /// no pass holds, due now. Returns (changed, has_remaining).
    async fn reset_cron_times(
        &self,
        after: Millis,
        limit: usize,
        now: Millis,
    ) -> StoreResult<(usize, bool)>;

    /// Makes one transaction due now, in any status (`NotFound` for an unknown gid), unless a
    /// pass holds it: then its schedule stays as that pass sets it (cutting the lease short
    /// would let a second pass start beside it).
    async fn reset_cron_time(&self, gid: &str, now: Millis) -> StoreResult<()>;

    /// Key-value entries of a category, newest first, paged like [`Store::scan_globals`].
    async fn scan_kv(&self, cat: &str, position: &str, limit: usize) -> StoreResult<Page<KvEntry>>;

    /// Entries matching `cat` and `key`; an empty value matches everything.
    async fn find_kv(&self, cat: &str, key: &str) -> StoreResult<Vec<KvEntry>>;

    /// Creates an entry with version 1; `UniqueConflict` if it exists.
    async fn create_kv(&self, cat: &str, key: &str, value: &str, now: Millis) -> StoreResult<()>;

    /// Replaces the value only if the stored version is `version` (then version + 1).
    async fn update_kv(
        &self,
        cat: &str,
        key: &str,
        value: &str,
        version: i64,
        now: Millis,
    ) -> StoreResult<()>;

    /// `NotFound` if the entry does not exist.
    async fn delete_kv(&self, cat: &str, key: &str) -> StoreResult<()>;
}
