//! A cloud built through the Neutron API only, on real kernels: two hosts,
//! real agents, VMs as namespaces. Networks, a router between two tenant
//! networks with a gateway on an external network, a security group,
//! ports bound by `binding:host_id` + `binding:profile.interface_name` (and
//! by Nova's `tap<id>` convention), a floating IP; then real packets
//! (the "Done when": routing, the group, SNAT, the floating IP,
//! anti-spoofing, port status).

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::env::{in_netns, prerequisites, until_ping, Env, Provider};
use common::neutron::{host_if_name, plug, vm_port, Neutron, PortInfo};
use midonet_testkit::{ns_exec, ns_output, wait_listening, Vm};
use serde_json::{json, Value};

/// Whether a TCP connection from `from` to `to:port` is accepted within
/// 3 s: room for one SYN retransmission (at 1 s) on a loaded machine, so
/// `false` means the group dropped it, not that a first SYN was late.
fn tcp_connects(from: &Vm, to: Ipv4Addr, port: u16) -> bool {
    in_netns(&from.ns, move || {
        TcpStream::connect_timeout(&SocketAddr::from((to, port)), Duration::from_secs(3)).is_ok()
    })
}

/// Waits until `vm` listens on TCP `port` (see [`wait_listening`]).
fn until_listening(vm: &Vm, port: u16) {
    assert!(
        wait_listening(&vm.ns, port, Duration::from_secs(10)),
        "{}: nothing listening on {port} after 10 s",
        vm.ns
    );
}

/// A TCP listener on `port` in `vm` that writes the peer's address to
/// each connection, then closes it.
fn peer_echo(env: &mut Env, vm: &Vm, port: u16) {
    let cmd = format!("exec socat TCP-LISTEN:{port},reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR'");
    env.lab.spawn(&vm.ns, &["sh", "-c", &cmd]).expect("socat");
    until_listening(vm, port);
}

/// What `peer_echo` on `to:port` says our address is.
fn seen_as(from: &Vm, to: Ipv4Addr, port: u16) -> Option<String> {
    let out = ns_output(
        &from.ns,
        &["socat", "-T", "2", "-", &format!("TCP:{to}:{port},connect-timeout=2")],
    )
    .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The cloud both tests build: three VMs on their ports, what the router
/// and the floating IP got.
struct Cloud {
    vm1: Vm,
    vm2: Vm,
    out: Vm,
    /// The ids of vm1's and vm2's ports.
    p1: String,
    p2: String,
    /// The router's gateway address on the external network.
    gw_ip: String,
    /// vm2's floating IP.
    fip: Ipv4Addr,
}

#[test]
fn a_cloud_built_through_neutron_carries_traffic() {
    if !prerequisites("a_cloud_built_through_neutron_carries_traffic") {
        return;
    }
    let mut env = Env::new(Provider::Ebpf);
    let api = Neutron::start(&env);
    let (ext, _) = api.network("public", "172.24.4.0/24", json!({"router:external": true}));
    let (a, a_sub) = api.network("a", "10.10.0.0/24", json!({}));
    let (b, b_sub) = api.network("b", "10.20.0.0/24", json!({}));
    let r = api.post(
        "/routers",
        json!({"router": {"name": "r1", "external_gateway_info": {"network_id": ext}}}),
    );
    let rid = r["router"]["id"].as_str().expect("router").to_string();
    let gw_ip = r["router"]["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        .as_str()
        .expect("gateway address")
        .to_string();
    for s in [&a_sub, &b_sub] {
        api.put(&format!("/routers/{rid}/add_router_interface"), json!({ "subnet_id": s }));
    }
    let sg = api.post("/security-groups", json!({"security_group": {"name": "ssh-icmp"}}));
    let sgid = sg["security_group"]["id"].as_str().expect("sg").to_string();
    for rule in [
        json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}),
        json!({"protocol": "icmp", "remote_ip_prefix": "0.0.0.0/0"}),
    ] {
        let mut r = rule;
        r["security_group_id"] = json!(sgid);
        r["direction"] = json!("ingress");
        api.post("/security-group-rules", json!({ "security_group_rule": r }));
    }
    let groups = json!({"security_groups": [sgid]});
    let (vm1, p1) = vm_port(&mut env, &api, 0, "vm1", &a, groups.clone(), false);
    let (vm2, p2) = vm_port(&mut env, &api, 1, "vm2", &b, groups, true);
    // The outside world: a host on the external network, no port security.
    let (out, _) =
        vm_port(&mut env, &api, 0, "out", &ext, json!({"port_security_enabled": false}), false);
    let f = api
        .post("/floatingips", json!({"floatingip": {"floating_network_id": ext, "port_id": p2}}));
    let fip = f["floatingip"]["floating_ip_address"].as_str().expect("fip").parse().expect("v4");
    let cloud = Cloud { vm1, vm2, out, p1, p2, gw_ip, fip };
    carries_traffic(&mut env, &api, &cloud);
}

