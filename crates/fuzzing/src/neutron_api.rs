//! `neutron_api`: Neutron API requests (method, path, JSON body or query)
//! through the real handlers (`cluster::neutron::app`) over a memory store
//! holding a small cloud: an external network with a subnet, a tenant
//! network with a subnet and a port, a router with its gateway, a security
//! group.
//!
//! ```text
//!  [op (1)] [body]     op = OPS[op % len]: (method, path); for GET the
//!                      body is the query string
//! ```
//!
//! `{net}`, `{subnet}`, `{ext}`, `{ext_subnet}`, `{port}`, `{router}` and
//! `{sg}` in the path or body become the fixture's ids, so seeds can name
//! real objects.
//!
//! What must hold: never a 5xx; an error is a `NeutronError` body with a
//! type and a message; a refused write (4xx) changes nothing in the store;
//! a success answers JSON (or 204 with nothing).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use http::{Method, Request};
use midonet_store::{Txn, TxnOp};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The operations an input picks from.
pub const OPS: &[(&str, &str)] = &[
    ("POST", "/v2.0/networks"),
    ("PUT", "/v2.0/networks/{net}"),
    ("POST", "/v2.0/subnets"),
    ("PUT", "/v2.0/subnets/{subnet}"),
    ("POST", "/v2.0/ports"),
    ("PUT", "/v2.0/ports/{port}"),
    ("POST", "/v2.0/routers"),
    ("PUT", "/v2.0/routers/{router}"),
    ("PUT", "/v2.0/routers/{router}/add_router_interface"),
    ("PUT", "/v2.0/routers/{router}/remove_router_interface"),
    ("POST", "/v2.0/floatingips"),
    ("POST", "/v2.0/security-groups"),
    ("PUT", "/v2.0/security-groups/{sg}"),
    ("POST", "/v2.0/security-group-rules"),
    ("PUT", "/v2.0/quotas/{project}"),
    ("GET", "/v2.0/networks"),
    ("GET", "/v2.0/ports"),
    ("DELETE", "/v2.0/subnets/{subnet}"),
    ("DELETE", "/v2.0/networks/{net}"),
];

type App = axum::Router;

async fn call(app: &App, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header("content-type", "application/json")
        .header("x-auth-token", "fuzz")
        .body(Body::from(body))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.expect("body");
    (status, bytes.to_vec())
}

