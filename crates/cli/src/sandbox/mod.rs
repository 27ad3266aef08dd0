//! `midonet sandbox`: a whole cloud on one machine (cluster, agents, hosts
//! and VMs as network namespaces) for trying and demonstrating MidoNet.
//!
//! Not implemented yet; this module is the entry point another change fills
//! in. It needs no API client: it starts its own cluster.

use clap::Args;

/// Arguments of `midonet sandbox` (to be defined with the implementation).
#[derive(Debug, Clone, Default, Args)]
pub struct SandboxArgs {
    /// Free-form arguments until the sandbox syntax is defined.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs `midonet sandbox`.
pub fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("`midonet sandbox` is not implemented yet")
}
