//! zero-contrib's nacos registration and resolver over Nacos' v1 open API (docs/drivers.md §4.3.2,
//! §4.3.5, §5.3).

use gourl::Url;
use regkit::nacos::{Instance, Nacos};
use sdk::{Host, Registration, Resolution};
use serde::{Deserialize, Serialize};

use crate::State;

/// The Go SDK beats an ephemeral instance this often unless the server says otherwise.
const BEAT_MS: u64 = 5000;
/// The Go SDK's cache lifetime when the server names none.
const CACHE_MS: u64 = 10_000;
const DEFAULT_GROUP: &str = "DEFAULT_GROUP";

#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The server's `host:port`.
    address: String,
    instance: Instance,
}

/// The server's `host:port`, which must have a port (Go panics without one).
fn server_address(url: &Url) -> Result<String, String> {
    if url.host.contains(':') {
        Ok(url.host.clone().into_owned())
    } else {
        Err(format!(
            "nacos server '{}' has no port (nacos://host:port/service)",
            url.host
        ))
    }
}

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() {
        default
    } else {
        value
    }
}

/// Registers an ephemeral instance. The target's `timeoutMs`, `notLoadCacheAtStart` and
/// `logLevel` tune the Go SDK only; the host's request timeout applies instead.
pub fn register(host: &dyn Host, target: &Url, endpoint: &str) -> Result<Registration, String> {
    let address = server_address(target)?;
    let (ip, port) = regkit::listen_address(host, endpoint)?;
    let query = target.query();
    let instance = Instance {
        namespace_id: or_default(query.get("namespaceId"), "public").to_owned(),
        service_name: target.path_name().to_owned(),
        group_name: DEFAULT_GROUP.into(),
        cluster_name: String::new(),
        ip,
        port,
        weight: 1.0,
        enable: true,
        healthy: true,
        ephemeral: true,
        metadata: serde_json::json!({}),
    };
    Nacos::connect(host, &address, None)?.register(&instance)?;
    crate::registration(State::Nacos(Registered { address, instance }), BEAT_MS)
}

/// Beats at the interval the server asks for; registers again when it no longer knows the
/// instance (code 20404), as the Go SDK does.
pub fn keep_alive(host: &dyn Host, registered: Registered) -> Result<Registration, String> {
    let nacos = Nacos::connect(host, &registered.address, None)?;
    let beat = nacos.beat(&registered.instance)?;
    if beat.unknown_instance {
        crate::warn(&format!(
            "nacos no longer knows {}:{} of '{}'; registering again",
            registered.instance.ip, registered.instance.port, registered.instance.service_name
        ));
        nacos.register(&registered.instance)?;
    }
    let every = beat.interval_ms.filter(|&ms| ms > 0).unwrap_or(BEAT_MS);
    crate::registration(State::Nacos(registered), every)
}

pub fn deregister(host: &dyn Host, registered: &Registered) -> Result<(), String> {
    Nacos::connect(host, &registered.address, None)?.deregister(&registered.instance)
}

/// Every listed instance's `ip:port`, healthy or not, as the Go resolver hands them on. Branch
/// servers carry no parameters (parse-server-method cuts the query), so namespace `public`
/// and group `DEFAULT_GROUP` apply unless an SDK user names others.
pub fn resolve(host: &dyn Host, url: &Url) -> Result<Resolution, String> {
    let address = server_address(url)?;
    let query = url.query();
    let listing = Nacos::connect(host, &address, None)?.list(
        or_default(query.get("namespaceid"), "public"),
        or_default(query.get("GroupName"), DEFAULT_GROUP),
        url.path_name(),
        query.get("Clusters"),
    )?;
    Ok(Resolution {
        endpoints: regkit::merged(
            listing
                .hosts
                .iter()
                .map(|listed| format!("{}:{}", listed.ip, listed.port)),
        ),
        refresh_ms: listing
            .cache_millis
            .filter(|&ms| ms > 0)
            .unwrap_or(CACHE_MS),
    })
}
