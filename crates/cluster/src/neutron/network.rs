//! `/v2.0/networks` → bridges.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::body::{self, check_keys};
use super::error::{NResult, NeutronError};
use super::store::{self, FLOATINGIPS, NETWORKS, PORTS, SUBNETS};
use super::types::{owner, FloatingIp, Network, Port, Standard, Subnet};
use super::{port, quota, subnetpool, NCtx};
use crate::ntxn;

/// The MTU of tenant networks: 1500 less the VXLAN overhead, as Neutron
/// computes it for VXLAN networks.
pub const DEFAULT_MTU: u32 = 1450;

const CREATE: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "description",
    "tenant_id",
    "project_id",
];
const UPDATE: &[&str] = &[
    "name",
    "admin_state_up",
    "shared",
    "router:external",
    "mtu",
    "port_security_enabled",
    "description",
];

pub fn not_found(id: &str) -> NeutronError {
    NeutronError::not_found("NetworkNotFound", "Network", id)
}

/// Whether the caller sees the network: its own, shared and external ones.
pub fn visible(ctx: &NCtx, n: &Network) -> bool {
    ctx.owns(&n.project_id) || n.shared || n.router_external
}

/// Loads a network the caller may see (404 otherwise).
pub async fn load(ctx: &NCtx, tx: &mut crate::db::Tx, id: &str) -> NResult<Network> {
    match store::get::<Network>(tx, NETWORKS, id).await? {
        Some(n) if visible(ctx, &n) => Ok(n),
        _ => Err(not_found(id)),
    }
}

fn admin_only(ctx: &NCtx, m: &Map<String, Value>, attr: &str) -> NResult<()> {
    if m.contains_key(attr) && !ctx.is_admin() {
        return Err(NeutronError::forbidden(format!(
            "(rule:create_network:{attr}) is disallowed by policy"
        )));
    }
    Ok(())
}

fn apply(n: &mut Network, m: &Map<String, Value>) -> NResult<()> {
    if let Some(v) = body::string_max(m, "name", 255)? {
        n.name = v;
    }
    if let Some(v) = body::string_max(m, "description", 255)? {
        n.std.description = v;
    }
    if let Some(v) = body::opt_bool(m, "admin_state_up")? {
        n.admin_state_up = v;
    }
    if let Some(v) = body::opt_bool(m, "shared")? {
        n.shared = v;
    }
    if let Some(v) = body::opt_bool(m, "router:external")? {
        n.router_external = v;
    }
    if let Some(v) = body::opt_bool(m, "port_security_enabled")? {
        n.port_security_enabled = v;
    }
    if let Some(v) = body::opt_int(m, "mtu")? {
        if !(68..=9000).contains(&v) {
            return Err(NeutronError::invalid(
                "mtu",
                format!("'{v}' is not in range 68 through 9000"),
            ));
        }
        n.mtu = v as u32;
    }
    Ok(())
}

fn build(ctx: &NCtx, m: &Map<String, Value>) -> NResult<Network> {
    check_keys(m, CREATE)?;
    admin_only(ctx, m, "shared")?;
    admin_only(ctx, m, "router:external")?;
    let project = ctx.new_project(m)?;
    let mut n = Network {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        tenant_id: project.clone(),
        project_id: project,
        admin_state_up: true,
        status: "ACTIVE".into(),
        shared: false,
        subnets: Vec::new(),
        router_external: false,
        mtu: DEFAULT_MTU,
        port_security_enabled: true,
        std: Standard::new(String::new()),
    };
    apply(&mut n, m)?;
    Ok(n)
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    let mut tx = ctx.tx();
    let items: Vec<Value> = store::all::<Network>(&mut tx, NETWORKS)
        .await?
        .into_iter()
        .filter(|n| visible(&ctx, n))
        .map(|n| serde_json::to_value(n).unwrap_or_default())
        .collect();
    super::list(&ctx, "networks", "networks", items)
}

