//! A MySQL transaction sent as one query: `START TRANSACTION`, its statements and `COMMIT` in one
//! round trip, instead of one round trip per statement (sqlx's MySQL connections allow
//! multi-statement queries). The server stops at the first statement that fails and leaves the
//! transaction open with what ran before it; that is rolled back before the connection serves
//! another call, or the connection is closed.

use sqlx::mysql::MySql;
use sqlx::AssertSqlSafe;

use super::lender::Lent;
use crate::store::{StoreError, StoreResult};

/// Runs `statements` (MySQL text with their values in it, `literals.rs`) as one transaction, in
/// one query on `lent`'s connection; `error` says what the failure of a statement means.
pub(super) async fn commit_in_one_query(
    mut lent: Lent<'_, MySql>,
    statements: &[String],
    error: fn(sqlx::Error) -> StoreError,
) -> StoreResult<()> {
    let mut text = String::from("START TRANSACTION");
    for statement in statements {
        text.push_str(";\n");
        text.push_str(statement);
    }
    text.push_str(";\nCOMMIT");
    let Err(failed) = sqlx::raw_sql(AssertSqlSafe(text)).execute(&mut *lent).await else {
        return lent.settle(Ok(()));
    };
    match sqlx::raw_sql("ROLLBACK").execute(&mut *lent).await {
        Ok(_) => lent.settle(Err(error(failed))),
        // Dropped unsettled, the connection is closed: no later call on it can commit what ran.
        Err(_) => Err(error(failed)),
    }
}
