//! VXLAN header (RFC 7348 §5) with offload metadata in the reserved bits.
//!
//! ```text
//!   0                   1                   2                   3
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |R|R|R|R|I|R|R|O|  offload flags  |        gso_size (BE)          |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |                VNI (24)                       |  csum_start   |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Between our own agents the inner frame may be a 64 KB GSO frame whose L4
//! checksum is still partial, exactly as the sending VM handed it to its
//! veth. The receiving agent must hand it to the destination VM with the
//! same virtio-net header, so the header travels in the bits RFC 7348
//! reserves (transmitted as zero, ignored on receipt by any other VTEP):
//! `O` (0x01 in the flags byte) says the metadata is present; the second
//! byte holds the virtio-net flags (bits 0-1), the checksum-offset code
//! (bits 2-3: 0 → 16 for TCP, 1 → 6 for UDP) and the GSO type (bits 4-6, and
//! bit 7 for ECN); then the GSO segment size; the last byte holds the offset
//! of the L4 header from the inner frame start (where the checksum starts).
//!
//! A frame without offload work gets a plain RFC 7348 header, so our
//! datagrams interoperate with kernel VTEPs as long as they are not GSO
//! (to a peer that [`crate::TunnelOffload`] does not name, always:
//! [`crate::offload`] finishes them).

use midonet_wire::vxlan::{CsumOffset, CsumPartial, Gso, OffloadMeta, VxlanRepr};

use crate::sys::VnetHdr;

/// The header layout (and the private offload extension) is specified once,
/// in `midonet_wire::vxlan`; this module only maps it to and from the
/// kernel's virtio-net header that the VM sockets speak.
pub const VXLAN_HDR_LEN: usize = midonet_wire::vxlan::VXLAN_HEADER_SIZE;
/// IANA port (RFC 7348 §5).
pub const VXLAN_PORT: u16 = midonet_wire::vxlan::VXLAN_UDP_PORT;

/// Why a VXLAN header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    #[error("datagram shorter than the vxlan header")]
    Truncated,
    #[error("vni flag not set")]
    NoVni,
    #[error("unknown offload metadata")]
    BadOffload,
}

impl From<midonet_wire::vxlan::VxlanError> for VxlanError {
    fn from(e: midonet_wire::vxlan::VxlanError) -> Self {
        use midonet_wire::vxlan::VxlanError as W;
        match e {
            W::Truncated => VxlanError::Truncated,
            W::NoVni => VxlanError::NoVni,
            W::VniTooLarge | W::BadOffload | W::OffloadUnsupported => VxlanError::BadOffload,
        }
    }
}

/// Offload metadata that does not fit the header (checksum starting past
/// byte 255, or a checksum offset we have no code for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offload metadata does not fit the vxlan header")]
pub struct OffloadUnsupported;

/// Encode a header for `vni` carrying `vnet`.
pub fn encode(vni: u32, vnet: &VnetHdr) -> Result<[u8; VXLAN_HDR_LEN], OffloadUnsupported> {
    let offload = if vnet.is_offloaded() {
        let csum_partial = if vnet.flags & VnetHdr::F_NEEDS_CSUM != 0 {
            let offset = match vnet.csum_offset {
                16 => CsumOffset::Tcp,
                6 => CsumOffset::Udp,
                _ => return Err(OffloadUnsupported),
            };
            let start = u8::try_from(vnet.csum_start).map_err(|_| OffloadUnsupported)?;
            Some(CsumPartial { start, offset })
        } else {
            None
        };
        let kind = vnet.gso_type & 0x07;
        if kind != vnet.gso_type & 0x7f {
            return Err(OffloadUnsupported);
        }
        Some(OffloadMeta {
            csum_partial,
            csum_valid: vnet.flags & VnetHdr::F_DATA_VALID != 0,
            gso: (kind != VnetHdr::GSO_NONE).then_some(Gso {
                kind,
                ecn: vnet.gso_type & VnetHdr::GSO_ECN != 0,
                size: vnet.gso_size,
            }),
        })
    } else {
        None
    };
    VxlanRepr { vni: vni & midonet_wire::vxlan::VNI_MAX, offload }
        .to_bytes()
        .map_err(|_| OffloadUnsupported)
}

/// Decode a header: the VNI and the virtio-net header to deliver with.
pub fn decode(b: &[u8]) -> Result<(u32, VnetHdr), VxlanError> {
    let (repr, _) = VxlanRepr::parse_bytes(b)?;
    let mut vnet = VnetHdr::default();
    if let Some(o) = repr.offload {
        if let Some(c) = o.csum_partial {
            vnet.flags |= VnetHdr::F_NEEDS_CSUM;
            vnet.csum_start = u16::from(c.start);
            vnet.csum_offset = c.offset.bytes();
        }
        if o.csum_valid {
            vnet.flags |= VnetHdr::F_DATA_VALID;
        }
        if let Some(g) = o.gso {
            vnet.gso_type = g.kind | if g.ecn { VnetHdr::GSO_ECN } else { 0 };
            vnet.gso_size = g.size;
        }
    }
    Ok((repr.vni, vnet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header_is_rfc7348() {
        let h = encode(0x123456, &VnetHdr::default()).expect("encode");
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(decode(&h), Ok((0x123456, VnetHdr::default())));
    }

    #[test]
    fn gso_metadata_round_trip() {
        let v = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 0,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
        };
        let h = encode(42, &v).expect("encode");
        assert_eq!(h[0], 0x09);
        assert_eq!(decode(&h), Ok((42, v)));
        let u = VnetHdr {
            flags: 1,
            gso_type: 0,
            hdr_len: 0,
            gso_size: 0,
            csum_start: 38,
            csum_offset: 6,
        };
        assert_eq!(decode(&encode(7, &u).expect("encode")), Ok((7, u)));
    }

    #[test]
    fn rejects_what_does_not_fit_and_bad_input() {
        let v = VnetHdr { flags: 1, csum_start: 300, csum_offset: 16, ..VnetHdr::default() };
        assert_eq!(encode(1, &v), Err(OffloadUnsupported));
        assert_eq!(decode(&[0x08, 0, 0]), Err(VxlanError::Truncated));
        assert_eq!(decode(&[0, 0, 0, 0, 0, 0, 1, 0]), Err(VxlanError::NoVni));
        assert_eq!(decode(&[0x09, 0x0d, 0, 0, 0, 0, 1, 0]), Err(VxlanError::BadOffload));
    }
}
