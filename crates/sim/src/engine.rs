//! The simulation engine: one packet through the virtual topology.
//!
//! ```text
//!  ingress port ─ [exterior bridge port, DHCP on the bridge, UDP 68→67:
//!                  dhcp::answer → reply emitted, consumed; else go on]
//!               ─ pre-in mirrors ─ in chain ─ post-in mirrors ─┐
//!     ┌────────────────────────────────────────────────────────┘
//!     ├─ bridge: admin · src check · VLAN push · in chain · learn · ARP answer
//!     │          · unicast (out chain) | flood (fork per port) · VLAN pop
//!     └─ router: VLAN/ethertype/MAC checks · ARP · in chain · LPM (+src, weight,
//!                HRW-ECMP) · local/blackhole/reject · TTL · out chain · next-hop MAC
//!     ┌────────────────────────────────────────────────────────┘
//!  egress port ─ pre-out mirrors ─ out chain ─ post-out mirrors ─ exterior: ToPort
//!                                                              └ interior: peer ingress
//! ```
//!
//! Invariants:
//!
//! * **Every packet field is read through [`FlowMatch`]'s getters**, which
//!   mark the mask (the megaflow invariant; `tests/megaflow.rs` checks it).
//!   Where a decision depends only on the top bits of an address (LPM,
//!   CIDR conditions) only those bits are marked. The one thing a mask cannot
//!   express, the addresses inside an ICMP error, sets
//!   [`SimResult::uncacheable`].
//! * **Every object consulted is tagged**, lookups that missed included.
//! * **Forks** (floods, mirrors) save the current key and restore it after
//!   the branch; the mask accumulates over all branches. Rewrites are emitted
//!   as the diff between the key the frame has at that point of the action
//!   list and the key at the output, so per-branch rewrites (VLAN pop on one
//!   port, none on another) compose in one list.
//! * **Loop guard**: at most [`MAX_DEVICES`] devices along one path
//!   (temporary drop), and a global budget of port visits so that fan-out
//!   (floods into floods) is bounded too.
//! * **No allocation** on the bridge unicast path with tracing off: the
//!   result's vectors are reused, lookups are hash probes, jump tracking is a
//!   stack array.
//!
//! Router-generated packets (echo replies, ICMP errors) go through the
//! router's outbound chain before they are emitted (MidoNet does the same:
//! that is how an echo reply to a DNATed address gets SNATed back). Their
//! reads are not folded into the original packet's mask: they only occur on
//! consumed or temporary-drop paths.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::IpNet;
use midonet_model::{
    ChainId, DeviceId, FlowAction, FragmentPolicy, MirrorId, PortId, RouteType, RouterId,
};
use midonet_wire::IcmpError;

use crate::packets;
use crate::result::*;
use crate::snapshot::*;
use crate::state::*;
use crate::tag::Tag;
use crate::{diff_actions, Action, Actions, FlowKey, FlowMatch, FragType, MacAddr};

/// Most devices one packet may traverse along a path (MidoNet's limit).
pub const MAX_DEVICES: usize = 12;
/// Most port visits (ingress + egress) in one simulation, over all
/// branches: a fan-out bound (floods into floods), high enough that a flood
/// over a bridge with thousands of ports is never cut short.
pub const MAX_PORT_VISITS: u32 = 65_536;
/// Most chains one evaluation may enter through jumps.
const MAX_JUMPS: usize = 32;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
const PROTO_ICMP: u8 = 1;
const PROTO_UDP: u8 = 17;

/// Set-field tracking bits (see `Sim::output`).
const F_ETH_SRC: u8 = 1;
const F_ETH_DST: u8 = 2;
const F_IP_SRC: u8 = 4;
const F_IP_DST: u8 = 8;

/// One packet to simulate.
#[derive(Clone, Copy, Debug)]
pub struct SimInput<'a> {
    /// The virtual port the packet entered by.
    pub ingress: PortId,
    /// Its key (`FlowKey::extract` of `frame`).
    pub key: FlowKey,
    /// The frame bytes (used for generated replies and ICMP error payloads;
    /// may be empty, in which case replies are rebuilt from the key).
    pub frame: &'a [u8],
    /// Now, on the caller's clock.
    pub now: Duration,
    /// Seed for ECMP hashing. Use one value per deployment: every agent
    /// (and the cluster's trace endpoint, which uses 0) then picks the same
    /// member for a flow, so a trace shows the path traffic really takes.
    pub hash_seed: u64,
    /// Record a step-by-step trace.
    pub trace: bool,
}

