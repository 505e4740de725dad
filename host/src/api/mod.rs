//! The edges: each translates its wire format to engine requests and engine results back.

pub mod http;
