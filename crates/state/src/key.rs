//! Connection keys: what a conntrack entry or a NAT binding is keyed by.
//!
//! MidoNet's `ConnTrackKey` (`state/ConnTrackState.scala`): network source,
//! ICMP id or transport source, network destination, ICMP id or transport
//! destination, network protocol, and the id of the device that tracks the
//! connection. The same shape keys NAT (`NatKey`, plus its type).
//!
//! The key of the other direction is *derived* ([`ConnKey::reversed`]),
//! never searched for: a return packet's key reversed is its connection's
//! forward key, one hash lookup.

use std::net::Ipv4Addr;

use midonet_flow::FlowKey;
use midonet_model::{DeviceId, PortGroupId};
use serde::Serialize;
use uuid::Uuid;

/// IP protocol numbers the tables know about (the flow key's).
pub mod proto {
    pub use midonet_flow::key::{IP_PROTO_ICMP as ICMP, IP_PROTO_TCP as TCP, IP_PROTO_UDP as UDP};
}

use midonet_flow::key::ETH_TYPE_IPV4;
use midonet_wire::icmp::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST};

/// Who tracks a connection: a device (bridge or router) whose chain asked
/// about it, or a stateful port group (reference §2.9–2.11).
///
/// A UUID either way; device and port-group ids never collide, so the kind
/// is not stored (it would cost a byte per entry for nothing).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
#[serde(transparent)]
pub struct TrackerId(pub Uuid);

impl From<DeviceId> for TrackerId {
    fn from(d: DeviceId) -> Self {
        TrackerId(d.uuid())
    }
}

impl From<PortGroupId> for TrackerId {
    fn from(g: PortGroupId) -> Self {
        TrackerId(g.uuid())
    }
}

impl std::fmt::Display for TrackerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One direction of a connection as a packet shows it at its tracker.
///
/// For ICMP echo both ports hold the echo identifier (MidoNet's
/// `icmpIdOrTransportSrc/Dst`), so reversing a request's key gives its
/// reply's. IPv4 only: MidoNet tracks and NATs IPv4 TCP, UDP and ICMP, and
/// everything else counts as a forward flow.
///
/// 30 bytes, no padding inside (see the crate docs for the table's size).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
pub struct ConnKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Transport source port, or the ICMP echo id.
    pub src_port: u16,
    /// Transport destination port, or the ICMP echo id.
    pub dst_port: u16,
    /// IP protocol.
    pub proto: u8,
    /// The device or port group tracking the connection.
    pub tracker: TrackerId,
}

impl ConnKey {
    /// The key of the opposite direction: addresses and ports swapped, same
    /// protocol and tracker.
    pub fn reversed(&self) -> ConnKey {
        ConnKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            tracker: self.tracker,
        }
    }

    /// The key of a packet as the flow key shows it, or `None` for what is
    /// not tracked (not IPv4, not TCP/UDP/ICMP echo): such packets always
    /// count as forward flows (reference §2.11). ICMP errors are not
    /// connections of their own; their embedded header is (dynamic NAT
    /// reverse-translates it).
    pub fn from_flow(key: &FlowKey, tracker: TrackerId) -> Option<ConnKey> {
        if key.ethertype != ETH_TYPE_IPV4 {
            return None;
        }
        let (src_port, dst_port) = match key.ip_proto {
            proto::TCP | proto::UDP => (key.l4_src, key.l4_dst),
            proto::ICMP if matches!(key.icmp_type, ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {
                (key.icmp_id, key.icmp_id)
            }
            _ => return None,
        };
        Some(ConnKey {
            src: key.ipv4_src,
            dst: key.ipv4_dst,
            src_port,
            dst_port,
            proto: key.ip_proto,
            tracker,
        })
    }

    /// Whether the protocol carries ICMP echo ids in the port fields.
    pub fn is_icmp(&self) -> bool {
        self.proto == proto::ICMP
    }
}

impl std::fmt::Display for ConnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} > {}:{} proto {} at {}",
            self.src, self.src_port, self.dst, self.dst_port, self.proto, self.tracker
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TrackerId {
        TrackerId(Uuid::from_u128(7))
    }

    #[test]
    fn reversing_twice_is_identity_and_swaps_ends() {
        let k = ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(8, 8, 8, 8),
            src_port: 40000,
            dst_port: 53,
            proto: proto::UDP,
            tracker: t(),
        };
        let r = k.reversed();
        assert_eq!((r.src, r.src_port, r.dst, r.dst_port), (k.dst, 53, k.src, 40000));
        assert_eq!(r.reversed(), k);
        assert_eq!(std::mem::size_of::<ConnKey>(), 30);
    }

    #[test]
    fn flow_keys_map_to_conn_keys() {
        let mut fk = FlowKey {
            ethertype: ETH_TYPE_IPV4,
            ipv4_src: Ipv4Addr::new(10, 0, 0, 1),
            ipv4_dst: Ipv4Addr::new(10, 0, 0, 2),
            ip_proto: proto::TCP,
            l4_src: 1234,
            l4_dst: 80,
            ..FlowKey::default()
        };
        let k = ConnKey::from_flow(&fk, t()).expect("tcp is tracked");
        assert_eq!((k.src_port, k.dst_port, k.proto), (1234, 80, proto::TCP));

        fk.ip_proto = proto::ICMP;
        fk.icmp_type = ICMP_ECHO_REQUEST;
        fk.icmp_id = 99;
        let k = ConnKey::from_flow(&fk, t()).expect("echo is tracked");
        assert_eq!((k.src_port, k.dst_port), (99, 99));
        // The reply's key is the request's reversed.
        let reply = FlowKey {
            ipv4_src: fk.ipv4_dst,
            ipv4_dst: fk.ipv4_src,
            icmp_type: ICMP_ECHO_REPLY,
            ..fk
        };
        assert_eq!(ConnKey::from_flow(&reply, t()), Some(k.reversed()));

        fk.icmp_type = 3; // destination unreachable: not a connection
        assert_eq!(ConnKey::from_flow(&fk, t()), None);
        fk.ip_proto = 47; // GRE
        assert_eq!(ConnKey::from_flow(&fk, t()), None);
        fk.ip_proto = proto::UDP;
        fk.ethertype = 0x86dd;
        assert_eq!(ConnKey::from_flow(&fk, t()), None);
    }
}
