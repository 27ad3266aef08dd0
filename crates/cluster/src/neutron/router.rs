//! `/v2.0/routers` (interfaces, gateway, extra routes) and
//! `/v2.0/floatingips` → routers, linked router ports, routes, SNAT and
//! static NAT rules.

use std::net::{IpAddr, Ipv4Addr};

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::body::{self, check_keys};
use super::error::{NResult, NeutronError};
use super::ipam::Cidr;
use super::network::{self, created};
use super::store::{self, FLOATINGIPS, PORTS, ROUTERS};
use super::types::{owner, FloatingIp, GatewayInfo, HostRoute, Network, Port, Router, Standard};
use super::{port, quota, subnet, NCtx};
use crate::db::Tx;
use crate::ntxn;

const CREATE: &[&str] =
    &["name", "admin_state_up", "description", "external_gateway_info", "tenant_id", "project_id"];
const UPDATE: &[&str] =
    &["name", "admin_state_up", "description", "external_gateway_info", "routes"];
/// Neutron's `max_routes` default.
const MAX_ROUTES: usize = 30;

pub fn not_found(id: &str) -> NeutronError {
    NeutronError::not_found("RouterNotFound", "Router", id)
}
fn fip_not_found(id: &str) -> NeutronError {
    NeutronError::not_found("FloatingIPNotFound", "Floating IP", id)
}

pub async fn load(ctx: &NCtx, tx: &mut Tx, id: &str) -> NResult<Router> {
    match store::get::<Router>(tx, ROUTERS, id).await? {
        Some(r) if ctx.owns(&r.project_id) => Ok(r),
        _ => Err(not_found(id)),
    }
}

fn render(r: &Router) -> Value {
    serde_json::to_value(r).unwrap_or_default()
}

/// The requested gateway: `Some(None)` clears it.
fn gateway_request(m: &Map<String, Value>) -> NResult<Option<Option<Map<String, Value>>>> {
    match m.get("external_gateway_info") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Object(o)) if o.is_empty() => Ok(Some(None)),
        Some(Value::Object(o)) => {
            check_keys(o, &["network_id", "enable_snat", "external_fixed_ips"])?;
            Ok(Some(Some(o.clone())))
        }
        Some(v) => Err(NeutronError::invalid(
            "external_gateway_info",
            format!("'{v}' is not a dictionary"),
        )),
    }
}

/// Sets the router's gateway: a gateway port on the external network
/// (replacing an old one on another network).
async fn set_gateway(
    ctx: &NCtx,
    tx: &mut Tx,
    r: &mut Router,
    g: Option<Map<String, Value>>,
) -> NResult<()> {
    let Some(g) = g else {
        if let Some(old) = r.gw_port_id.take() {
            if store::any_by(tx, FLOATINGIPS, "router_id", &r.id).await? {
                return Err(NeutronError::conflict(
                    "RouterExternalGatewayInUseByFloatingIp",
                    format!("Gateway cannot be updated for router {}, since a gateway to external network is required by one or more floating IPs.", r.id),
                ));
            }
            if let Some(p) = store::get::<Port>(tx, PORTS, &old).await? {
                port::delete_in(tx, &p).await?;
            }
        }
        r.external_gateway_info = None;
        return Ok(());
    };
    let net_id = body::opt_uuid(&g, "network_id")?
        .ok_or_else(|| NeutronError::invalid("external_gateway_info", "network_id is required"))?;
    let enable_snat = body::opt_bool(&g, "enable_snat")?.unwrap_or(true);
    let net = network::load(ctx, tx, &net_id).await?;
    if !net.router_external {
        return Err(NeutronError::bad_request(format!(
            "Bad router request: Network {net_id} is not an external network."
        )));
    }
    let current = r.external_gateway_info.clone();
    let same_net = current.as_ref().is_some_and(|c| c.network_id == net_id);
    let ips_given = g.contains_key("external_fixed_ips");
    if same_net && !ips_given {
        if let Some(info) = r.external_gateway_info.as_mut() {
            info.enable_snat = enable_snat;
        }
        return Ok(());
    }
    if r.gw_port_id.is_some() {
        let mut cleared = r.clone();
        Box::pin(set_gateway(ctx, tx, &mut cleared, None)).await?;
        r.gw_port_id = None;
    }
    let mut pm = Map::new();
    pm.insert("network_id".into(), json!(net_id));
    pm.insert("device_owner".into(), json!(owner::ROUTER_GATEWAY));
    pm.insert("device_id".into(), json!(r.id));
    if let Some(ips) = g.get("external_fixed_ips") {
        pm.insert("fixed_ips".into(), ips.clone());
    }
    let gw = port::create_in(ctx, tx, &pm, &net, String::new()).await.map_err(|e| {
        if e.kind == "IpAddressGenerationFailure" {
            NeutronError::conflict(
                &e.kind,
                format!("No more IP addresses available on external network {net_id}."),
            )
        } else {
            e
        }
    })?;
    r.external_gateway_info = Some(GatewayInfo {
        network_id: net_id,
        enable_snat,
        external_fixed_ips: gw.fixed_ips.clone(),
    });
    r.gw_port_id = Some(gw.id);
    Ok(())
}

