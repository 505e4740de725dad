//! The shutdown signal: one value that turns `true` once, when the process (or a task's owner)
//! wants the work to end. Whoever runs until shutdown holds a [`Shutdown`] and waits on it with
//! [`stopped`]; whoever decides holds the sender that [`channel`] made, and sends `true`.

use tokio::sync::watch;

/// The listening end of a shutdown signal: `true` once shutdown has begun.
pub type Shutdown = watch::Receiver<bool>;

/// A new signal: the sender that starts the shutdown, and the first listener (clone it for
/// more).
pub fn channel() -> (watch::Sender<bool>, Shutdown) {
    watch::channel(false)
}

/// Resolves once `shutdown` turns true (or its sender is gone).
// `()` rather than the watch's guard, which must not live across an await.
pub async fn stopped(mut shutdown: Shutdown) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A signal that turns true on SIGTERM or Ctrl-C.
pub fn on_terminate() -> Shutdown {
    let (stop, shutdown) = channel();
    tokio::spawn(async move {
        terminate_requested().await;
        let _ = stop.send(true);
    });
    shutdown
}

/// Resolves on the first SIGTERM or Ctrl-C.
async fn terminate_requested() {
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
