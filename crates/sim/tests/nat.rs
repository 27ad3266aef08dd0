//! Dynamic NAT (`snat`/`dnat` with port ranges, `rev_snat`/`rev_dnat`) as
//! MidoNet does it (reference §2.10), plus what we do better: ICMP echo
//! ids translated, ICMP errors reverse-translated through their quote.
//!
//! The world is the reference one with a default route out of the uplink
//! `up` (192.0.2.2): the router SNATs what leaves by `up` and
//! reverse-SNATs what comes in by it, the way Neutron's router gateway
//! does. Flow state is the world's `MemFlowState`, with SNAT block 16
//! (ports 1024-1087 of 192.0.2.2) granted unless a test says otherwise.

mod common;

use std::net::Ipv4Addr;

use common::*;
use midonet_model::*;
use midonet_sim::*;
use midonet_state::{BlockKey, NatKind, TrackerId};

const PUB: &str = "192.0.2.2";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn target(from: u16, to: u16) -> NatTarget {
    NatTarget { address_from: ip(PUB), address_to: ip(PUB), port_from: from, port_to: to }
}

fn nat_rule(t: RuleType, c: Condition, targets: Vec<NatTarget>) -> Rule {
    Rule {
        rule_type: t,
        flow_action: Some(FlowAction::Accept),
        condition: c,
        nat_targets: targets,
        ..Default::default()
    }
}

fn router_dev(w: &W) -> TrackerId {
    TrackerId::from(w.r.cast::<Device>())
}

fn block(w: &W, n: u16) -> BlockKey {
    BlockKey { device: router_dev(w), ip: ip(PUB), block: n }
}

/// The gateway world: SNAT to `targets` out of `up`, rev_snat into it,
/// and `extra_in` rules before the rev_snat on the router's inbound chain.
fn gateway(targets: Vec<NatTarget>, extra_in: Vec<Rule>, grant: bool) -> W {
    let mut w = W::std();
    w.with_default();
    w.gw_arp();
    let up = w.up;
    let on_up = |out: bool| {
        if out {
            Condition { out_ports: vec![up], ..Default::default() }
        } else {
            Condition { in_ports: vec![up], ..Default::default() }
        }
    };
    let out = w.chain("r-out", vec![nat_rule(RuleType::Snat, on_up(true), targets)]);
    let mut rin = extra_in;
    rin.push(nat_rule(RuleType::RevSnat, on_up(false), vec![]));
    let inn = w.chain("r-in", rin);
    let r = w.r;
    w.t.edit_router(r, |x| {
        x.outbound_filter_id = Some(out);
        x.inbound_filter_id = Some(inn);
    });
    let (b1, v1, v2, rp1) = (w.b1, w.v1, w.v2, w.rp1);
    w.learn(b1, 0, VM1, v1);
    w.learn(b1, 0, VM2, v2);
    w.learn(b1, 0, RP1, rp1);
    w.state.router_arp.insert((w.r, ip("10.0.0.11")), mac(VM1));
    w.state.router_arp.insert((w.r, ip("10.0.0.12")), mac(VM2));
    if grant {
        let b = block(&w, 16);
        w.flow.grant(b, NOW);
    }
    w
}

fn rewrites(r: &SimResult) -> Vec<Action> {
    r.actions
        .iter()
        .filter_map(|a| match a {
            SimAction::Rewrite(x) => Some(*x),
            SimAction::ToPort(_) => None,
        })
        .collect()
}

fn l4_src(r: &SimResult) -> Option<u16> {
    rewrites(r).iter().find_map(|a| match a {
        Action::SetL4Src(p) => Some(*p),
        _ => None,
    })
}

fn icmp_id(r: &SimResult) -> Option<u16> {
    rewrites(r).iter().find_map(|a| match a {
        Action::SetIcmpId(p) => Some(*p),
        _ => None,
    })
}

fn forwarded_to(r: &SimResult, port: PortId) {
    assert_eq!(r.decision, Decision::Forward, "{}", r.render());
    assert_eq!(r.out_ports().collect::<Vec<_>>(), vec![port], "{}", r.render());
}

fn tcp_out(src: &str, smac: &str, sport: u16, dst: &str) -> String {
    format!("eth.src={smac},eth.dst={RP1},ip4.src={src},ip4.dst={dst},tcp.src={sport},tcp.dst=443")
}

