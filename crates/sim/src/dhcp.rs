//! DHCPv4 answered by the simulation (as MidoNet's agent answers it).
//!
//! A UDP 68→67 BOOTREQUEST that enters an exterior bridge port is looked up
//! in the bridge's DHCP configuration *before* the bridge simulates it:
//!
//! ```text
//!  client ──DISCOVER──> [exterior bridge port] ─ static host for chaddr? ─ yes ─> OFFER
//!         ──REQUEST───>                                                    ├───> ACK (requested == static ip)
//!                                                                          └───> NAK (otherwise)
//!                                                 no host / disabled subnet ─> normal simulation (flood)
//! ```
//!
//! * There is no dynamic pool: a client is answered only when a static host
//!   entry of an *enabled* subnet of the bridge has its MAC (`chaddr`).
//! * The reply is an Ethernet/IPv4/UDP 67→68 frame from the fixed server MAC
//!   [`SERVER_MAC`] to the client's MAC, IP destination 255.255.255.255,
//!   source the subnet's server address (or its gateway when unset), sent
//!   back out of the ingress port.
//! * Options: message type, server id, lease time ([`LEASE_SECS`], 1 day),
//!   subnet mask, broadcast address, router, DNS servers, interface MTU,
//!   option 121 classless routes (with a default route via the gateway added
//!   whenever the subnet has opt121 routes, because RFC 3442 §3 makes clients
//!   ignore option 3 when 121 is present), and the host's extra options.
//! * **MTU choice.** MidoNet serves min(subnet MTU or 1500, underlay MTU −
//!   tunnel overhead). The simulation does not know the underlay, so it
//!   serves the subnet's `interfaceMTU` when set and otherwise
//!   [`DEFAULT_MTU`] = 1500 − 50 (VXLAN over IPv4 overhead), the largest MTU
//!   that crosses a 1500-byte underlay without fragmentation.
//! * Extra options are matched by name (dnsmasq/Neutron spellings, e.g.
//!   `dns-server`, `domain-name`, `mtu`) or by decimal code; values of known
//!   options are typed (address lists are comma separated), unknown codes
//!   carry the value's bytes as is. An option that does not parse is left
//!   out rather than failing the whole reply.
//!
//! Replies are padded to the 300-byte BOOTP minimum (RFC 1542 §3.4: some
//! clients drop shorter messages).

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use midonet_model::{BridgeId, DhcpExtraOpt, DhcpHost, DhcpSubnet, Topology};
use midonet_wire::checksum::{finish, pseudo_header_v4, set_ipv4_header_checksum, sum};

use crate::snapshot::Map;
use crate::MacAddr;

/// The MAC the DHCP server answers from (MidoNet's fixed value).
pub const SERVER_MAC: MacAddr = MacAddr([0x02, 0xa8, 0x9c, 0xde, 0x39, 0x27]);
/// Lease time served, in seconds (1 day, as MidoNet).
pub const LEASE_SECS: u32 = 86_400;
/// MTU served when the subnet sets none: 1500 minus the VXLAN overhead.
pub const DEFAULT_MTU: u16 = 1500 - 50;
/// UDP ports of the server and the client.
pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// The DHCP configuration of one bridge: its enabled subnets and their
/// static hosts by MAC. Only bridges with at least one enabled subnet have
/// one (the engine reads the DHCP ports of a packet only on those bridges,
/// so other bridges' flow masks stay as they were).
#[derive(Clone, Debug, Default)]
pub struct BridgeDhcp {
    pub subnets: Vec<DhcpSubnet>,
    /// Client MAC → (index into `subnets`, host entry).
    pub hosts: Map<MacAddr, (usize, DhcpHost)>,
}

/// Compile the DHCP configuration of every bridge. Bridge ids and subnet
/// keys come from the map keys (the stored bodies may not repeat them).
pub(crate) fn build(t: &Topology) -> Map<BridgeId, BridgeDhcp> {
    let mut out: Map<BridgeId, BridgeDhcp> = Map::default();
    let mut index: Map<(BridgeId, &str), usize> = Map::default();
    for ((bridge, key), s) in &t.dhcp_subnets {
        if !s.enabled {
            continue;
        }
        let d = out.entry(*bridge).or_default();
        index.insert((*bridge, key.as_str()), d.subnets.len());
        d.subnets.push(s.clone());
    }
    for ((bridge, key, mac), h) in &t.dhcp_hosts {
        let Some(&i) = index.get(&(*bridge, key.as_str())) else { continue };
        if let Some(d) = out.get_mut(bridge) {
            d.hosts.insert(MacAddr(mac.0), (i, h.clone()));
        }
    }
    out
}

