//! Ethernet and 802.1Q: a typed view of the header ([`EthernetFrame`]),
//! the L3 offset, and pushing and popping VLAN tags in place.
//!
//! ```text
//!   untagged:  dst(6) src(6) type(2) | L3
//!   tagged:    dst(6) src(6) 0x8100(2) TCI(2) type(2) | L3
//!              TCI = PCP(3) DEI(1) VID(12)
//! ```

use crate::WireError;

/// Ethernet header size without a VLAN tag.
pub const ETH_HEADER_SIZE: usize = 14;
/// Size of one 802.1Q tag.
pub const VLAN_TAG_SIZE: usize = 4;
/// TPID of an 802.1Q tag.
pub const TPID_8021Q: u16 = 0x8100;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// The broadcast MAC address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// An 802.1Q tag control information field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// VLAN id (12 bits).
    pub vid: u16,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
}

impl VlanTag {
    /// Decode a TCI.
    pub fn from_tci(tci: u16) -> Self {
        VlanTag { vid: tci & 0x0fff, pcp: (tci >> 13) as u8, dei: tci & 0x1000 != 0 }
    }
    /// Encode as a TCI (out-of-range bits are masked off).
    pub fn tci(self) -> u16 {
        (u16::from(self.pcp & 0x07) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

/// The ethertype and L3 offset of a frame, skipping one 802.1Q tag.
pub fn l3_offset(frame: &[u8]) -> Result<(u16, usize), WireError> {
    let t = EthernetFrame::new_checked(frame)?.ethertype();
    if t == TPID_8021Q {
        let inner = frame.get(field::VLAN_ETHERTYPE).ok_or(WireError::Truncated)?;
        Ok((u16::from_be_bytes([inner[0], inner[1]]), ETH_HEADER_SIZE + VLAN_TAG_SIZE))
    } else {
        Ok((t, ETH_HEADER_SIZE))
    }
}

/// A view of an Ethernet frame at the start of `buffer`: the MAC addresses
/// and the first ethertype (a TPID when the frame is tagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

/// Byte offsets of the Ethernet header fields.
pub mod field {
    use std::ops::Range;

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    /// The ethertype, or the TPID of the outer 802.1Q tag.
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Of a tagged frame: the tag control information and the inner ethertype.
    pub const VLAN_TCI: Range<usize> = 14..16;
    pub const VLAN_ETHERTYPE: Range<usize> = 16..18;
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view without any check (accessors may panic on a short buffer).
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// A view of untrusted bytes: the buffer holds the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < ETH_HEADER_SIZE {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        m
    }

    pub fn src_addr(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        m
    }

    /// The first ethertype: [`TPID_8021Q`] for a tagged frame.
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&mac);
    }

    pub fn set_src_addr(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac);
    }
}

/// Insert an outer 802.1Q tag after the MAC addresses, in place: `buf`
/// holds [`VLAN_TAG_SIZE`] bytes of room followed by the frame; afterwards
/// the whole of `buf` is the tagged frame (a tagged frame gets a second,
/// outer tag). Only the 12 address bytes move, so a packet path with
/// headroom in front of its frames pushes without copying the payload.
pub fn vlan_push_in_place(buf: &mut [u8], tag: VlanTag) -> Result<(), WireError> {
    if buf.len() < VLAN_TAG_SIZE + ETH_HEADER_SIZE {
        return Err(WireError::Truncated);
    }
    buf.copy_within(VLAN_TAG_SIZE..VLAN_TAG_SIZE + 12, 0);
    buf[field::ETHERTYPE].copy_from_slice(&TPID_8021Q.to_be_bytes());
    buf[field::VLAN_TCI].copy_from_slice(&tag.tci().to_be_bytes());
    Ok(())
}

/// Remove the outer 802.1Q tag in place: the untagged frame is then
/// `frame[VLAN_TAG_SIZE..]` (the addresses move up, the payload stays).
/// `Ok(None)` (frame unchanged) when the frame is untagged.
pub fn vlan_pop_in_place(frame: &mut [u8]) -> Result<Option<VlanTag>, WireError> {
    if EthernetFrame::new_checked(&*frame)?.ethertype() != TPID_8021Q {
        return Ok(None);
    }
    let tci = frame.get(field::VLAN_TCI).ok_or(WireError::Truncated)?;
    let tag = VlanTag::from_tci(u16::from_be_bytes([tci[0], tci[1]]));
    if frame.len() < ETH_HEADER_SIZE + VLAN_TAG_SIZE {
        return Err(WireError::Truncated);
    }
    frame.copy_within(0..12, VLAN_TAG_SIZE);
    Ok(Some(tag))
}

