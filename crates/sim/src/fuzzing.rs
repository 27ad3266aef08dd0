//! The fuzz entry point: arbitrary bytes → `FlowKey::extract` → simulate on
//! a fixed topology. Used by `fuzz/fuzz_targets/sim_packet.rs` and by a
//! plain `cargo test` that feeds it thousands of pseudo-random inputs, so CI
//! exercises it without cargo-fuzz.
//!
//! Byte 0 picks the ingress port, byte 1 the state (empty, or with learned
//! MACs and ARP entries), the rest is the frame. The only property checked
//! here is "does not panic, and the result is self-consistent"; the
//! megaflow property has its own proptest.

use std::sync::OnceLock;
use std::time::Duration;

use midonet_model::{Condition, PortId, Rule, RuleType};

use crate::builder::TopoBuilder;
use crate::*;

struct Fixture {
    snap: Snapshot,
    ports: Vec<PortId>,
    warm: MemState,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut t = TopoBuilder::new(0xf022);
        let b1 = t.bridge("left");
        let b2 = t.bridge("right");
        let r = t.router("r");
        let v1 = t.bridge_port(b1);
        let v2 = t.bridge_port(b1);
        let v3 = t.bridge_port(b2);
        let bi1 = t.bridge_iport(b1, None);
        let bi2 = t.bridge_iport(b2, None);
        let rp1 = t.router_port(r, "10.0.0.1/24", "02:00:00:00:01:01", false);
        let rp2 = t.router_port(r, "10.0.1.1/24", "02:00:00:00:01:02", false);
        let up = t.router_port(r, "192.0.2.2/30", "02:00:00:00:01:03", true);
        t.link(bi1, rp1);
        t.link(bi2, rp2);
        t.route(r, "10.0.0.0/24", Some(rp1), None);
        t.route(r, "10.0.1.0/24", Some(rp2), None);
        t.route(r, "0.0.0.0/0", Some(up), Some("192.0.2.1"));
        let vb = t.bridge("vlan");
        let trunk = t.bridge_port(vb);
        let vp = t.bridge_iport(vb, Some(100));
        let other = t.bridge_iport(b2, None);
        t.link(vp, other);
        let c = t.chain("in");
        t.rule(
            c,
            Rule {
                rule_type: RuleType::Drop,
                condition: Condition {
                    nw_proto: Some(17),
                    tp_dst: Some(midonet_model::PortRange { start: 53, end: 53 }),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let j = t.chain("jumped");
        t.rule(c, Rule { rule_type: RuleType::Jump, jump_chain_id: Some(j), ..Default::default() });
        t.rule(j, Rule { rule_type: RuleType::Jump, jump_chain_id: Some(c), ..Default::default() });
        t.rule(
            j,
            Rule {
                rule_type: RuleType::Reject,
                condition: Condition {
                    nw_dst_address: Some("10.0.1.99".parse().expect("ip")),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        t.edit_router(r, |x| x.inbound_filter_id = Some(c));
        let m = t.mirror(v2, vec![Condition { nw_proto: Some(1), ..Default::default() }]);
        t.edit_port(v3, |p| p.inbound_mirror_ids.push(m));
        let snap = Snapshot::build(&t.build());
        let mut warm = MemState::default();
        warm.macs.insert((b1, 0, MacAddr([2, 0, 0, 0, 0, 1])), v1);
        warm.macs.insert((b1, 0, MacAddr([2, 0, 0, 0, 0, 2])), v2);
        warm.router_arp.insert((r, "192.0.2.1".parse().expect("ip")), MacAddr([2, 0, 0, 0, 9, 9]));
        warm.router_arp.insert((r, "10.0.1.5".parse().expect("ip")), MacAddr([2, 0, 0, 0, 0, 5]));
        Fixture { snap, ports: vec![v1, v2, v3, up, trunk, bi1, rp1, PortId::nil()], warm }
    })
}

/// Feed one input through extract and simulate; panics only on a bug.
pub fn sim_bytes(data: &[u8]) {
    let f = fixture();
    let (Some(&p), Some(&s)) = (data.first(), data.get(1)) else { return };
    let frame = &data[2..];
    let Ok(key) = FlowKey::extract(frame, InPort::Port(u32::from(p))) else { return };
    let ingress = f.ports[usize::from(p) % f.ports.len()];
    let empty = MemState::default();
    let state = if s & 1 == 0 { &empty } else { &f.warm };
    let mut icmp = IcmpRateLimiter::new(1000, 10);
    let input = SimInput {
        ingress,
        key,
        frame,
        now: Duration::from_secs(u64::from(s)),
        hash_seed: 7,
        trace: s & 2 != 0,
        generated: false,
        split_reverse_nat: false,
    };
    let r = simulate(&f.snap, state, &NoConntrack, &mut icmp, &input);
    // Self-consistency: forwards output somewhere, tags are sorted and
    // unique, generated frames re-key.
    if r.decision == Decision::Forward {
        assert!(r.out_ports().next().is_some(), "forward without output");
    }
    assert!(r.tags.windows(2).all(|w| w[0] < w[1]), "tags sorted and unique");
    for g in &r.generated {
        assert!(FlowKey::extract(&g.frame, InPort::Port(0)).is_ok(), "generated frame parses");
    }
    if input.trace {
        let _ = r.render();
    }
}
