//! The state the simulation reads but does not own, passed in as arguments
//! (sans-I/O): learned MAC tables, ARP caches, conntrack and NAT, the ICMP
//! error token bucket; and the writes it asks the caller to make.
//!
//! The agent implements [`StateView`] over its replicated state tables; the
//! cluster's trace endpoint and the tests use [`MemState`], a plain in-memory
//! table that applies [`StateWrite`]s. Seeded entries from the topology
//! (`MacTableEntry`, `ArpTableEntry`) live in the [`Snapshot`](crate::Snapshot)
//! and are consulted after the view, so a learned entry (a MAC move)
//! overrides a stale seed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use midonet_model::{BridgeId, PortId, RouterId};
use midonet_state::{
    allocate_snat, Alloc, ConnKey, ConnState, ConnTable, NatBinding, NatError, NatKey, NatKind,
    NatTable, PortBlocks, SnatTarget,
};
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

/// Flow state for one simulation: connection tracking for
/// `matchForwardFlow`/`matchReturnFlow`, and NAT bindings for the dynamic
/// `snat`/`dnat` rules and `rev_snat`/`rev_dnat`.
///
/// The simulation derives the keys (`engine::conntrack` and `engine::nat`
/// document which packet and which device) and the view answers from the
/// caller's tables. Conntrack is read-only here (new connections come back
/// in [`SimResult::conntrack`](crate::SimResult::conntrack)); NAT
/// allocation cannot wait, because the next rule and the route lookup see
/// the translated packet, so [`snat_allocate`](Self::snat_allocate) and
/// [`nat_bind`](Self::nat_bind) *store* the binding. They take `&self`:
/// the caller holds its tables for the duration of one simulation and
/// implements them with interior mutability ([`FlowTablesView`] is that
/// implementation over `midonet_state`'s tables, a `RefCell` around
/// `&mut` borrows). Every binding created or used is also reported in
/// [`SimResult::nat`](crate::SimResult::nat) for replication.
///
/// Every method has a default: nothing tracked, no binding, and for
/// allocation what an agent with no flow state would get (SNAT: "claim a
/// block first", DNAT: the pick, not stored). `midonet_state::ConnTable`
/// answers conntrack only; [`NoConntrack`] is all defaults.
pub trait ConntrackView {
    /// Whether a live connection has forward key `key` at `now`.
    fn tracked(&self, key: &ConnKey, now: Duration) -> bool {
        let _ = (key, now);
        false
    }

    /// The live binding of a forward key (a `snat`/`dnat` rule reuses it).
    fn nat_binding(&self, key: &NatKey, now: Duration) -> Option<NatBinding> {
        let _ = (key, now);
        None
    }

    /// The live binding of `kind` whose return traffic shows key `ret`, as
    /// its forward key and binding (`rev_snat`/`rev_dnat`; what they restore
    /// is `key.return_binding()`). `midonet_state::NatTable::reverse_entry`.
    fn nat_reverse(
        &self,
        kind: NatKind,
        ret: &ConnKey,
        now: Duration,
    ) -> Option<(NatKey, NatBinding)> {
        let _ = (kind, ret, now);
        None
    }

    /// Allocate and store a SNAT binding for `key` (no live binding: the
    /// simulation asked [`nat_binding`](Self::nat_binding) first) from
    /// `targets`, as `midonet_state::allocate_snat` does: a port free
    /// towards the connection's destination, from a block this host holds.
    /// `rand` spreads the choice (a hash of the key and the simulation's
    /// seed). `NeedBlock` must not invent the block: the simulation reports
    /// it and drops the packet for now.
    fn snat_allocate(
        &self,
        key: &NatKey,
        targets: &[SnatTarget],
        rand: u64,
        now: Duration,
    ) -> Alloc {
        // No blocks held: the block a fresh agent would have to claim.
        PortBlocks::new().allocate(key.conn.tracker, targets, rand, now, |_, _| true)
    }

    /// Store the DNAT binding `key` → `binding` the simulation picked.
    /// `Err(ReturnKeyInUse)` makes it try another pick; `Err(Bound(b))`
    /// (raced with another writer) uses `b`; `Err(Full)` drops.
    fn nat_bind(&self, key: &NatKey, binding: NatBinding, now: Duration) -> Result<(), NatError> {
        let _ = (key, binding, now);
        Ok(())
    }

    /// Remove the binding of `key`: the load balancer drops one whose
    /// member left the pool (or, sticky, went down) before it binds anew.
    fn nat_unbind(&self, key: &NatKey) {
        let _ = key;
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

/// [`ConntrackView`] over `midonet_state`'s tables, borrowed for one
/// simulation: the agent holds its tables (locked) while it simulates and
/// wraps them in one of these. Bindings get the conntrack timeout of a new
/// connection of their protocol (`ConntrackCfg::timeouts`, state `New`)
/// as their first expiry; the caller refreshes them from flow activity
/// (`NatTable::touch`), as it does connections.
pub struct FlowTablesView<'a> {
    conns: &'a ConnTable,
    nat: RefCell<&'a mut NatTable>,
    blocks: RefCell<&'a mut PortBlocks>,
}

impl<'a> FlowTablesView<'a> {
    pub fn new(conns: &'a ConnTable, nat: &'a mut NatTable, blocks: &'a mut PortBlocks) -> Self {
        FlowTablesView { conns, nat: RefCell::new(nat), blocks: RefCell::new(blocks) }
    }

