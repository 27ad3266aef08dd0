//! Generates the tonic client and server for `proto/topology.proto` with
//! Debian's `protoc` (protobuf-compiler).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/topology.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/topology.proto"], &["proto"])?;
    Ok(())
}
