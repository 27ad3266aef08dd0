//! Neutron → MidoNet model: pure functions from Neutron objects (and the
//! few facts about others they need) to the MidoNet objects that realise
//! them. No store, no clock, no randomness: the same input gives the same
//! objects with the same ids, so a change is "plan the old, plan the new,
//! write the difference" ([`super::store::replan`]).
//!
//! ```text
//!  unit (who owns it)      MidoNet objects it plans
//!  network                 bridge, a DHCP subnet per IPv4 subnet
//!  port (VM)               bridge port (+ binding), MAC and ARP entries,
//!                          DHCP hosts, SG address-group members, and with
//!                          port security: inbound/outbound/anti-spoof
//!                          chains and their rules
//!  port (router if/gw)     bridge port ⇄ router port, their routes
//!  router                  router, pre/post-routing chains (FIP NAT, SNAT),
//!                          default and extra routes, FIP ARP entries
//!  security group          address group, ingress/egress chains, rules
//! ```
//!
//! The layout follows MidoNet's own translation (midonet-behaviour §5):
//! a VM port's inbound chain (what the VM sends) jumps to the anti-spoof
//! chain, accepts return flows, jumps to each group's egress chain and
//! drops anything else but ARP; its outbound chain (what the VM receives)
//! accepts return flows, jumps to each group's ingress chain and drops the
//! rest but ARP. Accepting return flows is what makes the agent track the
//! VM's connections, so the groups are stateful.

use std::net::{IpAddr, Ipv4Addr};

use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ipam::Cidr;
use super::types::{self, owner};

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;

/// The MidoNet objects a Neutron unit owns: store key → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub objects: Vec<(String, Value)>,
}

impl Plan {
    fn put<T: Stored>(&mut self, obj: &T) {
        let v = serde_json::to_value(obj).expect("model objects always serialize");
        self.objects.push((obj.store_key(), v));
    }
    /// The objects of one kind, decoded (tests and the executor).
    pub fn of<T: Stored>(&self) -> Vec<T> {
        self.objects
            .iter()
            .filter(|(k, _)| k.starts_with(&T::KIND.prefix()))
            .filter_map(|(_, v)| serde_json::from_value(v.clone()).ok())
            .collect()
    }
}

/// An id derived from a Neutron id and a role (`"router-port"`): stable
/// across replans, distinct per role.
pub fn derived(id: &str, role: &str) -> Uuid {
    let h =
        Sha256::new().chain_update(id.as_bytes()).chain_update(b"/").chain_update(role).finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// A Neutron id as a MidoNet id (ids are UUIDs on both sides; a stored
/// Neutron object always has a valid one).
pub fn uuid(id: &str) -> Uuid {
    id.parse().unwrap_or_else(|_| derived(id, "id"))
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap_or(MacAddr([0; 6]))
}

fn host_net(ip: IpAddr) -> (Option<IpAddr>, Option<u8>) {
    (Some(ip), Some(if ip.is_ipv4() { 32 } else { 128 }))
}

fn rule(id: Uuid, chain: ChainId, rule_type: RuleType, condition: Condition) -> Rule {
    Rule { id: id.into(), chain_id: chain, rule_type, condition, ..Default::default() }
}

fn jump(id: Uuid, chain: ChainId, to: ChainId) -> Rule {
    Rule { jump_chain_id: Some(to), ..rule(id, chain, RuleType::Jump, Condition::default()) }
}

/// Puts a chain with its rules, in order.
fn chain(plan: &mut Plan, id: ChainId, name: String, tenant: &str, rules: Vec<Rule>) {
    plan.put(&Chain {
        id,
        tenant_id: Some(tenant.to_string()),
        name,
        rule_ids: rules.iter().map(|r| r.id).collect(),
    });
    for r in &rules {
        plan.put(r);
    }
}

// ---------------------------------------------------------------- networks

/// A network: its bridge, and a DHCP subnet for each IPv4 subnet.
pub fn network(net: &types::Network, subnets: &[types::Subnet]) -> Plan {
    let mut plan = Plan::default();
    let bridge_id: BridgeId = uuid(&net.id).into();
    plan.put(&Bridge {
        id: bridge_id,
        tenant_id: Some(net.project_id.clone()),
        name: net.name.clone(),
        admin_state_up: net.admin_state_up,
        ..Default::default()
    });
    for s in subnets {
        let Ok(c) = Cidr::parse(&s.cidr) else { continue };
        let IpAddr::V4(prefix) = c.net else { continue };
        let gw = s.gateway_ip.as_deref().and_then(v4);
        plan.put(&DhcpSubnet {
            bridge_id,
            subnet_prefix: prefix,
            subnet_length: c.len,
            default_gateway: gw,
            server_addr: gw,
            dns_server_addrs: s.dns_nameservers.iter().filter_map(|d| v4(d)).collect(),
            interface_mtu: u16::try_from(net.mtu).ok(),
            opt121_routes: s
                .host_routes
                .iter()
                .filter_map(|r| {
                    let c = Cidr::parse(&r.destination).ok()?;
                    let IpAddr::V4(p) = c.net else { return None };
                    Some(DhcpOpt121Route {
                        destination_prefix: p,
                        destination_length: c.len,
                        gateway_addr: v4(&r.nexthop)?,
                    })
                })
                .collect(),
            enabled: s.enable_dhcp,
        });
    }
    plan
}

// ------------------------------------------------------------------- ports

/// What a port's plan needs besides the port.
pub struct PortCtx<'a> {
    /// The subnets of the port's network.
    pub subnets: &'a [types::Subnet],
    /// The host `binding:host_id` names, when it is a registered host.
    pub host: Option<HostId>,
}

