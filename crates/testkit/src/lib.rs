//! midonet-testkit: what only tests use, apart from the product code.
//!
//! * [`skip`]: tests that cannot run fail, or skip on purpose and say so.
//! * [`bins`]: the daemons' binaries, fresh, for tests that run them.
//! * Everything of `midonet-netns` (the [`Lab`] of namespaces, hosts and
//!   VMs, the `ip` helpers) is re-exported, so a system test has one
//!   import for its harness. `midonet-netns` is product code (`midonet
//!   sandbox` runs it); this crate is only ever a dev-dependency.

pub mod bins;
pub mod skip;

pub use midonet_netns::*;
