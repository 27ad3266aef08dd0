//! One descriptor and a few hooks per top-level kind; the generic handlers
//! in [`super::generic`] do the rest (parse, tenancy, validation, reference
//! checks, guards, commit, render).
//!
//! What each kind adds is only what differs: its media type and root-document
//! names ([`Desc`]), which ids it refers to ([`Kind::refs`], checked to exist
//! and be visible to the caller, and touched as guards), its parent
//! ([`Kind::parent`]), read-only fields kept on `PUT` ([`Kind::on_update`]),
//! derived fields and side objects on create ([`Kind::on_create`]), the
//! delete rules ([`Kind::on_delete`]), and its link fields ([`Kind::links`]).
//!
//! Delete rules (also in the crate docs):
//!
//! | deleting | does |
//! |---|---|
//! | bridge | deletes its ports (as below), DHCP subnets and hosts, MAC and ARP entries |
//! | router | deletes its ports (as below) and routes; clears `routerId` of its load balancer |
//! | port | unlinks the peer, deletes routes via the port and its MAC entries; 409 if a mirror or a redirect rule targets it |
//! | chain | 409 if a device, port or another chain's jump rule uses it; else deletes its rules |
//! | rule | removes it from its chain's order |
//! | port group | 409 if a rule or a port refers to it |
//! | IP address group | 409 if a rule refers to it; else deletes its addresses |
//! | mirror | 409 if a port, bridge or router uses it |
//! | tunnel zone | deletes its memberships |
//! | host | 409 if alive; else unbinds its ports, drops memberships and interfaces |
//! | load balancer | 409 if pools or VIPs exist; clears the router's `loadBalancerId` |
//! | pool | 409 if VIPs use it; else deletes its members |
//! | health monitor | 409 if a pool uses it |

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;

use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::ctx::Ctx;
use crate::db::{self, Tx};
use crate::error::ApiError;

/// Which verbs the generic handlers serve for a kind.
#[derive(Debug, Clone, Copy)]
pub struct Verbs {
    pub list: bool,
    pub create: bool,
    pub get: bool,
    pub update: bool,
    pub delete: bool,
}

pub const ALL: Verbs = Verbs { list: true, create: true, get: true, update: true, delete: true };
const NO_CREATE: Verbs = Verbs { create: false, ..ALL };
const GET_DELETE: Verbs =
    Verbs { list: false, create: false, get: true, update: false, delete: true };

/// Static description of a kind.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    /// Singular, for messages ("bridge").
    pub what: &'static str,
    /// Vendor media type without prefix/suffix ("Bridge-v4").
    pub media: &'static str,
    /// Root-document key of the collection, if it has one.
    pub root: Option<&'static str>,
    /// Root-document key of the `{id}` template.
    pub template: &'static str,
    /// Hosts and tunnel zones: tenants get 403.
    pub admin_only: bool,
    pub verbs: Verbs,
    /// Creates are serialized inside this process (they all write the
    /// tunnel key counter, so concurrent ones would only conflict).
    pub serialize_creates: bool,
}

/// Runtime state and derived values needed to render a batch of objects.
#[derive(Default)]
pub struct Env {
    pub active_ports: HashSet<Uuid>,
    pub alive_hosts: HashSet<Uuid>,
    pub rule_positions: HashMap<Uuid, u32>,
}

type Fut<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// A top-level stored kind served by the generic handlers.
pub trait Kind: Stored + Validate + Clone + Send + Sync + 'static {
    const DESC: Desc;
    fn id(&self) -> Uuid;
    fn set_id(&mut self, id: Uuid);
    /// The kind's own `tenantId` field, for kinds that have one.
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        None
    }
    /// `Some(tenant)` for kinds with their own `tenantId`.
    fn own_tenant(&self) -> Option<Option<&str>> {
        None
    }
    /// The object this one belongs to (port → device, rule → chain, ...).
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        None
    }
    /// Sets the parent from a sub-collection URI.
    fn set_parent(&mut self, _kind: ObjectKind, _id: Uuid) {}
    /// Fills required parent fields into a body posted to a sub-collection
    /// before it is decoded (a pool posted under a load balancer has no
    /// `loadBalancerId` of its own).
    fn child_body(_parent: ObjectKind, _id: Uuid, _body: &mut Map<String, Value>) {}
    /// Ids this object refers to: (REST field, kind, id).
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        Vec::new()
    }
    /// An example value (OpenAPI).
    fn sample() -> Self;
    /// Derived fields and side objects of a create (after validation).
    fn on_create<'a>(&'a mut self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Keeps read-only fields of `old` and checks what changed.
    fn on_update<'a>(&'a mut self, _old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Delete rules: 409s and cascades (the object itself and its guard are
    /// deleted by the caller).
    fn on_delete<'a>(&'a self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Link fields and runtime state added to the DTO.
    fn links(&self, _ctx: &Ctx, _env: &Env, _m: &mut Map<String, Value>) {}
    /// Loads what [`Kind::links`] needs for a batch.
    fn load_env<'a>(_tx: &'a mut Tx, _env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Loads what [`Kind::links`] needs for this one object (cheaper than
    /// the batch when runtime state is a key per object).
    fn load_env_one<'a>(&'a self, tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Self::load_env(tx, env)
    }
}

