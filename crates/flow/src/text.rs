//! Text forms of keys, masks and actions: what `midonet trace` prints and the
//! packet-description syntax it takes.
//!
//! One syntax both ways: comma-separated `field=value` pairs,
//!
//! ```text
//!   in_port=3,eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,eth.type=0x0800,
//!   ip4.src=10.0.0.2,ip4.dst=10.0.1.5,ip.proto=6,ip.tos=0,ip.ttl=64,ip.frag=no,
//!   tcp.src=34567,tcp.dst=80,tcp.flags=syn
//! ```
//!
//! Field names: `in_port`, `tun_key`, `eth.src|dst|type`, `vlan.vid|pcp`,
//! `arp.op|sha|spa|tha|tpa`, `ip4.src|dst`, `ip6.src|dst`,
//! `ip.proto|tos|ttl|frag`, `tcp.src|dst|flags`, `udp.src|dst`,
//! `sctp.src|dst`, `icmp4.type|code|id`, `icmp6.type|code|id`.
//! A masked key prints only masked fields, IP addresses as `addr/len`.
//!
//! Parsing a description fills in what the fields imply: `tcp.*` sets
//! `ip.proto=6`, `ip4.*`/`icmp4.*` set `eth.type=0x0800`, `arp.*` sets
//! `eth.type=0x0806`, an IP packet without `ip.ttl` gets TTL 64, an
//! `icmp4.id` without a type is an echo request. The result is
//! [`FlowKey::canonical`], so `desc.parse::<FlowKey>()?.to_string()` parses
//! back to the same key.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::action::{Action, Actions};
use crate::key::*;
use crate::mask::{FieldId, FlowMask};

/// Name of `field` in the text syntax. With a key, L4 and ICMP fields get
/// their protocol's prefix (`tcp.dst`, `icmp6.type`); without one, the
/// generic `l4.dst` / `icmp.type`.
pub(crate) fn field_name(field: FieldId, key: Option<&FlowKey>) -> &'static str {
    let l4 = key.map(|k| (k.ip_proto, k.is_ipv6()));
    match field {
        FieldId::InPort => "in_port",
        FieldId::EthSrc => "eth.src",
        FieldId::EthDst => "eth.dst",
        FieldId::EthType => "eth.type",
        FieldId::VlanVid => "vlan.vid",
        FieldId::VlanPcp => "vlan.pcp",
        FieldId::ArpOp => "arp.op",
        FieldId::ArpSha => "arp.sha",
        FieldId::ArpSpa => "arp.spa",
        FieldId::ArpTha => "arp.tha",
        FieldId::ArpTpa => "arp.tpa",
        FieldId::Ipv4Src => "ip4.src",
        FieldId::Ipv4Dst => "ip4.dst",
        FieldId::Ipv6Src => "ip6.src",
        FieldId::Ipv6Dst => "ip6.dst",
        FieldId::IpProto => "ip.proto",
        FieldId::IpTos => "ip.tos",
        FieldId::IpTtl => "ip.ttl",
        FieldId::IpFrag => "ip.frag",
        FieldId::L4Src => match l4 {
            Some((IP_PROTO_TCP, _)) => "tcp.src",
            Some((IP_PROTO_UDP, _)) => "udp.src",
            Some((IP_PROTO_SCTP, _)) => "sctp.src",
            _ => "l4.src",
        },
        FieldId::L4Dst => match l4 {
            Some((IP_PROTO_TCP, _)) => "tcp.dst",
            Some((IP_PROTO_UDP, _)) => "udp.dst",
            Some((IP_PROTO_SCTP, _)) => "sctp.dst",
            _ => "l4.dst",
        },
        FieldId::TcpFlags => "tcp.flags",
        FieldId::IcmpType => match l4 {
            Some((_, true)) => "icmp6.type",
            Some((_, false)) => "icmp4.type",
            None => "icmp.type",
        },
        FieldId::IcmpCode => match l4 {
            Some((_, true)) => "icmp6.code",
            Some((_, false)) => "icmp4.code",
            None => "icmp.code",
        },
        FieldId::IcmpId => match l4 {
            Some((_, true)) => "icmp6.id",
            Some((_, false)) => "icmp4.id",
            None => "icmp.id",
        },
    }
}

