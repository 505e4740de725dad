//! Microservice drivers as wasm components, against the real binary: conformance, the
//! sandbox's limits with hostile guests, resolution through a driver, and the compile cache.

mod common;

use std::time::Duration;

use axum::response::IntoResponse;
use common::driver::{hostile_calls_fail_alone, hostile_host, one_step_saga, VECTORS};
use common::grpc::GrpcBusi;
use common::{guest_wasm, run_to_exit, Busi, Host};
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use tonic::Code;

/// Every dtm driver passes all of its cases in docs/drivers.md §8's vectors (dapr's with the
/// environment variables they name), and each driver has some.
#[test]
fn driver_check_runs_the_conformance_vectors() {
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let guests = [
        "protocol1",
        "gozero",
        "kratos",
        "sponge",
        "ego",
        "polaris",
        "dapr",
        "springcloud",
    ]
    .map(|name| guest_wasm(name).to_string_lossy().into_owned());
    for driver in guests.iter().map(String::as_str).chain(["default"]) {
        let (status, output) = run_to_exit(&[], &["driver", "check", driver, "--vectors", VECTORS]);
        assert!(status.success(), "{output}");
        let name = output
            .lines()
            .last()
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap();
        let cases = vectors
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["driver"] == name)
            .count();
        assert!(cases > 0, "no vectors for {name}");
        assert!(
            output.contains(&format!("{name}: {cases} passed, 0 failed")),
            "{output}"
        );
    }
    let (status, output) = run_to_exit(
        &[],
        &[
            "driver",
            "check",
            guest_wasm("hostile").to_str().unwrap(),
            "--vectors",
            VECTORS,
        ],
    );
    assert!(
        status.success(),
        "no vectors name the hostile driver: {output}"
    );
    assert!(output.contains("0 passed, 0 failed"), "{output}");
}

/// The guest crates' own unit tests (URL rules, registry request bodies, protobuf rewriting),
/// run natively: they live in their own workspace, which `cargo test --workspace` here does not
/// reach by itself.
#[test]
fn guest_crates_pass_their_unit_tests() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-drivers/Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args(["test", "--workspace", "--manifest-path", manifest])
        .output()
        .expect("run cargo test for the guest crates");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("test result: ok"), "{report}");
}

