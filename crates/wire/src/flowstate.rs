//! Flow-state messages: the connection state an ingress agent pushes to its
//! peers before the first packet of a connection (issue 8 item 5;
//! MidoNet's SBE `FlowState` message, reference §3.2).
//!
//! Version 1, all integers big-endian, every entry fixed-size, no padding:
//!
//! ```text
//!  0       1       2       3       4               6               8
//! +-------+-------+-------+-------+---------------+---------------+
//! |version| flags |n_egres|n_group|  n_conntrack  |     n_nat     |
//! +-------+-------+-------+-------+---------------+---------------+
//! |                  sender host id (16, UUID)                    |  8
//! |                  ingress port id (16, UUID)                   | 24
//! +---------------------------------------------------------------+ 40
//! | egress port ids          n_egress    x 16                     |
//! | port-group ids           n_groups    x 16 (stateful groups of |
//! |                                      the ingress/egress ports)|
//! | conntrack entries        n_conntrack x 30                     |
//! |   tracker (16) src ip (4) dst ip (4) src port (2) dst port (2)|
//! |   proto (1) state (1)                                         |
//! | NAT entries              n_nat       x 36                     |
//! |   tracker (16) src ip (4) dst ip (4) src port (2) dst port (2)|
//! |   proto (1) kind (1) bound ip (4) bound port (2)              |
//! +---------------------------------------------------------------+
//! | only when flags & FLAG_LEARNED:                               |
//! | n_learned (2)                                                 |
//! | learned entries          n_learned   x 46                     |
//! |   kind (1) reserved (1) vlan (2) device (16) port (16)        |
//! |   ip (4) mac (6)                                              |
//! +---------------------------------------------------------------+
//! ```
//!
//! * A conntrack entry is a connection's forward key at its tracker (a
//!   device or a stateful port group) and its state; a NAT entry is a
//!   binding's forward key and what it translates to (`midonet-state`'s
//!   `ConnKey`, `NatKey`, `NatBinding`). For ICMP echo both port fields hold
//!   the echo id.
//! * A learned entry (issue 12 item 5) is what a simulation here learned
//!   for a virtual device's table: a router's or a bridge's ARP entry
//!   (`ip` is at `mac`; `port` zero) or a bridge's MAC entry (`mac` on
//!   `vlan` is behind `port`; `ip` zero). Agents share these directly with
//!   their tunnel-zone peers as well as through the cluster, so a next hop
//!   learned on one host is known on the others while the cluster is down.
//!   Such a message carries no connection: its ingress port is zero.
//! * A **port-state request** ([`FLAG_REQUEST`], issue 8 item 6) is sent
//!   by a host a port was just bound to (a VM migrated to it, or the agent
//!   started): "send me what you hold for these ports". The ports asked
//!   for are the ingress port and the egress ports; it carries no entries.
//!   The answer is ordinary state messages whose ingress port is the port
//!   they belong to, then one message with [`FLAG_ANSWERED`] listing the
//!   ports answered the same way (the end of the answer). The end may carry
//!   entries itself: one port's state that fits one datagram travels in it,
//!   so it arrives whole or not at all.
//! * `version` is checked first: any other value is
//!   [`FlowStateError::UnknownVersion`], so a future layout is rejected
//!   whole rather than misread. `flags` bit 0 is [`FLAG_LEARNED`] (the
//!   learned section follows), bit 1 [`FLAG_REQUEST`], bit 2
//!   [`FLAG_ANSWERED`] (both at once is [`FlowStateError::BadFlags`]); the
//!   other bits are reserved: zero on send, ignored on receipt. A receiver
//!   of version 1 that predates bits 1 and 2 reads such a message as an
//!   empty state message, which changes nothing.
//! * The counts fix the message's size exactly; fewer bytes is
//!   [`FlowStateError::Truncated`], more is [`FlowStateError::BadLength`]
//!   (a message is one UDP datagram, nothing may follow it).
//! * `state` and `kind` codes this version does not define stay
//!   representable ([`ConnStateCode::Unknown`], [`NatKindCode::Unknown`]);
//!   a receiver skips such entries.
//!
//! Size: 40 bytes + 16 per port id + 30 per connection + 36 per binding:
//! the usual message (one connection, one SNAT binding, one egress port)
//! is 122 bytes; MidoNet's limit of 1430 bytes of payload (1500 minus
//! tunnel overhead) leaves room for 46 connections with no port ids.
//!
//! Ids are raw 16-byte UUIDs: this crate depends on no other workspace
//! crate (nor on `uuid`).
//!
//! [`FlowStateMsg`] is the zero-copy view (zerocopy slices over the
//! datagram), [`FlowStateRepr`] the owned form that parses from it and
//! emits into a buffer.

