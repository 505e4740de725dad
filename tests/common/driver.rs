//! What the tests of the registry drivers share: a host running a guest driver registered at a
//! target, the driver's conformance vectors, and a gRPC saga whose branches resolve through it;
//! and a host running a hostile driver (Rust, Python or JavaScript), with what it must survive.

use std::collections::HashMap;
use std::path::Path;

use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use dtm_host::proto::dtmgimp::{DtmRequest, DtmTransOptions};
use serde_json::json;
use tonic::Code;

use super::grpc::GrpcBusi;
use super::{driver_cache_dir, guest_wasm, run_to_exit, Host};

/// The conformance vectors of every dtm driver (parse-server-method cases).
pub const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/parse-vectors.json"
);

/// A host with driver `driver` (guest crate `crate_name`) registering the coordinator at
/// `endpoint` in `target`.
pub async fn start_host(driver: &str, crate_name: &str, target: &str, endpoint: &str) -> Host {
    let wasm = guest_wasm(crate_name);
    Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", driver),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_TARGET", target),
        ("MICRO_SERVICE_END_POINT", endpoint),
    ])
    .await
}

/// `driver check` of guest crate `crate_name` against [`VECTORS`]: every vector for it
/// passes, and there is at least one.
pub fn vectors_pass(crate_name: &str) {
    wasm_vectors_pass(&guest_wasm(crate_name));
}

/// `dtm-host driver check <wasm> --vectors` [`VECTORS`]: it succeeds, no vector fails and some
/// ran. Returns the output.
pub fn wasm_vectors_pass(wasm: &Path) -> String {
    let (passed, output) = check_vectors(wasm, Path::new(VECTORS));
    let name = wasm.display();
    assert!(passed, "{name}: {output}");
    assert!(output.contains(" passed, 0 failed"), "{name}: {output}");
    assert!(
        !output.contains(" 0 passed"),
        "no {name} vector ran: {output}"
    );
    output
}

/// `dtm-host driver check <wasm> --vectors <vectors>`: whether it succeeded, and its output.
/// Uses the compile cache the tests' hosts share, with room for a debug build on a loaded
/// machine (what is checked is the parsing, not the time limit).
pub fn check_vectors(wasm: &Path, vectors: &Path) -> (bool, String) {
    let (status, output) = run_to_exit(
        &[],
        &[
            "driver",
            "check",
            wasm.to_str().unwrap(),
            "--vectors",
            vectors.to_str().unwrap(),
            "--cache-dir",
            driver_cache_dir().to_str().unwrap(),
            "--timeout-ms",
            "5000",
        ],
    );
    (status.success(), output)
}

/// A waiting saga of two gRPC branches at `url_of(method)`.
pub fn saga(gid: &str, url_of: impl Fn(&str) -> String) -> DtmRequest {
    let steps = json!([
        {"action": url_of("/busi.Busi/TransOut"), "compensate": url_of("/busi.Busi/TransOutRevert")},
        {"action": url_of("/busi.Busi/TransIn"), "compensate": url_of("/busi.Busi/TransInRevert")},
    ]);
    DtmRequest {
        gid: gid.into(),
        trans_type: "saga".into(),
        steps: steps.to_string(),
        bin_payloads: vec![vec![1], vec![2]],
        trans_options: Some(DtmTransOptions {
            wait_result: true,
            branch_headers: HashMap::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Submits `saga(gid)` and checks it succeeded and `busi` got each action once for it.
pub async fn saga_succeeds(
    host: &Host,
    busi: &GrpcBusi,
    gid: &str,
    url_of: impl Fn(&str) -> String,
) {
    let mut dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let outcome = dtm.submit(saga(gid, url_of)).await;
    assert!(outcome.is_ok(), "{gid}: {outcome:?}\n{}", host.log());
    assert_eq!(host.status(gid).await, "succeed", "{}", host.log());
    for method in ["/busi.Busi/TransOut", "/busi.Busi/TransIn"] {
        let calls = busi.calls(method);
        let for_gid = calls.iter().filter(|c| c.metadata["dtm-gid"] == gid);
        assert_eq!(for_gid.count(), 1, "{method} for {gid}: {calls:?}");
    }
}

/// A waiting saga of one gRPC step at `action`, without compensation.
pub fn one_step_saga(gid: &str, action: String) -> DtmRequest {
    DtmRequest {
        gid: gid.into(),
        trans_type: "saga".into(),
        steps: json!([{"action": action, "compensate": ""}]).to_string(),
        bin_payloads: vec![vec![1]],
        trans_options: Some(DtmTransOptions {
            wait_result: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A host running the hostile driver `wasm` (`dtm-driver-hostile`) with tight limits: 100 ms a
/// call, 16 MiB of memory.
pub async fn hostile_host(wasm: &Path) -> Host {
    Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-hostile"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_DRIVER_TIMEOUT_MS", "100"),
        ("MICRO_SERVICE_DRIVER_MEMORY_MI_B", "16"),
    ])
    .await
}

/// Submits `normal` sagas `fine-<i>` to `busi` and, at the same time, one saga `hostile-<kind>`
/// through each misbehaviour of `expected`: the normal ones succeed; each hostile one is
/// refused `InvalidArgument` with a message containing its text, and nothing of it is stored.
pub async fn hostile_calls_fail_alone(
    host: &Host,
    busi: &GrpcBusi,
    normal: usize,
    expected: &[(&'static str, &str)],
) {
    let dtm = DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap();
    let fine = (0..normal).map(|i| {
        let mut dtm = dtm.clone();
        let request = one_step_saga(&format!("fine-{i}"), busi.url("/busi.Busi/TransOut"));
        async move { dtm.submit(request).await }
    });
    let hostile = expected.iter().map(|&(kind, _)| {
        let mut dtm = dtm.clone();
        let request = one_step_saga(&format!("hostile-{kind}"), format!("{kind}/busi.Busi/X"));
        async move { dtm.submit(request).await }
    });
    let (fine, hostile) = tokio::join!(
        futures::future::join_all(fine),
        futures::future::join_all(hostile)
    );
    for outcome in fine {
        outcome.unwrap();
    }
    for (outcome, (kind, text)) in hostile.into_iter().zip(expected) {
        let status = outcome.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{kind}: {status:?}\n{}",
            host.log()
        );
        assert!(
            status.message().contains(text),
            "{kind}: {}",
            status.message()
        );
        assert_eq!(
            host.query(&format!("hostile-{kind}")).await["transaction"],
            serde_json::Value::Null
        );
    }
    for i in 0..normal {
        assert_eq!(host.status(&format!("fine-{i}")).await, "succeed");
    }
}
