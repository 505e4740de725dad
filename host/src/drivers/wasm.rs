//! A driver loaded from a WebAssembly component of the world `driver` (`wit/driver.wit`).
//!
//! Compiled once (and cached on disk), pre-linked into an `InstancePre`, and called through a
//! small pool of instances. Every call runs under an epoch deadline and a memory cap; a call
//! that traps or overruns fails alone and its instance is thrown away, so the next call gets a
//! fresh one. Calls that may use the network (`register-service`, `keep-alive`, `deregister`,
//! `resolve`, `rewrite-http`) run on blocking threads; `parse-server-method` and `rewrite-grpc`
//! run inline and may not.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::{
    check_grpc_call, check_http_target, check_resolution, check_server_method, floor, DriverLog,
    KEEP_ALIVE_FLOOR, REFRESH_FLOOR,
};
use super::{
    cache, Activation, Driver, DriverError, Grants, GrpcCall, HttpPolicy, HttpTarget, Registration,
    Resolution, ServerMethod,
};
use crate::clock::Clock;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({ world: "driver", path: "../wit" });
}

use bindings::dtm::driver::types::{HttpRequest, HttpResponse, LogLevel};
use bindings::{Driver as Bindings, DriverPre};

/// How often the engine's epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-call limits of a wasm driver.
#[derive(Debug, Clone, Copy)]
pub struct WasmLimits {
    /// Longest a call may run on the CPU (time waiting in `send-http` not counted).
    pub call_timeout: Duration,
    /// Longest a call may take in all, `send-http` waits included.
    pub wall_time: Duration,
    /// Most linear memory an instance may have.
    pub memory_bytes: usize,
}

impl Default for WasmLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(100),
            wall_time: Duration::from_secs(9),
            memory_bytes: 64 << 20,
        }
    }
}

/// Most `send-http` requests one driver call may make (a registration or a resolution takes a
/// few).
const MAX_HTTP_PER_CALL: u32 = 32;

/// What a driver instance's store holds: an empty WASI context and the host capabilities.
struct DriverState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    host: Arc<HostCapabilities>,
    /// Whether this call runs on a thread that may wait for the network.
    network: bool,
    /// Time this call spent waiting in `send-http`, not yet credited to its deadline: the
    /// deadline limits the driver's own running time, not the registry's.
    host_wait: Duration,
    /// When this call started, for its wall-time limit.
    started: Instant,
    /// `send-http` requests this call made.
    http_calls: u32,
    wall_time: Duration,
}

/// The capabilities shared by every instance of one driver.
struct HostCapabilities {
    driver: String,
    clock: Arc<Clock>,
    http: HttpPolicy,
    /// What `env` answers; replaced only by conformance runs (`WasmDriver::set_env`).
    env: RwLock<BTreeMap<String, String>>,
    client: reqwest::Client,
    log: DriverLog,
}

impl WasiView for DriverState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::dtm::driver::types::Host for DriverState {}

