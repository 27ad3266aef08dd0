//! Seeds of the targets fed Ethernet frames, or the datagrams inside them.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::Encodable;
use midonet_wire::checksum::set_ipv4_header_checksum;

use super::{frame, seed, Seed, VM1_PING, VM1_TCP, VM1_UDP};
use crate::fixture::{VM1, VM2, VM_DISABLED};

/// Frames of every shape the extractor knows, by name.
pub(super) fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = vec![
        ("tcp_syn", frame(VM1_TCP, b"")),
        ("tcp_vlan", frame(&format!("{VM1_TCP},vlan.vid=100,vlan.pcp=5"), b"data")),
        ("udp_dns", frame(VM1_UDP, b"\x12\x34\x01\x00\x00\x01")),
        ("icmp_echo", frame(VM1_PING, b"ping data")),
        ("icmp_unreach", frame("ip4.src=10.0.0.1,ip4.dst=10.0.0.11,icmp4.type=3,icmp4.code=1", &[0x45; 28])),
        ("arp_request", frame("eth.dst=ff:ff:ff:ff:ff:ff,arp.op=request,arp.sha=02:00:00:00:00:01,arp.spa=10.0.0.11,arp.tpa=10.0.0.1", b"")),
        ("arp_reply", frame("arp.op=reply,arp.sha=02:00:00:00:00:09,arp.spa=10.0.0.9,arp.tha=02:00:00:00:00:01,arp.tpa=10.0.0.1", b"")),
        ("ipv6_udp", frame("ip6.src=2001:db8::1,ip6.dst=2001:db8::2,udp.src=546,udp.dst=547", b"dhcp6")),
        ("ipv6_frag_first", frame("ip6.src=::1,ip6.dst=::2,ip.frag=first,tcp.src=1,tcp.dst=2", b"x")),
        ("ipv6_frag_later", frame("ip6.src=::1,ip6.dst=::2,ip.frag=later,ip.proto=17", b"tail")),
        ("icmpv6_echo", frame("ip6.src=fe80::1,ip6.dst=fe80::2,icmp6.type=128,icmp6.id=5", b"")),
        ("icmpv6_ns", frame("ip6.src=fe80::1,ip6.dst=ff02::1:ff00:2,icmp6.type=135", &[0; 20])),
        ("sctp", frame("ip4.src=10.0.0.11,ip4.dst=10.0.0.12,sctp.src=1,sctp.dst=2", b"")),
        ("ipv4_first_frag", frame("ip4.src=1.1.1.1,ip4.dst=2.2.2.2,ip.frag=first,udp.dst=4789", b"abcd")),
        ("ipv4_later_frag", frame("ip4.src=1.1.1.1,ip4.dst=2.2.2.2,ip.frag=later,ip.proto=6", b"rest")),
        ("gre", frame("ip4.src=10.0.0.1,ip4.dst=10.0.0.2,ip.proto=47", b"\x00\x00\x65\x58")),
        ("lldp", frame("eth.type=0x88cc,eth.src=02:00:00:00:00:01,eth.dst=01:80:c2:00:00:0e", b"\x02\x07")),
        ("ttl1_to_router", frame("eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.4.4,ip.ttl=1,udp.src=3,udp.dst=33434", b"")),
        ("dhcp_discover", frame("eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=0.0.0.0,ip4.dst=255.255.255.255,udp.src=68,udp.dst=67", &dhcp_msg(VM1.0, MessageType::Discover, None, None))),
    ];
    // IPv4 options (NOPs + EOL) and a QinQ frame: built by hand.
    let mut opts = frame(VM1_UDP, b"opt");
    opts.splice(34..34, [1, 1, 1, 1, 1, 1, 1, 0]);
    opts[14] = 0x47;
    let total = u16::from_be_bytes([opts[16], opts[17]]) + 8;
    opts[16..18].copy_from_slice(&total.to_be_bytes());
    set_ipv4_header_checksum(&mut opts[14..42]);
    v.push(("ipv4_options", opts));
    let mut qinq = frame(&format!("{VM1_UDP},vlan.vid=10"), b"");
    qinq.splice(16..16, [0x81, 0x00, 0x00, 0x14]);
    v.push(("qinq", qinq));
    // IPv6 hop-by-hop (8 bytes: next=6, len 0, PadN) in front of TCP.
    let mut hbh = frame("ip6.src=::1,ip6.dst=::2,tcp.src=80,tcp.dst=81", b"");
    hbh[20] = 0;
    hbh.splice(54..54, [6, 0, 1, 4, 0, 0, 0, 0]);
    let plen = u16::from_be_bytes([hbh[18], hbh[19]]) + 8;
    hbh[18..20].copy_from_slice(&plen.to_be_bytes());
    v.push(("ipv6_hop_by_hop", hbh));
    let tcp = frame(VM1_TCP, b"");
    v.push(("truncated_ipv4", tcp[..30].to_vec()));
    v.push(("truncated_eth", tcp[..10].to_vec()));
    v.push(("padded_udp", [frame(VM1_UDP, b""), vec![0; 18]].concat()));
    v
}

