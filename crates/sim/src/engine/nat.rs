//! Dynamic NAT: the stateful `snat`/`dnat` rules and `rev_snat`/`rev_dnat`
//! (MidoNet's `NatState`, reference §2.10), over the flow-state seam
//! ([`ConntrackView`]).
//!
//! ```text
//!  snat/dnat rule ─> key = (kind, packet at the rule, device evaluating the chain)
//!                    tag nat(key); binding(key)? ─ yes: reuse it
//!                                                └ no:  SNAT: snat_allocate (port-block leases)
//!                                                       DNAT: pick from a hash, nat_bind
//!                    rewrite src (SNAT) or dst (DNAT) address and port / echo id
//!                    record NatWrite; then the rule's flowAction
//!  rev_snat/dnat ─> static reverse map first, then:
//!                    ret = packet at the device (ICMP error: its quote, reversed)
//!                    tag nat_return(kind, ret); reverse(kind, ret)? ─ no: next rule
//!                    restore dst (rev_snat) or src (rev_dnat); tag nat(its key)
//! ```
//!
//! * **Keys** are MidoNet's: the kind, the packet's 5-tuple *as it is at
//!   the rule* (earlier rewrites included) and the device whose chain
//!   holds the rule (a port's chain: the port's device). The 5-tuple is
//!   read through the marking getters, so a flow that used a binding
//!   matches its exact connection.
//! * **What NAT applies to**: IPv4 TCP, UDP and ICMP echo, not later
//!   fragments (no ports). Anything else skips the rule (it does nothing
//!   and evaluation goes on), as in MidoNet; ICMP errors are reverse-
//!   translated through their quote (below).
//! * **Fragments**: a fragment (first or later) that reaches a NAT rule
//!   makes the result [`SimResult::uncacheable`]: no flow, since a flow
//!   cannot tell one datagram's fragments from another's. The first
//!   fragment is translated here like a whole datagram; the agent keeps
//!   its translation under the datagram's IP id and applies it to the
//!   later fragments, which it handles without simulating
//!   (`midonet_agent::fragments`). A later fragment simulated (its first
//!   never seen) skips the rule, as in MidoNet.
//! * **SNAT** allocates through the view ([`ConntrackView::snat_allocate`],
//!   `midonet_state::allocate_snat`): a port unique per (NAT IP, port,
//!   destination) from a 64-port block this host holds. When no held block
//!   has room, the view answers `NeedBlock`; the simulation does not invent
//!   a block: it ends in a temporary drop ([`DropReason::NatNeedBlock`]),
//!   reports the block in [`SimResult::need_block`] and tags the flow
//!   [`Tag::snat_block`], so the caller claims the block in the store and
//!   simulates the packet again. `Exhausted` and `TableFull` are counted
//!   temporary drops. The `rand` the view spreads ports with is a hash of
//!   the key and the simulation's seed (no RNG here).
//! * **DNAT** picks deterministically from a hash of the key and the seed
//!   (MidoNet: at random): the target, an address in its range and a port
//!   in its port range (a `0-0` port range keeps the port). The pick is
//!   stored with [`ConntrackView::nat_bind`]; if its return traffic would
//!   look like another binding's, the next of 8 picks is tried. The same
//!   connection always gets the same pick, which keeps two agents that
//!   race on a connection's first packets in agreement.
//! * **ICMP echo**: the identifier stands for both ports and **is**
//!   translated by SNAT (MidoNet never rewrites it, so two inside hosts
//!   pinging one destination with the same id collide; here they get
//!   different outside ids). DNAT keeps the id (only the destination
//!   address changes). `rev_snat` restores the id.
//! * **ICMP errors** (unreachable, time exceeded, parameter problem)
//!   reaching a reverse rule: the quoted datagram is the original packet
//!   *as translated*, so its reverse is the return key to look up. Found:
//!   the quote is restored (its source address and port for SNAT, its
//!   destination for DNAT, with checksums), and the outer header too where
//!   it carries the translated address (SNAT: the destination, when it is
//!   the NAT address; DNAT: the source, when the error comes from the
//!   backend itself), as MidoNet does. MidoNet also rewrites the quote
//!   (its `FlowKeyICMPError`, userspace only); here, since no set-field
//!   action reaches the quote, the output is not an action: the rebuilt
//!   frame leaves as a [generated packet](crate::GeneratedPacket)
//!   (`GenKind::IcmpError`, `Emit` on the exterior port) and the decision
//!   is `Consumed`. ICMP errors are uncacheable already, so nothing is
//!   installed. Mirror copies of such an error are not emitted.
//! * **Reverse rules** try the static reverse maps (floating IPs) first,
//!   then dynamic bindings; MidoNet's reverse rule knows only dynamic
//!   bindings (its floating IPs need no reverse rule), so a topology built
//!   for MidoNet behaves the same.
//! * **Tags**: a forward rule tags [`Tag::nat`] of its key (bound or not);
//!   a reverse rule [`Tag::nat_return`] of the key it looked for and, when
//!   found, [`Tag::nat`] of the binding's forward key. A binding stored,
//!   replaced, expired or removed invalidates both
//!   ([`NatWrite::tags`](crate::NatWrite::tags)), so a reply simulated
//!   before its binding arrived from a peer is simulated again once it has.
//! * **Results**: every binding created or used goes into
//!   [`SimResult::nat`] (created ones are stored by the view already; the
//!   caller replicates them and refreshes used ones). A binding allocated
//!   by a simulation that then drops the packet stays until it expires.
//!   Mirror copies create nothing and record nothing: without a binding a
//!   copy leaves untranslated (traced).
//!
//! # Flows split at a reverse NAT
//!
//! A reply's reverse lookup reads its 5-tuple, so its flow is exact on the
//! connection and every connection's reply misses. A datapath with a
//! reverse-NAT table of its own runs such a flow in two halves instead:
//!
//! ```text
//!  first half:  reads before the lookup + ethertype, ip proto, ip frag
//!               ─> reverse-translate from the datapath's table, look up again
//!  second half: the translated packet (Split::key), under the recirculation's
//!               in-port ─> SimResult::actions
//! ```
//!
//! Only when [`SimInput::split_reverse_nat`] asks, the result then carries a
//! [`Split`]; [`SimResult::mask`], [`SimResult::actions`] and
//! [`SimResult::tags`] are the second half's, and `Split::restore` then
//! `SimResult::actions` do to every packet what the unsplit actions do (the
//! same set-actions, the restored fields' first).
//!
//! * **What splits**: the first reverse lookup of a simulation, by a
//!   dynamic `rev_snat`/`rev_dnat` (not a static reverse map, not the load
//!   balancer's return) that finds a binding, for IPv4 TCP or UDP (not ICMP
//!   echo, not an ICMP error, not a later fragment), outside mirror copies
//!   and generated packets, when nothing was set by a set-field (a TTL
//!   decrement or VLAN change is fine: the second half's actions carry it),
//!   output, forked or looked up per connection (conntrack, a NAT rule, the
//!   load balancer) before it.
//! * **What cancels it** afterwards: anything that makes the second half
//!   depend on per-connection state or not be one plain flow: a conntrack
//!   lookup that does not find the connection (one that finds it stays:
//!   below), any NAT rule reached (forward or reverse, static or dynamic,
//!   hit or not), the load balancer deciding about a VIP or a member's
//!   reply, a fork (flood, mirror copy), a generated packet, an uncacheable
//!   result, a port block needed, or any end but [`Decision::Forward`] with
//!   exactly one output. Cancelled, the result is exactly the unsplit one:
//!   the actions are built unsplit all along (the second half's are derived
//!   at the end, from [`Split::key`] to the key at the output), the tags are
//!   all kept, and the mask taken at the split (the lookup's reads included)
//!   is unioned back.
//! * **The per-connection tags go** from both halves: the lookup's
//!   [`Tag::nat_return`] and [`Tag::nat`] name one connection, and a shared
//!   flow carrying them would be removed whenever that one binding changed,
//!   while serving every other connection. The translation itself is the
//!   datapath table's, which the caller keeps equal to the bindings: a
//!   binding gone makes its connection's packets miss in the first half.
//!   [`SimResult::nat`] still records the reverse use, as unsplit.
//! * **A conntrack lookup that finds the connection** (`matchReturnFlow`
//!   after the reverse rule, as security groups ask) keeps the split: its
//!   key is the packet as it entered (the first half's) at the ingress
//!   port's device (the first half's in-port), so the datapath can make
//!   it. [`Split::conntrack`] names the connection; the second half does
//!   not match its 5-tuple nor carry its tag, and the datapath takes the
//!   second half only for a packet whose connection its own table tracks
//!   (the caller keeps that table equal to its conntrack), else it misses.
//! * **The second half continues the first**: what was read before the
//!   split is in the first half's mask only (the ingress port, a
//!   decremented TTL, the chain position), so a second half is right only
//!   for packets its own first half sent: one recirculation per first-half
//!   flow.
//!
//! [`SimInput::split_reverse_nat`]: crate::SimInput::split_reverse_nat
//! [`Split`]: crate::Split
//! [`Split::key`]: crate::Split::key
//! [`Split::conntrack`]: crate::Split::conntrack
//! [`SimResult::mask`]: crate::SimResult::mask
//! [`SimResult::actions`]: crate::SimResult::actions
//! [`SimResult::tags`]: crate::SimResult::tags
//! [`Decision::Forward`]: crate::Decision::Forward
//! [`SimResult::need_block`]: crate::SimResult::need_block
//! [`SimResult::nat`]: crate::SimResult::nat

