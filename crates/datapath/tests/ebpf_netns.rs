//! The `ebpf` provider on real traffic: two host namespaces joined by an
//! underlay veth, a VM namespace on each, VXLAN through kernel vxlan
//! devices in external mode. The handler is the static MAC table of
//! `midonet_datapath::testing` standing in for the simulation.
//!
//! Checks: the first packet of each direction is simulated and re-injected
//! (no loss), later ones stay in the kernel (egress host delivers by VNI);
//! TCP arrives; an agent restart (the provider dropped and started again)
//! keeps an established ping stream running with no loss, and the new
//! instance adopts flows, ports and tunnel keys. Figures are printed
//! (`MDP_IPERF_SECS`, `MDP_UDP_SECS` to measure longer).
//!
//! Needs root; fails saying so unless MIDONET_SKIP_NETNS=1.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use midonet_datapath::ebpf::{EbpfConfig, EbpfDatapath};
use midonet_datapath::testing::MacTableHandler;
use midonet_datapath::{Action, Datapath};
use midonet_testkit::{add_neigh, have_program, ns_output, wait_listening, Lab, Vm};

mod common;
use common::{env_u64, mac, vm};

fn runnable() -> bool {
    if !midonet_testkit::skip::netns_or_skip("datapath::ebpf_netns", &["ping"]) {
        return false;
    }
    if let Err(e) = midonet_datapath::ebpf::available() {
        panic!("the ebpf provider is not available: {e}");
    }
    true
}

/// `ping -c n -i interval`: (received, avg rtt ms).
fn ping(from: &Vm, to: Ipv4Addr, n: u64, interval: &str) -> (u64, f64) {
    let (count, dst) = (n.to_string(), to.to_string());
    let out = ns_output(&from.ns, &["ping", "-c", &count, "-i", interval, "-W", "1", &dst])
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rtt = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    (received, rtt)
}

/// Destroys its datapath (links, devices, pins) when dropped.
struct Host {
    dp: Option<EbpfDatapath>,
}

impl Host {
    fn dp(&self) -> &EbpfDatapath {
        self.dp.as_ref().expect("datapath")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(dp) = self.dp.take() {
            dp.destroy();
        }
    }
}

fn cfg(name: &str, ns: &str, ip: Ipv4Addr) -> EbpfConfig {
    EbpfConfig {
        name: format!("{name}-{}", std::process::id()),
        netns: Some(ns.into()),
        underlay_ip: Some(ip),
        ..EbpfConfig::default()
    }
}

/// Two kernel flows no packet uses, with a 150 ms and a 60 s idle timeout:
/// an expiry round after 400 ms removes the first only (it asks the kernel
/// about a flow only once its timeout has passed since its last known use).
fn idle_flows_expire_and_busy_ones_stay(dp: &EbpfDatapath) {
    use midonet_datapath::{FlowInstall, FlowKey, FlowMask, InPort};
    use midonet_flow::FieldId;
    let mut mask = FlowMask::empty();
    mask.mark(FieldId::InPort);
    mask.mark(FieldId::Ipv4Dst);
    let install = |dst: [u8; 4], idle_timeout_ms| {
        let key = FlowKey {
            in_port: InPort::Port(1),
            ethertype: 0x0800,
            ipv4_dst: Ipv4Addr::from(dst),
            ..FlowKey::default()
        };
        let flow = FlowInstall { mask, actions: Default::default(), tags: vec![], idle_timeout_ms };
        dp.install_flow(key, flow).expect("install")
    };
    let before = dp.dump_flows().expect("dump").len();
    let (short, long) = (install([203, 0, 113, 7], 150), install([203, 0, 113, 8], 60_000));
    std::thread::sleep(Duration::from_millis(400));
    dp.expire().expect("expire");
    let ids: Vec<_> = dp.dump_flows().expect("dump").iter().map(|f| f.id).collect();
    assert!(!ids.contains(&short), "the 150 ms flow expired: {ids:?}");
    assert!(ids.contains(&long), "the 60 s flow stays: {ids:?}");
    assert_eq!(ids.len(), before + 1);
}

