//! Who checks a load balancer's members, and from where.
//!
//! ```text
//!  agent ── ClaimHealthCheck(lb) ──> leased key state/lb/<lb>/checker = {host, session}
//!                                    (refused while another host holds it)
//!                                    + the health-check router port of the lb's
//!                                      router, bound to <host>:mhc<lb8>, and its
//!                                      /30 route ([`HealthCheckPort`])
//!  agent ── ReportMemberStatus(lb, member, UP|DOWN) ──> pool_members/<id>.status
//!                                    (only the holder of lb's key, only lb's members)
//! ```
//!
//! One host checks a load balancer at a time, chosen by whoever claims a
//! free key first; the key lives under the holder's session lease, so when
//! that agent dies the key goes with its lease and another agent claims it
//! (agents see the key in their state stream and claim when it is gone).
//! The port moves with the key: the cluster rebinds it to the new holder's
//! interface in the same claim, so the members' replies to the checker's
//! address are routed to whichever host checks now.

use std::sync::Arc;

use midonet_model::topology::Stored;
use midonet_model::*;
use midonet_proto::Liveness;
use midonet_store::{Compare, CompareOp, LeaseId, Store, Txn, TxnOp};
use tonic::Status;

use crate::db::{backoff, CommitError, Tx};

/// What a claim of a leased key came to.
pub(crate) struct Claim {
    pub granted: bool,
    /// The other host holding the key, when refused.
    pub holder: Option<String>,
    pub revision: i64,
}

fn store_status(e: midonet_store::StoreError) -> Status {
    match e {
        midonet_store::StoreError::LeaseNotFound(_) => {
            Status::not_found("session expired: register again")
        }
        other => Status::unavailable(format!("{other}")),
    }
}

/// Claims (or gives back) leased key `key` for host `me` with `value`,
/// under lease `session`: one read of the holder, then a write guarded on
/// that read, so two hosts racing for a free key cannot both win. A key
/// held by an earlier session of the same host is taken over.
pub(crate) async fn claim_leased(
    store: &Arc<dyn Store>,
    key: &str,
    value: Vec<u8>,
    session: i64,
    me: &str,
    release: bool,
) -> Result<Claim, Status> {
    let key = key.as_bytes().to_vec();
    let holder_of = |v: &[u8]| serde_json::from_slice::<Liveness>(v).ok().map(|l| l.host_id);
    let cur = store.get(&key).await.map_err(store_status)?;
    let holder = cur.as_ref().and_then(|kv| holder_of(&kv.value));
    if holder.as_deref().is_some_and(|h| h != me) {
        return Ok(Claim { granted: false, holder, revision: 0 });
    }
    let guard = match &cur {
        None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        Some(kv) => Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision),
    };
    let op = if release {
        if cur.is_none() {
            return Ok(Claim { granted: true, holder: None, revision: 0 });
        }
        TxnOp::Delete { key: key.clone() }
    } else {
        TxnOp::Put { key: key.clone(), value, lease: Some(LeaseId(session)) }
    };
    let r = store.txn(Txn::new().when([guard]).and_then([op])).await.map_err(store_status)?;
    if !r.succeeded {
        // Someone else got there between the read and the write.
        let now = store.get(&key).await.map_err(store_status)?;
        let holder = now.and_then(|kv| holder_of(&kv.value));
        return Ok(Claim { granted: false, holder, revision: r.revision });
    }
    Ok(Claim { granted: true, holder: None, revision: r.revision })
}

fn api(e: crate::error::ApiError) -> Status {
    Status::unavailable(e.to_string())
}

