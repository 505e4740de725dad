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
//! creations and claims from several hosts spread over 16 keys instead of one. An index update is
//! a separate call from the transaction's script; the order of the two calls is chosen so that a
//! crash between them leaves an index entry without (or ahead of) its record, never a record
//! without its entry, and the readers repair such entries:
//!
//! * creation indexes first (`ZADD LT` / `NX`), then writes the record: an entry whose record
//!   never came is dropped by a claim after being seen twice without a record, one lease apart
//!   (the `:m` marker), so a creation still in flight is not mistaken for one;
//! * a status change to a final status writes the record, then removes the entry: a claim that
//!   meets a finished record drops the entry;
//! * a reschedule writes the record, then the entry's score: a claim that meets a record not yet
//!   due moves the entry to the record's time.
//!
//! Listing entries of records that expired or were never written are removed by a trim step
//! (`trim_listing`), run when a claim finds nothing due and on about one creation in
//! `TRIM_EVERY`.
//!
//! # One node or a cluster
//!
//! `connection::Connection` is either link; the store is written once against it. Scripts and
//! the pipelines of one slot run as they are; see `connection` for how cross-slot pipelines and
//! reads over many slots are sent on a cluster, and `wipe_all` for the scan of every master.
//!
//! # Claims
//!
//! `claim_due` starts at a random bucket and walks the 16 until its batch is full. Per bucket one
//! script takes the lowest-scored gids due before `due_before` and moves their scores to
//! `lease_until`, so no other claim sees them until the lease passes (then they are claimable
//! again: a dead host's work is taken over). Then one pipeline runs, on each transaction's slot,
//! a second script that checks that the record is unfinished and due, and stamps
//! `next_cron_time` and the batch's fresh `owner`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use redis::{RedisResult, Script};

mod connection;

use connection::Connection;

use super::{BranchOutcome, Page, StatusChange, Store, StoreError, StoreOptions, StoreResult};
use crate::clock::Millis;
use crate::model::{Branch, GlobalStatus, KvEntry, ScanFilter, TransGlobal, TransOptions};

/// Buckets of the schedule and listing indexes. Part of the layout: every host on one Redis must
/// use the same number.
const BUCKETS: usize = 16;
/// Longest a store call may take, so a Redis that hangs or is gone fails a request instead of
/// blocking it (reconnection attempts included).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Index entries a claim may find stale before giving up for this round.
const CLAIM_REPAIR_BUDGET: usize = 64;
/// A listing entry whose record is missing is removed only once it is this old, so a creation
/// between its index write and its record write is left alone.
const LISTING_GRACE_MS: i64 = 60_000;
/// Listing entries checked per trim step.
const TRIM_BATCH: usize = 64;
/// About one creation in this many also runs a trim step, so trimming keeps pace with creation.
const TRIM_EVERY: u32 = 32;
/// Listing entries examined per `scan_globals` call before it returns a partial page.
const SCAN_EXAMINE_MAX: usize = 10_000;

/// Helpers every script starts with.
const PRELUDE: &str = r#"
local function expire(ttl, ...)
  for _, key in ipairs({...}) do
    if tonumber(ttl) > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
  end
end
local function unfinished(st)
  return st == 'prepared' or st == 'submitted' or st == 'aborting'
end
-- Branch records come as 9 ARGV entries each from `base`: index field, url, bin_data, branch_id,
-- op, status, finish_time ('' = none), create_time, update_time.
local function duplicate_branch(key, base, nb)
  local seen = {}
  for i = 0, nb - 1 do
    local ix = ARGV[base + i * 9]
    if seen[ix] or redis.call('HEXISTS', key, ix) == 1 then return true end
    seen[ix] = true
  end
  return false
end
-- Branch outcomes come as 2 ARGV entries each from `base`: index field, status. Sets them all,
-- or none when one of the records does not exist (then returns false).
local function set_outcomes(key, base, n, now)
  local ps = {}
  for i = 0, n - 1 do
    ps[i] = redis.call('HGET', key, ARGV[base + i * 2])
    if not ps[i] then return false end
  end
  for i = 0, n - 1 do
    local p = ps[i]
    redis.call('HSET', key, p .. ':st', ARGV[base + i * 2 + 1], p .. ':ft', now, p .. ':ut', now)
  end
  return true
end
local function add_branches(key, first, base, nb)
  for i = 0, nb - 1 do
    local a = base + i * 9
    local p = tostring(first + i)
    redis.call('HSET', key, ARGV[a], p, p .. ':url', ARGV[a + 1], p .. ':bin', ARGV[a + 2],
      p .. ':bid', ARGV[a + 3], p .. ':op', ARGV[a + 4], p .. ':st', ARGV[a + 5],
      p .. ':ct', ARGV[a + 7], p .. ':ut', ARGV[a + 8])
    if ARGV[a + 6] ~= '' then redis.call('HSET', key, p .. ':ft', ARGV[a + 6]) end
  end
  if nb > 0 then redis.call('HSET', key, 'n', tostring(first + nb)) end
end
"#;

/// KEYS: g, b. ARGV: ttl, field count F, F field/value entries, branch count, branches.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'conflict', redis.call('HGET', KEYS[1], 'create_time') or ''}
end
local nf = tonumber(ARGV[2])
local nb = tonumber(ARGV[3 + nf])
if duplicate_branch(KEYS[2], 4 + nf, nb) then return {'conflict', ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + nf))
add_branches(KEYS[2], 0, 4 + nf, nb)
expire(ARGV[1], KEYS[1], KEYS[2])
return {'ok'}
"#;

/// KEYS: g, b. ARGV: expected status, ttl, branch count, branches.
const APPEND: &str = r#"
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return {'notfound'} end
local nb = tonumber(ARGV[3])
if duplicate_branch(KEYS[2], 4, nb) then return {'conflict'} end
add_branches(KEYS[2], tonumber(redis.call('HGET', KEYS[2], 'n') or '0'), 4, nb)
expire(ARGV[2], KEYS[1], KEYS[2])
return {'ok'}
"#;

/// KEYS: g, b. ARGV: now, ttl, outcome count, outcomes.
const OUTCOMES: &str = r#"
if not unfinished(redis.call('HGET', KEYS[1], 'status')) then return {'notfound'} end
if not set_outcomes(KEYS[2], 4, tonumber(ARGV[3]), ARGV[1]) then return {'notfound'} end
expire(ARGV[2], KEYS[1], KEYS[2])
return {'ok'}
"#;

/// KEYS: g, b. ARGV: from, to, now, ttl, outcome count N, N outcomes, then field/value entries
/// to set.
const CHANGE_STATUS: &str = r#"
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return {'notfound'} end
local no = tonumber(ARGV[5])
if not set_outcomes(KEYS[2], 6, no, ARGV[3]) then return {'notfound'} end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'update_time', ARGV[3])
if ARGV[2] == 'succeed' then redis.call('HSET', KEYS[1], 'finish_time', ARGV[3]) end
if ARGV[2] == 'failed' then redis.call('HSET', KEYS[1], 'rollback_time', ARGV[3]) end
local fields = 6 + no * 2
if #ARGV >= fields then redis.call('HSET', KEYS[1], unpack(ARGV, fields)) end
expire(ARGV[4], KEYS[1], KEYS[2])
return {'ok'}
"#;

/// KEYS: g, b. ARGV: status, interval, next_cron_time, now, ttl, owner.
const TOUCH: &str = r#"
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return {'notfound'} end
if (redis.call('HGET', KEYS[1], 'owner') or '') ~= ARGV[6] then return {'notfound'} end
redis.call('HSET', KEYS[1], 'next_cron_interval', ARGV[2], 'next_cron_time', ARGV[3],
  'update_time', ARGV[4])
expire(ARGV[5], KEYS[1], KEYS[2])
return {'ok'}
"#;

/// KEYS: g, b. ARGV: owner, lease_until, now, ttl. `claimed` + the record's fields while it
/// is unfinished and no other pass holds it; else `held`.
const CLAIM_ONE: &str = r#"
local st = redis.call('HGET', KEYS[1], 'status')
if not st or not unfinished(st) then return {'held'} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local next = tonumber(redis.call('HGET', KEYS[1], 'next_cron_time') or '0')
if owner ~= '' and owner ~= ARGV[1] and next >= tonumber(ARGV[3]) then return {'held'} end
redis.call('HSET', KEYS[1], 'next_cron_time', ARGV[2], 'owner', ARGV[1], 'update_time', ARGV[3])
expire(ARGV[4], KEYS[1], KEYS[2])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 'claimed')
return out
"#;