/// Where the options start in a BOOTP message: after the fixed fields and
/// the magic cookie (RFC 2131 §3).
const OPTIONS: usize = 240;

/// Lengths that RFCs fix for the options `dhcproto` decodes with fixed-size
/// reads while checking the length only with `debug_assert!`: a message
/// breaking one would panic a debug build (an agent, a test) and be misread
/// by a release build, so it is not answered. (code, fewest, most bytes)
const FIXED_LENGTHS: &[(u8, usize, usize)] = &[
    (80, 0, 0),           // Rapid Commit (RFC 4039 §4)
    (81, 3, usize::MAX),  // Client FQDN: flags, RCODE1, RCODE2, name (RFC 4702 §2)
    (94, 3, 3),           // Client Network Interface Identifier (RFC 4578 §2.2)
    (151, 1, usize::MAX), // bulk leasequery status-code (RFC 6926 §6.2.2)
    (152, 4, 4),          // base-time, start-time-of-state, query-start-time,
    (153, 4, 4),          // query-end-time (RFC 6926 §6.2.3-6.2.6)
    (154, 4, 4),
    (155, 4, 4),
];

/// Whether the DHCP options area `opts` (what follows the magic cookie, or
/// one option TLV) keeps [`FIXED_LENGTHS`], read the way `dhcproto` reads
/// it: pad and end have no length, and consecutive options with one code
/// are one option (RFC 3396 concatenation). Used before every decode of
/// bytes the simulation did not write.
pub fn options_well_formed(opts: &[u8]) -> bool {
    let fits = |(code, len): (u8, usize)| {
        FIXED_LENGTHS.iter().all(|&(c, lo, hi)| c != code || (lo..=hi).contains(&len))
    };
    let mut run: Option<(u8, usize)> = None;
    let mut at = 0;
    while let Some(&code) = opts.get(at) {
        if code == 0 || code == 255 {
            if run.take().is_some_and(|r| !fits(r)) {
                return false;
            }
            if code == 255 {
                return true;
            }
            at += 1;
            continue;
        }
        let len = opts.get(at + 1).map(|l| usize::from(*l));
        let Some(len) = len.filter(|l| at + 2 + l <= opts.len()) else {
            // Cut short: dhcproto decodes neither this option nor a run it
            // continues, and stops there.
            if run.is_some_and(|(c, _)| c == code) {
                run = None;
            }
            break;
        };
        run = match run {
            Some((c, l)) if c == code => Some((c, l + len)),
            Some(r) if !fits(r) => return false,
            _ => Some((code, len)),
        };
        at += 2 + len;
    }
    run.is_none_or(fits)
}

/// What the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Offer,
    Ack,
    Nak,
}

/// The answer to a request: the reply kind, the frame and the host's IP.
pub(crate) struct Answer {
    pub reply: Reply,
    pub frame: Vec<u8>,
    pub client: MacAddr,
    pub ip: Ipv4Addr,
}

