//! Shared fixtures for the scenario, behaviour and property tests: a
//! reference topology (`W::std`), a runner that simulates with and without
//! tracing (and checks they agree), and golden-file comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use midonet_model::*;
use midonet_sim::builder::TopoBuilder;
use midonet_sim::*;

pub const VM1: &str = "02:00:00:00:00:01";
pub const VM2: &str = "02:00:00:00:00:02";
pub const VM3: &str = "02:00:00:00:00:05";
pub const RP1: &str = "02:00:00:00:01:01";
pub const RP2: &str = "02:00:00:00:01:02";
pub const UP: &str = "02:00:00:00:01:03";
pub const GW: &str = "02:00:00:00:09:09";

pub fn mac(s: &str) -> midonet_sim::MacAddr {
    s.parse().expect("mac")
}

/// The reference world:
///
/// ```text
///  v1 (VM1 10.0.0.11) ─┐                                   ┌─ v3 (VM3 10.0.1.5, seeded)
///  v2 (VM2 10.0.0.12) ─┴ b1 "left" ─ bi1 ═ rp1 ┐     ┌ rp2 ═ bi2 ─ b2 "right"
///                                   10.0.0.1/24 r "edge" 10.0.1.1/24
///                                          up 192.0.2.2/30 (exterior uplink, gw 192.0.2.1)
///  routes: 10.0.0.0/24→rp1, 10.0.1.0/24→rp2, 10.9.0.0/16 blackhole, 10.8.0.0/16 reject
///  (default route via the uplink only with `with_default`)
/// ```
pub struct W {
    pub t: TopoBuilder,
    pub state: MemState,
    pub b1: BridgeId,
    pub b2: BridgeId,
    pub r: RouterId,
    pub v1: PortId,
    pub v2: PortId,
    pub v3: PortId,
    pub bi1: PortId,
    pub bi2: PortId,
    pub rp1: PortId,
    pub rp2: PortId,
    pub up: PortId,
    /// Extra named ports that scenarios add.
    pub p: BTreeMap<&'static str, PortId>,
    pub icmp: IcmpRateLimiter,
    /// Flow state (conntrack, NAT, SNAT blocks) for `run`: empty unless a
    /// scenario grants blocks or a run allocates.
    pub flow: MemFlowState,
}

impl W {
    pub fn std() -> W {
        let mut t = TopoBuilder::new(1);
        let b1 = t.bridge("left");
        let b2 = t.bridge("right");
        let r = t.router("edge");
        let v1 = t.bridge_port(b1);
        let v2 = t.bridge_port(b1);
        let v3 = t.bridge_port(b2);
        let bi1 = t.bridge_iport(b1, None);
        let bi2 = t.bridge_iport(b2, None);
        let rp1 = t.router_port(r, "10.0.0.1/24", RP1, false);
        let rp2 = t.router_port(r, "10.0.1.1/24", RP2, false);
        let up = t.router_port(r, "192.0.2.2/30", UP, true);
        t.link(bi1, rp1);
        t.link(bi2, rp2);
        t.route(r, "10.0.0.0/24", Some(rp1), None);
        t.route(r, "10.0.1.0/24", Some(rp2), None);
        t.route_full(r, "10.9.0.0/16", "0.0.0.0/0", None, None, 100, RouteType::BlackHole);
        t.route_full(r, "10.8.0.0/16", "0.0.0.0/0", None, None, 100, RouteType::Reject);
        t.arp_entry(b2, "10.0.1.5", VM3);
        t.mac_entry(b2, 0, VM3, v3);
        W {
            t,
            state: MemState::default(),
            b1,
            b2,
            r,
            v1,
            v2,
            v3,
            bi1,
            bi2,
            rp1,
            rp2,
            up,
            p: BTreeMap::new(),
            icmp: IcmpRateLimiter::unlimited(),
            flow: MemFlowState::new(),
        }
    }

    pub fn with_default(&mut self) {
        self.t.route(self.r, "0.0.0.0/0", Some(self.up), Some("192.0.2.1"));
    }

    pub fn learn(&mut self, b: BridgeId, vlan: u16, m: &str, port: PortId) {
        self.state.macs.insert((b, vlan, mac(m)), port);
    }

    /// DHCP on b1: subnet 10.0.0.0/24 (gateway 10.0.0.1) with a static
    /// host for VM1 (10.0.0.11).
    pub fn dhcp(&mut self) {
        let ip = |s: &str| s.parse().expect("ip");
        let s = DhcpSubnet {
            bridge_id: self.b1,
            subnet_prefix: ip("10.0.0.0"),
            subnet_length: 24,
            default_gateway: Some(ip("10.0.0.1")),
            server_addr: None,
            dns_server_addrs: vec![],
            interface_mtu: None,
            opt121_routes: vec![],
            enabled: true,
        };
        let m: midonet_model::MacAddr = VM1.parse().expect("mac");
        let h = DhcpHost {
            bridge_id: self.b1,
            subnet: s.key(),
            mac_addr: m,
            ip_addr: ip("10.0.0.11"),
            name: String::new(),
            extra_dhcp_opts: vec![],
        };
        self.t.topo.dhcp_hosts.insert((self.b1, s.key(), m), h);
        self.t.topo.dhcp_subnets.insert((self.b1, s.key()), s);
    }
    pub fn gw_arp(&mut self) {
        self.state.router_arp.insert((self.r, "192.0.2.1".parse().expect("ip")), mac(GW));
    }

