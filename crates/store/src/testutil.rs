//! Test helpers (feature `test-util`): a throw-away etcd server, and an
//! etcd cluster of several members to kill and restart ([`EtcdCluster`],
//! for fault tests).
//!
//! [`EtcdServer::start`] runs the real `etcd` binary (Debian's
//! `etcd-server`; `MIDONET_ETCD_BIN` overrides the path) as a single-member
//! cluster on 127.0.0.1, on two free ports, with its data directory (and its
//! log, `etcd.log`) in a fresh temp dir. Dropping the handle kills that
//! process by PID and removes the directory.
//!
//! Tests of any crate use it as:
//!
//! ```no_run
//! # async fn t() {
//! let Some(etcd) = midonet_store::testutil::etcd_or_skip() else { return };
//! let store = midonet_store::connect(&etcd.url()).await.expect("connect");
//! # }
//! ```
//!
//! [`etcd_or_skip`] panics with an explanation when etcd is not installed,
//! unless `MIDONET_SKIP_ETCD=1`, in which case it returns `None` and the test
//! returns early: CI installs etcd, so a missing binary must fail there.
//!
//! The server is tuned for tests: short heartbeat and election timeouts
//! (becomes leader in well under a second, minimum lease TTL 1 s) and
//! `--max-txn-ops 10000`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{EtcdStore, Store};

/// Environment variable that, set to `1`, lets etcd-backed tests skip when
/// the `etcd` binary is missing.
pub const SKIP_ENV: &str = "MIDONET_SKIP_ETCD";
/// Environment variable naming the etcd binary (default: `etcd` in `PATH`).
pub const BIN_ENV: &str = "MIDONET_ETCD_BIN";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 4;

/// Why an etcd test server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    #[error(
        "etcd binary {0:?} not found: install it (apt-get install etcd-server), \
         point {BIN_ENV} at it, or set {SKIP_ENV}=1 to skip etcd tests"
    )]
    NotInstalled(String),
    #[error("etcd test server i/o")]
    Io(#[from] std::io::Error),
    #[error("etcd did not become healthy: {reason}; last log lines:\n{log}")]
    NotReady { reason: String, log: String },
}

/// A running single-member etcd for tests. Killed (by PID) on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client_port: u16,
    // Removed only after the process is killed: `Drop for EtcdServer` runs
    // before the fields are dropped.
    dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    // The port is free when we look; another process could take it before
    // etcd binds it, in which case `start` retries with new ports.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One HTTP/1.1 GET of etcd's `/health`, true when it answers healthy.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// The `etcd` command line of one member, tuned for tests (see the module
/// docs), logging to `log`: `urls` is (client, peer), `cluster` the
/// `--initial-cluster` list, `state` (`new` | `existing`, token).
fn etcd_command(
    bin: &str,
    name: &str,
    data: &Path,
    urls: (&str, &str),
    cluster: &str,
    state: (&str, &str),
    log: File,
) -> std::io::Result<Command> {
    let (client, peer) = urls;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster={cluster}"))
        .arg(format!("--initial-cluster-state={}", state.0))
        .arg(format!("--initial-cluster-token={}", state.1))
        .arg("--heartbeat-interval=50")
        .arg("--election-timeout=500")
        .arg("--max-txn-ops=10000")
        .arg("--logger=zap")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // ETCD_* variables in the environment would configure the server too.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(k);
        }
    }
    Ok(cmd)
}