#[test]
fn snat_out_and_rev_snat_back() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, up) = (w.v1, w.up);
    let out = run(&mut w, v1, &tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    forwarded_to(&out, up);
    let port = l4_src(&out).expect("the source port is translated");
    assert!((1024..=1087).contains(&port));
    assert!(rewrites(&out).contains(&Action::SetIpv4Src(ip(PUB))));
    // The flow matches its exact connection and carries the binding's tag.
    for f in [FieldId::L4Src, FieldId::L4Dst, FieldId::IpProto] {
        assert!(out.mask.is_marked(f), "{f:?} unmarked");
    }
    assert_eq!(out.mask.prefix_len(FieldId::Ipv4Src), 32);
    assert_eq!(out.mask.prefix_len(FieldId::Ipv4Dst), 32);
    assert_eq!(out.nat.len(), 1);
    let w0 = out.nat[0];
    assert_eq!(w0.key.kind, NatKind::Snat);
    assert_eq!(w0.key.conn.tracker, router_dev(&w));
    assert_eq!((w0.binding.ip, w0.binding.port), (ip(PUB), port));
    assert!(out.tags.contains(&Tag::nat(&w0.key)));
    assert!(out.trace.iter().any(|s| matches!(s, TraceStep::Nat { reverse: false, .. })));

    // The reply comes back to the public address and port.
    let reply = format!(
        "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},tcp.src=443,tcp.dst={port}"
    );
    let back = run(&mut w, up, &reply);
    forwarded_to(&back, v1);
    let rw = rewrites(&back);
    assert!(rw.contains(&Action::SetIpv4Dst(ip("10.0.0.11"))), "{}", back.render());
    assert!(rw.contains(&Action::SetL4Dst(40000)), "{}", back.render());
    assert_eq!(
        back.nat,
        vec![NatWrite { created: false, reverse: true, ..w0 }],
        "the binding is used, by a reverse lookup"
    );
    assert!(back.tags.contains(&Tag::nat(&w0.key)), "invalidated when the binding goes");
    for t in w0.tags() {
        assert!(back.tags.contains(&t));
    }

    // A reply to a port nobody has: no binding, the rule falls through (to
    // the router's own address, which does not take TCP), and the flow is
    // tagged with the return key it looked for.
    let other = port.wrapping_add(1).max(1024);
    let stray = reply.replace(&format!("tcp.dst={port}"), &format!("tcp.dst={other}"));
    let lost = run(&mut w, up, &stray);
    assert_eq!(drop_reason(&lost), Some(DropReason::LocalNotHandled), "{}", lost.render());
    assert!(lost.nat.is_empty());
    let ret = midonet_state::ConnKey {
        src: ip("198.51.100.7"),
        dst: ip(PUB),
        src_port: 443,
        dst_port: other,
        proto: 6,
        tracker: router_dev(&w),
    };
    assert!(lost.tags.contains(&Tag::nat_return(NatKind::Snat, &ret)));
}

#[test]
fn ports_are_unique_per_destination_only() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, v2) = (w.v1, w.v2);
    let a = run(&mut w, v1, &tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    let b = run(&mut w, v2, &tcp_out("10.0.0.12", VM2, 40000, "198.51.100.7"));
    let (pa, pb) = (l4_src(&a).expect("a"), l4_src(&b).expect("b"));
    assert_ne!(pa, pb, "two inside hosts to one destination share no port");

    // With a single port, the second host gets it only towards another
    // destination.
    let mut w = gateway(vec![target(1024, 1024)], vec![], true);
    let (v1, v2) = (w.v1, w.v2);
    let a = run(&mut w, v1, &tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    assert_eq!(l4_src(&a), Some(1024));
    let same = run(&mut w, v2, &tcp_out("10.0.0.12", VM2, 40000, "198.51.100.7"));
    assert_eq!(drop_reason(&same), Some(DropReason::NatExhausted), "{}", same.render());
    let other = run(&mut w, v2, &tcp_out("10.0.0.12", VM2, 40000, "198.51.100.8"));
    assert_eq!(l4_src(&other), Some(1024), "{}", other.render());
    // The first connection keeps its port.
    let again = run(&mut w, v1, &tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    assert_eq!(l4_src(&again), Some(1024));
    assert!(!again.nat[0].created);
}

#[test]
fn need_block_drops_for_now_then_forwards_once_granted() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], false);
    let (v1, up) = (w.v1, w.up);
    let pkt = tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7");
    let first = run(&mut w, v1, &pkt);
    let Decision::Drop { reason, lifetime } = first.decision else { panic!("{}", first.render()) };
    assert_eq!((reason, lifetime), (DropReason::NatNeedBlock, DropLifetime::Temporary));
    let b = first.need_block.expect("the block to claim");
    assert_eq!(b, block(&w, 16));
    assert!(first.tags.contains(&Tag::snat_block(&b)), "invalidated when granted");
    assert!(first.nat.is_empty() && first.actions.is_empty());
    assert_eq!(w.flow.tables.borrow().nat.len(), 0, "nothing stored");

    // The agent claims it in the store; the same packet now forwards.
    w.flow.grant(b, NOW);
    let second = run(&mut w, v1, &pkt);
    forwarded_to(&second, up);
    assert!(second.need_block.is_none());
    assert!(second.nat[0].created);
    assert_eq!(w.flow.tables.borrow().nat.len(), 1);
}

#[test]
fn dnat_port_forward_and_its_return() {
    let mut w = port_forward();
    let (up, v3) = (w.up, w.v3);
    let pkt = format!(
        "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},tcp.src=5555,tcp.dst=8022"
    );
    let a = run(&mut w, up, &pkt);
    forwarded_to(&a, v3);
    let rw = rewrites(&a);
    assert!(rw.contains(&Action::SetIpv4Dst(ip("10.0.1.5"))), "{}", a.render());
    assert!(rw.contains(&Action::SetL4Dst(22)), "{}", a.render());
    assert_eq!(a.nat.len(), 1);
    assert_eq!(a.nat[0].key.kind, NatKind::Dnat);
    // The same connection again: the stored binding.
    let again = run(&mut w, up, &pkt);
    assert_eq!(again.actions, a.actions);
    assert!(!again.nat[0].created);

    let reply = format!(
        "eth.src={VM3},eth.dst={RP2},ip4.src=10.0.1.5,ip4.dst=198.51.100.7,tcp.src=22,tcp.dst=5555"
    );
    let b = run(&mut w, v3, &reply);
    forwarded_to(&b, up);
    let rw = rewrites(&b);
    assert!(rw.contains(&Action::SetIpv4Src(ip(PUB))), "{}", b.render());
    assert!(rw.contains(&Action::SetL4Src(8022)), "{}", b.render());
    assert_eq!(b.nat[0].key, a.nat[0].key);
}

