//! Ports: where a packet enters and leaves a device.
//!
//! ```text
//!  ingress: [exterior bridge port, first visit: DHCP] ─ pre-in mirrors
//!           ─ in chain ─ post-in mirrors ─ device
//!  egress:  pre-out mirrors ─ out chain ─ post-out mirrors ─ emit
//!  emit:    exterior → ToPort (output) │ interior → the peer's ingress
//!           │ neither → drop (unplugged)
//! ```
//!
//! Every ingress and egress spends one unit of the port-visit budget
//! ([`MAX_PORT_VISITS`](super::MAX_PORT_VISITS)). A router port that is
//! administratively down answers with ICMP admin-prohibited
//! (as in MidoNet); a bridge port just drops.

use midonet_model::PortId;
use midonet_wire::IcmpError;

use super::{Ctx, Sim, ETH_IPV4, PROTO_UDP};
use crate::result::*;
use crate::snapshot::{Dev, SPort};
use crate::state::{ConntrackView, StateView};
use crate::tag::Tag;

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    pub(super) fn port_ingress(&mut self, pid: PortId) {
        if !self.budget() {
            return;
        }
        self.tag(Tag::port(pid));
        trace!(self, TraceStep::PortIngress { port: pid });
        let snap = self.snap;
        let Some(p) = snap.ports.get(&pid) else {
            return self.drop_pkt(DropReason::UnknownPort);
        };
        if matches!(p.dev, Dev::Router(_)) {
            self.pre = *self.fm.current();
        }
        let ctx = Ctx { dev: p.dev, in_port: pid, out_port: None };
        if !p.admin_up {
            if matches!(p.dev, Dev::Router(_)) {
                let pre = self.pre;
                self.icmp_error(pid, IcmpError::AdminProhibited, &pre);
            }
            return self.drop_pkt(DropReason::PortAdminDown);
        }
        // DHCP is answered before the bridge simulates the packet, and only
        // for packets that entered the topology here (not a peer's output).
        if self.visits == 1 && p.exterior {
            if let Dev::Bridge(bid) = p.dev {
                if let Some(cfg) = snap.dhcp.get(&bid) {
                    if self.dhcp(bid, cfg, p) {
                        return;
                    }
                }
            }
        }
        self.mirrors(p.m_pre_in(), MirrorPoint::PortPreIn, ctx);
        let v = self.run_chain(p.in_chain, Hook::PortIn, ctx);
        if !self.verdict(v, ctx) {
            return;
        }
        self.mirrors(p.m_post_in(), MirrorPoint::PortPostIn, ctx);
        match p.dev {
            Dev::Bridge(_) => self.bridge(p),
            Dev::Router(_) => self.router(p),
        }
    }

    /// The DHCP server of bridge `bid` (see [`crate::dhcp`]): true when the
    /// packet was a BOOTREQUEST it answered (the packet is consumed).
    ///
    /// Only bridges with an enabled DHCP subnet get here, so only their
    /// flows match on the ethertype, protocol and UDP ports read below. A
    /// packet to UDP 68→67 is never cacheable: whether it is answered
    /// depends on its payload (the client MAC and message type), which a
    /// megaflow cannot match.
    fn dhcp(
        &mut self,
        bid: midonet_model::BridgeId,
        cfg: &crate::dhcp::BridgeDhcp,
        p: &SPort,
    ) -> bool {
        if self.fm.ethertype() != ETH_IPV4
            || self.fm.ip_proto() != PROTO_UDP
            || self.fm.l4_dst() != crate::dhcp::SERVER_PORT
            || self.fm.l4_src() != crate::dhcp::CLIENT_PORT
        {
            return false;
        }
        self.out.uncacheable = true;
        self.tag(Tag::bridge(bid));
        self.tag(Tag::dhcp(bid));
        let Some(a) = crate::dhcp::answer(cfg, self.inp.frame) else {
            trace!(
                self,
                TraceStep::Dhcp {
                    what: "no static host for this request: passed to the bridge".into()
                }
            );
            return false;
        };
        trace!(
            self,
            TraceStep::Dhcp {
                what: format!("{:?} {} to {}", a.reply, a.ip, a.client).to_lowercase()
            }
        );
        self.generated(GenKind::DhcpReply, GenTarget::Emit(p.id), a.frame);
        self.consumed = true;
        true
    }

    /// Egress through `pid`; `dev_in` is the port the packet entered the
    /// device by (for conditions and ICMP errors).
    pub(super) fn port_egress(&mut self, pid: PortId, dev_in: PortId) {
        if !self.budget() {
            return;
        }
        self.tag(Tag::port(pid));
        trace!(self, TraceStep::PortEgress { port: pid });
        let snap = self.snap;
        let Some(p) = snap.ports.get(&pid) else {
            return self.drop_pkt(DropReason::UnknownPort);
        };
        let ctx = Ctx { dev: p.dev, in_port: dev_in, out_port: Some(pid) };
        if !p.admin_up {
            if matches!(p.dev, Dev::Router(_)) {
                let pre = self.pre;
                self.icmp_error(dev_in, IcmpError::AdminProhibited, &pre);
            }
            return self.drop_pkt(DropReason::PortAdminDown);
        }
        self.mirrors(p.m_pre_out(), MirrorPoint::PortPreOut, ctx);
        let v = self.run_chain(p.out_chain, Hook::PortOut, ctx);
        if !self.verdict(v, ctx) {
            return;
        }
        self.mirrors(p.m_post_out(), MirrorPoint::PortPostOut, ctx);
        self.emit_from(p);
    }

    /// Leave through `p` without its filters: output or the peer's ingress.
    pub(super) fn emit_from(&mut self, p: &SPort) {
        if p.exterior {
            self.output(p.id);
        } else if let Some(peer) = p.peer {
            self.port_ingress(peer);
        } else {
            self.drop_pkt(DropReason::PortUnplugged);
        }
    }

    /// Where a packet generated as a reply on port `p` goes.
    pub(super) fn reply_target(p: &SPort) -> Option<GenTarget> {
        if p.exterior {
            Some(GenTarget::Emit(p.id))
        } else {
            p.peer.map(GenTarget::Ingress)
        }
    }

    pub(super) fn generated(&mut self, kind: GenKind, target: GenTarget, frame: Vec<u8>) {
        trace!(self, TraceStep::Generated { kind, target });
        self.out.generated.push(GeneratedPacket { kind, target, frame });
    }
}
