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

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use midonet_model::{HostId, HostInterface, ObjectKind};
use midonet_proto::pb::{self, subscribe_response::Event};
use midonet_proto::{keys, Liveness, TopologyServer, TopologyService, KEY_ROOT};
use midonet_store::{
    Compare, CompareOp, KeyValue, LeaseId, Store, StoreError, Txn, TxnOp, WatchBatch, WatchEvent,
};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

pub use crate::agent_input::DEFAULT_SESSION_TTL_SECS;
use crate::agent_input::{self, StateWrite};
use crate::host_credentials::Checker;
use crate::lb_checker;
use fanout::Fanout;
use snapshots::{Out, Snapshots};
pub use snapshots::{SubscribeStream, SNAPSHOT_CHUNK_BYTES};

mod fanout;
mod snapshots;

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

/// Who is calling, once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Host(HostId),
    /// [`AgentAuth::Open`]: trusted for any host.
    Anyone,
}

impl Caller {
    /// Whether the caller may act for `host`.
    fn is(self, host: HostId) -> bool {
        match self {
            Caller::Host(me) => me == host,
            Caller::Anyone => true,
        }
    }
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

/// Why a subscription task stopped.
enum Feed {
    /// The subscriber went away.
    Closed,
    /// Start over with a snapshot at `compact_revision` or later.
    Resync { compact_revision: i64 },
}

impl TopologyServiceImpl {
    /// Streams a subscription into `tx` until the subscriber leaves or the
    /// store fails.
    async fn feed(self, mut from: i64, tx: mpsc::Sender<Out>) {
        let send = |ev: Event| {
            let tx = tx.clone();
            async move {
                let m = Ok(pb::SubscribeResponse { event: Some(ev) });
                tx.send(Out::Message(m)).await.is_ok()
            }
        };
        let fail = |e: StoreError| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Out::Message(Err(status(e)))).await;
            }
        };
        // The snapshot taken next must be at least this recent (past a
        // compaction the watch reported).
        let mut min = 0;
        loop {
            if from > 0 {
                // A revision past the store's head cannot be resumed: the
                // store was replaced under the agent.
                match self.store.current_revision().await {
                    Ok(cur) if from > cur + 1 => {
                        if !send(Event::Resync(pb::ResyncNeeded { compact_revision: cur })).await {
                            return;
                        }
                        from = 0;
                    }
                    Ok(_) => {}
                    Err(e) => return fail(e).await,
                }
            }
            if from <= 0 {
                if tx.is_closed() {
                    // Gone while waiting (a retry replaced it): no read.
                    return;
                }
                let snap = match self.snapshots.get(min).await {
                    Ok(s) => s,
                    Err(e) => return fail(e).await,
                };
                from = snap.revision + 1;
                if tx.send(Out::Snapshot(snap)).await.is_err() {
                    return;
                }
            }
            match self.watch_from(from, &tx).await {
                Feed::Closed => return,
                Feed::Resync { compact_revision } => {
                    from = 0;
                    min = compact_revision;
                }
            }
        }
    }

    /// Streams the deltas from revision `from` on: from the shared watch
    /// ([`fanout`]) while it can give them, else from a watch of its own.
    async fn watch_from(&self, from: i64, tx: &mpsc::Sender<Out>) -> Feed {
        let send = |m: Result<pb::SubscribeResponse, Status>| tx.send(Out::Message(m));
        let mut stopping = self.stopping.clone();
        if *stopping.borrow() {
            return Feed::Closed;
        }
        let Some(fanout::Follow { replay, mut live }) = self.fanout.follow(from).await else {
            return self.watch_own(from, tx).await;
        };
        let delta = |d: &pb::Delta| pb::SubscribeResponse { event: Some(Event::Delta(d.clone())) };
        // The next revision this subscriber needs.
        let mut next = from;
        for d in &replay {
            if d.revision < next {
                continue;
            }
            if send(Ok(delta(d))).await.is_err() {
                return Feed::Closed;
            }
            next = d.revision + 1;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => return Feed::Closed,
                _ = stopping.changed() => {
                    let _ = send(Err(Status::unavailable("cluster shutting down"))).await;
                    return Feed::Closed;
                }
                d = live.recv() => match d {
                    Ok(d) if d.revision < next => {}
                    Ok(d) => {
                        if send(Ok(delta(&d))).await.is_err() {
                            return Feed::Closed;
                        }
                        next = d.revision + 1;
                    }
                    Err(e) => {
                        // Lagged behind the shared watch, or it ended.
                        tracing::debug!(next, error = %e, "subscriber leaves the shared watch");
                        return self.watch_own(next, tx).await;
                    }
                },
            }
        }
    }

    /// Streams the deltas from revision `from` on a store watch of its own.
    async fn watch_own(&self, from: i64, tx: &mpsc::Sender<Out>) -> Feed {
        let send = |m: Result<pb::SubscribeResponse, Status>| tx.send(Out::Message(m));
        let mut stopping = self.stopping.clone();
        if *stopping.borrow() {
            return Feed::Closed;
        }
        let mut watch = match self.store.watch(KEY_ROOT.as_bytes(), from).await {
            Ok(w) => w,
            Err(e) => {
                let _ = send(Err(status(e))).await;
                return Feed::Closed;
            }
        };
        loop {
            tokio::select! {
                _ = tx.closed() => return Feed::Closed,
                _ = stopping.changed() => {
                    let _ = send(Err(Status::unavailable("cluster shutting down"))).await;
                    return Feed::Closed;
                }
                item = watch.next() => match item {
                    Some(Ok(batch)) => {
                        let Some(d) = delta_pb(batch) else { continue };
                        let ev = Event::Delta(d);
                        if send(Ok(pb::SubscribeResponse { event: Some(ev) })).await.is_err() {
                            return Feed::Closed;
                        }
                    }
                    Some(Err(StoreError::Compacted { compact_revision })) => {
                        tracing::info!(from, compact_revision, "subscriber behind compaction: resync");
                        let ev = Event::Resync(pb::ResyncNeeded { compact_revision });
                        if send(Ok(pb::SubscribeResponse { event: Some(ev) })).await.is_err() {
                            return Feed::Closed;
                        }
                        return Feed::Resync { compact_revision };
                    }
                    Some(Err(e)) => {
                        let _ = send(Err(status(e))).await;
                        return Feed::Closed;
                    }
                    None => {
                        let _ = send(Err(Status::unavailable("store watch ended"))).await;
                        return Feed::Closed;
                    }
                },
            }
        }
    }

    /// Brings `host_interfaces/<host>/*` to exactly `ifaces` (checked by
    /// [`agent_input::interfaces`]), writing only what changed (each write
    /// is a revision every agent receives); the writes go into `w`.
    async fn sync_interfaces(
        &self,
        w: &mut IndexedWrite,
        host: HostId,
        ifaces: &[HostInterface],
    ) -> Result<(), Status> {
        let prefix = format!("{}/", ObjectKind::HostInterface.key(&[&host.to_string()]));
        let existing = self.store.range(prefix.as_bytes()).await.map_err(status)?;
        let mut wanted = std::collections::BTreeSet::new();
        for hi in ifaces {
            let (key, value) = agent_input::interface_kv(hi);
            let old = existing.kvs.iter().find(|kv| kv.key == key.as_bytes());
            w.set(key.clone(), old, Some(value));
            wanted.insert(key);
        }
        for kv in &existing.kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            if !wanted.contains(&key) {
                w.set(key, Some(kv), None);
            }
        }
        Ok(())
    }

    /// Runs `plan` and commits the writes it returns in one transaction
    /// that compares every written object and keeps the reverse-reference
    /// index ([`crate::refs`]), replanning from fresh reads on a conflict.
    /// `None` when there was nothing to write.
    async fn write_indexed<F, Fut>(&self, plan: F) -> Result<Option<i64>, Status>
    where
        F: Fn(IndexedWrite) -> Fut,
        Fut: Future<Output = Result<IndexedWrite, Status>>,
    {
        for attempt in 1..=crate::db::MAX_ATTEMPTS {
            let w = plan(IndexedWrite::default()).await?;
            if w.ops.is_empty() {
                return Ok(None);
            }
            let resp = self
                .store
                .txn(Txn::new().when(w.compares).and_then(w.ops))
                .await
                .map_err(status)?;
            if resp.succeeded {
                return Ok(Some(resp.revision));
            }
            crate::db::backoff(attempt).await;
        }
        Err(Status::aborted("the host's records changed concurrently too many times; retry"))
    }
}

