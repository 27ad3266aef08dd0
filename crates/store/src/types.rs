//! The vocabulary of the store contract: key-values, transactions, watch
//! events and leases.
//!
//! Everything here mirrors etcd v3 (`mvccpb.KeyValue`, `TxnRequest`,
//! `Compare`, `WatchResponse`) closely enough that the etcd backend is a
//! plain translation, and the embedded backend reproduces the same numbers.
//! Revisions, versions and lease ids are `i64` because that is etcd's wire
//! type; they are never negative.

use std::pin::Pin;

use futures::Stream;

use crate::StoreError;

/// A revision of the whole store. Every write that changes at least one key
/// bumps it by exactly one. A fresh store is at revision 1 (as etcd), so `0`
/// is never a real revision and can mean "none" or "now".
pub type Revision = i64;

/// Identifier of a lease. Keys put with a lease vanish when it expires or is
/// revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// Time to live granted, in seconds. The backend may raise the requested
    /// value (etcd has a minimum of a few seconds).
    pub ttl_secs: i64,
}

/// One key with its value and metadata, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation: 1 after the create.
    pub version: i64,
    /// Lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// Result of [`crate::Store::range`]: the keys under a prefix, sorted by key,
/// and the store revision they were read at. Watching from `revision + 1`
/// continues exactly where the listing stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    pub revision: Revision,
}

/// Result of a single-key or prefix delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteResponse {
    /// How many keys were deleted.
    pub deleted: i64,
    /// Store revision after the delete (unchanged when nothing was deleted).
    pub revision: Revision,
}

/// Comparison operator of a [`Compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    /// The key's attribute is greater than the operand.
    Greater,
    /// The key's attribute is less than the operand.
    Less,
}

impl CompareOp {
    fn holds<T: Ord + ?Sized>(self, actual: &T, operand: &T) -> bool {
        match self {
            CompareOp::Equal => actual == operand,
            CompareOp::NotEqual => actual != operand,
            CompareOp::Greater => actual > operand,
            CompareOp::Less => actual < operand,
        }
    }
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(Revision),
    ModRevision(Revision),
    /// Compared bytewise. As in etcd, a value comparison on a missing key is
    /// always false, whatever the operator.
    Value(Vec<u8>),
}

/// One guard of a transaction. A missing key has version 0, create and mod
/// revision 0 (as etcd), which is how existence is tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Compare { key: key.into(), op, target: CompareTarget::Version(version) }
    }

    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, rev: Revision) -> Self {
        Compare { key: key.into(), op, target: CompareTarget::CreateRevision(rev) }
    }

    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, rev: Revision) -> Self {
        Compare { key: key.into(), op, target: CompareTarget::ModRevision(rev) }
    }

    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Compare { key: key.into(), op, target: CompareTarget::Value(value.into()) }
    }

    /// The key exists (`create_revision > 0`).
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Self::create_revision(key, CompareOp::Greater, 0)
    }

    /// The key does not exist (`version == 0`).
    pub fn missing(key: impl Into<Vec<u8>>) -> Self {
        Self::version(key, CompareOp::Equal, 0)
    }

    /// Evaluates the compare against the key's current state (`None` =
    /// missing). Shared by the embedded backend and its tests; etcd evaluates
    /// compares itself with the same rules.
    pub(crate) fn evaluate(&self, current: Option<&KeyValue>) -> bool {
        match (&self.target, current) {
            (CompareTarget::Value(_), None) => false,
            (CompareTarget::Value(v), Some(kv)) => self.op.holds(kv.value.as_slice(), v.as_slice()),
            (CompareTarget::Version(v), kv) => self.op.holds(&kv.map_or(0, |kv| kv.version), v),
            (CompareTarget::CreateRevision(r), kv) => {
                self.op.holds(&kv.map_or(0, |kv| kv.create_revision), r)
            }
            (CompareTarget::ModRevision(r), kv) => {
                self.op.holds(&kv.map_or(0, |kv| kv.mod_revision), r)
            }
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Deletes every key starting with `prefix` (all keys if empty).
    DeletePrefix {
        prefix: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
    /// Reads every key starting with `prefix`, sorted by key.
    Range {
        prefix: Vec<u8>,
    },
}

impl TxnOp {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put { key: key.into(), value: value.into(), lease: None }
    }

    pub fn put_with_lease(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        TxnOp::Put { key: key.into(), value: value.into(), lease: Some(lease) }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete { key: key.into() }
    }

    pub fn delete_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        TxnOp::DeletePrefix { prefix: prefix.into() }
    }

    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Get { key: key.into() }
    }

    pub fn range(prefix: impl Into<Vec<u8>>) -> Self {
        TxnOp::Range { prefix: prefix.into() }
    }
}

