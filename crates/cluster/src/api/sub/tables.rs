//! Seeded MAC and ARP tables of a bridge.

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::Value;

use super::dhcp::bridge_of;
use super::{conflict_exists, location, obj_dto, prefix_of};
use crate::api::ctx::{no_content, Ctx};
use crate::api::{doc, Builder};
use crate::db::Tx;
use crate::error::ApiError;
use crate::txn;

pub(super) fn routes(b: Builder) -> Builder {
    b.route(
        "/bridges/{id}/mac_table",
        get(|c: Ctx, Path(b): Path<String>| async move { list_macs(&c, &b, None).await }).post(
            |c: Ctx, Path(b): Path<String>, body: Bytes| async move {
                add_mac(&c, &b, None, &body).await
            },
        ),
        vec![
            doc::list("Seeded MAC table of a bridge (all VLANs)", "MacPort-v2"),
            doc::create("Add a MAC entry", "MacPort-v2"),
        ],
    )
    .route(
        "/bridges/{id}/mac_table/{entry}",
        get(|c: Ctx, Path((b, e)): Path<(String, String)>| async move {
            get_mac(&c, &b, None, &e).await
        })
        .delete(|c: Ctx, Path((b, e)): Path<(String, String)>| async move {
            remove_mac(&c, &b, None, &e).await
        }),
        vec![
            doc::get("One MAC entry (mac-with-dashes_portId)", "MacPort-v2"),
            doc::delete("Delete a MAC entry"),
        ],
    )
    .route(
        "/bridges/{id}/vlans/{vlan}/mac_table",
        get(|c: Ctx, Path((b, v)): Path<(String, String)>| async move {
            list_macs(&c, &b, Some(&v)).await
        })
        .post(|c: Ctx, Path((b, v)): Path<(String, String)>, body: Bytes| async move {
            add_mac(&c, &b, Some(&v), &body).await
        }),
        vec![
            doc::list("Seeded MAC table of one VLAN", "MacPort-v2"),
            doc::create("Add a MAC entry on the VLAN", "MacPort-v2"),
        ],
    )
    .route(
        "/bridges/{id}/vlans/{vlan}/mac_table/{entry}",
        get(|c: Ctx, Path((b, v, e)): Path<(String, String, String)>| async move {
            get_mac(&c, &b, Some(&v), &e).await
        })
        .delete(|c: Ctx, Path((b, v, e)): Path<(String, String, String)>| async move {
            remove_mac(&c, &b, Some(&v), &e).await
        }),
        vec![
            doc::get("One MAC entry of the VLAN", "MacPort-v2"),
            doc::delete("Delete a MAC entry of the VLAN"),
        ],
    )
    .route(
        "/bridges/{id}/arp_table",
        get(list_arps).post(add_arp),
        vec![
            doc::list("Seeded ARP table of a bridge", "IP4Mac-v1"),
            doc::create("Add an ARP entry", "IP4Mac-v1"),
        ],
    )
    .route(
        "/bridges/{id}/arp_table/{entry}",
        get(get_arp).delete(remove_arp),
        vec![
            doc::get("One ARP entry (ip_mac-with-dashes)", "IP4Mac-v1"),
            doc::delete("Delete an ARP entry"),
        ],
    )
}

fn parse_vlan(v: Option<&str>) -> Result<Option<u16>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) => match s.parse::<u16>() {
            Ok(v) if v <= 4094 => Ok(Some(v)),
            _ => Err(ApiError::not_found(format!("VLAN {s}"))),
        },
    }
}

fn mac_dto(ctx: &Ctx, e: &MacTableEntry) -> Value {
    let tail = format!("mac_table/{}_{}", e.mac_addr.to_uri_string(), e.port_id);
    let uri = if e.vlan_id == 0 {
        format!("/bridges/{}/{tail}", e.bridge_id)
    } else {
        format!("/bridges/{}/vlans/{}/{tail}", e.bridge_id, e.vlan_id)
    };
    obj_dto(e, ctx.uri(&uri), &[])
}

async fn list_macs(ctx: &Ctx, b: &str, v: Option<&str>) -> Result<Response, ApiError> {
    let vlan = parse_vlan(v)?;
    let mut tx = ctx.tx();
    let br = bridge_of(&mut tx, ctx, b).await?;
    let items: Vec<MacTableEntry> =
        tx.list(&prefix_of(ObjectKind::MacTableEntry, &[&br.id.to_string()])).await?;
    let out = items
        .iter()
        .filter(|e| vlan.is_none_or(|v| e.vlan_id == v))
        .map(|e| mac_dto(ctx, e))
        .collect();
    Ok(ctx.many("MacPort-v2", out))
}

async fn one_mac(
    tx: &mut Tx,
    ctx: &Ctx,
    b: &str,
    v: Option<&str>,
    entry: &str,
) -> Result<MacTableEntry, ApiError> {
    let vlan = parse_vlan(v)?.unwrap_or(0);
    let br = bridge_of(tx, ctx, b).await?;
    let nf = || {
        ApiError::not_found(format!("MAC entry {entry} (ids look like 02-00-00-00-00-01_<portId>)"))
    };
    let (mac, port) = entry.rsplit_once('_').ok_or_else(nf)?;
    let mac: MacAddr = mac.parse().map_err(|_| nf())?;
    let port: PortId = port.parse().map_err(|_| nf())?;
    let e: MacTableEntry = tx
        .get(&ObjectKind::MacTableEntry.key(&[
            &br.id.to_string(),
            &vlan.to_string(),
            &mac.to_uri_string(),
        ]))
        .await?
        .ok_or_else(nf)?;
    if e.port_id != port {
        return Err(nf());
    }
    Ok(e)
}

