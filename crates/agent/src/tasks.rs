//! The agent's tasks, how they start, talk and stop.
//!
//! ```text
//! start(cfg)
//!   ├─ host id (file), metrics registry, Shared (view, state tables, waiting room)
//!   ├─ datapath (userspace thread | dummy) with the miss Handler
//!   ├─ scanner::run ────────── interfaces ──┐
//!   ├─ session::run ── Snapshot/Delta ──────┼─> core loop ─ view swap ─ invalidate tags ─ bind vports
//!   │        ^ commands (port active, MAC/ARP, interfaces) ─┘      ^ stale tags from the handler
//!   ├─ metrics HTTP server (GET /metrics)                          └ 1 s tick: ARP waits, dp stats
//!   └─ stop: session withdraws active ports, tasks end, datapath thread joined
//! ```
//!
//! The core loop is the only writer of the view and of the datapath's
//! vports, tunnel keys and invalidations; everything else sends it
//! messages. That keeps the ordering argument simple: a new view is stored
//! before the flows it makes stale are invalidated, and the datapath runs
//! the invalidation between packet batches, so no flow simulated against the
//! old view survives it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_datapath::{Datapath, FlowId, PortNo, TunnelOffload};
use midonet_flow::key::tcp_flags;
use midonet_model::PortId;
use midonet_sim::{Snapshot, Tag};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::cache::{Applied, Cache};
use crate::config::{Config, DatapathKind};
use crate::error::AgentError;
use crate::flowstate::log::StateLog;
use crate::flowstate::{FlowState, Replicator};
use crate::handler::{self, Egress, Handler, Shared, View, WaitingRoom, Worker};
use crate::metrics::{AgentDrop, Metrics};
use crate::scanner::{self, Interface};
use crate::session::{self, error_chain, Command, SessionCfg, Update};

/// Which datapath to drive.
pub enum DpChoice {
    /// What `cfg.datapath` says.
    FromConfig,
    /// A dummy datapath the caller keeps a handle on (tests).
    Dummy(Arc<midonet_datapath::dummy::DummyDatapath>),
}

/// How [`start`] gets its inputs; the default is the real thing.
pub struct StartOptions {
    pub dp: DpChoice,
    /// Interface lists from the caller instead of the scanner. Tests with
    /// the dummy datapath use it: the dummy has no real links to scan.
    pub interfaces: Option<mpsc::Receiver<Vec<Interface>>>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { dp: DpChoice::FromConfig, interfaces: None }
    }
}

/// A running agent. [`Agent::stop`] (or drop) ends it.
pub struct Agent {
    pub host_id: midonet_model::HostId,
    pub shared: Arc<Shared>,
    pub dp: Arc<dyn Datapath>,
    pub metrics: Arc<Metrics>,
    /// Address the metrics server listens on, if any.
    pub metrics_addr: Option<std::net::SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Agent {
    /// Stops every task and waits for them (the session withdraws this
    /// host's active ports first).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(deadline);
        let t0 = Instant::now();
        loop {
            tokio::select! {
                r = self.tasks.join_next() => match r {
                    None => break,
                    Some(_) => tracing::debug!(left = self.tasks.len(), ms = t0.elapsed().as_millis() as u64, "task ended"),
                },
                _ = &mut deadline => {
                    tracing::warn!(left = self.tasks.len(), "tasks did not stop in time; aborting them");
                    self.tasks.abort_all();
                    break
                }
            }
        }
    }

