//! The wildcard mask of a megaflow: which fields of a [`FlowKey`] a flow matches.
//!
//! A [`FlowMask`] is one bit per [`FieldId`], except the four IP address
//! fields, which carry a prefix length (0 = wildcarded, 32/128 = exact)
//! because routing and CIDR rules read only the top bits of an address and a
//! shorter prefix lets one megaflow cover a whole subnet.
//!
//! **Prerequisites.** Marking a field also marks the fields that decide
//! whether it exists: any L3 field marks `EthType`; any L4 field marks
//! `EthType`, `IpProto` and `IpFrag`. Otherwise a flow that matched
//! `ip4.dst=10.0.0.1` with a wildcarded ethertype could, in principle, match a
//! non-IP packet whose (zero) fields happened to agree; OVS enforces the same
//! rule in the kernel. Marking extra fields is always safe (see the crate docs).
//!
//! [`MaskedKey`] is a key with every unmasked bit cleared; two packets hit the
//! same megaflow exactly when their masked keys are equal, so a classifier can
//! keep one hash table of `MaskedKey`s per distinct mask (tuple-space search).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::key::{FlowKey, FragType, InPort};

/// One matchable field of a [`FlowKey`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum FieldId {
    /// [`FlowKey::in_port`] (always matched by flows built with [`crate::FlowMatch`]).
    InPort = 0,
    /// [`FlowKey::eth_src`].
    EthSrc,
    /// [`FlowKey::eth_dst`].
    EthDst,
    /// [`FlowKey::ethertype`].
    EthType,
    /// [`FlowKey::vlan_vid`] (including whether a tag is present).
    VlanVid,
    /// [`FlowKey::vlan_pcp`].
    VlanPcp,
    /// [`FlowKey::arp_op`].
    ArpOp,
    /// [`FlowKey::arp_sha`].
    ArpSha,
    /// [`FlowKey::arp_spa`].
    ArpSpa,
    /// [`FlowKey::arp_tha`].
    ArpTha,
    /// [`FlowKey::arp_tpa`].
    ArpTpa,
    /// [`FlowKey::ipv4_src`] (prefix-maskable).
    Ipv4Src,
    /// [`FlowKey::ipv4_dst`] (prefix-maskable).
    Ipv4Dst,
    /// [`FlowKey::ipv6_src`] (prefix-maskable).
    Ipv6Src,
    /// [`FlowKey::ipv6_dst`] (prefix-maskable).
    Ipv6Dst,
    /// [`FlowKey::ip_proto`].
    IpProto,
    /// [`FlowKey::ip_tos`].
    IpTos,
    /// [`FlowKey::ip_ttl`].
    IpTtl,
    /// [`FlowKey::ip_frag`].
    IpFrag,
    /// [`FlowKey::l4_src`].
    L4Src,
    /// [`FlowKey::l4_dst`].
    L4Dst,
    /// [`FlowKey::tcp_flags`].
    TcpFlags,
    /// [`FlowKey::icmp_type`].
    IcmpType,
    /// [`FlowKey::icmp_code`].
    IcmpCode,
    /// [`FlowKey::icmp_id`].
    IcmpId,
}

impl FieldId {
    /// Every field, in key order.
    pub const ALL: [FieldId; 25] = [
        FieldId::InPort,
        FieldId::EthSrc,
        FieldId::EthDst,
        FieldId::EthType,
        FieldId::VlanVid,
        FieldId::VlanPcp,
        FieldId::ArpOp,
        FieldId::ArpSha,
        FieldId::ArpSpa,
        FieldId::ArpTha,
        FieldId::ArpTpa,
        FieldId::Ipv4Src,
        FieldId::Ipv4Dst,
        FieldId::Ipv6Src,
        FieldId::Ipv6Dst,
        FieldId::IpProto,
        FieldId::IpTos,
        FieldId::IpTtl,
        FieldId::IpFrag,
        FieldId::L4Src,
        FieldId::L4Dst,
        FieldId::TcpFlags,
        FieldId::IcmpType,
        FieldId::IcmpCode,
        FieldId::IcmpId,
    ];

    const fn bit(self) -> u32 {
        1 << (self as u8)
    }

    /// Width of the field in bits where it is prefix-maskable (IP addresses).
    const fn prefix_width(self) -> Option<u8> {
        match self {
            FieldId::Ipv4Src | FieldId::Ipv4Dst => Some(32),
            FieldId::Ipv6Src | FieldId::Ipv6Dst => Some(128),
            _ => None,
        }
    }

