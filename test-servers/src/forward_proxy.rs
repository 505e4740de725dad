//! One throwaway forward proxy on a free loopback port: tinyproxy (HTTP, with CONNECT tunnels)
//! or microsocks (SOCKS5), optionally asking for a user name and password.
//!
//! tinyproxy adds a `Via` header to the requests it relays and logs every request (a tunnel as
//! `CONNECT host:port`); microsocks makes its outgoing connections from 127.0.0.1, so a server
//! on another address of the machine sees them come from there.

use std::net::{IpAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::janitor;
use crate::port::free_port;
use crate::process::ServerProcess;
use crate::program::Program;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// tinyproxy: absolute-form requests and CONNECT.
    Http,
    /// microsocks: SOCKS5, resolving names itself.
    Socks5,
}

pub struct ForwardProxy {
    kind: ProxyKind,
    port: u16,
    dir: PathBuf,
    credentials: Option<(String, String)>,
    process: Option<ServerProcess>,
}

impl ForwardProxy {
    /// A proxy of the calling test's own, serving; with `credentials`, it refuses clients that
    /// do not give them. `None` when its program is not installed (see [`Program::require`]).
    ///
    /// # Panics
    /// When it does not start: the panic carries its log.
    pub fn start(kind: ProxyKind, credentials: Option<(&str, &str)>) -> Option<Self> {
        let program = match kind {
            ProxyKind::Http => Program::TINYPROXY,
            ProxyKind::Socks5 => Program::MICROSOCKS,
        }
        .require()?;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = janitor::root().join(format!("proxy-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut proxy = ForwardProxy {
            kind,
            port: free_port(),
            dir,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            process: None,
        };
        let command = proxy.command(program);
        let process = ServerProcess::spawn(command, &proxy.log_path(), libc::SIGTERM);
        proxy.process = Some(process);
        proxy.wait_until_serving();
        Some(proxy)
    }

    /// The proxy's URL, with its credentials: what `HTTP_PROXY` or `HTTPS_PROXY` would hold.
    pub fn url(&self) -> String {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
        };
        let user = self
            .credentials
            .as_ref()
            .map(|(user, password)| format!("{user}:{password}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}", self.port)
    }

    /// Everything the proxy has logged, for assertions and failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("proxy.log")
    }

    fn command(&self, program: PathBuf) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir);
        match self.kind {
            ProxyKind::Http => {
                let config = self.dir.join("tinyproxy.conf");
                let mut settings = format!(
                    "Port {}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nLogLevel Info\n\
                     LogFile \"{}\"\n",
                    self.port,
                    self.log_path().display()
                );
                // No `ConnectPort` line: tunnels to every port are allowed.
                if let Some((user, password)) = &self.credentials {
                    settings.push_str(&format!("BasicAuth {user} {password}\n"));
                }
                std::fs::write(&config, settings)
                    .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
                command.arg("-d").arg("-c").arg(config);
            }
            ProxyKind::Socks5 => {
                let port = self.port.to_string();
                command.args(["-i", "127.0.0.1", "-p", &port, "-b", "127.0.0.1"]);
                if let Some((user, password)) = &self.credentials {
                    command.args(["-u", user, "-P", password]);
                }
            }
        }
        command
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = ([127, 0, 0, 1], self.port).into();
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                return;
            }
            if !self.process.as_mut().is_some_and(ServerProcess::is_running) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{:?} proxy on port {} did not serve:\n{}",
            self.kind,
            self.port,
            self.log()
        );
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop(Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An address of this machine other than loopback (the one its default route leaves from):
/// proxies are never used for loopback targets, so a test of a proxied call puts its server
/// there.
///
/// # Panics
/// When the machine has no route off loopback.
pub fn non_loopback_address() -> IpAddr {
    // Connecting a UDP socket sends nothing; it only picks the route and the local address.
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    socket
        .connect("198.51.100.1:9")
        .expect("this machine has no route off loopback, which the proxy tests need");
    let address = socket.local_addr().expect("local address").ip();
    assert!(!address.is_loopback(), "the route off loopback is loopback");
    address
}
