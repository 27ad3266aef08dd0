//! Whole-topology snapshots for subscribers: read once, shared by every
//! subscriber that asks at about the same time, and streamed to each of
//! them a chunk at a time.
//!
//! ```text
//!  subscriber ─get(min)─> latest? ── fresh enough ──────────────> Arc<Snapshot{R}>
//!                           └─ stale/missing: range(/midonet/v1/)@R, chunk ─┘
//!  SubscribeStream: [Arc<Snapshot>] ─ yields chunk 0, 1, … (one clone each, on demand)
//!                   [message]       ─ yields it
//! ```
//!
//! Invariants:
//!
//! * A snapshot is one `range` at one revision R; whoever takes it watches
//!   from R + 1, so an older snapshot is as correct as a new one (the deltas
//!   since R follow it), as long as R is not compacted: a caller that was
//!   told of a compaction asks for a snapshot at or after it (`min`).
//! * At most one store read is in flight; callers that ask meanwhile wait
//!   for it and share its result. A snapshot is reused while the store is
//!   still at its revision, or for [`REUSE_FOR`] after it was read, so N
//!   agents reconnecting together cost one read of the store, not N (the
//!   storm of docs/PERFORMANCE.md "Scale").
//! * Nothing is copied per subscriber up front: the stream clones one chunk
//!   when the transport asks for the next message, so a thousand slow
//!   subscribers hold one snapshot and a chunk each, not a thousand copies.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use midonet_model::ObjectKind;
use midonet_proto::pb::{self, subscribe_response::Event};
use midonet_proto::KEY_ROOT;
use midonet_store::{KeyValue, Store, StoreError};
use tokio::sync::mpsc;
use tonic::Status;

/// Keys and values per snapshot chunk (one key larger than this goes alone).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// How long a snapshot is handed out after it was read although the store
/// has moved on (the deltas since follow it on each stream).
pub const REUSE_FOR: Duration = Duration::from_secs(2);

/// Whether `key` goes to agents: topology objects and agent state, not
/// counters or internal guard keys.
pub(super) fn is_streamed(key: &str) -> bool {
    midonet_proto::is_state_key(key) || ObjectKind::parse_key(key).is_some()
}

fn kv_pb(kv: KeyValue) -> Option<pb::KeyValue> {
    let key = String::from_utf8(kv.key).ok()?;
    is_streamed(&key).then_some(pb::KeyValue {
        key,
        value: kv.value,
        mod_revision: kv.mod_revision,
    })
}

/// Splits a snapshot into chunks of at most `limit` bytes of keys and
/// values (a larger single key goes alone); always at least one chunk, and
/// `more` on all but the last.
pub(super) fn snapshot_chunks(
    revision: i64,
    kvs: Vec<pb::KeyValue>,
    limit: usize,
) -> Vec<pb::Snapshot> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0usize;
    for kv in kvs {
        let n = kv.key.len() + kv.value.len() + 16;
        if !cur.is_empty() && size + n > limit {
            out.push(pb::Snapshot { revision, kvs: std::mem::take(&mut cur), more: true });
            size = 0;
        }
        size += n;
        cur.push(kv);
    }
    out.push(pb::Snapshot { revision, kvs: cur, more: false });
    out
}

/// One read of the whole topology, chunked.
#[derive(Debug)]
pub struct Snapshot {
    pub revision: i64,
    pub chunks: Vec<pb::Snapshot>,
    read_at: Instant,
}

/// The latest snapshot and the one read in flight (see the module docs).
pub struct Snapshots {
    store: Arc<dyn Store>,
    /// Held across the store read: who asks meanwhile waits for its result.
    latest: tokio::sync::Mutex<Option<Arc<Snapshot>>>,
    reuse_for: Duration,
    /// Store reads made, and snapshots handed out (reads + reuses).
    reads: std::sync::atomic::AtomicU64,
    served: std::sync::atomic::AtomicU64,
}

impl Snapshots {
    pub fn new(store: Arc<dyn Store>, reuse_for: Duration) -> Self {
        Snapshots {
            store,
            latest: tokio::sync::Mutex::new(None),
            reuse_for,
            reads: 0.into(),
            served: 0.into(),
        }
    }

    /// A snapshot at revision `min` or later.
    pub async fn get(&self, min: i64) -> Result<Arc<Snapshot>, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut latest = self.latest.lock().await;
        if let Some(s) = latest.as_ref().filter(|s| s.revision >= min) {
            let fresh = s.read_at.elapsed() <= self.reuse_for
                || self.store.current_revision().await? == s.revision;
            if fresh {
                self.served.fetch_add(1, Relaxed);
                return Ok(Arc::clone(s));
            }
        }
        // Dropped before the read: the old one is not kept alive beside it.
        *latest = None;
        let snap = self.store.range(KEY_ROOT.as_bytes()).await?;
        let revision = snap.revision;
        let kvs: Vec<pb::KeyValue> = snap.kvs.into_iter().filter_map(kv_pb).collect();
        let s = Arc::new(Snapshot {
            revision,
            chunks: snapshot_chunks(revision, kvs, SNAPSHOT_CHUNK_BYTES),
            read_at: Instant::now(),
        });
        *latest = Some(Arc::clone(&s));
        self.reads.fetch_add(1, Relaxed);
        self.served.fetch_add(1, Relaxed);
        let (reads, served) = self.counts();
        tracing::debug!(revision, chunks = s.chunks.len(), reads, served, "topology snapshot read");
        Ok(s)
    }

    /// (store reads, snapshots handed out) so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.reads.load(Relaxed), self.served.load(Relaxed))
    }
}

