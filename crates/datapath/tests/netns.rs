//! System tests of the userspace datapath on real kernels, in network
//! namespaces named `mdp…` (created and removed by `midonet_testkit::Lab`).
//! They need root, `ip`, `ping`, `sysctl` and `iperf3`; without them they
//! FAIL naming what is missing (`MIDONET_SKIP_NETNS=1` skips them on
//! purpose, and the skip is recorded: `midonet_testkit::skip`).
//!
//! Knobs for measuring rather than testing (still bounded in time):
//! `MDP_UDP_SECS` (UDP flood duration, default 1), `MDP_IPERF_SECS`
//! (iperf3 duration, default 3), `MDP_PING_N` (pings, default 5),
//! `MDP_SPIN_US` (the datapaths' poll-spin window), `MDP_NOTSO=1` (VM
//! checksum offload and TSO off: the kernel segments before the datapath),
//! `MDP_RT_PRIO` (run the datapath threads under SCHED_FIFO),
//! `MDP_BACKPRESSURE=N` (pfifo of N packets on the VM veths, NAPI on the
//! host ends: `midonet_testkit::veth_backpressure`; with
//! `MDP_NAPI_THREADED=1` that NAPI runs in a kernel thread),
//! `MDP_BATCH` (packets per receive/transmit batch), `MDP_COALESCE=0`
//! (no UDP GSO frames towards the VMs),
//! `MDP_UNDERLAY=bridge` (a bridge instead of a direct veth),
//! `MDP_UNDERLAY_MTU` (default 65000; 1500 exercises fragmentation and the
//! GSO fallback).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_datapath::sys::{enter_netns, PacketSocket, TxItem, TxQueue};
use midonet_datapath::testing::MacTableHandler;
use midonet_datapath::userspace::{UserspaceConfig, UserspaceDatapath};
use midonet_datapath::{Action, Datapath, DropReason, MacAddr};
use midonet_testkit::{
    add_neigh, ns_exec, ns_output, skip, veth_backpressure, wait_listening, Lab, Vm, VmSpec,
};

mod common;
use common::{env_u64, mac, vm};

/// Whether `test` can run; fails it when root or a program is missing.
fn prerequisites(test: &str) -> bool {
    skip::netns_or_skip(&format!("datapath::{test}"), &["ping", "sysctl", "iperf3"])
}