fn ping(src: &str, smac: &str, id: u16, ty: u8) -> String {
    format!(
        "eth.src={smac},eth.dst={RP1},ip4.src={src},ip4.dst=198.51.100.7,icmp4.type={ty},icmp4.id={id}"
    )
}

#[test]
fn icmp_echo_ids_are_translated_both_ways() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, v2, up) = (w.v1, w.v2, w.up);
    let a = run(&mut w, v1, &ping("10.0.0.11", VM1, 7, 8));
    let b = run(&mut w, v2, &ping("10.0.0.12", VM2, 7, 8));
    forwarded_to(&a, up);
    let (ia, ib) = (icmp_id(&a).expect("id a"), icmp_id(&b).expect("id b"));
    assert_ne!(ia, ib, "same id, same destination, two hosts: two outside ids");
    assert!(a.mask.is_marked(FieldId::IcmpId));
    assert_eq!(a.nat[0].key.conn.src_port, 7);

    let reply = format!(
        "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},icmp4.type=0,icmp4.id={ib}"
    );
    let back = run(&mut w, up, &reply);
    forwarded_to(&back, v2);
    let rw = rewrites(&back);
    assert!(rw.contains(&Action::SetIpv4Dst(ip("10.0.0.12"))), "{}", back.render());
    assert!(rw.contains(&Action::SetIcmpId(7)), "{}", back.render());
}

/// The frame of an ICMP error of `ty`/`code` from `from` to `to` about the
/// datagram `about` describes.
fn icmp_error_frame(from: &str, to: &str, ty: u8, about: &str) -> Vec<u8> {
    let (_, orig) = packet(about);
    let kind = match ty {
        11 => midonet_wire::IcmpError::TtlExceeded,
        _ => midonet_wire::IcmpError::HostUnreachable,
    };
    let mut f = Vec::new();
    midonet_wire::icmpv4_error(&mut f, kind, mac(GW).0, mac(UP).0, ip(from), &orig[14..])
        .expect("error frame");
    // icmpv4_error addresses it to the quote's source: the public address.
    assert_eq!(&f[30..34], &ip(to).octets());
    f
}

#[test]
fn icmp_time_exceeded_from_outside_reaches_the_inside_host_translated() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, up) = (w.v1, w.up);
    let udp = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,udp.src=5000,udp.dst=53";
    let out = run(&mut w, v1, udp);
    forwarded_to(&out, up);
    let port = l4_src(&out).expect("port");

    // A router on the way says time exceeded, quoting the packet as it
    // left us (translated).
    let quoted = format!(
        "eth.src={UP},eth.dst={GW},ip4.src={PUB},ip4.dst=8.8.8.8,ip.ttl=1,udp.src={port},udp.dst=53"
    );
    let frame = icmp_error_frame("203.0.113.1", PUB, 11, &quoted);
    let key = FlowKey::extract(&frame, InPort::Port(0)).expect("parses");
    assert_eq!(key.icmp_type, 11);
    let snap = Snapshot::build(&w.t.topo);
    let input = SimInput {
        ingress: up,
        key,
        frame: &frame,
        now: NOW,
        hash_seed: 42,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    let r = simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input);
    assert_eq!(r.decision, Decision::Consumed, "{}", r.render());
    assert!(r.uncacheable);
    assert!(r.actions.is_empty(), "nothing to install");
    assert_eq!(r.generated.len(), 1, "{}", r.render());
    let g = &r.generated[0];
    assert_eq!(g.kind, GenKind::IcmpError { icmp_type: 11, code: 0 });
    assert_eq!(g.target, GenTarget::Emit(v1));
    let k = FlowKey::extract(&g.frame, InPort::Port(0)).expect("parses");
    assert_eq!((k.ipv4_src, k.ipv4_dst), (ip("203.0.113.1"), ip("10.0.0.11")));
    assert_eq!((k.eth_src, k.eth_dst), (mac(RP1), mac(VM1)));
    assert_eq!(k.ip_ttl, 63, "routed: ttl decremented");
    // The quote shows the inside host's own packet, checksums valid.
    let f = &g.frame;
    let quote = &f[42..];
    assert_eq!(&quote[12..16], &ip("10.0.0.11").octets());
    assert_eq!(&quote[16..20], &ip("8.8.8.8").octets());
    assert_eq!(u16::from_be_bytes([quote[20], quote[21]]), 5000);
    use midonet_wire::checksum::checksum;
    assert_eq!(checksum(&f[14..34]), 0, "outer ip checksum");
    assert_eq!(checksum(&f[34..]), 0, "icmp checksum");
    assert_eq!(checksum(&quote[..20]), 0, "quoted ip checksum");
    assert_eq!(r.nat.len(), 1);
    assert!(!r.nat[0].created);
    assert!(r.trace.iter().any(|s| matches!(s, TraceStep::Nat { reverse: true, .. })));

    // About a connection we have no binding for: not translated.
    let stray = quoted.replace(&format!("udp.src={port}"), "udp.src=9");
    let frame = icmp_error_frame("203.0.113.1", PUB, 11, &stray);
    let key = FlowKey::extract(&frame, InPort::Port(0)).expect("parses");
    let input = SimInput {
        ingress: up,
        key,
        frame: &frame,
        now: NOW,
        hash_seed: 42,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    let r = simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input);
    assert!(r.generated.is_empty() && r.nat.is_empty(), "{}", r.render());
}