    /// Fields that must be matched whenever this one is (see module docs).
    const fn prerequisites(self) -> u32 {
        let l3 = FieldId::EthType.bit();
        let l4 = l3 | FieldId::IpProto.bit() | FieldId::IpFrag.bit();
        match self {
            FieldId::InPort | FieldId::EthSrc | FieldId::EthDst | FieldId::EthType => 0,
            // The PCP is only meaningful on a tagged frame.
            FieldId::VlanPcp => FieldId::VlanVid.bit(),
            FieldId::VlanVid => 0,
            FieldId::ArpOp
            | FieldId::ArpSha
            | FieldId::ArpSpa
            | FieldId::ArpTha
            | FieldId::ArpTpa
            | FieldId::Ipv4Src
            | FieldId::Ipv4Dst
            | FieldId::Ipv6Src
            | FieldId::Ipv6Dst
            | FieldId::IpProto
            | FieldId::IpTos
            | FieldId::IpTtl
            | FieldId::IpFrag => l3,
            FieldId::L4Src
            | FieldId::L4Dst
            | FieldId::TcpFlags
            | FieldId::IcmpType
            | FieldId::IcmpCode
            | FieldId::IcmpId => l4,
        }
    }
}

/// Which fields (and how many leading bits of each IP address) a megaflow matches.
///
/// The empty mask (`FlowMask::default()`) matches every packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowMask {
    /// One bit per non-address [`FieldId`]; address fields live in `prefix`.
    bits: u32,
    /// Prefix lengths of ipv4_src, ipv4_dst, ipv6_src, ipv6_dst.
    prefix: [u8; 4],
}

impl FlowMask {
    /// A mask that matches no field (every packet matches).
    pub const fn empty() -> Self {
        FlowMask { bits: 0, prefix: [0; 4] }
    }

    /// A mask that matches every field exactly (an exact-match flow).
    pub fn exact() -> Self {
        let mut m = FlowMask::empty();
        for f in FieldId::ALL {
            m.mark(f);
        }
        m
    }

    fn prefix_slot(field: FieldId) -> Option<usize> {
        match field {
            FieldId::Ipv4Src => Some(0),
            FieldId::Ipv4Dst => Some(1),
            FieldId::Ipv6Src => Some(2),
            FieldId::Ipv6Dst => Some(3),
            _ => None,
        }
    }

    /// Match `field` exactly (and its prerequisites).
    pub fn mark(&mut self, field: FieldId) {
        match field.prefix_width() {
            Some(w) => self.mark_prefix(field, w),
            None => {
                self.bits |= field.bit() | field.prerequisites();
            }
        }
    }

    /// Match the top `len` bits of an IP address field (clamped to the field
    /// width; a longer existing prefix is kept). For a non-address field any
    /// `len > 0` marks the whole field. `len == 0` marks nothing.
    pub fn mark_prefix(&mut self, field: FieldId, len: u8) {
        if len == 0 {
            return;
        }
        match (Self::prefix_slot(field), field.prefix_width()) {
            (Some(slot), Some(w)) => {
                let len = len.min(w);
                if len > self.prefix[slot] {
                    self.prefix[slot] = len;
                }
                self.bits |= field.prerequisites();
            }
            _ => self.mark(field),
        }
    }

    /// True when `field` is matched (for an address field: any prefix > 0).
    pub fn is_marked(&self, field: FieldId) -> bool {
        match Self::prefix_slot(field) {
            Some(slot) => self.prefix[slot] > 0,
            None => self.bits & field.bit() != 0,
        }
    }

    /// Prefix length matched for `field`: 0..=32/128 for address fields; for
    /// other fields 0 or the field's width in bits.
    pub fn prefix_len(&self, field: FieldId) -> u8 {
        match Self::prefix_slot(field) {
            Some(slot) => self.prefix[slot],
            None if self.is_marked(field) => field_width(field),
            None => 0,
        }
    }

    /// Union: match every field either mask matches (longest prefixes win).
    /// Used when the simulation forks (floods, mirrors) and merges branches.
    pub fn union(&mut self, other: &FlowMask) {
        self.bits |= other.bits;
        for i in 0..4 {
            self.prefix[i] = self.prefix[i].max(other.prefix[i]);
        }
    }

    /// True when no field is matched.
    pub fn is_empty(&self) -> bool {
        self.bits == 0 && self.prefix == [0; 4]
    }

