//! The router's L4 load balancer (MidoNet's `LoadBalancer`, `Vip`, `Pool`;
//! reference §2.12), over the NAT bindings of the flow-state seam.
//!
//! ```text
//!  inbound (first, before the redirect and inbound chains; a translated
//!  packet skips both):
//!    dst ip:port a VIP's?  no ─> chains as usual
//!    UDP ─> drop (lb_not_tcp)
//!    VIP admin down ─> chains as usual (MidoNet: not a VIP then)
//!    DNAT(conn) bound, member still in the pool ─> reuse (graceful drain)
//!    sticky: STICKY_DNAT(src ip) bound, member active ─> that member
//!    else: weighted rendezvous hash over the active members
//!          (sticky: of the source address; else: of the connection)
//!          none ─> ICMP port unreachable + drop (lb_no_member)
//!    bind DNAT(conn) (and STICKY_DNAT), rewrite dst ip:port
//!  outbound (after the route, before the forward and outbound chains; a
//!  restored packet skips both):
//!    TCP from a member's ip:port? ─> DNAT return binding, then sticky one
//!                                    ─> restore the VIP as source
//! ```
//!
//! * **Keys** are those of dynamic NAT (`engine::nat`) at the router: a
//!   per-connection `Dnat` binding for every connection, sticky or not, and
//!   for a sticky VIP also a `StickyDnat` binding per client address (its
//!   source port zeroed). Return traffic is restored from the per-connection
//!   binding, so a sticky member that is disabled keeps the connections it
//!   has, unlike MidoNet, which kept only the sticky key and broke them
//!   (reference §8.7).
//! * **Choice**: weighted rendezvous (highest random weight) hashing, so
//!   that adding or removing a member moves only the connections that must
//!   move, and each member takes new connections in proportion to its
//!   weight. MidoNet picks at random; a hash also keeps two agents that race
//!   on a connection's first packets in agreement. Sticky VIPs hash the
//!   client address and the VIP only (no seed), so every host sends a client
//!   to the same member even before the sticky binding reaches it.
//! * **Which members**: new connections go to members that are admin up,
//!   of weight above zero, and not marked down by a health check, in a pool
//!   that is admin up. An existing connection keeps its member while the
//!   member is in the pool at all (admin down or down: it drains); a
//!   client's sticky binding is kept only while its member is active.
//! * **Tags**: every packet through a router with a load balancer is
//!   tagged [`Tag::load_balancer`] (VIPs, pools and members are compiled
//!   into it), plus the NAT tags of the keys it looked up.
//! * **Masks**: the destination address is read on every packet through
//!   the router; protocol and ports only for a VIP's address. Outbound, the
//!   source address on every packet, its port only for a member's address.

use midonet_flow::key::{IP_PROTO_TCP, IP_PROTO_UDP};
use midonet_model::PoolMemberId;
use midonet_state::{ConnKey, NatBinding, NatError, NatKey, NatKind};
use midonet_wire::IcmpError;

use super::{Sim, F_IP_DST, F_IP_SRC, F_L4_DST, F_L4_SRC};
use crate::result::*;
use crate::snapshot::{hash64, lb, uuid_hash, SRouter, SVip};
use crate::state::{ConntrackView, StateView};
use crate::tag::Tag;
use crate::FragType;

