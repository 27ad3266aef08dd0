//! Flow state on this host: the connection-tracking table, fed by the
//! simulations run here and by peers' messages, kept alive by datapath
//! activity, expired, and replicated (issue 8; reference §2.11, §3).
//!
//! ```text
//!  miss ─ sim (reads ConnTable) ─ SimResult.conntrack ─> track ─┬─ new: its tag invalidated by the datapath
//!                                                               │       before this miss's flow installs
//!                                                               └─ message ─UDP─> peers (below), sent
//!                                                                  before the packet is forwarded
//!  peer message ─> sender in a shared tunnel zone? parsed? ─> imported ─> its tags invalidated (core)
//!  core, 1 s: expiry (bounded sweep) ─> tags invalidated
//!  core, refresh_ms: flows used since the last round ─> their connections' expiry pushed out
//! ```
//!
//! * **Who receives** (MidoNet's `PeerResolver`, reference §3.2): the
//!   hosts of the ports the simulation output to, and of every port in a
//!   stateful port group of the ingress port or of an egress port; never
//!   this host. The list per port is computed with the view
//!   ([`View::state_peers`](crate::handler::View)).
//! * **Whom we believe**: tunnel-zone peers only ([`replicator`], the
//!   socket and what a received message goes through).
//! * **Whose binding wins**: the host that allocated a binding. A binding
//!   received from a peer replaces a live copy here that disagrees with it
//!   (its expiry ran by this host's flows, the sender's by its own, so the
//!   sender may have bound the 5-tuple or the port anew), and the replaced
//!   copy's flows are invalidated; only a binding this host allocated (its
//!   port in a block held here) is kept against a peer's.
//! * **Return traffic** is recognised after the fact: a simulation whose
//!   tags name a tracked connection it did not record found that
//!   connection's reply, so the entry moves to `Replied` (kernel timeouts:
//!   TCP established five days, UDP assured 180 s) and that change is sent
//!   to the hosts the reply goes to, so the initiator's copy is
//!   established too.
//! * **Refresh from activity**: every `conntrack_refresh_ms` the flow
//!   table is read; a flow used since the last round refreshes every
//!   connection its tags name (forward flows recorded them, return flows
//!   looked them up). An idle connection therefore lives as long as the
//!   kernel's would, whatever the flows' own idle timeout: when its flows
//!   expire and a packet comes again, the simulation finds it. Bindings
//!   are refreshed the same way (with no connection tracked as well).
//! * **Closing, from the datapath**: the datapath reports the TCP flags
//!   each flow carried (OR'ed, as OVS does). The first round that sees
//!   FIN or RST on a flow closes what its tags name: a connection moves to
//!   `Closing` (120 s) or `Closed` (10 s), a binding gets that lifetime
//!   too and keeps it while its flows stay busy. So a closed connection's
//!   state goes after the kernel's TIME_WAIT instead of its established
//!   timeout (which filled the tables at a few thousand connections per
//!   second). A SYN that misses onto a closing binding (the client reused
//!   the 5-tuple) opens it again.
//! * **Ports that move** ([`migrate`]): every connection and binding is
//!   indexed by the ports of the messages it came in or went out with; a
//!   host a port is bound to asks its live peers for that port's state
//!   before it simulates the port's packets.
//! * **Replies tell nobody**: a binding a reverse lookup found (the reply
//!   of a NATed connection, restored) is refreshed here and not sent; the
//!   peers hold it, from the host that made it (MidoNet replicates what a
//!   simulation adds, never what it looked up).
//! * **Lost messages**: every simulation that records a connection sends
//!   it again (a flow re-simulated after expiry or invalidation), and a
//!   return flow simulated before the state arrived carries the
//!   connection's tag, so the message's arrival re-simulates it. A reply
//!   that arrives before the state is dropped by a stateful rule (the
//!   sender's retransmission then passes): that is the documented worst
//!   case, one retransmission, not a broken connection.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use midonet_datapath::RevNatTable;

