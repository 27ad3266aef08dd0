//! midonet-cli: the `midonet` command.
//!
//! ```text
//! midonet [--url URL] [--user U --password P [--project P] | --token T | --no-auth]
//!         [-o table|json|id] [--config FILE] <resource> <verb> ...
//! midonet trace ...      (module `trace`)
//! midonet sandbox ...    (module `sandbox`)
//! ```
//!
//! Layout:
//! * [`resources`]: the table of resources (collections, parents, model
//!   type, columns); [`flags`] derives each resource's flags from its model
//!   type (`midonet-model`'s field descriptions), [`rule`] writes out the
//!   rule flags; [`commands`] turns the table into clap subcommands and runs
//!   the verbs; [`fields`] maps flag text to JSON; [`render`] prints tables
//!   or JSON.
//! * [`config`]: flags > environment > `cli.toml` > defaults.
//! * Talking to the API goes through `midonet-client`; this crate adds only
//!   argument handling, output, and errors that say what to fix.
//!
//! The top-level command is built with clap's builder API because the
//! resource subcommands come from a table; the global options and the
//! `trace`/`sandbox` arguments are derive structs grafted onto it.

pub mod agent_http;
pub mod commands;
pub mod config;
pub mod conntrack;
pub mod fields;
pub mod flags;
pub mod flows;
pub mod lb;
pub mod nat;
pub mod render;
pub mod resources;
pub mod rule;
pub mod sandbox;
pub mod trace;

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches as _, ValueEnum};
use midonet_client::{Auth, ClientError};
use serde::Deserialize;

pub use config::{Settings, DEFAULT_URL};
pub use sandbox::SandboxArgs;
pub use trace::TraceArgs;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// Human-readable tables.
    Table,
    /// The server's JSON, pretty-printed.
    Json,
    /// Only ids (or URIs of id-less entries), one per line: for scripts.
    Id,
}

// Options accepted before or after any subcommand. (A `//` comment: a doc
// comment would become the top-level `about`.)
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// API base URL, or several replicas' separated by commas (tried in
    /// turn when one cannot be reached) [default:
    /// http://127.0.0.1:8181/midonet-api]
    #[arg(long, env = "MIDONET_URL", global = true)]
    pub url: Option<String>,
    /// CA certificate(s) (PEM) to trust for https URLs, instead of the
    /// built-in public roots
    #[arg(long, env = "MIDONET_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// User to log in as (HTTP Basic at {url}/login)
    #[arg(long, env = "MIDONET_USER", global = true)]
    pub user: Option<String>,
    /// Password for --user
    #[arg(long, env = "MIDONET_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// Project (sent as X-Auth-Project on login)
    #[arg(long, env = "MIDONET_PROJECT", global = true)]
    pub project: Option<String>,
    /// Use this token instead of logging in
    #[arg(long, env = "MIDONET_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Send no credentials at all
    #[arg(long, global = true)]
    pub no_auth: bool,
    /// Output format [default: table]
    #[arg(short = 'o', long, env = "MIDONET_OUTPUT", value_enum, global = true)]
    pub output: Option<Output>,
    /// Config file [default: ~/.config/midonet/cli.toml]
    #[arg(long, env = "MIDONET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Whether `token` came from MIDONET_TOKEN rather than `--token`: a
    /// `--user` on the command line must beat a token from the environment.
    #[arg(skip)]
    pub token_from_env: bool,
    /// Whether `user` came from MIDONET_USER rather than `--user`.
    #[arg(skip)]
    pub user_from_env: bool,
}

