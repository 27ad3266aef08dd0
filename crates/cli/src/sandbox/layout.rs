//! Names and addresses of everything the sandbox creates: a pure function of
//! the arguments, so `up`, `down`, `status` and the tests agree on them.
//!
//! ```text
//!  root netns                          {p}-ul (underlay netns)
//!  cluster: REST 127.0.0.1:8181        bridge {p}-ulbr (L2, MTU = underlay MTU)
//!           gRPC 198.18.64.254:8182 ── {p}-mgmt ══ {p}-mgmtp ─┤
//!                                                             ├─ {p}-ulp0 ══ {p}-u0 198.18.64.1  in {p}-h0
//!                                                             └─ {p}-ulp1 ══ {p}-u1 198.18.64.2  in {p}-h1
//!  --underlay-link pair (two hosts): {p}-u0 ══ {p}-u1 directly, no {p}-ul; the cluster's
//!  address on each root end {p}-mg{h} of a management veth ══ {p}-m{h} in {p}-h{h}
//!  {p}-h{h}: agent h; for each VM placed there the host end {p}-v{i} of the VM's veth
//!  {p}-vm{i}: eth0 10.0.{b+1}.{10+k}/24, default via 10.0.{b+1}.1 (router port on bridge b)
//! ```
//!
//! Invariants:
//! * Every namespace and every link name starts with `{prefix}-`, so
//!   [`Layout::cleanup_prefix`] finds all of them and nothing else (another
//!   sandbox with prefix `mnsx` is `mnsx-…`, not `mns-…`).
//! * Link names fit Linux's 15-byte limit: the prefix is at most
//!   [`MAX_PREFIX`] characters and indexes are below [`MAX_HOSTS`] /
//!   [`MAX_VMS`].
//! * VM `i` sits on host `i mod N` and bridge `(i / N) mod 2`: with two
//!   VMs per host, each bridge has a VM on every host (so same-bridge
//!   traffic crosses a tunnel) and each host has a VM on each bridge.
//! * Underlay addresses come from 198.18.0.0/15 (RFC 2544 benchmarking
//!   range) and exist only inside our namespaces plus the root end of the
//!   management link.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};

/// Longest accepted prefix (so `{p}-mgmtp` and `{p}-ulp{h}` fit in 15 bytes).
pub const MAX_PREFIX: usize = 6;
/// Hosts get underlay addresses .1 to .MAX_HOSTS; .254 is the cluster's.
pub const MAX_HOSTS: usize = 99;
/// VMs get .10 upwards on each of two bridges.
pub const MAX_VMS: usize = 400;
/// Default underlay subnet (a /24, given by its first three octets).
pub const UNDERLAY_NET: [u8; 3] = [198, 18, 64];
/// The cluster's (root namespace's) address on the underlay.
pub const MGMT_HOST: u8 = 254;
/// The demo's bridges: name, subnet (a /24 as its first three octets).
pub const BRIDGES: [(&str, [u8; 3]); 2] =
    [("sandbox-br1", [10, 0, 1]), ("sandbox-br2", [10, 0, 2])];
/// First VM address on each bridge (`.1` is the router port).
pub const FIRST_VM_HOST: u8 = 10;

/// Where one VM goes and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    pub index: usize,
    /// Namespace of the VM.
    pub ns: String,
    /// Index of its host.
    pub host: usize,
    /// Index into [`BRIDGES`].
    pub bridge: usize,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Host end of the VM's veth (in the host namespace): the interface
    /// name the bridge port is bound to.
    pub host_if: String,
    /// VM end, inside the VM namespace.
    pub vm_if: String,
}

/// Every name and address of one sandbox.
#[derive(Debug, Clone)]
pub struct Layout {
    pub prefix: String,
    pub hosts: usize,
    /// Underlay /24 (first three octets).
    pub underlay: [u8; 3],
    pub vms: Vec<VmPlan>,
}

