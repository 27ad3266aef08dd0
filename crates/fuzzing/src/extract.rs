//! `extract`: `FlowKey::extract`, the parse every packet from a VM or the
//! tunnel goes through first.
//!
//! ```text
//!  [in_port selector (1)] [frame]
//!    selector bit 7: the frame came from the tunnel (key = low 7 bits)
//! ```
//!
//! What must hold for a frame that keys:
//!
//! * the key is canonical (no field its protocols do not carry is set);
//! * `to_frame` of the key keys back to the key (the frames `midonet trace`
//!   builds mean what the key says), and its text form parses back to it;
//! * where etherparse also finds IPv4 + TCP/UDP, both read the same fields;
//! * rewriting the addresses, ports and TTL in place (`apply_action`, what
//!   the datapath does to these frames) changes exactly those fields.

use std::net::Ipv4Addr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use midonet_flow::{apply_action, Action, FlowKey, FragType, InPort};

use midonet_wire::checksum::{checksum, finish, pseudo_header_v4, sum};

use crate::check::be16;

pub fn extract(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else { return };
    let in_port = if sel & 0x80 != 0 {
        InPort::Tunnel(u32::from(sel & 0x7f))
    } else {
        InPort::Port(u32::from(sel))
    };
    let key = FlowKey::extract(frame, in_port);
    differential(frame, key.as_ref().ok());
    let Ok(key) = key else { return };
    assert_eq!(key.canonical(), key, "extract gives canonical keys: {frame:02x?}");

    let mut rebuilt = Vec::new();
    key.to_frame(b"", &mut rebuilt);
    assert_eq!(FlowKey::extract(&rebuilt, in_port), Ok(key), "to_frame re-keys: {key}");

    let text = key.to_string();
    assert_eq!(text.parse::<FlowKey>(), Ok(key), "text form parses back: {text}");

    rewrite(frame, &key);
}

/// Compare with etherparse where both parse an IPv4 TCP/UDP packet behind
/// at most one 802.1Q tag (etherparse reads more tags and link extensions
/// than the key models; there the two legitimately differ).
fn differential(frame: &[u8], ours: Option<&FlowKey>) {
    let ipv4 = match be16(frame, 12) {
        Some(0x0800) => true,
        Some(0x8100) => be16(frame, 16) == Some(0x0800),
        _ => false,
    };
    if !ipv4 {
        return;
    }
    let Ok(s) = SlicedPacket::from_ethernet(frame) else { return };
    let Some(NetSlice::Ipv4(ip)) = &s.net else { return };
    let (src, dst) = match &s.transport {
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        _ => return,
    };
    let k = ours.unwrap_or_else(|| panic!("etherparse reads ipv4/l4, extract fails: {frame:02x?}"));
    let h = ip.header();
    assert_eq!(k.ipv4_src, Ipv4Addr::from(h.source()), "ipv4 src");
    assert_eq!(k.ipv4_dst, Ipv4Addr::from(h.destination()), "ipv4 dst");
    assert_eq!(k.ip_proto, h.protocol().0, "ip proto");
    assert_eq!(k.ip_ttl, h.ttl(), "ttl");
    if k.ip_frag != FragType::Later {
        assert_eq!((k.l4_src, k.l4_dst), (src, dst), "ports: {frame:02x?}");
    }
}

/// Rewrite addresses, TTL and (where there are ports) ports in place and
/// check that the frame then keys to exactly the rewritten key.
fn rewrite(frame: &[u8], key: &FlowKey) {
    if !key.is_ipv4() {
        return;
    }
    let src = Ipv4Addr::new(198, 18, 0, 1);
    let mut actions = vec![Action::SetIpv4Src(src), Action::SetTtl(key.ip_ttl.wrapping_sub(1))];
    let mut want = FlowKey { ipv4_src: src, ip_ttl: key.ip_ttl.wrapping_sub(1), ..*key };
    // SCTP ports are not rewritable (CRC32c, see flow::rewrite).
    if key.has_ports() && key.ip_proto != midonet_flow::key::IP_PROTO_SCTP {
        actions.push(Action::SetL4Dst(key.l4_dst ^ 0x5555));
        want.l4_dst = key.l4_dst ^ 0x5555;
    }
    let mut f = frame.to_vec();
    for a in &actions {
        apply_action(&mut f, a).unwrap_or_else(|e| panic!("{a:?} on a keyed frame: {e}"));
    }
    assert_eq!(f.len(), frame.len(), "rewrites keep the size");
    assert_eq!(FlowKey::extract(&f, key.in_port), Ok(want), "rewritten fields land");
    let before = checksums_ok(frame, key);
    let after = checksums_ok(&f, &want);
    assert!(!before.0 || after.0, "a valid ipv4 header checksum stays valid: {frame:02x?}");
    assert!(!before.1 || after.1, "a valid l4 checksum stays valid: {frame:02x?}");
}

/// Whether the IPv4 header checksum and (for an unfragmented TCP/UDP
/// datagram with a checksum) the L4 checksum verify.
fn checksums_ok(frame: &[u8], key: &FlowKey) -> (bool, bool) {
    let l3 = if key.vlan_vid.is_some() { 18 } else { 14 };
    let ip = &frame[l3..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2).unwrap_or(0));
    let header = checksum(&ip[..ihl]) == 0;
    let l4 = &ip[ihl..total];
    let proto = key.ip_proto;
    let whole = key.ip_frag == FragType::No && matches!(proto, 6 | 17);
    if !whole || (proto == 17 && be16(l4, 6) == Some(0)) {
        return (header, false);
    }
    let Ok(len) = u16::try_from(l4.len()) else { return (header, false) };
    let s = sum(pseudo_header_v4(key.ipv4_src, key.ipv4_dst, proto, len), l4);
    (header, finish(s) == 0)
}
