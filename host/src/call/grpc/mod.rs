//! gRPC branch calls (docs/api.md §4.7): the stored payload bytes go out as the request message
//! unchanged (a pass-through codec, no re-encoding: `codec.rs`), with dtm's metadata; the reply
//! is ignored and the status code classified (§3.5). One lazily connected channel per server,
//! reused. Where a call goes (the driver's URL split, resolution, balancing) is `resolve.rs`.

mod codec;
mod resolve;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

pub use codec::RawCodec;
use resolve::{Routing, SERVER_CACHE_LIMIT};

use super::{BranchCall, CallError, CallResult};
use crate::config::Balancing;
use crate::drivers::{Driver, GrpcCall, ServerMethod};
use crate::metrics::Metrics;

pub struct GrpcCaller {
    balancing: Balancing,
    metrics: Arc<Metrics>,
    /// Per endpoint, whichever driver resolved it: a `host:port` is dialed the same way.
    channels: Mutex<HashMap<String, Channel>>,
    routing: RwLock<Arc<Routing>>,
}

impl GrpcCaller {
    pub fn new(driver: Arc<dyn Driver>, balancing: Balancing, metrics: Arc<Metrics>) -> Self {
        Self {
            balancing,
            channels: Mutex::default(),
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

    fn channel(&self, endpoint: &str) -> Result<Channel, CallError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| CallError::ChannelCachePoisoned)?;
        if let Some(channel) = channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|error| CallError::BadServer {
                endpoint: endpoint.to_owned(),
                error,
            })?
            .connect_lazy();
        if channels.len() >= SERVER_CACHE_LIMIT {
            channels.clear();
        }
        channels.insert(endpoint.to_owned(), channel.clone());
        Ok(channel)
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
        let channel = self.channel(&endpoint)?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| CallResult::Error(format!("gRPC server {endpoint} not ready: {e}")))?;
        let mut request = tonic::Request::new(payload);
        request.set_timeout(call.timeout);
        let metadata = request.metadata_mut();
        let dtm = [
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
        let outcome = grpc.unary(request, path, RawCodec).await;
        if let (Err(status), Some(resolved)) = (&outcome, &resolved) {
            if status.code() == Code::Unavailable {
                resolved.mark_stale();
            }
        }
        outcome.map(|_| ()).map_err(classify)
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
