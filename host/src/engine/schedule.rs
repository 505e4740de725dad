//! When a transaction is next looked at: retry intervals, backoff, timeouts (docs/engine.md §3.3,
//! §1.3). Pure functions, so the rules are tested once here rather than at every use.

use crate::clock::Millis;
use crate::model::{TransGlobal, TransType};

/// `now` plus `secs` seconds, in milliseconds, saturating instead of wrapping.
pub fn after_secs(now: Millis, secs: i64) -> Millis {
    now.saturating_add(secs.saturating_mul(1000))
}

/// Server-wide scheduling settings (config keys of the same names).
#[derive(Debug, Clone, Copy)]
pub struct ScheduleConfig {
    pub retry_interval: i64,
    pub timeout_to_fail: i64,
    pub request_timeout: i64,
}

/// How a branch result moves a transaction's retry interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// Back to the base interval.
    Reset,
    /// Double the interval (an error: exponential backoff).
    Backoff,
    /// Same interval again (ONGOING: fixed-interval polling).
    Keep,
}

/// The base interval of a transaction, in seconds.
pub fn base_interval(options_retry: i64, options_timeout: i64, conf: &ScheduleConfig) -> i64 {
    if options_retry > 0 {
        options_retry
    } else if options_timeout > 0 && options_timeout < conf.retry_interval {
        options_timeout
    } else {
        conf.retry_interval
    }
}

/// The interval after `touch`, from the current one.
pub fn next_interval(global: &TransGlobal, touch: Touch, conf: &ScheduleConfig) -> i64 {
    match touch {
        Touch::Reset => base_interval(
            global.options.retry_interval,
            global.options.timeout_to_fail,
            conf,
        ),
        Touch::Backoff => global.next_cron_interval.saturating_mul(2),
        Touch::Keep => global.next_cron_interval,
    }
}

/// How many times in a row a transaction's branch calls failed, read from its backed-off
/// interval as dtm reads it (docs/engine.md §3.6): floor(log2(interval ÷ base interval)).
pub fn retry_count(interval: i64, base: i64) -> i64 {
    match interval.checked_div(base) {
        Some(ratio) if ratio > 0 => i64::from(ratio.ilog2()),
        _ => 0,
    }
}

/// The timeout of a transaction in seconds; `None` means it never times out (a saga without
/// `timeout_to_fail`, and every workflow).
pub fn timeout_secs(global: &TransGlobal, conf: &ScheduleConfig) -> Option<i64> {
    match (global.trans_type, global.options.timeout_to_fail) {
        (TransType::Workflow, _) => None,
        (_, t) if t > 0 => Some(t),
        (TransType::Saga, _) => None,
        _ => Some(conf.timeout_to_fail),
    }
}

pub fn is_timed_out(global: &TransGlobal, conf: &ScheduleConfig, now: Millis) -> bool {
    timeout_secs(global, conf).is_some_and(|t| now >= after_secs(global.create_time, t))
}

/// The per-call timeout of branch calls, in seconds.
pub fn request_timeout(global: &TransGlobal, conf: &ScheduleConfig) -> i64 {
    if global.options.request_timeout > 0 {
        global.options.request_timeout
    } else {
        conf.request_timeout
    }
}

/// How far past the end of a branch call a lease reaches when a pass takes or renews it, so
/// the calls a pass starts one after another share one renewal.
pub const LEASE_SLACK_MS: Millis = 3_000;

/// Until when a pass's lease must hold for a branch call starting at `now`: its timeout, plus
/// the 2 s dtm allows for the pass around it.
pub fn call_lease_end(global: &TransGlobal, conf: &ScheduleConfig, now: Millis) -> Millis {
    after_secs(now, request_timeout(global, conf).max(1) + 2)
}

/// The first lease of a transaction created submitted, held by the pass that follows at once:
/// its retry interval, but no shorter than the lease of that pass's first branch call. With a
/// retry interval shorter than a call, a creation written late (a busy store) left the pass a
/// lease that had run out before its first renewal, and another host's cron took the
/// transaction from under it.
pub fn first_lease(global: &TransGlobal, conf: &ScheduleConfig, now: Millis) -> Millis {
    after_secs(now, global.next_cron_interval)
        .max(call_lease_end(global, conf, now) + LEASE_SLACK_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::sample_global;

    const CONF: ScheduleConfig = ScheduleConfig {
        retry_interval: 10,
        timeout_to_fail: 35,
        request_timeout: 3,
    };

    #[test]
    fn base_interval_prefers_retry_then_short_timeout() {
        assert_eq!(base_interval(150, 0, &CONF), 150);
        assert_eq!(base_interval(0, 5, &CONF), 5);
        assert_eq!(base_interval(0, 50, &CONF), 10);
        assert_eq!(base_interval(0, 0, &CONF), 10);
    }

    #[test]
    fn backoff_doubles_and_keep_keeps() {
        let mut g = sample_global("g", 0);
        g.next_cron_interval = 20;
        assert_eq!(next_interval(&g, Touch::Backoff, &CONF), 40);
        assert_eq!(next_interval(&g, Touch::Keep, &CONF), 20);
        assert_eq!(next_interval(&g, Touch::Reset, &CONF), 10);
    }

    #[test]
    fn retry_count_is_log2_of_the_backoff() {
        assert_eq!(retry_count(20, 10), 1);
        assert_eq!(retry_count(40, 10), 2);
        assert_eq!(retry_count(80, 10), 3, "the third failure in a row");
        assert_eq!(retry_count(150, 10), 3);
        assert_eq!(retry_count(160, 10), 4);
        assert_eq!(retry_count(5, 10), 0);
        assert_eq!(retry_count(10, 0), 0);
    }

    #[test]
    fn a_first_lease_covers_the_first_call_whatever_the_retry_interval() {
        let mut g = sample_global("g", 0);
        g.next_cron_interval = 1;
        assert_eq!(
            first_lease(&g, &CONF, 1_000),
            1_000 + 5_000 + LEASE_SLACK_MS
        );
        g.next_cron_interval = 60;
        assert_eq!(first_lease(&g, &CONF, 1_000), 61_000);
    }

    #[test]
    fn timeouts_per_type() {
        let mut g = sample_global("g", 0);
        assert_eq!(timeout_secs(&g, &CONF), None, "saga has no default timeout");
        g.options.timeout_to_fail = 1800;
        assert!(!is_timed_out(&g, &CONF, 1_799_999));
        assert!(is_timed_out(&g, &CONF, 1_800_000));
        g.trans_type = TransType::Tcc;
        g.options.timeout_to_fail = 0;
        assert_eq!(timeout_secs(&g, &CONF), Some(35));
        g.trans_type = TransType::Workflow;
        assert_eq!(timeout_secs(&g, &CONF), None);
    }
}