use std::net::Ipv4Addr;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The version this module reads and writes.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_SIZE: usize = 40;
/// Size of an id.
pub const ID_SIZE: usize = 16;
/// Size of a conntrack entry.
pub const CONNTRACK_SIZE: usize = 30;
/// Size of a NAT entry.
pub const NAT_SIZE: usize = 36;
/// Size of a learned-table entry.
pub const LEARNED_SIZE: usize = 46;
/// `flags` bit: the learned section follows the NAT entries.
pub const FLAG_LEARNED: u8 = 0x01;
/// `flags` bit: a request for the state of the listed ports.
pub const FLAG_REQUEST: u8 = 0x02;
/// `flags` bit: the end of the answer to a request for the listed ports.
pub const FLAG_ANSWERED: u8 = 0x04;

/// A raw UUID.
pub type Id = [u8; 16];

/// Why bytes are not a flow-state message, or a `Repr` cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FlowStateError {
    /// Fewer bytes than the header or than its counts say.
    #[error("truncated flow-state message")]
    Truncated,
    /// A version this code does not read.
    #[error("unknown flow-state message version {0}")]
    UnknownVersion(u8),
    /// More bytes than the counts say.
    #[error("flow-state message longer than its counts")]
    BadLength,
    /// A request and the end of an answer at once.
    #[error("flow-state message both a request and an answer")]
    BadFlags,
    /// (emit) More entries than a count field holds.
    #[error("too many entries for one flow-state message")]
    TooMany,
    /// (emit) The buffer is shorter than [`FlowStateRepr::buffer_len`].
    #[error("buffer too small for the flow-state message")]
    BufferTooSmall,
}

/// The fixed header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    version: u8,
    flags: u8,
    n_egress: u8,
    n_groups: u8,
    n_conntrack: [u8; 2],
    n_nat: [u8; 2],
    sender: Id,
    ingress: Id,
}

impl Header {
    pub fn version(&self) -> u8 {
        self.version
    }
    pub fn sender(&self) -> Id {
        self.sender
    }
    pub fn ingress_port(&self) -> Id {
        self.ingress
    }
}

/// A conntrack entry as laid out on the wire.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ConntrackWire {
    tracker: Id,
    src: [u8; 4],
    dst: [u8; 4],
    src_port: [u8; 2],
    dst_port: [u8; 2],
    proto: u8,
    state: u8,
}

/// A NAT entry as laid out on the wire.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct NatWire {
    tracker: Id,
    src: [u8; 4],
    dst: [u8; 4],
    src_port: [u8; 2],
    dst_port: [u8; 2],
    proto: u8,
    kind: u8,
    bound_ip: [u8; 4],
    bound_port: [u8; 2],
}

/// A learned-table entry as laid out on the wire.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct LearnedWire {
    kind: u8,
    reserved: u8,
    vlan: [u8; 2],
    device: Id,
    port: Id,
    ip: [u8; 4],
    mac: [u8; 6],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(std::mem::size_of::<LearnedWire>() == LEARNED_SIZE);
const _: () = assert!(std::mem::size_of::<ConntrackWire>() == CONNTRACK_SIZE);
const _: () = assert!(std::mem::size_of::<NatWire>() == NAT_SIZE);

