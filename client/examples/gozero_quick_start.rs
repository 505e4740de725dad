//! go-zero's dtm quick start, reproduced against dtm-host with real etcd:
//!
//! 1. dtm-host runs with `MicroService.Driver: dtm-driver-gozero` (the gozero `.wasm`) and
//!    registers itself in etcd at `etcd://127.0.0.1:2379/dtmservice`;
//! 2. this app starts the gRPC business service `trans.TransSvc` and registers it in etcd the
//!    way a go-zero server does (key `trans.rpc/<lease>` = its address, kept alive);
//! 3. it finds dtm through etcd (`etcd://127.0.0.1:2379/dtmservice`), and submits a 2-phase
//!    message whose branches `etcd://127.0.0.1:2379/trans.rpc/trans.TransSvc/TransOut` and
//!    `…/TransIn` dtm-host resolves through etcd; the business service logs the transfer.
//!
//! Settings (environment): DTM_DRIVER (default `target/drivers/gozero.wasm`), ETCD (default
//! `127.0.0.1:2379`), BUSI_PORT (default 58081).

#[path = "support/transfer_service.rs"]
mod transfer_service;

use dtm_client::{Client, ServiceRegistration};
use transfer_service::AdjustInfo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
    let (driver, etcd, busi_port) = (
        env("DTM_DRIVER", "target/drivers/gozero.wasm"),
        env("ETCD", "127.0.0.1:2379"),
        env("BUSI_PORT", "58081"),
    );

    transfer_service::start(&busi_port).await?;
    let trans_rpc = format!("etcd://{etcd}/trans.rpc");
    let registered =
        ServiceRegistration::register(&driver, &trans_rpc, &format!("127.0.0.1:{busi_port}"))
            .await?;
    println!("trans.rpc registered in etcd at {trans_rpc}");

    let dtm = format!("etcd://{etcd}/dtmservice");
    let client = Client::grpc(&dtm).use_driver_with_registry(&driver, &format!("etcd://{etcd}"))?;
    let gid = client.new_gid().await?;
    println!("dtm found at {dtm}; gid {gid}");
    client
        .msg(&gid, "")
        .add(
            &format!("{trans_rpc}/trans.TransSvc/TransOut"),
            AdjustInfo::bytes(30, 1),
        )
        .add(
            &format!("{trans_rpc}/trans.TransSvc/TransIn"),
            AdjustInfo::bytes(30, 2),
        )
        .wait_result(true)
        .submit()
        .await?;
    println!("msg {gid} succeeded");
    registered.deregister().await?;
    Ok(())
}
