//! DHCP subnets of a bridge and their static hosts.

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::Value;

use super::{conflict_exists, location, obj_dto, prefix_of};
use crate::api::ctx::{no_content, Ctx};
use crate::api::generic::{load_visible, parse_id};
use crate::api::{doc, Builder};
use crate::db::Tx;
use crate::error::ApiError;
use crate::txn;

pub(super) fn routes(b: Builder) -> Builder {
    b.route(
        "/bridges/{id}/dhcp",
        get(list_subnets).post(add_subnet),
        vec![
            doc::list("DHCP subnets of a bridge", "DhcpSubnet-v2"),
            doc::create("Add a DHCP subnet", "DhcpSubnet-v2"),
        ],
    )
    .route(
        "/bridges/{id}/dhcp/{subnet}",
        get(get_subnet).put(update_subnet).delete(delete_subnet),
        vec![
            doc::get("One DHCP subnet (id 10.0.0.0_24)", "DhcpSubnet-v2"),
            doc::replace("Replace a DHCP subnet", "DhcpSubnet-v2"),
            doc::delete("Delete a DHCP subnet and its hosts"),
        ],
    )
    .route(
        "/bridges/{id}/dhcp/{subnet}/hosts",
        get(list_dhcp_hosts).post(add_dhcp_host),
        vec![
            doc::list("Static hosts of a DHCP subnet", "DhcpHost-v2"),
            doc::create("Add a static host", "DhcpHost-v2"),
        ],
    )
    .route(
        "/bridges/{id}/dhcp/{subnet}/hosts/{mac}",
        get(get_dhcp_host).put(update_dhcp_host).delete(delete_dhcp_host),
        vec![
            doc::get("One static host (MAC with dashes)", "DhcpHost-v2"),
            doc::replace("Replace a static host", "DhcpHost-v2"),
            doc::delete("Delete a static host"),
        ],
    )
}

pub(super) async fn bridge_of(tx: &mut Tx, ctx: &Ctx, id: &str) -> Result<Bridge, ApiError> {
    let id = parse_id("bridge", id)?;
    load_visible::<Bridge>(tx, ctx, id).await
}

/// `10.0.0.0_24` → (prefix, length), or 404.
fn parse_subnet(s: &str) -> Result<(std::net::Ipv4Addr, u8), ApiError> {
    let nf = || ApiError::not_found(format!("DHCP subnet {s} (ids look like 10.0.0.0_24)"));
    let (p, l) = s.split_once('_').ok_or_else(nf)?;
    Ok((p.parse().map_err(|_| nf())?, l.parse().map_err(|_| nf())?))
}

fn subnet_dto(ctx: &Ctx, s: &DhcpSubnet) -> Value {
    let uri = ctx.uri(&format!("/bridges/{}/dhcp/{}", s.bridge_id, s.key()));
    obj_dto(
        s,
        uri.clone(),
        &[
            ("hosts", format!("{uri}/hosts")),
            ("bridge", ctx.uri(&format!("/bridges/{}", s.bridge_id))),
        ],
    )
}

async fn list_subnets(ctx: Ctx, Path(b): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let br = bridge_of(&mut tx, &ctx, &b).await?;
    let items: Vec<DhcpSubnet> =
        tx.list(&prefix_of(ObjectKind::DhcpSubnet, &[&br.id.to_string()])).await?;
    Ok(ctx.many("DhcpSubnet-v2", items.iter().map(|s| subnet_dto(&ctx, s)).collect()))
}

async fn subnet_of(tx: &mut Tx, ctx: &Ctx, b: &str, s: &str) -> Result<DhcpSubnet, ApiError> {
    let br = bridge_of(tx, ctx, b).await?;
    let (p, l) = parse_subnet(s)?;
    let key = format!("{p}_{l}");
    tx.get(&ObjectKind::DhcpSubnet.key(&[&br.id.to_string(), &key]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("DHCP subnet {key} of bridge {}", br.id)))
}

async fn get_subnet(ctx: Ctx, Path((b, s)): Path<(String, String)>) -> Result<Response, ApiError> {
    let sub = subnet_of(&mut ctx.tx(), &ctx, &b, &s).await?;
    Ok(ctx.one("DhcpSubnet-v2", subnet_dto(&ctx, &sub)))
}

async fn add_subnet(ctx: Ctx, Path(b): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let sub: DhcpSubnet = ctx.parse(&body)?;
    let ctx = &ctx;
    let sub = txn!(ctx.cluster, tx => {
        let br = bridge_of(&mut tx, ctx, &b).await?;
        let mut sub = sub.clone();
        sub.bridge_id = br.id;
        sub.validate()?;
        sub.subnet_prefix = std::net::Ipv4Addr::from(
            u32::from(sub.subnet_prefix) & midonet_model::port::prefix_mask(sub.subnet_length),
        );
        if tx.exists(&sub.store_key()).await? {
            return Err(conflict_exists(format!("DHCP subnet {} of bridge {}", sub.key(), br.id)).on("subnetPrefix"));
        }
        tx.put(&sub.store_key(), &sub);
        tx.touch(br.id.uuid());
        Ok(sub)
    })?;
    let dto = subnet_dto(ctx, &sub);
    let loc = location(&dto);
    Ok(ctx.created("DhcpSubnet-v2", &loc, dto))
}

