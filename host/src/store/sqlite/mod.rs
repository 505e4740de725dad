//! The embedded default store: SQLite in WAL mode with `synchronous=FULL`, so a write that
//! returned is on disk (fsync) before the coordinator answers.
//!
//! All writes go through one writer thread (`writer.rs`) that **group-commits**: it takes every
//! write waiting in its queue, runs each inside its own savepoint of one transaction, commits
//! once (one fsync for the whole batch) and only then answers each caller. Reads use a small pool
//! of separate connections, which WAL lets run beside the writer.

mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use self::writer::WriteOp;
use super::common::{backend, page, parse_position};
use super::{BranchOutcome, Page, StatusChange, Store, StoreError, StoreResult};
use crate::clock::Millis;
use crate::model::{Branch, GlobalStatus, KvEntry, ScanFilter, TransGlobal, TransOptions};

/// An unfinished transaction: only these statuses are ever claimed or pulled in (the condition
/// of `store/common.rs`, written out). SQLite evaluates `status IN (<3 constants>)` by building a
/// temporary b-tree each time a statement runs it, and the index below runs its condition on
/// every insert and status change: three equalities cost none. Stores made before this had
/// `trans_global_due` with the `IN` form; `unfinished_due_index` drops it.
const UNFINISHED: &str = "(status = 'prepared' OR status = 'submitted' OR status = 'aborting')";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trans_global (
  id INTEGER PRIMARY KEY,
  gid TEXT NOT NULL UNIQUE,
  trans_type TEXT NOT NULL,
  status TEXT NOT NULL,
  query_prepared TEXT NOT NULL DEFAULT '',
  protocol TEXT NOT NULL,
  create_time INTEGER,
  update_time INTEGER,
  finish_time INTEGER,
  rollback_time INTEGER,
  options TEXT NOT NULL DEFAULT '',
  custom_data TEXT NOT NULL DEFAULT '',
  next_cron_interval INTEGER,
  next_cron_time INTEGER,
  owner TEXT NOT NULL DEFAULT '',
  ext_data TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  rollback_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS kv (
  id INTEGER PRIMARY KEY,
  cat TEXT NOT NULL,
  k TEXT NOT NULL,
  v TEXT,
  version INTEGER NOT NULL DEFAULT 1,
  create_time INTEGER,
  update_time INTEGER,
  UNIQUE (cat, k)
);
";

/// The branch table's columns. Branches are keyed by their global's row id, which grows with each
/// new transaction: the branches of the transactions in one commit sit side by side, so the
/// commit writes a few shared pages to the WAL instead of one scattered page per transaction, as
/// a key that starts with the (random) gid did.
const BRANCH_COLUMNS: &str = "
  global_id INTEGER NOT NULL,
  branch_id TEXT NOT NULL,
  op TEXT NOT NULL,
  pos INTEGER NOT NULL,
  url TEXT NOT NULL,
  bin_data BLOB,
  status TEXT NOT NULL,
  finish_time INTEGER,
  rollback_time INTEGER,
  create_time INTEGER,
  update_time INTEGER,
  PRIMARY KEY (global_id, branch_id, op)
";

/// The unfinished transactions by `next_cron_time`: what the recovery loop claims. Its condition
/// is `UNFINISHED` itself, so that the queries that say `UNFINISHED` can use it.
fn unfinished_due_index() -> String {
    format!(
        "DROP INDEX IF EXISTS trans_global_due;
         CREATE INDEX IF NOT EXISTS trans_global_unfinished_due ON trans_global(next_cron_time)
           WHERE {UNFINISHED};"
    )
}

/// Stores made before branches were keyed by their global's row id kept them in a table keyed by
/// gid; this moves them over in one transaction when such a store is opened.
fn key_branches_by_global_id() -> String {
    format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE trans_branch_op_by_id ({BRANCH_COLUMNS}) WITHOUT ROWID;
         INSERT INTO trans_branch_op_by_id
           SELECT g.id, b.branch_id, b.op, b.pos, b.url, b.bin_data, b.status, b.finish_time,
                  b.rollback_time, b.create_time, b.update_time
           FROM trans_branch_op b JOIN trans_global g ON g.gid = b.gid;
         DROP TABLE trans_branch_op;
         ALTER TABLE trans_branch_op_by_id RENAME TO trans_branch_op;
         COMMIT;"
    )
}

