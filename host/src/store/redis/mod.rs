//! The Redis store: every state change is one Lua script on the keys of one transaction, and the
//! keys are spread over hash slots so a Redis Cluster can share the load (docs/engine.md §4.4,
//! improved: dtm puts every key under `{a}`, one slot).
//!
//! # Key layout
//!
//! `N` is `Store.RedisPrefix` with `{` and `}` removed (dtm's default `{a}` would otherwise pin
//! every key to one slot); `B` is a bucket number, `0..16`, chosen by a stable hash of the gid.
//!
//! | key | type | content | TTL |
//! |---|---|---|---|
//! | `N:{<gid>}:g` | hash | the global record, one field per column | `DataExpire`, refreshed on each write; `FinishedDataExpire` once finished |
//! | `N:{<gid>}:b` | hash | branch records: `n` (count), `<pos>:url`, `<pos>:bin`, `<pos>:bid`, `<pos>:op`, `<pos>:st`, `<pos>:ft`, `<pos>:ct`, `<pos>:ut`, and `ix:<len>:<branch_id><op>` → position | as `:g` |
//! | `N:{<gid>}:m` | string | "index entry seen without a record" marker | a few lease periods |
//! | `N:cron:{B}` | sorted set | gid of each unfinished transaction, score = `next_cron_time` (ms) | none |
//! | `N:list:{B}` | sorted set | `<16 hex digits of create_time><gid>`, all scores 0 (listing order) | none |
//! | `N:{kv:<cat>}:e:<key>` | hash | one KV entry: `id`, `v`, `version`, `create_time`, `update_time` | none |
//! | `N:{kv:<cat>}:o` | sorted set | keys of a category, score = id (listing order) | none |
//! | `N:{kv}:cats`, `N:{kv}:seq` | set, string | KV categories; the KV id counter | none |
//!
//! The keys of one transaction share the hash tag `{<gid>}`, so each script touches one slot.
//! The schedule (`cron`) and listing (`list`) indexes live in 16 buckets on other slots, so
//! creations and claims from several hosts spread over 16 keys instead of one. On a cluster an
//! index update is a separate call from the transaction's script (another slot); the order of the
//! two calls is chosen so that a crash between them leaves an index entry without (or ahead of)
//! its record, never a record without its entry, and the readers repair such entries:
//!
//! * creation indexes first (`ZADD LT` / `NX`), then writes the record: an entry whose record
//!   never came is dropped by a claim after being seen twice without a record, one lease apart
//!   (the `:m` marker), so a creation still in flight is not mistaken for one;
//! * a status change to a final status writes the record, then removes the entry: a claim that
//!   meets a finished record drops the entry;
//! * a reschedule writes the record, then the entry's score: a claim that meets a record not yet
//!   due moves the entry to the record's time.
//!
//! On one node, where a script may touch any key, the creation, status change and reschedule
//! scripts write the index entries themselves: one round trip and one command each, and nothing
//! between to repair.
//!
//! Listing entries of records that expired or were never written are removed by a trim step
//! (`trim_listing`), run when a claim finds nothing due and on about one creation in
//! `TRIM_EVERY`.
//!
//! # One node or a cluster
//!
//! `connection::Connection` is either link; the store is written once against it. Scripts and
//! the pipelines of one slot run as they are; see `connection` for how cross-slot pipelines and
//! reads over many slots are sent on a cluster, and `wipe_all` (`store.rs`) for the scan of every master.
//!
//! # Claims
//!
//! `claim_due` starts at a random bucket and walks the 16 until its batch is full. Per bucket one
//! script takes the lowest-scored gids due before `due_before` and moves their scores to
//! `lease_until`, so no other claim sees them until the lease passes (then they are claimable
//! again: a dead host's work is taken over). Then one pipeline runs, on each transaction's slot,
//! a second script that checks that the record is unfinished and due, and stamps
//! `next_cron_time` and the batch's fresh `owner`.
//!
//! # Files
//!
//! `keys.rs`: the key layout above and the listing entries; `record.rs`: records to hash fields
//! and script arguments, and back; `scripts.rs` and `lua/`: the Lua scripts, one file each, whose
//! first lines state their KEYS, ARGV and answer; `store.rs`: the `Store` implementation and the
//! index maintenance (claims' repairs, listing trims); `connection.rs`: one node or a cluster.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{RedisResult, Script};

