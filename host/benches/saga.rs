//! `cargo bench --bench saga` (or `just bench`): 2-branch sagas through the release `dtm-host`
//! on its durable embedded store, against a baseline that calls the same two branches directly,
//! in the same run: over HTTP (submit over HTTP, HTTP branches) and over gRPC (Submit over gRPC,
//! gRPC branches). Prints TPS, their ratio, p50/p99 latency and the host's peak RSS.
//!
//! Settings (environment): BENCH_CONCURRENCY (default 64), BENCH_SECONDS (default 10),
//! BENCH_LOG_LEVEL (the host's LogLevel, default info).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../tests/common/mod.rs"]
mod common;

use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use dtm_host::proto::dtmgimp::{DtmRequest, DtmTransOptions};
use serde_json::json;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Empty business branches on loopback: every path answers 200 SUCCESS.
async fn start_busi() -> String {
    let app = axum::Router::new().fallback(|| async { r#"{"dtm_result":"SUCCESS"}"# });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Empty gRPC business branches: every method answers OK, whatever the request bytes.
async fn start_grpc_busi() -> String {
    use dtm_host::call::grpc::RawCodec;
    use std::future::Future;
    use std::pin::Pin;

    struct Ok200;
    impl tonic::server::UnaryService<Vec<u8>> for Ok200 {
        type Response = Vec<u8>;
        type Future =
            Pin<Box<dyn Future<Output = Result<tonic::Response<Vec<u8>>, tonic::Status>> + Send>>;
        fn call(&mut self, _: tonic::Request<Vec<u8>>) -> Self::Future {
            Box::pin(async { Ok(tonic::Response::new(Vec::new())) })
        }
    }
    async fn any(request: axum::extract::Request) -> axum::response::Response {
        use axum::response::IntoResponse;
        tonic::server::Grpc::new(RawCodec)
            .unary(Ok200, request)
            .await
            .into_response()
    }
    let app = axum::Router::new().fallback(any);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    server
}

struct HostProcess {
    child: Child,
    port: u16,
    grpc_port: u16,
    _dir: tempfile::TempDir,
}

impl HostProcess {
    async fn start(log_level: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, grpc_port) = (common::free_port(), common::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_dtm-host"))
            .env("HTTP_PORT", port.to_string())
            .env("GRPC_PORT", grpc_port.to_string())
            .env("STORE_DATA_DIR", dir.path().join("data"))
            .env("LOG_LEVEL", log_level)
            .env("LOG_OUTPUTS", dir.path().join("host.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dtm-host");
        let host = Self {
            child,
            port,
            grpc_port,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..500 {
            if client
                .get(format!("http://127.0.0.1:{port}/api/ping"))
                .send()
                .await
                .is_ok()
            {
                return host;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("dtm-host did not start");
    }

    /// Peak resident set size (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Figures {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// Runs `one` from `concurrency` workers for `seconds` after a warm-up; each call is one
/// completed unit of work (a pair of branch calls, or one saga).
async fn measure<F, Fut>(concurrency: u64, seconds: u64, one: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (one, measuring, stop) = (one.clone(), measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = one(w * 1_000_000_000 + n).await;
                n += 1;
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (l, e) = w.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Figures {
        tps: latencies.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<28} {:>9.0} TPS   p50 {:>7.2} ms   p99 {:>7.2} ms   errors {}",
        f.tps, f.p50_ms, f.p99_ms, f.errors
    );
}

fn main() {
    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    let seconds = env_or("BENCH_SECONDS", 10);
    let log_level = std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let busi = start_busi().await;
        let client = reqwest::Client::builder().pool_max_idle_per_host(1024).build().unwrap();
        println!("2-branch saga bench: concurrency {concurrency}, {seconds} s per run, host LogLevel {log_level}, {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));

        let (c, b) = (client.clone(), busi.clone());
        let direct = measure(concurrency, seconds, move |_| {
            let (c, b) = (c.clone(), b.clone());
            async move {
                for step in ["/TransOut", "/TransIn"] {
                    match c.post(format!("{b}{step}")).body(r#"{"amount":30}"#).send().await {
                        Ok(r) if r.status().is_success() => {}
                        _ => return false,
                    }
                }
                true
            }
        })
        .await;
        print("baseline (direct calls)", &direct);

        let host = HostProcess::start(&log_level).await;
        let submit_url = format!("http://127.0.0.1:{}/api/dtmsvr/submit", host.port);
        let (c, b) = (client.clone(), busi.clone());
        let coordinated = measure(concurrency, seconds, move |n| {
            let (c, b, url) = (c.clone(), b.clone(), submit_url.clone());
            async move {
                let body = json!({
                    "gid": format!("bench-{n}"), "trans_type": "saga", "wait_result": true,
                    "steps": [
                        {"action": format!("{b}/TransOut"), "compensate": format!("{b}/TransOutRevert")},
                        {"action": format!("{b}/TransIn"), "compensate": format!("{b}/TransInRevert")},
                    ],
                    "payloads": [r#"{"amount":30}"#, r#"{"amount":30}"#],
                });
                matches!(c.post(&url).body(body.to_string()).send().await, Ok(r) if r.status().is_success())
            }
        })
        .await;
        print("dtm-host saga (embedded)", &coordinated);
        println!("ratio saga/baseline TPS: {:.2}", coordinated.tps / direct.tps);

        let grpc_busi = start_grpc_busi().await;
        let busi_channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_busi}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let direct_grpc = measure(concurrency, seconds, move |_| {
            let channel = busi_channel.clone();
            async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                for method in ["/busi.Busi/TransOut", "/busi.Busi/TransIn"] {
                    if grpc.ready().await.is_err() {
                        return false;
                    }
                    let request = tonic::Request::new(vec![8u8, 30]);
                    let path = method.parse().unwrap();
                    if grpc.unary(request, path, dtm_host::call::grpc::RawCodec).await.is_err() {
                        return false;
                    }
                }
                true
            }
        })
        .await;
        print("baseline (direct gRPC)", &direct_grpc);

        let dtm_channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", host.grpc_port))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let steps = json!([
            {"action": format!("{grpc_busi}/busi.Busi/TransOut"), "compensate": format!("{grpc_busi}/busi.Busi/TransOutRevert")},
            {"action": format!("{grpc_busi}/busi.Busi/TransIn"), "compensate": format!("{grpc_busi}/busi.Busi/TransInRevert")},
        ])
        .to_string();
        let coordinated_grpc = measure(concurrency, seconds, move |n| {
            let mut dtm = DtmClient::new(dtm_channel.clone());
            let request = DtmRequest {
                gid: format!("bench-grpc-{n}"),
                trans_type: "saga".into(),
                steps: steps.clone(),
                bin_payloads: vec![vec![8, 30], vec![8, 30]],
                trans_options: Some(DtmTransOptions { wait_result: true, ..Default::default() }),
                ..Default::default()
            };
            async move { dtm.submit(request).await.is_ok() }
        })
        .await;
        print("dtm-host gRPC saga", &coordinated_grpc);
        println!("ratio gRPC saga/baseline TPS: {:.2}", coordinated_grpc.tps / direct_grpc.tps);
        println!("dtm-host peak RSS: {:.1} MiB", host.peak_rss_mib());
    });
}