/// Writes of topology objects outside [`crate::db::Tx`] (host registration
/// needs a lease in the same transaction), with what `Tx::commit` would
/// add: a compare on each object's previous value and the index entries
/// of the difference.
#[derive(Default)]
struct IndexedWrite {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
}

impl IndexedWrite {
    /// Sets `key`, read as `old`, to `new` (`None` deletes it); nothing if
    /// it already holds that.
    fn set(&mut self, key: String, old: Option<&KeyValue>, new: Option<Vec<u8>>) {
        let old_value = old.map(|kv| kv.value.as_slice());
        if old_value == new.as_deref() {
            return;
        }
        let rev = old.map_or(0, |kv| kv.mod_revision);
        self.ops.extend(crate::refs::changes(&key, old_value, new.as_deref()));
        self.compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, rev));
        self.ops.push(match new {
            Some(v) => TxnOp::put(key, v),
            None => TxnOp::delete(key),
        });
    }
}

/// Refusal reasons (the `reason` label).
mod why {
    pub const OTHER_HOST: &str = "other_host";
    pub const NOT_SESSION: &str = "not_session";
    pub const PORT_NOT_BOUND: &str = "port_not_bound";
    pub const PORT_NOT_ON_BRIDGE: &str = "port_not_on_bridge";
    pub const NO_DEVICE: &str = "no_device";
    pub const OTHERS_ENTRY: &str = "others_entry";
}

impl TopologyServiceImpl {
    fn refuse(&self, rpc: &'static str, reason: &'static str) {
        self.refused.inc(rpc, reason);
        tracing::debug!(rpc, reason, "agent call refused");
    }

