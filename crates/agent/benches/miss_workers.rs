//! Misses per second through the agent's real handler (`handler::Handler`:
//! simulation, flow-state bookkeeping, translation), inline as a provider
//! runs it with `miss_workers = 0`, and on 1, 2 and 4 miss workers
//! (`midonet_datapath::workers`) driven by one thread standing in for the
//! datapath's: it hands over a batch of misses and applies the answers as
//! they come (its own share of the work is what the providers do anyway).
//!
//! The topology is a VM → bridge → router → bridge → VM path with a
//! 20-rule chain on each bridge and a `matchForwardFlow` accept on the
//! router (connection tracking on every miss), and every miss is a new TCP
//! connection (a new source port), as the `cps` benchmark's NAT run makes
//! them. Run: `cargo bench -p midonet-agent --bench miss_workers`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use midonet_agent::handler::{Egress, Handler, Shared, View};
use midonet_datapath::sys::Poller;
use midonet_datapath::workers::{Miss, Workers};
use midonet_datapath::{FlowKey, InPort, UpcallHandler};
use midonet_model::{Condition, Rule, RuleType};
use midonet_sim::builder::TopoBuilder;
use midonet_sim::{MacAddr, MemState, Snapshot};

mod common;

/// Misses per measured batch.
const BATCH: usize = 2048;

fn mac(s: &str) -> MacAddr {
    s.parse().expect("mac")
}

struct World {
    shared: Arc<Shared>,
    frames: Vec<(FlowKey, Vec<u8>)>,
    _outboxes: common::Outboxes,
}

fn world() -> World {
    let mut t = TopoBuilder::new(0xb7);
    let b1 = t.bridge("left");
    let b2 = t.bridge("right");
    let r = t.router("r");
    let v1 = t.bridge_port(b1);
    let v3 = t.bridge_port(b2);
    let bi1 = t.bridge_iport(b1, None);
    let bi2 = t.bridge_iport(b2, None);
    let rp1 = t.router_port(r, "10.0.0.1/24", "02:00:00:00:01:01", false);
    let rp2 = t.router_port(r, "10.0.1.1/24", "02:00:00:00:01:02", false);
    t.link(bi1, rp1);
    t.link(bi2, rp2);
    t.route(r, "10.0.0.0/24", Some(rp1), None);
    t.route(r, "10.0.1.0/24", Some(rp2), None);
    t.arp_entry(b2, "10.0.1.5", "02:00:00:00:00:05");
    t.mac_entry(b2, 0, "02:00:00:00:00:05", v3);
    for (bridge, name) in [(b1, "left-in"), (b2, "right-in")] {
        let c = t.chain(name);
        for i in 0..19u16 {
            let cond = Condition {
                nw_src_address: Some(format!("172.16.{i}.0").parse().expect("ip")),
                nw_src_length: Some(24),
                ..Default::default()
            };
            t.rule(c, Rule { rule_type: RuleType::Drop, condition: cond, ..Default::default() });
        }
        t.rule(c, Rule { rule_type: RuleType::Accept, ..Default::default() });
        t.edit_bridge(bridge, |b| b.inbound_filter_id = Some(c));
    }
    // Every connection tracked at the router.
    let ct = t.chain("router-in");
    t.rule(
        ct,
        Rule {
            rule_type: RuleType::Accept,
            condition: Condition { match_forward_flow: true, ..Default::default() },
            ..Default::default()
        },
    );
    t.rule(ct, Rule { rule_type: RuleType::Accept, ..Default::default() });
    t.edit_router(r, |x| x.inbound_filter_id = Some(ct));
    let mut state = MemState::default();
    state.macs.insert((b1, 0, mac("02:00:00:00:00:01")), v1);
    state.macs.insert((b2, 0, mac("02:00:00:00:01:02")), bi2);
    let view = View {
        sim: Arc::new(Snapshot::build(&t.build())),
        egress: HashMap::from([(v3, Egress::Local(2)), (v1, Egress::Local(1))]),
        ingress: HashMap::from([(1, v1)]),
        revision: 1,
        ready: true,
        state_peers: HashMap::new(),
        trusted_peers: Default::default(),
        tunnel_local: Vec::new(),
    };
    let (shared, outboxes) = common::shared(view, state, 1 << 22, None);
    // Source addresses × source ports: distinct connections.
    let frames = (0..BATCH)
        .map(|i| {
            let desc = format!(
                "in_port=1,eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.{},ip4.dst=10.0.1.5,tcp.src={},tcp.dst=80,tcp.flags=syn",
                11 + i % 200,
                20000 + i / 200
            );
            let key: FlowKey = desc.parse().expect("packet");
            let mut frame = Vec::new();
            key.to_frame(&[0u8; 16], &mut frame);
            (FlowKey::extract(&frame, key.in_port).expect("frame"), frame)
        })
        .collect();
    World { shared, frames, _outboxes: outboxes }
}

/// A fresh connection each time: the source port moves on by `round`.
fn nth(w: &World, round: u64, i: usize) -> (FlowKey, Vec<u8>) {
    let (mut k, mut f) = w.frames[i].clone();
    let port = k.l4_src.wrapping_add((round % 2000) as u16 * 13);
    k.l4_src = port;
    // TCP source port at 14 + 20.
    f[34..36].copy_from_slice(&port.to_be_bytes());
    (k, f)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("miss_workers");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    let mut round = 0u64;
    // A fresh world (empty tables) for each variant: the connections one
    // leaves behind would slow the next one's inserts.
    let w = world();
    g.bench_function(BenchmarkId::new("inline", 0), |b| {
        let mut h = Handler::new(w.shared.clone());
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let misses: Vec<_> = (0..BATCH).map(|i| nth(&w, round, i)).collect();
                let t0 = Instant::now();
                for (k, f) in &misses {
                    std::hint::black_box(h.on_miss(k, f, InPort::Port(1)));
                }
                spent += t0.elapsed();
            }
            spent
        })
    });
    drop(w);
    for n in [1usize, 2, 4] {
        let w = world();
        let mut poller = Poller::new().expect("poller");
        let handlers = (0..n)
            .map(|_| Box::new(Handler::new(w.shared.clone())) as Box<dyn UpcallHandler>)
            .collect();
        let mut workers =
            Workers::start("bench", handlers, Arc::new(poller.waker().expect("waker")))
                .expect("workers");
        g.bench_function(BenchmarkId::new("workers", n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut ready = Vec::new();
                for _ in 0..iters {
                    round += 1;
                    let misses: Vec<_> = (0..BATCH).map(|i| nth(&w, round, i)).collect();
                    let t0 = Instant::now();
                    for (key, frame) in misses {
                        let m = Miss::new(key, frame, InPort::Port(1), None, 0, ());
                        assert!(workers.submit(m), "queue full");
                    }
                    let mut done = 0;
                    while done < BATCH {
                        poller.wait(100, &mut ready).expect("wait");
                        poller.clear_wake();
                        done += workers.complete(|_, d| {
                            std::hint::black_box(d);
                        });
                    }
                    spent += t0.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