/// The MidoNet id of the router port behind a router interface or
/// gateway port.
pub fn router_port_id(neutron_port: &str) -> PortId {
    derived(neutron_port, "router-port").into()
}

pub fn port_inbound_chain(port: &str) -> ChainId {
    derived(port, "inbound").into()
}
pub fn port_outbound_chain(port: &str) -> ChainId {
    derived(port, "outbound").into()
}
fn port_antispoof_chain(port: &str) -> ChainId {
    derived(port, "anti-spoof").into()
}
pub fn sg_ingress_chain(sg: &str) -> ChainId {
    derived(sg, "ingress").into()
}
pub fn sg_egress_chain(sg: &str) -> ChainId {
    derived(sg, "egress").into()
}

/// A port: what it is depends on `device_owner`.
pub fn port(p: &types::Port, ctx: &PortCtx<'_>) -> Plan {
    let mut plan = Plan::default();
    if p.device_owner == owner::FLOATING_IP {
        // Holds the floating address; the router's plan realises it.
        return plan;
    }
    let bridge: BridgeId = uuid(&p.network_id).into();
    let id: PortId = uuid(&p.id).into();
    let subnet_of = |f: &types::FixedIp| ctx.subnets.iter().find(|s| s.id == f.subnet_id);
    if p.device_owner == owner::ROUTER_INTERFACE || p.device_owner == owner::ROUTER_GATEWAY {
        let rp = router_port_id(&p.id);
        plan.put(&Port {
            id,
            port_type: PortType::Bridge,
            device_id: bridge.cast(),
            admin_state_up: p.admin_state_up,
            peer_id: Some(rp),
            ..Default::default()
        });
        // The router side: the port's first IPv4 address on its subnet.
        let first = p.fixed_ips.iter().find_map(|f| {
            let s = subnet_of(f)?;
            let c = Cidr::parse(&s.cidr).ok()?;
            let IpAddr::V4(net) = c.net else { return None };
            Some((v4(&f.ip_address)?, net, c.len))
        });
        let router: RouterId = uuid(&p.device_id).into();
        let mut port = Port {
            id: rp,
            port_type: PortType::Router,
            device_id: router.cast(),
            admin_state_up: p.admin_state_up,
            peer_id: Some(id),
            port_mac: Some(mac(&p.mac_address)),
            ..Default::default()
        };
        if let Some((addr, net, len)) = first {
            port.port_address = Some(addr);
            port.network_address = Some(net);
            port.network_length = Some(len);
            plan.put(&Route {
                id: derived(&p.id, "local-route").into(),
                router_id: router,
                route_type: RouteType::Local,
                src_network_addr: Ipv4Addr::UNSPECIFIED,
                src_network_length: 0,
                dst_network_addr: addr,
                dst_network_length: 32,
                next_hop_port: Some(rp),
                next_hop_gateway: None,
                weight: 0,
                learned: false,
                attributes: Some(crate::api::kinds::SYSTEM_ROUTE_LOCAL.into()),
            });
            plan.put(&Route {
                id: derived(&p.id, "subnet-route").into(),
                router_id: router,
                route_type: RouteType::Normal,
                src_network_addr: Ipv4Addr::UNSPECIFIED,
                src_network_length: 0,
                dst_network_addr: net,
                dst_network_length: len,
                next_hop_port: Some(rp),
                next_hop_gateway: None,
                weight: 100,
                learned: false,
                attributes: Some("neutron:interface".into()),
            });
        }
        plan.put(&port);
        return plan;
    }
    let secure = p.port_security_enabled && !p.is_trusted();
    let mut bp = Port {
        id,
        port_type: PortType::Bridge,
        device_id: bridge.cast(),
        admin_state_up: p.admin_state_up,
        ..Default::default()
    };
    if let Some(h) = ctx.host {
        bp.host_id = Some(h);
        bp.interface_name = Some(p.interface_name());
    }
    let m = mac(&p.mac_address);
    plan.put(&MacTableEntry { bridge_id: bridge, mac_addr: m, port_id: id, vlan_id: 0 });
    let ips: Vec<IpAddr> = p.fixed_ips.iter().filter_map(|f| f.ip_address.parse().ok()).collect();
    for f in &p.fixed_ips {
        let (Some(ip), Some(s)) = (v4(&f.ip_address), subnet_of(f)) else { continue };
        plan.put(&ArpTableEntry { bridge_id: bridge, ip, mac: m });
        let Ok(c) = Cidr::parse(&s.cidr) else { continue };
        if !c.is_v4() {
            continue;
        }
        let extra = p
            .extra_dhcp_opts
            .iter()
            .filter(|o| o.ip_version == 4)
            .map(|o| DhcpExtraOpt { opt_name: o.opt_name.clone(), opt_value: o.opt_value.clone() })
            .collect();
        plan.put(&DhcpHost {
            bridge_id: bridge,
            subnet: format!("{}_{}", c.net, c.len),
            mac_addr: m,
            ip_addr: ip,
            name: p.name.clone(),
            extra_dhcp_opts: extra,
        });
    }
    for sg in &p.security_groups {
        for ip in &ips {
            plan.put(&IpAddrGroupAddr {
                ip_addr_group_id: uuid(sg).into(),
                addr: *ip,
                version: if ip.is_ipv4() { 4 } else { 6 },
            });
        }
    }
    if secure {
        let (inb, outb, spoof) =
            (port_inbound_chain(&p.id), port_outbound_chain(&p.id), port_antispoof_chain(&p.id));
        bp.inbound_filter_id = Some(inb);
        bp.outbound_filter_id = Some(outb);
        chain(
            &mut plan,
            spoof,
            format!("OS_PORT_{}_ANTI_SPOOF", p.id),
            &p.project_id,
            antispoof(p, spoof),
        );
        let mut rules = vec![jump(derived(&p.id, "in-spoof"), inb, spoof)];
        rules.extend(port_policy(p, inb, sg_egress_chain));
        chain(&mut plan, inb, format!("OS_PORT_{}_INBOUND", p.id), &p.project_id, rules);
        let rules = port_policy(p, outb, sg_ingress_chain);
        chain(&mut plan, outb, format!("OS_PORT_{}_OUTBOUND", p.id), &p.project_id, rules);
    }
    plan.put(&bp);
    plan
}

