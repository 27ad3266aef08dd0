//! `/v2.0/security-groups` and `/v2.0/security-group-rules` → an address
//! group and two chains per group, an ACCEPT per rule; ports jump to them
//! after accepting return flows, so groups are stateful.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::body::{self, check_keys};
use super::error::{NResult, NeutronError};
use super::ipam::Cidr;
use super::network::created;
use super::store::{self, PORTS, SECURITY_GROUPS, SECURITY_GROUP_RULES};
use super::translate::protocol_number;
use super::types::{Port, SecurityGroup, SecurityGroupRule, Standard};
use super::{quota, NCtx};
use crate::db::Tx;
use crate::ntxn;

const CREATE: &[&str] = &["name", "description", "tenant_id", "project_id", "stateful"];
const UPDATE: &[&str] = &["name", "description", "stateful"];
const RULE_CREATE: &[&str] = &[
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
    "tenant_id",
    "project_id",
];

pub fn not_found(id: &str) -> NeutronError {
    NeutronError::not_found("SecurityGroupNotFound", "Security group", id)
}
fn rule_not_found(id: &str) -> NeutronError {
    NeutronError::not_found("SecurityGroupRuleNotFound", "Security group rule", id)
}

/// Loads a group the caller may see (404 otherwise).
pub async fn load(ctx: &NCtx, tx: &mut Tx, id: &str) -> NResult<SecurityGroup> {
    match store::get::<SecurityGroup>(tx, SECURITY_GROUPS, id).await? {
        Some(g) if ctx.owns(&g.project_id) => Ok(g),
        _ => Err(not_found(id)),
    }
}

fn new_rule(
    sg: &SecurityGroup,
    direction: &str,
    ethertype: &str,
    remote_group: Option<String>,
) -> SecurityGroupRule {
    SecurityGroupRule {
        id: uuid::Uuid::new_v4().to_string(),
        security_group_id: sg.id.clone(),
        direction: direction.into(),
        ethertype: ethertype.into(),
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote_ip_prefix: None,
        normalized_cidr: None,
        remote_group_id: remote_group,
        remote_address_group_id: None,
        tenant_id: sg.project_id.clone(),
        project_id: sg.project_id.clone(),
        std: Standard::new(String::new()),
    }
}

/// Creates a group with Neutron's default rules (egress to anywhere; the
/// `default` group also lets its own members in).
fn create_group(tx: &mut Tx, sg: &SecurityGroup) {
    let mut rules = Vec::new();
    for et in ["IPv4", "IPv6"] {
        rules.push(new_rule(sg, "egress", et, None));
        if sg.name == "default" {
            rules.push(new_rule(sg, "ingress", et, Some(sg.id.clone())));
        }
    }
    store::put(tx, SECURITY_GROUPS, &sg.id, sg);
    for r in &rules {
        store::put(tx, SECURITY_GROUP_RULES, &r.id, r);
    }
}

fn group(project: &str, name: &str, description: &str) -> SecurityGroup {
    SecurityGroup {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.into(),
        tenant_id: project.into(),
        project_id: project.into(),
        stateful: true,
        std: Standard::new(description.into()),
    }
}

/// The project's `default` group, created (with its rules) if missing.
pub async fn ensure_default(tx: &mut Tx, project: &str) -> NResult<String> {
    let groups: Vec<SecurityGroup> = store::all(tx, SECURITY_GROUPS).await?;
    if let Some(g) = groups.iter().find(|g| g.project_id == project && g.name == "default") {
        return Ok(g.id.clone());
    }
    let sg = group(project, "default", "Default security group");
    // The marker key makes two concurrent creators conflict instead of
    // both creating a default group.
    tx.get_raw(&store::key("default_sg", project)).await?;
    tx.put_raw(&store::key("default_sg", project), sg.id.clone().into_bytes());
    create_group(tx, &sg);
    store::replan_sg(tx, &sg.id).await?;
    Ok(sg.id)
}

