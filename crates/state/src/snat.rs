//! SNAT port-block leases: which blocks of ports this host may hand out.
//!
//! MidoNet's `NatLeaser` (reference §2.10, `docs/nat-leasing.md`): the
//! ports of each (device, NAT IP) are split into 1024 blocks of 64, and a
//! host hands out ports only from blocks it has claimed in the store. A
//! port is unique per **destination**, not globally: one public port serves
//! many connections as long as their (destination IP, destination port)
//! differ, so a block is reused across destinations.
//!
//! This module is the pure half: a view of which blocks this host holds and
//! which other hosts hold, and the choice of a port. It does no I/O:
//!
//! ```text
//!   allocate ──> Port(ip, port)            a free port in a block we hold
//!            └─> NeedBlock(BlockKey)        none: claim this free block in the
//!                                           store, then `granted` and retry
//!            └─> Exhausted                  every block of every target is taken
//! ```
//!
//! The store side (claiming a block under the agent's lease, watching
//! others' claims into [`PortBlocks::held_elsewhere`], giving idle blocks
//! back) comes with the replication work.
//!
//! Choice of a port: targets in order, IPs in order, held blocks first
//! (MidoNet: "when every block is used, the next IP or the next target is
//! tried"); inside a block the scan starts at a caller-given random offset,
//! so consecutive connections do not probe the same ports. A block to claim
//! is drawn at random among the free ones (MidoNet then prefers the least
//! recently released, which needs the store's release times: later).
//!
//! Held blocks with a port not bound yet are scanned in full; blocks
//! with a binding on every port only at [`FULL_BLOCK_PROBES`] ports of at
//! most [`FULL_BLOCKS_PROBED`] blocks before a new block is claimed, and
//! in full only when no block is left to claim. Per-destination reuse still
//! happens (a destination new to a full block finds its probed ports
//! free), but a host holding hundreds of full blocks no longer scans them
//! all for every connection: that cost a millisecond per connection
//! (measured with `bench/cps.sh NAT=1`).
//!
//! Nor does a scan step over the blocks of the other kind: each IP keeps
//! two bitsets of the blocks this host holds, those with a port not bound
//! yet and the full ones, and a scan walks only the one it wants, in the
//! same ascending block order as the held blocks themselves. Walking every
//! held block and skipping by its count is linear in the blocks held:
//! `scan_held` was 3.8 % of the datapath thread under NATed connects
//! (issue 8), and with 512 full blocks held the walk takes 1 to 2 µs per
//! allocation, the bitsets 0.1 to 0.16 µs (`cargo bench -p midonet-state
//! --bench snat`). Bitsets rather than two `BTreeSet<u16>`: 256 bytes per IP,
//! no allocation when a block fills or empties, and a span of blocks is
//! at most 16 words to look at. Every change of a block's count refiles
//! it, so the bitsets are exact, not hints.
//!
//! Claiming ahead weighs the ports not bound yet in the held blocks
//! against the blocks' worth to keep ahead, after every allocation. It
//! reads a running count that each refiling keeps (a walk of the open
//! blocks, a map lookup each, only when blocks are held outside the
//! target's range), and a block to claim is drawn from the complement of
//! the bitsets a word at a time: under the churn of a connection load
//! (32,768 live bindings to one server, `churn` in `benches/snat.rs`)
//! an allocation took 513 ns with the walk and a map lookup per block of
//! the span, 395 ns without.
//!
//! A block this host holds records how many bindings use it and
//! when it was last used; [`PortBlocks::idle`] lists those unused for a while (MidoNet:
//! 5 minutes) so the caller can release them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Serialize;

use crate::key::{ConnKey, TrackerId};
use crate::ms;
use crate::nat::{NatBinding, NatKey, NatKind, NatTable};

/// Full blocks (a binding on every port) probed before a new block is
/// claimed, and ports probed in each (module docs).
pub const FULL_BLOCKS_PROBED: usize = 8;
pub const FULL_BLOCK_PROBES: u32 = 2;

