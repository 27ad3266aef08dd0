//! Frames the simulation generates: ARP replies and requests, ICMP echo
//! replies and ICMP errors, built with `midonet-wire`'s builders.
//!
//! What this module adds to `wire` is the simulation's view of addresses:
//!
//! * A router-generated packet goes through the router's outbound chain
//!   before it leaves ([`crate::engine`]), so its final Ethernet and IPv4
//!   addresses are those of the key the chain left (`k`), not necessarily
//!   the swapped addresses of the request. [`readdress`] writes them into
//!   the frame `wire` built, untagged and with TOS 0 (MidoNet's generated
//!   packets carry TOS 0; `wire` marks errors 0xc0 and echoes the
//!   request's TOS).
//! * An ICMP error quotes the offending header *as it was when the packet
//!   reached the router*: an earlier device may have rewritten addresses
//!   or TTL, which only the key (`inner`) records, so the quoted header is
//!   patched from it.
//! * The input frame may be empty (a trace request): the packet is then
//!   rebuilt from the key.
//!
//! ```text
//!  ARP:      Ethernet(14) | htype=1 ptype=0x0800 hlen=6 plen=4 op sha spa tha tpa (28)
//!  ICMPv4:   Ethernet(14) | IPv4(20, no options, DF clear) | type code csum rest(4) | data
//!  error data (RFC 792, RFC 1812 §4.3.2.3): the offending IP header + first 8 bytes
//! ```

use std::net::Ipv4Addr;

use midonet_wire::checksum::set_ipv4_header_checksum;
use midonet_wire::{self as wire, IcmpError};

use crate::{FlowKey, FragType, MacAddr};

const ETH_IPV4: u16 = 0x0800;
/// Offset of the IPv4 header in an untagged frame.
const L3: usize = 14;

/// "`spa` is at `sha`", unicast to the requester (`tha`, `tpa`).
pub(crate) fn arp_reply(sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(wire::arp::ARP_FRAME_SIZE);
    wire::arp_reply(&mut f, sha.0, spa, tha.0, tpa);
    f
}

/// Broadcast "who has `tpa`? tell `spa`" from `sha`.
pub(crate) fn arp_request(sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(wire::arp::ARP_FRAME_SIZE);
    wire::arp_request(&mut f, sha.0, spa, tpa);
    f
}

