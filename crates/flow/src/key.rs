//! The flow key: every header field the simulation or the datapath may match on.
//!
//! A [`FlowKey`] is a plain `Copy` value. It is *canonical*: a field the packet
//! does not carry is zero (an ARP frame has zero IPv4 fields, a later IPv4
//! fragment has zero L4 fields, a non-echo ICMP message has a zero ICMP id),
//! so two packets that carry the same headers always produce equal keys, and
//! `Eq` and `Hash` work on the whole struct with no per-protocol cases.
//!
//! Layout (what [`FlowKey::extract`](crate::FlowKey::extract) fills in):
//!
//! ```text
//!   in_port          InPort::Port(n) | InPort::Tunnel(vni)
//!   L2               eth_src eth_dst ethertype vlan_vid vlan_pcp
//!   ARP (0x0806)     arp_op arp_sha arp_spa arp_tha arp_tpa
//!   IPv4 (0x0800)    ipv4_src ipv4_dst  \
//!   IPv6 (0x86dd)    ipv6_src ipv6_dst   > ip_proto ip_tos ip_ttl ip_frag
//!   TCP/UDP/SCTP     l4_src l4_dst (tcp_flags for TCP)
//!   ICMPv4/ICMPv6    icmp_type icmp_code icmp_id (echo only)
//! ```
//!
//! ARP and IP addresses are kept in separate fields (OVS overlays them) because
//! it keeps the simulation's getters unambiguous and costs 8 bytes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Ethertype of IPv4.
pub const ETH_TYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETH_TYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
pub const ETH_TYPE_IPV6: u16 = 0x86dd;
/// Ethertype (TPID) of an IEEE 802.1Q VLAN tag.
pub const ETH_TYPE_VLAN: u16 = 0x8100;

/// IP protocol number of ICMPv4.
pub const IP_PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IP_PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IP_PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const IP_PROTO_ICMPV6: u8 = 58;
/// IP protocol number of SCTP (ports are extracted like TCP/UDP).
pub const IP_PROTO_SCTP: u8 = 132;

/// TCP flag bits as stored in [`FlowKey::tcp_flags`] (the low 9 bits of the
/// TCP header's data-offset/flags word, RFC 9293 §3.1 plus NS from RFC 3540).
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u16 = 0x001;
    /// Synchronise sequence numbers.
    pub const SYN: u16 = 0x002;
    /// Reset the connection.
    pub const RST: u16 = 0x004;
    /// Push function.
    pub const PSH: u16 = 0x008;
    /// Acknowledgment field is significant.
    pub const ACK: u16 = 0x010;
    /// Urgent pointer field is significant.
    pub const URG: u16 = 0x020;
    /// ECN echo.
    pub const ECE: u16 = 0x040;
    /// Congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// ECN nonce (historic).
    pub const NS: u16 = 0x100;
}

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The six octets.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }
    /// True for `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }
    /// True when the I/G bit is set (multicast, including broadcast).
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }
    /// True for a unicast address (I/G bit clear).
    pub fn is_unicast(self) -> bool {
        !self.is_multicast()
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(m: MacAddr) -> Self {
        m.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error returned when a MAC address string is not six `:`- or `-`-separated hex octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address (expected six hex octets like 02:00:00:00:00:01)")]
pub struct MacParseError;

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(MacParseError);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
            n += 1;
        }
        if n != 6 {
            return Err(MacParseError);
        }
        Ok(MacAddr(out))
    }
}

/// Where a packet entered this host's datapath.
///
/// A packet from a local vport carries the vport's datapath port number; a
/// packet that arrived over a VXLAN tunnel carries the tunnel key (VNI, 24
/// bits) and is matched on that alone, so the egress host outputs it without
/// re-simulation (ARCHITECTURE.md §5; MidoNet keeps drop flows briefly for the same reason).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum InPort {
    /// A local datapath port number.
    Port(u32),
    /// A tunnel key (the VXLAN VNI of the received datagram).
    Tunnel(u32),
}

impl Default for InPort {
    fn default() -> Self {
        InPort::Port(0)
    }
}

