//! dtm-client: start dtm transactions from Rust against dtm-host (or dtm), over HTTP or gRPC.
//!
//! Addresses with a microservice-driver scheme (`protocol1:///localhost:36790`) are split and
//! resolved by the same wasm driver the server runs: [`Client::use_driver`] loads it exactly as
//! dtm-host does.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dtm_client::ClientError> {
//! let dtm = dtm_client::Client::grpc("localhost:36790");
//! let gid = dtm.new_gid().await?;
//! dtm.saga(&gid)
//!     .add("localhost:58081/busi.Busi/TransOut", "localhost:58081/busi.Busi/TransOutRevert", b"{}".to_vec())
//!     .add("localhost:58081/busi.Busi/TransIn", "localhost:58081/busi.Busi/TransInRevert", b"{}".to_vec())
//!     .submit()
//!     .await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use dtm_host::call::grpc::RawCodec;
use dtm_host::drivers::{self, DefaultDriver, Driver, DriverError, Grants, HttpPolicy, WasmDriver};
use dtm_host::proto::dtmgimp::dtm_client::DtmClient;
use dtm_host::proto::dtmgimp::{DtmBranchRequest, DtmRequest, DtmTransOptions};
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator answered FAILURE: the transaction cannot go on.
    #[error("FAILURE: {0}")]
    Failure(String),
    /// The coordinator answered ONGOING.
    #[error("ONGOING: {0}")]
    Ongoing(String),
    #[error("dtm call failed: {0}")]
    Call(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

type Result<T> = std::result::Result<T, ClientError>;

/// How long a driver may wait for the registry it asks.
const REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

enum Transport {
    /// Base URL such as `http://localhost:36789/api/dtmsvr`.
    Http { base: String, http: reqwest::Client },
    /// `host:port`, or an address with a driver scheme.
    Grpc { server: String },
}

/// A handle on one coordinator.
pub struct Client {
    transport: Transport,
    driver: Arc<dyn Driver>,
}

impl Client {
    pub fn http(base: &str) -> Self {
        let transport = Transport::Http {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        };
        Self {
            transport,
            driver: Arc::new(DefaultDriver::default()),
        }
    }

    pub fn grpc(server: &str) -> Self {
        Self {
            transport: Transport::Grpc {
                server: server.to_owned(),
            },
            driver: Arc::new(DefaultDriver::default()),
        }
    }

    /// Loads a wasm microservice driver, as dtm-host does with `MicroService.DriverPath`; it may
    /// not reach any registry (enough for drivers whose servers name their endpoint, such as
    /// `protocol1:///host:port`).
    pub fn use_driver(self, path: impl AsRef<Path>) -> Result<Self> {
        self.use_driver_with_registry(path, "")
    }

    /// Loads a wasm microservice driver that may ask `registry` (a registry URL such as
    /// `etcd://127.0.0.1:2379`, the way `MicroService.Target` names one) to resolve servers,
    /// e.g. the coordinator's address `etcd://127.0.0.1:2379/dtmservice`.
    pub fn use_driver_with_registry(
        mut self,
        path: impl AsRef<Path>,
        registry: &str,
    ) -> Result<Self> {
        self.driver = load_driver(path.as_ref(), registry)?;
        Ok(self)
    }

    /// A channel to `server`: dialed directly, or through its driver's resolution.
    async fn channel(&self, server: &str) -> Result<Channel> {
        let endpoint =
            if drivers::needs_resolving(self.driver.as_ref(), server) {
                let resolution = self.driver.resolve(server).await?;
                resolution.endpoints.into_iter().next().ok_or_else(|| {
                    ClientError::Call(format!("'{server}' resolved to no endpoint"))
                })?
            } else {
                server.to_owned()
            };
        Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| ClientError::Call(format!("bad address '{endpoint}': {e}")))?
            .connect()
            .await
            .map_err(|e| ClientError::Call(format!("cannot reach {endpoint}: {e}")))
    }

    async fn dtm(&self) -> Result<DtmClient<Channel>> {
        match &self.transport {
            Transport::Grpc { server } => Ok(DtmClient::new(self.channel(server).await?)),
            Transport::Http { .. } => Err(ClientError::Call("not a gRPC client".into())),
        }
    }

    /// Calls any gRPC method named by a branch-style URL (`protocol1:///host:port/pkg.Svc/Method`),
    /// split and resolved by the driver; request and reply are raw message bytes.
    pub async fn grpc_call(&self, url: &str, request: Vec<u8>) -> Result<Vec<u8>> {
        let split = self.driver.parse_server_method(url)?;
        let path = split
            .method
            .parse()
            .map_err(|e| ClientError::Call(format!("bad method '{}': {e}", split.method)))?;
        let mut grpc = tonic::client::Grpc::new(self.channel(&split.server).await?);
        grpc.ready()
            .await
            .map_err(|e| ClientError::Call(e.to_string()))?;
        let reply = grpc
            .unary(tonic::Request::new(request), path, RawCodec)
            .await
            .map_err(status)?;
        Ok(reply.into_inner())
    }

    pub async fn new_gid(&self) -> Result<String> {
        match &self.transport {
            Transport::Http { .. } => {
                let reply = self.http_call("GET", "newGid", Value::Null).await?;
                Ok(reply["gid"].as_str().unwrap_or_default().to_owned())
            }
            Transport::Grpc { .. } => Ok(self
                .dtm()
                .await?
                .new_gid(())
                .await
                .map_err(status)?
                .into_inner()
                .gid),
        }
    }

    async fn http_call(&self, method: &str, route: &str, body: Value) -> Result<Value> {
        let Transport::Http { base, http } = &self.transport else {
            return Err(ClientError::Call("not an HTTP client".into()));
        };
        let url = format!("{base}/{route}");
        let request = if method == "GET" {
            http.get(&url)
        } else {
            http.post(&url).json(&body)
        };
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Call(e.to_string()))?;
        let code = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Call(e.to_string()))?;
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = reply["message"].as_str().unwrap_or(&text).to_owned();
        match code {
            200 if !text.contains("FAILURE") => Ok(reply),
            425 => Err(ClientError::Ongoing(message)),
            409 | 200 => Err(ClientError::Failure(message)),
            _ => Err(ClientError::Call(format!("HTTP {code}: {message}"))),
        }
    }

    /// Sends one transaction request (`prepare`, `submit` or `abort`) over the client's wire.
    async fn send(&self, op: &str, request: TransRequest) -> Result<()> {
        if let Transport::Http { .. } = self.transport {
            let payloads = request
                .payloads
                .iter()
                .map(|p| {
                    String::from_utf8(p.clone())
                        .map_err(|_| ClientError::Call("HTTP payloads must be UTF-8 text".into()))
                })
                .collect::<Result<Vec<_>>>()?;
            let body = json!({
                "gid": request.gid, "trans_type": request.trans_type, "steps": request.steps, "payloads": payloads,
                "query_prepared": request.query_prepared, "wait_result": request.wait_result, "custom_data": request.custom_data,
            });
            return self.http_call("POST", op, body).await.map(|_| ());
        }
        let grpc_request = DtmRequest {
            gid: request.gid,
            trans_type: request.trans_type.into(),
            steps: Value::from(request.steps).to_string(),
            bin_payloads: request.payloads,
            query_prepared: request.query_prepared,
            customed_data: request.custom_data,
            trans_options: Some(DtmTransOptions {
                wait_result: request.wait_result,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut dtm = self.dtm().await?;
        let outcome = match op {
            "prepare" => dtm.prepare(grpc_request).await,
            "abort" => dtm.abort(grpc_request).await,
            _ => dtm.submit(grpc_request).await,
        };
        outcome.map(|_| ()).map_err(status)
    }

    /// A saga: actions in order, compensations in reverse on failure.
    pub fn saga(&self, gid: &str) -> Saga<'_> {
        Saga {
            client: self,
            request: TransRequest::new(gid, "saga"),
        }
    }

    /// A 2-phase message: actions delivered once the local transaction committed.
    pub fn msg(&self, gid: &str, query_prepared: &str) -> Msg<'_> {
        let mut request = TransRequest::new(gid, "msg");
        request.query_prepared = query_prepared.to_owned();
        Msg {
            client: self,
            request,
        }
    }

    /// A TCC transaction: register each branch after its try succeeded, then submit or abort.
    pub fn tcc(&self, gid: &str) -> Tcc<'_> {
        Tcc {
            client: self,
            gid: gid.to_owned(),
        }
    }
}