impl bindings::dtm::driver::host::Host for DriverState {
    fn log(&mut self, level: LogLevel, message: String) {
        let driver = self.host.driver.as_str();
        let Some((message, suppressed)) = self.host.log.admit(message, Instant::now()) else {
            return;
        };
        if suppressed > 0 {
            tracing::warn!(
                driver,
                suppressed,
                "driver log messages suppressed (rate limit)"
            );
        }
        match level {
            LogLevel::Debug => tracing::debug!(driver, message, "driver log"),
            LogLevel::Info => tracing::info!(driver, message, "driver log"),
            LogLevel::Warn => tracing::warn!(driver, message, "driver log"),
            LogLevel::Error => tracing::error!(driver, message, "driver log"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.host.clock.now_ms().max(0) as u64
    }

    // `String`, not a typed error: this is the WIT contract's `result<http-response, string>`,
    // and the text is what the guest receives.
    fn send_http(&mut self, request: HttpRequest) -> Result<HttpResponse, String> {
        if !self.network {
            return Err("send-http is not available in parse-server-method".into());
        }
        if self.http_calls >= MAX_HTTP_PER_CALL {
            return Err(format!(
                "send-http refused: a driver call may send at most {MAX_HTTP_PER_CALL} requests"
            ));
        }
        if self.started.elapsed() >= self.wall_time {
            return Err(format!(
                "send-http refused: the driver call has used its {} ms",
                self.wall_time.as_millis()
            ));
        }
        self.http_calls += 1;
        tracing::debug!(
            driver = self.host.driver,
            method = request.method,
            url = request.url,
            "driver HTTP request"
        );
        let started = Instant::now();
        let response = self.host.http.send(&self.host.client, request);
        self.host_wait += started.elapsed();
        response.map_err(|e| e.to_string())
    }

    fn env(&mut self, name: String) -> Option<String> {
        self.host.env.read().ok()?.get(&name).cloned()
    }

    fn local_ipv4(&mut self) -> Option<String> {
        super::local_ipv4()
    }
}

/// One live instance and its store.
struct Instance {
    store: Store<DriverState>,
    bindings: Bindings,
}

struct Runtime {
    engine: Engine,
    pre: DriverPre<DriverState>,
    host: Arc<HostCapabilities>,
    limits: WasmLimits,
    idle: Mutex<Vec<Instance>>,
}

/// One engine per process: its epoch ticker thread lives as long as the process. The error is
/// kept as its text: the `OnceLock` hands every caller a clone, and wasmtime's error is not
/// `Clone`; the only caller turns it into a `DriverError::Load` reason anyway.
fn engine() -> Result<Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model(true).epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|e| e.to_string())?;
            let ticker = engine.weak();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while let Some(engine) = ticker.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(engine)
        })
        .clone()
}

impl Runtime {
    fn instantiate(&self) -> wasmtime::Result<Instance> {
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = DriverState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .instances(16)
                .build(),
            host: self.host.clone(),
            network: false,
            host_wait: Duration::ZERO,
            started: Instant::now(),
            http_calls: 0,
            wall_time: self.limits.wall_time,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(u64::MAX / 2);
        // At the deadline: extend it by the time spent waiting on the host, unless the call
        // has used its wall time, else stop the call.
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            let waited = std::mem::take(&mut state.host_wait);
            if waited.is_zero() || state.started.elapsed() >= state.wall_time {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(ticks(waited)))
        });
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(Instance { store, bindings })
    }

    /// Runs `f` on an idle instance (or a new one) under the call limits, off the async
    /// runtime's threads (WASI's synchronous streams block on the runtime). An instance whose
    /// call failed is dropped: after a trap its state cannot be trusted.
    fn call<R: Send>(
        &self,
        name: &'static str,
        network: bool,
        f: impl FnOnce(&Bindings, &mut Store<DriverState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R, DriverError> {
        off_runtime(|| self.call_here(name, network, f))
    }

    fn call_here<R>(
        &self,
        name: &'static str,
        network: bool,
        f: impl FnOnce(&Bindings, &mut Store<DriverState>) -> wasmtime::Result<R>,
    ) -> Result<R, DriverError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate().map_err(|e| trap(name, self.limits, e))?,
        };
        instance
            .store
            .set_epoch_deadline(ticks(self.limits.call_timeout));
        let state = instance.store.data_mut();
        state.network = network;
        state.host_wait = Duration::ZERO;
        state.started = Instant::now();
        state.http_calls = 0;
        let result =
            f(&instance.bindings, &mut instance.store).map_err(|e| trap(name, self.limits, e))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
        Ok(result)
    }
}

/// Epoch ticks covering `time`.
fn ticks(time: Duration) -> u64 {
    time.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64
}

/// Runs `f` where blocking is allowed: as is outside a runtime or on a blocking thread, via
/// `block_in_place` on a multi-thread runtime's worker, on a scoped thread otherwise.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

