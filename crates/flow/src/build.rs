//! Turn a [`FlowKey`] into a real frame: how `midonet trace` and tests give
//! the simulation both a key and bytes that re-extract to that key.
//!
//! The frame carries exactly the headers the key describes, with valid
//! checksums, followed by `payload`:
//!
//! ```text
//!  Ethernet [802.1Q] ─┬─ ARP (Ethernet/IPv4)
//!                     ├─ IPv4 (20, no options) ─┐
//!                     ├─ IPv6 (40) [Fragment] ──┼─ TCP (20) | UDP (8) | SCTP (12) | ICMP echo/other (8)
//!                     └─ other ethertype: payload only
//! ```
//!
//! A later fragment carries `payload` directly after the IP header, at
//! fragment offset 1480 bytes. For first fragments the L4 checksum covers the
//! bytes present (there is no rest of the datagram to cover).

use midonet_wire::checksum::{finish, pseudo_header_v4, pseudo_header_v6, sum};

use crate::key::*;

/// Fragment offset (in 8-byte units) written for `FragType::Later`: 1480 bytes,
/// where the second fragment of a 1500-MTU datagram starts.
const LATER_FRAG_OFFSET: u16 = 185;

impl FlowKey {
    /// The key with every field that its ethertype, protocol and fragment
    /// type say is absent set to zero: what [`FlowKey::extract`] would return
    /// for [`FlowKey::to_frame`]'s output. Also clamps the VLAN id to 12
    /// bits and the PCP to 3, and keeps only the 9 TCP flag bits.
    pub fn canonical(&self) -> FlowKey {
        let mut k = FlowKey {
            in_port: self.in_port,
            eth_src: self.eth_src,
            eth_dst: self.eth_dst,
            ethertype: self.ethertype,
            ..FlowKey::default()
        };
        if let Some(vid) = self.vlan_vid {
            k.vlan_vid = Some(vid & 0x0fff);
            k.vlan_pcp = self.vlan_pcp & 0x07;
        }
        if k.ethertype == ETH_TYPE_VLAN {
            // A second tag would be parsed as the inner ethertype; the key
            // model holds one tag, so keep the raw value and nothing above it.
            return k;
        }
        if self.is_arp() {
            k.arp_op = self.arp_op;
            k.arp_sha = self.arp_sha;
            k.arp_spa = self.arp_spa;
            k.arp_tha = self.arp_tha;
            k.arp_tpa = self.arp_tpa;
            return k;
        }
        if !(self.is_ipv4() || self.is_ipv6()) {
            return k;
        }
        if self.is_ipv4() {
            k.ipv4_src = self.ipv4_src;
            k.ipv4_dst = self.ipv4_dst;
        } else {
            k.ipv6_src = self.ipv6_src;
            k.ipv6_dst = self.ipv6_dst;
            // IPv6 extension-header numbers would be consumed as headers.
            if matches!(self.ip_proto, 0 | 43 | 44 | 60) {
                k.ip_proto = 59; // "no next header"
            }
        }
        if k.ip_proto == 0 {
            k.ip_proto = self.ip_proto;
        }
        k.ip_tos = self.ip_tos;
        k.ip_ttl = self.ip_ttl;
        k.ip_frag = self.ip_frag;
        if k.ip_frag == FragType::Later {
            return k;
        }
        if k.has_ports() {
            k.l4_src = self.l4_src;
            k.l4_dst = self.l4_dst;
            if k.ip_proto == IP_PROTO_TCP {
                k.tcp_flags = self.tcp_flags & 0x01ff;
            }
        } else if k.is_icmp() {
            k.icmp_type = self.icmp_type;
            k.icmp_code = self.icmp_code;
            if k.is_icmp_echo() {
                k.icmp_id = self.icmp_id;
            }
        }
        k
    }

    /// Append a frame with the headers of `self.canonical()` and then
    /// `payload` to `out`. Never fails; fields absent from the canonical key
    /// are not written.
    pub fn to_frame(&self, payload: &[u8], out: &mut Vec<u8>) {
        let k = self.canonical();
        out.extend_from_slice(&k.eth_dst.0);
        out.extend_from_slice(&k.eth_src.0);
        if let Some(vid) = k.vlan_vid {
            out.extend_from_slice(&ETH_TYPE_VLAN.to_be_bytes());
            out.extend_from_slice(&((u16::from(k.vlan_pcp) << 13) | vid).to_be_bytes());
        }
        out.extend_from_slice(&k.ethertype.to_be_bytes());
        if k.is_arp() {
            out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
            out.extend_from_slice(&k.arp_op.to_be_bytes());
            out.extend_from_slice(&k.arp_sha.0);
            out.extend_from_slice(&k.arp_spa.octets());
            out.extend_from_slice(&k.arp_tha.0);
            out.extend_from_slice(&k.arp_tpa.octets());
            out.extend_from_slice(payload);
        } else if k.is_ipv4() {
            write_ipv4(&k, payload, out);
        } else if k.is_ipv6() {
            write_ipv6(&k, payload, out);
        } else {
            out.extend_from_slice(payload);
        }
    }
}