use midonet_flow::key::{IP_PROTO_TCP, IP_PROTO_UDP};
use midonet_model::DeviceId;
use midonet_state::{Alloc, ConnKey, NatBinding, NatError, NatKey, NatKind, SnatTarget, TrackerId};
use midonet_wire::icmp::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST};

use super::conntrack::CtState;
use super::{
    push_rewrites, Sim, ETH_IPV4, F_ICMP_ID, F_IP_DST, F_IP_SRC, F_L4_DST, F_L4_SRC, PROTO_ICMP,
};
use crate::packets::{self, Embedded};
use crate::result::*;
use crate::snapshot::hash64;
use crate::state::{ConntrackView, StateView};
use crate::tag::Tag;
use crate::{Action, Actions, FieldId, FlowKey, FlowMask, FragType};

/// DNAT picks tried when a pick's return traffic collides with another
/// binding's.
const DNAT_TRIES: u64 = 8;

/// Where the flow splits at a reverse NAT (module docs), while the
/// simulation goes on past it.
pub(super) struct SplitPoint {
    /// Nothing cancelled it yet.
    pub(super) live: bool,
    kind: NatKind,
    tracker: TrackerId,
    /// The first half's mask (reads before the lookup, plus what the
    /// datapath's lookup needs).
    first_mask: FlowMask,
    /// How many tags the first half has (the result's first ones).
    first_tags: usize,
    /// The lookup's per-connection tags: on no shared flow.
    conn_tags: [Tag; 2],
    /// A conntrack lookup behind the split found this connection (its
    /// forward key) and its tag: the datapath must find it too.
    conntrack: Option<(ConnKey, Tag)>,
    /// The translated key (the second half's).
    key: FlowKey,
    restore: Actions,
    /// The restored fields (`F_*` bits).
    restored: u8,
    /// The mask at the translation, the lookup's reads included: unioned
    /// back if the split is cancelled.
    unsplit_mask: FlowMask,
    /// Outputs since the split, and the last one: its port, the key and
    /// the set fields (`Sim::dirty`) there.
    outputs: u32,
    out: Option<(midonet_model::PortId, FlowKey, u8)>,
}

