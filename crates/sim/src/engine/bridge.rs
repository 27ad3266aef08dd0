//! The bridge, as MidoNet simulates it.
//!
//! ```text
//!  admin · multicast-source check · VLAN push (interior port tagged V)
//!  · in mirrors · in chain (untagged only) · MAC learning · ARP (answer
//!  from router ports and seeded entries; learn GARPs) · multicast → flood
//!  · dst = src → drop (before any lookup) · peer router MAC → that port
//!  · MAC table → unicast | unknown → flood
//!  unicast: out chain (untagged only) · out mirrors · VLAN pop · egress
//!  flood:   out chain (untagged only, no out port) · out mirrors · one fork
//!           per exterior port, VLAN uplink and the port of the frame's VLAN
//! ```
//!
//! MAC tables are per VLAN (0 = untagged). Learning never moves a peer
//! router port's MAC. Every table entry read is tagged, misses included,
//! so a MAC move or a newly learned MAC invalidates exactly the flows that
//! depended on it.
//!
//! A table entry (learned or seeded) is only followed if its port belongs
//! to this bridge: learned entries come from other agents through the
//! cluster, and one naming another device's port (another tenant's) or a
//! port that does not exist is ignored as if the MAC were unknown, so the
//! frame floods, and reported ([`Anomaly::MacEntryForeignPort`], which the
//! agent counts); a learned entry ignored this way falls back to the seeded
//! one. The check costs one snapshot lookup per table hit, per simulation
//! (not per packet).

use midonet_model::PortId;

