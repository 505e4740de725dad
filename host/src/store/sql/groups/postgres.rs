//! PostgreSQL's group statements (`../group_commit.rs`): creations, branch results and status
//! changes of many transactions, one statement each. The writes' values travel as arrays read
//! back with `unnest`, so a statement's text is the same for any group size and each connection
//! prepares it once. Every write of a group gets the answer its own statement would have given,
//! under the same guards.

use std::sync::Arc;

use sqlx::postgres::{PgArguments, Postgres};

use super::super::group_commit::GroupResults;
use super::super::lender::Lender;
use super::super::{db_error, dynamic, last_per_record, write_error, Dialect};
use super::{answers, BranchResults, Creation, StatusWrite};
use crate::clock::Millis;
use crate::model::{Branch, GlobalStatus, TransGlobal};
use crate::store::common::UNFINISHED;
use crate::store::{BranchOutcome, StoreError};

/// The three statements, for one schema's tables.
pub(super) struct Sql {
    pub create: String,
    pub results: String,
    pub change: String,
}

/// A time column's value from an array of [`Dialect::encode_time`] values.
fn time(ms: &str) -> String {
    format!("to_timestamp({ms} / 1000.0)")
}

impl Sql {
    pub(super) fn new(g: &str, b: &str) -> Self {
        // Binds: 17 arrays of the global's columns as `insert_global`, then 9 of the branch
        // records' as `insert_branches`. Branch records are inserted in the order given (their
        // ids keep it) and only for the transactions this statement created.
        let create = format!(
            "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::text[], $11::text[], \
             $12::int8[], $13::int8[], $14::text[], $15::text[], $16::text[], $17::text[]) \
             AS v(gid, trans_type, status, query_prepared, protocol, create_ms, update_ms, \
             finish_ms, rollback_ms, options, custom_data, next_cron_interval, next_cron_ms, \
             owner, ext_data, result, rollback_reason)), \
             created AS (INSERT INTO {g} (gid, trans_type, status, query_prepared, protocol, \
             create_time, update_time, finish_time, rollback_time, options, custom_data, \
             next_cron_interval, next_cron_time, owner, ext_data, result, rollback_reason) \
             SELECT gid, trans_type, status, query_prepared, protocol, {}, {}, {}, {}, options, \
             custom_data, next_cron_interval, {}, owner, ext_data, result, rollback_reason FROM v \
             ON CONFLICT DO NOTHING RETURNING gid), \
             records AS (INSERT INTO {b} (gid, url, bin_data, branch_id, op, status, finish_time, \
             create_time, update_time) \
             SELECT r.gid, r.url, r.bin_data, r.branch_id, r.op, r.status, {}, {}, {} \
             FROM unnest($18::text[], $19::text[], $20::bytea[], $21::text[], $22::text[], \
             $23::text[], $24::int8[], $25::int8[], $26::int8[]) WITH ORDINALITY \
             AS r(gid, url, bin_data, branch_id, op, status, finish_ms, create_ms, update_ms, n) \
             WHERE r.gid IN (SELECT gid FROM created) ORDER BY r.n) \
             SELECT gid FROM created",
            time("create_ms"),
            time("update_ms"),
            time("finish_ms"),
            time("rollback_ms"),
            time("next_cron_ms"),
            time("r.finish_ms"),
            time("r.create_ms"),
            time("r.update_ms"),
        );
        // The join of the given records with the stored ones, per transaction `{of}`.
        let found = |of: &str| {
            format!(
                "(SELECT count(*) FROM {b} b JOIN o ON b.gid = o.gid AND b.branch_id = o.branch_id \
                 AND b.op = o.op WHERE o.gid = {of})"
            )
        };
        // Binds: the records' gid, branch_id, op, status and time; then each transaction's gid
        // and number of records. As `update_branches` guarded: the transactions stay unfinished
        // under a share lock until the records are written, all of a transaction's or none.
        let results = format!(
            "WITH o AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::int8[]) AS o(gid, branch_id, op, status, now_ms)), \
             w AS (SELECT * FROM unnest($6::text[], $7::int8[]) AS w(gid, records)), \
             unfinished AS (SELECT gid FROM {g} WHERE gid IN (SELECT gid FROM w) \
             AND {UNFINISHED} FOR SHARE), \
             complete AS (SELECT gid FROM w WHERE gid IN (SELECT gid FROM unfinished) \
             AND records = {}), \
             written AS (UPDATE {b} b SET status = o.status, finish_time = {}, update_time = {} \
             FROM o WHERE b.gid = o.gid AND b.branch_id = o.branch_id AND b.op = o.op \
             AND o.gid IN (SELECT gid FROM complete) RETURNING b.gid) \
             SELECT DISTINCT gid FROM written",
            found("w.gid"),
            time("o.now_ms"),
            time("o.now_ms"),
        );
        // Binds: per change its gid, from, to, time, finish and rollback times, rollback_reason,
        // result, custom_data, options and number of records; then the records' gid, branch_id,
        // op and status. As `change_status_with_branches`: the status changes only if every
        // record exists, the records only if the status changed.
        let change = format!(
            "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], \
             $5::int8[], $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], \
             $11::int8[]) AS v(gid, from_status, to_status, now_ms, finish_ms, rollback_ms, \
             rollback_reason, result, custom_data, options, records)), \
             o AS (SELECT * FROM unnest($12::text[], $13::text[], $14::text[], $15::text[]) \
             AS o(gid, branch_id, op, status)), \
             changed AS (UPDATE {g} t SET status = v.to_status, update_time = {}, \
             finish_time = COALESCE({}, t.finish_time), \
             rollback_time = COALESCE({}, t.rollback_time), \
             rollback_reason = COALESCE(v.rollback_reason, t.rollback_reason), \
             result = COALESCE(v.result, t.result), \
             custom_data = COALESCE(v.custom_data, t.custom_data), \
             options = COALESCE(v.options, t.options) \
             FROM v WHERE t.gid = v.gid AND t.status = v.from_status AND v.records = {} \
             RETURNING t.gid), \
             written AS (UPDATE {b} b SET status = o.status, finish_time = {}, update_time = {} \
             FROM o JOIN v ON v.gid = o.gid WHERE b.gid = o.gid AND b.branch_id = o.branch_id \
             AND b.op = o.op AND o.gid IN (SELECT gid FROM changed)) \
             SELECT gid FROM changed",
            time("v.now_ms"),
            time("v.finish_ms"),
            time("v.rollback_ms"),
            found("v.gid"),
            time("v.now_ms"),
            time("v.now_ms"),
        );
        Sql {
            create,
            results,
            change,
        }
    }
}

