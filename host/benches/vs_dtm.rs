//! `cargo bench --bench vs_dtm` (or `just bench`): dtm-host against dtm v1.19.0 itself (built
//! from the Go module proxy by `tests/common/dtm.rs`), on the same machine, under the same load
//! generator, against the same business service that answers SUCCESS at once, with the same
//! client settings.
//!
//! Workloads: a 2-branch saga with `wait_result` submitted over HTTP, the same over gRPC
//! (`dtmgimp.Dtm/Submit`, gRPC branches), a 2-branch msg submitted over HTTP without a prepare
//! (the submit answers once the msg is stored; its branches run after), all from
//! BENCH_CONCURRENCY clients (default 64), and the HTTP saga again from BENCH_TAIL_CONCURRENCY
//! clients (default 256) for the tail.
//!
//! Store pairs: dtm's boltdb against dtm-host's embedded store, then MariaDB, PostgreSQL and
//! Redis (throwaway servers; dtm's tables are created from the SQL files of dtm's module in the
//! Go module cache). Each coordinator runs with its defaults, except that on a SQL server both
//! may open the same number of connections (`Store.MaxOpenConns`).
//!
//! For each workload and store, a fresh dtm and a fresh dtm-host are started (and, unless
//! BENCH_UPDATE_BRANCH_SYNC is set, a second dtm-host with dtm's `UpdateBranchSync: 0`, in a
//! scope of its own: `dtm-host/0`, ratio lines `<workload>-ubs0`), then measured in turn,
//! BENCH_RUNS times each (default 3), each run starting with another of them, each run for
//! BENCH_SECONDS (default 10) after a 2 s warm-up, and each only once every coordinator and
//! the store server are idle (the others' leftover work has settled). Per coordinator: medians over the runs of TPS, p50/p99 latency and the
//! coordinator's CPU time per transaction (user + system time from `/proc/<pid>/stat` over the
//! measured window ÷ the transactions completed in it), its peak RSS (VmHWM), the errors of
//! all runs, and the store server's CPU time per transaction (all its processes, PostgreSQL's
//! backends included): what the store costs, which on 2 shared cores bounds the TPS of both, and
//! this process's CPU time per transaction (the load generator and the business service). Each
//! row ends in `<workload> <store>: TPS ratio x, CPU ratio y` (dtm-host / dtm), and a line of what
//! 3× dtm's TPS leaves a coordinator: the machine's cores give each transaction cores × 1 s ÷
//! that TPS of CPU; the store server and this process take their share of it.
//!
//! Settings (environment): BENCH_SECONDS, BENCH_RUNS, BENCH_CONCURRENCY,
//! BENCH_TAIL_CONCURRENCY, BENCH_STORES (default `embedded,mysql,postgres,redis`),
//! BENCH_LOG_LEVEL (every coordinator's LogLevel, default info: their default),
//! BENCH_UPDATE_BRANCH_SYNC (unset: each its default, dtm 0 and dtm-host 1, plus dtm-host/0;
//! set: both this, no dtm-host/0), BENCH_BASELINE (a dtm-host binary built from other code, say
//! an earlier commit, measured beside this build with its settings: `baseline`, ratio lines
//! `<workload>-baseline`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dtm::{dtm_store_yaml, Dtm, DTM_VERSION};
use common::stores::{Backend, StoreScope};
use support::{
    env_or, grpc_channel, grpc_saga, measure_window, median, serve_on_loopback, start_grpc_busi,
    Attempt, Figures, HostProcess,
};

/// `Store.MaxOpenConns` of each coordinator on a SQL server: both run at once on one server,
/// and dtm's default (500, as dtm-host's) is beyond PostgreSQL's 100 connections.
const SQL_POOL: u32 = 30;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    SagaHttp,
    SagaGrpc,
    MsgHttp,
}

#[derive(Clone, Copy)]
struct Workload {
    kind: Kind,
    clients: u64,
}

