//! Several coordinators on one shared store (issue #6, "Tests"):
//!
//! * three hosts on one PostgreSQL schema, and on one Redis prefix, under load; one is killed
//!   with SIGKILL while its branch calls are in flight: every transaction still ends (seen from
//!   a surviving host), and the business service never saw two calls of one transaction under
//!   way at the same time;
//! * PostgreSQL gone during load, twice: the network to it cut through a relay the test controls,
//!   and the test's own server killed (SIGKILL) and started again: every acknowledged submit is
//!   kept and succeeds, submits meanwhile fail with a clear error instead of hanging, and work
//!   resumes when the server is back.
//!
//! Each test has a schema or key prefix of its own, on the test process's throwaway servers.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use common::relay::Relay;
use common::stores::{in_scope, Backend, StoreScope};
use common::{serve, Host};
use futures::StreamExt;
use serde_json::{json, Value};
use test_servers::{Kind, Server};

/// How long the business service takes for an ordinary call.
const BASE_DELAY: Duration = Duration::from_millis(80);
/// How long the first `/TransIn` of a `-slow` transaction takes: long enough to be in flight
/// when its host is killed, well below RequestTimeout (3 s) and the lease (RetryInterval, 10 s).
const SLOW_DELAY: Duration = Duration::from_secs(2);
/// How long every call of a `-long` transaction takes, so that many are in flight at once
/// (below the fault test's request timeout, [`FAULTS_REQUEST_TIMEOUT`]).
const LONG_DELAY: Duration = Duration::from_millis(3_500);
/// How long the first `/TransIn` of a `-late` transaction takes: past the fault test's request
/// timeout, so the coordinator gives up on it.
const LATE_DELAY: Duration = Duration::from_secs(7);

/// Each host's `Store.MaxOpenConns` where three share a server: together they stay under its
/// connection limit (README: several hosts must), which a default pool of each alone fills.
const HOSTS_SHARE_THE_SERVER: [&str; 2] = ["STORE_MAX_OPEN_CONNS", "40"];

/// A name no other test (or other run) uses.
fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "dtm_ss_{}_{}_{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// The business service: scripted by gid, recording when each call started and ended
// ---------------------------------------------------------------------------------------------

/// One call the business service served, from arrival to answer (or to the caller hanging up).
#[derive(Debug, Clone)]
struct Span {
    gid: String,
    branch_id: String,
    op: String,
    path: String,
    start: Instant,
    end: Instant,
}

#[derive(Default)]
struct Ledger {
    next: AtomicU64,
    /// Calls under way (their `end` is not known yet).
    open: Mutex<HashMap<u64, Span>>,
    done: Mutex<Vec<Span>>,
    /// How many calls each (gid, path) received.
    counts: Mutex<HashMap<(String, String), usize>>,
    /// Whether `-slow` transactions are slow (until their host is killed: the survivors that
    /// take them over need not wait).
    no_more_slow: AtomicBool,
}

/// A call under way; when dropped (answered, or abandoned because the caller died) its span is
/// complete.
struct Open {
    ledger: Arc<Ledger>,
    id: u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(mut span) = self.ledger.open.lock().unwrap().remove(&self.id) {
            span.end = Instant::now();
            self.ledger.done.lock().unwrap().push(span);
        }
    }
}

/// The business service of these tests. What it answers depends on the gid:
/// `-err` → the first `/TransOut` fails with HTTP 500 (the recovery loop must retry it);
/// `-fail` → `/TransIn` answers FAILURE (the saga is rolled back and ends `failed`);
/// `-slow` → the first `/TransIn` takes [`SLOW_DELAY`] (until [`Busi::no_more_slow`]);
/// `-late` → the first `/TransIn` takes [`LATE_DELAY`]; `-long` → every call takes
/// [`LONG_DELAY`]. Every other call succeeds after [`BASE_DELAY`].
#[derive(Clone)]
struct Busi {
    base: String,
    ledger: Arc<Ledger>,
}

