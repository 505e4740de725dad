//! The group-commit writer: one thread owns the writing connection, takes every write waiting in
//! its queue, runs each inside its own savepoint of one transaction, commits once (one fsync for
//! the whole batch) and only then answers each caller.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{backend, SqliteStore};
use crate::store::{StoreError, StoreResult};

/// Most writes folded into one commit.
const MAX_BATCH: usize = 1024;

/// Answers one caller once the batch holding its write has committed (or failed to).
type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// One write: runs on the connection (or, given none, only prepares its answer: the batch
/// failed before it), says whether to keep it, and how to answer.
type WriteFn = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;

pub(super) struct WriteOp {
    /// Runs several statements, so it gets a savepoint to undo them all on error. A single
    /// statement that fails changes nothing by itself.
    multi_statement: bool,
    run: WriteFn,
}

/// Starts the writer thread on `conn`; writes are queued to the sender it returns.
pub(super) fn spawn(conn: Connection) -> StoreResult<mpsc::Sender<WriteOp>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run_writer(conn, rx))
        .map_err(backend)?;
    Ok(tx)
}

impl SqliteStore {
    /// A write made of one statement.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.submit(false, f).await
    }

    /// A write made of several statements: all of them or none.
    pub(super) async fn write_all_or_none<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.submit(true, f).await
    }

    pub(super) async fn submit<T: Send + 'static>(
        &self,
        multi_statement: bool,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        let run: WriteFn = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => f(conn),
                None => Err(backend("not run")),
            };
            let keep = result.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (keep, done)
        });
        let closed = || backend("the store writer has stopped");
        self.writer
            .send(WriteOp {
                multi_statement,
                run,
            })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// Runs a parameterless statement through the statement cache (no re-parsing per batch).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer thread: one commit (one fsync) per batch of queued writes.
fn run_writer(conn: Connection, rx: mpsc::Receiver<WriteOp>) {
    while let Ok(first) = rx.recv() {
        // Everything that queued up while the last commit was being fsynced goes into this one.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut completions = Vec::with_capacity(batch.len());
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            let error = backend(e);
            for op in batch {
                let (_, done) = (op.run)(None);
                done(Err(error.clone()));
            }
            continue;
        }
        // Set when SQLite rolled the whole transaction back (an I/O error, a full disk): the
        // rest of the batch is not run, and nothing of it is reported as written.
        let mut broken: Option<StoreError> = None;
        for op in batch {
            if let Some(error) = &broken {
                let (_, done) = (op.run)(None);
                completions.push((done, Some(error.clone())));
                continue;
            }
            if op.multi_statement {
                if let Err(e) = exec(&conn, "SAVEPOINT op") {
                    let (_, done) = (op.run)(None);
                    completions.push((done, Some(backend(e))));
                    continue;
                }
            }
            let (keep, done) = (op.run)(Some(&conn));
            let mut op_error = None;
            if op.multi_statement && !conn.is_autocommit() {
                let undone = if keep {
                    Ok(())
                } else {
                    exec(&conn, "ROLLBACK TO op")
                };
                op_error = undone
                    .and_then(|()| exec(&conn, "RELEASE op"))
                    .err()
                    .map(backend);
            }
            if conn.is_autocommit() {
                broken = Some(backend("the store rolled back a batch of writes after an error; none of them was written"));
            }
            completions.push((done, op_error));
        }
        let commit = match &broken {
            Some(error) => Err(error.clone()),
            None => {
                let commit = exec(&conn, "COMMIT").map_err(backend);
                if commit.is_err() {
                    let _ = exec(&conn, "ROLLBACK");
                }
                commit
            }
        };
        for (done, op_error) in completions {
            done(match (&commit, op_error) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), Some(e)) => Err(e),
                (Ok(()), None) => Ok(()),
            });
        }
    }
}
