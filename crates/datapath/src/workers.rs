//! The miss path on several threads: simulation off the datapath thread.
//!
//! ```text
//!  datapath thread                                worker i = shard(key) % n
//!  miss ── same key in flight? ── yes ──> joins it    │
//!            │ no                                      │
//!            └──> queue i (bounded) ─────────────> handler.on_miss
//!  done ──< eventfd wake-up <──── done queue <─────────┘
//!   apply the decision: invalidate, install, execute, generated packets
//!   joined packets: run with the installed flow's actions (none installed:
//!   handed to the workers again, one at a time per key)
//! ```
//!
//! Each worker owns an [`UpcallHandler`] of its own (the agent's handlers
//! share the topology view and the state tables, and take short locks on
//! them, never one for a whole simulation). The datapath thread only moves
//! packets and applies answers: it installs, executes and keeps its flow
//! table alone, as before, so nothing in the providers' tables needs a lock.
//!
//! * **Sharding.** A miss goes to the worker its connection hashes to, with
//!   a hash that is the same for both directions (the two endpoints are
//!   ordered before hashing), so a connection's packets are simulated in
//!   the order they arrived, by one thread, and its state writes cannot
//!   race each other. NAT changes the tuple of the reply, which may then
//!   hash elsewhere; the reply cannot exist before the forward packet left,
//!   and that happens only after its simulation's state was written.
//! * **Duplicate upcalls** (MidoNet's name): a miss whose exact key is
//!   already being simulated joins it instead of being simulated again.
//!   When the answer installs a flow, the joined packets are executed with
//!   its actions, as a later packet would be; when it does not (a drop
//!   without a flow, a parked packet, something consumed), each joined
//!   packet is a miss again, so nothing is lost that the inline path would
//!   have handled.
//! * **Invalidation while simulating.** A simulation may read the topology
//!   (or the flow state) just before a change whose invalidation the
//!   datapath thread then applies; inline, its flow was installed before
//!   the invalidation ran and was removed by it, but a worker's answer
//!   arrives after. So the workers keep a log of the tags invalidated
//!   since each miss was handed over ([`Workers::invalidated`], called by
//!   the provider for the agent's invalidations: topology, bindings,
//!   learned entries, expired state); an
//!   answer whose flow carries such a tag executes its packet (as inline
//!   would have) but installs nothing ([`WorkerStats::stale`]), and the
//!   packets that joined it are simulated again, against what is current.
//!   A flush makes every answer in flight stale. The tags an answer
//!   itself invalidates (`MissDecision::invalidate`: connections it
//!   started, state a peer sent that it was the first to see) are not
//!   logged: they name state that existed before that simulation ran, so
//!   the simulations in flight with it read it too, and marking them stale
//!   would throw away the flows of the very connection the state is for.
//!   What this leaves is one order inline had not: a packet simulated
//!   before a peer's state arrived, answered after another miss applied
//!   that state's invalidation, installs its flow (a return flow the state
//!   would have let through, dropped for its short drop lifetime); the
//!   sender's retransmission is then the documented worst case, as for a
//!   reply that arrives before the state (`agent::flowstate`).
//! * **Bounded.** A worker's queue holds [`QUEUE_DEPTH`] misses; past it
//!   the miss is dropped and counted ([`WorkerStats::overflow`]), as a full
//!   upcall ring would. The per-port upcall budget ([`crate::limit`]) is
//!   applied before a miss gets here.
//! * **Cost.** Two thread hand-offs per miss when misses come one at a
//!   time (a futex wake of the worker, an eventfd write to wake the
//!   datapath thread), fewer under load: a busy worker takes the next miss
//!   without sleeping, and wakes the datapath thread once per
//!   `WAKE_BATCH` (16) answers (or when its queue runs dry), not per
//!   answer. With `n = 0` the providers keep calling their handler inline.

use std::hash::{Hash, Hasher};

use hashbrown::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use midonet_flow::{Actions, FlowKey, InPort, UserspaceReason};

