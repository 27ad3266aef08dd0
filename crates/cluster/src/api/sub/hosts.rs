//! Host registration, interfaces and port bindings; tunnel zone members.

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::{get, post};
use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{conflict_exists, location, obj_dto, prefix_of};
use crate::api::ctx::{no_content, Ctx};
use crate::api::generic::{self, load_visible, parse_id};
use crate::api::kinds::{self, Env, Kind};
use crate::api::{doc, Builder};
use crate::db::Tx;
use crate::error::ApiError;
use crate::txn;

pub(super) fn routes(b: Builder) -> Builder {
    b.route(
        "/hosts",
        post(register_host),
        vec![doc::create("Register a host (admin; used by agents and tests)", "Host-v3")],
    )
    .route(
        "/hosts/{id}/credential",
        get(credential_status).post(enroll).delete(revoke),
        vec![
            doc::get(
                "Whether the host has a credential, and when it was issued (admin)",
                "HostCredential-v1",
            ),
            doc::create(
                "Issue the host's agent credential, replacing any earlier one (admin; shown once)",
                "HostCredential-v1",
            ),
            doc::delete("Revoke the host's agent credential and end its session (admin)"),
        ],
    )
    .route(
        "/hosts/{id}/interfaces",
        get(list_interfaces).post(register_interface),
        vec![
            doc::list("Interfaces of a host", "Interface-v1"),
            doc::create("Register an interface (admin; used by agents and tests)", "Interface-v1"),
        ],
    )
    .route(
        "/hosts/{id}/interfaces/{name}",
        get(get_interface),
        vec![doc::get("One interface of a host", "Interface-v1")],
    )
    .route(
        "/hosts/{id}/ports",
        get(list_bindings).post(bind),
        vec![
            doc::list("Ports bound to interfaces of a host", "HostInterfacePort-v1"),
            doc::create("Bind a port to an interface of the host", "HostInterfacePort-v1"),
        ],
    )
    .route(
        "/hosts/{id}/ports/{port}",
        get(get_binding).delete(unbind),
        vec![doc::get("One binding", "HostInterfacePort-v1"), doc::delete("Unbind the port")],
    )
    .route(
        "/tunnel_zones/{id}/hosts",
        get(list_members).post(add_member),
        vec![
            doc::list("Members of a tunnel zone", "TunnelZoneHost-v1"),
            doc::create("Add a host to a tunnel zone", "TunnelZoneHost-v1"),
        ],
    )
    .route(
        "/tunnel_zones/{id}/hosts/{host}",
        get(get_member).delete(remove_member),
        vec![
            doc::get("One member", "TunnelZoneHost-v1"),
            doc::delete("Remove a host from the zone"),
        ],
    )
}

// ---------------------------------------------------------------- hosts

/// The host id of a credential path: any UUID, since a host is enrolled
/// before its agent first registers it.
fn credential_host(ctx: &Ctx, id: &str) -> Result<HostId, ApiError> {
    ctx.require_admin("hosts")?;
    parse_id("host", id).map(HostId::from_uuid)
}

/// `POST /hosts/{id}/credential`: 201 with the token, the only time it is
/// shown (the store keeps its digest).
async fn enroll(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let host = credential_host(&ctx, &id)?;
    let token = crate::host_credentials::issue(&ctx.cluster.store, host).await?;
    tracing::info!(%host, "host credential issued");
    let uri = format!("{}/hosts/{host}/credential", ctx.base);
    Ok(ctx.created(
        "HostCredential-v1",
        &uri,
        json!({ "hostId": host, "credential": token.encode(), "uri": uri }),
    ))
}

/// `GET /hosts/{id}/credential`: issued or not, never the secret.
async fn credential_status(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let host = credential_host(&ctx, &id)?;
    let rec = crate::host_credentials::record(&ctx.cluster.store, host)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("host {host} has no credential")))?;
    Ok(ctx.one("HostCredential-v1", json!({ "hostId": host, "issuedAt": rec.issued_at })))
}

/// `DELETE /hosts/{id}/credential`: the agent is cut off now.
async fn revoke(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let host = credential_host(&ctx, &id)?;
    if !crate::host_credentials::revoke(&ctx.cluster.store, host).await? {
        return Err(ApiError::not_found(format!("host {host} has no credential")));
    }
    tracing::info!(%host, "host credential revoked");
    Ok(no_content())
}

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

async fn host_of(tx: &mut Tx, ctx: &Ctx, id: &str) -> Result<Host, ApiError> {
    ctx.require_admin("hosts")?;
    let id = parse_id("host", id)?;
    load_visible::<Host>(tx, ctx, id).await
}