/// The DHCP payload of an Ethernet/IPv4/UDP frame (untagged or one VLAN
/// tag), if it is one to port 67.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    if et == 0x8100 {
        off += 4;
        et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    }
    if et != 0x0800 {
        return None;
    }
    let ip = frame.get(off + 2..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if *ip.get(9)? != 17 || ihl < 20 || total < ihl + 8 {
        return None;
    }
    let udp = ip.get(ihl..total)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != SERVER_PORT {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    udp.get(8..len.max(8))
}

/// Answer the BOOTREQUEST in `frame` from `cfg`, or `None` when it is not
/// ours to answer (not a DHCP DISCOVER/REQUEST, unknown client MAC): the
/// packet then goes on into the bridge.
pub(crate) fn answer(cfg: &BridgeDhcp, frame: &[u8]) -> Option<Answer> {
    let payload = udp_payload(frame)?;
    if !options_well_formed(payload.get(OPTIONS..).unwrap_or_default()) {
        return None;
    }
    let req = v4::Message::decode(&mut Decoder::new(payload)).ok()?;
    if req.opcode() != v4::Opcode::BootRequest
        || req.htype() != v4::HType::Eth
        // dhcproto's chaddr() slices its 16-byte field by hlen and panics
        // past 16 (found by the dhcp fuzz target: one packet from a VM
        // brought the simulation down, in release builds too).
        || !(6..=16).contains(&req.hlen())
    {
        return None;
    }
    let mut client = [0u8; 6];
    client.copy_from_slice(&req.chaddr()[..6]);
    let client = MacAddr(client);
    let (si, host) = cfg.hosts.get(&client)?;
    let subnet = cfg.subnets.get(*si)?;
    let reply = match req.opts().msg_type()? {
        MessageType::Discover => Reply::Offer,
        MessageType::Request => {
            let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                // RENEWING/REBINDING clients name their address in ciaddr.
                _ => req.ciaddr(),
            };
            if requested == host.ip_addr {
                Reply::Ack
            } else {
                Reply::Nak
            }
        }
        _ => return None,
    };
    let server = subnet.server_addr.or(subnet.default_gateway).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let msg = build_reply(&req, reply, subnet, host, server);
    let mut payload = msg.to_vec().ok()?;
    if payload.len() < v4::MIN_PACKET_SIZE {
        payload.resize(v4::MIN_PACKET_SIZE, 0);
    }
    let frame = udp_frame(SERVER_MAC, client, server, Ipv4Addr::BROADCAST, &payload)?;
    Some(Answer { reply, frame, client, ip: host.ip_addr })
}

fn prefix_mask(len: u8) -> Ipv4Addr {
    let len = u32::from(len.min(32));
    Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) })
}

fn build_reply(
    req: &v4::Message,
    reply: Reply,
    s: &DhcpSubnet,
    h: &DhcpHost,
    server: Ipv4Addr,
) -> v4::Message {
    let mut m = v4::Message::default();
    m.set_opcode(v4::Opcode::BootReply)
        .set_htype(v4::HType::Eth)
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_chaddr(req.chaddr());
    m.clear_addrs();
    m.set_giaddr(req.giaddr());
    let o = m.opts_mut();
    if reply == Reply::Nak {
        o.insert(DhcpOption::MessageType(MessageType::Nak));
        o.insert(DhcpOption::ServerIdentifier(server));
        return m;
    }
    m.set_yiaddr(h.ip_addr).set_siaddr(server);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(if reply == Reply::Offer {
        MessageType::Offer
    } else {
        MessageType::Ack
    }));
    o.insert(DhcpOption::ServerIdentifier(server));
    o.insert(DhcpOption::AddressLeaseTime(LEASE_SECS));
    let mask = prefix_mask(s.subnet_length);
    o.insert(DhcpOption::SubnetMask(mask));
    let bcast = Ipv4Addr::from(u32::from(s.subnet_prefix) | !u32::from(mask));
    o.insert(DhcpOption::BroadcastAddr(bcast));
    o.insert(DhcpOption::InterfaceMtu(s.interface_mtu.unwrap_or(DEFAULT_MTU)));
    if let Some(gw) = s.default_gateway {
        o.insert(DhcpOption::Router(vec![gw]));
    }
    if !s.dns_server_addrs.is_empty() {
        o.insert(DhcpOption::DomainNameServer(s.dns_server_addrs.clone()));
    }
    if !s.opt121_routes.is_empty() {
        let mut routes = Vec::with_capacity(s.opt121_routes.len() + 1);
        for r in &s.opt121_routes {
            if let Ok(net) = ipnet::Ipv4Net::new(r.destination_prefix, r.destination_length.min(32))
            {
                routes.push((net.trunc(), r.gateway_addr));
            }
        }
        if let Some(gw) = s.default_gateway {
            if !routes.iter().any(|(n, _)| n.prefix_len() == 0) {
                routes.push((ipnet::Ipv4Net::default(), gw));
            }
        }
        o.insert(DhcpOption::ClasslessStaticRoute(routes));
    }
    if !h.name.is_empty() {
        o.insert(DhcpOption::Hostname(h.name.clone()));
    }
    for x in &h.extra_dhcp_opts {
        if let Some(opt) = extra_option(x) {
            o.insert(opt);
        }
    }
    m
}

/// The value type of an extra option.
#[derive(Clone, Copy)]
enum Ty {
    Addrs,
    Addr,
    Text,
    U16,
    U32,
}

