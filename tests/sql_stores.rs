//! The real binary on PostgreSQL and MySQL/MariaDB (throwaway servers of this test process,
//! each test in its own schema or database): sagas complete, survive a restart, and the host
//! waits for a store that is down at start and fails requests (and readiness) clearly while it
//! is gone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::relay::Relay;
use common::stores::{in_scope, Backend, StoreScope};
use common::{transfer, Busi, Host, Reply};
use futures::StreamExt;
use serde_json::json;

const SUCCEEDED: [&str; 4] = ["prepared", "succeed", "prepared", "succeed"];

async fn saga_survives_a_restart(server: Backend) {
    in_scope(server, "e2e", |scope| async move {
        let busi = Busi::start().await;
        let mut host = scope.start_host().await;
        let done = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&done, &busi)).await.0, 200);
        host.wait_status(&done, "succeed", 10).await;
        assert_eq!(host.branch_statuses(&done).await, SUCCEEDED);

        busi.once("/TransIn", Reply::ok().after(Duration::from_secs(30)));
        let in_flight = host.new_gid().await;
        assert_eq!(
            host.post("/submit", transfer(&in_flight, &busi)).await.0,
            200
        );
        busi.wait_for("/TransIn", 2).await;
        host.restart().await;

        let q = host.query(&done).await;
        assert_eq!(q["transaction"]["status"], "succeed", "{q}");
        assert_eq!(host.branch_statuses(&done).await, SUCCEEDED);
        assert_eq!(host.status(&in_flight).await, "submitted");
        assert_eq!(
            host.branch_statuses(&in_flight).await,
            ["prepared", "succeed", "prepared", "prepared"]
        );
        host.advance_clock(15).await;
        host.wait_status(&in_flight, "succeed", 15).await;
        let calls_of = |path: &str| {
            busi.calls(path)
                .into_iter()
                .filter(|c| c.query["gid"] == in_flight)
                .count()
        };
        assert_eq!(
            calls_of("/TransOut"),
            1,
            "a recorded success is not repeated"
        );
        assert_eq!(calls_of("/TransIn"), 2);
        assert_eq!(calls_of("/TransOutRevert"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_saga_survives_a_restart() {
    saga_survives_a_restart(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_saga_survives_a_restart() {
    saga_survives_a_restart(Backend::MySql).await;
}

/// `GET path` on the host: status and JSON body.
async fn probe(host: &Host, path: &str) -> (u16, serde_json::Value) {
    let response = host.http.get(host.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn waits_for_the_store_and_fails_clearly_while_it_is_gone(server: Backend) {
    in_scope(server, "e2e", |scope| async move {
        let busi = Busi::start().await;
        let relay = Arc::new(Relay::new(scope.port));
        let env = scope.env(relay.port);
        let mut host = Host::start_alive(&env).await;
        // Alive while it waits for the store, so an orchestrator does not restart it; not
        // ready, and its API refuses work with the reason.
        let name = format!("{server:?}").to_lowercase();
        let waiting = format!("not ready: waiting for the {name} store");
        for path in ["/api/ready", "/api/ping", "/api/dtmsvr/newGid"] {
            let (status, reply) = probe(&host, path).await;
            assert_eq!(status, 503, "{path}: {reply}");
            let message = reply["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(&waiting), "{path}: {reply}");
        }
        assert_eq!(probe(&host, "/api/health").await.0, 200);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !host.log().contains("store unreachable; retrying") {
            assert!(std::time::Instant::now() < deadline, "{}", host.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, reply) = probe(&host, "/api/ready").await;
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            !message.ends_with("not tried yet"),
            "names the failure: {reply}"
        );

        relay.open().await;
        host.wait_until_up("/api/ping").await;
        let before = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&before, &busi)).await.0, 200);
        host.wait_status(&before, "succeed", 10).await;

        relay.cut();
        let lost = host.new_gid().await;
        let (status, reply) = host.post("/submit", transfer(&lost, &busi)).await;
        assert_eq!(status, 500, "{reply}");
        assert!(reply.to_string().contains(&name), "{reply}");
        let (status, reply) = probe(&host, "/api/ready").await;
        assert_eq!(status, 503, "{reply}");
        let reason = reply["message"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("not ready: the {name} store")),
            "{reply}"
        );
        assert_eq!(probe(&host, "/api/health").await.0, 200, "alive all along");

        relay.open().await;
        let after = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&after, &busi)).await.0, 200);
        host.wait_status(&after, "succeed", 10).await;
        assert_eq!(probe(&host, "/api/ready").await.0, 200);
        assert_eq!(host.status(&before).await, "succeed");
        let (_, q) = host.get(&format!("/query?gid={lost}")).await;
        assert_eq!(
            q["transaction"],
            json!(null),
            "an unacknowledged submit was stored"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_down_at_start_and_during_operation() {
    waits_for_the_store_and_fails_clearly_while_it_is_gone(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_down_at_start_and_during_operation() {
    waits_for_the_store_and_fails_clearly_while_it_is_gone(Backend::MySql).await;
}

/// Under load, with dtm's default `MaxOpenConns` (500) against a server that accepts only 20
/// connections: every request waits for a connection instead of failing (the host opens no
/// more than the server accepts, and requests share them).
async fn defaults_fit_the_server_connection_limit(backend: Backend, limit: &str) {
    const SAGAS: usize = 400;
    const AT_ONCE: usize = 64;
    let Some(server) = test_servers::Server::start_with(backend.kind(), &[limit]) else {
        return;
    };
    let scope = StoreScope::on(&server, backend, "limit");
    let (host, busi) = (Arc::new(scope.start_host().await), Busi::start().await);
    let answers: Vec<(u16, serde_json::Value)> = futures::stream::iter(0..SAGAS)
        .map(|i| {
            let (host, body) = (host.clone(), transfer(&format!("limit-{i}"), &busi));
            async move {
                let mut body = body;
                body["wait_result"] = json!(true);
                host.post("/submit", body).await
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {SAGAS} sagas failed, e.g. {:?}\n{}",
        failed.len(),
        failed.first(),
        host.log()
    );
    assert!(
        host.log()
            .contains("at most as many connections as the server accepts"),
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_defaults_fit_the_server_connection_limit() {
    defaults_fit_the_server_connection_limit(Backend::Postgres, "-cmax_connections=20").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_defaults_fit_the_server_connection_limit() {
    defaults_fit_the_server_connection_limit(Backend::MySql, "--max-connections=20").await;
}

/// With `UpdateBranchSync: 1` (the default) on PostgreSQL, a 2-branch saga writes three times:
/// its submit, the first action's result while the second runs, and the second's result with
/// the final status, in one statement (PostgreSQL's statement log counts them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writes_the_last_result_with_the_final_status() {
    let Some((server, host, busi)) = logged_postgres("writes").await else {
        return;
    };
    busi.once("/TransIn", Reply::ok().after(Duration::from_millis(300)));
    let writes = writes_of_a_saga(&server, &host, &busi, json!({})).await;
    assert_eq!(writes.len(), 3, "{writes:#?}");
}

/// With a retry interval shorter than a branch call, the lease a submitted transaction is
/// created with already covers the pass's first call: the pass need not renew it first (one
/// write more), and no other host's cron can take the transaction while the creation is being
/// written and the pass has not renewed it yet.
#[tokio::test]
async fn postgres_creates_a_submitted_transaction_with_the_lease_of_its_first_call() {
    let Some((server, host, busi)) = logged_postgres("first_lease").await else {
        return;
    };
    let options = json!({"retry_interval": 1});
    let writes = writes_of_a_saga(&server, &host, &busi, options).await;
    assert_eq!(writes.len(), 3, "no lease renewal: {writes:#?}");
}

/// Sequential sagas in `round_trips_of_sagas`.
const SAGAS: usize = 20;
/// Round trips allowed beyond the sagas' writes: preparing each statement the first time a
/// connection runs it (sqlx), on one connection or two.
const PREPARES: usize = 8;

/// A store call's connection goes back for the next call as it is: sqlx's pool would ping it
/// first, one round trip more per call. (Only a connection idle for a while, or after a failed
/// call, is pinged before use.)
#[tokio::test]
async fn postgres_store_calls_send_no_pings_between_them() {
    let Some(round_trips) = round_trips_of_sagas(Backend::Postgres, "no_pings").await else {
        return;
    };
    // Three writes per saga (README, "When branch results are stored"); with a ping after each
    // call it was more than six.
    assert!(
        round_trips <= 3 * SAGAS + PREPARES,
        "{round_trips} round trips for {SAGAS} sagas"
    );
}

/// MySQL's store calls send no pings between them either. A 2-branch saga there costs four
/// round trips, each one commit: its creation (one query), the first action's result, the
/// second's, and the final status (README, "When branch results are stored").
#[tokio::test]
async fn mysql_store_calls_send_no_pings_between_them() {
    let Some(round_trips) = round_trips_of_sagas(Backend::MySql, "no_pings").await else {
        return;
    };
    assert!(
        round_trips <= 4 * SAGAS + PREPARES,
        "{round_trips} round trips for {SAGAS} sagas"
    );
}

/// The round trips between a host and its store (a shared server of `backend`, in scope `name`)
/// during [`SAGAS`] sagas with `wait_result`, one after another (the recovery loop idle); `None`
/// where the server cannot run here.
async fn round_trips_of_sagas(backend: Backend, name: &str) -> Option<usize> {
    let server = test_servers::Server::shared(backend.kind())?;
    let relay = match backend {
        Backend::Postgres => Relay::counting_postgres_round_trips(server.port()),
        Backend::MySql => Relay::counting_mysql_round_trips(server.port()),
        // The relay reads SQL protocols only.
        Backend::Redis => return None,
    };
    relay.open().await;
    let scope = StoreScope::on(server, backend, name);
    // The recovery loop's claims and backlog counts would add theirs at random (once a second in
    // tests); once a minute they stay out of the count.
    let mut env = scope.env(relay.port);
    env.push(("TRANS_CRON_INTERVAL".to_owned(), "60".to_owned()));
    let (host, busi) = (Host::start_with(&env).await, Busi::start().await);
    let before = relay.round_trips();
    for _ in 0..SAGAS {
        let gid = host.new_gid().await;
        let mut body = transfer(&gid, &busi);
        body["wait_result"] = json!(true);
        assert_eq!(host.post("/submit", body).await.0, 200);
    }
    Some(relay.round_trips() - before)
}

/// A PostgreSQL server that logs every statement, a host on it (in schema `schema`) and a
/// business service; `None` where PostgreSQL cannot run here.
async fn logged_postgres(schema: &str) -> Option<(test_servers::Server, Host, Busi)> {
    let server =
        test_servers::Server::start_with(Backend::Postgres.kind(), &["-clog_statement=all"])?;
    let scope = StoreScope::on(&server, Backend::Postgres, schema);
    let (host, busi) = (scope.start_host().await, Busi::start().await);
    Some((server, host, busi))
}

/// Runs a transfer saga with `wait_result` (and `options` added to its body) to success on
/// `host`, and returns the writes `server` logged for it.
async fn writes_of_a_saga(
    server: &test_servers::Server,
    host: &Host,
    busi: &Busi,
    options: serde_json::Value,
) -> Vec<String> {
    let gid = host.new_gid().await;
    let mut body = transfer(&gid, busi);
    body["wait_result"] = json!(true);
    for (key, value) in options.as_object().into_iter().flatten() {
        body[key] = value.clone();
    }
    assert_eq!(host.post("/submit", body).await.0, 200);
    assert_eq!(host.branch_statuses(&gid).await, SUCCEEDED);
    logged_writes(server, &gid)
}

/// The INSERTs and UPDATEs that `server` logged with `gid` among their parameters.
fn logged_writes(server: &test_servers::Server, gid: &str) -> Vec<String> {
    // Each statement is logged as `execute <name>: <SQL>`, its parameters on the next line.
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    lines
        .windows(2)
        .filter(|pair| pair[1].contains("parameters:") && pair[1].contains(&format!("'{gid}'")))
        .map(|pair| pair[0])
        .filter(|statement| statement.contains("INSERT") || statement.contains("UPDATE"))
        .map(str::to_owned)
        .collect()
}
