//! `icmp_error`: ICMP errors and the headers embedded in them, wherever
//! the code reads or writes one.
//!
//! ```text
//!  [mode (1)] [bytes]
//!   mode & 3 = 0  build:    bytes = an offending IPv4 datagram; wire::icmpv4_error (kind = mode >> 2),
//!                           wire::may_send_icmp_error, wire::icmpv4_echo_reply
//!   mode & 3 = 1  receive:  bytes = what an ICMP error from the uplink quotes (type from mode >> 2),
//!                           simulated through chain "in", which drops errors quoting 203.0.113.0/24
//!   mode & 3 = 2  generate: bytes = an IPv4 datagram entering the router's uplink; the errors
//!                           the simulation generates about it
//!   mode & 3 = 3  as 2, warm state
//! ```
//!
//! What must hold:
//!
//! * a built error keys as ICMP of its type and code, goes back to the
//!   original's source, checksums, and quotes exactly the original's header
//!   plus 8 bytes (RFC 792); an error is never sent about an error;
//! * the embedded addresses the simulation matches rules on are the ones an
//!   independent reading of the quote finds (drop iff the quoted source is
//!   in 203.0.113.0/24), and such a decision is never cached as a megaflow;
//! * a generated error keys, checksums, goes to the packet's source, is one
//!   RFC 1812 allows, and quotes a header that checksums and names the
//!   packet's addresses.

use std::net::Ipv4Addr;

use midonet_sim::{Decision, DropReason, FlowKey, GenKind, InPort, MacAddr};
use midonet_wire::checksum::checksum;
use midonet_wire::{icmpv4_echo_reply, icmpv4_error, may_send_icmp_error, IcmpError};

use crate::check::{assert_checksums, ipv4_of, simulate};
use crate::fixture::{fixture, ICMP_DATA_DROP_NET, RTR_UP_MAC};

const KINDS: [IcmpError; 6] = [
    IcmpError::NetUnreachable,
    IcmpError::HostUnreachable,
    IcmpError::PortUnreachable,
    IcmpError::FragNeeded { next_hop_mtu: 1400 },
    IcmpError::AdminProhibited,
    IcmpError::TtlExceeded,
];

/// ICMP types that carry an embedded datagram (RFC 792).
const ERROR_TYPES: [u8; 5] = [3, 11, 12, 4, 5];

const GW_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);

pub fn icmp_error(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else { return };
    match mode & 3 {
        0 => build(KINDS[usize::from(mode >> 2) % KINDS.len()], bytes),
        1 => receive(mode >> 2, bytes),
        _ => generate(mode & 1 != 0, bytes),
    }
}

fn eth(dst: MacAddr, src: MacAddr, rest: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + rest.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(rest);
    f
}

