//! The simulation engine: one packet through the virtual topology.
//!
//! ```text
//!  ingress port ─ [exterior bridge port, DHCP on the bridge, UDP 68→67:
//!                  dhcp::answer → reply emitted, consumed; else go on]
//!               ─ pre-in mirrors ─ in chain ─ post-in mirrors ─┐
//!     ┌────────────────────────────────────────────────────────┘
//!     ├─ bridge: admin · src check · VLAN push · in chain · learn · ARP answer
//!     │          · out chain · unicast | flood (fork per port) · VLAN pop
//!     └─ router: VLAN/ethertype/MAC checks · ARP · redirect + in chains · LPM (+src,
//!                weight, HRW-ECMP) · local/blackhole/reject · TTL · forward + out
//!                chains · next-hop MAC
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
//! * **Loop guard**: at most [`MAX_DEVICES`] devices (bridges, routers and
//!   mirrors) along one path; going over drops the whole packet (temporary
//!   drop), whichever branch it happened in. A global budget of port visits
//!   bounds fan-out (floods into floods) too.
//! * **Splits** at a reverse NAT (`nat` has the rules): the mask read so
//!   far is taken at the split point (the second half's starts afresh),
//!   actions are still built unsplit, and `finish` either derives the second
//!   half's from the split key or, cancelled, unions the taken mask back.
//!   Forks, generated packets and per-connection lookups cancel a split.
//! * **No allocation** on the bridge unicast path with tracing off: the
//!   result's vectors are reused, lookups are hash probes, jump tracking is a
//!   stack array.
//!
//! One module per device or concern, each an `impl` block of `Sim`:
//!
//! | module | what |
//! |---|---|
//! | `ports` | port ingress/egress, emit, the DHCP hook |
//! | `mirror` | mirror forks |
//! | `chain` | chain evaluation, jumps, verdicts (drop, reject, redirect) |
//! | `condition` | rule and mirror conditions |
//! | `bridge` | the bridge: learning, ARP, unicast, flood, VLANs |
//! | `router` | the router: ARP, routing, next hop, local delivery |
//! | `icmp` | ICMP errors and their suppression |
//! | `conntrack` | `matchForwardFlow`/`matchReturnFlow`, recording connections |
//! | `nat` | dynamic NAT rules, reverse NAT (ICMP errors included), flows split at a reverse NAT |
//! | `lb` | the router's load balancer: VIPs, member choice, return traffic |
//!
//! This file holds what they share: the packet's state along one path
//! (`Sim`), forks, the loop guard and output (where the rewrite actions
//! are computed). A new stateful stage (conntrack, dynamic NAT, the load
//! balancer) is a new module of its own.
//!
//! Router-generated packets (echo replies, ICMP errors) go through the
//! router's outbound chain before they are emitted (MidoNet does the same:
//! that is how an echo reply to a DNATed address gets SNATed back). Their
//! reads are not folded into the original packet's mask: they only occur on
//! consumed or temporary-drop paths.

use std::net::Ipv4Addr;
use std::time::Duration;

use midonet_model::{DeviceId, PortId, RouterId};

use crate::result::*;
use crate::snapshot::{Dev, Snapshot};
use crate::state::{ConntrackView, IcmpRateLimiter, StateView};
use crate::tag::Tag;
use crate::{diff_actions, Action, Actions, FlowKey, FlowMatch, MacAddr};