impl fmt::Display for InPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InPort::Port(p) => write!(f, "in_port={p}"),
            InPort::Tunnel(k) => write!(f, "tun_key={k:#x}"),
        }
    }
}

/// IP fragment type, as OVS and MidoNet key it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum FragType {
    /// Not a fragment (or not IP).
    #[default]
    No,
    /// First fragment (offset 0, more-fragments set): carries the L4 header.
    First,
    /// Any later fragment: no L4 header, L4 fields are zero.
    Later,
}

impl FragType {
    /// The name used in the text syntax: `no`, `first`, `later`.
    pub fn as_str(self) -> &'static str {
        match self {
            FragType::No => "no",
            FragType::First => "first",
            FragType::Later => "later",
        }
    }
}

impl fmt::Display for FragType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header fields of one packet; see the module docs for which fields are
/// meaningful for which ethertype. Fields the packet does not carry are zero.
///
/// `Hash` is hand-written: it packs the fields into one byte array and feeds
/// it to the hasher in a single `write`, which is what the exact-match cache
/// and the megaflow subtables hash on every packet (see the `masked_key`
/// bench for the numbers).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowKey {
    /// Ingress: local port or tunnel key.
    pub in_port: InPort,
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// Ethertype after any VLAN tag (e.g. 0x0800); a raw 802.3 length is kept as is.
    pub ethertype: u16,
    /// 802.1Q VLAN id (12 bits) of the outer tag, if tagged.
    pub vlan_vid: Option<u16>,
    /// 802.1Q priority (3 bits); 0 when untagged.
    pub vlan_pcp: u8,
    /// ARP opcode (1 request, 2 reply).
    pub arp_op: u16,
    /// ARP sender hardware address.
    pub arp_sha: MacAddr,
    /// ARP sender protocol address.
    pub arp_spa: Ipv4Addr,
    /// ARP target hardware address.
    pub arp_tha: MacAddr,
    /// ARP target protocol address.
    pub arp_tpa: Ipv4Addr,
    /// IPv4 source.
    pub ipv4_src: Ipv4Addr,
    /// IPv4 destination.
    pub ipv4_dst: Ipv4Addr,
    /// IPv6 source.
    pub ipv6_src: Ipv6Addr,
    /// IPv6 destination.
    pub ipv6_dst: Ipv6Addr,
    /// IP protocol (IPv4) or upper-layer next header (IPv6, after extension headers).
    pub ip_proto: u8,
    /// The whole TOS / traffic-class byte (DSCP and ECN).
    pub ip_tos: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ip_ttl: u8,
    /// Fragment type.
    pub ip_frag: FragType,
    /// TCP/UDP/SCTP source port.
    pub l4_src: u16,
    /// TCP/UDP/SCTP destination port.
    pub l4_dst: u16,
    /// TCP flags (see [`tcp_flags`]).
    pub tcp_flags: u16,
    /// ICMPv4 / ICMPv6 type.
    pub icmp_type: u8,
    /// ICMPv4 / ICMPv6 code.
    pub icmp_code: u8,
    /// ICMP echo identifier (echo request/reply only, else 0).
    pub icmp_id: u16,
}

impl std::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.pack());
    }
}

impl Default for FlowKey {
    /// All fields zero (`Ipv4Addr` has no `Default`, hence the manual impl).
    fn default() -> Self {
        FlowKey {
            in_port: InPort::default(),
            eth_src: MacAddr::ZERO,
            eth_dst: MacAddr::ZERO,
            ethertype: 0,
            vlan_vid: None,
            vlan_pcp: 0,
            arp_op: 0,
            arp_sha: MacAddr::ZERO,
            arp_spa: Ipv4Addr::UNSPECIFIED,
            arp_tha: MacAddr::ZERO,
            arp_tpa: Ipv4Addr::UNSPECIFIED,
            ipv4_src: Ipv4Addr::UNSPECIFIED,
            ipv4_dst: Ipv4Addr::UNSPECIFIED,
            ipv6_src: Ipv6Addr::UNSPECIFIED,
            ipv6_dst: Ipv6Addr::UNSPECIFIED,
            ip_proto: 0,
            ip_tos: 0,
            ip_ttl: 0,
            ip_frag: FragType::No,
            l4_src: 0,
            l4_dst: 0,
            tcp_flags: 0,
            icmp_type: 0,
            icmp_code: 0,
            icmp_id: 0,
        }
    }
}

