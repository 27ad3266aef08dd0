//! Distributed L4 load balancing on real kernels (issue 9): the VIP is
//! answered by the router simulation on the client's host, the member's
//! host reverse-translates the replies from replicated flow state, and the
//! members' health is checked by one agent at a time, from inside the
//! virtual network.
//!
//! ```text
//!  h1: agent ── be1 10.1.0.1 ┐                       h3: agent ── client 10.2.0.1
//!  h2: agent ── be2 10.1.0.2 ├─ bridge backends ─ router edge ─ bridge clients ─┘
//!               be3 10.1.0.3 ┘   10.1.0.254        (load balancer) 10.2.0.254
//!  VIP 10.9.0.10:80 → be1 (weight 1), be2 (2), be3 (1), HTTP on :80
//! ```

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env::*;
use midonet_model::*;
use midonet_testkit::Vm;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 10);

/// A small HTTP server in a VM: `GET` gets `HTTP/1.0 200` with the server's
/// name as the body; a connection that starts with `HOLD` stays open and
/// answers every line with the name (a long-lived connection).
struct Server {
    vm_ns: String,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(vm: &Vm, name: &'static str) -> Server {
        let l = in_netns(&vm.ns, || TcpListener::bind(("0.0.0.0", 80)).expect("bind :80"));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::Relaxed) {
                    return; // drops the listener: the port is closed
                }
                let Ok(c) = c else { continue };
                std::thread::spawn(move || serve(c, name));
            }
        });
        Server { vm_ns: vm.ns.clone(), stop }
    }

    /// Closes the listening socket; open connections go on.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = in_netns(&self.vm_ns, || TcpStream::connect(("127.0.0.1", 80)));
    }
}

fn serve(c: TcpStream, name: &str) {
    let mut r = BufReader::new(c.try_clone().expect("clone"));
    let mut w = c;
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    if line.starts_with("GET") {
        // The rest of the head.
        while r.read_line(&mut line).unwrap_or(0) > 2 {}
        let body = name.as_bytes();
        let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(body);
        return;
    }
    loop {
        if w.write_all(format!("{name}\n").as_bytes()).is_err() {
            return;
        }
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
    }
}

/// One HTTP request to `dst` from `vm`: the body (the server's name).
fn get(vm: &Vm, dst: SocketAddr) -> Option<String> {
    try_get(vm, dst).ok()
}

fn try_get(vm: &Vm, dst: SocketAddr) -> Result<String, String> {
    in_netns(&vm.ns, move || {
        let t0 = Instant::now();
        let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(3))
            .map_err(|e| format!("connect: {e} after {:?}", t0.elapsed()))?;
        let port = c.local_addr().map(|a| a.port()).unwrap_or(0);
        c.set_read_timeout(Some(Duration::from_secs(3))).map_err(|e| e.to_string())?;
        c.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n").map_err(|e| format!("write: {e}"))?;
        let mut all = String::new();
        c.read_to_string(&mut all)
            .map_err(|e| format!("read from port {port}: {e} after {:?}", t0.elapsed()))?;
        let (head, body) = all.split_once("\r\n\r\n").ok_or(format!("no head: {all:?}"))?;
        if head.starts_with("HTTP/1.0 200") {
            Ok(body.to_string())
        } else {
            Err(format!("status: {head}"))
        }
    })
}

/// A long-lived connection: which server holds it, and whether it still
/// answers.
struct Held {
    c: BufReader<TcpStream>,
    server: String,
}

impl Held {
    fn open(vm: &Vm, dst: SocketAddr) -> Held {
        let c = in_netns(&vm.ns, move || TcpStream::connect_timeout(&dst, Duration::from_secs(3)))
            .expect("long-lived connection");
        c.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        let mut w = c.try_clone().expect("clone");
        w.write_all(b"HOLD\n").expect("hold");
        let mut c = BufReader::new(c);
        let mut server = String::new();
        c.read_line(&mut server).expect("first answer");
        Held { c, server: server.trim().to_string() }
    }

    fn still_answers(&mut self) -> bool {
        let mut w = self.c.get_ref().try_clone().expect("clone");
        if w.write_all(b"again\n").is_err() {
            return false;
        }
        let mut line = String::new();
        matches!(self.c.read_line(&mut line), Ok(n) if n > 0) && line.trim() == self.server
    }
}

struct LbLab {
    env: Env,
    router: Router,
    lb: LoadBalancer,
    pool: Pool,
    /// be1, be2, be3.
    members: Vec<PoolMember>,
    /// be1 on host 0, be2 and be3 on host 1.
    backends: Vec<Vm>,
    client: Vm,
    clients_br: Bridge,
}

