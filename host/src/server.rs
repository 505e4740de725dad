//! Wiring: store, engine, listeners and the cron loop; graceful shutdown on SIGTERM / Ctrl-C.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::http::{router, HttpState};
use crate::call::Caller;
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::schedule::ScheduleConfig;
use crate::engine::Engine;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

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

pub async fn run(config: Config, options: RunOptions) -> Result<(), ServerError> {
    let data_dir = PathBuf::from(&config.store.data_dir);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&data_dir, options.reset)?);
    store.ping().await?;
    info!(driver = "embedded", data_dir = %data_dir.display(), "store ready");

    let caller = Caller::new().map_err(ServerError::Setup)?;
    let schedule = ScheduleConfig {
        retry_interval: config.retry_interval,
        timeout_to_fail: config.timeout_to_fail,
        request_timeout: config.request_timeout,
    };
    let engine = Engine::new(store, caller, Arc::new(Clock::default()), schedule);

    let http_listener = listen("HttpPort", config.http_port).await?;
    let grpc_listener = listen("GrpcPort", config.grpc_port).await?;
    let state = HttpState {
        engine: engine.clone(),
        max_body_bytes: config.max_body_bytes as usize,
        test_clock: options.test_clock,
    };
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder.register_encoded_file_descriptor_set(crate::proto::DESCRIPTORS)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection: {e}")))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection: {e}")))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let cron_interval = Duration::from_secs(config.trans_cron_interval as u64);
    let cron = tokio::spawn(engine.clone().run_cron(cron_interval, stop_rx.clone()));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    info!(
        http_port = config.http_port,
        grpc_port = config.grpc_port,
        "dtm-host serving"
    );

    let http = axum::serve(http_listener, router(state))
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future();
    let grpc = tonic::transport::Server::builder()
        .add_service(crate::api::grpc::service(engine.clone()))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
            stopped(stop_rx),
        );
    let (http, grpc) = tokio::join!(http, grpc);
    http.map_err(|e| ServerError::Setup(format!("HTTP server failed: {e}")))?;
    grpc.map_err(|e| ServerError::Setup(format!("gRPC server failed: {e}")))?;

    info!("shutting down: no new requests; finishing running passes");
    if cron.await.is_err() {
        warn!("cron loop ended abnormally");
    }
    engine
        .shutdown(Duration::from_secs(config.request_timeout as u64 + 2))
        .await;
    info!("stopped");
    Ok(())
}

async fn listen(key: &'static str, port: i64) -> Result<TcpListener, ServerError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port as u16));
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { key, addr, source })
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
