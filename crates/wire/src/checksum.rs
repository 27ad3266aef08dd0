//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are carried unfolded in a `u32` so callers can chain a pseudo-header
//! and several slices before folding once. Incremental updates use RFC 1624
//! eqn. 3, `HC' = ~(~HC + ~m + m')`, which (unlike eqn. 2 of RFC 1141) never
//! turns a correct checksum into the wrong zero representation.
//!
//! ```text
//!   rewrite a 16-bit word m -> m' in place:    csum = update16(csum, m, m')
//!   rewrite an IPv4 address a -> a':           csum = update32(csum, a, a')
//!     (for TCP/UDP too: the address is in their pseudo-header)
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` as big-endian 16-bit words, added to
/// `initial`. An odd trailing byte is padded with zero (RFC 1071 §4.1).
/// Not folded: pass the result to [`fold`] or [`finish`].
pub fn sum(initial: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Fold the carries of an unfolded sum into 16 bits (not inverted).
pub fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The checksum field value for words whose unfolded sum is `s`: `!fold(s)`.
pub fn finish(s: u32) -> u16 {
    !fold(s)
}

/// Checksum of `data` (with its checksum field zeroed, or the result is 0
/// when the field holds a correct checksum: that is how to verify one).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit word changes `old` → `new`.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for a 32-bit field (e.g. an IPv4 address), as two words.
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let c = update16(csum, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Unfolded sum of the IPv4 pseudo-header for TCP/UDP (RFC 9293 §3.1,
/// RFC 768): source, destination, zero+protocol, L4 length in bytes.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_size: u16) -> u32 {
    let s = sum(0, &src.octets());
    let s = sum(s, &dst.octets());
    s + u32::from(proto) + u32::from(l4_size)
}

/// Unfolded sum of the IPv6 pseudo-header for TCP/UDP/ICMPv6 (RFC 8200
/// §8.1): source, destination, upper-layer length (32 bits), next header.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_size: u32) -> u32 {
    let s = sum(0, &src.octets());
    let s = sum(s, &dst.octets());
    s + u32::from(next_header) + (l4_size >> 16) + (l4_size & 0xffff)
}

/// Checksum of an IPv4 header, treating its checksum field (bytes 10..12) as
/// zero. `header` is exactly the header (IHL * 4 bytes, options included).
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let before = header.get(..10).unwrap_or(header);
    let after = header.get(12..).unwrap_or(&[]);
    finish(sum(sum(0, before), after))
}

/// Compute and store the checksum of an IPv4 header in place. Does nothing
/// on a slice shorter than 20 bytes.
pub fn set_ipv4_header_checksum(header: &mut [u8]) {
    if header.len() < 20 {
        return;
    }
    let c = ipv4_header_checksum(header);
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_section3_example() {
        // Words 0001 f203 f4f5 f6f7: folded sum ddf2 (RFC 1071 §3).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(0, &[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_checksum_matches_etherparse() {
        let h = etherparse::Ipv4Header::new(
            40,
            63,
            etherparse::IpNumber::TCP,
            [10, 0, 0, 1],
            [192, 168, 1, 200],
        )
        .expect("valid header");
        let mut bytes = h.to_bytes().to_vec();
        bytes[10] = 0x5a; // garbage in the field must be ignored
        assert_eq!(ipv4_header_checksum(&bytes), h.calc_header_checksum());
        set_ipv4_header_checksum(&mut bytes);
        assert_eq!(checksum(&bytes), 0, "a correct header sums to zero");
    }

    #[test]
    fn rfc1624_update_equals_recompute() {
        let mut h = [
            0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0,
            0, 2,
        ];
        set_ipv4_header_checksum(&mut h);
        let c0 = u16::from_be_bytes([h[10], h[11]]);
        // TTL 64 -> 63 (word ttl|proto)
        let c1 = update16(c0, 0x4001, 0x3f01);
        h[8] = 0x3f;
        assert_eq!(c1, ipv4_header_checksum(&h));
        // dst 10.0.0.2 -> 172.16.9.254
        let c2 =
            update32(c1, u32::from_be_bytes([10, 0, 0, 2]), u32::from_be_bytes([172, 16, 9, 254]));
        h[16..20].copy_from_slice(&[172, 16, 9, 254]);
        assert_eq!(c2, ipv4_header_checksum(&h));
    }

    #[test]
    fn rfc1624_section3_minus_zero_case() {
        // RFC 1624 §3: header sums to 0xcd7a except the word 0x5555 changed
        // to 0x3285; eqn. 3 gives 0x0000, not 0xffff.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }
}