mod connection;
mod keys;
mod record;
mod scripts;
mod store;
#[cfg(test)]
mod tests;

use connection::Connection;
use keys::{Keys, BUCKETS};
use scripts::{is_noscript, Scripts};

use super::{Store, StoreError, StoreOptions, StoreResult};
use crate::clock::Millis;

/// Longest a store call may take, so a Redis that hangs or is gone fails a request instead of
/// blocking it (reconnection attempts included).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

pub struct RedisStore {
    conn: Connection,
    keys: Keys,
    scripts: Scripts,
    /// TTL of an unfinished transaction's keys, seconds (≤ 0: none).
    data_expire: i64,
    /// TTL once finished, seconds (≤ 0: none).
    finished_expire: i64,
    /// Per bucket, the listing entry the last trim step stopped at (`""`: the start).
    trim_cursors: Mutex<Vec<String>>,
}

/// Connects to the Redis server `config` names.
pub async fn open(config: &StoreOptions) -> StoreResult<Arc<dyn Store>> {
    Ok(Arc::new(RedisStore::connect(config).await?))
}

impl RedisStore {
    pub async fn connect(config: &StoreOptions) -> StoreResult<Self> {
        let conn = Connection::open(config).await?;
        Ok(Self {
            conn,
            keys: Keys::new(&config.redis_prefix),
            scripts: Scripts::new(),
            data_expire: config.data_expire,
            finished_expire: config.finished_data_expire,
            trim_cursors: Mutex::new(vec![String::new(); BUCKETS]),
        })
    }

    /// Runs one Redis call with the store's deadline, mapping failures to `Backend`.
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Backend(format!("redis {what}: {e}"))),
            Err(_) => Err(StoreError::Backend(format!(
                "redis {what}: no answer within {} s (a write may or may not have been applied)",
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Runs a script (EVALSHA, loading it on NOSCRIPT).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        self.call(what, invocation.invoke_async(&mut conn)).await
    }

    /// Runs a pipeline whose scripts are all `script`. If the server lost its script cache
    /// (restart, SCRIPT FLUSH), none of them ran: the script is loaded and the pipeline sent again,
    /// so its other commands must be safe to repeat.
    async fn eval_pipe<T: redis::FromRedisValue>(
        &self,
        what: &str,
        script: &Script,
        pipe: &redis::Pipeline,
    ) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        let run = async move {
            match pipe.query_async(&mut conn).await {
                Err(e) if is_noscript(&e) => {
                    script.load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
                other => other,
            }
        };
        self.call(what, run).await
    }

    async fn pipe<T: redis::FromRedisValue>(
        &self,
        what: &str,
        pipe: &redis::Pipeline,
    ) -> StoreResult<T> {
        if pipe.is_empty() {
            // Redis refuses an empty pipeline; its answer is an empty list.
            return T::from_redis_value(redis::Value::Array(Vec::new()))
                .map_err(|e| StoreError::Backend(format!("redis {what}: {e}")));
        }
        let mut conn = self.conn.clone();
        self.call(what, pipe.query_async(&mut conn)).await
    }

    /// Independent commands, possibly on many slots (see `Connection::query_each`).
    async fn each<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmds: &[redis::Cmd],
    ) -> StoreResult<Vec<T>> {
        self.call(what, self.conn.query_each(cmds)).await
    }

    async fn cmd<T: redis::FromRedisValue>(&self, what: &str, cmd: &redis::Cmd) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        self.call(what, cmd.query_async(&mut conn)).await
    }

    fn ttl(&self, finished: bool) -> i64 {
        if finished {
            self.finished_expire
        } else {
            self.data_expire
        }
    }
}
