//! Throwaway database servers for dtm-host's tests and benches: PostgreSQL (`initdb` +
//! `postgres`), MariaDB (`mariadb-install-db` + `mariadbd`) and Redis (`redis-server`), each
//! started on a free loopback port below the kernel's ephemeral range, with its data in a
//! directory of its own, a Redis Cluster of three such nodes, and forward proxies (tinyproxy,
//! microsocks) for branch calls made through a proxy.
//!
//! ```text
//! let Some(pg) = Server::shared(Kind::Postgres) else { return };  // one per test process
//! let Some(mut db) = Server::start(Kind::MariaDb) else { return }; // the test's own
//! db.port(); db.url();                  // where it listens; an admin URL
//! db.kill(); db.start_again();          // SIGKILL, then the same port and data
//! db.pause(); db.resume();              // SIGSTOP / SIGCONT
//! let Some(proxy) = ForwardProxy::start(ProxyKind::Http, Some(("user", "pw"))) else { return };
//! proxy.url(); proxy.log();              // for HTTP_PROXY; what it relayed
//! ```
//!
//! A server whose program is not installed is a failure under `CI=true` (the message names the
//! Debian package); elsewhere the test prints one line saying it is skipped and why.
//! A server is stopped and its directory removed when its value is dropped; what a test
//! process leaves behind (the shared servers, or everything when it is killed) is removed by a
//! janitor process once the test process is gone.

mod forward_proxy;
mod janitor;
mod port;
mod process;
mod program;
mod redis_cluster;
mod server;

pub use forward_proxy::{non_loopback_address, ForwardProxy, ProxyKind};
pub use port::free_port;
pub use program::Program;
pub use redis_cluster::RedisCluster;
pub use server::{Kind, Server};