    /// Iterate over the marked fields in key order.
    pub fn fields(&self) -> impl Iterator<Item = FieldId> + '_ {
        FieldId::ALL.into_iter().filter(|f| self.is_marked(*f))
    }

    /// The key with every unmasked bit cleared.
    pub fn apply(&self, key: &FlowKey) -> MaskedKey {
        let m = |f: FieldId| self.bits & f.bit() != 0;
        let mut out = FlowKey::default();
        if m(FieldId::InPort) {
            out.in_port = key.in_port;
        } else {
            // Zero the discriminant too, so a wildcarded port never splits flows.
            out.in_port = InPort::Port(0);
        }
        if m(FieldId::EthSrc) {
            out.eth_src = key.eth_src;
        }
        if m(FieldId::EthDst) {
            out.eth_dst = key.eth_dst;
        }
        if m(FieldId::EthType) {
            out.ethertype = key.ethertype;
        }
        if m(FieldId::VlanVid) {
            out.vlan_vid = key.vlan_vid;
        }
        if m(FieldId::VlanPcp) {
            out.vlan_pcp = key.vlan_pcp;
        }
        if m(FieldId::ArpOp) {
            out.arp_op = key.arp_op;
        }
        if m(FieldId::ArpSha) {
            out.arp_sha = key.arp_sha;
        }
        if m(FieldId::ArpSpa) {
            out.arp_spa = key.arp_spa;
        }
        if m(FieldId::ArpTha) {
            out.arp_tha = key.arp_tha;
        }
        if m(FieldId::ArpTpa) {
            out.arp_tpa = key.arp_tpa;
        }
        out.ipv4_src = mask_v4(key.ipv4_src, self.prefix[0]);
        out.ipv4_dst = mask_v4(key.ipv4_dst, self.prefix[1]);
        out.ipv6_src = mask_v6(key.ipv6_src, self.prefix[2]);
        out.ipv6_dst = mask_v6(key.ipv6_dst, self.prefix[3]);
        if m(FieldId::IpProto) {
            out.ip_proto = key.ip_proto;
        }
        if m(FieldId::IpTos) {
            out.ip_tos = key.ip_tos;
        }
        if m(FieldId::IpTtl) {
            out.ip_ttl = key.ip_ttl;
        }
        if m(FieldId::IpFrag) {
            out.ip_frag = key.ip_frag;
        } else {
            out.ip_frag = FragType::No;
        }
        if m(FieldId::L4Src) {
            out.l4_src = key.l4_src;
        }
        if m(FieldId::L4Dst) {
            out.l4_dst = key.l4_dst;
        }
        if m(FieldId::TcpFlags) {
            out.tcp_flags = key.tcp_flags;
        }
        if m(FieldId::IcmpType) {
            out.icmp_type = key.icmp_type;
        }
        if m(FieldId::IcmpCode) {
            out.icmp_code = key.icmp_code;
        }
        if m(FieldId::IcmpId) {
            out.icmp_id = key.icmp_id;
        }
        MaskedKey(out)
    }

    /// True when `a` and `b` agree on every masked bit.
    pub fn masked_eq(&self, a: &FlowKey, b: &FlowKey) -> bool {
        self.apply(a) == self.apply(b)
    }
}

/// Width of a field in bits (for display and `prefix_len`).
pub(crate) fn field_width(field: FieldId) -> u8 {
    match field {
        FieldId::InPort => 32,
        FieldId::EthSrc | FieldId::EthDst | FieldId::ArpSha | FieldId::ArpTha => 48,
        FieldId::EthType | FieldId::ArpOp | FieldId::L4Src | FieldId::L4Dst | FieldId::IcmpId => 16,
        FieldId::VlanVid => 12,
        FieldId::VlanPcp => 3,
        FieldId::ArpSpa | FieldId::ArpTpa | FieldId::Ipv4Src | FieldId::Ipv4Dst => 32,
        FieldId::Ipv6Src | FieldId::Ipv6Dst => 128,
        FieldId::IpProto | FieldId::IpTos | FieldId::IpTtl => 8,
        FieldId::IpFrag => 2,
        FieldId::TcpFlags => 9,
        FieldId::IcmpType | FieldId::IcmpCode => 8,
    }
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    Ipv4Addr::from(u32::from(a) & m)
}

fn mask_v6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) };
    Ipv6Addr::from(u128::from(a) & m)
}

/// A [`FlowKey`] with the bits outside a [`FlowMask`] cleared: the hash-table
/// key of a megaflow classifier. Only [`FlowMask::apply`] builds one, so two
/// `MaskedKey`s built with the same mask compare equal exactly when the
/// packets they came from hit the same megaflow.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MaskedKey(FlowKey);

impl MaskedKey {
    /// The key, with unmasked bits zero.
    pub fn key(&self) -> &FlowKey {
        &self.0
    }
}

