//! Wiring: store, engine, listeners and the cron loop; graceful shutdown on SIGTERM / Ctrl-C.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::api::admin::{AdminState, DriverStatus, DriverStatusFn};
use crate::api::http::{router, HttpState, StartingApp};
use crate::api::metered::MeteredLayer;
use crate::call::alert::AlertHook;
use crate::call::{Caller, ClientError};
use crate::clock::Clock;
use crate::config::Config;
use crate::drivers::{self, Driver, DriverError, DriverSpec, Grants, HttpPolicy, WasmLimits};
use crate::engine::cron::CronSettings;
use crate::engine::schedule::ScheduleConfig;
use crate::engine::{BranchWrites, Engine, Observers};
use crate::health::Readiness;
use crate::metrics::{ApiKind, Metrics};
use crate::reload::DriverReloader;
use crate::shutdown::{self, stopped, Shutdown};
use crate::store::{Store, StoreError, StoreKind, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {key} {addr}: {source}")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Setup(String),
}

/// How the process was started, beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Wipe all stored data first (dtm's `-r`).
    pub reset: bool,
    /// Expose `POST /api/test/clock/advance` (integration tests only).
    pub test_clock: bool,
}

/// Sets the coordinator up, serves until told to stop, then shuts down. Each step is a function
/// below, in the order they run.
pub async fn run(config: Config, options: RunOptions) -> Result<(), ServerError> {
    let stop = shutdown::on_terminate();
    let mut http = HttpPort::new(&config, stop.clone());
    let data_dir = PathBuf::from(&config.store.data_dir);
    let store = open_store(&config, &data_dir, options.reset, &mut http).await?;
    info!(driver = config.store.driver, data_dir = %data_dir.display(), "store ready");

    let clock = Arc::new(Clock::default());
    let metrics = Arc::new(Metrics::new());
    let driver_spec = driver_spec(&config, &data_dir, clock.clone(), metrics.clone());
    let caller = Caller::new(
        load_driver(&driver_spec)?,
        config.grpc_balancing,
        metrics.clone(),
    )?;
    let readiness = Readiness::new(store.clone(), &config.store.driver, caller.clone());
    let engine = build_engine(&config, store, caller.clone(), clock, metrics.clone())?;

    let grpc = grpc_server(
        config.grpc_port,
        engine.clone(),
        metrics.clone(),
        stop.clone(),
    )
    .await?;
    let cron = start_cron(&config, &engine, stop.clone());
    let reloader = start_reloader(&config, driver_spec, &caller, stop).await?;
    let app = http_app(
        &config, &options, &engine, readiness, &caller, &reloader, metrics,
    );
    serve(&config, http, app, grpc).await?;

    shut_down(&config, cron, &engine, &reloader).await;
    Ok(())
}

/// The engine, with the schedule, branch-write mode and alert webhook the configuration sets.
fn build_engine(
    config: &Config,
    store: Arc<dyn Store>,
    caller: Caller,
    clock: Arc<Clock>,
    metrics: Arc<Metrics>,
) -> Result<Arc<Engine>, ServerError> {
    let schedule = ScheduleConfig {
        retry_interval: config.retry_interval,
        timeout_to_fail: config.timeout_to_fail,
        request_timeout: config.request_timeout,
    };
    let alerts = AlertHook::start(
        &config.alert_web_hook,
        config.alert_retry_limit,
        Duration::from_secs(config.request_timeout as u64),
    )?;
    let observers = Observers { metrics, alerts };
    let branch_writes = BranchWrites::from_update_branch_sync(config.update_branch_sync);
    Ok(Engine::new(
        store,
        caller,
        clock,
        schedule,
        branch_writes,
        observers,
        // As many as the recovery loop runs: both are passes in the background.
        usize::try_from(config.trans_cron_concurrency).unwrap_or(1),
    ))
}

/// Listens on the gRPC port and returns the server (service `dtmgimp.Dtm` plus reflection),
/// which serves once awaited and stops with `stop`.
async fn grpc_server(
    port: i64,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) -> Result<impl Future<Output = Result<(), tonic::transport::Error>>, ServerError> {
    let listener = listen("GrpcPort", port).await?;
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder.register_encoded_file_descriptor_set(crate::proto::DESCRIPTORS)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection: {e}")))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection: {e}")))?;
    Ok(tonic::transport::Server::builder()
        .layer(MeteredLayer::new(ApiKind::Grpc, metrics))
        .add_service(crate::api::grpc::service(engine))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped(stop),
        ))
}

