//! Optimistic transactions over the [`Store`]: read, decide, write all at
//! once with compares on what the decision was based on.
//!
//! ```text
//!   Tx::new ──get(k)────► store.get      (k, mod_revision) recorded as a compare
//!           ──list(p)───► store.range    entries remembered, compared only if written
//!           ──put/delete► buffered       (later reads of the same key see them)
//!           ──touch(id)─► guard key put  (see "guards" below)
//!   commit ──► Txn { compares, puts+deletes } ──► succeeded? done : Conflict → retry
//! ```
//!
//! The [`txn!`](crate::txn) macro runs a body in a fresh `Tx` and retries the
//! whole body on [`CommitError::Conflict`] (with a short jittered backoff) up
//! to [`MAX_ATTEMPTS`] times, then answers 409. A body that returns an error
//! writes nothing.
//!
//! # Guards: catching concurrent inserts that a range read cannot see
//!
//! A compare on a key catches changes to objects we read, but not a *new*
//! object created concurrently that refers to one we are deleting (a port
//! created on a bridge while the bridge is deleted, a rule jumping to a chain
//! while the chain is deleted). So every write of an object also puts
//! `/midonet/v1/meta/guard/<id>` for each id it refers to (blind writes, so
//! writers never conflict with each other), and a delete of `<id>` reads —
//! and therefore compares — that guard key before it scans for referrers.
//! Any referrer committed after the scan changes the guard and fails the
//! delete, which then retries and sees it.
//!
//! # Tunnel keys
//!
//! Every port takes a tunnel key from one counter. A transaction that read
//! and wrote the counter itself would conflict with every concurrent port
//! create, so a cluster process takes keys in blocks of [`KEY_BLOCK`]
//! ([`TunnelKeys`]): one small compare-and-set on the counter per block,
//! in its own store transaction, then keys from the block without touching
//! the counter. A key taken by a transaction that then fails is not reused
//! (nor are the rest of a block when the process stops): the key space
//! (about a million) is large against how often that happens. A `Tx`
//! without a block pool (tests, the LB checker) still reads and writes the
//! counter in its own transaction.
//!
//! Keys under `/midonet/v1/meta/` and `/midonet/v1/state/` are not topology
//! objects; topology watchers skip them.
//!
//! # The reverse-reference index
//!
//! `commit` also keeps [`crate::refs`]: for every written topology object it
//! adds and removes the index entries of the ids its value stops or starts
//! mentioning, in the same store transaction. The previous value is the one
//! this transaction read (and compares on); a blind write reads it at commit
//! time, compared like a `get`, so the entries of an object always match its
//! value. [`Tx::referrers`] reads the index for
//! [`crate::api::kinds::mentioning`]. The index does not replace the guards:
//! a delete still reads the guard of the deleted id, because a referrer
//! created after the delete read the index is no more visible to it than to
//! a scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;

use midonet_model::kind::ObjectKind;
use midonet_store::{Compare, CompareOp, OpResponse, Store, StoreError, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::refs;

/// How many times a write is tried before answering 409.
pub const MAX_ATTEMPTS: u32 = 12;

/// Counter of the next tunnel key to hand out.
pub const TUNNEL_KEY_COUNTER: &str = "/midonet/v1/meta/tunnel_key";
/// First tunnel key handed out (lower values are reserved, as in MidoNet).
pub const FIRST_TUNNEL_KEY: u32 = 16;
/// Last tunnel key handed out: port keys use the low 20 bits of the 24-bit
/// VNI; the upper bits (trace flag, key type) and 0xFFFFFF (flow state) are
/// reserved, as in MidoNet.
pub const LAST_TUNNEL_KEY: u32 = 0x000F_FFFF;

/// How many tunnel keys a cluster process takes from the counter at once.
pub const KEY_BLOCK: u32 = 64;

/// The tunnel keys a cluster process has taken from the counter and not
/// yet handed out (see the module docs).
#[derive(Default)]
pub struct TunnelKeys {
    /// `next..end` are this process's to hand out.
    block: tokio::sync::Mutex<(u32, u32)>,
}

impl TunnelKeys {
    /// The next key of this process's block, taking a new block from the
    /// counter when it is used up.
    pub async fn next(&self, store: &dyn Store) -> Result<u32, ApiError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            *block = take_key_block(store).await?;
        }
        let key = block.0;
        block.0 += 1;
        Ok(key)
    }
}

