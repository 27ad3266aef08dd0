//! `/v2.0/ports` → bridge ports with their bindings, MAC/ARP/DHCP entries
//! and security chains; IP and MAC allocation.

use std::collections::HashSet;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::body::{self, check_keys};
use super::error::{NResult, NeutronError};
use super::ipam::{self, Cidr, Pick};
use super::network::{self, created};
use super::store::{self, FLOATINGIPS, PORTS};
use super::types::{
    owner, AddressPair, DhcpOpt, FixedIp, FloatingIp, Network, Port, PortAddrs, Standard, Subnet,
};
use super::{quota, secgroup, NCtx};
use crate::db::Tx;
use crate::ntxn;

const CREATE: &[&str] = &[
    "name",
    "network_id",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_id",
    "device_owner",
    "security_groups",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
    "port_security_enabled",
    "description",
    "tenant_id",
    "project_id",
];
const UPDATE: &[&str] = &[
    "name",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_id",
    "device_owner",
    "security_groups",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "binding:host_id",
    "binding:profile",
    "binding:vnic_type",
    "port_security_enabled",
    "description",
];

pub fn not_found(id: &str) -> NeutronError {
    NeutronError::not_found("PortNotFound", "Port", id)
}

/// Loads a port the caller may see (404 otherwise).
pub async fn load(ctx: &NCtx, tx: &mut Tx, id: &str) -> NResult<Port> {
    match store::get::<Port>(tx, PORTS, id).await? {
        Some(p) if ctx.owns(&p.project_id) => Ok(p),
        _ => Err(not_found(id)),
    }
}

/// The port as answered: `ACTIVE` while an agent has it bound.
pub fn render(p: &Port, active: bool) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    let up = active && p.admin_state_up;
    v["status"] = Value::from(if up || p.device_owner.starts_with("network:router") {
        "ACTIVE"
    } else {
        "DOWN"
    });
    v
}

fn check_mac(s: &str) -> NResult<String> {
    let m: midonet_model::MacAddr = s.parse().map_err(|_| {
        NeutronError::invalid("mac_address", format!("'{s}' is not a valid MAC address"))
    })?;
    if m.0[0] & 1 == 1 || m.0 == [0; 6] {
        return Err(NeutronError::invalid(
            "mac_address",
            format!("'{s}' is not a valid MAC address"),
        ));
    }
    Ok(m.to_string().to_ascii_lowercase())
}

/// A requested fixed IP: (subnet id, address), either may be missing.
type IpRequest = (Option<String>, Option<String>);

/// The requested fixed IPs of a body.
fn requested_ips(m: &Map<String, Value>) -> NResult<Option<Vec<IpRequest>>> {
    let Some(list) = body::opt_list(m, "fixed_ips")? else { return Ok(None) };
    let mut out = Vec::new();
    for f in list {
        let Some(o) = f.as_object() else {
            return Err(NeutronError::invalid("fixed_ips", format!("'{f}' is not a dictionary")));
        };
        check_keys(o, &["subnet_id", "ip_address"])
            .map_err(|_| NeutronError::invalid("fixed_ips", format!("'{f}' has unknown keys")))?;
        let subnet = body::opt_uuid(o, "subnet_id").map_err(|_| {
            NeutronError::invalid("fixed_ips", format!("'{f}' has an invalid subnet_id"))
        })?;
        let ip = body::opt_string(o, "ip_address")?;
        if let Some(a) = &ip {
            a.parse::<IpAddr>().map_err(|_| {
                NeutronError::invalid("fixed_ips", format!("'{a}' is not a valid IP address"))
            })?;
        }
        if subnet.is_none() && ip.is_none() {
            return Err(NeutronError::invalid(
                "fixed_ips",
                format!("'{f}' names neither subnet_id nor ip_address"),
            ));
        }
        out.push((subnet, ip));
    }
    Ok(Some(out))
}