async fn busi_handler(
    State(ledger): State<Arc<Ledger>>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> (StatusCode, String) {
    let query: HashMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let field = |k: &str| query.get(k).cloned().unwrap_or_default();
    let (gid, path) = (field("gid"), uri.path().to_owned());
    let nth = {
        let mut counts = ledger.counts.lock().unwrap();
        let n = counts.entry((gid.clone(), path.clone())).or_default();
        *n += 1;
        *n
    };
    let id = ledger.next.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    ledger.open.lock().unwrap().insert(
        id,
        Span {
            gid: gid.clone(),
            branch_id: field("branch_id"),
            op: field("op"),
            path: path.clone(),
            start: now,
            end: now,
        },
    );
    let _open = Open {
        ledger: ledger.clone(),
        id,
    };
    let slow = gid.ends_with("-slow")
        && path == "/TransIn"
        && nth == 1
        && !ledger.no_more_slow.load(Ordering::SeqCst);
    let late = gid.contains("-late") && path == "/TransIn" && nth == 1;
    let delay = if slow {
        SLOW_DELAY
    } else if late {
        LATE_DELAY
    } else if gid.contains("-long") {
        LONG_DELAY
    } else {
        BASE_DELAY
    };
    tokio::time::sleep(delay).await;
    if gid.contains("-err") && path == "/TransOut" && nth == 1 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "busi: scripted error".into(),
        );
    }
    if gid.contains("-fail") && path == "/TransIn" {
        let body = r#"{"dtm_result":"FAILURE","message":"scripted failure"}"#;
        return (StatusCode::CONFLICT, body.into());
    }
    (StatusCode::OK, r#"{"dtm_result":"SUCCESS"}"#.into())
}

impl Busi {
    async fn start() -> Self {
        let ledger = Arc::new(Ledger::default());
        let app = axum::Router::new()
            .fallback(busi_handler)
            .with_state(ledger.clone());
        let base = format!("http://{}", serve(app, 0).await);
        Busi { base, ledger }
    }

