//! The kernel fast path, program by program, under BPF_PROG_TEST_RUN: each
//! test loads the object (so the verifier passes it on this kernel), fills
//! the maps the way the provider does, runs a crafted frame and checks the
//! verdict, the frame that comes out and the counters. The expected frames
//! come from `midonet_flow::apply_action`, the userspace rewriter, so the
//! two datapaths are held to the same result. The socket filter
//! (`mdp_state`) runs on a real UDP socket on 127.0.0.1 instead.
//!
//! Needs root (BPF); fails saying so unless MIDONET_SKIP_NETNS=1. Every
//! test has its own pin directory, /run/midonet/bpf/test-*.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use aya::programs::{TestRun, TestRunOptions};
use midonet_datapath::ebpf::abi::{self, counter};
use midonet_datapath::ebpf::kernel::Kernel;
use midonet_datapath::ebpf::loader::{Bpf, Prog};
use midonet_datapath::testing::udp_frame;
use midonet_datapath::{
    CtKey, RevNatEntry, RevNatKey, RevNatKind, RevNatTable, RECIRC_PORT_BASE, RECIRC_UNTRACKED,
};
use midonet_flow::{Action, FieldId, FlowKey, FlowMask, InPort, MacAddr};
use midonet_wire::checksum::checksum as inet_checksum;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

fn runnable() -> bool {
    // Needs root to load BPF programs (the lab itself is not used).
    if !midonet_testkit::skip::netns_or_skip("datapath::ebpf programs", &[]) {
        return false;
    }
    if let Err(e) = midonet_datapath::ebpf::loader::object() {
        panic!("{e}: install clang, llvm and libbpf-dev and rebuild");
    }
    true
}

/// A loaded object with ports 1..=3 on the loopback device (ifindex 1, the
/// device BPF_PROG_TEST_RUN uses), port 1 receiving.
struct Fx {
    bpf: Bpf,
    k: Kernel,
    dir: std::path::PathBuf,
}