fn router_port(r: &Router, addr: Ipv4Addr, net: Ipv4Addr, mac: [u8; 6], key: u32) -> Port {
    Port {
        id: PortId::random(),
        port_type: PortType::Router,
        device_id: r.id.cast(),
        admin_state_up: true,
        tunnel_key: key,
        port_address: Some(addr),
        network_address: Some(net),
        network_length: Some(24),
        port_mac: Some(MacAddr(mac)),
        ..Default::default()
    }
}

fn lab(monitor: Option<HealthMonitor>) -> LbLab {
    let mut env = Env::with_hosts(Provider::Ebpf, "", 3);
    let lb =
        LoadBalancer { id: LoadBalancerId::random(), admin_state_up: true, ..Default::default() };
    let router = Router {
        id: RouterId::random(),
        name: "edge".into(),
        admin_state_up: true,
        load_balancer_id: Some(lb.id),
        ..Default::default()
    };
    env.put(&router);
    env.put(&LoadBalancer { router_id: Some(router.id), ..lb.clone() });
    let mut nets = Vec::new();
    for (i, name) in ["backends", "clients"].iter().enumerate() {
        let b = Bridge {
            id: BridgeId::random(),
            name: (*name).into(),
            admin_state_up: true,
            ..Default::default()
        };
        env.put(&b);
        let net = Ipv4Addr::new(10, 1 + i as u8, 0, 0);
        let gw = Ipv4Addr::new(10, 1 + i as u8, 0, 254);
        let key = env.key();
        let rp = router_port(&router, gw, net, [2, 0xbb, 0, 0, 0, 1 + i as u8], key);
        let bp = Port {
            id: PortId::random(),
            port_type: PortType::Bridge,
            device_id: b.id.cast(),
            admin_state_up: true,
            tunnel_key: env.key(),
            peer_id: Some(rp.id),
            ..Default::default()
        };
        env.put(&bp);
        env.put(&Port { peer_id: Some(bp.id), ..rp.clone() });
        env.route(router.id, (net, 24), rp.id, None);
        nets.push((b, gw));
    }
    let (backends_br, bgw) = nets[0].clone();
    let (clients_br, cgw) = nets[1].clone();
    let mut backends = Vec::new();
    let mut ports = Vec::new();
    for (i, host) in [0usize, 1, 1].iter().enumerate() {
        let vm = env.vm(*host, &format!("be{}", i + 1), &format!("10.1.0.{}/24", i + 1), Some(bgw));
        ports.push(env.bridge_port(&backends_br, Some((*host, &vm))));
        backends.push(vm);
    }
    let client = env.vm(2, "client", "10.2.0.1/24", Some(cgw));
    ports.push(env.bridge_port(&clients_br, Some((2, &client))));
    for p in &ports {
        env.wait_active(p);
    }
    if let Some(m) = &monitor {
        env.put(m);
    }
    let pool: Pool = serde_json::from_value(serde_json::json!({
        "id": PoolId::random(), "loadBalancerId": lb.id,
        "healthMonitorId": monitor.as_ref().map(|m| m.id),
    }))
    .expect("pool");
    env.put(&pool);
    let mut members = Vec::new();
    for (i, w) in [1u32, 2, 1].iter().enumerate() {
        let m: PoolMember = serde_json::from_value(serde_json::json!({
            "id": PoolMemberId::random(), "poolId": pool.id,
            "address": format!("10.1.0.{}", i + 1), "protocolPort": 80, "weight": w,
        }))
        .expect("member");
        env.put(&m);
        members.push(m);
    }
    let vip: Vip = serde_json::from_value(serde_json::json!({
        "id": VipId::random(), "loadBalancerId": lb.id, "poolId": pool.id,
        "address": VIP, "protocolPort": 80,
    }))
    .expect("vip");
    env.put(&vip);
    LbLab { env, router, lb, pool, members, backends, client, clients_br }
}

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

/// `n` requests to `dst`: how many each server answered (be1, be2, be3)
/// and how many got no answer.
fn spread(l: &LbLab, dst: SocketAddr, n: usize) -> ([usize; 3], usize) {
    let mut got = [0usize; 3];
    let mut lost = 0;
    for _ in 0..n {
        match try_get(&l.client, dst).as_deref() {
            Ok("be1") => got[0] += 1,
            Ok("be2") => got[1] += 1,
            Ok("be3") => got[2] += 1,
            other => {
                eprintln!("request to {dst} lost: {other:?}");
                lost += 1;
            }
        }
    }
    (got, lost)
}

