//! Internet checksum (RFC 1071) and incremental update (RFC 1624 eqn. 3).
//!
//! `midonet-wire` has the public version of these helpers; this crate keeps a
//! private copy because vocabulary crates depend on no other workspace crate
//! (ARCHITECTURE.md §7) and the rewriter needs them on the packet path.

/// One's-complement sum of `data` as big-endian 16-bit words (odd tail padded
/// with a zero byte), added to `initial`, not folded.
pub(crate) fn sum(initial: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold64(acc)
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Fold a 32-bit sum to 16 bits (not inverted).
pub(crate) fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The checksum field value for data whose words sum (unfolded) to `s`.
pub(crate) fn finish(s: u32) -> u16 {
    !fold(s)
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a 16-bit word changing from
/// `old` to `new`. Eqn. 3 (not 2) so a result never becomes 0x0000 from a
/// non-zero input by the -0/+0 ambiguity.
pub(crate) fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// [`update16`] for a 32-bit field (two words).
pub(crate) fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let c = update16(csum, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to 0x2ddf0 -> ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    #[test]
    fn incremental_matches_recompute() {
        let mut data = [
            0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0,
            0, 2,
        ];
        let c = finish(sum(0, &data));
        let old = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
        let new = u32::from_be_bytes([192, 168, 7, 9]);
        data[16..20].copy_from_slice(&new.to_be_bytes());
        assert_eq!(update32(c, old, new), finish(sum(0, &data)));
    }
}
