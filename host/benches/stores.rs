//! `cargo bench --bench stores`: 2-branch sagas (`wait_result`) through the release `dtm-host` on
//! each store, one after another in one run: the embedded store, then PostgreSQL, MySQL/MariaDB
//! and Redis (throwaway servers the bench starts, each in a schema, database or key prefix of
//! its own), each with dtm's default `UpdateBranchSync: 1` (a commit per branch result)
//! and with `UpdateBranchSync: 0` (a pass's branch results written with its next status change).
//! Over HTTP and over gRPC: TPS, ratio to the embedded store (default setting), p50/p99.
//! Then three hosts on one PostgreSQL schema, sharing the load round-robin, against one. Each
//! host may open 30 connections to a SQL server (`Store.MaxOpenConns`).
//!
//! Settings (environment): BENCH_CONCURRENCY (default 64), BENCH_SECONDS (default 10),
//! BENCH_LOG_LEVEL (default info), BENCH_STORES (default `embedded,postgres,mysql,redis`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use common::stores::{Backend, StoreScope};
use support::{
    env_or, grpc_channel, grpc_saga, http_saga, measure, print, start_busi, start_grpc_busi,
    Figures, HostProcess,
};

/// `Store.MaxOpenConns` of each host.
const SQL_CONNECTIONS_PER_HOST: u32 = 30;

/// The stores to measure, by name; `None` is the embedded store.
fn stores() -> Vec<Option<Backend>> {
    let wanted =
        std::env::var("BENCH_STORES").unwrap_or_else(|_| "embedded,postgres,mysql,redis".into());
    wanted
        .split(',')
        .map(|name| match name.trim() {
            "embedded" => None,
            "postgres" => Some(Backend::Postgres),
            "mysql" => Some(Backend::MySql),
            "redis" => Some(Backend::Redis),
            other => panic!("BENCH_STORES: unknown store {other}"),
        })
        .collect()
}

struct Bench {
    concurrency: u64,
    seconds: u64,
    log_level: String,
    client: reqwest::Client,
    busi: String,
    grpc_busi: String,
}

impl Bench {
    async fn start_host(&self, scope: Option<&StoreScope>, update_branch_sync: u8) -> HostProcess {
        let mut env: Vec<(String, String)> = scope.map_or_else(Vec::new, |s| s.env(s.port));
        env.push(("UPDATE_BRANCH_SYNC".into(), update_branch_sync.to_string()));
        // Three hosts must fit in the server's 100 connections (dtm's default of 500 a host
        // would have them refused with "too many clients"); more would not be faster.
        env.push((
            "STORE_MAX_OPEN_CONNS".into(),
            SQL_CONNECTIONS_PER_HOST.to_string(),
        ));
        HostProcess::start_with(&self.log_level, &env).await
    }

    fn submit_url(host: &HostProcess) -> String {
        format!("http://127.0.0.1:{}/api/dtmsvr/submit", host.port)
    }

    async fn http(&self, host: &HostProcess, tag: &str) -> Figures {
        let one = http_saga(&self.client, &Self::submit_url(host), &self.busi, tag);
        measure(self.concurrency, self.seconds, one).await
    }

    async fn grpc(&self, host: &HostProcess, tag: &str) -> Figures {
        let channel = grpc_channel(&format!("127.0.0.1:{}", host.grpc_port)).await;
        let one = grpc_saga(channel, &self.grpc_busi, tag);
        measure(self.concurrency, self.seconds, one).await
    }

    /// HTTP sagas spread over `hosts` round-robin.
    async fn http_spread(&self, hosts: &[&HostProcess], tag: &str) -> Figures {
        let units: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                http_saga(
                    &self.client,
                    &Self::submit_url(host),
                    &self.busi,
                    &format!("{tag}-{i}"),
                )
            })
            .collect();
        measure(self.concurrency, self.seconds, move |n| {
            units[(n % units.len() as u64) as usize](n)
        })
        .await
    }
}

/// Prints `figures`, and their TPS ratio to the embedded store's once that is known.
fn report(name: &str, figures: &Figures, embedded: Option<&Figures>) {
    print(name, figures);
    if let Some(embedded) = embedded {
        println!(
            "{name:<28} ratio to embedded {:.2}",
            figures.tps / embedded.tps
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let bench = Bench {
            concurrency: env_or("BENCH_CONCURRENCY", 64),
            seconds: env_or("BENCH_SECONDS", 10),
            log_level: std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .unwrap(),
            busi: start_busi().await,
            grpc_busi: start_grpc_busi().await,
        };
        println!(
            "store bench: 2-branch sagas, concurrency {}, {} s per run, host LogLevel {}, \
             MaxOpenConns {SQL_CONNECTIONS_PER_HOST}, {} cores",
            bench.concurrency,
            bench.seconds,
            bench.log_level,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );

        let mut embedded: Option<(Figures, Figures)> = None;
        let runs = stores()
            .into_iter()
            .flat_map(|server| [(server, 1), (server, 0)]);
        for (server, update_branch_sync) in runs {
            let scope =
                server.map(|s| StoreScope::new(s, "bench").expect("the server is installed"));
            let name = format!(
                "{} UBS={update_branch_sync}",
                server.map_or("embedded", Backend::name)
            );
            let host = bench.start_host(scope.as_ref(), update_branch_sync).await;
            let http = bench.http(&host, "bench").await;
            let grpc = bench.grpc(&host, "bench-grpc").await;
            report(
                &format!("{name} HTTP"),
                &http,
                embedded.as_ref().map(|e| &e.0),
            );
            report(
                &format!("{name} gRPC"),
                &grpc,
                embedded.as_ref().map(|e| &e.1),
            );
            println!("{name} host peak RSS: {:.1} MiB", host.peak_rss_mib());
            drop(host);
            if server.is_none() && embedded.is_none() {
                embedded = Some((http, grpc));
            }
        }

        if !stores().contains(&Some(Backend::Postgres)) {
            return;
        }
        // One host, then the same schema shared by three: on one box the hosts compete for the
        // same two cores, so this shows the cost of contention, not scaling.
        let scope = StoreScope::new(Backend::Postgres, "bench3").expect("PostgreSQL is installed");
        let first = bench.start_host(Some(&scope), 1).await;
        let one = bench.http_spread(&[&first], "one").await;
        print("postgres, 1 host, HTTP", &one);
        let second = bench.start_host(Some(&scope), 1).await;
        let third = bench.start_host(Some(&scope), 1).await;
        let three = bench.http_spread(&[&first, &second, &third], "three").await;
        print("postgres, 3 hosts, HTTP", &three);
        println!("ratio 3 hosts / 1 host TPS: {:.2}", three.tps / one.tps);
        drop((first, second, third));
    });
}