fn member_status(env: &Env, m: &PoolMember) -> String {
    env.get::<PoolMember>(&m.store_key()).map(|m| m.status).unwrap_or_default()
}

use midonet_model::topology::Stored;

#[test]
fn the_vip_spreads_requests_by_weight_and_replies_return_through_the_members_hosts() {
    if !prerequisites("the_vip_spreads_requests_by_weight") {
        return;
    }
    let l = lab(None);
    let _servers: Vec<Server> = l
        .backends
        .iter()
        .zip(["be1", "be2", "be3"])
        .map(|(vm, name)| Server::start(vm, name))
        .collect();
    // The first request may wait for ARP and flow state.
    l.env.wait("the VIP answers", Duration::from_secs(20), |_| get(&l.client, vip()).is_some());
    let (got, lost) = spread(&l, vip(), 300);
    eprintln!("300 requests to the VIP: be1 {} be2 {} be3 {} lost {lost}", got[0], got[1], got[2]);
    assert_eq!(lost, 0, "every request is answered");
    for (i, want) in [0.25, 0.5, 0.25].iter().enumerate() {
        let share = got[i] as f64 / 300.0;
        assert!((share - want).abs() <= 0.10, "be{} got {share:.2}, weight says {want}", i + 1);
    }
    // The client's host translated (DNAT bindings at the router), and the
    // members' hosts, where the replies enter, got that state from it.
    let nat = l.env.agent_json(2, "/nat");
    assert!(nat.to_string().contains("dnat"), "the client's host holds the bindings: {nat}");
    for h in [0, 1] {
        let n = l.env.metric(h, "midonet_agent_flow_state_received_total");
        assert!(n > 0.0, "host {h} received flow state");
    }
    // Every request's connection closed (FIN, seen by the datapath): within
    // a refresh round (5 s) the bindings live 120 s (TIME_WAIT), not the
    // established timeout.
    let t0 = Instant::now();
    l.env.wait("closed connections' bindings shortened", Duration::from_secs(15), |e| {
        let nat = e.agent_json(2, "/nat");
        let b = nat["bindings"].as_array().cloned().unwrap_or_default();
        let dnat: Vec<_> = b.iter().filter(|x| x["kind"] == "dnat").collect();
        dnat.len() >= 300 && dnat.iter().all(|x| x["expires_in_s"].as_u64() <= Some(120))
    });
    eprintln!("bindings of closed connections shortened after {:?}", t0.elapsed());

    // Sticky source IP: a second VIP on the same members; one client
    // always reaches the same one, also after another member is disabled.
    // A second client VM: the first one's 300 bindings to the same members
    // would make some of its new connections collide (same member-side
    // 4-tuple), and those go to another member (`sim::engine::lb`).
    let mut l = l;
    let client2 = l.env.vm(2, "client2", "10.2.0.2/24", Some(Ipv4Addr::new(10, 2, 0, 254)));
    let p2 = l.env.bridge_port(&l.clients_br.clone(), Some((2, &client2)));
    l.env.wait_active(&p2);
    l.client = client2;
    let pool2: Pool = serde_json::from_value(serde_json::json!({
        "id": PoolId::random(), "loadBalancerId": l.lb.id,
    }))
    .expect("pool");
    l.env.put(&pool2);
    let mut members2 = Vec::new();
    for i in 0..3 {
        let m: PoolMember = serde_json::from_value(serde_json::json!({
            "id": PoolMemberId::random(), "poolId": pool2.id,
            "address": format!("10.1.0.{}", i + 1), "protocolPort": 80,
        }))
        .expect("member");
        l.env.put(&m);
        members2.push(m);
    }
    let sticky: Vip = serde_json::from_value(serde_json::json!({
        "id": VipId::random(), "loadBalancerId": l.lb.id, "poolId": pool2.id,
        "address": VIP, "protocolPort": 8080, "sessionPersistence": "SOURCE_IP",
    }))
    .expect("vip");
    l.env.put(&sticky);
    let dst = SocketAddr::from((VIP, 8080));
    // Wait for the new VIP (the members listen on 80: DNAT to :80).
    l.env
        .wait("the sticky VIP answers", Duration::from_secs(20), |_| get(&l.client, dst).is_some());
    let (got, lost) = spread(&l, dst, 30);
    assert_eq!(lost, 0);
    let chosen = got.iter().position(|&n| n == 30).expect("all 30 on one member");
    let other = (chosen + 1) % 3;
    l.env.put(&PoolMember { admin_state_up: false, ..members2[other].clone() });
    std::thread::sleep(Duration::from_millis(500));
    let (got, lost) = spread(&l, dst, 30);
    assert_eq!(lost, 0);
    assert_eq!(got[chosen], 30, "disabling another member moved the client: {got:?}");
    let _ = (&l.router, &l.pool, &l.members);
}

