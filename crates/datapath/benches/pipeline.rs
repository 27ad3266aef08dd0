//! Per-packet cost of the pipeline on a flow hit: key extraction, lookup
//! and the actions, with outputs going nowhere (no syscalls). What a router
//! hop (MAC and TTL rewrites), a SNAT (address and port), a VLAN push and
//! pop, and an IPv6 hop-limit rewrite add to a plain forward. The actions
//! are idempotent, so the same slot is rewritten again on every iteration.
//!
//! `tunnel_rx`: a VXLAN datagram whose VNI is bound to a local port (output
//! with no lookup), with the tunnel source check as the userspace provider
//! runs it: no peer set pushed (the check is one `None` match), a peer
//! among 64, and an unknown source (dropped). The first two side by side
//! are the price of the check on the fastest receive path.
//!
//! `finmerge`: what the userspace provider's FIN merge
//! ([`midonet_datapath::finmerge`]) adds to a port's receive batch of 32,
//! per frame: TCP data of 32 connections (every frame parsed, nothing to
//! merge), 32 UDP datagrams (refused at the IP protocol), and 16 answers
//! each followed by its FIN (16 merges; the batch is restored between
//! iterations, outside the timing).
//! Run: `cargo bench -p midonet-datapath --bench pipeline`.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use midonet_datapath::pipeline::{Core, Counters, Io};
use midonet_datapath::sys::{Slot, VnetHdr};
use midonet_datapath::{FlowInstall, PortNo, TableConfig};
use midonet_flow::{Action, Actions, FieldId, FlowKey, FlowMask, InPort, MacAddr};

/// Outputs accepted and forgotten.
struct NullIo;

impl Io for NullIo {
    fn output(&mut self, _port: PortNo, _slot: &Slot, _counters: &mut Counters) -> bool {
        true
    }
    fn tunnel(&mut self, _dst: Ipv4Addr, _hdr: [u8; 8], _slot: &Slot, _counters: &mut Counters) {}
    fn flush(&mut self, _counters: &mut Counters) {}
}

const TCP4: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:fe,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,ip.ttl=64,tcp.src=40000,tcp.dst=80,tcp.flags=ack";
const TCP6: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:fe,ip6.src=2001:db8::2,ip6.dst=2001:db8:1::5,ip.ttl=64,tcp.src=40000,tcp.dst=80,tcp.flags=ack";

fn frame(desc: &str, payload: usize) -> Vec<u8> {
    let k: FlowKey = desc.parse().expect("valid description");
    let mut f = Vec::new();
    k.to_frame(&vec![0x5a; payload], &mut f);
    f
}

/// A core with one flow per input port: port `i + 1` gets `cases[i]`.
fn core(cases: &[&[Action]]) -> Core<NullIo> {
    let mut core = Core::new(NullIo, None, TableConfig::default());
    for (i, actions) in cases.iter().enumerate() {
        let port = i as PortNo + 1;
        let mut mask = FlowMask::empty();
        mask.mark(FieldId::InPort);
        let key = FlowKey { in_port: InPort::Port(port), ..FlowKey::default() };
        let actions: Actions = actions.iter().copied().collect();
        core.install(&key, FlowInstall { mask, actions, tags: vec![], idle_timeout_ms: 0 })
            .expect("install");
    }
    core
}

fn bench(c: &mut Criterion) {
    let router = MacAddr([2, 0, 0, 0, 0, 0xfe]);
    let next = MacAddr([2, 0, 0, 0, 1, 5]);
    let out = Action::Output(100);
    let forward = [out];
    let routed = [Action::SetEthSrc(router), Action::SetEthDst(next), Action::SetTtl(63), out];
    let snat = [Action::SetIpv4Src(Ipv4Addr::new(203, 0, 113, 7)), Action::SetL4Src(61000), out];
    let vlan = [Action::PushVlan { vid: 10, pcp: 0 }, out, Action::PopVlan, out];
    let hop6 = [Action::SetTtl(63), out];
    let mut core = core(&[&forward, &routed, &snat, &vlan, &hop6, &routed]);

    let mut g = c.benchmark_group("pipeline_hit");
    g.throughput(Throughput::Elements(1));
    let small = frame(TCP4, 1400);
    for (name, port) in [("forward", 1), ("routed", 2), ("snat", 3), ("vlan_push_pop", 4)] {
        let mut slot = Slot::from_frame(&small);
        g.bench_function(name, |b| {
            b.iter(|| {
                core.process_port(port, black_box(&mut slot));
                core.flush();
            })
        });
    }
    let mut slot = Slot::from_frame(&frame(TCP6, 1400));
    g.bench_function("ipv6_hop_limit", |b| {
        b.iter(|| {
            core.process_port(5, black_box(&mut slot));
            core.flush();
        })
    });
    // A 60 KB TSO frame from a VM: partial TCP checksum, rewritten in place.
    let mut slot = Slot::from_frame(&frame(TCP4, 60_000));
    slot.vnet = midonet_datapath::testing::TCP4_GSO;
    g.bench_function("routed_gso_60k", |b| {
        b.iter(|| {
            core.process_port(6, black_box(&mut slot));
            core.flush();
        })
    });
    g.finish();
    let st = core.stats();
    assert_eq!(st.drops.total(), 0, "every packet forwarded: {:?}", st.drops);
    assert_eq!(st.upcalls, 0, "every packet hit a flow");
}

