//! One subscriber's stream: a snapshot (shared, [`super::snapshots`]),
//! then one delta per store revision from the shared watch
//! ([`super::fanout`]) or, when the subscriber lags or starts too far
//! back, from a watch of its own; a compaction in between gives
//! `ResyncNeeded` and a fresh snapshot on the same stream.

use futures::StreamExt;
use midonet_proto::pb::{self, subscribe_response::Event};
use midonet_proto::KEY_ROOT;
use midonet_store::StoreError;
use tokio::sync::mpsc;
use tonic::Status;

use super::snapshots::Out;
use super::{delta_pb, fanout, status, TopologyServiceImpl};

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
    pub(super) async fn feed(self, mut from: i64, tx: mpsc::Sender<Out>) {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bridge, next, start};
    use super::super::{json, SUBSCRIBER_BUFFER};
    use super::*;
    use midonet_model::topology::Stored;

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
}
