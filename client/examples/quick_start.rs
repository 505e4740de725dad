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

use std::future::Future;
use std::pin::Pin;

use dtm_client::Client;
use dtm_host::call::grpc::RawCodec;
use dtm_host::proto::dtmgimp::DtmGidReply;
use prost::Message;

/// The business service: every method logs the transfer it stands for and answers OK.
struct Branch(String);

impl tonic::server::UnaryService<Vec<u8>> for Branch {
    type Response = Vec<u8>;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Vec<u8>>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Vec<u8>>) -> Self::Future {
        let req: serde_json::Value = serde_json::from_slice(request.get_ref()).unwrap_or_default();
        let (amount, user) = (
            req["amount"].as_i64().unwrap_or(0),
            req["user_id"].as_i64().unwrap_or(0),
        );
        match self.0.rsplit('/').next().unwrap_or_default() {
            "TransOut" => println!("TransOut {amount} from user {user}"),
            "TransIn" => println!("TransIn {amount} to user {user}"),
            other => println!("{other} {amount} for user {user}"),
        }
        Box::pin(async { Ok(tonic::Response::new(Vec::new())) })
    }
}

async fn serve_branch(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = request.uri().path().to_owned();
    tonic::server::Grpc::new(RawCodec)
        .unary(Branch(method), request)
        .await
        .into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
    let (driver, dtm, busi_port) = (
        env("DTM_DRIVER", "target/drivers/protocol1.wasm"),
        env("DTM", "protocol1:///localhost:36790"),
        env("BUSI_PORT", "58081"),
    );

    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{busi_port}")).await?;
    tokio::spawn(
        async move { axum::serve(listener, axum::Router::new().fallback(serve_branch)).await },
    );

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
    let out = br#"{"amount":30,"user_id":1}"#.to_vec();
    let into = br#"{"amount":30,"user_id":2}"#.to_vec();
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
