//! Ports (with the routes the cluster derives for router ports) and routes.

use std::net::Ipv4Addr;

use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{key_of, link, link_opt, mentioning, state_ids, Desc, Env, Fut, GET_DELETE, NO_CREATE};
use crate::api::ctx::Ctx;
use crate::db::{self, Tx};
use crate::error::ApiError;

/// Attribute marking the route the cluster creates with a router port.
pub const SYSTEM_ROUTE_LOCAL: &str = "system:local";

/// The routes a router port brings: only the LOCAL /32 to its own address,
/// as MidoNet's `RouterPortResource` does. A route to the port's subnet is
/// the operator's (or the Neutron translation's) to add; adding one here
/// would change routing results that MidoNet users rely on.
fn system_routes(p: &Port) -> Vec<Route> {
    let Some(addr) = p.port_address else {
        return Vec::new();
    };
    vec![Route {
        id: RouteId::random(),
        router_id: p.device_id.cast(),
        route_type: RouteType::Local,
        src_network_addr: Ipv4Addr::UNSPECIFIED,
        src_network_length: 0,
        dst_network_addr: addr,
        dst_network_length: 32,
        next_hop_port: Some(p.id),
        next_hop_gateway: None,
        weight: 0,
        learned: false,
        attributes: Some(SYSTEM_ROUTE_LOCAL.into()),
    }]
}

/// Routes the cluster made for a port. Any `system:` attribute counts, so a
/// `system:network` route written by older versions goes when the port's
/// address moves.
fn is_system_route(r: &Route) -> bool {
    r.attributes.as_deref().is_some_and(|a| a.starts_with("system:"))
}

fn random_mac() -> MacAddr {
    MacAddr::local_from(rand::random::<[u8; 5]>())
}