#[test]
fn icmp_error_about_a_dnat_connection_from_the_backend() {
    // Outside client → PUB:8022 DNAT to 10.0.1.5:22; the backend answers
    // port unreachable: it leaves from the address the client spoke to,
    // quoting the client's packet to that address.
    let mut w = W::std();
    w.with_default();
    w.gw_arp();
    let fwd = nat_rule(
        RuleType::Dnat,
        Condition {
            nw_dst_address: Some(ip(PUB).into()),
            nw_dst_length: Some(32),
            ..Default::default()
        },
        vec![NatTarget {
            address_from: ip("10.0.1.5"),
            address_to: ip("10.0.1.5"),
            port_from: 22,
            port_to: 22,
        }],
    );
    let rev = nat_rule(RuleType::RevDnat, Condition::default(), vec![]);
    let (inn, out) = (w.chain("r-in", vec![fwd]), w.chain("r-out", vec![rev]));
    let r = w.r;
    w.t.edit_router(r, |x| {
        x.inbound_filter_id = Some(inn);
        x.outbound_filter_id = Some(out);
    });
    let (up, v3) = (w.up, w.v3);
    let udp = format!(
        "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},udp.src=5555,udp.dst=8022"
    );
    forwarded_to(&run(&mut w, up, &udp), v3);
    let quoted = format!(
        "eth.src={RP2},eth.dst={VM3},ip4.src=198.51.100.7,ip4.dst=10.0.1.5,udp.src=5555,udp.dst=22"
    );
    let (_, orig) = packet(&quoted);
    let mut frame = Vec::new();
    midonet_wire::icmpv4_error(
        &mut frame,
        midonet_wire::IcmpError::HostUnreachable,
        mac(VM3).0,
        mac(RP2).0,
        ip("10.0.1.5"),
        &orig[14..],
    )
    .expect("frame");
    let key = FlowKey::extract(&frame, InPort::Port(0)).expect("parses");
    let snap = Snapshot::build(&w.t.topo);
    let input = SimInput {
        ingress: v3,
        key,
        frame: &frame,
        now: NOW,
        hash_seed: 42,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    let r = simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input);
    assert_eq!(r.generated.len(), 1, "{}", r.render());
    assert_eq!(r.generated[0].target, GenTarget::Emit(up));
    let f = &r.generated[0].frame;
    let k = FlowKey::extract(f, InPort::Port(0)).expect("parses");
    assert_eq!((k.ipv4_src, k.ipv4_dst), (ip(PUB), ip("198.51.100.7")));
    let quote = &f[42..];
    assert_eq!(&quote[16..20], &ip(PUB).octets(), "{}", r.render());
    assert_eq!(u16::from_be_bytes([quote[22], quote[23]]), 8022);
    use midonet_wire::checksum::checksum;
    assert_eq!(checksum(&f[34..]), 0, "icmp checksum");
}

#[test]
fn mirror_copies_neither_allocate_nor_record() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    // Mirror what enters v1 into b1's router link: the copy is routed and
    // meets the SNAT rule before the original does.
    let (v1, up, bi1) = (w.v1, w.up, w.bi1);
    let m = w.t.mirror(bi1, vec![]);
    w.t.edit_port(v1, |p| p.inbound_mirror_ids = vec![m]);
    let snap = Snapshot::build(&w.t.topo);
    let (key, frame) = packet(&tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    let input = SimInput {
        ingress: v1,
        key,
        frame: &frame,
        now: NOW,
        hash_seed: 42,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    let r = simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input);
    assert_eq!(r.out_ports().collect::<Vec<_>>(), vec![up, up], "{}", r.render());
    assert!(
        r.trace
            .iter()
            .any(|s| matches!(s, TraceStep::Nat { result, .. } if result.contains("mirror copy"))),
        "{}",
        r.render()
    );
    // The copy left first, untranslated; only the original made (and
    // recorded) a binding.
    assert!(matches!(r.actions[3], SimAction::ToPort(_)), "{}", r.render());
    assert_eq!(r.nat.len(), 1, "{}", r.render());
    assert_eq!(w.flow.tables.borrow().nat.len(), 1);
    // Once the binding exists the copy uses it too (and records nothing);
    // the first flow carried the binding's tag, so it is simulated again.
    assert!(r.tags.contains(&Tag::nat(&r.nat[0].key)));
    let again = simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input);
    let snat = SimAction::Rewrite(Action::SetIpv4Src(ip(PUB)));
    assert_eq!(again.actions.iter().filter(|a| **a == snat).count(), 1, "{}", again.render());
    assert!(!matches!(again.actions[3], SimAction::ToPort(_)), "{}", again.render());
    assert_eq!(again.nat.len(), 1);
    assert_eq!(w.flow.tables.borrow().nat.len(), 1);
}

#[test]
fn no_flow_state_view_still_simulates() {
    // NoConntrack: DNAT picks (nothing stored), SNAT asks for a block.
    let mut w = gateway(vec![target(1024, 1087)], vec![], false);
    let snap = Snapshot::build(&w.t.topo);
    let (key, frame) = packet(&tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    let input = SimInput {
        ingress: w.v1,
        key,
        frame: &frame,
        now: NOW,
        hash_seed: 42,
        trace: false,
        generated: false,
        split_reverse_nat: false,
    };
    let r = simulate(&snap, &w.state, &NoConntrack, &mut w.icmp, &input);
    assert_eq!(drop_reason(&r), Some(DropReason::NatNeedBlock));
    assert!(r.need_block.is_some());
}

// ------------------------------------------------- flows split at a reverse NAT

/// One simulation of `key`/`frame` at `ingress`, splits asked for or not,
/// traced and untraced (which must agree, split included).
fn sim_flag(w: &mut W, ingress: PortId, key: FlowKey, frame: &[u8], split: bool) -> SimResult {
    let snap = Snapshot::build(&w.t.topo);
    let input = SimInput {
        ingress,
        key,
        frame,
        now: NOW,
        hash_seed: 42,
        trace: true,
        generated: false,
        split_reverse_nat: split,
    };
    let traced = simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input);
    let plain =
        simulate(&snap, &w.state, &w.flow, &mut w.icmp, &SimInput { trace: false, ..input });
    assert_eq!(traced.decision, plain.decision, "trace changes the decision");
    assert_eq!(traced.actions, plain.actions, "trace changes the actions");
    assert_eq!(traced.mask, plain.mask, "trace changes the mask");
    assert_eq!(traced.tags, plain.tags, "trace changes the tags");
    assert_eq!(traced.split, plain.split, "trace changes the split");
    traced
}