    fn denied(&self, rpc: &'static str, reason: &'static str, msg: &str) -> Status {
        self.refuse(rpc, reason);
        Status::permission_denied(msg.to_owned())
    }

    /// The authenticated caller of `req`, or `UNAUTHENTICATED`.
    async fn caller<T>(&self, rpc: &'static str, req: &Request<T>) -> Result<Caller, Status> {
        if self.auth == AgentAuth::Open {
            return Ok(Caller::Anyone);
        }
        let value = req
            .metadata()
            .get(midonet_proto::credential::METADATA_KEY)
            .and_then(|v| v.to_str().ok());
        match self.checker.check(&self.store, value).await.map_err(status)? {
            Ok(host) => Ok(Caller::Host(host)),
            Err(r) => {
                self.refuse(rpc, r.reason());
                Err(Status::unauthenticated(
                    "a valid host credential is required (see `midonet host enroll`)",
                ))
            }
        }
    }

    /// The caller, who must be `host`.
    async fn caller_as<T>(
        &self,
        rpc: &'static str,
        req: &Request<T>,
        host: HostId,
    ) -> Result<Caller, Status> {
        let caller = self.caller(rpc, req).await?;
        if !caller.is(host) {
            return Err(self.denied(rpc, why::OTHER_HOST, "a host acts only for itself"));
        }
        Ok(caller)
    }

    /// Checks that `session` is `host`'s live session: its `alive` key is
    /// held by that lease. Anything else is `NOT_FOUND` (the agent registers
    /// again), whether the session expired or was never this host's.
    async fn live_session(
        &self,
        rpc: &'static str,
        host: HostId,
        session: i64,
    ) -> Result<(), Status> {
        let kv = self.store.get(keys::host_alive(&host.to_string()).as_bytes()).await;
        let ok = kv.map_err(status)?.is_some_and(|kv| kv.lease == Some(LeaseId(session)));
        if !ok {
            self.refuse(rpc, why::NOT_SESSION);
            return Err(Status::not_found("session expired: register again"));
        }
        Ok(())
    }

    /// The caller's host, with `session` checked to be its live one; `None`
    /// for [`Caller::Anyone`].
    async fn session_host(
        &self,
        rpc: &'static str,
        caller: Caller,
        session: i64,
    ) -> Result<Option<HostId>, Status> {
        match caller {
            Caller::Host(h) => {
                self.live_session(rpc, h, session).await?;
                Ok(Some(h))
            }
            Caller::Anyone => Ok(None),
        }
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Status> {
        let kv = self.store.get(key.as_bytes()).await.map_err(status)?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    async fn port(&self, id: &str) -> Result<Option<midonet_model::Port>, Status> {
        self.read(&ObjectKind::Port.key(&[id])).await
    }

    /// Whether `host` may write `bridge`'s MAC entry pointing at `port`: a
    /// port of that bridge, bound to `host` or interior.
    async fn may_publish_mac(
        &self,
        host: HostId,
        bridge: &str,
        port: &str,
    ) -> Result<(), &'static str> {
        let Ok(Some(p)) = self.port(port).await else { return Err(why::PORT_NOT_ON_BRIDGE) };
        if p.device_id.to_string() != bridge {
            return Err(why::PORT_NOT_ON_BRIDGE);
        }
        if p.host_id == Some(host) || p.peer_id.is_some() {
            Ok(())
        } else {
            Err(why::PORT_NOT_BOUND)
        }
    }

    /// Whether the host named in a stored entry is alive.
    async fn host_alive(&self, host: &str) -> Result<bool, Status> {
        let kv = self.store.get(keys::host_alive(host).as_bytes()).await.map_err(status)?;
        Ok(kv.is_some())
    }

    /// Current revision, for a write that had nothing to do.
    async fn unchanged(&self) -> Result<Response<pb::Ack>, Status> {
        let revision = self.store.current_revision().await.map_err(status)?;
        Ok(Response::new(pb::Ack { revision }))
    }
}

#[tonic::async_trait]
impl TopologyService for TopologyServiceImpl {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = self.caller("Subscribe", &request).await?;
        let req = request.into_inner();
        if let (Caller::Host(me), Ok(asked)) = (caller, req.host_id.parse::<HostId>()) {
            if me != asked {
                return Err(self.denied(
                    "Subscribe",
                    why::OTHER_HOST,
                    "a host acts only for itself",
                ));
            }
        }
        tracing::debug!(host = %req.host_id, from = req.from_revision, "subscribe");
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        tokio::spawn(self.clone().feed(req.from_revision, tx));
        Ok(Response::new(SubscribeStream::new(rx)))
    }