fn render(sg: &SecurityGroup, rules: &[SecurityGroupRule]) -> Value {
    let mut v = serde_json::to_value(sg).unwrap_or_default();
    let mine: Vec<Value> = rules
        .iter()
        .filter(|r| r.security_group_id == sg.id)
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    v["security_group_rules"] = Value::Array(mine);
    v
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    if !ctx.is_admin() {
        let project = ctx.project();
        let c = &ctx;
        ntxn!(c.cluster, tx => ensure_default(&mut tx, &project).await)?;
    }
    let mut tx = ctx.tx();
    let rules: Vec<SecurityGroupRule> = store::all(&mut tx, SECURITY_GROUP_RULES).await?;
    let items: Vec<Value> = store::all::<SecurityGroup>(&mut tx, SECURITY_GROUPS)
        .await?
        .into_iter()
        .filter(|g| ctx.owns(&g.project_id))
        .map(|g| render(&g, &rules))
        .collect();
    super::list(&ctx, "security_groups", "security-groups", items)
}

pub async fn show(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let mut tx = ctx.tx();
    let g = load(&ctx, &mut tx, &id).await?;
    let rules: Vec<SecurityGroupRule> = store::all(&mut tx, SECURITY_GROUP_RULES).await?;
    Ok(super::one(&ctx, StatusCode::OK, "security_group", render(&g, &rules)))
}

fn apply(g: &mut SecurityGroup, m: &Map<String, Value>) -> NResult<()> {
    if let Some(v) = body::string_max(m, "name", 255)? {
        g.name = v;
    }
    if let Some(v) = body::string_max(m, "description", 255)? {
        g.std.description = v;
    }
    if let Some(v) = body::opt_bool(m, "stateful")? {
        if !v {
            return Err(NeutronError::invalid(
                "stateful",
                "stateless security groups are not supported",
            ));
        }
    }
    Ok(())
}

pub async fn create(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "security_group", "security_groups")?;
    let mut groups = Vec::new();
    for m in &items {
        check_keys(m, CREATE)?;
        let mut g = group(&ctx.new_project(m)?, "", "");
        apply(&mut g, m)?;
        groups.push(g);
    }
    let ctx = &ctx;
    let rules = ntxn!(ctx.cluster, tx => {
        quota::check_many(&mut tx, groups.iter().map(|g| (g.project_id.as_str(), quota::Res::SecurityGroup))).await?;
        for g in &groups {
            ensure_default(&mut tx, &g.project_id).await?;
            if g.name == "default" {
                return Err(NeutronError::conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists."));
            }
            create_group(&mut tx, g);
            store::replan_sg(&mut tx, &g.id).await?;
        }
        Ok::<_, NeutronError>(store::all::<SecurityGroupRule>(&mut tx, SECURITY_GROUP_RULES).await?)
    })?;
    let out: Vec<Value> = groups.iter().map(|g| render(g, &rules)).collect();
    Ok(created(ctx, "security_group", "security_groups", bulk, out))
}

pub async fn update(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "security_group")?;
    check_keys(&m, UPDATE)?;
    let ctx = &ctx;
    let (g, rules) = ntxn!(ctx.cluster, tx => {
        let mut g = load(ctx, &mut tx, &id).await?;
        if g.name == "default" && body::opt_string(&m, "name")?.is_some_and(|n| n != "default") {
            return Err(NeutronError::conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed."));
        }
        apply(&mut g, &m)?;
        g.std.touch();
        store::put(&mut tx, SECURITY_GROUPS, &g.id, &g);
        store::replan_sg(&mut tx, &g.id).await?;
        Ok::<_, NeutronError>((g, store::all::<SecurityGroupRule>(&mut tx, SECURITY_GROUP_RULES).await?))
    })?;
    Ok(super::one(ctx, StatusCode::OK, "security_group", render(&g, &rules)))
}

