//! [`FlowMatch`]: the packet's key as the simulation sees it, plus the mask of
//! what it has read.
//!
//! The simulation never reads [`FlowKey`] fields directly: it calls the
//! getters here, each of which returns the field *and* marks it in the mask.
//! That makes the megaflow invariant (crate docs) hold by construction. The
//! setters record header rewrites (MAC rewrite at a router hop, TTL decrement,
//! NAT) without marking: a rewrite does not make the flow depend on the old
//! value. At the end, [`FlowMatch::original`] masked by [`FlowMatch::mask`] is
//! the megaflow's match and [`diff_actions`](crate::diff_actions)`(original,
//! current)` gives the rewrite actions.
//!
//! ```text
//!   extract ──> FlowMatch::new(key) ──getters (mark)──> sim ──setters──> current
//!                 original ──────────────────────────────────────┐   │
//!                 mask ─── apply ──> MaskedKey (install) ────────┘   └─> diff_actions
//! ```
//!
//! Reading a field after rewriting it still marks it: that over-marks (safe)
//! rather than reasoning about which reads a rewrite shadows.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::key::{FlowKey, FragType, InPort, MacAddr};
use crate::mask::{FieldId, FlowMask};

/// A packet key under simulation: original key, current (rewritten) key, and
/// the mask of fields read so far. `Copy`, so a fork can save and restore it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowMatch {
    original: FlowKey,
    current: FlowKey,
    mask: FlowMask,
}

macro_rules! getter {
    ($(#[$doc:meta])* $name:ident, $field:ident, $id:ident, $ty:ty) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(&mut self) -> $ty {
            self.mask.mark(FieldId::$id);
            self.current.$field
        }
    };
}

impl FlowMatch {
    /// Start simulating `key`. The in-port is always matched (a flow never
    /// spans ingress ports).
    pub fn new(key: FlowKey) -> Self {
        let mut mask = FlowMask::empty();
        mask.mark(FieldId::InPort);
        FlowMatch { original: key, current: key, mask }
    }

    /// The key as extracted from the packet, before any rewrite.
    pub fn original(&self) -> &FlowKey {
        &self.original
    }

    /// The key after the rewrites so far. **Does not mark**: for tracing,
    /// building frames and computing actions only, never for a decision.
    pub fn current(&self) -> &FlowKey {
        &self.current
    }

    /// The mask of fields read so far.
    pub fn mask(&self) -> &FlowMask {
        &self.mask
    }

    /// Mark a field as read without reading it (e.g. a rule that tested a
    /// field through some other path).
    pub fn mark(&mut self, field: FieldId) {
        self.mask.mark(field);
    }

    /// Merge another branch's mask into this one (fork/merge in the simulation).
    pub fn union_mask(&mut self, other: &FlowMask) {
        self.mask.union(other);
    }

    /// Take the mask of fields read so far, leaving one with only the
    /// in-port marked (as [`new`](Self::new) starts): the simulation splits
    /// a flow in two halves this way (`midonet_sim::Split`) and, if the
    /// split is abandoned, unions the taken mask back in.
    pub fn take_mask(&mut self) -> FlowMask {
        let mut fresh = FlowMask::empty();
        fresh.mark(FieldId::InPort);
        std::mem::replace(&mut self.mask, fresh)
    }

    /// Replace the current key, keeping the mask: restores a saved key after a
    /// fork branch (the branch's reads stay marked, which is what a merged
    /// flow needs).
    pub fn restore_current(&mut self, key: FlowKey) {
        self.current = key;
    }