pub(super) fn extract() -> Vec<Seed> {
    let mut v: Vec<Seed> = frames().into_iter().map(|(n, f)| seed(n, &[1], &f)).collect();
    v.push(seed("tunnel_in_tcp", &[0x85], &frame(VM1_TCP, b"")));
    v
}

pub(super) fn sim_packet() -> Vec<Seed> {
    frames()
        .into_iter()
        .enumerate()
        .map(|(i, (n, f))| {
            let port = u8::try_from(i % 8).expect("small");
            seed(n, &[port, u8::try_from(i % 4).expect("small")], &f)
        })
        .collect()
}

/// Offloaded frames as a guest hands them over: a virtio-net header, then
/// the frame with its checksum field holding the pseudo-header's sum.
pub(super) fn offload() -> Vec<Seed> {
    use midonet_datapath::sys::VnetHdr;
    let partial = |desc: &str, payload: &[u8], at: usize, proto: u8| {
        let mut f = frame(desc, payload);
        let l4 = (f.len() - 34) as u16;
        let s = midonet_wire::checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 11),
            Ipv4Addr::new(f[30], f[31], f[32], f[33]),
            proto,
            l4,
        );
        f[at..at + 2].copy_from_slice(&midonet_wire::checksum::fold(s).to_be_bytes());
        f
    };
    let tcp =
        partial(&VM1_TCP.replace("tcp.flags=syn", "tcp.flags=ack|psh|fin"), &[0x61; 4000], 50, 6);
    let udp = partial(VM1_UDP, &[0x62; 3000], 40, 17);
    let hdr = |flags, gso_type, gso_size: u16, csum_offset: u16| {
        VnetHdr { flags, gso_type, hdr_len: 54, gso_size, csum_start: 34, csum_offset }.to_bytes()
    };
    let n = VnetHdr::F_NEEDS_CSUM;
    vec![
        seed("tcp4_gso", &hdr(n, VnetHdr::GSO_TCPV4, 1448, 16), &tcp),
        seed("tcp4_gso_ecn", &hdr(n, VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN, 1000, 16), &tcp),
        seed("tcp4_csum_only", &hdr(n, VnetHdr::GSO_NONE, 0, 16), &tcp[..200]),
        seed("udp_l4_gso", &hdr(n, VnetHdr::GSO_UDP_L4, 1200, 6), &udp),
        seed("udp_ufo", &hdr(n, VnetHdr::GSO_UDP, 1200, 6), &udp),
        seed("ipv6_frag_gso", &hdr(n, VnetHdr::GSO_TCPV6, 1300, 16), &frames()[8].1),
        seed("plain", &hdr(0, VnetHdr::GSO_NONE, 0, 0), &frame(VM1_PING, b"ping")),
        seed("tcp4_gso_tiny_mss", &hdr(n, VnetHdr::GSO_TCPV4, 7, 16), &tcp[..300]),
        seed("tcp4_headers_only", &hdr(n, VnetHdr::GSO_TCPV4, 1448, 16), &tcp[..54]),
        seed("udp_csum_past_end", &hdr(n, VnetHdr::GSO_NONE, 0, 60_000), &udp[..100]),
    ]
}