    /// The current view (for tests and diagnostics).
    pub fn view(&self) -> Arc<View> {
        self.shared.view.load_full()
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let agent = start(cfg, StartOptions::default()).await?;
    shutdown.await;
    tracing::info!("stopping");
    agent.stop().await;
    Ok(())
}

/// Starts every task and returns once they run.
pub async fn start(cfg: Config, opts: StartOptions) -> Result<Agent, AgentError> {
    let StartOptions { dp: dp_choice, interfaces: injected } = opts;
    cfg.check()?;
    let cred_path = cfg.credential_path();
    let credential = crate::host_id::load_credential(&cred_path)?;
    let host_id = crate::host_id::resolve(&cfg.host_id_file, credential.as_ref())?;
    if credential.is_none() {
        tracing::warn!(file = %cred_path.display(), "no host credential: only a cluster with [agents] credentials = false accepts this agent (`midonet host enroll` makes one)");
    }
    let tls = if cfg.cluster_ca.is_empty() {
        None
    } else {
        let c = midonet_proto::tls::client_config(std::path::Path::new(&cfg.cluster_ca))
            .map_err(|e| AgentError::Config(error_chain(&e)))?;
        Some(c)
    };
    let metrics = Metrics::new();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel::<Command>();
    let (stale_tx, stale_rx) = mpsc::unbounded_channel::<Vec<Tag>>();
    let (upd_tx, upd_rx) = mpsc::channel::<Update>(1024);
    let (if_tx, scanned_rx) = mpsc::channel::<Vec<Interface>>(16);
    let scan = injected.is_none();
    let if_rx = injected.unwrap_or(scanned_rx);
    let (stop_tx, stop_rx) = watch::channel(false);

    // The flow state of the previous run, if any, before any packet.
    let epoch = Instant::now();
    let mut flowstate = FlowState::new(cfg.conntrack_max_entries, random_seed());
    let mut reclaim = Vec::new();
    let state_log = match cfg.flow_state_path() {
        None => None,
        Some(path) => {
            let (mut log, replayed) = StateLog::open(&path).map_err(|e| AgentError::Io {
                what: format!("opening the flow-state log {}", path.display()),
                source: e,
            })?;
            let now = epoch.elapsed();
            reclaim = flowstate.replay(&replayed.records, now);
            let snap = flowstate.snapshot(now);
            log.rewrite(snap.iter().map(|(o, m)| (*o, m))).map_err(|e| AgentError::Io {
                what: format!("rewriting the flow-state log {}", path.display()),
                source: e,
            })?;
            tracing::info!(
                path = %path.display(),
                records = replayed.records.len(),
                torn_bytes = replayed.torn_bytes,
                connections = flowstate.conn.len(),
                bindings = flowstate.nat.len(),
                snat_blocks = reclaim.len(),
                "flow state restored"
            );
            Some(Mutex::new(log))
        }
    };
    let state_log_on = state_log.is_some();
    // Blocks our restored bindings use are ours again in the store (the
    // cluster gives a block back to the host that held it).
    for block in reclaim {
        let _ = cmd_tx.send(Command::SnatBlock { block, claim: true });
    }
    let shared = Arc::new(Shared {
        host_id,
        view: arc_swap::ArcSwap::from_pointee(View::empty()),
        state: Arc::new(RwLock::new(midonet_sim::MemState::default())),
        waiting: Mutex::new(WaitingRoom::default()),
        metrics: metrics.clone(),
        commands: cmd_tx.clone(),
        stale: stale_tx,
        flow_idle_ms: cfg.flow_idle_ms,
        arp_wait: Duration::from_millis(cfg.arp_wait_ms),
        epoch,
        flowstate: Mutex::new(flowstate),
        state_log,
        pending_stale: Mutex::new(Vec::new()),
        migrations: Default::default(),
        rev_nat: Default::default(),
        recirc: Default::default(),
        fragments: Default::default(),
        replicator: match cfg.flow_state_port {
            0 => None,
            port => Some(Replicator::bind(cfg.tunnel_bind, port).map_err(|e| AgentError::Io {
                what: format!("binding the flow-state socket {}:{port}", cfg.tunnel_bind),
                source: e,
            })?),
        },
    });
    let rx_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = match &shared.replicator {
        Some(_) => {
            Some(Replicator::spawn_receiver(shared.clone(), rx_stop.clone()).map_err(|e| {
                AgentError::Io { what: "starting the flow-state receiver".into(), source: e }
            })?)
        }
        None => None,
    };
    let Started { dp, provider, kept_ports } = start_datapath(&cfg, dp_choice, &shared)?;
    if cfg.kernel_rev_nat {
        use_rev_nat(&shared, &*dp);
    }
    // Ports the previous agent on this host had, whose state this agent has
    // from its own flow-state log: they need no import from the peers.
    let kept_ports: HashSet<(String, u32)> =
        if state_log_on { kept_ports.into_iter().collect() } else { HashSet::new() };
    // The kernel datapath outlives the agent: on stop its vports and
    // flows stay so established traffic keeps flowing into the next agent.
    let keep_datapath = provider == "ebpf";
    metrics.datapath_provider.get_or_create(&crate::metrics::ProviderLabels { provider }).set(1);
    if provider != "dummy" {
        metrics.miss_workers.set(i64::try_from(cfg.miss_workers).unwrap_or(i64::MAX));
    }

    let mut tasks = JoinSet::new();
    if shared.replicator.is_some() {
        tasks.spawn(crate::flowstate::replicator::backstop(shared.clone(), stop_rx.clone()));
    }
    let metrics_addr = if cfg.metrics_listen.is_empty() {
        None
    } else {
        let addr: std::net::SocketAddr =
            cfg.metrics_listen.parse().map_err(|_| AgentError::Config("metrics_listen".into()))?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(AgentError::Metrics)?;
        let local = listener.local_addr().map_err(AgentError::Metrics)?;
        tasks.spawn(http::serve(listener, shared.clone(), dp.clone(), provider, stop_rx.clone()));
        Some(local)
    };

    let first = tokio::task::spawn_blocking(scanner::scan).await.unwrap_or_default();
    let addresses: Vec<String> =
        first.iter().filter(|i| i.name != "lo").flat_map(|i| i.addresses.iter().cloned()).collect();
    let host_name = if cfg.host_name.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    } else {
        cfg.host_name.clone()
    };
    let applied = Arc::new(AtomicI64::new(0));
    let scfg = SessionCfg {
        host_id,
        host_name,
        addresses,
        uris: cfg.cluster_uris(),
        ttl_secs: cfg.session_ttl_secs,
        datapath: provider,
        credential,
        tls,
    };
    tracing::info!(%host_id, cluster = ?cfg.cluster, datapath = provider, "agent starting");
    tasks.spawn(session::run(
        scfg,
        applied.clone(),
        cmd_rx,
        upd_tx,
        metrics.clone(),
        stop_rx.clone(),
    ));
    if scan {
        tasks.spawn(scanner_task(
            Duration::from_millis(cfg.scan_interval_ms),
            if_tx,
            stop_rx.clone(),
        ));
    }
    let refresh = Duration::from_millis(cfg.conntrack_refresh_ms);
    let mut core = Core::new(shared.clone(), dp.clone(), cmd_tx, applied, keep_datapath, refresh);
    core.kept_ports = kept_ports;
    if cfg.tunnel_offload.is_none() {
        core.offload_peers = Some(crate::tunnel::OffloadPeers::default());
    }
    tasks.spawn(core.run(upd_rx, if_rx, stale_rx, stop_rx.clone()));
    if let Some(rx) = receiver {
        // The receiver thread polls its flag every 200 ms.
        let mut stop = stop_rx;
        tasks.spawn(async move {
            let _ = stop.changed().await;
            rx_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(move || rx.join()).await;
        });
    }
    Ok(Agent { host_id, shared, dp, metrics, metrics_addr, stop: stop_tx, tasks })
}