/// A transaction: if every compare holds, run `success`, else `failure`.
/// The whole transaction is atomic and, if it changes anything, gets exactly
/// one new revision shared by all its writes.
///
/// As in etcd, one transaction must not write the same key twice (two puts,
/// or a put inside a range deleted by the same branch); such a transaction is
/// rejected with [`StoreError::InvalidArgument`]. Reads inside a branch see
/// the writes of earlier operations of the same branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }
}

/// Result of one [`TxnOp`], in the order of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    Put,
    /// Number of keys deleted (0 or 1 for `Delete`).
    Delete {
        deleted: i64,
    },
    Get(Option<KeyValue>),
    Range(Vec<KeyValue>),
}

/// Result of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether all compares held (so the `success` branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction: the new revision if it
    /// changed something, else the revision it read at.
    pub revision: Revision,
    /// One entry per op of the branch that ran.
    pub responses: Vec<OpResponse>,
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or updated; `kv` is its new state.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// The key was deleted (explicitly, by prefix, or by its lease ending) at
    /// `revision`.
    Delete { key: Vec<u8>, revision: Revision, prev: Option<KeyValue> },
}

impl WatchEvent {
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The key's state before the event, when the backend had it: `None`
    /// when the key did not exist, or (etcd) when that older version was
    /// already compacted away.
    pub fn prev(&self) -> Option<&KeyValue> {
        match self {
            WatchEvent::Put { prev, .. } | WatchEvent::Delete { prev, .. } => prev.as_ref(),
        }
    }
}

/// All the events of one revision (one transaction) that match a watch, in
/// the order the transaction applied them. A watcher receives batches in
/// strictly increasing revision order, with no gaps among matching
/// revisions, and never an empty batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    pub revision: Revision,
    pub events: Vec<WatchEvent>,
}

/// The stream returned by [`crate::Store::watch`]. It ends after yielding an
/// error; it may also end without one when the store is shut down.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchBatch, StoreError>> + Send>>;