use crate::sys::Waker;
use crate::{MissDecision, UpcallHandler};

/// Misses one worker may have waiting.
pub const QUEUE_DEPTH: usize = 4096;

/// Answers a busy worker gives before it wakes the datapath thread.
const WAKE_BATCH: usize = 16;

/// A packet handed to a worker, with what the provider needs to finish it
/// (`meta`: its offload header).
#[derive(Debug)]
pub struct Miss<M> {
    /// Set by [`Workers::submit`]: the invalidation count at hand-over.
    pub seq: u64,
    pub key: FlowKey,
    pub frame: Vec<u8>,
    pub in_port: InPort,
    /// `Some`: a flow's `Action::Userspace` sent this copy up
    /// ([`UpcallHandler::on_userspace`]); `None`: a miss.
    pub reason: Option<UserspaceReason>,
    /// How deep in userspace actions the packet is (loop guard).
    pub depth: u8,
    pub meta: M,
}

impl<M> Miss<M> {
    /// A packet to hand over; [`Workers::submit`] sets its `seq`.
    pub fn new(
        key: FlowKey,
        frame: Vec<u8>,
        in_port: InPort,
        reason: Option<UserspaceReason>,
        depth: u8,
        meta: M,
    ) -> Self {
        Miss { seq: 0, key, frame, in_port, reason, depth, meta }
    }
}

/// What became of the misses handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Misses given to a worker.
    pub submitted: u64,
    /// Misses that joined one in flight with the same key.
    pub joined: u64,
    /// Answers applied (a joined miss counts once more).
    pub completed: u64,
    /// Misses dropped because their worker's queue was full.
    pub overflow: u64,
    /// Answers whose flow was not installed: a tag of theirs was
    /// invalidated while they were simulated.
    pub stale: u64,
}

/// The worker threads, and the datapath thread's view of what they do.
/// Owned and driven by the datapath thread; see the module docs.
pub struct Workers<M> {
    queues: Vec<Sender<Miss<M>>>,
    done: Receiver<(Miss<M>, MissDecision)>,
    /// Set by the worker that wakes the datapath thread, cleared by that
    /// thread before it looks: a wake-up already on its way is not sent
    /// again.
    woken: Arc<AtomicBool>,
    /// Key of every miss being simulated → misses that joined it.
    in_flight: HashMap<FlowKey, Vec<Miss<M>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Set on drop: the threads leave what is queued.
    stop: Arc<AtomicBool>,
    /// Misses accepted and not yet applied.
    outstanding: usize,
    /// Invalidations so far, and the last one of each tag since the
    /// oldest miss in flight (cleared when none is).
    seq: u64,
    last_invalidated: HashMap<u64, u64>,
    /// Misses handed over before this count are stale as a whole (a
    /// flush, or a log grown past [`LOG_LIMIT`]).
    floor: u64,
    stats: WorkerStats,
}

/// Tags the invalidation log holds before it gives up and makes every
/// miss in flight stale.
const LOG_LIMIT: usize = 1 << 16;

/// How long [`Workers::settle`] waits for the answers still due.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

