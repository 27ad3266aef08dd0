//! The router's load balancer (reference §2.12): VIP matching, weighted
//! consistent member choice, sticky source IP, graceful drain, return
//! traffic restored to the VIP, and the behaviour with no member up.
//!
//! The world is the reference one with a default route out of the uplink
//! `up`; clients are outside (203.0.113.0/24, entering by `up`), the VIP is
//! 198.51.100.10:80 and the members listen on 8080: VM1 and VM2 on the left
//! bridge, VM3 on the right one.

mod common;

use std::net::Ipv4Addr;

use common::*;
use midonet_model::*;
use midonet_sim::*;
use midonet_state::NatKind;

const VIP: &str = "198.51.100.10";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

struct Lb {
    w: W,
    lb: LoadBalancerId,
    pool: PoolId,
    vip: VipId,
    /// VM1, VM2, VM3.
    members: [PoolMemberId; 3],
}

fn world(weights: [u32; 3], sticky: bool) -> Lb {
    let mut w = W::std();
    w.with_default();
    w.gw_arp();
    let (b1, v1, v2, rp1) = (w.b1, w.v1, w.v2, w.rp1);
    w.learn(b1, 0, VM1, v1);
    w.learn(b1, 0, VM2, v2);
    w.learn(b1, 0, RP1, rp1);
    w.state.router_arp.insert((w.r, ip("10.0.0.11")), mac(VM1));
    w.state.router_arp.insert((w.r, ip("10.0.0.12")), mac(VM2));
    w.state.router_arp.insert((w.r, ip("10.0.1.5")), mac(VM3));
    let lb: LoadBalancerId = w.t.id();
    let pool: PoolId = w.t.id();
    let vip: VipId = w.t.id();
    let r = w.r;
    w.t.topo
        .load_balancers
        .insert(lb, LoadBalancer { id: lb, admin_state_up: true, ..Default::default() });
    w.t.edit_router(r, |x| x.load_balancer_id = Some(lb));
    let p: Pool = serde_json::from_value(serde_json::json!({
        "id": pool, "loadBalancerId": lb,
    }))
    .expect("pool");
    w.t.topo.pools.insert(pool, p);
    let v: Vip = serde_json::from_value(serde_json::json!({
        "id": vip, "loadBalancerId": lb, "poolId": pool, "address": VIP, "protocolPort": 80,
        "sessionPersistence": if sticky { "SOURCE_IP" } else { "" },
    }))
    .expect("vip");
    w.t.topo.vips.insert(vip, v);
    let mut members = [PoolMemberId::default(); 3];
    for (i, addr) in ["10.0.0.11", "10.0.0.12", "10.0.1.5"].iter().enumerate() {
        let id: PoolMemberId = w.t.id();
        let m: PoolMember = serde_json::from_value(serde_json::json!({
            "id": id, "poolId": pool, "address": addr, "protocolPort": 8080,
            "weight": weights[i],
        }))
        .expect("member");
        w.t.topo.pool_members.insert(id, m);
        members[i] = id;
    }
    Lb { w, lb, pool, vip, members }
}

fn client(src: &str, sport: u16) -> String {
    format!("eth.src={GW},eth.dst={UP},ip4.src={src},ip4.dst={VIP},tcp.src={sport},tcp.dst=80")
}

fn dst_of(r: &SimResult) -> Option<(Ipv4Addr, u16)> {
    let mut ip = None;
    let mut port = None;
    for a in &r.actions {
        if let SimAction::Rewrite(x) = a {
            match x {
                Action::SetIpv4Dst(a) => ip = Some(*a),
                Action::SetL4Dst(p) => port = Some(*p),
                _ => {}
            }
        }
    }
    Some((ip?, port?))
}

fn member_index(r: &SimResult) -> usize {
    assert_eq!(r.decision, Decision::Forward, "{}", r.render());
    let (a, port) = dst_of(r).expect("translated");
    assert_eq!(port, 8080);
    match a.octets() {
        [10, 0, 0, 11] => 0,
        [10, 0, 0, 12] => 1,
        [10, 0, 1, 5] => 2,
        o => panic!("not a member: {o:?}"),
    }
}

/// One simulation, untraced (fast), against the world's flow state.
fn once(w: &mut W, ingress: PortId, desc: &str) -> SimResult {
    let snap = Snapshot::build(&w.t.topo);
    let (key, frame) = packet(desc);
    let input = SimInput {
        ingress,
        key,
        frame: &frame,
        now: NOW,
        hash_seed: 42,
        trace: false,
        generated: false,
        split_reverse_nat: false,
    };
    simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input)
}

