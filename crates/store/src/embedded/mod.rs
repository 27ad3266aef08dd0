//! The embedded backend: one redb file (or redb's in-memory backend) plus an
//! in-process watch hub.
//!
//! # Layout
//!
//! ```text
//! kv          key            -> record (create_rev, mod_rev, version, lease, value)
//! history     revision       -> every event of that revision, with prev kvs
//! meta        "revision"     -> current store revision (1 in a fresh store)
//!             "compact_revision"
//! leases      lease id       -> ttl seconds      (ids are random, 62 bits)
//! lease_keys  lease id       =>> keys attached to it (multimap)
//! ```
//!
//! A store transaction's key changes, its history entry and the new revision
//! commit in one redb write transaction, so after a crash the file holds a
//! prefix of the committed transactions and never a revision without its
//! events. File mode commits with redb's default immediate durability.
//!
//! **Group commit.** An fsync per store transaction would cap concurrent
//! writers at one disk flush each (about 0.4 ms here). Writers therefore
//! queue their transaction and then take the writer lock; the lock holder
//! drains the whole queue and applies the requests in queue order, each
//! with its own revision, in one redb transaction with one fsync, then
//! answers all of them. A request whose lease is missing fails alone
//! (checked before it writes); a storage or decoding failure aborts the
//! group, which is then retried one request at a time so that only the
//! request that hits it fails. Nobody's reply is sent before the commit.
//!
//! # Writes and the watch hub
//!
//! Writers are serialised by one mutex held from `begin_write` to after the
//! broadcast of the committed batch, so batches enter the hub in revision
//! order. The hub is a `tokio::sync::broadcast` channel of `Arc<WatchBatch>`:
//! sending never blocks, so a slow watcher can never stall writers (the
//! failure seen with sled's bounded subscribers). A watcher that falls more
//! than the channel's capacity behind sees `Lagged`, and then simply reads
//! the revisions it missed from the `history` table, which is also how a
//! watch from an old revision replays. The history table is the source of
//! truth; the channel is only a fast path. A watcher whose next revision has
//! been compacted away gets [`StoreError::Compacted`] and must re-list.
//!
//! Read-only transactions run on a redb read snapshot without the writer
//! lock; their revision is read from the same snapshot.
//!
//! # Leases
//!
//! Leases and the keys attached to them are persisted. Deadlines are not:
//! they live in memory, and a store reopened from its file gives every
//! surviving lease a fresh full TTL from the moment of opening (the owner may
//! still be alive; etcd does the same when a new leader takes over). A tokio
//! task checks deadlines every [`EXPIRY_TICK`] and revokes expired leases,
//! which deletes their keys in one revision with Delete events.
//!
//! # History growth
//!
//! By default nothing compacts automatically: the owner of the store (the
//! cluster) calls [`Store::compact`] periodically, as one would with etcd,
//! or sets [`EmbeddedOptions::history_retention`].
//!
//! # Blocking
//!
//! redb calls block (fsync), so every operation runs on tokio's blocking
//! pool. Opening requires a tokio runtime (for the expiry task).

mod codec;

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::{Result, StoreError};
use crate::types::{
    prefix_end, validate_txn, KeyValue, Lease, LeaseId, OpResponse, Revision, Txn, TxnOp,
    TxnResponse, WatchBatch, WatchEvent, WatchStream,
};
use crate::Store;

const KV: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<'_, i64, &[u8]> = TableDefinition::new("history");
const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<'_, i64, i64> = TableDefinition::new("leases");
const LEASE_KEYS: MultimapTableDefinition<'_, i64, &[u8]> =
    MultimapTableDefinition::new("lease_keys");

const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";

/// How often lease deadlines are checked. Expiry is therefore up to this late.
pub const EXPIRY_TICK: Duration = Duration::from_millis(100);

/// Most revisions a watcher reads from the history table in one go, so a
/// watcher far behind catches up in bounded memory.
const REPLAY_CHUNK: i64 = 512;

