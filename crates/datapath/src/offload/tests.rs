use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

use super::*;

const MSS: u16 = 1448;

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// A TCP frame as a VM hands it over: headers for the whole payload, the
/// checksum field holding the pseudo-header's sum (CHECKSUM_PARTIAL).
fn tcp_gso(v6: bool, data: &[u8], flags: u8) -> (Vec<u8>, VnetHdr) {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let b = if v6 {
        b.ipv6([0xfd; 16], [0xfe; 16], 64)
    } else {
        b.ipv4([10, 1, 0, 1], [10, 1, 0, 2], 64)
    };
    let b = b.tcp(40000, 80, 0xffff_f000, 512).ack(7);
    let mut f = Vec::new();
    b.write(&mut f, data).expect("build");
    let l4 = if v6 { 14 + 40 } else { 14 + 20 };
    f[l4 + 13] |= flags;
    // The partial form: the pseudo-header's folded sum, not inverted.
    let len = (f.len() - l4) as u32;
    let pseudo = if v6 {
        checksum::pseudo_header_v6([0xfd; 16].into(), [0xfe; 16].into(), 6, len)
    } else {
        checksum::pseudo_header_v4([10, 1, 0, 1].into(), [10, 1, 0, 2].into(), 6, len as u16)
    };
    f[l4 + 16..l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    let vnet = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: if v6 { VnetHdr::GSO_TCPV6 } else { VnetHdr::GSO_TCPV4 },
        hdr_len: (l4 + 20) as u16,
        gso_size: MSS,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    (f, vnet)
}

/// An untagged IPv4 UDP frame with `n` bytes of payload, checksum filled.
fn udp4(n: usize) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 1, 0, 1], [10, 1, 0, 2], 64)
        .udp(5000, 6000)
        .write(&mut f, &payload(n))
        .expect("build");
    f
}

fn split<'a>(out: &'a [u8], ends: &[usize]) -> Vec<&'a [u8]> {
    let mut at = 0;
    ends.iter()
        .map(|&e| {
            let f = &out[at..e];
            at = e;
            f
        })
        .collect()
}

/// Each segment parses, carries correct IP and TCP checksums, and the
/// segments' payloads in sequence order are the original payload.
fn check_tcp_segments(v6: bool) {
    let data = payload(5000);
    let (f, vnet) = tcp_gso(v6, &data, 0x01 | 0x08 | 0x80); // FIN, PSH, CWR
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    resolve(&f, &vnet, &mut out, &mut ends).expect("resolves");
    let segs = split(&out, &ends);
    assert_eq!(segs.len(), 4, "5000 bytes at {MSS} per segment");
    let mut got = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let p = SlicedPacket::from_ethernet(s).expect("a segment parses");
        let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("tcp") };
        let want = match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "ipv4 header checksum");
                assert_eq!(h.identification, 0u16.wrapping_add(i as u16), "ids step by one");
                t.to_header().calc_checksum_ipv4(&h, t.payload()).expect("csum")
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(usize::from(h.payload_length), s.len() - 14 - 40);
                t.to_header().calc_checksum_ipv6(&h, t.payload()).expect("csum")
            }
            _ => panic!("ip"),
        };
        assert_eq!(t.checksum(), want, "tcp checksum of segment {i}");
        assert_eq!(t.sequence_number(), 0xffff_f000u32.wrapping_add(i as u32 * u32::from(MSS)));
        let last = i == segs.len() - 1;
        assert_eq!(t.fin(), last, "FIN only on the last");
        assert_eq!(t.psh(), last, "PSH only on the last");
        assert_eq!(t.cwr(), i == 0, "CWR only on the first");
        assert!(t.ack());
        got.extend_from_slice(t.payload());
    }
    assert_eq!(got, data);
}

#[test]
fn tcp_v4_gso_frames_become_checksummed_segments() {
    check_tcp_segments(false);
}

#[test]
fn tcp_v6_gso_frames_become_checksummed_segments() {
    check_tcp_segments(true);
}

