//! [`FlowKey::extract`]: parse a frame's headers into a key.
//!
//! Hand-written rather than built on `etherparse::SlicedPacket` because the
//! key needs only a few fixed offsets, must canonicalise absent fields to zero,
//! and must classify fragments the way OVS does; every read goes through
//! `get`, so no input can panic. The parse never allocates.
//!
//! ```text
//!  Ethernet (14) [802.1Q (4)] ─┬─ ARP (28, Ethernet/IPv4 only)
//!                              ├─ IPv4 (IHL*4, options skipped) ─┐
//!                              ├─ IPv6 (40 + extension headers) ─┼─ TCP (≥20) / UDP (8) / SCTP (≥4)
//!                              └─ anything else: L2 fields only  └─ ICMPv4 / ICMPv6 (≥4, echo ≥8)
//! ```
//!
//! Lengths: IPv4 total length bounds the L4 parse (Ethernet padding is
//! ignored); a total length beyond the frame is an error, because such a
//! packet was cut short on the way and forwarding it would forward garbage.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::key::*;

/// Why a frame could not be keyed. Small and `Copy`, so the datapath can count
/// drops per reason (`as_str` is the metric label).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
pub enum ParseError {
    /// Shorter than an Ethernet header.
    #[error("truncated ethernet header")]
    EthTruncated,
    /// An 802.1Q tag without its 4 bytes.
    #[error("truncated vlan tag")]
    VlanTruncated,
    /// ARP shorter than 28 bytes, or not Ethernet/IPv4 ARP.
    #[error("truncated or non-ethernet/ipv4 arp")]
    ArpInvalid,
    /// IPv4 header cut short (including options or the total length).
    #[error("truncated ipv4 packet")]
    Ipv4Truncated,
    /// IPv4 version is not 4, IHL < 5, or total length < header.
    #[error("malformed ipv4 header")]
    Ipv4Malformed,
    /// IPv6 header or an extension header cut short.
    #[error("truncated ipv6 packet")]
    Ipv6Truncated,
    /// IPv6 version nibble is not 6.
    #[error("malformed ipv6 header")]
    Ipv6Malformed,
    /// TCP header (or its data offset) cut short, or data offset < 5.
    #[error("truncated tcp header")]
    TcpTruncated,
    /// UDP header cut short.
    #[error("truncated udp header")]
    UdpTruncated,
    /// SCTP common header cut short.
    #[error("truncated sctp header")]
    SctpTruncated,
    /// ICMP header cut short.
    #[error("truncated icmp header")]
    IcmpTruncated,
}

impl ParseError {
    /// Every variant, for registering per-reason counters up front.
    pub const ALL: [ParseError; 11] = [
        ParseError::EthTruncated,
        ParseError::VlanTruncated,
        ParseError::ArpInvalid,
        ParseError::Ipv4Truncated,
        ParseError::Ipv4Malformed,
        ParseError::Ipv6Truncated,
        ParseError::Ipv6Malformed,
        ParseError::TcpTruncated,
        ParseError::UdpTruncated,
        ParseError::SctpTruncated,
        ParseError::IcmpTruncated,
    ];

    /// A short snake_case label, stable for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::EthTruncated => "eth_truncated",
            ParseError::VlanTruncated => "vlan_truncated",
            ParseError::ArpInvalid => "arp_invalid",
            ParseError::Ipv4Truncated => "ipv4_truncated",
            ParseError::Ipv4Malformed => "ipv4_malformed",
            ParseError::Ipv6Truncated => "ipv6_truncated",
            ParseError::Ipv6Malformed => "ipv6_malformed",
            ParseError::TcpTruncated => "tcp_truncated",
            ParseError::UdpTruncated => "udp_truncated",
            ParseError::SctpTruncated => "sctp_truncated",
            ParseError::IcmpTruncated => "icmp_truncated",
        }
    }
}

/// Byte offsets of the headers in a frame, as found while keying it.
/// Used by the in-place rewriter so it does not parse twice.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Layout {
    /// Start of the L3 header (after Ethernet and any VLAN tag).
    pub l3: usize,
    /// Start of the L4 header, when the packet carries one (not a later fragment).
    pub l4: Option<usize>,
    /// End of the IP packet (total length), to bound L4 checksums.
    pub l3_end: usize,
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

