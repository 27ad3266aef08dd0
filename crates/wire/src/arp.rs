//! ARP request and reply builders (RFC 826, Ethernet/IPv4 only).
//!
//! ```text
//!   htype=1 ptype=0x0800 hlen=6 plen=4 op(2) sha(6) spa(4) tha(6) tpa(4)   = 28 bytes
//! ```
//!
//! Frames are not padded to the 60-byte Ethernet minimum: the agent emits
//! them on virtual interfaces (veth, tap, AF_PACKET), where the kernel or the
//! NIC pads if a physical wire needs it.

use std::net::Ipv4Addr;

use crate::ethernet::{write_eth, BROADCAST_MAC, ETHERTYPE_ARP};

/// ARP opcode of a request.
pub const ARP_OP_REQUEST: u16 = 1;
/// ARP opcode of a reply.
pub const ARP_OP_REPLY: u16 = 2;
/// Size of an Ethernet/IPv4 ARP frame (14 + 28).
pub const ARP_FRAME_SIZE: usize = 42;

fn write_arp(out: &mut Vec<u8>, op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) {
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&sha);
    out.extend_from_slice(&spa.octets());
    out.extend_from_slice(&tha);
    out.extend_from_slice(&tpa.octets());
}

/// Append a broadcast "who has `tpa`? tell `spa`" request from `sha`.
/// A gratuitous ARP is a request with `spa == tpa`.
pub fn arp_request(out: &mut Vec<u8>, sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) {
    write_eth(out, BROADCAST_MAC, sha, ETHERTYPE_ARP);
    write_arp(out, ARP_OP_REQUEST, sha, spa, [0; 6], tpa);
}

/// Append a unicast reply "`spa` is at `sha`" to (`tha`, `tpa`), the
/// requester.
pub fn arp_reply(out: &mut Vec<u8>, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) {
    write_eth(out, tha, sha, ETHERTYPE_ARP);
    write_arp(out, ARP_OP_REPLY, sha, spa, tha, tpa);
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{ArpOperation, NetSlice, SlicedPacket};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    #[test]
    fn request_bytes() {
        let mut f = Vec::new();
        arp_request(&mut f, A, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let expected: Vec<u8> = [
            &BROADCAST_MAC[..],
            &A,
            &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1],
            &A,
            &[10, 0, 0, 1],
            &[0; 6],
            &[10, 0, 0, 2],
        ]
        .concat();
        assert_eq!(f, expected);
        assert_eq!(f.len(), ARP_FRAME_SIZE);
    }

    #[test]
    fn reply_parses_with_etherparse() {
        let mut f = Vec::new();
        arp_reply(&mut f, B, Ipv4Addr::new(10, 0, 0, 2), A, Ipv4Addr::new(10, 0, 0, 1));
        let s = SlicedPacket::from_ethernet(&f).expect("parse");
        let Some(NetSlice::Arp(arp)) = s.net else { panic!("not arp: {:?}", s.net) };
        assert_eq!(arp.operation(), ArpOperation::REPLY);
        assert_eq!(arp.sender_hw_addr(), &B);
        assert_eq!(arp.sender_protocol_addr(), &[10, 0, 0, 2]);
        assert_eq!(arp.target_hw_addr(), &A);
        assert_eq!(arp.target_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(&f[0..6], &A, "unicast to the requester");
        assert_eq!(&f[6..12], &B);
    }
}
