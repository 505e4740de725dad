//! What the backends share: the error of a backend, the SQL condition of an unfinished
//! transaction, and the id cursors of the listings (every SQL listing and Redis' KV listing: the
//! id of the last row returned).

use super::{Page, StoreError, StoreResult};

/// Only these statuses are ever claimed or pulled in (PostgreSQL and MySQL; SQLite writes the same
/// as three equalities in `sqlite/mod.rs`, the Redis scripts say it in `redis/lua/prelude.lua`).
pub(super) const UNFINISHED: &str = "status IN ('prepared', 'submitted', 'aborting')";

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Parses a listing cursor: the decimal id of the last row returned (`""` or 0 = from the start).
pub(super) fn parse_position(position: &str) -> StoreResult<Option<i64>> {
    if position.is_empty() {
        return Ok(None);
    }
    match position.parse::<i64>() {
        Ok(0) => Ok(None),
        Ok(id) => Ok(Some(id)),
        Err(_) => Err(StoreError::BadCursor(position.to_owned())),
    }
}

/// A page of `items` asked for with `limit`: a full page names its last item's id as the next
/// position (there may be more); a shorter one is the last.
pub(super) fn page<T>(items: Vec<T>, limit: usize, last_id: impl Fn(&T) -> u64) -> Page<T> {
    let next_position = match items.last() {
        Some(last) if items.len() == limit => last_id(last).to_string(),
        _ => String::new(),
    };
    Page {
        items,
        next_position,
    }
}
