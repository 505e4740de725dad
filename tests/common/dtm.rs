//! dtm itself, the Go server dtm-host is compatible with, at a pinned release: fetched from the
//! Go module proxy and built once into `target/dtm-reference/bin` (no dtm code in this
//! repository), then started on free ports with the boltdb store in a throwaway directory, or
//! on a test's store scope (`dtm_store_yaml`: dtm's own tables, made by dtm's SQL files).
//!
//! ```text
//! let Some(dtm) = Dtm::start("RetryInterval: 10\n").await else { return }; // Go missing: skipped
//! dtm.api("/submit");                                                     // as Host::api
//! ```
//!
//! `go install github.com/dtm-labs/dtm@v1.19.0` cannot be used: it looks up the module's
//! deprecation in the proxy's version list, which the proxy refuses for dtm. So the module is
//! downloaded at its exact version (`go mod download`, no list needed) and built in place from
//! the module cache (`go build` in its directory, with dtm's own `go.sum`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_servers::{free_port, Program};

use super::stores::{Backend, StoreScope};

/// The module and release the side-by-side tests compare with.
pub const DTM_MODULE: &str = "github.com/dtm-labs/dtm";
pub const DTM_VERSION: &str = "v1.19.0";

/// `target/dtm-reference`, where the binary is cached between runs.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dtm-reference")
}

/// The path of dtm's server binary, built on first use (a few minutes cold: the module and its
/// dependencies are downloaded and compiled; afterwards the cached binary is used as is).
/// `None` when the test is to be skipped because Go is not installed (under `CI=true` that
/// panics instead, naming what to install).
///
/// # Panics
/// When Go is installed but fetching or building dtm fails.
pub fn dtm_binary() -> Option<PathBuf> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = BUILT.get() {
        return Some(path.clone());
    }
    let bin = cache_dir().join("bin").join(format!("dtm-{DTM_VERSION}"));
    if bin.is_file() {
        return Some(BUILT.get_or_init(|| bin).clone());
    }
    let go = Program::GO.require()?;
    Some(BUILT.get_or_init(|| build(&go, &bin)).clone())
}

fn build(go: &Path, bin: &Path) -> PathBuf {
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    let started = Instant::now();
    // Past the harness's capture: the first run is slow, say why.
    let _ = writeln!(
        std::io::stderr(),
        "building dtm {DTM_VERSION} into {} (first run only)",
        bin.display()
    );
    let source = download(go);
    // Unique per process, renamed into place: a concurrent builder never sees half a binary.
    let partial = bin.with_extension(format!("partial-{}", std::process::id()));
    let output = Command::new(go)
        .args(["build", "-o"])
        .arg(&partial)
        .arg(".")
        .current_dir(&source)
        .stdin(Stdio::null())
        .output()
        .expect("run go build");
    assert!(
        output.status.success(),
        "building dtm {DTM_VERSION} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, bin).unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "built dtm {DTM_VERSION} in {:.0?}",
        started.elapsed()
    );
    bin.to_owned()
}

