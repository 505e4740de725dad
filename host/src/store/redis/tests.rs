//! Against this test process's throwaway Redis (started on first use, see `test-servers`);
//! each test has its own prefix. Tests that stop their server start one of their own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use redis::{AsyncCommands, Client};
use test_servers::{free_port, Kind, RedisCluster, Server};

use super::keys::bucket_of;
use super::*;
use crate::model::{Branch, GlobalStatus, ScanFilter};
use crate::store::suite::sample_global;
use crate::store::StatusChange;

static NEXT_PREFIX: AtomicUsize = AtomicUsize::new(0);

fn config(prefix: &str, port: u16) -> StoreOptions {
    let mut config = StoreOptions::from(&crate::config::Config::default().store);
    config.kind = crate::store::StoreKind::Redis;
    config.host = "127.0.0.1".into();
    config.port = i64::from(port);
    config.redis_prefix = prefix.into();
    config
}

/// A store on a fresh prefix of the shared server.
struct TestStore {
    store: RedisStore,
    prefix: String,
    port: u16,
}

impl std::ops::Deref for TestStore {
    type Target = RedisStore;
    fn deref(&self) -> &RedisStore {
        &self.store
    }
}

impl TestStore {
    /// `None` when Redis is not installed (the test is skipped).
    async fn new() -> Option<Self> {
        let n = NEXT_PREFIX.fetch_add(1, Ordering::Relaxed);
        Self::with_prefix(format!("dtmtest-{n}")).await
    }

    async fn with_prefix(prefix: String) -> Option<Self> {
        let port = Server::shared(Kind::Redis)?.port();
        let store = RedisStore::connect(&config(&prefix, port)).await.unwrap();
        Some(Self {
            store,
            prefix,
            port,
        })
    }

