//! A throwaway Redis Cluster: three masters on free ports (each with its cluster bus port,
//! 10000 above, free too), joined with `redis-cli --cluster create`, stopped when dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::janitor;
use crate::port::free_port_with_partner;
use crate::process::ServerProcess;
use crate::program::Program;

const MASTERS: usize = 3;
/// Where Redis puts a node's cluster bus: its port plus this.
const BUS_OFFSET: u16 = 10_000;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    nodes: Vec<Option<ServerProcess>>,
}

fn cli(args: &[&str]) -> String {
    let program = Program::REDIS_CLI.locate().expect("redis-cli is installed");
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// The cluster, serving every slot; `None` when Redis is not installed (see
    /// [`Program::require`]).
    pub fn start() -> Option<Self> {
        Program::REDIS_SERVER.require()?;
        Program::REDIS_CLI.require()?;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = janitor::root().join(format!(
            "redis-cluster-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cluster = Self {
            ports: Vec::new(),
            dir,
            nodes: Vec::new(),
        };
        for _ in 0..MASTERS {
            let port = free_port_with_partner(BUS_OFFSET);
            std::fs::create_dir_all(cluster.node_dir(port)).expect("create a node's directory");
            cluster.nodes.push(Some(cluster.spawn_node(port)));
            cluster.ports.push(port);
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(&create);
        for port in &cluster.ports {
            let port = port.to_string();
            wait_until(|| cli(&["-p", &port, "cluster", "info"]).contains("cluster_state:ok"));
        }
        Some(cluster)
    }

    /// The cluster that every test of the process shares (each under a key prefix of its own),
    /// started on first use; `None` as for [`Self::start`].
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<RedisCluster>> = OnceLock::new();
        Program::REDIS_SERVER.require()?;
        Program::REDIS_CLI.require()?;
        SHARED.get_or_init(Self::start).as_ref()
    }

    fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.join(port.to_string())
    }

    /// A node on `port`, its cluster state in `nodes.conf` under its own directory, no data kept.
    fn spawn_node(&self, port: u16) -> ServerProcess {
        let node_dir = self.node_dir(port);
        let mut command = Command::new(Program::REDIS_SERVER.locate().expect("installed"));
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(node_dir.join("nodes.conf"))
            .arg("--dir")
            .arg(&node_dir)
            .args(["--save", "", "--appendonly", "no"]);
        let process = ServerProcess::spawn(command, &node_dir.join("server.log"), libc::SIGKILL);
        wait_until(|| TcpStream::connect(("127.0.0.1", port)).is_ok());
        process
    }

    /// Kills the node on `port` (its slots are unserved: there are no replicas).
    pub fn kill_node(&mut self, port: u16) {
        let index = self.index_of(port);
        if let Some(node) = self.nodes[index].take() {
            node.kill();
        }
    }

    /// Starts the killed node on `port` again: it rejoins with its slots, and without its keys.
    pub fn restart_node(&mut self, port: u16) {
        let index = self.index_of(port);
        self.nodes[index] = Some(self.spawn_node(port));
        let port = port.to_string();
        wait_until(|| cli(&["-p", &port, "cluster", "info"]).contains("cluster_state:ok"));
    }

    fn index_of(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|p| *p == port)
            .expect("a node of this cluster")
    }

    /// `Store.Host` naming every node.
    pub fn hosts(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The keys a node holds.
    pub fn keys_on(&self, port: u16) -> Vec<String> {
        cli(&["-p", &port.to_string(), "--scan"])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn wait_until(mut ready: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the Redis Cluster did not come up");
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
