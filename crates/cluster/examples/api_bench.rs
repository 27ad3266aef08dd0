//! End-to-end benchmark of the cluster API and the store watch path.
//!
//! ```text
//! cargo run --release -p midonet-cluster --example api_bench -- \
//!     --store embedded,etcd --ports 2000 --concurrency 8 [--api midonet,neutron] \
//!     [--etcd-url etcd://127.0.0.1:2379]
//! ```
//!
//! For each backend and API it starts a cluster (in process, HTTP on
//! loopback, auth off), creates one bridge (MidoNet API) or one network
//! with a /16 subnet (Neutron API), then creates `--ports` ports on it from
//! `--concurrency` client threads (a fresh TCP connection per request, as
//! midonetclient does), and reports throughput and latency percentiles,
//! and the p50 of the last tenth of the creates (a store that grows must
//! not slow creates down). A Neutron port create also allocates an
//! address and a MAC, puts the port in the project's default security
//! group and writes its translation (bridge port, MAC/ARP/DHCP entries,
//! three chains and their rules, group membership) in the same
//! transaction.
//! Then it opens a second store on the same backend kind and measures watch
//! delivery: time from the start of a `put` to the watch event arriving
//! (one put at a time), through the `Store` trait.
//!
//! The embedded backend runs on a temp file (fsync per commit). The etcd
//! backend uses `--etcd-url`, or starts a throw-away etcd with the store
//! crate's test helper.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use midonet_cluster::testing::TestCluster;
use midonet_store::{Store, WatchEvent};

