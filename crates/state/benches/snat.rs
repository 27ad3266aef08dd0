//! SNAT port choice for a new connection when the host already holds many
//! blocks: N full blocks (a binding on every port) and one with free ports,
//! numbered after the full ones so that a walk in block order meets every
//! full block first. The port is unbound after each allocation, so every
//! iteration sees the same state.
//!
//! `cargo bench -p midonet-state --bench snat -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use midonet_state::snat::BLOCK_SIZE;
use midonet_state::{Alloc, BlockKey, PortBlocks, SnatTarget, TrackerId};
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

criterion_group!(benches, bench);
criterion_main!(benches);
