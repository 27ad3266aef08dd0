//! Keeping a lease alive in the background.
//!
//! The owner of leased keys (an agent's liveness and state-table entries, a
//! cluster replica's registration) must refresh its lease about every TTL/3.
//! [`LeaseKeeper`] is that loop as a tokio task, for any [`Store`]:
//!
//! * a refresh every TTL/3;
//! * a transient failure ([`StoreError::is_retryable`]) is retried after
//!   TTL/6 — the lease may well survive a short outage;
//! * any other failure, notably [`StoreError::LeaseNotFound`], ends the task:
//!   the lease is gone and its keys with it, so the owner must grant a new
//!   lease and rewrite them. [`LeaseKeeper::lost`] waits for that;
//! * dropping the keeper stops refreshing (the lease then expires unless
//!   revoked first).

use std::sync::Arc;
use std::time::Duration;

use crate::{Lease, Store, StoreError};

/// A background task refreshing one lease. Stops on drop.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: Lease,
    task: tokio::task::JoinHandle<StoreError>,
}

impl LeaseKeeper {
    /// Starts refreshing `lease` on the current tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, lease: Lease) -> Self {
        let ttl = Duration::from_secs(lease.ttl_secs.max(1).unsigned_abs());
        let task = tokio::spawn(async move {
            loop {
                match store.keep_alive(lease.id).await {
                    Ok(_) => tokio::time::sleep(ttl / 3).await,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(lease = %lease.id, error = %e, "lease keep-alive failed; retrying");
                        tokio::time::sleep(ttl / 6).await;
                    }
                    Err(e) => return e,
                }
            }
        });
        LeaseKeeper { lease, task }
    }

    /// The lease being kept.
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// True once the lease is lost (see [`LeaseKeeper::lost`]).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the lease cannot be kept any more, and says why
    /// (usually [`StoreError::LeaseNotFound`]). Cancel safe.
    pub async fn lost(&mut self) -> StoreError {
        match (&mut self.task).await {
            Ok(e) => e,
            Err(join) => StoreError::backend(join),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeper_holds_the_lease_until_dropped() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().expect("store"));
        let lease = store.grant_lease(2).await.expect("grant");
        store.put(b"/k", b"v", Some(lease.id)).await.expect("put");
        let keeper = LeaseKeeper::spawn(Arc::clone(&store), lease);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(store.get(b"/k").await.expect("get").is_some(), "kept past 2 TTLs");
        assert!(!keeper.is_finished());
        drop(keeper);
        // Gone within the TTL plus expiry slack; poll rather than guess.
        let gone = async {
            while store.get(b"/k").await.expect("get").is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("expired once dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeper_reports_a_revoked_lease() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().expect("store"));
        let lease = store.grant_lease(3).await.expect("grant");
        let mut keeper = LeaseKeeper::spawn(Arc::clone(&store), lease);
        store.revoke_lease(lease.id).await.expect("revoke");
        let err = tokio::time::timeout(Duration::from_secs(5), keeper.lost())
            .await
            .expect("noticed within a refresh period");
        assert!(matches!(err, StoreError::LeaseNotFound(id) if id == lease.id));
    }
}
