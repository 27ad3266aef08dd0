//! Stateful networking on real kernels (issue 8): connection tracking
//! across hosts, with the state replicated between agent PROCESSES over
//! the underlay. The lab is `common::env` (two host namespaces, one agent
//! each, VMs as namespaces).
//!
//! ```text
//!   host h1: agent ── vm1 10.1.0.1 (servers)       host h2: agent ── vm2 10.1.0.2
//!                         └──────────── bridge b ──────────────┘  port chains: a security group
//! ```
//!
//! Knobs: `MAG_CT_IDLE_SECS` (default 8) is how long the idle connection
//! waits before it must still carry data. The security-group test runs its
//! agents with flows that idle out after [`SG_FLOW_IDLE_MS`] (the default
//! is 60 s), so the connection outlives its flows and is found again in
//! the tables without the test waiting two minutes for it.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::env::*;
use midonet_model::*;
use midonet_testkit::{ns_exec, Vm};

/// A TCP echo server on `port` in `vm`, one thread per connection.
fn tcp_echo(vm: &Vm, port: u16) {
    let l =
        in_netns(&vm.ns, move || std::net::TcpListener::bind(("0.0.0.0", port)).expect("tcp bind"));
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A UDP echo server on `port` in `vm`.
fn udp_echo(vm: &Vm, port: u16) {
    let s = in_netns(&vm.ns, move || UdpSocket::bind(("0.0.0.0", port)).expect("udp bind"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
}

/// Opens a TCP connection from `vm` to `dst`.
fn connect(vm: &Vm, dst: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    in_netns(&vm.ns, move || TcpStream::connect_timeout(&dst, timeout))
}

/// Sends `msg` and expects it back within 3 s.
fn echo(c: &mut TcpStream, msg: &[u8]) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    if c.write_all(msg).is_err() {
        return false;
    }
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got).is_ok() && got == msg
}

/// One UDP round trip from `vm` to `dst`, up to `tries` attempts of 500 ms
/// each. A late answer to an earlier attempt is skipped, not taken for a
/// failure of this one (else one slow first answer, parked for an ARP
/// resolution or a SNAT block, fails every attempt after it at once).
fn udp_round_trip(vm: &Vm, dst: SocketAddr, tries: u32) -> bool {
    in_netns(&vm.ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp client");
        s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut buf = [0u8; 64];
        (0..tries).any(|i| {
            let msg = format!("probe {i}");
            let until = std::time::Instant::now() + Duration::from_millis(500);
            if s.send_to(msg.as_bytes(), dst).is_err() {
                std::thread::sleep(Duration::from_millis(500));
                return false;
            }
            while std::time::Instant::now() < until {
                match s.recv_from(&mut buf) {
                    Ok((n, _)) if &buf[..n] == msg.as_bytes() => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
            false
        })
    })
}

fn rule(chain: &Chain, rule_type: RuleType, condition: Condition) -> Rule {
    Rule { id: RuleId::random(), chain_id: chain.id, rule_type, condition, ..Default::default() }
}

/// The agent's `GET /conntrack` on host `i`.
fn conntrack(env: &Env, i: usize) -> serde_json::Value {
    env.agent_json(i, "/conntrack")
}

/// The flows' idle timeout of the security-group test's agents, in ms:
/// short, so that its connection can outlive its flows in seconds.
const SG_FLOW_IDLE_MS: u64 = 3000;

#[test]
fn a_security_group_lets_replies_in_and_keeps_new_connections_out() {
    if !prerequisites("a_security_group_lets_replies_in_and_keeps_new_connections_out") {
        return;
    }
    let idle: u64 =
        std::env::var("MAG_CT_IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let mut env = Env::with_config(Provider::Ebpf, &format!("flow_idle_ms = {SG_FLOW_IDLE_MS}\n"));
    let b = Bridge {
        id: BridgeId::random(),
        name: "b1".into(),
        admin_state_up: true,
        ..Default::default()
    };
    env.put(&b);
    let vm1 = env.vm(0, "vm1", "10.1.0.1/24", None);
    let vm2 = env.vm(1, "vm2", "10.1.0.2/24", None);
    midonet_testkit::add_neigh(&vm1.ns, &vm1.vm_if, vm2.ip, &vm2.mac).expect("neigh");
    midonet_testkit::add_neigh(&vm2.ns, &vm2.vm_if, vm1.ip, &vm1.mac).expect("neigh");

    // vm2's security group, as Neutron builds one: from the VM, return
    // flows first (the conntrack question), then everything goes; to the
    // VM, return flows only (ARP still passes: only IPv4 is dropped).
    let egress = Chain { id: ChainId::random(), name: "sg-egress".into(), ..Default::default() };
    let ingress = Chain { id: ChainId::random(), name: "sg-ingress".into(), ..Default::default() };
    let ret = Condition { match_return_flow: true, ..Default::default() };
    let ipv4 = Condition { dl_type: Some(0x0800), ..Default::default() };
    let rules = [
        rule(&egress, RuleType::Accept, ret.clone()),
        rule(&egress, RuleType::Accept, Condition::default()),
        rule(&ingress, RuleType::Accept, ret),
        rule(&ingress, RuleType::Drop, ipv4),
    ];
    env.put(&egress);
    env.put(&ingress);
    for r in &rules {
        env.put(r);
    }
    env.put(&Chain { rule_ids: vec![rules[0].id, rules[1].id], ..egress.clone() });
    env.put(&Chain { rule_ids: vec![rules[2].id, rules[3].id], ..ingress.clone() });
    let p1 = env.bridge_port(&b, Some((0, &vm1)));
    let mut p2 = env.bridge_port(&b, Some((1, &vm2)));
    p2.inbound_filter_id = Some(egress.id);
    p2.outbound_filter_id = Some(ingress.id);
    env.put(&p2);
    env.wait_active(&p1);
    env.wait_active(&p2);

    tcp_echo(&vm1, 7000);
    udp_echo(&vm1, 7001);
    tcp_echo(&vm2, 7002);
    let to_vm1 = |port| SocketAddr::from((vm1.ip, port));

    // 1. Out and back: TCP, UDP and ping from vm2 get their replies.
    let mut c = connect(&vm2, to_vm1(7000), Duration::from_secs(5)).expect("vm2 -> vm1 TCP");
    assert!(echo(&mut c, b"hello through conntrack"), "TCP reply reaches vm2");
    assert!(udp_round_trip(&vm2, to_vm1(7001), 5), "UDP reply reaches vm2");
    assert!(ping(&vm2, vm1.ip, 3, &[]).is_some(), "echo replies reach vm2");

    // The state went from vm2's host to vm1's, where the replies were
    // simulated, and came back established.
    assert!(env.metric(1, "midonet_agent_flow_state_sent_total") > 0.0, "host 2 sent state");
    assert!(
        env.metric(0, "midonet_agent_flow_state_received_total") > 0.0,
        "host 1 received state"
    );
    let listed = conntrack(&env, 0);
    let conns = listed["connections"].as_array().expect("connections");
    let tcp = conns
        .iter()
        .find(|c| c["proto"] == 6 && c["dst_port"] == 7000)
        .unwrap_or_else(|| panic!("host 1 lists the TCP connection: {listed}"));
    assert_eq!(
        tcp["state"],
        "replied",
        "host 1: {tcp}\nhost 2: {}\nhost 1 metrics:\n{}",
        conntrack(&env, 1),
        env.metrics(0)
            .lines()
            .filter(|l| l.contains("conntrack")
                || l.contains("flow_state")
                || l.contains("misses")
                || l.contains("sim"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(tcp["src"], vm2.ip.to_string());

    // 2. New connections towards vm2 are dropped, ping included.
    assert!(
        connect(&vm1, SocketAddr::from((vm2.ip, 7002)), Duration::from_secs(2)).is_err(),
        "a new inbound TCP connection to vm2 is dropped"
    );
    assert!(ping(&vm1, vm2.ip, 2, &[]).is_none(), "inbound ping to vm2 is dropped");
    assert!(!udp_round_trip(&vm1, SocketAddr::from((vm2.ip, 7001)), 2), "inbound UDP dropped");

    // 3. The TCP connection idles past its flows' lifetime and still works:
    // its reply is simulated again and found in the tables.
    let misses = env.metric(0, "midonet_agent_misses_total");
    eprintln!("idling the TCP connection for {idle} s");
    std::thread::sleep(Duration::from_secs(idle));
    assert!(echo(&mut c, b"still here after idling"), "the idle connection carries data");
    // Expiry runs once a second: give it two beyond the flows' lifetime.
    if idle * 1000 >= SG_FLOW_IDLE_MS + 2000 {
        assert!(
            env.metric(0, "midonet_agent_misses_total") > misses,
            "the reply was simulated again after its flow expired"
        );
    }
    let unknown = env.metric(0, "midonet_agent_flow_state_rejected_total{reason=\"unknown_peer\"}");
    assert_eq!(unknown, 0.0, "no state from outside the tunnel zone");
}

/// A router `r` between bridge `b` (10.1.0.0/24, gateway .254, vm1 on host
/// 1 and vm2 on host 2) and an uplink port bound on host 1 to the "out"
/// namespace (192.0.2.0/24, router 192.0.2.1, server 192.0.2.2), which has
/// no route back to 10.1.0.0/24: only SNAT to 192.0.2.1 gets answers.
struct Snat {
    env: Env,
    router: Router,
    /// The router's inbound chain (`rev_snat`) and outbound chain (`snat`),
    /// as stored.
    pre: Chain,
    post: Chain,
    /// The uplink port (bound on host 1 to `out`'s veth).
    uplink: Port,
    vm1: Vm,
    vm2: Vm,
    /// vm2's bridge port.
    vm2_port: Port,
    out: Vm,
}

fn snat_lab() -> Snat {
    snat_lab_with("")
}

/// The SNAT lab with agents configured by `config` (agent TOML).
fn snat_lab_with(config: &str) -> Snat {
    snat_lab_on(config, 2)
}

/// The SNAT lab on `hosts` hosts (the third and later run no VM).
fn snat_lab_on(config: &str, hosts: usize) -> Snat {
    snat_lab_for(Provider::Ebpf, config, hosts)
}

/// The SNAT lab on `provider`'s datapath.
fn snat_lab_for(provider: Provider, config: &str, hosts: usize) -> Snat {
    let mut env = Env::with_hosts(provider, config, hosts);
    let b = Bridge {
        id: BridgeId::random(),
        name: "tenant".into(),
        admin_state_up: true,
        ..Default::default()
    };
    let r = Router {
        id: RouterId::random(),
        name: "edge".into(),
        admin_state_up: true,
        ..Default::default()
    };
    env.put(&b);
    let gw = Ipv4Addr::new(10, 1, 0, 254);
    let public = Ipv4Addr::new(192, 0, 2, 1);
    let tenant_net = Ipv4Addr::new(10, 1, 0, 0);
    let out_net = Ipv4Addr::new(192, 0, 2, 0);
    let vm1 = env.vm(0, "vm1", "10.1.0.1/24", Some(gw));
    let vm2 = env.vm(1, "vm2", "10.1.0.2/24", Some(gw));
    let out = env.vm(0, "out", "192.0.2.2/24", None);
    let uplink = PortId::random();
    // SNAT what leaves by the uplink from the tenant network; reverse it on
    // what comes in for the public address.
    let pre = Chain { id: ChainId::random(), name: "edge-in".into(), ..Default::default() };
    let post = Chain { id: ChainId::random(), name: "edge-out".into(), ..Default::default() };
    let rev = Rule {
        rule_type: RuleType::RevSnat,
        flow_action: Some(FlowAction::Accept),
        condition: Condition {
            nw_dst_address: Some(public.into()),
            nw_dst_length: Some(32),
            ..Default::default()
        },
        ..rule(&pre, RuleType::RevSnat, Condition::default())
    };
    let snat = Rule {
        rule_type: RuleType::Snat,
        flow_action: Some(FlowAction::Accept),
        nat_targets: vec![NatTarget {
            address_from: public,
            address_to: public,
            port_from: 1024,
            port_to: 65535,
        }],
        condition: Condition {
            out_ports: vec![uplink],
            nw_src_address: Some(tenant_net.into()),
            nw_src_length: Some(24),
            ..Default::default()
        },
        ..rule(&post, RuleType::Snat, Condition::default())
    };
    for c in [&pre, &post] {
        env.put(c);
    }
    env.put(&rev);
    env.put(&snat);
    let pre = Chain { rule_ids: vec![rev.id], ..pre };
    let post = Chain { rule_ids: vec![snat.id], ..post };
    env.put(&pre);
    env.put(&post);
    let router =
        Router { inbound_filter_id: Some(pre.id), outbound_filter_id: Some(post.id), ..r.clone() };
    env.put(&router);
    let rp = PortId::random();
    let bp = Port {
        id: PortId::random(),
        port_type: PortType::Bridge,
        device_id: b.id.cast(),
        admin_state_up: true,
        tunnel_key: env.key(),
        peer_id: Some(rp),
        ..Default::default()
    };
    let router_port = |id, addr, net, mac: [u8; 6], key| Port {
        id,
        port_type: PortType::Router,
        device_id: r.id.cast(),
        admin_state_up: true,
        tunnel_key: key,
        port_address: Some(addr),
        network_address: Some(net),
        network_length: Some(24),
        port_mac: Some(MacAddr(mac)),
        ..Default::default()
    };
    let k1 = env.key();
    let k2 = env.key();
    env.put(&bp);
    env.put(&Port {
        peer_id: Some(bp.id),
        ..router_port(rp, gw, tenant_net, [2, 0xaa, 0, 0, 0, 1], k1)
    });
    let up = Port {
        host_id: Some(env.hosts[0].id),
        interface_name: Some(out.host_if.clone()),
        ..router_port(uplink, public, out_net, [2, 0xaa, 0, 0, 0, 2], k2)
    };
    env.put(&up);
    let far = Ipv4Addr::new(198, 51, 100, 0);
    let outside = Some(Ipv4Addr::new(192, 0, 2, 2));
    for (net, port, gw) in [(tenant_net, rp, None), (out_net, uplink, None), (far, uplink, outside)]
    {
        env.route(r.id, (net, 24), port, gw);
    }
    let p1 = env.bridge_port(&b, Some((0, &vm1)));
    let p2 = env.bridge_port(&b, Some((1, &vm2)));
    for p in [&p1, &p2, &up] {
        env.wait_active(p);
    }
    // The outside knows nothing of 10.1.0.0/24 and forwards to a network
    // behind it (for the TTL-exceeded probe).
    ns_exec(&out.ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).expect("forwarding");
    // (No dummy driver here: a veth pair inside the namespace.)
    ns_exec(&out.ns, &["ip", "link", "add", "far", "type", "veth", "peer", "name", "far2"])
        .expect("far link");
    for l in ["far", "far2"] {
        ns_exec(&out.ns, &["ip", "link", "set", l, "up"]).expect("far up");
    }
    ns_exec(&out.ns, &["ip", "addr", "add", "198.51.100.254/24", "dev", "far"]).expect("far addr");
    Snat { env, router, pre, post, uplink: up, vm1, vm2, vm2_port: p2, out }
}

/// A datagram bigger than the path's MTU, through SNAT and back: vm2's
/// kernel fragments it on host 1, the first fragment is translated there
/// and its later fragments follow it (no flow may carry them); the server's
/// answer, fragmented by the outside's kernel, is reverse-translated the
/// same way by the gateway, host 0. Both ends reassemble the whole.
#[test]
fn fragmented_datagrams_through_snat_arrive_whole_both_ways() {
    if !prerequisites("fragmented_datagrams_through_snat_arrive_whole_both_ways") {
        return;
    }
    fragments_through_snat(&snat_lab());
}

/// The same on the userspace datapath, whose rewrites of a later fragment
/// are its own (`midonet_flow::apply_action`).
#[test]
fn fragmented_datagrams_through_snat_arrive_whole_on_userspace() {
    if !prerequisites("fragmented_datagrams_through_snat_arrive_whole_on_userspace") {
        return;
    }
    fragments_through_snat(&snat_lab_for(Provider::Userspace, "", 2));
}

fn fragments_through_snat(lab: &Snat) {
    let (env, vm2, out) = (&lab.env, &lab.vm2, &lab.out);
    let server = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 7000));
    let s = in_netns(&out.ns, move || UdpSocket::bind(server).expect("udp bind"));
    let (seen_tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = seen_tx.send((n, from));
            let _ = s.send_to(&buf[..n], from);
        }
    });
    // Whole datagrams first: the router resolves the server, the
    // connection gets its binding (and its exact flow, which fragments
    // do not match).
    assert!(until_ping_ok(vm2, out.ip), "vm2 reaches the outside (ARP, a SNAT block)");
    assert!(udp_round_trip(vm2, server, 20), "small datagrams through SNAT");
    let payload: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sent = payload.clone();
    let back = in_netns(&vm2.ns, move || {
        let c = UdpSocket::bind("0.0.0.0:0").expect("udp client");
        c.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut buf = vec![0u8; 65536];
        (0..10).find_map(|_| {
            c.send_to(&sent, server).ok()?;
            let (n, _) = c.recv_from(&mut buf).ok()?;
            Some(buf[..n].to_vec())
        })
    });
    assert_eq!(back.as_deref(), Some(&payload[..]), "the 4000-byte echo came back whole");
    let arrived: Vec<_> = seen.try_iter().filter(|(n, _)| *n == payload.len()).collect();
    assert!(!arrived.is_empty(), "the server got the whole datagram");
    for (_, from) in &arrived {
        assert_eq!(from.ip(), std::net::IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)), "translated");
    }
    let ev = |i, event: &str| {
        env.metric(i, &format!("midonet_agent_nat_fragments_total{{event=\"{event}\"}}"))
    };
    // Three fragments each way (4008 bytes of UDP in 1500-byte packets or
    // less): one recorded and two followed per datagram, on each host.
    for (host, what) in [(1, "vm2's host, out"), (0, "the gateway, back")] {
        assert!(ev(host, "recorded") >= 1.0, "{what}: a first fragment kept");
        assert!(ev(host, "followed") >= 2.0, "{what}: the later ones followed");
        assert_eq!(ev(host, "refused"), 0.0, "{what}");
    }
}