use midonet_model::PortId;
use midonet_sim::{nat_tags, SimAction, SimResult, Tag};
use midonet_state::message::{conntrack_repr, install, nat_repr, Installed};
use midonet_state::{
    BlockKey, ConnKey, ConnState, ConnStats, ConnTable, ConntrackCfg, NatBinding, NatKey, NatKind,
    NatTable, PortBlocks, Tracked,
};
use midonet_wire::flowstate::{ConntrackRepr, FlowStateRepr, NatRepr};
use serde::Serialize;

use crate::handler::{Egress, View};

pub mod kernel;
pub mod learned;
mod lifetime;
pub mod log;
pub mod migrate;
pub mod replicator;

use log::Origin;
pub use replicator::{receive, Replicator};

/// How many entries one expiry round may visit (the sweep is incremental).
const EXPIRY_BUDGET: usize = 65_536;

/// Bindings received from a peer live this long unless refreshed.
const NAT_IMPORT_TTL: Duration = Duration::from_secs(180);

/// How long a SNAT block claim may go unanswered before a packet may ask
/// again (the claim was lost with a session).
const CLAIM_PATIENCE: Duration = Duration::from_secs(5);

/// A binding whose connection closed: the lifetime a refresh gives it
/// from its last use, and the TCP flags (FIN, RST) already acted on.
#[derive(Clone, Copy, Debug)]
struct Closing {
    ttl: Duration,
    flags: u16,
}

/// What one simulation tells the peers.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub conntrack: Vec<ConntrackRepr>,
    pub nat: Vec<NatRepr>,
}

impl Outgoing {
    pub fn is_empty(&self) -> bool {
        self.conntrack.is_empty() && self.nat.is_empty()
    }
}

/// What flows' tags name: a connection or a NAT binding.
#[derive(Debug, Clone, Copy)]
enum Named {
    Conn(ConnKey),
    Nat(NatKey),
}

/// The tables and the index from flow tags to connections and bindings.
pub struct FlowState {
    pub conn: ConnTable,
    pub nat: NatTable,
    /// SNAT port blocks held here and known to be held elsewhere.
    pub blocks: PortBlocks,
    /// `Tag::conntrack(key)` → key for every tracked connection, and both
    /// tags of every binding (`nat_tags`) → its forward key: what a flow's
    /// tag names.
    by_tag: HashMap<u64, Named>,
    /// SNAT blocks asked of the cluster and not answered yet, since when
    /// (the asking simulation's clock).
    claiming: HashMap<BlockKey, Duration>,
    /// Bindings whose connection closed: the lifetime a refresh gives them
    /// ([`FlowState::closing_ttl`]) and the flags acted on.
    closing: HashMap<NatKey, Closing>,
    /// Counters as last mirrored into the metrics.
    mirrored: ConnStats,
    /// The ports each connection and binding was seen at (the ingress and
    /// egress ports of its messages): port id → tags (`by_tag` keys), so a
    /// port's state can be handed to the host it moves to ([`migrate`]).
    /// Entries are not removed as they expire: the lists are compacted
    /// when they hold twice as many tags as `by_tag` (plus slack).
    by_port: HashMap<Id, Vec<u64>>,
    /// Tags in `by_port`, over all ports.
    indexed: usize,
    /// The datapath's reverse-NAT table, kept equal to `nat` ([`kernel`]);
    /// `None` when the datapath has none (or it is switched off).
    rev_nat: Option<Arc<dyn RevNatTable>>,
}

/// A raw port id, as in flow-state messages.
type Id = [u8; 16];

impl FlowState {
    pub fn new(max_entries: usize, hash_seed: u64) -> FlowState {
        let cfg = ConntrackCfg { max_entries, ..ConntrackCfg::default() };
        FlowState {
            conn: ConnTable::new(cfg, hash_seed),
            nat: NatTable::new(max_entries, hash_seed.rotate_left(17)),
            blocks: PortBlocks::new(),
            by_tag: HashMap::new(),
            claiming: HashMap::new(),
            closing: HashMap::new(),
            mirrored: ConnStats::default(),
            by_port: HashMap::new(),
            indexed: 0,
            rev_nat: None,
        }
    }

    /// Records that the entry `tag` names was seen at `ports` (zero ids,
    /// which no port has, are skipped).
    fn index_ports(&mut self, ports: &[Id], tag: u64) {
        for p in ports.iter().filter(|p| **p != [0; 16]) {
            self.by_port.entry(*p).or_default().push(tag);
            self.indexed += 1;
        }
    }

