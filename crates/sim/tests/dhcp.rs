//! DHCP answered by the simulation (as MidoNet's agent answers it): scenarios with
//! golden traces, and every option of the replies decoded with `dhcproto`.

mod common;

use std::net::Ipv4Addr;

use common::*;
use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use midonet_model::*;
use midonet_sim::dhcp::{DEFAULT_MTU, LEASE_SECS, SERVER_MAC};
use midonet_sim::*;

const REQ: &str = "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=0.0.0.0,ip4.dst=255.255.255.255,udp.src=68,udp.dst=67";
const REQ_UNKNOWN: &str = "eth.src=02:00:00:00:00:07,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=0.0.0.0,ip4.dst=255.255.255.255,udp.src=68,udp.dst=67";
const DNS: &str = "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.11,ip4.dst=255.255.255.255,udp.src=68,udp.dst=53";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

/// A subnet 10.0.0.0/24 on b1 with every option set, and a host for VM1.
fn full_subnet(w: &mut W) {
    let s = DhcpSubnet {
        bridge_id: w.b1,
        subnet_prefix: ip("10.0.0.0"),
        subnet_length: 24,
        default_gateway: Some(ip("10.0.0.1")),
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
    add_subnet(w, s);
    add_host(
        w,
        VM1,
        "10.0.0.11",
        "vm1",
        vec![("domain-name", "example.org"), ("42", "10.0.0.123")],
    );
}

/// A subnet with only what is mandatory (no MTU, server address, DNS or
/// opt121), and a host for VM1.
fn bare_subnet(w: &mut W) {
    let s = DhcpSubnet {
        bridge_id: w.b1,
        subnet_prefix: ip("10.0.0.0"),
        subnet_length: 24,
        default_gateway: Some(ip("10.0.0.1")),
        server_addr: None,
        dns_server_addrs: vec![],
        interface_mtu: None,
        opt121_routes: vec![],
        enabled: true,
    };
    add_subnet(w, s);
    add_host(w, VM1, "10.0.0.11", "", vec![]);
}

fn add_subnet(w: &mut W, s: DhcpSubnet) {
    w.t.topo.dhcp_subnets.insert((w.b1, s.key()), s);
}

fn add_host(w: &mut W, m: &str, addr: &str, name: &str, extra: Vec<(&str, &str)>) {
    let mac_addr: midonet_model::MacAddr = m.parse().expect("mac");
    let h = DhcpHost {
        bridge_id: w.b1,
        subnet: "10.0.0.0_24".into(),
        mac_addr,
        ip_addr: ip(addr),
        name: name.into(),
        extra_dhcp_opts: extra
            .into_iter()
            .map(|(n, v)| DhcpExtraOpt { opt_name: n.into(), opt_value: v.into() })
            .collect(),
    };
    w.t.topo.dhcp_hosts.insert((w.b1, "10.0.0.0_24".into(), mac_addr), h);
}

/// A client message (as udhcpc sends it: broadcast flag, xid, chaddr).
fn client_msg(chaddr: &str, t: MessageType, requested: Option<&str>) -> Vec<u8> {
    let m = mac(chaddr);
    let mut msg = v4::Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &m.0,
    );
    msg.set_xid(0x1234_5678).set_flags(v4::Flags::default().set_broadcast());
    msg.opts_mut().insert(DhcpOption::MessageType(t));
    if let Some(r) = requested {
        msg.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(r)));
    }
    msg.opts_mut()
        .insert(DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::Router]));
    msg.to_vec().expect("encode")
}

/// Simulate `desc` carrying `payload` at `ingress`, traced and untraced
/// (which must agree), and compare the trace with the golden file.
fn run_dhcp(w: &mut W, name: &str, ingress: PortId, desc: &str, payload: &[u8]) -> SimResult {
    let snap = Snapshot::build(&w.t.topo);
    let key: FlowKey = desc.parse().expect("key");
    let mut frame = Vec::new();
    key.to_frame(payload, &mut frame);
    let key = FlowKey::extract(&frame, key.in_port).expect("frame re-keys");
    let mut icmp2 = w.icmp.clone();
    let traced = sim(&snap, &w.state, &mut w.icmp, ingress, key, &frame, true);
    let plain = sim(&snap, &w.state, &mut icmp2, ingress, key, &frame, false);
    assert_eq!(traced.decision, plain.decision);
    assert_eq!(traced.mask, plain.mask);
    assert_eq!(traced.tags, plain.tags);
    assert_eq!(traced.generated, plain.generated);
    let text = format!("# {name}\n# ingress {ingress}\n# packet {desc}\n{}", render(w, &traced));
    let text = w.names().iter().fold(text, |t, (id, n)| t.replace(id, n));
    if let Err(e) = golden(name, &text) {
        panic!("{e}");
    }
    traced
}