/// Starts the recovery loop (`TransCronInterval`, `TransCronConcurrency`).
fn start_cron(config: &Config, engine: &Arc<Engine>, stop: Shutdown) -> JoinHandle<()> {
    tokio::spawn(engine.clone().run_cron(
        CronSettings {
            interval: Duration::from_secs(config.trans_cron_interval as u64),
            concurrency: usize::try_from(config.trans_cron_concurrency).unwrap_or(1),
        },
        stop,
    ))
}

/// Registers the coordinator through the driver and starts reloading the driver on a file
/// change or SIGHUP.
async fn start_reloader(
    config: &Config,
    spec: DriverSpec,
    caller: &Caller,
    stop: Shutdown,
) -> Result<Arc<DriverReloader>, ServerError> {
    let ms = &config.micro_service;
    let reloader =
        Arc::new(DriverReloader::start(spec, caller.clone(), &ms.target, &ms.end_point).await?);
    reloader
        .spawn_triggers(stop)
        .map_err(|e| ServerError::Setup(format!("cannot watch for SIGHUP: {e}")))?;
    Ok(reloader)
}

/// The HTTP API and the admin UI, metered as a whole (labels come from the matched routes).
fn http_app(
    config: &Config,
    options: &RunOptions,
    engine: &Arc<Engine>,
    readiness: Readiness,
    caller: &Caller,
    reloader: &Arc<DriverReloader>,
    metrics: Arc<Metrics>,
) -> axum::Router {
    let state = HttpState {
        engine: engine.clone(),
        max_body_bytes: config.max_body_bytes as usize,
        test_clock: options.test_clock,
        metrics: metrics.clone(),
        readiness: Arc::new(readiness),
    };
    let admin = AdminState::new(
        &config.admin_base_path,
        &config.admin_token,
        driver_status(config, caller.clone()),
        reloader.clone(),
    );
    info!(
        base_path = config.admin_base_path,
        token_required = admin.token_required(),
        "admin UI ready"
    );
    router(state)
        .merge(crate::api::admin::router(admin))
        .layer(MeteredLayer::new(ApiKind::Http, metrics))
}

/// Serves `app` on the HTTP port (open already if the store kept us waiting) and the gRPC
/// server until both stop.
async fn serve(
    config: &Config,
    mut http: HttpPort,
    app: axum::Router,
    grpc: impl Future<Output = Result<(), tonic::transport::Error>>,
) -> Result<(), ServerError> {
    info!(
        http_port = config.http_port,
        grpc_port = config.grpc_port,
        "dtm-host serving"
    );
    http.app.serve(app);
    let http = http.open().await?;
    let (http, grpc) = tokio::join!(http, grpc);
    http.map_err(|e| ServerError::Setup(format!("HTTP server stopped: {e}")))?
        .map_err(|e| ServerError::Setup(format!("HTTP server failed: {e}")))?;
    grpc.map_err(|e| ServerError::Setup(format!("gRPC server failed: {e}")))?;
    Ok(())
}

/// After the listeners stopped: waits for the cron loop, lets running passes finish (up to
/// RequestTimeout + 2 s) and deregisters the coordinator.
async fn shut_down(
    config: &Config,
    cron: JoinHandle<()>,
    engine: &Engine,
    reloader: &DriverReloader,
) {
    info!("shutting down: no new requests; finishing running passes");
    if cron.await.is_err() {
        warn!("cron loop ended abnormally");
    }
    engine
        .shutdown(Duration::from_secs(config.request_timeout as u64 + 2))
        .await;
    reloader.deregister().await;
    info!("stopped");
}

