//! Seeds of the targets fed what hosts send each other: VXLAN datagrams and
//! flow-state messages.

use std::net::Ipv4Addr;

use midonet_wire::vxlan::{CsumOffset, CsumPartial, Gso, OffloadMeta, VxlanRepr};

use midonet_wire::checksum::set_ipv4_header_checksum;

use super::frames::frames;
use super::{frame, seed, Seed, VM1_TCP, VM1_UDP};

fn vxlan_hdr(vni: u32, offload: Option<OffloadMeta>) -> [u8; 8] {
    VxlanRepr { vni, offload }.to_bytes().expect("seed headers encode")
}

/// A UDP GRO message: `n` datagrams of `pl` payload bytes (the last
/// `last` bytes), each behind a VXLAN header for `vni`, consecutive IP IDs.
fn gro_message(n: usize, pl: usize, last: usize, df: bool, partial: bool) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut seg = 0;
    for k in 0..n {
        let size = if k + 1 == n { last } else { pl };
        let payload: Vec<u8> = (0..size).map(|i| (i + k * 7) as u8).collect();
        let mut f = frame(VM1_UDP, &payload);
        f[18..20].copy_from_slice(&(0x1000 + k as u16).to_be_bytes());
        if df {
            f[20] |= 0x40;
        }
        set_ipv4_header_checksum(&mut f[14..34]);
        if partial {
            // The uncomplemented pseudo-header sum, as an offloading sender leaves it.
            let s = midonet_wire::checksum::pseudo_header_v4(
                Ipv4Addr::new(10, 0, 0, 11),
                Ipv4Addr::new(10, 0, 0, 12),
                17,
                (8 + size) as u16,
            );
            f[40..42].copy_from_slice(&midonet_wire::checksum::fold(s).to_be_bytes());
        }
        let hdr = vxlan_hdr(crate::vxlan::BOUND_VNI, None);
        if k == 0 {
            seg = 8 + f.len();
        }
        buf.extend_from_slice(&hdr);
        buf.extend_from_slice(&f);
    }
    (u16::try_from(seg).expect("small"), buf)
}

pub(super) fn vxlan() -> Vec<Seed> {
    let gso = OffloadMeta {
        csum_partial: Some(CsumPartial { start: 34, offset: CsumOffset::Tcp }),
        csum_valid: false,
        gso: Some(Gso { kind: 1, ecn: false, size: 1398 }),
    };
    let udp_partial = OffloadMeta {
        csum_partial: Some(CsumPartial { start: 34, offset: CsumOffset::Udp }),
        ..OffloadMeta::default()
    };
    let v6 = OffloadMeta {
        csum_partial: None,
        csum_valid: true,
        gso: Some(Gso { kind: 4, ecn: true, size: 9000 }),
    };
    let bound = crate::vxlan::BOUND_VNI;
    let arp = frames().into_iter().find(|(n, _)| *n == "arp_request").expect("arp seed").1;
    let mut v = vec![
        seed("plain_arp", &[0], &[&vxlan_hdr(bound, None)[..], &arp].concat()),
        seed(
            "gso_tcp",
            &[0],
            &[&vxlan_hdr(bound, Some(gso))[..], &frame(VM1_TCP, &[0xaa; 64])].concat(),
        ),
        seed(
            "udp_partial",
            &[0],
            &[&vxlan_hdr(bound, Some(udp_partial))[..], &frame(VM1_UDP, b"q")].concat(),
        ),
        seed("tcp6_gso_ecn", &[0], &[&vxlan_hdr(bound, Some(v6))[..], &frames()[8].1].concat()),
        seed("unbound_vni", &[0], &[&vxlan_hdr(7, None)[..], &frame(VM1_UDP, b"q")].concat()),
        seed("max_vni_header_only", &[0], &vxlan_hdr(0x00ff_ffff, None)),
        seed("bad_offload", &[0], &[0x09, 0x0d, 0, 0, 0, 0, 0x42, 0]),
        seed("i_flag_clear", &[0], &[0, 0, 0, 0, 0, 0, 0x42, 0]),
        seed(
            "gbp_foreign_bits",
            &[0],
            &[
                0x88, 0x40, 0xab, 0xcd, 0, 0, 0x42, 0xee, 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88,
                0xb5,
            ],
        ),
        seed("truncated", &[0], &[0x08, 0, 0]),
        seed("short_inner", &[0], &[&vxlan_hdr(bound, None)[..], &[1; 10]].concat()),
    ];
    for (name, n, pl, last, df, partial) in [
        ("gro_2", 2, 100, 100, false, false),
        ("gro_3_short_last", 3, 64, 20, false, false),
        ("gro_4_df", 4, 32, 32, true, false),
        ("gro_2_partial", 2, 50, 10, false, true),
    ] {
        let (seg, buf) = gro_message(n, pl, last, df, partial);
        let mode = if partial { 3 } else { 1 };
        v.push(seed(name, &[mode], &[&seg.to_be_bytes()[..], &buf].concat()));
    }
    let (seg, mut buf) = gro_message(2, 40, 40, false, false);
    let second_port = usize::from(seg) + 8 + 36;
    buf[second_port] ^= 1;
    v.push(seed("gro_ports_differ", &[1], &[&seg.to_be_bytes()[..], &buf].concat()));
    v
}