/// What a subscription task queues for its stream.
pub(super) enum Out {
    Message(Result<pb::SubscribeResponse, Status>),
    /// Streamed a chunk at a time.
    Snapshot(Arc<Snapshot>),
}

/// The response stream of `Subscribe`: messages from the subscription task,
/// with each queued snapshot expanded into its chunks as they are polled.
pub struct SubscribeStream {
    rx: mpsc::Receiver<Out>,
    /// The snapshot being streamed and its next chunk.
    current: Option<(Arc<Snapshot>, usize)>,
}

impl SubscribeStream {
    pub(super) fn new(rx: mpsc::Receiver<Out>) -> Self {
        SubscribeStream { rx, current: None }
    }
}

impl futures::Stream for SubscribeStream {
    type Item = Result<pb::SubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some((snap, next)) = &mut self.current {
                if let Some(chunk) = snap.chunks.get(*next) {
                    *next += 1;
                    let event = Some(Event::Snapshot(chunk.clone()));
                    return Poll::Ready(Some(Ok(pb::SubscribeResponse { event })));
                }
                self.current = None;
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(Out::Message(m)) => return Poll::Ready(Some(m)),
                Some(Out::Snapshot(s)) => self.current = Some((s, 0)),
                None => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn snapshots_split_into_bounded_chunks_and_the_last_says_so() {
        let kv = |i: usize| pb::KeyValue {
            key: format!("/midonet/v1/bridges/{i}"),
            value: vec![b'x'; 100],
            mod_revision: 1,
        };
        let chunks = snapshot_chunks(9, (0..100).map(kv).collect(), 1_000);
        assert!(chunks.len() > 10, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.revision == 9));
        assert!(chunks.iter().all(|c| c
            .kvs
            .iter()
            .map(|k| k.key.len() + k.value.len() + 16)
            .sum::<usize>()
            <= 1_000));
        assert_eq!(chunks.iter().filter(|c| !c.more).count(), 1);
        assert!(!chunks.last().expect("some").more);
        assert_eq!(chunks.iter().map(|c| c.kvs.len()).sum::<usize>(), 100, "nothing lost");
        let empty = snapshot_chunks(3, Vec::new(), 1_000);
        assert_eq!((empty.len(), empty[0].more), (1, false), "an empty store is one chunk");
        let big = snapshot_chunks(3, vec![pb::KeyValue { value: vec![0; 5_000], ..kv(0) }], 1_000);
        assert_eq!(big.len(), 1, "a key larger than the limit goes alone");
    }

    async fn put(store: &Arc<dyn Store>, name: &str) -> i64 {
        let key = format!("{KEY_ROOT}bridges/{name}");
        store.put(key.as_bytes(), b"{}", None).await.expect("put")
    }

    #[tokio::test]
    async fn callers_at_once_share_one_read_and_a_stale_one_is_read_again() {
        let store = midonet_store::connect("memory:").await.expect("memory store");
        put(&store, "a").await;
        let snaps = Arc::new(Snapshots::new(store.clone(), Duration::ZERO));
        let many: Vec<_> = (0..20)
            .map(|_| {
                let snaps = Arc::clone(&snaps);
                tokio::spawn(async move { snaps.get(0).await.expect("snapshot") })
            })
            .collect();
        let mut got = Vec::new();
        for t in many {
            got.push(t.await.expect("task"));
        }
        assert!(got.iter().all(|s| Arc::ptr_eq(s, &got[0])), "one snapshot for all");
        assert_eq!(snaps.counts(), (1, 20), "one store read for 20 callers");

        // The store moved on and REUSE_FOR (zero here) has passed: read again.
        let r = put(&store, "b").await;
        let next = snaps.get(0).await.expect("snapshot");
        assert_eq!(next.revision, r);
        assert_eq!(next.chunks[0].kvs.len(), 2);
        assert_eq!(snaps.counts().0, 2);

        // Within REUSE_FOR an older snapshot is handed out; never one below `min`.
        let lasting = Snapshots::new(store.clone(), Duration::from_secs(3600));
        let first = lasting.get(0).await.expect("snapshot");
        let r = put(&store, "c").await;
        assert_eq!(lasting.get(0).await.expect("snapshot").revision, first.revision);
        assert_eq!(lasting.get(r).await.expect("snapshot").revision, r, "min is honoured");
        assert_eq!(lasting.counts(), (2, 3));
    }

    #[tokio::test]
    async fn the_stream_expands_a_snapshot_into_its_chunks_in_order() {
        let kvs = (0..50)
            .map(|i| pb::KeyValue {
                key: format!("{KEY_ROOT}bridges/{i}"),
                value: vec![b'x'; 100],
                mod_revision: 1,
            })
            .collect();
        let snap = Arc::new(Snapshot {
            revision: 7,
            chunks: snapshot_chunks(7, kvs, 1_000),
            read_at: Instant::now(),
        });
        let n = snap.chunks.len();
        let (tx, rx) = mpsc::channel(4);
        tx.send(Out::Snapshot(Arc::clone(&snap))).await.expect("send");
        let resync = pb::SubscribeResponse {
            event: Some(Event::Resync(pb::ResyncNeeded { compact_revision: 1 })),
        };
        tx.send(Out::Message(Ok(resync.clone()))).await.expect("send");
        drop(tx);
        let got: Vec<_> = SubscribeStream::new(rx).map(|m| m.expect("ok")).collect().await;
        assert_eq!(got.len(), n + 1);
        for (i, m) in got[..n].iter().enumerate() {
            assert_eq!(m.event, Some(Event::Snapshot(snap.chunks[i].clone())), "chunk {i}");
        }
        assert_eq!(got[n], resync, "what follows the snapshot comes after all of it");
    }
}
