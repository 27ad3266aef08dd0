//! The byte layouts shared with `bpf/datapath.h`, and the translation of
//! flow keys, megaflow masks and action lists into them.
//!
//! Every map key and value is a byte array (aya's `Pod` holds for `[u8; N]`
//! and `[u64; N]`), written and read here field by field, so this crate
//! needs no `unsafe` to talk to the maps. The offsets below must match the
//! C structs; the tests pin the sizes, and the BPF_PROG_TEST_RUN tests
//! (tests/ebpf.rs) check the semantics end to end.
//!
//! What the kernel can do is a subset of what the agent's flows say. A flow
//! is *offloaded* (installed in the BPF maps) when [`offload`] says so;
//! otherwise it lives only in the agent's table and its packets take the
//! upcall path, where the userspace copy of the table executes them:
//! * the kernel key has no IPv6 addresses, and does not parse IPv6 past the
//!   fixed header, so a mask on IPv6 addresses, or on any L3/L4 field of a
//!   flow whose masked ethertype is IPv6, stays in the agent;
//! * L3/L4 rewrites run only on IPv4 in the kernel, so a flow with one is
//!   offloaded only when its mask pins the ethertype to IPv4;
//! * `Userspace` actions, more than [`MAX_ACTS`] actions, and port numbers
//!   past the port table stay in the agent.

use std::net::Ipv4Addr;

use midonet_flow::{Action, Actions, FieldId, FlowKey, FlowMask, FragType, InPort, MacAddr};

pub const MAX_FLOWS: u32 = 65_536;
pub const MAX_MASKS: usize = 32;
pub const MAX_ACT_LISTS: u32 = 32_768;
pub const MAX_ACTS: usize = 16;
pub const MAX_PORTS: u32 = 4096;
pub const MAX_STATS: u32 = 65_536;
pub const IN_TUNNEL: u32 = 0x8000_0000;
pub const MASK_ID_SHIFT: u32 = 24;
pub const VLAN_PRESENT: u16 = 0x1000;
pub const PORT_PEER: u32 = 1;
pub const META_TAGS: usize = 62;
pub const MAX_EXACT: u32 = 65_536;
/// `mdp_config.flags`: the exact-match cache is off.
pub const CFG_NO_EXACT: u32 = 1;
/// `mdp_config.flags`: `mdp_underlay` decapsulates nothing.
pub const CFG_NO_DECAP: u32 = 2;
/// `mdp_config.flags`: every tunnel output goes through the vxlan device.
pub const CFG_NO_ENCAP: u32 = 4;

pub const KEY_LEN: usize = 64;
pub type KeyBytes = [u8; KEY_LEN];
pub const ACT_LEN: usize = 20;
pub const ACT_LIST_LEN: usize = 8 + MAX_ACTS * ACT_LEN;
pub type ActListBytes = [u8; ACT_LIST_LEN];
pub const PORT_LEN: usize = 24;
pub const CONFIG_LEN: usize = 20;
/// `struct mdp_nexthop`.
pub const NEXTHOP_LEN: usize = 12;
pub const MASK_LIST_LEN: usize = 4 + MAX_MASKS;
pub const META_LEN: usize = 16 + META_TAGS * 8;
pub const UPCALL_HDR_LEN: usize = 40;
/// `struct mdp_exact`, the exact-match cache's value.
pub const EXACT_LEN: usize = 52;
pub type ExactBytes = [u8; EXACT_LEN];
/// `struct mdp_nat_key`, the key of `mdp_rev_nat`.
pub const NAT_KEY_LEN: usize = 32;
pub type NatKeyBytes = [u8; NAT_KEY_LEN];
/// `struct mdp_nat_val`, a binding in `mdp_rev_nat`.
pub const NAT_VAL_LEN: usize = 16;
pub type NatValBytes = [u8; NAT_VAL_LEN];
/// `struct mdp_recirc`, an entry of `mdp_recirc`.
pub const RECIRC_LEN: usize = 20;
/// `struct mdp_ct_key`, the key of `mdp_ct`.
pub const CT_KEY_LEN: usize = 32;
/// `struct mdp_ct_val`, a connection in `mdp_ct`.
pub const CT_VAL_LEN: usize = 16;
/// `struct mdp_recirc_ct`, an entry of `mdp_recirc_ct`.
pub const RECIRC_CT_LEN: usize = 20;
/// Entries of `mdp_ct` (an LRU hash).
pub const MAX_CT: u32 = 131_072;
/// Entries of `mdp_rev_nat` (an LRU hash).
pub const MAX_REV_NAT: u32 = 131_072;
/// The in_port word of a recirculation: [`crate::RECIRC_PORT_BASE`].
pub const IN_RECIRC: u32 = crate::RECIRC_PORT_BASE;
// A recirculation's in_port is no port's and leaves the mask index's bits
// free (datapath.c asserts the same of MDP_IN_RECIRC).
const _: () = assert!(
    IN_RECIRC >= MAX_PORTS
        && IN_RECIRC + crate::RECIRC_UNTRACKED + crate::RECIRC_MAX <= 1 << MASK_ID_SHIFT
);

/// Counters of the `mdp_counters` per-CPU array (`enum mdp_counter`).
pub mod counter {
    pub const DROP_TRUNCATED: u32 = 0;
    pub const DROP_MALFORMED: u32 = 1;
    pub const DROP_TUNNEL_MALFORMED: u32 = 2;
    pub const DROP_UNKNOWN_PORT: u32 = 3;
    pub const DROP_FLOW: u32 = 4;
    pub const DROP_REWRITE: u32 = 5;
    pub const DROP_UPCALL_LOST: u32 = 6;
    pub const DROP_STALE_EXEC: u32 = 7;
    pub const DROP_TX: u32 = 8;
    pub const DROP_UPCALL_LIMIT: u32 = 9;
    pub const DROP_TUNNEL_SOURCE: u32 = 10;
    pub const HIT: u32 = 16;
    pub const MISS: u32 = 17;
    pub const UPCALL: u32 = 18;
    pub const INJECT: u32 = 19;
    pub const TUNNEL_DIRECT: u32 = 20;
    pub const EXACT_HIT: u32 = 21;
    pub const EXACT_FILL: u32 = 22;
    pub const TUNNEL_DECAP: u32 = 23;
    pub const TUNNEL_ENCAP: u32 = 24;
    /// Replies a split flow translated and forwarded (also in `HIT`).
    pub const REV_NAT_HIT: u32 = 25;
    /// Replies of a split flow with no binding in `mdp_rev_nat` (also in
    /// `MISS`).
    pub const REV_NAT_MISS: u32 = 26;
    /// Bindings `mdp_state` wrote from flow-state messages.
    pub const STATE_BINDINGS: u32 = 27;
    /// Flow-state datagrams `mdp_state` did not read (not from a tunnel
    /// peer, another version, a request, shorter than its NAT section).
    pub const STATE_REJECTED: u32 = 28;
    /// Replies of a split flow reading conntrack whose connection `mdp_ct`
    /// lacks: looked up again under the untracked in-port
    /// ([`crate::RECIRC_UNTRACKED`]), a miss unless a second half that
    /// reads no conntrack is there.
    pub const CT_MISS: u32 = 29;
    /// Connections `mdp_state` wrote from flow-state messages.
    pub const STATE_CONNS: u32 = 30;
    pub const MAX: u32 = 32;
}