/// The branch columns `read_branch` takes, for the branches of the global whose gid is `?1`.
const BRANCHES_OF_GID: &str = "SELECT pos, ?1, url, bin_data, branch_id, op, status, finish_time, \
    create_time, update_time FROM trans_branch_op \
    WHERE global_id = (SELECT id FROM trans_global WHERE gid = ?1) ORDER BY pos";

const GLOBAL_COLUMNS: &str = "id, gid, trans_type, status, query_prepared, protocol, create_time, \
    update_time, finish_time, rollback_time, options, custom_data, next_cron_interval, \
    next_cron_time, owner, ext_data, result, rollback_reason";

pub struct SqliteStore {
    writer: mpsc::Sender<WriteOp>,
    readers: Arc<ReaderPool>,
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn open(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=2000; \
         PRAGMA wal_autocheckpoint=8192;",
    )
    .map_err(backend)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/dtm.sqlite`.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            backend(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("dtm.sqlite");
        let conn = open(&path)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        conn.execute_batch(&unfinished_due_index())
            .map_err(backend)?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS trans_branch_op ({BRANCH_COLUMNS}) WITHOUT ROWID"
        ))
        .map_err(backend)?;
        if branches_keyed_by_gid(&conn)? {
            conn.execute_batch(&key_branches_by_global_id())
                .map_err(|e| {
                    backend(format!(
                        "cannot rekey the branches of {}: {e}",
                        path.display()
                    ))
                })?;
        }
        let writer = writer::spawn(conn)?;
        Ok(Self {
            writer,
            readers: Arc::new(ReaderPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = pool.idle.lock().map_err(backend)?.pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open(&pool.path)?,
            };
            let result = f(&conn);
            pool.idle.lock().map_err(backend)?.push(conn);
            result
        })
        .await
        .map_err(backend)?
    }
}

fn read_global(row: &Row<'_>) -> rusqlite::Result<TransGlobal> {
    let parse_err = |i: usize, what: &str, v: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what} '{v}'").into(),
        )
    };
    let trans_type: String = row.get(2)?;
    let status: String = row.get(3)?;
    let protocol: String = row.get(5)?;
    let options: String = row.get(10)?;
    Ok(TransGlobal {
        id: row.get::<_, i64>(0)? as u64,
        gid: row.get(1)?,
        trans_type: trans_type
            .parse()
            .map_err(|_| parse_err(2, "trans_type", trans_type.clone()))?,
        status: status
            .parse()
            .map_err(|_| parse_err(3, "status", status.clone()))?,
        query_prepared: row.get(4)?,
        protocol: protocol
            .parse()
            .map_err(|_| parse_err(5, "protocol", protocol.clone()))?,
        create_time: row.get(6)?,
        update_time: row.get(7)?,
        finish_time: row.get(8)?,
        rollback_time: row.get(9)?,
        options: TransOptions::from_json(&options),
        custom_data: row.get(11)?,
        next_cron_interval: row.get(12)?,
        next_cron_time: row.get(13)?,
        owner: row.get(14)?,
        ext_data: row.get(15)?,
        result: row.get(16)?,
        rollback_reason: row.get(17)?,
    })
}

/// Branch ids are positions within their transaction here, counted from 1.
fn read_branch(row: &Row<'_>) -> rusqlite::Result<Branch> {
    Ok(Branch {
        id: row.get::<_, i64>(0)? as u64 + 1,
        gid: row.get(1)?,
        url: row.get(2)?,
        bin_data: row.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
        branch_id: row.get(4)?,
        op: row.get(5)?,
        status: row.get(6)?,
        finish_time: row.get(7)?,
        create_time: row.get(8)?,
        update_time: row.get(9)?,
    })
}

fn read_kv(row: &Row<'_>) -> rusqlite::Result<KvEntry> {
    Ok(KvEntry {
        id: row.get::<_, i64>(0)? as u64,
        cat: row.get(1)?,
        k: row.get(2)?,
        v: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
        version: row.get(4)?,
        create_time: row.get(5)?,
        update_time: row.get(6)?,
    })
}

/// Whether the store keeps branches in the layout of before they were keyed by their global's row
/// id (a `gid` column).
fn branches_keyed_by_gid(conn: &Connection) -> StoreResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('trans_branch_op') WHERE name = 'gid')",
        [],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Inserts the branch records of the global whose row id is `global_id` at positions
/// `first_pos`, `first_pos + 1`, …
fn insert_branches(
    conn: &Connection,
    global_id: i64,
    branches: &[Branch],
    first_pos: i64,
) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO trans_branch_op (pos, global_id, url, bin_data, branch_id, op, status, finish_time, create_time, update_time) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(backend)?;
    for (b, pos) in branches.iter().zip(first_pos..) {
        stmt.execute(params![
            pos,
            global_id,
            b.url,
            b.bin_data,
            b.branch_id,
            b.op,
            b.status,
            b.finish_time,
            b.create_time,
            b.update_time
        ])
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::UniqueConflict
            } else {
                backend(e)
            }
        })?;
    }
    Ok(())
}

/// Writes the outcomes of branches of the global whose row id is `global_id`; `NotFound` if a
/// branch does not exist (the caller's savepoint then undoes the others).
fn update_branches(
    conn: &Connection,
    global_id: i64,
    outcomes: &[BranchOutcome],
    now: Millis,
) -> StoreResult<()> {
    let mut update = conn
        .prepare_cached(
            "UPDATE trans_branch_op SET status = ?1, finish_time = ?2, update_time = ?2 \
             WHERE global_id = ?3 AND branch_id = ?4 AND op = ?5",
        )
        .map_err(backend)?;
    for o in outcomes {
        let changed = update
            .execute(params![o.status, now, global_id, o.branch_id, o.op])
            .map_err(backend)?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    async fn wipe_all(&self) -> StoreResult<()> {
        self.write_all_or_none(|conn| {
            conn.execute_batch(
                "DELETE FROM trans_branch_op; DELETE FROM trans_global; DELETE FROM kv;",
            )
            .map_err(backend)
        })
        .await
    }

    async fn find_global(&self, gid: &str) -> StoreResult<Option<TransGlobal>> {
        let gid = gid.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {GLOBAL_COLUMNS} FROM trans_global WHERE gid = ?1"
            ))
            .and_then(|mut s| s.query_row([gid], read_global).optional())
            .map_err(backend)
        })
        .await
    }

    async fn scan_globals(
        &self,
        position: &str,
        limit: usize,
        filter: &ScanFilter,
    ) -> StoreResult<Page<TransGlobal>> {
        // 0: from the start (the query tests `= 0`).
        let before = parse_position(position)?.unwrap_or(0);
        let filter = filter.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {GLOBAL_COLUMNS} FROM trans_global WHERE (?1 = 0 OR id < ?1) \
                 AND (?2 = '' OR status = ?2) AND (?3 = '' OR trans_type = ?3) \
                 AND (?4 IS NULL OR create_time >= ?4) AND (?5 IS NULL OR create_time <= ?5) \
                 ORDER BY id DESC LIMIT ?6"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![
                        before,
                        filter.status,
                        filter.trans_type,
                        filter.create_start,
                        filter.create_end,
                        limit as i64
                    ],
                    read_global,
                )
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(backend)?;
            Ok(page(rows, limit, |g| g.id))
        })
        .await
    }

    async fn find_branches(&self, gid: &str) -> StoreResult<Vec<Branch>> {
        let gid = gid.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(BRANCHES_OF_GID).map_err(backend)?;
            stmt.query_map([gid], read_branch)
                .and_then(|rows| rows.collect())
                .map_err(backend)
        })
        .await
    }

    async fn save_new(&self, global: &TransGlobal, branches: &[Branch]) -> StoreResult<()> {
        let g = global.clone();
        let branches = branches.to_vec();
        self.write_all_or_none(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO trans_global (gid, trans_type, status, query_prepared, protocol, create_time, \
                     update_time, finish_time, rollback_time, options, custom_data, next_cron_interval, \
                     next_cron_time, owner, ext_data, result, rollback_reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                     ON CONFLICT (gid) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        g.gid, g.trans_type.as_str(), g.status.as_str(), g.query_prepared,
                        g.protocol.as_str(), g.create_time, g.update_time, g.finish_time,
                        g.rollback_time, g.options.to_json(), g.custom_data, g.next_cron_interval,
                        g.next_cron_time, g.owner, g.ext_data, g.result, g.rollback_reason
                    ])
                })
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::UniqueConflict);
            }
            insert_branches(conn, conn.last_insert_rowid(), &branches, 0)
        })
        .await
    }

    async fn append_branches(
        &self,
        gid: &str,
        expected: GlobalStatus,
        branches: &[Branch],
    ) -> StoreResult<()> {
        let gid = gid.to_owned();
        let branches = branches.to_vec();
        self.write_all_or_none(move |conn| {
            let global: Option<(i64, String)> = conn
                .prepare_cached("SELECT id, status FROM trans_global WHERE gid = ?1")
                .and_then(|mut s| {
                    s.query_row([&gid], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(backend)?;
            let Some((global_id, status)) = global else {
                return Err(StoreError::NotFound);
            };
            if status != expected.as_str() {
                return Err(StoreError::NotFound);
            }
            let count: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM trans_branch_op WHERE global_id = ?1")
                .and_then(|mut s| s.query_row([global_id], |r| r.get(0)))
                .map_err(backend)?;
            insert_branches(conn, global_id, &branches, count)
        })
        .await
    }

    async fn save_branch_outcomes(
        &self,
        gid: &str,
        outcomes: &[BranchOutcome],
        now: Millis,
    ) -> StoreResult<()> {
        let (gid, outcomes) = (gid.to_owned(), outcomes.to_vec());
        // One UPDATE that fails changes nothing; several need a savepoint.
        self.submit(outcomes.len() > 1, move |conn| {
            let unfinished: Option<i64> = conn
                .prepare_cached(&format!(
                    "SELECT id FROM trans_global WHERE gid = ?1 AND {UNFINISHED}"
                ))
                .and_then(|mut s| s.query_row(params![gid], |r| r.get(0)).optional())
                .map_err(backend)?;
            let Some(global_id) = unfinished else {
                return Err(StoreError::NotFound);
            };
            update_branches(conn, global_id, &outcomes, now)
        })
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
        let gid = gid.to_owned();
        let multi_statement = !change.branch_outcomes.is_empty();
        self.submit(multi_statement, move |conn| {
            let finish_time = (to == GlobalStatus::Succeed).then_some(now);
            let rollback_time = (to == GlobalStatus::Failed).then_some(now);
            // The row is found first and then updated by its id, which the branch outcomes are
            // written under: `UPDATE ... RETURNING` would build a temporary b-tree for its
            // result each time. The writer's transaction began IMMEDIATE (`writer.rs`): no other
            // connection can change the row between the two.
            let found: Option<i64> = conn
                .prepare_cached("SELECT id FROM trans_global WHERE gid = ?1 AND status = ?2")
                .and_then(|mut s| s.query_row(params![gid, from.as_str()], |r| r.get(0)).optional())
                .map_err(backend)?;
            let Some(global_id) = found else {
                return Err(StoreError::NotFound);
            };
            conn.prepare_cached(
                "UPDATE trans_global SET status = ?1, update_time = ?2, \
                 finish_time = COALESCE(?3, finish_time), rollback_time = COALESCE(?4, rollback_time), \
                 rollback_reason = COALESCE(?5, rollback_reason), result = COALESCE(?6, result), \
                 custom_data = COALESCE(?7, custom_data), options = COALESCE(?8, options) \
                 WHERE id = ?9",
            )
            .and_then(|mut s| {
                s.execute(params![
                    to.as_str(), now, finish_time, rollback_time, change.rollback_reason,
                    change.result, change.custom_data, change.options, global_id
                ])
            })
            .map_err(backend)?;
            update_branches(conn, global_id, &change.branch_outcomes, now)
        })
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
        let (gid, owner) = (gid.to_owned(), owner.to_owned());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE trans_global SET next_cron_interval = ?1, next_cron_time = ?2, update_time = ?3 \
                     WHERE gid = ?4 AND status = ?5 AND COALESCE(owner, '') = ?6",
                )
                .and_then(|mut s| {
                    s.execute(params![interval_secs, next_cron_time, now, gid, status.as_str(), owner])
                })
                .map_err(backend)?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
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
        let owner = crate::gid::new_gid();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "UPDATE trans_global SET next_cron_time = ?1, owner = ?2, update_time = ?3 \
                 WHERE id IN (SELECT id FROM trans_global WHERE {UNFINISHED} AND next_cron_time < ?4 \
                 ORDER BY next_cron_time LIMIT ?5) AND {UNFINISHED} RETURNING {GLOBAL_COLUMNS}"
            ))
            .and_then(|mut s| {
                s.query_map(params![lease_until, owner, now, due_before, limit], read_global)?
                    .collect()
            })
            .map_err(backend)
        })
        .await
    }

    async fn count_due(&self, due_before: Millis) -> StoreResult<u64> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT COUNT(*) FROM trans_global WHERE {UNFINISHED} AND next_cron_time < ?1"
            ))
            .and_then(|mut s| s.query_row(params![due_before], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(backend)
        })
        .await
    }

    async fn claim(
        &self,
        gid: &str,
        owner: &str,
        lease_until: Millis,
        now: Millis,
    ) -> StoreResult<Option<TransGlobal>> {
        let (gid, owner) = (gid.to_owned(), owner.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "UPDATE trans_global SET next_cron_time = ?1, owner = ?2, update_time = ?3 \
                 WHERE gid = ?4 AND {UNFINISHED} \
                 AND (COALESCE(owner, '') IN ('', ?2) OR next_cron_time < ?3) RETURNING {GLOBAL_COLUMNS}"
            ))
            .and_then(|mut s| s.query_row(params![lease_until, owner, now, gid], read_global).optional())
            .map_err(backend)
        })
        .await
    }

    async fn release(&self, gid: &str, owner: &str, now: Millis) -> StoreResult<()> {
        let (gid, owner) = (gid.to_owned(), owner.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("UPDATE trans_global SET owner = '', update_time = ?1 WHERE gid = ?2 AND owner = ?3")
                .and_then(|mut s| s.execute(params![now, gid, owner]))
                .map(drop)
                .map_err(backend)
        })
        .await
    }

    async fn reset_cron_times(
        &self,
        after: Millis,
        limit: usize,
        now: Millis,
    ) -> StoreResult<(usize, bool)> {
        self.write_all_or_none(move |conn| {
            let ids: Vec<i64> = conn
                .prepare_cached(&format!(
                    "SELECT id FROM trans_global WHERE {UNFINISHED} AND next_cron_time > ?1 \
                     AND COALESCE(owner, '') = '' LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![after, limit as i64 + 1], |r| r.get(0))?
                        .collect()
                })
                .map_err(backend)?;
            let has_remaining = ids.len() > limit;
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE trans_global SET next_cron_time = ?1, update_time = ?1 WHERE id = ?2",
                )
                .map_err(backend)?;
            for id in ids.iter().take(limit) {
                stmt.execute(params![now, id]).map_err(backend)?;
            }
            Ok((ids.len().min(limit), has_remaining))
        })
        .await
    }

    async fn reset_cron_time(&self, gid: &str, now: Millis) -> StoreResult<()> {
        let gid = gid.to_owned();
        self.write(move |conn| {
            let found = conn
                .prepare_cached("SELECT COALESCE(owner, '') = '' OR next_cron_time < ?1 FROM trans_global WHERE gid = ?2")
                .and_then(|mut s| s.query_row(params![now, gid], |r| r.get::<_, bool>(0)).optional())
                .map_err(backend)?;
            match found {
                None => Err(StoreError::NotFound),
                // A pass holds it: its lease stands.
                Some(false) => Ok(()),
                Some(true) => conn
                    .prepare_cached("UPDATE trans_global SET next_cron_time = ?1, update_time = ?1 WHERE gid = ?2")
                    .and_then(|mut s| s.execute(params![now, gid]))
                    .map(drop)
                    .map_err(backend),
            }
        })
        .await
    }

    async fn scan_kv(&self, cat: &str, position: &str, limit: usize) -> StoreResult<Page<KvEntry>> {
        // 0: from the start (the query tests `= 0`).
        let before = parse_position(position)?.unwrap_or(0);
        let cat = cat.to_owned();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT id, cat, k, v, version, create_time, update_time FROM kv \
                     WHERE cat = ?1 AND (?2 = 0 OR id < ?2) ORDER BY id DESC LIMIT ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![cat, before, limit as i64], read_kv)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(backend)?;
            Ok(page(rows, limit, |kv| kv.id))
        })
        .await
    }

    async fn find_kv(&self, cat: &str, key: &str) -> StoreResult<Vec<KvEntry>> {
        let (cat, key) = (cat.to_owned(), key.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, cat, k, v, version, create_time, update_time FROM kv \
                 WHERE (?1 = '' OR cat = ?1) AND (?2 = '' OR k = ?2) ORDER BY id",
            )
            .and_then(|mut s| s.query_map(params![cat, key], read_kv)?.collect())
            .map_err(backend)
        })
        .await
    }

    async fn create_kv(&self, cat: &str, key: &str, value: &str, now: Millis) -> StoreResult<()> {
        let (cat, key, value) = (cat.to_owned(), key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO kv (cat, k, v, version, create_time, update_time) VALUES (?1, ?2, ?3, 1, ?4, ?4)",
            )
            .and_then(|mut s| s.execute(params![cat, key, value, now]))
            .map(|_| ())
            .map_err(|e| if is_unique_violation(&e) { StoreError::UniqueConflict } else { backend(e) })
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
        let (cat, key, value) = (cat.to_owned(), key.to_owned(), value.to_owned());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE kv SET v = ?1, version = version + 1, update_time = ?2 \
                     WHERE cat = ?3 AND k = ?4 AND version = ?5",
                )
                .and_then(|mut s| s.execute(params![value, now, cat, key, version]))
                .map_err(backend)?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn delete_kv(&self, cat: &str, key: &str) -> StoreResult<()> {
        let (cat, key) = (cat.to_owned(), key.to_owned());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("DELETE FROM kv WHERE cat = ?1 AND k = ?2")
                .and_then(|mut s| s.execute(params![cat, key]))
                .map_err(backend)?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a temporary directory, removed when dropped.
    struct TempStore {
        store: SqliteStore,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for TempStore {
        type Target = SqliteStore;
        fn deref(&self) -> &SqliteStore {
            &self.store
        }
    }

    async fn fresh() -> Option<TempStore> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        Some(TempStore { store, _dir: dir })
    }

    mod suite {
        crate::store::suite::store_suite!(super::fresh());
    }

    #[tokio::test]
    async fn a_batch_that_cannot_begin_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let intruder = Connection::open(dir.path().join("dtm.sqlite")).unwrap();
        intruder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let global = crate::store::suite::sample_global("locked-out", 1_000);
        let refused = store.save_new(&global, &[]).await;
        assert!(
            matches!(refused, Err(StoreError::Backend(_))),
            "{refused:?}"
        );
        intruder.execute_batch("ROLLBACK").unwrap();
        assert!(
            store.find_global("locked-out").await.unwrap().is_none(),
            "a refused write was applied"
        );
        store.save_new(&global, &[]).await.unwrap();
    }

    /// A store whose branches are in the layout of before they were keyed by their global's row
    /// id gets them moved over when it is opened, each under its own global.
    #[tokio::test]
    async fn branches_keyed_by_gid_are_moved_to_their_globals_row_id() {
        use crate::store::suite::{branch, sample_global};
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store
                .save_new(&sample_global("g1", 1_000), &[])
                .await
                .unwrap();
            store
                .save_new(&sample_global("g2", 1_000), &[])
                .await
                .unwrap();
        }
        let old = Connection::open(dir.path().join("dtm.sqlite")).unwrap();
        old.execute_batch(
            "DROP TABLE trans_branch_op;
             CREATE TABLE trans_branch_op (
               gid TEXT NOT NULL, branch_id TEXT NOT NULL, op TEXT NOT NULL, pos INTEGER NOT NULL,
               url TEXT NOT NULL, bin_data BLOB, status TEXT NOT NULL, finish_time INTEGER,
               rollback_time INTEGER, create_time INTEGER, update_time INTEGER,
               PRIMARY KEY (gid, branch_id, op)
             ) WITHOUT ROWID;",
        )
        .unwrap();
        let written = [
            (0, branch("g2", "01", "action")),
            (0, branch("g1", "01", "compensate")),
            (1, branch("g1", "01", "action")),
        ];
        for (pos, b) in &written {
            old.execute(
                "INSERT INTO trans_branch_op (gid, branch_id, op, pos, url, bin_data, status, create_time, update_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![b.gid, b.branch_id, b.op, pos, b.url, b.bin_data, b.status, b.create_time],
            )
            .unwrap();
        }
        drop(old);

        let store = SqliteStore::open(dir.path()).unwrap();
        let g1 = store.find_branches("g1").await.unwrap();
        let ops: Vec<_> = g1
            .iter()
            .map(|b| (b.gid.as_str(), b.op.as_str(), b.url.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("g1", "compensate", "http://busi/01/compensate"),
                ("g1", "action", "http://busi/01/action")
            ]
        );
        assert_eq!(store.find_branches("g2").await.unwrap().len(), 1);
        store
            .append_branches(
                "g1",
                GlobalStatus::Prepared,
                &[branch("g1", "02", "action")],
            )
            .await
            .unwrap();
        drop(store);
        // Opened again, the store is already in the new layout and keeps what was added.
        let store = SqliteStore::open(dir.path()).unwrap();
        let g1 = store.find_branches("g1").await.unwrap();
        assert_eq!(g1.len(), 3);
        assert_eq!(g1[2].branch_id, "02");
    }

    /// What a statement's program does, one opcode name per step (`EXPLAIN`).
    fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        let names = stmt.query_map([], |r| r.get(1)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    #[tokio::test]
    async fn writes_of_globals_test_unfinished_without_a_temporary_btree() {
        use crate::store::suite::sample_global;
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let file = dir.path().join("dtm.sqlite");
        // The due index as stores made before had it.
        Connection::open(&file)
            .unwrap()
            .execute_batch(
                "DROP INDEX trans_global_unfinished_due;
                 CREATE INDEX trans_global_due ON trans_global(next_cron_time)
                   WHERE status IN ('prepared', 'submitted', 'aborting');",
            )
            .unwrap();

        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .save_new(&sample_global("g1", 1_000), &[])
            .await
            .unwrap();
        let conn = Connection::open(&file).unwrap();
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' \
                 AND tbl_name = 'trans_global' AND sql IS NOT NULL",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["trans_global_unfinished_due"]);
        // Inserts and status changes test the due index's condition; lookups test UNFINISHED.
        for sql in [
            "INSERT INTO trans_global (gid, trans_type, status, protocol) \
             VALUES ('g2', 'saga', 'submitted', 'http')",
            "UPDATE trans_global SET status = 'succeed' WHERE id = 1",
            &format!("SELECT id FROM trans_global WHERE gid = 'g1' AND {UNFINISHED}"),
        ] {
            let ops = opcodes(&conn, sql);
            assert!(
                !ops.iter().any(|op| op == "OpenEphemeral"),
                "{sql} builds a temporary b-tree: {ops:?}"
            );
        }
        let plan: String = conn
            .query_row(
                &format!(
                    "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM trans_global \
                     WHERE {UNFINISHED} AND next_cron_time < 5"
                ),
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("trans_global_unfinished_due"), "{plan}");
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let global = crate::store::suite::sample_global("reopen", 1_000);
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.save_new(&global, &[]).await.unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let found = store.find_global("reopen").await.unwrap().unwrap();
        assert_eq!(found.gid, "reopen");
        store.wipe_all().await.unwrap();
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(store.find_global("reopen").await.unwrap().is_none());
    }
}