/// The fields meaningful for `key` (the ones [`FlowKey::canonical`] keeps).
fn present_fields(key: &FlowKey) -> impl Iterator<Item = FieldId> + '_ {
    FieldId::ALL.into_iter().filter(move |f| match f {
        FieldId::InPort | FieldId::EthSrc | FieldId::EthDst | FieldId::EthType => true,
        FieldId::VlanVid | FieldId::VlanPcp => key.vlan_vid.is_some(),
        FieldId::ArpOp | FieldId::ArpSha | FieldId::ArpSpa | FieldId::ArpTha | FieldId::ArpTpa => {
            key.is_arp()
        }
        FieldId::Ipv4Src | FieldId::Ipv4Dst => key.is_ipv4(),
        FieldId::Ipv6Src | FieldId::Ipv6Dst => key.is_ipv6(),
        FieldId::IpProto | FieldId::IpTos | FieldId::IpTtl | FieldId::IpFrag => {
            key.is_ipv4() || key.is_ipv6()
        }
        FieldId::L4Src | FieldId::L4Dst => key.has_ports(),
        FieldId::TcpFlags => key.has_ports() && key.ip_proto == IP_PROTO_TCP,
        FieldId::IcmpType | FieldId::IcmpCode => key.is_icmp(),
        FieldId::IcmpId => key.is_icmp_echo(),
    })
}

fn tcp_flags_str(flags: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if flags == 0 {
        return f.write_str("0");
    }
    let mut first = true;
    for (bit, name) in TCP_FLAG_NAMES {
        if flags & bit != 0 {
            if !first {
                f.write_char('|')?;
            }
            f.write_str(name)?;
            first = false;
        }
    }
    Ok(())
}

const TCP_FLAG_NAMES: [(u16, &str); 9] = [
    (tcp_flags::FIN, "fin"),
    (tcp_flags::SYN, "syn"),
    (tcp_flags::RST, "rst"),
    (tcp_flags::PSH, "psh"),
    (tcp_flags::ACK, "ack"),
    (tcp_flags::URG, "urg"),
    (tcp_flags::ECE, "ece"),
    (tcp_flags::CWR, "cwr"),
    (tcp_flags::NS, "ns"),
];

/// Write `field=value` for one field of `key`; `prefix` is the IP prefix
/// length to show (`None`: print the address bare).
fn write_field(
    f: &mut fmt::Formatter<'_>,
    key: &FlowKey,
    field: FieldId,
    prefix: Option<u8>,
) -> fmt::Result {
    if field == FieldId::InPort {
        return write!(f, "{}", key.in_port);
    }
    write!(f, "{}=", field_name(field, Some(key)))?;
    match field {
        FieldId::InPort => Ok(()),
        FieldId::EthSrc => write!(f, "{}", key.eth_src),
        FieldId::EthDst => write!(f, "{}", key.eth_dst),
        FieldId::EthType => write!(f, "{:#06x}", key.ethertype),
        FieldId::VlanVid => match key.vlan_vid {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        },
        FieldId::VlanPcp => write!(f, "{}", key.vlan_pcp),
        FieldId::ArpOp => write!(f, "{}", key.arp_op),
        FieldId::ArpSha => write!(f, "{}", key.arp_sha),
        FieldId::ArpSpa => write!(f, "{}", key.arp_spa),
        FieldId::ArpTha => write!(f, "{}", key.arp_tha),
        FieldId::ArpTpa => write!(f, "{}", key.arp_tpa),
        FieldId::Ipv4Src => write!(f, "{}", key.ipv4_src),
        FieldId::Ipv4Dst => write!(f, "{}", key.ipv4_dst),
        FieldId::Ipv6Src => write!(f, "{}", key.ipv6_src),
        FieldId::Ipv6Dst => write!(f, "{}", key.ipv6_dst),
        FieldId::IpProto => write!(f, "{}", key.ip_proto),
        FieldId::IpTos => write!(f, "{}", key.ip_tos),
        FieldId::IpTtl => write!(f, "{}", key.ip_ttl),
        FieldId::IpFrag => write!(f, "{}", key.ip_frag),
        FieldId::L4Src => write!(f, "{}", key.l4_src),
        FieldId::L4Dst => write!(f, "{}", key.l4_dst),
        FieldId::TcpFlags => tcp_flags_str(key.tcp_flags, f),
        FieldId::IcmpType => write!(f, "{}", key.icmp_type),
        FieldId::IcmpCode => write!(f, "{}", key.icmp_code),
        FieldId::IcmpId => write!(f, "{}", key.icmp_id),
    }?;
    match prefix {
        Some(p) => write!(f, "/{p}"),
        None => Ok(()),
    }
}