fn ms(value: Millis) -> i64 {
    Dialect::Postgres.encode_time(value)
}

/// One column of `rows`, as the array bound for `unnest`.
fn column<'a, R, T>(rows: &'a [R], value: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

/// The branch records a group's writes name, each record of a write once (a record named twice
/// keeps its last outcome).
struct Named<'a> {
    /// (gid, outcome, time of the write).
    records: Vec<(&'a str, &'a BranchOutcome, Millis)>,
    /// How many records each write names, in the group's order.
    counts: Vec<i64>,
}

impl<'a> Named<'a> {
    fn of<W>(
        group: &'a [W],
        outcomes: impl Fn(&'a W) -> (&'a str, &'a [BranchOutcome], Millis),
    ) -> Self {
        let mut named = Named {
            records: Vec::new(),
            counts: Vec::with_capacity(group.len()),
        };
        for w in group {
            let (gid, outcomes, now) = outcomes(w);
            let records = last_per_record(outcomes);
            named.counts.push(records.len() as i64);
            named
                .records
                .extend(records.into_iter().map(|o| (gid, o, now)));
        }
        named
    }

    /// Binds the records' gid, branch_id, op and status, one array each.
    fn bind<'q>(&'q self, query: Scalar<'q>) -> Scalar<'q> {
        let records = &self.records;
        query
            .bind(column(records, |r| r.0))
            .bind(column(records, |r| r.1.branch_id.as_str()))
            .bind(column(records, |r| r.1.op.as_str()))
            .bind(column(records, |r| r.1.status))
    }
}

/// A group statement that returns the gids it wrote.
type Scalar<'q> = sqlx::query::QueryScalar<'q, Postgres, String, PgArguments>;

/// Runs `statement` on a connection `lender` lends: the gids it wrote, or its error as `error`
/// words it.
async fn written(
    lender: &Lender<Postgres>,
    statement: Scalar<'_>,
    error: fn(sqlx::Error) -> StoreError,
) -> Result<Vec<String>, StoreError> {
    let mut conn = lender.lend().await.map_err(db_error)?;
    let result = statement.fetch_all(&mut *conn).await.map_err(error);
    conn.settle(result)
}

pub(super) async fn create(
    lender: Arc<Lender<Postgres>>,
    sql: String,
    group: Vec<Creation>,
) -> Result<GroupResults, StoreError> {
    let globals: Vec<&TransGlobal> = group.iter().map(|c| &c.global).collect();
    let records: Vec<&Branch> = group.iter().flat_map(|c| &c.branches).collect();
    let statement = sqlx::query_scalar(dynamic(sql))
        .bind(column(&globals, |g| g.gid.as_str()))
        .bind(column(&globals, |g| g.trans_type.as_str()))
        .bind(column(&globals, |g| g.status.as_str()))
        .bind(column(&globals, |g| g.query_prepared.as_str()))
        .bind(column(&globals, |g| g.protocol.as_str()))
        .bind(column(&globals, |g| ms(g.create_time)))
        .bind(column(&globals, |g| ms(g.update_time)))
        .bind(column(&globals, |g| g.finish_time.map(ms)))
        .bind(column(&globals, |g| g.rollback_time.map(ms)))
        .bind(column(&globals, |g| g.options.to_json()))
        .bind(column(&globals, |g| g.custom_data.as_str()))
        .bind(column(&globals, |g| g.next_cron_interval))
        .bind(column(&globals, |g| ms(g.next_cron_time)))
        .bind(column(&globals, |g| g.owner.as_str()))
        .bind(column(&globals, |g| g.ext_data.as_str()))
        .bind(column(&globals, |g| g.result.as_str()))
        .bind(column(&globals, |g| g.rollback_reason.as_str()))
        .bind(column(&records, |b| b.gid.as_str()))
        .bind(column(&records, |b| b.url.as_str()))
        .bind(column(&records, |b| b.bin_data.as_slice()))
        .bind(column(&records, |b| b.branch_id.as_str()))
        .bind(column(&records, |b| b.op.as_str()))
        .bind(column(&records, |b| b.status.as_str()))
        .bind(column(&records, |b| b.finish_time.map(ms)))
        .bind(column(&records, |b| ms(b.create_time)))
        .bind(column(&records, |b| ms(b.update_time)));
    let returned = written(&lender, statement, write_error).await?;
    answers(&group, returned, StoreError::UniqueConflict)
}

pub(super) async fn save_results(
    lender: Arc<Lender<Postgres>>,
    sql: String,
    group: Vec<BranchResults>,
) -> Result<GroupResults, StoreError> {
    let named = Named::of(&group, |w| (w.gid.as_str(), &w.outcomes, w.now));
    let statement = named
        .bind(sqlx::query_scalar(dynamic(sql)))
        .bind(column(&named.records, |r| ms(r.2)))
        .bind(column(&group, |w| w.gid.as_str()))
        .bind(named.counts.as_slice());
    let returned = written(&lender, statement, db_error).await?;
    answers(&group, returned, StoreError::NotFound)
}

pub(super) async fn change(
    lender: Arc<Lender<Postgres>>,
    sql: String,
    group: Vec<StatusWrite>,
) -> Result<GroupResults, StoreError> {
    let named = Named::of(&group, |w| {
        (w.gid.as_str(), &w.change.branch_outcomes, w.now)
    });
    let final_time = |w: &StatusWrite, status| (w.to == status).then_some(ms(w.now));
    let query = sqlx::query_scalar(dynamic(sql))
        .bind(column(&group, |w| w.gid.as_str()))
        .bind(column(&group, |w| w.from.as_str()))
        .bind(column(&group, |w| w.to.as_str()))
        .bind(column(&group, |w| ms(w.now)))
        .bind(column(&group, |w| final_time(w, GlobalStatus::Succeed)))
        .bind(column(&group, |w| final_time(w, GlobalStatus::Failed)))
        .bind(column(&group, |w| w.change.rollback_reason.as_deref()))
        .bind(column(&group, |w| w.change.result.as_deref()))
        .bind(column(&group, |w| w.change.custom_data.as_deref()))
        .bind(column(&group, |w| w.change.options.as_deref()))
        .bind(named.counts.as_slice());
    let returned = written(&lender, named.bind(query), db_error).await?;
    answers(&group, returned, StoreError::NotFound)
}
