//! Port group members and IP address group addresses.

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{conflict_exists, location, obj_dto, prefix_of};
use crate::api::ctx::{no_content, Ctx};
use crate::api::generic::{load_visible, parse_id};
use crate::api::kinds;
use crate::api::{doc, Builder};
use crate::db::Tx;
use crate::error::ApiError;
use crate::txn;

pub(super) fn routes(b: Builder) -> Builder {
    b.route(
        "/port_groups/{id}/ports",
        get(list_group_ports).post(add_group_port),
        vec![
            doc::list("Members of a port group", "PortGroupPort-v1"),
            doc::create("Add a port to the group", "PortGroupPort-v1"),
        ],
    )
    .route(
        "/port_groups/{id}/ports/{port}",
        get(get_group_port).delete(remove_group_port),
        vec![
            doc::get("One membership", "PortGroupPort-v1"),
            doc::delete("Remove the port from the group"),
        ],
    )
    .route(
        "/ports/{id}/port_groups",
        get(port_groups_of_port),
        vec![doc::list("Groups the port is a member of", "PortGroupPort-v1")],
    )
    .route(
        "/ip_addr_groups/{id}/ip_addrs",
        get(|c: Ctx, Path(g): Path<String>| async move { list_addrs(&c, &g, None).await }).post(
            |c: Ctx, Path(g): Path<String>, b: Bytes| async move {
                add_addr(&c, &g, None, &b).await
            },
        ),
        vec![
            doc::list("Addresses of an IP address group", "IpAddrGroupAddr-v1"),
            doc::create("Add an address", "IpAddrGroupAddr-v1"),
        ],
    )
    .route(
        "/ip_addr_groups/{id}/ip_addrs/{addr}",
        get(|c: Ctx, Path((g, a)): Path<(String, String)>| async move {
            get_addr(&c, &g, None, &a).await
        })
        .delete(|c: Ctx, Path((g, a)): Path<(String, String)>| async move {
            remove_addr(&c, &g, None, &a).await
        }),
        vec![doc::get("One address", "IpAddrGroupAddr-v1"), doc::delete("Remove an address")],
    )
    .route(
        "/ip_addr_groups/{id}/versions/{version}/ip_addrs",
        get(|c: Ctx, Path((g, v)): Path<(String, String)>| async move {
            list_addrs(&c, &g, Some(&v)).await
        })
        .post(|c: Ctx, Path((g, v)): Path<(String, String)>, b: Bytes| async move {
            add_addr(&c, &g, Some(&v), &b).await
        }),
        vec![
            doc::list("Addresses of one IP version", "IpAddrGroupAddr-v1"),
            doc::create("Add an address of that version", "IpAddrGroupAddr-v1"),
        ],
    )
    .route(
        "/ip_addr_groups/{id}/versions/{version}/ip_addrs/{addr}",
        get(|c: Ctx, Path((g, v, a)): Path<(String, String, String)>| async move {
            get_addr(&c, &g, Some(&v), &a).await
        })
        .delete(|c: Ctx, Path((g, v, a)): Path<(String, String, String)>| async move {
            remove_addr(&c, &g, Some(&v), &a).await
        }),
        vec![doc::get("One address", "IpAddrGroupAddr-v1"), doc::delete("Remove an address")],
    )
}

// ---------------------------------------------------------------- port group members

fn group_port_dto(ctx: &Ctx, g: PortGroupId, p: PortId) -> Value {
    json!({
        "portGroupId": g,
        "portId": p,
        "uri": ctx.uri(&format!("/port_groups/{g}/ports/{p}")),
        "portGroup": ctx.uri(&format!("/port_groups/{g}")),
        "port": ctx.uri(&format!("/ports/{p}")),
    })
}

async fn group_of(tx: &mut Tx, ctx: &Ctx, id: &str) -> Result<PortGroup, ApiError> {
    let id = parse_id("port group", id)?;
    load_visible::<PortGroup>(tx, ctx, id).await
}

