//! Hot reload of the microservice driver (README "Hot driver reload").
//!
//! A new version of the configured `.wasm` file is compiled and activated beside the running
//! driver, and the coordinator's registration is moved to it; only then does it replace the old
//! driver in the [`Caller`], so calls under way finish on the old instance and new calls use the
//! new one. A file that cannot become a driver is refused with a log line and the old driver
//! keeps serving. Triggers: a change of the file (polled), `SIGHUP`, and the admin action
//! `POST /api/admin/drivers/reload`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::call::Caller;
use crate::drivers::{self, Driver, DriverError, DriverSpec, Registration};
use crate::shutdown::{self, stopped, Shutdown};

/// How often the driver file is looked at. A change is loaded once the file has looked the
/// same for one more interval, so a file still being written is not tried half-way.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watcher saw the file change (to content other than the running driver's).
    FileChange,
    /// `SIGHUP`.
    Hangup,
    /// The admin action.
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FileChange => "file change",
            Self::Hangup => "SIGHUP",
            Self::Admin => "admin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the built-in default driver has no file to reload")]
    BuiltIn,
    /// The file could not be read, is not a driver component, reports another name, or trapped
    /// while activating.
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("the new driver could not register the coordinator: {0}")]
    Register(DriverError),
    #[error("the coordinator is shutting down: it loads no new driver")]
    ShuttingDown,
}

/// The driver a reload put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub driver: String,
    pub sha256: String,
    pub previous_sha256: Option<String>,
    pub schemes: Vec<String>,
}

/// Where the coordinator registers itself (`MicroService.Target`, `MicroService.EndPoint`).
#[derive(Debug, Clone)]
struct Registry {
    target: String,
    endpoint: String,
}

/// The coordinator's registration, kept alive by a task through the driver that made it.
struct Kept {
    driver: Arc<dyn Driver>,
    stop: watch::Sender<bool>,
    keeper: JoinHandle<Registration>,
}

impl Kept {
    async fn start(driver: Arc<dyn Driver>, registry: &Registry) -> Result<Self, DriverError> {
        let registration = driver
            .register_service(&registry.target, &registry.endpoint)
            .await?;
        info!(
            driver = driver.name(),
            target = registry.target,
            endpoint = registry.endpoint,
            "registered with the microservice registry"
        );
        let (stop, until) = shutdown::channel();
        let keeper = tokio::spawn(drivers::keep_alive(driver.clone(), registration, until));
        Ok(Self {
            driver,
            stop,
            keeper,
        })
    }

    /// Stops renewing, then deregisters through the driver that registered: only it knows the
    /// format of its state.
    async fn end(self) {
        let _ = self.stop.send(true);
        let Ok(registration) = self.keeper.await else {
            return;
        };
        match self.driver.deregister(&registration.state).await {
            Ok(()) => info!(
                driver = self.driver.name(),
                "deregistered from the microservice registry"
            ),
            Err(e) => warn!(driver = self.driver.name(), error = %e, "deregistering failed"),
        }
    }
}

/// The coordinator's registration in force, and whether shutdown has ended it for good.
struct Registered {
    kept: Option<Kept>,
    /// Set by [`DriverReloader::deregister`]: a reload that got past its trigger just before
    /// the stop must not register the coordinator again.
    closed: bool,
}

/// Loads new versions of the configured driver into a running coordinator, and owns the
/// coordinator's registration, which follows the driver.
pub struct DriverReloader {
    spec: DriverSpec,
    caller: Caller,
    registry: Option<Registry>,
    /// Held through a whole reload, so reloads run one at a time, and none after shutdown.
    registration: Mutex<Registered>,
}

