//! Apply set-field and VLAN [`Action`]s to a frame in place.
//!
//! This is the one implementation of the actions' rewrites: the datapath
//! runs it on frames in its receive buffers ([`set_field`],
//! [`push_vlan_in_place`], [`pop_vlan_in_place`]), and [`apply_action`]
//! runs it on a `Vec` for everyone else. Headers are read and written
//! through `midonet-wire`'s typed views; checksums with its RFC 1624
//! arithmetic.
//!
//! Checksums are updated incrementally (RFC 1624): the IPv4 header checksum
//! for address/TTL/TOS changes, the TCP/UDP checksum for address changes
//! (they are in the pseudo-header, RFC 9293 §3.1, RFC 768) and port changes,
//! the ICMP checksum for echo-id changes. A UDP checksum of zero means "none"
//! (IPv4) and stays zero; an update that would produce zero writes 0xffff
//! (RFC 768). Later fragments carry no L4 header, so only the IP header
//! changes; the L4 checksum in the first fragment covers the whole datagram
//! and is updated there. A rewrite that must update an L4 header which is
//! cut short fails before writing anything.
//!
//! Frames whose L4 checksum is "partial" (offloaded, `CHECKSUM_PARTIAL` /
//! virtio `NEEDS_CSUM`: the field holds the *uncomplemented* pseudo-header
//! sum, and whoever completes it sums the segment as it then is) need
//! different updates: an address change moves that sum the other way
//! (`!update(!field)`), and a change inside the segment (ports, ICMP id)
//! needs none. The `csum_start` argument gives the frame offset where such
//! a checksum starts; `None` means every checksum is complete.
//!
//! Finding the headers: IPv4 (the packet path's case, e.g. the TTL of every
//! routed 64 KB GSO frame) is located directly, Ethernet → one optional
//! 802.1Q tag → IPv4 header, without keying the whole frame; IPv6 goes
//! through the key extractor, which walks extension headers.
//!
//! The IP header quoted inside an ICMP error is not rewritten (NAT of ICMP
//! errors needs the payload, which a megaflow cannot match: the simulation
//! handles those packets in user space, as MidoNet does).
//!
//! SCTP ports are not rewritable here: SCTP uses CRC32c over the whole
//! packet, which cannot be updated incrementally.

use std::net::Ipv4Addr;

use midonet_wire::checksum::{update16, update32};
use midonet_wire::ethernet::{self, EthernetFrame, VlanTag, ETH_HEADER_SIZE, VLAN_TAG_SIZE};
use midonet_wire::{IcmpPacket, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, WireError};

use crate::action::Action;
use crate::extract::{extract_with_layout, ParseError};
use crate::key::*;

