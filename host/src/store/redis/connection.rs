//! The store's link to Redis: one node (through a `ConnectionManager`) or a Redis Cluster
//! (through the cluster client), behind one type, so the store has one implementation.
//!
//! The cluster client sends a pipeline to the node of its first key and lets the server refuse
//! commands of other slots (CROSSSLOT). [`Connection`] keeps a pipeline's meaning on a cluster
//! instead: it splits it into runs of consecutive commands on one slot and sends each run once
//! the one before has been answered, so the commands still take effect in order. Independent
//! reads over many slots go through [`Connection::query_each`], which sends them all at once.

use std::time::Duration;

use futures::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{
    Client, Cmd, ConnectionAddr, FromRedisValue, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisFuture, RedisResult, Value,
};

use crate::store::{StoreError, StoreOptions, StoreResult};

/// Waiting for a node to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Waiting for one answer of a node.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A Redis node, as `Store.Host` entries name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The nodes `Store.Host` lists (comma-separated). An entry is `host`, `host:port`, `[ipv6]` or
/// `[ipv6]:port`; entries without a port use `Store.Port` (6379 when 0). An empty `Store.Host`
/// is 127.0.0.1.
pub(super) fn parse_nodes(hosts: &str, port: i64) -> StoreResult<Vec<NodeAddr>> {
    let default_port = match port {
        0 => 6379,
        port => u16::try_from(port).map_err(|_| {
            StoreError::Backend(format!("redis: Store.Port {port} is not a TCP port"))
        })?,
    };
    if hosts.trim().is_empty() {
        return Ok(vec![NodeAddr {
            host: "127.0.0.1".to_owned(),
            port: default_port,
        }]);
    }
    hosts
        .split(',')
        .map(|entry| parse_node(entry.trim(), default_port))
        .collect()
}

fn parse_node(entry: &str, default_port: u16) -> StoreResult<NodeAddr> {
    let bad = |why: &str| StoreError::Backend(format!("redis: Store.Host entry '{entry}' {why}"));
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("lacks its ']'"))?;
            match after {
                "" => (host, None),
                after => (
                    host,
                    Some(after.strip_prefix(':').ok_or_else(|| bad("is malformed"))?),
                ),
            }
        }
        // A bare IPv6 address has several colons and no port.
        None => match entry.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (entry, None),
        },
    };
    if host.is_empty() {
        return Err(bad("names no host"));
    }
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| bad("has a port that is not a TCP port"))?,
        None => default_port,
    };
    Ok(NodeAddr {
        host: host.to_owned(),
        port,
    })
}

#[derive(Clone)]
pub(super) enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Where a key scan runs: the one node, or one master of a cluster.
pub(super) enum KeyHolder {
    Node,
    Master(NodeAddr),
}