/// Which [`crate::DropReason`] each kernel drop counter is.
pub fn drop_reason(c: u32) -> Option<crate::DropReason> {
    use crate::DropReason as D;
    Some(match c {
        counter::DROP_TRUNCATED => D::Truncated,
        counter::DROP_MALFORMED => D::Malformed,
        counter::DROP_TUNNEL_MALFORMED => D::TunnelMalformed,
        counter::DROP_UNKNOWN_PORT => D::UnknownPort,
        counter::DROP_FLOW => D::FlowDrop,
        counter::DROP_REWRITE => D::RewriteFailed,
        // The ring buffer to the agent was full: the kernel's version of a
        // receive-queue overrun.
        counter::DROP_UPCALL_LOST => D::RxOverrun,
        // A re-injected packet whose action list was reused meanwhile, or
        // a clone the kernel would not send.
        counter::DROP_STALE_EXEC | counter::DROP_TX => D::TxError,
        counter::DROP_UPCALL_LIMIT => D::UpcallRateLimited,
        counter::DROP_TUNNEL_SOURCE => D::TunnelUnknownSource,
        _ => return None,
    })
}

mod off {
    pub const IN_PORT: usize = 0;
    pub const ETH_DST: usize = 4;
    pub const ETH_SRC: usize = 10;
    pub const ETH_TYPE: usize = 16;
    pub const VLAN: usize = 18;
    pub const IP_SRC: usize = 20;
    pub const IP_DST: usize = 24;
    pub const IP_PROTO: usize = 28;
    pub const IP_TOS: usize = 29;
    pub const IP_TTL: usize = 30;
    pub const IP_FRAG: usize = 31;
    pub const L4_SRC: usize = 32;
    pub const L4_DST: usize = 34;
    pub const TCP_FLAGS: usize = 36;
    pub const ICMP_TYPE: usize = 38;
    pub const ICMP_CODE: usize = 39;
    pub const ICMP_ID: usize = 40;
    pub const ARP_OP: usize = 42;
    pub const ARP_SHA: usize = 44;
    pub const ARP_THA: usize = 50;
    pub const ARP_SPA: usize = 56;
    pub const ARP_TPA: usize = 60;
}

/// The in_port field of a key.
pub fn in_port_word(p: InPort) -> u32 {
    match p {
        InPort::Port(n) => n & 0x00ff_ffff,
        InPort::Tunnel(k) => IN_TUNNEL | (k & 0x00ff_ffff),
    }
}

fn frag_code(f: FragType) -> u8 {
    match f {
        FragType::No => 0,
        FragType::First => 1,
        FragType::Later => 2,
    }
}

/// The kernel key of `k` (IPv6 addresses are not part of it).
pub fn encode_key(k: &FlowKey) -> KeyBytes {
    let mut b = [0u8; KEY_LEN];
    b[off::IN_PORT..off::IN_PORT + 4].copy_from_slice(&in_port_word(k.in_port).to_ne_bytes());
    b[off::ETH_DST..off::ETH_DST + 6].copy_from_slice(&k.eth_dst.0);
    b[off::ETH_SRC..off::ETH_SRC + 6].copy_from_slice(&k.eth_src.0);
    b[off::ETH_TYPE..off::ETH_TYPE + 2].copy_from_slice(&k.ethertype.to_be_bytes());
    let vlan = match k.vlan_vid {
        Some(vid) => VLAN_PRESENT | (u16::from(k.vlan_pcp & 7) << 13) | (vid & 0x0fff),
        None => 0,
    };
    b[off::VLAN..off::VLAN + 2].copy_from_slice(&vlan.to_ne_bytes());
    // The kernel keys IPv4 fields only for IPv4 frames; FlowKey has them
    // zero for everything else, and its IPv6 L3/L4 fields are never offloaded.
    if !k.is_ipv6() {
        b[off::IP_SRC..off::IP_SRC + 4].copy_from_slice(&k.ipv4_src.octets());
        b[off::IP_DST..off::IP_DST + 4].copy_from_slice(&k.ipv4_dst.octets());
        b[off::IP_PROTO] = k.ip_proto;
        b[off::IP_TOS] = k.ip_tos;
        b[off::IP_TTL] = k.ip_ttl;
        b[off::IP_FRAG] = frag_code(k.ip_frag);
        b[off::L4_SRC..off::L4_SRC + 2].copy_from_slice(&k.l4_src.to_be_bytes());
        b[off::L4_DST..off::L4_DST + 2].copy_from_slice(&k.l4_dst.to_be_bytes());
        b[off::TCP_FLAGS..off::TCP_FLAGS + 2].copy_from_slice(&k.tcp_flags.to_be_bytes());
        b[off::ICMP_TYPE] = k.icmp_type;
        b[off::ICMP_CODE] = k.icmp_code;
        b[off::ICMP_ID..off::ICMP_ID + 2].copy_from_slice(&k.icmp_id.to_be_bytes());
    }
    b[off::ARP_OP..off::ARP_OP + 2].copy_from_slice(&k.arp_op.to_be_bytes());
    b[off::ARP_SHA..off::ARP_SHA + 6].copy_from_slice(&k.arp_sha.0);
    b[off::ARP_THA..off::ARP_THA + 6].copy_from_slice(&k.arp_tha.0);
    b[off::ARP_SPA..off::ARP_SPA + 4].copy_from_slice(&k.arp_spa.octets());
    b[off::ARP_TPA..off::ARP_TPA + 4].copy_from_slice(&k.arp_tpa.octets());
    b
}

