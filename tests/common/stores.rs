//! A part of a throwaway database server that one test (or bench run) has to itself: a
//! PostgreSQL schema, a MySQL/MariaDB database, or a Redis key prefix, on the server that the
//! whole test process shares (or on a test's own server, for a test that stops it). The host is
//! pointed at it with dtm's store keys as environment variables. The servers are removed with
//! everything stored in them when the test process ends (see `test-servers`).

use std::sync::atomic::{AtomicUsize, Ordering};

use test_servers::{Kind, Server};

/// A shared store backend, as `Store.Driver` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    MySql,
    Redis,
}

impl Backend {
    /// `Store.Driver`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
            Backend::Redis => "redis",
        }
    }

    /// The server it runs on.
    pub fn kind(self) -> Kind {
        match self {
            Backend::Postgres => Kind::Postgres,
            Backend::MySql => Kind::MariaDb,
            Backend::Redis => Kind::Redis,
        }
    }
}

/// A schema, database or key prefix named for this test alone.
#[derive(Debug)]
pub struct StoreScope {
    pub backend: Backend,
    pub name: String,
    /// The server's port.
    pub port: u16,
}

impl StoreScope {
    /// A fresh scope on the process's shared server; `None` when the server is not installed
    /// (the test is skipped: see `test_servers::Program::require`).
    pub fn new(backend: Backend, tag: &str) -> Option<Self> {
        let server = Server::shared(backend.kind())?;
        Some(Self::on(server, backend, tag))
    }

    /// A fresh scope on `server`; `tag` makes its name easy to spot there.
    pub fn on(server: &Server, backend: Backend, tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("dtm_{tag}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Self {
            backend,
            name,
            port: server.port(),
        }
    }

    /// The host's store settings, reaching the server on `port` (its own, or a relay's).
    pub fn env(&self, port: u16) -> Vec<(String, String)> {
        let name = self.name.clone();
        let pairs: Vec<(&str, String)> = match self.backend {
            Backend::Postgres => vec![
                ("STORE_USER", "postgres".into()),
                ("STORE_DB", "postgres".into()),
                ("STORE_SCHEMA", name),
            ],
            Backend::MySql => vec![("STORE_USER", "root".into()), ("STORE_DB", name)],
            Backend::Redis => vec![("STORE_REDIS_PREFIX", name)],
        };
        [
            ("STORE_DRIVER", self.backend.name().to_owned()),
            ("STORE_HOST", "127.0.0.1".to_owned()),
            ("STORE_PORT", port.to_string()),
        ]
        .into_iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The real binary on this scope, reaching its server directly.
    pub async fn start_host(&self) -> super::Host {
        super::Host::start_with(&self.env(self.port)).await
    }
}

/// Runs `test` on a fresh scope of the shared server; returns at once when the server is not
/// installed (the test is skipped).
pub async fn in_scope<F, Fut>(backend: Backend, tag: &str, test: F)
where
    F: FnOnce(std::sync::Arc<StoreScope>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(scope) = StoreScope::new(backend, tag) else {
        return;
    };
    test(std::sync::Arc::new(scope)).await;
}
