//! ICMPv4 builders: echo reply, and the errors a virtual router sends
//! (those MidoNet's router sends).
//!
//! ```text
//!   echo (RFC 792):   type(1) code(1) csum(2) id(2) seq(2) data...
//!   error (RFC 792):  type(1) code(1) csum(2) unused(4)      original IP header + first 8 bytes
//!   frag needed:      type=3  code=4  csum(2) unused(2) mtu(2) ...          (RFC 1191 §4)
//! ```
//!
//! The generated IPv4 header has no options, TTL 64, identification 0 and
//! DF clear. Errors use TOS 0xc0 (precedence "internetwork control",
//! RFC 1812 §4.3.2.5), as Linux does.

use std::net::Ipv4Addr;

use crate::checksum::{checksum, set_ipv4_header_checksum};
use crate::ethernet::{l3_offset, write_eth, ETHERTYPE_IPV4};
use crate::ipv4::Ipv4Packet;
use crate::WireError;

/// IP protocol number of ICMP.
pub const IP_PROTO_ICMP: u8 = 1;
/// TTL of generated packets.
pub const DEFAULT_TTL: u8 = 64;
/// ICMP type: echo reply.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP type: destination unreachable.
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
/// ICMP type: echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMP type: time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// An ICMPv4 error a router generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpError {
    /// Destination unreachable, code 0: no route to the network.
    NetUnreachable,
    /// Destination unreachable, code 1: the host did not answer ARP.
    HostUnreachable,
    /// Destination unreachable, code 3.
    PortUnreachable,
    /// Destination unreachable, code 4: fragmentation needed and DF set,
    /// with the next-hop MTU (RFC 1191).
    FragNeeded {
        /// MTU of the next hop, in bytes.
        next_hop_mtu: u16,
    },
    /// Destination unreachable, code 13: communication administratively
    /// prohibited (RFC 1812 §5.2.7.1): rule rejects and admin-down ports.
    AdminProhibited,
    /// Time exceeded, code 0: TTL exceeded in transit.
    TtlExceeded,
}

impl IcmpError {
    /// ICMP type and code.
    pub fn type_code(self) -> (u8, u8) {
        match self {
            IcmpError::NetUnreachable => (ICMP_DEST_UNREACHABLE, 0),
            IcmpError::HostUnreachable => (ICMP_DEST_UNREACHABLE, 1),
            IcmpError::PortUnreachable => (ICMP_DEST_UNREACHABLE, 3),
            IcmpError::FragNeeded { .. } => (ICMP_DEST_UNREACHABLE, 4),
            IcmpError::AdminProhibited => (ICMP_DEST_UNREACHABLE, 13),
            IcmpError::TtlExceeded => (ICMP_TIME_EXCEEDED, 0),
        }
    }

    /// The 4 bytes after the checksum (zero, or the next-hop MTU).
    fn rest_of_header(self) -> [u8; 4] {
        match self {
            IcmpError::FragNeeded { next_hop_mtu } => {
                let [a, b] = next_hop_mtu.to_be_bytes();
                [0, 0, a, b]
            }
            _ => [0; 4],
        }
    }
}

/// Append an IPv4 header (no options, checksum filled) for `payload_size`
/// bytes of `proto`.
fn write_ipv4(
    out: &mut Vec<u8>,
    tos: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload_size: usize,
) -> Result<(), WireError> {
    let total = u16::try_from(20 + payload_size).map_err(|_| WireError::TooLarge)?;
    let start = out.len();
    out.extend_from_slice(&[0x45, tos]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, DEFAULT_TTL, proto, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    set_ipv4_header_checksum(&mut out[start..]);
    Ok(())
}

/// Byte offsets of the fields every ICMP message (v4 and v6) starts with,
/// and of the identifier and sequence of an echo.
pub mod field {
    use std::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
}

/// Size of an ICMP header: type, code, checksum and 4 type-specific bytes.
pub const HEADER_SIZE: usize = 8;

/// A view of an ICMP (v4 or v6: the fields used here are laid out alike)
/// message at the start of `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// A view without any check (accessors may panic on a short buffer).
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// A view of untrusted bytes: the buffer holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_SIZE {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    fn be16(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM)
    }

    /// The identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        self.be16(field::ECHO_IDENT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    fn set_be16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, c: u16) {
        self.set_be16(field::CHECKSUM, c);
    }

    pub fn set_echo_ident(&mut self, id: u16) {
        self.set_be16(field::ECHO_IDENT, id);
    }
}

