//! cargo-fuzz target `extract`: see `midonet_fuzzing::extract`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::extract(data));
