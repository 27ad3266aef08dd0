//! Offloads finished in software, for a tunnel peer that takes no offload
//! metadata.
//!
//! A VM hands its veth TCP as 64 KB GSO frames and most TCP and UDP with a
//! partial checksum. Between our userspace agents that state crosses the
//! tunnel in the VXLAN reserved bits ([`crate::vxlan`]); a kernel VTEP (the
//! `ebpf` provider's vxlan device, or any RFC 7348 peer) drops a datagram
//! whose reserved bits are set. So towards such a peer
//! ([`crate::TunnelOffload`]) a userspace datapath does here what the NIC
//! or the kernel's GSO would have: [`resolve`] turns one offloaded frame
//! into the plain frames it stands for.
//!
//! ```text
//!   NEEDS_CSUM only       one frame, its L4 checksum completed
//!   GSO TCPV4 / TCPV6     one frame per gso_size bytes of payload: IP length
//!                         (and IPv4 id, +1 per segment, and header checksum),
//!                         TCP sequence, FIN/PSH only on the last, CWR only on
//!                         the first, full TCP checksum
//!   GSO UDP_L4            one datagram per gso_size bytes: UDP length, IP
//!                         length/id/checksum, UDP checksum
//!   GSO UDP (UFO)         refused: it would need IP fragmentation
//! ```
//!
//! The input comes from a guest, through the kernel's virtio-net header:
//! every offset is checked against the frame, and a frame that does not add
//! up is refused ([`OffloadError`]), never a panic.

use midonet_wire::{checksum, Ipv4Packet, Ipv6Packet};

use crate::sys::VnetHdr;

/// Why an offloaded frame cannot be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Offsets or header lengths that do not fit the frame.
    #[error("offload metadata does not match the frame")]
    Malformed,
    /// Valid, but not something we segment (UFO, IPv6 extension headers).
    #[error("offload not resolvable in software")]
    Unsupported,
}

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// VLAN tags we step over before the IP header (as the flow key does).
const MAX_VLAN_TAGS: usize = 2;

