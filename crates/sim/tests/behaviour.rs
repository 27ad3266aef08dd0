//! Behaviour that takes more than one simulation: learning then unicast,
//! ARP pending then resolved, ECMP stability when members change, the ICMP
//! rate limit, tag-based invalidation, the router's forward and local
//! redirect chains, and MAC entries naming another bridge's port (issue 12).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use midonet_model::*;
use midonet_sim::*;

const TCP_1_2: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,tcp.src=40000,tcp.dst=80";
const TCP_2_1: &str = "eth.src=02:00:00:00:00:02,eth.dst=02:00:00:00:00:01,ip4.src=10.0.0.12,ip4.dst=10.0.0.11,tcp.src=80,tcp.dst=40000";

#[test]
fn learning_turns_a_flood_into_unicast_in_both_directions() {
    let mut w = W::std();
    let v2 = w.t.bridge_port(w.b1); // a third VM port so floods and unicast differ
    let snap = Snapshot::build(&w.t.topo);
    let mut icmp = IcmpRateLimiter::unlimited();
    let (k, f) = packet(TCP_1_2);
    let first = sim(&snap, &w.state, &mut icmp, w.v1, k, &f, false);
    assert_eq!(first.out_ports().collect::<Vec<_>>(), vec![w.v2, v2], "unknown: flood");
    for wr in &first.state_writes {
        w.state.apply(wr);
    }
    let (k, f) = packet(TCP_2_1);
    let back = sim(&snap, &w.state, &mut icmp, w.v2, k, &f, false);
    assert_eq!(back.out_ports().collect::<Vec<_>>(), vec![w.v1], "learned: unicast back");
    // The reverse flow depends on the entry the first packet wrote: a move
    // of VM1 must invalidate it.
    assert!(back.tags.contains(&first.state_writes[0].tag()));
    for wr in &back.state_writes {
        w.state.apply(wr);
    }
    let (k, f) = packet(TCP_1_2);
    let again = sim(&snap, &w.state, &mut icmp, w.v1, k, &f, false);
    assert_eq!(again.out_ports().collect::<Vec<_>>(), vec![w.v2]);
    assert!(again.state_writes.is_empty(), "nothing new to learn");
}

/// Issue 12: a MAC entry published for bridge b1 that names a port of
/// another bridge (another tenant's VM port v3 on b2), or no port at all,
/// must not steer b1's traffic there: b1 floods as for an unknown MAC, and
/// the simulation reports the anomaly. Learned (cluster-replicated) and
/// seeded entries alike; a learned foreign entry falls back to a proper
/// seeded one.
#[test]
fn issue_12_mac_entry_naming_a_port_of_another_bridge_is_ignored() {
    let ghost = PortId::from_uuid(uuid::Uuid::from_u128(0xdead));
    for (what, learned, seeded) in [
        ("learned, other bridge", true, false),
        ("seeded, other bridge", false, true),
        ("learned, unknown port", true, false),
    ] {
        let mut w = W::std();
        let v4 = w.t.bridge_port(w.b1);
        let foreign = if what.contains("unknown") { ghost } else { w.v3 };
        if learned {
            w.learn(w.b1, 0, VM2, foreign);
        }
        if seeded {
            w.t.mac_entry(w.b1, 0, VM2, foreign);
        }
        let v1 = w.v1;
        let r = run(&mut w, v1, TCP_1_2);
        assert_eq!(r.decision, Decision::Forward, "{what}");
        assert_eq!(r.out_ports().collect::<Vec<_>>(), vec![w.v2, v4], "{what}: floods");
        assert_eq!(r.anomalies, vec![Anomaly::MacEntryForeignPort], "{what}");
        assert!(
            r.tags.contains(&Tag::mac(w.b1, 0, mac(VM2))),
            "{what}: a fix of the entry invalidates"
        );
        assert!(r.tags.contains(&Tag::port(foreign)), "{what}");
        assert!(
            r.trace
                .iter()
                .any(|t| matches!(t, TraceStep::MacEntryIgnored { port, .. } if *port == foreign)),
            "{what}: the trace says why"
        );
    }

    // A learned foreign entry does not hide a proper seeded one.
    let mut w = W::std();
    w.learn(w.b1, 0, VM2, w.v3);
    w.t.mac_entry(w.b1, 0, VM2, w.v2);
    let v1 = w.v1;
    let r = run(&mut w, v1, TCP_1_2);
    assert_eq!(r.out_ports().collect::<Vec<_>>(), vec![w.v2]);
    assert_eq!(r.anomalies, vec![Anomaly::MacEntryForeignPort]);
}

