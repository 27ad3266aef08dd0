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
//! Knobs: `MAG_CT_IDLE_SECS` (default 120) is how long the idle connection
//! waits before it must still carry data; the flows' own idle timeout is
//! 60 s, so the connection outlives its flows and is found again in the
//! tables.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::env::*;
use midonet_model::*;
use midonet_testkit::Vm;

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

/// One UDP round trip from `vm` to `dst`, up to `tries` attempts.
fn udp_round_trip(vm: &Vm, dst: SocketAddr, tries: u32) -> bool {
    in_netns(&vm.ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp client");
        s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut buf = [0u8; 64];
        (0..tries).any(|i| {
            let msg = format!("probe {i}");
            s.send_to(msg.as_bytes(), dst).is_ok()
                && matches!(s.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == msg.as_bytes())
        })
    })
}

fn rule(chain: &Chain, rule_type: RuleType, condition: Condition) -> Rule {
    Rule { id: RuleId::random(), chain_id: chain.id, rule_type, condition, ..Default::default() }
}

/// The agent's `GET /conntrack` on host `i`.
fn conntrack(env: &Env, i: usize) -> serde_json::Value {
    let text = in_netns(&env.hosts[i].ns, || {
        let mut s = TcpStream::connect("127.0.0.1:7300").expect("metrics listener");
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        s.write_all(b"GET /conntrack HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET /conntrack: {e}: {text}"))
}

#[test]
fn a_security_group_lets_replies_in_and_keeps_new_connections_out() {
    if !prerequisites("a_security_group_lets_replies_in_and_keeps_new_connections_out") {
        return;
    }
    let idle: u64 =
        std::env::var("MAG_CT_IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let mut env = Env::new(Provider::Ebpf);
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
    if idle > 65 {
        assert!(
            env.metric(0, "midonet_agent_misses_total") > misses,
            "the reply was simulated again after its flow expired"
        );
    }
    let unknown = env.metric(0, "midonet_agent_flow_state_rejected_total{reason=\"unknown_peer\"}");
    assert_eq!(unknown, 0.0, "no state from outside the tunnel zone");
}
