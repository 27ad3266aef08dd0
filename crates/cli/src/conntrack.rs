//! `midonet conntrack`: the connections an agent tracks (its `GET
//! /conntrack`), and forgetting them (`POST /conntrack/flush`).
//!
//! ```text
//! midonet conntrack list                            the agent on 127.0.0.1:7300
//! midonet conntrack list --netns mns-h0 --limit 20  an agent inside a namespace (root)
//! midonet conntrack flush --tracker <device-uuid>   one device's connections
//! midonet -o json conntrack list                    the agent's JSON as is
//! ```
//!
//! A connection is shown by its forward key (the first packet as it left,
//! at the device that tracks it), its state (`syn_sent`, `new`, `replied`,
//! `closing`, `closed`) and the seconds it has left without traffic.
//! Flushing re-simulates the flows that used the connections: a stateful
//! rule then sees their next packet as a new connection.

use anyhow::Result;
use clap::{Args, ValueEnum};
use comfy_table::{presets, Table};
use serde_json::Value;

use crate::agent_http::AgentAddr;
use crate::flows::short_id;
use crate::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Action {
    /// List the tracked connections
    List,
    /// Forget tracked connections (all, or one device's with --tracker)
    Flush,
}

/// Arguments of `midonet conntrack`.
#[derive(Debug, Clone, Args)]
pub struct ConntrackArgs {
    /// What to do
    #[arg(value_enum)]
    pub action: Action,
    #[command(flatten)]
    pub at: AgentAddr,
    /// list: show at most this many connections
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// flush: only the connections tracked by this device (bridge or router id)
    #[arg(long, value_name = "UUID")]
    pub tracker: Option<uuid::Uuid>,
}

/// Runs `midonet conntrack`, printing to `out`.
pub fn run(args: ConntrackArgs, output: Output, out: &mut dyn std::io::Write) -> Result<()> {
    match args.action {
        Action::List => {
            let body = args.at.get(&format!("/conntrack?limit={}", args.limit))?;
            match output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?,
                Output::Id => {
                    for c in conns(&body) {
                        writeln!(out, "{}", key_text(c))?;
                    }
                }
                Output::Table => writeln!(out, "{}", render(&body))?,
            }
        }
        Action::Flush => {
            let path = match args.tracker {
                Some(t) => format!("/conntrack/flush?tracker={t}"),
                None => "/conntrack/flush".to_owned(),
            };
            let body = args.at.post(&path)?;
            let n = body.get("flushed").and_then(Value::as_u64).unwrap_or_default();
            match output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?,
                _ => writeln!(out, "flushed {n} connections")?,
            }
        }
    }
    Ok(())
}

fn conns(body: &Value) -> &[Value] {
    body.get("connections").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn proto_name(p: u64) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        p => p.to_string(),
    }
}

/// `tcp 10.0.0.1:4000 > 10.0.0.2:80` from a row's key fields (also
/// `midonet nat list`'s rows).
pub(crate) fn key_text(c: &Value) -> String {
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or_default();
    format!(
        "{} {}:{} > {}:{}",
        proto_name(n("proto")),
        s("src"),
        n("src_port"),
        s("dst"),
        n("dst_port")
    )
}

/// The table: one row per connection, then a line with the totals.
fn render(body: &Value) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header(["connection", "state", "expires in", "tracked by"]);
    let rows = conns(body);
    for c in rows {
        let tracker = c.get("tracker").and_then(Value::as_str).map(short_id).unwrap_or_default();
        let left = c.get("expires_in_s").and_then(Value::as_u64).unwrap_or_default();
        t.add_row([
            key_text(c),
            c.get("state").and_then(Value::as_str).unwrap_or("?").to_owned(),
            format!("{left}s"),
            tracker,
        ]);
    }
    let total = body.get("count").and_then(Value::as_u64).unwrap_or_default();
    format!(
        "{t}\n{} of {total} connections on host {}",
        rows.len(),
        body.get("host").and_then(Value::as_str).unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_the_key_state_and_time_left() {
        let body = serde_json::json!({
            "host": "h-1", "count": 5,
            "connections": [
                {"tracker": "0b8c1e2a-0000-4000-8000-000000000001", "proto": 6,
                 "src": "10.1.0.2", "src_port": 50716, "dst": "10.1.0.1", "dst_port": 7000,
                 "state": "replied", "expires_in_s": 431999}
            ]
        });
        let s = render(&body);
        for want in ["tcp 10.1.0.2:50716 > 10.1.0.1:7000", "replied", "431999s", "0b8c1e2a"] {
            assert!(s.contains(want), "{want} missing from\n{s}");
        }
        assert!(s.contains("1 of 5 connections on host h-1"), "{s}");
    }
}