/// `desc` simulated without and with splits: (unsplit, split).
fn both(w: &mut W, ingress: PortId, desc: &str) -> (SimResult, SimResult) {
    let (key, frame) = packet(desc);
    let old = sim_flag(w, ingress, key, &frame, false);
    let new = sim_flag(w, ingress, key, &frame, true);
    assert!(old.split.is_none(), "no split unless asked for");
    (old, new)
}

/// Everything in two results is the same.
fn same_result(a: &SimResult, b: &SimResult) {
    let ctx = format!("--- unsplit\n{}--- with splits asked for\n{}", a.render(), b.render());
    assert_eq!(a.decision, b.decision, "{ctx}");
    assert_eq!(a.actions, b.actions, "{ctx}");
    assert_eq!(a.mask, b.mask, "{ctx}");
    assert_eq!(a.key, b.key, "{ctx}");
    assert_eq!(a.tags, b.tags, "{ctx}");
    assert_eq!(a.generated, b.generated, "{ctx}");
    assert_eq!(a.state_writes, b.state_writes, "{ctx}");
    assert_eq!(a.conntrack, b.conntrack, "{ctx}");
    assert_eq!(a.nat, b.nat, "{ctx}");
    assert_eq!(a.need_block, b.need_block, "{ctx}");
    assert_eq!(a.trace, b.trace, "{ctx}");
    assert_eq!(a.uncacheable, b.uncacheable, "{ctx}");
    assert_eq!(a.anomalies, b.anomalies, "{ctx}");
    assert_eq!(a.split, b.split, "{ctx}");
}

/// The frames `acts` emit for `frame`, port by port.
fn emitted(frame: &[u8], acts: &[SimAction]) -> Vec<(PortId, Vec<u8>)> {
    let mut f = frame.to_vec();
    let mut out = Vec::new();
    for a in acts {
        match a {
            SimAction::Rewrite(x) => midonet_flow::apply_action(&mut f, x).expect("rewrites"),
            SimAction::ToPort(p) => out.push((*p, f.clone())),
        }
    }
    out
}

