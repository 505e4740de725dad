//! Drivers written in Python (componentize-py) and JavaScript (ComponentizeJS), built from
//! source here, against the real binary: `guest-drivers-py/gozero` resolves go-zero's etcd
//! layout through `send-http` (real etcd), `guest-drivers-js/protocol1` splits and resolves
//! protocol1 URLs; each passes `driver check` for its name, serves a saga end to end and is
//! hot-reloaded. Hostile variants in both languages (a loop, a memory bomb) are stopped the way
//! the Rust hostile driver is (tests/drivers.rs).
//!
//! The build tools are installed by the tests, at pinned versions, under `target/polyglot/`
//! (a venv for componentize-py, an npm prefix for ComponentizeJS); a built `.wasm` is kept in
//! `target/polyglot/built/`, named by the hash of its sources, the contract and the tool, so a
//! rerun builds nothing. Without python3 / node and npm the tests are skipped (`CI=true`: they
//! fail naming the package to install).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::driver::{hostile_calls_fail_alone, hostile_host, one_step_saga};
use common::etcd::Etcd;
use common::grpc::GrpcBusi;
use common::{free_port, run_to_exit, Host};
use dtm_host::drivers::sha256_hex;
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use serde_json::json;
use test_servers::Program;

/// The tool versions the drivers are built with.
const COMPONENTIZE_PY: &str = "0.25.1";
const COMPONENTIZE_JS: &str = "0.23.0";

const RELOADED: &str = r#""message":"microservice driver reloaded""#;

#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    JavaScript,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tools_dir() -> PathBuf {
    repo().join("target/polyglot")
}

/// A line past the harness's output capture: build times are worth seeing.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "polyglot: {line}");
}