impl Drop for Fx {
    fn drop(&mut self) {
        let _ = midonet_datapath::ebpf::loader::remove_pins(&self.dir);
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The tunnel address of the fixture's host, for `mdp_underlay`.
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// The programs' configuration; `native`: the tunnel address known, the
/// programs encapsulate and decapsulate themselves.
fn kcfg(exact: bool, native: bool) -> abi::KernelConfig {
    abi::KernelConfig {
        vxlan_ifindex: 1,
        local_ip: native.then_some(LOCAL),
        vxlan_port: 4789,
        exact,
        decap: native,
        encap: native,
    }
}

fn fx(name: &str) -> Fx {
    let dir = std::path::PathBuf::from(format!(
        "/run/midonet/bpf/test-{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = midonet_datapath::ebpf::loader::remove_pins(&dir);
    let mut bpf = match Bpf::load(&dir) {
        Ok(b) => b,
        Err(e) => {
            let _ = midonet_datapath::ebpf::loader::remove_pins(&dir);
            panic!("load: the verifier must accept every program: {e}");
        }
    };
    assert!(!bpf.adopted);
    for p in 1..=3u32 {
        bpf.maps.ports.set(p, abi::encode_port(1, 0, &format!("p{p}")), 0).expect("port");
    }
    let mut ifp = [0u8; 8];
    ifp[0..4].copy_from_slice(&1u32.to_ne_bytes());
    bpf.maps.if_ports.insert(1u32, ifp, 0).expect("if port");
    bpf.maps.config.set(0, abi::encode_config(&kcfg(true, false)), 0).expect("config");
    Fx { bpf, k: Kernel::new().expect("kernel"), dir }
}

impl Fx {
    /// `p` on `frame` (`skb->mark` = `mark`), `repeat` times in the kernel:
    /// the verdict, the frame out and the mean time per run, ns.
    fn test_run(&mut self, p: Prog, frame: &[u8], mark: u32, repeat: u32) -> (u32, Vec<u8>, u64) {
        let mut out = vec![0u8; frame.len() + 256];
        let mut ctx = [0u8; 48];
        ctx[8..12].copy_from_slice(&mark.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        };
        let r = self.bpf.program(p).expect("prog").test_run(opts).expect("test run");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out, r.duration.as_nanos() as u64)
    }

    fn run(&mut self, p: Prog, frame: &[u8], mark: u32) -> (u32, Vec<u8>) {
        let (v, out, _) = self.test_run(p, frame, mark, 1);
        (v, out)
    }

    /// `repeat()` runs of `p` on `frame` in the kernel: the verdict and
    /// the kernel's mean time per run, ns.
    fn timed(&mut self, p: Prog, frame: &[u8], mark: u32) -> (u32, u64) {
        let (v, _, ns) = self.test_run(p, frame, mark, repeat());
        (v, ns)
    }

    /// Tell the programs `c` (`mdp_config`).
    fn config(&mut self, c: &abi::KernelConfig) {
        self.bpf.maps.config.set(0, abi::encode_config(c), 0).expect("config");
    }

    fn counter(&self, c: u32) -> u64 {
        self.bpf.maps.counters.get(&c, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    fn port_stats(&self, p: u32) -> [u64; 4] {
        let v = self.bpf.maps.port_stats.get(&p, 0).expect("port stats");
        v.iter().fold([0; 4], |mut a, s| {
            for i in 0..4 {
                a[i] += s[i];
            }
            a
        })
    }

    /// A flow for `frame` entering at `in_port` (a port, or a
    /// recirculation), which the kernel must be able to run.
    fn install_at(
        &mut self,
        frame: &[u8],
        in_port: InPort,
        mask: &FlowMask,
        actions: &[Action],
    ) -> midonet_datapath::ebpf::kernel::Offloaded {
        let key = FlowKey::extract(frame, in_port).expect("key");
        let (kb, mb) = abi::offload(&key, mask, actions).expect("a flow the kernel runs");
        self.k.install(&mut self.bpf.maps, &kb, &mb, actions, 0, &[1]).expect("install")
    }

    /// The second half of a split flow for `reply`: the reply as `restore`
    /// translates it, under recirculation `RECIRC`'s in-port, delivered.
    fn second_half(
        &mut self,
        reply: &[u8],
        restore: &[Action],
        mask: &FlowMask,
    ) -> midonet_datapath::ebpf::kernel::Offloaded {
        let translated = oracle(reply, restore);
        self.install_at(&translated, InPort::Port(RECIRC_PORT_BASE + RECIRC), mask, &DELIVER)
    }

    /// The next upcall record: its in_port and frame.
    fn upcalled(&mut self) -> (InPort, Vec<u8>) {
        let rec = self.bpf.maps.upcalls.next().expect("an upcall record").to_vec();
        let h = abi::UpcallHdr::parse(&rec).expect("header");
        (h.in_port(), abi::upcall_frame(&h, &rec[abi::UPCALL_HDR_LEN..]))
    }

    fn install(
        &mut self,
        frame: &[u8],
        mask: &FlowMask,
        actions: &[Action],
    ) -> midonet_datapath::ebpf::kernel::Offloaded {
        let key = FlowKey::extract(frame, InPort::Port(1)).expect("key");
        let (kb, mb) = abi::offload(&key, mask, actions)
            .unwrap_or_else(|| (abi::encode_key(&key), abi::encode_mask(mask).expect("mask")));
        self.k.install(&mut self.bpf.maps, &kb, &mb, actions, 0, &[1]).expect("install")
    }
}

/// Runs per timing (`MDP_REPEAT`, default 200,000).
fn repeat() -> u32 {
    std::env::var("MDP_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

fn mask_of(fields: &[FieldId]) -> FlowMask {
    let mut m = FlowMask::empty();
    for f in fields {
        m.mark(*f);
    }
    m
}

fn bridge() -> FlowMask {
    mask_of(&[FieldId::InPort, FieldId::EthDst])
}

fn routed() -> FlowMask {
    mask_of(&[FieldId::InPort, FieldId::EthDst, FieldId::EthType])
}

fn oracle(frame: &[u8], actions: &[Action]) -> Vec<u8> {
    let mut f = frame.to_vec();
    for a in actions {
        midonet_flow::apply_action(&mut f, a).expect("oracle rewrite");
    }
    f
}

fn udp(dst: MacAddr, sport: u16) -> Vec<u8> {
    udp_frame(A, dst, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), sport, 53, b"hello")
}

/// Ethernet + IPv4 + TCP with valid checksums.
fn tcp(dst: MacAddr) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(A.0, dst.0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 7, 65535)
        .ack(1)
        .write(&mut f, b"some tcp payload")
        .expect("tcp");
    f
}

fn icmp_echo(dst: MacAddr) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(A.0, dst.0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(0x1234, 1)
        .write(&mut f, b"ping")
        .expect("icmp");
    f
}

/// Every checksum of an IPv4 TCP/UDP/ICMP frame, recomputed.
fn assert_checksums(f: &[u8]) {
    assert_eq!(inet_checksum(&f[14..34]), 0, "ipv4 header checksum");
    let l4 = &f[34..];
    match f[23] {
        1 => assert_eq!(inet_checksum(l4), 0, "icmp checksum"),
        6 | 17 => {
            if f[23] == 17 && l4[6..8] == [0, 0] {
                return;
            }
            let mut p = Vec::from(&f[26..34]);
            p.extend_from_slice(&[0, f[23]]);
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(l4);
            assert_eq!(inet_checksum(&p), 0, "l4 checksum");
        }
        _ => {}
    }
}

#[test]
fn port_program_misses_to_the_ring_then_hits_a_megaflow() {
    if !runnable() {
        return;
    }
    let mut fx = fx("miss");
    let f = udp(B, 1000);
    let (v, _) = fx.run(Prog::Port, &f, 0);
    assert_eq!(v, TC_ACT_SHOT, "a miss is dropped here and handed up");
    assert_eq!((fx.counter(counter::MISS), fx.counter(counter::UPCALL)), (1, 1));
    let rec = fx.bpf.maps.upcalls.next().expect("an upcall record").to_vec();
    let h = abi::UpcallHdr::parse(&rec).expect("header");
    assert_eq!((h.kind, h.in_port(), h.len as usize), (1, InPort::Port(1), f.len()));
    assert_eq!(abi::upcall_frame(&h, &rec[abi::UPCALL_HDR_LEN..]), f);

    let acts = [Action::SetEthSrc(C), Action::SetEthDst(A), Action::Output(2)];
    fx.install(&f, &bridge(), &acts);
    // Another source port: the same megaflow.
    let g = udp(B, 2000);
    let (v, out) = fx.run(Prog::Port, &g, 0);
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(out, oracle(&g, &acts));
    assert_eq!(fx.counter(counter::HIT), 1);
    assert_eq!(fx.port_stats(1)[..2], [2, (f.len() + g.len()) as u64], "rx on port 1");
    assert_eq!(fx.port_stats(2)[2..], [1, g.len() as u64], "tx on port 2");
    // Another destination: still a miss.
    assert_eq!(fx.run(Prog::Port, &udp(C, 1), 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::MISS), 2);
}

/// Every flow's counters read in batches (`BPF_MAP_LOOKUP_BATCH`, what
/// the agent's conntrack refresh and expiry use with many flows) agree
/// with reading each flow's slot alone.
#[test]
fn flow_counters_read_in_batches_match_one_by_one() {
    if !runnable() {
        return;
    }
    let mut fx = fx("batch");
    // More flows than one batch call reads, so the calls chain.
    let n = 9000u16;
    let mask = mask_of(&[FieldId::InPort, FieldId::EthDst, FieldId::EthType, FieldId::L4Src]);
    let acts = [Action::Output(2)];
    let offs: Vec<_> = (0..n).map(|i| fx.install(&udp(B, 1000 + i), &mask, &acts)).collect();
    // Flow i carries i % 3 packets (a few of them, spread over the table).
    for i in (0..n).step_by(97) {
        for _ in 0..i % 3 {
            assert_eq!(fx.run(Prog::Port, &udp(B, 1000 + i), 0).0, TC_ACT_REDIRECT);
        }
    }
    let all = fx.k.all_flow_counters(&fx.bpf.maps).expect("this kernel reads maps in batches");
    let mut busy = 0;
    for (i, off) in offs.iter().enumerate() {
        let one = fx.k.flow_counters(&fx.bpf.maps, off);
        assert_eq!(all[off.stats as usize], one, "flow {i}, slot {}", off.stats);
        let want = if i % 97 == 0 { (i % 3) as u64 } else { 0 };
        assert_eq!(one.0, want, "flow {i}'s packets");
        busy += usize::from(one.0 > 0);
    }
    assert!(busy > 50, "{busy} flows carried packets");
}

/// The exact-match cache: a packet that hits a megaflow leaves an entry
/// under its whole key; the next packet of the connection (whatever its TCP
/// flags) is served from it with the same result, counted on the same flow;
/// once the agent takes the flow out, the entry no longer serves.
#[test]
fn established_flows_hit_the_exact_cache_until_their_flow_goes() {
    if !runnable() {
        return;
    }
    let mut fx = fx("exact");
    let f = tcp(B);
    // The fixed form: both MACs, the TTL, one output.
    let routed_acts =
        [Action::SetEthSrc(C), Action::SetEthDst(A), Action::SetTtl(63), Action::Output(2)];
    let off = fx.install(&f, &routed(), &routed_acts);
    let (v, out) = fx.run(Prog::Port, &f, 0);
    assert_eq!((v, out.clone()), (TC_ACT_REDIRECT, oracle(&f, &routed_acts)));
    assert_eq!((fx.counter(counter::EXACT_FILL), fx.counter(counter::EXACT_HIT)), (1, 0));
    let (v, again) = fx.run(Prog::Port, &f, 0);
    assert_eq!((v, &again), (TC_ACT_REDIRECT, &out), "the cache gives the megaflow's result");
    assert_checksums(&again);
    // Another TCP flag combination of the same connection: the same entry.
    let mut fin = f.clone();
    fin[47] |= 0x01;
    let (v, out_fin) = fx.run(Prog::Port, &fin, 0);
    assert_eq!((v, out_fin), (TC_ACT_REDIRECT, oracle(&fin, &routed_acts)));
    assert_eq!(fx.counter(counter::EXACT_HIT), 2);
    assert_eq!(fx.counter(counter::HIT), 3, "cache hits are kernel hits too");
    assert_eq!(fx.counter(counter::EXACT_FILL), 1);
    let (packets, _, _, flags) = fx.k.flow_counters(&fx.bpf.maps, &off);
    assert_eq!((packets, flags & 0x11), (3, 0x11), "counted on the flow, flags and all");
    assert_eq!(fx.port_stats(1)[0], 3, "rx on port 1");
    assert_eq!(fx.port_stats(2)[2], 3, "tx on port 2");

    // The flow goes (an invalidation, an expiry): the entry serves no more.
    fx.k.remove(&mut fx.bpf.maps, &off);
    assert_eq!(fx.run(Prog::Port, &f, 0).0, TC_ACT_SHOT, "a miss again");
    assert_eq!((fx.counter(counter::MISS), fx.counter(counter::EXACT_HIT)), (1, 2));
    while fx.bpf.maps.upcalls.next().is_some() {}

    // Another flow for the same packet, with actions outside the fixed
    // form (a TOS rewrite): the stale entry is replaced and the hit runs
    // the action list.
    let nat = [
        Action::SetTos(0x28),
        Action::SetIpv4Dst(Ipv4Addr::new(192, 168, 1, 9)),
        Action::Output(3),
    ];
    let off = fx.install(&f, &routed(), &nat);
    assert_eq!(fx.run(Prog::Port, &f, 0), (TC_ACT_REDIRECT, oracle(&f, &nat)));
    let (v, out) = fx.run(Prog::Port, &f, 0);
    assert_eq!((v, &out), (TC_ACT_REDIRECT, &oracle(&f, &nat)));
    assert_checksums(&out);
    assert_eq!((fx.counter(counter::EXACT_FILL), fx.counter(counter::EXACT_HIT)), (2, 3));
    fx.k.remove(&mut fx.bpf.maps, &off);

    // A flow on TCP flags is not cached: one entry per flag combination
    // would be needed.
    let mut on_flags = routed();
    on_flags.mark(FieldId::TcpFlags);
    fx.install(&f, &on_flags, &routed_acts);
    for _ in 0..2 {
        assert_eq!(fx.run(Prog::Port, &f, 0).0, TC_ACT_REDIRECT);
    }
    assert_eq!((fx.counter(counter::EXACT_FILL), fx.counter(counter::EXACT_HIT)), (2, 3));

    // Switched off: neither filled nor used.
    fx.config(&kcfg(false, false));
    let g = udp(B, 7);
    fx.install(&g, &bridge(), &[Action::Output(2)]);
    for _ in 0..2 {
        assert_eq!(fx.run(Prog::Port, &g, 0).0, TC_ACT_REDIRECT);
    }
    assert_eq!((fx.counter(counter::EXACT_FILL), fx.counter(counter::EXACT_HIT)), (2, 3));
}

/// What fills the exact-match cache: not a TCP handshake (a fill costs a
/// first packet more than it saves it), a TCP packet after it at once, and
/// anything else on about one hit in four.
#[test]
fn the_exact_cache_is_filled_after_a_handshake_and_sampled_otherwise() {
    if !runnable() {
        return;
    }
    let mut fx = fx("exact-fill");
    let acts = [Action::SetEthSrc(C), Action::SetEthDst(A), Action::Output(2)];
    let ack = tcp(B);
    let mut syn = ack.clone();
    syn[47] = 0x02;
    // One megaflow (in_port, eth_dst, eth_type) for all three frames below.
    fx.install(&ack, &routed(), &acts);
    for _ in 0..8 {
        assert_eq!(fx.run(Prog::Port, &syn, 0).0, TC_ACT_REDIRECT);
    }
    assert_eq!(fx.counter(counter::EXACT_FILL), 0, "SYNs do not fill");
    assert_eq!(fx.run(Prog::Port, &ack, 0).0, TC_ACT_REDIRECT);
    assert_eq!(fx.counter(counter::EXACT_FILL), 1, "the first packet after the handshake does");
    let u = udp(B, 5);
    let mut runs = 0;
    while fx.counter(counter::EXACT_FILL) == 1 && runs < 200 {
        assert_eq!(fx.run(Prog::Port, &u, 0).0, TC_ACT_REDIRECT);
        runs += 1;
    }
    // (3/4)^200: never in practice.
    assert_eq!(fx.counter(counter::EXACT_FILL), 2, "a UDP flow is cached after a few hits");
    assert_eq!(fx.run(Prog::Port, &u, 0).0, TC_ACT_REDIRECT);
    assert!(fx.counter(counter::EXACT_HIT) >= 1);
}

#[test]
fn misses_over_a_ports_upcall_budget_are_dropped_in_the_kernel() {
    if !runnable() {
        return;
    }
    // The budget is per CPU: stay on one so the count below is exact.
    let mut one = nix::sched::CpuSet::new();
    one.set(0).expect("cpu 0");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).expect("pin to cpu 0");
    let mut fx = fx("limit");
    // 10 upcalls/s with a burst of 5: the test runs in well under 100 ms,
    // so no credit accrues while it runs.
    let limits = midonet_datapath::UpcallLimits {
        port_rate: 10,
        port_burst: 5,
        ..midonet_datapath::UpcallLimits::UNLIMITED
    };
    fx.bpf.maps.limit_config.set(0, limits.kernel_config(), 0).expect("limit config");
    for sport in 0..20u16 {
        assert_eq!(fx.run(Prog::Port, &udp(B, sport), 0).0, TC_ACT_SHOT);
    }
    assert_eq!(fx.counter(counter::UPCALL), 5, "the burst goes up");
    assert_eq!(fx.counter(counter::DROP_UPCALL_LIMIT), 15, "the rest is dropped, counted");
    let mut ring = 0;
    while fx.bpf.maps.upcalls.next().is_some() {
        ring += 1;
    }
    assert_eq!(ring, 5, "only the budget reaches the ring");
    let counts = |fx: &Fx| {
        let per_port = fx.bpf.maps.upcall_limits.get(&1, 0).expect("limits of port 1");
        per_port.iter().fold((0, 0, 0), |(u, l, b), c| (u + c[2], l + c[3], b + c[4]))
    };
    assert_eq!(counts(&fx), (5, 15, 0), "counted against port 1");
    assert!(fx.bpf.maps.upcalls_spare.next().is_none(), "nothing lent without a spare depth");

    // With a spare depth of 3: past the budget, misses are lent while the
    // spare ring holds fewer than 3, into that ring; then dropped again.
    let lending = midonet_datapath::UpcallLimits { spare_depth: 3, ..limits };
    fx.bpf.maps.limit_config.set(0, lending.kernel_config(), 0).expect("limit config");
    for sport in 100..110u16 {
        assert_eq!(fx.run(Prog::Port, &udp(B, sport), 0).0, TC_ACT_SHOT);
    }
    assert_eq!(counts(&fx), (8, 22, 3), "3 lent, 7 more dropped");
    assert!(fx.bpf.maps.upcalls.next().is_none(), "a lent miss is not in the main ring");
    let mut sports = Vec::new();
    while let Some(item) = fx.bpf.maps.upcalls_spare.next() {
        let frame = &item[abi::UPCALL_HDR_LEN..];
        sports.push(u16::from_be_bytes([frame[34], frame[35]]));
    }
    assert_eq!(sports, [100, 101, 102], "the spare ring holds the first lent, in order");
    // The agent took them: there is room again.
    assert_eq!(fx.run(Prog::Port, &udp(B, 200), 0).0, TC_ACT_SHOT);
    assert_eq!(counts(&fx), (9, 22, 4));
    assert!(fx.bpf.maps.upcalls_spare.next().is_some());

    // Unlimited again: every miss goes up.
    let none = midonet_datapath::UpcallLimits::UNLIMITED;
    fx.bpf.maps.limit_config.set(0, none.kernel_config(), 0).expect("limit config");
    assert_eq!(fx.run(Prog::Port, &udp(B, 99), 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::UPCALL), 10);
}

#[test]
fn ipv4_rewrites_match_the_userspace_rewriter() {
    if !runnable() {
        return;
    }
    let mut fx = fx("rewrite");
    let nat = [
        Action::SetEthSrc(C),
        Action::SetTtl(63),
        Action::SetTos(0x28),
        Action::SetIpv4Src(Ipv4Addr::new(203, 0, 113, 7)),
        Action::SetIpv4Dst(Ipv4Addr::new(192, 168, 1, 9)),
        Action::SetL4Src(5555),
        Action::SetL4Dst(8080),
        Action::Output(2),
    ];
    for (i, f) in [tcp(B), udp(B, 9)].into_iter().enumerate() {
        let off = fx.install(&f, &routed(), &nat);
        let (v, out) = fx.run(Prog::Port, &f, 0);
        assert_eq!(v, TC_ACT_REDIRECT, "frame {i}");
        assert_eq!(out, oracle(&f, &nat), "frame {i}");
        assert_checksums(&out);
        fx.k.remove(&mut fx.bpf.maps, &off);
    }
    // The same rewrites served by the exact-match cache, compiled (no TOS:
    // that would leave them to the action list), agree with the list's.
    let compiled: Vec<Action> =
        nat.iter().copied().filter(|a| !matches!(a, Action::SetTos(_))).collect();
    for (i, f) in [tcp(B), udp(B, 9)].into_iter().enumerate() {
        let off = fx.install(&f, &routed(), &compiled);
        let hits = fx.counter(counter::EXACT_HIT);
        let mut runs = 0;
        while fx.counter(counter::EXACT_HIT) < hits + 2 && runs < 200 {
            let (v, out) = fx.run(Prog::Port, &f, 0);
            assert_eq!((v, &out), (TC_ACT_REDIRECT, &oracle(&f, &compiled)), "frame {i}");
            assert_checksums(&out);
            runs += 1;
        }
        assert_eq!(fx.counter(counter::EXACT_HIT), hits + 2, "frame {i}: served by the cache");
        fx.k.remove(&mut fx.bpf.maps, &off);
    }
    // A UDP checksum of zero means none, and stays zero.
    let mut z = udp(B, 9);
    z[40..42].fill(0);
    let off = fx.install(&z, &routed(), &nat);
    let (_, out) = fx.run(Prog::Port, &z, 0);
    assert_eq!(out, oracle(&z, &nat));
    assert_eq!(&out[40..42], &[0, 0]);
    fx.k.remove(&mut fx.bpf.maps, &off);
    // ICMP echo id.
    let e = icmp_echo(B);
    let acts = [
        Action::SetIcmpId(0x4321),
        Action::SetIpv4Dst(Ipv4Addr::new(10, 9, 9, 9)),
        Action::Output(3),
    ];
    fx.install(&e, &routed(), &acts);
    let (v, out) = fx.run(Prog::Port, &e, 0);
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(out, oracle(&e, &acts));
    assert_checksums(&out);
}

#[test]
fn vlan_push_and_pop() {
    if !runnable() {
        return;
    }
    let mut fx = fx("vlan");
    let f = udp(B, 1);
    let tagged = oracle(&f, &[Action::PushVlan { vid: 10, pcp: 3 }]);
    // Pop a tag that is in the frame (BPF_PROG_TEST_RUN does not untag).
    let pop = [Action::PopVlan, Action::Output(2)];
    fx.install(&tagged, &bridge(), &pop);
    let (v, out) = fx.run(Prog::Port, &tagged, 0);
    assert_eq!((v, out), (TC_ACT_REDIRECT, f.clone()));
    // Push two: the first moves from the skb's metadata into the frame
    // when the second arrives, so the frame shows it.
    let g = udp(C, 1);
    let push = [
        Action::PushVlan { vid: 10, pcp: 3 },
        Action::PushVlan { vid: 20, pcp: 0 },
        Action::Output(2),
    ];
    fx.install(&g, &bridge(), &push);
    let (v, out) = fx.run(Prog::Port, &g, 0);
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(out, oracle(&g, &[Action::PushVlan { vid: 10, pcp: 3 }]));
    // A pop on an untagged frame fails like the userspace rewriter's.
    let h = udp(A, 1);
    fx.install(&h, &bridge(), &pop);
    assert_eq!(fx.run(Prog::Port, &h, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::DROP_REWRITE), 1);
}

#[test]
fn outputs_tunnels_clones_and_drops() {
    if !runnable() {
        return;
    }
    let mut fx = fx("emit");
    let tun = [Action::Tunnel { dst: Ipv4Addr::new(198, 18, 0, 2), key: 0x42 }];
    let f = udp(B, 1);
    fx.install(&f, &bridge(), &tun);
    assert_eq!(fx.run(Prog::Port, &f, 0).0, TC_ACT_REDIRECT);
    assert_eq!(fx.port_stats(0)[2], 1, "tunnel tx");
    // Two outputs: a clone to port 2, the packet itself to port 3.
    let g = udp(C, 1);
    let two = [Action::Output(2), Action::SetEthDst(A), Action::Output(3)];
    fx.install(&g, &bridge(), &two);
    let (v, out) = fx.run(Prog::Port, &g, 0);
    assert_eq!((v, out), (TC_ACT_REDIRECT, oracle(&g, &two)));
    assert_eq!((fx.port_stats(2)[2], fx.port_stats(3)[2]), (1, 1));
    // A flow that emits nothing drops, counted.
    let h = udp(A, 1);
    fx.install(&h, &bridge(), &[]);
    assert_eq!(fx.run(Prog::Port, &h, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::DROP_FLOW), 1);
    // Output to a port that is not there.
    let i = udp(MacAddr([2, 0, 0, 0, 0, 0xd]), 1);
    fx.install(&i, &bridge(), &[Action::Output(9)]);
    assert_eq!(fx.run(Prog::Port, &i, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::DROP_UNKNOWN_PORT), 1);
    // Malformed: an IPv4 total length past the frame. Dropped, not upcalled.
    let mut bad = udp(B, 1);
    bad.truncate(bad.len() - 2);
    assert_eq!(fx.run(Prog::Port, &bad, 0).0, TC_ACT_SHOT);
    assert_eq!((fx.counter(counter::DROP_MALFORMED), fx.counter(counter::UPCALL)), (1, 0));
}

/// For frames of every kind the kernel parses, a flow on every field it
/// keys, built from `FlowKey::extract`, must match: the two parsers agree.
#[test]
fn kernel_keys_agree_with_flow_key_extract() {
    if !runnable() {
        return;
    }
    let mut fx = fx("keys");
    let mut exact = FlowMask::empty();
    for f in FieldId::ALL {
        if !matches!(f, FieldId::Ipv6Src | FieldId::Ipv6Dst) {
            exact.mark(f);
        }
    }
    let mut frames: Vec<(&str, Vec<u8>)> = vec![
        ("udp", udp(B, 7)),
        ("tcp", tcp(B)),
        ("icmp echo", icmp_echo(B)),
        ("vlan", oracle(&tcp(B), &[Action::PushVlan { vid: 99, pcp: 6 }])),
    ];
    let mut unreach = Vec::new();
    etherparse::PacketBuilder::ethernet2(A.0, B.0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut unreach, &[0u8; 28])
        .expect("icmp");
    frames.push(("icmp unreachable", unreach));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&A.0);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&A.0);
    arp.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    frames.push(("arp", arp));
    let mut first = udp(B, 3);
    first[20] = 0x20; // MF
    first[24..26].fill(0);
    let c = inet_checksum(&first[14..34]);
    first[24..26].copy_from_slice(&c.to_be_bytes());
    frames.push(("first fragment", first));
    let mut later = udp(B, 3);
    later[21] = 0x10; // offset 16
    frames.push(("later fragment", later));
    let mut v6 = Vec::new();
    etherparse::PacketBuilder::ethernet2(A.0, B.0)
        .ipv6([0xfe; 16], [0xfd; 16], 64)
        .udp(1, 2)
        .write(&mut v6, b"v6")
        .expect("ipv6");
    frames.push(("ipv6", v6));
    let mut lldp = udp(B, 1);
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    frames.push(("other ethertype", lldp));
    for (name, f) in frames {
        let key = FlowKey::extract(&f, InPort::Port(1)).expect(name);
        let mb = abi::encode_mask(&exact).expect("mask");
        let off = fx
            .k
            .install(&mut fx.bpf.maps, &abi::encode_key(&key), &mb, &[Action::Output(2)], 0, &[])
            .expect("install");
        assert_eq!(fx.run(Prog::Port, &f, 0).0, TC_ACT_REDIRECT, "{name}: the kernel key differs");
        fx.k.remove(&mut fx.bpf.maps, &off);
        assert_eq!(fx.run(Prog::Port, &f, 0).0, TC_ACT_SHOT, "{name}: removed");
    }
}

#[test]
fn tunnel_program_needs_tunnel_metadata() {
    if !runnable() {
        return;
    }
    let mut fx = fx("tunnel");
    // BPF_PROG_TEST_RUN cannot attach tunnel metadata: the frame is refused
    // as a malformed tunnel packet (the netns tests deliver real VXLAN).
    assert_eq!(fx.run(Prog::Tunnel, &udp(B, 1), 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::DROP_TUNNEL_MALFORMED), 1);
}

/// `inner` in a VXLAN datagram from `src` to `dst` with `vni` (UDP port
/// 4789, the outer UDP checksum computed, as a kernel vxlan device sends).
fn vxlan(src: Ipv4Addr, dst: Ipv4Addr, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2])
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(51000, 4789)
        .write(&mut f, &payload)
        .expect("vxlan");
    f
}