/// Append the reply to the echo request in `request` (a whole Ethernet
/// frame, optionally VLAN-tagged): MACs and IPs swapped, the VLAN tag kept,
/// type 0, the same identifier, sequence and data, fresh checksums.
/// IP options of the request are not echoed.
pub fn icmpv4_echo_reply(request: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    let (ethertype, l3) = l3_offset(request)?;
    if ethertype != ETHERTYPE_IPV4 {
        return Err(WireError::NotIpv4);
    }
    let ip = Ipv4Packet::new_checked(&request[l3..])?;
    let icmp = ip.payload();
    if ip.protocol() != IP_PROTO_ICMP
        || ip.frag_offset() != 0
        || ip.more_frags()
        || icmp.first() != Some(&ICMP_ECHO_REQUEST)
    {
        return Err(WireError::NotEchoRequest);
    }
    if icmp.len() < 8 {
        return Err(WireError::Truncated);
    }
    let start = out.len();
    // L2: dst <- request src, src <- request dst, VLAN tag and ethertype as they were.
    out.extend_from_slice(&request[6..12]);
    out.extend_from_slice(&request[0..6]);
    out.extend_from_slice(&request[12..l3]);
    write_ipv4(out, ip.tos(), IP_PROTO_ICMP, ip.dst_addr(), ip.src_addr(), icmp.len())?;
    let l4 = out.len();
    out.extend_from_slice(icmp);
    out[l4] = ICMP_ECHO_REPLY;
    out[l4 + 2..l4 + 4].fill(0);
    let c = checksum(&out[l4..]);
    out[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    debug_assert!(out.len() > start);
    Ok(())
}

/// Append an ICMPv4 error about `original` (the offending IPv4 datagram,
/// from its IP header on) from `ip_src` to the original's source, in an
/// untagged Ethernet frame `eth_src` → `eth_dst`. Embeds the original IP
/// header (with options) and the first 8 bytes of its payload (RFC 792,
/// RFC 1812 §4.3.2.3 permits more; MidoNet sends exactly this).
///
/// Whether an error may be sent at all is the caller's decision; see
/// [`may_send_icmp_error`].
pub fn icmpv4_error(
    out: &mut Vec<u8>,
    kind: IcmpError,
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    ip_src: Ipv4Addr,
    original: &[u8],
) -> Result<(), WireError> {
    let ip = Ipv4Packet::new_checked(original)?;
    let dgram = ip.datagram();
    let quoted = &dgram[..(ip.header_len() + 8).min(dgram.len())];
    write_eth(out, eth_dst, eth_src, ETHERTYPE_IPV4);
    write_ipv4(out, 0xc0, IP_PROTO_ICMP, ip_src, ip.src_addr(), 8 + quoted.len())?;
    let l4 = out.len();
    let (t, c) = kind.type_code();
    out.extend_from_slice(&[t, c, 0, 0]);
    out.extend_from_slice(&kind.rest_of_header());
    out.extend_from_slice(quoted);
    let csum = checksum(&out[l4..]);
    out[l4 + 2..l4 + 4].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// The IP-level RFC 1812 §4.3.2.7 checks on `original` (an IPv4 datagram
/// from its header on): false when it is itself an ICMP error, a non-first
/// fragment, addressed to a multicast or limited-broadcast destination, or
/// from a source that is not a unique host (0.0.0.0, broadcast, multicast,
/// loopback, class E). Link-layer broadcast and subnet-broadcast
/// destinations need topology knowledge and are the caller's to check.
pub fn may_send_icmp_error(original: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(original) else { return false };
    if ip.is_later_fragment() {
        return false;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if dst.is_multicast() || dst.is_broadcast() {
        return false;
    }
    if src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || src.is_loopback()
        || src.octets()[0] >= 240
    {
        return false;
    }
    if ip.protocol() == IP_PROTO_ICMP {
        // Only queries (echo, timestamp, info, address mask) may be answered
        // with an error; an unknown type counts as an error to be safe.
        let t = ip.payload().first().copied();
        return matches!(t, Some(0 | 8 | 13 | 14 | 15 | 16 | 17 | 18));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Type, PacketBuilder, SlicedPacket, TransportSlice};

    const VM: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const RTR: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

    fn echo_request(vlan: Option<u16>) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(VM, RTR);
        let b = match vlan {
            Some(v) => b.single_vlan(v.try_into().expect("vid")),
            None => b.single_vlan(0.try_into().expect("vid")),
        };
        let b = b.ipv4([10, 0, 0, 2], [10, 0, 0, 1], 61).icmpv4_echo_request(0x1234, 7);
        let mut f = Vec::new();
        b.write(&mut f, b"ping data!").expect("build");
        if vlan.is_none() {
            f.drain(12..16);
        }
        f
    }

    fn check_icmp_checksum(frame: &[u8]) {
        let (_, l3) = l3_offset(frame).expect("l3");
        let ip = Ipv4Packet::new_checked(&frame[l3..]).expect("ip");
        assert!(ip.verify_checksum(), "ip header checksum");
        assert_eq!(checksum(ip.payload()), 0, "icmp checksum");
    }

    #[test]
    fn echo_reply_mirrors_request() {
        for vlan in [None, Some(42)] {
            let req = echo_request(vlan);
            let mut out = Vec::new();
            icmpv4_echo_reply(&req, &mut out).expect("reply");
            let s = SlicedPacket::from_ethernet(&out).expect("parse");
            assert_eq!(&out[0..6], &VM);
            assert_eq!(&out[6..12], &RTR);
            assert_eq!(s.vlan().is_some(), vlan.is_some());
            let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else { panic!("not ipv4") };
            assert_eq!(ip.header().source(), [10, 0, 0, 1]);
            assert_eq!(ip.header().destination(), [10, 0, 0, 2]);
            assert_eq!(ip.header().ttl(), DEFAULT_TTL);
            let Some(TransportSlice::Icmpv4(icmp)) = &s.transport else { panic!("not icmp") };
            match icmp.icmp_type() {
                Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x1234, 7)),
                t => panic!("wrong type {t:?}"),
            }
            assert_eq!(icmp.payload(), b"ping data!");
            check_icmp_checksum(&out);
        }
    }

    #[test]
    fn echo_reply_rejects_non_requests() {
        let mut out = Vec::new();
        let mut reply = Vec::new();
        icmpv4_echo_reply(&echo_request(None), &mut reply).expect("reply");
        assert_eq!(icmpv4_echo_reply(&reply, &mut out), Err(WireError::NotEchoRequest));
        assert_eq!(icmpv4_echo_reply(&reply[..20], &mut out), Err(WireError::Truncated));
        let mut arp = Vec::new();
        crate::arp::arp_request(&mut arp, VM, Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(1, 1, 1, 2));
        assert_eq!(icmpv4_echo_reply(&arp, &mut out), Err(WireError::NotIpv4));
        assert!(out.is_empty(), "nothing written on error");
    }

    fn udp_datagram() -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 9], 1)
            .udp(5000, 53)
            .write(&mut f, &[0xab; 40])
            .expect("build");
        f
    }

    #[test]
    fn errors_embed_header_plus_8_bytes() {
        let orig = udp_datagram();
        let cases = [
            (IcmpError::NetUnreachable, 3, 0),
            (IcmpError::HostUnreachable, 3, 1),
            (IcmpError::PortUnreachable, 3, 3),
            (IcmpError::FragNeeded { next_hop_mtu: 1450 }, 3, 4),
            (IcmpError::AdminProhibited, 3, 13),
            (IcmpError::TtlExceeded, 11, 0),
        ];
        for (kind, t, c) in cases {
            let mut out = Vec::new();
            icmpv4_error(&mut out, kind, RTR, VM, Ipv4Addr::new(10, 0, 0, 1), &orig)
                .expect("build");
            check_icmp_checksum(&out);
            let s = SlicedPacket::from_ethernet(&out).expect("parse");
            let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else { panic!("not ipv4") };
            assert_eq!(ip.header().destination(), [10, 0, 0, 2], "sent back to the source");
            assert_eq!(ip.header().source(), [10, 0, 0, 1]);
            let icmp = &out[34..];
            assert_eq!((icmp[0], icmp[1]), (t, c), "{kind:?}");
            assert_eq!(&icmp[8..], &orig[..28], "ip header + 8 bytes of udp");
            if let IcmpError::FragNeeded { next_hop_mtu } = kind {
                assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), next_hop_mtu);
            }
        }
    }

    #[test]
    fn error_on_short_original_quotes_what_exists() {
        let mut orig = udp_datagram();
        // A 4-byte payload datagram: quote header + 4.
        orig.truncate(24);
        orig[2..4].copy_from_slice(&24u16.to_be_bytes());
        let mut out = Vec::new();
        icmpv4_error(&mut out, IcmpError::TtlExceeded, RTR, VM, Ipv4Addr::new(10, 0, 0, 1), &orig)
            .expect("build");
        assert_eq!(&out[42..], &orig[..]);
        assert_eq!(
            icmpv4_error(
                &mut out,
                IcmpError::TtlExceeded,
                RTR,
                VM,
                Ipv4Addr::LOCALHOST,
                &orig[..10]
            ),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn rfc1812_suppression() {
        assert!(may_send_icmp_error(&udp_datagram()));
        // ICMP error in response to an ICMP error: no.
        let mut err = Vec::new();
        icmpv4_error(
            &mut err,
            IcmpError::NetUnreachable,
            RTR,
            VM,
            Ipv4Addr::new(10, 0, 0, 1),
            &udp_datagram(),
        )
        .expect("build");
        assert!(!may_send_icmp_error(&err[14..]));
        // Echo request: yes.
        let req = echo_request(None);
        assert!(may_send_icmp_error(&req[14..]));
        // Later fragment: no.
        let mut frag = udp_datagram();
        frag[6..8].copy_from_slice(&185u16.to_be_bytes());
        assert!(!may_send_icmp_error(&frag));
        // Multicast destination, zero source: no.
        let mut mc = udp_datagram();
        mc[16..20].copy_from_slice(&[224, 0, 0, 5]);
        assert!(!may_send_icmp_error(&mc));
        let mut zero = udp_datagram();
        zero[12..16].copy_from_slice(&[0, 0, 0, 0]);
        assert!(!may_send_icmp_error(&zero));
        assert!(!may_send_icmp_error(&[0x45]));
    }
}