/// What a forward NAT rule did.
pub(super) enum NatOutcome {
    /// Translated: the rule's flowAction follows.
    Applied,
    /// Not applicable (not TCP/UDP/echo, or a mirror copy without a
    /// binding): the next rule.
    Skipped,
    /// No binding could be made: drop.
    Failed(DropReason),
}

/// A deterministic hash of a connection key (DNAT picks, SNAT spread).
fn conn_hash(k: &ConnKey, seed: u64) -> u64 {
    let a = (u64::from(u32::from(k.src)) << 32) | u64::from(u32::from(k.dst));
    let b = (u64::from(k.src_port) << 24) | (u64::from(k.dst_port) << 8) | u64::from(k.proto);
    let t = k.tracker.0.as_u128();
    hash64(hash64(hash64(a, b), t as u64 ^ (t >> 64) as u64), seed)
}

/// The usable targets: a non-empty address range, and a port range that
/// is `0-0` (keep the port) or not inverted.
fn usable(t: &SnatTarget) -> bool {
    t.ip_from <= t.ip_to && ((t.port_from == 0 && t.port_to == 0) || t.port_from <= t.port_to)
}

/// The DNAT binding hash `h` picks for `conn` among `targets`.
fn dnat_pick(targets: &[SnatTarget], conn: &ConnKey, h: u64) -> Option<NatBinding> {
    let n = targets.iter().filter(|t| usable(t)).count();
    let t = targets.iter().filter(|t| usable(t)).nth((h % n.max(1) as u64) as usize)?;
    let ips = u64::from(u32::from(t.ip_to) - u32::from(t.ip_from)) + 1;
    let ip = u32::from(t.ip_from) + ((h >> 16) % ips) as u32;
    let keep = conn.proto == PROTO_ICMP || (t.port_from == 0 && t.port_to == 0);
    let port = if keep {
        conn.dst_port
    } else {
        let span = u64::from(t.port_to - t.port_from) + 1;
        t.port_from + ((h >> 40) % span) as u16
    };
    Some(NatBinding { ip: ip.into(), port })
}