/// KEYS: g. ARGV: owner, now.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '', 'update_time', ARGV[2])
return 1
"#;

/// KEYS: cron bucket. ARGV: due_before, lease_until, count. The `count` lowest-scored due gids,
/// leased.
const CLAIM_BUCKET: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, gid in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], gid) end
return due
"#;

/// KEYS: g, b, m. ARGV: due_before, lease_until, owner, now, ttl, marker ttl (ms).
/// `claimed` + the record's fields, `later` + its next_cron_time, `missing` (first time without
/// a record) or `gone` (missing twice, or finished: the index entry is stale).
const CLAIM_GID: &str = r#"
local st = redis.call('HGET', KEYS[1], 'status')
if not st then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'gone'} end
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[6])
  return {'missing'}
end
if not unfinished(st) then return {'gone'} end
local next = redis.call('HGET', KEYS[1], 'next_cron_time') or '0'
if tonumber(next) >= tonumber(ARGV[1]) then return {'later', next} end
redis.call('HSET', KEYS[1], 'next_cron_time', ARGV[2], 'owner', ARGV[3], 'update_time', ARGV[4])
expire(ARGV[5], KEYS[1], KEYS[2])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 'claimed')
return out
"#;

/// KEYS: cron bucket. ARGV: gid, lease_until, new score ('' = remove). Applies only while the
/// entry still has the lease this claim gave it, so a newer write to the entry wins.
const SETTLE: &str = r#"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1])
else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
"#;

/// KEYS: g, b. ARGV: now, ttl, after ('' = any status; else only unfinished records whose
/// next_cron_time is later than it). `ok` (unfinished), `finished`, `held` (a pass holds it:
/// its lease stands) or `notfound`.
const RESET: &str = r#"
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'notfound'} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local lease = tonumber(redis.call('HGET', KEYS[1], 'next_cron_time') or '0')
if unfinished(st) and owner ~= '' and lease >= tonumber(ARGV[1]) then return {'held'} end
if ARGV[3] ~= '' then
  local next = redis.call('HGET', KEYS[1], 'next_cron_time') or '0'
  if not unfinished(st) or tonumber(next) <= tonumber(ARGV[3]) then return {'notfound'} end
end
redis.call('HSET', KEYS[1], 'next_cron_time', ARGV[1], 'update_time', ARGV[1])
if not unfinished(st) then return {'finished'} end
expire(ARGV[2], KEYS[1], KEYS[2])
return {'ok'}
"#;

/// KEYS: entry, category order. ARGV: key, value, now, id.
const KV_CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict'} end
redis.call('HSET', KEYS[1], 'id', ARGV[4], 'v', ARGV[2], 'version', '1', 'create_time', ARGV[3],
  'update_time', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {'ok'}
"#;

/// KEYS: entry. ARGV: value, expected version, now.
const KV_UPDATE: &str = r#"
local v = redis.call('HGET', KEYS[1], 'version')
if not v or tonumber(v) ~= tonumber(ARGV[2]) then return {'notfound'} end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'update_time', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return {'ok'}
"#;

/// KEYS: entry, category order. ARGV: key.
const KV_DELETE: &str = r#"
if redis.call('DEL', KEYS[1]) == 0 then return {'notfound'} end
redis.call('ZREM', KEYS[2], ARGV[1])
return {'ok'}
"#;

struct Scripts {
    create: Script,
    append: Script,
    outcomes: Script,
    change_status: Script,
    touch: Script,
    claim_bucket: Script,
    claim_gid: Script,
    claim_one: Script,
    release: Script,
    settle: Script,
    reset: Script,
    kv_create: Script,
    kv_update: Script,
    kv_delete: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Self {
            create: with_prelude(CREATE),
            append: with_prelude(APPEND),
            outcomes: with_prelude(OUTCOMES),
            change_status: with_prelude(CHANGE_STATUS),
            touch: with_prelude(TOUCH),
            claim_bucket: Script::new(CLAIM_BUCKET),
            claim_gid: with_prelude(CLAIM_GID),
            claim_one: with_prelude(CLAIM_ONE),
            release: Script::new(RELEASE),
            settle: Script::new(SETTLE),
            reset: with_prelude(RESET),
            kv_create: Script::new(KV_CREATE),
            kv_update: Script::new(KV_UPDATE),
            kv_delete: Script::new(KV_DELETE),
        }
    }
}

/// Key names (see the module doc).
struct Keys {
    ns: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            ns: prefix.chars().filter(|c| !matches!(c, '{' | '}')).collect(),
        }
    }
    fn global(&self, gid: &str) -> String {
        format!("{}:{{{gid}}}:g", self.ns)
    }
    fn branches(&self, gid: &str) -> String {
        format!("{}:{{{gid}}}:b", self.ns)
    }
    fn marker(&self, gid: &str) -> String {
        format!("{}:{{{gid}}}:m", self.ns)
    }
    fn cron(&self, bucket: usize) -> String {
        format!("{}:cron:{{{bucket}}}", self.ns)
    }
    fn list(&self, bucket: usize) -> String {
        format!("{}:list:{{{bucket}}}", self.ns)
    }
    fn kv_entry(&self, cat: &str, key: &str) -> String {
        format!("{}:{{kv:{cat}}}:e:{key}", self.ns)
    }
    fn kv_order(&self, cat: &str) -> String {
        format!("{}:{{kv:{cat}}}:o", self.ns)
    }
    fn kv_cats(&self) -> String {
        format!("{}:{{kv}}:cats", self.ns)
    }
    fn kv_seq(&self) -> String {
        format!("{}:{{kv}}:seq", self.ns)
    }
}

/// `text` matched literally inside a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The index bucket of a gid: FNV-1a, stable across hosts and builds (std's hasher is not).
fn bucket_of(gid: &str) -> usize {
    let hash = gid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % BUCKETS as u64) as usize
}

/// A timestamp as 16 hex digits that sort like the numbers (sign bit flipped).
fn time_key(ms: Millis) -> String {
    format!("{:016x}", (ms as u64) ^ (1 << 63))
}

fn listing_member(create_time: Millis, gid: &str) -> String {
    format!("{}{gid}", time_key(create_time))
}

/// The create_time and gid of a listing entry (`None` if it is not one).
fn split_member(member: &str) -> Option<(Millis, &str)> {
    let (time, gid) = (member.get(..16)?, member.get(16..)?);
    if gid.is_empty() || !time.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let bits = u64::from_str_radix(time, 16).ok()?;
    Some(((bits ^ (1 << 63)) as i64, gid))
}

/// Whether a listing entry no longer stands for a record: the record (with `record_time` as its
/// create_time) belongs to another creation, or is missing and the entry is past its grace time.
fn listing_stale(member: &str, record_time: Option<Millis>, now: Millis) -> bool {
    let Some((time, _)) = split_member(member) else {
        return true;
    };
    match record_time {
        Some(record_time) => record_time != time,
        None => time < now.saturating_sub(LISTING_GRACE_MS),
    }
}

/// The hash field that indexes a branch record by (branch_id, op); the length prefix keeps
/// ("a", "bc") and ("ab", "c") apart.
fn branch_index(branch_id: &str, op: &str) -> String {
    format!("ix:{}:{branch_id}{op}", branch_id.len())
}

/// The count, then index field and status of each outcome, as `set_outcomes` reads them.
fn outcome_args(outcomes: &[BranchOutcome]) -> Vec<String> {
    let mut args = Vec::with_capacity(1 + outcomes.len() * 2);
    args.push(outcomes.len().to_string());
    for o in outcomes {
        args.push(branch_index(&o.branch_id, &o.op));
        args.push(o.status.to_owned());
    }
    args
}

