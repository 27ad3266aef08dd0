//! The condition set, field by field: one drop rule on v1's inbound chain
//! per row, a packet, and whether it must match.

mod common;

use common::*;
use midonet_model::*;
use midonet_sim::*;

const TCP: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,tcp.src=40000,tcp.dst=80";
const ICMP: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,icmp4.type=8,icmp4.id=3";
const FIRST: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,ip.frag=first,udp.src=1,udp.dst=53";
const LATER: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,ip.proto=17,ip.frag=later";
const TAGGED: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,vlan.vid=7,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,tcp.src=40000,tcp.dst=80";
const V6: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip6.src=2001:db8::1,ip6.dst=2001:db8:1::2,udp.src=1,udp.dst=2";

fn ip(s: &str) -> Option<std::net::IpAddr> {
    Some(s.parse().expect("ip"))
}
fn range(a: u16, b: u16) -> Option<PortRange> {
    Some(PortRange { start: a, end: b })
}

#[test]
fn every_condition_field_with_inversion() {
    let d = Condition::default;
    let rows: Vec<(&str, Condition, &str, bool)> = vec![
        ("dl_type", Condition { dl_type: Some(0x0800), ..d() }, TCP, true),
        ("dl_type inv", Condition { dl_type: Some(0x0800), inv_dl_type: true, ..d() }, TCP, false),
        ("dl_src exact", Condition { dl_src: Some(VM1.parse().expect("mac")), ..d() }, TCP, true),
        (
            "dl_src masked",
            Condition {
                dl_src: Some("02:00:00:ff:ff:ff".parse().expect("mac")),
                dl_src_mask: Some("ffff.ff00.0000".parse().expect("mask")),
                ..d()
            },
            TCP,
            true,
        ),
        (
            "dl_src masked miss",
            Condition {
                dl_src: Some("02:00:01:00:00:01".parse().expect("mac")),
                dl_src_mask: Some("ffff.ff00.0000".parse().expect("mask")),
                ..d()
            },
            TCP,
            false,
        ),
        (
            "dl_dst inv",
            Condition { dl_dst: Some(VM2.parse().expect("mac")), inv_dl_dst: true, ..d() },
            TCP,
            false,
        ),
        ("nw_tos", Condition { nw_tos: Some(0), ..d() }, TCP, true),
        ("nw_tos miss", Condition { nw_tos: Some(4), ..d() }, TCP, false),
        ("nw_proto miss", Condition { nw_proto: Some(17), ..d() }, TCP, false),
        ("nw_proto inv", Condition { nw_proto: Some(17), inv_nw_proto: true, ..d() }, TCP, true),
        (
            "nw_src prefix",
            Condition { nw_src_address: ip("10.0.0.0"), nw_src_length: Some(24), ..d() },
            TCP,
            true,
        ),
        (
            "nw_src inv",
            Condition {
                nw_src_address: ip("10.0.0.0"),
                nw_src_length: Some(24),
                inv_nw_src: true,
                ..d()
            },
            TCP,
            false,
        ),
        ("nw_dst host", Condition { nw_dst_address: ip("10.0.0.12"), ..d() }, TCP, true),
        (
            "nw_dst v6 on v4",
            Condition { nw_dst_address: ip("2001:db8::"), nw_dst_length: Some(32), ..d() },
            TCP,
            false,
        ),
        (
            "nw_dst v6",
            Condition { nw_dst_address: ip("2001:db8::"), nw_dst_length: Some(32), ..d() },
            V6,
            true,
        ),
        (
            "nw_src v6 miss",
            Condition { nw_src_address: ip("2001:db9::"), nw_src_length: Some(32), ..d() },
            V6,
            false,
        ),
        ("tp_src range", Condition { tp_src: range(39999, 40001), ..d() }, TCP, true),
        ("tp_dst miss", Condition { tp_dst: range(81, 90), ..d() }, TCP, false),
        ("tp_dst inv", Condition { tp_dst: range(81, 90), inv_tp_dst: true, ..d() }, TCP, true),
        ("icmp type", Condition { nw_proto: Some(1), tp_src: range(8, 8), ..d() }, ICMP, true),
        ("icmp code", Condition { nw_proto: Some(1), tp_dst: range(0, 0), ..d() }, ICMP, true),
        (
            "icmp type miss",
            Condition { nw_proto: Some(1), tp_src: range(0, 0), ..d() },
            ICMP,
            false,
        ),
        (
            "frag header first",
            Condition { nw_proto: Some(17), tp_dst: range(53, 53), ..d() },
            FIRST,
            true,
        ),
        (
            "frag header later",
            Condition { nw_proto: Some(17), fragment_policy: Some(FragmentPolicy::Header), ..d() },
            LATER,
            false,
        ),
        (
            "frag nonheader later",
            Condition { fragment_policy: Some(FragmentPolicy::Nonheader), ..d() },
            LATER,
            true,
        ),
        (
            "frag nonheader whole",
            Condition { fragment_policy: Some(FragmentPolicy::Nonheader), ..d() },
            TCP,
            false,
        ),
        (
            "frag unfragmented first",
            Condition { fragment_policy: Some(FragmentPolicy::Unfragmented), ..d() },
            FIRST,
            false,
        ),
        (
            "frag any later",
            Condition { fragment_policy: Some(FragmentPolicy::Any), nw_proto: Some(17), ..d() },
            LATER,
            true,
        ),
        ("cond invert", Condition { nw_proto: Some(17), cond_invert: true, ..d() }, TCP, true),
        (
            "cond invert skips frag policy",
            Condition {
                cond_invert: true,
                fragment_policy: Some(FragmentPolicy::Unfragmented),
                ..d()
            },
            LATER,
            false,
        ),
        ("no_vlan untagged", Condition { no_vlan: true, ..d() }, TCP, true),
        ("no_vlan tagged", Condition { no_vlan: true, ..d() }, TAGGED, false),
        ("vlan 7", Condition { vlan: Some(7), ..d() }, TAGGED, true),
        ("vlan 7 untagged", Condition { vlan: Some(7), ..d() }, TCP, false),
        ("in_ports", Condition { in_ports: vec![PortId::nil()], ..d() }, TCP, false),
        (
            "out_ports inv on ingress",
            Condition { out_ports: vec![PortId::nil()], inv_out_ports: true, ..d() },
            TCP,
            true,
        ),
        ("forward flow", Condition { match_forward_flow: true, ..d() }, TCP, true),
        ("return flow", Condition { match_return_flow: true, ..d() }, TCP, false),
        ("dst rewritten", Condition { match_nw_dst_rewritten: true, ..d() }, TCP, false),
        ("empty", d(), TCP, true),
    ];
    let mut bad = Vec::new();
    for (name, cond, pkt, want) in rows {
        let mut w = W::std();
        w.learn(w.b1, 0, VM2, w.v2);
        let c = w.chain(
            "v1-in",
            vec![Rule { rule_type: RuleType::Drop, condition: cond, ..Default::default() }],
        );
        let p = w.v1;
        w.t.edit_port(p, |x| x.inbound_filter_id = Some(c));
        let ingress = w.v1;
        let r = run(&mut w, ingress, pkt);
        let got = drop_reason(&r) == Some(DropReason::RuleDrop);
        if got != want {
            bad.push(format!("{name}: want match={want}, got {}\n{}", r.decision, r.render()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn in_ports_match_the_ingress_port() {
    let mut w = W::std();
    let c = w.chain(
        "v1-in",
        vec![Rule {
            rule_type: RuleType::Drop,
            condition: Condition { in_ports: vec![w.v1], ..Default::default() },
            ..Default::default()
        }],
    );
    let p = w.v1;
    w.t.edit_port(p, |x| x.inbound_filter_id = Some(c));
    let ingress = w.v1;
    assert_eq!(drop_reason(&run(&mut w, ingress, TCP)), Some(DropReason::RuleDrop));
}

#[test]
fn icmp_data_addresses_match_and_make_the_flow_uncacheable() {
    // An ICMP error whose payload is an IPv4 header 10.0.0.12 -> 198.51.100.1.
    let mut inner = [0u8; 28];
    inner[0] = 0x45;
    inner[2..4].copy_from_slice(&28u16.to_be_bytes());
    inner[8] = 64;
    inner[9] = 17;
    inner[12..16].copy_from_slice(&[10, 0, 0, 12]);
    inner[16..20].copy_from_slice(&[198, 51, 100, 1]);
    for (cond, want) in [
        (Condition { icmp_data_src_ip: ip("10.0.0.12"), ..Default::default() }, true),
        (
            Condition {
                icmp_data_dst_ip: ip("198.51.100.0"),
                icmp_data_dst_length: Some(24),
                ..Default::default()
            },
            true,
        ),
        (Condition { icmp_data_src_ip: ip("10.0.0.99"), ..Default::default() }, false),
        (
            Condition {
                icmp_data_src_ip: ip("10.0.0.99"),
                inv_icmp_data_src_ip: true,
                ..Default::default()
            },
            true,
        ),
    ] {
        let mut w = W::std();
        w.learn(w.b1, 0, VM2, w.v2);
        let c = w.chain(
            "v1-in",
            vec![Rule { rule_type: RuleType::Drop, condition: cond, ..Default::default() }],
        );
        let p = w.v1;
        w.t.edit_port(p, |x| x.inbound_filter_id = Some(c));
        let key: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,icmp4.type=3,icmp4.code=3"
            .parse()
            .expect("key");
        let mut frame = Vec::new();
        key.to_frame(&inner, &mut frame);
        let key = FlowKey::extract(&frame, key.in_port).expect("frame");
        let snap = Snapshot::build(&w.t.topo);
        let r = sim(&snap, &w.state, &mut IcmpRateLimiter::unlimited(), w.v1, key, &frame, false);
        assert_eq!(drop_reason(&r) == Some(DropReason::RuleDrop), want, "{}", r.render());
        assert!(r.uncacheable);
    }
}
