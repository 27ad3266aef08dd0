//! cargo-fuzz target `rest_body`: see `midonet_fuzzing::rest_body`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::rest_body(data));