/// Where each non-address field sits in a key, and the bits of it that
/// the field's mask covers (as key bytes).
fn field_bytes(f: FieldId) -> Option<(usize, Vec<u8>)> {
    let ff = |n: usize| vec![0xff; n];
    Some(match f {
        // Port numbers and VNIs are 24 bits; bits 24..30 hold the mask index.
        FieldId::InPort => (off::IN_PORT, 0x80ff_ffffu32.to_ne_bytes().to_vec()),
        FieldId::EthDst => (off::ETH_DST, ff(6)),
        FieldId::EthSrc => (off::ETH_SRC, ff(6)),
        FieldId::EthType => (off::ETH_TYPE, ff(2)),
        // Host-order u16: the present bit and the VID, or the PCP.
        FieldId::VlanVid => (off::VLAN, (VLAN_PRESENT | 0x0fff).to_ne_bytes().to_vec()),
        FieldId::VlanPcp => (off::VLAN, 0xe000u16.to_ne_bytes().to_vec()),
        FieldId::ArpOp => (off::ARP_OP, ff(2)),
        FieldId::ArpSha => (off::ARP_SHA, ff(6)),
        FieldId::ArpSpa => (off::ARP_SPA, ff(4)),
        FieldId::ArpTha => (off::ARP_THA, ff(6)),
        FieldId::ArpTpa => (off::ARP_TPA, ff(4)),
        FieldId::IpProto => (off::IP_PROTO, ff(1)),
        FieldId::IpTos => (off::IP_TOS, ff(1)),
        FieldId::IpTtl => (off::IP_TTL, ff(1)),
        FieldId::IpFrag => (off::IP_FRAG, ff(1)),
        FieldId::L4Src => (off::L4_SRC, ff(2)),
        FieldId::L4Dst => (off::L4_DST, ff(2)),
        FieldId::TcpFlags => (off::TCP_FLAGS, 0x01ffu16.to_be_bytes().to_vec()),
        FieldId::IcmpType => (off::ICMP_TYPE, ff(1)),
        FieldId::IcmpCode => (off::ICMP_CODE, ff(1)),
        FieldId::IcmpId => (off::ICMP_ID, ff(2)),
        FieldId::Ipv4Src | FieldId::Ipv4Dst | FieldId::Ipv6Src | FieldId::Ipv6Dst => return None,
    })
}

fn prefix_mask(len: u8) -> [u8; 4] {
    let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    m.to_be_bytes()
}

const L3_FIELDS: [FieldId; 19] = [
    FieldId::ArpOp,
    FieldId::ArpSha,
    FieldId::ArpSpa,
    FieldId::ArpTha,
    FieldId::ArpTpa,
    FieldId::Ipv4Src,
    FieldId::Ipv4Dst,
    FieldId::Ipv6Src,
    FieldId::Ipv6Dst,
    FieldId::IpProto,
    FieldId::IpTos,
    FieldId::IpTtl,
    FieldId::IpFrag,
    FieldId::L4Src,
    FieldId::L4Dst,
    FieldId::TcpFlags,
    FieldId::IcmpType,
    FieldId::IcmpCode,
    FieldId::IcmpId,
];

/// The kernel mask of `m`, or `None` when it matches IPv6 addresses.
pub fn encode_mask(m: &FlowMask) -> Option<KeyBytes> {
    if m.is_marked(FieldId::Ipv6Src) || m.is_marked(FieldId::Ipv6Dst) {
        return None;
    }
    let mut b = [0u8; KEY_LEN];
    for f in m.fields() {
        if let Some((at, bits)) = field_bytes(f) {
            for (i, x) in bits.iter().enumerate() {
                b[at + i] |= x;
            }
        }
    }
    b[off::IP_SRC..off::IP_SRC + 4].copy_from_slice(&prefix_mask(m.prefix_len(FieldId::Ipv4Src)));
    b[off::IP_DST..off::IP_DST + 4].copy_from_slice(&prefix_mask(m.prefix_len(FieldId::Ipv4Dst)));
    Some(b)
}

/// The inverse of [`encode_mask`] (for adopting flows after a restart).
pub fn decode_mask(b: &KeyBytes) -> FlowMask {
    let mut m = FlowMask::empty();
    for f in FieldId::ALL {
        if let Some((at, bits)) = field_bytes(f) {
            if bits.iter().enumerate().any(|(i, x)| b[at + i] & x != 0) {
                m.mark(f);
            }
        }
    }
    let plen = |at: usize| {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]).leading_ones() as u8
    };
    m.mark_prefix(FieldId::Ipv4Src, plen(off::IP_SRC));
    m.mark_prefix(FieldId::Ipv4Dst, plen(off::IP_DST));
    m
}

/// `key & mask` with the mask's index in the in_port word: the flows map key.
pub fn flow_map_key(key: &KeyBytes, mask: &KeyBytes, mask_idx: usize) -> KeyBytes {
    let mut out = [0u8; KEY_LEN];
    for i in 0..KEY_LEN {
        out[i] = key[i] & mask[i];
    }
    let w =
        u32::from_ne_bytes([out[0], out[1], out[2], out[3]]) | ((mask_idx as u32) << MASK_ID_SHIFT);
    out[0..4].copy_from_slice(&w.to_ne_bytes());
    out
}

/// The masked key a flows-map key stands for (in_port without the index).
pub fn decode_flow_key(b: &KeyBytes) -> FlowKey {
    let rd16 = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let mac = |at: usize| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[at..at + 6]);
        MacAddr(m)
    };
    let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
    let w = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) & !(0x7f << MASK_ID_SHIFT);
    let in_port =
        if w & IN_TUNNEL != 0 { InPort::Tunnel(w & 0x00ff_ffff) } else { InPort::Port(w) };
    let vlan = u16::from_ne_bytes([b[off::VLAN], b[off::VLAN + 1]]);
    FlowKey {
        in_port,
        eth_dst: mac(off::ETH_DST),
        eth_src: mac(off::ETH_SRC),
        ethertype: rd16(off::ETH_TYPE),
        vlan_vid: (vlan & VLAN_PRESENT != 0).then_some(vlan & 0x0fff),
        vlan_pcp: (vlan >> 13) as u8,
        arp_op: rd16(off::ARP_OP),
        arp_sha: mac(off::ARP_SHA),
        arp_spa: ip(off::ARP_SPA),
        arp_tha: mac(off::ARP_THA),
        arp_tpa: ip(off::ARP_TPA),
        ipv4_src: ip(off::IP_SRC),
        ipv4_dst: ip(off::IP_DST),
        ip_proto: b[off::IP_PROTO],
        ip_tos: b[off::IP_TOS],
        ip_ttl: b[off::IP_TTL],
        ip_frag: match b[off::IP_FRAG] {
            1 => FragType::First,
            2 => FragType::Later,
            _ => FragType::No,
        },
        l4_src: rd16(off::L4_SRC),
        l4_dst: rd16(off::L4_DST),
        tcp_flags: rd16(off::TCP_FLAGS),
        icmp_type: b[off::ICMP_TYPE],
        icmp_code: b[off::ICMP_CODE],
        icmp_id: rd16(off::ICMP_ID),
        ..FlowKey::default()
    }
}

