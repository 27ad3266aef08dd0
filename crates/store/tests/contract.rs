//! The store contract (ARCHITECTURE.md §4), one suite run against every
//! backend: embedded in memory, embedded on a file, and a real etcd started
//! per test (see `midonet_store::testutil`).
//!
//! Each contract test is a plain `async fn(Arc<dyn Store>)`; the `contract!`
//! macro instantiates it once per backend, as `<backend>::<test>`, e.g.
//! `cargo test -p midonet-store --test contract etcd::`.
//!
//! Tests never assume absolute revisions (etcd and embedded both start at 1,
//! but a test only relies on differences), and each uses its own store.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use midonet_store::testutil::{etcd_or_skip, EtcdServer};
use midonet_store::{
    Compare, CompareOp, EmbeddedStore, KeyValue, OpResponse, Store, StoreError, Txn, TxnOp,
    WatchBatch, WatchEvent, WatchStream,
};

/// A store plus whatever must outlive it (temp dir, etcd process).
struct Backend {
    store: Arc<dyn Store>,
    _keep: Keep,
}

#[allow(dead_code)] // fields are held only for their Drop
enum Keep {
    Nothing,
    Dir(tempfile::TempDir),
    Etcd(EtcdServer),
}

async fn memory() -> Option<Backend> {
    let store = EmbeddedStore::in_memory().expect("in-memory store");
    Some(Backend { store: Arc::new(store), _keep: Keep::Nothing })
}

async fn file() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path().join("store.redb")).expect("file store");
    Some(Backend { store: Arc::new(store), _keep: Keep::Dir(dir) })
}

async fn etcd() -> Option<Backend> {
    let server = etcd_or_skip()?;
    let store = midonet_store::connect(&server.url()).await.expect("connect to test etcd");
    Some(Backend { store, _keep: Keep::Etcd(server) })
}

macro_rules! backend_tests {
    ($backend:ident, [$($name:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = super::$backend().await else { return };
                    super::$name(Arc::clone(&backend.store)).await;
                    drop(backend);
                }
            )*
            use std::sync::Arc;
        }
    };
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        backend_tests!(memory, [$($name),*]);
        backend_tests!(file, [$($name),*]);
        backend_tests!(etcd, [$($name),*]);
    };
}

contract!(
    put_get_range_sorted_within_prefix_bounds,
    revisions_create_mod_version,
    txn_compares_choose_branch,
    txn_is_atomic_and_sees_own_writes,
    invalid_requests_are_rejected_before_writing,
    watch_from_now_and_from_old_revision,
    watch_from_future_revision_waits,
    delete_prefix_is_one_revision_with_delete_events,
    watch_after_compaction_is_compacted,
    lease_expiry_deletes_keys_with_events,
    keep_alive_prevents_expiry,
    revoke_deletes_keys_and_ends_lease,
    put_without_lease_detaches_key,
    concurrent_cas_increments_lose_nothing,
    concurrent_writers_watch_sees_every_revision_in_order,
);

// ---------------------------------------------------------------- helpers

const WAIT: Duration = Duration::from_secs(15);

async fn next_batch(w: &mut WatchStream) -> WatchBatch {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(batch))) => batch,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch batch within {WAIT:?}"),
    }
}

async fn assert_quiet(w: &mut WatchStream, for_: Duration) {
    if let Ok(item) = tokio::time::timeout(for_, w.next()).await {
        panic!("expected no watch item, got {item:?}");
    }
}

/// `("put" | "del", key, value-or-empty)`: one event, for compact asserts.
type Ev = (&'static str, String, String);

/// The [`Ev`] of each event of a batch.
fn summary(batch: &WatchBatch) -> Vec<Ev> {
    batch
        .events
        .iter()
        .map(|e| match e {
            WatchEvent::Put { kv, .. } => ("put", text(&kv.key), text(&kv.value)),
            WatchEvent::Delete { key, .. } => ("del", text(key), String::new()),
        })
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| text(&kv.key)).collect()
}

async fn value(s: &Arc<dyn Store>, key: &str) -> Option<String> {
    s.get(key.as_bytes()).await.expect("get").map(|kv| text(&kv.value))
}

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::put(key, value)
}

// ---------------------------------------------------------------- tests

