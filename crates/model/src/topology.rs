//! A whole-topology value: every stored object, indexed for reading.
//!
//! The cluster builds one from a store range (and for `midonet trace`), the
//! agent keeps one per snapshot and updates it from the ordered change
//! stream with [`Topology::apply`]. It is plain data; the simulation compiles
//! what it needs (route tries, ordered rule lists) from it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::chain::{Chain, Rule};
use crate::device::{Bridge, Router};
use crate::dhcp::{DhcpHost, DhcpSubnet};
use crate::host::*;
use crate::id::*;
use crate::kind::ObjectKind;
use crate::lb::*;
use crate::mac::MacAddr;
use crate::mirror::Mirror;
use crate::port::Port;
use crate::route::Route;

/// An object that lives under one store key.
pub trait Stored: Serialize + for<'de> Deserialize<'de> {
    const KIND: ObjectKind;
    /// The id path of the key (see [`ObjectKind::key`]).
    fn key_parts(&self) -> Vec<String>;
    fn store_key(&self) -> String {
        let parts = self.key_parts();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Self::KIND.key(&refs)
    }
}

macro_rules! stored_by_id {
    ($($t:ty => $kind:ident),+ $(,)?) => {
        $(impl Stored for $t {
            const KIND: ObjectKind = ObjectKind::$kind;
            fn key_parts(&self) -> Vec<String> { vec![self.id.to_string()] }
        })+
    };
}

stored_by_id! {
    Bridge => Bridge, Router => Router, Port => Port, Route => Route, Chain => Chain,
    Rule => Rule, PortGroup => PortGroup, IpAddrGroup => IpAddrGroup, Host => Host,
    TunnelZone => TunnelZone, LoadBalancer => LoadBalancer, Pool => Pool,
    PoolMember => PoolMember, Vip => Vip, HealthMonitor => HealthMonitor, Mirror => Mirror,
}

impl Stored for IpAddrGroupAddr {
    const KIND: ObjectKind = ObjectKind::IpAddrGroupAddr;
    fn key_parts(&self) -> Vec<String> {
        vec![self.ip_addr_group_id.to_string(), self.addr.to_string()]
    }
}
impl Stored for HostInterface {
    const KIND: ObjectKind = ObjectKind::HostInterface;
    fn key_parts(&self) -> Vec<String> {
        vec![self.host_id.to_string(), self.name.clone()]
    }
}
impl Stored for TunnelZoneHost {
    const KIND: ObjectKind = ObjectKind::TunnelZoneHost;
    fn key_parts(&self) -> Vec<String> {
        vec![self.tunnel_zone_id.to_string(), self.host_id.to_string()]
    }
}
impl Stored for DhcpSubnet {
    const KIND: ObjectKind = ObjectKind::DhcpSubnet;
    fn key_parts(&self) -> Vec<String> {
        vec![self.bridge_id.to_string(), self.key()]
    }
}
impl Stored for DhcpHost {
    const KIND: ObjectKind = ObjectKind::DhcpHost;
    fn key_parts(&self) -> Vec<String> {
        vec![self.bridge_id.to_string(), self.subnet.clone(), self.mac_addr.to_uri_string()]
    }
}
impl Stored for MacTableEntry {
    const KIND: ObjectKind = ObjectKind::MacTableEntry;
    fn key_parts(&self) -> Vec<String> {
        vec![self.bridge_id.to_string(), self.vlan_id.to_string(), self.mac_addr.to_uri_string()]
    }
}
impl Stored for ArpTableEntry {
    const KIND: ObjectKind = ObjectKind::ArpTableEntry;
    fn key_parts(&self) -> Vec<String> {
        vec![self.bridge_id.to_string(), self.ip.to_string()]
    }
}

