//! PostgreSQL and MySQL/MariaDB stores: one implementation, two dialects, with dtm's table names
//! (docs/engine.md §4.3) so dtm-host can run on a database dtm already uses.
//!
//! The statements are the same for both servers except where their SQL differs (`dialect.rs`);
//! sqlx's types differ per server, so each method body is written once and expanded for both
//! pools by `on_pool!`.
//!
//! Claims (docs/engine.md §3.2) lock picked rows with `FOR UPDATE SKIP LOCKED`: hosts sharing the
//! database each skip the rows the others are claiming, instead of all racing for one.

mod dialect;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Connection};

use self::dialect::{ScanConditions, Statements};
use self::group_commit::Grouped;
use self::groups::{BranchResults, Creation, Groups, StatusWrite};
use self::literals::Literals;
use self::pool::{LastFailure, Pool};
use super::common::{backend, page, parse_position};
use super::{BranchOutcome, Page, StatusChange, Store, StoreError, StoreOptions, StoreResult};
use crate::clock::Millis;
use crate::model::{Branch, GlobalStatus, KvEntry, ScanFilter, TransGlobal};

/// Which SQL server a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

/// The message of a request that got no connection in time, until [`SqlStore::run`] says why.
const NO_CONNECTION: &str = "no connection";
/// SQLSTATEs of an operation the server rolled back because it deadlocked with another (MySQL's
/// 1213 is 40001; PostgreSQL: 40P01 deadlock detected, 40001 serialization failure).
const DEADLOCK_CODES: [&str; 2] = ["40001", "40P01"];
/// Starts the message of such an error, so that [`SqlStore::run`] runs the operation again.
const DEADLOCK: &str = "deadlock, rolled back: ";
/// How often an operation is run while it deadlocks.
const DEADLOCK_ATTEMPTS: u32 = 4;
/// Longest one store operation may take, lock waits included: a server that stops answering
/// without closing its connections would otherwise hold requests forever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// dtm's `rollback_reason` column is varchar(1024); a longer reason (a business service's whole
/// reply) would make the final status change fail forever, so it is cut to fit.
const MAX_REASON_CHARS: usize = 1024;

/// Connects to the database `config` names and creates dtm's tables when absent.
pub async fn open(dialect: Dialect, config: &StoreOptions) -> StoreResult<Arc<dyn Store>> {
    Ok(Arc::new(SqlStore::open(dialect, config).await?))
}

/// A store in dtm's tables on a PostgreSQL or MySQL/MariaDB server.
pub struct SqlStore {
    pool: Pool,
    sql: Statements,
    last_failure: LastFailure,
    /// PostgreSQL: the hot writes of concurrent transactions, written in groups.
    groups: Option<Groups>,
}

/// Evaluates `$body` with `$lender` bound to the store's lender of connections (`lender.rs`),
/// once per server type.
macro_rules! on_pool {
    ($store:expr, $lender:ident => $body:expr) => {
        match &$store.pool {
            Pool::Postgres($lender) => $body,
            Pool::MySql($lender) => $body,
        }
    };
}

/// Evaluates `$body`, which gives a `StoreResult`, with `$conn` bound to a connection lent for
/// it (`&mut` the server's connection type), once per server type. A `return` or `?` in
/// `$body` leaves the body, not the caller; the connection is kept for the next call unless the
/// backend failed (`Lent::settle`).
macro_rules! on_connection {
    ($store:expr, $conn:ident => $body:expr) => {
        on_pool!($store, lender => {
            let mut lent = lender.lend().await.map_err(db_error)?;
            let result: StoreResult<_> = async {
                let $conn = &mut *lent;
                $body
            }
            .await;
            lent.settle(result)
        })
    };
}

// Below `on_pool!`, which `pool.rs` uses.
mod group_commit;
mod groups;
mod lender;
mod literals;
mod pool;
mod rows;
mod script;