/// Runs `command`; panics with its output, naming `what`, unless it succeeds.
fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `componentize-py` at [`COMPONENTIZE_PY`], installed into `target/polyglot/py` (a venv) on
/// first use; `None` when python3 is missing (skip).
fn componentize_py() -> Option<PathBuf> {
    let python = Program::PYTHON.require()?;
    static SETUP: Mutex<()> = Mutex::new(());
    let _once = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let venv = tools_dir().join("py");
    let tool = venv.join("bin/componentize-py");
    let installed = Command::new(&tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim_end()
                .ends_with(COMPONENTIZE_PY)
        });
    if !installed {
        let started = Instant::now();
        run(
            Command::new(python).args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (Debian: apt-get install python3-venv)",
        );
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
            "pip install componentize-py",
        );
        note(&format!(
            "installed componentize-py {COMPONENTIZE_PY} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Some(tool)
}

/// ComponentizeJS's CLI at [`COMPONENTIZE_JS`], installed with npm under `target/polyglot/node`
/// on first use; `None` when node or npm is missing (skip).
fn componentize_js() -> Option<PathBuf> {
    Program::NODE.require()?;
    let npm = Program::NPM.require()?;
    static SETUP: Mutex<()> = Mutex::new(());
    let _once = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = tools_dir().join("node");
    let package = prefix.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let installed = std::fs::read_to_string(&package)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|p| p["version"] == COMPONENTIZE_JS);
    if !installed {
        let started = Instant::now();
        std::fs::create_dir_all(&prefix).unwrap();
        run(
            Command::new(npm)
                .current_dir(&prefix)
                .args(["install", "--no-audit", "--no-fund", "--save-exact"])
                .arg(format!(
                    "@bytecodealliance/componentize-js@{COMPONENTIZE_JS}"
                )),
            "npm install @bytecodealliance/componentize-js",
        );
        note(&format!(
            "installed componentize-js {COMPONENTIZE_JS} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Some(prefix.join("node_modules/.bin/componentize-js"))
}

/// The files of a driver's source directory (build output and caches aside), sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["node_modules", "__pycache__"].contains(&name.as_str()) || name.ends_with(".wasm") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The component of driver `name` in `lang` (`guest-drivers-py/<name>` or
/// `guest-drivers-js/<name>`): built on first use, then taken from `target/polyglot/built/`
/// while its sources, the contract and the tool version are unchanged. `None`: the language's
/// tools are missing (skip).
fn build(lang: Lang, name: &str) -> Option<PathBuf> {
    let (tool, src, version) = match lang {
        Lang::Python => (
            componentize_py()?,
            repo().join("guest-drivers-py").join(name),
            format!("componentize-py {COMPONENTIZE_PY}"),
        ),
        Lang::JavaScript => (
            componentize_js()?,
            repo().join("guest-drivers-js").join(name),
            format!("componentize-js {COMPONENTIZE_JS}"),
        ),
    };
    let wit = repo().join("wit");
    let mut key = Vec::from(version.as_bytes());
    for file in sources(&src).into_iter().chain(sources(&wit)) {
        key.extend_from_slice(
            file.strip_prefix(repo())
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        key.push(0);
        key.extend_from_slice(&std::fs::read(&file).unwrap());
        key.push(0);
    }
    let lang_name = format!("{lang:?}").to_lowercase();
    let built = tools_dir().join("built");
    let out = built.join(format!(
        "{lang_name}-{name}-{}.wasm",
        &sha256_hex(&key)[..16]
    ));
    if out.exists() {
        note(&format!(
            "{lang_name} {name}: cached build {}",
            out.display()
        ));
        return Some(out);
    }
    std::fs::create_dir_all(&built).unwrap();
    let temporary = out.with_extension(format!("{}.tmp", std::process::id()));
    let started = Instant::now();
    let mut command = match lang {
        Lang::Python => {
            let mut command = Command::new(&tool);
            command
                .env_remove("VIRTUAL_ENV")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .arg("-d")
                .arg(&wit)
                .args(["-w", "driver", "componentize", "-p"])
                .arg(&src)
                .arg("app")
                .arg("-o")
                .arg(&temporary);
            command
        }
        Lang::JavaScript => {
            let mut command = Command::new(&tool);
            command
                .arg(src.join("driver.js"))
                .arg("--wit")
                .arg(&wit)
                .args(["-n", "driver", "-o"])
                .arg(&temporary)
                // No WASI at all: the driver needs only the contract's imports.
                .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"]);
            command
        }
    };
    run(&mut command, &format!("building {lang_name} driver {name}"));
    std::fs::rename(&temporary, &out).unwrap();
    note(&format!(
        "{lang_name} {name}: built in {:.1} s, {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&out).unwrap().len()
    ));
    Some(out)
}

/// `dtm-host driver check <wasm> --vectors tests/data/parse-vectors.json`: every vector for
/// `driver` passes, and there is at least one.
fn vectors_pass(wasm: &Path, driver: &str) {
    let started = Instant::now();
    let (status, output) = run_to_exit(
        &[],
        &[
            "driver",
            "check",
            wasm.to_str().unwrap(),
            "--vectors",
            common::driver::VECTORS,
            // The compile the test's hosts share (`precompile`), and room for a debug build
            // on a loaded machine: what is checked here is the parsing, not the time limit.
            "--cache-dir",
            common::driver_cache_dir().to_str().unwrap(),
            "--timeout-ms",
            "5000",
        ],
    );
    assert!(status.success(), "{driver}: {output}");
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::driver::VECTORS).unwrap()).unwrap();
    let cases = vectors
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["driver"] == driver)
        .count();
    assert!(cases > 0, "no vectors for {driver}");
    assert!(
        output.contains(&format!("{driver}: {cases} passed, 0 failed")),
        "{output}"
    );
    note(&format!(
        "driver check {driver}: {cases} passed in {:.1} s",
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

/// Submits a waiting saga of two gRPC branches at `url_of(method)` to the host's gRPC API at
/// `grpc` (`host:port`; a test may have moved it with `GRPC_PORT`); it succeeds, and `busi` got
/// both actions with the saga's gid.
async fn saga_succeeds(
    host: &Host,
    grpc: &str,
    busi: &GrpcBusi,
    gid: &str,
    url_of: impl Fn(&str) -> String,
) {
    let mut dtm = DtmClient::connect(format!("http://{grpc}")).await.unwrap();
    let outcome = dtm.submit(common::driver::saga(gid, url_of)).await;
    assert!(outcome.is_ok(), "{gid}: {outcome:?}\n{}", host.log());
    assert_eq!(host.status(gid).await, "succeed", "{}", host.log());
    for method in ["/busi.Busi/TransOut", "/busi.Busi/TransIn"] {
        let calls = busi.calls(method);
        assert!(
            calls.iter().any(|call| call.metadata["dtm-gid"] == gid),
            "{method} was not called for {gid}: {calls:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_protocol1_driver_checks_serves_sagas_and_reloads() {
    let Some(wasm) = build(Lang::JavaScript, "protocol1") else {
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
    let grpc = format!("127.0.0.1:{}", host.grpc_port);
    let busi = GrpcBusi::start().await;
    let url_of = |method: &str| format!("protocol1:///{}{method}", busi.server);
    saga_succeeds(&host, &grpc, &busi, "js-before", url_of).await;

    reload_by_file_change(&host, &path, DRIVER, "polyglot-reload").await;
    saga_succeeds(&host, &grpc, &busi, "js-after", url_of).await;
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
    saga_succeeds(&host, &grpc, &busi, "js-admin", url_of).await;
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
    saga_succeeds(&host, &endpoint, &busi, "py-before", url_of).await;

    // The reload moves the registration: the old driver revokes its lease, the new one
    // registers under a new lease; the new driver resolves the branches.
    reload_by_file_change(&host, &path, DRIVER, "polyglot-reload").await;
    etcd.wait_prefix("dtmservice/", 10, |kvs| {
        kvs.len() == 1 && kvs[0].0 != first_key && kvs[0].1 == endpoint
    })
    .await;
    saga_succeeds(&host, &endpoint, &busi, "py-after", url_of).await;

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
    // The memory cap stops the bomb either way; CPython aborts (a trap), SpiderMonkey reports
    // its failed allocation as an exception, which ComponentizeJS returns as the call's error.
    let grow = match lang {
        Lang::Python => "failed in the sandbox",
        Lang::JavaScript => "out of memory",
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
