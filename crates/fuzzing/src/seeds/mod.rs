//! Hand-made seed inputs: real frames, real JSON bodies, real protobuf
//! encodings, each with the target's prefix bytes (module docs of each
//! target). `examples/write_seeds.rs` writes them to `fuzz/corpus/<target>/`,
//! which both cargo-fuzz and the stable replay test start from.
//!
//! By what they feed: `frames` (Ethernet frames and what a port's stack
//! makes of them), `tunnel` (VXLAN datagrams and flow-state messages between
//! hosts), `api` (REST and Neutron bodies, the agents' gRPC requests).

mod api;
mod frames;
mod tunnel;

use midonet_flow::FlowKey;

use api::{grpc_agent, neutron_api, rest_body};
use frames::{arp, dhcp, extract, finmerge, icmp_error, offload, sim_packet};
use tunnel::{flowstate, vxlan};

/// A named seed.
pub type Seed = (String, Vec<u8>);

/// The seeds of target `name` (empty for an unknown name).
pub fn for_target(name: &str) -> Vec<Seed> {
    match name {
        "vxlan" => vxlan(),
        "extract" => extract(),
        "dhcp" => dhcp(),
        "arp" => arp(),
        "icmp_error" => icmp_error(),
        "rest_body" => rest_body(),
        "grpc_agent" => grpc_agent(),
        "sim_packet" => sim_packet(),
        "flowstate" => flowstate(),
        "neutron_api" => neutron_api(),
        "offload" => offload(),
        "finmerge" => finmerge(),
        _ => Vec::new(),
    }
}

fn seed(name: &str, prefix: &[u8], body: &[u8]) -> Seed {
    (name.to_string(), [prefix, body].concat())
}

/// A frame from a `midonet trace` packet description and a payload.
fn frame(desc: &str, payload: &[u8]) -> Vec<u8> {
    let k: FlowKey = desc.parse().expect("seed descriptions parse");
    let mut f = Vec::new();
    k.to_frame(payload, &mut f);
    f
}

const VM1_TCP: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,tcp.src=40000,tcp.dst=443,tcp.flags=syn";
const VM1_UDP: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,udp.src=5000,udp.dst=53";
const VM1_PING: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.0.1,icmp4.type=8,icmp4.id=7";
