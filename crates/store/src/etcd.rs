//! The etcd backend: a thin translation of the [`Store`] contract onto etcd
//! v3 through `etcd-client`.
//!
//! * Transactions map one to one onto etcd `Txn`s. The crate validates them
//!   first with the same rules as the embedded backend (see [`Txn`]), so both
//!   reject the same requests with the same error, whatever etcd's message.
//! * Prefixes become `[prefix, prefix_end)` ranges; the empty prefix becomes
//!   etcd's "all keys" range (`"\0"` to `"\0"`).
//! * `watch` waits for etcd's `created` response before returning, so that
//!   "from now" (`from_revision = 0`) really includes every write made after
//!   `watch` returns. Watches ask for `prev_kv`. etcd never splits one
//!   revision's events across responses (without `fragment`), and each
//!   response is regrouped into one [`WatchBatch`] per revision.
//! * A compacted start revision arrives from etcd as a cancel response with
//!   `compact_revision` set; it becomes the stream item
//!   `Err(StoreError::Compacted)`.
//! * Unary calls are bounded by a timeout ([`EtcdStore::DEFAULT_TIMEOUT`])
//!   and a timeout or transport failure is [`StoreError::Unavailable`];
//!   watch streams have no timeout (idle watches are normal), and a broken
//!   stream yields `Unavailable` and ends.
//! * `keep_alive` is one refresh per call (a short lease keep-alive stream);
//!   owners call it about every TTL/3.
//!
//! etcd limits operations per transaction (`--max-txn-ops`, default 128) and
//! request size (`--max-request-bytes`, 1.5 MiB). A cluster deployment must
//! raise `--max-txn-ops` if it deletes big subtrees key by key; the test
//! server in `testutil` (feature `test-util`) sets 10000.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client as ec;

use crate::error::{Result, StoreError};
use crate::types::{
    prefix_end, validate_txn, CompareOp, CompareTarget, KeyValue, Lease, LeaseId, OpResponse,
    Revision, Txn, TxnOp, TxnResponse, WatchBatch, WatchEvent, WatchStream,
};
use crate::Store;

/// Largest etcd response read (a range of the whole topology, one
/// revision's watch events). gRPC clients refuse anything over 4 MiB
/// unless told otherwise, which a topology passes at about 10,000 ports:
/// every whole-prefix range (agents' snapshots, the API's scans of all
/// ports) then failed as "store backend failed". etcd itself sends up to
/// 2 GiB.
pub const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// A [`Store`] on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: ec::Client,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// `(key, range_end)` of etcd's range for a prefix.
fn etcd_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let key = if prefix.is_empty() { vec![0] } else { prefix.to_vec() };
    // etcd reads range_end "\0" as "no upper bound".
    (key, prefix_end(prefix).unwrap_or_else(|| vec![0]))
}

fn kv_from(kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    }
}

fn cmp_op(op: CompareOp) -> ec::CompareOp {
    match op {
        CompareOp::Equal => ec::CompareOp::Equal,
        CompareOp::NotEqual => ec::CompareOp::NotEqual,
        CompareOp::Greater => ec::CompareOp::Greater,
        CompareOp::Less => ec::CompareOp::Less,
    }
}

fn etcd_op(op: &TxnOp) -> ec::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => ec::TxnOp::put(
            key.clone(),
            value.clone(),
            lease.map(|l| ec::PutOptions::new().with_lease(l.0)),
        ),
        TxnOp::Delete { key } => ec::TxnOp::delete(key.clone(), None),
        TxnOp::DeletePrefix { prefix } => {
            let (key, end) = etcd_range(prefix);
            ec::TxnOp::delete(key, Some(ec::DeleteOptions::new().with_range(end)))
        }
        TxnOp::Get { key } => ec::TxnOp::get(key.clone(), None),
        TxnOp::Range { prefix } => {
            let (key, end) = etcd_range(prefix);
            ec::TxnOp::get(key, Some(ec::GetOptions::new().with_range(end)))
        }
    }
}

