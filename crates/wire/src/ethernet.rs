//! Ethernet and 802.1Q helpers: find the L3 header, push and pop VLAN tags
//! in place.
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
    let t = frame.get(12..14).ok_or(WireError::Truncated)?;
    let t = u16::from_be_bytes([t[0], t[1]]);
    if t == TPID_8021Q {
        let inner = frame.get(16..18).ok_or(WireError::Truncated)?;
        Ok((u16::from_be_bytes([inner[0], inner[1]]), ETH_HEADER_SIZE + VLAN_TAG_SIZE))
    } else {
        Ok((t, ETH_HEADER_SIZE))
    }
}

/// Insert an outer 802.1Q tag after the MAC addresses (a tagged frame gets a
/// second, outer tag).
pub fn vlan_push(frame: &mut Vec<u8>, tag: VlanTag) -> Result<(), WireError> {
    if frame.len() < ETH_HEADER_SIZE {
        return Err(WireError::Truncated);
    }
    let [p0, p1] = TPID_8021Q.to_be_bytes();
    let [t0, t1] = tag.tci().to_be_bytes();
    frame.splice(12..12, [p0, p1, t0, t1]);
    Ok(())
}

/// Remove the outer 802.1Q tag; `Ok(None)` (frame unchanged) when untagged.
pub fn vlan_pop(frame: &mut Vec<u8>) -> Result<Option<VlanTag>, WireError> {
    let t = frame.get(12..14).ok_or(WireError::Truncated)?;
    if u16::from_be_bytes([t[0], t[1]]) != TPID_8021Q {
        return Ok(None);
    }
    let tci = frame.get(14..16).ok_or(WireError::Truncated)?;
    let tag = VlanTag::from_tci(u16::from_be_bytes([tci[0], tci[1]]));
    if frame.len() < ETH_HEADER_SIZE + VLAN_TAG_SIZE {
        return Err(WireError::Truncated);
    }
    frame.drain(12..16);
    Ok(Some(tag))
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