fn trap(call: &'static str, limits: WasmLimits, error: wasmtime::Error) -> DriverError {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return DriverError::Timeout {
            call,
            limit_ms: limits.call_timeout.as_millis() as u64,
        };
    }
    DriverError::Trap {
        call,
        reason: format!("{error:#}"),
    }
}

/// A loaded wasm driver.
pub struct WasmDriver {
    name: String,
    /// The SHA-256 of the component file, in hex.
    sha256: String,
    activation: Activation,
    /// `MicroService.Target`, for `resolve` and `rewrite-http`.
    registry: Arc<str>,
    runtime: Arc<Runtime>,
}

/// What `dtm-host driver inspect` reports.
#[derive(Debug)]
pub struct Inspection {
    pub name: String,
    pub schemes: Vec<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// Loads a driver without configuration, to describe it.
pub fn inspect(path: &Path) -> Result<Inspection, DriverError> {
    let driver = WasmDriver::load(
        path,
        WasmLimits::default(),
        Grants::default(),
        Arc::default(),
        None,
    )?;
    let engine = &driver.runtime.engine;
    let component_type = driver
        .runtime
        .pre
        .instance_pre()
        .component()
        .component_type();
    Ok(Inspection {
        name: driver.name,
        schemes: driver.activation.schemes,
        exports: component_type
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect(),
        imports: component_type
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect(),
    })
}

impl WasmDriver {
    pub fn load(
        path: &Path,
        limits: WasmLimits,
        grants: Grants,
        clock: Arc<Clock>,
        cache_dir: Option<&Path>,
    ) -> Result<Self, DriverError> {
        let bytes = std::fs::read(path).map_err(|e| DriverError::Load {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(path, &bytes, limits, grants, clock, cache_dir)
    }

    /// Compiles and activates the component `bytes`, read from `path` (named in errors and
    /// logs): a reload reads the file once, so what is checked is what runs.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        limits: WasmLimits,
        grants: Grants,
        clock: Arc<Clock>,
        cache_dir: Option<&Path>,
    ) -> Result<Self, DriverError> {
        let fail = |reason: String| DriverError::Load {
            path: path.display().to_string(),
            reason,
        };
        let sha256 = cache::sha256_hex(bytes);
        let engine = engine().map_err(fail)?;
        let (component, cached) = cache::compile(&engine, bytes, &sha256, cache_dir)
            .map_err(|e| fail(format!("not a WebAssembly component: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| fail(e.to_string()))?;
        Bindings::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| fail(e.to_string()))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| fail(format!("not a driver of {}: {e:#}", super::CONTRACT)))?;
        let pre = DriverPre::new(instance_pre)
            .map_err(|e| fail(format!("not a driver of {}: {e:#}", super::CONTRACT)))?;
        let client = HttpPolicy::client().map_err(|e| fail(e.to_string()))?;
        let host = Arc::new(HostCapabilities {
            driver: path.display().to_string(),
            clock,
            http: grants.http,
            env: RwLock::new(grants.env),
            client,
            log: DriverLog::default(),
        });
        let runtime = Arc::new(Runtime {
            engine,
            pre,
            host,
            limits,
            idle: Mutex::new(Vec::new()),
        });
        let name = runtime.call("name", false, |b, s| b.call_name(s))?;
        let activation = runtime.call("activate", false, |b, s| b.call_activate(s))?;
        tracing::info!(driver = name, path = %path.display(), sha256, cached, "wasm driver loaded");
        Ok(Self {
            name,
            sha256,
            activation: Activation {
                schemes: activation.schemes,
                rewrites_http: activation.rewrites_http,
                rewrites_grpc: activation.rewrites_grpc,
            },
            registry: grants.registry.into(),
            runtime,
        })
    }

    /// Replaces the environment variables `env` answers: for conformance cases that need some.
    pub fn set_env(&self, env: BTreeMap<String, String>) {
        if let Ok(mut current) = self.runtime.host.env.write() {
            *current = env;
        }
    }

    /// Runs a network-capable call on a blocking thread. The inner `Result<R, String>` is the
    /// guest's answer as the WIT contract types it (`result<_, string>`): its refusal text.
    async fn blocking<R: Send + 'static>(
        &self,
        name: &'static str,
        f: impl FnOnce(&Bindings, &mut Store<DriverState>) -> wasmtime::Result<Result<R, String>>
            + Send
            + 'static,
    ) -> Result<R, DriverError> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.call(name, true, f))
            .await
            .map_err(|e| DriverError::Trap {
                call: name,
                reason: e.to_string(),
            })?
            .and_then(|r| r.map_err(DriverError::Refused))
    }
}

