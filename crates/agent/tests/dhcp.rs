//! System test of DHCP answered by the simulation, on real kernels: a VM
//! namespace whose interface has no address runs a real DHCP client
//! (busybox `udhcpc`), gets the address, gateway and MTU configured on the
//! bridge's DHCP subnet and host entry, and then pings the router port.
//!
//! ```text
//!   test process: cluster REST API on 127.0.0.1 (root namespace) and the
//!   topology service on the same memory store, listening on 10.78.0.254
//!   inside the underlay namespace
//!        │ gRPC
//!   host h1 (10.78.0.1): midonet-agent ── vm1 (no address; udhcpc)
//!                               bridge "dhcp" ═ router port 10.0.0.1/24
//! ```
//!
//! The bridge, its DHCP subnet and the host entry are created through the
//! REST API (what an operator or Neutron does); the router, ports and the
//! binding are written into the store as model objects, as in
//! `system.rs`. Namespaces are prefixed `mdh`.
//!
//! Needs root, `ip`, `ping` and `busybox` (with `udhcpc`); without them the
//! test FAILS (`MIDONET_SKIP_NETNS=1` skips it on purpose).

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use midonet_cluster::testing::TestCluster;
use midonet_model::*;
use midonet_testkit::{ip, ns_exec, ns_output, Lab};
use serde_json::{json, Value};

const VM_MAC: &str = "02:00:00:d1:00:01";
const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MTU: u16 = 1400;

fn prerequisites() -> bool {
    midonet_testkit::skip::netns_or_skip(
        "agent::vm_gets_address_gateway_and_mtu_from_dhcp_then_pings_the_router",
        &["ip", "ping", "busybox"],
    )
}

/// Runs `f` on a thread inside the namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        midonet_datapath::sys::enter_netns(&ns).expect("enter netns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// A tiny REST client (auth is off in the test cluster).
struct Rest {
    base: String,
    agent: ureq::Agent,
}