    getter!(/// Ingress port or tunnel key.
        in_port, in_port, InPort, InPort);
    getter!(/// Ethernet source.
        eth_src, eth_src, EthSrc, MacAddr);
    getter!(/// Ethernet destination.
        eth_dst, eth_dst, EthDst, MacAddr);
    getter!(/// Ethertype (after any VLAN tag).
        ethertype, ethertype, EthType, u16);
    getter!(/// Outer VLAN id, `None` if untagged.
        vlan_vid, vlan_vid, VlanVid, Option<u16>);
    getter!(/// VLAN priority.
        vlan_pcp, vlan_pcp, VlanPcp, u8);
    getter!(/// ARP opcode.
        arp_op, arp_op, ArpOp, u16);
    getter!(/// ARP sender hardware address.
        arp_sha, arp_sha, ArpSha, MacAddr);
    getter!(/// ARP sender protocol address.
        arp_spa, arp_spa, ArpSpa, Ipv4Addr);
    getter!(/// ARP target hardware address.
        arp_tha, arp_tha, ArpTha, MacAddr);
    getter!(/// ARP target protocol address.
        arp_tpa, arp_tpa, ArpTpa, Ipv4Addr);
    getter!(/// IPv4 source (marks all 32 bits).
        ipv4_src, ipv4_src, Ipv4Src, Ipv4Addr);
    getter!(/// IPv4 destination (marks all 32 bits).
        ipv4_dst, ipv4_dst, Ipv4Dst, Ipv4Addr);
    getter!(/// IPv6 source (marks all 128 bits).
        ipv6_src, ipv6_src, Ipv6Src, Ipv6Addr);
    getter!(/// IPv6 destination (marks all 128 bits).
        ipv6_dst, ipv6_dst, Ipv6Dst, Ipv6Addr);
    getter!(/// IP protocol.
        ip_proto, ip_proto, IpProto, u8);
    getter!(/// TOS / traffic class byte.
        ip_tos, ip_tos, IpTos, u8);
    getter!(/// TTL / hop limit.
        ip_ttl, ip_ttl, IpTtl, u8);
    getter!(/// Fragment type.
        ip_frag, ip_frag, IpFrag, FragType);
    getter!(/// L4 source port.
        l4_src, l4_src, L4Src, u16);
    getter!(/// L4 destination port.
        l4_dst, l4_dst, L4Dst, u16);
    getter!(/// TCP flags.
        tcp_flags, tcp_flags, TcpFlags, u16);
    getter!(/// ICMP type.
        icmp_type, icmp_type, IcmpType, u8);
    getter!(/// ICMP code.
        icmp_code, icmp_code, IcmpCode, u8);
    getter!(/// ICMP echo identifier.
        icmp_id, icmp_id, IcmpId, u16);

    /// The top `len` bits of the IPv4 source (the rest zero); marks only
    /// those bits. Use for LPM and CIDR tests so the flow covers the prefix.
    pub fn ipv4_src_prefix(&mut self, len: u8) -> Ipv4Addr {
        self.mask.mark_prefix(FieldId::Ipv4Src, len);
        prefix_v4(self.current.ipv4_src, len)
    }

    /// The top `len` bits of the IPv4 destination; marks only those bits.
    pub fn ipv4_dst_prefix(&mut self, len: u8) -> Ipv4Addr {
        self.mask.mark_prefix(FieldId::Ipv4Dst, len);
        prefix_v4(self.current.ipv4_dst, len)
    }

    /// True when the IPv4 destination lies in `net/len`; marks only the top
    /// `len` bits (the bits the answer depends on).
    pub fn ipv4_dst_in(&mut self, net: Ipv4Addr, len: u8) -> bool {
        self.ipv4_dst_prefix(len) == prefix_v4(net, len)
    }

    /// True when the IPv4 source lies in `net/len`; marks only the top `len` bits.
    pub fn ipv4_src_in(&mut self, net: Ipv4Addr, len: u8) -> bool {
        self.ipv4_src_prefix(len) == prefix_v4(net, len)
    }

