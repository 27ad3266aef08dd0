//! Flow actions: the contract between the simulation and the datapath.
//!
//! An [`Actions`] list is executed in order on one packet: set-field and VLAN
//! actions rewrite the frame (see [`apply_action`](crate::apply_action)),
//! `Output` and `Tunnel` emit a copy of the frame *as rewritten so far*, and
//! `Userspace` sends a copy up to the agent. Because rewrites apply to the
//! copies emitted after them, a flood with per-port rewrites is one list:
//! `set(a) output(1) set(b) output(2)`.
//!
//! An empty list drops the packet. There is deliberately no `Drop` action:
//! it would be redundant with the empty list and ambiguous next to outputs.
//! Why a flow drops (and for how long it is installed) is simulation
//! metadata that travels beside the actions.
//!
//! [`Actions`] stores up to [`Actions::INLINE`] actions inline, so the common
//! flow (rewrite MACs, decrement TTL, output) never allocates; longer lists
//! (floods) spill to the heap.

use std::fmt;
use std::net::Ipv4Addr;

use crate::key::{FlowKey, MacAddr};

/// Why a packet goes to the agent instead of (or in addition to) being forwarded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum UserspaceReason {
    /// The flow cannot be expressed as a megaflow (e.g. it depends on the
    /// ICMP echo id or ICMP error payload): simulate every packet
    /// (what MidoNet calls a "userspace only" flow).
    Simulate,
    /// The packet is being traced; simulate it with tracing on.
    Trace,
    /// Another reason, opaque to this crate.
    Other(u16),
}

impl fmt::Display for UserspaceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserspaceReason::Simulate => f.write_str("simulate"),
            UserspaceReason::Trace => f.write_str("trace"),
            UserspaceReason::Other(n) => write!(f, "{n}"),
        }
    }
}

/// One datapath action.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// Rewrite the Ethernet source.
    SetEthSrc(MacAddr),
    /// Rewrite the Ethernet destination.
    SetEthDst(MacAddr),
    /// Rewrite the IPv4 source (updates the IPv4 and L4 checksums).
    SetIpv4Src(Ipv4Addr),
    /// Rewrite the IPv4 destination (updates the IPv4 and L4 checksums).
    SetIpv4Dst(Ipv4Addr),
    /// Rewrite the IPv4 TTL / IPv6 hop limit.
    SetTtl(u8),
    /// Rewrite the IPv4 TOS / IPv6 traffic class byte.
    SetTos(u8),
    /// Rewrite the TCP/UDP/SCTP source port.
    SetL4Src(u16),
    /// Rewrite the TCP/UDP/SCTP destination port.
    SetL4Dst(u16),
    /// Rewrite the ICMPv4 echo identifier.
    SetIcmpId(u16),
    /// Push an outer 802.1Q tag (TPID 0x8100).
    PushVlan {
        /// VLAN id (12 bits).
        vid: u16,
        /// Priority (3 bits).
        pcp: u8,
    },
    /// Pop the outer 802.1Q tag.
    PopVlan,
    /// Emit the frame on a local datapath port.
    Output(u32),
    /// Emit the frame VXLAN-encapsulated to another host.
    Tunnel {
        /// Underlay IPv4 address of the destination host.
        dst: Ipv4Addr,
        /// Tunnel key (VNI, 24 bits): the egress port's key.
        key: u32,
    },
    /// Send a copy to the agent.
    Userspace(UserspaceReason),
    /// Reverse-translate the packet from the datapath's own reverse-NAT
    /// table, then look it up again under the in-port
    /// `RECIRC_PORT_BASE + id` (`midonet_datapath`): the first half of a
    /// flow split at a `rev_snat`/`rev_dnat` (`midonet_sim::Split`). Always
    /// a flow's only action; a datapath without such a table never gets it.
    /// No binding in the table: the packet goes to the agent as a miss.
    RevNatRecirc(u32),
}