#[test]
fn driver_inspect_describes_a_component() {
    let (status, output) = run_to_exit(
        &[],
        &[
            "driver",
            "inspect",
            guest_wasm("protocol1").to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{output}");
    for line in [
        "name:     dtm-driver-protocol1",
        "schemes:  protocol1",
        "contract: dtm:driver@0.2.0",
        "parse-server-method",
    ] {
        assert!(output.contains(line), "{line} missing in {output}");
    }
    let not_a_component = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_component.path(), b"\0asm\x01\0\0\0").unwrap();
    let (status, output) = run_to_exit(
        &[],
        &[
            "driver",
            "inspect",
            not_a_component.path().to_str().unwrap(),
        ],
    );
    assert!(!status.success());
    assert!(output.contains("not a WebAssembly component"), "{output}");
}

#[test]
fn a_driver_whose_name_differs_is_refused_at_start() {
    let wasm = guest_wasm("protocol1");
    let env = [
        ("MICRO_SERVICE_DRIVER", "dtm-driver-gozero"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
    ];
    let (status, output) = run_to_exit(&env, &[]);
    assert!(!status.success());
    assert!(
        output.contains(
            "is named 'dtm-driver-protocol1', but MicroService.Driver is 'dtm-driver-gozero'"
        ),
        "{output}"
    );
    let (status, output) = run_to_exit(&[("MICRO_SERVICE_DRIVER", "dtm-driver-gozero")], &[]);
    assert!(!status.success());
    assert!(output.contains("MicroService.DriverPath"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_alone_while_sagas_go_on() {
    let wasm = guest_wasm("hostile");
    let (host, busi) = (hostile_host(&wasm).await, GrpcBusi::start().await);
    let expected = [
        ("trap", "failed in the sandbox"),
        ("loop", "ran out of time (100 ms)"),
        ("grow", "failed in the sandbox"),
        ("http", "send-http is not available in parse-server-method"),
    ];
    hostile_calls_fail_alone(&host, &busi, 20, &expected).await;
    assert_eq!(busi.calls("/busi.Busi/TransOut").len(), 20);
}

#[tokio::test]
async fn a_driver_cannot_reach_addresses_the_config_does_not_name() {
    let host = hostile_host(&guest_wasm("hostile")).await;
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let outcome = dtm
        .submit(one_step_saga(
            "resolve",
            "hostile://anywhere/svc/busi.Busi/X".into(),
        ))
        .await;
    assert_eq!(
        outcome.unwrap_err().code(),
        Code::Aborted,
        "the branch call failed, so wait_result reports it"
    );
    let q = host.query("resolve").await;
    assert_eq!(
        q["transaction"]["status"], "submitted",
        "retried later, not lost"
    );
    let log = host.log();
    assert!(
        log.contains("send-http refused: 127.0.0.1:9 is not a configured registry address"),
        "{log}"
    );
}

#[tokio::test]
async fn protocol1_urls_resolve_to_their_endpoint() {
    let wasm = guest_wasm("protocol1");
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-protocol1"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
    ])
    .await;
    let busi = GrpcBusi::start().await;
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let url = format!("protocol1:///{}/busi.Busi/TransOut", busi.server);
    dtm.submit(one_step_saga("p1", url)).await.unwrap();
    assert_eq!(host.status("p1").await, "succeed");
    let call = &busi.calls("/busi.Busi/TransOut")[0];
    assert_eq!(call.metadata["dtm-gid"], "p1");
}

#[tokio::test]
async fn a_restart_uses_the_cached_compilation() {
    let wasm = guest_wasm("protocol1");
    // Its own cache (empty: the default in its data directory), not the tests' shared one.
    let mut host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-protocol1"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_DRIVER_CACHE_DIR", ""),
    ])
    .await;
    assert!(host.log().contains(r#""cached":false"#), "{}", host.log());
    let cache = host.dir.path().join("data/driver-cache");
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "the compiled driver is cached"
    );
    host.restart().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(host.log().contains(r#""cached":true"#), "{}", host.log());
}

#[tokio::test]
async fn the_host_registers_keeps_alive_and_deregisters_through_the_driver() {
    let registry = common::Busi::start().await;
    // Slower than the driver's 100 ms limit: waiting on the registry is not the driver's time.
    registry.once(
        "/register",
        common::Reply::ok().after(Duration::from_millis(300)),
    );
    let registry_host = registry.base.trim_start_matches("http://").to_owned();
    let target = format!("hostile://{registry_host}/dtmservice");
    let wasm = guest_wasm("hostile");
    let mut host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-hostile"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_TARGET", &target),
        ("MICRO_SERVICE_DRIVER_TIMEOUT_MS", "100"),
        ("MICRO_SERVICE_END_POINT", "localhost:36790"),
    ])
    .await;
    let registered = registry.calls("/register");
    assert_eq!(registered.len(), 1, "{}", host.log());
    assert_eq!(
        registered[0].body, "localhost:36790",
        "sent through the allowed send-http"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        registry.calls("/keepalive").len() >= 2,
        "{:?}",
        registry.all_calls()
    );
    assert!(registry.calls("/deregister").is_empty());
    assert!(host.terminate().await.success());
    assert_eq!(registry.calls("/deregister").len(), 1, "{}", host.log());
}

/// A driver that logs 64 KiB messages in a loop: each message is cut, and the driver's log is
/// limited to a few KB a second; what is turned away is counted in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_flooding_its_log_writes_a_few_kilobytes() {
    let host = hostile_host(&guest_wasm("hostile")).await;
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let before = host.log().len();
    for round in 0..2 {
        let gid = format!("flood-{round}");
        let outcome = dtm
            .submit(one_step_saga(
                &gid,
                "hostile://anywhere/flood/busi.Busi/X".into(),
            ))
            .await;
        assert!(outcome.is_err(), "the flooding resolution cannot succeed");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let log = host.log();
    let written = log.len() - before;
    assert!(
        written < 64 << 10,
        "two floods wrote {written} bytes of log"
    );
    assert!(log.contains("driver log messages suppressed"), "{log}");
    assert!(log.contains("(cut)"), "messages are cut");
}

