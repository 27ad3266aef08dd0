//! The cluster's tasks and how they start and stop.
//!
//! ```text
//! run(cfg, shutdown)
//!   ├─ connect(cfg.store)             (embedded file | memory | etcd)
//!   ├─ Cluster::new                   shared state
//!   ├─ build_refs_index               the reverse-reference index, once per
//!   │                                 store (crate::refs)
//!   ├─ build_neutron_indexes          the Neutron API's indexes, once per
//!   │                                 store and index version
//!   └─ serve(listener, cluster, shutdown)
//!        └─ axum HTTP server          until `shutdown` resolves, then
//!                                     finishes in-flight requests
//!   └─ compactor                      once a minute: compact store history
//!                                     older than `history_revisions`
//! ```
//!
//! The Neutron API ([`crate::neutron`]) has its own listener on
//! `cfg.neutron_listen` (also served at `/neutron` on the main one).
//!
//! The gRPC topology service for agents ([`crate::topology_service`]) runs
//! next to the HTTP server on `cfg.grpc_listen`, over the same store, and
//! stops on the same `shutdown`.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::ClusterError;
use crate::Cluster;

/// Opens the store from the config, binds `cfg.listen` and serves until
/// `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ClusterError> {
    cfg.check()?;
    if cfg.auth.enabled && cfg.auth.users.is_empty() {
        tracing::warn!("auth is enabled but no users are configured: nobody can log in (use --no-auth or add [[auth.users]])");
    }
    let store = midonet_store::connect(&cfg.store).await.map_err(ClusterError::Store)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| ClusterError::Bind { addr: cfg.listen, source: e })?;
    tracing::info!(listen = %cfg.listen, store = %cfg.store, auth = cfg.auth.enabled, "midonet-cluster serving /midonet-api");
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let grpc = TcpListener::bind(cfg.grpc_listen)
        .await
        .map_err(|e| ClusterError::Bind { addr: cfg.grpc_listen, source: e })?;
    let tls = if cfg.tls.enabled() {
        let c = midonet_proto::tls::server_config(
            std::path::Path::new(&cfg.tls.cert),
            std::path::Path::new(&cfg.tls.key),
        )
        .map_err(|e| ClusterError::ConfigInvalid(error_chain(&e)))?;
        Some(c)
    } else {
        None
    };
    tracing::info!(
        grpc_listen = %cfg.grpc_listen,
        tls = tls.is_some(),
        agent_credentials = cfg.agents.credentials,
        "topology service for agents"
    );
    let cluster = Cluster::new(cfg.clone(), store.clone());
    let revocations = share_tokens(&cluster).await?;
    build_refs_index(&store).await;
    build_neutron_indexes(&store).await?;
    let opts = crate::topology_service::ServeOptions {
        auth: if cfg.agents.credentials {
            crate::topology_service::AgentAuth::Credentials
        } else {
            crate::topology_service::AgentAuth::Open
        },
        tls,
        refused: cluster.metrics.refused(),
    };
    let grpc =
        tokio::spawn(crate::topology_service::serve(store.clone(), grpc, opts, shutdown.clone()));
    let compactor =
        tokio::spawn(compact_history(store.clone(), cfg.history_revisions, shutdown.clone()));
    let neutron = match cfg.neutron_addr()? {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ClusterError::Bind { addr, source: e })?;
            tracing::info!(neutron_listen = %addr, "Neutron v2.0 API");
            Some(l)
        }
        None => None,
    };
    let api_tls = if cfg.api_tls.enabled() {
        let t = crate::https::server_config(
            std::path::Path::new(&cfg.api_tls.cert),
            std::path::Path::new(&cfg.api_tls.key),
        )?;
        tracing::info!("the REST and Neutron APIs serve HTTPS");
        Some(t)
    } else {
        None
    };
    let neutron = neutron.map(|l| {
        let app = crate::neutron::app(cluster.clone());
        let stop = shutdown.clone();
        let tls = api_tls.clone();
        tokio::spawn(async move {
            let r = match tls {
                Some(t) => crate::https::serve(l, app, t, stop).await,
                None => axum::serve(l, app).with_graceful_shutdown(stop).await,
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "the Neutron API listener failed");
            }
        })
    });
    let r = match api_tls {
        Some(t) => crate::https::serve(listener, crate::api::app(cluster), t, shutdown)
            .await
            .map_err(ClusterError::Serve),
        None => serve(listener, cluster, shutdown).await,
    };
    if let Some(n) = neutron {
        let _ = n.await;
    }
    compactor.abort();
    revocations.abort();
    if let Ok(Err(e)) = grpc.await {
        tracing::warn!(error = %e, "topology service ended with an error");
    }
    r
}