async fn get_mac(ctx: &Ctx, b: &str, v: Option<&str>, entry: &str) -> Result<Response, ApiError> {
    let e = one_mac(&mut ctx.tx(), ctx, b, v, entry).await?;
    Ok(ctx.one("MacPort-v2", mac_dto(ctx, &e)))
}

async fn add_mac(ctx: &Ctx, b: &str, v: Option<&str>, body: &[u8]) -> Result<Response, ApiError> {
    let vlan = parse_vlan(v)?;
    let e: MacTableEntry = ctx.parse(body)?;
    let e = txn!(ctx.cluster, tx => {
        let br = bridge_of(&mut tx, ctx, b).await?;
        let mut e = e.clone();
        e.bridge_id = br.id;
        if let Some(v) = vlan {
            if e.vlan_id != 0 && e.vlan_id != v {
                return Err(ApiError::field("vlanId", format!("the URI says VLAN {v}, the body {}", e.vlan_id)));
            }
            e.vlan_id = v;
        }
        e.validate()?;
        let port: Option<Port> = tx.get(&ObjectKind::Port.key(&[&e.port_id.to_string()])).await?;
        if port.as_ref().and_then(Port::bridge_id) != Some(br.id) {
            return Err(ApiError::field("portId", format!("port {} is not a port of bridge {}", e.port_id, br.id)));
        }
        if tx.exists(&e.store_key()).await? {
            return Err(conflict_exists(format!("MAC {} on VLAN {} of bridge {}", e.mac_addr, e.vlan_id, br.id)).on("macAddr"));
        }
        tx.put(&e.store_key(), &e);
        tx.touch(br.id.uuid());
        tx.touch(e.port_id.uuid());
        Ok(e)
    })?;
    let dto = mac_dto(ctx, &e);
    let loc = location(&dto);
    Ok(ctx.created("MacPort-v2", &loc, dto))
}

async fn remove_mac(
    ctx: &Ctx,
    b: &str,
    v: Option<&str>,
    entry: &str,
) -> Result<Response, ApiError> {
    txn!(ctx.cluster, tx => {
        let e = one_mac(&mut tx, ctx, b, v, entry).await?;
        tx.delete(&e.store_key());
        Ok(())
    })?;
    Ok(no_content())
}

fn arp_dto(ctx: &Ctx, e: &ArpTableEntry) -> Value {
    obj_dto(
        e,
        ctx.uri(&format!("/bridges/{}/arp_table/{}_{}", e.bridge_id, e.ip, e.mac.to_uri_string())),
        &[],
    )
}

async fn list_arps(ctx: Ctx, Path(b): Path<String>) -> Result<Response, ApiError> {
    let mut tx = ctx.tx();
    let br = bridge_of(&mut tx, &ctx, &b).await?;
    let items: Vec<ArpTableEntry> =
        tx.list(&prefix_of(ObjectKind::ArpTableEntry, &[&br.id.to_string()])).await?;
    Ok(ctx.many("IP4Mac-v1", items.iter().map(|e| arp_dto(&ctx, e)).collect()))
}

async fn one_arp(tx: &mut Tx, ctx: &Ctx, b: &str, entry: &str) -> Result<ArpTableEntry, ApiError> {
    let br = bridge_of(tx, ctx, b).await?;
    let nf = || {
        ApiError::not_found(format!("ARP entry {entry} (ids look like 10.0.0.5_02-00-00-00-00-01)"))
    };
    let (ip, mac) = entry.split_once('_').ok_or_else(nf)?;
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| nf())?;
    let mac: MacAddr = mac.parse().map_err(|_| nf())?;
    let e: ArpTableEntry = tx
        .get(&ObjectKind::ArpTableEntry.key(&[&br.id.to_string(), &ip.to_string()]))
        .await?
        .ok_or_else(nf)?;
    if e.mac != mac {
        return Err(nf());
    }
    Ok(e)
}

async fn get_arp(ctx: Ctx, Path((b, e)): Path<(String, String)>) -> Result<Response, ApiError> {
    let e = one_arp(&mut ctx.tx(), &ctx, &b, &e).await?;
    Ok(ctx.one("IP4Mac-v1", arp_dto(&ctx, &e)))
}

async fn add_arp(ctx: Ctx, Path(b): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let e: ArpTableEntry = ctx.parse(&body)?;
    let ctx = &ctx;
    let e = txn!(ctx.cluster, tx => {
        let br = bridge_of(&mut tx, ctx, &b).await?;
        let mut e = e.clone();
        e.bridge_id = br.id;
        e.validate()?;
        if tx.exists(&e.store_key()).await? {
            return Err(conflict_exists(format!("ARP entry for {} on bridge {}", e.ip, br.id)).on("ip"));
        }
        tx.put(&e.store_key(), &e);
        tx.touch(br.id.uuid());
        Ok(e)
    })?;
    let dto = arp_dto(ctx, &e);
    let loc = location(&dto);
    Ok(ctx.created("IP4Mac-v1", &loc, dto))
}

async fn remove_arp(ctx: Ctx, Path((b, e)): Path<(String, String)>) -> Result<Response, ApiError> {
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let e = one_arp(&mut tx, ctx, &b, &e).await?;
        tx.delete(&e.store_key());
        Ok(())
    })?;
    Ok(no_content())
}
