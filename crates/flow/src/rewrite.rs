//! Apply set-field and VLAN [`Action`]s to a frame in place.
//!
//! Checksums are updated incrementally (RFC 1624): the IPv4 header checksum
//! for address/TTL/TOS changes, the TCP/UDP checksum for address changes
//! (they are in the pseudo-header, RFC 9293 §3.1, RFC 768) and port changes,
//! the ICMP checksum for echo-id changes. A UDP checksum of zero means "none"
//! (IPv4) and stays zero; an update that would produce zero writes 0xffff
//! (RFC 768). Later fragments carry no L4 header, so only the IP header
//! changes; the L4 checksum in the first fragment covers the whole datagram
//! and is updated there.
//!
//! Frames whose L4 checksum is "partial" (offloaded, `CHECKSUM_PARTIAL` /
//! virtio `NEEDS_CSUM`: the field holds the *uncomplemented* pseudo-header
//! sum, and whoever completes it sums the segment as it then is) need
//! different updates: an address change moves that sum the other way
//! (`!update(!field)`), and a change inside the segment (ports, ICMP id)
//! needs none. [`apply_action_partial`] takes the offset of such a
//! checksummed L4 header; [`apply_action`] assumes complete checksums.
//!
//! The IP header quoted inside an ICMP error is not rewritten (NAT of ICMP
//! errors needs the payload, which a megaflow cannot match: the simulation
//! handles those packets in user space, midonet-behaviour §1.4).
//!
//! SCTP ports are not rewritable here: SCTP uses CRC32c over the whole
//! packet, which cannot be updated incrementally.

