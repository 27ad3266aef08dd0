//! midonet-wire: packet vocabulary that `etherparse` lacks.
//!
//! Parsing of ordinary headers is left to `etherparse` (and to
//! `midonet-flow`'s key extractor); this crate adds what the agent must
//! *write* or what no well-kept crate covers:
//!
//! * Typed views over bytes, smoltcp style, for the headers a packet path
//!   rewrites in place (etherparse's slices are read-only, and its owned
//!   headers would copy on every packet): [`ethernet::EthernetFrame`], [`ipv4::Ipv4Packet`],
//!   [`ipv6::Ipv6Packet`], [`tcp::TcpPacket`], [`udp::UdpPacket`],
//!   [`icmp::IcmpPacket`]. A view borrows the buffer; `new_checked` is the
//!   only way in for untrusted bytes, after which no accessor panics; each
//!   module's `field` names the byte ranges. Setters write raw fields: the
//!   checksum arithmetic is [`checksum`]'s, the rewrite rules (which
//!   checksums a change touches) are `midonet-flow`'s.
//! * [`vxlan`]: the VXLAN header as a zerocopy view plus a [`VxlanRepr`],
//!   including midonet-rs's private offload extension (GSO / checksum-partial
//!   metadata carried in reserved bits, agent-to-agent only).
//! * [`flowstate`]: the flow-state message agents push to each other
//!   (conntrack keys, NAT bindings, the ports and stateful port groups they
//!   concern): a versioned view plus [`FlowStateRepr`].
//! * [`checksum`]: RFC 1071 sums and RFC 1624 incremental updates.
//! * [`arp`], [`icmp`]: builders for the frames the agent answers with
//!   (ARP request/reply, ICMP echo reply, ICMP errors quoting the original).
//! * [`ethernet`]: L3 offset lookup and VLAN push/pop in place (into
//!   headroom in front of the frame, or on a `Vec`).
//!
//! Builders append one complete Ethernet frame to a caller's `Vec<u8>`, so a
//! packet path can reuse one buffer (`clear()` then build) without
//! allocating. Rewriting a frame according to flow actions lives in
//! `midonet-flow` (`apply_action`), next to the actions it interprets.
//!
//! This crate depends on no other workspace crate (ARCHITECTURE.md §7).

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod flowstate;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vxlan;

pub use arp::{arp_reply, arp_request};
pub use ethernet::{
    l3_offset, vlan_pop, vlan_pop_in_place, vlan_push, vlan_push_in_place, EthernetFrame, VlanTag,
};
pub use flowstate::{FlowStateError, FlowStateMsg, FlowStateRepr};
pub use icmp::{icmpv4_echo_reply, icmpv4_error, may_send_icmp_error, IcmpError, IcmpPacket};
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use tcp::TcpPacket;
pub use udp::UdpPacket;
pub use vxlan::{CsumOffset, CsumPartial, Gso, OffloadMeta, VxlanError, VxlanHeader, VxlanRepr};

/// Why a frame could not be read or built. `Copy`, so callers can count by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The bytes end before a header or a declared length does.
    #[error("truncated frame")]
    Truncated,
    /// A header field is inconsistent (IHL < 5, total length < header).
    #[error("malformed header")]
    Malformed,
    /// The frame or datagram is not IPv4.
    #[error("not ipv4")]
    NotIpv4,
    /// The frame is not an unfragmented ICMPv4 echo request.
    #[error("not an icmp echo request")]
    NotEchoRequest,
    /// The result would exceed the IPv4 total-length field.
    #[error("packet too large")]
    TooLarge,
}
