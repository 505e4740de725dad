//! The errors a request or a pass can end with. The edges map each kind to one wire shape
//! (HTTP status + body, gRPC code, JSON-RPC code) in one place each.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DtmError {
    /// A definite failure; the text ends with `FAILURE` (HTTP 409).
    #[error("{0}")]
    Failure(String),
    /// Still in progress; the text ends with `ONGOING` (HTTP 425).
    #[error("{0}")]
    Ongoing(String),
    /// Input the coordinator refuses before touching the store (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Input refused the way dtm refuses it (HTTP 500, as in dtm; gRPC InvalidArgument), e.g.
    /// an unknown trans type.
    #[error("{0}")]
    InvalidInput(String),
    /// What dtm raises as a panic, which its edges recover (HTTP 500, gRPC Internal, JSON-RPC
    /// `result` null): an unknown gid, a step without its payload, a request it cannot read.
    #[error("{0}")]
    Internal(String),
    /// Anything else: an error dtm returns (HTTP 500, gRPC Unknown, JSON-RPC `result` `{}`).
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DtmError {
    /// A failure whose message gets dtm's trailing ` FAILURE` unless it already has it.
    pub fn failure(text: impl Into<String>) -> Self {
        let text = text.into();
        if text.ends_with("FAILURE") {
            Self::Failure(text)
        } else {
            Self::Failure(format!("{text} FAILURE"))
        }
    }
}

pub type DtmResult<T> = Result<T, DtmError>;
