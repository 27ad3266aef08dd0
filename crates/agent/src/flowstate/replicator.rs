//! The flow-state socket ([`Replicator`]): it sends a simulation's state
//! to the peers, and what comes in is read on the miss path and by a
//! receiver thread; [`receive`] checks and installs each message.
//!
//! * **Whom we believe**: a message is accepted only from an address of a
//!   host that shares a tunnel zone with this one; anything else, and
//!   anything that does not parse, is counted and dropped.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_sim::Tag;
use midonet_wire::flowstate::{FlowStateRepr, Purpose};
use parking_lot::Mutex;

use super::log::Origin;
use super::{learned, migrate};
use crate::handler::{Shared, View};

/// The largest message read; ours are far smaller (one connection and its
/// bindings), and one underlay datagram is the bound.
const MAX_MESSAGE: usize = 9000;

/// After the receiver thread drained the socket, it waits this long before
/// it waits on the socket again; what arrives meanwhile is read in one
/// batch. A thread blocked on the socket is woken by every datagram, in
/// the sender's `sendto`: on a host under a connection load, one wake-up
/// per new connection of every peer, each an inter-processor interrupt (a
/// VM exit under a hypervisor). On the test machine, where the peers'
/// agents share two CPUs, the wake-ups were 6 % of the sending agent's
/// CPU and its scheduler switches 2 % more (`perf`, SNAT connections
/// under `bench/cps.sh NAT=1 CT=1`). Nothing waits for the thread: the
/// miss path drains the socket before every simulation, and the ebpf
/// datapath's socket filter has installed the message's bindings and
/// connections as it was queued (`RevNatTable::attach_state_socket`);
/// the thread keeps the agent's tables current when no miss comes.
/// The thread gathers only while busy (it read several messages at once,
/// or was woken again within the interval): messages further apart than
/// this are read as they come, as the replication delay measures.
const RX_COALESCE: Duration = Duration::from_millis(1);

/// The receiver thread runs under `SCHED_IDLE`, so that reading a message
/// never delays the connection the message is for. Woken by a datagram,
/// a thread of normal priority was placed on the sender's CPU (a UDP
/// socket's wake-up is a synchronous one) and preempted it, in the middle
/// of its miss: on the test machine, where a peer's `sendto` runs the
/// receiving side too, a new SNAT connection's connect took 297–379 µs
/// with it, 261–281 µs with the thread at idle priority (sequential
/// connects, alternated in one sandbox; nice 19 was not enough, 307–343).
/// An idle thread can starve on a host whose CPUs are busy: then
/// [`backstop`], a task of normal priority, reads the socket once this
/// long has passed without a read, and counts what it read
/// (`flow_state_backstop_reads`).
const RX_BACKSTOP: Duration = Duration::from_millis(50);

/// Receive buffer asked for the socket: a coalescing interval's messages
/// at a peer's burst rate, with room to spare (the kernel's default,
/// ~200 KB, holds ~500 small datagrams).
const RX_BUFFER: usize = 4 << 20;

/// The flow-state socket: sends on the miss path; received messages are
/// read on the miss path too, before each simulation, and by a thread
/// when no miss comes.
///
/// Reading before each simulation is what orders state before traffic:
/// a peer sends a connection's state before its first packet, so by the
/// time that packet's reply misses here, the state is in this socket's
/// buffer, and draining the socket first installs it. A thread alone would
/// race with the reply. The buffer's lock makes every read a drain in
/// order, whoever does it.
pub struct Replicator {
    sock: UdpSocket,
    port: u16,
    rx: Mutex<Vec<u8>>,
    /// When the socket was last read dry (µs since `created`).
    drained_at: AtomicU64,
    created: Instant,
}