/// Why a store entry could not be applied to a [`Topology`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("key `{0}` is not a topology key")]
    BadKey(String),
    #[error("value of `{key}` does not decode")]
    BadValue {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Every object of the topology, indexed by id (or by its key parts for
/// sub-objects). `BTreeMap` keeps iteration deterministic, which the
/// simulation's golden traces and tie-breaks rely on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Topology {
    /// Store revision this value reflects.
    pub revision: i64,
    pub bridges: BTreeMap<BridgeId, Bridge>,
    pub routers: BTreeMap<RouterId, Router>,
    pub ports: BTreeMap<PortId, Port>,
    pub routes: BTreeMap<RouteId, Route>,
    pub chains: BTreeMap<ChainId, Chain>,
    pub rules: BTreeMap<RuleId, Rule>,
    pub port_groups: BTreeMap<PortGroupId, PortGroup>,
    pub ip_addr_groups: BTreeMap<IpAddrGroupId, IpAddrGroup>,
    pub ip_addr_group_addrs: BTreeMap<(IpAddrGroupId, IpAddr), IpAddrGroupAddr>,
    pub hosts: BTreeMap<HostId, Host>,
    pub host_interfaces: BTreeMap<(HostId, String), HostInterface>,
    pub tunnel_zones: BTreeMap<TunnelZoneId, TunnelZone>,
    pub tunnel_zone_hosts: BTreeMap<(TunnelZoneId, HostId), TunnelZoneHost>,
    pub dhcp_subnets: BTreeMap<(BridgeId, String), DhcpSubnet>,
    pub dhcp_hosts: BTreeMap<(BridgeId, String, MacAddr), DhcpHost>,
    pub mac_entries: BTreeMap<(BridgeId, u16, MacAddr), MacTableEntry>,
    pub arp_entries: BTreeMap<(BridgeId, Ipv4Addr), ArpTableEntry>,
    pub load_balancers: BTreeMap<LoadBalancerId, LoadBalancer>,
    pub pools: BTreeMap<PoolId, Pool>,
    pub pool_members: BTreeMap<PoolMemberId, PoolMember>,
    pub vips: BTreeMap<VipId, Vip>,
    pub health_monitors: BTreeMap<HealthMonitorId, HealthMonitor>,
    pub mirrors: BTreeMap<MirrorId, Mirror>,
}

fn id<T>(key: &str, s: &str) -> Result<Id<T>, DecodeError> {
    s.parse().map_err(|_| DecodeError::BadKey(key.to_owned()))
}

fn part<'a>(key: &str, parts: &[&'a str], i: usize) -> Result<&'a str, DecodeError> {
    parts.get(i).copied().ok_or_else(|| DecodeError::BadKey(key.to_owned()))
}

fn parsed<T: std::str::FromStr>(key: &str, s: &str) -> Result<T, DecodeError> {
    s.parse().map_err(|_| DecodeError::BadKey(key.to_owned()))
}

/// [`Topology::put`] of an entry into a slot of another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the entry is not of the slot's kind")]
pub struct KindMismatch;