fn kind_of(dnat: bool) -> NatKind {
    if dnat {
        NatKind::Dnat
    } else {
        NatKind::Snat
    }
}

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    /// The packet's connection at device `dev`, its 5-tuple read (and
    /// marked); `None` when NAT does not apply to it (module docs).
    pub(super) fn nat_conn(&mut self, dev: DeviceId) -> Option<ConnKey> {
        if self.fm.ethertype() != ETH_IPV4 {
            return None;
        }
        match self.fm.ip_frag() {
            FragType::No => {}
            // A fragment's flow cannot follow its datagram (the IP id is no
            // flow field): the first fragment's translation is the agent's
            // to remember and its later fragments' to follow, each fragment
            // handled by the agent (module docs, "Fragments").
            FragType::First => self.out.uncacheable = true,
            FragType::Later => {
                self.out.uncacheable = true;
                return None;
            }
        }
        let (src, dst, proto) = (self.fm.ipv4_src(), self.fm.ipv4_dst(), self.fm.ip_proto());
        let (src_port, dst_port) = match proto {
            IP_PROTO_TCP | IP_PROTO_UDP => (self.fm.l4_src(), self.fm.l4_dst()),
            PROTO_ICMP => {
                if !matches!(self.fm.icmp_type(), ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) {
                    return None;
                }
                let id = self.fm.icmp_id();
                (id, id)
            }
            _ => return None,
        };
        Some(ConnKey { src, dst, src_port, dst_port, proto, tracker: TrackerId::from(dev) })
    }

    pub(super) fn record_nat(&mut self, key: NatKey, binding: NatBinding, created: bool) {
        self.record_nat_use(key, binding, created, false);
    }

    /// A binding a reverse lookup found (see [`NatWrite::reverse`]).
    pub(super) fn record_nat_reverse(&mut self, key: NatKey, binding: NatBinding) {
        self.record_nat_use(key, binding, false, true);
    }

    fn record_nat_use(&mut self, key: NatKey, binding: NatBinding, created: bool, reverse: bool) {
        if self.in_copy {
            return;
        }
        if let Some(w) = self.out.nat.iter_mut().find(|w| w.key == key && w.binding == binding) {
            w.created |= created;
            w.reverse &= reverse;
            return;
        }
        self.out.nat.push(NatWrite { key, binding, created, reverse });
    }

    fn trace_nat(
        &mut self,
        kind: NatKind,
        reverse: bool,
        key: ConnKey,
        result: impl FnOnce() -> String,
    ) {
        trace!(self, TraceStep::Nat { kind, reverse, key, result: result() });
    }

    /// A `snat`/`dnat` rule with `targets` at device `dev`.
    pub(super) fn nat_forward(
        &mut self,
        dnat: bool,
        targets: &[SnatTarget],
        dev: DeviceId,
    ) -> NatOutcome {
        self.conn_state();
        let Some(conn) = self.nat_conn(dev) else { return NatOutcome::Skipped };
        let kind = kind_of(dnat);
        let key = NatKey::new(kind, conn);
        self.tag(Tag::nat(&key));
        let now = self.inp.now;
        let (b, created) = if let Some(b) = self.ct.nat_binding(&key, now) {
            (b, false)
        } else if self.in_copy {
            self.trace_nat(kind, false, conn, || "mirror copy: no binding, not translated".into());
            return NatOutcome::Skipped;
        } else if dnat {
            match self.dnat_bind(&key, targets) {
                Ok(r) => r,
                Err(reason) => {
                    self.trace_nat(kind, false, conn, || {
                        format!("no binding ({})", reason.as_str())
                    });
                    return NatOutcome::Failed(reason);
                }
            }
        } else {
            let rand = conn_hash(&conn, self.inp.hash_seed);
            match self.ct.snat_allocate(&key, targets, rand, now) {
                Alloc::Port(b) => (b, true),
                Alloc::NeedBlock(block) => {
                    self.tag(Tag::snat_block(&block));
                    self.out.need_block.get_or_insert(block);
                    self.trace_nat(kind, false, conn, || {
                        format!(
                            "needs port block {} of {}: claim it, then again",
                            block.block, block.ip
                        )
                    });
                    return NatOutcome::Failed(DropReason::NatNeedBlock);
                }
                Alloc::Exhausted => {
                    self.trace_nat(kind, false, conn, || "every port is taken".into());
                    return NatOutcome::Failed(DropReason::NatExhausted);
                }
                Alloc::TableFull => {
                    self.trace_nat(kind, false, conn, || "nat table full".into());
                    return NatOutcome::Failed(DropReason::NatTableFull);
                }
            }
        };
        self.trace_nat(kind, false, conn, || {
            let how = if created { "new binding" } else { "existing binding" };
            format!("{how} {}:{}", b.ip, b.port)
        });
        let icmp = conn.proto == PROTO_ICMP;
        if dnat {
            self.fm.set_ipv4_dst(b.ip);
            self.dirty |= F_IP_DST;
            self.dst_rewritten = true;
            if !icmp {
                self.fm.set_l4_dst(b.port);
                self.dirty |= F_L4_DST;
            }
            trace!(
                self,
                TraceStep::Rewrite { what: format!("ip4.dst={} l4.dst={} (dnat)", b.ip, b.port) }
            );
        } else {
            self.fm.set_ipv4_src(b.ip);
            self.dirty |= F_IP_SRC;
            if icmp {
                self.fm.set_icmp_id(b.port);
                self.dirty |= F_ICMP_ID;
            } else {
                self.fm.set_l4_src(b.port);
                self.dirty |= F_L4_SRC;
            }
            trace!(
                self,
                TraceStep::Rewrite { what: format!("ip4.src={} l4.src={} (snat)", b.ip, b.port) }
            );
        }
        self.record_nat(key, b, created);
        NatOutcome::Applied
    }

    /// Pick and store a DNAT binding for `key` (module docs).
    fn dnat_bind(
        &mut self,
        key: &NatKey,
        targets: &[SnatTarget],
    ) -> Result<(NatBinding, bool), DropReason> {
        let h0 = conn_hash(&key.conn, self.inp.hash_seed);
        for i in 0..DNAT_TRIES {
            let b = dnat_pick(targets, &key.conn, hash64(h0, i)).ok_or(DropReason::NatExhausted)?;
            match self.ct.nat_bind(key, b, self.inp.now) {
                Ok(()) => return Ok((b, true)),
                Err(NatError::Bound(old)) => return Ok((old, false)),
                Err(NatError::ReturnKeyInUse) => continue,
                Err(NatError::Full) => return Err(DropReason::NatTableFull),
            }
        }
        Err(DropReason::NatExhausted)
    }

    /// A `rev_snat`/`rev_dnat` rule's dynamic part at device `dev`: true if
    /// a binding was found and the packet restored.
    pub(super) fn nat_reverse(&mut self, dnat: bool, dev: DeviceId) -> bool {
        // Whether this lookup may be a split point, what the first half
        // would match and the tags it would carry: decided before this rule
        // reads anything (module docs).
        let may_split = self.may_split();
        let (first_mask, first_tags) = (*self.fm.mask(), self.out.tags.len());
        self.conn_state();
        // The caller checked IPv4.
        if self.fm.ip_proto() == PROTO_ICMP
            && self.fm.ip_frag() != FragType::Later
            && packets::is_nat_icmp_error(self.fm.icmp_type())
        {
            return self.nat_reverse_icmp_error(dnat, dev);
        }
        let Some(ret) = self.nat_conn(dev) else { return false };
        let kind = kind_of(dnat);
        let ret_tag = Tag::nat_return(kind, &ret);
        self.tag(ret_tag);
        let Some((fk, b)) = self.ct.nat_reverse(kind, &ret, self.inp.now) else {
            self.trace_nat(kind, true, ret, || "no binding".into());
            return false;
        };
        let fwd_tag = Tag::nat(&fk);
        self.tag(fwd_tag);
        let orig = fk.return_binding();
        self.trace_nat(kind, true, ret, || format!("restores {}:{}", orig.ip, orig.port));
        let icmp = ret.proto == PROTO_ICMP;
        if icmp {
            self.fm.set_icmp_id(orig.port);
            self.dirty |= F_ICMP_ID;
        }
        if dnat {
            self.fm.set_ipv4_src(orig.ip);
            self.dirty |= F_IP_SRC;
            if !icmp {
                self.fm.set_l4_src(orig.port);
                self.dirty |= F_L4_SRC;
            }
            trace!(
                self,
                TraceStep::Rewrite {
                    what: format!("ip4.src={} l4.src={} (rev_dnat)", orig.ip, orig.port)
                }
            );
        } else {
            self.fm.set_ipv4_dst(orig.ip);
            self.dirty |= F_IP_DST;
            self.dst_rewritten = true;
            if !icmp {
                self.fm.set_l4_dst(orig.port);
                self.dirty |= F_L4_DST;
            }
            trace!(
                self,
                TraceStep::Rewrite {
                    what: format!("ip4.dst={} l4.dst={} (rev_snat)", orig.ip, orig.port)
                }
            );
        }
        if may_split && matches!(ret.proto, IP_PROTO_TCP | IP_PROTO_UDP) {
            self.split_at(SplitPoint {
                live: true,
                kind,
                tracker: ret.tracker,
                first_mask,
                first_tags,
                conn_tags: [ret_tag, fwd_tag],
                conntrack: None,
                key: self.inp.key,
                restore: Actions::new(),
                restored: 0,
                unsplit_mask: FlowMask::empty(),
                outputs: 0,
                out: None,
            });
        }
        self.record_nat_reverse(fk, b);
        true
    }

    /// Reverse NAT of an ICMP error by its quote (module docs).
    fn nat_reverse_icmp_error(&mut self, dnat: bool, dev: DeviceId) -> bool {
        // The quote is not in the flow key.
        self.out.uncacheable = true;
        let Some(mut e) = self.embedded.or_else(|| packets::icmp_error_embedded(self.inp.frame))
        else {
            return false;
        };
        let quoted = ConnKey {
            src: e.src,
            dst: e.dst,
            src_port: e.src_port,
            dst_port: e.dst_port,
            proto: e.proto,
            tracker: TrackerId::from(dev),
        };
        let ret = quoted.reversed();
        let kind = kind_of(dnat);
        self.tag(Tag::nat_return(kind, &ret));
        let Some((fk, b)) = self.ct.nat_reverse(kind, &ret, self.inp.now) else {
            self.trace_nat(kind, true, ret, || "icmp error: no binding for its quote".into());
            return false;
        };
        self.tag(Tag::nat(&fk));
        let orig = fk.return_binding();
        let echo = e.proto == PROTO_ICMP;
        if dnat {
            // The quote is the client's packet to the backend: restore the
            // address the client spoke to.
            if e.dst == ret.src {
                e.dst = orig.ip;
                e.dst_port = orig.port;
                if echo {
                    e.src_port = orig.port;
                }
            }
            if self.fm.ipv4_src() == ret.src {
                self.fm.set_ipv4_src(orig.ip);
                self.dirty |= F_IP_SRC;
            }
        } else {
            // The quote is the inside host's packet as translated.
            if e.src == ret.dst {
                e.src = orig.ip;
                e.src_port = orig.port;
                if echo {
                    e.dst_port = orig.port;
                }
            }
            if self.fm.ipv4_dst() == ret.dst {
                self.fm.set_ipv4_dst(orig.ip);
                self.dirty |= F_IP_DST;
                self.dst_rewritten = true;
            }
        }
        let (osrc, odst) = (self.fm.current().ipv4_src, self.fm.current().ipv4_dst);
        self.trace_nat(kind, true, ret, || {
            format!(
                "icmp error: quote becomes {}:{} > {}:{}; outer {osrc} > {odst}",
                e.src, e.src_port, e.dst, e.dst_port
            )
        });
        self.embedded = Some(e);
        self.record_nat_reverse(fk, b);
        true
    }

    /// Output of an ICMP error whose quote reverse NAT rewrote: the frame,
    /// quote rewritten and outer header brought to the current key, as a
    /// generated packet on `port` (module docs).
    pub(super) fn output_rebuilt_icmp_error(&mut self, port: midonet_model::PortId, e: Embedded) {
        if self.in_copy {
            return;
        }
        let cur = *self.fm.current();
        let Some(mut f) = packets::rewrite_icmp_error(self.inp.frame, &e) else { return };
        let mut acts = Actions::new();
        crate::diff_actions(&self.inp.key, &cur, &mut acts);
        if midonet_flow::apply_actions_to_frame(&mut f, acts.as_slice()).is_err() {
            return;
        }
        let kind = GenKind::IcmpError { icmp_type: cur.icmp_type, code: cur.icmp_code };
        self.generated(kind, GenTarget::Emit(port), f);
        self.consumed = true;
    }

    // ------------------------------------------------------------- splits

    /// Per-connection state is about to be consulted (conntrack, a dynamic
    /// NAT rule, the load balancer): no split point from now on, and a split
    /// point before this one is cancelled (module docs).
    pub(super) fn conn_state(&mut self) {
        self.stateful = true;
        self.cancel_split();
    }

    /// The flow cannot split after all: the result will be the unsplit one
    /// (`finish_split`).
    pub(super) fn cancel_split(&mut self) {
        if let Some(sp) = &mut self.split {
            sp.live = false;
        }
    }

    /// Whether a reverse lookup starting now may be a split point: the
    /// caller asked for splits, and nothing the first half could not
    /// express happened yet (module docs).
    fn may_split(&self) -> bool {
        self.inp.split_reverse_nat
            && self.split.is_none()
            && !self.stateful
            && !self.forked
            && !self.in_copy
            && !self.generating
            && self.ct_state == CtState::Unasked
            && self.dirty == 0
            && !self.forwarded
            && !self.consumed
            && self.pending.is_none()
            && self.dropped.is_none()
            && self.embedded.is_none()
            && self.out.actions.is_empty()
            && self.out.nat.is_empty()
            && self.out.conntrack.is_empty()
            && self.out.generated.is_empty()
            && self.out.need_block.is_none()
            && !self.out.uncacheable
    }

    /// The reverse lookup just translated the packet (`sp` has what
    /// `nat_reverse` knew before it; `sp.key` is the packet as it entered):
    /// the second half starts here, with a mask of its own.
    fn split_at(&mut self, mut sp: SplitPoint) {
        for f in [FieldId::EthType, FieldId::IpProto, FieldId::IpFrag] {
            sp.first_mask.mark(f);
        }
        let cur = *self.fm.current();
        if sp.kind == NatKind::Dnat {
            (sp.key.ipv4_src, sp.key.l4_src) = (cur.ipv4_src, cur.l4_src);
            sp.restore.push(Action::SetIpv4Src(cur.ipv4_src));
            sp.restore.push(Action::SetL4Src(cur.l4_src));
            sp.restored = F_IP_SRC | F_L4_SRC;
        } else {
            (sp.key.ipv4_dst, sp.key.l4_dst) = (cur.ipv4_dst, cur.l4_dst);
            sp.restore.push(Action::SetIpv4Dst(cur.ipv4_dst));
            sp.restore.push(Action::SetL4Dst(cur.l4_dst));
            sp.restored = F_IP_DST | F_L4_DST;
        }
        sp.unsplit_mask = self.fm.take_mask();
        self.split = Some(sp);
    }

    /// A conntrack lookup behind a live split point found the connection
    /// `fwd` (tagged `tag`): the datapath will check it (`engine::conntrack`).
    /// False when there is no live split point.
    pub(super) fn split_conntrack(&mut self, fwd: ConnKey, tag: Tag) -> bool {
        match self.split.as_mut().filter(|sp| sp.live) {
            Some(sp) => {
                sp.conntrack = Some((fwd, tag));
                true
            }
            None => false,
        }
    }

    /// At an output on `port` with the packet keyed `cur`: the second half
    /// ends in exactly one output.
    pub(super) fn split_output(&mut self, port: midonet_model::PortId, cur: FlowKey) {
        let dirty = self.dirty;
        if let Some(sp) = self.split.as_mut().filter(|sp| sp.live) {
            sp.outputs += 1;
            sp.out = Some((port, cur, dirty));
            sp.live = sp.outputs == 1;
        }
    }

    /// At the end (decision made, tags not yet sorted): the split, if it
    /// still holds, becomes the result's; else the mask becomes the unsplit
    /// one and nothing else changes (module docs).
    pub(super) fn finish_split(&mut self) {
        let Some(sp) = self.split.take() else { return };
        let holds = sp.live
            && sp.outputs == 1
            && self.out.decision == Decision::Forward
            && !self.loop_guard
            && self.out.out_ports().count() == 1
            && !self.out.uncacheable
            && self.out.generated.is_empty()
            && self.out.need_block.is_none()
            && self.out.conntrack.is_empty()
            && self.pending.is_none()
            && !self.consumed
            && self.dropped.is_none()
            && self.embedded.is_none();
        let Some((port, cur, dirty)) = sp.out.filter(|_| holds) else {
            self.fm.union_mask(&sp.unsplit_mask);
            return;
        };
        // The second half's actions: from the translated key, as `output`
        // builds them, the fields set since the split forced. (Nothing but
        // the translation set the restored fields: any NAT rule or load
        // balancer after it cancels.)
        self.out.actions.clear();
        push_rewrites(&sp.key, &cur, dirty & !sp.restored, &mut self.out.actions);
        self.out.actions.push(SimAction::ToPort(port));
        let mut tags = self.out.tags[..sp.first_tags].to_vec();
        tags.sort_unstable();
        tags.dedup();
        let ct_tag = sp.conntrack.map(|c| c.1);
        self.out.tags.retain(|t| !sp.conn_tags.contains(t) && Some(*t) != ct_tag);
        self.out.split = Some(Split {
            kind: sp.kind,
            tracker: sp.tracker,
            conntrack: sp.conntrack.map(|c| c.0),
            mask: sp.first_mask,
            tags,
            key: sp.key,
            restore: sp.restore,
        });
    }
}