    /// Drops the tags of expired entries from the port index once it holds
    /// twice what is live.
    fn compact_ports(&mut self) {
        if self.indexed <= 2 * self.by_tag.len() + 4096 {
            return;
        }
        let live = &self.by_tag;
        let mut n = 0;
        self.by_port.retain(|_, tags| {
            tags.retain(|t| live.contains_key(t));
            tags.sort_unstable();
            tags.dedup();
            n += tags.len();
            !tags.is_empty()
        });
        self.indexed = n;
    }

    /// The live connections and bindings seen at `port`, each once.
    fn port_entries(
        &self,
        port: &Id,
        now: Duration,
    ) -> (Vec<ConntrackRepr>, Vec<(NatKey, NatBinding)>) {
        let Some(tags) = self.by_port.get(port) else { return (Vec::new(), Vec::new()) };
        let mut conns: Vec<ConnKey> = Vec::new();
        let mut nats: Vec<NatKey> = Vec::new();
        for t in tags {
            match self.by_tag.get(t) {
                Some(Named::Conn(k)) => conns.push(*k),
                Some(Named::Nat(k)) => nats.push(*k),
                None => {}
            }
        }
        conns.sort_unstable();
        conns.dedup();
        nats.sort_unstable();
        nats.dedup();
        let ct = conns
            .iter()
            .filter_map(|k| self.conn.lookup(k, now))
            .map(|(c, _)| conntrack_repr(&c.key, c.state))
            .collect();
        let nat = nats.into_iter().filter_map(|k| Some((k, self.nat.get(&k, now)?))).collect();
        (ct, nat)
    }

    /// What this host holds for `port`: the live connections and bindings
    /// seen at it, for the host it moved to. Bindings this host allocated
    /// are held for their connection's whole established timeout from now
    /// (the new host refreshes its copy, not this one; the port must not go
    /// back to the block while the connection may live).
    pub fn port_state(&mut self, port: &Id, now: Duration) -> (Vec<ConntrackRepr>, Vec<NatRepr>) {
        let (ct, nats) = self.port_entries(port, now);
        for (k, b) in &nats {
            if allocated_here(&self.blocks, k, *b) {
                let ttl = self.nat_ttl(k);
                self.nat.touch(k, now + ttl, now);
            }
        }
        (ct, nats.iter().map(|(k, b)| nat_repr(k, *b)).collect())
    }

    fn index(&mut self, key: ConnKey) {
        self.by_tag.insert(Tag::conntrack(&key).0, Named::Conn(key));
    }

    fn index_nat(&mut self, key: NatKey, b: NatBinding) {
        for t in nat_tags(&key, b) {
            self.by_tag.insert(t.0, Named::Nat(key));
        }
    }