/// Declares, from one list of (variant, key type, map, value type), where
/// each kind of entry lives in a [`Topology`]: [`Slot`] (a parsed store key),
/// [`Entry`] (a decoded value), [`EntryRef`] (a held one) and the per-kind
/// dispatch between them.
macro_rules! entries {
    ($($v:ident($k:ty) => $field:ident: $t:ty),+ $(,)?) => {
        /// A topology store key, parsed: the object's kind and its key in
        /// the [`Topology`] map of that kind.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Slot { $($v($k)),+ }

        /// One decoded topology value, owned.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Entry { $($v($t)),+ }

        /// One value held in a [`Topology`].
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum EntryRef<'a> { $($v(&'a $t)),+ }

        impl Slot {
            /// Decodes `value` as the kind this slot holds.
            pub fn decode(&self, key: &str, value: &[u8]) -> Result<Entry, DecodeError> {
                let bad = |source| DecodeError::BadValue { key: key.to_owned(), source };
                match self { $(Slot::$v(_) => serde_json::from_slice(value).map(Entry::$v).map_err(bad)),+ }
            }
        }

        impl Entry {
            pub fn as_ref(&self) -> EntryRef<'_> {
                match self { $(Entry::$v(o) => EntryRef::$v(o)),+ }
            }
        }

        impl Topology {
            /// The value held at `slot`.
            pub fn get(&self, slot: &Slot) -> Option<EntryRef<'_>> {
                match slot { $(Slot::$v(k) => self.$field.get(k).map(EntryRef::$v)),+ }
            }

            /// Takes the value held at `slot` out.
            pub fn take(&mut self, slot: &Slot) -> Option<Entry> {
                match slot { $(Slot::$v(k) => self.$field.remove(k).map(Entry::$v)),+ }
            }

            /// Holds `entry` at `slot`, returning what was there. An entry of
            /// another kind than the slot's is refused (and dropped).
            pub fn put(&mut self, slot: Slot, entry: Entry) -> Result<Option<Entry>, KindMismatch> {
                match (slot, entry) {
                    $((Slot::$v(k), Entry::$v(o)) => Ok(self.$field.insert(k, o).map(Entry::$v)),)+
                    _ => Err(KindMismatch),
                }
            }

            /// The slot of every value held.
            pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
                std::iter::empty()
                    $(.chain(self.$field.keys().map(|k| Slot::$v(k.clone()))))+
            }

            /// How many values are held.
            pub fn len(&self) -> usize {
                0 $(+ self.$field.len())+
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }
    };
}

entries! {
    Bridge(BridgeId) => bridges: Bridge,
    Router(RouterId) => routers: Router,
    Port(PortId) => ports: Port,
    Route(RouteId) => routes: Route,
    Chain(ChainId) => chains: Chain,
    Rule(RuleId) => rules: Rule,
    PortGroup(PortGroupId) => port_groups: PortGroup,
    IpAddrGroup(IpAddrGroupId) => ip_addr_groups: IpAddrGroup,
    IpAddrGroupAddr((IpAddrGroupId, IpAddr)) => ip_addr_group_addrs: IpAddrGroupAddr,
    Host(HostId) => hosts: Host,
    HostInterface((HostId, String)) => host_interfaces: HostInterface,
    TunnelZone(TunnelZoneId) => tunnel_zones: TunnelZone,
    TunnelZoneHost((TunnelZoneId, HostId)) => tunnel_zone_hosts: TunnelZoneHost,
    DhcpSubnet((BridgeId, String)) => dhcp_subnets: DhcpSubnet,
    DhcpHost((BridgeId, String, MacAddr)) => dhcp_hosts: DhcpHost,
    MacTableEntry((BridgeId, u16, MacAddr)) => mac_entries: MacTableEntry,
    ArpTableEntry((BridgeId, Ipv4Addr)) => arp_entries: ArpTableEntry,
    LoadBalancer(LoadBalancerId) => load_balancers: LoadBalancer,
    Pool(PoolId) => pools: Pool,
    PoolMember(PoolMemberId) => pool_members: PoolMember,
    Vip(VipId) => vips: Vip,
    HealthMonitor(HealthMonitorId) => health_monitors: HealthMonitor,
    Mirror(MirrorId) => mirrors: Mirror,
}