/// Makes concurrent writers that would give one address or MAC to two
/// ports conflict. Each address and MAC a port holds has a claim key
/// naming the port; a writer reads (so compares on commit) and writes the
/// claims of what it gives. The list of the network's ports that picked
/// the address is not compared on commit and may be older than the
/// claim, so a claim is believed over it: one that names another port
/// still holding the address or MAC means taken. One left by a port that
/// was deleted or has moved on is stale and is taken over. Without this,
/// two cluster processes (or two requests of one) could give one address
/// twice.
fn ip_claim_key(subnet: &str, ip: &str) -> String {
    format!("{}claims/ip/{subnet}/{ip}", store::PREFIX)
}
fn mac_claim_key(net: &str, mac: &str) -> String {
    format!("{}claims/mac/{net}/{mac}", store::PREFIX)
}

/// What [`claim`] found held by another port.
enum Taken {
    Mac,
    Ip(FixedIp),
}

/// Claims `p`'s MAC and addresses (see [`ip_claim_key`]), or says which
/// of them another port holds (then nothing is claimed).
async fn claim(tx: &mut Tx, p: &Port) -> NResult<Option<Taken>> {
    let mac_key = mac_claim_key(&p.network_id, &p.mac_address);
    let ip_keys: Vec<String> =
        p.fixed_ips.iter().map(|f| ip_claim_key(&f.subnet_id, &f.ip_address)).collect();
    let mut keys = ip_keys.clone();
    keys.push(mac_key.clone());
    tx.prefetch(&keys).await?;
    if let Some(o) = holder(tx, &mac_key, &p.id).await? {
        if o.network_id == p.network_id && o.mac_address == p.mac_address {
            return Ok(Some(Taken::Mac));
        }
    }
    for (f, k) in p.fixed_ips.iter().zip(&ip_keys) {
        if let Some(o) = holder(tx, k, &p.id).await? {
            if o.fixed_ips.contains(f) {
                return Ok(Some(Taken::Ip(f.clone())));
            }
        }
    }
    for k in keys {
        tx.put_raw(&k, p.id.clone().into_bytes());
    }
    Ok(None)
}

/// The port other than `me` that a claim names, if it still exists.
async fn holder(tx: &mut Tx, key: &str, me: &str) -> NResult<Option<Port>> {
    let Some(v) = tx.get_raw(key).await? else { return Ok(None) };
    let id = String::from_utf8_lossy(&v).into_owned();
    if id == me {
        return Ok(None);
    }
    Ok(store::get::<Port>(tx, PORTS, &id).await?)
}

/// Gives `p` addresses (as [`allocate_ips`]) and a MAC if it has none
/// (`mac` is then `None`), and claims them: what a claim shows taken is
/// counted as used and the choice made again.
async fn allocate_and_claim(
    tx: &mut Tx,
    p: &mut Port,
    subnets: &[Subnet],
    mut ports: Vec<PortAddrs>,
    req: Option<Vec<IpRequest>>,
    mac: Option<&str>,
) -> NResult<()> {
    let random_mac = mac.is_none();
    loop {
        if random_mac {
            p.mac_address = loop {
                let mac = ipam::random_mac();
                if !ports.iter().any(|o| o.mac_address == mac) {
                    break mac;
                }
            };
        }
        p.fixed_ips = allocate_ips(p, subnets, &ports, req.clone())?;
        let taken = match claim(tx, p).await? {
            None => return Ok(()),
            Some(Taken::Mac) if !random_mac => {
                return Err(mac_in_use(&p.network_id, &p.mac_address));
            }
            Some(Taken::Mac) => {
                PortAddrs { mac_address: p.mac_address.clone(), ..PortAddrs::default() }
            }
            Some(Taken::Ip(f)) => PortAddrs { fixed_ips: vec![f], ..PortAddrs::default() },
        };
        ports.push(PortAddrs { network_id: p.network_id.clone(), ..taken });
    }
}