async fn put_get_range_sorted_within_prefix_bounds(s: Arc<dyn Store>) {
    // Inserted out of order, with neighbours just outside the prefix.
    for k in ["/t/b", "/t0", "/t/a/x", "/s", "/t/", "/t/a", "/t/\u{7f}", "/t"] {
        s.put(k.as_bytes(), format!("v{k}").as_bytes(), None).await.expect("put");
    }
    s.put(b"/t/\xff\xff", b"ff", None).await.expect("put");
    assert_eq!(value(&s, "/t/a").await.as_deref(), Some("v/t/a"));
    assert_eq!(value(&s, "/t/c").await, None);

    let r = s.range(b"/t/").await.expect("range");
    assert_eq!(
        keys(&r.kvs),
        ["/t/", "/t/a", "/t/a/x", "/t/b", "/t/\u{7f}", "/t/\u{fffd}\u{fffd}"],
        "sorted bytewise, [\"/t/\", \"/t0\") only"
    );
    assert_eq!(r.revision, s.current_revision().await.expect("revision"));
    assert_eq!(keys(&s.range(b"/t/a").await.expect("range").kvs), ["/t/a", "/t/a/x"]);
    assert!(s.range(b"/u/").await.expect("range").kvs.is_empty());
    assert_eq!(s.range(b"").await.expect("range all").kvs.len(), 9);
    // A prefix of 0xff bytes has no upper bound.
    assert_eq!(keys(&s.range(b"/t/\xff").await.expect("range").kvs).len(), 1);
}

async fn revisions_create_mod_version(s: Arc<dyn Store>) {
    let r0 = s.current_revision().await.expect("revision");
    let r1 = s.put(b"/r/a", b"1", None).await.expect("put");
    assert_eq!(r1, r0 + 1);
    let a = s.get(b"/r/a").await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.mod_revision, a.version, a.lease), (r1, r1, 1, None));

    let r2 = s.put(b"/r/a", b"2", None).await.expect("put");
    assert_eq!(r2, r1 + 1);
    let a = s.get(b"/r/a").await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r2, 2));

    let r3 = s.put(b"/r/b", b"x", None).await.expect("put");
    assert_eq!(r3, r2 + 1);

    let d = s.delete(b"/r/a").await.expect("delete");
    assert_eq!((d.deleted, d.revision), (1, r3 + 1));
    assert_eq!(s.get(b"/r/a").await.expect("get"), None);

    // Deleting nothing changes nothing, not even the revision.
    let d = s.delete(b"/r/a").await.expect("delete");
    assert_eq!((d.deleted, d.revision), (0, r3 + 1));
    assert_eq!(s.current_revision().await.expect("revision"), r3 + 1);

    // Re-creation starts a new generation.
    let r5 = s.put(b"/r/a", b"3", None).await.expect("put");
    assert_eq!(r5, r3 + 2);
    let a = s.get(b"/r/a").await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r5, r5, 1));
}

async fn txn_compares_choose_branch(s: Arc<dyn Store>) {
    let rev = s.put(b"/c/k", b"m", None).await.expect("put");
    s.put(b"/c/k", b"m", None).await.expect("put"); // version 2, mod rev+1
    let (create, modr) = (rev, rev + 1);
    use CompareOp::*;
    let cases: Vec<(Compare, bool)> = vec![
        (Compare::mod_revision("/c/k", Equal, modr), true),
        (Compare::mod_revision("/c/k", Equal, modr - 1), false),
        (Compare::mod_revision("/c/k", Less, modr + 1), true),
        (Compare::mod_revision("/c/k", Greater, modr), false),
        (Compare::create_revision("/c/k", Equal, create), true),
        (Compare::create_revision("/c/k", NotEqual, create), false),
        (Compare::version("/c/k", Equal, 2), true),
        (Compare::version("/c/k", Greater, 2), false),
        (Compare::value("/c/k", Equal, "m"), true),
        (Compare::value("/c/k", Greater, "a"), true),
        (Compare::value("/c/k", Less, "a"), false),
        (Compare::value("/c/k", NotEqual, "m"), false),
        (Compare::exists("/c/k"), true),
        (Compare::missing("/c/k"), false),
        (Compare::missing("/c/none"), true),
        (Compare::exists("/c/none"), false),
        (Compare::mod_revision("/c/none", Equal, 0), true),
        // etcd: a value compare on a missing key is always false.
        (Compare::value("/c/none", NotEqual, "x"), false),
        (Compare::value("/c/none", Equal, ""), false),
    ];
    for (i, (cmp, expect)) in cases.into_iter().enumerate() {
        let flag = format!("/c/flag{i}");
        let txn = Txn::new()
            .when([cmp.clone()])
            .and_then([put(&flag, "success"), TxnOp::get("/c/k")])
            .or_else([put(&flag, "failure"), TxnOp::range("/c/k")]);
        let resp = s.txn(txn).await.expect("txn");
        assert_eq!(resp.succeeded, expect, "{cmp:?}");
        assert_eq!(
            value(&s, &flag).await.as_deref(),
            Some(if expect { "success" } else { "failure" })
        );
        assert_eq!(resp.revision, s.current_revision().await.expect("revision"));
        match (&resp.responses[..], expect) {
            ([OpResponse::Put, OpResponse::Get(Some(kv))], true) => assert_eq!(kv.value, b"m"),
            ([OpResponse::Put, OpResponse::Range(kvs)], false) => assert_eq!(keys(kvs), ["/c/k"]),
            (other, _) => panic!("unexpected responses {other:?}"),
        }
    }
    // Several compares: all must hold.
    let resp = s
        .txn(Txn::new().when([Compare::exists("/c/k"), Compare::exists("/c/none")]))
        .await
        .expect("txn");
    assert!(!resp.succeeded);
}

