//! `dhcp`: DHCPv4 requests as the simulation answers them
//! (`midonet_sim::dhcp`, reached through `simulate` like a VM's packet).
//!
//! ```text
//!  [port (1)] [flags (1)] [BOOTP message]            wrapped: Ethernet/IPv4/UDP 68→67 from chaddr
//!  [port (1)] [flags (1)] [Ethernet frame]           raw (flags bit 0): the frame as is
//!   flags bit 1: overwrite chaddr with a known client (bits 2-3: vm1, vm2, the disabled subnet's)
//!   flags bit 4: warm state
//! ```
//!
//! What must hold:
//!
//! * `dhcproto`: decode → encode → decode is the same message once
//!   encoded (the first encoding drops what dhcproto cannot write back,
//!   such as an empty parameter request list), for messages with the
//!   magic cookie;
//! * a wrapped request entering an exterior port of the DHCP bridge is
//!   answered exactly when it is a well-formed DISCOVER or REQUEST from a
//!   client with a host entry in an enabled subnet (an independent reading
//!   of the rules in `sim::dhcp`); replies have well-formed options;
//! * every reply is one Ethernet/IPv4/UDP 67→68 frame to the client with
//!   valid checksums, sent back out of the ingress port, whose payload
//!   decodes as the BOOTREPLY to that request: same xid and chaddr, OFFER
//!   for DISCOVER, ACK when the requested address is the host's and NAK
//!   otherwise, the host's address in yiaddr.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use midonet_sim::dhcp::options_well_formed;
use midonet_sim::{Decision, FlowKey, GenKind, GenTarget, InPort, MacAddr};

use crate::check::{assert_checksums, simulate};
use crate::fixture::{fixture, VM1, VM2, VM_DISABLED};

/// Offset of chaddr in a BOOTP message (RFC 2131 §2).
const CHADDR: usize = 28;

pub fn dhcp(data: &[u8]) {
    let [port, flags, rest @ ..] = data else { return };
    let raw = flags & 0x01 != 0;
    let mut msg = rest.to_vec();
    if !raw && flags & 0x02 != 0 && msg.len() >= CHADDR + 6 {
        let who = [VM1, VM2, VM_DISABLED, MacAddr([2, 0, 0, 0, 0, 9])][usize::from(flags >> 2) & 3];
        msg[CHADDR..CHADDR + 6].copy_from_slice(&who.0);
    }
    round_trip(&msg);
    let frame = if raw { msg.clone() } else { wrap(&msg) };
    let Some((_, r)) = simulate(*port, flags & 0x10 != 0, &frame) else {
        assert!(raw, "a wrapped request keys");
        return;
    };
    let replies: Vec<_> = r.generated.iter().filter(|g| g.kind == GenKind::DhcpReply).collect();
    assert!(replies.len() <= 1, "one reply at most");
    let f = fixture();
    if !raw && f.is_lan_exterior(*port) {
        let expected = decode(&msg).and_then(|m| expected(&m));
        assert_eq!(replies.first().map(|_| ()), expected.map(|_| ()), "answered iff it should be");
    }
    let Some(g) = replies.first() else { return };
    assert_eq!(r.decision, Decision::Consumed, "an answered request goes no further");
    assert_eq!(g.target, GenTarget::Emit(f.port(*port)), "back out of the ingress port");
    let payload = udp_payload(&frame).expect("only UDP requests are answered");
    let req = decode(payload).expect("only decodable requests are answered");
    check_reply(&g.frame, &req);
}

/// `msg` in an Ethernet/IPv4/UDP 68→67 broadcast from its chaddr.
fn wrap(msg: &[u8]) -> Vec<u8> {
    let mut src = [2, 0, 0, 0, 0, 0x77];
    if let Some(c) = msg.get(CHADDR..CHADDR + 6) {
        src.copy_from_slice(c);
    }
    let key = FlowKey {
        in_port: InPort::Port(1),
        eth_src: MacAddr(src),
        eth_dst: MacAddr::BROADCAST,
        ethertype: 0x0800,
        ipv4_src: Ipv4Addr::UNSPECIFIED,
        ipv4_dst: Ipv4Addr::BROADCAST,
        ip_proto: 17,
        ip_ttl: 64,
        l4_src: 68,
        l4_dst: 67,
        ..FlowKey::default()
    };
    let mut frame = Vec::with_capacity(42 + msg.len());
    key.to_frame(msg, &mut frame);
    frame
}

