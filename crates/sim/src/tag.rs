//! Flow tags: what a flow's decision depended on, so that a change
//! invalidates exactly the flows it affects.
//!
//! A [`Tag`] is a 64-bit hash of an object identity (a device, a port, a
//! chain, a route table, one MAC-table or ARP entry, …). The simulation adds
//! the tag of everything it *consulted*, including lookups that missed (an
//! unknown MAC that caused a flood, an ARP miss), and the agent indexes
//! installed flows by tag. When the store or a state table changes, the agent
//! calls [`tags_for_change`] / [`StateWrite::tag`](crate::StateWrite::tag)
//! and deletes every flow indexed under the returned tags.
//!
//! # The invalidation rule
//!
//! *A change to object X invalidates the flows tagged X, and the flows
//! tagged by whatever X is compiled into.* Concretely:
//!
//! | change | tags |
//! |---|---|
//! | bridge / router | the device |
//! | port | the port, its device (old and new), its peer (old and new) and the peer's device (ports feed the device's flood set, router MAC/IP maps and local routes) |
//! | route | the router's route table (old and new router) |
//! | chain | the chain |
//! | rule | its chain (old and new); a static NAT rule also the global static-NAT tag (reverse NAT maps are global) |
//! | port group | the group (membership lives on ports, covered by port tags) |
//! | ip addr group / one of its addresses | the group |
//! | mirror | the mirror |
//! | seeded MAC entry (bridge, vlan, mac) | that MAC entry |
//! | seeded ARP entry of a bridge (bridge, ip) | that bridge-ARP entry |
//! | learned MAC / router ARP / bridge ARP (state) | that entry |
//! | a connection tracked, expired or removed (`ConnKey`) | `Tag::conntrack` of its forward key |
//! | a NAT binding stored, replaced, expired or removed | `Tag::nat` of its forward key and `Tag::nat_return` of its return key ([`nat_tags`](crate::result::nat_tags)) |
//! | a SNAT port block granted to this host | `Tag::snat_block` of it |
//! | DHCP subnet of a bridge | the bridge and its DHCP tag (enabling DHCP widens the bridge's masks) |
//! | DHCP host entry of a bridge | the bridge's DHCP tag |
//! | load balancer | it, and its router (old and new) |
//! | pool, pool member, VIP | their load balancer (a member's through its pool in the snapshot) |
//! | anything else (hosts, tunnel zones, health monitors) | nothing: not read by the simulation |
//!
//! Route tables are tagged per router rather than per prefix: coarser than
//! MidoNet's destination trie but simple, and route changes are rare next to
//! MAC moves, which *are* per entry.
//!
//! Tags are a deterministic hash (not `std`'s randomised one) so the same
//! object gives the same tag in every process and golden traces are stable.
//! Collisions only cause extra invalidations, never missed ones.

use std::fmt;
use std::net::Ipv4Addr;

use midonet_model as model;
use model::topology::EntryRef;
use model::{BridgeId, ChainId, DeviceId, IpAddrGroupId, MirrorId, PortGroupId, PortId, RouterId};
use serde::Serialize;
use uuid::Uuid;

use crate::snapshot::Snapshot;
use crate::MacAddr;

/// A flow tag (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Tag(pub u64);

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:016x})", self.0)
    }
}
impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[repr(u8)]
#[derive(Clone, Copy)]
enum Kind {
    Device = 1,
    Port,
    Chain,
    RouteTable,
    Mac,
    RouterArp,
    BridgeArp,
    PortGroup,
    IpAddrGroup,
    Mirror,
    StaticNat,
    Dhcp,
    Conntrack,
    Nat,
    NatReturn,
    SnatBlock,
    LoadBalancer,
}

