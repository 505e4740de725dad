//! Calling business branches: choosing the transport for a URL and classifying what came back
//! as SUCCESS, FAILURE, ONGOING or another (retried) error (docs/api.md §3–4).

pub mod alert;
mod error;
pub mod grpc;
mod http;
mod proxy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Balancing;
use crate::drivers::Driver;
use crate::metrics::Metrics;
use crate::model::{Protocol, TransType};

pub use error::{CallError, ClientError};

/// What a branch call came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    Success,
    /// A definite failure; the text is the detail dtm reports (e.g. `<body> FAILURE`).
    Failure(String),
    /// Still in progress: poll again at the same interval.
    Ongoing(String),
    /// Anything else (network error, timeout, unexpected status): retried with backoff.
    Error(String),
}

/// A call that could not be made is an error to retry; its text is the detail.
impl From<CallError> for CallResult {
    fn from(e: CallError) -> Self {
        Self::Error(e.to_string())
    }
}

impl CallResult {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failure(_) => "FAILURE",
            Self::Ongoing(_) => "ONGOING",
            Self::Error(_) => "ERROR",
        }
    }
}

/// Everything needed for one call to a branch URL.
#[derive(Debug, Clone)]
pub struct BranchCall {
    pub url: String,
    pub body: Vec<u8>,
    pub gid: String,
    pub trans_type: TransType,
    pub branch_id: String,
    pub op: String,
    pub protocol: Protocol,
    pub headers: Arc<BTreeMap<String, String>>,
    pub timeout: Duration,
}

/// Whether `url` is called over HTTP(S) for a transaction of `protocol` (else over gRPC).
pub fn goes_over_http(url: &str, protocol: Protocol) -> bool {
    protocol == Protocol::Http || url.starts_with("http://") || url.starts_with("https://")
}

/// Makes branch calls; holds the pooled connections.
#[derive(Clone)]
pub struct Caller {
    http: http::HttpCaller,
    /// Also holds the driver (see [`Caller::replace_driver`]), with what it resolved.
    grpc: Arc<grpc::GrpcCaller>,
}

impl Caller {
    /// Checks, before anything is stored, that a branch URL can be called over `protocol`: an
    /// `http(s)://` URL always can; any other in an HTTP transaction only if the driver rewrites
    /// HTTP calls (it decides at call time), in a gRPC transaction only if the driver can split
    /// it.
    pub fn check_url(&self, url: &str, protocol: Protocol) -> Result<(), CallError> {
        if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
            return Ok(());
        }
        if protocol != Protocol::Grpc && self.driver().activation().rewrites_http {
            return Ok(());
        }
        if protocol != Protocol::Grpc {
            return Err(CallError::NotHttp(url.to_owned()));
        }
        self.grpc.server_method(url).map(|_| ())
    }
}

impl Caller {
    pub fn new(
        driver: Arc<dyn Driver>,
        balancing: Balancing,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            http: http::HttpCaller::new()?,
            grpc: Arc::new(grpc::GrpcCaller::new(driver, balancing, metrics)),
        })
    }

    /// The microservice driver new calls go through.
    pub fn driver(&self) -> Arc<dyn Driver> {
        self.grpc.driver()
    }

    /// Sends new calls (of this caller and its clones) through `driver`, forgetting what the
    /// previous one split and resolved; calls under way keep the previous one.
    pub fn replace_driver(&self, driver: Arc<dyn Driver>) {
        self.grpc.replace_driver(driver);
    }

    pub async fn call(&self, call: &BranchCall) -> CallResult {
        let result = self.dispatch(call).await;
        let detail = match &result {
            CallResult::Success => "",
            CallResult::Failure(d) | CallResult::Ongoing(d) | CallResult::Error(d) => d.as_str(),
        };
        tracing::debug!(
            gid = call.gid,
            branch_id = call.branch_id,
            op = call.op,
            url = call.url,
            result = result.label(),
            detail,
            "branch called"
        );
        result
    }

    async fn dispatch(&self, call: &BranchCall) -> CallResult {
        if call.url.is_empty() {
            return CallResult::Success;
        }
        if !goes_over_http(&call.url, call.protocol) {
            return self.grpc.call(call).await;
        }
        if call.protocol == Protocol::JsonRpc && call.url.contains("method") {
            return self.http.call_json_rpc(call).await;
        }
        let driver = self.driver();
        if !driver.activation().rewrites_http {
            return self.http.call(call).await;
        }
        match driver.rewrite_http(&call.url).await {
            Ok(None) => self.http.call(call).await,
            Ok(Some(target)) => {
                let mut headers = (*call.headers).clone();
                headers.extend(target.headers);
                let rewritten = BranchCall {
                    url: target.url,
                    headers: Arc::new(headers),
                    ..call.clone()
                };
                self.http.call(&rewritten).await
            }
            Err(e) => CallResult::Error(format!("driver could not route '{}': {e}", call.url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_scheme_are_refused_for_http_transactions() {
        let caller = Caller::new(
            Arc::new(crate::drivers::DefaultDriver::default()),
            Default::default(),
            Arc::default(),
        )
        .unwrap();
        let check_url = |url: &str, protocol| caller.check_url(url, protocol);
        assert!(check_url("localhost:8080/busi", Protocol::Http).is_err());
        assert!(check_url("http://localhost:8080/busi", Protocol::Http).is_ok());
        assert!(check_url("https://x/busi", Protocol::Http).is_ok());
        assert!(check_url("", Protocol::Http).is_ok());
        assert!(check_url("localhost:8080/busi.Busi/TransOut", Protocol::Grpc).is_ok());
        assert!(check_url("localhost:8080", Protocol::Grpc).is_err());
    }
}
