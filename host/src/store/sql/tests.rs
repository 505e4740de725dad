//! Against throwaway servers of this test process (a PostgreSQL and a MariaDB started on first
//! use, see `test-servers`): each test works in a schema (PostgreSQL) or database (MySQL) of
//! its own, so tests running at once do not meet.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_servers::{Kind, Server};

use super::pool::CONNECT_TIMEOUT;
use super::*;
use crate::model::{branch_status, op};
use crate::store::suite::{branch, outcome, sample_global};

fn kind(dialect: Dialect) -> Kind {
    match dialect {
        Dialect::Postgres => Kind::Postgres,
        Dialect::MySql => Kind::MariaDb,
    }
}

/// The store settings for `scope` on the server listening on `port`.
fn config(dialect: Dialect, port: u16, scope: &str) -> StoreOptions {
    let mut c = StoreOptions::from(&crate::config::Config::default().store);
    c.kind = match dialect {
        Dialect::Postgres => crate::store::StoreKind::Postgres,
        Dialect::MySql => crate::store::StoreKind::MySql,
    };
    c.host = "127.0.0.1".into();
    c.port = port.into();
    c.max_open_conns = 8;
    match dialect {
        Dialect::Postgres => {
            c.user = "postgres".into();
            c.db = "postgres".into();
            c.schema = scope.into();
        }
        Dialect::MySql => {
            c.user = "root".into();
            c.db = scope.into();
        }
    }
    c
}

/// The settings of a fresh scope on this process's server; `None` when it is not installed.
fn fresh_config(dialect: Dialect) -> Option<StoreOptions> {
    static NEXT_SCOPE: AtomicUsize = AtomicUsize::new(0);
    let server = Server::shared(kind(dialect))?;
    let scope = format!("dtm_test_{}", NEXT_SCOPE.fetch_add(1, Ordering::Relaxed));
    Some(config(dialect, server.port(), &scope))
}

async fn execute(store: &SqlStore, sql: String) {
    let executed: StoreResult<()> = async {
        on_connection!(store, conn => {
            sqlx::query(dynamic(sql)).execute(conn).await.map_err(db_error)?;
            Ok(())
        })
    }
    .await;
    executed.unwrap();
}

/// Opens `count` stores on one fresh scope, first running `setup` statements there (`{scope}`
/// stands for its name), and runs `test` with them.
async fn with_stores<F, Fut>(dialect: Dialect, count: usize, setup: &[&str], test: F)
where
    F: FnOnce(Vec<Arc<SqlStore>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(config) = fresh_config(dialect) else {
        return;
    };
    let scope = match dialect {
        Dialect::Postgres => config.schema.clone(),
        Dialect::MySql => config.db.clone(),
    };
    if !setup.is_empty() {
        // The scope has to exist first; opening a store creates it (with dtm-host's tables,
        // which the setup replaces).
        let admin = SqlStore::open(dialect, &config).await.unwrap();
        for statement in setup {
            execute(&admin, statement.replace("{scope}", &scope)).await;
        }
    }
    let mut stores = Vec::new();
    for _ in 0..count {
        stores.push(Arc::new(SqlStore::open(dialect, &config).await.unwrap()));
    }
    test(stores).await;
}

/// A store on a fresh scope, for the shared suite.
async fn fresh(dialect: Dialect) -> Option<Box<SqlStore>> {
    let config = fresh_config(dialect)?;
    Some(Box::new(SqlStore::open(dialect, &config).await.unwrap()))
}

mod postgres_suite {
    crate::store::suite::store_suite!(super::fresh(super::Dialect::Postgres));
}

mod mysql_suite {
    crate::store::suite::store_suite!(super::fresh(super::Dialect::MySql));
}

