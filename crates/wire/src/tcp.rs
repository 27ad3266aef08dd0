//! The TCP header as a typed view over bytes (RFC 9293 §3.1): the fields
//! a rewrite touches (ports, checksum) and the data offset that bounds it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |     |N|C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrv|S|W|C|R|C|S|S|Y|I|            Window             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::WireError;

/// Byte offsets of the header fields.
pub mod field {
    use std::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset (high nibble of the first byte) and flags (9 bits).
    pub const FLAGS: Range<usize> = 12..14;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Size of a header without options.
pub const HEADER_SIZE: usize = 20;

/// A view of a TCP segment at the start of `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view without any check (accessors may panic on a short buffer).
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// A view of untrusted bytes: a data offset of at least 5 words, and
    /// the buffer holds the whole header, options included.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_SIZE || len < p.header_len() {
            return Err(WireError::Truncated);
        }
        if p.header_len() < HEADER_SIZE {
            return Err(WireError::Malformed);
        }
        Ok(p)
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

    pub fn seq_number(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQ_NUM];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Header size in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// The 9 flag bits (NS … FIN).
    pub fn flags(&self) -> u16 {
        self.be16(field::FLAGS) & 0x01ff
    }

    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn set_be16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, p: u16) {
        self.set_be16(field::SRC_PORT, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        self.set_be16(field::DST_PORT, p);
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
        let mut h = etherparse::TcpHeader::new(40000, 80, 7, 1024);
        h.ack = true;
        h.checksum = 0x1234;
        let mut b = h.to_bytes().to_vec();
        let mut t = TcpPacket::new_checked(&mut b[..]).expect("valid");
        assert_eq!((t.src_port(), t.dst_port(), t.checksum()), (40000, 80, 0x1234));
        assert_eq!((t.header_len(), t.flags()), (20, 0x010));
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_checksum(3);
        let e = etherparse::TcpHeaderSlice::from_slice(&b).expect("etherparse");
        assert_eq!((e.source_port(), e.destination_port(), e.checksum()), (1, 2, 3));
        assert_eq!(TcpPacket::new_checked(&b[..19]), Err(WireError::Truncated));
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(WireError::Malformed));
        b[12] = 0x60;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(WireError::Truncated), "options cut");
    }
}