fn mac_in_use(net: &str, mac: &str) -> NeutronError {
    NeutronError::conflict(
        "MacAddressInUse",
        format!("Unable to complete operation for network {net}. The mac address {mac} is in use."),
    )
}

/// Addresses in use on a network (ports' and subnets' gateways).
fn used_ips(ports: &[PortAddrs], net: &str, except: &str) -> HashSet<IpAddr> {
    ports
        .iter()
        .filter(|p| p.network_id == net && p.id != except)
        .flat_map(|p| p.fixed_ips.iter().filter_map(|f| f.ip_address.parse().ok()))
        .collect()
}

/// Gives the port its addresses: the requested ones, checked, or one from
/// the first subnet (IPv4 first) with a free address.
pub fn allocate_ips(
    p: &Port,
    subnets: &[Subnet],
    ports: &[PortAddrs],
    req: Option<Vec<IpRequest>>,
) -> NResult<Vec<FixedIp>> {
    let mut used = used_ips(ports, &p.network_id, &p.id);
    let router_if = p.device_owner == owner::ROUTER_INTERFACE;
    let pick = if p.device_owner == owner::DHCP { Pick::First } else { Pick::Random };
    let gateways: HashSet<IpAddr> =
        subnets.iter().filter_map(|s| s.gateway_ip.as_deref()?.parse().ok()).collect();
    let exhausted = || {
        NeutronError::conflict(
            "IpAddressGenerationFailure",
            format!("No more IP addresses available on network {}.", p.network_id),
        )
    };
    let Some(req) = req else {
        let mut order: Vec<&Subnet> = subnets.iter().filter(|s| s.ip_version == 4).collect();
        order.extend(subnets.iter().filter(|s| s.ip_version == 6));
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let mut all_used = used.clone();
        all_used.extend(gateways.iter().copied());
        for s in order {
            let Ok(c) = Cidr::parse(&s.cidr) else { continue };
            if let Some(ip) = ipam::allocate(&c, &s.allocation_pools, &all_used, pick) {
                return Ok(vec![FixedIp { subnet_id: s.id.clone(), ip_address: ip.to_string() }]);
            }
        }
        return Err(exhausted());
    };
    let mut out = Vec::new();
    for (sid, ip) in req {
        let subnet = match (&sid, &ip) {
            (Some(sid), _) => subnets.iter().find(|s| &s.id == sid).ok_or_else(|| {
                NeutronError::invalid_input(format!(
                    "Subnet {sid} is not on network {}",
                    p.network_id
                ))
            })?,
            (None, Some(ip)) => {
                let a: IpAddr = ip.parse().map_err(|_| NeutronError::invalid("fixed_ips", ip))?;
                subnets
                    .iter()
                    .find(|s| Cidr::parse(&s.cidr).is_ok_and(|c| c.contains(a)))
                    .ok_or_else(|| {
                        NeutronError::invalid_input(format!(
                            "IP address {ip} is not a valid IP for any of the subnets on the specified network"
                        ))
                    })?
            }
            (None, None) => continue,
        };
        let c = Cidr::parse(&subnet.cidr).map_err(NeutronError::invalid_input)?;
        let addr = match ip {
            Some(ip) => {
                let a: IpAddr = ip.parse().map_err(|_| NeutronError::invalid("fixed_ips", &ip))?;
                if !c.is_host(a) {
                    return Err(NeutronError::invalid_input(format!(
                        "IP address {ip} is not a valid IP for the specified subnet"
                    )));
                }
                let is_gw = subnet.gateway_ip.as_deref() == Some(ip.as_str());
                if used.contains(&a) || (is_gw && !router_if) {
                    return Err(NeutronError::conflict(
                        "IpAddressAlreadyAllocated",
                        format!("IP address {ip} already allocated in subnet {}", subnet.id),
                    ));
                }
                a
            }
            None => {
                let mut all_used = used.clone();
                all_used.extend(gateways.iter().copied());
                ipam::allocate(&c, &subnet.allocation_pools, &all_used, pick)
                    .ok_or_else(exhausted)?
            }
        };
        used.insert(addr);
        out.push(FixedIp { subnet_id: subnet.id.clone(), ip_address: addr.to_string() });
    }
    Ok(out)
}