/// `new` (splits asked for) is a split of `old` (the same packet, `frame`,
/// unsplit), and executing its two halves does to the packet exactly what
/// `old` does. Returns the split.
fn check_split(old: &SimResult, new: &SimResult, frame: &[u8]) -> Split {
    let sp = new.split.clone().unwrap_or_else(|| panic!("no split:\n{}", new.render()));
    assert_eq!(new.decision, Decision::Forward);
    assert_eq!(new.decision, old.decision);
    assert_eq!((new.key, new.nat.clone()), (old.key, old.nat.clone()), "key and bindings as today");
    // The first half: translate. The packet then has the second half's key.
    let restore: Vec<SimAction> = sp.restore.iter().copied().map(SimAction::Rewrite).collect();
    let mut translated = frame.to_vec();
    assert!(emitted(frame, &restore).is_empty());
    for a in sp.restore.iter() {
        midonet_flow::apply_action(&mut translated, a).expect("restore");
    }
    let tkey = FlowKey::extract(&translated, new.key.in_port).expect("re-keys");
    assert_eq!(tkey, sp.key, "the second half's key is the translated packet's");
    // The second half on the translated packet: what the unsplit flow emits.
    let want = emitted(frame, &old.actions);
    assert_eq!(emitted(&translated, &new.actions), want, "{}\n{}", old.render(), new.render());
    assert_eq!(emitted(frame, &new.unsplit_actions()), want);
    // The same actions, the restored fields' first.
    let mut a = new.unsplit_actions();
    let mut b = old.actions.clone();
    a.sort_by_key(|x| format!("{x:?}"));
    b.sort_by_key(|x| format!("{x:?}"));
    assert_eq!(a, b);
    // Masks: both halves read no more than the unsplit flow (the first
    // also needs what the datapath's lookup needs).
    let mut whole = old.mask;
    whole.union(&new.mask);
    assert_eq!(whole, old.mask, "the second half reads nothing new");
    let mut lookup = old.mask;
    for f in [FieldId::EthType, FieldId::IpProto, FieldId::IpFrag] {
        assert!(sp.mask.is_marked(f), "{f:?}");
        lookup.mark(f);
    }
    whole = lookup;
    whole.union(&sp.mask);
    assert_eq!(whole, lookup, "the first half reads nothing new");
    assert!(sp.mask.is_marked(FieldId::InPort) && new.mask.is_marked(FieldId::InPort));
    // Tags: every tag but the lookup's two (and a conntrack lookup's after
    // it), on the second half; those before the lookup on the first.
    let n = &old.nat[0];
    let ret = n.key.return_key(n.binding);
    let mut conn_tags = vec![Tag::nat(&n.key), Tag::nat_return(n.key.kind, &ret)];
    conn_tags.extend(sp.conntrack.map(|c| Tag::conntrack(&c)));
    for &t in &conn_tags {
        assert!(old.tags.contains(&t));
        assert!(!new.tags.contains(&t) && !sp.tags.contains(&t), "per-connection tag {t}");
    }
    let mut all = new.tags.clone();
    all.extend(conn_tags);
    all.sort_unstable();
    assert_eq!(all, old.tags);
    assert!(sp.tags.iter().all(|t| new.tags.contains(t)));
    assert!(sp.tags.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    sp
}

fn reply_to(port: u16, sport: u16, proto: &str) -> String {
    format!(
        "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},{proto}.src={sport},{proto}.dst={port}"
    )
}

#[test]
fn snat_replies_split_at_the_reverse_rule() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, v2, up) = (w.v1, w.v2, w.up);
    // Three connections: two from VM1, one from VM2 (same subnet).
    let conns = [
        ("10.0.0.11", VM1, v1, 40000),
        ("10.0.0.11", VM1, v1, 40001),
        ("10.0.0.12", VM2, v2, 40000),
    ];
    let mut splits = Vec::new();
    for (src, smac, port, sport) in conns {
        let out = run(&mut w, port, &tcp_out(src, smac, sport, "198.51.100.7"));
        forwarded_to(&out, up);
        let nat_port = l4_src(&out).expect("translated");
        let desc = reply_to(nat_port, 443, "tcp");
        let (old, new) = both(&mut w, up, &desc);
        forwarded_to(&old, port);
        let sp = check_split(&old, &new, &packet(&desc).1);
        assert_eq!(sp.kind, NatKind::Snat);
        assert_eq!(sp.tracker, router_dev(&w));
        assert_eq!(
            sp.restore.as_slice(),
            &[Action::SetIpv4Dst(ip(src)), Action::SetL4Dst(sport)],
            "{}",
            new.render()
        );
        assert_eq!((sp.key.ipv4_dst, sp.key.l4_dst), (ip(src), sport), "the inside address");
        assert_eq!(FlowKey { ipv4_dst: ip(PUB), l4_dst: nat_port, ..sp.key }, new.key);
        // The first half reads neither the ports nor the remote address.
        for f in [FieldId::L4Src, FieldId::L4Dst, FieldId::Ipv4Src, FieldId::TcpFlags] {
            assert!(!sp.mask.is_marked(f), "{f:?} in the first half:\n{}", new.render());
        }
        // The second half neither: it is per inside host.
        for f in [FieldId::L4Src, FieldId::L4Dst, FieldId::Ipv4Src] {
            assert!(!new.mask.is_marked(f), "{f:?} in the second half:\n{}", new.render());
        }
        assert!(new.render().contains("split: rev_snat"), "{}", new.render());
        splits.push((new, sp));
    }
    // One first half for every reply; one second half per inside host.
    let (a, sa) = &splits[0];
    for (r, s) in &splits[1..] {
        assert_eq!((s.mask, &s.tags, s.kind, s.tracker), (sa.mask, &sa.tags, sa.kind, sa.tracker));
        assert_eq!(s.mask.apply(&r.key), sa.mask.apply(&a.key), "one first-half flow");
    }
    let (b, sb) = &splits[1];
    assert_eq!((b.mask, &b.actions, &b.tags), (a.mask, &a.actions, &a.tags));
    assert_eq!(b.mask.apply(&sb.key), a.mask.apply(&sa.key), "VM1's connections share one");
    let (c, sc) = &splits[2];
    assert_ne!(c.mask.apply(&sc.key), a.mask.apply(&sa.key), "VM2 has its own");
}

#[test]
fn udp_replies_split_too() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, up) = (w.v1, w.up);
    let udp = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=198.51.100.7,udp.src=5000,udp.dst=53";
    let out = run(&mut w, v1, udp);
    forwarded_to(&out, up);
    let port = l4_src(&out).expect("port");
    let desc = reply_to(port, 53, "udp");
    let (old, new) = both(&mut w, up, &desc);
    forwarded_to(&old, v1);
    let sp = check_split(&old, &new, &packet(&desc).1);
    assert_eq!(sp.kind, NatKind::Snat);
    assert_eq!((sp.key.ipv4_dst, sp.key.l4_dst, sp.key.ip_proto), (ip("10.0.0.11"), 5000, 17));
}

/// PUB:8022 forwarded to VM3 (10.0.1.5:22): dnat on the router's inbound
/// chain, rev_dnat on its outbound chain.
fn port_forward() -> W {
    let mut w = W::std();
    w.with_default();
    w.gw_arp();
    let fwd = nat_rule(
        RuleType::Dnat,
        Condition {
            nw_dst_address: Some(ip(PUB).into()),
            nw_dst_length: Some(32),
            nw_proto: Some(6),
            tp_dst: Some(PortRange { start: 8022, end: 8022 }),
            ..Default::default()
        },
        vec![NatTarget {
            address_from: ip("10.0.1.5"),
            address_to: ip("10.0.1.5"),
            port_from: 22,
            port_to: 22,
        }],
    );
    let rev = nat_rule(RuleType::RevDnat, Condition::default(), vec![]);
    let inn = w.chain("r-in", vec![fwd]);
    let out = w.chain("r-out", vec![rev]);
    let r = w.r;
    w.t.edit_router(r, |x| {
        x.inbound_filter_id = Some(inn);
        x.outbound_filter_id = Some(out);
    });
    w
}

