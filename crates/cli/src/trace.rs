//! `midonet trace`: ask the cluster to simulate a packet and show each
//! decision step by step.
//!
//! ```text
//! midonet trace --port <PORT-ID> eth.src=02:00:00:00:00:01 eth.dst=02:00:00:00:01:01 \
//!               ip4.dst=10.0.1.5 tcp.dst=80 [--mac BRIDGE,MAC,PORT[,VLAN]] [--arp DEVICE,IP,MAC]
//! ```
//!
//! The packet is the flow text syntax (`field=value`, separated by commas
//! or spaces; fields it implies, such as the ethertype for `ip4.*`, are
//! filled in). The cluster simulates it against the live topology and the
//! learned MAC/ARP tables (`--no-live-state` ignores those; `--mac`/`--arp`
//! seed entries), with no agent and no traffic involved. `-o json` prints
//! the server's answer as is.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use clap::Args;
use midonet_client::Client;
use serde_json::{json, Value};

use crate::Output;

/// Arguments of `midonet trace`.
#[derive(Debug, Clone, Default, Args)]
pub struct TraceArgs {
    /// The port the packet enters by (its id)
    #[arg(long, value_name = "PORT-ID")]
    pub port: Option<String>,
    /// Seed a learned MAC entry (repeatable)
    #[arg(long = "mac", value_name = "BRIDGE,MAC,PORT[,VLAN]")]
    pub macs: Vec<String>,
    /// Seed an ARP entry of a router's cache or a bridge's table (repeatable)
    #[arg(long = "arp", value_name = "DEVICE,IP,MAC")]
    pub arps: Vec<String>,
    /// Ignore the learned MAC/ARP tables in the store
    #[arg(long)]
    pub no_live_state: bool,
    /// The packet, e.g. eth.src=02:00:00:00:00:01 ip4.dst=10.0.1.5 tcp.dst=80
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "FIELD=VALUE")]
    pub packet: Vec<String>,
}

/// Builds the request body from the arguments.
pub fn request(args: &TraceArgs) -> anyhow::Result<Value> {
    let Some(port) = &args.port else {
        bail!("which port does the packet enter by? pass --port <PORT-ID>");
    };
    let packet = args.packet.join(",");
    if packet.trim().is_empty() {
        bail!("describe the packet, e.g. `midonet trace --port {port} eth.src=02:00:00:00:00:01 ip4.dst=10.0.1.5 tcp.dst=80`");
    }
    let mut macs = Vec::new();
    for m in &args.macs {
        let parts: Vec<&str> = m.split(',').map(str::trim).collect();
        let (b, mac, p, vlan) = match parts.as_slice() {
            [b, mac, p] => (b, mac, p, "0"),
            [b, mac, p, v] => (b, mac, p, *v),
            _ => bail!("--mac `{m}`: expected BRIDGE,MAC,PORT[,VLAN]"),
        };
        let vlan: u16 =
            vlan.parse().with_context(|| format!("--mac `{m}`: VLAN `{vlan}` is not a number"))?;
        macs.push(json!({"bridgeId": b, "mac": mac, "portId": p, "vlanId": vlan}));
    }
    let mut arp = Vec::new();
    for a in &args.arps {
        let parts: Vec<&str> = a.split(',').map(str::trim).collect();
        let [d, ip, mac] = parts.as_slice() else {
            bail!("--arp `{a}`: expected DEVICE,IP,MAC");
        };
        arp.push(json!({"deviceId": d, "ip": ip, "mac": mac}));
    }
    Ok(json!({
        "portId": port,
        "packet": packet,
        "liveState": !args.no_live_state,
        "state": {"macs": macs, "arp": arp},
    }))
}