fn address_pairs(m: &Map<String, Value>) -> NResult<Option<Vec<AddressPair>>> {
    let Some(list) = body::opt_list(m, "allowed_address_pairs")? else { return Ok(None) };
    let mut out = Vec::new();
    for a in list {
        let o = a.as_object().ok_or_else(|| {
            NeutronError::invalid("allowed_address_pairs", format!("'{a}' is not a dictionary"))
        })?;
        check_keys(o, &["ip_address", "mac_address"])?;
        let ip = body::opt_string(o, "ip_address")?.ok_or_else(|| {
            NeutronError::bad_request("AllowedAddressPair must contain ip_address")
        })?;
        if ip.parse::<IpAddr>().is_err() && Cidr::parse(&ip).is_err() {
            return Err(NeutronError::invalid(
                "allowed_address_pairs",
                format!("'{ip}' is not a valid IP address or CIDR"),
            ));
        }
        let mac = match body::opt_string(o, "mac_address")? {
            Some(mac) => check_mac(&mac)?,
            None => String::new(),
        };
        let pair = AddressPair { ip_address: ip, mac_address: mac };
        if out.contains(&pair) {
            return Err(NeutronError::bad_request("Request contains duplicate address pair"));
        }
        out.push(pair);
    }
    Ok(Some(out))
}

fn dhcp_opts(m: &Map<String, Value>) -> NResult<Option<Vec<DhcpOpt>>> {
    let Some(list) = body::opt_list(m, "extra_dhcp_opts")? else { return Ok(None) };
    let mut out = Vec::new();
    for o in list {
        let om = o.as_object().ok_or_else(|| {
            NeutronError::invalid("extra_dhcp_opts", format!("'{o}' is not a dictionary"))
        })?;
        check_keys(om, &["opt_name", "opt_value", "ip_version"])?;
        let name = body::opt_string(om, "opt_name")?
            .ok_or_else(|| NeutronError::invalid("extra_dhcp_opts", "opt_name is required"))?;
        let value = match om.get("opt_value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(NeutronError::invalid("extra_dhcp_opts", "opt_value is required")),
        };
        let ver = body::opt_int(om, "ip_version")?.unwrap_or(4);
        if ver != 4 && ver != 6 {
            return Err(NeutronError::invalid(
                "extra_dhcp_opts",
                format!("ip_version {ver} is not 4 or 6"),
            ));
        }
        out.push(DhcpOpt { opt_name: name, opt_value: value, ip_version: ver as u8 });
    }
    Ok(Some(out))
}