/// Serves the REST API of `cluster` on an already bound listener.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ClusterError> {
    let app = crate::api::app(cluster);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(ClusterError::Serve)
}

/// Builds the reverse-reference index if the store has none in this
/// version's format yet ([`crate::refs`]). A failure is logged, not fatal:
/// lookups keep scanning whole kinds and the next start tries again.
pub async fn build_refs_index(store: &Arc<dyn midonet_store::Store>) {
    let started = std::time::Instant::now();
    match crate::refs::build(store).await {
        Ok(crate::refs::Built::AlreadyComplete) => {
            tracing::debug!("reverse-reference index complete")
        }
        Ok(crate::refs::Built::Indexed { referrers }) => tracing::info!(
            referrers,
            ms = started.elapsed().as_millis() as u64,
            "reverse-reference index built"
        ),
        Ok(crate::refs::Built::GaveUp) => tracing::warn!(
            "reverse-reference index not built: concurrent writes kept failing its batches; deletes scan until the next start"
        ),
        Err(e) => tracing::warn!(
            error = %error_chain(&e),
            "reverse-reference index not built; deletes scan until the next start"
        ),
    }
}

/// Builds the Neutron API's indexes if the store's are of an older version
/// ([`crate::neutron::store::build_indexes`]). Unlike the reverse-reference
/// index, the Neutron API has no scanning fallback: a failure stops the
/// start.
pub async fn build_neutron_indexes(
    store: &Arc<dyn midonet_store::Store>,
) -> Result<(), ClusterError> {
    use crate::neutron::store::{build_indexes, Built};
    let started = std::time::Instant::now();
    match build_indexes(store).await.map_err(ClusterError::NeutronIndexes)? {
        Built::AlreadyComplete => tracing::debug!("Neutron indexes complete"),
        Built::Indexed { objects } => tracing::info!(
            objects,
            ms = started.elapsed().as_millis() as u64,
            "Neutron indexes built"
        ),
        Built::GaveUp => return Err(ClusterError::NeutronIndexesBusy),
    }
    Ok(())
}

/// Makes this replica's tokens every replica's: signs with the store's
/// shared key, and follows revocations made on any replica (see
/// [`crate::auth`]). Returns the follower task.
pub async fn share_tokens(
    cluster: &Arc<Cluster>,
) -> Result<tokio::task::JoinHandle<()>, ClusterError> {
    let key = crate::auth::shared_key(&cluster.store).await.map_err(ClusterError::Store)?;
    cluster.auth.use_key(key);
    Ok(tokio::spawn(follow_revocations(cluster.clone())))
}