use super::{Ctx, Sim, ETH_ARP};
use crate::packets;
use crate::result::*;
use crate::snapshot::{Dev, SBridge, SPort};
use crate::state::{ConntrackView, StateView, StateWrite};
use crate::tag::Tag;
use crate::MacAddr;

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    // --------------------------------------------------------------- bridge

    pub(super) fn bridge(&mut self, inp: &SPort) {
        let Dev::Bridge(bid) = inp.dev else { return };
        let snap = self.snap;
        let Some(b) = snap.bridges.get(&bid) else {
            return self.drop_pkt(DropReason::UnknownDevice);
        };
        let depth = self.depth;
        if self.enter(inp.dev) {
            trace!(
                self,
                TraceStep::Device {
                    kind: DeviceKind::Bridge,
                    id: bid.cast(),
                    name: b.name.clone()
                }
            );
            self.bridge_inner(b, inp);
        }
        self.depth = depth;
    }

    fn bridge_inner(&mut self, b: &SBridge, inp: &SPort) {
        self.dst_rewritten = false;
        if !b.admin_up {
            return self.drop_pkt(DropReason::DeviceAdminDown);
        }
        let src = self.eth_src();
        if src.is_multicast() {
            return self.drop_pkt(DropReason::MulticastSource);
        }
        let vlan = if let Some(v) = inp.vlan {
            let _ = (self.fm.vlan_vid(), self.fm.vlan_pcp());
            self.fm.set_vlan(Some((v, 0)));
            trace!(self, TraceStep::VlanPush { vlan: v });
            v
        } else if b.vlan_aware() {
            self.fm.vlan_vid().unwrap_or(0)
        } else {
            0
        };
        let tagged = self.fm.vlan_vid().is_some();
        let ctx = Ctx { dev: inp.dev, in_port: inp.id, out_port: None };
        self.mirrors(&b.m_in, MirrorPoint::DeviceIn, ctx);
        // Bridge chains do not see VLAN-tagged frames (MidoNet's rule).
        if !tagged {
            let v = self.run_chain(b.in_chain, Hook::BridgeIn, ctx);
            if !self.verdict(v, ctx) {
                return;
            }
        }
        if !b.router_macs.contains_key(&src) {
            self.tag(Tag::mac(b.id, vlan, src));
            if self.state.mac_port(b.id, vlan, src) != Some(inp.id) {
                self.out.state_writes.push(StateWrite::Mac {
                    bridge: b.id,
                    vlan,
                    mac: src,
                    port: inp.id,
                });
                trace!(self, TraceStep::MacLearn { vlan, mac: src, port: inp.id });
            }
        }
        let dst = self.eth_dst();
        if dst.is_broadcast() && self.fm.ethertype() == ETH_ARP {
            let op = self.fm.arp_op();
            let spa = self.fm.arp_spa();
            let tpa = self.fm.arp_tpa();
            if (op == 1 || op == 2) && spa == tpa {
                // GARP: learn the sender, then flood like any broadcast.
                let sha = self.fm.arp_sha();
                self.tag(Tag::bridge_arp(b.id, spa));
                let known =
                    self.state.bridge_arp(b.id, spa).or_else(|| b.seeded_arp.get(&spa).copied());
                if known != Some(sha) {
                    self.out.state_writes.push(StateWrite::BridgeArp {
                        bridge: b.id,
                        ip: spa,
                        mac: sha,
                    });
                    trace!(self, TraceStep::ArpLearn { ip: spa, mac: sha });
                }
            } else if op == 1 && !tagged {
                self.tag(Tag::bridge_arp(b.id, tpa));
                let mac = b
                    .router_ips
                    .get(&tpa)
                    .copied()
                    .or_else(|| self.state.bridge_arp(b.id, tpa))
                    .or_else(|| b.seeded_arp.get(&tpa).copied());
                if let Some(mac) = mac {
                    let sha = self.fm.arp_sha();
                    trace!(self, TraceStep::ArpAnswered { ip: tpa, mac });
                    if let Some(t) = Self::reply_target(inp) {
                        let f = packets::arp_reply(mac, tpa, sha, spa);
                        self.generated(GenKind::ArpReply, t, f);
                    }
                    self.consumed = true;
                    return;
                }
            }
        }
        if dst.is_multicast() {
            return self.flood(b, vlan, inp.id, ctx, tagged);
        }
        // A frame addressed to its own sender goes back where it came from
        // whatever the tables say: drop it before any lookup, so that it is
        // never flooded while the MAC is still unknown (as MidoNet
        // does; a temporary drop, like any hairpin).
        if dst == src {
            return self.drop_pkt(DropReason::Hairpin);
        }
        if let Some(&p) = b.router_macs.get(&dst) {
            trace!(self, TraceStep::MacLookup { vlan, mac: dst, port: Some(p) });
            return self.bridge_unicast(b, vlan, p, ctx, tagged);
        }
        self.tag(Tag::mac(b.id, vlan, dst));
        let learned = self.state.mac_port(b.id, vlan, dst);
        let port = match self.own_port(b, vlan, dst, learned) {
            Some(p) => Some(p),
            None => {
                let seeded = b.seeded_macs.get(&(vlan, dst)).copied();
                self.own_port(b, vlan, dst, seeded)
            }
        };
        trace!(self, TraceStep::MacLookup { vlan, mac: dst, port });
        match port {
            None => self.flood(b, vlan, inp.id, ctx, tagged),
            Some(p) if p == inp.id => self.drop_pkt(DropReason::Hairpin),
            Some(p) => self.bridge_unicast(b, vlan, p, ctx, tagged),
        }
    }

    /// `entry` if it is a port of bridge `b`; otherwise (another device's
    /// port, or no known port) the entry is ignored, as if the MAC were
    /// unknown, and the anomaly recorded. MAC entries reach this agent from
    /// other agents through the cluster, so a table entry is a claim, not a
    /// fact: without this check one tenant's agent could steer another
    /// bridge's traffic to its own port (issue 12). The port is tagged, so
    /// the flow follows the port's fate; a port created on this bridge
    /// later invalidates it through the bridge's device tag.
    fn own_port(
        &mut self,
        b: &SBridge,
        vlan: u16,
        mac: MacAddr,
        entry: Option<PortId>,
    ) -> Option<PortId> {
        let p = entry?;
        let snap = self.snap;
        if snap.ports.get(&p).is_some_and(|sp| sp.dev == Dev::Bridge(b.id)) {
            return Some(p);
        }
        self.tag(Tag::port(p));
        self.out.anomalies.push(Anomaly::MacEntryForeignPort);
        trace!(self, TraceStep::MacEntryIgnored { vlan, mac, port: p });
        None
    }

    fn bridge_unicast(&mut self, b: &SBridge, vlan: u16, p: PortId, ctx: Ctx, tagged: bool) {
        let ctx = Ctx { out_port: Some(p), ..ctx };
        if !tagged {
            let v = self.run_chain(b.out_chain, Hook::BridgeOut, ctx);
            if !self.verdict(v, ctx) {
                return;
            }
        }
        self.mirrors(&b.m_out, MirrorPoint::DeviceOut, ctx);
        self.bridge_egress(vlan, ctx.in_port, p);
    }

    fn bridge_egress(&mut self, _vlan: u16, in_port: PortId, p: PortId) {
        // Hairpin guard: a bridge never emits on the port the frame came in by.
        if p == in_port {
            return self.drop_pkt(DropReason::Hairpin);
        }
        let snap = self.snap;
        if let Some(v) = snap.ports.get(&p).and_then(|sp| sp.vlan) {
            // A VLAN-tagged interior port only takes frames of its VLAN, untagged.
            if self.fm.vlan_vid() != Some(v) {
                return self.drop_pkt(DropReason::VlanMismatch);
            }
            self.fm.set_vlan(None);
            trace!(self, TraceStep::VlanPop { vlan: v });
        }
        self.port_egress(p, in_port);
    }

    fn flood(&mut self, b: &SBridge, vlan: u16, in_port: PortId, ctx: Ctx, tagged: bool) {
        // The outbound chain applies to every forwarding result, floods
        // included, as in MidoNet. It runs once for the whole
        // flood, with no out port: out-port conditions only mean something
        // for unicast.
        if !tagged {
            let v = self.run_chain(b.out_chain, Hook::BridgeOut, ctx);
            if !self.verdict(v, ctx) {
                return;
            }
        }
        self.mirrors(&b.m_out, MirrorPoint::DeviceOut, ctx);
        let vport = if vlan != 0 {
            b.vlan_ports.get(&vlan).copied().filter(|p| *p != in_port)
        } else {
            None
        };
        let set = || {
            b.exterior
                .iter()
                .chain(b.vlan_uplinks.iter())
                .copied()
                .filter(move |p| *p != in_port)
                .chain(vport)
        };
        trace!(self, TraceStep::Flood { ports: set().collect() });
        for p in set() {
            self.fork(false, |s| s.bridge_egress(vlan, in_port, p));
        }
    }
}
