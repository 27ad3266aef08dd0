//! Tests specific to the embedded backend: persistence across restarts and
//! the watch hub's behaviour under slow watchers. The shared contract is in
//! `tests/contract.rs`.

use std::time::Duration;

use futures::StreamExt;

use super::*;
use crate::{Compare, CompareOp};

async fn next(w: &mut WatchStream) -> Result<WatchBatch> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch item within 10 s")
        .expect("stream not ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_revision_history_and_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let (rev_a, rev_txn, rev_del, lease) = {
        let s = EmbeddedStore::open(&path).expect("open");
        let rev_a = s.put(b"/p/a", b"1", None).await.expect("put");
        let rev_txn = s
            .txn(Txn::new().and_then([TxnOp::put("/p/b", "2"), TxnOp::put("/p/c", "3")]))
            .await
            .expect("txn")
            .revision;
        let rev_del = s.delete(b"/p/c").await.expect("delete").revision;
        let lease = s.grant_lease(2).await.expect("grant");
        s.put(b"/p/leased", b"x", Some(lease.id)).await.expect("put");
        (rev_a, rev_txn, rev_del, lease)
    };
    // Dropped: the file is closed, so it can be opened again.
    let s = EmbeddedStore::open(&path).expect("reopen");
    let revision = s.current_revision().await.expect("revision");
    assert_eq!(revision, rev_del + 1);
    let kvs = s.range(b"/p/").await.expect("range").kvs;
    let got: Vec<(&[u8], &[u8])> =
        kvs.iter().map(|kv| (kv.key.as_slice(), kv.value.as_slice())).collect();
    assert_eq!(got, [(&b"/p/a"[..], &b"1"[..]), (b"/p/b", b"2"), (b"/p/leased", b"x")]);
    let b = s.get(b"/p/b").await.expect("get").expect("present");
    assert_eq!((b.create_revision, b.mod_revision, b.version), (rev_txn, rev_txn, 1));

    // History replays from disk, one batch per revision.
    let mut w = s.watch(b"/p/", 1).await.expect("watch");
    let revs: Vec<(Revision, usize)> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let b = next(&mut w).await.expect("batch");
            v.push((b.revision, b.events.len()));
        }
        v
    };
    assert_eq!(revs, [(rev_a, 1), (rev_txn, 2), (rev_del, 1), (revision, 1)]);

    // The lease survived with a fresh TTL; it still expires and takes its key.
    assert_eq!(s.keep_alive(lease.id).await.expect("lease restored"), 2);
    let b = next(&mut w).await.expect("lease expiry");
    assert!(matches!(&b.events[..], [WatchEvent::Delete { key, .. }] if key == b"/p/leased"));
    // Lease ids are random (they name agent sessions): not the previous one,
    // and not a sequence one could guess from it.
    let (l1, l2) = (s.grant_lease(5).await.expect("grant"), s.grant_lease(5).await.expect("grant"));
    assert!(l1.id != lease.id && l2.id != l1.id);
    assert!((l2.id.0 - l1.id.0).abs() > 1_000, "{l1:?} {l2:?}: not sequential");
    drop(w);
    drop(s);
    let s = EmbeddedStore::open(&path).expect("reopen twice");
    assert_eq!(s.current_revision().await.expect("revision"), revision + 1);
    assert!(s.get(b"/p/leased").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let at = {
        let s = EmbeddedStore::open(&path).expect("open");
        s.put(b"/k", b"1", None).await.expect("put");
        let at = s.put(b"/k", b"2", None).await.expect("put");
        s.compact(at).await.expect("compact");
        at
    };
    let s = EmbeddedStore::open(&path).expect("reopen");
    let mut w = s.watch(b"/", 1).await.expect("watch");
    assert!(
        matches!(next(&mut w).await, Err(StoreError::Compacted { compact_revision }) if compact_revision == at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_never_blocks_writers_and_catches_up_from_history() {
    // A hub of 4 slots, and a watcher that reads nothing while 300 revisions
    // are written: writers must not wait for it...
    let options = EmbeddedOptions { watch_buffer: 4, ..Default::default() };
    let s = EmbeddedStore::in_memory_with(options).expect("store");
    let mut w = s.watch(b"/s/", 0).await.expect("watch");
    let writes = async {
        for i in 0..300u32 {
            s.put(format!("/s/{}", i % 7).as_bytes(), &i.to_be_bytes(), None).await.expect("put");
        }
    };
    tokio::time::timeout(Duration::from_secs(30), writes).await.expect("writers never block");
    // ...and it still gets every revision, in order, from the history table.
    // A fresh store is at revision 1, so the first put is revision 2.
    for (expect, i) in (2..).zip(0..300u32) {
        let b = next(&mut w).await.expect("batch");
        assert_eq!(b.revision, expect);
        match &b.events[..] {
            [WatchEvent::Put { kv, .. }] => assert_eq!(kv.value, i.to_be_bytes()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_behind_compaction_gets_compacted() {
    let s =
        EmbeddedStore::in_memory_with(EmbeddedOptions { watch_buffer: 2, ..Default::default() })
            .expect("store");
    let mut w = s.watch(b"/s/", 0).await.expect("watch");
    for i in 0..20u32 {
        s.put(b"/s/k", &i.to_be_bytes(), None).await.expect("put");
    }
    let at = s.current_revision().await.expect("revision");
    s.compact(at).await.expect("compact");
    // The hub lost most of it, and the history is gone: explicit error.
    match next(&mut w).await {
        Err(StoreError::Compacted { compact_revision }) => assert_eq!(compact_revision, at),
        other => panic!("expected Compacted, got {other:?}"),
    }
}

#[tokio::test]
async fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    let handle = std::thread::spawn(|| EmbeddedStore::in_memory().map(|_| ()));
    let res = handle.join().expect("thread");
    assert!(matches!(res, Err(StoreError::InvalidArgument(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_use_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let _s = EmbeddedStore::open(&path).expect("open");
    assert!(matches!(EmbeddedStore::open(&path), Err(StoreError::Backend(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_ends_watches_after_committed_history() {
    let s =
        EmbeddedStore::in_memory_with(EmbeddedOptions { watch_buffer: 2, ..Default::default() })
            .expect("store");
    let mut w = s.watch(b"/", 0).await.expect("watch");
    for i in 0..5u32 {
        s.put(b"/k", &i.to_be_bytes(), None).await.expect("put");
    }
    drop(s);
    for _ in 0..5 {
        next(&mut w).await.expect("committed batch still delivered");
    }
    let end = tokio::time::timeout(Duration::from_secs(10), w.next()).await;
    assert!(matches!(end, Ok(None)), "stream ends, got {end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_retention_compacts_automatically() {
    let options = EmbeddedOptions { history_retention: Some(100), ..Default::default() };
    let s = EmbeddedStore::in_memory_with(options).expect("store");
    for i in 0..(2 * AUTO_COMPACT_EVERY) {
        s.put(b"/h", &i.to_be_bytes(), None).await.expect("put");
    }
    // Revision 2 * AUTO_COMPACT_EVERY compacted to 100 revisions before it.
    let point = 2 * AUTO_COMPACT_EVERY - 100;
    let mut old = s.watch(b"/", point - 1).await.expect("watch");
    assert!(
        matches!(next(&mut old).await, Err(StoreError::Compacted { compact_revision }) if compact_revision == point)
    );
    let mut kept = s.watch(b"/", point).await.expect("watch");
    assert_eq!(next(&mut kept).await.expect("batch").revision, point);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_parent_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/store.redb");
    let s = EmbeddedStore::open(&path).expect("open");
    s.put(b"/k", b"v", None).await.expect("put");
    assert!(path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_gives_each_request_its_revision_and_its_own_errors() {
    let s = EmbeddedStore::in_memory().expect("store");
    let base = s.current_revision().await.expect("revision");
    let mut w = s.watch(b"/g/", 0).await.expect("watch");
    let requests = vec![
        Txn::new().and_then([TxnOp::put("/g/a", "1")]),
        Txn::new()
            .and_then([TxnOp::put("/g/x", "1"), TxnOp::put_with_lease("/g/y", "1", LeaseId(999))]),
        // Sees the first request's write, made in the same redb transaction.
        Txn::new()
            .when([Compare::mod_revision("/g/a", CompareOp::Equal, base + 1)])
            .and_then([TxnOp::put("/g/b", "2")]),
        Txn::new().and_then([TxnOp::get("/g/b")]),
    ];
    let slots: Vec<Slot> = requests.iter().map(|_| Arc::new(Mutex::new(None))).collect();
    let batch = requests
        .into_iter()
        .zip(&slots)
        .map(|(txn, slot)| Pending { txn, slot: Arc::clone(slot) })
        .collect();
    {
        let _writer = s.inner.writer.lock();
        s.inner.commit_group(batch);
    }
    let results: Vec<Result<TxnResponse>> =
        slots.iter().map(|slot| slot.lock().take().expect("filled")).collect();
    assert_eq!(results[0].as_ref().expect("first").revision, base + 1);
    assert!(matches!(results[1], Err(StoreError::LeaseNotFound(LeaseId(999)))));
    let third = results[2].as_ref().expect("third");
    assert!(third.succeeded);
    assert_eq!(third.revision, base + 2);
    match &results[3].as_ref().expect("fourth").responses[..] {
        [OpResponse::Get(Some(kv))] => assert_eq!(kv.mod_revision, base + 2),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(s.current_revision().await.expect("revision"), base + 2);
    assert!(s.get(b"/g/x").await.expect("get").is_none(), "failed request wrote nothing");
    assert_eq!(next(&mut w).await.expect("batch").revision, base + 1);
    assert_eq!(next(&mut w).await.expect("batch").revision, base + 2);
}
