//! System tests on real kernels: two "hosts" (network namespaces named
//! `mag…`) joined by an underlay, one `midonet-agent` PROCESS per host
//! (`ip netns exec <host> midonet-agent …`, the built binary), VMs as
//! namespaces with veths, and real traffic (ping, traceroute-style TTL,
//! a 100 MiB TCP transfer checked with SHA-256, UDP probes timing rule
//! changes, a malformed frame).
//!
//! ```text
//!   test process: topology service on a memory store, listening on the
//!   underlay bridge's address (10.77.0.254) inside the underlay namespace
//!              │ gRPC
//!   ┌──────────┴─────────── underlay bridge 10.77.0.0/24, MTU 65000 ─────────┐
//!   host h1 (10.77.0.1): agent ── vm1 10.1.0.1      host h2 (10.77.0.2): agent ── vm2 10.1.0.2
//!                                  (vm3 10.2.0.3 behind a router in the router test) ─┘
//! ```
//!
//! The topology is written straight into the store as model objects (what
//! the cluster's REST API stores), so these tests exercise the agent, the
//! topology service, the simulation and the datapath, not the REST layer.
//!
//! Needs root, `ip`, `ping`. Without them the tests FAIL (set
//! `MIDONET_SKIP_NETNS=1` to skip them on purpose). The agent binary is
//! built with `cargo build -p midonet-agent-bin` first (see
//! `midonet_testkit::bins`). Knobs:
//! `MAG_KEEP_LOGS=1` prints the agents' logs at the end;
//! The bridge and router tests run once per datapath provider (`ebpf`,
//! the default, and `userspace`); each checks that its agents run the
//! provider it asked for, so a fallback cannot pass as the other one.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env::*;
use midonet_model::*;
use midonet_testkit::{ns_exec, ns_output, Vm};

#[test]
fn bridge_across_two_hosts() {
    bridge_across_two_hosts_on(Provider::Ebpf);
}

#[test]
fn bridge_across_two_hosts_userspace() {
    bridge_across_two_hosts_on(Provider::Userspace);
}

