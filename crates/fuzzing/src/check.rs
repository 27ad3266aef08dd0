//! Checks shared by the targets: checksums of generated frames, reading
//! fields at fixed offsets (an independent reading to compare decoders
//! with), and one simulation call.

use std::time::Duration;

use midonet_sim::{FlowKey, IcmpRateLimiter, InPort, MemState, NoConntrack, SimInput, SimResult};
use midonet_wire::checksum::{checksum, finish, pseudo_header_v4, sum};

use crate::fixture::fixture;

/// Big-endian u16 at `at`, if the bytes are there.
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The IPv4 datagram of an untagged Ethernet frame: (datagram cut to its
/// total length, header length). Panics when the frame is not one: only
/// for frames the code under test generated.
pub fn ipv4_of(frame: &[u8]) -> (&[u8], usize) {
    assert_eq!(be16(frame, 12), Some(0x0800), "generated frame is untagged IPv4: {frame:02x?}");
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2).expect("ip header"));
    assert!(ihl >= 20 && total >= ihl && total <= ip.len(), "ip lengths: {frame:02x?}");
    (&ip[..total], ihl)
}

/// The IPv4 header checksum and the L4 checksum (ICMP, or UDP/TCP over the
/// pseudo-header; a zero UDP checksum means none) of a generated frame.
pub fn assert_checksums(frame: &[u8]) {
    let (ip, ihl) = ipv4_of(frame);
    assert_eq!(checksum(&ip[..ihl]), 0, "ipv4 header checksum: {frame:02x?}");
    let l4 = &ip[ihl..];
    let proto = ip[9];
    let frag = be16(ip, 6).expect("ip header") & 0x3fff;
    if frag != 0 {
        return;
    }
    match proto {
        1 => assert_eq!(checksum(l4), 0, "icmp checksum: {frame:02x?}"),
        6 | 17 => {
            if proto == 17 && be16(l4, 6) == Some(0) {
                return;
            }
            let len = u16::try_from(l4.len()).expect("l4 fits an ipv4 datagram");
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let s = sum(pseudo_header_v4(src, dst, proto, len), l4);
            assert_eq!(finish(s), 0, "l4 checksum (proto {proto}): {frame:02x?}");
        }
        _ => {}
    }
}

/// Simulate `frame` entering at the fixture port chosen by `port`; `warm`
/// picks the state with learned MACs and ARP entries. `None` when the
/// frame does not key.
pub fn simulate(port: u8, warm: bool, frame: &[u8]) -> Option<(FlowKey, SimResult)> {
    let f = fixture();
    let key = FlowKey::extract(frame, InPort::Port(u32::from(port))).ok()?;
    let empty = MemState::default();
    let state = if warm { &f.warm } else { &empty };
    let mut icmp = IcmpRateLimiter::new(1000, 10);
    let input = SimInput {
        ingress: f.port(port),
        key,
        frame,
        now: Duration::from_secs(1),
        hash_seed: 7,
        trace: port & 0x80 != 0,
        generated: false,
        split_reverse_nat: false,
    };
    let r = midonet_sim::simulate(&f.snap, state, &NoConntrack, &mut icmp, &input);
    if input.trace {
        let _ = r.render();
    }
    Some((key, r))
}