fn r<T>(
    field: &'static str,
    kind: ObjectKind,
    id: Option<Id<T>>,
    out: &mut Vec<(&'static str, ObjectKind, Uuid)>,
) {
    if let Some(id) = id {
        out.push((field, kind, id.uuid()));
    }
}
fn rs<T>(
    field: &'static str,
    kind: ObjectKind,
    ids: &[Id<T>],
    out: &mut Vec<(&'static str, ObjectKind, Uuid)>,
) {
    for id in ids {
        out.push((field, kind, id.uuid()));
    }
}

fn key_of(kind: ObjectKind, id: Uuid) -> String {
    kind.key(&[&id.to_string()])
}

fn link(m: &mut Map<String, Value>, name: &str, value: String) {
    m.insert(name.to_string(), Value::String(value));
}

fn link_opt<T>(m: &mut Map<String, Value>, ctx: &Ctx, name: &str, coll: &str, id: Option<Id<T>>) {
    if let Some(id) = id {
        link(m, name, ctx.uri(&format!("/{coll}/{id}")));
    }
}

/// Reads every object of a kind.
pub async fn all<T: Stored>(tx: &mut Tx) -> Result<Vec<T>, ApiError> {
    tx.list(&T::KIND.prefix()).await
}

fn in_use(what: &str, id: Uuid, by: &str, by_id: impl std::fmt::Display, field: &str) -> ApiError {
    ApiError::conflict(format!("{what} {id} is in use: {by} {by_id} refers to it in `{field}`"))
}

// ---------------------------------------------------------------- bridges

impl Kind for Bridge {
    const DESC: Desc = Desc {
        what: "bridge",
        media: "Bridge-v4",
        root: Some("bridges"),
        template: "bridgeTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let mut v = Vec::new();
        r("inboundFilterId", ObjectKind::Chain, self.inbound_filter_id, &mut v);
        r("outboundFilterId", ObjectKind::Chain, self.outbound_filter_id, &mut v);
        rs("inboundMirrorIds", ObjectKind::Mirror, &self.inbound_mirror_ids, &mut v);
        rs("outboundMirrorIds", ObjectKind::Mirror, &self.outbound_mirror_ids, &mut v);
        v
    }
    fn sample() -> Self {
        Bridge {
            name: "br0".into(),
            tenant_id: Some("t1".into()),
            admin_state_up: true,
            ..Default::default()
        }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let dev: DeviceId = self.id.cast();
            for p in all::<Port>(tx).await?.into_iter().filter(|p| p.device_id == dev) {
                delete_port(tx, &p).await?;
            }
            let b = self.id.to_string();
            for kind in [
                ObjectKind::DhcpSubnet,
                ObjectKind::DhcpHost,
                ObjectKind::MacTableEntry,
                ObjectKind::ArpTableEntry,
            ] {
                let prefix = format!("{}/", kind.key(&[&b]));
                for (k, _) in tx.list_raw(&prefix).await? {
                    tx.delete(&k);
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/bridges/{}", self.id));
        link(m, "ports", format!("{base}/ports"));
        link(m, "peerPorts", format!("{base}/peer_ports"));
        link(m, "dhcpSubnets", format!("{base}/dhcp"));
        link(m, "macTable", format!("{base}/mac_table"));
        link(m, "arpTable", format!("{base}/arp_table"));
        link(m, "vlanMacTableTemplate", format!("{base}/vlans/{{vlanId}}/mac_table"));
        link(m, "macPortTemplate", format!("{base}/mac_table/{{macAddress}}_{{portId}}"));
        link_opt(m, ctx, "inboundFilter", "chains", self.inbound_filter_id);
        link_opt(m, ctx, "outboundFilter", "chains", self.outbound_filter_id);
    }
}

// ---------------------------------------------------------------- routers

impl Kind for Router {
    const DESC: Desc = Desc {
        what: "router",
        media: "Router-v3",
        root: Some("routers"),
        template: "routerTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let mut v = Vec::new();
        r("inboundFilterId", ObjectKind::Chain, self.inbound_filter_id, &mut v);
        r("outboundFilterId", ObjectKind::Chain, self.outbound_filter_id, &mut v);
        r("forwardChainId", ObjectKind::Chain, self.forward_chain_id, &mut v);
        r("localRedirectChainId", ObjectKind::Chain, self.local_redirect_chain_id, &mut v);
        r("loadBalancerId", ObjectKind::LoadBalancer, self.load_balancer_id, &mut v);
        rs("inboundMirrorIds", ObjectKind::Mirror, &self.inbound_mirror_ids, &mut v);
        rs("outboundMirrorIds", ObjectKind::Mirror, &self.outbound_mirror_ids, &mut v);
        v
    }
    fn sample() -> Self {
        Router {
            name: "rt0".into(),
            tenant_id: Some("t1".into()),
            admin_state_up: true,
            ..Default::default()
        }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let dev: DeviceId = self.id.cast();
            for p in all::<Port>(tx).await?.into_iter().filter(|p| p.device_id == dev) {
                delete_port(tx, &p).await?;
            }
            for rt in all::<Route>(tx).await?.into_iter().filter(|r| r.router_id == self.id) {
                tx.delete(&rt.store_key());
            }
            for mut lb in all::<LoadBalancer>(tx).await? {
                if lb.router_id == Some(self.id) {
                    lb.router_id = None;
                    tx.put(&lb.store_key(), &lb);
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/routers/{}", self.id));
        link(m, "ports", format!("{base}/ports"));
        link(m, "peerPorts", format!("{base}/peer_ports"));
        link(m, "routes", format!("{base}/routes"));
        link_opt(m, ctx, "inboundFilter", "chains", self.inbound_filter_id);
        link_opt(m, ctx, "outboundFilter", "chains", self.outbound_filter_id);
        link_opt(m, ctx, "loadBalancer", "load_balancers", self.load_balancer_id);
    }
}

// ---------------------------------------------------------------- ports

/// Attribute marking the routes the cluster creates with a router port.
pub const SYSTEM_ROUTE_LOCAL: &str = "system:local";
pub const SYSTEM_ROUTE_NETWORK: &str = "system:network";

fn system_routes(p: &Port) -> Vec<Route> {
    let (Some(addr), Some(net), Some(len)) = (p.port_address, p.network_address, p.network_length)
    else {
        return Vec::new();
    };
    let router = p.device_id.cast();
    vec![
        Route {
            id: RouteId::random(),
            router_id: router,
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
        },
        Route {
            id: RouteId::random(),
            router_id: router,
            route_type: RouteType::Normal,
            src_network_addr: Ipv4Addr::UNSPECIFIED,
            src_network_length: 0,
            dst_network_addr: Ipv4Addr::from(
                u32::from(net) & midonet_model::port::prefix_mask(len),
            ),
            dst_network_length: len,
            next_hop_port: Some(p.id),
            next_hop_gateway: None,
            weight: 100,
            learned: false,
            attributes: Some(SYSTEM_ROUTE_NETWORK.into()),
        },
    ]
}

fn is_system_route(r: &Route) -> bool {
    r.attributes.as_deref().is_some_and(|a| a.starts_with("system:"))
}

/// Deletes a port and what hangs off it: unlinks the peer, deletes routes
/// through it and its MAC entries. 409 if a mirror or redirect rule targets
/// it.
pub async fn delete_port(tx: &mut Tx, p: &Port) -> Result<(), ApiError> {
    // Guard first: referrers committed after the scans below fail the txn.
    tx.guard_and_drop(p.id.uuid()).await?;
    for m in all::<Mirror>(tx).await? {
        if m.to_port_id == Some(p.id) {
            return Err(in_use("port", p.id.uuid(), "mirror", m.id, "toPortId"));
        }
    }
    for rule in all::<Rule>(tx).await? {
        if rule.target_port_id == Some(p.id) {
            return Err(in_use("port", p.id.uuid(), "rule", rule.id, "targetPortId"));
        }
    }
    if let Some(peer_id) = p.peer_id {
        let key = key_of(ObjectKind::Port, peer_id.uuid());
        if let Some(mut peer) = tx.get::<Port>(&key).await? {
            if peer.peer_id == Some(p.id) {
                peer.peer_id = None;
                tx.put(&key, &peer);
            }
        }
    }
    for rt in all::<Route>(tx).await? {
        if rt.next_hop_port == Some(p.id) {
            tx.delete(&rt.store_key());
        }
    }
    if let Some(b) = p.bridge_id() {
        let prefix = format!("{}/", ObjectKind::MacTableEntry.key(&[&b.to_string()]));
        for e in tx.list::<MacTableEntry>(&prefix).await? {
            if e.port_id == p.id {
                tx.delete(&e.store_key());
            }
        }
    }
    tx.delete(&p.store_key());
    Ok(())
}

fn random_mac() -> MacAddr {
    MacAddr::local_from(rand::random::<[u8; 5]>())
}

impl Kind for Port {
    const DESC: Desc = Desc {
        what: "port",
        media: "Port-v3",
        root: Some("ports"),
        template: "portTemplate",
        admin_only: false,
        verbs: NO_CREATE,
        serialize_creates: true,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        let k = if self.is_router_port() { ObjectKind::Router } else { ObjectKind::Bridge };
        Some((k, self.device_id.uuid()))
    }
    fn set_parent(&mut self, kind: ObjectKind, id: Uuid) {
        self.device_id = id.into();
        self.port_type =
            if kind == ObjectKind::Router { PortType::Router } else { PortType::Bridge };
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let mut v = Vec::new();
        r("inboundFilterId", ObjectKind::Chain, self.inbound_filter_id, &mut v);
        r("outboundFilterId", ObjectKind::Chain, self.outbound_filter_id, &mut v);
        rs("portGroupIds", ObjectKind::PortGroup, &self.port_group_ids, &mut v);
        rs("inboundMirrorIds", ObjectKind::Mirror, &self.inbound_mirror_ids, &mut v);
        rs("outboundMirrorIds", ObjectKind::Mirror, &self.outbound_mirror_ids, &mut v);
        rs("postInFilterMirrorIds", ObjectKind::Mirror, &self.post_in_filter_mirror_ids, &mut v);
        rs("preOutFilterMirrorIds", ObjectKind::Mirror, &self.pre_out_filter_mirror_ids, &mut v);
        v
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
                    for rt in all::<Route>(tx).await? {
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
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move { delete_port(tx, self).await })
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

/// Ids with a runtime state entry under `/midonet/v1/state/<what>/<id>/...`.
pub async fn state_ids(tx: &mut Tx, what: &str) -> Result<HashSet<Uuid>, ApiError> {
    let prefix = format!("{}{what}/", db::STATE_PREFIX);
    Ok(tx
        .list_raw(&prefix)
        .await?
        .into_iter()
        .filter_map(|(k, _)| k[prefix.len()..].split('/').next().and_then(|i| i.parse().ok()))
        .collect())
}

// ---------------------------------------------------------------- routes

impl Kind for Route {
    const DESC: Desc = Desc {
        what: "route",
        media: "Route-v1",
        root: None,
        template: "routeTemplate",
        admin_only: false,
        verbs: GET_DELETE,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::Router, self.router_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.router_id = id.into();
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let mut v = Vec::new();
        r("nextHopPort", ObjectKind::Port, self.next_hop_port, &mut v);
        v
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

// ---------------------------------------------------------------- chains and rules

impl Kind for Chain {
    const DESC: Desc = Desc {
        what: "chain",
        media: "Chain-v1",
        root: Some("chains"),
        template: "chainTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn sample() -> Self {
        Chain { name: "ch0".into(), tenant_id: Some("t1".into()), ..Default::default() }
    }
    fn on_create<'a>(&'a mut self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            // Rules are added through /chains/{id}/rules.
            self.rule_ids.clear();
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            self.rule_ids = old.rule_ids.clone();
            Ok(())
        })
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let id = Some(self.id);
            let me = self.id.uuid();
            for b in all::<Bridge>(tx).await? {
                for (f, v) in [
                    ("inboundFilterId", b.inbound_filter_id),
                    ("outboundFilterId", b.outbound_filter_id),
                ] {
                    if v == id {
                        return Err(in_use("chain", me, "bridge", b.id, f));
                    }
                }
            }
            for rt in all::<Router>(tx).await? {
                for (f, v) in [
                    ("inboundFilterId", rt.inbound_filter_id),
                    ("outboundFilterId", rt.outbound_filter_id),
                    ("forwardChainId", rt.forward_chain_id),
                    ("localRedirectChainId", rt.local_redirect_chain_id),
                ] {
                    if v == id {
                        return Err(in_use("chain", me, "router", rt.id, f));
                    }
                }
            }
            for p in all::<Port>(tx).await? {
                for (f, v) in [
                    ("inboundFilterId", p.inbound_filter_id),
                    ("outboundFilterId", p.outbound_filter_id),
                ] {
                    if v == id {
                        return Err(in_use("chain", me, "port", p.id, f));
                    }
                }
            }
            for rule in all::<Rule>(tx).await? {
                if rule.chain_id == self.id || self.rule_ids.contains(&rule.id) {
                    tx.delete(&rule.store_key());
                } else if rule.jump_chain_id == id {
                    return Err(in_use("chain", me, "rule", rule.id, "jumpChainId"));
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "rules", ctx.uri(&format!("/chains/{}/rules", self.id)));
    }
}

impl Kind for Rule {
    const DESC: Desc = Desc {
        what: "rule",
        media: "Rule-v2",
        root: None,
        template: "ruleTemplate",
        admin_only: false,
        verbs: GET_DELETE,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::Chain, self.chain_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.chain_id = id.into();
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let c = &self.condition;
        let mut v = Vec::new();
        r("jumpChainId", ObjectKind::Chain, self.jump_chain_id, &mut v);
        r("portGroup", ObjectKind::PortGroup, c.port_group, &mut v);
        r("inPortGroup", ObjectKind::PortGroup, c.in_port_group, &mut v);
        r("outPortGroup", ObjectKind::PortGroup, c.out_port_group, &mut v);
        r("ipAddrGroupSrc", ObjectKind::IpAddrGroup, c.ip_addr_group_src, &mut v);
        r("ipAddrGroupDst", ObjectKind::IpAddrGroup, c.ip_addr_group_dst, &mut v);
        r("targetPortId", ObjectKind::Port, self.target_port_id, &mut v);
        v
    }
    fn sample() -> Self {
        let mut r = Rule { rule_type: RuleType::Accept, position: Some(1), ..Default::default() };
        r.condition.nw_proto = Some(6);
        r.condition.tp_dst = Some(PortRange { start: 22, end: 22 });
        r
    }
    fn on_create<'a>(&'a mut self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let ckey = key_of(ObjectKind::Chain, self.chain_id.uuid());
            let mut chain: Chain = tx
                .get(&ckey)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("chain {}", self.chain_id)))?;
            let len = chain.rule_ids.len();
            let pos = self.position.unwrap_or(1) as usize;
            if pos == 0 || pos > len + 1 {
                return Err(ApiError::field(
                    "position",
                    format!("position {pos} is out of range 1..={} for this chain", len + 1),
                ));
            }
            chain.rule_ids.insert(pos - 1, self.id);
            tx.put(&ckey, &chain);
            self.position = None;
            if let Some(j) = self.jump_chain_id {
                if let Some(jc) = tx.get::<Chain>(&key_of(ObjectKind::Chain, j.uuid())).await? {
                    self.jump_chain_name = Some(jc.name);
                }
            }
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, _old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async {
            Err(ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "rules cannot be changed; delete and create",
            ))
        })
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let ckey = key_of(ObjectKind::Chain, self.chain_id.uuid());
            if let Some(mut chain) = tx.get::<Chain>(&ckey).await? {
                chain.rule_ids.retain(|r| *r != self.id);
                tx.put(&ckey, &chain);
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, env: &Env, m: &mut Map<String, Value>) {
        link(m, "chain", ctx.uri(&format!("/chains/{}", self.chain_id)));
        if let Some(p) = env.rule_positions.get(&self.id.uuid()) {
            m.insert("position".into(), json!(p));
        }
    }
    fn load_env<'a>(tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            for c in all::<Chain>(tx).await? {
                for (i, r) in c.rule_ids.iter().enumerate() {
                    env.rule_positions.insert(r.uuid(), i as u32 + 1);
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- groups and mirrors

impl Kind for PortGroup {
    const DESC: Desc = Desc {
        what: "port group",
        media: "PortGroup-v1",
        root: Some("portGroups"),
        template: "portGroupTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn sample() -> Self {
        PortGroup {
            name: "pg0".into(),
            tenant_id: Some("t1".into()),
            stateful: true,
            ..Default::default()
        }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let id = Some(self.id);
            let me = self.id.uuid();
            for rule in all::<Rule>(tx).await? {
                let c = &rule.condition;
                for (f, v) in [
                    ("portGroup", c.port_group),
                    ("inPortGroup", c.in_port_group),
                    ("outPortGroup", c.out_port_group),
                ] {
                    if v == id {
                        return Err(in_use("port group", me, "rule", rule.id, f));
                    }
                }
            }
            for p in all::<Port>(tx).await? {
                if p.port_group_ids.contains(&self.id) {
                    return Err(in_use("port group", me, "port", p.id, "portGroupIds"));
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "ports", ctx.uri(&format!("/port_groups/{}/ports", self.id)));
    }
}

impl Kind for IpAddrGroup {
    const DESC: Desc = Desc {
        what: "IP address group",
        media: "IpAddrGroup-v1",
        root: Some("ipAddrGroups"),
        template: "ipAddrGroupTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn sample() -> Self {
        IpAddrGroup { name: "sg0".into(), tenant_id: Some("t1".into()), ..Default::default() }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let id = Some(self.id);
            for rule in all::<Rule>(tx).await? {
                let c = &rule.condition;
                for (f, v) in [
                    ("ipAddrGroupSrc", c.ip_addr_group_src),
                    ("ipAddrGroupDst", c.ip_addr_group_dst),
                ] {
                    if v == id {
                        return Err(in_use("IP address group", self.id.uuid(), "rule", rule.id, f));
                    }
                }
            }
            let prefix = format!("{}/", ObjectKind::IpAddrGroupAddr.key(&[&self.id.to_string()]));
            for (k, _) in tx.list_raw(&prefix).await? {
                tx.delete(&k);
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "ipAddrs", ctx.uri(&format!("/ip_addr_groups/{}/ip_addrs", self.id)));
    }
}

impl Kind for Mirror {
    const DESC: Desc = Desc {
        what: "mirror",
        media: "Mirror-v1",
        root: Some("mirrors"),
        template: "mirrorTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let mut v = Vec::new();
        r("toPortId", ObjectKind::Port, self.to_port_id, &mut v);
        v
    }
    fn sample() -> Self {
        Mirror {
            to_port_id: Some(PortId::nil()),
            tenant_id: Some("t1".into()),
            ..Default::default()
        }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let me = self.id.uuid();
            let has = |v: &[MirrorId]| v.contains(&self.id);
            for p in all::<Port>(tx).await? {
                if has(&p.inbound_mirror_ids)
                    || has(&p.outbound_mirror_ids)
                    || has(&p.post_in_filter_mirror_ids)
                    || has(&p.pre_out_filter_mirror_ids)
                {
                    return Err(in_use("mirror", me, "port", p.id, "mirror ids"));
                }
            }
            for b in all::<Bridge>(tx).await? {
                if has(&b.inbound_mirror_ids) || has(&b.outbound_mirror_ids) {
                    return Err(in_use("mirror", me, "bridge", b.id, "mirror ids"));
                }
            }
            for rt in all::<Router>(tx).await? {
                if has(&rt.inbound_mirror_ids) || has(&rt.outbound_mirror_ids) {
                    return Err(in_use("mirror", me, "router", rt.id, "mirror ids"));
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link_opt(m, ctx, "toPort", "ports", self.to_port_id);
    }
}

// ---------------------------------------------------------------- hosts and tunnel zones

impl Kind for Host {
    const DESC: Desc = Desc {
        what: "host",
        media: "Host-v3",
        root: Some("hosts"),
        template: "hostTemplate",
        admin_only: true,
        verbs: NO_CREATE,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
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
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            // Name and addresses are reported by the host's agent.
            self.alive = false;
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
            for mut p in all::<Port>(tx).await? {
                if p.host_id == Some(self.id) {
                    p.host_id = None;
                    p.interface_name = None;
                    tx.put(&p.store_key(), &p);
                }
            }
            for m in all::<TunnelZoneHost>(tx).await? {
                if m.host_id == self.id {
                    tx.delete(&m.store_key());
                }
            }
            let prefix = format!("{}/", ObjectKind::HostInterface.key(&[&self.id.to_string()]));
            for (k, _) in tx.list_raw(&prefix).await? {
                tx.delete(&k);
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/hosts/{}", self.id));
        link(m, "interfaces", format!("{base}/interfaces"));
        link(m, "ports", format!("{base}/ports"));
        m.insert("alive".into(), Value::Bool(env.alive_hosts.contains(&self.id.uuid())));
    }
    fn load_env<'a>(tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            env.alive_hosts = state_ids(tx, "hosts").await?;
            Ok(())
        })
    }
    fn load_env_one<'a>(&'a self, tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            if tx.exists(&db::host_alive_key(self.id.uuid())).await? {
                env.alive_hosts.insert(self.id.uuid());
            }
            Ok(())
        })
    }
}

impl Kind for TunnelZone {
    const DESC: Desc = Desc {
        what: "tunnel zone",
        media: "TunnelZone-v1",
        root: Some("tunnelZones"),
        template: "tunnelZoneTemplate",
        admin_only: true,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn sample() -> Self {
        TunnelZone { name: "tz0".into(), ..Default::default() }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let prefix = format!("{}/", ObjectKind::TunnelZoneHost.key(&[&self.id.to_string()]));
            for (k, _) in tx.list_raw(&prefix).await? {
                tx.delete(&k);
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "hosts", ctx.uri(&format!("/tunnel_zones/{}/hosts", self.id)));
    }
}

// ---------------------------------------------------------------- load balancing

impl Kind for LoadBalancer {
    const DESC: Desc = Desc {
        what: "load balancer",
        media: "LoadBalancer-v1",
        root: Some("loadBalancers"),
        template: "loadBalancerTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let mut v = Vec::new();
        r("routerId", ObjectKind::Router, self.router_id, &mut v);
        v
    }
    fn sample() -> Self {
        LoadBalancer { admin_state_up: true, tenant_id: Some("t1".into()), ..Default::default() }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let me = self.id.uuid();
            if let Some(p) =
                all::<Pool>(tx).await?.into_iter().find(|p| p.load_balancer_id == self.id)
            {
                return Err(in_use("load balancer", me, "pool", p.id, "loadBalancerId"));
            }
            if let Some(v) =
                all::<Vip>(tx).await?.into_iter().find(|v| v.load_balancer_id == self.id)
            {
                return Err(in_use("load balancer", me, "VIP", v.id, "loadBalancerId"));
            }
            for mut rt in all::<Router>(tx).await? {
                if rt.load_balancer_id == Some(self.id) {
                    rt.load_balancer_id = None;
                    tx.put(&rt.store_key(), &rt);
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/load_balancers/{}", self.id));
        link(m, "pools", format!("{base}/pools"));
        link(m, "vips", format!("{base}/vips"));
        link_opt(m, ctx, "router", "routers", self.router_id);
    }
}

impl Kind for Pool {
    const DESC: Desc = Desc {
        what: "pool",
        media: "Pool-v1",
        root: Some("pools"),
        template: "poolTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::LoadBalancer, self.load_balancer_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.load_balancer_id = id.into();
    }
    fn child_body(_parent: ObjectKind, id: Uuid, body: &mut Map<String, Value>) {
        body.insert("loadBalancerId".into(), json!(id));
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        let mut v =
            vec![("loadBalancerId", ObjectKind::LoadBalancer, self.load_balancer_id.uuid())];
        r("healthMonitorId", ObjectKind::HealthMonitor, self.health_monitor_id, &mut v);
        v
    }
    fn sample() -> Self {
        serde_json::from_value(json!({"loadBalancerId": Uuid::nil()})).expect("sample pool parses")
    }
    fn on_update<'a>(&'a mut self, old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            self.load_balancer_id = old.load_balancer_id;
            Ok(())
        })
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            if let Some(v) = all::<Vip>(tx).await?.into_iter().find(|v| v.pool_id == self.id) {
                return Err(in_use("pool", self.id.uuid(), "VIP", v.id, "poolId"));
            }
            for m in all::<PoolMember>(tx).await? {
                if m.pool_id == self.id {
                    tx.delete(&m.store_key());
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/pools/{}", self.id));
        link(m, "poolMembers", format!("{base}/pool_members"));
        link(m, "vips", format!("{base}/vips"));
        link(m, "loadBalancer", ctx.uri(&format!("/load_balancers/{}", self.load_balancer_id)));
        link_opt(m, ctx, "healthMonitor", "health_monitors", self.health_monitor_id);
    }
}

impl Kind for PoolMember {
    const DESC: Desc = Desc {
        what: "pool member",
        media: "PoolMember-v1",
        root: Some("poolMembers"),
        template: "poolMemberTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::Pool, self.pool_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.pool_id = id.into();
    }
    fn child_body(_parent: ObjectKind, id: Uuid, body: &mut Map<String, Value>) {
        body.insert("poolId".into(), json!(id));
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        vec![("poolId", ObjectKind::Pool, self.pool_id.uuid())]
    }
    fn sample() -> Self {
        serde_json::from_value(
            json!({"poolId": Uuid::nil(), "address": "10.0.0.10", "protocolPort": 80}),
        )
        .expect("sample member parses")
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "pool", ctx.uri(&format!("/pools/{}", self.pool_id)));
    }
}

impl Kind for Vip {
    const DESC: Desc = Desc {
        what: "VIP",
        media: "VIP-v1",
        root: Some("vips"),
        template: "vipTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::LoadBalancer, self.load_balancer_id.uuid()))
    }
    fn set_parent(&mut self, kind: ObjectKind, id: Uuid) {
        if kind == ObjectKind::Pool {
            self.pool_id = id.into();
        } else {
            self.load_balancer_id = id.into();
        }
    }
    fn child_body(parent: ObjectKind, id: Uuid, body: &mut Map<String, Value>) {
        if parent == ObjectKind::Pool {
            body.insert("poolId".into(), json!(id));
            // Taken from the pool on create (see vip_pool_matches).
            body.entry("loadBalancerId").or_insert(json!(Uuid::nil()));
        } else {
            body.insert("loadBalancerId".into(), json!(id));
        }
    }
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)> {
        vec![
            ("loadBalancerId", ObjectKind::LoadBalancer, self.load_balancer_id.uuid()),
            ("poolId", ObjectKind::Pool, self.pool_id.uuid()),
        ]
    }
    fn sample() -> Self {
        serde_json::from_value(json!({"loadBalancerId": Uuid::nil(), "poolId": Uuid::nil(), "address": "192.0.2.10", "protocolPort": 80}))
            .expect("sample vip parses")
    }
    fn on_create<'a>(&'a mut self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move { vip_pool_matches(self, tx).await })
    }
    fn on_update<'a>(&'a mut self, _old: &'a Self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move { vip_pool_matches(self, tx).await })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "pool", ctx.uri(&format!("/pools/{}", self.pool_id)));
        link(m, "loadBalancer", ctx.uri(&format!("/load_balancers/{}", self.load_balancer_id)));
    }
}

/// A VIP's pool must belong to the VIP's load balancer; a VIP created under
/// a pool takes the pool's load balancer.
async fn vip_pool_matches(v: &mut Vip, tx: &mut Tx) -> Result<(), ApiError> {
    let pool: Option<Pool> = tx.get(&key_of(ObjectKind::Pool, v.pool_id.uuid())).await?;
    let Some(pool) = pool else {
        return Err(ApiError::field("poolId", format!("pool {} does not exist", v.pool_id)));
    };
    if v.load_balancer_id.is_nil() {
        v.load_balancer_id = pool.load_balancer_id;
    } else if pool.load_balancer_id != v.load_balancer_id {
        return Err(ApiError::field(
            "poolId",
            format!(
                "pool {} belongs to load balancer {}, not {}",
                pool.id, pool.load_balancer_id, v.load_balancer_id
            ),
        ));
    }
    Ok(())
}

impl Kind for HealthMonitor {
    const DESC: Desc = Desc {
        what: "health monitor",
        media: "HealthMonitor-v1",
        root: Some("healthMonitors"),
        template: "healthMonitorTemplate",
        admin_only: false,
        verbs: ALL,
        serialize_creates: false,
    };
    fn id(&self) -> Uuid {
        self.id.uuid()
    }
    fn set_id(&mut self, id: Uuid) {
        self.id = id.into();
    }
    fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.tenant_id)
    }
    fn own_tenant(&self) -> Option<Option<&str>> {
        Some(self.tenant_id.as_deref())
    }
    fn sample() -> Self {
        serde_json::from_value(json!({"type": "TCP", "tenantId": "t1"}))
            .expect("sample monitor parses")
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            if let Some(p) =
                all::<Pool>(tx).await?.into_iter().find(|p| p.health_monitor_id == Some(self.id))
            {
                return Err(in_use(
                    "health monitor",
                    self.id.uuid(),
                    "pool",
                    p.id,
                    "healthMonitorId",
                ));
            }
            Ok(())
        })
    }
}