/// Append the L4 header (checksum zero) and payload; returns the offset of
/// the checksum field relative to the L4 start, if the protocol has one.
fn write_l4(k: &FlowKey, payload: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let csum = if k.ip_frag == FragType::Later {
        None
    } else if k.has_ports() {
        out.extend_from_slice(&k.l4_src.to_be_bytes());
        out.extend_from_slice(&k.l4_dst.to_be_bytes());
        match k.ip_proto {
            IP_PROTO_TCP => {
                out.extend_from_slice(&[0; 8]); // seq, ack
                out.push((5 << 4) | ((k.tcp_flags >> 8) as u8 & 1));
                out.push(k.tcp_flags as u8);
                out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, csum, urg
                Some(16)
            }
            IP_PROTO_UDP => {
                let len = (8 + payload.len()) as u16;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                Some(6)
            }
            // SCTP: verification tag + CRC32c left zero (nothing here checks it).
            _ => {
                out.extend_from_slice(&[0; 8]);
                None
            }
        }
    } else if k.is_icmp() {
        out.extend_from_slice(&[k.icmp_type, k.icmp_code, 0, 0]);
        out.extend_from_slice(&k.icmp_id.to_be_bytes());
        out.extend_from_slice(&[0, 0]); // sequence (or "unused")
        Some(2)
    } else {
        None
    };
    out.extend_from_slice(payload);
    csum
}

