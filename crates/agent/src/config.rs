//! Agent configuration: one TOML file, every key optional.
//!
//! ```toml
//! # Topology service addresses (host:port). The agent uses the first that
//! # answers and fails over to the next on error.     default ["127.0.0.1:8182"]
//! cluster = ["127.0.0.1:8182"]
//! # Where the host id lives; created once with a random v4 UUID.
//! #                                                 default "/var/lib/midonet/host_id"
//! host_id_file = "/var/lib/midonet/host_id"
//! # This host's credential for the cluster (`midonet host enroll` writes
//! # it): it names the host, so a fresh host takes its id from it. Missing
//! # file: the agent starts without one, which only a cluster with
//! # `[agents] credentials = false` accepts.
//! #                      default "" = `host.credential` next to host_id_file
//! credential_file = ""
//! # PEM of the CA that signed the cluster's certificate. Set: TLS to the
//! # cluster (trusting this CA only). Empty: plain HTTP/2.      default ""
//! cluster_ca = ""
//! # Name registered for the host; empty = the kernel hostname.   default ""
//! host_name = ""
//! # VXLAN UDP port (listened on and sent to).                   default 4789
//! tunnel_port = 4789
//! # Local address the tunnel socket binds; the underlay IP other hosts
//! # send to is this host's address in its tunnel zone(s).    default "0.0.0.0"
//! tunnel_bind = "0.0.0.0"
//! # "ebpf" (the kernel forwards: TC programs + a vxlan device; where it
//! # cannot load, the agent says why in one log line and runs "userspace"),
//! # "userspace" (AF_PACKET + UDP VXLAN) or "dummy" (in memory). default "ebpf"
//! datapath = "ebpf"
//! # userspace: send TCP and checksum offload state across the tunnel in
//! # the VXLAN reserved bits, so big frames stay big between userspace
//! # hosts; a kernel VTEP (an "ebpf" host, a hardware VTEP) drops such
//! # datagrams. Unset: only to peers whose agents registered the userspace
//! # (or dummy) datapath, segmented and checksummed here for every other.
//! # true: to every peer. false: to none.               default unset
//! # tunnel_offload = true
//! # ebpf: serve established flows from the programs' exact-match cache
//! # (one hash lookup per packet, before the megaflow search). default true
//! ebpf_exact_cache = true
//! # userspace: after its last packet, the datapath thread keeps polling
//! # (yielding the CPU between polls) this long before it sleeps; a reply
//! # caught so saves a wake-up. 0 = always sleep.                 default 30
//! userspace_spin_us = 30
//! # userspace: packets per receive and transmit batch (1 to 1024). default 32
//! userspace_batch = 32
//! # userspace: run the datapath thread under SCHED_FIFO at this priority
//! # (1 to 99), as the kernel's softirq work it replaces; 0 = the normal
//! # scheduler. On a 2-CPU host it cut the routed connection rate from
//! # 13-14k/s to 3.5k/s (8k/s with userspace_spin_us = 0): a real-time
//! # thread that polls keeps the CPU from the VMs.                default 0
//! userspace_rt_priority = 0
//! # userspace: a pure FIN that waits in one receive batch of a port
//! # right behind its connection's last data segment leaves inside that
//! # segment, so a client cannot read the answer and close first (see
//! # ARCHITECTURE.md, departure 22). Counted in tcp_fins_merged. default true
//! userspace_merge_fins = true
//! # ebpf: decapsulate tunnel datagrams for local ports in a program at the
//! # ingress of the interface holding this host's tunnel address
//! # (tunnel_bind, else its tunnel-zone address), not in the kernel's vxlan
//! # device; GSO aggregates and anything unusual still take the device.
//! #                                                      default true
//! ebpf_tunnel_decap = true
//! # ebpf: encapsulate tunnel packets in the programs and send them through
//! # the neighbour table, not through the kernel's vxlan device (IPv4
//! # frames that fit the underlay and TCP GSO frames, to peers with a
//! # unicast route; the rest still take the device). Needs the tunnel
//! # address as above.
//! #                                                      default true
//! ebpf_tunnel_encap = true
//! # Replies to NATed connections (SNAT, DNAT; TCP and UDP) get one shared
//! # flow, split at the reverse rule: the datapath reverse-translates them
//! # from its own table, which it also fills from peers' flow-state
//! # messages as they arrive, so a new connection's reply does not miss.
//! # Needs a datapath with such a table (ebpf).            default true
//! kernel_rev_nat = true
//! # Prometheus metrics (GET /metrics) and the flow dump (GET /flows, what
//! # `midonet flows` reads); empty = off.                 default "127.0.0.1:7300"
//! metrics_listen = "127.0.0.1:7300"
//! # Full interface rescan period (netlink events also trigger one).  default 1000
//! scan_interval_ms = 1000
//! # Agent session lease TTL asked of the cluster.                default 10
//! session_ttl_secs = 10
//! # Idle timeout of installed flows; below 120000 (a NAT binding's copies
//! # on other hosts close 120 s after their last use).        default 60000
//! flow_idle_ms = 60000
//! # How long a packet waits for an ARP reply before it is dropped. default 5000
//! arp_wait_ms = 5000
//! # Misses (new flows) each local port may send to the agent per second;
//! # past it they are dropped before simulation and counted
//! # (`port_upcall_limited`), unless the agent has room (below). 0 = no
//! # limit.                                                     default 5000
//! upcall_rate_per_port = 5000
//! # How many a quiet port may send at once.                     default 1000
//! upcall_burst_per_port = 1000
//! # The same for misses arriving over the tunnel, all peers together.
//! upcall_rate_tunnel = 20000                                  # default 20000
//! upcall_burst_tunnel = 4000                                  # default 4000
//! # Misses past their budget that may still wait for the agent at once,
//! # served only when no miss within its budget waits (counted in
//! # `port_upcall_borrowed`): with the ebpf datapath simulating inline
//! # (miss_workers = 0) the budgets are a floor while the agent keeps up.
//! # 0 = hard limits (as with miss workers, and as the userspace datapath,
//! # which simulates in arrival order, always keeps them);
//! # at most 499 (the spare ring's size).                      default 64
//! upcall_spare_depth = 64
//! # Threads that simulate misses (new flows), each a connection at a time
//! # in arrival order; 0 = simulate on the datapath's own thread.
//! #     default: 0 on hosts with 2 CPUs or fewer, else CPUs less 2, 1 to 4
//! miss_workers = 0
//! # UDP port of flow-state replication (conntrack and NAT state pushed to
//! # peers before a connection's first packet), on `tunnel_bind`; the same
//! # on every host. 0 = do not replicate (single-host trials).  default 2925
//! flow_state_port = 2925
//! # Most connections tracked on this host (about 52 bytes each); a full
//! # table evicts unreplied or closing entries, never established ones,
//! # and counts what it could not track.                  default 1048576
//! conntrack_max_entries = 1048576
//! # How often flows' activity refreshes their connections' timeouts.
//! #                                                            default 5000
//! conntrack_refresh_ms = 5000
//! # The flow-state log (tracked connections and NAT bindings, replayed
//! # at start so an agent restart keeps them): "" = `flowstate.log` next
//! # to `host_id_file`; "off" = none.                          default ""
//! flow_state_file = ""
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use midonet_datapath::UpcallLimits;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// Which [`midonet_datapath::Datapath`] provider to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathKind {
    /// Kernel fast path; falls back to [`DatapathKind::Userspace`].
    Ebpf,
    Userspace,
    Dummy,
}

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub cluster: Vec<String>,
    pub host_id_file: PathBuf,
    pub credential_file: String,
    pub cluster_ca: String,
    pub host_name: String,
    pub tunnel_port: u16,
    pub tunnel_bind: Ipv4Addr,
    pub datapath: DatapathKind,
    pub tunnel_offload: Option<bool>,
    pub ebpf_exact_cache: bool,
    pub userspace_spin_us: u64,
    pub userspace_batch: usize,
    pub userspace_rt_priority: i32,
    pub userspace_merge_fins: bool,
    pub ebpf_tunnel_decap: bool,
    pub ebpf_tunnel_encap: bool,
    pub kernel_rev_nat: bool,
    pub metrics_listen: String,
    pub scan_interval_ms: u64,
    pub session_ttl_secs: i64,
    pub flow_idle_ms: u64,
    pub arp_wait_ms: u64,
    pub upcall_rate_per_port: u32,
    pub upcall_burst_per_port: u32,
    pub upcall_rate_tunnel: u32,
    pub upcall_burst_tunnel: u32,
    pub upcall_spare_depth: u32,
    pub miss_workers: usize,
    pub flow_state_port: u16,
    pub conntrack_max_entries: usize,
    pub conntrack_refresh_ms: u64,
    pub flow_state_file: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: vec!["127.0.0.1:8182".into()],
            host_id_file: PathBuf::from("/var/lib/midonet/host_id"),
            credential_file: String::new(),
            cluster_ca: String::new(),
            host_name: String::new(),
            tunnel_port: 4789,
            tunnel_bind: Ipv4Addr::UNSPECIFIED,
            datapath: DatapathKind::Ebpf,
            tunnel_offload: None,
            ebpf_exact_cache: true,
            userspace_spin_us: 30,
            userspace_batch: 32,
            userspace_rt_priority: 0,
            userspace_merge_fins: true,
            ebpf_tunnel_decap: true,
            ebpf_tunnel_encap: true,
            kernel_rev_nat: true,
            metrics_listen: "127.0.0.1:7300".into(),
            scan_interval_ms: 1000,
            session_ttl_secs: 10,
            flow_idle_ms: 60_000,
            arp_wait_ms: 5_000,
            upcall_rate_per_port: UpcallLimits::default().port_rate,
            upcall_burst_per_port: UpcallLimits::default().port_burst,
            upcall_rate_tunnel: UpcallLimits::default().tunnel_rate,
            upcall_burst_tunnel: UpcallLimits::default().tunnel_burst,
            upcall_spare_depth: UpcallLimits::default().spare_depth,
            miss_workers: default_miss_workers(),
            flow_state_port: 2925,
            conntrack_max_entries: 1 << 20,
            conntrack_refresh_ms: 5_000,
            flow_state_file: String::new(),
        }
    }
}

