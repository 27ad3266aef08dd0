//! midonet-netns: network namespaces, the links between them and the
//! processes inside them. Product code: `midonet sandbox` builds its hosts
//! and VMs with it at run time. The system tests use it too, through
//! `midonet-testkit`, which adds what only tests need (skip recording).
//!
//! A [`Lab`] owns everything it creates: "host" namespaces (stand-ins for
//! hypervisors), "VM" namespaces (a guest with one veth whose other end sits
//! in a host namespace), an underlay joining host namespaces (a bridge in a
//! dedicated underlay namespace, one veth per host), and long-running
//! processes spawned inside namespaces. Dropping the lab kills the processes
//! (by PID) and deletes the namespaces, which deletes every link in them.
//!
//! Names: every namespace and link name is `prefix + suffix`, where the
//! prefix is the caller's base (e.g. `mdp`) plus two characters unique to the
//! lab (process id and a per-process counter), so parallel tests never
//! collide. Linux limits interface names to 15 bytes; [`Lab::name`] checks it.
//! After a crash, [`cleanup_prefix`] removes whatever a dead run left behind.
//!
//! The harness drives the `ip` CLI through `std::process::Command`: it runs
//! once per setup step, so a netlink library would add build time and API
//! churn for no gain here.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Linux `IFNAMSIZ - 1`.
pub const MAX_IFNAME: usize = 15;

/// Run a command, fail with its stderr if it exits non-zero; return stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {program}"))?;
    check(program, args, out)
}