#[test]
fn vxlan_between_two_hosts_and_an_agent_restart() {
    if !runnable() {
        return;
    }
    let mut lab = Lab::new("mdp").expect("lab");
    let h1 = lab.add_host("e1").expect("h1");
    let h2 = lab.add_host("e2").expect("h2");
    let (u1, u2) = (Ipv4Addr::new(198, 18, 75, 1), Ipv4Addr::new(198, 18, 75, 2));
    lab.add_underlay_pair((&h1, "u1", "198.18.75.1/24"), (&h2, "u2", "198.18.75.2/24"), 1500)
        .expect("underlay");
    let a = vm(&mut lab, "a", &h1, "198.19.75.1/24", "02:00:00:00:75:01", 1450);
    let b = vm(&mut lab, "b", &h2, "198.19.75.2/24", "02:00:00:00:75:02", 1450);
    add_neigh(&a.ns, &a.vm_if, b.ip, &b.mac).expect("neigh");
    add_neigh(&b.ns, &b.vm_if, a.ip, &a.mac).expect("neigh");

    let (key_a, key_b) = (0x201, 0x202);
    let handler1 =
        || MacTableHandler::new().route(mac(&b), &[Action::Tunnel { dst: u2, key: key_b }]);
    let start1 = || EbpfDatapath::start(cfg("mdp-e1", &h1, u1), None).expect("dp1");
    let dp1 = start1();
    let dp2 = Host { dp: Some(EbpfDatapath::start(cfg("mdp-e2", &h2, u2), None).expect("dp2")) };
    let pa = dp1.add_vport(&a.host_if).expect("vport a");
    let pb = dp2.dp().add_vport(&b.host_if).expect("vport b");
    dp1.bind_tunnel_key(key_a, pa).expect("bind a");
    dp2.dp().bind_tunnel_key(key_b, pb).expect("bind b");
    let (hd1, hd2) = (
        handler1(),
        MacTableHandler::new().route(mac(&a), &[Action::Tunnel { dst: u1, key: key_a }]),
    );
    let (c1, c2) = (hd1.calls.clone(), hd2.calls.clone());
    dp1.set_handler(Some(Box::new(hd1))).expect("handler 1");
    dp2.dp().set_handler(Some(Box::new(hd2))).expect("handler 2");
    // The peers, as the agent pushes them: the programs learn the way to
    // each and encapsulate for it themselves.
    dp1.set_tunnel_peers(&[u2]).expect("peers 1");
    dp2.dp().set_tunnel_peers(&[u1]).expect("peers 2");
    let mut dp1 = Host { dp: Some(dp1) };

    // The first echo request and reply are upcalled, simulated and
    // re-injected: none is lost.
    let (got, rtt) = ping(&a, b.ip, env_u64("MDP_PING_N", 5), "0.01");
    eprintln!("ebpf vxlan: ping rtt avg {rtt:.3} ms");
    assert_eq!(got, env_u64("MDP_PING_N", 5), "every ping answered, the first included");
    assert_eq!((c1.load(Ordering::Relaxed), c2.load(Ordering::Relaxed)), (1, 1));
    let s1 = dp1.dp().stats().expect("stats");
    let kernel_hits = s1.table.megaflow_hits + s1.table.emc_hits;
    assert!(kernel_hits >= 4, "later packets hit in the kernel: {:?}", s1.table);
    assert!(s1.tunnel.tx_packets >= 4 && s1.tunnel.rx_packets >= 4, "{:?}", s1.tunnel);
    // The misses were timed: kernel → agent, handler, install, execute.
    let t = s1.miss_timing;
    assert!(t.misses >= 1 && t.ring_wait_ns > 0 && t.install_ns > 0 && t.execute_ns > 0, "{t:?}");
    assert!(
        t.ring_wait_ns / t.misses < 1_000_000_000,
        "a kernel timestamp on the agent's clock: {t:?}"
    );
    assert_eq!(s1.port(pa).map(|c| c.tx_packets), Some(s1.tunnel.rx_packets));
    // The replies were decapsulated at the underlay's ingress (mdp_underlay),
    // not by the vxlan device: single datagrams, IPv4 inside, a bound VNI.
    assert_eq!(s1.tunnel_decapsulated, s1.tunnel.rx_packets, "{s1:?}");
    // And the requests encapsulated by the programs, every one: the first
    // (re-injected after its miss) and the flow's hits.
    assert_eq!(s1.tunnel_encapsulated, s1.tunnel.tx_packets, "{s1:?}");
    let flows = dp1.dp().dump_flows().expect("dump");
    assert_eq!(flows.len(), 1);
    idle_flows_expire_and_busy_ones_stay(dp2.dp());
    assert!(flows[0].packets >= 4, "kernel counters reach the dump: {:?}", flows[0]);

    if have_program("iperf3") {
        let server =
            lab.spawn_owned(&b.ns, &["iperf3", "-s", "-1", "-p", "5301"]).expect("iperf3 server");
        assert!(wait_listening(&b.ns, 5301, Duration::from_secs(10)), "iperf3 server");
        let t = env_u64("MDP_IPERF_SECS", 2).to_string();
        let dst = b.ip.to_string();
        let out = ns_output(&a.ns, &["iperf3", "-c", &dst, "-p", "5301", "-t", &t, "-J"])
            .expect("iperf3 client");
        let _ = server.wait_output(Duration::from_secs(5));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 json");
        let recv = &j["end"]["sum_received"];
        let bytes = recv["bytes"].as_f64().unwrap_or(0.0);
        let gbps = recv["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9;
        eprintln!("ebpf vxlan: iperf3 tcp {gbps:.2} Gbit/s ({bytes:.0} bytes)");
        assert!(bytes > 1e6, "TCP data did not arrive");
        assert_eq!(c1.load(Ordering::Relaxed), 1, "TCP rides the same megaflow");
        let t = dp1.dp().stats().expect("stats").table;
        assert!(t.emc_hits > 1000, "and, after its handshake, the exact-match cache: {t:?}");
        // Sent: the stream's GSO frames too were encapsulated by the
        // programs (the stack segments them as the device's own, if needed).
        let s1 = dp1.dp().stats().expect("stats");
        assert!(
            s1.tunnel_encapsulated * 100 >= s1.tunnel.tx_packets * 99,
            "{:?} of {:?}",
            s1.tunnel_encapsulated,
            s1.tunnel
        );
        // Received: its GSO aggregates took the vxlan device (mdp_underlay
        // leaves them to it), its single segments mdp_underlay: both arrive.
        let s2 = dp2.dp().stats().expect("stats");
        assert!(
            s2.tunnel_decapsulated > 0 && s2.tunnel.rx_packets > s2.tunnel_decapsulated,
            "{:?} of {:?}",
            s2.tunnel_decapsulated,
            s2.tunnel
        );
    } else {
        panic!("iperf3 is not installed (apt package iperf3)");
    }

    // Agent restart under an established ping stream: the provider goes
    // away (the kernel keeps forwarding), a new one adopts the state.
    let n = 150u64;
    let pinger = {
        let (ns, dst) = (a.ns.clone(), b.ip.to_string());
        std::thread::spawn(move || {
            let out =
                ns_output(&ns, &["ping", "-c", &n.to_string(), "-i", "0.01", "-W", "1", &dst])
                    .expect("ping");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // Not destroyed: dropping an EbpfDatapath only stops its thread.
    drop(dp1.dp.take());
    std::thread::sleep(Duration::from_millis(300));
    let again = start1();
    assert!(again.adopted(), "the new instance found the pinned state");
    assert_eq!(again.dump_flows().expect("dump").len(), 1, "the flow was adopted");
    assert_eq!(again.add_vport(&a.host_if).expect("re-add a"), pa, "same port number");
    again.bind_tunnel_key(key_a, pa).expect("bind a");
    again.set_handler(Some(Box::new(handler1()))).expect("handler");
    again.set_tunnel_peers(&[u2]).expect("peers");
    dp1.dp = Some(again);
    let text = pinger.join().expect("pinger");
    let line = text.lines().find(|l| l.contains("received")).unwrap_or_default().to_owned();
    eprintln!("ebpf vxlan: ping across the restart: {line}");
    assert!(line.contains(&format!("{n} received")), "packets lost across the restart: {line}");
    // The adopted flow still invalidates by tag.
    assert_eq!(
        dp1.dp().invalidate_tags(vec![midonet_datapath::testing::mac_tag(mac(&b))]).expect("inv"),
        1
    );
    let before = dp1.dp().stats().expect("stats").tunnel_decapsulated;
    let (got, _) = ping(&a, b.ip, 3, "0.01");
    assert_eq!(got, 3, "re-simulated after the invalidation");
    let after = dp1.dp().stats().expect("stats").tunnel_decapsulated;
    assert!(after >= before + 3, "the new instance decapsulates too: {before} -> {after}");
    let s1 = dp1.dp().stats().expect("stats");
    assert!(s1.tunnel_encapsulated >= 3, "and encapsulates: {s1:?}");
    drop(dp1);
    drop(dp2);
}