mod op {
    pub const SET_ETH_SRC: u8 = 1;
    pub const SET_ETH_DST: u8 = 2;
    pub const SET_IP4_SRC: u8 = 3;
    pub const SET_IP4_DST: u8 = 4;
    pub const SET_TTL: u8 = 5;
    pub const SET_TOS: u8 = 6;
    pub const SET_L4_SRC: u8 = 7;
    pub const SET_L4_DST: u8 = 8;
    pub const SET_ICMP_ID: u8 = 9;
    pub const PUSH_VLAN: u8 = 10;
    pub const POP_VLAN: u8 = 11;
    pub const OUTPUT: u8 = 12;
    pub const TUNNEL: u8 = 13;
    pub const REV_NAT: u8 = 14;
}

fn encode_action(a: &Action) -> Option<[u8; ACT_LEN]> {
    let mut b = [0u8; ACT_LEN];
    let (code, h, w, x, mac): (u8, u16, u32, u32, [u8; 6]) = match *a {
        Action::SetEthSrc(m) => (op::SET_ETH_SRC, 0, 0, 0, m.0),
        Action::SetEthDst(m) => (op::SET_ETH_DST, 0, 0, 0, m.0),
        // Addresses go as the bytes of the header field (network order).
        Action::SetIpv4Src(a) => (op::SET_IP4_SRC, 0, u32::from_ne_bytes(a.octets()), 0, [0; 6]),
        Action::SetIpv4Dst(a) => (op::SET_IP4_DST, 0, u32::from_ne_bytes(a.octets()), 0, [0; 6]),
        Action::SetTtl(t) => (op::SET_TTL, u16::from(t), 0, 0, [0; 6]),
        Action::SetTos(t) => (op::SET_TOS, u16::from(t), 0, 0, [0; 6]),
        Action::SetL4Src(p) => (op::SET_L4_SRC, p, 0, 0, [0; 6]),
        Action::SetL4Dst(p) => (op::SET_L4_DST, p, 0, 0, [0; 6]),
        Action::SetIcmpId(i) => (op::SET_ICMP_ID, i, 0, 0, [0; 6]),
        Action::PushVlan { vid, pcp } => {
            (op::PUSH_VLAN, (u16::from(pcp & 7) << 13) | (vid & 0x0fff), 0, 0, [0; 6])
        }
        Action::PopVlan => (op::POP_VLAN, 0, 0, 0, [0; 6]),
        Action::Output(p) if p > 0 && p < MAX_PORTS => (op::OUTPUT, 0, p, 0, [0; 6]),
        // bpf_tunnel_key.remote_ipv4 is in host order.
        Action::Tunnel { dst, key } => (op::TUNNEL, 0, u32::from(dst), key & 0x00ff_ffff, [0; 6]),
        Action::RevNatRecirc(id) if id < crate::RECIRC_MAX => (op::REV_NAT, 0, id, 0, [0; 6]),
        Action::Output(_) | Action::Userspace(_) | Action::RevNatRecirc(_) => return None,
    };
    b[0] = code;
    b[2..4].copy_from_slice(&h.to_ne_bytes());
    b[4..8].copy_from_slice(&w.to_ne_bytes());
    b[8..12].copy_from_slice(&x.to_ne_bytes());
    b[12..18].copy_from_slice(&mac);
    Some(b)
}

fn decode_action(b: &[u8]) -> Option<Action> {
    let h = u16::from_ne_bytes([b[2], b[3]]);
    let w = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
    let x = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[12..18]);
    let ip = Ipv4Addr::from(w.to_ne_bytes());
    Some(match b[0] {
        op::SET_ETH_SRC => Action::SetEthSrc(MacAddr(mac)),
        op::SET_ETH_DST => Action::SetEthDst(MacAddr(mac)),
        op::SET_IP4_SRC => Action::SetIpv4Src(ip),
        op::SET_IP4_DST => Action::SetIpv4Dst(ip),
        op::SET_TTL => Action::SetTtl(h as u8),
        op::SET_TOS => Action::SetTos(h as u8),
        op::SET_L4_SRC => Action::SetL4Src(h),
        op::SET_L4_DST => Action::SetL4Dst(h),
        op::SET_ICMP_ID => Action::SetIcmpId(h),
        op::PUSH_VLAN => Action::PushVlan { vid: h & 0x0fff, pcp: (h >> 13) as u8 },
        op::POP_VLAN => Action::PopVlan,
        op::OUTPUT => Action::Output(w),
        op::TUNNEL => Action::Tunnel { dst: Ipv4Addr::from(w), key: x },
        op::REV_NAT => Action::RevNatRecirc(w),
        _ => return None,
    })
}

