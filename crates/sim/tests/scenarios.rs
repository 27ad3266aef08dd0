//! Table-driven scenario tests with golden traces.
//!
//! Each scenario tweaks the reference world (`common::W::std`), sends one
//! packet, checks the outcome with explicit assertions, and compares the
//! rendered trace with `tests/golden/<name>.txt`.
//! `MIDONET_REGEN_GOLDEN=1 cargo test -p midonet-sim` rewrites the goldens.

mod common;

use common::*;
use midonet_model::*;
use midonet_sim::*;

type Setup = fn(&mut W);
type Ingress = fn(&W) -> PortId;
type Check = fn(&W, &SimResult);

struct Sc {
    name: &'static str,
    setup: Setup,
    ingress: Ingress,
    pkt: &'static str,
    check: Check,
}

const TCP_1_2: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,tcp.src=40000,tcp.dst=80";
const TCP_1_3: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,tcp.src=40000,tcp.dst=80";
const TCP_1_NET: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,tcp.src=40000,tcp.dst=443";

fn none(_: &mut W) {}
fn v1(w: &W) -> PortId {
    w.v1
}
fn v3(w: &W) -> PortId {
    w.v3
}
fn up(w: &W) -> PortId {
    w.up
}

fn fwd(r: &SimResult, ports: &[PortId]) {
    assert_eq!(r.decision, Decision::Forward, "{}", r.render());
    let got: Vec<PortId> = r.out_ports().collect();
    assert_eq!(got, ports, "{}", r.render());
}

fn dropped(r: &SimResult, why: DropReason) {
    assert_eq!(drop_reason(r), Some(why), "{}", r.render());
}

fn icmp(r: &SimResult, t: u8, c: u8, target: GenTarget) {
    assert_eq!(
        gen_kinds(r),
        vec![(GenKind::IcmpError { icmp_type: t, code: c }, target)],
        "{}",
        r.render()
    );
    let k = FlowKey::extract(&r.generated[0].frame, InPort::Port(0)).expect("icmp parses");
    assert_eq!((k.icmp_type, k.icmp_code), (t, c));
}

fn rule(t: RuleType, c: Condition) -> Rule {
    Rule { rule_type: t, condition: c, ..Default::default() }
}

fn has_rewrite(r: &SimResult, a: Action) -> bool {
    r.actions.contains(&SimAction::Rewrite(a))
}

fn vlan_world(w: &mut W) {
    // vb: trunks t1, t2 (exterior); vp100 ═ bv100 (x1); vp200 ═ bv200 (x2).
    let vb = w.t.bridge("vlan");
    let t1 = w.t.bridge_port(vb);
    let t2 = w.t.bridge_port(vb);
    let vp100 = w.t.bridge_iport(vb, Some(100));
    let vp200 = w.t.bridge_iport(vb, Some(200));
    let bv100 = w.t.bridge("access100");
    let bv200 = w.t.bridge("access200");
    let x1 = w.t.bridge_port(bv100);
    let x2 = w.t.bridge_port(bv200);
    let u100 = w.t.bridge_iport(bv100, None);
    let u200 = w.t.bridge_iport(bv200, None);
    w.t.link(vp100, u100);
    w.t.link(vp200, u200);
    for (n, p) in [
        ("t1", t1),
        ("t2", t2),
        ("vp100", vp100),
        ("vp200", vp200),
        ("x1", x1),
        ("x2", x2),
        ("u100", u100),
        ("u200", u200),
    ] {
        w.p.insert(n, p);
    }
    w.state.macs.insert((vb, 200, mac("02:00:00:00:20:02")), vp200);
    w.state.macs.insert((vb, 300, mac("02:00:00:00:20:02")), vp200);
    w.state.macs.insert((bv200, 0, mac("02:00:00:00:20:02")), x2);
}

fn mon_port(w: &mut W) -> PortId {
    let mb = w.t.bridge("monitor");
    let m1 = w.t.bridge_port(mb);
    w.p.insert("m1", m1);
    w.learn(w.b1, 0, VM2, w.v2);
    m1
}

fn loop_world(w: &mut W) {
    let r2 = w.t.router("loop");
    let a = w.t.router_port(w.r, "172.16.0.1/30", "02:00:00:00:0a:01", false);
    let b = w.t.router_port(r2, "172.16.0.2/30", "02:00:00:00:0a:02", false);
    w.t.link(a, b);
    w.t.route(w.r, "0.0.0.0/0", Some(a), None);
    w.t.route(r2, "0.0.0.0/0", Some(b), None);
}

