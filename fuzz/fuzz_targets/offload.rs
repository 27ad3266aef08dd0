//! cargo-fuzz target `offload`: see `midonet_fuzzing::offload`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::offload(data));