/// Accept return flows, jump to each group's chain, drop what is not ARP.
fn port_policy(p: &types::Port, c: ChainId, sg_chain: fn(&str) -> ChainId) -> Vec<Rule> {
    let tag = |role: &str| derived(&format!("{}/{c}", p.id), role);
    let mut rules = vec![Rule {
        ..rule(
            tag("return-flows"),
            c,
            RuleType::Accept,
            Condition { match_return_flow: true, ..Default::default() },
        )
    }];
    for sg in &p.security_groups {
        rules.push(jump(tag(&format!("sg/{sg}")), c, sg_chain(sg)));
    }
    rules.push(rule(
        tag("drop"),
        c,
        RuleType::Drop,
        Condition { dl_type: Some(ETH_ARP), inv_dl_type: true, ..Default::default() },
    ));
    rules
}

/// Drop DHCP server replies and IPv6 router advertisements a VM sends
/// (a rogue server or router); return for DHCP requests, for ARP from one
/// of the port's addresses and for IP from one of its (address, MAC)
/// pairs; drop everything else.
fn antispoof(p: &types::Port, c: ChainId) -> Vec<Rule> {
    let tag = |role: &str| derived(&format!("{}/{c}", p.id), role);
    let mut rules = vec![
        rule(
            tag("rogue-dhcp"),
            c,
            RuleType::Drop,
            Condition {
                dl_type: Some(ETH_IPV4),
                nw_proto: Some(17),
                tp_src: Some(PortRange { start: 67, end: 67 }),
                tp_dst: Some(PortRange { start: 68, end: 68 }),
                ..Default::default()
            },
        ),
        rule(
            tag("rogue-ra"),
            c,
            RuleType::Drop,
            Condition {
                dl_type: Some(ETH_IPV6),
                nw_proto: Some(58),
                tp_src: Some(PortRange { start: 134, end: 134 }),
                ..Default::default()
            },
        ),
    ];
    rules.push(rule(
        tag("dhcp"),
        c,
        RuleType::Return,
        Condition {
            dl_type: Some(ETH_IPV4),
            nw_proto: Some(17),
            tp_src: Some(PortRange { start: 68, end: 68 }),
            tp_dst: Some(PortRange { start: 67, end: 67 }),
            ..Default::default()
        },
    ));
    let own = mac(&p.mac_address);
    let mut pairs: Vec<(String, MacAddr)> =
        p.fixed_ips.iter().map(|f| (f.ip_address.clone(), own)).collect();
    for a in &p.allowed_address_pairs {
        let m = if a.mac_address.is_empty() { own } else { mac(&a.mac_address) };
        pairs.push((a.ip_address.clone(), m));
    }
    for (addr, m) in pairs {
        // An allowed pair may be a prefix.
        let (ip, len) = match Cidr::parse(&addr) {
            Ok(c) => (c.net, c.len),
            Err(_) => match addr.parse::<IpAddr>() {
                Ok(ip) => (ip, host_net(ip).1.unwrap_or(32)),
                Err(_) => continue,
            },
        };
        let key = format!("{addr}/{m}");
        if ip.is_ipv4() {
            rules.push(rule(
                tag(&format!("arp/{key}")),
                c,
                RuleType::Return,
                Condition {
                    dl_type: Some(ETH_ARP),
                    nw_src_address: Some(ip),
                    nw_src_length: Some(len),
                    ..Default::default()
                },
            ));
        }
        rules.push(rule(
            tag(&format!("ip/{key}")),
            c,
            RuleType::Return,
            Condition {
                dl_type: Some(if ip.is_ipv4() { ETH_IPV4 } else { ETH_IPV6 }),
                dl_src: Some(m),
                nw_src_address: Some(ip),
                nw_src_length: Some(len),
                ..Default::default()
            },
        ));
    }
    rules.push(rule(tag("drop"), c, RuleType::Drop, Condition::default()));
    rules
}