/// Extra routes: each next hop must be on one of the router's subnets.
async fn routes(
    tx: &mut Tx,
    r: &Router,
    m: &Map<String, Value>,
) -> NResult<Option<Vec<HostRoute>>> {
    let Some(list) = body::opt_list(m, "routes")? else {
        return Ok(m.get("routes").map(|_| Vec::new()));
    };
    if list.len() > MAX_ROUTES {
        return Err(NeutronError::bad_request(format!(
            "Number of routes exceeds the maximum {MAX_ROUTES}"
        )));
    }
    let cidrs = router_cidrs(tx, &r.id).await?;
    let mut out = Vec::new();
    for e in list {
        let (Some(d), Some(n)) = (
            e.get("destination").and_then(Value::as_str),
            e.get("nexthop").and_then(Value::as_str),
        ) else {
            return Err(NeutronError::invalid(
                "routes",
                format!("'{e}' needs 'destination' and 'nexthop'"),
            ));
        };
        Cidr::parse(d).map_err(|x| NeutronError::invalid("routes", x))?;
        let nh: IpAddr = n.parse().map_err(|_| {
            NeutronError::invalid("routes", format!("'{n}' is not a valid IP address"))
        })?;
        if !cidrs.iter().any(|(_, c)| c.contains(nh)) {
            return Err(NeutronError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRoutes",
                format!("Invalid format for routes: {e}, the nexthop is not connected with router"),
            ));
        }
        let hr = HostRoute { destination: d.into(), nexthop: n.into() };
        if !out.contains(&hr) {
            out.push(hr);
        }
    }
    Ok(Some(out))
}

/// (subnet id, CIDR) of every interface and the gateway of a router.
async fn router_cidrs(tx: &mut Tx, rid: &str) -> NResult<Vec<(String, Cidr)>> {
    let ports = store::device_ports(tx, rid).await?;
    let mut out = Vec::new();
    for p in ports.iter().filter(|p| p.device_owner.starts_with("network:router")) {
        for f in &p.fixed_ips {
            if let Some(s) =
                store::get::<super::types::Subnet>(tx, store::SUBNETS, &f.subnet_id).await?
            {
                if let Ok(c) = Cidr::parse(&s.cidr) {
                    out.push((s.id.clone(), c));
                }
            }
        }
    }
    Ok(out)
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    let mut tx = ctx.tx();
    let items: Vec<Value> = store::all::<Router>(&mut tx, ROUTERS)
        .await?
        .iter()
        .filter(|r| ctx.owns(&r.project_id))
        .map(render)
        .collect();
    super::list(&ctx, "routers", "routers", items)
}

pub async fn show(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let r = load(&ctx, &mut ctx.tx(), &id).await?;
    Ok(super::one(&ctx, StatusCode::OK, "router", render(&r)))
}