/// The IPv4 datagram in `frame` (from its header, cut to its total
/// length) and its header length, if it is a well-formed one.
fn ipv4_datagram(frame: &[u8]) -> Option<(&[u8], usize)> {
    let (et, off) = wire::l3_offset(frame).ok()?;
    if et != ETH_IPV4 {
        return None;
    }
    let ip = frame.get(off..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if *ip.first()? >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    Some((&ip[..total], ihl))
}

/// Give a generated IPv4 frame the final addresses of `k`, no VLAN tag and
/// TOS 0 (see the module docs). The ICMP checksum does not cover the IP
/// header, so only the header checksum changes.
fn readdress(f: &mut Vec<u8>, k: &FlowKey) {
    let _ = wire::vlan_pop(f);
    if f.len() < L3 + 20 {
        return;
    }
    f[0..6].copy_from_slice(&k.eth_dst.0);
    f[6..12].copy_from_slice(&k.eth_src.0);
    f[L3 + 1] = 0;
    f[L3 + 12..L3 + 16].copy_from_slice(&k.ipv4_src.octets());
    f[L3 + 16..L3 + 20].copy_from_slice(&k.ipv4_dst.octets());
    set_ipv4_header_checksum(&mut f[L3..L3 + 20]);
}

/// The echo reply, addressed as `k`, to the request keyed `req` whose bytes
/// are `frame` (identifier, sequence and data echoed). The first fragment
/// of a request is answered with the data it has, as the simulation always
/// did (`wire` declines fragments, so the copy it sees has MF cleared). A
/// frame that is not an echo request at all (empty: a trace) gets the
/// reply to the request the key describes: identifier only, no data.
pub(crate) fn icmp_echo_reply(k: &FlowKey, req: &FlowKey, frame: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let whole = first_fragment_as_whole(frame);
    if wire::icmpv4_echo_reply(whole.as_deref().unwrap_or(frame), &mut f).is_err() {
        f.clear();
        let mut synth = Vec::new();
        FlowKey { ip_frag: FragType::No, vlan_vid: None, ..*req }.to_frame(&[], &mut synth);
        // The key is an echo request (the caller checked), so this builds.
        let _ = wire::icmpv4_echo_reply(&synth, &mut f);
    }
    readdress(&mut f, k);
    f
}

/// A copy of `frame` with the more-fragments flag cleared, if it is the
/// first fragment of an IPv4 datagram.
fn first_fragment_as_whole(frame: &[u8]) -> Option<Vec<u8>> {
    let (et, off) = wire::l3_offset(frame).ok()?;
    let flags = frame.get(off + 6..off + 8)?;
    let (mf, offset) = (flags[0] & 0x20 != 0, u16::from_be_bytes([flags[0], flags[1]]) & 0x1fff);
    if et != ETH_IPV4 || !mf || offset != 0 {
        return None;
    }
    let mut c = frame.to_vec();
    c[off + 6] &= !0x20;
    Some(c)
}

/// An ICMP error of `kind`, addressed as `k`, about the packet keyed
/// `inner` (the match as it entered the router) whose bytes are `frame`.
pub(crate) fn icmp_error(k: &FlowKey, kind: IcmpError, inner: &FlowKey, frame: &[u8]) -> Vec<u8> {
    let original = match ipv4_datagram(frame) {
        Some((dgram, ihl)) => {
            // The header as it was when the packet reached the router.
            let mut d = dgram.to_vec();
            d[8] = inner.ip_ttl;
            d[12..16].copy_from_slice(&inner.ipv4_src.octets());
            d[16..20].copy_from_slice(&inner.ipv4_dst.octets());
            set_ipv4_header_checksum(&mut d[..ihl]);
            d
        }
        None => datagram_from_key(inner),
    };
    let mut f = Vec::new();
    if wire::icmpv4_error(&mut f, kind, k.eth_src.0, k.eth_dst.0, k.ipv4_src, &original).is_err() {
        return Vec::new();
    }
    readdress(&mut f, k);
    f
}

/// The first 28 bytes of the datagram `inner` describes: a 20-byte header
/// (total length 28) and the 8 L4 bytes the key knows (ports, or ICMP type,
/// code and identifier).
fn datagram_from_key(inner: &FlowKey) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x45;
    d[1] = inner.ip_tos;
    d[2..4].copy_from_slice(&28u16.to_be_bytes());
    d[8] = inner.ip_ttl;
    d[9] = inner.ip_proto;
    d[12..16].copy_from_slice(&inner.ipv4_src.octets());
    d[16..20].copy_from_slice(&inner.ipv4_dst.octets());
    set_ipv4_header_checksum(&mut d[..20]);
    if inner.has_ports() {
        d[20..22].copy_from_slice(&inner.l4_src.to_be_bytes());
        d[22..24].copy_from_slice(&inner.l4_dst.to_be_bytes());
    } else if inner.is_icmp() {
        d[20] = inner.icmp_type;
        d[21] = inner.icmp_code;
        d[24..26].copy_from_slice(&inner.icmp_id.to_be_bytes());
    }
    d
}

/// The (src, dst) addresses of the IPv4 header embedded in an ICMPv4 error
/// carried by `frame`, if there is one.
pub(crate) fn icmp_error_inner(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (dgram, ihl) = ipv4_datagram(frame)?;
    let body = &dgram[ihl..];
    if dgram[9] != 1 || !matches!(body.first()?, 3 | 4 | 5 | 11 | 12) {
        return None;
    }
    let inner = body.get(8..28)?;
    if inner[0] >> 4 != 4 {
        return None;
    }
    let a = |o: usize| Ipv4Addr::new(inner[o], inner[o + 1], inner[o + 2], inner[o + 3]);
    Some((a(12), a(16)))
}

/// The connection of the datagram embedded in an ICMP error, as NAT sees
/// it: addresses, protocol, and ports (TCP, UDP) or the echo identifier
/// in both port fields (ICMP echo).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Embedded {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// ICMP error types whose embedded header NAT reverse-translates
/// (destination unreachable, time exceeded, parameter problem: MidoNet's
/// set).
pub(crate) fn is_nat_icmp_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 11 | 12)
}

/// Where things are in an ICMP error frame (offsets into the frame).
struct ErrorLayout {
    /// The ICMP message.
    icmp: usize,
    /// Its end (the outer datagram's total length; padding excluded).
    end: usize,
    /// The embedded IP header.
    inner: usize,
    /// The embedded IP header's length.
    inner_ihl: usize,
}