    /// Rewrite the Ethernet source (does not mark).
    pub fn set_eth_src(&mut self, v: MacAddr) {
        self.current.eth_src = v;
    }
    /// Rewrite the Ethernet destination (does not mark).
    pub fn set_eth_dst(&mut self, v: MacAddr) {
        self.current.eth_dst = v;
    }
    /// Set, change or remove the VLAN tag (does not mark).
    pub fn set_vlan(&mut self, tag: Option<(u16, u8)>) {
        match tag {
            Some((vid, pcp)) => {
                self.current.vlan_vid = Some(vid & 0x0fff);
                self.current.vlan_pcp = pcp & 0x07;
            }
            None => {
                self.current.vlan_vid = None;
                self.current.vlan_pcp = 0;
            }
        }
    }
    /// Rewrite the IPv4 source (NAT; does not mark).
    pub fn set_ipv4_src(&mut self, v: Ipv4Addr) {
        self.current.ipv4_src = v;
    }
    /// Rewrite the IPv4 destination (NAT; does not mark).
    pub fn set_ipv4_dst(&mut self, v: Ipv4Addr) {
        self.current.ipv4_dst = v;
    }
    /// Rewrite the TTL (does not mark; to decrement, read with
    /// [`ip_ttl`](Self::ip_ttl) first, which marks it).
    pub fn set_ip_ttl(&mut self, v: u8) {
        self.current.ip_ttl = v;
    }
    /// Rewrite the TOS byte (does not mark).
    pub fn set_ip_tos(&mut self, v: u8) {
        self.current.ip_tos = v;
    }
    /// Rewrite the L4 source port (NAT; does not mark).
    pub fn set_l4_src(&mut self, v: u16) {
        self.current.l4_src = v;
    }
    /// Rewrite the L4 destination port (NAT; does not mark).
    pub fn set_l4_dst(&mut self, v: u16) {
        self.current.l4_dst = v;
    }
    /// Rewrite the ICMP echo identifier (ICMP NAT; does not mark).
    pub fn set_icmp_id(&mut self, v: u16) {
        self.current.icmp_id = v;
    }
}

