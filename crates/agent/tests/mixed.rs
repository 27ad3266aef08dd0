//! A deployment of mixed datapath providers, as a host that falls back
//! from `ebpf` makes one (ARCHITECTURE.md §9.10): host h1's agent runs
//! `ebpf` (the kernel's vxlan device, plain RFC 7348), h2's and h3's
//! `userspace`, all with the default configuration. Each agent registers its
//! provider, so h2 finishes every offload itself (checksums, TCP and UDP
//! segmentation) before the tunnel to h1 (a kernel VTEP drops a datagram
//! whose VXLAN reserved bits carry our offload metadata), and keeps its
//! big frames to h3, which reads them. Traffic is checked both ways: ping,
//! UDP, and a TCP stream of 32 MiB with SHA-256 in each direction.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::env::*;
use midonet_testkit::Vm;

/// `tcp_transfer`, given up on after `limit`: a path that drops the big
/// frames stalls the stream forever instead of failing it.
/// On a timeout, the agents' drop and tunnel counters say where it stuck.
fn transfer_within(env: &Env, from: &Vm, to: &Vm, size: usize, limit: Duration) -> Duration {
    let (tx, rx) = mpsc::channel();
    let (f, t) = (from.clone(), to.clone());
    std::thread::spawn(move || {
        let _ = tx.send(tcp_transfer(&f, &t, size));
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        for i in 0..env.hosts.len() {
            for l in env.metrics(i).lines().filter(|l| {
                !l.starts_with('#') && (l.contains("drops_total") || l.contains("tunnel_"))
            }) {
                eprintln!("host {i}: {l}");
            }
        }
        panic!("{size} bytes from {} to {} did not arrive in {limit:?}", from.ip, to.ip)
    })
}

/// One datagram from `from` to `to` and its echo back; returns the echo.
fn udp_echo(from: &Vm, to: &Vm) -> Vec<u8> {
    let server = in_netns(&to.ns, || std::net::UdpSocket::bind("0.0.0.0:7777").expect("bind"));
    server.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, peer) = server.recv_from(&mut buf).expect("the datagram arrives");
        server.send_to(&buf[..n], peer).expect("echo");
    });
    let dst = std::net::SocketAddr::from((to.ip, 7777));
    let got = in_netns(&from.ns, move || {
        let c = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        c.send_to(b"ping over udp", dst).expect("send");
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).expect("the echo arrives");
        buf[..n].to_vec()
    });
    echo.join().expect("echo thread");
    got
}

#[test]
fn an_ebpf_host_and_userspace_hosts_carry_tcp_both_ways() {
    if !prerequisites("an_ebpf_host_and_userspace_hosts_carry_tcp_both_ways") {
        return;
    }
    let mut env = Env::mixed(&[Provider::Ebpf, Provider::Userspace, Provider::Userspace], "");
    let (b, vm1, vm2, _p1, _p2) = env.two_vms_on_a_bridge();
    let vm3 = env.vm(2, "vm3", "10.1.0.3/24", None);
    let p3 = env.bridge_port(&b, Some((2, &vm3)));
    env.wait_active(&p3);

    assert!(ping(&vm1, vm2.ip, 3, &[]).is_some(), "ping ebpf host -> userspace host");
    assert!(ping(&vm2, vm1.ip, 3, &[]).is_some(), "ping userspace host -> ebpf host");

    // UDP: a VM's datagrams carry partial checksums.
    for (from, to) in [(&vm1, &vm2), (&vm2, &vm1)] {
        assert_eq!(udp_echo(from, to), b"ping over udp", "UDP {} -> {}", from.ip, to.ip);
    }

    // TCP: big GSO frames with partial checksums from each VM.
    let size = 32 << 20;
    let there = transfer_within(&env, &vm2, &vm1, size, Duration::from_secs(60));
    let back = transfer_within(&env, &vm1, &vm2, size, Duration::from_secs(60));
    eprintln!(
        "MEASURE 32 MiB userspace -> ebpf {:.0} ms, ebpf -> userspace {:.0} ms",
        there.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3
    );
    // What the userspace host finished in software is counted.
    let resolved = "midonet_agent_tunnel_offload_resolved_total";
    let to_ebpf = env.metric(1, resolved);
    assert!(to_ebpf > 0.0, "the userspace host resolved offloads before the tunnel to h1");

    // Between the userspace hosts the offloads cross as they are.
    let between = transfer_within(&env, &vm2, &vm3, size, Duration::from_secs(60));
    let back = transfer_within(&env, &vm3, &vm2, size, Duration::from_secs(60));
    eprintln!(
        "MEASURE 32 MiB userspace -> userspace {:.0} ms and back {:.0} ms",
        between.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3
    );
    assert_eq!(env.metric(1, resolved), to_ebpf, "nothing resolved for h3");
    assert_eq!(env.metric(2, resolved), 0.0, "nothing resolved for h2");
}
