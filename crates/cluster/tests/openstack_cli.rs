//! The real OpenStack CLI (python-openstackclient 10.5.0, pinned) against
//! our Neutron API: runs `tests/openstack/run.sh`, which builds the venv
//! and asserts every step (see tests/openstack/probe.py). It logs in with
//! a password at the cluster's Keystone-compatible `/identity` and finds
//! the network endpoint in the token's catalog, as a cloud's users do.
//!
//! Also OpenStack's own API tests: tempest 47.0.0's `tempest.api.network`
//! (tests/tempest/run.sh), with tempest's default dynamic credentials.
//!
//! Needs PyPI on first run (scripts/test.sh installs python3-venv). They
//! always run and fail when they cannot, unless `MIDONET_SKIP_PY=1` says
//! to skip them on purpose (recorded, and listed at the end of
//! scripts/test.sh).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Api;
use midonet_cluster::config::{Config, RoleName, UserConfig};
use midonet_cluster::testing::TestCluster;
use serde_json::json;

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

#[test]
fn tempest_network_api_tests_pass() {
    if midonet_testkit::skip::requested("MIDONET_SKIP_PY") {
        midonet_testkit::skip::record("cluster::openstack_cli tempest", "MIDONET_SKIP_PY");
        return;
    }
    // Tempest's default credentials: it logs in as this admin and makes a
    // project and users for each test class over the identity API.
    let mut cfg = Config::default();
    cfg.auth.enabled = true;
    cfg.auth.users = vec![UserConfig::new("admin", "adminpw", RoleName::Admin, None)];
    let c = TestCluster::start_with(cfg);
    let neutron = c.url().replace("/midonet-api", "/neutron");
    // The external network floating IPs and gateways come from.
    let admin = Api::new(&neutron, Some(c.admin_token()));
    let public = json!({"network": {"name": "public", "router:external": true}});
    let public = admin.post("/v2.0/networks", &public).expect(201).body;
    let public = public["network"]["id"].as_str().expect("network id").to_string();
    let subnet =
        json!({"subnet": {"network_id": public, "ip_version": 4, "cidr": "172.24.4.0/24"}});
    admin.post("/v2.0/subnets", &subnet).expect(201);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/tempest/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(format!("{neutron}/identity/v3"))
        .arg(&public)
        .env("TEMPEST_CREDENTIALS", "dynamic")
        .env("TEMPEST_CONCURRENCY", "2")
        .output()
        .expect("run tests/tempest/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tempest failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // Tempest ran (not everything skipped): the core resources passed.
    let passed = stdout.lines().filter(|l| l.ends_with("... ok")).count();
    assert!(passed >= 150, "only {passed} tests passed:\n{stdout}");
    eprintln!("{stdout}");
}