/// Replies to NATed connections get split flows from now on, if the
/// datapath has a reverse-NAT table (`crate::recirc`, `flowstate::kernel`):
/// the table gets every binding held, the flow-state socket's filter, and
/// the recirculation ids the adopted flows use are kept from new ones.
fn use_rev_nat(shared: &Shared, dp: &dyn Datapath) {
    let Some(table) = dp.rev_nat() else { return };
    if let Some(r) = &shared.replicator {
        if let Err(e) = table.attach_state_socket(r.raw_fd()) {
            // Replies then wait for the agent to read the binding: slower,
            // not wrong.
            tracing::warn!(error = %e, "attaching the reverse-NAT filter to the flow-state socket");
        }
    }
    if let Ok(flows) = dp.dump_flows() {
        let mut ids = shared.recirc.lock();
        for f in &flows {
            if let midonet_datapath::InPort::Port(p) = f.masked_key.in_port {
                if p >= midonet_datapath::RECIRC_PORT_BASE {
                    // (Tracked or untracked: the same id.)
                    ids.reserve(
                        (p - midonet_datapath::RECIRC_PORT_BASE) % midonet_datapath::RECIRC_MAX,
                    );
                }
            }
            for a in f.actions.iter() {
                if let midonet_datapath::Action::RevNatRecirc(id) = a {
                    ids.reserve(*id);
                }
            }
        }
    }
    shared.flowstate.lock().set_rev_nat(table.clone(), shared.epoch.elapsed());
    let _ = shared.rev_nat.set(table);
    tracing::info!("NATed replies are reverse-translated by the datapath");
}

/// The datapath the configuration asks for, and the provider that runs:
/// `ebpf` falls back to `userspace`, saying why in one log line.
/// The provider that runs, and what it kept of the previous agent's.
struct Started {
    dp: Arc<dyn Datapath>,
    provider: &'static str,
    /// Interfaces (name, ifindex) that were ports of the previous agent
    /// (ebpf only).
    kept_ports: Vec<(String, u32)>,
}

fn start_datapath(
    cfg: &Config,
    choice: DpChoice,
    shared: &Arc<Shared>,
) -> Result<Started, AgentError> {
    let handler = Box::new(Handler::new(shared.clone()));
    let mut kept_ports = Vec::new();
    // One handler per miss worker; the inline one stays for when none run.
    let workers = || -> Vec<Box<dyn midonet_datapath::UpcallHandler>> {
        (0..cfg.miss_workers)
            .map(|_| {
                Box::new(Handler::new(shared.clone())) as Box<dyn midonet_datapath::UpcallHandler>
            })
            .collect()
    };
    // Unset, offloads cross the tunnel only to the peers that registered a
    // datapath that reads them (`tunnel::OffloadPeers`); until the first
    // push, to none (ARCHITECTURE.md §9.10).
    let userspace = |handler: Box<Handler>| {
        let tunnel_offload = match cfg.tunnel_offload {
            None => TunnelOffload::Peers(Default::default()),
            Some(true) => TunnelOffload::Always,
            Some(false) => TunnelOffload::Never,
        };
        let to = match tunnel_offload {
            TunnelOffload::Peers(_) => "peers that registered a userspace datapath",
            TunnelOffload::Always => "every peer",
            TunnelOffload::Never => "no peer",
        };
        tracing::info!("userspace datapath: offload metadata across the tunnel to {to}");
        let ucfg = midonet_datapath::userspace::UserspaceConfig {
            name: "midonet-dp".into(),
            netns: None,
            underlay_ip: Some(cfg.tunnel_bind),
            vxlan_port: cfg.tunnel_port,
            limits: cfg.upcall_limits(),
            tunnel_offload,
            spin_us: cfg.userspace_spin_us,
            batch: cfg.userspace_batch,
            rt_priority: (cfg.userspace_rt_priority > 0).then_some(cfg.userspace_rt_priority),
            merge_fins: cfg.userspace_merge_fins,
            ..Default::default()
        };
        let d = midonet_datapath::userspace::UserspaceDatapath::start(ucfg, Some(handler))
            .map_err(AgentError::Datapath)?;
        d.set_miss_workers(workers()).map_err(AgentError::Datapath)?;
        Ok::<_, AgentError>((Arc::new(d) as Arc<dyn Datapath>, "userspace"))
    };
    let (dp, provider) = match (choice, cfg.datapath) {
        (DpChoice::Dummy(d), _) => {
            d.set_handler(Some(handler));
            (d as Arc<dyn Datapath>, "dummy")
        }
        (DpChoice::FromConfig, DatapathKind::Dummy) => (
            Arc::new(midonet_datapath::dummy::DummyDatapath::new(Some(handler)))
                as Arc<dyn Datapath>,
            "dummy",
        ),
        (DpChoice::FromConfig, DatapathKind::Userspace) => userspace(handler)?,
        (DpChoice::FromConfig, DatapathKind::Ebpf) => {
            let ecfg = midonet_datapath::ebpf::EbpfConfig {
                name: "midonet-dp".into(),
                underlay_ip: Some(cfg.tunnel_bind).filter(|a| !a.is_unspecified()),
                vxlan_port: cfg.tunnel_port,
                limits: cfg.upcall_limits(),
                exact_cache: cfg.ebpf_exact_cache,
                tunnel_decap: cfg.ebpf_tunnel_decap,
                tunnel_encap: cfg.ebpf_tunnel_encap,
                ..Default::default()
            };
            // Started without the handler, so it is still ours to give the
            // fallback if the kernel datapath cannot load.
            match midonet_datapath::ebpf::EbpfDatapath::start(ecfg, None) {
                Ok(d) => {
                    d.set_handler(Some(handler)).map_err(AgentError::Datapath)?;
                    d.set_miss_workers(workers()).map_err(AgentError::Datapath)?;
                    if d.adopted() {
                        tracing::info!("ebpf datapath: kept the flows of the previous agent");
                    }
                    kept_ports = d.adopted_ports().to_vec();
                    (Arc::new(d) as Arc<dyn Datapath>, "ebpf")
                }
                Err(e) => {
                    tracing::warn!(
                        reason = %error_chain(&e),
                        "the ebpf datapath cannot run here; falling back to the userspace datapath"
                    );
                    userspace(handler)?
                }
            }
        }
    };
    tracing::info!(provider, miss_workers = cfg.miss_workers, "datapath provider active");
    Ok(Started { dp, provider, kept_ports })
}