    /// The transfer saga of dtm's examples on this service.
    fn transfer(&self, gid: &str) -> Value {
        let url = |p: &str| format!("{}{p}", self.base);
        let mut body = json!({
            "gid": gid,
            "trans_type": "saga",
            "steps": [
                {"action": url("/TransOut"), "compensate": url("/TransOutRevert")},
                {"action": url("/TransIn"), "compensate": url("/TransInRevert")},
            ],
            "payloads": [r#"{"amount":30}"#, r#"{"amount":30}"#],
        });
        if gid.contains("-err") {
            // Retried 2 × 3 s after the error instead of 2 × RetryInterval (10 s).
            body["retry_interval"] = json!(3);
        }
        body
    }

    fn no_more_slow(&self) {
        self.ledger.no_more_slow.store(true, Ordering::SeqCst);
    }

    fn calls(&self, gid: &str, path: &str) -> usize {
        let counts = self.ledger.counts.lock().unwrap();
        counts
            .get(&(gid.to_owned(), path.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Calls under way for gids that `pick` selects.
    fn open_calls(&self, pick: impl Fn(&str) -> bool) -> usize {
        let open = self.ledger.open.lock().unwrap();
        open.values().filter(|s| pick(&s.gid)).count()
    }

    /// Waits (at most `secs`) until no call is under way, then returns every call's span.
    async fn spans_when_idle(&self, secs: u64) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.ledger.open.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "business calls still under way after {secs} s: {:?}",
                self.ledger
                    .open
                    .lock()
                    .unwrap()
                    .values()
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.ledger.done.lock().unwrap().clone()
    }
}

/// Pairs of calls of one transaction that were under way at the same time (a call that starts
/// exactly when another ended does not count). A call repeated after the first one ended is a
/// retry, not an overlap.
fn overlaps(spans: &[Span]) -> Vec<(Span, Span)> {
    let mut by_gid: HashMap<&str, Vec<&Span>> = HashMap::new();
    for span in spans {
        by_gid.entry(&span.gid).or_default().push(span);
    }
    let mut found = Vec::new();
    for calls in by_gid.values_mut() {
        calls.sort_by_key(|s| s.start);
        // The call that ends last among those started so far.
        let mut latest: Option<&Span> = None;
        for &span in calls.iter() {
            if let Some(last) = latest {
                if span.start < last.end {
                    found.push((last.clone(), span.clone()));
                }
            }
            if latest.is_none_or(|last| span.end > last.end) {
                latest = Some(span);
            }
        }
    }
    found
}

#[test]
fn the_overlap_check_flags_only_simultaneous_calls_of_one_transaction() {
    let t0 = Instant::now();
    let span = |gid: &str, from: u64, to: u64| Span {
        gid: gid.into(),
        branch_id: "01".into(),
        op: "action".into(),
        path: "/TransIn".into(),
        start: t0 + Duration::from_millis(from),
        end: t0 + Duration::from_millis(to),
    };
    // In sequence, back to back, and a retry long after: fine; other transactions may overlap.
    let fine = [
        span("a", 0, 100),
        span("a", 100, 200),
        span("a", 5000, 5100),
        span("b", 50, 150),
        span("c", 0, 1000),
    ];
    assert!(overlaps(&fine).is_empty());
    // A short call inside a long one, whatever the order of the records.
    let nested = [span("a", 300, 400), span("b", 0, 10), span("a", 0, 1000)];
    let found = overlaps(&nested);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].0.end - found[0].0.start,
        Duration::from_millis(1000)
    );
    // A later call overlapping one that is not the last started.
    let long_then_two = [span("a", 0, 1000), span("a", 10, 20), span("a", 900, 950)];
    assert_eq!(overlaps(&long_then_two).len(), 2);
}

/// The business service really records two calls of one transaction at once, so the check in
/// the kill tests can fail.
#[tokio::test]
async fn the_business_service_notices_simultaneous_calls() {
    let busi = Busi::start().await;
    let http = reqwest::Client::new();
    let call = |gid: &str| {
        let url = format!(
            "{}/TransIn?gid={gid}&trans_type=saga&branch_id=01&op=action",
            busi.base
        );
        let http = http.clone();
        async move { http.post(url).send().await.unwrap().status().as_u16() }
    };
    let (a, b, c) = tokio::join!(call("x-ok"), call("x-ok"), call("y-ok"));
    assert_eq!((a, b, c), (200, 200, 200));
    assert_eq!(call("y-ok").await, 200, "a retry after the answer");
    let spans = busi.spans_when_idle(5).await;
    assert_eq!(spans.len(), 4);
    let found = overlaps(&spans);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0.gid, "x-ok");
    assert_eq!(busi.calls("y-ok", "/TransIn"), 2);
}

// ---------------------------------------------------------------------------------------------
// Three hosts on one store, one killed under load
// ---------------------------------------------------------------------------------------------

/// The status each saga must end in.
fn expected_end(gid: &str) -> &'static str {
    if gid.contains("-fail") {
        "failed"
    } else {
        "succeed"
    }
}

/// Saga `i` of a run: some fail their first call, some are rolled back; those submitted to the
/// host that is killed are slow, so they are in flight when it dies.
fn saga_gid(run: &str, i: usize, on_victim: bool) -> String {
    let kind = match i % 6 {
        1 => "err",
        4 => "fail",
        _ => "ok",
    };
    let slow = if on_victim { "-slow" } else { "" };
    format!("{run}-{i}-{kind}{slow}")
}

/// Submits sagas `range` round-robin over `hosts` (by index into `all`), at most 12 at a time;
/// every submit must be acknowledged. Returns the gids.
async fn submit_wave(
    all: &[Host],
    hosts: &[usize],
    victim: usize,
    range: std::ops::Range<usize>,
    run: &str,
    busi: &Busi,
) -> Vec<String> {
    let submits = range.map(|i| {
        let h = hosts[i % hosts.len()];
        let gid = saga_gid(run, i, h == victim);
        let body = busi.transfer(&gid);
        async move {
            let (status, reply) = all[h].post("/submit", body).await;
            assert_eq!(status, 200, "submit of {gid} to host {h}: {reply}");
            gid
        }
    });
    futures::stream::iter(submits)
        .buffer_unordered(12)
        .collect()
        .await
}

