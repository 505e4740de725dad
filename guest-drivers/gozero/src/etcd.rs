//! go-zero's etcd publisher and subscriber (`etcd://` and `discov://`, docs/drivers.md §4.3.2,
//! §4.3.3): the coordinator is key `<key>/<lease ID>` = its endpoint under a 10 s lease;
//! a server `etcd://h1,h2/<key>` resolves to the values under `<key>/`.

use gourl::{Query, Url};
use regkit::etcd::{Credentials, Etcd};
use sdk::{Host, Registration, Resolution};
use serde::{Deserialize, Serialize};

use crate::State;

const LEASE_TTL_SECS: u64 = 10;
/// The etcd Go client renews a lease at a third of its TTL.
const KEEP_ALIVE_MS: u64 = LEASE_TTL_SECS * 1000 / 3;
/// The Go subscriber watches the prefix; re-reading it this often comes close enough.
const REFRESH_MS: u64 = 5000;

#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The target's host: comma-separated etcd endpoints.
    hosts: String,
    key: String,
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials: Option<Credentials>,
    lease: String,
}

/// `?user=…&password=…` of a target; none without a user, as in go-zero.
fn credentials(query: &Query) -> Option<Credentials> {
    let user = query.get("user");
    (!user.is_empty()).then(|| Credentials {
        user: user.to_owned(),
        password: query.get("password").to_owned(),
    })
}

/// The cluster's endpoints in go-zero's account key form: sorted, joined by commas.
fn cluster(hosts: &str) -> Vec<&str> {
    let mut endpoints: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    endpoints.sort_unstable();
    endpoints
}

/// The credentials to resolve with: go-zero keeps the account the registration used per
/// cluster, so a server on the coordinator's own etcd cluster is read with them.
fn registry_credentials(hosts: &str, registry: &str) -> Option<Credentials> {
    let registry = gourl::parse(registry).ok()?;
    let same_kind = matches!(registry.scheme.as_ref(), "etcd" | "discov");
    (same_kind && cluster(&registry.host) == cluster(hosts))
        .then(|| credentials(&registry.query()))
        .flatten()
}

/// Grants a fresh lease and puts `<key>/<lease>` = `value` under it; returns the lease.
fn publish(etcd: &Etcd, key: &str, value: &str) -> Result<String, String> {
    let lease = etcd.grant(LEASE_TTL_SECS)?;
    etcd.put(&format!("{key}/{lease}"), value, Some(&lease))?;
    Ok(lease)
}

pub fn register(host: &dyn Host, target: &Url, endpoint: &str) -> Result<Registration, String> {
    let mut registered = Registered {
        hosts: target.host.clone().into_owned(),
        key: target.path_name().to_owned(),
        value: endpoint.to_owned(),
        credentials: credentials(&target.query()),
        lease: String::new(),
    };
    let etcd = Etcd::connect(host, &registered.hosts, registered.credentials.as_ref())?;
    registered.lease = publish(&etcd, &registered.key, &registered.value)?;
    crate::registration(State::Etcd(registered), KEEP_ALIVE_MS)
}

/// Renews the lease; when etcd has lost it, registers again under a new lease (and so a new
/// key), as go-zero does.
pub fn keep_alive(host: &dyn Host, mut registered: Registered) -> Result<Registration, String> {
    let etcd = Etcd::connect(host, &registered.hosts, registered.credentials.as_ref())?;
    if !etcd.keep_alive(&registered.lease)? {
        crate::warn(&format!(
            "etcd lost lease {} of '{}/{}'; registering again",
            registered.lease, registered.key, registered.lease
        ));
        registered.lease = publish(&etcd, &registered.key, &registered.value)?;
    }
    crate::registration(State::Etcd(registered), KEEP_ALIVE_MS)
}

/// Revokes the lease, which deletes the key.
pub fn deregister(host: &dyn Host, registered: &Registered) -> Result<(), String> {
    let etcd = Etcd::connect(host, &registered.hosts, registered.credentials.as_ref())?;
    etcd.revoke(&registered.lease)
}

pub fn resolve(host: &dyn Host, server: &Url, registry: &str) -> Result<Resolution, String> {
    let key = server.path.trim_matches('/');
    let credentials = registry_credentials(&server.host, registry);
    let etcd = Etcd::connect(host, &server.host, credentials.as_ref())?;
    // The trailing slash keeps `trans` from matching `transfer/…`.
    let kvs = etcd.range_prefix(&format!("{key}/"))?;
    let mut endpoints = regkit::merged(kvs.into_iter().map(|(_, value)| value));
    endpoints.truncate(crate::MAX_ENDPOINTS);
    Ok(Resolution {
        endpoints,
        refresh_ms: REFRESH_MS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_account_is_used_on_its_own_cluster_only() {
        let registry = "etcd://b:2379,a:2379/dtmservice?user=root&password=pw";
        let expected = Credentials {
            user: "root".into(),
            password: "pw".into(),
        };
        assert_eq!(
            registry_credentials("a:2379,b:2379", registry),
            Some(expected)
        );
        assert_eq!(registry_credentials("c:2379", registry), None);
        assert_eq!(
            registry_credentials("a:2379", "etcd://a:2379/dtmservice"),
            None
        );
        assert_eq!(
            registry_credentials("a:2379", "consul://a:2379/x?user=u"),
            None
        );
        assert_eq!(registry_credentials("a:2379", ""), None);
    }
}