/// The one generated reply: checks its L2/L3/L4 headers and checksums,
/// returns the decoded DHCP message.
fn reply(w: &W, r: &SimResult, server: &str) -> v4::Message {
    assert_eq!(r.decision, Decision::Consumed, "{}", r.render());
    assert!(r.actions.is_empty());
    assert_eq!(r.generated.len(), 1, "{}", r.render());
    let g = &r.generated[0];
    assert_eq!((g.kind, g.target), (GenKind::DhcpReply, GenTarget::Emit(w.v1)));
    let k = FlowKey::extract(&g.frame, InPort::Port(0)).expect("reply parses");
    assert_eq!((k.eth_src, k.eth_dst), (SERVER_MAC, mac(VM1)));
    assert_eq!((k.ipv4_src, k.ipv4_dst), (ip(server), Ipv4Addr::BROADCAST));
    assert_eq!((k.ip_proto, k.l4_src, k.l4_dst), (17, 67, 68));
    let f = &g.frame;
    assert_eq!(fold(sum(&f[14..34])), 0xffff, "ip header checksum");
    let udp_len = u16::from_be_bytes([f[38], f[39]]);
    assert_eq!(usize::from(udp_len), f.len() - 34);
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    pseudo.extend_from_slice(&f[34..]);
    assert_eq!(fold(sum(&pseudo)), 0xffff, "udp checksum");
    assert!(f.len() - 42 >= v4::MIN_PACKET_SIZE, "padded to the BOOTP minimum");
    let m = v4::Message::decode(&mut Decoder::new(&f[42..])).expect("dhcp decodes");
    assert_eq!(m.opcode(), v4::Opcode::BootReply);
    assert_eq!(m.xid(), 0x1234_5678);
    assert_eq!(&m.chaddr()[..6], &mac(VM1).0);
    assert!(m.flags().broadcast(), "the client's flags are echoed");
    assert!(r.uncacheable, "DHCP answers depend on the payload");
    assert!(r.tags.contains(&Tag::dhcp(w.b1)) && r.tags.contains(&Tag::bridge(w.b1)));
    m
}

fn sum(b: &[u8]) -> u32 {
    b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}
fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn opt(m: &v4::Message, c: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(c)
}

#[test]
fn discover_gets_offer_with_every_option() {
    let mut w = W::std();
    full_subnet(&mut w);
    let v1 = w.v1;
    let r = run_dhcp(
        &mut w,
        "dhcp_discover_offer",
        v1,
        REQ,
        &client_msg(VM1, MessageType::Discover, None),
    );
    let m = reply(&w, &r, "10.0.0.2");
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(m.yiaddr(), ip("10.0.0.11"));
    assert_eq!(m.siaddr(), ip("10.0.0.2"));
    assert_eq!(
        opt(&m, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(ip("10.0.0.2")))
    );
    assert_eq!(
        opt(&m, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(LEASE_SECS))
    );
    assert_eq!(LEASE_SECS, 24 * 3600);
    assert_eq!(opt(&m, OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask(ip("255.255.255.0"))));
    assert_eq!(
        opt(&m, OptionCode::BroadcastAddr),
        Some(&DhcpOption::BroadcastAddr(ip("10.0.0.255")))
    );
    assert_eq!(opt(&m, OptionCode::Router), Some(&DhcpOption::Router(vec![ip("10.0.0.1")])));
    assert_eq!(
        opt(&m, OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![ip("10.0.0.53"), ip("8.8.8.8")]))
    );
    assert_eq!(opt(&m, OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(1400)));
    assert_eq!(
        opt(&m, OptionCode::ClasslessStaticRoute),
        Some(&DhcpOption::ClasslessStaticRoute(vec![
            ("172.16.0.0/16".parse().expect("net"), ip("10.0.0.254")),
            ("0.0.0.0/0".parse().expect("net"), ip("10.0.0.1")),
        ])),
        "opt121 routes plus a default route via the gateway"
    );
    assert_eq!(opt(&m, OptionCode::Hostname), Some(&DhcpOption::Hostname("vm1".into())));
    assert_eq!(
        opt(&m, OptionCode::DomainName),
        Some(&DhcpOption::DomainName("example.org".into()))
    );
    assert_eq!(
        opt(&m, OptionCode::NtpServers),
        Some(&DhcpOption::NtpServers(vec![ip("10.0.0.123")]))
    );
    assert_eq!(m.opts().iter().count(), 12, "no other option: {:?}", m.opts());
    assert!(r.state_writes.is_empty(), "the bridge did not see (or learn from) the request");
}

