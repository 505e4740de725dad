//! gRPC branch calls (docs/api.md §4.7): the stored payload bytes go out as the request message
//! unchanged (a pass-through codec, no re-encoding: `codec.rs`), with dtm's metadata; the reply
//! is ignored and the status code classified (§3.5). Where a call goes (the driver's URL split,
//! resolution, balancing) is `resolve.rs`.
//!
//! Calls go out on hyper's pooled HTTP/2 client directly (one connection per server, connected
//! on first use and shared by every call to it), not through a tonic `Channel`: a channel hands
//! each request to a worker task through a queue, a hop per call that showed in profiles.

mod codec;
mod resolve;

use std::sync::{Arc, PoisonError, RwLock};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::{Code, Status};
use tower::ServiceExt as _;

pub use codec::RawCodec;
use resolve::Routing;

use super::{BranchCall, CallError, CallResult};
use crate::config::Balancing;
use crate::drivers::{Driver, GrpcCall, ServerMethod};
use crate::metrics::Metrics;

type GrpcClient = Client<HttpConnector, tonic::body::Body>;

pub struct GrpcCaller {
    balancing: Balancing,
    metrics: Arc<Metrics>,
    /// Pools one HTTP/2 connection per `host:port`, whichever driver resolved it.
    client: GrpcClient,
    routing: RwLock<Arc<Routing>>,
}

impl GrpcCaller {
    pub fn new(driver: Arc<dyn Driver>, balancing: Balancing, metrics: Arc<Metrics>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(tcp);
        Self {
            balancing,
            client,
            routing: RwLock::new(Routing::new(driver, metrics.clone())),
            metrics,
        }
    }

    fn routing(&self) -> Arc<Routing> {
        self.routing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The driver new calls go through.
    pub fn driver(&self) -> Arc<dyn Driver> {
        self.routing().driver.clone()
    }

    /// Routes new calls through `driver`, with nothing remembered from the previous one;
    /// calls under way finish with the previous one.
    pub fn replace_driver(&self, driver: Arc<dyn Driver>) {
        let fresh = Routing::new(driver, self.metrics.clone());
        *self.routing.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// The driver's split of a branch URL, remembered.
    pub fn server_method(&self, url: &str) -> Result<ServerMethod, CallError> {
        self.routing().server_method(url)
    }

    /// The endpoint the next call to `server` goes to (resolved through the driver, cached).
    pub async fn next_endpoint(&self, server: &str) -> Result<String, CallError> {
        self.routing()
            .endpoint(server, self.balancing)
            .await
            .map(|(endpoint, _)| endpoint)
    }

    pub async fn call(&self, call: &BranchCall) -> CallResult {
        match self.try_call(call).await {
            Ok(()) => CallResult::Success,
            Err(result) => result,
        }
    }

    async fn try_call(&self, call: &BranchCall) -> Result<(), CallResult> {
        // One routing for the whole call: a driver swapped meanwhile serves the next calls.
        let routing = self.routing();
        let ServerMethod { server, method } = routing.server_method(&call.url)?;
        let rewritten = if routing.driver.activation().rewrites_grpc {
            routing
                .driver
                .rewrite_grpc(&server, &method, &call.body)
                .map_err(|e| {
                    CallResult::Error(format!("driver could not route '{}': {e}", call.url))
                })?
        } else {
            None
        };
        let (method, payload, driver_metadata) = match rewritten {
            Some(GrpcCall {
                method,
                payload,
                metadata,
            }) => (method, payload, metadata),
            None => (method, call.body.clone(), Vec::new()),
        };
        let path = method
            .parse::<http::uri::PathAndQuery>()
            .map_err(|e| CallResult::Error(format!("bad gRPC method '{method}': {e}")))?;
        let (endpoint, resolved) = routing.endpoint(&server, self.balancing).await?;
        let origin = format!("http://{endpoint}")
            .parse::<Uri>()
            .map_err(|error| CallError::BadServer {
                endpoint: endpoint.clone(),
                error,
            })?;
        let client = self.client.clone().map_err(unavailable_if_unreachable);
        let mut grpc = tonic::client::Grpc::with_origin(client, origin);
        let mut request = tonic::Request::new(payload);
        request.set_timeout(call.timeout);
        let metadata = request.metadata_mut();
        let dtm = [
            (
                "user-agent",
                concat!("dtm-host/", env!("CARGO_PKG_VERSION")),
            ),
            ("dtm-gid", call.gid.as_str()),
            ("dtm-trans_type", call.trans_type.as_str()),
            ("dtm-branch_id", call.branch_id.as_str()),
            ("dtm-op", call.op.as_str()),
            ("dtm-dtm", ""),
        ];
        let headers = call
            .headers
            .iter()
            .chain(driver_metadata.iter().map(|(k, v)| (k, v)))
            .map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in dtm.into_iter().chain(headers) {
            let key = AsciiMetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
                .map_err(|_| CallResult::Error(format!("invalid branch header '{key}'")))?;
            let value = AsciiMetadataValue::try_from(value).map_err(|_| {
                CallResult::Error(format!("invalid value of branch header '{key}'"))
            })?;
            metadata.insert(key, value);
        }
        // The whole call, connecting included, within the call's timeout (the server is told
        // it as `grpc-timeout`); a call that outlasts it ends as Go's client ends it.
        let outcome = tokio::time::timeout(call.timeout, grpc.unary(request, path, RawCodec))
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "no answer within {:?}",
                    call.timeout
                )))
            });
        if let (Err(status), Some(resolved)) = (&outcome, &resolved) {
            if status.code() == Code::Unavailable {
                resolved.mark_stale();
            }
        }
        outcome.map(|_| ()).map_err(classify)
    }
}

