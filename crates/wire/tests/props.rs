//! Property tests: VXLAN repr round trips, checksum updates against
//! recomputation, VLAN push/pop as inverses, builders never panic.

use std::net::Ipv4Addr;

use midonet_wire::checksum::{checksum, update16, update32};
use midonet_wire::*;
use proptest::prelude::*;

fn offload() -> impl Strategy<Value = OffloadMeta> {
    (
        proptest::option::of((any::<u8>(), any::<bool>())),
        any::<bool>(),
        proptest::option::of((1..8u8, any::<bool>(), any::<u16>())),
    )
        .prop_map(|(c, valid, g)| OffloadMeta {
            csum_partial: c.map(|(start, udp)| CsumPartial {
                start,
                offset: if udp { CsumOffset::Udp } else { CsumOffset::Tcp },
            }),
            csum_valid: valid,
            gso: g.map(|(kind, ecn, size)| Gso { kind, ecn, size }),
        })
}

proptest! {
    #[test]
    fn vxlan_repr_round_trips(vni in 0..=vxlan::VNI_MAX, offload in proptest::option::of(offload())) {
        let r = VxlanRepr { vni, offload };
        let b = r.to_bytes().expect("emit");
        prop_assert_eq!(VxlanRepr::parse_bytes(&b).expect("parse").0, r);
    }

    #[test]
    fn vxlan_parse_is_stable_on_any_bytes(b in any::<[u8; 8]>()) {
        // Whatever parses re-emits to bytes that parse to the same meaning.
        if let Ok((r, _)) = VxlanRepr::parse_bytes(&b) {
            let again = r.to_bytes().expect("emit");
            prop_assert_eq!(VxlanRepr::parse_bytes(&again).expect("reparse").0, r);
            prop_assert_eq!(&again[4..7], &b[4..7], "vni bytes preserved");
        }
    }

    #[test]
    fn incremental_update_equals_recompute(mut data in proptest::collection::vec(any::<u8>(), 2..64), at in any::<prop::sample::Index>(), new16 in any::<u16>(), new32 in any::<u32>()) {
        // Make the length even so every 16-bit word is aligned.
        if data.len() % 2 == 1 { data.pop(); }
        let c0 = checksum(&data);
        let i = at.index(data.len() / 2) * 2;
        let old16 = u16::from_be_bytes([data[i], data[i + 1]]);
        data[i..i + 2].copy_from_slice(&new16.to_be_bytes());
        let c1 = update16(c0, old16, new16);
        // RFC 1624: the incremental result may be the other zero (0x0000 vs
        // 0xffff) only when the recomputed one is a zero.
        let full = checksum(&data);
        prop_assert!(c1 == full || (c1 | full) == 0xffff && (c1 == 0 || full == 0), "{c1:#x} vs {full:#x}");
        if data.len() >= 4 {
            let j = (at.index(data.len() / 2 - 1)) * 2;
            let old32 = u32::from_be_bytes([data[j], data[j + 1], data[j + 2], data[j + 3]]);
            let before = checksum(&data);
            data[j..j + 4].copy_from_slice(&new32.to_be_bytes());
            let c2 = update32(before, old32, new32);
            let full = checksum(&data);
            prop_assert!(c2 == full || (c2 | full) == 0xffff && (c2 == 0 || full == 0), "{c2:#x} vs {full:#x}");
        }
    }

    #[test]
    fn vlan_push_pop_inverse(frame in proptest::collection::vec(any::<u8>(), 14..80), vid in 0..4096u16, pcp in 0..8u8, dei in any::<bool>()) {
        let tag = VlanTag { vid, pcp, dei };
        let mut f = frame.clone();
        vlan_push(&mut f, tag).expect("push");
        prop_assert_eq!(f.len(), frame.len() + 4);
        prop_assert_eq!(vlan_pop(&mut f).expect("pop"), Some(tag));
        prop_assert_eq!(f, frame);
    }

    #[test]
    fn builders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120), mtu in any::<u16>()) {
        let mut out = Vec::new();
        let _ = icmpv4_echo_reply(&bytes, &mut out);
        let _ = icmpv4_error(&mut out, icmp::IcmpError::FragNeeded { next_hop_mtu: mtu }, [2; 6], [4; 6], Ipv4Addr::LOCALHOST, &bytes);
        let _ = may_send_icmp_error(&bytes);
        let _ = l3_offset(&bytes);
        let mut f = bytes.clone();
        let _ = vlan_pop(&mut f);
        // Every frame an error builder emits has valid checksums.
        let mut e = Vec::new();
        if icmpv4_error(&mut e, icmp::IcmpError::TtlExceeded, [2; 6], [4; 6], Ipv4Addr::new(10, 0, 0, 1), &bytes).is_ok() {
            prop_assert_eq!(checksum(&e[14..34]), 0);
            prop_assert_eq!(checksum(&e[34..]), 0);
        }
    }
}