async fn follow_revocations(cluster: Arc<Cluster>) {
    use futures::StreamExt;
    let prefix = crate::auth::revoked_prefix();
    let note = |key: &[u8], value: &[u8]| {
        if let Some((digest, until)) = crate::auth::parse_revocation(key, value) {
            cluster.auth.note_revoked(digest, until);
        }
    };
    loop {
        let r: Result<(), midonet_store::StoreError> = async {
            let snap = cluster.store.range(prefix.as_bytes()).await?;
            for kv in &snap.kvs {
                note(&kv.key, &kv.value);
            }
            let mut w = cluster.store.watch(prefix.as_bytes(), snap.revision + 1).await?;
            while let Some(batch) = w.next().await {
                for ev in batch?.events {
                    if let midonet_store::WatchEvent::Put { kv, .. } = ev {
                        note(&kv.key, &kv.value);
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "following token revocations: starting over");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// A job that runs on one replica at a time: whoever holds
/// `meta/singletons/<name>`, a key leased to that replica (TTL
/// [`SINGLETON_TTL_SECS`], kept alive by each call of [`Singleton::held`]).
/// When the holder dies the key vanishes with its lease and the next
/// replica to ask takes over.
pub struct Singleton {
    key: String,
    me: String,
    lease: Option<midonet_store::LeaseId>,
}

/// Lease of a singleton's holder: longer than the jobs' period.
pub const SINGLETON_TTL_SECS: i64 = 150;

impl Singleton {
    pub fn new(name: &str) -> Singleton {
        Singleton {
            key: format!("{}meta/singletons/{name}", midonet_proto::KEY_ROOT),
            me: uuid::Uuid::new_v4().to_string(),
            lease: None,
        }
    }

    /// Whether this replica holds the job now (claiming it if free).
    pub async fn held(&mut self, store: &Arc<dyn midonet_store::Store>) -> bool {
        match self.try_hold(store).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(key = %self.key, error = %e, "singleton check failed");
                false
            }
        }
    }

    async fn try_hold(
        &mut self,
        store: &Arc<dyn midonet_store::Store>,
    ) -> Result<bool, midonet_store::StoreError> {
        use midonet_store::{Compare, Txn, TxnOp};
        if let Some(l) = self.lease {
            if store.keep_alive(l).await.is_err() {
                self.lease = None;
            }
        }
        let lease = match self.lease {
            Some(l) => l,
            None => {
                let l = store.grant_lease(SINGLETON_TTL_SECS).await?.id;
                self.lease = Some(l);
                l
            }
        };
        let claim = TxnOp::put_with_lease(self.key.clone(), self.me.clone().into_bytes(), lease);
        store.txn(Txn::new().when([Compare::missing(self.key.clone())]).and_then([claim])).await?;
        let holder = store.get(self.key.as_bytes()).await?;
        Ok(holder.is_some_and(|kv| kv.value == self.me.as_bytes()))
    }
}

/// `error: cause: cause...`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// How often [`compact_history`] runs.
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Keeps the store's history bounded: both backends keep every revision
/// until told otherwise (the embedded store on disk, etcd in memory), but
/// watchers only ever resume from recent ones. An agent that was away longer
/// than `keep` revisions gets `Compacted` and re-lists, which is correct,
/// just slower. Several replicas compacting the same store is harmless:
/// compacting to or below the current point is a no-op.
async fn compact_history(
    store: Arc<dyn midonet_store::Store>,
    keep: i64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if keep <= 0 {
        return;
    }
    let tick = async {
        let mut interval = tokio::time::interval(COMPACT_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut duty = Singleton::new("compactor");
        loop {
            interval.tick().await;
            // One replica at a time; another takes over within a TTL.
            if !duty.held(&store).await {
                continue;
            }
            match store.current_revision().await {
                Ok(rev) if rev - keep > 1 => {
                    if let Err(e) = store.compact(rev - keep).await {
                        tracing::warn!(error = %e, "store history compaction failed; will retry");
                    } else {
                        tracing::debug!(revision = rev - keep, "compacted store history");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the store revision for compaction")
                }
            }
        }
    };
    tokio::select! {
        () = tick => {}
        () = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_singleton_has_one_holder_and_moves_when_it_dies() {
        let store = midonet_store::connect("memory:").await.expect("store");
        let (mut a, mut b) = (Singleton::new("job"), Singleton::new("job"));
        assert!(a.held(&store).await, "free: the first asker takes it");
        assert!(!b.held(&store).await, "held elsewhere");
        assert!(a.held(&store).await, "and kept");
        // The holder dies: its lease goes, the other takes over.
        store.revoke_lease(a.lease.expect("leased")).await.expect("revoke");
        assert!(b.held(&store).await);
        assert!(!a.held(&store).await, "a new lease does not take it back");
    }
}
