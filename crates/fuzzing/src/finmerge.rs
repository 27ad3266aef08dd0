//! `finmerge`: one receive batch of a port's frames through
//! `datapath::finmerge::FinMerger` (the userspace provider, before the
//! pipeline; the frames are whatever a VM sends).
//!
//! ```text
//!  ([flags (1): bit 0 partial checksum, bit 1 GSO] [length (2, BE)] [frame])*
//! ```
//!
//! What must hold:
//!
//! * no panic; the count returned is the number of slots marked absorbed,
//!   and the first slot is never absorbed;
//! * an absorbed slot and every slot no FIN was merged into are unchanged;
//! * a slot a FIN was merged into is an IPv4 TCP frame of its old length,
//!   now with the FIN flag, its Ethernet and IP headers, ports, sequence
//!   number and payload as they were, and (full checksum) a TCP checksum
//!   as valid as before: a merge neither breaks a good one nor launders a
//!   bad one.

use midonet_datapath::finmerge::FinMerger;
use midonet_datapath::sys::{Slot, VnetHdr};
use midonet_wire::checksum::{fold, pseudo_header_v4, sum};

fn tcp_checksum_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let seg = &f[14 + ihl..14 + total];
    let src = std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    fold(sum(pseudo_header_v4(src, dst, 6, seg.len() as u16), seg)) == 0xffff
}

/// The batch an input describes (at most 64 frames).
fn batch(data: &[u8]) -> Vec<Slot> {
    let mut slots = Vec::new();
    let mut rest = data;
    while let [flags, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let mut s = Slot::from_frame(&tail[..len]);
        if flags & 1 != 0 {
            s.vnet.flags = VnetHdr::F_NEEDS_CSUM;
        }
        if flags & 2 != 0 {
            s.vnet.gso_type = VnetHdr::GSO_TCPV4;
        }
        slots.push(s);
        rest = &tail[len..];
        if slots.len() == 64 {
            break;
        }
    }
    slots
}

pub fn finmerge(data: &[u8]) {
    let mut slots = batch(data);
    let before: Vec<Vec<u8>> = slots.iter().map(|s| s.frame().to_vec()).collect();
    let mut m = FinMerger::default();
    let n = m.merge(&mut slots);
    let absorbed: Vec<bool> = (0..slots.len()).map(|i| m.absorbed(i)).collect();
    assert_eq!(n, absorbed.iter().filter(|a| **a).count(), "count = absorbed slots");
    assert!(!absorbed.first().copied().unwrap_or(false), "the first slot is never absorbed");
    let mut changed = 0;
    for (i, s) in slots.iter().enumerate() {
        let (old, new) = (&before[i][..], s.frame());
        if absorbed[i] || old == new {
            assert_eq!(old, new, "an absorbed slot is left as it was");
            continue;
        }
        changed += 1;
        assert_eq!(old.len(), new.len(), "same length");
        assert_eq!(&old[..14], &new[..14], "Ethernet header");
        let ihl = usize::from(old[14] & 0x0f) * 4;
        let l4 = 14 + ihl;
        assert_eq!(&old[14..l4 + 8], &new[14..l4 + 8], "IP header, ports, sequence");
        let doff = usize::from(old[l4 + 12] >> 4) * 4;
        assert_eq!(&old[l4 + doff..], &new[l4 + doff..], "payload");
        assert_ne!(new[l4 + 13] & 0x01, 0, "the FIN flag");
        if s.vnet.flags & VnetHdr::F_NEEDS_CSUM == 0 {
            assert_eq!(
                tcp_checksum_ok(new),
                tcp_checksum_ok(old),
                "a checksum stays as good as it was"
            );
        }
    }
    assert_eq!(changed, n, "one slot changed per merge");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach the merge, not only its refusals.
    #[test]
    fn seeds_merge_where_they_should() {
        let merged = |name: &str| {
            let (_, data) = crate::seeds::for_target("finmerge")
                .into_iter()
                .find(|(n, _)| n == name)
                .expect("seed");
            finmerge(&data);
            let mut slots = batch(&data);
            FinMerger::default().merge(&mut slots)
        };
        for (name, n) in [
            ("answer_fin", 1),
            ("answer_partial_fin", 1),
            ("interleaved", 1),
            ("two_connections", 2),
            ("gap", 0),
            ("fin_with_data", 0),
            ("gso_answer", 1),
            ("fin_first", 0),
        ] {
            assert_eq!(merged(name), n, "{name}");
        }
    }
}