#[test]
fn two_vms_share_one_snat_address_without_collisions() {
    if !prerequisites("two_vms_share_one_snat_address_without_collisions") {
        return;
    }
    let per_vm: usize =
        std::env::var("MAG_SNAT_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    // Two miss workers on each host (whatever the machine's default): the
    // VMs' connections are simulated side by side, allocating ports from
    // the same blocks through the shared NAT table.
    // Refresh rounds every 500 ms: the gateway acts on the RST below soon.
    let Snat { env, vm1, vm2, out, pre, vm2_port, .. } =
        snat_lab_with("miss_workers = 2\nconntrack_refresh_ms = 500\n");
    for h in 0..2 {
        let m = env.agent_get(h, "/metrics").expect("metrics");
        assert!(m.contains("midonet_agent_miss_workers 2"), "host {h} runs two miss workers");
    }
    let server = SocketAddr::from((out.ip, 8000));
    // The server answers each connection with its peer's address, so each
    // client sees what it was translated to; it records them all.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<SocketAddr>::new()));
    let l = in_netns(&out.ns, || std::net::TcpListener::bind("0.0.0.0:8000").expect("bind"));
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                let Ok(peer) = c.peer_addr() else { continue };
                seen.lock().expect("lock").push(peer);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = c.read(&mut buf) {
                        let mut reply = buf[..n].to_vec();
                        reply.extend_from_slice(format!(" from {peer}").as_bytes());
                        let _ = c.write_all(&reply);
                    }
                    // Held open until the client closes.
                    let _ = c.read(&mut buf);
                });
            }
        });
    }
    assert!(until_ping_ok(&vm1, out.ip), "vm1 reaches the outside (ARP, first flows)");

    // Both VMs open all their connections at once, then talk on each.
    let open = |vm: &Vm| {
        let ns = vm.ns.clone();
        spawn_in_netns(&ns, move || {
            (0..per_vm)
                .map(|_| TcpStream::connect_timeout(&server, Duration::from_secs(10)))
                .collect::<Vec<_>>()
        })
    };
    let (a, b) = (open(&vm1), open(&vm2));
    let (a, b) = (a.join().expect("vm1 connects"), b.join().expect("vm2 connects"));
    let mut conns = Vec::new();
    for (vm, list) in [("vm1", a), ("vm2", b)] {
        for (i, c) in list.into_iter().enumerate() {
            let c = c.unwrap_or_else(|e| panic!("{vm} connection {i}: {e}"));
            conns.push((format!("{vm}-{i}"), c));
        }
    }
    for (name, c) in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        c.write_all(name.as_bytes()).expect("write");
        let mut buf = [0u8; 128];
        let n = c.read(&mut buf).unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with(name.as_str()), "{name} got someone else's answer: {text}");
        assert!(text.contains(" from 192.0.2.1:"), "{name} was not translated: {text}");
    }
    let peers = seen.lock().expect("lock").clone();
    let mut ports: Vec<u16> = peers.iter().map(|p| p.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert!(peers.iter().all(|p| p.ip() == std::net::IpAddr::from(Ipv4Addr::new(192, 0, 2, 1))));
    assert_eq!(ports.len(), 2 * per_vm, "every open connection has its own public port");
    eprintln!("MEASURE {} concurrent connections through one SNAT address", conns.len());
    drop(conns);
    // Host 0 is the gateway: every reply came in by its uplink. Their flow
    // is split at the reverse rule and the datapath translated them from
    // its own table (vm2's bindings taken from host 1's messages as they
    // arrived): the gateway's agent simulated a few replies, not one per
    // connection. Its misses are vm1's connections (each a new binding).
    let translated = env.metric(0, "midonet_agent_rev_nat_translated_total");
    let preloaded = env.metric(0, "midonet_agent_state_bindings_preloaded_total");
    let misses = env.metric(0, "midonet_agent_misses_total");
    eprintln!(
        "MEASURE gateway: {translated} replies translated by the datapath, {preloaded} bindings \
         preloaded from messages, {misses} misses for {} connections",
        2 * per_vm
    );
    assert!(env.metric(0, "midonet_agent_split_flows_total") >= 1.0, "a reply's flow was split");
    assert!(translated >= per_vm as f64, "the datapath translated the replies: {translated}");
    assert!(preloaded >= per_vm as f64, "vm2's bindings were preloaded: {preloaded}");
    assert!(
        misses < (per_vm + per_vm / 2) as f64,
        "the gateway's agent saw few replies: {misses} misses"
    );

    // ICMP: both VMs ping the outside at once; ids are translated.
    let pings: Vec<_> = [&vm1, &vm2]
        .into_iter()
        .map(|vm| {
            let ns = vm.ns.clone();
            let dst = out.ip.to_string();
            std::thread::spawn(move || {
                let out =
                    midonet_testkit::ns_output(&ns, &["ping", "-n", "-c", "5", "-i", "0.2", &dst])
                        .expect("ping");
                String::from_utf8_lossy(&out.stdout).contains("5 received")
            })
        })
        .collect();
    for (i, p) in pings.into_iter().enumerate() {
        assert!(p.join().expect("ping thread"), "vm{} pings the outside through SNAT", i + 1);
    }

    // A TTL-exceeded from beyond the gateway reaches the VM that sent the
    // probe: its embedded header is translated back.
    for vm in [&vm1, &vm2] {
        let out = midonet_testkit::ns_output(
            &vm.ns,
            &["traceroute", "-n", "-q", "1", "-w", "2", "-m", "2", "198.51.100.1"],
        )
        .expect("traceroute");
        let text = String::from_utf8_lossy(&out.stdout);
        let hop2 = text.lines().find(|l| l.trim_start().starts_with("2 ")).unwrap_or_default();
        assert!(hop2.contains("192.0.2.2"), "{}: hop 2 is the outside router:\n{text}", vm.ns);
    }
    let unknown = env.metric(0, "midonet_agent_flow_state_rejected_total{reason=\"unknown_peer\"}");
    assert_eq!(unknown, 0.0);
    assert!(
        env.metric(1, "midonet_agent_flow_state_sent_total") > 0.0,
        "vm2's host sent its bindings"
    );
    a_reset_connections_5_tuple_opens_again(&env, &vm2, &out);
    let vms = [&vm1, &vm2];
    replies_checked_by_conntrack_after_the_reverse_nat_stay_in_the_datapath(
        &env, &pre, vms, &vm2_port, &out,
    );
}