/// Which held blocks an allocation looks at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scan {
    /// Blocks with a port not bound yet: every port.
    Unbound,
    /// Full blocks: a few ports of a few blocks.
    FullProbe,
    /// Full blocks: every port (nothing left to claim).
    FullAll,
}

/// Ports per block.
pub const BLOCK_SIZE: u32 = 64;
/// Claim ahead: when the ports not bound yet in an IP's held blocks, plus
/// a block's worth per claim in flight, fall below this many blocks'
/// worth, an allocation asks for another block (module docs). The least
/// and the most an IP keeps ahead; it starts at the least.
pub const CLAIM_AHEAD_MIN: u32 = 2;
pub const CLAIM_AHEAD_MAX: u32 = 64;
/// Blocks per NAT IP (65536 / 64).
pub const BLOCKS_PER_IP: u32 = 1024;
/// MidoNet gives idle blocks back after 5 minutes.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// One block of one NAT IP of one device.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
pub struct BlockKey {
    pub device: TrackerId,
    pub ip: Ipv4Addr,
    /// 0..1024: ports `64 * block ..= 64 * block + 63`.
    pub block: u16,
}

impl BlockKey {
    /// The block holding `port`.
    pub fn of(device: TrackerId, ip: Ipv4Addr, port: u16) -> BlockKey {
        BlockKey { device, ip, block: (u32::from(port) / BLOCK_SIZE) as u16 }
    }

    /// First and last port of the block.
    pub fn ports(&self) -> (u16, u16) {
        let lo = u32::from(self.block) * BLOCK_SIZE;
        (lo as u16, (lo + BLOCK_SIZE - 1) as u16)
    }
}

/// A `snat` rule target: addresses and ports, both inclusive ranges.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct SnatTarget {
    pub ip_from: Ipv4Addr,
    pub ip_to: Ipv4Addr,
    pub port_from: u16,
    pub port_to: u16,
}

/// Result of [`PortBlocks::allocate`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alloc {
    /// Use this address and port.
    Port(NatBinding),
    /// No held block has a free port: claim this one, then call
    /// [`PortBlocks::granted`] and allocate again.
    NeedBlock(BlockKey),
    /// Every block of every target is held (by us, full, or by others).
    Exhausted,
    /// A port was free but the NAT table is full of live bindings.
    TableFull,
}

/// 1024 bits, one per block.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Bits([u64; 16]);

impl Bits {
    #[cfg(test)]
    fn get(&self, b: u16) -> bool {
        self.0[usize::from(b / 64)] & (1 << (b % 64)) != 0
    }
    fn set(&mut self, b: u16, on: bool) {
        let w = &mut self.0[usize::from(b / 64)];
        if on {
            *w |= 1 << (b % 64);
        } else {
            *w &= !(1 << (b % 64));
        }
    }

    /// The words covering `span`, ascending, each with its bits outside
    /// `span` cleared: `(word index, word)`.
    fn span_words(self, span: RangeInclusive<u16>) -> impl Iterator<Item = (u16, u64)> {
        let (lo, hi) = (*span.start(), *span.end());
        (lo / 64..=hi / 64).map(move |w| {
            let mut word = self.0[usize::from(w)];
            if w == lo / 64 {
                word &= !0 << (lo % 64);
            }
            if w == hi / 64 {
                word &= !0 >> (63 - hi % 64);
            }
            (w, word)
        })
    }