fn prefix_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    Ipv4Addr::from(u32::from(a) & m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ETH_TYPE_IPV4;
    use std::net::Ipv6Addr;

    fn key() -> FlowKey {
        FlowKey {
            in_port: InPort::Port(1),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 0xfe]),
            ethertype: ETH_TYPE_IPV4,
            ipv4_src: Ipv4Addr::new(10, 0, 0, 2),
            ipv4_dst: Ipv4Addr::new(192, 168, 7, 9),
            ip_proto: 6,
            ip_ttl: 64,
            l4_dst: 22,
            ..FlowKey::default()
        }
    }

    #[test]
    fn new_marks_only_in_port() {
        let m = FlowMatch::new(key());
        assert_eq!(m.mask().fields().collect::<Vec<_>>(), vec![FieldId::InPort]);
    }

    #[test]
    fn getters_mark_setters_do_not() {
        let mut m = FlowMatch::new(key());
        assert_eq!(m.eth_dst(), MacAddr([2, 0, 0, 0, 0, 0xfe]));
        let ttl = m.ip_ttl();
        m.set_ip_ttl(ttl - 1);
        m.set_eth_src(MacAddr([2, 0, 0, 0, 0, 0xaa]));
        m.set_ipv4_dst(Ipv4Addr::new(10, 9, 9, 9));
        assert!(m.mask().is_marked(FieldId::EthDst));
        assert!(m.mask().is_marked(FieldId::IpTtl));
        assert!(!m.mask().is_marked(FieldId::EthSrc));
        assert!(!m.mask().is_marked(FieldId::Ipv4Dst));
        assert_eq!(m.original().ip_ttl, 64);
        assert_eq!(m.current().ip_ttl, 63);
        assert_eq!(m.current().ipv4_dst, Ipv4Addr::new(10, 9, 9, 9));
    }

    #[test]
    fn prefix_getters_mark_only_prefix() {
        let mut m = FlowMatch::new(key());
        assert_eq!(m.ipv4_dst_prefix(16), Ipv4Addr::new(192, 168, 0, 0));
        assert_eq!(m.mask().prefix_len(FieldId::Ipv4Dst), 16);
        assert!(m.ipv4_dst_in(Ipv4Addr::new(192, 168, 7, 0), 24));
        assert_eq!(m.mask().prefix_len(FieldId::Ipv4Dst), 24);
        assert!(!m.ipv4_src_in(Ipv4Addr::new(10, 1, 0, 0), 16));
        assert_eq!(m.mask().prefix_len(FieldId::Ipv4Src), 16);
        // A /0 route reads nothing.
        let mut d = FlowMatch::new(key());
        assert!(d.ipv4_dst_in(Ipv4Addr::UNSPECIFIED, 0));
        assert!(!d.mask().is_marked(FieldId::Ipv4Dst));
    }

    #[test]
    fn fork_restore_keeps_reads() {
        let mut m = FlowMatch::new(key());
        let saved = *m.current();
        m.set_eth_dst(MacAddr::BROADCAST);
        let _ = m.l4_dst();
        m.restore_current(saved);
        assert_eq!(m.current(), &saved);
        assert!(m.mask().is_marked(FieldId::L4Dst), "branch reads survive the restore");
        let mut other = FlowMask::empty();
        other.mark(FieldId::IcmpId);
        m.union_mask(&other);
        assert!(m.mask().is_marked(FieldId::IcmpId));
    }

    /// Fields in which `a` and `b` differ (a table independent of `getter!`).
    fn differing(a: &FlowKey, b: &FlowKey) -> Vec<FieldId> {
        let pairs = [
            (FieldId::InPort, a.in_port != b.in_port),
            (FieldId::EthSrc, a.eth_src != b.eth_src),
            (FieldId::EthDst, a.eth_dst != b.eth_dst),
            (FieldId::EthType, a.ethertype != b.ethertype),
            (FieldId::VlanVid, a.vlan_vid != b.vlan_vid),
            (FieldId::VlanPcp, a.vlan_pcp != b.vlan_pcp),
            (FieldId::ArpOp, a.arp_op != b.arp_op),
            (FieldId::ArpSha, a.arp_sha != b.arp_sha),
            (FieldId::ArpSpa, a.arp_spa != b.arp_spa),
            (FieldId::ArpTha, a.arp_tha != b.arp_tha),
            (FieldId::ArpTpa, a.arp_tpa != b.arp_tpa),
            (FieldId::Ipv4Src, a.ipv4_src != b.ipv4_src),
            (FieldId::Ipv4Dst, a.ipv4_dst != b.ipv4_dst),
            (FieldId::Ipv6Src, a.ipv6_src != b.ipv6_src),
            (FieldId::Ipv6Dst, a.ipv6_dst != b.ipv6_dst),
            (FieldId::IpProto, a.ip_proto != b.ip_proto),
            (FieldId::IpTos, a.ip_tos != b.ip_tos),
            (FieldId::IpTtl, a.ip_ttl != b.ip_ttl),
            (FieldId::IpFrag, a.ip_frag != b.ip_frag),
            (FieldId::L4Src, a.l4_src != b.l4_src),
            (FieldId::L4Dst, a.l4_dst != b.l4_dst),
            (FieldId::TcpFlags, a.tcp_flags != b.tcp_flags),
            (FieldId::IcmpType, a.icmp_type != b.icmp_type),
            (FieldId::IcmpCode, a.icmp_code != b.icmp_code),
            (FieldId::IcmpId, a.icmp_id != b.icmp_id),
        ];
        pairs.into_iter().filter(|(_, d)| *d).map(|(f, _)| f).collect()
    }

    #[test]
    fn each_getter_marks_its_own_field() {
        // Guards the getter! table against copy-paste slips: a getter that
        // returned one field and marked another would break the invariant.
        type Getter = fn(&mut FlowMatch) -> FlowKey;
        let k = FlowKey { vlan_vid: Some(3), ..key() };
        let cases: [(FieldId, Getter); 25] = [
            (FieldId::InPort, |m| FlowKey { in_port: m.in_port(), ..FlowKey::default() }),
            (FieldId::EthSrc, |m| FlowKey { eth_src: m.eth_src(), ..FlowKey::default() }),
            (FieldId::EthDst, |m| FlowKey { eth_dst: m.eth_dst(), ..FlowKey::default() }),
            (FieldId::EthType, |m| FlowKey { ethertype: m.ethertype(), ..FlowKey::default() }),
            (FieldId::VlanVid, |m| FlowKey { vlan_vid: m.vlan_vid(), ..FlowKey::default() }),
            (FieldId::VlanPcp, |m| FlowKey { vlan_pcp: m.vlan_pcp(), ..FlowKey::default() }),
            (FieldId::ArpOp, |m| FlowKey { arp_op: m.arp_op(), ..FlowKey::default() }),
            (FieldId::ArpSha, |m| FlowKey { arp_sha: m.arp_sha(), ..FlowKey::default() }),
            (FieldId::ArpSpa, |m| FlowKey { arp_spa: m.arp_spa(), ..FlowKey::default() }),
            (FieldId::ArpTha, |m| FlowKey { arp_tha: m.arp_tha(), ..FlowKey::default() }),
            (FieldId::ArpTpa, |m| FlowKey { arp_tpa: m.arp_tpa(), ..FlowKey::default() }),
            (FieldId::Ipv4Src, |m| FlowKey { ipv4_src: m.ipv4_src(), ..FlowKey::default() }),
            (FieldId::Ipv4Dst, |m| FlowKey { ipv4_dst: m.ipv4_dst(), ..FlowKey::default() }),
            (FieldId::Ipv6Src, |m| FlowKey { ipv6_src: m.ipv6_src(), ..FlowKey::default() }),
            (FieldId::Ipv6Dst, |m| FlowKey { ipv6_dst: m.ipv6_dst(), ..FlowKey::default() }),
            (FieldId::IpProto, |m| FlowKey { ip_proto: m.ip_proto(), ..FlowKey::default() }),
            (FieldId::IpTos, |m| FlowKey { ip_tos: m.ip_tos(), ..FlowKey::default() }),
            (FieldId::IpTtl, |m| FlowKey { ip_ttl: m.ip_ttl(), ..FlowKey::default() }),
            (FieldId::IpFrag, |m| FlowKey { ip_frag: m.ip_frag(), ..FlowKey::default() }),
            (FieldId::L4Src, |m| FlowKey { l4_src: m.l4_src(), ..FlowKey::default() }),
            (FieldId::L4Dst, |m| FlowKey { l4_dst: m.l4_dst(), ..FlowKey::default() }),
            (FieldId::TcpFlags, |m| FlowKey { tcp_flags: m.tcp_flags(), ..FlowKey::default() }),
            (FieldId::IcmpType, |m| FlowKey { icmp_type: m.icmp_type(), ..FlowKey::default() }),
            (FieldId::IcmpCode, |m| FlowKey { icmp_code: m.icmp_code(), ..FlowKey::default() }),
            (FieldId::IcmpId, |m| FlowKey { icmp_id: m.icmp_id(), ..FlowKey::default() }),
        ];
        // A key where every field is distinct from the default, so a getter
        // that returned the wrong field would be visible.
        let full = FlowKey {
            in_port: InPort::Port(9),
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            arp_op: 1,
            arp_sha: MacAddr([2, 0, 0, 0, 0, 3]),
            arp_spa: Ipv4Addr::new(1, 1, 1, 1),
            arp_tha: MacAddr([2, 0, 0, 0, 0, 4]),
            arp_tpa: Ipv4Addr::new(2, 2, 2, 2),
            ipv6_src: Ipv6Addr::LOCALHOST,
            ipv6_dst: Ipv6Addr::new(1, 0, 0, 0, 0, 0, 0, 1),
            ip_tos: 4,
            ip_frag: FragType::First,
            vlan_pcp: 5,
            l4_src: 7,
            tcp_flags: 2,
            icmp_type: 8,
            icmp_code: 1,
            icmp_id: 11,
            ..k
        };
        for (field, get) in cases {
            let mut m = FlowMatch::new(full);
            let seen = get(&mut m);
            assert_eq!(
                differing(&seen, &FlowKey::default()),
                vec![field],
                "{field:?} getter returns its field"
            );
            assert_eq!(
                differing(&seen, &full).len(),
                FieldId::ALL.len() - 1,
                "{field:?} getter returns the right value"
            );
            let mut expected = FlowMask::empty();
            expected.mark(field);
            expected.mark(FieldId::InPort);
            assert_eq!(
                m.mask(),
                &expected,
                "{field:?} getter marks its field and prerequisites only"
            );
        }
    }

    #[test]
    fn take_mask_restarts_at_in_port() {
        let mut m = FlowMatch::new(key());
        let _ = (m.l4_dst(), m.ipv4_dst_prefix(8));
        let taken = m.take_mask();
        assert!(taken.is_marked(FieldId::L4Dst));
        assert_eq!(taken.prefix_len(FieldId::Ipv4Dst), 8);
        assert_eq!(m.mask(), FlowMatch::new(key()).mask(), "only the in-port is left");
        m.union_mask(&taken);
        assert_eq!(m.mask(), &taken);
    }

    #[test]
    fn set_vlan_clamps_and_clears() {
        let mut m = FlowMatch::new(key());
        m.set_vlan(Some((0x1005, 9)));
        assert_eq!((m.current().vlan_vid, m.current().vlan_pcp), (Some(5), 1));
        m.set_vlan(None);
        assert_eq!((m.current().vlan_vid, m.current().vlan_pcp), (None, 0));
    }
}
