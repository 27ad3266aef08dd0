//! Ethernet MAC addresses and masks in MidoNet's REST notations.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit MAC address; `aa:bb:cc:dd:ee:ff` on the wire (`-` separators are
/// accepted too, as MidoNet uses them in URIs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
    /// A random locally administered unicast MAC (`02:xx:…`), for router
    /// ports created without one. Randomness comes from the caller.
    pub fn local_from(bytes: [u8; 5]) -> MacAddr {
        MacAddr([0x02, bytes[0], bytes[1], bytes[2], bytes[3], bytes[4]])
    }
    /// The form used inside URIs: `aa-bb-cc-dd-ee-ff`.
    pub fn to_uri_string(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}
impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"));
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.is_empty() || p.len() > 2 {
                return Err(format!("`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"));
            }
            *o = u8::from_str_radix(p, 16)
                .map_err(|_| format!("`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"))?;
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A 48-bit mask for `dlSrcMask`/`dlDstMask`, written `ffff.ffff.0000` as in
/// MidoNet's REST API (the colon MAC form is accepted too).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MacMask(pub u64);

impl MacMask {
    pub const EXACT: MacMask = MacMask(0xffff_ffff_ffff);

    pub fn matches(&self, rule: MacAddr, pkt: MacAddr) -> bool {
        (mac_u64(rule) & self.0) == (mac_u64(pkt) & self.0)
    }
}

/// A MAC as the low 48 bits of a u64.
pub fn mac_u64(m: MacAddr) -> u64 {
    m.0.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

impl fmt::Display for MacMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(f, "{:04x}.{:04x}.{:04x}", (v >> 32) & 0xffff, (v >> 16) & 0xffff, v & 0xffff)
    }
}

impl FromStr for MacMask {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains(':') {
            return s.parse::<MacAddr>().map(|m| MacMask(mac_u64(m)));
        }
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.len() != 4) {
            return Err(format!("`{s}` is not a MAC mask (want ffff.ffff.ffff)"));
        }
        let mut v = 0u64;
        for p in parts {
            let w = u16::from_str_radix(p, 16)
                .map_err(|_| format!("`{s}` is not a MAC mask (want ffff.ffff.ffff)"))?;
            v = (v << 16) | u64::from(w);
        }
        Ok(MacMask(v))
    }
}

impl Serialize for MacMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for MacMask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_both_separators_and_prints_colons() {
        let m: MacAddr = "02-00-00-AA-bb-0c".parse().expect("dash form");
        assert_eq!(m.to_string(), "02:00:00:aa:bb:0c");
        assert_eq!(m.to_uri_string(), "02-00-00-aa-bb-0c");
        assert!(m.is_unicast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!("02:00:00".parse::<MacAddr>().is_err());
        assert!("zz:00:00:00:00:00".parse::<MacAddr>().is_err());
    }

    #[test]
    fn mask_notation_round_trips_and_matches() {
        let m: MacMask = "ffff.ffff.0000".parse().expect("mask");
        assert_eq!(m.to_string(), "ffff.ffff.0000");
        let a: MacAddr = "02:00:00:00:11:22".parse().expect("mac");
        let b: MacAddr = "02:00:00:00:33:44".parse().expect("mac");
        assert!(m.matches(a, b));
        assert!(!MacMask::EXACT.matches(a, b));
    }
}
