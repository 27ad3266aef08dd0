//! The connection-tracking table.
//!
//! A connection is stored once, under its **forward key** (the first
//! packet's [`ConnKey`] at its tracker). A packet is a *return* packet when
//! its key reversed is a tracked forward key; that is the only lookup
//! ([`ConnTable::is_return`]). MidoNet stored the return key with the value
//! `RETURN` instead; the two are equivalent, and keeping the forward key
//! lets one entry answer both directions and hold the connection's state.
//!
//! # Timeouts (the kernel's `nf_conntrack` defaults)
//!
//! | protocol | state                     | timeout |
//! |----------|---------------------------|---------|
//! | TCP      | SYN sent, no reply        | 120 s (`tcp_timeout_syn_sent`) |
//! | TCP      | picked up mid-stream, no reply | 300 s (`tcp_timeout_unacknowledged`) |
//! | TCP      | replied (established)     | 5 days (`tcp_timeout_established`) |
//! | TCP      | FIN seen                  | 120 s (`tcp_timeout_fin_wait`/`time_wait`) |
//! | TCP      | RST seen                  | 10 s (`tcp_timeout_close`) |
//! | UDP      | unreplied / replied       | 30 s / 180 s (`udp_timeout` / `_stream`) |
//! | ICMP     | any                       | 30 s (`icmp_timeout`) |
//! | other    | any                       | 600 s (`generic_timeout`) |
//!
//! Every packet the caller reports ([`ConnTable::packet`]) and every
//! [`ConnTable::touch`] (the agent calls it when a flow's datapath counters
//! moved) pushes the expiry to `now + timeout(state)`. So an idle
//! established TCP connection lives 5 days, as through the kernel, and not
//! the 60–90 s of MidoNet's refcount-and-TTL scheme (reference §3.2, §8.7).
//!
//! # Full table: eviction policy
//!
//! The table holds at most `max_entries`. Inserting into a full table:
//!
//! 1. looks at the 8 entries under the clock hand (the kernel's
//!    `NF_CT_EVICTION_RANGE`) and drops those already expired;
//! 2. if none was, evicts among them the **not yet replied** or closing
//!    entry with the earliest expiry (the kernel's `early_drop`: a flood of
//!    new connections cannot push out established ones);
//! 3. if all 8 are replied and live, the new connection is **not tracked**
//!    ([`Full`]; the kernel drops the packet). Its flow stays a forward
//!    flow: replies to it are not let in by a return-flow rule until room
//!    frees up.
//!
//! Each outcome is counted in [`ConnStats`].
//!
//! Expiry is incremental: [`ConnTable::expire`] visits a bounded number of
//! entries from the clock hand, so the caller spreads the work over time
//! (for instance `len / 100` entries a second visits everything every 100 s;
//! a lookup never reports an expired entry, whether or not it was swept).

use std::time::Duration;

use serde::Serialize;

use crate::key::{proto, ConnKey};
use crate::table::ExpiringMap;
use crate::{ms, Full};

/// TCP flag bits, as in `midonet_flow::tcp_flags`.
mod tcp {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
}

/// How many entries an insert into a full table looks at (the kernel's
/// `NF_CT_EVICTION_RANGE`).
pub const EVICTION_SAMPLE: usize = 8;

/// Where a connection is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ConnState {
    /// TCP: a SYN went out, nothing came back.
    SynSent,
    /// No reply yet (UDP, ICMP, other; TCP picked up without a SYN).
    New,
    /// Traffic seen in both directions (TCP established, UDP assured).
    Replied,
    /// TCP: a FIN was seen.
    Closing,
    /// TCP: an RST was seen.
    Closed,
}

impl ConnState {
    /// Whether the entry may be evicted from a full table.
    pub fn evictable(self) -> bool {
        self != ConnState::Replied
    }

    /// How far along a connection is: states only move forward.
    fn stage(self) -> u8 {
        match self {
            ConnState::SynSent | ConnState::New => 0,
            ConnState::Replied => 1,
            ConnState::Closing => 2,
            ConnState::Closed => 3,
        }
    }
}

/// Which way a packet goes relative to its connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Same way as the first packet.
    Forward,
    /// The reply direction.
    Return,
}