/// Security groups on the reply path of SNAT: the router's inbound chain
/// restores a reply (`rev_snat`, continue), then accepts only return flows
/// of tracked connections, and new connections only from the tenant
/// network. vm2's host tracks each connection and binds its port; the
/// gateway gets both in the state message before the SYN. The gateway's
/// replies still take the split flow: the datapath checks the connection
/// in its own conntrack table (filled from the message as it arrived), so
/// its agent simulates a few replies, not one per connection (it used to
/// simulate every connection's SYN-ACK, the conntrack lookup cancelling
/// the split). The replies it let through advance the gateway's copies
/// as a flow's would, and nothing from outside gets in.
///
/// (Part of `two_vms_share_one_snat_address_without_collisions`, whose lab
/// it reuses: building one takes a minute, most of it the verifier.)
///
/// Then a security group on vm2's port only: replies to vm2 read conntrack
/// behind the same first half as vm1's, which read none; vm1's replies,
/// whose connections nobody tracks, take the untracked in-port and stay in
/// the datapath as well.
fn replies_checked_by_conntrack_after_the_reverse_nat_stay_in_the_datapath(
    env: &Env,
    pre: &Chain,
    [vm1, vm2]: [&Vm; 2],
    vm2_port: &Port,
    out: &Vm,
) {
    let n: usize =
        std::env::var("MAG_CT_SNAT_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let rev_id = pre.rule_ids[0];
    let tenant = Condition {
        match_forward_flow: true,
        nw_src_address: Some(Ipv4Addr::new(10, 1, 0, 0).into()),
        nw_src_length: Some(24),
        ..Default::default()
    };
    let rev = Rule {
        id: rev_id,
        chain_id: pre.id,
        rule_type: RuleType::RevSnat,
        flow_action: Some(FlowAction::Continue),
        condition: Condition {
            nw_dst_address: Some(Ipv4Addr::new(192, 0, 2, 1).into()),
            nw_dst_length: Some(32),
            ..Default::default()
        },
        ..Default::default()
    };
    let ret =
        rule(pre, RuleType::Accept, Condition { match_return_flow: true, ..Default::default() });
    let fwd = rule(pre, RuleType::Accept, tenant);
    let deny = rule(pre, RuleType::Drop, Condition::default());
    for r in [&rev, &ret, &fwd, &deny] {
        env.put(r);
    }
    env.put(&Chain { rule_ids: vec![rev.id, ret.id, fwd.id, deny.id], ..pre.clone() });
    // Both agents on the new chain before the first SYN: a VM host still
    // on the old one would not track the connection, and the gateway, on
    // the new one, would drop its replies (a verify run lost that race).
    env.wait_synced();
    tcp_echo(out, 8100);
    let server = SocketAddr::from((out.ip, 8100));
    let mut first = connect(vm2, server, Duration::from_secs(5)).expect("a first connection");
    assert!(echo(&mut first, b"through rev_snat and conntrack"), "its reply is let in");
    drop(first);

    let misses = env.metric(0, "midonet_agent_misses_total");
    let translated = env.metric(0, "midonet_agent_rev_nat_translated_total");
    let ct_missed = env.metric(0, "midonet_agent_conntrack_missed_total");
    let ns = vm2.ns.clone();
    let talked = spawn_in_netns(&ns, move || {
        (0..n)
            .filter(|i| {
                let Ok(mut c) = TcpStream::connect_timeout(&server, Duration::from_secs(5)) else {
                    return false;
                };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                echo(&mut c, format!("connection {i}").as_bytes())
            })
            .count()
    })
    .join()
    .expect("vm2's connections");
    assert_eq!(talked, n, "every connection got its replies");
    let misses = env.metric(0, "midonet_agent_misses_total") - misses;
    let translated = env.metric(0, "midonet_agent_rev_nat_translated_total") - translated;
    let ct_missed = env.metric(0, "midonet_agent_conntrack_missed_total") - ct_missed;
    let preloaded = env.metric(0, "midonet_agent_state_connections_preloaded_total");
    eprintln!(
        "MEASURE gateway, {n} connections through rev_snat + matchReturnFlow: {misses} misses, \
         {translated} replies translated and checked by the datapath, {ct_missed} sent up for \
         want of their connection, {preloaded} connections preloaded from messages"
    );
    assert!(translated >= (2 * n) as f64, "SYN-ACKs and answers stayed in the datapath");
    assert!(misses < (n / 4) as f64, "the gateway's agent saw few replies: {misses} misses");
    assert!(ct_missed < (n / 10) as f64, "the connections were there first: {ct_missed}");
    assert!(preloaded >= (n / 2) as f64, "preloaded from the messages: {preloaded}");

    // The gateway's copies saw their replies: none is still waiting for one.
    std::thread::sleep(Duration::from_millis(1500));
    let listed = conntrack(env, 0);
    let conns = listed["connections"].as_array().expect("connections");
    let ours: Vec<&serde_json::Value> =
        conns.iter().filter(|c| c["proto"] == 6 && c["dst_port"] == 8100).collect();
    assert!(ours.len() >= n, "the gateway tracks them: {} of {n}", ours.len());
    let waiting: Vec<_> = ours.iter().filter(|c| c["state"] == "syn_sent").collect();
    assert!(waiting.is_empty(), "copies the replies did not advance: {waiting:?}");

    // Nothing new gets in from outside, to the public address or past it.
    assert!(
        connect(out, SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 8100)), Duration::from_secs(2))
            .is_err(),
        "an unsolicited connection to the public address is dropped"
    );

    // vm2's security group, as Neutron builds one; the router's inbound
    // chain back to the reverse rule alone.
    env.put(&Rule { flow_action: Some(FlowAction::Accept), ..rev.clone() });
    env.put(&Chain { rule_ids: vec![rev.id], ..pre.clone() });
    let from_vm = Chain { id: ChainId::random(), name: "sg2-from".into(), ..Default::default() };
    let to_vm = Chain { id: ChainId::random(), name: "sg2-to".into(), ..Default::default() };
    let ret = Condition { match_return_flow: true, ..Default::default() };
    let ipv4 = Condition { dl_type: Some(0x0800), ..Default::default() };
    let sg = [
        rule(&from_vm, RuleType::Accept, ret.clone()),
        rule(&from_vm, RuleType::Accept, Condition::default()),
        rule(&to_vm, RuleType::Accept, ret),
        rule(&to_vm, RuleType::Drop, ipv4),
    ];
    env.put(&from_vm);
    env.put(&to_vm);
    for r in &sg {
        env.put(r);
    }
    env.put(&Chain { rule_ids: vec![sg[0].id, sg[1].id], ..from_vm.clone() });
    env.put(&Chain { rule_ids: vec![sg[2].id, sg[3].id], ..to_vm.clone() });
    env.put(&Port {
        inbound_filter_id: Some(from_vm.id),
        outbound_filter_id: Some(to_vm.id),
        ..vm2_port.clone()
    });
    env.wait_synced();
    let per_vm = n / 3;
    let talk = |vm: &Vm| {
        spawn_in_netns(&vm.ns, move || {
            (0..per_vm)
                .filter(|i| {
                    let Ok(mut c) = TcpStream::connect_timeout(&server, Duration::from_secs(5))
                    else {
                        return false;
                    };
                    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                    echo(&mut c, format!("mixed {i}").as_bytes())
                })
                .count()
        })
    };
    // (The policy reaches the agents before the first connection.)
    let mut c = connect(vm2, server, Duration::from_secs(5)).expect("vm2 behind its group");
    assert!(echo(&mut c, b"a reply let in by vm2's group"));
    drop(c);
    let misses = env.metric(0, "midonet_agent_misses_total");
    let translated = env.metric(0, "midonet_agent_rev_nat_translated_total");
    let (a, b) = (talk(vm1), talk(vm2));
    let (a, b) = (a.join().expect("vm1"), b.join().expect("vm2"));
    assert_eq!((a, b), (per_vm, per_vm), "every connection got its replies");
    let misses = env.metric(0, "midonet_agent_misses_total") - misses;
    let translated = env.metric(0, "midonet_agent_rev_nat_translated_total") - translated;
    eprintln!(
        "MEASURE gateway, {per_vm} connections from vm1 (no group) and {per_vm} from vm2 (a \
         group reading conntrack) behind one first half: {misses} misses (vm1's own SYNs \
         included: it is on this host), {translated} replies translated"
    );
    assert!(translated >= (4 * per_vm) as f64, "both VMs' replies stayed in the datapath");
    // vm1's SYNs miss here (a binding each); its replies did not: had they
    // missed for want of a tracked connection, three or more a connection.
    assert!(
        misses < (per_vm + per_vm / 2) as f64,
        "the gateway's agent saw few replies: {misses} misses"
    );
}

