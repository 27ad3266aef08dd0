//! The sandbox's namespaces and links (see [`super::layout`] for the
//! picture), built with `midonet-netns`'s `ip` helpers.
//!
//! Not a `midonet_netns::Lab`: a lab deletes what it built when it is dropped and
//! adds a random tag to its names, while the sandbox must outlive the
//! `up` process and keep fixed names a person can type
//! (`ip netns exec mns-vm0 …`). Removal is by prefix instead
//! ([`remove_all`]), which also covers a crashed run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use midonet_netns::{cleanup_prefix, ip, ns_exec};

use super::layout::{Layout, VmPlan};

/// Checksum offload on the VM links, as a VM with a virtio NIC has it. The
/// agent's datapath carries GSO frames end to end (see the datapath crate
/// docs), so the VM's TCP sends 64 KB frames; their size is capped below
/// the underlay MTU so one frame fits one VXLAN datagram.
#[derive(Debug, Clone, Copy)]
pub struct NetOpts {
    pub underlay_mtu: u32,
    pub vm_mtu: u32,
    /// `gso_max_size` of the VM links (bytes); 0 = kernel default.
    pub vm_gso_max: u32,
    pub link: UnderlayLink,
}

/// How the hosts' underlay links meet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UnderlayLink {
    /// One bridge, in namespace `{p}-ul`, joins every host and the
    /// management link from the root namespace.
    #[default]
    Bridge,
    /// Two hosts, one veth pair between them and nothing else on the
    /// tunnels' way, as the peers in `../shared/peers` wire their two
    /// hypervisors; each host gets its own management link. For
    /// benchmarks: a bridge on the underlay costs every tunnelled packet a
    /// bridge and a veth more than the peers pay.
    Pair,
}

/// One namespace per host and the links between them and to the root
/// namespace, as `o.link` says.
pub fn build_underlay(l: &Layout, o: &NetOpts) -> Result<()> {
    match o.link {
        UnderlayLink::Bridge => build_bridged(l, o),
        UnderlayLink::Pair => build_pair(l, o),
    }
}

/// Underlay namespace and bridge, the management link from the root
/// namespace, and one namespace per host joined to the bridge.
fn build_bridged(l: &Layout, o: &NetOpts) -> Result<()> {
    let ul = l.underlay_ns();
    let br = l.underlay_bridge();
    let mtu = o.underlay_mtu.to_string();
    add_ns(&ul)?;
    ns_exec(
        &ul,
        &[
            "ip",
            "link",
            "add",
            &br,
            "mtu",
            &mtu,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ],
    )?;
    ns_exec(&ul, &["ip", "link", "set", &br, "up"])?;

    // Management link: the cluster (root namespace) is reachable from the
    // host namespaces at Layout::mgmt_ip.
    let (m, mp) = (l.mgmt_if(), l.mgmt_peer_if());
    ip(&[
        "link", "add", &m, "mtu", &mtu, "type", "veth", "peer", "name", &mp, "netns", &ul, "mtu",
        &mtu,
    ])
    .context("creating the management link")?;
    ns_exec(&ul, &["ip", "link", "set", &mp, "master", &br])?;
    ns_exec(&ul, &["ip", "link", "set", &mp, "up"])?;
    let mgmt_cidr = format!("{}/24", l.mgmt_ip());
    ip(&["addr", "add", &mgmt_cidr, "dev", &m])?;
    ip(&["link", "set", &m, "up"])?;

    for h in 0..l.hosts {
        let ns = l.host_ns(h);
        add_ns(&ns)?;
        let (hif, bif) = (l.host_underlay_if(h), l.underlay_port(h));
        ip(&[
            "link", "add", &hif, "netns", &ns, "mtu", &mtu, "type", "veth", "peer", "name", &bif,
            "netns", &ul, "mtu", &mtu,
        ])?;
        ns_exec(&ul, &["ip", "link", "set", &bif, "master", &br])?;
        ns_exec(&ul, &["ip", "link", "set", &bif, "up"])?;
        let cidr = format!("{}/24", l.host_underlay_ip(h));
        ns_exec(&ns, &["ip", "addr", "add", &cidr, "dev", &hif])?;
        ns_exec(&ns, &["ip", "link", "set", &hif, "up"])?;
    }
    Ok(())
}

