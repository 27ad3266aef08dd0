//! `/v2.0/subnets` → the bridge's DHCP subnets (IPv4), and the addresses
//! ports and router interfaces take.
//!
//! A subnet's CIDR is given, or taken from a subnet pool (`subnetpool_id`
//! or `use_default_subnetpool`, see [`super::subnetpool`]): then the CIDR,
//! and the gateway and allocation pools that depend on it, are settled
//! inside the create transaction, where the pool's allocations are read
//! and written.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::body::{self, check_keys};
use super::error::{NResult, NeutronError};
use super::ipam::{self, Cidr};
use super::network::{self, created};
use super::store::{self, NETWORKS, PORTS, SUBNETS};
use super::subnetpool::{self, Request};
use super::types::{owner, HostRoute, Network, Pool, Port, Standard, Subnet};
use super::{quota, NCtx};
use crate::db::Tx;
use crate::ntxn;

const CREATE: &[&str] = &[
    "name",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "dns_nameservers",
    "host_routes",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "subnetpool_id",
    "use_default_subnetpool",
    "prefixlen",
    "description",
    "tenant_id",
    "project_id",
];
const UPDATE: &[&str] = &[
    "name",
    "gateway_ip",
    "allocation_pools",
    "enable_dhcp",
    "dns_nameservers",
    "host_routes",
    "description",
];
/// Neutron's `max_dns_nameservers` default.
const MAX_DNS: usize = 5;
/// Neutron's `max_subnet_host_routes` default.
const MAX_ROUTES: usize = 20;

pub fn not_found(id: &str) -> NeutronError {
    NeutronError::not_found("SubnetNotFound", "Subnet", id)
}

/// Whether the caller sees the subnet: its own, and those of shared
/// networks. An external network is visible to every project but its
/// subnets are not (Neutron's `get_subnet` policy): a tenant uses them
/// through a router gateway or a floating IP, never by id.
async fn visible(ctx: &NCtx, tx: &mut Tx, s: &Subnet) -> NResult<bool> {
    if ctx.owns(&s.project_id) {
        return Ok(true);
    }
    Ok(store::get::<Network>(tx, NETWORKS, &s.network_id).await?.is_some_and(|n| n.shared))
}

/// Loads a subnet the caller may see (404 otherwise).
pub async fn load(ctx: &NCtx, tx: &mut Tx, id: &str) -> NResult<Subnet> {
    match store::get::<Subnet>(tx, SUBNETS, id).await? {
        Some(s) if visible(ctx, tx, &s).await? => Ok(s),
        _ => Err(not_found(id)),
    }
}

fn ip_of(attr: &str, s: &str, cidr: &Cidr) -> NResult<IpAddr> {
    let ip: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| NeutronError::invalid(attr, format!("'{s}' is not a valid IP address")))?;
    if ip.is_ipv4() != cidr.is_v4() {
        return Err(NeutronError::invalid_input(format!(
            "{attr} {s} does not match the IP version of subnet {cidr}"
        )));
    }
    Ok(ip)
}

fn pools_of(m: &Map<String, Value>) -> NResult<Option<Vec<Pool>>> {
    let Some(list) = body::opt_list(m, "allocation_pools")? else { return Ok(None) };
    list.iter()
        .map(|p| {
            let start = p.get("start").and_then(Value::as_str);
            let end = p.get("end").and_then(Value::as_str);
            match (start, end, p.as_object().map(|o| o.len())) {
                (Some(s), Some(e), Some(2)) => Ok(Pool { start: s.into(), end: e.into() }),
                _ => Err(NeutronError::invalid(
                    "allocation_pools",
                    format!(
                        "'{p}' is not a valid allocation pool: it needs exactly 'start' and 'end'"
                    ),
                )),
            }
        })
        .collect::<NResult<Vec<_>>>()
        .map(Some)
}

