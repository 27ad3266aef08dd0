//! The few rtnetlink requests the `ebpf` provider makes in its namespace:
//! create the `vxlan` device in external (collect_md) mode and the inject
//! veth pair, bring links up, ask what a link is (a veth whose peer is
//! in another namespace can be delivered to with `bpf_redirect_peer`) and
//! how a tunnel peer is reached (`ip route get`, for the programs' own
//! encapsulation). Hand-built messages over a socket2 netlink socket: the
//! workspace's `rtnetlink` crate is async and far larger than these few
//! requests.

use std::io::{self, Read};
use std::net::Ipv4Addr;

use socket2::{Domain, Protocol, Socket, Type};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTN_UNICAST: u8 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_VXLAN_COLLECT_METADATA: u16 = 25;
const VETH_INFO_PEER: u16 = 1;
const IFF_UP: u32 = 1;

/// A message under construction: header, ifinfomsg, attributes.
struct Msg {
    b: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    /// A link request: the header, then struct ifinfomsg.
    fn new(ty: u16, flags: u16, ifindex: i32, if_flags: u32, change: u32) -> Msg {
        let mut m = Msg::bare(ty, flags);
        m.ifinfo(ifindex, if_flags, change);
        m
    }

    /// The netlink header alone; the family header is the caller's.
    fn bare(ty: u16, flags: u16) -> Msg {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        Msg { b, nests: Vec::new() }
    }

    /// struct ifinfomsg (family, pad, type, index, flags, change).
    fn ifinfo(&mut self, ifindex: i32, flags: u32, change: u32) {
        self.b.extend_from_slice(&[0u8; 4]);
        self.b.extend_from_slice(&ifindex.to_ne_bytes());
        self.b.extend_from_slice(&flags.to_ne_bytes());
        self.b.extend_from_slice(&change.to_ne_bytes());
    }

    fn pad(&mut self) {
        while self.b.len() & 3 != 0 {
            self.b.push(0);
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        self.b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(data);
        self.pad();
        self
    }

    fn str_attr(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }

    fn begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.b.len());
        self.b.extend_from_slice(&[0, 0]);
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            let len = (self.b.len() - at) as u16;
            self.b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.b.len() as u32;
        self.b[0..4].copy_from_slice(&len.to_ne_bytes());
        self.b
    }
}

fn socket() -> io::Result<Socket> {
    Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )
}

/// Send a get request and return the payload of its `answer` message;
/// `None` when the kernel says `absent` (the errno for "no such thing") or
/// sends no such message.
fn request_one(msg: Vec<u8>, answer: u16, absent: i32) -> io::Result<Option<Vec<u8>>> {
    match request(msg) {
        Ok(r) => Ok(r.into_iter().find(|(t, _)| *t == answer).map(|(_, p)| p)),
        Err(e) if e.raw_os_error() == Some(absent) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Send a request and collect the reply messages (type, payload) until the
/// ack, an error, or the end of a dump.
fn request(msg: Vec<u8>) -> io::Result<Vec<(u16, Vec<u8>)>> {
    let s = socket()?;
    s.send(&msg)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = (&s).read(&mut buf)?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < 16 || at + len > n {
                return Err(io::Error::other("truncated netlink reply"));
            }
            let payload = &buf[at + 16..at + len];
            match ty {
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    return Ok(out);
                }
                NLMSG_DONE => return Ok(out),
                _ => out.push((ty, payload.to_vec())),
            }
            at += (len + 3) & !3;
        }
        if out.iter().any(|(t, _)| *t == RTM_NEWLINK || *t == RTM_NEWROUTE) {
            // A single GETLINK or GETROUTE answer comes without an ack.
            return Ok(out);
        }
    }
}

/// What [`link`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub kind: Option<String>,
    /// The link's peer (veth) lives in another network namespace.
    pub peer_elsewhere: bool,
    pub up: bool,
    pub mtu: u32,
}

fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & !NLA_F_NESTED;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        let step = (len + 3) & !3;
        b = &b[step.min(b.len())..];
    }
    out
}

/// Ask what link `name` is; `None` when there is no such link.
pub fn link(name: &str) -> io::Result<Option<LinkInfo>> {
    let mut m = Msg::new(RTM_GETLINK, 0, 0, 0, 0);
    m.str_attr(IFLA_IFNAME, name);
    get_link(m)
}

/// Ask what link `ifindex` is; `None` when there is no such link.
pub fn link_by_index(ifindex: u32) -> io::Result<Option<LinkInfo>> {
    get_link(Msg::new(RTM_GETLINK, 0, ifindex as i32, 0, 0))
}

