//! Shared by the integration tests: the real `dtm-host` binary started on a free port with its
//! own data directory, and a real HTTP business service ("busi") whose answers each test scripts.
#![allow(dead_code)]

pub mod driver;
pub mod dtm;
pub mod etcd;
pub mod fakes;
pub mod go;
pub mod grpc;
pub mod polyglot;
pub mod relay;
pub mod stores;
pub mod webdriver;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

/// Runs `command`; panics with its output, naming `what`, unless it succeeds.
pub fn run_checked(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `.wasm` of guest driver `crate_name`, built once per test run from `guest-drivers/`.
pub fn guest_wasm(crate_name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-drivers");
        // rustup installs a toolchain file's targets only along with the toolchain itself.
        let _ = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("Cargo.toml"))
            .status()
            .expect("run cargo for the guest drivers");
        assert!(status.success(), "building the guest drivers failed");
        root.join("target/wasm32-wasip2/release")
    });
    dir.join(format!("{crate_name}.wasm"))
}

/// One compile cache for every host the tests start: each compiles a driver once per run
/// instead of once per host (cache entries are keyed by the file's hash, so sharing is safe).
pub fn driver_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-driver-cache")
}

/// Runs the binary with `env` and `args` to its end (it must not serve); returns its exit
/// status and everything it wrote to stderr.
pub fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dtm-host"))
        .args(args)
        .env("HTTP_PORT", free_port().to_string())
        .env("GRPC_PORT", free_port().to_string())
        .env("STORE_DATA_DIR", dir.path().join("data"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run dtm-host");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// Serves `app` in the background on `port` of 127.0.0.1 (0 = any free port); returns
/// `127.0.0.1:port`.
pub async fn serve(app: axum::Router, port: u16) -> String {
    serve_at(app, ([127, 0, 0, 1], port).into()).await
}

/// As [`serve`], on `address`.
pub async fn serve_at(app: axum::Router, address: std::net::SocketAddr) -> String {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

pub use test_servers::free_port;

/// A running `dtm-host` process.
pub struct Host {
    child: Option<Child>,
    pub port: u16,
    pub grpc_port: u16,
    pub dir: Arc<tempfile::TempDir>,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Host {
    pub async fn start() -> Self {
        Self::start_with(&[] as &[(&str, &str)]).await
    }

    /// Starts the binary with extra environment variables (config keys, dtm's naming). In
    /// values, `{GRPC_PORT}` stands for the gRPC port the host gets (for
    /// `MICRO_SERVICE_END_POINT`).
    pub async fn start_with(env: &[(impl AsRef<str>, impl AsRef<str>)]) -> Self {
        let mut host = Self::launch(env);
        host.wait_until_up("/api/ping").await;
        host
    }

    /// Starts the binary and returns once it is alive (`/api/health`), which may be before it
    /// serves its API (while it waits for its store).
    pub async fn start_alive(env: &[(impl AsRef<str>, impl AsRef<str>)]) -> Self {
        let mut host = Self::launch(env);
        host.wait_until_up("/api/health").await;
        host
    }

    /// Starts the binary, without waiting for it.
    fn launch(env: &[(impl AsRef<str>, impl AsRef<str>)]) -> Self {
        // A test that fixes the gRPC port (to register it somewhere first) sets `GRPC_PORT`.
        let grpc_port = env
            .iter()
            .find(|(k, _)| k.as_ref() == "GRPC_PORT")
            .and_then(|(_, v)| v.as_ref().parse().ok())
            .unwrap_or_else(free_port);
        let mut host = Host {
            child: None,
            port: free_port(),
            grpc_port,
            dir: Arc::new(tempfile::tempdir().unwrap()),
            env: env
                .iter()
                .map(|(k, v)| {
                    let value = v.as_ref().replace("{GRPC_PORT}", &grpc_port.to_string());
                    (k.as_ref().to_owned(), value)
                })
                .collect(),
            http: reqwest::Client::new(),
        };
        host.spawn();
        host
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("host.log")
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dtm-host"));
        cmd.arg("--test-clock")
            .env("HTTP_PORT", self.port.to_string())
            .env("GRPC_PORT", self.grpc_port.to_string())
            .env("STORE_DATA_DIR", self.dir.path().join("data"))
            .env("TRANS_CRON_INTERVAL", "1")
            .env("LOG_LEVEL", "debug")
            .env("LOG_OUTPUTS", self.log_path())
            .env("MICRO_SERVICE_DRIVER_CACHE_DIR", driver_cache_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("stderr.log")).unwrap());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start dtm-host"));
    }

    /// Waits until `GET path` answers 2xx.
    pub async fn wait_until_up(&mut self, path: &str) {
        // Generous: a test machine running many tests at once may be slow to start a host.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(self.url(path)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dtm-host exited at start ({status}); log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("dtm-host did not answer {path}; log:\n{}", self.log());
    }

    /// The host's log, then anything it wrote to stderr (a panic would be there).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let stderr =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("{log}{stderr}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn api(&self, route: &str) -> String {
        self.url(&format!("/api/dtmsvr{route}"))
    }

    pub async fn get(&self, route: &str) -> (u16, Value) {
        let r = self.http.get(self.api(route)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, route: &str, body: Value) -> (u16, Value) {
        self.post_raw(route, body.to_string().into_bytes()).await
    }

    pub async fn post_raw(&self, route: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(self.api(route))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn new_gid(&self) -> String {
        self.get("/newGid").await.1["gid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn query(&self, gid: &str) -> Value {
        let (status, body) = self.get(&format!("/query?gid={gid}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn status(&self, gid: &str) -> String {
        self.query(gid).await["transaction"]["status"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub async fn branch_statuses(&self, gid: &str) -> Vec<String> {
        let q = self.query(gid).await;
        q["branches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["status"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Polls until the transaction has `status` (panics with the host log after `secs`).
    /// Waits (at most `secs`) until the branch records of `gid` have the statuses `expected`.
    pub async fn wait_branch_statuses(&self, gid: &str, expected: &[&str], secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let statuses = self.branch_statuses(gid).await;
            if statuses == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{gid}'s branches are {statuses:?}, not {expected:?}, after {secs}s\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_status(&self, gid: &str, status: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let q = self.query(gid).await;
            if q["transaction"]["status"] == status {
                return q;
            }
            if Instant::now() > deadline {
                panic!(
                    "{gid} did not reach {status} in {secs}s: {q}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Moves the host's clock forward, so due work is picked up by cron without sleeping.
    pub async fn advance_clock(&self, secs: i64) {
        let r = self
            .http
            .post(self.url(&format!("/api/test/clock/advance?seconds={secs}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// The process id, to send it signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits (without blocking the test's runtime) for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts the binary again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_until_up("/api/ping").await;
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One scripted answer of the business service.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn ok() -> Self {
        Self::with(200, r#"{"dtm_result":"SUCCESS"}"#)
    }
    pub fn with(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }
    pub fn failure(reason: &str) -> Self {
        Self::with(
            409,
            &format!(r#"{{"dtm_result":"FAILURE","message":"{reason}"}}"#),
        )
    }
    pub fn ongoing() -> Self {
        Self::with(425, r#"{"dtm_result":"ONGOING"}"#)
    }
    pub fn error() -> Self {
        Self::with(500, "internal error")
    }
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// How far apart two calls arrived (in either order).
pub fn apart(a: &Call, b: &Call) -> Duration {
    if a.at > b.at {
        a.at - b.at
    } else {
        b.at - a.at
    }
}

/// One request the business service received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub method: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

#[derive(Default)]
struct BusiState {
    once: Mutex<HashMap<String, VecDeque<Reply>>>,
    always: Mutex<HashMap<String, Reply>>,
    calls: Mutex<Vec<Call>>,
}

/// A real HTTP business service on a free port; answers 200 SUCCESS unless scripted.
#[derive(Clone)]
pub struct Busi {
    pub base: String,
    state: Arc<BusiState>,
}

async fn busi_handler(
    State(state): State<Arc<BusiState>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    state.calls.lock().unwrap().push(Call {
        path: path.clone(),
        method: method.to_string(),
        query: form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let scripted = state
        .once
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let reply = scripted
        .or_else(|| state.always.lock().unwrap().get(&path).cloned())
        .unwrap_or_else(Reply::ok);
    tokio::time::sleep(reply.delay).await;
    (StatusCode::from_u16(reply.status).unwrap(), reply.body)
}

impl Busi {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts on a given port (0 = any free port).
    pub async fn start_on(port: u16) -> Self {
        Self::start_at(([127, 0, 0, 1], port).into()).await
    }

    /// Starts on `address` (port 0 = any free port).
    pub async fn start_at(address: std::net::SocketAddr) -> Self {
        let state = Arc::new(BusiState::default());
        let app = axum::Router::new()
            .fallback(busi_handler)
            .with_state(state.clone());
        let base = format!("http://{}", serve_at(app, address).await);
        Self { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The next call to `path` gets `reply` (queued in order).
    pub fn once(&self, path: &str, reply: Reply) {
        self.state
            .once
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .push_back(reply);
    }

    pub fn always(&self, path: &str, reply: Reply) {
        self.state
            .always
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    /// Waits until `path` has been called `count` times (panics after 10 s).
    pub async fn wait_for(&self, path: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls(path).len() < count {
            assert!(
                Instant::now() < deadline,
                "{path} was not called {count} times"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn calls(&self, path: &str) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    pub fn all_calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }
}

/// A saga submit body with `steps` as (action path, compensate path) on `busi`.
pub fn saga(gid: &str, busi: &Busi, steps: &[(&str, &str)]) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(a, c)| {
            let url = |p: &str| {
                if p.is_empty() {
                    String::new()
                } else {
                    busi.url(p)
                }
            };
            serde_json::json!({"action": url(a), "compensate": url(c)})
        })
        .collect();
    let payloads: Vec<String> = (0..steps.len())
        .map(|i| format!(r#"{{"amount":{}}}"#, 30 + i))
        .collect();
    serde_json::json!({"gid": gid, "trans_type": "saga", "steps": steps, "payloads": payloads})
}

/// The transfer saga of dtm's examples: TransOut then TransIn, each with its compensation.
pub fn transfer(gid: &str, busi: &Busi) -> Value {
    saga(
        gid,
        busi,
        &[
            ("/TransOut", "/TransOutRevert"),
            ("/TransIn", "/TransInRevert"),
        ],
    )
}
