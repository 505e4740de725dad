//! Pool setup: connection options per server, the pool's size fitted to what the server accepts,
//! the lender that keeps the connections between calls (`lender.rs`), and why a request got no
//! connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlSslMode};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgSslMode, Postgres};
use sqlx::Database;

use super::lender::Lender;
use super::{backend, db_error, Dialect, SqlStore};
use crate::store::{StoreOptions, StoreResult};

/// How long to wait for a connection (also when the server is down or unreachable): a request
/// then fails with a clear error instead of hanging.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Under MySQL's default REPEATABLE READ, a claim's locking scan of the `(status,
/// next_cron_time)` index also locks the gaps between the entries it passes; a status change
/// or reschedule, which moves its row's entry into such a gap, then waits on the claim while
/// the claim waits on its row: InnoDB reports a deadlock and one of them fails. READ COMMITTED
/// takes no gap locks. Nothing here relies on repeatable reads: every decision is a locking
/// read or a conditional write.
pub(super) const READ_COMMITTED: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";
/// How many connections PostgreSQL accepts from a user that is not a superuser.
pub(super) const POSTGRES_CONNECTION_LIMIT: &str =
    "SELECT current_setting('max_connections')::bigint \
     - current_setting('superuser_reserved_connections')::bigint";
/// How many connections MySQL accepts (one more is kept for an administrator).
pub(super) const MYSQL_CONNECTION_LIMIT: &str = "SELECT CAST(@@max_connections AS SIGNED)";

pub(super) enum Pool {
    Postgres(Arc<Lender<Postgres>>),
    MySql(Arc<Lender<MySql>>),
}

/// When a store call last failed.
pub(super) type LastFailure = Arc<Mutex<Option<Instant>>>;

/// A pool of at most `configured` connections (with the settings `make` gives), and never more
/// than the server accepts (`limit_sql` asks it): a connection the server refuses is retried by
/// its request until the request gives up, never handed one that another request gives back, so
/// with more connections than the server accepts, requests failed that could have waited.
pub(super) async fn fitted_pool<DB>(
    make: impl Fn(u32) -> PoolOptions<DB>,
    options: <DB::Connection as sqlx::Connection>::Options,
    configured: u32,
    limit_sql: &'static str,
) -> Result<sqlx::Pool<DB>, sqlx::Error>
where
    DB: Database,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let pool = make(configured).connect_with(options.clone()).await?;
    let limit: i64 = sqlx::query_scalar(limit_sql).fetch_one(&pool).await?;
    let max = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
    if max >= configured {
        return Ok(pool);
    }
    tracing::info!(
        max_open_conns = configured,
        server_accepts = max,
        "store: at most as many connections as the server accepts"
    );
    pool.close().await;
    Ok(make(max).connect_lazy_with(options))
}

/// The pool's settings, for at most `max` connections. The pool only opens connections: the
/// lender (`lender.rs`) keeps them between calls and checks them.
pub(super) fn pool_options<DB: Database>(max: u32) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max)
        .acquire_timeout(CONNECT_TIMEOUT)
        .test_before_acquire(false)
}

/// `Store.ConnMaxLifeTime` (minutes; 0: no limit).
fn lifetime(config: &StoreOptions) -> Option<Duration> {
    u64::try_from(config.conn_max_life_time)
        .ok()
        .filter(|&minutes| minutes > 0)
        .map(|minutes| Duration::from_secs(minutes * 60))
}

/// The server's address from the config, with the server's usual port when none is set.
pub(super) fn address(dialect: Dialect, config: &StoreOptions) -> StoreResult<(String, u16)> {
    let host = if config.host.is_empty() {
        "localhost".to_owned()
    } else {
        config.host.clone()
    };
    let port = match config.port {
        0 => match dialect {
            Dialect::Postgres => 5432,
            Dialect::MySql => 3306,
        },
        p => u16::try_from(p).map_err(|_| backend(format!("Store.Port {p} is not a TCP port")))?,
    };
    Ok((host, port))
}

impl Pool {
    /// A pool on the server `config` names, with at most `Store.MaxOpenConns` connections (fewer
    /// if the server accepts fewer); `last_failure` is the store's, read before each hand-out.
    pub(super) async fn connect(
        dialect: Dialect,
        config: &StoreOptions,
        last_failure: &LastFailure,
    ) -> StoreResult<Self> {
        let (host, port) = address(dialect, config)?;
        let configured = u32::try_from(config.max_open_conns.max(1)).unwrap_or(u32::MAX);
        Ok(match dialect {
            Dialect::Postgres => {
                // dtm connects with sslmode=disable; the tables live in Store.Schema of Store.Db.
                let mut options = PgConnectOptions::new()
                    .host(&host)
                    .port(port)
                    .database(&config.db)
                    .ssl_mode(PgSslMode::Disable)
                    .application_name("dtm-host");
                if !config.user.is_empty() {
                    options = options.username(&config.user);
                }
                if !config.password.is_empty() {
                    options = options.password(&config.password);
                }
                let pool =
                    fitted_pool(pool_options, options, configured, POSTGRES_CONNECTION_LIMIT)
                        .await
                        .map_err(db_error)?;
                Pool::Postgres(Arc::new(Lender::new(
                    pool,
                    lifetime(config),
                    last_failure.clone(),
                )))
            }
            Dialect::MySql => {
                // No default database: Store.Db may not exist yet, and every table is qualified.
                let mut options = MySqlConnectOptions::new()
                    .host(&host)
                    .port(port)
                    .ssl_mode(MySqlSslMode::Disabled)
                    .charset("utf8mb4");
                if !config.user.is_empty() {
                    options = options.username(&config.user);
                }
                // An empty password must not be sent: the server then expects none.
                if !config.password.is_empty() {
                    options = options.password(&config.password);
                }
                let mysql_options = |max| {
                    pool_options(max).after_connect(|conn: &mut sqlx::MySqlConnection, _| {
                        Box::pin(async move {
                            sqlx::Executor::execute(conn, READ_COMMITTED)
                                .await
                                .map(drop)
                        })
                    })
                };
                let pool = fitted_pool(mysql_options, options, configured, MYSQL_CONNECTION_LIMIT)
                    .await
                    .map_err(db_error)?;
                Pool::MySql(Arc::new(Lender::new(
                    pool,
                    lifetime(config),
                    last_failure.clone(),
                )))
            }
        })
    }
}

impl SqlStore {
    /// Why a request got no connection within [`CONNECT_TIMEOUT`]: every connection of the
    /// pool was busy (more store calls at once than it serves: back-pressure, not an outage),
    /// or opening one failed.
    pub(super) fn why_no_connection(&self) -> String {
        let (open, idle, max) = on_pool!(self, lender => lender.usage());
        let waited = CONNECT_TIMEOUT.as_secs();
        if open >= max && idle == 0 {
            format!(
                "all {max} connections were busy for {waited} s: more store calls at once than \
                 Store.MaxOpenConns (or the server's connection limit) lets through"
            )
        } else {
            format!(
                "no connection could be opened within {waited} s: the server is down, \
                 unreachable, or refuses more connections"
            )
        }
    }
}
