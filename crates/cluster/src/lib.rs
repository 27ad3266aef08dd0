//! midonet-cluster: the MidoNet-compatible REST API over the topology store.
//!
//! ```text
//!               clients (midonet CLI, midonetclient, curl)
//!                                  │ HTTP :8181 /midonet-api, /metrics
//!   ┌──────────────────────────────▼───────────────────────────────┐
//!   │ tasks::serve_http  (axum)                                     │
//!   │   api::Ctx  ── auth::Auth (tokens)                            │
//!   │   identity (Keystone v3, /neutron/identity) ── auth::Auth     │
//!   │   api::generic::<Kind> + api::sub  ── txn! ── db::Tx          │
//!   │   metrics::Metrics                                            │
//!   └──────────────────────────────┬───────────────────────────────┘
//!        (gRPC topology service: later, reusing `Cluster`)
//!                                  │ Arc<dyn Store>
//!                 embedded redb file │ memory │ etcd cluster
//! ```
//!
//! [`Cluster`] is the shared state (store, auth, config, metrics); [`run`]
//! opens the store and serves until `shutdown` completes. With the `test-util`
//! feature (tests only), `testing::TestCluster` starts a cluster on a free
//! port for tests of this and other crates.
//!
//! # Integrity
//!
//! Every write is one store transaction built by [`db::Tx`]: it compares the
//! `mod_revision` of every object the decision read, writes everything at
//! once, and is retried (up to [`db::MAX_ATTEMPTS`]) when a compare fails;
//! then the client gets 409. Referenced ids must exist (400 naming the
//! field); new references touch a guard key so that a concurrent delete of
//! the referenced object cannot miss them (see [`db`]). Deletes and bindings
//! find referrers through the reverse-reference index that every commit
//! keeps ([`refs`]), not by reading whole kinds. Port tunnel keys come
//! from the counter `/midonet/v1/meta/tunnel_key` in the same transaction.
//!
//! # Delete rules
//!
//! Deleting a bridge or router deletes its ports (unlinking their peers),
//! a router's routes, a bridge's DHCP subnets/hosts and MAC/ARP entries.
//! Deleting a port unlinks its peer and deletes routes through it and its
//! MAC entries. A chain, port group, IP address group, mirror or health
//! monitor still referenced gives 409 (a chain's own rules are deleted with
//! it, an address group's addresses too). A tunnel zone takes its
//! memberships along; a host must not be alive, and takes its bindings,
//! memberships and interfaces along. A load balancer with pools or VIPs, or
//! a pool with VIPs, gives 409; a pool takes its members along. The full
//! table is in [`api::kinds`].
//!
//! # Tenancy
//!
//! Admins see everything. A tenant token sees only objects whose own tenant
//! (or whose owning device's, chain's or load balancer's tenant) is its
//! tenant: others are 404, lists are filtered, creates get its tenant (a
//! different explicit `tenantId` is 403). Hosts and tunnel zones are
//! admin-only (403).

pub mod accounts;
pub mod agent_input;
pub mod api;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod host_credentials;
pub mod https;
pub mod identity;
mod lb_checker;
pub mod metrics;
pub mod neutron;
pub mod refs;
pub mod tasks;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topology_service;

use std::sync::Arc;

use midonet_store::Store;

pub use config::Config;
pub use error::{ApiError, ClusterError};
pub use tasks::{run, serve};

/// State shared by every request (and by the gRPC service, later).
pub struct Cluster {
    pub store: Arc<dyn Store>,
    pub auth: auth::Auth,
    pub config: Config,
    pub metrics: metrics::Metrics,
    /// Serializes the Neutron router writes (interfaces, gateways, floating
    /// IPs) inside this process: they replan one router from several
    /// requests, so concurrent ones would mostly conflict. Addresses are
    /// kept unique by claims (`neutron::port`), not by this lock.
    pub create_lock: tokio::sync::Mutex<()>,
    /// This process's block of tunnel keys ([`db::TunnelKeys`]).
    pub tunnel_keys: Arc<db::TunnelKeys>,
}

impl Cluster {
    /// Wraps an open store.
    pub fn new(config: Config, store: Arc<dyn Store>) -> Arc<Cluster> {
        let auth = auth::Auth::new(&config.auth);
        auth.attach_store(store.clone());
        Arc::new(Cluster {
            store,
            auth,
            config,
            metrics: metrics::Metrics::new(),
            create_lock: tokio::sync::Mutex::new(()),
            tunnel_keys: Arc::default(),
        })
    }

    /// A fresh transaction that takes tunnel keys from this process's block.
    pub fn tx(&self) -> db::Tx {
        db::Tx::with_keys(self.store.clone(), self.tunnel_keys.clone())
    }
}