fn tunnel_rx(c: &mut Criterion) {
    let mut core = Core::new(NullIo, None, TableConfig::default());
    let port = core.alloc_port("vm").expect("port");
    core.bind_tunnel_key(0x42, port).expect("bind");
    let hdr = midonet_datapath::vxlan::encode(0x42, &VnetHdr::default()).expect("header");
    let datagram = [&hdr[..], &frame(TCP4, 1400)].concat();
    let peer = Ipv4Addr::new(198, 18, 0, 7);
    let mut slot = Slot::from_frame(&datagram);
    let (start, len) = (slot.start, slot.len);
    let mut g = c.benchmark_group("tunnel_rx");
    g.throughput(Throughput::Elements(1));
    let mut run =
        |g: &mut criterion::BenchmarkGroup<'_, _>, name: &str, core: &mut Core<NullIo>| {
            g.bench_function(name, |b| {
                b.iter(|| {
                    slot.start = start;
                    slot.len = len;
                    if core.tunnel_source_allowed(black_box(peer), 1, len as u64) {
                        core.process_tunnel(black_box(&mut slot));
                    }
                    core.flush();
                })
            });
        };
    run(&mut g, "vni_direct_no_peer_set", &mut core);
    core.tunnel_peers = Some((1..=64).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect());
    run(&mut g, "vni_direct_peer_of_64", &mut core);
    let delivered = core.stats().tunnel.rx_packets;
    core.tunnel_peers = Some((100..164).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect());
    run(&mut g, "unknown_source_dropped", &mut core);
    g.finish();
    let st = core.stats();
    assert_eq!(
        st.drops.get(midonet_datapath::DropReason::TunnelUnknownSource),
        st.tunnel.rx_packets - delivered,
        "every datagram from the unknown source dropped, none before"
    );
}

fn finmerge(c: &mut Criterion) {
    use midonet_datapath::finmerge::FinMerger;
    let tcp = |sport: u16, flags: &str, payload: usize| {
        frame(
            &TCP4.replace("tcp.src=40000", &format!("tcp.src={sport}")).replace("ack", flags),
            payload,
        )
    };
    let udp = frame(
        &TCP4
            .replace("tcp.src", "udp.src")
            .replace("tcp.dst", "udp.dst")
            .replace(",tcp.flags=ack", ""),
        18,
    );
    let data: Vec<Vec<u8>> = (0..32).map(|i| tcp(40000 + i, "ack", 200)).collect();
    let udps: Vec<Vec<u8>> = (0..32).map(|_| udp.clone()).collect();
    // FlowKey frames carry sequence number 0: a FIN at the answer's length follows it.
    let pairs: Vec<Vec<u8>> = (0..16)
        .flat_map(|i| {
            let answer = tcp(40000 + i, "ack|psh", 200);
            let mut fin = tcp(40000 + i, "ack|fin", 0);
            fin[38..42].copy_from_slice(&200u32.to_be_bytes());
            [answer, fin]
        })
        .collect();
    let mut g = c.benchmark_group("finmerge");
    g.throughput(Throughput::Elements(32));
    let mut merger = FinMerger::default();
    for (name, frames, merges) in
        [("tcp_data_32", &data, 0), ("udp_32", &udps, 0), ("answer_fin_16_pairs", &pairs, 16)]
    {
        let batch: Vec<Slot> = frames.iter().map(|f| Slot::from_frame(f)).collect();
        let mut slots: Vec<Slot> = frames.iter().map(|f| Slot::from_frame(f)).collect();
        assert_eq!(merger.merge(&mut slots), merges, "{name}");
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || batch.iter().map(|s| Slot::from_frame(s.frame())).collect::<Vec<_>>(),
                |slots| merger.merge(black_box(slots)),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench, tunnel_rx, finmerge);
criterion_main!(benches);
