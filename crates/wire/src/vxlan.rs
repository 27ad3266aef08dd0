//! VXLAN header (RFC 7348 §5) and midonet-rs's private offload extension.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|M|R|R|R|R|R|C|G|   gso_size (when M and G)     |  <- RFC: Reserved (24 bits)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            VXLAN Network Identifier (VNI)     |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! RFC 7348: the I flag must be 1 for a valid VNI; reserved bits "MUST be set
//! to zero on transmission and ignored on receipt". A datagram with I = 0 is
//! rejected ([`VxlanError::NoVni`]).
//!
//! # Private offload extension (midonet-rs agents only)
//!
//! So that one large TSO/GSO frame can cross the tunnel as one datagram
//! (instead of being segmented before encapsulation), a sending agent may
//! describe the inner frame's offload state in the first reserved 24 bits:
//!
//! * **M** (byte 1, 0x80): offload metadata present. Without M, C, G and
//!   `gso_size` are ignored, so a stray reserved bit from a foreign sender is
//!   never read as metadata.
//! * **G** (byte 1, 0x01): the inner frame is a GSO super-frame (TCP or UDP);
//!   the receiver segments it (or hands it to a GSO-capable device) with
//!   **gso_size** (bytes 2–3, big-endian) bytes of L4 payload per segment.
//! * **C** (byte 1, 0x02): the inner L4 checksum is "partial": the field
//!   holds the pseudo-header sum only; the receiver completes it. The checksum
//!   start is the inner L4 header and its offset follows from the inner
//!   protocol (TCP 16, UDP 6), so neither needs to travel.
//!
//! Bit choice: Linux already gives meaning to byte 1 bits 0x40 and 0x08
//! (VXLAN-GBP "don't learn" and "policy applied") and 0x20 (remote checksum
//! offload), and byte 0 bits other than I (GBP's G, GPE's version/P/O);
//! bytes 2–3 are GBP's group policy id only when GBP's G flag (byte 0, 0x80)
//! is set, which this extension never sets. M/C/G avoid all of those.
//!
//! Standard peers ignore reserved bits, so the header stays valid VXLAN, but
//! a standard peer cannot segment a super-frame: an agent sends the extension
//! (and frames larger than the path MTU) **only to peers known to be
//! midonet-rs agents**, and always clears it towards VTEPs and other VXLAN
//! endpoints.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// IANA-assigned VXLAN UDP port (RFC 7348 §5).
pub const VXLAN_UDP_PORT: u16 = 4789;
/// Size of the VXLAN header in bytes.
pub const VXLAN_HEADER_SIZE: usize = 8;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

const FLAG_I: u8 = 0x08;
const EXT_M: u8 = 0x80;
const EXT_C: u8 = 0x02;
const EXT_G: u8 = 0x01;

/// Errors decoding or encoding a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum VxlanError {
    /// Fewer than 8 bytes.
    #[error("truncated vxlan header")]
    Truncated,
    /// The I flag is clear: no valid VNI (RFC 7348 §5).
    #[error("vxlan I flag not set")]
    NoVni,
    /// A VNI wider than 24 bits was given to emit.
    #[error("vni wider than 24 bits")]
    VniTooLarge,
}

/// A typed view of the 8 header bytes (borrowed from the datagram).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct VxlanHeader {
    flags: u8,
    ext: [u8; 3],
    vni: [u8; 3],
    reserved: u8,
}

impl VxlanHeader {
    /// View the header at the start of `buf`; returns it and the inner frame.
    pub fn ref_from_prefix(buf: &[u8]) -> Result<(&VxlanHeader, &[u8]), VxlanError> {
        <VxlanHeader as FromBytes>::ref_from_prefix(buf).map_err(|_| VxlanError::Truncated)
    }

    /// Mutable view of the header at the start of `buf`.
    pub fn mut_from_prefix(buf: &mut [u8]) -> Result<(&mut VxlanHeader, &mut [u8]), VxlanError> {
        <VxlanHeader as FromBytes>::mut_from_prefix(buf).map_err(|_| VxlanError::Truncated)
    }

    /// The I flag (VNI valid).
    pub fn vni_valid(&self) -> bool {
        self.flags & FLAG_I != 0
    }

    /// The 24-bit VNI (meaningful when [`vni_valid`](Self::vni_valid)).
    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.vni[0], self.vni[1], self.vni[2]])
    }

    /// The raw first reserved field (24 bits), where the offload extension lives.
    pub fn reserved1(&self) -> u32 {
        u32::from_be_bytes([0, self.ext[0], self.ext[1], self.ext[2]])
    }

    /// The header as bytes.
    pub fn as_bytes(&self) -> &[u8; VXLAN_HEADER_SIZE] {
        zerocopy::transmute_ref!(self)
    }
}

/// Offload state of the inner frame (the private extension; module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OffloadMeta {
    /// `Some(size)`: the inner frame is a GSO super-frame to be cut into
    /// segments of `size` bytes of L4 payload.
    pub gso_size: Option<u16>,
    /// The inner L4 checksum holds only the pseudo-header sum.
    pub csum_partial: bool,
}

/// The meaning of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VxlanRepr {
    /// 24-bit VXLAN network identifier: the egress port's tunnel key.
    pub vni: u32,
    /// Offload metadata; only between midonet-rs agents.
    pub offload: Option<OffloadMeta>,
}

