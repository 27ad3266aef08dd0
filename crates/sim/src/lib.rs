//! midonet-sim: the virtual-topology simulation, sans-I/O.
//!
//! The agent simulates the first packet of every flow across the whole
//! virtual topology (bridges, routers, chains, mirrors) and installs the
//! result as a megaflow. This crate is that simulation and nothing else: no
//! sockets, no clock, no RNG of its own. Time, the ECMP hash seed and the
//! state tables are arguments; the result says what to do, what was read
//! (the mask), what it depended on (tags) and what to write back.
//!
//! ```text
//!   Topology ──Snapshot::build──> Snapshot (immutable, Arc-swapped by the agent)
//!                                    │
//!   SimInput {ingress, key, frame,   │    StateView (MAC tables, ARP caches)
//!             now, seed, trace} ─────┼──> ConntrackView (forward/return seam)
//!                                    v    IcmpRateLimiter (token bucket state)
//!                               simulate_into
//!                                    │
//!   SimResult { decision, actions (rewrites + ToPort), mask, tags,
//!               generated packets, state writes, trace, uncacheable }
//! ```
//!
//! * [`Snapshot::build`] compiles the topology ([`snapshot`]).
//! * [`simulate`] / [`simulate_into`] run one packet ([`engine`] has the
//!   pipeline and its invariants).
//! * [`Tag`] and [`tags_for_change`] are the invalidation contract ([`tag`]
//!   documents the rule).
//! * [`StateView`], [`ConntrackView`], [`MemState`], [`IcmpRateLimiter`]
//!   are the state seams ([`state`]).
//! * [`builder`] builds topologies in tests, benches and tools;
//!   [`fuzzing`] is the fuzz entry point shared by `fuzz/` and `cargo test`.
//!
//! What is not here yet: stateful conntrack and dynamic NAT (the rules
//! parse; dynamic NAT drops with [`DropReason::DynamicNatUnsupported`]),
//! the L4 load balancer, DHCP (the agent answers it before simulation),
//! IPv6 routing (router ports drop IPv6, as MidoNet's do).

pub mod builder;
pub mod engine;
pub mod fuzzing;
mod packets;
pub mod result;
pub mod snapshot;
pub mod state;
pub mod tag;

pub use engine::{simulate, simulate_into, SimInput, MAX_DEVICES};
pub use midonet_flow::{
    diff_actions, Action, Actions, FieldId, FlowKey, FlowMask, FlowMatch, FragType, InPort, MacAddr,
};
pub use result::{
    Decision, DeviceKind, DropLifetime, DropReason, GenKind, GenTarget, GeneratedPacket, Hook,
    MirrorPoint, SimAction, SimResult, TraceStep,
};
pub use snapshot::Snapshot;
pub use state::{ArpLookup, ConntrackView, IcmpRateLimiter, MemState, NoConntrack, StateView, StateWrite};
pub use tag::{tags_for_change, tags_for_store_entry, StoreObject, Tag};
