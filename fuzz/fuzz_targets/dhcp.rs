//! cargo-fuzz target `dhcp`: see `midonet_fuzzing::dhcp`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::dhcp(data));
