//! Lends connections to store calls and takes them back without a round trip.
//!
//! sqlx's pool pings every connection given back to it (sqlx-core 0.9, `return_to_pool`) before
//! it lends it again: one round trip more per store call, for the client and the server alike.
//! The lender takes its connections out of the pool (`detach`, so the pool only opens them) and
//! keeps the ones whose call ended, to lend them again as they are. A connection whose call
//! was dropped midway is closed instead (it may be in the middle of an exchange). One is pinged
//! before it is lent again when it may have gone bad: its call failed in the backend (a broken
//! connection, or only a deadlock the server undid), it was idle for a while, or it was kept
//! since before the store's last failed call (a server restart).

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::{Connection, Database};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::pool::{LastFailure, CONNECT_TIMEOUT};
use crate::store::{StoreError, StoreResult};

/// A kept connection idle for longer is checked with a ping before it is lent.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);
/// A kept connection unused for this long is closed (as sqlx's pool closes idle ones).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A connection the lender keeps between calls.
struct Kept<C> {
    connection: C,
    /// When it was opened, for `Store.ConnMaxLifeTime`.
    opened: Instant,
    /// When its last call ended.
    idle_since: Instant,
    /// Its last call failed in the backend: it is pinged before it is lent again.
    failed: bool,
}

/// What becomes of a lent connection when its call is over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// The call was dropped midway: the connection may be in the middle of an exchange.
    Close,
    Keep,
    /// The call failed in the backend: the connection may be broken (or not: a deadlock).
    KeepChecked,
}

/// The connections of one store: at most `max` at once, opened by `pool`.
pub(super) struct Lender<DB: Database> {
    pool: sqlx::Pool<DB>,
    /// Connections between calls, the last given back on top (the most likely to be alive).
    kept: Mutex<Vec<Kept<DB::Connection>>>,
    /// One permit per connection the store may have: a call holding one finds a kept
    /// connection or may open one.
    permits: Semaphore,
    max: usize,
    /// Connections older than this are closed when given back (`Store.ConnMaxLifeTime`).
    lifetime: Option<Duration>,
    last_failure: LastFailure,
}

impl<DB: Database> Lender<DB> {
    pub(super) fn new(
        pool: sqlx::Pool<DB>,
        lifetime: Option<Duration>,
        last_failure: LastFailure,
    ) -> Self {
        let max = pool.options().get_max_connections() as usize;
        Lender {
            pool,
            kept: Mutex::new(Vec::new()),
            permits: Semaphore::new(max),
            max,
            lifetime,
            last_failure,
        }
    }

    /// A connection for one call: a kept one, or a new one. Waits at most [`CONNECT_TIMEOUT`]
    /// for a permit (`PoolTimedOut` when every connection stayed busy).
    pub(super) async fn lend(&self) -> Result<Lent<'_, DB>, sqlx::Error> {
        if self.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed);
        }
        let permit = tokio::time::timeout(CONNECT_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        while let Some(mut kept) = self.take_kept() {
            if !self.suspect(&kept) || kept.connection.ping().await.is_ok() {
                return Ok(self.lent(kept.connection, kept.opened, permit));
            }
            close(kept.connection);
        }
        let connection = self.pool.acquire().await?.detach();
        Ok(self.lent(connection, Instant::now(), permit))
    }

    /// Closes the pool and every kept connection; later calls fail (the tests' lost server).
    #[cfg(test)]
    pub(super) async fn close(&self) {
        self.pool.close().await;
        let kept = self.kept.lock().map(|mut kept| std::mem::take(&mut *kept));
        for kept in kept.unwrap_or_default() {
            let _ = kept.connection.close().await;
        }
    }

    /// (connections open, of them idle, most allowed).
    pub(super) fn usage(&self) -> (usize, usize, usize) {
        let idle = self.kept.lock().map_or(0, |kept| kept.len());
        let lent = self.max - self.permits.available_permits();
        (lent + idle, idle, self.max)
    }

    fn take_kept(&self) -> Option<Kept<DB::Connection>> {
        self.kept.lock().ok()?.pop()
    }

    /// A kept connection that may have gone bad: idle for a while, or since before the last
    /// failed call.
    fn suspect(&self, kept: &Kept<DB::Connection>) -> bool {
        let idle = kept.idle_since.elapsed();
        kept.failed
            || idle >= IDLE_BEFORE_CHECK
            || self
                .last_failure
                .lock()
                .map(|at| at.is_some_and(|at| at.elapsed() <= idle))
                .unwrap_or(true)
    }

    fn lent<'a>(
        &'a self,
        connection: DB::Connection,
        opened: Instant,
        permit: SemaphorePermit<'a>,
    ) -> Lent<'a, DB> {
        Lent {
            connection: Some(connection),
            opened,
            then: Then::Close,
            lender: self,
            _permit: permit,
        }
    }

    fn give_back(&self, connection: DB::Connection, opened: Instant, failed: bool) {
        let expired = self.lifetime.is_some_and(|life| opened.elapsed() >= life);
        if expired || self.pool.is_closed() {
            return close(connection);
        }
        if let Ok(mut kept) = self.kept.lock() {
            // The least recently used are at the bottom: after a burst, the connections it
            // opened and no longer needs.
            while kept
                .first()
                .is_some_and(|k| k.idle_since.elapsed() >= IDLE_TIMEOUT)
            {
                close(kept.remove(0).connection);
            }
            kept.push(Kept {
                connection,
                opened,
                idle_since: Instant::now(),
                failed,
            });
        }
    }
}

/// A connection lent for one call. Dropped, it is closed, unless [`Lent::settle`] saw the call
/// end: then it is kept for the next call (before its permit goes back, so the call that gets
/// the permit finds it).
pub(super) struct Lent<'a, DB: Database> {
    connection: Option<DB::Connection>,
    opened: Instant,
    then: Then,
    lender: &'a Lender<DB>,
    _permit: SemaphorePermit<'a>,
}

impl<DB: Database> Lent<'_, DB> {
    /// Returns the call's `result`, the connection kept for another call: as it is, or checked
    /// first if the backend failed (an answer the store understood, such as a duplicate gid or
    /// a row not found, leaves the connection as good as it was).
    pub(super) fn settle<T>(mut self, result: StoreResult<T>) -> StoreResult<T> {
        self.then = match result {
            Err(StoreError::Backend(_)) => Then::KeepChecked,
            _ => Then::Keep,
        };
        result
    }
}

impl<DB: Database> Deref for Lent<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        // Present from `lent` until `drop`.
        self.connection.as_ref().expect("a lent connection")
    }
}

impl<DB: Database> DerefMut for Lent<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.connection.as_mut().expect("a lent connection")
    }
}

impl<DB: Database> Drop for Lent<'_, DB> {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        match self.then {
            Then::Close => close(connection),
            then => self
                .lender
                .give_back(connection, self.opened, then == Then::KeepChecked),
        }
    }
}

/// Closes `connection` in the background, telling the server (a broken one just goes away).
fn close<C: Connection + 'static>(connection: C) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = connection.close().await;
        });
    }
}
