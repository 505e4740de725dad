//! A throwaway Redis Cluster: three masters on free ports in a temporary directory, joined with
//! `redis-cli --cluster create`, stopped when dropped. Used by the store's unit tests (through
//! `#[path]`) and the end-to-end tests, so it needs std alone.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MASTERS: usize = 3;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    nodes: Vec<Child>,
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli on PATH");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    pub fn start() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dtm-redis-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut cluster = Self {
            ports: Vec::new(),
            dir,
            nodes: Vec::new(),
        };
        for _ in 0..MASTERS {
            let port = free_port_pair();
            std::fs::create_dir_all(cluster.dir.join(port.to_string())).unwrap();
            cluster.nodes.push(cluster.spawn_node(port));
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
        cluster
    }

    /// A node on `port`, its cluster state in `nodes.conf` under its own directory, no data kept.
    fn spawn_node(&self, port: u16) -> Child {
        let node_dir = self.dir.join(port.to_string());
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(node_dir.join("nodes.conf"))
            .arg("--dir")
            .arg(&node_dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        wait_until(|| TcpStream::connect(("127.0.0.1", port)).is_ok());
        child
    }

    /// Kills the node on `port` (its slots are unserved: there are no replicas).
    pub fn kill_node(&mut self, port: u16) {
        let index = self.index_of(port);
        let _ = self.nodes[index].kill();
        let _ = self.nodes[index].wait();
    }

    /// Starts the killed node on `port` again: it rejoins with its slots, and without its keys.
    pub fn restart_node(&mut self, port: u16) {
        let index = self.index_of(port);
        self.nodes[index] = self.spawn_node(port);
        let port = port.to_string();
        wait_until(|| cli(&["-p", &port, "cluster", "info"]).contains("cluster_state:ok"));
    }

    fn index_of(&self, port: u16) -> usize {
        self.ports.iter().position(|p| *p == port).unwrap()
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
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