// ----------------------------------------------------------------- routers

/// The router's gateway, as its plan needs it.
pub struct Gateway {
    /// The Neutron gateway port.
    pub port_id: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// The external subnet's gateway (the next hop of the default route).
    pub next_hop: Option<Ipv4Addr>,
    /// The external network (its bridge holds the floating IPs' ARP entries).
    pub network_id: String,
    pub enable_snat: bool,
}

/// A router interface (or the gateway), for placing extra routes.
pub struct Interface {
    pub port_id: String,
    pub cidr: Cidr,
}

/// A floating IP bound to a fixed address behind this router.
pub struct Floating {
    pub id: String,
    pub address: Ipv4Addr,
    pub fixed: Ipv4Addr,
}

pub fn router_pre_chain(router: &str) -> ChainId {
    derived(router, "pre-routing").into()
}
pub fn router_post_chain(router: &str) -> ChainId {
    derived(router, "post-routing").into()
}

/// A router: itself, its NAT chains, its default and extra routes, and the
/// ARP entries that make its floating IPs answer on the external network.
pub fn router(
    r: &types::Router,
    gw: Option<&Gateway>,
    interfaces: &[Interface],
    fips: &[Floating],
) -> Plan {
    let mut plan = Plan::default();
    let id: RouterId = uuid(&r.id).into();
    let (pre, post) = (router_pre_chain(&r.id), router_post_chain(&r.id));
    plan.put(&Router {
        id,
        tenant_id: Some(r.project_id.clone()),
        name: r.name.clone(),
        admin_state_up: r.admin_state_up,
        inbound_filter_id: Some(pre),
        outbound_filter_id: Some(post),
        ..Default::default()
    });
    let mut pre_rules = Vec::new();
    let mut post_rules = Vec::new();
    let route =
        |rid: Uuid, dst: Ipv4Addr, len: u8, port: PortId, gw: Option<Ipv4Addr>, what: &str| Route {
            id: rid.into(),
            router_id: id,
            route_type: RouteType::Normal,
            src_network_addr: Ipv4Addr::UNSPECIFIED,
            src_network_length: 0,
            dst_network_addr: dst,
            dst_network_length: len,
            next_hop_port: Some(port),
            next_hop_gateway: gw,
            weight: 100,
            learned: false,
            attributes: Some(what.into()),
        };
    if let Some(g) = gw {
        let gw_port = router_port_id(&g.port_id);
        let ext: BridgeId = uuid(&g.network_id).into();
        for f in fips {
            let t =
                NatTarget { address_from: f.fixed, address_to: f.fixed, port_from: 0, port_to: 0 };
            pre_rules.push(Rule {
                flow_action: Some(FlowAction::Accept),
                nat_targets: vec![t],
                ..rule(
                    derived(&f.id, "dnat"),
                    pre,
                    RuleType::Dnat,
                    Condition {
                        dl_type: Some(ETH_IPV4),
                        nw_dst_address: Some(f.address.into()),
                        nw_dst_length: Some(32),
                        ..Default::default()
                    },
                )
            });
            let t = NatTarget {
                address_from: f.address,
                address_to: f.address,
                port_from: 0,
                port_to: 0,
            };
            post_rules.push(Rule {
                flow_action: Some(FlowAction::Accept),
                nat_targets: vec![t],
                ..rule(
                    derived(&f.id, "snat"),
                    post,
                    RuleType::Snat,
                    Condition {
                        dl_type: Some(ETH_IPV4),
                        out_ports: vec![gw_port],
                        nw_src_address: Some(f.fixed.into()),
                        nw_src_length: Some(32),
                        ..Default::default()
                    },
                )
            });
            plan.put(&ArpTableEntry { bridge_id: ext, ip: f.address, mac: mac(&g.mac) });
        }
        if g.enable_snat {
            pre_rules.push(Rule {
                flow_action: Some(FlowAction::Accept),
                ..rule(
                    derived(&r.id, "rev-snat"),
                    pre,
                    RuleType::RevSnat,
                    Condition {
                        dl_type: Some(ETH_IPV4),
                        in_ports: vec![gw_port],
                        nw_dst_address: Some(g.ip.into()),
                        nw_dst_length: Some(32),
                        ..Default::default()
                    },
                )
            });
            post_rules.push(Rule {
                flow_action: Some(FlowAction::Accept),
                nat_targets: vec![NatTarget {
                    address_from: g.ip,
                    address_to: g.ip,
                    port_from: 1024,
                    port_to: 65535,
                }],
                ..rule(
                    derived(&r.id, "snat"),
                    post,
                    RuleType::Snat,
                    Condition {
                        dl_type: Some(ETH_IPV4),
                        out_ports: vec![gw_port],
                        nw_src_address: Some(g.ip.into()),
                        nw_src_length: Some(32),
                        inv_nw_src: true,
                        ..Default::default()
                    },
                )
            });
        }
        plan.put(&route(
            derived(&r.id, "default-route"),
            Ipv4Addr::UNSPECIFIED,
            0,
            gw_port,
            g.next_hop,
            "neutron:gateway",
        ));
    }
    for (i, hr) in r.routes.iter().enumerate() {
        let (Ok(dst), Some(nh)) = (Cidr::parse(&hr.destination), v4(&hr.nexthop)) else { continue };
        let IpAddr::V4(d) = dst.net else { continue };
        if let Some(via) = interfaces.iter().find(|i| i.cidr.contains(nh.into())) {
            plan.put(&route(
                derived(&r.id, &format!("route/{i}/{}/{}", hr.destination, hr.nexthop)),
                d,
                dst.len,
                router_port_id(&via.port_id),
                Some(nh),
                "neutron:extra-route",
            ));
        }
    }
    chain(&mut plan, pre, format!("OS_PRE_ROUTING_{}", r.id), &r.project_id, pre_rules);
    chain(&mut plan, post, format!("OS_POST_ROUTING_{}", r.id), &r.project_id, post_rules);
    plan
}

