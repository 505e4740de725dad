//! Code generated at build time from `proto/` (see `build.rs`).
#![allow(clippy::all, missing_docs)]

pub mod dtmgimp {
    tonic::include_proto!("dtmgimp");
}

pub mod workflow {
    tonic::include_proto!("workflow");
}

/// The encoded descriptor set of every proto, served by gRPC reflection.
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
