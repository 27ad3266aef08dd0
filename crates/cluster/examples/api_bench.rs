//! End-to-end benchmark of the cluster API and the store watch path.
//!
//! ```text
//! cargo run --release -p midonet-cluster --example api_bench -- \
//!     --store embedded,etcd --ports 2000 --concurrency 8 [--etcd-url etcd://127.0.0.1:2379]
//! ```
//!
//! For each backend it starts a cluster (in process, HTTP on loopback, auth
//! off), creates one bridge, then creates `--ports` ports on it from
//! `--concurrency` client threads (a fresh TCP connection per request, as
//! midonetclient does), and reports throughput and latency percentiles.
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
    ports: usize,
    concurrency: usize,
    etcd_url: Option<String>,
    watch_events: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        stores: vec!["embedded".into(), "etcd".into()],
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
    eprintln!("usage: api_bench [--store embedded,etcd,memory] [--ports N] [--concurrency C] [--etcd-url etcd://h:p] [--watch-events N]");
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
    ports: usize,
    concurrency: usize,
    throughput: f64,
    p50: f64,
    p99: f64,
    conflicts: u64,
    watch_p50: f64,
    watch_p99: f64,
    put_p50: f64,
}

fn bench_api(url: &str, ports: usize, concurrency: usize) -> (f64, Vec<Duration>, u64) {
    let c = TestCluster::start(url, false);
    let base = c.url();
    let bridge: serde_json::Value = ureq::post(&format!("{base}/bridges"))
        .send_json(serde_json::json!({"name": "bench"}))
        .expect("create bridge")
        .into_json()
        .expect("bridge json");
    let ports_uri = bridge["ports"].as_str().expect("ports link").to_string();
    let per = ports / concurrency;
    let extra = ports % concurrency;
    let start = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..concurrency)
            .map(|i| {
                let uri = ports_uri.clone();
                let n = per + usize::from(i < extra);
                sc.spawn(move || {
                    let mut out = Vec::with_capacity(n);
                    for _ in 0..n {
                        // A new agent per request: a new TCP connection, as
                        // midonetclient's httplib2 does.
                        let agent = ureq::AgentBuilder::new().build();
                        let t = Instant::now();
                        let r = agent
                            .post(&uri)
                            .set("Content-Type", "application/vnd.org.midonet.Port-v3+json")
                            .send_string(r#"{"type":"Bridge"}"#);
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
    lat.sort();
    let conflicts = c.cluster().metrics.conflicts();
    c.stop();
    (ports as f64 / wall.as_secs_f64(), lat, conflicts)
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
        eprintln!("{backend}: creating {} ports with {} clients...", args.ports, args.concurrency);
        let (throughput, lat, conflicts) = bench_api(&api_url, args.ports, args.concurrency);
        eprintln!("{backend}: measuring watch delivery over {} puts...", args.watch_events);
        let (watch, puts) = rt.block_on(async {
            let store = midonet_store::connect(&watch_url).await.expect("connect watch store");
            bench_watch(store, args.watch_events).await
        });
        rows.push(Row {
            backend: backend.clone(),
            ports: args.ports,
            concurrency: args.concurrency,
            throughput,
            p50: pct(&lat, 0.50),
            p99: pct(&lat, 0.99),
            conflicts,
            watch_p50: pct(&watch, 0.50),
            watch_p99: pct(&watch, 0.99),
            put_p50: pct(&puts, 0.50),
        });
    }
    println!("| backend | ports | clients | port create (ports/s) | create p50 (ms) | create p99 (ms) | txn conflicts | put commit p50 (ms) | put→watch event p50 (ms) | put→watch event p99 (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} |",
            r.backend,
            r.ports,
            r.concurrency,
            r.throughput,
            r.p50,
            r.p99,
            r.conflicts,
            r.put_p50,
            r.watch_p50,
            r.watch_p99
        );
    }
}
