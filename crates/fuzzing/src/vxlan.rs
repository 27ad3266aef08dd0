//! `vxlan`: VXLAN datagrams as the receiving agent sees them.
//!
//! ```text
//!  byte 0 even: [mode] [VXLAN header (8) | inner frame]          tunnel receive
//!  byte 0 odd:  [mode] [seg (2, BE)] [datagram | datagram | ...]  UDP GRO message
//!               mode bit 1: the datagrams' checksums are partial
//! ```
//!
//! Every input's leading 8 bytes also go through the header decoders.
//! What must hold:
//!
//! * `wire::VxlanRepr`: decode → encode → decode is the same `Repr`, the
//!   encoding keeps the VNI and sets only I (and O with metadata).
//! * `datapath::vxlan::decode` agrees with `wire`, and its `encode` of the
//!   decoded virtio header decodes back to it (what crosses the tunnel is
//!   what the sender's VM handed over), except a bare "checksum verified",
//!   which is not carried without other offload work.
//! * Tunnel receive (`DummyDatapath::inject_tunnel`, the real pipeline): a
//!   datagram for a bound VNI reaches that port as exactly its inner frame
//!   with the decoded virtio header, or nothing reaches it; a plain frame
//!   may only have a kernel VTEP's partial checksum completed, or carry the
//!   GSO header of the one big packet it is (`datapath::offload`).
//! * `datapath::pipeline::coalesce_udp`: a merge is one valid IPv4/UDP
//!   frame carrying every datagram's payload in order; a refusal leaves the
//!   buffer untouched.

use std::sync::{Mutex, OnceLock};

use midonet_datapath::dummy::DummyDatapath;
use midonet_datapath::pipeline::coalesce_udp;
use midonet_datapath::sys::VnetHdr;
use midonet_datapath::{Datapath, PortNo};
use midonet_wire::checksum::checksum;
use midonet_wire::vxlan::{VxlanHeader, VxlanRepr, VXLAN_HEADER_SIZE};

use crate::check::be16;

/// The VNI the tunnel-receive datapath has bound to a port.
pub const BOUND_VNI: u32 = 0x42;

pub fn vxlan(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    header(rest);
    if mode & 1 == 0 {
        tunnel_receive(rest);
    } else if let Some(seg) = be16(rest, 0) {
        gro(&rest[2..], usize::from(seg), mode & 2 != 0);
    }
}

fn header(b: &[u8]) {
    let Ok((repr, inner)) = VxlanRepr::parse_bytes(b) else {
        assert!(midonet_datapath::vxlan::decode(b).is_err(), "datapath accepts what wire rejects");
        return;
    };
    assert_eq!(inner.len(), b.len() - VXLAN_HEADER_SIZE);
    let (view, _) = VxlanHeader::ref_from_prefix(b).expect("parsed, so viewable");
    assert!(view.vni_valid());
    assert_eq!(view.vni(), repr.vni);
    let bytes = repr.to_bytes().expect("a decoded header encodes");
    assert_eq!(VxlanRepr::parse_bytes(&bytes).map(|x| x.0), Ok(repr), "decode → encode → decode");
    assert_eq!(bytes[4..7], b[4..7], "vni bytes kept");
    assert_eq!(bytes[0] & !0x09, 0, "only I and O set on send");
    if repr.offload.is_none() {
        assert_eq!(bytes, [0x08, 0, 0, 0, b[4], b[5], b[6], 0], "plain RFC 7348 header");
    }

    let (vni, vnet) = midonet_datapath::vxlan::decode(b).expect("wire accepted it");
    assert_eq!(vni, repr.vni);
    let again = midonet_datapath::vxlan::encode(vni, &vnet).expect("a decoded virtio header fits");
    // The sender carries metadata only for frames with offload work: a
    // bare "checksum verified" is dropped (a plain RFC 7348 header goes
    // out) and the receiving VM verifies the checksum itself.
    let sent = if vnet.is_offloaded() { vnet } else { VnetHdr::default() };
    assert_eq!(midonet_datapath::vxlan::decode(&again), Ok((vni, sent)), "vnet round trip");
}

struct Receiver {
    dp: DummyDatapath,
    port: PortNo,
}

fn receiver() -> &'static Mutex<Receiver> {
    static R: OnceLock<Mutex<Receiver>> = OnceLock::new();
    R.get_or_init(|| {
        let dp = DummyDatapath::new(None);
        let port = dp.add_vport("vm").expect("dummy vport");
        dp.bind_tunnel_key(BOUND_VNI, port).expect("bind");
        Mutex::new(Receiver { dp, port })
    })
}

