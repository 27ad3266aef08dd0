//! Arbitrary bytes → FlowKey::extract → simulate on a fixed topology.
//! The entry function lives in `midonet_sim::fuzzing` so `cargo test` runs
//! it too (crates/sim/tests/behaviour.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    midonet_sim::fuzzing::sim_bytes(data);
});
