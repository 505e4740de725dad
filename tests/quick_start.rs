//! The driver seed's quick start, reproduced: dtm-host with the protocol1 wasm driver, and the
//! `dtm-client` example app that loads the same `.wasm`, gets a gid at a `protocol1:///` URL and
//! runs a saga whose gRPC branches move 30 from user 1 to user 2.

mod common;

use std::path::Path;
use std::process::Command;

use common::{free_port, guest_wasm, Host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_quick_start() {
    let driver = guest_wasm("protocol1");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-p", "dtm-client", "--example", "quick_start"])
        .status()
        .unwrap();
    assert!(built.success());
    let app = Path::new(env!("CARGO_BIN_EXE_dtm-host"))
        .with_file_name("examples")
        .join("quick_start");

    let driver_path = driver.to_str().unwrap();
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-protocol1"),
        ("MICRO_SERVICE_DRIVER_PATH", driver_path),
    ])
    .await;
    let dtm = format!("protocol1:///localhost:{}", host.grpc_port);
    let output = tokio::process::Command::new(app)
        .env("DTM_DRIVER", driver_path)
        .env("DTM", &dtm)
        .env("BUSI_PORT", free_port().to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        host.log()
    );
    let new_gid = format!("grpc client called: {dtm}/dtmgimp.Dtm/NewGid result: Gid: \"");
    assert!(
        stdout.contains(&new_gid) && stdout.contains("\" err: <nil>"),
        "{stdout}"
    );
    let transfer = stdout
        .find("TransOut 30 from user 1")
        .zip(stdout.find("TransIn 30 to user 2"));
    assert!(transfer.is_some_and(|(out, into)| out < into), "{stdout}");
    let gid = stdout
        .split("Gid: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert_eq!(host.status(gid).await, "succeed");
    assert_eq!(
        host.branch_statuses(gid).await,
        ["prepared", "succeed", "prepared", "succeed"]
    );
}
