//! `midonet-cluster`: serves the MidoNet REST API over the topology store.
//! Thin: parse flags, set up logging, call `midonet_cluster::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// MidoNet-compatible cluster: REST API at http://<listen>/midonet-api,
/// OpenStack Neutron v2.0 API at http://<neutron_listen>/ and <listen>/neutron,
/// Prometheus metrics at http://<listen>/metrics, OpenAPI document at
/// /midonet-api/openapi.json.
#[derive(Debug, Parser)]
#[command(name = "midonet-cluster", version)]
struct Args {
    /// TOML configuration file (listen, store, public_url, neutron_listen,
    /// [auth] users,
    /// [[tenants]]). Every key is optional; flags below override it.
    #[arg(long, short = 'c', env = "MIDONET_CLUSTER_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the REST API, e.g. 0.0.0.0:8181 [default: 127.0.0.1:8181].
    #[arg(long, env = "MIDONET_CLUSTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Topology store: embedded:/path/file.redb (single node), memory:
    /// (lost on exit) or etcd://host:port[,host:port...]
    /// [default: embedded:/var/lib/midonet/cluster.redb].
    #[arg(long, env = "MIDONET_CLUSTER_STORE")]
    store: Option<String>,
    /// Disable authentication: every request is an admin request. For
    /// private development setups only.
    #[arg(long)]
    no_auth: bool,
    /// Log line format. The level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("midonet-cluster: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }
    let mut cfg = match &args.config {
        Some(p) => {
            midonet_cluster::Config::load(p).with_context(|| format!("loading {}", p.display()))?
        }
        None => midonet_cluster::Config::default(),
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(s) = args.store {
        cfg.store = s;
    }
    if args.no_auth {
        cfg.auth.enabled = false;
    }
    if let Some(path) = cfg.store.strip_prefix("embedded:") {
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the store directory {}", dir.display()))?;
            }
        }
    }
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            wait_for_signal().await;
            tracing::info!("shutting down");
        };
        midonet_cluster::run(cfg, shutdown).await
    })
    .context("cluster failed")?;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (systemd, docker stop).
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the cluster");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
