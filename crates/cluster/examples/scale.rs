//! Scale harness (issue 12, item 6): a cluster on etcd, a big topology
//! built through the REST API, and many simulated agents on the topology
//! service, in one run. A bench, not a test: `bench/scale.sh` builds it in
//! release and runs it (see bench/README.md, docs/PERFORMANCE.md).
//!
//! ```text
//!  etcd (1 or --etcd-members processes) <── midonet-cluster (its own process; agent credentials on)
//!                                              ▲ REST (HTTP/1.1)        ▲ gRPC topology service
//!  this process: writers (--concurrency threads) ┘     N agents ───────────┘ (one HTTP/2 channel each)
//! ```
//!
//! Phases, each with the cluster's and etcd's CPU seconds and the cluster's
//! RSS: API latency on the empty store; the topology build (routers,
//! bridges, bridge ports, and per bridge a router port linked to a bridge
//! port); API latency at full size; N agents (credential issued through
//! the API, RegisterHost, Subscribe with the chunked snapshot, KeepAlive
//! at TTL/3) until all hold a full snapshot; port bindings for the agents'
//! hosts through the API; change propagation (single bridge renames, each
//! timed from the write's start until the last of the N subscribers has
//! it); reconnect storms (every subscription dropped at once, reconnected
//! from revision 0, and resumed from the last revision); one real
//! `midonet-agent --datapath dummy` at that size.
//!
//! A simulated agent keeps only counters (keys, bytes, last revision), so
//! that a thousand fit in one process; each has one task and its own
//! channel (TCP connection), as real agents do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use midonet_proto::pb::{self, subscribe_response::Event};
use midonet_proto::TopologyClient;
use midonet_store::testutil::{EtcdCluster, EtcdServer};
use serde_json::{json, Value};
use tokio::sync::watch;
use tonic::transport::{ClientTlsConfig, Endpoint};

const HELP: &str = "\
scale: the control plane at size (issue 12): a cluster process on etcd, a topology built
through the REST API, N simulated agents on the gRPC topology service, and one real agent.

usage: scale [flags]
  --agents N          simulated agents (gRPC clients, one channel each)      [1000]
  --routers R         routers created                                       [1000]
  --bridges B         bridges created; each also gets a router port (on router
                      b mod R) linked to an interior bridge port, unless --no-links [10000]
  --ports P           exterior bridge ports, spread over the bridges        [100000]
  --bindings K        ports bound to each agent's host (REST host bindings) [2]
  --concurrency C     REST writer threads                                   [8]
  --changes M         single API writes timed to the last subscriber        [200]
  --latency-samples S sequential create+delete pairs for the latency figures [200]
  --etcd-members K    etcd members (real etcd processes)                    [1]
  --ttl SECS          agent session lease TTL (keepalive every TTL/3)       [10]
  --tls               TLS on the topology service (default off: plain HTTP/2)
  --no-links          no router ports / links (bridges and bridge ports only)
  --no-real-agent     skip the real midonet-agent measurement
  --quick             smoke run: 100 agents, 100 routers, 1000 bridges, 10000 ports,
                      50 changes, 50 latency samples (flags after it still apply)
  --bin-dir DIR       where midonet-cluster and midonet-agent are
                      [the directory above this example: target/<profile>]
