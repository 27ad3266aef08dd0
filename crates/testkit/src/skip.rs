//! Tests that skip on purpose, and say so.
//!
//! A test that needs something the machine may lack (root and network
//! namespaces, etcd, Python) must not pass by doing nothing: it FAILS with a
//! message naming what is missing, unless its skip variable is set to `1`
//! (`MIDONET_SKIP_NETNS`, `MIDONET_SKIP_ETCD`, `MIDONET_SKIP_PY`). A test
//! that skips calls [`record`], which prints one line and, when
//! `MIDONET_SKIP_REPORT` names a file, appends `<test>\t<variable>` to it, so
//! the test command can print a one-line summary of what did not run.
//!
//! Tests run in parallel threads and processes: each record is one
//! `write` on a file opened with `O_APPEND`, so lines do not interleave.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Names the file [`record`] appends to.
pub const REPORT_VAR: &str = "MIDONET_SKIP_REPORT";
/// Skips the tests that need root, network namespaces and their programs.
pub const SKIP_NETNS: &str = "MIDONET_SKIP_NETNS";
/// Skips the tests that need an etcd server.
pub const SKIP_ETCD: &str = "MIDONET_SKIP_ETCD";
/// Skips the tests that need Python (the midonetclient run).
pub const SKIP_PY: &str = "MIDONET_SKIP_PY";

/// Record that `test` (e.g. `"datapath::vxlan_between_two_hosts"`) skipped
/// because `variable` is set. Write errors are ignored: a lost report line
/// must not fail the test run.
pub fn record(test: &str, variable: &str) {
    eprintln!("skipped: {test} ({variable}=1)");
    if let Some(path) = std::env::var_os(REPORT_VAR).filter(|p| !p.is_empty()) {
        append(Path::new(&path), test, variable);
    }
}

fn append(path: &Path, test: &str, variable: &str) {
    // One write of the whole line, so parallel appends do not interleave.
    let line = format!("{test}\t{variable}\n");
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Whether `variable` asks to skip (it is set to exactly `1`).
pub fn requested(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|v| v == "1")
}

/// Whether a test needing root, network namespaces and `programs` (besides
/// `ip`, always needed) can run. With `MIDONET_SKIP_NETNS=1` it records the
/// skip and returns false; otherwise it PANICS naming everything missing
/// (and the Debian package of each missing program), so a machine without
/// them fails loudly instead of passing vacuously.
///
/// ```no_run
/// fn two_vms() {
///     if !midonet_testkit::skip::netns_or_skip("datapath::two_vms", &["ping"]) {
///         return;
///     }
///     // ... build the lab, send packets, assert ...
/// }
/// ```
pub fn netns_or_skip(test: &str, programs: &[&str]) -> bool {
    if requested(SKIP_NETNS) {
        record(test, SKIP_NETNS);
        return false;
    }
    let missing =
        missing_for_netns(nix::unistd::geteuid().is_root(), programs, midonet_netns::have_program);
    assert!(
        missing.is_empty(),
        "{test} cannot run: it needs {}. Install what is missing (scripts/test.sh does) or set \
         {SKIP_NETNS}=1 to skip it on purpose.",
        missing.join(", ")
    );
    true
}

/// What a netns test lacks, in words for the failure message.
fn missing_for_netns(root: bool, programs: &[&str], have: impl Fn(&str) -> bool) -> Vec<String> {
    let mut missing = Vec::new();
    if !root {
        missing.push("root to create network namespaces (this runs as a non-root user)".to_owned());
    }
    let all = std::iter::once("ip").chain(programs.iter().copied().filter(|p| *p != "ip"));
    for p in all {
        if !have(p) {
            missing.push(format!(
                "the program `{p}`, not installed (Debian package {})",
                debian_package(p)
            ));
        }
    }
    missing
}

/// The Debian package that installs `program`, for failure messages.
pub fn debian_package(program: &str) -> &'static str {
    match program {
        "ip" | "tc" | "bridge" => "iproute2",
        "ping" => "iputils-ping",
        "iperf3" => "iperf3",
        "ethtool" => "ethtool",
        "busybox" | "udhcpc" => "busybox",
        "tcpdump" => "tcpdump",
        "sysctl" => "procps",
        "traceroute" => "traceroute",
        "socat" => "socat",
        "jq" => "jq",
        "etcd" => "etcd-server",
        _ => "unknown: see scripts/test.sh",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_root_and_each_program_with_its_package() {
        let m = missing_for_netns(false, &["iperf3", "ping"], |p| p == "ping");
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].contains("root"));
        assert!(m[1].contains("`ip`") && m[1].contains("iproute2"), "{}", m[1]);
        assert!(m[2].contains("`iperf3`") && m[2].contains("package iperf3"), "{}", m[2]);
        assert!(missing_for_netns(true, &["ip", "ping"], |_| true).is_empty());
    }

    #[test]
    fn append_adds_one_line_per_skip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("skips");
        append(&path, "testkit::a", SKIP_NETNS);
        append(&path, "agent::b", SKIP_ETCD);
        let text = std::fs::read_to_string(&path).expect("report written");
        assert_eq!(text, "testkit::a\tMIDONET_SKIP_NETNS\nagent::b\tMIDONET_SKIP_ETCD\n");
    }
}
