//! ICMP errors the router generates, as MidoNet's router does.
//!
//! Unreachable (net, host, frag-needed, admin-prohibited) and time
//! exceeded, sourced from the ingress router port, addressed to the
//! packet's source, embedding the packet as it entered the router (`pre`).
//! Suppressed per RFC 1812 §4.3.2.7: never about an ICMP error, a non-first
//! fragment, an L2 or IP broadcast/multicast, or an invalid source; and
//! rate limited by the caller's token bucket. Suppression is traced.

use midonet_model::PortId;
use midonet_wire::IcmpError;

use super::{Sim, ETH_IPV4, PROTO_ICMP};
use crate::packets;
use crate::result::*;
use crate::snapshot::Dev;
use crate::state::{ConntrackView, StateView};
use crate::FlowKey;
use crate::FragType;

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    /// Generate an ICMP error about the current packet from the router of
    /// port `in_port`, unless RFC 1812 §4.3.2.7 or the rate limit says not to.
    pub(super) fn icmp_error(&mut self, in_port: PortId, kind: IcmpError, pre: &FlowKey) {
        let (icmp_type, code) = kind.type_code();
        let snap = self.snap;
        let Some(p) = snap.ports.get(&in_port) else { return };
        let (Dev::Router(rid), Some(addr)) = (p.dev, p.addr) else { return };
        let Some(r) = snap.routers.get(&rid) else { return };
        let why = if self.fm.ethertype() != ETH_IPV4 {
            Some("not ipv4")
        } else if self.fm.ip_frag() == FragType::Later {
            Some("non-first fragment")
        } else if self.fm.ip_proto() == PROTO_ICMP
            && !matches!(self.fm.icmp_type(), 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
        {
            Some("packet is an icmp error")
        } else if self.fm.eth_dst().is_multicast() {
            Some("l2 broadcast or multicast")
        } else {
            let _ = (self.fm.ipv4_dst(), self.fm.ipv4_src());
            let (d, s) = (pre.ipv4_dst, pre.ipv4_src);
            if d.is_multicast() || d.is_broadcast() || d == addr.net.broadcast() {
                Some("ip broadcast or multicast destination")
            } else if s.is_unspecified()
                || s.is_multicast()
                || s.is_broadcast()
                || s.is_loopback()
                || s.octets()[0] >= 240
            {
                Some("invalid source address")
            } else if !self.icmp.try_take(self.inp.now) {
                Some("rate limited")
            } else {
                None
            }
        };
        if let Some(why) = why {
            trace!(self, TraceStep::IcmpSuppressed { why: why.to_string() });
            return;
        }
        let key = FlowKey {
            eth_src: addr.mac,
            eth_dst: pre.eth_src,
            ethertype: ETH_IPV4,
            ipv4_src: addr.ip,
            ipv4_dst: pre.ipv4_src,
            ip_proto: PROTO_ICMP,
            ip_ttl: 64,
            icmp_type,
            icmp_code: code,
            ..FlowKey::default()
        };
        let frame = self.inp.frame;
        let inner = *pre;
        self.router_generate(r, p, GenKind::IcmpError { icmp_type, code }, key, |k| {
            packets::icmp_error(k, kind, &inner, frame)
        });
    }
}