#[test]
fn underlay_program_decapsulates_a_bound_vni_and_passes_the_rest_on() {
    if !runnable() {
        return;
    }
    let mut fx = fx("underlay");
    fx.config(&kcfg(true, true));
    fx.bpf.maps.vni_ports.insert(7u32, 2u32, 0).expect("vni");
    let inner = tcp(B);
    let d = vxlan(PEER, LOCAL, 7, &inner);

    // Bound here: the inner frame, exactly, out of port 2.
    assert_eq!(fx.run(Prog::Underlay, &d, 0), (TC_ACT_REDIRECT, inner.clone()));
    assert_eq!(fx.counter(counter::TUNNEL_DECAP), 1);
    assert_eq!(fx.port_stats(2)[2], 1, "port 2 sent it");
    assert_eq!(fx.port_stats(0)[0], 1, "the tunnel received it");

    // Everything else goes on into the stack as it came: another VNI (the
    // vxlan device and mdp_tunnel's megaflow path), another address, another
    // port, a fragment, IP options, an inner frame that is not IPv4 (ARP),
    // VXLAN flags beyond the VNI's, trailing bytes the stack would trim.
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("unbound vni", vxlan(PEER, LOCAL, 8, &inner)),
        ("not our address", vxlan(PEER, Ipv4Addr::new(192, 0, 2, 9), 7, &inner)),
    ];
    let mut port = d.clone();
    port[36..38].copy_from_slice(&8472u16.to_be_bytes());
    cases.push(("another udp port", port));
    let mut frag = d.clone();
    frag[20] |= 0x20; // more fragments
    cases.push(("a fragment", frag));
    let mut flags = d.clone();
    flags[43] = 1; // a reserved bit after the VNI
    cases.push(("reserved bits", flags));
    let mut arp = inner.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    cases.push(("inner arp", vxlan(PEER, LOCAL, 7, &arp)));
    let mut padded = d.clone();
    padded.extend_from_slice(&[0; 4]);
    cases.push(("trailing bytes", padded));
    let mut opts = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2])
        .ip(etherparse::IpHeaders::Ipv4(
            {
                let mut h = etherparse::Ipv4Header::new(
                    0,
                    64,
                    etherparse::IpNumber::UDP,
                    PEER.octets(),
                    LOCAL.octets(),
                )
                .expect("ip");
                h.options = [1, 1, 1, 0][..].try_into().expect("options");
                h
            },
            Default::default(),
        ))
        .udp(51000, 4789)
        .write(&mut opts, &d[42..])
        .expect("options frame");
    cases.push(("ip options", opts));
    for (what, f) in &cases {
        assert_eq!(fx.run(Prog::Underlay, f, 0), (TC_ACT_OK, f.clone()), "{what}");
    }
    assert_eq!(fx.counter(counter::TUNNEL_DECAP), 1);

    // Off (no tunnel address named, or switched off): nothing taken.
    fx.config(&kcfg(true, false));
    assert_eq!(fx.run(Prog::Underlay, &d, 0), (TC_ACT_OK, d.clone()));

    // The source check applies as in mdp_tunnel: peers only, once named.
    fx.config(&kcfg(true, true));
    fx.bpf.maps.tunnel_peers.insert(u32::from(Ipv4Addr::new(192, 0, 2, 3)), 1, 0).expect("peer");
    fx.bpf.maps.tunnel_filter.set(0, 1, 0).expect("filter");
    assert_eq!(fx.run(Prog::Underlay, &d, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::DROP_TUNNEL_SOURCE), 1);
    fx.bpf.maps.tunnel_peers.insert(u32::from(PEER), 1, 0).expect("peer");
    assert_eq!(fx.run(Prog::Underlay, &d, 0), (TC_ACT_REDIRECT, inner));
    assert_eq!(fx.counter(counter::TUNNEL_DECAP), 2);
}

