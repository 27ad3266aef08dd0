//! The megaflow invariant as a property: for random topologies (extra
//! routes, random rules on the port, bridge and router chains, random
//! state) and random packets, every packet that differs from the original
//! only in bits outside the result's mask simulates to the same decision
//! and the same actions. Some worlds have DHCP on b1, so the masks of
//! flows on a DHCP bridge are checked to keep DHCP requests out. Rules may
//! ask about conntrack, and half the runs track the packet's connection
//! (as return traffic) at every device, so the lazy lookup's marks are
//! checked too. Rules may be dynamic NAT (forward and reverse): the
//! packet's first simulation stores its bindings, and the perturbed
//! packets, being the same connection wherever a binding was used, must
//! reuse them.
//!
//! Randomness comes from a proptest-chosen seed expanded with xorshift, so
//! failures reproduce from the seed proptest prints.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use midonet_model::*;
use midonet_sim::*;
use midonet_state::{BlockKey, ConnKey, NatBinding, NatKey, NatKind, TrackerId};
use proptest::prelude::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const MACS: [&str; 8] = [VM1, VM2, VM3, RP1, RP2, UP, GW, "ff:ff:ff:ff:ff:ff"];
const NETS: [&str; 8] = [
    "10.0.0.0",
    "10.0.1.0",
    "10.0.0.128",
    "10.8.0.0",
    "192.0.2.0",
    "8.8.0.0",
    "10.0.1.4",
    "0.0.0.0",
];
// 67 and 68: DHCP (answered before the bridge when b1 has DHCP).
const PORTS: [u16; 8] = [22, 53, 80, 443, 40000, 7, 67, 68];

fn rand_ip(rng: &mut Rng) -> Ipv4Addr {
    let base: Ipv4Addr = rng.pick(&NETS).parse().expect("ip");
    Ipv4Addr::from(u32::from(base) | (rng.below(256) as u32))
}

fn rand_cond(rng: &mut Rng) -> Condition {
    let mut c = Condition::default();
    for _ in 0..rng.below(3) {
        match rng.below(13) {
            0 => c.nw_proto = Some(rng.pick(&[1u8, 6, 17])),
            1 => {
                c.nw_src_address = Some(rand_ip(rng).into());
                c.nw_src_length = Some(rng.pick(&[8u8, 16, 24, 25, 32]));
            }
            2 => {
                c.nw_dst_address = Some(rand_ip(rng).into());
                c.nw_dst_length = Some(rng.pick(&[8u8, 16, 24, 30, 32]));
                c.inv_nw_dst = rng.chance(30);
            }
            3 => {
                let p = rng.pick(&PORTS);
                c.tp_dst = Some(PortRange { start: p, end: p.saturating_add(rng.below(3) as u16) });
                c.inv_tp_dst = rng.chance(20);
            }
            4 => c.tp_src = Some(PortRange { start: 0, end: rng.pick(&PORTS) }),
            5 => c.dl_src = Some(rng.pick(&MACS).parse().expect("mac")),
            6 => {
                c.fragment_policy = Some(rng.pick(&[
                    FragmentPolicy::Any,
                    FragmentPolicy::Header,
                    FragmentPolicy::Nonheader,
                    FragmentPolicy::Unfragmented,
                ]))
            }
            7 => c.cond_invert = true,
            8 => c.nw_tos = Some(rng.pick(&[0u8, 4])),
            9 => c.dl_type = Some(rng.pick(&[0x0800u16, 0x0806])),
            11 => c.match_return_flow = true,
            12 => c.match_forward_flow = true,
            _ => c.no_vlan = true,
        }
    }
    c
}