/// Most devices one packet may traverse along a path (MidoNet's limit).
pub const MAX_DEVICES: usize = 12;
/// Most port visits (ingress + egress) in one simulation, over all
/// branches: a fan-out bound (floods into floods), high enough that a flood
/// over a bridge with thousands of ports is never cut short.
pub const MAX_PORT_VISITS: u32 = 65_536;

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
const F_L4_SRC: u8 = 16;
const F_L4_DST: u8 = 32;
const F_ICMP_ID: u8 = 64;

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
    /// The packet was generated by a router of this topology (an echo
    /// reply, an ICMP error) and re-enters it: it counts as return traffic
    /// in every chain it meets, as MidoNet's generated packets do (so a
    /// VM's ping to its gateway is answered through the VM's security
    /// chains, although the request, consumed by the router, left no
    /// connection behind).
    pub generated: bool,
    /// The caller's datapath can run a flow split at a reverse NAT (a
    /// first half that reverse-translates from the datapath's own table
    /// and recirculates, a second half on the translated packet): the
    /// result may then carry a [`Split`] (`engine::nat` says
    /// when). False everywhere but the agent over such a datapath.
    pub split_reverse_nat: bool,
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
        loop_guard: false,
        ct_state: conntrack::CtState::Unasked,
        generating: input.generated,
        in_copy: false,
        embedded: None,
        stateful: false,
        forked: false,
        split: None,
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
    /// Some branch went past [`MAX_DEVICES`]: the whole packet is dropped.
    loop_guard: bool,
    /// The conntrack answer, computed when a condition first asks.
    ct_state: conntrack::CtState,
    /// A router-generated packet is in the chains (a return flow).
    generating: bool,
    /// Simulating a mirror copy: NAT uses existing bindings only.
    in_copy: bool,
    /// An ICMP error's embedded connection as reverse NAT rewrote it
    /// (`engine::nat`); `Some` only once rewritten.
    embedded: Option<crate::packets::Embedded>,
    /// Per-connection state was consulted (conntrack, a dynamic NAT rule,
    /// the load balancer): no split point after that (`engine::nat`).
    stateful: bool,
    /// The simulation forked (a flood, a mirror copy).
    forked: bool,
    /// Where the flow splits at a reverse NAT, if it may (`engine::nat`).
    split: Option<nat::SplitPoint>,
}

macro_rules! trace {
    ($s:expr, $step:expr) => {
        if $s.tracing {
            let step = $step;
            $s.out.trace.push(step);
        }
    };
}

// After `trace!`, so that the macro is in (textual) scope in each of them.
mod bridge;
mod chain;
mod condition;
mod conntrack;
mod icmp;
mod lb;
mod mirror;
mod nat;
mod ports;
mod router;

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
        self.out.decision = self.decision();
        self.finish_split();
        self.out.tags.sort_unstable();
        self.out.tags.dedup();
        self.out.mask = *self.fm.mask();
    }

    fn decision(&mut self) -> Decision {
        if self.loop_guard {
            // A loop in any branch, a mirror copy's included, drops the
            // whole packet: MidoNet merges an error drop with anything
            // into an error drop.
            self.out.actions.clear();
            let reason = DropReason::LoopGuard;
            Decision::Drop { reason, lifetime: reason.lifetime() }
        } else if self.forwarded {
            Decision::Forward
        } else if let Some((router, ip)) = self.pending {
            Decision::ArpPending { router, ip }
        } else if self.consumed {
            trace!(self, TraceStep::Consumed);
            Decision::Consumed
        } else {
            let reason = self.dropped.unwrap_or(DropReason::NoOutput);
            Decision::Drop { reason, lifetime: reason.lifetime() }
        }
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
        // Branches and copies do not split (`engine::nat`).
        self.forked = true;
        self.cancel_split();
        let key = *self.fm.current();
        let rw = self.dst_rewritten;
        let dropped = self.dropped;
        let depth = self.depth;
        let pre = self.pre;
        let dirty = self.dirty;
        let (writes, gens, pending, consumed) =
            (self.out.state_writes.len(), self.out.generated.len(), self.pending, self.consumed);
        let conns = self.out.conntrack.len();
        let (nats, need_block, embedded, in_copy) =
            (self.out.nat.len(), self.out.need_block, self.embedded, self.in_copy);
        self.in_copy |= copy;
        f(self);
        self.in_copy = in_copy;
        self.embedded = embedded;
        self.fm.restore_current(key);
        self.dst_rewritten = rw;
        self.depth = depth;
        self.pre = pre;
        self.dirty = dirty;
        if copy {
            self.dropped = dropped;
            self.out.state_writes.truncate(writes);
            self.out.conntrack.truncate(conns);
            self.out.nat.truncate(nats);
            self.out.need_block = need_block;
            self.out.generated.truncate(gens);
            self.pending = pending;
            self.consumed = consumed;
        }
    }

    fn enter(&mut self, dev: Dev) -> bool {
        if !self.traverse(dev.id()) {
            return false;
        }
        self.tag(Tag::device(dev.id()));
        true
    }

    /// Count one more device (a bridge, a router, a mirror) on the current
    /// path; false, and the loop guard tripped, past [`MAX_DEVICES`].
    fn traverse(&mut self, id: DeviceId) -> bool {
        if self.depth >= MAX_DEVICES {
            self.loop_guard = true;
            self.drop_pkt(DropReason::LoopGuard);
            return false;
        }
        self.path[self.depth] = id;
        self.depth += 1;
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
        if let Some(e) = self.embedded {
            // Reverse NAT rewrote an ICMP error's quote, which no action
            // can do: the rebuilt frame leaves as a generated packet.
            return self.output_rebuilt_icmp_error(port, e);
        }
        let cur = *self.fm.current();
        let e = self.emitted;
        push_rewrites(&e, &cur, self.dirty & !self.applied, &mut self.out.actions);
        self.out.actions.push(SimAction::ToPort(port));
        self.split_output(port, cur);
        if let Some(p) = self.snap.ports.get(&port) {
            self.conntrack_record(p.dev.id());
        }
        // Every field that differed, or was set, now has an action-set value.
        let mut changed = 0;
        changed |= if cur.eth_src != e.eth_src { F_ETH_SRC } else { 0 };
        changed |= if cur.eth_dst != e.eth_dst { F_ETH_DST } else { 0 };
        changed |= if cur.ipv4_src != e.ipv4_src { F_IP_SRC } else { 0 };
        changed |= if cur.ipv4_dst != e.ipv4_dst { F_IP_DST } else { 0 };
        changed |= if cur.l4_src != e.l4_src { F_L4_SRC } else { 0 };
        changed |= if cur.l4_dst != e.l4_dst { F_L4_DST } else { 0 };
        changed |= if cur.icmp_id != e.icmp_id { F_ICMP_ID } else { 0 };
        self.applied |= self.dirty | changed;
        self.emitted = cur;
        self.forwarded = true;
        trace!(self, TraceStep::Output { port });
    }
}