/// Flow-state messages as an ingress agent sends them, and broken ones.
pub(super) fn flowstate() -> Vec<Seed> {
    use midonet_wire::flowstate::{
        ConnKeyRepr, ConnStateCode, ConntrackRepr, FlowStateRepr, LearnedKindCode, LearnedRepr,
        NatKindCode, NatRepr,
    };
    let key = |proto: u8, sport: u16, dport: u16| ConnKeyRepr {
        tracker: [0xd0; 16],
        src: Ipv4Addr::new(10, 0, 0, 11),
        dst: Ipv4Addr::new(8, 8, 8, 8),
        src_port: sport,
        dst_port: dport,
        proto,
    };
    let snat = |k: ConnKeyRepr, port: u16| NatRepr {
        key: k,
        kind: NatKindCode::Snat,
        bound_ip: Ipv4Addr::new(203, 0, 113, 1),
        bound_port: port,
    };
    let base = FlowStateRepr {
        sender: [0x11; 16],
        ingress_port: [0x22; 16],
        egress_ports: vec![[0x33; 16]],
        ..FlowStateRepr::default()
    };
    let tcp = key(6, 40000, 443);
    let ping = key(1, 7, 7);
    let msgs = [
        ("empty", FlowStateRepr { egress_ports: vec![], ..base.clone() }),
        (
            "conntrack_tcp",
            FlowStateRepr {
                conntrack: vec![ConntrackRepr { key: tcp, state: ConnStateCode::SynSent }],
                ..base.clone()
            },
        ),
        (
            "snat_tcp",
            FlowStateRepr {
                conntrack: vec![ConntrackRepr { key: tcp, state: ConnStateCode::SynSent }],
                nat: vec![snat(tcp, 1100)],
                ..base.clone()
            },
        ),
        (
            "snat_icmp",
            FlowStateRepr {
                conntrack: vec![ConntrackRepr { key: ping, state: ConnStateCode::New }],
                nat: vec![snat(ping, 1024)],
                ..base.clone()
            },
        ),
        (
            "dnat_sticky_groups",
            FlowStateRepr {
                egress_ports: vec![[0x33; 16], [0x34; 16]],
                port_groups: vec![[0x44; 16]],
                nat: vec![
                    NatRepr { kind: NatKindCode::Dnat, ..snat(key(17, 5000, 53), 5353) },
                    NatRepr { kind: NatKindCode::StickyDnat, ..snat(key(6, 1, 80), 8080) },
                ],
                ..base.clone()
            },
        ),
        (
            "learned",
            FlowStateRepr {
                ingress_port: [0; 16],
                egress_ports: vec![],
                learned: vec![
                    LearnedRepr {
                        kind: LearnedKindCode::RouterArp,
                        device: [0x55; 16],
                        vlan: 0,
                        port: [0; 16],
                        ip: Ipv4Addr::new(10, 2, 0, 4),
                        mac: [2, 0, 0, 0, 0, 4],
                    },
                    LearnedRepr {
                        kind: LearnedKindCode::Mac,
                        device: [0x66; 16],
                        vlan: 0,
                        port: [0x77; 16],
                        ip: Ipv4Addr::UNSPECIFIED,
                        mac: [2, 0, 0, 0, 0, 5],
                    },
                ],
                ..base.clone()
            },
        ),
        (
            "port_request",
            FlowStateRepr {
                purpose: midonet_wire::flowstate::Purpose::Request,
                egress_ports: vec![[0x33; 16], [0x34; 16]],
                ..base.clone()
            },
        ),
        (
            "port_answered",
            FlowStateRepr { purpose: midonet_wire::flowstate::Purpose::Answered, ..base.clone() },
        ),
        (
            "many",
            FlowStateRepr {
                conntrack: (0..20)
                    .map(|i| ConntrackRepr {
                        key: key(17, 1000 + i, 53),
                        state: ConnStateCode::from_u8((i % 6) as u8),
                    })
                    .collect(),
                nat: (0..10).map(|i| snat(key(17, 1000 + i, 53), 2000 + i)).collect(),
                ..base.clone()
            },
        ),
    ];
    let mut v: Vec<Seed> = msgs
        .iter()
        .map(|(name, m)| {
            let mut b = Vec::new();
            m.emit_vec(&mut b).expect("seed messages encode");
            seed(name, &[], &b)
        })
        .collect();
    let good = v[2].1.clone();
    v.push(seed("truncated", &[], &good[..good.len() - 1]));
    v.push(seed("trailing_byte", &[], &[&good[..], &[0]].concat()));
    v.push(seed("version_2", &[], &[&[2], &good[1..]].concat()));
    v.push(seed("header_only_short", &[], &good[..20]));
    v
}
