//! Drivers written in Python (componentize-py), JavaScript (ComponentizeJS) and Go (the Go
//! toolchain, wasm-tools and WASI's reactor adapter), built from source here, against the real
//! binary: `guest-drivers-py/gozero` resolves go-zero's etcd layout through `send-http` (real
//! etcd), `guest-drivers-js/protocol1` and `guest-drivers-go/protocol1` split and resolve
//! protocol1 URLs; each passes `driver check` for its name, serves a saga end to end and is
//! hot-reloaded. Hostile variants in each language (a loop, a memory bomb) are stopped the way
//! the Rust hostile driver is (tests/drivers.rs).
//!
//! tests/common/polyglot.rs builds them (tools pinned and installed under `target/polyglot/`).
//! Without python3 / node and npm / go the tests are skipped (`CI=true`: they fail naming the
//! package to install).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::driver::{
    check_vectors, hostile_calls_fail_alone, hostile_host, one_step_saga, saga_succeeds,
    wasm_vectors_pass,
};
use common::etcd::Etcd;
use common::grpc::GrpcBusi;
use common::polyglot::{build, note, Lang};
use common::{free_port, Host};
use dtm_host::drivers::sha256_hex;
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use serde_json::json;

const RELOADED: &str = r#""message":"microservice driver reloaded""#;