pub async fn create(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "router", "routers")?;
    for m in &items {
        check_keys(m, CREATE)?;
    }
    let ctx = &ctx;
    let _serial = ctx.cluster.create_lock.lock().await;
    let routers = ntxn!(ctx.cluster, tx => {
        let mut out = Vec::new();
        for m in &items {
            let project = ctx.new_project(m)?;
            quota::check_many(&mut tx, std::iter::once((project.as_str(), quota::Res::Router))).await?;
            let mut r = Router {
                id: uuid::Uuid::new_v4().to_string(),
                name: body::string_max(m, "name", 255)?.unwrap_or_default(),
                tenant_id: project.clone(),
                project_id: project,
                admin_state_up: body::opt_bool(m, "admin_state_up")?.unwrap_or(true),
                status: "ACTIVE".into(),
                external_gateway_info: None,
                routes: Vec::new(),
                std: Standard::new(body::string_max(m, "description", 255)?.unwrap_or_default()),
                gw_port_id: None,
            };
            store::put(&mut tx, ROUTERS, &r.id, &r);
            if let Some(g) = gateway_request(m)? {
                set_gateway(ctx, &mut tx, &mut r, g).await?;
                store::put(&mut tx, ROUTERS, &r.id, &r);
            }
            store::replan_router(&mut tx, &r.id).await?;
            if let Some(gw) = &r.gw_port_id {
                store::replan_port(&mut tx, gw).await?;
            }
            out.push(r);
        }
        Ok::<_, NeutronError>(out)
    })?;
    drop(_serial);
    Ok(created(ctx, "router", "routers", bulk, routers.iter().map(render).collect()))
}

pub async fn update(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "router")?;
    check_keys(&m, UPDATE)?;
    let ctx = &ctx;
    let _serial = ctx.cluster.create_lock.lock().await;
    let r = ntxn!(ctx.cluster, tx => {
        let mut r = load(ctx, &mut tx, &id).await?;
        if let Some(v) = body::string_max(&m, "name", 255)? {
            r.name = v;
        }
        if let Some(v) = body::string_max(&m, "description", 255)? {
            r.std.description = v;
        }
        if let Some(v) = body::opt_bool(&m, "admin_state_up")? {
            r.admin_state_up = v;
        }
        if let Some(g) = gateway_request(&m)? {
            set_gateway(ctx, &mut tx, &mut r, g).await?;
        }
        store::put(&mut tx, ROUTERS, &r.id, &r);
        if let Some(rs) = routes(&mut tx, &r, &m).await? {
            r.routes = rs;
        }
        r.std.touch();
        store::put(&mut tx, ROUTERS, &r.id, &r);
        store::replan_router(&mut tx, &r.id).await?;
        Ok::<_, NeutronError>(r)
    })?;
    Ok(super::one(ctx, StatusCode::OK, "router", render(&r)))
}

pub async fn delete(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let mut r = load(ctx, &mut tx, &id).await?;
        let ports = store::ids_by(&mut tx, PORTS, "device_id", &id).await?;
        if ports.iter().any(|(_, device_owner)| device_owner == owner::ROUTER_INTERFACE.as_bytes()) {
            return Err(NeutronError::conflict("RouterInUse", format!("Router {id} still has ports")));
        }
        set_gateway(ctx, &mut tx, &mut r, None).await?;
        store::delete(&mut tx, ROUTERS, &id).await?;
        store::replan_router(&mut tx, &id).await?;
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}

fn interface_info(r: &Router, p: &Port) -> Value {
    let subnets: Vec<&str> = p.fixed_ips.iter().map(|f| f.subnet_id.as_str()).collect();
    json!({
        "id": r.id, "tenant_id": r.project_id, "project_id": r.project_id,
        "port_id": p.id, "network_id": p.network_id,
        "subnet_id": subnets.first().copied().unwrap_or(""), "subnet_ids": subnets,
    })
}

/// `{"subnet_id"}` or `{"port_id"}` (exactly one).
fn interface_request(body: &[u8]) -> NResult<(Option<String>, Option<String>)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| NeutronError::bad_request(format!("Malformed request body: {e}")))?;
    let m = v.as_object().ok_or_else(|| NeutronError::bad_request("Malformed request body"))?;
    check_keys(m, &["subnet_id", "port_id"])?;
    let s = body::opt_uuid(m, "subnet_id")?;
    let p = body::opt_uuid(m, "port_id")?;
    match (&s, &p) {
        (None, None) => Err(NeutronError::bad_request(
            "Bad router request: Either subnet_id or port_id must be specified",
        )),
        (Some(_), Some(_)) => Err(NeutronError::bad_request(
            "Bad router request: Cannot specify both subnet-id and port-id",
        )),
        _ => Ok((s, p)),
    }
}