use crate::action::Action;
use crate::checksum::{update16, update32};
use crate::extract::{extract_with_layout, Layout, ParseError};
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
/// checksum is complete. A partial checksum starting at the TCP/UDP header
/// gets pseudo-header updates for address changes and none for port
/// changes; the IPv4 header checksum is always complete and updated as
/// usual. VLAN push/pop shift the headers: the caller moves `csum_start`.
pub fn apply_action_partial(
    frame: &mut Vec<u8>,
    action: &Action,
    csum_start: Option<usize>,
) -> Result<(), RewriteError> {
    match *action {
        Action::Output(_) | Action::Tunnel { .. } | Action::Userspace(_) => Ok(()),
        Action::SetEthDst(m) => set_bytes(frame, 0, &m.0),
        Action::SetEthSrc(m) => set_bytes(frame, 6, &m.0),
        Action::PushVlan { vid, pcp } => {
            if frame.len() < 14 {
                return Err(ParseError::EthTruncated.into());
            }
            let tci = (u16::from(pcp & 0x07) << 13) | (vid & 0x0fff);
            let [t0, t1] = tci.to_be_bytes();
            let [p0, p1] = ETH_TYPE_VLAN.to_be_bytes();
            frame.splice(12..12, [p0, p1, t0, t1]);
            Ok(())
        }
        Action::PopVlan => {
            if frame.get(12..14) != Some(&ETH_TYPE_VLAN.to_be_bytes()[..]) {
                return Err(RewriteError::NotTagged);
            }
            if frame.len() < 18 {
                return Err(ParseError::VlanTruncated.into());
            }
            frame.drain(12..16);
            Ok(())
        }
        _ => {
            let (key, lay) = extract_with_layout(frame, InPort::Port(0))?;
            let partial = csum_start.is_some() && csum_start == lay.l4;
            set_l3_l4(frame, &key, &lay, action, partial)
        }
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

fn set_bytes(frame: &mut [u8], at: usize, v: &[u8]) -> Result<(), RewriteError> {
    let dst = frame.get_mut(at..at + v.len()).ok_or(ParseError::EthTruncated)?;
    dst.copy_from_slice(v);
    Ok(())
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Offset of the L4 checksum field for protocols that have a pseudo-header,
/// and whether zero means "no checksum" (UDP over IPv4).
fn l4_csum_at(key: &FlowKey, l4: usize) -> Option<(usize, bool)> {
    match key.ip_proto {
        IP_PROTO_TCP => Some((l4 + 16, false)),
        IP_PROTO_UDP => Some((l4 + 6, key.is_ipv4())),
        IP_PROTO_ICMPV6 if key.is_ipv6() => Some((l4 + 2, false)),
        _ => None,
    }
}

/// Update the L4 checksum at `at` for a 16- or 32-bit field change.
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

/// `partial`: the L4 checksum (at `lay.l4`) is an offloaded partial one.
fn set_l3_l4(
    frame: &mut [u8],
    key: &FlowKey,
    lay: &Layout,
    action: &Action,
    partial: bool,
) -> Result<(), RewriteError> {
    let l3 = lay.l3;
    // All offsets below were validated by extract_with_layout: the IPv4/IPv6
    // header and (when `lay.l4` is set) the L4 header lie inside the frame.
    match *action {
        Action::SetIpv4Src(a) | Action::SetIpv4Dst(a) => {
            if !key.is_ipv4() {
                return Err(RewriteError::NotIpv4);
            }
            let at = if matches!(action, Action::SetIpv4Src(_)) { l3 + 12 } else { l3 + 16 };
            let old = u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
            let new = u32::from(a);
            frame[at..at + 4].copy_from_slice(&a.octets());
            let c = rd16(frame, l3 + 10);
            wr16(frame, l3 + 10, update32(c, old, new));
            if let Some(l4) = lay.l4 {
                if let Some((csum, zero_none)) = l4_csum_at(key, l4) {
                    if partial {
                        fix_partial32(frame, csum, old, new);
                    } else {
                        fix_l4(frame, csum, zero_none, old, new, true);
                    }
                }
            }
            Ok(())
        }
        Action::SetTtl(ttl) => {
            if key.is_ipv4() {
                let old = rd16(frame, l3 + 8);
                frame[l3 + 8] = ttl;
                let new = rd16(frame, l3 + 8);
                let c = rd16(frame, l3 + 10);
                wr16(frame, l3 + 10, update16(c, old, new));
                Ok(())
            } else if key.is_ipv6() {
                frame[l3 + 7] = ttl;
                Ok(())
            } else {
                Err(RewriteError::NotIp)
            }
        }
        Action::SetTos(tos) => {
            if key.is_ipv4() {
                let old = rd16(frame, l3);
                frame[l3 + 1] = tos;
                let new = rd16(frame, l3);
                let c = rd16(frame, l3 + 10);
                wr16(frame, l3 + 10, update16(c, old, new));
                Ok(())
            } else if key.is_ipv6() {
                frame[l3] = (frame[l3] & 0xf0) | (tos >> 4);
                frame[l3 + 1] = (frame[l3 + 1] & 0x0f) | (tos << 4);
                Ok(())
            } else {
                Err(RewriteError::NotIp)
            }
        }
        Action::SetL4Src(p) | Action::SetL4Dst(p) => {
            let l4 = match lay.l4 {
                Some(l4) if matches!(key.ip_proto, IP_PROTO_TCP | IP_PROTO_UDP) => l4,
                _ => return Err(RewriteError::NoPorts),
            };
            let at = if matches!(action, Action::SetL4Src(_)) { l4 } else { l4 + 2 };
            let old = rd16(frame, at);
            wr16(frame, at, p);
            // A partial checksum is summed over the segment later: nothing to do.
            if let (Some((csum, zero_none)), false) = (l4_csum_at(key, l4), partial) {
                fix_l4(frame, csum, zero_none, u32::from(old), u32::from(p), false);
            }
            Ok(())
        }
        Action::SetIcmpId(id) => {
            let l4 = match lay.l4 {
                Some(l4) if key.is_icmp_echo() => l4,
                _ => return Err(RewriteError::NotIcmpEcho),
            };
            let old = rd16(frame, l4 + 4);
            wr16(frame, l4 + 4, id);
            if !partial {
                let c = rd16(frame, l4 + 2);
                wr16(frame, l4 + 2, update16(c, old, id));
            }
            Ok(())
        }
        // Handled by apply_action before parsing.
        Action::SetEthSrc(_)
        | Action::SetEthDst(_)
        | Action::PushVlan { .. }
        | Action::PopVlan
        | Action::Output(_)
        | Action::Tunnel { .. }
        | Action::Userspace(_) => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::build::{pseudo_v4, pseudo_v6};
    use crate::checksum::{fold, sum};
    use std::net::Ipv4Addr;

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
                pseudo_v4(k.ipv4_src, k.ipv4_dst, k.ip_proto, seg.len() as u32)
            }
            (true, IP_PROTO_ICMP) => 0,
            (false, IP_PROTO_TCP | IP_PROTO_UDP | IP_PROTO_ICMPV6) => {
                pseudo_v6(k.ipv6_src, k.ipv6_dst, k.ip_proto, seg.len() as u32)
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
                fold(pseudo_v4(k.ipv4_src, k.ipv4_dst, k.ip_proto, (lay.l3_end - l4) as u32))
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
            let c = crate::checksum::finish(sum(0, &f[l4..end]));
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