enum Cmd {
    Trace(TraceArgs),
    Flows(flows::FlowsArgs),
    Conntrack(conntrack::ConntrackArgs),
    Nat(nat::NatArgs),
    Sandbox(SandboxArgs),
    Resource(&'static resources::ResourceSpec, ArgMatches),
}

/// A parsed command line.
pub struct Cli {
    pub global: GlobalOpts,
    cmd: Cmd,
}

impl Cli {
    /// The full clap command (for help, completions and tests).
    pub fn command() -> clap::Command {
        let mut cmd = clap::Command::new("midonet")
            .about("Manage a MidoNet virtual network through its REST API")
            .version(env!("CARGO_PKG_VERSION"))
            .subcommand_required(true)
            .arg_required_else_help(true)
            .after_help(
                "Examples:\n  midonet bridge create --name br0\n  \
                 midonet port create --router r1 --port-address 10.0.0.1 --network 10.0.0.0/24\n  \
                 midonet rule create --chain web --type accept --nw-proto tcp --tp-dst 80:81\n  \
                 midonet -o json bridge list\n\n\
                 Settings: flags, then environment (MIDONET_URL, MIDONET_CA, MIDONET_USER,\n  \
                 MIDONET_PASSWORD, MIDONET_PROJECT, MIDONET_TOKEN, MIDONET_OUTPUT), then the config\n  \
                 file (--config, default ~/.config/midonet/cli.toml; keys: url, ca, user, password,\n  \
                 project, token, output). Default URL: http://127.0.0.1:8181/midonet-api\n  \
                 Several replicas: --url http://a:8181/midonet-api,http://b:8181/midonet-api",
            );
        cmd = GlobalOpts::augment_args(cmd)
            .about("Manage a MidoNet virtual network through its REST API");
        for spec in resources::RESOURCES {
            cmd = cmd.subcommand(commands::resource_command(spec));
        }
        // `augment_args` copies the structs' doc comments into `about`, so
        // the about text is set after it.
        cmd.subcommand(
            TraceArgs::augment_args(clap::Command::new("trace"))
                .about("simulate a packet through the virtual topology"),
        )
        .subcommand(
            flows::FlowsArgs::augment_args(clap::Command::new("flows"))
                .about("list the flows an agent has installed (its GET /flows)"),
        )
        .subcommand(
            conntrack::ConntrackArgs::augment_args(clap::Command::new("conntrack"))
                .about("list or flush the connections an agent tracks (its GET /conntrack)"),
        )
        .subcommand(
            nat::NatArgs::augment_args(clap::Command::new("nat"))
                .about("list the NAT bindings an agent holds (its GET /nat)"),
        )
        .subcommand(
            SandboxArgs::augment_args(clap::Command::new("sandbox"))
                .about("run a whole MidoNet cloud on this machine"),
        )
    }

    /// Parses the process arguments; prints help or the error and exits on
    /// bad input.
    pub fn parse() -> Cli {
        match Self::try_parse_from(std::env::args_os()) {
            Ok(c) => c,
            Err(e) => e.exit(),
        }
    }

    /// Parses the given arguments (the first is the program name).
    pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let m = Self::command().try_get_matches_from(args)?;
        let mut global = GlobalOpts::from_arg_matches(&m)?;
        let from_env =
            |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::EnvVariable);
        global.token_from_env = from_env("token");
        global.user_from_env = from_env("user");
        let (name, sub) = m
            .subcommand()
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingSubcommand))?;
        let cmd = match name {
            "trace" => Cmd::Trace(TraceArgs::from_arg_matches(sub)?),
            "flows" => Cmd::Flows(flows::FlowsArgs::from_arg_matches(sub)?),
            "conntrack" => Cmd::Conntrack(conntrack::ConntrackArgs::from_arg_matches(sub)?),
            "nat" => Cmd::Nat(nat::NatArgs::from_arg_matches(sub)?),
            "sandbox" => Cmd::Sandbox(SandboxArgs::from_arg_matches(sub)?),
            other => Cmd::Resource(
                resources::find(other)
                    .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))?,
                sub.clone(),
            ),
        };
        Ok(Cli { global, cmd })
    }
}

/// Runs a parsed command, printing to stdout.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    run_with_output(cli, &mut lock)
}

/// Runs a parsed command, printing results to `out` (errors are returned).
pub fn run_with_output(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Sandbox(args) => return sandbox::run(args),
        // The agent, not the cluster: no API settings involved.
        Cmd::Flows(args) => {
            let output = cli.global.output.unwrap_or(Output::Table);
            return flows::run(args, output, out);
        }
        Cmd::Conntrack(args) => {
            let output = cli.global.output.unwrap_or(Output::Table);
            return conntrack::run(args, output, out);
        }
        Cmd::Nat(args) => {
            let output = cli.global.output.unwrap_or(Output::Table);
            return nat::run(args, output, out);
        }
        _ => {}
    }
    let settings = config::resolve(&cli.global)?;
    let client = settings.client()?;
    let result = match cli.cmd {
        Cmd::Trace(args) => trace::run(args, &client, settings.output),
        Cmd::Resource(spec, m) => {
            let mut ctx = commands::Ctx { client: &client, output: settings.output, out };
            commands::run(&mut ctx, spec, &m)
        }
        Cmd::Sandbox(_) | Cmd::Flows(_) | Cmd::Conntrack(_) | Cmd::Nat(_) => {
            unreachable!("handled above")
        }
    };
    result.map_err(|e| explain(e, &settings))
}