/// `driver check --vectors` passes for `wasm`, whose vectors are those of `driver`.
fn vectors_pass(wasm: &Path, driver: &str) {
    let started = Instant::now();
    let output = wasm_vectors_pass(wasm);
    assert!(output.contains(&format!("{driver}: ")), "{output}");
    note(&format!(
        "driver check {driver}: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

/// Compiles `wasm` (driver `driver`) into the tests' shared compile cache, so a host started
/// next loads it at once: a debug build's wasmtime needs minutes for a component that embeds
/// CPython or SpiderMonkey, longer than `Host::start_with` waits for a host to serve. Starts
/// the binary with the driver and stops it once the driver is loaded.
async fn precompile(wasm: &Path, driver: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("host.log");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtm-host"))
        .env("HTTP_PORT", free_port().to_string())
        .env("GRPC_PORT", free_port().to_string())
        .env("STORE_DATA_DIR", dir.path().join("data"))
        .env("LOG_OUTPUTS", &log)
        .env("MICRO_SERVICE_DRIVER", driver)
        .env("MICRO_SERVICE_DRIVER_PATH", wasm)
        .env("MICRO_SERVICE_DRIVER_CACHE_DIR", common::driver_cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dtm-host");
    let deadline = started + Duration::from_secs(1800);
    let loaded = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("wasm driver loaded")) {
            break line.contains(r#""cached":true"#);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dtm-host exited ({status}) before loading {driver}:\n{text}");
        }
        assert!(Instant::now() < deadline, "{driver} did not load in 30 min");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    if !loaded {
        note(&format!(
            "compiled {} ({driver}) in {:.1} s",
            wasm.display(),
            started.elapsed().as_secs_f64()
        ));
    }
}

/// `wasm` with a custom section named `tag` appended: another build of the same driver, with
/// a different SHA-256 (always the same one for a tag, so the compile cache serves reruns).
fn build_of(wasm: &[u8], tag: &str) -> Vec<u8> {
    assert!(tag.len() < 64, "one-byte LEB128 lengths");
    let mut out = wasm.to_vec();
    out.extend_from_slice(&[0, 1 + tag.len() as u8, tag.len() as u8]);
    out.extend_from_slice(tag.as_bytes());
    out
}

/// Replaces `path` the atomic way: a new file renamed over it.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("wasm.tmp");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A copy of `wasm` in a directory of its own, for the host to load and the test to replace.
fn driver_file(wasm: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driver.wasm");
    std::fs::copy(wasm, &path).unwrap();
    (dir, path)
}

/// Waits until a log line contains every one of `needles`.
async fn wait_for_log(host: &Host, needles: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host
        .log()
        .lines()
        .any(|line| needles.iter().all(|n| line.contains(n)))
    {
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}; log:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replaces the host's driver file with another build of it and waits for the reload.
async fn reload_by_file_change(host: &Host, path: &Path, driver: &str, tag: &str) {
    let next = build_of(&std::fs::read(path).unwrap(), tag);
    let sha = format!(r#""sha256":"{}""#, sha256_hex(&next));
    let staged = path.with_extension("next.wasm");
    std::fs::write(&staged, &next).unwrap();
    precompile(&staged, driver).await;
    let started = Instant::now();
    replace_atomically(path, &next);
    wait_for_log(host, &[RELOADED, r#""trigger":"file change""#, &sha]).await;
    note(&format!(
        "reloaded after a file change in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

/// The protocol1 driver in `lang` passes its vectors, serves sagas through
/// `protocol1:///host:port` and goes on serving after a reload by file change and one through
/// the admin API. Sagas are `<gid>-before`, `<gid>-after` and `<gid>-admin`.
async fn protocol1_driver_checks_serves_sagas_and_reloads(lang: Lang, gid: &str) {
    let Some(wasm) = build(lang, "protocol1") else {
        return;
    };
    const DRIVER: &str = "dtm-driver-protocol1";
    precompile(&wasm, DRIVER).await;
    vectors_pass(&wasm, DRIVER);

    let (_dir, path) = driver_file(&wasm);
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", DRIVER),
        ("MICRO_SERVICE_DRIVER_PATH", path.to_str().unwrap()),
    ])
    .await;
    let busi = GrpcBusi::start().await;
    let url_of = |method: &str| format!("protocol1:///{}{method}", busi.server);
    saga_succeeds(&host, &busi, &format!("{gid}-before"), url_of).await;

    reload_by_file_change(&host, &path, DRIVER, "polyglot-reload").await;
    saga_succeeds(&host, &busi, &format!("{gid}-after"), url_of).await;
    let (status, body) = {
        let r = host
            .http
            .post(host.url("/api/admin/drivers/reload"))
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["driver"], DRIVER);
    assert_eq!(body["schemes"], json!(["protocol1"]));
    saga_succeeds(&host, &busi, &format!("{gid}-admin"), url_of).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_protocol1_driver_checks_serves_sagas_and_reloads() {
    protocol1_driver_checks_serves_sagas_and_reloads(Lang::JavaScript, "js").await;
}

/// The Go driver (canonical ABI by hand, guest-drivers-go/driver/abi.go) the same way, then
/// through many calls of one instance (see [`many_calls_pass`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_protocol1_driver_checks_serves_sagas_and_reloads() {
    protocol1_driver_checks_serves_sagas_and_reloads(Lang::Go, "go").await;
    if let Some(wasm) = build(Lang::Go, "protocol1") {
        many_calls_pass(&wasm, 40_000);
    }
}

/// `driver check` passes `calls` protocol1 vectors of distinct URLs in one instance: enough
/// for Go's heap to grow past its first 4 MiB and be collected several times. A hand-written
/// ABI that got memory wrong (a page shared with the WASI adapter, an allocation in
/// `cabi_realloc` that reads the clock) passed the three real vectors and sagas, and failed
/// here once every 10,000 to 18,000 calls.
fn many_calls_pass(wasm: &Path, calls: usize) {
    let cases: Vec<_> = (0..calls)
        .map(|i| {
            json!({
                "driver": "dtm-driver-protocol1",
                "uri": format!("protocol1:///127.0.0.1:36790/dtmgimp.Dtm/Call{i}"),
                "server": "protocol1:///127.0.0.1:36790",
                "method": format!("/dtmgimp.Dtm/Call{i}"),
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("many.json");
    std::fs::write(&vectors, serde_json::to_vec(&cases).unwrap()).unwrap();
    let started = Instant::now();
    // What is checked is memory, not time: check_vectors leaves room for a loaded machine.
    let (succeeded, output) = check_vectors(wasm, &vectors);
    let passed = format!("dtm-driver-protocol1: {calls} passed, 0 failed");
    assert!(succeeded && output.contains(&passed), "{output}");
    note(&format!(
        "{calls} calls in one instance: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

/// The Python gozero driver registers the coordinator in a real etcd (`dtmservice/<lease>`),
/// resolves `etcd://…/trans.rpc` to the business service registered there, moves its
/// registration on reload and removes it on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_gozero_driver_checks_resolves_through_etcd_and_reloads() {
    let Some(wasm) = build(Lang::Python, "gozero") else {
        return;
    };
    const DRIVER: &str = "dtm-driver-gozero";
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    precompile(&wasm, DRIVER).await;
    vectors_pass(&wasm, DRIVER);
    let busi = GrpcBusi::start().await;
    let lease = etcd.grant(120).await;
    etcd.put(&format!("trans.rpc/{lease}"), &busi.server, Some(&lease))
        .await;

    let (_dir, path) = driver_file(&wasm);
    let grpc_port = free_port();
    let endpoint = format!("127.0.0.1:{grpc_port}");
    let target = format!("etcd://{}/dtmservice", etcd.address());
    let mut host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", DRIVER),
        ("MICRO_SERVICE_DRIVER_PATH", path.to_str().unwrap()),
        ("MICRO_SERVICE_TARGET", &target),
        ("MICRO_SERVICE_END_POINT", &endpoint),
        ("GRPC_PORT", &grpc_port.to_string()),
    ])
    .await;
    let registered = etcd
        .wait_prefix("dtmservice/", 10, |kvs| kvs.len() == 1)
        .await;
    let (first_key, value) = registered[0].clone();
    assert_eq!(value, endpoint);
    let first_lease = first_key.strip_prefix("dtmservice/").unwrap().to_owned();
    assert!(first_lease.parse::<i64>().is_ok(), "{first_key}");
    let answer = etcd
        .call("lease/timetolive", json!({"ID": first_lease}))
        .await;
    assert_eq!(answer["grantedTTL"], "10", "{answer}");

    let url_of = |method: &str| format!("etcd://{}/trans.rpc{method}", etcd.address());
    saga_succeeds(&host, &busi, "py-before", url_of).await;

    // The reload moves the registration: the old driver revokes its lease, the new one
    // registers under a new lease; the new driver resolves the branches.
    reload_by_file_change(&host, &path, DRIVER, "polyglot-reload").await;
    etcd.wait_prefix("dtmservice/", 10, |kvs| {
        kvs.len() == 1 && kvs[0].0 != first_key && kvs[0].1 == endpoint
    })
    .await;
    saga_succeeds(&host, &busi, "py-after", url_of).await;

    assert!(host.terminate().await.success(), "{}", host.log());
    assert!(
        etcd.get_prefix("dtmservice/").await.is_empty(),
        "deregistered on SIGTERM"
    );
}

/// A hostile driver in `lang` stopped as the Rust one is (tests/drivers.rs): a loop runs out
/// of time, a memory bomb fails in the sandbox; both are refused at submit with
/// `InvalidArgument` and stored nothing, while sagas through the same driver go on.
async fn hostile_driver_is_stopped(lang: Lang) {
    let Some(wasm) = build(lang, "hostile") else {
        return;
    };
    precompile(&wasm, "dtm-driver-hostile").await;
    let host = hostile_host(&wasm).await;
    let busi = GrpcBusi::start().await;
    // The memory cap stops the bomb either way; CPython and Go's runtime abort (a trap),
    // SpiderMonkey reports its failed allocation as an exception, which ComponentizeJS returns
    // as the call's error.
    let grow = match lang {
        Lang::Python => "failed in the sandbox",
        Lang::JavaScript => "out of memory",
        Lang::Go => "failed in the sandbox",
    };
    let expected = [("loop", "ran out of time (100 ms)"), ("grow", grow)];
    hostile_calls_fail_alone(&host, &busi, 10, &expected).await;
    // The driver still serves afterwards (an instance that failed was replaced).
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let after = one_step_saga("fine-after", busi.url("/busi.Busi/TransOut"));
    dtm.submit(after).await.unwrap();
    assert_eq!(host.status("fine-after").await, "succeed");
    assert_eq!(busi.calls("/busi.Busi/TransOut").len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_javascript_driver_is_stopped_like_the_rust_one() {
    hostile_driver_is_stopped(Lang::JavaScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_python_driver_is_stopped_like_the_rust_one() {
    hostile_driver_is_stopped(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_go_driver_is_stopped_like_the_rust_one() {
    hostile_driver_is_stopped(Lang::Go).await;
}