    fn expires(&self, key: &NatKey, now: Duration) -> Duration {
        now + self.conns.cfg().timeouts.of(key.conn.proto, ConnState::New)
    }
}

impl ConntrackView for FlowTablesView<'_> {
    fn tracked(&self, key: &ConnKey, now: Duration) -> bool {
        self.conns.tracked(key, now)
    }
    fn nat_binding(&self, key: &NatKey, now: Duration) -> Option<NatBinding> {
        self.nat.borrow().get(key, now)
    }
    fn nat_reverse(
        &self,
        kind: NatKind,
        ret: &ConnKey,
        now: Duration,
    ) -> Option<(NatKey, NatBinding)> {
        self.nat.borrow().reverse_entry(kind, ret, now)
    }
    fn snat_allocate(
        &self,
        key: &NatKey,
        targets: &[SnatTarget],
        rand: u64,
        now: Duration,
    ) -> Alloc {
        let exp = self.expires(key, now);
        let mut nat = self.nat.borrow_mut();
        let mut blocks = self.blocks.borrow_mut();
        allocate_snat(&mut nat, &mut blocks, *key, targets, rand, exp, now)
    }
    fn nat_bind(&self, key: &NatKey, binding: NatBinding, now: Duration) -> Result<(), NatError> {
        let exp = self.expires(key, now);
        self.nat.borrow_mut().insert(*key, binding, exp, now)
    }
    fn nat_unbind(&self, key: &NatKey) {
        self.nat.borrow_mut().remove(key);
    }
}

/// Owned flow-state tables behind a [`ConntrackView`] (tests and the trace
/// endpoint): conntrack, NAT and the SNAT lease view, with the writes of a
/// result applied by [`MemFlowState::apply`] and blocks granted by
/// [`MemFlowState::grant`] (standing in for the store).
#[derive(Debug)]
pub struct MemFlowState {
    pub tables: RefCell<FlowTables>,
}

/// The tables of a [`MemFlowState`].
#[derive(Debug, Clone)]
pub struct FlowTables {
    pub conns: ConnTable,
    pub nat: NatTable,
    pub blocks: PortBlocks,
}

impl Default for MemFlowState {
    fn default() -> Self {
        MemFlowState::new()
    }
}

impl MemFlowState {
    /// Empty tables (fixed hash seeds: tests).
    pub fn new() -> Self {
        MemFlowState {
            tables: RefCell::new(FlowTables {
                conns: ConnTable::new(midonet_state::ConntrackCfg::default(), 7),
                nat: NatTable::new(1 << 16, 7),
                blocks: PortBlocks::new(),
            }),
        }
    }

    /// The store granted SNAT block `b` to this host.
    pub fn grant(&self, b: midonet_state::BlockKey, now: Duration) {
        self.tables.borrow_mut().blocks.granted(b, now);
    }

    /// Apply a result's conntrack writes (its NAT bindings are stored
    /// already). Returns false if the conntrack table was full.
    pub fn apply(&self, r: &crate::SimResult, now: Duration) -> bool {
        let mut t = self.tables.borrow_mut();
        r.conntrack.iter().all(|c| t.conns.track(c.key, c.tcp_flags, now).is_ok())
    }
}

impl TablesPerCall for MemFlowState {
    fn with<R>(&self, f: impl FnOnce(&FlowTablesView<'_>) -> R) -> R {
        let mut t = self.tables.borrow_mut();
        let FlowTables { conns, nat, blocks } = &mut *t;
        f(&FlowTablesView::new(conns, nat, blocks))
    }
}

/// Tables reached anew for each question (borrowed, or locked, for one
/// call only): the [`ConntrackView`] of anything that implements this is
/// [`FlowTablesView`]'s, method by method. [`MemFlowState`] borrows a
/// `RefCell`; the agent locks its shared tables per lookup, so that
/// simulations on several threads take turns only for the lookups.
pub trait TablesPerCall {
    fn with<R>(&self, f: impl FnOnce(&FlowTablesView<'_>) -> R) -> R;
}

impl<T: TablesPerCall> ConntrackView for T {
    fn tracked(&self, key: &ConnKey, now: Duration) -> bool {
        self.with(|v| v.tracked(key, now))
    }
    fn nat_binding(&self, key: &NatKey, now: Duration) -> Option<NatBinding> {
        self.with(|v| v.nat_binding(key, now))
    }
    fn nat_reverse(
        &self,
        kind: NatKind,
        ret: &ConnKey,
        now: Duration,
    ) -> Option<(NatKey, NatBinding)> {
        self.with(|v| v.nat_reverse(kind, ret, now))
    }
    fn snat_allocate(
        &self,
        key: &NatKey,
        targets: &[SnatTarget],
        rand: u64,
        now: Duration,
    ) -> Alloc {
        self.with(|v| v.snat_allocate(key, targets, rand, now))
    }
    fn nat_bind(&self, key: &NatKey, binding: NatBinding, now: Duration) -> Result<(), NatError> {
        self.with(|v| v.nat_bind(key, binding, now))
    }
    fn nat_unbind(&self, key: &NatKey) {
        self.with(|v| v.nat_unbind(key))
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
