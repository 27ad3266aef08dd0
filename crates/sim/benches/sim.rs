//! Simulation throughput: (a) L2 unicast after learning, (b) a router
//! between two bridges with a 20-rule chain on each, (c) a router with
//! 10,000 routes. Tracing off, one reused `SimResult`, as the agent runs it.
//!
//! `cargo bench -p midonet-sim --bench sim -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use midonet_sim::*;

#[path = "common.rs"]
mod common;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(1));
    for (name, w) in [
        ("a_l2_unicast", common::l2()),
        ("b_routed_20_rules", common::routed()),
        ("c_10k_routes", common::big_table()),
    ] {
        let mut out = SimResult::default();
        let mut icmp = IcmpRateLimiter::default();
        let mut i = 0usize;
        // Sanity: the world forwards (a benchmark of drops would flatter us).
        simulate_into(&w.snap, &w.state, &NoConntrack, &mut icmp, &w.input(0), &mut out);
        assert_eq!(out.decision, Decision::Forward, "{name}: {}", out.render());
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                simulate_into(
                    &w.snap,
                    &w.state,
                    &NoConntrack,
                    &mut icmp,
                    black_box(&w.input(i)),
                    &mut out,
                );
                black_box(&out.decision);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
