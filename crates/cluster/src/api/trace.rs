//! `POST /midonet-api/trace`: simulate a packet entering a port against the
//! live topology and answer the step-by-step trace. Needs no agent and no
//! traffic: the cluster reads the topology and the learned state tables
//! from the store and runs the same simulation the agents run.
//!
//! Request:
//!
//! ```json
//! {"portId": "<uuid>",
//!  "packet": "eth.src=02:00:00:00:00:01, eth.dst=02:00:00:00:00:02, ip4.dst=10.0.1.5, tcp.dst=80",
//!  "state": {"macs": [{"bridgeId": "…", "vlanId": 0, "mac": "…", "portId": "…"}],
//!            "arp": [{"deviceId": "<router or bridge>", "ip": "10.0.1.5", "mac": "…"}],
//!            "arpFailed": [{"routerId": "…", "ip": "…"}]},
//!  "liveState": true}
//! ```
//!
//! `packet` is flow's text syntax (fields it implies are filled in, e.g.
//! `tcp.dst` makes it IPv4/TCP with TTL 64). `state` seeds the simulation's
//! MAC tables and ARP caches on top of the live tables (`liveState: false`
//! ignores the live ones), so "what if VM X were learned on port Y" can be
//! asked too.
//!
//! Response: `steps` (each the step's fields plus `text`, its readable
//! form), `decision`, `match` (only the fields the decision read),
//! `actions`, `generated` packets, `stateWrites`, `tags` (count) and
//! `uncacheable`. Admin only: a trace shows the whole path.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::StatusCode;
use midonet_model::{kind::KEY_ROOT, ObjectKind, PortId, Topology};
use midonet_proto::keys::StateKey;
use midonet_sim::{FlowKey, IcmpRateLimiter, MacAddr, MemFlowState, MemState, SimInput, Snapshot};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ctx::Ctx;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceRequest {
    port_id: Option<String>,
    packet: Option<String>,
    #[serde(default)]
    state: StateSeeds,
    live_state: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateSeeds {
    #[serde(default)]
    macs: Vec<MacSeed>,
    #[serde(default)]
    arp: Vec<ArpSeed>,
    #[serde(default)]
    arp_failed: Vec<ArpFailedSeed>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacSeed {
    bridge_id: String,
    #[serde(default)]
    vlan_id: u16,
    mac: String,
    port_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArpSeed {
    device_id: String,
    ip: String,
    mac: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArpFailedSeed {
    router_id: String,
    ip: String,
}

fn field<T: std::str::FromStr>(name: &str, v: &str, what: &str) -> Result<T, ApiError> {
    v.trim().parse().map_err(|_| ApiError::field(name, format!("`{v}` is not {what}")))
}

/// Reads the whole topology (and, when asked, the learned tables) in one
/// consistent range.
async fn load(ctx: &Ctx, live: bool) -> Result<(Topology, Vec<(String, Vec<u8>)>), ApiError> {
    let mut tx = ctx.tx();
    let mut topo = Topology::default();
    for (key, value) in tx.list_raw(KEY_ROOT).await? {
        // Guards, counters and state live under the same root with segments
        // that are not object kinds: skip them. An undecodable object is
        // left out rather than failing the trace (the rest is still useful).
        if ObjectKind::parse_key(&key).is_some() {
            let _ = topo.apply(&key, Some(&value));
        }
    }
    let state = if live {
        tx.list_raw(&format!("{}tables/", midonet_proto::STATE_ROOT)).await?
    } else {
        Vec::new()
    };
    Ok((topo, state))
}

fn build_state(
    topo: &Topology,
    live: &[(String, Vec<u8>)],
    seeds: &StateSeeds,
) -> Result<MemState, ApiError> {
    let mut s = MemState::default();
    let is_router = |id: &str| id.parse().ok().is_some_and(|r| topo.routers.contains_key(&r));
    for (key, value) in live {
        match midonet_proto::keys::parse(key) {
            Some(StateKey::Mac { bridge, vlan, mac }) => {
                let e: Result<midonet_proto::MacEntry, _> = serde_json::from_slice(value);
                if let (Ok(b), Ok(m), Ok(e)) = (bridge.parse(), mac.parse::<MacAddr>(), e) {
                    if let Ok(p) = e.port_id.parse() {
                        s.macs.insert((b, vlan, m), p);
                    }
                }
            }
            Some(StateKey::Arp { device, ip }) => {
                let e: Result<midonet_proto::ArpEntry, _> = serde_json::from_slice(value);
                if let (Ok(ip), Ok(e)) = (ip.parse::<Ipv4Addr>(), e) {
                    if let Ok(mac) = e.mac.parse::<MacAddr>() {
                        if is_router(device) {
                            if let Ok(r) = device.parse() {
                                s.router_arp.insert((r, ip), mac);
                            }
                        } else if let Ok(b) = device.parse() {
                            s.bridge_arp.insert((b, ip), mac);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (i, m) in seeds.macs.iter().enumerate() {
        let at = |f: &str| format!("state.macs[{i}].{f}");
        s.macs.insert(
            (
                field(&at("bridgeId"), &m.bridge_id, "a bridge id")?,
                m.vlan_id,
                field(&at("mac"), &m.mac, "a MAC address")?,
            ),
            field(&at("portId"), &m.port_id, "a port id")?,
        );
    }
    for (i, a) in seeds.arp.iter().enumerate() {
        let at = |f: &str| format!("state.arp[{i}].{f}");
        let ip: Ipv4Addr = field(&at("ip"), &a.ip, "an IPv4 address")?;
        let mac: MacAddr = field(&at("mac"), &a.mac, "a MAC address")?;
        if is_router(&a.device_id) {
            s.router_arp.insert((field(&at("deviceId"), &a.device_id, "a router id")?, ip), mac);
        } else {
            s.bridge_arp
                .insert((field(&at("deviceId"), &a.device_id, "a bridge or router id")?, ip), mac);
        }
    }
    for (i, a) in seeds.arp_failed.iter().enumerate() {
        let at = |f: &str| format!("state.arpFailed[{i}].{f}");
        s.arp_failed.insert(
            (
                field(&at("routerId"), &a.router_id, "a router id")?,
                field(&at("ip"), &a.ip, "an IPv4 address")?,
            ),
            (),
        );
    }
    Ok(s)
}

pub async fn trace(ctx: Ctx, body: Bytes) -> Result<axum::response::Response, ApiError> {
    ctx.require_admin("packet traces")?;
    let req: TraceRequest = ctx.parse(&body)?;
    let port_text = req
        .port_id
        .as_deref()
        .ok_or_else(|| ApiError::field("portId", "is required: the port the packet enters by"))?;
    let port: PortId = field("portId", port_text, "a port id (UUID)")?;
    let desc = req.packet.as_deref().ok_or_else(|| {
        ApiError::field(
            "packet",
            "is required, e.g. \"eth.src=02:00:00:00:00:01, ip4.dst=10.0.1.5, tcp.dst=80\"",
        )
    })?;
    let key: FlowKey = desc.parse().map_err(|e| ApiError::field("packet", format!("{e}")))?;

    let (topo, live) = load(&ctx, req.live_state.unwrap_or(true)).await?;
    if !topo.ports.contains_key(&port) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("port {port} does not exist"))
            .on("portId"));
    }
    let state = build_state(&topo, &live, &req.state)?;
    let snap = Snapshot::build(&topo);

    // A real frame for the key, so replies and ICMP errors carry bytes.
    let mut frame = Vec::new();
    key.to_frame(b"midonet trace payload...", &mut frame);
    let key = FlowKey::extract(&frame, key.in_port).unwrap_or(key);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let input = SimInput {
        ingress: port,
        key,
        frame: &frame,
        now,
        hash_seed: 0,
        trace: true,
        generated: false,
        split_reverse_nat: false,
    };
    // Flow state as a fresh agent has it: nothing tracked, no binding. A
    // SNAT rule needing a port block gets one, as the agent's would from
    // the store, so the trace shows the translation rather than the wait.
    let flows = MemFlowState::new();
    let mut r =
        midonet_sim::simulate(&snap, &state, &flows, &mut IcmpRateLimiter::unlimited(), &input);
    if let Some(b) = r.need_block {
        flows.grant(b, now);
        r = midonet_sim::simulate(&snap, &state, &flows, &mut IcmpRateLimiter::unlimited(), &input);
    }

    let mut names: HashMap<String, String> = HashMap::new();
    for b in topo.bridges.values() {
        names.insert(b.id.to_string(), b.name.clone());
    }
    for rt in topo.routers.values() {
        names.insert(rt.id.to_string(), rt.name.clone());
    }
    let steps: Vec<Value> = r
        .trace
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("text".into(), Value::String(s.to_string()));
            }
            v
        })
        .collect();
    let out = json!({
        "portId": port,
        "packet": key.to_string(),
        "steps": steps,
        "decision": r.decision,
        "decisionText": r.decision.to_string(),
        "match": key.display_masked(&r.mask).to_string(),
        "actions": r.actions,
        "generated": r.generated,
        "stateWrites": r.state_writes,
        "tags": r.tags.len(),
        "uncacheable": r.uncacheable,
        "names": names,
    });
    Ok(ctx.one("Trace-v1", out))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::testing::TestCluster;

    fn call(c: &TestCluster, method: &str, url: &str, body: &Value) -> (u16, Value) {
        let url =
            if url.starts_with("http") { url.to_string() } else { format!("{}{url}", c.url()) };
        let req = ureq::request(method, &url).set("X-Auth-Token", &c.admin_token());
        let resp = match req.send_json(body.clone()) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn create(c: &TestCluster, url: &str, body: Value) -> Value {
        let (s, v) = call(c, "POST", url, &body);
        assert_eq!(s, 201, "{url}: {v}");
        v
    }

    fn link(v: &Value, name: &str) -> String {
        v[name].as_str().unwrap_or_else(|| panic!("no link {name} in {v}")).to_string()
    }

    #[test]
    fn traces_a_ping_to_a_router_port_with_no_agent() {
        let c = TestCluster::start("memory:", true);
        let b = create(&c, "/bridges", json!({"name": "net"}));
        let r = create(&c, "/routers", json!({"name": "edge"}));
        let vm = create(&c, &link(&b, "ports"), json!({"type": "Bridge"}));
        let bp = create(&c, &link(&b, "ports"), json!({"type": "Bridge"}));
        let rp = create(
            &c,
            &link(&r, "ports"),
            json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24, "portMac": "02:00:00:00:01:01"}),
        );
        let (s, v) = call(&c, "POST", &link(&rp, "link"), &json!({"peerId": bp["id"]}));
        assert_eq!(s, 201, "{v}");
        let (s, t) = call(
            &c,
            "POST",
            "/trace",
            &json!({"portId": vm["id"], "packet": "eth.src=02:00:00:00:00:0a, eth.dst=02:00:00:00:01:01, ip4.src=10.0.0.10, ip4.dst=10.0.0.1, icmp4.type=8, icmp4.id=9"}),
        );
        assert_eq!(s, 200, "{t}");
        assert_eq!(t["decision"]["kind"], "consumed", "{t}");
        let texts: Vec<&str> = t["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["text"].as_str())
            .collect();
        assert!(
            texts.iter().any(|s| s.contains("enter router") && s.contains("edge")),
            "{texts:?}"
        );
        assert_eq!(t["generated"][0]["kind"], "icmp_echo_reply");
        assert!(t["match"].as_str().expect("match").contains("ip4.dst=10.0.0.1/32"), "{t}");

        // A seeded MAC makes the bridge unicast instead of flooding.
        let (s, t) = call(
            &c,
            "POST",
            "/trace",
            &json!({"portId": vm["id"], "packet": "eth.src=02:00:00:00:00:0a, eth.dst=02:00:00:00:00:0b, ip4.dst=10.0.0.11, udp.dst=53",
                    "state": {"macs": [{"bridgeId": b["id"], "mac": "02:00:00:00:00:0b", "portId": bp["id"]}]}}),
        );
        assert_eq!(s, 200, "{t}");
        assert!(
            t["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .any(|s| s["step"] == "mac_lookup" && s["port"] == bp["id"]),
            "{t}"
        );
    }

    #[test]
    fn a_trace_shows_the_snat_translation() {
        let c = TestCluster::start("memory:", true);
        let b = create(&c, "/bridges", json!({"name": "net"}));
        let r = create(&c, "/routers", json!({"name": "edge"}));
        let vm = create(&c, &link(&b, "ports"), json!({"type": "Bridge"}));
        let bp = create(&c, &link(&b, "ports"), json!({"type": "Bridge"}));
        let rp = create(
            &c,
            &link(&r, "ports"),
            json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24, "portMac": "02:00:00:00:01:01"}),
        );
        let (s, v) = call(&c, "POST", &link(&rp, "link"), &json!({"peerId": bp["id"]}));
        assert_eq!(s, 201, "{v}");
        let up = create(
            &c,
            &link(&r, "ports"),
            json!({"portAddress": "203.0.113.2", "networkAddress": "203.0.113.0", "networkLength": 24}),
        );
        create(
            &c,
            &link(&r, "routes"),
            json!({"srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0, "dstNetworkAddr": "203.0.113.0",
                   "dstNetworkLength": 24, "nextHopPort": up["id"]}),
        );
        let chain = create(&c, "/chains", json!({"name": "edge-out"}));
        create(
            &c,
            &link(&chain, "rules"),
            json!({"type": "snat", "flowAction": "accept", "outPorts": [up["id"]],
                   "natTargets": [{"addressFrom": "203.0.113.2", "addressTo": "203.0.113.2", "portFrom": 1024, "portTo": 65535}]}),
        );
        let (s, v) = call(
            &c,
            "PUT",
            &link(&r, "uri"),
            &json!({"name": "edge", "outboundFilterId": chain["id"]}),
        );
        assert!(s < 300, "{s}: {v}");
        let (s, t) = call(
            &c,
            "POST",
            "/trace",
            &json!({"portId": vm["id"], "packet": "eth.src=02:00:00:00:00:0a, eth.dst=02:00:00:00:01:01, ip4.src=10.0.0.10, ip4.dst=203.0.113.1, tcp.src=40000, tcp.dst=80"}),
        );
        assert_eq!(s, 200, "{t}");
        let steps = t["steps"].as_array().expect("steps");
        assert!(steps.iter().any(|s| s["step"] == "nat"), "a NAT step: {t}");
        let texts: Vec<&str> = steps.iter().filter_map(|s| s["text"].as_str()).collect();
        assert!(texts.iter().any(|s| s.contains("ip4.src=203.0.113.2")), "{texts:?}");
    }

    #[test]
    fn a_trace_shows_the_vip_match_and_the_member_chosen() {
        let c = TestCluster::start("memory:", true);
        let b = create(&c, "/bridges", json!({"name": "backends"}));
        let r = create(&c, "/routers", json!({"name": "edge"}));
        let bp = create(&c, &link(&b, "ports"), json!({"type": "Bridge"}));
        let rp = create(
            &c,
            &link(&r, "ports"),
            json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24, "portMac": "02:00:00:00:01:01"}),
        );
        let (s, v) = call(&c, "POST", &link(&rp, "link"), &json!({"peerId": bp["id"]}));
        assert_eq!(s, 201, "{v}");
        create(
            &c,
            &link(&r, "routes"),
            json!({"srcNetworkAddr": "0.0.0.0", "srcNetworkLength": 0, "dstNetworkAddr": "10.0.0.0",
                   "dstNetworkLength": 24, "nextHopPort": rp["id"]}),
        );
        let up = create(
            &c,
            &link(&r, "ports"),
            json!({"portAddress": "203.0.113.2", "networkAddress": "203.0.113.0", "networkLength": 24, "portMac": "02:00:00:00:01:02"}),
        );
        let lb = create(&c, "/load_balancers", json!({"routerId": r["id"]}));
        let pool = create(&c, &link(&lb, "pools"), json!({}));
        let m = create(
            &c,
            "/pool_members",
            json!({"poolId": pool["id"], "address": "10.0.0.5", "protocolPort": 8080}),
        );
        create(&c, &link(&pool, "vips"), json!({"address": "198.51.100.10", "protocolPort": 80}));
        let (s, t) = call(
            &c,
            "POST",
            "/trace",
            &json!({"portId": up["id"], "packet": "eth.src=02:00:00:00:00:0a, eth.dst=02:00:00:00:01:02, ip4.src=203.0.113.1, ip4.dst=198.51.100.10, tcp.src=40000, tcp.dst=80"}),
        );
        assert_eq!(s, 200, "{t}");
        let steps = t["steps"].as_array().expect("steps");
        let lbs =
            steps.iter().find(|s| s["step"] == "load_balancer").expect("a load-balancer step");
        assert_eq!(lbs["member"], m["id"], "{t}");
        let texts: Vec<&str> = steps.iter().filter_map(|s| s["text"].as_str()).collect();
        assert!(texts.iter().any(|s| s.contains("load balancer: vip")), "{texts:?}");
        assert!(texts.iter().any(|s| s.contains("ip4.dst=10.0.0.5 l4.dst=8080")), "{texts:?}");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let c = TestCluster::start("memory:", true);
        let (s, v) = call(&c, "POST", "/trace", &json!({"packet": "ip4.dst=10.0.0.1"}));
        assert_eq!((s, v["field"].as_str()), (400, Some("portId")), "{v}");
        let (s, v) = call(
            &c,
            "POST",
            "/trace",
            &json!({"portId": "00000000-0000-0000-0000-000000000001", "packet": "ip4.dst=nope"}),
        );
        assert_eq!((s, v["field"].as_str()), (400, Some("packet")), "{v}");
        let (s, v) = call(
            &c,
            "POST",
            "/trace",
            &json!({"portId": "00000000-0000-0000-0000-000000000001", "packet": "ip4.dst=10.0.0.1"}),
        );
        assert_eq!((s, v["field"].as_str()), (404, Some("portId")), "{v}");
    }
}
