//! Ports for servers that a test may kill and start again on the same port. They come from
//! below the kernel's ephemeral range: a port from `bind(0)` lies inside it, and once its
//! server dies any outgoing connection on the machine may take it as its local port, so the
//! restart would find it busy.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the ports handed out start: above the well-known and commonly configured ones.
const LOWEST: u16 = 20_000;

/// A port of 127.0.0.1 that is free now, below the ephemeral range, and not handed out before
/// by this process.
pub fn free_port() -> u16 {
    free_port_with_partner(0)
}

/// A free port `p` such that `p + gap` is free too (a Redis Cluster node's bus port).
pub(crate) fn free_port_with_partner(gap: u16) -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let highest = ephemeral_start().saturating_sub(1).saturating_sub(gap);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    if highest > LOWEST {
        let span = u64::from(highest - LOWEST);
        let mut seed = seed();
        for _ in 0..1_000 {
            seed = next(seed);
            let port = LOWEST + u16::try_from(seed % span).unwrap_or(0);
            if !given.contains(&port) && bindable(port) && (gap == 0 || bindable(port + gap)) {
                given.insert(port);
                return port;
            }
        }
    }
    panic!("no free port pair {gap} apart between {LOWEST} and {highest} on 127.0.0.1");
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Differs between processes and between runs, so parallel test processes rarely try the same
/// port first.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(std::process::id()) << 32) ^ u64::from(nanos) | 1
}

/// xorshift64: enough to spread the ports.
fn next(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