/// Random rules; `rev_pct` percent of them reverse NAT rules (0: the
/// property's usual mix, drawing nothing more from `rng`). `rand_world`
/// adds them to the router's chains only.
fn rand_rules(rng: &mut Rng, rev_pct: u64) -> Vec<Rule> {
    (0..rng.below(4))
        .map(|_| {
            if rev_pct > 0 && rng.chance(rev_pct) {
                return Rule {
                    rule_type: rng.pick(&[RuleType::RevSnat, RuleType::RevDnat]),
                    flow_action: Some(rng.pick(&[FlowAction::Accept, FlowAction::Continue])),
                    condition: if rng.chance(50) { Condition::default() } else { rand_cond(rng) },
                    ..Default::default()
                };
            }
            let t = rng.pick(&[
                RuleType::Accept,
                RuleType::Drop,
                RuleType::Reject,
                RuleType::Return,
                RuleType::Drop,
            ]);
            let mut r = Rule { rule_type: t, condition: rand_cond(rng), ..Default::default() };
            if rng.chance(10) {
                r.rule_type = RuleType::Dnat;
                r.flow_action = Some(FlowAction::Continue);
                let to = rand_ip(rng);
                r.nat_targets =
                    vec![NatTarget { address_from: to, address_to: to, port_from: 0, port_to: 0 }];
            } else if rng.chance(30) {
                // Dynamic NAT, forward or reverse (bindings in `FLOW`).
                r.rule_type = rng.pick(&[
                    RuleType::Snat,
                    RuleType::Dnat,
                    RuleType::RevSnat,
                    RuleType::RevDnat,
                ]);
                r.flow_action = Some(rng.pick(&[FlowAction::Accept, FlowAction::Continue]));
                r.nat_targets = match r.rule_type {
                    RuleType::Snat => vec![NatTarget {
                        address_from: SNAT_IP,
                        address_to: SNAT_IP,
                        port_from: 1024,
                        port_to: 1024 + rng.below(64) as u16,
                    }],
                    RuleType::Dnat => {
                        let to = rand_ip(rng);
                        let p = rng.pick(&PORTS);
                        vec![NatTarget {
                            address_from: to,
                            address_to: to,
                            port_from: p,
                            port_to: p + 2,
                        }]
                    }
                    _ => vec![],
                };
            }
            r
        })
        .collect()
}

fn rand_world(rng: &mut Rng, rev_pct: u64) -> W {
    let mut w = W::std();
    if rng.chance(60) {
        w.with_default();
    }
    if rng.chance(50) {
        w.gw_arp();
    }
    if rng.chance(30) {
        w.dhcp();
    }
    if rng.chance(50) {
        w.learn(w.b1, 0, VM2, w.v2);
    }
    if rng.chance(30) {
        w.learn(w.b1, 0, VM1, w.v2);
    }
    for _ in 0..rng.below(6) {
        let len = rng.pick(&[8u8, 16, 20, 24, 25, 28, 32]);
        let net = Ipv4Addr::from(u32::from(rand_ip(rng)) & midonet_model::port::prefix_mask(len));
        let src = if rng.chance(30) {
            format!("{}/{}", rand_ip(rng), rng.pick(&[8u8, 24, 32]))
        } else {
            "0.0.0.0/0".into()
        };
        let src = {
            let (a, l) = src.split_once('/').expect("cidr");
            let l: u8 = l.parse().expect("len");
            let a = Ipv4Addr::from(
                u32::from(a.parse::<Ipv4Addr>().expect("ip")) & midonet_model::port::prefix_mask(l),
            );
            format!("{a}/{l}")
        };
        let (kind, port, gw) = match rng.below(5) {
            0 => (RouteType::BlackHole, None, None),
            1 => (RouteType::Reject, None, None),
            2 => (RouteType::Normal, Some(w.up), Some("192.0.2.1")),
            3 => (RouteType::Normal, Some(w.rp1), None),
            _ => (RouteType::Normal, Some(w.rp2), None),
        };
        let weight = rng.pick(&[10u32, 100, 100]);
        w.t.route_full(w.r, &format!("{net}/{len}"), &src, port, gw, weight, kind);
    }
    let rules = rand_rules(rng, rev_pct);
    if !rules.is_empty() {
        let c = w.chain("r-in", rules);
        let r = w.r;
        w.t.edit_router(r, |x| x.inbound_filter_id = Some(c));
    }
    let rules = rand_rules(rng, rev_pct);
    if !rules.is_empty() {
        let c = w.chain("r-out", rules);
        let r = w.r;
        w.t.edit_router(r, |x| x.outbound_filter_id = Some(c));
    }
    let rules = rand_rules(rng, 0);
    if !rules.is_empty() {
        let c = w.chain("b1-in", rules);
        let b = w.b1;
        w.t.edit_bridge(b, |x| x.inbound_filter_id = Some(c));
    }
    let rules = rand_rules(rng, 0);
    if !rules.is_empty() {
        let c = w.chain("v1-in", rules);
        let p = w.v1;
        w.t.edit_port(p, |x| x.inbound_filter_id = Some(c));
    }
    w
}

