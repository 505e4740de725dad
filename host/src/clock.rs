//! Time source of the coordinator.
//!
//! Every timestamp the engine stores or compares comes from one [`Clock`], so timeouts, backoff
//! and the cron lease can be tested by moving the clock instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The system clock plus an adjustable offset. The offset is zero in production; the
/// `--test-clock` flag lets integration tests move it forward.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves the clock forward (or back, with a negative value) by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Formats a timestamp as RFC 3339 in the process's local zone, as dtm does.
pub fn to_rfc3339(ms: Millis) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now() {
        let clock = Clock::default();
        let before = clock.now_ms();
        clock.advance_ms(3_600_000);
        assert!(clock.now_ms() - before >= 3_600_000);
    }

    #[test]
    fn rfc3339_has_offset() {
        let s = to_rfc3339(1_700_000_000_123);
        assert!(s.contains('T'), "{s}");
        assert!(s.ends_with(":00") || s.ends_with('Z') || s.contains('+') || s.contains('-'));
    }
}