impl fmt::Display for FlowKey {
    /// Every field the key's protocols carry, in the parseable syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in present_fields(self).enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write_field(f, self, field, None)?;
        }
        Ok(())
    }
}

/// Display of a key restricted to a mask; see [`FlowKey::display_masked`].
pub struct MaskedDisplay<'a> {
    key: &'a FlowKey,
    mask: &'a FlowMask,
}

impl FlowKey {
    /// Display only the fields `mask` matches, IP addresses as `addr/len`
    /// with the unmatched bits zero: the megaflow as `midonet trace` shows it.
    pub fn display_masked<'a>(&'a self, mask: &'a FlowMask) -> MaskedDisplay<'a> {
        MaskedDisplay { key: self, mask }
    }
}

impl fmt::Display for MaskedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = self.mask.apply(self.key);
        let k = masked.key();
        // Name L4 fields after the packet's real protocol even if ip.proto is
        // itself wildcarded (it never is, given the prerequisites).
        let mut named = *k;
        named.ip_proto = self.key.ip_proto;
        named.ethertype = self.key.ethertype;
        named.in_port = k.in_port;
        let mut first = true;
        for field in self.mask.fields() {
            if !first {
                f.write_char(',')?;
            }
            first = false;
            let prefix = match field {
                FieldId::Ipv4Src | FieldId::Ipv4Dst | FieldId::Ipv6Src | FieldId::Ipv6Dst => {
                    Some(self.mask.prefix_len(field))
                }
                _ => None,
            };
            write_field(f, &named, field, prefix)?;
        }
        if first {
            f.write_str("*")?;
        }
        Ok(())
    }
}

impl fmt::Display for FlowMask {
    /// The matched field names (`ip4.dst/24` for a partial prefix), or `*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for field in self.fields() {
            if !first {
                f.write_char(',')?;
            }
            first = false;
            f.write_str(field_name(field, None))?;
            if let FieldId::Ipv4Src | FieldId::Ipv4Dst | FieldId::Ipv6Src | FieldId::Ipv6Dst = field
            {
                write!(f, "/{}", self.prefix_len(field))?;
            }
        }
        if first {
            f.write_str("*")?;
        }
        Ok(())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::SetEthSrc(m) => write!(f, "set(eth.src={m})"),
            Action::SetEthDst(m) => write!(f, "set(eth.dst={m})"),
            Action::SetIpv4Src(a) => write!(f, "set(ip4.src={a})"),
            Action::SetIpv4Dst(a) => write!(f, "set(ip4.dst={a})"),
            Action::SetTtl(t) => write!(f, "set(ip.ttl={t})"),
            Action::SetTos(t) => write!(f, "set(ip.tos={t})"),
            Action::SetL4Src(p) => write!(f, "set(l4.src={p})"),
            Action::SetL4Dst(p) => write!(f, "set(l4.dst={p})"),
            Action::SetIcmpId(i) => write!(f, "set(icmp.id={i})"),
            Action::PushVlan { vid, pcp } => write!(f, "push_vlan(vid={vid},pcp={pcp})"),
            Action::PopVlan => f.write_str("pop_vlan"),
            Action::Output(p) => write!(f, "output({p})"),
            Action::Tunnel { dst, key } => write!(f, "tunnel(dst={dst},key={key:#x})"),
            Action::Userspace(r) => write!(f, "userspace({r})"),
            Action::RevNatRecirc(id) => write!(f, "rev_nat,recirc({id})"),
        }
    }
}