/// The UDP payload of an untagged or single-tagged IPv4 frame.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let l3 = if frame.get(12..14)? == [0x81, 0x00] { 18 } else { 14 };
    let ip = frame.get(l3..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let udp = ip.get(ihl..total)?;
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    udp.get(8..len.max(8))
}

/// `msg` decoded by dhcproto, unless an option breaks a length its RFC
/// fixes (dhcproto only `debug_assert!`s those; `sim::dhcp` does not
/// answer such a message).
fn decode(msg: &[u8]) -> Option<v4::Message> {
    if !options_well_formed(msg.get(240..).unwrap_or_default()) {
        return None;
    }
    v4::Message::decode(&mut Decoder::new(msg)).ok()
}

/// RFC 2131 §3's magic cookie, which starts the options.
const MAGIC: [u8; 4] = [99, 130, 83, 99];

fn round_trip(payload: &[u8]) {
    // dhcproto keeps whatever stands where the cookie should be and reads
    // options after it anyway; without the cookie there is no DHCP message
    // to round-trip (and `sim::dhcp` never answers one: no message type).
    if payload.get(236..240) != Some(&MAGIC[..]) {
        return;
    }
    let Some(m) = decode(payload) else { return };
    let Ok(bytes) = m.to_vec() else { return };
    assert!(options_well_formed(&bytes[240..]), "re-encoded options stay well formed");
    // The first encoding may drop what dhcproto cannot write back (an
    // empty parameter request list): from then on it must be a fixed point.
    let again = v4::Message::decode(&mut Decoder::new(&bytes))
        .unwrap_or_else(|e| panic!("re-encoded message decodes: {e}: {bytes:02x?}"));
    let bytes2 = again.to_vec().expect("a decoded encoding encodes");
    let third = v4::Message::decode(&mut Decoder::new(&bytes2)).expect("and decodes");
    assert_eq!(third, again, "dhcproto decode → encode → decode");
}

/// What `sim::dhcp` must answer to `req`, read from the fixture's
/// configuration: (reply type, the host's address).
fn expected(req: &v4::Message) -> Option<(MessageType, Ipv4Addr)> {
    if req.opcode() != v4::Opcode::BootRequest
        || req.htype() != v4::HType::Eth
        || !(6..=16).contains(&req.hlen())
    {
        return None;
    }
    let mac = req.chaddr().get(..6)?;
    let ip = match mac {
        m if m == VM1.0 => Ipv4Addr::new(10, 0, 0, 11),
        m if m == VM2.0 => Ipv4Addr::new(10, 0, 0, 12),
        _ => return None,
    };
    let reply = match req.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => {
            let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(a)) => *a,
                _ => req.ciaddr(),
            };
            if requested == ip {
                MessageType::Ack
            } else {
                MessageType::Nak
            }
        }
        _ => return None,
    };
    Some((reply, ip))
}

fn check_reply(frame: &[u8], req: &v4::Message) {
    let k = FlowKey::extract(frame, InPort::Port(0)).expect("the reply keys");
    assert_eq!((k.ip_proto, k.l4_src, k.l4_dst), (17, 67, 68), "udp 67 → 68");
    // To the client's hardware address (chaddr), which need not be the
    // request's Ethernet source.
    assert_eq!((&k.eth_dst.0[..], k.ipv4_dst), (&req.chaddr()[..6], Ipv4Addr::BROADCAST));
    assert_checksums(frame);
    let payload = udp_payload(frame).expect("udp payload");
    assert!(payload.len() >= v4::MIN_PACKET_SIZE, "padded to the BOOTP minimum");
    assert!(options_well_formed(&payload[240..]), "the reply's options are well formed");
    let m = v4::Message::decode(&mut Decoder::new(payload)).expect("the reply decodes");
    assert_eq!(m.opcode(), v4::Opcode::BootReply);
    assert_eq!(m.xid(), req.xid(), "xid");
    assert_eq!(m.chaddr(), req.chaddr(), "chaddr");
    let client = &req.chaddr()[..6];
    assert_ne!(client, VM_DISABLED.0, "a disabled subnet is never served");
    let (want, ip) = expected(req).expect("answered, so answerable");
    assert_eq!(m.opts().msg_type(), Some(want), "reply type");
    if want != MessageType::Nak {
        assert_eq!(m.yiaddr(), ip, "the host's address");
    }
}
