//! Sub-resources: children that are top-level objects (through the generic
//! handlers), and the ones that are not (links, bindings, memberships,
//! DHCP, MAC/ARP tables, addresses, interfaces).

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

use super::ctx::{no_content, Ctx};
use super::generic::{self, check_parent, load_visible, parse_id};
use super::kinds::{Env, Kind};
use super::{Builder, D};
use crate::error::ApiError;
use crate::{txn, Cluster};

type Mr = MethodRouter<Arc<Cluster>>;

/// A child collection of top-level objects: `GET`/`POST /<parent>/{id}/<child>`.
macro_rules! children {
    ($b:expr, $path:literal, $parent:expr, $t:ty, $keep:expr) => {{
        let keep = $keep;
        let mr: Mr = get(move |ctx: Ctx, Path(id): Path<String>| async move {
            generic::list_children::<$t>(&ctx, $parent, &id, keep).await
        })
        .post(|ctx: Ctx, Path(id): Path<String>, body: Bytes| async move {
            generic::create_child::<$t>(&ctx, $parent, &id, &body).await
        });
        let d = <$t as Kind>::DESC;
        $b.route(
            $path,
            mr,
            vec![
                ("get", format!("List the {}s of a {}", d.what, $parent.segment().trim_end_matches('s')), Some(d.media), true, 200, false),
                ("post", format!("Create a {} in a {}", d.what, $parent.segment().trim_end_matches('s')), Some(d.media), false, 201, true),
            ],
        )
    }};
}

fn doc(method: &'static str, summary: &str, schema: Option<&'static str>, list: bool, status: u16, body: bool) -> D {
    (method, summary.to_string(), schema, list, status, body)
}

pub fn routes(b: Builder) -> Builder {
    let b = children!(b, "/bridges/{id}/ports", ObjectKind::Bridge, Port, |p: &Port, id: Uuid| p.device_id.uuid() == id);
    let b = children!(b, "/routers/{id}/ports", ObjectKind::Router, Port, |p: &Port, id: Uuid| p.device_id.uuid() == id);
    let b = children!(b, "/routers/{id}/routes", ObjectKind::Router, Route, |r: &Route, id: Uuid| r.router_id.uuid() == id);
    let b = children!(b, "/chains/{id}/rules", ObjectKind::Chain, Rule, |_: &Rule, _: Uuid| true);
    let b = children!(b, "/load_balancers/{id}/pools", ObjectKind::LoadBalancer, Pool, |p: &Pool, id: Uuid| p.load_balancer_id.uuid() == id);
    let b = children!(b, "/load_balancers/{id}/vips", ObjectKind::LoadBalancer, Vip, |v: &Vip, id: Uuid| v.load_balancer_id.uuid() == id);
    let b = children!(b, "/pools/{id}/pool_members", ObjectKind::Pool, PoolMember, |m: &PoolMember, id: Uuid| m.pool_id.uuid() == id);
    let b = children!(b, "/pools/{id}/vips", ObjectKind::Pool, Vip, |v: &Vip, id: Uuid| v.pool_id.uuid() == id);

    b.route(
        "/bridges/{id}/peer_ports",
        get(|ctx: Ctx, Path(id): Path<String>| async move { peer_ports(&ctx, ObjectKind::Bridge, &id).await }),
        vec![doc("get", "Interior ports of the bridge", Some("Port-v3"), true, 200, false)],
    )
    .route(
        "/routers/{id}/peer_ports",
        get(|ctx: Ctx, Path(id): Path<String>| async move { peer_ports(&ctx, ObjectKind::Router, &id).await }),
        vec![doc("get", "Interior ports of the router", Some("Port-v3"), true, 200, false)],
    )
    .route(
        "/ports/{id}/link",
        post(link).delete(unlink),
        vec![
            doc("post", "Link two ports (body: the port with peerId, or {peerId})", Some("PortLink-v1"), false, 201, true),
            doc("delete", "Unlink the port and its peer", None, false, 204, false),
        ],
    )
    .route(
        "/hosts",
        post(register_host),
        vec![doc("post", "Register a host (admin; used by agents and tests)", Some("Host-v3"), false, 201, true)],
    )
}

// ---------------------------------------------------------------- peer ports and links