impl Slot {
    /// Parses a topology store key (`/midonet/v1/<kind>/<id>[/<part>…]`).
    pub fn parse(key: &str) -> Result<Slot, DecodeError> {
        let (kind, parts) =
            ObjectKind::parse_key(key).ok_or_else(|| DecodeError::BadKey(key.to_owned()))?;
        let p = |i: usize| part(key, &parts, i);
        let p0 = p(0)?;
        Ok(match kind {
            ObjectKind::Bridge => Slot::Bridge(id(key, p0)?),
            ObjectKind::Router => Slot::Router(id(key, p0)?),
            ObjectKind::Port => Slot::Port(id(key, p0)?),
            ObjectKind::Route => Slot::Route(id(key, p0)?),
            ObjectKind::Chain => Slot::Chain(id(key, p0)?),
            ObjectKind::Rule => Slot::Rule(id(key, p0)?),
            ObjectKind::PortGroup => Slot::PortGroup(id(key, p0)?),
            ObjectKind::IpAddrGroup => Slot::IpAddrGroup(id(key, p0)?),
            ObjectKind::Host => Slot::Host(id(key, p0)?),
            ObjectKind::TunnelZone => Slot::TunnelZone(id(key, p0)?),
            ObjectKind::LoadBalancer => Slot::LoadBalancer(id(key, p0)?),
            ObjectKind::Pool => Slot::Pool(id(key, p0)?),
            ObjectKind::PoolMember => Slot::PoolMember(id(key, p0)?),
            ObjectKind::Vip => Slot::Vip(id(key, p0)?),
            ObjectKind::HealthMonitor => Slot::HealthMonitor(id(key, p0)?),
            ObjectKind::Mirror => Slot::Mirror(id(key, p0)?),
            ObjectKind::IpAddrGroupAddr => {
                Slot::IpAddrGroupAddr((id(key, p0)?, parsed(key, p(1)?)?))
            }
            ObjectKind::HostInterface => Slot::HostInterface((id(key, p0)?, p(1)?.to_owned())),
            ObjectKind::TunnelZoneHost => Slot::TunnelZoneHost((id(key, p0)?, id(key, p(1)?)?)),
            ObjectKind::DhcpSubnet => Slot::DhcpSubnet((id(key, p0)?, p(1)?.to_owned())),
            ObjectKind::DhcpHost => {
                Slot::DhcpHost((id(key, p0)?, p(1)?.to_owned(), parsed(key, p(2)?)?))
            }
            ObjectKind::MacTableEntry => {
                Slot::MacTableEntry((id(key, p0)?, parsed(key, p(1)?)?, parsed(key, p(2)?)?))
            }
            ObjectKind::ArpTableEntry => Slot::ArpTableEntry((id(key, p0)?, parsed(key, p(1)?)?)),
        })
    }
}