fn bridge_across_two_hosts_on(provider: Provider) {
    if !prerequisites(&format!("bridge_across_two_hosts_{}", provider.name())) {
        return;
    }
    let mut env = Env::new(provider);
    let b = Bridge {
        id: BridgeId::random(),
        name: "b1".into(),
        admin_state_up: true,
        ..Default::default()
    };
    env.put(&b);
    let vm1 = env.vm(0, "vm1", "10.1.0.1/24", None);
    let vm2 = env.vm(1, "vm2", "10.1.0.2/24", None);
    let p1 = env.bridge_port(&b, Some((0, &vm1)));
    env.wait_active(&p1);
    // Static neighbours, so the first packets need no ARP: the number
    // below is binding → forwarding, nothing else.
    midonet_testkit::add_neigh(&vm1.ns, &vm1.vm_if, vm2.ip, &vm2.mac).expect("neigh");
    midonet_testkit::add_neigh(&vm2.ns, &vm2.vm_if, vm1.ip, &vm1.mac).expect("neigh");
    let mut p2 = None;
    let bind_to_first = udp_cutover(&vm1, &vm2, false, || {
        p2 = Some(env.bridge_port(&b, Some((1, &vm2))));
    });
    let p2 = p2.expect("p2 created");
    eprintln!(
        "MEASURE port bind (store write) -> first packet delivered: {:.1} ms",
        bind_to_first.as_secs_f64() * 1e3
    );
    env.wait_active(&p2);

    // 1. Ping across hosts.
    let rtt = ping(&vm1, vm2.ip, 10, &[]).expect("ping vm1 -> vm2 across hosts");
    eprintln!("MEASURE ping rtt avg (warm flows) {rtt:.3} ms");
    assert!(env.metric(0, "midonet_agent_tunnel_tx_packets_total") > 0.0);

    // 1b. The cluster goes away: the agents keep forwarding on their
    // cached topology, then reconnect and apply what changed meanwhile
    // as deltas (no full reload).
    env.rt.block_on(env.cluster.pause());
    let t = Instant::now();
    assert!(ping(&vm1, vm2.ip, 3, &[]).is_some(), "forwarding continues without the cluster");
    let sessions_before = env.metric(0, "midonet_agent_sessions_total");
    let b_late = Bridge {
        id: BridgeId::random(),
        name: "while-down".into(),
        admin_state_up: true,
        ..Default::default()
    };
    let rev = env.put(&b_late);
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(t.elapsed()));
    env.resume_cluster();
    let t = Instant::now();
    env.wait("agent reconnected and caught up", Duration::from_secs(15), |e| {
        e.metric(0, "midonet_agent_topology_revision") >= rev as f64
    });
    eprintln!("MEASURE cluster back -> agent caught up in {} ms", t.elapsed().as_millis());
    assert!(env.metric(0, "midonet_agent_sessions_total") > sessions_before);
    assert_eq!(
        env.metric(0, "midonet_agent_topology_snapshots_total"),
        1.0,
        "resumed with deltas, no reload"
    );

    // 2. A malformed frame on vm1's interface is counted and dropped while
    // a ping runs.
    let before = env.metric(0, "midonet_agent_dp_drops_total{reason=\"malformed\"}");
    let pinger = {
        let (ns, dst) = (vm1.ns.clone(), vm2.ip.to_string());
        std::thread::spawn(move || {
            ns_output(&ns, &["ping", "-n", "-c", "10", "-i", "0.1", "-W", "1", &dst]).expect("ping")
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    inject_malformed(&vm1);
    let out = pinger.join().expect("pinger");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10 received"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.wait("malformed frame counted", Duration::from_secs(5), |e| {
        e.metric(0, "midonet_agent_dp_drops_total{reason=\"malformed\"}") > before
    });

    // 3. A drop rule stops traffic; removing it restores it.
    let chain = Chain { id: ChainId::random(), name: "p2-out".into(), ..Default::default() };
    env.put(&chain);
    let filtered = Port { outbound_filter_id: Some(chain.id), ..p2.clone() };
    env.put(&filtered);
    assert!(ping(&vm1, vm2.ip, 2, &[]).is_some(), "empty chain lets traffic through");
    let rule = Rule {
        id: RuleId::random(),
        chain_id: chain.id,
        rule_type: RuleType::Drop,
        ..Default::default()
    };
    env.put(&rule);
    let add = udp_cutover(&vm1, &vm2, true, || {
        env.put(&Chain { rule_ids: vec![rule.id], ..chain.clone() });
    });
    eprintln!("MEASURE drop rule add -> enforced within {:.1} ms", add.as_secs_f64() * 1e3);
    assert!(ping(&vm1, vm2.ip, 1, &[]).is_none(), "ping blocked by the rule");
    let del = udp_cutover(&vm1, &vm2, false, || {
        env.put(&Chain { rule_ids: vec![], ..chain.clone() });
    });
    env.delete(&rule);
    eprintln!("MEASURE drop rule removal -> traffic back within {:.1} ms", del.as_secs_f64() * 1e3);
    assert!(
        add < Duration::from_millis(500) && del < Duration::from_millis(500),
        "rule changes must apply within 500 ms"
    );

    // 4. Admin-down port stops traffic.
    env.put(&Port { admin_state_up: false, ..filtered.clone() });
    until_ping(&vm1, vm2.ip, false, Duration::from_secs(5));
    env.put(&filtered);
    until_ping(&vm1, vm2.ip, true, Duration::from_secs(5));

    // 5. 100 MB of TCP arrive intact (SHA-256 on both ends).
    let size = 100 * 1024 * 1024;
    let resolved = "midonet_agent_tunnel_offload_resolved_total";
    let before = env.metric(0, resolved);
    let took = tcp_transfer(&vm1, &vm2, size);
    eprintln!(
        "MEASURE tcp 100 MiB intact in {:.2} s ({:.2} Gbit/s)",
        took.as_secs_f64(),
        size as f64 * 8.0 / took.as_secs_f64() / 1e9
    );
    // Both hosts registered the same provider: a userspace sender kept its
    // big frames across the tunnel (ebpf: the kernel VTEP segments them).
    assert_eq!(env.metric(0, resolved), before, "no offload finished in software");

    // 6. Kill one agent (SIGKILL) and restart it: forwarding resumes. With
    // the kernel datapath established traffic never stops: the flows stay
    // in the kernel while no agent runs, and the new agent adopts them.
    let ebpf = env.provider == Provider::Ebpf;
    env.kill_agent(1);
    if ebpf {
        assert!(ping(&vm1, vm2.ip, 3, &[]).is_some(), "ebpf: traffic flows with the agent down");
    }
    let alive = midonet_proto::keys::host_alive(&env.hosts[1].id.to_string());
    let t = Instant::now();
    env.wait("dead agent's lease expires", Duration::from_secs(30), |e| !e.exists(&alive));
    eprintln!("MEASURE dead agent noticed (lease expiry) after {} ms", t.elapsed().as_millis());
    if ebpf {
        assert!(
            ping(&vm1, vm2.ip, 3, &[]).is_some(),
            "ebpf: traffic flows after the dead agent's lease expired"
        );
    }
    let bin = agent_binary();
    let t = Instant::now();
    env.start_agent(1, &bin);
    env.wait_active(&p2);
    until_ping(&vm1, vm2.ip, true, Duration::from_secs(10));
    eprintln!("MEASURE agent restart -> forwarding again in {} ms", t.elapsed().as_millis());
    assert!(ping(&vm1, vm2.ip, 3, &[]).is_some());

    // 7. SIGTERM: a clean stop withdraws the port and the host at once
    // (not after the lease runs out) and the process exits.
    let pid = env.hosts[1].pid.expect("agent 1 runs");
    let active = midonet_proto::keys::port_active(&p2.id.to_string());
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    env.wait("port withdrawn on SIGTERM", Duration::from_secs(3), |e| !e.exists(&active));
    env.wait("agent exited", Duration::from_secs(5), |_| exited(pid));
    eprintln!(
        "MEASURE SIGTERM -> port withdrawn and process gone in {} ms",
        t.elapsed().as_millis()
    );
}