impl DriverReloader {
    /// Takes over `caller`'s driver, loaded from `spec`, and registers the coordinator
    /// through it when `target` is set.
    pub async fn start(
        spec: DriverSpec,
        caller: Caller,
        target: &str,
        endpoint: &str,
    ) -> Result<Self, DriverError> {
        let registry = (!target.is_empty()).then(|| Registry {
            target: target.to_owned(),
            endpoint: endpoint.to_owned(),
        });
        let kept = match &registry {
            Some(registry) => Some(Kept::start(caller.driver(), registry).await?),
            None => None,
        };
        Ok(Self {
            spec,
            caller,
            registry,
            registration: Mutex::new(Registered {
                kept,
                closed: false,
            }),
        })
    }

    /// Loads the driver file again and, if it becomes a working driver, puts it in place of
    /// the running one. An unchanged file is loaded too: activation and registration run
    /// again.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let mut registration = self.registration.lock().await;
        let bytes = self.read_file().await;
        self.reload_locked(trigger, &mut registration, bytes).await
    }

    /// A reload for a change of the file, unless it now holds the running driver (it was
    /// only touched, or a reload through another trigger already loaded it).
    async fn reload_changed_file(&self) {
        let mut registration = self.registration.lock().await;
        let bytes = self.read_file().await;
        if bytes.as_ref().is_ok_and(|b| self.holds_running_driver(b)) {
            let path = self.spec.path.display().to_string();
            debug!(
                path,
                "driver file holds the running driver; nothing to reload"
            );
            return;
        }
        let _ = self
            .reload_locked(Trigger::FileChange, &mut registration, bytes)
            .await;
    }

    /// Puts the driver in `bytes` (the driver file as just read) in place of the running one.
    async fn reload_locked(
        &self,
        trigger: Trigger,
        registration: &mut Registered,
        bytes: Result<Vec<u8>, ReloadError>,
    ) -> Result<Reloaded, ReloadError> {
        if registration.closed {
            debug!(
                trigger = trigger.as_str(),
                "no driver reload: the coordinator is shutting down"
            );
            return Err(ReloadError::ShuttingDown);
        }
        let path = self.spec.path.display().to_string();
        let outcome = match bytes {
            Ok(bytes) => self.replace(bytes, &mut registration.kept).await,
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(reloaded) => info!(
                trigger = trigger.as_str(),
                driver = reloaded.driver,
                path,
                sha256 = reloaded.sha256,
                previous_sha256 = reloaded.previous_sha256,
                schemes = ?reloaded.schemes,
                "microservice driver reloaded"
            ),
            Err(e) => warn!(
                trigger = trigger.as_str(),
                path,
                error = %e,
                "driver reload refused; the previous driver keeps serving"
            ),
        }
        outcome
    }

    async fn replace(
        &self,
        bytes: Vec<u8>,
        registration: &mut Option<Kept>,
    ) -> Result<Reloaded, ReloadError> {
        let previous_sha256 = self.caller.driver().sha256().map(str::to_owned);
        // Compiling takes a while and blocks: off the async workers.
        let spec = self.spec.clone();
        let driver = tokio::task::spawn_blocking(move || spec.load_bytes(&bytes))
            .await
            .map_err(|e| DriverError::Load {
                path: self.spec.path.display().to_string(),
                reason: format!("loading stopped: {e}"),
            })??;
        if let Some(registry) = &self.registry {
            self.move_registration(registration, driver.clone(), registry)
                .await?;
        }
        self.caller.replace_driver(driver.clone());
        Ok(Reloaded {
            driver: driver.name().to_owned(),
            sha256: driver.sha256().unwrap_or_default().to_owned(),
            previous_sha256,
            schemes: driver.activation().schemes.clone(),
        })
    }

    async fn read_file(&self) -> Result<Vec<u8>, ReloadError> {
        if self.spec.path.as_os_str().is_empty() {
            return Err(ReloadError::BuiltIn);
        }
        let bytes = tokio::fs::read(&self.spec.path)
            .await
            .map_err(|e| DriverError::Load {
                path: self.spec.path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(bytes)
    }

    /// Whether `bytes` (the driver file) are the running driver.
    fn holds_running_driver(&self, bytes: &[u8]) -> bool {
        self.caller.driver().sha256() == Some(&drivers::sha256_hex(bytes))
    }

    /// Deregisters through the old driver, then registers through the new one. Not the other
    /// way round: registries such as Nacos and Consul key an instance by its endpoint or a
    /// fixed id, so deregistering the old state after registering anew would remove the new
    /// entry. If the new driver cannot register, the old one registers again and stays.
    async fn move_registration(
        &self,
        registration: &mut Option<Kept>,
        driver: Arc<dyn Driver>,
        registry: &Registry,
    ) -> Result<(), ReloadError> {
        if let Some(old) = registration.take() {
            old.end().await;
        }
        let failure = match Kept::start(driver, registry).await {
            Ok(kept) => {
                *registration = Some(kept);
                return Ok(());
            }
            Err(e) => e,
        };
        match Kept::start(self.caller.driver(), registry).await {
            Ok(kept) => *registration = Some(kept),
            Err(e) => error!(
                error = %e,
                "registering again through the previous driver failed; the coordinator stays unregistered until a reload succeeds"
            ),
        }
        Err(ReloadError::Register(failure))
    }

    /// Stops renewing the registration and removes it (orderly shutdown); reloads are refused
    /// from then on.
    pub async fn deregister(&self) {
        let mut registration = self.registration.lock().await;
        registration.closed = true;
        if let Some(kept) = registration.kept.take() {
            kept.end().await;
        }
    }

    /// Reloads on `SIGHUP` and on changes of the driver file until `stop`. The `SIGHUP`
    /// handler is installed before this returns: from then on the signal no longer ends the
    /// process (its default action).
    pub fn spawn_triggers(self: &Arc<Self>, stop: Shutdown) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        let reloader = self.clone();
        let until = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = hangups.recv() => match received {
                        Some(()) => { let _ = reloader.reload(Trigger::Hangup).await; }
                        None => return,
                    },
                    _ = stopped(until.clone()) => return,
                }
            }
        });
        if !self.spec.path.as_os_str().is_empty() {
            tokio::spawn(self.clone().watch_file(stop));
        }
        Ok(())
    }

    /// Polls the driver file's size, modification time and inode; reloads once a change has
    /// settled. A refused file is not tried again until it changes again.
    async fn watch_file(self: Arc<Self>, stop: Shutdown) {
        // The file may have been replaced since it was read at start (registering took a
        // network call meanwhile). Looked at before its content is compared: a version that
        // is not the running driver's, or one that comes after the look, counts as a change.
        let first = Fingerprint::of(&self.spec.path).await;
        let served = match self.read_file().await {
            Ok(bytes) if self.holds_running_driver(&bytes) => first,
            _ => None,
        };
        let mut file = Settling::new(served);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                _ = stopped(stop.clone()) => return,
            }
            if file.settled(Fingerprint::of(&self.spec.path).await) {
                self.reload_changed_file().await;
            }
        }
    }
}