impl Layout {
    /// Checks the prefix and sizes and places the VMs.
    pub fn new(prefix: &str, hosts: usize, vms_per_host: usize) -> Result<Layout> {
        check_prefix(prefix)?;
        if hosts == 0 || hosts > MAX_HOSTS {
            bail!("--hosts must be between 1 and {MAX_HOSTS}");
        }
        let total = hosts * vms_per_host;
        if total > MAX_VMS {
            bail!("at most {MAX_VMS} VMs (--hosts × --vms-per-host)");
        }
        let mut per_bridge = [0u8; 2];
        let vms = (0..total)
            .map(|i| {
                let host = i % hosts;
                let bridge = (i / hosts) % 2;
                let net = BRIDGES[bridge].1;
                let k = per_bridge[bridge];
                per_bridge[bridge] += 1;
                VmPlan {
                    index: i,
                    ns: format!("{prefix}-vm{i}"),
                    host,
                    bridge,
                    ip: Ipv4Addr::new(net[0], net[1], net[2], FIRST_VM_HOST + k),
                    gateway: Ipv4Addr::new(net[0], net[1], net[2], 1),
                    // Locally administered, unique per VM, readable in dumps.
                    mac: format!("02:0a:00:{:02x}:{:02x}:{:02x}", bridge + 1, i >> 8, i & 0xff),
                    host_if: format!("{prefix}-v{i}"),
                    vm_if: "eth0".to_owned(),
                }
            })
            .collect();
        Ok(Layout { prefix: prefix.to_owned(), hosts, underlay: UNDERLAY_NET, vms })
    }

    /// What every name starts with (`prefix` plus a dash).
    pub fn cleanup_prefix(prefix: &str) -> String {
        format!("{prefix}-")
    }

    pub fn host_ns(&self, h: usize) -> String {
        format!("{}-h{h}", self.prefix)
    }
    /// Underlay link of host `h`, inside its namespace.
    pub fn host_underlay_if(&self, h: usize) -> String {
        format!("{}-u{h}", self.prefix)
    }
    /// Bridge-side end of host `h`'s underlay veth, in the underlay netns.
    pub fn underlay_port(&self, h: usize) -> String {
        format!("{}-ulp{h}", self.prefix)
    }
    pub fn host_underlay_ip(&self, h: usize) -> Ipv4Addr {
        let n = self.underlay;
        Ipv4Addr::new(n[0], n[1], n[2], (h + 1) as u8)
    }
    pub fn underlay_ns(&self) -> String {
        format!("{}-ul", self.prefix)
    }
    pub fn underlay_bridge(&self) -> String {
        format!("{}-ulbr", self.prefix)
    }
    /// Root-namespace end of the management link into the underlay.
    pub fn mgmt_if(&self) -> String {
        format!("{}-mgmt", self.prefix)
    }
    pub fn mgmt_peer_if(&self) -> String {
        format!("{}-mgmtp", self.prefix)
    }
    /// With `--underlay-link pair`: host `h`'s own management link, its
    /// root-namespace end and its end inside the host.
    pub fn mgmt_root_if(&self, h: usize) -> String {
        format!("{}-mg{h}", self.prefix)
    }
    pub fn mgmt_host_if(&self, h: usize) -> String {
        format!("{}-m{h}", self.prefix)
    }
    pub fn mgmt_ip(&self) -> Ipv4Addr {
        let n = self.underlay;
        Ipv4Addr::new(n[0], n[1], n[2], MGMT_HOST)
    }

    /// Pairs of VMs to ping after setup, with what each pair proves: for
    /// each bridge the first two VMs on different hosts (L2 across a
    /// tunnel), the first VMs of the two bridges on different hosts and on
    /// the same host (routing), and the first VM to its gateway.
    pub fn check_pairs(&self) -> Vec<(usize, usize, &'static str)> {
        let mut pairs = Vec::new();
        if let Some(v) = self.vms.first() {
            pairs.push((v.index, usize::MAX, "VM → its router port"));
        }
        for b in 0..BRIDGES.len() {
            let on_b: Vec<&VmPlan> = self.vms.iter().filter(|v| v.bridge == b).collect();
            if let Some((a, c)) = first_pair(&on_b, |a, c| a.host != c.host) {
                pairs.push((a, c, "same bridge, across hosts"));
            } else if let Some((a, c)) = first_pair(&on_b, |_, _| true) {
                pairs.push((a, c, "same bridge, same host"));
            }
        }
        let b0: Vec<&VmPlan> = self.vms.iter().filter(|v| v.bridge == 0).collect();
        let b1: Vec<&VmPlan> = self.vms.iter().filter(|v| v.bridge == 1).collect();
        let cross = |pred: &dyn Fn(&VmPlan, &VmPlan) -> bool| {
            b0.iter().find_map(|a| b1.iter().find(|c| pred(a, c)).map(|c| (a.index, c.index)))
        };
        if let Some((a, c)) = cross(&|a, c| a.host != c.host) {
            pairs.push((a, c, "across the router, across hosts"));
        }
        if let Some((a, c)) = cross(&|a, c| a.host == c.host) {
            pairs.push((a, c, "across the router, same host"));
        }
        pairs
    }
}