/// dtm's module directory in the Go module cache, downloaded first if it is not there (a no-op
/// when it is, e.g. once dtm has been built).
///
/// # Panics
/// When the download fails.
fn download(go: &Path) -> PathBuf {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let module = format!("{DTM_MODULE}@{DTM_VERSION}");
    let output = Command::new(go)
        .args(["mod", "download", "-json", &module])
        // Outside any Go module, so the download is not tied to one.
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run go mod download");
    let info: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let source = info["Dir"].as_str().map(PathBuf::from);
    let Some(source) = source.filter(|_| output.status.success()) else {
        panic!(
            "go mod download {module} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    source
}

/// dtm's `Store:` block for `scope`, with dtm's tables created there from the SQL files of
/// dtm's module (a database for MySQL, a schema for PostgreSQL; nothing for Redis), each SQL
/// store opening at most `max_open_conns` connections (`Store.MaxOpenConns`). `None`: skipped,
/// Go is not installed (the SQL files come from the Go module cache).
pub async fn dtm_store_yaml(scope: &StoreScope, max_open_conns: u32) -> Option<String> {
    use sqlx::Connection as _;
    let (name, port) = (&scope.name, scope.port);
    let sqls = download(&Program::GO.require()?).join("sqls");
    let schema = |file: &str| {
        let path = sqls.join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read dtm's schema {}: {e}", path.display()))
    };
    Some(match scope.backend {
        Backend::MySql => {
            let sql = schema("dtmsvr.storage.mysql.sql")
                .replace("EXISTS dtm\n", &format!("EXISTS {name}\n"))
                .replace("dtm.", &format!("{name}."));
            let url = format!("mysql://root@127.0.0.1:{port}");
            let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("create dtm's MySQL tables");
            format!(
                "Store:\n  Driver: mysql\n  Host: 127.0.0.1\n  Port: {port}\n  User: root\n  \
                 Password: ''\n  Db: {name}\n  MaxOpenConns: {max_open_conns}\n"
            )
        }
        Backend::Postgres => {
            let sql = format!(
                "CREATE SCHEMA {name}; SET search_path TO {name};\n{}",
                schema("dtmsvr.storage.postgres.sql")
            );
            let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("create dtm's PostgreSQL tables");
            format!(
                "Store:\n  Driver: postgres\n  Host: 127.0.0.1\n  Port: {port}\n  User: postgres\n  \
                 Password: ''\n  Db: postgres\n  Schema: {name}\n  MaxOpenConns: {max_open_conns}\n"
            )
        }
        Backend::Redis => format!(
            "Store:\n  Driver: redis\n  Host: 127.0.0.1\n  Port: {port}\n  User: ''\n  \
             Password: ''\n  RedisPrefix: '{{{name}}}'\n"
        ),
    })
}

/// A running dtm server (boltdb store in its own directory unless given a `Store:` block).
pub struct Dtm {
    child: Option<Child>,
    pub port: u16,
    pub grpc_port: u16,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Dtm {
    /// Starts dtm with `HttpPort`, `GrpcPort`, `Store.Driver: boltdb`, `LogLevel: debug` and the
    /// top-level YAML lines of `extra_yaml` (e.g. `"RetryInterval: 10\nTransCronInterval: 1\n"`);
    /// returns once it answers `/api/ping`. `None`: skipped, Go is not installed.
    /// A `Store:` block or a `LogLevel:` line in `extra_yaml` replaces that default.
    pub async fn start(extra_yaml: &str) -> Option<Self> {
        let binary = dtm_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let (port, grpc_port) = (free_port(), free_port());
        let sets = |key: &str| {
            extra_yaml
                .lines()
                .any(|l| l.starts_with(&format!("{key}:")))
        };
        let store = if sets("Store") {
            ""
        } else {
            "Store:\n  Driver: boltdb\n"
        };
        let log_level = if sets("LogLevel") {
            ""
        } else {
            "LogLevel: debug\n"
        };
        let config =
            format!("{store}HttpPort: {port}\nGrpcPort: {grpc_port}\n{log_level}{extra_yaml}");
        std::fs::write(dir.path().join("conf.yml"), config).unwrap();
        // boltdb writes `./dtm.bolt`: run in the throwaway directory.
        let child = Command::new(binary)
            .args(["-c", "conf.yml"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("dtm.log")).unwrap())
            .spawn()
            .expect("start dtm");
        let mut dtm = Dtm {
            child: Some(child),
            port,
            grpc_port,
            dir,
            http: reqwest::Client::new(),
        };
        dtm.wait_until_up().await;
        Some(dtm)
    }

    async fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(self.url("/api/ping")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dtm exited at start ({status}); log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("dtm did not answer /api/ping; log:\n{}", self.log());
    }

    /// Everything dtm logged (it logs to stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dtm.log")).unwrap_or_default()
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
        let r = self
            .http
            .post(self.api(route))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn query(&self, gid: &str) -> Value {
        let (status, body) = self.get(&format!("/query?gid={gid}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The process id, to send it signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dtm {
    fn drop(&mut self) {
        self.kill9();
    }
}