/// Moves the counter past a block of keys with a compare-and-set and
/// returns the block, retrying when another writer moved it first.
async fn take_key_block(store: &dyn Store) -> Result<(u32, u32), ApiError> {
    for attempt in 1..=MAX_ATTEMPTS {
        let kv = store.get(TUNNEL_KEY_COUNTER.as_bytes()).await?;
        let (next, rev) = match &kv {
            None => (FIRST_TUNNEL_KEY, 0),
            Some(kv) => (parse_counter(&kv.value)?, kv.mod_revision),
        };
        if next > LAST_TUNNEL_KEY {
            return Err(keys_exhausted());
        }
        let end = next.saturating_add(KEY_BLOCK).min(LAST_TUNNEL_KEY + 1);
        let cas = Txn::new()
            .when([Compare::mod_revision(TUNNEL_KEY_COUNTER, CompareOp::Equal, rev)])
            .and_then([TxnOp::put(TUNNEL_KEY_COUNTER, end.to_string())]);
        if store.txn(cas).await?.succeeded {
            return Ok((next, end));
        }
        backoff(attempt).await;
    }
    Err(ApiError::conflict("the tunnel key counter changed concurrently too many times; retry"))
}

fn parse_counter(b: &[u8]) -> Result<u32, ApiError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(|| ApiError::internal("tunnel key counter is corrupt"))
}

fn keys_exhausted() -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "no tunnel keys left for new ports")
}

/// Prefix of the guard keys.
pub const GUARD_PREFIX: &str = "/midonet/v1/meta/guard/";
/// Prefix of runtime state written by agents under leases.
pub const STATE_PREFIX: &str = "/midonet/v1/state/";

pub fn guard_key(id: Uuid) -> String {
    format!("{GUARD_PREFIX}{id}")
}
/// The datapath provider a host's agent registered with, from the value of
/// its [`host_alive_key`]; `None` when the agent did not say.
pub fn registered_datapath(alive: &[u8]) -> Option<String> {
    serde_json::from_slice::<midonet_proto::Liveness>(alive)
        .ok()
        .map(|l| l.datapath)
        .filter(|d| !d.is_empty())
}