/// One round of a 64-bit multiply-xorshift mixer (the murmur3 finaliser
/// constants): cheap, deterministic and well spread.
#[inline]
const fn mix(h: u64, v: u64) -> u64 {
    let mut x = h ^ v;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[inline]
fn tag(kind: Kind, uuid: Uuid, a: u64, b: u64) -> Tag {
    let u = uuid.as_u128();
    let mut h = mix(0x6d69_646f_6e65_7421, kind as u64);
    h = mix(h, u as u64);
    h = mix(h, (u >> 64) as u64);
    h = mix(h, a);
    Tag(mix(h, b))
}

/// A connection key as two words for [`tag`].
fn conn_words(k: &midonet_state::ConnKey) -> (u64, u64) {
    let ports = (u64::from(k.src_port) << 16) | u64::from(k.dst_port);
    let a = (u64::from(u32::from(k.src)) << 32) | u64::from(u32::from(k.dst));
    (a, (ports << 8) | u64::from(k.proto))
}

fn mac_u64(m: MacAddr) -> u64 {
    m.0.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

impl Tag {
    /// A bridge or router.
    pub fn device(id: DeviceId) -> Tag {
        tag(Kind::Device, id.uuid(), 0, 0)
    }
    /// A bridge.
    pub fn bridge(id: BridgeId) -> Tag {
        Tag::device(id.cast())
    }
    /// A router.
    pub fn router(id: RouterId) -> Tag {
        Tag::device(id.cast())
    }
    /// A port.
    pub fn port(id: PortId) -> Tag {
        tag(Kind::Port, id.uuid(), 0, 0)
    }
    /// A chain and its rule set.
    pub fn chain(id: ChainId) -> Tag {
        tag(Kind::Chain, id.uuid(), 0, 0)
    }
    /// A router's route table.
    pub fn routes(router: RouterId) -> Tag {
        tag(Kind::RouteTable, router.uuid(), 0, 0)
    }
    /// One MAC-table entry `(bridge, vlan, mac)`, present or not.
    pub fn mac(bridge: BridgeId, vlan: u16, mac: MacAddr) -> Tag {
        tag(Kind::Mac, bridge.uuid(), u64::from(vlan), mac_u64(mac))
    }
    /// One router ARP-cache entry `(router, ip)`, present or not.
    pub fn arp(router: RouterId, ip: Ipv4Addr) -> Tag {
        tag(Kind::RouterArp, router.uuid(), u64::from(u32::from(ip)), 0)
    }
    /// One bridge IP→MAC entry `(bridge, ip)` (seeded or learned by GARP).
    pub fn bridge_arp(bridge: BridgeId, ip: Ipv4Addr) -> Tag {
        tag(Kind::BridgeArp, bridge.uuid(), u64::from(u32::from(ip)), 0)
    }
    /// A port group.
    pub fn port_group(id: PortGroupId) -> Tag {
        tag(Kind::PortGroup, id.uuid(), 0, 0)
    }
    /// An IP address group (and its addresses).
    pub fn ip_addr_group(id: IpAddrGroupId) -> Tag {
        tag(Kind::IpAddrGroup, id.uuid(), 0, 0)
    }
    /// A mirror.
    pub fn mirror(id: MirrorId) -> Tag {
        tag(Kind::Mirror, id.uuid(), 0, 0)
    }
    /// The DHCP configuration (subnets and hosts) of a bridge.
    pub fn dhcp(bridge: BridgeId) -> Tag {
        tag(Kind::Dhcp, bridge.uuid(), 0, 0)
    }
    /// One connection (its forward key), tracked or not: flows whose
    /// conntrack answer depended on it, and flows that recorded it.
    pub fn conntrack(k: &midonet_state::ConnKey) -> Tag {
        let (a, b) = conn_words(k);
        tag(Kind::Conntrack, k.tracker.0, a, b)
    }
    /// One NAT binding by its forward key, bound or not: flows that
    /// looked it up (forward rules) or used it (either direction).
    pub fn nat(k: &midonet_state::NatKey) -> Tag {
        let (a, b) = conn_words(&k.conn);
        tag(Kind::Nat, k.conn.tracker.0, a, b ^ ((k.kind as u64) << 56))
    }
    /// The return traffic of a NAT binding of `kind`, as a reverse rule
    /// looks it up (`ret`: the return packet's key at the device), found
    /// or not.
    pub fn nat_return(kind: midonet_state::NatKind, ret: &midonet_state::ConnKey) -> Tag {
        let (a, b) = conn_words(ret);
        tag(Kind::NatReturn, ret.tracker.0, a, b ^ ((kind as u64) << 56))
    }
    /// A SNAT port block: flows dropped because it was not held yet.
    pub fn snat_block(b: &midonet_state::BlockKey) -> Tag {
        tag(Kind::SnatBlock, b.device.0, u64::from(u32::from(b.ip)), u64::from(b.block))
    }
    /// A router's load balancer: its VIPs, pools and members.
    pub fn load_balancer(id: model::LoadBalancerId) -> Tag {
        tag(Kind::LoadBalancer, id.uuid(), 0, 0)
    }

    /// The global static reverse-NAT maps (built from every static NAT rule).
    pub fn static_nat() -> Tag {
        tag(Kind::StaticNat, Uuid::nil(), 0, 0)
    }
}

/// A stored object, as [`tags_for_change`] takes it (old and/or new value).
#[derive(Debug, Clone, Copy)]
pub enum StoreObject<'a> {
    Bridge(&'a model::Bridge),
    Router(&'a model::Router),
    Port(&'a model::Port),
    Route(&'a model::Route),
    Chain(&'a model::Chain),
    Rule(&'a model::Rule),
    PortGroup(&'a model::PortGroup),
    IpAddrGroup(&'a model::IpAddrGroup),
    IpAddrGroupAddr(&'a model::IpAddrGroupAddr),
    MacEntry(&'a model::MacTableEntry),
    ArpEntry(&'a model::ArpTableEntry),
    Mirror(&'a model::Mirror),
    LoadBalancer(&'a model::LoadBalancer),
    Pool(&'a model::Pool),
    PoolMember(&'a model::PoolMember),
    Vip(&'a model::Vip),
    /// A DHCP subnet of this bridge (the id from the store key: the body
    /// need not carry it).
    DhcpSubnet(BridgeId, &'a model::DhcpSubnet),
    /// A DHCP host entry of this bridge.
    DhcpHost(BridgeId, &'a model::DhcpHost),
    /// Any kind the simulation does not read.
    Other,
}

fn object_tags(snap: &Snapshot, o: StoreObject<'_>, out: &mut Vec<Tag>) {
    match o {
        StoreObject::Bridge(b) => out.push(Tag::bridge(b.id)),
        StoreObject::Router(r) => out.push(Tag::router(r.id)),
        StoreObject::Port(p) => {
            out.push(Tag::port(p.id));
            out.push(Tag::device(p.device_id));
            if let Some(peer) = p.peer_id {
                out.push(Tag::port(peer));
                if let Some(dev) = snap.port_device(peer) {
                    out.push(Tag::device(dev));
                }
            }
        }
        StoreObject::Route(r) => out.push(Tag::routes(r.router_id)),
        StoreObject::Chain(c) => out.push(Tag::chain(c.id)),
        StoreObject::Rule(r) => {
            out.push(Tag::chain(r.chain_id));
            if r.is_static_nat() {
                out.push(Tag::static_nat());
            }
        }
        StoreObject::PortGroup(g) => out.push(Tag::port_group(g.id)),
        StoreObject::IpAddrGroup(g) => out.push(Tag::ip_addr_group(g.id)),
        StoreObject::IpAddrGroupAddr(a) => out.push(Tag::ip_addr_group(a.ip_addr_group_id)),
        StoreObject::MacEntry(e) => {
            out.push(Tag::mac(e.bridge_id, e.vlan_id, MacAddr(e.mac_addr.0)))
        }
        StoreObject::ArpEntry(e) => out.push(Tag::bridge_arp(e.bridge_id, e.ip)),
        StoreObject::Mirror(m) => out.push(Tag::mirror(m.id)),
        // A load balancer (re)attached changes its router's flows; the
        // rest changes the flows that went through the balancer.
        StoreObject::LoadBalancer(l) => {
            out.push(Tag::load_balancer(l.id));
            for r in l.router_id.iter().chain(snap.lb_index.lb_router.get(&l.id)) {
                out.push(Tag::router(*r));
            }
        }
        StoreObject::Pool(p) => out.push(Tag::load_balancer(p.load_balancer_id)),
        StoreObject::PoolMember(m) => {
            if let Some(lb) = snap.lb_index.pool_lb.get(&m.pool_id) {
                out.push(Tag::load_balancer(*lb));
            }
        }
        StoreObject::Vip(v) => out.push(Tag::load_balancer(v.load_balancer_id)),
        // Whether a bridge has an enabled subnet decides whether its flows
        // match the DHCP ports, so a subnet change refreshes the bridge's
        // flows; a host entry only changes answers, which are never cached.
        StoreObject::DhcpSubnet(b, _) => {
            out.push(Tag::bridge(b));
            out.push(Tag::dhcp(b));
        }
        StoreObject::DhcpHost(b, _) => out.push(Tag::dhcp(b)),
        StoreObject::Other => {}
    }
}

/// The tags to invalidate for one store change (`old` absent on create,
/// `new` absent on delete). `snap` is the snapshot the flows were simulated
/// against (used to find a port's peer's device). Appends to `out`, sorted
/// and without duplicates. See the module docs for the rule.
pub fn tags_for_change(
    snap: &Snapshot,
    old: Option<StoreObject<'_>>,
    new: Option<StoreObject<'_>>,
    out: &mut Vec<Tag>,
) {
    let start = out.len();
    for o in [old, new].into_iter().flatten() {
        object_tags(snap, o, out);
    }
    out[start..].sort_unstable();
    let mut tail = out.split_off(start);
    tail.dedup();
    out.extend(tail);
}

impl<'a> StoreObject<'a> {
    /// A topology entry as the simulation reads it ([`StoreObject::Other`]
    /// for the kinds it does not). DHCP entries take their bridge from the
    /// slot: the body need not carry it.
    pub fn of(slot: &model::topology::Slot, entry: EntryRef<'a>) -> StoreObject<'a> {
        use model::topology::Slot;
        match (slot, entry) {
            (_, EntryRef::Bridge(o)) => StoreObject::Bridge(o),
            (_, EntryRef::Router(o)) => StoreObject::Router(o),
            (_, EntryRef::Port(o)) => StoreObject::Port(o),
            (_, EntryRef::Route(o)) => StoreObject::Route(o),
            (_, EntryRef::Chain(o)) => StoreObject::Chain(o),
            (_, EntryRef::Rule(o)) => StoreObject::Rule(o),
            (_, EntryRef::PortGroup(o)) => StoreObject::PortGroup(o),
            (_, EntryRef::IpAddrGroup(o)) => StoreObject::IpAddrGroup(o),
            (_, EntryRef::IpAddrGroupAddr(o)) => StoreObject::IpAddrGroupAddr(o),
            (_, EntryRef::MacTableEntry(o)) => StoreObject::MacEntry(o),
            (_, EntryRef::ArpTableEntry(o)) => StoreObject::ArpEntry(o),
            (_, EntryRef::Mirror(o)) => StoreObject::Mirror(o),
            (_, EntryRef::LoadBalancer(o)) => StoreObject::LoadBalancer(o),
            (_, EntryRef::Pool(o)) => StoreObject::Pool(o),
            (_, EntryRef::PoolMember(o)) => StoreObject::PoolMember(o),
            (_, EntryRef::Vip(o)) => StoreObject::Vip(o),
            (Slot::DhcpSubnet((bridge, _)), EntryRef::DhcpSubnet(o)) => {
                StoreObject::DhcpSubnet(*bridge, o)
            }
            (Slot::DhcpHost((bridge, ..)), EntryRef::DhcpHost(o)) => {
                StoreObject::DhcpHost(*bridge, o)
            }
            _ => StoreObject::Other,
        }
    }
}

/// [`tags_for_change`] for a raw store entry (`/midonet/v1/<kind>/…` and its
/// old and new JSON values), as a watch event carries it. Values that do not
/// decode contribute no tags (the topology cache reports them). A holder of
/// a decoded [`model::Topology`] has the old value decoded already and
/// calls [`tags_for_change`] with [`StoreObject::of`] instead.
pub fn tags_for_store_entry(
    snap: &Snapshot,
    key: &str,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
    out: &mut Vec<Tag>,
) {
    let Ok(slot) = model::topology::Slot::parse(key) else { return };
    let [old, new] = [old, new].map(|v| v.and_then(|b| slot.decode(key, b).ok()));
    let [old, new] = [&old, &new].map(|e| e.as_ref().map(|e| StoreObject::of(&slot, e.as_ref())));
    tags_for_change(snap, old, new, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_deterministic_and_distinct_per_kind() {
        let u = Uuid::from_u128(7);
        assert_eq!(Tag::port(u.into()), Tag::port(u.into()));
        assert_ne!(Tag::port(u.into()), Tag::chain(u.into()));
        assert_ne!(Tag::device(u.into()), Tag::routes(u.into()));
        let b: BridgeId = u.into();
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        assert_ne!(Tag::mac(b, 0, m), Tag::mac(b, 1, m));
        assert_ne!(
            Tag::arp(u.into(), Ipv4Addr::new(10, 0, 0, 1)),
            Tag::bridge_arp(b, Ipv4Addr::new(10, 0, 0, 1))
        );
    }

    #[test]
    fn rule_change_invalidates_both_chains_and_static_nat() {
        let snap = Snapshot::build(&model::Topology::default());
        let old = model::Rule { chain_id: Uuid::from_u128(1).into(), ..Default::default() };
        let new: model::Rule = serde_json::from_str(
            r#"{"chainId":"00000000-0000-0000-0000-000000000002","type":"dnat","natTargets":[{"addressFrom":"10.0.0.5","addressTo":"10.0.0.5","portFrom":0,"portTo":0}]}"#,
        )
        .expect("rule");
        let mut out = Vec::new();
        tags_for_change(
            &snap,
            Some(StoreObject::Rule(&old)),
            Some(StoreObject::Rule(&new)),
            &mut out,
        );
        assert!(out.contains(&Tag::chain(old.chain_id)));
        assert!(out.contains(&Tag::chain(new.chain_id)));
        assert!(out.contains(&Tag::static_nat()));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn store_entry_for_unread_kinds_gives_nothing() {
        let snap = Snapshot::build(&model::Topology::default());
        let mut out = Vec::new();
        tags_for_store_entry(
            &snap,
            "/midonet/v1/hosts/00000000-0000-0000-0000-000000000001",
            None,
            Some(b"{}"),
            &mut out,
        );
        assert!(out.is_empty());
        let key = format!("/midonet/v1/bridges/{}", Uuid::from_u128(3));
        let body = format!(r#"{{"id":"{}"}}"#, Uuid::from_u128(3));
        tags_for_store_entry(&snap, &key, None, Some(body.as_bytes()), &mut out);
        assert_eq!(out, vec![Tag::bridge(Uuid::from_u128(3).into())]);
    }
}
