//! The edges: each translates its wire format to engine requests and engine results back.

pub mod admin;
pub mod grpc;
pub mod http;
pub mod jsonrpc;
pub mod metered;
