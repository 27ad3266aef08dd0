//! `midonet trace`: ask the cluster to simulate a packet and show each
//! decision step by step.
//!
//! Not implemented yet; this module is the entry point another change fills
//! in. It receives a ready [`Client`] and the chosen [`Output`].

use clap::Args;
use midonet_client::Client;

use crate::Output;

/// Arguments of `midonet trace` (to be defined with the implementation).
#[derive(Debug, Clone, Default, Args)]
pub struct TraceArgs {
    /// Free-form arguments until the trace syntax is defined.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs `midonet trace`.
pub fn run(args: TraceArgs, client: &Client, output: Output) -> anyhow::Result<()> {
    let _ = (args, client, output);
    anyhow::bail!("`midonet trace` is not implemented yet")
}