/// Loads a wasm driver that may reach `registry` (and resolves against it).
fn load_driver(path: &Path, registry: &str) -> Result<Arc<dyn Driver>> {
    let grants = Grants {
        http: HttpPolicy::new([registry], REGISTRY_TIMEOUT),
        registry: registry.to_owned(),
        env: drivers::driver_env(),
    };
    let driver = WasmDriver::load(path, Default::default(), grants, Default::default(), None)?;
    Ok(Arc::new(driver))
}

fn status(s: tonic::Status) -> ClientError {
    match s.code() {
        Code::Aborted => ClientError::Failure(s.message().to_owned()),
        Code::FailedPrecondition => ClientError::Ongoing(s.message().to_owned()),
        _ => ClientError::Call(format!("{:?}: {}", s.code(), s.message())),
    }
}

#[derive(Clone)]
struct TransRequest {
    gid: String,
    trans_type: &'static str,
    steps: Vec<Value>,
    payloads: Vec<Vec<u8>>,
    query_prepared: String,
    custom_data: String,
    wait_result: bool,
}

impl TransRequest {
    fn new(gid: &str, trans_type: &'static str) -> Self {
        Self {
            gid: gid.to_owned(),
            trans_type,
            steps: Vec::new(),
            payloads: Vec::new(),
            query_prepared: String::new(),
            custom_data: String::new(),
            wait_result: false,
        }
    }
}