/// A checked view of a flow-state message: every slice is exactly as long
/// as the header's counts say.
#[derive(Debug, Clone, Copy)]
pub struct FlowStateMsg<'a> {
    pub header: &'a Header,
    pub egress_ports: &'a [Id],
    pub port_groups: &'a [Id],
    pub conntrack: &'a [ConntrackWire],
    pub nat: &'a [NatWire],
    pub learned: &'a [LearnedWire],
}

/// Split `n` elements of `T` off the front of `b`.
fn take<T: FromBytes + KnownLayout + Immutable + Unaligned>(
    b: &[u8],
    n: usize,
    size: usize,
) -> Result<(&[T], &[u8]), FlowStateError> {
    if b.len() < n * size {
        return Err(FlowStateError::Truncated);
    }
    let (head, rest) = b.split_at(n * size);
    let v = <[T]>::ref_from_bytes(head).map_err(|_| FlowStateError::Truncated)?;
    Ok((v, rest))
}

impl<'a> FlowStateMsg<'a> {
    /// View untrusted bytes (one datagram's payload).
    pub fn new_checked(b: &'a [u8]) -> Result<Self, FlowStateError> {
        // The version first, so a future layout is named as such even when
        // its header is shorter or longer than this one.
        match b.first() {
            None => return Err(FlowStateError::Truncated),
            Some(&v) if v != VERSION => return Err(FlowStateError::UnknownVersion(v)),
            Some(_) => {}
        }
        let (header, rest) = Header::ref_from_prefix(b).map_err(|_| FlowStateError::Truncated)?;
        if header.flags & (FLAG_REQUEST | FLAG_ANSWERED) == FLAG_REQUEST | FLAG_ANSWERED {
            return Err(FlowStateError::BadFlags);
        }
        let (egress_ports, rest) = take::<Id>(rest, usize::from(header.n_egress), ID_SIZE)?;
        let (port_groups, rest) = take::<Id>(rest, usize::from(header.n_groups), ID_SIZE)?;
        let nc = usize::from(u16::from_be_bytes(header.n_conntrack));
        let (conntrack, rest) = take::<ConntrackWire>(rest, nc, CONNTRACK_SIZE)?;
        let nn = usize::from(u16::from_be_bytes(header.n_nat));
        let (nat, rest) = take::<NatWire>(rest, nn, NAT_SIZE)?;
        let (learned, rest) = if header.flags & FLAG_LEARNED != 0 {
            let (n, rest) = take::<[u8; 2]>(rest, 1, 2)?;
            take::<LearnedWire>(rest, usize::from(u16::from_be_bytes(n[0])), LEARNED_SIZE)?
        } else {
            (&[][..], rest)
        };
        if !rest.is_empty() {
            return Err(FlowStateError::BadLength);
        }
        Ok(FlowStateMsg { header, egress_ports, port_groups, conntrack, nat, learned })
    }
}

/// A conntrack state code (`midonet-state`'s `ConnState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnStateCode {
    SynSent,
    New,
    Replied,
    Closing,
    Closed,
    /// A code this version does not define.
    Unknown(u8),
}

impl ConnStateCode {
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => ConnStateCode::SynSent,
            1 => ConnStateCode::New,
            2 => ConnStateCode::Replied,
            3 => ConnStateCode::Closing,
            4 => ConnStateCode::Closed,
            x => ConnStateCode::Unknown(x),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            ConnStateCode::SynSent => 0,
            ConnStateCode::New => 1,
            ConnStateCode::Replied => 2,
            ConnStateCode::Closing => 3,
            ConnStateCode::Closed => 4,
            ConnStateCode::Unknown(x) => x,
        }
    }
}

/// A NAT kind code (`midonet-state`'s `NatKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKindCode {
    Snat,
    Dnat,
    StickyDnat,
    /// A code this version does not define.
    Unknown(u8),
}

