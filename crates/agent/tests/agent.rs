//! The agent against the real topology service on a memory store, with the
//! dummy datapath (no kernel needed): subscription, resume, failover,
//! bindings, invalidation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use midonet_agent::scanner::Interface;
use midonet_agent::{Agent, Config, DatapathKind, DpChoice, StartOptions};
use midonet_datapath::dummy::DummyDatapath;
use midonet_datapath::{Datapath, FlowKey};
use midonet_model::*;
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(10);

struct Rig {
    agent: Agent,
    dp: Arc<DummyDatapath>,
    ifaces: mpsc::Sender<Vec<Interface>>,
    _dir: tempfile::TempDir,
}

/// An enrolled agent of `c`, dialling `before` (dead addresses) first.
async fn start_agent_via(c: &Cluster, before: &[String]) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let credential = c.enroll(HostId::random(), dir.path()).await;
    let mut cluster = before.to_vec();
    cluster.push(c.addr.to_string());
    let cfg = Config {
        cluster,
        host_id_file: dir.path().join("host_id"),
        credential_file: credential.display().to_string(),
        cluster_ca: pki().ca.display().to_string(),
        datapath: DatapathKind::Dummy,
        metrics_listen: "127.0.0.1:0".into(),
        session_ttl_secs: 3,
        // Several agents share this network namespace: no fixed UDP port.
        flow_state_port: 0,
        ..Config::default()
    };
    let dp = Arc::new(DummyDatapath::new(None));
    let (tx, rx) = mpsc::channel(4);
    let agent = midonet_agent::start(
        cfg,
        StartOptions { dp: DpChoice::Dummy(dp.clone()), interfaces: Some(rx) },
    )
    .await
    .expect("agent starts");
    tx.send(Vec::new()).await.expect("interfaces");
    Rig { agent, dp, ifaces: tx, _dir: dir }
}

async fn start_agent(c: &Cluster) -> Rig {
    start_agent_via(c, &[]).await
}

fn iface(name: &str, ifindex: u32) -> Interface {
    Interface {
        name: name.into(),
        ifindex,
        mac: "02:00:00:00:00:aa".into(),
        mtu: 1500,
        up: true,
        has_link: true,
        kind: "Virtual".into(),
        addresses: Vec::new(),
    }
}

