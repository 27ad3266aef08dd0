//! The `ebpf` provider: the kernel forwards, the agent decides.
//!
//! See `bpf/datapath.c` for the programs and [`abi`] for what runs in the
//! kernel and what stays in the agent.

pub mod abi;
pub mod kernel;
pub mod loader;
