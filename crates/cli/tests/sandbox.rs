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
struct Down(std::path::PathBuf);
impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = sandbox::down(&self.0, Some(PREFIX)) {
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

    let guard = Down(state_dir.clone());
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
    // This time through the Neutron API (`--neutron`): same checks.
    let old = st.processes.clone();
    let args = sandbox::UpArgs { neutron: true, ..args };
    let st2 = sandbox::up(&args).expect("second sandbox up");
    assert!(old.iter().all(|p| !procs::is_ours(p)), "processes of the first run still run");
    assert!(st2.processes.iter().all(procs::is_ours));
    assert!(st2.checks.iter().all(|c| c.ok), "second run's checks: {:?}", st2.checks);

    let (stopped, removed) = sandbox::down(&state_dir, None).expect("down");
    assert_eq!(stopped, st2.processes.len());
    assert_eq!(removed, 7);
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