fn rand_packet(rng: &mut Rng) -> String {
    let src = rng.pick(&MACS[..7]);
    let dst = rng.pick(&MACS);
    let mut s = format!("eth.src={src},eth.dst={dst}");
    if rng.chance(5) {
        s += ",vlan.vid=0";
    }
    match rng.below(6) {
        0 => {
            s += &format!(
                ",arp.op={},arp.sha={src},arp.spa={},arp.tpa={}",
                rng.pick(&[1, 2]),
                rand_ip(rng),
                rand_ip(rng)
            );
        }
        n => {
            s += &format!(
                ",ip4.src={},ip4.dst={},ip.ttl={},ip.tos={}",
                rand_ip(rng),
                rand_ip(rng),
                rng.pick(&[1, 2, 64]),
                rng.pick(&[0, 4])
            );
            let frag = rng.pick(&["no", "no", "first", "later"]);
            match n {
                1 | 2 => {
                    s += &format!(
                        ",ip.frag={frag},tcp.src={},tcp.dst={}",
                        rng.pick(&PORTS),
                        rng.pick(&PORTS)
                    )
                }
                3 => {
                    s += &format!(
                        ",ip.frag={frag},udp.src={},udp.dst={}",
                        rng.pick(&PORTS),
                        rng.pick(&PORTS)
                    )
                }
                4 => {
                    s += &format!(",icmp4.type={},icmp4.id={}", rng.pick(&[8, 0, 3]), rng.below(4))
                }
                _ => s += ",ip.proto=17,ip.frag=later",
            }
        }
    }
    s
}

fn rand_bits_v4(rng: &mut Rng, a: Ipv4Addr, keep: u8) -> Ipv4Addr {
    let m = midonet_model::port::prefix_mask(keep);
    let r = u32::from(rand_ip(rng));
    Ipv4Addr::from((u32::from(a) & m) | (r & !m))
}