fn interface_dto(ctx: &Ctx, i: &HostInterface) -> Value {
    obj_dto(i, ctx.uri(&format!("/hosts/{}/interfaces/{}", i.host_id, i.name)), &[])
}

async fn list_interfaces(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let h = host_of(&mut tx, &ctx, &id).await?;
    let items: Vec<HostInterface> =
        tx.list(&prefix_of(ObjectKind::HostInterface, &[&h.id.to_string()])).await?;
    Ok(ctx.many("Interface-v1", items.iter().map(|i| interface_dto(&ctx, i)).collect()))
}

async fn get_interface(
    ctx: Ctx,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let h = host_of(&mut tx, &ctx, &id).await?;
    let i: HostInterface = tx
        .get(&ObjectKind::HostInterface.key(&[&h.id.to_string(), &name]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("interface {name} of host {}", h.id)))?;
    Ok(ctx.one("Interface-v1", interface_dto(&ctx, &i)))
}

async fn register_interface(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    ctx.require_admin("hosts")?;
    let i: HostInterface = ctx.parse(&body)?;
    i.validate()?;
    // The name is a path segment of the interface's key and URI.
    if i.name.contains('/')
        || i.name.contains(char::is_whitespace)
        || i.name.contains(char::is_control)
    {
        return Err(ApiError::field(
            "name",
            format!("`{}` is not a valid interface name", i.name.escape_debug()),
        ));
    }
    let ctx = &ctx;
    let iface = txn!(ctx.cluster, tx => {
        let h = host_of(&mut tx, ctx, &id).await?;
        let mut i = i.clone();
        i.host_id = h.id;
        tx.put(&i.store_key(), &i);
        tx.touch(h.id.uuid());
        Ok(i)
    })?;
    let dto = interface_dto(ctx, &iface);
    let loc = location(&dto);
    Ok(ctx.created("Interface-v1", &loc, dto))
}

fn binding_dto(ctx: &Ctx, p: &Port) -> Value {
    let host = p.host_id.map(|h| h.to_string()).unwrap_or_default();
    json!({
        "hostId": host,
        "portId": p.id,
        "interfaceName": p.interface_name,
        "uri": ctx.uri(&format!("/hosts/{host}/ports/{}", p.id)),
        "host": ctx.uri(&format!("/hosts/{host}")),
        "port": ctx.uri(&format!("/ports/{}", p.id)),
    })
}

async fn list_bindings(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let h = host_of(&mut tx, &ctx, &id).await?;
    let ports: Vec<Port> = kinds::mentioning(&mut tx, h.id.uuid()).await?;
    let items = ports
        .iter()
        .filter(|p| p.host_id == Some(h.id) && p.interface_name.is_some())
        .map(|p| binding_dto(&ctx, p))
        .collect();
    Ok(ctx.many("HostInterfacePort-v1", items))
}

async fn bound_port(tx: &mut Tx, ctx: &Ctx, host: &str, port: &str) -> Result<Port, ApiError> {
    let h = host_of(tx, ctx, host).await?;
    let pid = parse_id("port", port)?;
    let p: Port = load_visible(tx, ctx, pid).await?;
    if p.host_id != Some(h.id) || p.interface_name.is_none() {
        return Err(ApiError::not_found(format!("binding of port {pid} on host {}", h.id)));
    }
    Ok(p)
}

