//! The quick starts, reproduced with the `dtm-client` example apps against the real binary:
//! dtm's driver seed (protocol1 wasm driver, a saga over `protocol1:///` URLs), and go-zero's
//! (gozero wasm driver, real etcd, a msg over `etcd://` URLs).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::etcd::Etcd;
use common::{free_port, guest_wasm, Host};

/// Builds and runs example `name` of dtm-client with `env`, to its end.
async fn run_example(name: &str, env: &[(&str, &str)]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-p", "dtm-client", "--example", name])
        .status()
        .unwrap();
    assert!(built.success());
    let app = Path::new(env!("CARGO_BIN_EXE_dtm-host"))
        .with_file_name("examples")
        .join(name);
    tokio::process::Command::new(app)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

/// The example's stdout, after checking it succeeded and logged the transfer in order.
fn transfer_logged(output: &Output, host: &Host) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        host.log()
    );
    let transfer = stdout
        .find("TransOut 30 from user 1")
        .zip(stdout.find("TransIn 30 to user 2"));
    assert!(transfer.is_some_and(|(out, into)| out < into), "{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_quick_start() {
    let driver = guest_wasm("protocol1");
    let driver_path = driver.to_str().unwrap();
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-protocol1"),
        ("MICRO_SERVICE_DRIVER_PATH", driver_path),
    ])
    .await;
    let dtm = format!("protocol1:///localhost:{}", host.grpc_port);
    let busi_port = free_port().to_string();
    let output = run_example(
        "quick_start",
        &[
            ("DTM_DRIVER", driver_path),
            ("DTM", &dtm),
            ("BUSI_PORT", &busi_port),
        ],
    )
    .await;
    let stdout = transfer_logged(&output, &host);
    let new_gid = format!("grpc client called: {dtm}/dtmgimp.Dtm/NewGid result: Gid: \"");
    assert!(
        stdout.contains(&new_gid) && stdout.contains("\" err: <nil>"),
        "{stdout}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gozero_quick_start_with_real_etcd() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let driver = guest_wasm("gozero");
    let driver_path = driver.to_str().unwrap();
    let host = Host::start_with(&[
        ("MICRO_SERVICE_DRIVER", "dtm-driver-gozero"),
        ("MICRO_SERVICE_DRIVER_PATH", driver_path),
        (
            "MICRO_SERVICE_TARGET",
            &format!("etcd://{}/dtmservice", etcd.address()),
        ),
        ("MICRO_SERVICE_END_POINT", "127.0.0.1:{GRPC_PORT}"),
    ])
    .await;
    let busi_port = free_port().to_string();
    let output = run_example(
        "gozero_quick_start",
        &[
            ("DTM_DRIVER", driver_path),
            ("ETCD", &etcd.address()),
            ("BUSI_PORT", &busi_port),
        ],
    )
    .await;
    let stdout = transfer_logged(&output, &host);
    let gid = stdout
        .split("msg ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(stdout.contains(&format!("msg {gid} succeeded")), "{stdout}");
    assert_eq!(host.status(gid).await, "succeed");
    assert_eq!(host.branch_statuses(gid).await, ["succeed", "succeed"]);
    assert_eq!(
        etcd.get_prefix("trans.rpc/").await,
        [],
        "the business service deregistered when it stopped"
    );
}
