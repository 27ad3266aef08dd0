//! The two-host lab of the system tests: network namespaces as hosts on
//! an underlay, one `midonet-agent` process per host, VMs as namespaces
//! with veths (see `tests/system.rs` for the picture).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use midonet_model::topology::Stored;
use midonet_model::*;
use midonet_testkit::{ns_exec, ns_output, Lab, Vm, VmSpec};

use super::Cluster;

/// One lab at a time: two agents per lab already load the two cores.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub const UNDERLAY_MTU: u32 = 65000;

pub fn prerequisites(test: &str) -> bool {
    midonet_testkit::skip::netns_or_skip(&format!("agent::{test}"), &["ip", "ping"])
}

/// Path of the `midonet-agent` binary, built once per test process.
pub fn agent_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(midonet_testkit::bins::agent).clone()
}

/// Runs `f` on a thread inside the namespace `ns` (sockets it opens stay
/// in that namespace).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        midonet_datapath::sys::enter_netns(&ns).expect("enter netns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// Like [`in_netns`] but returns at once with the thread's handle.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        midonet_datapath::sys::enter_netns(&ns).expect("enter netns");
        f()
    })
}

/// Sends a numbered UDP datagram from `from` to `to` every millisecond,
/// applies `change` once the stream is steady, and measures how long after
/// the change the stream stopped (`stops`) or came back (`!stops`):
///
/// * stop: the send time of the first datagram after the last one that
///   arrived, minus the change time (an upper bound on enforcement);
/// * restore: the arrival time of the first datagram sent after the
///   change that arrived, minus the change time.
pub fn udp_cutover(from: &Vm, to: &Vm, stops: bool, change: impl FnOnce()) -> Duration {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let port = 9999u16;
    let rx = {
        let stop = stop.clone();
        spawn_in_netns(&to.ns, move || {
            let s = std::net::UdpSocket::bind(("0.0.0.0", port)).expect("udp bind");
            s.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
            let mut got: Vec<(u64, Instant)> = Vec::new();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = s.recv(&mut buf) {
                    if n >= 8 {
                        got.push((
                            u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")),
                            Instant::now(),
                        ));
                    }
                }
            }
            got
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let tx = {
        let stop = stop.clone();
        let dst = std::net::SocketAddr::from((to.ip, port));
        spawn_in_netns(&from.ns, move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp bind");
            let mut sent: Vec<Instant> = Vec::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = s.send_to(&seq.to_be_bytes(), dst);
                sent.push(Instant::now());
                seq += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    let t0 = Instant::now();
    change();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let sent = tx.join().expect("sender");
    let got = rx.join().expect("receiver");
    assert!(!got.is_empty(), "no probe datagram arrived at all");
    if stops {
        let last = got.iter().map(|(s, _)| *s).max().expect("some arrived") as usize;
        assert!(last + 50 < sent.len(), "traffic did not stop (last {last} of {})", sent.len());
        sent[last + 1].saturating_duration_since(t0)
    } else {
        let first = got
            .iter()
            .filter(|(s, _)| sent[*s as usize] >= t0)
            .min_by_key(|(s, _)| *s)
            .expect("traffic did not come back");
        first.1.saturating_duration_since(t0)
    }
}

/// Fills `chunk` from the xorshift state `x`: incompressible,
/// reproducible, cheap test payload.
pub fn fill_random(chunk: &mut [u8], x: &mut u64) {
    for w in chunk.chunks_exact_mut(8) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
}

/// Streams `size` pseudo-random bytes over TCP from `from` to `to` and
/// checks the SHA-256 on both ends; returns the transfer time.
pub fn tcp_transfer(from: &Vm, to: &Vm, size: usize) -> Duration {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let listener =
        in_netns(&to.ns, || std::net::TcpListener::bind("0.0.0.0:5202").expect("tcp bind"));
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0usize;
        loop {
            let k = c.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k;
        }
        (n, h.finalize().to_vec())
    });
    let dst = std::net::SocketAddr::from((to.ip, 5202));
    let t0 = Instant::now();
    let (sent_hash, sent) = in_netns(&from.ns, move || {
        let mut c =
            std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
        let mut h = Sha256::new();
        // xorshift: incompressible, reproducible, cheap.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut chunk = vec![0u8; 256 * 1024];
        let mut left = size;
        while left > 0 {
            fill_random(&mut chunk, &mut x);
            let k = left.min(chunk.len());
            c.write_all(&chunk[..k]).expect("write");
            h.update(&chunk[..k]);
            left -= k;
        }
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        (h.finalize().to_vec(), size)
    });
    let (got, got_hash) = server.join().expect("server");
    let took = t0.elapsed();
    assert_eq!(got, sent, "bytes received");
    assert_eq!(got_hash, sent_hash, "SHA-256 of the stream");
    took
}

pub struct Host {
    pub ns: String,
    pub id: HostId,
    #[allow(dead_code)]
    pub underlay: Ipv4Addr,
    pub dir: tempfile::TempDir,
    pub pid: Option<u32>,
}

pub struct Env {
    pub lab: Lab,
    pub rt: tokio::runtime::Runtime,
    pub cluster: Cluster,
    pub hosts: Vec<Host>,
    pub tz: TunnelZoneId,
    pub next_key: u32,
    /// The datapath provider the agents of this lab run (the first host's,
    /// in a lab of mixed providers).
    pub provider: Provider,
    /// Each host's provider.
    pub providers: Vec<Provider>,
    /// Agent TOML written to each host's `agent.toml` (empty: none).
    pub config: String,
    /// The store revision of the test's last `put` or `delete`.
    pub written: std::cell::Cell<i64>,
    pub _guard: std::sync::MutexGuard<'static, ()>,
}

/// A datapath provider the agents are told to run (`--datapath`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Provider {
    Ebpf,
    Userspace,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Ebpf => "ebpf",
            Provider::Userspace => "userspace",
        }
    }
}