#[test]
fn tunnel_outputs_are_encapsulated_in_the_program_for_peers_with_a_route() {
    if !runnable() {
        return;
    }
    let mut fx = fx("encap");
    fx.config(&kcfg(true, true));
    let f = tcp(B);
    let vni = 0x123;
    fx.install(&f, &bridge(), &[Action::Tunnel { dst: PEER, key: vni }]);

    // No route to the peer known: the vxlan device encapsulates (the frame
    // leaves as it came, with tunnel metadata).
    assert_eq!(fx.run(Prog::Port, &f, 0), (TC_ACT_REDIRECT, f.clone()));
    assert_eq!(fx.counter(counter::TUNNEL_ENCAP), 0);

    // Known (on-link, through ifindex 1): the program builds the datagram.
    let nh = abi::encode_nexthop(1, PEER, 1500);
    fx.bpf.maps.tunnel_nh.insert(u32::from(PEER), nh, 0).expect("nh");
    let (v, out) = fx.run(Prog::Port, &f, 0);
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(fx.counter(counter::TUNNEL_ENCAP), 1);
    assert_eq!(out.len(), f.len() + 50, "outer IPv4, UDP, VXLAN and the inner Ethernet header");
    assert_eq!(&out[50..], &f[..], "the frame itself, untouched");
    let (ip, rest) = etherparse::Ipv4Header::from_slice(&out[14..]).expect("outer ipv4");
    assert_eq!((ip.source, ip.destination, ip.time_to_live), (LOCAL.octets(), PEER.octets(), 64));
    assert_eq!(ip.protocol, etherparse::IpNumber::UDP);
    assert_eq!(usize::from(ip.total_len), out.len() - 14);
    assert_eq!(inet_checksum(&out[14..34]), 0, "outer header checksum");
    let (udp, vx) = etherparse::UdpHeader::from_slice(rest).expect("outer udp");
    assert_eq!((udp.destination_port, udp.checksum), (4789, 0));
    assert!((32768..=60999).contains(&udp.source_port), "{}", udp.source_port);
    assert_eq!(usize::from(udp.length), out.len() - 34);
    assert_eq!(&vx[..8], &[0x08, 0, 0, 0, 0, 0x01, 0x23, 0], "VXLAN: the I flag, the VNI");
    // The same flow keeps the same outer source port (the device's rule:
    // a hash of the inner flow), so the underlay keeps it on one path.
    // (The outer IP ID is random, as a non-atomic datagram's may be.)
    let no_id = |d: &[u8]| [&d[..18], &d[20..24], &d[26..]].concat();
    let (_, again) = fx.run(Prog::Port, &f, 0);
    assert_eq!(no_id(&again), no_id(&out));
    assert_eq!(inet_checksum(&again[14..34]), 0);

    // What the program sends, mdp_underlay takes apart again (as the peer:
    // the datagram is addressed to it).
    fx.bpf.maps.vni_ports.insert(vni, 2u32, 0).expect("vni");
    let peer = abi::KernelConfig { local_ip: Some(PEER), ..kcfg(true, true) };
    fx.config(&peer);
    assert_eq!(fx.run(Prog::Underlay, &out, 0), (TC_ACT_REDIRECT, f.clone()));
    fx.config(&kcfg(true, true));

    // A frame that would not fit the underlay's MTU once encapsulated: the
    // device, which fragments the datagram.
    let small = abi::encode_nexthop(1, PEER, (f.len() + 50 - 14 - 1) as u32);
    fx.bpf.maps.tunnel_nh.insert(u32::from(PEER), small, 0).expect("nh");
    assert_eq!(fx.run(Prog::Port, &f, 0), (TC_ACT_REDIRECT, f.clone()));
    let fits = abi::encode_nexthop(1, PEER, (f.len() + 50 - 14) as u32);
    fx.bpf.maps.tunnel_nh.insert(u32::from(PEER), fits, 0).expect("nh");
    let (v, fit) = fx.run(Prog::Port, &f, 0);
    assert_eq!((v, no_id(&fit)), (TC_ACT_REDIRECT, no_id(&out)));

    // ARP, and encapsulation switched off: the vxlan device.
    let mut arp = [&B.0[..], &A.0, &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], &A.0].concat();
    arp.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    let before = fx.counter(counter::TUNNEL_ENCAP);
    fx.install(&arp, &bridge(), &[Action::Tunnel { dst: PEER, key: vni }]);
    assert_eq!(fx.run(Prog::Port, &arp, 0), (TC_ACT_REDIRECT, arp.clone()));
    let off = abi::KernelConfig { encap: false, ..kcfg(true, true) };
    fx.config(&off);
    assert_eq!(fx.run(Prog::Port, &f, 0), (TC_ACT_REDIRECT, f));
    assert_eq!(fx.counter(counter::TUNNEL_ENCAP), before);
}

