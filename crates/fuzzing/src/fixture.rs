//! The topology the packet targets (`dhcp`, `arp`, `icmp_error`) simulate
//! on, built once per process.
//!
//! ```text
//!  vm1 ─┐                                          ┌─ uplink 192.0.2.2/30 ── gw 192.0.2.1
//!  vm2 ─┼─ bridge "lan" ── lan-rtr ══ rtr-lan ─ router "r" (inbound chain "in")
//!  vm3 ─┘   DHCP 10.0.0.0/24 (+ disabled 10.9.0.0/24)    rtr-lan 10.0.0.1/24
//!           seeded ARP 10.0.0.50                         routes: 10.0.0.0/24, 0/0 via gw,
//!                                                        198.51.100.0/24 reject, 203.0.113.0/24 blackhole
//! ```
//!
//! Chain "in" drops ICMP errors quoting a packet from 203.0.113.0/24 (so the
//! embedded header is read) and rejects packets to 10.0.0.99 (so errors are
//! generated). The warm state knows the gateway's and vm1's MACs.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use midonet_model::{
    Condition, DhcpExtraOpt, DhcpHost, DhcpOpt121Route, DhcpSubnet, PortId, RouteType, Rule,
    RuleType,
};
use midonet_sim::builder::TopoBuilder;
use midonet_sim::{MacAddr, MemState, Snapshot};

/// MAC of vm1, which has a DHCP host entry with every option.
pub const VM1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
/// MAC of vm2, which has a bare DHCP host entry.
pub const VM2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
/// MAC of a host entry in the disabled subnet: never answered.
pub const VM_DISABLED: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);
/// The router's port on the bridge, and its MAC.
pub const RTR_LAN_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const RTR_LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
/// The MAC of the router's uplink (192.0.2.2/30).
pub const RTR_UP_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 3]);
/// Sources whose quoted packets chain "in" drops in ICMP errors.
pub const ICMP_DATA_DROP_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(203, 0, 113, 0), 24);

pub struct Fixture {
    pub snap: Snapshot,
    pub uplink: PortId,
    /// Every port a packet may enter by, exterior and interior; the first
    /// three are the bridge's VM ports.
    pub ingress: Vec<PortId>,
    pub warm: MemState,
}

impl Fixture {
    /// The ingress port chosen by `selector`.
    pub fn port(&self, selector: u8) -> PortId {
        self.ingress[usize::from(selector) % self.ingress.len()]
    }

    /// Whether `selector` picks an exterior port of the DHCP bridge.
    pub fn is_lan_exterior(&self, selector: u8) -> bool {
        usize::from(selector) % self.ingress.len() < 3
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("fixture addresses are valid")
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

fn build() -> Fixture {
    let mut t = TopoBuilder::new(0xf0_22_01);
    let lan = t.bridge("lan");
    let vm1 = t.bridge_port(lan);
    let vm2 = t.bridge_port(lan);
    let vm3 = t.bridge_port(lan);
    let lan_rtr = t.bridge_iport(lan, None);
    let r = t.router("r");
    let rtr_lan = t.router_port(r, "10.0.0.1/24", &RTR_LAN_MAC.to_string(), false);
    let up = t.router_port(r, "192.0.2.2/30", &RTR_UP_MAC.to_string(), true);
    t.link(lan_rtr, rtr_lan);
    t.route(r, "10.0.0.0/24", Some(rtr_lan), None);
    t.route(r, "0.0.0.0/0", Some(up), Some("192.0.2.1"));
    t.route_full(r, "198.51.100.0/24", "0.0.0.0/0", None, None, 100, RouteType::Reject);
    t.route_full(r, "203.0.113.0/24", "0.0.0.0/0", None, None, 100, RouteType::BlackHole);
    t.arp_entry(lan, "10.0.0.50", "02:00:00:00:00:50");

    let chain = t.chain("in");
    let (net, len) = ICMP_DATA_DROP_NET;
    t.rule(
        chain,
        Rule {
            rule_type: RuleType::Drop,
            condition: Condition {
                icmp_data_src_ip: Some(net.into()),
                icmp_data_src_length: Some(len),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    t.rule(
        chain,
        Rule {
            rule_type: RuleType::Reject,
            condition: Condition {
                nw_dst_address: Some(ip("10.0.0.99").into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    t.edit_router(r, |x| x.inbound_filter_id = Some(chain));

    let full = DhcpSubnet {
        bridge_id: lan,
        subnet_prefix: ip("10.0.0.0"),
        subnet_length: 24,
        default_gateway: Some(RTR_LAN_IP),
        server_addr: Some(ip("10.0.0.2")),
        dns_server_addrs: vec![ip("10.0.0.53"), ip("8.8.8.8")],
        interface_mtu: Some(1400),
        opt121_routes: vec![DhcpOpt121Route {
            destination_prefix: ip("172.16.0.0"),
            destination_length: 16,
            gateway_addr: ip("10.0.0.254"),
        }],
        enabled: true,
    };
    let disabled = DhcpSubnet {
        subnet_prefix: ip("10.9.0.0"),
        opt121_routes: vec![],
        enabled: false,
        ..full.clone()
    };
    let host = |mac: MacAddr, subnet: &DhcpSubnet, addr: &str, extra: &[(&str, &str)]| DhcpHost {
        bridge_id: lan,
        subnet: subnet.key(),
        mac_addr: midonet_model::MacAddr(mac.0),
        ip_addr: ip(addr),
        name: if extra.is_empty() { String::new() } else { "vm".into() },
        extra_dhcp_opts: extra
            .iter()
            .map(|(n, v)| DhcpExtraOpt { opt_name: (*n).into(), opt_value: (*v).into() })
            .collect(),
    };
    let extra = [("domain-name", "example.org"), ("42", "10.0.0.123"), ("mtu", "9000")];
    let hosts = [
        host(VM1, &full, "10.0.0.11", &extra),
        host(VM2, &full, "10.0.0.12", &[]),
        host(VM_DISABLED, &disabled, "10.9.0.13", &[]),
    ];
    t.topo.insert(&full);
    t.topo.insert(&disabled);
    for h in &hosts {
        t.topo.insert(h);
    }

    let snap = Snapshot::build(&t.build());
    let mut warm = MemState::default();
    warm.router_arp.insert((r, ip("192.0.2.1")), MacAddr([2, 0, 0, 0, 9, 9]));
    warm.router_arp.insert((r, ip("10.0.0.11")), VM1);
    warm.macs.insert((lan, 0, VM1), vm1);
    Fixture { snap, uplink: up, ingress: vec![vm1, vm2, vm3, up, lan_rtr, rtr_lan], warm }
}
