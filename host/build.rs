//! Generates the gRPC code from `proto/` with protox (a Rust protobuf compiler), so building
//! needs no `protoc`. Also writes the descriptor set that gRPC server reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/dtmgimp.proto", "proto/workflow.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .codec_path("crate::api::grpc::codec::CheckedCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