async fn scanner_task(
    interval: Duration,
    tx: mpsc::Sender<Vec<Interface>>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = scanner::run(interval, tx) => {}
        _ = stop.changed() => {}
    }
}

/// A random hash seed for the connection table: its keys come from guests.
fn random_seed() -> u64 {
    let u = uuid::Uuid::new_v4().as_u64_pair();
    u.0 ^ u.1
}

/// Updates the core applies at most before it builds a view and looks at
/// its other inputs again.
const MAX_UPDATE_BATCH: usize = 256;

/// How long a failed ARP resolution is remembered (MidoNet's ARP retry
/// interval, as MidoNet's agent does).
const ARP_FAILED_HOLD: Duration = Duration::from_secs(10);

/// A virtual port bound to a local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    dp_port: PortNo,
    ifname: String,
    ifindex: u32,
    tunnel_key: u32,
}

struct Core {
    shared: Arc<Shared>,
    dp: Arc<dyn Datapath>,
    cache: Cache,
    interfaces: BTreeMap<String, Interface>,
    bound: BTreeMap<PortId, Bound>,
    commands: mpsc::UnboundedSender<Command>,
    applied: Arc<AtomicI64>,
    worker: Worker,
    /// Router ARP entries marked failed, and since when.
    arp_failed_at: HashMap<(midonet_model::RouterId, std::net::Ipv4Addr), Instant>,
    /// Leave vports and tunnel keys in place on stop (the ebpf datapath
    /// keeps forwarding for the next agent, which adopts them).
    keep_datapath: bool,
    /// How often flow activity refreshes connections, and when it last did.
    refresh: Duration,
    refreshed_at: Instant,
    /// When idle SNAT blocks were last looked for.
    blocks_checked_at: Instant,
    /// Flows whose FIN/RST closed state already: the flags acted on, and
    /// the flow's age then (an id reused by a younger flow starts afresh).
    closed_flows: HashMap<FlowId, (u16, u64)>,
    /// Load-balancer health checks run from this host.
    health: crate::health::Manager,
    verdicts: Option<mpsc::UnboundedReceiver<crate::health::Verdict>>,
    /// Interfaces that were ports of the previous agent on this host (the
    /// kernel datapath kept them, with their flows, through the restart)
    /// while the flow-state log carried their state across it: bound again
    /// without gating them for an import from the peers.
    kept_ports: HashSet<(String, u32)>,
    /// The tunnel peers that get offload metadata, when the configuration
    /// leaves it to the peers' datapaths (`tunnel_offload` unset).
    offload_peers: Option<crate::tunnel::OffloadPeers>,
}

impl Core {
    fn new(
        shared: Arc<Shared>,
        dp: Arc<dyn Datapath>,
        commands: mpsc::UnboundedSender<Command>,
        applied: Arc<AtomicI64>,
        keep_datapath: bool,
        refresh: Duration,
    ) -> Core {
        let host_id = shared.host_id;
        let (verdict_tx, verdict_rx) = mpsc::unbounded_channel();
        Core {
            cache: Cache::new(shared.state.clone()),
            shared,
            dp,
            interfaces: BTreeMap::new(),
            bound: BTreeMap::new(),
            kept_ports: HashSet::new(),
            offload_peers: None,
            commands,
            applied,
            worker: Worker::default(),
            arp_failed_at: HashMap::new(),
            keep_datapath,
            refresh,
            refreshed_at: Instant::now(),
            blocks_checked_at: Instant::now(),
            closed_flows: HashMap::new(),
            health: crate::health::Manager::new(host_id, verdict_tx),
            verdicts: Some(verdict_rx),
        }
    }

    async fn run(
        mut self,
        mut updates: mpsc::Receiver<Update>,
        mut ifaces: mpsc::Receiver<Vec<Interface>>,
        mut stale: mpsc::UnboundedReceiver<Vec<Tag>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ask_again = tokio::time::interval(crate::flowstate::migrate::ASK_AGAIN);
        ask_again.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shared = self.shared.clone();
        let mut verdicts = self.verdicts.take().expect("run once");
        loop {
            tokio::select! {
                _ = shared.migrations.asked.notified() => self.answer_state_requests(),
                _ = ask_again.tick(), if shared.migrations.pending() => self.import_tick(),
                v = verdicts.recv() => if let Some(v) = v {
                    let event = if v.up { "up" } else { "down" };
                    self.shared
                        .metrics
                        .lb_member_verdicts
                        .get_or_create(&crate::metrics::EventLabels { event })
                        .inc();
                    let c = Command::MemberStatus { lb: v.lb, member: v.member, up: v.up };
                    let _ = self.commands.send(c);
                },
                _ = stop.changed() => break,
                u = updates.recv() => match u {
                    Some(u) => {
                        // Whatever else is queued already goes with it.
                        let mut batch = vec![u];
                        while batch.len() < MAX_UPDATE_BATCH {
                            match updates.try_recv() {
                                Ok(u) => batch.push(u),
                                Err(_) => break,
                            }
                        }
                        self.on_updates(batch);
                    }
                    None => break,
                },
                l = ifaces.recv() => match l {
                    Some(l) => self.on_interfaces(l),
                    None => break,
                },
                t = stale.recv() => if let Some(mut tags) = t {
                    while let Ok(more) = stale.try_recv() {
                        tags.extend(more);
                    }
                    self.invalidate(tags);
                    self.release_resolved();
                },
                _ = tick.tick() => self.housekeeping(),
            }
        }
        if self.keep_datapath {
            return;
        }
        // Unbind everything so a restart starts from a clean datapath.
        for (_, b) in std::mem::take(&mut self.bound) {
            let _ = self.dp.unbind_tunnel_key(b.tunnel_key);
            let _ = self.dp.remove_vport(b.dp_port);
        }
    }