#[test]
fn vip_balances_new_connections_by_weight() {
    let mut l = world([1, 2, 1], false);
    let up = l.w.up;
    let snap = Snapshot::build(&l.w.t.topo);
    let mut n = [0u32; 3];
    for i in 0..4000u32 {
        let src = format!("203.0.113.{}", 1 + i % 200);
        let (key, frame) = packet(&client(&src, 20000 + (i / 200) as u16));
        let input = SimInput {
            ingress: up,
            key,
            frame: &frame,
            now: NOW,
            hash_seed: 42,
            trace: false,
            generated: false,
            split_reverse_nat: false,
        };
        let r = simulate(&snap, &l.w.state, &l.w.flow, &mut l.w.icmp, &input);
        n[member_index(&r)] += 1;
    }
    let share: Vec<f64> = n.iter().map(|&c| f64::from(c) / 4000.0).collect();
    for (s, want) in share.iter().zip([0.25, 0.5, 0.25]) {
        assert!((s - want).abs() < 0.04, "shares {share:?}");
    }
}

#[test]
fn translated_forward_and_restored_return() {
    let mut l = world([1, 1, 1], false);
    let up = l.w.up;
    let out = run(&mut l.w, up, &client("203.0.113.7", 40000));
    let i = member_index(&out);
    // The VIP's flow matches its exact connection and carries the tags.
    for f in [FieldId::L4Src, FieldId::L4Dst, FieldId::IpProto] {
        assert!(out.mask.is_marked(f), "{f:?} unmarked");
    }
    assert!(out.tags.contains(&Tag::load_balancer(l.lb)));
    assert_eq!(out.nat.len(), 1, "{:?}", out.nat);
    assert_eq!(out.nat[0].key.kind, NatKind::Dnat);
    assert!(out.tags.contains(&Tag::nat(&out.nat[0].key)));
    let text = out.render();
    assert!(text.contains("load balancer: vip"), "{text}");
    assert!(
        out.trace.iter().any(|s| matches!(s,
            TraceStep::LoadBalancer { vip, pool, member: Some(m), .. }
                if *vip == l.vip && *pool == l.pool && *m == l.members[i])),
        "{text}"
    );
    // The same connection again: the same member, from the binding.
    let again = once(&mut l.w, up, &client("203.0.113.7", 40000));
    assert_eq!(member_index(&again), i);
    assert!(!again.nat[0].created);

    // The member answers the client: the source becomes the VIP again.
    let (mmac, mip, mport) =
        [(VM1, "10.0.0.11", l.w.v1), (VM2, "10.0.0.12", l.w.v2), (VM3, "10.0.1.5", l.w.v3)][i];
    let rmac = if i == 2 { RP2 } else { RP1 };
    let reply = format!(
        "eth.src={mmac},eth.dst={rmac},ip4.src={mip},ip4.dst=203.0.113.7,tcp.src=8080,tcp.dst=40000"
    );
    let back = run(&mut l.w, mport, &reply);
    assert_eq!(back.decision, Decision::Forward, "{}", back.render());
    assert_eq!(back.out_ports().collect::<Vec<_>>(), vec![up]);
    let rw: Vec<Action> = back
        .actions
        .iter()
        .filter_map(|a| match a {
            SimAction::Rewrite(x) => Some(*x),
            SimAction::ToPort(_) => None,
        })
        .collect();
    assert!(rw.contains(&Action::SetIpv4Src(ip(VIP))), "{rw:?}");
    assert!(rw.contains(&Action::SetL4Src(80)), "{rw:?}");

    // A member's packet that is no reply (another client port) is routed
    // untranslated.
    let other = format!(
        "eth.src={mmac},eth.dst={rmac},ip4.src={mip},ip4.dst=203.0.113.7,tcp.src=8080,tcp.dst=40001"
    );
    let o = run(&mut l.w, mport, &other);
    assert!(o.actions.iter().all(|a| !matches!(a, SimAction::Rewrite(Action::SetIpv4Src(_)))));
}

#[test]
fn a_member_taken_out_drains_and_takes_no_new_connections() {
    for how in ["admin", "health"] {
        let mut l = world([1, 1, 1], false);
        let up = l.w.up;
        // Connections to every member.
        let mut conns = Vec::new();
        for p in 0..60u16 {
            let r = once(&mut l.w, up, &client("203.0.113.9", 30000 + p));
            conns.push((30000 + p, member_index(&r)));
        }
        let victim = conns[0].1;
        let id = l.members[victim];
        let m = l.w.t.topo.pool_members.get_mut(&id).expect("member");
        if how == "admin" {
            m.admin_state_up = false;
        } else {
            m.status = "DOWN".into();
        }
        // Existing connections keep their member, whatever it is.
        for &(p, i) in &conns {
            let r = once(&mut l.w, up, &client("203.0.113.9", p));
            assert_eq!(member_index(&r), i, "{how}: connection from port {p} moved");
        }
        // New ones never go to it.
        for p in 0..300u16 {
            let r = once(&mut l.w, up, &client("203.0.113.10", 50000 + p));
            assert_ne!(member_index(&r), victim, "{how}: new connection to a member out");
        }
    }
}

