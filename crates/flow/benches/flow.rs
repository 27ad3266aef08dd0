//! Inner-loop benchmarks: keying a frame, hashing a masked key (the
//! classifier lookup), and a NAT rewrite with checksum updates.
//!
//! Run: `cargo bench -p midonet-flow --bench flow`.

use std::hash::BuildHasher;
use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use midonet_flow::{apply_action, Action, FieldId, FlowKey, FlowMask, FlowMatch, InPort};

fn tcp_frame() -> Vec<u8> {
    let k: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,tcp.src=40000,tcp.dst=80,tcp.flags=ack"
        .parse()
        .expect("valid description");
    let mut f = Vec::new();
    k.to_frame(&[0u8; 1400], &mut f);
    f
}

fn bench_extract(c: &mut Criterion) {
    let f = tcp_frame();
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4_tcp", |b| b.iter(|| FlowKey::extract(black_box(&f), InPort::Port(1))));
    let mut tagged = f.clone();
    apply_action(&mut tagged, &Action::PushVlan { vid: 10, pcp: 0 }).expect("push");
    g.bench_function("vlan_ipv4_tcp", |b| {
        b.iter(|| FlowKey::extract(black_box(&tagged), InPort::Port(1)))
    });
    g.finish();
}

fn bench_masked_hash(c: &mut Criterion) {
    let key = FlowKey::extract(&tcp_frame(), InPort::Port(1)).expect("key");
    // The mask a routed TCP flow typically gets.
    let mut m = FlowMatch::new(key);
    let _ = m.eth_dst();
    let _ = m.ipv4_dst_prefix(24);
    let _ = m.ip_ttl();
    let _ = m.l4_dst();
    let mask = *m.mask();
    let state = foldhash::fast::FixedState::with_seed(7);
    let mut g = c.benchmark_group("masked_key");
    g.throughput(Throughput::Elements(1));
    g.bench_function("apply_and_hash", |b| {
        b.iter(|| {
            let mk = mask.apply(black_box(&key));
            state.hash_one(mk)
        })
    });
    g.bench_function("hash_key", |b| b.iter(|| state.hash_one(black_box(&key))));
    g.bench_function("exact_mask_apply", |b| {
        let exact = FlowMask::exact();
        b.iter(|| exact.apply(black_box(&key)))
    });
    g.bench_function("mark_field", |b| {
        b.iter(|| {
            let mut m = FlowMask::empty();
            m.mark(black_box(FieldId::L4Dst));
            m
        })
    });
    g.finish();
}

fn bench_rewrite(c: &mut Criterion) {
    let mut f = tcp_frame();
    let mut g = c.benchmark_group("rewrite");
    g.throughput(Throughput::Elements(1));
    let mut flip = false;
    g.bench_function("snat_ipv4_src", |b| {
        b.iter(|| {
            flip = !flip;
            let a = if flip { Ipv4Addr::new(203, 0, 113, 1) } else { Ipv4Addr::new(10, 0, 0, 2) };
            apply_action(black_box(&mut f), &Action::SetIpv4Src(a))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_extract, bench_masked_hash, bench_rewrite);
criterion_main!(benches);
