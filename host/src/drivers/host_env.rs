//! The `env` and `local-ipv4` capabilities: the few facts about the coordinator's machine that
//! dtm's drivers read (docs/drivers.md §1.3), passed in by name instead of granting WASI's
//! environment.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::OnceLock;

/// The environment variables a driver may read: go-zero's `POD_IP`, dapr's sidecar ports.
pub const DRIVER_ENV: [&str; 3] = ["POD_IP", "DAPR_GRPC_PORT", "DAPR_HTTP_PORT"];

/// The allowed variables that are set in this process.
pub fn driver_env() -> BTreeMap<String, String> {
    DRIVER_ENV
        .iter()
        .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
        .collect()
}

/// The IPv4 address this machine reaches other hosts from: the source address the kernel picks
/// for a route to a public address (a UDP "connect" sends nothing). Stands in for Go's "first
/// non-loopback address of an up interface", which std cannot list; none without such a route.
pub fn local_ipv4() -> Option<String> {
    static ADDRESS: OnceLock<Option<String>> = OnceLock::new();
    ADDRESS
        .get_or_init(|| {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
            socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
            match socket.local_addr().ok()?.ip() {
                std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
                    Some(ip.to_string())
                }
                _ => None,
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_variables_are_passed() {
        let env = driver_env();
        assert!(env.keys().all(|name| DRIVER_ENV.contains(&name.as_str())));
        if let Some(ip) = local_ipv4() {
            assert!(ip.parse::<Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()));
        }
    }
}
