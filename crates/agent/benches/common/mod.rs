//! What the agent's benches share: an agent's `Shared` state around a
//! view, with the channels its handler writes to kept open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_agent::flowstate::{FlowState, Replicator};
use midonet_agent::handler::{Shared, View, WaitingRoom};
use midonet_agent::metrics::Metrics;
use midonet_agent::session::Command;
use midonet_sim::{MemState, Tag};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The receiving ends of what a handler sends the agent's core; kept
/// alive (unread) for as long as the bench runs.
pub type Outboxes = (UnboundedReceiver<Command>, UnboundedReceiver<Vec<Tag>>);

/// An agent's shared state: `view`, learned entries `state`, flow state
/// for `conns` entries, replicating through `replicator`.
pub fn shared(
    view: View,
    state: MemState,
    conns: usize,
    replicator: Option<Replicator>,
) -> (Arc<Shared>, Outboxes) {
    let (commands, crx) = unbounded_channel();
    let (stale, srx) = unbounded_channel();
    let shared = Arc::new(Shared {
        host_id: midonet_model::HostId::random(),
        view: arc_swap::ArcSwap::from_pointee(view),
        state: Arc::new(RwLock::new(state)),
        waiting: Mutex::new(WaitingRoom::default()),
        metrics: Metrics::new(),
        commands,
        stale,
        flow_idle_ms: 60_000,
        arp_wait: Duration::from_secs(5),
        epoch: Instant::now(),
        flowstate: Mutex::new(FlowState::new(conns, 1)),
        replicator,
        state_log: None,
        pending_stale: Mutex::new(Vec::new()),
        migrations: Default::default(),
        rev_nat: Default::default(),
        recirc: Default::default(),
        fragments: Default::default(),
    });
    (shared, (crx, srx))
}
