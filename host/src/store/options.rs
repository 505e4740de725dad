//! What a store is opened with: the store's own options, made from the configuration's `Store`
//! section here and nowhere else, so that no backend reads the configuration itself.

use crate::config::StoreConfig;

/// Which backend holds the data (`Store.Driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded store in the data directory (`embedded`, or dtm's `boltdb`).
    Embedded,
    Postgres,
    MySql,
    Redis,
}

/// How to reach a shared store and how to keep its data.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub kind: StoreKind,
    /// The server's host; for Redis, several `host:port` seeds of a cluster, comma-separated.
    pub host: String,
    /// 0: the server's usual port.
    pub port: i64,
    /// Empty: none is sent.
    pub user: String,
    /// Empty: none is sent.
    pub password: String,
    /// The database (PostgreSQL: the one connected to; MySQL: the one holding the tables;
    /// Redis: a number selects that database).
    pub db: String,
    /// The PostgreSQL schema holding the tables.
    pub schema: String,
    /// Most connections a SQL store's pool opens.
    pub max_open_conns: i64,
    /// Minutes a SQL connection is used before it is replaced (≤ 0: no limit).
    pub conn_max_life_time: i64,
    /// Seconds an unfinished transaction's Redis keys live (≤ 0: no expiry).
    pub data_expire: i64,
    /// Seconds a finished transaction's Redis keys live (≤ 0: no expiry).
    pub finished_data_expire: i64,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
}

impl From<&StoreConfig> for StoreOptions {
    fn from(config: &StoreConfig) -> Self {
        let kind = match config.driver.as_str() {
            "postgres" => StoreKind::Postgres,
            "mysql" => StoreKind::MySql,
            "redis" => StoreKind::Redis,
            // `embedded`, `boltdb`; the configuration refuses any other name.
            _ => StoreKind::Embedded,
        };
        Self {
            kind,
            host: config.host.clone(),
            port: config.port,
            user: config.user.clone(),
            password: config.password.clone(),
            db: config.db.clone(),
            schema: config.schema.clone(),
            max_open_conns: config.max_open_conns,
            conn_max_life_time: config.conn_max_life_time,
            data_expire: config.data_expire,
            finished_data_expire: config.finished_data_expire,
            redis_prefix: config.redis_prefix.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_driver_names_map_to_kinds() {
        let mut config = crate::config::Config::default().store;
        for (driver, kind) in [
            ("embedded", StoreKind::Embedded),
            ("boltdb", StoreKind::Embedded),
            ("postgres", StoreKind::Postgres),
            ("mysql", StoreKind::MySql),
            ("redis", StoreKind::Redis),
        ] {
            config.driver = driver.into();
            assert_eq!(StoreOptions::from(&config).kind, kind, "{driver}");
        }
    }

    #[test]
    fn every_connection_setting_is_carried_over() {
        let mut config = crate::config::Config::default().store;
        config.host = "db.internal".into();
        config.port = 5433;
        config.user = "dtm".into();
        config.password = "secret".into();
        config.redis_prefix = "{p}".into();
        let options = StoreOptions::from(&config);
        assert_eq!(
            (
                options.host.as_str(),
                options.port,
                options.user.as_str(),
                options.password.as_str(),
                options.db.as_str(),
                options.schema.as_str(),
                options.redis_prefix.as_str(),
            ),
            ("db.internal", 5433, "dtm", "secret", "dtm", "public", "{p}")
        );
        assert_eq!(
            (
                options.max_open_conns,
                options.conn_max_life_time,
                options.data_expire,
                options.finished_data_expire,
            ),
            (500, 5, 604_800, 86_400)
        );
    }
}
