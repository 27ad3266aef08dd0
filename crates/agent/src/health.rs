//! Health checks of load-balancer pool members, run from inside the
//! virtual network.
//!
//! ```text
//!  topology ─ wanted() ─> lbs with monitored members
//!        │                      │ no holder (state/lb/<lb>/checker) ─> Command::HealthCheck claim
//!        │                      │ granted ─> Checker::start
//!        ▼                      ▼
//!  Checker thread: own network namespace (unshare), veth "mhc<lb8>p" in it
//!  (checker address/30, default route via the router's health-check port),
//!  host end "mhc<lb8>" bound to that port like any VM interface
//!        │ one task per member: TCP connect | HTTP request | ICMP echo
//!        │ every `delay` s, each within `timeout` s
//!        ▼
//!  Verdict (UP after a success, DOWN after `maxRetries` failures in a row,
//!  sent on change) ─> Command::MemberStatus ─> the cluster writes the status
//! ```
//!
//! * **One checker per load balancer**, the host holding the leased key
//!   (`lb_checker` in the cluster). Every agent may claim a free key; the
//!   key dies with its holder's session, and another agent claims it on the
//!   next tick after it sees the deletion, so checking moves within one
//!   session TTL (plus a tick) of an agent's death.
//! * **From the router**: the checks leave the namespace through the
//!   load balancer's router, as MidoNet's HAProxy did (its namespace on a
//!   link-local /30). Members answer their default gateway, the router,
//!   which routes the /30 to the port bound here. No host address is used
//!   and the host's own stack never talks to the virtual network.
//! * The namespace is anonymous (owned by the checker thread), so it and
//!   its veth pair disappear with the thread, or with the process on a
//!   crash: nothing is left behind to clean up.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use midonet_model::{
    HealthMonitor, LoadBalancerId, MonitorKind, PoolId, PoolMemberId, RouterId, Topology,
};
use tokio::sync::{mpsc, watch};

/// One member to check, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub pool: PoolId,
    pub member: PoolMemberId,
    pub addr: SocketAddrV4,
    pub monitor: HealthMonitor,
    /// Its status in the store when the target was made (`UP`/`DOWN` or
    /// anything else): a verdict equal to it is not reported again.
    pub stored: String,
}

impl Target {
    /// What a running probe depends on (not the stored status).
    fn same_probe(&self, o: &Target) -> bool {
        self.addr == o.addr && self.monitor == o.monitor && self.pool == o.pool
    }
}

/// The router of a load balancer: its `routerId`, else the router naming it.
pub fn router_of(t: &Topology, lb: LoadBalancerId) -> Option<RouterId> {
    let l = t.load_balancers.get(&lb)?;
    l.router_id
        .or_else(|| t.routers.values().find(|r| r.load_balancer_id == Some(lb)).map(|r| r.id))
}

/// The load balancers that need health checks, with their targets: admin
/// up, attached to a router, with an admin-up pool whose admin-up monitor
/// is of a kind we run, and admin-up members in it.
pub fn wanted(t: &Topology) -> BTreeMap<LoadBalancerId, Vec<Target>> {
    let mut out: BTreeMap<LoadBalancerId, Vec<Target>> = BTreeMap::new();
    for pool in t.pools.values().filter(|p| p.admin_state_up) {
        let Some(lb) = t.load_balancers.get(&pool.load_balancer_id) else { continue };
        if !lb.admin_state_up || router_of(t, lb.id).is_none() {
            continue;
        }
        let Some(mon) = pool.health_monitor_id.and_then(|h| t.health_monitors.get(&h)) else {
            continue;
        };
        if !mon.admin_state_up || mon.kind().is_none() {
            continue;
        }
        for m in t.pool_members.values().filter(|m| m.pool_id == pool.id && m.admin_state_up) {
            out.entry(lb.id).or_default().push(Target {
                pool: pool.id,
                member: m.id,
                addr: SocketAddrV4::new(m.address, m.protocol_port),
                monitor: mon.clone(),
                stored: m.status.to_ascii_uppercase(),
            });
        }
    }
    out
}

/// A member's health changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub lb: LoadBalancerId,
    pub member: PoolMemberId,
    pub up: bool,
}

/// Where a checker's checks come from (the cluster's claim answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub interface_name: String,
    /// CIDR of the checker's address.
    pub address: String,
    pub gateway: Ipv4Addr,
}