/// Runs `$body` in a transaction `$tx` begun on connection `$conn`, and ends it before going
/// on: committed when `$body` gives `Ok`, rolled back when it gives `Err` (a `return` or `?` in
/// `$body` leaves the body, not the caller). A transaction that is only dropped is rolled back
/// only when its connection is next used or closed, and until then its locks stay: a claim
/// that found nothing would hide rows from other hosts' claims (MySQL's locking reads also lock
/// the index record after the range they scan).
macro_rules! in_transaction {
    ($conn:expr, $tx:ident => $body:expr) => {{
        let mut $tx = $conn.begin().await.map_err(db_error)?;
        let result: StoreResult<_> = async { $body }.await;
        match result {
            Ok(value) => $tx.commit().await.map_err(db_error).map(|()| value),
            Err(e) => {
                // The body's error says what went wrong; a failed rollback is sent again
                // before the connection's next statement (sqlx), and a broken connection is
                // closed by the lender.
                let _ = $tx.rollback().await;
                Err(e)
            }
        }
    }};
}

/// Sets the status of a group of branch records of `$gid` in one statement (`$guarded`: only
/// while the transaction is unfinished, and only if every record exists), on `$exec` (a pool or
/// a transaction); `NotFound` unless every record was found. A macro for the same reason as `on_pool!`.
macro_rules! update_branches {
    ($store:expr, $exec:expr, $gid:expr, $group:expr, $now:expr, $guarded:expr) => {{
        let (status, records) = $group;
        let sql = $store.sql.update_branches(records.len(), $guarded);
        let query = sqlx::query(dynamic(sql))
            .bind(*status)
            .bind($store.time($now))
            .bind($store.time($now))
            .bind($gid);
        let mut query = bind_keys!(query, records);
        if $guarded {
            query = query.bind($gid);
            if Statements::counts_records(records.len()) {
                query = bind_keys!(query.bind($gid), records).bind(records.len() as i64);
            }
        }
        let changed = query
            .execute($exec)
            .await
            .map_err(db_error)?
            .rows_affected();
        if changed < records.len() as u64 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }};
}

/// The status of transaction `$gid`, read in transaction `$tx` under a share lock held until
/// commit, so it cannot change under the writes that follow (`None`: no such transaction).
macro_rules! lock_status {
    ($store:expr, $tx:expr, $gid:expr) => {{
        let status: Option<String> =
            sqlx::query_scalar(dynamic($store.sql.lock_global_status.clone()))
                .bind($gid)
                .fetch_optional($tx)
                .await
                .map_err(db_error)?;
        status.and_then(|s| s.parse::<GlobalStatus>().ok())
    }};
}

/// Binds (branch_id, op) of each outcome of `$records`.
macro_rules! bind_keys {
    ($query:expr, $records:expr) => {{
        let mut query = $query;
        for o in $records.iter() {
            query = query.bind(&o.branch_id).bind(&o.op);
        }
        query
    }};
}

/// Binds the columns of `insert_global` for `$global` (on a sqlx query, or `Literals`).
macro_rules! bind_global {
    ($store:expr, $query:expr, $global:expr) => {{
        let g = $global;
        $query
            .bind(&g.gid)
            .bind(g.trans_type.as_str())
            .bind(g.status.as_str())
            .bind(&g.query_prepared)
            .bind(g.protocol.as_str())
            .bind($store.time(g.create_time))
            .bind($store.time(g.update_time))
            .bind($store.opt_time(g.finish_time))
            .bind($store.opt_time(g.rollback_time))
            .bind(g.options.to_json())
            .bind(&g.custom_data)
            .bind(g.next_cron_interval)
            .bind($store.time(g.next_cron_time))
            .bind(&g.owner)
            .bind(&g.ext_data)
            .bind(&g.result)
            .bind(&g.rollback_reason)
    }};
}

/// Binds the columns of `insert_branches` for each of `$branches`, all under `$gid` (on a sqlx
/// query, or `Literals`).
macro_rules! bind_branches {
    ($store:expr, $query:expr, $gid:expr, $branches:expr) => {{
        let mut query = $query;
        for b in $branches {
            query = query
                .bind($gid)
                .bind(&b.url)
                .bind(&b.bin_data)
                .bind(&b.branch_id)
                .bind(&b.op)
                .bind(&b.status)
                .bind($store.opt_time(b.finish_time))
                .bind($store.time(b.create_time))
                .bind($store.time(b.update_time));
        }
        query
    }};
}