/// Timeouts by protocol and state (module docs); defaults are the kernel's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_unacknowledged: Duration,
    pub tcp_established: Duration,
    pub tcp_closing: Duration,
    pub tcp_closed: Duration,
    pub udp_unreplied: Duration,
    pub udp_replied: Duration,
    pub icmp: Duration,
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: Duration::from_secs(120),
            tcp_unacknowledged: Duration::from_secs(300),
            tcp_established: Duration::from_secs(5 * 24 * 3600),
            tcp_closing: Duration::from_secs(120),
            tcp_closed: Duration::from_secs(10),
            udp_unreplied: Duration::from_secs(30),
            udp_replied: Duration::from_secs(180),
            icmp: Duration::from_secs(30),
            other: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// How long a connection of protocol `proto` in `state` lives without
    /// traffic.
    pub fn of(&self, proto: u8, state: ConnState) -> Duration {
        match (proto, state) {
            (proto::TCP, ConnState::SynSent) => self.tcp_syn_sent,
            (proto::TCP, ConnState::New) => self.tcp_unacknowledged,
            (proto::TCP, ConnState::Replied) => self.tcp_established,
            (proto::TCP, ConnState::Closing) => self.tcp_closing,
            (proto::TCP, ConnState::Closed) => self.tcp_closed,
            (proto::UDP, ConnState::Replied) => self.udp_replied,
            (proto::UDP, _) => self.udp_unreplied,
            (proto::ICMP, _) => self.icmp,
            _ => self.other,
        }
    }
}

/// Table configuration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConntrackCfg {
    /// Most entries held (module docs: what happens beyond).
    pub max_entries: usize,
    pub timeouts: Timeouts,
}

impl Default for ConntrackCfg {
    /// 1 M entries: about 52 MB at the measured 52 bytes per entry.
    fn default() -> Self {
        ConntrackCfg { max_entries: 1 << 20, timeouts: Timeouts::default() }
    }
}

/// Counters; all monotonic but `entries`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct ConnStats {
    /// Entries now.
    pub entries: u64,
    /// New connections tracked.
    pub inserted: u64,
    /// Entries dropped because their time was up.
    pub expired: u64,
    /// Unreplied or closing entries dropped to make room.
    pub evicted: u64,
    /// New connections not tracked because the table was full of live,
    /// replied connections.
    pub insert_failed: u64,
    /// Entries removed by the caller.
    pub removed: u64,
}

/// What a tracked connection looks like to a caller.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct ConnInfo {
    /// The connection's forward key.
    pub key: ConnKey,
    pub state: ConnState,
    /// When it expires, since the caller's epoch.
    pub expires: Duration,
}

/// Whether [`ConnTable::track`] started a connection or found one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tracked {
    New,
    Existing,
}

/// The connection-tracking table (module docs).
#[derive(Debug, Clone)]
pub struct ConnTable {
    map: ExpiringMap<ConnKey, ConnState>,
    cfg: ConntrackCfg,
    stats: ConnStats,
}

impl ConnTable {
    /// An empty table. `hash_seed` should be random in production (keys
    /// come from guests), fixed in tests.
    pub fn new(cfg: ConntrackCfg, hash_seed: u64) -> Self {
        ConnTable { map: ExpiringMap::new(hash_seed), cfg, stats: ConnStats::default() }
    }

