//! Who is calling and what it may touch: the caller from its host
//! credential (or anyone, [`AgentAuth::Open`]), a host acting only for
//! itself and within its live session, the lookups the calls' checks make,
//! and the refusal reasons counted on `midonet_grpc_refused_total`.

use midonet_model::{HostId, ObjectKind};
use midonet_proto::{keys, pb};
use midonet_store::LeaseId;
use tonic::{Request, Response, Status};

use super::{status, AgentAuth, TopologyServiceImpl};

/// Who is calling, once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    Host(HostId),
    /// [`AgentAuth::Open`]: trusted for any host.
    Anyone,
}

impl Caller {
    /// Whether the caller may act for `host`.
    fn is(self, host: HostId) -> bool {
        match self {
            Caller::Host(me) => me == host,
            Caller::Anyone => true,
        }
    }
}

/// Refusal reasons (the `reason` label).
pub(super) mod why {
    pub const OTHER_HOST: &str = "other_host";
    pub const NOT_SESSION: &str = "not_session";
    pub const PORT_NOT_BOUND: &str = "port_not_bound";
    pub const PORT_NOT_ON_BRIDGE: &str = "port_not_on_bridge";
    pub const NO_DEVICE: &str = "no_device";
    pub const OTHERS_ENTRY: &str = "others_entry";
}

impl TopologyServiceImpl {
    fn refuse(&self, rpc: &'static str, reason: &'static str) {
        self.refused.inc(rpc, reason);
        tracing::debug!(rpc, reason, "agent call refused");
    }

    pub(super) fn denied(&self, rpc: &'static str, reason: &'static str, msg: &str) -> Status {
        self.refuse(rpc, reason);
        Status::permission_denied(msg.to_owned())
    }

    /// The authenticated caller of `req`, or `UNAUTHENTICATED`.
    pub(super) async fn caller<T>(
        &self,
        rpc: &'static str,
        req: &Request<T>,
    ) -> Result<Caller, Status> {
        if self.auth == AgentAuth::Open {
            return Ok(Caller::Anyone);
        }
        let value = req
            .metadata()
            .get(midonet_proto::credential::METADATA_KEY)
            .and_then(|v| v.to_str().ok());
        match self.checker.check(&self.store, value).await.map_err(status)? {
            Ok(host) => Ok(Caller::Host(host)),
            Err(r) => {
                self.refuse(rpc, r.reason());
                Err(Status::unauthenticated(
                    "a valid host credential is required (see `midonet host enroll`)",
                ))
            }
        }
    }

    /// The caller, who must be `host`.
    pub(super) async fn caller_as<T>(
        &self,
        rpc: &'static str,
        req: &Request<T>,
        host: HostId,
    ) -> Result<Caller, Status> {
        let caller = self.caller(rpc, req).await?;
        if !caller.is(host) {
            return Err(self.denied(rpc, why::OTHER_HOST, "a host acts only for itself"));
        }
        Ok(caller)
    }

    /// Checks that `session` is `host`'s live session: its `alive` key is
    /// held by that lease. Anything else is `NOT_FOUND` (the agent registers
    /// again), whether the session expired or was never this host's.
    async fn live_session(
        &self,
        rpc: &'static str,
        host: HostId,
        session: i64,
    ) -> Result<(), Status> {
        let kv = self.store.get(keys::host_alive(&host.to_string()).as_bytes()).await;
        let ok = kv.map_err(status)?.is_some_and(|kv| kv.lease == Some(LeaseId(session)));
        if !ok {
            self.refuse(rpc, why::NOT_SESSION);
            return Err(Status::not_found("session expired: register again"));
        }
        Ok(())
    }

    /// The caller's host, with `session` checked to be its live one; `None`
    /// for [`Caller::Anyone`].
    pub(super) async fn session_host(
        &self,
        rpc: &'static str,
        caller: Caller,
        session: i64,
    ) -> Result<Option<HostId>, Status> {
        match caller {
            Caller::Host(h) => {
                self.live_session(rpc, h, session).await?;
                Ok(Some(h))
            }
            Caller::Anyone => Ok(None),
        }
    }

    pub(super) async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, Status> {
        let kv = self.store.get(key.as_bytes()).await.map_err(status)?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    pub(super) async fn port(&self, id: &str) -> Result<Option<midonet_model::Port>, Status> {
        self.read(&ObjectKind::Port.key(&[id])).await
    }

    /// Whether `host` may write `bridge`'s MAC entry pointing at `port`: a
    /// port of that bridge, bound to `host` or interior.
    pub(super) async fn may_publish_mac(
        &self,
        host: HostId,
        bridge: &str,
        port: &str,
    ) -> Result<(), &'static str> {
        let Ok(Some(p)) = self.port(port).await else { return Err(why::PORT_NOT_ON_BRIDGE) };
        if p.device_id.to_string() != bridge {
            return Err(why::PORT_NOT_ON_BRIDGE);
        }
        if p.host_id == Some(host) || p.peer_id.is_some() {
            Ok(())
        } else {
            Err(why::PORT_NOT_BOUND)
        }
    }

    /// Whether the host named in a stored entry is alive.
    pub(super) async fn host_alive(&self, host: &str) -> Result<bool, Status> {
        let kv = self.store.get(keys::host_alive(host).as_bytes()).await.map_err(status)?;
        Ok(kv.is_some())
    }

    /// Current revision, for a write that had nothing to do.
    pub(super) async fn unchanged(&self) -> Result<Response<pb::Ack>, Status> {
        let revision = self.store.current_revision().await.map_err(status)?;
        Ok(Response::new(pb::Ack { revision }))
    }
}