/// The first key after every key starting with `prefix`: the exclusive end of
/// a prefix range. `None` means "no upper bound" (empty prefix, or a prefix
/// of only `0xff` bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// Checks a transaction the way etcd does before running it, so both backends
/// reject the same requests: keys of compares, puts, gets and deletes must
/// not be empty, and within one branch no key may be written twice (two puts,
/// or a put inside a range deleted by the same branch). Both branches are
/// checked, whichever runs.
pub(crate) fn validate_txn(txn: &Txn) -> Result<(), StoreError> {
    let empty = || StoreError::InvalidArgument("key is empty".into());
    if txn.compares.iter().any(|c| c.key.is_empty()) {
        return Err(empty());
    }
    for branch in [&txn.success, &txn.failure] {
        let mut puts: Vec<&[u8]> = Vec::new();
        let mut deleted: Vec<(&[u8], Option<Vec<u8>>)> = Vec::new();
        for op in branch {
            match op {
                TxnOp::Put { key, .. } => {
                    if key.is_empty() {
                        return Err(empty());
                    }
                    puts.push(key);
                }
                TxnOp::Delete { key } => {
                    if key.is_empty() {
                        return Err(empty());
                    }
                    let mut end = key.clone();
                    end.push(0);
                    deleted.push((key, Some(end)));
                }
                TxnOp::DeletePrefix { prefix } => deleted.push((prefix, prefix_end(prefix))),
                TxnOp::Get { key } => {
                    if key.is_empty() {
                        return Err(empty());
                    }
                }
                TxnOp::Range { .. } => {}
            }
        }
        puts.sort_unstable();
        if puts.windows(2).any(|w| w[0] == w[1]) {
            return Err(StoreError::InvalidArgument("duplicate key given in txn request".into()));
        }
        let in_deleted = |k: &[u8]| {
            deleted.iter().any(|(start, end)| k >= *start && end.as_deref().is_none_or(|e| k < e))
        };
        if puts.iter().any(|k| in_deleted(k)) {
            return Err(StoreError::InvalidArgument("duplicate key given in txn request".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_non_ff_byte() {
        assert_eq!(prefix_end(b"/a/b"), Some(b"/a/c".to_vec()));
        assert_eq!(prefix_end(&[0x01, 0xff, 0xff]), Some(vec![0x02]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    fn kv(value: &[u8], create: i64, modr: i64, version: i64) -> KeyValue {
        KeyValue {
            key: b"k".to_vec(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modr,
            version,
            lease: None,
        }
    }

    #[test]
    fn compare_on_missing_key_uses_zero_and_value_always_fails() {
        assert!(Compare::missing("k").evaluate(None));
        assert!(!Compare::exists("k").evaluate(None));
        assert!(Compare::mod_revision("k", CompareOp::Equal, 0).evaluate(None));
        assert!(!Compare::value("k", CompareOp::Equal, "").evaluate(None));
        assert!(!Compare::value("k", CompareOp::NotEqual, "x").evaluate(None));
    }

    #[test]
    fn compare_on_present_key() {
        let k = kv(b"b", 3, 7, 2);
        assert!(Compare::exists("k").evaluate(Some(&k)));
        assert!(!Compare::missing("k").evaluate(Some(&k)));
        assert!(Compare::value("k", CompareOp::Greater, "a").evaluate(Some(&k)));
        assert!(Compare::value("k", CompareOp::Less, "c").evaluate(Some(&k)));
        assert!(Compare::mod_revision("k", CompareOp::Equal, 7).evaluate(Some(&k)));
        assert!(Compare::create_revision("k", CompareOp::Less, 4).evaluate(Some(&k)));
        assert!(Compare::version("k", CompareOp::NotEqual, 1).evaluate(Some(&k)));
    }

    #[test]
    fn validate_rejects_what_etcd_rejects() {
        let ok = Txn::new()
            .when([Compare::exists("/a")])
            .and_then([TxnOp::put("/a", "1"), TxnOp::delete_prefix("/b/"), TxnOp::get("/a")])
            .or_else([TxnOp::put("/a", "2")]);
        assert!(validate_txn(&ok).is_ok());
        let bad = [
            Txn::new().and_then([TxnOp::put("/a", "1"), TxnOp::put("/a", "2")]),
            Txn::new().and_then([TxnOp::delete_prefix("/a/"), TxnOp::put("/a/x", "2")]),
            Txn::new().and_then([TxnOp::delete("/a"), TxnOp::put("/a", "2")]),
            Txn::new().or_else([TxnOp::delete_prefix(""), TxnOp::put("/z", "2")]),
            Txn::new().and_then([TxnOp::put("", "1")]),
            Txn::new().when([Compare::exists("")]),
        ];
        for txn in bad {
            assert!(matches!(validate_txn(&txn), Err(StoreError::InvalidArgument(_))), "{txn:?}");
        }
        // A put next to (not inside) a deleted key is fine.
        let near = Txn::new().and_then([TxnOp::delete("/a"), TxnOp::put("/a0", "2")]);
        assert!(validate_txn(&near).is_ok());
    }
}