impl Workload {
    fn name(self) -> String {
        let kind = match self.kind {
            Kind::SagaHttp => "saga-http",
            Kind::SagaGrpc => "saga-grpc",
            Kind::MsgHttp => "msg-http",
        };
        format!("{kind}-c{}", self.clients)
    }

    fn describe(self) -> String {
        let what = match self.kind {
            Kind::SagaHttp => "2-branch saga, wait_result, submitted over HTTP, HTTP branches",
            Kind::SagaGrpc => "2-branch saga, wait_result, Submit over gRPC, gRPC branches",
            Kind::MsgHttp => {
                "2-branch msg submitted over HTTP without prepare (answered once stored), HTTP branches"
            }
        };
        format!("{what}; {} clients", self.clients)
    }
}

/// The stores to measure, by name; `None` is the embedded store (boltdb for dtm).
fn stores() -> Vec<Option<Backend>> {
    let wanted =
        std::env::var("BENCH_STORES").unwrap_or_else(|_| "embedded,mysql,postgres,redis".into());
    wanted
        .split(',')
        .map(|name| match name.trim() {
            "embedded" => None,
            "mysql" => Some(Backend::MySql),
            "postgres" => Some(Backend::Postgres),
            "redis" => Some(Backend::Redis),
            other => panic!("BENCH_STORES: unknown store {other}"),
        })
        .collect()
}

fn store_name(store: Option<Backend>) -> &'static str {
    store.map_or("embedded", Backend::name)
}

fn store_pair(store: Option<Backend>) -> String {
    match store {
        None => "dtm boltdb vs dtm-host embedded store; both fsync each commit, dtm-host answers after fsync".into(),
        Some(b) => format!(
            "{} on one throwaway server for both{}",
            match b {
                Backend::MySql => "MariaDB",
                Backend::Postgres => "PostgreSQL",
                Backend::Redis => "Redis (appendonly, fsync every second)",
            },
            if b == Backend::Redis {
                String::from(", each its default client")
            } else {
                format!(", MaxOpenConns {SQL_POOL} each")
            }
        ),
    }
}

/// A dtm-host configuration measured against dtm.
struct HostSetting {
    label: &'static str,
    /// `UpdateBranchSync` set for it (`None`: dtm-host's default).
    update_branch_sync: Option<String>,
    /// Added to the workload's name in its ratio line.
    suffix: &'static str,
    /// Another dtm-host binary to run (`None`: this build).
    binary: Option<PathBuf>,
}

/// One coordinator under load.
struct Side {
    label: &'static str,
    pid: u32,
    /// The port of the store server it uses (`None`: the embedded store, in its own process).
    store_port: Option<u16>,
    submit_url: String,
    grpc: tonic::transport::Channel,
    failure: Failure,
}

/// What one run of one side measured.
struct Run {
    figures: Figures,
    cpu_us_per_tx: f64,
    /// The store server's CPU time per transaction (all its processes), when it has one.
    store_us_per_tx: Option<f64>,
    /// This process's CPU time per transaction: the load generator and the business service.
    bench_us_per_tx: f64,
}

struct Bench {
    seconds: u64,
    runs: usize,
    log_level: String,
    update_branch_sync: Option<String>,
    /// BENCH_BASELINE: a dtm-host binary built from other code, measured beside this build with
    /// its settings.
    baseline: Option<PathBuf>,
    client: reqwest::Client,
    busi: String,
    grpc_busi: String,
    clock_ticks: f64,
    /// The machine's cores: with the rest of the machine idle, they bound what all processes
    /// together spend per transaction at a given TPS.
    cores: f64,
}