/// The server resets vm2's connection; 12 s later vm2 opens another from
/// the same port to the same server (its 5-tuple reused, as a client's
/// default port range soon does). vm2's host saw no RST (it went to vm2)
/// and its flow of the first connection, idle under 60 s, carries the new
/// SYN on the old binding. The gateway saw the RST in the replies: its
/// copy must still be there, or the new connection's replies have nothing
/// to be translated by. (It used to live the kernel's 10 s after an RST.)
fn a_reset_connections_5_tuple_opens_again(env: &Env, vm: &Vm, out: &Vm) {
    let server = SocketAddr::from((out.ip, 8001));
    let l = in_netns(&out.ns, || std::net::TcpListener::bind("0.0.0.0:8001").expect("bind"));
    std::thread::spawn(move || {
        for (i, c) in l.incoming().enumerate() {
            let Ok(mut c) = c else { return };
            if i == 0 {
                // Once the client has spoken (so the RST cannot beat its
                // connect), closed with SO_LINGER 0: an RST.
                let _ = c.read(&mut [0u8; 8]);
                let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                continue;
            }
            let mut buf = [0u8; 64];
            if let Ok(n) = c.read(&mut buf) {
                let _ = c.write_all(&buf[..n]);
            }
        }
    });
    let from = SocketAddr::from((vm.ip, 47001));
    let dial = move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&from.into())?;
        s.connect_timeout(&server.into(), Duration::from_secs(3))?;
        Ok::<TcpStream, std::io::Error>(s.into())
    };
    let mut first = in_netns(&vm.ns, dial).expect("the first connection opens");
    first.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    first.write_all(b"x").expect("write");
    let mut buf = [0u8; 8];
    assert!(first.read(&mut buf).is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset));
    drop(first);
    std::thread::sleep(Duration::from_secs(12));
    let held = nat_bindings(env, 0)["bindings"]
        .as_array()
        .map(|a| a.iter().any(|b| b["src_port"] == 47001 && b["dst_port"] == 8001))
        .unwrap_or(false);
    assert!(held, "the gateway's copy outlived the RST's 10 s");
    let mut second = in_netns(&vm.ns, dial).expect("the reused 5-tuple opens again");
    assert!(echo(&mut second, b"again"), "the second connection carries data");
}

