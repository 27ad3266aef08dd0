//! midonet-state: the flow-state tables, sans-I/O.
//!
//! What MidoNet keeps per connection (reference §2.10, §2.11, §3.1), as
//! plain data structures: no clock (every time is a [`Duration`] since an
//! epoch the caller chooses and passes in), no threads, no randomness but
//! what the caller passes, no I/O. The agent owns them, feeds them from the
//! simulation's state writes, from peers' flow-state messages
//! (`midonet_wire::flowstate`) and from the datapath's flow counters, and
//! drives their expiry; the simulation reads them through its
//! `ConntrackView` seam.
//!
//! ```text
//!                       ┌──────────────── midonet-state ───────────────┐
//!  sim state writes ──> │ ConnTable   ConnKey → state, expiry          │ ──> sim (ConntrackView)
//!  peer messages    ──> │ NatTable    NatKey → NatBinding, reverse idx │ ──> expired keys → flow
//!  flow counters    ──> │ PortBlocks  SNAT blocks held here / elsewhere│     invalidation (tags)
//!  now, rand        ──> └──────────────────────────────────────────────┘ ──> NeedBlock → store
//! ```
//!
//! * [`key`]: [`ConnKey`], MidoNet's `ConnTrackKey`: 5-tuple (ICMP echo id
//!   for both ports) plus the [`TrackerId`] of the device or stateful port
//!   group that tracks it. The other direction's key is derived
//!   ([`ConnKey::reversed`]), never searched.
//! * [`conntrack`]: [`ConnTable`], with the kernel's timeouts, refresh from
//!   datapath activity, FIN/RST shortening and a counted eviction policy.
//! * [`nat`]: [`NatTable`], forward bindings with the reverse lookup that
//!   `rev_snat`/`rev_dnat` use derived from them; ICMP echo ids translated.
//! * [`message`]: to and from flow-state messages
//!   (`midonet_wire::flowstate`): [`message::install`] puts a received
//!   message into the tables, total over untrusted input.
//! * [`snat`]: [`PortBlocks`], the SNAT port-block lease view (64-port
//!   blocks per device and NAT IP) and [`allocate_snat`].
//!
//! # Memory per conntrack entry
//!
//! An entry is a 40-byte slot (30-byte key, 1-byte state, 8-byte expiry in
//! milliseconds) in a dense vector, plus a 5-byte bucket (a `u32` slot
//! number and hashbrown's control byte) in the index; the index's buckets
//! are a power of two at most 7/8 full. Measured with
//! [`ConnTable::heap_size`] (the test `one_million_entries_fit_the_budget`
//! and `cargo run --release -p midonet-state --example conntrack_memory`,
//! which also reports the process RSS growth):
//!
//! | entries | heap bytes | bytes per entry | RSS growth per entry |
//! |---------|------------|-----------------|----------------------|
//! | 1,000,000 (grown by inserts) | 52,428,816 | **52.4** | 50.6 |
//!
//! i.e. well under the 128-byte target (`nf_conntrack` entries are about
//! 320 bytes in the kernel). The figure is capacity, not just length: the
//! vector grows by doubling (2^20 slots at 1 M) and the index to 2^21
//! buckets.
//!
//! # What was rejected
//!
//! * Storing the return key as its own entry (MidoNet's `RETURN` value):
//!   twice the entries for the same answer.
//! * A timer wheel or a heap ordered by expiry: another 16+ bytes per entry;
//!   an incremental clock-hand sweep does the same work in bounded steps.
//! * `std`'s `HashMap<ConnKey, Entry>`: its buckets hold the whole entry,
//!   so the 1/8 to 1/2 empty buckets of a growing table cost 41 bytes each
//!   instead of 5, and nothing can be visited a few entries at a time.

use std::time::Duration;

pub mod conntrack;
pub mod key;
pub mod message;
pub mod nat;
pub mod snat;
mod table;

pub use conntrack::{
    ConnInfo, ConnState, ConnStats, ConnTable, ConntrackCfg, Direction, Timeouts, Tracked,
};
pub use key::{proto, ConnKey, TrackerId};
pub use nat::{NatBinding, NatEntry, NatError, NatKey, NatKind, NatStats, NatTable};
pub use snat::{allocate_snat, Alloc, BlockKey, PortBlocks, SnatTarget};

/// A new connection could not be tracked: the table is full of live,
/// replied connections (see [`conntrack`], eviction policy).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("conntrack table full")]
pub struct Full;

/// Milliseconds since the epoch, saturating (5 days fit easily; an epoch
/// 584 million years old does not, and saturates instead of wrapping).
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
