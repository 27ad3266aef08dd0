//! [`Snapshot`]: the topology compiled for simulation.
//!
//! [`Snapshot::build`] turns a [`Topology`] (plain data, keyed by id in
//! `BTreeMap`s) into dense per-object structs in hash maps, with everything
//! the packet path needs precomputed:
//!
//! * per router: an LPM trie over destination prefixes ([`RouteTable`]);
//!   each node holds its routes sorted by weight and the longest prefix
//!   below it (for the megaflow mask); the router's own port addresses are
//!   added as `/32 Local` routes unless configured otherwise;
//! * per chain: the rules in order, conditions compiled (`Cond`);
//! * per bridge: exterior ports (flood set), VLAN-tagged interior ports,
//!   the MACs and IPs of peer router ports, seeded MAC and ARP entries;
//! * port-group membership (on ports) and IP-address-group sets;
//! * global static reverse-NAT maps (from static `dnat`/`snat` rules).
//!
//! Dangling references (a port whose device is gone, a jump to a deleted
//! chain) are kept as they are and handled when simulated (drop, or skip),
//! never at build time: a snapshot always builds.
//!
//! The snapshot is immutable; the agent builds a new one per topology change
//! and swaps an `Arc`.

use std::net::{IpAddr, Ipv4Addr};

use hashbrown::{HashMap, HashSet};
use ipnet::{IpNet, Ipv4Net};
use midonet_model as model;
use model::{
    BridgeId, ChainId, DeviceId, FlowAction, FragmentPolicy, IpAddrGroupId, MirrorId, PortGroupId,
    PortId, RouteType, RouterId, RuleId, RuleType, Topology,
};

use crate::MacAddr;

pub(crate) mod lb;
mod route_table;
pub use lb::status_up as lb_member_status_up;
pub(crate) use lb::{LbIndex, SLb, SVip};
pub use route_table::{RouteTable, SRoute};

pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
pub(crate) type Set<K> = HashSet<K, foldhash::fast::FixedState>;

fn mac(m: model::MacAddr) -> MacAddr {
    MacAddr(m.0)
}

/// The device a port belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dev {
    Bridge(BridgeId),
    Router(RouterId),
}

impl Dev {
    pub fn id(self) -> DeviceId {
        match self {
            Dev::Bridge(b) => b.cast(),
            Dev::Router(r) => r.cast(),
        }
    }
}

/// A router port's L3 identity (flow's MAC type).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortAddr {
    pub ip: Ipv4Addr,
    pub net: Ipv4Net,
    pub mac: MacAddr,
}

impl PortAddr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.net.contains(&ip)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SPort {
    pub id: PortId,
    pub dev: Dev,
    pub admin_up: bool,
    pub in_chain: Option<ChainId>,
    pub out_chain: Option<ChainId>,
    pub peer: Option<PortId>,
    pub exterior: bool,
    pub vlan: Option<u16>,
    pub addr: Option<PortAddr>,
    /// Port groups and mirrors, which most ports have none of: boxed
    /// apart, so a port without them costs a pointer, not five lists (at
    /// 100k ports the port map is most of a snapshot's memory).
    lists: Option<Box<PortLists>>,
}

#[derive(Clone, Debug, Default)]
struct PortLists {
    groups: Vec<PortGroupId>,
    m_pre_in: Vec<MirrorId>,
    m_post_in: Vec<MirrorId>,
    m_pre_out: Vec<MirrorId>,
    m_post_out: Vec<MirrorId>,
}