#[test]
fn removing_a_member_moves_only_its_new_connections() {
    let l0 = world([1, 1, 1], false);
    let mut before = Vec::new();
    {
        let mut l = world([1, 1, 1], false);
        let up = l.w.up;
        for p in 0..300u16 {
            before.push(member_index(&once(&mut l.w, up, &client("203.0.113.20", 10000 + p))));
        }
    }
    // Fresh flow state, member 1 removed from the pool.
    let mut l = world([1, 1, 1], false);
    assert_eq!(l.members.len(), l0.members.len());
    l.w.t.topo.pool_members.remove(&l.members[1]);
    let up = l.w.up;
    let mut moved = 0;
    for (p, &b) in (0..300u16).zip(&before) {
        let a = member_index(&once(&mut l.w, up, &client("203.0.113.20", 10000 + p)));
        if b != 1 {
            assert_eq!(a, b, "port {p} moved although its member stayed");
        } else {
            moved += 1;
        }
    }
    assert!(moved > 50, "member 1 had {moved} of 300");
}

#[test]
fn sticky_source_ip_keeps_a_client_on_its_member() {
    let mut l = world([1, 1, 1], true);
    let up = l.w.up;
    let first = member_index(&once(&mut l.w, up, &client("203.0.113.30", 1000)));
    for p in 1001..1040u16 {
        assert_eq!(member_index(&once(&mut l.w, up, &client("203.0.113.30", p))), first);
    }
    // Disabling another member does not move the client.
    let other = (first + 1) % 3;
    l.w.t.topo.pool_members.get_mut(&l.members[other]).expect("m").admin_state_up = false;
    for p in 2000..2020u16 {
        assert_eq!(member_index(&once(&mut l.w, up, &client("203.0.113.30", p))), first);
    }
    // Disabling its own member: its open connection stays (drain), new
    // ones go elsewhere, and stick there.
    l.w.t.topo.pool_members.get_mut(&l.members[first]).expect("m").admin_state_up = false;
    assert_eq!(member_index(&once(&mut l.w, up, &client("203.0.113.30", 1000))), first);
    let next = member_index(&once(&mut l.w, up, &client("203.0.113.30", 3000)));
    assert!(next != first && next != other, "the only active member is the third");
    for p in 3001..3010u16 {
        assert_eq!(member_index(&once(&mut l.w, up, &client("203.0.113.30", p))), next);
    }
}

#[test]
fn sticky_choice_is_the_same_on_every_host() {
    // Two agents with empty flow state each pick for one client: the same.
    for c in 1..40u8 {
        let src = format!("203.0.113.{c}");
        let mut a = world([1, 1, 1], true);
        let mut b = world([1, 1, 1], true);
        let up = a.w.up;
        let x = member_index(&once(&mut a.w, up, &client(&src, 1111)));
        let y = member_index(&once(&mut b.w, up, &client(&src, 2222)));
        assert_eq!(x, y, "client {src}");
    }
}

#[test]
fn no_member_up_answers_port_unreachable() {
    let mut l = world([1, 1, 1], false);
    for id in l.members {
        l.w.t.topo.pool_members.get_mut(&id).expect("m").status = "DOWN".into();
    }
    let up = l.w.up;
    let r = run(&mut l.w, up, &client("203.0.113.40", 5555));
    assert_eq!(drop_reason(&r), Some(DropReason::LbNoMember), "{}", r.render());
    assert!(
        r.generated.iter().any(|g| matches!(g.kind, GenKind::IcmpError { icmp_type: 3, code: 3 })),
        "{:?}",
        gen_kinds(&r)
    );
    assert!(r.render().contains("no member up"));
    // Pool admin down: the same.
    let mut l = world([1, 1, 1], false);
    l.w.t.topo.pools.get_mut(&l.pool).expect("pool").admin_state_up = false;
    let r = once(&mut l.w, up, &client("203.0.113.40", 5555));
    assert_eq!(drop_reason(&r), Some(DropReason::LbNoMember));
}

