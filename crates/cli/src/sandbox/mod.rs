//! `midonet sandbox`: a whole MidoNet cloud on one machine, for trying,
//! demonstrating, testing and benchmarking.
//!
//! ```text
//! midonet sandbox up [--hosts N] [--vms-per-host M] [--prefix P] [--state-dir D] [--ha]
//! midonet sandbox status [--state-dir D]
//! midonet sandbox down [--state-dir D] [--prefix P]
//! ```
//!
//! `up` (root only), step by step; each step is recorded in
//! `D/sandbox.json` ([`state`]) before the next starts:
//!
//! 1. **Clean up** what a previous run left: stop the processes recorded in
//!    `D/sandbox.json` (by PID, after checking the PID still runs the
//!    recorded binary), delete every namespace and link named `P-…`, and
//!    remove the old store.
//! 2. **Underlay**: namespace `P-ul` with a bridge, one namespace per host
//!    (`P-h0` …) joined to it, and a management link from the root
//!    namespace, where the cluster runs ([`net`], [`layout`]). With
//!    `--underlay-link pair`, two hosts on one veth pair and a management
//!    link each, no underlay namespace: how the peers wire theirs.
//! 3. **Cluster**: `midonet-cluster --no-auth` on an embedded store in `D`,
//!    REST on `--api` (127.0.0.1:8181), topology service (gRPC) on the
//!    management address so agents in the host namespaces reach it.
//!    With `--ha`: three `etcd` members on loopback ([`etcd`]) and three
//!    replicas on them, replica `i` on the `--api` and `--grpc-port` ports
//!    plus `i`; agents are given every replica, and the recorded API URL
//!    lists all three (`midonet --url` fails over among them).
//! 4. **Agents**: one per host, `ip netns exec P-hN midonet-agent …`, with
//!    a host id written beforehand (so the sandbox knows which id is which
//!    namespace), logs and PIDs in `D` ([`procs`]).
//! 5. **Tunnel zone** with every host at its underlay address, then the
//!    **demo topology** through the REST API ([`topology`]) and the **VMs**:
//!    namespaces with a veth into their host, each bound to a bridge port.
//! 6. **Checks**: pings between VMs on one bridge across hosts, across the
//!    router, and to the gateway; a table of what was built and how to
//!    explore it. `up` fails if a check fails, but leaves the sandbox
//!    running for inspection.
//!
//! `down` stops the recorded processes and removes every `P-…` namespace
//! and link; it works after a crash too, and on nothing at all.
//!
//! The sandbox never kills by name: only PIDs it recorded (and whatever is
//! still inside its own namespaces when they are deleted).

pub mod etcd;
pub mod layout;
pub mod net;
pub mod procs;
pub mod state;
pub mod topology;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets, ContentArrangement, Table};
use midonet_client::{Auth, Client};

use layout::Layout;
use net::NetOpts;
pub use net::UnderlayLink;
use state::{CheckRecord, HostRecord, ProcRecord, SandboxState};