fn scenarios() -> Vec<Sc> {
    vec![
        // ------------------------------------------------------------- bridge
        Sc { name: "l2_unknown_unicast_floods", setup: none, ingress: v1, pkt: TCP_1_2, check: |w, r| {
            fwd(r, &[w.v2]);
            assert!(r.state_writes.contains(&StateWrite::Mac { bridge: w.b1, vlan: 0, mac: mac(VM1), port: w.v1 }));
            assert!(r.tags.contains(&Tag::mac(w.b1, 0, mac(VM2))), "unknown-MAC flood is tagged");
        }},
        Sc { name: "l2_known_unicast", setup: |w| w.learn(w.b1, 0, VM2, w.v2), ingress: v1, pkt: TCP_1_2, check: |w, r| {
            fwd(r, &[w.v2]);
            assert!(r.actions.iter().all(|a| matches!(a, SimAction::ToPort(_))), "no rewrites on L2");
            assert!(r.mask.is_marked(FieldId::EthDst) && !r.mask.is_marked(FieldId::L4Dst));
        }},
        Sc { name: "l2_broadcast_floods", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.11,ip4.dst=10.0.0.255,udp.src=1,udp.dst=2",
            check: |w, r| fwd(r, &[w.v2]) },
        Sc { name: "l2_multicast_source_dropped", setup: none, ingress: v1,
            pkt: "eth.src=01:00:5e:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,udp.src=1,udp.dst=2",
            check: |_, r| dropped(r, DropReason::MulticastSource) },
        Sc { name: "l2_hairpin_dropped", setup: |w| w.learn(w.b1, 0, VM2, w.v1), ingress: v1, pkt: TCP_1_2, check: |_, r| {
            dropped(r, DropReason::Hairpin);
            assert_eq!(r.decision, Decision::Drop { reason: DropReason::Hairpin, lifetime: DropLifetime::Temporary });
        }},
        // As in MidoNet: dst == src is a temporary drop before any
        // MAC-table lookup, so it is never flooded, learned or not.
        Sc { name: "l2_dst_equals_src_dropped_before_lookup", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:01,ip4.src=10.0.0.11,ip4.dst=10.0.0.11,udp.src=1,udp.dst=2",
            check: |_, r| {
                assert_eq!(r.decision, Decision::Drop { reason: DropReason::Hairpin, lifetime: DropLifetime::Temporary });
                assert!(r.actions.is_empty(), "never flooded");
                assert!(!r.trace.iter().any(|s| matches!(s, TraceStep::MacLookup { .. } | TraceStep::Flood { .. })), "no table lookup");
            }},
        Sc { name: "l2_mac_move_writes_and_tags", setup: |w| { w.learn(w.b1, 0, VM1, w.v2); w.learn(w.b1, 0, VM2, w.v2); }, ingress: v1, pkt: TCP_1_2, check: |w, r| {
            fwd(r, &[w.v2]);
            let wr = StateWrite::Mac { bridge: w.b1, vlan: 0, mac: mac(VM1), port: w.v1 };
            assert_eq!(r.state_writes, vec![wr]);
            assert!(r.tags.contains(&wr.tag()));
        }},
        Sc { name: "l2_learned_entry_not_rewritten", setup: |w| { w.learn(w.b1, 0, VM1, w.v1); w.learn(w.b1, 0, VM2, w.v2); }, ingress: v1, pkt: TCP_1_2, check: |_, r| {
            assert!(r.state_writes.is_empty());
        }},
        Sc { name: "bridge_arp_for_router_ip", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:00:01,arp.spa=10.0.0.11,arp.tpa=10.0.0.1",
            check: |w, r| {
                assert_eq!(r.decision, Decision::Consumed);
                assert_eq!(gen_kinds(r), vec![(GenKind::ArpReply, GenTarget::Emit(w.v1))]);
                let k = FlowKey::extract(&r.generated[0].frame, InPort::Port(0)).expect("arp");
                assert_eq!((k.arp_op, k.arp_sha, k.arp_spa, k.eth_dst), (2, mac(RP1), "10.0.0.1".parse().expect("ip"), mac(VM1)));
            }},
        Sc { name: "bridge_arp_seeded_entry", setup: |w| w.t.arp_entry(w.b1, "10.0.0.12", VM2), ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:00:01,arp.spa=10.0.0.11,arp.tpa=10.0.0.12",
            check: |w, r| {
                assert_eq!(r.decision, Decision::Consumed);
                let k = FlowKey::extract(&r.generated[0].frame, InPort::Port(0)).expect("arp");
                assert_eq!(k.arp_sha, mac(VM2));
                assert!(r.tags.contains(&Tag::bridge_arp(w.b1, "10.0.0.12".parse().expect("ip"))));
            }},
        Sc { name: "bridge_arp_unknown_floods", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:00:01,arp.spa=10.0.0.11,arp.tpa=10.0.0.99",
            check: |w, r| fwd(r, &[w.v2]) },
        Sc { name: "bridge_garp_learned_and_flooded", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:00:01,arp.spa=10.0.0.11,arp.tpa=10.0.0.11",
            check: |w, r| {
                fwd(r, &[w.v2]);
                assert!(r.state_writes.contains(&StateWrite::BridgeArp { bridge: w.b1, ip: "10.0.0.11".parse().expect("ip"), mac: mac(VM1) }));
            }},
        Sc { name: "bridge_arp_tagged_not_answered", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,vlan.vid=7,arp.op=request,arp.sha=02:00:00:00:00:01,arp.spa=10.0.0.11,arp.tpa=10.0.0.1",
            check: |w, r| { fwd(r, &[w.v2]); assert!(r.generated.is_empty()); } },
        Sc { name: "bridge_admin_down", setup: |w| { let b = w.b1; w.t.edit_bridge(b, |x| x.admin_state_up = false) }, ingress: v1, pkt: TCP_1_2,
            check: |_, r| { dropped(r, DropReason::DeviceAdminDown); assert!(r.generated.is_empty()); } },
        Sc { name: "bridge_port_admin_down", setup: |w| { let p = w.v1; w.t.edit_port(p, |x| x.admin_state_up = false) }, ingress: v1, pkt: TCP_1_2,
            check: |_, r| { dropped(r, DropReason::PortAdminDown); assert_eq!(r.decision, Decision::Drop { reason: DropReason::PortAdminDown, lifetime: DropLifetime::Normal }); } },
        Sc { name: "bridge_in_chain_drop", setup: |w| {
                let c = w.chain("b1-in", vec![rule(RuleType::Drop, Condition { nw_proto: Some(6), tp_dst: Some(PortRange { start: 80, end: 80 }), ..Default::default() })]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| { dropped(r, DropReason::RuleDrop); assert!(r.mask.is_marked(FieldId::L4Dst)); } },
        Sc { name: "bridge_reject_is_drop", setup: |w| {
                let c = w.chain("b1-in", vec![rule(RuleType::Reject, Condition::default())]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| { dropped(r, DropReason::RuleReject); assert!(r.generated.is_empty(), "bridges never send ICMP"); } },
        Sc { name: "bridge_out_chain_on_unicast", setup: |w| {
                w.learn(w.b1, 0, VM2, w.v2);
                let c = w.chain("b1-out", vec![rule(RuleType::Drop, Condition { out_ports: vec![w.v2], ..Default::default() })]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.outbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| dropped(r, DropReason::RuleDrop) },
        // As in MidoNet: the outbound filter applies to floods as
        // well as to unicast (it used not to: bridge_out_chain_not_on_flood).
        Sc { name: "bridge_out_chain_on_flood", setup: |w| {
                let c = w.chain("b1-out", vec![rule(RuleType::Drop, Condition::default())]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.outbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| { dropped(r, DropReason::RuleDrop); assert!(r.actions.is_empty()); } },
        Sc { name: "bridge_out_chain_drops_udp_broadcast", setup: |w| {
                let c = w.chain("b1-out", vec![rule(RuleType::Drop, Condition { nw_proto: Some(17), ..Default::default() })]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.outbound_filter_id = Some(c));
            }, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.11,ip4.dst=10.0.0.255,udp.src=1,udp.dst=2",
            check: |_, r| {
                dropped(r, DropReason::RuleDrop);
                assert!(r.actions.is_empty(), "no port gets the broadcast");
                assert!(r.mask.is_marked(FieldId::IpProto));
            }},
        Sc { name: "port_in_chain_drop", setup: |w| {
                let c = w.chain("v1-in", vec![rule(RuleType::Drop, Condition { nw_src_address: Some("10.0.0.0".parse().expect("ip")), nw_src_length: Some(24), ..Default::default() })]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| {
                dropped(r, DropReason::RuleDrop);
                assert_eq!(r.mask.prefix_len(FieldId::Ipv4Src), 24, "CIDR rules mark only the prefix");
            }},
        Sc { name: "port_out_chain_drop", setup: |w| {
                w.learn(w.b1, 0, VM2, w.v2);
                let c = w.chain("v2-out", vec![rule(RuleType::Drop, Condition::default())]);
                let p = w.v2; w.t.edit_port(p, |x| x.outbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| dropped(r, DropReason::RuleDrop) },
        // --------------------------------------------------------------- vlan
        Sc { name: "vlan_access_to_trunks_pushes", setup: vlan_world, ingress: |w| w.p["x1"],
            pkt: "eth.src=02:00:00:00:10:01,eth.dst=02:00:00:00:10:99,ip4.src=10.1.0.1,ip4.dst=10.1.0.2,udp.src=1,udp.dst=2",
            check: |w, r| {
                fwd(r, &[w.p["t1"], w.p["t2"]]);
                assert_eq!(r.actions[0], SimAction::Rewrite(Action::PushVlan { vid: 100, pcp: 0 }));
            }},
        Sc { name: "vlan_trunk_to_access_pops", setup: vlan_world, ingress: |w| w.p["t1"],
            pkt: "eth.src=02:00:00:00:30:01,eth.dst=02:00:00:00:20:02,vlan.vid=200,ip4.src=10.2.0.1,ip4.dst=10.2.0.2,udp.src=1,udp.dst=2",
            check: |w, r| {
                fwd(r, &[w.p["x2"]]);
                assert_eq!(r.actions[0], SimAction::Rewrite(Action::PopVlan));
            }},
        Sc { name: "vlan_trunk_broadcast", setup: vlan_world, ingress: |w| w.p["t1"],
            pkt: "eth.src=02:00:00:00:30:01,eth.dst=ff:ff:ff:ff:ff:ff,vlan.vid=100,ip4.src=10.1.0.9,ip4.dst=10.1.0.255,udp.src=1,udp.dst=2",
            check: |w, r| {
                fwd(r, &[w.p["t2"], w.p["x1"]]);
                assert_eq!(r.actions, vec![SimAction::ToPort(w.p["t2"]), SimAction::Rewrite(Action::PopVlan), SimAction::ToPort(w.p["x1"])]);
            }},
        Sc { name: "vlan_mismatch_dropped", setup: vlan_world, ingress: |w| w.p["t1"],
            pkt: "eth.src=02:00:00:00:30:01,eth.dst=02:00:00:00:20:02,vlan.vid=300,ip4.src=10.2.0.1,ip4.dst=10.2.0.2,udp.src=1,udp.dst=2",
            check: |_, r| dropped(r, DropReason::VlanMismatch) },
        Sc { name: "vlan_tagged_frames_skip_bridge_chains", setup: |w| {
                vlan_world(w);
                let c = w.chain("vb-in", vec![rule(RuleType::Drop, Condition::default())]);
                let vb = w.t.topo.bridges.values().find(|b| b.name == "vlan").map(|b| b.id).expect("vb");
                w.t.edit_bridge(vb, |x| x.inbound_filter_id = Some(c));
            }, ingress: |w| w.p["t1"],
            pkt: "eth.src=02:00:00:00:30:01,eth.dst=02:00:00:00:20:02,vlan.vid=200,ip4.src=10.2.0.1,ip4.dst=10.2.0.2,udp.src=1,udp.dst=2",
            check: |w, r| fwd(r, &[w.p["x2"]]) },
        // ------------------------------------------------------------- router
        Sc { name: "router_forward_between_bridges", setup: none, ingress: v1, pkt: TCP_1_3, check: |w, r| {
            fwd(r, &[w.v3]);
            assert!(has_rewrite(r, Action::SetEthSrc(mac(RP2))));
            assert!(has_rewrite(r, Action::SetEthDst(mac(VM3))));
            assert!(has_rewrite(r, Action::SetTtl(63)));
            assert!(r.tags.contains(&Tag::routes(w.r)) && r.tags.contains(&Tag::router(w.r)));
            assert!(r.tags.contains(&Tag::bridge_arp(w.b2, "10.0.1.5".parse().expect("ip"))));
        }},
        Sc { name: "router_arp_miss_pending", setup: |w| w.with_default(), ingress: v1, pkt: TCP_1_NET, check: |w, r| {
            let gw = "192.0.2.1".parse().expect("ip");
            assert_eq!(r.decision, Decision::ArpPending { router: w.r, ip: gw });
            assert_eq!(gen_kinds(r), vec![(GenKind::ArpRequest, GenTarget::Emit(w.up))]);
            assert!(r.tags.contains(&Tag::arp(w.r, gw)));
            let k = FlowKey::extract(&r.generated[0].frame, InPort::Port(0)).expect("arp");
            assert_eq!((k.arp_op, k.arp_tpa, k.arp_sha), (1, gw, mac(UP)));
        }},
        Sc { name: "router_arp_hit_forwards", setup: |w| { w.with_default(); w.gw_arp(); }, ingress: v1, pkt: TCP_1_NET, check: |w, r| {
            fwd(r, &[w.up]);
            assert!(has_rewrite(r, Action::SetEthDst(mac(GW))));
            assert!(r.mask.prefix_len(FieldId::Ipv4Dst) < 32, "default route keeps dst wildcarded below the table's longest prefix");
        }},
        Sc { name: "router_arp_failed_via_gateway", setup: |w| { w.with_default(); w.state.arp_failed.insert((w.r, "192.0.2.1".parse().expect("ip")), ()); }, ingress: v1, pkt: TCP_1_NET, check: |w, r| {
            dropped(r, DropReason::ArpFailed);
            icmp(r, 3, 0, GenTarget::Ingress(w.bi1));
        }},
        Sc { name: "router_arp_failed_direct", setup: |w| { w.state.arp_failed.insert((w.r, "10.0.1.77".parse().expect("ip")), ()); }, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.77,udp.src=5,udp.dst=6",
            check: |w, r| { dropped(r, DropReason::ArpFailed); icmp(r, 3, 1, GenTarget::Ingress(w.bi1)); } },
        Sc { name: "router_arp_miss_direct_interior", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.77,udp.src=5,udp.dst=6",
            check: |w, r| {
                assert_eq!(r.decision, Decision::ArpPending { router: w.r, ip: "10.0.1.77".parse().expect("ip") });
                assert_eq!(gen_kinds(r), vec![(GenKind::ArpRequest, GenTarget::Ingress(w.bi2))]);
            }},
        // As in MidoNet: a gateway outside the out-port's subnet is
        // never ARPed for: net unreachable at once, nothing parked.
        Sc { name: "router_gateway_outside_port_subnet_net_unreachable", setup: |w| {
                w.t.route(w.r, "0.0.0.0/0", Some(w.up), Some("198.51.100.1"));
            }, ingress: v1, pkt: TCP_1_NET, check: |w, r| {
                dropped(r, DropReason::GatewayOutsideSubnet);
                assert_eq!(r.decision, Decision::Drop { reason: DropReason::GatewayOutsideSubnet, lifetime: DropLifetime::Temporary });
                icmp(r, 3, 0, GenTarget::Ingress(w.bi1));
            }},
        // As in MidoNet: an interior out-port linked to no peer (and
        // not bound as exterior): net unreachable at once, never parked.
        Sc { name: "router_unlinked_interior_port_net_unreachable", setup: |w| {
                let dangling = w.t.router_port(w.r, "10.0.2.1/24", "02:00:00:00:01:04", false);
                w.p.insert("dangling", dangling);
                w.t.route(w.r, "10.0.2.0/24", Some(dangling), None);
            }, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.2.7,udp.src=5,udp.dst=6",
            check: |w, r| {
                dropped(r, DropReason::PortUnplugged);
                icmp(r, 3, 0, GenTarget::Ingress(w.bi1));
            }},
        Sc { name: "router_no_route_net_unreachable", setup: none, ingress: v1, pkt: TCP_1_NET, check: |w, r| {
            dropped(r, DropReason::NoRoute);
            icmp(r, 3, 0, GenTarget::Ingress(w.bi1));
            let k = FlowKey::extract(&r.generated[0].frame, InPort::Port(0)).expect("icmp");
            assert_eq!((k.ipv4_src, k.ipv4_dst, k.eth_dst, k.eth_src), ("10.0.0.1".parse().expect("ip"), "10.0.0.11".parse().expect("ip"), mac(VM1), mac(RP1)));
        }},
        Sc { name: "router_blackhole_route", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.9.1.1,udp.src=5,udp.dst=6",
            check: |_, r| { dropped(r, DropReason::BlackholeRoute); assert!(r.generated.is_empty()); } },
        Sc { name: "router_reject_route", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.8.1.1,udp.src=5,udp.dst=6",
            check: |w, r| { dropped(r, DropReason::RejectRoute); icmp(r, 3, 13, GenTarget::Ingress(w.bi1)); } },
        Sc { name: "router_ttl_exceeded", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,ip.ttl=1,udp.src=5,udp.dst=33434",
            check: |w, r| { dropped(r, DropReason::TtlExceeded); icmp(r, 11, 0, GenTarget::Ingress(w.bi1)); } },
        Sc { name: "router_echo_reply", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.0.1,icmp4.type=8,icmp4.id=5",
            check: |w, r| {
                assert_eq!(r.decision, Decision::Consumed);
                assert_eq!(gen_kinds(r), vec![(GenKind::IcmpEchoReply, GenTarget::Ingress(w.bi1))]);
                let k = FlowKey::extract(&r.generated[0].frame, InPort::Port(0)).expect("icmp");
                assert_eq!((k.icmp_type, k.icmp_id, k.ipv4_src, k.eth_dst), (0, 5, "10.0.0.1".parse().expect("ip"), mac(VM1)));
            }},
        Sc { name: "router_echo_reply_far_port", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.1,icmp4.type=8,icmp4.id=6",
            check: |_, r| assert_eq!(r.decision, Decision::Consumed) },
        Sc { name: "router_local_non_echo_dropped", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.0.1,tcp.src=1,tcp.dst=22",
            check: |_, r| dropped(r, DropReason::LocalNotHandled) },
        Sc { name: "router_answers_arp_on_uplink", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:09:09,arp.spa=192.0.2.1,arp.tpa=192.0.2.2",
            check: |w, r| { assert_eq!(r.decision, Decision::Consumed); assert_eq!(gen_kinds(r), vec![(GenKind::ArpReply, GenTarget::Emit(w.up))]); } },
        Sc { name: "router_arp_request_other_ip_dropped", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:09:09,arp.spa=192.0.2.1,arp.tpa=192.0.2.3",
            check: |_, r| dropped(r, DropReason::ArpNotForUs) },
        Sc { name: "router_arp_reply_learned", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,arp.op=reply,arp.sha=02:00:00:00:09:09,arp.spa=192.0.2.1,arp.tha=02:00:00:00:01:03,arp.tpa=192.0.2.2",
            check: |w, r| {
                assert_eq!(r.decision, Decision::Consumed);
                assert_eq!(r.state_writes, vec![StateWrite::RouterArp { router: w.r, ip: "192.0.2.1".parse().expect("ip"), mac: mac(GW) }]);
            }},
        Sc { name: "router_arp_reply_known_written_again", setup: |w| { w.state.router_arp.insert((w.r, "192.0.2.1".parse().expect("ip")), mac(GW)); }, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,arp.op=reply,arp.sha=02:00:00:00:09:09,arp.spa=192.0.2.1,arp.tha=02:00:00:00:01:03,arp.tpa=192.0.2.2",
            check: |w, r| {
                // A reply answers someone's question: written even when known here.
                assert_eq!(r.decision, Decision::Consumed);
                assert_eq!(r.state_writes, vec![StateWrite::RouterArp { router: w.r, ip: "192.0.2.1".parse().expect("ip"), mac: mac(GW) }]);
            }},
        Sc { name: "router_garp_known_not_written", setup: |w| { w.state.router_arp.insert((w.r, "192.0.2.1".parse().expect("ip")), mac(GW)); }, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:09:09,arp.spa=192.0.2.1,arp.tpa=192.0.2.1",
            check: |_, r| { assert_eq!(r.decision, Decision::Consumed); assert!(r.state_writes.is_empty()); } },
        Sc { name: "router_arp_spoof_outside_subnet_ignored", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,arp.op=reply,arp.sha=02:00:00:00:09:09,arp.spa=8.8.8.8,arp.tha=02:00:00:00:01:03,arp.tpa=192.0.2.2",
            check: |_, r| { dropped(r, DropReason::ArpNotForUs); assert!(r.state_writes.is_empty()); } },
        Sc { name: "router_garp_learned", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:09:09,arp.spa=192.0.2.1,arp.tpa=192.0.2.1",
            check: |_, r| { assert_eq!(r.decision, Decision::Consumed); assert_eq!(r.state_writes.len(), 1); } },
        Sc { name: "router_wrong_dst_mac", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:77:77,ip4.src=198.51.100.7,ip4.dst=10.0.1.5,tcp.src=1,tcp.dst=2",
            check: |_, r| dropped(r, DropReason::RouterWrongDstMac) },
        Sc { name: "router_vlan_tagged_dropped", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,vlan.vid=5,ip4.src=198.51.100.7,ip4.dst=10.0.1.5,tcp.src=1,tcp.dst=2",
            check: |_, r| dropped(r, DropReason::RouterVlanTagged) },
        Sc { name: "router_ipv6_dropped", setup: none, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip6.src=2001:db8::1,ip6.dst=2001:db8::2,udp.src=1,udp.dst=2",
            check: |_, r| dropped(r, DropReason::RouterNotIpv4) },
        Sc { name: "router_admin_down_prohibited", setup: |w| { let x = w.r; w.t.edit_router(x, |r| r.admin_state_up = false) }, ingress: v1, pkt: TCP_1_3,
            check: |w, r| { dropped(r, DropReason::DeviceAdminDown); icmp(r, 3, 13, GenTarget::Ingress(w.bi1)); } },
        Sc { name: "router_port_admin_down_prohibited", setup: |w| { let p = w.rp1; w.t.edit_port(p, |x| x.admin_state_up = false) }, ingress: v1, pkt: TCP_1_3,
            check: |w, r| { dropped(r, DropReason::PortAdminDown); icmp(r, 3, 13, GenTarget::Ingress(w.bi1)); } },
        Sc { name: "router_in_chain_reject", setup: |w| {
                let c = w.chain("r-in", vec![rule(RuleType::Reject, Condition { nw_dst_address: Some("10.0.1.0".parse().expect("ip")), nw_dst_length: Some(24), ..Default::default() })]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_3, check: |w, r| { dropped(r, DropReason::RuleReject); icmp(r, 3, 13, GenTarget::Ingress(w.bi1)); } },
        Sc { name: "router_drop_first_fragment_frag_needed", setup: |w| {
                let c = w.chain("r-in", vec![rule(RuleType::Drop, Condition { nw_proto: Some(17), tp_dst: Some(PortRange { start: 53, end: 53 }), ..Default::default() })]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,ip.frag=first,udp.src=5,udp.dst=53",
            check: |w, r| { dropped(r, DropReason::RuleDrop); icmp(r, 3, 4, GenTarget::Ingress(w.bi1)); } },
        Sc { name: "router_drop_later_fragment_silent", setup: |w| {
                let c = w.chain("r-in", vec![rule(RuleType::Drop, Condition { nw_proto: Some(17), fragment_policy: Some(FragmentPolicy::Nonheader), ..Default::default() })]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,ip.proto=17,ip.frag=later",
            check: |_, r| { dropped(r, DropReason::RuleDrop); assert!(r.generated.is_empty()); } },
        Sc { name: "icmp_not_sent_about_icmp_error", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,ip.ttl=1,icmp4.type=3,icmp4.code=1",
            check: |_, r| { dropped(r, DropReason::TtlExceeded); assert!(r.generated.is_empty()); } },
        Sc { name: "icmp_not_sent_to_broadcast", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=255.255.255.255,udp.src=68,udp.dst=67",
            check: |_, r| { dropped(r, DropReason::NoRoute); assert!(r.generated.is_empty()); } },
        Sc { name: "icmp_not_sent_from_invalid_source", setup: none, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=0.0.0.0,ip4.dst=8.8.8.8,udp.src=68,udp.dst=67",
            check: |_, r| { dropped(r, DropReason::NoRoute); assert!(r.generated.is_empty()); } },
        Sc { name: "lpm_longest_prefix_wins", setup: |w| { w.t.route_full(w.r, "10.0.1.0/25", "0.0.0.0/0", None, None, 100, RouteType::BlackHole); }, ingress: v1, pkt: TCP_1_3,
            check: |_, r| { dropped(r, DropReason::BlackholeRoute); let l = r.mask.prefix_len(FieldId::Ipv4Dst); assert!((25..32).contains(&l), "{l}"); } },
        Sc { name: "lpm_shorter_prefix_outside_longer", setup: |w| { w.t.route_full(w.r, "10.0.1.0/25", "0.0.0.0/0", None, None, 100, RouteType::BlackHole); }, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.200,udp.src=5,udp.dst=6",
            check: |w, r| assert_eq!(r.decision, Decision::ArpPending { router: w.r, ip: "10.0.1.200".parse().expect("ip") }) },
        Sc { name: "route_source_prefix_selects", setup: |w| { w.t.route_full(w.r, "10.0.1.0/24", "10.0.0.0/28", None, None, 10, RouteType::Reject); }, ingress: v1, pkt: TCP_1_3,
            check: |_, r| { dropped(r, DropReason::RejectRoute); assert!(r.mask.prefix_len(FieldId::Ipv4Src) >= 28); } },
        Sc { name: "route_source_mismatch_falls_back", setup: |w| { w.t.route_full(w.r, "10.0.1.0/25", "172.16.0.0/16", None, None, 100, RouteType::BlackHole); }, ingress: v1, pkt: TCP_1_3,
            check: |w, r| fwd(r, &[w.v3]) },
        Sc { name: "route_lowest_weight_wins", setup: |w| { w.t.route_full(w.r, "10.0.1.0/24", "0.0.0.0/0", None, None, 50, RouteType::BlackHole); }, ingress: v1, pkt: TCP_1_3,
            check: |_, r| dropped(r, DropReason::BlackholeRoute) },
        Sc { name: "loop_guard_temporary_drop", setup: loop_world, ingress: v1, pkt: TCP_1_NET,
            check: |_, r| assert_eq!(r.decision, Decision::Drop { reason: DropReason::LoopGuard, lifetime: DropLifetime::Temporary }) },
        Sc { name: "router_to_router_next_hop_from_peer_port", setup: |w| {
                // r ─ 172.16.0.0/30 ─ r2; r2 owns 203.0.113.0/24 on an exterior port.
                let r2 = w.t.router("tenant");
                let a = w.t.router_port(w.r, "172.16.0.1/30", "02:00:00:00:0a:01", false);
                let b = w.t.router_port(r2, "172.16.0.2/30", "02:00:00:00:0a:02", false);
                let ext = w.t.router_port(r2, "203.0.113.1/24", "02:00:00:00:0a:03", true);
                w.t.link(a, b);
                w.p.insert("r2ext", ext);
                w.t.route(w.r, "203.0.113.0/24", Some(a), Some("172.16.0.2"));
                w.t.route(r2, "203.0.113.0/24", Some(ext), None);
                w.state.router_arp.insert((r2, "203.0.113.9".parse().expect("ip")), mac("02:00:00:00:0b:09"));
            }, ingress: v1,
            pkt: "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=203.0.113.9,tcp.src=1,tcp.dst=2",
            check: |w, r| {
                fwd(r, &[w.p["r2ext"]]);
                assert!(has_rewrite(r, Action::SetTtl(62)), "two router hops");
                assert!(has_rewrite(r, Action::SetEthDst(mac("02:00:00:00:0b:09"))));
                assert!(r.trace.iter().any(|s| matches!(s, TraceStep::NextHop { via, .. } if via == "peer router port")));
            }},
        Sc { name: "mirror_loop_is_bounded", setup: |w| {
                // b1's inbound mirror copies to a port whose peer is on b1 again.
                w.learn(w.b1, 0, VM2, w.v2);
                let a = w.t.bridge_iport(w.b1, None);
                let b = w.t.bridge_iport(w.b1, None);
                w.t.link(a, b);
                let m = w.t.mirror(a, vec![]);
                let bid = w.b1;
                w.t.edit_bridge(bid, |x| x.inbound_mirror_ids.push(m));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| {
                // As in MidoNet: a mirror loop hits the device limit
                // and ends in an error drop, for the whole packet.
                assert_eq!(r.decision, Decision::Drop { reason: DropReason::LoopGuard, lifetime: DropLifetime::Temporary });
                assert!(r.actions.is_empty(), "a dropped packet has no outputs");
                assert!(r.state_writes.iter().all(|x| matches!(x, StateWrite::Mac { port, .. } if *port == w.v1)), "copies never learn: {:?}", r.state_writes);
            }},
        // As in MidoNet: a mirror's copy leaving through a port
        // passes that port's own egress mirrors, so a port mirrored into
        // itself loops to the device limit and the packet is dropped
        // instead of going out twice.
        Sc { name: "mirror_port_into_itself_hits_loop_guard", setup: |w| {
                w.learn(w.b1, 0, VM2, w.v2);
                let m = w.t.mirror(w.v2, vec![]);
                let p = w.v2; w.t.edit_port(p, |x| x.outbound_mirror_ids.push(m));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| {
                assert_eq!(r.decision, Decision::Drop { reason: DropReason::LoopGuard, lifetime: DropLifetime::Temporary });
                assert!(r.actions.is_empty(), "not forwarded twice, not forwarded at all");
            }},
        // ---------------------------------------------------------------- nat
        Sc { name: "nat_static_dnat_floating_ip", setup: |w| {
                let c = w.chain("r-in", vec![Rule { rule_type: RuleType::Dnat, flow_action: Some(FlowAction::Accept),
                    condition: Condition { nw_dst_address: Some("192.0.2.10".parse().expect("ip")), nw_dst_length: Some(32), ..Default::default() },
                    nat_targets: vec![NatTarget { address_from: "10.0.1.5".parse().expect("ip"), address_to: "10.0.1.5".parse().expect("ip"), port_from: 0, port_to: 0 }], ..Default::default() }]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.7,ip4.dst=192.0.2.10,tcp.src=5555,tcp.dst=22",
            check: |w, r| { fwd(r, &[w.v3]); assert!(has_rewrite(r, Action::SetIpv4Dst("10.0.1.5".parse().expect("ip")))); } },
        Sc { name: "nat_static_snat_outbound", setup: |w| {
                w.with_default(); w.gw_arp();
                let c = w.chain("r-out", vec![Rule { rule_type: RuleType::Snat, flow_action: Some(FlowAction::Accept),
                    condition: Condition { out_ports: vec![w.up], nw_src_address: Some("10.0.1.5".parse().expect("ip")), nw_src_length: Some(32), ..Default::default() },
                    nat_targets: vec![NatTarget { address_from: "192.0.2.10".parse().expect("ip"), address_to: "192.0.2.10".parse().expect("ip"), port_from: 0, port_to: 0 }], ..Default::default() }]);
                let x = w.r; w.t.edit_router(x, |r| r.outbound_filter_id = Some(c));
            }, ingress: v3,
            pkt: "eth.src=02:00:00:00:00:05,eth.dst=02:00:00:00:01:02,ip4.src=10.0.1.5,ip4.dst=198.51.100.7,tcp.src=22,tcp.dst=5555",
            check: |w, r| { fwd(r, &[w.up]); assert!(has_rewrite(r, Action::SetIpv4Src("192.0.2.10".parse().expect("ip")))); } },
        Sc { name: "nat_rev_dnat_restores_source", setup: |w| {
                w.with_default(); w.gw_arp();
                let d = w.chain("r-in", vec![Rule { rule_type: RuleType::Dnat, flow_action: Some(FlowAction::Accept),
                    condition: Condition { nw_dst_address: Some("192.0.2.10".parse().expect("ip")), nw_dst_length: Some(32), ..Default::default() },
                    nat_targets: vec![NatTarget { address_from: "10.0.1.5".parse().expect("ip"), address_to: "10.0.1.5".parse().expect("ip"), port_from: 0, port_to: 0 }], ..Default::default() }]);
                let o = w.chain("r-out", vec![Rule { rule_type: RuleType::RevDnat, flow_action: Some(FlowAction::Accept), ..Default::default() }]);
                let x = w.r; w.t.edit_router(x, |r| { r.inbound_filter_id = Some(d); r.outbound_filter_id = Some(o); });
            }, ingress: v3,
            pkt: "eth.src=02:00:00:00:00:05,eth.dst=02:00:00:00:01:02,ip4.src=10.0.1.5,ip4.dst=198.51.100.7,tcp.src=22,tcp.dst=5555",
            check: |w, r| {
                fwd(r, &[w.up]);
                assert!(has_rewrite(r, Action::SetIpv4Src("192.0.2.10".parse().expect("ip"))));
                assert!(r.tags.contains(&Tag::static_nat()));
            }},
        Sc { name: "nat_dynamic_snat_translates_address_and_port", setup: |w| {
                w.with_default(); w.gw_arp();
                let c = w.chain("r-out", vec![Rule { rule_type: RuleType::Snat, flow_action: Some(FlowAction::Accept),
                    condition: Condition { out_ports: vec![w.up], ..Default::default() },
                    nat_targets: vec![NatTarget { address_from: "192.0.2.2".parse().expect("ip"), address_to: "192.0.2.2".parse().expect("ip"), port_from: 1024, port_to: 1087 }], ..Default::default() }]);
                let x = w.r; w.t.edit_router(x, |r| r.outbound_filter_id = Some(c));
                // Ports 1024-1087 are block 16; the store granted it.
                let device = midonet_state::TrackerId::from(w.r.cast::<Device>());
                w.flow.grant(midonet_state::BlockKey { device, ip: "192.0.2.2".parse().expect("ip"), block: 16 }, NOW);
            }, ingress: v1, pkt: TCP_1_NET, check: |w, r| {
                fwd(r, &[w.up]);
                assert!(has_rewrite(r, Action::SetIpv4Src("192.0.2.2".parse().expect("ip"))));
                assert!(r.actions.iter().any(|a| matches!(a, SimAction::Rewrite(Action::SetL4Src(p)) if (1024..=1087).contains(p))), "{}", r.render());
                assert_eq!(r.nat.len(), 1);
                assert!(r.tags.contains(&Tag::nat(&r.nat[0].key)));
            } },
        Sc { name: "nat_dynamic_snat_needs_a_block", setup: |w| {
                w.with_default(); w.gw_arp();
                let c = w.chain("r-out", vec![Rule { rule_type: RuleType::Snat, flow_action: Some(FlowAction::Accept),
                    nat_targets: vec![NatTarget { address_from: "192.0.2.2".parse().expect("ip"), address_to: "192.0.2.2".parse().expect("ip"), port_from: 1024, port_to: 1087 }], ..Default::default() }]);
                let x = w.r; w.t.edit_router(x, |r| r.outbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_NET, check: |w, r| {
                dropped(r, DropReason::NatNeedBlock);
                let b = r.need_block.expect("the block to claim");
                assert_eq!((b.block, b.device), (16, midonet_state::TrackerId::from(w.r.cast::<Device>())));
                assert!(r.tags.contains(&Tag::snat_block(&b)));
                assert!(r.nat.is_empty());
            } },
        Sc { name: "nat_match_dst_rewritten", setup: |w| {
                let c = w.chain("r-in", vec![
                    Rule { rule_type: RuleType::Dnat, flow_action: Some(FlowAction::Continue),
                        condition: Condition { nw_dst_address: Some("192.0.2.10".parse().expect("ip")), nw_dst_length: Some(32), ..Default::default() },
                        nat_targets: vec![NatTarget { address_from: "10.0.1.5".parse().expect("ip"), address_to: "10.0.1.5".parse().expect("ip"), port_from: 0, port_to: 0 }], ..Default::default() },
                    rule(RuleType::Drop, Condition { match_nw_dst_rewritten: true, ..Default::default() }),
                ]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.7,ip4.dst=192.0.2.10,tcp.src=5555,tcp.dst=22",
            check: |_, r| dropped(r, DropReason::RuleDrop) },
        // -------------------------------------------------------------- chains
        Sc { name: "chain_jump_return_then_drop", setup: |w| {
                let b = w.chain("B", vec![rule(RuleType::Return, Condition { tp_dst: Some(PortRange { start: 80, end: 80 }), nw_proto: Some(6), ..Default::default() }), rule(RuleType::Accept, Condition::default())]);
                let a = w.chain("A", vec![Rule { rule_type: RuleType::Jump, jump_chain_id: Some(b), ..Default::default() }, rule(RuleType::Drop, Condition { nw_proto: Some(6), ..Default::default() })]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| dropped(r, DropReason::RuleDrop) },
        Sc { name: "chain_jump_accept", setup: |w| {
                let b = w.chain("B", vec![rule(RuleType::Return, Condition { tp_dst: Some(PortRange { start: 81, end: 81 }), nw_proto: Some(6), ..Default::default() }), rule(RuleType::Accept, Condition::default())]);
                let a = w.chain("A", vec![Rule { rule_type: RuleType::Jump, jump_chain_id: Some(b), ..Default::default() }, rule(RuleType::Drop, Condition { nw_proto: Some(6), ..Default::default() })]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.v2]) },
        Sc { name: "chain_jump_cycle_ignored", setup: |w| {
                let a = w.t.chain("A");
                let b = w.t.chain("B");
                w.t.rule(a, Rule { rule_type: RuleType::Jump, jump_chain_id: Some(b), ..Default::default() });
                w.t.rule(b, Rule { rule_type: RuleType::Jump, jump_chain_id: Some(a), ..Default::default() });
                w.t.rule(b, rule(RuleType::Drop, Condition::default()));
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| dropped(r, DropReason::RuleDrop) },
        Sc { name: "chain_jump_to_missing_chain_ignored", setup: |w| {
                let a = w.chain("A", vec![Rule { rule_type: RuleType::Jump, jump_chain_id: Some(ChainId::from_uuid(uuid::Uuid::from_u128(0xdead))), ..Default::default() }]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.v2]) },
        Sc { name: "l2_transform_push_vlan", setup: |w| {
                let a = w.chain("A", vec![Rule { rule_type: RuleType::L2Transform, push_vlan: Some(42), ..Default::default() }]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| {
                fwd(r, &[w.v2]);
                assert_eq!(r.actions[0], SimAction::Rewrite(Action::PushVlan { vid: 42, pcp: 0 }));
            }},
        Sc { name: "redirect_egress_skips_filters", setup: |w| {
                let drop_all = w.chain("v3-out", vec![rule(RuleType::Drop, Condition::default())]);
                let p3 = w.v3; w.t.edit_port(p3, |x| x.outbound_filter_id = Some(drop_all));
                let a = w.chain("A", vec![Rule { rule_type: RuleType::Redirect, target_port_id: Some(w.v3), ..Default::default() }]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.v3]) },
        Sc { name: "redirect_ingress", setup: |w| {
                let v4 = w.t.bridge_port(w.b2);
                w.p.insert("v4", v4);
                let a = w.chain("A", vec![Rule { rule_type: RuleType::Redirect, target_port_id: Some(w.v3), ingress: true, ..Default::default() }]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.p["v4"]]) },
        // midonet-behaviour §2.8: the rule as MidoNet's REST API spells it,
        // an l2_transform whose flowAction is redirect (egress at v3).
        Sc { name: "redirect_midonet_rest_form", setup: |w| {
                let body = format!(r#"{{"type":"l2_transform","flowAction":"redirect","targetPortId":"{}","ingress":false,"failOpen":false}}"#, w.v3);
                let rule: Rule = serde_json::from_str(&body).expect("MidoNet's redirect form parses");
                let a = w.chain("A", vec![rule]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.v3]) },
        // flowAction accept: a VLAN transform only, then the packet goes on.
        Sc { name: "l2_transform_midonet_rest_form_accept", setup: |w| {
                let rule: Rule = serde_json::from_str(r#"{"type":"l2_transform","flowAction":"accept","pushVlan":42}"#).expect("parses");
                let a = w.chain("A", vec![rule]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| {
                fwd(r, &[w.v2]);
                assert_eq!(r.actions[0], SimAction::Rewrite(Action::PushVlan { vid: 42, pcp: 0 }));
            }},
        Sc { name: "redirect_target_down_fail_open", setup: |w| {
                let p3 = w.v3; w.t.edit_port(p3, |x| x.admin_state_up = false);
                let a = w.chain("A", vec![Rule { rule_type: RuleType::Redirect, target_port_id: Some(w.v3), fail_open: true, ..Default::default() }]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.v2]) },
        Sc { name: "redirect_target_down_closed", setup: |w| {
                let p3 = w.v3; w.t.edit_port(p3, |x| x.admin_state_up = false);
                let a = w.chain("A", vec![Rule { rule_type: RuleType::Redirect, target_port_id: Some(w.v3), ..Default::default() }]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_filter_id = Some(a));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| dropped(r, DropReason::RedirectTargetDown) },
        Sc { name: "traversed_device_condition", setup: |w| {
                let c = w.chain("r-in", vec![rule(RuleType::Drop, Condition { traversed_device: Some(w.b1.cast()), ..Default::default() })]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_3, check: |_, r| dropped(r, DropReason::RuleDrop) },
        Sc { name: "traversed_device_not_traversed", setup: |w| {
                let c = w.chain("r-in", vec![rule(RuleType::Drop, Condition { traversed_device: Some(w.b1.cast()), ..Default::default() })]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: up,
            pkt: "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=198.51.100.7,ip4.dst=10.0.1.5,tcp.src=1,tcp.dst=2",
            check: |w, r| fwd(r, &[w.v3]) },
        Sc { name: "port_group_ingress_condition", setup: |w| {
                let g = w.t.port_group("vms", &[w.v1]);
                let c = w.chain("r-in", vec![rule(RuleType::Drop, Condition { port_group: Some(g), ..Default::default() })]);
                let x = w.r; w.t.edit_router(x, |r| r.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_3, check: |_, r| dropped(r, DropReason::RuleDrop) },
        Sc { name: "port_group_out_condition", setup: |w| {
                w.learn(w.b1, 0, VM2, w.v2);
                let g = w.t.port_group("protected", &[w.v2]);
                let c = w.chain("b1-out", vec![rule(RuleType::Drop, Condition { out_port_group: Some(g), ..Default::default() })]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.outbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| dropped(r, DropReason::RuleDrop) },
        Sc { name: "ip_addr_group_src_condition", setup: |w| {
                let g = w.t.ip_addr_group("sg", &["10.0.0.11"]);
                let c = w.chain("b1-in", vec![rule(RuleType::Drop, Condition { ip_addr_group_src: Some(g), ..Default::default() })]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| dropped(r, DropReason::RuleDrop) },
        Sc { name: "ip_addr_group_dst_inverted", setup: |w| {
                let g = w.t.ip_addr_group("sg", &["10.0.0.12"]);
                let c = w.chain("b1-in", vec![rule(RuleType::Drop, Condition { ip_addr_group_dst: Some(g), inv_ip_addr_group_dst: true, ..Default::default() })]);
                let b = w.b1; w.t.edit_bridge(b, |x| x.inbound_filter_id = Some(c));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.v2]) },
        // ------------------------------------------------------------- mirrors
        Sc { name: "mirror_port_pre_in", setup: |w| { let m1 = mon_port(w); let m = w.t.mirror(m1, vec![]); let p = w.v1; w.t.edit_port(p, |x| x.inbound_mirror_ids.push(m)); },
            ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.p["m1"], w.v2]) },
        Sc { name: "mirror_port_post_in_after_filter", setup: |w| {
                let m1 = mon_port(w); let m = w.t.mirror(m1, vec![]);
                let c = w.chain("v1-in", vec![rule(RuleType::Drop, Condition::default())]);
                let p = w.v1; w.t.edit_port(p, |x| { x.post_in_filter_mirror_ids.push(m); x.inbound_filter_id = Some(c); });
            }, ingress: v1, pkt: TCP_1_2, check: |_, r| { dropped(r, DropReason::RuleDrop); assert!(r.actions.is_empty(), "post-in mirror never sees a dropped packet"); } },
        Sc { name: "mirror_port_pre_out", setup: |w| { let m1 = mon_port(w); let m = w.t.mirror(m1, vec![]); let p = w.v2; w.t.edit_port(p, |x| x.pre_out_filter_mirror_ids.push(m)); },
            ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.p["m1"], w.v2]) },
        Sc { name: "mirror_port_post_out", setup: |w| { let m1 = mon_port(w); let m = w.t.mirror(m1, vec![]); let p = w.v2; w.t.edit_port(p, |x| x.outbound_mirror_ids.push(m)); },
            ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.p["m1"], w.v2]) },
        Sc { name: "mirror_device_in", setup: |w| { let m1 = mon_port(w); let m = w.t.mirror(m1, vec![]); let b = w.b1; w.t.edit_bridge(b, |x| x.inbound_mirror_ids.push(m)); },
            ingress: v1, pkt: TCP_1_2, check: |w, r| fwd(r, &[w.p["m1"], w.v2]) },
        Sc { name: "mirror_router_out_sees_rewrites", setup: |w| { let m1 = mon_port(w); let m = w.t.mirror(m1, vec![]); let x = w.r; w.t.edit_router(x, |r| r.outbound_mirror_ids.push(m)); },
            ingress: v1, pkt: TCP_1_3, check: |w, r| {
                fwd(r, &[w.p["m1"], w.v3]);
                assert!(matches!(r.actions[0], SimAction::Rewrite(_)), "the mirror copy carries the router's rewrites");
            }},
        Sc { name: "mirror_condition_not_matching", setup: |w| {
                let m1 = mon_port(w);
                let m = w.t.mirror(m1, vec![Condition { nw_proto: Some(17), ..Default::default() }]);
                let p = w.v1; w.t.edit_port(p, |x| x.inbound_mirror_ids.push(m));
            }, ingress: v1, pkt: TCP_1_2, check: |w, r| { fwd(r, &[w.v2]); assert!(r.mask.is_marked(FieldId::IpProto)); } },
    ]
}

#[test]
fn scenarios_with_golden_traces() {
    let mut failures = Vec::new();
    let all = scenarios();
    let mut names = std::collections::BTreeSet::new();
    for sc in &all {
        assert!(names.insert(sc.name), "duplicate scenario {}", sc.name);
        let mut w = W::std();
        (sc.setup)(&mut w);
        let ingress = (sc.ingress)(&w);
        let r = run(&mut w, ingress, sc.pkt);
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (sc.check)(&w, &r)));
        if let Err(e) = checked {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}\n{}", sc.name, render(&w, &r)));
            continue;
        }
        let text = format!(
            "# {}\n# ingress {}\n# packet {}\n{}",
            sc.name,
            ingress,
            sc.pkt,
            render(&w, &r)
        );
        let text = w.names().iter().fold(text, |t, (id, n)| t.replace(id, n));
        if let Err(e) = golden(sc.name, &text) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}
