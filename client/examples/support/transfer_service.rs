//! The business service both quick starts run: a gRPC server whose every method logs the
//! transfer it stands for (`TransOut 30 from user 1`) and answers OK. Requests are dtm's
//! examples' `AdjustInfo {Amount, UserID}` protobuf messages.

use std::future::Future;
use std::pin::Pin;

use dtm_host::call::grpc::RawCodec;
use prost::Message;

/// The request of every method: how much moves, and whose account.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdjustInfo {
    #[prost(int64, tag = "1")]
    pub amount: i64,
    #[prost(int64, tag = "2")]
    pub user_id: i64,
}

impl AdjustInfo {
    pub fn bytes(amount: i64, user_id: i64) -> Vec<u8> {
        Self { amount, user_id }.encode_to_vec()
    }
}

/// One call to a method path such as `/trans.TransSvc/TransOut`.
struct Branch(String);

impl tonic::server::UnaryService<Vec<u8>> for Branch {
    type Response = Vec<u8>;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Vec<u8>>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Vec<u8>>) -> Self::Future {
        let Ok(info) = AdjustInfo::decode(request.get_ref().as_slice()) else {
            let refused = tonic::Status::invalid_argument("not an AdjustInfo");
            return Box::pin(async { Err(refused) });
        };
        let (amount, user) = (info.amount, info.user_id);
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

/// Serves the business service on `127.0.0.1:port` in the background.
pub async fn start(port: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tokio::spawn(
        async move { axum::serve(listener, axum::Router::new().fallback(serve_branch)).await },
    );
    Ok(())
}