/// Why an action could not be applied to a frame. `Copy`, for drop counters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
pub enum RewriteError {
    /// The frame did not parse.
    #[error("unparseable frame")]
    Parse(#[source] ParseError),
    /// An IPv4 set-field on a frame that is not IPv4.
    #[error("not an ipv4 frame")]
    NotIpv4,
    /// A TTL/TOS set-field on a frame that is not IP.
    #[error("not an ip frame")]
    NotIp,
    /// A port set-field on a frame without a TCP/UDP header (or SCTP).
    #[error("no tcp/udp header to rewrite")]
    NoPorts,
    /// An ICMP id set-field on a frame that is not an ICMP echo.
    #[error("not an icmp echo")]
    NotIcmpEcho,
    /// A VLAN pop on an untagged frame.
    #[error("frame has no vlan tag")]
    NotTagged,
    /// A VLAN push or pop given to [`set_field`], which keeps the frame's
    /// size: use [`push_vlan_in_place`] / [`pop_vlan_in_place`].
    #[error("vlan push/pop changes the frame size")]
    Resizes,
}

impl From<ParseError> for RewriteError {
    fn from(e: ParseError) -> Self {
        RewriteError::Parse(e)
    }
}

/// Apply one action to `frame`. Emit actions (`Output`, `Tunnel`,
/// `Userspace`) are the datapath's business and leave the frame unchanged.
pub fn apply_action(frame: &mut Vec<u8>, action: &Action) -> Result<(), RewriteError> {
    apply_action_partial(frame, action, None)
}

/// [`apply_action`] for a frame whose L4 checksum may be partial:
/// `csum_start` is the frame offset where the offloaded checksum starts (the
/// virtio header's `csum_start` when `NEEDS_CSUM` is set), `None` when every
/// checksum is complete. VLAN push/pop shift the headers: the caller moves
/// `csum_start`.
pub fn apply_action_partial(
    frame: &mut Vec<u8>,
    action: &Action,
    csum_start: Option<usize>,
) -> Result<(), RewriteError> {
    match *action {
        Action::PushVlan { .. } => {
            if frame.len() < ETH_HEADER_SIZE {
                return Err(ParseError::EthTruncated.into());
            }
            frame.splice(0..0, [0; VLAN_TAG_SIZE]);
            push_vlan_in_place(frame, action)
        }
        Action::PopVlan => {
            pop_vlan_in_place(frame)?;
            frame.drain(..VLAN_TAG_SIZE);
            Ok(())
        }
        _ => set_field(frame, action, csum_start),
    }
}

/// Apply every rewrite action of `actions` in order (emit actions are
/// skipped). On error the frame may be partly rewritten.
pub fn apply_actions_to_frame(frame: &mut Vec<u8>, actions: &[Action]) -> Result<(), RewriteError> {
    for a in actions {
        apply_action(frame, a)?;
    }
    Ok(())
}

/// `PushVlan` in place: `buf` holds 4 bytes of room followed by the frame,
/// and is the tagged frame afterwards (only the MAC addresses move).
/// Any other action is an error.
pub fn push_vlan_in_place(buf: &mut [u8], action: &Action) -> Result<(), RewriteError> {
    let Action::PushVlan { vid, pcp } = *action else { return Err(RewriteError::Resizes) };
    let tag = VlanTag { vid, pcp, dei: false };
    ethernet::vlan_push_in_place(buf, tag).map_err(|_| ParseError::EthTruncated.into())
}

/// `PopVlan` in place: afterwards the untagged frame is `frame[4..]` (only
/// the MAC addresses move). Fails, leaving the frame alone, when it is
/// untagged or the tag is cut short.
pub fn pop_vlan_in_place(frame: &mut [u8]) -> Result<(), RewriteError> {
    match ethernet::vlan_pop_in_place(frame) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(RewriteError::NotTagged),
        Err(_) if frame.len() < ETH_HEADER_SIZE => Err(RewriteError::NotTagged),
        Err(_) => Err(ParseError::VlanTruncated.into()),
    }
}

/// Apply an action that keeps the frame's size (every one but `PushVlan`
/// and `PopVlan`, which give [`RewriteError::Resizes`]) in place. Emit
/// actions leave the frame unchanged. `csum_start` as for
/// [`apply_action_partial`]. On error the frame is unchanged.
pub fn set_field(
    frame: &mut [u8],
    action: &Action,
    csum_start: Option<usize>,
) -> Result<(), RewriteError> {
    match *action {
        Action::Output(_)
        | Action::Tunnel { .. }
        | Action::Userspace(_)
        | Action::RevNatRecirc(_) => Ok(()),
        Action::SetEthDst(m) => {
            eth_view(frame)?.set_dst_addr(m.0);
            Ok(())
        }
        Action::SetEthSrc(m) => {
            eth_view(frame)?.set_src_addr(m.0);
            Ok(())
        }
        Action::PushVlan { .. } | Action::PopVlan => Err(RewriteError::Resizes),
        Action::SetIpv4Src(_)
        | Action::SetIpv4Dst(_)
        | Action::SetTtl(_)
        | Action::SetTos(_)
        | Action::SetL4Src(_)
        | Action::SetL4Dst(_)
        | Action::SetIcmpId(_) => set_ip_field(frame, action, csum_start),
    }
}

fn eth_view(frame: &mut [u8]) -> Result<EthernetFrame<&mut [u8]>, RewriteError> {
    EthernetFrame::new_checked(frame).map_err(|_| ParseError::EthTruncated.into())
}

/// Where a frame's IP and L4 headers are.
#[derive(Clone, Copy, Debug)]
struct Located {
    v6: bool,
    /// Start of the IP header.
    l3: usize,
    /// End of the IP packet (its length field; Ethernet padding excluded).
    end: usize,
    /// The upper-layer protocol.
    proto: u8,
    /// Start of the L4 header, unless this is a later fragment.
    l4: Option<usize>,
}

