//! One throwaway database server: made in a fresh directory, started on a free port, stopped
//! and removed when dropped.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::janitor;
use crate::port::free_port;
use crate::process::ServerProcess;
use crate::program::Program;

/// How long a server may take to serve after it is started (crash recovery included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Postgres,
    MariaDb,
    Redis,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mariadb",
            Kind::Redis => "redis",
        }
    }

    /// Every program the kind needs, the server last.
    fn programs(self) -> &'static [Program] {
        match self {
            Kind::Postgres => &[Program::INITDB, Program::PG_ISREADY, Program::POSTGRES],
            Kind::MariaDb => &[Program::MARIADB_INSTALL_DB, Program::MARIADBD],
            Kind::Redis => &[Program::REDIS_SERVER],
        }
    }

    /// PostgreSQL's server refuses to run as root; it runs as Debian's `postgres` user.
    fn runs_as(self) -> Option<(u32, u32)> {
        match self {
            Kind::Postgres if is_root() => Some(
                account("postgres")
                    .expect("running as root, and there is no `postgres` user to run PostgreSQL"),
            ),
            _ => None,
        }
    }

    /// The signal that ends the server at once, cleanly enough for its next start:
    /// PostgreSQL's immediate shutdown also removes its shared memory.
    fn stop_signal(self) -> libc::c_int {
        match self {
            Kind::Postgres => libc::SIGQUIT,
            Kind::MariaDb | Kind::Redis => libc::SIGKILL,
        }
    }
}

/// A database server of this process, listening on 127.0.0.1.
pub struct Server {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    /// Command-line settings of the test's own, after the usual ones.
    settings: Vec<String>,
    process: Option<ServerProcess>,
}

impl Server {
    /// A server of the calling test's own, started and serving; `None` when its programs are
    /// not installed (see [`Program::require`]).
    ///
    /// # Panics
    /// When the server does not start: the panic carries its log.
    pub fn start(kind: Kind) -> Option<Self> {
        Self::start_with(kind, &[])
    }

    /// As [`Self::start`], with `settings` added to the server's command line (PostgreSQL:
    /// `-c name=value`; MariaDB: `--name=value`; Redis: `--name value`).
    pub fn start_with(kind: Kind, settings: &[&str]) -> Option<Self> {
        required(kind)?;
        Some(Self::make(kind, settings))
    }

    /// The server of this kind that every test of the process shares (each in a schema,
    /// database or key prefix of its own), started on first use; `None` as for [`Self::start`].
    pub fn shared(kind: Kind) -> Option<&'static Self> {
        static SHARED: [OnceLock<Server>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        required(kind)?;
        let slot = match kind {
            Kind::Postgres => &SHARED[0],
            Kind::MariaDb => &SHARED[1],
            Kind::Redis => &SHARED[2],
        };
        Some(slot.get_or_init(|| Self::make(kind, &[])))
    }