    /// Applies a burst of updates in order, building the simulation's view
    /// once for a run of topology changes rather than once per change: at
    /// 100k ports a build takes ~150 ms, and a burst of API writes would
    /// otherwise cost one build each and leave the agent behind. Every
    /// change's tags are taken against the view the installed flows were
    /// simulated with, as before. Other updates (SNAT block answers, health
    /// check placement) first finish the run before them, so they act on
    /// the topology that preceded them.
    pub(crate) fn on_updates(&mut self, batch: Vec<Update>) {
        let mut run: Option<TopologyRun> = None;
        for u in batch {
            match u {
                Update::Connected { session, address } => {
                    tracing::debug!(session, %address, "session up");
                }
                Update::Snapshot(s) => {
                    let r = run.get_or_insert_with(|| self.start_run());
                    tracing::info!(revision = s.revision, keys = s.kvs.len(), "topology snapshot");
                    self.shared.metrics.topology_snapshots.inc();
                    r.snapshot = true;
                    let a = self.cache.apply_snapshot(s, &r.old.sim);
                    r.add(a);
                }
                Update::Delta(d) => {
                    let r = run.get_or_insert_with(|| self.start_run());
                    if let Some(a) = self.cache.apply_delta(d, &r.old.sim) {
                        r.add(a);
                    }
                }
                Update::SnatBlock { block, granted } => {
                    if let Some(r) = run.take() {
                        self.finish_run(r);
                    }
                    self.on_snat_block(block, granted);
                }
                Update::HealthCheck { lb, place } => {
                    if let Some(r) = run.take() {
                        self.finish_run(r);
                    }
                    for c in self.health.claimed(lb, place, &self.cache.topology) {
                        let _ = self.commands.send(c);
                    }
                }
            }
        }
        if let Some(r) = run {
            self.finish_run(r);
        }
    }

    fn start_run(&self) -> TopologyRun {
        TopologyRun {
            t0: Instant::now(),
            old: self.shared.view.load_full(),
            applied: Applied::default(),
            snapshot: false,
            updates: 0,
        }
    }

    /// Publishes what a run of topology updates changed: a new view when
    /// the topology or the bindings changed, then the invalidations.
    fn finish_run(&mut self, run: TopologyRun) {
        let TopologyRun { t0, old, applied, snapshot, updates } = run;
        if updates == 0 {
            return;
        }
        if !applied.snat_blocks.is_empty() {
            let me = self.shared.host_id;
            let mut fs = self.shared.flowstate.lock();
            for (b, holder) in &applied.snat_blocks {
                fs.blocks.held_elsewhere(*b, holder.is_some_and(|h| h != me));
            }
        }
        self.shared.metrics.topology_updates.inc_by(updates);
        let mut tags = applied.tags;
        let bindings = self.reconcile();
        // State-only deltas (learned MACs/ARPs, liveness) change neither the
        // snapshot nor the port maps: keep the view, only invalidate.
        if applied.topology_changed || !bindings.is_empty() {
            let sim = if applied.topology_changed {
                Arc::new(Snapshot::build(&self.cache.topology))
            } else {
                old.sim.clone()
            };
            self.publish_view(sim);
        }
        tags.extend(bindings);
        if let Some(o) = self.offload_peers.as_mut().filter(|_| self.cache.ready) {
            if applied.topology_changed || applied.hosts_changed {
                let me = self.shared.host_id;
                o.sync(&*self.dp, &self.cache.topology, me, self.cache.offload_hosts());
            }
        }
        self.applied.store(self.cache.revision, Ordering::Release);
        // Set once the view simulating with this revision is published: a
        // reader that sees it knows new misses use that topology.
        self.shared.metrics.topology_revision.set(self.cache.revision);
        self.invalidate(tags);
        if applied.topology_changed {
            self.health_tick();
        }
        for (router, ip) in applied.arp_learned {
            self.release(handler::WaitKey::Arp(router, ip));
        }
        if snapshot {
            // The message's pages, freed on the session's thread, stay in
            // that thread's arena unless handed back.
            midonet_datapath::sys::trim_heap();
            // When the agent has its view of a full snapshot, and how long
            // applying and building it took (the scale bench reads this).
            tracing::info!(
                revision = self.cache.revision,
                ms = t0.elapsed().as_millis() as u64,
                "topology snapshot applied"
            );
        }
        tracing::debug!(
            revision = self.cache.revision,
            updates,
            us = t0.elapsed().as_micros() as u64,
            "update applied"
        );
    }

    /// Re-simulates the packets parked on ARP resolutions that are known
    /// now: learned by a peer (`flowstate::learned`), or by another
    /// simulation here between the park and its own resolution.
    fn release_resolved(&mut self) {
        let waits = self.shared.waiting.lock().arp_waits();
        if waits.is_empty() {
            return;
        }
        let known: Vec<_> = {
            let st = self.shared.state.read();
            waits.into_iter().filter(|at| st.router_arp.contains_key(at)).collect()
        };
        for (router, ip) in known {
            self.release(handler::WaitKey::Arp(router, ip));
        }
    }

