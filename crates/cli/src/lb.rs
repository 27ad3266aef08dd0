//! `midonet lb status [LB]`: every member of every pool of the load
//! balancers (or of one), with its weight, admin state and health, and the
//! VIPs in front of each pool. Built from the API's collections.
//!
//! ```text
//! LOAD BALANCER  VIPS             POOL      MONITOR     MEMBER    ADDRESS       WEIGHT  ADMIN  HEALTH
//! 5c1e…          10.9.0.10:80     a07b…     TCP 1s×3    91d2…     10.1.0.1:80   1       up     UP
//! ```
//!
//! HEALTH is the member's `status` as the health checks wrote it (`UP`,
//! `DOWN`), or `NO_MONITOR` when its pool has no health monitor.

use anyhow::Result;
use midonet_client::Client;
use serde_json::{json, Value};

use crate::render;
use crate::resources::Col;
use crate::Output;

const COLUMNS: &[(&str, Col)] = &[
    ("LOAD BALANCER", Col::Key("loadBalancerId")),
    ("VIPS", Col::Key("vips")),
    ("POOL", Col::Key("poolId")),
    ("MONITOR", Col::Key("monitor")),
    ("MEMBER", Col::Key("memberId")),
    ("ADDRESS", Col::Key("address")),
    ("WEIGHT", Col::Key("weight")),
    ("ADMIN", Col::Key("admin")),
    ("HEALTH", Col::Key("health")),
];

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The status rows of load balancer `lb` (all when `None`).
pub fn rows(client: &Client, lb: Option<&str>) -> Result<Vec<Value>> {
    let lbs = client.list(&client.root_link("loadBalancers")?)?;
    let pools = client.list(&client.root_link("pools")?)?;
    let members = client.list(&client.root_link("poolMembers")?)?;
    let vips = client.list(&client.root_link("vips")?)?;
    let monitors = client.list(&client.root_link("healthMonitors")?)?;
    let mut out = Vec::new();
    for l in lbs.iter().filter(|l| lb.is_none_or(|id| s(l, "id") == id)) {
        let lid = s(l, "id");
        for p in pools.iter().filter(|p| s(p, "loadBalancerId") == lid) {
            let pid = s(p, "id");
            let vip_list: Vec<String> = vips
                .iter()
                .filter(|v| s(v, "poolId") == pid)
                .map(|v| {
                    let sticky =
                        if s(v, "sessionPersistence") == "SOURCE_IP" { " sticky" } else { "" };
                    format!("{}:{}{sticky}", s(v, "address"), v["protocolPort"])
                })
                .collect();
            let monitor = p
                .get("healthMonitorId")
                .and_then(Value::as_str)
                .and_then(|h| monitors.iter().find(|m| s(m, "id") == h));
            let mon_text = monitor.map_or("-".to_owned(), |m| {
                format!("{} {}s×{}", s(m, "type"), m["delay"], m["maxRetries"])
            });
            for m in members.iter().filter(|m| s(m, "poolId") == pid) {
                let health = if monitor.is_some() { s(m, "status") } else { "NO_MONITOR" };
                let up = |v: &Value| if v["adminStateUp"] == json!(false) { "down" } else { "up" };
                out.push(json!({
                    "loadBalancerId": lid,
                    "vips": vip_list.join(" "),
                    "poolId": pid,
                    "monitor": mon_text,
                    "memberId": s(m, "id"),
                    "address": format!("{}:{}", s(m, "address"), m["protocolPort"]),
                    "weight": m["weight"],
                    "admin": if up(l) == "down" || up(p) == "down" {
                        format!("{} (pool or lb down)", up(m))
                    } else {
                        up(m).to_owned()
                    },
                    "health": health,
                }));
            }
        }
    }
    Ok(out)
}

/// Prints the status table (or JSON rows, or member ids).
pub fn status(
    client: &Client,
    lb: Option<&str>,
    output: Output,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let rows = rows(client, lb)?;
    if output == Output::Id {
        for r in &rows {
            writeln!(out, "{}", s(r, "memberId"))?;
        }
        return Ok(());
    }
    render::print_list(out, output, COLUMNS, &rows)
}
