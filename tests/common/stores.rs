//! A part of this machine's database servers that one test (or bench run) has to itself: a
//! PostgreSQL schema in database `test`, a MySQL/MariaDB database, or a Redis key prefix. The
//! host is pointed at it with dtm's store keys as environment variables; `clean` removes
//! everything stored there.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AssertSqlSafe, Executor};

pub const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_ADMIN: &str = "mysql://root@127.0.0.1:3306";
pub const REDIS: &str = "redis://127.0.0.1:6379";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MySql,
    Redis,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Postgres => "postgres",
            Server::MySql => "mysql",
            Server::Redis => "redis",
        }
    }

    /// The server's own port on this machine.
    pub fn port(self) -> u16 {
        match self {
            Server::Postgres => 5432,
            Server::MySql => 3306,
            Server::Redis => 6379,
        }
    }
}

/// A schema, database or key prefix named for this process alone.
#[derive(Debug)]
pub struct StoreScope {
    pub server: Server,
    pub name: String,
}

impl StoreScope {
    /// A fresh scope; `tag` makes its name easy to spot on the server.
    pub fn new(server: Server, tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dtm_{tag}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self { server, name }
    }

    /// The host's store settings, reaching the server on `port` (its own, or a relay's).
    pub fn env(&self, port: u16) -> Vec<(String, String)> {
        let name = self.name.clone();
        let pairs: Vec<(&str, String)> = match self.server {
            Server::Postgres => vec![
                ("STORE_USER", "postgres".into()),
                ("STORE_DB", "test".into()),
                ("STORE_SCHEMA", name),
            ],
            Server::MySql => vec![("STORE_USER", "root".into()), ("STORE_DB", name)],
            Server::Redis => vec![("STORE_REDIS_PREFIX", name)],
        };
        [
            ("STORE_DRIVER", self.server.name().to_owned()),
            ("STORE_HOST", "127.0.0.1".to_owned()),
            ("STORE_PORT", port.to_string()),
        ]
        .into_iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Removes everything stored in the scope.
    pub async fn clean(&self) {
        match self.server {
            Server::Postgres => {
                let pool = sqlx::PgPool::connect(POSTGRES_ADMIN).await.unwrap();
                let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
                pool.execute(AssertSqlSafe(sql)).await.unwrap();
            }
            Server::MySql => {
                let pool = sqlx::MySqlPool::connect(MYSQL_ADMIN).await.unwrap();
                let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
                pool.execute(AssertSqlSafe(sql)).await.unwrap();
            }
            Server::Redis => {
                let pattern = format!("{}:*", self.name);
                tokio::task::spawn_blocking(move || {
                    let mut conn = redis::Client::open(REDIS)
                        .and_then(|c| c.get_connection())
                        .unwrap();
                    let keys: Vec<String> =
                        redis::cmd("KEYS").arg(pattern).query(&mut conn).unwrap();
                    if !keys.is_empty() {
                        redis::cmd("DEL").arg(keys).exec(&mut conn).unwrap();
                    }
                })
                .await
                .unwrap();
            }
        }
    }
}

impl StoreScope {
    /// The real binary on this scope, reaching the server on `port`.
    pub async fn start_host(&self, port: u16) -> super::Host {
        let env = self.env(port);
        super::Host::start_with(&env).await
    }
}

/// Runs `test` on a fresh scope and cleans the scope afterwards, even when the test panicked
/// (its hosts are dropped, so stopped, before that).
pub async fn in_scope<F, Fut>(server: Server, tag: &str, test: F)
where
    F: FnOnce(std::sync::Arc<StoreScope>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let scope = std::sync::Arc::new(StoreScope::new(server, tag));
    let outcome = tokio::spawn(test(scope.clone())).await;
    scope.clean().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
