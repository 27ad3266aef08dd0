//! The router, as MidoNet simulates it.
//!
//! ```text
//!  VLAN/ethertype/admin checks · ARP (answer for the in-port, learn
//!  replies and GARPs from inside the port's subnet) · dst MAC = in-port
//!  MAC · in mirrors · load balancer (VIP → member: skip the chains) |
//!  local redirect chain · in chain · route lookup (LPM, source prefix,
//!  lowest weight, HRW-ECMP) · local (echo reply) | blackhole | reject |
//!  forward
//!  forward: TTL · load balancer return (member → VIP: skip the chains) |
//!  forward chain · out chain · next-hop MAC (peer port, peer
//!  bridge's IP→MAC table; gateway outside the out-port's subnet or
//!  out-port unplugged → net unreachable; ARP cache, miss → ArpPending)
//!  · rewrite L2 · out mirrors · egress
//! ```
//!
//! The route lookup marks only the destination bits that separate the
//! chosen prefix from every other prefix in the table
//! ([`RouteTable`](crate::snapshot::RouteTable)). Packets the router
//! generates (echo replies, ICMP errors) pass its forward and outbound
//! chains first.
//!
//! The forward chain (`forwardChainId`, FWaaS) is MidoNet's: its router
//! mapper puts it first in the router's outbound filter list, so it sees
//! routed packets (after the route lookup and TTL, before the outbound
//! chain) and never packets to the router itself. The local redirect
//! chain (`localRedirectChainId`) is first in MidoNet's inbound list: it
//! runs before the inbound chain, on every IPv4 packet.

use std::net::Ipv4Addr;

use midonet_model::RouteType;
use midonet_wire::IcmpError;

