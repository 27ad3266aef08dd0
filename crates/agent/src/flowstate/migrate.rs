//! A port's flow state follows it to the host it is bound to (issue 8
//! item 6: VM migration; also an agent's start, when its own log was
//! lost). MidoNet 5.2.1 asked the previous owner's flow-state minion for
//! the port's keys and kept the port inactive until they came or 3 s
//! passed (reference §3.3); here the agents ask each other directly.
//!
//! ```text
//!  new host                                   every live tunnel-zone peer
//!  port bound ─ gate the port (its packets dropped, `state_import`)
//!             ─ Request{ports} ──────────────> port bound to the sender? (topology,
//!                                              and the datagram from its tunnel address)
//!             <────────────── State{ingress = port, entries} x n   (what it saw at the port)
//!             <────────────── Answered{ports}    (with the entries, when one port's fit one datagram)
//!  every peer answered, or IMPORT_PATIENCE passed: the gate opens
//! ```
//!
//! * **What a host holds for a port**: every connection and binding it
//!   saw at that port, as the ingress or an egress port of a message it
//!   sent or received (`FlowState::port_state`). The VM's old host saw all
//!   of the VM's connections; a gateway saw those through it.
//! * **Why a gate**: a packet simulated before the state arrives would be
//!   given a new SNAT binding (another source port: the server answers
//!   with a reset). A dropped packet is retransmitted by the VM. The gate
//!   lasts one round trip to the slowest live peer, and never more than
//!   [`IMPORT_PATIENCE`] (a peer that died meanwhile).
//! * **Lost datagrams**: a port whose state fits one datagram (the usual
//!   VM) gets it in the end of the answer itself, so a lost datagram is a
//!   missing answer, asked for again. A larger answer whose middle is lost
//!   leaves those connections to be bound anew by their next packet (what
//!   MidoNet did for every moved connection).
//! * **Not on a plain restart**: a port the kernel datapath kept through
//!   an agent restart (same interface, its flows still forwarding) while
//!   the flow-state log carried its state is bound again without a gate:
//!   gating it would only drop its packets for a round trip to the peers
//!   (measured: 18 pings at 10 ms, `bench/restart.sh`).
//! * **Who is asked**: the live hosts (their cluster session) sharing a
//!   tunnel zone with this one; with none, there is no gate.
//! * **Who is answered**: only the host the port is bound to in the
//!   answering host's topology, and only at that host's tunnel address: a
//!   host learns nothing of ports that are not its own. A request that
//!   comes before the answering host has seen the new binding is not
//!   answered; the asker asks again every [`ASK_AGAIN`].
//! * **The old host keeps the port reserved**: the SNAT bindings it
//!   allocated for the port are held for their connection's established
//!   timeout from the handover, so the port is not given to another
//!   connection while the VM's may still use it elsewhere (MidoNet could
//!   hand it out again: reference §8).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use midonet_model::{HostId, PortId, Topology};
use midonet_wire::flowstate::{FlowStateRepr, Purpose};
use parking_lot::Mutex;

use super::FlowState;

/// How long a port waits for its state at most.
pub const IMPORT_PATIENCE: Duration = Duration::from_secs(2);
/// How often unanswered peers are asked again.
pub const ASK_AGAIN: Duration = Duration::from_millis(100);
/// Entries per answer message: 40 + 38 x 36 = 1408 bytes, inside MidoNet's
/// 1430-byte budget for one state datagram.
const PER_ANSWER: usize = 38;
/// Ports per request (the ingress port and up to 255 egress ports).
const PER_REQUEST: usize = 256;

/// One port waiting for its state.
#[derive(Debug)]
struct Import {
    /// Peers that have not answered for it.
    waiting: BTreeSet<Ipv4Addr>,
    since: Instant,
    /// When the peers were last asked.
    asked: Instant,
}

/// The ports bound here whose state is being asked for, and the peers'
/// requests for the core to answer.
#[derive(Debug, Default)]
pub struct Migrations {
    /// Whether any port waits: the miss path reads only this, almost always.
    any: AtomicBool,
    ports: Mutex<HashMap<PortId, Import>>,
    /// Requests received (by the flow-state receiver), with their source.
    asks: Mutex<Vec<(Ipv4Addr, FlowStateRepr)>>,
    /// Wakes the core when a request is queued.
    pub asked: tokio::sync::Notify,
}