/// The watcher's view of the driver file, one look per interval.
#[derive(Debug)]
struct Settling {
    /// The version last loaded (or refused); `None` when there is none (the file is gone, or
    /// did not hold the running driver when the watcher started): whatever settles is loaded.
    served: Option<Fingerprint>,
    /// A different version seen at the previous look.
    changing: Option<Fingerprint>,
}

impl Settling {
    fn new(served: Option<Fingerprint>) -> Self {
        Self {
            served,
            changing: None,
        }
    }

    /// Takes one look; true when a new version has looked the same twice in a row and is due
    /// to be loaded. A file gone (being replaced) or still changing (being written) is
    /// looked at again next time.
    fn settled(&mut self, seen: Option<Fingerprint>) -> bool {
        if seen == self.served {
            self.changing = None;
            return false;
        }
        if seen.is_none() || seen != self.changing {
            self.changing = seen;
            return false;
        }
        self.served = seen;
        self.changing = None;
        true
    }
}

/// What tells one version of the driver file from the next without reading it: a rename
/// gives a new inode, an overwrite a new size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Fingerprint {
    async fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = tokio::fs::metadata(path).await.ok()?;
        Some(Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode: metadata.ino(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::drivers::{
        Activation, DefaultDriver, GrpcCall, HttpTarget, Resolution, ServerMethod,
    };

    /// The built-in driver, counting registrations and deregistrations.
    #[derive(Default)]
    struct Counting {
        inner: DefaultDriver,
        registered: AtomicUsize,
        deregistered: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Driver for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn activation(&self) -> &Activation {
            self.inner.activation()
        }
        fn parse_server_method(&self, uri: &str) -> Result<ServerMethod, DriverError> {
            self.inner.parse_server_method(uri)
        }
        async fn register_service(
            &self,
            target: &str,
            endpoint: &str,
        ) -> Result<Registration, DriverError> {
            self.registered.fetch_add(1, Ordering::SeqCst);
            self.inner.register_service(target, endpoint).await
        }
        async fn keep_alive(&self, state: &str) -> Result<Registration, DriverError> {
            self.inner.keep_alive(state).await
        }
        async fn deregister(&self, state: &str) -> Result<(), DriverError> {
            self.deregistered.fetch_add(1, Ordering::SeqCst);
            self.inner.deregister(state).await
        }
        async fn resolve(&self, server: &str) -> Result<Resolution, DriverError> {
            self.inner.resolve(server).await
        }
        async fn rewrite_http(&self, url: &str) -> Result<Option<HttpTarget>, DriverError> {
            self.inner.rewrite_http(url).await
        }
        fn rewrite_grpc(
            &self,
            server: &str,
            method: &str,
            payload: &[u8],
        ) -> Result<Option<GrpcCall>, DriverError> {
            self.inner.rewrite_grpc(server, method, payload)
        }
    }

    #[tokio::test]
    async fn no_reload_registers_again_after_shutdown() {
        let driver = Arc::new(Counting::default());
        let caller = Caller::new(driver.clone(), Default::default(), Arc::default()).unwrap();
        let spec = DriverSpec {
            name: "counting".into(),
            path: "/nonexistent/driver.wasm".into(),
            limits: Default::default(),
            grants: Default::default(),
            clock: Arc::default(),
            cache_dir: None,
            metrics: Arc::default(),
        };
        let reloader = DriverReloader::start(spec, caller, "registry:8500", "dtm:36790")
            .await
            .unwrap();
        assert_eq!(driver.registered.load(Ordering::SeqCst), 1);

        reloader.deregister().await;
        assert_eq!(driver.deregistered.load(Ordering::SeqCst), 1);
        for trigger in [Trigger::Admin, Trigger::Hangup, Trigger::FileChange] {
            let refused = reloader.reload(trigger).await;
            assert!(
                matches!(refused, Err(ReloadError::ShuttingDown)),
                "{trigger:?}: {refused:?}"
            );
        }
        assert_eq!(
            driver.registered.load(Ordering::SeqCst),
            1,
            "not registered again"
        );
    }

    fn version(len: u64) -> Option<Fingerprint> {
        Some(Fingerprint {
            len,
            modified: None,
            inode: 1,
        })
    }

    #[test]
    fn a_change_is_loaded_once_the_file_has_settled() {
        let mut file = Settling::new(version(10));
        assert!(!file.settled(version(10)), "unchanged");
        assert!(!file.settled(version(4)), "being written");
        assert!(!file.settled(version(8)), "still being written");
        assert!(!file.settled(None), "gone for a moment");
        assert!(!file.settled(version(12)));
        assert!(file.settled(version(12)), "the same twice: load it");
        assert!(!file.settled(version(12)), "loaded (or refused): not again");
        assert!(!file.settled(version(13)));
        assert!(file.settled(version(13)), "the next change is tried again");
    }

    #[test]
    fn a_file_unlike_the_running_driver_at_start_is_loaded_once_settled() {
        let mut file = Settling::new(None);
        assert!(!file.settled(None), "no file: nothing to load");
        assert!(!file.settled(version(10)));
        assert!(file.settled(version(10)), "settled: load it");
        assert!(!file.settled(version(10)), "loaded (or refused): not again");
    }
}