/// Security groups named in a body: each must be visible.
async fn groups(ctx: &NCtx, tx: &mut Tx, ids: &[String]) -> NResult<Vec<String>> {
    let mut out = Vec::new();
    for id in ids {
        body::check_uuid("security_groups", id)?;
        secgroup::load(ctx, tx, id).await?;
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    Ok(out)
}

fn binding_admin_only(ctx: &NCtx, m: &Map<String, Value>) -> NResult<()> {
    for k in ["binding:host_id", "binding:profile"] {
        if m.contains_key(k) && !ctx.is_admin() {
            return Err(NeutronError::forbidden(format!(
                "(rule:create_port:{k}) is disallowed by policy"
            )));
        }
    }
    Ok(())
}

/// Applies what creates and updates share; IPs, MAC and groups are done by
/// the callers (they need the store).
fn apply(p: &mut Port, m: &Map<String, Value>) -> NResult<()> {
    if let Some(v) = body::string_max(m, "name", 255)? {
        p.name = v;
    }
    if let Some(v) = body::string_max(m, "description", 255)? {
        p.std.description = v;
    }
    if let Some(v) = body::opt_bool(m, "admin_state_up")? {
        p.admin_state_up = v;
    }
    if let Some(v) = body::string_max(m, "device_id", 255)? {
        p.device_id = v;
    }
    if let Some(v) = body::string_max(m, "device_owner", 255)? {
        p.device_owner = v;
    }
    if let Some(v) = body::opt_string(m, "binding:host_id")? {
        p.binding_host_id = v;
    }
    if let Some(v) = body::opt_object(m, "binding:profile")? {
        p.binding_profile = v;
    }
    if let Some(v) = body::opt_string(m, "binding:vnic_type")? {
        if v != "normal" {
            return Err(NeutronError::invalid(
                "binding:vnic_type",
                format!("'{v}' is not supported: only 'normal'"),
            ));
        }
        p.binding_vnic_type = v;
    }
    if let Some(v) = body::opt_bool(m, "port_security_enabled")? {
        p.port_security_enabled = v;
    }
    if let Some(v) = address_pairs(m)? {
        p.allowed_address_pairs = v;
    }
    if let Some(v) = dhcp_opts(m)? {
        p.extra_dhcp_opts = v;
    }
    p.binding_vif_type = if p.binding_host_id.is_empty() { "unbound" } else { "midonet" }.into();
    Ok(())
}

/// Port security rules Neutron enforces across attributes.
fn check_security(p: &Port) -> NResult<()> {
    if !p.port_security_enabled && !p.security_groups.is_empty() {
        return Err(NeutronError::conflict(
            "PortSecurityAndIPRequiredForSecurityGroups",
            "Port security must be enabled and port must have an IP address in order to use security groups.",
        ));
    }
    if !p.port_security_enabled && !p.allowed_address_pairs.is_empty() {
        return Err(NeutronError::conflict(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port.",
        ));
    }
    Ok(())
}

/// Creates a port of `project` in `tx` (also used by routers and
/// floating IPs, for ports of no project).
pub async fn create_in(
    ctx: &NCtx,
    tx: &mut Tx,
    m: &Map<String, Value>,
    net: &Network,
    project: String,
) -> NResult<Port> {
    let mut p = Port {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        network_id: net.id.clone(),
        tenant_id: project.clone(),
        project_id: project,
        mac_address: String::new(),
        fixed_ips: Vec::new(),
        device_id: String::new(),
        device_owner: String::new(),
        admin_state_up: true,
        status: "DOWN".into(),
        security_groups: Vec::new(),
        allowed_address_pairs: Vec::new(),
        extra_dhcp_opts: Vec::new(),
        binding_host_id: String::new(),
        binding_profile: Map::new(),
        binding_vnic_type: "normal".into(),
        binding_vif_type: "unbound".into(),
        binding_vif_details: Map::new(),
        port_security_enabled: net.port_security_enabled,
        std: Standard::new(String::new()),
    };
    apply(&mut p, m)?;
    let ports = store::network_ports(tx, &net.id).await?;
    let mac = match body::opt_string(m, "mac_address")? {
        Some(mac) => {
            let mac = check_mac(&mac)?;
            if ports.iter().any(|o| o.network_id == net.id && o.mac_address == mac) {
                return Err(mac_in_use(&net.id, &mac));
            }
            p.mac_address = mac;
            Some(p.mac_address.clone())
        }
        None => None,
    };
    let subnets = store::subnets_of(tx, net).await?;
    allocate_and_claim(tx, &mut p, &subnets, ports, requested_ips(m)?, mac.as_deref()).await?;
    p.security_groups = match body::opt_strings(m, "security_groups")? {
        Some(ids) => groups(ctx, tx, &ids).await?,
        None if p.port_security_enabled && !p.is_trusted() => {
            vec![secgroup::ensure_default(tx, &p.project_id).await?]
        }
        None => Vec::new(),
    };
    check_security(&p)?;
    store::put(tx, PORTS, &p.id, &p);
    store::replan_port(tx, &p.id).await?;
    Ok(p)
}

/// The network a new port goes on: visible, and the caller's or shared.
async fn port_network(ctx: &NCtx, tx: &mut Tx, m: &Map<String, Value>) -> NResult<Network> {
    let id = body::opt_uuid(m, "network_id")?.ok_or_else(|| {
        NeutronError::bad_request(
            "Failed to parse request. Required attribute 'network_id' not specified",
        )
    })?;
    let net = network::load(ctx, tx, &id).await?;
    if !ctx.owns(&net.project_id) && !net.shared {
        return Err(NeutronError::forbidden(format!(
            "(rule:create_port) is disallowed by policy: network {id} belongs to another project"
        )));
    }
    Ok(net)
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    let mut tx = ctx.tx();
    let active = crate::api::kinds::state_ids(&mut tx, "ports").await?;
    let items: Vec<Value> = store::all::<Port>(&mut tx, PORTS)
        .await?
        .into_iter()
        .filter(|p| ctx.owns(&p.project_id))
        .map(|p| {
            let a = p.id.parse().is_ok_and(|u| active.contains(&u));
            render(&p, a)
        })
        .collect();
    super::list(&ctx, "ports", "ports", items)
}

pub async fn show(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let mut tx = ctx.tx();
    let p = load(&ctx, &mut tx, &id).await?;
    let active = store::port_active(&mut tx, &id).await?;
    Ok(super::one(&ctx, StatusCode::OK, "port", render(&p, active)))
}

pub async fn create(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "port", "ports")?;
    for m in &items {
        check_keys(m, CREATE)?;
        binding_admin_only(&ctx, m)?;
    }
    let ctx = &ctx;
    let ports = ntxn!(ctx.cluster, tx => {
        let mut out = Vec::new();
        let mut counts = Vec::new();
        for m in &items {
            counts.push((ctx.new_project(m)?, quota::Res::Port));
        }
        quota::check_many(&mut tx, counts.iter().map(|(p, r)| (p.as_str(), *r))).await?;
        for m in &items {
            let net = port_network(ctx, &mut tx, m).await?;
            out.push(create_in(ctx, &mut tx, m, &net, ctx.new_project(m)?).await?);
        }
        Ok::<_, NeutronError>(out)
    })?;
    let out: Vec<Value> = ports.iter().map(|p| render(p, false)).collect();
    Ok(created(ctx, "port", "ports", bulk, out))
}