async fn create(app: &App, path: &str, body: Value, what: &str) -> String {
    let (s, b) = call(app, "POST", path, body.to_string().into_bytes()).await;
    assert_eq!(s, 201, "fixture {path}: {}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).expect("json");
    v[what]["id"].as_str().expect("id").to_string()
}

/// The small cloud, built once through the handlers: the placeholders'
/// values and every key it wrote. Each input gets a fresh store loaded
/// with these keys in one transaction, which costs a fraction of building
/// the cloud again through seven requests.
struct Fixture {
    ids: Vec<(&'static str, String)>,
    kvs: Vec<(Vec<u8>, Vec<u8>)>,
    /// [`dump`] of a store fresh from [`Fixture::store`]: what every
    /// input's store holds before its request, taken once.
    loaded: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Fixture {
    async fn build() -> Fixture {
        let store = midonet_store::connect("memory:").await.expect("memory store");
        let app = app(store.clone());
        let ext_net = json!({"network": {"name": "ext", "router:external": true}});
        let ext = create(&app, "/v2.0/networks", ext_net, "network").await;
        let ext_sub =
            json!({"subnet": {"network_id": ext, "cidr": "172.24.4.0/24", "ip_version": 4}});
        let ext_subnet = create(&app, "/v2.0/subnets", ext_sub, "subnet").await;
        let net =
            create(&app, "/v2.0/networks", json!({"network": {"name": "n"}}), "network").await;
        let sub = json!({"subnet": {"network_id": net, "cidr": "10.0.0.0/24", "ip_version": 4}});
        let subnet = create(&app, "/v2.0/subnets", sub, "subnet").await;
        let port = create(&app, "/v2.0/ports", json!({"port": {"network_id": net}}), "port").await;
        let gw = json!({"router": {"name": "r", "external_gateway_info": {"network_id": ext}}});
        let router = create(&app, "/v2.0/routers", gw, "router").await;
        let sg = json!({"security_group": {"name": "sg"}});
        let sg = create(&app, "/v2.0/security-groups", sg, "security_group").await;
        let ids = vec![
            ("{net}", net),
            ("{subnet}", subnet),
            ("{ext}", ext),
            ("{ext_subnet}", ext_subnet),
            ("{port}", port),
            ("{router}", router),
            ("{sg}", sg),
            ("{project}", "admin".to_string()),
        ];
        let kvs = store.range(b"/").await.expect("range").kvs;
        let kvs = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        let mut fx = Fixture { ids, kvs, loaded: BTreeMap::new() };
        fx.loaded = dump(&fx.store().await).await;
        fx
    }

    /// A fresh memory store holding the cloud.
    async fn store(&self) -> Arc<dyn midonet_store::Store> {
        let store = midonet_store::connect("memory:").await.expect("memory store");
        let load = self.kvs.iter().map(|(k, v)| TxnOp::put(k.clone(), v.clone()));
        store.txn(Txn::new().and_then(load)).await.expect("load the fixture");
        store
    }

    fn fill(&self, s: &str) -> String {
        self.ids.iter().fold(s.to_string(), |s, (name, id)| s.replace(name, id))
    }
}

/// The Neutron app of a cluster without authentication over `store`.
fn app(store: Arc<dyn midonet_store::Store>) -> App {
    let mut cfg = midonet_cluster::Config::default();
    cfg.auth.enabled = false;
    midonet_cluster::neutron::app(midonet_cluster::Cluster::new(cfg, store))
}

thread_local! {
    /// One runtime per thread for every input: its blocking pool's threads
    /// (the store's) are reused instead of started again each time.
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| RUNTIME.with(|rt| rt.block_on(Fixture::build())))
}

async fn dump(store: &Arc<dyn midonet_store::Store>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let r = store.range(b"/").await.expect("range");
    // Guard keys carry a random nonce per write: compared by presence.
    r.kvs
        .into_iter()
        .map(|kv| {
            let v =
                if kv.key.starts_with(b"/midonet/v1/meta/guard/") { Vec::new() } else { kv.value };
            (kv.key, v)
        })
        .collect()
}

pub fn neutron_api(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let (method, path) = OPS[usize::from(sel) % OPS.len()];
    let fx = fixture();
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let store = fx.store().await;
            let app = app(store.clone());
            let text = String::from_utf8_lossy(body);
            let (uri, payload) = if method == "GET" {
                // The body is the query: keep it a valid URI.
                let q: String = fx
                    .fill(&text)
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"=&_-.:".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                (format!("{path}?{q}"), Vec::new())
            } else if std::str::from_utf8(body).is_ok() {
                (fx.fill(path), fx.fill(&text).into_bytes())
            } else {
                (fx.fill(path), body.to_vec())
            };
            let (status, out) = call(&app, method, &uri, payload).await;
            let shown = String::from_utf8_lossy(&out);
            assert!(status < 500, "{method} {uri}: {status} {shown}");
            if status >= 400 {
                let v: Value = serde_json::from_slice(&out)
                    .unwrap_or_else(|_| panic!("error body is JSON: {shown}"));
                let e = &v["NeutronError"];
                assert!(e["type"].as_str().is_some_and(|t| !t.is_empty()), "error type: {shown}");
                assert!(
                    e["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "error message: {shown}"
                );
                assert!(
                    dump(&store).await == fx.loaded,
                    "{method} {uri} answered {status} but wrote"
                );
            } else if status != 204 {
                serde_json::from_slice::<Value>(&out)
                    .unwrap_or_else(|_| panic!("success body is JSON: {shown}"));
            }
        })
    });
}