/// Receive batches of a server's port: answers and their FINs, other
/// connections between them, and near misses (a gap in sequence, a FIN
/// with data, a retransmitted FIN, an offloaded answer).
pub(super) fn finmerge() -> Vec<Seed> {
    let seg = |sport: u16, seq: u32, flags: u8, payload: &[u8]| {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&77u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
        tcp.extend_from_slice(payload);
        let (src, dst) = (Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(10, 0, 0, 11));
        let c = !midonet_wire::checksum::fold(midonet_wire::checksum::sum(
            midonet_wire::checksum::pseudo_header_v4(src, dst, 6, tcp.len() as u16),
            &tcp,
        ));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        set_ipv4_header_checksum(&mut ip);
        let mut f = vec![2, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&ip);
        f.extend_from_slice(&tcp);
        f
    };
    let rec = |flags: u8, f: &[u8]| -> Vec<u8> {
        let mut r = vec![flags];
        r.extend_from_slice(&(f.len() as u16).to_be_bytes());
        r.extend_from_slice(f);
        r
    };
    let (ack, psh, fin) = (0x10, 0x08, 0x01);
    let answer = seg(8080, 1000, ack | psh, b"HTTP/1.1 200 OK\r\n\r\nhi");
    let fin_at = |seq| seg(8080, seq, ack | fin, b"");
    let other = seg(8081, 5, ack | psh, b"other");
    let batch = |recs: &[Vec<u8>]| recs.concat();
    vec![
        seed("answer_fin", &[], &batch(&[rec(0, &answer), rec(0, &fin_at(1021))])),
        seed("answer_partial_fin", &[], &batch(&[rec(1, &answer), rec(1, &fin_at(1021))])),
        seed(
            "interleaved",
            &[],
            &batch(&[
                rec(0, &answer),
                rec(0, &other),
                rec(0, &fin_at(1021)),
                rec(0, &fin_at(1021)),
            ]),
        ),
        seed("gap", &[], &batch(&[rec(0, &answer), rec(0, &fin_at(1022))])),
        seed(
            "fin_with_data",
            &[],
            &batch(&[rec(0, &answer), rec(0, &seg(8080, 1021, ack | fin, b"x"))]),
        ),
        seed("gso_answer", &[], &batch(&[rec(3, &answer), rec(1, &fin_at(1021))])),
        seed("fin_first", &[], &batch(&[rec(0, &fin_at(1021)), rec(0, &answer)])),
        seed(
            "two_connections",
            &[],
            &batch(&[
                rec(0, &answer),
                rec(0, &other),
                rec(0, &fin_at(1021)),
                rec(0, &seg(8081, 10, ack | fin, b"")),
            ]),
        ),
    ]
}

/// A DHCP client message (as udhcpc sends it: broadcast flag, xid, chaddr).
fn dhcp_msg(
    chaddr: [u8; 6],
    t: MessageType,
    requested: Option<Ipv4Addr>,
    ciaddr: Option<Ipv4Addr>,
) -> Vec<u8> {
    let ci = ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut m = v4::Message::new(
        ci,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &chaddr,
    );
    m.set_xid(0x1234_5678).set_flags(v4::Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(t));
    if let Some(r) = requested {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(r));
    }
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::ClasslessStaticRoute,
    ]));
    m.opts_mut().insert(DhcpOption::Hostname("vm".into()));
    m.to_vec().expect("seed messages encode")
}