pub async fn delete(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let g = load(ctx, &mut tx, &id).await?;
        if g.name == "default" && !ctx.is_admin() {
            return Err(NeutronError::conflict("SecurityGroupCannotRemoveDefault", "Removing default security group not allowed."));
        }
        let ports: Vec<Port> = store::all(&mut tx, PORTS).await?;
        if ports.iter().any(|p| p.security_groups.contains(&id)) {
            return Err(NeutronError::conflict("SecurityGroupInUse", format!("Security Group {id} in use.")));
        }
        let mut others = Vec::new();
        for r in store::all::<SecurityGroupRule>(&mut tx, SECURITY_GROUP_RULES).await? {
            if r.security_group_id == id || r.remote_group_id.as_deref() == Some(id.as_str()) {
                store::delete(&mut tx, SECURITY_GROUP_RULES, &r.id).await?;
                if r.security_group_id != id {
                    others.push(r.security_group_id.clone());
                }
            }
        }
        if g.name == "default" {
            tx.delete(&store::key("default_sg", &g.project_id));
        }
        store::delete(&mut tx, SECURITY_GROUPS, &id).await?;
        store::replan_sg(&mut tx, &id).await?;
        others.sort();
        others.dedup();
        for o in others {
            store::replan_sg(&mut tx, &o).await?;
        }
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}

// ------------------------------------------------------------------ rules

