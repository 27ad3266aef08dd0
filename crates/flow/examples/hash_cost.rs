//! Instruction-count comparison of FlowKey hashing strategies, for
//! `valgrind --tool=callgrind` (stable numbers on a noisy shared box):
//! `valgrind --tool=callgrind target/release/examples/hash_cost`, then
//! `callgrind_annotate --inclusive=yes` and look at the `hash_cost_*` rows.

use std::hash::{BuildHasher, Hash, Hasher};
use std::hint::black_box;

use midonet_flow::{FieldId, FlowKey, FlowMask, InPort, MaskedKey};

/// Field-by-field hashing, what `#[derive(Hash)]` would do.
#[inline(never)]
fn hash_cost_fields<H: Hasher>(k: &FlowKey, h: &mut H) {
    std::mem::discriminant(&k.in_port).hash(h);
    match k.in_port {
        InPort::Port(p) | InPort::Tunnel(p) => p.hash(h),
    }
    k.eth_src.0.hash(h);
    k.eth_dst.0.hash(h);
    k.ethertype.hash(h);
    k.vlan_vid.hash(h);
    k.vlan_pcp.hash(h);
    k.arp_op.hash(h);
    k.arp_sha.0.hash(h);
    k.arp_spa.hash(h);
    k.arp_tha.0.hash(h);
    k.arp_tpa.hash(h);
    k.ipv4_src.hash(h);
    k.ipv4_dst.hash(h);
    k.ipv6_src.hash(h);
    k.ipv6_dst.hash(h);
    k.ip_proto.hash(h);
    k.ip_tos.hash(h);
    k.ip_ttl.hash(h);
    k.ip_frag.hash(h);
    k.l4_src.hash(h);
    k.l4_dst.hash(h);
    k.tcp_flags.hash(h);
    k.icmp_type.hash(h);
    k.icmp_code.hash(h);
    k.icmp_id.hash(h);
}

#[inline(never)]
fn hash_cost_packed<H: Hasher>(k: &FlowKey, h: &mut H) {
    k.hash(h);
}

#[inline(never)]
fn hash_cost_apply(m: &FlowMask, k: &FlowKey) -> MaskedKey {
    m.apply(k)
}

fn main() {
    let k: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,tcp.src=40000,tcp.dst=80"
        .parse()
        .expect("valid description");
    let s = foldhash::fast::FixedState::with_seed(1);
    let mut acc = 0u64;
    for _ in 0..100_000 {
        let mut h = s.build_hasher();
        hash_cost_fields(black_box(&k), &mut h);
        acc ^= h.finish();
        let mut h = s.build_hasher();
        hash_cost_packed(black_box(&k), &mut h);
        acc ^= h.finish();
    }
    let mut mask = FlowMask::empty();
    mask.mark(FieldId::InPort);
    mask.mark(FieldId::EthDst);
    mask.mark_prefix(FieldId::Ipv4Dst, 24);
    mask.mark(FieldId::L4Dst);
    for _ in 0..100_000 {
        let mk = hash_cost_apply(black_box(&mask), black_box(&k));
        acc ^= s.hash_one(black_box(mk));
    }
    println!("{acc}");
}
