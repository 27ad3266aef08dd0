//! The real MidoNet Python client (midonetclient 5.2.0 and its midonet-cli)
//! against our cluster: runs `tests/midonetclient/run.sh`, which builds the
//! patched venv and asserts every step (see tests/midonetclient/probe.py).
//!
//! Needs PyPI on first run (scripts/test.sh installs python3-venv) and
//! Python 3.11/3.12. It always runs and fails when it cannot, unless
//! `MIDONET_SKIP_PY=1` says to skip it on purpose (the skip is recorded and
//! listed at the end of scripts/test.sh).

mod support;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn midonetclient_probe_passes_against_the_cluster() {
    if midonet_testkit::skip::requested("MIDONET_SKIP_PY") {
        midonet_testkit::skip::record("cli::midonetclient_probe", "MIDONET_SKIP_PY");
        return;
    }
    let Some(s) = support::start(true) else { return };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/midonetclient/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args([&s.url, support::ADMIN_USER, support::ADMIN_PASSWORD, "admin"])
        .output()
        .expect("run tests/midonetclient/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "midonetclient probe failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all steps passed"), "{stdout}");
    // Shown with --nocapture: which steps ran.
    eprintln!("{stdout}");
}
