//! The real binary on PostgreSQL and MySQL/MariaDB (the servers of this machine, each test in its
//! own schema or database, dropped afterwards): sagas complete, survive a restart, and the host
//! waits for a store that is down at start and fails requests (and readiness) clearly while it
//! is gone.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, transfer, Busi, Host, Reply};
use serde_json::json;
use sqlx::{AssertSqlSafe, Executor};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const SUCCEEDED: [&str; 4] = ["prepared", "succeed", "prepared", "succeed"];

#[derive(Clone, Copy, Debug)]
enum Server {
    Postgres,
    MySql,
}

/// A schema (PostgreSQL) or database (MySQL) of its own for one test.
struct Scope {
    server: Server,
    name: String,
}

impl Scope {
    fn new(server: Server) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dtm_e2e_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Scope { server, name }
    }

    /// The host's store settings (dtm's keys as environment variables), reaching the server on
    /// `port`.
    fn env(&self, port: u16) -> Vec<(String, String)> {
        let (driver, user, db, schema) = match self.server {
            Server::Postgres => ("postgres", "postgres", "test", self.name.as_str()),
            Server::MySql => ("mysql", "root", self.name.as_str(), "public"),
        };
        [
            ("STORE_DRIVER", driver),
            ("STORE_HOST", "127.0.0.1"),
            ("STORE_PORT", &port.to_string()),
            ("STORE_USER", user),
            ("STORE_DB", db),
            ("STORE_SCHEMA", schema),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn port(&self) -> u16 {
        match self.server {
            Server::Postgres => 5432,
            Server::MySql => 3306,
        }
    }

    async fn start_host(&self, port: u16) -> Host {
        let env = self.env(port);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Host::start_with(&env).await
    }

    async fn drop_it(&self) {
        match self.server {
            Server::Postgres => {
                let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test")
                    .await
                    .unwrap();
                let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
                pool.execute(AssertSqlSafe(sql)).await.unwrap();
            }
            Server::MySql => {
                let pool = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306")
                    .await
                    .unwrap();
                let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
                pool.execute(AssertSqlSafe(sql)).await.unwrap();
            }
        }
    }
}

/// Runs `test` with a fresh scope, dropping the scope afterwards even when the test panicked.
async fn in_scope<F, Fut>(server: Server, test: F)
where
    F: FnOnce(Arc<Scope>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let scope = Arc::new(Scope::new(server));
    let outcome = tokio::spawn(test(scope.clone())).await;
    scope.drop_it().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn saga_survives_a_restart(server: Server) {
    in_scope(server, |scope| async move {
        let busi = Busi::start().await;
        let mut host = scope.start_host(scope.port()).await;
        let done = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&done, &busi)).await.0, 200);
        host.wait_status(&done, "succeed", 10).await;
        assert_eq!(host.branch_statuses(&done).await, SUCCEEDED);

        busi.once("/TransIn", Reply::ok().after(Duration::from_secs(30)));
        let in_flight = host.new_gid().await;
        assert_eq!(
            host.post("/submit", transfer(&in_flight, &busi)).await.0,
            200
        );
        busi.wait_for("/TransIn", 2).await;
        host.restart().await;

        let q = host.query(&done).await;
        assert_eq!(q["transaction"]["status"], "succeed", "{q}");
        assert_eq!(host.branch_statuses(&done).await, SUCCEEDED);
        assert_eq!(host.status(&in_flight).await, "submitted");
        assert_eq!(
            host.branch_statuses(&in_flight).await,
            ["prepared", "succeed", "prepared", "prepared"]
        );
        host.advance_clock(15).await;
        host.wait_status(&in_flight, "succeed", 15).await;
        let calls_of = |path: &str| {
            busi.calls(path)
                .into_iter()
                .filter(|c| c.query["gid"] == in_flight)
                .count()
        };
        assert_eq!(
            calls_of("/TransOut"),
            1,
            "a recorded success is not repeated"
        );
        assert_eq!(calls_of("/TransIn"), 2);
        assert_eq!(calls_of("/TransOutRevert"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_saga_survives_a_restart() {
    saga_survives_a_restart(Server::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_saga_survives_a_restart() {
    saga_survives_a_restart(Server::MySql).await;
}

/// A TCP relay to the real server that the test can cut and restore.
struct Relay {
    port: u16,
    upstream: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    fn new(upstream: u16) -> Self {
        Relay {
            port: free_port(),
            upstream,
            tasks: Arc::default(),
        }
    }

    async fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(relay);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops listening and drops every relayed connection, as a crashed server would.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// `GET path` on the host: status and JSON body.
async fn probe(host: &Host, path: &str) -> (u16, serde_json::Value) {
    let response = host.http.get(host.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn waits_for_the_store_and_fails_clearly_while_it_is_gone(server: Server) {
    in_scope(server, |scope| async move {
        let busi = Busi::start().await;
        let relay = Arc::new(Relay::new(scope.port()));
        let opener = relay.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            opener.open().await;
        });
        let host = scope.start_host(relay.port).await;
        assert!(
            host.log().contains("store unreachable; retrying"),
            "{}",
            host.log()
        );
        let before = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&before, &busi)).await.0, 200);
        host.wait_status(&before, "succeed", 10).await;

        relay.cut();
        let lost = host.new_gid().await;
        let (status, reply) = host.post("/submit", transfer(&lost, &busi)).await;
        assert_eq!(status, 500, "{reply}");
        let name = format!("{server:?}").to_lowercase();
        assert!(reply.to_string().contains(&name), "{reply}");
        let (status, reply) = probe(&host, "/api/ready").await;
        assert_eq!(status, 503, "{reply}");
        let reason = reply["message"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("not ready: the {name} store")),
            "{reply}"
        );
        assert_eq!(probe(&host, "/api/health").await.0, 200, "alive all along");

        relay.open().await;
        let after = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&after, &busi)).await.0, 200);
        host.wait_status(&after, "succeed", 10).await;
        assert_eq!(probe(&host, "/api/ready").await.0, 200);
        assert_eq!(host.status(&before).await, "succeed");
        let (_, q) = host.get(&format!("/query?gid={lost}")).await;
        assert_eq!(
            q["transaction"],
            json!(null),
            "an unacknowledged submit was stored"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_down_at_start_and_during_operation() {
    waits_for_the_store_and_fails_clearly_while_it_is_gone(Server::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_down_at_start_and_during_operation() {
    waits_for_the_store_and_fails_clearly_while_it_is_gone(Server::MySql).await;
}
