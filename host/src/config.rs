//! Configuration with dtm's key names, so an existing dtm `conf.yml` works.
//!
//! Loading (docs/engine.md §6.1): defaults, then an environment variable per key (dtm's naming rule:
//! `MicroService.EndPoint` → `MICRO_SERVICE_END_POINT`), then the YAML file on top. Values of the
//! wrong type and invalid settings are refused with a message naming the key; unknown keys are
//! reported back so the caller can warn about them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreConfig {
    /// `embedded` (default; `boltdb`, dtm's embedded store, is an alias), `postgres`, `mysql`,
    /// `redis`.
    #[serde(rename = "Driver")]
    pub driver: String,
    /// Directory of the embedded store's files (dtm-host extension).
    #[serde(rename = "DataDir")]
    pub data_dir: String,
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Port")]
    pub port: i64,
    #[serde(rename = "User")]
    pub user: String,
    #[serde(rename = "Password")]
    pub password: String,
    #[serde(rename = "Db")]
    pub db: String,
    #[serde(rename = "Schema")]
    pub schema: String,
    #[serde(rename = "MaxOpenConns")]
    pub max_open_conns: i64,
    #[serde(rename = "MaxIdleConns")]
    pub max_idle_conns: i64,
    #[serde(rename = "ConnMaxLifeTime")]
    pub conn_max_life_time: i64,
    #[serde(rename = "DataExpire")]
    pub data_expire: i64,
    #[serde(rename = "FinishedDataExpire")]
    pub finished_data_expire: i64,
    #[serde(rename = "RedisPrefix")]
    pub redis_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MicroServiceConfig {
    /// The active driver's name: `default` (built in) or the name a wasm driver reports.
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Target")]
    pub target: String,
    #[serde(rename = "EndPoint")]
    pub end_point: String,
    /// The active driver's `.wasm` component (dtm-host key).
    #[serde(rename = "DriverPath")]
    pub driver_path: String,
    /// Comma-separated `host:port` registries a driver may send HTTP to, besides the host of
    /// `Target` (dtm-host key).
    #[serde(rename = "RegistryAddresses")]
    pub registry_addresses: String,
    /// Longest a driver call may run, in milliseconds (dtm-host key).
    #[serde(rename = "DriverTimeoutMs")]
    pub driver_timeout_ms: i64,
    /// Longest a driver call may take in all, waits for its registry included, in
    /// milliseconds; 0: three RequestTimeouts (dtm-host key).
    #[serde(rename = "DriverWallTimeMs")]
    pub driver_wall_time_ms: i64,
    /// Most memory a driver instance may use, in MiB (dtm-host key).
    #[serde(rename = "DriverMemoryMiB")]
    pub driver_memory_mib: i64,
    /// Where compiled drivers are cached; empty: `<Store.DataDir>/driver-cache` (dtm-host key).
    #[serde(rename = "DriverCacheDir")]
    pub driver_cache_dir: String,
}