impl Action {
    /// True for actions that rewrite the frame (set-field and VLAN).
    pub fn is_rewrite(&self) -> bool {
        !self.is_emit()
    }
    /// True for actions that emit a copy of the frame (`Output`, `Tunnel`,
    /// `Userspace`), or hand it on whole (`RevNatRecirc`).
    pub fn is_emit(&self) -> bool {
        matches!(
            self,
            Action::Output(_)
                | Action::Tunnel { .. }
                | Action::Userspace(_)
                | Action::RevNatRecirc(_)
        )
    }
}

/// A list of actions, inline up to [`Actions::INLINE`] entries.
#[derive(Clone)]
pub struct Actions {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    // Unused slots hold `Action::PopVlan` as filler; only `..len` is ever exposed.
    Inline { len: u8, items: [Action; Actions::INLINE] },
    Heap(Vec<Action>),
}

impl Actions {
    /// Number of actions stored without allocating.
    pub const INLINE: usize = 8;

    /// An empty list (drops the packet).
    pub const fn new() -> Self {
        Actions { repr: Repr::Inline { len: 0, items: [Action::PopVlan; Self::INLINE] } }
    }

    /// Append an action.
    pub fn push(&mut self, a: Action) {
        match &mut self.repr {
            Repr::Inline { len, items } => {
                let n = usize::from(*len);
                if n < Self::INLINE {
                    items[n] = a;
                    *len += 1;
                } else {
                    let mut v = Vec::with_capacity(Self::INLINE * 2);
                    v.extend_from_slice(&items[..]);
                    v.push(a);
                    self.repr = Repr::Heap(v);
                }
            }
            Repr::Heap(v) => v.push(a),
        }
    }

    /// Remove every action, keeping any heap capacity.
    pub fn clear(&mut self) {
        match &mut self.repr {
            Repr::Inline { len, .. } => *len = 0,
            Repr::Heap(v) => v.clear(),
        }
    }

    /// The actions as a slice.
    pub fn as_slice(&self) -> &[Action] {
        match &self.repr {
            Repr::Inline { len, items } => &items[..usize::from(*len)],
            Repr::Heap(v) => v,
        }
    }

    /// True when the list emits nothing (no `Output`, `Tunnel` or `Userspace`):
    /// the packet is dropped.
    pub fn is_drop(&self) -> bool {
        !self.as_slice().iter().any(Action::is_emit)
    }
}

impl Default for Actions {
    fn default() -> Self {
        Actions::new()
    }
}

impl std::ops::Deref for Actions {
    type Target = [Action];
    fn deref(&self) -> &[Action] {
        self.as_slice()
    }
}