/// Whether a child process has exited (gone, or a zombie not yet reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(false),
    }
}

#[test]
fn router_between_bridges_across_hosts() {
    router_between_bridges_across_hosts_on(Provider::Ebpf);
}

#[test]
fn router_between_bridges_across_hosts_userspace() {
    router_between_bridges_across_hosts_on(Provider::Userspace);
}

fn router_between_bridges_across_hosts_on(provider: Provider) {
    if !prerequisites(&format!("router_between_bridges_across_hosts_{}", provider.name())) {
        return;
    }
    let mut env = Env::new(provider);
    let b1 = Bridge {
        id: BridgeId::random(),
        name: "b1".into(),
        admin_state_up: true,
        ..Default::default()
    };
    let b2 = Bridge {
        id: BridgeId::random(),
        name: "b2".into(),
        admin_state_up: true,
        ..Default::default()
    };
    let r = Router {
        id: RouterId::random(),
        name: "r".into(),
        admin_state_up: true,
        ..Default::default()
    };
    env.put(&b1);
    env.put(&b2);
    env.put(&r);
    let gw1 = Ipv4Addr::new(10, 1, 0, 254);
    let gw2 = Ipv4Addr::new(10, 2, 0, 254);
    for (b, gw, net, mac) in [
        (&b1, gw1, Ipv4Addr::new(10, 1, 0, 0), [2, 0xaa, 0, 0, 0, 1]),
        (&b2, gw2, Ipv4Addr::new(10, 2, 0, 0), [2, 0xaa, 0, 0, 0, 2]),
    ] {
        let rp_id = PortId::random();
        let bp = Port {
            id: PortId::random(),
            port_type: PortType::Bridge,
            device_id: b.id.cast(),
            admin_state_up: true,
            tunnel_key: env.key(),
            peer_id: Some(rp_id),
            ..Default::default()
        };
        let rp = Port {
            id: rp_id,
            port_type: PortType::Router,
            device_id: r.id.cast(),
            admin_state_up: true,
            tunnel_key: env.key(),
            peer_id: Some(bp.id),
            port_address: Some(gw),
            network_address: Some(net),
            network_length: Some(24),
            port_mac: Some(MacAddr(mac)),
            ..Default::default()
        };
        env.put(&bp);
        env.put(&rp);
        env.route(r.id, (net, 24), rp.id, None);
    }
    let vm1 = env.vm(0, "vm1", "10.1.0.1/24", Some(gw1));
    let p1 = env.bridge_port(&b1, Some((0, &vm1)));
    env.wait_active(&p1);
    // vm3's port is bound BEFORE its interface exists: the agent binds it
    // when the scanner sees the veth appear.
    let vm3_if = env.lab.name("vm3h").expect("name");
    let p3 = env.bridge_port_on(&b2, Some((1, vm3_if)));
    std::thread::sleep(Duration::from_millis(200));
    let active3 = midonet_proto::keys::port_active(&p3.id.to_string());
    assert!(!env.exists(&active3), "no interface yet: not active");
    let t = Instant::now();
    let vm3 = env.vm(1, "vm3", "10.2.0.3/24", Some(gw2));
    env.wait_active(&p3);
    eprintln!(
        "MEASURE interface created -> port active (netlink + bind + cluster write) {} ms",
        t.elapsed().as_millis()
    );

    // The agent answers ARP for the router port (the VM's gateway).
    let t = Instant::now();
    until_ping(&vm1, gw1, true, Duration::from_secs(10));
    eprintln!(
        "MEASURE ping the router port (ARP answered by the agent) after {} ms",
        t.elapsed().as_millis()
    );
    let neigh = ns_exec(&vm1.ns, &["ip", "neigh", "show", &gw1.to_string()]).expect("ip neigh");
    assert!(
        neigh.contains("02:aa:00:00:00:01"),
        "gateway resolved to the router port's MAC: {neigh}"
    );

    // Across the router and the hosts (the router ARPs for vm3: the first
    // packet waits in the agent's waiting room).
    let t = Instant::now();
    until_ping(&vm1, vm3.ip, true, Duration::from_secs(10));
    eprintln!("MEASURE first routed ping answered after {} ms", t.elapsed().as_millis());
    let rtt = ping(&vm1, vm3.ip, 10, &[]).expect("routed ping");
    eprintln!("MEASURE routed ping rtt avg {rtt:.3} ms");

    // A next hop that never answers ARP: the first packet waits and is
    // dropped, then the router answers ICMP host unreachable.
    let ghost = "10.2.0.99";
    let out = ns_output(&vm1.ns, &["ping", "-n", "-c", "1", "-W", "3", ghost]).expect("ping");
    assert!(!out.status.success(), "nobody has {ghost}");
    env.wait("ARP given up", Duration::from_secs(15), |e| {
        e.metric(0, "midonet_agent_drops_total{reason=\"arp_timeout\"}") >= 1.0
    });
    let out = ns_output(&vm1.ns, &["ping", "-n", "-c", "1", "-W", "2", ghost]).expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Destination Host Unreachable") && text.contains(&gw1.to_string()),
        "expected ICMP host unreachable from {gw1}: {text}"
    );

    // TTL 1: the router answers ICMP time exceeded.
    let dst = vm3.ip.to_string();
    let out = ns_output(&vm1.ns, &["ping", "-n", "-c", "1", "-W", "2", "-t", "1", &dst])
        .expect("ping -t 1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Time to live exceeded") && text.contains(&gw1.to_string()),
        "expected ICMP time exceeded from {gw1}: {text}"
    );
}