/// Ping and return the average RTT in ms. Every ping must come back; one
/// lost round is tried once more, because a machine starved by other work
/// can delay a reply past `-W 1` (a broken path loses the second round too).
fn ping(from: &Vm, to: Ipv4Addr, n: u64) -> f64 {
    let count = n.to_string();
    let dst = to.to_string();
    let round = || {
        let out = ns_output(&from.ns, &["ping", "-c", &count, "-i", "0.01", "-W", "1", &dst])
            .expect("ping");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut text = round();
    if !text.contains(&format!("{n} received")) {
        eprintln!("ping lost a reply, trying once more:\n{text}");
        text = round();
    }
    assert!(text.contains(&format!("{n} received")), "ping failed twice:\n{text}");
    // "rtt min/avg/max/mdev = 0.041/0.058/0.090/0.015 ms"
    text.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .expect("rtt line")
}

/// Flood 18-byte UDP datagrams from `src` to `dst` for `secs`; returns
/// (sent, received).
fn udp_flood(src: &Vm, dst: &Vm, secs: u64) -> (u64, u64) {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = {
        let ns = dst.ns.clone();
        let received = received.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            enter_netns(&ns).expect("enter dst ns");
            let s = UdpSocket::bind("0.0.0.0:9000").expect("bind");
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if s.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    ready_rx.recv().expect("receiver ready");
    let sent = {
        let ns = src.ns.clone();
        let to = SocketAddrV4::new(dst.ip, 9000);
        std::thread::spawn(move || {
            enter_netns(&ns).expect("enter src ns");
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            let end = Instant::now() + Duration::from_secs(secs);
            let mut n = 0u64;
            let payload = [0x55u8; 18];
            while Instant::now() < end {
                for _ in 0..64 {
                    if s.send_to(&payload, to).is_ok() {
                        n += 1;
                    }
                }
            }
            n
        })
        .join()
        .expect("sender")
    };
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    rx.join().expect("receiver");
    (sent, received.load(Ordering::Relaxed))
}

/// Write a frame onto `ifname` inside `ns` with an AF_PACKET socket.
fn inject_raw(ns: &str, ifname: &str, frame: Vec<u8>) {
    let ns = ns.to_owned();
    let ifname = ifname.to_owned();
    std::thread::spawn(move || {
        enter_netns(&ns).expect("enter ns");
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
        assert_eq!((sent, failed), (1, 0));
    })
    .join()
    .expect("inject thread");
}

/// Two VMs on one host's userspace datapath, switched by MAC.
struct OneHost {
    a: Vm,
    b: Vm,
    dp: UserspaceDatapath,
    pa: midonet_datapath::PortNo,
    pb: midonet_datapath::PortNo,
    /// The handler's upcalls.
    calls: Arc<AtomicU64>,
}

/// VMs a (198.19.`subnet`.1) and b (.2) on a new host of `lab`, bound to a
/// userspace datapath thread named `name` whose handler forwards by
/// destination MAC.
fn one_host(lab: &mut Lab, name: &str, subnet: u8) -> OneHost {
    let h = lab.add_host("h").expect("host");
    let a = vm(lab, "a", &h, &format!("198.19.{subnet}.1/24"), "02:00:00:00:71:01", 1500);
    let b = vm(lab, "b", &h, &format!("198.19.{subnet}.2/24"), "02:00:00:00:71:02", 1500);
    add_neigh(&a.ns, &a.vm_if, b.ip, &b.mac).expect("neigh");
    add_neigh(&b.ns, &b.vm_if, a.ip, &a.mac).expect("neigh");
    let dp = UserspaceDatapath::start(
        UserspaceConfig { name: name.into(), netns: Some(h.clone()), ..Default::default() },
        None,
    )
    .expect("start datapath");
    let pa = dp.add_vport(&a.host_if).expect("vport a");
    let pb = dp.add_vport(&b.host_if).expect("vport b");
    let handler = MacTableHandler::new()
        .route(mac(&b), &[Action::Output(pb)])
        .route(mac(&a), &[Action::Output(pa)]);
    let calls = handler.calls.clone();
    dp.set_handler(Some(Box::new(handler))).expect("handler");
    OneHost { a, b, dp, pa, pb, calls }
}

#[test]
fn two_vms_on_one_host() {
    if !prerequisites("two_vms_on_one_host") {
        return;
    }
    let mut lab = Lab::new("mdp").expect("lab");
    let OneHost { a, b, dp, pa, pb, calls } = one_host(&mut lab, "mdp-dp", 71);

    let rtt = ping(&a, b.ip, env_u64("MDP_PING_N", 5));
    eprintln!("local: ping rtt avg {rtt:.3} ms");
    assert_eq!(calls.load(Ordering::Relaxed), 2, "one upcall per direction");

    let secs = env_u64("MDP_UDP_SECS", 1);
    let (sent, got) = udp_flood(&a, &b, secs);
    eprintln!(
        "local: udp 18 B: sent {sent}, received {got} ({:.0} kpps delivered)",
        got as f64 / secs as f64 / 1e3
    );
    assert!(got > 0, "no datagram arrived");
    let st = dp.stats().expect("stats");
    let rx_a = st.port(pa).expect("port a").rx_packets;
    let tx_b = st.port(pb).expect("port b").tx_packets;
    assert!(rx_a >= got && tx_b >= got, "port counters {rx_a}/{tx_b} below delivered {got}");

    // A frame whose IPv4 header is cut short: counted as malformed and dropped.
    let before = st.drops.get(DropReason::Malformed);
    let mut bad = midonet_datapath::testing::udp_frame(mac(&a), mac(&b), a.ip, b.ip, 1, 2, b"x");
    bad.truncate(14 + 12);
    inject_raw(&a.ns, &a.vm_if, bad);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let d = dp.stats().expect("stats").drops.get(DropReason::Malformed);
        if d > before {
            break;
        }
        assert!(Instant::now() < deadline, "malformed frame not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Good traffic still flows.
    ping(&a, b.ip, 2);
    drop(dp);
}

#[test]
fn vxlan_between_two_hosts() {
    if !prerequisites("vxlan_between_two_hosts") {
        return;
    }
    let mut lab = Lab::new("mdp").expect("lab");
    let h1 = lab.add_host("h1").expect("h1");
    let h2 = lab.add_host("h2").expect("h2");
    let (u1, u2) = (Ipv4Addr::new(198, 18, 72, 1), Ipv4Addr::new(198, 18, 72, 2));
    // Underlay MTU big enough for one 60 KB GSO frame per VXLAN datagram.
    // A direct veth like peers/kernel-baseline.sh (MDP_UNDERLAY=bridge for a bridge).
    let mtu = env_u64("MDP_UNDERLAY_MTU", 65000) as u32;
    if std::env::var("MDP_UNDERLAY").as_deref() == Ok("bridge") {
        lab.add_underlay(&[(&h1, "u1", "198.18.72.1/24"), (&h2, "u2", "198.18.72.2/24")], mtu)
            .expect("underlay");
    } else {
        lab.add_underlay_pair((&h1, "u1", "198.18.72.1/24"), (&h2, "u2", "198.18.72.2/24"), mtu)
            .expect("underlay");
    }
    let a = vm(&mut lab, "a", &h1, "198.19.72.1/24", "02:00:00:00:72:01", 1500);
    let b = vm(&mut lab, "b", &h2, "198.19.72.2/24", "02:00:00:00:72:02", 1500);
    for v in [&a, &b] {
        ns_exec(&v.ns, &["ip", "link", "set", "dev", &v.vm_if, "gso_max_size", "60000"])
            .expect("gso cap");
        // Option (b) for comparison: no checksum offload, hence no TSO, in the VMs.
        if std::env::var("MDP_NOTSO").is_ok_and(|v| !v.is_empty() && v != "0") {
            ns_exec(&v.ns, &["ethtool", "-K", &v.vm_if, "tx", "off"]).expect("ethtool");
        }
    }
    if let Some(limit) = std::env::var("MDP_BACKPRESSURE").ok().and_then(|v| v.parse().ok()) {
        veth_backpressure(&a, &h1, limit).expect("backpressure a");
        veth_backpressure(&b, &h2, limit).expect("backpressure b");
        if std::env::var("MDP_NAPI_THREADED").is_ok() {
            for (v, h) in [(&a, &h1), (&b, &h2)] {
                let path = format!("/sys/class/net/{}/threaded", v.host_if);
                ns_exec(h, &["sh", "-c", &format!("echo 1 > {path}")]).expect("threaded napi");
            }
        }
    }
    add_neigh(&a.ns, &a.vm_if, b.ip, &b.mac).expect("neigh");
    add_neigh(&b.ns, &b.vm_if, a.ip, &a.mac).expect("neigh");

    let cfg = |name: &str, ns: &str, ip| UserspaceConfig {
        name: name.into(),
        netns: Some(ns.into()),
        underlay_ip: Some(ip),
        spin_us: env_u64("MDP_SPIN_US", UserspaceConfig::default().spin_us),
        rt_priority: std::env::var("MDP_RT_PRIO").ok().and_then(|v| v.parse().ok()),
        batch: env_u64("MDP_BATCH", UserspaceConfig::default().batch as u64) as usize,
        coalesce_udp: env_u64("MDP_COALESCE", 1) != 0,
        ..UserspaceConfig::default()
    };
    let dp1 = UserspaceDatapath::start(cfg("mdp-dp1", &h1, u1), None).expect("dp1");
    let dp2 = UserspaceDatapath::start(cfg("mdp-dp2", &h2, u2), None).expect("dp2");
    let pa = dp1.add_vport(&a.host_if).expect("vport a");
    let pb = dp2.add_vport(&b.host_if).expect("vport b");
    let (key_a, key_b) = (0x101, 0x102);
    dp1.bind_tunnel_key(key_a, pa).expect("bind a");
    dp2.bind_tunnel_key(key_b, pb).expect("bind b");
    let h1h = MacTableHandler::new().route(mac(&b), &[Action::Tunnel { dst: u2, key: key_b }]);
    let h2h = MacTableHandler::new().route(mac(&a), &[Action::Tunnel { dst: u1, key: key_a }]);
    let (c1, c2) = (h1h.calls.clone(), h2h.calls.clone());
    dp1.set_handler(Some(Box::new(h1h))).expect("handler 1");
    dp2.set_handler(Some(Box::new(h2h))).expect("handler 2");

    let rtt = ping(&a, b.ip, env_u64("MDP_PING_N", 5));
    eprintln!("vxlan: ping rtt avg {rtt:.3} ms");
    assert_eq!(
        (c1.load(Ordering::Relaxed), c2.load(Ordering::Relaxed)),
        (1, 1),
        "egress hosts do not simulate"
    );
    let s1 = dp1.stats().expect("stats");
    assert!(s1.tunnel.tx_packets >= 5 && s1.tunnel.rx_packets >= 5, "{:?}", s1.tunnel);

    let secs = env_u64("MDP_UDP_SECS", 1);
    let cpu0 = thread_cpu_ns(&["mdp-dp1", "mdp-dp2"]);
    let (sent, got) = udp_flood(&a, &b, secs);
    eprintln!(
        "vxlan: udp 18 B: sent {sent}, received {got} ({:.0} kpps delivered)",
        got as f64 / secs as f64 / 1e3
    );
    assert!(got > 0);
    // Datapath CPU per packet it forwarded: a figure the other builds on
    // the box disturb far less than the packet rates.
    let cpu1 = thread_cpu_ns(&["mdp-dp1", "mdp-dp2"]);
    for (i, n) in ["dp1", "dp2"].iter().enumerate() {
        let us = cpu1[i].saturating_sub(cpu0[i]) as f64 / 1e3;
        eprintln!(
            "vxlan: {n} cpu {:.2} s, {:.2} us per packet sent",
            us / 1e6,
            us / sent.max(1) as f64
        );
    }

    if let Some((tx, rx)) = iperf3_udp(&mut lab, &a, &b, secs) {
        eprintln!(
            "vxlan: iperf3 udp 18 B: {:.0} kpps sent, {:.0} kpps delivered",
            tx / 1e3,
            rx / 1e3
        );
    }
    for ns in [&h2, &b.ns] {
        eprintln!("vxlan: {ns} udp rcvbuf errors {}", udp_rcvbuf_errors(ns));
    }
    let server =
        lab.spawn_owned(&b.ns, &["iperf3", "-s", "-1", "-p", "5299"]).expect("iperf3 server");
    assert!(wait_listening(&b.ns, 5299, Duration::from_secs(10)), "iperf3 server");
    let t = env_u64("MDP_IPERF_SECS", 3).to_string();
    let dst = b.ip.to_string();
    let out = ns_output(&a.ns, &["iperf3", "-c", &dst, "-p", "5299", "-t", &t, "-J"])
        .expect("iperf3 client");
    let _ = server.wait_output(Duration::from_secs(5));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 json");
    let recv = &j["end"]["sum_received"];
    let bytes = recv["bytes"].as_f64().unwrap_or(0.0);
    let gbps = recv["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9;
    eprintln!("vxlan: iperf3 tcp {gbps:.2} Gbit/s ({bytes:.0} bytes received)");
    let st1 = dp1.stats().expect("stats");
    let st2 = dp2.stats().expect("stats");
    eprintln!("vxlan: dp1 drops {:?}\nvxlan: dp2 drops {:?}", nonzero(&st1), nonzero(&st2));
    for (n, st) in [("dp1", &st1), ("dp2", &st2)] {
        let pkts: u64 =
            st.ports.iter().map(|p| p.counters.rx_packets).sum::<u64>() + st.tunnel.rx_packets;
        eprintln!(
            "vxlan: {n} average rx batch {:.1} packets",
            pkts as f64 / st.rx_batches.max(1) as f64
        );
    }
    assert!(bytes > 1e6, "TCP data did not arrive: {}", String::from_utf8_lossy(&out.stdout));
}

/// `iperf3 -u -b 0 -l 18` like the peer scripts: (sent pps, delivered pps).
fn iperf3_udp(lab: &mut Lab, a: &Vm, b: &Vm, secs: u64) -> Option<(f64, f64)> {
    let server =
        lab.spawn_owned(&b.ns, &["iperf3", "-s", "-1", "-p", "5298"]).expect("iperf3 server");
    assert!(wait_listening(&b.ns, 5298, Duration::from_secs(10)), "iperf3 server");
    let t = secs.to_string();
    let dst = b.ip.to_string();
    let out = ns_output(
        &a.ns,
        &["iperf3", "-c", &dst, "-p", "5298", "-u", "-b", "0", "-l", "18", "-t", &t, "-J"],
    )
    .expect("iperf3 client");
    let _ = server.wait_output(Duration::from_secs(5));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let sum = &j["end"]["sum"];
    let (pk, lost, dur) =
        (sum["packets"].as_f64()?, sum["lost_packets"].as_f64()?, sum["seconds"].as_f64()?);
    Some((pk / dur, (pk - lost) / dur))
}

/// CPU time (ns, from `/proc/self/task/*/schedstat`) of this process's
/// threads with each of these names, in order (0 if absent).
fn thread_cpu_ns(names: &[&str]) -> Vec<u64> {
    let mut out = vec![0u64; names.len()];
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in dir.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some(i) = names.iter().position(|n| *n == comm.trim()) {
            let st = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            out[i] += st.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    out
}

/// `RcvbufErrors` of /proc/net/snmp in a namespace: datagrams the kernel
/// dropped because a UDP socket's buffer was full.
fn udp_rcvbuf_errors(ns: &str) -> u64 {
    let snmp = ns_exec(ns, &["cat", "/proc/net/snmp"]).unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(vals)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(vals.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn nonzero(s: &midonet_datapath::DpStats) -> Vec<(&'static str, u64)> {
    s.drops.iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.as_str(), n)).collect()
}

/// Two subnets joined by a (simulated) router across two hosts: the
/// handler's actions rewrite MACs and the TTL before tunnelling, as a
/// router simulation would; ping and a short TCP run must get through with
/// GSO frames rewritten in place.
#[test]
fn routed_across_two_hosts() {
    if !prerequisites("routed_across_two_hosts") {
        return;
    }
    let mut lab = Lab::new("mdp").expect("lab");
    let h1 = lab.add_host("h1").expect("h1");
    let h2 = lab.add_host("h2").expect("h2");
    let (u1, u2) = (Ipv4Addr::new(198, 18, 74, 1), Ipv4Addr::new(198, 18, 74, 2));
    lab.add_underlay_pair((&h1, "u1", "198.18.74.1/24"), (&h2, "u2", "198.18.74.2/24"), 65000)
        .expect("underlay");
    let router = "02:00:00:00:74:fe";
    let rmac = MacAddr::from_str(router).expect("mac");
    let a = lab
        .add_vm(&VmSpec {
            name: "a",
            host_ns: &h1,
            host_if: "ah",
            vm_if: "a",
            ip_cidr: "198.19.74.1/24",
            mac: Some("02:00:00:00:74:01"),
            mtu: Some(1500),
            gateway: Some(Ipv4Addr::new(198, 19, 74, 254)),
        })
        .expect("vm a");
    let b = lab
        .add_vm(&VmSpec {
            name: "b",
            host_ns: &h2,
            host_if: "bh",
            vm_if: "b",
            ip_cidr: "198.19.75.2/24",
            mac: Some("02:00:00:00:75:02"),
            mtu: Some(1500),
            gateway: Some(Ipv4Addr::new(198, 19, 75, 254)),
        })
        .expect("vm b");
    // gateway is set after the address; add the static neighbour for it.
    add_neigh(&a.ns, &a.vm_if, Ipv4Addr::new(198, 19, 74, 254), router).expect("neigh a");
    add_neigh(&b.ns, &b.vm_if, Ipv4Addr::new(198, 19, 75, 254), router).expect("neigh b");
    for v in [&a, &b] {
        ns_exec(&v.ns, &["ip", "link", "set", "dev", &v.vm_if, "gso_max_size", "60000"])
            .expect("gso cap");
    }
    let cfg = |name: &str, ns: &str, ip| UserspaceConfig {
        name: name.into(),
        netns: Some(ns.into()),
        underlay_ip: Some(ip),
        ..UserspaceConfig::default()
    };
    let dp1 = UserspaceDatapath::start(cfg("mdp-r1", &h1, u1), None).expect("dp1");
    let dp2 = UserspaceDatapath::start(cfg("mdp-r2", &h2, u2), None).expect("dp2");
    let pa = dp1.add_vport(&a.host_if).expect("vport a");
    let pb = dp2.add_vport(&b.host_if).expect("vport b");
    dp1.bind_tunnel_key(0x201, pa).expect("bind a");
    dp2.bind_tunnel_key(0x202, pb).expect("bind b");
    // Linux sends with TTL 64, so a constant SetTtl(63) is what the router
    // would compute for every packet of this test.
    let to_b = [
        Action::SetEthSrc(rmac),
        Action::SetEthDst(mac(&b)),
        Action::SetTtl(63),
        Action::Tunnel { dst: u2, key: 0x202 },
    ];
    let to_a = [
        Action::SetEthSrc(rmac),
        Action::SetEthDst(mac(&a)),
        Action::SetTtl(63),
        Action::Tunnel { dst: u1, key: 0x201 },
    ];
    dp1.set_handler(Some(Box::new(MacTableHandler::new().route(rmac, &to_b)))).expect("h1");
    dp2.set_handler(Some(Box::new(MacTableHandler::new().route(rmac, &to_a)))).expect("h2");

    let out = ns_output(&a.ns, &["ping", "-c", "3", "-i", "0.05", "-W", "1", &b.ip.to_string()])
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 received"), "{text}");
    assert!(text.contains("ttl=63"), "the reply crossed the router once: {text}");

    let server = lab.spawn_owned(&b.ns, &["iperf3", "-s", "-1", "-p", "5297"]).expect("server");
    assert!(wait_listening(&b.ns, 5297, Duration::from_secs(10)), "iperf3 server");
    let out = ns_output(&a.ns, &["iperf3", "-c", &b.ip.to_string(), "-p", "5297", "-t", "2", "-J"])
        .expect("client");
    let _ = server.wait_output(Duration::from_secs(5));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 json");
    let bytes = j["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    let gbps = j["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9;
    eprintln!("routed: iperf3 tcp {gbps:.2} Gbit/s");
    assert!(bytes > 1e6, "TCP data did not arrive");
    assert_eq!(dp1.stats().expect("stats").drops.get(DropReason::RewriteFailed), 0);
}

/// A server answers and closes (HTTP `Connection: close`); its response and
/// FIN wait together in the port's socket (the datapath thread is held in a
/// control call meanwhile, so they are one receive batch), and reach the
/// client as one segment carrying both: `finmerge`. The client reads the
/// answer and the end of the stream at once and closes second, so the
/// 4-tuple's TIME_WAIT stays with the server.
#[test]
fn a_response_and_its_fin_in_one_batch_reach_the_client_as_one_segment() {
    let test = "a_response_and_its_fin_in_one_batch_reach_the_client_as_one_segment";
    if !prerequisites(test) {
        return;
    }
    fin_rides_on_the_answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello".to_vec(), 76);
}

/// The same with an answer of 10,000 bytes, within the initial congestion
/// window: one TCP segmentation offload frame from the server's stack,
/// which takes the FIN and leaves it to whoever segments it.
#[test]
fn a_segmentation_offloaded_answer_takes_its_fin_too() {
    if !prerequisites("a_segmentation_offloaded_answer_takes_its_fin_too") {
        return;
    }
    let answer: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    fin_rides_on_the_answer(answer, 77);
}

fn fin_rides_on_the_answer(answer: Vec<u8>, subnet: u8) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc::channel;

    let mut lab = Lab::new("mdp").expect("lab");
    let OneHost { a, b, dp, .. } = one_host(&mut lab, "mdp-fin", subnet);
    ping(&a, b.ip, 2);

    let (listening_tx, listening_rx) = channel();
    let (request_tx, request_rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    let (closed_tx, closed_rx) = channel::<()>();
    // The answer waits in the datapath's socket meanwhile: no tail-loss
    // probe may add a copy of the FIN to the batch (a retransmission
    // timeout is 200 ms away).
    ns_exec(&b.ns, &["sysctl", "-qw", "net.ipv4.tcp_early_retrans=0"]).expect("sysctl");
    let (b_ns, b_ip, sent) = (b.ns.clone(), b.ip, answer.clone());
    let server = std::thread::spawn(move || {
        enter_netns(&b_ns).expect("enter b");
        let l = TcpListener::bind((b_ip, 18080)).expect("listen");
        listening_tx.send(()).expect("listening");
        let (mut s, _) = l.accept().expect("accept");
        let mut req = [0u8; 4];
        s.read_exact(&mut req).expect("request");
        request_tx.send(()).expect("request read");
        go_rx.recv().expect("go");
        s.write_all(&sent).expect("answer");
        drop(s); // the FIN follows the answer
        closed_tx.send(()).expect("closed");
    });
    listening_rx.recv().expect("server up");
    // What the client's interface receives, from before the answer on.
    let (a_ns, a_if) = (a.ns.clone(), a.vm_if.clone());
    let (capture_tx, capture_rx) = channel();
    let (cap_ready_tx, cap_ready_rx) = channel();
    let capture = std::thread::spawn(move || {
        enter_netns(&a_ns).expect("enter a");
        let sock = PacketSocket::open(&a_if).expect("capture socket");
        cap_ready_tx.send(()).expect("capture ready");
        let mut batch = midonet_datapath::sys::RxBatch::new(64);
        let mut frames = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && capture_rx.try_recv().is_err() {
            let n = sock.recv_batch(&mut batch).expect("capture");
            frames.extend(batch.slots[..n].iter().map(|s| s.frame().to_vec()));
            if n == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        frames
    });
    cap_ready_rx.recv().expect("capture up");
    let (a_ns, b_ip) = (a.ns.clone(), b.ip);
    let client = std::thread::spawn(move || {
        enter_netns(&a_ns).expect("enter a");
        let mut c = TcpStream::connect((b_ip, 18080)).expect("connect");
        c.write_all(b"GET\n").expect("request");
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("answer and end of stream");
        (got, c.local_addr().expect("local address").port())
    });
    request_rx.recv().expect("request reached the server");
    // Hold the datapath thread while the server answers and closes.
    std::thread::scope(|sc| {
        let (held_tx, held_rx) = channel();
        let hold = sc.spawn(|| {
            dp.call(move |_| {
                held_tx.send(()).expect("held");
                closed_rx.recv_timeout(Duration::from_secs(2)).expect("server closed");
                std::thread::sleep(Duration::from_millis(10));
            })
            .expect("hold the datapath thread")
        });
        held_rx.recv().expect("datapath held");
        go_tx.send(()).expect("go");
        server.join().expect("server");
        hold.join().expect("hold");
    });
    let (got, client_port) = client.join().expect("client");
    assert_eq!(got, answer);
    std::thread::sleep(Duration::from_millis(100));
    capture_tx.send(()).expect("stop capture");
    let frames = capture.join().expect("capture");

    assert_eq!(dp.stats().expect("stats").tcp_fins_merged, 1);
    // From b to the client's port: the answer's one segment carries the FIN.
    let from_b: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|f| {
            f.len() >= 54
                && f[23] == 6
                && f[26..30] == b.ip.octets()
                && u16::from_be_bytes([f[36], f[37]]) == client_port
        })
        .collect();
    let payload = |f: &[u8]| {
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        f[34 + usize::from(f[46] >> 4) * 4..14 + total].to_vec()
    };
    let fins: Vec<_> = from_b.iter().filter(|f| f[47] & 0x01 != 0).collect();
    assert_eq!(fins.len(), 1, "one FIN from the server");
    assert!(!payload(fins[0]).is_empty(), "the FIN rides on the answer");
    let mut data: Vec<(u32, Vec<u8>)> = from_b
        .iter()
        .map(|f| (u32::from_be_bytes([f[38], f[39], f[40], f[41]]), payload(f)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    data.sort();
    data.dedup();
    let received: Vec<u8> = data.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(received, answer, "the answer, once, in order");
    // The client closed second: no TIME_WAIT on its side, the server's has it.
    let tw = |ns: &str| {
        let out = ns_output(ns, &["ss", "-Htan", "state", "time-wait"]).expect("ss");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(tw(&a.ns), 0, "the client did not close first");
    assert_eq!(tw(&b.ns), 1, "the server's close was the active one");
    drop(dp);
}