/// The HTTP port. It opens once the coordinator is set up, or earlier when it has to wait for
/// its store: then it answers liveness meanwhile (`StartingApp`).
struct HttpPort {
    app: Arc<StartingApp>,
    port: i64,
    stop: Shutdown,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl HttpPort {
    /// The port `HttpPort` names, not open yet; what it serves before setup ends depends on the
    /// store.
    fn new(config: &Config, stop: Shutdown) -> Self {
        Self {
            app: StartingApp::new(&config.store.driver),
            port: config.http_port,
            stop,
            server: None,
        }
    }

    /// Listens and serves, unless it does already; returns the server.
    async fn open(&mut self) -> Result<&mut JoinHandle<std::io::Result<()>>, ServerError> {
        let server = match self.server.take() {
            Some(server) => server,
            None => {
                // Without TCP_NODELAY, a reply written in several pieces (HTTP/2 frames:
                // headers, data, trailers) waits for the peer's delayed ACK: tens of ms.
                let listener = listen("HttpPort", self.port).await?.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let server = axum::serve(listener, self.app.router())
                    .with_graceful_shutdown(stopped(self.stop.clone()))
                    .into_future();
                tokio::spawn(server)
            }
        };
        Ok(self.server.insert(server))
    }
}

/// Opens the configured store. A shared store that cannot be reached yet is tried again every
/// few seconds, with a log line each time, until it answers or the process is told to stop:
/// coordinators often start before their database.
async fn open_store(
    config: &Config,
    data_dir: &std::path::Path,
    reset: bool,
    http: &mut HttpPort,
) -> Result<Arc<dyn Store>, ServerError> {
    const RETRY: Duration = Duration::from_secs(2);
    let options = StoreOptions::from(&config.store);
    let mut stop = std::pin::pin!(stopped(http.stop.clone()));
    loop {
        let attempt = async {
            let store = crate::store::open(&options, data_dir, reset).await?;
            store.ping().await?;
            Ok::<_, StoreError>(store)
        };
        match attempt.await {
            Ok(store) => return Ok(store),
            Err(e) if options.kind == StoreKind::Embedded => return Err(e.into()),
            Err(e) => {
                http.app.store_unreachable(e.to_string());
                warn!(driver = config.store.driver, error = %e, retry_in_s = RETRY.as_secs(), "store unreachable; retrying");
                // Liveness while waiting, so an orchestrator does not restart the process.
                http.open().await?;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = &mut stop => return Err(ServerError::Setup("stopped while waiting for the store".into())),
        }
    }
}

/// What the configuration says to load as the microservice driver, and with what grants.
fn driver_spec(
    config: &Config,
    data_dir: &std::path::Path,
    clock: Arc<Clock>,
    metrics: Arc<Metrics>,
) -> DriverSpec {
    let ms = &config.micro_service;
    let registries = std::iter::once(ms.target.as_str()).chain(ms.registry_addresses.split(','));
    let grants = Grants {
        http: HttpPolicy::new(
            registries,
            Duration::from_secs(config.request_timeout as u64),
        ),
        registry: ms.target.clone(),
        env: drivers::driver_env(),
    };
    let wall_time = match ms.driver_wall_time_ms {
        0 => Duration::from_secs(3 * config.request_timeout as u64),
        set => Duration::from_millis(set as u64),
    };
    let limits = WasmLimits {
        call_timeout: Duration::from_millis(ms.driver_timeout_ms as u64),
        wall_time,
        memory_bytes: (ms.driver_memory_mib as usize) << 20,
    };
    let cache = match ms.driver_cache_dir.as_str() {
        "" => data_dir.join("driver-cache"),
        dir => PathBuf::from(dir),
    };
    DriverSpec {
        name: ms.driver.clone(),
        path: PathBuf::from(&ms.driver_path),
        limits,
        grants,
        clock,
        cache_dir: Some(cache),
        metrics,
    }
}

fn load_driver(spec: &DriverSpec) -> Result<Arc<dyn Driver>, ServerError> {
    let driver = spec.load()?;
    let activation = driver.activation();
    info!(
        driver = driver.name(),
        schemes = ?activation.schemes,
        rewrites_http = activation.rewrites_http,
        rewrites_grpc = activation.rewrites_grpc,
        "microservice driver ready"
    );
    Ok(driver)
}

/// What the admin UI's drivers page shows: the driver serving now.
fn driver_status(config: &Config, caller: Caller) -> DriverStatusFn {
    let ms = &config.micro_service;
    let (path, target) = (ms.driver_path.clone(), ms.target.clone());
    Arc::new(move || {
        vec![DriverStatus::active(
            caller.driver().as_ref(),
            &path,
            &target,
        )]
    })
}

async fn listen(key: &'static str, port: i64) -> Result<TcpListener, ServerError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port as u16));
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { key, addr, source })
}