/// The other half of issue 12: an entry naming a port of the bridge itself
/// is still followed (unicast), with nothing reported.
#[test]
fn issue_12_mac_entry_naming_a_port_of_the_bridge_still_unicasts() {
    let mut w = W::std();
    let _v4 = w.t.bridge_port(w.b1);
    w.learn(w.b1, 0, VM2, w.v2);
    let v1 = w.v1;
    let r = run(&mut w, v1, TCP_1_2);
    assert_eq!(r.out_ports().collect::<Vec<_>>(), vec![w.v2]);
    assert!(r.anomalies.is_empty());
    // A seeded entry of b2 (VM3 on v3, its own port) as well.
    let v5 = w.t.bridge_port(w.b2);
    let r = run(&mut w, v5, "eth.src=02:00:00:00:00:09,eth.dst=02:00:00:00:00:05,ip4.src=10.0.1.9,ip4.dst=10.0.1.5,udp.src=1,udp.dst=2");
    assert_eq!(r.out_ports().collect::<Vec<_>>(), vec![w.v3]);
    assert!(r.anomalies.is_empty());
}

#[test]
fn arp_pending_then_resolved_by_the_reply() {
    let mut w = W::std();
    w.with_default();
    let snap = Snapshot::build(&w.t.topo);
    let mut icmp = IcmpRateLimiter::unlimited();
    let (k, f) = packet("eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,udp.src=1,udp.dst=53");
    let parked = sim(&snap, &w.state, &mut icmp, w.v1, k, &f, false);
    let gw: std::net::Ipv4Addr = "192.0.2.1".parse().expect("ip");
    assert_eq!(parked.decision, Decision::ArpPending { router: w.r, ip: gw });
    // The gateway answers the request we generated.
    let req = FlowKey::extract(&parked.generated[0].frame, InPort::Port(0)).expect("arp");
    let reply = format!(
        "eth.src={GW},eth.dst={},arp.op=reply,arp.sha={GW},arp.spa={gw},arp.tha={},arp.tpa={}",
        req.arp_sha, req.arp_sha, req.arp_spa
    );
    let (rk, rf) = packet(&reply);
    let learned = sim(&snap, &w.state, &mut icmp, w.up, rk, &rf, false);
    assert_eq!(learned.decision, Decision::Consumed);
    assert_eq!(learned.state_writes.len(), 1);
    // The write's tag is the one the parked simulation was tagged with.
    assert!(parked.tags.contains(&learned.state_writes[0].tag()));
    w.state.apply(&learned.state_writes[0]);
    let done = sim(&snap, &w.state, &mut icmp, w.v1, k, &f, false);
    assert_eq!(done.decision, Decision::Forward);
    assert_eq!(done.out_ports().collect::<Vec<_>>(), vec![w.up]);
}

fn ecmp_world(members: &[usize]) -> (W, Vec<PortId>) {
    let mut w = W::std();
    let mut ups = Vec::new();
    for i in 0..4usize {
        let p = w.t.router_port(
            w.r,
            &format!("198.18.{i}.2/30"),
            &format!("02:00:00:00:0e:0{i}"),
            true,
        );
        ups.push(p);
        w.state.router_arp.insert((w.r, format!("198.18.{i}.1").parse().expect("ip")), mac(GW));
    }
    for &i in members {
        let gw = format!("198.18.{i}.1");
        w.t.route(w.r, "0.0.0.0/0", Some(ups[i]), Some(&gw));
    }
    (w, ups)
}

