//! `midonet flows`: the flows an agent has installed, read from the agent's
//! own endpoint (`GET /flows` on its `metrics_listen` address), so a user
//! can see which megaflows carry the traffic and whether they churn.
//!
//! ```text
//! midonet flows                                   the agent on 127.0.0.1:7300
//! midonet flows --agent 10.0.0.5:7300 --limit 20
//! midonet flows --netns mns-h0                    an agent inside a namespace (root)
//! midonet -o json flows                           the agent's JSON as is
//! ```
//!
//! The agent answers with every flow, busiest first: its match (the masked
//! key, as `midonet trace` prints a megaflow), actions, tags, packets,
//! bytes, idle time and age, and the virtual port it came in on.

use anyhow::{anyhow, Result};
use clap::Args;
use comfy_table::{presets, Table};
use serde_json::Value;

use crate::agent_http::AgentAddr;
use crate::Output;

/// Arguments of `midonet flows`.
#[derive(Debug, Clone, Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub at: AgentAddr,
    /// Show at most this many flows (the busiest); 0 = all
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Runs `midonet flows`, printing to `out`.
pub fn run(args: FlowsArgs, output: Output, out: &mut dyn std::io::Write) -> Result<()> {
    let body = args.at.get("/flows")?;
    if let Some(e) = body.get("error").and_then(Value::as_str) {
        return Err(anyhow!("the agent could not list its flows: {e}"));
    }
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?,
        Output::Id => {
            for f in flows(&body, args.limit) {
                writeln!(out, "{}", f.get("id").and_then(Value::as_u64).unwrap_or_default())?;
            }
        }
        Output::Table => writeln!(out, "{}", render(&body, args.limit))?,
    }
    Ok(())
}

fn flows(body: &Value, limit: usize) -> impl Iterator<Item = &Value> {
    let all = body.get("flows").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let n = if limit == 0 { all.len() } else { limit.min(all.len()) };
    all[..n].iter()
}

/// The table: one row per flow, then a line with the totals.
fn render(body: &Value, limit: usize) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header(["packets", "bytes", "idle", "age", "port", "match", "actions", "tags"]);
    let num = |f: &Value, k: &str| f.get(k).and_then(Value::as_u64).unwrap_or_default();
    let text = |f: &Value, k: &str| f.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let mut shown = 0;
    for f in flows(body, limit) {
        shown += 1;
        let port = f
            .get("port")
            .and_then(Value::as_str)
            .map(short_id)
            .unwrap_or_else(|| text(f, "in_port"));
        let tags = f.get("tags").and_then(Value::as_array).map(Vec::len).unwrap_or_default();
        t.add_row([
            num(f, "packets").to_string(),
            num(f, "bytes").to_string(),
            ms(num(f, "idle_ms")),
            ms(num(f, "age_ms")),
            port,
            text(f, "match"),
            text(f, "actions"),
            tags.to_string(),
        ]);
    }
    let total = body.get("count").and_then(Value::as_u64).unwrap_or_default();
    format!(
        "{t}\n{shown} of {total} flows on host {} ({} datapath)",
        body.get("host").and_then(Value::as_str).unwrap_or("?"),
        body.get("provider").and_then(Value::as_str).unwrap_or("?")
    )
}

/// The first block of a UUID: enough to tell ports apart in a table.
pub(crate) fn short_id(id: &str) -> String {
    id.split('-').next().unwrap_or(id).to_owned()
}

fn ms(v: u64) -> String {
    if v < 1_000 {
        format!("{v}ms")
    } else if v < 120_000 {
        format!("{:.1}s", v as f64 / 1e3)
    } else {
        format!("{}m", v / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        serde_json::json!({
            "host": "h-1", "provider": "ebpf", "count": 3,
            "flows": [
                {"id": 7, "in_port": "in_port=3", "port": "0b8c1e2a-0000-4000-8000-000000000001",
                 "match": "in_port=3,eth.dst=02:00:00:00:00:02", "actions": "output(4)",
                 "tags": ["0x0000000000000001", "0x0000000000000002"],
                 "packets": 900, "bytes": 90000, "idle_ms": 12, "age_ms": 61000},
                {"id": 2, "in_port": "tun_key=0x5", "port": null, "match": "tun_key=0x5", "actions": "drop",
                 "tags": [], "packets": 3, "bytes": 180, "idle_ms": 3000, "age_ms": 200000},
                {"id": 9, "in_port": "in_port=3", "port": null, "match": "*", "actions": "drop",
                 "tags": [], "packets": 0, "bytes": 0, "idle_ms": 0, "age_ms": 0}
            ]
        })
    }

    #[test]
    fn table_shows_match_actions_counters_and_age() {
        let s = render(&body(), 2);
        for want in [
            "in_port=3,eth.dst=02:00:00:00:00:02",
            "output(4)",
            "900",
            "61.0s",
            "0b8c1e2a",
            "tun_key=0x5",
            "3m",
            "2 of 3 flows on host h-1 (ebpf datapath)",
        ] {
            assert!(s.contains(want), "{want} missing from\n{s}");
        }
        assert!(!s.contains("│ *"), "the third flow is past the limit:\n{s}");
    }

    #[test]
    fn an_unreachable_agent_is_a_clear_error() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let at = AgentAddr { agent: format!("127.0.0.1:{port}"), netns: None };
        let args = FlowsArgs { at, limit: 0 };
        let e = run(args, Output::Table, &mut Vec::new()).expect_err("nothing listens");
        assert!(format!("{e:#}").contains("cannot reach the agent"), "{e:#}");
    }
}