    /// A chain with `rules`, returned for attaching.
    pub fn chain(&mut self, name: &str, rules: Vec<Rule>) -> ChainId {
        let c = self.t.chain(name);
        for r in rules {
            self.t.rule(c, r);
        }
        c
    }

    /// Names for ids in rendered output, so golden files read well.
    pub fn names(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (self.b1.to_string(), "b1".to_string()),
            (self.b2.to_string(), "b2".into()),
            (self.r.to_string(), "r".into()),
            (self.v1.to_string(), "v1".into()),
            (self.v2.to_string(), "v2".into()),
            (self.v3.to_string(), "v3".into()),
            (self.bi1.to_string(), "bi1".into()),
            (self.bi2.to_string(), "bi2".into()),
            (self.rp1.to_string(), "rp1".into()),
            (self.rp2.to_string(), "rp2".into()),
            (self.up.to_string(), "up".into()),
        ];
        for (n, p) in &self.p {
            v.push((p.to_string(), (*n).to_string()));
        }
        v
    }
}

/// Parse a packet description into a key and a real frame.
pub fn packet(desc: &str) -> (FlowKey, Vec<u8>) {
    let key: FlowKey = desc.parse().unwrap_or_else(|e| panic!("bad packet {desc:?}: {e}"));
    let mut frame = Vec::new();
    key.to_frame(b"payload!", &mut frame);
    let key = FlowKey::extract(&frame, key.in_port).expect("frame re-keys");
    (key, frame)
}

/// The time every common run happens at.
pub const NOW: Duration = Duration::from_secs(1000);

pub fn sim(
    snap: &Snapshot,
    state: &MemState,
    icmp: &mut IcmpRateLimiter,
    ingress: PortId,
    key: FlowKey,
    frame: &[u8],
    trace: bool,
) -> SimResult {
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
    simulate(snap, state, &NoConntrack, icmp, &input)
}

/// Simulate `desc` entering at `ingress`, traced; also untraced, and check
/// that tracing changes nothing.
pub fn run(w: &mut W, ingress: PortId, desc: &str) -> SimResult {
    let snap = Snapshot::build(&w.t.topo);
    let (key, frame) = packet(desc);
    let mut icmp2 = w.icmp.clone();
    let input = SimInput {
        ingress,
        key,
        frame: &frame,
        now: NOW,
        hash_seed: 42,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    // Against the same flow state: the first run's bindings are reused.
    let traced = simulate(&snap, &w.state, &w.flow, &mut w.icmp, &input);
    let plain = simulate(&snap, &w.state, &w.flow, &mut icmp2, &SimInput { trace: false, ..input });
    assert_eq!(traced.decision, plain.decision, "trace changes the decision");
    assert_eq!(traced.actions, plain.actions, "trace changes the actions");
    assert_eq!(traced.mask, plain.mask, "trace changes the mask");
    assert_eq!(traced.tags, plain.tags, "trace changes the tags");
    assert!(plain.trace.is_empty());
    traced
}

/// The rendered result with ids replaced by names.
pub fn render(w: &W, r: &SimResult) -> String {
    let mut s = r.render();
    for (id, name) in w.names() {
        s = s.replace(&id, &name);
    }
    s
}

/// Compare `text` with `tests/golden/<name>.txt`, or rewrite it when
/// `MIDONET_REGEN_GOLDEN` is set. Returns a mismatch description.
pub fn golden(name: &str, text: &str) -> Result<(), String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("MIDONET_REGEN_GOLDEN").is_some() {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    let want = std::fs::read_to_string(&path).map_err(|e| {
        format!("{name}: cannot read {} ({e}); run with MIDONET_REGEN_GOLDEN=1", path.display())
    })?;
    if want != text {
        return Err(format!("{name}: golden trace differs\n--- want\n{want}\n--- got\n{text}"));
    }
    Ok(())
}

pub fn gen_kinds(r: &SimResult) -> Vec<(GenKind, GenTarget)> {
    r.generated.iter().map(|g| (g.kind, g.target)).collect()
}

pub fn drop_reason(r: &SimResult) -> Option<DropReason> {
    match r.decision {
        Decision::Drop { reason, .. } => Some(reason),
        _ => None,
    }
}
