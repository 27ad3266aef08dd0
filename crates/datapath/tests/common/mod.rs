//! Helpers shared by the datapath's namespace tests (`netns`, `ebpf_netns`).

use std::str::FromStr;

use midonet_datapath::MacAddr;
use midonet_testkit::{ns_exec, Lab, Vm, VmSpec};

/// A knob from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The VM interface's MAC address.
pub fn mac(vm: &Vm) -> MacAddr {
    MacAddr::from_str(&vm.mac).expect("mac from sysfs")
}

/// A VM `name` on `host_ns` (host end `<name>h`) with IPv6 off on both
/// sides: no router solicitations or MLD in the counters.
pub fn vm(lab: &mut Lab, name: &str, host_ns: &str, ip: &str, mac: &str, mtu: u32) -> Vm {
    let h = format!("{name}h");
    let v = lab
        .add_vm(&VmSpec {
            name,
            host_ns,
            host_if: &h,
            vm_if: name,
            ip_cidr: ip,
            mac: Some(mac),
            mtu: Some(mtu),
            gateway: None,
        })
        .expect("vm");
    ns_exec(&v.ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).expect("sysctl");
    ns_exec(host_ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).expect("sysctl");
    v
}