/// [`vlan_push_in_place`] on a `Vec` (which grows by a tag).
pub fn vlan_push(frame: &mut Vec<u8>, tag: VlanTag) -> Result<(), WireError> {
    if frame.len() < ETH_HEADER_SIZE {
        return Err(WireError::Truncated);
    }
    frame.splice(0..0, [0; VLAN_TAG_SIZE]);
    vlan_push_in_place(frame, tag)
}

/// [`vlan_pop_in_place`] on a `Vec` (which shrinks by the tag).
pub fn vlan_pop(frame: &mut Vec<u8>) -> Result<Option<VlanTag>, WireError> {
    let tag = vlan_pop_in_place(frame)?;
    if tag.is_some() {
        frame.drain(..VLAN_TAG_SIZE);
    }
    Ok(tag)
}

/// Append an untagged Ethernet header.
pub(crate) fn write_eth(out: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untagged() -> Vec<u8> {
        let mut f = Vec::new();
        write_eth(&mut f, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], ETHERTYPE_IPV4);
        f.extend_from_slice(&[0x45, 0, 0, 20]);
        f
    }

    #[test]
    fn push_then_pop_restores_bytes() {
        let orig = untagged();
        let mut f = orig.clone();
        let tag = VlanTag { vid: 100, pcp: 5, dei: true };
        vlan_push(&mut f, tag).expect("push");
        assert_eq!(&f[12..18], &[0x81, 0x00, 0xb0, 0x64, 0x08, 0x00]);
        assert_eq!(l3_offset(&f).expect("l3"), (ETHERTYPE_IPV4, 18));
        assert_eq!(vlan_pop(&mut f).expect("pop"), Some(tag));
        assert_eq!(f, orig);
    }

    #[test]
    fn in_place_push_and_pop_move_only_the_addresses() {
        let orig = untagged();
        let mut buf = vec![0xaa; VLAN_TAG_SIZE];
        buf.extend_from_slice(&orig);
        let tag = VlanTag { vid: 7, pcp: 1, dei: false };
        vlan_push_in_place(&mut buf, tag).expect("push");
        let mut by_vec = orig.clone();
        vlan_push(&mut by_vec, tag).expect("push");
        assert_eq!(buf, by_vec);
        assert_eq!(vlan_pop_in_place(&mut buf).expect("pop"), Some(tag));
        assert_eq!(&buf[VLAN_TAG_SIZE..], &orig[..]);
        assert_eq!(vlan_push_in_place(&mut [0; 17], tag), Err(WireError::Truncated));
    }

    #[test]
    fn view_reads_and_writes_addresses() {
        let mut f = untagged();
        let mut e = EthernetFrame::new_checked(&mut f[..]).expect("view");
        assert_eq!((e.dst_addr(), e.src_addr()), ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]));
        assert_eq!(e.ethertype(), ETHERTYPE_IPV4);
        e.set_dst_addr([9; 6]);
        e.set_src_addr([8; 6]);
        assert_eq!(&f[..12], &[[9u8; 6], [8; 6]].concat()[..]);
        assert_eq!(EthernetFrame::new_checked(&f[..13]), Err(WireError::Truncated));
    }

    #[test]
    fn tagged_bytes_parse_like_etherparse() {
        let mut f = untagged();
        // An experimental ethertype, so etherparse does not parse the stub L3.
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        vlan_push(&mut f, VlanTag { vid: 4095, pcp: 7, dei: false }).expect("push");
        let s = etherparse::SlicedPacket::from_ethernet(&f).expect("etherparse");
        let vlan = s.vlan().expect("has vlan").to_header();
        match vlan {
            etherparse::VlanHeader::Single(v) => {
                assert_eq!(v.vlan_id.value(), 4095);
                assert_eq!(v.pcp.value(), 7);
            }
            other => panic!("expected one tag, got {other:?}"),
        }
    }

    #[test]
    fn pop_untagged_is_noop_and_short_frames_error() {
        let mut f = untagged();
        assert_eq!(vlan_pop(&mut f).expect("pop"), None);
        assert_eq!(f, untagged());
        assert_eq!(vlan_pop(&mut vec![0; 5]), Err(WireError::Truncated));
        assert_eq!(vlan_push(&mut vec![0; 13], VlanTag::default()), Err(WireError::Truncated));
        let mut short = untagged()[..14].to_vec();
        short[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
        assert_eq!(vlan_pop(&mut short), Err(WireError::Truncated));
        assert_eq!(l3_offset(&short), Err(WireError::Truncated));
    }
}
