//! A cluster for tests of this and other crates.
//!
//! ```no_run
//! use midonet_cluster::testing::TestCluster;
//! let c = TestCluster::start("memory:", true);
//! let base = c.url();              // http://127.0.0.1:<port>/midonet-api
//! let token = c.admin_token();     // X-Auth-Token for an admin
//! let alice = c.token_for("alice"); // tenant-a
//! // stops when `c` is dropped
//! ```
//!
//! The cluster runs on its own thread with its own tokio runtime, so it
//! works from plain `#[test]`s and from `#[tokio::test]`s alike. It listens
//! on 127.0.0.1 on a free port.
//!
//! With auth on, [`TestCluster::start`] configures these users:
//!
//! | user | password | role |
//! |---|---|---|
//! | admin | admin | admin |
//! | alice | alice | tenant `tenant-a` |
//! | bob | bob | tenant `tenant-b` |
//!
//! [`TestCluster::start_with`] takes any [`Config`] instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Config, RoleName, UserConfig};
use crate::Cluster;

/// A running cluster; stopped (and its thread joined) on drop.
pub struct TestCluster {
    addr: SocketAddr,
    cluster: Arc<Cluster>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The users of [`TestCluster::start`] with auth on.
pub fn test_users() -> Vec<UserConfig> {
    vec![
        UserConfig::new("admin", "admin", RoleName::Admin, None),
        UserConfig::new("alice", "alice", RoleName::Tenant, Some("tenant-a")),
        UserConfig::new("bob", "bob", RoleName::Tenant, Some("tenant-b")),
    ]
}

impl TestCluster {
    /// Starts a cluster on `store_url` (`memory:`, `embedded:/path`,
    /// `etcd://...`), with or without auth. Panics if it cannot start: this
    /// is test code.
    pub fn start(store_url: &str, auth: bool) -> TestCluster {
        let mut cfg = Config { store: store_url.to_string(), ..Config::default() };
        cfg.auth.enabled = auth;
        cfg.auth.users = test_users();
        Self::start_with(cfg)
    }

    /// Starts a cluster with a full config; `listen` is replaced by
    /// 127.0.0.1:0.
    pub fn start_with(mut cfg: Config) -> TestCluster {
        cfg.listen = "127.0.0.1:0".parse().expect("literal address");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-cluster".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("test cluster runtime");
                rt.block_on(async move {
                    let store = match midonet_store::connect(&cfg.store).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("store {}: {e:#?}", cfg.store)));
                            return;
                        }
                    };
                    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("bind: {e}")));
                            return;
                        }
                    };
                    let addr = listener.local_addr().expect("bound listener has an address");
                    let cluster = Cluster::new(cfg, store);
                    // Tokens valid on every replica over the same store.
                    let follower = match crate::tasks::share_tokens(&cluster).await {
                        Ok(f) => f,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("token key: {e}")));
                            return;
                        }
                    };
                    crate::tasks::build_refs_index(&cluster.store).await;
                    if let Err(e) = crate::tasks::build_neutron_indexes(&cluster.store).await {
                        let _ = ready_tx.send(Err(format!("Neutron indexes: {e:#?}")));
                        return;
                    }
                    let _ = ready_tx.send(Ok((addr, cluster.clone())));
                    let stop = async {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) = crate::serve(listener, cluster, stop).await {
                        eprintln!("test cluster stopped with an error: {e}");
                    }
                    follower.abort();
                });
            })
            .expect("spawn test cluster thread");
        let (addr, cluster) = match ready_rx.recv() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("test cluster failed to start: {e}"),
            Err(_) => panic!("test cluster thread died while starting"),
        };
        TestCluster { addr, cluster, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// `http://127.0.0.1:<port>/midonet-api`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, crate::api::ctx::API_PREFIX)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A fresh admin token (any token works when auth is off).
    pub fn admin_token(&self) -> String {
        self.token_for("admin")
    }

    /// A fresh token for a configured user. Panics for unknown users.
    pub fn token_for(&self, user: &str) -> String {
        self.cluster
            .auth
            .token_for(user)
            .unwrap_or_else(|| panic!("no user `{user}` in the test config"))
    }

    /// The shared state (store, metrics, ...), for white-box checks.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The cluster's whole `tasks::run` (REST, gRPC and, when configured, Neutron
/// listeners, with TLS if the config asks) on free ports; stopped on drop.
pub struct ServedCluster {
    /// The REST API's port.
    pub api: u16,
    /// The agents' gRPC port.
    pub grpc: u16,
    /// The Neutron API's port.
    pub neutron: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), crate::error::ClusterError>>>,
}