async fn get_binding(ctx: Ctx, Path((h, p)): Path<(String, String)>) -> Result<Response, ApiError> {
    let p = bound_port(&mut ctx.tx(), &ctx, &h, &p).await?;
    Ok(ctx.one("HostInterfacePort-v1", binding_dto(&ctx, &p)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindBody {
    #[serde(default, deserialize_with = "midonet_model::lenient::opt_parse")]
    port_id: Option<PortId>,
    #[serde(default)]
    interface_name: Option<String>,
}

async fn bind(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    ctx.require_admin("hosts")?;
    let b: BindBody = ctx.parse(&body)?;
    let pid = b.port_id.ok_or_else(|| ApiError::field("portId", "the port to bind is required"))?;
    let ifname = b
        .interface_name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::field("interfaceName", "the interface to bind to is required"))?;
    let ctx = &ctx;
    let port = txn!(ctx.cluster, tx => {
        let h = host_of(&mut tx, ctx, &id).await?;
        let mut p: Port = load_visible(&mut tx, ctx, pid.uuid()).await.map_err(|e| e.on("portId"))?;
        if let Some(peer) = p.peer_id {
            return Err(ApiError::conflict(format!("port {pid} is linked to port {peer}; unlink it first")).on("portId"));
        }
        // Only ports that mention the host can be bound to it: found by a
        // substring search over the raw values, not by decoding every port.
        for other in kinds::mentioning::<Port>(&mut tx, h.id.uuid()).await? {
            if other.id != p.id && other.host_id == Some(h.id) && other.interface_name.as_deref() == Some(ifname.as_str()) {
                return Err(ApiError::conflict(format!(
                    "interface {ifname} of host {} is already bound to port {}", h.id, other.id
                )).on("interfaceName"));
            }
        }
        p.host_id = Some(h.id);
        p.interface_name = Some(ifname.clone());
        p.validate()?;
        tx.put(&p.store_key(), &p);
        tx.touch(h.id.uuid());
        Ok(p)
    })?;
    let dto = binding_dto(ctx, &port);
    let loc = location(&dto);
    Ok(ctx.created("HostInterfacePort-v1", &loc, dto))
}

async fn unbind(ctx: Ctx, Path((h, p)): Path<(String, String)>) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let mut port = bound_port(&mut tx, ctx, &h, &p).await?;
        port.host_id = None;
        port.interface_name = None;
        tx.put(&port.store_key(), &port);
        Ok(())
    })?;
    Ok(no_content())
}

// ---------------------------------------------------------------- tunnel zone members

async fn zone_of(tx: &mut Tx, ctx: &Ctx, id: &str) -> Result<TunnelZone, ApiError> {
    ctx.require_admin("tunnel zones")?;
    let id = parse_id("tunnel zone", id)?;
    load_visible::<TunnelZone>(tx, ctx, id).await
}

fn member_dto(ctx: &Ctx, m: &TunnelZoneHost) -> Value {
    obj_dto(
        m,
        ctx.uri(&format!("/tunnel_zones/{}/hosts/{}", m.tunnel_zone_id, m.host_id)),
        &[("host", ctx.uri(&format!("/hosts/{}", m.host_id)))],
    )
}

async fn list_members(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let z = zone_of(&mut tx, &ctx, &id).await?;
    let items: Vec<TunnelZoneHost> =
        tx.list(&prefix_of(ObjectKind::TunnelZoneHost, &[&z.id.to_string()])).await?;
    Ok(ctx.many("TunnelZoneHost-v1", items.iter().map(|m| member_dto(&ctx, m)).collect()))
}

async fn member(tx: &mut Tx, ctx: &Ctx, z: &str, h: &str) -> Result<TunnelZoneHost, ApiError> {
    let z = zone_of(tx, ctx, z).await?;
    let hid = parse_id("host", h)?;
    tx.get(&ObjectKind::TunnelZoneHost.key(&[&z.id.to_string(), &hid.to_string()]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("host {hid} in tunnel zone {}", z.id)))
}

async fn get_member(ctx: Ctx, Path((z, h)): Path<(String, String)>) -> Result<Response, ApiError> {
    let m = member(&mut ctx.tx(), &ctx, &z, &h).await?;
    Ok(ctx.one("TunnelZoneHost-v1", member_dto(&ctx, &m)))
}

async fn add_member(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    ctx.require_admin("tunnel zones")?;
    let m: TunnelZoneHost = ctx.parse(&body)?;
    let ctx = &ctx;
    let m = txn!(ctx.cluster, tx => {
        let z = zone_of(&mut tx, ctx, &id).await?;
        let mut m = m.clone();
        m.tunnel_zone_id = z.id;
        m.validate()?;
        if !tx.exists(&ObjectKind::Host.key(&[&m.host_id.to_string()])).await? {
            return Err(ApiError::not_found(format!("host {}", m.host_id)).on("hostId"));
        }
        if tx.exists(&m.store_key()).await? {
            return Err(conflict_exists(format!("host {} in tunnel zone {}", m.host_id, z.id)).on("hostId"));
        }
        tx.put(&m.store_key(), &m);
        tx.touch(z.id.uuid());
        tx.touch(m.host_id.uuid());
        Ok(m)
    })?;
    let dto = member_dto(ctx, &m);
    let loc = location(&dto);
    Ok(ctx.created("TunnelZoneHost-v1", &loc, dto))
}

async fn remove_member(
    ctx: Ctx,
    Path((z, h)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let m = member(&mut tx, ctx, &z, &h).await?;
        tx.delete(&m.store_key());
        Ok(())
    })?;
    Ok(no_content())
}