/// dtm's `HttpMicroService` section: read and ignored, as dtm does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpMicroServiceConfig {
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "RegistryType")]
    pub registry_type: String,
    #[serde(rename = "RegistryAddress")]
    pub registry_address: String,
    #[serde(rename = "RegistryOptions")]
    pub registry_options: String,
    #[serde(rename = "Target")]
    pub target: String,
    #[serde(rename = "EndPoint")]
    pub end_point: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogConfig {
    /// Comma-separated: `stderr`, `stdout` or file paths.
    #[serde(rename = "Outputs")]
    pub outputs: String,
    #[serde(rename = "RotationEnable")]
    pub rotation_enable: i64,
    #[serde(rename = "RotationConfigJSON")]
    pub rotation_config_json: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    #[serde(rename = "Store")]
    pub store: StoreConfig,
    #[serde(rename = "TransCronInterval")]
    pub trans_cron_interval: i64,
    /// How many recovery passes a host runs at once (dtm runs one).
    #[serde(rename = "TransCronConcurrency")]
    pub trans_cron_concurrency: i64,
    #[serde(rename = "TimeoutToFail")]
    pub timeout_to_fail: i64,
    #[serde(rename = "RetryInterval")]
    pub retry_interval: i64,
    #[serde(rename = "RequestTimeout")]
    pub request_timeout: i64,
    #[serde(rename = "HttpPort")]
    pub http_port: i64,
    #[serde(rename = "GrpcPort")]
    pub grpc_port: i64,
    /// Read but unused, as in dtm: JSON-RPC is served on the HTTP port.
    #[serde(rename = "JsonRpcPort")]
    pub json_rpc_port: i64,
    #[serde(rename = "MicroService")]
    pub micro_service: MicroServiceConfig,
    #[serde(rename = "HttpMicroService")]
    pub http_micro_service: HttpMicroServiceConfig,
    #[serde(rename = "UpdateBranchSync")]
    pub update_branch_sync: i64,
    #[serde(rename = "UpdateBranchAsyncGoroutineNum")]
    pub update_branch_async_goroutine_num: i64,
    #[serde(rename = "LogLevel")]
    pub log_level: String,
    #[serde(rename = "Log")]
    pub log: LogConfig,
    #[serde(rename = "TimeZoneOffset")]
    pub time_zone_offset: String,
    #[serde(rename = "ConfigUpdateInterval")]
    pub config_update_interval: i64,
    #[serde(rename = "AlertRetryLimit")]
    pub alert_retry_limit: i64,
    #[serde(rename = "AlertWebHook")]
    pub alert_web_hook: String,
    #[serde(rename = "AdminBasePath")]
    pub admin_base_path: String,
    /// When set, the admin UI and its admin-only JSON need `Authorization: Bearer <token>`
    /// (dtm-host key; dtm's own API stays open for its SDKs).
    #[serde(rename = "AdminToken")]
    pub admin_token: String,
    #[serde(rename = "GrpcServiceConfig")]
    pub grpc_service_config: String,
    /// The load-balancing policy `GrpcServiceConfig` names, read from it by [`load`].
    #[serde(skip)]
    pub grpc_balancing: Balancing,
    /// Largest request body accepted, in bytes (dtm-host extension).
    #[serde(rename = "MaxBodyBytes")]
    pub max_body_bytes: i64,
    /// Threads running the requests, passes and calls (dtm-host key); 0: one per core
    /// ([`Config::worker_threads`]).
    #[serde(rename = "WorkerThreads")]
    pub worker_threads: i64,
}

/// Most `WorkerThreads` accepted: far beyond any machine's cores, short of exhausting threads.
const MOST_WORKER_THREADS: i64 = 1024;

impl Config {
    /// The async runtime's worker threads on a machine of `cores` cores: `WorkerThreads`, or one
    /// per core (tokio's default). Fewer can pay where the coordinator shares a small machine
    /// with its store server and services (README "Benchmarks": on 2 cores one worker spent
    /// 10–38 % less CPU per Redis or PostgreSQL transaction, and reached 11–22 % fewer
    /// transactions a second on the embedded store and MariaDB).
    pub fn worker_threads(&self, cores: usize) -> usize {
        match usize::try_from(self.worker_threads) {
            Ok(0) | Err(_) => cores.max(1),
            Ok(n) => n,
        }
    }
}

const DEFAULT_GRPC_SERVICE_CONFIG: &str = r#"{"loadBalancingConfig": [{"round_robin":{}}]}"#;

/// How gRPC branch calls spread over the endpoints a server resolved to (`GrpcServiceConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balancing {
    /// Each call takes the next endpoint (gRPC's `round_robin`, dtm's default).
    #[default]
    RoundRobin,
    /// Every call takes the first endpoint (gRPC's `pick_first`).
    PickFirst,
}

impl Balancing {
    /// Reads the policy of a gRPC service config such as dtm's default
    /// `{"loadBalancingConfig": [{"round_robin":{}}]}` (config key `GrpcServiceConfig`).
    pub fn from_service_config(json: &str) -> Result<Self, BalancingError> {
        let config: serde_json::Value =
            serde_json::from_str(json).map_err(BalancingError::NotJson)?;
        let policy = config["loadBalancingConfig"][0]
            .as_object()
            .and_then(|p| p.keys().next().cloned())
            .unwrap_or_else(|| "round_robin".into());
        match policy.as_str() {
            "round_robin" => Ok(Self::RoundRobin),
            "pick_first" => Ok(Self::PickFirst),
            other => Err(BalancingError::Unsupported(other.to_owned())),
        }
    }
}