/// Checks a rule's attributes the way Neutron does.
fn build_rule(
    m: &Map<String, Value>,
    sg: &SecurityGroup,
    project: String,
) -> NResult<SecurityGroupRule> {
    let direction = body::opt_string(m, "direction")?.ok_or_else(|| {
        NeutronError::bad_request(
            "Failed to parse request. Required attribute 'direction' not specified",
        )
    })?;
    if direction != "ingress" && direction != "egress" {
        return Err(NeutronError::invalid(
            "direction",
            format!("'{direction}' is not in ['ingress', 'egress']"),
        ));
    }
    let ethertype = body::opt_string(m, "ethertype")?.unwrap_or_else(|| "IPv4".into());
    let ethertype = match ethertype.to_ascii_lowercase().as_str() {
        "ipv4" => "IPv4".to_string(),
        "ipv6" => "IPv6".to_string(),
        _ => {
            return Err(NeutronError::invalid(
                "ethertype",
                format!("'{ethertype}' is not in ['IPv4', 'IPv6']"),
            ))
        }
    };
    let protocol = match body::opt_string(m, "protocol")?
        .or_else(|| m.get("protocol").and_then(Value::as_u64).map(|n| n.to_string()))
    {
        None => None,
        Some(p) if p.is_empty() || p.eq_ignore_ascii_case("any") => None,
        Some(p) => {
            protocol_number(&p).ok_or_else(|| {
                NeutronError::new(
                    StatusCode::BAD_REQUEST,
                    "SecurityGroupRuleInvalidProtocol",
                    format!("Security group rule protocol {p} not supported. Only protocol values [None, tcp, udp, icmp, ...] and integer representations [0 to 255] are supported."),
                )
            })?;
            Some(p.to_ascii_lowercase())
        }
    };
    let num = protocol.as_deref().and_then(protocol_number);
    let min = body::opt_int(m, "port_range_min")?;
    let max = body::opt_int(m, "port_range_max")?;
    let icmp = matches!(num, Some(1) | Some(58));
    let ported = matches!(num, Some(6) | Some(17) | Some(132) | Some(33) | Some(136));
    if (min.is_some() || max.is_some()) && !icmp && !ported {
        return Err(NeutronError::new(
            StatusCode::BAD_REQUEST,
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ));
    }
    if icmp {
        if let Some(t) = min {
            if !(0..=255).contains(&t) {
                return Err(NeutronError::new(
                    StatusCode::BAD_REQUEST,
                    "SecurityGroupInvalidIcmpValue",
                    format!(
                        "Invalid value for ICMP port_range_min(type): {t}. It must be 0 to 255."
                    ),
                ));
            }
        }
        if let Some(c) = max {
            if !(0..=255).contains(&c) {
                return Err(NeutronError::new(
                    StatusCode::BAD_REQUEST,
                    "SecurityGroupInvalidIcmpValue",
                    format!(
                        "Invalid value for ICMP port_range_max(code): {c}. It must be 0 to 255."
                    ),
                ));
            }
            if min.is_none() {
                return Err(NeutronError::new(StatusCode::BAD_REQUEST, "SecurityGroupMissingIcmpType", format!("ICMP code (port-range-max) {c} is provided but ICMP type (port-range-min) is missing.")));
            }
        }
    } else if ported {
        for (k, v) in [("port_range_min", min), ("port_range_max", max)] {
            if let Some(v) = v {
                if !(1..=65535).contains(&v) {
                    return Err(NeutronError::invalid(
                        k,
                        format!("'{v}' is not in range 1 through 65535"),
                    ));
                }
            }
        }
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                return Err(NeutronError::new(
                    StatusCode::BAD_REQUEST,
                    "SecurityGroupInvalidPortRange",
                    "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                ));
            }
        }
    }
    let prefix = body::opt_string(m, "remote_ip_prefix")?;
    let group = body::opt_uuid(m, "remote_group_id")?;
    if body::opt_string(m, "remote_address_group_id")?.is_some() {
        return Err(NeutronError::invalid(
            "remote_address_group_id",
            "address groups are not supported",
        ));
    }
    if prefix.is_some() && group.is_some() {
        return Err(NeutronError::new(
            StatusCode::BAD_REQUEST,
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
            "Only remote_ip_prefix or remote_group_id may be provided.",
        ));
    }
    let normalized = match &prefix {
        None => None,
        Some(p) => {
            let (net, len) = match p.split_once('/') {
                Some((a, l)) => (a, l),
                None => (p.as_str(), if p.contains(':') { "128" } else { "32" }),
            };
            let ip: std::net::IpAddr = net.parse().map_err(|_| {
                NeutronError::invalid("remote_ip_prefix", format!("'{p}' is not a valid IP subnet"))
            })?;
            let len: u8 = len.parse().map_err(|_| {
                NeutronError::invalid("remote_ip_prefix", format!("'{p}' is not a valid IP subnet"))
            })?;
            if ip.is_ipv4() != (ethertype == "IPv4") {
                return Err(NeutronError::new(
                    StatusCode::BAD_REQUEST,
                    "SecurityGroupRuleParameterConflict",
                    format!("Conflicting value ethertype {ethertype} for CIDR {p}"),
                ));
            }
            let max_len = if ip.is_ipv4() { 32 } else { 128 };
            if len > max_len {
                return Err(NeutronError::invalid(
                    "remote_ip_prefix",
                    format!("'{p}' is not a valid IP subnet"),
                ));
            }
            Some(normalize(ip, len))
        }
    };
    let mut r = new_rule(sg, &direction, &ethertype, group);
    r.tenant_id = project.clone();
    r.project_id = project;
    r.protocol = protocol;
    r.port_range_min = min.map(|v| v as u32);
    r.port_range_max = if ported && min.is_some() && max.is_none() {
        min.map(|v| v as u32)
    } else {
        max.map(|v| v as u32)
    };
    r.remote_ip_prefix =
        prefix.map(|p| if p.contains('/') { p } else { normalized.clone().unwrap_or(p) });
    r.normalized_cidr = normalized;
    if let Some(d) = body::string_max(m, "description", 255)? {
        r.std.description = d;
    }
    Ok(r)
}

/// `10.0.0.5/24` → `10.0.0.0/24`.
fn normalize(ip: std::net::IpAddr, len: u8) -> String {
    let max_len = if ip.is_ipv4() { 32u32 } else { 128 };
    let v = super::ipam::to_u128(ip);
    let host = max_len - u32::from(len);
    let masked = if host >= 128 { 0 } else { (v >> host) << host };
    let net: std::net::IpAddr = if ip.is_ipv4() {
        std::net::Ipv4Addr::from(masked as u32).into()
    } else {
        std::net::Ipv6Addr::from(masked).into()
    };
    let c = Cidr { net, len };
    c.to_string()
}

