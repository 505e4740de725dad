//! Applications built on go-zero and on kratos, using dtm's Go SDK (`dtmgrpc`) with dtm's
//! driver for their framework, against the real binary registered in a real etcd by its wasm
//! driver. The Go tests in `tests/go-frameworks` run the business service on the framework
//! itself (a go-zero zrpc server; a kratos app with its etcd registry), registered in etcd by
//! the framework; the application finds dtm-host through etcd and submits sagas and msgs whose
//! branches are registry URLs that dtm-host resolves through its driver. They check what a user
//! sees: balances queried from the service over gRPC and the final status from the query API,
//! also when the service is stopped (SIGTERM) and started again on the same port while
//! transactions wait for it.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::etcd::Etcd;
use common::{free_port, guest_wasm, Host};
use test_servers::Program;

/// The oldest Go the module's dependencies build with (go-zero 1.7 and kratos 2.8 need 1.21).
const GO_MINOR: u32 = 21;

/// Go's minor version (`go1.26.8` → 26), 0 when unknown.
fn go_minor(go: &Path) -> u32 {
    let output = Command::new(go).args(["env", "GOVERSION"]).output();
    let version = output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    version
        .strip_prefix("go1.")
        .and_then(|rest| rest.split(['.', 'r']).next()?.parse().ok())
        .unwrap_or(0)
}

/// A Go new enough for the module: the first `go` found, else the machines' `/usr/local/go`
/// (Debian's `golang-go` 1.19 is too old). `None`: skipped (panics under `CI=true`).
fn go() -> Option<PathBuf> {
    let found = Program::GO.require()?;
    let local = PathBuf::from("/usr/local/go/bin/go");
    for go in [found.clone(), local] {
        if go.exists() && go_minor(&go) >= GO_MINOR {
            return Some(go);
        }
    }
    let what = format!(
        "{} is older than Go 1.{GO_MINOR}, which go-zero and kratos need (install Go 1.{GO_MINOR} \
         or newer in /usr/local/go)",
        found.display()
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{what}");
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {what}");
    None
}

/// The Go tests, compiled once per run.
fn go_tests(go: &Path) -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| common::go::build_tests(go, "go-frameworks"))
}

/// How dtm-host is set up for one framework's driver.
struct Framework {
    /// The Go test (`-test.run`) of the application.
    test: &'static str,
    /// `MicroService.Driver`, and the guest crate that implements it.
    driver: &'static str,
    crate_name: &'static str,
    /// `MicroService.EndPoint`; `{GRPC_PORT}` is the host's gRPC port.
    endpoint: &'static str,
    /// Where the driver registers dtm-host in etcd (the keys under it).
    registered_under: &'static str,
}

/// Starts etcd and dtm-host with `framework`'s driver registered in it, and runs the Go test
/// against them; returns at once (skipped) when Go or etcd is not installed.
async fn run(framework: Framework) {
    let Some(go) = go() else {
        return;
    };
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let binary = go_tests(&go);
    let wasm = guest_wasm(framework.crate_name);
    let target = format!("etcd://{}/dtmservice", etcd.address());
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", framework.driver),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_TARGET", &target),
        ("MICRO_SERVICE_END_POINT", framework.endpoint),
    ])
    .await;
    let kvs = etcd
        .wait_prefix(framework.registered_under, 10, |kvs| kvs.len() == 1)
        .await;
    let endpoint = framework
        .endpoint
        .replace("{GRPC_PORT}", &host.grpc_port.to_string());
    assert!(
        kvs[0].1.contains(&endpoint),
        "dtm-host registered {kvs:?}, not {endpoint}"
    );

    let data = tempfile::tempdir().unwrap();
    let env = [
        ("GOFW_ETCD", etcd.address()),
        ("GOFW_DTM_HTTP", host.api("")),
        // Below the ephemeral range, so it is still free when the service starts again.
        ("GOFW_BANK_PORT", free_port().to_string()),
        ("GOFW_DATA", data.path().display().to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let pattern = format!("^{}$", framework.test);
    let output = common::go::run_tests(binary, "go-frameworks", &pattern, &env, &host).await;
    assert!(
        output.contains(&format!("--- PASS: {}", framework.test)),
        "{} did not run:\n{output}",
        framework.test
    );
}

#[tokio::test]
async fn a_go_zero_app_runs_sagas_and_msgs_on_a_zrpc_service_found_through_etcd() {
    run(Framework {
        test: "TestGoZero",
        driver: "dtm-driver-gozero",
        crate_name: "gozero",
        endpoint: "127.0.0.1:{GRPC_PORT}",
        registered_under: "dtmservice/",
    })
    .await;
}

#[tokio::test]
async fn a_kratos_app_runs_sagas_and_msgs_on_a_service_found_through_kratos_discovery() {
    run(Framework {
        test: "TestKratos",
        driver: "dtm-driver-kratos",
        crate_name: "kratos",
        endpoint: "grpc://127.0.0.1:{GRPC_PORT}",
        registered_under: "/microservices/dtmservice/",
    })
    .await;
}