impl Replicator {
    /// Binds `bind:port`.
    pub fn bind(bind: Ipv4Addr, port: u16) -> std::io::Result<Replicator> {
        let sock = UdpSocket::bind(SocketAddr::from((bind, port)))?;
        sock.set_nonblocking(true)?;
        // Best effort: forced past `net.core.rmem_max` where the agent may
        // (CAP_NET_ADMIN), else asked for and capped there.
        if set_rcvbuf_force(&sock, RX_BUFFER).is_err() {
            let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(RX_BUFFER);
        }
        Ok(Replicator {
            sock,
            port,
            rx: Mutex::new(vec![0u8; MAX_MESSAGE]),
            drained_at: AtomicU64::new(0),
            created: Instant::now(),
        })
    }

    /// The socket's descriptor (a datapath's filter attaches to it:
    /// `midonet_datapath::RevNatTable::attach_state_socket`).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    /// Sends `msg` to every peer; returns how many sends failed.
    pub fn send(&self, msg: &FlowStateRepr, peers: &[Ipv4Addr]) -> usize {
        let mut buf = Vec::new();
        if msg.emit_vec(&mut buf).is_err() {
            return peers.len();
        }
        peers
            .iter()
            .filter(|ip| self.sock.send_to(&buf, SocketAddr::from((**ip, self.port))).is_err())
            .count()
    }

    /// Reads and installs every message waiting; returns the tags of the
    /// flows they make stale. The miss path has the datapath invalidate
    /// those before it installs the miss's own flow (which may be the
    /// reply the state is for: invalidated afterwards, it would be removed
    /// at once and its next packet would miss again).
    pub fn drain(&self, sh: &Shared) -> Vec<Tag> {
        self.drain_counted(sh).0
    }

    /// [`drain`](Self::drain), and how many datagrams it read.
    fn drain_counted(&self, sh: &Shared) -> (Vec<Tag>, usize) {
        let mut buf = self.rx.lock();
        let mut stale = Vec::new();
        let mut n = 0;
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((len, from)) => {
                    n += 1;
                    stale.extend(receive(sh, &buf[..len], from));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "flow-state socket");
                    break;
                }
            }
        }
        self.drained_at.store(self.now_us(), Ordering::Relaxed);
        (stale, n)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// How long ago the socket was last read dry.
    fn since_drained(&self) -> Duration {
        let at = self.drained_at.load(Ordering::Relaxed);
        Duration::from_micros(self.now_us().saturating_sub(at))
    }

    /// Runs the receiver thread until `stop` is set: waits for the socket
    /// to be readable and drains it.
    pub fn spawn_receiver(
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("flow-state-rx".into()).spawn(move || {
            let Some(rep) = &shared.replicator else { return };
            if let Err(e) = midonet_datapath::sys::set_idle_priority() {
                tracing::debug!(error = %e, "flow-state receiver keeps its priority");
            }
            let mut last_wake = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                use std::os::fd::AsFd;
                let mut fds = [PollFd::new(rep.sock.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(200u16)) {
                    Ok(0) => continue,
                    Ok(_) => {
                        // Handed to the next miss, which invalidates them
                        // before installing its own flow (possibly the
                        // reply this state is for); the core's tick takes
                        // them when no miss comes.
                        let woke = std::time::Instant::now();
                        let (stale, read) = rep.drain_counted(&shared);
                        if !stale.is_empty() {
                            shared.pending_stale.lock().extend(stale);
                        }
                        // Busy (several waiting, or woken again soon):
                        // let the next ones gather (`RX_COALESCE`).
                        if read > 1 || woke.duration_since(last_wake) < RX_COALESCE {
                            std::thread::sleep(RX_COALESCE);
                        }
                        last_wake = woke;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "polling the flow-state socket");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
    }
}

/// Reads the flow-state socket whenever the receiver thread has not for
/// [`RX_BACKSTOP`] (it runs at idle priority and can starve), until `stop`
/// changes. Needs the tokio runtime; a task of normal priority.
pub async fn backstop(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(rep) = &shared.replicator else { return };
    let mut tick = tokio::time::interval(RX_BACKSTOP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                if rep.since_drained() < RX_BACKSTOP {
                    continue;
                }
                let (stale, read) = rep.drain_counted(&shared);
                shared.metrics.flow_state_backstop_reads.inc_by(read as u64);
                if !stale.is_empty() {
                    shared.pending_stale.lock().extend(stale);
                }
            }
        }
    }
}

/// `SO_RCVBUFFORCE` (CAP_NET_ADMIN): a receive buffer above `rmem_max`.
fn set_rcvbuf_force(sock: &UdpSocket, bytes: usize) -> nix::Result<()> {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::RcvBufForce, &bytes)
}

