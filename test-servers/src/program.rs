//! The server programs the tests run, where Debian installs them, and what a test does when
//! one is missing: under `CI=true` it fails naming the package to install; elsewhere it is
//! skipped, with one line saying so (written past the test harness's output capture, so it is
//! seen even when the test passes).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A program a test runs, and the Debian package that brings it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub package: &'static str,
}

impl Program {
    pub const POSTGRES: Program = Program::new("postgres", "postgresql");
    pub const INITDB: Program = Program::new("initdb", "postgresql");
    pub const PG_ISREADY: Program = Program::new("pg_isready", "postgresql");
    pub const MARIADBD: Program = Program::new("mariadbd", "mariadb-server");
    pub const MARIADB_INSTALL_DB: Program = Program::new("mariadb-install-db", "mariadb-server");
    pub const REDIS_SERVER: Program = Program::new("redis-server", "redis-server");
    pub const REDIS_CLI: Program = Program::new("redis-cli", "redis-tools");
    pub const ETCD: Program = Program::new("etcd", "etcd-server");
    /// Forward proxies, for branch calls through `HTTP_PROXY` / `HTTPS_PROXY`.
    pub const TINYPROXY: Program = Program::new("tinyproxy", "tinyproxy");
    pub const MICROSOCKS: Program = Program::new("microsocks", "microsocks");
    pub const CHROMIUM: Program = Program::new("chromium", "chromium");
    pub const CHROMEDRIVER: Program = Program::new("chromedriver", "chromium-driver");
    /// The Go toolchain, to build dtm itself and the Go SDK tests. The machines come with Go
    /// 1.26 in `/usr/local/go`; Debian's `golang-go` (1.19) builds the SDK tests but not dtm.
    pub const GO: Program = Program::new("go", "golang-go");
    /// Python 3 with `venv`, to build the Python drivers (`componentize-py` is installed from PyPI
    /// into a venv under `target/`).
    pub const PYTHON: Program = Program::new("python3", "python3-venv");
    /// Node.js and npm, to build the JavaScript drivers (`@bytecodealliance/componentize-js` is
    /// installed from npm under `target/`).
    pub const NODE: Program = Program::new("node", "nodejs");
    pub const NPM: Program = Program::new("npm", "npm");

    pub const fn new(name: &'static str, package: &'static str) -> Self {
        Program { name, package }
    }

    /// Where the program is installed: PostgreSQL's server programs in the newest
    /// `/usr/lib/postgresql/<version>/bin`, then `/usr/sbin`, `/usr/bin` and Go's
    /// `/usr/local/go/bin`, then `PATH`.
    pub fn locate(self) -> Option<PathBuf> {
        let mut dirs = postgres_bin_dirs();
        dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/go/bin"].map(PathBuf::from));
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        dirs.into_iter()
            .map(|dir| dir.join(self.name))
            .find(|candidate| is_executable(candidate))
    }

    /// The program's path; `None` when the calling test is to be skipped because it is not
    /// installed (that test then returns at once).
    ///
    /// # Panics
    /// When it is not installed and `CI` is `true`: CI installs every package the tests use.
    pub fn require(self) -> Option<PathBuf> {
        if let Some(path) = self.locate() {
            return Some(path);
        }
        let what = format!(
            "`{}` is not installed (Debian package `{}`: apt-get install {})",
            self.name, self.package, self.package
        );
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{what}; CI installs it in .ci/run");
        }
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        // Straight to the stream, not through `eprintln!`, which the harness captures.
        let _ = writeln!(std::io::stderr(), "skipped: {test}: {what}");
        None
    }
}

/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn postgres_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