/// The human-readable report of a trace answer: numbered steps with device
/// names substituted for ids, then the decision, match, actions, generated
/// packets and state writes.
pub fn render(v: &Value) -> String {
    let mut names: Vec<(String, String)> = v["names"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| {
                    n.as_str().filter(|n| !n.is_empty()).map(|n| (k.clone(), n.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    // Device steps already carry the name after the id; elsewhere the id
    // becomes the name.
    let named = |s: &str| {
        names.iter().fold(s.to_string(), |acc, (id, n)| {
            acc.replace(&format!("{id} \"{n}\""), n).replace(id, n)
        })
    };
    let mut out = String::new();
    let _ = writeln!(out, "packet: {}", v["packet"].as_str().unwrap_or(""));
    let _ = writeln!(out, "enters: port {}", v["portId"].as_str().unwrap_or(""));
    for (i, s) in v["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        let _ = writeln!(out, "{:>3}. {}", i + 1, named(s["text"].as_str().unwrap_or("?")));
    }
    let _ = writeln!(out, "decision: {}", v["decisionText"].as_str().unwrap_or(""));
    let _ = writeln!(out, "match:    {}", v["match"].as_str().unwrap_or(""));
    let actions: Vec<&str> = v["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "actions:  {}",
        if actions.is_empty() { "(none)".to_string() } else { actions.join(", ") }
    );
    for g in v["generated"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let kind = match &g["kind"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "generated: {kind} -> {} {}",
            g["target"]["kind"].as_str().unwrap_or(""),
            g["target"]["port"].as_str().unwrap_or("")
        );
    }
    for w in v["stateWrites"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let f = |k: &str| match &w[k] {
            Value::String(s) => named(s),
            other => other.to_string(),
        };
        let line = match w["table"].as_str() {
            Some("mac") => format!(
                "mac table of {}: {} vlan {} is on port {}",
                f("bridge"),
                f("mac"),
                f("vlan"),
                f("port")
            ),
            Some("router_arp") => {
                format!("arp cache of {}: {} is at {}", f("router"), f("ip"), f("mac"))
            }
            Some("bridge_arp") => {
                format!("ip table of {}: {} is at {}", f("bridge"), f("ip"), f("mac"))
            }
            _ => w.to_string(),
        };
        let _ = writeln!(out, "state write: {line}");
    }
    if v["uncacheable"].as_bool() == Some(true) {
        let _ = writeln!(out, "note: this decision cannot be cached as a megaflow");
    }
    out
}

/// Runs `midonet trace`.
pub fn run(args: TraceArgs, client: &Client, output: Output) -> anyhow::Result<()> {
    let body = request(&args)?;
    let answer = client.post_json("trace", &body).context("trace request failed")?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Id => println!("{}", answer["decision"]["kind"].as_str().unwrap_or("")),
        Output::Table => print!("{}", render(&answer)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(port: Option<&str>, packet: &[&str]) -> TraceArgs {
        TraceArgs {
            port: port.map(str::to_string),
            packet: packet.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn request_joins_packet_words_and_parses_seeds() {
        let mut a =
            args(Some("p1"), &["eth.src=02:00:00:00:00:01", "ip4.dst=10.0.1.5,", "tcp.dst=80"]);
        a.macs = vec!["b1,02:00:00:00:00:02,p2".into(), "b1,02:00:00:00:00:03,p3,100".into()];
        a.arps = vec!["r1,10.0.1.5,02:00:00:00:00:05".into()];
        let v = request(&a).expect("valid");
        assert_eq!(v["packet"], "eth.src=02:00:00:00:00:01,ip4.dst=10.0.1.5,,tcp.dst=80");
        assert_eq!(v["state"]["macs"][1]["vlanId"], 100);
        assert_eq!(v["state"]["arp"][0]["deviceId"], "r1");
        assert_eq!(v["liveState"], true);
    }

    #[test]
    fn request_says_what_is_missing() {
        let e = request(&args(None, &["ip4.dst=1.2.3.4"])).expect_err("no port");
        assert!(e.to_string().contains("--port"));
        let e = request(&args(Some("p"), &[])).expect_err("no packet");
        assert!(e.to_string().contains("describe the packet"));
        let mut a = args(Some("p"), &["ip4.dst=1.2.3.4"]);
        a.macs = vec!["only,two".into()];
        assert!(request(&a).expect_err("bad seed").to_string().contains("BRIDGE,MAC,PORT"));
    }

    #[test]
    fn trace_runs_against_a_real_cluster_with_no_agent() {
        use midonet_client::Auth;
        use midonet_cluster::testing::TestCluster;
        let c = TestCluster::start("memory:", true);
        let client = Client::new(&c.url(), Auth::Token(c.admin_token()));
        let b = client.create("bridges", &json!({"name": "net"})).expect("bridge");
        let ports = b["ports"].as_str().expect("ports link").to_string();
        let p1 = client.create(&ports, &json!({"type": "Bridge"})).expect("port");
        let p2 = client.create(&ports, &json!({"type": "Bridge"})).expect("port");
        let id = |v: &Value| v["id"].as_str().expect("id").to_string();
        let mut a = args(
            Some(&id(&p1)),
            &[
                "eth.src=02:00:00:00:00:01",
                "eth.dst=02:00:00:00:00:02",
                "ip4.dst=10.0.0.2",
                "udp.dst=53",
            ],
        );
        a.macs = vec![format!("{},02:00:00:00:00:02,{}", id(&b), id(&p2))];
        let answer = client.post_json("trace", &request(&a).expect("request")).expect("trace");
        let text = render(&answer);
        assert!(text.contains("enter bridge net\n"), "{text}");
        assert!(
            text.contains("state write: mac table of net: 02:00:00:00:00:01 vlan 0 is on port"),
            "{text}"
        );
        assert!(text.contains(&format!("is on port {}", id(&p2))), "{text}");
        // p2 is not bound to a host: the unicast ends there.
        assert!(text.contains("decision: drop (port_unplugged"), "{text}");
        run(a, &client, Output::Id).expect("runs");
    }
}