impl<M: Send + 'static> Workers<M> {
    /// Starts one thread per handler (`<name>-w<i>`); each answer wakes
    /// `waker` (the datapath thread's poller).
    pub fn start(
        name: &str,
        handlers: Vec<Box<dyn UpcallHandler>>,
        waker: Arc<Waker>,
    ) -> std::io::Result<Self> {
        let (done_tx, done) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let woken = Arc::new(AtomicBool::new(false));
        let mut queues = Vec::with_capacity(handlers.len());
        let mut threads = Vec::with_capacity(handlers.len());
        for (i, mut h) in handlers.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded::<Miss<M>>(QUEUE_DEPTH);
            let done_tx = done_tx.clone();
            let waker = waker.clone();
            let stop = stop.clone();
            let woken = woken.clone();
            let t = std::thread::Builder::new().name(format!("{name}-w{i}")).spawn(move || {
                let mut unsignalled = 0;
                for m in rx.iter() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let d = match m.reason {
                        None => h.on_miss(&m.key, &m.frame, m.in_port),
                        Some(r) => h.on_userspace(r, &m.key, &m.frame, m.in_port),
                    };
                    if done_tx.send((m, d)).is_err() {
                        return;
                    }
                    // Wake the datapath thread when this worker is about to
                    // wait (nothing queued: the answer's latency matters)
                    // or every WAKE_BATCH answers under load. A worker that
                    // does not wake now has more to do and wakes later.
                    unsignalled += 1;
                    if rx.is_empty() || unsignalled >= WAKE_BATCH {
                        unsignalled = 0;
                        if !woken.swap(true, Ordering::AcqRel) {
                            waker.wake();
                        }
                    }
                }
            })?;
            queues.push(tx);
            threads.push(t);
        }
        Ok(Workers {
            queues,
            done,
            woken,
            in_flight: HashMap::new(),
            threads,
            stop,
            outstanding: 0,
            seq: 0,
            last_invalidated: HashMap::new(),
            floor: 0,
            stats: WorkerStats::default(),
        })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    /// Misses accepted and not yet applied, joined ones included.
    pub fn pending(&self) -> usize {
        self.outstanding
    }

    /// Applies the answers still due before the workers are replaced:
    /// while the workers `workers(owner)` finds have misses pending, for
    /// at most `SETTLE_TIMEOUT` (a second), sleeps a millisecond and calls
    /// `finish(owner)` (the provider's `finish_misses`; what it returns is
    /// not looked at).
    pub fn settle<S: ?Sized, R>(
        owner: &mut S,
        workers: impl Fn(&S) -> Option<&Self>,
        mut finish: impl FnMut(&mut S) -> R,
    ) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while workers(owner).is_some_and(|w| w.pending() > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            finish(owner);
        }
        if let Some(left) = workers(owner).map(Self::pending).filter(|n| *n > 0) {
            // Their packets are lost; their connections' next packets miss again.
            tracing::warn!(misses = left, "miss workers replaced with misses still in flight");
        }
    }

    /// The provider removed the flows carrying `tags`: answers in flight
    /// that would install a flow with one of them install nothing.
    pub fn invalidated(&mut self, tags: &[u64]) {
        if self.outstanding == 0 || tags.is_empty() {
            return;
        }
        self.seq += 1;
        if self.last_invalidated.len() + tags.len() > LOG_LIMIT {
            self.last_invalidated.clear();
            self.floor = self.seq;
            return;
        }
        for t in tags {
            self.last_invalidated.insert(*t, self.seq);
        }
    }

    /// The provider removed every flow.
    pub fn flushed(&mut self) {
        self.seq += 1;
        self.floor = self.seq;
        self.last_invalidated.clear();
    }

    fn is_stale(&self, m: &Miss<M>, d: &MissDecision) -> bool {
        let Some(f) = &d.install else { return false };
        m.seq < self.floor
            || f.tags.iter().any(|t| self.last_invalidated.get(t).is_some_and(|&at| at > m.seq))
    }

    /// Hands `m` to its worker, or joins it to the miss with the same key
    /// already there. Returns false when it was dropped (queue full).
    pub fn submit(&mut self, mut m: Miss<M>) -> bool {
        m.seq = self.seq;
        if self.queues.is_empty() {
            self.stats.overflow += 1;
            return false;
        }
        if m.reason.is_none() {
            if let Some(joined) = self.in_flight.get_mut(&m.key) {
                joined.push(m);
                self.stats.joined += 1;
                self.outstanding += 1;
                return true;
            }
        }
        let i = (shard(&m.key) % self.queues.len() as u64) as usize;
        let (key, lead) = (m.key, m.reason.is_none());
        match self.queues[i].try_send(m) {
            Ok(()) => {
                self.stats.submitted += 1;
                self.outstanding += 1;
                if lead {
                    self.in_flight.insert(key, Vec::new());
                }
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.overflow += 1;
                false
            }
        }
    }

    /// Takes every answer the workers have given: `apply` gets each miss
    /// with its decision, the miss first, then the packets that joined it
    /// (see the module docs). Returns how many were applied.
    pub fn complete(&mut self, mut apply: impl FnMut(Miss<M>, MissDecision)) -> usize {
        let mut n = 0;
        let mut again = Vec::new();
        self.woken.store(false, Ordering::Release);
        while let Ok((m, mut d)) = self.done.try_recv() {
            let joined = match m.reason {
                None => self.in_flight.remove(&m.key).unwrap_or_default(),
                Some(_) => Vec::new(),
            };
            if self.is_stale(&m, &d) {
                d.install = None;
                self.stats.stale += 1;
            }
            let follow: Option<Actions> = d.install.as_ref().map(|f| f.actions.clone());
            apply(m, d);
            n += 1;
            for j in joined {
                match &follow {
                    Some(actions) => {
                        apply(
                            j,
                            MissDecision { execute: actions.clone(), ..MissDecision::default() },
                        );
                        n += 1;
                    }
                    None => again.push(j),
                }
            }
        }
        self.stats.completed += n as u64;
        self.outstanding -= n + again.len();
        for j in again {
            self.submit(j);
        }
        if self.outstanding == 0 {
            self.last_invalidated.clear();
        }
        n
    }
}