/// A key agreeing with `k` on every masked bit, random elsewhere.
fn perturb(rng: &mut Rng, k: &FlowKey, m: &FlowMask) -> FlowKey {
    let mut p = *k;
    let free = |f: FieldId| !m.is_marked(f);
    let mac = |rng: &mut Rng| -> midonet_sim::MacAddr { rng.pick(&MACS).parse().expect("mac") };
    if free(FieldId::EthSrc) {
        p.eth_src = mac(rng);
    }
    if free(FieldId::EthDst) {
        p.eth_dst = mac(rng);
    }
    if free(FieldId::VlanVid) {
        p.vlan_vid = if rng.chance(20) { Some(rng.pick(&[0u16, 5])) } else { None };
    }
    if free(FieldId::EthType) {
        p.ethertype = rng.pick(&[0x0800u16, 0x0806, 0x86dd]);
    }
    p.ipv4_src = rand_bits_v4(rng, k.ipv4_src, m.prefix_len(FieldId::Ipv4Src));
    p.ipv4_dst = rand_bits_v4(rng, k.ipv4_dst, m.prefix_len(FieldId::Ipv4Dst));
    if free(FieldId::IpProto) {
        p.ip_proto = rng.pick(&[1u8, 6, 17]);
    }
    if free(FieldId::IpTtl) {
        p.ip_ttl = rng.pick(&[1u8, 2, 64]);
    }
    if free(FieldId::IpTos) {
        p.ip_tos = rng.pick(&[0u8, 4]);
    }
    if free(FieldId::IpFrag) {
        p.ip_frag = rng.pick(&[FragType::No, FragType::First, FragType::Later]);
    }
    if free(FieldId::L4Src) {
        p.l4_src = rng.pick(&PORTS);
    }
    if free(FieldId::L4Dst) {
        p.l4_dst = rng.pick(&PORTS);
    }
    if free(FieldId::IcmpType) {
        p.icmp_type = rng.pick(&[0u8, 3, 8]);
    }
    if free(FieldId::IcmpCode) {
        p.icmp_code = rng.pick(&[0u8, 1]);
    }
    if free(FieldId::IcmpId) {
        p.icmp_id = rng.below(4) as u16;
    }
    if free(FieldId::ArpOp) {
        p.arp_op = rng.pick(&[1u16, 2]);
    }
    if free(FieldId::ArpSpa) {
        p.arp_spa = rand_ip(rng);
    }
    if free(FieldId::ArpTpa) {
        p.arp_tpa = rand_ip(rng);
    }
    if free(FieldId::ArpSha) {
        p.arp_sha = mac(rng);
    }
    p
}

/// The frame of `k`: a DHCP DISCOVER from VM1 when it is UDP 68→67 (so
/// that a flow wrongly covering DHCP requests shows: those get answered),
/// a fixed payload otherwise.
fn frame_for(k: &FlowKey) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Message, MessageType};
    use dhcproto::Encodable;
    let dhcp = k.ethertype == 0x0800
        && k.ip_proto == 17
        && k.ip_frag != FragType::Later
        && (k.l4_src, k.l4_dst) == (68, 67);
    let payload = if dhcp {
        let u = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(7, u, u, u, u, &mac(VM1).0);
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
        m.to_vec().expect("encode")
    } else {
        b"payload!".to_vec()
    };
    let mut f = Vec::new();
    k.to_frame(&payload, &mut f);
    f
}

/// Packets compared, and whether the base simulation used a NAT binding.
fn check(seed: u64) -> Result<(usize, bool), TestCaseError> {
    let mut rng = Rng(seed | 1);
    let w = rand_world(&mut rng, 0);
    let snap = Snapshot::build(&w.t.topo);
    let ingress = rng.pick(&[w.v1, w.v2, w.v3, w.up]);
    let desc = rand_packet(&mut rng);
    let (key, _) = packet(&desc);
    let frame = frame_for(&key);
    let key = FlowKey::extract(&frame, key.in_port).expect("frame re-keys");
    let mut icmp = IcmpRateLimiter::unlimited();
    let ct = MemFlowState::new();
    let track = rng.chance(50);
    for dev in [w.b1.cast::<Device>(), w.b2.cast(), w.r.cast()] {
        let device = TrackerId::from(dev);
        ct.grant(BlockKey { device, ip: SNAT_IP, block: 16 }, NOW);
        if let Some(k) = ConnKey::from_flow(&key, device).filter(|_| track) {
            ct.tables.borrow_mut().conns.track(k.reversed(), 0, NOW).expect("room");
        }
    }
    let sim = |snap: &Snapshot,
               st: &MemState,
               icmp: &mut IcmpRateLimiter,
               ingress,
               key,
               frame: &[u8],
               trace| {
        let input = SimInput {
            ingress,
            key,
            frame,
            now: NOW,
            hash_seed: 42,
            trace,
            generated: false,
            split_reverse_nat: false,
        };
        simulate(snap, st, &ct, icmp, &input)
    };
    // The first simulations store bindings that later lookups in the same
    // path may find: compare against the settled result.
    let mut base = sim(&snap, &w.state, &mut icmp, ingress, key, &frame, false);
    for _ in 0..3 {
        if !base.nat.iter().any(|n| n.created) {
            break;
        }
        base = sim(&snap, &w.state, &mut icmp, ingress, key, &frame, false);
    }
    if base.uncacheable {
        return Ok((0, false));
    }
    let mut compared = 0;
    for _ in 0..12 {
        let p = perturb(&mut rng, &key, &base.mask);
        let f2 = frame_for(&p);
        let Ok(p) = FlowKey::extract(&f2, p.in_port) else { continue };
        // Canonicalisation may zero a field the perturbation set; only
        // packets that really hit the same megaflow count.
        if !base.mask.masked_eq(&key, &p) {
            continue;
        }
        let other = sim(&snap, &w.state, &mut icmp, ingress, p, &f2, false);
        prop_assert_eq!(
            (other.decision, &other.actions),
            (base.decision, &base.actions),
            "megaflow violated\npacket {}\nmask {}\nother {}\nbase:\n{}\nother:\n{}",
            desc,
            key.display_masked(&base.mask),
            p,
            sim(&snap, &w.state, &mut icmp, ingress, key, &frame, true).render(),
            sim(&snap, &w.state, &mut icmp, ingress, p, &f2, true).render()
        );
        compared += 1;
    }
    Ok((compared, !base.nat.is_empty() && compared > 0))
}

