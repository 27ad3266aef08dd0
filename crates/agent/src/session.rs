//! The agent's session with the cluster: registration, liveness, the
//! topology subscription, and state writes — with failover between cluster
//! addresses.
//!
//! ```text
//!          ┌──────────── for each cluster address in turn (backoff 0.2 s → 2 s) ───────────┐
//!          │ connect ─> RegisterHost ─> session lease L                                    │
//!          │   ├─ keep-alive every ttl/3 ───────────── NOT_FOUND / error ─> start over ───┤
//!          │   ├─ Subscribe(last_revision + 1 | 0) ─ Snapshot/Delta/Resync ─> core events   │
//!          │   └─ commands from the core (port active, MAC/ARP, interfaces) ─> RPCs @L    │
//!          └──────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The session keeps the *desired* state it was asked to publish (active
//! ports, MAC and ARP entries, the interface list) and replays all of it on
//! each new session, because the previous session's lease-bound keys died
//! with it. The subscription resumes from the last revision the core
//! applied, so a reconnect costs only the deltas it missed (or a snapshot
//! when the cluster says they were compacted).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use midonet_model::HostId;
use midonet_proto::pb::{self, subscribe_response::Event};
use midonet_proto::TopologyClient;
use tokio::sync::{mpsc, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::metrics::Metrics;

/// What the core asks the session to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    PortActive {
        port: String,
        active: bool,
    },
    Mac {
        bridge: String,
        vlan: u16,
        mac: String,
        port: Option<String>,
    },
    Arp {
        device: String,
        ip: String,
        mac: Option<String>,
    },
    Interfaces(Vec<pb::Interface>),
    /// Claim (or give back) a SNAT port block; the answer comes back as
    /// [`Update::SnatBlock`].
    SnatBlock {
        block: midonet_state::BlockKey,
        claim: bool,
    },
    /// Claim (or give back) a load balancer's health checks; the answer
    /// comes back as [`Update::HealthCheck`].
    HealthCheck {
        lb: midonet_model::LoadBalancerId,
        claim: bool,
    },
    /// A health check's verdict on a member.
    MemberStatus {
        lb: midonet_model::LoadBalancerId,
        member: midonet_model::PoolMemberId,
        up: bool,
    },
}

/// What the session hands the core.
#[derive(Debug)]
pub enum Update {
    Snapshot(pb::Snapshot),
    Delta(pb::Delta),
    /// A session was (re)established with this lease.
    Connected {
        session: i64,
        address: String,
    },
    /// The cluster's answer to a [`Command::SnatBlock`] claim.
    SnatBlock {
        block: midonet_state::BlockKey,
        granted: bool,
    },
    /// The cluster's answer to a [`Command::HealthCheck`] claim: where the
    /// checks come from when granted.
    HealthCheck {
        lb: midonet_model::LoadBalancerId,
        place: Option<crate::health::Place>,
    },
}

/// Static inputs of a session.
#[derive(Debug, Clone)]
pub struct SessionCfg {
    pub host_id: HostId,
    pub host_name: String,
    pub addresses: Vec<String>,
    pub uris: Vec<String>,
    pub ttl_secs: i64,
    /// The datapath provider that runs (registered, so that peers know
    /// which tunnel encapsulation this host reads).
    pub datapath: &'static str,
    /// Sent on every call; `None` only works with an open cluster.
    pub credential: Option<midonet_proto::credential::Token>,
    /// TLS to the cluster (the `https://` URIs).
    pub tls: Option<ClientTlsConfig>,
}

/// Adds the host credential to every call.
#[derive(Clone)]
pub struct Credential(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Credential {
    fn of(token: Option<&midonet_proto::credential::Token>) -> Credential {
        // A token is hex, dots and a UUID: always valid metadata.
        Credential(token.and_then(|t| t.bearer().parse().ok()))
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert(midonet_proto::credential::METADATA_KEY, v.clone());
        }
        Ok(r)
    }
}

type Client = TopologyClient<InterceptedService<Channel, Credential>>;

/// Snapshot chunks gathered until the last one.
#[derive(Default)]
struct Chunks(Option<pb::Snapshot>);

impl Chunks {
    /// The whole snapshot once `chunk` is its last one. A chunk of another
    /// revision starts over (the cluster began a new snapshot).
    fn add(&mut self, chunk: pb::Snapshot) -> Option<pb::Snapshot> {
        let whole = match self.0.take() {
            Some(mut acc) if acc.revision == chunk.revision => {
                acc.kvs.extend(chunk.kvs);
                acc.more = chunk.more;
                acc
            }
            _ => chunk,
        };
        if whole.more {
            self.0 = Some(whole);
            None
        } else {
            Some(whole)
        }
    }
}