/// The layout of `frame` if it carries an ICMP error of a type NAT
/// translates, embedding an IPv4 header and at least the 8 bytes after it.
fn embedded_offsets(frame: &[u8]) -> Option<ErrorLayout> {
    let (et, off) = wire::l3_offset(frame).ok()?;
    let (dgram, ihl) = ipv4_datagram(frame)?;
    let body = &dgram[ihl..];
    if et != ETH_IPV4 || dgram[9] != 1 || !is_nat_icmp_error(*body.first()?) {
        return None;
    }
    let inner = body.get(8..)?;
    let iihl = usize::from(*inner.first()? & 0x0f) * 4;
    if *inner.first()? >> 4 != 4 || iihl < 20 || inner.len() < iihl + 8 {
        return None;
    }
    Some(ErrorLayout {
        icmp: off + ihl,
        end: off + dgram.len(),
        inner: off + ihl + 8,
        inner_ihl: iihl,
    })
}

/// The embedded connection of the ICMP error in `frame` (see
/// [`Embedded`]), if NAT can translate it.
pub(crate) fn icmp_error_embedded(frame: &[u8]) -> Option<Embedded> {
    let l = embedded_offsets(frame)?;
    let (i, ihl) = (l.inner, l.inner_ihl);
    let h = &frame[i..l.end];
    let a = |o: usize| Ipv4Addr::new(h[o], h[o + 1], h[o + 2], h[o + 3]);
    let be = |o: usize| u16::from_be_bytes([h[o], h[o + 1]]);
    let proto = h[9];
    let l4 = ihl;
    let (src_port, dst_port) = match proto {
        6 | 17 => (be(l4), be(l4 + 2)),
        1 if matches!(h[l4], 0 | 8) => (be(l4 + 4), be(l4 + 4)),
        _ => return None,
    };
    Some(Embedded { src: a(12), dst: a(16), proto, src_port, dst_port })
}