#[test]
fn a_partial_checksum_alone_is_completed_in_one_frame() {
    let data = payload(300);
    let (f, mut vnet) = tcp_gso(false, &data, 0x08);
    vnet.gso_type = VnetHdr::GSO_NONE;
    vnet.gso_size = 0;
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    resolve(&f, &vnet, &mut out, &mut ends).expect("resolves");
    assert_eq!(ends, vec![f.len()]);
    let p = SlicedPacket::from_ethernet(&out).expect("parses");
    let (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) =
        (&p.net, &p.transport)
    else {
        panic!("tcp/ipv4")
    };
    let want = t.to_header().calc_checksum_ipv4(&ip.header().to_header(), t.payload()).unwrap();
    assert_eq!(t.checksum(), want);
    assert_eq!(&out[..14 + 20 + 16], &f[..14 + 20 + 16], "nothing else changed");
}

#[test]
fn udp_l4_gso_becomes_datagrams_with_their_own_lengths_and_checksums() {
    let data = payload(3000);
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(7.try_into().unwrap())
        .ipv4([10, 1, 0, 1], [10, 1, 0, 2], 64)
        .udp(5000, 6000)
        .write(&mut f, &data)
        .expect("build");
    let vnet = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_UDP_L4,
        hdr_len: 18 + 20 + 8,
        gso_size: 1200,
        csum_start: 18 + 20,
        csum_offset: 6,
    };
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    resolve(&f, &vnet, &mut out, &mut ends).expect("resolves");
    let segs = split(&out, &ends);
    assert_eq!(segs.len(), 3);
    let mut got = Vec::new();
    for s in segs {
        let p = SlicedPacket::from_ethernet(s).expect("parses behind its VLAN tag");
        let (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) =
            (&p.net, &p.transport)
        else {
            panic!("udp/ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(usize::from(u.length()), 8 + u.payload().len());
        let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
        assert_eq!(u.checksum(), want);
        got.extend_from_slice(u.payload());
    }
    assert_eq!(got, data);
}

#[test]
fn what_does_not_add_up_is_refused_and_leaves_nothing_behind() {
    let (f, vnet) = tcp_gso(false, &payload(3000), 0);
    let mut out = vec![0xaa; 5];
    let mut ends = vec![5];
    let bad = [
        VnetHdr { gso_size: 0, ..vnet },
        VnetHdr { gso_type: VnetHdr::GSO_UDP_L4, ..vnet },
        VnetHdr { gso_type: 9, ..vnet },
        VnetHdr { gso_type: VnetHdr::GSO_NONE, csum_start: 3, ..vnet },
        VnetHdr { gso_type: VnetHdr::GSO_NONE, csum_start: u16::MAX, ..vnet },
    ];
    for v in bad {
        assert_eq!(resolve(&f, &v, &mut out, &mut ends), Err(OffloadError::Malformed), "{v:?}");
    }
    let ufo = VnetHdr { gso_type: VnetHdr::GSO_UDP, ..vnet };
    assert_eq!(resolve(&f, &ufo, &mut out, &mut ends), Err(OffloadError::Unsupported));
    for cut in [0, 13, 14, 30, 14 + 20 + 12] {
        assert!(resolve(&f[..cut], &vnet, &mut out, &mut ends).is_err(), "cut at {cut}");
    }
    assert_eq!((out, ends), (vec![0xaa; 5], vec![5]));
}

/// Whatever the guest and its header claim, `resolve` answers without
/// panicking (fixed pseudo-random mutations; the fuzz target does more).
#[test]
fn mutated_frames_and_headers_never_panic() {
    let (f, vnet) = tcp_gso(false, &payload(2000), 0x08);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    for _ in 0..20_000 {
        let mut g = f.clone();
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % g.len();
            g[i] = next() as u8;
        }
        g.truncate((next() as usize) % (f.len() + 1));
        let r = next();
        let v = VnetHdr {
            flags: r as u8 & 3,
            gso_type: [0, 1, 3, 4, 5, 0x81, 7][(r >> 8) as usize % 7],
            hdr_len: (r >> 16) as u16,
            gso_size: [0, 1, 7, 1448, u16::MAX][(r >> 32) as usize % 5],
            csum_start: [vnet.csum_start, (r >> 40) as u16 % 80][(r >> 56) as usize % 2],
            csum_offset: [16, 6, (r >> 48) as u16][(r >> 60) as usize % 3],
        };
        out.clear();
        ends.clear();
        let _ = resolve(&g, &v, &mut out, &mut ends);
    }
}

