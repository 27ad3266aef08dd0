//! The calls of the topology service: each checks its input
//! ([`crate::agent_input`]) and its caller ([`super::access`]) before it
//! writes ([`super::writes`]) or starts a subscription ([`super::feed`]).

use midonet_model::{HostId, ObjectKind};
use midonet_proto::pb;
use midonet_proto::{keys, Liveness, TopologyService};
use midonet_store::{LeaseId, TxnOp};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::access::{why, Caller};
use super::{json, status, SubscribeStream, TopologyServiceImpl, SUBSCRIBER_BUFFER};
use crate::agent_input;
use crate::lb_checker;

#[tonic::async_trait]
impl TopologyService for TopologyServiceImpl {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = self.caller("Subscribe", &request).await?;
        let req = request.into_inner();
        if let (Caller::Host(me), Ok(asked)) = (caller, req.host_id.parse::<HostId>()) {
            if me != asked {
                return Err(self.denied(
                    "Subscribe",
                    why::OTHER_HOST,
                    "a host acts only for itself",
                ));
            }
        }
        tracing::debug!(host = %req.host_id, from = req.from_revision, "subscribe");
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        tokio::spawn(self.clone().feed(req.from_revision, tx));
        Ok(Response::new(SubscribeStream::new(rx)))
    }

    async fn register_host(
        &self,
        request: Request<pb::RegisterHostRequest>,
    ) -> Result<Response<pb::RegisterHostResponse>, Status> {
        let reg = agent_input::register_host(request.get_ref())?;
        self.caller_as("RegisterHost", &request, reg.host).await?;
        let host = reg.host;

        let lease = self.store.grant_lease(reg.ttl_secs).await.map_err(status)?;
        let alive = &Liveness {
            datapath: reg.datapath.clone(),
            ..Liveness::of(host.to_string(), lease.id.0)
        };
        let reg = &reg;
        let resp = self
            .write_indexed(|mut w| async move {
                // Keep what operators set on the host (weights, limits):
                // merge into the stored JSON instead of overwriting it.
                let host_key = ObjectKind::Host.key(&[&host.to_string()]);
                let stored = self.store.get(host_key.as_bytes()).await.map_err(status)?;
                let host_bytes =
                    agent_input::host_record(stored.as_ref().map(|kv| kv.value.as_slice()), reg);
                w.ops.push(TxnOp::put_with_lease(
                    keys::host_alive(&host.to_string()),
                    json(alive),
                    lease.id,
                ));
                w.set(host_key, stored.as_ref(), Some(host_bytes));
                self.sync_interfaces(&mut w, host, &reg.interfaces).await?;
                Ok(w)
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                // Do not leave the lease behind for its TTL.
                let _ = self.store.revoke_lease(lease.id).await;
                return Err(e);
            }
        };
        tracing::info!(%host, name = %reg.name, session = lease.id.0, ttl = lease.ttl_secs, "host registered");
        Ok(Response::new(pb::RegisterHostResponse {
            session: lease.id.0,
            ttl_secs: lease.ttl_secs,
            revision: resp.unwrap_or_default(),
        }))
    }

    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let caller = self.caller("KeepAlive", &request).await?;
        let req = request.into_inner();
        self.session_host("KeepAlive", caller, req.session).await?;
        let ttl = self.store.keep_alive(LeaseId(req.session)).await.map_err(status)?;
        Ok(Response::new(pb::KeepAliveResponse { ttl_secs: ttl }))
    }

    async fn report_interfaces(
        &self,
        request: Request<pb::ReportInterfacesRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        let (host, ifaces) = agent_input::report_interfaces(request.get_ref())?;
        let caller = self.caller_as("ReportInterfaces", &request, host).await?;
        self.session_host("ReportInterfaces", caller, request.get_ref().session).await?;
        let ifaces = &ifaces;
        let resp = self
            .write_indexed(|mut w| async move {
                self.sync_interfaces(&mut w, host, ifaces).await?;
                Ok(w)
            })
            .await?;
        match resp {
            Some(revision) => Ok(Response::new(pb::Ack { revision })),
            None => self.unchanged().await,
        }
    }

    async fn set_port_active(
        &self,
        request: Request<pb::SetPortActiveRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        const RPC: &str = "SetPortActive";
        let req = request.get_ref();
        let w = agent_input::set_port_active(req)?;
        let host = req.host_id.parse::<HostId>().map_err(|_| {
            Status::invalid_argument(format!("host_id `{}` is not a UUID", req.host_id))
        })?;
        let caller = self.caller_as(RPC, &request, host).await?;
        self.session_host(RPC, caller, req.session).await?;
        if caller != Caller::Anyone {
            let bound = self.port(&req.port_id).await?.is_some_and(|p| p.host_id == Some(host));
            if req.active && !bound {
                return Err(self.denied(
                    RPC,
                    why::PORT_NOT_BOUND,
                    "the port is not bound to this host",
                ));
            }
            if !req.active && !bound {
                // Clearing: only the host that set it (the port may have
                // been unbound since).
                match self.read::<Liveness>(&w.key).await? {
                    None => return self.unchanged().await,
                    Some(l) if l.host_id == host.to_string() => {}
                    Some(_) => {
                        return Err(self.denied(
                            RPC,
                            why::OTHERS_ENTRY,
                            "the port is not bound to this host",
                        ))
                    }
                }
            }
        }
        self.state_write(w, req.session).await
    }

    async fn publish_mac(
        &self,
        request: Request<pb::PublishMacRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        const RPC: &str = "PublishMac";
        let req = request.get_ref();
        let mut w = agent_input::publish_mac(req)?;
        let caller = self.caller(RPC, &request).await?;
        let Some(me) = self.session_host(RPC, caller, req.session).await? else {
            return self.state_write(w, req.session).await;
        };
        let bridge = req.bridge_id.to_ascii_lowercase();
        match &mut w.value {
            Some(v) => {
                if let Err(reason) =
                    self.may_publish_mac(me, &bridge, &req.port_id.to_ascii_lowercase()).await
                {
                    return Err(self.denied(
                        RPC,
                        reason,
                        "the port is not this host's port on that bridge",
                    ));
                }
                *v = json(&midonet_proto::MacEntry {
                    port_id: req.port_id.to_ascii_lowercase(),
                    host_id: me.to_string(),
                });
            }
            None => match self.read::<midonet_proto::MacEntry>(&w.key).await? {
                None => return self.unchanged().await,
                Some(e) if e.host_id == me.to_string() => {}
                Some(e) => {
                    if self.may_publish_mac(me, &bridge, &e.port_id).await.is_err() {
                        return Err(self.denied(
                            RPC,
                            why::OTHERS_ENTRY,
                            "the entry is another host's",
                        ));
                    }
                }
            },
        }
        self.state_write(w, req.session).await
    }

    async fn publish_arp(
        &self,
        request: Request<pb::PublishArpRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        const RPC: &str = "PublishArp";
        let req = request.get_ref();
        let mut w = agent_input::publish_arp(req)?;
        let caller = self.caller(RPC, &request).await?;
        let Some(me) = self.session_host(RPC, caller, req.session).await? else {
            return self.state_write(w, req.session).await;
        };
        let device = req.device_id.to_ascii_lowercase();
        let exists = |kind: ObjectKind| {
            let key = kind.key(&[&device]);
            let store = self.store.clone();
            async move { store.get(key.as_bytes()).await.map(|kv| kv.is_some()).map_err(status) }
        };
        if !exists(ObjectKind::Router).await? && !exists(ObjectKind::Bridge).await? {
            return Err(self.denied(RPC, why::NO_DEVICE, "no such router or bridge"));
        }
        match &mut w.value {
            Some(v) => {
                let mut e: midonet_proto::ArpEntry =
                    serde_json::from_slice(v).expect("agent_input writes an ArpEntry");
                e.host_id = me.to_string();
                *v = json(&e);
            }
            None => match self.read::<midonet_proto::ArpEntry>(&w.key).await? {
                None => return self.unchanged().await,
                Some(e) if e.host_id.is_empty() || e.host_id == me.to_string() => {}
                // Another host's entry: it stays while that host lives.
                Some(e) if self.host_alive(&e.host_id).await? => {
                    return Err(self.denied(RPC, why::OTHERS_ENTRY, "the entry is another host's"));
                }
                Some(_) => {}
            },
        }
        self.state_write(w, req.session).await
    }

    async fn claim_snat_block(
        &self,
        request: Request<pb::ClaimSnatBlockRequest>,
    ) -> Result<Response<pb::ClaimSnatBlockResponse>, Status> {
        let req = request.get_ref();
        let c = agent_input::claim_snat_block(req)?;
        let caller = self.caller_as("ClaimSnatBlock", &request, c.host).await?;
        self.session_host("ClaimSnatBlock", caller, req.session).await?;
        let me = c.host.to_string();
        let got =
            lb_checker::claim_leased(&self.store, &c.key, c.value, req.session, &me, c.release)
                .await?;
        Ok(Response::new(pb::ClaimSnatBlockResponse {
            granted: got.granted,
            holder: got.holder.unwrap_or_default(),
            revision: got.revision,
        }))
    }

    async fn claim_health_check(
        &self,
        request: Request<pb::ClaimHealthCheckRequest>,
    ) -> Result<Response<pb::ClaimHealthCheckResponse>, Status> {
        let req = request.get_ref();
        let c = agent_input::claim_health_check(req)?;
        let caller = self.caller_as("ClaimHealthCheck", &request, c.host).await?;
        self.session_host("ClaimHealthCheck", caller, req.session).await?;
        let me = c.host.to_string();
        let got =
            lb_checker::claim_leased(&self.store, &c.key, c.value, req.session, &me, c.release)
                .await?;
        let hc = midonet_model::HealthCheckPort::of(c.lb);
        let mut out = pb::ClaimHealthCheckResponse {
            granted: got.granted,
            holder: got.holder.unwrap_or_default(),
            revision: got.revision,
            ..Default::default()
        };
        if !got.granted {
            return Ok(Response::new(out));
        }
        let rev = lb_checker::bind_port(&self.store, c.lb, (!c.release).then_some(c.host)).await;
        let rev = match rev {
            Ok(r) => r,
            Err(e) => {
                // No port, no checks: give the key back so that the claim
                // is all or nothing.
                if !c.release {
                    let v = Vec::new();
                    let _ =
                        lb_checker::claim_leased(&self.store, &c.key, v, req.session, &me, true)
                            .await;
                }
                return Err(e);
            }
        };
        out.revision = out.revision.max(rev);
        if !c.release {
            out.interface_name = hc.interface_name;
            out.address = format!("{}/30", hc.checker_ip);
            out.gateway = hc.router_ip.to_string();
        }
        Ok(Response::new(out))
    }

    async fn report_member_status(
        &self,
        request: Request<pb::ReportMemberStatusRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        let r = agent_input::report_member_status(request.get_ref())?;
        let caller = self.caller_as("ReportMemberStatus", &request, r.host).await?;
        self.session_host("ReportMemberStatus", caller, request.get_ref().session).await?;
        let revision =
            lb_checker::set_member_status(&self.store, r.lb, r.member, r.host, r.status).await?;
        Ok(Response::new(pb::Ack { revision }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::start;
    use super::*;
    use midonet_model::BridgeId;

    #[tokio::test]
    async fn bad_ids_are_invalid_argument() {
        let (_store, mut client, _stop) = start().await;
        let e = client
            .register_host(pb::RegisterHostRequest { host_id: "nope".into(), ..Default::default() })
            .await
            .expect_err("bad id");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = client
            .publish_arp(pb::PublishArpRequest {
                session: 1,
                device_id: BridgeId::random().to_string(),
                ip: "x".into(),
                mac: String::new(),
                delete: false,
            })
            .await
            .expect_err("bad ip");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_snat_block_has_one_holder_and_comes_back_to_it() {
        let (store, mut client, _stop) = start().await;
        let session = |name: &'static str| {
            let mut c = client.clone();
            async move {
                let host = HostId::random();
                let r = c
                    .register_host(pb::RegisterHostRequest {
                        host_id: host.to_string(),
                        name: name.into(),
                        ttl_secs: 10,
                        ..Default::default()
                    })
                    .await
                    .expect("register")
                    .into_inner();
                (host, r.session)
            }
        };
        let (a, sa) = session("a").await;
        let (b, sb) = session("b").await;
        let router = uuid::Uuid::new_v4().to_string();
        let claim = |host: HostId, session: i64, release: bool| pb::ClaimSnatBlockRequest {
            session,
            host_id: host.to_string(),
            device_id: router.clone(),
            ip: "203.0.113.1".into(),
            block: 17,
            release,
        };
        let got = client.claim_snat_block(claim(a, sa, false)).await.expect("claim").into_inner();
        assert!(got.granted, "a free block is granted");
        let key = keys::snat_block(&router, "203.0.113.1", 17);
        let kv = store.get(key.as_bytes()).await.expect("get").expect("claimed");
        assert_eq!(kv.lease, Some(LeaseId(sa)), "held under the claimer's session");
        let got = client.claim_snat_block(claim(b, sb, false)).await.expect("claim").into_inner();
        assert!(!got.granted, "held elsewhere");
        assert_eq!(got.holder, a.to_string());
        let got = client.claim_snat_block(claim(b, sb, true)).await.expect("release").into_inner();
        assert!(!got.granted, "only the holder gives it back");
        assert!(store.get(key.as_bytes()).await.expect("get").is_some());
        // The same host in a new session (an agent restart) takes it over.
        let r = client
            .register_host(pb::RegisterHostRequest {
                host_id: a.to_string(),
                name: "a".into(),
                ttl_secs: 10,
                ..Default::default()
            })
            .await
            .expect("register again")
            .into_inner();
        let got =
            client.claim_snat_block(claim(a, r.session, false)).await.expect("claim").into_inner();
        assert!(got.granted, "the holder's new session gets its block back");
        let kv = store.get(key.as_bytes()).await.expect("get").expect("claimed");
        assert_eq!(kv.lease, Some(LeaseId(r.session)));
        let got =
            client.claim_snat_block(claim(a, r.session, true)).await.expect("release").into_inner();
        assert!(got.granted);
        assert!(store.get(key.as_bytes()).await.expect("get").is_none(), "released");
        let bad = pb::ClaimSnatBlockRequest { block: 1024, ..claim(a, r.session, false) };
        let e = client.claim_snat_block(bad).await.expect_err("block out of range");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("block"), "{}", e.message());
    }

    #[tokio::test]
    async fn one_host_checks_a_load_balancer_and_only_it_reports_status() {
        use midonet_model::topology::Stored;
        use midonet_model::*;
        let (store, mut client, _stop) = start().await;
        let put = |k: String, v: Vec<u8>| {
            let s = store.clone();
            async move { s.put(k.as_bytes(), &v, None).await.expect("put") }
        };
        let router = Router { id: RouterId::random(), admin_state_up: true, ..Default::default() };
        let lb = LoadBalancer {
            id: LoadBalancerId::random(),
            router_id: Some(router.id),
            admin_state_up: true,
            ..Default::default()
        };
        let pool: Pool = serde_json::from_value(serde_json::json!({
            "id": PoolId::random(), "loadBalancerId": lb.id,
        }))
        .expect("pool");
        let member: PoolMember = serde_json::from_value(serde_json::json!({
            "id": PoolMemberId::random(), "poolId": pool.id, "address": "10.0.0.5",
            "protocolPort": 80,
        }))
        .expect("member");
        put(router.store_key(), serde_json::to_vec(&router).expect("json")).await;
        put(lb.store_key(), serde_json::to_vec(&lb).expect("json")).await;
        put(pool.store_key(), serde_json::to_vec(&pool).expect("json")).await;
        put(member.store_key(), serde_json::to_vec(&member).expect("json")).await;
        let mut sessions = Vec::new();
        for name in ["a", "b"] {
            let host = HostId::random();
            let r = client
                .register_host(pb::RegisterHostRequest {
                    host_id: host.to_string(),
                    name: name.into(),
                    ttl_secs: 10,
                    ..Default::default()
                })
                .await
                .expect("register")
                .into_inner();
            sessions.push((host, r.session));
        }
        let claim = |i: usize, release: bool| pb::ClaimHealthCheckRequest {
            session: sessions[i].1,
            host_id: sessions[i].0.to_string(),
            load_balancer_id: lb.id.to_string(),
            release,
        };
        let got = client.claim_health_check(claim(0, false)).await.expect("claim").into_inner();
        assert!(got.granted);
        let hc = HealthCheckPort::of(lb.id);
        assert_eq!(got.interface_name, hc.interface_name);
        assert_eq!(got.address, format!("{}/30", hc.checker_ip));
        assert_eq!(got.gateway, hc.router_ip.to_string());
        // The port is on the router, bound to the checker's interface, and
        // routed to.
        let port_key = ObjectKind::Port.key(&[&hc.port_id.to_string()]);
        let kv = store.get(port_key.as_bytes()).await.expect("get").expect("port");
        let p: Port = serde_json::from_slice(&kv.value).expect("port json");
        assert_eq!(p.device_id, router.id.cast());
        assert_eq!(p.host_id, Some(sessions[0].0));
        assert_eq!(p.interface_name.as_deref(), Some(hc.interface_name.as_str()));
        assert!(p.tunnel_key >= 16, "a tunnel key from the counter");
        let route_key = ObjectKind::Route.key(&[&hc.route_id.to_string()]);
        assert!(store.get(route_key.as_bytes()).await.expect("get").is_some());

        let refused = client.claim_health_check(claim(1, false)).await.expect("claim").into_inner();
        assert!(!refused.granted);
        assert_eq!(refused.holder, sessions[0].0.to_string());

        let report = |i: usize, status: &str, m: PoolMemberId| pb::ReportMemberStatusRequest {
            session: sessions[i].1,
            host_id: sessions[i].0.to_string(),
            load_balancer_id: lb.id.to_string(),
            member_id: m.to_string(),
            status: status.into(),
        };
        let e = client.report_member_status(report(1, "DOWN", member.id)).await.expect_err("b");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = client
            .report_member_status(report(0, "DOWN", PoolMemberId::random()))
            .await
            .expect_err("not a member");
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = client.report_member_status(report(0, "SIDEWAYS", member.id)).await.expect_err("x");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("status"), "{}", e.message());
        client.report_member_status(report(0, "DOWN", member.id)).await.expect("holder reports");
        let kv = store.get(member.store_key().as_bytes()).await.expect("get").expect("member");
        let m: PoolMember = serde_json::from_slice(&kv.value).expect("json");
        assert_eq!(m.status, "DOWN");

        // Given back: key and port go; the other host may claim, and the
        // port moves to it.
        let got = client.claim_health_check(claim(0, true)).await.expect("release").into_inner();
        assert!(got.granted);
        assert!(store.get(port_key.as_bytes()).await.expect("get").is_none());
        let got = client.claim_health_check(claim(1, false)).await.expect("claim").into_inner();
        assert!(got.granted);
        let kv = store.get(port_key.as_bytes()).await.expect("get").expect("port");
        let p: Port = serde_json::from_slice(&kv.value).expect("port json");
        assert_eq!(p.host_id, Some(sessions[1].0));
    }
}
