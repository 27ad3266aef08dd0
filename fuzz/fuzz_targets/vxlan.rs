//! cargo-fuzz target `vxlan`: see `midonet_fuzzing::vxlan`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::vxlan(data));
