//! Operating the coordinator, against the real binary on the embedded store: `/api/metrics`
//! after known traffic (dtm's families and the driver's), `/api/health` and `/api/ready`, the
//! alert webhook of a branch that keeps failing, and the runtime's worker threads.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use common::grpc::GrpcBusi;
use common::{free_port, guest_wasm, saga, serve, transfer, Busi, Host, Reply};
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use dtm_host::proto::dtmgimp::DtmRequest;
use serde_json::{json, Value};
use tonic::Code;

/// `/api/metrics` as sample key (name and labels, as rendered) → value.
async fn metrics(host: &Host) -> HashMap<String, f64> {
    let response = host
        .http
        .get(host.url("/api/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// Polls `/api/metrics` until sample `key` has `value` (panics with the metrics after 10 s).
async fn wait_metric(host: &Host, key: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = metrics(host).await;
        if samples.get(key) == Some(&value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never became {value}: {samples:#?}\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks every `(key, value)` sample at once, showing all samples on a mismatch.
fn assert_samples(samples: &HashMap<String, f64>, expected: &[(&str, f64)]) {
    for (key, value) in expected {
        assert_eq!(
            samples.get(*key),
            Some(value),
            "{key}; all samples: {samples:#?}"
        );
    }
}

async fn grpc_client(host: &Host) -> DtmClient<tonic::transport::Channel> {
    DtmClient::connect(format!("http://127.0.0.1:{}", host.grpc_port))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_passes_and_branches_with_dtms_labels() {
    let (host, busi) = (Host::start().await, Busi::start().await);
    busi.always("/TransInFailed", Reply::failure("no money"));
    for _ in 0..2 {
        let mut body = transfer(&host.new_gid().await, &busi);
        body["wait_result"] = json!(true);
        assert_eq!(host.post("/submit", body).await.0, 200);
    }
    for _ in 0..3 {
        let gid = host.new_gid().await;
        let steps = [
            ("/TransOut", "/TransOutRevert"),
            ("/TransInFailed", "/TransInRevert"),
        ];
        let mut body = saga(&gid, &busi, &steps);
        body["wait_result"] = json!(true);
        assert_eq!(host.post("/submit", body).await.0, 409);
        assert_eq!(host.status(&gid).await, "failed");
    }
    let mut dtm = grpc_client(&host).await;
    dtm.new_gid(()).await.unwrap();
    let refused = DtmRequest {
        gid: "g".into(),
        trans_type: "nonsense".into(),
        ..Default::default()
    };
    assert_eq!(
        dtm.submit(refused).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let samples = metrics(&host).await;
    assert_samples(
        &samples,
        &[
            (
                r#"dtm_server_info{gin_version="axum 0.8",grpc_version="tonic 0.14"}"#,
                1.0,
            ),
            (
                r#"dtm_server_process_total{type="http",api="newgid",status="ok"}"#,
                5.0,
            ),
            (
                r#"dtm_server_process_total{type="http",api="submit",status="ok"}"#,
                2.0,
            ),
            (
                r#"dtm_server_process_total{type="http",api="submit",status="fail"}"#,
                3.0,
            ),
            (
                r#"dtm_server_process_total{type="grpc",api="newgid",status="ok"}"#,
                1.0,
            ),
            (
                r#"dtm_server_process_total{type="grpc",api="submit",status="fail"}"#,
                1.0,
            ),
            (
                r#"dtm_server_response_duration_count{type="http",api="submit"}"#,
                5.0,
            ),
            (
                r#"dtm_transaction_process_total{model="saga",status="ok"}"#,
                5.0,
            ),
            (
                r#"dtm_transaction_handled_duration_count{model="saga"}"#,
                5.0,
            ),
            (
                r#"dtm_branch_process_total{model="saga",branchid="01",branchtype="action",status="ok"}"#,
                5.0,
            ),
            (
                r#"dtm_branch_process_total{model="saga",branchid="02",branchtype="action",status="ok"}"#,
                2.0,
            ),
            (
                r#"dtm_branch_process_total{model="saga",branchid="02",branchtype="action",status="fail"}"#,
                3.0,
            ),
            (
                r#"dtm_branch_process_total{model="saga",branchid="02",branchtype="compensate",status="ok"}"#,
                3.0,
            ),
            (
                r#"dtm_branch_process_total{model="saga",branchid="01",branchtype="compensate",status="ok"}"#,
                3.0,
            ),
        ],
    );
    assert!(
        !samples
            .keys()
            .any(|k| k.contains("status=\"fail\"}") && k.contains("dtm_transaction")),
        "no pass ended with an error: {samples:#?}"
    );
    assert!(
        !samples.keys().any(|k| k.contains("gid=")),
        "query strings stay out of the api label"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_paths_topics_and_methods_do_not_grow_the_api_labels() {
    let host = Host::start().await;
    for n in 0..5 {
        let r = host
            .http
            .get(host.url(&format!("/x/made-up-{n}")))
            .send()
            .await;
        assert_eq!(r.unwrap().status(), 404);
        let topic = host.api(&format!("/topic/topic-{n}"));
        host.http.delete(topic).send().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", host.grpc_port))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
        grpc.ready().await.unwrap();
        let path = format!("/dtmgimp.Dtm/MadeUp{n}").parse().unwrap();
        let status = grpc
            .unary(
                tonic::Request::new(Vec::new()),
                path,
                dtm_host::call::grpc::RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
    }
    host.get("/newGid").await;
    let r = host.http.get(host.url("/admin")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the admin UI's page");

    let samples = metrics(&host).await;
    let apis: std::collections::BTreeSet<&str> = samples
        .keys()
        .filter(|k| k.starts_with("dtm_server_process_total"))
        .filter_map(|k| k.split("api=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        apis.into_iter().collect::<Vec<_>>(),
        ["admin", "newgid", "ping", "topic", "unknown"],
        "{samples:#?}"
    );
    assert_samples(
        &samples,
        &[
            (
                r#"dtm_server_process_total{type="http",api="unknown",status="fail"}"#,
                5.0,
            ),
            (
                r#"dtm_server_process_total{type="grpc",api="unknown",status="fail"}"#,
                5.0,
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_calls_errors_traps_and_timeouts_are_counted() {
    let wasm = guest_wasm("hostile");
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-hostile"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
        ("MICRO_SERVICE_DRIVER_TIMEOUT_MS", "100"),
    ])
    .await;
    let busi = GrpcBusi::start().await;
    let mut dtm = grpc_client(&host).await;
    let fine = common::driver::saga("fine", |method| busi.url(method));
    dtm.submit(fine).await.unwrap();
    // Each URL is refused at its first split, so one driver call per kind.
    for kind in ["trap", "loop", "http"] {
        let hostile = common::driver::saga(kind, |method| format!("{kind}{method}"));
        let status = dtm.submit(hostile).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{kind}: {status:?}");
    }
    let unresolvable = common::driver::saga("resolve", |method| {
        format!("hostile://anywhere/svc{method}")
    });
    assert_eq!(
        dtm.submit(unresolvable).await.unwrap_err().code(),
        Code::Aborted
    );

    let calls = |operation: &str| {
        format!(r#"dtm_driver_calls_total{{driver="dtm-driver-hostile",operation="{operation}"}}"#)
    };
    let of = |family: &str, operation: &str| {
        format!(r#"{family}{{driver="dtm-driver-hostile",operation="{operation}"}}"#)
    };
    let samples = metrics(&host).await;
    assert_samples(
        &samples,
        &[
            // 4 URLs of the fine saga, 1 per hostile kind, 4 URLs of the unresolvable saga;
            // every split is remembered, so the branch calls add none.
            (&calls("parse-server-method"), 11.0),
            (&of("dtm_driver_traps_total", "parse-server-method"), 1.0),
            (&of("dtm_driver_timeouts_total", "parse-server-method"), 1.0),
            (&of("dtm_driver_errors_total", "parse-server-method"), 1.0),
            (&calls("resolve"), 1.0),
            (&of("dtm_driver_errors_total", "resolve"), 1.0),
        ],
    );
    for absent in [
        of("dtm_driver_traps_total", "resolve"),
        of("dtm_driver_timeouts_total", "resolve"),
        calls("register-service"),
    ] {
        assert_eq!(samples.get(&absent), None, "{absent}: {samples:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_refreshed_after_unavailable_is_counted() {
    let wasm = guest_wasm("protocol1");
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-protocol1"),
        ("MICRO_SERVICE_DRIVER_PATH", wasm.to_str().unwrap()),
    ])
    .await;
    let nobody = format!("127.0.0.1:{}", free_port());
    let mut dtm = grpc_client(&host).await;
    let request = common::driver::saga("gone", |method| format!("protocol1:///{nobody}{method}"));
    assert_eq!(dtm.submit(request).await.unwrap_err().code(), Code::Aborted);
    let key = |family: &str, operation: &str| {
        format!(r#"{family}{{driver="dtm-driver-protocol1",operation="{operation}"}}"#)
    };
    let samples = metrics(&host).await;
    assert_eq!(
        samples.get(&key("dtm_driver_calls_total", "resolve")),
        Some(&1.0)
    );
    assert_eq!(
        samples.get(&key("dtm_driver_resolve_refreshes_total", "resolve")),
        None,
        "the first resolution is no refresh"
    );

    // The call found the endpoint Unavailable: the next pass refreshes the list.
    host.advance_clock(21).await;
    wait_metric(
        &host,
        r#"dtm_branch_process_total{model="saga",branchid="01",branchtype="action",status="fail"}"#,
        2.0,
    )
    .await;
    wait_metric(&host, &key("dtm_driver_calls_total", "resolve"), 2.0).await;
    let samples = metrics(&host).await;
    assert_eq!(
        samples.get(&key("dtm_driver_resolve_refreshes_total", "resolve")),
        Some(&1.0),
        "{samples:#?}"
    );
}

#[tokio::test]
async fn health_and_readiness_answer_while_the_store_does() {
    let host = Host::start().await;
    let get = |path: &str| {
        let request = host.http.get(host.url(path));
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(get("/api/health").await, (200, json!({"status": "alive"})));
    assert_eq!(
        get("/api/ready").await,
        (
            200,
            json!({"status": "ready", "store": "embedded", "driver": "default"})
        )
    );
}

/// Alerts the webhook received, in order.
type Received = Arc<Mutex<Vec<Value>>>;

/// A webhook that records each alert and then answers 500, which must change nothing.
async fn failing_webhook() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/alert",
            axum::routing::post(
                |State(received): State<Received>, Json(alert): Json<Value>| async move {
                    received.lock().unwrap().push(alert);
                    StatusCode::INTERNAL_SERVER_ERROR
                },
            ),
        )
        .with_state(received.clone());
    (format!("http://{}/alert", serve(app, 0).await), received)
}

/// Waits until a pass has backed the transaction off to `interval` seconds: the clock may be
/// moved past it only then.
async fn wait_backoff(host: &Host, gid: &str, interval: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.query(gid).await["transaction"]["next_cron_interval"] != interval {
        assert!(
            Instant::now() < deadline,
            "{gid} was not backed off to {interval} s: {}\n{}",
            host.query(gid).await,
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_alerts(received: &Received, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = received.lock().unwrap().clone();
        if alerts.len() >= count {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{count} alerts expected: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_failing_past_the_alert_retry_limit_is_posted_to_the_webhook() {
    let (webhook, received) = failing_webhook().await;
    let host = Host::start_with(&[("ALERT_WEB_HOOK", &webhook)]).await;
    let busi = Busi::start().await;
    busi.always("/TransIn", Reply::error());
    let gid = host.new_gid().await;
    assert_eq!(host.post("/submit", transfer(&gid, &busi)).await.0, 200);
    // Failures 1 and 2 (intervals 20 and 40) stay below AlertRetryLimit 3; the third (80)
    // reaches it.
    for (interval, failures) in [(20, 1), (40, 2), (80, 3)] {
        wait_backoff(&host, &gid, interval).await;
        assert_eq!(busi.calls("/TransIn").len(), failures);
        if interval < 80 {
            host.advance_clock(interval + 1).await;
        }
    }
    let alert = |retry_count: i64| {
        json!({"gid": gid, "status": "submitted", "branch": busi.url("/TransIn"),
            "error": "http status 500: internal error", "retry_count": retry_count})
    };
    assert_eq!(wait_alerts(&received, 1).await, [alert(3)]);
    // Every later failure alerts again.
    host.advance_clock(81).await;
    wait_backoff(&host, &gid, 160).await;
    assert_eq!(wait_alerts(&received, 2).await, [alert(3), alert(4)]);

    busi.always("/TransIn", Reply::ok());
    host.advance_clock(161).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(received.lock().unwrap().len(), 2);
    assert!(
        host.log().contains("alert webhook failed"),
        "{}",
        host.log()
    );
}

/// `WorkerThreads` sets the async runtime's workers; unset, one per core.
#[tokio::test]
async fn the_runtime_runs_the_worker_threads_configured() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cases: [(&[(&str, &str)], usize); 2] = [(&[], cores), (&[("WORKER_THREADS", "5")], 5)];
    for (env, expected) in cases {
        let host = Host::start_with(env).await;
        let log = host.log();
        let started: Value = log
            .lines()
            .find(|line| line.contains("async runtime started"))
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("no start line with the workers:\n{log}"));
        assert_eq!(started["worker_threads"], expected, "{log}");
        // Workers and blocking threads share tokio's default thread name.
        let tokio_threads = std::fs::read_dir(format!("/proc/{}/task", host.pid()))
            .expect("the host's threads")
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .filter(|name| name.trim() == "tokio-rt-worker")
            .count();
        assert!(tokio_threads >= expected, "{tokio_threads} tokio threads");
    }
}