/// Sends a frame whose IPv4 header is cut short out of `vm`'s interface.
fn inject_malformed(vm: &Vm) {
    let key: midonet_flow::FlowKey = "eth.src=02:00:00:00:00:99,eth.dst=02:00:00:00:00:98,ip4.src=10.1.0.9,ip4.dst=10.1.0.2,udp.src=1,udp.dst=2"
        .parse()
        .expect("key");
    let mut frame = Vec::new();
    key.to_frame(b"x", &mut frame);
    frame.truncate(14 + 12);
    let (ns, ifname) = (vm.ns.clone(), vm.vm_if.clone());
    in_netns(&ns, move || {
        use midonet_datapath::sys::{PacketSocket, TxItem, TxQueue};
        let s = PacketSocket::open(&ifname).expect("packet socket");
        let mut q = TxQueue::new(1);
        q.push(TxItem {
            head: [0; 16],
            head_len: 10,
            ptr: frame.as_ptr(),
            len: frame.len(),
            dst: None,
        });
        let (sent, _, failed) = q.flush(s.fd());
        assert_eq!((sent, failed), (1, 0), "injected");
    });
}

/// Short TCP connections through a router, as a web load makes them: one
/// request each, the server closes first (HTTP with `Connection: close`),
/// from a client confined to 64 source ports, so 4-tuples come back while
/// the server still holds them in TIME_WAIT. The VM is on h1, the server
/// behind the router's uplink port on h2; each host simulates one
/// direction. Every connection after the first few must ride the same
/// megaflows: misses and invalidations stay bounded, and no connection
/// stalls (a lost SYN costs a 1 s retransmission).
///
/// Knobs: `MAG_CONNS` (default 3000), `MAG_CONN_THREADS` (4), `MAG_CLIENT_PORTS` (64).
#[test]
fn short_connections_through_a_router_reuse_the_megaflow() {
    if !prerequisites("short_connections_through_a_router_reuse_the_megaflow") {
        return;
    }
    let knob = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let conns = knob("MAG_CONNS", 3000);
    let threads = knob("MAG_CONN_THREADS", 4);
    let ports = knob("MAG_CLIENT_PORTS", 64);
    let mut env = Env::new(Provider::Ebpf);
    let b = Bridge {
        id: BridgeId::random(),
        name: "b1".into(),
        admin_state_up: true,
        ..Default::default()
    };
    let r = Router {
        id: RouterId::random(),
        name: "r".into(),
        admin_state_up: true,
        ..Default::default()
    };
    env.put(&b);
    env.put(&r);
    let gw = Ipv4Addr::new(10, 1, 0, 254);
    let up_ip = Ipv4Addr::new(203, 0, 113, 2);
    let rp_id = PortId::random();
    let bp = Port {
        id: PortId::random(),
        port_type: PortType::Bridge,
        device_id: b.id.cast(),
        admin_state_up: true,
        tunnel_key: env.key(),
        peer_id: Some(rp_id),
        ..Default::default()
    };
    let rp = Port {
        id: rp_id,
        port_type: PortType::Router,
        device_id: r.id.cast(),
        admin_state_up: true,
        tunnel_key: env.key(),
        peer_id: Some(bp.id),
        port_address: Some(gw),
        network_address: Some(Ipv4Addr::new(10, 1, 0, 0)),
        network_length: Some(24),
        port_mac: Some(MacAddr([2, 0xaa, 0, 0, 0, 1])),
        ..Default::default()
    };
    env.put(&bp);
    env.put(&rp);
    let vm = env.vm(0, "vm1", "10.1.0.1/24", Some(gw));
    let srv = env.vm(1, "srv", "203.0.113.1/24", Some(up_ip));
    let up = Port {
        id: PortId::random(),
        port_type: PortType::Router,
        device_id: r.id.cast(),
        admin_state_up: true,
        tunnel_key: env.key(),
        port_address: Some(up_ip),
        network_address: Some(Ipv4Addr::new(203, 0, 113, 0)),
        network_length: Some(24),
        port_mac: Some(MacAddr([2, 0xaa, 0, 0, 0, 2])),
        host_id: Some(env.hosts[1].id),
        interface_name: Some(srv.host_if.clone()),
        ..Default::default()
    };
    env.put(&up);
    for (net, port) in [([10, 1, 0, 0], rp.id), ([203, 0, 113, 0], up.id)] {
        env.route(r.id, (Ipv4Addr::from(net), 24), port, None);
    }
    let p = env.bridge_port(&b, Some((0, &vm)));
    env.wait_active(&p);
    env.wait_active(&up);
    let first = 65535 - ports + 1;
    let range = format!("net.ipv4.ip_local_port_range={first} 65535");
    ns_exec(&vm.ns, &["sysctl", "-qw", &range]).expect("client port range");
    until_ping(&vm, srv.ip, true, Duration::from_secs(10));

    // The server: answer one request per connection and close first.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = in_netns(&srv.ns, || {
        let l = std::net::TcpListener::bind("0.0.0.0:8080").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut served = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 64];
                        if c.read(&mut buf).is_ok_and(|n| n > 0) {
                            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
                            served += 1;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            served
        })
    };

    let series = [
        "midonet_agent_misses_total",
        "midonet_agent_invalidated_flows_total",
        "midonet_agent_flows",
    ];
    let drops = ["midonet_agent_drops_total", "midonet_agent_dp_drops_total"];
    let sample = |env: &Env, h: usize| -> Vec<f64> {
        let mut v: Vec<f64> = series.iter().map(|s| env.metric(h, s)).collect();
        v.extend(drops.iter().map(|f| env.metric_sum(h, f)));
        v
    };
    let before: Vec<Vec<f64>> = (0..2).map(|h| sample(&env, h)).collect();
    let dst = std::net::SocketAddr::from((srv.ip, 8080));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            spawn_in_netns(&vm.ns, move || {
                use std::io::{Read, Write};
                let mut slow: Vec<Duration> = Vec::new();
                let mut failed = 0usize;
                for _ in 0..conns / threads {
                    let t = Instant::now();
                    let ok = std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(5))
                        .and_then(|mut c| {
                            c.set_read_timeout(Some(Duration::from_secs(5)))?;
                            c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                            let mut body = Vec::new();
                            c.read_to_end(&mut body)?;
                            Ok(body.ends_with(b"ok"))
                        });
                    let took = t.elapsed();
                    if !matches!(ok, Ok(true)) {
                        failed += 1;
                    }
                    // A lost SYN or a refused reuse costs a 1 s retransmission.
                    if took > Duration::from_millis(900) {
                        slow.push(took);
                    }
                }
                (slow, failed)
            })
        })
        .collect();
    let mut slow = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (s, f) = w.join().expect("client");
        slow.extend(s);
        failed += f;
    }
    let took = t0.elapsed();
    // The server's TIME_WAIT sockets are the distinct 4-tuples: fewer than
    // the connections means each was reused while the server held it.
    let time_wait = ns_output(&srv.ns, &["ss", "-Htan", "state", "time-wait"])
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = server.join().expect("server");
    let after: Vec<Vec<f64>> = (0..2).map(|h| sample(&env, h)).collect();
    let delta = |h: usize, i: usize| after[h][i] - before[h][i];
    eprintln!(
        "MEASURE {conns} short connections ({threads} at a time, {ports} client ports) in {:.2} s = {:.0}/s, {} slower than 900 ms, {failed} failed, {served} served, {time_wait} 4-tuples in the server's TIME_WAIT",
        took.as_secs_f64(),
        conns as f64 / took.as_secs_f64(),
        slow.len()
    );
    for (h, now) in after.iter().enumerate() {
        eprintln!(
            "MEASURE host {h}: misses +{}, invalidated flows +{}, flows {}, agent drops +{}, datapath drops +{}",
            delta(h, 0),
            delta(h, 1),
            now[2],
            delta(h, 3),
            delta(h, 4)
        );
    }
    assert_eq!(failed, 0, "every connection completes");
    assert!(slow.is_empty(), "connections stalled: {slow:?}");
    for h in 0..2 {
        assert!(
            delta(h, 0) < 100.0 && delta(h, 1) < 20.0,
            "host {h}: {} misses and {} invalidated flows for {conns} connections: the megaflow is rebuilt",
            delta(h, 0),
            delta(h, 1)
        );
    }
}

