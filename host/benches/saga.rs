//! `cargo bench --bench saga` (or `just bench`): 2-branch sagas through the release `dtm-host`
//! on its durable embedded store, against a baseline that calls the same two branches directly,
//! in the same run: over HTTP (submit over HTTP, HTTP branches) and over gRPC (Submit over gRPC,
//! gRPC branches). Prints TPS, their ratio, p50/p99 latency and the host's peak RSS.
//!
//! Settings (environment): BENCH_CONCURRENCY (default 64), BENCH_SECONDS (default 10),
//! BENCH_LOG_LEVEL (the host's LogLevel, default info).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use dtm_host::proto::dtmgimp::{DtmRequest, DtmTransOptions};
use serde_json::json;
use support::{env_or, measure, print, start_grpc_busi, HostProcess};

/// Empty business branches on loopback: every path answers 200 SUCCESS.
async fn start_busi() -> String {
    let app = axum::Router::new().fallback(|| async { r#"{"dtm_result":"SUCCESS"}"# });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
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
