//! The daemons' binaries, for tests that run them as processes.
//!
//! A test that spawns `midonet-agent` or `midonet-cluster` must not test a
//! stale binary left next to it, so by default it builds them first with
//! `cargo build -p <package>` (cargo releases its build lock before running
//! tests, so the nested build does not wait on the outer one). That build
//! resolves features for the daemons alone, which is not the workspace's
//! feature set, so on a fresh checkout it compiles most dependencies a
//! second time. The test command (`scripts/test.sh`) builds the whole
//! workspace first and sets [`PREBUILT_ENV`], and the tests then use the
//! binaries that build left in the target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1`: the daemons in the test's target directory are fresh (the
/// caller just built the workspace), do not run cargo.
pub const PREBUILT_ENV: &str = "MIDONET_PREBUILT";

/// The target directory of this test's profile (`target/debug` or
/// `target/release`), with the binaries of `packages` built in it. Panics
/// when the build fails or a binary is missing: a test must never run an
/// older binary than its own code.
pub fn built(packages: &[&str], binaries: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    if !crate::skip::requested(PREBUILT_ENV) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q"]);
        for p in packages {
            cmd.args(["-p", p]);
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "cargo build -p {} failed", packages.join(" -p "));
    }
    for b in binaries {
        let path = dir.join(b);
        assert!(
            path.exists(),
            "{} is missing ({PREBUILT_ENV}=1 says the workspace was built; build it with \
             `cargo build --workspace --all-targets` or unset {PREBUILT_ENV})",
            path.display()
        );
    }
    dir
}

/// The path of `midonet-agent`, built if needed (see [`built`]).
pub fn agent() -> PathBuf {
    built(&["midonet-agent-bin"], &["midonet-agent"]).join("midonet-agent")
}