fn metric(agent: &Agent, name: &str) -> f64 {
    let text = agent.metrics.encode();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_snapshot_deltas_and_resume_without_reload() {
    let mut c = Cluster::start().await;
    let b1 = bridge("b1");
    c.put(&b1).await;
    let rig = start_agent(&c).await;
    let host = rig.agent.host_id;

    let rev = c.revision().await;
    wait_for("first snapshot", T, async || {
        rig.agent.view().ready && rig.agent.view().revision >= rev - 1
    })
    .await;
    wait_for("host alive", T, async || {
        c.exists(&midonet_proto::keys::host_alive(&host.to_string())).await
    })
    .await;

    // A delta.
    let b2 = bridge("b2");
    let rev = c.put(&b2).await;
    wait_for("delta applied", T, async || rig.agent.view().revision >= rev).await;
    assert_eq!(metric(&rig.agent, "midonet_agent_topology_snapshots_total"), 1.0);

    // The cluster goes away; changes happen meanwhile; it comes back.
    c.pause().await;
    let b3 = bridge("b3");
    c.put(&b3).await;
    let rev = c.delete(&b1).await;
    c.resume().await;
    wait_for("resumed", T, async || rig.agent.view().revision >= rev).await;
    assert_eq!(
        metric(&rig.agent, "midonet_agent_topology_snapshots_total"),
        1.0,
        "a resume must not reload the whole topology"
    );
    assert!(metric(&rig.agent, "midonet_agent_sessions_total") >= 2.0);
    rig.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_cluster_address() {
    let c = Cluster::start().await;
    // A port nobody listens on: bind and drop.
    let dead =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let rig = start_agent_via(&c, &[dead.to_string()]).await;
    let host = rig.agent.host_id;
    wait_for("registered via the second address", T, async || {
        c.exists(&midonet_proto::keys::host_alive(&host.to_string())).await
    })
    .await;
    rig.agent.stop().await;
    // A clean stop withdraws liveness at once or when the lease ends.
    wait_for("alive key gone", T, async || {
        !c.exists(&midonet_proto::keys::host_alive(&host.to_string())).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_before_and_after_the_interface_appears() {
    let c = Cluster::start().await;
    let rig = start_agent(&c).await;
    let host = rig.agent.host_id;
    let b = bridge("b");
    c.put(&b).await;
    // Port bound first, interface later.
    let p1 = bind(&bridge_port(&b, 100), host, "vm1");
    let rev = c.put(&p1).await;
    wait_for("topology", T, async || rig.agent.view().revision >= rev).await;
    assert!(rig.agent.view().ingress.is_empty(), "no interface yet, nothing bound");
    rig.ifaces.send(vec![iface("vm1", 7)]).await.expect("send");
    wait_for("bound after the interface appears", T, async || {
        rig.agent.view().ingress.values().any(|p| *p == p1.id)
    })
    .await;
    wait_for("port active", T, async || {
        c.exists(&midonet_proto::keys::port_active(&p1.id.to_string())).await
    })
    .await;

    // Interface first, binding later.
    rig.ifaces.send(vec![iface("vm1", 7), iface("vm2", 8)]).await.expect("send");
    let p2 = bind(&bridge_port(&b, 101), host, "vm2");
    c.put(&p2).await;
    wait_for("bound after the binding appears", T, async || {
        rig.agent.view().ingress.values().any(|p| *p == p2.id)
    })
    .await;

    // Interface disappears: unbound and inactive.
    rig.ifaces.send(vec![iface("vm2", 8)]).await.expect("send");
    wait_for("unbound", T, async || !rig.agent.view().ingress.values().any(|p| *p == p1.id)).await;
    wait_for("inactive", T, async || {
        !c.exists(&midonet_proto::keys::port_active(&p1.id.to_string())).await
    })
    .await;
    assert_eq!(metric(&rig.agent, "midonet_agent_bound_ports"), 1.0);
    rig.agent.stop().await;
}

fn frame(desc: &str) -> Vec<u8> {
    let k: FlowKey = desc.parse().expect("packet description");
    let mut f = Vec::new();
    k.to_frame(&[0u8; 16], &mut f);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_change_invalidates_exactly_the_tagged_flows() {
    let c = Cluster::start().await;
    let rig = start_agent(&c).await;
    let host = rig.agent.host_id;
    let chain = Chain { id: ChainId::random(), name: "in".into(), ..Default::default() };
    c.put(&chain).await;
    let mut b = bridge("b");
    b.inbound_filter_id = Some(chain.id);
    c.put(&b).await;
    let other = bridge("other");
    c.put(&other).await;
    let p1 = bind(&bridge_port(&b, 100), host, "vm1");
    let p2 = bind(&bridge_port(&b, 101), host, "vm2");
    let q1 = bind(&bridge_port(&other, 102), host, "vm3");
    let q2 = bind(&bridge_port(&other, 103), host, "vm4");
    for p in [&p1, &p2, &q1, &q2] {
        c.put(p).await;
    }
    rig.ifaces
        .send(vec![iface("vm1", 1), iface("vm2", 2), iface("vm3", 3), iface("vm4", 4)])
        .await
        .expect("send");
    wait_for("four ports bound", T, async || rig.agent.view().ingress.len() == 4).await;
    let view = rig.agent.view();
    let dp_of = |p: PortId| *view.ingress.iter().find(|(_, v)| **v == p).expect("bound").0;
    let (d1, d2, d3, d4) = (dp_of(p1.id), dp_of(p2.id), dp_of(q1.id), dp_of(q2.id));

    let f_b = frame("eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.1,ip4.dst=10.0.0.2,udp.src=1,udp.dst=2");
    let f_o = frame("eth.src=02:00:00:00:00:03,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.3,ip4.dst=10.0.0.4,udp.src=1,udp.dst=2");
    rig.dp.inject(d1, &f_b);
    rig.dp.inject(d3, &f_o);
    assert_eq!(rig.dp.take_output(d2).len(), 1, "broadcast on b reaches vm2");
    assert_eq!(rig.dp.take_output(d4).len(), 1, "broadcast on other reaches vm4");
    // The first packets taught the bridges their source MACs, which
    // invalidates the flows that read those entries; the next packets
    // install flows that stay.
    wait_for("learned-MAC invalidations", T, async || {
        metric(&rig.agent, "midonet_agent_invalidated_flows_total") >= 2.0
    })
    .await;
    rig.dp.inject(d1, &f_b);
    rig.dp.inject(d3, &f_o);
    assert_eq!(rig.dp.take_output(d2).len(), 1);
    assert_eq!(rig.dp.take_output(d4).len(), 1);
    let flows = rig.dp.dump_flows().expect("flows").len();
    assert_eq!(flows, 2, "one flow per bridge");
    let invalidated = metric(&rig.agent, "midonet_agent_invalidated_flows_total");

    // A drop rule on b's inbound chain.
    let rule = Rule {
        id: RuleId::random(),
        chain_id: chain.id,
        rule_type: RuleType::Drop,
        ..Default::default()
    };
    c.put(&rule).await;
    let chain2 = Chain { rule_ids: vec![rule.id], ..chain.clone() };
    let rev = c.put(&chain2).await;
    wait_for("rule applied", T, async || rig.agent.view().revision >= rev).await;
    let left = rig.dp.dump_flows().expect("flows");
    assert_eq!(left.len(), flows - 1, "only b's flow was invalidated: {left:?}");
    rig.dp.inject(d1, &f_b);
    rig.dp.inject(d3, &f_o);
    assert_eq!(rig.dp.take_output(d2).len(), 0, "dropped by the rule");
    assert_eq!(rig.dp.take_output(d4).len(), 1, "the other bridge is unaffected");
    assert_eq!(metric(&rig.agent, "midonet_agent_invalidated_flows_total"), invalidated + 1.0);
    rig.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_macs_reach_other_hosts_so_they_unicast_instead_of_flooding() {
    let c = Cluster::start().await;
    let a = start_agent(&c).await;
    let b = start_agent(&c).await;
    let (ip_a, ip_b) = (std::net::Ipv4Addr::new(10, 9, 0, 1), std::net::Ipv4Addr::new(10, 9, 0, 2));
    let tz = TunnelZone { id: TunnelZoneId::random(), name: "tz".into(), ..Default::default() };
    c.put(&tz).await;
    c.put(&TunnelZoneHost {
        tunnel_zone_id: tz.id,
        host_id: a.agent.host_id,
        ip_address: Some(ip_a),
    })
    .await;
    c.put(&TunnelZoneHost {
        tunnel_zone_id: tz.id,
        host_id: b.agent.host_id,
        ip_address: Some(ip_b),
    })
    .await;
    let br = bridge("b");
    c.put(&br).await;
    let p1 = bind(&bridge_port(&br, 201), a.agent.host_id, "vm1");
    let p2 = bind(&bridge_port(&br, 202), b.agent.host_id, "vm2");
    let p3 = bind(&bridge_port(&br, 203), b.agent.host_id, "vm3");
    for p in [&p1, &p2, &p3] {
        c.put(p).await;
    }
    a.ifaces.send(vec![iface("vm1", 1)]).await.expect("send");
    b.ifaces.send(vec![iface("vm2", 1), iface("vm3", 2)]).await.expect("send");
    wait_for("a bound", T, async || a.agent.view().ingress.len() == 1).await;
    wait_for("b bound", T, async || b.agent.view().ingress.len() == 2).await;
    wait_for("a sees b's ports", T, async || a.agent.view().egress.len() == 3).await;
    wait_for("b sees a's port", T, async || b.agent.view().egress.len() == 3).await;
    let dp_a1 = *a.agent.view().ingress.keys().next().expect("a port");
    let dp_b2 = *b.agent.view().ingress.iter().find(|(_, p)| **p == p2.id).expect("p2").0;

    // vm1 broadcasts: a floods to both remote ports, one tunnel copy each,
    // with each egress port's key, to b's underlay address.
    rig_inject(&a, dp_a1, "eth.src=02:00:00:00:01:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.1,ip4.dst=10.0.0.255,udp.src=1,udp.dst=2");
    let t = a.dp.take_tunnel();
    let mut vnis: Vec<u32> = t.iter().filter_map(|p| p.vni()).collect();
    vnis.sort_unstable();
    assert_eq!(vnis, vec![202, 203], "flood reaches every remote port");
    assert!(t.iter().all(|p| p.dst == ip_b));

    // a learned vm1's MAC and published it; b gets it through the cluster.
    let m1 = midonet_sim::MacAddr([2, 0, 0, 0, 1, 1]);
    wait_for("b learns vm1's MAC from the cluster", T, async || {
        b.agent.shared.state.read().macs.get(&(br.id, 0, m1)) == Some(&p1.id)
    })
    .await;
    // vm2 answers vm1: b unicasts one copy straight to a, key of p1.
    rig_inject(&b, dp_b2, "eth.src=02:00:00:00:02:02,eth.dst=02:00:00:00:01:01,ip4.src=10.0.0.2,ip4.dst=10.0.0.1,udp.src=2,udp.dst=1");
    let t = b.dp.take_tunnel();
    assert_eq!(t.len(), 1, "unicast, not a flood: {t:?}");
    assert_eq!((t[0].dst, t[0].vni()), (ip_a, Some(201)));
    assert!(b
        .dp
        .take_output(*b.agent.view().ingress.iter().find(|(_, p)| **p == p3.id).expect("p3").0)
        .is_empty());
    a.agent.stop().await;
    b.agent.stop().await;
}

fn rig_inject(r: &Rig, port: u32, desc: &str) {
    r.dp.inject(port, &frame(desc));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_resyncs_with_a_snapshot_that_drops_deleted_objects() {
    let mut c = Cluster::start().await;
    let b1 = bridge("b1");
    c.put(&b1).await;
    let p1 = bridge_port(&b1, 301);
    c.put(&p1).await;
    let rig = start_agent(&c).await;
    let rev = c.revision().await;
    wait_for("first snapshot", T, async || {
        rig.agent.view().ready && rig.agent.view().revision >= rev - 1
    })
    .await;
    wait_for("p1 in the topology", T, async || rig.agent.view().sim.port_device(p1.id).is_some())
        .await;

    c.pause().await;
    let p2 = bridge_port(&b1, 302);
    c.put(&p2).await;
    c.delete(&p1).await;
    let rev = c.put(&bridge("b3")).await;
    c.store.compact(rev).await.expect("compact");
    c.resume().await;
    wait_for("resynced", T, async || rig.agent.view().revision >= rev).await;
    assert_eq!(
        metric(&rig.agent, "midonet_agent_topology_snapshots_total"),
        2.0,
        "compaction forces one snapshot"
    );
    let view = rig.agent.view();
    assert!(view.sim.port_device(p1.id).is_none(), "p1 was deleted while the agent was away");
    assert!(view.sim.port_device(p2.id).is_some(), "p2 was created while the agent was away");
    rig.agent.stop().await;
}

/// `GET /flows` and the per-port series, over HTTP as `midonet flows` and
/// Prometheus read them: the flow a miss installed is listed with its
/// match, actions, counters and the virtual port it came in on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_dump_and_per_port_metrics_over_http() {
    let c = Cluster::start().await;
    let rig = start_agent(&c).await;
    let host = rig.agent.host_id;
    let b = bridge("b");
    c.put(&b).await;
    let p1 = bind(&bridge_port(&b, 100), host, "vm1");
    let p2 = bind(&bridge_port(&b, 101), host, "vm2");
    c.put(&p1).await;
    c.put(&p2).await;
    rig.ifaces.send(vec![iface("vm1", 1), iface("vm2", 2)]).await.expect("send");
    wait_for("two ports bound", T, async || rig.agent.view().ingress.len() == 2).await;
    let view = rig.agent.view();
    let dp_of = |p: PortId| *view.ingress.iter().find(|(_, v)| **v == p).expect("bound").0;
    let f = frame("eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.1,ip4.dst=10.0.0.2,udp.src=1,udp.dst=2");
    // The first packet learns the source MAC (which invalidates its flow);
    // the second installs the flow that stays; the third hits it.
    for _ in 0..3 {
        rig.dp.inject(dp_of(p1.id), &f);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = rig.agent.metrics_addr.expect("metrics listener");
    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            ureq::get(&format!("http://{addr}{path}"))
                .call()
                .expect("agent answers")
                .into_string()
                .expect("body")
        })
    };
    let body: serde_json::Value =
        serde_json::from_str(&get("/flows").await.expect("join")).expect("JSON");
    assert_eq!(body["provider"], "dummy", "{body}");
    assert_eq!(body["host"], host.to_string());
    let flows = body["flows"].as_array().expect("flows");
    assert_eq!(body["count"], flows.len());
    let f = flows.iter().find(|f| f["port"] == p1.id.to_string()).expect("a flow from vm1");
    for k in ["match", "actions"] {
        assert!(f[k].as_str().is_some_and(|s| !s.is_empty()), "{k} in {f}");
    }
    assert!(f["match"].as_str().is_some_and(|m| m.contains("in_port=")), "{f}");
    assert!(f["actions"].as_str().is_some_and(|a| a.contains("output(")), "{f}");
    assert!(f["packets"].as_u64().is_some_and(|n| n >= 1), "the third packet hit it: {f}");
    assert!(f["age_ms"].as_u64().is_some() && f["idle_ms"].as_u64().is_some(), "{f}");
    assert!(f["tags"].as_array().is_some_and(|t| !t.is_empty()), "{f}");

    let text = get("/metrics").await.expect("join");
    let series = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let port = format!("{{port=\"{}\"}}", p1.id);
    assert!(series(&format!("midonet_agent_port_upcalls_total{port}")) >= 2.0, "{text}");
    assert!(series(&format!("midonet_agent_port_flow_installs_total{port}")) >= 1.0, "{text}");
    assert!(series("midonet_agent_miss_latency_seconds_count") >= 2.0, "{text}");
    rig.agent.stop().await;
}

/// The failure: past ~3,000 bridges the whole store no longer fit
/// in one gRPC message and agents could not start. 20,000 bridges and
/// 50,000 ports (tens of MiB) now arrive as a chunked snapshot, applied
/// once, and the agent forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_far_past_one_message_arrives_in_chunks_and_forwards() {
    use midonet_model::topology::Stored;
    use midonet_store::{Txn, TxnOp};
    let c = Cluster::start().await;
    let t0 = std::time::Instant::now();
    let mut bytes = 0usize;
    let mut batch = Vec::new();
    let flush = async |batch: &mut Vec<TxnOp>| {
        let ops = std::mem::take(batch);
        c.store.txn(Txn::new().and_then(ops)).await.expect("bulk txn");
    };
    for i in 0..20_000u32 {
        let b = bridge(&format!("bulk-{i}"));
        for k in 0..if i < 10_000 { 3 } else { 2 } {
            let p = bridge_port(&b, 1_000 + i * 4 + k);
            let v = serde_json::to_vec(&p).expect("json");
            bytes += v.len();
            batch.push(TxnOp::put(p.store_key(), v));
        }
        let v = serde_json::to_vec(&b).expect("json");
        bytes += v.len();
        batch.push(TxnOp::put(b.store_key(), v));
        if batch.len() >= 2_000 {
            flush(&mut batch).await;
        }
    }
    flush(&mut batch).await;
    assert!(bytes > 8 << 20, "{bytes} B: well past tonic's 4 MiB default");
    eprintln!("MEASURE 70k objects, {bytes} B, stored in {:?}", t0.elapsed());

    let t0 = std::time::Instant::now();
    let rig = start_agent(&c).await;
    let host = rig.agent.host_id;
    let b = bridge("b");
    c.put(&b).await;
    let p1 = bind(&bridge_port(&b, 100), host, "vm1");
    let p2 = bind(&bridge_port(&b, 101), host, "vm2");
    c.put(&p1).await;
    c.put(&p2).await;
    rig.ifaces.send(vec![iface("vm1", 1), iface("vm2", 2)]).await.expect("send");
    wait_for("both ports bound after the big snapshot", Duration::from_secs(120), async || {
        rig.agent.view().ingress.len() == 2
    })
    .await;
    eprintln!("MEASURE agent start to both ports bound: {:?}", t0.elapsed());
    assert_eq!(
        metric(&rig.agent, "midonet_agent_topology_snapshots_total"),
        1.0,
        "one snapshot, however many chunks"
    );
    let view = rig.agent.view();
    let dp_of = |p: PortId| *view.ingress.iter().find(|(_, v)| **v == p).expect("bound").0;
    let f = frame("eth.src=02:00:00:00:00:01,eth.dst=ff:ff:ff:ff:ff:ff,ip4.src=10.0.0.1,ip4.dst=10.0.0.2,udp.src=1,udp.dst=2");
    rig.dp.inject(dp_of(p1.id), &f);
    assert_eq!(rig.dp.take_output(dp_of(p2.id)).len(), 1, "the agent forwards");
    rig.agent.stop().await;
}
