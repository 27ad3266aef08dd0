//! Starting and stopping the sandbox's daemons (cluster, agents).
//!
//! They must outlive `midonet sandbox up`, so they are plain child processes
//! in their own process group (Ctrl-C on the terminal does not reach them),
//! with stdin closed and output appended to a log file in the state
//! directory; when `up` exits they are re-parented to init. Agents are
//! started as `ip netns exec <host-ns> midonet-agent …`; `ip` execs the
//! agent in the same process, so the PID recorded is the agent's.
//!
//! Stopping is by recorded PID only, and only after checking that the PID
//! still runs the recorded executable (`/proc/<pid>/exe`, or its command
//! line): a PID recycled since a crash belongs to someone else.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::ProcRecord;

/// Environment variable naming the directory with `midonet-cluster` and
/// `midonet-agent` (overrides the search next to the running binary).
pub const BIN_DIR_ENV: &str = "MIDONET_BIN_DIR";

/// Finds a sibling binary: `$MIDONET_BIN_DIR`, the running executable's
/// directory (and its parent, for test binaries in `target/*/deps`), then
/// `PATH`.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os(BIN_DIR_ENV) {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if d.file_name().is_some_and(|n| n == "deps") {
                if let Some(p) = d.parent() {
                    dirs.push(p.to_path_buf());
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for d in &dirs {
        let p = d.join(name);
        if is_executable(&p) {
            return Ok(fs::canonicalize(&p).unwrap_or(p));
        }
    }
    bail!(
        "cannot find `{name}` next to this binary, in ${BIN_DIR_ENV} or on PATH; build it with \
         `cargo build -p midonet-cluster-bin -p midonet-agent-bin` (add --release for target/release)"
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Starts `exe args…` (inside `netns` if given) detached from this process,
/// logging to `log`. Returns its record.
pub fn spawn_daemon(
    name: &str,
    exe: &Path,
    args: &[String],
    netns: Option<&str>,
    log: &Path,
) -> Result<ProcRecord> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        // Own process group: a Ctrl-C meant for `midonet sandbox up` must
        // not take the daemons down with it.
        .process_group(0);
    let child = cmd.spawn().with_context(|| format!("starting {}", exe.display()))?;
    Ok(ProcRecord {
        name: name.to_owned(),
        pid: child.id(),
        exe: exe.display().to_string(),
        netns: netns.map(str::to_owned),
        log: log.display().to_string(),
    })
    // `child` is dropped without wait(): the process keeps running. While
    // `up` runs it is our zombie-to-be; once `up` exits, init reaps it.
}

/// Whether the PID is alive and still runs the recorded executable.
pub fn is_ours(rec: &ProcRecord) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{}", rec.pid));
    if let Ok(stat) = fs::read_to_string(proc_dir.join("stat")) {
        // A zombie (state Z) has exited; it only waits for its parent.
        if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) {
            return false;
        }
    } else {
        return false;
    }
    let exe_name = Path::new(&rec.exe).file_name().map(|n| n.to_string_lossy().into_owned());
    if let Ok(target) = fs::read_link(proc_dir.join("exe")) {
        // A rebuilt binary shows as "<path> (deleted)".
        let t = target.display().to_string();
        if t == rec.exe || t.strip_suffix(" (deleted)") == Some(rec.exe.as_str()) {
            return true;
        }
    }
    // Between fork and exec (or while `ip netns exec` sets up) the exe is
    // still `ip`; the command line already names the binary.
    match (fs::read(proc_dir.join("cmdline")), exe_name) {
        (Ok(cmdline), Some(n)) => cmdline.split(|b| *b == 0).any(|arg| {
            Path::new(&*String::from_utf8_lossy(arg))
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == n)
        }),
        _ => false,
    }
}

/// Stops one recorded process: SIGTERM, then SIGKILL after `grace`.
/// Returns whether it was running.
pub fn stop(rec: &ProcRecord, grace: Duration) -> bool {
    if !is_ours(rec) {
        return false;
    }
    let pid = Pid::from_raw(rec.pid as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap(pid);
        if !is_ours(rec) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_ours(rec) {
        let _ = kill(pid, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(100));
    }
    reap(pid);
    true
}

/// Collects the exit status if the process is our own child (when `up`
/// and `down` run in one process, as in tests), so it does not linger as
/// a zombie; for anyone else's child this is a no-op (ECHILD).
fn reap(pid: Pid) {
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &str, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_pid_is_not_ours() {
        // Our own PID runs the test binary, not "midonet-agent".
        let me = ProcRecord {
            name: "agent-h0".into(),
            pid: std::process::id(),
            exe: "/nonexistent/midonet-agent".into(),
            netns: None,
            log: String::new(),
        };
        assert!(!is_ours(&me));
        assert!(!stop(&me, Duration::from_millis(10)), "must not signal a foreign process");
        let exe = std::env::current_exe().expect("exe").display().to_string();
        assert!(is_ours(&ProcRecord { exe, ..me }));
    }

    #[test]
    fn spawned_daemon_is_stopped_by_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sleep = find_binary("sleep").expect("sleep on PATH");
        let log = dir.path().join("sleep.log");
        let rec = spawn_daemon("sleeper", &sleep, &["30".into()], None, &log).expect("spawn");
        assert!(is_ours(&rec));
        assert!(stop(&rec, Duration::from_secs(2)));
        assert!(!is_ours(&rec));
    }

    #[test]
    fn missing_binary_says_how_to_build_it() {
        let e = find_binary("midonet-no-such-binary").expect_err("missing");
        assert!(e.to_string().contains("cargo build"), "{e}");
    }
}