impl NatKindCode {
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => NatKindCode::Snat,
            1 => NatKindCode::Dnat,
            2 => NatKindCode::StickyDnat,
            x => NatKindCode::Unknown(x),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            NatKindCode::Snat => 0,
            NatKindCode::Dnat => 1,
            NatKindCode::StickyDnat => 2,
            NatKindCode::Unknown(x) => x,
        }
    }
}

/// What a learned entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnedKindCode {
    /// A router's ARP table: `ip` is at `mac`.
    RouterArp,
    /// A bridge's ARP table (its ARP suppression): `ip` is at `mac`.
    BridgeArp,
    /// A bridge's MAC table: `mac` on `vlan` is behind `port`.
    Mac,
    /// A code this version does not define.
    Unknown(u8),
}

impl LearnedKindCode {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => LearnedKindCode::RouterArp,
            2 => LearnedKindCode::BridgeArp,
            3 => LearnedKindCode::Mac,
            x => LearnedKindCode::Unknown(x),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            LearnedKindCode::RouterArp => 1,
            LearnedKindCode::BridgeArp => 2,
            LearnedKindCode::Mac => 3,
            LearnedKindCode::Unknown(x) => x,
        }
    }
}

/// An entry a simulation learned for a device's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LearnedRepr {
    pub kind: LearnedKindCode,
    /// The router or bridge.
    pub device: Id,
    pub vlan: u16,
    /// MAC entries: the port behind which `mac` is; zero for ARP.
    pub port: Id,
    /// ARP entries: the address `mac` answers for; 0.0.0.0 for MAC.
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// One direction of a connection at its tracker (the wire form of a
/// `ConnKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKeyRepr {
    pub tracker: Id,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// A tracked connection: its forward key and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConntrackRepr {
    pub key: ConnKeyRepr,
    pub state: ConnStateCode,
}

/// A NAT binding: forward key, kind, and the translated address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatRepr {
    pub key: ConnKeyRepr,
    pub kind: NatKindCode,
    pub bound_ip: Ipv4Addr,
    pub bound_port: u16,
}

/// What a message is for (`flags` bits 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Purpose {
    /// State to install (and, with an ingress port, the port it is of).
    #[default]
    State,
    /// Asks for the state of the ingress and egress ports.
    Request,
    /// Ends the answer to a request for the ingress and egress ports.
    Answered,
}

impl Purpose {
    fn flags(self) -> u8 {
        match self {
            Purpose::State => 0,
            Purpose::Request => FLAG_REQUEST,
            Purpose::Answered => FLAG_ANSWERED,
        }
    }

    fn from_flags(flags: u8) -> Purpose {
        if flags & FLAG_REQUEST != 0 {
            Purpose::Request
        } else if flags & FLAG_ANSWERED != 0 {
            Purpose::Answered
        } else {
            Purpose::State
        }
    }
}

/// The meaning of a flow-state message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowStateRepr {
    pub purpose: Purpose,
    /// The host that sent it.
    pub sender: Id,
    /// The port the connection's first packet entered by.
    pub ingress_port: Id,
    /// The ports it left by (several when flooded).
    pub egress_ports: Vec<Id>,
    /// The stateful port groups of the ingress and egress ports.
    pub port_groups: Vec<Id>,
    pub conntrack: Vec<ConntrackRepr>,
    pub nat: Vec<NatRepr>,
    /// Table entries learned by the sender.
    pub learned: Vec<LearnedRepr>,
}