impl Rest {
    fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        match self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
        {
            Ok(r) => r.into_json().expect("json response"),
            Err(ureq::Error::Status(code, r)) => {
                panic!("POST {path}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("POST {path}: {e}"),
        }
    }
}

fn wait(what: &str, timeout: Duration, log: &Path, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > timeout {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("---- agent log tail ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The udhcpc hook: records the environment of each event and applies a
/// lease (address, MTU, default route) with `ip`.
const SCRIPT: &str = r#"#!/bin/sh
env | sort > "$MDH_DIR/env.$1"
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set dev "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$subnet" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"#;

#[test]
fn vm_gets_address_gateway_and_mtu_from_dhcp_then_pings_the_router() {
    if !prerequisites() {
        return;
    }
    let bin = midonet_testkit::bins::agent();
    let mut lab = Lab::new("mdh").expect("lab");
    let h1 = lab.add_host("h1").expect("h1");
    lab.add_underlay(&[(&h1, "u1", "10.78.0.1/24")], 9000).expect("underlay");
    let ul = lab.name("ul").expect("ul");
    let ulbr = lab.name("ulbr").expect("ulbr");
    ns_exec(&ul, &["ip", "addr", "add", "10.78.0.254/24", "dev", &ulbr]).expect("cluster address");

    // REST API and topology service on one store.
    let tc = TestCluster::start("memory:", false);
    let store = tc.cluster().store.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let std_listener = in_netns(&ul, || {
        let l = std::net::TcpListener::bind("10.78.0.254:0").expect("bind in underlay");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let cluster = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
        common::Cluster::serve(store, listener)
    });
    macro_rules! store_put {
        ($o:expr) => {{
            let o = $o;
            rt.block_on(cluster.put(&o))
        }};
    }

    // The agent's host, in a tunnel zone with its underlay address.
    let tz = TunnelZone { id: TunnelZoneId::random(), name: "tz".into(), ..Default::default() };
    store_put!(tz.clone());
    let host = HostId::random();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("host_id"), format!("{host}\n")).expect("host id");
    store_put!(TunnelZoneHost {
        tunnel_zone_id: tz.id,
        host_id: host,
        ip_address: Some(Ipv4Addr::new(10, 78, 0, 1))
    });
    let credential = rt.block_on(cluster.enroll(host, dir.path()));
    let log = dir.path().join("agent.log");
    let cmd = format!(
        "exec {} --cluster 10.78.0.254:{} --host-id-file {} --credential-file {} --cluster-ca {} --metrics-listen 127.0.0.1:7301 >>{} 2>&1",
        bin.display(),
        cluster.addr.port(),
        dir.path().join("host_id").display(),
        credential.display(),
        common::pki().ca.display(),
        log.display()
    );
    let pid = lab
        .spawn(&h1, &["env", "RUST_LOG=info,midonet_agent=debug", "sh", "-c", &cmd])
        .expect("spawn agent");
    let alive = midonet_proto::keys::host_alive(&host.to_string());
    wait("agent registered", Duration::from_secs(20), &log, || rt.block_on(cluster.exists(&alive)));

    // Bridge, DHCP subnet and host entry through the REST API.
    let rest = Rest { base: tc.url(), agent: ureq::AgentBuilder::new().build() };
    let b = rest.post("/bridges", json!({"name": "dhcp", "tenantId": "t1", "adminStateUp": true}));
    let bridge_id: BridgeId = b["id"].as_str().expect("bridge id").parse().expect("uuid");
    rest.post(
        &format!("/bridges/{bridge_id}/dhcp"),
        json!({
            "subnetPrefix": "10.0.0.0", "subnetLength": 24, "defaultGateway": GW.to_string(),
            "serverAddr": "10.0.0.2", "dnsServerAddrs": ["10.0.0.53"], "interfaceMTU": MTU,
        }),
    );
    rest.post(
        &format!("/bridges/{bridge_id}/dhcp/10.0.0.0_24/hosts"),
        json!({"macAddr": VM_MAC, "ipAddr": VM_IP.to_string(), "name": "vm1"}),
    );

    // Router port 10.0.0.1/24 on the bridge, as in system.rs.
    let r = Router {
        id: RouterId::random(),
        name: "r".into(),
        admin_state_up: true,
        ..Default::default()
    };
    store_put!(r.clone());
    let rp_id = PortId::random();
    let bp = Port {
        id: PortId::random(),
        port_type: PortType::Bridge,
        device_id: bridge_id.cast(),
        admin_state_up: true,
        tunnel_key: 201,
        peer_id: Some(rp_id),
        ..Default::default()
    };
    let rp = Port {
        id: rp_id,
        port_type: PortType::Router,
        device_id: r.id.cast(),
        admin_state_up: true,
        tunnel_key: 202,
        peer_id: Some(bp.id),
        port_address: Some(GW),
        network_address: Some(Ipv4Addr::new(10, 0, 0, 0)),
        network_length: Some(24),
        port_mac: Some(MacAddr([2, 0xaa, 0, 0, 0xd1, 1])),
        ..Default::default()
    };
    store_put!(bp.clone());
    store_put!(rp.clone());
    store_put!(Route {
        id: RouteId::random(),
        router_id: r.id,
        route_type: RouteType::Normal,
        src_network_addr: Ipv4Addr::UNSPECIFIED,
        src_network_length: 0,
        dst_network_addr: Ipv4Addr::new(10, 0, 0, 0),
        dst_network_length: 24,
        next_hop_port: Some(rp.id),
        next_hop_gateway: None,
        weight: 100,
        learned: false,
        attributes: None,
    });

    // The VM: a namespace and a veth with a known MAC and NO address.
    let vm_ns = lab.add_netns("vm1").expect("vm ns");
    let vm_if = lab.name("vm1").expect("name");
    let host_if = lab.name("vm1h").expect("name");
    ip(&[
        "link", "add", &vm_if, "netns", &vm_ns, "type", "veth", "peer", "name", &host_if, "netns",
        &h1,
    ])
    .expect("veth");
    ns_exec(&vm_ns, &["ip", "link", "set", &vm_if, "address", VM_MAC]).expect("mac");
    ns_exec(&vm_ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).expect("sysctl");
    ns_exec(&vm_ns, &["ip", "link", "set", &vm_if, "up"]).expect("up");
    ns_exec(&h1, &["ip", "link", "set", &host_if, "up"]).expect("up");
    let vp = Port {
        id: PortId::random(),
        port_type: PortType::Bridge,
        device_id: bridge_id.cast(),
        admin_state_up: true,
        tunnel_key: 203,
        host_id: Some(host),
        interface_name: Some(host_if.clone()),
        ..Default::default()
    };
    store_put!(vp.clone());
    let active = midonet_proto::keys::port_active(&vp.id.to_string());
    wait("VM port active", Duration::from_secs(20), &log, || rt.block_on(cluster.exists(&active)));
    let addrs = ns_exec(&vm_ns, &["ip", "-4", "-o", "addr", "show", "dev", &vm_if]).expect("addr");
    assert!(addrs.trim().is_empty(), "the VM starts without an address: {addrs}");

    // A real DHCP client: DISCOVER/OFFER/REQUEST/ACK, then quit (-q).
    let script = dir.path().join("udhcpc.sh");
    std::fs::write(&script, SCRIPT).expect("script");
    std::process::Command::new("chmod").args(["+x"]).arg(&script).status().expect("chmod");
    let t0 = Instant::now();
    let out = ns_output(
        &vm_ns,
        &[
            "env",
            &format!("MDH_DIR={}", dir.path().display()),
            "busybox",
            "udhcpc",
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-T",
            "2",
            "-O",
            "mtu",
            "-i",
            &vm_if,
            "-s",
            &script.display().to_string(),
        ],
    )
    .expect("udhcpc");
    let took = t0.elapsed();
    if !out.status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "{}",
            text.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        out.status.success(),
        "udhcpc failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("MEASURE udhcpc lease obtained in {} ms", took.as_millis());

    // What the client was told.
    let env =
        std::fs::read_to_string(dir.path().join("env.bound")).expect("udhcpc ran the bound event");
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(var("ip"), VM_IP.to_string(), "{env}");
    assert_eq!(var("subnet"), "255.255.255.0", "{env}");
    assert_eq!(var("router"), GW.to_string(), "{env}");
    assert_eq!(var("mtu"), MTU.to_string(), "{env}");
    assert_eq!(var("dns").trim(), "10.0.0.53", "{env}");
    assert_eq!(var("serverid"), "10.0.0.2", "{env}");
    assert_eq!(var("lease"), "86400", "{env}");

    // ... and what the kernel now has.
    let addrs = ns_exec(&vm_ns, &["ip", "-4", "-o", "addr", "show", "dev", &vm_if]).expect("addr");
    assert!(addrs.contains(&format!("{VM_IP}/24")), "address configured: {addrs}");
    let link = ns_exec(&vm_ns, &["ip", "-o", "link", "show", "dev", &vm_if]).expect("link");
    assert!(link.contains(&format!("mtu {MTU} ")), "MTU configured: {link}");
    let routes = ns_exec(&vm_ns, &["ip", "-4", "route", "show", "default"]).expect("routes");
    assert!(
        routes.contains(&format!("default via {GW}")),
        "default route via the gateway: {routes}"
    );

    // The configured VM reaches its gateway, the router port.
    let out =
        ns_output(&vm_ns, &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", &GW.to_string()])
            .expect("ping");
    assert!(out.status.success(), "ping {GW}: {}", String::from_utf8_lossy(&out.stdout));

    // Clean shutdown of the agent, then the lab removes the namespaces.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(lab);
    tc.stop();
}