use super::chain::Verdict;
use super::lb::LbIn;
use super::{Ctx, Sim, ETH_ARP, ETH_IPV4, F_ETH_DST, F_ETH_SRC, PROTO_ICMP};
use crate::packets;
use crate::result::*;
use crate::snapshot::{hash64, Dev, PortAddr, RouteTable, SPort, SRoute, SRouter};
use crate::state::{ArpLookup, ConntrackView, StateView, StateWrite};
use crate::tag::Tag;
use crate::{FlowKey, FlowMatch, FragType, MacAddr};

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    // --------------------------------------------------------------- router

    pub(super) fn router(&mut self, inp: &SPort) {
        let Dev::Router(rid) = inp.dev else { return };
        let snap = self.snap;
        let Some(r) = snap.routers.get(&rid) else {
            return self.drop_pkt(DropReason::UnknownDevice);
        };
        let depth = self.depth;
        if self.enter(inp.dev) {
            trace!(
                self,
                TraceStep::Device {
                    kind: DeviceKind::Router,
                    id: rid.cast(),
                    name: r.name.clone()
                }
            );
            self.router_inner(r, inp);
        }
        self.depth = depth;
    }

    fn router_inner(&mut self, r: &SRouter, inp: &SPort) {
        self.dst_rewritten = false;
        let pre = self.pre;
        if let Some(v) = self.fm.vlan_vid() {
            if v != 0 {
                return self.drop_pkt(DropReason::RouterVlanTagged);
            }
            self.fm.set_vlan(None);
        }
        if !r.admin_up {
            self.icmp_error(inp.id, IcmpError::AdminProhibited, &pre);
            return self.drop_pkt(DropReason::DeviceAdminDown);
        }
        let Some(addr) = inp.addr else {
            return self.drop_pkt(DropReason::RouterPortNoAddress);
        };
        let et = self.fm.ethertype();
        if et == ETH_ARP {
            return self.router_arp(r, inp, addr);
        }
        if et != ETH_IPV4 {
            return self.drop_pkt(DropReason::RouterNotIpv4);
        }
        let dst = self.eth_dst();
        if dst.is_multicast() {
            return self.drop_pkt(DropReason::RouterL2Multicast);
        }
        if dst != addr.mac {
            return self.drop_pkt(DropReason::RouterWrongDstMac);
        }
        let ctx = Ctx { dev: inp.dev, in_port: inp.id, out_port: None };
        self.mirrors(&r.m_in, MirrorPoint::DeviceIn, ctx);
        // The load balancer first, as MidoNet's inbound service: a packet
        // it translates skips the router's inbound filters. Then MidoNet's
        // inbound filter list: the local redirect chain, the inbound chain.
        match self.lb_inbound(r, inp.id) {
            LbIn::Dropped => return,
            LbIn::Translated => {}
            LbIn::Pass => {
                let v = self.run_chain(r.redirect_chain, Hook::RouterLocalRedirect, ctx);
                if !self.verdict(v, ctx) {
                    return;
                }
                let v = self.run_chain(r.in_chain, Hook::RouterIn, ctx);
                if !self.verdict(v, ctx) {
                    return;
                }
            }
        }
        self.tag(Tag::routes(r.id));
        let Some((rt, n)) = self.lookup(&r.routes) else {
            trace!(self, TraceStep::NoRoute);
            self.icmp_error(inp.id, IcmpError::NetUnreachable, &pre);
            return self.drop_pkt(DropReason::NoRoute);
        };
        trace!(
            self,
            TraceStep::Route {
                route: rt.id,
                kind: rt.kind.as_str().to_string(),
                dst: self.fm.current().ipv4_dst.to_string(),
                port: rt.port,
                gateway: rt.gateway,
                candidates: n,
            }
        );
        match rt.kind {
            RouteType::BlackHole => self.drop_pkt(DropReason::BlackholeRoute),
            RouteType::Reject => {
                self.icmp_error(inp.id, IcmpError::AdminProhibited, &pre);
                self.drop_pkt(DropReason::RejectRoute)
            }
            RouteType::Local => self.router_local(r, inp, addr),
            RouteType::Normal => self.router_forward(r, inp, rt, &pre),
        }
    }

    fn src_ok(&mut self, r: &SRoute) -> bool {
        r.src.prefix_len() == 0 || self.fm.ipv4_src_in(r.src.network(), r.src.prefix_len())
    }

    /// Longest-prefix match with source filtering, lowest weight, then
    /// rendezvous hashing among equals. Marks the destination bits that
    /// distinguish the chosen node from every longer prefix under it.
    fn lookup<'t>(&mut self, t: &'t RouteTable) -> Option<(&'t SRoute, usize)> {
        let dst = self.fm.current().ipv4_dst;
        let mut cover = [0u32; 33];
        let (n, branch) = t.walk(dst, &mut cover);
        for &idx in cover[..n].iter().rev() {
            let set = &t.sets[idx as usize];
            let mut first: Option<usize> = None;
            let mut count = 0;
            for (i, r) in set.routes.iter().enumerate() {
                if let Some(f) = first {
                    if r.weight != set.routes[f].weight {
                        break;
                    }
                }
                if self.src_ok(r) {
                    first.get_or_insert(i);
                    count += 1;
                }
            }
            let Some(f) = first else { continue };
            self.fm.ipv4_dst_prefix(set.len.max(branch));
            if count == 1 {
                return Some((&set.routes[f], 1));
            }
            let h = self.flow_hash() ^ self.inp.hash_seed;
            let w = set.routes[f].weight;
            let mut best: Option<(u64, &SRoute)> = None;
            for r in set.routes[f..].iter().take_while(|r| r.weight == w) {
                if !(r.src.prefix_len() == 0 || r.src.contains(&self.fm.current().ipv4_src)) {
                    continue;
                }
                let score = hash64(h, r.hrw);
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, r));
                }
            }
            return best.map(|(_, r)| (r, count));
        }
        self.fm.ipv4_dst_prefix(branch);
        None
    }

    /// Hash of the 5-tuple (what ECMP spreads on).
    fn flow_hash(&mut self) -> u64 {
        let s = u64::from(u32::from(self.fm.ipv4_src()));
        let d = u64::from(u32::from(self.fm.ipv4_dst()));
        let proto = self.fm.ip_proto();
        let ports = if self.fm.ip_frag() != FragType::Later && matches!(proto, 6 | 17 | 132) {
            (u64::from(self.fm.l4_src()) << 16) | u64::from(self.fm.l4_dst())
        } else {
            0
        };
        hash64(hash64(s << 32 | d, u64::from(proto)), ports)
    }

    fn router_local(&mut self, r: &SRouter, inp: &SPort, addr: PortAddr) {
        let is_echo = self.fm.ip_proto() == PROTO_ICMP
            && self.fm.ip_frag() != FragType::Later
            && self.fm.icmp_type() == 8;
        if !is_echo {
            return self.drop_pkt(DropReason::LocalNotHandled);
        }
        let req = *self.fm.current();
        let (src, dst, peer_mac) = (self.fm.ipv4_dst(), self.fm.ipv4_src(), self.fm.eth_src());
        let _ = self.fm.icmp_id();
        let key = FlowKey {
            eth_src: addr.mac,
            eth_dst: peer_mac,
            ethertype: ETH_IPV4,
            ipv4_src: src,
            ipv4_dst: dst,
            ip_proto: PROTO_ICMP,
            ip_ttl: 64,
            icmp_type: 0,
            icmp_id: req.icmp_id,
            ..FlowKey::default()
        };
        let frame = self.inp.frame;
        self.router_generate(r, inp, GenKind::IcmpEchoReply, key, |k| {
            packets::icmp_echo_reply(k, &req, frame)
        });
        self.consumed = true;
    }

    /// Run a router-generated packet through the router's outbound chain
    /// and, if accepted, emit it back out of `via`.
    pub(super) fn router_generate(
        &mut self,
        r: &SRouter,
        via: &SPort,
        kind: GenKind,
        key: FlowKey,
        build: impl FnOnce(&FlowKey) -> Vec<u8>,
    ) {
        // A generated packet cancels a split (`engine::nat`).
        self.cancel_split();
        let saved = self.fm;
        let rw = self.dst_rewritten;
        self.fm = FlowMatch::new(key);
        let ctx = Ctx { dev: via.dev, in_port: via.id, out_port: Some(via.id) };
        // Generated packets count as return flows (MidoNet). They pass the
        // same outbound filter list as forwarded packets (MidoNet's
        // `outboundFilters`): the forward chain, then the outbound chain.
        let was = self.generating;
        self.generating = true;
        let mut v = self.run_chain(r.fwd_chain, Hook::RouterGenerated, ctx);
        if matches!(v, Verdict::Accept) {
            v = self.run_chain(r.out_chain, Hook::RouterGenerated, ctx);
        }
        self.generating = was;
        let k = *self.fm.current();
        self.fm = saved;
        self.dst_rewritten = rw;
        if !matches!(v, Verdict::Accept) {
            return;
        }
        if let Some(t) = Self::reply_target(via) {
            let f = build(&k);
            self.generated(kind, t, f);
        }
    }

    fn router_forward(&mut self, r: &SRouter, inp: &SPort, rt: &SRoute, pre: &FlowKey) {
        let snap = self.snap;
        let out = rt.port.and_then(|p| snap.ports.get(&p)).filter(|p| p.dev == inp.dev);
        let Some(outp) = out else {
            return self.drop_pkt(DropReason::BadRoute);
        };
        let Some(oaddr) = outp.addr else {
            return self.drop_pkt(DropReason::RouterPortNoAddress);
        };
        let ttl = self.fm.ip_ttl();
        if ttl <= 1 {
            self.icmp_error(inp.id, IcmpError::TtlExceeded, pre);
            return self.drop_pkt(DropReason::TtlExceeded);
        }
        self.fm.set_ip_ttl(ttl - 1);
        trace!(self, TraceStep::Ttl { from: ttl, to: ttl - 1 });
        let ctx = Ctx { dev: inp.dev, in_port: inp.id, out_port: Some(outp.id) };
        // The load balancer's return traffic skips the outbound filters
        // (MidoNet's outbound service). Otherwise MidoNet's router
        // outbound filter list: the forward chain, then the outbound chain;
        // the first that does not accept decides.
        if !self.lb_outbound(r) {
            let v = self.run_chain(r.fwd_chain, Hook::RouterForward, ctx);
            if !self.verdict(v, ctx) {
                return;
            }
            let v = self.run_chain(r.out_chain, Hook::RouterOut, ctx);
            if !self.verdict(v, ctx) {
                return;
            }
        }
        let nh = match rt.gateway {
            Some(g) => g,
            None => self.fm.ipv4_dst(),
        };
        let Some(mac) = self.next_hop_mac(r, inp, outp, oaddr, nh, rt.gateway.is_some(), pre)
        else {
            return;
        };
        self.fm.set_eth_src(oaddr.mac);
        self.fm.set_eth_dst(mac);
        self.dirty |= F_ETH_SRC | F_ETH_DST;
        self.mirrors(&r.m_out, MirrorPoint::DeviceOut, ctx);
        self.port_egress(outp.id, inp.id);
    }

    #[allow(clippy::too_many_arguments)]
    fn next_hop_mac(
        &mut self,
        r: &SRouter,
        inp: &SPort,
        outp: &SPort,
        oaddr: PortAddr,
        nh: Ipv4Addr,
        via_gw: bool,
        pre: &FlowKey,
    ) -> Option<MacAddr> {
        let snap = self.snap;
        if let Some(peer) = outp.peer.and_then(|q| snap.ports.get(&q)) {
            match peer.dev {
                Dev::Router(_) => {
                    if let Some(a) = peer.addr {
                        trace!(
                            self,
                            TraceStep::NextHop {
                                ip: nh,
                                mac: a.mac,
                                via: "peer router port".into()
                            }
                        );
                        return Some(a.mac);
                    }
                }
                Dev::Bridge(bid) => {
                    // Peek into the peer bridge's IP→MAC table: no ARP
                    // towards router ports and seeded VMs.
                    if let Some(b) = snap.bridges.get(&bid) {
                        self.tag(Tag::bridge_arp(bid, nh));
                        let m = b
                            .router_ips
                            .get(&nh)
                            .copied()
                            .or_else(|| self.state.bridge_arp(bid, nh))
                            .or_else(|| b.seeded_arp.get(&nh).copied());
                        if let Some(m) = m {
                            trace!(
                                self,
                                TraceStep::NextHop {
                                    ip: nh,
                                    mac: m,
                                    via: "peer bridge arp table".into()
                                }
                            );
                            return Some(m);
                        }
                    }
                }
            }
        }
        // Two next hops are never ARPed for, and the packet is never parked
        // (as in MidoNet): a gateway outside the out-port's subnet,
        // and an out-port that is neither bound nor linked to a peer.
        let unreachable = if via_gw && !oaddr.contains(nh) {
            Some(DropReason::GatewayOutsideSubnet)
        } else if !outp.exterior && outp.peer.is_none() {
            Some(DropReason::PortUnplugged)
        } else {
            None
        };
        if let Some(reason) = unreachable {
            self.icmp_error(inp.id, IcmpError::NetUnreachable, pre);
            self.drop_pkt(reason);
            return None;
        }
        self.tag(Tag::arp(r.id, nh));
        match self.state.router_arp(r.id, nh, self.inp.now) {
            ArpLookup::Hit { mac, .. } => {
                trace!(self, TraceStep::NextHop { ip: nh, mac, via: "arp cache".into() });
                Some(mac)
            }
            ArpLookup::Miss => {
                trace!(self, TraceStep::ArpMiss { ip: nh });
                if let Some(t) = Self::reply_target(outp) {
                    let f = packets::arp_request(oaddr.mac, oaddr.ip, nh);
                    self.generated(GenKind::ArpRequest, t, f);
                }
                self.pending = Some((r.id, nh));
                None
            }
            ArpLookup::Failed => {
                self.icmp_error(
                    inp.id,
                    if via_gw { IcmpError::NetUnreachable } else { IcmpError::HostUnreachable },
                    pre,
                );
                self.drop_pkt(DropReason::ArpFailed);
                None
            }
        }
    }

    fn router_arp(&mut self, r: &SRouter, inp: &SPort, addr: PortAddr) {
        let op = self.fm.arp_op();
        let spa = self.fm.arp_spa();
        let tpa = self.fm.arp_tpa();
        let sha = self.fm.arp_sha();
        let in_subnet = addr.contains(spa);
        let garp = spa == tpa;
        let learn = match op {
            1 if garp => in_subnet,
            1 if tpa == addr.ip && in_subnet => {
                trace!(self, TraceStep::ArpAnswered { ip: tpa, mac: addr.mac });
                if let Some(t) = Self::reply_target(inp) {
                    let f = packets::arp_reply(addr.mac, addr.ip, sha, spa);
                    self.generated(GenKind::ArpReply, t, f);
                }
                self.consumed = true;
                return;
            }
            2 => {
                let dst = self.fm.eth_dst();
                in_subnet && (dst == addr.mac || garp)
            }
            _ => false,
        };
        if !learn {
            return self.drop_pkt(DropReason::ArpNotForUs);
        }
        self.tag(Tag::arp(r.id, spa));
        let fresh = matches!(self.state.router_arp(r.id, spa, self.inp.now), ArpLookup::Hit { mac, stale: false } if mac == sha);
        // A reply answers a question: whoever asked may not have the entry
        // even when this host does (the agent decides whom to tell).
        let solicited = op == 2 && !garp;
        if !fresh || solicited {
            self.out.state_writes.push(StateWrite::RouterArp { router: r.id, ip: spa, mac: sha });
            trace!(self, TraceStep::ArpLearn { ip: spa, mac: sha });
        }
        self.consumed = true;
    }
}
