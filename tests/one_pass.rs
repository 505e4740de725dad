//! One pass per transaction, whatever starts it. On every store (two hosts on each shared one),
//! 1,000 transactions are each hit at once by duplicate submits or aborts (one of them with
//! `wait_result`) sent to both hosts, a `resetNextCronTime`, and the cron of every host (every
//! second); some fail their first call and are retried meanwhile. A business service counts
//! every call: afterwards each branch action and compensation was called exactly as often as
//! its scenario requires, and every transaction ended as it should.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use common::stores::{Backend, StoreScope};
use common::{serve, Host};
use futures::StreamExt;
use serde_json::{json, Value};

const TRANSACTIONS: usize = 1_000;
/// Transactions under way at once.
const CONCURRENCY: usize = 24;
/// How long each business call takes: long enough for the duplicates to arrive mid-pass.
const CALL_TIME: Duration = Duration::from_millis(30);

/// What happens to one transaction, and so which calls it must see.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    SagaSucceeds,
    /// `/TransIn` answers FAILURE: both steps are compensated.
    SagaFails,
    /// The first `/TransOut` answers HTTP 500; a later pass (cron, or a duplicate submit once
    /// the first pass has ended) repeats it.
    SagaRetried,
    TccConfirmed,
    TccCancelled,
}

impl Scenario {
    fn of(i: usize) -> Self {
        [
            Scenario::SagaSucceeds,
            Scenario::SagaFails,
            Scenario::SagaRetried,
            Scenario::TccConfirmed,
            Scenario::TccCancelled,
        ][i % 5]
    }

    fn tag(self) -> &'static str {
        match self {
            Scenario::SagaSucceeds => "ok",
            Scenario::SagaFails => "fail",
            Scenario::SagaRetried => "retry",
            Scenario::TccConfirmed => "confirm",
            Scenario::TccCancelled => "cancel",
        }
    }

    /// The final status, and how often each path must have been called.
    fn expected(self) -> (&'static str, Vec<(&'static str, usize)>) {
        let saga = |out, into, out_revert, in_revert| {
            vec![
                ("/TransOut", out),
                ("/TransIn", into),
                ("/TransOutRevert", out_revert),
                ("/TransInRevert", in_revert),
            ]
        };
        let tcc = |confirm, cancel| {
            vec![
                ("/Confirm01", confirm),
                ("/Confirm02", confirm),
                ("/Cancel01", cancel),
                ("/Cancel02", cancel),
            ]
        };
        match self {
            Scenario::SagaSucceeds => ("succeed", saga(1, 1, 0, 0)),
            Scenario::SagaFails => ("failed", saga(1, 1, 1, 1)),
            Scenario::SagaRetried => ("succeed", saga(2, 1, 0, 0)),
            Scenario::TccConfirmed => ("succeed", tcc(1, 0)),
            Scenario::TccCancelled => ("failed", tcc(0, 1)),
        }
    }
}

/// Calls per (gid, path).
type Counts = Arc<Mutex<HashMap<(String, String), usize>>>;

async fn busi_handler(
    State(counts): State<Counts>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> (StatusCode, String) {
    let gid = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "gid")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let path = uri.path().to_owned();
    let nth = {
        let mut counts = counts.lock().unwrap();
        let n = counts.entry((gid.clone(), path.clone())).or_default();
        *n += 1;
        *n
    };
    tokio::time::sleep(CALL_TIME).await;
    if gid.ends_with("-retry") && path == "/TransOut" && nth == 1 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "busi: scripted error".into(),
        );
    }
    if gid.ends_with("-fail") && path == "/TransIn" {
        let body = r#"{"dtm_result":"FAILURE","message":"scripted failure"}"#;
        return (StatusCode::CONFLICT, body.into());
    }
    (StatusCode::OK, r#"{"dtm_result":"SUCCESS"}"#.into())
}

/// A host's answer: its HTTP status and body, or the transport error.
type Answer = Result<(u16, String), String>;

