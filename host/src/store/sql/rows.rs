//! Rows to records: a row of `trans_global`, `trans_branch_op` or `kv` (columns in the order of
//! `dialect.rs`'s statements) to a `TransGlobal`, `Branch` or `KvEntry`.

use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{backend, db_error, SqlStore};
use crate::model::{Branch, KvEntry, TransGlobal, TransOptions};
use crate::store::{StoreError, StoreResult};

impl SqlStore {
    pub(super) fn global_from(&self, row: &impl Columns) -> StoreResult<TransGlobal> {
        let d = self.dialect();
        let time = |i| Ok::<_, StoreError>(row.int(i)?.map(|v| d.decode_time(v)));
        let parsed = |i, what: &str| -> StoreResult<String> {
            row.text(i)?
                .ok_or_else(|| backend(format!("trans_global.{what} is NULL")))
        };
        let bad = |what: &str, value: &str| backend(format!("unknown {what} '{value}'"));
        let trans_type = parsed(2, "trans_type")?;
        let status = parsed(3, "status")?;
        let protocol = parsed(5, "protocol")?;
        Ok(TransGlobal {
            id: row.int(0)?.unwrap_or_default() as u64,
            gid: row.text(1)?.unwrap_or_default(),
            trans_type: trans_type
                .parse()
                .map_err(|_| bad("trans_type", &trans_type))?,
            status: status.parse().map_err(|_| bad("status", &status))?,
            query_prepared: row.text(4)?.unwrap_or_default(),
            protocol: protocol.parse().map_err(|_| bad("protocol", &protocol))?,
            create_time: time(6)?.unwrap_or_default(),
            update_time: time(7)?.unwrap_or_default(),
            finish_time: time(8)?,
            rollback_time: time(9)?,
            options: TransOptions::from_json(&row.text(10)?.unwrap_or_default()),
            custom_data: row.text(11)?.unwrap_or_default(),
            next_cron_interval: row.int32(12)?.unwrap_or_default().into(),
            next_cron_time: time(13)?.unwrap_or_default(),
            owner: row.text(14)?.unwrap_or_default(),
            ext_data: row.text(15)?.unwrap_or_default(),
            result: row.text(16)?.unwrap_or_default(),
            rollback_reason: row.text(17)?.unwrap_or_default(),
        })
    }

    pub(super) fn branch_from(&self, row: &impl Columns) -> StoreResult<Branch> {
        let d = self.dialect();
        let time = |i| Ok::<_, StoreError>(row.int(i)?.map(|v| d.decode_time(v)));
        Ok(Branch {
            id: row.int(0)?.unwrap_or_default() as u64,
            gid: row.text(1)?.unwrap_or_default(),
            url: row.text(2)?.unwrap_or_default(),
            bin_data: row.bytes(3)?.unwrap_or_default(),
            branch_id: row.text(4)?.unwrap_or_default(),
            op: row.text(5)?.unwrap_or_default(),
            status: row.text(6)?.unwrap_or_default(),
            finish_time: time(7)?,
            create_time: time(8)?.unwrap_or_default(),
            update_time: time(9)?.unwrap_or_default(),
        })
    }

    pub(super) fn kv_from(&self, row: &impl Columns) -> StoreResult<KvEntry> {
        let d = self.dialect();
        let time = |i| Ok::<_, StoreError>(row.int(i)?.map(|v| d.decode_time(v)));
        Ok(KvEntry {
            id: row.int(0)?.unwrap_or_default() as u64,
            cat: row.text(1)?.unwrap_or_default(),
            k: row.text(2)?.unwrap_or_default(),
            v: row.text(3)?.unwrap_or_default(),
            version: row.int(4)?.unwrap_or(1),
            create_time: time(5)?.unwrap_or_default(),
            update_time: time(6)?.unwrap_or_default(),
        })
    }
}

/// Reads a column by position; every column may be NULL in tables dtm created.
pub(super) trait Columns {
    fn int(&self, i: usize) -> StoreResult<Option<i64>>;
    fn int32(&self, i: usize) -> StoreResult<Option<i32>>;
    fn text(&self, i: usize) -> StoreResult<Option<String>>;
    fn bytes(&self, i: usize) -> StoreResult<Option<Vec<u8>>>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, i: usize) -> StoreResult<Option<i64>> {
                self.try_get(i).map_err(db_error)
            }
            fn int32(&self, i: usize) -> StoreResult<Option<i32>> {
                self.try_get(i).map_err(db_error)
            }
            fn text(&self, i: usize) -> StoreResult<Option<String>> {
                self.try_get(i).map_err(db_error)
            }
            fn bytes(&self, i: usize) -> StoreResult<Option<Vec<u8>>> {
                self.try_get(i).map_err(db_error)
            }
        }
    };
}

columns_of!(PgRow);
columns_of!(MySqlRow);