/// Why a `GrpcServiceConfig` is refused (the problem of a `ConfigError::Key`).
#[derive(Debug, thiserror::Error)]
pub enum BalancingError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("load balancing policy '{0}' is not supported (round_robin, pick_first)")]
    Unsupported(String),
}

/// Why an `AdminBasePath` is refused (the problem of a `ConfigError::Key`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BasePathError {
    #[error("expected an empty value or a path such as /dtm-admin (letters, digits, - . _ ~ /), got '{0}'")]
    NotPlain(String),
    #[error("'{0}' is under /api, which holds the coordinator's own routes; choose a path such as /dtm-admin")]
    UnderApi(String),
}

/// `AdminBasePath` must be empty or an absolute URL path of plain characters: it is written
/// into the page's HTML and into route patterns as it is. It must stay out of `/api`, where
/// the pages' routes would clash with the host's own (merging them panics at start).
fn check_base_path(path: &str) -> Result<(), BasePathError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    if !(path.is_empty() || (path.starts_with('/') && path.chars().all(plain))) {
        return Err(BasePathError::NotPlain(path.to_owned()));
    }
    if path.trim_end_matches('/') == "/api" || path.starts_with("/api/") {
        return Err(BasePathError::UnderApi(path.to_owned()));
    }
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            store: StoreConfig {
                driver: "embedded".into(),
                data_dir: "./data".into(),
                host: String::new(),
                port: 0,
                user: String::new(),
                password: String::new(),
                db: "dtm".into(),
                schema: "public".into(),
                max_open_conns: 500,
                max_idle_conns: 500,
                conn_max_life_time: 5,
                data_expire: 604_800,
                finished_data_expire: 86_400,
                redis_prefix: "{a}".into(),
            },
            trans_cron_interval: 3,
            trans_cron_concurrency: 256,
            timeout_to_fail: 35,
            retry_interval: 10,
            request_timeout: 3,
            http_port: 36789,
            grpc_port: 36790,
            json_rpc_port: 36791,
            micro_service: MicroServiceConfig {
                driver: "default".into(),
                target: String::new(),
                end_point: String::new(),
                driver_path: String::new(),
                registry_addresses: String::new(),
                driver_timeout_ms: 100,
                driver_wall_time_ms: 0,
                driver_memory_mib: 64,
                driver_cache_dir: String::new(),
            },
            http_micro_service: HttpMicroServiceConfig {
                driver: "default".into(),
                registry_type: String::new(),
                registry_address: String::new(),
                registry_options: "{}".into(),
                target: String::new(),
                end_point: String::new(),
            },
            update_branch_sync: 1,
            update_branch_async_goroutine_num: 1,
            log_level: "info".into(),
            log: LogConfig {
                outputs: "stderr".into(),
                rotation_enable: 0,
                rotation_config_json: "{}".into(),
            },
            time_zone_offset: String::new(),
            config_update_interval: 3,
            alert_retry_limit: 3,
            alert_web_hook: String::new(),
            admin_base_path: String::new(),
            admin_token: String::new(),
            grpc_service_config: DEFAULT_GRPC_SERVICE_CONFIG.into(),
            grpc_balancing: Balancing::RoundRobin,
            max_body_bytes: 4 * 1024 * 1024,
            worker_threads: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("config file {0} must hold a mapping of keys")]
    NotAMapping(PathBuf),
    #[error("config key {key}: {problem}")]
    Key { key: String, problem: String },
    #[error("environment variable {var} (config key {key}): {problem}")]
    Env {
        var: String,
        key: String,
        problem: String,
    },
}

/// A loaded configuration plus the keys the file had that dtm-host does not know.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub unknown_keys: Vec<String>,
}

