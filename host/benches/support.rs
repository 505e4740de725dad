//! What the benches share: the release binary started on a fresh store, an empty gRPC business
//! service, and a load loop that reports TPS and latency percentiles.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common;

/// The median of `values` (the mean of the two middle ones for an even count; NaN for none).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Empty business branches on loopback: every path answers 200 SUCCESS.
pub async fn start_busi() -> String {
    let app = axum::Router::new().fallback(|| async { r#"{"dtm_result":"SUCCESS"}"# });
    format!("http://{}", serve_on_loopback(app).await)
}

/// Serves `app` on a loopback port in the background; returns `host:port`. Its connections
/// send small writes at once (TCP_NODELAY), as the host's own listeners do.
pub async fn serve_on_loopback(app: axum::Router) -> String {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One unit of work under way, as [`measure`] runs it: `true` when it succeeded.
pub type Attempt = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// One 2-branch saga submitted over HTTP with `wait_result`, as a [`measure`] unit: its gid is
/// `gid_prefix` and the unit's number.
pub fn http_saga(
    client: &reqwest::Client,
    submit_url: &str,
    busi: &str,
    gid_prefix: &str,
) -> impl Fn(u64) -> Attempt + Send + Sync + 'static {
    let (client, url, busi) = (client.clone(), submit_url.to_owned(), busi.to_owned());
    let gid_prefix = gid_prefix.to_owned();
    move |n| {
        let body = serde_json::json!({
            "gid": format!("{gid_prefix}-{n}"), "trans_type": "saga", "wait_result": true,
            "steps": [
                {"action": format!("{busi}/TransOut"), "compensate": format!("{busi}/TransOutRevert")},
                {"action": format!("{busi}/TransIn"), "compensate": format!("{busi}/TransInRevert")},
            ],
            "payloads": [r#"{"amount":30}"#, r#"{"amount":30}"#],
        });
        let request = client.post(&url).body(body.to_string());
        Box::pin(async move { matches!(request.send().await, Ok(r) if r.status().is_success()) })
    }
}

/// One 2-branch saga submitted over gRPC with `wait_result` to the host behind `dtm`, calling
/// `{busi}/busi.Busi/TransOut` and `…/TransIn`, as a [`measure`] unit: its gid is `gid_prefix`
/// and the unit's number.
pub fn grpc_saga(
    dtm: tonic::transport::Channel,
    busi: &str,
    gid_prefix: &str,
) -> impl Fn(u64) -> Attempt + Send + Sync + 'static {
    use dtm_host::proto::dtmgimp::{dtm_client::DtmClient, DtmRequest, DtmTransOptions};
    let steps = serde_json::json!([
        {"action": format!("{busi}/busi.Busi/TransOut"), "compensate": format!("{busi}/busi.Busi/TransOutRevert")},
        {"action": format!("{busi}/busi.Busi/TransIn"), "compensate": format!("{busi}/busi.Busi/TransInRevert")},
    ])
    .to_string();
    let gid_prefix = gid_prefix.to_owned();
    move |n| {
        let mut client = DtmClient::new(dtm.clone());
        let request = DtmRequest {
            gid: format!("{gid_prefix}-{n}"),
            trans_type: "saga".into(),
            steps: steps.clone(),
            bin_payloads: vec![vec![8, 30], vec![8, 30]],
            trans_options: Some(DtmTransOptions {
                wait_result: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        Box::pin(async move { client.submit(request).await.is_ok() })
    }
}

/// A gRPC channel to `addr` (`host:port`).
pub async fn grpc_channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Empty gRPC business branches: every method answers OK, whatever the request bytes.
pub async fn start_grpc_busi() -> String {
    struct Ok200;
    impl tonic::server::UnaryService<Vec<u8>> for Ok200 {
        type Response = Vec<u8>;
        type Future = GrpcAnswer;
        fn call(&mut self, _: tonic::Request<Vec<u8>>) -> GrpcAnswer {
            Box::pin(async { Ok(tonic::Response::new(Vec::new())) })
        }
    }
    serve_raw_grpc(|| Ok200).await
}

/// The two branch calls of one saga made directly over HTTP, as the baseline makes them and
/// as the relays forward them: `true` when both succeeded.
pub async fn call_branches_http(client: &reqwest::Client, busi: &str) -> bool {
    for step in ["/TransOut", "/TransIn"] {
        match client
            .post(format!("{busi}{step}"))
            .body(r#"{"amount":30}"#)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            _ => return false,
        }
    }
    true
}

/// The two branch calls of one saga made directly over gRPC (see [`call_branches_http`]).
pub async fn call_branches_grpc(channel: tonic::transport::Channel) -> bool {
    let mut grpc = tonic::client::Grpc::new(channel);
    for method in ["/busi.Busi/TransOut", "/busi.Busi/TransIn"] {
        if grpc.ready().await.is_err() {
            return false;
        }
        let request = tonic::Request::new(vec![8u8, 30]);
        let path = http::uri::PathAndQuery::from_static(method);
        if grpc
            .unary(request, path, dtm_host::call::grpc::RawCodec)
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// A stand-in coordinator doing only the network work every coordinator must do for a
/// 2-branch saga with `wait_result`: take the submit, call both branches, answer. It parses
/// nothing, stores nothing and runs no engine, so its TPS bounds what any coordinator can
/// reach on this machine against the same baseline.
pub async fn start_http_relay(busi: &str) -> String {
    let client = reqwest::Client::new();
    let busi = busi.to_owned();
    let app = axum::Router::new().fallback(move |_submit: axum::body::Bytes| {
        let (client, busi) = (client.clone(), busi.clone());
        async move {
            if call_branches_http(&client, &busi).await {
                (http::StatusCode::OK, r#"{"dtm_result":"SUCCESS"}"#)
            } else {
                (http::StatusCode::INTERNAL_SERVER_ERROR, "")
            }
        }
    });
    format!("http://{}", serve_on_loopback(app).await)
}

/// [`start_http_relay`] over gRPC: any unary call is answered (empty message) once both gRPC
/// branches behind `busi` answered.
pub async fn start_grpc_relay(busi: &str) -> String {
    struct Relay(tonic::transport::Channel);
    impl tonic::server::UnaryService<Vec<u8>> for Relay {
        type Response = Vec<u8>;
        type Future = GrpcAnswer;
        fn call(&mut self, _: tonic::Request<Vec<u8>>) -> GrpcAnswer {
            let channel = self.0.clone();
            Box::pin(async move {
                if call_branches_grpc(channel).await {
                    Ok(tonic::Response::new(Vec::new()))
                } else {
                    Err(tonic::Status::unavailable("a branch call failed"))
                }
            })
        }
    }
    let channel = grpc_channel(busi).await;
    serve_raw_grpc(move || Relay(channel.clone())).await
}

type GrpcAnswer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<tonic::Response<Vec<u8>>, tonic::Status>> + Send>,
>;

/// Serves every unary gRPC method with a fresh `service()`, reading and writing raw bytes;
/// returns `host:port`.
async fn serve_raw_grpc<S>(service: impl Fn() -> S + Clone + Send + Sync + 'static) -> String
where
    S: tonic::server::UnaryService<Vec<u8>, Response = Vec<u8>, Future = GrpcAnswer>
        + Send
        + 'static,
{
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let service = service();
        async move {
            tonic::server::Grpc::new(dtm_host::call::grpc::RawCodec)
                .unary(service, request)
                .await
                .into_response()
        }
    });
    serve_on_loopback(app).await
}

pub struct HostProcess {
    child: Child,
    pub port: u16,
    pub grpc_port: u16,
    _dir: tempfile::TempDir,
}

impl HostProcess {
    pub async fn start(log_level: &str) -> Self {
        Self::start_with(log_level, &[] as &[(&str, &str)]).await
    }

    /// Starts it with extra environment variables; `{GRPC_PORT}` in a value stands for its gRPC
    /// port.
    pub async fn start_with(log_level: &str, env: &[(impl AsRef<str>, impl AsRef<str>)]) -> Self {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_dtm-host")), log_level, env).await
    }

    /// Starts `binary` (a dtm-host built from other code, say) as [`HostProcess::start_with`]
    /// starts this build's.
    pub async fn start_binary(
        binary: &Path,
        log_level: &str,
        env: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, grpc_port) = (common::free_port(), common::free_port());
        let child = Command::new(binary)
            .env("HTTP_PORT", port.to_string())
            .env("GRPC_PORT", grpc_port.to_string())
            .env("STORE_DATA_DIR", dir.path().join("data"))
            .env("LOG_LEVEL", log_level)
            .env("LOG_OUTPUTS", dir.path().join("host.log"))
            .envs(env.iter().map(|(k, v)| {
                let value = v.as_ref().replace("{GRPC_PORT}", &grpc_port.to_string());
                (k.as_ref().to_owned(), value)
            }))
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
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

pub struct Figures {
    pub tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
}

/// Runs `one` from `concurrency` workers for `seconds` after a warm-up; each call is one
/// completed unit of work (a pair of branch calls, or one saga).
pub async fn measure<F, Fut>(concurrency: u64, seconds: u64, one: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    measure_window(concurrency, seconds, one, || {}).await
}

/// [`measure`], calling `at_edge` as the measured window opens and again as it closes (to
/// sample a process's CPU time over exactly that window).
pub async fn measure_window<F, Fut>(
    concurrency: u64,
    seconds: u64,
    one: F,
    mut at_edge: impl FnMut(),
) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // BENCH_RATE (transactions per second, all workers together) paces the load: each worker
    // starts its next transaction on a fixed schedule, or at once when it is behind. At one
    // rate, two builds do the same work in the same batches, so their CPU time per transaction
    // compares even on a machine whose speed drifts between runs.
    let pace = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|rate| rate.parse::<f64>().ok())
        .filter(|rate| *rate > 0.0)
        .map(|rate| Duration::from_secs_f64(concurrency as f64 / rate));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (one, measuring, stop) = (one.clone(), measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0u64);
            // Workers are spread over the period, not started together.
            let first = tokio::time::Instant::now()
                + pace.map_or(Duration::ZERO, |p| p.mul_f64(w as f64 / concurrency as f64));
            while !stop.load(Ordering::Relaxed) {
                if let Some(pace) = pace {
                    tokio::time::sleep_until(first + pace.mul_f64(n as f64)).await;
                }
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
    at_edge();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    at_edge();
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

pub fn print(name: &str, f: &Figures) {
    println!(
        "{name:<28} {:>9.0} TPS   p50 {:>7.2} ms   p99 {:>7.2} ms   errors {}",
        f.tps, f.p50_ms, f.p99_ms, f.errors
    );
}