/// A resolution listing 20,000 endpoints is refused, naming the cap (the driver has time
/// enough to list them all).
#[tokio::test]
async fn a_resolution_over_the_cap_is_refused() {
    let wasm = guest_wasm("hostile");
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-hostile"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_DRIVER_TIMEOUT_MS", "5000"),
    ])
    .await;
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let outcome = dtm
        .submit(one_step_saga(
            "many",
            "hostile://anywhere/many/busi.Busi/X".into(),
        ))
        .await;
    assert!(outcome.is_err());
    let log = host.log();
    assert!(
        log.contains("the driver returned a resolution with an endpoint count of 20000, over the cap of 1000"),
        "{log}"
    );
}

/// A driver whose registration sends requests to its (allowed) registry forever: the call
/// stops at its request cap and wall time, and the start fails with the reason instead of
/// leaving the API closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_registration_fails_the_start_within_its_wall_time() {
    let registry = Busi::start().await;
    let target = format!(
        "hostile://{}/stall",
        registry.base.trim_start_matches("http://")
    );
    let wasm = guest_wasm("hostile");
    let started = std::time::Instant::now();
    let run = tokio::task::spawn_blocking(move || {
        run_to_exit(
            &[
                ("MICRO_SERVICE_DRIVER", "dtm-driver-hostile"),
                ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
                ("MICRO_SERVICE_TARGET", &target),
                ("MICRO_SERVICE_END_POINT", "localhost:36790"),
                ("MICRO_SERVICE_DRIVER_WALL_TIME_MS", "2000"),
            ],
            &[],
        )
    });
    let (status, output) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the start hung on the stalled registration")
        .unwrap();
    assert!(!status.success(), "{output}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(output.contains("register-service"), "{output}");
    let sent = registry.calls("/register").len();
    assert!(
        (1..=32).contains(&sent),
        "{sent} registration requests from one driver call"
    );
}

/// `send-http` to an allowed registry: a 307 to another address reaches the driver as a 307
/// (that address gets nothing), a `Host` header is refused, and a driver that sends requests
/// forever is stopped at the request cap of its call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_cannot_be_led_elsewhere_or_spin_on_its_registry() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let elsewhere = Busi::start().await;
    // The registry: `/redirect` sends the driver elsewhere; anything else answers 200.
    let received: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let stolen = elsewhere.url("/stolen");
    let counts = received.clone();
    let registry = common::serve(
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            *counts
                .lock()
                .unwrap()
                .entry(uri.path().to_owned())
                .or_default() += 1;
            let stolen = stolen.clone();
            async move {
                if uri.path() == "/redirect" {
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [(axum::http::header::LOCATION, stolen)],
                    )
                        .into_response()
                } else {
                    "{}".into_response()
                }
            }
        }),
        0,
    )
    .await;
    let wasm = guest_wasm("hostile");
    let target = format!("hostile://{registry}/dtmservice");
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-hostile"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_TARGET", &target),
        ("MICRO_SERVICE_END_POINT", "localhost:36790"),
    ])
    .await;
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    for kind in ["redirect", "host-header", "spin"] {
        let url = format!("hostile://anywhere/{kind}/busi.Busi/X");
        assert!(
            dtm.submit(one_step_saga(kind, url)).await.is_err(),
            "{kind}"
        );
    }
    let log = host.log();
    let received = received.lock().unwrap().clone();
    assert!(log.contains("the registry answered 307"), "{log}");
    assert!(
        elsewhere.calls("/stolen").is_empty(),
        "the redirect was followed"
    );
    assert!(
        log.contains("send-http refused: header 'Host' is the host's to set"),
        "{log}"
    );
    assert_eq!(
        received.get("/x"),
        None,
        "a request with its own Host went out"
    );
    let spun = received.get("/spin").copied().unwrap_or(0);
    assert!(
        (1..=32).contains(&spun),
        "{spun} requests from one driver call"
    );
}
