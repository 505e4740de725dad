//! `cargo bench --bench recovery`: how fast the recovery loop drains a backlog, against the live
//! saga rate at the same branch latency, measured in the same run.
//!
//! For each store and each backlog size N: N 2-branch sagas are submitted while their business
//! service is down (each first call refused, retried 2 s later), then the service comes up,
//! answering every call after 100 ms; the drain is the time from then until the last saga's
//! second branch answered. The live rate is 64 workers submitting the same sagas with
//! `wait_result` to the same host for BENCH_SECONDS. On the shared stores, it then kills the
//! host with 1,000 sagas in flight (branches answering after 2 s), starts another on the same
//! store, and times how long that one takes to finish them (their leases end first); and it
//! drains the first backlog size with three hosts sharing the store, against one (medians of
//! three alternating rounds).
//!
//! Settings (environment): BENCH_STORES (default `embedded,postgres,mysql,redis`),
//! BENCH_BACKLOGS (default `1000,10000`), BENCH_SECONDS (default 10), BENCH_LOG_LEVEL
//! (default info).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::RawQuery;
use common::stores::{Backend, StoreScope};
use futures::StreamExt;
use support::{env_or, http_saga, measure, median, print, HostProcess};

/// How long each business call takes once the service is up.
const CALL: Duration = Duration::from_millis(100);
/// How long each business call takes in the kill test: the sagas are in flight at the kill.
const SLOW_CALL: Duration = Duration::from_secs(2);
const IN_FLIGHT_AT_KILL: usize = 1_000;
/// `Store.MaxOpenConns` of each host when three share a server.
const SHARED_CONNECTIONS: u32 = 30;

/// The sagas whose last branch has answered.
type Ended = Arc<Mutex<HashSet<String>>>;

