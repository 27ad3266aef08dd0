//! cargo-fuzz target `flowstate`: see `midonet_fuzzing::flowstate`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::flowstate(data));
