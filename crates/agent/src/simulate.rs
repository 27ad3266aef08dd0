//! The one place the agent calls the simulation, so the call's shape
//! lives in one spot.

use std::time::Duration;

use midonet_datapath::FlowKey;
use midonet_model::PortId;
use midonet_sim::{ConntrackView, IcmpRateLimiter, MemState, SimResult, Snapshot};

/// ECMP hash seed. The same on every agent, so that every host picks the
/// same path for a flow.
const HASH_SEED: u64 = 0x6d69_646f_6e65_7452;

/// Simulates `frame` (keyed `key`) entering at `ingress`, into `out`.
/// `split`: the flow may be split at a reverse NAT (the datapath has a
/// reverse-NAT table; `crate::recirc`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    snap: &Snapshot,
    state: &MemState,
    conntrack: &dyn ConntrackView,
    icmp: &mut IcmpRateLimiter,
    key: &FlowKey,
    frame: &[u8],
    ingress: PortId,
    now: Duration,
    generated: bool,
    split: bool,
    out: &mut SimResult,
) {
    let input = midonet_sim::SimInput {
        ingress,
        key: *key,
        frame,
        now,
        hash_seed: HASH_SEED,
        trace: false,
        generated,
        split_reverse_nat: split,
    };
    midonet_sim::simulate_into(snap, state, conntrack, icmp, &input, out);
}