impl fmt::Display for Actions {
    /// Comma-separated actions, or `drop` for an empty list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("drop");
        }
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Error in a packet description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescParseError {
    /// A `field=value` pair without `=`.
    #[error("expected field=value, got {0:?}")]
    MissingValue(String),
    /// A field name the syntax does not know.
    #[error("unknown field {0:?}")]
    UnknownField(String),
    /// A value that does not parse for its field.
    #[error("invalid value {value:?} for {field}: expected {expected}")]
    BadValue {
        /// The field name.
        field: String,
        /// The value given.
        value: String,
        /// What the field takes.
        expected: &'static str,
    },
    /// Two fields imply different protocols (e.g. `tcp.dst` with `ip.proto=17`).
    #[error("{field} conflicts with an earlier field ({what})")]
    Conflict {
        /// The field that conflicted.
        field: String,
        /// Which implied value differs.
        what: &'static str,
    },
}

fn bad(field: &str, value: &str, expected: &'static str) -> DescParseError {
    DescParseError::BadValue { field: field.to_string(), value: value.to_string(), expected }
}

fn num<T: TryFrom<u64>>(field: &str, v: &str, expected: &'static str) -> Result<T, DescParseError> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        v.parse::<u64>()
    };
    n.ok().and_then(|n| T::try_from(n).ok()).ok_or_else(|| bad(field, v, expected))
}

/// Set an implied value, failing if an earlier field implied a different one.
fn imply<T: PartialEq + Copy>(
    slot: &mut Option<T>,
    v: T,
    field: &str,
    what: &'static str,
) -> Result<(), DescParseError> {
    match slot {
        Some(old) if *old != v => Err(DescParseError::Conflict { field: field.to_string(), what }),
        _ => {
            *slot = Some(v);
            Ok(())
        }
    }
}

impl FromStr for FlowKey {
    type Err = DescParseError;

