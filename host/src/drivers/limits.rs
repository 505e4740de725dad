//! What the host accepts back from a driver: caps on the sizes of its results, floors on the
//! intervals it asks for, and a budget for its log (a driver's author is not trusted; see
//! README "Sandbox").

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{DriverError, GrpcCall, HttpTarget};

/// Most endpoints one resolution may list.
pub const MAX_ENDPOINTS: usize = 1_000;
/// Longest endpoint (`host:port`), server or method name, in bytes.
pub const MAX_NAME_BYTES: usize = 1_024;
/// Longest registration state or URL, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 << 10;
/// Most headers or metadata entries a rewrite may add.
pub const MAX_HEADERS: usize = 64;
/// Largest gRPC payload a rewrite may make.
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;
/// Shortest keep-alive interval the host follows.
pub const KEEP_ALIVE_FLOOR: Duration = Duration::from_millis(100);
/// Shortest refresh interval of a resolution the host follows.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(1);
/// Longest log message, in bytes; a longer one is cut there.
pub const MAX_LOG_BYTES: usize = 1_024;
/// Log messages a driver may write per second, on average…
pub const LOG_PER_SECOND: f64 = 5.0;
/// …and at once.
pub const LOG_BURST: f64 = 20.0;

fn too_long(what: &str, len: usize, cap: usize) -> Result<(), DriverError> {
    if len > cap {
        return Err(DriverError::Refused(format!(
            "the driver returned {what} of {len}, over the cap of {cap}"
        )));
    }
    Ok(())
}

/// A resolution's endpoints.
pub fn check_resolution(endpoints: &[String]) -> Result<(), DriverError> {
    too_long(
        "a resolution with an endpoint count",
        endpoints.len(),
        MAX_ENDPOINTS,
    )?;
    let longest = endpoints.iter().map(String::len).max().unwrap_or(0);
    too_long("an endpoint of bytes", longest, MAX_NAME_BYTES)
}

/// A split branch URL.
pub fn check_server_method(server: &str, method: &str) -> Result<(), DriverError> {
    too_long("a server name of bytes", server.len(), MAX_NAME_BYTES)?;
    too_long("a method name of bytes", method.len(), MAX_NAME_BYTES)
}

/// A registration's state.
pub fn check_state(state: &str) -> Result<(), DriverError> {
    too_long("a registration state of bytes", state.len(), MAX_TEXT_BYTES)
}

fn check_headers(headers: &[(String, String)]) -> Result<(), DriverError> {
    too_long("a header count", headers.len(), MAX_HEADERS)?;
    let longest = headers
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .max()
        .unwrap_or(0);
    too_long("a header of bytes", longest, MAX_NAME_BYTES)
}

/// An HTTP branch call a driver rewrote.
pub fn check_http_target(target: &HttpTarget) -> Result<(), DriverError> {
    too_long("a URL of bytes", target.url.len(), MAX_TEXT_BYTES)?;
    check_headers(&target.headers)
}

/// A gRPC branch call a driver rewrote.
pub fn check_grpc_call(call: &GrpcCall) -> Result<(), DriverError> {
    too_long("a method name of bytes", call.method.len(), MAX_NAME_BYTES)?;
    too_long("a payload of bytes", call.payload.len(), MAX_PAYLOAD_BYTES)?;
    check_headers(&call.metadata)
}

/// `interval`, or `floor` if it is shorter.
pub fn floor(interval: Duration, floor: Duration) -> Duration {
    interval.max(floor)
}

/// A driver's log budget: a token bucket of [`LOG_BURST`] messages refilled at
/// [`LOG_PER_SECOND`], and the messages it turned away since the last one it let through.
#[derive(Default)]
pub struct DriverLog {
    state: Mutex<LogBudget>,
}

struct LogBudget {
    tokens: f64,
    refilled: Option<Instant>,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            tokens: LOG_BURST,
            refilled: None,
            suppressed: 0,
        }
    }
}

impl DriverLog {
    /// The message to write (cut at [`MAX_LOG_BYTES`]) and how many were suppressed before it,
    /// or `None` when it is over the budget.
    pub fn admit(&self, mut message: String, now: Instant) -> Option<(String, u64)> {
        let mut budget = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = budget.refilled {
            let earned = now.saturating_duration_since(last).as_secs_f64() * LOG_PER_SECOND;
            budget.tokens = (budget.tokens + earned).min(LOG_BURST);
        }
        budget.refilled = Some(now);
        if budget.tokens < 1.0 {
            budget.suppressed += 1;
            return None;
        }
        budget.tokens -= 1.0;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …(cut)");
        }
        Some((message, std::mem::take(&mut budget.suppressed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_budget_and_counted() {
        let log = DriverLog::default();
        let start = Instant::now();
        let admitted = (0..10_000)
            .filter(|_| log.admit("x".repeat(64 << 10), start).is_some())
            .count();
        assert_eq!(admitted, LOG_BURST as usize);
        let (message, suppressed) = log
            .admit("é".repeat(5_000), start + Duration::from_secs(1))
            .unwrap();
        // At most a few KB a second: the burst, then the rate, of messages at the cut.
        assert!(LOG_PER_SECOND * MAX_LOG_BYTES as f64 <= 5_120.0);
        assert_eq!(suppressed, 10_000 - LOG_BURST as u64);
        assert!(message.len() <= MAX_LOG_BYTES + 16 && message.ends_with("(cut)"));
        // Two seconds in, the budget has earned two seconds' messages, one of them spent.
        let later = start + Duration::from_secs(2);
        let refilled = (0..100)
            .filter(|_| log.admit("m".into(), later).is_some())
            .count();
        assert!(refilled < 100);
        assert_eq!(refilled, 2 * LOG_PER_SECOND as usize - 1);
    }

    #[test]
    fn results_over_a_cap_are_refused_naming_it() {
        let many: Vec<String> = (0..MAX_ENDPOINTS + 1).map(|i| format!("h:{i}")).collect();
        let refused = check_resolution(&many).unwrap_err().to_string();
        assert!(refused.contains("over the cap of 1000"), "{refused}");
        assert!(check_resolution(&many[..MAX_ENDPOINTS]).is_ok());
        assert!(check_state(&"s".repeat(MAX_TEXT_BYTES + 1)).is_err());
        let headers = vec![("k".to_owned(), "v".to_owned()); MAX_HEADERS + 1];
        let target = HttpTarget {
            url: "http://a/".into(),
            headers,
        };
        assert!(check_http_target(&target).is_err());
        assert_eq!(
            floor(Duration::from_millis(1), REFRESH_FLOOR),
            REFRESH_FLOOR
        );
    }
}