impl Env {
    pub fn new(provider: Provider) -> Env {
        Env::with_config(provider, "")
    }

    /// Agents started with `config` (agent TOML) as their config file.
    pub fn with_config(provider: Provider, config: &str) -> Env {
        Env::with_hosts(provider, config, 2)
    }

    /// `n` hosts (h1 = 10.77.0.1, h2 = 10.77.0.2, …), one agent each.
    pub fn with_hosts(provider: Provider, config: &str, n: usize) -> Env {
        Env::mixed(&vec![provider; n], config)
    }

    /// One host per entry of `providers`, its agent running that provider.
    pub fn mixed(providers: &[Provider], config: &str) -> Env {
        let n = providers.len();
        assert!((1..=8).contains(&n), "1..=8 hosts");
        let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let bin = agent_binary();
        let mut lab = Lab::new("mag").expect("lab");
        let names: Vec<String> =
            (1..=n).map(|i| lab.add_host(&format!("h{i}")).expect("host")).collect();
        let ifs: Vec<(String, String)> =
            (1..=n).map(|i| (format!("u{i}"), format!("10.77.0.{i}/24"))).collect();
        let spec: Vec<(&str, &str, &str)> = names
            .iter()
            .zip(&ifs)
            .map(|(h, (u, c))| (h.as_str(), u.as_str(), c.as_str()))
            .collect();
        lab.add_underlay(&spec, UNDERLAY_MTU).expect("underlay");
        for h in &names {
            ns_exec(h, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).expect("sysctl");
        }
        let ul = lab.name("ul").expect("ul");
        let ulbr = lab.name("ulbr").expect("ulbr");
        ns_exec(&ul, &["ip", "addr", "add", "10.77.0.254/24", "dev", &ulbr])
            .expect("cluster address");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let std_listener = in_netns(&ul, || {
            let l = std::net::TcpListener::bind("10.77.0.254:0").expect("bind in underlay");
            l.set_nonblocking(true).expect("nonblocking");
            l
        });
        let cluster = rt.block_on(async {
            let store = midonet_store::connect("memory:").await.expect("store");
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
            Cluster::serve(store, listener)
        });
        let tz = TunnelZone { id: TunnelZoneId::random(), name: "tz".into(), ..Default::default() };
        rt.block_on(cluster.put(&tz));
        let mut env = Env {
            lab,
            rt,
            cluster,
            hosts: Vec::new(),
            tz: tz.id,
            next_key: 100,
            provider: providers[0],
            providers: providers.to_vec(),
            config: config.to_owned(),
            written: std::cell::Cell::new(0),
            _guard: guard,
        };
        for (i, ns) in names.into_iter().enumerate() {
            let ip = Ipv4Addr::new(10, 77, 0, i as u8 + 1);
            let id = HostId::random();
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("host_id"), format!("{id}\n")).expect("host id");
            env.rt.block_on(env.cluster.enroll(id, dir.path()));
            env.put(&TunnelZoneHost { tunnel_zone_id: env.tz, host_id: id, ip_address: Some(ip) });
            env.hosts.push(Host { ns, id, underlay: ip, dir, pid: None });
        }
        // The ebpf datapath pins into this bpffs; mounted here, in the test's
        // mount namespace, it is shared with the agents' (ip netns exec
        // makes private ones), so their kernel state outlives them.
        midonet_datapath::ebpf::loader::ensure_bpffs().expect("bpffs for the ebpf datapath");
        for i in 0..env.hosts.len() {
            env.start_agent(i, &bin);
        }
        env
    }

    pub fn start_agent(&mut self, i: usize, bin: &Path) {
        let h = &self.hosts[i];
        let log = h.dir.path().join("agent.log");
        let provider = self.providers[i];
        let mut dp = format!(" --datapath {}", provider.name());
        if !self.config.is_empty() {
            let file = h.dir.path().join("agent.toml");
            std::fs::write(&file, &self.config).expect("agent config");
            dp.push_str(&format!(" --config {}", file.display()));
        }
        let cmd = format!(
            "exec {} --cluster 10.77.0.254:{} --host-id-file {} --credential-file {} --cluster-ca {} --metrics-listen 127.0.0.1:7300{dp} >>{} 2>&1",
            bin.display(),
            self.cluster.addr.port(),
            h.dir.path().join("host_id").display(),
            h.dir.path().join("host.credential").display(),
            super::pki().ca.display(),
            log.display()
        );
        let pid = self
            .lab
            .spawn(&h.ns, &["env", "RUST_LOG=info,midonet_agent=debug", "sh", "-c", &cmd])
            .expect("spawn agent");
        self.hosts[i].pid = Some(pid);
        let alive = midonet_proto::keys::host_alive(&self.hosts[i].id.to_string());
        self.wait("agent registered", Duration::from_secs(20), |e| e.exists(&alive));
        // The agent falls back to userspace when BPF cannot load: a test
        // asking for ebpf must not pass on the fallback.
        let series = format!("midonet_agent_datapath_provider{{provider=\"{}\"}}", provider.name());
        self.wait("agent runs the datapath provider asked for", Duration::from_secs(10), |e| {
            e.metric(i, &series) == 1.0
        });
    }

    /// Serves the topology service again (after `cluster.pause()`) on its
    /// address in the underlay namespace, on the same store.
    pub fn resume_cluster(&mut self) {
        let ul = self.lab.name("ul").expect("ul");
        let addr = self.cluster.addr;
        let std_listener = in_netns(&ul, move || {
            let l = std::net::TcpListener::bind(addr).expect("rebind the cluster address");
            l.set_nonblocking(true).expect("nonblocking");
            l
        });
        let store = self.cluster.store.clone();
        self.cluster = self.rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            Cluster::serve(store, listener)
        });
    }

    /// SIGKILL: the agent dies without cleaning up (a crash).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(pid) = self.hosts[i].pid.take() {
            self.lab.kill(pid);
        }
    }

    pub fn put<T: Stored>(&self, o: &T) -> i64 {
        let rev = self.rt.block_on(self.cluster.put(o));
        self.written.set(self.written.get().max(rev));
        rev
    }

    pub fn delete<T: Stored>(&self, o: &T) -> i64 {
        let rev = self.rt.block_on(self.cluster.delete(o));
        self.written.set(self.written.get().max(rev));
        rev
    }

    pub fn exists(&self, key: &str) -> bool {
        self.rt.block_on(self.cluster.exists(key))
    }

    /// The stored value of `key`, decoded.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let kv = self.rt.block_on(self.cluster.store.get(key.as_bytes())).expect("get")?;
        serde_json::from_slice(&kv.value).ok()
    }

    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Env) -> bool) -> Duration {
        let t0 = Instant::now();
        while !f(self) {
            if t0.elapsed() > timeout {
                self.dump_logs();
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        t0.elapsed()
    }

    pub fn key(&mut self) -> u32 {
        self.next_key += 1;
        self.next_key
    }

    /// A VM on host `i` with its veth's host end bound to `port`.
    pub fn vm(&mut self, i: usize, name: &str, cidr: &str, gw: Option<Ipv4Addr>) -> Vm {
        let host_if = format!("{name}h");
        let v = self
            .lab
            .add_vm(&VmSpec {
                name,
                host_ns: &self.hosts[i].ns.clone(),
                host_if: &host_if,
                vm_if: name,
                ip_cidr: cidr,
                mac: None,
                mtu: Some(1500),
                gateway: gw,
            })
            .expect("vm");
        ns_exec(&v.ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).expect("sysctl");
        // One GSO frame per VXLAN datagram (see the datapath's docs).
        ns_exec(&v.ns, &["ip", "link", "set", "dev", &v.vm_if, "gso_max_size", "60000"])
            .expect("gso cap");
        v
    }

    /// Bridge `b1` with vm1 (10.1.0.1) on host 0 and vm2 (10.1.0.2) on
    /// host 1, both ports active.
    pub fn two_vms_on_a_bridge(&mut self) -> (Bridge, Vm, Vm, Port, Port) {
        let b = Bridge {
            id: BridgeId::random(),
            name: "b1".into(),
            admin_state_up: true,
            ..Default::default()
        };
        self.put(&b);
        let vm1 = self.vm(0, "vm1", "10.1.0.1/24", None);
        let vm2 = self.vm(1, "vm2", "10.1.0.2/24", None);
        let p1 = self.bridge_port(&b, Some((0, &vm1)));
        let p2 = self.bridge_port(&b, Some((1, &vm2)));
        self.wait_active(&p1);
        self.wait_active(&p2);
        (b, vm1, vm2, p1, p2)
    }

    pub fn bridge_port(&mut self, b: &Bridge, host: Option<(usize, &Vm)>) -> Port {
        let bound = host.map(|(i, vm)| (i, vm.host_if.clone()));
        self.bridge_port_on(b, bound)
    }

    /// A bridge port bound to interface `ifname` of host `i` (which may not
    /// exist yet).
    pub fn bridge_port_on(&mut self, b: &Bridge, host: Option<(usize, String)>) -> Port {
        let mut p = Port {
            id: PortId::random(),
            port_type: PortType::Bridge,
            device_id: b.id.cast(),
            admin_state_up: true,
            tunnel_key: self.key(),
            ..Default::default()
        };
        if let Some((i, ifname)) = host {
            p.host_id = Some(self.hosts[i].id);
            p.interface_name = Some(ifname);
        }
        self.put(&p);
        p
    }

    /// A route of `router` to `dst` by `port` (through `gateway`, if any).
    pub fn route(
        &self,
        router: RouterId,
        dst: (Ipv4Addr, u8),
        port: PortId,
        gateway: Option<Ipv4Addr>,
    ) {
        self.put(&Route {
            id: RouteId::random(),
            router_id: router,
            route_type: RouteType::Normal,
            src_network_addr: Ipv4Addr::UNSPECIFIED,
            src_network_length: 0,
            dst_network_addr: dst.0,
            dst_network_length: dst.1,
            next_hop_port: Some(port),
            next_hop_gateway: gateway,
            weight: 100,
            learned: false,
            attributes: None,
        });
    }

    /// Waits for `p` to be active (bound, its host's datapath port up)
    /// and for every running agent to simulate with everything this test
    /// wrote so far: a port's filters put after its binding reach the
    /// other hosts' views a moment later, and a peer that simulates a
    /// reply through them before that forwards it unfiltered.
    pub fn wait_active(&self, p: &Port) -> Duration {
        let k = midonet_proto::keys::port_active(&p.id.to_string());
        let t = self.wait("port active", Duration::from_secs(20), |e| e.exists(&k));
        t + self.wait_synced()
    }

    /// Waits until every running agent's view holds the test's last write
    /// (`midonet_agent_topology_revision`, set once that view is in use).
    pub fn wait_synced(&self) -> Duration {
        let rev = self.written.get() as f64;
        let live: Vec<usize> =
            (0..self.hosts.len()).filter(|&i| self.hosts[i].pid.is_some()).collect();
        self.wait("every agent has the last write", Duration::from_secs(20), |e| {
            live.iter().all(|&i| e.metric(i, "midonet_agent_topology_revision") >= rev)
        })
    }

    /// The agent's metrics on host `i`, fetched from inside its namespace.
    pub fn metrics(&self, i: usize) -> String {
        self.agent_get(i, "/metrics").unwrap_or_default()
    }

    /// `GET path` on the agent's metrics listener on host `i`, fetched from
    /// inside its namespace: the raw HTTP response, `None` if nothing
    /// listens (yet).
    pub fn agent_get(&self, i: usize, path: &str) -> Option<String> {
        let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        in_netns(&self.hosts[i].ns, move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:7300").ok()?;
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            s.write_all(request.as_bytes()).ok()?;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            Some(out)
        })
    }

    /// The JSON body of the agent's `GET path` on host `i` (`/conntrack`,
    /// `/nat`, `/flows`).
    pub fn agent_json(&self, i: usize, path: &str) -> serde_json::Value {
        let text = self.agent_get(i, path).unwrap_or_else(|| panic!("GET {path}: no agent"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    pub fn metric(&self, i: usize, series: &str) -> f64 {
        self.metrics(i)
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// The sum of every series of a labelled family (e.g. all drop reasons).
    pub fn metric_sum(&self, i: usize, family: &str) -> f64 {
        self.metrics(i)
            .lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn dump_logs(&self) {
        for (i, h) in self.hosts.iter().enumerate() {
            let log = std::fs::read_to_string(h.dir.path().join("agent.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- agent {i} ({}) log tail ----", h.ns);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var("MAG_KEEP_LOGS").as_deref() == Ok("1") {
            self.dump_logs();
        }
        // SIGTERM first so the agents take the clean shutdown path.
        for h in &self.hosts {
            if let Some(pid) = h.pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `ping -c n`: Some(avg rtt ms) if every reply came back.
pub fn ping(from: &Vm, to: Ipv4Addr, n: u32, extra: &[&str]) -> Option<f64> {
    let (c, dst) = (n.to_string(), to.to_string());
    let mut args = vec!["ping", "-n", "-c", &c, "-i", "0.2", "-W", "1"];
    args.extend_from_slice(extra);
    args.push(&dst);
    let out = ns_output(&from.ns, &args).expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(&format!("{n} received")) {
        return None;
    }
    text.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
}

/// Pings (one at a time, 300 ms timeout) until `ok(reply)` holds; returns
/// how long it took, or panics after `timeout`.
pub fn until_ping(from: &Vm, to: Ipv4Addr, want_reply: bool, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    let dst = to.to_string();
    loop {
        let out = ns_output(&from.ns, &["ping", "-n", "-c", "1", "-W", "0.3", &dst]).expect("ping");
        if out.status.success() == want_reply {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < timeout,
            "ping {to}: still {} after {timeout:?}",
            if want_reply { "failing" } else { "answered" }
        );
        if !want_reply {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