    /// Whether to ask the cluster for `b` now (not already asked). Until
    /// the answer, allocations wait for `b` rather than ask for another.
    pub fn claim(&mut self, b: BlockKey, now: Duration) -> bool {
        self.blocks.asked(b);
        match self.claiming.entry(b) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(now);
                true
            }
        }
    }

    /// The blocks allocations chose to claim ahead of need
    /// (`midonet_state::snat`), now counted as asked: send their claims.
    pub fn claims_ahead(&mut self, now: Duration) -> Vec<BlockKey> {
        let mut ahead = self.blocks.take_wanted();
        ahead.retain(|b| self.claiming.insert(*b, now).is_none());
        ahead
    }

    /// The cluster answered for `b`: a later packet may ask again. Returns
    /// how long the claim took.
    pub fn answered(&mut self, b: &BlockKey, now: Duration) -> Option<Duration> {
        self.claiming.remove(b).map(|since| now.saturating_sub(since))
    }

    /// Apply what one simulation recorded and saw. What to tell the peers
    /// goes to `out`; the tags of connections tracked and bindings created
    /// for the first time go to `stale` (flows that looked for them and
    /// missed).
    ///
    /// `ports` are the simulation's ingress and egress ports: what is new
    /// is indexed under them (for [`port_state`](Self::port_state)).
    pub fn apply(
        &mut self,
        r: &SimResult,
        ports: &[Id],
        tcp_flags: u16,
        now: Duration,
        out: &mut Outgoing,
        stale: &mut Vec<u64>,
    ) -> usize {
        let mut full = 0;
        for w in &r.conntrack {
            match self.conn.track(w.key, w.tcp_flags, now) {
                Ok(t) => {
                    if t == Tracked::New {
                        let tag = Tag::conntrack(&w.key).0;
                        stale.push(tag);
                        self.index(w.key);
                        self.index_ports(ports, tag);
                        // (A dead entry of the 5-tuple may be there still.)
                        self.kernel_ct_insert(&[w.key], true);
                    }
                    if let Some((c, _)) = self.conn.lookup(&w.key, now) {
                        out.conntrack.push(conntrack_repr(&c.key, c.state));
                    }
                }
                Err(_) => full += 1,
            }
        }
        for w in &r.nat {
            // The simulation stored a new binding already; a used one lives
            // as long as its connection is in use.
            if w.created {
                let tags = nat_tags(&w.key, w.binding);
                stale.extend(tags.iter().map(|t| t.0));
                self.index_nat(w.key, w.binding);
                self.index_ports(ports, tags[0].0);
            } else {
                // A new connection on a closing binding's 5-tuple.
                use midonet_flow::key::tcp_flags::{ACK, SYN};
                if tcp_flags & (SYN | ACK) == SYN {
                    self.closing.remove(&w.key);
                }
                let ttl = self.nat_ttl(&w.key);
                self.nat.touch(&w.key, now + ttl, now);
                if w.reverse {
                    // A reply restored: the peers hold the binding (it came
                    // from the host that made it), and each keeps its copy
                    // alive by its own flows' activity.
                    continue;
                }
            }
            out.nat.push(nat_repr(&w.key, w.binding));
        }
        if self.rev_nat.is_some() && !r.nat.is_empty() {
            let used: Vec<(NatKey, NatBinding)> =
                r.nat.iter().map(|w| (w.key, w.binding)).collect();
            self.kernel_write(&used);
        }
        // A split whose second half found the connection carries no tag of
        // it (the datapath checks it): the reply seen, as below. The
        // datapath's table may have lost it (an LRU evicts): put it back,
        // or every later reply misses too.
        if let Some(k) = r.split.as_ref().and_then(|s| s.conntrack) {
            self.reply_seen(&k, tcp_flags, now, out);
            self.kernel_ct_insert(&[k], false);
        }
        if self.by_tag.is_empty() {
            return full;
        }
        // Return traffic: a tag naming a tracked connection this simulation
        // did not record is a lookup that found it.
        for t in &r.tags {
            let Some(Named::Conn(k)) = self.by_tag.get(&t.0).copied() else { continue };
            if r.conntrack.iter().any(|w| w.key == k) {
                continue;
            }
            self.reply_seen(&k, tcp_flags, now, out);
        }
        full
    }

    /// A reply of the tracked connection `k` was simulated: its state
    /// advances, and a change goes to the peers.
    fn reply_seen(&mut self, k: &ConnKey, tcp_flags: u16, now: Duration, out: &mut Outgoing) {
        let before = self.conn.lookup(k, now).map(|(c, _)| c.state);
        if let Some((c, _)) = self.conn.packet(&k.reversed(), tcp_flags, now) {
            if Some(c.state) != before {
                out.conntrack.push(conntrack_repr(&c.key, c.state));
            }
        }
    }

    /// Import a peer's message; returns what it did and the tags of the
    /// flows it makes stale.
    ///
    /// Only what is new here makes flows stale: a connection tracked for the
    /// first time, a binding not held before (or bound elsewhere). A peer
    /// refreshing what this host knows (every simulation that used a binding
    /// says so) changes no forwarding decision; invalidating on it made each
    /// host remove the other's flows for every connection.
    pub fn install(&mut self, msg: &FlowStateRepr, now: Duration) -> (Installed, Vec<Tag>) {
        let known_conns: Vec<Option<ConnState>> = msg
            .conntrack
            .iter()
            .map(|c| self.conn.lookup(&ConnKey::from(&c.key), now).map(|(c, _)| c.state))
            .collect();
        let known_nat: Vec<Option<NatBinding>> = msg
            .nat
            .iter()
            .map(|n| {
                let kind = NatKind::from_code(n.kind)?;
                self.nat.get(&NatKey::new(kind, ConnKey::from(&n.key)), now)
            })
            .collect();
        // A binding this host allocated (its port in a block held here) is
        // never replaced by a peer's; any other copy is (`NatTable::import`).
        let blocks = &self.blocks;
        let own = |k: &NatKey, b: NatBinding| allocated_here(blocks, k, b);
        let mut replaced = Vec::new();
        let done = install(
            msg,
            &mut self.conn,
            &mut self.nat,
            now + NAT_IMPORT_TTL,
            now,
            &own,
            &mut replaced,
        );
        let mut tags = Vec::new();
        for (k, b) in &replaced {
            // Their flows translate with the old binding.
            self.closing.remove(k);
            tags.extend(nat_tags(k, *b));
        }
        let ports: Vec<Id> =
            std::iter::once(msg.ingress_port).chain(msg.egress_ports.iter().copied()).collect();
        // Every live entry is indexed under the message's ports (known ones
        // too: a port's entries may come in several messages; duplicates go
        // at the next compaction).
        let kernel = self.rev_nat.is_some();
        let (mut new, mut fresh, mut refused_conns) = (Vec::new(), Vec::new(), Vec::new());
        for (c, known) in msg.conntrack.iter().zip(known_conns) {
            let key = ConnKey::from(&c.key);
            let Some((now_held, _)) = self.conn.lookup(&key, now) else {
                refused_conns.push(key);
                continue;
            };
            let tag = Tag::conntrack(&key);
            self.index_ports(&ports, tag.0);
            // New here: into the datapath's table too, where the datapath
            // may have put it already from this message (and stamped its
            // replies). Opened again: its entry there starts afresh (its
            // flags are the replies' since it was written).
            let ended = |s: ConnState| matches!(s, ConnState::Closing | ConnState::Closed);
            match known {
                None => {
                    self.index(key);
                    tags.push(tag);
                    new.push(key);
                }
                Some(was) if ended(was) && !ended(now_held.state) => fresh.push(key),
                Some(_) => {}
            }
        }
        if kernel {
            self.kernel_ct_remove(&refused_conns);
            self.kernel_ct_insert(&new, false);
            self.kernel_ct_insert(&fresh, true);
        }
        // What the table holds now goes to the datapath; what it refused
        // comes out (the datapath may have taken it from the message as
        // it arrived).
        let (mut held, mut refused) = (Vec::new(), Vec::new());
        for (n, before) in msg.nat.iter().zip(known_nat) {
            let Some(kind) = NatKind::from_code(n.kind) else { continue };
            let key = NatKey::new(kind, ConnKey::from(&n.key));
            let theirs = NatBinding { ip: n.bound_ip, port: n.bound_port };
            let now_held = self.nat.get(&key, now);
            match now_held {
                Some(b) if before != Some(b) => {
                    self.index_nat(key, b);
                    let t = nat_tags(&key, b);
                    self.index_ports(&ports, t[0].0);
                    tags.extend(t);
                }
                // Known already: its refresh pushes the expiry out. Its
                // owner simulated a packet of the connection with it now
                // (a client reusing a closed connection's 5-tuple, or a
                // flow re-simulated): no longer closing, until its flows
                // say so again.
                Some(b) => {
                    self.closing.remove(&key);
                    let ttl = self.nat_ttl(&key);
                    self.nat.touch(&key, now + ttl, now);
                    self.index_ports(&ports, nat_tags(&key, b)[0].0);
                }
                None => {}
            }
            if !kernel {
                continue;
            }
            match now_held {
                Some(b) => {
                    held.push((key, b));
                    if b != theirs {
                        refused.push((key, theirs));
                    }
                }
                None => refused.push((key, theirs)),
            }
        }
        if kernel {
            self.kernel_clear(&replaced);
            self.kernel_clear(&refused);
            self.kernel_write(&held);
        }
        (done, tags)
    }

    /// Load what this host's log holds (see [`log`]): everything is
    /// imported as if received; the SNAT bindings made here take their
    /// blocks back. Returns those blocks, to claim again in the store.
    pub fn replay(&mut self, records: &[(Origin, FlowStateRepr)], now: Duration) -> Vec<BlockKey> {
        let mut blocks = Vec::new();
        for (origin, msg) in records {
            self.install(msg, now);
            if *origin != Origin::Here {
                continue;
            }
            for n in &msg.nat {
                if NatKind::from_code(n.kind) != Some(NatKind::Snat) {
                    continue;
                }
                let key = NatKey::new(NatKind::Snat, ConnKey::from(&n.key));
                if self.nat.get(&key, now).is_some() {
                    let tracker = key.conn.tracker;
                    self.blocks.rebind(tracker, n.bound_ip, n.bound_port, now);
                    blocks.push(BlockKey::of(tracker, n.bound_ip, n.bound_port));
                }
            }
        }
        blocks.sort_unstable();
        blocks.dedup();
        blocks
    }

    /// The live tables as log records: connections, then bindings (those
    /// in blocks this host holds count as made here).
    pub fn snapshot(&self, now: Duration) -> Vec<(Origin, FlowStateRepr)> {
        const PER_RECORD: usize = 1000;
        let none = FlowStateRepr::default();
        let conns: Vec<ConntrackRepr> =
            self.conn.iter(now).map(|c| conntrack_repr(&c.key, c.state)).collect();
        let mut out: Vec<(Origin, FlowStateRepr)> =
            chunked(&none, &conns, &[], PER_RECORD).map(|m| (Origin::Peer, m)).collect();
        let (mut here, mut peer) = (Vec::new(), Vec::new());
        for e in self.nat.iter(now) {
            let mine = allocated_here(&self.blocks, &e.key, e.binding);
            (if mine { &mut here } else { &mut peer }).push(nat_repr(&e.key, e.binding));
        }
        for (origin, list) in [(Origin::Here, here), (Origin::Peer, peer)] {
            out.extend(chunked(&none, &[], &list, PER_RECORD).map(|m| (origin, m)));
        }
        // The port index, as the same entries again under each port they
        // were seen at (a replay installs what is known as a refresh, and
        // indexes it).
        let mut ports: Vec<&Id> = self.by_port.keys().collect();
        ports.sort_unstable();
        for port in ports {
            let (ct, nats) = self.port_entries(port, now);
            let nat: Vec<NatRepr> = nats.iter().map(|(k, b)| nat_repr(k, *b)).collect();
            let base = FlowStateRepr { ingress_port: *port, ..Default::default() };
            out.extend(chunked(&base, &ct, &nat, PER_RECORD).map(|m| (Origin::Peer, m)));
        }
        out
    }

    /// Counters since the last call (for the metrics); `entries` is the
    /// size now.
    pub fn stats_delta(&mut self) -> ConnStats {
        let s = self.conn.stats();
        let m = self.mirrored;
        self.mirrored = s;
        ConnStats {
            entries: s.entries,
            inserted: s.inserted - m.inserted,
            expired: s.expired - m.expired,
            evicted: s.evicted - m.evicted,
            insert_failed: s.insert_failed - m.insert_failed,
            removed: s.removed - m.removed,
        }
    }

    /// Live connections, at most `limit`, for `GET /conntrack`.
    pub fn list(&self, now: Duration, limit: usize) -> Vec<ConnRow> {
        let mut rows: Vec<ConnRow> = self
            .conn
            .iter(now)
            .take(limit)
            .map(|c| ConnRow {
                tracker: c.key.tracker.to_string(),
                proto: c.key.proto,
                src: c.key.src,
                src_port: c.key.src_port,
                dst: c.key.dst,
                dst_port: c.key.dst_port,
                state: c.state,
                expires_in_s: c.expires.saturating_sub(now).as_secs(),
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.tracker.as_str(), a.src, a.src_port).cmp(&(b.tracker.as_str(), b.src, b.src_port))
        });
        rows
    }
}