#[test]
fn inject_program_runs_the_marked_action_list() {
    if !runnable() {
        return;
    }
    let mut fx = fx("inject");
    let acts = [Action::SetEthDst(C), Action::SetTtl(9), Action::Output(2)];
    let (id, gen) = fx.k.acquire_acts(&mut fx.bpf.maps, &acts, false).expect("slot");
    let f = udp(B, 1);
    let mark = id | (u32::from(gen) << 16);
    let (v, out) = fx.run(Prog::Inject, &f, mark);
    assert_eq!((v, out), (TC_ACT_REDIRECT, oracle(&f, &acts)));
    assert_eq!(fx.counter(counter::INJECT), 1);
    // A reclaimed slot (another generation) or no mark: dropped, counted.
    let stale = id | (u32::from(gen.wrapping_add(1)) << 16);
    assert_eq!(fx.run(Prog::Inject, &f, stale).0, TC_ACT_SHOT);
    assert_eq!(fx.run(Prog::Inject, &f, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::DROP_STALE_EXEC), 2);
    // Equal lists share a slot.
    assert_eq!(fx.k.acquire_acts(&mut fx.bpf.maps, &acts, true).expect("slot"), (id, gen));
    let _ = TC_ACT_OK;
}

/// What the megaflow lookup costs in the kernel: the average run time of
/// `mdp_port` on a 64-byte UDP frame (BPF_PROG_TEST_RUN, `repeat` runs in
/// the kernel, timed there) when the flow sits behind 1, 4 or 16 masks,
/// next to the inject program's cheapest path (a lookup of one array
/// element, then drop) as the floor. Printed for docs/PERFORMANCE.md.
#[test]
fn lookup_cost_by_mask_count() {
    if !runnable() {
        return;
    }
    let f = udp(B, 1);
    let mut fx0 = fx("cost0");
    let (v, floor) = fx0.timed(Prog::Inject, &f, 0);
    assert_eq!(v, TC_ACT_SHOT);
    let mut line = format!("MEASURE bpf ns/packet (64 B UDP): floor {floor}");
    for n in [1usize, 4, 16] {
        let mut fx = fx(&format!("cost{n}"));
        // n - 1 masks that never match this frame, probed first.
        for i in 1..n {
            let mut m = bridge();
            m.mark_prefix(FieldId::Ipv4Src, i as u8);
            fx.install(&udp(MacAddr([2, 0, 0, 0, 0, 0xe]), 1), &m, &[Action::Output(2)]);
        }
        fx.install(&f, &bridge(), &[Action::Output(2)]);
        assert_eq!(fx.k.mask_count(), n);
        let (v, ns) = fx.timed(Prog::Port, &f, 0);
        assert_eq!(v, TC_ACT_REDIRECT, "hit behind {n} masks");
        line.push_str(&format!(", hit behind {n} mask(s) {ns}"));
    }
    eprintln!("{line}");
}

/// What an exact-match cache hit costs by the rewrites it carries: the
/// average run time of `mdp_port` on a 64-byte UDP frame served from the
/// cache (BPF_PROG_TEST_RUN, `repeat` runs timed in the kernel) with a
/// routed flow's actions (MACs, TTL, output), a floating IP's (the same
/// and the destination address) and a dynamic SNAT's (the source address
/// and port). Each rewrite writes the value the frame already holds, so
/// every repeat is the same packet and hits the same entry. Printed for
/// docs/PERFORMANCE.md; the outputs are checked against the action list's.
#[test]
fn exact_hit_cost_by_rewrites() {
    if !runnable() {
        return;
    }
    let f = udp(B, 1);
    let (src, dst, ttl) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), f[22]);
    let routed_acts = vec![Action::SetEthSrc(A), Action::SetEthDst(B), Action::SetTtl(ttl)];
    let mut fip = routed_acts.clone();
    fip.push(Action::SetIpv4Dst(dst));
    let mut snat = routed_acts.clone();
    snat.extend([Action::SetIpv4Src(src), Action::SetL4Src(1)]);
    let mut line = String::from("MEASURE bpf ns/packet, exact-cache hit (64 B UDP):");
    for (name, mut acts) in [("routed", routed_acts), ("floating IP", fip), ("SNAT", snat)] {
        acts.push(Action::Output(2));
        let mut fx = fx(&format!("xcost-{}", name.len()));
        fx.install(&f, &routed(), &acts);
        // UDP fills the cache on about one hit in four.
        let mut runs = 0;
        while fx.counter(counter::EXACT_FILL) == 0 && runs < 200 {
            assert_eq!(fx.run(Prog::Port, &f, 0), (TC_ACT_REDIRECT, oracle(&f, &acts)));
            runs += 1;
        }
        assert_eq!(fx.counter(counter::EXACT_FILL), 1, "{name}: cached");
        let (v, out) = fx.run(Prog::Port, &f, 0);
        assert_eq!((v, &out), (TC_ACT_REDIRECT, &f), "{name}: a hit, the frame unchanged");
        assert_checksums(&out);
        let hits = fx.counter(counter::EXACT_HIT);
        let (v, ns) = fx.timed(Prog::Port, &f, 0);
        assert_eq!(v, TC_ACT_REDIRECT);
        assert_eq!(fx.counter(counter::EXACT_HIT), hits + u64::from(repeat()), "{name}: all hits");
        line.push_str(&format!(" {name} {ns}"));
    }
    eprintln!("{line}");
}

// ---------------------------------------------------------------------------
// Reverse NAT: a flow split at a rev_snat/rev_dnat, its bindings in
// mdp_rev_nat, and mdp_state filling them from flow-state messages.

/// Ethernet + IPv4 + TCP (an ACK) from `src` to `dst`, checksums valid.
fn tcp4(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(A.0, B.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 65535)
        .ack(1)
        .write(&mut f, b"a reply")
        .expect("tcp");
    f
}

/// Ethernet + IPv4 + UDP from `src` to `dst`, checksums valid.
fn udp4(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(A.0, B.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut f, b"a datagram reply")
        .expect("udp");
    f
}

const TRACKER: [u8; 16] = [0x5a; 16];
const RECIRC: u32 = 7;

/// What a router reads before its reverse lookup: the first half's mask.
fn before_rev_nat() -> FlowMask {
    mask_of(&[FieldId::InPort, FieldId::EthDst, FieldId::EthType])
}

/// What the simulation read of the translated packet: the second half's.
fn after_rev_nat() -> FlowMask {
    let mut m = mask_of(&[FieldId::InPort, FieldId::EthType, FieldId::IpProto, FieldId::L4Dst]);
    m.mark_prefix(FieldId::Ipv4Dst, 32);
    m
}

/// The routed delivery of a translated reply.
const DELIVER: [Action; 4] =
    [Action::SetEthSrc(C), Action::SetEthDst(A), Action::SetTtl(63), Action::Output(2)];