impl PartialEq for Actions {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for Actions {}

impl std::hash::Hash for Actions {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Extend<Action> for Actions {
    fn extend<I: IntoIterator<Item = Action>>(&mut self, iter: I) {
        for a in iter {
            self.push(a);
        }
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        let mut a = Actions::new();
        a.extend(iter);
        a
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a Action;
    type IntoIter = std::slice::Iter<'a, Action>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// The rewrite actions that turn a packet keyed `original` into one keyed
/// `modified`, appended to `out` (VLAN changes last, so set-fields see the
/// same frame layout as the key).
///
/// Covers the fields [`Action`] can set: Ethernet addresses, VLAN, IPv4
/// addresses, TTL, TOS, L4 ports, ICMP id. IPv6 addresses and other fields
/// are not rewritable; a change there is ignored (the simulation never
/// rewrites them).
pub fn diff_actions(original: &FlowKey, modified: &FlowKey, out: &mut Actions) {
    let (o, m) = (original, modified);
    if o.eth_src != m.eth_src {
        out.push(Action::SetEthSrc(m.eth_src));
    }
    if o.eth_dst != m.eth_dst {
        out.push(Action::SetEthDst(m.eth_dst));
    }
    if o.ipv4_src != m.ipv4_src {
        out.push(Action::SetIpv4Src(m.ipv4_src));
    }
    if o.ipv4_dst != m.ipv4_dst {
        out.push(Action::SetIpv4Dst(m.ipv4_dst));
    }
    if o.ip_ttl != m.ip_ttl {
        out.push(Action::SetTtl(m.ip_ttl));
    }
    if o.ip_tos != m.ip_tos {
        out.push(Action::SetTos(m.ip_tos));
    }
    if o.l4_src != m.l4_src {
        out.push(Action::SetL4Src(m.l4_src));
    }
    if o.l4_dst != m.l4_dst {
        out.push(Action::SetL4Dst(m.l4_dst));
    }
    if o.icmp_id != m.icmp_id {
        out.push(Action::SetIcmpId(m.icmp_id));
    }
    if (o.vlan_vid, o.vlan_pcp) != (m.vlan_vid, m.vlan_pcp) {
        if o.vlan_vid.is_some() {
            out.push(Action::PopVlan);
        }
        if let Some(vid) = m.vlan_vid {
            out.push(Action::PushVlan { vid, pcp: m.vlan_pcp });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{InPort, ETH_TYPE_IPV4};

    #[test]
    fn inline_then_spill() {
        let mut a = Actions::new();
        assert!(a.is_empty() && a.is_drop());
        for p in 0..Actions::INLINE as u32 {
            a.push(Action::Output(p));
        }
        assert!(matches!(a.repr, Repr::Inline { .. }), "{} actions stay inline", Actions::INLINE);
        a.push(Action::Output(99));
        assert!(matches!(a.repr, Repr::Heap(_)));
        let expected: Vec<Action> =
            (0..Actions::INLINE as u32).chain([99]).map(Action::Output).collect();
        assert_eq!(a.as_slice(), &expected[..]);
        a.clear();
        assert!(a.is_empty());
    }

    #[test]
    fn equality_ignores_storage() {
        let many: Actions = (0..20).map(Action::Output).collect();
        let mut trimmed = many.clone();
        trimmed.clear();
        trimmed.push(Action::PopVlan);
        let inline: Actions = [Action::PopVlan].into_iter().collect();
        assert_eq!(trimmed, inline);
        assert_ne!(many, inline);
    }

    #[test]
    fn drop_means_no_emit() {
        let a: Actions = [Action::SetTtl(3)].into_iter().collect();
        assert!(a.is_drop());
        let b: Actions =
            [Action::SetTtl(3), Action::Userspace(UserspaceReason::Simulate)].into_iter().collect();
        assert!(!b.is_drop());
        assert!(Action::Tunnel { dst: Ipv4Addr::LOCALHOST, key: 1 }.is_emit());
        assert!(Action::PushVlan { vid: 1, pcp: 0 }.is_rewrite());
    }

    #[test]
    fn diff_of_router_hop_and_nat() {
        let o = FlowKey {
            in_port: InPort::Port(1),
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 0xfe]),
            ethertype: ETH_TYPE_IPV4,
            vlan_vid: Some(10),
            ipv4_src: Ipv4Addr::new(10, 0, 0, 2),
            ipv4_dst: Ipv4Addr::new(8, 8, 8, 8),
            ip_proto: 17,
            ip_ttl: 64,
            l4_src: 5000,
            l4_dst: 53,
            ..FlowKey::default()
        };
        let mut m = o;
        m.eth_src = MacAddr([2, 0, 0, 0, 0, 0xfd]);
        m.eth_dst = MacAddr([2, 0, 0, 0, 0, 0x99]);
        m.ip_ttl = 63;
        m.ipv4_src = Ipv4Addr::new(203, 0, 113, 1);
        m.l4_src = 61000;
        m.vlan_vid = None;
        let mut out = Actions::new();
        diff_actions(&o, &m, &mut out);
        assert_eq!(
            out.as_slice(),
            &[
                Action::SetEthSrc(m.eth_src),
                Action::SetEthDst(m.eth_dst),
                Action::SetIpv4Src(m.ipv4_src),
                Action::SetTtl(63),
                Action::SetL4Src(61000),
                Action::PopVlan,
            ]
        );
        let mut none = Actions::new();
        diff_actions(&o, &o, &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn diff_retag_pops_then_pushes() {
        let o = FlowKey { vlan_vid: Some(10), ..FlowKey::default() };
        let m = FlowKey { vlan_vid: Some(20), vlan_pcp: 3, ..FlowKey::default() };
        let mut out = Actions::new();
        diff_actions(&o, &m, &mut out);
        assert_eq!(out.as_slice(), &[Action::PopVlan, Action::PushVlan { vid: 20, pcp: 3 }]);
    }
}