/// Every log line of `hosts` that mentions `gid`.
fn log_lines(hosts: &[Host], gid: &str) -> String {
    let mut out = String::new();
    for (i, host) in hosts.iter().enumerate() {
        for line in host.log().lines().filter(|l| l.contains(gid)) {
            out.push_str(&format!("host {i}: {line}\n"));
        }
    }
    out
}

async fn three_hosts_one_killed(shared: Arc<StoreScope>) {
    let busi = Busi::start().await;
    let mut env = shared.env(shared.port);
    env.push(HOSTS_SHARE_THE_SERVER.map(str::to_owned).into());
    // The first host creates the tables; the other two then start together.
    let first = Host::start_with(&env).await;
    let (second, third) = tokio::join!(Host::start_with(&env), Host::start_with(&env));
    let mut hosts = vec![first, second, third];
    let victim = 2;
    let run = unique("kill");
    let started = Instant::now();

    let mut gids = submit_wave(&hosts, &[0, 1, 2], victim, 0..72, &run, &busi).await;
    // Kill the victim while some of its slow calls are under way.
    let deadline = Instant::now() + Duration::from_secs(15);
    while busi.open_calls(|gid| gid.ends_with("-slow")) < 4 {
        assert!(
            Instant::now() < deadline,
            "the victim's calls never got under way"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight_at_kill = busi.open_calls(|gid| gid.ends_with("-slow"));
    hosts[victim].kill9();
    let killed = Instant::now();
    busi.no_more_slow();
    // The load goes on, on the survivors.
    gids.extend(submit_wave(&hosts, &[0, 1], victim, 72..108, &run, &busi).await);

    // Every transaction ends, as a surviving host sees it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<String> = gids.clone();
    let mut ended: HashMap<String, String> = HashMap::new();
    let mut round = 0;
    while !pending.is_empty() {
        let observer = &hosts[round % 2];
        round += 1;
        let mut still = Vec::new();
        for gid in pending {
            let q = observer.query(&gid).await;
            assert!(
                !q["transaction"].is_null(),
                "acknowledged {gid} is missing from the store: {q}\n{}",
                log_lines(&hosts, &gid)
            );
            match q["transaction"]["status"].as_str().unwrap_or("") {
                s @ ("succeed" | "failed") => {
                    ended.insert(gid, s.to_owned());
                }
                _ => still.push(gid),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let gid = &pending[0];
            panic!(
                "{} of {} transactions did not end within 60 s after the load, e.g. {gid}: {}\n{}",
                pending.len(),
                gids.len(),
                hosts[0].query(gid).await,
                log_lines(&hosts, gid)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_ended = killed.elapsed();

    for gid in &gids {
        assert_eq!(
            ended[gid],
            expected_end(gid),
            "{gid}\n{}",
            log_lines(&hosts, gid)
        );
        assert!(busi.calls(gid, "/TransOut") >= 1, "{gid}");
        if gid.contains("-err") {
            assert!(busi.calls(gid, "/TransOut") >= 2, "{gid} was not retried");
        }
    }

    // No transaction had two of its calls under way at once (two hosts driving it).
    let spans = busi.spans_when_idle(10).await;
    let found = overlaps(&spans);
    if let Some((a, b)) = found.first() {
        let at = |t: Instant| t.saturating_duration_since(started).as_millis();
        panic!(
            "{} pairs of simultaneous calls of one transaction, e.g. {} {} {} {} [{}..{} ms] and {} {} {} [{}..{} ms] (kill at {} ms)\n{}",
            found.len(),
            a.gid,
            a.path,
            a.branch_id,
            a.op,
            at(a.start),
            at(a.end),
            b.path,
            b.branch_id,
            b.op,
            at(b.start),
            at(b.end),
            at(killed),
            log_lines(&hosts, &a.gid)
        );
    }
    // The killed host's work was taken over: a slow call cut short was made again, after the kill.
    let taken_over = gids
        .iter()
        .filter(|gid| gid.ends_with("-slow"))
        .filter(|gid| {
            spans
                .iter()
                .any(|s| &s.gid == *gid && s.path == "/TransIn" && s.start > killed)
        })
        .count();
    assert!(
        taken_over > 0,
        "no transaction of the killed host was continued by the others"
    );
    eprintln!(
        "{}: {} sagas on 3 hosts, one killed with {in_flight_at_kill} slow calls under way; \
         {taken_over} of its sagas continued by the survivors; all ended {:.1} s after the kill; \
         {} business calls, none simultaneous within a transaction",
        shared.backend.name(),
        gids.len(),
        all_ended.as_secs_f64(),
        spans.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_on_postgres_one_killed_under_load() {
    in_scope(Backend::Postgres, "ss", three_hosts_one_killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_on_redis_one_killed_under_load() {
    in_scope(Backend::Redis, "ss", three_hosts_one_killed).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL cut off during load
// ---------------------------------------------------------------------------------------------

const BEFORE: u8 = 0;
const CUT: u8 = 1;
const RESTORED: u8 = 2;

/// One submit of the load and how it went.
#[derive(Debug)]
struct Submit {
    gid: String,
    /// The phase when it was sent and when it was answered.
    sent: u8,
    answered: u8,
    took: Duration,
    /// HTTP status and body, or the transport error.
    outcome: Result<(u16, String), String>,
}

/// How PostgreSQL becomes unreachable for a while.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// The network to it is cut (every connection dropped, nothing answers) through a relay.
    Cut,
    /// The server itself is killed (SIGKILL to all its processes: no shutdown checkpoint, crash
    /// recovery at the next start) and started again on the same port.
    Restart,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_during_load_loses_nothing_acknowledged() {
    outage_during_load(Outage::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_load_loses_nothing_acknowledged() {
    outage_during_load(Outage::Restart).await;
}

async fn outage_during_load(outage: Outage) {
    // The test kills its server: a server of its own.
    let Some(server) = Server::start(Kind::Postgres) else {
        return;
    };
    let server = Arc::new(Mutex::new(server));
    let shared = StoreScope::on(&server.lock().unwrap(), Backend::Postgres, "outage");
    {
        let busi = Busi::start().await;
        let relay = Relay::new(shared.port);
        relay.open().await;
        let port = match outage {
            Outage::Cut => relay.port,
            Outage::Restart => shared.port,
        };
        let host = Arc::new(Host::start_with(&shared.env(port)).await);
        let run = unique("load");
        let phase = Arc::new(AtomicU8::new(BEFORE));
        let stop = Arc::new(AtomicBool::new(false));
        let submits: Arc<Mutex<Vec<Submit>>> = Arc::default();
        // Longer than any store timeout (connect 3 s, operation 10 s): a submit this slow hangs.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();

        let workers: Vec<_> = (0..6)
            .map(|w| {
                let (host, busi, run, http) =
                    (host.clone(), busi.clone(), run.clone(), http.clone());
                let (phase, stop, submits) = (phase.clone(), stop.clone(), submits.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let gid = format!("{run}-{w}-{i}-ok");
                        i += 1;
                        let body = busi.transfer(&gid).to_string();
                        let sent = phase.load(Ordering::SeqCst);
                        let t0 = Instant::now();
                        let outcome = match http.post(host.api("/submit")).body(body).send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                Ok((status, r.text().await.unwrap_or_default()))
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        submits.lock().unwrap().push(Submit {
                            gid,
                            sent,
                            answered: phase.load(Ordering::SeqCst),
                            took: t0.elapsed(),
                            outcome,
                        });
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        let acked_in = |p: u8| {
            submits
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.sent == p && matches!(s.outcome, Ok((200, _))))
                .count()
        };
        let wait_for_acks = |p: u8, n: usize| {
            let acked_in = &acked_in;
            async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                while acked_in(p) < n {
                    assert!(
                        Instant::now() < deadline,
                        "fewer than {n} submits acknowledged in phase {p}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };

        wait_for_acks(BEFORE, 40).await;
        phase.store(CUT, Ordering::SeqCst);
        let in_server = |act: fn(&mut Server)| {
            let server = server.clone();
            tokio::task::spawn_blocking(move || act(&mut server.lock().unwrap()))
        };
        match outage {
            Outage::Cut => relay.cut(),
            Outage::Restart => in_server(Server::kill).await.unwrap(),
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        match outage {
            Outage::Cut => relay.open().await,
            Outage::Restart => in_server(Server::start_again).await.unwrap(),
        }
        phase.store(RESTORED, Ordering::SeqCst);
        let restored = Instant::now();
        wait_for_acks(RESTORED, 20).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let submits = std::mem::take(&mut *submits.lock().unwrap());

        // Every submit was answered, in time; a refusal is an HTTP 500 naming the store, and
        // only while the store was (or had just been) unreachable.
        let mut refused = 0;
        let mut refused_after = 0;
        let mut sample = String::new();
        for s in &submits {
            assert!(s.took < Duration::from_secs(12), "{s:?} hung");
            match &s.outcome {
                Ok((200, _)) => {}
                Ok((500, body)) if body.contains("postgres") => {
                    assert!(s.answered != BEFORE, "refused before the cut: {s:?}");
                    refused += 1;
                    sample.clone_from(body);
                    if s.sent == RESTORED {
                        refused_after += 1;
                    }
                }
                _ => panic!("unexpected answer: {s:?}\n{}", host.log()),
            }
        }
        assert!(refused > 0, "no submit failed while the store was cut off");

        // Nothing acknowledged is lost: each is stored and succeeds. A refused one may have
        // been stored after all (its commit's answer lost); then it must end too.
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut pending: Vec<&Submit> = submits.iter().collect();
        let mut stored_though_refused = 0;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for s in pending {
                let q = host.query(&s.gid).await;
                let acked = matches!(s.outcome, Ok((200, _)));
                match q["transaction"]["status"].as_str() {
                    None if acked => panic!("acknowledged {} is lost: {q}\n{}", s.gid, host.log()),
                    None => {}
                    Some("succeed") => stored_though_refused += usize::from(!acked),
                    Some(_) if Instant::now() > deadline => {
                        panic!("{} did not succeed within 45 s: {q}\n{}", s.gid, host.log())
                    }
                    Some(_) => still.push(s),
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        // Those acknowledged before the cut whose business calls went on after the restore: their
        // pass was broken by the outage and the recovery loop finished them.
        let spans = busi.spans_when_idle(10).await;
        let resumed = submits
            .iter()
            .filter(|s| s.sent == BEFORE && matches!(s.outcome, Ok((200, _))))
            .filter(|s| spans.iter().any(|c| c.gid == s.gid && c.start > restored))
            .count();
        let longest = submits.iter().map(|s| s.took).max().unwrap_or_default();
        eprintln!(
            "postgres {outage:?} for 4 s under load: {} submits, {} acknowledged (all succeeded, {resumed} of them \
             acknowledged before the cut and finished after the restore), {refused} refused \
             with HTTP 500 ({refused_after} of them sent after the restore, {stored_though_refused} stored after all); \
             slowest answer {:.1} s; e.g. {sample}",
            submits.len(),
            submits.len() - refused,
            longest.as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Faults under load: the store cut off, killed, frozen; a host killed; calls that time out
// ---------------------------------------------------------------------------------------------

/// RequestTimeout of the fault test's hosts: [`LATE_DELAY`] is past it.
const FAULTS_REQUEST_TIMEOUT: u64 = 5;
const FAULT_SAGAS: usize = 1_200;
/// Acknowledged sagas before the first fault: each takes at least two [`LONG_DELAY`]s, so
/// nearly all of them are in flight then.
const IN_FLIGHT_AT_FIRST_FAULT: usize = 1_000;
/// How long before or after a fault a call's outcome may still have been lost with it: its
/// result write was queued behind the fault, or came before the connections were back.
const FAULT_SLACK: Duration = Duration::from_secs(2);

/// When each fault was on, for explaining repeated business calls.
#[derive(Default)]
struct Faults {
    /// (what, from, to) of each store fault.
    store: Vec<(&'static str, Instant, Instant)>,
    /// When the killed host died.
    host_killed: Option<Instant>,
}

impl Faults {
    /// Why `gid`'s calls (`spans`) may have been repeated: a call that outlasted the request
    /// timeout, or one under way (or just ended) during a fault, whose outcome the coordinator
    /// may not have stored; `None` when nothing explains it.
    fn explain(&self, spans: &[&Span]) -> Option<&'static str> {
        let timeout = Duration::from_secs(FAULTS_REQUEST_TIMEOUT);
        if spans.iter().any(|c| c.end - c.start >= timeout) {
            return Some("a call outlasted RequestTimeout");
        }
        let during = |from: Instant, to: Instant| {
            spans
                .iter()
                .any(|c| c.start <= to + FAULT_SLACK && c.end + FAULT_SLACK >= from)
        };
        let store = self
            .store
            .iter()
            .find(|(_, from, to)| during(*from, *to))
            .map(|(what, _, _)| *what);
        store.or(self
            .host_killed
            .filter(|killed| during(*killed, *killed))
            .map(|_| "a host was killed"))
    }
}

/// Saga `i` of the fault test: every call takes [`LONG_DELAY`], so that a thousand are in
/// flight at once; one in ten is rolled back, one in ten has a call that times out.
fn fault_gid(run: &str, i: usize) -> String {
    let kind = match i % 10 {
        3 => "fail",
        7 => "late",
        _ => "ok",
    };
    format!("{run}-{i}-{kind}-long")
}

/// Checks the order of one transaction's calls: every compensation of a branch started after
/// every action call of it ended, and no action call started after a compensation started.
fn order_faults(spans: &[&Span]) -> Vec<String> {
    let mut found = Vec::new();
    for compensation in spans.iter().filter(|c| c.op == "compensate") {
        for action in spans
            .iter()
            .filter(|c| c.op == "action" && c.branch_id == compensation.branch_id)
        {
            if action.end > compensation.start {
                found.push(format!(
                    "{} branch {}: compensated before its action's outcome was known",
                    action.gid, action.branch_id
                ));
            }
        }
    }
    found
}

async fn faults_under_load(backend: Backend) {
    let Some(server) = Server::start(backend.kind()) else {
        return;
    };
    let scope = StoreScope::on(&server, backend, "faults");
    let server = Arc::new(Mutex::new(server));
    let relay = Relay::new(scope.port);
    relay.open().await;
    let mut env = scope.env(relay.port);
    env.push(HOSTS_SHARE_THE_SERVER.map(str::to_owned).into());
    env.push(("REQUEST_TIMEOUT".into(), FAULTS_REQUEST_TIMEOUT.to_string()));
    env.push(("TRANS_CRON_INTERVAL".into(), "1".into()));
    let busi = Busi::start().await;
    let first = Host::start_with(&env).await;
    let (second, third) = tokio::join!(Host::start_with(&env), Host::start_with(&env));
    let mut hosts = vec![first, second, third];
    let run = unique("faults");
    let started = Instant::now();

    // The load: every saga submitted to one of the three hosts, 48 at a time.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let submits = {
        let acknowledged = acknowledged.clone();
        let http = hosts
            .iter()
            .map(|h| (h.api("/submit"), h.http.clone()))
            .collect::<Vec<_>>();
        let (busi, run) = (busi.clone(), run.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..FAULT_SAGAS)
                .map(|i| {
                    let (url, http) = http[i % 3].clone();
                    let gid = fault_gid(&run, i);
                    let body = busi.transfer(&gid).to_string();
                    let acknowledged = acknowledged.clone();
                    async move {
                        let answer = http.post(url).body(body).send().await;
                        let acked = answer.is_ok_and(|r| r.status().as_u16() == 200);
                        acknowledged.fetch_add(usize::from(acked), Ordering::Relaxed);
                        (gid, acked)
                    }
                })
                .buffer_unordered(48)
                .collect::<Vec<_>>()
                .await
        })
    };

    // The faults, one after another, while the load runs and its sagas are in flight.
    let mut faults = Faults::default();
    let with_server = |act: fn(&mut Server)| {
        let server = server.clone();
        async move {
            tokio::task::spawn_blocking(move || act(&mut server.lock().unwrap()))
                .await
                .unwrap()
        }
    };
    let loading = Instant::now() + Duration::from_secs(60);
    while acknowledged.load(Ordering::Relaxed) < IN_FLIGHT_AT_FIRST_FAULT {
        assert!(Instant::now() < loading, "the load did not build up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acked_at_first_fault = acknowledged.load(Ordering::Relaxed);
    let calls_at_first_fault = busi.open_calls(|gid| gid.starts_with(&run));
    let from = Instant::now();
    relay.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.open().await;
    faults
        .store
        .push(("the store connection was cut", from, Instant::now()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from = Instant::now();
    with_server(Server::kill).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    with_server(Server::start_again).await;
    faults
        .store
        .push(("the store server was killed", from, Instant::now()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from = Instant::now();
    with_server(|s| s.pause()).await;
    // Longer than every store timeout (operation 10 s, Redis call 5 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    with_server(|s| s.resume()).await;
    faults
        .store
        .push(("the store server was frozen", from, Instant::now()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    hosts[2].kill9();
    faults.host_killed = Some(Instant::now());

    let submitted = submits.await.unwrap();
    let acked: Vec<&String> = submitted
        .iter()
        .filter(|(_, acked)| *acked)
        .map(|(gid, _)| gid)
        .collect();

    // Nothing acknowledged is lost or stuck: every saga ends as its scenario says.
    let deadline = Instant::now() + Duration::from_secs(150);
    for gid in &acked {
        let expected = expected_end(gid);
        loop {
            let q = hosts[0].query(gid).await;
            let status = q["transaction"]["status"].as_str().map(str::to_owned);
            match status.as_deref() {
                None => panic!(
                    "acknowledged {gid} is lost on {}\n{}",
                    backend.name(),
                    log_lines(&hosts, gid)
                ),
                Some(s) if s == expected => break,
                Some(s) if Instant::now() > deadline => panic!(
                    "{gid} is stuck in {s} on {}\n{}",
                    backend.name(),
                    log_lines(&hosts, gid)
                ),
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    let ended = started.elapsed();

    // The calls: in order, and every repeated one explained.
    let spans = busi.spans_when_idle(30).await;
    let mut by_gid: HashMap<&str, Vec<&Span>> = HashMap::new();
    for span in spans.iter().filter(|s| s.gid.starts_with(&run)) {
        by_gid.entry(&span.gid).or_default().push(span);
    }
    let mut misordered = Vec::new();
    let mut repeated: HashMap<&str, usize> = HashMap::new();
    let mut unexplained = Vec::new();
    for (gid, calls) in &by_gid {
        misordered.extend(order_faults(calls));
        let mut per_branch: HashMap<(&str, &str), usize> = HashMap::new();
        for call in calls {
            *per_branch.entry((&call.branch_id, &call.op)).or_default() += 1;
        }
        let again: usize = per_branch.values().map(|n| n - 1).sum();
        if again == 0 {
            continue;
        }
        match faults.explain(calls) {
            Some(why) => *repeated.entry(why).or_default() += again,
            None => unexplained.push(format!("{gid}: {per_branch:?}")),
        }
    }
    assert!(misordered.is_empty(), "{misordered:#?}");
    assert!(
        unexplained.is_empty(),
        "repeated calls no fault explains on {}: {unexplained:#?}",
        backend.name()
    );
    eprintln!(
        "{} faults under load: {} sagas submitted to 3 hosts, {} acknowledged ({} of them \
         before the first fault, with {} business calls under way then), all ended as they \
         should within {:.0} s: 0 lost, 0 stuck, none compensated before its action's outcome, \
         no action after its compensation; faults: store connection cut 2 s, store server \
         killed and restarted, store server frozen 12 s, 1 of 3 hosts killed, 1 in 10 sagas \
         with a call past RequestTimeout; repeated calls by cause: {repeated:?}",
        backend.name(),
        submitted.len(),
        acked.len(),
        acked_at_first_fault,
        calls_at_first_fault,
        ended.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_faults_under_load_lose_nothing() {
    faults_under_load(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_faults_under_load_lose_nothing() {
    faults_under_load(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_faults_under_load_lose_nothing() {
    faults_under_load(Backend::Redis).await;
}