/// A kernel VTEP's frame with its checksum left partial is completed; a
/// correct one, a UDP one without checksum and a corrupt one are left alone.
#[test]
fn a_partial_checksum_from_a_kernel_vtep_is_completed_and_nothing_else_is() {
    for v6 in [false, true] {
        let (f, vnet) = tcp_gso(v6, &payload(700), 0x18);
        let mut partial = f.clone();
        assert!(complete_unfinished(&mut partial), "partial form recognised (v6 {v6})");
        let (mut want, mut ends) = (Vec::new(), Vec::new());
        let plain = VnetHdr { gso_type: VnetHdr::GSO_NONE, gso_size: 0, ..vnet };
        resolve(&f, &plain, &mut want, &mut ends).expect("complete");
        assert_eq!(partial, want, "completed as resolve() completes it");
        let mut done = want.clone();
        assert!(!complete_unfinished(&mut done), "a correct checksum stays");
        assert_eq!(done, want);
        let mut corrupt = want.clone();
        let n = corrupt.len();
        corrupt[n - 1] ^= 0x40;
        let before = corrupt.clone();
        assert!(!complete_unfinished(&mut corrupt), "a corrupt frame is not 'fixed'");
        assert_eq!(corrupt, before);
    }
    let mut f = udp4(40);
    f[14 + 20 + 6..14 + 20 + 8].fill(0);
    let before = f.clone();
    assert!(!complete_unfinished(&mut f), "IPv4 UDP without a checksum");
    assert_eq!(f, before);
    for cut in 0..before.len() {
        let mut g = before[..cut].to_vec();
        let _ = complete_unfinished(&mut g);
    }
}

/// A kernel VTEP's whole TSO frame is recognised as one GSO frame with the
/// reported MSS; a single segment, a frame whose IP length disagrees, and
/// a GRO run of separate datagrams are not.
#[test]
fn a_whole_tso_frame_in_one_datagram_is_told_from_a_run_of_datagrams() {
    for v6 in [false, true] {
        let (f, vnet) = tcp_gso(v6, &payload(9000), 0x10);
        let got = inner_gso(&f, Some(usize::from(MSS))).expect("one GSO frame");
        assert_eq!(
            (got.gso_type, got.gso_size, got.csum_start, got.csum_offset, got.flags),
            (vnet.gso_type, MSS, vnet.csum_start, 16, VnetHdr::F_NEEDS_CSUM)
        );
        assert_eq!(usize::from(got.hdr_len), usize::from(vnet.csum_start) + 20);
        // Resolving it with that header gives the segments back.
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        resolve(&f, &got, &mut out, &mut ends).expect("segments");
        assert_eq!(ends.len(), 9000_usize.div_ceil(usize::from(MSS)));
    }
    let (one, _) = tcp_gso(false, &payload(1000), 0x10);
    assert_eq!(inner_gso(&one, Some(usize::from(MSS))), None, "fits one segment");
    let (f, _) = tcp_gso(false, &payload(9000), 0x10);
    assert_eq!(inner_gso(&f[..f.len() - 1], Some(usize::from(MSS))), None, "IP length disagrees");
    assert_eq!(inner_gso(&f, Some(0)), None);
    // No size given (a TCP TSO frame brings none): what a 1500-byte MTU
    // leaves after the headers (with timestamps, the guest's own 1448 MSS
    // would be smaller; it only guides re-segmentation).
    let guessed = inner_gso(&f, None).expect("longer than one MTU");
    assert_eq!(usize::from(guessed.gso_size), PLAIN_MTU - 20 - 20);
    assert_eq!(inner_gso(&one, None), None, "a packet that fits the MTU is no GSO frame");
    // A big UDP datagram with no size given may be one jumbo datagram.
    let big = udp4(8000);
    assert_eq!(inner_gso(&big, None), None, "a jumbo UDP datagram stays whole");
    assert!(inner_gso(&big, Some(1400)).is_some(), "UDP GSO with its size");
    for cut in 0..60 {
        assert_eq!(inner_gso(&f[..cut], Some(usize::from(MSS))), None);
    }
}