/// One NAT binding as `GET /nat` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NatRow {
    pub kind: NatKind,
    pub tracker: String,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    /// What the packet is translated to.
    pub ip: Ipv4Addr,
    pub port: u16,
    pub expires_in_s: u64,
}

impl FlowState {
    /// Live bindings, at most `limit`, for `GET /nat`.
    pub fn nat_list(&self, now: Duration, limit: usize) -> Vec<NatRow> {
        self.nat
            .iter(now)
            .take(limit)
            .map(|e| NatRow {
                kind: e.key.kind,
                tracker: e.key.conn.tracker.to_string(),
                proto: e.key.conn.proto,
                src: e.key.conn.src,
                src_port: e.key.conn.src_port,
                dst: e.key.conn.dst,
                dst_port: e.key.conn.dst_port,
                ip: e.binding.ip,
                port: e.binding.port,
                expires_in_s: e.expires.saturating_sub(now).as_secs(),
            })
            .collect()
    }
}

/// One connection as `GET /conntrack` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnRow {
    pub tracker: String,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    pub state: midonet_state::ConnState,
    pub expires_in_s: u64,
}

/// Whether this host allocated binding `b` of `k`: a SNAT binding whose
/// port is in a block held here.
fn allocated_here(blocks: &PortBlocks, k: &NatKey, b: NatBinding) -> bool {
    k.kind == NatKind::Snat && blocks.holds(&BlockKey::of(k.conn.tracker, b.ip, b.port))
}