/// Miss workers when the configuration does not say. On two CPUs or
/// fewer, none: measured on a 2-CPU host (docs/PERFORMANCE.md, "Miss
/// workers"), handing a miss to another thread added 40 µs (ebpf) and
/// 100 µs (userspace) to a new connection's first packet and did not raise
/// the rate of misses, since the worker, the datapath thread and the VMs
/// share the same two CPUs. With more, one per CPU beyond two (the
/// datapath's thread and the rest of the host keep theirs), at most four
/// (they share the flow-state table).
pub fn default_miss_workers() -> usize {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cpus <= 2 {
        0
    } else {
        (cpus - 2).clamp(1, 4)
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, AgentError> {
        let cfg: Config = toml::from_str(text).map_err(AgentError::ConfigParse)?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        })?;
        Config::from_toml(&text)
    }

    /// Checks serde cannot express.
    pub fn check(&self) -> Result<(), AgentError> {
        if self.cluster.is_empty() {
            return Err(AgentError::Config("`cluster` needs at least one address".into()));
        }
        for c in &self.cluster {
            let hostport = c.trim_start_matches("http://").trim_start_matches("https://");
            if !hostport.contains(':') {
                return Err(AgentError::Config(format!("cluster address `{c}` needs host:port")));
            }
            if c.starts_with("https://") && self.cluster_ca.is_empty() {
                return Err(AgentError::Config(format!(
                    "cluster address `{c}` is https: set cluster_ca to the CA that signed the cluster's certificate"
                )));
            }
            if c.starts_with("http://") && !self.cluster_ca.is_empty() {
                return Err(AgentError::Config(format!(
                    "cluster address `{c}` is plain http but cluster_ca is set: drop the scheme or use https://"
                )));
            }
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return Err(AgentError::Config(format!(
                "metrics_listen `{}` is not ip:port",
                self.metrics_listen
            )));
        }
        if self.session_ttl_secs < 2 {
            return Err(AgentError::Config("session_ttl_secs must be at least 2".into()));
        }
        if self.scan_interval_ms == 0 {
            return Err(AgentError::Config("scan_interval_ms must be positive".into()));
        }
        if self.conntrack_refresh_ms < 100 {
            return Err(AgentError::Config("conntrack_refresh_ms must be at least 100".into()));
        }
        if !(1..=1024).contains(&self.userspace_batch) {
            return Err(AgentError::Config("userspace_batch must be 1 to 1024".into()));
        }
        if !(0..=99).contains(&self.userspace_rt_priority) {
            return Err(AgentError::Config("userspace_rt_priority must be 0 (off) to 99".into()));
        }
        if self.userspace_spin_us > 1_000_000 {
            return Err(AgentError::Config(
                "userspace_spin_us must be at most 1000000 (1 s)".into(),
            ));
        }
        if self.flow_state_port != 0 && self.flow_state_port == self.tunnel_port {
            return Err(AgentError::Config("flow_state_port must differ from tunnel_port".into()));
        }
        // A copy of a NAT binding closed by a FIN or RST lives `tcp_closing`
        // from its last use, so that the owner's idle flow of the
        // connection, which may carry the next connection on the same
        // 5-tuple with the same binding, expires first (ARCHITECTURE.md,
        // departure 20).
        let closing = midonet_state::Timeouts::default().tcp_closing;
        if u128::from(self.flow_idle_ms) >= closing.as_millis() {
            return Err(AgentError::Config(format!(
                "flow_idle_ms must be below {} (the closing timeout of a NAT binding's copies on other hosts)",
                closing.as_millis()
            )));
        }
        Ok(())
    }

    /// Where the flow-state log lives, if anywhere.
    pub fn flow_state_path(&self) -> Option<PathBuf> {
        match self.flow_state_file.as_str() {
            "off" => None,
            "" => Some(
                self.host_id_file
                    .parent()
                    .map(|d| d.join("flowstate.log"))
                    .unwrap_or_else(|| PathBuf::from("flowstate.log")),
            ),
            p => Some(PathBuf::from(p)),
        }
    }

    /// The upcall budgets the datapath enforces.
    pub fn upcall_limits(&self) -> UpcallLimits {
        UpcallLimits {
            port_rate: self.upcall_rate_per_port,
            port_burst: self.upcall_burst_per_port,
            tunnel_rate: self.upcall_rate_tunnel,
            tunnel_burst: self.upcall_burst_tunnel,
            spare_depth: self.upcall_spare_depth,
        }
    }

    /// The cluster endpoints as URIs tonic accepts: https when `cluster_ca`
    /// is set.
    pub fn cluster_uris(&self) -> Vec<String> {
        let scheme = if self.cluster_ca.is_empty() { "http" } else { "https" };
        self.cluster
            .iter()
            .map(|c| {
                if c.starts_with("http://") || c.starts_with("https://") {
                    c.clone()
                } else {
                    format!("{scheme}://{c}")
                }
            })
            .collect()
    }

    /// Where the host credential is read from.
    pub fn credential_path(&self) -> PathBuf {
        if self.credential_file.is_empty() {
            self.host_id_file
                .parent()
                .map(|d| d.join("host.credential"))
                .unwrap_or_else(|| PathBuf::from("host.credential"))
        } else {
            PathBuf::from(&self.credential_file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::from_toml("").expect("valid");
        assert_eq!(c.cluster, vec!["127.0.0.1:8182".to_string()]);
        assert_eq!(c.host_id_file, PathBuf::from("/var/lib/midonet/host_id"));
        assert_eq!(c.tunnel_port, 4789);
        assert_eq!(c.datapath, DatapathKind::Ebpf);
        assert_eq!(c.metrics_listen, "127.0.0.1:7300");
        assert_eq!(c.flow_state_port, 2925);
        assert_eq!(c.conntrack_max_entries, 1 << 20);
        assert_eq!((c.userspace_spin_us, c.userspace_batch, c.userspace_rt_priority), (30, 32, 0));
        assert!(c.userspace_merge_fins);
        assert!(
            !Config::from_toml("userspace_merge_fins = false").expect("valid").userspace_merge_fins
        );
        assert_eq!(c.cluster_uris(), vec!["http://127.0.0.1:8182".to_string()]);
        assert_eq!(c.upcall_limits(), UpcallLimits::default());
        assert_eq!(c.upcall_limits().spare_depth, 64);
        let strict = Config::from_toml("upcall_spare_depth = 0").expect("valid");
        assert_eq!(strict.upcall_limits().spare_depth, 0);
    }

    #[test]
    fn bad_values_are_rejected_with_the_key_named() {
        let e = Config::from_toml("cluster = []").expect_err("empty cluster");
        assert!(e.to_string().contains("cluster"), "{e}");
        let e = Config::from_toml("metrics_listen = \"nope\"").expect_err("bad listen");
        assert!(e.to_string().contains("metrics_listen"), "{e}");
        assert!(Config::from_toml("datapath = \"kernel\"").is_err());
        assert!(Config::from_toml("bogus = 1").is_err());
        let e = Config::from_toml("flow_state_port = 4789").expect_err("same as the tunnel");
        assert!(e.to_string().contains("flow_state_port"), "{e}");
        let e = Config::from_toml("conntrack_refresh_ms = 0").expect_err("zero refresh");
        assert!(e.to_string().contains("conntrack_refresh_ms"), "{e}");
        let e = Config::from_toml("flow_idle_ms = 120000").expect_err("outlives closing copies");
        assert!(e.to_string().contains("flow_idle_ms"), "{e}");
        assert!(Config::from_toml("flow_idle_ms = 119999").is_ok());
        for bad in ["userspace_batch = 0", "userspace_batch = 1025"] {
            let e = Config::from_toml(bad).expect_err(bad);
            assert!(e.to_string().contains("userspace_batch"), "{e}");
        }
        let e = Config::from_toml("userspace_rt_priority = 100").expect_err("past 99");
        assert!(e.to_string().contains("userspace_rt_priority"), "{e}");
        let e = Config::from_toml("userspace_spin_us = 2000000").expect_err("2 s of spinning");
        assert!(e.to_string().contains("userspace_spin_us"), "{e}");
        let c =
            Config::from_toml("datapath = \"dummy\"\ncluster = [\"10.0.0.1:1\", \"10.0.0.2:1\"]")
                .expect("ok");
        assert_eq!(c.datapath, DatapathKind::Dummy);
        assert_eq!(c.cluster.len(), 2);
        for (text, kind) in [("ebpf", DatapathKind::Ebpf), ("userspace", DatapathKind::Userspace)] {
            let c = Config::from_toml(&format!("datapath = \"{text}\"")).expect("ok");
            assert_eq!(c.datapath, kind);
        }
    }
}