/// Size of [`FlowKey::pack`]'s output: 99 bytes of fields, padded to a
/// multiple of 8 so the hasher consumes whole words.
const PACKED_SIZE: usize = 104;

impl FlowKey {
    /// Every field, in declaration order, as bytes. Injective (distinct keys
    /// pack differently: the `InPort` and `Option` discriminants are
    /// included), so hashing the packed form is consistent with `Eq`.
    #[inline]
    fn pack(&self) -> [u8; PACKED_SIZE] {
        let mut b = [0u8; PACKED_SIZE];
        let (tag, port) = match self.in_port {
            InPort::Port(p) => (0u8, p),
            InPort::Tunnel(k) => (1u8, k),
        };
        b[0] = tag;
        b[1..5].copy_from_slice(&port.to_ne_bytes());
        b[5..11].copy_from_slice(&self.eth_src.0);
        b[11..17].copy_from_slice(&self.eth_dst.0);
        b[17..19].copy_from_slice(&self.ethertype.to_ne_bytes());
        if let Some(vid) = self.vlan_vid {
            b[19] = 1;
            b[20..22].copy_from_slice(&vid.to_ne_bytes());
        }
        b[22] = self.vlan_pcp;
        b[23..25].copy_from_slice(&self.arp_op.to_ne_bytes());
        b[25..31].copy_from_slice(&self.arp_sha.0);
        b[31..35].copy_from_slice(&self.arp_spa.octets());
        b[35..41].copy_from_slice(&self.arp_tha.0);
        b[41..45].copy_from_slice(&self.arp_tpa.octets());
        b[45..49].copy_from_slice(&self.ipv4_src.octets());
        b[49..53].copy_from_slice(&self.ipv4_dst.octets());
        b[53..69].copy_from_slice(&self.ipv6_src.octets());
        b[69..85].copy_from_slice(&self.ipv6_dst.octets());
        b[85] = self.ip_proto;
        b[86] = self.ip_tos;
        b[87] = self.ip_ttl;
        b[88] = self.ip_frag as u8;
        b[89..91].copy_from_slice(&self.l4_src.to_ne_bytes());
        b[91..93].copy_from_slice(&self.l4_dst.to_ne_bytes());
        b[93..95].copy_from_slice(&self.tcp_flags.to_ne_bytes());
        b[95] = self.icmp_type;
        b[96] = self.icmp_code;
        b[97..99].copy_from_slice(&self.icmp_id.to_ne_bytes());
        b
    }

