//! cargo-fuzz target `arp`: see `midonet_fuzzing::arp`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::arp(data));