#[derive(Default)]
struct Desired {
    active: BTreeSet<String>,
    macs: BTreeMap<(String, u16, String), String>,
    arps: BTreeMap<(String, String), String>,
    interfaces: Vec<pb::Interface>,
    /// SNAT blocks held: claimed again by a new session (the cluster gives
    /// a block back to the host that held it).
    snat: BTreeSet<midonet_state::BlockKey>,
}

impl Desired {
    fn record(&mut self, c: &Command) {
        match c {
            Command::PortActive { port, active: true } => {
                self.active.insert(port.clone());
            }
            Command::PortActive { port, active: false } => {
                self.active.remove(port);
            }
            Command::Mac { bridge, vlan, mac, port: Some(p) } => {
                self.macs.insert((bridge.clone(), *vlan, mac.clone()), p.clone());
            }
            Command::Mac { bridge, vlan, mac, port: None } => {
                self.macs.remove(&(bridge.clone(), *vlan, mac.clone()));
            }
            Command::Arp { device, ip, mac: Some(m) } => {
                self.arps.insert((device.clone(), ip.clone()), m.clone());
            }
            Command::Arp { device, ip, mac: None } => {
                self.arps.remove(&(device.clone(), ip.clone()));
            }
            Command::Interfaces(list) => self.interfaces = list.clone(),
            // A claim is held once granted (see `granted`).
            Command::SnatBlock { claim: true, .. } => {}
            Command::SnatBlock { block, claim: false } => {
                self.snat.remove(block);
            }
            // The core claims again on its own when it sees no holder.
            Command::HealthCheck { .. } | Command::MemberStatus { .. } => {}
        }
    }

    /// The answer to a claim: a granted block is claimed again by later
    /// sessions, a refused one is not.
    fn granted(&mut self, u: &Update) {
        if let Update::SnatBlock { block, granted } = u {
            if *granted {
                self.snat.insert(*block);
            } else {
                self.snat.remove(block);
            }
        }
    }

    fn replay(&self) -> Vec<Command> {
        let mut out: Vec<Command> = self
            .active
            .iter()
            .map(|p| Command::PortActive { port: p.clone(), active: true })
            .collect();
        out.extend(self.macs.iter().map(|((b, v, m), p)| Command::Mac {
            bridge: b.clone(),
            vlan: *v,
            mac: m.clone(),
            port: Some(p.clone()),
        }));
        out.extend(self.arps.iter().map(|((d, i), m)| Command::Arp {
            device: d.clone(),
            ip: i.clone(),
            mac: Some(m.clone()),
        }));
        out.extend(self.snat.iter().map(|b| Command::SnatBlock { block: *b, claim: true }));
        out
    }
}

