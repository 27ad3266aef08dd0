//! The state the simulation reads but does not own, passed in as arguments
//! (sans-I/O): learned MAC tables, ARP caches, conntrack, the ICMP error
//! token bucket; and the writes it asks the caller to make.
//!
//! The agent implements [`StateView`] over its replicated state tables; the
//! cluster's trace endpoint and the tests use [`MemState`], a plain in-memory
//! table that applies [`StateWrite`]s. Seeded entries from the topology
//! (`MacTableEntry`, `ArpTableEntry`) live in the [`Snapshot`](crate::Snapshot)
//! and are consulted after the view, so a learned entry (a MAC move)
//! overrides a stale seed.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use midonet_model::{BridgeId, PortId, RouterId};
use midonet_state::{ConnKey, ConnTable};
use serde::Serialize;

use crate::tag::Tag;
use crate::MacAddr;

/// Result of a router ARP-cache lookup.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ArpLookup {
    /// Known. `stale` asks for a refresh: a reply/GARP re-learning the same
    /// MAC is written again (as in MidoNet's ARP table).
    Hit { mac: MacAddr, stale: bool },
    /// Unknown: the simulation sends an ARP request and reports
    /// [`Decision::ArpPending`](crate::Decision::ArpPending).
    Miss,
    /// The agent gave up resolving it (ARP timeout): the simulation answers
    /// ICMP host/net unreachable.
    Failed,
}

/// Read access to the replicated state tables.
pub trait StateView {
    /// The learned port of `mac` on `bridge`'s VLAN `vlan` (0 = untagged).
    fn mac_port(&self, bridge: BridgeId, vlan: u16, mac: MacAddr) -> Option<PortId>;
    /// The router's ARP cache entry for `ip` at time `now`.
    fn router_arp(&self, router: RouterId, ip: Ipv4Addr, now: Duration) -> ArpLookup;
    /// A learned (GARP) IP→MAC entry of a bridge. Seeded entries are in the
    /// snapshot; this is only the learned part.
    fn bridge_arp(&self, bridge: BridgeId, ip: Ipv4Addr) -> Option<MacAddr> {
        let _ = (bridge, ip);
        None
    }
}

/// Connection-tracking answers for `matchForwardFlow`/`matchReturnFlow`.
///
/// The simulation derives the key (`engine::conntrack` documents which
/// packet and which device) and asks whether that connection is tracked;
/// the view answers from the caller's table. `midonet_state::ConnTable`
/// is one; [`NoConntrack`] says nothing is tracked, so every packet starts
/// a forward flow, which is what a fresh agent with no flow state would
/// conclude.
pub trait ConntrackView {
    /// Whether a live connection has forward key `key` at `now`.
    fn tracked(&self, key: &ConnKey, now: Duration) -> bool {
        let _ = (key, now);
        false
    }
}

/// No connection state: everything is a forward flow.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConntrack;
impl ConntrackView for NoConntrack {}

impl ConntrackView for ConnTable {
    fn tracked(&self, key: &ConnKey, now: Duration) -> bool {
        self.is_return(&key.reversed(), now)
    }
}

/// A state-table write the simulation asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub enum StateWrite {
    /// Learn (or move) `mac` on `bridge`/`vlan` to `port`.
    Mac {
        bridge: BridgeId,
        vlan: u16,
        #[serde(serialize_with = "crate::result::ser_mac")]
        mac: MacAddr,
        port: PortId,
    },
    /// Learn `ip` → `mac` in `router`'s ARP cache (reply or GARP).
    RouterArp {
        router: RouterId,
        ip: Ipv4Addr,
        #[serde(serialize_with = "crate::result::ser_mac")]
        mac: MacAddr,
    },
    /// Learn `ip` → `mac` in `bridge`'s IP→MAC table (GARP).
    BridgeArp {
        bridge: BridgeId,
        ip: Ipv4Addr,
        #[serde(serialize_with = "crate::result::ser_mac")]
        mac: MacAddr,
    },
}

impl StateWrite {
    /// The tag of the entry written: flows that read it (or missed it) are
    /// stale once the write lands.
    pub fn tag(&self) -> Tag {
        match *self {
            StateWrite::Mac { bridge, vlan, mac, .. } => Tag::mac(bridge, vlan, mac),
            StateWrite::RouterArp { router, ip, .. } => Tag::arp(router, ip),
            StateWrite::BridgeArp { bridge, ip, .. } => Tag::bridge_arp(bridge, ip),
        }
    }
}