fn ecmp_choices(w: &W) -> HashMap<u16, PortId> {
    let snap = Snapshot::build(&w.t.topo);
    let mut icmp = IcmpRateLimiter::unlimited();
    let mut out = HashMap::new();
    for sport in 10000..12000u16 {
        let (k, f) = packet(&format!(
            "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=203.0.113.9,tcp.src={sport},tcp.dst=443"
        ));
        let r = sim(&snap, &w.state, &mut icmp, w.v1, k, &f, false);
        assert_eq!(r.decision, Decision::Forward);
        assert!(r.mask.is_marked(FieldId::L4Src), "ECMP reads the 5-tuple");
        out.insert(sport, r.out_ports().next().expect("one port"));
    }
    out
}

#[test]
fn ecmp_is_consistent_when_a_member_leaves_or_joins() {
    let (all, ups) = ecmp_world(&[0, 1, 2, 3]);
    let before = ecmp_choices(&all);
    // Spread: each of 4 members gets a fair share of 2000 flows.
    for p in &ups {
        let n = before.values().filter(|x| *x == p).count();
        assert!((350..650).contains(&n), "member {p} got {n} of 2000 flows");
    }
    let (three, _) = ecmp_world(&[0, 1, 3]);
    let after = ecmp_choices(&three);
    let mut moved = 0;
    for (sport, was) in &before {
        let now = after[sport];
        if *was == ups[2] {
            assert_ne!(now, ups[2]);
            moved += 1;
        } else {
            assert_eq!(now, *was, "flow {sport} moved although its member stayed");
        }
    }
    assert!(moved > 0);
    // And back: re-adding the member restores exactly the old choices.
    let (again, _) = ecmp_world(&[0, 1, 2, 3]);
    assert_eq!(ecmp_choices(&again), before);
}