/// An action list for the kernel, or `None` when it cannot run there.
/// Rewrites after the last emit are dropped (they change nothing).
pub fn encode_actions(actions: &[Action], gen: u16) -> Option<ActListBytes> {
    let last = actions.iter().rposition(Action::is_emit);
    let used = last.map_or(0, |l| l + 1);
    if used > MAX_ACTS {
        return None;
    }
    let mut b = [0u8; ACT_LIST_LEN];
    for (i, a) in actions[..used].iter().enumerate() {
        let e = encode_action(a)?;
        b[8 + i * ACT_LEN..8 + (i + 1) * ACT_LEN].copy_from_slice(&e);
    }
    b[0..2].copy_from_slice(&(used as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&(last.map_or(u16::MAX, |l| l as u16)).to_ne_bytes());
    b[4..6].copy_from_slice(&gen.to_ne_bytes());
    Some(b)
}

/// The inverse of [`encode_actions`].
pub fn decode_actions(b: &ActListBytes) -> Option<Actions> {
    let n = usize::from(u16::from_ne_bytes([b[0], b[1]])).min(MAX_ACTS);
    (0..n).map(|i| decode_action(&b[8 + i * ACT_LEN..8 + (i + 1) * ACT_LEN])).collect()
}

/// Generation stamp of an encoded action list.
pub fn act_list_gen(b: &ActListBytes) -> u16 {
    u16::from_ne_bytes([b[4], b[5]])
}

fn is_l3_rewrite(a: &Action) -> bool {
    matches!(
        a,
        Action::SetIpv4Src(_)
            | Action::SetIpv4Dst(_)
            | Action::SetTtl(_)
            | Action::SetTos(_)
            | Action::SetL4Src(_)
            | Action::SetL4Dst(_)
            | Action::SetIcmpId(_)
    )
}

/// Whether a flow can run in the kernel (see the module docs); its kernel
/// key and mask when it can.
pub fn offload(key: &FlowKey, mask: &FlowMask, actions: &[Action]) -> Option<(KeyBytes, KeyBytes)> {
    let m = encode_mask(mask)?;
    let masked = mask.apply(key);
    let ethertype = masked.key().ethertype;
    let pinned = mask.is_marked(FieldId::EthType);
    let l3_marked = L3_FIELDS.iter().any(|f| mask.is_marked(*f));
    if l3_marked && pinned && ethertype == midonet_flow::key::ETH_TYPE_IPV6 {
        return None;
    }
    if actions.iter().any(is_l3_rewrite)
        && !(pinned && ethertype == midonet_flow::key::ETH_TYPE_IPV4)
    {
        return None;
    }
    if let InPort::Port(p) = key.in_port {
        // A port, or a recirculation (the second half of a flow split at
        // a reverse NAT; the untracked in-ports follow the tracked ones).
        let recirc =
            (IN_RECIRC..IN_RECIRC + crate::RECIRC_UNTRACKED + crate::RECIRC_MAX).contains(&p);
        if mask.is_marked(FieldId::InPort) && p >= MAX_PORTS && !recirc {
            return None;
        }
    }
    encode_actions(actions, 0)?;
    Some((encode_key(key), m))
}

/// Whether an action list the agent executes on `frame` can run in the
/// kernel as is (packet-outs): rewrites of L3/L4 fields need an IPv4 frame.
pub fn executable(frame: &[u8], actions: &[Action]) -> bool {
    if actions.iter().any(is_l3_rewrite) {
        let tagged = frame.get(12..14) == Some(&[0x81, 0x00][..]);
        let et = if tagged { frame.get(16..18) } else { frame.get(12..14) };
        if et != Some(&[0x08, 0x00][..]) {
            return false;
        }
    }
    let used = actions.iter().rposition(Action::is_emit).map_or(0, |l| l + 1);
    used <= MAX_ACTS && actions[..used].iter().all(|a| encode_action(a).is_some())
}

/// A port table entry.
pub fn encode_port(ifindex: u32, flags: u32, name: &str) -> [u8; PORT_LEN] {
    let mut b = [0u8; PORT_LEN];
    b[0..4].copy_from_slice(&ifindex.to_ne_bytes());
    b[4..8].copy_from_slice(&flags.to_ne_bytes());
    let n = name.as_bytes();
    let len = n.len().min(15);
    b[8..8 + len].copy_from_slice(&n[..len]);
    b
}

/// `(ifindex, flags, name)` of a port table entry.
pub fn decode_port(b: &[u8; PORT_LEN]) -> (u32, u32, String) {
    let name = &b[8..];
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    (
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        String::from_utf8_lossy(&name[..end]).into_owned(),
    )
}

/// `struct mdp_nexthop`: how to reach a tunnel peer.
pub fn encode_nexthop(ifindex: u32, via: Ipv4Addr, mtu: u32) -> [u8; NEXTHOP_LEN] {
    let mut b = [0u8; NEXTHOP_LEN];
    b[0..4].copy_from_slice(&ifindex.to_ne_bytes());
    b[4..8].copy_from_slice(&via.octets());
    b[8..12].copy_from_slice(&mtu.to_ne_bytes());
    b
}

/// The flows map value: action list and stats slot.
pub fn encode_flow(acts: u32, stats: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&acts.to_ne_bytes());
    b[4..8].copy_from_slice(&stats.to_ne_bytes());
    b
}

pub fn decode_flow(b: &[u8; 8]) -> (u32, u32) {
    (u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), u32::from_ne_bytes([b[4], b[5], b[6], b[7]]))
}

/// A tracker and a 5-tuple as `struct mdp_nat_key` and `struct
/// mdp_ct_key` both lay them out (addresses and ports as on the wire); the
/// bytes from 29 on are the caller's.
struct Tuple {
    tracker: [u8; 16],
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
}

impl Tuple {
    fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..16].copy_from_slice(&self.tracker);
        b[16..20].copy_from_slice(&self.src.octets());
        b[20..24].copy_from_slice(&self.dst.octets());
        b[24..26].copy_from_slice(&self.src_port.to_be_bytes());
        b[26..28].copy_from_slice(&self.dst_port.to_be_bytes());
        b[28] = self.proto;
        b
    }

    fn decode(b: &[u8; 32]) -> Tuple {
        let mut tracker = [0u8; 16];
        tracker.copy_from_slice(&b[0..16]);
        Tuple {
            tracker,
            proto: b[28],
            src: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
            dst: Ipv4Addr::new(b[20], b[21], b[22], b[23]),
            src_port: u16::from_be_bytes([b[24], b[25]]),
            dst_port: u16::from_be_bytes([b[26], b[27]]),
        }
    }
}

const _: () = assert!(NAT_KEY_LEN == 32 && CT_KEY_LEN == 32);

/// `struct mdp_nat_key`: a reply's key in `mdp_rev_nat` (addresses and
/// ports as on the wire).
pub fn encode_nat_key(k: &crate::RevNatKey) -> NatKeyBytes {
    let (tracker, proto, src, dst) = (k.tracker, k.proto, k.src, k.dst);
    let (src_port, dst_port) = (k.src_port, k.dst_port);
    let mut b = Tuple { tracker, proto, src, dst, src_port, dst_port }.encode();
    b[29] = k.kind as u8;
    b
}

/// The inverse of [`encode_nat_key`]; `None` for a kind code other than
/// SNAT's and DNAT's.
pub fn decode_nat_key(b: &NatKeyBytes) -> Option<crate::RevNatKey> {
    let kind = match b[29] {
        0 => crate::RevNatKind::Snat,
        1 => crate::RevNatKind::Dnat,
        _ => return None,
    };
    let t = Tuple::decode(b);
    Some(crate::RevNatKey {
        tracker: t.tracker,
        kind,
        proto: t.proto,
        src: t.src,
        dst: t.dst,
        src_port: t.src_port,
        dst_port: t.dst_port,
    })
}

/// A binding of `mdp_rev_nat` (`struct mdp_nat_val`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatVal {
    /// What the reply gets back: its destination (SNAT) or source (DNAT).
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Allocated by this host: `mdp_state` leaves it alone.
    pub local: bool,
    /// The TCP flags of the replies it translated, OR'ed (the low 8 bits:
    /// FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub tcp_flags: u8,
    /// `bpf_ktime_get_coarse_ns()` of the last reply it translated; 0 = none.
    pub used_ns: u64,
}

pub fn encode_nat_val(v: &NatVal) -> NatValBytes {
    let mut b = [0u8; NAT_VAL_LEN];
    b[0..4].copy_from_slice(&v.ip.octets());
    b[4..6].copy_from_slice(&v.port.to_be_bytes());
    b[6] = u8::from(v.local);
    b[7] = v.tcp_flags;
    b[8..16].copy_from_slice(&v.used_ns.to_ne_bytes());
    b
}

