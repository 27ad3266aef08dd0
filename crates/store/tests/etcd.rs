//! etcd-only behaviour that the shared contract cannot express: what callers
//! see when the etcd server goes away.

use std::time::Duration;

use futures::StreamExt;
use midonet_store::testutil::etcd_or_skip;
use midonet_store::{EtcdStore, Store, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_ends_watches_and_fails_calls_as_unavailable() {
    let Some(server) = etcd_or_skip() else { return };
    let store = EtcdStore::connect(&[server.endpoint()])
        .await
        .expect("connect")
        .with_timeout(Duration::from_secs(2));
    store.put(b"/e/a", b"1", None).await.expect("put");
    let mut w = store.watch(b"/e/", 0).await.expect("watch");

    drop(server); // kills etcd

    match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
        Ok(Some(Err(e))) => assert!(e.is_retryable(), "watch ended with {e:?}"),
        other => panic!("expected the watch to end with an error, got {other:?}"),
    }
    let started = std::time::Instant::now();
    match store.get(b"/e/a").await {
        Err(e @ StoreError::Unavailable(_)) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by the timeout");
}
