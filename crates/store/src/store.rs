//! The [`Store`] trait.
//!
//! Backends implement the primitive operations (`txn`, `watch`, `compact`,
//! leases, `current_revision`); the single-key conveniences (`get`, `range`,
//! `put`, `delete`, `delete_prefix`) are provided on top of `txn`, so every
//! backend gives them exactly the same semantics. Backends may override them
//! with a cheaper native call as long as the results stay identical.

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{
    DeleteResponse, KeyValue, Lease, LeaseId, OpResponse, RangeResponse, Revision, Txn, TxnOp,
    TxnResponse, WatchStream,
};
use crate::StoreError;

/// The topology store: an etcd-v3-like revisioned key-value store with
/// transactions, prefix watches and leases. Object safe: use it as
/// `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs a transaction atomically (see [`Txn`]).
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Watches every key starting with `prefix` (all keys if empty).
    ///
    /// `from_revision` is the first revision to deliver; `0` means "changes
    /// after now" (everything committed after this call returns is
    /// delivered). Batches arrive in revision order, one per transaction.
    ///
    /// **Compaction:** if `from_revision` is older than the compaction
    /// point, `watch` still returns `Ok`, and the stream's first (and last)
    /// item is `Err(StoreError::Compacted { compact_revision })`. That is
    /// how etcd reports it (asynchronously, after the watch is created), so
    /// both backends report it the same way. The same error ends a watch
    /// that fell so far behind that its next revision was compacted. Recover
    /// by re-listing with [`Store::range`] and watching from its revision + 1.
    ///
    /// A stream can also end with [`StoreError::Unavailable`] (etcd
    /// connection lost); the watcher then watches again from the last
    /// revision it saw + 1, which loses nothing unless that was compacted.
    ///
    /// `watch` returns `Err` only when the watch could not be set up at all
    /// (backend unreachable, invalid argument).
    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream>;

    /// Discards the history before `revision`: watches from an older revision
    /// fail with [`StoreError::Compacted`] afterwards. Compacting to or below
    /// the current compaction point is a no-op; a revision above the current
    /// revision is [`StoreError::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Grants a lease of `ttl_secs` seconds (> 0). The granted TTL may be
    /// larger (etcd enforces a minimum).
    async fn grant_lease(&self, ttl_secs: i64) -> Result<Lease>;

    /// Refreshes the lease's deadline to now + its TTL once, and returns the
    /// TTL. Callers keep a lease alive by calling this about every TTL/3.
    /// [`StoreError::LeaseNotFound`] if it already expired or was revoked.
    async fn keep_alive(&self, lease: LeaseId) -> Result<i64>;

    /// Ends the lease now, deleting its keys (one revision, with Delete watch
    /// events).
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Reads one key.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let resp = self.txn(Txn::new().and_then([TxnOp::get(key)])).await?;
        match resp.responses.into_iter().next() {
            Some(OpResponse::Get(kv)) => Ok(kv),
            other => Err(unexpected("get", other)),
        }
    }

    /// Reads every key starting with `prefix` (all keys if empty), sorted by
    /// key, with the revision of the read.
    async fn range(&self, prefix: &[u8]) -> Result<RangeResponse> {
        let resp = self.txn(Txn::new().and_then([TxnOp::range(prefix)])).await?;
        let revision = resp.revision;
        match resp.responses.into_iter().next() {
            Some(OpResponse::Range(kvs)) => Ok(RangeResponse { kvs, revision }),
            other => Err(unexpected("range", other)),
        }
    }

    /// Writes one key, optionally attached to a lease (a put without a lease
    /// detaches the key from any lease it had). Returns the new revision.
    async fn put(&self, key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Result<Revision> {
        let op = TxnOp::Put { key: key.to_vec(), value: value.to_vec(), lease };
        Ok(self.txn(Txn::new().and_then([op])).await?.revision)
    }

    /// Deletes one key.
    async fn delete(&self, key: &[u8]) -> Result<DeleteResponse> {
        let resp = self.txn(Txn::new().and_then([TxnOp::delete(key)])).await?;
        delete_response("delete", resp)
    }

    /// Deletes every key starting with `prefix` (all keys if empty), in one
    /// revision.
    async fn delete_prefix(&self, prefix: &[u8]) -> Result<DeleteResponse> {
        let resp = self.txn(Txn::new().and_then([TxnOp::delete_prefix(prefix)])).await?;
        delete_response("delete_prefix", resp)
    }
}

fn delete_response(what: &str, resp: TxnResponse) -> Result<DeleteResponse> {
    let revision = resp.revision;
    match resp.responses.into_iter().next() {
        Some(OpResponse::Delete { deleted }) => Ok(DeleteResponse { deleted, revision }),
        other => Err(unexpected(what, other)),
    }
}

fn unexpected(what: &str, got: Option<OpResponse>) -> StoreError {
    StoreError::backend(format!("{what}: unexpected transaction response {got:?}"))
}