fn build(kind: IcmpError, original: &[u8]) {
    let _ = may_send_icmp_error(original);
    let mut out = Vec::new();
    let router = Ipv4Addr::new(10, 0, 0, 1);
    if icmpv4_error(&mut out, kind, [2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 0, 1], router, original)
        .is_ok()
    {
        let k = FlowKey::extract(&out, InPort::Port(0)).expect("a built error keys");
        assert_eq!((k.icmp_type, k.icmp_code), kind.type_code(), "type and code");
        assert_eq!(k.ipv4_src, router);
        assert_eq!(
            k.ipv4_dst,
            Ipv4Addr::new(original[12], original[13], original[14], original[15])
        );
        assert_checksums(&out);
        let ihl = usize::from(original[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([original[2], original[3]]));
        assert_eq!(&out[42..], &original[..(ihl + 8).min(total)], "header + 8 bytes quoted");
        assert!(!may_send_icmp_error(&out[14..]), "no error about an error");
        let mut again = Vec::new();
        let _ = icmpv4_error(&mut again, kind, [2; 6], [4; 6], router, &out[14..]);
    }
    let frame = eth(MacAddr([2, 0, 0, 0, 1, 1]), MacAddr([2, 0, 0, 0, 0, 1]), original);
    out.clear();
    if icmpv4_echo_reply(&frame, &mut out).is_ok() {
        let req = FlowKey::extract(&frame, InPort::Port(0)).expect("an answered request keys");
        let k = FlowKey::extract(&out, InPort::Port(0)).expect("an echo reply keys");
        assert_eq!((k.icmp_type, k.icmp_id), (0, req.icmp_id), "echo reply, same id");
        assert_eq!((k.ipv4_src, k.ipv4_dst), (req.ipv4_dst, req.ipv4_src), "addresses swapped");
        assert_checksums(&out);
    }
}

/// The source address quoted by an ICMP error of type `icmp_type` whose
/// body after the 8-byte ICMP header is `quote`, read independently.
fn quoted_src(icmp_type: u8, quote: &[u8]) -> Option<Ipv4Addr> {
    if !ERROR_TYPES.contains(&icmp_type) || quote.len() < 20 || quote[0] >> 4 != 4 {
        return None;
    }
    Some(Ipv4Addr::new(quote[12], quote[13], quote[14], quote[15]))
}

fn receive(sel: u8, quote: &[u8]) {
    let icmp_type = [3, 11, 12, 4, 5, 0, 8][usize::from(sel) % 7];
    let key = FlowKey {
        in_port: InPort::Port(3),
        eth_src: GW_MAC,
        eth_dst: RTR_UP_MAC,
        ethertype: 0x0800,
        ipv4_src: Ipv4Addr::new(192, 0, 2, 1),
        ipv4_dst: Ipv4Addr::new(10, 0, 0, 11),
        ip_proto: 1,
        ip_ttl: 64,
        icmp_type,
        icmp_code: sel >> 3,
        ..FlowKey::default()
    };
    let mut frame = Vec::new();
    key.to_frame(quote, &mut frame);
    let f = fixture();
    let up = f.ingress.iter().position(|p| *p == f.uplink).expect("uplink is an ingress");
    let up = u8::try_from(up).expect("few ports");
    let (_, r) = simulate(up, true, &frame).expect("a built icmp frame keys");
    let (net, len) = ICMP_DATA_DROP_NET;
    let mask = u32::MAX << (32 - u32::from(len));
    let drop = quoted_src(icmp_type, quote).is_some_and(|s| u32::from(s) & mask == u32::from(net));
    let dropped = matches!(r.decision, Decision::Drop { reason: DropReason::RuleDrop, .. });
    assert_eq!(dropped, drop, "rule on the quoted source: {:?} {quote:02x?}", r.decision);
    assert!(r.uncacheable, "a decision on embedded addresses is not a megaflow");
}

fn generate(warm: bool, datagram: &[u8]) {
    let frame = eth(RTR_UP_MAC, GW_MAC, datagram);
    let f = fixture();
    let up = f.ingress.iter().position(|p| *p == f.uplink).expect("uplink is an ingress");
    let Some((key, r)) = simulate(u8::try_from(up).expect("few ports"), warm, &frame) else {
        return;
    };
    for g in &r.generated {
        let GenKind::IcmpError { icmp_type, code } = g.kind else { continue };
        let k = FlowKey::extract(&g.frame, InPort::Port(0)).expect("a generated error keys");
        assert_eq!((k.ip_proto, k.icmp_type, k.icmp_code), (1, icmp_type, code));
        assert_eq!((k.eth_dst, k.ipv4_dst), (key.eth_src, key.ipv4_src), "back to the sender");
        assert_checksums(&g.frame);
        let (ip, _) = ipv4_of(&frame);
        assert!(may_send_icmp_error(ip), "RFC 1812 allows this error: {datagram:02x?}");
        let (out, ihl) = ipv4_of(&g.frame);
        let quote = &out[ihl + 8..];
        assert!(quote.len() >= 20, "a header is quoted");
        let qihl = usize::from(quote[0] & 0x0f) * 4;
        assert!(quote[0] >> 4 == 4 && qihl >= 20 && quote.len() <= qihl + 8, "header + 8");
        assert_eq!(checksum(&quote[..qihl]), 0, "the quoted header checksums");
        let at = |o: usize| Ipv4Addr::new(quote[o], quote[o + 1], quote[o + 2], quote[o + 3]);
        assert_eq!((at(12), at(16)), (key.ipv4_src, key.ipv4_dst), "the packet's addresses");
    }
}