#[test]
fn dnat_replies_split_restoring_the_source() {
    let mut w = port_forward();
    let (up, v3) = (w.up, w.v3);
    for client_port in [5555, 5556] {
        let pkt = format!(
            "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},tcp.src={client_port},tcp.dst=8022"
        );
        forwarded_to(&run(&mut w, up, &pkt), v3);
        let reply = format!(
            "eth.src={VM3},eth.dst={RP2},ip4.src=10.0.1.5,ip4.dst=198.51.100.7,tcp.src=22,tcp.dst={client_port}"
        );
        let (old, new) = both(&mut w, v3, &reply);
        forwarded_to(&old, up);
        let sp = check_split(&old, &new, &packet(&reply).1);
        assert_eq!(sp.kind, NatKind::Dnat);
        assert_eq!(sp.tracker, router_dev(&w));
        assert_eq!(sp.restore.as_slice(), &[Action::SetIpv4Src(ip(PUB)), Action::SetL4Src(8022)]);
        assert_eq!((sp.key.ipv4_src, sp.key.l4_src), (ip(PUB), 8022));
        for f in [FieldId::L4Src, FieldId::L4Dst] {
            assert!(!sp.mask.is_marked(f), "{f:?} in the first half:\n{}", new.render());
            assert!(!new.mask.is_marked(f), "{f:?} in the second half:\n{}", new.render());
        }
        // The TTL was decremented before the split: the second half sets it.
        assert!(sp.mask.is_marked(FieldId::IpTtl));
        assert!(new.actions.contains(&SimAction::Rewrite(Action::SetTtl(63))), "{}", new.render());
    }
}

#[test]
fn what_does_not_split() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, v2, up) = (w.v1, w.v2, w.up);

    // A TCP reply splits, but not when splits are not asked for.
    let out = run(&mut w, v1, &tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    let tcp = reply_to(l4_src(&out).expect("port"), 443, "tcp");
    let (key, frame) = packet(&tcp);
    assert!(sim_flag(&mut w, up, key, &frame, false).split.is_none());
    assert!(sim_flag(&mut w, up, key, &frame, true).split.is_some());

    // An ICMP echo reply.
    let out = run(&mut w, v1, &ping("10.0.0.11", VM1, 7, 8));
    let id = icmp_id(&out).expect("id");
    let echo = format!(
        "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},icmp4.type=0,icmp4.id={id}"
    );
    let (old, new) = both(&mut w, up, &echo);
    forwarded_to(&old, v1);
    same_result(&old, &new);

    // An ICMP error about a translated UDP datagram.
    let udp = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,udp.src=5000,udp.dst=53";
    let port = l4_src(&run(&mut w, v1, udp)).expect("port");
    let quoted = format!(
        "eth.src={UP},eth.dst={GW},ip4.src={PUB},ip4.dst=8.8.8.8,ip.ttl=1,udp.src={port},udp.dst=53"
    );
    let frame = icmp_error_frame("203.0.113.1", PUB, 11, &quoted);
    let key = FlowKey::extract(&frame, InPort::Port(0)).expect("parses");
    let old = sim_flag(&mut w, up, key, &frame, false);
    let new = sim_flag(&mut w, up, key, &frame, true);
    assert_eq!(old.generated.len(), 1, "{}", old.render());
    same_result(&old, &new);

    // A reply to an inside host whose MAC the bridge does not know: the
    // bridge floods (a fork after the split point).
    w.state.router_arp.insert((w.r, ip("10.0.0.13")), mac("02:00:00:00:00:07"));
    let out = run(&mut w, v2, &tcp_out("10.0.0.13", "02:00:00:00:00:07", 40000, "198.51.100.7"));
    let flood = reply_to(l4_src(&out).expect("port"), 443, "tcp");
    let (old, new) = both(&mut w, up, &flood);
    assert_eq!(old.out_ports().count(), 2, "{}", old.render());
    same_result(&old, &new);
}

#[test]
fn a_conntrack_rule_after_the_reverse_nat_splits_only_when_it_finds_the_connection() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, up) = (w.v1, w.up);
    let out = run(&mut w, v1, &tcp_out("10.0.0.11", VM1, 40000, "198.51.100.7"));
    let desc = reply_to(l4_src(&out).expect("port"), 443, "tcp");
    let (old, new) = both(&mut w, up, &desc);
    check_split(&old, &new, &packet(&desc).1);

    // VM1's port accepts return flows on the way to it: the reply's second
    // half would depend on its connection.
    let accept_return = Rule {
        rule_type: RuleType::Accept,
        condition: Condition { match_return_flow: true, ..Default::default() },
        ..Default::default()
    };
    let to_vm = w.chain("sg-out", vec![accept_return]);
    w.t.edit_port(v1, |p| p.outbound_filter_id = Some(to_vm));
    let (old, new) = both(&mut w, up, &desc);
    forwarded_to(&old, v1);
    assert!(old.trace.iter().any(|s| matches!(s, TraceStep::Conntrack { ret: false, .. })));
    same_result(&old, &new);
    // The unsplit mask: the connection's fields, read by the lookup.
    for f in [FieldId::L4Src, FieldId::L4Dst] {
        assert!(new.mask.is_marked(f));
    }
    // Tracked, the reply is return traffic and records nothing. The lookup
    // was of the reply as it entered, at the uplink's device (the first
    // half's), so the split holds and the datapath is asked to find the
    // same connection tracked.
    let k = midonet_state::ConnKey::from_flow(&packet(&desc).0, router_dev(&w)).expect("tcp");
    w.flow.tables.borrow_mut().conns.track(k.reversed(), 0, NOW).expect("room");
    let (old, new) = both(&mut w, up, &desc);
    forwarded_to(&old, v1);
    assert!(old.trace.iter().any(|s| matches!(s, TraceStep::Conntrack { ret: true, .. })));
    assert!(old.conntrack.is_empty() && new.conntrack.is_empty());
    let sp = check_split(&old, &new, &packet(&desc).1);
    assert_eq!(sp.conntrack, Some(k.reversed()), "{}", new.render());
    // Neither half is per connection: the datapath checks the connection.
    for f in [FieldId::L4Src, FieldId::L4Dst, FieldId::Ipv4Src] {
        assert!(!new.mask.is_marked(f), "{f:?} in the second half:\n{}", new.render());
        assert!(!sp.mask.is_marked(f), "{f:?} in the first half:\n{}", new.render());
    }
    // A second connection of VM1 shares both halves.
    let out2 = run(&mut w, v1, &tcp_out("10.0.0.11", VM1, 40001, "198.51.100.7"));
    let desc2 = reply_to(l4_src(&out2).expect("port"), 443, "tcp");
    let k2 = midonet_state::ConnKey::from_flow(&packet(&desc2).0, router_dev(&w)).expect("tcp");
    w.flow.tables.borrow_mut().conns.track(k2.reversed(), 0, NOW).expect("room");
    let (old2, new2) = both(&mut w, up, &desc2);
    let sp2 = check_split(&old2, &new2, &packet(&desc2).1);
    assert_eq!(sp2.conntrack, Some(k2.reversed()));
    assert_eq!(sp2.mask.apply(&new2.key), sp.mask.apply(&new.key), "one first half");
    assert_eq!((new2.mask, &new2.actions, &new2.tags), (new.mask, &new.actions, &new.tags));
}

