//! Test fixtures shared by the agent's integration tests: an in-process
//! topology service on a `memory:` store (the cluster's real service code,
//! not a mock), and topology builders that write model objects straight into
//! the store the way the cluster's REST API would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_model::topology::Stored;
use midonet_model::*;
use midonet_store::Store;

pub use midonet_cluster::topology_service;

pub mod env;
pub mod neutron;

/// One private PKI for the whole test process: its server certificate
/// names every address the tests' clusters listen on, so a cluster served
/// again (a restart) presents a certificate the agents already trust.
pub fn pki() -> &'static midonet_proto::tls::PkiFiles {
    static PKI: std::sync::OnceLock<(tempfile::TempDir, midonet_proto::tls::PkiFiles)> =
        std::sync::OnceLock::new();
    &PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let names: Vec<String> =
            ["127.0.0.1", "localhost", "10.77.0.254", "10.78.0.254"].map(String::from).into();
        let files = midonet_proto::tls::generate(&names)
            .expect("certificates")
            .write(dir.path())
            .expect("write pki");
        (dir, files)
    })
    .1
}

/// The topology service on a memory store, served from the current runtime,
/// as in production: TLS, and a host credential asked on every call.
pub struct Cluster {
    pub store: Arc<dyn Store>,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let store = midonet_store::connect("memory:").await.expect("memory store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Cluster::serve(store, listener)
    }

    /// Serves `store` on an already bound listener (possibly inside a netns).
    pub fn serve(store: Arc<dyn Store>, listener: tokio::net::TcpListener) -> Cluster {
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = store.clone();
        let pki = pki();
        let opts = topology_service::ServeOptions {
            auth: topology_service::AgentAuth::Credentials,
            tls: Some(midonet_proto::tls::server_config(&pki.cert, &pki.key).expect("tls")),
            ..Default::default()
        };
        let task = tokio::spawn(async move {
            let _ = topology_service::serve(s, listener, opts, async move {
                let _ = rx.await;
            })
            .await;
        });
        Cluster { store, addr, stop: Some(tx), task: Some(task) }
    }

    /// Stops serving (the store stays); streams end.
    pub async fn pause(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// Serves again on the same address.
    pub async fn resume(&mut self) {
        let listener = bind_retry(self.addr).await;
        let Cluster { stop, task, .. } = Cluster::serve(self.store.clone(), listener);
        self.stop = stop;
        self.task = task;
    }

    /// Enrolls `host` and writes its credential to `dir/host.credential`.
    pub async fn enroll(&self, host: HostId, dir: &std::path::Path) -> std::path::PathBuf {
        let token =
            midonet_cluster::host_credentials::issue(&self.store, host).await.expect("enroll");
        let path = dir.join("host.credential");
        std::fs::write(&path, format!("{}\n", token.encode())).expect("credential file");
        path
    }

    pub async fn put<T: Stored>(&self, obj: &T) -> i64 {
        self.store
            .put(obj.store_key().as_bytes(), &serde_json::to_vec(obj).expect("json"), None)
            .await
            .expect("put")
    }

    pub async fn delete<T: Stored>(&self, obj: &T) -> i64 {
        self.store.delete(obj.store_key().as_bytes()).await.expect("delete").revision
    }

    pub async fn revision(&self) -> i64 {
        self.store.current_revision().await.expect("revision")
    }

    pub async fn exists(&self, key: &str) -> bool {
        self.store.get(key.as_bytes()).await.expect("get").is_some()
    }
}

async fn bind_retry(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("rebinding {addr}: {e}"),
        }
    }
}

/// Polls `f` until it is true or `timeout` passes; returns the time taken.
pub async fn wait_for(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f().await {
            return t0.elapsed();
        }
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn bridge(name: &str) -> Bridge {
    Bridge { id: BridgeId::random(), name: name.into(), admin_state_up: true, ..Default::default() }
}

pub fn bridge_port(b: &Bridge, key: u32) -> Port {
    Port {
        id: PortId::random(),
        port_type: PortType::Bridge,
        device_id: b.id.cast(),
        admin_state_up: true,
        tunnel_key: key,
        ..Default::default()
    }
}

pub fn bind(p: &Port, host: HostId, ifname: &str) -> Port {
    Port { host_id: Some(host), interface_name: Some(ifname.into()), ..p.clone() }
}