/// The outcomes, each record once: a record named twice keeps its last outcome, as the backends
/// that write one outcome after another do, and the rows a write finds can be counted against
/// the records it names.
fn last_per_record(outcomes: &[BranchOutcome]) -> Vec<&BranchOutcome> {
    outcomes
        .iter()
        .enumerate()
        .filter(|(i, o)| {
            !outcomes[i + 1..]
                .iter()
                .any(|later| (&later.branch_id, &later.op) == (&o.branch_id, &o.op))
        })
        .map(|(_, o)| o)
        .collect()
}

/// Branch outcomes grouped by their new status, one UPDATE a group, each record once
/// ([`last_per_record`]).
fn by_status(outcomes: &[BranchOutcome]) -> Vec<(&'static str, Vec<&BranchOutcome>)> {
    let mut groups: Vec<(&'static str, Vec<&BranchOutcome>)> = Vec::new();
    for o in last_per_record(outcomes) {
        match groups.iter_mut().find(|(status, _)| *status == o.status) {
            Some((_, group)) => group.push(o),
            None => groups.push((o.status, vec![o])),
        }
    }
    groups
}

fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.code().is_some_and(|c| DEADLOCK_CODES.contains(&&*c)) => {
            backend(format!("{DEADLOCK}{db}"))
        }
        // sqlx's own words do not say why no connection came; `SqlStore::run` does.
        sqlx::Error::PoolTimedOut => backend(NO_CONNECTION),
        e => backend(e),
    }
}

/// A failed write: a duplicate key is the caller's conflict, anything else the backend's.
fn write_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::UniqueConflict,
        _ => db_error(e),
    }
}