#[test]
fn udp_to_a_vip_is_dropped_and_other_traffic_passes() {
    let mut l = world([1, 1, 1], false);
    let up = l.w.up;
    let udp =
        format!("eth.src={GW},eth.dst={UP},ip4.src=203.0.113.5,ip4.dst={VIP},udp.src=5,udp.dst=80");
    let r = run(&mut l.w, up, &udp);
    assert_eq!(drop_reason(&r), Some(DropReason::LbNotTcp));
    // TCP to another port of the VIP address, or to a VM, is routed as
    // usual, untranslated.
    let other = format!(
        "eth.src={GW},eth.dst={UP},ip4.src=203.0.113.5,ip4.dst=10.0.0.11,tcp.src=5,tcp.dst=80"
    );
    let r = run(&mut l.w, up, &other);
    assert_eq!(r.decision, Decision::Forward, "{}", r.render());
    assert!(dst_of(&r).is_none());
    // LB or VIP admin down: not balanced.
    let lb = l.lb;
    l.w.t.topo.load_balancers.get_mut(&lb).expect("lb").admin_state_up = false;
    let r = once(&mut l.w, up, &client("203.0.113.5", 7));
    assert!(dst_of(&r).is_none(), "{}", r.render());
    l.w.t.topo.load_balancers.get_mut(&lb).expect("lb").admin_state_up = true;
    l.w.t.topo.vips.get_mut(&l.vip).expect("vip").admin_state_up = false;
    let r = once(&mut l.w, up, &client("203.0.113.5", 7));
    assert!(dst_of(&r).is_none(), "{}", r.render());
}

#[test]
fn lb_changes_invalidate_the_balancers_flows() {
    let l = world([1, 1, 1], false);
    let snap = Snapshot::build(&l.w.t.topo);
    let m = l.w.t.topo.pool_members[&l.members[0]].clone();
    let mut down = m.clone();
    down.status = "DOWN".into();
    let mut tags = Vec::new();
    tags_for_change(
        &snap,
        Some(StoreObject::PoolMember(&m)),
        Some(StoreObject::PoolMember(&down)),
        &mut tags,
    );
    assert_eq!(tags, vec![Tag::load_balancer(l.lb)]);
    let lbo = l.w.t.topo.load_balancers[&l.lb].clone();
    let mut tags = Vec::new();
    tags_for_change(&snap, None, Some(StoreObject::LoadBalancer(&lbo)), &mut tags);
    assert!(tags.contains(&Tag::router(l.w.r)), "{tags:?}");
}

#[test]
fn a_sticky_client_reusing_a_port_through_another_vip_goes_elsewhere_not_dropped() {
    let mut collisions = 0;
    for c in 1..60u8 {
        let mut l = world([1, 1, 1], true);
        // A second sticky VIP on the same pool, port 81.
        let vip2: VipId = l.w.t.id();
        let mut v = l.w.t.topo.vips[&l.vip].clone();
        v.id = vip2;
        v.protocol_port = 81;
        l.w.t.topo.vips.insert(vip2, v);
        let up = l.w.up;
        let src = format!("203.0.113.{c}");
        let to = |port: u16, sport: u16| {
            format!("eth.src={GW},eth.dst={UP},ip4.src={src},ip4.dst={VIP},tcp.src={sport},tcp.dst={port}")
        };
        let x = member_index(&once(&mut l.w, up, &to(80, 5000)));
        // The client's affinity through VIP 2, from another port.
        let y = member_index(&once(&mut l.w, up, &to(81, 6000)));
        // Port 5000 again, now to VIP 2: if its member is x, the replies
        // would look like the first connection's.
        let r = once(&mut l.w, up, &to(81, 5000));
        let z = member_index(&r);
        if y == x {
            collisions += 1;
            assert_ne!(z, x, "client {src}: two connections with one return key");
            // The affinity stays: the next connection is back on y.
            assert_eq!(member_index(&once(&mut l.w, up, &to(81, 7000))), y);
        } else {
            assert_eq!(z, y, "client {src}: sticky");
        }
    }
    assert!(collisions > 5, "the case was exercised ({collisions} times)");
}

#[test]
fn one_client_with_sequential_ports_spreads_evenly() {
    // What a load generator does: one address, ports counting up.
    let mut l = world([1, 1, 1], false);
    let up = l.w.up;
    let snap = Snapshot::build(&l.w.t.topo);
    let mut n = [0u32; 3];
    for p in 0..3000u16 {
        let (key, frame) = packet(&client("203.0.113.1", 32768 + p));
        let input = SimInput {
            ingress: up,
            key,
            frame: &frame,
            now: NOW,
            hash_seed: 42,
            trace: false,
            generated: false,
            split_reverse_nat: false,
        };
        n[member_index(&simulate(&snap, &l.w.state, &l.w.flow, &mut l.w.icmp, &input))] += 1;
    }
    for c in n {
        let share = f64::from(c) / 3000.0;
        assert!((share - 1.0 / 3.0).abs() < 0.04, "shares {n:?}");
    }
}
