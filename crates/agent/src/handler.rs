//! The miss handler: simulate, translate, install.
//!
//! Runs for every packet that matches no flow ([`UpcallHandler::on_miss`]),
//! on the datapath's miss workers (one `Handler` each, sharing [`Shared`];
//! `midonet_datapath::workers`) or inline on its thread with
//! `miss_workers = 0`:
//!
//! ```text
//!  key, frame, dp port ──> View.ingress[dp port] = vport ──> sim (Snapshot, state tables)
//!     SimResult ─┬─ state writes ──> local tables now, cluster (PublishMac/Arp), tags ─> core
//!                ├─ Forward: ToPort(p) ─> Output(dp port of p)        p bound here
//!                │                     ─> Tunnel{tunnel IP of p's host, p.tunnelKey}  elsewhere
//!                │            + rewrites in order ─> megaflow(mask, tags) + execute
//!                ├─ Drop(reason) ─> drop flow (lifetime by reason), counted
//!                ├─ Consumed ─> nothing installed
//!                ├─ ArpPending(router, ip) ─> park in the waiting room
//!                └─ generated: Emit(p) ─> translated like ToPort; Ingress(p) ─> simulated from p
//!  a router ARP entry learned here or from the cluster ──> parked packets re-simulated, sent
//! ```
//!
//! The handler never blocks on the agent's other tasks: the view is an
//! `ArcSwap` load, the state tables a short read lock, the flow state
//! (conntrack, NAT) a lock per lookup (`LockedTables`), and everything it
//! asks of others (invalidating flows that a learned entry makes stale,
//! publishing entries) goes through unbounded channels, because calling
//! back into the datapath from its own thread would deadlock.
//!
//! `ToPort` of a port whose host has no address in a tunnel zone shared
//! with this host is dropped from the action list and counted
//! ([`AgentDrop::NoTunnelRoute`]); the flow carries [`TUNNEL_ROUTES_TAG`] so
//! a tunnel-zone change re-simulates it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use midonet_datapath::{
    Action, Actions, FlowInstall, FlowKey, GeneratedPacket, InPort, MissDecision, PortNo,
    RevNatKind, RevNatTable, UpcallHandler, RECIRC_PORT_BASE, RECIRC_UNTRACKED,
};
use midonet_flow::FragType;
use midonet_model::{HostId, PortId, RouterId};
use midonet_sim::{
    Decision, FlowTablesView, GenTarget, IcmpRateLimiter, MemState, SimAction, SimResult, Snapshot,
    StateWrite, TablesPerCall, Tag,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc::UnboundedSender;

use crate::cache::TUNNEL_ROUTES_TAG;
use crate::flowstate::{FlowState, Replicator};
use crate::metrics::{AgentDrop, Metrics};
use crate::recirc::{FirstHalf, RecircIds};
use crate::session::Command;

/// Where a virtual port's traffic goes from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Bound to a local interface: this datapath port.
    Local(PortNo),
    /// Bound on another host reachable through a shared tunnel zone.
    Remote { dst: Ipv4Addr, key: u32 },
}

/// Everything the handler reads, swapped atomically as one value.
pub struct View {
    pub sim: Arc<Snapshot>,
    /// Exterior ports bound somewhere reachable.
    pub egress: HashMap<PortId, Egress>,
    /// Local datapath port → virtual port bound to it.
    pub ingress: HashMap<PortNo, PortId>,
    /// Store revision of the last topology change the view reflects
    /// (state-only deltas do not rebuild it).
    pub revision: i64,
    /// Whether the cluster's first snapshot has arrived.
    pub ready: bool,
    /// Port → other hosts with a port in one of its stateful port groups
    /// (they receive its flow state; see [`crate::flowstate`]).
    pub state_peers: HashMap<PortId, Vec<Ipv4Addr>>,
    /// Addresses of the hosts sharing a tunnel zone with this one: the only
    /// senders of flow state believed.
    pub trusted_peers: std::collections::HashSet<Ipv4Addr>,
    /// This host's own tunnel-zone addresses, sorted: where its peers send.
    pub tunnel_local: Vec<Ipv4Addr>,
}

impl View {
    pub fn empty() -> View {
        View {
            sim: Arc::new(Snapshot::build(&midonet_model::Topology::default())),
            egress: HashMap::new(),
            ingress: HashMap::new(),
            revision: 0,
            ready: false,
            state_peers: HashMap::new(),
            trusted_peers: Default::default(),
            tunnel_local: Vec::new(),
        }
    }
}

