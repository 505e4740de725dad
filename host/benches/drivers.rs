//! `cargo bench --bench drivers`: what a microservice driver costs. Per call: splitting a URL
//! with the built-in driver, through the wasm `protocol1` driver, and through the host's parse
//! cache; resolving through wasm. Start-up: loading the wasm driver cold (compiling) against
//! loading it from the compiled-artifact cache. Builds `guest-drivers/` first if needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../tests/common/mod.rs"]
mod common;

use dtm_host::call::grpc::GrpcCaller;
use dtm_host::drivers::{DefaultDriver, Driver, WasmDriver};

/// Median of `runs` timings of `n` calls, per call.
fn per_call(runs: usize, n: u32, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n
        })
        .collect();
    samples.sort();
    samples[runs / 2]
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn load(path: &std::path::Path, cache: &std::path::Path) -> WasmDriver {
    WasmDriver::load(
        path,
        Default::default(),
        Default::default(),
        Default::default(),
        Some(cache),
    )
    .expect("load protocol1")
}

fn main() {
    let wasm = common::guest_wasm("protocol1");
    let url = "protocol1:///127.0.0.1:36790/dtmgimp.Dtm/NewGid";
    let plain = "127.0.0.1:36790/dtmgimp.Dtm/NewGid";

    let cold = median(
        (0..5)
            .map(|_| {
                let cache = tempfile::tempdir().unwrap();
                let start = Instant::now();
                load(&wasm, cache.path());
                start.elapsed()
            })
            .collect(),
    );
    let cache = tempfile::tempdir().unwrap();
    load(&wasm, cache.path());
    let warm = median(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                load(&wasm, cache.path());
                start.elapsed()
            })
            .collect(),
    );
    println!(
        "driver load, cold (compile):      {:>10.2} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "driver load, cached artifact:     {:>10.2} ms   ({:.0}x faster)",
        warm.as_secs_f64() * 1e3,
        cold.as_secs_f64() / warm.as_secs_f64()
    );

    let native = DefaultDriver::default();
    let wasm_driver: Arc<dyn Driver> = Arc::new(load(&wasm, cache.path()));
    let native_ns = per_call(7, 1_000_000, || {
        std::hint::black_box(
            native
                .parse_server_method(std::hint::black_box(plain))
                .unwrap(),
        );
    });
    let wasm_ns = per_call(7, 100_000, || {
        std::hint::black_box(
            wasm_driver
                .parse_server_method(std::hint::black_box(url))
                .unwrap(),
        );
    });
    let plain_wasm_ns = per_call(7, 100_000, || {
        std::hint::black_box(
            wasm_driver
                .parse_server_method(std::hint::black_box(plain))
                .unwrap(),
        );
    });
    println!(
        "parse-server-method, wasm, plain host:port URL: {:>6.0} ns/call",
        plain_wasm_ns.as_nanos()
    );
    let caller = GrpcCaller::new(wasm_driver.clone(), Default::default(), Default::default());
    let cached_ns = per_call(7, 1_000_000, || {
        std::hint::black_box(caller.server_method(std::hint::black_box(url)).unwrap());
    });
    println!(
        "parse-server-method, native:      {:>10.0} ns/call",
        native_ns.as_nanos()
    );
    println!(
        "parse-server-method, wasm:        {:>10.0} ns/call",
        wasm_ns.as_nanos()
    );
    println!(
        "parse-server-method, host cache:  {:>10.0} ns/call",
        cached_ns.as_nanos()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let resolve = runtime.block_on(async {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..2_000 {
                std::hint::black_box(
                    wasm_driver
                        .resolve("protocol1:///127.0.0.1:36790")
                        .await
                        .unwrap(),
                );
            }
            samples.push(start.elapsed() / 2_000);
        }
        median(samples)
    });
    println!(
        "resolve, wasm (blocking thread):  {:>10.0} ns/call",
        resolve.as_nanos()
    );
    println!("per gRPC saga the host parses 2 branch URLs (cached): {:.0} ns; compare with the gRPC saga p50 of `cargo bench --bench saga`", 2.0 * cached_ns.as_nanos() as f64);
}