const NOW: Duration = Duration::from_secs(1000);
/// The dynamic SNAT address; its block 16 (ports 1024-1087) is granted at
/// every device.
const SNAT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]
    #[test]
    fn packets_outside_the_mask_simulate_the_same(seed in any::<u64>()) {
        check(seed)?;
    }
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

/// Store a `kind` binding at `tracker` whose return traffic is `k` (the
/// packet as it reaches the reverse rule) and restores `orig`.
fn bind_return(
    ct: &MemFlowState,
    kind: NatKind,
    tracker: TrackerId,
    k: &FlowKey,
    orig: NatBinding,
) -> bool {
    let Some(ret) = ConnKey::from_flow(k, tracker) else { return false };
    let (conn, b) = match kind {
        NatKind::Snat => (
            ConnKey {
                src: orig.ip,
                src_port: orig.port,
                dst: ret.src,
                dst_port: ret.src_port,
                ..ret
            },
            NatBinding { ip: ret.dst, port: ret.dst_port },
        ),
        _ => (
            ConnKey {
                src: ret.dst,
                src_port: ret.dst_port,
                dst: orig.ip,
                dst_port: orig.port,
                ..ret
            },
            NatBinding { ip: ret.src, port: ret.src_port },
        ),
    };
    let key = NatKey::new(kind, conn);
    debug_assert_eq!(key.return_key(b), ret);
    ct.nat_bind(&key, b, NOW).is_ok()
}