/// Known extra options: names (dnsmasq and Neutron spellings), code, type.
const KNOWN: &[(&[&str], u8, Ty)] = &[
    (&["netmask", "subnet-mask"], 1, Ty::Addr),
    (&["router", "routers"], 3, Ty::Addrs),
    (&["dns-server", "domain-name-servers", "dns-nameservers"], 6, Ty::Addrs),
    (&["hostname", "host-name"], 12, Ty::Text),
    (&["domain-name"], 15, Ty::Text),
    (&["root-path"], 17, Ty::Text),
    (&["mtu", "interface-mtu"], 26, Ty::U16),
    (&["broadcast", "broadcast-address"], 28, Ty::Addr),
    (&["ntp-server", "ntp-servers"], 42, Ty::Addrs),
    (&["lease-time"], 51, Ty::U32),
    (&["server-ip-address", "tftp-server-address"], 150, Ty::Addrs),
    (&["tftp-server", "tftp-server-name"], 66, Ty::Text),
    (&["bootfile-name"], 67, Ty::Text),
];

/// Parse one extra option by name or decimal code.
pub fn extra_option(x: &DhcpExtraOpt) -> Option<DhcpOption> {
    let name = x.opt_name.trim().to_ascii_lowercase();
    let value = x.opt_value.trim();
    let (code, ty) = match name.parse::<u8>() {
        Ok(code) => match KNOWN.iter().find(|(_, c, _)| *c == code) {
            Some((_, c, t)) => (*c, Some(*t)),
            None => (code, None),
        },
        Err(_) => {
            let (_, c, t) = KNOWN.iter().find(|(names, _, _)| names.contains(&name.as_str()))?;
            (*c, Some(*t))
        }
    };
    if code == 0 || code == 255 || code == 53 {
        // Pad, End and the message type are the server's, not the user's.
        return None;
    }
    let bytes: Vec<u8> = match ty {
        None | Some(Ty::Text) => value.as_bytes().to_vec(),
        Some(Ty::Addr) => value.parse::<Ipv4Addr>().ok()?.octets().to_vec(),
        Some(Ty::Addrs) => {
            let mut v = Vec::new();
            for a in value.split(',') {
                v.extend_from_slice(&a.trim().parse::<Ipv4Addr>().ok()?.octets());
            }
            v
        }
        Some(Ty::U16) => value.parse::<u16>().ok()?.to_be_bytes().to_vec(),
        Some(Ty::U32) => value.parse::<u32>().ok()?.to_be_bytes().to_vec(),
    };
    if bytes.is_empty() || bytes.len() > 255 {
        return None;
    }
    // Decode through the codec so known codes become their typed variant
    // (and the reply's option map keys them correctly).
    let mut tlv = vec![code, bytes.len() as u8];
    tlv.extend_from_slice(&bytes);
    if !options_well_formed(&tlv) {
        return None;
    }
    DhcpOption::decode(&mut Decoder::new(&tlv)).ok()
}