/// A copy of `frame` (an ICMP error, see [`icmp_error_embedded`]) whose
/// embedded datagram says `to` instead: addresses, ports or echo id, the
/// embedded IP header checksum recomputed, the embedded UDP or ICMP
/// checksum (when the quote holds it) updated incrementally, and the
/// error's own ICMP checksum recomputed.
pub(crate) fn rewrite_icmp_error(frame: &[u8], to: &Embedded) -> Option<Vec<u8>> {
    use midonet_wire::checksum::{checksum, update16, update32};
    let was = icmp_error_embedded(frame)?;
    let l = embedded_offsets(frame)?;
    let (icmp, i, ihl) = (l.icmp, l.inner, l.inner_ihl);
    let mut f = frame.to_vec();
    f[i + 12..i + 16].copy_from_slice(&to.src.octets());
    f[i + 16..i + 20].copy_from_slice(&to.dst.octets());
    set_ipv4_header_checksum(&mut f[i..i + ihl]);
    let l4 = i + ihl;
    let quoted = l.end - l4;
    let addr = |c: u16| {
        let c = update32(c, u32::from(was.src), u32::from(to.src));
        update32(c, u32::from(was.dst), u32::from(to.dst))
    };
    match was.proto {
        6 | 17 => {
            f[l4..l4 + 2].copy_from_slice(&to.src_port.to_be_bytes());
            f[l4 + 2..l4 + 4].copy_from_slice(&to.dst_port.to_be_bytes());
            // UDP's checksum is in the 8 quoted bytes, TCP's only if more
            // was quoted; 0 is "no checksum" for UDP.
            let at = if was.proto == 17 { l4 + 6 } else { l4 + 16 };
            if at + 2 - l4 <= quoted {
                let c = u16::from_be_bytes([f[at], f[at + 1]]);
                if c != 0 || was.proto == 6 {
                    let c = addr(c);
                    let c = update16(c, was.src_port, to.src_port);
                    let c = update16(c, was.dst_port, to.dst_port);
                    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
        _ => {
            // ICMP echo: one identifier (no pseudo-header in its checksum).
            f[l4 + 4..l4 + 6].copy_from_slice(&to.src_port.to_be_bytes());
            let c = u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]);
            let c = update16(c, was.src_port, to.src_port);
            f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        }
    }
    // The error's checksum covers the whole message, quote included.
    f[icmp + 2..icmp + 4].fill(0);
    let c = checksum(&f[icmp..l.end]);
    f[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InPort;
    use midonet_wire::checksum::checksum;

    fn key(frame: &[u8]) -> FlowKey {
        FlowKey::extract(frame, InPort::Port(1)).expect("generated frames parse")
    }

    #[test]
    fn arp_reply_round_trips_through_extract() {
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        let f = arp_reply(
            m,
            Ipv4Addr::new(10, 0, 0, 1),
            MacAddr([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        let k = key(&f);
        assert_eq!((k.arp_op, k.arp_sha, k.arp_spa), (2, m, Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(k.eth_dst, MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.len(), 42);
    }

    #[test]
    fn icmp_error_embeds_inner_header_and_checksums_verify() {
        let inner: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=8.8.8.8,ip.ttl=1,udp.src=1000,udp.dst=53"
            .parse()
            .expect("key");
        let mut orig = Vec::new();
        inner.to_frame(b"hello", &mut orig);
        let out = FlowKey {
            eth_src: MacAddr([2, 0, 0, 0, 0, 9]),
            eth_dst: inner.eth_src,
            ipv4_src: Ipv4Addr::new(10, 0, 0, 1),
            ipv4_dst: inner.ipv4_src,
            ..FlowKey::default()
        };
        let f = icmp_error(&out, IcmpError::TtlExceeded, &inner, &orig);
        let k = key(&f);
        assert_eq!((k.icmp_type, k.icmp_code, k.ipv4_dst, k.ip_tos), (11, 0, inner.ipv4_src, 0));
        assert_eq!(checksum(&f[14..34]), 0, "ip header checksum");
        assert_eq!(checksum(&f[34..]), 0, "icmp checksum");
        assert_eq!(icmp_error_inner(&f), Some((inner.ipv4_src, inner.ipv4_dst)));
        assert_eq!(f.len(), 14 + 20 + 8 + 28, "header + 8 bytes quoted");
    }

    #[test]
    fn icmp_error_quotes_the_header_as_it_entered_the_router() {
        let inner: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=8.8.8.8,ip.ttl=1,udp.src=1000,udp.dst=53"
            .parse()
            .expect("key");
        // The frame still has the addresses before an earlier DNAT.
        let before = FlowKey { ipv4_dst: Ipv4Addr::new(192, 0, 2, 80), ip_ttl: 9, ..inner };
        let mut orig = Vec::new();
        before.to_frame(b"hello", &mut orig);
        let f = icmp_error(
            &FlowKey { ipv4_dst: inner.ipv4_src, ..FlowKey::default() },
            IcmpError::NetUnreachable,
            &inner,
            &orig,
        );
        let quoted = &f[42..62];
        assert_eq!(quoted[8], 1, "ttl from the key");
        assert_eq!(&quoted[16..20], &[8, 8, 8, 8]);
        assert_eq!(checksum(quoted), 0, "quoted header checksum refreshed");
        // No frame: rebuilt from the key.
        let g = icmp_error(&FlowKey::default(), IcmpError::NetUnreachable, &inner, &[]);
        assert_eq!(icmp_error_inner(&g), Some((inner.ipv4_src, inner.ipv4_dst)));
        assert_eq!(&g[62..66], &[0x03, 0xe8, 0, 53], "ports from the key");
    }

    #[test]
    fn echo_reply_keeps_id_and_payload() {
        let req: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.0.1,icmp4.type=8,icmp4.id=77"
            .parse()
            .expect("key");
        let mut orig = Vec::new();
        req.to_frame(b"ping!", &mut orig);
        let out = FlowKey {
            eth_src: req.eth_dst,
            eth_dst: req.eth_src,
            ipv4_src: req.ipv4_dst,
            ipv4_dst: req.ipv4_src,
            ..req
        };
        let f = icmp_echo_reply(&out, &req, &orig);
        let k = key(&f);
        assert_eq!(
            (k.icmp_type, k.icmp_id, k.ipv4_src, k.eth_dst),
            (0, 77, req.ipv4_dst, req.eth_src)
        );
        assert!(f.ends_with(b"ping!"));
        assert_eq!(checksum(&f[34..]), 0);
        assert_eq!(checksum(&f[14..34]), 0);
        // No frame: the reply to what the key says.
        let g = icmp_echo_reply(&out, &req, &[]);
        assert_eq!((key(&g).icmp_type, key(&g).icmp_id), (0, 77));
        assert_eq!(g.len(), 14 + 20 + 8);
    }

    #[test]
    fn echo_reply_to_a_first_fragment_echoes_what_it_has() {
        let req: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.0.1,ip.frag=first,icmp4.type=8,icmp4.id=9"
            .parse()
            .expect("key");
        let mut orig = Vec::new();
        req.to_frame(b"part", &mut orig);
        let out = FlowKey {
            eth_src: req.eth_dst,
            eth_dst: req.eth_src,
            ipv4_src: req.ipv4_dst,
            ipv4_dst: req.ipv4_src,
            ..req
        };
        let f = icmp_echo_reply(&out, &req, &orig);
        assert!(f.ends_with(b"part"));
        assert_eq!(&f[20..22], &[0, 0], "the reply is not a fragment");
        assert_eq!(checksum(&f[34..]), 0);
    }
}
