//! Records as Redis hash fields and script arguments, and back.

use std::collections::HashMap;

use super::keys::branch_index;
use crate::clock::Millis;
use crate::model::{Branch, KvEntry, TransGlobal, TransOptions};
use crate::store::{BranchOutcome, StoreError, StoreResult};

/// The count, then index field and status of each outcome, as `set_outcomes` (`lua/prelude.lua`)
/// reads them.
pub(super) fn outcome_args(outcomes: &[BranchOutcome]) -> Vec<String> {
    let mut args = Vec::with_capacity(1 + outcomes.len() * 2);
    args.push(outcomes.len().to_string());
    for o in outcomes {
        args.push(branch_index(&o.branch_id, &o.op));
        args.push(o.status.to_owned());
    }
    args
}

pub(super) fn opt_time(t: Option<Millis>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

pub(super) fn global_fields(g: &TransGlobal) -> [(&'static str, String); 17] {
    [
        ("gid", g.gid.clone()),
        ("trans_type", g.trans_type.as_str().to_owned()),
        ("status", g.status.as_str().to_owned()),
        ("query_prepared", g.query_prepared.clone()),
        ("protocol", g.protocol.as_str().to_owned()),
        ("create_time", g.create_time.to_string()),
        ("update_time", g.update_time.to_string()),
        ("finish_time", opt_time(g.finish_time)),
        ("rollback_time", opt_time(g.rollback_time)),
        ("options", g.options.to_json()),
        ("custom_data", g.custom_data.clone()),
        ("next_cron_interval", g.next_cron_interval.to_string()),
        ("next_cron_time", g.next_cron_time.to_string()),
        ("owner", g.owner.clone()),
        ("ext_data", g.ext_data.clone()),
        ("result", g.result.clone()),
        ("rollback_reason", g.rollback_reason.clone()),
    ]
}

pub(super) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redis: unreadable {what}: {detail}"))
}

/// A global record from its hash fields (`None` for an empty hash: no such record).
/// The record a claim script returned after its verdict, as field/value pairs.
pub(super) fn claimed_record(reply: &[String]) -> StoreResult<Option<TransGlobal>> {
    let fields = reply[1..]
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    read_global(&fields)
}

pub(super) fn read_global(fields: &HashMap<String, String>) -> StoreResult<Option<TransGlobal>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let num = |name: &str| -> StoreResult<i64> {
        let value = text(name);
        value
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("{name} = '{value}'")))
    };
    let opt = |name: &str| -> StoreResult<Option<i64>> {
        match fields.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(_) => num(name).map(Some),
        }
    };
    let parse = |name: &str| -> StoreResult<String> {
        fields
            .get(name)
            .cloned()
            .ok_or_else(|| corrupt("transaction", format_args!("{name} missing")))
    };
    let (trans_type, status, protocol) =
        (parse("trans_type")?, parse("status")?, parse("protocol")?);
    Ok(Some(TransGlobal {
        id: 0,
        gid: text("gid"),
        trans_type: trans_type
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("trans_type '{trans_type}'")))?,
        status: status
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("status '{status}'")))?,
        query_prepared: text("query_prepared"),
        protocol: protocol
            .parse()
            .map_err(|_| corrupt("transaction", format_args!("protocol '{protocol}'")))?,
        create_time: num("create_time")?,
        update_time: num("update_time")?,
        finish_time: opt("finish_time")?,
        rollback_time: opt("rollback_time")?,
        options: TransOptions::from_json(&text("options")),
        custom_data: text("custom_data"),
        next_cron_interval: num("next_cron_interval")?,
        next_cron_time: num("next_cron_time")?,
        owner: text("owner"),
        ext_data: text("ext_data"),
        result: text("result"),
        rollback_reason: text("rollback_reason"),
    }))
}

/// The branch records of a transaction's `:b` hash, in position order.
pub(super) fn read_branches(
    gid: &str,
    mut fields: HashMap<String, Vec<u8>>,
) -> StoreResult<Vec<Branch>> {
    let text = |value: Option<Vec<u8>>| -> StoreResult<Option<String>> {
        value
            .map(|v| String::from_utf8(v).map_err(|e| corrupt("branch", e)))
            .transpose()
    };
    let num = |value: Option<String>| -> StoreResult<Option<i64>> {
        value
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| corrupt("branch", format_args!("time '{v}'")))
            })
            .transpose()
    };
    let count: usize = match text(fields.remove("n"))? {
        Some(n) => n
            .parse()
            .map_err(|_| corrupt("branch", format_args!("count '{n}'")))?,
        None => 0,
    };
    let mut take = |pos: usize, name: &str| fields.remove(&format!("{pos}:{name}"));
    let mut branches = Vec::with_capacity(count);
    for pos in 0..count {
        branches.push(Branch {
            id: pos as u64 + 1,
            gid: gid.to_owned(),
            url: text(take(pos, "url"))?.unwrap_or_default(),
            bin_data: take(pos, "bin").unwrap_or_default(),
            branch_id: text(take(pos, "bid"))?.unwrap_or_default(),
            op: text(take(pos, "op"))?.unwrap_or_default(),
            status: text(take(pos, "st"))?.unwrap_or_default(),
            finish_time: num(text(take(pos, "ft"))?)?,
            create_time: num(text(take(pos, "ct"))?)?.unwrap_or_default(),
            update_time: num(text(take(pos, "ut"))?)?.unwrap_or_default(),
        });
    }
    Ok(branches)
}

pub(super) fn read_kv(
    cat: &str,
    key: &str,
    fields: &HashMap<String, String>,
) -> StoreResult<Option<KvEntry>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let num = |name: &str| -> StoreResult<i64> {
        let value = fields.get(name).map(String::as_str).unwrap_or("");
        value
            .parse()
            .map_err(|_| corrupt("kv entry", format_args!("{name} = '{value}'")))
    };
    Ok(Some(KvEntry {
        id: num("id")? as u64,
        cat: cat.to_owned(),
        k: key.to_owned(),
        v: fields.get("v").cloned().unwrap_or_default(),
        version: num("version")?,
        create_time: num("create_time")?,
        update_time: num("update_time")?,
    }))
}

/// The script arguments of branch records: their count, then 9 per record (see `lua/prelude.lua`).
pub(super) fn branch_args(branches: &[Branch]) -> Vec<Vec<u8>> {
    let mut args = Vec::with_capacity(1 + branches.len() * 9);
    args.push(branches.len().to_string().into_bytes());
    for b in branches {
        args.extend([
            branch_index(&b.branch_id, &b.op).into_bytes(),
            b.url.clone().into_bytes(),
            b.bin_data.clone(),
            b.branch_id.clone().into_bytes(),
            b.op.clone().into_bytes(),
            b.status.clone().into_bytes(),
            opt_time(b.finish_time).into_bytes(),
            b.create_time.to_string().into_bytes(),
            b.update_time.to_string().into_bytes(),
        ]);
    }
    args
}