async fn update_subnet(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: DhcpSubnet = ctx.parse(&body)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = subnet_of(&mut tx, ctx, &b, &s).await?;
        let mut new = new.clone();
        new.bridge_id = old.bridge_id;
        if new.key() != old.key() {
            return Err(ApiError::field("subnetPrefix", format!(
                "the subnet of {} cannot change (got {}); delete and create instead", old.key(), new.key()
            )));
        }
        new.validate()?;
        tx.put(&new.store_key(), &new);
        Ok(())
    })?;
    Ok(no_content())
}

async fn delete_subnet(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = subnet_of(&mut tx, ctx, &b, &s).await?;
        for (k, _) in tx.list_raw(&prefix_of(ObjectKind::DhcpHost, &[&old.bridge_id.to_string(), &old.key()])).await? {
            tx.delete(&k);
        }
        tx.delete(&old.store_key());
        Ok(())
    })?;
    Ok(no_content())
}

fn dhcp_host_dto(ctx: &Ctx, h: &DhcpHost) -> Value {
    let uri = ctx.uri(&format!(
        "/bridges/{}/dhcp/{}/hosts/{}",
        h.bridge_id,
        h.subnet,
        h.mac_addr.to_uri_string()
    ));
    obj_dto(h, uri, &[])
}

async fn list_dhcp_hosts(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let sub = subnet_of(&mut tx, &ctx, &b, &s).await?;
    let items: Vec<DhcpHost> = tx
        .list(&prefix_of(ObjectKind::DhcpHost, &[&sub.bridge_id.to_string(), &sub.key()]))
        .await?;
    Ok(ctx.many("DhcpHost-v2", items.iter().map(|h| dhcp_host_dto(&ctx, h)).collect()))
}

async fn dhcp_host_of(
    tx: &mut Tx,
    ctx: &Ctx,
    b: &str,
    s: &str,
    mac: &str,
) -> Result<DhcpHost, ApiError> {
    let sub = subnet_of(tx, ctx, b, s).await?;
    let mac: MacAddr = mac.parse().map_err(|_| ApiError::not_found(format!("DHCP host {mac}")))?;
    tx.get(&ObjectKind::DhcpHost.key(&[
        &sub.bridge_id.to_string(),
        &sub.key(),
        &mac.to_uri_string(),
    ]))
    .await?
    .ok_or_else(|| ApiError::not_found(format!("DHCP host {mac} in subnet {}", sub.key())))
}

async fn get_dhcp_host(
    ctx: Ctx,
    Path((b, s, m)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let h = dhcp_host_of(&mut ctx.tx(), &ctx, &b, &s, &m).await?;
    Ok(ctx.one("DhcpHost-v2", dhcp_host_dto(&ctx, &h)))
}

fn check_host_in_subnet(h: &DhcpHost, sub: &DhcpSubnet) -> Result<(), ApiError> {
    if !midonet_model::port::prefix_contains(sub.subnet_prefix, sub.subnet_length, h.ip_addr) {
        return Err(ApiError::field(
            "ipAddr",
            format!("{} is not inside {}/{}", h.ip_addr, sub.subnet_prefix, sub.subnet_length),
        ));
    }
    Ok(())
}

async fn add_dhcp_host(
    ctx: Ctx,
    Path((b, s)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let h: DhcpHost = ctx.parse(&body)?;
    let ctx = &ctx;
    let h = txn!(ctx.cluster, tx => {
        let sub = subnet_of(&mut tx, ctx, &b, &s).await?;
        let mut h = h.clone();
        h.bridge_id = sub.bridge_id;
        h.subnet = sub.key();
        h.validate()?;
        check_host_in_subnet(&h, &sub)?;
        if tx.exists(&h.store_key()).await? {
            return Err(conflict_exists(format!("DHCP host {} in subnet {}", h.mac_addr, sub.key())).on("macAddr"));
        }
        tx.put(&h.store_key(), &h);
        Ok(h)
    })?;
    let dto = dhcp_host_dto(ctx, &h);
    let loc = location(&dto);
    Ok(ctx.created("DhcpHost-v2", &loc, dto))
}

async fn update_dhcp_host(
    ctx: Ctx,
    Path((b, s, m)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: DhcpHost = ctx.parse(&body)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = dhcp_host_of(&mut tx, ctx, &b, &s, &m).await?;
        let sub = subnet_of(&mut tx, ctx, &b, &s).await?;
        let mut new = new.clone();
        if new.mac_addr != old.mac_addr {
            return Err(ApiError::field("macAddr", "the MAC of a DHCP host cannot change; delete and create instead"));
        }
        new.bridge_id = old.bridge_id;
        new.subnet = old.subnet.clone();
        new.validate()?;
        check_host_in_subnet(&new, &sub)?;
        tx.put(&new.store_key(), &new);
        Ok(())
    })?;
    Ok(no_content())
}

async fn delete_dhcp_host(
    ctx: Ctx,
    Path((b, s, m)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old = dhcp_host_of(&mut tx, ctx, &b, &s, &m).await?;
        tx.delete(&old.store_key());
        Ok(())
    })?;
    Ok(no_content())
}
