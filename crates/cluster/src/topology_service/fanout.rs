//! One store watch for every subscriber: the topology service's changes fan
//! out from here instead of each subscriber holding its own watch.
//!
//! ```text
//!  store.watch(/midonet/v1/, R0+1) ─ hub task ─ ring (last RING deltas) ─┐
//!                                              └─ broadcast ─────────────┴─ follow(from):
//!                                                        replay ring ≥ from, then live deltas
//!  from < what the ring still holds, or the hub gone: None → the caller
//!  watches the store itself, as before (and learns of compaction there).
//! ```
//!
//! Invariants:
//!
//! * Every revision at or after `Ring::from` that changed a streamed key is
//!   in the ring or yet to be broadcast: a follower subscribes to the
//!   broadcast and copies the ring under the one lock the hub task holds
//!   while it appends and broadcasts, so nothing falls between the two and
//!   nothing comes twice.
//! * A follower that falls behind the broadcast (`Lagged`), or whose hub
//!   ends (the store watch failed: `Closed`), goes on from its next revision
//!   on a watch of its own; a new hub starts for later subscribers.
//! * N agents cost the store one watch and the cluster one decode of each
//!   change, instead of N (docs/PERFORMANCE.md "Scale").

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use midonet_proto::pb;
use midonet_proto::KEY_ROOT;
use midonet_store::{Store, WatchStream};
use tokio::sync::{broadcast, watch};

/// Deltas kept for followers that start a little behind the head (a
/// snapshot read a moment ago), and queued per follower before it lags.
pub const RING: usize = 1024;

/// What [`Fanout::follow`] hands a subscriber.
pub struct Follow {
    /// Deltas at or after the asked revision that already went by.
    pub replay: Vec<Arc<pb::Delta>>,
    /// Every delta after those.
    pub live: broadcast::Receiver<Arc<pb::Delta>>,
}

struct Ring {
    /// The first revision the ring answers for (see the module docs).
    from: i64,
    deltas: VecDeque<Arc<pb::Delta>>,
    /// `None` once the hub ended: followers then see `Closed`.
    tx: Option<broadcast::Sender<Arc<pb::Delta>>>,
}

struct Hub {
    ring: Mutex<Ring>,
}

impl Hub {
    fn follow(&self, from: i64) -> Option<Follow> {
        let ring = self.ring.lock().expect("ring lock");
        let tx = ring.tx.as_ref()?;
        if from < ring.from {
            return None;
        }
        let live = tx.subscribe();
        let replay = ring.deltas.iter().filter(|d| d.revision >= from).cloned().collect();
        Some(Follow { replay, live })
    }

    fn alive(&self) -> bool {
        self.ring.lock().expect("ring lock").tx.is_some()
    }

    /// Moves the store watch's changes into the ring and the broadcast
    /// until the watch fails or ends, or the service stops.
    async fn run(self: Arc<Self>, mut watch: WatchStream, mut stopping: watch::Receiver<bool>) {
        loop {
            let batch = tokio::select! {
                _ = stopping.changed() => break,
                b = watch.next() => b,
            };
            let batch = match batch {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    tracing::info!(error = %e, "topology fan-out watch ended; subscribers watch on their own");
                    break;
                }
                None => break,
            };
            let Some(delta) = super::delta_pb(batch) else { continue };
            let delta = Arc::new(delta);
            let mut ring = self.ring.lock().expect("ring lock");
            if ring.deltas.len() == RING {
                if let Some(old) = ring.deltas.pop_front() {
                    ring.from = old.revision + 1;
                }
            }
            ring.deltas.push_back(Arc::clone(&delta));
            if let Some(tx) = &ring.tx {
                // No follower at the moment is fine.
                let _ = tx.send(delta);
            }
        }
        self.ring.lock().expect("ring lock").tx = None;
    }
}

/// The hub, started on first use and again after it ends.
pub struct Fanout {
    store: Arc<dyn Store>,
    stopping: watch::Receiver<bool>,
    hub: tokio::sync::Mutex<Option<Arc<Hub>>>,
}

impl Fanout {
    pub fn new(store: Arc<dyn Store>, stopping: watch::Receiver<bool>) -> Self {
        Fanout { store, stopping, hub: tokio::sync::Mutex::new(None) }
    }

    /// The deltas from revision `from` on, or `None` if the hub cannot give
    /// all of them (the caller then watches the store itself).
    pub async fn follow(&self, from: i64) -> Option<Follow> {
        let mut hub = self.hub.lock().await;
        if let Some(h) = hub.as_ref().filter(|h| h.alive()) {
            return h.follow(from);
        }
        if *self.stopping.borrow() {
            return None;
        }
        let head = self.store.current_revision().await.ok()?;
        let watch = self.store.watch(KEY_ROOT.as_bytes(), head + 1).await.ok()?;
        let (tx, _) = broadcast::channel(RING);
        let h = Arc::new(Hub {
            ring: Mutex::new(Ring { from: head + 1, deltas: VecDeque::new(), tx: Some(tx) }),
        });
        tokio::spawn(Arc::clone(&h).run(watch, self.stopping.clone()));
        tracing::debug!(from = head + 1, "topology fan-out watch started");
        *hub = Some(Arc::clone(&h));
        h.follow(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn put(store: &Arc<dyn Store>, name: &str) -> i64 {
        let key = format!("{KEY_ROOT}bridges/{name}");
        store.put(key.as_bytes(), b"{}", None).await.expect("put")
    }

    async fn next(rx: &mut broadcast::Receiver<Arc<pb::Delta>>) -> Arc<pb::Delta> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a delta in time")
            .expect("delta")
    }

    #[tokio::test]
    async fn followers_share_one_watch_and_a_late_one_gets_the_ring_first() {
        let store = midonet_store::connect("memory:").await.expect("memory store");
        let (_stop, stopping) = watch::channel(false);
        let fan = Fanout::new(store.clone(), stopping);
        let head = store.current_revision().await.expect("revision");
        let mut a = fan.follow(head + 1).await.expect("covered");
        assert!(a.replay.is_empty());
        let r1 = put(&store, "one").await;
        let r2 = put(&store, "two").await;
        assert_eq!(next(&mut a.live).await.revision, r1);
        assert_eq!(next(&mut a.live).await.revision, r2);

        // Started after both: replays them from the ring, then goes live.
        let mut b = fan.follow(r1).await.expect("in the ring");
        let replayed: Vec<i64> = b.replay.iter().map(|d| d.revision).collect();
        assert_eq!(replayed, [r1, r2]);
        let r3 = put(&store, "three").await;
        assert_eq!(next(&mut b.live).await.revision, r3);
        assert_eq!(next(&mut a.live).await.revision, r3);
        assert_eq!(b.replay[0].changes[0].key, format!("{KEY_ROOT}bridges/one"));

        // Older than the hub's start: not the hub's to answer.
        assert!(fan.follow(head).await.is_none());
    }

    #[tokio::test]
    async fn a_stopped_hub_closes_its_followers() {
        let store = midonet_store::connect("memory:").await.expect("memory store");
        let (stop, stopping) = watch::channel(false);
        let fan = Fanout::new(store.clone(), stopping);
        let head = store.current_revision().await.expect("revision");
        let mut f = fan.follow(head + 1).await.expect("covered");
        stop.send(true).expect("stop");
        let end = tokio::time::timeout(Duration::from_secs(5), f.live.recv()).await.expect("ends");
        assert!(matches!(end, Err(broadcast::error::RecvError::Closed)), "{end:?}");
        assert!(fan.follow(head + 1).await.is_none(), "no new hub once stopping");
    }
}
