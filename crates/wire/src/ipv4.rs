//! The IPv4 header as a typed view over bytes (RFC 791 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |      TOS      |          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (IHL > 5)                          |
//! ```
//!
//! [`Ipv4Packet::new_checked`] is the only way to view untrusted bytes: once
//! it succeeds, the whole header (options included) and the datagram up to
//! its total length lie inside the buffer, so no accessor can panic. Setters
//! write the raw field; keeping the header checksum right is the caller's
//! business ([`Ipv4Packet::fill_checksum`], or an incremental update with
//! [`crate::checksum::update16`] for a rewrite on the packet path).
//!
//! The buffer may extend past the datagram (Ethernet padding, or a frame
//! whose tail the caller keeps): [`Ipv4Packet::payload`] stops at the total
//! length.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::WireError;

/// Byte offsets of the header fields.
pub mod field {
    use std::ops::Range;

    /// Version (high nibble) and IHL in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;
    /// Type of service (DSCP and ECN).
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (3 bits: reserved, DF, MF) and the fragment offset (13 bits).
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Size of a header without options.
pub const HEADER_SIZE: usize = 20;

/// IP protocol numbers the packet path looks at.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 datagram at the start of `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without any check; accessors may panic on a short or
    /// inconsistent buffer. For bytes this crate or its caller just built.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// A view of untrusted bytes: version 4, IHL ≥ 5, total length ≥ the
    /// header, and the buffer holds the whole header and the datagram.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_SIZE {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::NotIpv4);
        }
        let (hl, total) = (self.header_len(), usize::from(self.total_len()));
        if hl < HEADER_SIZE || total < hl {
            return Err(WireError::Malformed);
        }
        if b.len() < total {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn be16(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header size in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length of the datagram in bytes, header included.
    pub fn total_len(&self) -> u16 {
        self.be16(field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        self.be16(field::IDENT)
    }

    /// The flags and fragment-offset word as it is on the wire.
    pub fn flags_and_offset(&self) -> u16 {
        self.be16(field::FLG_OFF)
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_and_offset() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_and_offset() & FLAG_MF != 0
    }

    /// Fragment offset in units of 8 bytes.
    pub fn frag_offset(&self) -> u16 {
        self.flags_and_offset() & FRAG_OFFSET_MASK
    }

    /// Whether this is a fragment other than the first: it carries no L4
    /// header.
    pub fn is_later_fragment(&self) -> bool {
        self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The TTL and protocol bytes as the one 16-bit word the header
    /// checksum sums them in (for incremental updates).
    pub fn ttl_proto_word(&self) -> u16 {
        u16::from_be_bytes([self.ttl(), self.protocol()])
    }

    /// The version/IHL and TOS bytes as one 16-bit word.
    pub fn ver_tos_word(&self) -> u16 {
        self.be16(field::VER_IHL..field::TOS + 1)
    }

    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The datagram: header and payload, cut to the total length.
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.total_len())]
    }

    /// The payload, from the end of the header to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }

    /// Unfolded sum of the TCP/UDP pseudo-header of this datagram for an L4
    /// segment of `l4_size` bytes (RFC 768, RFC 9293 §3.1).
    pub fn pseudo_header_sum(&self, l4_size: u16) -> u32 {
        checksum::pseudo_header_v4(self.src_addr(), self.dst_addr(), self.protocol(), l4_size)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_be16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    pub fn set_total_len(&mut self, len: u16) {
        self.set_be16(field::LENGTH, len);
    }

    pub fn set_ident(&mut self, id: u16) {
        self.set_be16(field::IDENT, id);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_checksum(&mut self, c: u16) {
        self.set_be16(field::CHECKSUM, c);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Compute the header checksum from scratch and store it.
    pub fn fill_checksum(&mut self) {
        let c = checksum::ipv4_header_checksum(self.header());
        self.set_checksum(c);
    }

    /// The payload, mutable (from the end of the header to the total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = etherparse::Ipv4Header::new(
            8,
            61,
            etherparse::IpNumber::UDP,
            [10, 0, 0, 1],
            [192, 168, 1, 200],
        )
        .expect("valid header");
        h.header_checksum = h.calc_header_checksum();
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0xee]); // payload + padding
        b
    }

    #[test]
    fn fields_read_like_etherparse() {
        let b = header();
        let p = Ipv4Packet::new_checked(&b[..]).expect("valid");
        let e = etherparse::Ipv4HeaderSlice::from_slice(&b).expect("etherparse");
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), e.total_len());
        assert_eq!(p.ttl(), e.ttl());
        assert_eq!(p.protocol(), e.protocol().0);
        assert_eq!(p.src_addr(), e.source_addr());
        assert_eq!(p.dst_addr(), e.destination_addr());
        assert_eq!(p.checksum(), e.header_checksum());
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8], "padding is not payload");
        assert!(!p.is_later_fragment() && !p.more_frags());
    }

    #[test]
    fn setters_then_fill_checksum_give_a_valid_header() {
        let mut b = header();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).expect("valid");
        p.set_ttl(7);
        p.set_tos(0xb8);
        p.set_src_addr(Ipv4Addr::new(203, 0, 113, 9));
        p.set_dst_addr(Ipv4Addr::new(198, 51, 100, 1));
        p.fill_checksum();
        let e = etherparse::Ipv4HeaderSlice::from_slice(&b).expect("etherparse");
        assert_eq!(e.header_checksum(), e.to_header().calc_header_checksum());
        assert_eq!((e.ttl(), e.dcp().value() << 2), (7, 0xb8));
    }

    #[test]
    fn untrusted_bytes_are_checked() {
        let b = header();
        assert_eq!(Ipv4Packet::new_checked(&b[..19]), Err(WireError::Truncated));
        assert_eq!(Ipv4Packet::new_checked(&b[..27]), Err(WireError::Truncated), "total length");
        let mut v6 = b.clone();
        v6[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&v6[..]), Err(WireError::NotIpv4));
        let mut short_ihl = b.clone();
        short_ihl[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&short_ihl[..]), Err(WireError::Malformed));
        let mut options = b.clone();
        options[0] = 0x4f; // 60-byte header in a 37-byte buffer
        assert!(Ipv4Packet::new_checked(&options[..]).is_err());
    }
}
