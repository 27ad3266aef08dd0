//! The UDP header as a typed view over bytes (RFC 768).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |   Source Port   |   Dest. Port    |
//! +--------+--------+--------+--------+
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! ```
//!
//! Over IPv4 a checksum of zero means "none" (RFC 768); a computed zero is
//! sent as 0xffff.

use crate::WireError;

/// Byte offsets of the header fields.
pub mod field {
    use std::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Size of the header.
pub const HEADER_SIZE: usize = 8;

/// A view of a UDP datagram at the start of `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// A view without any check (accessors may panic on a short buffer).
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// A view of untrusted bytes: the buffer holds the whole header. The
    /// length field is not checked against the buffer (the IP header's
    /// length bounds the datagram).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_SIZE {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    fn be16(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn src_port(&self) -> u16 {
        self.be16(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.be16(field::DST_PORT)
    }

    /// Length of header and payload in bytes, as the field says.
    pub fn len(&self) -> u16 {
        self.be16(field::LENGTH)
    }

    /// Whether the length field says zero (never valid, but readable).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_be16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, p: u16) {
        self.set_be16(field::SRC_PORT, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        self.set_be16(field::DST_PORT, p);
    }

    pub fn set_len(&mut self, len: u16) {
        self.set_be16(field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, c: u16) {
        self.set_be16(field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_like_etherparse_and_write_back() {
        let h = etherparse::UdpHeader {
            source_port: 5000,
            destination_port: 53,
            length: 12,
            checksum: 0xbeef,
        };
        let mut b = h.to_bytes().to_vec();
        let mut u = UdpPacket::new_checked(&mut b[..]).expect("valid");
        assert_eq!((u.src_port(), u.dst_port(), u.len(), u.checksum()), (5000, 53, 12, 0xbeef));
        u.set_src_port(1);
        u.set_dst_port(2);
        u.set_len(8);
        u.set_checksum(0);
        let e = etherparse::UdpHeaderSlice::from_slice(&b).expect("etherparse");
        assert_eq!((e.source_port(), e.destination_port(), e.length(), e.checksum()), (1, 2, 8, 0));
        assert_eq!(UdpPacket::new_checked(&b[..7]), Err(WireError::Truncated));
    }
}