/// Adds a hint that says what to fix to errors a user can fix.
pub fn explain(err: anyhow::Error, s: &Settings) -> anyhow::Error {
    let Some(ce) = err.chain().find_map(|c| c.downcast_ref::<ClientError>()) else {
        return err;
    };
    let where_from = match &s.config_file {
        Some(p) => format!("--url, MIDONET_URL or `url` in {}", p.display()),
        None => "--url or MIDONET_URL".to_owned(),
    };
    let hint = match ce {
        ClientError::Connect { .. } => format!(
            "is the cluster running at {}? start it with `midonet-cluster`, or point {where_from} at it",
            s.url
        ),
        ClientError::Login { user, .. } => format!(
            "check the password of `{user}` (--password / MIDONET_PASSWORD) and the project \
             (--project / MIDONET_PROJECT)"
        ),
        ClientError::Unauthorized { .. } => match &s.auth {
            Auth::None => "the cluster requires credentials: pass --user U --password P \
                           [--project P] (or MIDONET_USER / MIDONET_PASSWORD / MIDONET_PROJECT, \
                           or `user`/`password` in the config file), or --token T"
                .to_owned(),
            Auth::Token(_) => "the token (--token / MIDONET_TOKEN / `token` in the config file) \
                               was rejected: get a new one or log in with --user/--password"
                .to_owned(),
            Auth::Password { user, .. } => {
                format!("logged in as `{user}`, but the cluster still refused the request")
            }
        },
        ClientError::Api { error, .. } if error.status == 403 => match &s.auth {
            Auth::Password { user, .. } => format!(
                "`{user}` may not do this: hosts, tunnel zones and other tenants' objects need an admin"
            ),
            _ => "these credentials may not do this: hosts, tunnel zones and other tenants' \
                  objects need an admin"
                .to_owned(),
        },
        ClientError::MissingLink(_) => format!(
            "{} does not look like a MidoNet API root (the default is {DEFAULT_URL}); check {where_from}",
            s.url
        ),
        ClientError::Api { url, error, .. }
            if error.status == 404 && url.trim_end_matches('/') == s.url.trim_end_matches('/') =>
        {
            format!("there is no MidoNet API at {}; check {where_from} (the default is {DEFAULT_URL})", s.url)
        }
        _ => return err,
    };
    anyhow::anyhow!("{err:#}\nhint: {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "midonet",
            "bridge",
            "list",
            "-o",
            "json",
            "--url",
            "http://x:1/api",
            "--no-auth",
        ])
        .expect("parses");
        assert_eq!(cli.global.output, Some(Output::Json));
        assert_eq!(cli.global.url.as_deref(), Some("http://x:1/api"));
        assert!(cli.global.no_auth);
        assert!(matches!(cli.cmd, Cmd::Resource(s, _) if s.name == "bridge"));
    }

    #[test]
    fn trace_and_sandbox_are_declared() {
        // Declaration only: their arguments and behaviour are tested in
        // their own modules (running `sandbox up` would build a sandbox).
        let cmd = Cli::command();
        assert!(cmd.find_subcommand("trace").is_some());
        assert!(cmd.find_subcommand("sandbox").is_some());
        let cli = Cli::try_parse_from(["midonet", "--no-auth", "trace"]).expect("parses");
        assert!(matches!(cli.cmd, Cmd::Trace(_)));
    }

    #[test]
    fn aliases_resolve_to_resources() {
        let cli = Cli::try_parse_from(["midonet", "tz", "ls"]).expect("parses");
        assert!(matches!(cli.cmd, Cmd::Resource(s, _) if s.name == "tunnel-zone"));
    }

    #[test]
    fn connection_refused_says_how_to_start_the_cluster() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let url = format!("http://127.0.0.1:{port}/midonet-api");
        let cli = Cli::try_parse_from([
            "midonet",
            "--url",
            &url,
            "--no-auth",
            "--config",
            "/dev/null",
            "bridge",
            "list",
        ])
        .expect("parses");
        let e = run_with_output(cli, &mut Vec::new()).expect_err("nothing listens");
        let text = format!("{e:#}");
        assert!(
            text.contains("is the cluster running at") && text.contains("midonet-cluster"),
            "{text}"
        );
    }
}
