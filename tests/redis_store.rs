//! The Redis store end to end: the real binary with `STORE_DRIVER=redis` on this test
//! process's throwaway Redis, each test under its own key prefix, and on a Redis Cluster of its
//! own.

mod common;

use std::time::Duration;

use common::stores::{Backend, StoreScope};
use common::{transfer, Busi, Host, Reply};
use test_servers::RedisCluster;

#[tokio::test]
async fn saga_on_redis_succeeds_and_is_kept_across_a_restart() {
    let Some(prefix) = StoreScope::new(Backend::Redis, "saga") else {
        return;
    };
    let (mut host, busi) = (prefix.start_host().await, Busi::start().await);
    let gid = host.new_gid().await;
    assert_eq!(host.post("/submit", transfer(&gid, &busi)).await.0, 200);
    host.wait_status(&gid, "succeed", 10).await;
    let (status, topic) = host
        .get(&format!(
            "/subscribe?topic=t1&url={}&remark=r",
            busi.url("/msg")
        ))
        .await;
    assert_eq!(status, 200, "{topic}");
    host.restart().await;
    assert_eq!(host.status(&gid).await, "succeed");
    assert_eq!(
        host.branch_statuses(&gid).await,
        ["prepared", "succeed", "prepared", "succeed"]
    );
    let (status, all) = host.get("/all?limit=10").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["transactions"][0]["gid"], gid.as_str());
    let (_, kv) = host.get("/queryKV?cat=topics&key=t1").await;
    assert_eq!(kv["kv"][0]["k"], "t1", "{kv}");
    // The data lives in Redis, under the prefix, in per-transaction keys.
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", prefix.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{}:{{{gid}}}:g", prefix.name))
        .query(&mut conn)
        .unwrap();
    assert!(exists);
}

/// A transfer saga whose TransOut succeeded and whose TransIn is under way.
const MID_FLIGHT: [&str; 4] = ["prepared", "succeed", "prepared", "prepared"];

#[tokio::test]
async fn saga_killed_mid_flight_is_finished_by_the_restarted_host() {
    let Some(prefix) = StoreScope::new(Backend::Redis, "recover") else {
        return;
    };
    let (mut host, busi) = (prefix.start_host().await, Busi::start().await);
    busi.once("/TransIn", Reply::ok().after(Duration::from_secs(30)));
    let gid = host.new_gid().await;
    assert_eq!(host.post("/submit", transfer(&gid, &busi)).await.0, 200);
    busi.wait_for("/TransIn", 1).await;
    // TransOut's result is written beside the TransIn call (UpdateBranchSync: 1 writes each
    // result at once, without holding the pass back): the kill comes once it is stored.
    host.wait_branch_statuses(&gid, &MID_FLIGHT, 10).await;
    host.kill9();
    host.restart().await;
    assert_eq!(host.status(&gid).await, "submitted");
    assert_eq!(host.branch_statuses(&gid).await, MID_FLIGHT);
    // Past the lease the dead host's claim left, the new host's cron takes the saga over.
    host.advance_clock(15).await;
    host.wait_status(&gid, "succeed", 10).await;
    assert_eq!(
        busi.calls("/TransOut").len(),
        1,
        "a recorded success is repeated"
    );
    assert_eq!(busi.calls("/TransIn").len(), 2);
}

#[tokio::test]
async fn saga_on_a_redis_cluster_succeeds_with_its_keys_on_several_nodes() {
    let Some(cluster) = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap()
    else {
        return;
    };
    let hosts = cluster.hosts();
    let (mut host, busi) = (
        Host::start_with(&[
            ("STORE_DRIVER", "redis"),
            ("STORE_HOST", &hosts),
            ("STORE_REDIS_PREFIX", "e2e"),
        ])
        .await,
        Busi::start().await,
    );
    let mut gids = Vec::new();
    for _ in 0..12 {
        let gid = host.new_gid().await;
        assert_eq!(host.post("/submit", transfer(&gid, &busi)).await.0, 200);
        gids.push(gid);
    }
    for gid in &gids {
        host.wait_status(gid, "succeed", 10).await;
    }
    host.restart().await;
    assert_eq!(
        host.branch_statuses(&gids[0]).await,
        ["prepared", "succeed", "prepared", "succeed"]
    );
    let (status, all) = host.get("/all?limit=20").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        all["transactions"].as_array().map(Vec::len),
        Some(12),
        "{all}"
    );
    let holding = cluster
        .ports
        .iter()
        .filter(|port| {
            cluster
                .keys_on(**port)
                .iter()
                .any(|key| key.starts_with("e2e:{") && key.ends_with("}:g"))
        })
        .count();
    assert!(holding > 1, "every transaction on one node");
}