fn rev_key(kind: RevNatKind, proto: u8, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> RevNatKey {
    RevNatKey {
        tracker: TRACKER,
        kind,
        proto,
        src: src.0,
        dst: dst.0,
        src_port: src.1,
        dst_port: dst.1,
    }
}

/// SNAT on a gateway: inside host 10.0.0.1 talks to a server through
/// 198.51.100.1. Its replies (TCP and UDP) hit the first half of a split
/// flow, are translated from the kernel's binding, hit the second half
/// under the recirculation's in_port and leave as that flow says: the
/// destination address and port restored, every checksum valid, counted on
/// both flows, never through the exact-match cache.
#[test]
fn a_split_flow_translates_snat_replies_in_the_kernel() {
    if !runnable() {
        return;
    }
    let mut fx = fx("revnat");
    let rn = fx.bpf.rev_nat.clone();
    rn.set_recirc(RECIRC, RevNatKind::Snat, TRACKER).expect("recirc");
    let (inside, nat, server) =
        (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(203, 0, 113, 5));
    let start = rn.now();
    let mut first = None;
    for (proto, reply, sport, inside_port) in [
        (6u8, tcp4((server, 80), (nat, 30000)), 80u16, 40000u16),
        (17u8, udp4((server, 53), (nat, 30001)), 53u16, 40001u16),
    ] {
        let dport = 30000 + u16::from(proto == 17);
        let key = rev_key(RevNatKind::Snat, proto, (server, sport), (nat, dport));
        rn.upsert(&[RevNatEntry { key, ip: inside, port: inside_port, local: true }])
            .expect("upsert");
        assert_eq!(rn.last_used(&key), None, "not used yet");
        let one = *first.get_or_insert_with(|| {
            fx.install(&reply, &before_rev_nat(), &[Action::RevNatRecirc(RECIRC)])
        });
        let restore = [Action::SetIpv4Dst(inside), Action::SetL4Dst(inside_port)];
        let two = fx.second_half(&reply, &restore, &after_rev_nat());
        let (hits, fills) = (fx.counter(counter::REV_NAT_HIT), fx.counter(counter::EXACT_FILL));
        let before1 = fx.k.flow_counters(&fx.bpf.maps, &one).0;
        for _ in 0..3 {
            let (v, out) = fx.run(Prog::Port, &reply, 0);
            assert_eq!(v, TC_ACT_REDIRECT, "proto {proto}");
            let want = oracle(&reply, &[&restore[..], &DELIVER[..]].concat());
            assert_eq!(out, want, "proto {proto}: restored and delivered");
            assert_eq!(&out[30..34], &inside.octets());
            assert_eq!(&out[36..38], &inside_port.to_be_bytes());
            assert_checksums(&out);
        }
        assert_eq!(fx.counter(counter::REV_NAT_HIT), hits + 3);
        assert_eq!(fx.counter(counter::EXACT_FILL), fills, "the exact cache stays out of it");
        assert_eq!(fx.k.flow_counters(&fx.bpf.maps, &one).0, before1 + 3, "the first half");
        assert_eq!(fx.k.flow_counters(&fx.bpf.maps, &two).0, 3, "the second half");
        let used = rn.last_used(&key).expect("used");
        assert!(used > std::time::Duration::ZERO && used <= rn.now(), "{used:?} {:?}", rn.now());
        // The agent writing the binding again keeps when it was used.
        rn.upsert(&[RevNatEntry { key, ip: inside, port: inside_port, local: true }])
            .expect("upsert");
        assert_eq!(rn.last_used(&key), Some(used));
    }
    assert_eq!(fx.counter(counter::HIT), 6, "one hit per packet, not two");
    assert_eq!((fx.counter(counter::MISS), fx.counter(counter::UPCALL)), (0, 0));
    assert_eq!(fx.port_stats(2)[2], 6, "sent out of port 2");

    // What the agent reads back to refresh its bindings (or close them):
    // both used, with the TCP flags of their replies.
    let tcp_key = rev_key(RevNatKind::Snat, 6, (server, 80), (nat, 30000));
    let udp_key = rev_key(RevNatKind::Snat, 17, (server, 53), (nat, 30001));
    let used = |since| -> std::collections::HashMap<RevNatKey, u16> {
        rn.used_since(since).into_iter().map(|(e, f)| (e.key, f)).collect()
    };
    let seen = used(start);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[&tcp_key] & 0x17, 0x10, "ACKs: no SYN, FIN or RST");
    assert_eq!(seen[&udp_key], 0);
    assert!(used(rn.now() + std::time::Duration::from_secs(1)).is_empty(), "none since");
    // A FIN among the replies: the agent sees the connection closing.
    let mut fin = tcp4((server, 80), (nat, 30000));
    fin[47] |= 0x01;
    assert_eq!(fx.run(Prog::Port, &fin, 0).0, TC_ACT_REDIRECT);
    assert_eq!(used(start)[&tcp_key] & 0x11, 0x11);
    let e = rn.used_since(start).into_iter().find(|(e, _)| e.key == tcp_key).expect("used").0;
    assert_eq!((e.ip, e.port, e.local), (inside, 40000, true));
    // Written again as another binding, the key starts over with its
    // flags (not with when it was used).
    rn.upsert(&[RevNatEntry { key: tcp_key, ip: inside, port: 40002, local: true }])
        .expect("upsert");
    let v = rn.get(&tcp_key).expect("read").expect("there");
    assert_eq!((v.port, v.tcp_flags), (40002, 0));
    assert!(v.used_ns > 0);
}

/// A reply of a DNAT (a load balancer's VIP 198.51.100.10:80 in front of
/// 10.0.0.9:8080) gets its source back.
#[test]
fn a_split_flow_restores_the_source_of_dnat_replies() {
    if !runnable() {
        return;
    }
    let mut fx = fx("revdnat");
    let rn = fx.bpf.rev_nat.clone();
    rn.set_recirc(RECIRC, RevNatKind::Dnat, TRACKER).expect("recirc");
    let (client, vip, backend) = (
        (Ipv4Addr::new(192, 0, 2, 50), 5555),
        (Ipv4Addr::new(198, 51, 100, 10), 80),
        (Ipv4Addr::new(10, 0, 0, 9), 8080),
    );
    let reply = tcp4(backend, client);
    let key = rev_key(RevNatKind::Dnat, 6, backend, client);
    rn.upsert(&[RevNatEntry { key, ip: vip.0, port: vip.1, local: false }]).expect("upsert");
    fx.install(&reply, &before_rev_nat(), &[Action::RevNatRecirc(RECIRC)]);
    let restore = [Action::SetIpv4Src(vip.0), Action::SetL4Src(vip.1)];
    let mut on_source = after_rev_nat();
    on_source.mark_prefix(FieldId::Ipv4Src, 32);
    on_source.mark(FieldId::L4Src);
    fx.second_half(&reply, &restore, &on_source);
    let (v, out) = fx.run(Prog::Port, &reply, 0);
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(out, oracle(&reply, &[&restore[..], &DELIVER[..]].concat()));
    assert_eq!((&out[26..30], &out[34..36]), (&vip.0.octets()[..], &vip.1.to_be_bytes()[..]));
    assert_checksums(&out);
    assert_eq!(fx.counter(counter::REV_NAT_HIT), 1);
    // Looked up under its own kind: an SNAT binding of the same tuple is
    // not this one.
    rn.remove(&[key]).expect("remove");
    let snat = RevNatKey { kind: RevNatKind::Snat, ..key };
    rn.upsert(&[RevNatEntry { key: snat, ip: vip.0, port: vip.1, local: false }]).expect("upsert");
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::REV_NAT_MISS), 1);
}

/// A gateway's SNAT reply (server 203.0.113.5:80 to 198.51.100.1:30000, for
/// inside host 10.0.0.1:40000) and its flow split under `RECIRC`: the first
/// half, and the second delivering to port 2. No binding yet.
struct SnatSplit {
    fx: Fx,
    rn: std::sync::Arc<midonet_datapath::ebpf::revnat::KernelRevNat>,
    inside: (Ipv4Addr, u16),
    nat: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    reply: Vec<u8>,
    key: RevNatKey,
    restore: [Action; 2],
    two: midonet_datapath::ebpf::kernel::Offloaded,
}

fn snat_split(name: &str) -> SnatSplit {
    let mut fx = fx(name);
    let rn = fx.bpf.rev_nat.clone();
    rn.set_recirc(RECIRC, RevNatKind::Snat, TRACKER).expect("recirc");
    let (inside, nat, server) = (
        (Ipv4Addr::new(10, 0, 0, 1), 40000),
        (Ipv4Addr::new(198, 51, 100, 1), 30000),
        (Ipv4Addr::new(203, 0, 113, 5), 80),
    );
    let reply = tcp4(server, nat);
    let key = rev_key(RevNatKind::Snat, 6, server, nat);
    fx.install(&reply, &before_rev_nat(), &[Action::RevNatRecirc(RECIRC)]);
    let restore = [Action::SetIpv4Dst(inside.0), Action::SetL4Dst(inside.1)];
    let two = fx.second_half(&reply, &restore, &after_rev_nat());
    SnatSplit { fx, rn, inside, nat, server, reply, key, restore, two }
}