    fn make(kind: Kind, settings: &[&str]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = janitor::root().join(format!(
            "{}-{}",
            kind.name(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        if let Some((uid, gid)) = kind.runs_as() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
        }
        let mut server = Server {
            kind,
            port: free_port(),
            dir,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            process: None,
        };
        server.initialize();
        server.start_again();
        server
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for an administrator's client: PostgreSQL's `postgres` user and database,
    /// MariaDB's `root` (no password), or Redis.
    pub fn url(&self) -> String {
        let port = self.port;
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            Kind::MariaDb => format!("mysql://root@127.0.0.1:{port}"),
            Kind::Redis => format!("redis://127.0.0.1:{port}"),
        }
    }

    /// Everything the server has written to its output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether it is running (started, and neither killed nor exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Kills the server and all its processes at once (SIGKILL: a crash, no shutdown work).
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Freezes every process of the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        if let Some(process) = &self.process {
            process.signal(libc::SIGSTOP);
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(process) = &self.process {
            process.signal(libc::SIGCONT);
        }
    }

    /// Starts the server (again, after [`Self::kill`]) on the same port with the same data, and
    /// waits until it serves.
    ///
    /// # Panics
    /// When it is already running, or does not come up: the panic carries its log.
    pub fn start_again(&mut self) {
        assert!(
            self.process.is_none(),
            "{} is already running",
            self.kind.name()
        );
        // A PostgreSQL killed a moment ago may still have a worker attached to its shared
        // memory; the new server then refuses to start, and a later try succeeds.
        for _ in 0..5 {
            let mut process =
                ServerProcess::spawn(self.command(), &self.log_path(), self.kind.stop_signal());
            let deadline = Instant::now() + START_TIMEOUT;
            while process.is_running() && Instant::now() < deadline {
                if self.serves() {
                    self.process = Some(process);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let exited = !process.is_running();
            process.kill();
            if !exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{} on port {} did not serve:\n{}",
            self.kind.name(),
            self.port,
            self.log()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Creates the server's data directory (PostgreSQL's cluster, MariaDB's system tables).
    fn initialize(&self) {
        let data = self.data();
        let mut command = match self.kind {
            Kind::Postgres => {
                let mut c = self.program(Program::INITDB);
                c.arg("-D").arg(&data);
                c.args(["-U", "postgres", "--auth=trust", "--no-sync", "--no-locale"]);
                c.args(["-E", "UTF8"]);
                c
            }
            Kind::MariaDb => {
                let mut c = self.program(Program::MARIADB_INSTALL_DB);
                // --no-defaults must come first.
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()));
                c.args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
                c.args(mariadb_settings(&self.dir));
                c
            }
            Kind::Redis => {
                std::fs::create_dir_all(&data)
                    .unwrap_or_else(|e| panic!("create {}: {e}", data.display()));
                return;
            }
        };
        let output = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {:?}: {e}", command.get_program()));
        assert!(
            output.status.success(),
            "{:?} failed ({}):\n{}{}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The command that runs the server.
    fn command(&self) -> Command {
        let mut command = self.usual_command();
        command.args(&self.settings);
        command
    }

    fn usual_command(&self) -> Command {
        let (data, port) = (self.data(), self.port.to_string());
        match self.kind {
            Kind::Postgres => {
                let mut c = self.program(Program::POSTGRES);
                c.arg("-D").arg(&data).arg("-k").arg(&self.dir);
                c.args(["-h", "127.0.0.1", "-p", &port]);
                c
            }
            Kind::MariaDb => {
                let mut c = self.program(Program::MARIADBD);
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()));
                c.arg(format!(
                    "--socket={}",
                    self.dir.join("mariadb.sock").display()
                ));
                c.arg(format!(
                    "--pid-file={}",
                    self.dir.join("mariadb.pid").display()
                ));
                c.args(["--bind-address=127.0.0.1", &format!("--port={port}")]);
                c.args(mariadb_settings(&self.dir));
                c
            }
            Kind::Redis => {
                // Append-only, so a killed server comes back with every write it answered.
                let mut c = self.program(Program::REDIS_SERVER);
                c.args(["--bind", "127.0.0.1", "--port", &port, "--dir"]);
                c.arg(&data);
                c.args(["--save", "", "--appendonly", "yes"]);
                c
            }
        }
    }

    /// `program`, run as the kind's user, in the server's directory.
    fn program(&self, program: Program) -> Command {
        let path = program
            .locate()
            .unwrap_or_else(|| panic!("{} is not installed", program.name));
        let mut command = Command::new(path);
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = self.kind.runs_as() {
            use std::os::unix::process::CommandExt as _;
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Whether the server answers a client now.
    fn serves(&self) -> bool {
        match self.kind {
            Kind::Postgres => self
                .program(Program::PG_ISREADY)
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            // The server speaks first: its handshake packet.
            Kind::MariaDb => exchange(self.port, b"").is_some_and(|reply| !reply.is_empty()),
            Kind::Redis => {
                exchange(self.port, b"PING\r\n").is_some_and(|r| r.starts_with(b"+PONG"))
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop(Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Settings for a small, quick MariaDB that writes every deadlock it detects to its log;
/// connection limits stay at their defaults. Its temporary files go to `dir`, not the shared
/// `/tmp`: a bootstrap once failed there, unable to remove its own `#sql-temptable-…` file
/// ("Unknown table 'mysql.tmp_proxies_priv'") while other servers were starting.
fn mariadb_settings(dir: &Path) -> Vec<String> {
    let mut settings = vec![
        format!("--tmpdir={}", dir.display()),
        "--innodb-log-file-size=8M".to_owned(),
        "--innodb-buffer-pool-size=64M".to_owned(),
        "--innodb-print-all-deadlocks=ON".to_owned(),
    ];
    if is_root() {
        settings.push("--user=root".to_owned());
    }
    settings
}

/// Checks for the programs `kind` needs, as [`Program::require`] does.
fn required(kind: Kind) -> Option<()> {
    kind.programs()
        .iter()
        .try_for_each(|program| program.require().map(drop))
}

/// Sends `request` to 127.0.0.1:`port` and returns the first bytes of the answer.
fn exchange(port: u16, request: &[u8]) -> Option<Vec<u8>> {
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(request).ok()?;
    let mut buffer = [0u8; 64];
    let n = stream.read(&mut buffer).ok()?;
    Some(buffer[..n].to_vec())
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of `user` in `/etc/passwd`.
fn account(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string(Path::new("/etc/passwd")).ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}
