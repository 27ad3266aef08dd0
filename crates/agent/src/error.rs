//! The agent's error type (library side; the binary wraps it in anyhow).

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("config does not parse")]
    ConfigParse(#[source] toml::de::Error),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("i/o error {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("host id file {0} does not hold a UUID")]
    BadHostId(String),
    #[error("datapath failed")]
    Datapath(#[source] midonet_datapath::DpError),
    #[error("metrics server failed")]
    Metrics(#[source] std::io::Error),
}