    /// Another store (another host) on the same prefix.
    async fn peer(&self) -> RedisStore {
        RedisStore::connect(&config(&self.prefix, self.port))
            .await
            .unwrap()
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        Client::open(format!("redis://127.0.0.1:{}", self.port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

mod suite {
    crate::store::suite::store_suite!(super::TestStore::new());
}

#[tokio::test]
async fn wipe_removes_only_its_own_prefix() {
    let Some(mine) = TestStore::new().await else {
        return;
    };
    // A prefix that starts like mine: `mine:*` would match its keys too.
    let Some(other) = TestStore::with_prefix(format!("{}:staging", mine.prefix)).await else {
        return;
    };
    for store in [&mine.store, &other.store] {
        store
            .save_new(&sample_global("wiped", 1_000), &[])
            .await
            .unwrap();
        store.create_kv("cat", "k", "v", 1_000).await.unwrap();
    }
    mine.store.wipe_all().await.unwrap();
    assert!(mine.store.find_global("wiped").await.unwrap().is_none());
    assert!(other.store.find_global("wiped").await.unwrap().is_some());
    assert_eq!(other.store.find_kv("cat", "k").await.unwrap().len(), 1);
    let mut redis = mine.redis().await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", mine.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    let staging = format!("{}:", other.prefix);
    assert!(
        left.iter().all(|k| k.starts_with(&staging)),
        "left after the wipe: {left:?}"
    );
}

#[tokio::test]
async fn two_hosts_claiming_at_once_never_get_the_same_gid() {
    let Some(t) = TestStore::new().await else {
        return;
    };
    let base = 1_000_000;
    for i in 0..60 {
        let mut g = sample_global(&format!("race-{i}"), base);
        g.next_cron_time = base + i;
        t.store.save_new(&g, &[]).await.unwrap();
    }
    let peer = Arc::new(t.peer().await);
    let claim_all = |store: Arc<RedisStore>| async move {
        let mut gids = Vec::new();
        loop {
            let batch = store
                .claim_due(base + 1_000, base + 1_000_000, base, 3)
                .await
                .unwrap();
            if batch.is_empty() {
                return gids;
            }
            gids.extend(batch.into_iter().map(|g| g.gid));
        }
    };
    let other = Arc::new(t.peer().await);
    let (a, b) = tokio::join!(
        tokio::spawn(claim_all(peer)),
        tokio::spawn(claim_all(other))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<_> = a.iter().chain(&b).cloned().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a gid was claimed twice: {a:?} {b:?}");
    assert_eq!(all.len(), 60);
    assert!(!a.is_empty() && !b.is_empty(), "one host did all the work");
}

#[tokio::test]
async fn a_claim_expires_and_another_host_takes_over() {
    let Some(t) = TestStore::new().await else {
        return;
    };
    let base = 1_000_000;
    let mut g = sample_global("lease", base);
    g.next_cron_time = base;
    t.store.save_new(&g, &[]).await.unwrap();
    let first = t
        .store
        .claim_due(base + 1, base + 10_000, base, 1)
        .await
        .unwrap()
        .pop();
    let first = first.unwrap();
    let peer = t.peer().await;
    assert!(peer
        .claim_due(base + 9_000, base + 20_000, base + 8_999, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
    // The first host died: once its lease has passed, the peer claims it.
    let second = peer
        .claim_due(base + 10_001, base + 20_000, base + 10_000, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(second.gid, "lease");
    assert_eq!(second.next_cron_time, base + 20_000);
    assert_ne!(second.owner, first.owner);
}

#[tokio::test]
async fn stale_schedule_entries_are_repaired_by_claims() {
    let Some(t) = TestStore::new().await else {
        return;
    };
    let mut redis = t.redis().await;
    let base = 1_000_000;
    let cron = |gid: &str| t.store.keys.cron(bucket_of(gid));
    // A record that expired: the entry is dropped after two sightings one lease apart.
    let mut g = sample_global("expired", base);
    g.next_cron_time = base;
    t.store.save_new(&g, &[]).await.unwrap();
    let _: () = redis.del(t.store.keys.global("expired")).await.unwrap();
    assert!(t
        .store
        .claim_due(base + 1, base + 10, base, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
    let score: Option<f64> = redis.zscore(cron("expired"), "expired").await.unwrap();
    assert_eq!(score, Some((base + 10) as f64), "kept after one sighting");
    assert!(t
        .store
        .claim_due(base + 11, base + 20, base + 11, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
    let score: Option<f64> = redis.zscore(cron("expired"), "expired").await.unwrap();
    assert_eq!(score, None, "dropped after the second");
    // An entry behind its record (a crash after the record's reschedule) moves to the
    // record's time instead of being claimed.
    let mut g = sample_global("behind", base);
    g.next_cron_time = base + 500;
    t.store.save_new(&g, &[]).await.unwrap();
    let _: () = redis.zadd(cron("behind"), "behind", base).await.unwrap();
    assert!(t
        .store
        .claim_due(base + 1, base + 10, base, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
    let score: Option<f64> = redis.zscore(cron("behind"), "behind").await.unwrap();
    assert_eq!(score, Some((base + 500) as f64));
    // A finished record whose entry survived (a crash after the status change): dropped.
    let _: () = redis
        .hset(t.store.keys.global("behind"), "status", "succeed")
        .await
        .unwrap();
    assert!(t
        .store
        .claim_due(base + 501, base + 600, base, 1)
        .await
        .unwrap()
        .pop()
        .is_none());
    let score: Option<f64> = redis.zscore(cron("behind"), "behind").await.unwrap();
    assert_eq!(score, None);
}

/// On one node a creation writes its index entries, a reschedule moves its schedule entry and a
/// final status change removes it, each in its script: no ZADD or ZREM sent on their own, one
/// round trip and one command each. MONITOR shows each command a client sent, and marks those
/// a script ran `lua`.
#[tokio::test]
async fn on_one_node_the_index_entries_change_in_the_transaction_scripts() {
    use futures::StreamExt as _;
    let Some(t) = TestStore::new().await else {
        return;
    };
    let mut redis = t.redis().await;
    let client = Client::open(format!("redis://127.0.0.1:{}", t.port)).unwrap();
    let mut monitor = client
        .get_async_monitor()
        .await
        .unwrap()
        .into_on_message::<String>();
    let base = 1_000_000;
    let gid = "one-trip";
    let cron = t.store.keys.cron(bucket_of(gid));
    let list = t.store.keys.list(bucket_of(gid));
    t.store
        .save_new(&sample_global(gid, base), &[])
        .await
        .unwrap();
    let (status, owner) = (GlobalStatus::Prepared, "");
    t.store
        .touch_cron_time(gid, status, owner, 20, base + 20_000, base)
        .await
        .unwrap();
    let score: Option<f64> = redis.zscore(&cron, gid).await.unwrap();
    assert_eq!(
        score,
        Some((base + 20_000) as f64),
        "moved by the reschedule"
    );
    let change = StatusChange::default();
    t.store
        .change_status(gid, status, GlobalStatus::Succeed, change, base + 1)
        .await
        .unwrap();
    let score: Option<f64> = redis.zscore(&cron, gid).await.unwrap();
    assert_eq!(score, None, "removed by the final status change");
    let marker = format!("end of {}", t.prefix);
    let _: String = redis::cmd("ECHO")
        .arg(&marker)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut index_writes = Vec::new();
    while let Some(line) = tokio::time::timeout(std::time::Duration::from_secs(5), monitor.next())
        .await
        .unwrap()
    {
        if line.contains(&marker) {
            break;
        }
        let index = line.contains(&cron) || line.contains(&list);
        if index && (line.contains("\"ZADD\"") || line.contains("\"ZREM\"")) {
            index_writes.push(line);
        }
    }
    // The creation's two entries, the reschedule and the removal.
    assert_eq!(index_writes.len(), 4, "{index_writes:#?}");
    assert!(
        index_writes.iter().all(|line| line.contains(" lua]")),
        "sent apart: {index_writes:#?}"
    );
}

#[tokio::test]
async fn keys_expire_as_configured_and_spread_over_slots() {
    let Some(t) = TestStore::new().await else {
        return;
    };
    let redis = t.redis().await;
    let g = sample_global("ttl", 1_000);
    let branch = Branch::new("ttl", "01".into(), "action", "http://b".into(), vec![], 1);
    t.store.save_new(&g, &[branch]).await.unwrap();
    let ttl = |key: String| {
        let mut redis = redis.clone();
        async move {
            let seconds: i64 = redis.ttl(key).await.unwrap();
            seconds
        }
    };
    assert!(ttl(t.store.keys.global("ttl")).await > 604_000);
    assert!(ttl(t.store.keys.branches("ttl")).await > 604_000);
    t.store
        .change_status(
            "ttl",
            GlobalStatus::Prepared,
            GlobalStatus::Succeed,
            StatusChange::default(),
            2_000,
        )
        .await
        .unwrap();
    let finished = ttl(t.store.keys.global("ttl")).await;
    assert!((86_000..=86_400).contains(&finished), "{finished}");
    assert!(ttl(t.store.keys.branches("ttl")).await <= 86_400);
    // dtm's default prefix would pin everything to slot of "a"; its braces are dropped.
    assert_eq!(Keys::new("{a}").global("x"), "a:{x}:g");
    let slots: HashSet<usize> = (0..100).map(|i| bucket_of(&format!("gid-{i}"))).collect();
    assert_eq!(slots.len(), BUCKETS);
}

#[tokio::test]
async fn binary_branch_data_and_odd_ids_round_trip() {
    let Some(t) = TestStore::new().await else {
        return;
    };
    let g = sample_global("odd{gid}", 1_000);
    let data: Vec<u8> = (0..=255).collect();
    let branches = [
        Branch::new("odd{gid}", "a".into(), "bc", String::new(), data.clone(), 1),
        Branch::new("odd{gid}", "ab".into(), "c", String::new(), vec![], 1),
    ];
    t.store.save_new(&g, &branches).await.unwrap();
    let stored = t.store.find_branches("odd{gid}").await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].bin_data, data);
    assert_eq!((stored[1].id, stored[1].finish_time), (2, None));
    assert_eq!(t.store.find_global("odd{gid}").await.unwrap().unwrap(), g);
}

#[tokio::test]
async fn listing_skips_and_trims_entries_without_records() {
    let Some(t) = TestStore::new().await else {
        return;
    };
    let mut redis = t.redis().await;
    let now = now_ms();
    for i in 0..5 {
        let g = sample_global(&format!("list-{i}"), now - 120_000 + i);
        t.store.save_new(&g, &[]).await.unwrap();
    }
    let _: () = redis.del(t.store.keys.global("list-3")).await.unwrap();
    let page = t
        .store
        .scan_globals("", 3, &ScanFilter::default())
        .await
        .unwrap();
    let gids: Vec<_> = page.items.iter().map(|g| g.gid.as_str()).collect();
    assert_eq!(gids, ["list-4", "list-2", "list-1"]);
    let rest = t
        .store
        .scan_globals(&page.next_position, 3, &ScanFilter::default())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_position, "");
    let listed: i64 = redis
        .zcard(t.store.keys.list(bucket_of("list-3")))
        .await
        .unwrap();
    let expected = (0..5)
        .filter(|i| *i != 3 && bucket_of(&format!("list-{i}")) == bucket_of("list-3"))
        .count() as i64;
    assert_eq!(listed, expected, "the stale entry was trimmed");
}

#[tokio::test]
async fn a_redis_that_drops_fails_calls_quickly_and_is_reconnected() {
    let Some(mut server) = Server::start(Kind::Redis) else {
        return;
    };
    let store = RedisStore::connect(&config("drop", server.port()))
        .await
        .unwrap();
    store
        .save_new(&sample_global("before", 1_000), &[])
        .await
        .unwrap();
    server.kill();
    let started = std::time::Instant::now();
    let failed = store.find_global("before").await;
    assert!(
        matches!(&failed, Err(StoreError::Backend(m)) if m.contains("redis")),
        "{failed:?}"
    );
    assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1));
    server.start_again();
    let mut answered = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "no reconnection");
    // The server kept what it acknowledged (append-only), but not the scripts: they are
    // loaded again.
    assert!(store.find_global("before").await.unwrap().is_some());
    store
        .save_new(&sample_global("after", 1_000), &[])
        .await
        .unwrap();
    let branch = Branch::new("after", "01".into(), "action", String::new(), vec![], 1);
    store
        .append_branches("after", GlobalStatus::Prepared, &[branch])
        .await
        .unwrap();
    assert_eq!(store.find_branches("after").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_redis_that_stops_answering_fails_calls_within_the_deadline() {
    let Some(server) = Server::start(Kind::Redis) else {
        return;
    };
    let store = RedisStore::connect(&config("hang", server.port()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    server.pause();
    let started = std::time::Instant::now();
    let failed = store.find_global("x").await;
    let waited = started.elapsed();
    server.resume();
    assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
    assert!(waited < CALL_TIMEOUT + Duration::from_secs(1), "{waited:?}");
    let mut answered = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the store did not recover");
}

/// A store on `cluster`, seeded with every node.
async fn on(cluster: &RedisCluster, prefix: &str) -> RedisStore {
    let mut config = config(prefix, 0);
    config.host = cluster.hosts();
    RedisStore::connect(&config).await.unwrap()
}

/// A store on a fresh prefix of the process's Redis Cluster (three masters).
async fn on_shared_cluster() -> Option<(&'static RedisCluster, RedisStore)> {
    let cluster = tokio::task::spawn_blocking(RedisCluster::shared)
        .await
        .unwrap()?;
    let prefix = format!("cluster{}", NEXT_PREFIX.fetch_add(1, Ordering::Relaxed));
    Some((cluster, on(cluster, &prefix).await))
}

mod cluster_suite {
    crate::store::suite::store_suite!(async {
        super::on_shared_cluster()
            .await
            .map(|(_, store)| Box::new(store))
    });
}

/// The keys `store` keeps on each node of `cluster`.
fn keys_by_node(cluster: &RedisCluster, store: &RedisStore) -> Vec<Vec<String>> {
    let prefix = format!("{}:", store.keys.ns);
    cluster
        .ports
        .iter()
        .map(|port| {
            let mut keys = cluster.keys_on(*port);
            keys.retain(|k| k.starts_with(&prefix));
            keys
        })
        .collect()
}

#[tokio::test]
async fn a_wipe_on_a_cluster_clears_every_master() {
    let Some((cluster, store)) = on_shared_cluster().await else {
        return;
    };
    // A wipe scans every master, not just the one a SCAN would land on.
    for i in 0..30 {
        store
            .save_new(&sample_global(&format!("wipe-{i}"), 1_000), &[])
            .await
            .unwrap();
    }
    let holding = keys_by_node(cluster, &store)
        .iter()
        .filter(|keys| !keys.is_empty())
        .count();
    assert!(holding > 1, "all keys on one node");
    store.wipe_all().await.unwrap();
    let left = keys_by_node(cluster, &store);
    assert!(
        left.iter().all(Vec::is_empty),
        "left after the wipe: {left:?}"
    );
}

#[tokio::test]
async fn on_a_cluster_transactions_spread_over_the_masters_and_scripts_reload() {
    let Some((cluster, store)) = on_shared_cluster().await else {
        return;
    };
    let base = 1_000_000;
    for i in 0..30 {
        let mut g = sample_global(&format!("spread-{i}"), base + i);
        g.next_cron_time = base;
        store.save_new(&g, &[]).await.unwrap();
    }
    let holding = keys_by_node(cluster, &store)
        .iter()
        .filter(|keys| keys.iter().any(|k| k.ends_with("}:g")))
        .count();
    assert!(holding > 1, "every transaction on one node");
    // The listing merges the buckets of every node; claims walk them all.
    let page = store
        .scan_globals("", 100, &ScanFilter::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 30);
    assert_eq!(page.items[0].gid, "spread-29");
    let mut claimed = HashSet::new();
    while let Some(g) = store
        .claim_due(base + 1, base + 1_000_000, base, 1)
        .await
        .unwrap()
        .pop()
    {
        claimed.insert(g.gid);
    }
    assert_eq!(claimed.len(), 30);
    // Every node forgets its scripts: each is loaded again where it is needed.
    for port in &cluster.ports {
        let mut node = Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut node)
            .await
            .unwrap();
    }
    for i in 30..40 {
        let g = sample_global(&format!("spread-{i}"), base + i);
        let branch = Branch::new(&g.gid, "01".into(), "action", String::new(), vec![], 1);
        store.save_new(&g, &[]).await.unwrap();
        store
            .append_branches(&g.gid, GlobalStatus::Prepared, &[branch])
            .await
            .unwrap();
        assert_eq!(store.find_branches(&g.gid).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_cluster_node_that_drops_fails_its_calls_and_is_reconnected() {
    // It kills a node: a cluster of its own.
    let Some(mut cluster) = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap()
    else {
        return;
    };
    let store = on(&cluster, "drop").await;
    let gids: Vec<String> = (0..12).map(|i| format!("kept-{i}")).collect();
    for gid in gids.iter().map(String::as_str).chain(["lost"]) {
        store
            .save_new(&sample_global(gid, 1_000), &[])
            .await
            .unwrap();
    }
    let node_of = |gid: &str| {
        let key = format!("drop:{{{gid}}}:g");
        *cluster
            .ports
            .iter()
            .find(|port| cluster.keys_on(**port).contains(&key))
            .unwrap()
    };
    let port = node_of("lost");
    let elsewhere = gids.iter().find(|gid| node_of(gid) != port).unwrap();
    cluster.kill_node(port);
    let failed = store.find_global("lost").await;
    assert!(
        matches!(&failed, Err(StoreError::Backend(m)) if m.contains("redis")),
        "{failed:?}"
    );
    // The other masters still answer for their slots.
    assert!(store.find_global(elsewhere).await.unwrap().is_some());
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.restart_node(port);
        cluster
    })
    .await
    .unwrap();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(found) = store.find_global("lost").await {
            answer = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The node kept nothing, not even the scripts: they are loaded again.
    assert_eq!(answer, Some(None), "no reconnection");
    store
        .save_new(&sample_global("lost", 2_000), &[])
        .await
        .unwrap();
    assert!(store.find_global("lost").await.unwrap().is_some());
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_clear_error() {
    let mut config = config("none", 0);
    config.host = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let refused = RedisStore::connect(&config).await;
    assert!(
        matches!(&refused, Err(StoreError::Backend(m)) if m.contains(&config.host)),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn a_cluster_with_another_database_is_refused() {
    let mut config = config("db", 0);
    config.host = "127.0.0.1:1,127.0.0.1:2".into();
    config.db = "3".into();
    let refused = RedisStore::connect(&config).await;
    assert!(
        matches!(&refused, Err(StoreError::Backend(m)) if m.contains("database 0")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let port = free_port();
    let refused = RedisStore::connect(&config("none", port)).await;
    assert!(
        matches!(&refused, Err(StoreError::Backend(m)) if m.contains(&format!("127.0.0.1:{port}"))),
        "{:?}",
        refused.err()
    );
}
