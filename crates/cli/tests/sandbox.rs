//! System test of `midonet sandbox`: the real cluster and agent binaries,
//! real namespaces, real pings.
//!
//! Needs root; builds the `midonet-cluster` and `midonet-agent` binaries
//! of this test's profile first. Without root it fails, unless
//! `MIDONET_SKIP_NETNS=1` says to skip it.
//!
//! It uses its own prefix, state directory, API port and underlay subnet,
//! so it neither collides with a sandbox someone has running nor with the
//! benchmark's.

use std::net::TcpListener;

use clap::Parser;
use midonet_cli::sandbox::{self, net, procs, state::SandboxState, UpArgs};

const PREFIX: &str = "mnt";

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    up: UpArgs,
}

/// Builds `midonet-cluster` and `midonet-agent` for this test's profile
/// (a stale binary next to the test would test old code; see
/// `midonet_testkit::bins`) and points the sandbox at them.
fn build_binaries() {
    let dir = midonet_testkit::bins::built(
        &["midonet-cluster-bin", "midonet-agent-bin"],
        &["midonet-cluster", "midonet-agent"],
    );
    std::env::set_var(procs::BIN_DIR_ENV, &dir);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Takes the sandbox down even when an assertion fails half-way.
struct Down(std::path::PathBuf, &'static str);
impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = sandbox::down(&self.0, Some(self.1)) {
            eprintln!("sandbox down failed: {e:#}");
        }
    }
}

#[test]
fn sandbox_up_connects_vms_across_hosts_and_router_and_down_removes_everything() {
    if !midonet_testkit::skip::netns_or_skip(
        "cli::sandbox_up_connects_vms_across_hosts_and_router_and_down_removes_everything",
        &["ip", "ping"],
    ) {
        return;
    }
    build_binaries();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let api = format!("127.0.0.1:{}", free_port());
    let grpc = free_port().to_string();
    let args = Wrap::try_parse_from([
        "up",
        "--hosts",
        "2",
        "--vms-per-host",
        "2",
        "--prefix",
        PREFIX,
        "--state-dir",
        state_dir.to_str().expect("utf-8 path"),
        "--api",
        &api,
        "--grpc-port",
        &grpc,
        "--underlay",
        "198.18.67.0/24",
        "--timeout",
        "40",
    ])
    .expect("arguments parse")
    .up;

    let guard = Down(state_dir.clone(), PREFIX);
    let st = sandbox::up(&args).expect("sandbox up");
    let failed: Vec<String> = st
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} → {} ({})", c.from, c.to, c.what))
        .collect();
    assert!(
        failed.is_empty(),
        "connectivity checks failed: {failed:?}; logs in {}",
        state_dir.display()
    );
    let kinds: Vec<&str> = st.checks.iter().map(|c| c.what.as_str()).collect();
    for want in [
        "same bridge, across hosts",
        "across the router, across hosts",
        "across the router, same host",
    ] {
        assert!(kinds.contains(&want), "no `{want}` check among {kinds:?}");
    }
    assert_eq!(st.phase, "up");
    assert_eq!(st.vms.len(), 4);
    assert_eq!(
        net::existing_namespaces(PREFIX).expect("list").len(),
        2 + 4 + 1,
        "2 hosts, 4 VMs, underlay"
    );

    // A second `up` over a running sandbox (as after a crash) cleans up
    // first: the old processes are gone, the new ones run.
    // This time through the Neutron API (`--neutron`), and with the two
    // hosts on one veth pair (`--underlay-link pair`, the benchmarks'
    // wiring): same checks, no underlay namespace.
    let old = st.processes.clone();
    let args =
        sandbox::UpArgs { neutron: true, underlay_link: sandbox::UnderlayLink::Pair, ..args };
    let st2 = sandbox::up(&args).expect("second sandbox up");
    assert!(old.iter().all(|p| !procs::is_ours(p)), "processes of the first run still run");
    assert!(st2.processes.iter().all(procs::is_ours));
    assert!(st2.checks.iter().all(|c| c.ok), "second run's checks: {:?}", st2.checks);
    assert_eq!(
        net::existing_namespaces(PREFIX).expect("list").len(),
        2 + 4,
        "2 hosts, 4 VMs, no underlay namespace"
    );

    let (stopped, removed) = sandbox::down(&state_dir, None).expect("down");
    assert_eq!(stopped, st2.processes.len());
    assert_eq!(removed, 6);
    assert!(
        net::existing_namespaces(PREFIX).expect("list").is_empty(),
        "namespaces left after down"
    );
    // `down` waits for the kernel's asynchronous namespace teardown.
    let links = net::root_links(&format!("{PREFIX}-")).expect("ip link");
    assert!(links.is_empty(), "root-namespace links left after down: {links:?}");
    assert!(st2.processes.iter().all(|p| !procs::is_ours(p)), "processes left after down");
    let recorded = SandboxState::load(&state_dir).expect("load").expect("state file");
    assert_eq!(recorded.phase, "down");
    drop(guard);
}

/// The first of `n` consecutive free ports on loopback, and (with a `gap`
/// of at least `n`) of `n` more `gap` above them.
fn free_ports(n: u16, gap: u16) -> u16 {
    'search: for _ in 0..100 {
        let base = free_port();
        if base.checked_add(gap + n).is_none() {
            continue;
        }
        let mut held = Vec::new();
        let above = if gap >= n { base + gap..base + gap + n } else { 0..0 };
        for p in (base..base + n).chain(above) {
            match TcpListener::bind(("127.0.0.1", p)) {
                Ok(l) => held.push(l),
                Err(_) => continue 'search,
            }
        }
        return base;
    }
    panic!("no {n} consecutive free ports");
}