/// What a parked packet waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitKey {
    /// A router's ARP resolution of a next hop.
    Arp(RouterId, Ipv4Addr),
    /// The cluster's answer to a claim of this SNAT port block.
    Block(midonet_state::BlockKey),
}

/// A packet waiting for an ARP resolution or a SNAT block.
struct Parked {
    frame: Vec<u8>,
    key: FlowKey,
    ingress: PortId,
    deadline: Instant,
}

/// Packets waiting, by what they wait for. Bounded: past
/// [`WaitingRoom::CAPACITY`] packets the newest is dropped.
#[derive(Default)]
pub struct WaitingRoom {
    parked: HashMap<WaitKey, Vec<Parked>>,
    len: usize,
}

impl WaitingRoom {
    pub const CAPACITY: usize = 1024;

    fn park(&mut self, at: WaitKey, p: Parked) -> bool {
        if self.len >= Self::CAPACITY {
            return false;
        }
        self.len += 1;
        self.parked.entry(at).or_default().push(p);
        true
    }

    fn take(&mut self, at: &WaitKey) -> Vec<Parked> {
        let v = self.parked.remove(at).unwrap_or_default();
        self.len -= v.len();
        v
    }

    /// Drops packets past their deadline; returns how many, and the
    /// entries that have nothing waiting any more (their resolution failed).
    pub fn expire(&mut self, now: Instant) -> (usize, Vec<WaitKey>) {
        let before = self.len;
        let mut gave_up = Vec::new();
        self.parked.retain(|k, v| {
            v.retain(|p| p.deadline > now);
            if v.is_empty() {
                gave_up.push(*k);
            }
            !v.is_empty()
        });
        self.len = self.parked.values().map(Vec::len).sum();
        (before - self.len, gave_up)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The ARP resolutions packets wait for.
    pub fn arp_waits(&self) -> Vec<(RouterId, Ipv4Addr)> {
        self.parked
            .keys()
            .filter_map(|k| match *k {
                WaitKey::Arp(r, ip) => Some((r, ip)),
                WaitKey::Block(_) => None,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// State shared by the handler (datapath thread) and the core task.
pub struct Shared {
    pub host_id: HostId,
    pub view: ArcSwap<View>,
    pub state: Arc<RwLock<MemState>>,
    pub waiting: Mutex<WaitingRoom>,
    pub metrics: Arc<Metrics>,
    /// Entries learned here, to publish.
    pub commands: UnboundedSender<Command>,
    /// Tags made stale by entries learned here, for the core to invalidate.
    pub stale: UnboundedSender<Vec<Tag>>,
    pub flow_idle_ms: u64,
    pub arp_wait: Duration,
    /// Origin of the simulation clock.
    pub epoch: Instant,
    /// Connection tracking (and NAT bindings): held for one simulation.
    pub flowstate: Mutex<FlowState>,
    /// Where flow state goes to peers; `None` with `flow_state_port = 0`.
    pub replicator: Option<Replicator>,
    /// This host's flow-state log (`flowstate::log`); `None` when off.
    pub state_log: Option<Mutex<crate::flowstate::log::StateLog>>,
    /// Tags made stale by state the receiver thread installed: the next
    /// miss invalidates them before its own install (ordering them before
    /// any flow simulated with that state), the core's tick otherwise.
    pub pending_stale: Mutex<Vec<Tag>>,
    /// Ports whose state is asked of the peers, and the peers' requests
    /// (`flowstate::migrate`).
    pub migrations: crate::flowstate::migrate::Migrations,
    /// The datapath's reverse-NAT table, once the datapath is up and has
    /// one (and `kernel_rev_nat` is on): replies to NATed connections then
    /// get flows split at the reverse rule ([`crate::recirc`]).
    pub rev_nat: std::sync::OnceLock<Arc<dyn RevNatTable>>,
    /// Recirculation ids of split flows.
    pub recirc: Mutex<RecircIds>,
    /// First fragments' actions, for the rest of their datagrams
    /// ([`crate::fragments`]).
    pub fragments: Mutex<crate::fragments::Fragments>,
}

impl Shared {
    /// Appends an applied flow-state message to the log; a failed write
    /// is counted (the state still applies, it only would not survive a
    /// restart).
    pub fn log_state(
        &self,
        origin: crate::flowstate::log::Origin,
        msg: &midonet_wire::flowstate::FlowStateRepr,
    ) {
        if let Some(log) = &self.state_log {
            if let Err(e) = log.lock().append(origin, msg) {
                tracing::warn!(error = %e, "writing the flow-state log");
                self.metrics.flow_state_rejected("log_write_failed");
            }
        }
    }
}

/// The result of handling one packet (a miss or a re-simulation).
#[derive(Default)]
pub struct Outcome {
    pub execute: Actions,
    pub install: Option<FlowInstall>,
    /// A split flow's second half (`install` is its first half), under the
    /// recirculation's in-port and, when it reads no conntrack behind a
    /// first half that does, under the untracked one too.
    pub recirc: Vec<(FlowKey, FlowInstall)>,
    pub generated: Vec<GeneratedPacket>,
    /// Tags made stale by connections this packet started (the datapath
    /// invalidates them before installing `install`).
    pub invalidate: Vec<u64>,
}

/// How deep generated packets may re-enter the simulation.
const MAX_GEN_DEPTH: u8 = 4;

/// The per-datapath-thread handler.
pub struct Handler {
    shared: Arc<Shared>,
    worker: Worker,
    /// Per-port install counters, looked up once per port (a label is a
    /// string; a miss should not build one).
    installs: HashMap<PortId, prometheus_client::metrics::counter::Counter>,
}

/// Reusable per-thread simulation state.
#[derive(Default)]
pub struct Worker {
    result: SimResult,
    icmp: IcmpRateLimiter,
}

impl Handler {
    pub fn new(shared: Arc<Shared>) -> Self {
        Handler { shared, worker: Worker::default(), installs: HashMap::new() }
    }
}

impl UpcallHandler for Handler {
    fn on_miss(&mut self, key: &FlowKey, frame: &[u8], in_port: InPort) -> MissDecision {
        let start = Instant::now();
        let d = self.miss(key, frame, in_port);
        self.shared.metrics.miss_latency.observe(start.elapsed().as_secs_f64());
        d
    }
}

impl Handler {
    fn miss(&mut self, key: &FlowKey, frame: &[u8], in_port: InPort) -> MissDecision {
        let sh = &*self.shared;
        sh.metrics.misses.inc();
        // State a peer sent before this packet's connection reached us is
        // installed before the simulation (see `flowstate::Replicator`).
        let mut drained: Vec<u64> = match &sh.replicator {
            Some(r) => r.drain(sh).iter().map(|t| t.0).collect(),
            None => Vec::new(),
        };
        {
            let mut pending = sh.pending_stale.lock();
            drained.extend(pending.drain(..).map(|t| t.0));
        }
        let dropped = |invalidate| MissDecision { invalidate, ..MissDecision::drop() };
        let view = sh.view.load();
        let ingress = match in_port {
            InPort::Port(n) => match view.ingress.get(&n) {
                Some(p) => *p,
                None => {
                    sh.metrics.count_drop(if view.ready {
                        AgentDrop::UnboundPort
                    } else {
                        AgentDrop::NoTopology
                    });
                    return dropped(drained);
                }
            },
            InPort::Tunnel(_) => {
                // Keys of local ports are delivered by the datapath without
                // asking; anything else is for a port that is not (or no
                // longer) bound here.
                sh.metrics.count_drop(AgentDrop::UnknownTunnelKey);
                return dropped(drained);
            }
        };
        if sh.migrations.gates(ingress) {
            sh.metrics.count_drop(AgentDrop::StateImport);
            return dropped(drained);
        }
        // A later fragment of a datagram whose first fragment went through
        // NAT gets what the first got (`crate::fragments`).
        let datagram = crate::fragments::DatagramId::of(ingress, key, frame);
        if let Some(id) = datagram.filter(|_| key.ip_frag == FragType::Later) {
            if let Some(execute) = sh.fragments.lock().follow(&id, Instant::now()) {
                sh.metrics.fragment("followed");
                return MissDecision { execute, ..dropped(drained) };
            }
        }
        // Expiry of the waiting room is the core's 1 s housekeeping, which
        // also marks the resolutions that failed.
        let mut o = process(sh, &view, &mut self.worker, key, frame, ingress, 0, true, false);
        if let Some(id) = datagram.filter(|_| key.ip_frag == FragType::First) {
            // No flow (a NAT rule saw it): the rest of the datagram misses too.
            if o.install.is_none() && !o.execute.is_drop() {
                let kept = sh.fragments.lock().record(id, &o.execute, Instant::now());
                sh.metrics.fragment(match kept {
                    crate::fragments::Recorded::Kept => "recorded",
                    crate::fragments::Recorded::Full => "refused",
                });
            }
        }
        if o.install.is_some() {
            self.installs
                .entry(ingress)
                .or_insert_with(|| {
                    sh.metrics
                        .port_flow_installs
                        .get_or_create(&crate::metrics::PortLabels { port: ingress.to_string() })
                        .clone()
                })
                .inc();
        }
        let mut invalidate = drained;
        invalidate.append(&mut o.invalidate);
        MissDecision {
            install: o.install.take(),
            execute: o.execute,
            generated: o.generated,
            invalidate,
            recirc: std::mem::take(&mut o.recirc),
        }
    }
}

fn sim_now(sh: &Shared) -> Duration {
    sh.epoch.elapsed()
}

/// Simulates one packet entering at `ingress` and turns the result into
/// datapath terms. `cacheable` is false for re-simulations of parked or
/// generated packets (their flow is installed by the next real miss).
/// `generated` is true for a packet a router generated re-entering the
/// topology (it counts as return traffic: `SimInput::generated`), never
/// for a parked packet of a VM.
#[allow(clippy::too_many_arguments)]
pub fn process(
    sh: &Shared,
    view: &View,
    w: &mut Worker,
    key: &FlowKey,
    frame: &[u8],
    ingress: PortId,
    depth: u8,
    cacheable: bool,
    generated: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let now = sim_now(sh);
    // Only a flow about to be installed may be split (re-simulations
    // execute the whole list on their frame).
    let split = cacheable && sh.rev_nat.get().is_some();
    let simulate = |w: &mut Worker, split: bool| {
        let state = sh.state.read();
        crate::simulate::run(
            &view.sim,
            &state,
            &LockedTables(&sh.flowstate),
            &mut w.icmp,
            key,
            frame,
            ingress,
            now,
            generated,
            split,
            &mut w.result,
        );
    };
    simulate(w, split);
    // A split needs a recirculation id. Without one (all 4096 given out,
    // or the datapath refused it) the flow is simulated again unsplit: a
    // split result stored nothing (its reply's lookup only found), so the
    // second run sees the same state and gives the exact flow.
    let mut recirc = None;
    if let Some(s) = w.result.split.as_ref().filter(|_| w.result.decision == Decision::Forward) {
        recirc = recirc_id(sh, w.result.key, s);
        if recirc.is_none() && w.result.nat.iter().all(|n| !n.created) {
            simulate(w, false);
        }
    }
    let r = &mut w.result;
    let mut msg = crate::flowstate::Outgoing::default();
    let mut guard = sh.flowstate.lock();
    let fs = &mut *guard;
    // The egress ports, then the ingress port: what this simulation records
    // is indexed under them, and the message names them.
    let recorded = !r.conntrack.is_empty() || !r.nat.is_empty();
    let mut ports = if recorded { crate::flowstate::egress_ports(&r.actions) } else { Vec::new() };
    ports.push(*ingress.uuid().as_bytes());
    let full = fs.apply(r, &ports, key.tcp_flags, now, &mut msg, &mut out.invalidate);
    // A SNAT block to claim: once, whoever else waits for it; and those
    // the allocation chose to claim before its blocks run out.
    let claim = r.need_block.filter(|b| fs.claim(*b, now));
    let ahead = fs.claims_ahead(now);
    drop(guard);
    if full > 0 {
        sh.metrics.count_drop_n(AgentDrop::ConntrackFull, full);
    }
    if !msg.is_empty() {
        // Only a reply seen (no record) leaves the egress ports uncomputed.
        ports.pop();
        let egress = if recorded { ports } else { crate::flowstate::egress_ports(&r.actions) };
        replicate(sh, view, ingress, &r.actions, egress, msg);
    }
    for block in claim.into_iter().chain(ahead) {
        let _ = sh.commands.send(Command::SnatBlock { block, claim: true });
    }
    let mut resolved: Vec<(RouterId, Ipv4Addr)> = Vec::new();
    if !r.state_writes.is_empty() {
        // An ARP entry known here already, but someone asked: without the
        // cluster, the asker may have lost the entry this host published
        // (the cluster dropped it with this host's session), and nothing
        // else would tell it again.
        let cut_off = sh.metrics.cluster_connected.get() == 0;
        let mut learned = Vec::new();
        let mut again = Vec::new();
        let mut st = sh.state.write();
        for wr in &r.state_writes {
            if apply_write(&mut st, wr) {
                learned.push(*wr);
                if let StateWrite::RouterArp { router, ip, .. } = *wr {
                    resolved.push((router, ip));
                }
            } else if cut_off && matches!(wr, StateWrite::RouterArp { .. }) {
                again.push(*wr);
            }
        }
        drop(st);
        if !learned.is_empty() || !again.is_empty() {
            // To the peers directly (flowstate::learned) ...
            let share: Vec<StateWrite> = learned.iter().chain(&again).copied().collect();
            crate::flowstate::learned::share(sh, view, &share);
        }
        if !learned.is_empty() {
            // ... and what is new here to the cluster.
            for wr in &learned {
                let _ = sh.commands.send(publish(wr));
            }
            let _ = sh.stale.send(learned.iter().map(StateWrite::tag).collect());
        }
    }
    for a in &r.anomalies {
        sh.metrics.sim_anomaly(a.as_str());
    }
    let decision = r.decision;
    let tags: Vec<u64> = r.tags.iter().map(|t| t.0).collect();
    let mut tunnels = false;
    match decision {
        Decision::Forward if r.split.is_some() => {
            sh.metrics.sim("forward");
            let second = translate(sh, view, &r.actions, &mut tunnels);
            // The packet that missed gets the whole list: the restoring
            // rewrites, then the second half's (nothing if that emits
            // nothing).
            if !second.is_drop() {
                let restore = r.split.as_ref().map(|s| s.restore.clone()).unwrap_or_default();
                out.execute = restore;
                for a in second.iter() {
                    out.execute.push(*a);
                }
            }
            let mut tags = tags;
            if tunnels {
                tags.push(TUNNEL_ROUTES_TAG.0);
            }
            // (A split without an id stored a binding, which a second
            // run would not: the packet only, no flow.)
            if let (Some((id, checks_ct)), Some(s)) = (recirc, r.split.as_ref()) {
                let second = FlowInstall {
                    mask: r.mask,
                    actions: second,
                    tags,
                    idle_timeout_ms: sh.flow_idle_ms,
                };
                let mut k2 = s.key;
                k2.in_port = InPort::Port(RECIRC_PORT_BASE + id);
                // A second half that read no conntrack behind a first half
                // that checks it: right for replies the check finds no
                // connection for as well (`crate::recirc`).
                if checks_ct && s.conntrack.is_none() {
                    let mut k3 = s.key;
                    k3.in_port = InPort::Port(RECIRC_PORT_BASE + RECIRC_UNTRACKED + id);
                    out.recirc.push((k3, second.clone()));
                }
                out.recirc.push((k2, second));
                let mut first = Actions::new();
                first.push(Action::RevNatRecirc(id));
                out.install = Some(FlowInstall {
                    mask: s.mask,
                    actions: first,
                    tags: s.tags.iter().map(|t| t.0).collect(),
                    idle_timeout_ms: sh.flow_idle_ms,
                });
                sh.metrics.split_flows.inc();
            }
        }
        Decision::Forward => {
            sh.metrics.sim("forward");
            out.execute = translate(sh, view, &r.actions, &mut tunnels);
            if cacheable && !r.uncacheable {
                let mut tags = tags;
                if tunnels {
                    tags.push(TUNNEL_ROUTES_TAG.0);
                }
                out.install = Some(FlowInstall {
                    mask: r.mask,
                    actions: out.execute.clone(),
                    tags,
                    idle_timeout_ms: sh.flow_idle_ms,
                });
            }
        }
        Decision::Drop { .. } if r.need_block.is_some() => {
            // Waits for the block's claim instead of its retransmission.
            sh.metrics.sim("nat_need_block");
            if let Some(b) = r.need_block {
                let parked = Parked {
                    frame: with_complete_checksum(frame),
                    key: *key,
                    ingress,
                    deadline: Instant::now() + sh.arp_wait,
                };
                if !sh.waiting.lock().park(WaitKey::Block(b), parked) {
                    sh.metrics.count_drop(AgentDrop::WaitingRoomFull);
                }
            }
        }
        Decision::Drop { reason, lifetime } => {
            sh.metrics.sim("drop");
            sh.metrics.sim_drop(reason.as_str());
            tracing::trace!(reason = reason.as_str(), "simulation dropped");
            if cacheable && !r.uncacheable {
                out.install = Some(FlowInstall {
                    mask: r.mask,
                    actions: Actions::new(),
                    tags,
                    idle_timeout_ms: lifetime.timeout().as_millis() as u64,
                });
            }
        }
        Decision::Consumed => sh.metrics.sim("consumed"),
        Decision::ArpPending { router, ip } => {
            sh.metrics.sim("arp_pending");
            let parked = Parked {
                frame: with_complete_checksum(frame),
                key: *key,
                ingress,
                deadline: Instant::now() + sh.arp_wait,
            };
            if sh.waiting.lock().park(WaitKey::Arp(router, ip), parked) {
                sh.metrics.arp_parked.inc();
            } else {
                sh.metrics.count_drop(AgentDrop::WaitingRoomFull);
            }
        }
    }
    // Generated packets: copy out of the reused result before recursing.
    let generated = std::mem::take(&mut r.generated);
    for g in &generated {
        match g.target {
            GenTarget::Emit(p) => {
                let mut t = false;
                let actions = translate(sh, view, &[SimAction::ToPort(p)], &mut t);
                if !actions.as_slice().is_empty() {
                    out.generated.push(GeneratedPacket { actions, frame: g.frame.clone() });
                }
            }
            GenTarget::Ingress(p) if depth < MAX_GEN_DEPTH => {
                let Ok(k) = FlowKey::extract(&g.frame, InPort::Port(0)) else { continue };
                let mut sub = process(sh, view, w, &k, &g.frame, p, depth + 1, false, true);
                out.invalidate.append(&mut sub.invalidate);
                if !sub.execute.as_slice().is_empty() {
                    out.generated
                        .push(GeneratedPacket { actions: sub.execute, frame: g.frame.clone() });
                }
                out.generated.extend(sub.generated);
            }
            GenTarget::Ingress(_) => sh.metrics.count_drop(AgentDrop::SimError),
        }
    }
    // Give the vector (and its capacity) back to the worker.
    w.result.generated = generated;
    w.result.generated.clear();
    for (router, ip) in resolved {
        out.generated.extend(release_parked(sh, view, w, &WaitKey::Arp(router, ip)));
    }
    out
}

/// The host's flow state as the simulation sees it, locked for each
/// question only: simulations on several miss workers run side by side,
/// and only their lookups and NAT allocations take turns. A connection's
/// packets are simulated by one worker in order (`midonet_datapath::workers`),
/// so nothing another worker writes in between can change their answers.
struct LockedTables<'a>(&'a Mutex<FlowState>);

impl TablesPerCall for LockedTables<'_> {
    fn with<R>(&self, f: impl FnOnce(&FlowTablesView<'_>) -> R) -> R {
        let mut g = self.0.lock();
        let fs = &mut *g;
        f(&FlowTablesView::new(&fs.conn, &mut fs.nat, &mut fs.blocks))
    }
}

/// Logs the connections and bindings a simulation recorded or saw change,
/// and sends them to the peers that may see the connection's other packets
/// (see [`crate::flowstate`]), before the packet itself goes.
fn replicate(
    sh: &Shared,
    view: &View,
    ingress: PortId,
    actions: &[SimAction],
    egress_ports: Vec<[u8; 16]>,
    out: crate::flowstate::Outgoing,
) {
    let msg = midonet_wire::flowstate::FlowStateRepr {
        purpose: Default::default(),
        sender: *sh.host_id.uuid().as_bytes(),
        ingress_port: *ingress.uuid().as_bytes(),
        egress_ports,
        port_groups: Vec::new(),
        conntrack: out.conntrack,
        nat: out.nat,
        learned: Vec::new(),
    };
    sh.log_state(crate::flowstate::log::Origin::Here, &msg);
    let Some(rep) = &sh.replicator else { return };
    let peers = crate::flowstate::peers(view, ingress, actions);
    if peers.is_empty() {
        return;
    }
    let failed = rep.send(&msg, &peers);
    sh.metrics.flow_state_sent.inc_by((peers.len() - failed) as u64);
    if failed > 0 {
        sh.metrics.flow_state_rejected_n("send_failed", failed as u64);
    }
}

/// Re-simulates the packets parked on `at` now that it resolved (or was
/// answered); returns them as packets to emit. The tags the connections
/// they started make stale go to the core.
pub fn release_parked(
    sh: &Shared,
    view: &View,
    w: &mut Worker,
    at: &WaitKey,
) -> Vec<GeneratedPacket> {
    let parked = sh.waiting.lock().take(at);
    let mut out = Vec::new();
    for p in parked {
        let o = process(sh, view, w, &p.key, &p.frame, p.ingress, 1, false, false);
        if !o.invalidate.is_empty() {
            let _ = sh.stale.send(o.invalidate.iter().map(|t| Tag(*t)).collect());
        }
        if !o.execute.as_slice().is_empty() {
            out.push(GeneratedPacket { actions: o.execute, frame: p.frame });
        }
        out.extend(o.generated);
    }
    out
}

/// A parked frame as it must leave later: with its TCP/UDP checksum
/// complete. A frame from a local VM may carry only the pseudo-header sum
/// (its virtio-net header said "checksum partial"), and a parked frame is
/// re-sent without that header: left as it is, the receiver drops it and
/// the sender retransmits a second later. Frames that are not IPv4 TCP/UDP,
/// fragments and GSO-sized frames are left alone.
fn with_complete_checksum(frame: &[u8]) -> Vec<u8> {
    use midonet_wire::checksum::{finish, pseudo_header_v4, sum};
    let mut f = frame.to_vec();
    let eth = match u16::from_be_bytes([
        f.get(12).copied().unwrap_or(0),
        f.get(13).copied().unwrap_or(0),
    ]) {
        0x0800 => 14,
        0x8100 if f.get(16..18) == Some(&[0x08, 0x00]) => 18,
        _ => return f,
    };
    let Some(ip) = f.get(eth..eth + 20) else { return f };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    let proto = ip[9];
    let (src, dst) = (
        std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    );
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return f,
    };
    let (l4, end) = (eth + ihl, eth + total);
    if frag != 0 || ihl < 20 || end > f.len() || end <= l4 + at + 1 || total > 9000 {
        return f;
    }
    f[l4 + at] = 0;
    f[l4 + at + 1] = 0;
    let len = (end - l4) as u16;
    let mut c = finish(sum(pseudo_header_v4(src, dst, proto, len), &f[l4..end]));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    f[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// Applies a learned write; false if the tables already said so.
pub(crate) fn apply_write(st: &mut MemState, w: &StateWrite) -> bool {
    let same = match *w {
        StateWrite::Mac { bridge, vlan, mac, port } => {
            st.macs.get(&(bridge, vlan, mac)) == Some(&port)
        }
        StateWrite::RouterArp { router, ip, mac } => st.router_arp.get(&(router, ip)) == Some(&mac),
        StateWrite::BridgeArp { bridge, ip, mac } => st.bridge_arp.get(&(bridge, ip)) == Some(&mac),
    };
    if !same {
        st.apply(w);
    }
    !same
}

fn mac_str(m: midonet_sim::MacAddr) -> String {
    midonet_model::MacAddr(m.0).to_string()
}

fn publish(w: &StateWrite) -> Command {
    match *w {
        StateWrite::Mac { bridge, vlan, mac, port } => Command::Mac {
            bridge: bridge.to_string(),
            vlan,
            mac: mac_str(mac),
            port: Some(port.to_string()),
        },
        StateWrite::RouterArp { router, ip, mac } => {
            Command::Arp { device: router.to_string(), ip: ip.to_string(), mac: Some(mac_str(mac)) }
        }
        StateWrite::BridgeArp { bridge, ip, mac } => {
            Command::Arp { device: bridge.to_string(), ip: ip.to_string(), mac: Some(mac_str(mac)) }
        }
    }
}

/// The recirculation id of a split's first half, told to the datapath
/// when new, and whether the first half checks conntrack; `None` when the
/// ids ran out.
fn recirc_id(sh: &Shared, key: FlowKey, s: &midonet_sim::Split) -> Option<(u32, bool)> {
    let table = sh.rev_nat.get()?;
    let kind = match s.kind {
        midonet_state::NatKind::Snat => RevNatKind::Snat,
        midonet_state::NatKind::Dnat => RevNatKind::Dnat,
        midonet_state::NatKind::StickyDnat => return None,
    };
    let tracker = *s.tracker.0.as_bytes();
    let half = FirstHalf { mask: s.mask, key: s.mask.apply(&key), kind: kind as u8, tracker };
    let mut ids = sh.recirc.lock();
    let (id, new) = ids.get(&half)?;
    if new {
        // (An earlier agent may have left the id checking conntrack.)
        let r =
            table.set_recirc(id, kind, tracker).and_then(|()| table.set_recirc_conntrack(id, None));
        if let Err(e) = r {
            tracing::warn!(error = %e, id, "telling the datapath a recirculation");
            return None;
        }
    }
    if let Some(c) = s.conntrack.filter(|_| !ids.checks_conntrack(id)) {
        if let Err(e) = table.set_recirc_conntrack(id, Some(*c.tracker.0.as_bytes())) {
            tracing::warn!(error = %e, id, "telling the datapath a recirculation reads conntrack");
            return None;
        }
        ids.mark_conntrack(id);
    }
    Some((id, ids.checks_conntrack(id)))
}

/// Virtual actions → datapath actions (see the module docs).
fn translate(sh: &Shared, view: &View, actions: &[SimAction], tunnels: &mut bool) -> Actions {
    let mut out = Actions::new();
    for a in actions {
        match *a {
            SimAction::Rewrite(r) => out.push(r),
            SimAction::ToPort(p) => match view.egress.get(&p) {
                Some(Egress::Local(n)) => out.push(Action::Output(*n)),
                Some(Egress::Remote { dst, key }) => {
                    *tunnels = true;
                    out.push(Action::Tunnel { dst: *dst, key: *key });
                }
                None => {
                    *tunnels = true;
                    sh.metrics.count_drop(AgentDrop::NoTunnelRoute);
                }
            },
        }
    }
    // Rewrites after the last output do nothing; keep the list minimal so
    // an all-unreachable flood becomes a clean drop.
    if !out.as_slice().iter().any(|a| a.is_emit()) {
        return Actions::new();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(deadline: Instant) -> Parked {
        Parked { frame: vec![0; 60], key: FlowKey::default(), ingress: PortId::random(), deadline }
    }

    #[test]
    fn a_parked_frame_leaves_with_a_complete_checksum() {
        use midonet_wire::checksum::{pseudo_header_v4, sum};
        // A TCP SYN, 10.0.0.1:40000 > 10.0.0.2:80, checksum field holding
        // only the pseudo-header sum (what CHECKSUM_PARTIAL leaves).
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let partial = midonet_wire::checksum::fold(pseudo_header_v4(src, dst, 6, 20));
        f[50..52].copy_from_slice(&partial.to_be_bytes());
        let done = with_complete_checksum(&f);
        // A complete checksum sums to all ones with the pseudo-header.
        let total =
            midonet_wire::checksum::fold(sum(pseudo_header_v4(src, dst, 6, 20), &done[34..54]));
        assert_eq!(total, 0xffff, "complete checksum");
        assert_eq!(with_complete_checksum(&done), done, "a complete checksum stays");
        let arp = vec![0u8; 42];
        assert_eq!(with_complete_checksum(&arp), arp, "not IPv4: untouched");
    }

    #[test]
    fn waiting_room_releases_by_entry_expires_by_deadline_and_is_bounded() {
        let mut w = WaitingRoom::default();
        let now = Instant::now();
        let (r, ip) = (RouterId::random(), Ipv4Addr::new(10, 0, 0, 1));
        let other = WaitKey::Arp(r, Ipv4Addr::new(10, 0, 0, 2));
        assert!(w.park(WaitKey::Arp(r, ip), parked(now + Duration::from_secs(5))));
        assert!(w.park(WaitKey::Arp(r, ip), parked(now + Duration::from_secs(5))));
        assert!(w.park(other, parked(now + Duration::from_millis(10))));
        assert_eq!(w.len(), 3);
        assert_eq!(
            w.expire(now + Duration::from_millis(20)),
            (1, vec![other]),
            "only the short wait expired"
        );
        assert_eq!(w.take(&WaitKey::Arp(r, ip)).len(), 2);
        assert!(w.is_empty());
        for _ in 0..WaitingRoom::CAPACITY {
            assert!(w.park(other, parked(now + Duration::from_secs(5))));
        }
        assert!(!w.park(other, parked(now + Duration::from_secs(5))), "full room refuses");
    }
}