/// A bridge whose inbound chain has security-group style rules that look
/// at the L4 ports of TCP and UDP, so that every new source port is a new
/// megaflow, a miss. (ICMP's type and code are its ports to MidoNet, so the
/// protocol is named): no privileged source ports, no UDP to the discard
/// port.
fn bridge_with_l4_chain(env: &mut Env) -> Bridge {
    let chain = Chain { id: ChainId::random(), name: "b-in".into(), ..Default::default() };
    type Ports = Option<(u16, u16)>;
    let rules: Vec<Rule> =
        [(17, Some((1, 1023)), None), (17, None, Some((9, 9))), (6, Some((1, 1023)), None)]
            .into_iter()
            .map(|(proto, src, dst): (u8, Ports, Ports)| Rule {
                id: RuleId::random(),
                chain_id: chain.id,
                rule_type: RuleType::Drop,
                condition: Condition {
                    nw_proto: Some(proto),
                    tp_src: src.map(|(start, end)| PortRange { start, end }),
                    tp_dst: dst.map(|(start, end)| PortRange { start, end }),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
    env.put(&chain);
    for r in &rules {
        env.put(r);
    }
    env.put(&Chain { rule_ids: rules.iter().map(|r| r.id).collect(), ..chain.clone() });
    let b = Bridge {
        id: BridgeId::random(),
        name: "b1".into(),
        admin_state_up: true,
        inbound_filter_id: Some(chain.id),
        ..Default::default()
    };
    env.put(&b);
    b
}

/// A port of `b` for each VM, bound on its host, active.
fn active_bridge_ports(env: &mut Env, b: &Bridge, vms: &[(usize, &Vm)]) -> Vec<Port> {
    let ports: Vec<Port> = vms.iter().map(|&(h, vm)| env.bridge_port(b, Some((h, vm)))).collect();
    for p in &ports {
        env.wait_active(p);
    }
    ports
}

/// Upcall budgets are a floor while the agent keeps up (`datapath::limit`):
/// a port with a budget of 50 misses/s (burst 5) opens 150 TCP connections
/// one after another, each a miss, on an otherwise quiet host. Past its
/// budget its misses are lent the agent's spare room, so no SYN is dropped
/// (a drop costs the connection a 1 s retransmission) and the port's
/// borrowed counter shows it. With `upcall_spare_depth = 0` the same run
/// loses a SYN per miss over the budget.
#[test]
fn a_port_past_its_upcall_budget_borrows_while_the_agent_has_room() {
    if !prerequisites("a_port_past_its_upcall_budget_borrows_while_the_agent_has_room") {
        return;
    }
    let mut env =
        Env::with_config(Provider::Ebpf, "upcall_rate_per_port = 50\nupcall_burst_per_port = 5\n");
    let b = bridge_with_l4_chain(&mut env);
    let cli = env.vm(0, "cli", "10.1.0.2/24", None);
    let srv = env.vm(1, "srv", "10.1.0.3/24", None);
    let ports = active_bridge_ports(&mut env, &b, &[(0, &cli), (1, &srv)]);
    until_ping(&cli, srv.ip, true, Duration::from_secs(10));
    let listener = in_netns(&srv.ns, || std::net::TcpListener::bind("0.0.0.0:5001").expect("bind"));
    let server = std::thread::spawn(move || {
        for _ in 0..150 {
            drop(listener.accept().expect("accept"));
        }
    });
    let dst = std::net::SocketAddr::from((srv.ip, 5001));
    let times = spawn_in_netns(&cli.ns, move || {
        (0..150)
            .map(|i| {
                let t = Instant::now();
                let c = std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(5));
                assert!(c.is_ok(), "connection {i} failed: {c:?}");
                t.elapsed()
            })
            .collect::<Vec<_>>()
    })
    .join()
    .expect("client");
    server.join().expect("server");
    let series =
        |k: &str| format!("midonet_agent_port_upcall_{k}_total{{port=\"{}\"}}", ports[0].id);
    let (lent, limited) = (env.metric(0, &series("borrowed")), env.metric(0, &series("limited")));
    let slowest = times.iter().max().copied().unwrap_or_default();
    eprintln!("MEASURE 150 connects at a 50/s budget: slowest {slowest:?}, {lent} misses lent, {limited} dropped");
    assert!(lent >= 100.0, "past the burst of 5, the misses were lent: {lent}");
    assert_eq!(limited, 0.0, "no miss was dropped while the agent had room");
    assert!(slowest < Duration::from_millis(900), "a SYN was lost: a connect took {slowest:?}");
}

/// Fairness under a flood of new flows (issue 13): VM `flood` on h1 sends
/// UDP datagrams with random source ports as fast as it can, each a new
/// megaflow (the bridge's chain looks at both L4 ports), while VM `cli` on
/// the same host opens 200 TCP connections, one after the other, to `srv`
/// on h2; every one of those is a miss too (a new source port). With the
/// per-port upcall budget the flood's misses are dropped before they reach
/// the agent, so every connection completes and the median connect time
/// stays within 5× of the same 200 connections without the flood (with
/// the ebpf datapath; with the userspace one, whose single thread reads
/// every flooding datagram, the median rose from 0.27 to 3.8 ms here, and
/// the test asserts only that every connection completes without a lost
/// SYN).
///
/// Knobs: `MAG_FLOOD_PPS` (0 = as fast as one socket goes, the default),
/// `MAG_UPCALL_RATE_PER_PORT` (the agents' `upcall_rate_per_port`; 0 turns
/// the protection off, to see what it protects from).
#[test]
fn a_flooding_vm_does_not_starve_new_connections_of_others() {
    if !prerequisites("a_flooding_vm_does_not_starve_new_connections_of_others") {
        return;
    }
    flood_fairness_on(Provider::Ebpf);
}

#[test]
fn a_flooding_vm_does_not_starve_new_connections_of_others_userspace() {
    if !prerequisites("a_flooding_vm_does_not_starve_new_connections_of_others_userspace") {
        return;
    }
    flood_fairness_on(Provider::Userspace);
}

fn flood_fairness_on(provider: Provider) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let knob = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut env = match knob("MAG_UPCALL_RATE_PER_PORT") {
        Some(r) => Env::with_config(provider, &format!("upcall_rate_per_port = {r}\n")),
        None => Env::new(provider),
    };
    let b = bridge_with_l4_chain(&mut env);
    let flood = env.vm(0, "flood", "10.1.0.1/24", None);
    let cli = env.vm(0, "cli", "10.1.0.2/24", None);
    let srv = env.vm(1, "srv", "10.1.0.3/24", None);
    let ports = active_bridge_ports(&mut env, &b, &[(0, &flood), (0, &cli), (1, &srv)]);
    until_ping(&cli, srv.ip, true, Duration::from_secs(10));
    until_ping(&flood, srv.ip, true, Duration::from_secs(10));

    let stop = Arc::new(AtomicBool::new(false));
    let listener = in_netns(&srv.ns, || {
        let l = std::net::TcpListener::bind("0.0.0.0:5000").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => drop(c),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
    };
    let dst = std::net::SocketAddr::from((srv.ip, 5000));
    let connect_times = |what: &'static str| -> Vec<Duration> {
        spawn_in_netns(&cli.ns, move || {
            let mut v = Vec::new();
            for i in 0..200 {
                let t = Instant::now();
                let c = std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(5));
                let took = t.elapsed();
                assert!(c.is_ok(), "{what}: connection {i} failed after {took:?}: {c:?}");
                v.push(took);
            }
            v.sort();
            v
        })
        .join()
        .expect("client")
    };
    let quiet = connect_times("without the flood");

    // The flood: raw UDP datagrams to the discard port from random source
    // ports, every one a new megaflow that the chain drops.
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let pps = knob("MAG_FLOOD_PPS").unwrap_or(0);
        let to = srv.ip;
        spawn_in_netns(&flood.ns, move || {
            use nix::sys::socket::{
                sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
                SockaddrIn,
            };
            let fd =
                socket(AddressFamily::Inet, SockType::Raw, SockFlag::empty(), SockProtocol::Udp)
                    .expect("raw socket");
            let addr = SockaddrIn::from(std::net::SocketAddrV4::new(to, 0));
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let t0 = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let sport = 1024 + (x % 64000) as u16;
                let mut d = [0u8; 16];
                d[0..2].copy_from_slice(&sport.to_be_bytes());
                d[2..4].copy_from_slice(&9u16.to_be_bytes());
                d[4..6].copy_from_slice(&16u16.to_be_bytes());
                // Checksum 0: none, which IPv4 UDP allows.
                if sendto(std::os::fd::AsRawFd::as_raw_fd(&fd), &d, &addr, MsgFlags::empty())
                    .is_ok()
                {
                    n += 1;
                }
                if pps > 0 && n.is_multiple_of(64) {
                    let due = Duration::from_secs_f64(n as f64 / pps as f64);
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            sent.store(n, Ordering::Relaxed);
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let upcalls_before = env.metric_sum(0, "midonet_agent_port_upcalls_total");
    let t_flood = Instant::now();
    let loaded = connect_times("during the flood");
    let flood_secs = t_flood.elapsed().as_secs_f64();
    let fport = format!("midonet_agent_port_upcall_limited_total{{port=\"{}\"}}", ports[0].id);
    let limited = env.metric(0, &fport);
    let upcalls = env.metric_sum(0, "midonet_agent_port_upcalls_total") - upcalls_before;
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("flooder");
    server.join().expect("server");
    let n = sent.load(Ordering::Relaxed);
    let med = |v: &[Duration]| v[v.len() / 2];
    eprintln!(
        "MEASURE [{}] connect time without the flood: median {:?}, p90 {:?}, max {:?}; during it: median {:?}, p90 {:?}, max {:?}",
        provider.name(),
        med(&quiet),
        quiet[quiet.len() * 9 / 10],
        quiet[quiet.len() - 1],
        med(&loaded),
        loaded[loaded.len() * 9 / 10],
        loaded[loaded.len() - 1]
    );
    eprintln!(
        "MEASURE [{}] flood: {n} datagrams sent ({:.0}/s); on its host {limited} misses dropped over the flooding port's budget, {upcalls} upcalls from all ports ({:.0}/s) while the 200 connections ran",
        provider.name(),
        n as f64 / (flood_secs + 1.0),
        upcalls / flood_secs
    );
    // Every connection completed (asserted in `connect_times`); none lost
    // its SYN (a retransmission costs a second).
    assert!(
        loaded[loaded.len() - 1] < Duration::from_millis(900),
        "a connection waited {:?} during the flood: a SYN was lost",
        loaded[loaded.len() - 1]
    );
    // The kernel datapath drops the flood's excess misses in the sender's
    // own softirq: the others' connections do not notice. The userspace
    // datapath still reads every flooding datagram on its one thread
    // (~140k/s here), so there the bound is not met; see the docs.
    if provider == Provider::Ebpf {
        assert!(
            med(&loaded) <= med(&quiet) * 5,
            "median connect time {:?} during the flood vs {:?} without: more than 5×",
            med(&loaded),
            med(&quiet)
        );
    }
    if knob("MAG_UPCALL_RATE_PER_PORT") != Some(0) {
        assert!(
            limited > 0.0,
            "the flooding port's budget never dropped a miss: was there a flood?"
        );
    }
}
