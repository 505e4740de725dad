//! The `Store` implementation, and the maintenance of the schedule and listing indexes (see the
//! module doc of `redis` for the order of writes and the repairs).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use rand::Rng;

use super::keys::{
    bucket_of, glob_escape, listing_member, listing_stale, split_member, time_key, BUCKETS,
};
use super::record::{
    branch_args, claimed_record, global_fields, outcome_args, read_branches, read_global, read_kv,
};
use super::scripts::{ok_or_not_found, unexpected, verdict};
use super::{now_ms, RedisStore};
use crate::clock::Millis;
use crate::model::{Branch, GlobalStatus, KvEntry, ScanFilter, TransGlobal};
use crate::store::common::{page, parse_position};
use crate::store::{BranchOutcome, Page, StatusChange, Store, StoreError, StoreResult};

/// Index entries a claim may find stale before giving up for this round.
const CLAIM_REPAIR_BUDGET: usize = 64;
/// Listing entries checked per trim step.
const TRIM_BATCH: usize = 64;
/// About one creation in this many also runs a trim step, so trimming keeps pace with creation.
const TRIM_EVERY: u32 = 32;
/// Listing entries examined per `scan_globals` call before it returns a partial page.
const SCAN_EXAMINE_MAX: usize = 10_000;

impl RedisStore {
    /// The global records of `gids` (`None` where missing), one round trip.
    async fn load_globals(&self, gids: &[&str]) -> StoreResult<Vec<Option<TransGlobal>>> {
        let reads: Vec<redis::Cmd> = gids
            .iter()
            .map(|gid| redis::Cmd::hgetall(self.keys.global(gid)))
            .collect();
        let records: Vec<HashMap<String, String>> = self.each("load transactions", &reads).await?;
        records.iter().map(read_global).collect()
    }

    /// Applies a claim's verdict on a stale index entry (see `lua/settle.lua`).
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

    /// Gives a script the schedule key `index` on one node, where the script updates the entry
    /// itself (one round trip); on a cluster that key is on another slot, and it comes back to
    /// be updated in a call of its own.
    fn index_in_script(
        &self,
        invocation: &mut redis::ScriptInvocation<'_>,
        index: Option<String>,
    ) -> Option<String> {
        match index {
            Some(key) if self.conn.is_one_node() => {
                invocation.key(key);
                None
            }
            other => other,
        }
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

    /// On one node the script writes the record and its index entries; on a cluster the
    /// indexes go first, then the record (see the module doc for why this order).
    async fn save_new(&self, global: &TransGlobal, branches: &[Branch]) -> StoreResult<()> {
        let gid = global.gid.as_str();
        let bucket = bucket_of(gid);
        let member = listing_member(global.create_time, gid);
        let fields = global_fields(global);
        let (cron, list) = (self.keys.cron(bucket), self.keys.list(bucket));
        let indexes_in_script = self.conn.is_one_node();
        let mut create = redis::cmd("EVALSHA");
        create
            .arg(self.scripts.create.get_hash())
            .arg(if indexes_in_script { 4 } else { 2 })
            .arg(self.keys.global(gid))
            .arg(self.keys.branches(gid));
        if indexes_in_script {
            create.arg(&cron).arg(&list);
        }
        create
            .arg(self.ttl(global.status.is_finished()))
            .arg(global.next_cron_time)
            .arg(gid)
            .arg(&member)
            .arg(fields.len() * 2);
        for (name, value) in &fields {
            create.arg(*name).arg(value);
        }
        create.arg(branch_args(branches));
        let mut pipe = redis::pipe();
        if !indexes_in_script {
            // Index entries first: on a cluster they are on other slots, and `Connection` sends
            // the script once they are written.
            // LT: a new entry, or an earlier time for an existing one (a stale entry left by an
            // earlier record of this gid must not delay the new one; an entry of a live record
            // moved earlier only costs a claim that finds it not due and moves it back).
            pipe.cmd("ZADD")
                .arg(&cron)
                .arg("LT")
                .arg(global.next_cron_time)
                .arg(gid)
                .ignore()
                .cmd("ZADD")
                .arg(&list)
                .arg("NX")
                .arg(0)
                .arg(&member)
                .ignore();
        }
        pipe.add_command(create);
        let (reply,): (Vec<String>,) = self
            .eval_pipe("create transaction", &self.scripts.create, &pipe)
            .await?;
        match verdict(&reply) {
            "ok" => {}
            "conflict" => {
                // Our listing entry, written apart, is another record's only if it has the same
                // create_time.
                let ours =
                    reply.get(1).map(String::as_str) != Some(&global.create_time.to_string());
                if !indexes_in_script && ours {
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
        ok_or_not_found("outcomes", &reply)
    }

    /// The record first, then (when final) the schedule entry: on one node in the same script,
    /// on a cluster in a call of its own (a crash between leaves an entry that the next claim
    /// finds finished and drops).
    async fn change_status(
        &self,
        gid: &str,
        from: GlobalStatus,
        to: GlobalStatus,
        change: StatusChange,
        now: Millis,
    ) -> StoreResult<()> {
        let unschedule = to.is_finished().then(|| self.keys.cron(bucket_of(gid)));
        let mut invocation = self.scripts.change_status.key(self.keys.global(gid));
        invocation.key(self.keys.branches(gid));
        let unschedule_apart = self.index_in_script(&mut invocation, unschedule);
        invocation
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(now)
            .arg(self.ttl(to.is_finished()))
            .arg(gid)
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
        ok_or_not_found("change status", &reply)?;
        if let Some(cron) = unschedule_apart {
            self.cmd::<i64>(
                "unschedule finished transaction",
                redis::cmd("ZREM").arg(cron).arg(gid),
            )
            .await?;
        }
        Ok(())
    }

    /// The record first, then the schedule entry: on one node in the same script, on a cluster
    /// in a call of its own (a crash between leaves the entry at its old time, and the claim it
    /// then gets finds the record not due and moves the entry to the record's time).
    async fn touch_cron_time(
        &self,
        gid: &str,
        status: GlobalStatus,
        owner: &str,
        interval_secs: i64,
        next_cron_time: Millis,
        now: Millis,
    ) -> StoreResult<()> {
        let reschedule = (!status.is_finished()).then(|| self.keys.cron(bucket_of(gid)));
        let mut invocation = self.scripts.touch.key(self.keys.global(gid));
        invocation.key(self.keys.branches(gid));
        let reschedule_apart = self.index_in_script(&mut invocation, reschedule);
        invocation
            .arg(status.as_str())
            .arg(interval_secs)
            .arg(next_cron_time)
            .arg(now)
            .arg(self.ttl(status.is_finished()))
            .arg(owner)
            .arg(gid);
        let reply: Vec<String> = self.eval("reschedule", &invocation).await?;
        ok_or_not_found("touch", &reply)?;
        if let Some(cron) = reschedule_apart {
            self.cmd::<i64>(
                "reschedule",
                redis::cmd("ZADD").arg(cron).arg(next_cron_time).arg(gid),
            )
            .await?;
        }
        Ok(())
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
        let before = parse_position(position)?;
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
        Ok(page(entries, limit, |e| e.id))
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
        ok_or_not_found("kv update", &reply)
    }

    async fn delete_kv(&self, cat: &str, key: &str) -> StoreResult<()> {
        let mut invocation = self.scripts.kv_delete.key(self.keys.kv_entry(cat, key));
        invocation.key(self.keys.kv_order(cat)).arg(key);
        let reply: Vec<String> = self.eval("delete kv", &invocation).await?;
        ok_or_not_found("kv delete", &reply)
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