/// Arguments of `midonet sandbox`.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub cmd: SandboxCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SandboxCmd {
    /// Start a cluster, hosts with agents, VMs and a demo topology (root)
    Up(UpArgs),
    /// Stop everything the sandbox started and remove its namespaces (root)
    Down(DownArgs),
    /// Show what is running
    Status(StatusArgs),
}

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/tmp/midonet-sandbox";
/// Default name prefix.
pub const DEFAULT_PREFIX: &str = "mns";

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Number of hosts (network namespaces, one agent each)
    #[arg(long, default_value_t = 2)]
    pub hosts: usize,
    /// VMs per host; VM i goes to host i mod N and bridge (i / N) mod 2, so
    /// with 2 per host each bridge has a VM on every host
    #[arg(long, default_value_t = 2)]
    pub vms_per_host: usize,
    /// Prefix of every namespace and link name (1-6 lowercase letters/digits)
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Directory for the store, logs, PID records and sandbox.json
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Address of the REST API
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub api: SocketAddr,
    /// TCP port of the topology service on the management address
    #[arg(long, default_value_t = 8182)]
    pub grpc_port: u16,
    /// Underlay subnet (a /24; the cluster gets .254, hosts .1 upwards)
    #[arg(long, default_value = "198.18.64.0/24")]
    pub underlay: String,
    /// How the hosts' underlay links meet: `bridge` (any number of hosts),
    /// or `pair` (two hosts on one veth pair, the peers' wiring, for
    /// benchmarks against them)
    #[arg(long, value_enum, default_value_t = UnderlayLink::Bridge)]
    pub underlay_link: UnderlayLink,
    /// MTU of the underlay links; large so one VM GSO frame fits one VXLAN datagram
    #[arg(long, default_value_t = 65000)]
    pub underlay_mtu: u32,
    /// MTU of the VM links
    #[arg(long, default_value_t = 1500)]
    pub vm_mtu: u32,
    /// gso_max_size of the VM links (0 = kernel default). Default: the
    /// kernel's with `--datapath ebpf` (the kernel carries a VM's GSO frame
    /// through the tunnel whole, as the peers' VMs send theirs), else 60000,
    /// so that one frame fits one VXLAN datagram of the userspace datapath
    #[arg(long)]
    pub vm_gso_max: Option<u32>,
    /// Seconds to wait for the API, the agents and each connectivity check
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Datapath provider of the agents (default: the agent's, ebpf with
    /// fallback to userspace)
    #[arg(long, value_parser = ["ebpf", "userspace", "dummy"])]
    pub datapath: Option<String>,
    /// Build the demo topology through the Neutron API (networks, subnets,
    /// a router with two interfaces, ports bound by binding:host_id and
    /// binding:profile.interface_name, the default security group) instead
    /// of the MidoNet API
    #[arg(long)]
    pub neutron: bool,
    /// No single point of failure: 3 etcd members (needs `etcd`: apt-get
    /// install etcd-server) and 3 cluster replicas instead of one cluster on
    /// an embedded store; replica i serves on the --api and --grpc-port ports + i
    #[arg(long)]
    pub ha: bool,
    /// With --ha: the etcd members' first client port P (clients on P..P+2,
    /// peers on P+10..P+12, loopback)
    #[arg(long, default_value_t = 23790)]
    pub etcd_port: u16,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Prefix to clean up when the state directory has no record
    #[arg(long)]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// Runs `midonet sandbox`.
pub fn run(args: SandboxArgs) -> Result<()> {
    match args.cmd {
        SandboxCmd::Up(a) => {
            let st = up(&a)?;
            print_summary(&st, &a.state_dir);
            let failed = st.checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                bail!(
                    "{failed} of {} connectivity checks failed; the sandbox is left running for inspection \
                     (logs in {}); `midonet sandbox down` removes it",
                    st.checks.len(),
                    a.state_dir.display()
                );
            }
            Ok(())
        }
        SandboxCmd::Down(a) => {
            let (procs, ns) = down(&a.state_dir, a.prefix.as_deref())?;
            println!("stopped {procs} processes, removed {ns} namespaces");
            Ok(())
        }
        SandboxCmd::Status(a) => status(&a.state_dir),
    }
}

fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`midonet sandbox` needs root (it creates network namespaces and links); run it with sudo");
    }
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn parse_underlay(s: &str) -> Result<[u8; 3]> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "24"));
    let a: Ipv4Addr =
        addr.parse().with_context(|| format!("--underlay {s}: not an IPv4 address"))?;
    if len != "24" {
        bail!("--underlay must be a /24 (got {s})");
    }
    let o = a.octets();
    Ok([o[0], o[1], o[2]])
}

/// Stops the processes recorded in `dir` and removes the namespaces of the
/// recorded prefix (and of `extra_prefix`). Returns (processes stopped,
/// namespaces removed).
pub fn down(dir: &Path, extra_prefix: Option<&str>) -> Result<(usize, usize)> {
    require_root()?;
    let st = SandboxState::load(dir)?;
    let mut stopped = 0;
    let mut prefixes: Vec<String> = Vec::new();
    if let Some(st) = &st {
        // Agents first: they would otherwise log a storm of reconnects.
        for p in st.processes.iter().rev() {
            if procs::stop(p, Duration::from_secs(5)) {
                stopped += 1;
            }
        }
        prefixes.push(st.prefix.clone());
    }
    if let Some(p) = extra_prefix {
        layout::check_prefix(p)?;
        prefixes.push(p.to_owned());
    }
    if prefixes.is_empty() {
        prefixes.push(DEFAULT_PREFIX.to_owned());
    }
    prefixes.dedup();
    let mut removed = 0;
    for p in &prefixes {
        removed += net::remove_all(p)?;
    }
    if let Some(mut st) = st {
        st.processes.clear();
        st.phase = "down".into();
        st.save(dir)?;
    }
    Ok((stopped, removed))
}