struct Args {
    stores: Vec<String>,
    apis: Vec<String>,
    ports: usize,
    concurrency: usize,
    etcd_url: Option<String>,
    watch_events: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        stores: vec!["embedded".into(), "etcd".into()],
        apis: vec!["midonet".into(), "neutron".into()],
        ports: 2000,
        concurrency: 8,
        etcd_url: None,
        watch_events: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--store" => a.stores = val().split(',').map(str::to_string).collect(),
            "--api" => a.apis = val().split(',').map(str::to_string).collect(),
            "--ports" => {
                a.ports = val().parse().unwrap_or_else(|_| usage("--ports takes a number"))
            }
            "--concurrency" => {
                a.concurrency =
                    val().parse().unwrap_or_else(|_| usage("--concurrency takes a number"))
            }
            "--etcd-url" => a.etcd_url = Some(val()),
            "--watch-events" => {
                a.watch_events =
                    val().parse().unwrap_or_else(|_| usage("--watch-events takes a number"))
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("api_bench: {msg}");
    }
    eprintln!("usage: api_bench [--store embedded,etcd,memory] [--api midonet,neutron] [--ports N] [--concurrency C] [--etcd-url etcd://h:p] [--watch-events N]");
    std::process::exit(2);
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Row {
    backend: String,
    api: String,
    ports: usize,
    concurrency: usize,
    throughput: f64,
    p50: f64,
    p99: f64,
    last_p50: f64,
    conflicts: u64,
    watch_p50: f64,
    watch_p99: f64,
    put_p50: f64,
}

/// Where to POST and what: (URI, content type, body).
fn target(base: &str, api: &str) -> (String, &'static str, String) {
    if api == "neutron" {
        let n = base.replace("/midonet-api", "/neutron/v2.0");
        // Neutron's default quota is 500 ports a project.
        ureq::put(&format!("{n}/quotas/admin"))
            .send_json(serde_json::json!({"quota": {"port": -1}}))
            .expect("lift the port quota");
        let net: serde_json::Value = ureq::post(&format!("{n}/networks"))
            .send_json(serde_json::json!({"network": {"name": "bench"}}))
            .expect("create network")
            .into_json()
            .expect("network json");
        let id = net["network"]["id"].as_str().expect("network id").to_string();
        ureq::post(&format!("{n}/subnets"))
            .send_json(serde_json::json!({"subnet": {"network_id": id, "cidr": "10.0.0.0/16", "ip_version": 4}}))
            .expect("create subnet");
        let body = serde_json::json!({"port": {"network_id": id}}).to_string();
        (format!("{n}/ports"), "application/json", body)
    } else {
        let bridge: serde_json::Value = ureq::post(&format!("{base}/bridges"))
            .send_json(serde_json::json!({"name": "bench"}))
            .expect("create bridge")
            .into_json()
            .expect("bridge json");
        let uri = bridge["ports"].as_str().expect("ports link").to_string();
        (uri, "application/vnd.org.midonet.Port-v3+json", r#"{"type":"Bridge"}"#.to_string())
    }
}

/// (ports/s, latencies sorted, p50 of the last tenth in order, conflicts).
fn bench_api(
    url: &str,
    api: &str,
    ports: usize,
    concurrency: usize,
) -> (f64, Vec<Duration>, f64, u64) {
    let c = TestCluster::start(url, false);
    let base = c.url();
    let (ports_uri, content_type, body) = target(&base, api);
    let per = ports / concurrency;
    let extra = ports % concurrency;
    let start = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..concurrency)
            .map(|i| {
                let uri = ports_uri.clone();
                let body = body.clone();
                let n = per + usize::from(i < extra);
                sc.spawn(move || {
                    let mut out = Vec::with_capacity(n);
                    for _ in 0..n {
                        // A new agent per request: a new TCP connection, as
                        // midonetclient's httplib2 does.
                        let agent = ureq::AgentBuilder::new().build();
                        let t = Instant::now();
                        let r =
                            agent.post(&uri).set("Content-Type", content_type).send_string(&body);
                        match r {
                            Ok(resp) if resp.status() == 201 => out.push(t.elapsed()),
                            Ok(resp) => panic!("port create answered {}", resp.status()),
                            Err(e) => panic!("port create failed: {e}"),
                        }
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("client thread")).collect()
    });
    let wall = start.elapsed();
    // Each thread's latencies are in order: its last tenth is the creates
    // made when the store was fullest.
    let mut last: Vec<Duration> =
        lat.chunks(per.max(1)).flat_map(|c| c[c.len() - c.len() / 10..].to_vec()).collect();
    last.sort();
    lat.sort();
    let conflicts = c.cluster().metrics.conflicts();
    c.stop();
    (ports as f64 / wall.as_secs_f64(), lat, pct(&last, 0.5), conflicts)
}

async fn bench_watch(store: Arc<dyn Store>, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let prefix = b"/bench/watch/".to_vec();
    let mut stream = store.watch(&prefix, 0).await.expect("watch");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<u8>, Instant)>();
    let reader = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let batch = item.expect("watch batch");
            let now = Instant::now();
            for ev in batch.events {
                if let WatchEvent::Put { kv, .. } = ev {
                    if tx.send((kv.key, now)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut starts: HashMap<Vec<u8>, Instant> = HashMap::new();
    let mut watch = Vec::with_capacity(n);
    let mut puts = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("/bench/watch/{i:08}").into_bytes();
        let t = Instant::now();
        starts.insert(key.clone(), t);
        store.put(&key, b"x", None).await.expect("put");
        puts.push(t.elapsed());
        // One put at a time: wait for its event before the next.
        let (k, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("watch event within 10 s")
            .expect("watch stream open");
        let s = starts.remove(&k).expect("event for a key we wrote");
        watch.push(at.duration_since(s));
    }
    reader.abort();
    watch.sort();
    puts.sort();
    (watch, puts)
}

fn main() {
    let args = parse_args();
    let mut rows = Vec::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for backend in &args.stores {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut _etcd = None;
        // (cluster store url, watch store url)
        let (api_url, watch_url) = match backend.as_str() {
            "embedded" => (
                format!("embedded:{}", dir.path().join("api.redb").display()),
                format!("embedded:{}", dir.path().join("watch.redb").display()),
            ),
            "memory" => ("memory:".to_string(), "memory:".to_string()),
            "etcd" => {
                let url = match &args.etcd_url {
                    Some(u) => u.clone(),
                    None => {
                        let server = midonet_store::testutil::EtcdServer::start()
                            .expect("start etcd (install etcd-server or pass --etcd-url)");
                        let u = server.url();
                        _etcd = Some(server);
                        u
                    }
                };
                (url.clone(), url)
            }
            other => usage(&format!("unknown store {other}")),
        };
        eprintln!("{backend}: measuring watch delivery over {} puts...", args.watch_events);
        let (watch, puts) = rt.block_on(async {
            let store = midonet_store::connect(&watch_url).await.expect("connect watch store");
            bench_watch(store, args.watch_events).await
        });
        for (i, api) in args.apis.iter().enumerate() {
            eprintln!(
                "{backend}/{api}: creating {} ports with {} clients...",
                args.ports, args.concurrency
            );
            // Each API on a fresh store: etcd keeps the first run's keys,
            // so the second gets its own file or its own key space.
            let url = match backend.as_str() {
                "embedded" => {
                    format!("embedded:{}", dir.path().join(format!("api{i}.redb")).display())
                }
                _ => api_url.clone(),
            };
            let (throughput, lat, last_p50, conflicts) =
                bench_api(&url, api, args.ports, args.concurrency);
            rows.push(Row {
                backend: backend.clone(),
                api: api.clone(),
                ports: args.ports,
                concurrency: args.concurrency,
                throughput,
                p50: pct(&lat, 0.50),
                p99: pct(&lat, 0.99),
                last_p50,
                conflicts,
                watch_p50: pct(&watch, 0.50),
                watch_p99: pct(&watch, 0.99),
                put_p50: pct(&puts, 0.50),
            });
        }
    }
    println!("| backend | API | ports | clients | port create (ports/s) | create p50 (ms) | create p99 (ms) | last tenth p50 (ms) | txn conflicts | put commit p50 (ms) | put→watch event p50 (ms) | put→watch event p99 (ms) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} |",
            r.backend,
            r.api,
            r.ports,
            r.concurrency,
            r.throughput,
            r.p50,
            r.p99,
            r.last_p50,
            r.conflicts,
            r.put_p50,
            r.watch_p50,
            r.watch_p99
        );
    }
}
