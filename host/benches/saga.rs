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

use support::{
    env_or, grpc_channel, grpc_saga, http_saga, measure, print, start_busi, start_grpc_busi,
    HostProcess,
};

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
        let coordinated = measure(concurrency, seconds, http_saga(&client, &submit_url, &busi, "bench")).await;
        print("dtm-host saga (embedded)", &coordinated);
        println!("ratio saga/baseline TPS: {:.2}", coordinated.tps / direct.tps);

        let grpc_busi = start_grpc_busi().await;
        let busi_channel = grpc_channel(&grpc_busi).await;
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

        let dtm_channel = grpc_channel(&format!("127.0.0.1:{}", host.grpc_port)).await;
        let coordinated_grpc =
            measure(concurrency, seconds, grpc_saga(dtm_channel, &grpc_busi, "bench-grpc")).await;
        print("dtm-host gRPC saga", &coordinated_grpc);
        println!("ratio gRPC saga/baseline TPS: {:.2}", coordinated_grpc.tps / direct_grpc.tps);
        println!("dtm-host peak RSS: {:.1} MiB", host.peak_rss_mib());
    });
}