#[inline]
fn mac(b: &[u8], at: usize) -> Option<MacAddr> {
    let s = b.get(at..at + 6)?;
    let mut m = [0u8; 6];
    m.copy_from_slice(s);
    Some(MacAddr(m))
}

#[inline]
fn ip4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let s = b.get(at..at + 4)?;
    Some(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
}

#[inline]
fn ip6(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s = b.get(at..at + 16)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(s);
    Some(Ipv6Addr::from(a))
}

impl FlowKey {
    /// Key a frame that arrived on `in_port`. Never panics, never allocates.
    pub fn extract(frame: &[u8], in_port: InPort) -> Result<FlowKey, ParseError> {
        extract_with_layout(frame, in_port).map(|(k, _)| k)
    }
}

pub(crate) fn extract_with_layout(
    frame: &[u8],
    in_port: InPort,
) -> Result<(FlowKey, Layout), ParseError> {
    let mut k = FlowKey { in_port, ..FlowKey::default() };
    let mut lay = Layout::default();
    k.eth_dst = mac(frame, 0).ok_or(ParseError::EthTruncated)?;
    k.eth_src = mac(frame, 6).ok_or(ParseError::EthTruncated)?;
    let mut ethertype = be16(frame, 12).ok_or(ParseError::EthTruncated)?;
    let mut off = 14;
    if ethertype == ETH_TYPE_VLAN {
        let tci = be16(frame, off).ok_or(ParseError::VlanTruncated)?;
        ethertype = be16(frame, off + 2).ok_or(ParseError::VlanTruncated)?;
        k.vlan_vid = Some(tci & 0x0fff);
        k.vlan_pcp = (tci >> 13) as u8;
        off += 4;
    }
    k.ethertype = ethertype;
    lay.l3 = off;
    lay.l3_end = frame.len();
    match ethertype {
        ETH_TYPE_ARP => extract_arp(frame, off, &mut k)?,
        ETH_TYPE_IPV4 => extract_ipv4(frame, off, &mut k, &mut lay)?,
        ETH_TYPE_IPV6 => extract_ipv6(frame, off, &mut k, &mut lay)?,
        _ => {}
    }
    Ok((k, lay))
}

fn extract_arp(b: &[u8], off: usize, k: &mut FlowKey) -> Result<(), ParseError> {
    let arp = b.get(off..off + 28).ok_or(ParseError::ArpInvalid)?;
    // htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4: anything else has a
    // different layout, and MidoNet only speaks this one.
    if arp[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return Err(ParseError::ArpInvalid);
    }
    let e = ParseError::ArpInvalid;
    k.arp_op = be16(arp, 6).ok_or(e)?;
    k.arp_sha = mac(arp, 8).ok_or(e)?;
    k.arp_spa = ip4(arp, 14).ok_or(e)?;
    k.arp_tha = mac(arp, 18).ok_or(e)?;
    k.arp_tpa = ip4(arp, 24).ok_or(e)?;
    Ok(())
}

