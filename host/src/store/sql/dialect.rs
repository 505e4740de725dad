//! Everything that differs between PostgreSQL and MySQL/MariaDB: where the tables live, their DDL,
//! how a time is written and read, placeholders and the shared-lock clause. The statements
//! themselves are written once, in [`Statements`].

use chrono::{DateTime, Local, TimeZone};

use crate::clock::Millis;
use crate::store::common::UNFINISHED;
use crate::store::StoreOptions;

use super::Dialect;

/// 1000-01-02 and 9999-12-31 UTC: MySQL's DATETIME range, a day inside it so that the shift to
/// local time stays in range. Times beyond (e.g. "due before forever") are clamped to it.
const MIN_TIME: Millis = -30_610_137_600_000;
const MAX_TIME: Millis = 253_402_214_400_000;

/// No pass holds the transaction. A bulk reset makes due only those whose next look is far
/// ahead, where a lease that has passed cannot be, so an empty owner is the whole condition.
const UNHELD_FOR_RESET: &str = "COALESCE(owner, '') = ''";

impl Dialect {
    pub(super) fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    /// The schema (PostgreSQL, `Store.Schema`) or database (MySQL, `Store.Db`) holding dtm's
    /// tables, as dtm names them. Only plain names are accepted: they are spliced into SQL.
    pub(super) fn scope(self, config: &StoreOptions) -> Result<String, String> {
        let (key, name) = match self {
            // Unquoted, as dtm's `search_path=<Schema>` reads it: PostgreSQL folds it to lower case.
            Dialect::Postgres => ("Store.Schema", config.schema.to_ascii_lowercase()),
            Dialect::MySql => ("Store.Db", config.db.clone()),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{key} '{name}' must be a non-empty name of letters, digits and _"
            ));
        }
        Ok(name)
    }

    /// `scope.` quoted for this server.
    fn qualifier(self, scope: &str) -> String {
        match self {
            Dialect::Postgres => format!("{scope}."),
            Dialect::MySql => format!("`{scope}`."),
        }
    }

    /// Turns a bound value of [`Dialect::encode_time`] into a time column value.
    fn time_param(self) -> &'static str {
        match self {
            Dialect::Postgres => "to_timestamp(? / 1000.0)",
            // Not FROM_UNIXTIME: MariaDB 10.11 stops it at 2038.
            Dialect::MySql => "TIMESTAMPADD(MICROSECOND, ? * 1000, TIMESTAMP'1970-01-01 00:00:00')",
        }
    }

    /// Reads a time column as the value [`Dialect::decode_time`] takes.
    fn time_column(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000 AS BIGINT)"),
            Dialect::MySql => format!(
                "TIMESTAMPDIFF(MICROSECOND, TIMESTAMP'1970-01-01 00:00:00', {column}) DIV 1000"
            ),
        }
    }

    /// A milliseconds timestamp as bound into [`Dialect::time_param`]. PostgreSQL's columns hold
    /// instants; MySQL's DATETIME holds a wall-clock time, which dtm writes in local time, so
    /// dtm-host does too and both can read each other's rows.
    pub(super) fn encode_time(self, ms: Millis) -> i64 {
        let ms = ms.clamp(MIN_TIME, MAX_TIME);
        match self {
            Dialect::Postgres => ms,
            Dialect::MySql => DateTime::from_timestamp_millis(ms)
                .map(|t| {
                    t.with_timezone(&Local)
                        .naive_local()
                        .and_utc()
                        .timestamp_millis()
                })
                .unwrap_or(ms),
        }
    }

    /// The inverse of [`Dialect::encode_time`].
    pub(super) fn decode_time(self, value: i64) -> Millis {
        match self {
            Dialect::Postgres => value,
            // A wall-clock time skipped by a daylight-saving jump has no instant; reading it as
            // UTC is off by at most that jump.
            Dialect::MySql => DateTime::from_timestamp_millis(value)
                .and_then(|t| Local.from_local_datetime(&t.naive_utc()).earliest())
                .map_or(value, |t| t.timestamp_millis()),
        }
    }

    /// Appended to a SELECT to hold a row against changes until the transaction ends, while
    /// letting other readers that only hold it too go on.
    fn share_lock(self) -> &'static str {
        match self {
            Dialect::Postgres => "FOR SHARE",
            Dialect::MySql => "LOCK IN SHARE MODE",
        }
    }

    /// Statements taking and releasing a server-wide lock, so hosts starting together do not
    /// race each other's `CREATE … IF NOT EXISTS` (PostgreSQL may then fail with a duplicate
    /// key in its catalog).
    pub(super) fn ddl_lock(self) -> (&'static str, &'static str) {
        match self {
            Dialect::Postgres => (
                "SELECT pg_advisory_lock(7401317)",
                "SELECT pg_advisory_unlock(7401317)",
            ),
            Dialect::MySql => (
                "SELECT GET_LOCK('dtm-host schema', 10)",
                "SELECT RELEASE_LOCK('dtm-host schema')",
            ),
        }
    }

    /// Writes `sql`, whose parameters are `?`, with this server's placeholders.
    pub(super) fn render(self, sql: &str) -> String {
        match self {
            Dialect::MySql => sql.to_owned(),
            Dialect::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push_str(&format!("${n}"));
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// dtm's schema script (docs/engine.md §4.3) minus its DROPs, each statement creating only what
    /// is missing. One change: times keep milliseconds (dtm's columns keep seconds, which
    /// dtm-host also works with, rounding times to the second).
    pub(super) fn schema_ddl(self, scope: &str) -> Vec<String> {
        let q = self.qualifier(scope);
        let (time, blob, status_len, id_type) = match self {
            Dialect::Postgres => ("timestamp(3) with time zone", "bytea", 45, "bigint"),
            Dialect::MySql => ("datetime(3)", "BLOB", 12, "bigint(22)"),
        };
        let id = |table: &str| match self {
            Dialect::Postgres => format!("id {id_type} NOT NULL DEFAULT nextval('{q}{table}_seq')"),
            Dialect::MySql => format!("id {id_type} NOT NULL AUTO_INCREMENT"),
        };
        let unique = |name: &str, columns: &str| match self {
            Dialect::Postgres => format!("CONSTRAINT {name} UNIQUE ({columns})"),
            Dialect::MySql => format!("UNIQUE KEY {name} ({columns})"),
        };
        // MySQL declares indexes inside CREATE TABLE; PostgreSQL needs CREATE INDEX.
        let global_indexes = match self {
            Dialect::Postgres => String::new(),
            Dialect::MySql => {
                ", KEY owner (owner), KEY status_next_cron_time (status, next_cron_time)".into()
            }
        };
        let options = match self {
            Dialect::Postgres => "",
            Dialect::MySql => " ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
        };
        let mut ddl = match self {
            Dialect::Postgres => vec![
                format!("CREATE SCHEMA IF NOT EXISTS {scope}"),
                format!("CREATE SEQUENCE IF NOT EXISTS {q}trans_global_seq"),
                format!("CREATE SEQUENCE IF NOT EXISTS {q}trans_branch_op_seq"),
                format!("CREATE SEQUENCE IF NOT EXISTS {q}kv_seq"),
            ],
            Dialect::MySql => vec![format!(
                "CREATE DATABASE IF NOT EXISTS `{scope}` DEFAULT CHARACTER SET utf8mb4"
            )],
        };
        ddl.push(format!(
            "CREATE TABLE IF NOT EXISTS {q}trans_global ({}, gid varchar(128) NOT NULL, \
             trans_type varchar(45) NOT NULL, status varchar({status_len}) NOT NULL, \
             query_prepared varchar(1024) NOT NULL, protocol varchar(45) NOT NULL, \
             create_time {time} DEFAULT NULL, update_time {time} DEFAULT NULL, \
             finish_time {time} DEFAULT NULL, rollback_time {time} DEFAULT NULL, \
             options varchar(1024) DEFAULT '', custom_data varchar(1024) DEFAULT '', \
             next_cron_interval int DEFAULT NULL, next_cron_time {time} DEFAULT NULL, \
             owner varchar(128) NOT NULL DEFAULT '', ext_data text, \
             result varchar(1024) DEFAULT '', rollback_reason varchar(1024) DEFAULT '', \
             PRIMARY KEY (id), {}{global_indexes}){options}",
            id("trans_global"),
            unique("gid", "gid"),
        ));
        ddl.push(format!(
            "CREATE TABLE IF NOT EXISTS {q}trans_branch_op ({}, gid varchar(128) NOT NULL, \
             url varchar(1024) NOT NULL, data text, bin_data {blob}, \
             branch_id varchar(128) NOT NULL, op varchar(45) NOT NULL, \
             status varchar(45) NOT NULL, finish_time {time} DEFAULT NULL, \
             rollback_time {time} DEFAULT NULL, create_time {time} DEFAULT NULL, \
             update_time {time} DEFAULT NULL, PRIMARY KEY (id), {}){options}",
            id("trans_branch_op"),
            unique(
                match self {
                    Dialect::Postgres => "gid_branch_uniq",
                    Dialect::MySql => "gid_uniq",
                },
                "gid, branch_id, op"
            ),
        ));
        ddl.push(format!(
            "CREATE TABLE IF NOT EXISTS {q}kv ({}, cat varchar(45) NOT NULL, \
             k varchar(128) NOT NULL, v text, version {id_type} DEFAULT 1, \
             create_time {time} DEFAULT NULL, update_time {time} DEFAULT NULL, \
             PRIMARY KEY (id), {}){options}",
            id("kv"),
            unique("uniq_k", "cat, k"),
        ));
        if self == Dialect::Postgres {
            ddl.push(format!(
                "CREATE INDEX IF NOT EXISTS owner ON {q}trans_global (owner)"
            ));
            ddl.push(format!(
                "CREATE INDEX IF NOT EXISTS status_next_cron_time ON {q}trans_global (status, next_cron_time)"
            ));
        }
        ddl
    }
}

/// Every fixed statement, rendered once for the dialect and the tables' scope.
pub(super) struct Statements {
    pub dialect: Dialect,
    /// `scope.trans_global` and friends.
    pub globals: String,
    pub branches: String,
    pub kv: String,
    pub global_columns: String,
    pub kv_columns: String,
    pub find_global: String,
    pub find_branches: String,
    pub insert_global: String,
    pub lock_global_status: String,
    pub change_status: String,
    /// `insert_global` and `change_status` before rendering, to build on.
    insert_global_template: String,
    change_status_template: String,
    pub touch_cron_time: String,
    pub claim_pick: String,
    pub count_due: String,
    pub claim_one: String,
    pub release: String,
    pub reset_pick: String,
    pub reset_one: String,
    pub create_kv: String,
    pub update_kv: String,
    pub delete_kv: String,
}

impl Statements {
    pub fn new(dialect: Dialect, scope: &str) -> Self {
        let q = dialect.qualifier(scope);
        let (g, b, k) = (
            format!("{q}trans_global"),
            format!("{q}trans_branch_op"),
            format!("{q}kv"),
        );
        let t = |c: &str| dialect.time_column(c);
        let ts = dialect.time_param();
        let lock = dialect.share_lock();
        let global_columns = format!(
            "id, gid, trans_type, status, query_prepared, protocol, {}, {}, {}, {}, options, \
             custom_data, next_cron_interval, {}, owner, ext_data, result, rollback_reason",
            t("create_time"),
            t("update_time"),
            t("finish_time"),
            t("rollback_time"),
            t("next_cron_time"),
        );
        let branch_columns = format!(
            "id, gid, url, bin_data, branch_id, op, status, {}, {}, {}",
            t("finish_time"),
            t("create_time"),
            t("update_time"),
        );
        let kv_columns = format!(
            "id, cat, k, v, version, {}, {}",
            t("create_time"),
            t("update_time")
        );
        let insert_global_template = format!(
            "INSERT INTO {g} (gid, trans_type, status, query_prepared, protocol, create_time, \
             update_time, finish_time, rollback_time, options, custom_data, next_cron_interval, \
             next_cron_time, owner, ext_data, result, rollback_reason) \
             VALUES (?, ?, ?, ?, ?, {ts}, {ts}, {ts}, {ts}, ?, ?, ?, {ts}, ?, ?, ?, ?)"
        );
        let change_status_template = format!(
            "UPDATE {g} SET status = ?, update_time = {ts}, \
             finish_time = COALESCE({ts}, finish_time), \
             rollback_time = COALESCE({ts}, rollback_time), \
             rollback_reason = COALESCE(?, rollback_reason), result = COALESCE(?, result), \
             custom_data = COALESCE(?, custom_data), options = COALESCE(?, options) \
             WHERE gid = ? AND status = ?"
        );
        let r = |sql: String| dialect.render(&sql);
        Self {
            dialect,
            find_global: r(format!("SELECT {global_columns} FROM {g} WHERE gid = ?")),
            find_branches: r(format!(
                "SELECT {branch_columns} FROM {b} WHERE gid = ? ORDER BY id"
            )),
            insert_global: r(insert_global_template.clone()),
            lock_global_status: r(format!("SELECT status FROM {g} WHERE gid = ? {lock}")),
            change_status: r(change_status_template.clone()),
            insert_global_template,
            change_status_template,
            touch_cron_time: r(format!(
                "UPDATE {g} SET next_cron_interval = ?, next_cron_time = {ts}, update_time = {ts} \
                 WHERE gid = ? AND status = ? AND COALESCE(owner, '') = ?"
            )),
            // No ORDER BY: the (status, next_cron_time) index yields due rows oldest first per
            // status and the scan stops at the first row no other host has locked, instead of
            // sorting every due row (or all of them, as dtm's ORDER BY rand() does) per claim.
            claim_pick: r(format!(
                "SELECT id FROM {g} WHERE {UNFINISHED} AND next_cron_time < {ts} \
                 LIMIT ? FOR UPDATE SKIP LOCKED"
            )),
            count_due: r(format!(
                "SELECT COUNT(*) FROM {g} WHERE {UNFINISHED} AND next_cron_time < {ts}"
            )),
            claim_one: r(format!(
                "UPDATE {g} SET next_cron_time = {ts}, owner = ?, update_time = {ts} \
                 WHERE gid = ? AND {UNFINISHED} \
                 AND (COALESCE(owner, '') IN ('', ?) OR next_cron_time < {ts})"
            )),
            release: r(format!(
                "UPDATE {g} SET owner = '', update_time = {ts} WHERE gid = ? AND owner = ?"
            )),
            reset_pick: r(format!(
                "SELECT id FROM {g} WHERE {UNFINISHED} AND next_cron_time > {ts} \
                 AND {UNHELD_FOR_RESET} LIMIT ?"
            )),
            reset_one: r(format!(
                "UPDATE {g} SET next_cron_time = {ts}, update_time = {ts} \
                 WHERE gid = ? AND (COALESCE(owner, '') = '' OR next_cron_time < {ts})"
            )),
            create_kv: r(format!(
                "INSERT INTO {k} (cat, k, v, version, create_time, update_time) \
                 VALUES (?, ?, ?, 1, {ts}, {ts})"
            )),
            update_kv: r(format!(
                "UPDATE {k} SET v = ?, version = version + 1, update_time = {ts} \
                 WHERE cat = ? AND k = ? AND version = ?"
            )),
            delete_kv: r(format!("DELETE FROM {k} WHERE cat = ? AND k = ?")),
            globals: g,
            branches: b,
            kv: k,
            global_columns,
            kv_columns,
        }
    }

    /// One INSERT of `n` branch records.
    pub fn insert_branches(&self, n: usize) -> String {
        self.dialect.render(&self.insert_branches_template(n))
    }

    fn insert_branches_template(&self, n: usize) -> String {
        let ts = self.dialect.time_param();
        let row = format!("(?, ?, ?, ?, ?, ?, {ts}, {ts}, {ts})");
        format!(
            "INSERT INTO {} (gid, url, bin_data, branch_id, op, status, finish_time, create_time, \
             update_time) VALUES {}",
            self.branches,
            vec![row; n].join(", ")
        )
    }

    /// PostgreSQL: the transaction and its `n` branch records in one statement, so a creation
    /// is one round trip (a statement is atomic by itself). Binds as `insert_global`, then as
    /// `insert_branches`.
    pub fn insert_global_with_branches(&self, n: usize) -> String {
        self.dialect.render(&format!(
            "WITH created AS ({}) {}",
            self.insert_global_template,
            self.insert_branches_template(n)
        ))
    }

    /// `(branch_id, op) IN ((?, ?), …)` for `n` records (one: two equalities).
    fn branch_keys(n: usize) -> String {
        if n == 1 {
            // MariaDB (10.11) reads `(branch_id, op) IN ((?, ?))` with the gid alone from the
            // unique index, scanning and locking every branch record of the transaction.
            return "branch_id = ? AND op = ?".to_owned();
        }
        format!("(branch_id, op) IN ({})", vec!["(?, ?)"; n].join(", "))
    }

    /// Sets one status on `n` branch records of one transaction. `guarded` makes it a write of
    /// its own: it adds the condition that the transaction is unfinished, under a share lock,
    /// which makes a concurrent status change wait for this write (or this write see the new
    /// status), as dtm's `SELECT … FOR UPDATE` of the global does; and that all `n` records
    /// exist, so that it writes all of them or none. (The count is read through a derived table,
    /// which MySQL materialises: it refuses a subquery on the table an UPDATE writes. A single
    /// record needs no count, `counts_records`: the UPDATE writes it if it finds it. That is
    /// the common write, a branch result as it comes; MariaDB spends markedly less on it
    /// without the derived table.) Binds after the records' keys: the gid; if counted, the gid,
    /// the keys again and `n`.
    pub fn update_branches(&self, n: usize, guarded: bool) -> String {
        let mut sql = self.update_branches_template(n);
        if guarded {
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM {} WHERE gid = ? AND {UNFINISHED} {})",
                self.globals,
                self.dialect.share_lock(),
            ));
            if Self::counts_records(n) {
                sql.push_str(&format!(
                    " AND (SELECT found FROM (SELECT COUNT(*) AS found FROM {} WHERE gid = ? \
                     AND {}) AS existing) = ?",
                    self.branches,
                    Self::branch_keys(n)
                ));
            }
        }
        self.dialect.render(&sql)
    }

    /// Whether a guarded `update_branches` of `n` records counts them first.
    pub fn counts_records(n: usize) -> bool {
        n > 1
    }

    fn update_branches_template(&self, n: usize) -> String {
        let ts = self.dialect.time_param();
        format!(
            "UPDATE {} SET status = ?, finish_time = {ts}, update_time = {ts} \
             WHERE gid = ? AND {}",
            self.branches,
            Self::branch_keys(n)
        )
    }

    /// PostgreSQL: a status change with branch outcomes in one statement; it returns the gid
    /// when it changed anything. The status changes only if every one of the outcomes' records
    /// exists, and the records change only if the status did. `groups` are the sizes of the
    /// outcome groups, one status each. Binds as `change_status`, then the gid, every
    /// (branch_id, op), their count, then per group as `update_branches` (unguarded).
    pub fn change_status_with_branches(&self, groups: &[usize]) -> String {
        let total = groups.iter().sum();
        let mut sql = format!(
            "WITH changed AS ({} AND (SELECT count(*) FROM {} WHERE gid = ? AND {}) = ? \
             RETURNING gid)",
            self.change_status_template,
            self.branches,
            Self::branch_keys(total)
        );
        for (i, n) in groups.iter().enumerate() {
            sql.push_str(&format!(
                ", outcomes{i} AS ({} AND EXISTS (SELECT 1 FROM changed))",
                self.update_branches_template(*n)
            ));
        }
        sql.push_str(" SELECT gid FROM changed");
        self.dialect.render(&sql)
    }

    /// Makes the `n` transactions picked by `reset_pick` due, if they still qualify.
    /// Takes the `n` rows a claim picked (and holds locked): a lease and an owner token.
    pub fn claim_take(&self, n: usize) -> String {
        let ts = self.dialect.time_param();
        self.dialect.render(&format!(
            "UPDATE {} SET next_cron_time = {ts}, owner = ?, update_time = {ts} WHERE id IN ({})",
            self.globals,
            placeholders(n)
        ))
    }

    /// The records of `n` rows, by id.
    pub fn find_globals_by_ids(&self, n: usize) -> String {
        self.dialect.render(&format!(
            "SELECT {} FROM {} WHERE id IN ({})",
            self.global_columns,
            self.globals,
            placeholders(n)
        ))
    }

    pub fn reset_apply(&self, n: usize) -> String {
        let ts = self.dialect.time_param();
        self.dialect.render(&format!(
            "UPDATE {} SET next_cron_time = {ts}, update_time = {ts} \
             WHERE id IN ({}) AND {UNFINISHED} AND next_cron_time > {ts} AND {UNHELD_FOR_RESET}",
            self.globals,
            placeholders(n)
        ))
    }

    /// A page of transactions, with only the filters given.
    pub fn scan_globals(&self, after_cursor: bool, filter: &ScanConditions) -> String {
        let ts = self.dialect.time_param();
        let mut conditions = Vec::new();
        if after_cursor {
            conditions.push("id < ?".to_owned());
        }
        if filter.status {
            conditions.push("status = ?".into());
        }
        if filter.trans_type {
            conditions.push("trans_type = ?".into());
        }
        if filter.create_start {
            conditions.push(format!("create_time >= {ts}"));
        }
        if filter.create_end {
            conditions.push(format!("create_time <= {ts}"));
        }
        self.dialect.render(&format!(
            "SELECT {} FROM {}{} ORDER BY id DESC LIMIT ?",
            self.global_columns,
            self.globals,
            where_clause(&conditions)
        ))
    }

    /// A page of a key-value category.
    pub fn scan_kv(&self, after_cursor: bool) -> String {
        let cursor = if after_cursor { " AND id < ?" } else { "" };
        self.dialect.render(&format!(
            "SELECT {} FROM {} WHERE cat = ?{cursor} ORDER BY id DESC LIMIT ?",
            self.kv_columns, self.kv
        ))
    }

    /// Key-value entries; an absent category or key matches everything.
    pub fn find_kv(&self, by_cat: bool, by_key: bool) -> String {
        let mut conditions = Vec::new();
        if by_cat {
            conditions.push("cat = ?".to_owned());
        }
        if by_key {
            conditions.push("k = ?".to_owned());
        }
        self.dialect.render(&format!(
            "SELECT {} FROM {}{} ORDER BY id",
            self.kv_columns,
            self.kv,
            where_clause(&conditions)
        ))
    }
}

/// Which optional filters of a listing are set.
pub(super) struct ScanConditions {
    pub status: bool,
    pub trans_type: bool,
    pub create_start: bool,
    pub create_end: bool,
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// `?, ?, …`: `n` placeholders for an `IN` list.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
