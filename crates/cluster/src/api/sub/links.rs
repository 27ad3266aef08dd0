//! Interior ports of a device, and linking two ports.

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::{get, post};
use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde::Deserialize;

use crate::api::ctx::{no_content, Ctx};
use crate::api::generic::{self, check_parent, load_visible, parse_id};
use crate::api::kinds::{Env, Kind};
use crate::api::{doc, Builder};
use crate::error::ApiError;
use crate::txn;

pub(super) fn routes(b: Builder) -> Builder {
    b.route(
        "/bridges/{id}/peer_ports",
        get(|ctx: Ctx, Path(id): Path<String>| async move {
            peer_ports(&ctx, ObjectKind::Bridge, &id).await
        }),
        vec![doc::list("Interior ports of the bridge", "Port-v3")],
    )
    .route(
        "/routers/{id}/peer_ports",
        get(|ctx: Ctx, Path(id): Path<String>| async move {
            peer_ports(&ctx, ObjectKind::Router, &id).await
        }),
        vec![doc::list("Interior ports of the router", "Port-v3")],
    )
    .route(
        "/ports/{id}/link",
        post(link).delete(unlink),
        vec![
            doc::create("Link two ports (body: the port with peerId, or {peerId})", "PortLink-v1"),
            doc::delete("Unlink the port and its peer"),
        ],
    )
}

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
    let peer = b
        .peer_id
        .ok_or_else(|| ApiError::field("peerId", "the port to link to is required"))?
        .uuid();
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