/// Builds the sandbox; returns its state (checks included). Errors only
/// when setup itself fails.
pub fn up(a: &UpArgs) -> Result<SandboxState> {
    require_root()?;
    let mut l = Layout::new(&a.prefix, a.hosts, a.vms_per_host)?;
    l.underlay = parse_underlay(&a.underlay)?;
    for tool in ["ip", "ping"] {
        if !midonet_netns::have_program(tool) {
            bail!("`{tool}` is not installed (apt-get install iproute2 iputils-ping)");
        }
    }
    let cluster_bin = procs::find_binary("midonet-cluster")?;
    let agent_bin = procs::find_binary("midonet-agent")?;
    let dir = &a.state_dir;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = fs::canonicalize(dir)?;

    // 1. Leftovers of a previous (possibly crashed) run.
    let (p, n) = down(&dir, Some(&a.prefix))?;
    if p + n > 0 {
        eprintln!("sandbox: cleaned up a previous run ({p} processes, {n} namespaces)");
    }
    clear_state_dir(&dir)?;

    let (api, grpc) = replica_addrs(a, l.mgmt_ip())?;
    let join = |v: Vec<String>| v.join(",");
    let mut st = SandboxState {
        prefix: l.prefix.clone(),
        api_url: join(api.iter().map(|x| api_url(*x)).collect()),
        grpc_addr: join(grpc.iter().map(ToString::to_string).collect()),
        started: now_unix(),
        underlay_mtu: a.underlay_mtu,
        phase: "starting".into(),
        ..Default::default()
    };
    st.save(&dir)?;
    let result = build(a, &l, &dir, &cluster_bin, &agent_bin, &mut st, (&api, &grpc));
    match result {
        Ok(()) => {
            st.phase = if st.checks.iter().all(|c| c.ok) { "up" } else { "degraded" }.into();
            st.save(&dir)?;
            Ok(st)
        }
        Err(e) => {
            st.phase = "failed".into();
            let _ = st.save(&dir);
            Err(e.context(format!(
                "sandbox setup failed; logs are in {}, `midonet sandbox down --state-dir {}` removes what was built",
                dir.display(),
                dir.display()
            )))
        }
    }
}

/// The REST API base URL of a replica serving on `addr`.
fn api_url(addr: SocketAddr) -> String {
    format!("http://{addr}/midonet-api")
}

/// The REST and gRPC addresses of each cluster replica: one, or with `--ha`
/// [`etcd::MEMBERS`] on consecutive ports.
fn replica_addrs(a: &UpArgs, mgmt: Ipv4Addr) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>)> {
    let n = if a.ha { etcd::MEMBERS } else { 1 };
    let (Some(_), Some(_)) = (a.api.port().checked_add(n - 1), a.grpc_port.checked_add(n - 1))
    else {
        bail!("--api and --grpc-port need {n} consecutive ports");
    };
    Ok((
        (0..n).map(|i| SocketAddr::new(a.api.ip(), a.api.port() + i)).collect(),
        (0..n).map(|i| SocketAddr::from((mgmt, a.grpc_port + i))).collect(),
    ))
}