    pub fn cfg(&self) -> &ConntrackCfg {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    pub fn stats(&self) -> ConnStats {
        ConnStats { entries: self.map.len() as u64, ..self.stats }
    }

    /// Heap bytes held by the table (entries and index).
    pub fn heap_size(&self) -> usize {
        self.map.heap_size()
    }

    fn live(&self, key: &ConnKey, now_ms: u64) -> Option<ConnInfo> {
        self.map.get(key).filter(|s| s.expires_ms > now_ms).map(|s| ConnInfo {
            key: s.key,
            state: s.val,
            expires: Duration::from_millis(s.expires_ms),
        })
    }

    /// Whether a packet with key `key` is return traffic of a live
    /// connection: `key.reversed()` is tracked. One lookup.
    pub fn is_return(&self, key: &ConnKey, now: Duration) -> bool {
        self.live(&key.reversed(), ms(now)).is_some()
    }

    /// The live connection `key` belongs to, in either direction.
    pub fn lookup(&self, key: &ConnKey, now: Duration) -> Option<(ConnInfo, Direction)> {
        let now = ms(now);
        if let Some(c) = self.live(key, now) {
            return Some((c, Direction::Forward));
        }
        self.live(&key.reversed(), now).map(|c| (c, Direction::Return))
    }

    /// Track `key` as a connection's forward key (the first packet had TCP
    /// flags `tcp_flags`; 0 for other protocols), or refresh it if it is
    /// already tracked. A key whose reverse is tracked is that connection's
    /// return traffic: the caller asks [`is_return`](Self::is_return) first.
    pub fn track(&mut self, key: ConnKey, tcp_flags: u16, now: Duration) -> Result<Tracked, Full> {
        let now_ms = ms(now);
        if let Some(i) = self.map.find(&key) {
            if self.map.slot(i).expires_ms > now_ms {
                self.packet(&key, tcp_flags, now);
                return Ok(Tracked::Existing);
            }
            // A dead entry for the same key: a new connection reuses the
            // tuple (TIME_WAIT reuse), start it afresh.
            self.map.remove_at(i);
            self.stats.expired += 1;
        }
        if self.map.len() >= self.cfg.max_entries {
            self.make_room(now_ms)?;
        }
        let opening = if key.proto == proto::TCP && tcp_flags & tcp::SYN != 0 {
            ConnState::SynSent
        } else {
            ConnState::New
        };
        let state = close_state(key.proto, tcp_flags).unwrap_or(opening);
        let expires = now_ms.saturating_add(ms(self.cfg.timeouts.of(key.proto, state)));
        self.map.insert_new(key, state, expires);
        self.stats.inserted += 1;
        Ok(Tracked::New)
    }

    /// Free one slot in a full table (module docs, eviction policy).
    fn make_room(&mut self, now_ms: u64) -> Result<(), Full> {
        if self.map.len() == 0 {
            // max_entries == 0: nothing can be tracked.
            self.stats.insert_failed += 1;
            return Err(Full);
        }
        let sample: Vec<usize> = self.map.sample(EVICTION_SAMPLE).collect();
        let mut victim: Option<(usize, u64)> = None;
        for &i in &sample {
            let s = self.map.slot(i);
            if s.expires_ms <= now_ms {
                self.map.remove_at(i);
                self.stats.expired += 1;
                return Ok(());
            }
            if s.val.evictable() && victim.is_none_or(|(_, e)| s.expires_ms < e) {
                victim = Some((i, s.expires_ms));
            }
        }
        match victim {
            Some((i, _)) => {
                self.map.remove_at(i);
                self.stats.evicted += 1;
                Ok(())
            }
            None => {
                self.stats.insert_failed += 1;
                Err(Full)
            }
        }
    }

    /// A packet of a tracked connection was seen, in either direction, with
    /// TCP flags `tcp_flags`: advance the state (a reply makes it
    /// `Replied`; FIN closes, RST kills) and push the expiry out. Returns
    /// the connection, or `None` if `key` is not tracked.
    pub fn packet(
        &mut self,
        key: &ConnKey,
        tcp_flags: u16,
        now: Duration,
    ) -> Option<(ConnInfo, Direction)> {
        let now_ms = ms(now);
        let (c, dir) = self.lookup(key, now)?;
        let timeouts = self.cfg.timeouts;
        let slot = self.map.get_mut(&c.key)?;
        let mut state = slot.val;
        if dir == Direction::Return && matches!(state, ConnState::SynSent | ConnState::New) {
            // Any reply establishes it: the simulation sees only the first
            // packet each way, so the three-way handshake cannot be
            // followed further.
            state = ConnState::Replied;
        }
        if let Some(closing) = close_state(c.key.proto, tcp_flags) {
            // Never re-open: RST after FIN stays closed, FIN after RST too.
            if state != ConnState::Closed {
                state = closing;
            }
        }
        slot.val = state;
        slot.expires_ms = now_ms.saturating_add(ms(timeouts.of(c.key.proto, state)));
        Some((ConnInfo { key: c.key, state, expires: Duration::from_millis(slot.expires_ms) }, dir))
    }

    /// Datapath activity on the connection of `key` (either direction):
    /// push its expiry to `now + timeout(state)`. Returns whether it is
    /// tracked.
    pub fn touch(&mut self, key: &ConnKey, now: Duration) -> bool {
        self.packet(key, 0, now).is_some()
    }

    /// Install a connection learnt from a peer (or the local log) with its
    /// state, refreshing it if present. Follows the full-table policy.
    ///
    /// A live entry never goes back: a sender that has not seen the reply
    /// yet (`SynSent`) does not undo a `Replied` learnt here or from the
    /// other side. A closing or closed one does take a new start (`SynSent`
    /// or `New`): its tracker simulated a connection opening again on the
    /// 5-tuple (a client reusing it), which it sends before that packet.
    pub fn import(&mut self, key: ConnKey, state: ConnState, now: Duration) -> Result<(), Full> {
        let now_ms = ms(now);
        if let Some(s) = self.map.get_mut(&key) {
            let reopened = state.stage() == 0 && s.val.stage() >= ConnState::Closing.stage();
            let state = if s.expires_ms > now_ms && state.stage() < s.val.stage() && !reopened {
                s.val
            } else {
                state
            };
            s.val = state;
            s.expires_ms = now_ms.saturating_add(ms(self.cfg.timeouts.of(key.proto, state)));
            return Ok(());
        }
        let expires = now_ms.saturating_add(ms(self.cfg.timeouts.of(key.proto, state)));
        if self.map.len() >= self.cfg.max_entries {
            self.make_room(now_ms)?;
        }
        self.map.insert_new(key, state, expires);
        self.stats.inserted += 1;
        Ok(())
    }

    /// Forget the connection whose forward key is `key`.
    pub fn remove(&mut self, key: &ConnKey) -> bool {
        let gone = self.map.remove(key).is_some();
        self.stats.removed += u64::from(gone);
        gone
    }

    /// Visit up to `budget` entries from the clock hand and drop the expired
    /// ones; their forward keys are appended to `gone` so the caller can
    /// invalidate the flows tagged with them. Returns how many went.
    pub fn expire(&mut self, now: Duration, budget: usize, gone: &mut Vec<ConnKey>) -> usize {
        let n = self.map.sweep(ms(now), budget, |s| gone.push(s.key));
        self.stats.expired += n as u64;
        n
    }

    /// Every live entry (for `conntrack list` and replication of a port's
    /// state); order unspecified.
    pub fn iter(&self, now: Duration) -> impl Iterator<Item = ConnInfo> + '_ {
        let now = ms(now);
        self.map.iter().filter(move |s| s.expires_ms > now).map(|s| ConnInfo {
            key: s.key,
            state: s.val,
            expires: Duration::from_millis(s.expires_ms),
        })
    }