fn write_ipv4(k: &FlowKey, payload: &[u8], out: &mut Vec<u8>) {
    let l3 = out.len();
    let frag: u16 = match k.ip_frag {
        FragType::No => 0,
        FragType::First => 0x2000,
        FragType::Later => LATER_FRAG_OFFSET,
    };
    out.extend_from_slice(&[0x45, k.ip_tos, 0, 0, 0, 0]);
    out.extend_from_slice(&frag.to_be_bytes());
    out.extend_from_slice(&[k.ip_ttl, k.ip_proto, 0, 0]);
    out.extend_from_slice(&k.ipv4_src.octets());
    out.extend_from_slice(&k.ipv4_dst.octets());
    let l4 = out.len();
    let csum_at = write_l4(k, payload, out);
    let total = (out.len() - l3) as u16;
    out[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    let c = finish(sum(0, &out[l3..l4]));
    out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    if let Some(at) = csum_at {
        let l4_len = (out.len() - l4) as u32;
        // ICMPv4 has no pseudo-header.
        let start = if k.ip_proto == IP_PROTO_ICMP {
            0
        } else {
            pseudo_header_v4(k.ipv4_src, k.ipv4_dst, k.ip_proto, l4_len as u16)
        };
        let mut c = finish(sum(start, &out[l4..]));
        if c == 0 && k.ip_proto == IP_PROTO_UDP {
            c = 0xffff;
        }
        out[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

fn write_ipv6(k: &FlowKey, payload: &[u8], out: &mut Vec<u8>) {
    let l3 = out.len();
    let next = if k.ip_frag == FragType::No { k.ip_proto } else { 44 };
    out.extend_from_slice(&[0x60 | (k.ip_tos >> 4), k.ip_tos << 4, 0, 0, 0, 0, next, k.ip_ttl]);
    out.extend_from_slice(&k.ipv6_src.octets());
    out.extend_from_slice(&k.ipv6_dst.octets());
    if k.ip_frag != FragType::No {
        let fo: u16 = if k.ip_frag == FragType::First { 1 } else { LATER_FRAG_OFFSET << 3 };
        out.extend_from_slice(&[k.ip_proto, 0]);
        out.extend_from_slice(&fo.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 1]); // identification
    }
    let l4 = out.len();
    let csum_at = write_l4(k, payload, out);
    let plen = (out.len() - l3 - 40) as u16;
    out[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    if let Some(at) = csum_at {
        let l4_len = (out.len() - l4) as u32;
        let pseudo = pseudo_header_v6(k.ipv6_src, k.ipv6_dst, k.ip_proto, l4_len);
        let mut c = finish(sum(pseudo, &out[l4..]));
        if c == 0 && k.ip_proto == IP_PROTO_UDP {
            c = 0xffff;
        }
        out[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::rewrite::tests::assert_checksums_valid;

    fn round_trip(k: FlowKey) {
        let mut f = Vec::new();
        k.to_frame(b"payload", &mut f);
        assert_checksums_valid(&f);
        assert_eq!(FlowKey::extract(&f, k.in_port).expect("extract"), k.canonical(), "{k}");
    }

    #[test]
    fn described_keys_round_trip() {
        for d in [
            "in_port=3,eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,ip.ttl=64,tcp.dst=80,tcp.flags=syn",
            "vlan.vid=4095,vlan.pcp=7,udp.src=68,udp.dst=67,ip4.dst=255.255.255.255",
            "icmp4.type=0,icmp4.id=9",
            "icmp4.type=3,icmp4.code=4",
            "ip6.src=fe80::1,ip6.dst=ff02::1,icmp6.type=135",
            "ip6.src=::1,ip6.dst=::2,icmp6.id=5",
            "ip6.src=::1,ip6.dst=::2,ip.frag=first,tcp.src=1",
            "ip6.src=::1,ip6.dst=::2,ip.frag=later,ip.proto=6",
            "ip4.src=1.1.1.1,ip4.dst=2.2.2.2,ip.frag=first,udp.dst=4789",
            "sctp.src=1,sctp.dst=2",
            "arp.op=reply,arp.sha=02:00:00:00:00:09,arp.spa=10.0.0.9,arp.tha=02:00:00:00:00:01,arp.tpa=10.0.0.1",
            "eth.type=0x88cc,eth.src=02:00:00:00:00:01",
            "tun_key=0xfffff,ip4.src=10.0.0.1,ip4.dst=10.0.0.2,ip.proto=47",
        ] {
            round_trip(d.parse().expect(d));
        }
    }

    #[test]
    fn canonical_zeroes_absent_fields() {
        let k = FlowKey {
            ethertype: ETH_TYPE_ARP,
            ipv4_src: Ipv4Addr::new(1, 2, 3, 4),
            l4_dst: 80,
            vlan_pcp: 5, // untagged: dropped
            arp_op: 2,
            ..FlowKey::default()
        };
        let c = k.canonical();
        assert_eq!(c, FlowKey { ethertype: ETH_TYPE_ARP, arp_op: 2, ..FlowKey::default() });
        let icmp = FlowKey {
            ethertype: ETH_TYPE_IPV4,
            ip_proto: IP_PROTO_ICMP,
            icmp_type: 3,
            icmp_id: 7,
            l4_src: 1,
            ..FlowKey::default()
        };
        assert_eq!(icmp.canonical(), FlowKey { icmp_id: 0, l4_src: 0, ..icmp });
        let later = FlowKey {
            ethertype: ETH_TYPE_IPV4,
            ip_proto: IP_PROTO_TCP,
            ip_frag: FragType::Later,
            l4_dst: 80,
            tcp_flags: 2,
            ..FlowKey::default()
        };
        assert_eq!(later.canonical(), FlowKey { l4_dst: 0, tcp_flags: 0, ..later });
        assert_eq!(c.canonical(), c, "idempotent");
    }

    #[test]
    fn frame_matches_etherparse_view() {
        let k: FlowKey = "eth.src=02:00:00:00:00:01,eth.dst=02:00:00:00:00:02,ip4.src=10.0.0.2,ip4.dst=10.0.1.5,ip.tos=0x10,udp.src=1000,udp.dst=2000"
            .parse()
            .expect("desc");
        let mut f = Vec::new();
        k.to_frame(b"abc", &mut f);
        let s = etherparse::SlicedPacket::from_ethernet(&f).expect("etherparse");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else { panic!("ipv4") };
        assert_eq!(ip.header().total_len(), 20 + 8 + 3);
        assert_eq!(ip.header().ttl(), 64);
        let Some(etherparse::TransportSlice::Udp(u)) = &s.transport else { panic!("udp") };
        assert_eq!((u.source_port(), u.destination_port(), u.length()), (1000, 2000, 11));
        let hdr = u.to_header();
        assert_eq!(
            hdr.checksum,
            hdr.calc_checksum_ipv4(&ip.header().to_header(), b"abc").expect("csum")
        );
    }
}