/// Several hosts claiming batches from one database at once: every due transaction is claimed
/// exactly once while its lease runs.
async fn concurrent_claims_never_share_a_transaction(dialect: Dialect) {
    const DUE: usize = 60;
    with_stores(dialect, 2, &[], |stores| async move {
        let base = 1_700_000_000_000;
        for i in 0..DUE {
            let mut g = sample_global(&format!("claim-{i}"), base);
            g.next_cron_time = base - 1_000;
            stores[0].save_new(&g, &[]).await.unwrap();
        }
        let claimed = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut workers = Vec::new();
        for store in &stores {
            for _ in 0..4 {
                let (store, claimed) = (store.clone(), claimed.clone());
                workers.push(tokio::spawn(async move {
                    while claimed.lock().unwrap().len() < DUE && Instant::now() < deadline {
                        // Batches of a few, so batches overlap in time and in the rows they
                        // look at.
                        let batch = store
                            .claim_due(base, base + 3_600_000, base, 3)
                            .await
                            .unwrap();
                        if batch.is_empty() {
                            // Rows locked by the other claimers are skipped: try again.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        claimed
                            .lock()
                            .unwrap()
                            .extend(batch.into_iter().map(|g| g.gid));
                    }
                }));
            }
        }
        for worker in workers {
            worker.await.unwrap();
        }
        let claimed = claimed.lock().unwrap().clone();
        let distinct: HashSet<_> = claimed.iter().collect();
        assert_eq!(distinct.len(), claimed.len(), "claimed twice: {claimed:?}");
        assert_eq!(claimed.len(), DUE);
        assert!(stores[1]
            .claim_due(base, base + 3_600_000, base, 1)
            .await
            .unwrap()
            .pop()
            .is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_claims_never_share_a_transaction() {
    concurrent_claims_never_share_a_transaction(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_concurrent_claims_never_share_a_transaction() {
    concurrent_claims_never_share_a_transaction(Dialect::MySql).await;
}

/// A host that claimed and died: once its lease has passed another host claims the transaction.
async fn an_expired_claim_is_taken_over(dialect: Dialect) {
    with_stores(dialect, 2, &[], |stores| async move {
        let base = 1_700_000_000_000;
        let mut g = sample_global("lease", base);
        g.next_cron_time = base;
        stores[0].save_new(&g, &[]).await.unwrap();
        let first = stores[0]
            .claim_due(base + 1_000, base + 10_000, base + 1, 1)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(first.next_cron_time, base + 10_000);
        assert!(
            stores[1]
                .claim_due(base + 5_000, base + 15_000, base + 5_000, 1)
                .await
                .unwrap()
                .pop()
                .is_none(),
            "claimed during the lease"
        );
        let second = stores[1]
            .claim_due(base + 10_001, base + 20_000, base + 10_001, 1)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(second.gid, "lease");
        assert_ne!(second.owner, first.owner);
        assert_eq!(second.update_time, base + 10_001);
    })
    .await;
}

#[tokio::test]
async fn postgres_an_expired_claim_is_taken_over() {
    an_expired_claim_is_taken_over(Dialect::Postgres).await;
}

#[tokio::test]
async fn mysql_an_expired_claim_is_taken_over() {
    an_expired_claim_is_taken_over(Dialect::MySql).await;
}

/// A write the store refuses leaves no lock behind: another host changes the transaction right
/// after. (An append to a transaction in another status reads that status under a share lock,
/// then gives up. A transaction that is dropped instead of ended is rolled back only once its
/// connection's return to the pool has run on the runtime; until then its locks stay.) The
/// other host writes from a runtime of its own while this test's runtime is blocked, so
/// nothing left to run in the background ends the first transaction for it.
async fn a_refused_write_leaves_no_lock(dialect: Dialect) {
    let Some(config) = fresh_config(dialect) else {
        return;
    };
    let store = SqlStore::open(dialect, &config).await.unwrap();
    store
        .save_new(&sample_global("no-lock", 1_000), &[])
        .await
        .unwrap();
    let branch = Branch::new("no-lock", "01".into(), "action", String::new(), vec![], 1);
    let refused = store
        .append_branches("no-lock", GlobalStatus::Submitted, &[branch])
        .await;
    assert_eq!(refused, Err(StoreError::NotFound));
    let changed = std::thread::scope(|scope| {
        let other_host = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let other = SqlStore::open(dialect, &config).await.unwrap();
                let change = other.change_status(
                    "no-lock",
                    GlobalStatus::Prepared,
                    GlobalStatus::Submitted,
                    StatusChange::default(),
                    2_000,
                );
                tokio::time::timeout(Duration::from_secs(5), change).await
            })
        });
        other_host.join().unwrap()
    });
    assert_eq!(changed, Ok(Ok(())), "blocked by the refused write's lock");
}

#[tokio::test]
async fn postgres_a_refused_write_leaves_no_lock() {
    a_refused_write_leaves_no_lock(Dialect::Postgres).await;
}

#[tokio::test]
async fn mysql_a_refused_write_leaves_no_lock() {
    a_refused_write_leaves_no_lock(Dialect::MySql).await;
}

/// A branch result locks only its own record: it is written while another writer holds the
/// transaction's other branch record. (MariaDB read a one-record write's `(branch_id, op) IN
/// ((?, ?))` with the gid alone from the unique index, and waited for every record of the
/// transaction.)
async fn a_branch_write_locks_only_its_record(dialect: Dialect) {
    let Some(store) = fresh(dialect).await else {
        return;
    };
    let g = sample_global("own-record", 1_000);
    let records = [
        branch(&g.gid, "01", op::ACTION),
        branch(&g.gid, "02", op::ACTION),
    ];
    store.save_new(&g, &records).await.unwrap();
    let hold_02 = format!(
        "UPDATE {} SET status = status WHERE gid = 'own-record' AND branch_id = '02' \
         AND op = 'action'",
        store.sql.branches
    );
    let written = on_pool!(store, lender => {
        let mut holder = lender.lend().await.unwrap();
        let mut tx = (*holder).begin().await.unwrap();
        sqlx::query(dynamic(hold_02)).execute(&mut *tx).await.unwrap();
        let result = [outcome("01", op::ACTION, branch_status::SUCCEED)];
        let write = store.save_branch_outcomes(&g.gid, &result, 2_000);
        let written = tokio::time::timeout(Duration::from_secs(5), write).await;
        tx.rollback().await.unwrap();
        written
    });
    assert_eq!(written, Ok(Ok(())), "waited for the other record's lock");
}

#[tokio::test]
async fn postgres_a_branch_write_locks_only_its_record() {
    a_branch_write_locks_only_its_record(Dialect::Postgres).await;
}

#[tokio::test]
async fn mysql_a_branch_write_locks_only_its_record() {
    a_branch_write_locks_only_its_record(Dialect::MySql).await;
}

/// dtm's scripts (docs/engine.md §4.3, second-precision times) made the tables: dtm-host uses them.
async fn works_on_tables_dtm_created(dialect: Dialect, setup: &[&str]) {
    with_stores(dialect, 1, setup, |stores| async move {
        let store = &stores[0];
        let base = 1_700_000_000_000;
        let mut g = sample_global("from-dtm", base + 400);
        g.next_cron_time = base;
        let branch = Branch::new(
            "from-dtm",
            "01".into(),
            "action",
            "http://b".into(),
            vec![1],
            base,
        );
        store.save_new(&g, &[branch]).await.unwrap();
        let claimed = store
            .claim_due(base + 1_000, base + 20_000, base, 1)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(claimed.create_time, base, "rounded to the second");
        assert_eq!(claimed.next_cron_time, base + 20_000);
        let outcome = BranchOutcome {
            branch_id: "01".into(),
            op: "action".into(),
            status: "succeed",
        };
        store
            .save_branch_outcomes("from-dtm", &[outcome], base + 2_000)
            .await
            .unwrap();
        store
            .change_status(
                "from-dtm",
                GlobalStatus::Prepared,
                GlobalStatus::Succeed,
                StatusChange::default(),
                base + 3_000,
            )
            .await
            .unwrap();
        let stored = store.find_global("from-dtm").await.unwrap().unwrap();
        assert_eq!(stored.finish_time, Some(base + 3_000));
        let branches = store.find_branches("from-dtm").await.unwrap();
        assert_eq!(
            (branches[0].status.as_str(), branches[0].bin_data.as_slice()),
            ("succeed", &[1u8][..])
        );
        store.create_kv("topics", "t", "[]", base).await.unwrap();
        assert_eq!(store.find_kv("topics", "t").await.unwrap()[0].version, 1);
    })
    .await;
}

#[tokio::test]
async fn postgres_works_on_tables_dtm_created() {
    works_on_tables_dtm_created(
        Dialect::Postgres,
        &[
            "DROP TABLE {scope}.trans_global, {scope}.trans_branch_op, {scope}.kv",
            "CREATE TABLE {scope}.trans_global (id bigint NOT NULL DEFAULT NEXTVAL('{scope}.trans_global_seq'), \
             gid varchar(128) NOT NULL, trans_type varchar(45) NOT NULL, status varchar(45) NOT NULL, \
             query_prepared varchar(1024) NOT NULL, protocol varchar(45) NOT NULL, \
             create_time timestamp(0) with time zone DEFAULT NULL, update_time timestamp(0) with time zone DEFAULT NULL, \
             finish_time timestamp(0) with time zone DEFAULT NULL, rollback_time timestamp(0) with time zone DEFAULT NULL, \
             options varchar(1024) DEFAULT '', custom_data varchar(1024) DEFAULT '', next_cron_interval int DEFAULT NULL, \
             next_cron_time timestamp(0) with time zone DEFAULT NULL, owner varchar(128) NOT NULL DEFAULT '', \
             ext_data text, result varchar(1024) DEFAULT '', rollback_reason varchar(1024) DEFAULT '', \
             PRIMARY KEY (id), CONSTRAINT gid UNIQUE (gid))",
            "CREATE TABLE {scope}.trans_branch_op (id bigint NOT NULL DEFAULT NEXTVAL('{scope}.trans_branch_op_seq'), \
             gid varchar(128) NOT NULL, url varchar(1024) NOT NULL, data TEXT, bin_data bytea, \
             branch_id VARCHAR(128) NOT NULL, op varchar(45) NOT NULL, status varchar(45) NOT NULL, \
             finish_time timestamp(0) with time zone DEFAULT NULL, rollback_time timestamp(0) with time zone DEFAULT NULL, \
             create_time timestamp(0) with time zone DEFAULT NULL, update_time timestamp(0) with time zone DEFAULT NULL, \
             PRIMARY KEY (id), CONSTRAINT gid_branch_uniq UNIQUE (gid, branch_id, op))",
            "CREATE TABLE {scope}.kv (id bigint NOT NULL DEFAULT NEXTVAL('{scope}.kv_seq'), cat varchar(45) NOT NULL, \
             k varchar(128) NOT NULL, v TEXT, version bigint DEFAULT 1, \
             create_time timestamp(0) with time zone DEFAULT NULL, update_time timestamp(0) with time zone DEFAULT NULL, \
             PRIMARY KEY (id), CONSTRAINT uniq_k UNIQUE (cat, k))",
        ],
    )
    .await;
}

#[tokio::test]
async fn mysql_works_on_tables_dtm_created() {
    works_on_tables_dtm_created(
        Dialect::MySql,
        &[
            "DROP TABLE `{scope}`.trans_global, `{scope}`.trans_branch_op, `{scope}`.kv",
            "CREATE TABLE `{scope}`.trans_global (`id` bigint(22) NOT NULL AUTO_INCREMENT, \
             `gid` varchar(128) NOT NULL, `trans_type` varchar(45) not null, `status` varchar(12) NOT NULL, \
             `query_prepared` varchar(1024) NOT NULL, `protocol` varchar(45) not null, \
             `create_time` datetime DEFAULT NULL, `update_time` datetime DEFAULT NULL, \
             `finish_time` datetime DEFAULT NULL, `rollback_time` datetime DEFAULT NULL, \
             `options` varchar(1024) DEFAULT 'options for transaction like: TimeoutToFail, RequestTimeout', \
             `custom_data` varchar(1024) DEFAULT '', `next_cron_interval` int(11) default null, \
             `next_cron_time` datetime default null, `owner` varchar(128) not null default '', \
             `ext_data` TEXT, `result` varchar(1024) DEFAULT '', `rollback_reason` varchar(1024) DEFAULT '', \
             PRIMARY KEY (`id`), UNIQUE KEY `gid` (`gid`), key `owner`(`owner`), \
             key `status_next_cron_time` (`status`, `next_cron_time`)) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
            "CREATE TABLE `{scope}`.trans_branch_op (`id` bigint(22) NOT NULL AUTO_INCREMENT, \
             `gid` varchar(128) NOT NULL, `url` varchar(1024) NOT NULL, `data` TEXT, `bin_data` BLOB, \
             `branch_id` VARCHAR(128) NOT NULL, `op` varchar(45) NOT NULL, `status` varchar(45) NOT NULL, \
             `finish_time` datetime DEFAULT NULL, `rollback_time` datetime DEFAULT NULL, \
             `create_time` datetime DEFAULT NULL, `update_time` datetime DEFAULT NULL, \
             PRIMARY KEY (`id`), UNIQUE KEY `gid_uniq` (`gid`, `branch_id`, `op`)) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
            "CREATE TABLE `{scope}`.kv (`id` bigint(22) NOT NULL AUTO_INCREMENT, `cat` varchar(45) NOT NULL, \
             `k` varchar(128) NOT NULL, `v` TEXT, `version` bigint(22) default 1, \
             create_time datetime default NULL, update_time datetime DEFAULT NULL, \
             PRIMARY KEY (`id`), UNIQUE key `uniq_k`(`cat`, `k`)) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
        ],
    )
    .await;
}

/// No server on the port: opening fails quickly with an error naming the server.
async fn an_unreachable_server_is_a_clear_error(dialect: Dialect) {
    let port = test_servers::free_port();
    let config = config(dialect, port, "dtm_unreachable");
    let started = Instant::now();
    let error = SqlStore::open(dialect, &config).await.err().unwrap();
    assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2));
    match error {
        StoreError::Backend(message) => {
            assert!(message.starts_with(dialect.name()), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn postgres_an_unreachable_server_is_a_clear_error() {
    an_unreachable_server_is_a_clear_error(Dialect::Postgres).await;
}

#[tokio::test]
async fn mysql_an_unreachable_server_is_a_clear_error() {
    an_unreachable_server_is_a_clear_error(Dialect::MySql).await;
}

/// The connections go away under a running store: calls fail with a backend error, no panic.
async fn lost_connections_are_backend_errors(dialect: Dialect) {
    with_stores(dialect, 2, &[], |stores| async move {
        on_pool!(stores[1], lender => lender.close().await);
        match stores[1].find_global("x").await {
            Err(StoreError::Backend(message)) => {
                assert!(message.starts_with(dialect.name()), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let g = sample_global("after-loss", 1_000);
        assert!(matches!(
            stores[1].save_new(&g, &[]).await,
            Err(StoreError::Backend(_))
        ));
        assert!(stores[0].find_global("after-loss").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn postgres_lost_connections_are_backend_errors() {
    lost_connections_are_backend_errors(Dialect::Postgres).await;
}

#[tokio::test]
async fn mysql_lost_connections_are_backend_errors() {
    lost_connections_are_backend_errors(Dialect::MySql).await;
}

#[test]
fn placeholders_are_numbered_for_postgres() {
    assert_eq!(
        Dialect::Postgres.render("a = ? AND b IN (?, ?)"),
        "a = $1 AND b IN ($2, $3)"
    );
    assert_eq!(Dialect::MySql.render("a = ?"), "a = ?");
}

#[test]
fn times_round_trip_and_are_clamped() {
    for dialect in [Dialect::Postgres, Dialect::MySql] {
        for ms in [0, 1_000, 1_700_000_000_123, 20_000_000_000_000] {
            assert_eq!(dialect.decode_time(dialect.encode_time(ms)), ms);
        }
        assert_eq!(
            dialect.encode_time(i64::MAX),
            dialect.encode_time(253_402_214_400_000)
        );
    }
}

/// Each of PostgreSQL's group statements runs: writes queued together are written by it, not
/// handed back to be written one by one (which the shared suite's answers alone would not show).
#[tokio::test]
async fn postgres_writes_queued_together_are_written_as_one() {
    use self::group_commit::Grouped;
    use crate::model::{branch_status, op};
    let Some(store) = fresh(Dialect::Postgres).await else {
        return;
    };
    let Some(groups) = store.groups.as_ref() else {
        panic!("a PostgreSQL store writes in groups");
    };
    let written =
        |outcomes: [Grouped; 2]| outcomes.iter().all(|o| matches!(o, Grouped::Done(Ok(()))));
    let gids = ["group-a", "group-b"];
    let creation = |gid: &str| Creation {
        global: sample_global(gid, 1_000),
        branches: vec![Branch::new(
            gid,
            "01".into(),
            op::ACTION,
            "http://busi".into(),
            vec![],
            1_000,
        )],
    };
    let outcome = || BranchOutcome {
        branch_id: "01".into(),
        op: op::ACTION.into(),
        status: branch_status::SUCCEED,
    };
    let created = futures::join!(
        groups.creations.write(creation(gids[0])),
        groups.creations.write(creation(gids[1]))
    );
    assert!(written([created.0, created.1]));
    let results = |gid: &str| BranchResults {
        gid: gid.into(),
        outcomes: vec![outcome()],
        now: 2_000,
    };
    let saved = futures::join!(
        groups.results.write(results(gids[0])),
        groups.results.write(results(gids[1]))
    );
    assert!(written([saved.0, saved.1]));
    let change = |gid: &str| StatusWrite {
        gid: gid.into(),
        from: GlobalStatus::Prepared,
        to: GlobalStatus::Succeed,
        change: StatusChange::default(),
        now: 3_000,
    };
    let changed = futures::join!(
        groups.changes.write(change(gids[0])),
        groups.changes.write(change(gids[1]))
    );
    assert!(written([changed.0, changed.1]));
    for gid in gids {
        let global = store.find_global(gid).await.unwrap().unwrap();
        assert_eq!(global.status, GlobalStatus::Succeed);
        let records = store.find_branches(gid).await.unwrap();
        assert_eq!(records[0].status, branch_status::SUCCEED);
    }
}

/// MySQL: a creation with its branch records is one query, one round trip: the server's general
/// log shows one `Query` for it, with both inserts and the commit, and nothing else naming its
/// tables (no prepared statements, no statements sent apart).
#[tokio::test]
async fn mysql_a_creation_is_one_query() {
    use crate::model::op;
    let Some(config) = fresh_config(Dialect::MySql) else {
        return;
    };
    let store = SqlStore::open(Dialect::MySql, &config).await.unwrap();
    let branches = [
        branch("one-query", "01", op::ACTION),
        branch("one-query", "02", op::ACTION),
    ];
    execute(&store, "SET GLOBAL log_output = 'TABLE'".into()).await;
    execute(&store, "SET GLOBAL general_log = 1".into()).await;
    let created = store
        .save_new(&sample_global("one-query", 1_000), &branches)
        .await;
    execute(&store, "SET GLOBAL general_log = 0".into()).await;
    created.unwrap();
    let logged: StoreResult<Vec<(String, Vec<u8>)>> = async {
        on_connection!(store, conn => {
            sqlx::query_as(
                "SELECT command_type, argument FROM mysql.general_log \
                 WHERE argument LIKE CONCAT('%`', ?, '`.trans%') ORDER BY event_time",
            )
            .bind(&config.db)
            .fetch_all(conn)
            .await
            .map_err(db_error)
        })
    }
    .await;
    let logged: Vec<(String, String)> = logged
        .unwrap()
        .into_iter()
        .map(|(command, argument)| (command, String::from_utf8_lossy(&argument).into_owned()))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:#?}");
    let (command, text) = &logged[0];
    assert_eq!(command, "Query");
    for part in [
        "START TRANSACTION",
        "trans_global",
        "trans_branch_op",
        "COMMIT",
    ] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    assert_eq!(store.find_branches("one-query").await.unwrap().len(), 2);
}

/// MySQL: a creation whose branch records the server refuses after it inserted the transaction
/// (two records with one key) leaves nothing: the transaction it began is rolled back, not left
/// open for the connection's next call to commit.
#[tokio::test]
async fn mysql_a_creation_refused_midway_leaves_nothing() {
    use crate::model::op;
    let Some(store) = fresh(Dialect::MySql).await else {
        return;
    };
    let twice = branch("midway", "01", op::ACTION);
    let refused = store
        .save_new(&sample_global("midway", 1_000), &[twice.clone(), twice])
        .await;
    assert_eq!(refused, Err(StoreError::UniqueConflict));
    store
        .save_new(&sample_global("next", 1_000), &[])
        .await
        .unwrap();
    assert!(store.find_global("midway").await.unwrap().is_none());
}
