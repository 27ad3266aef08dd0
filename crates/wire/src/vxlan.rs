//! VXLAN header (RFC 7348 §5) and midonet-rs's private offload extension.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|O|E| gso |cso|flg|        gso_size (BE)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            VXLAN Network Identifier (VNI)     |  csum_start   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   RFC 7348: everything but I and the VNI is reserved (zero on send,
//!   ignored on receipt).
//! ```
//!
//! RFC 7348: the I flag must be 1 for a valid VNI. A datagram with I = 0 is
//! rejected ([`VxlanError::NoVni`]).
//!
//! # Private offload extension (midonet-rs agents only)
//!
//! So that one large TSO/GSO frame can cross the tunnel as one datagram
//! (instead of being segmented before encapsulation), the sending agent
//! carries the inner frame's virtio-net offload state in reserved bits, and
//! the receiving agent hands the frame to the VM's interface with the same
//! virtio-net header. This is the format `midonet-datapath` sends:
//!
//! * **O** (byte 0, 0x01): metadata present. Without O every other reserved
//!   bit is ignored, so stray bits from a foreign sender are never read as
//!   metadata, and a frame without offload work gets a plain RFC 7348
//!   header.
//! * byte 1, **flg** (bits 0–1): virtio-net flags: 0x01 checksum partial
//!   (`NEEDS_CSUM`: the inner L4 checksum field holds only the pseudo-header
//!   sum), 0x02 checksum already verified (`DATA_VALID`).
//! * byte 1, **cso** (bits 2–3): where the checksum field is, relative to
//!   `csum_start`: 0 = 16 (TCP), 1 = 6 (UDP); 2 and 3 are invalid.
//! * byte 1, **gso** (bits 4–6) and **E** (bit 7): virtio GSO type (1 TCPv4,
//!   3 UDP, 4 TCPv6, 5 UDP L4) and its ECN bit.
//! * bytes 2–3, **gso_size**: L4 payload bytes per segment.
//! * byte 7, **csum_start**: offset of the inner L4 header from the start of
//!   the inner frame (meaningful with checksum partial).
//!
//! Bit choice: the first reserved field's byte 1 bits 0x40/0x08 and the
//! policy id in bytes 2–3 mean something to VXLAN-GBP only when GBP's G
//! flag (byte 0, 0x80) is set, which this extension never sets. Byte 0's
//! 0x01 is VXLAN-GPE's OAM bit, but GPE runs on its own UDP port (4790).
//!
//! Standard peers ignore reserved bits, so the header stays valid VXLAN, but
//! a standard peer cannot segment a super-frame: an agent sends O (and
//! frames larger than the path MTU) **only to peers known to be midonet-rs
//! agents**, and always clears it towards VTEPs and other VXLAN endpoints.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// IANA-assigned VXLAN UDP port (RFC 7348 §5).
pub const VXLAN_UDP_PORT: u16 = 4789;
/// Size of the VXLAN header in bytes.
pub const VXLAN_HEADER_SIZE: usize = 8;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

const FLAG_I: u8 = 0x08;
const FLAG_O: u8 = 0x01;
const VNET_NEEDS_CSUM: u8 = 0x01;
const VNET_DATA_VALID: u8 = 0x02;
const GSO_ECN: u8 = 0x80;

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
    /// The offload metadata names a checksum offset code that does not exist.
    #[error("unknown offload metadata")]
    BadOffload,
    /// Offload metadata that the header cannot carry (GSO type wider than 3 bits).
    #[error("offload metadata does not fit the vxlan header")]
    OffloadUnsupported,
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

/// Where the inner L4 checksum field is, relative to the L4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CsumOffset {
    /// TCP: 16 bytes in.
    Tcp,
    /// UDP: 6 bytes in.
    Udp,
}

impl CsumOffset {
    /// The offset in bytes (virtio-net `csum_offset`).
    pub fn bytes(self) -> u16 {
        match self {
            CsumOffset::Tcp => 16,
            CsumOffset::Udp => 6,
        }
    }
}

/// The inner L4 checksum is partial: complete it before delivery to
/// anything that does not offload checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CsumPartial {
    /// Offset of the inner L4 header from the start of the inner frame.
    pub start: u8,
    /// Where the checksum field is from `start`.
    pub offset: CsumOffset,
}

/// The inner frame is a GSO super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gso {
    /// virtio-net GSO type (1 TCPv4, 3 UDP, 4 TCPv6, 5 UDP L4), 3 bits.
    pub kind: u8,
    /// virtio-net GSO ECN bit (the TCP stream uses ECN/CWR).
    pub ecn: bool,
    /// L4 payload bytes per segment.
    pub size: u16,
}