fn first_pair(vms: &[&VmPlan], pred: impl Fn(&VmPlan, &VmPlan) -> bool) -> Option<(usize, usize)> {
    vms.iter()
        .enumerate()
        .find_map(|(i, a)| vms[i + 1..].iter().find(|c| pred(a, c)).map(|c| (a.index, c.index)))
}

/// A prefix is 1 to [`MAX_PREFIX`] lowercase letters or digits, starting
/// with a letter: it ends up in interface names and in the cleanup match.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        bail!("--prefix must be 1 to {MAX_PREFIX} lowercase letters or digits, starting with a letter (got {prefix:?})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hosts_two_vms_each_spread_bridges_over_hosts() {
        let l = Layout::new("mns", 2, 2).expect("layout");
        let placed: Vec<(usize, usize, String)> =
            l.vms.iter().map(|v| (v.host, v.bridge, v.ip.to_string())).collect();
        assert_eq!(
            placed,
            vec![
                (0, 0, "10.0.1.10".to_owned()),
                (1, 0, "10.0.1.11".to_owned()),
                (0, 1, "10.0.2.10".to_owned()),
                (1, 1, "10.0.2.11".to_owned()),
            ]
        );
        assert_eq!(l.vms[2].gateway, Ipv4Addr::new(10, 0, 2, 1));
        let kinds: Vec<&str> = l.check_pairs().iter().map(|p| p.2).collect();
        assert!(kinds.contains(&"same bridge, across hosts"));
        assert!(kinds.contains(&"across the router, across hosts"));
        assert!(kinds.contains(&"across the router, same host"));
    }

    #[test]
    fn names_fit_ifnamsiz_at_the_limits() {
        let l = Layout::new("abcdef", MAX_HOSTS, MAX_VMS / MAX_HOSTS).expect("layout");
        let last = l.vms.last().expect("vms");
        for name in [
            l.mgmt_peer_if(),
            l.underlay_port(MAX_HOSTS - 1),
            l.host_underlay_if(MAX_HOSTS - 1),
            l.underlay_bridge(),
            last.host_if.clone(),
        ] {
            assert!(name.len() <= 15, "{name} is too long");
            assert!(name.starts_with(&Layout::cleanup_prefix("abcdef")), "{name}");
        }
        let macs: std::collections::HashSet<&str> = l.vms.iter().map(|v| v.mac.as_str()).collect();
        assert_eq!(macs.len(), l.vms.len(), "MACs are unique");
    }

    #[test]
    fn bad_prefixes_and_sizes_are_rejected() {
        for p in ["", "Mns", "1ns", "toolong1", "m-s"] {
            assert!(Layout::new(p, 2, 1).is_err(), "{p:?} accepted");
        }
        assert!(Layout::new("mns", 0, 1).is_err());
        assert!(Layout::new("mns", MAX_HOSTS + 1, 1).is_err());
    }

    #[test]
    fn one_vm_per_host_keeps_one_bridge_across_hosts() {
        let l = Layout::new("mns", 2, 1).expect("layout");
        assert!(l.vms.iter().all(|v| v.bridge == 0));
        let pairs = l.check_pairs();
        assert_eq!(pairs[1], (0, 1, "same bridge, across hosts"));
        assert!(!pairs.iter().any(|p| p.2.contains("router,")));
    }
}