impl fmt::Display for FieldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::text::field_name(*self, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::MacAddr;

    fn key() -> FlowKey {
        FlowKey {
            in_port: InPort::Port(4),
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
            ethertype: crate::key::ETH_TYPE_IPV4,
            ipv4_src: Ipv4Addr::new(10, 0, 0, 2),
            ipv4_dst: Ipv4Addr::new(10, 0, 1, 5),
            ip_proto: 6,
            ip_ttl: 64,
            l4_src: 40000,
            l4_dst: 80,
            ..FlowKey::default()
        }
    }

    #[test]
    fn empty_mask_matches_everything() {
        let m = FlowMask::empty();
        assert!(m.is_empty());
        let other =
            FlowKey { in_port: InPort::Tunnel(9), ipv4_dst: Ipv4Addr::new(1, 2, 3, 4), ..key() };
        assert!(m.masked_eq(&key(), &other));
        assert_eq!(m.apply(&key()).key(), &FlowKey::default());
    }

    #[test]
    fn prerequisites_are_marked() {
        let mut m = FlowMask::empty();
        m.mark(FieldId::L4Dst);
        let marked: Vec<_> = m.fields().collect();
        assert_eq!(
            marked,
            vec![FieldId::EthType, FieldId::IpProto, FieldId::IpFrag, FieldId::L4Dst]
        );
        let mut m = FlowMask::empty();
        m.mark_prefix(FieldId::Ipv4Dst, 24);
        assert!(m.is_marked(FieldId::EthType));
        assert!(!m.is_marked(FieldId::IpProto));
        let mut m = FlowMask::empty();
        m.mark(FieldId::VlanPcp);
        assert!(m.is_marked(FieldId::VlanVid));
    }

    #[test]
    fn prefix_masks_only_top_bits() {
        let mut m = FlowMask::empty();
        m.mark_prefix(FieldId::Ipv4Dst, 24);
        let a = key();
        let same_subnet = FlowKey { ipv4_dst: Ipv4Addr::new(10, 0, 1, 200), l4_dst: 443, ..a };
        let other_subnet = FlowKey { ipv4_dst: Ipv4Addr::new(10, 0, 2, 5), ..a };
        assert!(m.masked_eq(&a, &same_subnet));
        assert!(!m.masked_eq(&a, &other_subnet));
        assert_eq!(m.apply(&a).key().ipv4_dst, Ipv4Addr::new(10, 0, 1, 0));
        // A shorter later mark does not shrink the prefix; a longer one grows it.
        m.mark_prefix(FieldId::Ipv4Dst, 8);
        assert_eq!(m.prefix_len(FieldId::Ipv4Dst), 24);
        m.mark_prefix(FieldId::Ipv4Dst, 200);
        assert_eq!(m.prefix_len(FieldId::Ipv4Dst), 32, "clamped to the width");
        assert!(!m.masked_eq(&a, &same_subnet));
    }

    #[test]
    fn ipv6_prefix() {
        let mut m = FlowMask::empty();
        m.mark_prefix(FieldId::Ipv6Src, 64);
        let a = FlowKey { ipv6_src: "2001:db8::1".parse().expect("v6"), ..FlowKey::default() };
        let b = FlowKey { ipv6_src: "2001:db8::ffff:2".parse().expect("v6"), ..FlowKey::default() };
        let c = FlowKey { ipv6_src: "2001:db8:0:1::1".parse().expect("v6"), ..FlowKey::default() };
        assert!(m.masked_eq(&a, &b));
        assert!(!m.masked_eq(&a, &c));
    }

    #[test]
    fn exact_mask_distinguishes_every_field() {
        let m = FlowMask::exact();
        for f in FieldId::ALL {
            assert!(m.is_marked(f), "{f:?}");
            assert_eq!(m.prefix_len(f), field_width(f), "{f:?}");
        }
        let a = key();
        assert!(!m.masked_eq(&a, &FlowKey { tcp_flags: 1, ..a }));
        assert!(!m.masked_eq(&a, &FlowKey { in_port: InPort::Tunnel(4), ..a }));
        assert!(!m.masked_eq(&a, &FlowKey { ip_frag: FragType::First, ..a }));
    }

    #[test]
    fn union_takes_longest_prefix_and_all_bits() {
        let mut a = FlowMask::empty();
        a.mark_prefix(FieldId::Ipv4Src, 16);
        a.mark(FieldId::EthDst);
        let mut b = FlowMask::empty();
        b.mark_prefix(FieldId::Ipv4Src, 20);
        b.mark(FieldId::L4Src);
        a.union(&b);
        assert_eq!(a.prefix_len(FieldId::Ipv4Src), 20);
        assert!(a.is_marked(FieldId::EthDst) && a.is_marked(FieldId::L4Src));
        assert!(!a.is_marked(FieldId::L4Dst));
    }

    #[test]
    fn masked_key_hash_agrees_with_eq() {
        use std::collections::HashSet;
        let mut m = FlowMask::empty();
        m.mark(FieldId::InPort);
        m.mark(FieldId::EthDst);
        let set: HashSet<MaskedKey> =
            (0..10u16).map(|p| m.apply(&FlowKey { l4_src: p, ..key() })).collect();
        assert_eq!(set.len(), 1, "keys differing only in wildcarded fields collapse");
    }
}
