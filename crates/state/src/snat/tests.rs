//! `PortBlocks` and `allocate_snat` under test: allocation, claims (ahead
//! and on need), release, and the block index against a linear walk.

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
fn alloc(nat: &mut NatTable, pb: &mut PortBlocks, k: NatKey, t: &[SnatTarget], rand: u64) -> Alloc {
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
    let first = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 5000, d), &t, 9, S(100), S(0));
    let Alloc::NeedBlock(b) = first else { panic!("no block held yet: {first:?}") };
    assert!(b.block >= 16, "block {} is below the port range", b.block);
    assert!(nat.is_empty(), "nothing stored before a port is chosen");
    pb.granted(b, S(0));
    let (lo, hi) = b.ports();
    let mut ports = HashSet::new();
    // 64 connections to one destination fill the block...
    for sport in 0..64 {
        let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, sport, d), &t, 9, S(100), S(0));
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
    let again = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 64, d2), &t, 1, S(100), S(0));
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
    let r = allocate_snat(&mut nat, &mut pb, key(proto::TCP, 1, 1, d), &[backwards], 3, S(9), S(0));
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
        let unbound: u32 = bl.mine.values().map(|u| BLOCK_SIZE.saturating_sub(u.refs)).sum();
        assert_eq!(bl.unbound, unbound, "ports not bound yet, {key:?}");
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
                    // The block a claim picks: the nth free one of the
                    // span, as a walk over every block counts them.
                    for (key, bl) in &pb.ips {
                        let span = block_span(1000, 1800);
                        let free = |b: &u16| {
                            !bl.held_elsewhere.get(*b) && !bl.mine.contains_key(b) && !bl.pending.get(*b)
                        };
                        let n = span.clone().filter(free).count() as u64;
                        let walk = (n > 0).then(|| span.clone().filter(free).nth(((rand / 64) % n) as usize)).flatten();
                        prop_assert_eq!(pick_free(bl, span, rand), walk, "{:?}", key);
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
