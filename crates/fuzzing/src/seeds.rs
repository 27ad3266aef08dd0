//! Hand-made seed inputs: real frames, real JSON bodies, real protobuf
//! encodings, each with the target's prefix bytes (module docs of each
//! target). `examples/write_seeds.rs` writes them to `fuzz/corpus/<target>/`,
//! which both cargo-fuzz and the stable replay test start from.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::Encodable;
use midonet_flow::FlowKey;
use midonet_proto::pb;
use midonet_wire::checksum::set_ipv4_header_checksum;
use midonet_wire::vxlan::{CsumOffset, CsumPartial, Gso, OffloadMeta, VxlanRepr};
use prost::Message;

use crate::fixture::{VM1, VM2, VM_DISABLED};

/// A named seed.
pub type Seed = (String, Vec<u8>);

/// The seeds of target `name` (empty for an unknown name).
pub fn for_target(name: &str) -> Vec<Seed> {
    match name {
        "vxlan" => vxlan(),
        "extract" => extract(),
        "dhcp" => dhcp(),
        "arp" => arp(),
        "icmp_error" => icmp_error(),
        "rest_body" => rest_body(),
        "grpc_agent" => grpc_agent(),
        "sim_packet" => sim_packet(),
        "flowstate" => flowstate(),
        "neutron_api" => neutron_api(),
        "offload" => offload(),
        "finmerge" => finmerge(),
        _ => Vec::new(),
    }
}

fn seed(name: &str, prefix: &[u8], body: &[u8]) -> Seed {
    (name.to_string(), [prefix, body].concat())
}

/// A frame from a `midonet trace` packet description and a payload.
fn frame(desc: &str, payload: &[u8]) -> Vec<u8> {
    let k: FlowKey = desc.parse().expect("seed descriptions parse");
    let mut f = Vec::new();
    k.to_frame(payload, &mut f);
    f
}

const VM1_TCP: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=8.8.8.8,tcp.src=40000,tcp.dst=443,tcp.flags=syn";
const VM1_UDP: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.11,ip4.dst=10.0.0.12,udp.src=5000,udp.dst=53";
const VM1_PING: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.11,ip4.dst=10.0.0.1,icmp4.type=8,icmp4.id=7";

/// Frames of every shape the extractor knows, by name.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
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

fn extract() -> Vec<Seed> {
    let mut v: Vec<Seed> = frames().into_iter().map(|(n, f)| seed(n, &[1], &f)).collect();
    v.push(seed("tunnel_in_tcp", &[0x85], &frame(VM1_TCP, b"")));
    v
}