#[test]
fn health_checks_take_a_stopped_member_out_and_move_when_their_agent_dies() {
    if !prerequisites("health_checks_take_a_stopped_member_out") {
        return;
    }
    let monitor: HealthMonitor = serde_json::from_value(serde_json::json!({
        "id": HealthMonitorId::random(), "type": "TCP", "delay": 1, "timeout": 1,
        "maxRetries": 3,
    }))
    .expect("monitor");
    let l = lab(Some(monitor.clone()));
    let servers: Vec<Server> = l
        .backends
        .iter()
        .zip(["be1", "be2", "be3"])
        .map(|(vm, name)| Server::start(vm, name))
        .collect();
    let checker_key = midonet_proto::keys::lb_checker(&l.lb.id.to_string());
    let holder = |env: &Env| -> Option<HostId> {
        env.get::<midonet_proto::Liveness>(&checker_key).and_then(|v| v.host_id.parse().ok())
    };
    l.env.wait("one agent holds the checks", Duration::from_secs(20), |e| holder(e).is_some());
    let t0 = Instant::now();
    l.env.wait("every member checked UP", Duration::from_secs(30), |e| {
        l.members.iter().all(|m| member_status(e, m) == "UP")
    });
    eprintln!("members UP {:?} after the checker was chosen", t0.elapsed());

    // Long-lived connections, spread over the members.
    let mut held: Vec<Held> = (0..12).map(|_| Held::open(&l.client, vip())).collect();

    // be2's server stops: DOWN within delay × maxRetries + 1 s.
    servers[1].stop();
    let t0 = Instant::now();
    l.env.wait("be2 DOWN", Duration::from_secs(15), |e| member_status(e, &l.members[1]) == "DOWN");
    let took = t0.elapsed();
    eprintln!("be2 marked DOWN {took:?} after its server stopped");
    let checker = holder(&l.env).expect("holder");
    let hi = l.env.hosts.iter().position(|h| h.id == checker).expect("a lab host");
    assert_eq!(l.env.metric(hi, "midonet_agent_lb_checkers"), 1.0);
    assert!(l.env.metric(hi, "midonet_agent_lb_member_verdicts_total{event=\"down\"}") >= 1.0);
    assert!(took <= Duration::from_secs(4), "delay 1 s × 3 retries + 1 s, took {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (got, lost) = spread(&l, vip(), 60);
    assert_eq!(got[1], 0, "no request goes to a DOWN member: {got:?}");
    assert_eq!(lost, 0, "the others answer every request");
    for h in held.iter_mut().filter(|h| h.server != "be2") {
        assert!(h.still_answers(), "a long-lived connection to {} was interrupted", h.server);
    }

    // Back up: UP again and used again.
    let _be2 = Server::start(&l.backends[1], "be2");
    l.env
        .wait("be2 UP again", Duration::from_secs(10), |e| member_status(e, &l.members[1]) == "UP");
    std::thread::sleep(Duration::from_millis(300));
    let (got, lost) = spread(&l, vip(), 60);
    assert_eq!(lost, 0);
    assert!(got[1] > 0, "be2 is used again: {got:?}");

    // The checking agent dies: another takes over within one session TTL.
    let was = holder(&l.env).expect("holder");
    let i = l.env.hosts.iter().position(|h| h.id == was).expect("a lab host");
    let mut env = l.env;
    env.kill_agent(i);
    let t0 = Instant::now();
    env.wait("another agent checks", Duration::from_secs(20), |e| {
        holder(e).is_some_and(|h| h != was)
    });
    let took = t0.elapsed();
    eprintln!("health checks moved from host {i} in {took:?} (session TTL 10 s)");
    assert!(took <= Duration::from_secs(11), "takeover took {took:?}");
    let now = holder(&env).expect("new holder");
    let hc = HealthCheckPort::of(l.lb.id);
    env.wait("the checker port moved", Duration::from_secs(5), |e| {
        e.get::<Port>(&Port { id: hc.port_id, ..Default::default() }.store_key())
            .is_some_and(|p| p.host_id == Some(now))
    });
    // The new checker sees a member go down: one whose host still runs.
    let (m, s) = if i == 0 { (2, 2) } else { (0, 0) };
    servers[s].stop();
    let t0 = Instant::now();
    env.wait("the new checker marks it DOWN", Duration::from_secs(20), |e| {
        member_status(e, &l.members[m]) == "DOWN"
    });
    eprintln!("the new checker marked be{} DOWN in {:?}", m + 1, t0.elapsed());
}
