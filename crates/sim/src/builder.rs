//! A small topology builder for tests, benches and the fuzz target (behind
//! the `test-util` feature: not part of the product).
//!
//! Ids are deterministic (`Uuid::from_u128(namespace << 64 | n)`), so two
//! runs build byte-identical topologies and golden traces stay stable.

use std::net::Ipv4Addr;

use midonet_model as model;
use model::*;
use uuid::Uuid;

/// Builds a [`Topology`] object by object.
#[derive(Debug, Clone, Default)]
pub struct TopoBuilder {
    pub topo: Topology,
    next: u128,
    ns: u128,
}

impl TopoBuilder {
    /// A builder whose ids live in namespace `ns`.
    pub fn new(ns: u64) -> Self {
        TopoBuilder { topo: Topology::default(), next: 0, ns: u128::from(ns) << 64 }
    }

    /// The next deterministic id.
    pub fn id<T>(&mut self) -> Id<T> {
        self.next += 1;
        Id::from_uuid(Uuid::from_u128(self.ns | self.next))
    }

    pub fn bridge(&mut self, name: &str) -> BridgeId {
        let id = self.id();
        self.topo.insert(&Bridge {
            id,
            name: name.into(),
            admin_state_up: true,
            ..Default::default()
        });
        id
    }

    pub fn router(&mut self, name: &str) -> RouterId {
        let id = self.id();
        self.topo.insert(&Router {
            id,
            name: name.into(),
            admin_state_up: true,
            ..Default::default()
        });
        id
    }

    /// An exterior (bound) bridge port.
    pub fn bridge_port(&mut self, b: BridgeId) -> PortId {
        let id = self.id();
        self.topo.insert(&Port {
            id,
            port_type: PortType::Bridge,
            device_id: b.cast(),
            admin_state_up: true,
            host_id: Some(HostId::from_uuid(Uuid::from_u128(0xaa))),
            interface_name: Some(format!("vm{}", self.next)),
            ..Default::default()
        });
        id
    }

    /// An interior bridge port (to be linked), optionally VLAN-tagged.
    pub fn bridge_iport(&mut self, b: BridgeId, vlan: Option<u16>) -> PortId {
        let id = self.id();
        self.topo.insert(&Port {
            id,
            port_type: PortType::Bridge,
            device_id: b.cast(),
            admin_state_up: true,
            vlan_id: vlan,
            ..Default::default()
        });
        id
    }

    /// A router port with `cidr` = "10.0.0.1/24" and a MAC; exterior when
    /// `exterior` (an uplink), else interior (to be linked).
    pub fn router_port(&mut self, r: RouterId, cidr: &str, mac: &str, exterior: bool) -> PortId {
        let id = self.id();
        let (ip, len) = cidr.split_once('/').expect("cidr has a /");
        let ip: Ipv4Addr = ip.parse().expect("ip");
        let len: u8 = len.parse().expect("len");
        let net = Ipv4Addr::from(u32::from(ip) & model::port::prefix_mask(len));
        self.topo.insert(&Port {
            id,
            port_type: PortType::Router,
            device_id: r.cast(),
            admin_state_up: true,
            port_address: Some(ip),
            network_address: Some(net),
            network_length: Some(len),
            port_mac: Some(mac.parse().expect("mac")),
            host_id: exterior.then(|| HostId::from_uuid(Uuid::from_u128(0xbb))),
            interface_name: exterior.then(|| format!("up{}", self.next)),
            ..Default::default()
        });
        id
    }

    /// Link two interior ports.
    pub fn link(&mut self, a: PortId, b: PortId) {
        self.edit_port(a, |p| p.peer_id = Some(b));
        self.edit_port(b, |p| p.peer_id = Some(a));
    }