pub async fn add_interface(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let (sid, pid) = interface_request(&body)?;
    let ctx = &ctx;
    let _serial = ctx.cluster.create_lock.lock().await;
    let (r, p) = ntxn!(ctx.cluster, tx => {
        let r = load(ctx, &mut tx, &id).await?;
        let existing = router_cidrs(&mut tx, &id).await?;
        let p = match (&sid, &pid) {
            (Some(sid), _) => {
                let s = subnet::load(ctx, &mut tx, sid).await?;
                let Some(gw) = s.gateway_ip.clone() else {
                    return Err(NeutronError::bad_request(format!("Bad router request: Subnet {sid} does not have a gateway IP.")));
                };
                check_overlap(&existing, &s.cidr, sid, &id)?;
                let net = network::load(ctx, &mut tx, &s.network_id).await?;
                let mut pm = Map::new();
                pm.insert("network_id".into(), json!(net.id));
                pm.insert("device_owner".into(), json!(owner::ROUTER_INTERFACE));
                pm.insert("device_id".into(), json!(id));
                pm.insert("fixed_ips".into(), json!([{"subnet_id": sid, "ip_address": gw}]));
                port::create_in(ctx, &mut tx, &pm, &net, r.project_id.clone()).await.map_err(|e| {
                    if e.kind == "IpAddressAlreadyAllocated" {
                        NeutronError::conflict("IpAddressInUse", format!("Unable to complete operation for network {}. The IP address {gw} is in use.", net.id))
                    } else {
                        e
                    }
                })?
            }
            (None, Some(pid)) => {
                let mut p = port::load(ctx, &mut tx, pid).await?;
                if !p.device_id.is_empty() || !p.device_owner.is_empty() {
                    return Err(NeutronError::conflict("PortInUse", format!("Unable to complete operation on port {pid} for network {}. Port already has an attached device {}.", p.network_id, p.device_id)));
                }
                if p.fixed_ips.is_empty() {
                    return Err(NeutronError::bad_request("Bad router request: Router port must have at least one fixed IP"));
                }
                for f in &p.fixed_ips {
                    if let Some(s) = store::get::<super::types::Subnet>(&mut tx, store::SUBNETS, &f.subnet_id).await? {
                        check_overlap(&existing, &s.cidr, &s.id, &id)?;
                    }
                }
                p.device_owner = owner::ROUTER_INTERFACE.into();
                p.device_id = id.clone();
                p.security_groups.clear();
                p.allowed_address_pairs.clear();
                p.port_security_enabled = false;
                p.std.touch();
                store::put(&mut tx, PORTS, &p.id, &p);
                store::replan_port(&mut tx, &p.id).await?;
                p
            }
            _ => unreachable!("interface_request gives exactly one"),
        };
        store::replan_router(&mut tx, &id).await?;
        Ok::<_, NeutronError>((r, p))
    })?;
    Ok(super::json_response(StatusCode::OK, &interface_info(&r, &p)))
}

fn check_overlap(existing: &[(String, Cidr)], cidr: &str, sid: &str, rid: &str) -> NResult<()> {
    let c = Cidr::parse(cidr).map_err(NeutronError::invalid_input)?;
    for (other, oc) in existing {
        if other == sid {
            return Err(NeutronError::bad_request(format!(
                "Bad router request: Router already has a port on subnet {sid}."
            )));
        }
        if oc.overlaps(&c) {
            return Err(NeutronError::bad_request(format!(
                "Bad router request: Cidr {cidr} of subnet {sid} overlaps with cidr {oc} of subnet {other} on router {rid}."
            )));
        }
    }
    Ok(())
}