impl Bench {
    /// The dtm-host settings measured against dtm: the one BENCH_UPDATE_BRANCH_SYNC gives both,
    /// or else dtm-host's default and, beside it, dtm's `UpdateBranchSync: 0`.
    fn host_settings(&self) -> Vec<HostSetting> {
        let mut settings = match &self.update_branch_sync {
            Some(value) => vec![HostSetting {
                label: "dtm-host",
                update_branch_sync: Some(value.clone()),
                suffix: "",
                binary: None,
            }],
            None => vec![
                HostSetting {
                    label: "dtm-host",
                    update_branch_sync: None,
                    suffix: "",
                    binary: None,
                },
                HostSetting {
                    label: "dtm-host/0",
                    update_branch_sync: Some("0".into()),
                    suffix: "-ubs0",
                    binary: None,
                },
            ],
        };
        if let Some(binary) = &self.baseline {
            settings.push(HostSetting {
                label: "baseline",
                update_branch_sync: self.update_branch_sync.clone(),
                suffix: "-baseline",
                binary: Some(binary.clone()),
            });
        }
        settings
    }

    /// A fresh dtm and a fresh dtm-host per setting on `store`, each in a scope of its own, and
    /// the store server's port.
    async fn start_coordinators(
        &self,
        store: Option<Backend>,
        tag: &str,
        settings: &[HostSetting],
    ) -> (Dtm, Vec<HostProcess>, Option<u16>) {
        let mut store_port = None;
        let mut yaml = format!("LogLevel: {}\n", self.log_level);
        if let Some(ubs) = &self.update_branch_sync {
            yaml.push_str(&format!("UpdateBranchSync: {ubs}\n"));
        }
        if let Some(backend) = store {
            let dtm_scope = StoreScope::new(backend, &format!("vs_dtm_{tag}"))
                .expect("the server is installed");
            store_port = Some(dtm_scope.port);
            let store_yaml = dtm_store_yaml(&dtm_scope, SQL_POOL)
                .await
                .expect("Go is installed, to build dtm");
            yaml.push_str(&store_yaml);
        }
        let dtm = Dtm::start(&yaml)
            .await
            .expect("Go is installed, to build dtm");
        let mut hosts = Vec::new();
        for (i, setting) in settings.iter().enumerate() {
            let mut env: Vec<(String, String)> = Vec::new();
            if let Some(ubs) = &setting.update_branch_sync {
                env.push(("UPDATE_BRANCH_SYNC".into(), ubs.clone()));
            }
            if let Some(backend) = store {
                let scope = StoreScope::new(backend, &format!("vs_host{i}_{tag}"))
                    .expect("the server is installed");
                env.extend(scope.env(scope.port));
                if backend != Backend::Redis {
                    env.push(("STORE_MAX_OPEN_CONNS".into(), SQL_POOL.to_string()));
                }
            }
            hosts.push(match &setting.binary {
                Some(binary) => HostProcess::start_binary(binary, &self.log_level, &env).await,
                None => HostProcess::start_with(&self.log_level, &env).await,
            });
        }
        (dtm, hosts, store_port)
    }

    fn unit(
        &self,
        workload: Workload,
        side: &Side,
        prefix: &str,
    ) -> Arc<dyn Fn(u64) -> Attempt + Send + Sync> {
        match workload.kind {
            Kind::SagaHttp | Kind::MsgHttp => Arc::new(http_submit(
                &self.client,
                &side.submit_url,
                &self.busi,
                prefix,
                workload.kind == Kind::MsgHttp,
                side.failure.clone(),
            )),
            Kind::SagaGrpc => Arc::new(grpc_saga(side.grpc.clone(), &self.grpc_busi, prefix)),
        }
    }