#[test]
fn request_for_the_static_ip_gets_ack_with_defaults() {
    let mut w = W::std();
    bare_subnet(&mut w);
    let v1 = w.v1;
    let r = run_dhcp(
        &mut w,
        "dhcp_request_ack",
        v1,
        REQ,
        &client_msg(VM1, MessageType::Request, Some("10.0.0.11")),
    );
    // No server address: the gateway is the server id and the source.
    let m = reply(&w, &r, "10.0.0.1");
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.yiaddr(), ip("10.0.0.11"));
    assert_eq!(
        opt(&m, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(ip("10.0.0.1")))
    );
    assert_eq!(opt(&m, OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(DEFAULT_MTU)));
    assert_eq!(DEFAULT_MTU, 1450, "1500 minus the VXLAN overhead");
    assert_eq!(opt(&m, OptionCode::Router), Some(&DhcpOption::Router(vec![ip("10.0.0.1")])));
    assert_eq!(opt(&m, OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask(ip("255.255.255.0"))));
    assert_eq!(
        opt(&m, OptionCode::BroadcastAddr),
        Some(&DhcpOption::BroadcastAddr(ip("10.0.0.255")))
    );
    assert_eq!(
        opt(&m, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(LEASE_SECS))
    );
    assert_eq!(opt(&m, OptionCode::ClasslessStaticRoute), None, "no opt121 routes, no option 121");
    assert_eq!(opt(&m, OptionCode::DomainNameServer), None);
    assert_eq!(m.opts().iter().count(), 7, "{:?}", m.opts());
}

#[test]
fn request_for_another_ip_gets_nak() {
    let mut w = W::std();
    full_subnet(&mut w);
    let v1 = w.v1;
    let r = run_dhcp(
        &mut w,
        "dhcp_request_nak",
        v1,
        REQ,
        &client_msg(VM1, MessageType::Request, Some("10.0.0.99")),
    );
    let m = reply(&w, &r, "10.0.0.2");
    assert_eq!(m.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "a NAK offers no address");
    assert_eq!(
        opt(&m, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(ip("10.0.0.2")))
    );
    assert_eq!(m.opts().iter().count(), 2, "{:?}", m.opts());
}

#[test]
fn unknown_client_is_passed_to_the_bridge_and_floods() {
    let mut w = W::std();
    full_subnet(&mut w);
    let v1 = w.v1;
    let r = run_dhcp(
        &mut w,
        "dhcp_unknown_mac_floods",
        v1,
        REQ_UNKNOWN,
        &client_msg("02:00:00:00:00:07", MessageType::Discover, None),
    );
    assert_eq!(r.decision, Decision::Forward, "{}", r.render());
    let out: Vec<PortId> = r.out_ports().collect();
    assert_eq!(out, vec![w.v2], "flooded like any broadcast");
    assert!(r.generated.is_empty());
    assert!(r.uncacheable, "another client's request on the same megaflow would be answered");
}

#[test]
fn disabled_subnet_is_ignored_and_masks_stay_as_without_dhcp() {
    let mut w = W::std();
    full_subnet(&mut w);
    for s in w.t.topo.dhcp_subnets.values_mut() {
        s.enabled = false;
    }
    let v1 = w.v1;
    let payload = client_msg(VM1, MessageType::Discover, None);
    let r = run_dhcp(&mut w, "dhcp_disabled_subnet_floods", v1, REQ, &payload);
    assert_eq!(r.decision, Decision::Forward, "{}", r.render());
    assert!(r.generated.is_empty() && !r.uncacheable);
    let mut plain = W::std();
    let v1 = plain.v1;
    let base = run_dhcp(&mut plain, "dhcp_disabled_subnet_floods", v1, REQ, &payload);
    assert_eq!(r.mask, base.mask, "a bridge without enabled DHCP reads no DHCP fields");
    assert_eq!(r.tags, base.tags);
}

#[test]
fn other_udp_on_a_dhcp_bridge_is_simulated_normally_with_the_ports_in_the_mask() {
    let mut w = W::std();
    full_subnet(&mut w);
    let v1 = w.v1;
    let r = run_dhcp(&mut w, "dhcp_bridge_other_udp", v1, DNS, b"not dhcp");
    assert_eq!(r.decision, Decision::Forward, "{}", r.render());
    assert!(r.generated.is_empty() && !r.uncacheable);
    // The flow must not also cover DHCP requests, which need the sim.
    assert!(r.mask.is_marked(FieldId::L4Dst), "{}", r.render());
}

#[test]
fn dhcp_changes_invalidate_by_tag() {
    let mut w = W::std();
    full_subnet(&mut w);
    let snap = Snapshot::build(&w.t.topo);
    let b = w.b1;
    let subnet =
        serde_json::to_vec(w.t.topo.dhcp_subnets.values().next().expect("subnet")).expect("json");
    let mut out = Vec::new();
    tags_for_store_entry(
        &snap,
        &format!("/midonet/v1/dhcp_subnets/{b}/10.0.0.0_24"),
        None,
        Some(&subnet),
        &mut out,
    );
    let mut want = vec![Tag::bridge(b), Tag::dhcp(b)];
    want.sort();
    assert_eq!(out, want);
    let host =
        serde_json::to_vec(w.t.topo.dhcp_hosts.values().next().expect("host")).expect("json");
    out.clear();
    tags_for_store_entry(
        &snap,
        &format!("/midonet/v1/dhcp_hosts/{b}/10.0.0.0_24/02:00:00:00:00:01"),
        Some(&host),
        None,
        &mut out,
    );
    assert_eq!(out, vec![Tag::dhcp(b)]);
}