pub async fn remove_interface(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let (sid, pid) = interface_request(&body)?;
    let ctx = &ctx;
    let (r, p) = ntxn!(ctx.cluster, tx => {
        let r = load(ctx, &mut tx, &id).await?;
        let ports = store::device_ports(&mut tx, &id).await?;
        let mine = |p: &&Port| p.device_owner == owner::ROUTER_INTERFACE;
        let p = match (&sid, &pid) {
            (Some(sid), _) => ports.iter().filter(mine).find(|p| p.fixed_ips.iter().any(|f| &f.subnet_id == sid)).cloned().ok_or_else(|| {
                NeutronError::not_found("RouterInterfaceNotFoundForSubnet", "Router interface for subnet", &format!("{sid} on router {id}"))
            })?,
            (None, Some(pid)) => ports.iter().filter(mine).find(|p| &p.id == pid).cloned().ok_or_else(|| {
                NeutronError::not_found("RouterInterfaceNotFound", "Router interface", &format!("{pid} on router {id}"))
            })?,
            _ => unreachable!("interface_request gives exactly one"),
        };
        let fips: Vec<FloatingIp> = store::find_by(&mut tx, FLOATINGIPS, "router_id", &id).await?;
        let subnets: Vec<&str> = p.fixed_ips.iter().map(|f| f.subnet_id.as_str()).collect();
        for f in &fips {
            let Some(pid) = &f.port_id else { continue };
            let Some(fp) = store::get::<Port>(&mut tx, PORTS, pid).await? else { continue };
            if fp.fixed_ips.iter().any(|x| subnets.contains(&x.subnet_id.as_str())) {
                return Err(NeutronError::conflict("RouterInterfaceInUseByFloatingIP", format!("Router interface for subnet {} on router {id} cannot be deleted, as it is required by one or more floating IPs.", subnets.first().copied().unwrap_or(""))));
            }
        }
        port::delete_in(&mut tx, &p).await?;
        store::replan_router(&mut tx, &id).await?;
        Ok::<_, NeutronError>((r, p))
    })?;
    Ok(super::json_response(StatusCode::OK, &interface_info(&r, &p)))
}

// ------------------------------------------------------------ floating IPs

const FIP_CREATE: &[&str] = &[
    "floating_network_id",
    "floating_ip_address",
    "subnet_id",
    "port_id",
    "fixed_ip_address",
    "description",
    "tenant_id",
    "project_id",
];
const FIP_UPDATE: &[&str] = &["port_id", "fixed_ip_address", "description"];

async fn load_fip(ctx: &NCtx, tx: &mut Tx, id: &str) -> NResult<FloatingIp> {
    match store::get::<FloatingIp>(tx, FLOATINGIPS, id).await? {
        Some(f) if ctx.owns(&f.project_id) => Ok(f),
        _ => Err(fip_not_found(id)),
    }
}

async fn render_fip(tx: &mut Tx, f: &FloatingIp) -> NResult<Value> {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    let details = match &f.port_id {
        Some(pid) => match store::get::<Port>(tx, PORTS, pid).await? {
            Some(p) => {
                let active = store::port_active(tx, pid).await?;
                let pv = port::render(&p, active);
                json!({"name": p.name, "network_id": p.network_id, "mac_address": p.mac_address,
                       "admin_state_up": p.admin_state_up, "status": pv["status"],
                       "device_id": p.device_id, "device_owner": p.device_owner})
            }
            None => Value::Null,
        },
        None => Value::Null,
    };
    v["port_details"] = details;
    Ok(v)
}