/// One datagram from `from` (module docs: whom we believe); returns the
/// tags of the flows what it installed makes stale.
pub fn receive(sh: &Shared, bytes: &[u8], from: SocketAddr) -> Vec<Tag> {
    let m = &sh.metrics;
    let std::net::IpAddr::V4(ip) = from.ip() else {
        m.flow_state_rejected("unknown_peer");
        return Vec::new();
    };
    let view = sh.view.load();
    if !view.trusted_peers.contains(&ip) {
        m.flow_state_rejected("unknown_peer");
        return Vec::new();
    }
    let msg = match FlowStateRepr::parse_bytes(bytes) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::debug!(%from, error = %e, "malformed flow-state message");
            m.flow_state_rejected("malformed");
            return Vec::new();
        }
    };
    if msg.sender == *sh.host_id.uuid().as_bytes() {
        m.flow_state_rejected("own");
        return Vec::new();
    }
    m.flow_state_received.inc();
    // The end of an answer may carry the port's state itself (one datagram
    // for all of it): installed first, then the port counts as answered.
    let answered = match msg.purpose {
        Purpose::Request => {
            sh.migrations.ask(ip, msg);
            return Vec::new();
        }
        Purpose::Answered => Some(migrate::ports_of(&msg)),
        Purpose::State => None,
    };
    let tags = install(sh, &view, ip, &msg);
    if let Some(ports) = answered {
        for p in sh.migrations.answered(ip, &ports) {
            tracing::info!(port = %p, "port state imported");
            m.flow_state_imports
                .get_or_create(&crate::metrics::EventLabels { event: "answered" })
                .inc();
        }
    }
    tags
}