impl EtcdServer {
    /// Starts etcd and waits (blocking, up to 30 s) until it is healthy.
    pub fn start() -> Result<Self, EtcdServerError> {
        let bin = std::env::var(BIN_ENV).unwrap_or_else(|_| "etcd".to_string());
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&bin) {
                Ok(server) => return Ok(server),
                // A port taken between our probe and etcd's bind: retry.
                Err(EtcdServerError::NotReady { reason, log }) if reason.contains("exited") => {
                    last = Some(EtcdServerError::NotReady { reason, log });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| EtcdServerError::NotReady {
            reason: "no attempt made".into(),
            log: String::new(),
        }))
    }

    fn try_start(bin: &str) -> Result<Self, EtcdServerError> {
        let dir = tempfile::Builder::new().prefix("midonet-etcd-").tempdir()?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let log = File::create(&log_path)?;
        let mut cmd = etcd_command(
            bin,
            "midonet-test",
            &dir.path().join("data"),
            (&client, &peer),
            &format!("midonet-test={peer}"),
            ("new", &format!("midonet-test-{client_port}")),
            log,
        )?;
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EtcdServerError::NotInstalled(bin.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let mut server = EtcdServer { child, client_port, dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(EtcdServerError::NotReady {
                    reason: format!("etcd exited with {status}"),
                    log: tail(&log_path, 20),
                });
            }
            if healthy(client_port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(EtcdServerError::NotReady {
                    reason: format!("not healthy after {READY_TIMEOUT:?}"),
                    log: tail(&log_path, 20),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `etcd://127.0.0.1:PORT`, for [`crate::connect`].
    pub fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT`, for etcd clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// PID of the etcd process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding the data dir and `etcd.log`.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A connected [`EtcdStore`].
    pub async fn store(&self) -> crate::Result<Arc<dyn Store>> {
        Ok(Arc::new(EtcdStore::connect(&[self.endpoint()]).await?))
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an etcd test server. Returns `None` (skip) only when etcd is not
/// installed and `MIDONET_SKIP_ETCD=1`; panics with the reason otherwise.
pub fn etcd_or_skip() -> Option<EtcdServer> {
    match EtcdServer::start() {
        Ok(server) => Some(server),
        Err(EtcdServerError::NotInstalled(bin))
            if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") =>
        {
            eprintln!("skipping etcd test: {bin:?} not installed and {SKIP_ENV}=1");
            record_skip(SKIP_ENV);
            None
        }
        Err(e) => panic!("cannot start etcd for tests: {e}"),
    }
}

/// Appends `<test>\t<variable>` to the file named by `MIDONET_SKIP_REPORT`,
/// so that `scripts/test.sh` can print what was skipped at the end of a run.
/// The same format as `midonet_testkit::skip::record` (this crate sits below
/// the testkit and cannot use it).
pub fn record_skip(variable: &str) {
    let test = std::thread::current().name().unwrap_or("etcd test").to_owned();
    if let Some(path) = std::env::var_os("MIDONET_SKIP_REPORT") {
        let line = format!("midonet-store::{test}\t{variable}\n");
        // Best effort: a report that cannot be written must not fail the test.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// A running etcd cluster of several members on 127.0.0.1, for fault
/// tests: members can be killed (SIGKILL, by PID) and started again on
/// their data. Every member is killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    bin: String,
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one is healthy.
    pub fn start(n: usize) -> Result<Self, EtcdServerError> {
        let bin = std::env::var(BIN_ENV).unwrap_or_else(|_| "etcd".to_string());
        let dir = tempfile::Builder::new().prefix("midonet-etcd-cluster-").tempdir()?;
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            });
        }
        let mut c = EtcdCluster { bin, members, dir };
        for i in 0..n {
            c.spawn(i, "new")?;
        }
        for i in 0..n {
            c.wait_healthy(i)?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), EtcdServerError> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))?;
        let token = format!("midonet-faults-{}", self.members[0].client_port);
        let mut cmd = etcd_command(
            &self.bin,
            &m.name,
            &self.dir.path().join(&m.name),
            (&client, &peer),
            &initial.join(","),
            (state, &token),
            log,
        )?;
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EtcdServerError::NotInstalled(self.bin.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        self.members[i].child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> Result<(), EtcdServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let log = self.dir.path().join(format!("{}.log", self.members[i].name));
        loop {
            let m = &mut self.members[i];
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(EtcdServerError::NotReady {
                    reason: format!("etcd {} exited with {status}", m.name),
                    log: tail(&log, 20),
                });
            }
            if healthy(m.client_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EtcdServerError::NotReady {
                    reason: format!("{} not healthy after {READY_TIMEOUT:?}", m.name),
                    log: tail(&log, 20),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...`, for [`crate::connect`].
    pub fn url(&self) -> String {
        let eps: Vec<String> =
            self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
        format!("etcd://{}", eps.join(","))
    }

    /// SIGKILLs member `i` (a crash: no clean leave).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<(), EtcdServerError> {
        self.spawn(i, "existing")?;
        self.wait_healthy(i)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
