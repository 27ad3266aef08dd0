//! midonet-store: the topology store (ARCHITECTURE.md §4).
//!
//! One trait, [`Store`], with two backends that pass one contract test suite
//! (`tests/contract.rs`):
//!
//! * [`EmbeddedStore`]: a single redb file (or memory) with an in-process
//!   watch hub. The default for a single-node cluster and for sandboxes.
//! * [`EtcdStore`]: a real etcd v3 cluster, for several cluster replicas.
//!
//! [`connect`] picks one from a URL: `embedded:/path/file.redb`, `memory:`,
//! `etcd://host:port[,host:port...]`.
//!
//! # Semantics (etcd v3's, because that is what the distributed backend gives)
//!
//! * Keys and values are byte strings. Every write that changes something
//!   bumps one global [`Revision`] by one; a transaction's writes all share
//!   its revision; a fresh store is at revision 1.
//! * Each key has `create_revision`, `mod_revision`, `version` (writes since
//!   creation) and an optional lease ([`KeyValue`]). A missing key compares
//!   as version 0 and revisions 0; a value compare on a missing key is false.
//! * [`Store::txn`]: compares on version / create / mod revision / value,
//!   then the success or failure branch of put (optionally with a lease),
//!   delete, delete-prefix, get and range ops, atomically. A branch must not
//!   write one key twice. Reads in a branch see that branch's earlier writes.
//!   A transaction that changes nothing does not bump the revision.
//! * [`Store::range`] returns keys sorted bytewise plus the revision read at;
//!   [`Store::watch`] from that revision + 1 continues without gap or
//!   duplicate. Watches deliver one [`WatchBatch`] per revision, in order.
//!   A watch from a compacted revision yields [`StoreError::Compacted`] as its
//!   first stream item (see [`Store::watch`]); the watcher re-lists.
//! * Leases: keys put with a lease are deleted (with Delete watch events, in
//!   one revision) when the lease expires or is revoked. [`LeaseKeeper`]
//!   refreshes a lease in the background.
//!
//! # Where the backends differ, and why
//!
//! | | embedded | etcd |
//! |---|---|---|
//! | minimum lease TTL | 1 s | raised by etcd to its minimum (about 2 s) |
//! | lease expiry precision | [`embedded::EXPIRY_TICK`] | etcd's lessor loop (0.5 s) |
//! | leases after restart | restored with a fresh full TTL | keep their remaining TTL (renewed on leader change) |
//! | lease ids | sequential from 1 | chosen by etcd |
//! | ops per transaction | unlimited | `--max-txn-ops` (etcd default 128; the test server sets 10000) |
//! | request size | unlimited | `--max-request-bytes` (1.5 MiB) |
//! | `prev` in watch events | always (stored in the history) | when etcd still has that version |
//! | slow watcher | catches up from the history table | etcd buffers and catches up from its history |
//!
//! Tests of other crates can run against a real etcd with the `test-util`
//! feature: `testutil::EtcdServer::start()` runs one on free ports (see
//! `testutil` module docs); `scripts/etcd-test-server.sh` runs the same
//! server by hand.
//!
//! By default nothing compacts history automatically: the store's owner
//! calls [`Store::compact`], or sets
//! [`EmbeddedOptions::history_retention`] (etcd: its own
//! `--auto-compaction-*` flags).

pub mod embedded;
mod error;
pub mod etcd;
mod lease;
mod store;
#[cfg(feature = "test-util")]
pub mod testutil;
mod types;

use std::sync::Arc;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{BoxError, Result, StoreError};
pub use etcd::EtcdStore;
pub use lease::LeaseKeeper;
pub use store::Store;
pub use types::{
    prefix_end, Compare, CompareOp, CompareTarget, DeleteResponse, KeyValue, Lease, LeaseId,
    OpResponse, RangeResponse, Revision, Txn, TxnOp, TxnResponse, WatchBatch, WatchEvent,
    WatchStream,
};

/// Opens a store from a URL:
///
/// * `embedded:/path/to/file.redb` (also `embedded:relative/path`): the
///   embedded backend on that file, created if missing;
/// * `memory:`: the embedded backend in memory (lost on drop);
/// * `etcd://host:port[,host:port...]`: an etcd cluster over plain HTTP/2.
///
/// Must be called inside a tokio runtime.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    let invalid =
        |reason: &str| StoreError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    if let Some(path) = url.strip_prefix("embedded:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(invalid("missing file path after embedded:"));
        }
        return Ok(Arc::new(EmbeddedStore::open(path)?));
    }
    if url == "memory:" || url == "memory://" {
        return Ok(Arc::new(EmbeddedStore::in_memory()?));
    }
    if let Some(hosts) = url.strip_prefix("etcd://") {
        let endpoints: Vec<String> = hosts
            .trim_end_matches('/')
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(invalid("no host:port after etcd://"));
        }
        return Ok(Arc::new(EtcdStore::connect(&endpoints).await?));
    }
    Err(invalid("expected embedded:PATH, memory: or etcd://HOST:PORT[,HOST:PORT]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_rejects_unknown_and_empty_urls() {
        for url in ["", "redis://x", "embedded:", "etcd://", "etcd://,"] {
            match connect(url).await {
                Err(StoreError::InvalidUrl { url: u, .. }) => assert_eq!(u, url),
                other => panic!("{url}: expected InvalidUrl, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[tokio::test]
    async fn connect_memory_and_embedded_file() {
        let mem = connect("memory:").await.expect("memory store");
        mem.put(b"/k", b"v", None).await.expect("put");
        assert_eq!(mem.get(b"/k").await.expect("get").map(|kv| kv.value), Some(b"v".to_vec()));

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let file = connect(&format!("embedded:{}", path.display())).await.expect("file store");
        file.put(b"/k", b"v", None).await.expect("put");
        drop(file);
        assert!(path.exists());
    }
}
