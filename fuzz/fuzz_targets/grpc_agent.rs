//! cargo-fuzz target `grpc_agent`: see `midonet_fuzzing::grpc_agent`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::grpc_agent(data));