/// How a port's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Answered,
    TimedOut,
}

impl Migrations {
    /// Queues a peer's request for the core (which has the topology to
    /// check it against).
    pub fn ask(&self, from: Ipv4Addr, req: FlowStateRepr) {
        self.asks.lock().push((from, req));
        self.asked.notify_one();
    }

    /// The requests queued since the last call.
    pub fn take_asks(&self) -> Vec<(Ipv4Addr, FlowStateRepr)> {
        std::mem::take(&mut *self.asks.lock())
    }

    /// Gates `ports` until each of `peers` answered for them.
    pub fn begin(&self, ports: &[PortId], peers: &[Ipv4Addr], now: Instant) {
        if ports.is_empty() || peers.is_empty() {
            return;
        }
        let mut m = self.ports.lock();
        for p in ports {
            let waiting = peers.iter().copied().collect();
            m.insert(*p, Import { waiting, since: now, asked: now });
        }
        self.any.store(true, Ordering::Release);
    }

    /// Whether packets from `port` must wait (be dropped) now.
    pub fn gates(&self, port: PortId) -> bool {
        self.any.load(Ordering::Acquire) && self.ports.lock().contains_key(&port)
    }

    /// Whether any port waits.
    pub fn pending(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// `from` answered for `ports`: returns the ports that no longer wait.
    pub fn answered(&self, from: Ipv4Addr, ports: &[PortId]) -> Vec<PortId> {
        let mut m = self.ports.lock();
        let mut open = Vec::new();
        for p in ports {
            let Some(i) = m.get_mut(p) else { continue };
            i.waiting.remove(&from);
            if i.waiting.is_empty() {
                m.remove(p);
                open.push(*p);
            }
        }
        self.any.store(!m.is_empty(), Ordering::Release);
        open
    }

    /// The port is no longer bound here.
    pub fn forget(&self, port: PortId) {
        let mut m = self.ports.lock();
        m.remove(&port);
        self.any.store(!m.is_empty(), Ordering::Release);
    }

    /// Ends the waits past [`IMPORT_PATIENCE`] (returned) and lists, per
    /// peer, the ports it has not answered for yet and was last asked for
    /// [`ASK_AGAIN`] ago or more (to ask again now).
    pub fn tick(&self, now: Instant) -> (Vec<PortId>, Vec<(Ipv4Addr, Vec<PortId>)>) {
        let mut m = self.ports.lock();
        let mut gave_up = Vec::new();
        m.retain(|p, i| {
            let keep = now.duration_since(i.since) < IMPORT_PATIENCE;
            if !keep {
                gave_up.push(*p);
            }
            keep
        });
        let mut ask: HashMap<Ipv4Addr, Vec<PortId>> = HashMap::new();
        for (p, i) in m.iter_mut().filter(|(_, i)| now.duration_since(i.asked) >= ASK_AGAIN) {
            i.asked = now;
            for peer in &i.waiting {
                ask.entry(*peer).or_default().push(*p);
            }
        }
        self.any.store(!m.is_empty(), Ordering::Release);
        let mut ask: Vec<(Ipv4Addr, Vec<PortId>)> = ask.into_iter().collect();
        ask.sort_unstable();
        for (_, ports) in &mut ask {
            ports.sort_unstable();
        }
        (gave_up, ask)
    }
}

/// The requests asking for `ports`' state.
pub fn requests(me: HostId, ports: &[PortId]) -> Vec<FlowStateRepr> {
    naming(Purpose::Request, me, ports)
}

/// Messages for `purpose` that name `ports` (the ingress port and up to
/// 255 egress ports each).
fn naming(purpose: Purpose, me: HostId, ports: &[PortId]) -> Vec<FlowStateRepr> {
    ports
        .chunks(PER_REQUEST)
        .map(|c| FlowStateRepr {
            purpose,
            sender: *me.uuid().as_bytes(),
            ingress_port: *c[0].uuid().as_bytes(),
            egress_ports: c[1..].iter().map(|p| *p.uuid().as_bytes()).collect(),
            ..Default::default()
        })
        .collect()
}

/// The ports a request or an answer's end names.
pub fn ports_of(msg: &FlowStateRepr) -> Vec<PortId> {
    std::iter::once(&msg.ingress_port)
        .chain(&msg.egress_ports)
        .filter(|id| **id != [0; 16])
        .map(|id| PortId::from_uuid(uuid::Uuid::from_bytes(*id)))
        .collect()
}

/// Of the ports `req` asks for, those bound (in `topo`) to the host that
/// sent it, if it came from that host's tunnel address; the others are
/// counted by the caller as refused.
pub fn authorised(topo: &Topology, me: HostId, from: Ipv4Addr, req: &FlowStateRepr) -> Vec<PortId> {
    let sender = HostId::from_uuid(uuid::Uuid::from_bytes(req.sender));
    if topo.tunnel_ip(me, sender) != Some(from) {
        return Vec::new();
    }
    ports_of(req)
        .into_iter()
        .filter(|p| topo.ports.get(p).is_some_and(|p| p.host_id == Some(sender)))
        .collect()
}

/// The answer for `ports`: their state in messages of at most
/// `PER_ANSWER` (38) entries, then the end of the answer; one port's state
/// that fits one message goes in the end of the answer itself.
pub fn answer(
    fs: &mut FlowState,
    me: HostId,
    ports: &[PortId],
    now: Duration,
) -> Vec<FlowStateRepr> {
    let sender = *me.uuid().as_bytes();
    let mut states: Vec<FlowStateRepr> = ports
        .iter()
        .map(|p| {
            let (conntrack, nat) = fs.port_state(p.uuid().as_bytes(), now);
            FlowStateRepr {
                sender,
                ingress_port: *p.uuid().as_bytes(),
                conntrack,
                nat,
                ..Default::default()
            }
        })
        .collect();
    if let [one] = &mut states[..] {
        // One port whose state fits one datagram: the state and the end of
        // the answer in one message, so it arrives whole or not at all (a
        // lost one is asked for again).
        if one.conntrack.len() + one.nat.len() <= PER_ANSWER {
            one.purpose = Purpose::Answered;
            return states;
        }
    }
    let mut out: Vec<FlowStateRepr> = states
        .iter()
        .flat_map(|s| {
            let base = FlowStateRepr { sender, ingress_port: s.ingress_port, ..Default::default() };
            super::chunked(&base, &s.conntrack, &s.nat, PER_ANSWER).collect::<Vec<_>>()
        })
        .collect();
    out.extend(naming(Purpose::Answered, me, ports));
    out
}

/// The tunnel addresses of the live hosts sharing a tunnel zone with `me`.
pub fn live_peers(
    topo: &Topology,
    me: HostId,
    alive: impl IntoIterator<Item = HostId>,
) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> =
        alive.into_iter().filter(|h| *h != me).filter_map(|h| topo.tunnel_ip(me, h)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use midonet_model::{Port, PortType, TunnelZoneHost, TunnelZoneId};
    use midonet_sim::{ConnWrite, NatWrite, SimResult, Tag};
    use midonet_state::{proto, BlockKey, ConnKey, NatBinding, NatKey, NatKind, TrackerId};

    use super::super::{log::Origin, Outgoing};
    use super::*;

    const SYN: u16 = 0x002;

    fn key(sport: u16) -> ConnKey {
        ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            src_port: sport,
            dst_port: 80,
            proto: proto::TCP,
            tracker: TrackerId(uuid::Uuid::from_u128(7)),
        }
    }