/// Appends to `out` the plain frames `frame` stands for, and each one's end
/// offset in `out` to `ends`. On error nothing of `frame` stays in `out`.
pub fn resolve(
    frame: &[u8],
    vnet: &VnetHdr,
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(), OffloadError> {
    let (base, n) = (out.len(), ends.len());
    let r = resolve_into(frame, vnet, out, ends);
    if r.is_err() {
        out.truncate(base);
        ends.truncate(n);
    }
    r
}

fn resolve_into(
    frame: &[u8],
    vnet: &VnetHdr,
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(), OffloadError> {
    if frame.len() < ETH_HLEN {
        return Err(OffloadError::Malformed);
    }
    match vnet.gso_type & !VnetHdr::GSO_ECN {
        VnetHdr::GSO_NONE => {
            let start = out.len();
            out.extend_from_slice(frame);
            if vnet.flags & VnetHdr::F_NEEDS_CSUM != 0 {
                complete_csum(&mut out[start..], vnet)?;
            }
            ends.push(out.len());
            Ok(())
        }
        VnetHdr::GSO_TCPV4 | VnetHdr::GSO_TCPV6 => segment(frame, vnet, IPPROTO_TCP, out, ends),
        VnetHdr::GSO_UDP_L4 => segment(frame, vnet, IPPROTO_UDP, out, ends),
        VnetHdr::GSO_UDP => Err(OffloadError::Unsupported),
        _ => Err(OffloadError::Malformed),
    }
}

/// A partial checksum completed in place: the field holds the
/// pseudo-header's sum; the checksum covers `csum_start..` of the frame.
fn complete_csum(f: &mut [u8], vnet: &VnetHdr) -> Result<(), OffloadError> {
    let start = usize::from(vnet.csum_start);
    let at = start + usize::from(vnet.csum_offset);
    if start < ETH_HLEN || at + 2 > f.len() {
        return Err(OffloadError::Malformed);
    }
    // The offset says UDP.
    let c = on_the_wire(checksum::finish(checksum::sum(0, &f[start..])), vnet.csum_offset == 6);
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// A computed checksum as sent: UDP sends zero as all ones (RFC 768; zero
/// means "none").
fn on_the_wire(c: u16, udp: bool) -> u16 {
    if udp && c == 0 {
        0xffff
    } else {
        c
    }
}

/// Computes and stores the L4 checksum of `seg` (the L4 header and
/// payload), its field at `field`, over the pseudo-header sum `pseudo`.
fn put_l4_checksum(seg: &mut [u8], field: usize, pseudo: u32, udp: bool) {
    seg[field..field + 2].fill(0);
    let c = on_the_wire(checksum::finish(checksum::sum(pseudo, seg)), udp);
    seg[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Where the IP header starts and which version it is.
fn l3(frame: &[u8]) -> Result<(usize, u16), OffloadError> {
    let mut off = 12;
    for _ in 0..=MAX_VLAN_TAGS {
        let t = frame.get(off..off + 2).ok_or(OffloadError::Malformed)?;
        match u16::from_be_bytes([t[0], t[1]]) {
            0x8100 | 0x88a8 => off += 4,
            ty @ (ETH_P_IP | ETH_P_IPV6) => return Ok((off + 2, ty)),
            _ => return Err(OffloadError::Malformed),
        }
    }
    Err(OffloadError::Malformed)
}

/// The IP header's facts the segments need.
struct Ip {
    at: usize,
    v4: bool,
    /// IPv4 header length (IPv6: 40, no extension headers).
    hlen: usize,
    proto: u8,
}

impl Ip {
    /// The TCP/UDP pseudo-header's sum of the packet at `f[self.at..]` for
    /// `l4_len` bytes of L4 header and payload.
    fn pseudo(&self, f: &[u8], l4_len: usize) -> u32 {
        let h = &f[self.at..];
        if self.v4 {
            Ipv4Packet::new_unchecked(h).pseudo_header_sum(l4_len as u16)
        } else {
            let v6 = Ipv6Packet::new_unchecked(h);
            checksum::pseudo_header_v6(v6.src_addr(), v6.dst_addr(), self.proto, l4_len as u32)
        }
    }
}

fn ip_header(frame: &[u8]) -> Result<Ip, OffloadError> {
    let (at, ty) = l3(frame)?;
    let h = frame.get(at..).ok_or(OffloadError::Malformed)?;
    if ty == ETH_P_IP {
        let first = *h.first().ok_or(OffloadError::Malformed)?;
        let hlen = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || hlen < 20 || h.len() < hlen {
            return Err(OffloadError::Malformed);
        }
        Ok(Ip { at, v4: true, hlen, proto: h[9] })
    } else {
        if h.len() < 40 || h[0] >> 4 != 6 {
            return Err(OffloadError::Malformed);
        }
        match h[6] {
            IPPROTO_TCP | IPPROTO_UDP => Ok(Ip { at, v4: false, hlen: 40, proto: h[6] }),
            _ => Err(OffloadError::Unsupported),
        }
    }
}

/// One plain frame per `gso_size` bytes of L4 payload.
fn segment(
    frame: &[u8],
    vnet: &VnetHdr,
    proto: u8,
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(), OffloadError> {
    let ip = ip_header(frame)?;
    if ip.proto != proto {
        return Err(OffloadError::Malformed);
    }
    let l4 = ip.at + ip.hlen;
    let l4_hlen = if proto == IPPROTO_TCP {
        let doff = usize::from(*frame.get(l4 + 12).ok_or(OffloadError::Malformed)? >> 4) * 4;
        if doff < 20 {
            return Err(OffloadError::Malformed);
        }
        doff
    } else {
        8
    };
    let hdr = l4 + l4_hlen;
    let mss = usize::from(vnet.gso_size);
    if hdr > frame.len() || mss == 0 {
        return Err(OffloadError::Malformed);
    }
    let (head, payload) = frame.split_at(hdr);
    // Within `head`: checked above (a TCP header is at least 20 bytes).
    let (seq0, flags0) = if proto == IPPROTO_TCP {
        (
            u32::from_be_bytes([head[l4 + 4], head[l4 + 5], head[l4 + 6], head[l4 + 7]]),
            head[l4 + 13],
        )
    } else {
        (0, 0)
    };
    let id0 = Ipv4Packet::new_unchecked(&head[ip.at..]).ident();
    // An empty payload still leaves one frame (a bare header).
    let n = payload.len().div_ceil(mss).max(1);
    let last = n - 1;
    out.reserve(n * hdr + payload.len());
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let s = out.len();
        out.extend_from_slice(head);
        out.extend_from_slice(chunk);
        let f = &mut out[s..];
        let l4_len = l4_hlen + chunk.len();
        let ip_len = ip.hlen + l4_len;
        if ip.v4 {
            let total = u16::try_from(ip_len).map_err(|_| OffloadError::Malformed)?;
            let mut v4 = Ipv4Packet::new_unchecked(&mut f[ip.at..]);
            v4.set_total_len(total);
            v4.set_ident(id0.wrapping_add(i as u16));
            v4.fill_checksum();
        } else {
            let plen = u16::try_from(l4_len).map_err(|_| OffloadError::Malformed)?;
            f[ip.at + 4..ip.at + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let field = if proto == IPPROTO_TCP {
            let seq = seq0.wrapping_add((i * mss) as u32);
            f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            let mut fl = flags0;
            if i != last {
                fl &= !(0x01 | 0x08); // FIN, PSH: the last segment's
            }
            if i != 0 {
                fl &= !0x80; // CWR: the first segment's
            }
            f[l4 + 13] = fl;
            16
        } else {
            let ulen = u16::try_from(l4_len).map_err(|_| OffloadError::Malformed)?;
            f[l4 + 4..l4 + 6].copy_from_slice(&ulen.to_be_bytes());
            6
        };
        let pseudo = ip.pseudo(f, l4_len);
        put_l4_checksum(&mut f[l4..], field, pseudo, proto == IPPROTO_UDP);
        ends.push(out.len());
    }
    Ok(())
}

/// Completes in place the L4 checksum of a frame that came through the
/// tunnel without offload metadata but still carries a partial checksum
/// (the pseudo-header's folded sum, where the whole checksum belongs), and
/// says whether it did. A kernel VTEP sends what its guest offloaded as
/// `CHECKSUM_PARTIAL`; across a real NIC the NIC finishes it, but across a
/// veth into this host's UDP socket nothing does, and the guest we deliver
/// to would drop the frame. A frame whose checksum verifies, has none
/// (IPv4 UDP zero), or is wrong in any other way (corrupt: the guest drops
/// it) is left alone; an IPv4 fragment too.
pub fn complete_unfinished(frame: &mut [u8]) -> bool {
    let Ok(ip) = ip_header(frame) else { return false };
    let h = &frame[ip.at..];
    let l4_len = if ip.v4 {
        let v4 = Ipv4Packet::new_unchecked(h);
        let total = usize::from(v4.total_len());
        if v4.more_frags() || v4.frag_offset() != 0 || total < ip.hlen {
            return false;
        }
        total - ip.hlen
    } else {
        usize::from(Ipv6Packet::new_unchecked(h).payload_len())
    };
    let l4 = ip.at + ip.hlen;
    let field = match ip.proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => return false,
    };
    let pseudo = ip.pseudo(frame, l4_len);
    let Some(seg) = frame.get_mut(l4..l4 + l4_len) else { return false };
    if seg.len() < field + 2 {
        return false;
    }
    // The cheap test first: only a field holding the pseudo-header's sum
    // can be partial, so a finished frame costs no pass over its payload.
    // (A finished checksum equal to that sum, one in 65536, verifies.)
    let stored = u16::from_be_bytes([seg[field], seg[field + 1]]);
    if stored != checksum::fold(pseudo)
        || (ip.v4 && ip.proto == IPPROTO_UDP && stored == 0)
        || checksum::fold(checksum::sum(pseudo, seg)) == 0xffff
    {
        return false;
    }
    put_l4_checksum(seg, field, pseudo, ip.proto == IPPROTO_UDP);
    true
}

/// The MTU [`inner_gso`] assumes when nothing says what the segments were.
pub const PLAIN_MTU: usize = 1500;

/// The offload state of a plain tunnel datagram that holds one GSO frame.
/// Across a veth a kernel VTEP's TSO frame reaches a UDP socket that is no
/// tunnel's whole, as one datagram: TCP with no word of its MSS, UDP GSO
/// with the inner segment size as the socket's GRO size (`gso_size`). `Some`
/// when `frame` is one TCP or UDP packet whose IP length spans the frame
/// and which is longer than a segment: `gso_size` when given, otherwise
/// (TCP only) what a [`PLAIN_MTU`] leaves after its headers (the guest's
/// stack only uses it to re-segment and to estimate the sender's MSS). A
/// big UDP datagram without a size is left whole: it may be one jumbo
/// datagram, which segmenting would cut into several. The frame then
/// goes to the guest with this header and its checksum still partial, as
/// a guest's own offloaded frame would.
pub fn inner_gso(frame: &[u8], gso_size: Option<usize>) -> Option<VnetHdr> {
    let ip = ip_header(frame).ok()?;
    let h = &frame[ip.at..];
    let ip_len = if ip.v4 {
        usize::from(u16::from_be_bytes([h[2], h[3]]))
    } else {
        40 + usize::from(u16::from_be_bytes([h[4], h[5]]))
    };
    let l4 = ip.at + ip.hlen;
    let (gso_type, l4_hlen, csum_offset) = match ip.proto {
        IPPROTO_TCP => (
            if ip.v4 { VnetHdr::GSO_TCPV4 } else { VnetHdr::GSO_TCPV6 },
            usize::from(*frame.get(l4 + 12)? >> 4) * 4,
            16,
        ),
        IPPROTO_UDP => (VnetHdr::GSO_UDP_L4, 8, 6),
        _ => return None,
    };
    let hdr = l4 + l4_hlen;
    let gso_size = match gso_size {
        Some(g) => g,
        None if ip_len > PLAIN_MTU && ip.proto == IPPROTO_TCP => {
            PLAIN_MTU.checked_sub(ip.hlen + l4_hlen)?
        }
        None => return None,
    };
    if ip_len != h.len() || l4_hlen < 8 || hdr + gso_size >= frame.len() || gso_size == 0 {
        return None;
    }
    Some(VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type,
        hdr_len: u16::try_from(hdr).ok()?,
        gso_size: u16::try_from(gso_size).ok()?,
        csum_start: u16::try_from(l4).ok()?,
        csum_offset,
    })
}

#[cfg(test)]
mod tests;