pub async fn show(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let n = load(&ctx, &mut ctx.tx(), &id).await?;
    Ok(super::one(&ctx, StatusCode::OK, "network", serde_json::to_value(n).unwrap_or_default()))
}

pub async fn create(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "network", "networks")?;
    let nets = items.iter().map(|m| build(&ctx, m)).collect::<NResult<Vec<_>>>()?;
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        quota::check_many(&mut tx, nets.iter().map(|n| (n.project_id.as_str(), quota::Res::Network))).await?;
        for n in &nets {
            store::put(&mut tx, NETWORKS, &n.id, n);
            store::replan_network(&mut tx, &n.id).await?;
        }
        Ok::<_, NeutronError>(())
    })?;
    let out: Vec<Value> =
        nets.into_iter().map(|n| serde_json::to_value(n).unwrap_or_default()).collect();
    Ok(created(ctx, "network", "networks", bulk, out))
}

/// The answer to a create: one object, or the list of a bulk create.
pub fn created(
    ctx: &NCtx,
    singular: &str,
    plural: &str,
    bulk: bool,
    mut out: Vec<Value>,
) -> Response {
    if bulk {
        super::bulk(plural, out)
    } else {
        super::one(ctx, StatusCode::CREATED, singular, out.remove(0))
    }
}

pub async fn update(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "network")?;
    check_keys(&m, UPDATE)?;
    admin_only(&ctx, &m, "shared")?;
    admin_only(&ctx, &m, "router:external")?;
    let ctx = &ctx;
    let n = ntxn!(ctx.cluster, tx => {
        let mut n = load(ctx, &mut tx, &id).await?;
        if !ctx.owns(&n.project_id) {
            return Err(not_found(&id));
        }
        apply(&mut n, &m)?;
        n.std.touch();
        store::put(&mut tx, NETWORKS, &n.id, &n);
        store::replan_network(&mut tx, &n.id).await?;
        Ok::<_, NeutronError>(n)
    })?;
    Ok(super::one(ctx, StatusCode::OK, "network", serde_json::to_value(n).unwrap_or_default()))
}

pub async fn delete(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let n = load(ctx, &mut tx, &id).await?;
        if !ctx.owns(&n.project_id) {
            return Err(not_found(&id));
        }
        // Its floating IPs go with it, as Neutron's: an address on a
        // network that is gone means nothing (a router they were
        // associated through forgets their NAT).
        let fips: Vec<FloatingIp> =
            store::find_by(&mut tx, FLOATINGIPS, "floating_network_id", &id).await?;
        for f in &fips {
            store::delete(&mut tx, FLOATINGIPS, &f.id).await?;
            if let Some(r) = &f.router_id {
                store::replan_router(&mut tx, r).await?;
            }
        }
        // Its ports, through the network's port index (not every port).
        let mut ports: Vec<Port> = Vec::new();
        for a in store::network_ports(&mut tx, &id).await? {
            ports.extend(store::get::<Port>(&mut tx, PORTS, &a.id).await?);
        }
        let (fip_ports, on_net): (Vec<&Port>, Vec<&Port>) =
            ports.iter().partition(|p| fips.iter().any(|f| f.fip_port_id == p.id));
        for p in fip_ports {
            port::delete_in(&mut tx, p).await?;
        }
        if on_net.iter().any(|p| p.device_owner != owner::DHCP) {
            return Err(NeutronError::conflict(
                "NetworkInUse",
                format!("Unable to complete operation on network {id}. There are one or more ports still in use on the network."),
            ));
        }
        for p in on_net {
            store::delete(&mut tx, PORTS, &p.id).await?;
            store::replan_port(&mut tx, &p.id).await?;
        }
        for s in &n.subnets {
            if let Some(s) = store::get::<Subnet>(&mut tx, SUBNETS, s).await? {
                store::delete(&mut tx, SUBNETS, &s.id).await?;
                subnetpool::release(&mut tx, &s).await?;
            }
        }
        store::delete(&mut tx, NETWORKS, &id).await?;
        store::replan_network(&mut tx, &id).await?;
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}