/// A business service on `port` whose calls answer SUCCESS after `delay`; notes each saga whose
/// `/TransIn` it answered.
async fn start_busi_on(port: u16, delay: Duration) -> Ended {
    let ended = Ended::default();
    let noted = ended.clone();
    let app =
        axum::Router::new().fallback(move |uri: axum::http::Uri, RawQuery(query): RawQuery| {
            let noted = noted.clone();
            async move {
                tokio::time::sleep(delay).await;
                if uri.path() == "/TransIn" {
                    let gid = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                        .find(|(k, _)| k == "gid")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    noted.lock().unwrap().insert(gid);
                }
                r#"{"dtm_result":"SUCCESS"}"#
            }
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    ended
}

/// Submits `count` sagas to `host` without waiting for them (64 at a time); their branches are
/// at `busi`, retried after 1 s (2 s after a first error).
async fn submit(client: &reqwest::Client, host: &HostProcess, busi: &str, tag: &str, count: usize) {
    let url = format!("http://127.0.0.1:{}/api/dtmsvr/submit", host.port);
    let refused = futures::stream::iter(0..count)
        .map(|i| {
            let body = serde_json::json!({
                "gid": format!("{tag}-{i}"), "trans_type": "saga", "retry_interval": 1,
                "steps": [
                    {"action": format!("{busi}/TransOut"), "compensate": format!("{busi}/TransOutRevert")},
                    {"action": format!("{busi}/TransIn"), "compensate": format!("{busi}/TransInRevert")},
                ],
                "payloads": ["{}", "{}"],
            });
            let request = client.post(&url).body(body.to_string());
            async move { !request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .buffer_unordered(64)
        .filter(|refused| futures::future::ready(*refused))
        .count()
        .await;
    assert_eq!(refused, 0, "submits refused");
}

/// Waits until `count` sagas have ended; returns how long that took.
async fn until_ended(ended: &Ended, count: usize) -> Duration {
    let started = Instant::now();
    let done = || ended.lock().unwrap().len();
    while done() < count {
        assert!(
            started.elapsed() < Duration::from_secs(1_800),
            "the backlog did not drain in 30 minutes ({} of {count})",
            done()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn list(key: &str, default: &str) -> Vec<String> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let seconds = env_or("BENCH_SECONDS", 10);
        let log_level = std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap();
        println!(
            "recovery bench: 2-branch sagas, calls answered after {} ms, TransCronConcurrency 256, \
             live rate over {seconds} s at concurrency 64, {} cores",
            CALL.as_millis(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for store in list("BENCH_STORES", "embedded,postgres,mysql,redis") {
            let backend = match store.as_str() {
                "embedded" => None,
                "postgres" => Some(Backend::Postgres),
                "mysql" => Some(Backend::MySql),
                "redis" => Some(Backend::Redis),
                other => panic!("BENCH_STORES: unknown store {other}"),
            };
            for backlog in list("BENCH_BACKLOGS", "1000,10000") {
                let backlog: usize = backlog.parse().expect("BENCH_BACKLOGS: numbers");
                let scope = backend
                    .map(|b| StoreScope::new(b, "recovery").expect("the server is installed"));
                let mut env = scope.as_ref().map_or_else(Vec::new, |s| s.env(s.port));
                env.push(("TRANS_CRON_INTERVAL".into(), "1".into()));
                let host = HostProcess::start_with(&log_level, &env).await;
                let port = common::free_port();
                let busi = format!("http://127.0.0.1:{port}");
                submit(&client, &host, &busi, "backlog", backlog).await;
                // Every first call has been refused; the retries are due within 2 s.
                let ended = start_busi_on(port, CALL).await;
                let drain = until_ended(&ended, backlog).await;
                let live = measure(64, seconds, http_saga(&client, &format!("http://127.0.0.1:{}/api/dtmsvr/submit", host.port), &busi, "live")).await;
                let drained = backlog as f64 / drain.as_secs_f64();
                println!(
                    "{store:<9} backlog {backlog:>6}: drained in {:>6.1} s = {drained:>6.0} sagas/s; \
                     live {:>6.0} sagas/s; drain / live {:.2}; host peak RSS {:.0} MiB",
                    drain.as_secs_f64(),
                    live.tps,
                    drained / live.tps,
                    host.peak_rss_mib()
                );
                print(&format!("{store} live"), &live);
            }
            let Some(backend) = backend else { continue };
            // The same backlog drained by three hosts sharing the store, against one: three
            // rounds, alternating, so drift hits both; medians.
            let backlog: usize = list("BENCH_BACKLOGS", "1000,10000")[0]
                .parse()
                .expect("BENCH_BACKLOGS: numbers");
            let (mut by_one, mut by_three) = (Vec::new(), Vec::new());
            for _round in 0..3 {
                for hosts in [1, 3] {
                    let scope = StoreScope::new(backend, "recovery_hosts").expect("installed");
                    let mut env = scope.env(scope.port);
                    env.push(("TRANS_CRON_INTERVAL".into(), "1".into()));
                    // Three hosts' pools must fit in the server's connections together (README:
                    // `MaxOpenConns`); one host gets the same, for a fair comparison.
                    env.push(("STORE_MAX_OPEN_CONNS".into(), SHARED_CONNECTIONS.to_string()));
                    let first = HostProcess::start_with(&log_level, &env).await;
                    let port = common::free_port();
                    let busi = format!("http://127.0.0.1:{port}");
                    submit(&client, &first, &busi, "shared", backlog).await;
                    let mut others = Vec::new();
                    for _ in 1..hosts {
                        others.push(HostProcess::start_with(&log_level, &env).await);
                    }
                    let ended = start_busi_on(port, CALL).await;
                    let drain = until_ended(&ended, backlog).await.as_secs_f64();
                    if hosts == 1 { by_one.push(drain) } else { by_three.push(drain) }
                }
            }
            let (one, three) = (median(by_one), median(by_three));
            println!(
                "{store:<9} backlog {backlog:>6} shared by 3 hosts: drained in {three:.1} s, by 1 \
                 host {one:.1} s (medians of 3): 3 hosts / 1 host drain rate {:.2}",
                one / three
            );
            // A host killed with sagas in flight; another takes over on the same store.
            let scope = StoreScope::new(backend, "recovery_kill").expect("the server is installed");
            let mut env = scope.env(scope.port);
            env.push(("TRANS_CRON_INTERVAL".into(), "1".into()));
            let port = common::free_port();
            let busi = format!("http://127.0.0.1:{port}");
            let ended = start_busi_on(port, SLOW_CALL).await;
            let first = HostProcess::start_with(&log_level, &env).await;
            submit(&client, &first, &busi, "killed", IN_FLIGHT_AT_KILL).await;
            drop(first);
            let second = HostProcess::start_with(&log_level, &env).await;
            let restarted = Instant::now();
            let before = ended.lock().unwrap().len();
            until_ended(&ended, IN_FLIGHT_AT_KILL).await;
            println!(
                "{store:<9} kill -9 with {IN_FLIGHT_AT_KILL} sagas in flight ({before} had ended): \
                 all ended {:.1} s after the new host started (lease: RetryInterval 10 s; a saga: \
                 2 × {} s)",
                restarted.elapsed().as_secs_f64(),
                SLOW_CALL.as_secs()
            );
            drop(second);
        }
    });
}