impl VxlanRepr {
    /// Decode a header. Reserved bits are ignored unless M marks the offload
    /// extension.
    pub fn parse(h: &VxlanHeader) -> Result<VxlanRepr, VxlanError> {
        if !h.vni_valid() {
            return Err(VxlanError::NoVni);
        }
        let offload = (h.ext[0] & EXT_M != 0).then(|| OffloadMeta {
            gso_size: (h.ext[0] & EXT_G != 0).then(|| u16::from_be_bytes([h.ext[1], h.ext[2]])),
            csum_partial: h.ext[0] & EXT_C != 0,
        });
        Ok(VxlanRepr { vni: h.vni(), offload })
    }

    /// Decode the header at the start of `buf`; returns it and the inner frame.
    pub fn parse_bytes(buf: &[u8]) -> Result<(VxlanRepr, &[u8]), VxlanError> {
        let (h, rest) = VxlanHeader::ref_from_prefix(buf)?;
        Ok((VxlanRepr::parse(h)?, rest))
    }

    /// Encode into `h`, writing every bit (reserved bits zero unless the
    /// extension is present).
    pub fn emit(&self, h: &mut VxlanHeader) -> Result<(), VxlanError> {
        if self.vni > VNI_MAX {
            return Err(VxlanError::VniTooLarge);
        }
        let [_, v0, v1, v2] = self.vni.to_be_bytes();
        h.flags = FLAG_I;
        h.vni = [v0, v1, v2];
        h.reserved = 0;
        h.ext = match self.offload {
            None => [0; 3],
            Some(o) => {
                let mut bits = EXT_M;
                if o.csum_partial {
                    bits |= EXT_C;
                }
                let [s0, s1] = match o.gso_size {
                    Some(s) => {
                        bits |= EXT_G;
                        s.to_be_bytes()
                    }
                    None => [0, 0],
                };
                [bits, s0, s1]
            }
        };
        Ok(())
    }

    /// Encode into the first 8 bytes of `buf`.
    pub fn emit_bytes(&self, buf: &mut [u8]) -> Result<(), VxlanError> {
        let (h, _) = VxlanHeader::mut_from_prefix(buf)?;
        self.emit(h)
    }

    /// The encoded header.
    pub fn to_bytes(&self) -> Result<[u8; VXLAN_HEADER_SIZE], VxlanError> {
        let mut b = [0u8; VXLAN_HEADER_SIZE];
        self.emit_bytes(&mut b)?;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header_bytes_round_trip() {
        // RFC 7348 layout: I flag, 24 reserved bits, VNI 0x123456, reserved byte.
        let bytes = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];
        let (r, inner) = VxlanRepr::parse_bytes(&bytes).expect("valid header");
        assert_eq!(r, VxlanRepr { vni: 0x12_3456, offload: None });
        assert!(inner.is_empty());
        assert_eq!(r.to_bytes().expect("emit"), bytes);
    }

    #[test]
    fn repr_to_bytes_to_repr() {
        let r = VxlanRepr { vni: 7, offload: None };
        let b = r.to_bytes().expect("emit");
        assert_eq!(b, [0x08, 0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(VxlanRepr::parse_bytes(&b).expect("parse").0, r);
    }

    #[test]
    fn offload_extension_bytes_round_trip() {
        let r = VxlanRepr { vni: VNI_MAX, offload: Some(OffloadMeta { gso_size: Some(1448), csum_partial: true }) };
        let b = r.to_bytes().expect("emit");
        assert_eq!(b, [0x08, 0x83, 0x05, 0xa8, 0xff, 0xff, 0xff, 0x00]);
        assert_eq!(VxlanRepr::parse_bytes(&b).expect("parse").0, r);

        let r2 = VxlanRepr { vni: 1, offload: Some(OffloadMeta { gso_size: None, csum_partial: false }) };
        let b2 = r2.to_bytes().expect("emit");
        assert_eq!(b2, [0x08, 0x80, 0, 0, 0, 0, 1, 0]);
        assert_eq!(VxlanRepr::parse_bytes(&b2).expect("parse").0, r2);
    }

    #[test]
    fn foreign_reserved_bits_are_ignored() {
        // A GBP sender: G flag in byte 0, D bit and a policy id in the
        // reserved field, but no M bit: no offload metadata is read.
        let bytes = [0x88, 0x40, 0xab, 0xcd, 0, 0, 42, 0xee];
        let (r, _) = VxlanRepr::parse_bytes(&bytes).expect("parse");
        assert_eq!(r, VxlanRepr { vni: 42, offload: None });
    }

    #[test]
    fn i_flag_clear_is_rejected() {
        assert_eq!(VxlanRepr::parse_bytes(&[0, 0, 0, 0, 0, 0, 1, 0]), Err(VxlanError::NoVni));
    }

    #[test]
    fn truncated_and_oversized() {
        assert_eq!(VxlanRepr::parse_bytes(&[0x08, 0, 0]), Err(VxlanError::Truncated));
        assert_eq!(VxlanRepr { vni: VNI_MAX + 1, offload: None }.to_bytes(), Err(VxlanError::VniTooLarge));
    }

    #[test]
    fn view_exposes_inner_frame_and_raw_fields() {
        let mut buf = vec![0u8; 8];
        VxlanRepr { vni: 0xabcdef, offload: Some(OffloadMeta { gso_size: Some(9000), csum_partial: false }) }
            .emit_bytes(&mut buf)
            .expect("emit");
        buf.extend_from_slice(b"inner");
        let (h, inner) = VxlanHeader::ref_from_prefix(&buf).expect("view");
        assert!(h.vni_valid());
        assert_eq!(h.vni(), 0xabcdef);
        assert_eq!(h.reserved1(), 0x81_2328);
        assert_eq!(inner, b"inner");
        assert_eq!(&h.as_bytes()[..], &buf[..8]);
    }
}