    /// Re-simulates the packets parked on `at` and sends them.
    fn release(&mut self, at: handler::WaitKey) {
        let view = self.shared.view.load_full();
        for g in handler::release_parked(&self.shared, &view, &mut self.worker, &at) {
            if let Err(e) = self.dp.execute(g.frame, g.actions) {
                tracing::warn!(error = %e, waited_for = ?at, "could not send a released packet");
            }
        }
    }

    /// The cluster answered a SNAT block claim: the packets waiting for it
    /// are simulated again (with the block, or choosing another), and the
    /// drop flows that said "need a block" go.
    fn on_snat_block(&mut self, block: midonet_state::BlockKey, granted: bool) {
        let now = self.shared.epoch.elapsed();
        let mut fs = self.shared.flowstate.lock();
        if granted {
            fs.blocks.granted(block, now);
        } else {
            fs.blocks.held_elsewhere(block, true);
        }
        let took = fs.answered(&block, now);
        drop(fs);
        if let Some(t) = took {
            self.shared.metrics.snat_block_claim.observe(t.as_secs_f64());
        }
        tracing::debug!(?block, granted, "SNAT block answer");
        self.invalidate(vec![Tag::snat_block(&block)]);
        self.release(handler::WaitKey::Block(block));
    }

    /// Answers the peers' requests for the state of ports bound to them
    /// (`flowstate::migrate`).
    fn answer_state_requests(&mut self) {
        use crate::flowstate::migrate;
        let asks = self.shared.migrations.take_asks();
        let Some(rep) = &self.shared.replicator else { return };
        let me = self.shared.host_id;
        for (from, req) in asks {
            let ports = migrate::authorised(&self.cache.topology, me, from, &req);
            let refused = migrate::ports_of(&req).len() - ports.len();
            if refused > 0 {
                // Not (yet, here) bound to the asker: it asks again.
                self.shared.metrics.flow_state_rejected_n("not_bound_to_sender", refused as u64);
            }
            if ports.is_empty() {
                continue;
            }
            let now = self.shared.epoch.elapsed();
            let msgs = migrate::answer(&mut self.shared.flowstate.lock(), me, &ports, now);
            let entries: usize = msgs.iter().map(|m| m.conntrack.len() + m.nat.len()).sum();
            let failed = msgs.iter().map(|m| rep.send(m, &[from])).sum::<usize>();
            self.shared.metrics.flow_state_sent.inc_by((msgs.len() - failed) as u64);
            self.shared.metrics.flow_state_ports_handed.inc_by(ports.len() as u64);
            tracing::info!(%from, ports = ports.len(), entries, "port state handed over");
        }
    }

    /// Ports waiting for their state: peers that have not answered are
    /// asked again; waits past their patience end.
    fn import_tick(&mut self) {
        let (gave_up, ask) = self.shared.migrations.tick(Instant::now());
        for p in gave_up {
            tracing::warn!(port = %p, "port state: not every live peer answered in time");
            self.shared
                .metrics
                .flow_state_imports
                .get_or_create(&crate::metrics::EventLabels { event: "timed_out" })
                .inc();
        }
        let Some(rep) = &self.shared.replicator else { return };
        for (peer, ports) in ask {
            for m in crate::flowstate::migrate::requests(self.shared.host_id, &ports) {
                rep.send(&m, &[peer]);
            }
        }
    }

    /// Gates `ports` (just bound here) and asks the live peers for their
    /// state.
    fn import_state(&self, ports: &[PortId]) {
        use crate::flowstate::migrate;
        let Some(rep) = &self.shared.replicator else { return };
        let me = self.shared.host_id;
        let peers =
            migrate::live_peers(&self.cache.topology, me, self.cache.alive_hosts.keys().copied());
        if peers.is_empty() {
            return;
        }
        self.shared.migrations.begin(ports, &peers, Instant::now());
        for m in migrate::requests(me, ports) {
            rep.send(&m, &peers);
        }
        tracing::debug!(ports = ports.len(), peers = peers.len(), "asked the peers for port state");
    }

    fn on_interfaces(&mut self, list: Vec<Interface>) {
        let _ =
            self.commands.send(Command::Interfaces(list.iter().map(Interface::to_pb).collect()));
        self.interfaces = list.into_iter().map(|i| (i.name.clone(), i)).collect();
        let tags = self.reconcile();
        if !tags.is_empty() {
            let sim = self.shared.view.load().sim.clone();
            self.publish_view(sim);
            self.invalidate(tags);
        }
    }

    /// Every second: failed bindings are retried; packets that waited too
    /// long for ARP are dropped and
    /// their next hop is marked failed, so the simulation answers ICMP
    /// host unreachable instead of parking more packets (as MidoNet's
    /// agent does); after [`ARP_FAILED_HOLD`] the mark is lifted and the next
    /// packet asks again.
    fn housekeeping(&mut self) {
        // Retry bindings that failed (an interface that refused a socket).
        let rebound = self.reconcile();
        if !rebound.is_empty() {
            let sim = self.shared.view.load().sim.clone();
            self.publish_view(sim);
            self.invalidate(rebound);
        }
        let now = Instant::now();
        self.shared.fragments.lock().expire(now);
        let (n, gave_up) = self.shared.waiting.lock().expire(now);
        let gave_up: Vec<_> = gave_up
            .into_iter()
            .filter_map(|k| match k {
                handler::WaitKey::Arp(router, ip) => Some((router, ip)),
                // The claim's own patience ends it (`FlowState::expire`).
                handler::WaitKey::Block(_) => None,
            })
            .collect();
        for _ in 0..n {
            self.shared.metrics.count_drop(AgentDrop::ArpTimeout);
        }
        let mut tags = Vec::new();
        if !gave_up.is_empty() || !self.arp_failed_at.is_empty() {
            let mut st = self.shared.state.write();
            for at in gave_up {
                if !st.router_arp.contains_key(&at) {
                    tracing::info!(router = %at.0, ip = %at.1, "ARP resolution failed");
                    st.arp_failed.insert(at, ());
                    self.arp_failed_at.insert(at, now);
                    tags.push(Tag::arp(at.0, at.1));
                }
            }
            self.arp_failed_at.retain(|at, since| {
                let keep =
                    now.duration_since(*since) < ARP_FAILED_HOLD && st.arp_failed.contains_key(at);
                if !keep {
                    st.arp_failed.remove(at);
                    tags.push(Tag::arp(at.0, at.1));
                }
                keep
            });
        }
        self.invalidate(tags);
        self.conntrack_housekeeping(now);
        self.health_tick();
    }

