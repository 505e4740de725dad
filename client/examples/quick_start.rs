//! The quick start of dtm's driver seed, reproduced against dtm-host:
//!
//! 1. dtm-host runs with `MicroService.Driver: dtm-driver-protocol1` and the protocol1 `.wasm`;
//! 2. this app starts a gRPC business service (TransOut / TransIn and their compensations),
//!    loads the same `.wasm` driver, calls NewGid at `protocol1:///localhost:36790/dtmgimp.Dtm/NewGid`,
//! 3. and runs a saga whose gRPC branches, addressed with `protocol1:///` URLs, move 30 from
//!    user 1 to user 2.
//!
//! Settings (environment): DTM_DRIVER (default `target/drivers/protocol1.wasm`), DTM (default
//! `protocol1:///localhost:36790`), BUSI_PORT (default 58081).

#[path = "support/transfer_service.rs"]
mod transfer_service;

use dtm_client::Client;
use dtm_host::proto::dtmgimp::DtmGidReply;
use prost::Message;
use transfer_service::AdjustInfo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
    let (driver, dtm, busi_port) = (
        env("DTM_DRIVER", "target/drivers/protocol1.wasm"),
        env("DTM", "protocol1:///localhost:36790"),
        env("BUSI_PORT", "58081"),
    );

    transfer_service::start(&busi_port).await?;

    let client = Client::grpc(&dtm).use_driver(&driver)?;
    let new_gid = format!("{dtm}/dtmgimp.Dtm/NewGid");
    let reply = client.grpc_call(&new_gid, Vec::new()).await;
    let gid = match reply {
        Ok(bytes) => DtmGidReply::decode(bytes.as_slice())?.gid,
        Err(e) => {
            println!("grpc client called: {new_gid} result: <nil> err: {e}");
            return Err(e.into());
        }
    };
    println!("grpc client called: {new_gid} result: Gid: \"{gid}\" err: <nil>");

    let busi = format!("protocol1:///localhost:{busi_port}/busi.Busi");
    let (out, into) = (AdjustInfo::bytes(30, 1), AdjustInfo::bytes(30, 2));
    client
        .saga(&gid)
        .add(
            &format!("{busi}/TransOut"),
            &format!("{busi}/TransOutRevert"),
            out,
        )
        .add(
            &format!("{busi}/TransIn"),
            &format!("{busi}/TransInRevert"),
            into,
        )
        .wait_result(true)
        .submit()
        .await?;
    println!("saga {gid} succeeded");
    Ok(())
}