/// The floating IPs associated with a port.
async fn fips_on(tx: &mut Tx, port: &str) -> NResult<Vec<FloatingIp>> {
    Ok(store::find_by(tx, FLOATINGIPS, "port_id", port).await?)
}

/// Routers to replan after a port changed: the one it is an interface or
/// gateway of, and those of floating IPs on it.
async fn routers_of(tx: &mut Tx, p: &Port) -> NResult<Vec<String>> {
    let mut out = Vec::new();
    if p.device_owner == owner::ROUTER_INTERFACE || p.device_owner == owner::ROUTER_GATEWAY {
        out.push(p.device_id.clone());
    }
    for f in fips_on(tx, &p.id).await? {
        out.extend(f.router_id);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub async fn update(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "port")?;
    for ro in ["network_id", "tenant_id", "project_id"] {
        if m.contains_key(ro) {
            return Err(NeutronError::bad_request(format!(
                "Cannot update read-only attribute {ro}"
            )));
        }
    }
    check_keys(&m, UPDATE)?;
    binding_admin_only(&ctx, &m)?;
    let ctx = &ctx;
    let (p, active) = ntxn!(ctx.cluster, tx => {
        let mut p = load(ctx, &mut tx, &id).await?;
        let before = p.clone();
        apply(&mut p, &m)?;
        let ports = store::network_ports(&mut tx, &p.network_id).await?;
        if let Some(mac) = body::opt_string(&m, "mac_address")? {
            let mac = check_mac(&mac)?;
            if mac != p.mac_address {
                if !before.binding_host_id.is_empty() {
                    return Err(NeutronError::conflict("PortBound", format!("Unable to complete operation on port {id}: the port is bound; its MAC address cannot change.")));
                }
                if ports.iter().any(|o| o.network_id == p.network_id && o.mac_address == mac && o.id != p.id) {
                    return Err(NeutronError::conflict("MacAddressInUse", format!("The mac address {mac} is in use.")));
                }
                p.mac_address = mac;
            }
        }
        let req = requested_ips(&m)?;
        if req.is_some() || p.mac_address != before.mac_address {
            let net = network::load(ctx, &mut tx, &p.network_id).await?;
            let subnets = store::subnets_of(&mut tx, &net).await?;
            let mac = p.mac_address.clone();
            let req = req.or_else(|| Some(p.fixed_ips.iter().map(|f| (Some(f.subnet_id.clone()), Some(f.ip_address.clone()))).collect()));
            allocate_and_claim(&mut tx, &mut p, &subnets, ports, req, Some(&mac)).await?;
        }
        if let Some(ids) = body::opt_strings(&m, "security_groups")? {
            p.security_groups = groups(ctx, &mut tx, &ids).await?;
        } else if m.get("security_groups").is_some_and(Value::is_null) {
            p.security_groups.clear();
        }
        check_security(&p)?;
        p.std.touch();
        store::put(&mut tx, PORTS, &p.id, &p);
        store::replan_port(&mut tx, &p.id).await?;
        // Floating IPs follow the port's addresses.
        let ips: Vec<&str> = p.fixed_ips.iter().map(|f| f.ip_address.as_str()).collect();
        for mut f in fips_on(&mut tx, &p.id).await? {
            if f.fixed_ip_address.as_deref().is_none_or(|a| !ips.contains(&a)) {
                f.fixed_ip_address = p.fixed_ips.iter().find(|x| x.ip_address.parse::<std::net::Ipv4Addr>().is_ok()).map(|x| x.ip_address.clone());
                f.std.touch();
                store::put(&mut tx, FLOATINGIPS, &f.id, &f);
            }
        }
        let mut routers = routers_of(&mut tx, &before).await?;
        routers.extend(routers_of(&mut tx, &p).await?);
        routers.sort();
        routers.dedup();
        for r in routers {
            store::replan_router(&mut tx, &r).await?;
        }
        let active = store::port_active(&mut tx, &id).await?;
        Ok::<_, NeutronError>((p, active))
    })?;
    Ok(super::one(ctx, StatusCode::OK, "port", render(&p, active)))
}

pub async fn delete(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let p = load(ctx, &mut tx, &id).await?;
        if matches!(p.device_owner.as_str(), owner::ROUTER_INTERFACE | owner::ROUTER_GATEWAY | owner::FLOATING_IP) {
            return Err(NeutronError::conflict(
                "PortInUse",
                format!("Port {id} cannot be deleted directly via the port API: has device owner {}.", p.device_owner),
            ));
        }
        delete_in(&mut tx, &p).await
    })?;
    Ok(super::no_content())
}

/// Deletes a port in `tx`: disassociates its floating IPs, replans what
/// it touched.
pub async fn delete_in(tx: &mut Tx, p: &Port) -> NResult<()> {
    let routers = routers_of(tx, p).await?;
    for mut f in fips_on(tx, &p.id).await? {
        f.port_id = None;
        f.fixed_ip_address = None;
        f.router_id = None;
        f.status = "DOWN".into();
        f.std.touch();
        store::put(tx, FLOATINGIPS, &f.id, &f);
    }
    store::delete(tx, PORTS, &p.id).await?;
    store::replan_port(tx, &p.id).await?;
    for r in routers {
        store::replan_router(tx, &r).await?;
    }
    Ok(())
}