async fn txn_is_atomic_and_sees_own_writes(s: Arc<dyn Store>) {
    // All writes of one txn share one new revision.
    let before = s.current_revision().await.expect("revision");
    let resp = s
        .txn(Txn::new().and_then([
            put("/a/1", "x"),
            put("/a/2", "y"),
            TxnOp::get("/a/1"),
            TxnOp::range("/a/"),
        ]))
        .await
        .expect("txn");
    assert!(resp.succeeded);
    assert_eq!(resp.revision, before + 1);
    for k in ["/a/1", "/a/2"] {
        assert_eq!(
            s.get(k.as_bytes()).await.expect("get").expect("present").mod_revision,
            before + 1
        );
    }
    match &resp.responses[..] {
        [OpResponse::Put, OpResponse::Put, OpResponse::Get(Some(kv)), OpResponse::Range(kvs)] => {
            assert_eq!(kv.value, b"x");
            assert_eq!(keys(kvs), ["/a/1", "/a/2"]);
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // A failed compare with an empty failure branch writes nothing at all.
    let resp = s
        .txn(Txn::new().when([Compare::value("/a/1", CompareOp::Equal, "not-x")]).and_then([
            put("/a/1", "z"),
            put("/a/3", "z"),
            TxnOp::delete("/a/2"),
        ]))
        .await
        .expect("txn");
    assert!(!resp.succeeded);
    assert!(resp.responses.is_empty());
    assert_eq!(resp.revision, before + 1);
    assert_eq!(s.current_revision().await.expect("revision"), before + 1);
    assert_eq!(keys(&s.range(b"/a/").await.expect("range").kvs), ["/a/1", "/a/2"]);
    assert_eq!(value(&s, "/a/1").await.as_deref(), Some("x"));

    // A read-only txn does not bump the revision either.
    let resp = s.txn(Txn::new().and_then([TxnOp::get("/a/1")])).await.expect("txn");
    assert_eq!(resp.revision, before + 1);
}

async fn invalid_requests_are_rejected_before_writing(s: Arc<dyn Store>) {
    let before = s.current_revision().await.expect("revision");
    let bad = [
        Txn::new().and_then([put("/i/a", "1"), put("/i/a", "2")]),
        Txn::new().and_then([TxnOp::delete_prefix("/i/"), put("/i/b", "1")]),
        Txn::new().and_then([put("/i/c", "1"), put("", "1")]),
    ];
    for txn in bad {
        match s.txn(txn.clone()).await {
            Err(StoreError::InvalidArgument(_)) => {}
            other => panic!("{txn:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(matches!(s.put(b"", b"v", None).await, Err(StoreError::InvalidArgument(_))));
    // A put with an unknown lease fails the whole txn.
    let lease = s.grant_lease(30).await.expect("grant");
    s.revoke_lease(lease.id).await.expect("revoke");
    let txn = Txn::new().and_then([put("/i/d", "1"), TxnOp::put_with_lease("/i/e", "1", lease.id)]);
    match s.txn(txn).await {
        Err(StoreError::LeaseNotFound(id)) => assert_eq!(id, lease.id),
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
    assert!(s.range(b"/i/").await.expect("range").kvs.is_empty());
    assert_eq!(s.current_revision().await.expect("revision"), before);
}

async fn watch_from_now_and_from_old_revision(s: Arc<dyn Store>) {
    let start = s.current_revision().await.expect("revision");
    let mut live = s.watch(b"/w/", 0).await.expect("watch");
    let mut other = s.watch(b"/other/", 0).await.expect("watch");

    let r1 = s.put(b"/w/a", b"1", None).await.expect("put");
    let r2 = s
        .txn(Txn::new().and_then([put("/w/c", "3"), put("/w/b", "2"), put("/x/ignored", "-")]))
        .await
        .expect("txn")
        .revision;
    let r3 = s.put(b"/w/a", b"4", None).await.expect("put");
    let r4 = s.delete(b"/w/a").await.expect("delete").revision;
    s.put(b"/x/after", b"-", None).await.expect("put");

    let expected: Vec<(i64, Vec<Ev>)> = vec![
        (r1, vec![("put", "/w/a".into(), "1".into())]),
        // One txn: one batch, in the txn's op order, outside keys filtered.
        (r2, vec![("put", "/w/c".into(), "3".into()), ("put", "/w/b".into(), "2".into())]),
        (r3, vec![("put", "/w/a".into(), "4".into())]),
        (r4, vec![("del", "/w/a".into(), String::new())]),
    ];
    let mut old = s.watch(b"/w/", start + 1).await.expect("watch from old revision");
    for w in [&mut live, &mut old] {
        for (rev, events) in &expected {
            let batch = next_batch(w).await;
            assert_eq!(batch.revision, *rev);
            assert_eq!(summary(&batch), *events);
            assert!(batch.events.iter().all(|e| e.revision() == *rev));
        }
    }
    assert_quiet(&mut other, Duration::from_millis(300)).await;

    // prev kvs: the update and the delete carry the previous state.
    let mut replay = s.watch(b"/w/a", r3).await.expect("watch");
    let b = next_batch(&mut replay).await;
    match &b.events[..] {
        [WatchEvent::Put { kv, prev: Some(prev) }] => {
            assert_eq!((kv.version, prev.version, prev.value.as_slice()), (2, 1, &b"1"[..]));
        }
        other => panic!("unexpected {other:?}"),
    }
    let b = next_batch(&mut replay).await;
    match &b.events[..] {
        [WatchEvent::Delete { key, revision, prev: Some(prev) }] => {
            assert_eq!(
                (key.as_slice(), *revision, prev.value.as_slice()),
                (&b"/w/a"[..], r4, &b"4"[..])
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // Listing then watching from the listing's revision + 1 misses nothing.
    let listing = s.range(b"/w/").await.expect("range");
    let mut cont = s.watch(b"/w/", listing.revision + 1).await.expect("watch");
    let r = s.put(b"/w/z", b"z", None).await.expect("put");
    assert_eq!(next_batch(&mut cont).await.revision, r);
}

async fn watch_from_future_revision_waits(s: Arc<dyn Store>) {
    let now = s.current_revision().await.expect("revision");
    let mut w = s.watch(b"/f/", now + 2).await.expect("watch");
    s.put(b"/f/1", b"1", None).await.expect("put");
    let r = s.put(b"/f/2", b"2", None).await.expect("put");
    let b = next_batch(&mut w).await;
    assert_eq!((b.revision, summary(&b)), (r, vec![("put", "/f/2".into(), "2".into())]));
}

async fn delete_prefix_is_one_revision_with_delete_events(s: Arc<dyn Store>) {
    for k in ["/d/x/2", "/d/x/1", "/d/x/3", "/d/y/1", "/d/x"] {
        s.put(k.as_bytes(), b"v", None).await.expect("put");
    }
    let mut wx = s.watch(b"/d/x/", 0).await.expect("watch");
    let mut wy = s.watch(b"/d/y/", 0).await.expect("watch");
    let resp = s.delete_prefix(b"/d/x/").await.expect("delete prefix");
    assert_eq!(resp.deleted, 3);
    let b = next_batch(&mut wx).await;
    assert_eq!(b.revision, resp.revision);
    assert_eq!(
        summary(&b),
        vec![
            ("del", "/d/x/1".into(), String::new()),
            ("del", "/d/x/2".into(), String::new()),
            ("del", "/d/x/3".into(), String::new())
        ]
    );
    assert_eq!(keys(&s.range(b"/d/").await.expect("range").kvs), ["/d/x", "/d/y/1"]);
    // The other prefix saw nothing of it: its next batch is its own write.
    let r = s.put(b"/d/y/2", b"v", None).await.expect("put");
    assert_eq!(next_batch(&mut wy).await.revision, r);
    // Deleting an empty prefix changes nothing.
    let again = s.delete_prefix(b"/d/x/").await.expect("delete prefix");
    assert_eq!((again.deleted, again.revision), (0, r));
}

async fn watch_after_compaction_is_compacted(s: Arc<dyn Store>) {
    let first = s.put(b"/k/a", b"1", None).await.expect("put");
    s.put(b"/k/a", b"2", None).await.expect("put");
    let at = s.put(b"/k/b", b"3", None).await.expect("put");
    s.put(b"/k/a", b"4", None).await.expect("put");
    s.compact(at).await.expect("compact");
    // Compacting again, or to an older revision, is a no-op.
    s.compact(at).await.expect("compact again");
    s.compact(first).await.expect("compact older");
    let future = s.current_revision().await.expect("revision") + 10;
    assert!(matches!(s.compact(future).await, Err(StoreError::FutureRevision(r)) if r == future));

    let mut w = s.watch(b"/k/", first).await.expect("watch returns a stream");
    match tokio::time::timeout(WAIT, w.next()).await.expect("an item") {
        Some(Err(StoreError::Compacted { compact_revision })) => assert_eq!(compact_revision, at),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, w.next()).await.expect("end").is_none());

    // From the compaction point itself, history is still there.
    let mut w = s.watch(b"/k/", at).await.expect("watch");
    assert_eq!(summary(&next_batch(&mut w).await), vec![("put", "/k/b".into(), "3".into())]);
    assert_eq!(summary(&next_batch(&mut w).await), vec![("put", "/k/a".into(), "4".into())]);
    // Data is untouched by compaction.
    assert_eq!(value(&s, "/k/a").await.as_deref(), Some("4"));
}

async fn lease_expiry_deletes_keys_with_events(s: Arc<dyn Store>) {
    let lease = s.grant_lease(1).await.expect("grant");
    assert!(lease.ttl_secs >= 1);
    s.put(b"/l/a", b"1", Some(lease.id)).await.expect("put");
    s.put(b"/l/b", b"2", Some(lease.id)).await.expect("put");
    s.put(b"/l/c", b"3", None).await.expect("put");
    assert_eq!(s.get(b"/l/a").await.expect("get").expect("present").lease, Some(lease.id));
    let mut w = s.watch(b"/l/", 0).await.expect("watch");

    let b = next_batch(&mut w).await;
    assert_eq!(
        summary(&b),
        vec![("del", "/l/a".into(), String::new()), ("del", "/l/b".into(), String::new())]
    );
    assert_eq!(keys(&s.range(b"/l/").await.expect("range").kvs), ["/l/c"]);
    assert!(
        matches!(s.keep_alive(lease.id).await, Err(StoreError::LeaseNotFound(id)) if id == lease.id)
    );
}

async fn keep_alive_prevents_expiry(s: Arc<dyn Store>) {
    let lease = s.grant_lease(2).await.expect("grant");
    s.put(b"/ka/a", b"1", Some(lease.id)).await.expect("put");
    let mut w = s.watch(b"/ka/", 0).await.expect("watch");
    // Two TTLs, refreshed every TTL/8 or faster: wide margins for a loaded
    // CI machine, where a sleep may overrun by hundreds of milliseconds.
    let ttl = Duration::from_secs(lease.ttl_secs.unsigned_abs());
    let deadline = tokio::time::Instant::now() + 2 * ttl;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(ttl / 8).await;
        assert!(s.keep_alive(lease.id).await.expect("keep alive") >= 1);
    }
    assert_eq!(value(&s, "/ka/a").await.as_deref(), Some("1"));
    // No Delete was published while the lease was kept.
    assert_quiet(&mut w, Duration::from_millis(10)).await;
    // Stop refreshing: the key goes.
    let b = next_batch(&mut w).await;
    assert_eq!(summary(&b), vec![("del", "/ka/a".into(), String::new())]);
}

async fn revoke_deletes_keys_and_ends_lease(s: Arc<dyn Store>) {
    let lease = s.grant_lease(60).await.expect("grant");
    let keep = s.grant_lease(60).await.expect("grant");
    assert_ne!(lease.id, keep.id);
    s.put(b"/rv/b", b"1", Some(lease.id)).await.expect("put");
    s.put(b"/rv/a", b"1", Some(lease.id)).await.expect("put");
    s.put(b"/rv/k", b"1", Some(keep.id)).await.expect("put");
    let mut w = s.watch(b"/rv/", 0).await.expect("watch");
    s.revoke_lease(lease.id).await.expect("revoke");
    let b = next_batch(&mut w).await;
    assert_eq!(
        summary(&b),
        vec![("del", "/rv/a".into(), String::new()), ("del", "/rv/b".into(), String::new())]
    );
    assert_eq!(b.revision, s.current_revision().await.expect("revision"));
    assert_eq!(keys(&s.range(b"/rv/").await.expect("range").kvs), ["/rv/k"]);

    let gone = |r: Result<_, StoreError>| matches!(r, Err(StoreError::LeaseNotFound(id)) if id == lease.id);
    assert!(gone(s.revoke_lease(lease.id).await));
    assert!(gone(s.keep_alive(lease.id).await.map(|_| ())));
    assert!(gone(s.put(b"/rv/c", b"1", Some(lease.id)).await.map(|_| ())));
    // A lease without keys revokes without a new revision.
    let before = s.current_revision().await.expect("revision");
    let empty = s.grant_lease(60).await.expect("grant");
    s.revoke_lease(empty.id).await.expect("revoke");
    assert_eq!(s.current_revision().await.expect("revision"), before);
}

async fn put_without_lease_detaches_key(s: Arc<dyn Store>) {
    let lease = s.grant_lease(60).await.expect("grant");
    s.put(b"/pl/a", b"1", Some(lease.id)).await.expect("put");
    s.put(b"/pl/a", b"2", None).await.expect("put");
    assert_eq!(s.get(b"/pl/a").await.expect("get").expect("present").lease, None);
    s.revoke_lease(lease.id).await.expect("revoke");
    assert_eq!(value(&s, "/pl/a").await.as_deref(), Some("2"));
}

async fn concurrent_cas_increments_lose_nothing(s: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const EACH: usize = 20;
    s.put(b"/cas/n", b"0", None).await.expect("put");
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let mut retries = 0usize;
            for _ in 0..EACH {
                loop {
                    let cur = s.get(b"/cas/n").await.expect("get").expect("present");
                    let n: usize = text(&cur.value).parse().expect("number");
                    let txn = Txn::new()
                        .when([Compare::mod_revision("/cas/n", CompareOp::Equal, cur.mod_revision)])
                        .and_then([put("/cas/n", &(n + 1).to_string())]);
                    if s.txn(txn).await.expect("txn").succeeded {
                        break;
                    }
                    retries += 1;
                }
            }
            retries
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let kv = s.get(b"/cas/n").await.expect("get").expect("present");
    assert_eq!(text(&kv.value), (TASKS * EACH).to_string());
    assert_eq!(kv.version as usize, TASKS * EACH + 1);
}

async fn concurrent_writers_watch_sees_every_revision_in_order(s: Arc<dyn Store>) {
    const TASKS: usize = 4;
    const EACH: usize = 25;
    let start = s.current_revision().await.expect("revision");
    // An empty prefix watches every key.
    let mut all = s.watch(b"", 0).await.expect("watch");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let key = format!("/cw/{t}/{i}");
                s.put(key.as_bytes(), b"v", None).await.expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Every write is its own revision, delivered once, in order, and the
    // writes of each task in that task's order.
    let mut last_per_task = [None::<usize>; TASKS];
    for expected in start + 1..=start + (TASKS * EACH) as i64 {
        let b = next_batch(&mut all).await;
        assert_eq!(b.revision, expected);
        let (_, key, _) = summary(&b).pop().expect("one event");
        let mut parts = key.trim_start_matches("/cw/").split('/');
        let t: usize = parts.next().and_then(|p| p.parse().ok()).expect("task");
        let i: usize = parts.next().and_then(|p| p.parse().ok()).expect("index");
        assert_eq!(last_per_task[t].map_or(0, |l| l + 1), i, "task {t} in order");
        last_per_task[t] = Some(i);
    }
    assert_eq!(s.range(b"/cw/").await.expect("range").kvs.len(), TASKS * EACH);
}