    /// Claim, start or stop load-balancer health checks (`crate::health`).
    fn health_tick(&mut self) {
        if !self.cache.ready {
            return;
        }
        for c in self.health.tick(&self.cache.topology, &self.cache.lb_checkers) {
            let _ = self.commands.send(c);
        }
        self.shared.metrics.lb_checkers.set(self.health.running().count() as i64);
    }

    /// Expire connections (invalidating their flows), refresh those whose
    /// flows carried packets since the last round, mirror the counters.
    fn conntrack_housekeeping(&mut self, now: Instant) {
        let sim_now = self.shared.epoch.elapsed();
        let pending = std::mem::take(&mut *self.shared.pending_stale.lock());
        self.invalidate(pending);
        let gone = self.shared.flowstate.lock().expire(sim_now);
        if !gone.is_empty() {
            tracing::debug!(connections = gone.len(), "connections expired");
            self.invalidate(gone);
        }
        let mut refreshed = 0;
        let stateful = {
            let fs = self.shared.flowstate.lock();
            !fs.conn.is_empty() || !fs.nat.is_empty()
        };
        if now.duration_since(self.refreshed_at) >= self.refresh && stateful {
            // A flow used since the last round (with a second of slack for
            // the datapath's own clock) keeps its connections and bindings
            // alive; one that carried a FIN or RST closes them.
            let window =
                (now.duration_since(self.refreshed_at) + Duration::from_secs(1)).as_millis() as u64;
            self.refreshed_at = now;
            match self.dp.dump_flows() {
                Ok(flows) => {
                    let mut fs = self.shared.flowstate.lock();
                    let mut closed = 0;
                    for f in &flows {
                        let seen = self.closed_flows.get(&f.id).copied();
                        // An id reused by a younger flow starts afresh.
                        let acted = seen.filter(|(_, age)| *age <= f.age_ms).map_or(0, |(a, _)| a);
                        let new = f.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) & !acted;
                        if new != 0 {
                            closed += fs.close(f.tags.iter(), new, sim_now);
                            self.closed_flows.insert(f.id, (acted | new, f.age_ms));
                        }
                    }
                    for f in flows.iter().filter(|f| f.idle_ms <= window) {
                        refreshed += fs.refresh(f.tags.iter(), sim_now);
                    }
                    // Replies the datapath reverse-translated itself.
                    let (r, c) = fs.refresh_from_kernel(Duration::from_millis(window), sim_now);
                    refreshed += r;
                    closed += c;
                    let live: HashSet<FlowId> = flows.iter().map(|f| f.id).collect();
                    self.closed_flows.retain(|id, _| live.contains(id));
                    if closed > 0 {
                        tracing::debug!(closed, "connections and bindings closing (FIN/RST)");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading flows for conntrack refresh"),
            }
        }
        // SNAT blocks nobody used for MidoNet's 5 minutes go back.
        if now.duration_since(self.blocks_checked_at) >= Duration::from_secs(60) {
            self.blocks_checked_at = now;
            let mut fs = self.shared.flowstate.lock();
            fs.blocks.relax();
            for b in fs.blocks.idle(sim_now, midonet_state::snat::DEFAULT_IDLE) {
                fs.blocks.released(b);
                let _ = self.commands.send(Command::SnatBlock { block: b, claim: false });
            }
        }
        self.compact_state_log(sim_now);
        let delta = self.shared.flowstate.lock().stats_delta();
        self.shared.metrics.observe_conntrack(&delta, refreshed as u64);
    }

    /// Rewrites the flow-state log as a snapshot once it grows past its
    /// bound (`flowstate::log`).
    fn compact_state_log(&self, now: Duration) {
        let Some(log) = &self.shared.state_log else { return };
        // The snapshot is taken with the log locked, so every message
        // applied after it is appended after the rewrite began and is kept
        // for the new file (appenders never hold the tables' lock while
        // they append); the snapshot is written with the log unlocked.
        let (mut rw, snap) = {
            let mut log = log.lock();
            if !log.wants_compaction() {
                return;
            }
            match log.begin_rewrite() {
                Ok(rw) => (rw, self.shared.flowstate.lock().snapshot(now)),
                Err(e) => {
                    tracing::warn!(error = %e, "compacting the flow-state log");
                    return;
                }
            }
        };
        let written = rw.write(snap.iter().map(|(o, m)| (*o, m)));
        let mut log = log.lock();
        match log.end_rewrite(rw, written) {
            Ok(()) => tracing::info!(bytes = log.len(), "flow-state log compacted"),
            Err(e) => tracing::warn!(error = %e, "compacting the flow-state log"),
        }
    }

    fn invalidate(&self, mut tags: Vec<Tag>) {
        if tags.is_empty() {
            return;
        }
        tags.sort_unstable();
        tags.dedup();
        self.shared.metrics.invalidation_tags.inc_by(tags.len() as u64);
        match self.dp.invalidate_tags(tags.iter().map(|t| t.0).collect()) {
            Ok(n) => {
                self.shared.metrics.invalidated_flows.inc_by(n as u64);
                if n > 0 {
                    tracing::debug!(tags = tags.len(), flows = n, "invalidated flows");
                }
            }
            Err(e) => tracing::warn!(error = %e, "invalidation failed"),
        }
    }

    /// Brings the datapath's vports and tunnel keys in line with the ports
    /// bound to this host whose interface exists; returns the tags of the
    /// ports whose binding changed.
    fn reconcile(&mut self) -> Vec<Tag> {
        let me = self.shared.host_id;
        let mut want: BTreeMap<PortId, (String, u32, u32)> = BTreeMap::new();
        if self.cache.ready {
            for p in self.cache.topology.ports_bound_to(me) {
                let Some(ifname) = p.interface_name.as_deref() else { continue };
                if let Some(i) = self.interfaces.get(ifname) {
                    want.insert(p.id, (ifname.to_owned(), i.ifindex, p.tunnel_key));
                }
            }
        }
        let mut tags = Vec::new();
        let stale: Vec<PortId> = self
            .bound
            .iter()
            .filter(|(id, b)| want.get(id) != Some(&(b.ifname.clone(), b.ifindex, b.tunnel_key)))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let Some(b) = self.bound.remove(&id) else { continue };
            if b.tunnel_key != 0 {
                let _ = self.dp.unbind_tunnel_key(b.tunnel_key);
            }
            if let Err(e) = self.dp.remove_vport(b.dp_port) {
                tracing::warn!(port = %id, error = %e, "removing vport");
            }
            if !want.contains_key(&id) {
                let _ =
                    self.commands.send(Command::PortActive { port: id.to_string(), active: false });
                self.shared.migrations.forget(id);
            }
            tracing::info!(port = %id, ifname = %b.ifname, "port unbound");
            tags.push(Tag::port(id));
        }
        let mut fresh = Vec::new();
        for (id, (ifname, ifindex, key)) in want {
            if self.bound.contains_key(&id) {
                continue;
            }
            let dp_port = match self.dp.add_vport(&ifname) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(port = %id, %ifname, error = %e, "cannot attach interface");
                    continue;
                }
            };
            if key != 0 {
                if let Err(e) = self.dp.bind_tunnel_key(key, dp_port) {
                    tracing::warn!(port = %id, key, error = %e, "cannot bind tunnel key");
                }
            }
            let _ = self.commands.send(Command::PortActive { port: id.to_string(), active: true });
            tracing::info!(port = %id, %ifname, dp_port, tunnel_key = key, "port bound");
            // The same interface, not one of the same name made since.
            if self.kept_ports.remove(&(ifname.clone(), ifindex)) {
                // Its connections are in our log, replayed at start, and its
                // flows still forward: a gate would only drop its packets
                // for a round trip to the peers.
                tracing::info!(port = %id, %ifname, "port kept through the agent restart");
            } else {
                fresh.push(id);
            }
            self.bound.insert(id, Bound { dp_port, ifname, ifindex, tunnel_key: key });
            tags.push(Tag::port(id));
        }
        // Before the view maps the new ports' packets to them.
        if !fresh.is_empty() {
            self.import_state(&fresh);
        }
        self.shared.metrics.bound_ports.set(self.bound.len() as i64);
        tags
    }

    fn publish_view(&self, sim: Arc<Snapshot>) {
        let me = self.shared.host_id;
        let topo = &self.cache.topology;
        let mut egress = HashMap::new();
        for p in topo.ports.values() {
            if let Some(b) = self.bound.get(&p.id) {
                egress.insert(p.id, Egress::Local(b.dp_port));
                continue;
            }
            let Some(host) = p.host_id else { continue };
            if host == me || p.interface_name.is_none() {
                continue;
            }
            if let Some(dst) = topo.tunnel_ip(me, host) {
                egress.insert(p.id, Egress::Remote { dst, key: p.tunnel_key });
            }
        }
        let ingress = self.bound.iter().map(|(id, b)| (b.dp_port, *id)).collect();
        let trusted_peers = crate::flowstate::trusted_peers(topo, me);
        let prev = self.shared.view.load_full();
        crate::tunnel::sync_peers(&*self.dp, self.cache.ready, &prev, &trusted_peers);
        let tunnel_local = crate::tunnel::own_addresses(topo, me);
        crate::tunnel::sync_local(&*self.dp, self.cache.ready, &prev, &tunnel_local);
        self.shared.view.store(Arc::new(View {
            sim,
            egress,
            ingress,
            revision: self.cache.revision,
            ready: self.cache.ready,
            state_peers: crate::flowstate::state_peers(topo, me),
            trusted_peers,
            tunnel_local,
        }));
    }
}

/// Topology updates applied since the view was last built (see
/// `Core::on_updates`).
struct TopologyRun {
    t0: Instant,
    /// The view the installed flows were simulated with: every change's tags
    /// are taken against it.
    old: Arc<View>,
    /// What the updates changed, merged.
    applied: Applied,
    snapshot: bool,
    /// Updates that changed anything (a replayed delta does not).
    updates: u64,
}

impl TopologyRun {
    fn add(&mut self, a: Applied) {
        self.updates += 1;
        let acc = &mut self.applied;
        acc.tags.extend(a.tags);
        acc.topology_changed |= a.topology_changed;
        acc.arp_learned.extend(a.arp_learned);
        acc.bad_keys += a.bad_keys;
        acc.snat_blocks.extend(a.snat_blocks);
        acc.hosts_changed |= a.hosts_changed;
    }
}

mod http;
#[cfg(test)]
mod incremental;