/// Present while the host's agent is alive (under the agent's lease).
pub fn host_alive_key(id: Uuid) -> String {
    format!("{STATE_PREFIX}hosts/{id}/alive")
}
/// Present while the port is active on some host (under that agent's lease).
pub fn port_active_key(id: Uuid) -> String {
    format!("{STATE_PREFIX}ports/{id}/active")
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Something read by the transaction changed before it committed.
    #[error("conflict with a concurrent write")]
    Conflict,
    #[error("store failed")]
    Store(#[from] StoreError),
}

/// One optimistic transaction. Not shared between tasks.
pub struct Tx {
    store: Arc<dyn Store>,
    /// Keys read with `get`: compared on commit (0 = was missing).
    compared: HashMap<Vec<u8>, i64>,
    /// Keys seen through `list`: compared only if this transaction writes them.
    seen: HashMap<Vec<u8>, i64>,
    /// Values read, for repeated reads.
    cache: HashMap<Vec<u8>, Option<Vec<u8>>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    touched: BTreeSet<Uuid>,
    /// Store results of `list` per prefix: cascades scan the same prefix
    /// once per deleted object (routes of each port of a bridge, ...).
    ranges: HashMap<String, Vec<RawKv>>,
    /// The process's tunnel key blocks, if it has them.
    keys: Option<Arc<TunnelKeys>>,
}

/// A key and its value, as read.
type RawKv = (Vec<u8>, Vec<u8>);

/// Helps type inference of the `?` operator inside [`txn!`](crate::txn)
/// bodies: fixes their error type (`ApiError`, or the one named with `as`).
pub fn typed<T, E, F: Future<Output = Result<T, E>>>(f: F) -> F {
    f
}

/// Sleeps a little before retry `attempt` (1-based): 1–4 ms times the
/// attempt, jittered so that retrying writers spread out.
pub async fn backoff(attempt: u32) {
    let ms = u64::from(attempt) * (1 + rand::random::<u64>() % 4);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

impl Tx {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Tx {
            store,
            compared: HashMap::new(),
            seen: HashMap::new(),
            cache: HashMap::new(),
            writes: BTreeMap::new(),
            touched: BTreeSet::new(),
            ranges: HashMap::new(),
            keys: None,
        }
    }

    /// A transaction that takes tunnel keys from `keys` (see the module
    /// docs) instead of the counter.
    pub fn with_keys(store: Arc<dyn Store>, keys: Arc<TunnelKeys>) -> Self {
        Tx { keys: Some(keys), ..Tx::new(store) }
    }

    /// Reads a key (seeing this transaction's own writes); the value read is
    /// compared on commit.
    pub async fn get_raw(&mut self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let k = key.as_bytes();
        if let Some(w) = self.writes.get(k) {
            return Ok(w.clone());
        }
        if let Some(v) = self.cache.get(k) {
            if !self.compared.contains_key(k) {
                let rev = self.seen.get(k).copied().unwrap_or(0);
                self.compared.insert(k.to_vec(), rev);
            }
            return Ok(v.clone());
        }
        let kv = self.store.get(k).await?;
        let (rev, val) = match kv {
            Some(kv) => (kv.mod_revision, Some(kv.value)),
            None => (0, None),
        };
        self.compared.insert(k.to_vec(), rev);
        self.cache.insert(k.to_vec(), val.clone());
        Ok(val)
    }

    /// Reads several keys in one store round trip, as `get_raw` would one
    /// by one (so they are compared on commit); later reads hit the cache.
    pub async fn prefetch(&mut self, keys: &[String]) -> Result<(), ApiError> {
        let wanted: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| k.as_bytes())
            .filter(|k| !self.cache.contains_key(*k) && !self.writes.contains_key(*k))
            .map(<[u8]>::to_vec)
            .collect();
        Ok(self.read_compared(wanted).await?)
    }

    /// Reads keys not in the cache in one store round trip into the cache,
    /// each compared on commit.
    async fn read_compared(&mut self, keys: Vec<Vec<u8>>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ops = keys.iter().map(|k| TxnOp::get(k.clone()));
        let resp = self.store.txn(Txn::new().and_then(ops)).await?;
        for (k, r) in keys.into_iter().zip(resp.responses) {
            let OpResponse::Get(kv) = r else {
                return Err(StoreError::Backend("store answered a get with something else".into()));
            };
            let (rev, val) = match kv {
                Some(kv) => (kv.mod_revision, Some(kv.value)),
                None => (0, None),
            };
            self.compared.insert(k.clone(), rev);
            self.cache.insert(k, val);
        }
        Ok(())
    }

    /// Reads and decodes a key.
    pub async fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get_raw(key).await? {
            None => Ok(None),
            Some(bytes) => decode(key, &bytes).map(Some),
        }
    }

    /// Whether a key exists (compared on commit).
    pub async fn exists(&mut self, key: &str) -> Result<bool, ApiError> {
        Ok(self.get_raw(key).await?.is_some())
    }

    /// Reads every key under `prefix`, with this transaction's writes
    /// applied, sorted by key. Not compared unless written later.
    pub async fn list_raw(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
        if !self.ranges.contains_key(prefix) {
            let resp = self.store.range(prefix.as_bytes()).await?;
            let mut kvs = Vec::with_capacity(resp.kvs.len());
            for kv in resp.kvs {
                if !self.compared.contains_key(&kv.key) {
                    self.seen.insert(kv.key.clone(), kv.mod_revision);
                }
                self.cache.entry(kv.key.clone()).or_insert_with(|| Some(kv.value.clone()));
                kvs.push((kv.key, kv.value));
            }
            self.ranges.insert(prefix.to_string(), kvs);
        }
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> =
            self.ranges.get(prefix).map(|v| v.iter().cloned().collect()).unwrap_or_default();
        for (k, w) in self.writes.range(prefix.as_bytes().to_vec()..) {
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            match w {
                Some(v) => {
                    out.insert(k.clone(), v.clone());
                }
                None => {
                    out.remove(k);
                }
            }
        }
        Ok(out.into_iter().map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v)).collect())
    }

    /// The objects of `kind` whose value mentions `id` ([`refs::mentions`]),
    /// found through the index and read in one round trip (compared on
    /// commit), with this transaction's writes applied, sorted by key.
    /// Objects of the kind written by this transaction are checked too:
    /// their entries change only when it commits. Callers check that the
    /// index is complete ([`Tx::refs_ready`]).
    pub async fn referrers(
        &mut self,
        id: Uuid,
        kind: ObjectKind,
    ) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
        let mut keys = BTreeSet::new();
        for (entry, _) in self.list_raw(&refs::kind_prefix(id, kind)).await? {
            if let Some((_, referrer)) = refs::parse_entry(&entry) {
                keys.insert(referrer);
            }
        }
        let prefix = kind.prefix();
        for k in self.writes.range(prefix.as_bytes().to_vec()..) {
            if !k.0.starts_with(prefix.as_bytes()) {
                break;
            }
            keys.insert(String::from_utf8_lossy(k.0).into_owned());
        }
        let keys: Vec<String> = keys.into_iter().collect();
        self.prefetch(&keys).await?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let Some(v) = self.get_raw(&k).await? else { continue };
            if refs::mentions(&k, &v).contains(&id) {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Whether the reverse-reference index is complete in this version's
    /// format (its marker is read, and compared, once per transaction).
    pub async fn refs_ready(&mut self) -> Result<bool, ApiError> {
        Ok(refs::is_complete(self.get_raw(refs::MARKER).await?.as_deref()))
    }

    /// Reads and decodes every object under `prefix`.
    pub async fn list<T: DeserializeOwned>(&mut self, prefix: &str) -> Result<Vec<T>, ApiError> {
        let raw = self.list_raw(prefix).await?;
        raw.iter().map(|(k, v)| decode(k, v)).collect()
    }

    /// What this transaction knows of a key without a store read: its own
    /// write, else the value it read (`Some(None)`: read as missing);
    /// `None` if it never read the key.
    pub fn peek(&self, key: &str) -> Option<Option<&[u8]>> {
        let k = key.as_bytes();
        match self.writes.get(k) {
            Some(w) => Some(w.as_deref()),
            None => self.cache.get(k).map(Option::as_deref),
        }
    }

    /// Takes a key this transaction never read to be missing, as a `get`
    /// that found nothing would (compared as missing on commit): a writer
    /// that creates an object under a new id learns so without a read.
    pub fn assume_missing(&mut self, key: &str) {
        let k = key.as_bytes().to_vec();
        if self.peek(key).is_none() {
            self.compared.entry(k.clone()).or_insert(0);
            self.cache.insert(k, None);
        }
    }

    /// Buffers a put.
    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) {
        let bytes = serde_json::to_vec(value).expect("model objects always serialize");
        self.writes.insert(key.as_bytes().to_vec(), Some(bytes));
    }

    /// Buffers a put of raw bytes.
    pub fn put_raw(&mut self, key: &str, value: Vec<u8>) {
        self.writes.insert(key.as_bytes().to_vec(), Some(value));
    }

    /// Buffers a delete (of a key that may or may not exist).
    pub fn delete(&mut self, key: &str) {
        self.writes.insert(key.as_bytes().to_vec(), None);
    }

    /// Marks that something now refers to `id` (see module docs).
    pub fn touch(&mut self, id: Uuid) {
        if !id.is_nil() {
            self.touched.insert(id);
        }
    }

    /// Reads `id`'s guard so that a concurrent new referrer fails this
    /// transaction, and deletes the guard with the object.
    pub async fn guard_and_drop(&mut self, id: Uuid) -> Result<(), ApiError> {
        let key = guard_key(id);
        self.get_raw(&key).await?;
        self.delete(&key);
        Ok(())
    }

    /// Allocates the next tunnel key: from the process's block when the
    /// transaction has one, else from the counter, in this transaction.
    pub async fn alloc_tunnel_key(&mut self) -> Result<u32, ApiError> {
        if let Some(keys) = &self.keys {
            return keys.next(&*self.store).await;
        }
        let next = match self.get_raw(TUNNEL_KEY_COUNTER).await? {
            None => FIRST_TUNNEL_KEY,
            Some(b) => parse_counter(&b)?,
        };
        if next > LAST_TUNNEL_KEY {
            return Err(keys_exhausted());
        }
        self.put_raw(TUNNEL_KEY_COUNTER, (next + 1).to_string().into_bytes());
        Ok(next)
    }

    /// Whether this transaction writes anything.
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty() && self.touched.is_empty()
    }

    /// Commits the buffered writes if nothing read changed meanwhile.
    pub async fn commit(mut self) -> Result<i64, CommitError> {
        if self.is_read_only() {
            return Ok(0);
        }
        // The index entries are a diff from the previous value: read the
        // objects written blind (creates, mostly), compared like gets.
        let unread: Vec<Vec<u8>> = self
            .writes
            .keys()
            .filter(|k| refs::is_indexed(k) && !self.cache.contains_key(*k))
            .cloned()
            .collect();
        self.read_compared(unread).await?;
        let mut compares: Vec<Compare> = self
            .compared
            .iter()
            .map(|(k, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev))
            .collect();
        for k in self.writes.keys() {
            if !self.compared.contains_key(k) {
                if let Some(rev) = self.seen.get(k) {
                    compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, *rev));
                }
            }
        }
        let mut ops: Vec<TxnOp> = self
            .writes
            .iter()
            .map(|(k, w)| match w {
                Some(v) => TxnOp::put(k.clone(), v.clone()),
                None => TxnOp::delete(k.clone()),
            })
            .collect();
        for (k, w) in &self.writes {
            if refs::is_indexed(k) {
                let old = self.cache.get(k).and_then(Option::as_deref);
                let key = std::str::from_utf8(k).expect("indexed keys are UTF-8");
                ops.extend(refs::changes(key, old, w.as_deref()));
            }
        }
        let nonce = rand::random::<u64>().to_string();
        for id in &self.touched {
            let k = guard_key(*id);
            if !self.writes.contains_key(k.as_bytes()) {
                ops.push(TxnOp::put(k, nonce.clone()));
            }
        }
        let resp = self.store.txn(Txn::new().when(compares).and_then(ops)).await?;
        if resp.succeeded {
            Ok(resp.revision)
        } else {
            Err(CommitError::Conflict)
        }
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        tracing::error!(key, error = %e, "stored object does not decode");
        ApiError::internal(format!("stored object {key} is corrupt"))
    })
}

