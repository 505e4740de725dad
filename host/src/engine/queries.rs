//! Read-only queries: a transaction with its branches, the list of transactions, the KV
//! entries. Nothing here changes the store.

use super::Engine;
use crate::error::{DtmError, DtmResult};
use crate::model::{Branch, KvEntry, ScanFilter, TransGlobal};
use crate::store::Page;

impl Engine {
    pub async fn query(&self, gid: &str) -> DtmResult<(Option<TransGlobal>, Vec<Branch>)> {
        if gid.is_empty() {
            return Err(DtmError::Other("no gid specified".into()));
        }
        let global = self.store.find_global(gid).await?;
        let branches = self.store.find_branches(gid).await?;
        Ok((global, branches))
    }

    pub async fn find(&self, gid: &str) -> DtmResult<Option<TransGlobal>> {
        Ok(self.store.find_global(gid).await?)
    }

    pub async fn list(
        &self,
        position: &str,
        limit: usize,
        filter: &ScanFilter,
    ) -> DtmResult<Page<TransGlobal>> {
        Ok(self.store.scan_globals(position, limit, filter).await?)
    }

    pub async fn scan_kv(
        &self,
        cat: &str,
        position: &str,
        limit: usize,
    ) -> DtmResult<Page<KvEntry>> {
        Ok(self.store.scan_kv(cat, position, limit).await?)
    }

    pub async fn query_kv(&self, cat: &str, key: &str) -> DtmResult<Vec<KvEntry>> {
        Ok(self.store.find_kv(cat, key).await?)
    }
}
