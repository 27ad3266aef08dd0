//! Hosts and tunnel zones (admin only).

use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::{Map, Value};

use super::{delete_under, link, mentioning, state_values, Desc, Env, Fut, NO_CREATE};
use crate::api::ctx::Ctx;
use crate::db::{self, Tx};
use crate::error::ApiError;

kind! {
    Host = Desc::new("host", "Host-v3", Some("hosts"), "hostTemplate")
        .admin_only()
        .verbs(NO_CREATE);
    refs: []

    fn sample() -> Self {
        Host {
            name: "host-a".into(),
            addresses: vec!["10.0.0.5".parse().expect("literal")],
            ..Default::default()
        }
    }
    fn on_create<'a>(&'a mut self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            self.alive = false;
            self.datapath.clear();
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            // Name and addresses are reported by the host's agent.
            self.alive = false;
            self.datapath.clear();
            if self.name.is_empty() {
                self.name = old.name.clone();
            }
            if self.addresses.is_empty() {
                self.addresses = old.addresses.clone();
            }
            Ok(())
        })
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            if tx.exists(&db::host_alive_key(self.id.uuid())).await? {
                return Err(ApiError::conflict(format!(
                    "host {} is alive: stop its agent before deleting it",
                    self.id
                )));
            }
            for mut p in mentioning::<Port>(tx, self.id.uuid()).await? {
                if p.host_id == Some(self.id) {
                    p.host_id = None;
                    p.interface_name = None;
                    tx.put(&p.store_key(), &p);
                }
            }
            for m in mentioning::<TunnelZoneHost>(tx, self.id.uuid()).await? {
                if m.host_id == self.id {
                    tx.delete(&m.store_key());
                }
            }
            delete_under(tx, ObjectKind::HostInterface, self.id.uuid()).await
        })
    }
    fn links(&self, ctx: &Ctx, env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/hosts/{}", self.id));
        link(m, "interfaces", format!("{base}/interfaces"));
        link(m, "ports", format!("{base}/ports"));
        m.insert("alive".into(), Value::Bool(env.alive_hosts.contains(&self.id.uuid())));
        // Which datapath the live agent runs (an `ebpf` host that fell
        // back shows `userspace`).
        if let Some(d) = env.host_datapaths.get(&self.id.uuid()) {
            m.insert("datapath".into(), Value::String(d.clone()));
        }
    }
    fn load_env<'a>(tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            // One read for both: which hosts are alive, and what they run.
            for (id, v) in state_values(tx, "hosts", "alive").await? {
                env.alive_hosts.insert(id);
                if let Some(d) = db::registered_datapath(&v) {
                    env.host_datapaths.insert(id, d);
                }
            }
            Ok(())
        })
    }
    fn load_env_one<'a>(&'a self, tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            if let Some(v) = tx.get_raw(&db::host_alive_key(self.id.uuid())).await? {
                env.alive_hosts.insert(self.id.uuid());
                if let Some(d) = db::registered_datapath(&v) {
                    env.host_datapaths.insert(self.id.uuid(), d);
                }
            }
            Ok(())
        })
    }
}

kind! {
    TunnelZone = Desc::new(
        "tunnel zone", "TunnelZone-v1", Some("tunnelZones"), "tunnelZoneTemplate",
    )
    .admin_only();
    refs: []

    fn sample() -> Self {
        TunnelZone { name: "tz0".into(), ..Default::default() }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(delete_under(tx, ObjectKind::TunnelZoneHost, self.id.uuid()))
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "hosts", ctx.uri(&format!("/tunnel_zones/{}/hosts", self.id)));
    }
}