/// An in-memory [`StateView`]: real tables, not a mock — the trace endpoint
/// seeds it from a request and tests drive it through [`MemState::apply`].
#[derive(Debug, Clone, Default)]
pub struct MemState {
    pub macs: HashMap<(BridgeId, u16, MacAddr), PortId>,
    pub router_arp: HashMap<(RouterId, Ipv4Addr), MacAddr>,
    pub bridge_arp: HashMap<(BridgeId, Ipv4Addr), MacAddr>,
    /// ARP resolutions that timed out.
    pub arp_failed: HashMap<(RouterId, Ipv4Addr), ()>,
}

impl MemState {
    /// Apply a write returned by the simulation.
    pub fn apply(&mut self, w: &StateWrite) {
        match *w {
            StateWrite::Mac { bridge, vlan, mac, port } => {
                self.macs.insert((bridge, vlan, mac), port);
            }
            StateWrite::RouterArp { router, ip, mac } => {
                self.arp_failed.remove(&(router, ip));
                self.router_arp.insert((router, ip), mac);
            }
            StateWrite::BridgeArp { bridge, ip, mac } => {
                self.bridge_arp.insert((bridge, ip), mac);
            }
        }
    }
}

impl StateView for MemState {
    fn mac_port(&self, bridge: BridgeId, vlan: u16, mac: MacAddr) -> Option<PortId> {
        self.macs.get(&(bridge, vlan, mac)).copied()
    }
    fn router_arp(&self, router: RouterId, ip: Ipv4Addr, _now: Duration) -> ArpLookup {
        if let Some(mac) = self.router_arp.get(&(router, ip)) {
            ArpLookup::Hit { mac: *mac, stale: false }
        } else if self.arp_failed.contains_key(&(router, ip)) {
            ArpLookup::Failed
        } else {
            ArpLookup::Miss
        }
    }
    fn bridge_arp(&self, bridge: BridgeId, ip: Ipv4Addr) -> Option<MacAddr> {
        self.bridge_arp.get(&(bridge, ip)).copied()
    }
}

/// A token bucket limiting generated ICMP errors (RFC 1812 §4.3.2.8 asks
/// routers to rate-limit them). Its state is owned by the caller (one per
/// simulation worker) and time comes in as an argument.
#[derive(Debug, Clone)]
pub struct IcmpRateLimiter {
    per_sec: u64,
    burst: u64,
    /// Tokens scaled by 1e9 (token-nanoseconds), so refill is integer math.
    tokens: u64,
    last: Option<Duration>,
}

const SCALE: u64 = 1_000_000_000;

impl IcmpRateLimiter {
    /// `per_sec` errors per second on average, bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let burst = u64::from(burst.max(1));
        IcmpRateLimiter { per_sec: u64::from(per_sec), burst, tokens: burst * SCALE, last: None }
    }
    /// Never limits (tests, traces).
    pub fn unlimited() -> Self {
        IcmpRateLimiter::new(u32::MAX, u32::MAX)
    }
    /// Take a token at `now` if there is one.
    pub fn try_take(&mut self, now: Duration) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_sub(last).as_nanos().min(u128::from(u64::MAX)) as u64;
            let add = dt.saturating_mul(self.per_sec);
            self.tokens = self.tokens.saturating_add(add).min(self.burst.saturating_mul(SCALE));
        }
        self.last = Some(now.max(self.last.unwrap_or_default()));
        if self.tokens >= SCALE {
            self.tokens -= SCALE;
            true
        } else {
            false
        }
    }
}

impl Default for IcmpRateLimiter {
    /// 100 errors/s, bursts of 50 — in line with common router defaults.
    fn default() -> Self {
        IcmpRateLimiter::new(100, 50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_limits_bursts_and_refills_with_time() {
        let mut b = IcmpRateLimiter::new(10, 2);
        let t0 = Duration::from_secs(100);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        // 10/s: one token after 100 ms.
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(150)));
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        // Time going backwards never mints tokens.
        assert!(!b.try_take(t0));
    }

    #[test]
    fn mem_state_applies_writes() {
        let mut s = MemState::default();
        let b: BridgeId = uuid::Uuid::from_u128(1).into();
        let p: PortId = uuid::Uuid::from_u128(2).into();
        let m = MacAddr([2, 0, 0, 0, 0, 9]);
        assert_eq!(s.mac_port(b, 0, m), None);
        s.apply(&StateWrite::Mac { bridge: b, vlan: 0, mac: m, port: p });
        assert_eq!(s.mac_port(b, 0, m), Some(p));
        let r: RouterId = uuid::Uuid::from_u128(3).into();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(s.router_arp(r, ip, Duration::ZERO), ArpLookup::Miss);
        s.arp_failed.insert((r, ip), ());
        assert_eq!(s.router_arp(r, ip, Duration::ZERO), ArpLookup::Failed);
        s.apply(&StateWrite::RouterArp { router: r, ip, mac: m });
        assert_eq!(s.router_arp(r, ip, Duration::ZERO), ArpLookup::Hit { mac: m, stale: false });
    }
}
