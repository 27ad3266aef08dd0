//! How the agent calls write: topology objects (the host record, its
//! interfaces) in one transaction that keeps the reverse-reference index,
//! as [`crate::db::Tx`] would; state keys under the caller's session
//! lease, so they vanish with it.

use std::future::Future;

use midonet_model::{HostId, HostInterface, ObjectKind};
use midonet_proto::pb;
use midonet_store::{Compare, CompareOp, KeyValue, LeaseId, Txn, TxnOp};
use tonic::{Response, Status};

use super::{status, TopologyServiceImpl};
use crate::agent_input::{self, StateWrite};

impl TopologyServiceImpl {
    /// Brings `host_interfaces/<host>/*` to exactly `ifaces` (checked by
    /// [`agent_input::interfaces`]), writing only what changed (each write
    /// is a revision every agent receives); the writes go into `w`.
    pub(super) async fn sync_interfaces(
        &self,
        w: &mut IndexedWrite,
        host: HostId,
        ifaces: &[HostInterface],
    ) -> Result<(), Status> {
        let prefix = format!("{}/", ObjectKind::HostInterface.key(&[&host.to_string()]));
        let existing = self.store.range(prefix.as_bytes()).await.map_err(status)?;
        let mut wanted = std::collections::BTreeSet::new();
        for hi in ifaces {
            let (key, value) = agent_input::interface_kv(hi);
            let old = existing.kvs.iter().find(|kv| kv.key == key.as_bytes());
            w.set(key.clone(), old, Some(value));
            wanted.insert(key);
        }
        for kv in &existing.kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            if !wanted.contains(&key) {
                w.set(key, Some(kv), None);
            }
        }
        Ok(())
    }

    /// Runs `plan` and commits the writes it returns in one transaction
    /// that compares every written object and keeps the reverse-reference
    /// index ([`crate::refs`]), replanning from fresh reads on a conflict.
    /// `None` when there was nothing to write.
    pub(super) async fn write_indexed<F, Fut>(&self, plan: F) -> Result<Option<i64>, Status>
    where
        F: Fn(IndexedWrite) -> Fut,
        Fut: Future<Output = Result<IndexedWrite, Status>>,
    {
        for attempt in 1..=crate::db::MAX_ATTEMPTS {
            let w = plan(IndexedWrite::default()).await?;
            if w.ops.is_empty() {
                return Ok(None);
            }
            let resp = self
                .store
                .txn(Txn::new().when(w.compares).and_then(w.ops))
                .await
                .map_err(status)?;
            if resp.succeeded {
                return Ok(Some(resp.revision));
            }
            crate::db::backoff(attempt).await;
        }
        Err(Status::aborted("the host's records changed concurrently too many times; retry"))
    }
}

/// Writes of topology objects outside [`crate::db::Tx`] (host registration
/// needs a lease in the same transaction), with what `Tx::commit` would
/// add: a compare on each object's previous value and the index entries
/// of the difference.
#[derive(Default)]
pub(super) struct IndexedWrite {
    compares: Vec<Compare>,
    pub(super) ops: Vec<TxnOp>,
}

impl IndexedWrite {
    /// Sets `key`, read as `old`, to `new` (`None` deletes it); nothing if
    /// it already holds that.
    pub(super) fn set(&mut self, key: String, old: Option<&KeyValue>, new: Option<Vec<u8>>) {
        let old_value = old.map(|kv| kv.value.as_slice());
        if old_value == new.as_deref() {
            return;
        }
        let rev = old.map_or(0, |kv| kv.mod_revision);
        self.ops.extend(crate::refs::changes(&key, old_value, new.as_deref()));
        self.compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, rev));
        self.ops.push(match new {
            Some(v) => TxnOp::put(key, v),
            None => TxnOp::delete(key),
        });
    }
}

