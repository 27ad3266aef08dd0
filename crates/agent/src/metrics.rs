//! Prometheus metrics of the agent (`GET /metrics` on `metrics_listen`).
//!
//! Two kinds of series:
//!
//! * counted here, at the site of the event: misses, simulations (by
//!   result), agent-side drops (by reason), invalidations, topology
//!   updates, session (re)connects;
//! * mirrored from the datapath at scrape time ([`Metrics::observe_dp`]):
//!   installed flows, datapath drops by reason (including `malformed`),
//!   upcalls, tunnel and port counters. The datapath's counters are
//!   monotonic, so mirroring adds the difference since the last scrape to
//!   real counters.
//!
//! Per virtual port (label `port`, the port's id): misses handed to the
//! agent and misses dropped over the port's upcall budget (both mirrored
//! from the datapath, which counts them before the agent sees a packet),
//! and flows installed for it (counted here). `miss_latency_seconds` is the
//! time the agent spends on one miss: simulation, translation and the
//! install decision, not the wait in the datapath's queue.
//!
//! Every drop branch of the agent increments [`Metrics::count_drop`] with a named
//! [`AgentDrop`] reason. What a simulation ignored rather than followed
//! (`midonet_sim::Anomaly`, e.g. a MAC entry naming another bridge's port)
//! is counted in `sim_anomalies`, once per simulation; the packet was not
//! dropped for it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why the agent (not the datapath) dropped a packet.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AgentDrop {
    /// Packet from a datapath port with no bound virtual port.
    UnboundPort,
    /// Tunnel key not bound to a local port.
    UnknownTunnelKey,
    /// The simulation decided to drop (rules, admin down, no route...).
    SimDrop,
    /// The simulation failed (loop guard, malformed state).
    SimError,
    /// Waited for ARP and gave up.
    ArpTimeout,
    /// The ARP waiting room was full.
    WaitingRoomFull,
    /// An output port with no known host/tunnel address.
    NoTunnelRoute,
    /// Topology not received yet.
    NoTopology,
    /// A new connection could not be tracked: the table is full of live,
    /// replied connections (the packet still goes; its reply may not).
    ConntrackFull,
    /// From a port just bound here, while its state is asked of the peers
    /// (a migrated VM's first packets wait for its connections' state).
    StateImport,
}

impl AgentDrop {
    pub const ALL: [AgentDrop; 10] = [
        AgentDrop::UnboundPort,
        AgentDrop::UnknownTunnelKey,
        AgentDrop::SimDrop,
        AgentDrop::SimError,
        AgentDrop::ArpTimeout,
        AgentDrop::WaitingRoomFull,
        AgentDrop::NoTunnelRoute,
        AgentDrop::NoTopology,
        AgentDrop::ConntrackFull,
        AgentDrop::StateImport,
    ];

    /// The metric label (snake_case, like the datapath's and the sim's).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentDrop::UnboundPort => "unbound_port",
            AgentDrop::UnknownTunnelKey => "unknown_tunnel_key",
            AgentDrop::SimDrop => "sim_drop",
            AgentDrop::SimError => "sim_error",
            AgentDrop::ArpTimeout => "arp_timeout",
            AgentDrop::WaitingRoomFull => "waiting_room_full",
            AgentDrop::NoTunnelRoute => "no_tunnel_route",
            AgentDrop::NoTopology => "no_topology",
            AgentDrop::ConntrackFull => "conntrack_full",
            AgentDrop::StateImport => "state_import",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: &'static str,
}

/// A drop reason from the simulation's or the datapath's `Copy` reason
/// enum: a static label, so counting a drop allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
}

/// A virtual port, by id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

/// A phase of a miss through the datapath (`MissTiming`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