/// What the inbound load balancer did with a packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum LbIn {
    /// Not for a VIP: the router's chains as usual.
    Pass,
    /// Translated to a member: skip the router's inbound chains.
    Translated,
    /// Dropped (and traced): stop.
    Dropped,
}

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    /// The inbound load balancer of router `r` (module docs).
    pub(super) fn lb_inbound(&mut self, r: &SRouter, in_port: midonet_model::PortId) -> LbIn {
        let Some(lb) = &r.lb else { return LbIn::Pass };
        self.tag(Tag::load_balancer(lb.id));
        let dst = self.fm.ipv4_dst();
        if !lb.vip_ips.contains(&dst) {
            return LbIn::Pass;
        }
        let proto = self.fm.ip_proto();
        if !matches!(proto, IP_PROTO_TCP | IP_PROTO_UDP) || self.fm.ip_frag() == FragType::Later {
            return LbIn::Pass;
        }
        let port = self.fm.l4_dst();
        if !lb.vip_addrs.contains(&(dst, port)) {
            return LbIn::Pass;
        }
        // A VIP's decision is per connection (no split: `engine::nat`).
        self.conn_state();
        if proto == IP_PROTO_UDP {
            self.drop_pkt(DropReason::LbNotTcp);
            return LbIn::Dropped;
        }
        let Some(vip) = lb.vip(dst, port) else { return LbIn::Pass };
        let Some(conn) = self.nat_conn(r.id.cast()) else { return LbIn::Pass };
        match self.lb_choose(vip, conn) {
            Some((b, member, how)) => {
                trace!(
                    self,
                    TraceStep::LoadBalancer {
                        vip: vip.id,
                        pool: vip.pool,
                        member: Some(member),
                        how: how.to_string(),
                    }
                );
                self.fm.set_ipv4_dst(b.ip);
                self.fm.set_l4_dst(b.port);
                self.dirty |= F_IP_DST | F_L4_DST;
                self.dst_rewritten = true;
                trace!(
                    self,
                    TraceStep::Rewrite {
                        what: format!("ip4.dst={} l4.dst={} (load balancer)", b.ip, b.port)
                    }
                );
                LbIn::Translated
            }
            None if self.in_copy => LbIn::Pass,
            None => {
                trace!(
                    self,
                    TraceStep::LoadBalancer {
                        vip: vip.id,
                        pool: vip.pool,
                        member: None,
                        how: "no member up and enabled".into(),
                    }
                );
                let pre = self.pre;
                self.icmp_error(in_port, IcmpError::PortUnreachable, &pre);
                self.drop_pkt(DropReason::LbNoMember);
                LbIn::Dropped
            }
        }
    }

    /// The member for a connection to `vip`, its binding, and how it was
    /// chosen; `None` when no member can take it (module docs).
    fn lb_choose(
        &mut self,
        vip: &SVip,
        conn: ConnKey,
    ) -> Option<(NatBinding, PoolMemberId, &'static str)> {
        let now = self.inp.now;
        let key = NatKey::new(NatKind::Dnat, conn);
        self.tag(Tag::nat(&key));
        if let Some(b) = self.ct.nat_binding(&key, now) {
            if let Some(m) = vip.member(b.ip, b.port) {
                self.record_nat(key, b, false);
                return Some((b, m.id, "existing connection"));
            }
            // Its member left the pool: the connection is balanced anew.
            if !self.in_copy {
                self.ct.nat_unbind(&key);
            }
        }
        if self.in_copy {
            return None;
        }
        let sticky = NatKey::new(NatKind::StickyDnat, conn);
        let mut skip: Vec<PoolMemberId> = Vec::new();
        let mut affinity = false;
        if vip.sticky {
            self.tag(Tag::nat(&sticky));
            if let Some(b) = self.ct.nat_binding(&sticky, now) {
                match vip.member(b.ip, b.port).filter(|m| m.active && vip.pool_up) {
                    Some(m) => {
                        let id = m.id;
                        self.record_nat(sticky, b, false);
                        if let Some(got) = self.lb_bind(&key, b) {
                            return Some((got, id, "sticky source address"));
                        }
                        // This client already has a connection to that
                        // member from the same port (through another VIP):
                        // its replies would be indistinguishable, so this
                        // one connection goes elsewhere.
                        skip.push(id);
                        affinity = true;
                    }
                    None => self.ct.nat_unbind(&sticky),
                }
            }
        }
        if !vip.pool_up {
            return None;
        }
        let h = if vip.sticky {
            hash64(u64::from(u32::from(conn.src)), uuid_hash(vip.id.uuid()))
        } else {
            hash64(
                hash64(
                    (u64::from(u32::from(conn.src)) << 16) | u64::from(conn.src_port),
                    uuid_hash(vip.id.uuid()),
                ),
                self.inp.hash_seed,
            )
        };
        while let Some(m) = lb::pick(&vip.members, h, &skip) {
            let b = NatBinding { ip: m.ip, port: m.port };
            match self.lb_bind(&key, b) {
                Some(got) if got == b => {
                    if vip.sticky && !affinity && skip.is_empty() {
                        match self.ct.nat_bind(&sticky, b, now) {
                            Ok(()) => self.record_nat(sticky, b, true),
                            Err(NatError::Bound(old)) => self.record_nat(sticky, old, false),
                            Err(_) => {}
                        }
                    }
                    return Some((b, m.id, "new connection"));
                }
                // Raced with another writer: its choice stands.
                Some(got) => {
                    let id = vip.member(got.ip, got.port).map_or(m.id, |x| x.id);
                    return Some((got, id, "existing connection"));
                }
                // This member's return traffic would look like another
                // binding's: the next best member.
                None => skip.push(m.id),
            }
        }
        None
    }

    /// Store the per-connection binding `key` → `b` (or find the one a
    /// racing writer stored); `None` if its return key is taken or the
    /// table is full.
    fn lb_bind(&mut self, key: &NatKey, b: NatBinding) -> Option<NatBinding> {
        match self.ct.nat_bind(key, b, self.inp.now) {
            Ok(()) => {
                self.record_nat(*key, b, true);
                Some(b)
            }
            Err(NatError::Bound(old)) => {
                self.record_nat(*key, old, false);
                Some(old)
            }
            Err(NatError::ReturnKeyInUse) | Err(NatError::Full) => None,
        }
    }

    /// The outbound load balancer of router `r`: true if the packet was
    /// return traffic from a member and its source is now the VIP (module
    /// docs).
    pub(super) fn lb_outbound(&mut self, r: &SRouter) -> bool {
        let Some(lb) = &r.lb else { return false };
        let src = self.fm.ipv4_src();
        if !lb.backend_ips.contains(&src) {
            return false;
        }
        if self.fm.ip_proto() != IP_PROTO_TCP || self.fm.ip_frag() == FragType::Later {
            return false;
        }
        if !lb.backends.contains(&(src, self.fm.l4_src())) {
            return false;
        }
        self.conn_state();
        let Some(ret) = self.nat_conn(r.id.cast()) else { return false };
        let now = self.inp.now;
        let mut found = None;
        for kind in [NatKind::Dnat, NatKind::StickyDnat] {
            let mut k = ret;
            if kind == NatKind::StickyDnat {
                k.dst_port = 0;
            }
            self.tag(Tag::nat_return(kind, &k));
            if let Some(e) = self.ct.nat_reverse(kind, &ret, now) {
                found = Some(e);
                break;
            }
        }
        let Some((fk, b)) = found else {
            trace!(
                self,
                TraceStep::Nat {
                    kind: NatKind::Dnat,
                    reverse: true,
                    key: ret,
                    result: "load balancer: no binding".into()
                }
            );
            return false;
        };
        self.tag(Tag::nat(&fk));
        let orig = fk.return_binding();
        let port = orig.port;
        trace!(
            self,
            TraceStep::Nat {
                kind: fk.kind,
                reverse: true,
                key: ret,
                result: format!("load balancer: restores {}:{port}", orig.ip)
            }
        );
        self.fm.set_ipv4_src(orig.ip);
        self.fm.set_l4_src(port);
        self.dirty |= F_IP_SRC | F_L4_SRC;
        trace!(
            self,
            TraceStep::Rewrite {
                what: format!("ip4.src={} l4.src={port} (load balancer return)", orig.ip)
            }
        );
        self.record_nat_reverse(fk, b);
        true
    }
}