/// What the kernel cannot translate goes to the agent as it came, with its
/// own in_port: no binding (counted as a reverse-NAT miss), no second
/// half, a recirculation id not set, a packet that is not TCP or UDP.
#[test]
fn split_flows_send_up_what_they_cannot_translate_unchanged() {
    if !runnable() {
        return;
    }
    let SnatSplit { mut fx, rn, inside, nat, server, reply, key, restore, two } =
        snat_split("revnat-miss");

    // No binding.
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::REV_NAT_MISS), 1);
    assert_eq!((fx.counter(counter::MISS), fx.counter(counter::UPCALL)), (1, 1));
    assert_eq!(fx.upcalled(), (InPort::Port(1), reply.clone()));

    // A binding, but no second half.
    let entry = RevNatEntry { key, ip: inside.0, port: inside.1, local: true };
    rn.upsert(&[entry]).expect("upsert");
    fx.k.remove(&mut fx.bpf.maps, &two);
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::REV_NAT_MISS), 1, "the binding was there");
    assert_eq!(fx.counter(counter::MISS), 2);
    assert_eq!(fx.upcalled(), (InPort::Port(1), reply.clone()), "not rewritten");
    assert!(rn.last_used(&key).is_some(), "the binding was used all the same");

    // Both halves again: a hit.
    fx.second_half(&reply, &restore, &after_rev_nat());
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_REDIRECT);

    // Written again as it is (its flow simulated again): the binding keeps
    // its last use and flags; another binding for the key starts afresh.
    let used = rn.get(&key).expect("read").expect("held");
    assert!(used.used_ns > 0 && used.tcp_flags != 0, "{used:?}");
    rn.upsert(&[entry]).expect("upsert");
    assert_eq!(rn.get(&key).expect("read"), Some(used));
    rn.upsert(&[RevNatEntry { port: inside.1 + 1, ..entry }]).expect("upsert");
    let other = rn.get(&key).expect("read").expect("held");
    assert_eq!((other.port, other.tcp_flags, other.used_ns), (inside.1 + 1, 0, used.used_ns));
    rn.upsert(&[RevNatEntry { local: false, ..entry }]).expect("upsert");
    assert!(!rn.get(&key).expect("read").expect("held").local, "the owner changed");
    rn.upsert(&[entry]).expect("upsert");

    // remove_exact takes only the binding it names.
    rn.remove_exact(&[RevNatEntry { port: 1, ..entry }]).expect("remove exact");
    assert!(rn.get(&key).expect("read").is_some(), "another port: kept");
    rn.remove_exact(&[RevNatEntry { local: false, ..entry }]).expect("remove exact");
    assert_eq!(rn.get(&key).expect("read"), None);
    assert_eq!(rn.last_used(&key), None);
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::REV_NAT_MISS), 2);
    let _ = fx.upcalled();

    // A recirculation id nobody set.
    rn.upsert(&[entry]).expect("upsert");
    let other = tcp4(server, nat);
    let mut unset = other.clone();
    unset[0..6].copy_from_slice(&C.0);
    fx.install(&unset, &before_rev_nat(), &[Action::RevNatRecirc(RECIRC + 1)]);
    assert_eq!(fx.run(Prog::Port, &unset, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.upcalled(), (InPort::Port(1), unset));

    // An ICMP packet on the first half.
    let mut ping = icmp_echo(B);
    ping[26..30].copy_from_slice(&server.0.octets());
    ping[30..34].copy_from_slice(&nat.0.octets());
    assert_eq!(fx.run(Prog::Port, &ping, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.upcalled().0, InPort::Port(1));
    assert_eq!(fx.counter(counter::REV_NAT_MISS), 2, "no binding was looked for");
    assert_eq!(fx.counter(counter::REV_NAT_HIT), 1);
    assert_eq!(fx.counter(counter::MISS), 5);
}

/// A split flow whose second halves read conntrack (`matchReturnFlow` after
/// the reverse rule): the first half takes a second half only for a reply
/// whose connection mdp_ct holds, keyed as the agent keys it (the reply as
/// it arrived, reversed, at the recirculation's conntrack tracker); any
/// other reply goes up unchanged, counted. The replies that took it leave
/// their last use and TCP flags in the connection's entry.
#[test]
fn a_split_flow_reading_conntrack_needs_the_connection_tracked() {
    if !runnable() {
        return;
    }
    let SnatSplit { mut fx, rn, inside, nat, server, reply, key, restore, .. } =
        snat_split("revnat-ct");
    const CT_TRACKER: [u8; 16] = [0x6b; 16];
    rn.set_recirc_conntrack(RECIRC, Some(CT_TRACKER)).expect("recirc reads conntrack");
    rn.upsert(&[RevNatEntry { key, ip: inside.0, port: inside.1, local: true }]).expect("upsert");
    let start = rn.now();

    // Not tracked: up as it came.
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::CT_MISS), 1);
    assert_eq!(fx.counter(counter::REV_NAT_HIT), 0);
    assert_eq!(fx.upcalled(), (InPort::Port(1), reply.clone()), "not rewritten");
    // Tracked at another device, or another connection: still not.
    let conn = CtKey {
        tracker: CT_TRACKER,
        proto: 6,
        src: nat.0,
        dst: server.0,
        src_port: nat.1,
        dst_port: server.1,
    };
    let elsewhere = CtKey { tracker: TRACKER, ..conn };
    let other_port = CtKey { src_port: nat.1 + 1, ..conn };
    let reply_shape =
        CtKey { src: server.0, dst: nat.0, src_port: server.1, dst_port: nat.1, ..conn };
    rn.ct_insert(&[elsewhere, other_port, reply_shape], false).expect("insert");
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::CT_MISS), 2);
    let _ = fx.upcalled();
    // Its own connection tracked: translated and delivered.
    rn.ct_insert(&[conn], false).expect("insert");
    assert_eq!(rn.ct_get(&conn).expect("read"), Some((0, 0)), "not used yet");
    let mut all = rn.ct_keys();
    all.sort_by_key(|k| (k.tracker, k.src_port, k.src));
    let mut want = vec![conn, elsewhere, other_port, reply_shape];
    want.sort_by_key(|k| (k.tracker, k.src_port, k.src));
    assert_eq!(all, want, "every connection the table holds");
    let (v, out) = fx.run(Prog::Port, &reply, 0);
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(out, oracle(&reply, &[&restore[..], &DELIVER[..]].concat()));
    assert_checksums(&out);
    assert_eq!((fx.counter(counter::REV_NAT_HIT), fx.counter(counter::CT_MISS)), (1, 2));
    // A FIN among the replies: the agent reads the connection's use and
    // flags back; the others were not used.
    let mut fin = reply.clone();
    fin[47] |= 0x01;
    assert_eq!(fx.run(Prog::Port, &fin, 0).0, TC_ACT_REDIRECT);
    let used = rn.ct_used_since(start);
    assert_eq!(used.len(), 1, "{used:?}");
    assert_eq!((used[0].0, used[0].1 & 0x11), (conn, 0x11));
    assert!(rn.ct_used_since(rn.now() + std::time::Duration::from_secs(1)).is_empty());
    // Inserted where it is (the agent reading a message mdp_state took
    // first): its use stays. Inserted afresh (a connection opened again on
    // the tuple): not used yet.
    rn.ct_insert(&[conn], false).expect("insert");
    let (used_ns, flags) = rn.ct_get(&conn).expect("read").expect("there");
    assert!(used_ns > 0 && flags & 0x11 == 0x11, "kept: {used_ns} {flags:#x}");
    rn.ct_insert(&[conn], true).expect("insert");
    assert_eq!(rn.ct_get(&conn).expect("read"), Some((0, 0)));
    // Gone: up again.
    rn.ct_remove(&[conn]).expect("remove");
    assert_eq!(rn.ct_get(&conn).expect("read"), None);
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_SHOT);
    assert_eq!(fx.counter(counter::CT_MISS), 3);
    let _ = fx.upcalled();
    // A second half that reads no conntrack (a reply to a VM without a
    // security group, behind the same first half) waits under the
    // untracked in-port as well: a reply whose connection is not tracked
    // takes it there, and a tracked one still its own.
    let other = [Action::SetEthSrc(C), Action::SetEthDst(A), Action::SetTtl(63), Action::Output(3)];
    let untracked = InPort::Port(RECIRC_PORT_BASE + RECIRC_UNTRACKED + RECIRC);
    fx.install_at(&oracle(&reply, &restore), untracked, &after_rev_nat(), &other);
    let (v, out) = fx.run(Prog::Port, &reply, 0);
    assert_eq!(v, TC_ACT_REDIRECT, "untracked: the second half that reads no conntrack");
    assert_eq!(out, oracle(&reply, &[&restore[..], &other[..]].concat()));
    assert_eq!(fx.port_stats(3)[2], 1, "out of port 3");
    assert_eq!((fx.counter(counter::REV_NAT_HIT), fx.counter(counter::CT_MISS)), (3, 4));
    rn.ct_insert(&[conn], false).expect("insert");
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_REDIRECT);
    assert_eq!(fx.port_stats(3)[2], 1, "tracked: its own second half, out of port 2");
    assert_eq!((fx.counter(counter::REV_NAT_HIT), fx.counter(counter::CT_MISS)), (4, 4));
    // The id given out anew, without the check: the untracked in-port is
    // never looked at.
    rn.ct_remove(&[conn]).expect("remove");
    rn.set_recirc_conntrack(RECIRC, None).expect("clear");
    assert_eq!(fx.run(Prog::Port, &reply, 0).0, TC_ACT_REDIRECT);
    assert_eq!(fx.port_stats(3)[2], 1);
    assert_eq!((fx.counter(counter::REV_NAT_HIT), fx.counter(counter::CT_MISS)), (5, 4));
}

/// `used_since` walks the whole table, batch after batch: every binding a
/// reply used since then, and none of the others.
#[test]
fn used_since_reads_the_whole_table() {
    if !runnable() {
        return;
    }
    let fx = fx("revnat-walk");
    let rn = fx.bpf.rev_nat.clone();
    let data = aya::maps::MapData::from_pin(fx.dir.join("mdp_rev_nat")).expect("pinned");
    let mut m: aya::maps::HashMap<_, abi::NatKeyBytes, abi::NatValBytes> =
        aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data)).expect("typed");
    let now = rn.now().as_nanos() as u64;
    let n = 10_000u32;
    for i in 0..n {
        let key = RevNatKey {
            src_port: i as u16,
            ..rev_key(RevNatKind::Snat, 6, (Ipv4Addr::new(203, 0, 113, 5), 0), (LOCAL, 9))
        };
        // Every third one used a second ago, the rest an hour before.
        let used_ns = if i % 3 == 0 { now - 1_000_000_000 } else { 1 };
        let v = abi::NatVal { ip: LOCAL, port: 1, local: false, tcp_flags: i as u8, used_ns };
        m.insert(abi::encode_nat_key(&key), abi::encode_nat_val(&v), 0).expect("insert");
    }
    let since = std::time::Duration::from_nanos(now - 2_000_000_000);
    let mut got: Vec<(u16, u16)> =
        rn.used_since(since).into_iter().map(|(e, f)| (e.key.src_port, f)).collect();
    got.sort_unstable();
    let want: Vec<(u16, u16)> =
        (0..n).filter(|i| i % 3 == 0).map(|i| (i as u16, u16::from(i as u8))).collect();
    assert_eq!(got, want);
}

mod state_socket {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use midonet_datapath::ebpf::abi::{counter, NatVal};
    use midonet_datapath::{CtKey, RevNatEntry, RevNatKey, RevNatKind, RevNatTable};
    use midonet_wire::flowstate::{
        ConnKeyRepr, ConnStateCode, ConntrackRepr, FlowStateRepr, NatKindCode, NatRepr, Purpose,
    };

    use super::{fx, runnable, Fx};

    /// A UDP socket on 127.0.0.1 with `mdp_state` attached through the
    /// reverse-NAT table, and one to send from.
    struct Pair {
        rx: UdpSocket,
        tx: UdpSocket,
    }

    impl Pair {
        fn new(fx: &Fx) -> Pair {
            let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
            rx.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            fx.bpf.rev_nat.attach_state_socket(rx.as_raw_fd()).expect("attach mdp_state");
            let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
            Pair { rx, tx }
        }

        /// Send `bytes`; what the socket receives must be them, intact (so
        /// the filter has run).
        fn deliver(&self, bytes: &[u8]) {
            self.tx.send_to(bytes, self.rx.local_addr().expect("addr")).expect("send");
            let mut buf = vec![0u8; 65536];
            let (n, from) = self.rx.recv_from(&mut buf).expect("the datagram is delivered");
            assert_eq!(from, self.tx.local_addr().expect("addr"));
            assert_eq!(&buf[..n], bytes, "delivered intact");
        }
    }