fn etcd_txn(txn: &Txn) -> ec::Txn {
    let compares: Vec<ec::Compare> = txn
        .compares
        .iter()
        .map(|c| {
            let op = cmp_op(c.op);
            let key = c.key.clone();
            match &c.target {
                CompareTarget::Version(v) => ec::Compare::version(key, op, *v),
                CompareTarget::CreateRevision(r) => ec::Compare::create_revision(key, op, *r),
                CompareTarget::ModRevision(r) => ec::Compare::mod_revision(key, op, *r),
                CompareTarget::Value(v) => ec::Compare::value(key, op, v.clone()),
            }
        })
        .collect();
    ec::Txn::new()
        .when(compares)
        .and_then(txn.success.iter().map(etcd_op).collect::<Vec<_>>())
        .or_else(txn.failure.iter().map(etcd_op).collect::<Vec<_>>())
}

/// Maps an etcd error. `lease` names the lease the request referred to, for
/// [`StoreError::LeaseNotFound`].
/// Whether `e` is a connection refused before the request was sent (so
/// sending it again cannot apply it twice).
fn never_sent(e: &ec::Error) -> bool {
    // etcd_client's error does not chain its causes: start at the cause.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = match e {
        ec::Error::GRpcStatus(s) => Some(s),
        ec::Error::TransportError(t) => Some(t),
        ec::Error::IoError(io) => Some(io),
        _ => None,
    };
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn map_err(e: ec::Error, lease: Option<LeaseId>) -> StoreError {
    let lease = lease.unwrap_or(LeaseId(0));
    match e {
        ec::Error::GRpcStatus(status) => {
            let msg = status.message();
            match status.code() {
                _ if msg.contains("lease not found") => StoreError::LeaseNotFound(lease),
                tonic::Code::InvalidArgument => StoreError::InvalidArgument(msg.to_string()),
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
                | tonic::Code::Aborted => StoreError::Unavailable(Box::new(status)),
                // tonic reports a broken HTTP/2 connection (etcd gone
                // mid-stream) as Unknown with the I/O error as its source;
                // an Unknown sent by etcd itself has no source.
                tonic::Code::Unknown if std::error::Error::source(&status).is_some() => {
                    StoreError::Unavailable(Box::new(status))
                }
                _ => StoreError::Backend(Box::new(status)),
            }
        }
        ec::Error::LeaseKeepAliveError(msg) if msg.contains("lease not found") => {
            StoreError::LeaseNotFound(lease)
        }
        e @ (ec::Error::TransportError(_) | ec::Error::IoError(_)) => {
            StoreError::Unavailable(Box::new(e))
        }
        e => StoreError::Backend(Box::new(e)),
    }
}

fn is_status(e: &ec::Error, needle: &str) -> bool {
    matches!(e, ec::Error::GRpcStatus(s) if s.message().contains(needle))
}

#[derive(Debug, thiserror::Error)]
#[error("etcd request timed out after {0:?}")]
struct Timeout(Duration);

impl EtcdStore {
    /// Bound on each unary etcd call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Connects to etcd at `endpoints` (`http://host:port`).
    pub async fn connect(endpoints: &[impl AsRef<str>]) -> Result<Self> {
        let options = ec::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // etcd's default --grpc-keepalive-min-time is 5 s; pinging more
            // often gets the connection closed.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let endpoints: Vec<&str> = endpoints.iter().map(AsRef::as_ref).collect();
        let client = tokio::time::timeout(
            Self::DEFAULT_TIMEOUT,
            ec::Client::connect(&endpoints, Some(options)),
        )
        .await
        .map_err(|_| StoreError::Unavailable(Box::new(Timeout(Self::DEFAULT_TIMEOUT))))?
        .map_err(|e| map_err(e, None))?;
        Ok(Self::from_client(client))
    }

    /// Wraps an already configured client (TLS, auth...).
    pub fn from_client(client: ec::Client) -> Self {
        EtcdStore { client, timeout: Self::DEFAULT_TIMEOUT }
    }

    /// Changes the bound on unary calls.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The underlying client, for what the contract does not cover.
    pub fn client(&self) -> &ec::Client {
        &self.client
    }