/// A server that cannot be reached is `Unavailable` (as a gRPC client reports it, and what
/// makes a resolved endpoint list stale); any other failure is classified from its causes.
fn unavailable_if_unreachable(error: hyper_util::client::legacy::Error) -> Status {
    if error.is_connect() {
        Status::unavailable(super::error::with_causes(&error))
    } else {
        Status::from_error(Box::new(error))
    }
}

/// dtm's rules: `Aborted` is FAILURE (but `Aborted` "ONGOING" is the pre-v1.10 ONGOING),
/// `FailedPrecondition` is ONGOING, every other code is an error to retry.
pub fn classify(status: Status) -> CallResult {
    match status.code() {
        Code::Aborted if status.message() == "ONGOING" => {
            CallResult::Ongoing(status.message().to_owned())
        }
        Code::Aborted => CallResult::Failure(format!("{} FAILURE", status.message())),
        Code::FailedPrecondition => CallResult::Ongoing(status.message().to_owned()),
        code => CallResult::Error(format!("gRPC status {code:?}: {}", status.message())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::drivers::{DriverError, Resolution};

    #[test]
    fn the_default_driver_splits_urls_and_results_are_remembered() {
        let caller = GrpcCaller::new(
            Arc::new(crate::drivers::DefaultDriver::default()),
            Balancing::default(),
            Arc::default(),
        );
        let split = caller
            .server_method("localhost:58081/busi.Busi/TransOut")
            .unwrap();
        assert_eq!(
            (split.server.as_str(), split.method.as_str()),
            ("localhost:58081", "/busi.Busi/TransOut")
        );
        assert_eq!(caller.routing().remembered_splits(), 1);
        assert!(caller
            .server_method("localhost:58081")
            .unwrap_err()
            .to_string()
            .contains("no '/' found"));
        assert!(caller
            .server_method("etcd://x/busi.Busi/TransOut")
            .unwrap_err()
            .to_string()
            .contains("custom scheme"));
    }

    /// A driver that resolves its schemes to one fixed endpoint and splits every URL at its
    /// last `/`, naming itself in the method.
    struct Fixed {
        tag: &'static str,
        activation: crate::drivers::Activation,
        endpoint: &'static str,
    }

    impl Fixed {
        fn driver(tag: &'static str, schemes: &[&str], endpoint: &'static str) -> Arc<dyn Driver> {
            Arc::new(Self {
                tag,
                activation: crate::drivers::Activation {
                    schemes: schemes.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
                endpoint,
            })
        }
    }

    #[async_trait::async_trait]
    impl Driver for Fixed {
        fn name(&self) -> &str {
            self.tag
        }
        fn activation(&self) -> &crate::drivers::Activation {
            &self.activation
        }
        fn parse_server_method(&self, uri: &str) -> Result<ServerMethod, DriverError> {
            let (server, _) = uri.rsplit_once('/').unwrap();
            Ok(ServerMethod {
                server: server.into(),
                method: format!("/{}", self.tag),
            })
        }
        async fn register_service(
            &self,
            _: &str,
            _: &str,
        ) -> Result<crate::drivers::Registration, DriverError> {
            Err(DriverError::Refused("registers nothing".into()))
        }
        async fn keep_alive(&self, _: &str) -> Result<crate::drivers::Registration, DriverError> {
            Err(DriverError::Refused("registers nothing".into()))
        }
        async fn deregister(&self, _: &str) -> Result<(), DriverError> {
            Ok(())
        }
        async fn resolve(&self, _: &str) -> Result<Resolution, DriverError> {
            Ok(Resolution {
                endpoints: vec![self.endpoint.into()],
                refresh: Some(Duration::from_secs(3600)),
            })
        }
        async fn rewrite_http(
            &self,
            _: &str,
        ) -> Result<Option<crate::drivers::HttpTarget>, DriverError> {
            Ok(None)
        }
        fn rewrite_grpc(
            &self,
            _: &str,
            _: &str,
            _: &[u8],
        ) -> Result<Option<GrpcCall>, DriverError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn a_replaced_driver_leaves_no_split_or_resolution_behind() {
        let caller = GrpcCaller::new(
            Fixed::driver("one", &["mesh"], "10.0.0.1:1"),
            Balancing::default(),
            Arc::default(),
        );
        let url = "mesh://svc/busi.Busi/TransOut";
        assert_eq!(caller.server_method(url).unwrap().method, "/one");
        assert_eq!(
            caller.next_endpoint("mesh://svc").await.unwrap(),
            "10.0.0.1:1"
        );

        assert_eq!(caller.driver().name(), "one");
        caller.replace_driver(Fixed::driver("two", &["mesh"], "10.0.0.2:2"));
        assert_eq!(caller.driver().name(), "two");
        assert_eq!(caller.server_method(url).unwrap().method, "/two");
        assert_eq!(
            caller.next_endpoint("mesh://svc").await.unwrap(),
            "10.0.0.2:2",
            "resolved afresh, not the old driver's cached list"
        );

        caller.replace_driver(Fixed::driver("three", &["other"], "10.0.0.3:3"));
        assert_eq!(
            caller.next_endpoint("mesh://svc").await.unwrap(),
            "mesh://svc",
            "no longer one of the driver's schemes: dialed as it is"
        );
        assert_eq!(
            caller.next_endpoint("other://svc").await.unwrap(),
            "10.0.0.3:3"
        );
    }

    fn branch_call(url: String) -> BranchCall {
        BranchCall {
            url,
            body: vec![8, 30],
            gid: "g1".into(),
            trans_type: crate::model::TransType::Saga,
            branch_id: "01".into(),
            op: "action".into(),
            protocol: crate::model::Protocol::Grpc,
            headers: Arc::default(),
            timeout: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_an_absent_one_is_unavailable() {
        let caller = GrpcCaller::new(
            Arc::new(crate::drivers::DefaultDriver::default()),
            Balancing::default(),
            Arc::default(),
        );
        // Takes connections and never says a word.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let result = caller
            .call(&branch_call(format!("{address}/busi.Busi/TransOut")))
            .await;
        assert!(
            matches!(&result, CallResult::Error(e) if e == "gRPC status DeadlineExceeded: no answer within 300ms"),
            "{result:?}"
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let result = caller
            .call(&branch_call(format!("{address}/busi.Busi/TransOut")))
            .await;
        assert!(
            matches!(&result, CallResult::Error(e)
                if e.starts_with("gRPC status Unavailable") && e.contains("Connection refused")),
            "{result:?}"
        );
    }

    #[test]
    fn status_codes_follow_dtm() {
        assert!(
            matches!(classify(Status::aborted("no money")), CallResult::Failure(m) if m.contains("no money"))
        );
        assert!(matches!(
            classify(Status::aborted("ONGOING")),
            CallResult::Ongoing(_)
        ));
        assert!(matches!(
            classify(Status::failed_precondition("wait")),
            CallResult::Ongoing(_)
        ));
        for status in [
            Status::unavailable(""),
            Status::unknown(""),
            Status::internal(""),
            Status::unimplemented(""),
            Status::deadline_exceeded(""),
        ] {
            assert!(matches!(classify(status), CallResult::Error(_)));
        }
    }
}