/// The fields two rules must share to be the same rule.
fn same(a: &SecurityGroupRule, b: &SecurityGroupRule) -> bool {
    a.security_group_id == b.security_group_id
        && a.direction == b.direction
        && a.ethertype == b.ethertype
        && a.protocol.as_deref().and_then(protocol_number)
            == b.protocol.as_deref().and_then(protocol_number)
        && a.port_range_min == b.port_range_min
        && a.port_range_max == b.port_range_max
        && a.normalized_cidr == b.normalized_cidr
        && a.remote_group_id == b.remote_group_id
}

pub async fn list_rules(ctx: NCtx) -> NResult<Response> {
    let mut tx = ctx.tx();
    let items: Vec<Value> = store::all::<SecurityGroupRule>(&mut tx, SECURITY_GROUP_RULES)
        .await?
        .into_iter()
        .filter(|r| ctx.owns(&r.project_id))
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    super::list(&ctx, "security_group_rules", "security-group-rules", items)
}

pub async fn show_rule(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let mut tx = ctx.tx();
    let r = match store::get::<SecurityGroupRule>(&mut tx, SECURITY_GROUP_RULES, &id).await? {
        Some(r) if ctx.owns(&r.project_id) => r,
        _ => return Err(rule_not_found(&id)),
    };
    Ok(super::one(
        &ctx,
        StatusCode::OK,
        "security_group_rule",
        serde_json::to_value(r).unwrap_or_default(),
    ))
}

pub async fn create_rule(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "security_group_rule", "security_group_rules")?;
    for m in &items {
        check_keys(m, RULE_CREATE)?;
    }
    let ctx = &ctx;
    let rules = ntxn!(ctx.cluster, tx => {
        let mut out: Vec<SecurityGroupRule> = Vec::new();
        let existing: Vec<SecurityGroupRule> = store::all(&mut tx, SECURITY_GROUP_RULES).await?;
        for m in &items {
            let sg_id = body::opt_uuid(m, "security_group_id")?.ok_or_else(|| {
                NeutronError::bad_request("Failed to parse request. Required attribute 'security_group_id' not specified")
            })?;
            let sg = load(ctx, &mut tx, &sg_id).await?;
            let project = ctx.new_project(m)?;
            let r = build_rule(m, &sg, project)?;
            if let Some(g) = &r.remote_group_id {
                load(ctx, &mut tx, g).await?;
            }
            if let Some(dup) = existing.iter().chain(out.iter()).find(|e| same(e, &r)) {
                return Err(NeutronError::conflict("SecurityGroupRuleExists", format!("Security group rule already exists. Rule id is {}.", dup.id)));
            }
            out.push(r);
        }
        quota::check_many(&mut tx, out.iter().map(|r| (r.project_id.as_str(), quota::Res::SecurityGroupRule))).await?;
        let mut groups = Vec::new();
        for r in &out {
            store::put(&mut tx, SECURITY_GROUP_RULES, &r.id, r);
            groups.push(r.security_group_id.clone());
        }
        groups.sort();
        groups.dedup();
        for g in groups {
            store::replan_sg(&mut tx, &g).await?;
        }
        Ok::<_, NeutronError>(out)
    })?;
    let out: Vec<Value> =
        rules.into_iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect();
    Ok(created(ctx, "security_group_rule", "security_group_rules", bulk, out))
}

pub async fn delete_rule(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let r = match store::get::<SecurityGroupRule>(&mut tx, SECURITY_GROUP_RULES, &id).await? {
            Some(r) if ctx.owns(&r.project_id) => r,
            _ => return Err(rule_not_found(&id)),
        };
        store::delete(&mut tx, SECURITY_GROUP_RULES, &id).await?;
        store::replan_sg(&mut tx, &r.security_group_id).await?;
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}