async fn list_group_ports(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let g = group_of(&mut tx, &ctx, &id).await?;
    let ports: Vec<Port> = kinds::all(&mut tx).await?;
    let items = ports
        .iter()
        .filter(|p| p.port_group_ids.contains(&g.id))
        .map(|p| group_port_dto(&ctx, g.id, p.id))
        .collect();
    Ok(ctx.many("PortGroupPort-v1", items))
}

async fn group_member(
    tx: &mut Tx,
    ctx: &Ctx,
    g: &str,
    p: &str,
) -> Result<(PortGroup, Port), ApiError> {
    let g = group_of(tx, ctx, g).await?;
    let pid = parse_id("port", p)?;
    let port: Port = load_visible(tx, ctx, pid).await?;
    if !port.port_group_ids.contains(&g.id) {
        return Err(ApiError::not_found(format!("port {pid} in port group {}", g.id)));
    }
    Ok((g, port))
}

async fn get_group_port(
    ctx: Ctx,
    Path((g, p)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (g, p) = group_member(&mut ctx.tx(), &ctx, &g, &p).await?;
    Ok(ctx.one("PortGroupPort-v1", group_port_dto(&ctx, g.id, p.id)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupPortBody {
    #[serde(default, deserialize_with = "midonet_model::lenient::opt_parse")]
    port_id: Option<PortId>,
}

async fn add_group_port(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: GroupPortBody = ctx.parse(&body)?;
    let pid = b.port_id.ok_or_else(|| ApiError::field("portId", "the port to add is required"))?;
    let ctx = &ctx;
    let gid = txn!(ctx.cluster, tx => {
        let g = group_of(&mut tx, ctx, &id).await?;
        let mut p: Port = load_visible(&mut tx, ctx, pid.uuid()).await.map_err(|e| e.on("portId"))?;
        if p.port_group_ids.contains(&g.id) {
            return Err(conflict_exists(format!("port {pid} in port group {}", g.id)).on("portId"));
        }
        p.port_group_ids.push(g.id);
        tx.put(&p.store_key(), &p);
        tx.touch(g.id.uuid());
        Ok(g.id)
    })?;
    let dto = group_port_dto(ctx, gid, pid);
    let loc = location(&dto);
    Ok(ctx.created("PortGroupPort-v1", &loc, dto))
}

async fn remove_group_port(
    ctx: Ctx,
    Path((g, p)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let (g, mut port) = group_member(&mut tx, ctx, &g, &p).await?;
        port.port_group_ids.retain(|x| *x != g.id);
        tx.put(&port.store_key(), &port);
        Ok(())
    })?;
    Ok(no_content())
}

async fn port_groups_of_port(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let pid = parse_id("port", &id)?;
    let p: Port = load_visible(&mut ctx.tx(), &ctx, pid).await?;
    let items = p.port_group_ids.iter().map(|g| group_port_dto(&ctx, *g, p.id)).collect();
    Ok(ctx.many("PortGroupPort-v1", items))
}

// ---------------------------------------------------------------- IP address group addresses

fn parse_version(v: Option<&str>) -> Result<Option<u8>, ApiError> {
    match v {
        None => Ok(None),
        Some("4") => Ok(Some(4)),
        Some("6") => Ok(Some(6)),
        Some(other) => Err(ApiError::not_found(format!("IP version {other}"))),
    }
}

fn addr_dto(ctx: &Ctx, a: &IpAddrGroupAddr, version_path: bool) -> Value {
    let uri = if version_path {
        format!("/ip_addr_groups/{}/versions/{}/ip_addrs/{}", a.ip_addr_group_id, a.version, a.addr)
    } else {
        format!("/ip_addr_groups/{}/ip_addrs/{}", a.ip_addr_group_id, a.addr)
    };
    obj_dto(
        a,
        ctx.uri(&uri),
        &[("ipAddrGroup", ctx.uri(&format!("/ip_addr_groups/{}", a.ip_addr_group_id)))],
    )
}

async fn addr_group(tx: &mut Tx, ctx: &Ctx, id: &str) -> Result<IpAddrGroup, ApiError> {
    let id = parse_id("IP address group", id)?;
    load_visible::<IpAddrGroup>(tx, ctx, id).await
}

async fn list_addrs(ctx: &Ctx, g: &str, v: Option<&str>) -> Result<Response, ApiError> {
    let version = parse_version(v)?;
    let mut tx = ctx.tx();
    let g = addr_group(&mut tx, ctx, g).await?;
    let items: Vec<IpAddrGroupAddr> =
        tx.list(&prefix_of(ObjectKind::IpAddrGroupAddr, &[&g.id.to_string()])).await?;
    let out = items
        .iter()
        .filter(|a| version.is_none_or(|v| a.version == v))
        .map(|a| addr_dto(ctx, a, version.is_some()))
        .collect();
    Ok(ctx.many("IpAddrGroupAddr-v1", out))
}

async fn one_addr(
    tx: &mut Tx,
    ctx: &Ctx,
    g: &str,
    v: Option<&str>,
    a: &str,
) -> Result<IpAddrGroupAddr, ApiError> {
    let version = parse_version(v)?;
    let g = addr_group(tx, ctx, g).await?;
    let addr: std::net::IpAddr =
        a.parse().map_err(|_| ApiError::not_found(format!("address {a}")))?;
    let item: IpAddrGroupAddr = tx
        .get(&ObjectKind::IpAddrGroupAddr.key(&[&g.id.to_string(), &addr.to_string()]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("address {addr} in group {}", g.id)))?;
    if version.is_some_and(|v| v != item.version) {
        return Err(ApiError::not_found(format!(
            "address {addr} in IPv{} of group {}",
            version.unwrap_or(0),
            g.id
        )));
    }
    Ok(item)
}

async fn get_addr(ctx: &Ctx, g: &str, v: Option<&str>, a: &str) -> Result<Response, ApiError> {
    let item = one_addr(&mut ctx.tx(), ctx, g, v, a).await?;
    Ok(ctx.one("IpAddrGroupAddr-v1", addr_dto(ctx, &item, v.is_some())))
}

async fn add_addr(ctx: &Ctx, g: &str, v: Option<&str>, body: &[u8]) -> Result<Response, ApiError> {
    let version = parse_version(v)?;
    let a: IpAddrGroupAddr = ctx.parse(body)?;
    let item = txn!(ctx.cluster, tx => {
        let grp = addr_group(&mut tx, ctx, g).await?;
        let mut a = a.clone();
        a.ip_addr_group_id = grp.id;
        let actual = if a.addr.is_ipv4() { 4 } else { 6 };
        if version.is_some_and(|v| v != actual) {
            return Err(ApiError::field("addr", format!("{} is not an IPv{} address", a.addr, version.unwrap_or(0))));
        }
        a.validate()?;
        a.version = actual;
        if tx.exists(&a.store_key()).await? {
            return Err(conflict_exists(format!("address {} in group {}", a.addr, grp.id)).on("addr"));
        }
        tx.put(&a.store_key(), &a);
        tx.touch(grp.id.uuid());
        Ok(a)
    })?;
    let dto = addr_dto(ctx, &item, version.is_some());
    let loc = location(&dto);
    Ok(ctx.created("IpAddrGroupAddr-v1", &loc, dto))
}

async fn remove_addr(ctx: &Ctx, g: &str, v: Option<&str>, a: &str) -> Result<Response, ApiError> {
    txn!(ctx.cluster, tx => {
        let item = one_addr(&mut tx, ctx, g, v, a).await?;
        tx.delete(&item.store_key());
        Ok(())
    })?;
    Ok(no_content())
}
