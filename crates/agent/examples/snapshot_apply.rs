//! Time and memory of an agent taking in a whole-topology snapshot, without
//! a cluster: the scale bench's topology (routers, bridges, exterior bridge
//! ports, and per bridge a router port linked to an interior bridge port,
//! with its route) is encoded as the store holds it (the model's JSON, under
//! its store key), handed to the agent's [`Cache`] as one reassembled
//! `pb::Snapshot`, and the simulation's view built from it, as the agent's
//! core task does on its first snapshot.
//!
//! `cargo run --release -p midonet-agent --example snapshot_apply -- [PORTS]`
//! (default 100,000 exterior ports, 10,000 bridges, 1,000 routers; the
//! bridges and routers scale with PORTS). Prints the phases' wall times and
//! the process's RSS (`VmRSS`, `VmHWM`) after each, then the rate at which
//! the view simulates a routed packet (the agent's miss path without the
//! datapath), to compare with a small topology (`-- 1000`).

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_agent::cache::Cache;
use midonet_model::topology::Stored;
use midonet_model::{
    Bridge, DeviceId, MacAddr, Port, PortType, Route, RouteType, Router, RouterId, Topology,
};
use midonet_proto::pb;
use midonet_sim::{
    simulate_into, Decision, FlowKey, IcmpRateLimiter, MemState, NoConntrack, SimInput, SimResult,
    Snapshot,
};
use parking_lot::RwLock;

/// Counts live heap bytes, to tell what the phases hold from what the
/// allocator keeps.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Relaxed);
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}
#[global_allocator]
static ALLOC: Counting = Counting;

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix(" kB")?.trim().parse().ok())
        .unwrap_or(0)
}

fn mem(phase: &str, t: Instant) {
    println!(
        "{phase:<28} {:>8.1} ms   heap {:>6.1} MiB   VmRSS {:>6.1} MiB   VmHWM {:>6.1} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        LIVE.load(Relaxed) as f64 / (1 << 20) as f64,
        status("VmRSS:") as f64 / 1024.0,
        status("VmHWM:") as f64 / 1024.0,
    );
}

fn kv<T: Stored>(o: &T) -> pb::KeyValue {
    pb::KeyValue {
        key: o.store_key(),
        value: serde_json::to_vec(o).expect("model values serialize"),
        mod_revision: 1,
    }
}

/// The scale bench's topology as store entries.
fn topology(ports: usize) -> Vec<pb::KeyValue> {
    let bridges = (ports / 10).max(1);
    let routers = (bridges / 10).max(1);
    let mut kvs = Vec::new();
    let router_ids: Vec<_> = (0..routers)
        .map(|i| {
            let r = Router {
                id: midonet_model::RouterId::random(),
                name: format!("r{i}"),
                tenant_id: Some("scale".into()),
                admin_state_up: true,
                ..Default::default()
            };
            kvs.push(kv(&r));
            r.id
        })
        .collect();
    let bridge_ids: Vec<_> = (0..bridges)
        .map(|i| {
            let b = Bridge {
                id: midonet_model::BridgeId::random(),
                name: format!("b{i}"),
                tenant_id: Some("scale".into()),
                admin_state_up: true,
                ..Default::default()
            };
            kvs.push(kv(&b));
            b.id
        })
        .collect();
    let mut tunnel_key = 1;
    let mut port = |device: midonet_model::DeviceId, port_type: PortType| {
        tunnel_key += 1;
        Port {
            id: midonet_model::PortId::random(),
            port_type,
            device_id: device,
            tunnel_key,
            admin_state_up: true,
            ..Default::default()
        }
    };
    for i in 0..ports {
        let p = port(bridge_ids[i % bridges].cast(), PortType::Bridge);
        kvs.push(kv(&p));
    }
    for (i, b) in bridge_ids.iter().enumerate() {
        let (hi, lo) = ((i / 256) % 256, i % 256);
        let mut rp = port(router_ids[i % routers].cast(), PortType::Router);
        let mut bp = port(b.cast(), PortType::Bridge);
        rp.port_address = Some(format!("10.{hi}.{lo}.1").parse().expect("address"));
        rp.network_address = Some(format!("10.{hi}.{lo}.0").parse().expect("address"));
        rp.network_length = Some(24);
        rp.port_mac = Some(MacAddr([0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]));
        rp.peer_id = Some(bp.id);
        bp.peer_id = Some(rp.id);
        let route = Route {
            id: midonet_model::RouteId::random(),
            router_id: router_ids[i % routers],
            route_type: RouteType::Normal,
            dst_network_addr: rp.network_address.expect("set"),
            dst_network_length: 24,
            next_hop_port: Some(rp.id),
            ..Default::default()
        };
        kvs.extend([kv(&rp), kv(&bp), kv(&route)]);
    }
    kvs
}