/// One request to a host.
async fn send(host: &Host, route: &str, body: Value) -> Answer {
    let response = host
        .http
        .post(host.api(route))
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// Drives transaction `i` through its scenario on `hosts`; returns the answers that were
/// neither a success nor dtm's refusal of a request that came too late or too early (a
/// duplicate submit or abort after the transaction ended, a reset before it was created).
async fn drive(hosts: &[Arc<Host>], busi: &str, run: &str, i: usize) -> Vec<String> {
    let scenario = Scenario::of(i);
    let gid = format!("{run}-{i}-{}", scenario.tag());
    let (a, b) = (&hosts[i % hosts.len()], &hosts[(i + 1) % hosts.len()]);
    let url = |path: &str| format!("{busi}{path}");
    let mut answers: Vec<(&str, Answer)> = Vec::new();
    let (request, route) = match scenario {
        Scenario::SagaSucceeds | Scenario::SagaFails | Scenario::SagaRetried => {
            let body = json!({
                "gid": gid,
                "trans_type": "saga",
                "steps": [
                    {"action": url("/TransOut"), "compensate": url("/TransOutRevert")},
                    {"action": url("/TransIn"), "compensate": url("/TransInRevert")},
                ],
                "payloads": ["{}", "{}"],
                "retry_interval": 1,
            });
            (body, "/submit")
        }
        Scenario::TccConfirmed | Scenario::TccCancelled => {
            let prepare = json!({"gid": gid, "trans_type": "tcc"});
            answers.push(("/prepare", send(a, "/prepare", prepare).await));
            for (host, branch) in [(a, "01"), (b, "02")] {
                let register = json!({
                    "gid": gid, "trans_type": "tcc", "branch_id": branch, "data": "{}",
                    "confirm": url(&format!("/Confirm{branch}")),
                    "cancel": url(&format!("/Cancel{branch}")),
                });
                answers.push((
                    "/registerBranch",
                    send(host, "/registerBranch", register).await,
                ));
            }
            let route = match scenario {
                Scenario::TccConfirmed => "/submit",
                _ => "/abort",
            };
            (json!({"gid": gid, "trans_type": "tcc"}), route)
        }
    };
    let mut waited = request.clone();
    waited["wait_result"] = json!(true);
    let reset = json!({"gid": gid});
    let (first, second, third, fourth) = tokio::join!(
        send(a, route, request.clone()),
        send(b, route, request.clone()),
        send(a, route, waited),
        send(b, "/resetNextCronTime", reset),
    );
    answers.extend([
        (route, first),
        (route, second),
        (route, third),
        ("/resetNextCronTime", fourth),
    ]);
    if let Scenario::SagaRetried = scenario {
        // Once the first pass has ended with its error: a retry by hand, racing the cron.
        tokio::time::sleep(Duration::from_millis(600)).await;
        answers.push((route, send(b, route, request).await));
    }
    answers
        .into_iter()
        .filter_map(|(sent, answer)| match answer {
            Ok((200, _)) => None,
            Ok((409, body)) if body.contains("cannot") || body.contains("FAILURE") => None,
            Ok((500, body)) if sent == "/resetNextCronTime" && body.contains("no TransGlobal") => {
                None
            }
            other => Some(format!("{gid} {sent}: {other:?}")),
        })
        .collect()
}

async fn every_trigger_at_once(store: &str, hosts: Vec<Host>) {
    let hosts: Vec<Arc<Host>> = hosts.into_iter().map(Arc::new).collect();
    let counts = Counts::default();
    let app = axum::Router::new()
        .fallback(busi_handler)
        .with_state(counts.clone());
    let busi = format!("http://{}", serve(app, 0).await);
    let run = format!("op{}", std::process::id());
    let started = Instant::now();
    let refused: Vec<String> = futures::stream::iter(0..TRANSACTIONS)
        .map(|i| {
            let (hosts, busi, run) = (hosts.clone(), busi.clone(), run.clone());
            async move { drive(&hosts, &busi, &run, i).await }
        })
        .buffer_unordered(CONCURRENCY)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    assert!(refused.is_empty(), "unexpected answers: {refused:#?}");
    let submitted = started.elapsed();

    // Every transaction ends as its scenario says.
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..TRANSACTIONS {
        let scenario = Scenario::of(i);
        let gid = format!("{run}-{i}-{}", scenario.tag());
        let (status, _) = scenario.expected();
        loop {
            let now = hosts[0].status(&gid).await;
            if now == status {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{gid} is {now}, not {status}, on {store}\n{}",
                hosts[0].log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let ended = started.elapsed();
    // Calls a pass might still make would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = counts.lock().unwrap().clone();
    let mut wrong = Vec::new();
    for i in 0..TRANSACTIONS {
        let scenario = Scenario::of(i);
        let gid = format!("{run}-{i}-{}", scenario.tag());
        for (path, expected) in scenario.expected().1 {
            let called = counts
                .get(&(gid.clone(), path.to_owned()))
                .copied()
                .unwrap_or(0);
            if called != expected {
                wrong.push(format!("{gid} {path}: {called} calls, not {expected}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} expected call counts wrong on {store}:\n{}",
        wrong.len(),
        TRANSACTIONS * 4,
        wrong.join("\n")
    );
    eprintln!(
        "{store}: {TRANSACTIONS} transactions on {} host(s), each hit by 3 duplicate \
         submits/aborts and a reset (plus a late submit for the retried ones) with the cron \
         every second: every branch called as required ({} calls); requests done in {:.1} s, \
         all ended in {:.1} s",
        hosts.len(),
        counts.values().sum::<usize>(),
        submitted.as_secs_f64(),
        ended.as_secs_f64()
    );
}

const CRON_EVERY_SECOND: (&str, &str) = ("TRANS_CRON_INTERVAL", "1");

async fn on_shared(backend: Backend) {
    let Some(scope) = StoreScope::new(backend, "one_pass") else {
        return;
    };
    let mut env = scope.env(scope.port);
    env.push((CRON_EVERY_SECOND.0.into(), CRON_EVERY_SECOND.1.into()));
    // Two hosts' pools together stay under the server's connection limit (README).
    env.push(("STORE_MAX_OPEN_CONNS".into(), "40".into()));
    // The first host creates the tables.
    let first = Host::start_with(&env).await;
    let second = Host::start_with(&env).await;
    every_trigger_at_once(backend.name(), vec![first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_runs_one_pass_per_transaction() {
    let host = Host::start_with(&[CRON_EVERY_SECOND]).await;
    every_trigger_at_once("embedded", vec![host]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_one_pass_per_transaction_across_hosts() {
    on_shared(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_runs_one_pass_per_transaction_across_hosts() {
    on_shared(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_runs_one_pass_per_transaction_across_hosts() {
    on_shared(Backend::Redis).await;
}