impl<M> Drop for Workers<M> {
    fn drop(&mut self) {
        // The threads end after their current miss.
        self.stop.store(true, Ordering::Relaxed);
        self.queues.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A hash of the connection `k` belongs to, the same for both directions.
pub fn shard(k: &FlowKey) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let a = (k.ipv4_src, k.ipv6_src, k.l4_src);
    let b = (k.ipv4_dst, k.ipv6_dst, k.l4_dst);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    lo.hash(&mut h);
    hi.hash(&mut h);
    k.ip_proto.hash(&mut h);
    k.icmp_id.hash(&mut h);
    if k.ethertype != 0x0800 && k.ethertype != 0x86dd {
        // ARP and other non-IP: by the two MACs (ARP: the two addresses).
        let (x, y) = (k.eth_src.min(k.eth_dst), k.eth_src.max(k.eth_dst));
        (x, y, k.ethertype).hash(&mut h);
        let (p, q) = (k.arp_spa.min(k.arp_tpa), k.arp_spa.max(k.arp_tpa));
        (p, q).hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowInstall;
    use midonet_flow::{Action, FlowMask};
    use parking_lot::Mutex;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    type Seen = Arc<Mutex<Vec<(String, FlowKey)>>>;

    /// Records what it was asked, per thread, and installs a flow for
    /// every key whose source port is even.
    struct Recorder {
        seen: Seen,
        delay: Duration,
    }

    impl UpcallHandler for Recorder {
        fn on_miss(&mut self, key: &FlowKey, _frame: &[u8], _in_port: InPort) -> MissDecision {
            std::thread::sleep(self.delay);
            let me = std::thread::current().name().unwrap_or_default().to_owned();
            self.seen.lock().push((me, *key));
            let out: Actions = [Action::Output(7)].into_iter().collect();
            if key.l4_src.is_multiple_of(2) {
                MissDecision::install(FlowInstall {
                    mask: FlowMask::default(),
                    actions: out,
                    tags: vec![u64::from(key.l4_src)],
                    idle_timeout_ms: 0,
                })
            } else {
                MissDecision { execute: out, ..MissDecision::default() }
            }
        }
    }

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u16) -> FlowKey {
        FlowKey {
            in_port: InPort::Port(1),
            ethertype: 0x0800,
            ipv4_src: Ipv4Addr::from(src),
            ipv4_dst: Ipv4Addr::from(dst),
            ip_proto: 6,
            l4_src: sport,
            l4_dst: dport,
            tcp_flags: flags,
            ..FlowKey::default()
        }
    }

    fn miss(key: FlowKey, tag: u8) -> Miss<u8> {
        Miss::new(key, vec![tag], key.in_port, None, 0, tag)
    }

    fn poller_and_workers(n: usize, delay: Duration) -> (crate::sys::Poller, Workers<u8>, Seen) {
        let p = crate::sys::Poller::new().expect("poller");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hs = (0..n)
            .map(|_| Box::new(Recorder { seen: seen.clone(), delay }) as Box<dyn UpcallHandler>)
            .collect();
        let w = Workers::start("t", hs, Arc::new(p.waker().expect("waker"))).expect("start");
        (p, w, seen)
    }

    /// Waits on the poller until `want` answers were applied.
    fn collect(
        p: &mut crate::sys::Poller,
        w: &mut Workers<u8>,
        want: usize,
    ) -> Vec<(Miss<u8>, MissDecision)> {
        let mut got = Vec::new();
        let mut ready = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.len() < want && std::time::Instant::now() < deadline {
            p.wait(100, &mut ready).expect("wait");
            p.clear_wake();
            w.complete(|m, d| got.push((m, d)));
        }
        got
    }

    #[test]
    fn both_directions_of_a_connection_hash_alike_and_connections_spread() {
        let fwd = tcp([10, 0, 0, 1], 40000, [10, 0, 1, 2], 80, 0x02);
        let rev = tcp([10, 0, 1, 2], 80, [10, 0, 0, 1], 40000, 0x12);
        assert_eq!(shard(&fwd), shard(&rev));
        let mut per = [0u32; 4];
        for port in 0..4000u16 {
            per[(shard(&tcp([10, 0, 0, 1], 30000 + port, [10, 0, 1, 2], 80, 2)) % 4) as usize] += 1;
        }
        assert!(per.iter().all(|&c| (800..1200).contains(&c)), "spread over 4 workers: {per:?}");
    }

    #[test]
    fn a_connection_stays_on_one_worker_in_order_and_work_spreads_over_all() {
        let (mut p, mut w, seen) = poller_and_workers(3, Duration::ZERO);
        // 40 connections, 5 packets each (different flags, so no joining),
        // interleaved.
        let mut sent = 0;
        for round in 0..5u16 {
            for c in 0..40u16 {
                let k = if round % 2 == 0 {
                    tcp([10, 0, 0, 1], 1000 + c, [10, 0, 1, 2], 80, 1 << round)
                } else {
                    tcp([10, 0, 1, 2], 80, [10, 0, 0, 1], 1000 + c, 1 << round)
                };
                assert!(w.submit(miss(k, round as u8)));
                sent += 1;
            }
        }
        let got = collect(&mut p, &mut w, sent);
        assert_eq!(got.len(), sent);
        let seen = seen.lock();
        let mut threads = std::collections::HashSet::new();
        for c in 0..40u16 {
            let port = 1000 + c;
            let of_c: Vec<&(String, FlowKey)> =
                seen.iter().filter(|(_, k)| k.l4_src == port || k.l4_dst == port).collect();
            assert_eq!(of_c.len(), 5);
            assert!(of_c.iter().all(|(t, _)| *t == of_c[0].0), "one worker per connection");
            let flags: Vec<u16> = of_c.iter().map(|(_, k)| k.tcp_flags).collect();
            assert_eq!(flags, vec![1, 2, 4, 8, 16], "in arrival order");
            threads.insert(of_c[0].0.clone());
        }
        assert_eq!(threads.len(), 3, "every worker took connections");
        assert_eq!(w.stats().submitted, sent as u64);
        assert_eq!(w.stats().completed, sent as u64);
    }

    #[test]
    fn duplicate_misses_join_the_one_in_flight() {
        let (mut p, mut w, seen) = poller_and_workers(2, Duration::from_millis(50));
        // Even source port: the answer installs a flow.
        let k = tcp([10, 0, 0, 1], 2000, [10, 0, 1, 2], 80, 0x10);
        for i in 0..5 {
            assert!(w.submit(miss(k, i)));
        }
        assert_eq!(w.pending(), 5);
        let got = collect(&mut p, &mut w, 5);
        assert_eq!(seen.lock().len(), 1, "simulated once");
        assert_eq!(got.len(), 5);
        assert!(got[0].1.install.is_some(), "the first installs");
        let tags: Vec<u8> = got.iter().map(|(m, _)| m.meta).collect();
        assert_eq!(tags, vec![0, 1, 2, 3, 4], "joined packets follow in order");
        for (_, d) in &got[1..] {
            assert!(d.install.is_none());
            assert_eq!(d.execute.as_slice(), &[Action::Output(7)], "the flow's actions");
        }
        assert_eq!(w.stats().joined, 4);
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn joined_misses_are_simulated_again_when_nothing_was_installed() {
        let (mut p, mut w, seen) = poller_and_workers(1, Duration::from_millis(20));
        // Odd source port: executed, no flow.
        let k = tcp([10, 0, 0, 1], 2001, [10, 0, 1, 2], 80, 0x10);
        for i in 0..3 {
            assert!(w.submit(miss(k, i)));
        }
        let got = collect(&mut p, &mut w, 3);
        assert_eq!(got.len(), 3);
        assert_eq!(seen.lock().len(), 3, "each simulated");
        let tags: Vec<u8> = got.iter().map(|(m, _)| m.meta).collect();
        assert_eq!(tags, vec![0, 1, 2]);
    }

    #[test]
    fn a_flow_invalidated_while_it_was_simulated_is_not_installed() {
        let (mut p, mut w, seen) = poller_and_workers(1, Duration::from_millis(50));
        let (a, b) = (
            tcp([10, 0, 0, 1], 3000, [10, 0, 1, 2], 80, 0x10),
            tcp([10, 0, 0, 1], 3002, [10, 0, 1, 2], 80, 0x10),
        );
        assert!(w.submit(miss(a, 0)));
        assert!(w.submit(miss(a, 1)));
        assert!(w.submit(miss(b, 2)));
        // While they are simulated, the topology changes under `a`'s flow
        // (its tag is its source port), not under `b`'s.
        w.invalidated(&[3000, 9999]);
        let got = collect(&mut p, &mut w, 3);
        let first = &got[0];
        assert_eq!(first.0.meta, 0);
        assert!(first.1.install.is_none(), "stale: executed, not installed");
        assert_eq!(first.1.execute.as_slice(), &[Action::Output(7)]);
        // The joined packet was simulated again and that answer installs.
        let again = got.iter().find(|(m, _)| m.meta == 1).expect("joined one answered");
        assert!(again.1.install.is_some(), "simulated again after the change");
        let other = got.iter().find(|(m, _)| m.meta == 2).expect("b answered");
        assert!(other.1.install.is_some(), "an unrelated flow installs");
        assert_eq!(seen.lock().len(), 3);
        assert_eq!(w.stats().stale, 1);
        // A flush makes everything in flight stale.
        assert!(w.submit(miss(b, 3)));
        w.flushed();
        let got = collect(&mut p, &mut w, 1);
        assert!(got[0].1.install.is_none());
        assert_eq!(w.stats().stale, 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (_p, mut w, _seen) = poller_and_workers(1, Duration::from_millis(200));
        let mut ok = 0;
        for port in 0..(QUEUE_DEPTH as u16 + 50) {
            if w.submit(miss(tcp([10, 0, 0, 1], port, [10, 0, 1, 2], 80, 2), 0)) {
                ok += 1;
            }
        }
        // One may already be taken off the queue by the worker.
        assert!((QUEUE_DEPTH..=QUEUE_DEPTH + 1).contains(&ok), "accepted {ok}");
        assert_eq!(w.stats().overflow, (QUEUE_DEPTH as u64 + 50) - ok as u64);
    }
}