pub(super) fn dhcp() -> Vec<Seed> {
    let ip = |s: &str| s.parse::<Ipv4Addr>().expect("seed ip");
    let mut v = vec![
        seed("discover_vm1", &[0, 0], &dhcp_msg(VM1.0, MessageType::Discover, None, None)),
        seed(
            "request_vm1_ack",
            &[1, 0],
            &dhcp_msg(VM1.0, MessageType::Request, Some(ip("10.0.0.11")), None),
        ),
        seed(
            "request_vm1_nak",
            &[2, 0],
            &dhcp_msg(VM1.0, MessageType::Request, Some(ip("10.0.0.99")), None),
        ),
        seed(
            "renew_ciaddr",
            &[0, 0x10],
            &dhcp_msg(VM2.0, MessageType::Request, None, Some(ip("10.0.0.12"))),
        ),
        seed("discover_vm2", &[1, 0], &dhcp_msg(VM2.0, MessageType::Discover, None, None)),
        seed(
            "discover_disabled",
            &[0, 0],
            &dhcp_msg(VM_DISABLED.0, MessageType::Discover, None, None),
        ),
        seed(
            "discover_unknown",
            &[0, 0],
            &dhcp_msg([2, 0, 0, 0, 0, 0x66], MessageType::Discover, None, None),
        ),
        seed("inform", &[0, 0], &dhcp_msg(VM1.0, MessageType::Inform, None, None)),
        seed("release", &[0, 0], &dhcp_msg(VM1.0, MessageType::Release, None, None)),
        seed(
            "patched_chaddr_vm2",
            &[0, 0x06],
            &dhcp_msg([2, 0, 0, 0, 0, 0x66], MessageType::Discover, None, None),
        ),
        seed("at_uplink", &[3, 0], &dhcp_msg(VM1.0, MessageType::Discover, None, None)),
        seed("truncated", &[0, 0], &dhcp_msg(VM1.0, MessageType::Discover, None, None)[..100]),
    ];
    let mut reply = dhcp_msg(VM1.0, MessageType::Discover, None, None);
    reply[0] = 2; // BOOTREPLY
    v.push(seed("bootreply_opcode", &[0, 0], &reply));
    let tagged = frame(
        "eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,vlan.vid=5,ip4.src=0.0.0.0,ip4.dst=255.255.255.255,udp.src=68,udp.dst=67",
        &dhcp_msg(VM1.0, MessageType::Discover, None, None),
    );
    v.push(seed("raw_vlan_frame", &[0, 0x01], &tagged));
    v.push(seed("raw_not_dhcp", &[0, 0x01], &frame(VM1_UDP, b"x")));
    v
}

/// An Ethernet/IPv4 ARP message (28 bytes).
fn arp_msg(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    [&[0, 1, 0x08, 0, 6, 4][..], &op.to_be_bytes(), &sha, &spa, &tha, &tpa].concat()
}

pub(super) fn arp() -> Vec<Seed> {
    let gw = [2, 0, 0, 0, 9, 9];
    let z = [0; 6];
    vec![
        seed("vm1_asks_router", &[0, 0], &arp_msg(1, VM1.0, [10, 0, 0, 11], z, [10, 0, 0, 1])),
        seed("vm2_asks_seeded", &[1, 0], &arp_msg(1, VM2.0, [10, 0, 0, 12], z, [10, 0, 0, 50])),
        seed("gw_asks_uplink", &[3, 0], &arp_msg(1, gw, [192, 0, 2, 1], z, [192, 0, 2, 2])),
        seed("gw_garp", &[3, 0], &arp_msg(1, gw, [192, 0, 2, 1], z, [192, 0, 2, 1])),
        seed("vm_garp", &[0, 0x10], &arp_msg(1, VM1.0, [10, 0, 0, 11], z, [10, 0, 0, 11])),
        seed(
            "gw_replies",
            &[3, 0x02],
            &arp_msg(2, gw, [192, 0, 2, 1], [2, 0, 0, 0, 1, 3], [192, 0, 2, 2]),
        ),
        seed(
            "vm_replies_router",
            &[0, 0x01],
            &arp_msg(2, VM1.0, [10, 0, 0, 11], [2, 0, 0, 0, 1, 1], [10, 0, 0, 1]),
        ),
        seed("tagged_request", &[0, 0x04], &arp_msg(1, VM1.0, [10, 0, 0, 11], z, [10, 0, 0, 1])),
        seed("asks_other_subnet", &[3, 0x10], &arp_msg(1, gw, [192, 0, 2, 1], z, [10, 0, 0, 1])),
        seed(
            "non_ethernet_kept",
            &[0, 0x08],
            &[
                &[0, 6, 0x08, 0, 6, 4][..],
                &arp_msg(1, VM1.0, [10, 0, 0, 11], z, [10, 0, 0, 1])[6..],
            ]
            .concat(),
        ),
        seed("truncated", &[0, 0], &arp_msg(1, VM1.0, [10, 0, 0, 11], z, [10, 0, 0, 1])[..20]),
        seed("from_interior", &[4, 0x13], &arp_msg(1, VM1.0, [10, 0, 0, 11], z, [10, 0, 0, 1])),
    ]
}