#[test]
fn many_replies_split_and_do_what_the_unsplit_flow_does() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, v2, up) = (w.v1, w.v2, w.up);
    // A small deterministic generator (no RNG dependency).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut first: Option<(SimResult, Split)> = None;
    for _ in 0..60 {
        let r = next();
        let (src, smac, port) =
            if r & 1 == 0 { ("10.0.0.11", VM1, v1) } else { ("10.0.0.12", VM2, v2) };
        let sport = 10000 + (r >> 8) as u16 % 50000;
        let dst = format!("198.51.100.{}", 1 + (r >> 32) % 200);
        let dport = [53u16, 80, 443, 8080][((r >> 40) % 4) as usize];
        let proto = if (r >> 48) & 1 == 0 { "tcp" } else { "udp" };
        let out_desc = format!(
            "eth.src={smac},eth.dst={RP1},ip4.src={src},ip4.dst={dst},{proto}.src={sport},{proto}.dst={dport}"
        );
        let out = run(&mut w, port, &out_desc);
        if out.decision != Decision::Forward {
            continue; // the block is full: not this test's business
        }
        let nat_port = l4_src(&out).expect("translated");
        let desc = format!(
            "eth.src={GW},eth.dst={UP},ip4.src={dst},ip4.dst={PUB},{proto}.src={dport},{proto}.dst={nat_port}"
        );
        let (old, new) = both(&mut w, up, &desc);
        forwarded_to(&old, port);
        let sp = check_split(&old, &new, &packet(&desc).1);
        assert_eq!((sp.key.ipv4_dst, sp.key.l4_dst), (ip(src), sport));
        match &first {
            None => first = Some((new, sp)),
            Some((f, fs)) => {
                assert_eq!((sp.mask, &sp.tags), (fs.mask, &fs.tags));
                if proto_of(f) == proto_of(&new) {
                    assert_eq!(sp.mask.apply(&new.key), fs.mask.apply(&f.key), "one first half");
                }
            }
        }
    }
    assert!(first.is_some());
}

fn proto_of(r: &SimResult) -> u8 {
    r.key.ip_proto
}

/// A fragmented datagram at a NAT rule: its first fragment is translated
/// like a whole one, a later fragment (no ports) skips the rule; neither
/// may become a flow, which would apply one datagram's translation to the
/// next's fragments (the agent follows a datagram's first fragment).
#[test]
fn fragments_at_a_nat_rule_are_never_flows() {
    let mut w = gateway(vec![target(1024, 1087)], vec![], true);
    let (v1, up) = (w.v1, w.up);
    let first = format!(
        "eth.src={VM1},eth.dst={RP1},ip4.src=10.0.0.11,ip4.dst=198.51.100.7,ip.frag=first,udp.src=5000,udp.dst=53"
    );
    let out = run(&mut w, v1, &first);
    forwarded_to(&out, up);
    let port = l4_src(&out).expect("the first fragment is translated");
    assert!(rewrites(&out).contains(&Action::SetIpv4Src(ip(PUB))));
    assert!(out.uncacheable, "no flow for a fragment: {}", out.render());
    let later = format!(
        "eth.src={VM1},eth.dst={RP1},ip4.src=10.0.0.11,ip4.dst=198.51.100.7,ip.proto=17,ip.frag=later"
    );
    let rest = run(&mut w, v1, &later);
    assert!(rest.uncacheable, "{}", rest.render());
    assert!(rest.nat.is_empty(), "a later fragment has no ports to translate");
    assert!(!rewrites(&rest).contains(&Action::SetIpv4Src(ip(PUB))), "{}", rest.render());
    // The reply's first fragment is reverse-translated, and not split.
    let reply = format!(
        "eth.src={GW},eth.dst={UP},ip4.src=198.51.100.7,ip4.dst={PUB},ip.frag=first,udp.src=53,udp.dst={port}"
    );
    let back = run(&mut w, up, &reply);
    forwarded_to(&back, v1);
    assert!(rewrites(&back).contains(&Action::SetIpv4Dst(ip("10.0.0.11"))), "{}", back.render());
    assert!(back.uncacheable && back.split.is_none(), "{}", back.render());
    // A whole datagram of the same connection is a flow as before.
    let whole = first.replace(",ip.frag=first", "");
    assert!(!run(&mut w, v1, &whole).uncacheable);
}