/// Binds the health-check port of `lb` to `host` (creating it and its
/// route on the load balancer's router), or deletes both (`host` `None`).
/// Returns the commit revision (0: nothing to change).
pub(crate) async fn bind_port(
    store: &Arc<dyn Store>,
    lb: LoadBalancerId,
    host: Option<HostId>,
) -> Result<i64, Status> {
    let hc = HealthCheckPort::of(lb);
    for attempt in 0..8 {
        let mut tx = Tx::new(store.clone());
        let port_key = ObjectKind::Port.key(&[&hc.port_id.to_string()]);
        let route_key = ObjectKind::Route.key(&[&hc.route_id.to_string()]);
        let old: Option<Port> = tx.get(&port_key).await.map_err(api)?;
        match host {
            None => {
                if old.is_none() {
                    return Ok(0);
                }
                tx.delete(&port_key);
                tx.delete(&route_key);
            }
            Some(host) => {
                let Some(l) = tx
                    .get::<LoadBalancer>(&ObjectKind::LoadBalancer.key(&[&lb.to_string()]))
                    .await
                    .map_err(api)?
                else {
                    return Err(Status::not_found(format!("load balancer {lb} does not exist")));
                };
                let Some(router) = crate::api::kinds::router_of(&mut tx, &l).await.map_err(api)?
                else {
                    return Err(Status::failed_precondition(format!(
                        "load balancer {lb} is not attached to a router"
                    )));
                };
                let mut p = match old {
                    Some(p) if p.device_id == router.cast() => p,
                    _ => Port {
                        id: hc.port_id,
                        port_type: PortType::Router,
                        device_id: router.cast(),
                        admin_state_up: true,
                        tunnel_key: tx.alloc_tunnel_key().await.map_err(api)?,
                        port_address: Some(hc.router_ip),
                        network_address: Some(hc.network),
                        network_length: Some(30),
                        port_mac: Some(hc.router_mac),
                        ..Default::default()
                    },
                };
                if p.host_id == Some(host)
                    && p.interface_name.as_deref() == Some(&hc.interface_name)
                {
                    return Ok(0);
                }
                p.host_id = Some(host);
                p.interface_name = Some(hc.interface_name.clone());
                tx.put(&p.store_key(), &p);
                let route = Route {
                    id: hc.route_id,
                    router_id: router,
                    route_type: RouteType::Normal,
                    src_network_addr: std::net::Ipv4Addr::UNSPECIFIED,
                    src_network_length: 0,
                    dst_network_addr: hc.network,
                    dst_network_length: 30,
                    next_hop_port: Some(hc.port_id),
                    next_hop_gateway: None,
                    weight: 100,
                    learned: false,
                    attributes: None,
                };
                tx.put(&route.store_key(), &route);
            }
        }
        match tx.commit().await {
            Ok(rev) => return Ok(rev),
            Err(CommitError::Conflict) => backoff(attempt).await,
            Err(CommitError::Store(e)) => return Err(store_status(e)),
        }
    }
    Err(Status::aborted("health-check port: too many concurrent writes"))
}

/// Writes a member's status if `host` holds the checker key of `lb` and
/// the member is one of `lb`'s. Returns the revision (0: unchanged).
pub(crate) async fn set_member_status(
    store: &Arc<dyn Store>,
    lb: LoadBalancerId,
    member: PoolMemberId,
    host: HostId,
    status: &str,
) -> Result<i64, Status> {
    let checker = midonet_proto::keys::lb_checker(&lb.to_string());
    for attempt in 0..8 {
        let mut tx = Tx::new(store.clone());
        let holder = tx
            .get_raw(&checker)
            .await
            .map_err(api)?
            .and_then(|v| serde_json::from_slice::<Liveness>(&v).ok())
            .map(|l| l.host_id);
        if holder.as_deref() != Some(&host.to_string()) {
            return Err(Status::permission_denied(format!(
                "host {host} does not hold the health checks of load balancer {lb}"
            )));
        }
        let not_ours = || Status::not_found(format!("load balancer {lb} has no member {member}"));
        let key = ObjectKind::PoolMember.key(&[&member.to_string()]);
        let Some(mut m) = tx.get::<PoolMember>(&key).await.map_err(api)? else {
            return Err(not_ours());
        };
        let pool: Option<Pool> =
            tx.get(&ObjectKind::Pool.key(&[&m.pool_id.to_string()])).await.map_err(api)?;
        if pool.is_none_or(|p| p.load_balancer_id != lb) {
            return Err(not_ours());
        }
        if m.status == status {
            return Ok(0);
        }
        m.status = status.to_owned();
        tx.put(&key, &m);
        match tx.commit().await {
            Ok(rev) => return Ok(rev),
            Err(CommitError::Conflict) => backoff(attempt).await,
            Err(CommitError::Store(e)) => return Err(store_status(e)),
        }
    }
    Err(Status::aborted("member status: too many concurrent writes"))
}