/// Pings once a 300 ms until a reply comes, for up to 10 s.
fn until_ping_ok(vm: &Vm, dst: Ipv4Addr) -> bool {
    let dst = dst.to_string();
    (0..30).any(|_| {
        midonet_testkit::ns_output(&vm.ns, &["ping", "-n", "-c", "1", "-W", "0.3", &dst])
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// The agent's `GET /nat` on host `i`.
fn nat_bindings(env: &Env, i: usize) -> serde_json::Value {
    env.agent_json(i, "/nat")
}

/// The longest run of lost replies in `ping -i 0.01` output, in ms.
fn longest_gap_ms(ping_output: &str, interval_ms: u64) -> u64 {
    let seqs: Vec<u64> = ping_output
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    seqs.windows(2).map(|w| w[1].saturating_sub(w[0]).saturating_sub(1)).max().unwrap_or(0)
        * interval_ms
}

#[test]
fn nated_connections_survive_kill_9_of_both_agents() {
    if !prerequisites("nated_connections_survive_kill_9_of_both_agents") {
        return;
    }
    use sha2::{Digest, Sha256};
    const SIZE: usize = 100 << 20;
    const CHUNK: usize = 256 << 10;
    let Snat { mut env, router, vm2, out, .. } = snat_lab();
    assert!(until_ping_ok(&vm2, out.ip), "vm2 reaches the outside");
    let l = in_netns(&out.ns, || std::net::TcpListener::bind("0.0.0.0:8001").expect("bind"));
    let server = std::thread::spawn(move || {
        let (mut c, peer) = l.accept().expect("accept");
        let mut h = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0usize;
        loop {
            let k = c.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k;
        }
        (peer, n, h.finalize().to_vec())
    });
    // The transfer is paced over ~8 s so both restarts happen inside it.
    let dst = SocketAddr::from((out.ip, 8001));
    let client = spawn_in_netns(&vm2.ns, move || {
        let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
        let mut h = Sha256::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut chunk = vec![0u8; CHUNK];
        let t0 = std::time::Instant::now();
        for i in 0..SIZE / CHUNK {
            fill_random(&mut chunk, &mut x);
            c.write_all(&chunk).expect("write");
            h.update(&chunk);
            let due = Duration::from_millis(20) * (i as u32 + 1);
            std::thread::sleep(due.saturating_sub(t0.elapsed()));
        }
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        h.finalize().to_vec()
    });
    let pinger = {
        let (ns, ip) = (vm2.ns.clone(), out.ip.to_string());
        std::thread::spawn(move || {
            let o = midonet_testkit::ns_output(&ns, &["ping", "-n", "-i", "0.01", "-w", "9", &ip])
                .expect("ping");
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let before = nat_bindings(&env, 1)["count"].as_u64().unwrap_or_default();
    assert!(before > 0, "vm2's host holds the bindings of its connections");
    let bin = agent_binary();
    // The VM's host, then the gateway.
    for i in [1, 0] {
        env.kill_agent(i);
        env.start_agent(i, &bin);
        let n = nat_bindings(&env, i)["count"].as_u64().unwrap_or_default();
        assert!(n > 0, "host {i}'s bindings came back from its log: {}", nat_bindings(&env, i));
        std::thread::sleep(Duration::from_millis(700));
    }
    // Every flow through the router is simulated again from the restored
    // state (a router change invalidates them all).
    env.put(&Router { name: "edge-renamed".into(), ..router });
    let sent = client.join().expect("the transfer completes");
    let (peer, got, got_hash) = server.join().expect("server");
    assert_eq!(got, SIZE, "bytes received");
    assert_eq!(got_hash, sent, "SHA-256 of the stream");
    assert_eq!(peer.ip(), std::net::IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)), "translated");
    let pings = pinger.join().expect("ping");
    let gap = longest_gap_ms(&pings, 10);
    eprintln!("MEASURE kill -9 of both agents during a NATed transfer: longest ping gap {gap} ms");
    assert!(gap <= 1000, "ping through SNAT stalled {gap} ms:\n{pings}");
}

/// One line sent and echoed back on `c`.
fn echo_line(c: &mut TcpStream, line: &str) -> std::io::Result<String> {
    c.write_all(line.as_bytes())?;
    let mut buf = vec![0u8; line.len()];
    c.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Issue 8, "Migration": vm2's port is rebound to a third host (its veth's
/// host end moves into that host's namespace, as a migrated VM's tap comes
/// up on its new host) while a TCP connection through SNAT is open. The
/// new host asks its peers for the port's state before it forwards the
/// port's packets, so the connection keeps its binding (the same public
/// port) and carries data after the move.
#[test]
fn a_vms_nated_connection_survives_its_migration_to_another_host() {
    if !prerequisites("a_vms_nated_connection_survives_its_migration_to_another_host") {
        return;
    }
    let Snat { env, vm2, vm2_port, out, .. } = snat_lab_on("", 3);
    assert!(until_ping_ok(&vm2, out.ip), "vm2 reaches the outside");
    let l = in_netns(&out.ns, || std::net::TcpListener::bind("0.0.0.0:8003").expect("bind"));
    let (peer_tx, peer_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // One connection only: a second would mean the client reconnected.
        let (mut c, peer) = l.accept().expect("accept");
        let _ = peer_tx.send(peer);
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if c.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (moved_tx, moved_rx) = std::sync::mpsc::channel::<()>();
    let dst = SocketAddr::from((out.ip, 8003));
    let client = spawn_in_netns(&vm2.ns, move || {
        let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        let before = echo_line(&mut c, "before the move\n").expect("echo before");
        ready_tx.send(()).expect("ready");
        moved_rx.recv().expect("moved");
        let after: Vec<String> = (0..5)
            .map(|i| echo_line(&mut c, &format!("after the move {i}\n")).expect("echo after"))
            .collect();
        (before, after)
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("the connection is up");
    let peer = peer_rx.recv_timeout(Duration::from_secs(5)).expect("accepted");
    assert_eq!(peer.ip(), std::net::IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)), "translated");
    let bound_port = |env: &Env, i: usize| -> Option<u64> {
        nat_bindings(env, i)["bindings"].as_array()?.iter().find_map(|b| {
            (b["dst_port"] == 8003 && b["kind"] == "snat").then(|| b["port"].as_u64()).flatten()
        })
    };
    assert_eq!(bound_port(&env, 1), Some(u64::from(peer.port())), "vm2's host made the binding");
    assert_eq!(bound_port(&env, 2), None, "the third host knows nothing of it yet");
    // The move: the tap's host end goes to host 3, and the port follows.
    let (from_ns, to_ns) = (env.hosts[1].ns.clone(), env.hosts[2].ns.clone());
    ns_exec(&from_ns, &["ip", "link", "set", &vm2.host_if, "netns", &to_ns]).expect("move");
    ns_exec(&to_ns, &["ip", "link", "set", &vm2.host_if, "up"]).expect("up");
    env.put(&Port { host_id: Some(env.hosts[2].id), ..vm2_port });
    let answered = "midonet_agent_flow_state_imports_total{event=\"answered\"}";
    let t_move = std::time::Instant::now();
    let waited = env.wait("host 3 imported vm2's state", Duration::from_secs(20), |e| {
        e.metric(2, answered) >= 1.0
    });
    eprintln!("MEASURE migration: port state imported {} ms after the rebind", waited.as_millis());
    assert_eq!(
        bound_port(&env, 2),
        Some(u64::from(peer.port())),
        "the binding moved with the port"
    );
    moved_tx.send(()).expect("client waits");
    let (before, after) = client.join().expect("the connection carries data after the move");
    eprintln!("MEASURE migration: data again {} ms after the rebind", t_move.elapsed().as_millis());
    assert_eq!(before, "before the move\n");
    for (i, a) in after.iter().enumerate() {
        assert_eq!(a, &format!("after the move {i}\n"));
    }
    assert!(
        env.metric(1, "midonet_agent_flow_state_ports_handed_total") >= 1.0,
        "host 2 handed it"
    );
    assert_eq!(
        env.metric(2, "midonet_agent_flow_state_imports_total{event=\"timed_out\"}"),
        0.0,
        "every live peer answered"
    );
    assert!(
        peer_rx.try_recv().is_err() && bound_port(&env, 2) == Some(u64::from(peer.port())),
        "still the one connection and binding"
    );
}

/// A NAT rule in `chain` with one target.
fn nat_rule(
    chain: &Chain,
    rule_type: RuleType,
    to: (Ipv4Addr, u16, u16),
    condition: Condition,
) -> Rule {
    Rule {
        flow_action: Some(FlowAction::Accept),
        nat_targets: vec![NatTarget {
            address_from: to.0,
            address_to: to.0,
            port_from: to.1,
            port_to: to.2,
        }],
        ..rule(chain, rule_type, condition)
    }
}

#[test]
fn the_outside_reaches_vms_by_floating_ip_and_port_forward() {
    if !prerequisites("the_outside_reaches_vms_by_floating_ip_and_port_forward") {
        return;
    }
    let Snat { env, pre, post, vm1, vm2, out, .. } = snat_lab();
    let fip = Ipv4Addr::new(192, 0, 2, 50);
    let public = Ipv4Addr::new(192, 0, 2, 1);
    let dst = |ip: Ipv4Addr| Condition {
        nw_dst_address: Some(ip.into()),
        nw_dst_length: Some(32),
        ..Default::default()
    };
    // vm1's floating IP (static, both ways), and 192.0.2.1:2222 forwarded
    // to vm2:7002 (dynamic DNAT, reversed on the way out).
    let fip_in = nat_rule(&pre, RuleType::Dnat, (vm1.ip, 0, 0), dst(fip));
    let forward = nat_rule(
        &pre,
        RuleType::Dnat,
        (vm2.ip, 7002, 7002),
        Condition {
            nw_proto: Some(6),
            tp_dst: Some(PortRange { start: 2222, end: 2222 }),
            ..dst(public)
        },
    );
    let rev_forward = Rule {
        rule_type: RuleType::RevDnat,
        flow_action: Some(FlowAction::Accept),
        ..rule(&post, RuleType::RevDnat, Condition::default())
    };
    let fip_out = nat_rule(
        &post,
        RuleType::Snat,
        (fip, 0, 0),
        Condition {
            nw_src_address: Some(vm1.ip.into()),
            nw_src_length: Some(32),
            ..Default::default()
        },
    );
    for r in [&fip_in, &forward, &rev_forward, &fip_out] {
        env.put(r);
    }
    let mut pre_ids = vec![fip_in.id, forward.id];
    pre_ids.extend(&pre.rule_ids);
    let mut post_ids = vec![rev_forward.id, fip_out.id];
    post_ids.extend(&post.rule_ids);
    env.put(&Chain { rule_ids: pre_ids, ..pre.clone() });
    env.put(&Chain { rule_ids: post_ids, ..post.clone() });
    // The outside routes the floating IP to the router.
    ns_exec(&out.ns, &["ip", "route", "add", "192.0.2.50/32", "via", "192.0.2.1"]).expect("route");
    tcp_echo(&vm1, 7000);
    tcp_echo(&vm2, 7002);

    let mut c = connect(&out, SocketAddr::from((fip, 7000)), Duration::from_secs(5))
        .expect("the outside connects to vm1's floating IP");
    assert!(echo(&mut c, b"to the floating ip"), "vm1 answers through its floating IP");
    assert_eq!(c.peer_addr().expect("peer").ip(), std::net::IpAddr::from(fip));
    let mut c = connect(&out, SocketAddr::from((public, 2222)), Duration::from_secs(5))
        .expect("the outside connects to the forwarded port");
    assert!(echo(&mut c, b"to the forwarded port"), "vm2's server answers on 2222");
    assert!(until_ping_ok(&out, fip), "the floating IP answers ping");
    let bindings = nat_bindings(&env, 0);
    assert!(
        bindings["bindings"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["kind"] == "dnat" && b["port"] == 7002)),
        "the gateway holds the port-forward binding: {bindings}"
    );
}

#[test]
fn a_reply_entering_by_the_other_gateway_of_a_stateful_group_is_translated() {
    if !prerequisites("a_reply_entering_by_the_other_gateway_of_a_stateful_group_is_translated") {
        return;
    }
    let Snat { mut env, router, uplink, vm1, out, .. } = snat_lab();
    // A second uplink on host 2, to a second interface of the outside,
    // in one stateful port group with the first.
    let pg = PortGroup {
        id: PortGroupId::random(),
        name: "uplinks".into(),
        stateful: true,
        ..Default::default()
    };
    env.put(&pg);
    let host2 = env.hosts[1].ns.clone();
    ns_exec(&out.ns, &["ip", "link", "add", "outb", "type", "veth", "peer", "name", "o2h"])
        .expect("second outside link");
    ns_exec(&out.ns, &["ip", "link", "set", "o2h", "netns", &host2]).expect("to host 2");
    ns_exec(&host2, &["ip", "link", "set", "o2h", "up"]).expect("up");
    for cmd in [
        vec!["ip", "addr", "add", "192.0.3.2/24", "dev", "outb"],
        vec!["ip", "link", "set", "outb", "up"],
        vec!["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
        vec!["sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0"],
    ] {
        ns_exec(&out.ns, &cmd).expect("outside setup");
    }
    let g1_mac = [2, 0xaa, 0, 0, 0, 3];
    let g1 = Port {
        id: PortId::random(),
        port_type: PortType::Router,
        device_id: router.id.cast(),
        admin_state_up: true,
        tunnel_key: env.key(),
        port_address: Some(Ipv4Addr::new(192, 0, 3, 1)),
        network_address: Some(Ipv4Addr::new(192, 0, 3, 0)),
        network_length: Some(24),
        port_mac: Some(MacAddr(g1_mac)),
        host_id: Some(env.hosts[1].id),
        interface_name: Some("o2h".into()),
        port_group_ids: vec![pg.id],
        ..Default::default()
    };
    env.put(&g1);
    env.put(&Port { port_group_ids: vec![pg.id], ..uplink });
    env.wait_active(&g1);
    // Requests leave by the first uplink (host 1); the outside sends the
    // replies for 192.0.2.1 to the second (host 2).
    let mac = "02:aa:00:00:00:03";
    for cmd in [
        vec!["ip", "route", "add", "192.0.2.1/32", "dev", "outb"],
        vec![
            "ip",
            "neigh",
            "replace",
            "192.0.2.1",
            "lladdr",
            mac,
            "dev",
            "outb",
            "nud",
            "permanent",
        ],
    ] {
        ns_exec(&out.ns, &cmd).expect("asymmetric return");
    }
    tcp_echo(&out, 8002);
    let received = env.metric(1, "midonet_agent_flow_state_received_total");
    let mut c = connect(&vm1, SocketAddr::from((out.ip, 8002)), Duration::from_secs(5))
        .expect("vm1 connects although the reply comes back by the other gateway");
    assert!(echo(&mut c, b"asymmetric"), "the reply through the other gateway reaches vm1");
    assert!(
        env.metric(1, "midonet_agent_flow_state_received_total") > received,
        "host 2 received the binding as a stateful-group peer"
    );
    let bindings = nat_bindings(&env, 1);
    assert!(
        bindings["bindings"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["kind"] == "snat" && b["dst_port"] == 8002)),
        "host 2 holds vm1's binding: {bindings}"
    );
}