impl FlowStateRepr {
    /// Decode a checked view.
    pub fn parse(m: &FlowStateMsg<'_>) -> FlowStateRepr {
        FlowStateRepr {
            purpose: Purpose::from_flags(m.header.flags),
            sender: m.header.sender,
            ingress_port: m.header.ingress,
            egress_ports: m.egress_ports.to_vec(),
            port_groups: m.port_groups.to_vec(),
            conntrack: m
                .conntrack
                .iter()
                .map(|c| ConntrackRepr {
                    key: ConnKeyRepr {
                        tracker: c.tracker,
                        src: Ipv4Addr::from(c.src),
                        dst: Ipv4Addr::from(c.dst),
                        src_port: u16::from_be_bytes(c.src_port),
                        dst_port: u16::from_be_bytes(c.dst_port),
                        proto: c.proto,
                    },
                    state: ConnStateCode::from_u8(c.state),
                })
                .collect(),
            nat: m
                .nat
                .iter()
                .map(|n| NatRepr {
                    key: ConnKeyRepr {
                        tracker: n.tracker,
                        src: Ipv4Addr::from(n.src),
                        dst: Ipv4Addr::from(n.dst),
                        src_port: u16::from_be_bytes(n.src_port),
                        dst_port: u16::from_be_bytes(n.dst_port),
                        proto: n.proto,
                    },
                    kind: NatKindCode::from_u8(n.kind),
                    bound_ip: Ipv4Addr::from(n.bound_ip),
                    bound_port: u16::from_be_bytes(n.bound_port),
                })
                .collect(),
            learned: m
                .learned
                .iter()
                .map(|l| LearnedRepr {
                    kind: LearnedKindCode::from_u8(l.kind),
                    device: l.device,
                    vlan: u16::from_be_bytes(l.vlan),
                    port: l.port,
                    ip: Ipv4Addr::from(l.ip),
                    mac: l.mac,
                })
                .collect(),
        }
    }

    /// Decode untrusted bytes.
    pub fn parse_bytes(b: &[u8]) -> Result<FlowStateRepr, FlowStateError> {
        FlowStateMsg::new_checked(b).map(|m| FlowStateRepr::parse(&m))
    }

    /// Size of the encoded message in bytes.
    pub fn buffer_len(&self) -> usize {
        HEADER_SIZE
            + ID_SIZE * (self.egress_ports.len() + self.port_groups.len())
            + CONNTRACK_SIZE * self.conntrack.len()
            + NAT_SIZE * self.nat.len()
            + if self.learned.is_empty() { 0 } else { 2 + LEARNED_SIZE * self.learned.len() }
    }

