//! The gRPC topology service agents subscribe to (`midonet-proto`).
//!
//! ```text
//!  agent ──Subscribe(from)──> range(/midonet/v1/)@R ─ Snapshot{R} ─┐
//!                             watch(/midonet/v1/, R+1 | from) ─────┴─ Delta{rev} ... ──> agent
//!                                  └─ Err(Compacted) ─ ResyncNeeded ─ Snapshot ─ Delta ...
//!  agent ──RegisterHost──> grant lease L; txn{ hosts/<id>, state/hosts/<id>/alive@L, interfaces }
//!  agent ──KeepAlive(L)──> keep_alive(L)                          (NOT_FOUND: register again)
//!  agent ──SetPortActive / PublishMac / PublishArp──> put @L | delete
//! ```
//!
//! Everything here is a thin mapping onto the [`Store`] contract, so it
//! works the same on the embedded store and on etcd, and any number of
//! cluster replicas can serve agents at once (they hold no state: a session
//! *is* a store lease, and its keys vanish with it).
//!
//! Invariants:
//!
//! * A snapshot and the watch after it come from one `range` revision R and
//!   a watch from R + 1, which the store contract guarantees has no gap and
//!   no duplicate. Deltas are one per store revision, in order.
//! * Only topology keys (those [`ObjectKind::parse_key`] knows) and state
//!   keys ([`midonet_proto::STATE_ROOT`]) are streamed; counters and
//!   internal guard keys are not the agents' business. A revision whose
//!   changes are all filtered out sends nothing.
//! * A compacted `from_revision` (or one from the future: the store was
//!   replaced) gives an explicit `ResyncNeeded` followed by a full snapshot
//!   on the same stream, never a silent gap.
//! * State writes carry the session lease; a write with an expired session
//!   fails with `NOT_FOUND` so the agent re-registers instead of writing
//!   keys that would never be cleaned up.
//! * What an agent sends is checked by the pure functions of
//!   [`crate::agent_input`] before anything is written; a bad field is
//!   `INVALID_ARGUMENT` naming it.
//! * A reconnect storm reads the store once, not once per agent: snapshots
//!   are shared by everyone who asks at about the same time and streamed a
//!   chunk at a time ([`snapshots`]); and the deltas after them come from
//!   one store watch shared by every subscriber ([`fanout`]), a subscriber
//!   falling back to a watch of its own when it lags or starts too far back.
//! * Snapshots go out in chunks of at most [`SNAPSHOT_CHUNK_BYTES`] of keys
//!   and values, all at one revision (`more` on all but the last), so no
//!   message comes near the transport limit ([`MAX_MESSAGE_BYTES`], set
//!   explicitly on both sides) however large the topology grows.
//!
//! Who may do what ([`AgentAuth::Credentials`], the default):
//!
//! | call | the caller (its host credential) must be |
//! |---|---|
//! | every call | an enrolled host ([`crate::host_credentials`]), else `UNAUTHENTICATED` |
//! | `RegisterHost`, `ReportInterfaces`, claims, member status | the `host_id` of the request, else `PERMISSION_DENIED` |
//! | calls carrying a `session` | that host's live session (`state/hosts/<id>/alive` under that lease), else `NOT_FOUND` |
//! | `SetPortActive` | the host the port is bound to (to clear it: or the host that set it) |
//! | `PublishMac` | for a port of that bridge, bound to the caller or interior (a router's side) |
//! | `PublishArp` | for an existing router or bridge; an entry another live host wrote is theirs to delete |
//!
//! Refusals are counted (`midonet_grpc_refused_total{rpc, reason}`) and
//! logged at debug; the message never names another host's objects.

//!
//! The files:
//!
//! * this one: the options, the service value, `serve`, and what the
//!   other files share (store errors as statuses, store changes as deltas);
//! * `access`: who is calling ([`AgentAuth`]), whether it may act for a
//!   host or a session, and the refusal reasons;
//! * `feed`: one subscriber's stream (snapshot, then deltas, resync);
//! * `snapshots`: shared whole-topology snapshots sent in chunks;
//! * `fanout`: the one store watch shared by every subscriber;
//! * `writes`: indexed writes of host records and leased state keys;
//! * `rpcs`: the gRPC calls themselves, each checked then written.
//!
//! [`ObjectKind::parse_key`]: midonet_model::ObjectKind::parse_key

use std::future::Future;
use std::sync::Arc;

use midonet_proto::{pb, TopologyServer};
use midonet_store::{Store, StoreError, WatchBatch, WatchEvent};
use tokio::sync::watch;
use tonic::Status;

pub use crate::agent_input::DEFAULT_SESSION_TTL_SECS;
use crate::host_credentials::Checker;
use fanout::Fanout;
use snapshots::Snapshots;
pub use snapshots::{SubscribeStream, SNAPSHOT_CHUNK_BYTES};

mod access;
mod fanout;
mod feed;
mod rpcs;
mod snapshots;
mod writes;

/// Messages buffered per subscriber before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 256;
pub use midonet_proto::MAX_MESSAGE_BYTES;

/// How the service decides who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentAuth {
    /// Every call carries an enrolled host's credential, and a host acts
    /// only for itself (see the module docs).
    #[default]
    Credentials,
    /// No credential is asked for and every caller may act for any host:
    /// only for a private development setup. Logged at start.
    Open,
}

