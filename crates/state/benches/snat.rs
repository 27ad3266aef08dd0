//! SNAT port choice for a new connection when the host already holds many
//! blocks: N full blocks (a binding on every port) and one with free ports,
//! numbered after the full ones so that a walk in block order meets every
//! full block first. The port is unbound after each allocation, so every
//! iteration sees the same state.
//!
//! And `churn`: the pattern of `bench/cps.sh NAT=1`, where every new
//! connection goes to the same server: 32,768 live bindings in the NAT
//! table, each new connection's allocated (`allocate_snat`) as the oldest
//! one's ends, blocks granted as soon as they are asked for (claims ahead
//! included), so the held blocks fill, drain and are scanned as in a run.
//!
//! `cargo bench -p midonet-state --bench snat -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use midonet_state::snat::allocate_snat;
use midonet_state::snat::BLOCK_SIZE;
use midonet_state::{
    Alloc, BlockKey, ConnKey, NatKey, NatKind, NatTable, PortBlocks, SnatTarget, TrackerId,
};
use uuid::Uuid;

const FIRST_BLOCK: u16 = 16;

fn bench(c: &mut Criterion) {
    let device = TrackerId(Uuid::from_u128(1));
    let ip = Ipv4Addr::new(203, 0, 113, 1);
    let targets = [SnatTarget { ip_from: ip, ip_to: ip, port_from: 1024, port_to: 65535 }];
    let now = Duration::from_secs(1);
    let mut g = c.benchmark_group("snat_allocate");
    for full in [16u16, 512] {
        let mut pb = PortBlocks::new();
        for block in FIRST_BLOCK..FIRST_BLOCK + full {
            let lo = u32::from(block) * BLOCK_SIZE;
            for port in lo..lo + BLOCK_SIZE {
                pb.rebind(device, ip, port as u16, now);
            }
        }
        pb.granted(BlockKey { device, ip, block: FIRST_BLOCK + full }, now);
        let mut rand = 0u64;
        g.bench_function(BenchmarkId::new("full_blocks", full), |b| {
            b.iter(|| {
                rand = rand.wrapping_add(1);
                let r = pb.allocate(device, &targets, black_box(rand), now, |_, _| true);
                let Alloc::Port(nb) = r else { panic!("a port is free: {r:?}") };
                pb.unbind(device, nb.ip, nb.port, now);
                nb
            })
        });
    }
    g.finish();
}

fn churn(c: &mut Criterion) {
    const LIVE: u32 = 32_768;
    let device = TrackerId(Uuid::from_u128(1));
    let ip = Ipv4Addr::new(203, 0, 113, 2);
    let targets = [SnatTarget { ip_from: ip, ip_to: ip, port_from: 1024, port_to: 65535 }];
    let now = Duration::from_secs(1);
    let expires = Duration::from_secs(3600);
    // Connection n: from one of 4 VMs, source ports cycling, to one server.
    let key = |n: u32| {
        NatKey::new(
            NatKind::Snat,
            ConnKey {
                src: Ipv4Addr::new(10, 0, 1, 10 + (n % 4) as u8),
                dst: Ipv4Addr::new(203, 0, 113, 1),
                src_port: 1024 + ((n / 4) % 64_000) as u16,
                dst_port: 8080,
                proto: 6,
                tracker: device,
            },
        )
    };
    let mut nat = NatTable::new(1 << 20, 7);
    let mut pb = PortBlocks::new();
    let mut live = std::collections::VecDeque::new();
    let mut n = 0u32;
    let mut rand = 0x9e37_79b9_7f4a_7c15u64;
    let next = |r: &mut u64| {
        *r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *r
    };
    let one = |nat: &mut NatTable, pb: &mut PortBlocks, n: u32, rand: u64| loop {
        let k = key(n);
        match allocate_snat(nat, pb, k, &targets, rand, expires, now) {
            Alloc::Port(b) => {
                for w in pb.take_wanted() {
                    pb.granted(w, now);
                }
                return (k, b);
            }
            Alloc::NeedBlock(b) => pb.granted(b, now),
            r => panic!("{r:?}"),
        }
    };
    while n < LIVE {
        live.push_back(one(&mut nat, &mut pb, n, next(&mut rand)));
        n += 1;
    }
    c.bench_function("snat_allocate/churn_32k_live_one_server", |b| {
        b.iter(|| {
            let (k, old) = live.pop_front().expect("live");
            nat.remove(&k);
            pb.unbind(device, old.ip, old.port, now);
            live.push_back(one(&mut nat, &mut pb, black_box(n), next(&mut rand)));
            n = n.wrapping_add(1);
        })
    });
}

criterion_group!(benches, bench, churn);
criterion_main!(benches);
