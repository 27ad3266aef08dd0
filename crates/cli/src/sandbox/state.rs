//! The sandbox's record of what it started and built, `sandbox.json` in the
//! state directory.
//!
//! Written after every step of `up` (so a crash half-way still leaves the
//! PIDs that `down` or the next `up` must stop), read by `down`, `status`,
//! the integration test and `bench/run.sh` (which takes VM names, addresses
//! and port ids from it with `jq`). Field names are part of that contract.

use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// File name inside the state directory.
pub const STATE_FILE: &str = "sandbox.json";

/// A process the sandbox started and must stop by PID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcRecord {
    /// `cluster` or `agent-h<N>`.
    pub name: String,
    pub pid: u32,
    /// Absolute path of the executable: stopping checks that the PID still
    /// runs it, so a recycled PID is never signalled.
    pub exe: String,
    /// Namespace it runs in (`None` = root namespace).
    pub netns: Option<String>,
    pub log: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HostRecord {
    pub ns: String,
    pub id: String,
    pub underlay_ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BridgeRecord {
    pub name: String,
    pub id: String,
    /// e.g. `10.0.1.0/24`.
    pub cidr: String,
    /// Router port address on this bridge's subnet.
    pub gateway: Ipv4Addr,
    pub router_port_id: String,
    pub router_port_mac: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub ns: String,
    pub host: usize,
    pub bridge: usize,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub vm_if: String,
    pub host_if: String,
    /// The bridge port bound to `host_if` on the VM's host.
    pub port_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRecord {
    pub from: String,
    pub to: String,
    pub to_ip: Ipv4Addr,
    pub what: String,
    pub ok: bool,
    /// Average RTT of the successful ping, ms.
    pub rtt_ms: Option<f64>,
    /// Seconds until the first reply (includes the first packets' simulation).
    pub first_reply_s: Option<f64>,
}

/// Everything `down`, `status` and scripts need to know.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SandboxState {
    pub prefix: String,
    /// REST API base URL (for `midonet --url`).
    pub api_url: String,
    /// Where agents reach the cluster's topology service.
    pub grpc_addr: String,
    /// Unix seconds when `up` started.
    pub started: u64,
    pub underlay_mtu: u32,
    pub processes: Vec<ProcRecord>,
    pub hosts: Vec<HostRecord>,
    pub tunnel_zone_id: String,
    pub router_id: String,
    pub bridges: Vec<BridgeRecord>,
    pub vms: Vec<VmRecord>,
    pub checks: Vec<CheckRecord>,
    /// `starting`, `up` (all checks passed), `degraded` (some failed),
    /// `failed` (setup stopped with an error).
    pub phase: String,
}

impl SandboxState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads the state file; `None` if there is none.
    pub fn load(dir: &Path) -> Result<Option<SandboxState>> {
        let p = Self::path(dir);
        match fs::read(&p) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", p.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Writes atomically (temp file + rename), so a crash never leaves a
    /// truncated record that would hide the PIDs to stop.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = Self::path(dir);
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(self).context("encoding state")?)?;
        f.sync_all()?;
        fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(SandboxState::load(dir.path()).expect("load").is_none());
        let s = SandboxState {
            prefix: "mns".into(),
            processes: vec![ProcRecord {
                name: "cluster".into(),
                pid: 42,
                exe: "/x/midonet-cluster".into(),
                netns: None,
                log: "/x/cluster.log".into(),
            }],
            phase: "starting".into(),
            ..Default::default()
        };
        s.save(dir.path()).expect("save");
        let back = SandboxState::load(dir.path()).expect("load").expect("some");
        assert_eq!(back.prefix, "mns");
        assert_eq!(back.processes, s.processes);
    }
}
