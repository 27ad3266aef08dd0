//! The netns harness on a real kernel: lab names, persisting a lab, and
//! two hosts and a VM joined by an underlay. Needs root, `ip` and `ping`;
//! fails without them unless `MIDONET_SKIP_NETNS=1` skips it on purpose.

use std::net::Ipv4Addr;

use midonet_testkit::{cleanup_prefix, ip, link_index, list_netns, ns_exec, skip, Lab, VmSpec};

#[test]
fn long_names_are_rejected() {
    if !skip::netns_or_skip("testkit::long_names_are_rejected", &[]) {
        return;
    }
    let lab = Lab::new("mdt").expect("lab");
    assert!(lab.name("0123456789ab").is_err());
    assert_eq!(lab.name("x").expect("short").len(), lab.prefix().len() + 1);
}

/// Waits (up to 5 s) for `pid` to be listed in `ns`: `ip netns exec`
/// enters the namespace after the fork that gave the pid, so under load
/// the pid shows up there a moment later.
fn wait_in_netns(ns: &str, pid: u32) {
    let t0 = std::time::Instant::now();
    while !ip(&["netns", "pids", ns]).expect("pids").contains(&pid.to_string()) {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "pid {pid} never entered {ns}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn persisted_lab_survives_drop_until_cleanup_prefix() {
    if !skip::netns_or_skip("testkit::persisted_lab_survives_drop_until_cleanup_prefix", &[]) {
        return;
    }
    let mut lab = Lab::new("mdt").expect("lab");
    let ns = lab.add_host("p").expect("ns");
    let pid = lab.spawn(&ns, &["sleep", "30"]).expect("spawn");
    let prefix = lab.persist();
    assert!(list_netns().expect("list").contains(&ns));
    wait_in_netns(&ns, pid);
    assert!(Lab::with_prefix(&prefix).is_err(), "prefix is taken");
    assert_eq!(cleanup_prefix(&prefix).expect("cleanup"), 1);
    assert!(!list_netns().expect("list").contains(&ns));
}

#[test]
fn two_vms_on_one_underlay_ping_and_cleanup() {
    if !skip::netns_or_skip("testkit::two_vms_on_one_underlay_ping_and_cleanup", &["ping"]) {
        return;
    }
    let mut lab = Lab::new("mdt").expect("lab");
    let prefix = lab.prefix().to_owned();
    let h1 = lab.add_host("h1").expect("h1");
    let h2 = lab.add_host("h2").expect("h2");
    lab.add_underlay(&[(&h1, "u1", "198.18.77.1/24"), (&h2, "u2", "198.18.77.2/24")], 1500)
        .expect("underlay");
    let out = ns_exec(&h1, &["ping", "-c", "1", "-W", "2", "198.18.77.2"]).expect("ping");
    assert!(out.contains("1 received"), "{out}");
    lab.add_underlay_pair((&h1, "d1", "198.18.78.1/24"), (&h2, "d2", "198.18.78.2/24"), 9000)
        .expect("direct pair");
    let out = ns_exec(&h2, &["ping", "-c", "1", "-W", "2", "198.18.78.1"]).expect("ping pair");
    assert!(out.contains("1 received"), "{out}");
    let vm = lab
        .add_vm(&VmSpec {
            name: "v1",
            host_ns: &h1,
            host_if: "v1h",
            vm_if: "v1",
            ip_cidr: "198.19.77.1/24",
            mac: Some("02:00:00:00:77:01"),
            mtu: Some(1400),
            gateway: None,
        })
        .expect("vm");
    assert_eq!(vm.mac, "02:00:00:00:77:01");
    assert_eq!(vm.ip, Ipv4Addr::new(198, 19, 77, 1));
    assert!(link_index(&h1, &vm.host_if).expect("ifindex") > 0);
    let pid = lab.spawn(&vm.ns, &["sleep", "30"]).expect("spawn");
    wait_in_netns(&vm.ns, pid);
    drop(lab);
    assert!(list_netns().expect("list").iter().all(|n| !n.starts_with(&prefix)));
    assert_eq!(cleanup_prefix(&prefix).expect("cleanup"), 0);
}