/// Runs `$body` (an expression that may use `?` and must give
/// `Result<T, ApiError>`) in a fresh [`Tx`] named `$tx`, commits, and
/// retries the whole body on a conflict. Evaluates to `Result<T, ApiError>`.
///
/// `txn!(cluster, tx as E => body)` does the same for a body whose errors
/// are `E` (`E: From<ApiError>`: the Neutron API's `NeutronError`); the
/// conflict and store errors are converted to `E`.
#[macro_export]
macro_rules! txn {
    ($cluster:expr, $tx:ident => $body:expr) => {
        $crate::txn!($cluster, $tx as $crate::error::ApiError => $body)
    };
    ($cluster:expr, $tx:ident as $err:ty => $body:expr) => {{
        let cluster: &$crate::Cluster = &$cluster;
        let mut attempt: u32 = 0;
        loop {
            let mut $tx = cluster.tx();
            let out = $crate::db::typed::<_, $err, _>(async { $body }).await;
            match out {
                Err(e) => break Err(e),
                Ok(v) => match $tx.commit().await {
                    Ok(_) => {
                        cluster.metrics.txn_commit();
                        break Ok(v);
                    }
                    Err($crate::db::CommitError::Conflict) => {
                        cluster.metrics.txn_conflict();
                        attempt += 1;
                        if attempt >= $crate::db::MAX_ATTEMPTS {
                            cluster.metrics.txn_abort();
                            break Err(<$err>::from($crate::error::ApiError::conflict(
                                "the objects changed concurrently too many times; retry",
                            )));
                        }
                        $crate::db::backoff(attempt).await;
                    }
                    Err($crate::db::CommitError::Store(e)) => {
                        break Err(<$err>::from($crate::error::ApiError::from(e)))
                    }
                },
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Arc<dyn Store> {
        midonet_store::connect("memory:").await.expect("memory store")
    }

    #[tokio::test]
    async fn reads_see_own_writes_and_lists_merge_them() {
        let s = store().await;
        s.put(b"/p/a", b"1", None).await.expect("put");
        s.put(b"/p/b", b"2", None).await.expect("put");
        let mut tx = Tx::new(s.clone());
        tx.delete("/p/a");
        tx.put_raw("/p/c", b"3".to_vec());
        let keys: Vec<String> =
            tx.list_raw("/p/").await.expect("list").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["/p/b", "/p/c"]);
        assert_eq!(tx.get_raw("/p/c").await.expect("get"), Some(b"3".to_vec()));
        tx.commit().await.expect("commit");
        assert!(s.get(b"/p/a").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn a_concurrent_change_to_a_read_key_is_a_conflict() {
        let s = store().await;
        s.put(b"/k", b"1", None).await.expect("put");
        let mut tx = Tx::new(s.clone());
        assert!(tx.exists("/k").await.expect("read"));
        tx.put_raw("/other", b"x".to_vec());
        s.put(b"/k", b"2", None).await.expect("concurrent write");
        assert!(matches!(tx.commit().await, Err(CommitError::Conflict)));
        assert!(s.get(b"/other").await.expect("get").is_none(), "nothing written");
    }

    #[tokio::test]
    async fn a_referrer_created_after_a_delete_scanned_fails_the_delete() {
        let s = store().await;
        let id = Uuid::new_v4();
        let mut del = Tx::new(s.clone());
        del.guard_and_drop(id).await.expect("guard");
        del.list_raw("/refs/").await.expect("scan finds nothing");
        // A concurrent writer adds a referrer and touches the guard.
        let mut add = Tx::new(s.clone());
        add.put_raw("/refs/1", b"x".to_vec());
        add.touch(id);
        add.commit().await.expect("referrer commits");
        del.delete("/obj");
        assert!(matches!(del.commit().await, Err(CommitError::Conflict)));
    }

    #[tokio::test]
    async fn prefetched_keys_are_compared_like_gets() {
        let s = store().await;
        s.put(b"/a", b"1", None).await.expect("put");
        let mut tx = Tx::new(s.clone());
        tx.prefetch(&["/a".to_string(), "/missing".to_string()]).await.expect("prefetch");
        assert_eq!(tx.get_raw("/a").await.expect("cached"), Some(b"1".to_vec()));
        assert!(!tx.exists("/missing").await.expect("cached"));
        tx.put_raw("/b", b"x".to_vec());
        s.put(b"/missing", b"now here", None).await.expect("concurrent create");
        assert!(matches!(tx.commit().await, Err(CommitError::Conflict)));
    }

    /// Index keys under `refs/` (targets and referrers), sorted.
    async fn index(s: &Arc<dyn Store>) -> Vec<String> {
        let resp = s.range(refs::PREFIX.as_bytes()).await.expect("range");
        resp.kvs.into_iter().map(|kv| String::from_utf8(kv.key).expect("utf-8")).collect()
    }

    fn port(id: Uuid, device: Uuid, host: Option<Uuid>) -> (String, Vec<u8>) {
        let host = host.map_or("null".to_string(), |h| format!("\"{h}\""));
        let value = format!(r#"{{"id":"{id}","deviceId":"{device}","hostId":{host}}}"#);
        (ObjectKind::Port.key(&[&id.to_string()]), value.into_bytes())
    }

    #[tokio::test]
    async fn commits_add_update_and_remove_index_entries() {
        let s = store().await;
        let (p, bridge, host) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let entry = |target: Uuid| refs::entry_key(target, &port(p, bridge, None).0);

        // A blind create: the previous value is read at commit.
        let (key, v) = port(p, bridge, None);
        let mut tx = Tx::new(s.clone());
        tx.put_raw(&key, v);
        tx.commit().await.expect("create");
        assert_eq!(index(&s).await, vec![entry(bridge)], "its own id is not indexed");

        // An update after a read: the cached value is the previous one.
        let mut tx = Tx::new(s.clone());
        tx.get_raw(&key).await.expect("read");
        tx.put_raw(&key, port(p, bridge, Some(host)).1);
        tx.commit().await.expect("bind");
        let mut both = vec![entry(bridge), entry(host)];
        both.sort();
        assert_eq!(index(&s).await, both);

        // A blind update that drops a mention.
        let mut tx = Tx::new(s.clone());
        tx.put_raw(&key, port(p, bridge, None).1);
        tx.commit().await.expect("unbind");
        assert_eq!(index(&s).await, vec![entry(bridge)]);

        // Seen through a list, then deleted.
        let mut tx = Tx::new(s.clone());
        tx.list_raw(&ObjectKind::Port.prefix()).await.expect("list");
        tx.delete(&key);
        tx.commit().await.expect("delete");
        assert!(index(&s).await.is_empty());

        // Keys that are not topology objects are not indexed.
        let mut tx = Tx::new(s.clone());
        tx.put_raw("/midonet/v1/meta/x", format!("{bridge}").into_bytes());
        tx.commit().await.expect("meta");
        assert!(index(&s).await.is_empty());
    }

    #[tokio::test]
    async fn referrers_come_from_the_index_with_the_transactions_own_writes() {
        let s = store().await;
        let bridge = Uuid::new_v4();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut tx = Tx::new(s.clone());
        for p in [a, b] {
            let (k, v) = port(p, bridge, None);
            tx.put_raw(&k, v);
        }
        tx.commit().await.expect("create");

        let mut tx = Tx::new(s.clone());
        tx.delete(&port(a, bridge, None).0);
        let (k, v) = port(c, bridge, None);
        tx.put_raw(&k, v);
        let found: Vec<String> = tx
            .referrers(bridge, ObjectKind::Port)
            .await
            .expect("referrers")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut want = vec![port(b, bridge, None).0, port(c, bridge, None).0];
        want.sort();
        assert_eq!(found, want, "a deleted here, c created here");
        assert!(tx.referrers(bridge, ObjectKind::Route).await.expect("routes").is_empty());
    }

    #[tokio::test]
    async fn a_referrer_created_after_a_delete_read_the_index_fails_the_delete() {
        let s = store().await;
        let bridge = Uuid::new_v4();
        let mut del = Tx::new(s.clone());
        del.guard_and_drop(bridge).await.expect("guard");
        assert!(del.referrers(bridge, ObjectKind::Port).await.expect("index").is_empty());
        // A concurrent writer adds a port on the bridge and touches its guard.
        let mut add = Tx::new(s.clone());
        let (k, v) = port(Uuid::new_v4(), bridge, None);
        add.put_raw(&k, v);
        add.touch(bridge);
        add.commit().await.expect("referrer commits");
        del.delete(&ObjectKind::Bridge.key(&[&bridge.to_string()]));
        assert!(matches!(del.commit().await, Err(CommitError::Conflict)));
    }

    #[tokio::test]
    async fn a_concurrent_write_of_a_blindly_written_object_is_a_conflict() {
        // The index diff is from the value read at commit, so that value
        // must still be there when the transaction applies.
        let s = store().await;
        let (p, bridge) = (Uuid::new_v4(), Uuid::new_v4());
        let (k, v) = port(p, bridge, None);
        let mut tx = Tx::new(s.clone());
        tx.put_raw(&k, v.clone());
        tx.read_compared(vec![k.clone().into_bytes()]).await.expect("read as commit would");
        s.put(k.as_bytes(), &v, None).await.expect("concurrent create, unindexed");
        assert!(matches!(tx.commit().await, Err(CommitError::Conflict)));
    }

    #[tokio::test]
    async fn an_index_built_at_start_matches_one_kept_by_commits() {
        let (kept, built) = (store().await, store().await);
        let (bridge, host, chain) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut objects = Vec::new();
        for i in 0..300 {
            objects.push(port(Uuid::new_v4(), bridge, (i % 3 == 0).then_some(host)));
        }
        let rule = Uuid::new_v4();
        objects.push((
            ObjectKind::Rule.key(&[&rule.to_string()]),
            format!(r#"{{"id":"{rule}","chainId":"{chain}","jumpChainId":"{chain}"}}"#)
                .into_bytes(),
        ));
        objects.push((
            ObjectKind::TunnelZoneHost.key(&[&chain.to_string(), &host.to_string()]),
            format!(r#"{{"tunnelZoneId":"{chain}","hostId":"{host}"}}"#).into_bytes(),
        ));
        for chunk in objects.chunks(50) {
            let mut tx = Tx::new(kept.clone());
            for (k, v) in chunk {
                tx.put_raw(k, v.clone());
            }
            tx.commit().await.expect("indexed writes");
            for (k, v) in chunk {
                built.put(k.as_bytes(), v, None).await.expect("unindexed write");
            }
        }
        // A stale entry, as a replica without the index would leave behind
        // when it deletes a port.
        let gone = refs::entry_key(bridge, &port(Uuid::new_v4(), bridge, None).0);
        built.put(gone.as_bytes(), b"", None).await.expect("stale entry");

        let mut tx = Tx::new(built.clone());
        assert!(!tx.refs_ready().await.expect("marker"), "no index yet");
        let n = refs::build(&built).await.expect("build");
        assert_eq!(n, refs::Built::Indexed { referrers: objects.len() + 1 });
        assert_eq!(index(&built).await, index(&kept).await);
        assert_eq!(index(&kept).await.len(), 300 + 100 + 1 + 2);
        let mut tx = Tx::new(built.clone());
        assert!(tx.refs_ready().await.expect("marker"));
        assert_eq!(refs::build(&built).await.expect("again"), refs::Built::AlreadyComplete);
    }

    #[tokio::test]
    async fn a_build_completes_entries_that_commits_only_diffed() {
        let s = store().await;
        let (p, bridge, host) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (k, v) = port(p, bridge, None);
        s.put(k.as_bytes(), &v, None).await.expect("unindexed write");
        // An indexed bind adds the host's entry only: the bridge was
        // mentioned before too, so its entry is not in the difference.
        let mut tx = Tx::new(s.clone());
        tx.put_raw(&k, port(p, bridge, Some(host)).1);
        tx.commit().await.expect("indexed write");
        assert_eq!(index(&s).await, vec![refs::entry_key(host, &k)]);
        assert_eq!(refs::build(&s).await.expect("build"), refs::Built::Indexed { referrers: 1 });
        let mut both = vec![refs::entry_key(bridge, &k), refs::entry_key(host, &k)];
        both.sort();
        assert_eq!(index(&s).await, both);
    }

    #[tokio::test]
    async fn tunnel_keys_count_up_from_16_and_conflict_when_raced() {
        let s = store().await;
        let mut a = Tx::new(s.clone());
        let mut b = Tx::new(s.clone());
        assert_eq!(a.alloc_tunnel_key().await.expect("a"), FIRST_TUNNEL_KEY);
        assert_eq!(b.alloc_tunnel_key().await.expect("b"), FIRST_TUNNEL_KEY);
        a.commit().await.expect("first wins");
        assert!(matches!(b.commit().await, Err(CommitError::Conflict)));
        let mut c = Tx::new(s.clone());
        assert_eq!(c.alloc_tunnel_key().await.expect("c"), FIRST_TUNNEL_KEY + 1);
    }

    #[tokio::test]
    async fn processes_take_key_blocks_and_never_hand_out_a_key_twice() {
        let s = store().await;
        let (p1, p2) = (Arc::new(TunnelKeys::default()), Arc::new(TunnelKeys::default()));
        let mut seen = BTreeSet::new();
        for i in 0..(3 * KEY_BLOCK) {
            // Two processes and a transaction on the counter, interleaved.
            let mut a = Tx::with_keys(s.clone(), p1.clone());
            let mut b = Tx::with_keys(s.clone(), p2.clone());
            let mut c = Tx::new(s.clone());
            let keys = [
                a.alloc_tunnel_key().await,
                b.alloc_tunnel_key().await,
                c.alloc_tunnel_key().await,
            ];
            c.commit().await.expect("the counter transaction is alone on the counter");
            for k in keys {
                let k = k.expect("a key");
                assert!(seen.insert(k), "key {k} handed out twice (round {i})");
            }
            // Keys from a block do not conflict: both transactions commit.
            a.put_raw("/x/a", vec![1]);
            b.put_raw("/x/b", vec![1]);
            a.commit().await.expect("a");
            b.commit().await.expect("b");
        }
        assert_eq!(seen.first(), Some(&FIRST_TUNNEL_KEY));
    }

    #[tokio::test]
    async fn the_last_block_is_short_and_then_keys_run_out() {
        let s = store().await;
        s.put(TUNNEL_KEY_COUNTER.as_bytes(), (LAST_TUNNEL_KEY - 1).to_string().as_bytes(), None)
            .await
            .expect("put");
        let keys = Arc::new(TunnelKeys::default());
        let mut tx = Tx::with_keys(s.clone(), keys);
        assert_eq!(tx.alloc_tunnel_key().await.expect("1"), LAST_TUNNEL_KEY - 1);
        assert_eq!(tx.alloc_tunnel_key().await.expect("2"), LAST_TUNNEL_KEY);
        let e = tx.alloc_tunnel_key().await.expect_err("none left");
        assert_eq!(e.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