/// Two host namespaces joined by one veth pair, and a management link from
/// each into the root namespace: the root end of each carries the
/// cluster's address (one address on two links is fine for Linux), and a
/// host route on each side sends the management traffic down its own link.
fn build_pair(l: &Layout, o: &NetOpts) -> Result<()> {
    if l.hosts != 2 {
        bail!("--underlay-link pair joins exactly two hosts (got --hosts {})", l.hosts);
    }
    let mtu = o.underlay_mtu.to_string();
    let (h0, h1) = (l.host_ns(0), l.host_ns(1));
    add_ns(&h0)?;
    add_ns(&h1)?;
    let (u0, u1) = (l.host_underlay_if(0), l.host_underlay_if(1));
    ip(&[
        "link", "add", &u0, "netns", &h0, "mtu", &mtu, "type", "veth", "peer", "name", &u1,
        "netns", &h1, "mtu", &mtu,
    ])
    .context("creating the underlay veth pair")?;
    let mgmt = l.mgmt_ip().to_string();
    for h in 0..2 {
        let ns = l.host_ns(h);
        let (uif, addr) = (l.host_underlay_if(h), l.host_underlay_ip(h).to_string());
        ns_exec(&ns, &["ip", "addr", "add", &format!("{addr}/24"), "dev", &uif])?;
        ns_exec(&ns, &["ip", "link", "set", &uif, "up"])?;
        let (rif, hif) = (l.mgmt_root_if(h), l.mgmt_host_if(h));
        ip(&[
            "link", "add", &rif, "mtu", &mtu, "type", "veth", "peer", "name", &hif, "netns", &ns,
            "mtu", &mtu,
        ])
        .with_context(|| format!("creating the management link of host {h}"))?;
        ip(&["addr", "add", &format!("{mgmt}/32"), "dev", &rif])?;
        ip(&["link", "set", &rif, "up"])?;
        ip(&["route", "add", &format!("{addr}/32"), "dev", &rif])?;
        ns_exec(&ns, &["ip", "link", "set", &hif, "up"])?;
        ns_exec(&ns, &["ip", "route", "add", &format!("{mgmt}/32"), "dev", &hif, "src", &addr])?;
    }
    Ok(())
}

/// A VM namespace with `eth0` whose peer (`host_if`) sits in the host
/// namespace, addressed, with the router port as default gateway.
pub fn build_vm(l: &Layout, vm: &VmPlan, o: &NetOpts) -> Result<()> {
    let host_ns = l.host_ns(vm.host);
    add_ns(&vm.ns)?;
    let mtu = o.vm_mtu.to_string();
    ip(&[
        "link",
        "add",
        &vm.vm_if,
        "netns",
        &vm.ns,
        "mtu",
        &mtu,
        "address",
        &vm.mac,
        "type",
        "veth",
        "peer",
        "name",
        &vm.host_if,
        "netns",
        &host_ns,
        "mtu",
        &mtu,
    ])
    .with_context(|| format!("creating the veth of {}", vm.ns))?;
    if o.vm_gso_max > 0 {
        let g = o.vm_gso_max.to_string();
        // Best effort: an old iproute2 without gso_max_size still works,
        // only with bigger frames than the underlay MTU.
        let _ = ns_exec(&vm.ns, &["ip", "link", "set", &vm.vm_if, "gso_max_size", &g]);
        let _ = ns_exec(&host_ns, &["ip", "link", "set", &vm.host_if, "gso_max_size", &g]);
    }
    let cidr = format!("{}/24", vm.ip);
    ns_exec(&vm.ns, &["ip", "addr", "add", &cidr, "dev", &vm.vm_if])?;
    ns_exec(&vm.ns, &["ip", "link", "set", &vm.vm_if, "up"])?;
    ns_exec(&host_ns, &["ip", "link", "set", &vm.host_if, "up"])?;
    let gw = vm.gateway.to_string();
    ns_exec(&vm.ns, &["ip", "route", "add", "default", "via", &gw, "dev", &vm.vm_if])?;
    Ok(())
}

fn add_ns(ns: &str) -> Result<()> {
    ip(&["netns", "add", ns]).with_context(|| format!("creating namespace {ns}"))?;
    ns_exec(ns, &["ip", "link", "set", "lo", "up"])?;
    // No IPv6: router solicitations and DAD would be the first packets the
    // agents see, and the demo is IPv4 only.
    let _ = ns_exec(
        ns,
        &[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    );
    Ok(())
}

/// Deletes every namespace and root-namespace link whose name starts with
/// `{prefix}-` (killing what still runs inside those namespaces, which can
/// only be ours). Returns how many namespaces were removed.
pub fn remove_all(prefix: &str) -> Result<usize> {
    let p = Layout::cleanup_prefix(prefix);
    let n = cleanup_prefix(&p)?;
    // The kernel tears a deleted namespace down asynchronously: the root
    // end of the management veth lingers for a moment, and a new `up`
    // creating the same name at once would fail. Wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !root_links(&p)?.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(n)
}

/// Links in the root namespace whose name starts with `p`.
pub fn root_links(p: &str) -> Result<Vec<String>> {
    let out = ip(&["-o", "link", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .filter(|n| n.starts_with(p))
        .collect())
}

/// Namespaces that currently exist with the sandbox's prefix.
pub fn existing_namespaces(prefix: &str) -> Result<Vec<String>> {
    let p = Layout::cleanup_prefix(prefix);
    Ok(midonet_netns::list_netns()?.into_iter().filter(|n| n.starts_with(&p)).collect())
}