fn routes_of(m: &Map<String, Value>, cidr: &Cidr) -> NResult<Option<Vec<HostRoute>>> {
    let Some(list) = body::opt_list(m, "host_routes")? else { return Ok(None) };
    if list.len() > MAX_ROUTES {
        return Err(NeutronError::bad_request(format!(
            "Unable to complete operation for subnet. The number of host routes exceeds the limit {MAX_ROUTES}."
        )));
    }
    let mut out = Vec::new();
    for r in list {
        let (Some(d), Some(n)) = (
            r.get("destination").and_then(Value::as_str),
            r.get("nexthop").and_then(Value::as_str),
        ) else {
            return Err(NeutronError::invalid(
                "host_routes",
                format!("'{r}' is not a valid host route: it needs 'destination' and 'nexthop'"),
            ));
        };
        let dc = Cidr::parse(d).map_err(|e| NeutronError::invalid("host_routes", e))?;
        if dc.is_v4() != cidr.is_v4() {
            return Err(NeutronError::invalid(
                "host_routes",
                format!("'{d}' is not of the subnet's IP version"),
            ));
        }
        ip_of("host_routes", n, cidr)?;
        let hr = HostRoute { destination: d.to_string(), nexthop: n.to_string() };
        if out.contains(&hr) {
            return Err(NeutronError::invalid(
                "host_routes",
                format!("duplicate host route '{d}'"),
            ));
        }
        out.push(hr);
    }
    Ok(Some(out))
}

fn dns_of(m: &Map<String, Value>) -> NResult<Option<Vec<String>>> {
    let Some(list) = body::opt_strings(m, "dns_nameservers")? else { return Ok(None) };
    if list.len() > MAX_DNS {
        return Err(NeutronError::bad_request(format!(
            "Unable to complete operation for subnet. The number of DNS nameservers exceeds the limit {MAX_DNS}."
        )));
    }
    for (i, d) in list.iter().enumerate() {
        d.parse::<IpAddr>().map_err(|_| {
            NeutronError::invalid("dns_nameservers", format!("'{d}' is not a valid nameserver"))
        })?;
        if list[..i].contains(d) {
            return Err(NeutronError::invalid(
                "dns_nameservers",
                format!("Duplicate nameserver '{d}'"),
            ));
        }
    }
    Ok(Some(list))
}

/// Applies gateway, pools, DHCP, DNS and routes (create and update),
/// checking them against the CIDR and each other.
fn apply(s: &mut Subnet, m: &Map<String, Value>, create: bool) -> NResult<()> {
    let cidr = Cidr::parse(&s.cidr).map_err(|e| NeutronError::invalid("cidr", e))?;
    if let Some(v) = body::string_max(m, "name", 255)? {
        s.name = v;
    }
    if let Some(v) = body::string_max(m, "description", 255)? {
        s.std.description = v;
    }
    if let Some(v) = body::opt_bool(m, "enable_dhcp")? {
        s.enable_dhcp = v;
    }
    let gw_given = body::nullable_string(m, "gateway_ip")?;
    match &gw_given {
        Some(Some(g)) => {
            let ip = ip_of("gateway_ip", g, &cidr)?;
            if !cidr.is_host(ip) {
                return Err(NeutronError::invalid_input(format!(
                    "Gateway is not valid on subnet: gateway {g} is not a host address of {cidr}"
                )));
            }
            s.gateway_ip = Some(ip.to_string());
        }
        Some(None) => s.gateway_ip = None,
        None if create => s.gateway_ip = cidr.default_gateway().map(|g| g.to_string()),
        None => {}
    }
    let gw: Option<IpAddr> = s.gateway_ip.as_deref().and_then(|g| g.parse().ok());
    match pools_of(m)? {
        Some(pools) => {
            ipam::check_pools(&cidr, &pools, gw).map_err(NeutronError::invalid_input)?;
            s.allocation_pools = pools;
        }
        None if create => s.allocation_pools = cidr.default_pools(gw),
        None => {
            if gw_given.is_some() {
                ipam::check_pools(&cidr, &s.allocation_pools, gw)
                    .map_err(NeutronError::invalid_input)?;
            }
        }
    }
    if let Some(d) = dns_of(m)? {
        s.dns_nameservers = d;
    }
    if let Some(r) = routes_of(m, &cidr)? {
        s.host_routes = r;
    }
    Ok(())
}

fn check_modes(m: &Map<String, Value>, version: u8) -> NResult<()> {
    for k in ["ipv6_ra_mode", "ipv6_address_mode"] {
        if let Some(v) = body::opt_string(m, k)? {
            if version != 6
                || !matches!(v.as_str(), "slaac" | "dhcpv6-stateful" | "dhcpv6-stateless")
            {
                return Err(NeutronError::invalid(k, format!("'{v}' is not valid here")));
            }
        }
    }
    Ok(())
}