    /// The set bits in `span`, ascending.
    fn ones(self, span: RangeInclusive<u16>) -> impl Iterator<Item = u16> {
        self.span_words(span).flat_map(|(w, mut word)| {
            std::iter::from_fn(move || {
                let bit = word.trailing_zeros();
                word &= word.wrapping_sub(1);
                (bit < 64).then_some(w * 64 + bit as u16)
            })
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct BlockUse {
    /// Bindings using a port of the block.
    refs: u32,
    /// When it was last handed a binding or had one freed.
    last_used_ms: u64,
}

impl BlockUse {
    fn new(now: Duration) -> Self {
        BlockUse { refs: 0, last_used_ms: ms(now) }
    }
}

#[derive(Clone, Debug, Default)]
struct IpBlocks {
    held_elsewhere: Bits,
    /// The blocks we hold.
    mine: BTreeMap<u16, BlockUse>,
    /// The blocks of `mine` with fewer than `BLOCK_SIZE` bindings, and
    /// those with at least as many: each held block is in exactly one
    /// (module docs).
    open: Bits,
    full: Bits,
    /// Blocks asked of the store and not answered yet.
    pending: Bits,
    /// Ports not bound yet in the blocks of `mine`: what claiming ahead
    /// weighs, kept as every refiling changes it (module docs).
    unbound: u32,
    /// Blocks' worth of ports to keep ahead (0: [`CLAIM_AHEAD_MIN`]).
    ahead: u32,
    /// An allocation waited for a block since the last grant (`ahead`
    /// grows once per grant), and since the last [`PortBlocks::relax`].
    waited: bool,
    waited_lately: bool,
}

impl IpBlocks {
    fn ahead_ports(&self) -> u32 {
        self.ahead.max(CLAIM_AHEAD_MIN) * BLOCK_SIZE
    }

    /// An allocation found no port and waits for a block: the claims ahead
    /// were too few for the rate of new connections and the store's answer
    /// time, so keep twice as many ahead (once per grant: the packets that
    /// wait together count once).
    fn waits(&mut self) {
        if !self.waited {
            self.waited = true;
            self.waited_lately = true;
            self.ahead = (self.ahead.max(CLAIM_AHEAD_MIN) * 2).min(CLAIM_AHEAD_MAX);
        }
    }
}

impl IpBlocks {
    /// Files `block`, which had `before` bindings (`None`: not held), by
    /// its bindings now, `refs` (`None`: no longer held).
    fn file(&mut self, block: u16, before: Option<u32>, refs: Option<u32>) {
        let unbound = |r: Option<u32>| r.map_or(0, |r| BLOCK_SIZE.saturating_sub(r));
        self.unbound = (self.unbound + unbound(refs)).saturating_sub(unbound(before));
        self.open.set(block, refs.is_some_and(|r| r < BLOCK_SIZE));
        self.full.set(block, refs.is_some_and(|r| r >= BLOCK_SIZE));
    }

    /// One binding more on held `block`.
    fn bind(&mut self, block: u16, now: Duration) {
        if let Some(used) = self.mine.get_mut(&block) {
            used.refs += 1;
            used.last_used_ms = ms(now);
            let refs = used.refs;
            self.file(block, Some(refs - 1), Some(refs));
        }
    }
}

/// The lease view of one host (module docs).
#[derive(Clone, Debug, Default)]
pub struct PortBlocks {
    ips: BTreeMap<(TrackerId, Ipv4Addr), IpBlocks>,
    /// Blocks to claim ahead, chosen by allocations since the last
    /// [`take_wanted`](PortBlocks::take_wanted) (already pending).
    wanted: Vec<BlockKey>,
}

/// The blocks overlapping `[from, to]`.
fn block_span(from: u16, to: u16) -> RangeInclusive<u16> {
    (u32::from(from) / BLOCK_SIZE) as u16..=(u32::from(to) / BLOCK_SIZE) as u16
}

/// A block of `span` nobody holds or was asked for, drawn by `rand` (the
/// bits above those that choose a port in a block).
fn pick_free(bl: &IpBlocks, span: RangeInclusive<u16>, rand: u64) -> Option<u16> {
    // A word of the bitsets at a time: held here is `open | full`.
    let mut free = Bits::default();
    for (i, w) in free.0.iter_mut().enumerate() {
        *w = !(bl.held_elsewhere.0[i] | bl.open.0[i] | bl.full.0[i] | bl.pending.0[i]);
    }
    let n: u32 = free.span_words(span.clone()).map(|(_, w)| w.count_ones()).sum();
    if n == 0 {
        return None;
    }
    let mut pick = ((rand / u64::from(BLOCK_SIZE)) % u64::from(n)) as u32;
    for (w, mut bits) in free.span_words(span) {
        let c = bits.count_ones();
        if pick < c {
            for _ in 0..pick {
                bits &= bits - 1;
            }
            return Some(w * 64 + bits.trailing_zeros() as u16);
        }
        pick -= c;
    }
    None
}

impl PortBlocks {
    pub fn new() -> Self {
        PortBlocks::default()
    }

    /// The store granted block `b` to this host.
    pub fn granted(&mut self, b: BlockKey, now: Duration) {
        let ip = self.ips.entry((b.device, b.ip)).or_default();
        ip.held_elsewhere.set(b.block, false);
        ip.pending.set(b.block, false);
        ip.waited = false;
        let before = ip.mine.get(&b.block).map(|u| u.refs);
        let used = ip.mine.entry(b.block).or_insert_with(|| BlockUse::new(now));
        let refs = used.refs;
        ip.file(b.block, before, Some(refs));
    }

    /// A binding this host made before (restored from its own log) uses
    /// `ip`:`port` of `device`: the block is held and counts the binding.
    pub fn rebind(&mut self, device: TrackerId, ip: Ipv4Addr, port: u16, now: Duration) {
        let b = BlockKey::of(device, ip, port);
        self.granted(b, now);
        if let Some(bl) = self.ips.get_mut(&(device, ip)) {
            bl.bind(b.block, now);
        }
    }

    /// This host gave block `b` back (or lost its lease).
    pub fn released(&mut self, b: BlockKey) {
        if let Some(ip) = self.ips.get_mut(&(b.device, b.ip)) {
            let before = ip.mine.remove(&b.block).map(|u| u.refs);
            ip.file(b.block, before, None);
        }
    }

    /// Another host holds (`true`) or gave back (`false`) block `b`.
    pub fn held_elsewhere(&mut self, b: BlockKey, held: bool) {
        let ip = self.ips.entry((b.device, b.ip)).or_default();
        ip.held_elsewhere.set(b.block, held);
        if held {
            ip.pending.set(b.block, false);
        }
    }

    /// This host asked the store for `b` ([`Alloc::NeedBlock`], or a claim
    /// ahead): until [`granted`](Self::granted), [`held_elsewhere`] or
    /// [`unanswered`](Self::unanswered), allocations wait for it rather
    /// than ask for another.
    ///
    /// [`held_elsewhere`]: Self::held_elsewhere
    pub fn asked(&mut self, b: BlockKey) {
        self.ips.entry((b.device, b.ip)).or_default().pending.set(b.block, true);
    }

    /// The claim of `b` was lost (no answer): it may be asked for again.
    pub fn unanswered(&mut self, b: BlockKey) {
        if let Some(ip) = self.ips.get_mut(&(b.device, b.ip)) {
            ip.pending.set(b.block, false);
        }
    }

    /// Called now and then (the agent: every minute): an IP whose
    /// allocations did not wait for a block since the last call keeps half
    /// as many blocks ahead (never fewer than [`CLAIM_AHEAD_MIN`]).
    pub fn relax(&mut self) {
        for bl in self.ips.values_mut() {
            if !std::mem::take(&mut bl.waited_lately) {
                bl.ahead = (bl.ahead / 2).max(CLAIM_AHEAD_MIN);
            }
        }
    }

    /// The blocks allocations chose to claim ahead since the last call,
    /// each already [`asked`](Self::asked) for: the caller sends the claims.
    pub fn take_wanted(&mut self) -> Vec<BlockKey> {
        std::mem::take(&mut self.wanted)
    }

    /// After an allocation from `ip` of `device`: when the ports left
    /// there run short, choose a block to claim ahead (into `wanted`).
    fn claim_ahead(&mut self, device: TrackerId, ip: Ipv4Addr, t: &SnatTarget, rand: u64) {
        let Some(bl) = self.ips.get(&(device, ip)) else { return };
        let span = block_span(t.port_from.max(1), t.port_to);
        let want = bl.ahead_ports();
        let mut reserve = BLOCK_SIZE * bl.pending.ones(span.clone()).count() as u32;
        // The ports not bound yet in the held blocks of the span: the
        // running count when every held block is in it (one target's
        // range: the usual case), else a walk of the open ones.
        let inside = match (bl.mine.first_key_value(), bl.mine.last_key_value()) {
            (Some((first, _)), Some((last, _))) => span.contains(first) && span.contains(last),
            _ => true,
        };
        if inside {
            reserve += bl.unbound;
        } else {
            for block in bl.open.ones(span.clone()) {
                if reserve >= want {
                    return;
                }
                let refs = bl.mine.get(&block).map_or(BLOCK_SIZE, |u| u.refs);
                reserve += BLOCK_SIZE.saturating_sub(refs);
            }
        }
        if reserve >= want {
            return;
        }
        if let Some(block) = pick_free(bl, span, rand) {
            let b = BlockKey { device, ip, block };
            self.asked(b);
            self.wanted.push(b);
        }
    }

    /// Whether this host holds `b`.
    pub fn holds(&self, b: &BlockKey) -> bool {
        self.ips.get(&(b.device, b.ip)).is_some_and(|ip| ip.mine.contains_key(&b.block))
    }

    /// Every block this host holds.
    pub fn held(&self) -> impl Iterator<Item = BlockKey> + '_ {
        self.ips.iter().flat_map(|(&(device, ip), bl)| {
            bl.mine.keys().map(move |&block| BlockKey { device, ip, block })
        })
    }

    /// Choose an address and port for a connection at `device` for which
    /// `is_free(ip, port)` says whether the port is unused towards the
    /// connection's destination. `rand` spreads the choices (module docs).
    /// A `Port` result counts as a binding of its block until
    /// [`unbind`](Self::unbind).
    pub fn allocate(
        &mut self,
        device: TrackerId,
        targets: &[SnatTarget],
        rand: u64,
        now: Duration,
        mut is_free: impl FnMut(Ipv4Addr, u16) -> bool,
    ) -> Alloc {
        let offset = (rand % u64::from(BLOCK_SIZE)) as u32;
        // Held blocks first: those with a port not bound yet, then a few
        // ports of a few full ones (free towards a new destination).
        for scan in [Scan::Unbound, Scan::FullProbe] {
            if let Some((b, t)) = self.scan_held(device, targets, offset, now, scan, &mut is_free) {
                self.claim_ahead(device, b.ip, &t, rand);
                return Alloc::Port(b);
            }
        }
        // Then a block to claim: the first IP with one asked for already
        // (wait for it), or with a free one.
        for t in targets {
            let from = t.port_from.max(1);
            let (lo, hi) = (u32::from(t.ip_from), u32::from(t.ip_to));
            if lo > hi || from > t.port_to {
                continue;
            }
            let span = block_span(from, t.port_to);
            for ip in lo..=hi {
                let ip = Ipv4Addr::from(ip);
                let bl = self.ips.entry((device, ip)).or_default();
                let block = match bl.pending.ones(span.clone()).next() {
                    Some(b) => Some(b),
                    None => pick_free(bl, span.clone(), rand),
                };
                if let Some(block) = block {
                    bl.waits();
                    return Alloc::NeedBlock(BlockKey { device, ip, block });
                }
            }
        }
        // Nothing left to claim: share full blocks' ports among
        // destinations (MidoNet's oversubscription).
        match self.scan_held(device, targets, offset, now, Scan::FullAll, &mut is_free) {
            Some((b, _)) => Alloc::Port(b),
            None => Alloc::Exhausted,
        }
    }

    /// A free port in a held block, as `scan` says which blocks and ports,
    /// from `offset`.
    fn scan_held(
        &mut self,
        device: TrackerId,
        targets: &[SnatTarget],
        offset: u32,
        now: Duration,
        scan: Scan,
        is_free: &mut impl FnMut(Ipv4Addr, u16) -> bool,
    ) -> Option<(NatBinding, SnatTarget)> {
        let full = scan != Scan::Unbound;
        let (ports, mut blocks_left) = match scan {
            Scan::Unbound | Scan::FullAll => (BLOCK_SIZE, usize::MAX),
            Scan::FullProbe => (FULL_BLOCK_PROBES, FULL_BLOCKS_PROBED),
        };
        for t in targets {
            // Port 0 is never handed out; a 0-0 range (static NAT) has none.
            let from = t.port_from.max(1);
            let (lo, hi) = (u32::from(t.ip_from), u32::from(t.ip_to));
            if lo > hi || from > t.port_to {
                continue;
            }
            let range = (device, t.ip_from)..=(device, t.ip_to);
            for (&(_, ip), bl) in self.ips.range_mut(range) {
                let blocks = if full { bl.full } else { bl.open };
                for block in blocks.ones(block_span(from, t.port_to)) {
                    if blocks_left == 0 {
                        return None;
                    }
                    blocks_left -= 1;
                    let base = u32::from(block) * BLOCK_SIZE;
                    for k in 0..ports {
                        let port = base + (offset + k) % BLOCK_SIZE;
                        if port < u32::from(from) || port > u32::from(t.port_to) {
                            continue;
                        }
                        if is_free(ip, port as u16) {
                            bl.bind(block, now);
                            return Some((NatBinding { ip, port: port as u16 }, *t));
                        }
                    }
                }
            }
        }
        None
    }

    /// A binding on `ip`:`port` of `device` ended (its NAT entry expired).
    pub fn unbind(&mut self, device: TrackerId, ip: Ipv4Addr, port: u16, now: Duration) {
        let b = BlockKey::of(device, ip, port);
        if let Some(bl) = self.ips.get_mut(&(device, ip)) {
            if let Some(used) = bl.mine.get_mut(&b.block) {
                let before = used.refs;
                used.refs = used.refs.saturating_sub(1);
                used.last_used_ms = ms(now);
                let refs = used.refs;
                bl.file(b.block, Some(before), Some(refs));
            }
        }
    }

    /// Held blocks with no binding, unused for at least `idle`: give them
    /// back to the store.
    pub fn idle(&self, now: Duration, idle: Duration) -> Vec<BlockKey> {
        let cutoff = ms(now).saturating_sub(ms(idle));
        self.ips
            .iter()
            .flat_map(|(&(device, ip), bl)| {
                bl.mine
                    .iter()
                    .filter(move |(_, u)| u.refs == 0 && u.last_used_ms <= cutoff)
                    .map(move |(&block, _)| BlockKey { device, ip, block })
            })
            .collect()
    }
}

/// Allocate a SNAT binding for `key` (a `Snat` key) and store it in `nat`
/// until `expires`: an existing live binding is reused; otherwise a port
/// free towards the connection's destination is taken from a held block.
/// Unless the result is `Port`, nothing is stored.
pub fn allocate_snat(
    nat: &mut NatTable,
    leases: &mut PortBlocks,
    key: NatKey,
    targets: &[SnatTarget],
    rand: u64,
    expires: Duration,
    now: Duration,
) -> Alloc {
    debug_assert_eq!(key.kind, NatKind::Snat);
    if let Some(b) = nat.get(&key, now) {
        nat.touch(&key, expires, now);
        return Alloc::Port(b);
    }
    let free = |ip: Ipv4Addr, port: u16| {
        let ret: ConnKey = key.return_key(NatBinding { ip, port });
        !nat.return_key_in_use(NatKind::Snat, &ret, now)
    };
    let r = leases.allocate(key.conn.tracker, targets, rand, now, free);
    if let Alloc::Port(b) = r {
        if nat.insert(key, b, expires, now).is_err() {
            // Only a full table gets here (the port was checked free):
            // undo the block's count.
            leases.unbind(key.conn.tracker, b.ip, b.port, now);
            return Alloc::TableFull;
        }
    }
    r
}

#[cfg(test)]
mod tests;
