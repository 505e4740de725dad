//! dtm-client over HTTP and gRPC against the real dtm-host binary and a real HTTP business
//! service.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, Uri};
use dtm_client::{Client, ClientError};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The workspace's `dtm-host` binary, built if this test runs alone.
fn host_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            assert!(Command::new(cargo)
                .args(["build", "-p", "dtm-host", "--bin", "dtm-host"])
                .status()
                .unwrap()
                .success());
            target.join("dtm-host")
        })
        .clone()
}

struct HostProcess {
    child: Child,
    http: u16,
    grpc: u16,
    _dir: tempfile::TempDir,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_host() -> HostProcess {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
    let child = Command::new(host_binary())
        .env("HTTP_PORT", http.to_string())
        .env("GRPC_PORT", grpc.to_string())
        .env("STORE_DATA_DIR", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host = HostProcess {
        child,
        http,
        grpc,
        _dir: dir,
    };
    for _ in 0..500 {
        if reqwest::get(format!("http://127.0.0.1:{http}/api/ping"))
            .await
            .is_ok()
        {
            return host;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("dtm-host did not start");
}

/// Answers 409 FAILURE on paths containing "Fail", else 200; records the paths called.
async fn start_busi() -> (String, Arc<Mutex<Vec<String>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(uri.path().to_owned());
            if uri.path().contains("Fail") {
                (StatusCode::CONFLICT, r#"{"dtm_result":"FAILURE"}"#)
            } else {
                (StatusCode::OK, r#"{"dtm_result":"SUCCESS"}"#)
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, calls)
}

#[tokio::test]
async fn saga_msg_and_tcc_over_http() {
    let (host, (busi, calls)) = (start_host().await, start_busi().await);
    let dtm = Client::http(&format!("http://127.0.0.1:{}/api/dtmsvr", host.http));

    let gid = dtm.new_gid().await.unwrap();
    let step = |p: &str| format!("{busi}/{p}");
    dtm.saga(&gid)
        .add(
            &step("TransOut"),
            &step("TransOutRevert"),
            br#"{"amount":30}"#.to_vec(),
        )
        .wait_result(true)
        .submit()
        .await
        .unwrap();

    let failing = dtm.new_gid().await.unwrap();
    let refused = dtm
        .saga(&failing)
        .add(&step("TransOut"), &step("TransOutRevert"), b"{}".to_vec())
        .add(&step("TransInFail"), &step("TransInRevert"), b"{}".to_vec())
        .wait_result(true)
        .submit()
        .await;
    assert!(
        matches!(refused, Err(ClientError::Failure(_))),
        "{refused:?}"
    );

    let msg = dtm
        .msg(&dtm.new_gid().await.unwrap(), &step("QueryPrepared"))
        .add(&step("Deliver"), b"{}".to_vec())
        .wait_result(true);
    msg.prepare().await.unwrap();
    msg.submit().await.unwrap();

    let tcc_gid = dtm.new_gid().await.unwrap();
    let tcc = dtm.tcc(&tcc_gid);
    tcc.prepare().await.unwrap();
    tcc.register(
        "01",
        &step("Confirm"),
        &step("Cancel"),
        br#"{"amount":30}"#.to_vec(),
    )
    .await
    .unwrap();
    tcc.submit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let calls = calls.lock().unwrap().clone();
    for path in [
        "/TransOut",
        "/TransInFail",
        "/TransInRevert",
        "/TransOutRevert",
        "/Deliver",
        "/Confirm",
    ] {
        assert!(
            calls.iter().any(|c| c == path),
            "{path} not called: {calls:?}"
        );
    }
    assert!(!calls.iter().any(|c| c == "/Cancel"));
}

#[tokio::test]
async fn grpc_client_reports_dtm_failures() {
    let host = start_host().await;
    let dtm = Client::grpc(&format!("127.0.0.1:{}", host.grpc));
    let gid = dtm.new_gid().await.unwrap();
    let tcc = dtm.tcc(&gid);
    tcc.prepare().await.unwrap();
    tcc.abort().await.unwrap();
    // Aborting or already failed, it cannot be submitted any more.
    assert!(matches!(tcc.submit().await, Err(ClientError::Failure(_))));
}