    async fn register_host(
        &self,
        request: Request<pb::RegisterHostRequest>,
    ) -> Result<Response<pb::RegisterHostResponse>, Status> {
        let reg = agent_input::register_host(request.get_ref())?;
        self.caller_as("RegisterHost", &request, reg.host).await?;
        let host = reg.host;

        let lease = self.store.grant_lease(reg.ttl_secs).await.map_err(status)?;
        let alive = &Liveness { host_id: host.to_string(), session: lease.id.0 };
        let reg = &reg;
        let resp = self
            .write_indexed(|mut w| async move {
                // Keep what operators set on the host (weights, limits):
                // merge into the stored JSON instead of overwriting it.
                let host_key = ObjectKind::Host.key(&[&host.to_string()]);
                let stored = self.store.get(host_key.as_bytes()).await.map_err(status)?;
                let host_bytes =
                    agent_input::host_record(stored.as_ref().map(|kv| kv.value.as_slice()), reg);
                w.ops.push(TxnOp::put_with_lease(
                    keys::host_alive(&host.to_string()),
                    json(alive),
                    lease.id,
                ));
                w.set(host_key, stored.as_ref(), Some(host_bytes));
                self.sync_interfaces(&mut w, host, &reg.interfaces).await?;
                Ok(w)
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                // Do not leave the lease behind for its TTL.
                let _ = self.store.revoke_lease(lease.id).await;
                return Err(e);
            }
        };
        tracing::info!(%host, name = %reg.name, session = lease.id.0, ttl = lease.ttl_secs, "host registered");
        Ok(Response::new(pb::RegisterHostResponse {
            session: lease.id.0,
            ttl_secs: lease.ttl_secs,
            revision: resp.unwrap_or_default(),
        }))
    }

    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let caller = self.caller("KeepAlive", &request).await?;
        let req = request.into_inner();
        self.session_host("KeepAlive", caller, req.session).await?;
        let ttl = self.store.keep_alive(LeaseId(req.session)).await.map_err(status)?;
        Ok(Response::new(pb::KeepAliveResponse { ttl_secs: ttl }))
    }

    async fn report_interfaces(
        &self,
        request: Request<pb::ReportInterfacesRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        let (host, ifaces) = agent_input::report_interfaces(request.get_ref())?;
        let caller = self.caller_as("ReportInterfaces", &request, host).await?;
        self.session_host("ReportInterfaces", caller, request.get_ref().session).await?;
        let ifaces = &ifaces;
        let resp = self
            .write_indexed(|mut w| async move {
                self.sync_interfaces(&mut w, host, ifaces).await?;
                Ok(w)
            })
            .await?;
        match resp {
            Some(revision) => Ok(Response::new(pb::Ack { revision })),
            None => self.unchanged().await,
        }
    }

    async fn set_port_active(
        &self,
        request: Request<pb::SetPortActiveRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        const RPC: &str = "SetPortActive";
        let req = request.get_ref();
        let w = agent_input::set_port_active(req)?;
        let host = req.host_id.parse::<HostId>().map_err(|_| {
            Status::invalid_argument(format!("host_id `{}` is not a UUID", req.host_id))
        })?;
        let caller = self.caller_as(RPC, &request, host).await?;
        self.session_host(RPC, caller, req.session).await?;
        if caller != Caller::Anyone {
            let bound = self.port(&req.port_id).await?.is_some_and(|p| p.host_id == Some(host));
            if req.active && !bound {
                return Err(self.denied(
                    RPC,
                    why::PORT_NOT_BOUND,
                    "the port is not bound to this host",
                ));
            }
            if !req.active && !bound {
                // Clearing: only the host that set it (the port may have
                // been unbound since).
                match self.read::<Liveness>(&w.key).await? {
                    None => return self.unchanged().await,
                    Some(l) if l.host_id == host.to_string() => {}
                    Some(_) => {
                        return Err(self.denied(
                            RPC,
                            why::OTHERS_ENTRY,
                            "the port is not bound to this host",
                        ))
                    }
                }
            }
        }
        self.state_write(w, req.session).await
    }

    async fn publish_mac(
        &self,
        request: Request<pb::PublishMacRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        const RPC: &str = "PublishMac";
        let req = request.get_ref();
        let mut w = agent_input::publish_mac(req)?;
        let caller = self.caller(RPC, &request).await?;
        let Some(me) = self.session_host(RPC, caller, req.session).await? else {
            return self.state_write(w, req.session).await;
        };
        let bridge = req.bridge_id.to_ascii_lowercase();
        match &mut w.value {
            Some(v) => {
                if let Err(reason) =
                    self.may_publish_mac(me, &bridge, &req.port_id.to_ascii_lowercase()).await
                {
                    return Err(self.denied(
                        RPC,
                        reason,
                        "the port is not this host's port on that bridge",
                    ));
                }
                *v = json(&midonet_proto::MacEntry {
                    port_id: req.port_id.to_ascii_lowercase(),
                    host_id: me.to_string(),
                });
            }
            None => match self.read::<midonet_proto::MacEntry>(&w.key).await? {
                None => return self.unchanged().await,
                Some(e) if e.host_id == me.to_string() => {}
                Some(e) => {
                    if self.may_publish_mac(me, &bridge, &e.port_id).await.is_err() {
                        return Err(self.denied(
                            RPC,
                            why::OTHERS_ENTRY,
                            "the entry is another host's",
                        ));
                    }
                }
            },
        }
        self.state_write(w, req.session).await
    }

    async fn publish_arp(
        &self,
        request: Request<pb::PublishArpRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        const RPC: &str = "PublishArp";
        let req = request.get_ref();
        let mut w = agent_input::publish_arp(req)?;
        let caller = self.caller(RPC, &request).await?;
        let Some(me) = self.session_host(RPC, caller, req.session).await? else {
            return self.state_write(w, req.session).await;
        };
        let device = req.device_id.to_ascii_lowercase();
        let exists = |kind: ObjectKind| {
            let key = kind.key(&[&device]);
            let store = self.store.clone();
            async move { store.get(key.as_bytes()).await.map(|kv| kv.is_some()).map_err(status) }
        };
        if !exists(ObjectKind::Router).await? && !exists(ObjectKind::Bridge).await? {
            return Err(self.denied(RPC, why::NO_DEVICE, "no such router or bridge"));
        }
        match &mut w.value {
            Some(v) => {
                let mut e: midonet_proto::ArpEntry =
                    serde_json::from_slice(v).expect("agent_input writes an ArpEntry");
                e.host_id = me.to_string();
                *v = json(&e);
            }
            None => match self.read::<midonet_proto::ArpEntry>(&w.key).await? {
                None => return self.unchanged().await,
                Some(e) if e.host_id.is_empty() || e.host_id == me.to_string() => {}
                // Another host's entry: it stays while that host lives.
                Some(e) if self.host_alive(&e.host_id).await? => {
                    return Err(self.denied(RPC, why::OTHERS_ENTRY, "the entry is another host's"));
                }
                Some(_) => {}
            },
        }
        self.state_write(w, req.session).await
    }

    async fn claim_snat_block(
        &self,
        request: Request<pb::ClaimSnatBlockRequest>,
    ) -> Result<Response<pb::ClaimSnatBlockResponse>, Status> {
        let req = request.get_ref();
        let c = agent_input::claim_snat_block(req)?;
        let caller = self.caller_as("ClaimSnatBlock", &request, c.host).await?;
        self.session_host("ClaimSnatBlock", caller, req.session).await?;
        let me = c.host.to_string();
        let got =
            lb_checker::claim_leased(&self.store, &c.key, c.value, req.session, &me, c.release)
                .await?;
        Ok(Response::new(pb::ClaimSnatBlockResponse {
            granted: got.granted,
            holder: got.holder.unwrap_or_default(),
            revision: got.revision,
        }))
    }

    async fn claim_health_check(
        &self,
        request: Request<pb::ClaimHealthCheckRequest>,
    ) -> Result<Response<pb::ClaimHealthCheckResponse>, Status> {
        let req = request.get_ref();
        let c = agent_input::claim_health_check(req)?;
        let caller = self.caller_as("ClaimHealthCheck", &request, c.host).await?;
        self.session_host("ClaimHealthCheck", caller, req.session).await?;
        let me = c.host.to_string();
        let got =
            lb_checker::claim_leased(&self.store, &c.key, c.value, req.session, &me, c.release)
                .await?;
        let hc = midonet_model::HealthCheckPort::of(c.lb);
        let mut out = pb::ClaimHealthCheckResponse {
            granted: got.granted,
            holder: got.holder.unwrap_or_default(),
            revision: got.revision,
            ..Default::default()
        };
        if !got.granted {
            return Ok(Response::new(out));
        }
        let rev = lb_checker::bind_port(&self.store, c.lb, (!c.release).then_some(c.host)).await;
        let rev = match rev {
            Ok(r) => r,
            Err(e) => {
                // No port, no checks: give the key back so that the claim
                // is all or nothing.
                if !c.release {
                    let v = Vec::new();
                    let _ =
                        lb_checker::claim_leased(&self.store, &c.key, v, req.session, &me, true)
                            .await;
                }
                return Err(e);
            }
        };
        out.revision = out.revision.max(rev);
        if !c.release {
            out.interface_name = hc.interface_name;
            out.address = format!("{}/30", hc.checker_ip);
            out.gateway = hc.router_ip.to_string();
        }
        Ok(Response::new(out))
    }

    async fn report_member_status(
        &self,
        request: Request<pb::ReportMemberStatusRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        let r = agent_input::report_member_status(request.get_ref())?;
        let caller = self.caller_as("ReportMemberStatus", &request, r.host).await?;
        self.session_host("ReportMemberStatus", caller, request.get_ref().session).await?;
        let revision =
            lb_checker::set_member_status(&self.store, r.lb, r.member, r.host, r.status).await?;
        Ok(Response::new(pb::Ack { revision }))
    }
}

