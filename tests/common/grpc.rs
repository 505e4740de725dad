//! A real gRPC business service for the tests: answers any method on h2c, records each call's
//! method, metadata and raw request bytes, and answers with scripted status codes.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::response::IntoResponse;
use dtm_host::call::grpc::RawCodec;
use tonic::{Code, Status};

/// One request the gRPC business service received.
#[derive(Debug, Clone)]
pub struct GrpcCall {
    pub method: String,
    pub metadata: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

#[derive(Default)]
struct GrpcBusiState {
    once: Mutex<HashMap<String, VecDeque<Code>>>,
    calls: Mutex<Vec<GrpcCall>>,
}

#[derive(Clone)]
pub struct GrpcBusi {
    /// `127.0.0.1:port`, the server part of a gRPC branch URL.
    pub server: String,
    state: Arc<GrpcBusiState>,
}

struct Handler {
    method: String,
    state: Arc<GrpcBusiState>,
}

impl tonic::server::UnaryService<Vec<u8>> for Handler {
    type Response = Vec<u8>;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Vec<u8>>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Vec<u8>>) -> Self::Future {
        let metadata = request
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.to_string(), v.to_str().unwrap_or("").to_owned()))
                }
                _ => None,
            })
            .collect();
        self.state.calls.lock().unwrap().push(GrpcCall {
            method: self.method.clone(),
            metadata,
            body: request.into_inner(),
            at: Instant::now(),
        });
        let code = self
            .state
            .once
            .lock()
            .unwrap()
            .get_mut(&self.method)
            .and_then(VecDeque::pop_front);
        Box::pin(async move {
            match code {
                None | Some(Code::Ok) => Ok(tonic::Response::new(Vec::new())),
                Some(code) => Err(Status::new(code, format!("scripted {code:?}"))),
            }
        })
    }
}

async fn any_method(
    State(state): State<Arc<GrpcBusiState>>,
    request: Request,
) -> axum::response::Response {
    let method = request.uri().path().to_owned();
    let mut grpc = tonic::server::Grpc::new(RawCodec);
    grpc.unary(Handler { method, state }, request)
        .await
        .into_response()
}

impl GrpcBusi {
    pub async fn start() -> Self {
        let state = Arc::new(GrpcBusiState::default());
        let app = axum::Router::new()
            .fallback(any_method)
            .with_state(state.clone());
        let server = super::serve(app, 0).await;
        Self { server, state }
    }

    /// A branch URL for `method` (`/busi.Busi/TransOut`).
    pub fn url(&self, method: &str) -> String {
        format!("{}{method}", self.server)
    }

    /// The next call of `method` answers with `code`.
    pub fn once(&self, method: &str, code: Code) {
        self.state
            .once
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default()
            .push_back(code);
    }

    pub fn calls(&self, method: &str) -> Vec<GrpcCall> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }
}