fn tunnel_receive(datagram: &[u8]) {
    // One datapath for the process: building one per input would dominate
    // the run time. A poisoned lock means an earlier input already failed.
    let r = receiver().lock().unwrap_or_else(|e| e.into_inner());
    r.dp.inject_tunnel(datagram);
    let out = r.dp.take_output(r.port);
    let decoded = midonet_datapath::vxlan::decode(datagram);
    let inner = datagram.get(VXLAN_HEADER_SIZE..).unwrap_or(&[]);
    match decoded {
        Ok((vni, vnet)) if vni == BOUND_VNI && inner.len() >= 14 => {
            assert_eq!(out.len(), 1, "one frame to the bound port");
            let plain_gso = midonet_datapath::offload::inner_gso(inner, None);
            if vnet.is_offloaded() || plain_gso.is_some() {
                assert_eq!(out[0].frame, inner, "the inner frame as sent");
                assert_eq!(out[0].vnet, plain_gso.unwrap_or(vnet), "the sender's offload state");
            } else {
                // A plain frame as sent, but for a kernel VTEP's partial
                // checksum, completed: two adjacent bytes at most differ,
                // and what arrives has nothing left to complete.
                assert_eq!(out[0].vnet, vnet, "the sender's offload state");
                let diff: Vec<usize> =
                    (0..inner.len()).filter(|&i| out[0].frame[i] != inner[i]).collect();
                assert_eq!(out[0].frame.len(), inner.len(), "the inner frame's length");
                assert!(
                    diff.len() <= 2 && diff.windows(2).all(|w| w[1] == w[0] + 1),
                    "only a checksum field changes: {diff:?}"
                );
                let mut again = out[0].frame.clone();
                assert!(
                    diff.is_empty() || !midonet_datapath::offload::complete_unfinished(&mut again),
                    "a completed checksum is complete"
                );
            }
        }
        _ => assert!(out.is_empty(), "nothing for the bound port: {out:?}"),
    }
    // Unbound VNIs go through the flow table with no upcall handler: they
    // must not come out anywhere either.
    assert!(r.dp.take_tunnel().is_empty(), "nothing sent back into the tunnel");
}

const LEAD: usize = VXLAN_HEADER_SIZE;
const L4: usize = 14 + 20;
const HDRS: usize = L4 + 8;

fn gro(buf: &[u8], seg: usize, partial: bool) {
    if seg == 0 {
        return;
    }
    let mut merged = buf.to_vec();
    let Some((len, vnet)) = coalesce_udp(&mut merged, seg, LEAD, partial) else {
        assert_eq!(merged, buf, "a refused merge leaves the message untouched");
        return;
    };
    let n = buf.len().div_ceil(seg);
    assert!(n >= 2, "a merge needs two datagrams");
    let first_payload = seg - LEAD - HDRS;
    let payload: Vec<u8> = buf.chunks(seg).flat_map(|d| d[LEAD + HDRS..].iter().copied()).collect();
    let f = &merged[LEAD..LEAD + len];
    assert_eq!(len, HDRS + payload.len(), "every payload byte kept");
    assert_eq!(&f[HDRS..], &payload[..], "payloads in order");
    assert_eq!(f[..14], buf[LEAD..LEAD + 14], "ethernet header of the first datagram");
    assert_eq!(checksum(&f[14..L4]), 0, "merged ipv4 header checksum");
    assert_eq!(be16(f, 16).map(usize::from), Some(len - 14), "ipv4 total length");
    assert_eq!(be16(f, 38).map(usize::from), Some(len - L4), "udp length");
    assert_eq!(f[26..38], buf[LEAD + 26..LEAD + 38], "addresses and ports of the first");
    let key = midonet_flow::FlowKey::extract(f, midonet_flow::InPort::Port(1))
        .expect("the merged frame keys");
    assert_eq!((key.ip_proto, key.ip_frag), (17, midonet_flow::FragType::No));
    assert_eq!(vnet.gso_type, VnetHdr::GSO_UDP_L4);
    assert_eq!(usize::from(vnet.gso_size), first_payload, "segments as they came");
    assert_eq!((vnet.csum_start, vnet.csum_offset), (L4 as u16, 6));
}