pub fn decode_nat_val(b: &NatValBytes) -> NatVal {
    NatVal {
        ip: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        port: u16::from_be_bytes([b[4], b[5]]),
        local: b[6] != 0,
        tcp_flags: b[7],
        used_ns: u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    }
}

/// `struct mdp_ct_key` of a connection.
pub fn encode_ct_key(k: &crate::CtKey) -> [u8; CT_KEY_LEN] {
    let (tracker, proto, src, dst) = (k.tracker, k.proto, k.src, k.dst);
    Tuple { tracker, proto, src, dst, src_port: k.src_port, dst_port: k.dst_port }.encode()
}

/// The inverse of [`encode_ct_key`].
pub fn decode_ct_key(b: &[u8; CT_KEY_LEN]) -> crate::CtKey {
    let t = Tuple::decode(b);
    crate::CtKey {
        tracker: t.tracker,
        proto: t.proto,
        src: t.src,
        dst: t.dst,
        src_port: t.src_port,
        dst_port: t.dst_port,
    }
}

/// `struct mdp_ct_val`: (last use in `bpf_ktime_get_coarse_ns`, 0 = none;
/// TCP flags OR'ed, the low 8 bits).
pub fn decode_ct_val(b: &[u8; CT_VAL_LEN]) -> (u64, u8) {
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&b[0..8]);
    (u64::from_ne_bytes(ns), b[8])
}

/// `struct mdp_recirc_ct`: the second halves read conntrack at `tracker`.
pub fn encode_recirc_ct(tracker: &[u8; 16]) -> [u8; RECIRC_CT_LEN] {
    let mut b = [0u8; RECIRC_CT_LEN];
    b[0..16].copy_from_slice(tracker);
    b[16] = 1;
    b
}

/// `struct mdp_recirc`: recirculation through `tracker`'s bindings of `kind`.
pub fn encode_recirc(kind: crate::RevNatKind, tracker: &[u8; 16]) -> [u8; RECIRC_LEN] {
    let mut b = [0u8; RECIRC_LEN];
    b[0..16].copy_from_slice(tracker);
    b[16] = kind as u8;
    b[17] = 1;
    b
}

/// The inverse of [`encode_recirc`]; `None` when the id is not set.
pub fn decode_recirc(b: &[u8; RECIRC_LEN]) -> Option<(crate::RevNatKind, [u8; 16])> {
    let kind = match (b[17], b[16]) {
        (0, _) => return None,
        (_, 0) => crate::RevNatKind::Snat,
        (_, 1) => crate::RevNatKind::Dnat,
        _ => return None,
    };
    let mut tracker = [0u8; 16];
    tracker.copy_from_slice(&b[0..16]);
    Some((kind, tracker))
}

/// What the programs are told (`struct mdp_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelConfig {
    /// The vxlan device tunnelled frames are redirected to.
    pub vxlan_ifindex: u32,
    /// The tunnel's local address: the outer source, and the destination
    /// `mdp_underlay` takes datagrams for (`None`: it takes none).
    pub local_ip: Option<Ipv4Addr>,
    /// The VXLAN UDP port `mdp_underlay` takes datagrams on.
    pub vxlan_port: u16,
    /// Use the exact-match cache.
    pub exact: bool,
    /// Let `mdp_underlay` decapsulate.
    pub decap: bool,
    /// Let the programs encapsulate for the peers in `mdp_tunnel_nh`.
    pub encap: bool,
}

pub fn encode_config(c: &KernelConfig) -> [u8; CONFIG_LEN] {
    let mut b = [0u8; CONFIG_LEN];
    b[0..4].copy_from_slice(&c.vxlan_ifindex.to_ne_bytes());
    b[4..8].copy_from_slice(&c.local_ip.map_or(0, u32::from).to_ne_bytes());
    b[8..12].copy_from_slice(&64u32.to_ne_bytes());
    let flags = if c.exact { 0 } else { CFG_NO_EXACT }
        | if c.decap { 0 } else { CFG_NO_DECAP }
        | if c.encap { 0 } else { CFG_NO_ENCAP };
    b[12..16].copy_from_slice(&flags.to_ne_bytes());
    b[16..20].copy_from_slice(&u32::from(c.vxlan_port).to_ne_bytes());
    b
}

pub fn encode_mask_list(order: &[u8]) -> [u8; MASK_LIST_LEN] {
    let mut b = [0u8; MASK_LIST_LEN];
    let n = order.len().min(MAX_MASKS);
    b[0..4].copy_from_slice(&(n as u32).to_ne_bytes());
    b[4..4 + n].copy_from_slice(&order[..n]);
    b
}

/// What a restarting agent needs to adopt a flow: its tags (when they fit)
/// and idle timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMeta {
    pub idle_ms: u64,
    /// `None` when the flow had more tags than fit: it cannot be
    /// invalidated exactly, so an adopting agent removes it.
    pub tags: Option<Vec<u64>>,
}

pub fn encode_meta(idle_ms: u64, tags: &[u64]) -> [u8; META_LEN] {
    let mut b = [0u8; META_LEN];
    b[0..8].copy_from_slice(&idle_ms.to_ne_bytes());
    let fits = tags.len() <= META_TAGS;
    let n = if fits { tags.len() } else { 0 };
    b[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
    b[12..16].copy_from_slice(&u32::from(!fits).to_ne_bytes());
    for (i, t) in tags.iter().take(n).enumerate() {
        b[16 + i * 8..24 + i * 8].copy_from_slice(&t.to_ne_bytes());
    }
    b
}

pub fn decode_meta(b: &[u8; META_LEN]) -> FlowMeta {
    let rd64 = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let n = (u32::from_ne_bytes([b[8], b[9], b[10], b[11]]) as usize).min(META_TAGS);
    let overflow = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) != 0;
    FlowMeta {
        idle_ms: rd64(0),
        tags: (!overflow).then(|| (0..n).map(|i| rd64(16 + i * 8)).collect()),
    }
}

/// The header of a ring buffer record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpcallHdr {
    pub kind: u32,
    pub in_port: u32,
    pub len: u32,
    pub ifindex: u32,
    pub vlan_tci: u16,
    /// Network order on the wire; here as a number (0x8100).
    pub vlan_proto: u16,
    pub vlan_present: bool,
    pub gso_size: u32,
    pub gso_segs: u32,
    /// When the kernel submitted the record (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
}