    /// Measures `side` once `busy` (every coordinator) and the store server are idle.
    async fn run(&self, workload: Workload, side: &Side, busy: &[u32], prefix: &str) -> Run {
        settle(busy, side.store_port.and_then(server_pid)).await;
        let one = self.unit(workload, side, prefix);
        let edges = Arc::new(Mutex::new(Vec::new()));
        let (pid, sampled) = (side.pid, edges.clone());
        let store = side.store_port.and_then(server_pid);
        let bench = std::process::id();
        let figures = measure_window(
            workload.clients,
            self.seconds,
            move |n| one(n),
            move || {
                let store_ticks = store.map_or(0, tree_ticks);
                sampled.lock().unwrap().push((
                    cpu_ticks(pid),
                    store_ticks,
                    cpu_ticks(bench),
                    Instant::now(),
                ))
            },
        )
        .await;
        let edges = edges.lock().unwrap();
        let (ticks, window) = (edges[1].0 - edges[0].0, edges[1].3 - edges[0].3);
        let transactions = figures.tps * window.as_secs_f64();
        let per_tx = |ticks: u64| ticks as f64 / self.clock_ticks * 1e6 / transactions;
        Run {
            figures,
            cpu_us_per_tx: per_tx(ticks),
            store_us_per_tx: store.map(|_| per_tx(edges[1].1.saturating_sub(edges[0].1))),
            bench_us_per_tx: per_tx(edges[1].2.saturating_sub(edges[0].2)),
        }
    }

    async fn row(&self, workload: Workload, store: Option<Backend>, index: usize) {
        let tag = format!("{index}");
        let settings = self.host_settings();
        let (dtm, hosts, store_port) = self.start_coordinators(store, &tag, &settings).await;
        let mut sides = vec![Side {
            label: "dtm",
            pid: dtm.pid(),
            store_port,
            submit_url: dtm.api("/submit"),
            grpc: grpc_channel(&format!("127.0.0.1:{}", dtm.grpc_port)).await,
            failure: Failure::default(),
        }];
        for (host, setting) in hosts.iter().zip(&settings) {
            sides.push(Side {
                label: setting.label,
                pid: host.pid(),
                store_port,
                submit_url: format!("http://127.0.0.1:{}/api/dtmsvr/submit", host.port),
                grpc: grpc_channel(&format!("127.0.0.1:{}", host.grpc_port)).await,
                failure: Failure::default(),
            });
        }
        let busy: Vec<u32> = sides.iter().map(|side| side.pid).collect();
        let mut runs: Vec<Vec<Run>> = sides.iter().map(|_| Vec::new()).collect();
        for r in 0..self.runs {
            // Each run starts with another side, so drift hits all.
            for i in (0..sides.len()).map(|k| (k + r) % sides.len()) {
                let prefix = format!("{}-{r}", workload.name());
                runs[i].push(self.run(workload, &sides[i], &busy, &prefix).await);
            }
        }
        println!();
        println!("{} — {}", workload.describe(), store_pair(store));
        println!(
            "  {:<10} {:>9} {:>9} {:>9} {:>11} {:>13} {:>7} {:>15} {:>15}   TPS of each run",
            "",
            "TPS",
            "p50 ms",
            "p99 ms",
            "CPU µs/tx",
            "peak RSS MiB",
            "errors",
            "store CPU µs/tx",
            "bench CPU µs/tx"
        );
        let mut summary = Vec::new();
        for (side, runs) in sides.iter().zip(&runs) {
            let tps = median(runs.iter().map(|r| r.figures.tps));
            let cpu = median(runs.iter().map(|r| r.cpu_us_per_tx));
            let errors: usize = runs.iter().map(|r| r.figures.errors).sum();
            let each: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.0}", r.figures.tps))
                .collect();
            let store_cpu = runs
                .iter()
                .map(|r| r.store_us_per_tx)
                .collect::<Option<Vec<f64>>>()
                .map(median);
            let bench_cpu = median(runs.iter().map(|r| r.bench_us_per_tx));
            println!(
                "  {:<10} {:>9.0} {:>9.2} {:>9.2} {:>11.0} {:>13.1} {:>7} {:>15} {:>15.0}   {}{}",
                side.label,
                tps,
                median(runs.iter().map(|r| r.figures.p50_ms)),
                median(runs.iter().map(|r| r.figures.p99_ms)),
                cpu,
                peak_rss_mib(side.pid),
                errors,
                store_cpu.map_or("-".to_owned(), |cpu| format!("{cpu:.0}")),
                bench_cpu,
                each.join(" "),
                if errors > 0 { "   !! errors" } else { "" }
            );
            summary.push((tps, cpu, store_cpu.unwrap_or(0.0) + bench_cpu));
            if let Some(reason) = side.failure.lock().unwrap().as_ref() {
                let reason: String = reason.chars().take(300).collect();
                println!("    {} first error: {reason}", side.label);
            }
        }
        let target = 3.0 * summary[0].0;
        let budget = self.cores * 1e6 / target;
        for (setting, (tps, cpu, others)) in settings.iter().zip(&summary[1..]) {
            println!(
                "{}{} {}: TPS ratio {:.2}, CPU ratio {:.2}",
                workload.name(),
                setting.suffix,
                store_name(store),
                tps / summary[0].0,
                cpu / summary[0].1
            );
            println!(
                "  {}: 3x dtm is {target:.0} TPS, {budget:.0} µs of CPU per transaction on {} \
                 cores; the store and the bench took {others:.0} µs per {0} transaction, leaving \
                 {:.0} µs for {0} (it took {cpu:.0})",
                setting.label,
                self.cores,
                budget - others,
            );
        }
        drop((dtm, hosts));
    }
}