fn get_link(m: Msg) -> io::Result<Option<LinkInfo>> {
    let Some(p) = request_one(m.finish(), RTM_NEWLINK, libc::ENODEV)? else {
        return Ok(None);
    };
    if p.len() < 16 {
        return Err(io::Error::other("short ifinfomsg"));
    }
    let ifindex = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    let mut info =
        LinkInfo { ifindex, kind: None, peer_elsewhere: false, up: flags & IFF_UP != 0, mtu: 0 };
    for (ty, data) in attrs(&p[16..]) {
        match ty {
            IFLA_LINK_NETNSID => info.peer_elsewhere = true,
            IFLA_MTU if data.len() == 4 => {
                info.mtu = u32::from_ne_bytes([data[0], data[1], data[2], data[3]])
            }
            IFLA_LINKINFO => {
                for (t, d) in attrs(data) {
                    if t == IFLA_INFO_KIND {
                        let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
                        info.kind = Some(String::from_utf8_lossy(&d[..end]).into_owned());
                    }
                }
            }
            IFLA_LINK => {}
            _ => {}
        }
    }
    Ok(Some(info))
}

/// The route to `dst` (`ip route get`): the output interface and the
/// gateway, if any. `None` when the answer is not a plain unicast route
/// (local, unreachable, blackhole...).
pub fn route_to(dst: Ipv4Addr) -> io::Result<Option<(u32, Option<Ipv4Addr>)>> {
    let mut m = Msg::bare(RTM_GETROUTE, 0);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags.
    m.b.extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    m.attr(RTA_DST, &dst.octets());
    let Some(p) = request_one(m.finish(), RTM_NEWROUTE, libc::ENETUNREACH)? else {
        return Ok(None);
    };
    if p.len() < 12 || p[7] != RTN_UNICAST {
        return Ok(None);
    }
    let (mut oif, mut gw) = (None, None);
    for (ty, d) in attrs(&p[12..]) {
        match (ty, d.len()) {
            (RTA_OIF, 4) => oif = Some(u32::from_ne_bytes([d[0], d[1], d[2], d[3]])),
            (RTA_GATEWAY, 4) => gw = Some(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
            _ => {}
        }
    }
    Ok(oif.map(|o| (o, gw)))
}

/// Bring link `ifindex` up.
pub fn set_up(ifindex: u32) -> io::Result<()> {
    let m = Msg::new(RTM_NEWLINK, NLM_F_ACK, ifindex as i32, IFF_UP, IFF_UP);
    request(m.finish()).map(drop)
}

/// Create `name` as a vxlan device in external mode on UDP `port`, up.
pub fn create_vxlan(name: &str, port: u16, mtu: Option<u32>) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 0, 0, 0);
    m.str_attr(IFLA_IFNAME, name);
    if let Some(mtu) = mtu {
        m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    }
    m.begin(IFLA_LINKINFO).str_attr(IFLA_INFO_KIND, "vxlan").begin(IFLA_INFO_DATA);
    m.attr(IFLA_VXLAN_COLLECT_METADATA, &[1]);
    m.attr(IFLA_VXLAN_LEARNING, &[0]);
    m.attr(IFLA_VXLAN_PORT, &port.to_be_bytes());
    m.end().end();
    request(m.finish()).map(drop)
}

/// Create the veth pair `a`/`b` with MTU `mtu`.
pub fn create_veth(a: &str, b: &str, mtu: u32) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 0, 0, 0);
    m.str_attr(IFLA_IFNAME, a);
    m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    m.begin(IFLA_LINKINFO).str_attr(IFLA_INFO_KIND, "veth").begin(IFLA_INFO_DATA);
    m.begin(VETH_INFO_PEER);
    m.ifinfo(0, 0, 0);
    m.str_attr(IFLA_IFNAME, b);
    m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    m.end().end().end();
    request(m.finish()).map(drop)
}

/// Delete link `name` (nothing if it does not exist).
pub fn delete(name: &str) -> io::Result<()> {
    const RTM_DELLINK: u16 = 17;
    let mut m = Msg::new(RTM_DELLINK, NLM_F_ACK, 0, 0, 0);
    m.str_attr(IFLA_IFNAME, name);
    match request(m.finish()) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        r => r.map(drop),
    }
}

/// No IPv6 on a link of ours (router solicitations and MLD would be the
/// only traffic the host stack puts on it).
pub fn disable_ipv6(name: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
}

/// The interface holding the IPv4 address `ip`, if one does.
pub fn ifname_with(ip: Ipv4Addr) -> io::Result<Option<String>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(addrs
        .into_iter()
        .find(|a| a.address.as_ref().and_then(|s| s.as_sockaddr_in()).is_some_and(|s| s.ip() == ip))
        .map(|a| a.interface_name))
}

/// The local address, kept for the tunnel key's source.
pub fn unspecified(ip: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    ip.filter(|a| !a.is_unspecified())
}