    /// Encode into the front of `buf`; returns the bytes written
    /// ([`buffer_len`](Self::buffer_len)).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, FlowStateError> {
        let count8 = |n: usize| u8::try_from(n).map_err(|_| FlowStateError::TooMany);
        let count16 = |n: usize| u16::try_from(n).map_err(|_| FlowStateError::TooMany);
        let header = Header {
            version: VERSION,
            flags: self.purpose.flags() | if self.learned.is_empty() { 0 } else { FLAG_LEARNED },
            n_egress: count8(self.egress_ports.len())?,
            n_groups: count8(self.port_groups.len())?,
            n_conntrack: count16(self.conntrack.len())?.to_be_bytes(),
            n_nat: count16(self.nat.len())?.to_be_bytes(),
            sender: self.sender,
            ingress: self.ingress_port,
        };
        let n_learned = count16(self.learned.len())?;
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(FlowStateError::BufferTooSmall)?;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(header.as_bytes());
        for id in self.egress_ports.iter().chain(&self.port_groups) {
            put(id);
        }
        for c in &self.conntrack {
            let w = ConntrackWire {
                tracker: c.key.tracker,
                src: c.key.src.octets(),
                dst: c.key.dst.octets(),
                src_port: c.key.src_port.to_be_bytes(),
                dst_port: c.key.dst_port.to_be_bytes(),
                proto: c.key.proto,
                state: c.state.to_u8(),
            };
            put(w.as_bytes());
        }
        for n in &self.nat {
            let w = NatWire {
                tracker: n.key.tracker,
                src: n.key.src.octets(),
                dst: n.key.dst.octets(),
                src_port: n.key.src_port.to_be_bytes(),
                dst_port: n.key.dst_port.to_be_bytes(),
                proto: n.key.proto,
                kind: n.kind.to_u8(),
                bound_ip: n.bound_ip.octets(),
                bound_port: n.bound_port.to_be_bytes(),
            };
            put(w.as_bytes());
        }
        if !self.learned.is_empty() {
            put(&n_learned.to_be_bytes());
        }
        for l in &self.learned {
            let w = LearnedWire {
                kind: l.kind.to_u8(),
                reserved: 0,
                vlan: l.vlan.to_be_bytes(),
                device: l.device,
                port: l.port,
                ip: l.ip.octets(),
                mac: l.mac,
            };
            put(w.as_bytes());
        }
        Ok(len)
    }

    /// Append the encoded message to `out` (a reused buffer).
    pub fn emit_vec(&self, out: &mut Vec<u8>) -> Result<(), FlowStateError> {
        let start = out.len();
        out.resize(start + self.buffer_len(), 0);
        match self.emit(&mut out[start..]) {
            Ok(_) => Ok(()),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

impl ConntrackWire {
    pub fn tracker(&self) -> Id {
        self.tracker
    }
    pub fn state(&self) -> ConnStateCode {
        ConnStateCode::from_u8(self.state)
    }
}

impl NatWire {
    pub fn tracker(&self) -> Id {
        self.tracker
    }
    pub fn kind(&self) -> NatKindCode {
        NatKindCode::from_u8(self.kind)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(b: u8) -> Id {
        [b; 16]
    }

    fn sample() -> FlowStateRepr {
        let key = ConnKeyRepr {
            tracker: id(0xd0),
            src: Ipv4Addr::new(10, 0, 0, 5),
            dst: Ipv4Addr::new(8, 8, 8, 8),
            src_port: 40000,
            dst_port: 53,
            proto: 17,
        };
        FlowStateRepr {
            purpose: Purpose::State,
            sender: id(0x11),
            ingress_port: id(0x22),
            egress_ports: vec![id(0x33)],
            port_groups: vec![],
            conntrack: vec![ConntrackRepr { key, state: ConnStateCode::New }],
            nat: vec![NatRepr {
                key,
                kind: NatKindCode::Snat,
                bound_ip: Ipv4Addr::new(203, 0, 113, 1),
                bound_port: 1100,
            }],
            learned: vec![],
        }
    }

    #[test]
    fn learned_entries_follow_the_nat_entries_under_their_flag() {
        let mut r = sample();
        r.learned = vec![
            LearnedRepr {
                kind: LearnedKindCode::RouterArp,
                device: id(0x44),
                vlan: 0,
                port: [0; 16],
                ip: Ipv4Addr::new(10, 2, 0, 4),
                mac: [2, 0, 0, 0, 0, 4],
            },
            LearnedRepr {
                kind: LearnedKindCode::Mac,
                device: id(0x55),
                vlan: 7,
                port: id(0x66),
                ip: Ipv4Addr::UNSPECIFIED,
                mac: [2, 0, 0, 0, 0, 5],
            },
        ];
        let mut b = Vec::new();
        r.emit_vec(&mut b).expect("emit");
        assert_eq!(b.len(), 122 + 2 + 2 * LEARNED_SIZE);
        assert_eq!(b[1], FLAG_LEARNED);
        assert_eq!(&b[122..124], &[0, 2]);
        let mut first = vec![1, 0, 0, 0];
        first.extend([0x44; 16]);
        first.extend([0; 16]);
        first.extend([10, 2, 0, 4, 2, 0, 0, 0, 0, 4]);
        assert_eq!(&b[124..124 + LEARNED_SIZE], &first[..]);
        assert_eq!(FlowStateRepr::parse_bytes(&b), Ok(r.clone()));
        // The flag without its section, or a section without the flag.
        let mut no_flag = b.clone();
        no_flag[1] = 0;
        assert_eq!(FlowStateRepr::parse_bytes(&no_flag), Err(FlowStateError::BadLength));
        assert_eq!(FlowStateRepr::parse_bytes(&b[..123]), Err(FlowStateError::Truncated));
        assert_eq!(FlowStateRepr::parse_bytes(&b[..b.len() - 1]), Err(FlowStateError::Truncated));
        // Unknown kinds survive.
        let mut odd = b.clone();
        odd[124] = 9;
        let got = FlowStateRepr::parse_bytes(&odd).expect("parses");
        assert_eq!(got.learned[0].kind, LearnedKindCode::Unknown(9));
    }

    #[test]
    fn bytes_round_trip_both_directions() {
        let r = sample();
        let mut b = Vec::new();
        r.emit_vec(&mut b).expect("emit");
        assert_eq!(b.len(), 122, "one connection, one binding, one egress port");
        let mut want = vec![1, 0, 1, 0, 0, 1, 0, 1];
        want.extend([0x11; 16]);
        want.extend([0x22; 16]);
        want.extend([0x33; 16]);
        let key = |w: &mut Vec<u8>| {
            w.extend([0xd0; 16]);
            w.extend([10, 0, 0, 5, 8, 8, 8, 8, 0x9c, 0x40, 0, 53, 17]);
        };
        key(&mut want);
        want.push(1); // state New
        key(&mut want);
        want.extend([0, 203, 0, 113, 1, 0x04, 0x4c]); // Snat, 203.0.113.1:1100
        assert_eq!(b, want);
        assert_eq!(FlowStateRepr::parse_bytes(&want), Ok(r));

        let m = FlowStateMsg::new_checked(&want).expect("view");
        assert_eq!(m.header.version(), 1);
        assert_eq!(m.header.sender(), id(0x11));
        assert_eq!(m.egress_ports, &[id(0x33)]);
        assert_eq!(m.conntrack[0].state(), ConnStateCode::New);
        assert_eq!(m.nat[0].kind(), NatKindCode::Snat);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let mut b = Vec::new();
        sample().emit_vec(&mut b).expect("emit");
        assert_eq!(FlowStateRepr::parse_bytes(&[]), Err(FlowStateError::Truncated));
        assert_eq!(FlowStateRepr::parse_bytes(&b[..39]), Err(FlowStateError::Truncated));
        for cut in 40..b.len() {
            assert_eq!(FlowStateRepr::parse_bytes(&b[..cut]), Err(FlowStateError::Truncated));
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(FlowStateRepr::parse_bytes(&long), Err(FlowStateError::BadLength));
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(FlowStateRepr::parse_bytes(&v2), Err(FlowStateError::UnknownVersion(2)));
        assert_eq!(FlowStateRepr::parse_bytes(&[0]), Err(FlowStateError::UnknownVersion(0)));
        // Reserved flags are ignored; unknown codes survive a round trip.
        let mut odd = b.clone();
        odd[1] = 0xf8;
        odd[40 + 16 + 29] = 9; // conntrack state
        odd[40 + 16 + 30 + 29] = 7; // nat kind
        let r = FlowStateRepr::parse_bytes(&odd).expect("parses");
        assert_eq!(r.conntrack[0].state, ConnStateCode::Unknown(9));
        assert_eq!(r.nat[0].kind, NatKindCode::Unknown(7));
        let mut again = Vec::new();
        r.emit_vec(&mut again).expect("emit");
        odd[1] = 0;
        assert_eq!(again, odd);
    }

    #[test]
    fn requests_and_answers_are_flagged_and_never_both() {
        let ask = FlowStateRepr {
            purpose: Purpose::Request,
            sender: id(0x11),
            ingress_port: id(0x22),
            egress_ports: vec![id(0x23)],
            ..Default::default()
        };
        let mut b = Vec::new();
        ask.emit_vec(&mut b).expect("emit");
        assert_eq!(b.len(), HEADER_SIZE + ID_SIZE);
        assert_eq!(b[1], FLAG_REQUEST);
        assert_eq!(FlowStateRepr::parse_bytes(&b), Ok(ask.clone()));
        let done = FlowStateRepr { purpose: Purpose::Answered, ..ask };
        let mut d = Vec::new();
        done.emit_vec(&mut d).expect("emit");
        assert_eq!(d[1], FLAG_ANSWERED);
        assert_eq!(FlowStateRepr::parse_bytes(&d), Ok(done));
        d[1] = FLAG_REQUEST | FLAG_ANSWERED;
        assert_eq!(FlowStateRepr::parse_bytes(&d), Err(FlowStateError::BadFlags));
    }

    #[test]
    fn emit_refuses_what_does_not_fit() {
        let mut r = sample();
        let mut small = [0u8; 100];
        assert_eq!(r.emit(&mut small), Err(FlowStateError::BufferTooSmall));
        r.egress_ports = vec![id(1); 256];
        let mut out = vec![7];
        assert_eq!(r.emit_vec(&mut out), Err(FlowStateError::TooMany));
        assert_eq!(out, vec![7], "nothing appended on error");
    }

    fn key() -> impl Strategy<Value = ConnKeyRepr> {
        (any::<[u8; 16]>(), any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>(), any::<u8>())
            .prop_map(|(tracker, s, d, sp, dp, proto)| ConnKeyRepr {
                tracker,
                src: Ipv4Addr::from(s),
                dst: Ipv4Addr::from(d),
                src_port: sp,
                dst_port: dp,
                proto,
            })
    }

    fn repr() -> impl Strategy<Value = FlowStateRepr> {
        use proptest::collection::vec;
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            vec(any::<[u8; 16]>(), 0..4),
            vec(any::<[u8; 16]>(), 0..4),
            vec((key(), any::<u8>()), 0..8),
            vec((key(), any::<u8>(), any::<u32>(), any::<u16>()), 0..8),
            vec(
                (
                    any::<u8>(),
                    any::<[u8; 16]>(),
                    any::<u16>(),
                    any::<[u8; 16]>(),
                    any::<u32>(),
                    any::<[u8; 6]>(),
                ),
                0..4,
            ),
        )
            .prop_flat_map(|r| {
                let purpose = prop_oneof![
                    Just(Purpose::State),
                    Just(Purpose::Request),
                    Just(Purpose::Answered)
                ];
                (Just(r), purpose)
            })
            .prop_map(
                |((sender, ingress_port, egress_ports, port_groups, ct, nat, learned), purpose)| {
                    FlowStateRepr {
                        purpose,
                        sender,
                        ingress_port,
                        egress_ports,
                        port_groups,
                        conntrack: ct
                            .into_iter()
                            .map(|(key, s)| ConntrackRepr { key, state: ConnStateCode::from_u8(s) })
                            .collect(),
                        nat: nat
                            .into_iter()
                            .map(|(key, k, ip, port)| NatRepr {
                                key,
                                kind: NatKindCode::from_u8(k),
                                bound_ip: Ipv4Addr::from(ip),
                                bound_port: port,
                            })
                            .collect(),
                        learned: learned
                            .into_iter()
                            .map(|(k, device, vlan, port, ip, mac)| LearnedRepr {
                                kind: LearnedKindCode::from_u8(k),
                                device,
                                vlan,
                                port,
                                ip: Ipv4Addr::from(ip),
                                mac,
                            })
                            .collect(),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn repr_round_trips(r in repr()) {
            let mut b = Vec::new();
            r.emit_vec(&mut b).expect("emit");
            prop_assert_eq!(b.len(), r.buffer_len());
            prop_assert_eq!(FlowStateRepr::parse_bytes(&b), Ok(r));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = FlowStateRepr::parse_bytes(&b) {
                let mut again = Vec::new();
                r.emit_vec(&mut again).expect("a parsed message emits");
                // Byte for byte without a learned section (its entries'
                // reserved byte is re-emitted as zero, an empty one not at all).
                if b[1] & FLAG_LEARNED == 0 {
                    prop_assert_eq!(&again[2..], &b[2..]);
                }
                prop_assert_eq!(FlowStateRepr::parse_bytes(&again), Ok(r));
            }
        }
    }
}
