//! `cargo bench --bench registry`: what discovery through a registry costs, against real etcd
//! (`/usr/bin/etcd`, started on free ports) and the gozero wasm driver.
//!
//! 1. Resolving `etcd://…/trans.rpc`: a refresh (the driver asks etcd through the host's
//!    `send-http`) vs the host's warm cache of resolved endpoints.
//! 2. 2-branch gRPC sagas through one `dtm-host` whose branch URLs are
//!    `etcd://…/trans.rpc/busi.Busi/…` vs the same branches as direct `host:port/busi.Busi/…`,
//!    alternating over three rounds; TPS medians and their ratio.
//!
//! Settings (environment): BENCH_CONCURRENCY (default 64), BENCH_SECONDS (default 5 per round),
//! BENCH_LOG_LEVEL (default info).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use dtm_host::call::grpc::GrpcCaller;
use dtm_host::config::Balancing;
use dtm_host::drivers::{Driver, Grants, HttpPolicy, WasmDriver};
use support::{
    env_or, grpc_channel, grpc_saga, measure, print, start_grpc_busi, Figures, HostProcess,
};

/// Median time of one call of `f`, over `runs` runs of `n` calls.
async fn per_call<F, Fut>(runs: usize, n: u32, f: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..n {
            f().await;
        }
        samples.push(started.elapsed() / n);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn median_tps(rounds: &[Figures]) -> f64 {
    let mut tps: Vec<f64> = rounds.iter().map(|f| f.tps).collect();
    tps.sort_by(f64::total_cmp);
    tps[tps.len() / 2]
}

/// Sagas over gRPC whose two branches are `{base}/busi.Busi/TransOut` and `…/TransIn`.
async fn sagas(
    host: &HostProcess,
    base: String,
    concurrency: u64,
    seconds: u64,
    tag: &'static str,
) -> Figures {
    let channel = grpc_channel(&format!("127.0.0.1:{}", host.grpc_port)).await;
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let one = grpc_saga(channel, &base, &format!("bench-{tag}-{salt}"));
    measure(concurrency, seconds, one).await
}

fn main() {
    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    let seconds = env_or("BENCH_SECONDS", 5);
    let log_level = std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let etcd = Etcd::start().await.expect("etcd is installed");
        let busi = start_grpc_busi().await;
        // The business service as a go-zero server registers itself (here without a lease: the
        // bench outlives no lease renewals).
        etcd.put("trans.rpc/1", &busi, None).await;
        let trans_rpc = format!("etcd://{}/trans.rpc", etcd.address());
        let gozero = common::guest_wasm("gozero");
        println!(
            "registry bench: etcd {}, gozero driver, concurrency {concurrency}, {seconds} s per round, {} cores",
            etcd.address(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );

        let grants = Grants {
            http: HttpPolicy::new([trans_rpc.as_str()], Duration::from_secs(3)),
            registry: trans_rpc.clone(),
            env: Default::default(),
        };
        let driver: Arc<dyn Driver> = Arc::new(
            WasmDriver::load(&gozero, Default::default(), grants, Default::default(), None)
                .expect("load the gozero driver"),
        );
        let refresh = per_call(9, 200, || async {
            let resolution = driver.resolve(&trans_rpc).await.expect("resolve through etcd");
            assert_eq!(resolution.endpoints, std::slice::from_ref(&busi));
        })
        .await;
        let caller = Arc::new(GrpcCaller::new(
            driver.clone(),
            Balancing::RoundRobin,
            Default::default(),
        ));
        caller.next_endpoint(&trans_rpc).await.expect("first resolution");
        let warm = per_call(9, 100_000, || async {
            std::hint::black_box(caller.next_endpoint(&trans_rpc).await.ok());
        })
        .await;
        println!("resolve, refresh through etcd  {:>10.1} µs", refresh.as_secs_f64() * 1e6);
        println!("resolve, warm host cache       {:>10.3} µs", warm.as_secs_f64() * 1e6);
        println!("refresh/warm: {:.0}x", refresh.as_secs_f64() / warm.as_secs_f64());

        let host = HostProcess::start_with(
            &log_level,
            &[
                ("MICRO_SERVICE_DRIVER", "dtm-driver-gozero".into()),
                ("MICRO_SERVICE_DRIVER_PATH", gozero.display().to_string()),
                ("MICRO_SERVICE_TARGET", format!("etcd://{}/dtmservice", etcd.address())),
                ("MICRO_SERVICE_END_POINT", "127.0.0.1:{GRPC_PORT}".into()),
            ],
        )
        .await;
        let (mut direct, mut through_etcd) = (Vec::new(), Vec::new());
        for round in 1..=3 {
            let d = sagas(&host, busi.clone(), concurrency, seconds, "direct").await;
            print(&format!("round {round}: host:port URLs"), &d);
            let e = sagas(&host, trans_rpc.clone(), concurrency, seconds, "etcd").await;
            print(&format!("round {round}: etcd:// URLs"), &e);
            direct.push(d);
            through_etcd.push(e);
        }
        let (d, e) = (median_tps(&direct), median_tps(&through_etcd));
        println!("median TPS: host:port {d:.0}, etcd:// {e:.0}; ratio etcd/direct {:.3}", e / d);
    });
}