    /// Parse a packet description (module docs); the result is canonical.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut k = FlowKey::default();
        let mut ethertype: Option<u16> = None;
        let mut proto: Option<u8> = None;
        let mut ttl_given = false;
        let mut icmp_type_given = false;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, v) = part
                .split_once('=')
                .map(|(a, b)| (a.trim(), b.trim()))
                .ok_or_else(|| DescParseError::MissingValue(part.to_string()))?;
            let mac = |v: &str| v.parse::<MacAddr>().map_err(|_| bad(name, v, "a MAC address"));
            let v4 = |v: &str| v.parse::<Ipv4Addr>().map_err(|_| bad(name, v, "an IPv4 address"));
            let v6 = |v: &str| v.parse::<Ipv6Addr>().map_err(|_| bad(name, v, "an IPv6 address"));
            // Addresses may carry a trailing "/len" (as displayed for masked keys).
            let addr = v.split_once('/').map_or(v, |(a, _)| a);
            let et = "ethertype";
            let pr = "ip.proto";
            match name {
                "in_port" => k.in_port = InPort::Port(num(name, v, "a port number")?),
                "tun_key" => k.in_port = InPort::Tunnel(num(name, v, "a 24-bit tunnel key")?),
                "eth.src" => k.eth_src = mac(v)?,
                "eth.dst" => k.eth_dst = mac(v)?,
                "eth.type" => imply(&mut ethertype, num(name, v, "a 16-bit ethertype")?, name, et)?,
                "vlan.vid" => {
                    let vid: u16 = num(name, v, "a VLAN id 0..4095")?;
                    if vid > 0x0fff {
                        return Err(bad(name, v, "a VLAN id 0..4095"));
                    }
                    k.vlan_vid = Some(vid);
                }
                "vlan.pcp" => {
                    let pcp: u8 = num(name, v, "a priority 0..7")?;
                    if pcp > 7 {
                        return Err(bad(name, v, "a priority 0..7"));
                    }
                    k.vlan_pcp = pcp;
                }
                "arp.op" => {
                    imply(&mut ethertype, ETH_TYPE_ARP, name, et)?;
                    k.arp_op = match v {
                        "request" => 1,
                        "reply" => 2,
                        _ => num(name, v, "request, reply or a number")?,
                    };
                }
                "arp.sha" | "arp.tha" | "arp.spa" | "arp.tpa" => {
                    imply(&mut ethertype, ETH_TYPE_ARP, name, et)?;
                    match name {
                        "arp.sha" => k.arp_sha = mac(v)?,
                        "arp.tha" => k.arp_tha = mac(v)?,
                        "arp.spa" => k.arp_spa = v4(addr)?,
                        _ => k.arp_tpa = v4(addr)?,
                    }
                }
                "ip4.src" | "ip4.dst" => {
                    imply(&mut ethertype, ETH_TYPE_IPV4, name, et)?;
                    if name == "ip4.src" {
                        k.ipv4_src = v4(addr)?;
                    } else {
                        k.ipv4_dst = v4(addr)?;
                    }
                }
                "ip6.src" | "ip6.dst" => {
                    imply(&mut ethertype, ETH_TYPE_IPV6, name, et)?;
                    if name == "ip6.src" {
                        k.ipv6_src = v6(addr)?;
                    } else {
                        k.ipv6_dst = v6(addr)?;
                    }
                }
                "ip.proto" => {
                    let p = match v {
                        "icmp" | "icmp4" => IP_PROTO_ICMP,
                        "tcp" => IP_PROTO_TCP,
                        "udp" => IP_PROTO_UDP,
                        "icmp6" => IP_PROTO_ICMPV6,
                        "sctp" => IP_PROTO_SCTP,
                        _ => num(name, v, "a protocol number or tcp/udp/icmp/icmp6/sctp")?,
                    };
                    imply(&mut proto, p, name, pr)?;
                }
                "ip.tos" => k.ip_tos = num(name, v, "a TOS byte 0..255")?,
                "ip.ttl" => {
                    k.ip_ttl = num(name, v, "a TTL 0..255")?;
                    ttl_given = true;
                }
                "ip.frag" => {
                    k.ip_frag = match v {
                        "no" => FragType::No,
                        "first" => FragType::First,
                        "later" => FragType::Later,
                        _ => return Err(bad(name, v, "no, first or later")),
                    }
                }
                "tcp.src" | "tcp.dst" | "udp.src" | "udp.dst" | "sctp.src" | "sctp.dst"
                | "l4.src" | "l4.dst" => {
                    let p = match &name[..name.len() - 4] {
                        "tcp" => Some(IP_PROTO_TCP),
                        "udp" => Some(IP_PROTO_UDP),
                        "sctp" => Some(IP_PROTO_SCTP),
                        _ => None,
                    };
                    if let Some(p) = p {
                        imply(&mut proto, p, name, pr)?;
                    }
                    let port = num(name, v, "a port 0..65535")?;
                    if name.ends_with(".src") {
                        k.l4_src = port;
                    } else {
                        k.l4_dst = port;
                    }
                }
                "tcp.flags" => {
                    imply(&mut proto, IP_PROTO_TCP, name, pr)?;
                    k.tcp_flags = parse_tcp_flags(name, v)?;
                }
                "icmp4.type" | "icmp4.code" | "icmp4.id" | "icmp6.type" | "icmp6.code"
                | "icmp6.id" => {
                    let (e, p) = if name.starts_with("icmp4") {
                        (ETH_TYPE_IPV4, IP_PROTO_ICMP)
                    } else {
                        (ETH_TYPE_IPV6, IP_PROTO_ICMPV6)
                    };
                    imply(&mut ethertype, e, name, et)?;
                    imply(&mut proto, p, name, pr)?;
                    match &name[6..] {
                        "type" => {
                            k.icmp_type = num(name, v, "an ICMP type 0..255")?;
                            icmp_type_given = true;
                        }
                        "code" => k.icmp_code = num(name, v, "an ICMP code 0..255")?,
                        _ => k.icmp_id = num(name, v, "an ICMP id 0..65535")?,
                    }
                }
                _ => return Err(DescParseError::UnknownField(name.to_string())),
            }
        }
        if proto.is_some() && ethertype.is_none() {
            ethertype = Some(ETH_TYPE_IPV4);
        }
        k.ethertype = ethertype.unwrap_or(0);
        k.ip_proto = proto.unwrap_or(0);
        if (k.is_ipv4() || k.is_ipv6()) && !ttl_given {
            k.ip_ttl = 64;
        }
        if k.is_icmp() && !icmp_type_given && k.icmp_id != 0 {
            k.icmp_type = if k.is_ipv4() { 8 } else { 128 };
        }
        Ok(k.canonical())
    }
}