impl TopologyServiceImpl {
    /// Puts a checked state key under the agent's session lease, or deletes it.
    pub(super) async fn state_write(
        &self,
        w: StateWrite,
        session: i64,
    ) -> Result<Response<pb::Ack>, Status> {
        let revision = match w.value {
            Some(v) => self
                .store
                .put(w.key.as_bytes(), &v, Some(LeaseId(session)))
                .await
                .map_err(status)?,
            None => self.store.delete(w.key.as_bytes()).await.map_err(status)?.revision,
        };
        Ok(Response::new(pb::Ack { revision }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::start;
    use super::*;
    use midonet_model::{BridgeId, PortId};
    use midonet_proto::keys;

    #[tokio::test]
    async fn session_keys_vanish_with_the_lease() {
        let (store, mut client, _stop) = start().await;
        let host = HostId::random();
        let reg = client
            .register_host(pb::RegisterHostRequest {
                host_id: host.to_string(),
                name: "h1".into(),
                addresses: vec!["10.0.0.1/24".into()],
                interfaces: vec![pb::Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    mtu: 1500,
                    up: true,
                    has_link: true,
                    ..Default::default()
                }],
                ttl_secs: 2,
                datapath: "userspace".into(),
            })
            .await
            .expect("register")
            .into_inner();
        let alive = keys::host_alive(&host.to_string());
        let value = store.get(alive.as_bytes()).await.expect("get").expect("alive").value;
        let alive_value: midonet_proto::Liveness = serde_json::from_slice(&value).expect("json");
        assert_eq!(
            alive_value,
            midonet_proto::Liveness {
                datapath: "userspace".into(),
                ..midonet_proto::Liveness::of(host.to_string(), reg.session)
            },
            "the session's provider is kept with its liveness"
        );
        let stored: midonet_model::Host = serde_json::from_slice(
            &store
                .get(ObjectKind::Host.key(&[&host.to_string()]).as_bytes())
                .await
                .expect("get")
                .expect("host")
                .value,
        )
        .expect("host json");
        assert_eq!(stored.name, "h1");
        let iface_key = ObjectKind::HostInterface.key(&[&host.to_string(), "eth0"]);
        assert!(store.get(iface_key.as_bytes()).await.expect("get").is_some());

        let port = PortId::random();
        client
            .set_port_active(pb::SetPortActiveRequest {
                session: reg.session,
                host_id: host.to_string(),
                port_id: port.to_string(),
                active: true,
            })
            .await
            .expect("active");
        let br = BridgeId::random();
        client
            .publish_mac(pb::PublishMacRequest {
                session: reg.session,
                bridge_id: br.to_string(),
                vlan: 0,
                mac: "02:00:00:00:00:09".into(),
                port_id: port.to_string(),
                delete: false,
            })
            .await
            .expect("mac");
        assert!(store
            .get(keys::port_active(&port.to_string()).as_bytes())
            .await
            .expect("get")
            .is_some());

        // Interfaces: a second report replaces the list.
        client
            .report_interfaces(pb::ReportInterfacesRequest {
                session: reg.session,
                host_id: host.to_string(),
                interfaces: vec![pb::Interface { name: "eth1".into(), ..Default::default() }],
            })
            .await
            .expect("report");
        assert!(store.get(iface_key.as_bytes()).await.expect("get").is_none());

        // No keep-alive: everything leased disappears.
        store.revoke_lease(LeaseId(reg.session)).await.expect("revoke");
        assert!(store.get(alive.as_bytes()).await.expect("get").is_none());
        assert!(store
            .get(keys::port_active(&port.to_string()).as_bytes())
            .await
            .expect("get")
            .is_none());
        let err = client
            .keep_alive(pb::KeepAliveRequest { session: reg.session, host_id: host.to_string() })
            .await
            .expect_err("expired");
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = client
            .set_port_active(pb::SetPortActiveRequest {
                session: reg.session,
                host_id: host.to_string(),
                port_id: port.to_string(),
                active: true,
            })
            .await
            .expect_err("expired session cannot write");
        assert_eq!(err.code(), tonic::Code::NotFound);
        // The host object itself stays.
        assert!(store
            .get(ObjectKind::Host.key(&[&host.to_string()]).as_bytes())
            .await
            .expect("get")
            .is_some());
    }
}
