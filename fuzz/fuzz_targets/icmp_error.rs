//! cargo-fuzz target `icmp_error`: see `midonet_fuzzing::icmp_error`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::icmp_error(data));
