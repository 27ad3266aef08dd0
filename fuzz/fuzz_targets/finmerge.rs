//! cargo-fuzz target `finmerge`: see `midonet_fuzzing::finmerge`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::finmerge(data));