    /// True when the key is IPv4 (ethertype 0x0800).
    pub fn is_ipv4(&self) -> bool {
        self.ethertype == ETH_TYPE_IPV4
    }
    /// True when the key is IPv6 (ethertype 0x86dd).
    pub fn is_ipv6(&self) -> bool {
        self.ethertype == ETH_TYPE_IPV6
    }
    /// True when the key is ARP (ethertype 0x0806).
    pub fn is_arp(&self) -> bool {
        self.ethertype == ETH_TYPE_ARP
    }
    /// True when the key carries TCP/UDP/SCTP ports (an IP packet of that
    /// protocol that is not a later fragment).
    pub fn has_ports(&self) -> bool {
        (self.is_ipv4() || self.is_ipv6())
            && self.ip_frag != FragType::Later
            && matches!(self.ip_proto, IP_PROTO_TCP | IP_PROTO_UDP | IP_PROTO_SCTP)
    }
    /// True for an ICMP echo request or reply (ICMPv4 type 0/8, ICMPv6
    /// 128/129): the messages that carry an identifier.
    pub fn is_icmp_echo(&self) -> bool {
        self.is_icmp()
            && matches!((self.is_ipv4(), self.icmp_type), (true, 0 | 8) | (false, 128 | 129))
    }
    /// True when the key carries ICMP type/code (ICMPv4 in IPv4 or ICMPv6 in
    /// IPv6, not a later fragment).
    pub fn is_icmp(&self) -> bool {
        self.ip_frag != FragType::Later
            && ((self.is_ipv4() && self.ip_proto == IP_PROTO_ICMP)
                || (self.is_ipv6() && self.ip_proto == IP_PROTO_ICMPV6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_separates_discriminants() {
        let a = FlowKey { in_port: InPort::Port(1), ..FlowKey::default() };
        let b = FlowKey { in_port: InPort::Tunnel(1), ..FlowKey::default() };
        assert_ne!(a.pack(), b.pack());
        let untagged = FlowKey::default();
        let vid0 = FlowKey { vlan_vid: Some(0), ..FlowKey::default() };
        assert_ne!(untagged.pack(), vid0.pack());
    }

    #[test]
    fn pack_covers_every_field() {
        // Changing any single field changes the packed bytes.
        let base = FlowKey::default();
        let variants = [
            FlowKey { eth_src: MacAddr([0, 0, 0, 0, 0, 1]), ..base },
            FlowKey { eth_dst: MacAddr([0, 0, 0, 0, 0, 1]), ..base },
            FlowKey { ethertype: 1, ..base },
            FlowKey { vlan_pcp: 1, ..base },
            FlowKey { arp_op: 1, ..base },
            FlowKey { arp_sha: MacAddr([1, 0, 0, 0, 0, 0]), ..base },
            FlowKey { arp_spa: Ipv4Addr::new(0, 0, 0, 1), ..base },
            FlowKey { arp_tha: MacAddr([1, 0, 0, 0, 0, 0]), ..base },
            FlowKey { arp_tpa: Ipv4Addr::new(0, 0, 0, 1), ..base },
            FlowKey { ipv4_src: Ipv4Addr::new(0, 0, 0, 1), ..base },
            FlowKey { ipv4_dst: Ipv4Addr::new(0, 0, 0, 1), ..base },
            FlowKey { ipv6_src: Ipv6Addr::LOCALHOST, ..base },
            FlowKey { ipv6_dst: Ipv6Addr::LOCALHOST, ..base },
            FlowKey { ip_proto: 1, ..base },
            FlowKey { ip_tos: 1, ..base },
            FlowKey { ip_ttl: 1, ..base },
            FlowKey { ip_frag: FragType::Later, ..base },
            FlowKey { l4_src: 1, ..base },
            FlowKey { l4_dst: 1, ..base },
            FlowKey { tcp_flags: 1, ..base },
            FlowKey { icmp_type: 1, ..base },
            FlowKey { icmp_code: 1, ..base },
            FlowKey { icmp_id: 1, ..base },
        ];
        let mut seen = std::collections::HashSet::new();
        seen.insert(base.pack());
        for v in variants {
            assert!(seen.insert(v.pack()), "{v:?} packs like another key");
        }
    }

    #[test]
    fn hot_structs_stay_compact() {
        // FlowKey is copied per packet and per simulation fork; growing it
        // past two cache lines should be a deliberate decision.
        assert!(
            std::mem::size_of::<FlowKey>() <= 112,
            "FlowKey is {} bytes",
            std::mem::size_of::<FlowKey>()
        );
        assert!(
            std::mem::size_of::<crate::Action>() <= 12,
            "Action is {} bytes",
            std::mem::size_of::<crate::Action>()
        );
        assert!(std::mem::size_of::<crate::FlowMask>() <= 8);
    }

    #[test]
    fn mac_text_forms() {
        let m: MacAddr = "02:0A:ff:00:10:9".parse().expect("mac");
        assert_eq!(m, MacAddr([2, 0x0a, 0xff, 0, 0x10, 9]));
        assert_eq!(m.to_string(), "02:0a:ff:00:10:09");
        assert_eq!("02-00-00-00-00-01".parse::<MacAddr>(), Ok(MacAddr([2, 0, 0, 0, 0, 1])));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:100",
            "0g:00:00:00:00:00",
            "02::00:00:00:00",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(MacParseError), "{bad:?}");
        }
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddr([2, 0, 0, 0, 0, 1]).is_unicast());
    }
}
