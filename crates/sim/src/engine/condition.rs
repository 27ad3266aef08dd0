//! Rule and mirror conditions ([`Cond`], compiled from
//! [`midonet_model::Condition`]).
//!
//! A condition is a conjunction of optional tests, inverted as a whole by
//! `condInvert` — except the fragment policy, which is checked on its own
//! (as in MidoNet). Every packet field is read through the
//! marking getters of [`FlowMatch`](crate::FlowMatch), and CIDR tests mark
//! only the prefix bits. Two tests read what a megaflow cannot match on:
//! the addresses embedded in an ICMP error (the result is then
//! uncacheable), and the conntrack direction (`conntrack`: the connection
//! key's fields are marked when it is looked up).

use ipnet::IpNet;
use midonet_model::{FragmentPolicy, PortId};

use super::{Ctx, Sim, ETH_ARP, ETH_IPV4, ETH_IPV6};
use crate::packets;
use crate::snapshot::{mac_u64, Cond};
use crate::state::{ConntrackView, StateView};
use crate::tag::Tag;
use crate::FragType;

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    fn is_ip(&mut self) -> u8 {
        match self.fm.ethertype() {
            ETH_IPV4 => 4,
            ETH_IPV6 => 6,
            _ => 0,
        }
    }

    /// An address condition. On ARP packets `nw_src`/`nw_dst` are the
    /// sender and target protocol addresses, as in MidoNet's flow match
    /// (anti-spoofing rules match an ARP's sender address this way).
    fn net_match(&mut self, n: &IpNet, src: bool) -> bool {
        match n {
            IpNet::V4(n4) => {
                if self.is_ip() != 4 {
                    if self.fm.ethertype() != ETH_ARP {
                        return false;
                    }
                    let a = if src { self.fm.arp_spa() } else { self.fm.arp_tpa() };
                    return n4.contains(&a);
                }
                if src {
                    self.fm.ipv4_src_in(n4.network(), n4.prefix_len())
                } else {
                    self.fm.ipv4_dst_in(n4.network(), n4.prefix_len())
                }
            }
            IpNet::V6(n6) => {
                if self.is_ip() != 6 {
                    return false;
                }
                let a = if src { self.fm.ipv6_src() } else { self.fm.ipv6_dst() };
                n6.contains(&a)
            }
        }
    }

    fn pkt_ip(&mut self, src: bool) -> Option<std::net::IpAddr> {
        match self.is_ip() {
            4 => Some(if src { self.fm.ipv4_src() } else { self.fm.ipv4_dst() }.into()),
            6 => Some(if src { self.fm.ipv6_src() } else { self.fm.ipv6_dst() }.into()),
            _ => None,
        }
    }

    /// The L4 "port" a tpSrc/tpDst range applies to: ports for TCP/UDP/SCTP,
    /// ICMP type (src) or code (dst); none for anything else.
    fn tp(&mut self, src: bool) -> Option<u16> {
        let v = self.is_ip();
        if v == 0 || self.fm.ip_frag() == FragType::Later {
            return None;
        }
        match self.fm.ip_proto() {
            6 | 17 | 132 => Some(if src { self.fm.l4_src() } else { self.fm.l4_dst() }),
            1 | 58 => Some(u16::from(if src { self.fm.icmp_type() } else { self.fm.icmp_code() })),
            _ => None,
        }
    }

    fn in_group(&self, port: PortId, g: midonet_model::PortGroupId) -> bool {
        self.snap.ports.get(&port).is_some_and(|p| p.groups().contains(&g))
    }

    pub(super) fn matches(&mut self, c: &Cond, ctx: Ctx) -> bool {
        // The fragment policy is checked on its own, outside condInvert.
        if let Some(p) = c.frag {
            let f = if self.is_ip() != 0 { self.fm.ip_frag() } else { FragType::No };
            let ok = match p {
                FragmentPolicy::Any => true,
                FragmentPolicy::Header => f != FragType::Later,
                FragmentPolicy::Nonheader => f == FragType::Later,
                FragmentPolicy::Unfragmented => f == FragType::No,
            };
            if !ok {
                return false;
            }
        }
        self.conj(c, ctx) != c.invert
    }

    fn conj(&mut self, c: &Cond, ctx: Ctx) -> bool {
        if c.fwd || c.ret {
            // Lazy: looked up (and its 5-tuple marked) only here.
            let ret = self.is_return_flow();
            if (c.fwd && ret) || (c.ret && !ret) {
                return false;
            }
        }
        if let Some((ports, inv)) = &c.in_ports {
            if ports.contains(&ctx.in_port) == *inv {
                return false;
            }
        }
        if let Some((ports, inv)) = &c.out_ports {
            if ctx.out_port.is_some_and(|p| ports.contains(&p)) == *inv {
                return false;
            }
        }
        if let Some((g, inv)) = c.port_group {
            self.tag(Tag::port_group(g));
            if self.in_group(self.inp.ingress, g) == inv {
                return false;
            }
        }
        if let Some((g, inv)) = c.in_port_group {
            self.tag(Tag::port_group(g));
            if self.in_group(ctx.in_port, g) == inv {
                return false;
            }
        }
        if let Some((g, inv)) = c.out_port_group {
            self.tag(Tag::port_group(g));
            if ctx.out_port.is_some_and(|p| self.in_group(p, g)) == inv {
                return false;
            }
        }
        for (g, src) in [(c.ipg_src, true), (c.ipg_dst, false)] {
            if let Some((g, inv)) = g {
                self.tag(Tag::ip_addr_group(g));
                let ip = self.pkt_ip(src);
                let hit =
                    ip.is_some_and(|a| self.snap.ip_groups.get(&g).is_some_and(|s| s.contains(&a)));
                if hit == inv {
                    return false;
                }
            }
        }
        if let Some((d, inv)) = c.traversed {
            if self.path[..self.depth].contains(&d) == inv {
                return false;
            }
        }
        if let Some((t, inv)) = c.dl_type {
            if (self.fm.ethertype() == t) == inv {
                return false;
            }
        }
        if let Some((v, m, inv)) = c.dl_src {
            if ((mac_u64(self.fm.eth_src()) & m) == (v & m)) == inv {
                return false;
            }
        }
        if let Some((v, m, inv)) = c.dl_dst {
            if ((mac_u64(self.fm.eth_dst()) & m) == (v & m)) == inv {
                return false;
            }
        }
        if let Some((t, inv)) = c.nw_tos {
            let hit = self.is_ip() != 0 && self.fm.ip_tos() == t;
            if hit == inv {
                return false;
            }
        }
        if let Some((p, inv)) = c.nw_proto {
            let hit = self.is_ip() != 0 && self.fm.ip_proto() == p;
            if hit == inv {
                return false;
            }
        }
        if let Some((n, inv)) = &c.nw_src {
            if self.net_match(n, true) == *inv {
                return false;
            }
        }
        if let Some((n, inv)) = &c.nw_dst {
            if self.net_match(n, false) == *inv {
                return false;
            }
        }
        if let Some((lo, hi, inv)) = c.tp_src {
            if self.tp(true).is_some_and(|v| lo <= v && v <= hi) == inv {
                return false;
            }
        }
        if let Some((lo, hi, inv)) = c.tp_dst {
            if self.tp(false).is_some_and(|v| lo <= v && v <= hi) == inv {
                return false;
            }
        }
        if c.no_vlan && self.fm.vlan_vid().is_some() {
            return false;
        }
        if let Some(v) = c.vlan {
            if self.fm.vlan_vid() != Some(v) {
                return false;
            }
        }
        for (n, src) in [(&c.icmp_src, true), (&c.icmp_dst, false)] {
            if let Some((n, inv)) = n {
                // The embedded addresses are not in the flow key: this
                // decision cannot be cached as a megaflow.
                self.out.uncacheable = true;
                let _ = (self.is_ip(), self.fm.ip_proto(), self.fm.icmp_type());
                let inner = packets::icmp_error_inner(self.inp.frame);
                let hit = inner.is_some_and(|(s, d)| {
                    n.contains(&std::net::IpAddr::V4(if src { s } else { d }))
                });
                if hit == *inv {
                    return false;
                }
            }
        }
        if c.dst_rewritten && !self.dst_rewritten {
            return false;
        }
        true
    }
}