REST auth is off (every caller is admin); agent credentials are ON (each simulated
agent's host is enrolled through POST /hosts/{id}/credential and presents it).
";

#[derive(Debug, Clone)]
struct Args {
    agents: usize,
    routers: usize,
    bridges: usize,
    ports: usize,
    bindings: usize,
    concurrency: usize,
    changes: usize,
    latency_samples: usize,
    etcd_members: usize,
    ttl: i64,
    tls: bool,
    links: bool,
    real_agent: bool,
    bin_dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        agents: 1000,
        routers: 1000,
        bridges: 10_000,
        ports: 100_000,
        bindings: 2,
        concurrency: 8,
        changes: 200,
        latency_samples: 200,
        etcd_members: 1,
        ttl: 10,
        tls: false,
        links: true,
        real_agent: true,
        bin_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || -> usize {
            let v = it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            v.parse().unwrap_or_else(|_| usage(&format!("{flag} takes a number, not `{v}`")))
        };
        match flag.as_str() {
            "--agents" => a.agents = num(),
            "--routers" => a.routers = num().max(1),
            "--bridges" => a.bridges = num().max(1),
            "--ports" => a.ports = num(),
            "--bindings" => a.bindings = num(),
            "--concurrency" => a.concurrency = num().max(1),
            "--changes" => a.changes = num(),
            "--latency-samples" => a.latency_samples = num(),
            "--etcd-members" => a.etcd_members = num().max(1),
            "--ttl" => a.ttl = num().max(3) as i64,
            "--tls" => a.tls = true,
            "--no-links" => a.links = false,
            "--no-real-agent" => a.real_agent = false,
            "--quick" => {
                a.agents = 100;
                a.routers = 100;
                a.bridges = 1000;
                a.ports = 10_000;
                a.changes = 50;
                a.latency_samples = 50;
            }
            "--bin-dir" => {
                a.bin_dir =
                    Some(it.next().unwrap_or_else(|| usage("--bin-dir needs a value")).into())
            }
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

fn usage(msg: &str) -> ! {
    eprintln!("scale: {msg}\n\n{HELP}");
    std::process::exit(2);
}

// ------------------------------------------------------------------ output

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

macro_rules! progress {
    ($($t:tt)*) => {{
        let t = START.get().map_or(0.0, |s| s.elapsed().as_secs_f64());
        eprintln!("[{t:7.1}s] {}", format!($($t)*));
    }};
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// "p50 / p99 / max" in ms of `v` (sorted here).
fn summary(v: &mut [Duration]) -> String {
    v.sort();
    format!("{:.1} / {:.1} / {:.1} ms", pct(v, 0.5), pct(v, 0.99), pct(v, 1.0))
}

// ------------------------------------------------------------------ /proc

/// Clock ticks per second of /proc/<pid>/stat (100 on Linux everywhere).
const CLK_TCK: f64 = 100.0;

/// user + system CPU seconds of a process (0 if it is gone).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / CLK_TCK
}

/// (VmRSS, VmHWM) in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// CPU of the cluster, of etcd (all members) and of this process over a phase.
struct Meter {
    t0: Instant,
    cluster: f64,
    etcd: f64,
    me: f64,
}

struct Phase {
    name: String,
    wall: f64,
    cluster_cpu: f64,
    etcd_cpu: f64,
    harness_cpu: f64,
    cluster_rss: f64,
}

struct Pids {
    cluster: u32,
    etcd: Vec<u32>,
}

impl Pids {
    fn meter(&self) -> Meter {
        Meter {
            t0: Instant::now(),
            cluster: cpu_secs(self.cluster),
            etcd: self.etcd.iter().map(|p| cpu_secs(*p)).sum(),
            me: cpu_secs(std::process::id()),
        }
    }

    fn end(&self, m: Meter, name: &str, phases: &Mutex<Vec<Phase>>) -> f64 {
        let wall = m.t0.elapsed().as_secs_f64();
        let p = Phase {
            name: name.to_string(),
            wall,
            cluster_cpu: cpu_secs(self.cluster) - m.cluster,
            etcd_cpu: self.etcd.iter().map(|p| cpu_secs(*p)).sum::<f64>() - m.etcd,
            harness_cpu: cpu_secs(std::process::id()) - m.me,
            cluster_rss: rss_mib(self.cluster).0,
        };
        progress!(
            "phase {name}: {wall:.1} s, cluster CPU {:.1} s, etcd CPU {:.1} s, cluster RSS {:.0} MiB",
            p.cluster_cpu,
            p.etcd_cpu,
            p.cluster_rss
        );
        phases.lock().expect("phases").push(p);
        wall
    }
}

// ------------------------------------------------------------------ processes

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child process killed (by its PID) on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(bin: &Path, args: &[&str], log: &Path) -> Proc {
        let f = std::fs::File::create(log).expect("log file");
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Proc { child, log: log.to_owned() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Etcd {
    One(EtcdServer),
    Many(EtcdCluster),
}

impl Etcd {
    fn url(&self) -> String {
        match self {
            Etcd::One(s) => s.url(),
            Etcd::Many(c) => c.url(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Etcd::One(s) => vec![s.pid()],
            // The cluster helper does not expose its members' PIDs: find
            // the etcd children of this process.
            Etcd::Many(_) => children_named(std::process::id(), "etcd"),
        }
    }
}

fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let comm = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')'));
        let Some((comm, rest)) = comm else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|v| v.parse::<u32>().ok());
        if comm == name && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

// ------------------------------------------------------------------ REST

struct Api {
    base: String,
}

/// Why a request failed: method, path, status and body.
type ApiFail = String;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).max_idle_connections(4).build()
}

impl Api {
    /// POST (JSON body) and the created object; retried on transport
    /// errors and 5xx (counted in `RETRIES`).
    fn post(&self, a: &ureq::Agent, path: &str, body: &Value) -> Result<Value, ApiFail> {
        self.call(a, "POST", path, Some(body)).map(|v| v.unwrap_or(Value::Null))
    }

    fn call(
        &self,
        a: &ureq::Agent,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ApiFail> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut last = String::new();
        for attempt in 0..4 {
            if attempt > 0 {
                RETRIES.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
            let req = a.request(method, &url).set("Content-Type", "application/json");
            let r = match body {
                Some(b) => req.send_string(&b.to_string()),
                None => req.call(),
            };
            match r {
                Ok(resp) => {
                    let text = resp.into_string().unwrap_or_default();
                    return Ok(serde_json::from_str(&text).ok());
                }
                Err(ureq::Error::Status(code, resp)) if code >= 500 => {
                    last = format!(
                        "{method} {path}: {code} {}",
                        resp.into_string().unwrap_or_default()
                    );
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(format!(
                        "{method} {path}: {code} {}",
                        resp.into_string().unwrap_or_default()
                    ))
                }
                Err(e) => last = format!("{method} {path}: {e}"),
            }
        }
        Err(last)
    }
}

static RETRIES: AtomicU64 = AtomicU64::new(0);

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

/// Runs `f(agent, i)` for i in 0..n on `threads` threads, with a progress
/// line every 10 s; results in order, and each call's latency.
fn parallel<T: Send>(
    label: &str,
    n: usize,
    threads: usize,
    f: impl Fn(&ureq::Agent, usize) -> T + Sync,
) -> (Vec<T>, Vec<Duration>, f64) {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let t0 = Instant::now();
    let mut out: Vec<(usize, T, Duration)> = Vec::with_capacity(n);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(10) {
                    last = Instant::now();
                    let d = done.load(Ordering::Relaxed);
                    progress!(
                        "  {label}: {d}/{n} ({:.0}/s)",
                        d as f64 / t0.elapsed().as_secs_f64()
                    );
                }
            }
        });
        let handles: Vec<_> = (0..threads.min(n.max(1)))
            .map(|_| {
                s.spawn(|| {
                    let a = agent();
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let t = Instant::now();
                        let v = f(&a, i);
                        mine.push((i, v, t.elapsed()));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().expect("writer thread"));
        }
        finished.store(true, Ordering::Relaxed);
    });
    let wall = t0.elapsed().as_secs_f64();
    out.sort_by_key(|(i, _, _)| *i);
    let lat = out.iter().map(|(_, _, d)| *d).collect();
    (out.into_iter().map(|(_, v, _)| v).collect(), lat, wall)
}