/// Why one session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("rpc failed")]
    Rpc(#[from] tonic::Status),
    #[error("connect failed")]
    Connect(#[from] tonic::transport::Error),
    #[error("subscription ended")]
    StreamEnded,
    #[error("the agent is stopping")]
    Stopping,
}

async fn send_command(
    client: &mut Client,
    host: &str,
    session: i64,
    c: &Command,
) -> Result<Option<Update>, tonic::Status> {
    match c {
        Command::PortActive { port, active } => {
            let r = client
                .set_port_active(pb::SetPortActiveRequest {
                    session,
                    host_id: host.into(),
                    port_id: port.clone(),
                    active: *active,
                })
                .await;
            refused_is_not_fatal(r, c)?;
        }
        Command::Mac { bridge, vlan, mac, port } => {
            let r = client
                .publish_mac(pb::PublishMacRequest {
                    session,
                    bridge_id: bridge.clone(),
                    vlan: u32::from(*vlan),
                    mac: mac.clone(),
                    port_id: port.clone().unwrap_or_default(),
                    delete: port.is_none(),
                })
                .await;
            refused_is_not_fatal(r, c)?;
        }
        Command::Arp { device, ip, mac } => {
            let r = client
                .publish_arp(pb::PublishArpRequest {
                    session,
                    device_id: device.clone(),
                    ip: ip.clone(),
                    mac: mac.clone().unwrap_or_default(),
                    delete: mac.is_none(),
                })
                .await;
            refused_is_not_fatal(r, c)?;
        }
        Command::Interfaces(list) => {
            client
                .report_interfaces(pb::ReportInterfacesRequest {
                    session,
                    host_id: host.into(),
                    interfaces: list.clone(),
                })
                .await?;
        }
        Command::SnatBlock { block, claim } => {
            let r = client
                .claim_snat_block(pb::ClaimSnatBlockRequest {
                    session,
                    host_id: host.into(),
                    device_id: block.device.to_string(),
                    ip: block.ip.to_string(),
                    block: u32::from(block.block),
                    release: !claim,
                })
                .await?
                .into_inner();
            if *claim {
                if !r.granted {
                    tracing::debug!(?block, holder = %r.holder, "SNAT block held elsewhere");
                }
                return Ok(Some(Update::SnatBlock { block: *block, granted: r.granted }));
            }
        }
        Command::HealthCheck { lb, claim } => {
            let r = client
                .claim_health_check(pb::ClaimHealthCheckRequest {
                    session,
                    host_id: host.into(),
                    load_balancer_id: lb.to_string(),
                    release: !claim,
                })
                .await;
            // A load balancer that went away meanwhile: nothing to check.
            let r = match r {
                Ok(r) => r.into_inner(),
                Err(e)
                    if matches!(
                        e.code(),
                        tonic::Code::NotFound | tonic::Code::FailedPrecondition
                    ) && *claim =>
                {
                    tracing::debug!(%lb, error = %e, "health checks not claimed");
                    return Ok(Some(Update::HealthCheck { lb: *lb, place: None }));
                }
                Err(e) => return Err(e),
            };
            if !*claim {
                return Ok(None);
            }
            let place = r.granted.then(|| crate::health::Place {
                interface_name: r.interface_name.clone(),
                address: r.address.clone(),
                gateway: r.gateway.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            });
            if !r.granted {
                tracing::debug!(%lb, holder = %r.holder, "health checks held elsewhere");
            }
            return Ok(Some(Update::HealthCheck { lb: *lb, place }));
        }
        Command::MemberStatus { lb, member, up } => {
            let r = client
                .report_member_status(pb::ReportMemberStatusRequest {
                    session,
                    host_id: host.into(),
                    load_balancer_id: lb.to_string(),
                    member_id: member.to_string(),
                    status: if *up { "UP" } else { "DOWN" }.into(),
                })
                .await;
            // Refused (the checks moved, the member left): not a session
            // failure.
            if let Err(e) = r {
                if matches!(e.code(), tonic::Code::PermissionDenied | tonic::Code::NotFound) {
                    tracing::info!(%lb, %member, error = %e, "member status not written");
                } else {
                    return Err(e);
                }
            }
        }
    }
    Ok(None)
}

/// A state write the cluster refused (a port unbound meanwhile, an entry
/// another host owns) is logged and dropped: the session goes on. Any other
/// failure ends it.
fn refused_is_not_fatal<T>(
    r: Result<tonic::Response<T>, tonic::Status>,
    c: &Command,
) -> Result<(), tonic::Status> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tonic::Code::PermissionDenied => {
            tracing::warn!(command = ?c, error = %e.message(), "the cluster refused a state write");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Runs sessions until `stop` turns true. `applied` is the last revision
/// the core applied (shared so a resume asks for exactly what is missing).
pub async fn run(
    cfg: SessionCfg,
    applied: Arc<AtomicI64>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    updates: mpsc::Sender<Update>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut desired = Desired::default();
    // The lease of the last session, tried again on the next connection.
    let mut held: Option<Held> = None;
    let mut backoff = Duration::from_millis(200);
    let mut idx = 0usize;
    let mut failures = 0usize;
    let mut sessions_seen = metrics.sessions.get();
    loop {
        if *stop.borrow() {
            return;
        }
        let uri = cfg.uris[idx % cfg.uris.len()].clone();
        let r = one_session(
            &cfg,
            &uri,
            &applied,
            &mut commands,
            &updates,
            &mut desired,
            &mut held,
            &metrics,
            &mut stop,
        )
        .await;
        metrics.cluster_connected.set(0);
        match r {
            Err(SessionEnd::Stopping) => return,
            Err(e) => {
                let cause = match &e {
                    SessionEnd::Rpc(s) => format!("{}: {}", s.code(), s.message()),
                    other => error_chain(other),
                };
                failures += 1;
                // Loud for the first round over the list, then quieter
                // while the cluster stays away.
                if failures <= cfg.uris.len() {
                    tracing::warn!(cluster = %uri, %cause, "cluster session ended; failing over");
                } else {
                    tracing::debug!(cluster = %uri, %cause, "cluster still unreachable");
                }
            }
            Ok(()) => {}
        }
        if metrics.sessions.get() > sessions_seen {
            // The session had been established: start a fresh streak.
            sessions_seen = metrics.sessions.get();
            failures = 1;
            backoff = Duration::from_millis(200);
        }
        idx += 1;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        // Cycle through the whole list quickly, then slow down.
        if idx.is_multiple_of(cfg.uris.len()) {
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// `error: cause: cause...`, like anyhow's `{:#}`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// A session lease the agent holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    session: i64,
    ttl_secs: i64,
}

#[allow(clippy::too_many_arguments)]
async fn one_session(
    cfg: &SessionCfg,
    uri: &str,
    applied: &AtomicI64,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    updates: &mpsc::Sender<Update>,
    desired: &mut Desired,
    held: &mut Option<Held>,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SessionEnd> {
    let host = cfg.host_id.to_string();
    let mut endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(SessionEnd::Connect)?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = &cfg.tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(SessionEnd::Connect)?;
    }
    // Until registered there is nothing to withdraw: stopping may cut the
    // connection attempt short.
    let channel = tokio::select! {
        c = endpoint.connect() => c?,
        _ = stop.changed() => return Err(SessionEnd::Stopping),
    };
    let mut client =
        TopologyClient::with_interceptor(channel, Credential::of(cfg.credential.as_ref()))
            .max_decoding_message_size(midonet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(midonet_proto::MAX_MESSAGE_BYTES);
    // Drain commands that queued while disconnected into the desired state:
    // the replay below publishes their net effect.
    while let Ok(c) = commands.try_recv() {
        desired.record(&c);
    }
    // The last session, if the cluster still has it.
    let kept = match *held {
        Some(h) => {
            let ka = client
                .keep_alive(pb::KeepAliveRequest { session: h.session, host_id: host.clone() });
            match tokio::select! { r = ka => r, _ = stop.changed() => return Err(SessionEnd::Stopping) }
            {
                Ok(_) => Some(h),
                Err(e) if e.code() == tonic::Code::NotFound => None,
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    let reg = match kept {
        Some(h) => {
            tracing::info!(cluster = %uri, session = h.session, "session resumed on a new connection");
            if !desired.interfaces.is_empty() {
                send_command(
                    &mut client,
                    &host,
                    h.session,
                    &Command::Interfaces(desired.interfaces.clone()),
                )
                .await?;
            }
            h
        }
        None => {
            let register = client.register_host(pb::RegisterHostRequest {
                host_id: host.clone(),
                name: cfg.host_name.clone(),
                addresses: cfg.addresses.clone(),
                interfaces: desired.interfaces.clone(),
                ttl_secs: cfg.ttl_secs,
                datapath: cfg.datapath.into(),
            });
            let reg = tokio::select! {
                r = register => r.inspect_err(|e| {
                    if e.code() == tonic::Code::Unauthenticated {
                        tracing::error!(cluster = %uri, "the cluster refuses this host's credential (or its absence): enroll the host with `midonet host enroll --host-id {host}` and put the credential in credential_file");
                    }
                })?.into_inner(),
                _ = stop.changed() => return Err(SessionEnd::Stopping),
            };
            tracing::info!(cluster = %uri, session = reg.session, ttl = reg.ttl_secs, "registered with cluster");
            Held { session: reg.session, ttl_secs: reg.ttl_secs }
        }
    };
    *held = Some(reg);
    let session = reg.session;
    metrics.sessions.inc();
    metrics.cluster_connected.set(1);
    let _ = updates.send(Update::Connected { session, address: uri.to_owned() }).await;
    for c in desired.replay() {
        if let Some(u) = send_command(&mut client, &host, session, &c).await? {
            desired.granted(&u);
            let _ = updates.send(u).await;
        }
    }

    let from = applied.load(Ordering::Acquire);
    let from = if from > 0 { from + 1 } else { 0 };
    let mut stream = client
        .subscribe(pb::SubscribeRequest { from_revision: from, host_id: host.clone() })
        .await?
        .into_inner();
    let mut keepalive =
        tokio::time::interval(Duration::from_secs((reg.ttl_secs / 3).max(1) as u64));
    keepalive.tick().await;
    let mut chunks = Chunks::default();
    // SNAT block claims in flight: each answer waits on a store commit,
    // so they go side by side (the store commits them together) rather
    // than one after another behind the commands queue.
    let mut claims: tokio::task::JoinSet<Result<Option<Update>, tonic::Status>> =
        tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => {
                // Best effort: tell the cluster our ports are gone now
                // rather than when the lease times out.
                for p in desired.active.clone() {
                    let _ = send_command(&mut client, &host, session, &Command::PortActive { port: p, active: false }).await;
                }
                return Err(SessionEnd::Stopping);
            }
            msg = stream.next() => match msg {
                Some(Ok(m)) => {
                    let up = match m.event {
                        Some(Event::Snapshot(s)) => chunks.add(s).map(Update::Snapshot),
                        Some(Event::Delta(d)) => Some(Update::Delta(d)),
                        Some(Event::Resync(r)) => {
                            tracing::info!(compact_revision = r.compact_revision, "cluster asks for a resync; a snapshot follows");
                            None
                        }
                        None => None,
                    };
                    if let Some(u) = up {
                        if updates.send(u).await.is_err() {
                            return Err(SessionEnd::Stopping);
                        }
                    }
                }
                Some(Err(s)) => return Err(SessionEnd::Rpc(s)),
                None => return Err(SessionEnd::StreamEnded),
            },
            _ = keepalive.tick() => {
                if let Err(e) = client.keep_alive(pb::KeepAliveRequest { session, host_id: host.clone() }).await {
                    if e.code() == tonic::Code::NotFound {
                        *held = None;
                    }
                    return Err(e.into());
                }
            }
            Some(done) = claims.join_next(), if !claims.is_empty() => {
                let answer = done.map_err(|e| tonic::Status::internal(e.to_string()))?;
                if let Some(u) = answer? {
                    desired.granted(&u);
                    if updates.send(u).await.is_err() {
                        return Err(SessionEnd::Stopping);
                    }
                }
            }
            c = commands.recv() => match c {
                Some(c @ Command::SnatBlock { claim: true, .. }) => {
                    desired.record(&c);
                    let (mut client, host) = (client.clone(), host.clone());
                    claims.spawn(async move { send_command(&mut client, &host, session, &c).await });
                }
                Some(c) => {
                    desired.record(&c);
                    if let Some(u) = send_command(&mut client, &host, session, &c).await? {
                        desired.granted(&u);
                        if updates.send(u).await.is_err() {
                            return Err(SessionEnd::Stopping);
                        }
                    }
                }
                None => return Err(SessionEnd::Stopping),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_chunks_reach_the_core_whole() {
        let chunk = |rev: i64, key: &str, more: bool| pb::Snapshot {
            revision: rev,
            kvs: vec![pb::KeyValue { key: key.into(), value: Vec::new(), mod_revision: 1 }],
            more,
        };
        let mut c = Chunks::default();
        assert!(c.add(chunk(5, "a", true)).is_none());
        assert!(c.add(chunk(5, "b", true)).is_none());
        let whole = c.add(chunk(5, "c", false)).expect("complete");
        let keys: Vec<&str> = whole.kvs.iter().map(|k| k.key.as_str()).collect();
        assert_eq!((whole.revision, keys, whole.more), (5, vec!["a", "b", "c"], false));
        // A snapshot cut short (a resync started another) is dropped.
        assert!(c.add(chunk(6, "x", true)).is_none());
        let whole = c.add(chunk(7, "y", false)).expect("the newer one, alone");
        assert_eq!(whole.kvs.len(), 1);
    }

    #[test]
    fn desired_state_replays_only_the_net_effect() {
        let mut d = Desired::default();
        d.record(&Command::PortActive { port: "a".into(), active: true });
        d.record(&Command::PortActive { port: "b".into(), active: true });
        d.record(&Command::PortActive { port: "a".into(), active: false });
        d.record(&Command::Mac {
            bridge: "br".into(),
            vlan: 0,
            mac: "m".into(),
            port: Some("p1".into()),
        });
        d.record(&Command::Mac {
            bridge: "br".into(),
            vlan: 0,
            mac: "m".into(),
            port: Some("p2".into()),
        });
        d.record(&Command::Arp { device: "r".into(), ip: "1.2.3.4".into(), mac: Some("x".into()) });
        d.record(&Command::Arp { device: "r".into(), ip: "1.2.3.4".into(), mac: None });
        let r = d.replay();
        assert_eq!(
            r,
            vec![
                Command::PortActive { port: "b".into(), active: true },
                Command::Mac {
                    bridge: "br".into(),
                    vlan: 0,
                    mac: "m".into(),
                    port: Some("p2".into())
                },
            ]
        );
    }
}