impl Topology {
    /// Applies one store entry: `Some(value)` is a put, `None` a delete.
    /// Keys outside the topology layout are an error (callers filter state
    /// keys out before), and so is a value that does not decode (the entry
    /// held before stays).
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), DecodeError> {
        let slot = Slot::parse(key)?;
        match value {
            Some(v) => {
                let entry = slot.decode(key, v)?;
                // `decode` gives the slot's own kind, which `put` holds.
                let _ = self.put(slot, entry);
            }
            None => {
                self.take(&slot);
            }
        }
        Ok(())
    }

    /// Inserts an object as if it had been read from the store (tests,
    /// builders).
    pub fn insert<T: Stored>(&mut self, obj: &T) {
        let bytes = serde_json::to_vec(obj).expect("model objects always serialize");
        self.apply(&obj.store_key(), Some(&bytes))
            .expect("a key built by Stored is always a topology key");
    }

    /// Ports of a bridge or router, in id order.
    pub fn ports_of(&self, device: DeviceId) -> impl Iterator<Item = &Port> {
        self.ports.values().filter(move |p| p.device_id == device)
    }

    /// Routes of a router.
    pub fn routes_of(&self, router: RouterId) -> impl Iterator<Item = &Route> {
        self.routes.values().filter(move |r| r.router_id == router)
    }

    /// The rules of a chain in evaluation order; ids in `ruleIds` with no
    /// rule (a write in flight) are skipped.
    pub fn rules_of(&self, chain: ChainId) -> Vec<&Rule> {
        self.chains
            .get(&chain)
            .map(|c| c.rule_ids.iter().filter_map(|r| self.rules.get(r)).collect())
            .unwrap_or_default()
    }

    /// Ports bound to interfaces of `host`.
    pub fn ports_bound_to(&self, host: HostId) -> impl Iterator<Item = &Port> {
        self.ports.values().filter(move |p| p.host_id == Some(host) && p.interface_name.is_some())
    }

    /// Members of a port group.
    pub fn port_group_members(&self, group: PortGroupId) -> impl Iterator<Item = &Port> {
        self.ports.values().filter(move |p| p.port_group_ids.contains(&group))
    }

    /// Whether `addr` is in the IP address group.
    pub fn ip_addr_group_contains(&self, group: IpAddrGroupId, addr: IpAddr) -> bool {
        self.ip_addr_group_addrs.contains_key(&(group, addr))
    }

    /// The underlay IP of `host` in any tunnel zone it shares with `local`
    /// (the first such zone by id).
    pub fn tunnel_ip(&self, local: HostId, host: HostId) -> Option<Ipv4Addr> {
        self.tunnel_zone_hosts.values().find_map(|m| {
            if m.host_id != host {
                return None;
            }
            let shared = self.tunnel_zone_hosts.contains_key(&(m.tunnel_zone_id, local));
            if shared {
                m.ip_address
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::PortType;

    #[test]
    fn apply_put_and_delete_for_top_level_and_sub_objects() {
        let mut t = Topology::default();
        let b = Bridge {
            id: BridgeId::random(),
            name: "b".into(),
            admin_state_up: true,
            ..Default::default()
        };
        t.insert(&b);
        let p = Port {
            id: PortId::random(),
            port_type: PortType::Bridge,
            device_id: b.id.cast(),
            admin_state_up: true,
            ..Default::default()
        };
        t.insert(&p);
        let e = MacTableEntry {
            bridge_id: b.id,
            mac_addr: "02:00:00:00:00:01".parse().expect("mac"),
            port_id: p.id,
            vlan_id: 0,
        };
        t.insert(&e);
        assert_eq!(t.ports_of(b.id.cast()).count(), 1);
        assert_eq!(t.mac_entries.len(), 1);
        t.apply(&e.store_key(), None).expect("delete");
        assert!(t.mac_entries.is_empty());
        t.apply(&p.store_key(), None).expect("delete");
        assert!(t.ports.is_empty());
    }

    #[test]
    fn slots_name_every_entry_held_and_kinds_do_not_mix() {
        let mut t = Topology::default();
        let b = Bridge { id: BridgeId::random(), ..Default::default() };
        let e = MacTableEntry {
            bridge_id: b.id,
            mac_addr: "02:00:00:00:00:01".parse().expect("mac"),
            port_id: PortId::random(),
            vlan_id: 3,
        };
        t.insert(&b);
        t.insert(&e);
        let mut slots: Vec<Slot> = t.slots().collect();
        slots.sort();
        let want = [Slot::parse(&b.store_key()), Slot::parse(&e.store_key())]
            .map(|s| s.expect("a topology key"));
        assert_eq!(slots, want);
        assert_eq!(t.get(&want[1]), Some(EntryRef::MacTableEntry(&e)));
        assert_eq!(t.put(want[0].clone(), Entry::MacTableEntry(e.clone())), Err(KindMismatch));
        assert_eq!(t.take(&want[0]), Some(Entry::Bridge(b)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn tunnel_ip_requires_a_shared_zone() {
        let mut t = Topology::default();
        let (a, b, c) = (HostId::random(), HostId::random(), HostId::random());
        let z1 = TunnelZoneId::random();
        let z2 = TunnelZoneId::random();
        for (z, h, ip) in [(z1, a, "10.0.0.1"), (z1, b, "10.0.0.2"), (z2, c, "10.0.0.3")] {
            t.insert(&TunnelZoneHost {
                tunnel_zone_id: z,
                host_id: h,
                ip_address: Some(ip.parse().expect("ip")),
            });
        }
        assert_eq!(t.tunnel_ip(a, b), Some("10.0.0.2".parse().expect("ip")));
        assert_eq!(t.tunnel_ip(a, c), None);
    }

    #[test]
    fn bad_keys_and_values_are_errors() {
        let mut t = Topology::default();
        assert!(matches!(t.apply("/midonet/v1/bridges/zzz", None), Err(DecodeError::BadKey(_))));
        let k = ObjectKind::Bridge.key(&[&BridgeId::random().to_string()]);
        assert!(matches!(t.apply(&k, Some(b"{not json")), Err(DecodeError::BadValue { .. })));
    }
}