/// Find the IP headers; `None` for a frame that is not IP.
fn locate(frame: &[u8]) -> Result<Option<Located>, RewriteError> {
    let (ethertype, l3) = match ethernet::l3_offset(frame) {
        Ok(x) => x,
        Err(_) if frame.len() < ETH_HEADER_SIZE => return Err(ParseError::EthTruncated.into()),
        Err(_) => return Err(ParseError::VlanTruncated.into()),
    };
    match ethertype {
        ETH_TYPE_IPV4 => {
            let ip = Ipv4Packet::new_checked(&frame[l3..]).map_err(|e| match e {
                WireError::Truncated => ParseError::Ipv4Truncated,
                _ => ParseError::Ipv4Malformed,
            })?;
            let l4 = (!ip.is_later_fragment()).then_some(l3 + ip.header_len());
            let end = l3 + usize::from(ip.total_len());
            Ok(Some(Located { v6: false, l3, end, proto: ip.protocol(), l4 }))
        }
        ETH_TYPE_IPV6 => {
            let (k, lay) = extract_with_layout(frame, InPort::Port(0))?;
            Ok(Some(Located {
                v6: true,
                l3: lay.l3,
                end: lay.l3_end,
                proto: k.ip_proto,
                l4: lay.l4,
            }))
        }
        _ => Ok(None),
    }
}