fn check(program: &str, args: &[&str], out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            program,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip <args>` in the current namespace.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// `ip netns exec <ns> <cmd...>`: output of a command in a namespace.
pub fn ns_exec(ns: &str, cmd: &[&str]) -> Result<String> {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    ip(&args)
}

/// Like [`ns_exec`] but returns the raw output whatever the exit status.
pub fn ns_output(ns: &str, cmd: &[&str]) -> Result<Output> {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .context("spawning ip netns exec")
}

/// Names of all network namespaces (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
}

/// Kill every process inside a namespace (by PID), then delete it.
pub fn delete_netns(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SIGKILL: these are test processes in a namespace we own.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Remove every namespace whose name starts with `prefix` (and so every link
/// in it), plus links with that prefix left in the root namespace. For
/// leftovers of a crashed run; returns how many namespaces were removed.
pub fn cleanup_prefix(prefix: &str) -> Result<usize> {
    if prefix.len() < 2 {
        bail!("refusing to clean up with a prefix shorter than 2 characters");
    }
    let mut n = 0;
    for ns in list_netns()? {
        if ns.starts_with(prefix) {
            delete_netns(&ns);
            n += 1;
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        for line in links.lines() {
            // "12: name@peer: <...>"
            if let Some(name) = line.split(':').nth(1) {
                let name = name.trim().split('@').next().unwrap_or("");
                if name.starts_with(prefix) {
                    let _ = ip(&["link", "del", name]);
                }
            }
        }
    }
    Ok(n)
}

/// A process spawned in a namespace; killed by PID and reaped on drop.
pub struct NsChild {
    child: Option<Child>,
}

impl NsChild {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether it has exited, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("process already collected"),
        }
    }

    /// Wait for exit with a deadline (killing it when the deadline passes);
    /// collect its output (if it was piped).
    pub fn wait_output(mut self, timeout: Duration) -> Result<Output> {
        let mut child = self.child.take().context("process already collected")?;
        let deadline = Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("process {} did not exit within {:?}", child.id(), timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child.wait_with_output()?)
    }

    /// Send SIGINT (lets iperf3-like tools print their summary).
    pub fn interrupt(&self) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// A guest ("VM") namespace description for [`Lab::add_vm`].
#[derive(Debug, Clone)]
pub struct VmSpec<'a> {
    /// Suffix of the VM namespace name.
    pub name: &'a str,
    /// Full name of the host namespace holding the host end.
    pub host_ns: &'a str,
    /// Suffix of the host-end link name (in `host_ns`).
    pub host_if: &'a str,
    /// Suffix of the VM-end link name (in the VM namespace).
    pub vm_if: &'a str,
    /// Address with prefix length, e.g. `10.0.0.1/24`.
    pub ip_cidr: &'a str,
    pub mac: Option<&'a str>,
    pub mtu: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
}

/// A created VM: full names.
#[derive(Debug, Clone)]
pub struct Vm {
    pub ns: String,
    pub vm_if: String,
    pub host_if: String,
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// Everything a test created; cleaned up on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<NsChild>,
    keep: bool,
}

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

fn base36(mut v: u32, width: usize) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = vec![b'0'; width];
    for slot in s.iter_mut().rev() {
        *slot = D[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(s).expect("ascii digits")
}

impl Lab {
    /// A lab whose names start with `base` plus two unique characters.
    /// Set `MIDONET_TESTKIT_KEEP=1` to keep everything for debugging.
    pub fn new(base: &str) -> Result<Self> {
        let existing = list_netns()?;
        for _ in 0..1296 {
            let seq = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
            let tag = base36((std::process::id().wrapping_mul(37)).wrapping_add(seq) % 1296, 2);
            let prefix = format!("{base}{tag}");
            if !existing.iter().any(|n| n.starts_with(&prefix)) {
                return Ok(Lab {
                    prefix,
                    namespaces: Vec::new(),
                    children: Vec::new(),
                    keep: std::env::var_os("MIDONET_TESTKIT_KEEP").is_some(),
                });
            }
        }
        bail!("no free prefix for base {base}")
    }

    /// A lab with exactly this prefix (for `midonet sandbox`, whose names
    /// must be predictable). Fails if a namespace with the prefix exists.
    pub fn with_prefix(prefix: &str) -> Result<Self> {
        if prefix.len() < 2 {
            bail!("prefix {prefix:?} is shorter than 2 characters");
        }
        if list_netns()?.iter().any(|n| n.starts_with(prefix)) {
            bail!("namespaces with prefix {prefix} exist; run cleanup_prefix first");
        }
        Ok(Lab {
            prefix: prefix.to_owned(),
            namespaces: Vec::new(),
            children: Vec::new(),
            keep: false,
        })
    }

    /// Keep everything after this lab is dropped (a sandbox that outlives
    /// the process); spawned processes keep running too. Returns the
    /// prefix to pass to [`cleanup_prefix`] later.
    pub fn persist(mut self) -> String {
        self.keep = true;
        for c in &mut self.children {
            // Forget the child handle without killing it.
            c.child.take();
        }
        self.prefix.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + suffix`, checked against the interface name limit.
    pub fn name(&self, suffix: &str) -> Result<String> {
        let n = format!("{}{}", self.prefix, suffix);
        if n.len() > MAX_IFNAME {
            bail!("name {n} is longer than {MAX_IFNAME} bytes");
        }
        Ok(n)
    }

    /// Create a namespace `prefix+suffix` with loopback up.
    pub fn add_netns(&mut self, suffix: &str) -> Result<String> {
        let ns = self.name(suffix)?;
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ns_exec(&ns, &["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A "host" namespace (hypervisor stand-in).
    pub fn add_host(&mut self, suffix: &str) -> Result<String> {
        self.add_netns(suffix)
    }

    /// A VM namespace joined to a host namespace by a veth pair.
    pub fn add_vm(&mut self, spec: &VmSpec<'_>) -> Result<Vm> {
        let host_if = self.name(spec.host_if)?;
        self.add_vm_as(spec, host_if)
    }

    /// [`Lab::add_vm`] with the host end named exactly `spec.host_if`, not
    /// prefixed: for names a convention fixes (Nova's `tap<port id>`). It
    /// lives in the lab's host namespace, so it goes with the lab too.
    pub fn add_vm_exact_host_if(&mut self, spec: &VmSpec<'_>) -> Result<Vm> {
        if spec.host_if.len() > MAX_IFNAME {
            bail!("name {} is longer than {MAX_IFNAME} bytes", spec.host_if);
        }
        self.add_vm_as(spec, spec.host_if.to_string())
    }

    fn add_vm_as(&mut self, spec: &VmSpec<'_>, host_if: String) -> Result<Vm> {
        let ns = self.add_netns(spec.name)?;
        let vm_if = self.name(spec.vm_if)?;
        ip(&[
            "link",
            "add",
            &vm_if,
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &host_if,
            "netns",
            spec.host_ns,
        ])?;
        if let Some(mac) = spec.mac {
            ns_exec(&ns, &["ip", "link", "set", &vm_if, "address", mac])?;
        }
        if let Some(mtu) = spec.mtu {
            let m = mtu.to_string();
            ns_exec(&ns, &["ip", "link", "set", &vm_if, "mtu", &m])?;
        }
        ns_exec(&ns, &["ip", "addr", "add", spec.ip_cidr, "dev", &vm_if])?;
        ns_exec(&ns, &["ip", "link", "set", &vm_if, "up"])?;
        ns_exec(spec.host_ns, &["ip", "link", "set", &host_if, "up"])?;
        if let Some(gw) = spec.gateway {
            let g = gw.to_string();
            ns_exec(&ns, &["ip", "route", "add", "default", "via", &g, "dev", &vm_if])?;
        }
        let mac = link_mac(&ns, &vm_if)?;
        let ip_str = spec.ip_cidr.split('/').next().unwrap_or(spec.ip_cidr);
        let ip: Ipv4Addr = ip_str.parse().with_context(|| format!("bad address {ip_str}"))?;
        Ok(Vm { ns, vm_if, host_if, ip, mac })
    }

    /// Join host namespaces with an L2 underlay: a bridge `prefix+"ulbr"` in
    /// namespace `prefix+"ul"`, and for each `(host_ns, if_suffix, ip_cidr)` a
    /// veth whose `if_suffix` end (in the host namespace) gets the address.
    /// `mtu` applies to every underlay link (raise it for big VXLAN frames).
    pub fn add_underlay(&mut self, hosts: &[(&str, &str, &str)], mtu: u32) -> Result<()> {
        let ul = self.add_netns("ul")?;
        let br = self.name("ulbr")?;
        let m = mtu.to_string();
        ns_exec(&ul, &["ip", "link", "add", &br, "mtu", &m, "type", "bridge"])?;
        ns_exec(&ul, &["ip", "link", "set", &br, "up"])?;
        for (i, (host_ns, if_suffix, cidr)) in hosts.iter().enumerate() {
            let hif = self.name(if_suffix)?;
            let bif = self.name(&format!("ulp{i}"))?;
            ip(&[
                "link", "add", &hif, "netns", host_ns, "mtu", &m, "type", "veth", "peer", "name",
                &bif, "netns", &ul, "mtu", &m,
            ])?;
            ns_exec(&ul, &["ip", "link", "set", &bif, "master", &br])?;
            ns_exec(&ul, &["ip", "link", "set", &bif, "up"])?;
            ns_exec(host_ns, &["ip", "addr", "add", cidr, "dev", &hif])?;
            ns_exec(host_ns, &["ip", "link", "set", &hif, "up"])?;
        }
        Ok(())
    }

    /// Join exactly two host namespaces with one veth pair (no bridge): the
    /// shape of the peer measurements in `peers/kernel-baseline.sh`.
    /// Each tuple is `(host_ns, if_suffix, ip_cidr)`.
    pub fn add_underlay_pair(
        &mut self,
        a: (&str, &str, &str),
        b: (&str, &str, &str),
        mtu: u32,
    ) -> Result<()> {
        let m = mtu.to_string();
        let (ia, ib) = (self.name(a.1)?, self.name(b.1)?);
        ip(&[
            "link", "add", &ia, "netns", a.0, "mtu", &m, "type", "veth", "peer", "name", &ib,
            "netns", b.0, "mtu", &m,
        ])?;
        for (ns, ifn, cidr) in [(a.0, &ia, a.2), (b.0, &ib, b.2)] {
            ns_exec(ns, &["ip", "addr", "add", cidr, "dev", ifn])?;
            ns_exec(ns, &["ip", "link", "set", ifn, "up"])?;
        }
        Ok(())
    }

    /// Spawn a long-running command in a namespace; killed on drop of the lab
    /// (or of the returned handle if it is taken with [`Lab::spawn_owned`]).
    pub fn spawn(&mut self, ns: &str, cmd: &[&str]) -> Result<u32> {
        let c = spawn_in(ns, cmd, false)?;
        let pid = c.pid();
        self.children.push(c);
        Ok(pid)
    }

    /// Spawn with stdout/stderr piped; the caller owns the handle.
    pub fn spawn_owned(&self, ns: &str, cmd: &[&str]) -> Result<NsChild> {
        spawn_in(ns, cmd, true)
    }

    /// Kill one spawned process by PID now.
    pub fn kill(&mut self, pid: u32) {
        self.children.retain(|c| c.pid() != pid);
    }

    /// Full names of the namespaces created so far.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

fn spawn_in(ns: &str, cmd: &[&str], piped: bool) -> Result<NsChild> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(cmd).stdin(Stdio::null());
    if piped {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let child = c.spawn().with_context(|| format!("spawning {cmd:?} in {ns}"))?;
    Ok(NsChild { child: Some(child) })
}

/// MAC address of a link inside a namespace.
pub fn link_mac(ns: &str, ifname: &str) -> Result<String> {
    let out = ns_exec(ns, &["cat", &format!("/sys/class/net/{ifname}/address")])?;
    Ok(out.trim().to_owned())
}

/// Interface index of a link inside a namespace.
pub fn link_index(ns: &str, ifname: &str) -> Result<u32> {
    let out = ns_exec(ns, &["cat", &format!("/sys/class/net/{ifname}/ifindex")])?;
    out.trim().parse().context("parsing ifindex")
}

/// Backpressure on a VM's veth, as a hypervisor's tap would give: a
/// `pfifo` qdisc of `limit` packets on the VM end (veth has no qdisc by
/// default, so a full peer drops) and NAPI (`gro on`) on the host end,
/// which gives the veth a ring that, on kernels ≥ 6.16, stops the VM end's
/// queue when full. The guest's UDP sender then blocks on its send buffer
/// instead of producing packets that are dropped further on.
pub fn veth_backpressure(vm: &Vm, host_ns: &str, limit: u32) -> Result<()> {
    let l = limit.to_string();
    ns_exec(&vm.ns, &["tc", "qdisc", "replace", "dev", &vm.vm_if, "root", "pfifo", "limit", &l])?;
    ns_exec(host_ns, &["ethtool", "-K", &vm.host_if, "gro", "on"])?;
    Ok(())
}

/// Add a static neighbour entry so tests do not depend on ARP.
pub fn add_neigh(ns: &str, ifname: &str, ip: Ipv4Addr, mac: &str) -> Result<()> {
    let i = ip.to_string();
    ns_exec(ns, &["ip", "neigh", "replace", &i, "lladdr", mac, "dev", ifname, "nud", "permanent"])?;
    Ok(())
}

/// Waits up to `timeout` for a TCP listener on `port` in `ns` (asked with
/// `ss`, so a one-shot server such as `iperf3 -s -1` keeps its one
/// connection); whether one appeared. A listener spawned in the background
/// may take a while to bind on a loaded machine, and a client that comes
/// first is refused by the namespace's own kernel.
pub fn wait_listening(ns: &str, port: u16, timeout: std::time::Duration) -> bool {
    let filter = format!("sport = :{port}");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let listening = ns_output(ns, &["ss", "-Hltn", &filter])
            .map(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
            .unwrap_or(false);
        if listening {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether a program is on PATH.
pub fn have_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            for c in &mut self.children {
                c.child.take();
            }
            self.children.clear();
            return;
        }
        self.children.clear();
        for ns in self.namespaces.iter().rev() {
            delete_netns(ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_is_fixed_width() {
        assert_eq!(base36(0, 2), "00");
        assert_eq!(base36(35, 2), "0z");
        assert_eq!(base36(36, 2), "10");
    }
}