/// The same cloud built by the real `openstack` CLI only
/// (`tests/openstack/cloud.py`, in the venv `tests/openstack/run.sh`
/// makes), and `openstack port show` saying `ACTIVE` once bound.
#[test]
fn a_cloud_built_with_the_openstack_cli_carries_traffic() {
    if !prerequisites("a_cloud_built_with_the_openstack_cli_carries_traffic") {
        return;
    }
    let mut env = Env::new(Provider::Ebpf);
    let api = Neutron::start(&env);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/openstack/run.sh");
    let osc = |extra: &[&str]| {
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(api.endpoint())
            .args(extra)
            .env("OSC_SCRIPT", "cloud.py")
            .output()
            .expect("run tests/openstack/run.sh");
        assert!(
            out.status.success(),
            "cloud.py {extra:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (host0, host1) = (env.hosts[0].id.to_string(), env.hosts[1].id.to_string());
    let (vm1_if, out_if) = (host_if_name(&env, "vm1"), host_if_name(&env, "out"));
    let built: Value = serde_json::from_str(&osc(&[
        "--host0", &host0, "--host1", &host1, "--vm1-if", &vm1_if, "--out-if", &out_if,
    ]))
    .expect("cloud.py prints JSON");
    let info = |name: &str| {
        let p = &built["ports"][name];
        PortInfo {
            id: p["id"].as_str().expect("id").to_string(),
            ip: p["ip"].as_str().expect("ip").parse().expect("v4"),
            mac: p["mac"].as_str().expect("mac").to_string(),
            prefix_len: p["prefix_len"].as_u64().expect("len") as u8,
            gateway: p["gateway"].as_str().and_then(|g| g.parse().ok()),
        }
    };
    let (i1, i2, io) = (info("vm1"), info("vm2"), info("out"));
    let cloud = Cloud {
        vm1: plug(&mut env, 0, "vm1", &i1, false),
        vm2: plug(&mut env, 1, "vm2", &i2, true),
        out: plug(&mut env, 0, "out", &io, false),
        p1: i1.id,
        p2: i2.id,
        gw_ip: built["gateway_ip"].as_str().expect("gateway").to_string(),
        fip: built["floating_ip"].as_str().expect("fip").parse().expect("v4"),
    };
    carries_traffic(&mut env, &api, &cloud);
    for p in [&cloud.p1, &cloud.p2] {
        assert_eq!(osc(&["--status", p]), "ACTIVE", "openstack port show {p}");
    }
}

/// The data-plane checks on a built cloud: ports turn ACTIVE,
/// routing, the group, SNAT, the floating IP, anti-spoofing.
fn carries_traffic(env: &mut Env, api: &Neutron, c: &Cloud) {
    let Cloud { vm1, vm2, out, p1, p2, gw_ip, fip } = c;
    let fip = *fip;
    // Bound ports turn ACTIVE.
    for p in [p1, p2] {
        env.wait("port ACTIVE", Duration::from_secs(10), |_| {
            api.get(&format!("/ports/{p}"))["port"]["status"] == "ACTIVE"
        });
    }
    // The gateway answers through the VM's chains (its echo reply counts
    // as return traffic, as MidoNet's generated packets do).
    until_ping(vm1, Ipv4Addr::new(10, 10, 0, 1), true, Duration::from_secs(10));
    // Across the router, host to host; the group lets ICMP and 22 in.
    until_ping(vm1, vm2.ip, true, Duration::from_secs(10));
    for (port, want) in [(22, true), (23, false)] {
        env.lab
            .spawn(
                &vm2.ns,
                &[
                    "sh",
                    "-c",
                    &format!("exec socat TCP-LISTEN:{port},reuseaddr,fork EXEC:/bin/true"),
                ],
            )
            .expect("listener");
        until_listening(vm2, port);
        assert_eq!(tcp_connects(vm1, vm2.ip, port), want, "TCP to vm2:{port} through the group");
    }
    // Out through SNAT: the outside sees the router's gateway address.
    peer_echo(env, out, 8080);
    until_ping(vm1, out.ip, true, Duration::from_secs(10));
    assert_eq!(
        seen_as(vm1, out.ip, 8080).as_deref(),
        Some(gw_ip.as_str()),
        "SNAT to the gateway address"
    );
    // In through the floating IP.
    until_ping(out, fip, true, Duration::from_secs(10));
    assert!(tcp_connects(out, fip, 22), "TCP 22 to the floating IP");
    // vm2 going out is seen as its floating IP, not the router's address.
    assert_eq!(
        seen_as(vm2, out.ip, 8080).as_deref(),
        Some(fip.to_string().as_str()),
        "static SNAT to the FIP"
    );
    // A spoofed source address from vm1 is dropped; its own still works.
    // (Addresses are picked at random: spoof one no port has.)
    let taken = api.get("/ports").to_string();
    let spoof = (90..=99)
        .map(|l| format!("10.10.0.{l}"))
        .find(|ip| !taken.contains(&format!("\"{ip}\"")))
        .expect("a free address to spoof");
    ns_exec(&vm1.ns, &["ip", "addr", "add", &format!("{spoof}/24"), "dev", &vm1.vm_if])
        .expect("spoof address");
    let spoofed = ns_output(
        &vm1.ns,
        &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-I", &spoof, &vm2.ip.to_string()],
    )
    .expect("ping");
    assert!(!spoofed.status.success(), "a spoofed source must not get through");
    until_ping(vm1, vm2.ip, true, Duration::from_secs(5));
}