/// The split property: with bindings for the packet's return traffic at
/// every device, a simulation asked to split either does not (and then
/// gives exactly the unsplit result) or splits so that, for every packet
/// the first half takes (the packet's key under the first half's mask,
/// any connection with a binding restoring the same address and port)
/// and whose translation the second half takes, executing the two halves
/// emits what that packet's own unsplit simulation emits. A split whose
/// second half asked conntrack ([`Split::conntrack`]) is taken by the
/// datapath only for packets whose own connection is tracked there, so
/// the other packets compared are tracked too. Returns the packets
/// compared, whether the flow split, and whether the split checks
/// conntrack.
fn check_split(seed: u64) -> Result<(usize, bool, bool), TestCaseError> {
    let mut rng = Rng(seed | 1);
    // Worlds with reverse NAT rules, where most packets get somewhere:
    // known MACs on b1, next hops with known MACs.
    let mut w = rand_world(&mut rng, 40);
    let (b1, v1, v2, rp1, r) = (w.b1, w.v1, w.v2, w.rp1, w.r);
    w.learn(b1, 0, VM1, v1);
    w.learn(b1, 0, VM2, v2);
    w.learn(b1, 0, RP1, rp1);
    w.gw_arp();
    w.state.router_arp.insert((r, "10.0.0.11".parse().expect("ip")), mac(VM1));
    let snap = Snapshot::build(&w.t.topo);
    let mut ingress = rng.pick(&[w.v1, w.v2, w.v3, w.up]);
    let mut desc = rand_packet(&mut rng);
    if rng.chance(50) {
        // A packet from outside to the router, such as replies are.
        ingress = w.up;
        let rest = desc.split_once(',').and_then(|(_, r)| r.split_once(',')).map_or("", |x| x.1);
        desc = format!("eth.src={GW},eth.dst={UP},{rest}");
    }
    let (key, _) = packet(&desc);
    let frame = frame_for(&key);
    let key = FlowKey::extract(&frame, key.in_port).expect("frame re-keys");
    let mut icmp = IcmpRateLimiter::unlimited();
    let ct = MemFlowState::new();
    let orig_ip = match rng.below(3) {
        0 => "10.0.0.11".parse().expect("ip"),
        1 => "10.0.1.5".parse().expect("ip"),
        _ => rand_ip(&mut rng),
    };
    let orig = NatBinding { ip: orig_ip, port: rng.pick(&PORTS) };
    let track = rng.chance(30);
    for dev in [w.b1.cast::<Device>(), w.b2.cast(), w.r.cast()] {
        let device = TrackerId::from(dev);
        ct.grant(BlockKey { device, ip: SNAT_IP, block: 16 }, NOW);
        if let Some(k) = ConnKey::from_flow(&key, device).filter(|_| track) {
            ct.tables.borrow_mut().conns.track(k.reversed(), 0, NOW).expect("room");
        }
        for kind in [NatKind::Snat, NatKind::Dnat] {
            bind_return(&ct, kind, device, &key, orig);
        }
    }
    let sim = |icmp: &mut IcmpRateLimiter, key, frame: &[u8], split, trace| {
        let input = SimInput {
            ingress,
            key,
            frame,
            now: NOW,
            hash_seed: 42,
            trace,
            generated: false,
            split_reverse_nat: split,
        };
        simulate(&snap, &w.state, &ct, icmp, &input)
    };
    let mut old = sim(&mut icmp, key, &frame, false, false);
    for _ in 0..3 {
        if !old.nat.iter().any(|n| n.created) {
            break;
        }
        old = sim(&mut icmp, key, &frame, false, false);
    }
    let new = sim(&mut icmp, key, &frame, true, false);
    let Some(sp) = new.split.clone() else {
        prop_assert_eq!(
            (new.decision, &new.actions, new.mask, &new.tags, &new.nat),
            (old.decision, &old.actions, old.mask, &old.tags, &old.nat),
            "no split, yet not the unsplit result\npacket {}\n{}",
            desc,
            sim(&mut icmp, key, &frame, true, true).render()
        );
        return Ok((0, false, false));
    };
    if let Some(c) = sp.conntrack {
        // The connection found is the packet's own, at its ingress device.
        prop_assert_eq!(Some(c), ConnKey::from_flow(&key, c.tracker).map(|k| k.reversed()));
        prop_assert!(!new.tags.contains(&Tag::conntrack(&c)), "a per-connection tag");
    }
    let show = |icmp: &mut IcmpRateLimiter, k: FlowKey, f: &[u8]| {
        format!(
            "unsplit:\n{}\nsplit:\n{}",
            sim(icmp, k, f, false, true).render(),
            sim(icmp, k, f, true, true).render()
        )
    };
    prop_assert_eq!(new.decision, Decision::Forward);
    prop_assert_eq!(
        emitted(&frame, &new.unsplit_actions()),
        emitted(&frame, &old.actions),
        "packet {}\n{}",
        desc,
        show(&mut icmp, key, &frame)
    );
    // Packets of other connections: through the same first half (its mask)
    // and, translated, the same second half (the non-restored fields of
    // its mask).
    let restored: &[FieldId] = if sp.kind == NatKind::Snat {
        &[FieldId::Ipv4Dst, FieldId::L4Dst]
    } else {
        &[FieldId::Ipv4Src, FieldId::L4Src]
    };
    let mut both = sp.mask;
    for f in new.mask.fields().filter(|f| !restored.contains(f)) {
        both.mark_prefix(f, new.mask.prefix_len(f));
    }
    let translate = |p: &FlowKey| {
        let mut t = *p;
        if sp.kind == NatKind::Snat {
            (t.ipv4_dst, t.l4_dst) = (orig.ip, orig.port);
        } else {
            (t.ipv4_src, t.l4_src) = (orig.ip, orig.port);
        }
        t
    };
    prop_assert_eq!(translate(&key), sp.key);
    let mut compared = 0;
    for _ in 0..16 {
        let p = perturb(&mut rng, &key, &both);
        let f2 = frame_for(&p);
        let Ok(p) = FlowKey::extract(&f2, p.in_port) else { continue };
        if !sp.mask.masked_eq(&key, &p) || !new.mask.masked_eq(&sp.key, &translate(&p)) {
            continue;
        }
        if !bind_return(&ct, sp.kind, sp.tracker, &p, orig) {
            continue;
        }
        if let Some(c) = sp.conntrack {
            let Some(k) = ConnKey::from_flow(&p, c.tracker) else { continue };
            ct.tables.borrow_mut().conns.track(k.reversed(), 0, NOW).expect("room");
        }
        let other = sim(&mut icmp, p, &f2, false, false);
        let mut split_acts: Vec<SimAction> =
            sp.restore.iter().copied().map(SimAction::Rewrite).collect();
        split_acts.extend(new.actions.iter().copied());
        prop_assert_eq!(
            (other.decision, emitted(&f2, &other.actions)),
            (Decision::Forward, emitted(&f2, &split_acts)),
            "split flows violated\npacket {}\nother {}\nfirst half {}\nsecond half {}\nbase:\n{}\nother:\n{}",
            desc,
            p,
            key.display_masked(&sp.mask),
            sp.key.display_masked(&new.mask),
            show(&mut icmp, key, &frame),
            show(&mut icmp, p, &f2)
        );
        compared += 1;
    }
    Ok((compared, true, sp.conntrack.is_some()))
}

