//! One contract for every [`Datapath`] provider (provider traits with
//! in-tree fakes share one test). The control operations must behave
//! the same on the dummy and on the userspace provider; the userspace run
//! needs root (real interfaces in a `mdp…` namespace) and fails without it
//! unless `MIDONET_SKIP_NETNS=1` skips it on purpose.

use std::net::Ipv4Addr;

use midonet_datapath::dummy::DummyDatapath;
use midonet_datapath::userspace::{UserspaceConfig, UserspaceDatapath};
use midonet_datapath::{
    Action, Actions, Datapath, DpError, FlowInstall, FlowKey, FlowMask, InPort, MacAddr,
};
use midonet_flow::FieldId;
use midonet_testkit::{skip, Lab, VmSpec};

fn flow(port: u32, dst: MacAddr, tag: u64) -> (FlowKey, FlowInstall) {
    let key = FlowKey {
        in_port: InPort::Port(port),
        eth_dst: dst,
        ethertype: 0x0800,
        ..FlowKey::default()
    };
    let mut mask = FlowMask::empty();
    mask.mark(FieldId::InPort);
    mask.mark(FieldId::EthDst);
    let mut actions = Actions::new();
    actions.push(Action::Output(port));
    (key, FlowInstall { mask, actions, tags: vec![tag], idle_timeout_ms: 0 })
}

fn contract(dp: &dyn Datapath, if1: &str, if2: &str) {
    let p1 = dp.add_vport(if1).expect("add vport 1");
    let p2 = dp.add_vport(if2).expect("add vport 2");
    assert_ne!(p1, p2);
    assert!(matches!(dp.add_vport(if1), Err(DpError::PortExists(_))));
    assert!(matches!(dp.bind_tunnel_key(7, 999), Err(DpError::NoSuchPort(999))));
    dp.bind_tunnel_key(7, p2).expect("bind");
    dp.unbind_tunnel_key(7).expect("unbind");
    // The tunnel peer set is replaced as a whole, any number of times.
    dp.set_tunnel_peers(&[Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)])
        .expect("peers");
    dp.set_tunnel_peers(&[Ipv4Addr::new(198, 18, 0, 2)]).expect("peers again");
    dp.set_offload_peers(&[Ipv4Addr::new(198, 18, 0, 2)]).expect("offload peers");
    dp.set_offload_peers(&[]).expect("no offload peer");

    let (k1, f1) = flow(p1, MacAddr([2, 0, 0, 0, 0, 1]), 100);
    let (k2, f2) = flow(p2, MacAddr([2, 0, 0, 0, 0, 2]), 200);
    let (k3, f3) = flow(p2, MacAddr([2, 0, 0, 0, 0, 3]), 200);
    dp.install_flow(k1, f1).expect("install 1");
    dp.install_flow(k2, f2).expect("install 2");
    dp.install_flow(k3, f3).expect("install 3");
    let flows = dp.dump_flows().expect("dump");
    assert_eq!(flows.len(), 3);
    assert!(flows.iter().any(|f| f.tags == vec![100] && f.masked_key.in_port == InPort::Port(p1)));
    assert_eq!(dp.stats().expect("stats").table.flows, 3);
    assert_eq!(dp.invalidate_tags(vec![200, 300]).expect("invalidate"), 2);
    assert_eq!(dp.dump_flows().expect("dump").len(), 1);
    assert_eq!(dp.flush_flows().expect("flush"), 1);
    assert_eq!(dp.stats().expect("stats").table.flows, 0);

    // Packet-out to a port; counted as tx there.
    let frame = midonet_datapath::testing::udp_frame(
        MacAddr([2, 0, 0, 0, 0, 9]),
        MacAddr([2, 0, 0, 0, 0, 8]),
        Ipv4Addr::new(10, 0, 0, 9),
        Ipv4Addr::new(10, 0, 0, 8),
        1,
        2,
        b"contract",
    );
    let mut out = Actions::new();
    out.push(Action::Output(p2));
    dp.execute(frame.clone(), out).expect("execute");
    let st = dp.stats().expect("stats");
    assert_eq!(st.port(p2).map(|c| (c.tx_packets, c.tx_bytes)), Some((1, frame.len() as u64)));

    dp.remove_vport(p1).expect("remove");
    assert!(matches!(dp.remove_vport(p1), Err(DpError::NoSuchPort(_))));
    let st = dp.stats().expect("stats");
    assert!(st.port(p1).is_none() && st.port(p2).is_some());
    // The freed name can be added again.
    dp.add_vport(if1).expect("re-add");
}

#[test]
fn dummy_provider_meets_the_contract() {
    contract(&DummyDatapath::new(None), "vm1", "vm2");
}

#[test]
fn userspace_provider_meets_the_contract() {
    if !skip::netns_or_skip("datapath::userspace_provider_meets_the_contract", &[]) {
        return;
    }
    let mut lab = Lab::new("mdp").expect("lab");
    let h = lab.add_host("c").expect("host");
    let v1 = lab
        .add_vm(&VmSpec {
            name: "x",
            host_ns: &h,
            host_if: "xh",
            vm_if: "x",
            ip_cidr: "198.19.73.1/24",
            mac: None,
            mtu: None,
            gateway: None,
        })
        .expect("vm x");
    let v2 = lab
        .add_vm(&VmSpec {
            name: "y",
            host_ns: &h,
            host_if: "yh",
            vm_if: "y",
            ip_cidr: "198.19.73.2/24",
            mac: None,
            mtu: None,
            gateway: None,
        })
        .expect("vm y");
    let dp = UserspaceDatapath::start(
        UserspaceConfig {
            name: "mdp-contract".into(),
            netns: Some(h.clone()),
            ..UserspaceConfig::default()
        },
        None,
    )
    .expect("start");
    contract(&dp, &v1.host_if, &v2.host_if);
    // An interface that does not exist in the datapath's namespace.
    assert!(matches!(dp.add_vport("mdpnosuch0"), Err(DpError::Io { .. })));
}

#[test]
fn ebpf_provider_meets_the_contract() {
    use midonet_datapath::ebpf::{EbpfConfig, EbpfDatapath};
    if !midonet_testkit::skip::netns_or_skip("datapath::ebpf_provider_meets_the_contract", &[]) {
        return;
    }
    if let Err(e) = midonet_datapath::ebpf::available() {
        panic!("the ebpf provider is not available: {e}");
    }
    let mut lab = Lab::new("mdp").expect("lab");
    let h = lab.add_host("e").expect("host");
    let mut vms = Vec::new();
    for (name, ip) in [("x", "198.19.74.1/24"), ("y", "198.19.74.2/24")] {
        let host_if = format!("{name}h");
        vms.push(
            lab.add_vm(&VmSpec {
                name,
                host_ns: &h,
                host_if: &host_if,
                vm_if: name,
                ip_cidr: ip,
                mac: None,
                mtu: None,
                gateway: None,
            })
            .expect("vm"),
        );
    }
    let cfg = EbpfConfig {
        name: format!("mdp-contract-{}", std::process::id()),
        netns: Some(h.clone()),
        ..EbpfConfig::default()
    };
    let dp = EbpfDatapath::start(cfg, None).expect("start");
    contract(&dp, &vms[0].host_if, &vms[1].host_if);
    assert!(matches!(dp.add_vport("mdpnosuch0"), Err(DpError::Io { .. })));
    dp.destroy();
}