async fn peer_ports(ctx: &Ctx, kind: ObjectKind, id: &str) -> Result<Response, ApiError> {
    let pid = parse_id(kind.segment(), id)?;
    check_parent(&mut ctx.tx(), ctx, kind, pid).await?;
    generic::list_filtered::<Port>(ctx, |p| p.device_id.uuid() == pid && p.peer_id.is_some()).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkBody {
    #[serde(default, deserialize_with = "midonet_model::lenient::opt_parse")]
    peer_id: Option<PortId>,
}

async fn link(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let id = parse_id("port", &id)?;
    let b: LinkBody = ctx.parse(&body)?;
    let peer = b.peer_id.ok_or_else(|| ApiError::field("peerId", "the port to link to is required"))?.uuid();
    if peer == id {
        return Err(ApiError::field("peerId", "a port cannot be linked to itself"));
    }
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let mut a: Port = load_visible(&mut tx, ctx, id).await?;
        let mut p: Port = load_visible(&mut tx, ctx, peer).await.map_err(|e| e.on("peerId"))?;
        if a.peer_id == Some(p.id) && p.peer_id == Some(a.id) {
            return Ok(());
        }
        for (x, y) in [(&a, &p), (&p, &a)] {
            if let Some(other) = x.peer_id {
                if other != y.id {
                    return Err(ApiError::conflict(format!("port {} is already linked to port {other}", x.id)).on("peerId"));
                }
            }
            if x.is_exterior() {
                return Err(ApiError::conflict(format!("port {} is bound to an interface; unbind it first", x.id)).on("peerId"));
            }
        }
        if a.device_id == p.device_id {
            return Err(ApiError::conflict("cannot link two ports of the same device").on("peerId"));
        }
        if a.is_bridge_port() && p.is_bridge_port() && a.vlan_id.is_none() && p.vlan_id.is_none() {
            return Err(ApiError::field("peerId", "two bridge ports can be linked only if one of them has a vlanId"));
        }
        a.peer_id = Some(p.id);
        p.peer_id = Some(a.id);
        tx.put(&a.store_key(), &a);
        tx.put(&p.store_key(), &p);
        tx.touch(a.id.uuid());
        tx.touch(p.id.uuid());
        Ok(())
    })?;
    let loc = ctx.uri(&format!("/ports/{id}"));
    let mut tx = ctx.tx();
    let port: Port = load_visible(&mut tx, ctx, id).await?;
    let mut env = Env::default();
    Port::load_env(&mut tx, &mut env).await?;
    Ok(ctx.created("Port-v3", &loc, generic::render(ctx, &env, &port)))
}

async fn unlink(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("port", &id)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let mut a: Port = load_visible(&mut tx, ctx, id).await?;
        if let Some(peer) = a.peer_id.take() {
            let key = ObjectKind::Port.key(&[&peer.to_string()]);
            if let Some(mut p) = tx.get::<Port>(&key).await? {
                if p.peer_id == Some(a.id) {
                    p.peer_id = None;
                    tx.put(&key, &p);
                }
            }
            tx.put(&a.store_key(), &a);
        }
        Ok(())
    })?;
    Ok(no_content())
}

// ---------------------------------------------------------------- hosts

/// Agents (and tests) register hosts: create or refresh name and addresses.
async fn register_host(ctx: Ctx, body: Bytes) -> Result<Response, ApiError> {
    ctx.require_admin("hosts")?;
    let h: Host = ctx.parse(&body)?;
    h.validate()?;
    let ctx = &ctx;
    let host = txn!(ctx.cluster, tx => {
        let mut h = h.clone();
        if h.id.is_nil() {
            h.id = HostId::random();
        }
        h.alive = false;
        let key = h.store_key();
        if let Some(old) = tx.get::<Host>(&key).await? {
            // Keep operator-set weights and limits on re-registration.
            h.flooding_proxy_weight = old.flooding_proxy_weight;
            h.container_weight = old.container_weight;
            h.container_limit = old.container_limit;
            h.enforce_container_limit = old.enforce_container_limit;
        }
        tx.put(&key, &h);
        Ok(h)
    })?;
    let mut env = Env::default();
    Host::load_env(&mut ctx.tx(), &mut env).await?;
    let loc = ctx.uri(&format!("/hosts/{}", host.id));
    Ok(ctx.created("Host-v3", &loc, generic::render(ctx, &env, &host)))
}

#[allow(dead_code)]
fn _json() -> Value {
    json!(null)
}
