//! `cargo bench --bench drivers`: what a microservice driver costs. Per call: splitting a URL
//! with the built-in driver, through the wasm `protocol1` driver, and through the host's parse
//! cache; resolving through wasm. Start-up: loading the wasm driver cold (compiling) against
//! loading it from the compiled-artifact cache. Builds `guest-drivers/` first if needed.
//!
//! Then what the driver's language costs: the same driver in Rust, JavaScript and Go
//! (`protocol1`), and in Rust and in Python (`gozero`), side by side: component size, first
//! load (compile), load from the compiled-artifact cache, and per-call time of
//! `parse-server-method` and `resolve` (on inputs that need no registry). The Python,
//! JavaScript and Go drivers are built by tests/common/polyglot.rs; without their tools a row says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../tests/common/mod.rs"]
mod common;

use common::polyglot::{self, Lang};
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

/// Median time to load `path` with an empty compile cache (so: compiling it), over `runs`.
fn cold_load(path: &std::path::Path, runs: usize) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let cache = tempfile::tempdir().unwrap();
                let start = Instant::now();
                load(path, cache.path());
                start.elapsed()
            })
            .collect(),
    )
}

/// Median time to load `path` from the compiled artifact in `cache` (filled first).
fn cached_load(path: &std::path::Path, cache: &std::path::Path) -> Duration {
    load(path, cache);
    median(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                load(path, cache);
                start.elapsed()
            })
            .collect(),
    )
}

fn load(path: &std::path::Path, cache: &std::path::Path) -> WasmDriver {
    WasmDriver::load(
        path,
        Default::default(),
        Default::default(),
        Default::default(),
        Some(cache),
    )
    .unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

fn main() {
    let wasm = common::guest_wasm("protocol1");
    let url = "protocol1:///127.0.0.1:36790/dtmgimp.Dtm/NewGid";
    let plain = "127.0.0.1:36790/dtmgimp.Dtm/NewGid";

    let cold = cold_load(&wasm, 5);
    let cache = tempfile::tempdir().unwrap();
    let warm = cached_load(&wasm, cache.path());
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

    language_costs(&runtime);
}

/// One driver in one language, with the inputs its calls are timed on.
struct Subject {
    driver: &'static str,
    lang: &'static str,
    wasm: Option<std::path::PathBuf>,
    uri: &'static str,
    server: &'static str,
}

fn language_costs(runtime: &tokio::runtime::Runtime) {
    let protocol1 = (
        "protocol1:///127.0.0.1:36790/dtmgimp.Dtm/NewGid",
        "protocol1:///127.0.0.1:36790",
    );
    let gozero = (
        "etcd://127.0.0.1:2379/trans.rpc/busi.Busi/TransOut",
        "direct:///127.0.0.1:36790,127.0.0.1:36791",
    );
    let subject = |driver, lang, wasm, (uri, server): (&'static str, &'static str)| Subject {
        driver,
        lang,
        wasm,
        uri,
        server,
    };
    let subjects = [
        subject(
            "protocol1",
            "Rust",
            Some(common::guest_wasm("protocol1")),
            protocol1,
        ),
        subject(
            "protocol1",
            "JavaScript",
            polyglot::build(Lang::JavaScript, "protocol1"),
            protocol1,
        ),
        subject(
            "protocol1",
            "Go",
            polyglot::build(Lang::Go, "protocol1"),
            protocol1,
        ),
        subject("gozero", "Rust", Some(common::guest_wasm("gozero")), gozero),
        subject(
            "gozero",
            "Python",
            polyglot::build(Lang::Python, "gozero"),
            gozero,
        ),
    ];
    println!();
    println!("what the driver's language costs (medians; cold: 3 compiles, cached: 5 loads, calls: 7 runs)");
    println!(
        "{:<10} {:<10} {:>10} {:>12} {:>12} {:>14} {:>14}",
        "driver",
        "language",
        "size KiB",
        "cold load ms",
        "cached ms",
        "parse ns/call",
        "resolve ns/call"
    );
    for subject in &subjects {
        let Some(wasm) = &subject.wasm else {
            println!(
                "{:<10} {:<10} skipped: the language's build tools are not installed",
                subject.driver, subject.lang
            );
            continue;
        };
        let size = std::fs::metadata(wasm).map_or(0, |m| m.len());
        let cold = cold_load(wasm, 3);
        let cache = tempfile::tempdir().unwrap();
        let cached = cached_load(wasm, cache.path());
        let driver = load(wasm, cache.path());
        let parse = per_call(7, 2_000, || {
            std::hint::black_box(
                driver
                    .parse_server_method(std::hint::black_box(subject.uri))
                    .unwrap(),
            );
        });
        let resolve = runtime.block_on(async {
            let mut samples = Vec::new();
            for _ in 0..7 {
                let start = Instant::now();
                for _ in 0..500 {
                    std::hint::black_box(driver.resolve(subject.server).await.unwrap());
                }
                samples.push(start.elapsed() / 500);
            }
            median(samples)
        });
        println!(
            "{:<10} {:<10} {:>10.0} {:>12.1} {:>12.2} {:>14.0} {:>14.0}",
            subject.driver,
            subject.lang,
            size as f64 / 1024.0,
            cold.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3,
            parse.as_nanos(),
            resolve.as_nanos()
        );
    }
}