fn opt_time(t: Option<Millis>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

fn global_fields(g: &TransGlobal) -> [(&'static str, String); 17] {
    [
        ("gid", g.gid.clone()),
        ("trans_type", g.trans_type.as_str().to_owned()),
        ("status", g.status.as_str().to_owned()),
        ("query_prepared", g.query_prepared.clone()),
        ("protocol", g.protocol.as_str().to_owned()),
        ("create_time", g.create_time.to_string()),
        ("update_time", g.update_time.to_string()),
        ("finish_time", opt_time(g.finish_time)),
        ("rollback_time", opt_time(g.rollback_time)),
        ("options", g.options.to_json()),
        ("custom_data", g.custom_data.clone()),
        ("next_cron_interval", g.next_cron_interval.to_string()),
        ("next_cron_time", g.next_cron_time.to_string()),
        ("owner", g.owner.clone()),
        ("ext_data", g.ext_data.clone()),
        ("result", g.result.clone()),
        ("rollback_reason", g.rollback_reason.clone()),
    ]
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redis: unreadable {what}: {detail}"))
}

/// A global record from its hash fields (`None` for an empty hash: no such record).
/// The record a claim script returned after its verdict, as field/value pairs.
fn claimed_record(reply: &[String]) -> StoreResult<Option<TransGlobal>> {
    let fields = reply[1..]
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    read_global(&fields)
}

fn read_global(fields: &HashMap<String, String>) -> StoreResult<Option<TransGlobal>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let num = |name: &str| -> StoreResult<i64> {
        let value = text(name);
        value
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("{name} = '{value}'")))
    };
    let opt = |name: &str| -> StoreResult<Option<i64>> {
        match fields.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(_) => num(name).map(Some),
        }
    };
    let parse = |name: &str| -> StoreResult<String> {
        fields
            .get(name)
            .cloned()
            .ok_or_else(|| corrupt("transaction", format_args!("{name} missing")))
    };
    let (trans_type, status, protocol) =
        (parse("trans_type")?, parse("status")?, parse("protocol")?);
    Ok(Some(TransGlobal {
        id: 0,
        gid: text("gid"),
        trans_type: trans_type
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("trans_type '{trans_type}'")))?,
        status: status
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("status '{status}'")))?,
        query_prepared: text("query_prepared"),
        protocol: protocol
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("protocol '{protocol}'")))?,
        create_time: num("create_time")?,
        update_time: num("update_time")?,
        finish_time: opt("finish_time")?,
        rollback_time: opt("rollback_time")?,
        options: TransOptions::from_json(&text("options")),
        custom_data: text("custom_data"),
        next_cron_interval: num("next_cron_interval")?,
        next_cron_time: num("next_cron_time")?,
        owner: text("owner"),
        ext_data: text("ext_data"),
        result: text("result"),
        rollback_reason: text("rollback_reason"),
    }))
}

/// The branch records of a transaction's `:b` hash, in position order.
fn read_branches(gid: &str, mut fields: HashMap<String, Vec<u8>>) -> StoreResult<Vec<Branch>> {
    let text = |value: Option<Vec<u8>>| -> StoreResult<Option<String>> {
        value
            .map(|v| String::from_utf8(v).map_err(|e| corrupt("branch", e)))
            .transpose()
    };
    let num = |value: Option<String>| -> StoreResult<Option<i64>> {
        value
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| corrupt("branch", format_args!("time '{v}'")))
            })
            .transpose()
    };
    let count: usize = match text(fields.remove("n"))? {
        Some(n) => n
            .parse()
            .map_err(|_| corrupt("branch", format_args!("count '{n}'")))?,
        None => 0,
    };
    let mut take = |pos: usize, name: &str| fields.remove(&format!("{pos}:{name}"));
    let mut branches = Vec::with_capacity(count);
    for pos in 0..count {
        branches.push(Branch {
            id: pos as u64 + 1,
            gid: gid.to_owned(),
            url: text(take(pos, "url"))?.unwrap_or_default(),
            bin_data: take(pos, "bin").unwrap_or_default(),
            branch_id: text(take(pos, "bid"))?.unwrap_or_default(),
            op: text(take(pos, "op"))?.unwrap_or_default(),
            status: text(take(pos, "st"))?.unwrap_or_default(),
            finish_time: num(text(take(pos, "ft"))?)?,
            create_time: num(text(take(pos, "ct"))?)?.unwrap_or_default(),
            update_time: num(text(take(pos, "ut"))?)?.unwrap_or_default(),
        });
    }
    Ok(branches)
}

fn read_kv(cat: &str, key: &str, fields: &HashMap<String, String>) -> StoreResult<Option<KvEntry>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let num = |name: &str| -> StoreResult<i64> {
        let value = fields.get(name).map(String::as_str).unwrap_or("");
        value
            .parse()
            .map_err(|_| corrupt("kv entry", format_args!("{name} = '{value}'")))
    };
    Ok(Some(KvEntry {
        id: num("id")? as u64,
        cat: cat.to_owned(),
        k: key.to_owned(),
        v: fields.get("v").cloned().unwrap_or_default(),
        version: num("version")?,
        create_time: num("create_time")?,
        update_time: num("update_time")?,
    }))
}

/// The script arguments of branch records: their count, then 9 per record (see `PRELUDE`).
fn branch_args(branches: &[Branch]) -> Vec<Vec<u8>> {
    let mut args = Vec::with_capacity(1 + branches.len() * 9);
    args.push(branches.len().to_string().into_bytes());
    for b in branches {
        args.extend([
            branch_index(&b.branch_id, &b.op).into_bytes(),
            b.url.clone().into_bytes(),
            b.bin_data.clone(),
            b.branch_id.clone().into_bytes(),
            b.op.clone().into_bytes(),
            b.status.clone().into_bytes(),
            opt_time(b.finish_time).into_bytes(),
            b.create_time.to_string().into_bytes(),
            b.update_time.to_string().into_bytes(),
        ]);
    }
    args
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// The first word of a script's answer.
fn verdict(reply: &[String]) -> &str {
    reply.first().map(String::as_str).unwrap_or("")
}

fn unexpected(script: &str, reply: &[String]) -> StoreError {
    StoreError::Backend(format!(
        "redis: unexpected answer of the {script} script: {reply:?}"
    ))
}

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

    /// The global records of `gids` (`None` where missing), one round trip.
    async fn load_globals(&self, gids: &[&str]) -> StoreResult<Vec<Option<TransGlobal>>> {
        let reads: Vec<redis::Cmd> = gids
            .iter()
            .map(|gid| redis::Cmd::hgetall(self.keys.global(gid)))
            .collect();
        let records: Vec<HashMap<String, String>> = self.each("load transactions", &reads).await?;
        records.iter().map(read_global).collect()
    }

    /// Applies a claim's verdict on a stale index entry (see `SETTLE`).
    async fn settle(
        &self,
        bucket: usize,
        gid: &str,
        lease_until: Millis,
        score: &str,
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.settle.key(self.keys.cron(bucket));
        invocation.arg(gid).arg(lease_until).arg(score);
        self.eval::<i64>("settle schedule entry", &invocation)
            .await
            .map(drop)
    }

    /// One step of listing maintenance on one bucket: checks the next `TRIM_BATCH` entries
    /// after the bucket's cursor and removes those whose record expired or was never written.
    /// The cursor walks the whole bucket and wraps, so long-lived entries do not stall it.
    async fn trim_listing(&self, bucket: usize) -> StoreResult<()> {
        let from = self.trim_cursors.lock().unwrap_or_else(|p| p.into_inner())[bucket].clone();
        let min = if from.is_empty() {
            "-".to_owned()
        } else {
            format!("({from}")
        };
        let list = self.keys.list(bucket);
        let members: Vec<String> = self
            .cmd(
                "read listing index",
                redis::cmd("ZRANGEBYLEX")
                    .arg(&list)
                    .arg(min)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(TRIM_BATCH),
            )
            .await?;
        let next = match members.last() {
            Some(last) if members.len() == TRIM_BATCH => last.clone(),
            _ => String::new(),
        };
        self.trim_cursors.lock().unwrap_or_else(|p| p.into_inner())[bucket] = next;
        if members.is_empty() {
            return Ok(());
        }
        let reads: Vec<redis::Cmd> = members
            .iter()
            .map(|member| {
                let gid = split_member(member).map_or("", |(_, gid)| gid);
                redis::Cmd::hget(self.keys.global(gid), "create_time")
            })
            .collect();
        let times: Vec<Option<String>> = self.each("check listing index", &reads).await?;
        let now = now_ms();
        let stale: Vec<&String> = members
            .iter()
            .zip(times)
            .filter(|(member, time)| {
                listing_stale(member, time.as_deref().and_then(|t| t.parse().ok()), now)
            })
            .map(|(member, _)| member)
            .collect();
        self.drop_listing(bucket, &stale).await
    }

    async fn drop_listing(&self, bucket: usize, members: &[&String]) -> StoreResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        self.cmd::<i64>(
            "trim listing index",
            redis::cmd("ZREM").arg(self.keys.list(bucket)).arg(members),
        )
        .await
        .map(drop)
    }
}

/// A listing cursor: a listing entry (`None` = from the start).
fn parse_listing_cursor(position: &str) -> StoreResult<Option<&str>> {
    if position.is_empty() {
        return Ok(None);
    }
    match split_member(position) {
        Some(_) => Ok(Some(position)),
        None => Err(StoreError::BadCursor(position.to_owned())),
    }
}