/// One 2-branch saga (`wait_result`) or msg (no prepare, answered once stored) submitted over
/// HTTP, as a `measure` unit: succeeded when the submit was answered with a 2xx. The first
/// failure's reason is kept in `failure`.
fn http_submit(
    client: &reqwest::Client,
    submit_url: &str,
    busi: &str,
    gid_prefix: &str,
    msg: bool,
    failure: Failure,
) -> impl Fn(u64) -> Attempt + Send + Sync + 'static {
    let (client, url, busi) = (client.clone(), submit_url.to_owned(), busi.to_owned());
    let gid_prefix = gid_prefix.to_owned();
    move |n| {
        let gid = format!("{gid_prefix}-{n}");
        let payloads = [r#"{"amount":30}"#, r#"{"amount":30}"#];
        let body = if msg {
            serde_json::json!({
                "gid": gid, "trans_type": "msg", "payloads": payloads,
                "steps": [{"action": format!("{busi}/TransOut")}, {"action": format!("{busi}/TransIn")}],
            })
        } else {
            serde_json::json!({
                "gid": gid, "trans_type": "saga", "wait_result": true, "payloads": payloads,
                "steps": [
                    {"action": format!("{busi}/TransOut"), "compensate": format!("{busi}/TransOutRevert")},
                    {"action": format!("{busi}/TransIn"), "compensate": format!("{busi}/TransInRevert")},
                ],
            })
        };
        let request = client.post(&url).body(body.to_string());
        let failure = failure.clone();
        Box::pin(async move {
            let reason = match request.send().await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => format!("{e:?}"),
            };
            failure.lock().unwrap().get_or_insert(reason);
            false
        })
    }
}

