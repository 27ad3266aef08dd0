//! Issue 12 on real kernels: VXLAN datagrams whose outer source is in no
//! tunnel zone shared with the receiving host never reach a VM, and are
//! counted; tunnel peers' traffic still flows.
//!
//! ```text
//!   underlay bridge 10.77.0.0/24
//!   ├─ h1 10.77.0.1 (agent, tunnel zone) ── vm1 10.1.0.1 ┐ bridge b
//!   ├─ h2 10.77.0.2 (agent, tunnel zone) ── vm2 10.1.0.2 ┘
//!   └─ x 10.77.0.66: a namespace in no tunnel zone, no agent
//! ```
//!
//! Both x and h1 send hand-made VXLAN datagrams to h2's tunnel port, VNI =
//! vm2's port's tunnel key (a VNI bound to a local port is output with no
//! lookup), inner frame a UDP datagram to vm2. h1's arrive, which shows
//! the datagram itself is deliverable; x's must not, and h2's
//! `tunnel_unknown_source` drop counter must count every one of them.
//! Pings between the VMs before and after show the peers' own traffic is
//! untouched. Runs once per datapath provider (the filter lives in the
//! userspace pipeline and in the BPF tunnel program). Needs root and `ip`
//! like `tests/system.rs`; without them the tests FAIL unless
//! `MIDONET_SKIP_NETNS=1` skips them on purpose.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::env::*;
use midonet_testkit::{ip, ns_exec, Vm};

const PROBE_PORT: u16 = 9998;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 66);
const SPOOFED: u64 = 300;
const FROM_PEER: u64 = 30;

#[test]
fn issue_12_spoofed_vxlan_from_outside_the_tunnel_zone_never_reaches_the_vm() {
    spoofed_vxlan_on(Provider::Ebpf);
}

#[test]
fn issue_12_spoofed_vxlan_from_outside_the_tunnel_zone_never_reaches_the_vm_userspace() {
    spoofed_vxlan_on(Provider::Userspace);
}

fn spoofed_vxlan_on(provider: Provider) {
    if !prerequisites(&format!("issue_12_spoofed_vxlan_{}", provider.name())) {
        return;
    }
    let mut env = Env::new(provider);
    let (_b, vm1, vm2, _p1, p2) = env.two_vms_on_a_bridge();
    until_ping(&vm1, vm2.ip, true, Duration::from_secs(10));
    assert!(ping(&vm1, vm2.ip, 3, &[]).is_some(), "peers' traffic before the attack");

    // The attacker: on the underlay, in no tunnel zone.
    let x = attacker(&mut env);
    let datagram = vxlan_to(&vm2, p2.tunnel_key);
    let dropped = "midonet_agent_dp_drops_total{reason=\"tunnel_unknown_source\"}";
    let before = env.metric(1, dropped);

    // A tunnel peer's copy of the very same datagram is delivered...
    let h1 = env.hosts[0].ns.clone();
    let got = receive_while(&vm2, || send_vxlan(&h1, &datagram, FROM_PEER));
    assert!(got > 0, "the hand-made datagram from peer h1 must reach vm2 (got {got})");
    eprintln!("MEASURE hand-made VXLAN datagrams from peer h1: sent {FROM_PEER}, delivered {got}");
    assert_eq!(env.metric(1, dropped), before, "a peer's datagrams are not dropped");

    // ...the attacker's never is, and each one is counted.
    let got = receive_while(&vm2, || send_vxlan(&x, &datagram, SPOOFED));
    assert_eq!(got, 0, "spoofed VXLAN from {ATTACKER} reached vm2");
    env.wait("spoofed datagrams counted on h2", Duration::from_secs(5), |e| {
        e.metric(1, dropped) >= before + SPOOFED as f64
    });
    let counted = env.metric(1, dropped) - before;
    eprintln!("MEASURE spoofed VXLAN datagrams: sent {SPOOFED}, delivered 0, counted {counted}");
    assert_eq!(env.metric(0, dropped), 0.0, "h1 received nothing from the attacker");

    // The peers' own traffic is untouched.
    assert!(ping(&vm1, vm2.ip, 3, &[]).is_some(), "peers' traffic after the attack");
    assert!(ping(&vm2, vm1.ip, 3, &[]).is_some(), "and in the other direction");
}

/// A namespace `x` on the underlay bridge with [`ATTACKER`]'s address,
/// named with the lab's prefix and removed with the lab.
fn attacker(env: &mut Env) -> String {
    let ns = env.lab.add_netns("x").expect("attacker netns");
    let (ul, br) = (env.lab.name("ul").expect("ul"), env.lab.name("ulbr").expect("ulbr"));
    let (xif, bif) = (env.lab.name("ux").expect("ux"), env.lab.name("ulpx").expect("ulpx"));
    ip(&["link", "add", &xif, "netns", &ns, "type", "veth", "peer", "name", &bif, "netns", &ul])
        .expect("attacker veth");
    ns_exec(&ul, &["ip", "link", "set", &bif, "master", &br]).expect("attacker port");
    ns_exec(&ul, &["ip", "link", "set", &bif, "up"]).expect("attacker port up");
    let cidr = format!("{ATTACKER}/24");
    ns_exec(&ns, &["ip", "addr", "add", &cidr, "dev", &xif]).expect("attacker address");
    ns_exec(&ns, &["ip", "link", "set", &xif, "up"]).expect("attacker link up");
    ns
}

/// A plain RFC 7348 VXLAN datagram (UDP payload) for VNI `key` carrying
/// a UDP datagram to `vm`'s probe port.
fn vxlan_to(vm: &Vm, key: u32) -> Vec<u8> {
    let desc = format!(
        "eth.src=02:00:00:00:66:66,eth.dst={},ip4.src=10.1.0.66,ip4.dst={},ip.ttl=64,udp.src=7777,udp.dst={PROBE_PORT}",
        vm.mac, vm.ip
    );
    let inner: midonet_flow::FlowKey = desc.parse().expect("inner key");
    let mut frame = Vec::new();
    inner.to_frame(b"issue 12 probe", &mut frame);
    let vni = key & 0x00ff_ffff;
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(&frame);
    d
}

/// Sends `n` copies of `datagram` from namespace `ns` to h2's tunnel port,
/// 1 ms apart (no burst for a socket buffer to overrun).
fn send_vxlan(ns: &str, datagram: &[u8], n: u64) {
    let d = datagram.to_vec();
    in_netns(ns, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp bind");
        for _ in 0..n {
            s.send_to(&d, (Ipv4Addr::new(10, 77, 0, 2), 4789)).expect("send vxlan");
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Counts the probe datagrams `vm` receives while `send` runs and for half
/// a second after.
fn receive_while(vm: &Vm, send: impl FnOnce()) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let rx = {
        let (stop, ready) = (stop.clone(), ready.clone());
        spawn_in_netns(&vm.ns, move || {
            let s = std::net::UdpSocket::bind(("0.0.0.0", PROBE_PORT)).expect("probe bind");
            s.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
            ready.store(true, Ordering::Release);
            let mut buf = [0u8; 64];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(k) = s.recv(&mut buf) {
                    if &buf[..k] == b"issue 12 probe" {
                        n += 1;
                    }
                }
            }
            n
        })
    };
    while !ready.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(5));
    }
    send();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    rx.join().expect("probe receiver")
}