/// A KV listing cursor: the id of the last entry returned (`""` = from the start).
fn parse_kv_cursor(position: &str) -> StoreResult<Option<i64>> {
    if position.is_empty() {
        return Ok(None);
    }
    position
        .parse()
        .map(Some)
        .map_err(|_| StoreError::BadCursor(position.to_owned()))
}

fn matches(g: &TransGlobal, filter: &ScanFilter) -> bool {
    (filter.status.is_empty() || g.status.as_str() == filter.status)
        && (filter.trans_type.is_empty() || g.trans_type.as_str() == filter.trans_type)
        && filter
            .create_start
            .is_none_or(|start| g.create_time >= start)
        && filter.create_end.is_none_or(|end| g.create_time <= end)
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        self.cmd::<String>("ping", &redis::cmd("PING"))
            .await
            .map(drop)
    }

    async fn wipe_all(&self) -> StoreResult<()> {
        // Every key of a transaction or a KV entry starts `N:{`: no other prefix's key can
        // (prefixes hold no braces), where `N:*` would also match a prefix such as `N:staging`.
        let pattern = format!("{}:{{*", glob_escape(&self.keys.ns));
        // A SCAN sees the keys of one node: on a cluster, every master is scanned.
        let holders = self
            .call("wipe (find masters)", self.conn.key_holders())
            .await?;
        for holder in &holders {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) = self
                    .call("wipe (scan)", self.conn.query_on(holder, &scan))
                    .await?;
                // The cluster client splits a many-key UNLINK by slot.
                if !keys.is_empty() {
                    self.cmd::<i64>("wipe (unlink)", redis::cmd("UNLINK").arg(&keys))
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let buckets: Vec<String> = (0..BUCKETS)
            .flat_map(|b| [self.keys.cron(b), self.keys.list(b)])
            .collect();
        self.cmd::<i64>("wipe (unlink)", redis::cmd("UNLINK").arg(&buckets))
            .await
            .map(drop)
    }

    async fn find_global(&self, gid: &str) -> StoreResult<Option<TransGlobal>> {
        let fields: HashMap<String, String> = self
            .cmd(
                "read transaction",
                redis::cmd("HGETALL").arg(self.keys.global(gid)),
            )
            .await?;
        read_global(&fields)
    }

    /// Newest first (by create_time, then gid), merged from the 16 listing buckets. The cursor is
    /// the listing entry of the last record returned.
    async fn scan_globals(
        &self,
        position: &str,
        limit: usize,
        filter: &ScanFilter,
    ) -> StoreResult<Page<TransGlobal>> {
        let mut upper = parse_listing_cursor(position)?.map(str::to_owned);
        let mut items = Vec::new();
        if limit == 0 {
            return Ok(Page {
                items,
                next_position: String::new(),
            });
        }
        if let Some(end) = filter.create_end {
            let bound = time_key(end.saturating_add(1));
            upper = Some(match upper {
                Some(cursor) if cursor < bound => cursor,
                _ => bound,
            });
        }
        let lower = match filter.create_start {
            Some(start) => format!("[{}", time_key(start)),
            None => "-".to_owned(),
        };
        let batch = limit.clamp(32, 1000);
        let mut examined = 0;
        let now = now_ms();
        loop {
            let max = upper.as_ref().map_or("+".to_owned(), |u| format!("({u}"));
            let reads: Vec<redis::Cmd> = (0..BUCKETS)
                .map(|bucket| {
                    let mut read = redis::cmd("ZREVRANGEBYLEX");
                    read.arg(self.keys.list(bucket))
                        .arg(&max)
                        .arg(&lower)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(batch);
                    read
                })
                .collect();
            let buckets: Vec<Vec<String>> = self.each("read listing index", &reads).await?;
            // The top `batch` of the union is exact: each bucket gave its own top `batch`.
            let mut merged: Vec<(usize, String)> = buckets
                .into_iter()
                .enumerate()
                .flat_map(|(bucket, members)| members.into_iter().map(move |m| (bucket, m)))
                .collect();
            merged.sort_by(|a, b| b.1.cmp(&a.1));
            merged.truncate(batch);
            let Some((_, last)) = merged.last() else {
                return Ok(Page {
                    items,
                    next_position: String::new(),
                });
            };
            upper = Some(last.clone());
            let gids: Vec<&str> = merged
                .iter()
                .map(|(_, m)| split_member(m).map_or("", |(_, gid)| gid))
                .collect();
            let records = self.load_globals(&gids).await?;
            let mut stale: Vec<Vec<&String>> = vec![Vec::new(); BUCKETS];
            let mut full_page_at = None;
            for ((bucket, member), record) in merged.iter().zip(records) {
                examined += 1;
                if listing_stale(member, record.as_ref().map(|g| g.create_time), now) {
                    stale[*bucket].push(member);
                    continue;
                }
                let Some(record) = record.filter(|g| matches(g, filter)) else {
                    continue;
                };
                items.push(record);
                if items.len() == limit {
                    full_page_at = Some(member.clone());
                    break;
                }
            }
            for (bucket, members) in stale.iter().enumerate() {
                self.drop_listing(bucket, members).await?;
            }
            if let Some(next_position) = full_page_at {
                return Ok(Page {
                    items,
                    next_position,
                });
            }
            if examined >= SCAN_EXAMINE_MAX {
                let next_position = upper.unwrap_or_default();
                return Ok(Page {
                    items,
                    next_position,
                });
            }
        }
    }

    async fn find_branches(&self, gid: &str) -> StoreResult<Vec<Branch>> {
        let fields: HashMap<String, Vec<u8>> = self
            .cmd(
                "read branches",
                redis::cmd("HGETALL").arg(self.keys.branches(gid)),
            )
            .await?;
        read_branches(gid, fields)
    }

    /// Indexes first, then creates the record (see the module doc for why this order).
    async fn save_new(&self, global: &TransGlobal, branches: &[Branch]) -> StoreResult<()> {
        let gid = global.gid.as_str();
        let bucket = bucket_of(gid);
        let member = listing_member(global.create_time, gid);
        let fields = global_fields(global);
        let mut create = redis::cmd("EVALSHA");
        create
            .arg(self.scripts.create.get_hash())
            .arg(2)
            .arg(self.keys.global(gid))
            .arg(self.keys.branches(gid))
            .arg(self.ttl(global.status.is_finished()))
            .arg(fields.len() * 2);
        for (name, value) in &fields {
            create.arg(*name).arg(value);
        }
        create.arg(branch_args(branches));
        // Index entries first. On one node this is one round trip (a node runs the commands of
        // one connection in order); on a cluster the entries and the record are on other
        // slots, and `Connection` sends the script once the entries are written.
        let mut pipe = redis::pipe();
        // LT: a new entry, or an earlier time for an existing one (a stale entry left by an
        // earlier record of this gid must not delay the new one; an entry of a live record
        // moved earlier only costs a claim that finds it not due and moves it back).
        pipe.cmd("ZADD")
            .arg(self.keys.cron(bucket))
            .arg("LT")
            .arg(global.next_cron_time)
            .arg(gid)
            .ignore()
            .cmd("ZADD")
            .arg(self.keys.list(bucket))
            .arg("NX")
            .arg(0)
            .arg(&member)
            .ignore()
            .add_command(create);
        let (reply,): (Vec<String>,) = self
            .eval_pipe("create transaction", &self.scripts.create, &pipe)
            .await?;
        match verdict(&reply) {
            "ok" => {}
            "conflict" => {
                // Our listing entry is another record's only if it has the same create_time.
                if reply.get(1).map(String::as_str) != Some(&global.create_time.to_string()) {
                    self.drop_listing(bucket, &[&member]).await?;
                }
                return Err(StoreError::UniqueConflict);
            }
            _ => return Err(unexpected("create", &reply)),
        }
        if rand::rng().random_ratio(1, TRIM_EVERY) {
            if let Err(e) = self.trim_listing(bucket).await {
                tracing::warn!(bucket, error = %e, "redis: trimming the listing index failed");
            }
        }
        Ok(())
    }

    async fn append_branches(
        &self,
        gid: &str,
        expected: GlobalStatus,
        branches: &[Branch],
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.append.key(self.keys.global(gid));
        invocation
            .key(self.keys.branches(gid))
            .arg(expected.as_str())
            .arg(self.ttl(expected.is_finished()));
        invocation.arg(branch_args(branches));
        let reply: Vec<String> = self.eval("append branches", &invocation).await?;
        match verdict(&reply) {
            "ok" => Ok(()),
            "notfound" => Err(StoreError::NotFound),
            "conflict" => Err(StoreError::UniqueConflict),
            _ => Err(unexpected("append", &reply)),
        }
    }

    async fn save_branch_outcomes(
        &self,
        gid: &str,
        outcomes: &[BranchOutcome],
        now: Millis,
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.outcomes.key(self.keys.global(gid));
        invocation
            .key(self.keys.branches(gid))
            .arg(now)
            .arg(self.data_expire)
            .arg(outcome_args(outcomes));
        let reply: Vec<String> = self.eval("save branch outcomes", &invocation).await?;
        match verdict(&reply) {
            "ok" => Ok(()),
            "notfound" => Err(StoreError::NotFound),
            _ => Err(unexpected("outcomes", &reply)),
        }
    }

    /// The record first, then (when final) the schedule entry: a crash between leaves an entry
    /// that the next claim finds finished and drops.
    async fn change_status(
        &self,
        gid: &str,
        from: GlobalStatus,
        to: GlobalStatus,
        change: StatusChange,
        now: Millis,
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.change_status.key(self.keys.global(gid));
        invocation
            .key(self.keys.branches(gid))
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(now)
            .arg(self.ttl(to.is_finished()))
            .arg(outcome_args(&change.branch_outcomes));
        for (name, value) in [
            ("rollback_reason", change.rollback_reason),
            ("result", change.result),
            ("custom_data", change.custom_data),
            ("options", change.options),
        ] {
            if let Some(value) = value {
                invocation.arg(name).arg(value);
            }
        }
        let reply: Vec<String> = self.eval("change status", &invocation).await?;
        match verdict(&reply) {
            "ok" => {}
            "notfound" => return Err(StoreError::NotFound),
            _ => return Err(unexpected("change status", &reply)),
        }
        if to.is_finished() {
            self.cmd::<i64>(
                "unschedule finished transaction",
                redis::cmd("ZREM")
                    .arg(self.keys.cron(bucket_of(gid)))
                    .arg(gid),
            )
            .await?;
        }
        Ok(())
    }

    /// The record first, then the schedule entry: a crash between leaves the entry at its old
    /// time, and the claim it then gets finds the record not due and moves the entry to the
    /// record's time.
    async fn touch_cron_time(
        &self,
        gid: &str,
        status: GlobalStatus,
        owner: &str,
        interval_secs: i64,
        next_cron_time: Millis,
        now: Millis,
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.touch.key(self.keys.global(gid));
        invocation
            .key(self.keys.branches(gid))
            .arg(status.as_str())
            .arg(interval_secs)
            .arg(next_cron_time)
            .arg(now)
            .arg(self.ttl(status.is_finished()))
            .arg(owner);
        let reply: Vec<String> = self.eval("reschedule", &invocation).await?;
        match verdict(&reply) {
            "ok" if !status.is_finished() => {
                self.cmd::<i64>(
                    "reschedule",
                    redis::cmd("ZADD")
                        .arg(self.keys.cron(bucket_of(gid)))
                        .arg(next_cron_time)
                        .arg(gid),
                )
                .await?;
                Ok(())
            }
            "ok" => Ok(()),
            "notfound" => Err(StoreError::NotFound),
            _ => Err(unexpected("touch", &reply)),
        }
    }

    async fn count_due(&self, due_before: Millis) -> StoreResult<u64> {
        let mut due = 0;
        for bucket in 0..BUCKETS {
            let count: u64 = self
                .cmd(
                    "count due",
                    redis::cmd("ZCOUNT")
                        .arg(self.keys.cron(bucket))
                        .arg("-inf")
                        .arg(format!("({due_before}")),
                )
                .await?;
            due += count;
        }
        Ok(due)
    }

    /// The record first, then its schedule entry (as a reschedule does).
    async fn claim(
        &self,
        gid: &str,
        owner: &str,
        lease_until: Millis,
        now: Millis,
    ) -> StoreResult<Option<TransGlobal>> {
        let mut invocation = self.scripts.claim_one.key(self.keys.global(gid));
        invocation
            .key(self.keys.branches(gid))
            .arg(owner)
            .arg(lease_until)
            .arg(now)
            .arg(self.data_expire);
        let reply: Vec<String> = self.eval("claim", &invocation).await?;
        match verdict(&reply) {
            "claimed" => {
                let claimed = claimed_record(&reply)?;
                self.cmd::<i64>(
                    "claim",
                    redis::cmd("ZADD")
                        .arg(self.keys.cron(bucket_of(gid)))
                        .arg(lease_until)
                        .arg(gid),
                )
                .await?;
                Ok(claimed)
            }
            "held" => Ok(None),
            _ => Err(unexpected("claim", &reply)),
        }
    }

    async fn release(&self, gid: &str, owner: &str, now: Millis) -> StoreResult<()> {
        let mut invocation = self.scripts.release.key(self.keys.global(gid));
        invocation.arg(owner).arg(now);
        let _: i64 = self.eval("release", &invocation).await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        due_before: Millis,
        lease_until: Millis,
        now: Millis,
        limit: usize,
    ) -> StoreResult<Vec<TransGlobal>> {
        let owner = crate::gid::new_gid();
        // Three lease periods, at least a minute: the marker must outlive the lease so that the
        // next sighting of a record-less entry, after the lease, recognises the first.
        let marker_ttl = lease_until
            .saturating_sub(now)
            .max(0)
            .saturating_mul(3)
            .max(60_000);
        let start = rand::rng().random_range(0..BUCKETS);
        let mut claimed = Vec::new();
        let mut repairs = 0;
        for bucket in (start..start + BUCKETS).map(|b| b % BUCKETS) {
            while claimed.len() < limit {
                let wanted = limit - claimed.len();
                let mut invocation = self.scripts.claim_bucket.key(self.keys.cron(bucket));
                invocation.arg(due_before).arg(lease_until).arg(wanted);
                let gids: Vec<String> = self.eval("claim", &invocation).await?;
                if gids.is_empty() {
                    break;
                }
                // Every gid's check and stamp, one pipeline (on a cluster, see `Connection`).
                let mut pipe = redis::pipe();
                for gid in &gids {
                    pipe.cmd("EVALSHA")
                        .arg(self.scripts.claim_gid.get_hash())
                        .arg(3)
                        .arg(self.keys.global(gid))
                        .arg(self.keys.branches(gid))
                        .arg(self.keys.marker(gid))
                        .arg(due_before)
                        .arg(lease_until)
                        .arg(&owner)
                        .arg(now)
                        .arg(self.data_expire)
                        .arg(marker_ttl);
                }
                let replies: Vec<Vec<String>> = self
                    .eval_pipe("claim", &self.scripts.claim_gid, &pipe)
                    .await?;
                for (gid, reply) in gids.iter().zip(&replies) {
                    match verdict(reply) {
                        "claimed" => {
                            claimed.extend(claimed_record(reply)?);
                            continue;
                        }
                        // Left leased: looked at again after the lease, then dropped if still
                        // bare.
                        "missing" => {}
                        "gone" => self.settle(bucket, gid, lease_until, "").await?,
                        "later" => match reply.get(1) {
                            Some(time) => self.settle(bucket, gid, lease_until, time).await?,
                            None => return Err(unexpected("claim", reply)),
                        },
                        _ => return Err(unexpected("claim", reply)),
                    }
                    repairs += 1;
                }
                if repairs >= CLAIM_REPAIR_BUDGET {
                    return Ok(claimed);
                }
                if gids.len() < wanted {
                    break;
                }
            }
            if claimed.len() >= limit {
                return Ok(claimed);
            }
        }
        if claimed.is_empty() {
            // Nothing due: spend the idle moment on listing maintenance of one bucket.
            if let Err(e) = self.trim_listing(start).await {
                tracing::warn!(bucket = start, error = %e, "redis: trimming the listing index failed");
            }
        }
        Ok(claimed)
    }

    /// Per bucket, the entries later than `after`; per entry the record first (only if still
    /// unfinished and later than `after`), then the entry.
    async fn reset_cron_times(
        &self,
        after: Millis,
        limit: usize,
        now: Millis,
    ) -> StoreResult<(usize, bool)> {
        let mut changed = 0;
        // With `now` later than `after` a reset entry stays in the range; it is not counted twice.
        let mut done = HashSet::new();
        for bucket in 0..BUCKETS {
            let cron = self.keys.cron(bucket);
            // Entries that stay in the range (stale ones) are skipped by offset.
            let mut skipped = 0;
            loop {
                let wanted = limit - changed + 1;
                let gids: Vec<String> = self
                    .cmd(
                        "read schedule",
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(&cron)
                            .arg(format!("({after}"))
                            .arg("+inf")
                            .arg("LIMIT")
                            .arg(skipped)
                            .arg(wanted),
                    )
                    .await?;
                let found = gids.len();
                for gid in gids {
                    if !done.insert(gid.clone()) {
                        skipped += 1;
                        continue;
                    }
                    if changed == limit {
                        return Ok((changed, true));
                    }
                    let mut invocation = self.scripts.reset.key(self.keys.global(&gid));
                    invocation
                        .key(self.keys.branches(&gid))
                        .arg(now)
                        .arg(self.data_expire)
                        .arg(after);
                    let reply: Vec<String> = self.eval("reset cron time", &invocation).await?;
                    if verdict(&reply) == "ok" {
                        self.cmd::<i64>(
                            "reset cron time",
                            redis::cmd("ZADD").arg(&cron).arg("XX").arg(now).arg(&gid),
                        )
                        .await?;
                        changed += 1;
                    } else {
                        skipped += 1;
                    }
                }
                if found < wanted {
                    break;
                }
            }
        }
        Ok((changed, false))
    }

    async fn reset_cron_time(&self, gid: &str, now: Millis) -> StoreResult<()> {
        let mut invocation = self.scripts.reset.key(self.keys.global(gid));
        invocation
            .key(self.keys.branches(gid))
            .arg(now)
            .arg(self.data_expire)
            .arg("");
        let reply: Vec<String> = self.eval("reset cron time", &invocation).await?;
        match verdict(&reply) {
            // Unlike dtm, the schedule moves too, so the reset takes effect.
            "ok" => {
                self.cmd::<i64>(
                    "reset cron time",
                    redis::cmd("ZADD")
                        .arg(self.keys.cron(bucket_of(gid)))
                        .arg(now)
                        .arg(gid),
                )
                .await?;
                Ok(())
            }
            "finished" | "held" => Ok(()),
            "notfound" => Err(StoreError::NotFound),
            _ => Err(unexpected("reset", &reply)),
        }
    }

    async fn scan_kv(&self, cat: &str, position: &str, limit: usize) -> StoreResult<Page<KvEntry>> {
        let before = parse_kv_cursor(position)?;
        let max = before.map_or("+inf".to_owned(), |id| format!("({id}"));
        let keys: Vec<String> = self
            .cmd(
                "read kv index",
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(self.keys.kv_order(cat))
                    .arg(max)
                    .arg("-inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        let entries = self
            .load_kv(keys.iter().map(|k| (cat, k.as_str())).collect())
            .await?;
        let next_position = match entries.last() {
            Some(last) if entries.len() == limit => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Page {
            items: entries,
            next_position,
        })
    }

    async fn find_kv(&self, cat: &str, key: &str) -> StoreResult<Vec<KvEntry>> {
        let cats: Vec<String> = if cat.is_empty() {
            self.cmd(
                "read kv categories",
                redis::cmd("SMEMBERS").arg(self.keys.kv_cats()),
            )
            .await?
        } else {
            vec![cat.to_owned()]
        };
        let mut wanted = Vec::new();
        if key.is_empty() {
            let reads: Vec<redis::Cmd> = cats
                .iter()
                .map(|cat| redis::Cmd::zrange(self.keys.kv_order(cat), 0, -1))
                .collect();
            let keys: Vec<Vec<String>> = self.each("read kv index", &reads).await?;
            for (cat, keys) in cats.iter().zip(keys) {
                wanted.extend(keys.into_iter().map(|k| (cat.clone(), k)));
            }
        } else {
            wanted.extend(cats.into_iter().map(|c| (c, key.to_owned())));
        }
        let mut entries = self
            .load_kv(
                wanted
                    .iter()
                    .map(|(c, k)| (c.as_str(), k.as_str()))
                    .collect(),
            )
            .await?;
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    /// The category is registered before the entry is written, so a crash between the two
    /// leaves at most a category without entries.
    async fn create_kv(&self, cat: &str, key: &str, value: &str, now: Millis) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(self.keys.kv_cats()).arg(cat).ignore();
        pipe.cmd("INCR").arg(self.keys.kv_seq());
        let (id,): (i64,) = self.pipe("allocate kv id", &pipe).await?;
        let mut invocation = self.scripts.kv_create.key(self.keys.kv_entry(cat, key));
        invocation
            .key(self.keys.kv_order(cat))
            .arg(key)
            .arg(value)
            .arg(now)
            .arg(id);
        let reply: Vec<String> = self.eval("create kv", &invocation).await?;
        match verdict(&reply) {
            "ok" => Ok(()),
            "conflict" => Err(StoreError::UniqueConflict),
            _ => Err(unexpected("kv create", &reply)),
        }
    }

    async fn update_kv(
        &self,
        cat: &str,
        key: &str,
        value: &str,
        version: i64,
        now: Millis,
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.kv_update.key(self.keys.kv_entry(cat, key));
        invocation.arg(value).arg(version).arg(now);
        let reply: Vec<String> = self.eval("update kv", &invocation).await?;
        match verdict(&reply) {
            "ok" => Ok(()),
            "notfound" => Err(StoreError::NotFound),
            _ => Err(unexpected("kv update", &reply)),
        }
    }

    async fn delete_kv(&self, cat: &str, key: &str) -> StoreResult<()> {
        let mut invocation = self.scripts.kv_delete.key(self.keys.kv_entry(cat, key));
        invocation.key(self.keys.kv_order(cat)).arg(key);
        let reply: Vec<String> = self.eval("delete kv", &invocation).await?;
        match verdict(&reply) {
            "ok" => Ok(()),
            "notfound" => Err(StoreError::NotFound),
            _ => Err(unexpected("kv delete", &reply)),
        }
    }
}

impl RedisStore {
    /// The entries named by (category, key), in the given order, skipping missing ones.
    async fn load_kv(&self, names: Vec<(&str, &str)>) -> StoreResult<Vec<KvEntry>> {
        let reads: Vec<redis::Cmd> = names
            .iter()
            .map(|(cat, key)| redis::Cmd::hgetall(self.keys.kv_entry(cat, key)))
            .collect();
        let records: Vec<HashMap<String, String>> = self.each("read kv entries", &reads).await?;
        let mut entries = Vec::with_capacity(names.len());
        for ((cat, key), fields) in names.iter().zip(&records) {
            entries.extend(read_kv(cat, key, fields)?);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    //! Against this test process's throwaway Redis (started on first use, see `test-servers`);
    //! each test has its own prefix. Tests that stop their server start one of their own.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use redis::{AsyncCommands, Client};
    use test_servers::{free_port, Kind, RedisCluster, Server};

    use super::*;
    use crate::store::suite::sample_global;

    static NEXT_PREFIX: AtomicUsize = AtomicUsize::new(0);

    fn config(prefix: &str, port: u16) -> StoreOptions {
        let mut config = StoreOptions::from(&crate::config::Config::default().store);
        config.kind = crate::store::StoreKind::Redis;
        config.host = "127.0.0.1".into();
        config.port = i64::from(port);
        config.redis_prefix = prefix.into();
        config
    }

    /// A store on a fresh prefix of the shared server.
    struct TestStore {
        store: RedisStore,
        prefix: String,
        port: u16,
    }

    impl std::ops::Deref for TestStore {
        type Target = RedisStore;
        fn deref(&self) -> &RedisStore {
            &self.store
        }
    }

    impl TestStore {
        /// `None` when Redis is not installed (the test is skipped).
        async fn new() -> Option<Self> {
            let n = NEXT_PREFIX.fetch_add(1, Ordering::Relaxed);
            Self::with_prefix(format!("dtmtest-{n}")).await
        }

        async fn with_prefix(prefix: String) -> Option<Self> {
            let port = Server::shared(Kind::Redis)?.port();
            let store = RedisStore::connect(&config(&prefix, port)).await.unwrap();
            Some(Self {
                store,
                prefix,
                port,
            })
        }

        /// Another store (another host) on the same prefix.
        async fn peer(&self) -> RedisStore {
            RedisStore::connect(&config(&self.prefix, self.port))
                .await
                .unwrap()
        }

        async fn redis(&self) -> redis::aio::MultiplexedConnection {
            Client::open(format!("redis://127.0.0.1:{}", self.port))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }
    }

    mod suite {
        crate::store::suite::store_suite!(super::TestStore::new());
    }

    #[tokio::test]
    async fn wipe_removes_only_its_own_prefix() {
        let Some(mine) = TestStore::new().await else {
            return;
        };
        // A prefix that starts like mine: `mine:*` would match its keys too.
        let Some(other) = TestStore::with_prefix(format!("{}:staging", mine.prefix)).await else {
            return;
        };
        for store in [&mine.store, &other.store] {
            store
                .save_new(&sample_global("wiped", 1_000), &[])
                .await
                .unwrap();
            store.create_kv("cat", "k", "v", 1_000).await.unwrap();
        }
        mine.store.wipe_all().await.unwrap();
        assert!(mine.store.find_global("wiped").await.unwrap().is_none());
        assert!(other.store.find_global("wiped").await.unwrap().is_some());
        assert_eq!(other.store.find_kv("cat", "k").await.unwrap().len(), 1);
        let mut redis = mine.redis().await;
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", mine.prefix))
            .query_async(&mut redis)
            .await
            .unwrap();
        let staging = format!("{}:", other.prefix);
        assert!(
            left.iter().all(|k| k.starts_with(&staging)),
            "left after the wipe: {left:?}"
        );
    }

    #[tokio::test]
    async fn two_hosts_claiming_at_once_never_get_the_same_gid() {
        let Some(t) = TestStore::new().await else {
            return;
        };
        let base = 1_000_000;
        for i in 0..60 {
            let mut g = sample_global(&format!("race-{i}"), base);
            g.next_cron_time = base + i;
            t.store.save_new(&g, &[]).await.unwrap();
        }
        let peer = Arc::new(t.peer().await);
        let claim_all = |store: Arc<RedisStore>| async move {
            let mut gids = Vec::new();
            loop {
                let batch = store
                    .claim_due(base + 1_000, base + 1_000_000, base, 3)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return gids;
                }
                gids.extend(batch.into_iter().map(|g| g.gid));
            }
        };
        let other = Arc::new(t.peer().await);
        let (a, b) = tokio::join!(
            tokio::spawn(claim_all(peer)),
            tokio::spawn(claim_all(other))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut all: Vec<_> = a.iter().chain(&b).cloned().collect();
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "a gid was claimed twice: {a:?} {b:?}");
        assert_eq!(all.len(), 60);
        assert!(!a.is_empty() && !b.is_empty(), "one host did all the work");
    }

    #[tokio::test]
    async fn a_claim_expires_and_another_host_takes_over() {
        let Some(t) = TestStore::new().await else {
            return;
        };
        let base = 1_000_000;
        let mut g = sample_global("lease", base);
        g.next_cron_time = base;
        t.store.save_new(&g, &[]).await.unwrap();
        let first = t
            .store
            .claim_due(base + 1, base + 10_000, base, 1)
            .await
            .unwrap()
            .pop();
        let first = first.unwrap();
        let peer = t.peer().await;
        assert!(peer
            .claim_due(base + 9_000, base + 20_000, base + 8_999, 1)
            .await
            .unwrap()
            .pop()
            .is_none());
        // The first host died: once its lease has passed, the peer claims it.
        let second = peer
            .claim_due(base + 10_001, base + 20_000, base + 10_000, 1)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(second.gid, "lease");
        assert_eq!(second.next_cron_time, base + 20_000);
        assert_ne!(second.owner, first.owner);
    }

    #[tokio::test]
    async fn stale_schedule_entries_are_repaired_by_claims() {
        let Some(t) = TestStore::new().await else {
            return;
        };
        let mut redis = t.redis().await;
        let base = 1_000_000;
        let cron = |gid: &str| t.store.keys.cron(bucket_of(gid));
        // A record that expired: the entry is dropped after two sightings one lease apart.
        let mut g = sample_global("expired", base);
        g.next_cron_time = base;
        t.store.save_new(&g, &[]).await.unwrap();
        let _: () = redis.del(t.store.keys.global("expired")).await.unwrap();
        assert!(t
            .store
            .claim_due(base + 1, base + 10, base, 1)
            .await
            .unwrap()
            .pop()
            .is_none());
        let score: Option<f64> = redis.zscore(cron("expired"), "expired").await.unwrap();
        assert_eq!(score, Some((base + 10) as f64), "kept after one sighting");
        assert!(t
            .store
            .claim_due(base + 11, base + 20, base + 11, 1)
            .await
            .unwrap()
            .pop()
            .is_none());
        let score: Option<f64> = redis.zscore(cron("expired"), "expired").await.unwrap();
        assert_eq!(score, None, "dropped after the second");
        // An entry behind its record (a crash after the record's reschedule) moves to the
        // record's time instead of being claimed.
        let mut g = sample_global("behind", base);
        g.next_cron_time = base + 500;
        t.store.save_new(&g, &[]).await.unwrap();
        let _: () = redis.zadd(cron("behind"), "behind", base).await.unwrap();
        assert!(t
            .store
            .claim_due(base + 1, base + 10, base, 1)
            .await
            .unwrap()
            .pop()
            .is_none());
        let score: Option<f64> = redis.zscore(cron("behind"), "behind").await.unwrap();
        assert_eq!(score, Some((base + 500) as f64));
        // A finished record whose entry survived (a crash after the status change): dropped.
        let _: () = redis
            .hset(t.store.keys.global("behind"), "status", "succeed")
            .await
            .unwrap();
        assert!(t
            .store
            .claim_due(base + 501, base + 600, base, 1)
            .await
            .unwrap()
            .pop()
            .is_none());
        let score: Option<f64> = redis.zscore(cron("behind"), "behind").await.unwrap();
        assert_eq!(score, None);
    }

    #[tokio::test]
    async fn keys_expire_as_configured_and_spread_over_slots() {
        let Some(t) = TestStore::new().await else {
            return;
        };
        let redis = t.redis().await;
        let g = sample_global("ttl", 1_000);
        let branch = Branch::new("ttl", "01".into(), "action", "http://b".into(), vec![], 1);
        t.store.save_new(&g, &[branch]).await.unwrap();
        let ttl = |key: String| {
            let mut redis = redis.clone();
            async move {
                let seconds: i64 = redis.ttl(key).await.unwrap();
                seconds
            }
        };
        assert!(ttl(t.store.keys.global("ttl")).await > 604_000);
        assert!(ttl(t.store.keys.branches("ttl")).await > 604_000);
        t.store
            .change_status(
                "ttl",
                GlobalStatus::Prepared,
                GlobalStatus::Succeed,
                StatusChange::default(),
                2_000,
            )
            .await
            .unwrap();
        let finished = ttl(t.store.keys.global("ttl")).await;
        assert!((86_000..=86_400).contains(&finished), "{finished}");
        assert!(ttl(t.store.keys.branches("ttl")).await <= 86_400);
        // dtm's default prefix would pin everything to slot of "a"; its braces are dropped.
        assert_eq!(Keys::new("{a}").global("x"), "a:{x}:g");
        let slots: HashSet<usize> = (0..100).map(|i| bucket_of(&format!("gid-{i}"))).collect();
        assert_eq!(slots.len(), BUCKETS);
    }

    #[tokio::test]
    async fn binary_branch_data_and_odd_ids_round_trip() {
        let Some(t) = TestStore::new().await else {
            return;
        };
        let g = sample_global("odd{gid}", 1_000);
        let data: Vec<u8> = (0..=255).collect();
        let branches = [
            Branch::new("odd{gid}", "a".into(), "bc", String::new(), data.clone(), 1),
            Branch::new("odd{gid}", "ab".into(), "c", String::new(), vec![], 1),
        ];
        t.store.save_new(&g, &branches).await.unwrap();
        let stored = t.store.find_branches("odd{gid}").await.unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].bin_data, data);
        assert_eq!((stored[1].id, stored[1].finish_time), (2, None));
        assert_eq!(t.store.find_global("odd{gid}").await.unwrap().unwrap(), g);
    }

    #[tokio::test]
    async fn listing_skips_and_trims_entries_without_records() {
        let Some(t) = TestStore::new().await else {
            return;
        };
        let mut redis = t.redis().await;
        let now = now_ms();
        for i in 0..5 {
            let g = sample_global(&format!("list-{i}"), now - 120_000 + i);
            t.store.save_new(&g, &[]).await.unwrap();
        }
        let _: () = redis.del(t.store.keys.global("list-3")).await.unwrap();
        let page = t
            .store
            .scan_globals("", 3, &ScanFilter::default())
            .await
            .unwrap();
        let gids: Vec<_> = page.items.iter().map(|g| g.gid.as_str()).collect();
        assert_eq!(gids, ["list-4", "list-2", "list-1"]);
        let rest = t
            .store
            .scan_globals(&page.next_position, 3, &ScanFilter::default())
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 1);
        assert_eq!(rest.next_position, "");
        let listed: i64 = redis
            .zcard(t.store.keys.list(bucket_of("list-3")))
            .await
            .unwrap();
        let expected = (0..5)
            .filter(|i| *i != 3 && bucket_of(&format!("list-{i}")) == bucket_of("list-3"))
            .count() as i64;
        assert_eq!(listed, expected, "the stale entry was trimmed");
    }

    #[tokio::test]
    async fn a_redis_that_drops_fails_calls_quickly_and_is_reconnected() {
        let Some(mut server) = Server::start(Kind::Redis) else {
            return;
        };
        let store = RedisStore::connect(&config("drop", server.port()))
            .await
            .unwrap();
        store
            .save_new(&sample_global("before", 1_000), &[])
            .await
            .unwrap();
        server.kill();
        let started = std::time::Instant::now();
        let failed = store.find_global("before").await;
        assert!(
            matches!(&failed, Err(StoreError::Backend(m)) if m.contains("redis")),
            "{failed:?}"
        );
        assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1));
        server.start_again();
        let mut answered = false;
        for _ in 0..50 {
            if store.ping().await.is_ok() {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answered, "no reconnection");
        // The server kept what it acknowledged (append-only), but not the scripts: they are
        // loaded again.
        assert!(store.find_global("before").await.unwrap().is_some());
        store
            .save_new(&sample_global("after", 1_000), &[])
            .await
            .unwrap();
        let branch = Branch::new("after", "01".into(), "action", String::new(), vec![], 1);
        store
            .append_branches("after", GlobalStatus::Prepared, &[branch])
            .await
            .unwrap();
        assert_eq!(store.find_branches("after").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_redis_that_stops_answering_fails_calls_within_the_deadline() {
        let Some(server) = Server::start(Kind::Redis) else {
            return;
        };
        let store = RedisStore::connect(&config("hang", server.port()))
            .await
            .unwrap();
        store.ping().await.unwrap();
        server.pause();
        let started = std::time::Instant::now();
        let failed = store.find_global("x").await;
        let waited = started.elapsed();
        server.resume();
        assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
        assert!(waited < CALL_TIMEOUT + Duration::from_secs(1), "{waited:?}");
        let mut answered = false;
        for _ in 0..50 {
            if store.ping().await.is_ok() {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answered, "the store did not recover");
    }

    /// A store on `cluster`, seeded with every node.
    async fn on(cluster: &RedisCluster, prefix: &str) -> RedisStore {
        let mut config = config(prefix, 0);
        config.host = cluster.hosts();
        RedisStore::connect(&config).await.unwrap()
    }

    /// A store on a fresh prefix of the process's Redis Cluster (three masters).
    async fn on_shared_cluster() -> Option<(&'static RedisCluster, RedisStore)> {
        let cluster = tokio::task::spawn_blocking(RedisCluster::shared)
            .await
            .unwrap()?;
        let prefix = format!("cluster{}", NEXT_PREFIX.fetch_add(1, Ordering::Relaxed));
        Some((cluster, on(cluster, &prefix).await))
    }

    mod cluster_suite {
        crate::store::suite::store_suite!(async {
            super::on_shared_cluster()
                .await
                .map(|(_, store)| Box::new(store))
        });
    }

    /// The keys `store` keeps on each node of `cluster`.
    fn keys_by_node(cluster: &RedisCluster, store: &RedisStore) -> Vec<Vec<String>> {
        let prefix = format!("{}:", store.keys.ns);
        cluster
            .ports
            .iter()
            .map(|port| {
                let mut keys = cluster.keys_on(*port);
                keys.retain(|k| k.starts_with(&prefix));
                keys
            })
            .collect()
    }

    #[tokio::test]
    async fn a_wipe_on_a_cluster_clears_every_master() {
        let Some((cluster, store)) = on_shared_cluster().await else {
            return;
        };
        // A wipe scans every master, not just the one a SCAN would land on.
        for i in 0..30 {
            store
                .save_new(&sample_global(&format!("wipe-{i}"), 1_000), &[])
                .await
                .unwrap();
        }
        let holding = keys_by_node(cluster, &store)
            .iter()
            .filter(|keys| !keys.is_empty())
            .count();
        assert!(holding > 1, "all keys on one node");
        store.wipe_all().await.unwrap();
        let left = keys_by_node(cluster, &store);
        assert!(
            left.iter().all(Vec::is_empty),
            "left after the wipe: {left:?}"
        );
    }

    #[tokio::test]
    async fn on_a_cluster_transactions_spread_over_the_masters_and_scripts_reload() {
        let Some((cluster, store)) = on_shared_cluster().await else {
            return;
        };
        let base = 1_000_000;
        for i in 0..30 {
            let mut g = sample_global(&format!("spread-{i}"), base + i);
            g.next_cron_time = base;
            store.save_new(&g, &[]).await.unwrap();
        }
        let holding = keys_by_node(cluster, &store)
            .iter()
            .filter(|keys| keys.iter().any(|k| k.ends_with("}:g")))
            .count();
        assert!(holding > 1, "every transaction on one node");
        // The listing merges the buckets of every node; claims walk them all.
        let page = store
            .scan_globals("", 100, &ScanFilter::default())
            .await
            .unwrap();
        assert_eq!(page.items.len(), 30);
        assert_eq!(page.items[0].gid, "spread-29");
        let mut claimed = HashSet::new();
        while let Some(g) = store
            .claim_due(base + 1, base + 1_000_000, base, 1)
            .await
            .unwrap()
            .pop()
        {
            claimed.insert(g.gid);
        }
        assert_eq!(claimed.len(), 30);
        // Every node forgets its scripts: each is loaded again where it is needed.
        for port in &cluster.ports {
            let mut node = Client::open(format!("redis://127.0.0.1:{port}"))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut node)
                .await
                .unwrap();
        }
        for i in 30..40 {
            let g = sample_global(&format!("spread-{i}"), base + i);
            let branch = Branch::new(&g.gid, "01".into(), "action", String::new(), vec![], 1);
            store.save_new(&g, &[]).await.unwrap();
            store
                .append_branches(&g.gid, GlobalStatus::Prepared, &[branch])
                .await
                .unwrap();
            assert_eq!(store.find_branches(&g.gid).await.unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn a_cluster_node_that_drops_fails_its_calls_and_is_reconnected() {
        // It kills a node: a cluster of its own.
        let Some(mut cluster) = tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .unwrap()
        else {
            return;
        };
        let store = on(&cluster, "drop").await;
        let gids: Vec<String> = (0..12).map(|i| format!("kept-{i}")).collect();
        for gid in gids.iter().map(String::as_str).chain(["lost"]) {
            store
                .save_new(&sample_global(gid, 1_000), &[])
                .await
                .unwrap();
        }
        let node_of = |gid: &str| {
            let key = format!("drop:{{{gid}}}:g");
            *cluster
                .ports
                .iter()
                .find(|port| cluster.keys_on(**port).contains(&key))
                .unwrap()
        };
        let port = node_of("lost");
        let elsewhere = gids.iter().find(|gid| node_of(gid) != port).unwrap();
        cluster.kill_node(port);
        let failed = store.find_global("lost").await;
        assert!(
            matches!(&failed, Err(StoreError::Backend(m)) if m.contains("redis")),
            "{failed:?}"
        );
        // The other masters still answer for their slots.
        assert!(store.find_global(elsewhere).await.unwrap().is_some());
        let _cluster = tokio::task::spawn_blocking(move || {
            cluster.restart_node(port);
            cluster
        })
        .await
        .unwrap();
        let mut answer = None;
        for _ in 0..100 {
            if let Ok(found) = store.find_global("lost").await {
                answer = Some(found);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The node kept nothing, not even the scripts: they are loaded again.
        assert_eq!(answer, Some(None), "no reconnection");
        store
            .save_new(&sample_global("lost", 2_000), &[])
            .await
            .unwrap();
        assert!(store.find_global("lost").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_a_clear_error() {
        let mut config = config("none", 0);
        config.host = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
        let refused = RedisStore::connect(&config).await;
        assert!(
            matches!(&refused, Err(StoreError::Backend(m)) if m.contains(&config.host)),
            "{:?}",
            refused.err()
        );
    }

    #[tokio::test]
    async fn a_cluster_with_another_database_is_refused() {
        let mut config = config("db", 0);
        config.host = "127.0.0.1:1,127.0.0.1:2".into();
        config.db = "3".into();
        let refused = RedisStore::connect(&config).await;
        assert!(
            matches!(&refused, Err(StoreError::Backend(m)) if m.contains("database 0")),
            "{:?}",
            refused.err()
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_clear_error() {
        let port = free_port();
        let refused = RedisStore::connect(&config("none", port)).await;
        assert!(
            matches!(&refused, Err(StoreError::Backend(m)) if m.contains(&format!("127.0.0.1:{port}"))),
            "{:?}",
            refused.err()
        );
    }
}