impl UpcallHdr {
    pub fn parse(b: &[u8]) -> Option<UpcallHdr> {
        let h = b.get(..UPCALL_HDR_LEN)?;
        let rd32 = |at: usize| u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        Some(UpcallHdr {
            kind: rd32(0),
            in_port: rd32(4),
            len: rd32(8),
            ifindex: rd32(12),
            vlan_tci: u16::from_ne_bytes([h[16], h[17]]),
            vlan_proto: u16::from_be_bytes([h[18], h[19]]),
            vlan_present: h[20] != 0,
            gso_size: rd32(24),
            gso_segs: rd32(28),
            ktime_ns: u64::from_ne_bytes(h[32..40].try_into().ok()?),
        })
    }

    /// Where the packet entered.
    pub fn in_port(&self) -> InPort {
        if self.in_port & IN_TUNNEL != 0 {
            InPort::Tunnel(self.in_port & 0x00ff_ffff)
        } else {
            InPort::Port(self.in_port)
        }
    }
}

/// The frame of a ring buffer record as the agent keys it: an outer VLAN
/// tag that the kernel held in metadata goes back in front of the ethertype.
pub fn upcall_frame(hdr: &UpcallHdr, data: &[u8]) -> Vec<u8> {
    let len = (hdr.len as usize).min(data.len());
    let data = &data[..len];
    if !hdr.vlan_present || len < 12 {
        return data.to_vec();
    }
    let mut f = Vec::with_capacity(len + 4);
    f.extend_from_slice(&data[..12]);
    f.extend_from_slice(&hdr.vlan_proto.to_be_bytes());
    f.extend_from_slice(&hdr.vlan_tci.to_be_bytes());
    f.extend_from_slice(&data[12..]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::udp_frame;

    /// An empty UDP datagram from 10.0.0.1:1 to 10.0.0.2:2.
    fn udp_1_to_2() -> Vec<u8> {
        udp_frame(
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1,
            2,
            b"",
        )
    }

    #[test]
    fn sizes_match_the_c_header() {
        // struct mdp_key, mdp_act, mdp_act_list, mdp_port, mdp_config,
        // mdp_mask_list, mdp_flow_meta, mdp_upcall, mdp_exact (see bpf/datapath.h;
        // the loader's typed maps check the sizes against the object too).
        assert_eq!((KEY_LEN, ACT_LEN, ACT_LIST_LEN, PORT_LEN, CONFIG_LEN), (64, 20, 328, 24, 20));
        assert_eq!((MASK_LIST_LEN, META_LEN, UPCALL_HDR_LEN, EXACT_LEN), (36, 512, 40, 52));
        // A small record in the spare ring: the ring's header, mdp_upcall,
        // MDP_UPCALL_SMALL (the depth the agent lends is counted in these).
        assert_eq!(crate::limit::SPARE_RECORD_BYTES, 8 + UPCALL_HDR_LEN as u64 + 2048);
        // struct mdp_nat_key, mdp_nat_val, mdp_recirc (datapath.c asserts
        // the same sizes when it compiles).
        assert_eq!((NAT_KEY_LEN, NAT_VAL_LEN, RECIRC_LEN), (32, 16, 20));
        assert_eq!(off::ARP_TPA + 4, KEY_LEN);
    }

    #[test]
    fn rev_nat_layouts() {
        let k = crate::RevNatKey {
            tracker: [7; 16],
            kind: crate::RevNatKind::Dnat,
            proto: 6,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(192, 0, 2, 9),
            src_port: 0x1234,
            dst_port: 80,
        };
        let b = encode_nat_key(&k);
        // Network order, as the programs copy them from the packet's key.
        assert_eq!(&b[16..30], &[10, 0, 0, 1, 192, 0, 2, 9, 0x12, 0x34, 0, 80, 6, 1]);
        assert_eq!(&b[30..], &[0, 0]);
        assert_eq!(decode_nat_key(&b), Some(k));
        let v = NatVal {
            ip: Ipv4Addr::new(1, 2, 3, 4),
            port: 8080,
            local: true,
            tcp_flags: 0x11,
            used_ns: 99,
        };
        let vb = encode_nat_val(&v);
        assert_eq!(&vb[..8], &[1, 2, 3, 4, 0x1f, 0x90, 1, 0x11]);
        assert_eq!(decode_nat_val(&vb), v);
        let r = encode_recirc(crate::RevNatKind::Dnat, &[3; 16]);
        assert_eq!(&r[16..], &[1, 1, 0, 0]);
        assert_eq!(decode_recirc(&r), Some((crate::RevNatKind::Dnat, [3; 16])));
        assert_eq!(decode_recirc(&[0; RECIRC_LEN]), None);
    }

    #[test]
    fn nat_and_conntrack_keys_lay_out_a_tuple_alike_and_decode_back() {
        let ct = crate::CtKey {
            tracker: [9; 16],
            proto: 17,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(192, 0, 2, 7),
            src_port: 4000,
            dst_port: 53,
        };
        let nat = crate::RevNatKey {
            tracker: ct.tracker,
            kind: crate::RevNatKind::Dnat,
            proto: ct.proto,
            src: ct.src,
            dst: ct.dst,
            src_port: ct.src_port,
            dst_port: ct.dst_port,
        };
        let (c, n) = (encode_ct_key(&ct), encode_nat_key(&nat));
        assert_eq!(c[..29], n[..29], "the same tuple at the same offsets");
        assert_eq!((c[29], n[29]), (0, 1), "the NAT kind after it");
        assert_eq!(&c[24..26], &4000u16.to_be_bytes(), "ports as on the wire");
        assert_eq!(decode_ct_key(&c), ct);
        assert_eq!(decode_nat_key(&n), Some(nat));
    }

    #[test]
    fn split_flows_offload_under_a_recirculation_in_port() {
        let f = udp_1_to_2();
        let mut m = bridge_mask();
        m.mark(FieldId::EthType);
        let k = FlowKey::extract(&f, InPort::Port(1)).expect("parse");
        let first = [Action::RevNatRecirc(5)];
        assert!(offload(&k, &m, &first).is_some());
        assert!(offload(&k, &m, &[Action::RevNatRecirc(crate::RECIRC_MAX)]).is_none());
        let second = [Action::SetTtl(9), Action::Output(2)];
        let k2 = FlowKey { in_port: InPort::Port(IN_RECIRC + 5), ..k };
        let (kb, mb) = offload(&k2, &m, &second).expect("a recirculation's flow");
        let fk = flow_map_key(&kb, &mb, 3);
        assert_eq!(decode_flow_key(&fk).in_port, InPort::Port(IN_RECIRC + 5));
        let untracked = IN_RECIRC + crate::RECIRC_UNTRACKED + crate::RECIRC_MAX - 1;
        let k3 = FlowKey { in_port: InPort::Port(untracked), ..k };
        assert!(offload(&k3, &m, &second).is_some(), "the untracked in-ports too");
        let past = FlowKey { in_port: InPort::Port(untracked + 1), ..k };
        assert!(offload(&past, &m, &second).is_none());
        let b = encode_actions(&first, 0).expect("encodable");
        assert_eq!(decode_actions(&b).expect("decodes").as_slice(), &first);
    }

    fn bridge_mask() -> FlowMask {
        let mut m = FlowMask::empty();
        m.mark(FieldId::InPort);
        m.mark(FieldId::EthDst);
        m
    }

    #[test]
    fn masks_round_trip() {
        let mut router = FlowMask::empty();
        router.mark(FieldId::InPort);
        router.mark_prefix(FieldId::Ipv4Dst, 24);
        router.mark(FieldId::L4Dst);
        router.mark(FieldId::VlanPcp);
        router.mark(FieldId::TcpFlags);
        let mut all = FlowMask::empty();
        for f in FieldId::ALL {
            if !matches!(f, FieldId::Ipv6Src | FieldId::Ipv6Dst) {
                all.mark(f);
            }
        }
        for m in [bridge_mask(), router, all, FlowMask::empty()] {
            let b = encode_mask(&m).expect("encodable");
            assert_eq!(decode_mask(&b), m);
        }
        let mut v6 = FlowMask::empty();
        v6.mark_prefix(FieldId::Ipv6Dst, 64);
        assert!(encode_mask(&v6).is_none());
    }

    #[test]
    fn masked_kernel_keys_agree_with_flow_masks() {
        let f = udp_frame(
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(10, 1, 2, 3),
            Ipv4Addr::new(10, 9, 8, 7),
            1234,
            53,
            b"x",
        );
        let k = FlowKey::extract(&f, InPort::Port(7)).expect("parse");
        let mut m = bridge_mask();
        m.mark_prefix(FieldId::Ipv4Dst, 16);
        m.mark(FieldId::L4Dst);
        let km = encode_mask(&m).expect("mask");
        let fk = flow_map_key(&encode_key(&k), &km, 5);
        // The masked key decodes to FlowMask::apply's result.
        assert_eq!(&decode_flow_key(&fk), m.apply(&k).key());
        // Another packet of the same megaflow gives the same map key.
        let mut k2 = k;
        k2.l4_src = 999;
        k2.ipv4_dst = Ipv4Addr::new(10, 9, 200, 1);
        assert_eq!(flow_map_key(&encode_key(&k2), &km, 5), fk);
        k2.l4_dst = 54;
        assert_ne!(flow_map_key(&encode_key(&k2), &km, 5), fk);
        assert_ne!(flow_map_key(&encode_key(&k), &km, 6), fk, "mask index is part of the key");
    }

    #[test]
    fn action_lists_round_trip() {
        let acts: Actions = [
            Action::SetEthSrc(MacAddr([2, 0, 0, 0, 0, 9])),
            Action::SetIpv4Dst(Ipv4Addr::new(192, 0, 2, 1)),
            Action::SetTtl(63),
            Action::SetL4Src(4000),
            Action::PushVlan { vid: 100, pcp: 5 },
            Action::Output(3),
            Action::PopVlan,
            Action::Tunnel { dst: Ipv4Addr::new(198, 18, 0, 2), key: 0x42 },
            Action::SetTtl(1),
        ]
        .into_iter()
        .collect();
        let b = encode_actions(&acts, 7).expect("encodable");
        assert_eq!(act_list_gen(&b), 7);
        let back = decode_actions(&b).expect("decodes");
        assert_eq!(back.as_slice(), &acts.as_slice()[..8], "the trailing rewrite is dropped");
        let drop = encode_actions(&[Action::SetTtl(1)], 0).expect("a drop list");
        assert_eq!(u16::from_ne_bytes([drop[2], drop[3]]), u16::MAX);
        let up = [Action::Userspace(midonet_flow::UserspaceReason::Simulate)];
        assert!(encode_actions(&up, 0).is_none());
        let flood: Vec<Action> = (1..=17).map(Action::Output).collect();
        assert!(encode_actions(&flood, 0).is_none(), "more than MAX_ACTS");
    }

    #[test]
    fn offload_rules() {
        let f = udp_1_to_2();
        let k = FlowKey::extract(&f, InPort::Port(1)).expect("parse");
        let out = [Action::Output(2)];
        assert!(offload(&k, &bridge_mask(), &out).is_some());
        // A TTL rewrite needs the mask to pin IPv4.
        let routed = [Action::SetTtl(63), Action::Output(2)];
        assert!(offload(&k, &bridge_mask(), &routed).is_none());
        let mut m = bridge_mask();
        m.mark(FieldId::EthType);
        assert!(offload(&k, &m, &routed).is_some());
        // L4 fields of an IPv6 flow are not in the kernel key.
        let k6 = FlowKey { ethertype: 0x86dd, ip_proto: 6, ..k };
        let mut m6 = bridge_mask();
        m6.mark(FieldId::IpProto);
        assert!(offload(&k6, &m6, &out).is_none());
        assert!(offload(&k6, &bridge_mask(), &out).is_some(), "L2 flows carry IPv6 too");
        assert!(executable(&f, &routed));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!executable(&arp, &routed));
        assert!(executable(&arp, &out));
    }

    #[test]
    fn upcall_frames_get_their_tag_back() {
        let mut rec = vec![0u8; UPCALL_HDR_LEN];
        rec[0..4].copy_from_slice(&1u32.to_ne_bytes());
        rec[4..8].copy_from_slice(&(IN_TUNNEL | 0x42).to_ne_bytes());
        rec[8..12].copy_from_slice(&16u32.to_ne_bytes());
        rec[16..18].copy_from_slice(&0xa064u16.to_ne_bytes());
        rec[18..20].copy_from_slice(&[0x81, 0x00]);
        rec[20] = 1;
        let data: Vec<u8> = (0u8..16).collect();
        let h = UpcallHdr::parse(&rec).expect("header");
        assert_eq!(h.in_port(), InPort::Tunnel(0x42));
        let f = upcall_frame(&h, &data);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0xa0, 0x64]);
        assert_eq!(&f[16..], &data[12..]);
    }

    #[test]
    fn meta_round_trip() {
        let tags: Vec<u64> = (0..10).collect();
        assert_eq!(
            decode_meta(&encode_meta(500, &tags)),
            FlowMeta { idle_ms: 500, tags: Some(tags) }
        );
        let many: Vec<u64> = (0..100).collect();
        assert_eq!(decode_meta(&encode_meta(1, &many)).tags, None);
    }
}