    /// Drop every entry (`conntrack flush`).
    pub fn clear(&mut self) {
        self.stats.removed += self.map.len() as u64;
        self.map.clear();
    }
}

/// The state a TCP packet with these flags moves a connection to, if it
/// closes it.
fn close_state(proto: u8, tcp_flags: u16) -> Option<ConnState> {
    if proto != proto::TCP {
        None
    } else if tcp_flags & tcp::RST != 0 {
        Some(ConnState::Closed)
    } else if tcp_flags & tcp::FIN != 0 {
        Some(ConnState::Closing)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::key::TrackerId;

    const SYN: u16 = tcp::SYN;
    const S: fn(u64) -> Duration = Duration::from_secs;

    fn key(proto: u8, sport: u16) -> ConnKey {
        ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(192, 0, 2, 9),
            src_port: sport,
            dst_port: 80,
            proto,
            tracker: TrackerId(Uuid::from_u128(1)),
        }
    }

    fn table(max: usize) -> ConnTable {
        ConnTable::new(ConntrackCfg { max_entries: max, timeouts: Timeouts::default() }, 42)
    }

    #[test]
    fn reply_is_a_return_flow_and_the_forward_is_not() {
        let mut t = table(16);
        let k = key(proto::TCP, 40000);
        assert!(!t.is_return(&k.reversed(), S(0)), "nothing tracked yet");
        assert_eq!(t.track(k, SYN, S(0)), Ok(Tracked::New));
        assert!(t.is_return(&k.reversed(), S(1)));
        assert!(!t.is_return(&k, S(1)), "the forward direction is not return traffic");
        // Another tracker does not see it.
        let other = ConnKey { tracker: TrackerId(Uuid::from_u128(2)), ..k };
        assert!(!t.is_return(&other.reversed(), S(1)));
        assert_eq!(t.lookup(&k.reversed(), S(1)).map(|(_, d)| d), Some(Direction::Return));
        assert_eq!(t.track(k, 0, S(2)), Ok(Tracked::Existing));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_import_never_takes_a_live_connection_back_but_a_closed_one_may_open_again() {
        let mut t = table(16);
        let k = key(proto::TCP, 7);
        t.import(k, ConnState::Replied, S(0)).expect("room");
        // The initiator's copy, still SYN-sent, arrives again.
        t.import(k, ConnState::SynSent, S(1)).expect("room");
        let (c, _) = t.lookup(&k, S(1)).expect("tracked");
        assert_eq!(c.state, ConnState::Replied);
        assert_eq!(c.expires, S(1) + Timeouts::default().tcp_established, "refreshed");
        t.import(k, ConnState::Closing, S(2)).expect("room");
        assert_eq!(t.lookup(&k, S(2)).expect("tracked").0.state, ConnState::Closing);
        t.import(k, ConnState::Replied, S(3)).expect("room");
        assert_eq!(t.lookup(&k, S(3)).expect("tracked").0.state, ConnState::Closing, "no way back");
        // Its tracker saw the 5-tuple open again: a new start.
        t.import(k, ConnState::SynSent, S(4)).expect("room");
        let (c, _) = t.lookup(&k, S(4)).expect("tracked");
        assert_eq!(
            (c.state, c.expires),
            (ConnState::SynSent, S(4) + Timeouts::default().tcp_syn_sent)
        );
        // Once expired, the entry starts again from what arrives.
        t.import(k, ConnState::Closed, S(5)).expect("room");
        let later = S(5) + Timeouts::default().tcp_closed;
        t.import(k, ConnState::Replied, later).expect("room");
        assert_eq!(t.lookup(&k, later).expect("tracked").0.state, ConnState::Replied);
    }

    #[test]
    fn kernel_timeouts_by_state() {
        let mut t = table(16);
        // TCP: SYN sent 120 s, then established 5 days once replied.
        let k = key(proto::TCP, 1);
        t.track(k, SYN, S(0)).expect("room");
        assert!(t.is_return(&k.reversed(), S(119)));
        assert!(!t.is_return(&k.reversed(), S(120)), "unanswered SYN gone after 120 s");
        t.track(k, SYN, S(200)).expect("room");
        let (c, _) = t.packet(&k.reversed(), SYN | 0x10, S(201)).expect("tracked");
        assert_eq!(c.state, ConnState::Replied);
        let five_days = 5 * 24 * 3600;
        assert!(t.is_return(&k.reversed(), S(201 + five_days - 1)), "idle 5 days");
        assert!(!t.is_return(&k.reversed(), S(201 + five_days)));

        // UDP: 30 s unreplied, 180 s once replied.
        let u = key(proto::UDP, 2);
        t.track(u, 0, S(0)).expect("room");
        assert!(!t.is_return(&u.reversed(), S(30)));
        t.track(u, 0, S(40)).expect("room");
        t.packet(&u.reversed(), 0, S(41)).expect("tracked");
        assert!(t.is_return(&u.reversed(), S(41 + 179)));
        assert!(!t.is_return(&u.reversed(), S(41 + 180)));

        // ICMP: 30 s.
        let i = key(proto::ICMP, 7);
        t.track(i, 0, S(0)).expect("room");
        t.packet(&i.reversed(), 0, S(1)).expect("tracked");
        assert!(!t.is_return(&i.reversed(), S(31)));
    }

    #[test]
    fn touch_keeps_an_idle_connection_alive_and_fin_rst_shorten() {
        let mut t = table(16);
        let k = key(proto::UDP, 3);
        t.track(k, 0, S(0)).expect("room");
        // Datapath counters moved every 20 s: never expires.
        for n in 1..20 {
            assert!(t.touch(&k, S(20 * n)), "alive at {}", 20 * n);
        }
        assert!(t.is_return(&k.reversed(), S(20 * 19 + 29)));

        let c = key(proto::TCP, 4);
        t.track(c, SYN, S(0)).expect("room");
        t.packet(&c.reversed(), SYN | 0x10, S(1)).expect("tracked");
        let (info, _) = t.packet(&c, tcp::FIN | 0x10, S(10)).expect("tracked");
        assert_eq!(info.state, ConnState::Closing);
        assert_eq!(info.expires, S(130));
        let (info, _) = t.packet(&c.reversed(), tcp::RST, S(11)).expect("tracked");
        assert_eq!(info.state, ConnState::Closed);
        assert_eq!(info.expires, S(21));
        // A FIN after the RST does not lengthen it again.
        let (info, _) = t.packet(&c, tcp::FIN, S(12)).expect("tracked");
        assert_eq!((info.state, info.expires), (ConnState::Closed, S(22)));
        // Touching does not reopen either.
        t.touch(&c, S(13));
        assert!(!t.is_return(&c.reversed(), S(23)));
    }

    #[test]
    fn expire_sweeps_and_reports_keys() {
        let mut t = table(100);
        for p in 0..50 {
            t.track(key(proto::UDP, p), 0, S(u64::from(p))).expect("room");
        }
        let mut gone = Vec::new();
        // At t = 40 s, connections started before 10 s are gone (30 s UDP).
        while t.expire(S(40), 7, &mut gone) > 0 || gone.len() < 11 {
            if gone.len() > 50 {
                break;
            }
        }
        let mut ports: Vec<u16> = gone.iter().map(|k| k.src_port).collect();
        ports.sort_unstable();
        assert_eq!(ports, (0..=10).collect::<Vec<_>>());
        assert_eq!(t.len(), 39);
        assert_eq!(t.stats().expired, 11);
    }

    #[test]
    fn full_table_evicts_unreplied_first_then_refuses() {
        let mut t = table(8);
        for p in 0..8 {
            let k = key(proto::TCP, p);
            t.track(k, SYN, S(0)).expect("room");
            if p != 5 {
                t.packet(&k.reversed(), SYN | 0x10, S(0)).expect("tracked");
            }
        }
        // Full; the only unreplied one (port 5) goes.
        assert_eq!(t.track(key(proto::TCP, 100), SYN, S(1)), Ok(Tracked::New));
        assert_eq!(t.stats().evicted, 1);
        assert!(!t.is_return(&key(proto::TCP, 5).reversed(), S(1)));
        // Now the newcomer (unreplied) is the only candidate.
        assert_eq!(t.track(key(proto::TCP, 101), SYN, S(2)), Ok(Tracked::New));
        assert!(!t.is_return(&key(proto::TCP, 100).reversed(), S(2)));
        t.packet(&key(proto::TCP, 101).reversed(), SYN | 0x10, S(2)).expect("tracked");
        // All established: the new connection is refused, the others kept.
        assert_eq!(t.track(key(proto::TCP, 102), SYN, S(3)), Err(Full));
        assert_eq!(t.stats().insert_failed, 1);
        assert_eq!(t.len(), 8);
        // An expired entry makes room without evicting a live one.
        let u = key(proto::UDP, 9);
        let mut t = table(1);
        t.track(u, 0, S(0)).expect("room");
        assert_eq!(t.track(key(proto::UDP, 10), 0, S(31)), Ok(Tracked::New));
        assert_eq!((t.stats().expired, t.stats().evicted), (1, 0));
    }

    /// Bytes per entry at 1 M entries (crate docs). The budget is 128.
    #[test]
    fn one_million_entries_fit_the_budget() {
        let mut t = table(1 << 20);
        let n = 1_000_000u32;
        for i in 0..n {
            let k = ConnKey {
                src: Ipv4Addr::from(0x0a00_0000 | (i >> 8)),
                src_port: (i & 0xffff) as u16,
                ..key(proto::TCP, 0)
            };
            t.track(k, SYN, S(0)).expect("room");
        }
        assert_eq!(t.len(), n as usize);
        let per = t.heap_size() as f64 / f64::from(n);
        println!("conntrack: {} entries, {} heap bytes, {per:.1} B/entry", n, t.heap_size());
        assert!(per <= 128.0, "{per} bytes per entry");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Track(u16, u16),
        Reply(u16),
        Touch(u16),
        Remove(u16),
        Expire(usize),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..12, prop_oneof![Just(0u16), Just(SYN), Just(tcp::FIN), Just(tcp::RST)])
                .prop_map(|(p, f)| Op::Track(p, f)),
            (0u16..12).prop_map(Op::Reply),
            (0u16..12).prop_map(Op::Touch),
            (0u16..12).prop_map(Op::Remove),
            (0usize..6).prop_map(Op::Expire),
            (0u64..200_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// The table agrees with a plain model (a map of forward key to
        /// state and expiry) as long as it is not full.
        #[test]
        fn agrees_with_a_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut t = table(64);
            let to = Timeouts::default();
            let mut model: HashMap<ConnKey, (ConnState, u64)> = HashMap::new();
            let mut now = 0u64;
            let k = |p: u16| key(if p.is_multiple_of(3) { proto::UDP } else { proto::TCP }, p);
            for o in ops {
                let d = Duration::from_millis(now);
                let alive = move |m: &HashMap<ConnKey, (ConnState, u64)>, c: &ConnKey| {
                    m.get(c).filter(|(_, e)| *e > now).copied()
                };
                match o {
                    Op::Track(p, f) => {
                        let c = k(p);
                        t.track(c, f, d).expect("never full here");
                        let next = match alive(&model, &c) {
                            Some((s, _)) => {
                                match close_state(c.proto, f) {
                                    Some(x) if s != ConnState::Closed => x,
                                    _ => s,
                                }
                            }
                            None => close_state(c.proto, f).unwrap_or(
                                if c.proto == proto::TCP && f & SYN != 0 {
                                    ConnState::SynSent
                                } else {
                                    ConnState::New
                                },
                            ),
                        };
                        model.insert(c, (next, now + ms(to.of(c.proto, next))));
                    }
                    Op::Reply(p) => {
                        let c = k(p);
                        let got = t.packet(&c.reversed(), 0, d);
                        prop_assert_eq!(got.is_some(), alive(&model, &c).is_some());
                        if let Some((s, _)) = alive(&model, &c) {
                            let s = if matches!(s, ConnState::SynSent | ConnState::New) {
                                ConnState::Replied
                            } else {
                                s
                            };
                            model.insert(c, (s, now + ms(to.of(c.proto, s))));
                        }
                    }
                    Op::Touch(p) => {
                        let c = k(p);
                        prop_assert_eq!(t.touch(&c, d), alive(&model, &c).is_some());
                        if let Some((s, _)) = alive(&model, &c) {
                            model.insert(c, (s, now + ms(to.of(c.proto, s))));
                        }
                    }
                    Op::Remove(p) => {
                        let c = k(p);
                        let was = t.remove(&c);
                        prop_assert_eq!(was, model.remove(&c).is_some());
                    }
                    Op::Expire(n) => {
                        let mut gone = Vec::new();
                        t.expire(d, n, &mut gone);
                        for g in gone {
                            let m = model.remove(&g);
                            prop_assert!(m.is_some_and(|(_, e)| e <= now), "{} was live", g);
                        }
                    }
                    Op::Wait(w) => now += w,
                }
                let d = Duration::from_millis(now);
                for p in 0..12 {
                    let c = k(p);
                    let want = model.get(&c).filter(|(_, e)| *e > now).copied();
                    let got = t.lookup(&c.reversed(), d);
                    prop_assert_eq!(got.map(|(i, _)| i.state), want.map(|(s, _)| s));
                    prop_assert_eq!(t.is_return(&c.reversed(), d), want.is_some());
                    prop_assert!(!t.is_return(&c, d) || c == c.reversed());
                }
            }
        }

        /// A full table never exceeds its size and never evicts a replied
        /// live connection.
        #[test]
        fn full_table_keeps_established(n in 1usize..20, extra in 1u16..60) {
            let mut t = table(n);
            let mut established = Vec::new();
            for p in 0..(n as u16) {
                let c = key(proto::TCP, p);
                t.track(c, SYN, S(0)).expect("room");
                if p % 2 == 0 {
                    t.packet(&c.reversed(), SYN | 0x10, S(0)).expect("tracked");
                    established.push(c);
                }
            }
            for p in 0..extra {
                let _ = t.track(key(proto::TCP, 1000 + p), SYN, S(1));
                prop_assert!(t.len() <= n);
            }
            for c in &established {
                prop_assert!(t.is_return(&c.reversed(), S(2)));
            }
            let s = t.stats();
            prop_assert_eq!(s.inserted - s.evicted - s.expired, s.entries);
        }
    }
}