/// A statement built at run time from fixed parts and placeholders only.
fn dynamic(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

impl SqlStore {
    pub async fn open(dialect: Dialect, config: &StoreOptions) -> StoreResult<Self> {
        let prefix = |e: StoreError| match e {
            StoreError::Backend(m) => StoreError::Backend(format!("{}: {m}", dialect.name())),
            other => other,
        };
        let scope = dialect.scope(config).map_err(backend).map_err(prefix)?;
        let last_failure = LastFailure::default();
        let pool = Pool::connect(dialect, config, &last_failure)
            .await
            .map_err(prefix)?;
        let sql = Statements::new(dialect, &scope);
        let groups = match &pool {
            Pool::Postgres(lender) => Some(Groups::start(lender, &sql.globals, &sql.branches)),
            Pool::MySql(_) => None,
        };
        let store = SqlStore {
            pool,
            sql,
            last_failure,
            groups,
        };
        store.run(|| store.create_tables(&scope)).await?;
        Ok(store)
    }

    fn dialect(&self) -> Dialect {
        self.sql.dialect
    }

    /// Runs one store operation (`op` makes it) within [`OPERATION_TIMEOUT`], naming the
    /// server in a backend error; an operation the server undid because it deadlocked with a
    /// concurrent one is made and run again, a few times.
    async fn run<T, F, Fut>(&self, op: F) -> StoreResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut attempts = 1;
        loop {
            match tokio::time::timeout(OPERATION_TIMEOUT, op()).await {
                Ok(Err(StoreError::Backend(message)))
                    if message.starts_with(DEADLOCK) && attempts < DEADLOCK_ATTEMPTS =>
                {
                    attempts += 1;
                    let pause = rand::Rng::random_range(&mut rand::rng(), 1..20);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Ok(Err(StoreError::Backend(message))) if message == NO_CONNECTION => {
                    break Err(self.failed(self.why_no_connection()))
                }
                Ok(Err(StoreError::Backend(message))) => break Err(self.failed(message)),
                Ok(result) => break result,
                Err(_) => {
                    let late = format!("no answer within {} s", OPERATION_TIMEOUT.as_secs());
                    break Err(self.failed(late));
                }
            }
        }
    }

    /// The backend error `message` of a store call that failed just now, naming the server.
    /// Remembers the failure, so that pooled connections are checked before their next use
    /// (`pool.rs`).
    fn failed(&self, message: impl std::fmt::Display) -> StoreError {
        if let Ok(mut at) = self.last_failure.lock() {
            *at = Some(Instant::now());
        }
        StoreError::Backend(format!("{}: {message}", self.dialect().name()))
    }

    /// Writes what `write` makes together with concurrent writes of its kind, where this store
    /// groups them (PostgreSQL: `groups`); otherwise, or when it goes alone, with `alone`.
    async fn grouped<W, Fut>(
        &self,
        commit: impl FnOnce(&Groups) -> &group_commit::GroupCommit<W>,
        write: impl FnOnce() -> W,
        alone: impl FnOnce() -> Fut,
    ) -> StoreResult<()>
    where
        W: group_commit::Write,
        Fut: Future<Output = StoreResult<()>>,
    {
        let Some(groups) = self.groups.as_ref() else {
            return alone().await;
        };
        match commit(groups).write(write()).await {
            Grouped::Alone(slot) => {
                let written = alone().await;
                drop(slot);
                written
            }
            Grouped::Done(Err(StoreError::Backend(message))) => Err(self.failed(message)),
            Grouped::Done(result) => result,
        }
    }

    /// Creates the scope and dtm's tables unless all three tables exist, so a database user
    /// without CREATE rights can use tables an administrator made.
    async fn create_tables(&self, scope: &str) -> StoreResult<()> {
        let dialect = self.dialect();
        let count_sql = dialect.render(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? \
             AND table_name IN ('trans_global', 'trans_branch_op', 'kv')",
        );
        let ddl = dialect.schema_ddl(scope);
        let (lock, unlock) = dialect.ddl_lock();
        on_connection!(self, conn => {
            let existing: i64 = sqlx::query_scalar(dynamic(count_sql))
                .bind(scope)
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?;
            if existing == 3 {
                return Ok(());
            }
            // The lock is the session's: taken and given back on this one connection.
            sqlx::query(lock).execute(&mut *conn).await.map_err(db_error)?;
            let mut created = Ok(());
            for statement in ddl {
                if let Err(e) = sqlx::query(dynamic(statement)).execute(&mut *conn).await {
                    created = Err(backend(format!("cannot create dtm's tables: {e}")));
                    break;
                }
            }
            sqlx::query(unlock).execute(&mut *conn).await.map_err(db_error)?;
            if created.is_ok() {
                tracing::info!(store = dialect.name(), scope, "created dtm's tables where missing");
            }
            created
        })
    }

    fn time(&self, ms: Millis) -> i64 {
        self.dialect().encode_time(ms)
    }

    fn opt_time(&self, ms: Option<Millis>) -> Option<i64> {
        ms.map(|ms| self.time(ms))
    }
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn truncate_reason(reason: Option<String>) -> Option<String> {
    reason.map(|r| match r.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => r[..cut].to_owned(),
        None => r,
    })
}

/// The writes a PostgreSQL store groups (`groups/`), each written on its own.
impl SqlStore {
    /// `Store::save_new` written alone: one statement (PostgreSQL) or one transaction sent as
    /// one query (MySQL, `script.rs`); either way one round trip.
    async fn create_alone(&self, global: &TransGlobal, branches: &[Branch]) -> StoreResult<()> {
        if let Pool::MySql(lender) = &self.pool {
            let mut statements =
                vec![bind_global!(self, Literals::default(), global)
                    .fill(&self.sql.insert_global)?];
            if !branches.is_empty() {
                let values = bind_branches!(self, Literals::default(), &global.gid, branches);
                statements.push(values.fill(&self.sql.insert_branches(branches.len()))?);
            }
            return self
                .run(|| async {
                    let lent = lender.lend().await.map_err(db_error)?;
                    script::commit_in_one_query(lent, &statements, write_error).await
                })
                .await;
        }
        // PostgreSQL takes both inserts in one statement.
        let sql = if branches.is_empty() {
            self.sql.insert_global.clone()
        } else {
            self.sql.insert_global_with_branches(branches.len())
        };
        self.run(|| async {
            on_connection!(self, conn => {
                let insert = bind_global!(self, sqlx::query(dynamic(sql.clone())), global);
                let insert = bind_branches!(self, insert, &global.gid, branches);
                insert.execute(conn).await.map_err(write_error)?;
                Ok(())
            })
        })
        .await
    }

    /// `Store::save_branch_outcomes` written alone: one statement, or one transaction when the
    /// outcomes set several statuses.
    async fn save_results_alone(
        &self,
        gid: &str,
        outcomes: &[BranchOutcome],
        now: Millis,
    ) -> StoreResult<()> {
        let groups = by_status(outcomes);
        self.run(|| async {
            on_connection!(self, conn => {
                if let [group] = groups.as_slice() {
                    // One statement, guarded by the transaction's status.
                    return update_branches!(self, conn, gid, group, now, true);
                }
                in_transaction!(conn, tx => {
                    let unfinished =
                        lock_status!(self, &mut *tx, gid).is_some_and(|s| !s.is_finished());
                    if !unfinished {
                        return Err(StoreError::NotFound);
                    }
                    for group in &groups {
                        update_branches!(self, &mut *tx, gid, group, now, false)?;
                    }
                    Ok(())
                })
            })
        })
        .await
    }

    /// `Store::change_status` written alone (the rollback reason already cut to fit): one
    /// statement, or one transaction (MySQL with branch outcomes).
    async fn change_status_alone(
        &self,
        gid: &str,
        from: GlobalStatus,
        to: GlobalStatus,
        change: &StatusChange,
        now: Millis,
    ) -> StoreResult<()> {
        let finish_time = (to == GlobalStatus::Succeed).then_some(now);
        let rollback_time = (to == GlobalStatus::Failed).then_some(now);
        let reason = &change.rollback_reason;
        let groups = by_status(&change.branch_outcomes);
        // PostgreSQL takes the status and the outcomes in one statement; MySQL needs a
        // transaction.
        let sizes: Vec<usize> = groups.iter().map(|(_, records)| records.len()).collect();
        let one_statement = self.dialect() == Dialect::Postgres && !groups.is_empty();
        let sql = if one_statement {
            self.sql.change_status_with_branches(&sizes)
        } else {
            self.sql.change_status.clone()
        };
        self.run(|| async {
            on_connection!(self, conn => {
                let update = sqlx::query(dynamic(sql.clone()))
                    .bind(to.as_str())
                    .bind(self.time(now))
                    .bind(self.opt_time(finish_time))
                    .bind(self.opt_time(rollback_time))
                    .bind(reason)
                    .bind(&change.result)
                    .bind(&change.custom_data)
                    .bind(&change.options)
                    .bind(gid)
                    .bind(from.as_str());
                let found = |changed: bool| if changed { Ok(()) } else { Err(StoreError::NotFound) };
                if one_statement {
                    let mut update = update.bind(gid);
                    for (_, records) in &groups {
                        update = bind_keys!(update, records);
                    }
                    let mut update = update.bind(sizes.iter().sum::<usize>() as i64);
                    for (status, records) in &groups {
                        update = update
                            .bind(*status)
                            .bind(self.time(now))
                            .bind(self.time(now))
                            .bind(gid);
                        update = bind_keys!(update, records);
                    }
                    let changed = update.fetch_optional(conn).await.map_err(db_error)?;
                    return found(changed.is_some());
                }
                if groups.is_empty() {
                    let changed = update.execute(conn).await.map_err(db_error)?;
                    return found(changed.rows_affected() > 0);
                }
                in_transaction!(conn, tx => {
                    let changed = update.execute(&mut *tx).await.map_err(db_error)?;
                    found(changed.rows_affected() > 0)?;
                    for group in &groups {
                        update_branches!(self, &mut *tx, gid, group, now, false)?;
                    }
                    Ok(())
                })
            })
        })
        .await
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        self.run(|| async {
            on_connection!(self, conn => {
                sqlx::query("SELECT 1").execute(conn).await.map(|_| ()).map_err(db_error)
            })
        })
        .await
    }

    async fn wipe_all(&self) -> StoreResult<()> {
        let tables = [&self.sql.branches, &self.sql.globals, &self.sql.kv];
        self.run(|| async {
            on_connection!(self, conn => {
                in_transaction!(conn, tx => {
                    for table in tables {
                        sqlx::query(dynamic(format!("DELETE FROM {table}")))
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    Ok(())
                })
            })
        })
        .await
    }

    async fn find_global(&self, gid: &str) -> StoreResult<Option<TransGlobal>> {
        self.run(|| async {
            on_connection!(self, conn => {
                let row = sqlx::query(dynamic(self.sql.find_global.clone()))
                    .bind(gid)
                    .fetch_optional(conn)
                    .await
                    .map_err(db_error)?;
                row.map(|r| self.global_from(&r)).transpose()
            })
        })
        .await
    }

    async fn scan_globals(
        &self,
        position: &str,
        limit: usize,
        filter: &ScanFilter,
    ) -> StoreResult<Page<TransGlobal>> {
        let before = parse_position(position)?;
        let sql = self.sql.scan_globals(
            before.is_some(),
            &ScanConditions {
                status: !filter.status.is_empty(),
                trans_type: !filter.trans_type.is_empty(),
                create_start: filter.create_start.is_some(),
                create_end: filter.create_end.is_some(),
            },
        );
        self.run(|| async {
            on_connection!(self, conn => {
                let mut query = sqlx::query(dynamic(sql.clone()));
                if let Some(id) = before {
                    query = query.bind(id);
                }
                if !filter.status.is_empty() {
                    query = query.bind(&filter.status);
                }
                if !filter.trans_type.is_empty() {
                    query = query.bind(&filter.trans_type);
                }
                if let Some(start) = filter.create_start {
                    query = query.bind(self.time(start));
                }
                if let Some(end) = filter.create_end {
                    query = query.bind(self.time(end));
                }
                let rows = query
                    .bind(limit_param(limit))
                    .fetch_all(conn)
                    .await
                    .map_err(db_error)?;
                let items = rows
                    .iter()
                    .map(|r| self.global_from(r))
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(page(items, limit, |g| g.id))
            })
        })
        .await
    }

    async fn find_branches(&self, gid: &str) -> StoreResult<Vec<Branch>> {
        self.run(|| async {
            on_connection!(self, conn => {
                let rows = sqlx::query(dynamic(self.sql.find_branches.clone()))
                    .bind(gid)
                    .fetch_all(conn)
                    .await
                    .map_err(db_error)?;
                rows.iter().map(|r| self.branch_from(r)).collect()
            })
        })
        .await
    }

    fn status_change_takes_outcomes(&self) -> bool {
        // MySQL writes both in a transaction that locks the global row, then the branch rows;
        // another host's guarded branch write locks them the other way round (tests/one_pass.rs
        // met the deadlock). PostgreSQL does it in one statement.
        self.dialect() == Dialect::Postgres
    }

    async fn save_new(&self, global: &TransGlobal, branches: &[Branch]) -> StoreResult<()> {
        let creation = || Creation {
            global: global.clone(),
            branches: branches.to_vec(),
        };
        self.grouped(
            |g| &g.creations,
            creation,
            || self.create_alone(global, branches),
        )
        .await
    }

    async fn append_branches(
        &self,
        gid: &str,
        expected: GlobalStatus,
        branches: &[Branch],
    ) -> StoreResult<()> {
        self.run(|| async {
            on_connection!(self, conn => {
                in_transaction!(conn, tx => {
                    if lock_status!(self, &mut *tx, gid) != Some(expected) {
                        return Err(StoreError::NotFound);
                    }
                    if !branches.is_empty() {
                        let insert = sqlx::query(dynamic(self.sql.insert_branches(branches.len())));
                        let insert = bind_branches!(self, insert, gid, branches);
                        insert.execute(&mut *tx).await.map_err(write_error)?;
                    }
                    Ok(())
                })
            })
        })
        .await
    }

    async fn save_branch_outcomes(
        &self,
        gid: &str,
        outcomes: &[BranchOutcome],
        now: Millis,
    ) -> StoreResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let results = || BranchResults {
            gid: gid.to_owned(),
            outcomes: outcomes.to_vec(),
            now,
        };
        self.grouped(
            |g| &g.results,
            results,
            || self.save_results_alone(gid, outcomes, now),
        )
        .await
    }

    async fn change_status(
        &self,
        gid: &str,
        from: GlobalStatus,
        to: GlobalStatus,
        change: StatusChange,
        now: Millis,
    ) -> StoreResult<()> {
        let change = StatusChange {
            rollback_reason: truncate_reason(change.rollback_reason),
            ..change
        };
        let write = || StatusWrite {
            gid: gid.to_owned(),
            from,
            to,
            change: change.clone(),
            now,
        };
        self.grouped(
            |g| &g.changes,
            write,
            || self.change_status_alone(gid, from, to, &change, now),
        )
        .await
    }

    async fn touch_cron_time(
        &self,
        gid: &str,
        status: GlobalStatus,
        owner: &str,
        interval_secs: i64,
        next_cron_time: Millis,
        now: Millis,
    ) -> StoreResult<()> {
        self.run(|| async {
            on_connection!(self, conn => {
                let changed = sqlx::query(dynamic(self.sql.touch_cron_time.clone()))
                    .bind(interval_secs)
                    .bind(self.time(next_cron_time))
                    .bind(self.time(now))
                    .bind(gid)
                    .bind(status.as_str())
                    .bind(owner)
                    .execute(conn)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }

    async fn claim_due(
        &self,
        due_before: Millis,
        lease_until: Millis,
        now: Millis,
        limit: usize,
    ) -> StoreResult<Vec<TransGlobal>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owner = crate::gid::new_gid();
        let due = self.time(due_before);
        self.run(|| async {
            on_connection!(self, conn => {
                in_transaction!(conn, tx => {
                    // Locks due rows that no other host holds; theirs are skipped, not waited
                    // for. They stay locked until the commit, so the update below takes each.
                    let ids: Vec<i64> = sqlx::query_scalar(dynamic(self.sql.claim_pick.clone()))
                        .bind(due)
                        .bind(limit_param(limit))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut take = sqlx::query(dynamic(self.sql.claim_take(ids.len())))
                        .bind(self.time(lease_until))
                        .bind(&owner)
                        .bind(self.time(now));
                    for id in &ids {
                        take = take.bind(*id);
                    }
                    take.execute(&mut *tx).await.map_err(db_error)?;
                    let mut read = sqlx::query(dynamic(self.sql.find_globals_by_ids(ids.len())));
                    for id in &ids {
                        read = read.bind(*id);
                    }
                    let rows = read.fetch_all(&mut *tx).await.map_err(db_error)?;
                    rows.iter().map(|row| self.global_from(row)).collect()
                })
            })
        })
        .await
    }

    async fn reset_cron_times(
        &self,
        after: Millis,
        limit: usize,
        now: Millis,
    ) -> StoreResult<(usize, bool)> {
        let after = self.time(after);
        self.run(|| async {
            on_connection!(self, conn => {
                // One more than asked for tells whether any remain.
                let ids: Vec<i64> = sqlx::query_scalar(dynamic(self.sql.reset_pick.clone()))
                    .bind(after)
                    .bind(limit_param(limit).saturating_add(1))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_error)?;
                let has_remaining = ids.len() > limit;
                let chosen = &ids[..ids.len().min(limit)];
                if chosen.is_empty() {
                    return Ok((0, has_remaining));
                }
                let mut query = sqlx::query(dynamic(self.sql.reset_apply(chosen.len())))
                    .bind(self.time(now))
                    .bind(self.time(now));
                for id in chosen {
                    query = query.bind(*id);
                }
                let changed = query
                    .bind(after)
                    .execute(conn)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
                Ok((usize::try_from(changed).unwrap_or(usize::MAX), has_remaining))
            })
        })
        .await
    }

    async fn count_due(&self, due_before: Millis) -> StoreResult<u64> {
        let due = self.time(due_before);
        let count: i64 = self
            .run(|| async {
                on_connection!(self, conn => {
                    sqlx::query_scalar(dynamic(self.sql.count_due.clone()))
                        .bind(due)
                        .fetch_one(conn)
                        .await
                        .map_err(db_error)
                })
            })
            .await?;
        Ok(count.max(0) as u64)
    }

    async fn claim(
        &self,
        gid: &str,
        owner: &str,
        lease_until: Millis,
        now: Millis,
    ) -> StoreResult<Option<TransGlobal>> {
        let claimed = self
            .run(|| async {
                on_connection!(self, conn => {
                    sqlx::query(dynamic(self.sql.claim_one.clone()))
                        .bind(self.time(lease_until))
                        .bind(owner)
                        .bind(self.time(now))
                        .bind(gid)
                        .bind(owner)
                        .bind(self.time(now))
                        .execute(conn)
                        .await
                        .map(|done| done.rows_affected())
                        .map_err(db_error)
                })
            })
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        // Held now, so nothing but a status change can come between.
        self.find_global(gid).await
    }

    async fn release(&self, gid: &str, owner: &str, now: Millis) -> StoreResult<()> {
        self.run(|| async {
            on_connection!(self, conn => {
                sqlx::query(dynamic(self.sql.release.clone()))
                    .bind(self.time(now))
                    .bind(gid)
                    .bind(owner)
                    .execute(conn)
                    .await
                    .map(drop)
                    .map_err(db_error)
            })
        })
        .await
    }

    async fn reset_cron_time(&self, gid: &str, now: Millis) -> StoreResult<()> {
        let changed = self
            .run(|| async {
                on_connection!(self, conn => {
                    sqlx::query(dynamic(self.sql.reset_one.clone()))
                        .bind(self.time(now))
                        .bind(self.time(now))
                        .bind(gid)
                        .bind(self.time(now))
                        .execute(conn)
                        .await
                        .map(|done| done.rows_affected())
                        .map_err(db_error)
                })
            })
            .await?;
        // Nothing changed: unknown, or a pass holds it (its lease stands).
        if changed == 0 && self.find_global(gid).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn scan_kv(&self, cat: &str, position: &str, limit: usize) -> StoreResult<Page<KvEntry>> {
        let before = parse_position(position)?;
        let sql = self.sql.scan_kv(before.is_some());
        self.run(|| async {
            on_connection!(self, conn => {
                let mut query = sqlx::query(dynamic(sql.clone())).bind(cat);
                if let Some(id) = before {
                    query = query.bind(id);
                }
                let rows = query
                    .bind(limit_param(limit))
                    .fetch_all(conn)
                    .await
                    .map_err(db_error)?;
                let items = rows
                    .iter()
                    .map(|r| self.kv_from(r))
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(page(items, limit, |kv| kv.id))
            })
        })
        .await
    }

    async fn find_kv(&self, cat: &str, key: &str) -> StoreResult<Vec<KvEntry>> {
        let sql = self.sql.find_kv(!cat.is_empty(), !key.is_empty());
        self.run(|| async {
            on_connection!(self, conn => {
                let mut query = sqlx::query(dynamic(sql.clone()));
                if !cat.is_empty() {
                    query = query.bind(cat);
                }
                if !key.is_empty() {
                    query = query.bind(key);
                }
                let rows = query.fetch_all(conn).await.map_err(db_error)?;
                rows.iter().map(|r| self.kv_from(r)).collect()
            })
        })
        .await
    }

    async fn create_kv(&self, cat: &str, key: &str, value: &str, now: Millis) -> StoreResult<()> {
        self.run(|| async {
            on_connection!(self, conn => {
                sqlx::query(dynamic(self.sql.create_kv.clone()))
                    .bind(cat)
                    .bind(key)
                    .bind(value)
                    .bind(self.time(now))
                    .bind(self.time(now))
                    .execute(conn)
                    .await
                    .map(|_| ())
                    .map_err(write_error)
            })
        })
        .await
    }

    async fn update_kv(
        &self,
        cat: &str,
        key: &str,
        value: &str,
        version: i64,
        now: Millis,
    ) -> StoreResult<()> {
        self.run(|| async {
            on_connection!(self, conn => {
                let changed = sqlx::query(dynamic(self.sql.update_kv.clone()))
                    .bind(value)
                    .bind(self.time(now))
                    .bind(cat)
                    .bind(key)
                    .bind(version)
                    .execute(conn)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_kv(&self, cat: &str, key: &str) -> StoreResult<()> {
        self.run(|| async {
            on_connection!(self, conn => {
                let changed = sqlx::query(dynamic(self.sql.delete_kv.clone()))
                    .bind(cat)
                    .bind(key)
                    .execute(conn)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }
}

// Last: the tests use `on_pool!`, which is only visible below its definition.
#[cfg(test)]
mod tests;