/// The IPv4 datagram (from its header on) of a described frame.
fn datagram(desc: &str, payload: &[u8]) -> Vec<u8> {
    frame(desc, payload)[14..].to_vec()
}

pub(super) fn icmp_error() -> Vec<Seed> {
    let udp = datagram(VM1_UDP, &[0xab; 40]);
    let from_drop_net =
        datagram("ip4.src=203.0.113.5,ip4.dst=10.0.0.11,udp.src=1,udp.dst=2", b"12345678");
    let ping = datagram(VM1_PING, b"ping");
    let err = datagram("ip4.src=10.0.0.1,ip4.dst=10.0.0.11,icmp4.type=3,icmp4.code=1", &udp[..28]);
    let later = datagram("ip4.src=10.0.0.11,ip4.dst=8.8.8.8,ip.frag=later,ip.proto=17", b"tail");
    let opts =
        frames().into_iter().find(|(n, _)| *n == "ipv4_options").expect("seed").1[14..].to_vec();
    let gw = "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=192.0.2.1";
    let mut v = Vec::new();
    for (kind, name) in [(0u8, "net"), (3, "frag_needed"), (5, "ttl")] {
        v.push(seed(&format!("build_{name}_udp"), &[kind << 2], &udp));
    }
    v.push(seed("build_ping", &[4 << 2], &ping));
    v.push(seed("build_about_error", &[0], &err));
    v.push(seed("build_later_fragment", &[2 << 2], &later));
    v.push(seed("build_ip_options", &[1 << 2], &opts));
    v.push(seed("build_short", &[0], &udp[..24]));
    for sel in 0..7u8 {
        v.push(seed(
            &format!("receive_type{sel}_drop_net"),
            &[1 | (sel << 2)],
            &from_drop_net[..28],
        ));
    }
    v.push(seed("receive_unreach_vm", &[1], &udp[..28]));
    v.push(seed("receive_short_quote", &[1 | (1 << 2)], &udp[..10]));
    v.push(seed(
        "receive_ipv6_quote",
        &[1],
        &datagram("ip6.src=::1,ip6.dst=::2,udp.dst=9", b"")[..28],
    ));
    for (name, desc) in [
        ("ttl1", format!("{gw},ip4.dst=10.0.0.11,ip.ttl=1,udp.src=3,udp.dst=33434")),
        ("reject_route", format!("{gw},ip4.dst=198.51.100.7,tcp.dst=22")),
        ("reject_rule", format!("{gw},ip4.dst=10.0.0.99,udp.dst=9")),
        ("blackhole", format!("{gw},ip4.dst=203.0.113.9,udp.dst=9")),
        ("ping_router", format!("{gw},ip4.dst=192.0.2.2,icmp4.type=8,icmp4.id=3")),
        ("ttl1_first_frag", format!("{gw},ip4.dst=10.0.0.11,ip.ttl=1,ip.frag=first,udp.dst=9")),
        ("ttl1_later_frag", format!("{gw},ip4.dst=10.0.0.11,ip.ttl=1,ip.frag=later,ip.proto=17")),
        ("ttl1_multicast_src", "eth.src=02:00:00:00:09:09,eth.dst=02:00:00:00:01:03,ip4.src=224.0.0.1,ip4.dst=10.0.0.11,ip.ttl=1,udp.dst=9".to_string()),
    ] {
        v.push(seed(&format!("generate_{name}"), &[2], &datagram(&desc, b"payload!")));
    }
    v.push(seed("generate_ttl1_error", &[3], &{
        let mut e = err.clone();
        e[8] = 1;
        e[12..16].copy_from_slice(&[192, 0, 2, 1]);
        set_ipv4_header_checksum(&mut e[..20]);
        e
    }));
    v
}