/// Simulate one packet into a reused result (see [`SimResult`]).
pub fn simulate_into<S, C>(
    snap: &Snapshot,
    state: &S,
    conntrack: &C,
    icmp: &mut IcmpRateLimiter,
    input: &SimInput<'_>,
    out: &mut SimResult,
) where
    S: StateView + ?Sized,
    C: ConntrackView + ?Sized,
{
    out.clear(input.key);
    let mut sim = Sim {
        snap,
        state,
        ct: conntrack,
        icmp,
        inp: input,
        fm: FlowMatch::new(input.key),
        emitted: input.key,
        pre: input.key,
        path: [DeviceId::nil(); MAX_DEVICES],
        depth: 0,
        visits: 0,
        dst_rewritten: false,
        dirty: 0,
        applied: 0,
        tracing: input.trace,
        forwarded: false,
        consumed: false,
        pending: None,
        dropped: None,
        out,
    };
    sim.port_ingress(input.ingress);
    sim.finish();
}

/// Simulate one packet (allocates a fresh result).
pub fn simulate<S, C>(
    snap: &Snapshot,
    state: &S,
    conntrack: &C,
    icmp: &mut IcmpRateLimiter,
    input: &SimInput<'_>,
) -> SimResult
where
    S: StateView + ?Sized,
    C: ConntrackView + ?Sized,
{
    let mut out = SimResult::default();
    simulate_into(snap, state, conntrack, icmp, input, &mut out);
    out
}

#[derive(Clone, Copy)]
struct Ctx {
    dev: Dev,
    in_port: PortId,
    out_port: Option<PortId>,
}

enum Verdict {
    Accept,
    Drop,
    Reject,
    DynNat,
    Redirect { port: PortId, ingress: bool, fail_open: bool },
}

enum Flow {
    Continue,
    Return,
    Done(Verdict),
}

struct Sim<'a, 'i, S: ?Sized, C: ?Sized> {
    snap: &'a Snapshot,
    state: &'a S,
    ct: &'a C,
    icmp: &'a mut IcmpRateLimiter,
    inp: &'a SimInput<'i>,
    out: &'a mut SimResult,
    fm: FlowMatch,
    /// The key the frame has after the actions emitted so far.
    emitted: FlowKey,
    /// The key as it entered the current router (for ICMP errors).
    pre: FlowKey,
    path: [DeviceId; MAX_DEVICES],
    depth: usize,
    visits: u32,
    dst_rewritten: bool,
    /// Fields the simulation set on the current path (`F_*` bits).
    dirty: u8,
    /// Fields whose value in `emitted` was put there by an action.
    applied: u8,
    tracing: bool,
    forwarded: bool,
    consumed: bool,
    pending: Option<(RouterId, Ipv4Addr)>,
    dropped: Option<DropReason>,
}

macro_rules! trace {
    ($s:expr, $step:expr) => {
        if $s.tracing {
            let step = $step;
            $s.out.trace.push(step);
        }
    };
}

