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

    /// The set bits in `span`, ascending.
    fn ones(self, span: RangeInclusive<u16>) -> impl Iterator<Item = u16> {
        let (lo, hi) = (*span.start(), *span.end());
        (lo / 64..=hi / 64).flat_map(move |w| {
            let mut word = self.0[usize::from(w)];
            if w == lo / 64 {
                word &= !0 << (lo % 64);
            }
            if w == hi / 64 {
                word &= !0 >> (63 - hi % 64);
            }
            std::iter::from_fn(move || {
                let bit = word.trailing_zeros();
                word &= word.wrapping_sub(1);
                (bit < 64).then_some(w * 64 + bit as u16)
            })
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct BlockUse {
    /// Bindings using a port of the block.
    refs: u32,
    /// When it was last handed a binding or had one freed.
    last_used_ms: u64,
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
    /// Files `block` by its bindings `refs`, or nowhere when it is not
    /// held (`None`).
    fn file(&mut self, block: u16, refs: Option<u32>) {
        self.open.set(block, refs.is_some_and(|r| r < BLOCK_SIZE));
        self.full.set(block, refs.is_some_and(|r| r >= BLOCK_SIZE));
    }

    /// One binding more on held `block`.
    fn bind(&mut self, block: u16, now: Duration) {
        if let Some(used) = self.mine.get_mut(&block) {
            used.refs += 1;
            used.last_used_ms = ms(now);
            let refs = used.refs;
            self.file(block, Some(refs));
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
    let free =
        |b: &u16| !bl.held_elsewhere.get(*b) && !bl.mine.contains_key(b) && !bl.pending.get(*b);
    let n = span.clone().filter(free).count();
    if n == 0 {
        return None;
    }
    let pick = (rand / u64::from(BLOCK_SIZE)) % n as u64;
    span.filter(free).nth(pick as usize)
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
        let used = ip.mine.entry(b.block).or_insert(BlockUse { refs: 0, last_used_ms: ms(now) });
        let refs = used.refs;
        ip.file(b.block, Some(refs));
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
            ip.mine.remove(&b.block);
            ip.file(b.block, None);
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
        for block in bl.open.ones(span.clone()) {
            if reserve >= want {
                return;
            }
            let refs = bl.mine.get(&block).map_or(BLOCK_SIZE, |u| u.refs);
            reserve += BLOCK_SIZE.saturating_sub(refs);
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
                used.refs = used.refs.saturating_sub(1);
                used.last_used_ms = ms(now);
                let refs = used.refs;
                bl.file(b.block, Some(refs));
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
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::key::proto;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const PUB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    fn dev() -> TrackerId {
        TrackerId(Uuid::from_u128(3))
    }

    fn target(lo: u16, hi: u16) -> SnatTarget {
        SnatTarget { ip_from: PUB, ip_to: PUB, port_from: lo, port_to: hi }
    }

    fn key(p: u8, src: u8, sport: u16, dst: (Ipv4Addr, u16)) -> NatKey {
        NatKey::new(
            NatKind::Snat,
            ConnKey {
                src: Ipv4Addr::new(10, 0, 0, src),
                src_port: sport,
                dst: dst.0,
                dst_port: if p == proto::ICMP { sport } else { dst.1 },
                proto: p,
                tracker: dev(),
            },
        )
    }

    /// Claim ahead: allocations ask for a block before the held ones run
    /// out; a packet that finds nothing free waits for a block asked for
    /// already instead of asking for another, and such a wait doubles
    /// what is kept ahead (once per grant); quiet minutes halve it.
    #[test]
    fn blocks_are_claimed_ahead_and_waited_for_once() {
        let t = [target(1024, 65535)];
        let mut pb = PortBlocks::new();
        let free = |_: Ipv4Addr, _: u16| true;
        let Alloc::NeedBlock(first) = pb.allocate(dev(), &t, 7, S(0), free) else { panic!() };
        pb.asked(first);
        // Others arriving before the answer wait for the same block.
        for rand in [8, 9_000, 123_456] {
            assert_eq!(pb.allocate(dev(), &t, rand, S(0), free), Alloc::NeedBlock(first));
        }
        assert!(pb.take_wanted().is_empty());
        pb.granted(first, S(0));
        // That wait doubled the ports kept ahead to 4 blocks' worth: with
        // 63, 62, 61, 60 ports left, four blocks are asked for, one each
        // (a block asked for counts as 64), then none.
        let mut asked = vec![first];
        for i in 0..4 {
            assert!(matches!(pb.allocate(dev(), &t, 11 + i, S(0), free), Alloc::Port(_)));
            let w = pb.take_wanted();
            assert_eq!(w.len(), 1, "allocation {i}: {w:?}");
            assert!(!asked.contains(&w[0]) && !pb.holds(&w[0]), "{w:?} {asked:?}");
            asked.push(w[0]);
        }
        assert!(matches!(pb.allocate(dev(), &t, 20, S(0), free), Alloc::Port(_)));
        assert!(pb.take_wanted().is_empty());
        // A lost claim is waited for no more: the reserve is short again.
        pb.unanswered(asked[4]);
        assert!(matches!(pb.allocate(dev(), &t, 21, S(0), free), Alloc::Port(_)));
        let w = pb.take_wanted();
        assert_eq!(w.len(), 1, "{w:?}");
        // Refused: another host's, and no longer waited for either.
        pb.held_elsewhere(w[0], true);
        assert!(matches!(pb.allocate(dev(), &t, 22, S(0), free), Alloc::Port(_)));
        let again = pb.take_wanted();
        assert!(again.len() == 1 && again[0] != w[0], "{again:?}");
        // Two quiet rounds (the first still remembers the wait): back to
        // two blocks ahead, so granting three of those asked for leaves
        // nothing to ask.
        pb.relax();
        pb.relax();
        for b in &asked[1..4] {
            pb.granted(*b, S(0));
        }
        pb.unanswered(again[0]);
        assert!(matches!(pb.allocate(dev(), &t, 23, S(0), free), Alloc::Port(_)));
        assert!(pb.take_wanted().is_empty());
    }

    /// With every block of the range held, nothing is claimed ahead.
    #[test]
    fn nothing_is_claimed_ahead_when_no_block_is_free() {
        // Two blocks: 1024..=1151.
        let t = [target(1024, 1151)];
        let mut pb = PortBlocks::new();
        let free = |_: Ipv4Addr, _: u16| true;
        pb.granted(BlockKey::of(dev(), PUB, 1024), S(0));
        pb.held_elsewhere(BlockKey::of(dev(), PUB, 1100), true);
        // Past the 64th, ports are shared among destinations.
        for _ in 0..70 {
            assert!(matches!(pb.allocate(dev(), &t, 3, S(0), free), Alloc::Port(_)));
            assert!(pb.take_wanted().is_empty());
        }
    }

    /// Allocate, claiming blocks as asked (a store that always grants).
    fn alloc(
        nat: &mut NatTable,
        pb: &mut PortBlocks,
        k: NatKey,
        t: &[SnatTarget],
        rand: u64,
    ) -> Alloc {
        loop {
            match allocate_snat(nat, pb, k, t, rand, S(100), S(0)) {
                Alloc::NeedBlock(b) => pb.granted(b, S(0)),
                r => return r,
            }
        }
    }

    #[test]
    fn asks_for_a_block_then_hands_out_its_ports() {
        let mut nat = NatTable::new(1000, 1);
        let mut pb = PortBlocks::new();
        let d = (Ipv4Addr::new(8, 8, 8, 8), 443);
        let t = [target(1024, 65535)];
        let first =
            allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 5000, d), &t, 9, S(100), S(0));
        let Alloc::NeedBlock(b) = first else { panic!("no block held yet: {first:?}") };
        assert!(b.block >= 16, "block {} is below the port range", b.block);
        assert!(nat.is_empty(), "nothing stored before a port is chosen");
        pb.granted(b, S(0));
        let (lo, hi) = b.ports();
        let mut ports = HashSet::new();
        // 64 connections to one destination fill the block...
        for sport in 0..64 {
            let r =
                allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, sport, d), &t, 9, S(100), S(0));
            let Alloc::Port(p) = r else { panic!("port expected: {r:?}") };
            assert!((lo..=hi).contains(&p.port) && p.ip == PUB);
            assert!(ports.insert(p.port), "port {} handed out twice", p.port);
        }
        // ...the 65th to it needs another block...
        let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 64, d), &t, 9, S(100), S(0));
        assert!(matches!(r, Alloc::NeedBlock(n) if n != b), "{r:?}");
        // ...but another destination reuses the held block.
        let d2 = (Ipv4Addr::new(8, 8, 4, 4), 443);
        let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 64, d2), &t, 9, S(100), S(0));
        assert!(matches!(r, Alloc::Port(p) if (lo..=hi).contains(&p.port)), "{r:?}");
        // The same connection again gets the same binding.
        let again =
            allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 64, d2), &t, 1, S(100), S(0));
        assert_eq!(again, r);
    }

    #[test]
    fn blocks_held_elsewhere_are_not_claimed_and_exhaustion_is_reported() {
        let mut nat = NatTable::new(1000, 1);
        let mut pb = PortBlocks::new();
        // Two blocks in range: 16 (1024..1087) and 17 (1088..1151).
        let t = [target(1024, 1151)];
        pb.held_elsewhere(BlockKey { device: dev(), ip: PUB, block: 16 }, true);
        let d = (Ipv4Addr::new(8, 8, 8, 8), 80);
        let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 1, d), &t, 0, S(100), S(0));
        assert_eq!(r, Alloc::NeedBlock(BlockKey { device: dev(), ip: PUB, block: 17 }));
        pb.held_elsewhere(BlockKey { device: dev(), ip: PUB, block: 17 }, true);
        let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 1, d), &t, 0, S(100), S(0));
        assert_eq!(r, Alloc::Exhausted);
        // The next IP of a wider target is tried.
        let t2 = [SnatTarget { ip_to: Ipv4Addr::new(203, 0, 113, 2), ..t[0] }];
        let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 1, d), &t2, 0, S(100), S(0));
        assert!(matches!(r, Alloc::NeedBlock(b) if b.ip == Ipv4Addr::new(203, 0, 113, 2)));
    }

    #[test]
    fn ports_stay_inside_a_partial_block_range() {
        let mut nat = NatTable::new(1000, 1);
        let mut pb = PortBlocks::new();
        let t = [target(1030, 1033)];
        let d = (Ipv4Addr::new(8, 8, 8, 8), 80);
        let mut got = Vec::new();
        for s in 0..4 {
            let Alloc::Port(b) = alloc(&mut nat, &mut pb, key(proto::UDP, 1, s, d), &t, 77) else {
                panic!("port expected")
            };
            got.push(b.port);
        }
        got.sort_unstable();
        assert_eq!(got, vec![1030, 1031, 1032, 1033]);
        assert_eq!(alloc(&mut nat, &mut pb, key(proto::UDP, 1, 9, d), &t, 77), Alloc::Exhausted);
    }

    #[test]
    fn empty_and_inverted_ranges_never_ask_for_a_block() {
        let mut nat = NatTable::new(1000, 1);
        let mut pb = PortBlocks::new();
        let d = (Ipv4Addr::new(8, 8, 8, 8), 80);
        for t in [target(0, 0), target(2000, 1000)] {
            let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 1, d), &[t], 3, S(9), S(0));
            assert_eq!(r, Alloc::Exhausted, "{t:?}");
        }
        let backwards = SnatTarget { ip_from: Ipv4Addr::new(203, 0, 113, 9), ..target(1024, 2000) };
        let r =
            allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 1, d), &[backwards], 3, S(9), S(0));
        assert_eq!(r, Alloc::Exhausted);
    }

    #[test]
    fn icmp_ids_are_allocated_like_ports() {
        let mut nat = NatTable::new(1000, 1);
        let mut pb = PortBlocks::new();
        let t = [target(1024, 65535)];
        let d = (Ipv4Addr::new(8, 8, 8, 8), 0);
        // Two hosts, same echo id, same destination: different outside ids.
        let Alloc::Port(a) = alloc(&mut nat, &mut pb, key(proto::ICMP, 1, 7, d), &t, 5) else {
            panic!("id expected")
        };
        let Alloc::Port(b) = alloc(&mut nat, &mut pb, key(proto::ICMP, 2, 7, d), &t, 5) else {
            panic!("id expected")
        };
        assert_ne!(a.port, b.port);
        let reply = key(proto::ICMP, 2, 7, d).return_key(b);
        assert_eq!((reply.src_port, reply.dst_port), (b.port, b.port));
        assert_eq!(
            nat.reverse(NatKind::Snat, &reply, S(1)),
            Some(NatBinding { ip: Ipv4Addr::new(10, 0, 0, 2), port: 7 })
        );
    }

    #[test]
    fn idle_blocks_are_listed_for_release() {
        let mut pb = PortBlocks::new();
        let b = BlockKey { device: dev(), ip: PUB, block: 20 };
        pb.granted(b, S(0));
        let t = [target(1280, 1343)];
        let r = pb.allocate(dev(), &t, 0, S(10), |_, _| true);
        let Alloc::Port(nb) = r else { panic!("{r:?}") };
        assert!(pb.idle(S(1000), DEFAULT_IDLE).is_empty(), "a binding uses it");
        pb.unbind(dev(), nb.ip, nb.port, S(20));
        assert!(pb.idle(S(319), DEFAULT_IDLE).is_empty(), "idle less than 5 min");
        assert_eq!(pb.idle(S(320), DEFAULT_IDLE), vec![b]);
        pb.released(b);
        assert!(!pb.holds(&b));
        assert_eq!(pb.held().count(), 0);
    }

    /// Every IP's `open` and `full` as a recount of `mine` gives them.
    fn assert_index_exact(pb: &PortBlocks) {
        for (key, bl) in &pb.ips {
            for block in 0..BLOCKS_PER_IP as u16 {
                let refs = bl.mine.get(&block).map(|u| u.refs);
                let open = refs.is_some_and(|r| r < BLOCK_SIZE);
                let full = refs.is_some_and(|r| r >= BLOCK_SIZE);
                assert_eq!(bl.open.get(block), open, "open, {key:?} block {block}: {refs:?}");
                assert_eq!(bl.full.get(block), full, "full, {key:?} block {block}: {refs:?}");
            }
        }
    }

    /// The reference for `scan_held`: the walk over every held block in
    /// the span, in order, each kept or skipped by its count (module docs).
    /// Chooses without counting the binding.
    fn linear_scan(
        pb: &PortBlocks,
        targets: &[SnatTarget],
        offset: u32,
        scan: Scan,
        is_free: impl Fn(Ipv4Addr, u16) -> bool,
    ) -> Option<NatBinding> {
        let full = scan != Scan::Unbound;
        let (ports, mut blocks_left) = match scan {
            Scan::Unbound | Scan::FullAll => (BLOCK_SIZE, usize::MAX),
            Scan::FullProbe => (FULL_BLOCK_PROBES, FULL_BLOCKS_PROBED),
        };
        for t in targets {
            let from = t.port_from.max(1);
            if t.ip_from > t.ip_to || from > t.port_to {
                continue;
            }
            for (&(_, ip), bl) in pb.ips.range((dev(), t.ip_from)..=(dev(), t.ip_to)) {
                for (&block, used) in bl.mine.range(block_span(from, t.port_to)) {
                    if (used.refs >= BLOCK_SIZE) != full {
                        continue;
                    }
                    if blocks_left == 0 {
                        return None;
                    }
                    blocks_left -= 1;
                    let base = u32::from(block) * BLOCK_SIZE;
                    for k in 0..ports {
                        let port = base + (offset + k) % BLOCK_SIZE;
                        if port >= u32::from(from)
                            && port <= u32::from(t.port_to)
                            && is_free(ip, port as u16)
                        {
                            return Some(NatBinding { ip, port: port as u16 });
                        }
                    }
                }
            }
        }
        None
    }

    /// Ports free towards a destination: none below `from` (so a scan
    /// meets blocks with no free port first), and of the others about
    /// `taken` in 8 are not, chosen by hashing `seed` with the address and
    /// port.
    fn free_ports((from, seed, taken): (u16, u64, u64)) -> impl Fn(Ipv4Addr, u16) -> bool {
        move |ip, port| {
            if port < from {
                return false;
            }
            let mut x = seed ^ (u64::from(u32::from(ip)) << 16 | u64::from(port));
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (x ^ (x >> 31)) % 8 >= taken
        }
    }

    /// What may happen to one device's blocks, on two IPs and blocks
    /// 16..28 (ports 1024..1791).
    #[derive(Clone, Debug)]
    enum Op {
        Granted(u8, u16),
        Released(u8, u16),
        HeldElsewhere(u8, u16, bool),
        /// `n` bindings restored on the port.
        Rebind(u8, u16, u32),
        /// `n` bindings of the port ended.
        Unbind(u8, u16, u32),
        /// Targets as (first IP, last IP, first port, last port), `rand`,
        /// and what `free_ports` takes.
        Allocate(Vec<(u8, u8, u16, u16)>, u64, (u16, u64, u64)),
    }

    fn ip(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 1 + i)
    }

    fn op() -> impl Strategy<Value = Op> {
        let ip = 0u8..2;
        let block = 16u16..28;
        let port = 1024u16..1792;
        prop_oneof![
            1 => (ip.clone(), block.clone()).prop_map(|(i, b)| Op::Granted(i, b)),
            1 => (ip.clone(), block.clone()).prop_map(|(i, b)| Op::Released(i, b)),
            1 => (ip.clone(), block, any::<bool>()).prop_map(|(i, b, h)| Op::HeldElsewhere(i, b, h)),
            // Often enough to fill a block, so that more blocks than
            // FULL_BLOCKS_PROBED are full.
            4 => (ip.clone(), port.clone(), prop_oneof![1u32..8, Just(BLOCK_SIZE)])
                .prop_map(|(i, p, n)| Op::Rebind(i, p, n)),
            1 => (ip.clone(), port, 1u32..8).prop_map(|(i, p, n)| Op::Unbind(i, p, n)),
            3 => (
                proptest::collection::vec((ip.clone(), ip, 1000u16..1800, 1000u16..1800), 1..3),
                any::<u64>(),
                (1000u16..1800, any::<u64>(), 0u64..9),
            )
                .prop_map(|(t, rand, free)| Op::Allocate(t, rand, free)),
        ]
    }

    proptest! {
        /// Whatever happens to the blocks, the index of open and full
        /// blocks agrees with their counts, and each scan chooses the port
        /// the walk over every held block would.
        #[test]
        fn block_index_stays_exact_and_scans_match_the_linear_walk(
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let mut pb = PortBlocks::new();
            for op in ops {
                match op {
                    Op::Granted(i, block) => pb.granted(BlockKey { device: dev(), ip: ip(i), block }, S(0)),
                    Op::Released(i, block) => pb.released(BlockKey { device: dev(), ip: ip(i), block }),
                    Op::HeldElsewhere(i, block, held) => {
                        pb.held_elsewhere(BlockKey { device: dev(), ip: ip(i), block }, held)
                    }
                    Op::Rebind(i, port, n) => (0..n).for_each(|_| pb.rebind(dev(), ip(i), port, S(0))),
                    Op::Unbind(i, port, n) => (0..n).for_each(|_| pb.unbind(dev(), ip(i), port, S(0))),
                    Op::Allocate(t, rand, free) => {
                        let targets: Vec<SnatTarget> = t
                            .into_iter()
                            .map(|(a, b, lo, hi)| SnatTarget { ip_from: ip(a), ip_to: ip(b), port_from: lo, port_to: hi })
                            .collect();
                        let offset = (rand % u64::from(BLOCK_SIZE)) as u32;
                        for scan in [Scan::Unbound, Scan::FullProbe, Scan::FullAll] {
                            let want = linear_scan(&pb, &targets, offset, scan, free_ports(free));
                            let mut is_free = free_ports(free);
                            let got = pb.clone().scan_held(dev(), &targets, offset, S(0), scan, &mut is_free);
                            prop_assert_eq!(got.map(|(b, _)| b), want, "{:?}", scan);
                        }
                        if let Alloc::NeedBlock(b) = pb.allocate(dev(), &targets, rand, S(0), free_ports(free)) {
                            pb.granted(b, S(0));
                        }
                    }
                }
                assert_index_exact(&pb);
            }
        }

        /// Two hosts sharing a store (a block belongs to whoever claimed it
        /// first) never hand out the same (ip, port) towards the same
        /// destination, and every port lies in a block its host holds and
        /// in the target's range.
        #[test]
        fn two_hosts_never_collide(
            conns in proptest::collection::vec((0usize..2, 0u8..20, any::<u16>(), 0u8..3, any::<u64>()), 1..150),
            lo in 1024u16..1100, width in 1u16..200,
        ) {
            let t = [SnatTarget { ip_from: PUB, ip_to: Ipv4Addr::new(203, 0, 113, 2), port_from: lo, port_to: lo + width }];
            let mut store: std::collections::HashMap<BlockKey, usize> = Default::default();
            let mut hosts = [(NatTable::new(10_000, 1), PortBlocks::new()), (NatTable::new(10_000, 2), PortBlocks::new())];
            let mut used: HashSet<(Ipv4Addr, u16, Ipv4Addr, u16, u8)> = HashSet::new();
            for (h, src, sport, dst, rand) in conns {
                let d = (Ipv4Addr::new(8, 8, 8, dst), 80);
                let k = key(proto::TCP, src, sport, d);
                let result = loop {
                    let (nat, pb) = &mut hosts[h];
                    match allocate_snat(nat, pb, k, &t, rand, S(100), S(0)) {
                        Alloc::NeedBlock(b) => {
                            let owner = *store.entry(b).or_insert(h);
                            if owner == h {
                                pb.granted(b, S(0));
                            } else {
                                pb.held_elsewhere(b, true);
                            }
                        }
                        r => break r,
                    }
                };
                if let Alloc::Port(b) = result {
                    prop_assert!(b.port >= lo && b.port <= lo + width);
                    prop_assert_eq!(store.get(&BlockKey::of(dev(), b.ip, b.port)), Some(&h));
                    let fresh = used.insert((b.ip, b.port, d.0, d.1, proto::TCP));
                    // Only the same connection may come back with its binding.
                    prop_assert!(fresh || hosts[h].0.get(&k, S(0)) == Some(b));
                }
            }
        }
    }
}