    fn id(n: u128) -> [u8; 16] {
        *uuid::Uuid::from_u128(n).as_bytes()
    }

    /// A simulation at ports `ports` that tracked `k` and bound it to
    /// `public:port` (SNAT).
    fn simulated(fs: &mut FlowState, k: ConnKey, port: u16, ports: &[[u8; 16]], now: Duration) {
        let public = Ipv4Addr::new(192, 0, 2, 1);
        let nk = NatKey::new(NatKind::Snat, k);
        let b = NatBinding { ip: public, port };
        fs.nat.insert(nk, b, now + Duration::from_secs(300), now).expect("room");
        let mut r = SimResult::default();
        r.conntrack.push(ConnWrite { key: k, tcp_flags: SYN });
        r.tags.push(Tag::conntrack(&k));
        r.nat.push(NatWrite { key: nk, binding: b, created: true, reverse: false });
        let (mut out, mut stale) = (Outgoing::default(), Vec::new());
        fs.apply(&r, ports, SYN, now, &mut out, &mut stale);
    }

    #[test]
    fn a_port_hands_over_what_was_seen_at_it_and_only_that() {
        let t = Duration::from_secs(1);
        let (vm, uplink, other) = (id(1), id(2), id(3));
        let mut fs = FlowState::new(1000, 1);
        simulated(&mut fs, key(1000), 5000, &[vm, uplink], t);
        simulated(&mut fs, key(1001), 5001, &[other, uplink], t);
        // A peer's message: a connection that entered at `uplink` for `vm`.
        let k = key(2000);
        let msg = FlowStateRepr {
            sender: id(9),
            ingress_port: uplink,
            egress_ports: vec![vm],
            conntrack: vec![midonet_state::message::conntrack_repr(
                &k,
                midonet_state::ConnState::New,
            )],
            ..Default::default()
        };
        fs.install(&msg, t);
        let (ct, nat) = fs.port_state(&vm, t);
        let mut ports: Vec<u16> = ct.iter().map(|c| c.key.src_port).collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![1000, 2000]);
        assert_eq!(nat.len(), 1);
        assert_eq!((nat[0].key.src_port, nat[0].bound_port), (1000, 5000));
        assert_eq!(fs.port_state(&uplink, t).0.len(), 3, "all three went by the uplink");
        assert_eq!(fs.port_state(&id(4), t), (vec![], vec![]));
        // Expired entries leave the answer at once, and the index once it
        // has grown past twice what is live.
        let later = t + Duration::from_secs(6 * 86_400);
        fs.expire(later);
        assert_eq!(fs.port_state(&vm, later), (vec![], vec![]));
        fs.indexed += 10_000;
        fs.compact_ports();
        assert!(fs.by_port.is_empty(), "{:?}", fs.by_port);
        assert_eq!(fs.indexed, 0);
    }

    #[test]
    fn the_old_host_keeps_the_port_of_a_binding_it_allocated() {
        let t = Duration::from_secs(1);
        let vm = id(1);
        let mut fs = FlowState::new(1000, 1);
        let k = key(1000);
        fs.blocks.granted(BlockKey::of(k.tracker, Ipv4Addr::new(192, 0, 2, 1), 5000), t);
        simulated(&mut fs, k, 5000, &[vm], t);
        let nk = NatKey::new(NatKind::Snat, k);
        let exp = |fs: &FlowState| fs.nat.iter(t).find(|e| e.key == nk).map(|e| e.expires);
        assert_eq!(exp(&fs), Some(t + Duration::from_secs(300)));
        let msgs = answer(
            &mut fs,
            HostId::from_uuid(uuid::Uuid::from_u128(5)),
            &[PortId::from_uuid(uuid::Uuid::from_bytes(vm))],
            t,
        );
        assert!(exp(&fs).expect("held") > t + Duration::from_secs(86_400), "TCP established");
        // One port, two entries: one message, the end of the answer.
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].purpose, Purpose::Answered);
        assert_eq!(msgs[0].ingress_port, vm);
        assert_eq!((msgs[0].conntrack.len(), msgs[0].nat.len()), (1, 1));
        assert!(msgs.iter().all(|m| m.sender == id(5)));
        assert!(msgs.iter().all(|m| m.buffer_len() <= 1430));
    }

    #[test]
    fn answers_are_cut_to_one_datagram_and_end_with_the_ports() {
        let t = Duration::from_secs(1);
        let vm = id(1);
        let mut fs = FlowState::new(10_000, 1);
        for i in 0..100 {
            simulated(&mut fs, key(1000 + i), 5000 + i, &[vm], t);
        }
        let port = PortId::from_uuid(uuid::Uuid::from_bytes(vm));
        let msgs = answer(&mut fs, HostId::random(), &[port], t);
        let (ct, nat): (usize, usize) =
            msgs.iter().fold((0, 0), |(c, n), m| (c + m.conntrack.len(), n + m.nat.len()));
        assert_eq!((ct, nat), (100, 100));
        assert!(msgs.iter().all(|m| m.buffer_len() <= 1430));
        let mut buf = Vec::new();
        for m in &msgs {
            buf.clear();
            m.emit_vec(&mut buf).expect("emits");
            assert_eq!(FlowStateRepr::parse_bytes(&buf).as_ref(), Ok(m));
        }
        assert_eq!(ports_of(msgs.last().expect("end")), vec![port]);
        // The receiving host installs it and can hand it on in turn.
        let mut there = FlowState::new(10_000, 2);
        for m in &msgs[..msgs.len() - 1] {
            there.install(m, t);
        }
        assert_eq!(there.port_state(&vm, t).0.len(), 100);
    }

    #[test]
    fn the_index_survives_a_snapshot_and_replay() {
        let t = Duration::from_secs(1);
        let vm = id(1);
        let mut fs = FlowState::new(1000, 1);
        simulated(&mut fs, key(1000), 5000, &[vm], t);
        let snap = fs.snapshot(t);
        assert!(snap.iter().all(|(o, m)| *o == Origin::Peer || m.ingress_port == [0; 16]));
        let mut again = FlowState::new(1000, 2);
        again.replay(&snap, t);
        let (ct, nat) = again.port_state(&vm, t);
        assert_eq!((ct.len(), nat.len()), (1, 1));
    }

    #[test]
    fn a_port_waits_for_every_live_peer_or_its_patience() {
        let m = Migrations::default();
        let t0 = Instant::now();
        let (p, q) = (PortId::random(), PortId::random());
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert!(!m.gates(p));
        m.begin(&[p], &[], t0);
        assert!(!m.gates(p), "nobody to ask: no gate");
        m.begin(&[p, q], &[a, b], t0);
        assert!(m.gates(p) && m.gates(q) && m.pending());
        assert_eq!(m.answered(a, &[p]), vec![]);
        let (gave_up, ask) = m.tick(t0 + ASK_AGAIN);
        assert!(gave_up.is_empty());
        let mut want = vec![(a, vec![q]), (b, vec![p, q])];
        for (_, v) in &mut want {
            v.sort_unstable();
        }
        assert_eq!(ask, want, "each peer is asked again for what it has not answered");
        assert!(m.tick(t0 + ASK_AGAIN).1.is_empty(), "not again at once");
        assert_eq!(m.answered(b, &[p]), vec![p]);
        assert!(!m.gates(p) && m.gates(q));
        let (gave_up, _) = m.tick(t0 + IMPORT_PATIENCE);
        assert_eq!(gave_up, vec![q]);
        assert!(!m.gates(q) && !m.pending());
        m.begin(&[p], &[a], t0);
        m.forget(p);
        assert!(!m.pending());
    }

    #[test]
    fn only_the_host_a_port_is_bound_to_is_answered_and_only_from_its_address() {
        let mut topo = Topology::default();
        let (me, them, third) = (HostId::random(), HostId::random(), HostId::random());
        let tz = TunnelZoneId::random();
        for (h, ip) in [(me, "10.0.0.1"), (them, "10.0.0.2"), (third, "10.0.0.3")] {
            topo.insert(&TunnelZoneHost {
                tunnel_zone_id: tz,
                host_id: h,
                ip_address: Some(ip.parse().expect("ip")),
            });
        }
        let port = |host| Port {
            id: PortId::random(),
            port_type: PortType::Bridge,
            host_id: Some(host),
            interface_name: Some("vm".into()),
            ..Default::default()
        };
        let (theirs, not_theirs) = (port(them), port(third));
        topo.insert(&theirs);
        topo.insert(&not_theirs);
        let req = requests(them, &[theirs.id, not_theirs.id]).remove(0);
        let from = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(authorised(&topo, me, from, &req), vec![theirs.id]);
        // The same request from another peer's address: nothing.
        assert_eq!(authorised(&topo, me, Ipv4Addr::new(10, 0, 0, 3), &req), vec![]);
        let mut alive = std::collections::BTreeSet::from([me, them]);
        assert_eq!(live_peers(&topo, me, alive.iter().copied()), vec![from]);
        alive.clear();
        assert!(live_peers(&topo, me, alive.iter().copied()).is_empty());
    }
}