    fn ip(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 1, 0, d)
    }

    fn nat(
        kind: NatKindCode,
        proto: u8,
        tracker: u8,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        bound: (Ipv4Addr, u16),
    ) -> NatRepr {
        NatRepr {
            key: ConnKeyRepr {
                tracker: [tracker; 16],
                src: src.0,
                dst: dst.0,
                src_port: src.1,
                dst_port: dst.1,
                proto,
            },
            kind,
            bound_ip: bound.0,
            bound_port: bound.1,
        }
    }

    /// The key of a binding's replies and what they get back, as
    /// `midonet_state::NatKey::return_key` and `return_binding` define them
    /// (SNAT: from the forward destination to the bound address, the
    /// forward source restored as destination; DNAT: from the bound
    /// address to the forward source, the forward destination restored as
    /// source).
    fn reply_of(n: &NatRepr) -> (RevNatKey, Ipv4Addr, u16) {
        let c = &n.key;
        let (kind, src, dst, back) = match n.kind {
            NatKindCode::Snat => (
                RevNatKind::Snat,
                (c.dst, c.dst_port),
                (n.bound_ip, n.bound_port),
                (c.src, c.src_port),
            ),
            NatKindCode::Dnat => (
                RevNatKind::Dnat,
                (n.bound_ip, n.bound_port),
                (c.src, c.src_port),
                (c.dst, c.dst_port),
            ),
            other => panic!("no reply key for {other:?}"),
        };
        let key = RevNatKey {
            tracker: c.tracker,
            kind,
            proto: c.proto,
            src: src.0,
            dst: dst.0,
            src_port: src.1,
            dst_port: dst.1,
        };
        (key, back.0, back.1)
    }

    fn message(nat: Vec<NatRepr>) -> Vec<u8> {
        let id = |b: u8| [b; 16];
        let m = FlowStateRepr {
            purpose: Purpose::State,
            sender: id(1),
            ingress_port: id(2),
            // Sections in front of the NAT entries, which the filter skips.
            egress_ports: vec![id(3)],
            port_groups: vec![id(4), id(5)],
            conntrack: vec![ConntrackRepr {
                key: ConnKeyRepr {
                    tracker: id(6),
                    src: ip(1),
                    dst: ip(2),
                    src_port: 1,
                    dst_port: 2,
                    proto: 6,
                },
                state: ConnStateCode::New,
            }],
            nat,
            learned: Vec::new(),
        };
        let mut out = Vec::new();
        m.emit_vec(&mut out).expect("emit");
        out
    }

    fn written(fx: &Fx, n: &NatRepr) -> Option<NatVal> {
        fx.bpf.rev_nat.get(&reply_of(n).0).expect("read mdp_rev_nat")
    }

    /// The filter takes every TCP/UDP SNAT and DNAT binding of a message
    /// into the table under its reply key, as the agent's own tables would
    /// find it, and leaves delivery alone.
    #[test]
    fn mdp_state_writes_the_bindings_of_flow_state_messages() {
        if !runnable() {
            return;
        }
        let mut fx = fx("state");
        let p = Pair::new(&fx);
        // 127.0.0.1 is a tunnel peer (mdp_state believes no one else).
        fx.bpf.maps.tunnel_peers.insert(u32::from(Ipv4Addr::LOCALHOST), 1, 0).expect("peer");
        fx.bpf.maps.tunnel_filter.set(0, 1, 0).expect("filter on");
        let snat = nat(NatKindCode::Snat, 6, 9, (ip(1), 40000), (ip(200), 443), (ip(100), 31000));
        let dnat = nat(NatKindCode::Dnat, 17, 8, (ip(7), 5353), (ip(50), 53), (ip(9), 5300));
        let icmp = nat(NatKindCode::Snat, 1, 9, (ip(1), 77), (ip(200), 77), (ip(100), 78));
        let sticky = nat(NatKindCode::StickyDnat, 6, 8, (ip(7), 0), (ip(50), 80), (ip(9), 8080));
        p.deliver(&message(vec![snat, icmp, dnat, sticky]));
        assert_eq!(fx.counter(counter::STATE_BINDINGS), 2, "TCP/UDP SNAT and DNAT only");
        assert_eq!(fx.counter(counter::STATE_REJECTED), 0);
        // The message's connection, as the agent's conntrack keys it.
        let conn =
            CtKey { tracker: [6; 16], proto: 6, src: ip(1), dst: ip(2), src_port: 1, dst_port: 2 };
        assert_eq!(fx.counter(counter::STATE_CONNS), 1);
        assert_eq!(fx.bpf.rev_nat.ct_get(&conn).expect("read mdp_ct"), Some((0, 0)));
        for n in [&snat, &dnat] {
            let (_, ip, port) = reply_of(n);
            let want = NatVal { ip, port, local: false, tcp_flags: 0, used_ns: 0 };
            assert_eq!(written(&fx, n), Some(want), "{n:?}");
        }
        assert_eq!(
            reply_of(&snat).0,
            RevNatKey {
                tracker: [9; 16],
                kind: RevNatKind::Snat,
                proto: 6,
                src: ip(200),
                dst: ip(100),
                src_port: 443,
                dst_port: 31000,
            },
            "the SNAT reply: from the server to the bound address"
        );
        assert_eq!(written(&fx, &snat).map(|v| (v.ip, v.port)), Some((ip(1), 40000)));
        assert_eq!(written(&fx, &dnat).map(|v| (v.ip, v.port)), Some((ip(50), 53)));
        let mut icmp_key = reply_of(&snat).0;
        icmp_key.proto = 1;
        assert_eq!(fx.bpf.rev_nat.get(&icmp_key).expect("read"), None);

        // A binding this host allocated stays; a peer's is replaced, as a
        // binding not used yet.
        let (k_snat, ..) = reply_of(&snat);
        let mine = RevNatEntry { key: k_snat, ip: ip(2), port: 2222, local: true };
        let (k_dnat, ..) = reply_of(&dnat);
        let peers = RevNatEntry { key: k_dnat, ip: ip(3), port: 3, local: false };
        fx.bpf.rev_nat.upsert(&[mine, peers]).expect("upsert");
        p.deliver(&message(vec![snat, dnat]));
        assert_eq!(fx.counter(counter::STATE_BINDINGS), 3, "only the peer's binding");
        assert_eq!(fx.counter(counter::STATE_CONNS), 1, "a connection there already stays");
        let val = |ip, port, local| NatVal { ip, port, local, tcp_flags: 0, used_ns: 0 };
        assert_eq!(written(&fx, &snat), Some(val(ip(2), 2222, true)));
        assert_eq!(written(&fx, &dnat), Some(val(ip(50), 53, false)));

        // More NAT entries than the filter reads in one message: the first
        // 16 (the agent reads them all).
        let many: Vec<NatRepr> = (0..20u16)
            .map(|i| {
                nat(NatKindCode::Snat, 17, 7, (ip(1), 1000 + i), (ip(2), 53), (ip(3), 2000 + i))
            })
            .collect();
        p.deliver(&message(many.clone()));
        assert_eq!(fx.counter(counter::STATE_BINDINGS), 3 + 16);
        assert!(many[..16].iter().all(|n| written(&fx, n).is_some()));
        assert!(many[16..].iter().all(|n| written(&fx, n).is_none()));
        assert_eq!(fx.counter(counter::STATE_REJECTED), 0);
    }

    /// What the filter does not read it counts and leaves to the agent: a
    /// sender that is not a tunnel peer (once the agent named them),
    /// another version, a request, a datagram shorter than its NAT section.
    /// Every one is still delivered as it came.
    #[test]
    fn mdp_state_ignores_strangers_and_malformed_messages() {
        if !runnable() {
            return;
        }
        let mut fx = fx("state-reject");
        let p = Pair::new(&fx);
        let a = nat(NatKindCode::Snat, 6, 9, (ip(1), 40000), (ip(200), 443), (ip(100), 31000));
        let b = nat(NatKindCode::Snat, 6, 9, (ip(1), 40001), (ip(200), 443), (ip(100), 31001));
        let good = message(vec![a, b]);

        let mut version = good.clone();
        version[0] = 2;
        let mut request = good.clone();
        request[1] |= midonet_wire::flowstate::FLAG_REQUEST;
        // Cut inside the second NAT entry: the first is whole, but the
        // message is not what it says, so nothing of it is taken.
        let short = good[..good.len() - 10].to_vec();
        let header_only = good[..20].to_vec();
        // Before the agent names its peers, nobody is believed (the agent
        // itself believes nobody until then either).
        p.deliver(&good);
        assert_eq!(fx.counter(counter::STATE_REJECTED), 1, "no peer set yet");
        // The tunnel filter on, 127.0.0.1 not a peer: nothing taken.
        let maps = &mut fx.bpf.maps;
        maps.tunnel_peers.insert(u32::from(Ipv4Addr::new(192, 0, 2, 2)), 1, 0).expect("peer");
        maps.tunnel_filter.set(0, 1, 0).expect("filter on");
        p.deliver(&good);
        assert_eq!(fx.counter(counter::STATE_REJECTED), 2, "a stranger");
        assert_eq!((written(&fx, &a), written(&fx, &b)), (None, None));
        // From a peer (in host order, as mdp_tunnel_peers is keyed), but
        // malformed: nothing taken.
        fx.bpf.maps.tunnel_peers.insert(u32::from(Ipv4Addr::LOCALHOST), 1, 0).expect("peer");
        for (i, m) in [version, request, short, header_only].iter().enumerate() {
            p.deliver(m);
            assert_eq!(fx.counter(counter::STATE_REJECTED), i as u64 + 3, "case {i}");
        }
        assert_eq!(fx.counter(counter::STATE_BINDINGS), 0);
        assert_eq!((written(&fx, &a), written(&fx, &b)), (None, None));
        // A well-formed message from a peer: taken.
        p.deliver(&good);
        assert_eq!(fx.counter(counter::STATE_BINDINGS), 2);
        assert!(written(&fx, &a).is_some() && written(&fx, &b).is_some());
        assert_eq!(fx.counter(counter::STATE_REJECTED), 6);
    }
}