/// A subnet to create, and what it asks of a subnet pool. Without a
/// given CIDR (`cidr` empty) only the body's own checks are done; the
/// rest waits for the pool's answer ([`settle`]).
fn build(ctx: &NCtx, m: &Map<String, Value>) -> NResult<(Subnet, Option<Request>)> {
    check_keys(m, CREATE)?;
    let network_id = body::opt_uuid(m, "network_id")?.ok_or_else(|| {
        NeutronError::bad_request(
            "Failed to parse request. Required attribute 'network_id' not specified",
        )
    })?;
    let pool_id = body::opt_uuid(m, "subnetpool_id")?;
    let use_default = body::opt_bool(m, "use_default_subnetpool")?.unwrap_or(false);
    let cidr_s = body::opt_string(m, "cidr")?;
    let prefixlen = match body::opt_int(m, "prefixlen")? {
        Some(l) if l < 0 => {
            return Err(NeutronError::invalid("prefixlen", format!("'{l}' should be non-negative")))
        }
        l => l,
    };
    if cidr_s.is_some() && prefixlen.is_some() {
        return Err(NeutronError::bad_resource(
            "subnets",
            "cidr and prefixlen must not be supplied together",
        ));
    }
    if use_default && pool_id.is_some() {
        return Err(NeutronError::bad_resource(
            "subnets",
            "subnetpool_id and use_default_subnetpool cannot both be specified",
        ));
    }
    let from_pool = use_default || pool_id.is_some();
    if !from_pool && cidr_s.is_none() {
        return Err(NeutronError::bad_resource(
            "subnets",
            "a subnetpool must be specified in the absence of a cidr",
        ));
    }
    if from_pool && cidr_s.is_none() && body::opt_list(m, "allocation_pools")?.is_some() {
        return Err(NeutronError::bad_resource(
            "subnets",
            "allocation_pools allowed only for specific subnet requests",
        ));
    }
    let cidr = match &cidr_s {
        Some(c) => Some(Cidr::parse(c).map_err(|e| NeutronError::invalid("cidr", e))?),
        None => None,
    };
    let given_version = match body::opt_int(m, "ip_version")? {
        None => None,
        Some(v @ (4 | 6)) => Some(v as u8),
        Some(v) => {
            return Err(NeutronError::invalid("ip_version", format!("'{v}' is not in [4, 6]")))
        }
    };
    if let (Some(c), Some(v)) = (cidr, given_version) {
        if v != c.version() {
            return Err(NeutronError::invalid_input(format!(
                "Cidr {c} does not match the IP version {v}"
            )));
        }
    }
    let version = cidr.map(|c| c.version()).or(given_version);
    if let Some(v) = version {
        check_modes(m, v)?;
    }
    let project = ctx.new_project(m)?;
    let request = from_pool.then_some(Request { pool_id, cidr, prefixlen, ip_version: version });
    let mut s = Subnet {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        network_id,
        tenant_id: project.clone(),
        project_id: project,
        cidr: cidr.map(|c| c.to_string()).unwrap_or_default(),
        ip_version: version.unwrap_or(0),
        gateway_ip: None,
        allocation_pools: Vec::new(),
        enable_dhcp: true,
        dns_nameservers: Vec::new(),
        host_routes: Vec::new(),
        ipv6_ra_mode: body::opt_string(m, "ipv6_ra_mode")?,
        ipv6_address_mode: body::opt_string(m, "ipv6_address_mode")?,
        subnetpool_id: None,
        std: Standard::new(String::new()),
    };
    if cidr.is_some() {
        apply(&mut s, m, true)?;
    }
    Ok((s, request))
}

/// Takes a pool subnet's CIDR from its pool (in the create transaction),
/// then does what [`build`] left for the CIDR to be known.
async fn settle(
    ctx: &NCtx,
    tx: &mut Tx,
    s: &mut Subnet,
    req: &Request,
    m: &Map<String, Value>,
) -> NResult<()> {
    let (cidr, pool) = subnetpool::allocate(ctx, tx, req, &s.id, &s.project_id).await?;
    s.subnetpool_id = Some(pool);
    if s.cidr.is_empty() {
        s.cidr = cidr.to_string();
        s.ip_version = cidr.version();
        check_modes(m, s.ip_version)?;
        apply(s, m, true)?;
    }
    Ok(())
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    let mut tx = ctx.tx();
    let mut items = Vec::new();
    for s in store::all::<Subnet>(&mut tx, SUBNETS).await? {
        if visible(&ctx, &mut tx, &s).await? {
            items.push(serde_json::to_value(s).unwrap_or_default());
        }
    }
    super::list(&ctx, "subnets", "subnets", items)
}

pub async fn show(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let s = load(&ctx, &mut ctx.tx(), &id).await?;
    Ok(super::one(&ctx, StatusCode::OK, "subnet", serde_json::to_value(s).unwrap_or_default()))
}