impl SPort {
    fn lists(&self) -> &PortLists {
        static NONE: PortLists = PortLists {
            groups: Vec::new(),
            m_pre_in: Vec::new(),
            m_post_in: Vec::new(),
            m_pre_out: Vec::new(),
            m_post_out: Vec::new(),
        };
        self.lists.as_deref().unwrap_or(&NONE)
    }
    pub fn groups(&self) -> &[PortGroupId] {
        &self.lists().groups
    }
    /// Mirrors before the inbound filter.
    pub fn m_pre_in(&self) -> &[MirrorId] {
        &self.lists().m_pre_in
    }
    /// Mirrors after the inbound filter.
    pub fn m_post_in(&self) -> &[MirrorId] {
        &self.lists().m_post_in
    }
    /// Mirrors before the outbound filter.
    pub fn m_pre_out(&self) -> &[MirrorId] {
        &self.lists().m_pre_out
    }
    /// Mirrors after the outbound filter.
    pub fn m_post_out(&self) -> &[MirrorId] {
        &self.lists().m_post_out
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SBridge {
    pub id: BridgeId,
    pub name: String,
    pub admin_up: bool,
    pub in_chain: Option<ChainId>,
    pub out_chain: Option<ChainId>,
    pub m_in: Vec<MirrorId>,
    pub m_out: Vec<MirrorId>,
    /// Exterior ports in id order: the flood set.
    pub exterior: Vec<PortId>,
    /// Interior ports tagged with a VLAN.
    pub vlan_ports: Map<u16, PortId>,
    /// Interior ports linked to a VLAN-tagged port of a VLAN-aware bridge:
    /// floods fork there too (MidoNet's rule).
    pub vlan_uplinks: Vec<PortId>,
    /// MAC of a peer router port → our interior port linked to it.
    pub router_macs: Map<MacAddr, PortId>,
    /// IP of a peer router port → its MAC (ARP answered locally).
    pub router_ips: Map<Ipv4Addr, MacAddr>,
    pub seeded_macs: Map<(u16, MacAddr), PortId>,
    pub seeded_arp: Map<Ipv4Addr, MacAddr>,
}

impl SBridge {
    pub fn vlan_aware(&self) -> bool {
        !self.vlan_ports.is_empty()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SRouter {
    pub id: RouterId,
    pub name: String,
    pub admin_up: bool,
    pub in_chain: Option<ChainId>,
    pub out_chain: Option<ChainId>,
    /// `forwardChainId`: routed traffic, before `out_chain` (FWaaS).
    pub fwd_chain: Option<ChainId>,
    /// `localRedirectChainId`: every IPv4 packet, before `in_chain`.
    pub redirect_chain: Option<ChainId>,
    pub m_in: Vec<MirrorId>,
    pub m_out: Vec<MirrorId>,
    pub routes: RouteTable,
    /// The router's load balancer, when it has one that is admin up.
    pub lb: Option<SLb>,
}

/// Compiled rule condition (see [`model::Condition`] for the meaning).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cond {
    pub invert: bool,
    pub fwd: bool,
    pub ret: bool,
    pub in_ports: Option<(Vec<PortId>, bool)>,
    pub out_ports: Option<(Vec<PortId>, bool)>,
    pub port_group: Option<(PortGroupId, bool)>,
    pub in_port_group: Option<(PortGroupId, bool)>,
    pub out_port_group: Option<(PortGroupId, bool)>,
    pub ipg_src: Option<(IpAddrGroupId, bool)>,
    pub ipg_dst: Option<(IpAddrGroupId, bool)>,
    pub traversed: Option<(DeviceId, bool)>,
    pub dl_type: Option<(u16, bool)>,
    pub dl_src: Option<(u64, u64, bool)>,
    pub dl_dst: Option<(u64, u64, bool)>,
    pub nw_tos: Option<(u8, bool)>,
    pub nw_proto: Option<(u8, bool)>,
    pub nw_src: Option<(IpNet, bool)>,
    pub nw_dst: Option<(IpNet, bool)>,
    pub tp_src: Option<(u16, u16, bool)>,
    pub tp_dst: Option<(u16, u16, bool)>,
    pub frag: Option<FragmentPolicy>,
    pub no_vlan: bool,
    pub vlan: Option<u16>,
    pub icmp_src: Option<(IpNet, bool)>,
    pub icmp_dst: Option<(IpNet, bool)>,
    pub dst_rewritten: bool,
}

fn net(addr: Option<IpAddr>, len: Option<u8>) -> Option<IpNet> {
    let a = addr?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    IpNet::new(a, len.unwrap_or(max).min(max)).ok().map(|n| n.trunc())
}

pub(crate) fn mac_u64(m: MacAddr) -> u64 {
    m.0.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

impl Cond {
    pub fn compile(c: &model::Condition) -> Cond {
        let inv = |v: bool| v;
        Cond {
            invert: c.cond_invert,
            fwd: c.match_forward_flow,
            ret: c.match_return_flow,
            in_ports: (!c.in_ports.is_empty()).then(|| (c.in_ports.clone(), c.inv_in_ports)),
            out_ports: (!c.out_ports.is_empty()).then(|| (c.out_ports.clone(), c.inv_out_ports)),
            port_group: c.port_group.map(|g| (g, inv(c.inv_port_group))),
            in_port_group: c.in_port_group.map(|g| (g, c.inv_in_port_group)),
            out_port_group: c.out_port_group.map(|g| (g, c.inv_out_port_group)),
            ipg_src: c.ip_addr_group_src.map(|g| (g, c.inv_ip_addr_group_src)),
            ipg_dst: c.ip_addr_group_dst.map(|g| (g, c.inv_ip_addr_group_dst)),
            traversed: c.traversed_device.map(|d| (d, c.inv_traversed_device)),
            dl_type: c.dl_type.map(|t| (t, c.inv_dl_type)),
            dl_src: c.dl_src.map(|m| {
                (mac_u64(mac(m)), c.dl_src_mask.map_or(0xffff_ffff_ffff, |k| k.0), c.inv_dl_src)
            }),
            dl_dst: c.dl_dst.map(|m| {
                (mac_u64(mac(m)), c.dl_dst_mask.map_or(0xffff_ffff_ffff, |k| k.0), c.inv_dl_dst)
            }),
            nw_tos: c.nw_tos.map(|t| (t, c.inv_nw_tos)),
            nw_proto: c.nw_proto.map(|p| (p, c.inv_nw_proto)),
            nw_src: net(c.nw_src_address, c.nw_src_length).map(|n| (n, c.inv_nw_src)),
            nw_dst: net(c.nw_dst_address, c.nw_dst_length).map(|n| (n, c.inv_nw_dst)),
            tp_src: c.tp_src.map(|r| (r.start, r.end, c.inv_tp_src)),
            tp_dst: c.tp_dst.map(|r| (r.start, r.end, c.inv_tp_dst)),
            frag: match c.effective_fragment_policy() {
                FragmentPolicy::Any => None,
                p => Some(p),
            },
            no_vlan: c.no_vlan,
            vlan: c.vlan,
            icmp_src: net(c.icmp_data_src_ip, c.icmp_data_src_length)
                .map(|n| (n, c.inv_icmp_data_src_ip)),
            icmp_dst: net(c.icmp_data_dst_ip, c.icmp_data_dst_length)
                .map(|n| (n, c.inv_icmp_data_dst_ip)),
            dst_rewritten: c.match_nw_dst_rewritten,
        }
    }
}

/// What a rule does when it matches.
#[derive(Clone, Debug)]
pub(crate) enum RuleAct {
    Accept,
    Drop,
    Reject,
    Return,
    Jump(ChainId),
    /// Static NAT: rewrite the destination (`dnat`) or source address only.
    StaticNat {
        dnat: bool,
        to: Ipv4Addr,
        then: FlowAction,
    },
    /// Dynamic (stateful, port-translating) NAT: a binding per connection
    /// through the flow-state seam (`engine::nat`).
    DynamicNat {
        dnat: bool,
        targets: Vec<midonet_state::SnatTarget>,
        then: FlowAction,
    },
    RevNat {
        dnat: bool,
        then: FlowAction,
    },
    L2 {
        pop: bool,
        push: Option<u16>,
    },
    Redirect {
        port: PortId,
        ingress: bool,
        fail_open: bool,
        pop: bool,
        push: Option<u16>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct SRule {
    pub id: RuleId,
    pub cond: Cond,
    pub act: RuleAct,
}

impl SRule {
    fn compile(r: &model::Rule) -> SRule {
        let then = r.flow_action.unwrap_or(FlowAction::Accept);
        let act = match r.rule_type {
            RuleType::Accept => RuleAct::Accept,
            RuleType::Drop => RuleAct::Drop,
            RuleType::Reject => RuleAct::Reject,
            RuleType::Return => RuleAct::Return,
            // A jump without a target chain is a no-op (MidoNet ignores
            // jumps to missing chains); model it as a jump to nil.
            RuleType::Jump => RuleAct::Jump(r.jump_chain_id.unwrap_or_default()),
            RuleType::Dnat | RuleType::Snat => {
                let dnat = r.rule_type == RuleType::Dnat;
                match r.nat_targets.first() {
                    Some(t) if r.is_static_nat() => {
                        RuleAct::StaticNat { dnat, to: t.address_from, then }
                    }
                    _ => RuleAct::DynamicNat {
                        dnat,
                        targets: r
                            .nat_targets
                            .iter()
                            .map(|t| midonet_state::SnatTarget {
                                ip_from: t.address_from,
                                ip_to: t.address_to,
                                port_from: t.port_from,
                                port_to: t.port_to,
                            })
                            .collect(),
                        then,
                    },
                }
            }
            RuleType::RevDnat => RuleAct::RevNat { dnat: true, then },
            RuleType::RevSnat => RuleAct::RevNat { dnat: false, then },
            // The model's type says which (on the wire: l2_transform with
            // flowAction accept or redirect). A redirect without a target
            // (validation refuses one) can only transform.
            RuleType::L2Transform => RuleAct::L2 { pop: r.pop_vlan, push: r.push_vlan },
            RuleType::Redirect => match r.target_port_id {
                Some(port) => RuleAct::Redirect {
                    port,
                    ingress: r.ingress,
                    fail_open: r.fail_open,
                    pop: r.pop_vlan,
                    push: r.push_vlan,
                },
                None => RuleAct::L2 { pop: r.pop_vlan, push: r.push_vlan },
            },
        };
        SRule { id: r.id, cond: Cond::compile(&r.condition), act }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SChain {
    pub name: String,
    pub rules: Vec<SRule>,
}

#[derive(Clone, Debug)]
pub(crate) struct SMirror {
    pub id: MirrorId,
    pub to: Option<PortId>,
    /// OR'ed; empty matches everything.
    pub conds: Vec<Cond>,
}

/// The compiled, immutable topology the simulation runs on.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub(crate) ports: Map<PortId, SPort>,
    pub(crate) bridges: Map<BridgeId, SBridge>,
    pub(crate) routers: Map<RouterId, SRouter>,
    pub(crate) chains: Map<ChainId, SChain>,
    pub(crate) ip_groups: Map<IpAddrGroupId, Set<IpAddr>>,
    pub(crate) mirrors: Map<MirrorId, SMirror>,
    /// Static DNAT target → original destination (for `rev_dnat`: restore
    /// the source of return traffic).
    pub(crate) rev_dnat: Map<Ipv4Addr, Ipv4Addr>,
    /// Static SNAT target → original source (for `rev_snat`: restore the
    /// destination of return traffic).
    pub(crate) rev_snat: Map<Ipv4Addr, Ipv4Addr>,
    /// DHCP configuration of the bridges that have an enabled subnet.
    pub(crate) dhcp: Map<BridgeId, crate::dhcp::BridgeDhcp>,
    /// Pools' load balancers and load balancers' routers (invalidation).
    pub(crate) lb_index: LbIndex,
    /// The topology revision this was built from.
    pub revision: i64,
}

/// A stable 64-bit hash for rendezvous hashing weights.
pub(crate) fn hash64(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

pub(crate) fn uuid_hash(u: uuid::Uuid) -> u64 {
    let v = u.as_u128();
    hash64(v as u64, (v >> 64) as u64)
}

impl Snapshot {
    /// Compile a topology (see the module docs). Never fails.
    pub fn build(t: &Topology) -> Snapshot {
        let mut s = Snapshot {
            revision: t.revision,
            dhcp: crate::dhcp::build(t),
            lb_index: LbIndex::build(t),
            ..Default::default()
        };
        // Ports by device and routes by router, once: asking the topology
        // per device (`ports_of`) scans every port each time, which made
        // this quadratic (20k bridges × 50k ports: minutes).
        let mut ports_of: HashMap<DeviceId, Vec<&model::Port>> = HashMap::new();
        for p in t.ports.values() {
            ports_of.entry(p.device_id).or_default().push(p);
        }
        let mut routes_of: HashMap<RouterId, Vec<&model::Route>> = HashMap::new();
        for rt in t.routes.values() {
            routes_of.entry(rt.router_id).or_default().push(rt);
        }
        let none = Vec::new();
        for p in t.ports.values() {
            let dev = if p.is_router_port() {
                Dev::Router(p.device_id.cast())
            } else {
                Dev::Bridge(p.device_id.cast())
            };
            let addr = p.router_addr().and_then(|a| {
                Some(PortAddr {
                    ip: a.address,
                    net: Ipv4Net::new(a.network, a.length.min(32)).ok()?.trunc(),
                    mac: mac(a.mac),
                })
            });
            s.ports.insert(
                p.id,
                SPort {
                    id: p.id,
                    dev,
                    admin_up: p.admin_state_up,
                    in_chain: p.inbound_filter_id,
                    out_chain: p.outbound_filter_id,
                    peer: p.peer_id,
                    exterior: p.is_exterior() && p.peer_id.is_none(),
                    vlan: if p.is_bridge_port() && p.peer_id.is_some() { p.vlan_id } else { None },
                    addr: if p.is_router_port() { addr } else { None },
                    lists: {
                        let l = PortLists {
                            groups: p.port_group_ids.clone(),
                            m_pre_in: p.inbound_mirror_ids.clone(),
                            m_post_in: p.post_in_filter_mirror_ids.clone(),
                            m_pre_out: p.pre_out_filter_mirror_ids.clone(),
                            m_post_out: p.outbound_mirror_ids.clone(),
                        };
                        let none = l.groups.is_empty()
                            && [&l.m_pre_in, &l.m_post_in, &l.m_pre_out, &l.m_post_out]
                                .iter()
                                .all(|m| m.is_empty());
                        (!none).then(|| Box::new(l))
                    },
                },
            );
        }
        for b in t.bridges.values() {
            let mut sb = SBridge {
                id: b.id,
                name: b.name.clone(),
                admin_up: b.admin_state_up,
                in_chain: b.inbound_filter_id,
                out_chain: b.outbound_filter_id,
                m_in: b.inbound_mirror_ids.clone(),
                m_out: b.outbound_mirror_ids.clone(),
                exterior: Vec::new(),
                vlan_ports: Map::default(),
                vlan_uplinks: Vec::new(),
                router_macs: Map::default(),
                router_ips: Map::default(),
                seeded_macs: Map::default(),
                seeded_arp: Map::default(),
            };
            for p in ports_of.get(&b.id.cast()).unwrap_or(&none) {
                let Some(sp) = s.ports.get(&p.id) else { continue };
                if sp.exterior {
                    sb.exterior.push(p.id);
                }
                if let Some(v) = sp.vlan {
                    sb.vlan_ports.insert(v, p.id);
                }
                if let Some(peer) = sp.peer.and_then(|q| s.ports.get(&q)) {
                    if peer.vlan.is_some() && sp.vlan.is_none() {
                        sb.vlan_uplinks.push(p.id);
                    }
                    if let Some(a) = peer.addr {
                        sb.router_macs.insert(a.mac, p.id);
                        sb.router_ips.insert(a.ip, a.mac);
                    }
                }
            }
            s.bridges.insert(b.id, sb);
        }
        for e in t.mac_entries.values() {
            if let Some(b) = s.bridges.get_mut(&e.bridge_id) {
                b.seeded_macs.insert((e.vlan_id, mac(e.mac_addr)), e.port_id);
            }
        }
        for e in t.arp_entries.values() {
            if let Some(b) = s.bridges.get_mut(&e.bridge_id) {
                b.seeded_arp.insert(e.ip, mac(e.mac));
            }
        }
        for r in t.routers.values() {
            let mut routes = Vec::new();
            let mut explicit: Set<Ipv4Net> = Set::default();
            for rt in routes_of.get(&r.id).map_or(&[][..], Vec::as_slice) {
                let Ok(dst) = Ipv4Net::new(rt.dst_network_addr, rt.dst_network_length.min(32))
                else {
                    continue;
                };
                let Ok(src) = Ipv4Net::new(rt.src_network_addr, rt.src_network_length.min(32))
                else {
                    continue;
                };
                let dst = dst.trunc();
                explicit.insert(dst);
                routes.push((
                    dst,
                    SRoute {
                        id: Some(rt.id),
                        kind: rt.route_type,
                        src: src.trunc(),
                        gateway: rt.next_hop_gateway.filter(|g| !g.is_unspecified()),
                        port: rt.next_hop_port,
                        weight: rt.weight,
                        // Keyed on the next hop, not the route id: a
                        // re-created route (a BGP flap) keeps its flows.
                        hrw: hash64(
                            uuid_hash(rt.next_hop_port.unwrap_or_default().uuid()),
                            u64::from(rt.next_hop_gateway.map_or(0, u32::from)),
                        ),
                    },
                ));
            }
            // The router's own addresses are local, as MidoNet's cluster
            // adds /32 LOCAL routes for them; do it here so a topology
            // written without them still answers pings to its ports.
            for p in ports_of.get(&r.id.cast()).unwrap_or(&none) {
                let Some(a) = s.ports.get(&p.id).and_then(|sp| sp.addr) else { continue };
                let host = Ipv4Net::new(a.ip, 32).expect("/32 is a valid prefix");
                if explicit.insert(host) {
                    routes.push((
                        host,
                        SRoute {
                            id: None,
                            kind: RouteType::Local,
                            src: Ipv4Net::default(),
                            gateway: None,
                            port: Some(p.id),
                            weight: 0,
                            hrw: uuid_hash(p.id.uuid()),
                        },
                    ));
                }
            }
            s.routers.insert(
                r.id,
                SRouter {
                    id: r.id,
                    name: r.name.clone(),
                    admin_up: r.admin_state_up,
                    in_chain: r.inbound_filter_id,
                    out_chain: r.outbound_filter_id,
                    fwd_chain: r.forward_chain_id,
                    redirect_chain: r.local_redirect_chain_id,
                    m_in: r.inbound_mirror_ids.clone(),
                    m_out: r.outbound_mirror_ids.clone(),
                    routes: RouteTable::build(routes),
                    lb: lb::build(t, r),
                },
            );
        }
        for c in t.chains.values() {
            let rules = t.rules_of(c.id).into_iter().map(SRule::compile).collect();
            s.chains.insert(c.id, SChain { name: c.name.clone(), rules });
        }
        for r in t.rules.values() {
            if !r.is_static_nat() {
                continue;
            }
            let Some(tgt) = r.nat_targets.first() else { continue };
            let c = &r.condition;
            let host = |a: Option<IpAddr>, l: Option<u8>, inv: bool| match (a, l.unwrap_or(32), inv)
            {
                (Some(IpAddr::V4(a)), 32, false) => Some(a),
                _ => None,
            };
            match r.rule_type {
                RuleType::Dnat => {
                    if let Some(orig) = host(c.nw_dst_address, c.nw_dst_length, c.inv_nw_dst) {
                        s.rev_dnat.insert(tgt.address_from, orig);
                    }
                }
                RuleType::Snat => {
                    if let Some(orig) = host(c.nw_src_address, c.nw_src_length, c.inv_nw_src) {
                        s.rev_snat.insert(tgt.address_from, orig);
                    }
                }
                _ => {}
            }
        }
        for g in t.ip_addr_groups.values() {
            s.ip_groups.insert(g.id, Set::default());
        }
        for (g, addr) in t.ip_addr_group_addrs.keys() {
            s.ip_groups.entry(*g).or_default().insert(*addr);
        }
        for m in t.mirrors.values() {
            s.mirrors.insert(
                m.id,
                SMirror {
                    id: m.id,
                    to: m.to_port_id,
                    conds: m.conditions.iter().map(Cond::compile).collect(),
                },
            );
        }
        s
    }

    /// The device of a port, if the port exists.
    pub fn port_device(&self, port: PortId) -> Option<DeviceId> {
        self.ports.get(&port).map(|p| p.dev.id())
    }

    /// Whether a router exists.
    pub fn has_router(&self, id: RouterId) -> bool {
        self.routers.contains_key(&id)
    }

    /// Whether a bridge exists.
    pub fn has_bridge(&self, id: BridgeId) -> bool {
        self.bridges.contains_key(&id)
    }

    /// Whether a port exists and is interior (linked to a peer port).
    pub fn is_interior(&self, port: PortId) -> bool {
        self.ports.get(&port).is_some_and(|p| p.peer.is_some())
    }

    /// Whether a port exists and is exterior (bound to a host interface).
    pub fn is_exterior(&self, port: PortId) -> bool {
        self.ports.get(&port).is_some_and(|p| p.exterior)
    }

    /// The number of prefixes in a router's route table (tests, metrics).
    pub fn route_count(&self, router: RouterId) -> usize {
        self.routers.get(&router).map_or(0, |r| r.routes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cond_compile_truncates_prefixes_and_defaults_lengths() {
        let c = model::Condition {
            nw_src_address: Some("10.1.2.3".parse().expect("ip")),
            nw_src_length: Some(16),
            nw_dst_address: Some("10.9.9.9".parse().expect("ip")),
            ..Default::default()
        };
        let k = Cond::compile(&c);
        assert_eq!(k.nw_src.map(|x| x.0.to_string()), Some("10.1.0.0/16".to_string()));
        assert_eq!(k.nw_dst.map(|x| x.0.to_string()), Some("10.9.9.9/32".to_string()));
        assert!(k.frag.is_none());
    }
}
