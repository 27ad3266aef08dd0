//! midonet-agent: the per-host agent (ARCHITECTURE.md §2, §5).
//!
//! One agent runs on every hypervisor or gateway, inside the host's network
//! namespace. It registers the host with the cluster (a stable id kept on
//! disk), keeps a session lease alive, subscribes to the topology, binds the
//! exterior ports assigned to this host to local interfaces, and owns the
//! datapath: the first packet of every flow is simulated against an
//! immutable snapshot of the whole virtual topology, the result installed as
//! a megaflow tagged with everything it depended on, and packets for ports
//! on other hosts are VXLAN-tunnelled straight to the egress host with the
//! egress port's tunnel key, where they are delivered without simulation.
//!
//! ```text
//!  netlink doorbell + /sys scan ──> scanner ──────────── interfaces ─┐
//!  cluster (gRPC, failover) ──> session ── snapshot/deltas ──────────┤
//!        ^  register, keep-alive, port active, MAC/ARP, interfaces   v
//!        └──────────────────────────────────────────────────────── core ── ArcSwap<View> (sim Snapshot,
//!                                                                    │      egress/ingress maps)
//!                                         vports, tunnel keys, tags  v           │ load
//!  VM veths / VXLAN UDP ──> datapath (EMC + megaflows) ──miss──> handler: simulate, translate,
//!                                ^                                  install, park on ARP
//!                                └──── flows + generated packets ───┘
//!  metrics: GET /metrics (Prometheus)
//! ```
//!
//! Modules, one per subsystem (the service skeleton every crate shares):
//! [`config`], [`tasks`] (start/stop and the core loop), [`error`],
//! [`metrics`], [`session`] (the cluster), [`cache`] (topology and state
//! tables, invalidation tags), [`scanner`] (interfaces), [`handler`] (the
//! miss path), [`host_id`], [`tunnel`] (who may send to this host over
//! the tunnel).
//!
//! # Invariants
//!
//! * The view is replaced, never mutated; the simulation reads it without a
//!   lock. A new view is stored before the flows it makes stale are
//!   invalidated (see [`tasks`]).
//! * Every learned state entry is applied locally first, then published
//!   under the agent's session lease; the cluster's echo is a no-op.
//! * After a disconnect the agent keeps forwarding with what it has and
//!   resumes the subscription from its last applied revision.
//!
//! # Not here yet
//!
//! * Dynamic NAT bindings: the table exists and peers' bindings are
//!   imported, but the simulation does not create any yet.
//! * ARP requests are sent once per packet that misses, not retransmitted
//!   on a timer; after the 5 s wait the next hop is marked failed for 10 s
//!   (ICMP host unreachable), then asked again.
//! * The tunnel socket binds `tunnel_bind` (default any address); the
//!   source address of outgoing VXLAN is the kernel's choice, which is the
//!   tunnel-zone address on a host with one underlay interface.
//! * Interface scanning reads sysfs, woken by netlink; it does not parse
//!   netlink messages itself.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cache;
pub mod config;
pub mod error;
pub mod flowstate;
pub mod fragments;
pub mod handler;
pub mod health;
pub mod host_id;
pub mod metrics;
pub mod recirc;
pub mod scanner;
pub mod session;
mod simulate;
pub mod tasks;
pub mod tunnel;

pub use config::{Config, DatapathKind};
pub use error::AgentError;
pub use tasks::{run, start, Agent, DpChoice, StartOptions};