/// Tuning of an [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Revisions the in-memory watch hub keeps for slow watchers before they
    /// fall back to reading the history table.
    pub watch_buffer: usize,
    /// If set, keep only about this many revisions of history: every
    /// [`AUTO_COMPACT_EVERY`] revisions the store compacts itself to
    /// `revision - history_retention` in the same write transaction. `None`
    /// (the default, as etcd without `--auto-compaction-*`) keeps everything
    /// until [`Store::compact`] is called.
    pub history_retention: Option<i64>,
}

/// How often (in revisions) automatic compaction runs when
/// [`EmbeddedOptions::history_retention`] is set.
pub const AUTO_COMPACT_EVERY: i64 = 128;

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions { watch_buffer: 4096, history_retention: None }
    }
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(Box::new(e.into()))
}

/// The embedded store. Cheap to share behind `Arc<dyn Store>`.
///
/// Dropping the store ends its watch streams (after they deliver what is
/// already committed) and stops lease expiry. The database file stays open
/// (and locked) until the store *and* every watch stream are dropped.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    expiry: tokio::task::JoinHandle<()>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.expiry.abort();
        self.inner.hub.lock().take();
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("revision", &self.inner.revision.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

struct LeaseState {
    ttl_secs: i64,
    deadline: Instant,
}

type Deadlines = Arc<Mutex<HashMap<i64, LeaseState>>>;

struct Inner {
    db: Database,
    /// Held across a whole write transaction and its broadcast.
    writer: Mutex<()>,
    /// Writing transactions waiting for the writer lock (group commit).
    queue: Mutex<Vec<Pending>>,
    history_retention: Option<i64>,
    /// Cache of the committed revision (the `meta` table is the truth).
    revision: AtomicI64,
    /// `None` once the [`EmbeddedStore`] is dropped: receivers then see
    /// `Closed`, and watch streams end after draining the history.
    hub: Mutex<Option<broadcast::Sender<Arc<WatchBatch>>>>,
    deadlines: Deadlines,
}

impl EmbeddedStore {
    /// Opens (or creates) a store in the file at `path`, creating missing
    /// parent directories.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        if let Some(parent) = path.as_ref().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(StoreError::backend)?;
        }
        let db = Database::create(path.as_ref()).map_err(db_err)?;
        Self::from_db(db, options)
    }

    /// A store in memory only, for tests and throw-away sandboxes.
    pub fn in_memory() -> Result<Self> {
        Self::in_memory_with(EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::in_memory`] with options.
    pub fn in_memory_with(options: EmbeddedOptions) -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Self::from_db(db, options)
    }

    fn from_db(db: Database, options: EmbeddedOptions) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::InvalidArgument(
                "the embedded store must be opened inside a tokio runtime".into(),
            )
        })?;
        let (revision, leases) = init_tables(&db)?;
        let now = Instant::now();
        let deadlines: Deadlines = Arc::new(Mutex::new(
            leases
                .into_iter()
                .map(|(id, ttl_secs)| {
                    let deadline = now + Duration::from_secs(ttl_secs.unsigned_abs());
                    (id, LeaseState { ttl_secs, deadline })
                })
                .collect(),
        ));
        let (hub, _) = broadcast::channel(options.watch_buffer.max(1));
        let inner = Arc::new(Inner {
            db,
            writer: Mutex::new(()),
            queue: Mutex::new(Vec::new()),
            history_retention: options.history_retention,
            revision: AtomicI64::new(revision),
            hub: Mutex::new(Some(hub)),
            deadlines: Arc::clone(&deadlines),
        });
        let expiry = runtime.spawn(expiry_loop(Arc::downgrade(&inner), deadlines));
        Ok(EmbeddedStore { inner, expiry })
    }
}

/// Creates missing tables, and returns the current revision and the
/// persisted leases.
fn init_tables(db: &Database) -> Result<(Revision, Vec<(i64, i64)>)> {
    let wtx = db.begin_write().map_err(db_err)?;
    let (revision, leases) = {
        let mut meta = wtx.open_table(META).map_err(db_err)?;
        let existing = meta.get(META_REVISION).map_err(db_err)?.map(|r| r.value());
        let revision = match existing {
            Some(r) => r,
            None => {
                // etcd starts at revision 1; so do we, so 0 never names a
                // real revision.
                meta.insert(META_REVISION, 1).map_err(db_err)?;
                meta.insert(META_COMPACT, 0).map_err(db_err)?;
                1
            }
        };
        wtx.open_table(KV).map_err(db_err)?;
        wtx.open_table(HISTORY).map_err(db_err)?;
        wtx.open_multimap_table(LEASE_KEYS).map_err(db_err)?;
        let table = wtx.open_table(LEASES).map_err(db_err)?;
        let mut leases = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (id, ttl) = entry.map_err(db_err)?;
            leases.push((id.value(), ttl.value()));
        }
        (revision, leases)
    };
    wtx.commit().map_err(db_err)?;
    Ok((revision, leases))
}

fn key_bounds(prefix: &[u8]) -> (Bound<&[u8]>, Bound<Vec<u8>>) {
    let end = match prefix_end(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(prefix), end)
}

/// Reads every kv under `prefix` from any readable kv table.
fn read_prefix(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Vec<KeyValue>> {
    let (start, end) = key_bounds(prefix);
    let end_ref = match &end {
        Bound::Excluded(e) => Bound::Excluded(e.as_slice()),
        _ => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for entry in table.range::<&[u8]>((start, end_ref)).map_err(db_err)? {
        let (k, v) = entry.map_err(db_err)?;
        out.push(codec::decode_record(k.value(), v.value())?);
    }
    Ok(out)
}

fn read_key(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<KeyValue>> {
    match table.get(key).map_err(db_err)? {
        Some(v) => Ok(Some(codec::decode_record(key, v.value())?)),
        None => Ok(None),
    }
}

fn is_write(op: &TxnOp) -> bool {
    matches!(op, TxnOp::Put { .. } | TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. })
}

impl Inner {
    fn current_revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// A transaction with no write in either branch: a snapshot read.
    fn read_txn(&self, txn: &Txn) -> Result<TxnResponse> {
        let rtx = self.db.begin_read().map_err(db_err)?;
        let kv = rtx.open_table(KV).map_err(db_err)?;
        let meta = rtx.open_table(META).map_err(db_err)?;
        let revision = meta
            .get(META_REVISION)
            .map_err(db_err)?
            .map(|r| r.value())
            .ok_or_else(|| StoreError::Corrupt("meta table has no revision".into()))?;
        let mut succeeded = true;
        for c in &txn.compares {
            if !c.evaluate(read_key(&kv, &c.key)?.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let branch = if succeeded { &txn.success } else { &txn.failure };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            responses.push(match op {
                TxnOp::Get { key } => OpResponse::Get(read_key(&kv, key)?),
                TxnOp::Range { prefix } => OpResponse::Range(read_prefix(&kv, prefix)?),
                _ => unreachable!("read_txn is only called for transactions without writes"),
            });
        }
        Ok(TxnResponse { succeeded, revision, responses })
    }

    /// Runs a writing transaction through group commit (see module docs).
    fn write_txn(&self, txn: Txn) -> Result<TxnResponse> {
        let slot: Slot = Arc::new(Mutex::new(None));
        self.queue.lock().push(Pending { txn, slot: Arc::clone(&slot) });
        let _writer = self.writer.lock();
        // Whoever held the writer lock before us may have committed our
        // request with theirs; it fills every slot before unlocking.
        if let Some(result) = slot.lock().take() {
            return result;
        }
        let batch = std::mem::take(&mut *self.queue.lock());
        self.commit_group(batch);
        let result = slot.lock().take();
        result.expect("commit_group fills the slot of every request it drained")
    }

    /// Commits `batch` (drained from the queue) and fills every slot. Must
    /// be called with the writer lock held.
    fn commit_group(&self, batch: Vec<Pending>) {
        match self.try_group(&batch) {
            Ok(results) => {
                for (pending, result) in batch.into_iter().zip(results) {
                    *pending.slot.lock() = Some(result);
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(pending) = batch.into_iter().next() {
                    *pending.slot.lock() = Some(Err(e));
                }
            }
            // A storage or decoding failure aborted the whole group: retry
            // each request alone, so that only the one that hits the
            // failure reports it.
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "group commit failed; retrying one by one");
                for pending in batch {
                    let result = match self.try_group(std::slice::from_ref(&pending)) {
                        Ok(mut results) => results.pop().expect("one result per request"),
                        Err(e) => Err(e),
                    };
                    *pending.slot.lock() = Some(result);
                }
            }
        }
    }

    /// Applies every request of `batch` in order in one redb write
    /// transaction, each changing request getting the next revision, and
    /// commits once. The outer error aborts the whole group (nothing
    /// written); the inner ones are per request (that request wrote nothing).
    fn try_group(&self, batch: &[Pending]) -> Result<Vec<Result<TxnResponse>>> {
        let wtx = self.db.begin_write().map_err(db_err)?;
        let base = self.current_revision();
        let mut rev = base;
        let mut published = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        {
            let mut kv = wtx.open_table(KV).map_err(db_err)?;
            let leases = wtx.open_table(LEASES).map_err(db_err)?;
            let mut lease_keys = wtx.open_multimap_table(LEASE_KEYS).map_err(db_err)?;
            let mut history = wtx.open_table(HISTORY).map_err(db_err)?;
            for pending in batch {
                let applied = apply_txn(&mut kv, &leases, &mut lease_keys, &pending.txn, rev + 1)?;
                results.push(applied.map(|(succeeded, responses, events)| {
                    if !events.is_empty() {
                        rev += 1;
                        published.push((rev, events));
                    }
                    TxnResponse { succeeded, revision: rev, responses }
                }));
            }
            for (r, events) in &published {
                history.insert(*r, codec::encode_events(events).as_slice()).map_err(db_err)?;
            }
        }
        if rev == base {
            // Nothing changed: as etcd, no new revision.
            wtx.abort().map_err(db_err)?;
            return Ok(results);
        }
        {
            let mut meta = wtx.open_table(META).map_err(db_err)?;
            meta.insert(META_REVISION, rev).map_err(db_err)?;
        }
        self.auto_compact(&wtx, base, rev)?;
        wtx.commit().map_err(db_err)?;
        self.revision.store(rev, Ordering::Release);
        if let Some(hub) = self.hub.lock().as_ref() {
            for (revision, events) in published {
                // No receivers is not an error: nobody is watching.
                let _ = hub.send(Arc::new(WatchBatch { revision, events }));
            }
        }
        Ok(results)
    }

    /// With a history retention set, compacts inside `wtx` when the
    /// revisions `base+1..=rev` cross a multiple of [`AUTO_COMPACT_EVERY`].
    fn auto_compact(&self, wtx: &WriteTransaction, base: Revision, rev: Revision) -> Result<()> {
        if let Some(keep) = self.history_retention {
            let keep = keep.max(1);
            if base / AUTO_COMPACT_EVERY != rev / AUTO_COMPACT_EVERY && rev - keep > 1 {
                compact_in(wtx, rev - keep)?;
            }
        }
        Ok(())
    }

    /// Records `events` as revision `rev`, commits, and publishes them.
    /// Must be called with the writer lock held.
    fn commit_revision(
        &self,
        wtx: WriteTransaction,
        rev: Revision,
        events: Vec<WatchEvent>,
    ) -> Result<()> {
        {
            let mut history = wtx.open_table(HISTORY).map_err(db_err)?;
            history.insert(rev, codec::encode_events(&events).as_slice()).map_err(db_err)?;
            let mut meta = wtx.open_table(META).map_err(db_err)?;
            meta.insert(META_REVISION, rev).map_err(db_err)?;
        }
        self.auto_compact(&wtx, rev - 1, rev)?;
        wtx.commit().map_err(db_err)?;
        self.revision.store(rev, Ordering::Release);
        if let Some(hub) = self.hub.lock().as_ref() {
            // No receivers is not an error: nobody is watching.
            let _ = hub.send(Arc::new(WatchBatch { revision: rev, events }));
        }
        Ok(())
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        let _writer = self.writer.lock();
        let current = self.current_revision();
        if revision > current {
            return Err(StoreError::FutureRevision(revision));
        }
        let wtx = self.db.begin_write().map_err(db_err)?;
        if compact_in(&wtx, revision)? {
            wtx.commit().map_err(db_err)?;
        }
        Ok(())
    }

    fn grant_lease(&self, ttl_secs: i64) -> Result<Lease> {
        if ttl_secs <= 0 {
            return Err(StoreError::InvalidArgument(format!(
                "lease ttl {ttl_secs}s is not positive"
            )));
        }
        let _writer = self.writer.lock();
        let wtx = self.db.begin_write().map_err(db_err)?;
        let id = {
            // Random, not sequential: a lease id names an agent's session,
            // and nobody should guess the next one (issue: guessable
            // sessions). 62 bits, positive, never 0; drawn again on the rare
            // clash with a live lease.
            let mut leases = wtx.open_table(LEASES).map_err(db_err)?;
            let id = loop {
                let id = (rand::random::<u64>() >> 2) as i64 + 1;
                if leases.get(id).map_err(db_err)?.is_none() {
                    break id;
                }
            };
            leases.insert(id, ttl_secs).map_err(db_err)?;
            id
        };
        wtx.commit().map_err(db_err)?;
        let deadline = Instant::now() + Duration::from_secs(ttl_secs.unsigned_abs());
        self.deadlines.lock().insert(id, LeaseState { ttl_secs, deadline });
        Ok(Lease { id: LeaseId(id), ttl_secs })
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<i64> {
        let mut deadlines = self.deadlines.lock();
        let state = deadlines.get_mut(&lease.0).ok_or(StoreError::LeaseNotFound(lease))?;
        // A lease past its deadline is dead even if the expiry task has not
        // deleted its keys yet: reviving it would race with that deletion.
        let now = Instant::now();
        if state.deadline <= now {
            return Err(StoreError::LeaseNotFound(lease));
        }
        state.deadline = now + Duration::from_secs(state.ttl_secs.unsigned_abs());
        Ok(state.ttl_secs)
    }

    /// Deletes the lease and its keys in one revision. With `only_if_due`,
    /// does nothing unless the lease's deadline has passed (the expiry task
    /// re-checks under the writer lock, in case of a concurrent keep-alive).
    fn revoke_lease(&self, lease: LeaseId, only_if_due: bool) -> Result<()> {
        let _writer = self.writer.lock();
        if only_if_due {
            let deadlines = self.deadlines.lock();
            match deadlines.get(&lease.0) {
                Some(s) if s.deadline <= Instant::now() => {}
                _ => return Ok(()),
            }
        }
        let wtx = self.db.begin_write().map_err(db_err)?;
        let rev = self.current_revision() + 1;
        let mut events = Vec::new();
        {
            let mut leases = wtx.open_table(LEASES).map_err(db_err)?;
            if leases.remove(lease.0).map_err(db_err)?.is_none() {
                self.deadlines.lock().remove(&lease.0);
                return Err(StoreError::LeaseNotFound(lease));
            }
            let mut kv = wtx.open_table(KV).map_err(db_err)?;
            let mut lease_keys = wtx.open_multimap_table(LEASE_KEYS).map_err(db_err)?;
            let mut keys = Vec::new();
            for k in lease_keys.remove_all(lease.0).map_err(db_err)? {
                keys.push(k.map_err(db_err)?.value().to_vec());
            }
            // Sorted, so the Delete events come in key order as with a
            // prefix delete.
            keys.sort_unstable();
            for key in keys {
                if let Some(prev) = read_key(&kv, &key)? {
                    kv.remove(key.as_slice()).map_err(db_err)?;
                    events.push(WatchEvent::Delete { key, revision: rev, prev: Some(prev) });
                }
            }
        }
        self.deadlines.lock().remove(&lease.0);
        if events.is_empty() {
            wtx.commit().map_err(db_err)?;
            return Ok(());
        }
        self.commit_revision(wtx, rev, events)
    }

    /// Reads the history from `from` on, at most [`REPLAY_CHUNK`] revisions,
    /// keeping the events under the watched range. Returns the batches and
    /// the last revision examined.
    fn replay(&self, prefix: &[u8], from: Revision) -> Result<(Vec<WatchBatch>, Revision)> {
        let rtx = self.db.begin_read().map_err(db_err)?;
        let meta = rtx.open_table(META).map_err(db_err)?;
        let get =
            |k: &str| -> Result<i64> { Ok(meta.get(k).map_err(db_err)?.map_or(0, |v| v.value())) };
        let compact_revision = get(META_COMPACT)?;
        if from < compact_revision {
            return Err(StoreError::Compacted { compact_revision });
        }
        let last = get(META_REVISION)?.min(from + REPLAY_CHUNK - 1);
        let history = rtx.open_table(HISTORY).map_err(db_err)?;
        let mut batches = Vec::new();
        for entry in history.range(from..=last).map_err(db_err)? {
            let (rev, bytes) = entry.map_err(db_err)?;
            let rev = rev.value();
            let events: Vec<WatchEvent> = codec::decode_events(rev, bytes.value())?
                .into_iter()
                .filter(|e| in_prefix(e.key(), prefix))
                .collect();
            if !events.is_empty() {
                batches.push(WatchBatch { revision: rev, events });
            }
        }
        Ok((batches, last))
    }
}

/// The result slot of a queued write, filled by whoever commits it.
type Slot = Arc<Mutex<Option<Result<TxnResponse>>>>;

/// A writing transaction waiting for group commit.
struct Pending {
    txn: Txn,
    slot: Slot,
}

/// What one applied transaction produced: compares held, op results, events.
type Applied = (bool, Vec<OpResponse>, Vec<WatchEvent>);

/// Applies one store transaction inside a redb write transaction, as
/// revision `rev`. The outer error is fatal to the redb transaction (this
/// transaction may be half applied); the inner error, a missing lease, is
/// detected before anything is written.
fn apply_txn(
    kv: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    leases: &redb::Table<'_, i64, i64>,
    lease_keys: &mut redb::MultimapTable<'_, i64, &'static [u8]>,
    txn: &Txn,
    rev: Revision,
) -> Result<Result<Applied>> {
    let mut succeeded = true;
    for c in &txn.compares {
        if !c.evaluate(read_key(kv, &c.key)?.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let branch = if succeeded { &txn.success } else { &txn.failure };
    for op in branch {
        if let TxnOp::Put { lease: Some(l), .. } = op {
            if leases.get(l.0).map_err(db_err)?.is_none() {
                return Ok(Err(StoreError::LeaseNotFound(*l)));
            }
        }
    }
    let mut events = Vec::new();
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        let resp = match op {
            TxnOp::Put { key, value, lease } => {
                let prev = read_key(kv, key)?;
                let new = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                    mod_revision: rev,
                    version: prev.as_ref().map_or(0, |p| p.version) + 1,
                    lease: *lease,
                };
                kv.insert(key.as_slice(), codec::encode_record(&new).as_slice()).map_err(db_err)?;
                let old_lease = prev.as_ref().and_then(|p| p.lease);
                if old_lease != *lease {
                    if let Some(old) = old_lease {
                        lease_keys.remove(old.0, key.as_slice()).map_err(db_err)?;
                    }
                    if let Some(l) = lease {
                        lease_keys.insert(l.0, key.as_slice()).map_err(db_err)?;
                    }
                }
                events.push(WatchEvent::Put { kv: new, prev });
                OpResponse::Put
            }
            TxnOp::Delete { key } => {
                let deleted = match read_key(kv, key)? {
                    Some(prev) => {
                        delete_one(kv, lease_keys, &prev)?;
                        events.push(WatchEvent::Delete {
                            key: key.clone(),
                            revision: rev,
                            prev: Some(prev),
                        });
                        1
                    }
                    None => 0,
                };
                OpResponse::Delete { deleted }
            }
            TxnOp::DeletePrefix { prefix } => {
                let victims = read_prefix(kv, prefix)?;
                let deleted = victims.len() as i64;
                for prev in victims {
                    delete_one(kv, lease_keys, &prev)?;
                    events.push(WatchEvent::Delete {
                        key: prev.key.clone(),
                        revision: rev,
                        prev: Some(prev),
                    });
                }
                OpResponse::Delete { deleted }
            }
            TxnOp::Get { key } => OpResponse::Get(read_key(kv, key)?),
            TxnOp::Range { prefix } => OpResponse::Range(read_prefix(kv, prefix)?),
        };
        responses.push(resp);
    }
    Ok(Ok((succeeded, responses, events)))
}

/// Moves the compaction point up to `revision` and drops the history
/// before it, inside `wtx`. Returns false (and changes nothing) if the store
/// is already compacted at or past `revision`.
fn compact_in(wtx: &WriteTransaction, revision: Revision) -> Result<bool> {
    let mut meta = wtx.open_table(META).map_err(db_err)?;
    let compacted = meta.get(META_COMPACT).map_err(db_err)?.map_or(0, |v| v.value());
    if revision <= compacted {
        return Ok(false);
    }
    meta.insert(META_COMPACT, revision).map_err(db_err)?;
    let mut history = wtx.open_table(HISTORY).map_err(db_err)?;
    history.retain_in(..revision, |_, _| false).map_err(db_err)?;
    Ok(true)
}

fn delete_one(
    kv: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    lease_keys: &mut redb::MultimapTable<'_, i64, &'static [u8]>,
    prev: &KeyValue,
) -> Result<()> {
    kv.remove(prev.key.as_slice()).map_err(db_err)?;
    if let Some(l) = prev.lease {
        lease_keys.remove(l.0, prev.key.as_slice()).map_err(db_err)?;
    }
    Ok(())
}

fn in_prefix(key: &[u8], prefix: &[u8]) -> bool {
    key.starts_with(prefix)
}

async fn expiry_loop(inner: Weak<Inner>, deadlines: Deadlines) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let due: Vec<i64> =
            deadlines.lock().iter().filter(|(_, s)| s.deadline <= now).map(|(id, _)| *id).collect();
        if due.is_empty() {
            continue;
        }
        // Only take a strong reference when there is work, so that dropping
        // the store closes the database promptly.
        let Some(inner) = inner.upgrade() else { return };
        let res = tokio::task::spawn_blocking(move || {
            for id in due {
                match inner.revoke_lease(LeaseId(id), true) {
                    Ok(()) | Err(StoreError::LeaseNotFound(_)) => {}
                    Err(e) => tracing::warn!(lease = id, error = %e, "lease expiry failed"),
                }
            }
        })
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "lease expiry task failed");
        }
    }
}

/// Runs blocking store work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
) -> Result<T> {
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || f(&inner)).await.map_err(StoreError::backend)?
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        validate_txn(&txn)?;
        let writes = txn.success.iter().chain(&txn.failure).any(is_write);
        if writes {
            blocking(&self.inner, move |inner| inner.write_txn(txn)).await
        } else {
            blocking(&self.inner, move |inner| inner.read_txn(&txn)).await
        }
    }

    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream> {
        if from_revision < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "watch from negative revision {from_revision}"
            )));
        }
        // Subscribe before reading the revision: every revision above the
        // one read is then either in the hub or found in the history table.
        let rx = self
            .inner
            .hub
            .lock()
            .as_ref()
            .map(broadcast::Sender::subscribe)
            .ok_or_else(|| StoreError::Unavailable("embedded store is shut down".into()))?;
        let next_rev =
            if from_revision == 0 { self.inner.current_revision() + 1 } else { from_revision };
        let state = Watcher {
            inner: Arc::clone(&self.inner),
            prefix: prefix.to_vec(),
            rx,
            next_rev,
            pending: VecDeque::new(),
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, Watcher::next)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        blocking(&self.inner, move |inner| inner.compact(revision)).await
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<Lease> {
        blocking(&self.inner, move |inner| inner.grant_lease(ttl_secs)).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<i64> {
        self.inner.keep_alive(lease)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        blocking(&self.inner, move |inner| inner.revoke_lease(lease, false)).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.current_revision())
    }
}

/// State of one watch stream. Invariant: every matching revision below
/// `next_rev` has been delivered or is in `pending`.
struct Watcher {
    inner: Arc<Inner>,
    prefix: Vec<u8>,
    rx: broadcast::Receiver<Arc<WatchBatch>>,
    next_rev: Revision,
    pending: VecDeque<WatchBatch>,
    finished: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<WatchBatch>, Self)> {
        use broadcast::error::{RecvError, TryRecvError};
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Some((Ok(batch), self));
            }
            if self.finished {
                return None;
            }
            // First what the hub already holds: after a group commit it has
            // several consecutive revisions, and reading them from memory
            // spares the history table.
            match self.rx.try_recv() {
                Ok(batch) => {
                    self.accept(&batch);
                    continue;
                }
                Err(TryRecvError::Lagged(skipped)) => {
                    self.lagged(skipped);
                    continue;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => {}
            }
            // Committed revisions the hub did not give us: read them from
            // the history table (watch from the past, lag, or a commit whose
            // broadcast is not sent yet).
            if self.inner.current_revision() >= self.next_rev {
                let prefix = self.prefix.clone();
                let from = self.next_rev;
                match blocking(&self.inner, move |inner| inner.replay(&prefix, from)).await {
                    Ok((batches, last)) => {
                        self.pending.extend(batches);
                        self.next_rev = last + 1;
                        continue;
                    }
                    Err(e) => {
                        self.finished = true;
                        return Some((Err(e), self));
                    }
                }
            }
            match self.rx.recv().await {
                Ok(batch) => self.accept(&batch),
                Err(RecvError::Lagged(skipped)) => self.lagged(skipped),
                // The store is gone; a write still in flight then may have
                // committed without a broadcast, so look at the revision
                // once more before ending.
                Err(RecvError::Closed) => {
                    if self.inner.current_revision() < self.next_rev {
                        return None;
                    }
                }
            }
        }
    }

    /// Takes a batch from the hub if it is the next revision. An older one
    /// was already delivered from the history table; a newer one means a
    /// gap, which the history read in `next` fills.
    fn accept(&mut self, batch: &WatchBatch) {
        if batch.revision != self.next_rev {
            return;
        }
        self.next_rev += 1;
        let events: Vec<WatchEvent> =
            batch.events.iter().filter(|e| in_prefix(e.key(), &self.prefix)).cloned().collect();
        if !events.is_empty() {
            self.pending.push_back(WatchBatch { revision: batch.revision, events });
        }
    }

    fn lagged(&self, skipped: u64) {
        tracing::debug!(
            skipped,
            next_rev = self.next_rev,
            "watcher lagged; replaying from history"
        );
    }
}

#[cfg(test)]
mod tests;
