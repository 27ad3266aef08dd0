//! `midonet sandbox up --ha`: the etcd cluster under the cluster replicas.
//!
//! Three `etcd` members on loopback (Debian's `etcd-server`), started like
//! the other daemons ([`super::procs`]): own process group, log in the state
//! directory, stopped by recorded PID. Member `i` listens for clients on
//! `127.0.0.1:P+i` and for its peers on `127.0.0.1:P+10+i`, where P is
//! `--etcd-port`; its data is in `D/etcd-m<i>`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Members of the sandbox's etcd cluster (and cluster replicas) with `--ha`.
pub const MEMBERS: u16 = 3;

/// One member's name, addresses and data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub data: PathBuf,
}

/// The members for base port `port`, with their data under `dir`.
pub fn members(dir: &Path, port: u16) -> Result<Vec<Member>> {
    if port.checked_add(10 + MEMBERS).is_none() {
        bail!("--etcd-port {port}: the members need ports up to {port} + {}", 10 + MEMBERS);
    }
    Ok((0..MEMBERS)
        .map(|i| Member {
            name: format!("m{i}"),
            client: format!("127.0.0.1:{}", port + i),
            peer: format!("127.0.0.1:{}", port + 10 + i),
            data: dir.join(format!("etcd-m{i}")),
        })
        .collect())
}

/// The store URL of the cluster replicas: every member.
pub fn store_url(members: &[Member]) -> String {
    let hosts: Vec<&str> = members.iter().map(|m| m.client.as_str()).collect();
    format!("etcd://{}", hosts.join(","))
}

/// `etcd` arguments of member `m` of a new cluster `token`.
pub fn args(m: &Member, all: &[Member], token: &str) -> Vec<String> {
    let cluster: Vec<String> =
        all.iter().map(|o| format!("{}=http://{}", o.name, o.peer)).collect();
    vec![
        format!("--name={}", m.name),
        format!("--data-dir={}", m.data.display()),
        format!("--listen-client-urls=http://{}", m.client),
        format!("--advertise-client-urls=http://{}", m.client),
        format!("--listen-peer-urls=http://{}", m.peer),
        format!("--initial-advertise-peer-urls=http://{}", m.peer),
        format!("--initial-cluster={}", cluster.join(",")),
        "--initial-cluster-state=new".into(),
        format!("--initial-cluster-token={token}"),
        // A delete cascades key by key in one transaction, now with the
        // reverse-reference index's entries too (cluster `refs`): etcd's
        // default of 128 operations is too few for a bridge with a few
        // dozen ports.
        "--max-txn-ops=10000".into(),
    ]
}

/// The `etcd` binary on `PATH`.
pub fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .context("`--ha` needs etcd on PATH (apt-get install etcd-server)")
}

/// Waits until every member answers `/health` with `"health":"true"` (the
/// cluster has a leader), checking `alive` between attempts.
pub fn wait_healthy(
    members: &[Member],
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
    let deadline = Instant::now() + timeout;
    for m in members {
        let url = format!("http://{}/health", m.client);
        loop {
            let healthy = agent
                .get(&url)
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .is_some_and(|body| body.replace(' ', "").contains("\"health\":\"true\""));
            if healthy {
                break;
            }
            alive()?;
            if Instant::now() >= deadline {
                bail!("etcd member {} ({url}) not healthy after {timeout:?}", m.name);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_take_consecutive_ports_and_know_each_other() {
        let ms = members(Path::new("/s"), 23790).expect("members");
        assert_eq!(ms.len(), 3);
        assert_eq!(
            (ms[2].client.as_str(), ms[2].peer.as_str()),
            ("127.0.0.1:23792", "127.0.0.1:23802")
        );
        assert_eq!(ms[1].data, Path::new("/s/etcd-m1"));
        assert_eq!(store_url(&ms), "etcd://127.0.0.1:23790,127.0.0.1:23791,127.0.0.1:23792");
        let a = args(&ms[0], &ms, "mns-sandbox");
        assert!(a.contains(&"--initial-cluster=m0=http://127.0.0.1:23800,m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802".to_owned()), "{a:?}");
        assert!(a.contains(&"--listen-client-urls=http://127.0.0.1:23790".to_owned()));
        assert!(members(Path::new("/s"), 65530).is_err(), "ports past 65535");
    }
}
