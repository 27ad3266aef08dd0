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
//! A total length of 0 is malformed; Linux "BIG TCP" super-frames (> 64 KiB,
//! total length 0) are therefore not keyable, which is fine while the
//! datapath keeps `gso_max_size` at its 64 KiB default on VM interfaces.

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

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpHeaders, IpNumber, Ipv4Header, PacketBuilder};

    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const DST: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn tcp_frame(vlan: Option<u16>) -> Vec<u8> {
        let mut f = Vec::new();
        let b = PacketBuilder::ethernet2(SRC, DST);
        match vlan {
            Some(v) => b
                .single_vlan(v.try_into().expect("vid"))
                .ipv4([10, 0, 0, 2], [10, 0, 1, 5], 64)
                .tcp(34567, 80, 1000, 65535)
                .syn()
                .write(&mut f, b"hello"),
            None => b
                .ipv4([10, 0, 0, 2], [10, 0, 1, 5], 64)
                .tcp(34567, 80, 1000, 65535)
                .syn()
                .write(&mut f, b"hello"),
        }
        .expect("build");
        f
    }

    #[test]
    fn tcp_over_vlan() {
        let k = FlowKey::extract(&tcp_frame(Some(100)), InPort::Port(3)).expect("extract");
        let expected = FlowKey {
            in_port: InPort::Port(3),
            eth_src: MacAddr(SRC),
            eth_dst: MacAddr(DST),
            ethertype: ETH_TYPE_IPV4,
            vlan_vid: Some(100),
            ipv4_src: Ipv4Addr::new(10, 0, 0, 2),
            ipv4_dst: Ipv4Addr::new(10, 0, 1, 5),
            ip_proto: IP_PROTO_TCP,
            ip_ttl: 64,
            l4_src: 34567,
            l4_dst: 80,
            tcp_flags: tcp_flags::SYN,
            ..FlowKey::default()
        };
        assert_eq!(k, expected);
        let untagged = FlowKey::extract(&tcp_frame(None), InPort::Port(3)).expect("extract");
        assert_eq!(untagged, FlowKey { vlan_vid: None, ..expected });
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(SRC, DST)
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .udp(1, 2)
            .write(&mut f, &[])
            .expect("build");
        let k = FlowKey::extract(&f, InPort::Port(1)).expect("extract");
        f.resize(60, 0xee);
        assert_eq!(FlowKey::extract(&f, InPort::Port(1)).expect("padded"), k);
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let mut ip =
            Ipv4Header::new(0, 33, IpNumber::UDP, [10, 1, 1, 1], [10, 2, 2, 2]).expect("hdr");
        ip.options = [1u8, 1, 1, 1, 1, 1, 1, 0].into(); // NOPs + EOL
        ip.dscp = 10.try_into().expect("dscp");
        let mut f = Vec::new();
        PacketBuilder::ethernet2(SRC, DST)
            .ip(IpHeaders::Ipv4(ip, Default::default()))
            .udp(5353, 53)
            .write(&mut f, b"q")
            .expect("build");
        assert_eq!(f[14] & 0x0f, 7, "IHL 7 in the built frame");
        let k = FlowKey::extract(&f, InPort::Port(1)).expect("extract");
        assert_eq!((k.l4_src, k.l4_dst, k.ip_ttl, k.ip_tos), (5353, 53, 33, 10 << 2));
    }

    #[test]
    fn arp_request_fields() {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&[10, 0, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[10, 0, 0, 2]);
        let k = FlowKey::extract(&f, InPort::Port(7)).expect("extract");
        assert!(k.is_arp());
        assert_eq!(k.arp_op, 1);
        assert_eq!(k.arp_sha, MacAddr(SRC));
        assert_eq!(k.arp_spa, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(k.arp_tha, MacAddr::ZERO);
        assert_eq!(k.arp_tpa, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(k.ipv4_src, Ipv4Addr::UNSPECIFIED, "ARP does not fill IP fields");
        // Non-Ethernet/IPv4 ARP (hlen 8) is rejected.
        f[18] = 8;
        assert_eq!(FlowKey::extract(&f, InPort::Port(7)), Err(ParseError::ArpInvalid));
    }

    fn set_frag(f: &mut [u8], word: u16) {
        f[20..22].copy_from_slice(&word.to_be_bytes());
    }

    #[test]
    fn ipv4_fragments() {
        let mut f = tcp_frame(None);
        set_frag(&mut f, 0x2000); // MF, offset 0
        let first = FlowKey::extract(&f, InPort::Port(1)).expect("first");
        assert_eq!(first.ip_frag, FragType::First);
        assert_eq!(first.l4_dst, 80, "first fragment keeps L4");
        set_frag(&mut f, 0x2000 | 185);
        let later = FlowKey::extract(&f, InPort::Port(1)).expect("later");
        assert_eq!(later.ip_frag, FragType::Later);
        assert_eq!(
            (later.l4_src, later.l4_dst, later.tcp_flags),
            (0, 0, 0),
            "later fragment has no L4"
        );
        // A later fragment too short for a TCP header is still keyable.
        let mut short = f[..14 + 20 + 3].to_vec();
        short[16..18].copy_from_slice(&23u16.to_be_bytes());
        assert_eq!(
            FlowKey::extract(&short, InPort::Port(1)).expect("short later").ip_frag,
            FragType::Later
        );
        set_frag(&mut f, 0);
        assert_eq!(FlowKey::extract(&f, InPort::Port(1)).expect("whole").ip_frag, FragType::No);
    }

    #[test]
    fn icmp_echo_has_id_other_icmp_not() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(SRC, DST)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .icmpv4_echo_request(0xbeef, 1)
            .write(&mut f, b"x")
            .expect("build");
        let k = FlowKey::extract(&f, InPort::Port(1)).expect("extract");
        assert_eq!((k.icmp_type, k.icmp_code, k.icmp_id), (8, 0, 0xbeef));
        let mut g = Vec::new();
        PacketBuilder::ethernet2(SRC, DST)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .icmpv4_raw(3, 1, [0xde, 0xad, 0xbe, 0xef])
            .write(&mut g, &[])
            .expect("build");
        let k = FlowKey::extract(&g, InPort::Port(1)).expect("extract");
        assert_eq!((k.icmp_type, k.icmp_code, k.icmp_id), (3, 1, 0));
    }

    #[test]
    fn ipv6_udp_and_fragment_header() {
        let s6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let d6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut f = Vec::new();
        PacketBuilder::ethernet2(SRC, DST)
            .ipv6(s6, d6, 17)
            .udp(546, 547)
            .write(&mut f, b"dhcp")
            .expect("build");
        let k = FlowKey::extract(&f, InPort::Port(1)).expect("extract");
        assert!(k.is_ipv6());
        assert_eq!(k.ipv6_src, Ipv6Addr::from(s6));
        assert_eq!(k.ipv6_dst, Ipv6Addr::from(d6));
        assert_eq!((k.ip_proto, k.ip_ttl, k.l4_src, k.l4_dst), (IP_PROTO_UDP, 17, 546, 547));

        // Insert a fragment header (later fragment) in front of the UDP header.
        let mut g = f.clone();
        g[14 + 6] = 44;
        g.splice(54..54, [17, 0, 0x05, 0xc8, 0, 0, 0, 1]); // offset 185, M=0
        let plen = u16::from_be_bytes([g[18], g[19]]) + 8;
        g[18..20].copy_from_slice(&plen.to_be_bytes());
        let k = FlowKey::extract(&g, InPort::Port(1)).expect("extract");
        assert_eq!((k.ip_proto, k.ip_frag, k.l4_dst), (IP_PROTO_UDP, FragType::Later, 0));
    }

    #[test]
    fn every_parse_error_is_reachable() {
        let tcp = tcp_frame(None);
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (tcp[..13].to_vec(), ParseError::EthTruncated),
            (tcp_frame(Some(5))[..16].to_vec(), ParseError::VlanTruncated),
            ([&tcp[..12], &[0x08, 0x06, 0, 1]].concat(), ParseError::ArpInvalid),
            (tcp[..30].to_vec(), ParseError::Ipv4Truncated),
            (tcp[..tcp.len() - 1].to_vec(), ParseError::Ipv4Truncated),
            (
                {
                    let mut f = tcp.clone();
                    f[14] = 0x44;
                    f
                },
                ParseError::Ipv4Malformed,
            ),
            ([&tcp[..12], &[0x86, 0xdd, 0x60]].concat(), ParseError::Ipv6Truncated),
            (
                {
                    let mut f = [&tcp[..12], &[0x86, 0xdd], &[0u8; 40][..]].concat();
                    f[14] = 0x40;
                    f
                },
                ParseError::Ipv6Malformed,
            ),
            (
                {
                    let mut f = tcp.clone();
                    f[14 + 20 + 12] = 0x40; // data offset 4
                    f
                },
                ParseError::TcpTruncated,
            ),
        ];
        for (frame, err) in cases {
            assert_eq!(FlowKey::extract(&frame, InPort::Port(0)), Err(err), "{frame:02x?}");
        }
        // L4 truncation: an IPv4 header claiming a 4-byte payload of each protocol.
        for (proto, err) in [
            (IP_PROTO_TCP, ParseError::TcpTruncated),
            (IP_PROTO_UDP, ParseError::UdpTruncated),
            (IP_PROTO_SCTP, ParseError::SctpTruncated),
            (IP_PROTO_ICMP, ParseError::IcmpTruncated),
        ] {
            let mut f = tcp[..14 + 20 + 3].to_vec();
            f[14 + 9] = proto;
            f[16..18].copy_from_slice(&23u16.to_be_bytes());
            assert_eq!(FlowKey::extract(&f, InPort::Port(0)), Err(err));
        }
        let labels: std::collections::HashSet<_> =
            ParseError::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(labels.len(), ParseError::ALL.len(), "metric labels are distinct");
    }

    #[test]
    fn unknown_ethertype_keeps_l2_only() {
        let mut f = tcp_frame(None);
        f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes()); // LLDP
        let k = FlowKey::extract(&f, InPort::Tunnel(0x42)).expect("extract");
        assert_eq!(
            k,
            FlowKey {
                in_port: InPort::Tunnel(0x42),
                eth_src: MacAddr(SRC),
                eth_dst: MacAddr(DST),
                ethertype: 0x88cc,
                ..FlowKey::default()
            }
        );
    }
}
