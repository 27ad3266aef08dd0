//! Frames the simulation generates: ARP replies and requests, ICMP echo
//! replies and ICMP errors. (`wire` has no builders for these yet; they live
//! here until it does.)
//!
//! ```text
//!  ARP:      Ethernet(14) | htype=1 ptype=0x0800 hlen=6 plen=4 op sha spa tha tpa (28)
//!  ICMPv4:   Ethernet(14) | IPv4(20, no options, DF clear) | type code csum rest(4) | data
//!  error data (RFC 792, RFC 1812 §4.3.2.3): the offending IP header + first 8 bytes
//! ```
//!
//! Inputs are a key and the original frame; a frame that does not parse
//! (e.g. a trace request with no payload) falls back to what the key says.

use std::net::Ipv4Addr;

use crate::{FlowKey, MacAddr};

const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;

/// RFC 1071 checksum over `data`.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn eth(out: &mut Vec<u8>, src: MacAddr, dst: MacAddr, ethertype: u16) {
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// An Ethernet/IPv4 ARP frame.
pub(crate) fn arp(op: u16, eth_dst: MacAddr, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    eth(&mut f, sha, eth_dst, ETH_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha.0);
    f.extend_from_slice(&tpa.octets());
    f
}

/// Offset of the L3 header, and the ethertype, of a frame.
fn l3(frame: &[u8]) -> Option<(usize, u16)> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if et == 0x8100 {
        Some((18, u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?])))
    } else {
        Some((14, et))
    }
}

/// The IPv4 header and the rest of the datagram in the frame, if it is a
/// well-formed IPv4 packet.
fn ipv4_parts(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let (off, et) = l3(frame)?;
    if et != ETH_IPV4 {
        return None;
    }
    let ip = frame.get(off..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if *ip.first()? >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    Some((&ip[..ihl], &ip[ihl..total]))
}

/// An IPv4 packet carrying an ICMP message (`icmp` with a zero checksum
/// field; it is filled here).
fn ipv4_icmp(eth_src: MacAddr, eth_dst: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let cs = checksum(&icmp);
    icmp[2..4].copy_from_slice(&cs.to_be_bytes());
    let mut f = Vec::with_capacity(34 + icmp.len());
    eth(&mut f, eth_src, eth_dst, ETH_IPV4);
    let total = (20 + icmp.len()) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[8] = 64;
    h[9] = 1;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let cs = checksum(&h);
    h[10..12].copy_from_slice(&cs.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&icmp);
    f
}

/// An echo reply to the request in `frame` (keyed `req`), from `src`.
pub(crate) fn icmp_echo_reply(
    eth_src: MacAddr,
    eth_dst: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    req: &FlowKey,
    frame: &[u8],
) -> Vec<u8> {
    let icmp = match ipv4_parts(frame) {
        Some((_, body)) if body.len() >= 8 && body[0] == 8 => {
            let mut v = body.to_vec();
            v[0] = 0;
            v[1] = 0;
            v[2] = 0;
            v[3] = 0;
            v
        }
        _ => {
            let mut v = vec![0u8; 8];
            v[4..6].copy_from_slice(&req.icmp_id.to_be_bytes());
            v
        }
    };
    ipv4_icmp(eth_src, eth_dst, src, dst, icmp)
}

/// An ICMP error (`icmp_type`/`code`; `mtu` goes in bytes 6–7 for
/// fragmentation-needed) about the packet keyed `inner` (the match as it
/// entered the router) whose bytes are `frame`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn icmp_error(
    eth_src: MacAddr,
    eth_dst: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    mtu: u16,
    inner: &FlowKey,
    frame: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    match ipv4_parts(frame) {
        Some((hdr, body)) => {
            // The header as it was when the packet reached the router: an
            // earlier device may have rewritten addresses or TTL.
            let mut h = hdr.to_vec();
            h[8] = inner.ip_ttl;
            h[12..16].copy_from_slice(&inner.ipv4_src.octets());
            h[16..20].copy_from_slice(&inner.ipv4_dst.octets());
            h[10] = 0;
            h[11] = 0;
            let cs = checksum(&h);
            h[10..12].copy_from_slice(&cs.to_be_bytes());
            icmp.extend_from_slice(&h);
            icmp.extend_from_slice(&body[..body.len().min(8)]);
        }
        None => {
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[1] = inner.ip_tos;
            h[2..4].copy_from_slice(&28u16.to_be_bytes());
            h[8] = inner.ip_ttl;
            h[9] = inner.ip_proto;
            h[12..16].copy_from_slice(&inner.ipv4_src.octets());
            h[16..20].copy_from_slice(&inner.ipv4_dst.octets());
            let cs = checksum(&h);
            h[10..12].copy_from_slice(&cs.to_be_bytes());
            icmp.extend_from_slice(&h);
            let mut l4 = [0u8; 8];
            if inner.has_ports() {
                l4[0..2].copy_from_slice(&inner.l4_src.to_be_bytes());
                l4[2..4].copy_from_slice(&inner.l4_dst.to_be_bytes());
            } else if inner.is_icmp() {
                l4[0] = inner.icmp_type;
                l4[1] = inner.icmp_code;
                l4[4..6].copy_from_slice(&inner.icmp_id.to_be_bytes());
            }
            icmp.extend_from_slice(&l4);
        }
    }
    ipv4_icmp(eth_src, eth_dst, src, dst, icmp)
}

