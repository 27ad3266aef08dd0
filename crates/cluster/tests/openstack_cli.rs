//! The real OpenStack CLI (python-openstackclient 10.5.0, pinned) against
//! our Neutron API: runs `tests/openstack/run.sh`, which builds the venv
//! and asserts every step (see tests/openstack/probe.py). It logs in with
//! a password at the cluster's Keystone-compatible `/identity` and finds
//! the network endpoint in the token's catalog, as a cloud's users do.
//!
//! Needs PyPI on first run (scripts/test.sh installs python3-venv). It
//! always runs and fails when it cannot, unless `MIDONET_SKIP_PY=1` says
//! to skip it on purpose (recorded, and listed at the end of
//! scripts/test.sh).

use std::path::PathBuf;
use std::process::Command;

use midonet_cluster::testing::TestCluster;

#[test]
fn openstack_cli_drives_the_neutron_api() {
    if midonet_testkit::skip::requested("MIDONET_SKIP_PY") {
        midonet_testkit::skip::record("cluster::openstack_cli", "MIDONET_SKIP_PY");
        return;
    }
    let c = TestCluster::start("memory:", false);
    let endpoint = c.url().replace("/midonet-api", "/neutron");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/openstack/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&endpoint)
        .output()
        .expect("run tests/openstack/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openstack probe failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all steps passed"), "{stdout}");
    eprintln!("{stdout}");
}
