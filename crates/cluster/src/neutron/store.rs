//! Neutron objects in the store, and the executor of translation plans.
//!
//! ```text
//! /midonet/v1/neutron/<collection>/<id>   a Neutron object (JSON)
//! /midonet/v1/neutron/plans/<unit>        the keys its last plan wrote
//! /midonet/v1/neutron/owner/<midonet-id>  the unit that owns a MidoNet object
//! /midonet/v1/neutron/index/<collection>/<project>/<id>   "" (quota counts)
//! /midonet/v1/neutron/net_ports/<network>/<port>  the port's MAC and addresses
//! ```
//!
//! The two indexes are written by [`put`] and [`delete`] with the object,
//! so that a create reads what it needs (the project's count, the network's
//! addresses) instead of every object of the collection.
//!
//! [`replan`] writes a unit's new plan and deletes what its previous plan
//! (as recorded, not as recomputed: a newer translation may plan
//! differently) wrote and the new one does not. Objects that did not
//! change are not rewritten, so agents see no churn. Ports keep the tunnel
//! key they were given; new ones get the next from the counter, in the
//! same transaction. The `replan_*` functions load what a unit's pure
//! translation needs and run it.

use std::collections::{HashMap, HashSet};

use midonet_model::kind::ObjectKind;
use midonet_model::{Host, Port};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::ipam::Cidr;
use super::translate::{self, Plan};
use super::types::{self, owner};
use crate::db::Tx;
use crate::error::ApiError;

pub const PREFIX: &str = "/midonet/v1/neutron/";

pub const NETWORKS: &str = "networks";
pub const SUBNETS: &str = "subnets";
pub const SUBNETPOOLS: &str = "subnetpools";
pub const PORTS: &str = "ports";
pub const ROUTERS: &str = "routers";
pub const FLOATINGIPS: &str = "floatingips";
pub const SECURITY_GROUPS: &str = "security_groups";
pub const SECURITY_GROUP_RULES: &str = "security_group_rules";
pub const QUOTAS: &str = "quotas";

pub fn key(coll: &str, id: &str) -> String {
    format!("{PREFIX}{coll}/{id}")
}
fn plan_key(unit: &str) -> String {
    format!("{PREFIX}plans/{unit}")
}
/// The marker of a MidoNet object that the Neutron translation owns.
pub fn owner_key(id: Uuid) -> String {
    format!("{PREFIX}owner/{id}")
}

pub async fn get<T: DeserializeOwned>(
    tx: &mut Tx,
    coll: &str,
    id: &str,
) -> Result<Option<T>, ApiError> {
    if id.is_empty() || id.contains('/') {
        return Ok(None);
    }
    tx.get(&key(coll, id)).await
}

pub async fn all<T: DeserializeOwned>(tx: &mut Tx, coll: &str) -> Result<Vec<T>, ApiError> {
    tx.list(&format!("{PREFIX}{coll}/")).await
}

fn index_key(coll: &str, project: &str, id: &str) -> String {
    format!("{PREFIX}index/{coll}/{project}/{id}")
}
fn net_port_key(net: &str, id: &str) -> String {
    format!("{PREFIX}net_ports/{net}/{id}")
}

/// Writes a Neutron object and its index entries.
pub fn put<T: Serialize>(tx: &mut Tx, coll: &str, id: &str, obj: &T) {
    let v = serde_json::to_value(obj).expect("Neutron objects always serialize");
    if let Some(p) = v.get("project_id").and_then(Value::as_str) {
        tx.put_raw(&index_key(coll, p, id), Vec::new());
    }
    if coll == PORTS {
        let net = v.get("network_id").and_then(Value::as_str).unwrap_or_default();
        let addrs = serde_json::json!({
            "id": id, "network_id": net, "mac_address": v.get("mac_address"),
            "fixed_ips": v.get("fixed_ips"),
        });
        tx.put(&net_port_key(net, id), &addrs);
    }
    tx.put(&key(coll, id), &v);
}

