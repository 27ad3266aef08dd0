//! `midonet nat list`: the NAT bindings an agent holds (its `GET /nat`):
//! dynamic SNAT and DNAT translations, each keyed by the connection as it
//! reached the translating device.
//!
//! ```text
//! midonet nat list                           the agent on 127.0.0.1:7300
//! midonet nat list --netns mns-h0 --limit 20 an agent inside a namespace (root)
//! midonet -o json nat list                   the agent's JSON as is
//! ```

use anyhow::Result;
use clap::{Args, ValueEnum};
use comfy_table::{presets, Table};
use serde_json::Value;

use crate::agent_http::AgentAddr;
use crate::conntrack::key_text;
use crate::flows::short_id;
use crate::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Action {
    /// List the NAT bindings
    List,
}

/// Arguments of `midonet nat`.
#[derive(Debug, Clone, Args)]
pub struct NatArgs {
    /// What to do
    #[arg(value_enum)]
    pub action: Action,
    #[command(flatten)]
    pub at: AgentAddr,
    /// Show at most this many bindings
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Runs `midonet nat`, printing to `out`.
pub fn run(args: NatArgs, output: Output, out: &mut dyn std::io::Write) -> Result<()> {
    let Action::List = args.action;
    let body = args.at.get(&format!("/nat?limit={}", args.limit))?;
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?,
        Output::Id => {
            for b in bindings(&body) {
                writeln!(out, "{}", row(b)[0])?;
            }
        }
        Output::Table => writeln!(out, "{}", render(&body))?,
    }
    Ok(())
}

fn bindings(body: &Value) -> &[Value] {
    body.get("bindings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// connection, kind, translated to, expires in, device.
fn row(b: &Value) -> [String; 5] {
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let n = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or_default();
    [
        key_text(b),
        s("kind"),
        format!("{}:{}", s("ip"), n("port")),
        format!("{}s", n("expires_in_s")),
        short_id(&s("tracker")),
    ]
}

fn render(body: &Value) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header(["connection", "kind", "translated to", "expires in", "device"]);
    let list = bindings(body);
    for b in list {
        t.add_row(row(b));
    }
    let total = body.get("count").and_then(Value::as_u64).unwrap_or_default();
    format!(
        "{t}\n{} of {total} bindings on host {}",
        list.len(),
        body.get("host").and_then(Value::as_str).unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_the_connection_and_its_translation() {
        let body = serde_json::json!({
            "host": "h-1", "count": 1,
            "bindings": [
                {"kind": "snat", "tracker": "0b8c1e2a-0000-4000-8000-000000000001", "proto": 6,
                 "src": "10.1.0.2", "src_port": 40000, "dst": "192.0.2.2", "dst_port": 8000,
                 "ip": "192.0.2.1", "port": 1030, "expires_in_s": 299}
            ]
        });
        let s = render(&body);
        for want in ["tcp 10.1.0.2:40000 > 192.0.2.2:8000", "snat", "192.0.2.1:1030", "299s"] {
            assert!(s.contains(want), "{want} missing from\n{s}");
        }
        assert!(s.contains("1 of 1 bindings on host h-1"), "{s}");
    }
}
