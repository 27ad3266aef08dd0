//! cargo-fuzz target `neutron_api`: see `midonet_fuzzing::neutron_api`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| midonet_fuzzing::neutron_api(data));