/// A running checker: its thread, namespace and probes. Dropping it stops
/// them (the namespace and veth go with the thread).
pub struct Checker {
    pub place: Place,
    targets: watch::Sender<Vec<Target>>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            // The probes end at once; a probe blocked in connect is bounded
            // by its timeout. Do not block the caller on it.
            std::thread::spawn(move || {
                let _ = t.join();
            });
        }
    }
}

fn run(cmd: &[&str]) -> io::Result<()> {
    let out = std::process::Command::new(cmd[0]).args(&cmd[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The calling thread's id (a `/proc/<tid>` entry, so a netns reference).
fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

impl Checker {
    /// Start checking `targets` of `lb` from `place`. Called from a thread
    /// in the host's namespace (the veth's host end stays there).
    pub fn start(
        lb: LoadBalancerId,
        place: Place,
        targets: Vec<Target>,
        verdicts: mpsc::UnboundedSender<Verdict>,
    ) -> io::Result<Checker> {
        let (ttx, trx) = watch::channel(targets);
        let (stx, srx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<i32>>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let p = place.clone();
        let inner = format!("{}p", place.interface_name);
        let thread = std::thread::Builder::new()
            .name(format!("health-{}", &place.interface_name[3..]))
            .spawn(move || {
                let ns = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map(|()| gettid())
                    .map_err(io::Error::from);
                let failed = ns.is_err();
                let _ = ready_tx.send(ns);
                if failed || !matches!(go_rx.recv(), Ok(Ok(()))) {
                    return;
                }
                let setup = (|| {
                    run(&["ip", "link", "set", "lo", "up"])?;
                    run(&["ip", "addr", "add", &p.address, "dev", &inner])?;
                    run(&["ip", "link", "set", &inner, "up"])?;
                    run(&["ip", "route", "add", "default", "via", &p.gateway.to_string()])
                })();
                if let Err(e) = setup {
                    tracing::warn!(%lb, error = %e, "health checker namespace setup failed");
                    return;
                }
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::warn!(%lb, error = %e, "health checker runtime");
                        return;
                    }
                };
                rt.block_on(probe_all(lb, trx, srx, verdicts));
            })?;
        // The thread is in its namespace: make the pair, its end in there.
        let tid = ready_rx.recv().map_err(|_| io::Error::other("health thread died"))??;
        let made = (|| {
            let _ = run(&["ip", "link", "del", &place.interface_name]);
            run(&[
                "ip",
                "link",
                "add",
                &place.interface_name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{}p", place.interface_name),
                "netns",
                &tid.to_string(),
            ])?;
            run(&["ip", "link", "set", &place.interface_name, "up"])
        })();
        let failed = made.as_ref().err().map(|e| io::Error::new(e.kind(), e.to_string()));
        let _ = go_tx.send(made);
        let checker = Checker { place, targets: ttx, stop: stx, thread: Some(thread) };
        match failed {
            Some(e) => Err(e),
            None => Ok(checker),
        }
    }

    /// New targets (a probe whose member and monitor are unchanged keeps
    /// its count of failures).
    pub fn update(&self, targets: Vec<Target>) {
        self.targets.send_if_modified(|cur| {
            if *cur == targets {
                return false;
            }
            *cur = targets;
            true
        });
    }
}

/// Runs one probe loop per target until `stop`, restarting only the loops
/// whose target changed.
async fn probe_all(
    lb: LoadBalancerId,
    mut targets: watch::Receiver<Vec<Target>>,
    mut stop: watch::Receiver<bool>,
    verdicts: mpsc::UnboundedSender<Verdict>,
) {
    let mut running: HashMap<PoolMemberId, (Target, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let want: Vec<Target> = targets.borrow_and_update().clone();
        running.retain(|id, (t, h)| {
            let keep = want.iter().any(|w| w.member == *id && w.same_probe(t));
            if !keep {
                h.abort();
            }
            keep
        });
        for t in want {
            if running.contains_key(&t.member) {
                continue;
            }
            let h = tokio::spawn(probe_loop(lb, t.clone(), verdicts.clone()));
            running.insert(t.member, (t, h));
        }
        tokio::select! {
            r = targets.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    for (_, (_, h)) in running {
        h.abort();
    }
}

async fn probe_loop(lb: LoadBalancerId, t: Target, verdicts: mpsc::UnboundedSender<Verdict>) {
    let delay = Duration::from_secs(u64::from(t.monitor.delay.max(1)));
    let timeout = Duration::from_secs(u64::from(t.monitor.timeout.max(1)));
    let retries = t.monitor.max_retries.max(1);
    let mut reported = match t.stored.as_str() {
        "UP" => Some(true),
        "DOWN" => Some(false),
        _ => None,
    };
    let mut fails = 0u32;
    let mut seq = 0u16;
    loop {
        seq = seq.wrapping_add(1);
        let ok = matches!(tokio::time::timeout(timeout, probe(&t, seq)).await, Ok(Ok(true)));
        let verdict = if ok {
            fails = 0;
            Some(true)
        } else {
            fails += 1;
            (fails >= retries).then_some(false)
        };
        if let Some(up) = verdict {
            if reported != Some(up) {
                tracing::info!(%lb, member = %t.member, addr = %t.addr, up, "member health changed");
                if verdicts.send(Verdict { lb, member: t.member, up }).is_err() {
                    return;
                }
                reported = Some(up);
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// One check of `t`: Ok(true) if the member is up.
async fn probe(t: &Target, seq: u16) -> io::Result<bool> {
    match t.monitor.kind() {
        Some(MonitorKind::Tcp) => {
            tokio::net::TcpStream::connect(t.addr).await?;
            Ok(true)
        }
        Some(MonitorKind::Http) => http_check(t).await,
        Some(MonitorKind::Ping) => ping(*t.addr.ip(), seq).await,
        None => Ok(false),
    }
}

async fn http_check(t: &Target) -> io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(t.addr).await?;
    let req = format!(
        "{} {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: midonet-health-check\r\nConnection: close\r\n\r\n",
        t.monitor.http_method.to_ascii_uppercase(),
        t.monitor.url_path,
        t.addr.ip()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 1024 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status_code(&buf).is_some_and(|c| t.monitor.expects(c)))
}

/// The status code of an HTTP/1.x status line.
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// An ICMP echo to `ip` from a raw socket; true when its reply comes.
/// (Tokio's datagram socket drives the raw socket: `send_to` and `recv`
/// are the same calls; what it receives is the whole IPv4 packet.)
async fn ping(ip: Ipv4Addr, seq: u16) -> io::Result<bool> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_nonblocking(true)?;
    let s = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))?;
    let id = (std::process::id() as u16) ^ 0x4d48;
    let mut req = [0u8; 16];
    req[0] = 8;
    req[4..6].copy_from_slice(&id.to_be_bytes());
    req[6..8].copy_from_slice(&seq.to_be_bytes());
    req[8..16].copy_from_slice(b"midohlth");
    let c = midonet_wire::checksum::checksum(&req);
    req[2..4].copy_from_slice(&c.to_be_bytes());
    s.send_to(&req, SocketAddrV4::new(ip, 0)).await?;
    let mut buf = [0u8; 1500];
    loop {
        let n = s.recv(&mut buf).await?;
        let p = &buf[..n];
        let from = p.get(12..16).map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]));
        if from == Some(ip) && is_echo_reply(p, id, seq) {
            return Ok(true);
        }
    }
}

/// Whether an IPv4 packet (raw socket: header included) is our echo reply.
fn is_echo_reply(p: &[u8], id: u16, seq: u16) -> bool {
    let Some(&vihl) = p.first() else { return false };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let Some(icmp) = p.get(ihl..ihl + 8) else { return false };
    icmp[0] == 0
        && u16::from_be_bytes([icmp[4], icmp[5]]) == id
        && u16::from_be_bytes([icmp[6], icmp[7]]) == seq
}

/// The agent's side of health checking: which load balancers to claim,
/// the checkers it runs, what to tell the cluster. Driven by the core task
/// (on every topology change and every second); returns the commands to
/// send.
pub struct Manager {
    me: midonet_model::HostId,
    checkers: BTreeMap<LoadBalancerId, Checker>,
    /// Claims sent and not answered yet.
    pending: std::collections::BTreeSet<LoadBalancerId>,
    verdicts: mpsc::UnboundedSender<Verdict>,
}

impl Manager {
    /// A manager for host `me`; verdicts go to `verdicts`.
    pub fn new(me: midonet_model::HostId, verdicts: mpsc::UnboundedSender<Verdict>) -> Manager {
        Manager { me, checkers: BTreeMap::new(), pending: Default::default(), verdicts }
    }

    /// The load balancers this host checks now.
    pub fn running(&self) -> impl Iterator<Item = LoadBalancerId> + '_ {
        self.checkers.keys().copied()
    }

    /// Reconcile with the topology and the checker keys' holders.
    pub fn tick(
        &mut self,
        t: &Topology,
        holders: &BTreeMap<LoadBalancerId, midonet_model::HostId>,
    ) -> Vec<crate::session::Command> {
        use crate::session::Command;
        let want = wanted(t);
        let mut out = Vec::new();
        let me = self.me;
        let lost: Vec<LoadBalancerId> = self
            .checkers
            .keys()
            .filter(|lb| !want.contains_key(lb) || holders.get(lb).is_some_and(|h| *h != me))
            .copied()
            .collect();
        for lb in lost {
            self.checkers.remove(&lb);
            if !want.contains_key(&lb) && holders.get(&lb) == Some(&me) {
                out.push(Command::HealthCheck { lb, claim: false });
            }
            tracing::info!(%lb, "health checks stopped here");
        }
        for (lb, targets) in want {
            let holder = holders.get(&lb).copied();
            if holder.is_some_and(|h| h != me) {
                continue;
            }
            // Running and still ours: new targets. Running with the key
            // gone (this host's session was renewed): claim it again.
            if let Some(c) = self.checkers.get(&lb) {
                c.update(targets);
                if holder.is_some() {
                    continue;
                }
            }
            if self.pending.insert(lb) {
                out.push(Command::HealthCheck { lb, claim: true });
            }
        }
        out
    }

    /// The cluster answered a claim of `lb`.
    pub fn claimed(
        &mut self,
        lb: LoadBalancerId,
        place: Option<Place>,
        t: &Topology,
    ) -> Vec<crate::session::Command> {
        use crate::session::Command;
        self.pending.remove(&lb);
        let Some(place) = place else {
            self.checkers.remove(&lb);
            return Vec::new();
        };
        if self.checkers.get(&lb).is_some_and(|c| c.place == place) {
            return Vec::new();
        }
        self.checkers.remove(&lb);
        let Some(targets) = wanted(t).remove(&lb) else {
            return vec![Command::HealthCheck { lb, claim: false }];
        };
        match Checker::start(lb, place, targets, self.verdicts.clone()) {
            Ok(c) => {
                tracing::info!(%lb, interface = %c.place.interface_name, "health checks run here");
                self.checkers.insert(lb, c);
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(%lb, error = %e, "cannot run health checks here; giving them back");
                vec![Command::HealthCheck { lb, claim: false }]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable\r\nx"), Some(503));
        assert_eq!(status_code(b"HTTP/2 200\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[test]
    fn echo_replies_are_ours_only() {
        let mut p = vec![0x45u8; 20];
        p.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert!(is_echo_reply(&p, 0x1234, 7));
        assert!(!is_echo_reply(&p, 0x1234, 8));
        assert!(!is_echo_reply(&p, 0x1235, 7));
        p[20] = 8;
        assert!(!is_echo_reply(&p, 0x1234, 7), "a request is no reply");
        assert!(!is_echo_reply(&p[..24], 0x1234, 7), "truncated");
    }

    #[test]
    fn wanted_needs_a_monitor_a_router_and_members() {
        let mut t = Topology::default();
        let router = midonet_model::Router {
            id: RouterId::random(),
            admin_state_up: true,
            ..Default::default()
        };
        let lb = midonet_model::LoadBalancer {
            id: LoadBalancerId::random(),
            admin_state_up: true,
            ..Default::default()
        };
        let hm: HealthMonitor = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::new_v4(), "type": "HTTP", "delay": 2,
        }))
        .expect("monitor");
        let pool: midonet_model::Pool = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::new_v4(), "loadBalancerId": lb.id, "healthMonitorId": hm.id,
        }))
        .expect("pool");
        let m: midonet_model::PoolMember = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::new_v4(), "poolId": pool.id, "address": "10.0.0.1",
            "protocolPort": 80,
        }))
        .expect("member");
        t.load_balancers.insert(lb.id, lb.clone());
        t.health_monitors.insert(hm.id, hm.clone());
        t.pools.insert(pool.id, pool.clone());
        t.pool_members.insert(m.id, m.clone());
        assert!(wanted(&t).is_empty(), "not attached to a router");
        let mut r = router.clone();
        r.load_balancer_id = Some(lb.id);
        t.routers.insert(r.id, r);
        let w = wanted(&t);
        assert_eq!(w.len(), 1);
        assert_eq!(w[&lb.id][0].addr, "10.0.0.1:80".parse().expect("addr"));
        t.health_monitors.get_mut(&hm.id).expect("hm").admin_state_up = false;
        assert!(wanted(&t).is_empty(), "monitor admin down");
        t.health_monitors.get_mut(&hm.id).expect("hm").admin_state_up = true;
        t.pool_members.get_mut(&m.id).expect("m").admin_state_up = false;
        assert!(wanted(&t).is_empty(), "no member to check");
    }
}
