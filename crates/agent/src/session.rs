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
use tonic::transport::{Channel, Endpoint};

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
    client: &mut TopologyClient<Channel>,
    host: &str,
    session: i64,
    c: &Command,
) -> Result<Option<Update>, tonic::Status> {
    match c {
        Command::PortActive { port, active } => {
            client
                .set_port_active(pb::SetPortActiveRequest {
                    session,
                    host_id: host.into(),
                    port_id: port.clone(),
                    active: *active,
                })
                .await?;
        }
        Command::Mac { bridge, vlan, mac, port } => {
            client
                .publish_mac(pb::PublishMacRequest {
                    session,
                    bridge_id: bridge.clone(),
                    vlan: u32::from(*vlan),
                    mac: mac.clone(),
                    port_id: port.clone().unwrap_or_default(),
                    delete: port.is_none(),
                })
                .await?;
        }
        Command::Arp { device, ip, mac } => {
            client
                .publish_arp(pb::PublishArpRequest {
                    session,
                    device_id: device.clone(),
                    ip: ip.clone(),
                    mac: mac.clone().unwrap_or_default(),
                    delete: mac.is_none(),
                })
                .await?;
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
            &metrics,
            &mut stop,
        )
        .await;
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
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn one_session(
    cfg: &SessionCfg,
    uri: &str,
    applied: &AtomicI64,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    updates: &mpsc::Sender<Update>,
    desired: &mut Desired,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SessionEnd> {
    let host = cfg.host_id.to_string();
    let endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(SessionEnd::Connect)?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    // Until registered there is nothing to withdraw: stopping may cut the
    // connection attempt short.
    let channel = tokio::select! {
        c = endpoint.connect() => c?,
        _ = stop.changed() => return Err(SessionEnd::Stopping),
    };
    let mut client = TopologyClient::new(channel);
    // Drain commands that queued while disconnected into the desired state:
    // the replay below publishes their net effect.
    while let Ok(c) = commands.try_recv() {
        desired.record(&c);
    }
    let register = client.register_host(pb::RegisterHostRequest {
        host_id: host.clone(),
        name: cfg.host_name.clone(),
        addresses: cfg.addresses.clone(),
        interfaces: desired.interfaces.clone(),
        ttl_secs: cfg.ttl_secs,
    });
    let reg = tokio::select! {
        r = register => r?.into_inner(),
        _ = stop.changed() => return Err(SessionEnd::Stopping),
    };
    let session = reg.session;
    metrics.sessions.inc();
    tracing::info!(cluster = %uri, session, ttl = reg.ttl_secs, "registered with cluster");
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
                        Some(Event::Snapshot(s)) => Some(Update::Snapshot(s)),
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
                client.keep_alive(pb::KeepAliveRequest { session, host_id: host.clone() }).await?;
            }
            c = commands.recv() => match c {
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