kind! {
    Port = Desc::new("port", "Port-v3", Some("ports"), "portTemplate")
        .verbs(NO_CREATE)
        .under(&[ObjectKind::Bridge, ObjectKind::Router]);
    refs: [
        "inboundFilterId": inbound_filter_id => Chain, Clear;
        "outboundFilterId": outbound_filter_id => Chain, Clear;
        "portGroupIds": port_group_ids => PortGroup, Clear;
        "inboundMirrorIds": inbound_mirror_ids => Mirror, Clear;
        "outboundMirrorIds": outbound_mirror_ids => Mirror, Clear;
        "postInFilterMirrorIds": post_in_filter_mirror_ids => Mirror, Clear;
        "preOutFilterMirrorIds": pre_out_filter_mirror_ids => Mirror, Clear;
    ]

    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        let k = if self.is_router_port() { ObjectKind::Router } else { ObjectKind::Bridge };
        Some((k, self.device_id.uuid()))
    }
    fn set_parent(&mut self, kind: ObjectKind, id: Uuid) {
        self.device_id = id.into();
        self.port_type =
            if kind == ObjectKind::Router { PortType::Router } else { PortType::Bridge };
    }
    fn sample() -> Self {
        Port {
            port_type: PortType::Router,
            port_address: Some(Ipv4Addr::new(10, 0, 0, 1)),
            network_address: Some(Ipv4Addr::new(10, 0, 0, 0)),
            network_length: Some(24),
            port_mac: Some(MacAddr([2, 0, 0, 0xaa, 0xbb, 0xcc])),
            admin_state_up: true,
            tunnel_key: 16,
            ..Default::default()
        }
    }
    fn on_create<'a>(&'a mut self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            if self.peer_id.is_some() {
                return Err(ApiError::field("peerId", "link ports with POST /ports/{id}/link"));
            }
            if self.host_id.is_some() {
                return Err(ApiError::field("hostId", "bind ports with POST /hosts/{id}/ports"));
            }
            self.port_group_ids.dedup();
            self.tunnel_key = tx.alloc_tunnel_key().await?;
            if self.is_router_port() {
                if self.port_mac.is_none() {
                    self.port_mac = Some(random_mac());
                }
                for rt in system_routes(self) {
                    tx.put(&rt.store_key(), &rt);
                }
            }
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, old: &'a Self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            self.port_type = old.port_type;
            self.device_id = old.device_id;
            self.tunnel_key = old.tunnel_key;
            self.port_group_ids = old.port_group_ids.clone();
            match self.peer_id {
                None => self.peer_id = old.peer_id,
                Some(p) if Some(p) != old.peer_id => return Err(ApiError::field(
                    "peerId",
                    "peerId is read-only here: link with POST /ports/{id}/link, unlink with DELETE",
                )),
                Some(_) => {}
            }
            if self.host_id.is_none() && self.interface_name.is_none() {
                self.host_id = old.host_id;
                self.interface_name = old.interface_name.clone();
            } else if self.host_id != old.host_id || self.interface_name != old.interface_name {
                return Err(ApiError::field(
                    "hostId",
                    "the binding is read-only here: use POST/DELETE /hosts/{id}/ports",
                ));
            }
            if self.is_router_port() {
                if self.port_mac.is_none() {
                    self.port_mac = old.port_mac;
                }
                let moved = (self.port_address, self.network_address, self.network_length)
                    != (old.port_address, old.network_address, old.network_length);
                if moved {
                    for rt in mentioning::<Route>(tx, self.id.uuid()).await? {
                        if rt.next_hop_port == Some(self.id) && is_system_route(&rt) {
                            tx.delete(&rt.store_key());
                        }
                    }
                    for rt in system_routes(self) {
                        tx.put(&rt.store_key(), &rt);
                    }
                }
            }
            Ok(())
        })
    }
    /// Unlinks the peer and deletes the port's MAC entries; routes through
    /// it, and the 409s of mirrors and redirect rules that target it, come
    /// from their kinds' reference rules.
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            if let Some(peer_id) = self.peer_id {
                let key = key_of(ObjectKind::Port, peer_id.uuid());
                if let Some(mut peer) = tx.get::<Port>(&key).await? {
                    if peer.peer_id == Some(self.id) {
                        peer.peer_id = None;
                        tx.put(&key, &peer);
                    }
                }
            }
            if let Some(b) = self.bridge_id() {
                let prefix = format!("{}/", ObjectKind::MacTableEntry.key(&[&b.to_string()]));
                for e in tx.list::<MacTableEntry>(&prefix).await? {
                    if e.port_id == self.id {
                        tx.delete(&e.store_key());
                    }
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/ports/{}", self.id));
        link(m, "link", format!("{base}/link"));
        link(m, "portGroups", format!("{base}/port_groups"));
        let dev = if self.is_router_port() { "routers" } else { "bridges" };
        link(m, "device", ctx.uri(&format!("/{dev}/{}", self.device_id)));
        link_opt(m, ctx, "peer", "ports", self.peer_id);
        if let (Some(h), Some(_)) = (self.host_id, &self.interface_name) {
            link(m, "hostInterfacePort", ctx.uri(&format!("/hosts/{h}/ports/{}", self.id)));
            link(m, "host", ctx.uri(&format!("/hosts/{h}")));
        }
        link_opt(m, ctx, "inboundFilter", "chains", self.inbound_filter_id);
        link_opt(m, ctx, "outboundFilter", "chains", self.outbound_filter_id);
        m.insert("active".into(), Value::Bool(env.active_ports.contains(&self.id.uuid())));
    }
    fn load_env<'a>(tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            env.active_ports = state_ids(tx, "ports").await?;
            Ok(())
        })
    }
    fn load_env_one<'a>(&'a self, tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            if tx.exists(&db::port_active_key(self.id.uuid())).await? {
                env.active_ports.insert(self.id.uuid());
            }
            Ok(())
        })
    }
}

kind! {
    Route = Desc::new("route", "Route-v1", None, "routeTemplate")
        .verbs(GET_DELETE)
        .under(&[ObjectKind::Router]);
    refs: [
        "nextHopPort": next_hop_port => Port, Cascade;
    ]

    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::Router, self.router_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.router_id = id.into();
    }
    fn sample() -> Self {
        Route {
            dst_network_addr: Ipv4Addr::new(10, 0, 0, 0),
            dst_network_length: 24,
            next_hop_port: Some(PortId::nil()),
            ..Default::default()
        }
    }
    fn on_create<'a>(&'a mut self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            self.learned = false;
            if let Some(pid) = self.next_hop_port {
                let port = tx.get::<Port>(&key_of(ObjectKind::Port, pid.uuid())).await?;
                match port {
                    Some(p) if p.router_id() == Some(self.router_id) => {}
                    Some(_) => {
                        return Err(ApiError::field(
                            "nextHopPort",
                            format!("port {pid} is not a port of router {}", self.router_id),
                        ))
                    }
                    None => {
                        return Err(ApiError::field(
                            "nextHopPort",
                            format!("port {pid} does not exist"),
                        ))
                    }
                }
            }
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, _old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async {
            Err(ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "routes cannot be changed; delete and create",
            ))
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "router", ctx.uri(&format!("/routers/{}", self.router_id)));
        link_opt(m, ctx, "nextHopPortUri", "ports", self.next_hop_port);
    }
}