fn act_text(a: &RuleAct) -> String {
    match a {
        RuleAct::Accept => "accept".into(),
        RuleAct::Drop => "drop".into(),
        RuleAct::Reject => "reject".into(),
        RuleAct::Return => "return".into(),
        RuleAct::Jump(c) => format!("jump to {c}"),
        RuleAct::StaticNat { dnat, to, then } => {
            format!(
                "{} to {to} then {}",
                if *dnat { "static dnat" } else { "static snat" },
                then.as_str()
            )
        }
        RuleAct::DynamicNat => "dynamic nat".into(),
        RuleAct::RevNat { dnat, then } => {
            format!("{} then {}", if *dnat { "rev_dnat" } else { "rev_snat" }, then.as_str())
        }
        RuleAct::L2 { pop, push } => format!("l2_transform pop={pop} push={push:?}"),
        RuleAct::Redirect { port, ingress, .. } => {
            format!("redirect to {port} {}", if *ingress { "ingress" } else { "egress" })
        }
    }
}

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    fn tag(&mut self, t: Tag) {
        self.out.tags.push(t);
    }

    fn drop_pkt(&mut self, r: DropReason) {
        trace!(self, TraceStep::Drop { reason: r });
        if self.dropped.is_none() {
            self.dropped = Some(r);
        }
    }

    fn finish(&mut self) {
        self.out.tags.sort_unstable();
        self.out.tags.dedup();
        self.out.mask = *self.fm.mask();
        self.out.decision = if self.forwarded {
            Decision::Forward
        } else if let Some((router, ip)) = self.pending {
            Decision::ArpPending { router, ip }
        } else if self.consumed {
            trace!(self, TraceStep::Consumed);
            Decision::Consumed
        } else {
            let reason = self.dropped.unwrap_or(DropReason::NoOutput);
            Decision::Drop { reason, lifetime: reason.lifetime() }
        };
    }

    /// The Ethernet source; marked only if it still is the packet's own
    /// (after a router rewrote it, it is a constant of the topology).
    fn eth_src(&mut self) -> MacAddr {
        if self.dirty & F_ETH_SRC != 0 {
            self.fm.current().eth_src
        } else {
            self.fm.eth_src()
        }
    }

    /// The Ethernet destination, marked only if it is the packet's own.
    fn eth_dst(&mut self) -> MacAddr {
        if self.dirty & F_ETH_DST != 0 {
            self.fm.current().eth_dst
        } else {
            self.fm.eth_dst()
        }
    }

    fn budget(&mut self) -> bool {
        self.visits += 1;
        if self.visits > MAX_PORT_VISITS {
            self.drop_pkt(DropReason::Budget);
            return false;
        }
        true
    }

    /// Run `f` as a branch: the key is restored afterwards. A flood branch
    /// (`copy` false) is part of the packet's fate. A mirror copy (`copy`
    /// true) only observes: its outputs stay, but its drops, state writes
    /// (a copy re-entering a bridge must not move a MAC), generated packets
    /// and ARP waits are discarded.
    fn fork(&mut self, copy: bool, f: impl FnOnce(&mut Self)) {
        let key = *self.fm.current();
        let rw = self.dst_rewritten;
        let dropped = self.dropped;
        let depth = self.depth;
        let pre = self.pre;
        let dirty = self.dirty;
        let (writes, gens, pending, consumed) =
            (self.out.state_writes.len(), self.out.generated.len(), self.pending, self.consumed);
        f(self);
        self.fm.restore_current(key);
        self.dst_rewritten = rw;
        self.depth = depth;
        self.pre = pre;
        self.dirty = dirty;
        if copy {
            self.dropped = dropped;
            self.out.state_writes.truncate(writes);
            self.out.generated.truncate(gens);
            self.pending = pending;
            self.consumed = consumed;
        }
    }

    fn enter(&mut self, dev: Dev) -> bool {
        if self.depth >= MAX_DEVICES {
            self.drop_pkt(DropReason::LoopGuard);
            return false;
        }
        self.path[self.depth] = dev.id();
        self.depth += 1;
        self.tag(Tag::device(dev.id()));
        true
    }

    /// Emit on `port`, preceded by the rewrites that bring the frame from
    /// its state after the previous actions (`emitted`) to the current key.
    ///
    /// A field the simulation *set* gets its set-action even when the value
    /// happens to equal the packet's own (a router rewriting eth.src to a
    /// MAC the frame already had): otherwise whether the action appears
    /// would depend on the old value, which the simulation did not read and
    /// must not have to mark.
    fn output(&mut self, port: PortId) {
        let cur = *self.fm.current();
        let e = self.emitted;
        let forced = self.dirty & !self.applied;
        let same = |bit: u8, eq: bool| forced & bit != 0 && eq;
        if same(F_ETH_SRC, cur.eth_src == e.eth_src) {
            self.out.actions.push(SimAction::Rewrite(Action::SetEthSrc(cur.eth_src)));
        }
        if same(F_ETH_DST, cur.eth_dst == e.eth_dst) {
            self.out.actions.push(SimAction::Rewrite(Action::SetEthDst(cur.eth_dst)));
        }
        if same(F_IP_SRC, cur.ipv4_src == e.ipv4_src) {
            self.out.actions.push(SimAction::Rewrite(Action::SetIpv4Src(cur.ipv4_src)));
        }
        if same(F_IP_DST, cur.ipv4_dst == e.ipv4_dst) {
            self.out.actions.push(SimAction::Rewrite(Action::SetIpv4Dst(cur.ipv4_dst)));
        }
        let mut rw = Actions::new();
        diff_actions(&e, &cur, &mut rw);
        for a in rw.iter() {
            self.out.actions.push(SimAction::Rewrite(*a));
        }
        self.out.actions.push(SimAction::ToPort(port));
        // Every field that differed, or was set, now has an action-set value.
        let mut changed = 0;
        changed |= if cur.eth_src != e.eth_src { F_ETH_SRC } else { 0 };
        changed |= if cur.eth_dst != e.eth_dst { F_ETH_DST } else { 0 };
        changed |= if cur.ipv4_src != e.ipv4_src { F_IP_SRC } else { 0 };
        changed |= if cur.ipv4_dst != e.ipv4_dst { F_IP_DST } else { 0 };
        self.applied |= self.dirty | changed;
        self.emitted = cur;
        self.forwarded = true;
        trace!(self, TraceStep::Output { port });
    }

    // ---------------------------------------------------------------- ports

    fn port_ingress(&mut self, pid: PortId) {
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
        self.mirrors(&p.m_pre_in, MirrorPoint::PortPreIn, ctx);
        let v = self.run_chain(p.in_chain, Hook::PortIn, ctx);
        if !self.verdict(v, ctx) {
            return;
        }
        self.mirrors(&p.m_post_in, MirrorPoint::PortPostIn, ctx);
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
    fn port_egress(&mut self, pid: PortId, dev_in: PortId) {
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
        self.mirrors(&p.m_pre_out, MirrorPoint::PortPreOut, ctx);
        let v = self.run_chain(p.out_chain, Hook::PortOut, ctx);
        if !self.verdict(v, ctx) {
            return;
        }
        self.mirrors(&p.m_post_out, MirrorPoint::PortPostOut, ctx);
        self.emit_from(p);
    }

    /// Leave through `p` without its filters: output or the peer's ingress.
    fn emit_from(&mut self, p: &SPort) {
        if p.exterior {
            self.output(p.id);
        } else if let Some(peer) = p.peer {
            self.port_ingress(peer);
        } else {
            self.drop_pkt(DropReason::PortUnplugged);
        }
    }

    /// Where a packet generated as a reply on port `p` goes.
    fn reply_target(p: &SPort) -> Option<GenTarget> {
        if p.exterior {
            Some(GenTarget::Emit(p.id))
        } else {
            p.peer.map(GenTarget::Ingress)
        }
    }

    fn generated(&mut self, kind: GenKind, target: GenTarget, frame: Vec<u8>) {
        trace!(self, TraceStep::Generated { kind, target });
        self.out.generated.push(GeneratedPacket { kind, target, frame });
    }

    fn mirrors(&mut self, list: &[MirrorId], point: MirrorPoint, ctx: Ctx) {
        let snap = self.snap;
        for id in list {
            self.tag(Tag::mirror(*id));
            let Some(m) = snap.mirrors.get(id) else { continue };
            let Some(to) = m.to else { continue };
            let hit = m.conds.is_empty() || m.conds.iter().any(|c| self.matches(c, ctx));
            if !hit {
                continue;
            }
            trace!(self, TraceStep::Mirror { point, mirror: m.id, to });
            self.fork(true, |s| {
                s.tag(Tag::port(to));
                match snap.ports.get(&to) {
                    Some(tp) if tp.admin_up => s.emit_from(tp),
                    _ => s.drop_pkt(DropReason::UnknownPort),
                }
            });
        }
    }

    // --------------------------------------------------------------- chains

    fn run_chain(&mut self, id: Option<ChainId>, hook: Hook, ctx: Ctx) -> Verdict {
        let Some(id) = id else { return Verdict::Accept };
        let mut visited = [ChainId::nil(); MAX_JUMPS];
        let mut n = 0;
        let r = match self.eval(id, hook, ctx, &mut visited, &mut n) {
            Flow::Done(v) => v,
            Flow::Continue | Flow::Return => Verdict::Accept,
        };
        trace!(
            self,
            TraceStep::ChainResult {
                chain: id,
                result: match &r {
                    Verdict::Accept => "accept".into(),
                    Verdict::Drop => "drop".into(),
                    Verdict::Reject => "reject".into(),
                    Verdict::DynNat => "dynamic nat (not yet supported)".into(),
                    Verdict::Redirect { port, .. } => format!("redirect to {port}"),
                }
            }
        );
        r
    }

    fn eval(
        &mut self,
        id: ChainId,
        hook: Hook,
        ctx: Ctx,
        visited: &mut [ChainId; MAX_JUMPS],
        n: &mut usize,
    ) -> Flow {
        let snap = self.snap;
        self.tag(Tag::chain(id));
        let Some(chain) = snap.chains.get(&id) else { return Flow::Continue };
        // A jump to a chain already entered in this evaluation is ignored
        // (cycle protection), as is one beyond the jump limit.
        if visited[..*n].contains(&id) || *n >= MAX_JUMPS {
            return Flow::Continue;
        }
        visited[*n] = id;
        *n += 1;
        trace!(self, TraceStep::Chain { hook, chain: id, name: chain.name.clone() });
        for (i, rule) in chain.rules.iter().enumerate() {
            if !self.matches(&rule.cond, ctx) {
                continue;
            }
            trace!(
                self,
                TraceStep::Rule {
                    chain: id,
                    index: i + 1,
                    rule: rule.id,
                    action: act_text(&rule.act)
                }
            );
            let then = match &rule.act {
                RuleAct::Accept => return Flow::Done(Verdict::Accept),
                RuleAct::Drop => return Flow::Done(Verdict::Drop),
                RuleAct::Reject => return Flow::Done(Verdict::Reject),
                RuleAct::Return => return Flow::Return,
                RuleAct::Jump(t) => match self.eval(*t, Hook::Jump, ctx, visited, n) {
                    Flow::Done(v) => return Flow::Done(v),
                    Flow::Continue | Flow::Return => continue,
                },
                RuleAct::DynamicNat => return Flow::Done(Verdict::DynNat),
                RuleAct::StaticNat { dnat, to, then } => {
                    if self.fm.ethertype() != ETH_IPV4 {
                        continue;
                    }
                    if *dnat {
                        self.fm.set_ipv4_dst(*to);
                        self.dirty |= F_IP_DST;
                        self.dst_rewritten = true;
                        trace!(self, TraceStep::Rewrite { what: format!("ip4.dst={to}") });
                    } else {
                        self.fm.set_ipv4_src(*to);
                        self.dirty |= F_IP_SRC;
                        trace!(self, TraceStep::Rewrite { what: format!("ip4.src={to}") });
                    }
                    *then
                }
                RuleAct::RevNat { dnat, then } => {
                    if self.fm.ethertype() != ETH_IPV4 {
                        continue;
                    }
                    self.tag(Tag::static_nat());
                    if *dnat {
                        let src = self.fm.ipv4_src();
                        let Some(orig) = snap.rev_dnat.get(&src) else { continue };
                        self.fm.set_ipv4_src(*orig);
                        self.dirty |= F_IP_SRC;
                        trace!(
                            self,
                            TraceStep::Rewrite {
                                what: format!("ip4.src={orig} (reverse static dnat)")
                            }
                        );
                    } else {
                        let dst = self.fm.ipv4_dst();
                        let Some(orig) = snap.rev_snat.get(&dst) else { continue };
                        self.fm.set_ipv4_dst(*orig);
                        self.dirty |= F_IP_DST;
                        self.dst_rewritten = true;
                        trace!(
                            self,
                            TraceStep::Rewrite {
                                what: format!("ip4.dst={orig} (reverse static snat)")
                            }
                        );
                    }
                    *then
                }
                RuleAct::L2 { pop, push } => {
                    self.l2(*pop, *push);
                    continue;
                }
                RuleAct::Redirect { port, ingress, fail_open, pop, push } => {
                    self.l2(*pop, *push);
                    return Flow::Done(Verdict::Redirect {
                        port: *port,
                        ingress: *ingress,
                        fail_open: *fail_open,
                    });
                }
            };
            match then {
                FlowAction::Accept => return Flow::Done(Verdict::Accept),
                FlowAction::Continue => continue,
                FlowAction::Return => return Flow::Return,
            }
        }
        Flow::Continue
    }

    fn l2(&mut self, pop: bool, push: Option<u16>) {
        if pop {
            if let Some(v) = self.fm.vlan_vid() {
                self.fm.set_vlan(None);
                trace!(self, TraceStep::VlanPop { vlan: v });
            }
        }
        if let Some(v) = push {
            let _ = (self.fm.vlan_vid(), self.fm.vlan_pcp());
            self.fm.set_vlan(Some((v, 0)));
            trace!(self, TraceStep::VlanPush { vlan: v });
        }
    }

    /// Apply a chain verdict; true to continue the pipeline.
    fn verdict(&mut self, v: Verdict, ctx: Ctx) -> bool {
        match v {
            Verdict::Accept => true,
            Verdict::Drop => {
                // A router dropping the first fragment of a datagram by rule
                // says so with frag-needed (midonet-behaviour §2.18).
                if matches!(ctx.dev, Dev::Router(_))
                    && self.fm.ethertype() == ETH_IPV4
                    && self.fm.ip_frag() == FragType::First
                {
                    let pre = self.pre;
                    self.icmp_error(ctx.in_port, IcmpError::FragNeeded { next_hop_mtu: 0 }, &pre);
                }
                self.drop_pkt(DropReason::RuleDrop);
                false
            }
            Verdict::Reject => {
                if matches!(ctx.dev, Dev::Router(_)) {
                    let pre = self.pre;
                    self.icmp_error(ctx.in_port, IcmpError::AdminProhibited, &pre);
                }
                self.drop_pkt(DropReason::RuleReject);
                false
            }
            Verdict::DynNat => {
                self.drop_pkt(DropReason::DynamicNatUnsupported);
                false
            }
            Verdict::Redirect { port, ingress, fail_open } => {
                let snap = self.snap;
                self.tag(Tag::port(port));
                let target = snap.ports.get(&port).filter(|p| p.admin_up);
                let Some(tp) = target else {
                    if fail_open {
                        return true;
                    }
                    self.drop_pkt(DropReason::RedirectTargetDown);
                    return false;
                };
                trace!(self, TraceStep::Redirect { port, ingress });
                if ingress {
                    self.port_ingress(port);
                } else {
                    self.emit_from(tp);
                }
                false
            }
        }
    }

    fn is_ip(&mut self) -> u8 {
        match self.fm.ethertype() {
            ETH_IPV4 => 4,
            ETH_IPV6 => 6,
            _ => 0,
        }
    }

    fn net_match(&mut self, n: &IpNet, src: bool) -> bool {
        match n {
            IpNet::V4(n4) => {
                if self.is_ip() != 4 {
                    return false;
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
        self.snap.ports.get(&port).is_some_and(|p| p.groups.contains(&g))
    }

    fn matches(&mut self, c: &Cond, ctx: Ctx) -> bool {
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
            // The conntrack key is the 5-tuple: mark it all.
            let _ = (self.pkt_ip(true), self.pkt_ip(false), self.tp(true), self.tp(false));
            let ret = self.ct.is_return_flow(self.fm.current(), ctx.dev.id());
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

    // --------------------------------------------------------------- bridge

    fn bridge(&mut self, inp: &SPort) {
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
            return self.flood(b, vlan, inp.id, ctx);
        }
        if let Some(&p) = b.router_macs.get(&dst) {
            trace!(self, TraceStep::MacLookup { vlan, mac: dst, port: Some(p) });
            return self.bridge_unicast(b, vlan, p, ctx, tagged);
        }
        self.tag(Tag::mac(b.id, vlan, dst));
        let port = self
            .state
            .mac_port(b.id, vlan, dst)
            .or_else(|| b.seeded_macs.get(&(vlan, dst)).copied());
        trace!(self, TraceStep::MacLookup { vlan, mac: dst, port });
        match port {
            None => self.flood(b, vlan, inp.id, ctx),
            Some(p) if p == inp.id || dst == src => self.drop_pkt(DropReason::Hairpin),
            Some(p) => self.bridge_unicast(b, vlan, p, ctx, tagged),
        }
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

    fn flood(&mut self, b: &SBridge, vlan: u16, in_port: PortId, ctx: Ctx) {
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

    // --------------------------------------------------------------- router

    fn router(&mut self, inp: &SPort) {
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
        let v = self.run_chain(r.in_chain, Hook::RouterIn, ctx);
        if !self.verdict(v, ctx) {
            return;
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
    fn router_generate(
        &mut self,
        r: &SRouter,
        via: &SPort,
        kind: GenKind,
        key: FlowKey,
        build: impl FnOnce(&FlowKey) -> Vec<u8>,
    ) {
        let saved = self.fm;
        let rw = self.dst_rewritten;
        self.fm = FlowMatch::new(key);
        let ctx = Ctx { dev: via.dev, in_port: via.id, out_port: Some(via.id) };
        let v = self.run_chain(r.out_chain, Hook::RouterGenerated, ctx);
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
        let v = self.run_chain(r.out_chain, Hook::RouterOut, ctx);
        if !self.verdict(v, ctx) {
            return;
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
        if !fresh {
            self.out.state_writes.push(StateWrite::RouterArp { router: r.id, ip: spa, mac: sha });
            trace!(self, TraceStep::ArpLearn { ip: spa, mac: sha });
        }
        self.consumed = true;
    }

    /// Generate an ICMP error about the current packet from the router of
    /// port `in_port`, unless RFC 1812 §4.3.2.7 or the rate limit says not to.
    fn icmp_error(&mut self, in_port: PortId, kind: IcmpError, pre: &FlowKey) {
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
