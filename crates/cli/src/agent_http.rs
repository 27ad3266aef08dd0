//! Talking to an agent's own HTTP endpoints (its `metrics_listen`
//! address): `GET /flows`, `GET /conntrack`, `POST /conntrack/flush`.
//! The agent, not the cluster: no API settings are involved. An agent in
//! another network namespace (a sandbox host) is reached from a thread
//! that has entered it.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// Where the agent is.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentAddr {
    /// The agent's metrics address (its `metrics_listen`)
    #[arg(long, default_value = "127.0.0.1:7300", value_name = "IP:PORT")]
    pub agent: String,
    /// Reach the agent inside this network namespace (/run/netns/NAME; needs root)
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

impl AgentAddr {
    /// `GET path` (with its query), as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path)
    }

    /// `POST path` (with its query), as JSON.
    pub fn post(&self, path: &str) -> Result<Value> {
        self.call("POST", path)
    }

    fn call(&self, method: &'static str, path: &str) -> Result<Value> {
        let url = format!("http://{}{path}", self.agent);
        match &self.netns {
            None => request(method, &url),
            Some(ns) => in_netns(ns, move || request(method, &url)),
        }
    }
}

fn request(method: &str, url: &str) -> Result<Value> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let resp = match agent.request(method, url).call() {
        Ok(r) => r,
        // The agent says what was wrong with the request in its body.
        Err(ureq::Error::Status(code, r)) => {
            let body: Value = r.into_json().unwrap_or(Value::Null);
            let why = body.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            return Err(anyhow!("the agent refused {url} ({code}): {why}"));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot reach the agent at {url} (is it running, and is `metrics_listen` this address?)"
            )))
        }
    };
    resp.into_json().with_context(|| format!("{url} did not answer JSON"))
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("--netns {ns}: {path}"))?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| anyhow!("entering the network namespace ({e}); this needs root"))?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("the namespace thread panicked"))?
}