/// 409 unless `cidr` overlaps no other subnet of the network.
fn check_overlap(net: &Network, others: &[Subnet], s: &Subnet) -> NResult<()> {
    let c = Cidr::parse(&s.cidr).map_err(|e| NeutronError::invalid("cidr", e))?;
    for o in others.iter().filter(|o| o.id != s.id) {
        if Cidr::parse(&o.cidr).is_ok_and(|oc| oc.overlaps(&c)) {
            return Err(NeutronError::invalid_input(format!(
                "Requested subnet with cidr: {} for network: {} overlaps with another subnet",
                s.cidr, net.id
            )));
        }
    }
    Ok(())
}

pub async fn create(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "subnet", "subnets")?;
    let built = items.iter().map(|m| build(&ctx, m)).collect::<NResult<Vec<_>>>()?;
    let ctx = &ctx;
    let subnets = ntxn!(ctx.cluster, tx => {
        quota::check_many(&mut tx, built.iter().map(|(s, _)| (s.project_id.as_str(), quota::Res::Subnet))).await?;
        let mut touched = Vec::new();
        let mut subnets = Vec::with_capacity(built.len());
        for ((s, req), m) in built.iter().zip(&items) {
            let mut s = s.clone();
            let mut net = network::load(ctx, &mut tx, &s.network_id).await?;
            if !ctx.owns(&net.project_id) {
                return Err(NeutronError::forbidden(format!(
                    "(rule:create_subnet) is disallowed by policy: network {} belongs to another project", net.id
                )));
            }
            if let Some(req) = req {
                settle(ctx, &mut tx, &mut s, req, m).await?;
            }
            let others = store::subnets_of(&mut tx, &net).await?;
            check_overlap(&net, &others, &s)?;
            net.subnets.push(s.id.clone());
            net.std.touch();
            store::put(&mut tx, NETWORKS, &net.id, &net);
            store::put(&mut tx, SUBNETS, &s.id, &s);
            touched.push(net.id.clone());
            subnets.push(s);
        }
        touched.dedup();
        for n in &touched {
            store::replan_network(&mut tx, n).await?;
        }
        Ok::<_, NeutronError>(subnets)
    })?;
    let out: Vec<Value> =
        subnets.into_iter().map(|s| serde_json::to_value(s).unwrap_or_default()).collect();
    Ok(created(ctx, "subnet", "subnets", bulk, out))
}

pub async fn update(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "subnet")?;
    for ro in ["cidr", "ip_version", "network_id", "tenant_id", "project_id", "subnetpool_id"] {
        if m.contains_key(ro) {
            return Err(NeutronError::bad_request(format!(
                "Cannot update read-only attribute {ro}"
            )));
        }
    }
    check_keys(&m, UPDATE)?;
    let ctx = &ctx;
    let s = ntxn!(ctx.cluster, tx => {
        let mut s = load(ctx, &mut tx, &id).await?;
        if !ctx.owns(&s.project_id) {
            return Err(not_found(&id));
        }
        apply(&mut s, &m, false)?;
        s.std.touch();
        store::put(&mut tx, SUBNETS, &s.id, &s);
        store::replan_network(&mut tx, &s.network_id).await?;
        Ok::<_, NeutronError>(s)
    })?;
    Ok(super::one(ctx, StatusCode::OK, "subnet", serde_json::to_value(s).unwrap_or_default()))
}

pub async fn delete(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let s = load(ctx, &mut tx, &id).await?;
        if !ctx.owns(&s.project_id) {
            return Err(not_found(&id));
        }
        // Ports with an address on the subnet are on its network.
        for a in store::network_ports(&mut tx, &s.network_id).await? {
            if !a.fixed_ips.iter().any(|f| f.subnet_id == id) {
                continue;
            }
            let Some(p) = store::get::<Port>(&mut tx, PORTS, &a.id).await? else { continue };
            if p.device_owner != owner::DHCP {
                return Err(NeutronError::conflict(
                    "SubnetInUse",
                    format!("Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."),
                ));
            }
        }
        if let Some(mut net) = store::get::<Network>(&mut tx, NETWORKS, &s.network_id).await? {
            net.subnets.retain(|x| x != &id);
            net.std.touch();
            store::put(&mut tx, NETWORKS, &net.id, &net);
        }
        store::delete(&mut tx, SUBNETS, &id).await?;
        subnetpool::release(&mut tx, &s).await?;
        store::replan_network(&mut tx, &s.network_id).await?;
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}