/// Binds a floating IP to a port's fixed address, through the router
/// that has a gateway on the floating network and an interface on the
/// port's subnet.
async fn associate(
    ctx: &NCtx,
    tx: &mut Tx,
    f: &mut FloatingIp,
    port_id: &str,
    fixed: Option<String>,
) -> NResult<()> {
    let p = port::load(ctx, tx, port_id).await?;
    let fixed = match fixed {
        Some(a) => {
            if !p.fixed_ips.iter().any(|x| x.ip_address == a) {
                return Err(NeutronError::bad_request(format!(
                    "Bad floatingip request: Port {port_id} does not have fixed ip {a}."
                )));
            }
            a
        }
        None => p
            .fixed_ips
            .iter()
            .find(|x| x.ip_address.parse::<Ipv4Addr>().is_ok())
            .map(|x| x.ip_address.clone())
            .ok_or_else(|| {
                NeutronError::bad_request(format!(
                    "Bad floatingip request: Port {port_id} does not have any IPv4 address"
                ))
            })?,
    };
    let subnet_id = p
        .fixed_ips
        .iter()
        .find(|x| x.ip_address == fixed)
        .map(|x| x.subnet_id.clone())
        .unwrap_or_default();
    let others: Vec<FloatingIp> = store::find_by(tx, FLOATINGIPS, "port_id", port_id).await?;
    if others.iter().any(|o| o.id != f.id && o.fixed_ip_address.as_deref() == Some(fixed.as_str()))
    {
        return Err(NeutronError::conflict("FloatingIPPortAlreadyAssociated", format!("Cannot associate floating IP {} with port {port_id} using fixed IP {fixed}, as that fixed IP already has a floating IP on external network {}.", f.floating_ip_address, f.floating_network_id)));
    }
    // The routers with an interface on the subnet, in id order.
    let mut candidates: Vec<String> =
        store::subnet_interfaces(tx, &subnet_id).await?.into_iter().map(|(_, r)| r).collect();
    candidates.sort();
    candidates.dedup();
    let mut router = None;
    for rid in candidates {
        let r = store::get::<Router>(tx, ROUTERS, &rid).await?;
        if let Some(r) = r.filter(|r| {
            r.external_gateway_info.as_ref().is_some_and(|g| g.network_id == f.floating_network_id)
        }) {
            router = Some(r);
            break;
        }
    }
    let Some(router) = router else {
        return Err(NeutronError::not_found(
            "ExternalGatewayForFloatingIPNotFound",
            "External gateway for floating IP",
            &format!("(external network {} is not reachable from subnet {subnet_id}; cannot associate port {port_id} with a floating IP)", f.floating_network_id),
        ));
    };
    f.port_id = Some(port_id.to_string());
    f.fixed_ip_address = Some(fixed);
    f.router_id = Some(router.id.clone());
    f.status = "ACTIVE".into();
    Ok(())
}

fn disassociate(f: &mut FloatingIp) {
    f.port_id = None;
    f.fixed_ip_address = None;
    f.router_id = None;
    f.status = "DOWN".into();
}

pub async fn list_fips(ctx: NCtx) -> NResult<Response> {
    let mut tx = ctx.tx();
    let mut items = Vec::new();
    for f in store::all::<FloatingIp>(&mut tx, FLOATINGIPS).await? {
        if ctx.owns(&f.project_id) {
            items.push(render_fip(&mut tx, &f).await?);
        }
    }
    super::list(&ctx, "floatingips", "floatingips", items)
}

pub async fn show_fip(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let mut tx = ctx.tx();
    let f = load_fip(&ctx, &mut tx, &id).await?;
    let v = render_fip(&mut tx, &f).await?;
    Ok(super::one(&ctx, StatusCode::OK, "floatingip", v))
}