/// Installs a peer's message (learned entries, connections, bindings);
/// returns the tags of the flows it makes stale.
fn install(sh: &Shared, view: &View, ip: Ipv4Addr, msg: &FlowStateRepr) -> Vec<Tag> {
    let m = &sh.metrics;
    if !msg.learned.is_empty() {
        // Straight to the core: it invalidates, and re-simulates the packets
        // parked on an ARP resolution these entries answer.
        let stale = learned::import(sh, view, ip, &msg.learned);
        if !stale.is_empty() {
            let _ = sh.stale.send(stale);
        }
        if msg.conntrack.is_empty() && msg.nat.is_empty() {
            return Vec::new();
        }
    }
    if msg.conntrack.is_empty() && msg.nat.is_empty() {
        return Vec::new();
    }
    let now = sh.epoch.elapsed();
    let (done, tags) = sh.flowstate.lock().install(msg, now);
    sh.log_state(Origin::Peer, msg);
    if done.unknown > 0 {
        m.flow_state_entries_rejected("unknown_kind", done.unknown);
    }
    if done.refused > 0 {
        m.flow_state_entries_rejected("refused", done.refused);
    }
    if done.replaced > 0 {
        m.flow_state_bindings_replaced.inc_by(u64::from(done.replaced));
    }
    tags
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use midonet_model::{HostId, PortId};
    use midonet_sim::MemState;
    use midonet_state::message::conntrack_repr;
    use midonet_state::ConnState;
    use parking_lot::RwLock;

    use super::*;
    use crate::flowstate::tests::key;
    use crate::flowstate::FlowState;
    use crate::handler::{Egress, View, WaitingRoom};
    use crate::metrics::Metrics;

    fn shared() -> (Arc<Shared>, tokio::sync::mpsc::UnboundedReceiver<Vec<Tag>>) {
        shared_with(None)
    }

    fn shared_with(
        replicator: Option<Replicator>,
    ) -> (Arc<Shared>, tokio::sync::mpsc::UnboundedReceiver<Vec<Tag>>) {
        let (cmd, _) = tokio::sync::mpsc::unbounded_channel();
        let (stale, stale_rx) = tokio::sync::mpsc::unbounded_channel();
        let sh = Arc::new(Shared {
            host_id: HostId::random(),
            view: arc_swap::ArcSwap::from_pointee(View::empty()),
            state: Arc::new(RwLock::new(MemState::default())),
            waiting: Mutex::new(WaitingRoom::default()),
            metrics: Metrics::new(),
            commands: cmd,
            stale,
            flow_idle_ms: 0,
            arp_wait: Duration::from_secs(1),
            epoch: Instant::now(),
            flowstate: Mutex::new(FlowState::new(100, 1)),
            replicator,
            state_log: None,
            pending_stale: Mutex::new(Vec::new()),
            migrations: Default::default(),
            rev_nat: Default::default(),
            recirc: Default::default(),
            fragments: Default::default(),
        });
        (sh, stale_rx)
    }

    /// A host whose only tunnel-zone peer is `peer`.
    fn trusting(peer: Ipv4Addr) -> Arc<Shared> {
        let (sh, _) = shared();
        let mut view = View::empty();
        view.trusted_peers.insert(peer);
        sh.view.store(Arc::new(view));
        sh
    }

    #[test]
    fn learned_entries_from_a_peer_are_checked_installed_and_invalidate() {
        use midonet_model::{Bridge, BridgeId, Port, PortType, Router, RouterId, Topology};
        use midonet_sim::{MacAddr, StateWrite};

        let (sh, mut stale_rx) = shared();
        let peer = Ipv4Addr::new(10, 77, 0, 2);
        let other = Ipv4Addr::new(10, 77, 0, 3);
        let (b1, b2, r) = (BridgeId::random(), BridgeId::random(), RouterId::random());
        let mut topo = Topology::default();
        for b in [b1, b2] {
            topo.bridges.insert(b, Bridge { id: b, admin_state_up: true, ..Default::default() });
        }
        topo.routers.insert(r, Router { id: r, admin_state_up: true, ..Default::default() });
        let port = |b: BridgeId, host: bool| Port {
            id: PortId::random(),
            port_type: PortType::Bridge,
            device_id: b.cast(),
            admin_state_up: true,
            host_id: host.then(HostId::random),
            interface_name: host.then(|| "vm".to_owned()),
            ..Default::default()
        };
        let (on_peer, on_other, elsewhere, unbound) =
            (port(b1, true), port(b1, true), port(b2, true), port(b1, false));
        let interior = Port { peer_id: Some(PortId::random()), ..port(b1, false) };
        for p in [&on_peer, &on_other, &interior, &elsewhere, &unbound] {
            topo.ports.insert(p.id, p.clone());
        }
        let mut view = View::empty();
        view.sim = Arc::new(midonet_sim::Snapshot::build(&topo));
        view.trusted_peers.insert(peer);
        view.egress.insert(on_peer.id, Egress::Remote { dst: peer, key: 1 });
        view.egress.insert(on_other.id, Egress::Remote { dst: other, key: 2 });
        view.egress.insert(elsewhere.id, Egress::Remote { dst: peer, key: 3 });
        sh.view.store(Arc::new(view));

        let mac = |b: u8| MacAddr([2, 0, 0, 0, 0, b]);
        let ip = Ipv4Addr::new(10, 2, 0, 4);
        let good = [
            StateWrite::RouterArp { router: r, ip, mac: mac(4) },
            StateWrite::BridgeArp { bridge: b1, ip, mac: mac(4) },
            StateWrite::Mac { bridge: b1, vlan: 0, mac: mac(1), port: on_peer.id },
            StateWrite::Mac { bridge: b1, vlan: 0, mac: mac(2), port: interior.id },
        ];
        let bad = [
            // Another host's port, another bridge's port, an unknown router,
            // a multicast MAC.
            StateWrite::Mac { bridge: b1, vlan: 0, mac: mac(3), port: on_other.id },
            StateWrite::Mac { bridge: b1, vlan: 0, mac: mac(5), port: elsewhere.id },
            StateWrite::Mac { bridge: b1, vlan: 0, mac: mac(7), port: unbound.id },
            StateWrite::RouterArp { router: RouterId::random(), ip, mac: mac(6) },
            StateWrite::RouterArp {
                router: r,
                ip: Ipv4Addr::new(10, 2, 0, 5),
                mac: MacAddr([1, 0, 0x5e, 0, 0, 1]),
            },
        ];
        let mut msg = FlowStateRepr {
            sender: [0x22; 16],
            learned: good.iter().chain(&bad).map(learned::to_repr).collect(),
            ..FlowStateRepr::default()
        };
        msg.learned.push(midonet_wire::flowstate::LearnedRepr {
            kind: midonet_wire::flowstate::LearnedKindCode::Unknown(9),
            ..msg.learned[0]
        });
        let mut bytes = Vec::new();
        msg.emit_vec(&mut bytes).expect("emit");
        let tags = receive(&sh, &bytes, SocketAddr::from((peer, 2925)));
        assert!(tags.is_empty(), "learned entries go to the core, not the miss path");
        let sent = stale_rx.try_recv().expect("stale tags sent to the core");
        assert_eq!(sent, good.iter().map(StateWrite::tag).collect::<Vec<_>>());
        {
            let st = sh.state.read();
            assert_eq!(st.router_arp.get(&(r, ip)), Some(&mac(4)));
            assert_eq!(st.bridge_arp.get(&(b1, ip)), Some(&mac(4)));
            assert_eq!(st.macs.get(&(b1, 0, mac(1))), Some(&on_peer.id));
            assert_eq!(st.macs.get(&(b1, 0, mac(2))), Some(&interior.id));
            assert_eq!(st.macs.len(), 2);
            assert_eq!(st.router_arp.len(), 1);
        }
        assert_eq!(rejected(&sh, "learned_refused"), 5);
        assert_eq!(rejected(&sh, "unknown_kind"), 1);
        // The same again changes nothing: no invalidation.
        receive(&sh, &bytes, SocketAddr::from((peer, 2925)));
        assert!(stale_rx.try_recv().is_err());
        // From a stranger: nothing.
        let before = rejected(&sh, "unknown_peer");
        receive(&sh, &bytes, SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 2925)));
        assert_eq!(rejected(&sh, "unknown_peer"), before + 1);
    }

    fn rejected(sh: &Shared, reason: &'static str) -> u64 {
        sh.metrics.flow_state_rejected.get_or_create(&crate::metrics::ReasonLabels { reason }).get()
    }

    /// The receiver thread runs at idle priority and can starve; with no
    /// thread at all, the backstop still reads what comes, within a few of
    /// its periods, and counts it.
    #[test]
    fn the_backstop_reads_what_no_receiver_thread_read() {
        let rep = Replicator::bind(Ipv4Addr::LOCALHOST, 0).expect("bind");
        let to = rep.sock.local_addr().expect("addr");
        let (sh, _) = shared_with(Some(rep));
        let mut view = View::empty();
        view.trusted_peers.insert(Ipv4Addr::LOCALHOST);
        sh.view.store(Arc::new(view));
        let msg = FlowStateRepr {
            sender: *uuid::Uuid::from_u128(99).as_bytes(),
            conntrack: vec![conntrack_repr(&key(7), ConnState::SynSent)],
            ..FlowStateRepr::default()
        };
        let mut bytes = Vec::new();
        msg.emit_vec(&mut bytes).expect("emit");
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("peer socket");
        peer.send_to(&bytes, to).expect("send");

        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("rt");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = rt.spawn(backstop(sh.clone(), stop_rx));
        let read = rt.block_on(async {
            for _ in 0..100 {
                if sh.metrics.flow_state_received.get() > 0 {
                    return true;
                }
                tokio::time::sleep(RX_BACKSTOP / 5).await;
            }
            false
        });
        assert!(read, "the backstop read the message");
        assert_eq!(sh.metrics.flow_state_backstop_reads.get(), 1);
        assert_eq!(sh.flowstate.lock().conn.len(), 1);
        assert_eq!(*sh.pending_stale.lock(), vec![Tag::conntrack(&key(7))], "left to the core");
        stop_tx.send(true).expect("stop");
        rt.block_on(task).expect("the backstop ends on stop");
    }

    #[test]
    fn only_tunnel_zone_peers_are_believed_and_garbage_is_counted() {
        let peer = Ipv4Addr::new(10, 77, 0, 2);
        let sh = trusting(peer);
        let msg = FlowStateRepr {
            sender: *uuid::Uuid::from_u128(99).as_bytes(),
            conntrack: vec![conntrack_repr(&key(5), ConnState::SynSent)],
            ..FlowStateRepr::default()
        };
        let mut bytes = Vec::new();
        msg.emit_vec(&mut bytes).expect("emit");
        let stranger = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 9), 2925));
        assert!(receive(&sh, &bytes, stranger).is_empty());
        assert_eq!(rejected(&sh, "unknown_peer"), 1);
        assert!(sh.flowstate.lock().conn.is_empty(), "nothing installed from a stranger");
        receive(&sh, &bytes[..bytes.len() - 3], SocketAddr::from((peer, 2925)));
        receive(&sh, &[0xff; 64], SocketAddr::from((peer, 2925)));
        assert_eq!(rejected(&sh, "malformed"), 2);
        assert!(sh.flowstate.lock().conn.is_empty());
        let stale = receive(&sh, &bytes, SocketAddr::from((peer, 2925)));
        assert_eq!(sh.metrics.flow_state_received.get(), 1);
        assert_eq!(sh.flowstate.lock().conn.len(), 1);
        assert_eq!(stale, vec![Tag::conntrack(&key(5))], "tags to invalidate");
    }

    #[test]
    fn an_answer_carrying_the_state_installs_it_before_the_port_opens() {
        let peer = Ipv4Addr::new(10, 77, 0, 2);
        let sh = trusting(peer);
        let port = PortId::random();
        sh.migrations.begin(&[port], &[peer], Instant::now());
        assert!(sh.migrations.gates(port));
        let answer = FlowStateRepr {
            purpose: Purpose::Answered,
            sender: [0x22; 16],
            ingress_port: *port.uuid().as_bytes(),
            conntrack: vec![conntrack_repr(&key(1000), ConnState::Replied)],
            ..FlowStateRepr::default()
        };
        let mut bytes = Vec::new();
        answer.emit_vec(&mut bytes).expect("emit");
        // From an address outside the tunnel zones: nothing.
        receive(&sh, &bytes, SocketAddr::from((Ipv4Addr::new(10, 77, 0, 9), 2925)));
        assert!(sh.migrations.gates(port));
        assert!(sh.flowstate.lock().conn.is_empty());
        receive(&sh, &bytes, SocketAddr::from((peer, 2925)));
        assert!(!sh.migrations.gates(port), "answered");
        let now = sh.epoch.elapsed();
        let mut fs = sh.flowstate.lock();
        assert!(fs.conn.lookup(&key(1000), now).is_some(), "installed");
        assert_eq!(fs.port_state(port.uuid().as_bytes(), now).0.len(), 1, "under its port");
    }
}