fn parse_tcp_flags(name: &str, v: &str) -> Result<u16, DescParseError> {
    let expected = "a number or flag names joined by | (syn|ack)";
    if v.starts_with(|c: char| c.is_ascii_digit()) {
        let n: u16 = num(name, v, expected)?;
        return Ok(n & 0x01ff);
    }
    let mut flags = 0;
    for part in v.split('|') {
        let bit = TCP_FLAG_NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(part.trim()))
            .map(|(b, _)| *b)
            .ok_or_else(|| bad(name, v, expected))?;
        flags |= bit;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::UserspaceReason;

    #[test]
    fn parse_trace_description() {
        let k: FlowKey = "eth.src=02:00:00:00:00:01, eth.dst=02:00:00:00:00:02, ip4.src=10.0.0.2, ip4.dst=10.0.1.5, ip.ttl=64, tcp.dst=80"
            .parse()
            .expect("parse");
        assert_eq!(
            k,
            FlowKey {
                eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
                eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
                ethertype: ETH_TYPE_IPV4,
                ipv4_src: Ipv4Addr::new(10, 0, 0, 2),
                ipv4_dst: Ipv4Addr::new(10, 0, 1, 5),
                ip_proto: IP_PROTO_TCP,
                ip_ttl: 64,
                l4_dst: 80,
                ..FlowKey::default()
            }
        );
    }

    #[test]
    fn implied_defaults() {
        let k: FlowKey = "icmp4.id=5".parse().expect("parse");
        assert_eq!(
            (k.ethertype, k.ip_proto, k.icmp_type, k.icmp_id, k.ip_ttl),
            (ETH_TYPE_IPV4, 1, 8, 5, 64)
        );
        let k: FlowKey = "arp.tpa=10.0.0.1".parse().expect("parse");
        assert!(k.is_arp());
        assert_eq!(k.ip_ttl, 0, "ARP has no TTL");
        let k: FlowKey = "udp.dst=53".parse().expect("parse");
        assert!(k.is_ipv4());
        let k: FlowKey = "ip.frag=later,tcp.dst=80".parse().expect("parse");
        assert_eq!((k.ip_frag, k.l4_dst), (FragType::Later, 0), "later fragments carry no ports");
        let k: FlowKey = "tcp.flags=syn|ACK".parse().expect("parse");
        assert_eq!(k.tcp_flags, tcp_flags::SYN | tcp_flags::ACK);
        let k: FlowKey = "tcp.flags=0x12".parse().expect("parse");
        assert_eq!(k.tcp_flags, 0x12);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let cases = [
            ("tcp.dst", DescParseError::MissingValue("tcp.dst".into())),
            ("foo=1", DescParseError::UnknownField("foo".into())),
            (
                "tcp.dst=80,udp.src=1",
                DescParseError::Conflict { field: "udp.src".into(), what: "ip.proto" },
            ),
            (
                "arp.op=1,ip4.src=1.1.1.1",
                DescParseError::Conflict { field: "ip4.src".into(), what: "ethertype" },
            ),
        ];
        for (d, e) in cases {
            assert_eq!(d.parse::<FlowKey>(), Err(e), "{d}");
        }
        for d in [
            "tcp.dst=65536",
            "ip4.src=10.0.0",
            "eth.src=02:00",
            "vlan.vid=4096",
            "vlan.pcp=8",
            "ip.frag=maybe",
            "tcp.flags=syn|bogus",
        ] {
            match d.parse::<FlowKey>() {
                Err(DescParseError::BadValue { field, .. }) => {
                    assert_eq!(Some(field.as_str()), d.split('=').next())
                }
                other => panic!("{d}: {other:?}"),
            }
        }
        let msg = "ip.ttl=300".parse::<FlowKey>().expect_err("bad ttl").to_string();
        assert!(msg.contains("ip.ttl") && msg.contains("300"), "{msg}");
    }

    #[test]
    fn display_key() {
        let k: FlowKey = "in_port=3,eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,tcp.dst=80,tcp.flags=syn|ack".parse().expect("parse");
        assert_eq!(
            k.to_string(),
            "in_port=3,eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,eth.type=0x0800,\
             ip4.src=10.0.0.2,ip4.dst=10.0.1.5,ip.proto=6,ip.tos=0,ip.ttl=64,ip.frag=no,\
             tcp.src=0,tcp.dst=80,tcp.flags=syn|ack"
        );
        assert_eq!(k.to_string().parse::<FlowKey>().expect("reparse"), k);
    }

    #[test]
    fn display_masked_shows_only_masked() {
        let k: FlowKey =
            "in_port=3,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,tcp.dst=80"
                .parse()
                .expect("parse");
        let mut m = crate::FlowMatch::new(k);
        let _ = m.eth_dst();
        let _ = m.ipv4_dst_prefix(24);
        let _ = m.l4_dst();
        assert_eq!(
            k.display_masked(m.mask()).to_string(),
            "in_port=3,eth.dst=02:00:00:00:00:02,eth.type=0x0800,ip4.dst=10.0.1.0/24,ip.proto=6,ip.frag=no,tcp.dst=80"
        );
        assert_eq!(
            m.mask().to_string(),
            "in_port,eth.dst,eth.type,ip4.dst/24,ip.proto,ip.frag,l4.dst"
        );
        assert_eq!(FlowMask::empty().to_string(), "*");
        assert_eq!(k.display_masked(&FlowMask::empty()).to_string(), "*");
    }

    #[test]
    fn display_actions() {
        let a: Actions = [
            Action::SetEthDst(MacAddr([2, 0, 0, 0, 0, 9])),
            Action::SetTtl(63),
            Action::PushVlan { vid: 5, pcp: 0 },
            Action::Output(4),
            Action::Tunnel { dst: Ipv4Addr::new(192, 0, 2, 7), key: 0x123 },
            Action::Userspace(UserspaceReason::Other(7)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            a.to_string(),
            "set(eth.dst=02:00:00:00:00:09),set(ip.ttl=63),push_vlan(vid=5,pcp=0),output(4),tunnel(dst=192.0.2.7,key=0x123),userspace(7)"
        );
        assert_eq!(Actions::new().to_string(), "drop");
    }

    #[test]
    fn tunnel_in_port_round_trips() {
        let k: FlowKey = "tun_key=0x1234,eth.type=0x0806".parse().expect("parse");
        assert_eq!(k.in_port, InPort::Tunnel(0x1234));
        assert!(k.to_string().starts_with("tun_key=0x1234,"));
        assert_eq!(k.to_string().parse::<FlowKey>().expect("reparse"), k);
    }
}