fn extract_ipv4(b: &[u8], off: usize, k: &mut FlowKey, lay: &mut Layout) -> Result<(), ParseError> {
    let h = b.get(off..off + 20).ok_or(ParseError::Ipv4Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(ParseError::Ipv4Malformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || total < ihl {
        return Err(ParseError::Ipv4Malformed);
    }
    if b.len() < off + total {
        return Err(ParseError::Ipv4Truncated);
    }
    let pkt = &b[off..off + total];
    k.ip_tos = h[1];
    k.ip_ttl = h[8];
    k.ip_proto = h[9];
    k.ipv4_src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    k.ipv4_dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let more = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    k.ip_frag = match (offset, more) {
        (0, false) => FragType::No,
        (0, true) => FragType::First,
        _ => FragType::Later,
    };
    lay.l3_end = off + total;
    if k.ip_frag == FragType::Later {
        return Ok(());
    }
    lay.l4 = Some(off + ihl);
    extract_l4(pkt, ihl, k, false)
}

/// IPv6 extension headers skipped to find the upper-layer protocol.
/// Bounded so a chain of extension headers cannot make parsing slow.
const MAX_IPV6_EXT: usize = 8;

fn extract_ipv6(b: &[u8], off: usize, k: &mut FlowKey, lay: &mut Layout) -> Result<(), ParseError> {
    let h = b.get(off..off + 40).ok_or(ParseError::Ipv6Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::Ipv6Malformed);
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let end = off + 40 + payload_len;
    if b.len() < end {
        return Err(ParseError::Ipv6Truncated);
    }
    let pkt = &b[off..end];
    k.ip_tos = ((h[0] & 0x0f) << 4) | (h[1] >> 4);
    k.ip_ttl = h[7];
    k.ipv6_src = ip6(h, 8).ok_or(ParseError::Ipv6Truncated)?;
    k.ipv6_dst = ip6(h, 24).ok_or(ParseError::Ipv6Truncated)?;
    lay.l3_end = end;
    let mut next = h[6];
    let mut at = 40;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                let e = pkt.get(at..at + 2).ok_or(ParseError::Ipv6Truncated)?;
                next = e[0];
                at += (usize::from(e[1]) + 1) * 8;
            }
            // Fragment header: 8 bytes, offset in the top 13 bits of bytes 2..4.
            44 => {
                let e = pkt.get(at..at + 8).ok_or(ParseError::Ipv6Truncated)?;
                next = e[0];
                let fo = u16::from_be_bytes([e[2], e[3]]);
                let offset = fo >> 3;
                let more = fo & 1 != 0;
                k.ip_frag = match (offset, more) {
                    (0, false) => FragType::No,
                    (0, true) => FragType::First,
                    _ => FragType::Later,
                };
                at += 8;
            }
            _ => break,
        }
    }
    k.ip_proto = next;
    if at > pkt.len() {
        return Err(ParseError::Ipv6Truncated);
    }
    if k.ip_frag == FragType::Later {
        return Ok(());
    }
    lay.l4 = Some(off + at);
    extract_l4(pkt, at, k, true)
}

fn extract_l4(pkt: &[u8], at: usize, k: &mut FlowKey, v6: bool) -> Result<(), ParseError> {
    match k.ip_proto {
        IP_PROTO_TCP => {
            let t = pkt.get(at..at + 20).ok_or(ParseError::TcpTruncated)?;
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 || pkt.len() < at + doff {
                return Err(ParseError::TcpTruncated);
            }
            k.l4_src = u16::from_be_bytes([t[0], t[1]]);
            k.l4_dst = u16::from_be_bytes([t[2], t[3]]);
            k.tcp_flags = u16::from_be_bytes([t[12], t[13]]) & 0x01ff;
        }
        IP_PROTO_UDP => {
            let u = pkt.get(at..at + 8).ok_or(ParseError::UdpTruncated)?;
            k.l4_src = u16::from_be_bytes([u[0], u[1]]);
            k.l4_dst = u16::from_be_bytes([u[2], u[3]]);
        }
        IP_PROTO_SCTP => {
            let s = pkt.get(at..at + 12).ok_or(ParseError::SctpTruncated)?;
            k.l4_src = u16::from_be_bytes([s[0], s[1]]);
            k.l4_dst = u16::from_be_bytes([s[2], s[3]]);
        }
        IP_PROTO_ICMP if !v6 => {
            let i = pkt.get(at..at + 4).ok_or(ParseError::IcmpTruncated)?;
            k.icmp_type = i[0];
            k.icmp_code = i[1];
            // Echo reply (0) / request (8) carry an identifier.
            if matches!(i[0], 0 | 8) {
                k.icmp_id = be16(pkt, at + 4).ok_or(ParseError::IcmpTruncated)?;
            }
        }
        IP_PROTO_ICMPV6 if v6 => {
            let i = pkt.get(at..at + 4).ok_or(ParseError::IcmpTruncated)?;
            k.icmp_type = i[0];
            k.icmp_code = i[1];
            // Echo request (128) / reply (129).
            if matches!(i[0], 128 | 129) {
                k.icmp_id = be16(pkt, at + 4).ok_or(ParseError::IcmpTruncated)?;
            }
        }
        _ => {}
    }
    Ok(())
}