impl Connection {
    /// One node when `Store.Host` names one, a Redis Cluster reached through the seeds it lists
    /// when it names several. Both give up on a node after the same timeouts and reconnect on a
    /// later call once it answers again.
    pub async fn open(config: &StoreOptions) -> StoreResult<Self> {
        let nodes = parse_nodes(&config.host, config.port)?;
        let shown = nodes
            .iter()
            .map(NodeAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let backend = |e: redis::RedisError| StoreError::Backend(format!("redis at {shown}: {e}"));
        // dtm's Redis store ignores Db; here a number selects that database, anything else
        // (the default `dtm`, meant for SQL) means 0.
        let db: i64 = config.db.parse().unwrap_or(0);
        let mut settings = RedisConnectionInfo::default().set_db(db);
        if !config.user.is_empty() {
            settings = settings.set_username(&config.user);
        }
        if !config.password.is_empty() {
            settings = settings.set_password(&config.password);
        }
        let infos = nodes
            .iter()
            .map(|node| {
                ConnectionAddr::Tcp(node.host.clone(), node.port)
                    .into_connection_info()
                    .map(|info| info.set_redis_settings(settings.clone()))
            })
            .collect::<RedisResult<Vec<_>>>()
            .map_err(backend)?;
        let connect = async {
            match <[_; 1]>::try_from(infos) {
                Ok([info]) => Self::open_node(info).await,
                Err(_) if db != 0 => Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "a Redis Cluster has only database 0; Store.Db must not select another",
                ))),
                Err(seeds) => Self::open_cluster(seeds).await,
            }
        };
        connect.await.map_err(backend)
    }

    async fn open_node(info: redis::ConnectionInfo) -> RedisResult<Self> {
        // Short timeouts and few reconnection attempts: a dead Redis must fail calls within the
        // store's deadline, and the manager reconnects on the next call once it is back.
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager =
            ConnectionManager::new_with_config(Client::open(info)?, manager_config).await?;
        Ok(Self::Node(manager))
    }

    /// The seeds need not be every node: the client learns the others from the cluster.
    async fn open_cluster(seeds: Vec<redis::ConnectionInfo>) -> RedisResult<Self> {
        let client = ClusterClientBuilder::new(seeds)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(1)
            .min_retry_wait(100)
            .max_retry_wait(500)
            .build()?;
        Ok(Self::Cluster(client.get_async_connection().await?))
    }

    /// One node: a script may touch keys of any slot (the indexes with a transaction's record).
    pub fn is_one_node(&self) -> bool {
        matches!(self, Self::Node(_))
    }

    /// Independent commands, possibly on many slots, answered in the order given. On one node
    /// they go as one pipeline; on a cluster each goes to its slot's node, all at once (each
    /// node's connection pipelines them), so they must not depend on each other's order.
    pub async fn query_each<T: FromRedisValue>(&self, cmds: &[Cmd]) -> RedisResult<Vec<T>> {
        match self {
            _ if cmds.is_empty() => Ok(Vec::new()),
            Self::Node(manager) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone());
                }
                pipe.query_async(&mut manager.clone()).await
            }
            Self::Cluster(cluster) => {
                try_join_all(cmds.iter().map(|cmd| {
                    let mut cluster = cluster.clone();
                    async move { cmd.query_async(&mut cluster).await }
                }))
                .await
            }
        }
    }

    /// The nodes that together hold every key: the one node, or each master of the cluster.
    pub async fn key_holders(&self) -> RedisResult<Vec<KeyHolder>> {
        let Self::Cluster(cluster) = self else {
            return Ok(vec![KeyHolder::Node]);
        };
        // A command sent to every master without a way to merge the answers comes back as a
        // map from each master's address to its answer.
        let answers = cluster
            .clone()
            .route_command(
                redis::cmd("PING"),
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
            )
            .await?;
        let Value::Map(answers) = answers else {
            return Err(unexpected_reply("the masters' addresses", &answers));
        };
        answers
            .iter()
            .map(|(address, _)| {
                let address = String::from_redis_value_ref(address)?;
                address
                    .rsplit_once(':')
                    .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                    .map(|(host, port)| KeyHolder::Master(NodeAddr { host, port }))
                    .ok_or_else(|| unexpected_reply("a master's address", address.as_str()))
            })
            .collect()
    }

    /// Runs `cmd` on `holder` (a key scan, which the cluster client would send anywhere).
    pub async fn query_on<T: FromRedisValue>(
        &self,
        holder: &KeyHolder,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (self, holder) {
            (Self::Cluster(cluster), KeyHolder::Master(node)) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: node.host.clone(),
                    port: node.port,
                });
                let value = cluster.clone().route_command(cmd.clone(), routing).await?;
                Ok(T::from_redis_value(value)?)
            }
            (conn, _) => cmd.query_async(&mut conn.clone()).await,
        }
    }

    /// A cluster pipeline, run slot by slot in order (see the module doc).
    async fn cluster_pipeline(
        cluster: &mut ClusterConnection,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
        let mut runs: Vec<Vec<&Cmd>> = Vec::new();
        let mut run_slot = None;
        for cmd in &cmds {
            let slot = slot_of(cmd);
            match runs.last_mut() {
                Some(run) if slot.is_none() || slot == run_slot || run_slot.is_none() => {
                    run.push(cmd);
                    run_slot = run_slot.or(slot);
                }
                _ => {
                    runs.push(vec![cmd]);
                    run_slot = slot;
                }
            }
        }
        // One slot (or a MULTI/EXEC pipeline, which must be on one slot anyway): as it is.
        if runs.len() <= 1 || (offset, count) != (0, cmds.len()) {
            return cluster.req_packed_commands(pipeline, offset, count).await;
        }
        let mut values = Vec::with_capacity(count);
        for run in runs {
            let mut part = redis::pipe();
            for cmd in &run {
                part.add_command((*cmd).clone());
            }
            values.extend(cluster.req_packed_commands(&part, 0, run.len()).await?);
        }
        Ok(values)
    }
}

/// The slot of a command's first key (`None` for a command without keys). The cluster client
/// has its own routing table, but keeps it private; this covers the commands the store sends.
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(arg) => arg,
            _ => b"0".as_slice(),
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" => {
            let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            args.get(3)?
        }
        b"PING" | b"SCRIPT" | b"SCAN" | b"INFO" | b"CLUSTER" => return None,
        _ => args.get(1)?,
    };
    Some(Slot::for_key(key))
}

fn unexpected_reply(what: &str, reply: impl std::fmt::Debug) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected answer",
        format!("{what}: {reply:?}"),
    ))
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(manager) => manager.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(manager) => manager.req_packed_commands(pipeline, offset, count),
            Self::Cluster(cluster) => {
                Box::pin(Self::cluster_pipeline(cluster, pipeline, offset, count))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(manager) => manager.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: u16) -> NodeAddr {
        NodeAddr {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn host_entries_without_a_port_take_store_port() {
        assert_eq!(parse_nodes("", 0).unwrap(), [node("127.0.0.1", 6379)]);
        assert_eq!(
            parse_nodes("redis.local", 7000).unwrap(),
            [node("redis.local", 7000)]
        );
        assert_eq!(
            parse_nodes("a:7001, b ,[::1]:7003,[::2],::3", 7000).unwrap(),
            [
                node("a", 7001),
                node("b", 7000),
                node("::1", 7003),
                node("::2", 7000),
                node("::3", 7000)
            ]
        );
    }

    #[test]
    fn malformed_host_entries_are_refused() {
        for hosts in ["a:7000,", "a:port", "[::1", "[::1]7000", ":7000", "a:70000"] {
            let refused = parse_nodes(hosts, 0);
            assert!(
                matches!(&refused, Err(StoreError::Backend(m)) if m.contains("Store.Host")),
                "{hosts}: {refused:?}"
            );
        }
        assert!(parse_nodes("a", 70_000).is_err());
    }

    #[test]
    fn commands_are_placed_on_their_key_slot() {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("sha")
            .arg(2)
            .arg("n:{g1}:g")
            .arg("n:{g1}:b")
            .arg("x");
        assert_eq!(slot_of(&eval), Some(Slot::for_key("g1")));
        assert_eq!(
            slot_of(redis::cmd("ZADD").arg("n:cron:{3}").arg(1).arg("g")),
            Some(Slot::for_key("3"))
        );
        assert_eq!(slot_of(redis::cmd("EVAL").arg("return 1").arg(0)), None);
        assert_eq!(slot_of(&redis::cmd("PING")), None);
    }
}
