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

/// Return for DHCP requests, for ARP from one of the port's addresses and
/// for IP from one of its (address, MAC) pairs; drop everything else.
fn antispoof(p: &types::Port, c: ChainId) -> Vec<Rule> {
    let tag = |role: &str| derived(&format!("{}/{c}", p.id), role);
    let mut rules = vec![rule(
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
    )];
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