/// The (src, dst) addresses of the IPv4 header embedded in an ICMPv4 error
/// carried by `frame`, if there is one.
pub(crate) fn icmp_error_inner(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (hdr, body) = ipv4_parts(frame)?;
    if hdr[9] != 1 || !matches!(body.first()?, 3 | 4 | 5 | 11 | 12) {
        return None;
    }
    let inner = body.get(8..28)?;
    if inner[0] >> 4 != 4 {
        return None;
    }
    let a = |o: usize| Ipv4Addr::new(inner[o], inner[o + 1], inner[o + 2], inner[o + 3]);
    Some((a(12), a(16)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InPort;

    fn key(frame: &[u8]) -> FlowKey {
        FlowKey::extract(frame, InPort::Port(1)).expect("generated frames parse")
    }

    #[test]
    fn arp_reply_round_trips_through_extract() {
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        let f = arp(2, MacAddr([2, 0, 0, 0, 0, 2]), m, Ipv4Addr::new(10, 0, 0, 1), MacAddr([2, 0, 0, 0, 0, 2]), Ipv4Addr::new(10, 0, 0, 2));
        let k = key(&f);
        assert_eq!((k.arp_op, k.arp_sha, k.arp_spa), (2, m, Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(f.len(), 42);
    }

    #[test]
    fn icmp_error_embeds_inner_header_and_checksums_verify() {
        let inner: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=8.8.8.8,ip.ttl=1,udp.src=1000,udp.dst=53"
            .parse()
            .expect("key");
        let mut orig = Vec::new();
        inner.to_frame(b"hello", &mut orig);
        let f = icmp_error(MacAddr([2, 0, 0, 0, 0, 9]), inner.eth_src, Ipv4Addr::new(10, 0, 0, 1), inner.ipv4_src, 11, 0, 0, &inner, &orig);
        let k = key(&f);
        assert_eq!((k.icmp_type, k.icmp_code, k.ipv4_dst), (11, 0, inner.ipv4_src));
        assert_eq!(checksum(&f[14..34]), 0, "ip header checksum");
        assert_eq!(checksum(&f[34..]), 0, "icmp checksum");
        assert_eq!(icmp_error_inner(&f), Some((inner.ipv4_src, inner.ipv4_dst)));
    }

    #[test]
    fn echo_reply_keeps_id_and_payload() {
        let req: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.0.1,icmp4.type=8,icmp4.id=77"
            .parse()
            .expect("key");
        let mut orig = Vec::new();
        req.to_frame(b"ping!", &mut orig);
        let f = icmp_echo_reply(req.eth_dst, req.eth_src, req.ipv4_dst, req.ipv4_src, &req, &orig);
        let k = key(&f);
        assert_eq!((k.icmp_type, k.icmp_id), (0, 77));
        assert!(f.ends_with(b"ping!"));
        assert_eq!(checksum(&f[34..]), 0);
    }
}