/// An Ethernet/IPv4/UDP 67→68 frame carrying `payload`, checksums filled.
fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(8 + payload.len()).ok()?;
    let total = udp_len.checked_add(20)?;
    let mut f = Vec::with_capacity(14 + usize::from(total));
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    set_ipv4_header_checksum(&mut f[ip_start..ip_start + 20]);
    let udp_start = f.len();
    f.extend_from_slice(&SERVER_PORT.to_be_bytes());
    f.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    // UDP checksum over the pseudo-header (src, dst, zero, proto, length).
    let c = match finish(sum(pseudo_header_v4(src, dst, 17, udp_len), &f[udp_start..])) {
        0 => 0xffff, // RFC 768: a computed zero is sent as all ones.
        c => c,
    };
    f[udp_start + 6..udp_start + 8].copy_from_slice(&c.to_be_bytes());
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use midonet_wire::checksum::checksum;

    fn opt(name: &str, value: &str) -> DhcpExtraOpt {
        DhcpExtraOpt { opt_name: name.into(), opt_value: value.into() }
    }

    #[test]
    fn extra_options_by_name_and_code() {
        assert_eq!(
            extra_option(&opt("domain-name", "example.org")),
            Some(DhcpOption::DomainName("example.org".into()))
        );
        assert_eq!(
            extra_option(&opt("6", "10.0.0.53, 10.0.0.54")),
            Some(DhcpOption::DomainNameServer(vec![
                Ipv4Addr::new(10, 0, 0, 53),
                Ipv4Addr::new(10, 0, 0, 54)
            ]))
        );
        assert_eq!(extra_option(&opt("MTU", "1400")), Some(DhcpOption::InterfaceMtu(1400)));
        assert_eq!(extra_option(&opt("mtu", "big")), None, "a bad value drops the option");
        assert_eq!(extra_option(&opt("no-such-option", "x")), None);
        assert_eq!(extra_option(&opt("53", "1")), None, "the message type is not the user's");
        let Some(DhcpOption::Unknown(u)) = extra_option(&opt("224", "abc")) else {
            panic!("unknown code")
        };
        assert_eq!((u8::from(u.code()), u.data()), (224, &b"abc"[..]));
    }

    #[test]
    fn request_with_hardware_address_longer_than_chaddr_is_not_answered() {
        // Found by the dhcp fuzz target: hlen 22 made dhcproto's chaddr()
        // slice past its 16 bytes and panic.
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut m = v4::Message::new(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac.0,
        );
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
        let mut payload = m.to_vec().expect("encode");
        let subnet = DhcpSubnet {
            bridge_id: BridgeId::nil(),
            subnet_prefix: Ipv4Addr::new(10, 0, 0, 0),
            subnet_length: 24,
            default_gateway: None,
            server_addr: None,
            dns_server_addrs: vec![],
            interface_mtu: None,
            opt121_routes: vec![],
            enabled: true,
        };
        let host = DhcpHost {
            bridge_id: BridgeId::nil(),
            subnet: subnet.key(),
            mac_addr: midonet_model::MacAddr(mac.0),
            ip_addr: Ipv4Addr::new(10, 0, 0, 5),
            name: String::new(),
            extra_dhcp_opts: vec![],
        };
        let mut cfg = BridgeDhcp { subnets: vec![subnet], ..Default::default() };
        cfg.hosts.insert(mac, (0, host));
        let frame = |p: &[u8]| {
            udp_frame(mac, MacAddr([0xff; 6]), Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, p)
                .map(|mut f| {
                    f[34..38].copy_from_slice(&[0, 68, 0, 67]);
                    f
                })
                .expect("frame")
        };
        assert!(answer(&cfg, &frame(&payload)).is_some(), "hlen 6 is answered");
        payload[2] = 22;
        assert!(answer(&cfg, &frame(&payload)).is_none());
    }

    #[test]
    fn options_whose_rfc_fixes_the_length_must_have_it() {
        // Found by the `dhcp` fuzz target: option 94 with 10 bytes hit a
        // debug_assert in dhcproto and panicked a debug build.
        assert!(!options_well_formed(&[53, 1, 1, 94, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]));
        assert!(options_well_formed(&[53, 1, 1, 94, 3, 1, 2, 3, 255]));
        assert!(!options_well_formed(&[80, 1, 0]), "rapid commit has no data");
        assert!(options_well_formed(&[80, 0, 0, 81, 3, 0, 0, 0]));
        assert!(!options_well_formed(&[151, 0]), "status code needs its code byte");
        // RFC 3396: two 94s of 2 and 1 bytes are one 3-byte option.
        assert!(options_well_formed(&[94, 2, 1, 2, 94, 1, 3, 255]));
        assert!(!options_well_formed(&[94, 2, 1, 2, 0, 94, 1, 3]), "a pad ends the run");
        assert!(options_well_formed(&[53, 1, 1, 94, 9]), "cut short: not decoded at all");
        assert_eq!(extra_option(&opt("94", "ab")), None, "a bad extra option is left out");
        assert_eq!(
            extra_option(&opt("94", "abc")).map(|o| u8::from(OptionCode::from(&o))),
            Some(94)
        );
    }

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_mask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(prefix_mask(32), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn udp_frame_checksums_verify() {
        let f = udp_frame(
            SERVER_MAC,
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::BROADCAST,
            b"hello",
        )
        .expect("frame");
        assert_eq!(checksum(&f[14..34]), 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 17, 0, 13]);
        pseudo.extend_from_slice(&f[34..]);
        assert_eq!(checksum(&pseudo), 0);
        assert_eq!(
            udp_payload(&{
                // Reflect into a request to port 67 to exercise the parser.
                let mut g = f.clone();
                g[36..38].copy_from_slice(&67u16.to_be_bytes());
                g
            }),
            Some(&b"hello"[..])
        );
    }
}