impl ServedCluster {
    /// Runs the cluster with the config `make(api, grpc, neutron)` builds, on
    /// ports that were free a moment before. Another test may bind one of
    /// them first: the cluster then stops with a bind error, and it is started
    /// again on fresh ports (up to five times) instead of leaving the caller
    /// to wait for an answer that cannot come. Returns once every configured
    /// listener accepts connections.
    pub fn start(make: impl Fn(u16, u16, u16) -> Config) -> ServedCluster {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        };
        for attempt in 1..=5 {
            let (api, grpc, neutron) = (free(), free(), free());
            let cfg = make(api, grpc, neutron);
            let mut ports = vec![cfg.listen, cfg.grpc_listen];
            ports.extend(cfg.neutron_listen.parse::<SocketAddr>().ok());
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().expect("runtime");
                rt.block_on(crate::tasks::run(cfg, async move {
                    let _ = stop_rx.await;
                }))
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let listening = |a: &SocketAddr| {
                std::net::TcpStream::connect_timeout(a, std::time::Duration::from_millis(200))
                    .is_ok()
            };
            while !thread.is_finished() && !ports.iter().all(listening) {
                assert!(std::time::Instant::now() < deadline, "the cluster did not listen in 20 s");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !thread.is_finished() {
                return ServedCluster {
                    api,
                    grpc,
                    neutron,
                    stop: Some(stop_tx),
                    thread: Some(thread),
                };
            }
            match thread.join().expect("cluster thread") {
                Err(e @ crate::error::ClusterError::Bind { .. }) if attempt < 5 => {
                    eprintln!("the cluster could not bind ({e}); again on fresh ports");
                }
                other => panic!("the cluster stopped before it listened: {other:?}"),
            }
        }
        unreachable!("the fifth attempt returns or panics")
    }

    /// [`Self::start`] on a memory store with auth off and the REST API
    /// (and, with `neutron`, the Neutron API) served over HTTPS with this
    /// certificate and key.
    pub fn start_https(cert: &std::path::Path, key: &std::path::Path, neutron: bool) -> Self {
        Self::start(|api, grpc, neutron_port| {
            let mut cfg = Config {
                listen: SocketAddr::from(([127, 0, 0, 1], api)),
                grpc_listen: SocketAddr::from(([127, 0, 0, 1], grpc)),
                neutron_listen: if neutron {
                    format!("127.0.0.1:{neutron_port}")
                } else {
                    String::new()
                },
                store: "memory:".into(),
                ..Config::default()
            };
            cfg.auth.enabled = false;
            cfg.api_tls.cert = cert.display().to_string();
            cfg.api_tls.key = key.display().to_string();
            cfg
        })
    }

    /// Stops the cluster; panics if it did not stop cleanly.
    pub fn stop(mut self) {
        if let Some(r) = self.shutdown() {
            r.expect("cluster thread").expect("a clean stop");
        }
    }

    /// Tells the cluster to stop and waits for its thread's result (`None`
    /// once already stopped).
    fn shutdown(&mut self) -> Option<std::thread::Result<Result<(), crate::error::ClusterError>>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread.take().map(JoinHandle::join)
    }
}

impl Drop for ServedCluster {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