pub async fn create_fip(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "floatingip")?;
    check_keys(&m, FIP_CREATE)?;
    let net_id = body::opt_uuid(&m, "floating_network_id")?.ok_or_else(|| {
        NeutronError::bad_request(
            "Failed to parse request. Required attribute 'floating_network_id' not specified",
        )
    })?;
    let ctx = &ctx;
    let _serial = ctx.cluster.create_lock.lock().await;
    let (f, v) = ntxn!(ctx.cluster, tx => {
        let project = ctx.new_project(&m)?;
        quota::check_many(&mut tx, std::iter::once((project.as_str(), quota::Res::FloatingIp))).await?;
        let net: Network = network::load(ctx, &mut tx, &net_id).await?;
        if !net.router_external {
            return Err(NeutronError::bad_request(format!("Bad floatingip request: Network {net_id} is not a valid external network.")));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut pm = Map::new();
        pm.insert("network_id".into(), json!(net_id));
        pm.insert("device_owner".into(), json!(owner::FLOATING_IP));
        pm.insert("device_id".into(), json!(id));
        let addr = body::opt_string(&m, "floating_ip_address")?;
        let sub = body::opt_uuid(&m, "subnet_id")?;
        if addr.is_some() || sub.is_some() {
            let mut fixed = Map::new();
            if let Some(a) = &addr {
                fixed.insert("ip_address".into(), json!(a));
            }
            if let Some(s) = &sub {
                fixed.insert("subnet_id".into(), json!(s));
            }
            pm.insert("fixed_ips".into(), json!([fixed]));
        }
        let fp = port::create_in(ctx, &mut tx, &pm, &net, String::new()).await.map_err(|e| {
            if e.kind == "IpAddressGenerationFailure" {
                NeutronError::conflict(&e.kind, format!("No more IP addresses available on network {net_id}."))
            } else {
                e
            }
        })?;
        let address = fp
            .fixed_ips
            .iter()
            .find(|x| x.ip_address.parse::<Ipv4Addr>().is_ok())
            .map(|x| x.ip_address.clone())
            .ok_or_else(|| NeutronError::bad_request(format!("Bad floatingip request: network {net_id} has no IPv4 subnet.")))?;
        let mut f = FloatingIp {
            id: id.clone(),
            floating_ip_address: address,
            floating_network_id: net_id.clone(),
            router_id: None,
            port_id: None,
            fixed_ip_address: None,
            status: "DOWN".into(),
            tenant_id: project.clone(),
            project_id: project,
            std: Standard::new(body::string_max(&m, "description", 255)?.unwrap_or_default()),
            fip_port_id: fp.id.clone(),
        };
        if let Some(pid) = body::opt_uuid(&m, "port_id")? {
            associate(ctx, &mut tx, &mut f, &pid, body::opt_string(&m, "fixed_ip_address")?).await?;
        }
        store::put(&mut tx, FLOATINGIPS, &f.id, &f);
        if let Some(r) = &f.router_id {
            store::replan_router(&mut tx, r).await?;
        }
        let v = render_fip(&mut tx, &f).await?;
        Ok::<_, NeutronError>((f, v))
    })?;
    let _ = f;
    Ok(super::one(ctx, StatusCode::CREATED, "floatingip", v))
}

pub async fn update_fip(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "floatingip")?;
    check_keys(&m, FIP_UPDATE)?;
    let ctx = &ctx;
    let v = ntxn!(ctx.cluster, tx => {
        let mut f = load_fip(ctx, &mut tx, &id).await?;
        let old_router = f.router_id.clone();
        if let Some(d) = body::string_max(&m, "description", 255)? {
            f.std.description = d;
        }
        match body::nullable_string(&m, "port_id")? {
            Some(Some(pid)) => {
                body::check_uuid("port_id", &pid)?;
                associate(ctx, &mut tx, &mut f, &pid, body::opt_string(&m, "fixed_ip_address")?).await?;
            }
            Some(None) => disassociate(&mut f),
            None => {
                if let (Some(a), Some(pid)) = (body::opt_string(&m, "fixed_ip_address")?, f.port_id.clone()) {
                    associate(ctx, &mut tx, &mut f, &pid, Some(a)).await?;
                }
            }
        }
        f.std.touch();
        store::put(&mut tx, FLOATINGIPS, &f.id, &f);
        let mut routers: Vec<String> = old_router.into_iter().chain(f.router_id.clone()).collect();
        routers.dedup();
        for r in routers {
            store::replan_router(&mut tx, &r).await?;
        }
        render_fip(&mut tx, &f).await
    })?;
    Ok(super::one(ctx, StatusCode::OK, "floatingip", v))
}

pub async fn delete_fip(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let f = load_fip(ctx, &mut tx, &id).await?;
        store::delete(&mut tx, FLOATINGIPS, &id).await?;
        if let Some(p) = store::get::<Port>(&mut tx, PORTS, &f.fip_port_id).await? {
            port::delete_in(&mut tx, &p).await?;
        }
        if let Some(r) = &f.router_id {
            store::replan_router(&mut tx, r).await?;
        }
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}
