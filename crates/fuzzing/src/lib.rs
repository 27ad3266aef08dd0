//! midonet-fuzzing: one fuzz entry per decoder of untrusted input.
//!
//! Test-only (nothing in the product depends on it). Each entry takes
//! arbitrary bytes, feeds them to the decoder the way the product does, and
//! asserts what must hold; a panic is a finding.
//!
//! ```text
//!  fuzz/fuzz_targets/<t>.rs ──(cargo +nightly fuzz run <t>)──┐
//!                                                            ├──> midonet_fuzzing::<t>(&[u8])
//!  tests/replay.rs: fuzz/corpus/<t>/* + xorshift mutations ──┘      (stable, in the test command)
//! ```
//!
//! | target        | decoder                                                          | what must hold |
//! |---------------|------------------------------------------------------------------|----------------|
//! | `vxlan`       | `wire::VxlanRepr`, `datapath::vxlan`, tunnel receive, UDP GRO merge | round trips; the VM gets the inner frame as sent; a merge keeps every payload byte |
//! | `extract`     | `FlowKey::extract`                                                | keys are canonical, re-key from `to_frame`, print/parse back, agree with etherparse, rewrites land |
//! | `dhcp`        | DHCP requests as the simulation answers them                      | a reply answers that request, decodes and checksums |
//! | `arp`         | ARP through extract, `wire` builders and the simulation           | fields read where RFC 826 puts them; replies go to the asker |
//! | `icmp_error`  | ICMP errors with embedded headers: `wire`, extract, the simulation | the quote is the original; errors never answer errors; checksums |
//! | `rest_body`   | REST JSON → model (lenient serde) → validation, every kind        | errors name a field; decode → encode → decode is equal; stored keys read back |
//! | `grpc_agent`  | agent → cluster gRPC requests (prost) and `cluster::agent_input`  | prost round trips; errors name a field; what is written validates |
//! | `sim_packet`  | arbitrary frames through `sim::simulate` on a fixed topology      | self-consistent results |
//! | `flowstate`   | peer flow-state messages: `wire::flowstate`, `state::message::install` | lengths as counted; decode → encode is the input; installed entries answer |
//! | `offload`     | a guest's offloaded frame finished in software (`datapath::offload`) | segments end to end, within gso_size, nothing partial left; a refusal writes nothing |
//! | `finmerge`    | a port's receive batch through `datapath::finmerge` (a FIN into the data before it) | only data segments change, each by taking one FIN: length, headers, payload kept, checksum as valid as before |
//! | `neutron_api` | Neutron API requests through the real handlers over a small cloud | never 5xx; errors are `NeutronError`s; a refused write writes nothing |
//!
//! Input layout: where a target needs choices (which port, which mode,
//! which object kind), the first bytes pick them and the rest is the
//! decoder's input, so seeds stay valid messages with a small prefix.
//! Each module documents its layout. Seeds are made by `seeds` (written to
//! `fuzz/corpus/` by `cargo run -p midonet-fuzzing --example write_seeds`).

mod arp;
mod check;
mod dhcp;
mod extract;
mod finmerge;
mod fixture;
mod flowstate;
mod grpc_agent;
mod icmp_error;
pub mod neutron_api;
mod offload;
mod rest_body;
pub mod seeds;
mod vxlan;

pub use arp::arp;
pub use dhcp::dhcp;
pub use extract::extract;
pub use finmerge::finmerge;
pub use flowstate::flowstate;
pub use grpc_agent::grpc_agent;
pub use icmp_error::icmp_error;
pub use neutron_api::neutron_api;
pub use offload::offload;
pub use rest_body::rest_body;
pub use vxlan::vxlan;

/// Arbitrary frames through the simulation on a fixed topology (the entry
/// lives in `midonet_sim::fuzzing`).
pub fn sim_packet(data: &[u8]) {
    midonet_sim::fuzzing::sim_bytes(data);
}

/// A fuzz entry point.
pub type Entry = fn(&[u8]);

/// Every target by name: the name of its `fuzz/fuzz_targets/<name>.rs` and
/// of its seed directory `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("vxlan", vxlan),
    ("extract", extract),
    ("dhcp", dhcp),
    ("arp", arp),
    ("icmp_error", icmp_error),
    ("rest_body", rest_body),
    ("grpc_agent", grpc_agent),
    ("sim_packet", sim_packet),
    ("flowstate", flowstate),
    ("neutron_api", neutron_api),
    ("offload", offload),
    ("finmerge", finmerge),
];