/// Runs `ping` in a VM's namespace; whether `count` replies came back.
fn ping(ns: &str, ip: std::net::Ipv4Addr, count: u32) -> bool {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-q", "-c", &count.to_string(), "-W", "2"])
        .arg(ip.to_string())
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn sandbox_ha_keeps_serving_when_a_replica_and_an_etcd_member_are_killed() {
    const TEST: &str = "cli::sandbox_ha_keeps_serving_when_a_replica_and_an_etcd_member_are_killed";
    const HA_PREFIX: &str = "mnh";
    if midonet_testkit::skip::requested(midonet_testkit::skip::SKIP_ETCD) {
        midonet_testkit::skip::record(TEST, midonet_testkit::skip::SKIP_ETCD);
        return;
    }
    if !midonet_testkit::skip::netns_or_skip(TEST, &["ip", "ping", "etcd"]) {
        return;
    }
    build_binaries();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let api = format!("127.0.0.1:{}", free_ports(3, 0));
    let grpc = free_ports(3, 0).to_string();
    let etcd = free_ports(3, 10).to_string();
    let args = Wrap::try_parse_from([
        "up",
        "--ha",
        "--prefix",
        HA_PREFIX,
        "--state-dir",
        state_dir.to_str().expect("utf-8 path"),
        "--api",
        &api,
        "--grpc-port",
        &grpc,
        "--etcd-port",
        &etcd,
        "--underlay",
        "198.18.68.0/24",
        "--timeout",
        "40",
    ])
    .expect("arguments parse")
    .up;
    let _guard = Down(state_dir.clone(), HA_PREFIX);
    let st = sandbox::up(&args).expect("sandbox up --ha");
    assert!(st.checks.iter().all(|c| c.ok), "checks: {:?}", st.checks);
    let names: Vec<&str> = st.processes.iter().map(|p| p.name.as_str()).collect();
    for want in ["etcd-m0", "etcd-m1", "etcd-m2", "cluster-0", "cluster-1", "cluster-2"] {
        assert!(names.contains(&want), "no {want} among {names:?}");
    }
    assert_eq!(st.api_url.split(',').count(), 3, "{}", st.api_url);

    // The replica every agent and client tries first, and an etcd member.
    let proc = |name: &str| st.processes.iter().find(|p| p.name == name).expect("recorded");
    for victim in ["cluster-0", "etcd-m0"] {
        let pid = nix::unistd::Pid::from_raw(proc(victim).pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    }
    let killed_at = std::time::Instant::now();

    // The recorded API URL lists every replica: a read goes to another
    // replica at once (even if the dying one still takes the connection).
    let client = midonet_client::Client::new(&st.api_url, midonet_client::Auth::None);
    let first = st.api_url.split(',').next().expect("first").to_owned();
    client.list("hosts").expect("a read while the first replica dies");
    assert_ne!(client.base_url(), first);
    // Once the dead replica refuses connections, a client that starts with
    // it passes over it for a write too, and the write lands.
    let dead: std::net::SocketAddr = first
        .trim_start_matches("http://")
        .trim_end_matches("/midonet-api")
        .parse()
        .expect("replica address");
    let deadline = killed_at + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(dead).is_ok() {
        assert!(std::time::Instant::now() < deadline, "the killed replica still accepts");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // If the killed etcd member led, the other two elect a leader first
    // (about a second): a write meanwhile is refused with 503 "the topology
    // store is unavailable" (never a 500), and the next one lands.
    let client = midonet_client::Client::new(&st.api_url, midonet_client::Auth::None);
    let br = loop {
        match client
            .create("bridges", &serde_json::json!({"name": "after-the-kill", "tenantId": "t"}))
        {
            Ok(br) => break br,
            Err(e) if e.status() == Some(503) && std::time::Instant::now() < deadline => {
                eprintln!("{:?} after the kill: {e}; trying again", killed_at.elapsed());
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("a write through the remaining replicas: {e:?}"),
        }
    };
    assert_ne!(client.base_url(), first);
    let listed = client.list("bridges").expect("list");
    assert!(listed.iter().any(|b| b["id"] == br["id"]), "the write is there");

    // Past the agents' session TTL: both still alive, so each moved its
    // session to a live replica; and traffic across hosts still flows.
    let ttl = std::time::Duration::from_secs(12);
    std::thread::sleep(ttl.saturating_sub(killed_at.elapsed()));
    let hosts = client.list("hosts").expect("hosts");
    let alive = hosts.iter().filter(|h| h["alive"] == true).count();
    assert_eq!(alive, 2, "hosts alive after the kill: {hosts:?}");
    let across = st.vms.iter().find(|v| v.host != st.vms[0].host).expect("a VM on another host");
    assert!(ping(&st.vms[0].ns, across.ip, 3), "{} → {} after the kill", st.vms[0].ns, across.ip);

    let (stopped, _) = sandbox::down(&state_dir, None).expect("down");
    assert_eq!(stopped, st.processes.len() - 2, "every process but the two killed");
    assert!(st.processes.iter().all(|p| !procs::is_ours(p)), "processes left after down");
}