/// The rewrites that bring a frame keyed `e` to `cur`, appended to `out`:
/// first a set-action for each field in `forced` (`F_*` bits: fields the
/// simulation set) whose value is unchanged, then the diff (see
/// `Sim::output`).
fn push_rewrites(e: &FlowKey, cur: &FlowKey, forced: u8, out: &mut Vec<SimAction>) {
    let same = |bit: u8, eq: bool| forced & bit != 0 && eq;
    if same(F_ETH_SRC, cur.eth_src == e.eth_src) {
        out.push(SimAction::Rewrite(Action::SetEthSrc(cur.eth_src)));
    }
    if same(F_ETH_DST, cur.eth_dst == e.eth_dst) {
        out.push(SimAction::Rewrite(Action::SetEthDst(cur.eth_dst)));
    }
    if same(F_IP_SRC, cur.ipv4_src == e.ipv4_src) {
        out.push(SimAction::Rewrite(Action::SetIpv4Src(cur.ipv4_src)));
    }
    if same(F_IP_DST, cur.ipv4_dst == e.ipv4_dst) {
        out.push(SimAction::Rewrite(Action::SetIpv4Dst(cur.ipv4_dst)));
    }
    if same(F_L4_SRC, cur.l4_src == e.l4_src) {
        out.push(SimAction::Rewrite(Action::SetL4Src(cur.l4_src)));
    }
    if same(F_L4_DST, cur.l4_dst == e.l4_dst) {
        out.push(SimAction::Rewrite(Action::SetL4Dst(cur.l4_dst)));
    }
    if same(F_ICMP_ID, cur.icmp_id == e.icmp_id) {
        out.push(SimAction::Rewrite(Action::SetIcmpId(cur.icmp_id)));
    }
    let mut rw = Actions::new();
    diff_actions(e, cur, &mut rw);
    for a in rw.iter() {
        out.push(SimAction::Rewrite(*a));
    }
}
