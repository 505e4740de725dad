//! Words of dtm's wire protocol that both sides of the coordinator use: the API edge (`api`),
//! which answers clients, and the branch caller (`call`), which reads what branches answer.
//! They live below both, so that neither layer imports the other.

/// JSON-RPC 2.0 error codes with a meaning of dtm's own.
pub mod jsonrpc {
    /// A handler error carrying FAILURE.
    pub const FAILURE_CODE: i64 = -32901;
    /// What a branch answers for ONGOING (the server itself never sends it).
    pub const ONGOING_CODE: i64 = -32902;
}