proptest! {
    // Most random worlds drop the packet or never split: many cases.
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn split_flows_do_what_the_unsplit_flows_do(seed in any::<u64>()) {
        check_split(seed)?;
    }
}

#[test]
fn the_split_property_actually_splits() {
    // Guard against a vacuous property: some seeds must split, and their
    // splits be checked against other connections' packets.
    let runs: Vec<(usize, bool, bool)> =
        (1..4000u64).map(|s| check_split(s * 0x9e37_79b9).expect("property holds")).collect();
    let splits = runs.iter().filter(|r| r.1).count();
    let compared: usize = runs.iter().map(|r| r.0).sum();
    assert!(splits >= 20 && compared >= 200, "{splits} splits, {compared} packets compared");
    let ct: usize = runs.iter().filter(|r| r.2).map(|r| r.0).sum();
    assert!(ct >= 10, "only {ct} packets compared behind a conntrack-checking split");
}

#[test]
fn the_property_actually_compares_packets() {
    // Guard against a vacuous property: most seeds must yield comparisons.
    let runs: Vec<(usize, bool)> =
        (1..400u64).map(|s| check(s * 0x9e37_79b9).expect("property holds")).collect();
    let total: usize = runs.iter().map(|r| r.0).sum();
    assert!(total > 2000, "only {total} comparisons");
    let nat = runs.iter().filter(|r| r.1).count();
    assert!(nat >= 10, "only {nat} runs compared packets through a NAT binding");
}
