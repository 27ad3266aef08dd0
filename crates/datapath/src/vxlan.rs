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
//! datagrams interoperate with kernel VTEPs as long as they are not GSO.

use crate::sys::VnetHdr;

pub const VXLAN_HDR_LEN: usize = 8;
/// IANA port (RFC 7348 §5).
pub const VXLAN_PORT: u16 = 4789;

const FLAG_I: u8 = 0x08;
const FLAG_O: u8 = 0x01;

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

/// Offload metadata that does not fit the header (checksum starting past
/// byte 255, or a checksum offset we have no code for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offload metadata does not fit the vxlan header")]
pub struct OffloadUnsupported;

/// Encode a header for `vni` carrying `vnet`.
pub fn encode(vni: u32, vnet: &VnetHdr) -> Result<[u8; VXLAN_HDR_LEN], OffloadUnsupported> {
    let v = (vni & 0x00ff_ffff).to_be_bytes();
    let mut h = [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0];
    if vnet.is_offloaded() {
        let code = match vnet.csum_offset {
            _ if vnet.flags & VnetHdr::F_NEEDS_CSUM == 0 => 0,
            16 => 0,
            6 => 1,
            _ => return Err(OffloadUnsupported),
        };
        let start = u8::try_from(vnet.csum_start).map_err(|_| OffloadUnsupported)?;
        let gso = vnet.gso_type & 0x07;
        if gso != vnet.gso_type & 0x7f {
            return Err(OffloadUnsupported);
        }
        h[0] |= FLAG_O;
        h[1] = (vnet.flags & 0x03) | (code << 2) | (gso << 4) | (vnet.gso_type & VnetHdr::GSO_ECN);
        h[2..4].copy_from_slice(&vnet.gso_size.to_be_bytes());
        h[7] = start;
    }
    Ok(h)
}

/// Decode a header: the VNI and the virtio-net header to deliver with.
pub fn decode(b: &[u8]) -> Result<(u32, VnetHdr), VxlanError> {
    let h = b.get(..VXLAN_HDR_LEN).ok_or(VxlanError::Truncated)?;
    if h[0] & FLAG_I == 0 {
        return Err(VxlanError::NoVni);
    }
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    let mut vnet = VnetHdr::default();
    if h[0] & FLAG_O != 0 {
        vnet.flags = h[1] & 0x03;
        vnet.csum_offset = match (h[1] >> 2) & 0x03 {
            0 => 16,
            1 => 6,
            _ => return Err(VxlanError::BadOffload),
        };
        if vnet.flags & VnetHdr::F_NEEDS_CSUM == 0 {
            vnet.csum_offset = 0;
        } else {
            vnet.csum_start = u16::from(h[7]);
        }
        vnet.gso_type = ((h[1] >> 4) & 0x07) | (h[1] & VnetHdr::GSO_ECN);
        vnet.gso_size = u16::from_be_bytes([h[2], h[3]]);
    }
    Ok((vni, vnet))
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
        let u = VnetHdr { flags: 1, gso_type: 0, hdr_len: 0, gso_size: 0, csum_start: 38, csum_offset: 6 };
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
