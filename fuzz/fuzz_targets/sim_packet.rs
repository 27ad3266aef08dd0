//! cargo-fuzz target `sim_packet`: see `midonet_fuzzing::sim_packet`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::sim_packet(data));