    /// Change a port in place.
    pub fn edit_port(&mut self, id: PortId, f: impl FnOnce(&mut Port)) {
        let mut p = self.topo.ports.get(&id).cloned().expect("port exists");
        f(&mut p);
        self.topo.insert(&p);
    }
    pub fn edit_bridge(&mut self, id: BridgeId, f: impl FnOnce(&mut Bridge)) {
        let mut b = self.topo.bridges.get(&id).cloned().expect("bridge exists");
        f(&mut b);
        self.topo.insert(&b);
    }
    pub fn edit_router(&mut self, id: RouterId, f: impl FnOnce(&mut Router)) {
        let mut r = self.topo.routers.get(&id).cloned().expect("router exists");
        f(&mut r);
        self.topo.insert(&r);
    }

    /// A route `dst` ("10.0.1.0/24") out of `port`, via `gw`.
    pub fn route(
        &mut self,
        r: RouterId,
        dst: &str,
        port: Option<PortId>,
        gw: Option<&str>,
    ) -> RouteId {
        self.route_full(r, dst, "0.0.0.0/0", port, gw, 100, RouteType::Normal)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn route_full(
        &mut self,
        r: RouterId,
        dst: &str,
        src: &str,
        port: Option<PortId>,
        gw: Option<&str>,
        weight: u32,
        kind: RouteType,
    ) -> RouteId {
        let id = self.id();
        let split = |c: &str| {
            let (a, l) = c.split_once('/').expect("cidr has a /");
            (a.parse::<Ipv4Addr>().expect("ip"), l.parse::<u8>().expect("len"))
        };
        let (da, dl) = split(dst);
        let (sa, sl) = split(src);
        self.topo.insert(&Route {
            id,
            router_id: r,
            route_type: kind,
            src_network_addr: sa,
            src_network_length: sl,
            dst_network_addr: da,
            dst_network_length: dl,
            next_hop_port: port,
            next_hop_gateway: gw.map(|g| g.parse().expect("gw")),
            weight,
            ..Default::default()
        });
        id
    }

    pub fn chain(&mut self, name: &str) -> ChainId {
        let id = self.id();
        self.topo.insert(&Chain { id, name: name.into(), ..Default::default() });
        id
    }

    /// Append `rule` to `chain` (its id and chain id are filled in).
    pub fn rule(&mut self, chain: ChainId, mut rule: Rule) -> RuleId {
        let id = self.id();
        rule.id = id;
        rule.chain_id = chain;
        self.topo.insert(&rule);
        let mut c = self.topo.chains.get(&chain).cloned().expect("chain exists");
        c.rule_ids.push(id);
        self.topo.insert(&c);
        id
    }

    pub fn port_group(&mut self, name: &str, members: &[PortId]) -> PortGroupId {
        let id = self.id();
        self.topo.insert(&PortGroup { id, name: name.into(), ..Default::default() });
        for m in members {
            self.edit_port(*m, |p| p.port_group_ids.push(id));
        }
        id
    }

    pub fn ip_addr_group(&mut self, name: &str, addrs: &[&str]) -> IpAddrGroupId {
        let id = self.id();
        self.topo.insert(&IpAddrGroup { id, name: name.into(), ..Default::default() });
        for a in addrs {
            let addr: std::net::IpAddr = a.parse().expect("ip");
            self.topo.insert(&IpAddrGroupAddr {
                ip_addr_group_id: id,
                addr,
                version: if addr.is_ipv4() { 4 } else { 6 },
            });
        }
        id
    }

    pub fn mirror(&mut self, to: PortId, conditions: Vec<Condition>) -> MirrorId {
        let id = self.id();
        self.topo.insert(&Mirror { id, to_port_id: Some(to), conditions, ..Default::default() });
        id
    }

    pub fn mac_entry(&mut self, b: BridgeId, vlan: u16, mac: &str, port: PortId) {
        self.topo.insert(&MacTableEntry {
            bridge_id: b,
            mac_addr: mac.parse().expect("mac"),
            port_id: port,
            vlan_id: vlan,
        });
    }

    pub fn arp_entry(&mut self, b: BridgeId, ip: &str, mac: &str) {
        self.topo.insert(&ArpTableEntry {
            bridge_id: b,
            ip: ip.parse().expect("ip"),
            mac: mac.parse().expect("mac"),
        });
    }

    pub fn build(&self) -> Topology {
        self.topo.clone()
    }
}