/// Which flow table of the datapath served a packet.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// All the agent's series.
pub struct Metrics {
    pub registry: Mutex<Registry>,
    pub misses: Counter,
    pub simulations: Family<ResultLabels, Counter>,
    pub drops: Family<DropLabels, Counter>,
    pub sim_drops: Family<ReasonLabels, Counter>,
    /// Simulations that met something they refused to follow (a MAC entry
    /// naming another device's port), by the simulation's reason.
    pub sim_anomalies: Family<ReasonLabels, Counter>,
    pub invalidated_flows: Counter,
    pub invalidation_tags: Counter,
    pub topology_updates: Counter,
    pub topology_snapshots: Counter,
    pub topology_revision: Gauge,
    pub bound_ports: Gauge,
    pub sessions: Counter,
    /// 1 while a cluster session is up, 0 while the agent runs on its
    /// cached topology.
    pub cluster_connected: Gauge,
    pub arp_parked: Counter,
    /// Flows installed for misses from each port.
    pub port_flow_installs: Family<PortLabels, Counter>,
    /// Seconds the agent spends on one miss.
    pub miss_latency: Histogram,
    /// NATed replies whose flow was split at the reverse rule (the
    /// datapath translates later replies itself; `crate::recirc`).
    pub split_flows: Counter,
    /// Seconds from asking the cluster for a SNAT port block to its answer.
    pub snat_block_claim: Histogram,
    /// 1 for the datapath provider running (`ebpf`, `userspace`, `dummy`).
    pub datapath_provider: Family<ProviderLabels, Gauge>,
    /// Threads simulating misses (0: the datapath's own thread does).
    pub miss_workers: Gauge,
    /// Tracked connections now.
    pub conntrack_entries: Gauge,
    /// Connection-table events: inserted, expired, evicted, insert_failed,
    /// removed, refreshed.
    pub conntrack_events: Family<EventLabels, Counter>,
    /// Flow-state messages sent (one per peer).
    pub flow_state_sent: Counter,
    /// Flow-state messages received and installed.
    pub flow_state_received: Counter,
    /// Fragments of datagrams through NAT (event: recorded, followed,
    /// refused; `crate::fragments`).
    pub fragments: Family<EventLabels, Counter>,
    /// Flow-state messages read by the backstop, not by the receiver
    /// thread (`flowstate::replicator::backstop`).
    pub flow_state_backstop_reads: Counter,
    /// Bindings here replaced by the allocating peer's newer one.
    pub flow_state_bindings_replaced: Counter,
    /// Flow-state messages (or their entries) dropped, by reason.
    pub flow_state_rejected: Family<ReasonLabels, Counter>,
    /// Ports bound here whose state was asked of the peers, by how the
    /// wait ended (event: answered, timed_out).
    pub flow_state_imports: Family<EventLabels, Counter>,
    /// Ports whose state this host sent to the host they were bound to.
    pub flow_state_ports_handed: Counter,
    /// Load balancers whose members this host health-checks now.
    pub lb_checkers: Gauge,
    /// Member health verdicts reported (event: up, down).
    pub lb_member_verdicts: Family<EventLabels, Counter>,
    // Mirrored from the datapath.
    pub dp_flows: Gauge,
    pub dp_drops: Family<ReasonLabels, Counter>,
    pub dp_upcalls: Counter,
    pub dp_hits: Family<TableLabels, Counter>,
    /// Misses that joined one with the same key being simulated (they are
    /// executed with its flow, not simulated again).
    pub dp_misses_joined: Counter,
    /// Time the datapath's misses spent in each phase (eBPF provider), and
    /// how many misses that covers: mean = seconds / misses.
    pub dp_miss_phase_seconds: Family<PhaseLabels, Counter<f64, AtomicU64>>,
    pub dp_misses_timed: Counter,
    pub dp_tunnel_rx_packets: Counter,
    pub dp_tunnel_tx_packets: Counter,
    pub dp_tunnel_offload_resolved: Counter,
    pub dp_tunnel_checksums_completed: Counter,
    pub dp_tcp_fins_merged: Counter,
    pub dp_tunnel_decapsulated: Counter,
    pub dp_tunnel_encapsulated: Counter,
    pub dp_rev_nat_translated: Counter,
    pub dp_rev_nat_missed: Counter,
    pub dp_state_bindings: Counter,
    pub dp_state_rejected: Counter,
    pub dp_ct_missed: Counter,
    pub dp_state_conns: Counter,
    pub dp_port_upcalls: Family<PortLabels, Counter>,
    pub dp_port_upcall_limited: Family<PortLabels, Counter>,
    pub dp_port_upcall_borrowed: Family<PortLabels, Counter>,
    last_dp: Mutex<Option<midonet_datapath::DpStats>>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("midonet_agent")),
            misses: Counter::default(),
            simulations: Family::default(),
            drops: Family::default(),
            sim_drops: Family::default(),
            sim_anomalies: Family::default(),
            invalidated_flows: Counter::default(),
            invalidation_tags: Counter::default(),
            topology_updates: Counter::default(),
            topology_snapshots: Counter::default(),
            topology_revision: Gauge::default(),
            bound_ports: Gauge::default(),
            sessions: Counter::default(),
            cluster_connected: Gauge::default(),
            arp_parked: Counter::default(),
            port_flow_installs: Family::default(),
            // 1 µs to ~0.5 s.
            miss_latency: Histogram::new(exponential_buckets(1e-6, 2.0, 20)),
            // 100 µs to ~3 s.
            snat_block_claim: Histogram::new(exponential_buckets(1e-4, 2.0, 16)),
            datapath_provider: Family::default(),
            miss_workers: Gauge::default(),
            conntrack_entries: Gauge::default(),
            conntrack_events: Family::default(),
            flow_state_sent: Counter::default(),
            flow_state_received: Counter::default(),
            flow_state_backstop_reads: Counter::default(),
            fragments: Family::default(),
            flow_state_bindings_replaced: Counter::default(),
            flow_state_rejected: Family::default(),
            flow_state_imports: Family::default(),
            flow_state_ports_handed: Counter::default(),
            lb_checkers: Gauge::default(),
            lb_member_verdicts: Family::default(),
            dp_flows: Gauge::default(),
            dp_drops: Family::default(),
            dp_upcalls: Counter::default(),
            dp_hits: Family::default(),
            dp_misses_joined: Counter::default(),
            split_flows: Counter::default(),
            dp_miss_phase_seconds: Family::default(),
            dp_misses_timed: Counter::default(),
            dp_tunnel_rx_packets: Counter::default(),
            dp_tunnel_tx_packets: Counter::default(),
            dp_tunnel_offload_resolved: Counter::default(),
            dp_tunnel_checksums_completed: Counter::default(),
            dp_tcp_fins_merged: Counter::default(),
            dp_tunnel_decapsulated: Counter::default(),
            dp_tunnel_encapsulated: Counter::default(),
            dp_rev_nat_translated: Counter::default(),
            dp_rev_nat_missed: Counter::default(),
            dp_state_bindings: Counter::default(),
            dp_state_rejected: Counter::default(),
            dp_ct_missed: Counter::default(),
            dp_state_conns: Counter::default(),
            dp_port_upcalls: Family::default(),
            dp_port_upcall_limited: Family::default(),
            dp_port_upcall_borrowed: Family::default(),
            last_dp: Mutex::new(None),
        };
        // Every anomaly reason shows up, at 0 until one happens.
        for a in midonet_sim::Anomaly::ALL {
            let _ = m.sim_anomalies.get_or_create(&ReasonLabels { reason: a.as_str() });
        }
        {
            let mut r = m.registry.lock();
            r.register("misses", "Packets that matched no flow", m.misses.clone());
            r.register("simulations", "Simulations run, by result", m.simulations.clone());
            r.register("drops", "Packets the agent dropped, by reason", m.drops.clone());
            r.register(
                "sim_drops",
                "Simulation drop decisions, by the simulation's reason",
                m.sim_drops.clone(),
            );
            r.register(
                "sim_anomalies",
                "Simulations that ignored what they read (mac_entry_foreign_port), by reason",
                m.sim_anomalies.clone(),
            );
            r.register(
                "invalidated_flows",
                "Flows removed by tag invalidation",
                m.invalidated_flows.clone(),
            );
            r.register("invalidation_tags", "Tags invalidated", m.invalidation_tags.clone());
            r.register(
                "topology_updates",
                "Topology snapshots and deltas applied",
                m.topology_updates.clone(),
            );
            r.register(
                "topology_snapshots",
                "Full topology snapshots applied (first load and resyncs)",
                m.topology_snapshots.clone(),
            );
            r.register(
                "topology_revision",
                "Store revision of the current snapshot",
                m.topology_revision.clone(),
            );
            r.register(
                "bound_ports",
                "Virtual ports bound to local interfaces",
                m.bound_ports.clone(),
            );
            r.register("sessions", "Cluster sessions opened", m.sessions.clone());
            r.register(
                "cluster_connected",
                "1 while a cluster session is up, 0 while running on the cached topology",
                m.cluster_connected.clone(),
            );
            r.register("arp_parked", "Packets parked waiting for ARP", m.arp_parked.clone());
            r.register(
                "port_flow_installs",
                "Flows installed for misses from a virtual port",
                m.port_flow_installs.clone(),
            );
            r.register(
                "miss_latency_seconds",
                "Time the agent spends on one miss (simulate, translate, decide)",
                m.miss_latency.clone(),
            );
            r.register(
                "snat_block_claim_seconds",
                "Time from asking the cluster for a SNAT port block to its answer",
                m.snat_block_claim.clone(),
            );
            r.register(
                "port_upcalls",
                "Misses from a virtual port handed to the agent",
                m.dp_port_upcalls.clone(),
            );
            r.register(
                "port_upcall_limited",
                "Misses from a virtual port dropped over its upcall budget",
                m.dp_port_upcall_limited.clone(),
            );
            r.register(
                "port_upcall_borrowed",
                "Misses from a virtual port past its upcall budget let through because the agent had room (also in port_upcalls)",
                m.dp_port_upcall_borrowed.clone(),
            );
            r.register(
                "datapath_provider",
                "The datapath provider running (1 for the active one)",
                m.datapath_provider.clone(),
            );
            r.register(
                "miss_workers",
                "Threads simulating misses (0: the datapath's own thread does)",
                m.miss_workers.clone(),
            );
            r.register("flows", "Flows installed in the datapath", m.dp_flows.clone());
            r.register(
                "conntrack_entries",
                "Connections tracked on this host",
                m.conntrack_entries.clone(),
            );
            r.register(
                "conntrack_events",
                "Connection-table events (inserted, expired, evicted, insert_failed, removed, refreshed)",
                m.conntrack_events.clone(),
            );
            r.register(
                "flow_state_sent",
                "Flow-state messages sent to peers (one per peer)",
                m.flow_state_sent.clone(),
            );
            r.register(
                "flow_state_received",
                "Flow-state messages received from peers and installed",
                m.flow_state_received.clone(),
            );
            r.register(
                "nat_fragments",
                "Fragments of datagrams through NAT: recorded (a first fragment's actions kept for the rest of its datagram), followed (a later fragment given them), refused (the table full)",
                m.fragments.clone(),
            );
            r.register(
                "flow_state_backstop_reads",
                "Flow-state messages read by the backstop because the receiver thread, which runs at idle priority, had not read the socket for 50 ms (a host whose CPUs are busy)",
                m.flow_state_backstop_reads.clone(),
            );
            r.register(
                "flow_state_bindings_replaced",
                "NAT bindings held here replaced by the newer one the allocating peer sent",
                m.flow_state_bindings_replaced.clone(),
            );
            r.register(
                "flow_state_rejected",
                "Flow-state messages or entries dropped, by reason (malformed, unknown_peer, own, unknown_kind, refused, learned_refused, send_failed, not_bound_to_sender)",
                m.flow_state_rejected.clone(),
            );
            r.register(
                "flow_state_imports",
                "Ports bound here whose flow state was asked of the peers, by how the wait ended (answered, timed_out)",
                m.flow_state_imports.clone(),
            );
            r.register(
                "flow_state_ports_handed",
                "Ports whose flow state this host sent to the host they were bound to",
                m.flow_state_ports_handed.clone(),
            );
            r.register(
                "lb_checkers",
                "Load balancers whose members this host health-checks",
                m.lb_checkers.clone(),
            );
            r.register(
                "lb_member_verdicts",
                "Member health changes this host's checks reported (up, down)",
                m.lb_member_verdicts.clone(),
            );
            r.register("dp_drops", "Packets the datapath dropped, by reason", m.dp_drops.clone());
            r.register(
                "dp_upcalls",
                "Datapath upcalls (misses sent to the agent)",
                m.dp_upcalls.clone(),
            );
            r.register(
                "dp_hits",
                "Packets forwarded by an installed flow, by the table that found it: exact \
                 (the exact-match cache) or megaflow",
                m.dp_hits.clone(),
            );
            r.register(
                "split_flows",
                "Flows of NATed replies split at the reverse rule: a first half that \
                 reverse-translates from the datapath's table, a second half for the rest",
                m.split_flows.clone(),
            );
            r.register(
                "dp_misses_joined",
                "Misses that waited for the same flow's simulation on a miss worker instead of \
                 simulating again",
                m.dp_misses_joined.clone(),
            );
            r.register(
                "dp_miss_phase_seconds",
                "Wall time of the datapath's misses by phase: ring_wait (kernel to agent), \
                 handle (the simulation, inline misses only), install (invalidations and the \
                 flow), execute (the packet back into the kernel); eBPF provider only",
                m.dp_miss_phase_seconds.clone(),
            );
            r.register(
                "dp_misses_timed",
                "Misses counted in dp_miss_phase_seconds",
                m.dp_misses_timed.clone(),
            );
            r.register(
                "tunnel_rx_packets",
                "VXLAN packets received",
                m.dp_tunnel_rx_packets.clone(),
            );
            r.register("tunnel_tx_packets", "VXLAN packets sent", m.dp_tunnel_tx_packets.clone());
            r.register(
                "tunnel_offload_resolved",
                "Offloaded frames segmented or checksummed here before the tunnel (tunnel_offload off)",
                m.dp_tunnel_offload_resolved.clone(),
            );
            r.register(
                "tunnel_checksums_completed",
                "Plain frames from the tunnel whose partial checksum was completed here",
                m.dp_tunnel_checksums_completed.clone(),
            );
            r.register(
                "tcp_fins_merged",
                "Pure FINs sent inside the data segment before them, received in one batch with it (userspace)",
                m.dp_tcp_fins_merged.clone(),
            );
            r.register(
                "tunnel_decapsulated",
                "Tunnel datagrams the datapath decapsulated itself, without the kernel's vxlan device (ebpf)",
                m.dp_tunnel_decapsulated.clone(),
            );
            r.register(
                "tunnel_encapsulated",
                "Tunnel packets the datapath encapsulated itself, without the kernel's vxlan device (ebpf)",
                m.dp_tunnel_encapsulated.clone(),
            );
            r.register(
                "rev_nat_translated",
                "NATed replies the datapath reverse-translated from its own table and forwarded \
                 by a split flow's second half, without the agent (ebpf)",
                m.dp_rev_nat_translated.clone(),
            );
            r.register(
                "rev_nat_missed",
                "NATed replies a split flow sent to the agent because the datapath's table held \
                 no binding for them (ebpf)",
                m.dp_rev_nat_missed.clone(),
            );
            r.register(
                "state_bindings_preloaded",
                "Bindings the datapath took from peers' flow-state messages as they arrived, \
                 before the agent read them (ebpf)",
                m.dp_state_bindings.clone(),
            );
            r.register(
                "state_messages_not_preloaded",
                "Flow-state datagrams the datapath took no binding from (not from a tunnel peer, \
                 another version, a request, short); the agent still judges each (ebpf)",
                m.dp_state_rejected.clone(),
            );
            r.register(
                "conntrack_missed",
                "Replies of a split flow reading conntrack whose connection the datapath's \
                 conntrack table did not hold: looked up as untracked, a miss unless a second \
                 half reading no conntrack is there (ebpf)",
                m.dp_ct_missed.clone(),
            );
            r.register(
                "state_connections_preloaded",
                "Connections the datapath took from peers' flow-state messages as they arrived, \
                 before the agent read them (ebpf)",
                m.dp_state_conns.clone(),
            );
        }
        Arc::new(m)
    }

    pub fn count_drop(&self, reason: AgentDrop) {
        self.drops.get_or_create(&DropLabels { reason: reason.as_str() }).inc();
    }

    pub fn count_drop_n(&self, reason: AgentDrop, n: usize) {
        self.drops.get_or_create(&DropLabels { reason: reason.as_str() }).inc_by(n as u64);
    }

    /// A NAT fragment `event` (recorded, followed, refused).
    pub fn fragment(&self, event: &'static str) {
        self.fragments.get_or_create(&EventLabels { event }).inc();
    }

    /// A flow-state message dropped for `reason`.
    pub fn flow_state_rejected(&self, reason: &'static str) {
        self.flow_state_rejected_n(reason, 1);
    }

    pub fn flow_state_rejected_n(&self, reason: &'static str, n: u64) {
        self.flow_state_rejected.get_or_create(&ReasonLabels { reason }).inc_by(n);
    }

    /// Entries of an accepted message that were not installed.
    pub fn flow_state_entries_rejected(&self, reason: &'static str, n: u32) {
        self.flow_state_rejected_n(reason, u64::from(n));
    }

    /// Mirror the connection table's counters (deltas since the last call).
    pub fn observe_conntrack(&self, d: &midonet_state::ConnStats, refreshed: u64) {
        self.conntrack_entries.set(d.entries as i64);
        for (event, n) in [
            ("inserted", d.inserted),
            ("expired", d.expired),
            ("evicted", d.evicted),
            ("insert_failed", d.insert_failed),
            ("removed", d.removed),
            ("refreshed", refreshed),
        ] {
            if n > 0 {
                self.conntrack_events.get_or_create(&EventLabels { event }).inc_by(n);
            }
        }
    }

    /// A simulation decided to drop, for `reason` (the sim's label).
    pub fn sim_drop(&self, reason: &'static str) {
        self.count_drop(AgentDrop::SimDrop);
        self.sim_drops.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A simulation worked around an anomaly (the sim's label).
    pub fn sim_anomaly(&self, reason: &'static str) {
        self.sim_anomalies.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn sim(&self, result: &'static str) {
        self.simulations.get_or_create(&ResultLabels { result }).inc();
    }

    /// Mirrors the datapath's counters (see the module docs); `port_of`
    /// names the virtual port bound to a datapath port.
    pub fn observe_dp(
        &self,
        s: &midonet_datapath::DpStats,
        port_of: impl Fn(midonet_datapath::PortNo) -> Option<String>,
    ) {
        let mut last = self.last_dp.lock();
        let prev = last.take().unwrap_or_default();
        for p in &s.ports {
            let before = prev
                .ports
                .iter()
                .find(|q| q.port == p.port && q.name == p.name)
                .map(|q| q.counters)
                .unwrap_or_default();
            let up = p.counters.upcalls.saturating_sub(before.upcalls);
            let lim = p.counters.upcall_limited.saturating_sub(before.upcall_limited);
            let lent = p.counters.upcall_borrowed.saturating_sub(before.upcall_borrowed);
            if up == 0 && lim == 0 {
                continue;
            }
            let Some(port) = port_of(p.port) else { continue };
            let l = PortLabels { port };
            if up > 0 {
                self.dp_port_upcalls.get_or_create(&l).inc_by(up);
            }
            if lim > 0 {
                self.dp_port_upcall_limited.get_or_create(&l).inc_by(lim);
            }
            if lent > 0 {
                self.dp_port_upcall_borrowed.get_or_create(&l).inc_by(lent);
            }
        }
        for (r, n) in s.drops.iter() {
            let d = n.saturating_sub(prev.drops.get(r));
            if d > 0 {
                self.dp_drops.get_or_create(&ReasonLabels { reason: r.as_str() }).inc_by(d);
            }
        }
        self.dp_upcalls.inc_by(s.upcalls.saturating_sub(prev.upcalls));
        for (table, now, before) in [
            ("exact", s.table.emc_hits, prev.table.emc_hits),
            ("megaflow", s.table.megaflow_hits, prev.table.megaflow_hits),
        ] {
            self.dp_hits.get_or_create(&TableLabels { table }).inc_by(now.saturating_sub(before));
        }
        self.dp_misses_joined.inc_by(s.workers.joined.saturating_sub(prev.workers.joined));
        let (t, pt) = (&s.miss_timing, &prev.miss_timing);
        self.dp_misses_timed.inc_by(t.misses.saturating_sub(pt.misses));
        for (phase, now, before) in [
            ("ring_wait", t.ring_wait_ns, pt.ring_wait_ns),
            ("handle", t.handle_ns, pt.handle_ns),
            ("install", t.install_ns, pt.install_ns),
            ("execute", t.execute_ns, pt.execute_ns),
        ] {
            let d = now.saturating_sub(before);
            if d > 0 {
                self.dp_miss_phase_seconds
                    .get_or_create(&PhaseLabels { phase })
                    .inc_by(d as f64 / 1e9);
            }
        }
        self.dp_tunnel_rx_packets
            .inc_by(s.tunnel.rx_packets.saturating_sub(prev.tunnel.rx_packets));
        self.dp_tunnel_tx_packets
            .inc_by(s.tunnel.tx_packets.saturating_sub(prev.tunnel.tx_packets));
        self.dp_tunnel_offload_resolved
            .inc_by(s.tunnel_offload_resolved.saturating_sub(prev.tunnel_offload_resolved));
        self.dp_tunnel_checksums_completed
            .inc_by(s.tunnel_checksums_completed.saturating_sub(prev.tunnel_checksums_completed));
        self.dp_tcp_fins_merged.inc_by(s.tcp_fins_merged.saturating_sub(prev.tcp_fins_merged));
        self.dp_tunnel_decapsulated
            .inc_by(s.tunnel_decapsulated.saturating_sub(prev.tunnel_decapsulated));
        self.dp_tunnel_encapsulated
            .inc_by(s.tunnel_encapsulated.saturating_sub(prev.tunnel_encapsulated));
        self.dp_rev_nat_translated.inc_by(s.rev_nat_hits.saturating_sub(prev.rev_nat_hits));
        self.dp_rev_nat_missed.inc_by(s.rev_nat_misses.saturating_sub(prev.rev_nat_misses));
        self.dp_state_bindings.inc_by(s.state_bindings.saturating_sub(prev.state_bindings));
        self.dp_ct_missed.inc_by(s.ct_misses.saturating_sub(prev.ct_misses));
        self.dp_state_conns.inc_by(s.state_conns.saturating_sub(prev.state_conns));
        self.dp_state_rejected.inc_by(s.state_rejected.saturating_sub(prev.state_rejected));
        self.dp_flows.set(i64::try_from(s.table.flows).unwrap_or(i64::MAX));
        *last = Some(s.clone());
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock();
        if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared drop reason has a counting site outside this file
    /// (every drop is counted, by reason).
    #[test]
    fn every_agent_drop_reason_is_counted_somewhere() {
        let sources =
            [include_str!("handler.rs"), include_str!("tasks.rs"), include_str!("metrics.rs")];
        for r in AgentDrop::ALL {
            let name = format!("AgentDrop::{r:?}");
            let sites: usize = sources[..2].iter().map(|s| s.matches(&name).count()).sum();
            // SimDrop is counted through `sim_drop`, here.
            let here = sources[2].contains("self.count_drop(AgentDrop::SimDrop)")
                && r == AgentDrop::SimDrop;
            assert!(sites > 0 || here, "{name} is declared but never counted");
        }
    }

    /// Every series declared in [`Metrics`] is updated somewhere in the
    /// crate (Firecracker's habit): a metric nobody increments reads as
    /// "nothing happened" forever, which is worse than no metric.
    #[test]
    fn every_declared_metric_has_an_update_site() {
        let decl = include_str!("metrics.rs");
        let body = decl
            .split_once("pub struct Metrics {")
            .and_then(|(_, rest)| rest.split_once("\n}"))
            .map(|(body, _)| body)
            .expect("struct Metrics in metrics.rs");
        let fields: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub "))
            .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
            .filter(|name| *name != "registry")
            .collect();
        assert!(fields.len() > 10, "parsed too few fields: {fields:?}");
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut sources = String::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read a source directory") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read source");
                    // Only code before the unit tests counts as an update site.
                    sources.push_str(text.split("#[cfg(test)]").next().unwrap_or(""));
                }
            }
        }
        // Whitespace out, so a call split over lines by rustfmt still matches.
        let sources: String = sources.chars().filter(|c| !c.is_whitespace()).collect();
        for f in fields {
            let updated = [".inc()", ".inc_by(", ".set(", ".get_or_create(", ".observe("]
                .iter()
                .any(|op| sources.contains(&format!(".{f}{op}")));
            assert!(updated, "metric field `{f}` is declared but never updated");
        }
    }

    #[test]
    fn drops_and_mirrored_counters_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.count_drop(AgentDrop::SimDrop);
        m.misses.inc();
        let mut s = midonet_datapath::DpStats::default();
        s.drops.add(midonet_datapath::DropReason::Malformed, 3);
        s.upcalls = 5;
        s.table.emc_hits = 9;
        s.ports.push(midonet_datapath::PortStats {
            port: 3,
            name: "vm1".into(),
            counters: midonet_datapath::PortCounters {
                upcalls: 4,
                upcall_limited: 7,
                ..Default::default()
            },
        });
        let port_of = |n| (n == 3).then(|| "p-vm1".to_owned());
        m.observe_dp(&s, port_of);
        s.drops.add(midonet_datapath::DropReason::Malformed, 2);
        s.ports[0].counters.upcall_limited += 1;
        m.observe_dp(&s, port_of);
        m.miss_latency.observe(3e-6);
        let text = m.encode();
        assert!(text.contains("midonet_agent_drops_total{reason=\"sim_drop\"} 1"), "{text}");
        assert!(text.contains("midonet_agent_dp_drops_total{reason=\"malformed\"} 5"), "{text}");
        assert!(text.contains("midonet_agent_dp_upcalls_total 5"), "{text}");
        assert!(text.contains("midonet_agent_dp_hits_total{table=\"exact\"} 9"), "{text}");
        assert!(text.contains("midonet_agent_port_upcalls_total{port=\"p-vm1\"} 4"), "{text}");
        assert!(
            text.contains("midonet_agent_port_upcall_limited_total{port=\"p-vm1\"} 8"),
            "{text}"
        );
        assert!(text.contains("midonet_agent_miss_latency_seconds_count 1"), "{text}");
        assert!(
            text.contains("midonet_agent_sim_anomalies_total{reason=\"mac_entry_foreign_port\"} 0"),
            "registered before the first one: {text}"
        );
    }
}