fn main() {
    let ports = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let t = Instant::now();
    // Built on another thread, as the agent's session task receives it
    // (allocations land in that thread's malloc arena).
    let kvs = std::thread::spawn(move || topology(ports)).join().expect("built");
    let bytes: usize = kvs.iter().map(|k| k.key.len() + k.value.len()).sum();
    println!("{} keys, {:.1} MiB of keys and values", kvs.len(), bytes as f64 / (1 << 20) as f64);
    let snap = pb::Snapshot { revision: 2, kvs, more: false };
    mem("encoded (the message)", t);

    let mut cache = Cache::new(Arc::new(RwLock::new(MemState::default())));
    let empty = Snapshot::build(&Topology::default());
    let t = Instant::now();
    let applied = cache.apply_snapshot(snap, &empty);
    mem("cache.apply_snapshot", t);
    let t1 = Instant::now();
    let sim = Snapshot::build(&cache.topology);
    mem("Snapshot::build", t1);
    mem("apply + build", t);
    println!(
        "{} ports, {} tags, {} undecodable keys",
        cache.topology.ports.len(),
        applied.tags.len(),
        applied.bad_keys
    );
    drop(applied);
    mem("after (view and cache held)", t);
    // What the agent does after a snapshot.
    midonet_datapath::sys::trim_heap();
    mem("after trim_heap", t);
    let before = LIVE.load(Relaxed);
    let copy = cache.topology.clone();
    println!(
        "  of which the topology: {:.1} MiB",
        (LIVE.load(Relaxed) - before) as f64 / (1 << 20) as f64
    );
    drop(copy);
    let before = LIVE.load(Relaxed);
    let copy = sim.clone();
    println!(
        "  of which the view: {:.1} MiB",
        (LIVE.load(Relaxed) - before) as f64 / (1 << 20) as f64
    );
    drop(copy);
    // One change afterwards (a bridge renamed), as a delta: the agent
    // applies it and builds its whole view again.
    let mut renamed = cache.topology.bridges.values().next().expect("a bridge").clone();
    renamed.name.push_str("-renamed");
    let delta = pb::Delta {
        revision: 3,
        changes: vec![pb::Change {
            key: renamed.store_key(),
            value: serde_json::to_vec(&renamed).expect("serializes"),
            deleted: false,
        }],
    };
    let t = Instant::now();
    let applied = cache.apply_delta(delta, &sim).expect("a new revision");
    let sim2 = Snapshot::build(&cache.topology);
    println!(
        "one change (bridge renamed): apply + build {:.1} ms, {} tags",
        t.elapsed().as_secs_f64() * 1e3,
        applied.tags.len()
    );
    drop((sim, sim2));
    simulation_rate(&mut cache.topology);
}

/// A routed packet's simulation rate on this view: from an exterior port of
/// one bridge, through its router, to an address on another bridge of the
/// same router, with the router's ARP entry and both MACs known (as after
/// the first packets). Tracing off and one result reused, as the agent's
/// handler simulates; 64 flows in turn. The egress port is bound to an
/// interface first (the scale topology's ports are not), and the view built
/// again.
fn simulation_rate(t: &mut Topology) {
    let mut linked: BTreeMap<RouterId, Vec<&Port>> = BTreeMap::new();
    for p in t.ports.values().filter(|p| p.is_router_port() && p.peer_id.is_some()) {
        linked.entry(p.device_id.cast()).or_default().push(p);
    }
    let Some((router, rps)) = linked.into_iter().find(|(_, v)| v.len() >= 2) else {
        println!("simulation: no router with two linked ports at this size");
        return;
    };
    let (a, b) = (rps[0], rps[1]);
    let bridge = |rp: &Port| t.ports[&rp.peer_id.expect("linked")].device_id;
    let exterior = |dev: DeviceId| {
        t.ports.values().find(|p| p.device_id == dev && p.peer_id.is_none()).expect("a port").id
    };
    let (ba, bb) = (bridge(a), bridge(b));
    let (ingress, egress) = (exterior(ba), exterior(bb));
    let (router, a, b) = (router, a.clone(), b.clone());
    let (a, b) = (&a, &b);
    for (p, name) in [(ingress, "tap-in"), (egress, "tap-out")] {
        let p = t.ports.get_mut(&p).expect("held");
        p.host_id = Some(midonet_model::HostId::random());
        p.interface_name = Some(name.into());
    }
    let sim = &Snapshot::build(t);
    let net = |rp: &Port| u32::from(rp.network_address.expect("router port"));
    let (src, dst) = (Ipv4Addr::from(net(a) + 11), Ipv4Addr::from(net(b) + 5));
    let (vm, far) = ("02:aa:00:00:00:01", "02:bb:00:00:00:05");
    let mac = |s: &str| s.parse::<midonet_sim::MacAddr>().expect("mac");
    let mut state = MemState::default();
    state.macs.insert((ba.cast(), 0, mac(vm)), ingress);
    state.router_arp.insert((router, dst), mac(far));
    state.macs.insert((bb.cast(), 0, mac(far)), egress);
    let gw = a.port_mac.expect("set");
    let packets: Vec<(FlowKey, Vec<u8>)> = (0..64)
        .map(|i| {
            let desc = format!(
                "eth.src={vm},eth.dst={gw},ip4.src={src},ip4.dst={dst},tcp.src={},tcp.dst=80",
                30000 + i
            );
            let key: FlowKey = desc.parse().expect("packet");
            let mut frame = Vec::new();
            key.to_frame(&[0u8; 64], &mut frame);
            (FlowKey::extract(&frame, key.in_port).expect("frame"), frame)
        })
        .collect();
    let input = |i: usize| {
        let (key, frame) = &packets[i % packets.len()];
        SimInput {
            ingress,
            key: *key,
            frame,
            now: Duration::from_secs(1),
            hash_seed: 1,
            trace: false,
            generated: false,
            split_reverse_nat: false,
        }
    };
    let (mut out, mut icmp) = (SimResult::default(), IcmpRateLimiter::default());
    simulate_into(sim, &state, &NoConntrack, &mut icmp, &input(0), &mut out);
    assert_eq!(out.decision, Decision::Forward, "{}", out.render());
    let n = 1_000_000;
    let t0 = Instant::now();
    for i in 0..n {
        simulate_into(sim, &state, &NoConntrack, &mut icmp, &input(i), &mut out);
        std::hint::black_box(&out.decision);
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "simulation, routed bridge -> router -> bridge: {ns:.0} ns, {:.2} M/s on one core",
        1e3 / ns
    );
}
