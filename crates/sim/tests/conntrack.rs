//! Connection tracking (`matchForwardFlow` / `matchReturnFlow`) as MidoNet
//! does it (reference §2.11): the security-group pattern, which device
//! tracks, laziness, tags, expiry, generated packets.
//!
//! The chains are the ones Neutron's translation gives a VM port: on the
//! way in from the VM "accept return flows, then accept" (so the forward
//! packet asks, and its connection is recorded), on the way out to the VM
//! "accept return flows, then drop".

mod common;

use std::time::Duration;

use common::*;
use midonet_model::*;
use midonet_sim::*;
use midonet_state::{ConnKey, ConnTable, ConntrackCfg, TrackerId};

const NOW: Duration = Duration::from_secs(1000);

fn accept_return() -> Rule {
    Rule {
        rule_type: RuleType::Accept,
        condition: Condition { match_return_flow: true, ..Default::default() },
        ..Default::default()
    }
}

fn literal(t: RuleType) -> Rule {
    Rule { rule_type: t, ..Default::default() }
}

/// The reference world with security-group chains on v1 and a default
/// route out of the uplink (whose gateway's MAC is known).
fn sg_world() -> W {
    let mut w = W::std();
    w.with_default();
    w.gw_arp();
    let from_vm = w.chain("sg-in", vec![accept_return(), literal(RuleType::Accept)]);
    let to_vm = w.chain("sg-out", vec![accept_return(), literal(RuleType::Drop)]);
    let v1 = w.v1;
    w.t.edit_port(v1, |p| {
        p.inbound_filter_id = Some(from_vm);
        p.outbound_filter_id = Some(to_vm);
    });
    // v1 and v2 are known on b1, so nothing floods.
    let b1 = w.b1;
    let (v2, rp1) = (w.v2, w.rp1);
    w.learn(b1, 0, VM1, v1);
    w.learn(b1, 0, VM2, v2);
    w.learn(b1, 0, RP1, rp1);
    w.state.router_arp.insert((w.r, "10.0.0.11".parse().expect("ip")), mac(VM1));
    w
}