pub struct Saga<'a> {
    client: &'a Client,
    request: TransRequest,
}

impl Saga<'_> {
    pub fn add(mut self, action: &str, compensate: &str, payload: Vec<u8>) -> Self {
        self.request
            .steps
            .push(json!({"action": action, "compensate": compensate}));
        self.request.payloads.push(payload);
        self
    }

    /// Answer only after the saga finished (or could not finish in one round).
    pub fn wait_result(mut self, wait: bool) -> Self {
        self.request.wait_result = wait;
        self
    }

    /// Run independent steps in parallel (`custom_data.concurrent`).
    pub fn concurrent(mut self) -> Self {
        self.request.custom_data = json!({"concurrent": true}).to_string();
        self
    }

    pub async fn submit(self) -> Result<()> {
        self.client.send("submit", self.request).await
    }
}

pub struct Msg<'a> {
    client: &'a Client,
    request: TransRequest,
}

impl Msg<'_> {
    pub fn add(mut self, action: &str, payload: Vec<u8>) -> Self {
        self.request.steps.push(json!({"action": action}));
        self.request.payloads.push(payload);
        self
    }

    pub fn wait_result(mut self, wait: bool) -> Self {
        self.request.wait_result = wait;
        self
    }

    /// Announces the message before the local transaction; the coordinator checks back at
    /// `query_prepared` if `submit` never comes.
    pub async fn prepare(&self) -> Result<()> {
        self.client.send("prepare", self.request.clone()).await
    }

    pub async fn submit(self) -> Result<()> {
        self.client.send("submit", self.request).await
    }
}

pub struct Tcc<'a> {
    client: &'a Client,
    gid: String,
}

impl Tcc<'_> {
    pub async fn prepare(&self) -> Result<()> {
        self.client
            .send("prepare", TransRequest::new(&self.gid, "tcc"))
            .await
    }

    /// Records a branch whose try succeeded: the coordinator confirms or cancels it later.
    pub async fn register(
        &self,
        branch_id: &str,
        confirm: &str,
        cancel: &str,
        data: Vec<u8>,
    ) -> Result<()> {
        if let Transport::Http { .. } = self.client.transport {
            let data = String::from_utf8(data)
                .map_err(|_| ClientError::Call("HTTP branch data must be UTF-8 text".into()))?;
            let body = json!({"gid": self.gid, "trans_type": "tcc", "branch_id": branch_id, "confirm": confirm, "cancel": cancel, "data": data});
            return self
                .client
                .http_call("POST", "registerBranch", body)
                .await
                .map(|_| ());
        }
        let request = DtmBranchRequest {
            gid: self.gid.clone(),
            trans_type: "tcc".into(),
            branch_id: branch_id.into(),
            data: [
                ("confirm".to_owned(), confirm.to_owned()),
                ("cancel".to_owned(), cancel.to_owned()),
            ]
            .into(),
            busi_payload: data,
            ..Default::default()
        };
        self.client
            .dtm()
            .await?
            .register_branch(request)
            .await
            .map(|_| ())
            .map_err(status)
    }

    pub async fn submit(&self) -> Result<()> {
        self.client
            .send("submit", TransRequest::new(&self.gid, "tcc"))
            .await
    }

    pub async fn abort(&self) -> Result<()> {
        self.client
            .send("abort", TransRequest::new(&self.gid, "tcc"))
            .await
    }
}

/// A business service registered through a wasm driver in the registry `target` names, the way
/// its framework's own servers register (go-zero: `etcd://127.0.0.1:2379/trans.rpc` →
/// key `trans.rpc/<lease>` = endpoint), and kept alive until [`ServiceRegistration::deregister`].
pub struct ServiceRegistration {
    driver: Arc<dyn Driver>,
    stop: tokio::sync::watch::Sender<bool>,
    keeper: tokio::task::JoinHandle<drivers::Registration>,
}

impl ServiceRegistration {
    /// Registers `endpoint` (`host:port`) at `target` through the driver at `driver_path`.
    pub async fn register(
        driver_path: impl AsRef<Path>,
        target: &str,
        endpoint: &str,
    ) -> Result<Self> {
        let driver = load_driver(driver_path.as_ref(), target)?;
        let registration = driver.register_service(target, endpoint).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let keeper = tokio::spawn(drivers::keep_alive(driver.clone(), registration, stopped));
        Ok(Self {
            driver,
            stop,
            keeper,
        })
    }

    /// Stops renewing and removes the registration.
    pub async fn deregister(self) -> Result<()> {
        let _ = self.stop.send(true);
        let registration = self
            .keeper
            .await
            .map_err(|e| ClientError::Call(format!("keep-alive task failed: {e}")))?;
        Ok(self.driver.deregister(&registration.state).await?)
    }
}