fn millis(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

fn registration(
    r: bindings::dtm::driver::types::Registration,
) -> Result<Registration, DriverError> {
    super::limits::check_state(&r.state)?;
    Ok(Registration {
        state: r.state,
        keep_alive: millis(r.keep_alive_ms).map(|t| floor(t, KEEP_ALIVE_FLOOR)),
    })
}

#[async_trait]
impl Driver for WasmDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn sha256(&self) -> Option<&str> {
        Some(&self.sha256)
    }

    fn activation(&self) -> &Activation {
        &self.activation
    }

    fn parse_server_method(&self, uri: &str) -> Result<ServerMethod, DriverError> {
        self.runtime
            .call("parse-server-method", false, |b, s| {
                b.call_parse_server_method(s, uri)
            })?
            .map_err(DriverError::Refused)
            .and_then(|sm| {
                check_server_method(&sm.server, &sm.method)?;
                Ok(ServerMethod {
                    server: sm.server,
                    method: sm.method,
                })
            })
    }

    async fn register_service(
        &self,
        target: &str,
        endpoint: &str,
    ) -> Result<Registration, DriverError> {
        let (target, endpoint) = (target.to_owned(), endpoint.to_owned());
        self.blocking("register-service", move |b, s| {
            b.call_register_service(s, &target, &endpoint)
        })
        .await
        .and_then(registration)
    }

    async fn keep_alive(&self, state: &str) -> Result<Registration, DriverError> {
        let state = state.to_owned();
        self.blocking("keep-alive", move |b, s| b.call_keep_alive(s, &state))
            .await
            .and_then(registration)
    }

    async fn deregister(&self, state: &str) -> Result<(), DriverError> {
        let state = state.to_owned();
        self.blocking("deregister", move |b, s| b.call_deregister(s, &state))
            .await
    }

    async fn resolve(&self, server: &str) -> Result<Resolution, DriverError> {
        let (server, registry) = (server.to_owned(), self.registry.clone());
        self.blocking("resolve", move |b, s| b.call_resolve(s, &server, &registry))
            .await
            .and_then(|r| {
                check_resolution(&r.endpoints)?;
                Ok(Resolution {
                    endpoints: r.endpoints,
                    refresh: millis(r.refresh_ms).map(|t| floor(t, REFRESH_FLOOR)),
                })
            })
    }

    async fn rewrite_http(&self, url: &str) -> Result<Option<HttpTarget>, DriverError> {
        let (url, registry) = (url.to_owned(), self.registry.clone());
        self.blocking("rewrite-http", move |b, s| {
            b.call_rewrite_http(s, &url, &registry)
        })
        .await
        .and_then(|target| {
            let Some(t) = target else { return Ok(None) };
            let target = HttpTarget {
                url: t.url,
                headers: t.headers,
            };
            check_http_target(&target)?;
            Ok(Some(target))
        })
    }

    fn rewrite_grpc(
        &self,
        server: &str,
        method: &str,
        payload: &[u8],
    ) -> Result<Option<GrpcCall>, DriverError> {
        self.runtime
            .call("rewrite-grpc", false, |b, s| {
                b.call_rewrite_grpc(s, server, method, payload)
            })?
            .map_err(DriverError::Refused)
            .and_then(|call| {
                let Some(c) = call else { return Ok(None) };
                let call = GrpcCall {
                    method: c.method,
                    payload: c.payload,
                    metadata: c.metadata,
                };
                check_grpc_call(&call)?;
                Ok(Some(call))
            })
    }
}
