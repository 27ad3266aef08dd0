//! `midonet-agent`: the per-host agent. Thin: parse flags, set up logging,
//! call `midonet_agent::run` until SIGTERM/SIGINT.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "midonet-agent", version, about = "midonet-rs per-host agent")]
struct Args {
    /// TOML config file (every key optional; see midonet_agent::config).
    #[arg(short, long, env = "MIDONET_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Cluster topology-service address(es), host:port; overrides the file.
    #[arg(long = "cluster", value_delimiter = ',')]
    cluster: Vec<String>,
    /// Host id file; overrides the file.
    #[arg(long)]
    host_id_file: Option<PathBuf>,
    /// Host credential file (from `midonet host enroll`); overrides the file.
    #[arg(long)]
    credential_file: Option<PathBuf>,
    /// PEM of the CA that signed the cluster's certificate (TLS); overrides
    /// the file.
    #[arg(long)]
    cluster_ca: Option<PathBuf>,
    /// Metrics listen address (empty = off); overrides the file.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Datapath provider: ebpf | userspace | dummy; overrides the file.
    #[arg(long)]
    datapath: Option<String>,
    /// Threads that simulate misses (0 = on the datapath's thread);
    /// overrides the file.
    #[arg(long, env = "MIDONET_AGENT_MISS_WORKERS")]
    miss_workers: Option<usize>,
    /// Whether the datapath reverse-translates NATed replies itself
    /// (`kernel_rev_nat`: true | false); overrides the file.
    #[arg(long, env = "MIDONET_AGENT_KERNEL_REV_NAT")]
    kernel_rev_nat: Option<bool>,
    /// userspace datapath: how long its thread polls after the last packet
    /// before it sleeps, µs (`userspace_spin_us`); overrides the file.
    #[arg(long, env = "MIDONET_AGENT_USERSPACE_SPIN_US")]
    userspace_spin_us: Option<u64>,
    /// userspace datapath: SCHED_FIFO priority of its thread, 0 = off
    /// (`userspace_rt_priority`); overrides the file.
    #[arg(long, env = "MIDONET_AGENT_USERSPACE_RT_PRIORITY")]
    userspace_rt_priority: Option<i32>,
    /// userspace datapath: packets per receive and transmit batch
    /// (`userspace_batch`); overrides the file.
    #[arg(long, env = "MIDONET_AGENT_USERSPACE_BATCH")]
    userspace_batch: Option<usize>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if args.log_json {
        tracing_subscriber::fmt().with_env_filter(filter).json().init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .init();
    }
    let mut cfg = match &args.config {
        Some(p) => {
            midonet_agent::Config::load(p).with_context(|| format!("loading {}", p.display()))?
        }
        None => midonet_agent::Config::default(),
    };
    if !args.cluster.is_empty() {
        cfg.cluster = args.cluster.clone();
    }
    if let Some(p) = args.host_id_file {
        cfg.host_id_file = p;
    }
    if let Some(p) = args.credential_file {
        cfg.credential_file = p.display().to_string();
    }
    if let Some(p) = args.cluster_ca {
        cfg.cluster_ca = p.display().to_string();
    }
    if let Some(m) = args.metrics_listen {
        cfg.metrics_listen = m;
    }
    if let Some(n) = args.miss_workers {
        cfg.miss_workers = n;
    }
    if let Some(us) = args.userspace_spin_us {
        cfg.userspace_spin_us = us;
    }
    if let Some(b) = args.userspace_batch {
        cfg.userspace_batch = b;
    }
    if let Some(p) = args.userspace_rt_priority {
        cfg.userspace_rt_priority = p;
    }
    if let Some(on) = args.kernel_rev_nat {
        cfg.kernel_rev_nat = on;
    }
    if let Some(d) = args.datapath {
        cfg.datapath = match d.as_str() {
            "ebpf" => midonet_agent::DatapathKind::Ebpf,
            "userspace" => midonet_agent::DatapathKind::Userspace,
            "dummy" => midonet_agent::DatapathKind::Dummy,
            other => anyhow::bail!("unknown datapath `{other}` (ebpf | userspace | dummy)"),
        };
    }
    cfg.check().context("invalid configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(async move {
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGTERM handler; only ctrl-c stops the agent");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
            }
        };
        midonet_agent::run(cfg, shutdown).await.context("agent failed")
    });
    // Do not wait on stray blocking work (a scan, a resolver) at exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    result.map_err(|e| {
        eprintln!("midonet-agent: {e:#}");
        e
    })
}