fn sim_ct(w: &mut W, ct: &ConnTable, ingress: PortId, desc: &str, now: Duration) -> SimResult {
    let snap = Snapshot::build(&w.t.topo);
    let (key, frame) = packet(desc);
    let input = SimInput {
        ingress,
        key,
        frame: &frame,
        now,
        hash_seed: 42,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    let traced = simulate(&snap, &w.state, ct, &mut w.icmp, &input);
    let plain = simulate(&snap, &w.state, ct, &mut w.icmp, &SimInput { trace: false, ..input });
    assert_eq!(traced.decision, plain.decision, "trace changes the decision");
    assert_eq!(traced.mask, plain.mask, "trace changes the mask");
    assert_eq!(traced.tags, plain.tags, "trace changes the tags");
    assert_eq!(traced.conntrack, plain.conntrack, "trace changes the conntrack writes");
    traced
}

fn table() -> ConnTable {
    ConnTable::new(ConntrackCfg::default(), 7)
}

/// Apply the simulation's conntrack writes, as the agent will.
fn apply(ct: &mut ConnTable, r: &SimResult, now: Duration) {
    for c in &r.conntrack {
        ct.track(c.key, c.tcp_flags, now).expect("room");
    }
}

fn dropped_by_rule(r: &SimResult) -> bool {
    matches!(r.decision, Decision::Drop { reason: DropReason::RuleDrop, .. })
}

const OUT_SYN: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=198.51.100.7,tcp.src=40000,tcp.dst=443,tcp.flags=syn";
const IN_SYNACK: &str = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.7,ip4.dst=10.0.0.11,tcp.src=443,tcp.dst=40000,tcp.flags=syn|ack";
const IN_NEW: &str = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.7,ip4.dst=10.0.0.11,tcp.src=443,tcp.dst=40001,tcp.flags=syn";

#[test]
fn security_group_lets_replies_in_and_drops_new_inbound() {
    let mut w = sg_world();
    let mut ct = table();
    let (v1, up) = (w.v1, w.up);

    // The VM opens a TCP connection to the outside.
    let out = sim_ct(&mut w, &ct, v1, OUT_SYN, NOW);
    assert_eq!(out.decision, Decision::Forward, "{}", out.render());
    assert_eq!(out.out_ports().collect::<Vec<_>>(), vec![up]);
    assert!(out.trace.iter().any(|s| matches!(s, TraceStep::Conntrack { ret: false, .. })));
    // The key recorded is the packet as it leaves, at the uplink's device
    // (the router), not at the bridge it entered.
    assert_eq!(out.conntrack.len(), 1);
    let fwd = out.conntrack[0].key;
    assert_eq!(fwd.tracker, TrackerId::from(w.r.cast::<Device>()));
    assert_eq!((fwd.src.to_string(), fwd.src_port), ("10.0.0.11".into(), 40000));
    assert_eq!((fwd.dst.to_string(), fwd.dst_port, fwd.proto), ("198.51.100.7".into(), 443, 6));
    assert_eq!(out.conntrack[0].tcp_flags & 0x02, 0x02, "the SYN's flags");

    // Before the state is applied, the reply is a forward flow and dropped;
    // its flow is tagged with the key whose arrival changes that.
    let early = sim_ct(&mut w, &ct, up, IN_SYNACK, NOW);
    assert!(dropped_by_rule(&early), "{}", early.render());
    assert!(early.tags.contains(&Tag::conntrack(&fwd)), "invalidated when the state lands");
    assert!(early.conntrack.is_empty(), "a dropped packet records nothing");

    apply(&mut ct, &out, NOW);
    let reply = sim_ct(&mut w, &ct, up, IN_SYNACK, NOW);
    assert_eq!(reply.decision, Decision::Forward, "{}", reply.render());
    assert_eq!(reply.out_ports().collect::<Vec<_>>(), vec![v1]);
    assert!(reply.conntrack.is_empty(), "a return flow records nothing");
    assert!(reply.tags.contains(&Tag::conntrack(&fwd)), "invalidated when the state goes");

    // A new connection from outside to the VM is dropped.
    let new = sim_ct(&mut w, &ct, up, IN_NEW, NOW);
    assert!(dropped_by_rule(&new), "{}", new.render());

    // The connection is recorded as the agent will install it: a reply
    // establishes it, and an idle TCP connection stays for days.
    ct.packet(&fwd.reversed(), 0x12, NOW).expect("tracked");
    let later = NOW + Duration::from_secs(3 * 24 * 3600);
    let idle = sim_ct(&mut w, &ct, up, IN_SYNACK, later);
    assert_eq!(idle.decision, Decision::Forward, "idle 3 days: {}", idle.render());
    // Once it expires (or is removed) the reply is a forward flow again.
    ct.remove(&fwd);
    assert!(dropped_by_rule(&sim_ct(&mut w, &ct, up, IN_SYNACK, later)));
}

#[test]
fn udp_and_icmp_echo_are_tracked_and_expire() {
    let mut w = sg_world();
    let mut ct = table();
    let (v1, up) = (w.v1, w.up);
    let out_udp = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=198.51.100.53,udp.src=5353,udp.dst=53";
    let in_udp = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.53,ip4.dst=10.0.0.11,udp.src=53,udp.dst=5353";
    let r = sim_ct(&mut w, &ct, v1, out_udp, NOW);
    apply(&mut ct, &r, NOW);
    assert_eq!(sim_ct(&mut w, &ct, up, in_udp, NOW).decision, Decision::Forward);
    // Unreplied UDP: 30 s.
    assert!(dropped_by_rule(&sim_ct(&mut w, &ct, up, in_udp, NOW + Duration::from_secs(30))));

    let ping = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=198.51.100.1,icmp4.type=8,icmp4.id=77";
    let pong = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.1,ip4.dst=10.0.0.11,icmp4.type=0,icmp4.id=77";
    let other = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.1,ip4.dst=10.0.0.11,icmp4.type=0,icmp4.id=78";
    let r = sim_ct(&mut w, &ct, v1, ping, NOW);
    assert_eq!(r.conntrack.len(), 1);
    assert_eq!((r.conntrack[0].key.src_port, r.conntrack[0].key.dst_port), (77, 77));
    apply(&mut ct, &r, NOW);
    assert_eq!(sim_ct(&mut w, &ct, up, pong, NOW).decision, Decision::Forward);
    assert!(dropped_by_rule(&sim_ct(&mut w, &ct, up, other, NOW)), "another echo id");
    // An unsolicited echo request to the VM is dropped. (With the VM's own
    // id 77 it would pass: as in MidoNet, the key holds the echo id, not
    // the type, so a request back with the same id looks like a reply.)
    let probe = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.1,ip4.dst=10.0.0.11,icmp4.type=8,icmp4.id=1";
    assert!(dropped_by_rule(&sim_ct(&mut w, &ct, up, probe, NOW)));
}

#[test]
fn conntrack_is_lazy_and_marks_the_five_tuple_only_when_asked() {
    // v2 has no chains: nothing asks.
    let mut w = sg_world();
    let ct = table();
    let (v2, v1) = (w.v2, w.v1);
    let to_v1 = "eth.src=02:00:00:00:00:02,eth.dst=02:00:00:00:00:01,ip4.src=10.0.0.12,ip4.dst=10.0.0.11,tcp.src=1,tcp.dst=2";
    let from_v1 = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,tcp.src=2,tcp.dst=1";
    // From v1 (asks) to v2 (a bridge port): recorded at the bridge.
    let r = sim_ct(&mut w, &ct, v1, from_v1, NOW);
    assert_eq!(r.decision, Decision::Forward);
    assert_eq!(r.conntrack.len(), 1);
    assert_eq!(r.conntrack[0].key.tracker, TrackerId::from(w.b1.cast::<Device>()));
    assert!(r.mask.is_marked(FieldId::L4Src) && r.mask.is_marked(FieldId::L4Dst));
    // A bridge with no chain on the path: no lookup, no record, ports not
    // in the mask. (v2 → v1 does ask: v1's outbound chain.)
    let mut plain = W::std();
    let (pv1, pv2, b1) = (plain.v1, plain.v2, plain.b1);
    plain.learn(b1, 0, VM1, pv1);
    let r = sim_ct(&mut plain, &ct, pv2, to_v1, NOW);
    assert_eq!(r.decision, Decision::Forward);
    assert!(r.conntrack.is_empty());
    assert!(!r.mask.is_marked(FieldId::L4Src), "{}", r.render());
    assert!(!r.trace.iter().any(|s| matches!(s, TraceStep::Conntrack { .. })));
    // Asked on the way to v1: the lookup happens, the drop rule applies.
    let r = sim_ct(&mut w, &ct, v2, to_v1, NOW);
    assert!(dropped_by_rule(&r));
    assert!(r.mask.is_marked(FieldId::L4Src));
}

#[test]
fn untracked_protocols_are_forward_flows_that_record_nothing() {
    let mut w = sg_world();
    let ct = table();
    let v1 = w.v1;
    let gre = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=198.51.100.7,ip.proto=47";
    let r = sim_ct(&mut w, &ct, v1, gre, NOW);
    assert_eq!(r.decision, Decision::Forward);
    assert!(r.conntrack.is_empty());
    // And inbound GRE is never a return flow.
    let up = w.up;
    let in_gre = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.7,ip4.dst=10.0.0.11,ip.proto=47";
    assert!(dropped_by_rule(&sim_ct(&mut w, &ct, up, in_gre, NOW)));
}

#[test]
fn router_generated_replies_count_as_return_flows() {
    // The router's outbound chain drops every forward flow; its own echo
    // reply still goes out (MidoNet treats generated packets as return).
    let mut w = sg_world();
    let ct = table();
    let drop_fwd = Rule {
        rule_type: RuleType::Drop,
        condition: Condition { match_forward_flow: true, ..Default::default() },
        ..Default::default()
    };
    let c = w.chain("fw", vec![drop_fwd]);
    let r = w.r;
    w.t.edit_router(r, |x| x.outbound_filter_id = Some(c));
    let v2 = w.v2;
    let ping_router = "eth.src=02:00:00:00:00:02,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.12,ip4.dst=10.0.0.1,icmp4.type=8,icmp4.id=5";
    w.state.router_arp.insert((r, "10.0.0.12".parse().expect("ip")), mac(VM2));
    let res = sim_ct(&mut w, &ct, v2, ping_router, NOW);
    assert_eq!(res.decision, Decision::Consumed, "{}", res.render());
    assert!(res.generated.iter().any(|g| g.kind == GenKind::IcmpEchoReply), "{}", res.render());
    // A forwarded packet through the same chain is dropped.
    let through = "eth.src=02:00:00:00:00:02,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.12,ip4.dst=198.51.100.9,udp.src=1,udp.dst=2";
    assert!(dropped_by_rule(&sim_ct(&mut w, &ct, v2, through, NOW)));
}

#[test]
fn mirror_copies_record_no_connections() {
    // The conntrack list is part of the fork's discarded state for copies:
    // a forward flow mirrored elsewhere records exactly one key.
    let mut w = sg_world();
    let ct = table();
    let (v1, v3) = (w.v1, w.v3);
    let m = w.t.mirror(v3, vec![Condition::default()]);
    w.t.edit_port(v1, |p| p.inbound_mirror_ids = vec![m]);
    let r = sim_ct(&mut w, &ct, v1, OUT_SYN, NOW);
    assert_eq!(r.conntrack.len(), 1, "{}", r.render());
    assert_eq!(r.conntrack[0].key.tracker, TrackerId::from(w.r.cast::<Device>()));
}

/// The tag of a key is what the agent invalidates when it tracks,
/// refreshes nothing, or expires that key.
#[test]
fn conntrack_tags_are_stable_per_key() {
    let t = TrackerId(uuid::Uuid::from_u128(1));
    let k = ConnKey {
        src: "10.0.0.1".parse().expect("ip"),
        dst: "10.0.0.2".parse().expect("ip"),
        src_port: 1,
        dst_port: 2,
        proto: 6,
        tracker: t,
    };
    assert_eq!(Tag::conntrack(&k), Tag::conntrack(&k.clone()));
    assert_ne!(Tag::conntrack(&k), Tag::conntrack(&k.reversed()));
    assert_ne!(Tag::conntrack(&k), Tag::conntrack(&ConnKey { proto: 17, ..k }));
}