/// Sequential create + delete pairs of a bridge and of a bridge port:
/// (bridge create, bridge delete, port create, port delete) latencies.
fn latency_probe(api: &Api, samples: usize, tag: &str) -> [Vec<Duration>; 4] {
    let a = agent();
    let parent =
        id_of(&api.post(&a, "/bridges", &json!({"name": format!("lat-{tag}")})).expect("bridge"));
    let mut out: [Vec<Duration>; 4] = Default::default();
    // A failed request is counted and reported, not timed.
    let mut timed = |slot: usize, r: Result<Option<Value>, ApiFail>, t: Instant| match r {
        Ok(v) => {
            out[slot].push(t.elapsed());
            v
        }
        Err(e) => {
            if FAILURES.fetch_add(1, Ordering::Relaxed) < 5 {
                progress!("{tag} latency probe: {e}");
            }
            None
        }
    };
    for i in 0..samples {
        let t = Instant::now();
        let body = json!({"name": format!("lat-{tag}-{i}")});
        if let Some(b) = timed(0, api.call(&a, "POST", "/bridges", Some(&body)), t) {
            let t = Instant::now();
            timed(1, api.call(&a, "DELETE", &format!("/bridges/{}", id_of(&b)), None), t);
        }
        let t = Instant::now();
        let path = format!("/bridges/{parent}/ports");
        if let Some(p) = timed(2, api.call(&a, "POST", &path, Some(&json!({"type": "Bridge"}))), t)
        {
            let t = Instant::now();
            timed(3, api.call(&a, "DELETE", &format!("/ports/{}", id_of(&p)), None), t);
        }
    }
    if let Err(e) = api.call(&a, "DELETE", &format!("/bridges/{parent}"), None) {
        progress!("deleting the latency probe's bridge: {e}");
    }
    out
}

/// Requests that failed for good (after retries), where a failure is
/// reported rather than fatal.
static FAILURES: AtomicU64 = AtomicU64::new(0);

// ------------------------------------------------------------------ simulated agents

/// What the subscribers share with the driver.
struct Shared {
    n: usize,
    /// Agents holding a complete snapshot since the last reset.
    synced: AtomicUsize,
    all_synced: Mutex<Option<Instant>>,
    /// Key of the bridge the probes rename, and the probe sequence number
    /// they must carry (`"name":"probe-<seq>"`).
    probe_key: String,
    probe_seq: AtomicU64,
    probe_seen: AtomicUsize,
    probe_all: Mutex<Option<Instant>>,
    snapshot_keys: AtomicUsize,
    snapshot_bytes: AtomicUsize,
    snapshots: AtomicU64,
    deltas: AtomicU64,
    changes: AtomicU64,
    stream_errors: AtomicU64,
    keepalive_errors: AtomicU64,
    connect_errors: AtomicU64,
    registered: AtomicUsize,
    last_error: Mutex<String>,
}

impl Shared {
    fn reset_synced(&self) {
        self.synced.store(0, Ordering::SeqCst);
        *self.all_synced.lock().expect("lock") = None;
    }

    fn mark_synced(&self) {
        if self.synced.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            *self.all_synced.lock().expect("lock") = Some(Instant::now());
        }
    }

    fn error(&self, counter: &AtomicU64, e: impl std::fmt::Display) {
        counter.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("lock") = e.to_string();
    }

    fn check_probe(&self, value: &[u8]) {
        let needle = format!("\"probe-{}\"", self.probe_seq.load(Ordering::SeqCst));
        if value.windows(needle.len()).any(|w| w == needle.as_bytes())
            && self.probe_seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n
        {
            *self.probe_all.lock().expect("lock") = Some(Instant::now());
        }
    }
}

/// How a subscriber reconnects when told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storm {
    None,
    /// Subscribe from revision 0: a full snapshot.
    Full(u64),
    /// Subscribe from the last applied revision + 1 (what a real agent does).
    Resume(u64),
}

#[derive(Clone)]
struct Cred(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Cred {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert(midonet_proto::credential::METADATA_KEY, self.0.clone());
        Ok(r)
    }
}

struct AgentCfg {
    i: usize,
    uri: String,
    tls: Option<ClientTlsConfig>,
    host: String,
    bearer: String,
    ttl: i64,
}

