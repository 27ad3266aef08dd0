//! The three benchmark worlds, shared by the criterion bench and the
//! no-allocation test (included with `#[path]`).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use midonet_model::{ChainId, Condition, PortId, PortRange, Rule, RuleType};
use midonet_sim::builder::TopoBuilder;
use midonet_sim::*;

pub struct World {
    pub snap: Snapshot,
    pub state: MemState,
    pub ingress: PortId,
    pub packets: Vec<(FlowKey, Vec<u8>)>,
}

impl World {
    pub fn input(&self, i: usize) -> SimInput<'_> {
        let (key, frame) = &self.packets[i % self.packets.len()];
        SimInput {
            ingress: self.ingress,
            key: *key,
            frame,
            now: Duration::from_secs(1),
            hash_seed: 1,
            trace: false,
            generated: false,
            split_reverse_nat: false,
        }
    }
}

fn pkt(desc: &str) -> (FlowKey, Vec<u8>) {
    let key: FlowKey = desc.parse().expect("packet");
    let mut frame = Vec::new();
    key.to_frame(&[0u8; 64], &mut frame);
    (FlowKey::extract(&frame, key.in_port).expect("frame"), frame)
}

fn mac(s: &str) -> MacAddr {
    s.parse().expect("mac")
}

/// (a) Two VMs on one bridge, both MACs learned.
pub fn l2() -> World {
    let mut t = TopoBuilder::new(0xb1);
    let b = t.bridge("b");
    let v1 = t.bridge_port(b);
    let v2 = t.bridge_port(b);
    let _v3 = t.bridge_port(b);
    let mut state = MemState::default();
    state.macs.insert((b, 0, mac("02:00:00:00:00:01")), v1);
    state.macs.insert((b, 0, mac("02:00:00:00:00:02")), v2);
    let packets = (0..64)
        .map(|i| pkt(&format!("eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.1,ip4.dst=10.0.0.2,tcp.src={},tcp.dst=80", 30000 + i)))
        .collect();
    World { snap: Snapshot::build(&t.build()), state, ingress: v1, packets }
}

fn chain20(t: &mut TopoBuilder, name: &str) -> ChainId {
    let c = t.chain(name);
    for i in 0..19u16 {
        // Rules that look at different fields and do not match the traffic.
        let cond = match i % 4 {
            0 => Condition {
                nw_proto: Some(6),
                tp_dst: Some(PortRange { start: 1000 + i, end: 1000 + i }),
                ..Default::default()
            },
            1 => Condition {
                nw_src_address: Some(format!("172.16.{i}.0").parse().expect("ip")),
                nw_src_length: Some(24),
                ..Default::default()
            },
            2 => Condition {
                nw_proto: Some(17),
                tp_dst: Some(PortRange { start: 53, end: 53 }),
                ..Default::default()
            },
            _ => Condition {
                dl_src: Some(format!("02:00:00:00:ff:{i:02x}").parse().expect("mac")),
                ..Default::default()
            },
        };
        t.rule(c, Rule { rule_type: RuleType::Drop, condition: cond, ..Default::default() });
    }
    t.rule(c, Rule { rule_type: RuleType::Accept, ..Default::default() });
    c
}

/// (b) VM → bridge → router → bridge → VM, a 20-rule chain on each bridge.
pub fn routed() -> World {
    let mut t = TopoBuilder::new(0xb2);
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
    let c1 = chain20(&mut t, "left-in");
    let c2 = chain20(&mut t, "right-in");
    t.edit_bridge(b1, |b| b.inbound_filter_id = Some(c1));
    t.edit_bridge(b2, |b| b.inbound_filter_id = Some(c2));
    let mut state = MemState::default();
    state.macs.insert((b1, 0, mac("02:00:00:00:00:01")), v1);
    state.macs.insert((b2, 0, mac("02:00:00:00:01:02")), bi2);
    let packets = (0..64)
        .map(|i| pkt(&format!("eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.1.5,tcp.src={},tcp.dst=80", 30000 + i)))
        .collect();
    World { snap: Snapshot::build(&t.build()), state, ingress: v1, packets }
}

/// (c) A router with 10,000 routes (random /16–/28 prefixes, deterministic),
/// traffic entering on one uplink and routed out of another via a gateway.
pub fn big_table() -> World {
    let mut t = TopoBuilder::new(0xb3);
    let r = t.router("r");
    let up1 = t.router_port(r, "192.0.2.2/30", "02:00:00:00:01:01", true);
    let up2 = t.router_port(r, "198.51.100.2/30", "02:00:00:00:01:02", true);
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut dsts = Vec::new();
    for i in 0..10_000u32 {
        let len = 16 + (next() % 13) as u8;
        let a = (next() as u32) & midonet_model::port::prefix_mask(len);
        let net = Ipv4Addr::from(a);
        t.route(r, &format!("{net}/{len}"), Some(up2), Some("198.51.100.1"));
        if i % 16 == 0 {
            dsts.push(Ipv4Addr::from(a | 1));
        }
    }
    t.route(r, "0.0.0.0/0", Some(up2), Some("198.51.100.1"));
    let mut state = MemState::default();
    state.router_arp.insert((r, "198.51.100.1".parse().expect("ip")), mac("02:00:00:00:09:09"));
    let packets = dsts
        .iter()
        .map(|d| pkt(&format!("eth.src=02:00:00:00:09:01,eth.dst=02:00:00:00:01:01,ip4.src=203.0.113.7,ip4.dst={d},udp.src=4000,udp.dst=53")))
        .collect();
    World { snap: Snapshot::build(&t.build()), state, ingress: up1, packets }
}