#[test]
fn icmp_errors_are_rate_limited_by_caller_state() {
    let w = W::std();
    let snap = Snapshot::build(&w.t.topo);
    let mut bucket = IcmpRateLimiter::new(1, 1);
    let (k, f) = packet("eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,udp.src=1,udp.dst=53");
    let at = |s: u64| SimInput {
        ingress: w.v1,
        key: k,
        frame: &f,
        now: Duration::from_secs(s),
        hash_seed: 0,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    let a = simulate(&snap, &w.state, &NoConntrack, &mut bucket, &at(10));
    let b = simulate(&snap, &w.state, &NoConntrack, &mut bucket, &at(10));
    let c = simulate(&snap, &w.state, &NoConntrack, &mut bucket, &at(12));
    assert_eq!((a.generated.len(), b.generated.len(), c.generated.len()), (1, 0, 1));
    assert!(b
        .trace
        .iter()
        .any(|s| matches!(s, TraceStep::IcmpSuppressed { why } if why == "rate limited")));
    assert_eq!(a.decision, b.decision);
}

#[test]
fn tags_for_change_hits_exactly_the_affected_flows() {
    let mut w = W::std();
    w.learn(w.b1, 0, VM2, w.v2);
    let topo = w.t.build();
    let snap = Snapshot::build(&topo);
    let mut icmp = IcmpRateLimiter::unlimited();
    let (k, f) = packet(TCP_1_2);
    let l2 = sim(&snap, &w.state, &mut icmp, w.v1, k, &f, false);
    let (k, f) = packet("eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,tcp.src=1,tcp.dst=2");
    let routed = sim(&snap, &w.state, &mut icmp, w.v1, k, &f, false);
    let hit = |flow: &SimResult, tags: &[Tag]| tags.iter().any(|t| flow.tags.contains(t));

    // A route added to the router: the routed flow, not the L2 one.
    let route = Route { router_id: w.r, ..Default::default() };
    let mut tags = Vec::new();
    tags_for_change(&snap, None, Some(StoreObject::Route(&route)), &mut tags);
    assert!(hit(&routed, &tags) && !hit(&l2, &tags));

    // A MAC move of VM2: the L2 flow, not the routed one.
    let mv = StateWrite::Mac { bridge: w.b1, vlan: 0, mac: mac(VM2), port: w.v1 };
    assert!(hit(&l2, &[mv.tag()]) && !hit(&routed, &[mv.tag()]));

    // The seeded ARP entry of VM3 changes: the routed flow peeked at it.
    let e = topo.arp_entries.values().next().expect("seeded");
    tags.clear();
    tags_for_change(&snap, Some(StoreObject::ArpEntry(e)), None, &mut tags);
    assert!(hit(&routed, &tags) && !hit(&l2, &tags));

    // Renaming bridge b2 touches the routed flow only; b1 both.
    for (b, l2_hit) in [(w.b2, false), (w.b1, true)] {
        let br = topo.bridges[&b].clone();
        tags.clear();
        tags_for_change(
            &snap,
            Some(StoreObject::Bridge(&br)),
            Some(StoreObject::Bridge(&br)),
            &mut tags,
        );
        assert!(hit(&routed, &tags));
        assert_eq!(hit(&l2, &tags), l2_hit);
    }

    // A new port on b1 (changes its flood set) reaches the L2 flow through
    // the bridge tag; as a raw store entry too.
    let p = Port { id: PortId::nil(), device_id: w.b1.cast(), ..Default::default() };
    let key = format!("/midonet/v1/ports/{}", uuid::Uuid::from_u128(0x77));
    let body = serde_json::to_vec(&p).expect("json");
    tags.clear();
    tags_for_store_entry(&snap, &key, None, Some(&body), &mut tags);
    assert!(hit(&l2, &tags));
}

#[test]
fn unknown_ingress_port_is_a_temporary_drop() {
    let w = W::std();
    let snap = Snapshot::build(&w.t.topo);
    let (k, f) = packet(TCP_1_2);
    let r = sim(&snap, &w.state, &mut IcmpRateLimiter::unlimited(), PortId::nil(), k, &f, false);
    assert_eq!(
        r.decision,
        Decision::Drop { reason: DropReason::UnknownPort, lifetime: DropLifetime::Temporary }
    );
    assert!(
        r.tags.contains(&Tag::port(PortId::nil())),
        "the port's creation must invalidate the drop"
    );
}

#[test]
fn result_reuse_clears_everything() {
    let w = W::std();
    let snap = Snapshot::build(&w.t.topo);
    let mut out = SimResult::default();
    let mut icmp = IcmpRateLimiter::unlimited();
    let (k1, f1) = packet("eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,udp.src=1,udp.dst=53");
    let input = SimInput {
        ingress: w.v1,
        key: k1,
        frame: &f1,
        now: Duration::ZERO,
        hash_seed: 0,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    simulate_into(&snap, &w.state, &NoConntrack, &mut icmp, &input, &mut out);
    assert!(!out.generated.is_empty() && !out.trace.is_empty());
    let (k2, f2) = packet(TCP_1_2);
    let input = SimInput {
        ingress: w.v1,
        key: k2,
        frame: &f2,
        now: Duration::ZERO,
        hash_seed: 0,
        trace: false,
        generated: false,
        split_reverse_nat: false,
    };
    simulate_into(&snap, &w.state, &NoConntrack, &mut icmp, &input, &mut out);
    let fresh = sim(&snap, &w.state, &mut icmp, w.v1, k2, &f2, false);
    assert_eq!(
        (out.decision, &out.actions, &out.tags, out.mask),
        (fresh.decision, &fresh.actions, &fresh.tags, fresh.mask)
    );
    assert!(out.generated.is_empty() && out.trace.is_empty());
}

#[test]
fn fuzz_entry_survives_random_inputs() {
    // The same entry function `cargo fuzz run sim_packet` drives, over a few
    // thousand deterministic pseudo-random inputs (xorshift), half of them
    // built from valid frames with random bytes flipped.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds = [
        "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,udp.src=1,udp.dst=53",
        "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:00:01,arp.spa=10.0.0.11,arp.tpa=10.0.0.1",
        "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.0.1,icmp4.type=8,icmp4.id=1",
        "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,vlan.vid=100,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,ip.ttl=1,tcp.src=1,tcp.dst=2",
    ];
    for i in 0..4000u32 {
        let mut data = vec![(next() & 0xff) as u8, (next() & 0xff) as u8];
        if i % 2 == 0 {
            let (_, mut f) = packet(seeds[(i as usize / 2) % seeds.len()]);
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
            data.extend_from_slice(&f);
        } else {
            let len = (next() % 128) as usize;
            data.extend((0..len).map(|_| next() as u8));
        }
        midonet_sim::fuzzing::sim_bytes(&data);
    }
}

#[test]
fn router_forward_chain_filters_routed_traffic_only() {
    // FWaaS: the forward chain accepts return flows and drops new
    // connections to 10.0.1.0/24; pings to the router itself never see it.
    let mut w = W::std();
    let fw = w.chain(
        "fwaas",
        vec![
            Rule {
                rule_type: RuleType::Accept,
                condition: Condition { match_return_flow: true, ..Default::default() },
                ..Default::default()
            },
            Rule {
                rule_type: RuleType::Drop,
                condition: Condition {
                    nw_dst_address: Some(
                        "10.0.1.0".parse::<std::net::Ipv4Addr>().expect("ip").into(),
                    ),
                    nw_dst_length: Some(24),
                    ..Default::default()
                },
                ..Default::default()
            },
        ],
    );
    let r = w.r;
    w.t.edit_router(r, |x| x.forward_chain_id = Some(fw));
    let (b1, v1, rp1) = (w.b1, w.v1, w.rp1);
    w.learn(b1, 0, RP1, rp1);
    let v = run(
        &mut w,
        v1,
        "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,tcp.src=40000,tcp.dst=80",
    );
    assert_eq!(drop_reason(&v), Some(DropReason::RuleDrop), "{}", v.render());
    assert!(v
        .trace
        .iter()
        .any(|s| matches!(s, TraceStep::Chain { hook: Hook::RouterForward, .. })));
    assert!(v.tags.contains(&Tag::chain(fw)));
    // To the router's own address: local, not forwarded.
    let echo = run(
        &mut w,
        v1,
        "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.1,icmp4.type=8,icmp4.id=1",
    );
    assert_eq!(echo.decision, Decision::Consumed, "{}", echo.render());
    assert!(!echo
        .trace
        .iter()
        .any(|s| matches!(s, TraceStep::Chain { hook: Hook::RouterForward, .. })));
    // The generated echo reply is a return flow: accepted by the chain.
    assert_eq!(echo.generated.len(), 1, "{}", echo.render());

    // Forwarded to the uplink instead: not dropped.
    w.with_default();
    w.gw_arp();
    let out = run(
        &mut w,
        v1,
        "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,tcp.src=40000,tcp.dst=80",
    );
    assert_eq!(out.decision, Decision::Forward, "{}", out.render());
}

#[test]
fn router_local_redirect_chain_runs_before_the_inbound_chain() {
    let mut w = W::std();
    let red = w.chain("redirect", vec![Rule { rule_type: RuleType::Drop, ..Default::default() }]);
    let inn = w.chain("r-in", vec![Rule { rule_type: RuleType::Accept, ..Default::default() }]);
    let r = w.r;
    w.t.edit_router(r, |x| {
        x.local_redirect_chain_id = Some(red);
        x.inbound_filter_id = Some(inn);
    });
    let (b1, v1, rp1) = (w.b1, w.v1, w.rp1);
    w.learn(b1, 0, RP1, rp1);
    let v = run(
        &mut w,
        v1,
        "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.1,icmp4.type=8,icmp4.id=1",
    );
    assert_eq!(drop_reason(&v), Some(DropReason::RuleDrop), "{}", v.render());
    assert!(!v.tags.contains(&Tag::chain(inn)), "the inbound chain never ran");
}