/// One simulated agent: one task, one channel. Registers, subscribes,
/// counts what arrives, keeps its session alive; on a storm signal drops
/// the channel and starts over (keeping its session, as an agent does).
async fn sim_agent(cfg: AgentCfg, shared: Arc<Shared>, mut storm: watch::Receiver<Storm>) {
    let mut session: Option<i64> = None;
    let mut revision = 0i64;
    let mut mode = Storm::None;
    let cred = Cred(cfg.bearer.parse().expect("bearer is ascii"));
    loop {
        let mut ep = Endpoint::from_shared(cfg.uri.clone())
            .expect("uri")
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(20));
        if let Some(t) = &cfg.tls {
            ep = ep.tls_config(t.clone()).expect("tls");
        }
        let channel = match ep.connect().await {
            Ok(c) => c,
            Err(e) => {
                shared.error(&shared.connect_errors, format!("connect: {e:?}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut client = TopologyClient::with_interceptor(channel, cred.clone())
            .max_decoding_message_size(midonet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(midonet_proto::MAX_MESSAGE_BYTES);
        if let Some(s) = session {
            let r =
                client.keep_alive(pb::KeepAliveRequest { session: s, host_id: cfg.host.clone() });
            if let Err(e) = r.await {
                shared.error(&shared.keepalive_errors, format!("resume keepalive: {e}"));
                if e.code() == tonic::Code::NotFound {
                    session = None;
                }
            }
        }
        if session.is_none() {
            let r = client
                .register_host(pb::RegisterHostRequest {
                    host_id: cfg.host.clone(),
                    name: format!("scale-{}", cfg.i),
                    addresses: vec![format!("192.168.{}.{}", cfg.i / 250, cfg.i % 250 + 1)],
                    interfaces: vec![],
                    ttl_secs: cfg.ttl,
                    datapath: "dummy".into(),
                })
                .await;
            match r {
                Ok(r) => {
                    session = Some(r.into_inner().session);
                    shared.registered.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    shared.error(&shared.connect_errors, format!("register: {e}"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let Some(sess) = session else { continue };
        let from = match mode {
            Storm::Resume(_) if revision > 0 => revision + 1,
            _ => 0,
        };
        let resumed = from > 0;
        let stream = client
            .subscribe(pb::SubscribeRequest { from_revision: from, host_id: cfg.host.clone() });
        let mut stream = match stream.await {
            Ok(s) => s.into_inner(),
            Err(e) => {
                shared.error(&shared.stream_errors, format!("subscribe: {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if resumed {
            shared.mark_synced();
        }
        let period = Duration::from_secs((cfg.ttl / 3).max(1) as u64);
        // Spread the agents' keepalives over the period.
        let first =
            tokio::time::Instant::now() + period.mul_f64((cfg.i % 1000) as f64 / 1000.0 + 0.01);
        let mut ka = tokio::time::interval_at(first, period);
        let (mut keys, mut bytes) = (0usize, 0usize);
        loop {
            tokio::select! {
                biased;
                r = storm.changed() => {
                    if r.is_err() {
                        return;
                    }
                    mode = *storm.borrow_and_update();
                    break;
                }
                m = stream.message() => match m {
                    Ok(Some(m)) => match m.event {
                        Some(Event::Snapshot(s)) => {
                            keys += s.kvs.len();
                            bytes += s.kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum::<usize>();
                            revision = s.revision;
                            if !s.more {
                                shared.snapshot_keys.store(keys, Ordering::Relaxed);
                                shared.snapshot_bytes.store(bytes, Ordering::Relaxed);
                                shared.snapshots.fetch_add(1, Ordering::Relaxed);
                                (keys, bytes) = (0, 0);
                                shared.mark_synced();
                            }
                        }
                        Some(Event::Delta(d)) => {
                            revision = d.revision;
                            shared.deltas.fetch_add(1, Ordering::Relaxed);
                            shared.changes.fetch_add(d.changes.len() as u64, Ordering::Relaxed);
                            for c in &d.changes {
                                if c.key == shared.probe_key {
                                    shared.check_probe(&c.value);
                                }
                            }
                        }
                        Some(Event::Resync(_)) | None => {}
                    },
                    Ok(None) => {
                        shared.error(&shared.stream_errors, "stream ended");
                        break;
                    }
                    Err(e) => {
                        shared.error(&shared.stream_errors, format!("stream: {e}"));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                },
                _ = ka.tick() => {
                    let r = client.keep_alive(pb::KeepAliveRequest { session: sess, host_id: cfg.host.clone() }).await;
                    if let Err(e) = r {
                        shared.error(&shared.keepalive_errors, format!("keepalive: {e}"));
                        if e.code() == tonic::Code::NotFound {
                            session = None;
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Waits until `done()` or `limit`; true if done.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done()
}

// ------------------------------------------------------------------ main

struct Report {
    lines: Vec<(String, String, String)>,
}

impl Report {
    fn row(&mut self, what: &str, value: String, target: &str) {
        println!("  {what:<44} {value:<34} {target}");
        let _ = std::io::stdout().flush();
        self.lines.push((what.to_string(), value, target.to_string()));
    }
}

fn main() {
    let args = parse_args();
    START.get_or_init(Instant::now);
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("own path");
        // target/<profile>/examples/scale → target/<profile>
        exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
    });
    let cluster_bin = bin_dir.join("midonet-cluster");
    let agent_bin = bin_dir.join("midonet-agent");
    assert!(
        cluster_bin.exists(),
        "{} is missing: build it (bench/scale.sh does: cargo build --release -p midonet-cluster-bin -p midonet-agent-bin)",
        cluster_bin.display()
    );
    progress!("args: {args:?}");
    let dir = tempfile::Builder::new().prefix("midonet-scale-").tempdir().expect("tempdir");

    // ---- etcd and the cluster process
    let etcd = if args.etcd_members <= 1 {
        Etcd::One(EtcdServer::start().expect("etcd (apt package etcd-server)"))
    } else {
        Etcd::Many(EtcdCluster::start(args.etcd_members).expect("etcd cluster"))
    };
    let (api_port, grpc_port) = (free_port(), free_port());
    let mut cfg = format!(
        "listen = \"127.0.0.1:{api_port}\"\nstore = \"{}\"\ngrpc_listen = \"127.0.0.1:{grpc_port}\"\n\
         neutron_listen = \"\"\n\n[agents]\ncredentials = true\n\n[auth]\nenabled = false\n",
        etcd.url()
    );
    let mut client_tls = None;
    let mut ca_path = None;
    if args.tls {
        let pki = midonet_proto::tls::generate(&["localhost".into(), "127.0.0.1".into()])
            .expect("certificates");
        let files = pki.write(&dir.path().join("pki")).expect("write pki");
        cfg.push_str(&format!(
            "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            files.cert.display(),
            files.key.display()
        ));
        client_tls = Some(
            midonet_proto::tls::client_config(&files.ca).expect("ca").domain_name("localhost"),
        );
        ca_path = Some(files.ca.clone());
    }
    let cfg_path = dir.path().join("cluster.toml");
    std::fs::write(&cfg_path, cfg).expect("config");
    let mut cluster = Proc::spawn(
        &cluster_bin,
        &["--config", cfg_path.to_str().expect("utf-8 path")],
        &dir.path().join("cluster.log"),
    );
    let api = Api { base: format!("http://127.0.0.1:{api_port}/midonet-api") };
    let up = wait_for(Duration::from_secs(30), || {
        ureq::get(&api.base).timeout(Duration::from_millis(500)).call().is_ok()
    });
    assert!(up, "cluster did not answer; log:\n{}", cluster.tail());
    let pids = Pids { cluster: cluster.pid(), etcd: etcd.pids() };
    let grpc_uri = format!("{}://127.0.0.1:{grpc_port}", if args.tls { "https" } else { "http" });
    progress!(
        "etcd {} (pids {:?}), cluster pid {} at {} / {grpc_uri}",
        etcd.url(),
        pids.etcd,
        pids.cluster,
        api.base
    );
    let phases = Mutex::new(Vec::new());
    let mut rep = Report { lines: Vec::new() };
    let mut results: Vec<String> = Vec::new();

    // ---- API latency, empty store
    let m = pids.meter();
    let mut empty = latency_probe(&api, args.latency_samples, "empty");
    pids.end(m, "latency on the empty store", &phases);

    // ---- build
    let c = args.concurrency;
    let bm = pids.meter();
    let m = pids.meter();
    let (routers, mut lat_r, w_r) = parallel("routers", args.routers, c, |a, i| {
        id_of(
            &api.post(a, "/routers", &json!({"name": format!("r{i}"), "tenantId": "scale"}))
                .expect("router"),
        )
    });
    pids.end(m, "routers", &phases);
    let m = pids.meter();
    let (bridges, mut lat_b, w_b) = parallel("bridges", args.bridges, c, |a, i| {
        id_of(
            &api.post(a, "/bridges", &json!({"name": format!("b{i}"), "tenantId": "scale"}))
                .expect("bridge"),
        )
    });
    pids.end(m, "bridges", &phases);
    let m = pids.meter();
    let (ports, mut lat_p, w_p) = parallel("bridge ports", args.ports, c, |a, i| {
        let b = &bridges[i % bridges.len()];
        id_of(
            &api.post(a, &format!("/bridges/{b}/ports"), &json!({"type": "Bridge"})).expect("port"),
        )
    });
    pids.end(m, "bridge ports", &phases);
    let mut link_row = None;
    if args.links {
        let m = pids.meter();
        let (_, mut lat_l, w_l) = parallel("router links", args.bridges, c, |a, i| {
            let r = &routers[i % routers.len()];
            let (hi, lo) = ((i / 256) % 256, i % 256);
            let rp = id_of(
                &api.post(
                    a,
                    &format!("/routers/{r}/ports"),
                    &json!({"type": "Router", "portAddress": format!("10.{hi}.{lo}.1"),
                            "networkAddress": format!("10.{hi}.{lo}.0"), "networkLength": 24}),
                )
                .expect("router port"),
            );
            let bp = id_of(
                &api.post(a, &format!("/bridges/{}/ports", bridges[i]), &json!({"type": "Bridge"}))
                    .expect("interior port"),
            );
            api.post(a, &format!("/ports/{rp}/link"), &json!({"peerId": bp})).expect("link");
        });
        pids.end(m, "router ports + links", &phases);
        link_row = Some((summary(&mut lat_l), w_l));
    }
    let build_wall = pids.end(bm, "build (total)", &phases);
    let creates =
        args.routers + args.bridges + args.ports + if args.links { 2 * args.bridges } else { 0 };
    let links = if args.links { args.bridges } else { 0 };
    results.push(format!(
        "build: {creates} creates + {links} links in {build_wall:.1} s ({:.0} requests/s)",
        (creates + links) as f64 / build_wall
    ));

    // ---- API latency at full size
    let m = pids.meter();
    let mut full = latency_probe(&api, args.latency_samples, "full");
    pids.end(m, "latency at full size", &phases);

    // ---- agents
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let probe_bridge = bridges[0].clone();
    let shared = Arc::new(Shared {
        n: args.agents,
        synced: AtomicUsize::new(0),
        all_synced: Mutex::new(None),
        probe_key: format!("{}bridges/{probe_bridge}", midonet_proto::KEY_ROOT),
        probe_seq: AtomicU64::new(u64::MAX),
        probe_seen: AtomicUsize::new(0),
        probe_all: Mutex::new(None),
        snapshot_keys: AtomicUsize::new(0),
        snapshot_bytes: AtomicUsize::new(0),
        snapshots: AtomicU64::new(0),
        deltas: AtomicU64::new(0),
        changes: AtomicU64::new(0),
        stream_errors: AtomicU64::new(0),
        keepalive_errors: AtomicU64::new(0),
        connect_errors: AtomicU64::new(0),
        registered: AtomicUsize::new(0),
        last_error: Mutex::new(String::new()),
    });
    assert_eq!(
        midonet_model::ObjectKind::Bridge.key(&[&probe_bridge]),
        shared.probe_key,
        "the probe watches the bridge's store key"
    );
    let m = pids.meter();
    let hosts: Vec<String> = (0..args.agents).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let (tokens, mut lat_cred, _) = parallel("credentials", args.agents, c, |a, i| {
        let v = api
            .post(a, &format!("/hosts/{}/credential", hosts[i]), &json!({}))
            .expect("credential");
        v["credential"].as_str().expect("credential in answer").to_string()
    });
    pids.end(m, "credentials issued", &phases);

    let (storm_tx, storm_rx) = watch::channel(Storm::None);
    let m = pids.meter();
    let t_agents = Instant::now();
    for (i, (host, token)) in hosts.iter().zip(&tokens).enumerate() {
        let cfg = AgentCfg {
            i,
            uri: grpc_uri.clone(),
            tls: client_tls.clone(),
            host: host.clone(),
            bearer: format!("Bearer {token}"),
            ttl: args.ttl,
        };
        rt.spawn(sim_agent(cfg, shared.clone(), storm_rx.clone()));
    }
    let status = |sh: &Shared| {
        format!(
            "registered {}, synced {}/{}, errors: connect {} stream {} keepalive {}; last: {}",
            sh.registered.load(Ordering::SeqCst),
            sh.synced.load(Ordering::SeqCst),
            sh.n,
            sh.connect_errors.load(Ordering::Relaxed),
            sh.stream_errors.load(Ordering::Relaxed),
            sh.keepalive_errors.load(Ordering::Relaxed),
            sh.last_error.lock().expect("lock")
        )
    };
    let wait_synced = |limit: Duration| {
        let mut last = Instant::now();
        wait_for(limit, || {
            if last.elapsed() > Duration::from_secs(10) {
                last = Instant::now();
                progress!("  {}", status(&shared));
            }
            shared.all_synced.lock().expect("lock").is_some()
        })
    };
    let ok = wait_synced(Duration::from_secs(300));
    let initial = shared.all_synced.lock().expect("lock").map(|t| t.duration_since(t_agents));
    pids.end(m, "agents connect + initial snapshot", &phases);
    progress!("{}", status(&shared));
    let snap_keys = shared.snapshot_keys.load(Ordering::Relaxed);
    let snap_mib = shared.snapshot_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
    if !ok {
        progress!("NOT all agents synced; going on with what there is");
    }

    // ---- bindings
    let bind_row = if args.bindings > 0 && !ports.is_empty() {
        let m = pids.meter();
        let k = args.bindings;
        let n = args.agents * k;
        let (_, mut lat, w) = parallel("bindings", n, c, |a, j| {
            let (agent, slot) = (j / k, j % k);
            let port = &ports[j % ports.len()];
            api.post(
                a,
                &format!("/hosts/{}/ports", hosts[agent]),
                &json!({"portId": port, "interfaceName": format!("vm{slot}")}),
            )
            .map_err(|e| {
                if FAILURES.fetch_add(1, Ordering::Relaxed) < 5 {
                    progress!("bind failed: {e}");
                }
            })
            .is_ok()
        });
        pids.end(m, "port bindings", &phases);
        Some((summary(&mut lat), n, w))
    } else {
        None
    };

    // ---- change propagation
    let m = pids.meter();
    let a = agent();
    let mut prop = Vec::new();
    let mut missed = 0usize;
    for j in 0..args.changes {
        shared.probe_seen.store(0, Ordering::SeqCst);
        *shared.probe_all.lock().expect("lock") = None;
        shared.probe_seq.store(j as u64, Ordering::SeqCst);
        let t = Instant::now();
        api.call(
            &a,
            "PUT",
            &format!("/bridges/{probe_bridge}"),
            Some(&json!({"name": format!("probe-{j}")})),
        )
        .expect("probe write");
        let seen =
            wait_for(Duration::from_secs(10), || shared.probe_all.lock().expect("lock").is_some());
        match *shared.probe_all.lock().expect("lock") {
            Some(at) if seen => prop.push(at.duration_since(t)),
            _ => {
                missed += 1;
                progress!(
                    "probe {j}: only {}/{} subscribers saw it within 10 s",
                    shared.probe_seen.load(Ordering::SeqCst),
                    args.agents
                );
            }
        }
    }
    pids.end(m, "change propagation", &phases);

    // ---- reconnect storms
    let storm = |mode: Storm, label: &str| -> Option<Duration> {
        let m = pids.meter();
        shared.reset_synced();
        shared.probe_seen.store(0, Ordering::SeqCst);
        *shared.probe_all.lock().expect("lock") = None;
        let seq = 1_000_000 + matches!(mode, Storm::Resume(_)) as u64;
        shared.probe_seq.store(seq, Ordering::SeqCst);
        let t = Instant::now();
        storm_tx.send(mode).expect("subscribers alive");
        // A change made while they are away: a resumed subscription must
        // deliver it.
        api.call(
            &a,
            "PUT",
            &format!("/bridges/{probe_bridge}"),
            Some(&json!({"name": format!("probe-{seq}")})),
        )
        .expect("probe write");
        let ok = wait_synced(Duration::from_secs(120));
        let synced = shared.all_synced.lock().expect("lock").map(|at| at.duration_since(t));
        // From revision 0 the change arrives inside the snapshot, not as a
        // delta: only a resumed subscription is checked for it.
        let resume = matches!(mode, Storm::Resume(_));
        let seen = !resume
            || wait_for(Duration::from_secs(60), || {
                shared.probe_all.lock().expect("lock").is_some()
            });
        let probe = shared.probe_all.lock().expect("lock").map(|at| at.duration_since(t));
        pids.end(m, label, &phases);
        progress!("{}", status(&shared));
        if !ok || !seen {
            progress!("{label}: not complete (synced {ok}, change seen by all {seen})");
        }
        match mode {
            Storm::Resume(_) => probe.max(synced),
            _ => synced,
        }
    };
    let storm_full = storm(Storm::Full(1), "reconnect storm (full snapshots)");
    let storm_resume = storm(Storm::Resume(2), "reconnect storm (resume from revision)");

    // ---- one real agent
    let mut real = None;
    if args.real_agent {
        if agent_bin.exists() {
            real = Some(real_agent(
                &agent_bin,
                dir.path(),
                &api,
                grpc_port,
                ca_path.as_deref(),
                &pids,
                &phases,
            ));
        } else {
            progress!("{} missing: no real-agent figures", agent_bin.display());
        }
    }

    let cluster_rss = rss_mib(pids.cluster);
    let final_status = status(&shared);
    assert!(cluster.alive(), "the cluster died; log:\n{}", cluster.tail());
    drop(storm_tx);
    rt.shutdown_timeout(Duration::from_secs(2));

    // ---- report
    println!("\n==== scale report ====");
    println!(
        "machine: {} cores, {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_total(),
        kernel()
    );
    println!(
        "setup: etcd {} member(s) (real processes), midonet-cluster as its own process (REST auth off, \
         agent credentials on, TLS {}); {} simulated agents, one HTTP/2 channel each, in this process; \
         REST writers: {c} threads",
        args.etcd_members,
        if args.tls { "on" } else { "off" },
        args.agents
    );
    println!("topology: {} routers, {} bridges, {} bridge ports{}; snapshot {} keys, {:.1} MiB of keys+values",
        args.routers, args.bridges, args.ports,
        if args.links { format!(", {} router ports linked to {} interior bridge ports", args.bridges, args.bridges) } else { String::new() },
        snap_keys, snap_mib);
    for r in &results {
        println!("{r}");
    }
    println!();
    println!("  {:<44} {:<34} target", "figure", "value");
    rep.row(
        "routers create (p50/p99/max; rate)",
        format!("{} ; {:.0}/s", summary(&mut lat_r), args.routers as f64 / w_r),
        "",
    );
    rep.row(
        "bridges create",
        format!("{} ; {:.0}/s", summary(&mut lat_b), args.bridges as f64 / w_b),
        "",
    );
    rep.row(
        "bridge ports create",
        format!("{} ; {:.0}/s", summary(&mut lat_p), args.ports as f64 / w_p),
        "",
    );
    if let Some((s, w)) = link_row {
        rep.row(
            "router port + port + link (3 requests)",
            format!("{s} ; {:.0} links/s", args.bridges as f64 / w),
            "",
        );
    }
    for (i, what) in
        ["bridge create", "bridge delete", "port create", "port delete"].iter().enumerate()
    {
        let (e50, e99) = {
            empty[i].sort();
            (pct(&empty[i], 0.5), pct(&empty[i], 0.99))
        };
        let (f50, f99) = {
            full[i].sort();
            (pct(&full[i], 0.5), pct(&full[i], 0.99))
        };
        let verdict = if f99 <= 2.0 * e99 && f50 <= 2.0 * e50 { "MET" } else { "MISSED" };
        rep.row(
            &format!("API {what} p50/p99: empty -> full"),
            format!("{e50:.1}/{e99:.1} -> {f50:.1}/{f99:.1} ms ({:.1}x p99)", f99 / e99),
            &format!("within 2x of empty: {verdict}"),
        );
    }
    rep.row("credential issue (POST /hosts/{id}/credential)", summary(&mut lat_cred), "");
    rep.row(
        &format!("{} agents: connect+register+full snapshot", args.agents),
        initial.map_or("NOT all synced".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        "",
    );
    if let Some((s, n, w)) = bind_row {
        rep.row(&format!("port bindings ({n}, REST)"), format!("{s} ; {:.0}/s", n as f64 / w), "");
    }
    let p99 = {
        prop.sort();
        pct(&prop, 0.99)
    };
    rep.row(
        &format!("change propagation to all {} ({} writes)", args.agents, args.changes),
        format!(
            "{}{}",
            summary(&mut prop),
            if missed > 0 { format!(", {missed} missed") } else { String::new() }
        ),
        &format!("p99 <= 100 ms: {}", if p99 <= 100.0 && missed == 0 { "MET" } else { "MISSED" }),
    );
    let secs = |d: Option<Duration>| {
        d.map_or("NOT complete".into(), |d| format!("{:.2} s", d.as_secs_f64()))
    };
    let storm_ok = storm_full.is_some_and(|d| d <= Duration::from_secs(10));
    rep.row(
        "reconnect storm, full snapshots, all synced",
        secs(storm_full),
        &format!("<= 10 s: {}", if storm_ok { "MET" } else { "MISSED" }),
    );
    rep.row("reconnect storm, resume from revision", secs(storm_resume), "");
    for p in phases.lock().expect("phases").iter() {
        rep.row(
            &format!("phase: {}", p.name),
            format!(
                "{:.1} s wall; CPU cluster {:.1} s ({:.0}%), etcd {:.1} s, harness {:.1} s; cluster RSS {:.0} MiB",
                p.wall,
                p.cluster_cpu,
                100.0 * p.cluster_cpu / p.wall.max(1e-9),
                p.etcd_cpu,
                p.harness_cpu,
                p.cluster_rss
            ),
            "",
        );
    }
    rep.row(
        "cluster RSS at end / peak",
        format!("{:.0} / {:.0} MiB", cluster_rss.0, cluster_rss.1),
        "",
    );
    if let Some(r) = real {
        rep.row("real agent: start -> snapshot applied", r.synced.clone(), "");
        rep.row(
            "real agent: snapshot apply + build (its log)",
            r.build.clone(),
            &format!("<= 1 s: {}", r.build_ok),
        );
        rep.row(
            "real agent RSS after sync / peak",
            r.rss.clone(),
            &format!("<= 200 MB: {}", r.rss_ok),
        );
        rep.row(
            "real agent simulation rate",
            "not measured (no cheap way to inject packets into --datapath dummy)".into(),
            "",
        );
    }
    rep.row(
        "REST retries (5xx / transport) / failed for good",
        format!("{} / {}", RETRIES.load(Ordering::Relaxed), FAILURES.load(Ordering::Relaxed)),
        "",
    );
    rep.row("subscribers at end", final_status, "");
    drop(cluster);
    drop(etcd);
}

struct RealAgent {
    synced: String,
    build: String,
    build_ok: &'static str,
    rss: String,
    rss_ok: &'static str,
}

/// Starts `midonet-agent --datapath dummy` as a fresh enrolled host and
/// times its first snapshot.
fn real_agent(
    bin: &Path,
    dir: &Path,
    api: &Api,
    grpc_port: u16,
    ca: Option<&Path>,
    pids: &Pids,
    phases: &Mutex<Vec<Phase>>,
) -> RealAgent {
    let m = pids.meter();
    let adir = dir.join("agent");
    std::fs::create_dir_all(&adir).expect("agent dir");
    let host = uuid::Uuid::new_v4().to_string();
    let a = agent();
    let v = api.post(&a, &format!("/hosts/{host}/credential"), &json!({})).expect("credential");
    let cred = adir.join("host.credential");
    std::fs::write(&cred, v["credential"].as_str().expect("credential")).expect("write credential");
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "cluster = [\"127.0.0.1:{grpc_port}\"]\nhost_id_file = \"{}\"\ncredential_file = \"{}\"\n\
         cluster_ca = \"{}\"\ndatapath = \"dummy\"\nmetrics_listen = \"{metrics}\"\ntunnel_port = {}\n\
         flow_state_port = 0\nflow_state_file = \"off\"\n",
        adir.join("host_id").display(),
        cred.display(),
        ca.map(|p| p.display().to_string()).unwrap_or_default(),
        free_port()
    );
    let cfg_path = adir.join("agent.toml");
    std::fs::write(&cfg_path, cfg).expect("agent config");
    let t = Instant::now();
    let mut p =
        Proc::spawn(bin, &["--config", cfg_path.to_str().expect("utf-8")], &adir.join("agent.log"));
    let url = format!("http://{metrics}/metrics");
    let snapshots = || -> u64 {
        let text = ureq::get(&url)
            .timeout(Duration::from_millis(500))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        text.lines()
            .find(|l| l.contains("topology_snapshots") && !l.starts_with('#'))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let mut alive = true;
    let ok = wait_for(Duration::from_secs(120), || {
        alive = p.alive();
        !alive || snapshots() >= 1
    }) && alive;
    let synced_at = t.elapsed();
    // The metric counts a snapshot when it arrives; its view is built when
    // the agent logs `topology snapshot applied`. Wait for that line (a
    // fixed pause once read memory and the log in the middle of the apply),
    // then let the first view settle before reading memory.
    let log_path = p.log.clone();
    let applied_ms = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("topology snapshot applied"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("ms=")))
            .and_then(|v| v.parse::<f64>().ok())
    };
    if ok {
        wait_for(Duration::from_secs(120), || !p.alive() || applied_ms().is_some());
    }
    std::thread::sleep(Duration::from_secs(1));
    let (rss, hwm) = rss_mib(p.pid());
    let build_ms = applied_ms();
    if !ok {
        progress!("real agent did not sync; log:\n{}", p.tail());
    }
    drop(p);
    pids.end(m, "real agent", phases);
    // MB as the target says (10^6 bytes).
    let rss_mb = hwm * 1.048_576;
    RealAgent {
        synced: if ok {
            format!("{:.2} s", synced_at.as_secs_f64())
        } else {
            "did not sync".into()
        },
        build: build_ms.map_or("no `topology snapshot applied` line in its log".into(), |ms| {
            format!("{ms:.0} ms")
        }),
        build_ok: match build_ms {
            Some(ms) if ms <= 1000.0 => "MET",
            Some(_) => "MISSED",
            None => "?",
        },
        rss: format!("{rss:.0} / {hwm:.0} MiB"),
        rss_ok: if ok && rss_mb <= 200.0 { "MET" } else { "MISSED" },
    }
}

fn mem_total() -> String {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or("? RAM".into(), |kb| format!("{:.0} GiB RAM", kb / 1024.0 / 1024.0))
}

fn kernel() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or(String::new(), |(_, v)| v.trim().to_string());
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}; Linux {}", rel.trim())
}