/// Deletes a Neutron object and its index entries.
pub async fn delete(tx: &mut Tx, coll: &str, id: &str) -> Result<(), ApiError> {
    let k = key(coll, id);
    if let Some(v) = tx.get::<Value>(&k).await? {
        if let Some(p) = v.get("project_id").and_then(Value::as_str) {
            tx.delete(&index_key(coll, p, id));
        }
        if let Some(net) = v.get("network_id").and_then(Value::as_str).filter(|_| coll == PORTS) {
            tx.delete(&net_port_key(net, id));
        }
    }
    tx.delete(&k);
    Ok(())
}

/// How many objects of a collection a project has.
pub async fn count(tx: &mut Tx, coll: &str, project: &str) -> Result<usize, ApiError> {
    Ok(tx.list_raw(&format!("{PREFIX}index/{coll}/{project}/")).await?.len())
}

/// The MACs and addresses of a network's ports.
pub async fn network_ports(tx: &mut Tx, net: &str) -> Result<Vec<types::PortAddrs>, ApiError> {
    tx.list(&format!("{PREFIX}net_ports/{net}/")).await
}

/// Whether a MidoNet object belongs to the Neutron translation.
pub async fn is_owned(tx: &mut Tx, id: Uuid) -> Result<bool, ApiError> {
    tx.exists(&owner_key(id)).await
}

/// The id of a top-level MidoNet object's key (`/midonet/v1/<kind>/<id>`).
fn top_level_id(k: &str) -> Option<Uuid> {
    let (_, parts) = ObjectKind::parse_key(k)?;
    match parts.as_slice() {
        [id] => id.parse().ok(),
        _ => None,
    }
}

/// Writes `unit`'s plan: see the module docs.
pub async fn replan(tx: &mut Tx, unit: &str, plan: Plan) -> Result<(), ApiError> {
    let old: Vec<String> = tx.get(&plan_key(unit)).await?.unwrap_or_default();
    let new_keys: HashSet<&str> = plan.objects.iter().map(|(k, _)| k.as_str()).collect();
    for k in old.iter().filter(|k| !new_keys.contains(k.as_str())) {
        tx.delete(k);
        if let Some(id) = top_level_id(k) {
            tx.delete(&owner_key(id));
        }
    }
    let keys: Vec<String> = plan.objects.iter().map(|(k, _)| k.clone()).collect();
    tx.prefetch(&keys).await?;
    let port_prefix = ObjectKind::Port.prefix();
    for (k, mut v) in plan.objects {
        let current: Option<Value> = tx.get(&k).await?;
        if k.starts_with(&port_prefix) {
            let key =
                match current.as_ref().and_then(|c| c.get("tunnelKey")).and_then(Value::as_u64) {
                    Some(t) if t > 0 => t,
                    _ => u64::from(tx.alloc_tunnel_key().await?),
                };
            v["tunnelKey"] = Value::from(key);
        }
        if current.as_ref() != Some(&v) {
            tx.put(&k, &v);
        }
        if let Some(id) = top_level_id(&k) {
            if current.is_none() {
                tx.put_raw(&owner_key(id), unit.as_bytes().to_vec());
            }
        }
    }
    if keys.is_empty() {
        if !old.is_empty() {
            tx.delete(&plan_key(unit));
        }
    } else if keys != old {
        tx.put(&plan_key(unit), &keys);
    }
    Ok(())
}

