//! Stored objects as dtm's HTTP API shows them (docs/api.md §2.7).

use base64::Engine as _;
use serde_json::{json, Value};

use crate::clock::to_rfc3339;
use crate::model::{Branch, KvEntry, TransGlobal};

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(to_rfc3339(ms)))
}

pub fn transaction(g: &TransGlobal) -> Value {
    json!({
        "id": g.id,
        "create_time": time(Some(g.create_time)),
        "update_time": time(Some(g.update_time)),
        "gid": g.gid,
        "trans_type": g.trans_type.as_str(),
        "status": g.status.as_str(),
        "query_prepared": g.query_prepared,
        "protocol": g.protocol.as_str(),
        "finish_time": time(g.finish_time),
        "rollback_time": time(g.rollback_time),
        "result": g.result,
        "rollback_reason": g.rollback_reason,
        "options": g.options.to_json(),
        "custom_data": g.custom_data,
        "next_cron_interval": g.next_cron_interval,
        "next_cron_time": time(Some(g.next_cron_time)),
        "owner": g.owner,
        "concurrent": g.options.concurrent,
    })
}

pub fn branch(b: &Branch) -> Value {
    json!({
        "id": b.id,
        "create_time": time(Some(b.create_time)),
        "update_time": time(Some(b.update_time)),
        "gid": b.gid,
        "url": b.url,
        "bin_data": base64::engine::general_purpose::STANDARD.encode(&b.bin_data),
        "branch_id": b.branch_id,
        "op": b.op,
        "status": b.status,
        "finish_time": time(b.finish_time),
        "rollback_time": Value::Null,
    })
}

pub fn kv(e: &KvEntry) -> Value {
    json!({
        "id": e.id,
        "create_time": time(Some(e.create_time)),
        "update_time": time(Some(e.update_time)),
        "cat": e.cat,
        "k": e.k,
        "v": e.v,
        "version": e.version,
    })
}