/// dtm's environment-variable name for a dotted key path.
pub fn env_name(path: &str) -> String {
    let chars: Vec<char> = path.replace('.', "_").chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn key_error(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Loads defaults ← environment ← file, then validates.
pub fn load(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut tree = serde_yaml::to_value(Config::default())
        .map_err(|e| key_error("(defaults)", e.to_string()))?;
    apply_env(&mut tree, "", &env)?;
    let mut unknown_keys = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let overlay: Value = serde_yaml::from_str(&text).map_err(|source| ConfigError::Yaml {
            path: path.into(),
            source,
        })?;
        match overlay {
            Value::Null => {}
            Value::Mapping(m) => merge(&mut tree, m, "", &mut unknown_keys)?,
            _ => return Err(ConfigError::NotAMapping(path.into())),
        }
    }
    let mut config: Config =
        serde_yaml::from_value(tree).map_err(|e| key_error("(config)", e.to_string()))?;
    validate(&mut config)?;
    Ok(Loaded {
        config,
        unknown_keys,
    })
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn apply_env(
    tree: &mut Value,
    prefix: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let Value::Mapping(map) = tree else {
        return Ok(());
    };
    for (k, v) in map.iter_mut() {
        let path = join(prefix, k.as_str().unwrap_or_default());
        if v.is_mapping() {
            apply_env(v, &path, env)?;
            continue;
        }
        let var = env_name(&path);
        let Some(text) = env(&var).filter(|t| !t.is_empty()) else {
            continue;
        };
        *v = if v.is_number() {
            let n: i64 = text.trim().parse().map_err(|_| ConfigError::Env {
                var: var.clone(),
                key: path.clone(),
                problem: format!("expected an integer, got '{text}'"),
            })?;
            Value::from(n)
        } else {
            Value::from(text)
        };
    }
    Ok(())
}

/// Lays the file's keys over the tree, checking each value against the default's type.
fn merge(
    tree: &mut Value,
    overlay: Mapping,
    prefix: &str,
    unknown: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Value::Mapping(map) = tree else {
        return Ok(());
    };
    for (k, v) in overlay {
        let name = match &k {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let path = join(prefix, &name);
        let Some(slot) = map.get_mut(name.as_str()) else {
            unknown.push(path);
            continue;
        };
        match (slot.is_mapping(), v) {
            (true, Value::Mapping(inner)) => merge(slot, inner, &path, unknown)?,
            (true, Value::Null) => {}
            (true, _) => return Err(key_error(&path, "expected a mapping of keys")),
            (false, Value::Null) => {}
            (false, v) if slot.is_number() => match v.as_i64() {
                Some(n) => *slot = Value::from(n),
                None => {
                    return Err(key_error(
                        &path,
                        format!("expected an integer, got {}", describe(&v)),
                    ))
                }
            },
            (false, v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                *slot = match v {
                    Value::String(s) => Value::from(s),
                    Value::Number(n) => Value::from(n.to_string()),
                    Value::Bool(b) => Value::from(b.to_string()),
                    _ => unreachable!("matched above"),
                };
            }
            (false, v) => {
                return Err(key_error(
                    &path,
                    format!("expected a string, got {}", describe(&v)),
                ))
            }
        }
    }
    Ok(())
}

fn describe(v: &Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "an unreadable value".into())
}

/// Checks every value, and reads the typed ones out of their text.
fn validate(c: &mut Config) -> Result<(), ConfigError> {
    if c.retry_interval < 10 {
        return Err(key_error(
            "RetryInterval",
            "RetryInterval should not be less than 10",
        ));
    }
    if c.timeout_to_fail < c.retry_interval {
        return Err(key_error(
            "TimeoutToFail",
            "TimeoutToFail should not be less than RetryInterval",
        ));
    }
    for (key, value) in [
        ("TransCronInterval", c.trans_cron_interval),
        ("TransCronConcurrency", c.trans_cron_concurrency),
        ("RequestTimeout", c.request_timeout),
    ] {
        if value < 1 {
            return Err(key_error(key, format!("must be at least 1, got {value}")));
        }
    }
    if c.micro_service.driver_wall_time_ms < 0 {
        return Err(key_error(
            "MicroService.DriverWallTimeMs",
            format!(
                "must not be negative, got {}",
                c.micro_service.driver_wall_time_ms
            ),
        ));
    }
    for (key, value) in [("HttpPort", c.http_port), ("GrpcPort", c.grpc_port)] {
        if !(0..=65535).contains(&value) {
            return Err(key_error(key, format!("not a TCP port: {value}")));
        }
    }
    for (key, value) in [
        (
            "MicroService.DriverTimeoutMs",
            c.micro_service.driver_timeout_ms,
        ),
        (
            "MicroService.DriverMemoryMiB",
            c.micro_service.driver_memory_mib,
        ),
    ] {
        if value < 1 {
            return Err(key_error(key, format!("must be at least 1, got {value}")));
        }
    }
    if c.micro_service.driver != "default" && c.micro_service.driver_path.is_empty() {
        return Err(key_error(
            "MicroService.DriverPath",
            format!(
                "driver '{}' needs the path of its .wasm component",
                c.micro_service.driver
            ),
        ));
    }
    if let Err(problem) = check_base_path(&c.admin_base_path) {
        return Err(key_error("AdminBasePath", problem.to_string()));
    }
    // The token a request presents is trimmed; this one never would match. Not echoed: secret.
    if c.admin_token.trim() != c.admin_token {
        return Err(key_error(
            "AdminToken",
            "must not begin or end with whitespace (a trailing newline from a secret file?)",
        ));
    }
    c.grpc_balancing = Balancing::from_service_config(&c.grpc_service_config)
        .map_err(|problem| key_error("GrpcServiceConfig", problem.to_string()))?;
    if c.max_body_bytes < 1024 {
        return Err(key_error(
            "MaxBodyBytes",
            format!("must be at least 1024, got {}", c.max_body_bytes),
        ));
    }
    if !(0..=MOST_WORKER_THREADS).contains(&c.worker_threads) {
        return Err(key_error(
            "WorkerThreads",
            format!(
                "expected 0 (one per core) to {MOST_WORKER_THREADS}, got {}",
                c.worker_threads
            ),
        ));
    }
    if !["debug", "info", "warn", "error"].contains(&c.log_level.as_str()) {
        return Err(key_error(
            "LogLevel",
            format!("expected debug, info, warn or error, got '{}'", c.log_level),
        ));
    }
    if !c.time_zone_offset.is_empty() && time_zone_hours(&c.time_zone_offset).is_none() {
        return Err(key_error(
            "TimeZoneOffset",
            format!(
                "expected whole hours such as +8 or -5, got '{}'",
                c.time_zone_offset
            ),
        ));
    }
    match c.store.driver.as_str() {
        "embedded" | "boltdb" | "postgres" | "mysql" | "redis" => Ok(()),
        other => Err(key_error(
            "Store.Driver",
            format!("unknown store driver '{other}'; expected embedded"),
        )),
    }
}

/// `+8` → 8, `-5` → -5.
pub fn time_zone_hours(text: &str) -> Option<i32> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|h| (-12..=14).contains(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn env_names_follow_dtm() {
        assert_eq!(env_name("MicroService.EndPoint"), "MICRO_SERVICE_END_POINT");
        assert_eq!(
            env_name("Log.RotationConfigJSON"),
            "LOG_ROTATION_CONFIG_JSON"
        );
        assert_eq!(env_name("HttpPort"), "HTTP_PORT");
        assert_eq!(env_name("Store.MaxOpenConns"), "STORE_MAX_OPEN_CONNS");
        assert_eq!(
            env_name("UpdateBranchAsyncGoroutineNum"),
            "UPDATE_BRANCH_ASYNC_GOROUTINE_NUM"
        );
    }

    #[test]
    fn defaults_match_dtm() {
        let c = load(None, no_env).unwrap().config;
        assert_eq!(
            (
                c.http_port,
                c.grpc_port,
                c.retry_interval,
                c.timeout_to_fail
            ),
            (36789, 36790, 10, 35)
        );
        assert_eq!(c.update_branch_sync, 1);
        assert_eq!(c.store.data_dir, "./data");
    }

    #[test]
    fn env_sets_and_file_wins() {
        let env: HashMap<&str, &str> = [
            ("HTTP_PORT", "4000"),
            ("MICRO_SERVICE_END_POINT", "x:1"),
            ("GRPC_PORT", ""),
        ]
        .into();
        let get = |k: &str| env.get(k).map(|v| v.to_string());
        let c = load(None, get).unwrap().config;
        assert_eq!(
            (c.http_port, c.grpc_port, c.micro_service.end_point.as_str()),
            (4000, 36790, "x:1")
        );
        let f =
            file("HttpPort: 5000\nMicroService:\n  Driver: dtm-driver-x\n  DriverPath: x.wasm\n");
        let c = load(Some(f.path()), get).unwrap().config;
        assert_eq!(
            (
                c.http_port,
                c.micro_service.driver.as_str(),
                c.micro_service.end_point.as_str()
            ),
            (5000, "dtm-driver-x", "x:1")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |text: &str| {
            load(Some(file(text).path()), no_env)
                .unwrap_err()
                .to_string()
        };
        assert!(err("RetryInterval: 1").contains("RetryInterval should not be less than 10"));
        assert!(
            err("TimeoutToFail: 9").contains("TimeoutToFail should not be less than RetryInterval")
        );
        assert!(err("HttpPort: abc").contains("HttpPort"));
        assert!(err("Store: 3").contains("Store"));
        assert!(err("Store:\n  Driver: nosuch").contains("Store.Driver"));
        assert!(err("LogLevel: loud").contains("LogLevel"));
        assert!(err("WorkerThreads: -1").contains("WorkerThreads"));
        assert!(err("WorkerThreads: 5000").contains("WorkerThreads"));
        assert!(
            err("GrpcServiceConfig: '{\"loadBalancingConfig\":[{\"grpclb\":{}}]}'")
                .contains("GrpcServiceConfig")
        );
        assert!(err("- a\n- b").contains("mapping"));
        let get = |k: &str| (k == "HTTP_PORT").then(|| "eighty".to_string());
        assert!(load(None, get)
            .unwrap_err()
            .to_string()
            .contains("HTTP_PORT"));
    }

    #[test]
    fn worker_threads_are_one_per_core_unless_set() {
        let mut c = Config::default();
        assert_eq!(
            [0, 1, 2, 16].map(|cores| c.worker_threads(cores)),
            [1, 1, 2, 16]
        );
        c.worker_threads = 6;
        assert_eq!(c.worker_threads(2), 6);
    }

    #[test]
    fn an_admin_token_with_surrounding_whitespace_is_refused() {
        for token in [" s3cret", "s3cret\n", "\ts3cret ", " "] {
            let get = |k: &str| (k == "ADMIN_TOKEN").then(|| token.to_string());
            let err = load(None, get).unwrap_err().to_string();
            assert!(err.contains("config key AdminToken"), "{token:?}: {err}");
            assert!(err.contains("whitespace"), "{err}");
        }
        let f = file("AdminToken: 's3cret '\n");
        assert!(load(Some(f.path()), no_env).is_err());
        let get = |k: &str| (k == "ADMIN_TOKEN").then(|| "s3 cret".to_string());
        assert_eq!(load(None, get).unwrap().config.admin_token, "s3 cret");
    }

    #[test]
    fn base_paths() {
        for ok in [
            "",
            "/",
            "/dtm",
            "/ops/dtm-admin/",
            "/a_b.c~d",
            "/apis",
            "/ops/api",
        ] {
            assert_eq!(check_base_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "dtm",
            "/dtm admin",
            "/\"><script>",
            "/dtm?x=1",
            "/dtm#x",
            "/{x}",
            "/api",
            "/api/",
            "/api/ping",
            "/api/metrics",
            "/api/admin",
            "/api/dtmsvr/x",
        ] {
            assert!(check_base_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grpc_service_configs() {
        let default = r#"{"loadBalancingConfig": [{"round_robin":{}}]}"#;
        assert_eq!(
            Balancing::from_service_config(default).unwrap(),
            Balancing::RoundRobin
        );
        assert_eq!(
            Balancing::from_service_config(r#"{"loadBalancingConfig":[{"pick_first":{}}]}"#)
                .unwrap(),
            Balancing::PickFirst
        );
        assert!(
            Balancing::from_service_config(r#"{"loadBalancingConfig":[{"grpclb":{}}]}"#).is_err()
        );
        assert!(Balancing::from_service_config("{").is_err());
        let f = file("GrpcServiceConfig: '{\"loadBalancingConfig\":[{\"pick_first\":{}}]}'\n");
        let loaded = load(Some(f.path()), no_env).unwrap().config;
        assert_eq!(loaded.grpc_balancing, Balancing::PickFirst);
        assert_eq!(
            load(None, no_env).unwrap().config.grpc_balancing,
            Balancing::RoundRobin
        );
    }

    #[test]
    fn unknown_keys_are_reported_and_dtm_keys_accepted() {
        let f = file("GrpcBalancer: x\nStore:\n  Driver: boltdb\n  Nope: 1\nTimeZoneOffset: +8\n");
        let loaded = load(Some(f.path()), no_env).unwrap();
        assert_eq!(loaded.unknown_keys, ["GrpcBalancer", "Store.Nope"]);
        assert_eq!(loaded.config.time_zone_offset, "8");
    }
}