impl TopologyServiceImpl {
    /// Puts a checked state key under the agent's session lease, or deletes it.
    async fn state_write(&self, w: StateWrite, session: i64) -> Result<Response<pb::Ack>, Status> {
        let revision = match w.value {
            Some(v) => self
                .store
                .put(w.key.as_bytes(), &v, Some(LeaseId(session)))
                .await
                .map_err(status)?,
            None => self.store.delete(w.key.as_bytes()).await.map_err(status)?.revision,
        };
        Ok(Response::new(pb::Ack { revision }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midonet_model::topology::Stored;
    use midonet_model::{Bridge, BridgeId, PortId};
    use midonet_proto::TopologyClient;

    async fn start(
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

    fn bridge(name: &str) -> Bridge {
        Bridge {
            id: BridgeId::random(),
            name: name.into(),
            admin_state_up: true,
            ..Default::default()
        }
    }

    async fn next(s: &mut tonic::Streaming<pb::SubscribeResponse>) -> Event {
        tokio::time::timeout(std::time::Duration::from_secs(5), s.message())
            .await
            .expect("message in time")
            .expect("stream ok")
            .expect("not ended")
            .event
            .expect("event set")
    }

    #[tokio::test]
    async fn snapshot_then_deltas_then_resume_without_reload() {
        let (store, mut client, _stop) = start().await;
        let b1 = bridge("b1");
        store.put(b1.store_key().as_bytes(), &json(&b1), None).await.expect("put");
        store.put(b"/midonet/v1/meta/tunnel_key", b"17", None).await.expect("put");
        let mut s = client
            .subscribe(pb::SubscribeRequest { from_revision: 0, host_id: String::new() })
            .await
            .expect("subscribe")
            .into_inner();
        let Event::Snapshot(snap) = next(&mut s).await else { panic!("snapshot first") };
        assert_eq!(snap.kvs.len(), 1, "meta keys are not streamed");
        assert_eq!(snap.kvs[0].key, b1.store_key());
        let b2 = bridge("b2");
        let rev = store.put(b2.store_key().as_bytes(), &json(&b2), None).await.expect("put");
        let Event::Delta(d) = next(&mut s).await else { panic!("delta") };
        assert_eq!(d.revision, rev);
        assert_eq!(d.changes[0].key, b2.store_key());
        drop(s);

        // Changes while "disconnected", then resume from the last revision + 1.
        store.delete(b1.store_key().as_bytes()).await.expect("delete");
        let mut s = client
            .subscribe(pb::SubscribeRequest { from_revision: rev + 1, host_id: String::new() })
            .await
            .expect("subscribe")
            .into_inner();
        let Event::Delta(d) = next(&mut s).await else {
            panic!("resume gives deltas, not a snapshot")
        };
        assert!(d.changes[0].deleted);
        assert_eq!(d.changes[0].key, b1.store_key());
    }

    #[tokio::test]
    async fn a_subscriber_far_behind_the_shared_watch_still_gets_every_revision_in_order() {
        let (store, mut client, _stop) = start().await;
        let mut s = client
            .subscribe(pb::SubscribeRequest { from_revision: 0, host_id: String::new() })
            .await
            .expect("subscribe")
            .into_inner();
        let Event::Snapshot(snap) = next(&mut s).await else { panic!("snapshot first") };
        // Not read meanwhile: more changes than the stream, the shared
        // watch's ring and its broadcast hold together, so the subscriber
        // lags and goes on from a watch of its own.
        let n = 4 * fanout::RING + SUBSCRIBER_BUFFER;
        let mut last = 0;
        for i in 0..n {
            let b = bridge(&format!("b{i}"));
            last = store.put(b.store_key().as_bytes(), &json(&b), None).await.expect("put");
        }
        let mut want = snap.revision + 1;
        while want <= last {
            let Event::Delta(d) = next(&mut s).await else { panic!("only deltas") };
            assert_eq!(d.revision, want, "no gap, no repeat");
            want += 1;
        }
    }

    #[tokio::test]
    async fn compacted_revision_gives_resync_then_snapshot() {
        let (store, mut client, _stop) = start().await;
        let b = bridge("b");
        store.put(b.store_key().as_bytes(), &json(&b), None).await.expect("put");
        let b2 = bridge("b2");
        let rev = store.put(b2.store_key().as_bytes(), &json(&b2), None).await.expect("put");
        store.compact(rev).await.expect("compact");
        let mut s = client
            .subscribe(pb::SubscribeRequest { from_revision: 2, host_id: String::new() })
            .await
            .expect("subscribe")
            .into_inner();
        assert!(matches!(next(&mut s).await, Event::Resync(_)));
        let Event::Snapshot(snap) = next(&mut s).await else { panic!("snapshot after resync") };
        assert_eq!(snap.kvs.len(), 2);
        assert_eq!(snap.revision, rev);
    }

    #[tokio::test]
    async fn session_keys_vanish_with_the_lease() {
        let (store, mut client, _stop) = start().await;
        let host = HostId::random();
        let reg = client
            .register_host(pb::RegisterHostRequest {
                host_id: host.to_string(),
                name: "h1".into(),
                addresses: vec!["10.0.0.1/24".into()],
                interfaces: vec![pb::Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    mtu: 1500,
                    up: true,
                    has_link: true,
                    ..Default::default()
                }],
                ttl_secs: 2,
            })
            .await
            .expect("register")
            .into_inner();
        let alive = keys::host_alive(&host.to_string());
        assert!(store.get(alive.as_bytes()).await.expect("get").is_some());
        let stored: midonet_model::Host = serde_json::from_slice(
            &store
                .get(ObjectKind::Host.key(&[&host.to_string()]).as_bytes())
                .await
                .expect("get")
                .expect("host")
                .value,
        )
        .expect("host json");
        assert_eq!(stored.name, "h1");
        let iface_key = ObjectKind::HostInterface.key(&[&host.to_string(), "eth0"]);
        assert!(store.get(iface_key.as_bytes()).await.expect("get").is_some());

        let port = PortId::random();
        client
            .set_port_active(pb::SetPortActiveRequest {
                session: reg.session,
                host_id: host.to_string(),
                port_id: port.to_string(),
                active: true,
            })
            .await
            .expect("active");
        let br = BridgeId::random();
        client
            .publish_mac(pb::PublishMacRequest {
                session: reg.session,
                bridge_id: br.to_string(),
                vlan: 0,
                mac: "02:00:00:00:00:09".into(),
                port_id: port.to_string(),
                delete: false,
            })
            .await
            .expect("mac");
        assert!(store
            .get(keys::port_active(&port.to_string()).as_bytes())
            .await
            .expect("get")
            .is_some());

        // Interfaces: a second report replaces the list.
        client
            .report_interfaces(pb::ReportInterfacesRequest {
                session: reg.session,
                host_id: host.to_string(),
                interfaces: vec![pb::Interface { name: "eth1".into(), ..Default::default() }],
            })
            .await
            .expect("report");
        assert!(store.get(iface_key.as_bytes()).await.expect("get").is_none());

        // No keep-alive: everything leased disappears.
        store.revoke_lease(LeaseId(reg.session)).await.expect("revoke");
        assert!(store.get(alive.as_bytes()).await.expect("get").is_none());
        assert!(store
            .get(keys::port_active(&port.to_string()).as_bytes())
            .await
            .expect("get")
            .is_none());
        let err = client
            .keep_alive(pb::KeepAliveRequest { session: reg.session, host_id: host.to_string() })
            .await
            .expect_err("expired");
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = client
            .set_port_active(pb::SetPortActiveRequest {
                session: reg.session,
                host_id: host.to_string(),
                port_id: port.to_string(),
                active: true,
            })
            .await
            .expect_err("expired session cannot write");
        assert_eq!(err.code(), tonic::Code::NotFound);
        // The host object itself stays.
        assert!(store
            .get(ObjectKind::Host.key(&[&host.to_string()]).as_bytes())
            .await
            .expect("get")
            .is_some());
    }

    #[tokio::test]
    async fn bad_ids_are_invalid_argument() {
        let (_store, mut client, _stop) = start().await;
        let e = client
            .register_host(pb::RegisterHostRequest { host_id: "nope".into(), ..Default::default() })
            .await
            .expect_err("bad id");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = client
            .publish_arp(pb::PublishArpRequest {
                session: 1,
                device_id: BridgeId::random().to_string(),
                ip: "x".into(),
                mac: String::new(),
                delete: false,
            })
            .await
            .expect_err("bad ip");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_snat_block_has_one_holder_and_comes_back_to_it() {
        let (store, mut client, _stop) = start().await;
        let session = |name: &'static str| {
            let mut c = client.clone();
            async move {
                let host = HostId::random();
                let r = c
                    .register_host(pb::RegisterHostRequest {
                        host_id: host.to_string(),
                        name: name.into(),
                        ttl_secs: 10,
                        ..Default::default()
                    })
                    .await
                    .expect("register")
                    .into_inner();
                (host, r.session)
            }
        };
        let (a, sa) = session("a").await;
        let (b, sb) = session("b").await;
        let router = uuid::Uuid::new_v4().to_string();
        let claim = |host: HostId, session: i64, release: bool| pb::ClaimSnatBlockRequest {
            session,
            host_id: host.to_string(),
            device_id: router.clone(),
            ip: "203.0.113.1".into(),
            block: 17,
            release,
        };
        let got = client.claim_snat_block(claim(a, sa, false)).await.expect("claim").into_inner();
        assert!(got.granted, "a free block is granted");
        let key = keys::snat_block(&router, "203.0.113.1", 17);
        let kv = store.get(key.as_bytes()).await.expect("get").expect("claimed");
        assert_eq!(kv.lease, Some(LeaseId(sa)), "held under the claimer's session");
        let got = client.claim_snat_block(claim(b, sb, false)).await.expect("claim").into_inner();
        assert!(!got.granted, "held elsewhere");
        assert_eq!(got.holder, a.to_string());
        let got = client.claim_snat_block(claim(b, sb, true)).await.expect("release").into_inner();
        assert!(!got.granted, "only the holder gives it back");
        assert!(store.get(key.as_bytes()).await.expect("get").is_some());
        // The same host in a new session (an agent restart) takes it over.
        let r = client
            .register_host(pb::RegisterHostRequest {
                host_id: a.to_string(),
                name: "a".into(),
                ttl_secs: 10,
                ..Default::default()
            })
            .await
            .expect("register again")
            .into_inner();
        let got =
            client.claim_snat_block(claim(a, r.session, false)).await.expect("claim").into_inner();
        assert!(got.granted, "the holder's new session gets its block back");
        let kv = store.get(key.as_bytes()).await.expect("get").expect("claimed");
        assert_eq!(kv.lease, Some(LeaseId(r.session)));
        let got =
            client.claim_snat_block(claim(a, r.session, true)).await.expect("release").into_inner();
        assert!(got.granted);
        assert!(store.get(key.as_bytes()).await.expect("get").is_none(), "released");
        let bad = pb::ClaimSnatBlockRequest { block: 1024, ..claim(a, r.session, false) };
        let e = client.claim_snat_block(bad).await.expect_err("block out of range");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("block"), "{}", e.message());
    }

    #[tokio::test]
    async fn one_host_checks_a_load_balancer_and_only_it_reports_status() {
        use midonet_model::topology::Stored;
        use midonet_model::*;
        let (store, mut client, _stop) = start().await;
        let put = |k: String, v: Vec<u8>| {
            let s = store.clone();
            async move { s.put(k.as_bytes(), &v, None).await.expect("put") }
        };
        let router = Router { id: RouterId::random(), admin_state_up: true, ..Default::default() };
        let lb = LoadBalancer {
            id: LoadBalancerId::random(),
            router_id: Some(router.id),
            admin_state_up: true,
            ..Default::default()
        };
        let pool: Pool = serde_json::from_value(serde_json::json!({
            "id": PoolId::random(), "loadBalancerId": lb.id,
        }))
        .expect("pool");
        let member: PoolMember = serde_json::from_value(serde_json::json!({
            "id": PoolMemberId::random(), "poolId": pool.id, "address": "10.0.0.5",
            "protocolPort": 80,
        }))
        .expect("member");
        put(router.store_key(), serde_json::to_vec(&router).expect("json")).await;
        put(lb.store_key(), serde_json::to_vec(&lb).expect("json")).await;
        put(pool.store_key(), serde_json::to_vec(&pool).expect("json")).await;
        put(member.store_key(), serde_json::to_vec(&member).expect("json")).await;
        let mut sessions = Vec::new();
        for name in ["a", "b"] {
            let host = HostId::random();
            let r = client
                .register_host(pb::RegisterHostRequest {
                    host_id: host.to_string(),
                    name: name.into(),
                    ttl_secs: 10,
                    ..Default::default()
                })
                .await
                .expect("register")
                .into_inner();
            sessions.push((host, r.session));
        }
        let claim = |i: usize, release: bool| pb::ClaimHealthCheckRequest {
            session: sessions[i].1,
            host_id: sessions[i].0.to_string(),
            load_balancer_id: lb.id.to_string(),
            release,
        };
        let got = client.claim_health_check(claim(0, false)).await.expect("claim").into_inner();
        assert!(got.granted);
        let hc = HealthCheckPort::of(lb.id);
        assert_eq!(got.interface_name, hc.interface_name);
        assert_eq!(got.address, format!("{}/30", hc.checker_ip));
        assert_eq!(got.gateway, hc.router_ip.to_string());
        // The port is on the router, bound to the checker's interface, and
        // routed to.
        let port_key = ObjectKind::Port.key(&[&hc.port_id.to_string()]);
        let kv = store.get(port_key.as_bytes()).await.expect("get").expect("port");
        let p: Port = serde_json::from_slice(&kv.value).expect("port json");
        assert_eq!(p.device_id, router.id.cast());
        assert_eq!(p.host_id, Some(sessions[0].0));
        assert_eq!(p.interface_name.as_deref(), Some(hc.interface_name.as_str()));
        assert!(p.tunnel_key >= 16, "a tunnel key from the counter");
        let route_key = ObjectKind::Route.key(&[&hc.route_id.to_string()]);
        assert!(store.get(route_key.as_bytes()).await.expect("get").is_some());

        let refused = client.claim_health_check(claim(1, false)).await.expect("claim").into_inner();
        assert!(!refused.granted);
        assert_eq!(refused.holder, sessions[0].0.to_string());

        let report = |i: usize, status: &str, m: PoolMemberId| pb::ReportMemberStatusRequest {
            session: sessions[i].1,
            host_id: sessions[i].0.to_string(),
            load_balancer_id: lb.id.to_string(),
            member_id: m.to_string(),
            status: status.into(),
        };
        let e = client.report_member_status(report(1, "DOWN", member.id)).await.expect_err("b");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = client
            .report_member_status(report(0, "DOWN", PoolMemberId::random()))
            .await
            .expect_err("not a member");
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = client.report_member_status(report(0, "SIDEWAYS", member.id)).await.expect_err("x");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("status"), "{}", e.message());
        client.report_member_status(report(0, "DOWN", member.id)).await.expect("holder reports");
        let kv = store.get(member.store_key().as_bytes()).await.expect("get").expect("member");
        let m: PoolMember = serde_json::from_slice(&kv.value).expect("json");
        assert_eq!(m.status, "DOWN");

        // Given back: key and port go; the other host may claim, and the
        // port moves to it.
        let got = client.claim_health_check(claim(0, true)).await.expect("release").into_inner();
        assert!(got.granted);
        assert!(store.get(port_key.as_bytes()).await.expect("get").is_none());
        let got = client.claim_health_check(claim(1, false)).await.expect("claim").into_inner();
        assert!(got.granted);
        let kv = store.get(port_key.as_bytes()).await.expect("get").expect("port");
        let p: Port = serde_json::from_slice(&kv.value).expect("port json");
        assert_eq!(p.host_id, Some(sessions[1].0));
    }
}