    async fn call<T>(
        &self,
        lease: Option<LeaseId>,
        fut: impl Future<Output = std::result::Result<T, ec::Error>>,
    ) -> Result<T> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| StoreError::Unavailable(Box::new(Timeout(self.timeout))))?
            .map_err(|e| map_err(e, lease))
    }

    /// [`Self::call`] for a request made afresh by `make`, sent again while
    /// it is refused before it reaches any member ([`never_sent`]), within
    /// the same timeout. The client spreads requests over the members: with
    /// one member down, a third of them would otherwise fail for as long as
    /// it stays down (seen with `midonet sandbox up --ha`), although the
    /// other two members serve.
    async fn call_again<T, F, Fut>(&self, lease: Option<LeaseId>, mut make: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, ec::Error>>,
    {
        const PAUSE: Duration = Duration::from_millis(20);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, make()).await {
                Err(_) => return Err(StoreError::Unavailable(Box::new(Timeout(self.timeout)))),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if never_sent(&e) && tokio::time::Instant::now() + PAUSE < deadline => {
                    tracing::debug!(error = %e, "etcd member refused the connection; sending again");
                    tokio::time::sleep(PAUSE).await;
                }
                Ok(Err(e)) => return Err(map_err(e, lease)),
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        validate_txn(&txn)?;
        let lease = txn.success.iter().chain(&txn.failure).find_map(|op| match op {
            TxnOp::Put { lease, .. } => *lease,
            _ => None,
        });
        let resp = self
            .call_again(lease, || {
                let mut kv = self.client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES);
                let t = etcd_txn(&txn);
                async move { kv.txn(t).await }
            })
            .await?;
        let succeeded = resp.succeeded();
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let branch = if succeeded { &txn.success } else { &txn.failure };
        let op_responses = resp.op_responses();
        if op_responses.len() != branch.len() {
            return Err(StoreError::backend(format!(
                "etcd returned {} results for {} operations",
                op_responses.len(),
                branch.len()
            )));
        }
        let responses = branch
            .iter()
            .zip(op_responses)
            .map(|(op, r)| match (op, r) {
                (TxnOp::Put { .. }, ec::TxnOpResponse::Put(_)) => Ok(OpResponse::Put),
                (
                    TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. },
                    ec::TxnOpResponse::Delete(d),
                ) => Ok(OpResponse::Delete { deleted: d.deleted() }),
                (TxnOp::Get { .. }, ec::TxnOpResponse::Get(g)) => {
                    Ok(OpResponse::Get(g.kvs().first().map(kv_from)))
                }
                (TxnOp::Range { .. }, ec::TxnOpResponse::Get(g)) => {
                    Ok(OpResponse::Range(g.kvs().iter().map(kv_from).collect()))
                }
                (op, r) => Err(StoreError::backend(format!("etcd answered {op:?} with {r:?}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TxnResponse { succeeded, revision, responses })
    }

    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream> {
        if from_revision < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "watch from negative revision {from_revision}"
            )));
        }
        let (key, end) = etcd_range(prefix);
        let options = ec::WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_start_revision(from_revision);
        let mut stream = self
            .call_again(None, || {
                let mut wc =
                    self.client.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES);
                let (key, options) = (key.clone(), options.clone());
                async move { wc.watch(key, Some(options)).await }
            })
            .await?;
        // Wait until etcd has registered the watch (see module docs).
        let created = self.call(None, stream.message()).await?;
        let mut state = EtcdWatch { stream, pending: VecDeque::new(), end: None, finished: false };
        match created {
            // etcd may also cancel in the created response; the stream then
            // yields that error first.
            Some(resp) if resp.created() => state.absorb(resp),
            Some(resp) => {
                return Err(StoreError::backend(format!(
                    "etcd watch: expected a created response, got {resp:?}"
                )))
            }
            None => return Err(StoreError::Unavailable("etcd closed the watch stream".into())),
        }
        Ok(Box::pin(futures::stream::unfold(state, EtcdWatch::next)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut kv = self.client.kv_client();
        let fut = kv.compact(revision, Some(ec::CompactionOptions::new().with_physical()));
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(StoreError::Unavailable(Box::new(Timeout(self.timeout)))),
            Ok(Ok(_)) => Ok(()),
            // Already compacted at or past `revision`: nothing to do.
            Ok(Err(e)) if is_status(&e, "required revision has been compacted") => Ok(()),
            Ok(Err(e)) if is_status(&e, "required revision is a future revision") => {
                Err(StoreError::FutureRevision(revision))
            }
            Ok(Err(e)) => Err(map_err(e, None)),
        }
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<Lease> {
        if ttl_secs <= 0 {
            return Err(StoreError::InvalidArgument(format!(
                "lease ttl {ttl_secs}s is not positive"
            )));
        }
        // etcd's own ids are a member prefix plus a counter: ask for a
        // random one instead (see the embedded store).
        let id = (rand::random::<u64>() >> 2) as i64 + 1;
        let opts = etcd_client::LeaseGrantOptions::new().with_id(id);
        let resp = self
            .call_again(None, || {
                let (mut lc, opts) = (self.client.lease_client(), opts.clone());
                async move { lc.grant(ttl_secs, Some(opts)).await }
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(StoreError::backend(format!("etcd lease grant: {}", resp.error())));
        }
        Ok(Lease { id: LeaseId(resp.id()), ttl_secs: resp.ttl() })
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<i64> {
        // Opening the keep-alive stream already sends one refresh and fails
        // if the lease is gone; one more exchange reads the granted TTL.
        let (mut keeper, mut responses) = self
            .call_again(Some(lease), || {
                let mut lc = self.client.lease_client();
                async move { lc.keep_alive(lease.0).await }
            })
            .await?;
        self.call(Some(lease), keeper.keep_alive()).await?;
        match self.call(Some(lease), responses.message()).await? {
            Some(resp) if resp.ttl() > 0 => Ok(resp.ttl()),
            Some(_) => Err(StoreError::LeaseNotFound(lease)),
            None => Err(StoreError::Unavailable("etcd closed the lease keep-alive stream".into())),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.call_again(Some(lease), || {
            let mut lc = self.client.lease_client();
            async move { lc.revoke(lease.0).await }
        })
        .await?;
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .call_again(None, || {
                let mut kv = self.client.kv_client();
                async move { kv.get(vec![0], Some(ec::GetOptions::new().with_count_only())).await }
            })
            .await?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| StoreError::backend("etcd response without header"))
    }
}

/// State of one etcd watch stream.
struct EtcdWatch {
    stream: ec::WatchStream,
    pending: VecDeque<WatchBatch>,
    /// The error that ends the stream, yielded after `pending` drains.
    end: Option<StoreError>,
    finished: bool,
}

impl EtcdWatch {
    /// Queues the events of `resp` as per-revision batches, and notes the
    /// end of the watch if `resp` cancels it.
    fn absorb(&mut self, resp: ec::WatchResponse) {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let prev = ev.prev_kv().map(kv_from);
            let event = match ev.event_type() {
                ec::EventType::Put => WatchEvent::Put { kv: kv_from(kv), prev },
                ec::EventType::Delete => {
                    WatchEvent::Delete { key: kv.key().to_vec(), revision: kv.mod_revision(), prev }
                }
            };
            match self.pending.back_mut() {
                Some(batch) if batch.revision == event.revision() => batch.events.push(event),
                _ => self
                    .pending
                    .push_back(WatchBatch { revision: event.revision(), events: vec![event] }),
            }
        }
        if resp.compact_revision() != 0 {
            self.end = Some(StoreError::Compacted { compact_revision: resp.compact_revision() });
        } else if resp.canceled() {
            self.end = Some(StoreError::backend(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason()
            )));
        }
    }

    async fn next(mut self) -> Option<(Result<WatchBatch>, Self)> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Some((Ok(batch), self));
            }
            if self.finished {
                return None;
            }
            if let Some(err) = self.end.take() {
                self.finished = true;
                return Some((Err(err), self));
            }
            match self.stream.message().await {
                Ok(Some(resp)) => self.absorb(resp),
                Ok(None) => {
                    self.end = Some(StoreError::Unavailable("etcd closed the watch stream".into()));
                }
                Err(e) => self.end = Some(map_err(e, None)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_match_etcd_conventions() {
        assert_eq!(etcd_range(b"/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(etcd_range(b""), (vec![0], vec![0]));
        assert_eq!(etcd_range(&[0xff]), (vec![0xff], vec![0]));
    }

    #[test]
    fn lease_and_argument_errors_map_to_contract_errors() {
        let e = ec::Error::GRpcStatus(tonic::Status::not_found(
            "etcdserver: requested lease not found",
        ));
        assert!(matches!(map_err(e, Some(LeaseId(7))), StoreError::LeaseNotFound(LeaseId(7))));
        let e = ec::Error::GRpcStatus(tonic::Status::invalid_argument(
            "etcdserver: too many operations in txn request",
        ));
        assert!(matches!(map_err(e, None), StoreError::InvalidArgument(_)));
        let e = ec::Error::GRpcStatus(tonic::Status::unavailable("etcdserver: no leader"));
        assert!(map_err(e, None).is_retryable());
    }
}