/// How [`serve`] serves.
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub auth: AgentAuth,
    /// TLS; `None` serves plain HTTP/2.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Where refusals are counted (a detached family when not exported).
    pub refused: crate::metrics::Refused,
}

/// The service implementation over a store.
#[derive(Clone)]
pub struct TopologyServiceImpl {
    store: Arc<dyn Store>,
    /// Turns true when the server stops: subscriptions end so that a
    /// graceful shutdown does not wait forever on endless streams.
    stopping: watch::Receiver<bool>,
    auth: AgentAuth,
    checker: Arc<Checker>,
    refused: crate::metrics::Refused,
    /// Whole-topology snapshots, shared by subscribers that ask at once.
    snapshots: Arc<Snapshots>,
    /// The one store watch whose changes go to every subscriber.
    fanout: Arc<Fanout>,
}

impl TopologyServiceImpl {
    /// A service whose subscriptions end when `stopping` turns true.
    pub fn new(
        store: Arc<dyn Store>,
        stopping: watch::Receiver<bool>,
        opts: &ServeOptions,
    ) -> Self {
        TopologyServiceImpl {
            snapshots: Arc::new(Snapshots::new(store.clone(), snapshots::REUSE_FOR)),
            fanout: Arc::new(Fanout::new(store.clone(), stopping.clone())),
            store,
            stopping,
            auth: opts.auth,
            checker: Arc::new(Checker::default()),
            refused: opts.refused.clone(),
        }
    }
}

/// The tonic service, ready for `Server::add_service`.
pub fn service(
    store: Arc<dyn Store>,
    stopping: watch::Receiver<bool>,
    opts: &ServeOptions,
) -> TopologyServer<TopologyServiceImpl> {
    TopologyServer::new(TopologyServiceImpl::new(store, stopping, opts))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Serves the topology service on a bound listener until `shutdown`
/// resolves.
pub async fn serve(
    store: Arc<dyn Store>,
    listener: tokio::net::TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    if opts.auth == AgentAuth::Open {
        tracing::warn!("the topology service asks agents for no credential: any process that reaches it can act for any host");
    }
    let mut server = tonic::transport::Server::builder()
        // Agents hold one long stream each; keep idle connections probed so a
        // dead agent's stream is noticed.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)));
    if let Some(tls) = opts.tls.clone() {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(service(store, stop_rx, &opts))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

fn status(e: StoreError) -> Status {
    match e {
        StoreError::LeaseNotFound(_) => Status::not_found("session expired: register again"),
        StoreError::InvalidArgument(m) => Status::invalid_argument(m),
        StoreError::Unavailable(_) => Status::unavailable(format!("{e}")),
        other => Status::internal(format!("{other}")),
    }
}

fn change_pb(ev: WatchEvent) -> Option<pb::Change> {
    let (key, value, deleted) = match ev {
        WatchEvent::Put { kv, .. } => (kv.key, kv.value, false),
        WatchEvent::Delete { key, .. } => (key, Vec::new(), true),
    };
    let key = String::from_utf8(key).ok()?;
    snapshots::is_streamed(&key).then_some(pb::Change { key, value, deleted })
}

/// A store revision as agents see it; `None` when none of its changes is
/// streamed (nothing is sent for it).
fn delta_pb(batch: WatchBatch) -> Option<pb::Delta> {
    let changes: Vec<pb::Change> = batch.events.into_iter().filter_map(change_pb).collect();
    (!changes.is_empty()).then_some(pb::Delta { revision: batch.revision, changes })
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain structs always serialize")
}

#[cfg(test)]
mod tests {
    //! A served in-memory store and a client, for the tests of every file here.
    use super::*;
    use midonet_model::{Bridge, BridgeId};
    use midonet_proto::pb::{self, subscribe_response::Event};
    use midonet_proto::TopologyClient;

    pub(super) async fn start(
    ) -> (Arc<dyn Store>, TopologyClient<tonic::transport::Channel>, tokio::sync::oneshot::Sender<()>)
    {
        let opts = ServeOptions { auth: AgentAuth::Open, ..Default::default() };
        let (store, addr, stop) = start_with(opts).await;
        let client = TopologyClient::connect(format!("http://{addr}")).await.expect("connect");
        (store, client, stop)
    }

    async fn start_with(
        opts: ServeOptions,
    ) -> (Arc<dyn Store>, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let store = midonet_store::connect("memory:").await.expect("memory store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let s = store.clone();
        tokio::spawn(async move {
            serve(s, listener, opts, async move {
                let _ = stop_rx.await;
            })
            .await
            .expect("serve");
        });
        (store, addr, stop_tx)
    }

    pub(super) fn bridge(name: &str) -> Bridge {
        Bridge {
            id: BridgeId::random(),
            name: name.into(),
            admin_state_up: true,
            ..Default::default()
        }
    }

    pub(super) async fn next(s: &mut tonic::Streaming<pb::SubscribeResponse>) -> Event {
        tokio::time::timeout(std::time::Duration::from_secs(5), s.message())
            .await
            .expect("message in time")
            .expect("stream ok")
            .expect("not ended")
            .event
            .expect("event set")
    }
}