/// The L4 checksum a pseudo-header change must update, checked to lie
/// inside the packet: its offset in the frame and whether zero means
/// "no checksum" (UDP over IPv4).
fn l4_checksum(frame: &[u8], at: &Located) -> Result<Option<(usize, bool)>, RewriteError> {
    let Some(l4) = at.l4 else { return Ok(None) };
    let seg = &frame[l4..at.end];
    match at.proto {
        IP_PROTO_TCP => {
            TcpPacket::new_checked(seg).map_err(|_| ParseError::TcpTruncated)?;
            Ok(Some((l4 + midonet_wire::tcp::field::CHECKSUM.start, false)))
        }
        IP_PROTO_UDP => {
            UdpPacket::new_checked(seg).map_err(|_| ParseError::UdpTruncated)?;
            Ok(Some((l4 + midonet_wire::udp::field::CHECKSUM.start, !at.v6)))
        }
        _ => Ok(None),
    }
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Update the complete L4 checksum at `at` for a field change `old` → `new`
/// (32 bits wide when `wide`), honouring UDP's "zero means none".
fn fix_l4(b: &mut [u8], at: usize, zero_is_none: bool, old: u32, new: u32, wide: bool) {
    let c = rd16(b, at);
    if zero_is_none && c == 0 {
        return;
    }
    let mut n = if wide { update32(c, old, new) } else { update16(c, old as u16, new as u16) };
    if zero_is_none && n == 0 {
        n = 0xffff;
    }
    wr16(b, at, n);
}

/// A pseudo-header field changed under a partial checksum: the field holds
/// the uncomplemented sum, so update its complement.
fn fix_partial32(b: &mut [u8], at: usize, old: u32, new: u32) {
    let c = rd16(b, at);
    wr16(b, at, !update32(!c, old, new));
}

fn set_ip_field(
    frame: &mut [u8],
    action: &Action,
    csum_start: Option<usize>,
) -> Result<(), RewriteError> {
    let Some(at) = locate(frame)? else {
        return Err(match action {
            Action::SetIpv4Src(_) | Action::SetIpv4Dst(_) => RewriteError::NotIpv4,
            Action::SetL4Src(_) | Action::SetL4Dst(_) => RewriteError::NoPorts,
            Action::SetIcmpId(_) => RewriteError::NotIcmpEcho,
            _ => RewriteError::NotIp,
        });
    };
    let partial = csum_start.is_some() && csum_start == at.l4;
    match *action {
        Action::SetIpv4Src(a) | Action::SetIpv4Dst(a) => {
            if at.v6 {
                return Err(RewriteError::NotIpv4);
            }
            let l4sum = l4_checksum(frame, &at)?;
            let src = matches!(action, Action::SetIpv4Src(_));
            let old = set_ipv4_addr(&mut frame[at.l3..], src, a);
            let (old, new) = (u32::from(old), u32::from(a));
            if let Some((csum, zero_none)) = l4sum {
                if partial {
                    fix_partial32(frame, csum, old, new);
                } else {
                    fix_l4(frame, csum, zero_none, old, new, true);
                }
            }
            Ok(())
        }
        Action::SetTtl(ttl) => {
            if at.v6 {
                Ipv6Packet::new_unchecked(&mut frame[at.l3..]).set_hop_limit(ttl);
            } else {
                let mut ip = Ipv4Packet::new_unchecked(&mut frame[at.l3..]);
                let old = ip.ttl_proto_word();
                ip.set_ttl(ttl);
                let c = update16(ip.checksum(), old, ip.ttl_proto_word());
                ip.set_checksum(c);
            }
            Ok(())
        }
        Action::SetTos(tos) => {
            if at.v6 {
                Ipv6Packet::new_unchecked(&mut frame[at.l3..]).set_traffic_class(tos);
            } else {
                let mut ip = Ipv4Packet::new_unchecked(&mut frame[at.l3..]);
                let old = ip.ver_tos_word();
                ip.set_tos(tos);
                let c = update16(ip.checksum(), old, ip.ver_tos_word());
                ip.set_checksum(c);
            }
            Ok(())
        }
        Action::SetL4Src(p) | Action::SetL4Dst(p) => {
            let src = matches!(action, Action::SetL4Src(_));
            let l4 = match at.l4 {
                Some(l4) if matches!(at.proto, IP_PROTO_TCP | IP_PROTO_UDP) => l4,
                _ => return Err(RewriteError::NoPorts),
            };
            let seg = &mut frame[l4..at.end];
            // A partial checksum is summed over the segment later: only a
            // complete one needs the update.
            if at.proto == IP_PROTO_TCP {
                let mut t = TcpPacket::new_checked(seg).map_err(|_| ParseError::TcpTruncated)?;
                let old = if src { t.src_port() } else { t.dst_port() };
                if src {
                    t.set_src_port(p);
                } else {
                    t.set_dst_port(p);
                }
                if !partial {
                    t.set_checksum(update16(t.checksum(), old, p));
                }
            } else {
                let mut u = UdpPacket::new_checked(seg).map_err(|_| ParseError::UdpTruncated)?;
                let old = if src { u.src_port() } else { u.dst_port() };
                if src {
                    u.set_src_port(p);
                } else {
                    u.set_dst_port(p);
                }
                if !partial {
                    let csum = l4 + midonet_wire::udp::field::CHECKSUM.start;
                    fix_l4(frame, csum, !at.v6, u32::from(old), u32::from(p), false);
                }
            }
            Ok(())
        }
        Action::SetIcmpId(id) => {
            let echo_proto = if at.v6 { IP_PROTO_ICMPV6 } else { IP_PROTO_ICMP };
            let l4 = match at.l4 {
                Some(l4) if at.proto == echo_proto => l4,
                _ => return Err(RewriteError::NotIcmpEcho),
            };
            let mut icmp = IcmpPacket::new_checked(&mut frame[l4..at.end])
                .map_err(|_| ParseError::IcmpTruncated)?;
            let echo_types: [u8; 2] = if at.v6 { [128, 129] } else { [0, 8] };
            if !echo_types.contains(&icmp.msg_type()) {
                return Err(RewriteError::NotIcmpEcho);
            }
            let old = icmp.echo_ident();
            icmp.set_echo_ident(id);
            if !partial {
                icmp.set_checksum(update16(icmp.checksum(), old, id));
            }
            Ok(())
        }
        // set_field sends only the IP set-fields here.
        _ => Ok(()),
    }
}

/// Write an IPv4 source (`src`) or destination address and update the
/// header checksum; returns the old address.
fn set_ipv4_addr(ip: &mut [u8], src: bool, a: Ipv4Addr) -> Ipv4Addr {
    let mut ip = Ipv4Packet::new_unchecked(ip);
    let old = if src { ip.src_addr() } else { ip.dst_addr() };
    if src {
        ip.set_src_addr(a);
    } else {
        ip.set_dst_addr(a);
    }
    let c = update32(ip.checksum(), u32::from(old), u32::from(a));
    ip.set_checksum(c);
    old
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use midonet_wire::checksum::{finish, fold, pseudo_header_v4, pseudo_header_v6, sum};

    /// Recompute every checksum in `frame` from scratch and check it.
    /// Independent of the incremental path under test.
    pub(crate) fn assert_checksums_valid(frame: &[u8]) {
        let (k, lay) = extract_with_layout(frame, InPort::Port(0)).expect("parse");
        if k.is_ipv4() {
            let ihl = usize::from(frame[lay.l3] & 0x0f) * 4;
            let h = etherparse::Ipv4HeaderSlice::from_slice(&frame[lay.l3..lay.l3 + ihl])
                .expect("ipv4");
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "ipv4 header checksum"
            );
        }
        let Some(l4) = lay.l4 else { return };
        let seg = &frame[l4..lay.l3_end];
        let start = match (k.is_ipv4(), k.ip_proto) {
            (true, IP_PROTO_TCP | IP_PROTO_UDP) => {
                pseudo_header_v4(k.ipv4_src, k.ipv4_dst, k.ip_proto, seg.len() as u16)
            }
            (true, IP_PROTO_ICMP) => 0,
            (false, IP_PROTO_TCP | IP_PROTO_UDP | IP_PROTO_ICMPV6) => {
                pseudo_header_v6(k.ipv6_src, k.ipv6_dst, k.ip_proto, seg.len() as u32)
            }
            _ => return,
        };
        if k.ip_proto == IP_PROTO_UDP && k.is_ipv4() && seg[6..8] == [0, 0] {
            return; // no checksum
        }
        assert_eq!(fold(sum(start, seg)), 0xffff, "L4 checksum of {k}");
    }

    fn frame(desc: &str) -> Vec<u8> {
        let k: FlowKey = desc.parse().expect("desc");
        let mut f = Vec::new();
        k.to_frame(b"some payload bytes", &mut f);
        f
    }

    fn rewrite(desc: &str, action: Action) -> FlowKey {
        let mut f = frame(desc);
        apply_action(&mut f, &action).expect("rewrite");
        assert_checksums_valid(&f);
        FlowKey::extract(&f, InPort::Port(0)).expect("re-extract")
    }

    const TCP: &str = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,tcp.src=40000,tcp.dst=80";
    const UDP: &str = "ip4.src=10.0.0.2,ip4.dst=10.0.1.5,udp.src=5000,udp.dst=53,vlan.vid=7";
    const PING: &str = "ip4.src=10.0.0.2,ip4.dst=10.0.1.5,icmp4.type=8,icmp4.id=77";

    #[test]
    fn nat_rewrites_update_checksums() {
        let a = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(rewrite(TCP, Action::SetIpv4Src(a)).ipv4_src, a);
        assert_eq!(rewrite(TCP, Action::SetIpv4Dst(a)).ipv4_dst, a);
        assert_eq!(rewrite(UDP, Action::SetIpv4Dst(a)).ipv4_dst, a);
        assert_eq!(rewrite(PING, Action::SetIpv4Src(a)).ipv4_src, a);
        assert_eq!(rewrite(TCP, Action::SetL4Src(1234)).l4_src, 1234);
        assert_eq!(rewrite(UDP, Action::SetL4Dst(5353)).l4_dst, 5353);
        assert_eq!(rewrite(PING, Action::SetIcmpId(4242)).icmp_id, 4242);
        assert_eq!(rewrite(TCP, Action::SetTtl(1)).ip_ttl, 1);
        assert_eq!(rewrite(TCP, Action::SetTos(0xb8)).ip_tos, 0xb8);
        let k = rewrite("ip6.src=2001:db8::1,ip6.dst=2001:db8::2,udp.dst=53", Action::SetTos(0x2c));
        assert_eq!(k.ip_tos, 0x2c);
        assert_eq!(
            rewrite("ip6.src=2001:db8::1,ip6.dst=2001:db8::2,tcp.dst=53", Action::SetL4Dst(99))
                .l4_dst,
            99
        );
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut f = frame(UDP);
        let l4 = 18 + 20;
        f[l4 + 6..l4 + 8].fill(0);
        apply_action(&mut f, &Action::SetIpv4Src(Ipv4Addr::new(1, 2, 3, 4))).expect("rewrite");
        assert_eq!(&f[l4 + 6..l4 + 8], &[0, 0]);
        assert_checksums_valid(&f);
    }

    /// An offloaded (CHECKSUM_PARTIAL) frame: the L4 checksum field holds
    /// the folded, uncomplemented pseudo-header sum. After rewrites it must
    /// still hold that of the new headers, so completing it over the
    /// segment (what the NIC or the receiving stack does) gives a valid
    /// checksum.
    #[test]
    fn partial_checksums_stay_completable() {
        for (desc, csum_at) in [(TCP.to_owned(), 16), (UDP.replace(",vlan.vid=7", ""), 6)] {
            let mut f = frame(&desc);
            let l4 = 14 + 20;
            let pseudo_of = |f: &[u8]| {
                let (k, lay) = extract_with_layout(f, InPort::Port(0)).expect("parse");
                fold(pseudo_header_v4(k.ipv4_src, k.ipv4_dst, k.ip_proto, (lay.l3_end - l4) as u16))
            };
            let p = pseudo_of(&f);
            f[l4 + csum_at..l4 + csum_at + 2].copy_from_slice(&p.to_be_bytes());
            for a in [
                Action::SetIpv4Src(Ipv4Addr::new(203, 0, 113, 9)),
                Action::SetIpv4Dst(Ipv4Addr::new(198, 51, 100, 200)),
                Action::SetL4Src(1234),
                Action::SetL4Dst(4321),
                Action::SetTtl(9),
            ] {
                apply_action_partial(&mut f, &a, Some(l4)).expect("rewrite");
                let field = u16::from_be_bytes([f[l4 + csum_at], f[l4 + csum_at + 1]]);
                assert_eq!(
                    field,
                    pseudo_of(&f),
                    "{desc}: after {a:?} the field is the new pseudo-header sum"
                );
            }
            // Complete it as the stack would, then check it from scratch.
            let end = f.len();
            let c = finish(sum(0, &f[l4..end]));
            f[l4 + csum_at..l4 + csum_at + 2].copy_from_slice(&c.to_be_bytes());
            assert_checksums_valid(&f);
        }
        // A complete checksum is still updated the ordinary way.
        let mut f = frame(TCP);
        apply_action_partial(&mut f, &Action::SetL4Dst(8080), None).expect("rewrite");
        assert_checksums_valid(&f);
    }

    #[test]
    fn l2_and_vlan_rewrites() {
        let mac = MacAddr([2, 0xaa, 0, 0, 0, 9]);
        assert_eq!(rewrite(TCP, Action::SetEthDst(mac)).eth_dst, mac);
        assert_eq!(rewrite(TCP, Action::SetEthSrc(mac)).eth_src, mac);
        let k = rewrite(TCP, Action::PushVlan { vid: 300, pcp: 5 });
        assert_eq!((k.vlan_vid, k.vlan_pcp, k.l4_dst), (Some(300), 5, 80));
        let k = rewrite(UDP, Action::PopVlan);
        assert_eq!((k.vlan_vid, k.l4_dst), (None, 53));
    }

    #[test]
    fn slice_api_is_the_vec_api_in_place() {
        let acts = [
            Action::SetEthSrc(MacAddr([2, 0, 0, 0, 0, 0x33])),
            Action::SetIpv4Dst(Ipv4Addr::new(198, 51, 100, 7)),
            Action::SetL4Dst(8443),
            Action::SetTtl(3),
            Action::SetTos(0x28),
        ];
        for desc in [TCP, UDP, PING] {
            for a in &acts {
                let mut by_vec = frame(desc);
                let mut by_slice = by_vec.clone();
                let r = apply_action(&mut by_vec, a);
                assert_eq!(set_field(&mut by_slice, a, None), r, "{desc}: {a:?}");
                assert_eq!(by_slice, by_vec, "{desc}: {a:?}");
            }
        }
        let push = Action::PushVlan { vid: 300, pcp: 5 };
        let orig = frame(TCP);
        let mut by_vec = orig.clone();
        apply_action(&mut by_vec, &push).expect("push");
        let mut buf = vec![0xee; VLAN_TAG_SIZE];
        buf.extend_from_slice(&orig);
        push_vlan_in_place(&mut buf, &push).expect("push in place");
        assert_eq!(buf, by_vec);
        pop_vlan_in_place(&mut buf).expect("pop in place");
        assert_eq!(&buf[VLAN_TAG_SIZE..], &orig[..]);
        let mut f = frame(TCP);
        assert_eq!(set_field(&mut f, &push, None), Err(RewriteError::Resizes));
        assert_eq!(set_field(&mut f, &Action::PopVlan, None), Err(RewriteError::Resizes));
        assert_eq!(pop_vlan_in_place(&mut f), Err(RewriteError::NotTagged));
        assert_eq!(f, frame(TCP));
    }

    #[test]
    fn a_cut_l4_header_fails_before_anything_is_written() {
        // An IPv4 packet whose TCP header is cut after 10 bytes.
        let mut f = frame(TCP);
        f.truncate(14 + 20 + 10);
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        midonet_wire::checksum::set_ipv4_header_checksum(&mut f[14..34]);
        let before = f.clone();
        let a = Action::SetIpv4Src(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(apply_action(&mut f, &a), Err(RewriteError::Parse(ParseError::TcpTruncated)));
        assert_eq!(
            apply_action(&mut f, &Action::SetL4Dst(1)),
            Err(RewriteError::Parse(ParseError::TcpTruncated))
        );
        assert_eq!(f, before);
        // The IP header alone is whole: TTL and TOS rewrites need no more.
        apply_action(&mut f, &Action::SetTtl(9)).expect("ttl");
        assert!(midonet_wire::Ipv4Packet::new_checked(&f[14..]).expect("ip").verify_checksum());
    }

    #[test]
    fn later_fragment_rewrites_ip_only() {
        let k = rewrite(
            "ip4.src=10.0.0.2,ip4.dst=10.0.1.5,ip.proto=17,ip.frag=later",
            Action::SetIpv4Dst(Ipv4Addr::new(9, 9, 9, 9)),
        );
        assert_eq!(k.ipv4_dst, Ipv4Addr::new(9, 9, 9, 9));
        let mut f = frame("ip4.src=10.0.0.2,ip4.dst=10.0.1.5,ip.proto=17,ip.frag=later");
        assert_eq!(apply_action(&mut f, &Action::SetL4Dst(1)), Err(RewriteError::NoPorts));
    }

    #[test]
    fn mismatched_actions_are_errors() {
        let mut arp = frame("arp.op=1,arp.spa=10.0.0.1,arp.tpa=10.0.0.2");
        let before = arp.clone();
        assert_eq!(
            apply_action(&mut arp, &Action::SetIpv4Src(Ipv4Addr::LOCALHOST)),
            Err(RewriteError::NotIpv4)
        );
        assert_eq!(apply_action(&mut arp, &Action::SetTtl(3)), Err(RewriteError::NotIp));
        assert_eq!(apply_action(&mut arp, &Action::PopVlan), Err(RewriteError::NotTagged));
        let mut tcp = frame(TCP);
        assert_eq!(apply_action(&mut tcp, &Action::SetIcmpId(1)), Err(RewriteError::NotIcmpEcho));
        let mut sctp = frame("ip4.src=1.1.1.1,ip4.dst=2.2.2.2,sctp.dst=9");
        assert_eq!(apply_action(&mut sctp, &Action::SetL4Dst(1)), Err(RewriteError::NoPorts));
        let mut short = vec![0u8; 10];
        assert_eq!(
            apply_action(&mut short, &Action::SetTtl(1)),
            Err(RewriteError::Parse(ParseError::EthTruncated))
        );
        assert_eq!(
            apply_action(&mut short, &Action::SetEthSrc(MacAddr::ZERO)),
            Err(RewriteError::Parse(ParseError::EthTruncated))
        );
        assert_eq!(arp, before, "failed rewrites leave the frame alone");
    }

    #[test]
    fn icmp_id_rewrite_rejects_ipv4_type_128() {
        // Found by the diff/rewrite property: 128 is an ICMPv6 echo type, but
        // in ICMPv4 it carries no identifier.
        let mut f = frame("ip4.src=1.1.1.1,ip4.dst=2.2.2.2,icmp4.type=128");
        assert_eq!(apply_action(&mut f, &Action::SetIcmpId(1)), Err(RewriteError::NotIcmpEcho));
        assert_eq!(
            rewrite("ip6.src=::1,ip6.dst=::2,icmp6.type=129", Action::SetIcmpId(7)).icmp_id,
            7
        );
    }

    #[test]
    fn emits_leave_frame_unchanged() {
        let mut f = frame(TCP);
        let before = f.clone();
        let acts = [
            Action::Output(3),
            Action::Tunnel { dst: Ipv4Addr::new(192, 0, 2, 1), key: 5 },
            Action::Userspace(crate::UserspaceReason::Trace),
        ];
        apply_actions_to_frame(&mut f, &acts).expect("no-op");
        assert_eq!(f, before);
    }
}