/// Messages like `base` carrying `ct`, then `nat`, at most `per` entries
/// each (none when both are empty).
pub(crate) fn chunked<'a>(
    base: &'a FlowStateRepr,
    ct: &'a [ConntrackRepr],
    nat: &'a [NatRepr],
    per: usize,
) -> impl Iterator<Item = FlowStateRepr> + 'a {
    let conns = ct.chunks(per).map(|c| FlowStateRepr { conntrack: c.to_vec(), ..base.clone() });
    let nats = nat.chunks(per).map(|n| FlowStateRepr { nat: n.to_vec(), ..base.clone() });
    conns.chain(nats)
}

/// The hosts a simulation's state goes to (module docs): egress hosts and
/// the hosts of the stateful port groups of the ingress and egress ports.
pub fn peers(view: &View, ingress: PortId, actions: &[SimAction]) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    if let Some(p) = view.state_peers.get(&ingress) {
        out.extend(p);
    }
    for a in actions {
        let SimAction::ToPort(p) = a else { continue };
        if let Some(Egress::Remote { dst, .. }) = view.egress.get(p) {
            out.push(*dst);
        }
        if let Some(g) = view.state_peers.get(p) {
            out.extend(g);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The egress ports of a simulation, for the message.
pub fn egress_ports(actions: &[SimAction]) -> Vec<[u8; 16]> {
    let mut v: Vec<[u8; 16]> = actions
        .iter()
        .filter_map(|a| match a {
            SimAction::ToPort(p) => Some(*p.uuid().as_bytes()),
            SimAction::Rewrite(_) => None,
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Tunnel-zone peers' addresses: the hosts sharing a zone with `me`.
pub fn trusted_peers(
    topo: &midonet_model::Topology,
    me: midonet_model::HostId,
) -> HashSet<Ipv4Addr> {
    let zones: HashSet<_> = topo
        .tunnel_zone_hosts
        .values()
        .filter(|m| m.host_id == me)
        .map(|m| m.tunnel_zone_id)
        .collect();
    topo.tunnel_zone_hosts
        .values()
        .filter(|m| m.host_id != me && zones.contains(&m.tunnel_zone_id))
        .filter_map(|m| m.ip_address)
        .collect()
}

/// For every port in a stateful port group, the tunnel addresses of the
/// other hosts with a port in one of its stateful groups.
pub fn state_peers(
    topo: &midonet_model::Topology,
    me: midonet_model::HostId,
) -> HashMap<PortId, Vec<Ipv4Addr>> {
    let mut out: HashMap<PortId, Vec<Ipv4Addr>> = HashMap::new();
    for g in topo.port_groups.values().filter(|g| g.stateful) {
        let members: Vec<&midonet_model::Port> = topo.port_group_members(g.id).collect();
        let hosts: Vec<Ipv4Addr> = members
            .iter()
            .filter_map(|p| p.host_id)
            .filter(|h| *h != me)
            .filter_map(|h| topo.tunnel_ip(me, h))
            .collect();
        for p in members {
            out.entry(p.id).or_default().extend(hosts.iter().copied());
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    out
}

#[cfg(test)]
mod tests;