fn sim_packet() -> Vec<Seed> {
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
fn offload() -> Vec<Seed> {
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
fn finmerge() -> Vec<Seed> {
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

fn vxlan_hdr(vni: u32, offload: Option<OffloadMeta>) -> [u8; 8] {
    VxlanRepr { vni, offload }.to_bytes().expect("seed headers encode")
}

/// A UDP GRO message: `n` datagrams of `pl` payload bytes (the last
/// `last` bytes), each behind a VXLAN header for `vni`, consecutive IP IDs.
fn gro_message(n: usize, pl: usize, last: usize, df: bool, partial: bool) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut seg = 0;
    for k in 0..n {
        let size = if k + 1 == n { last } else { pl };
        let payload: Vec<u8> = (0..size).map(|i| (i + k * 7) as u8).collect();
        let mut f = frame(VM1_UDP, &payload);
        f[18..20].copy_from_slice(&(0x1000 + k as u16).to_be_bytes());
        if df {
            f[20] |= 0x40;
        }
        set_ipv4_header_checksum(&mut f[14..34]);
        if partial {
            // The uncomplemented pseudo-header sum, as an offloading sender leaves it.
            let s = midonet_wire::checksum::pseudo_header_v4(
                Ipv4Addr::new(10, 0, 0, 11),
                Ipv4Addr::new(10, 0, 0, 12),
                17,
                (8 + size) as u16,
            );
            f[40..42].copy_from_slice(&midonet_wire::checksum::fold(s).to_be_bytes());
        }
        let hdr = vxlan_hdr(crate::vxlan::BOUND_VNI, None);
        if k == 0 {
            seg = 8 + f.len();
        }
        buf.extend_from_slice(&hdr);
        buf.extend_from_slice(&f);
    }
    (u16::try_from(seg).expect("small"), buf)
}

fn vxlan() -> Vec<Seed> {
    let gso = OffloadMeta {
        csum_partial: Some(CsumPartial { start: 34, offset: CsumOffset::Tcp }),
        csum_valid: false,
        gso: Some(Gso { kind: 1, ecn: false, size: 1398 }),
    };
    let udp_partial = OffloadMeta {
        csum_partial: Some(CsumPartial { start: 34, offset: CsumOffset::Udp }),
        ..OffloadMeta::default()
    };
    let v6 = OffloadMeta {
        csum_partial: None,
        csum_valid: true,
        gso: Some(Gso { kind: 4, ecn: true, size: 9000 }),
    };
    let bound = crate::vxlan::BOUND_VNI;
    let arp = frames().into_iter().find(|(n, _)| *n == "arp_request").expect("arp seed").1;
    let mut v = vec![
        seed("plain_arp", &[0], &[&vxlan_hdr(bound, None)[..], &arp].concat()),
        seed(
            "gso_tcp",
            &[0],
            &[&vxlan_hdr(bound, Some(gso))[..], &frame(VM1_TCP, &[0xaa; 64])].concat(),
        ),
        seed(
            "udp_partial",
            &[0],
            &[&vxlan_hdr(bound, Some(udp_partial))[..], &frame(VM1_UDP, b"q")].concat(),
        ),
        seed("tcp6_gso_ecn", &[0], &[&vxlan_hdr(bound, Some(v6))[..], &frames()[8].1].concat()),
        seed("unbound_vni", &[0], &[&vxlan_hdr(7, None)[..], &frame(VM1_UDP, b"q")].concat()),
        seed("max_vni_header_only", &[0], &vxlan_hdr(0x00ff_ffff, None)),
        seed("bad_offload", &[0], &[0x09, 0x0d, 0, 0, 0, 0, 0x42, 0]),
        seed("i_flag_clear", &[0], &[0, 0, 0, 0, 0, 0, 0x42, 0]),
        seed(
            "gbp_foreign_bits",
            &[0],
            &[
                0x88, 0x40, 0xab, 0xcd, 0, 0, 0x42, 0xee, 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88,
                0xb5,
            ],
        ),
        seed("truncated", &[0], &[0x08, 0, 0]),
        seed("short_inner", &[0], &[&vxlan_hdr(bound, None)[..], &[1; 10]].concat()),
    ];
    for (name, n, pl, last, df, partial) in [
        ("gro_2", 2, 100, 100, false, false),
        ("gro_3_short_last", 3, 64, 20, false, false),
        ("gro_4_df", 4, 32, 32, true, false),
        ("gro_2_partial", 2, 50, 10, false, true),
    ] {
        let (seg, buf) = gro_message(n, pl, last, df, partial);
        let mode = if partial { 3 } else { 1 };
        v.push(seed(name, &[mode], &[&seg.to_be_bytes()[..], &buf].concat()));
    }
    let (seg, mut buf) = gro_message(2, 40, 40, false, false);
    let second_port = usize::from(seg) + 8 + 36;
    buf[second_port] ^= 1;
    v.push(seed("gro_ports_differ", &[1], &[&seg.to_be_bytes()[..], &buf].concat()));
    v
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

fn dhcp() -> Vec<Seed> {
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

fn arp() -> Vec<Seed> {
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

fn icmp_error() -> Vec<Seed> {
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

fn neutron_api() -> Vec<Seed> {
    let op = |method: &str, path: &str| {
        let i = crate::neutron_api::OPS
            .iter()
            .position(|(m, p)| *m == method && *p == path)
            .expect("an op");
        u8::try_from(i).expect("few ops")
    };
    let seeds: Vec<(&str, (&str, &str), &str)> = vec![
        (
            "network",
            ("POST", "/v2.0/networks"),
            r#"{"network":{"name":"n2","admin_state_up":true,"mtu":1400,"shared":false}}"#,
        ),
        (
            "networks_bulk",
            ("POST", "/v2.0/networks"),
            r#"{"networks":[{"name":"a"},{"name":"b","router:external":"True"}]}"#,
        ),
        (
            "network_unknown_attr",
            ("POST", "/v2.0/networks"),
            r#"{"network":{"name":"x","bogus":1}}"#,
        ),
        (
            "network_update",
            ("PUT", "/v2.0/networks/{net}"),
            r#"{"network":{"name":"renamed","port_security_enabled":false}}"#,
        ),
        (
            "subnet",
            ("POST", "/v2.0/subnets"),
            r#"{"subnet":{"network_id":"{net}","ip_version":4,"cidr":"10.1.0.0/24","allocation_pools":[{"start":"10.1.0.10","end":"10.1.0.20"}],"dns_nameservers":["8.8.8.8"],"host_routes":[{"destination":"172.16.0.0/12","nexthop":"10.1.0.254"}]}}"#,
        ),
        (
            "subnet_v6",
            ("POST", "/v2.0/subnets"),
            r#"{"subnet":{"network_id":"{net}","ip_version":6,"cidr":"2001:db8::/64","ipv6_ra_mode":"slaac","ipv6_address_mode":"slaac"}}"#,
        ),
        (
            "subnet_overlap",
            ("POST", "/v2.0/subnets"),
            r#"{"subnet":{"network_id":"{net}","ip_version":4,"cidr":"10.0.0.128/25"}}"#,
        ),
        (
            "subnet_update",
            ("PUT", "/v2.0/subnets/{subnet}"),
            r#"{"subnet":{"gateway_ip":null,"enable_dhcp":false}}"#,
        ),
        (
            "port",
            ("POST", "/v2.0/ports"),
            r#"{"port":{"network_id":"{net}","fixed_ips":[{"subnet_id":"{subnet}","ip_address":"10.0.0.50"}],"security_groups":["{sg}"],"allowed_address_pairs":[{"ip_address":"10.0.0.0/28"}],"extra_dhcp_opts":[{"opt_name":"mtu","opt_value":"1400"}],"binding:host_id":"h1","binding:profile":{"interface_name":"tap0"}}}"#,
        ),
        (
            "port_taken_ip",
            ("POST", "/v2.0/ports"),
            r#"{"port":{"network_id":"{net}","fixed_ips":[{"ip_address":"10.0.0.2"}]}}"#,
        ),
        (
            "port_update",
            ("PUT", "/v2.0/ports/{port}"),
            r#"{"port":{"security_groups":[],"port_security_enabled":false,"mac_address":"fa:16:3e:00:00:01"}}"#,
        ),
        (
            "router",
            ("POST", "/v2.0/routers"),
            r#"{"router":{"name":"r2","external_gateway_info":{"network_id":"{ext}","enable_snat":false,"external_fixed_ips":[{"subnet_id":"{ext_subnet}","ip_address":"172.24.4.77"}]}}}"#,
        ),
        (
            "router_routes",
            ("PUT", "/v2.0/routers/{router}"),
            r#"{"router":{"routes":[{"destination":"192.168.0.0/16","nexthop":"172.24.4.254"}]}}"#,
        ),
        (
            "router_clear_gateway",
            ("PUT", "/v2.0/routers/{router}"),
            r#"{"router":{"external_gateway_info":{}}}"#,
        ),
        (
            "add_interface",
            ("PUT", "/v2.0/routers/{router}/add_router_interface"),
            r#"{"subnet_id":"{subnet}"}"#,
        ),
        (
            "add_interface_port",
            ("PUT", "/v2.0/routers/{router}/add_router_interface"),
            r#"{"port_id":"{port}"}"#,
        ),
        (
            "remove_interface",
            ("PUT", "/v2.0/routers/{router}/remove_router_interface"),
            r#"{"subnet_id":"{subnet}"}"#,
        ),
        (
            "floatingip",
            ("POST", "/v2.0/floatingips"),
            r#"{"floatingip":{"floating_network_id":"{ext}","floating_ip_address":"172.24.4.99"}}"#,
        ),
        (
            "floatingip_port",
            ("POST", "/v2.0/floatingips"),
            r#"{"floatingip":{"floating_network_id":"{ext}","port_id":"{port}"}}"#,
        ),
        (
            "security_group",
            ("POST", "/v2.0/security-groups"),
            r#"{"security_group":{"name":"web","description":"web"}}"#,
        ),
        (
            "security_group_update",
            ("PUT", "/v2.0/security-groups/{sg}"),
            r#"{"security_group":{"name":"renamed"}}"#,
        ),
        (
            "rule_tcp",
            ("POST", "/v2.0/security-group-rules"),
            r#"{"security_group_rule":{"security_group_id":"{sg}","direction":"ingress","ethertype":"IPv4","protocol":"tcp","port_range_min":22,"port_range_max":22,"remote_ip_prefix":"10.0.0.5/24"}}"#,
        ),
        (
            "rule_icmp",
            ("POST", "/v2.0/security-group-rules"),
            r#"{"security_group_rule":{"security_group_id":"{sg}","direction":"egress","protocol":"icmp","port_range_min":8,"port_range_max":0,"remote_group_id":"{sg}"}}"#,
        ),
        ("quota", ("PUT", "/v2.0/quotas/{project}"), r#"{"quota":{"network":1,"port":-1}}"#),
        (
            "list_query",
            ("GET", "/v2.0/networks"),
            "name=n&fields=id&fields=name&sort_key=name&sort_dir=desc&limit=1",
        ),
        (
            "list_marker",
            ("GET", "/v2.0/ports"),
            "limit=1&marker={port}&page_reverse=True&fixed_ips=ip_address%3D10.0.0.2",
        ),
        ("delete_subnet_in_use", ("DELETE", "/v2.0/subnets/{subnet}"), ""),
        ("delete_network_in_use", ("DELETE", "/v2.0/networks/{net}"), ""),
    ];
    seeds.into_iter().map(|(n, (m, p), b)| seed(n, &[op(m, p)], b.as_bytes())).collect()
}

fn rest_body() -> Vec<Seed> {
    use midonet_model::ObjectKind;
    let kind = |k: ObjectKind| {
        u8::try_from(ObjectKind::ALL.iter().position(|x| *x == k).expect("a kind")).expect("few")
    };
    let id = "6f1c1d2e-0000-4000-8000-000000000001";
    let id2 = "6f1c1d2e-0000-4000-8000-000000000002";
    let bodies: Vec<(&str, ObjectKind, String)> = vec![
        ("bridge", ObjectKind::Bridge, r#"{"name":"b","tenantId":"t1","adminStateUp":true}"#.into()),
        ("bridge_lenient", ObjectKind::Bridge, format!(r#"{{"name":"b","adminStateUp":null,"inboundFilterId":"{id}","inboundMirrorIds":null}}"#)),
        ("bridge_long_name", ObjectKind::Bridge, format!(r#"{{"name":"{}"}}"#, "n".repeat(256))),
        ("router", ObjectKind::Router, r#"{"name":"r","asNumber":"65000"}"#.into()),
        ("bridge_port", ObjectKind::Port, format!(r#"{{"type":"Bridge","deviceId":"{id}","vlanId":"10"}}"#)),
        ("router_port", ObjectKind::Port, format!(r#"{{"type":"Router","deviceId":"{id}","portAddress":"192.168.1.1","networkAddress":"192.168.1.0","networkLength":24,"portMac":"02:00:00:aa:bb:cc"}}"#)),
        ("port_both_kinds", ObjectKind::Port, format!(r#"{{"type":"Bridge","vlanId":5,"portAddress":"10.0.0.1","hostId":"{id}","interfaceName":"tap0","peerId":"{id2}"}}"#)),
        ("route", ObjectKind::Route, format!(r#"{{"routerId":"{id}","srcNetworkAddr":"0.0.0.0","srcNetworkLength":"0","dstNetworkAddr":"10.9.0.0","dstNetworkLength":"16","nextHopPort":"{id2}","nextHopGateway":"192.168.1.254","weight":"100"}}"#)),
        ("route_bad_length", ObjectKind::Route, r#"{"dstNetworkAddr":"10.0.0.0","dstNetworkLength":33,"srcNetworkAddr":"0.0.0.0","srcNetworkLength":0,"type":"Reject"}"#.into()),
        ("chain", ObjectKind::Chain, format!(r#"{{"name":"c","ruleIds":["{id}"]}}"#)),
        ("rule_accept", ObjectKind::Rule, r#"{"type":"accept","nwProto":"6","tpDst":{"start":"22","end":"22"},"invNwDst":null}"#.into()),
        ("rule_dnat", ObjectKind::Rule, r#"{"type":"dnat","flowAction":"accept","natTargets":[{"addressFrom":"10.0.0.5","addressTo":"10.0.0.5","portFrom":80,"portTo":80}],"nwDstAddress":"192.0.2.10","nwDstLength":32}"#.into()),
        ("rule_jump", ObjectKind::Rule, format!(r#"{{"type":"jump","jumpChainId":"{id}","position":2,"dlType":"2048","dlSrc":"02:00:00:00:00:01","dlSrcMask":"ff:ff:ff:00:00:00"}}"#)),
        ("rule_redirect", ObjectKind::Rule, format!(r#"{{"type":"l2_transform","flowAction":"redirect","targetPortId":"{id}","ingress":true,"failOpen":"false","pushVlan":"7"}}"#)),
        ("rule_bad_range", ObjectKind::Rule, r#"{"type":"drop","tpSrc":{"start":9,"end":1},"fragmentPolicy":"header","icmpDataSrcIp":"10.0.0.0","icmpDataSrcLength":8}"#.into()),
        ("port_group", ObjectKind::PortGroup, r#"{"name":"pg","stateful":"true"}"#.into()),
        ("ip_addr_group", ObjectKind::IpAddrGroup, r#"{"name":"ipg","tenantId":"t"}"#.into()),
        ("ip_addr_group_addr", ObjectKind::IpAddrGroupAddr, format!(r#"{{"ipAddrGroupId":"{id}","addr":"10.0.0.5","version":"4"}}"#)),
        ("ip_addr_group_addr6", ObjectKind::IpAddrGroupAddr, r#"{"addr":"2001:db8::5","version":4}"#.into()),
        ("host", ObjectKind::Host, format!(r#"{{"id":"{id}","name":"h1","addresses":["10.0.0.1"],"floodingProxyWeight":"5","containerLimit":-2}}"#)),
        ("host_interface", ObjectKind::HostInterface, format!(r#"{{"hostId":"{id}","name":"veth0","mtu":1500,"mac":"02:00:00:00:00:09","status":3,"type":"Virtual","addresses":["10.0.0.1","fe80::1"]}}"#)),
        ("host_interface_long", ObjectKind::HostInterface, r#"{"name":"a-very-long-interface-name"}"#.into()),
        ("tunnel_zone", ObjectKind::TunnelZone, r#"{"name":"tz","type":"vxlan"}"#.into()),
        ("tunnel_zone_gre", ObjectKind::TunnelZone, r#"{"name":" ","type":"gre"}"#.into()),
        ("tunnel_zone_host", ObjectKind::TunnelZoneHost, format!(r#"{{"tunnelZoneId":"{id}","hostId":"{id2}","ipAddress":"192.168.0.1"}}"#)),
        ("dhcp_subnet", ObjectKind::DhcpSubnet, format!(r#"{{"bridgeId":"{id}","subnetPrefix":"10.0.0.0","subnetLength":"24","defaultGateway":"10.0.0.1","dnsServerAddrs":["8.8.8.8"],"interfaceMTU":1400,"opt121Routes":[{{"destinationPrefix":"172.16.0.0","destinationLength":"16","gatewayAddr":"10.0.0.254"}}],"enabled":null}}"#)),
        ("dhcp_host", ObjectKind::DhcpHost, format!(r#"{{"bridgeId":"{id}","subnet":"10.0.0.0_24","macAddr":"02:00:00:00:00:01","ipAddr":"10.0.0.5","name":"vm1","extraDhcpOpts":[{{"optName":"mtu","optValue":"9000"}}]}}"#)),
        ("mac_entry", ObjectKind::MacTableEntry, format!(r#"{{"bridgeId":"{id}","macAddr":"02:00:00:00:00:01","portId":"{id2}","vlanId":"0"}}"#)),
        ("arp_entry", ObjectKind::ArpTableEntry, format!(r#"{{"bridgeId":"{id}","ip":"10.0.0.5","mac":"02:00:00:00:00:05"}}"#)),
        ("load_balancer", ObjectKind::LoadBalancer, format!(r#"{{"routerId":"{id}","adminStateUp":"true"}}"#)),
        ("pool", ObjectKind::Pool, format!(r#"{{"loadBalancerId":"{id}","protocol":"TCP","lbMethod":"ROUND_ROBIN"}}"#)),
        ("pool_member", ObjectKind::PoolMember, format!(r#"{{"poolId":"{id}","address":"10.0.0.5","protocolPort":"80","weight":1}}"#)),
        ("vip", ObjectKind::Vip, format!(r#"{{"loadBalancerId":"{id}","poolId":"{id2}","address":"192.0.2.10","protocolPort":80,"sessionPersistence":"SOURCE_IP"}}"#)),
        ("health_monitor", ObjectKind::HealthMonitor, r#"{"type":"TCP","delay":"3","timeout":1,"maxRetries":"2"}"#.into()),
        ("mirror", ObjectKind::Mirror, format!(r#"{{"toPortId":"{id}","conditions":[{{"nwProto":1,"invNwProto":null}},{{"dlType":"0x0800"}}]}}"#)),
        ("not_json", ObjectKind::Bridge, "{not json".into()),
        ("empty", ObjectKind::Port, String::new()),
        ("array", ObjectKind::Rule, "[1,2]".into()),
    ];
    bodies.into_iter().map(|(n, k, b)| seed(n, &[kind(k)], b.as_bytes())).collect()
}

fn grpc_agent() -> Vec<Seed> {
    let h = "6f1c1d2e-0000-4000-8000-000000000001".to_string();
    let b = "6f1c1d2e-0000-4000-8000-0000000000b1".to_string();
    let iface = |name: &str, mtu: u32| pb::Interface {
        name: name.into(),
        mac: "02:00:00:00:00:01".into(),
        mtu,
        up: true,
        has_link: true,
        addresses: vec!["10.0.0.1/24".into(), "fe80::1/64".into()],
        r#type: "Physical".into(),
        endpoint: "DATAPATH".into(),
    };
    let reg = |name: &str, ifaces: Vec<pb::Interface>, ttl: i64| pb::RegisterHostRequest {
        host_id: h.clone(),
        name: name.into(),
        addresses: vec!["192.168.0.1/24".into(), "junk".into()],
        interfaces: ifaces,
        ttl_secs: ttl,
        datapath: String::new(),
    };
    let mac = |vlan: u32, m: &str, port: &str, delete: bool| pb::PublishMacRequest {
        session: 7,
        bridge_id: b.clone(),
        vlan,
        mac: m.into(),
        port_id: port.into(),
        delete,
    };
    let arp = |ip: &str, m: &str, delete: bool| pb::PublishArpRequest {
        session: 7,
        device_id: b.clone(),
        ip: ip.into(),
        mac: m.into(),
        delete,
    };
    let snat = |ip: &str, block: u32, release: bool| pb::ClaimSnatBlockRequest {
        session: 7,
        host_id: h.clone(),
        device_id: b.clone(),
        ip: ip.into(),
        block,
        release,
    };
    let active = |port: &str, on: bool| pb::SetPortActiveRequest {
        session: 7,
        host_id: h.clone(),
        port_id: port.into(),
        active: on,
    };
    let msgs: Vec<(&str, u8, Vec<u8>)> = vec![
        (
            "subscribe_snapshot",
            0,
            pb::SubscribeRequest { from_revision: 0, host_id: h.clone() }.encode_to_vec(),
        ),
        (
            "subscribe_resume",
            0,
            pb::SubscribeRequest { from_revision: 42, host_id: h.clone() }.encode_to_vec(),
        ),
        (
            "register",
            1,
            reg("host-1", vec![iface("eth0", 1500), iface("veth-vm1", 1450)], 10).encode_to_vec(),
        ),
        (
            "register_dup_names",
            1,
            reg("host-1", vec![iface("eth0", 1500), iface("eth0", 9000)], 0).encode_to_vec(),
        ),
        (
            "register_bad_names",
            1,
            reg("h", vec![iface("", 1), iface("a/b", 1), iface("much-too-long-name", 1)], 1000)
                .encode_to_vec(),
        ),
        (
            "register_datapath",
            1,
            pb::RegisterHostRequest {
                datapath: "userspace".into(),
                ..reg("host-1", vec![iface("eth0", 1500)], 10)
            }
            .encode_to_vec(),
        ),
        (
            "register_bad_datapath",
            1,
            pb::RegisterHostRequest { datapath: "ovs".into(), ..reg("host-1", vec![], 10) }
                .encode_to_vec(),
        ),
        (
            "register_bad_id",
            1,
            pb::RegisterHostRequest { host_id: "not-a-uuid".into(), ..Default::default() }
                .encode_to_vec(),
        ),
        ("keepalive", 2, pb::KeepAliveRequest { session: 7, host_id: h.clone() }.encode_to_vec()),
        (
            "report",
            3,
            pb::ReportInterfacesRequest {
                session: 7,
                host_id: h.clone(),
                interfaces: vec![iface("eth1", 1500)],
            }
            .encode_to_vec(),
        ),
        ("port_active", 4, active(&h, true).encode_to_vec()),
        ("port_inactive", 4, active(&h, false).encode_to_vec()),
        ("port_bad", 4, active("p", true).encode_to_vec()),
        ("mac", 5, mac(0, "02:00:00:00:00:09", &h, false).encode_to_vec()),
        ("mac_vlan_delete", 5, mac(100, "02:AA:00:00:00:09", "", true).encode_to_vec()),
        ("mac_bad_vlan", 5, mac(4096, "02:00:00:00:00:09", &h, false).encode_to_vec()),
        ("mac_bad_mac", 5, mac(1, "02:00:00:00:00", &h, false).encode_to_vec()),
        ("arp", 6, arp("10.0.0.9", "02:00:00:00:00:09", false).encode_to_vec()),
        ("arp_delete", 6, arp("10.0.0.9", "", true).encode_to_vec()),
        ("arp_v6", 6, arp("fe80::1", "02:00:00:00:00:09", false).encode_to_vec()),
        ("snat_claim", 7, snat("203.0.113.1", 17, false).encode_to_vec()),
        ("snat_release", 7, snat("203.0.113.1", 1023, true).encode_to_vec()),
        ("snat_bad_block", 7, snat("203.0.113.1", 1024, false).encode_to_vec()),
        ("snat_v6", 7, snat("2001:db8::1", 3, false).encode_to_vec()),
        (
            "lb_checker_claim",
            8,
            pb::ClaimHealthCheckRequest {
                session: 7,
                host_id: h.clone(),
                load_balancer_id: b.clone(),
                release: false,
            }
            .encode_to_vec(),
        ),
        (
            "lb_member_down",
            9,
            pb::ReportMemberStatusRequest {
                session: 7,
                host_id: h.clone(),
                load_balancer_id: b.clone(),
                member_id: b.clone(),
                status: "DOWN".into(),
            }
            .encode_to_vec(),
        ),
        (
            "lb_member_bad_status",
            9,
            pb::ReportMemberStatusRequest {
                session: 7,
                host_id: h.clone(),
                load_balancer_id: b.clone(),
                member_id: b.clone(),
                status: "MAYBE".into(),
            }
            .encode_to_vec(),
        ),
    ];
    msgs.into_iter().map(|(n, sel, m)| seed(n, &[sel], &m)).collect()
}

/// Flow-state messages as an ingress agent sends them, and broken ones.
fn flowstate() -> Vec<Seed> {
    use midonet_wire::flowstate::{
        ConnKeyRepr, ConnStateCode, ConntrackRepr, FlowStateRepr, LearnedKindCode, LearnedRepr,
        NatKindCode, NatRepr,
    };
    let key = |proto: u8, sport: u16, dport: u16| ConnKeyRepr {
        tracker: [0xd0; 16],
        src: Ipv4Addr::new(10, 0, 0, 11),
        dst: Ipv4Addr::new(8, 8, 8, 8),
        src_port: sport,
        dst_port: dport,
        proto,
    };
    let snat = |k: ConnKeyRepr, port: u16| NatRepr {
        key: k,
        kind: NatKindCode::Snat,
        bound_ip: Ipv4Addr::new(203, 0, 113, 1),
        bound_port: port,
    };
    let base = FlowStateRepr {
        sender: [0x11; 16],
        ingress_port: [0x22; 16],
        egress_ports: vec![[0x33; 16]],
        ..FlowStateRepr::default()
    };
    let tcp = key(6, 40000, 443);
    let ping = key(1, 7, 7);
    let msgs = [
        ("empty", FlowStateRepr { egress_ports: vec![], ..base.clone() }),
        (
            "conntrack_tcp",
            FlowStateRepr {
                conntrack: vec![ConntrackRepr { key: tcp, state: ConnStateCode::SynSent }],
                ..base.clone()
            },
        ),
        (
            "snat_tcp",
            FlowStateRepr {
                conntrack: vec![ConntrackRepr { key: tcp, state: ConnStateCode::SynSent }],
                nat: vec![snat(tcp, 1100)],
                ..base.clone()
            },
        ),
        (
            "snat_icmp",
            FlowStateRepr {
                conntrack: vec![ConntrackRepr { key: ping, state: ConnStateCode::New }],
                nat: vec![snat(ping, 1024)],
                ..base.clone()
            },
        ),
        (
            "dnat_sticky_groups",
            FlowStateRepr {
                egress_ports: vec![[0x33; 16], [0x34; 16]],
                port_groups: vec![[0x44; 16]],
                nat: vec![
                    NatRepr { kind: NatKindCode::Dnat, ..snat(key(17, 5000, 53), 5353) },
                    NatRepr { kind: NatKindCode::StickyDnat, ..snat(key(6, 1, 80), 8080) },
                ],
                ..base.clone()
            },
        ),
        (
            "learned",
            FlowStateRepr {
                ingress_port: [0; 16],
                egress_ports: vec![],
                learned: vec![
                    LearnedRepr {
                        kind: LearnedKindCode::RouterArp,
                        device: [0x55; 16],
                        vlan: 0,
                        port: [0; 16],
                        ip: Ipv4Addr::new(10, 2, 0, 4),
                        mac: [2, 0, 0, 0, 0, 4],
                    },
                    LearnedRepr {
                        kind: LearnedKindCode::Mac,
                        device: [0x66; 16],
                        vlan: 0,
                        port: [0x77; 16],
                        ip: Ipv4Addr::UNSPECIFIED,
                        mac: [2, 0, 0, 0, 0, 5],
                    },
                ],
                ..base.clone()
            },
        ),
        (
            "port_request",
            FlowStateRepr {
                purpose: midonet_wire::flowstate::Purpose::Request,
                egress_ports: vec![[0x33; 16], [0x34; 16]],
                ..base.clone()
            },
        ),
        (
            "port_answered",
            FlowStateRepr { purpose: midonet_wire::flowstate::Purpose::Answered, ..base.clone() },
        ),
        (
            "many",
            FlowStateRepr {
                conntrack: (0..20)
                    .map(|i| ConntrackRepr {
                        key: key(17, 1000 + i, 53),
                        state: ConnStateCode::from_u8((i % 6) as u8),
                    })
                    .collect(),
                nat: (0..10).map(|i| snat(key(17, 1000 + i, 53), 2000 + i)).collect(),
                ..base.clone()
            },
        ),
    ];
    let mut v: Vec<Seed> = msgs
        .iter()
        .map(|(name, m)| {
            let mut b = Vec::new();
            m.emit_vec(&mut b).expect("seed messages encode");
            seed(name, &[], &b)
        })
        .collect();
    let good = v[2].1.clone();
    v.push(seed("truncated", &[], &good[..good.len() - 1]));
    v.push(seed("trailing_byte", &[], &[&good[..], &[0]].concat()));
    v.push(seed("version_2", &[], &[&[2], &good[1..]].concat()));
    v.push(seed("header_only_short", &[], &good[..20]));
    v
}
