//! Key names and the listing entries' format (the layout is in the module doc of `redis`).

use crate::clock::Millis;

/// Buckets of the schedule and listing indexes. Part of the layout: every host on one Redis must
/// use the same number.
pub(super) const BUCKETS: usize = 16;
/// A listing entry whose record is missing is removed only once it is this old, so a creation
/// between its index write and its record write is left alone.
pub(super) const LISTING_GRACE_MS: i64 = 60_000;

/// Key names (see the module doc).
pub(super) struct Keys {
    pub(super) ns: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            ns: prefix.chars().filter(|c| !matches!(c, '{' | '}')).collect(),
        }
    }
    pub(super) fn global(&self, gid: &str) -> String {
        format!("{}:{{{gid}}}:g", self.ns)
    }
    pub(super) fn branches(&self, gid: &str) -> String {
        format!("{}:{{{gid}}}:b", self.ns)
    }
    pub(super) fn marker(&self, gid: &str) -> String {
        format!("{}:{{{gid}}}:m", self.ns)
    }
    pub(super) fn cron(&self, bucket: usize) -> String {
        format!("{}:cron:{{{bucket}}}", self.ns)
    }
    pub(super) fn list(&self, bucket: usize) -> String {
        format!("{}:list:{{{bucket}}}", self.ns)
    }
    pub(super) fn kv_entry(&self, cat: &str, key: &str) -> String {
        format!("{}:{{kv:{cat}}}:e:{key}", self.ns)
    }
    pub(super) fn kv_order(&self, cat: &str) -> String {
        format!("{}:{{kv:{cat}}}:o", self.ns)
    }
    pub(super) fn kv_cats(&self) -> String {
        format!("{}:{{kv}}:cats", self.ns)
    }
    pub(super) fn kv_seq(&self) -> String {
        format!("{}:{{kv}}:seq", self.ns)
    }
}

/// `text` matched literally inside a Redis glob pattern.
pub(super) fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The index bucket of a gid: FNV-1a, stable across hosts and builds (std's hasher is not).
pub(super) fn bucket_of(gid: &str) -> usize {
    let hash = gid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % BUCKETS as u64) as usize
}

/// A timestamp as 16 hex digits that sort like the numbers (sign bit flipped).
pub(super) fn time_key(ms: Millis) -> String {
    format!("{:016x}", (ms as u64) ^ (1 << 63))
}

pub(super) fn listing_member(create_time: Millis, gid: &str) -> String {
    format!("{}{gid}", time_key(create_time))
}

/// The create_time and gid of a listing entry (`None` if it is not one).
pub(super) fn split_member(member: &str) -> Option<(Millis, &str)> {
    let (time, gid) = (member.get(..16)?, member.get(16..)?);
    if gid.is_empty() || !time.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let bits = u64::from_str_radix(time, 16).ok()?;
    Some(((bits ^ (1 << 63)) as i64, gid))
}

/// Whether a listing entry no longer stands for a record: the record (with `record_time` as its
/// create_time) belongs to another creation, or is missing and the entry is past its grace time.
pub(super) fn listing_stale(member: &str, record_time: Option<Millis>, now: Millis) -> bool {
    let Some((time, _)) = split_member(member) else {
        return true;
    };
    match record_time {
        Some(record_time) => record_time != time,
        None => time < now.saturating_sub(LISTING_GRACE_MS),
    }
}

/// The hash field that indexes a branch record by (branch_id, op); the length prefix keeps
/// ("a", "bc") and ("ab", "c") apart.
pub(super) fn branch_index(branch_id: &str, op: &str) -> String {
    format!("ix:{}:{branch_id}{op}", branch_id.len())
}