/// Offload state of the inner frame (the private extension; module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OffloadMeta {
    /// Checksum partial (virtio `NEEDS_CSUM`), with where to complete it.
    pub csum_partial: Option<CsumPartial>,
    /// Checksum already verified (virtio `DATA_VALID`).
    pub csum_valid: bool,
    /// GSO super-frame: how to segment it.
    pub gso: Option<Gso>,
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
    /// Decode a header. Reserved bits are ignored unless O marks the offload
    /// extension.
    pub fn parse(h: &VxlanHeader) -> Result<VxlanRepr, VxlanError> {
        if !h.vni_valid() {
            return Err(VxlanError::NoVni);
        }
        let offload = if h.flags & FLAG_O != 0 {
            let b = h.ext[0];
            let offset = match (b >> 2) & 0x03 {
                0 => CsumOffset::Tcp,
                1 => CsumOffset::Udp,
                _ => return Err(VxlanError::BadOffload),
            };
            let kind = (b >> 4) & 0x07;
            Some(OffloadMeta {
                csum_partial: (b & VNET_NEEDS_CSUM != 0)
                    .then_some(CsumPartial { start: h.reserved, offset }),
                csum_valid: b & VNET_DATA_VALID != 0,
                gso: (kind != 0).then(|| Gso {
                    kind,
                    ecn: b & GSO_ECN != 0,
                    size: u16::from_be_bytes([h.ext[1], h.ext[2]]),
                }),
            })
        } else {
            None
        };
        Ok(VxlanRepr { vni: h.vni(), offload })
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
        h.ext = [0; 3];
        h.reserved = 0;
        if let Some(o) = self.offload {
            h.flags |= FLAG_O;
            let mut b = 0u8;
            if let Some(c) = o.csum_partial {
                b |= VNET_NEEDS_CSUM;
                if c.offset == CsumOffset::Udp {
                    b |= 1 << 2;
                }
                h.reserved = c.start;
            }
            if o.csum_valid {
                b |= VNET_DATA_VALID;
            }
            if let Some(g) = o.gso {
                if g.kind > 0x07 {
                    return Err(VxlanError::OffloadUnsupported);
                }
                b |= g.kind << 4;
                if g.ecn {
                    b |= GSO_ECN;
                }
                h.ext[1..3].copy_from_slice(&g.size.to_be_bytes());
            }
            h.ext[0] = b;
        }
        Ok(())
    }

    /// Decode the header at the start of `buf`; returns it and the inner frame.
    pub fn parse_bytes(buf: &[u8]) -> Result<(VxlanRepr, &[u8]), VxlanError> {
        let (h, rest) = VxlanHeader::ref_from_prefix(buf)?;
        Ok((VxlanRepr::parse(h)?, rest))
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
        // TCPv4 GSO, 1398-byte segments, checksum partial from byte 34 (TCP).
        let r = VxlanRepr {
            vni: 42,
            offload: Some(OffloadMeta {
                csum_partial: Some(CsumPartial { start: 34, offset: CsumOffset::Tcp }),
                csum_valid: false,
                gso: Some(Gso { kind: 1, ecn: false, size: 1398 }),
            }),
        };
        let b = r.to_bytes().expect("emit");
        assert_eq!(b, [0x09, 0x11, 0x05, 0x76, 0, 0, 42, 34]);
        assert_eq!(VxlanRepr::parse_bytes(&b).expect("parse").0, r);

        // UDP checksum partial only, no GSO.
        let u = VxlanRepr {
            vni: VNI_MAX,
            offload: Some(OffloadMeta {
                csum_partial: Some(CsumPartial { start: 38, offset: CsumOffset::Udp }),
                csum_valid: false,
                gso: None,
            }),
        };
        let b = u.to_bytes().expect("emit");
        assert_eq!(b, [0x09, 0x05, 0, 0, 0xff, 0xff, 0xff, 38]);
        assert_eq!(VxlanRepr::parse_bytes(&b).expect("parse").0, u);

        // TCPv6 GSO with ECN, checksum already valid.
        let v = VxlanRepr {
            vni: 1,
            offload: Some(OffloadMeta {
                csum_partial: None,
                csum_valid: true,
                gso: Some(Gso { kind: 4, ecn: true, size: 9000 }),
            }),
        };
        let b = v.to_bytes().expect("emit");
        assert_eq!(b, [0x09, 0xc2, 0x23, 0x28, 0, 0, 1, 0]);
        assert_eq!(VxlanRepr::parse_bytes(&b).expect("parse").0, v);
    }

    #[test]
    fn bad_offload_is_rejected() {
        assert_eq!(
            VxlanRepr::parse_bytes(&[0x09, 0x0d, 0, 0, 0, 0, 1, 0]),
            Err(VxlanError::BadOffload)
        );
        let too_wide = VxlanRepr {
            vni: 1,
            offload: Some(OffloadMeta {
                gso: Some(Gso { kind: 8, ecn: false, size: 1 }),
                ..OffloadMeta::default()
            }),
        };
        assert_eq!(too_wide.to_bytes(), Err(VxlanError::OffloadUnsupported));
    }

    #[test]
    fn foreign_reserved_bits_are_ignored() {
        // A GBP sender: G flag in byte 0, D bit and a policy id in the
        // reserved field, but no O bit: no offload metadata is read.
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
        assert_eq!(
            VxlanRepr { vni: VNI_MAX + 1, offload: None }.to_bytes(),
            Err(VxlanError::VniTooLarge)
        );
    }

    #[test]
    fn view_exposes_inner_frame_and_raw_fields() {
        let mut buf = vec![0u8; 8];
        let gso = Gso { kind: 1, ecn: false, size: 9000 };
        VxlanRepr {
            vni: 0xabcdef,
            offload: Some(OffloadMeta { gso: Some(gso), ..OffloadMeta::default() }),
        }
        .emit_bytes(&mut buf)
        .expect("emit");
        buf.extend_from_slice(b"inner");
        let (h, inner) = VxlanHeader::ref_from_prefix(&buf).expect("view");
        assert!(h.vni_valid());
        assert_eq!(h.vni(), 0xabcdef);
        assert_eq!(h.reserved1(), 0x10_2328);
        assert_eq!(inner, b"inner");
        assert_eq!(&h.as_bytes()[..], &buf[..8]);
    }
}
