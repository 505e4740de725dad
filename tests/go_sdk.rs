//! dtm's own Go SDK (`github.com/dtm-labs/client`: dtmcli, dtmgrpc, workflow, the branch
//! barrier) against the real binary. The Go tests in `tests/go-sdk` start their own HTTP and
//! gRPC business services and check what a user of the SDK sees: its returned errors, the
//! balances in the business databases, barrier rows, the order of the calls, and the final
//! status from the query API. Each test here runs one group of them against a host of its own,
//! with throwaway MariaDB, PostgreSQL and Redis servers.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::Host;
use test_servers::{Kind, Program, Server};

/// The Go tests, compiled once per run.
fn go_tests(go: &Path) -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| common::go::build_tests(go, "go-sdk"))
}

/// PostgreSQL with prepared transactions enabled (XA needs them), shared by the tests here.
fn postgres() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| Server::start_with(Kind::Postgres, &["-c", "max_prepared_transactions=50"]))
        .as_ref()
}

/// Runs the Go tests matching `pattern` (`go test -run`) against a fresh host, with the servers
/// of `kinds`; returns at once (skipped) when Go or a server program is not installed.
async fn go_test(group: &str, pattern: &str, kinds: &[Kind]) {
    let Some(go) = Program::GO.require() else {
        return;
    };
    let mut env = vec![("GOSDK_SCOPE".to_owned(), format!("gosdk_{group}"))];
    for &kind in kinds {
        let (server, var) = match kind {
            Kind::Postgres => (postgres(), "POSTGRES_ADDR"),
            Kind::MariaDb => (Server::shared(kind), "MYSQL_ADDR"),
            Kind::Redis => (Server::shared(kind), "REDIS_ADDR"),
        };
        let Some(server) = server else {
            return;
        };
        env.push((var.to_owned(), format!("127.0.0.1:{}", server.port())));
    }
    let binary = go_tests(&go);
    let host = Host::start().await;
    env.push(("DTM_HTTP".to_owned(), host.api("")));
    env.push((
        "DTM_GRPC".to_owned(),
        format!("127.0.0.1:{}", host.grpc_port),
    ));

    common::go::run_tests(binary, "go-sdk", pattern, &env, &host).await;
}

#[tokio::test]
async fn saga() {
    go_test("saga", "^TestSaga", &[Kind::MariaDb, Kind::Postgres]).await;
}

#[tokio::test]
async fn msg() {
    go_test(
        "msg",
        "^TestMsg",
        &[Kind::MariaDb, Kind::Postgres, Kind::Redis],
    )
    .await;
}

#[tokio::test]
async fn tcc() {
    go_test("tcc", "^TestTcc", &[Kind::MariaDb, Kind::Postgres]).await;
}

#[tokio::test]
async fn xa() {
    go_test("xa", "^TestXa", &[Kind::MariaDb, Kind::Postgres]).await;
}

#[tokio::test]
async fn workflow() {
    go_test(
        "workflow",
        "^TestWorkflow",
        &[Kind::MariaDb, Kind::Postgres],
    )
    .await;
}

#[tokio::test]
async fn barrier() {
    go_test(
        "barrier",
        "^TestBarrier",
        &[Kind::MariaDb, Kind::Postgres, Kind::Redis],
    )
    .await;
}
