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

/// The topology service on a memory store, served from the current runtime.
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
        let task = tokio::spawn(async move {
            let _ = topology_service::serve(s, listener, async move {
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
