//! `cargo bench --bench saga` (or `just bench`): 2-branch sagas through the release `dtm-host`
//! on its durable embedded store, against a baseline that calls the same two branches directly,
//! in the same run: over HTTP (submit over HTTP, HTTP branches) and over gRPC (Submit over gRPC,
//! gRPC branches). Prints TPS, their ratio, p50/p99 latency and the host's peak RSS.
//!
//! Each kind also runs a relay: a stand-in coordinator that takes the submit, calls both
//! branches and answers, with no parsing, store or engine. Its TPS is the ceiling any
//! coordinator meets on this machine, where the load, the branches and the coordinator share
//! the same cores.
//!
//! Settings (environment): BENCH_CONCURRENCY (default 64), BENCH_SECONDS (default 10),
//! BENCH_LOG_LEVEL (the host's LogLevel, default info).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use support::{
    call_branches_grpc, call_branches_http, env_or, grpc_channel, grpc_saga, http_saga, measure,
    print, start_busi, start_grpc_busi, start_grpc_relay, start_http_relay, Figures, HostProcess,
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
            async move { call_branches_http(&c, &b).await }
        })
        .await;
        print("baseline (direct calls)", &direct);

        let relay = start_http_relay(&busi).await;
        let relayed = measure(concurrency, seconds, http_saga(&client, &relay, &busi, "relay")).await;
        print("relay (network work only)", &relayed);

        let host = HostProcess::start(&log_level).await;
        let submit_url = format!("http://127.0.0.1:{}/api/dtmsvr/submit", host.port);
        let coordinated = measure(concurrency, seconds, http_saga(&client, &submit_url, &busi, "bench")).await;
        print("dtm-host saga (embedded)", &coordinated);
        print_ratios("", &direct, &relayed, &coordinated);

        let grpc_busi = start_grpc_busi().await;
        let busi_channel = grpc_channel(&grpc_busi).await;
        let direct_grpc = measure(concurrency, seconds, move |_| call_branches_grpc(busi_channel.clone())).await;
        print("baseline (direct gRPC)", &direct_grpc);

        let relay_channel = grpc_channel(&start_grpc_relay(&grpc_busi).await).await;
        let relayed_grpc = measure(concurrency, seconds, grpc_saga(relay_channel, &grpc_busi, "relay-grpc")).await;
        print("relay gRPC (network only)", &relayed_grpc);

        let dtm_channel = grpc_channel(&format!("127.0.0.1:{}", host.grpc_port)).await;
        let coordinated_grpc =
            measure(concurrency, seconds, grpc_saga(dtm_channel, &grpc_busi, "bench-grpc")).await;
        print("dtm-host gRPC saga", &coordinated_grpc);
        print_ratios("gRPC ", &direct_grpc, &relayed_grpc, &coordinated_grpc);
        println!("dtm-host peak RSS: {:.1} MiB", host.peak_rss_mib());
    });
}

/// The saga against the baseline (the target), and what the relay shows of the
/// ceiling: the relay against the baseline, the saga against the relay.
fn print_ratios(kind: &str, direct: &Figures, relayed: &Figures, coordinated: &Figures) {
    println!(
        "ratio {kind}saga/baseline TPS: {:.2}",
        coordinated.tps / direct.tps
    );
    println!(
        "ratio {kind}relay/baseline TPS: {:.2} (the most any coordinator reaches here); {kind}saga/relay: {:.2}",
        relayed.tps / direct.tps,
        coordinated.tps / relayed.tps
    );
}