/// Removes what a previous run wrote into the state directory (store,
/// logs, configs, host ids) and nothing else: `--state-dir` may point at a
/// directory that holds other files.
fn clear_state_dir(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() && is_host_dir(&name) {
            // The flow-state log too: a new sandbox's hosts are new hosts,
            // and an agent replays the log it finds at start (an earlier
            // sandbox's bindings, under routers that no longer exist).
            for f in [
                "host_id",
                "host_id.tmp",
                "agent.toml",
                "host.credential",
                "flowstate.log",
                "flowstate.tmp",
            ] {
                let _ = fs::remove_file(path.join(f));
            }
            // Left in place if something else is in it.
            let _ = fs::remove_dir(&path);
        } else if path.is_dir() && is_etcd_dir(&name) {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        } else if path.is_dir() && name == "pki" {
            for f in ["ca.pem", "server.pem", "server.key"] {
                let _ = fs::remove_file(path.join(f));
            }
            let _ = fs::remove_dir(&path);
        } else if path.is_file() && is_state_file(&name) {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Whether `name` is `prefix`, one or more digits, then `suffix`
/// (`h0`, `etcd-m2`, `cluster-1.log`).
fn numbered(name: &str, prefix: &str, suffix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|n| n.strip_suffix(suffix))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_host_dir(name: &str) -> bool {
    numbered(name, "h", "")
}

fn is_etcd_dir(name: &str) -> bool {
    numbered(name, "etcd-m", "")
}

fn is_state_file(name: &str) -> bool {
    matches!(name, "store.redb" | "cluster.toml" | "cluster.log" | state::STATE_FILE)
        || name == format!(".{}.tmp", state::STATE_FILE)
        || (name.starts_with("agent-h") && name.ends_with(".log"))
        || numbered(name, "cluster-", ".toml")
        || numbered(name, "cluster-", ".log")
        || numbered(name, "etcd-m", ".log")
}

fn build(
    a: &UpArgs,
    l: &Layout,
    dir: &Path,
    cluster_bin: &Path,
    agent_bin: &Path,
    st: &mut SandboxState,
    replicas: (&[SocketAddr], &[SocketAddr]),
) -> Result<()> {
    let opts = NetOpts {
        underlay_mtu: a.underlay_mtu,
        vm_mtu: a.vm_mtu,
        vm_gso_max: vm_gso_max(a),
        link: a.underlay_link,
    };
    let timeout = Duration::from_secs(a.timeout);
    eprintln!("sandbox: underlay and {} host namespaces", l.hosts);
    net::build_underlay(l, &opts)?;

    let store = if a.ha {
        let bin = etcd::binary()?;
        let members = etcd::members(dir, a.etcd_port)?;
        eprintln!("sandbox: starting {} etcd members", members.len());
        for m in &members {
            let args = etcd::args(m, &members, &format!("{}-sandbox", l.prefix));
            let log = dir.join(format!("etcd-{}.log", m.name));
            let rec = procs::spawn_daemon(&format!("etcd-{}", m.name), &bin, &args, None, &log)?;
            st.processes.push(rec);
            st.save(dir)?;
        }
        let started = st.processes.clone();
        etcd::wait_healthy(&members, timeout, || started.iter().try_for_each(still_running))?;
        etcd::store_url(&members)
    } else {
        format!("embedded:{}", dir.join("store.redb").display())
    };

    let (api, grpc) = replicas;
    eprintln!(
        "sandbox: starting {} (agents over TLS, with host credentials)",
        if a.ha { format!("{} cluster replicas", api.len()) } else { "the cluster".into() }
    );
    let pki = midonet_proto::tls::generate(&[l.mgmt_ip().to_string()])
        .and_then(|p| p.write(&dir.join("pki")))
        .context("making the sandbox's certificates")?;
    let mut clusters = Vec::new();
    for (i, (api, grpc)) in api.iter().zip(grpc).enumerate() {
        let name = if a.ha { format!("cluster-{i}") } else { "cluster".to_owned() };
        let cfg_file = dir.join(format!("{name}.toml"));
        fs::write(&cfg_file, cluster_config(*api, *grpc, &store, &pki))?;
        let args: Vec<String> =
            vec!["--config".into(), cfg_file.display().to_string(), "--no-auth".into()];
        let rec =
            procs::spawn_daemon(&name, cluster_bin, &args, None, &dir.join(format!("{name}.log")))?;
        st.processes.push(rec.clone());
        st.save(dir)?;
        clusters.push((api_url(*api), rec));
    }
    for (url, rec) in &clusters {
        topology::wait_api(&Client::new(url, Auth::None), timeout, || still_running(rec))?;
    }
    let client = Client::new(&st.api_url, Auth::None);

    eprintln!("sandbox: starting {} agents", l.hosts);
    for h in 0..l.hosts {
        let id = uuid::Uuid::new_v4().to_string();
        let host_dir = dir.join(format!("h{h}"));
        fs::create_dir_all(&host_dir)?;
        let id_file = host_dir.join("host_id");
        fs::write(&id_file, format!("{id}\n"))?;
        let credential = enroll(&client, &id, &host_dir)?;
        let ns = l.host_ns(h);
        let mut args = agent_args(st, &host_dir, &id_file, &credential, &pki.ca, &ns)?;
        if let Some(d) = &a.datapath {
            args.extend(["--datapath".to_owned(), d.clone()]);
        }
        let rec = procs::spawn_daemon(
            &format!("agent-h{h}"),
            agent_bin,
            &args,
            Some(&ns),
            &dir.join(format!("agent-h{h}.log")),
        )?;
        st.processes.push(rec);
        st.hosts.push(HostRecord { ns, id, underlay_ip: Some(l.host_underlay_ip(h)) });
        st.save(dir)?;
    }
    let ids: Vec<String> = st.hosts.iter().map(|h| h.id.clone()).collect();
    let procs_now = st.processes.clone();
    topology::wait_hosts(&client, &ids, timeout, || procs_now.iter().try_for_each(still_running))?;

    eprintln!("sandbox: tunnel zone and demo topology");
    st.tunnel_zone_id = topology::tunnel_zone(&client, &st.hosts)?;
    let neutron = Client::new(&st.api_url.replace("/midonet-api", "/neutron/v2.0"), Auth::None);
    let (router_id, bridges) = if a.neutron {
        topology::neutron_router_and_networks(&neutron, &client)?
    } else {
        topology::router_and_bridges(&client)?
    };
    st.router_id = router_id;
    st.bridges = bridges;
    st.save(dir)?;

    eprintln!("sandbox: {} VMs", l.vms.len());
    for vm in &l.vms {
        net::build_vm(l, vm, &opts)?;
    }
    st.vms = if a.neutron {
        topology::neutron_vm_ports(&neutron, l, &st.hosts, &st.bridges)?
    } else {
        topology::vm_ports(&client, l, &st.hosts, &st.bridges)?
    };
    st.save(dir)?;

    eprintln!("sandbox: checking connectivity");
    st.checks = run_checks(l, st, timeout);
    Ok(())
}

/// A cluster replica's configuration file (`midonet_cluster::config`):
/// REST for the user on `api`, the topology service on the management
/// address for the agents, over TLS with the sandbox's own certificate,
/// asking each agent for its host credential; user auth off. The Neutron
/// API is served at `/neutron` on the REST address only (no listener of its
/// own that could collide with a real Neutron on this machine).
fn cluster_config(
    api: SocketAddr,
    grpc: SocketAddr,
    store: &str,
    pki: &midonet_proto::tls::PkiFiles,
) -> String {
    format!(
        "listen = \"{api}\"\nstore = \"{store}\"\ngrpc_listen = \"{grpc}\"\nneutron_listen = \"\"\n\n\
         [agents]\ncredentials = true\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[auth]\nenabled = false\n",
        pki.cert.display(),
        pki.key.display()
    )
}

/// Enrolls host `id` through the API (`midonet host enroll`) and writes its
/// credential into `host_dir`, readable by its owner only.
fn enroll(client: &Client, id: &str, host_dir: &Path) -> Result<PathBuf> {
    let r = client.post_json(&format!("hosts/{id}/credential"), &serde_json::json!({}))?;
    let token = r["credential"].as_str().context("the enrollment answer has no credential")?;
    let path = host_dir.join("host.credential");
    midonet_proto::tls::write_private(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Configuration file and command line of one agent (`midonet_agent::config`).
fn agent_args(
    st: &SandboxState,
    host_dir: &Path,
    id_file: &Path,
    credential: &Path,
    ca: &Path,
    ns: &str,
) -> Result<Vec<String>> {
    let cluster: Vec<String> = st.grpc_addr.split(',').map(|a| format!("\"{a}\"")).collect();
    let cfg = format!(
        "cluster = [{}]\nhost_id_file = \"{}\"\ncredential_file = \"{}\"\ncluster_ca = \"{}\"\nhost_name = \"{ns}\"\n",
        cluster.join(", "),
        id_file.display(),
        credential.display(),
        ca.display()
    );
    let path = host_dir.join("agent.toml");
    fs::write(&path, cfg).with_context(|| format!("writing {}", path.display()))?;
    Ok(vec!["--config".into(), path.display().to_string()])
}

fn still_running(p: &ProcRecord) -> Result<()> {
    if procs::is_ours(p) {
        return Ok(());
    }
    bail!(
        "{} (pid {}) exited; last lines of {}:\n{}",
        p.name,
        p.pid,
        p.log,
        procs::log_tail(&p.log, 20)
    )
}

/// Pings the layout's check pairs; each gets `timeout` to answer once
/// (the first packets are simulated and flows installed), then 5 pings
/// give the RTT.
fn run_checks(l: &Layout, st: &SandboxState, timeout: Duration) -> Vec<CheckRecord> {
    l.check_pairs()
        .into_iter()
        .map(|(from, to, what)| {
            let src = &st.vms[from];
            let (to_name, to_ip) = if to == usize::MAX {
                ("router".to_owned(), src.gateway)
            } else {
                (st.vms[to].ns.clone(), st.vms[to].ip)
            };
            let (ok, first, rtt) = ping_until(&src.ns, to_ip, timeout);
            CheckRecord {
                from: src.ns.clone(),
                to: to_name,
                to_ip,
                what: what.to_owned(),
                ok,
                rtt_ms: rtt,
                first_reply_s: first,
            }
        })
        .collect()
}

/// (answered, seconds to the first reply, average RTT in ms).
pub fn ping_until(ns: &str, ip: Ipv4Addr, timeout: Duration) -> (bool, Option<f64>, Option<f64>) {
    let t0 = Instant::now();
    let target = ip.to_string();
    while t0.elapsed() < timeout {
        let ok = midonet_netns::ns_output(ns, &["ping", "-n", "-c", "1", "-W", "1", &target])
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            let first = t0.elapsed().as_secs_f64();
            let rtt = midonet_netns::ns_output(
                ns,
                &["ping", "-n", "-q", "-c", "5", "-i", "0.2", "-W", "1", &target],
            )
            .ok()
            .and_then(|o| parse_rtt_avg(&String::from_utf8_lossy(&o.stdout)));
            return (true, Some(first), rtt);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (false, None, None)
}

/// The average of ping's `rtt min/avg/max/mdev = a/b/c/d ms` line.
pub fn parse_rtt_avg(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))?;
    line.split('=').nth(1)?.trim().split('/').nth(1)?.parse().ok()
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled);
    t
}

fn print_summary(st: &SandboxState, dir: &Path) {
    let ok = st.checks.iter().filter(|c| c.ok).count();
    println!(
        "\nMidoNet sandbox `{}`: {} hosts, {} VMs, {ok}/{} connectivity checks passed",
        st.prefix,
        st.hosts.len(),
        st.vms.len(),
        st.checks.len()
    );
    println!("API {} (no auth); state, logs and store in {}\n", st.api_url, dir.display());

    let mut t = table();
    t.set_header(["control plane", "pid", "log"]);
    for p in st.processes.iter().filter(|p| !p.name.starts_with("agent-")) {
        t.add_row([p.name.clone(), p.pid.to_string(), p.log.clone()]);
    }
    println!("{t}");

    let mut t = table();
    t.set_header(["host (netns)", "host id", "underlay ip", "agent pid", "log"]);
    for (i, h) in st.hosts.iter().enumerate() {
        let agent = st.processes.iter().find(|p| p.name == format!("agent-h{i}"));
        t.add_row([
            h.ns.clone(),
            h.id.clone(),
            h.underlay_ip.map(|x| x.to_string()).unwrap_or_default(),
            agent.map(|p| p.pid.to_string()).unwrap_or_default(),
            agent.map(|p| p.log.clone()).unwrap_or_default(),
        ]);
    }
    println!("{t}");

    let mut t = table();
    t.set_header([
        "vm (netns)",
        "host",
        "bridge",
        "ip",
        "gateway",
        "mac",
        "port id (bound to host if)",
    ]);
    for v in &st.vms {
        t.add_row([
            v.ns.clone(),
            st.hosts.get(v.host).map(|h| h.ns.clone()).unwrap_or_default(),
            st.bridges.get(v.bridge).map(|b| b.name.clone()).unwrap_or_default(),
            v.ip.to_string(),
            v.gateway.to_string(),
            v.mac.clone(),
            format!("{} ({})", v.port_id, v.host_if),
        ]);
    }
    println!("{t}");

    let mut t = table();
    t.set_header(["check", "from", "to", "result"]);
    for c in &st.checks {
        let result = match (c.ok, c.first_reply_s, c.rtt_ms) {
            (true, Some(f), Some(r)) => format!("ok: first reply after {f:.2} s, rtt {r:.3} ms"),
            (true, _, _) => "ok".to_owned(),
            (false, _, _) => "FAILED: no reply".to_owned(),
        };
        t.add_row([c.what.clone(), c.from.clone(), format!("{} {}", c.to, c.to_ip), result]);
    }
    println!("{t}");

    let url = &st.api_url;
    let vm0 = st.vms.first();
    println!("Explore:");
    println!("  midonet --url {url} bridge list");
    println!("  midonet --url {url} port list");
    println!("  midonet --url {url} host list");
    if let (Some(v0), Some(v1)) = (vm0, st.vms.get(1)) {
        println!("  ip netns exec {} ping {}", v0.ns, v1.ip);
    }
    if let Some(v) = st.vms.iter().find(|v| vm0.is_some_and(|v0| v.bridge != v0.bridge)) {
        println!(
            "  ip netns exec {} ping {}",
            vm0.map(|v| v.ns.as_str()).unwrap_or_default(),
            v.ip
        );
    }
    // A packet from VM 0 to a VM on the other bridge, through the router.
    let other = st.vms.iter().find(|v| vm0.is_some_and(|v0| v.bridge != v0.bridge));
    if let (Some(v0), Some(b), Some(o)) = (vm0, st.bridges.first(), other) {
        println!(
            "  midonet --url {url} trace --port {} eth.src={} eth.dst={} ip4.src={} ip4.dst={} udp.dst=53",
            v0.port_id, v0.mac, b.router_port_mac, v0.ip, o.ip
        );
    }
    if let Some(h) = st.hosts.first() {
        // The agent's flows; its metrics are on the same address.
        println!("  midonet flows --netns {}", h.ns);
    }
    println!(
        "  midonet sandbox status --state-dir {0}; midonet sandbox down --state-dir {0}",
        dir.display()
    );
}

fn status(dir: &Path) -> Result<()> {
    let Some(st) = SandboxState::load(dir)? else {
        println!("no sandbox recorded in {}", dir.display());
        return Ok(());
    };
    println!("sandbox `{}` ({}), API {}", st.prefix, st.phase, st.api_url);
    if st.processes.is_empty() {
        println!("no processes recorded (run `midonet sandbox up`)");
    }
    let mut t = table();
    t.set_header(["process", "pid", "netns", "running", "log"]);
    for p in &st.processes {
        t.add_row([
            p.name.clone(),
            p.pid.to_string(),
            p.netns.clone().unwrap_or_else(|| "(root)".into()),
            if procs::is_ours(p) { "yes".into() } else { "NO".to_owned() },
            p.log.clone(),
        ]);
    }
    if !st.processes.is_empty() {
        println!("{t}");
    }
    let ns = net::existing_namespaces(&st.prefix).unwrap_or_default();
    println!("{} namespaces: {}", ns.len(), ns.join(" "));
    if !st.processes.is_empty() {
        let client = Client::new(&st.api_url, Auth::None);
        match client.list("hosts") {
            Ok(hosts) => {
                let alive: Vec<&serde_json::Value> = hosts
                    .iter()
                    .filter(|h| h.get("alive").and_then(|a| a.as_bool()) == Some(true))
                    .collect();
                println!(
                    "API answers: {} hosts registered, {} alive{}",
                    hosts.len(),
                    alive.len(),
                    datapaths(&alive)
                );
            }
            Err(e) => println!("API does not answer: {e}"),
        }
    }
    let ok = st.checks.iter().filter(|c| c.ok).count();
    println!("connectivity checks at `up`: {ok}/{} passed", st.checks.len());
    Ok(())
}

/// The VM links' `gso_max_size` (see [`UpArgs::vm_gso_max`]): 60000 unless
/// every agent is told to run the ebpf datapath.
fn vm_gso_max(a: &UpArgs) -> u32 {
    a.vm_gso_max.unwrap_or(if a.datapath.as_deref() == Some("ebpf") { 0 } else { 60000 })
}

/// How many live hosts run each datapath, as ` (ebpf 2, userspace 1)`, so
/// a host that fell back from ebpf shows; empty when no agent said.
fn datapaths(alive: &[&serde_json::Value]) -> String {
    let mut count = std::collections::BTreeMap::<&str, usize>::new();
    for d in alive.iter().filter_map(|h| h.get("datapath").and_then(|d| d.as_str())) {
        *count.entry(d).or_default() += 1;
    }
    if count.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = count.iter().map(|(d, n)| format!("{d} {n}")).collect();
    format!(" ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_gso_max_is_the_kernels_only_when_every_agent_runs_ebpf() {
        let gso = |argv: &[&str]| {
            let w = Wrap::try_parse_from(["x", "up"].into_iter().chain(argv.iter().copied()))
                .expect("arguments parse");
            let SandboxCmd::Up(a) = w.s.cmd else { panic!("not up") };
            vm_gso_max(&a)
        };
        assert_eq!(gso(&["--datapath", "ebpf"]), 0, "the kernel default, as the peers' VMs");
        assert_eq!(gso(&["--datapath", "userspace"]), 60000, "a frame fits a VXLAN datagram");
        assert_eq!(gso(&[]), 60000, "the agent's choice may fall back to userspace");
        assert_eq!(gso(&["--datapath", "ebpf", "--vm-gso-max", "32000"]), 32000, "as asked");
    }

    #[test]
    fn status_counts_the_live_hosts_by_datapath() {
        let hosts = [
            serde_json::json!({"alive": true, "datapath": "ebpf"}),
            serde_json::json!({"alive": true, "datapath": "userspace"}),
            serde_json::json!({"alive": true, "datapath": "ebpf"}),
            serde_json::json!({"alive": true}),
        ];
        let refs: Vec<&serde_json::Value> = hosts.iter().collect();
        assert_eq!(datapaths(&refs), " (ebpf 2, userspace 1)");
        assert_eq!(datapaths(&refs[3..]), "", "no agent said");
    }
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        s: SandboxArgs,
    }

    #[test]
    fn up_defaults_match_the_readme() {
        let w = Wrap::try_parse_from(["x", "up"]).expect("parses");
        let SandboxCmd::Up(a) = w.s.cmd else { panic!("not up") };
        assert_eq!((a.hosts, a.vms_per_host, a.prefix.as_str()), (2, 2, "mns"));
        assert_eq!(a.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(a.api.to_string(), "127.0.0.1:8181");
        let w = Wrap::try_parse_from(["x", "down", "--state-dir", "/tmp/x"]).expect("parses");
        assert!(matches!(w.s.cmd, SandboxCmd::Down(ref d) if d.state_dir == Path::new("/tmp/x")));
        assert!(Wrap::try_parse_from(["x"]).is_err(), "a subcommand is required");
    }

    #[test]
    fn daemon_configs_carry_the_sandbox_addresses() {
        let Wrap { s: SandboxArgs { cmd: SandboxCmd::Up(a) } } =
            Wrap::try_parse_from(["x", "up"]).expect("parses")
        else {
            panic!("not up")
        };
        let st = SandboxState { grpc_addr: "198.18.64.254:8182".into(), ..Default::default() };
        let pki = midonet_proto::tls::PkiFiles {
            ca: "/s/pki/ca.pem".into(),
            cert: "/s/pki/server.pem".into(),
            key: "/s/pki/server.key".into(),
        };
        let grpc: SocketAddr = st.grpc_addr.parse().expect("addr");
        let c: toml::Value =
            toml::from_str(&cluster_config(a.api, grpc, "embedded:/s/store.redb", &pki))
                .expect("toml");
        assert_eq!(c["agents"]["credentials"].as_bool(), Some(true));
        assert_eq!(c["tls"]["cert"].as_str(), Some("/s/pki/server.pem"));
        assert_eq!(c["listen"].as_str(), Some("127.0.0.1:8181"));
        assert_eq!(c["grpc_listen"].as_str(), Some("198.18.64.254:8182"));
        assert_eq!(c["store"].as_str(), Some("embedded:/s/store.redb"));
        assert_eq!(c["auth"]["enabled"].as_bool(), Some(false));
        assert_eq!(c["neutron_listen"].as_str(), Some(""));

        let dir = tempfile::tempdir().expect("tempdir");
        let cred = dir.path().join("host.credential");
        let args =
            agent_args(&st, dir.path(), &dir.path().join("host_id"), &cred, &pki.ca, "mns-h0")
                .expect("agent args");
        assert_eq!(args[0], "--config");
        let text = fs::read_to_string(&args[1]).expect("agent config written");
        let c: toml::Value = toml::from_str(&text).expect("toml");
        assert_eq!(c["cluster"][0].as_str(), Some("198.18.64.254:8182"));
        assert_eq!(c["host_name"].as_str(), Some("mns-h0"));
        assert_eq!(c["cluster_ca"].as_str(), Some("/s/pki/ca.pem"));
        assert_eq!(c["credential_file"].as_str(), Some(cred.to_str().expect("utf-8")));

        // With --ha: every replica, on consecutive ports.
        let ha = Wrap::try_parse_from(["x", "up", "--ha"]).expect("parses");
        let SandboxCmd::Up(ha) = ha.s.cmd else { panic!("not up") };
        let (api, grpc) = replica_addrs(&ha, Ipv4Addr::new(198, 18, 64, 254)).expect("addrs");
        assert_eq!(api.iter().map(|x| x.port()).collect::<Vec<_>>(), [8181, 8182, 8183]);
        assert_eq!(grpc[2].to_string(), "198.18.64.254:8184");
        let st = SandboxState { grpc_addr: "10.0.0.1:1,10.0.0.1:2".into(), ..Default::default() };
        let args = agent_args(&st, dir.path(), &dir.path().join("host_id"), &cred, &pki.ca, "h")
            .expect("agent args");
        let c: toml::Value =
            toml::from_str(&fs::read_to_string(&args[1]).expect("read")).expect("toml");
        assert_eq!(c["cluster"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn clearing_the_state_dir_keeps_foreign_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in [
            "store.redb",
            "cluster.log",
            "agent-h0.log",
            "sandbox.json",
            "notes.txt",
            "cluster-1.toml",
            "etcd-m2.log",
            "etcd-mx.log",
        ] {
            fs::write(d.join(f), "x").expect("write");
        }
        fs::create_dir_all(d.join("h0")).expect("h0");
        fs::write(d.join("h0/host_id"), "x").expect("write");
        fs::write(d.join("h0/host.credential"), "x").expect("write");
        fs::write(d.join("h0/flowstate.log"), "x").expect("write");
        fs::create_dir_all(d.join("pki")).expect("pki");
        fs::write(d.join("pki/ca.pem"), "x").expect("write");
        fs::create_dir_all(d.join("h1")).expect("h1");
        fs::write(d.join("h1/mine.txt"), "x").expect("write");
        fs::create_dir_all(d.join("home")).expect("home");
        fs::create_dir_all(d.join("etcd-m0/member")).expect("etcd data");
        clear_state_dir(d).expect("clear");
        let mut left: Vec<String> = fs::read_dir(d)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["etcd-mx.log", "h1", "home", "notes.txt"]);
        assert!(d.join("h1/mine.txt").exists());
    }

    #[test]
    fn rtt_is_read_from_ping_output() {
        let out = "--- 10.0.1.11 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 801ms\n\
                   rtt min/avg/max/mdev = 0.101/0.152/0.230/0.041 ms\n";
        assert_eq!(parse_rtt_avg(out), Some(0.152));
        assert_eq!(parse_rtt_avg("no reply"), None);
    }

    #[test]
    fn underlay_must_be_a_slash_24() {
        assert_eq!(parse_underlay("198.18.65.0/24").expect("ok"), [198, 18, 65]);
        assert!(parse_underlay("198.18.65.0/16").is_err());
        assert!(parse_underlay("nope").is_err());
    }
}
