//! `UpdateBranchSync: 0` on every store: a pass keeps its branch results and writes them with
//! its next status change, in that one commit, or all together when the pass ends. The real
//! binary on the embedded store and on this machine's PostgreSQL, MariaDB and Redis.

mod common;

use std::time::{Duration, Instant};

use common::stores::{in_scope, Backend};
use common::{transfer, Busi, Host, Reply};

const BATCHED: (&str, &str) = ("UPDATE_BRANCH_SYNC", "0");

/// Waits until the branch records of `gid` have the statuses `expected`.
async fn wait_branches(host: &Host, gid: &str, expected: [&str; 4]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let statuses = host.branch_statuses(gid).await;
        if statuses == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "branches of {gid}: {statuses:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The calls of `path` made for `gid`.
fn calls_for(busi: &Busi, path: &str, gid: &str) -> usize {
    busi.calls(path)
        .into_iter()
        .filter(|c| c.query["gid"] == gid)
        .count()
}

async fn sagas_store_every_branch_result(host: &Host) {
    // Both results go with the final status.
    let busi = Busi::start().await;
    let done = host.new_gid().await;
    assert_eq!(host.post("/submit", transfer(&done, &busi)).await.0, 200);
    host.wait_status(&done, "succeed", 10).await;
    wait_branches(host, &done, ["prepared", "succeed", "prepared", "succeed"]).await;

    // Concurrent: the results come back as reports from calls running side by side.
    let concurrent = host.new_gid().await;
    let mut body = transfer(&concurrent, &busi);
    body["custom_data"] = r#"{"concurrent":true}"#.into();
    assert_eq!(host.post("/submit", body).await.0, 200);
    host.wait_status(&concurrent, "succeed", 10).await;
    wait_branches(
        host,
        &concurrent,
        ["prepared", "succeed", "prepared", "succeed"],
    )
    .await;

    // A failure: the action results go with the change to aborting, the compensations' with
    // the change to failed.
    let busi = Busi::start().await;
    busi.always("/TransIn", Reply::failure("no money"));
    let failed = host.new_gid().await;
    assert_eq!(host.post("/submit", transfer(&failed, &busi)).await.0, 200);
    host.wait_status(&failed, "failed", 10).await;
    wait_branches(host, &failed, ["succeed", "succeed", "succeed", "failed"]).await;
}

/// A pass that stops on an error (no status change) still stores the results it got, so the
/// next pass does not repeat them.
async fn a_pass_without_a_status_change_stores_its_results_at_its_end(host: &Host) {
    let busi = Busi::start().await;
    busi.once("/TransIn", Reply::error());
    let gid = host.new_gid().await;
    assert_eq!(host.post("/submit", transfer(&gid, &busi)).await.0, 200);
    wait_branches(host, &gid, ["prepared", "succeed", "prepared", "prepared"]).await;
    assert_eq!(host.status(&gid).await, "submitted");

    host.advance_clock(25).await;
    host.wait_status(&gid, "succeed", 15).await;
    wait_branches(host, &gid, ["prepared", "succeed", "prepared", "succeed"]).await;
    assert_eq!(
        calls_for(&busi, "/TransOut", &gid),
        1,
        "a stored success is not repeated"
    );
    assert_eq!(calls_for(&busi, "/TransIn", &gid), 2);
}

async fn on_host(host: Host) {
    sagas_store_every_branch_result(&host).await;
    a_pass_without_a_status_change_stores_its_results_at_its_end(&host).await;
}

async fn on_shared_store(server: Backend) {
    in_scope(server, "batched", |scope| async move {
        let mut env = scope.env(scope.port);
        env.push((BATCHED.0.into(), BATCHED.1.into()));
        on_host(Host::start_with(&env).await).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store() {
    on_host(Host::start_with(&[BATCHED]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    on_shared_store(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store() {
    on_shared_store(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store() {
    on_shared_store(Backend::Redis).await;
}