// ---------------------------------------------------------- security groups

/// IP protocol number of a Neutron `protocol` (name or number).
pub fn protocol_number(p: &str) -> Option<u8> {
    match p.to_ascii_lowercase().as_str() {
        "icmp" => Some(1),
        "igmp" => Some(2),
        "tcp" => Some(6),
        "egp" => Some(8),
        "udp" => Some(17),
        "ipv6-encap" => Some(41),
        "gre" => Some(47),
        "esp" => Some(50),
        "ah" => Some(51),
        "ipv6-icmp" | "icmpv6" => Some(58),
        "ipv6-nonxt" => Some(59),
        "ospf" => Some(89),
        "pgm" => Some(113),
        "sctp" => Some(132),
        "udplite" => Some(136),
        "vrrp" => Some(112),
        n => n.parse().ok(),
    }
}

/// A group: its address group (same id), its two chains, an ACCEPT per
/// rule (plus, for rules with ports, one for the non-first fragments).
pub fn security_group(sg: &types::SecurityGroup, rules: &[types::SecurityGroupRule]) -> Plan {
    let mut plan = Plan::default();
    plan.put(&IpAddrGroup {
        id: uuid(&sg.id).into(),
        tenant_id: Some(sg.project_id.clone()),
        name: sg.name.clone(),
    });
    let (ing, eg) = (sg_ingress_chain(&sg.id), sg_egress_chain(&sg.id));
    let mut ing_rules = Vec::new();
    let mut eg_rules = Vec::new();
    for r in rules {
        let ingress = r.direction == "ingress";
        let c = if ingress { ing } else { eg };
        let mut cond = Condition {
            dl_type: Some(if r.ethertype == "IPv6" { ETH_IPV6 } else { ETH_IPV4 }),
            ..Default::default()
        };
        let proto = r.protocol.as_deref().and_then(protocol_number);
        cond.nw_proto = proto;
        match proto {
            Some(1) | Some(58) => {
                if let Some(t) = r.port_range_min {
                    cond.tp_src = Some(PortRange { start: t as u16, end: t as u16 });
                }
                if let Some(code) = r.port_range_max {
                    cond.tp_dst = Some(PortRange { start: code as u16, end: code as u16 });
                }
            }
            _ => {
                if let (Some(lo), hi) = (r.port_range_min, r.port_range_max) {
                    let hi = hi.unwrap_or(lo);
                    cond.tp_dst = Some(PortRange { start: lo as u16, end: hi as u16 });
                }
            }
        }
        if let Some(prefix) = r.remote_ip_prefix.as_deref().and_then(|p| Cidr::parse(p).ok()) {
            if prefix.len > 0 {
                if ingress {
                    cond.nw_src_address = Some(prefix.net);
                    cond.nw_src_length = Some(prefix.len);
                } else {
                    cond.nw_dst_address = Some(prefix.net);
                    cond.nw_dst_length = Some(prefix.len);
                }
            }
        }
        if let Some(g) = &r.remote_group_id {
            if ingress {
                cond.ip_addr_group_src = Some(uuid(g).into());
            } else {
                cond.ip_addr_group_dst = Some(uuid(g).into());
            }
        }
        let out = if ingress { &mut ing_rules } else { &mut eg_rules };
        if cond.has_l4_fields() {
            let mut frag = cond.clone();
            frag.tp_src = None;
            frag.tp_dst = None;
            frag.fragment_policy = Some(FragmentPolicy::Nonheader);
            cond.fragment_policy = Some(FragmentPolicy::Header);
            out.push(rule(uuid(&r.id), c, RuleType::Accept, cond));
            out.push(rule(derived(&r.id, "nonheader"), c, RuleType::Accept, frag));
        } else {
            out.push(rule(uuid(&r.id), c, RuleType::Accept, cond));
        }
    }
    chain(&mut plan, ing, format!("OS_SG_{}_INGRESS", sg.id), &sg.project_id, ing_rules);
    chain(&mut plan, eg, format!("OS_SG_{}_EGRESS", sg.id), &sg.project_id, eg_rules);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neutron::types::owner;
    use serde_json::json;

    fn std_attrs() -> Value {
        json!({"description": "", "tags": [], "created_at": "t", "updated_at": "t", "revision_number": 0})
    }
    fn with_std(mut v: Value) -> Value {
        for (k, x) in std_attrs().as_object().expect("obj") {
            v[k] = x.clone();
        }
        v
    }
    const NET: &str = "11111111-1111-4111-8111-111111111111";
    const SUB: &str = "22222222-2222-4222-8222-222222222222";
    const PORT: &str = "33333333-3333-4333-8333-333333333333";
    const SG: &str = "44444444-4444-4444-8444-444444444444";
    const ROUTER: &str = "55555555-5555-4555-8555-555555555555";

    fn subnet(id: &str, cidr: &str, gw: Option<&str>) -> types::Subnet {
        serde_json::from_value(with_std(json!({
            "id": id, "name": "", "network_id": NET, "tenant_id": "p", "project_id": "p",
            "cidr": cidr, "ip_version": if cidr.contains(':') { 6 } else { 4 }, "gateway_ip": gw,
            "allocation_pools": [], "enable_dhcp": true, "dns_nameservers": ["8.8.8.8"],
            "host_routes": [{"destination": "172.16.0.0/12", "nexthop": "10.0.0.254"}],
            "ipv6_ra_mode": null, "ipv6_address_mode": null, "subnetpool_id": null
        })))
        .expect("subnet")
    }

    fn vm(owner: &str, security: bool, groups: &[&str]) -> types::Port {
        serde_json::from_value(with_std(json!({
            "id": PORT, "name": "vm", "network_id": NET, "tenant_id": "p", "project_id": "p",
            "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [{"subnet_id": SUB, "ip_address": "10.0.0.5"}],
            "device_id": ROUTER, "device_owner": owner, "admin_state_up": true, "status": "DOWN",
            "security_groups": groups, "allowed_address_pairs": [{"ip_address": "10.0.0.64/28", "mac_address": ""}],
            "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400", "ip_version": 4}],
            "binding:host_id": "h1", "binding:profile": {}, "binding:vnic_type": "normal",
            "binding:vif_type": "midonet", "binding:vif_details": {}, "port_security_enabled": security
        })))
        .expect("port")
    }

    fn rules_of(plan: &Plan, chain: ChainId) -> Vec<Rule> {
        let c = plan.of::<Chain>().into_iter().find(|c| c.id == chain).expect("chain planned");
        let rules = plan.of::<Rule>();
        c.rule_ids
            .iter()
            .map(|id| rules.iter().find(|r| r.id == *id).expect("rule planned").clone())
            .collect()
    }

    #[test]
    fn a_network_is_a_bridge_with_a_dhcp_subnet_per_ipv4_subnet() {
        let net: types::Network = serde_json::from_value(with_std(json!({
            "id": NET, "name": "n", "tenant_id": "p", "project_id": "p", "admin_state_up": false,
            "status": "ACTIVE", "shared": false, "subnets": [SUB], "router:external": false,
            "mtu": 1450, "port_security_enabled": true
        })))
        .expect("network");
        let subs =
            [subnet(SUB, "10.0.0.0/24", Some("10.0.0.1")), subnet("v6", "2001:db8::/64", None)];
        let plan = network(&net, &subs);
        let b = plan.of::<Bridge>();
        assert_eq!(
            (b.len(), b[0].admin_state_up, b[0].tenant_id.as_deref()),
            (1, false, Some("p"))
        );
        let d = plan.of::<DhcpSubnet>();
        assert_eq!(d.len(), 1, "IPv6 subnets are stored, not served by DHCP");
        assert_eq!(d[0].default_gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(d[0].interface_mtu, Some(1450));
        assert_eq!(d[0].opt121_routes[0].gateway_addr, Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(plan, network(&net, &subs), "the same input plans the same objects");
    }

    #[test]
    fn a_vm_port_gets_its_tables_binding_and_security_chains() {
        let subs = [subnet(SUB, "10.0.0.0/24", Some("10.0.0.1"))];
        let host = HostId::random();
        let p = vm("compute:nova", true, &[SG]);
        let plan = port_plan(&p, &subs, Some(host));
        let bp = plan.of::<Port>().into_iter().next().expect("port");
        assert_eq!(
            (bp.host_id, bp.interface_name.as_deref()),
            (Some(host), Some("tap33333333-33"))
        );
        assert_eq!(plan.of::<MacTableEntry>().len(), 1);
        assert_eq!(plan.of::<ArpTableEntry>()[0].ip, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(plan.of::<DhcpHost>()[0].extra_dhcp_opts[0].opt_name, "mtu");
        assert_eq!(plan.of::<IpAddrGroupAddr>()[0].ip_addr_group_id, uuid(SG).into());
        let kinds = |c| rules_of(&plan, c).iter().map(|r| r.rule_type).collect::<Vec<_>>();
        use RuleType::*;
        assert_eq!(kinds(bp.inbound_filter_id.expect("inbound")), vec![Jump, Accept, Jump, Drop]);
        assert_eq!(kinds(bp.outbound_filter_id.expect("outbound")), vec![Accept, Jump, Drop]);
        let inbound = rules_of(&plan, bp.inbound_filter_id.expect("inbound"));
        assert_eq!(
            inbound[2].jump_chain_id,
            Some(sg_egress_chain(SG)),
            "VM egress goes to the group's egress chain"
        );
        // Anti-spoof: no DHCP server or router advertisements from the VM;
        // DHCP requests, ARP and IP for the fixed address and the pair; drop.
        let spoof = rules_of(&plan, inbound[0].jump_chain_id.expect("anti-spoof"));
        assert_eq!(
            spoof.iter().map(|r| r.rule_type).collect::<Vec<_>>(),
            vec![Drop, Drop, Return, Return, Return, Return, Return, Drop]
        );
        assert_eq!(spoof[0].condition.tp_src, Some(PortRange { start: 67, end: 67 }));
        assert_eq!(spoof[5].condition.nw_src_length, Some(28), "the pair's prefix");
        // Port security off: no chains; trusted owners: none either.
        for p in [vm("compute:nova", false, &[]), vm("network:dhcp", true, &[])] {
            let plan = port_plan(&p, &subs, None);
            assert!(plan.of::<Chain>().is_empty(), "{}", p.device_owner);
            assert!(plan.of::<Port>()[0].inbound_filter_id.is_none());
        }
    }

    fn port_plan(p: &types::Port, subs: &[types::Subnet], host: Option<HostId>) -> Plan {
        port(p, &PortCtx { subnets: subs, host })
    }

    #[test]
    fn a_router_interface_is_a_linked_router_port_with_its_routes() {
        let subs = [subnet(SUB, "10.0.0.0/24", Some("10.0.0.1"))];
        let plan = port_plan(&vm(owner::ROUTER_INTERFACE, false, &[]), &subs, None);
        let ports = plan.of::<Port>();
        let (bp, rp) = (
            ports.iter().find(|p| p.is_bridge_port()).expect("bridge side"),
            ports.iter().find(|p| p.is_router_port()).expect("router side"),
        );
        assert_eq!((bp.peer_id, rp.peer_id), (Some(rp.id), Some(bp.id)));
        assert_eq!(rp.device_id, uuid(ROUTER).into());
        assert_eq!(rp.router_addr().expect("addressed").length, 24);
        let routes = plan.of::<Route>();
        let types: Vec<_> = routes.iter().map(|r| (r.route_type, r.dst_network_length)).collect();
        assert!(
            types.contains(&(RouteType::Local, 32)) && types.contains(&(RouteType::Normal, 24)),
            "{types:?}"
        );
    }

    #[test]
    fn a_router_gateway_snats_and_floating_ips_nat_statically_first() {
        let r: types::Router = serde_json::from_value(with_std(json!({
            "id": ROUTER, "name": "r", "tenant_id": "p", "project_id": "p", "admin_state_up": true,
            "status": "ACTIVE", "external_gateway_info": null,
            "routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]
        })))
        .expect("router");
        let gw = Gateway {
            port_id: PORT.into(),
            mac: "fa:16:3e:00:00:09".into(),
            ip: Ipv4Addr::new(172, 24, 4, 2),
            next_hop: Some(Ipv4Addr::new(172, 24, 4, 1)),
            network_id: NET.into(),
            enable_snat: true,
        };
        let ifs =
            [Interface { port_id: "if".into(), cidr: Cidr::parse("10.0.0.0/24").expect("cidr") }];
        let fips = [Floating {
            id: "f".into(),
            address: Ipv4Addr::new(172, 24, 4, 9),
            fixed: Ipv4Addr::new(10, 0, 0, 5),
        }];
        let plan = router(&r, Some(&gw), &ifs, &fips);
        use RuleType::*;
        let pre: Vec<_> =
            rules_of(&plan, router_pre_chain(ROUTER)).iter().map(|r| r.rule_type).collect();
        let post: Vec<_> =
            rules_of(&plan, router_post_chain(ROUTER)).iter().map(|r| r.rule_type).collect();
        assert_eq!((pre, post), (vec![Dnat, RevSnat], vec![Snat, Snat]));
        let post = rules_of(&plan, router_post_chain(ROUTER));
        assert!(
            post[0].is_static_nat() && !post[1].is_static_nat(),
            "the FIP's static SNAT wins over the dynamic one"
        );
        assert_eq!(plan.of::<ArpTableEntry>()[0].ip, Ipv4Addr::new(172, 24, 4, 9));
        let routes = plan.of::<Route>();
        assert!(routes
            .iter()
            .any(|x| x.dst_network_length == 0 && x.next_hop_gateway == gw.next_hop));
        assert!(routes
            .iter()
            .any(|x| x.dst_network_length == 16 && x.next_hop_port == Some(router_port_id("if"))));
        // No SNAT asked: only the floating IP's rules.
        let plan = router(&r, Some(&Gateway { enable_snat: false, ..gw }), &ifs, &[]);
        assert!(plan.of::<Rule>().is_empty());
    }

    #[test]
    fn security_group_rules_map_to_conditions() {
        let sg: types::SecurityGroup = serde_json::from_value(with_std(json!({
            "id": SG, "name": "g", "tenant_id": "p", "project_id": "p", "stateful": true
        })))
        .expect("group");
        let rule = |dir: &str,
                    et: &str,
                    proto: Option<&str>,
                    lo: Option<u32>,
                    hi: Option<u32>,
                    prefix: Option<&str>,
                    group: Option<&str>| {
            serde_json::from_value::<types::SecurityGroupRule>(with_std(json!({
                "id": uuid::Uuid::new_v4().to_string(), "security_group_id": SG, "direction": dir,
                "ethertype": et, "protocol": proto, "port_range_min": lo, "port_range_max": hi,
                "remote_ip_prefix": prefix, "remote_group_id": group, "remote_address_group_id": null,
                "normalized_cidr": prefix, "tenant_id": "p", "project_id": "p"
            })))
            .expect("rule")
        };
        // (rule, chain, dl_type, nw_proto, tp_src, tp_dst, rules made)
        type Row = (
            types::SecurityGroupRule,
            ChainId,
            u16,
            Option<u8>,
            Option<(u16, u16)>,
            Option<(u16, u16)>,
            usize,
        );
        let table: Vec<Row> = vec![
            (
                rule("ingress", "IPv4", Some("tcp"), Some(22), Some(22), Some("10.0.0.0/8"), None),
                sg_ingress_chain(SG),
                0x0800,
                Some(6),
                None,
                Some((22, 22)),
                2,
            ),
            (
                rule("ingress", "IPv4", Some("17"), Some(5000), Some(5100), None, None),
                sg_ingress_chain(SG),
                0x0800,
                Some(17),
                None,
                Some((5000, 5100)),
                2,
            ),
            (
                rule("egress", "IPv6", None, None, None, None, None),
                sg_egress_chain(SG),
                0x86dd,
                None,
                None,
                None,
                1,
            ),
            (
                rule("ingress", "IPv4", Some("icmp"), Some(8), Some(0), None, Some(SG)),
                sg_ingress_chain(SG),
                0x0800,
                Some(1),
                Some((8, 8)),
                Some((0, 0)),
                2,
            ),
        ];
        for (r, chain, dl, proto, src, dst, n) in table {
            let plan = security_group(&sg, std::slice::from_ref(&r));
            let rules = rules_of(&plan, chain);
            assert_eq!(rules.len(), n, "{r:?}");
            let c = &rules[0].condition;
            assert_eq!((c.dl_type, c.nw_proto), (Some(dl), proto), "{r:?}");
            assert_eq!(c.tp_src.map(|p| (p.start, p.end)), src);
            assert_eq!(c.tp_dst.map(|p| (p.start, p.end)), dst);
            if r.remote_ip_prefix.is_some() {
                assert_eq!(c.nw_src_length, Some(8), "ingress prefixes match the source");
            }
            if r.remote_group_id.is_some() {
                assert_eq!(c.ip_addr_group_src, Some(uuid(SG).into()));
            }
            assert_eq!(plan.of::<IpAddrGroup>()[0].id, uuid(SG).into());
        }
    }
}