/// Business branches on loopback that read the request and answer 200 SUCCESS. Reading the
/// body matters: a server that answers without reading it closes the connection, and dtm's Go
/// client, reusing it at that moment, fails the branch call ("server closed idle connection").
async fn start_reading_busi() -> String {
    let app = axum::Router::new()
        .fallback(|_body: axum::body::Bytes| async { r#"{"dtm_result":"SUCCESS"}"# });
    format!("http://{}", serve_on_loopback(app).await)
}

/// The first failure seen on one side, to print beside its error count.
type Failure = Arc<Mutex<Option<String>>>;

/// The process listening on 127.0.0.1:`port` as a server started by test-servers: the one
/// whose command line names the port (`-p N`, `--port=N`, `--port N`, or Redis' own title
/// `redis-server 127.0.0.1:N`), the root of its tree.
fn server_pid(port: u16) -> Option<u32> {
    let port = port.to_string();
    processes().into_iter().find_map(|(pid, _)| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let names = args
            .windows(2)
            .any(|pair| (pair[0] == b"-p" || pair[0] == b"--port") && pair[1] == port.as_bytes())
            || args.iter().any(|a| {
                *a == format!("--port={port}").as_bytes()
                    || a.ends_with(format!(":{port}").as_bytes())
            });
        names.then_some(pid)
    })
}

/// Every process as (pid, parent pid).
fn processes() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// User + system CPU time of `root` and every process under it (PostgreSQL's backends).
fn tree_ticks(root: u32) -> u64 {
    let all = processes();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree.into_iter().map(cpu_ticks).sum()
}

/// User + system CPU time of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// Peak resident set size (VmHWM) of `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Waits, up to 30 s, until each coordinator and the store server (all its processes) used at
/// most 5 clock ticks in the last half second: the work one coordinator left (a msg is answered
/// before its branches are called; dtm writes branch results in the background) must not run
/// in the other's window, where it would take cores and store time from it.
async fn settle(coordinators: &[u32], store: Option<u32>) {
    let ticks = || {
        let mut ticks: Vec<u64> = coordinators.iter().map(|&pid| cpu_ticks(pid)).collect();
        ticks.extend(store.map(tree_ticks));
        ticks
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = ticks();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = ticks();
        if now.iter().zip(&last).all(|(now, last)| now - last <= 5) {
            return;
        }
        last = now;
    }
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let bench = Bench {
            seconds: env_or("BENCH_SECONDS", 10),
            runs: env_or("BENCH_RUNS", 3).max(1) as usize,
            log_level: std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            update_branch_sync: std::env::var("BENCH_UPDATE_BRANCH_SYNC").ok(),
            baseline: std::env::var_os("BENCH_BASELINE").map(PathBuf::from),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .unwrap(),
            busi: start_reading_busi().await,
            grpc_busi: start_grpc_busi().await,
            clock_ticks: clock_ticks_per_second(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        };
        let clients = env_or("BENCH_CONCURRENCY", 64);
        let workloads = [
            Workload { kind: Kind::SagaHttp, clients },
            Workload { kind: Kind::SagaGrpc, clients },
            Workload { kind: Kind::MsgHttp, clients },
            Workload { kind: Kind::SagaHttp, clients: env_or("BENCH_TAIL_CONCURRENCY", 256) },
        ];
        println!(
            "dtm {DTM_VERSION} vs dtm-host (release build): {} run(s) each of {} s after a 2 s warm-up, \
             alternating; medians of the runs; {} cores",
            bench.runs,
            bench.seconds,
            bench.cores
        );
        println!(
            "same for both: one load generator (this process, HTTP/1.1 client pool of up to 1024 \
             idle connections per coordinator; one HTTP/2 channel per coordinator for gRPC), the \
             same business service answering SUCCESS at once (HTTP and gRPC)"
        );
        println!(
            "settings: each coordinator's defaults (LogLevel {}; UpdateBranchSync {}), except \
             MaxOpenConns {SQL_POOL} for each on MariaDB/PostgreSQL (the defaults are 500, over \
             PostgreSQL's 100 connections with all coordinators up)",
            bench.log_level,
            bench.update_branch_sync.as_deref().map_or_else(
                || "dtm 0 = branch results written in the background on SQL stores, dtm-host 1 = \
                    written before the next step; dtm-host/0 is dtm-host with dtm's 0 = written \
                    with the next status change, its ratio lines end in -ubs0".to_owned(),
                |v| format!("{v} for both"),
            )
        );
        println!(
            "CPU µs/tx: the coordinator's user+system time over the measured window ÷ the \
             transactions completed in it; peak RSS: its VmHWM; ratios: dtm-host (or dtm-host/0) / dtm"
        );
        let mut index = 0;
        for store in stores() {
            for workload in workloads {
                index += 1;
                bench.row(workload, store, index).await;
            }
        }
    });
}