/// Replans a network (after it or one of its subnets changed); a deleted
/// network plans nothing.
pub async fn replan_network(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("network/{id}");
    let Some(net) = get::<types::Network>(tx, NETWORKS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let subnets = subnets_of(tx, &net).await?;
    replan(tx, &unit, translate::network(&net, &subnets)).await
}

/// The subnets of a network, in its order.
pub async fn subnets_of(tx: &mut Tx, net: &types::Network) -> Result<Vec<types::Subnet>, ApiError> {
    let mut out = Vec::new();
    for sid in &net.subnets {
        if let Some(s) = get::<types::Subnet>(tx, SUBNETS, sid).await? {
            out.push(s);
        }
    }
    Ok(out)
}

/// The host a `binding:host_id` names (by name, or by id).
pub async fn find_host(tx: &mut Tx, name: &str) -> Result<Option<Host>, ApiError> {
    if name.is_empty() {
        return Ok(None);
    }
    let hosts: Vec<Host> = crate::api::kinds::all(tx).await?;
    Ok(hosts.into_iter().find(|h| h.name == name || h.id.to_string() == name))
}

/// Replans a port; a deleted port plans nothing.
pub async fn replan_port(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("port/{id}");
    let Some(p) = get::<types::Port>(tx, PORTS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let subnets = match get::<types::Network>(tx, NETWORKS, &p.network_id).await? {
        Some(net) => subnets_of(tx, &net).await?,
        None => Vec::new(),
    };
    let host = find_host(tx, &p.binding_host_id).await?.map(|h| h.id);
    let ctx = translate::PortCtx { subnets: &subnets, host };
    replan(tx, &unit, translate::port(&p, &ctx)).await
}

/// Replans a router (after it, its gateway, interfaces or floating IPs
/// changed); a deleted router plans nothing.
pub async fn replan_router(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("router/{id}");
    let Some(r) = get::<types::Router>(tx, ROUTERS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let ports: Vec<types::Port> = all(tx, PORTS).await?;
    let subnets: HashMap<String, types::Subnet> =
        all::<types::Subnet>(tx, SUBNETS).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut interfaces = Vec::new();
    let mut gateway = None;
    for p in ports.iter().filter(|p| p.device_id == r.id) {
        let is_gw = p.device_owner == owner::ROUTER_GATEWAY;
        if !is_gw && p.device_owner != owner::ROUTER_INTERFACE {
            continue;
        }
        for f in &p.fixed_ips {
            let Some(s) = subnets.get(&f.subnet_id) else { continue };
            let Ok(c) = Cidr::parse(&s.cidr) else { continue };
            interfaces.push(translate::Interface { port_id: p.id.clone(), cidr: c });
            if is_gw && gateway.is_none() && c.is_v4() {
                if let Ok(ip) = f.ip_address.parse() {
                    gateway = Some(translate::Gateway {
                        port_id: p.id.clone(),
                        mac: p.mac_address.clone(),
                        ip,
                        next_hop: s.gateway_ip.as_deref().and_then(|g| g.parse().ok()),
                        network_id: p.network_id.clone(),
                        enable_snat: r.external_gateway_info.as_ref().is_none_or(|g| g.enable_snat),
                    });
                }
            }
        }
    }
    let mut fips = Vec::new();
    for f in all::<types::FloatingIp>(tx, FLOATINGIPS).await? {
        if f.router_id.as_deref() != Some(id) {
            continue;
        }
        let (Ok(address), Some(Ok(fixed))) =
            (f.floating_ip_address.parse(), f.fixed_ip_address.as_deref().map(str::parse))
        else {
            continue;
        };
        fips.push(translate::Floating { id: f.id.clone(), address, fixed });
    }
    fips.sort_by(|a, b| a.id.cmp(&b.id));
    replan(tx, &unit, translate::router(&r, gateway.as_ref(), &interfaces, &fips)).await
}

/// Replans a security group (after it or its rules changed).
pub async fn replan_sg(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("sg/{id}");
    let Some(sg) = get::<types::SecurityGroup>(tx, SECURITY_GROUPS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let mut rules: Vec<types::SecurityGroupRule> =
        all::<types::SecurityGroupRule>(tx, SECURITY_GROUP_RULES)
            .await?
            .into_iter()
            .filter(|r| r.security_group_id == id)
            .collect();
    rules.sort_by(|a, b| (&a.std.created_at, &a.id).cmp(&(&b.std.created_at, &b.id)));
    replan(tx, &unit, translate::security_group(&sg, &rules)).await
}

/// Whether an agent has the port bound now.
pub async fn port_active(tx: &mut Tx, id: &str) -> Result<bool, ApiError> {
    let Ok(u) = id.parse::<Uuid>() else { return Ok(false) };
    tx.exists(&crate::db::port_active_key(u)).await
}

/// The MidoNet port of a Neutron port, if planned.
pub async fn midonet_port(tx: &mut Tx, id: &str) -> Result<Option<Port>, ApiError> {
    let Ok(u) = id.parse::<Uuid>() else { return Ok(None) };
    tx.get(&ObjectKind::Port.key(&[&u.to_string()])).await
}
