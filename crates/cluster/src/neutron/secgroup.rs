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
use super::types::{SecurityGroup, SecurityGroupRule, Standard};
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

/// Neutron's words for these two, not the generic "could not be found".
pub fn not_found(id: &str) -> NeutronError {
    NeutronError::new(
        StatusCode::NOT_FOUND,
        "SecurityGroupNotFound",
        format!("Security group {id} does not exist"),
    )
}
fn rule_not_found(id: &str) -> NeutronError {
    NeutronError::new(
        StatusCode::NOT_FOUND,
        "SecurityGroupRuleNotFound",
        format!("Security group rule {id} does not exist"),
    )
}
fn default_exists() -> NeutronError {
    NeutronError::conflict(
        "SecurityGroupDefaultAlreadyExists",
        "Default security group already exists.",
    )
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
    // The marker names the project's default group (deleted with it).
    let marker = store::key("default_sg", project);
    if let Some(id) = tx.get_raw(&marker).await? {
        let id = String::from_utf8_lossy(&id).into_owned();
        if store::get::<SecurityGroup>(tx, SECURITY_GROUPS, &id).await?.is_some() {
            return Ok(id);
        }
    }
    // No marker (or a stale one): look among the project's own groups.
    for id in store::project_ids(tx, SECURITY_GROUPS, project).await? {
        if let Some(g) = store::get::<SecurityGroup>(tx, SECURITY_GROUPS, &id).await? {
            if g.project_id == project && g.name == "default" {
                return Ok(g.id);
            }
        }
    }
    let sg = group(project, "default", "Default security group");
    // The marker key (read above, so compared) makes two concurrent
    // creators conflict instead of both creating a default group.
    tx.put_raw(&marker, sg.id.clone().into_bytes());
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
    let rules = store::group_rules(&mut tx, &id).await?;
    Ok(super::one(&ctx, StatusCode::OK, "security_group", render(&g, &rules)))
}

/// A group body's attributes, checked before the group is looked up (as
/// Neutron validates a body before its plugin runs).
struct Attrs {
    name: Option<String>,
    description: Option<String>,
}

/// `name` is refused as `default` in any case, on create and on update
/// alike (neutron `_validate_name_not_default`, a 409): a project has one
/// default group, which `ensure_default` alone creates.
fn attrs(m: &Map<String, Value>) -> NResult<Attrs> {
    let name = body::string_max(m, "name", 255)?;
    if name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case("default")) {
        return Err(default_exists());
    }
    let description = body::string_max(m, "description", 255)?;
    if let Some(v) = body::opt_bool(m, "stateful")? {
        if !v {
            return Err(NeutronError::invalid(
                "stateful",
                "stateless security groups are not supported",
            ));
        }
    }
    Ok(Attrs { name, description })
}

impl Attrs {
    fn apply(self, g: &mut SecurityGroup) {
        if let Some(v) = self.name {
            g.name = v;
        }
        if let Some(v) = self.description {
            g.std.description = v;
        }
    }
}

pub async fn create(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "security_group", "security_groups")?;
    let mut groups = Vec::new();
    for m in &items {
        check_keys(m, CREATE)?;
        let mut g = group(&ctx.new_project(m)?, "", "");
        attrs(m)?.apply(&mut g);
        groups.push(g);
    }
    let ctx = &ctx;
    let rules = ntxn!(ctx.cluster, tx => {
        quota::check_many(&mut tx, groups.iter().map(|g| (g.project_id.as_str(), quota::Res::SecurityGroup))).await?;
        let mut rules = Vec::new();
        for g in &groups {
            ensure_default(&mut tx, &g.project_id).await?;
            create_group(&mut tx, g);
            store::replan_sg(&mut tx, &g.id).await?;
            rules.extend(store::group_rules(&mut tx, &g.id).await?);
        }
        Ok::<_, NeutronError>(rules)
    })?;
    let out: Vec<Value> = groups.iter().map(|g| render(g, &rules)).collect();
    Ok(created(ctx, "security_group", "security_groups", bulk, out))
}

pub async fn update(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "security_group")?;
    check_keys(&m, UPDATE)?;
    // Checked once, before the transaction: `attrs` is pure.
    attrs(&m)?;
    let ctx = &ctx;
    let (g, rules) = ntxn!(ctx.cluster, tx => {
        let mut g = load(ctx, &mut tx, &id).await?;
        // Any `name` at all, as Neutron (`'name' in s`).
        if g.name == "default" && m.contains_key("name") {
            return Err(NeutronError::conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed."));
        }
        attrs(&m)?.apply(&mut g);
        g.std.touch();
        store::put(&mut tx, SECURITY_GROUPS, &g.id, &g);
        store::replan_sg(&mut tx, &g.id).await?;
        let rules = store::group_rules(&mut tx, &g.id).await?;
        Ok::<_, NeutronError>((g, rules))
    })?;
    Ok(super::one(ctx, StatusCode::OK, "security_group", render(&g, &rules)))
}

pub async fn delete(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let g = load(ctx, &mut tx, &id).await?;
        if g.name == "default" && !ctx.is_admin() {
            return Err(NeutronError::conflict("SecurityGroupCannotRemoveDefault", "Insufficient rights for removing default security group."));
        }
        if store::any_by(&mut tx, PORTS, "security_groups", &id).await? {
            return Err(NeutronError::conflict("SecurityGroupInUse", format!("Security Group {id} in use.")));
        }
        // Its rules, and the other groups' rules that name it as remote.
        let mut rules = store::group_rules(&mut tx, &id).await?;
        let remote: Vec<SecurityGroupRule> =
            store::find_by(&mut tx, SECURITY_GROUP_RULES, "remote_group_id", &id).await?;
        rules.extend(remote.into_iter().filter(|r| r.security_group_id != id));
        let mut others = Vec::new();
        for r in rules {
            store::delete(&mut tx, SECURITY_GROUP_RULES, &r.id).await?;
            if r.security_group_id != id {
                others.push(r.security_group_id.clone());
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
//
// A rule is checked in Neutron's order, since a body with several faults
// gets the error of the first one Neutron would find:
//
//   API layer (attribute map order)       plugin (securitygroups_db.py)
//   security_group_id, direction given    IPv6 `icmp`/`icmpv6`/`1` → ipv6-icmp/58
//   direction in ingress|egress           1-65535 → no range
//   protocol converted                    ports valid for the protocol
//   port_range_min, _max converted        remote_ip_prefix matches ethertype
//   ethertype converted                   IPv6-only protocol not with IPv4
//   remote_ip_prefix converted            one remote at most
//                                         remote group exists (404)
//                                         security group exists (404)
//                                         no duplicate in the POST (409)
//                                         no duplicate in the group (409)
//
// Neutron's converters raise their own exception types, so a bad port is
// `SecurityGroupInvalidPortValue`, not the generic `Invalid input for ...`.

/// The protocol names accepted: Neutron's (neutron-lib `IP_PROTOCOL_MAP`)
/// that the translation knows. The few others (dccp, ipv6-frag, ...) are
/// refused by name (their numbers are accepted): a name the translation did
/// not know would match every protocol.
const PROTOCOL_NAMES: &[&str] = &[
    "ah",
    "egp",
    "esp",
    "gre",
    "icmp",
    "icmpv6",
    "igmp",
    "ipv6-encap",
    "ipv6-icmp",
    "ipv6-nonxt",
    "ospf",
    "pgm",
    "sctp",
    "tcp",
    "udp",
    "udplite",
    "vrrp",
];

/// Protocols whose rules take a port range (neutron `SG_PORT_PROTO_NUMS`):
/// dccp, tcp, udp, sctp, udplite.
const PORT_PROTOCOLS: &[u8] = &[33, 6, 17, 132, 136];

/// Protocols refused with ethertype IPv4 (neutron
/// `_validate_ethertype_and_protocol`), by name and by number.
const IPV6_ONLY: &[&str] = &[
    "ipv6-encap",
    "ipv6-frag",
    "ipv6-icmp",
    "icmpv6",
    "ipv6-nonxt",
    "ipv6-opts",
    "ipv6-route",
    "41",
    "44",
    "58",
    "59",
    "60",
    "43",
];

/// A 400 with Neutron's own exception type (an `InvalidInput` subclass).
fn bad(kind: &str, message: impl Into<String>) -> NeutronError {
    NeutronError::new(StatusCode::BAD_REQUEST, kind, message)
}

/// A JSON value as Python's `str()` shows it in Neutron's messages.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        v => v.to_string(),
    }
}

/// `protocol` (neutron `convert_protocol`): a name, a number in a string,
/// or a JSON integer, 0 to 255. A number is shown back as a string, as
/// Neutron stores it (`17` → `"17"`).
fn protocol(m: &Map<String, Value>) -> NResult<Option<String>> {
    let invalid = |p: String| {
        let names: Vec<String> = PROTOCOL_NAMES.iter().map(|n| format!("'{n}'")).collect();
        bad(
            "SecurityGroupRuleInvalidProtocol",
            format!(
                "Security group rule protocol {p} not supported. Only protocol values \
                 (None, 'any', {}) and integer representations [0 to 255] are supported.",
                names.join(", ")
            ),
        )
    };
    match m.get("protocol") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= 255 => Ok(Some(v.to_string())),
            _ => Err(invalid(n.to_string())),
        },
        // The empty string is not Neutron's (it refuses it) but this API
        // has always taken it for "any", and nothing is lost by keeping it.
        Some(Value::String(s)) if s.is_empty() || s.eq_ignore_ascii_case("any") => Ok(None),
        Some(Value::String(s)) => {
            if let Ok(v) = s.trim().parse::<i64>() {
                // Kept as the plain number: the translation reads it back.
                return match u8::try_from(v) {
                    Ok(v) => Ok(Some(v.to_string())),
                    Err(_) => Err(invalid(s.clone())),
                };
            }
            let name = s.to_ascii_lowercase();
            if PROTOCOL_NAMES.contains(&name.as_str()) {
                Ok(Some(name))
            } else {
                Err(invalid(s.clone()))
            }
        }
        Some(v) => Err(invalid(py_str(v))),
    }
}

/// `port_range_min`/`_max` (neutron `convert_validate_port_value`): an
/// integer or a number in a string, 0 to 65535.
fn port(m: &Map<String, Value>, k: &str) -> NResult<Option<u32>> {
    let invalid =
        |p: String| bad("SecurityGroupInvalidPortValue", format!("Invalid value for port {p}"));
    let v = match m.get(k) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid(n.to_string()))?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid(s.clone()))?,
        Some(v) => return Err(invalid(py_str(v))),
    };
    match u16::try_from(v) {
        Ok(v) => Ok(Some(u32::from(v))),
        Err(_) => Err(invalid(v.to_string())),
    }
}

/// `ethertype` (neutron `convert_ethertype_to_case_insensitive`); IPv4 when
/// absent, refused when `null`.
fn ethertype(m: &Map<String, Value>) -> NResult<&'static str> {
    match m.get("ethertype") {
        None => Ok("IPv4"),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("ipv4") => Ok("IPv4"),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("ipv6") => Ok("IPv6"),
        Some(v) => Err(bad(
            "SecurityGroupRuleInvalidEtherType",
            format!(
                "Security group rule for ethertype '{}' not supported. Allowed values are ['IPv4', 'IPv6'].",
                py_str(v)
            ),
        )),
    }
}

/// `remote_ip_prefix` (neutron `convert_ip_prefix_to_cidr`): an address,
/// or an address and a prefix length; host bits are kept.
fn ip_prefix(m: &Map<String, Value>) -> NResult<Option<(std::net::IpAddr, u8)>> {
    let p = match m.get("remote_ip_prefix") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(v) => py_str(v),
    };
    let invalid = || bad("InvalidCIDR", format!("Invalid CIDR {p} given as IP prefix."));
    if !m["remote_ip_prefix"].is_string() {
        return Err(invalid());
    }
    let (net, len) = match p.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (p.as_str(), None),
    };
    let ip: std::net::IpAddr = net.parse().map_err(|_| invalid())?;
    let max_len = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max_len,
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max_len).ok_or_else(invalid)?,
    };
    Ok(Some((ip, len)))
}

/// A port range for the rule's protocol (neutron `_validate_port_range`).
fn check_ports(protocol: Option<&str>, min: Option<u32>, max: Option<u32>) -> NResult<()> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let Some(p) = protocol else {
        return Err(bad(
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ));
    };
    match protocol_number(p) {
        Some(n) if PORT_PROTOCOLS.contains(&n) => {
            if min == Some(0) || max == Some(0) {
                return Err(bad("SecurityGroupInvalidPortValue", "Invalid value for port 0"));
            }
            match (min, max) {
                (Some(a), Some(b)) if a <= b => Ok(()),
                _ => Err(bad(
                    "SecurityGroupInvalidPortRange",
                    "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                )),
            }
        }
        Some(1) | Some(58) => {
            for (v, field, attr) in
                [(min, "type", "port_range_min"), (max, "code", "port_range_max")]
            {
                if let Some(v) = v.filter(|v| *v > 255) {
                    return Err(bad(
                        "SecurityGroupInvalidIcmpValue",
                        format!("Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."),
                    ));
                }
            }
            match (min, max) {
                (None, Some(code)) => Err(bad(
                    "SecurityGroupMissingIcmpType",
                    format!("ICMP code (port-range-max) {code} is provided but ICMP type (port-range-min) is missing."),
                )),
                _ => Ok(()),
            }
        }
        n => Err(bad(
            "SecurityGroupInvalidProtocolForPort",
            format!(
                "Ports cannot be specified for protocol {}. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE.",
                n.map_or_else(|| p.to_string(), |n| n.to_string())
            ),
        )),
    }
}

/// Checks a rule's attributes the way Neutron does (see the table above);
/// what needs the store (the groups, duplicates) is left to the caller.
fn build_rule(m: &Map<String, Value>, project: String) -> NResult<SecurityGroupRule> {
    for k in ["security_group_id", "direction"] {
        if !m.contains_key(k) {
            return Err(NeutronError::bad_request(format!(
                "Failed to parse request. Required attribute '{k}' not specified"
            )));
        }
    }
    // Any string up to a UUID's length: one that names no group is a 404,
    // as in Neutron, not a 400.
    let sg_id = body::string_max(m, "security_group_id", 36)?.ok_or_else(|| {
        NeutronError::invalid("security_group_id", "'None' is not a valid string")
    })?;
    let group = body::opt_string(m, "remote_group_id")?;
    let direction = match m.get("direction") {
        Some(Value::String(d)) if d == "ingress" || d == "egress" => d.clone(),
        d => {
            return Err(NeutronError::invalid(
                "direction",
                format!("'{}' is not in ['ingress', 'egress']", py_str(d.unwrap_or(&Value::Null))),
            ))
        }
    };
    let mut protocol = protocol(m)?;
    let mut min = port(m, "port_range_min")?;
    let mut max = port(m, "port_range_max")?;
    let ethertype = ethertype(m)?;
    let prefix = ip_prefix(m)?;
    let description = body::string_max(m, "description", 255)?;
    if body::opt_string(m, "remote_address_group_id")?.is_some() {
        return Err(NeutronError::invalid(
            "remote_address_group_id",
            "address groups are not supported",
        ));
    }

    // The plugin's checks, on the converted values.
    if ethertype == "IPv6" {
        match protocol.as_deref() {
            Some("icmp") | Some("icmpv6") => protocol = Some("ipv6-icmp".into()),
            Some("1") => protocol = Some("58".into()),
            _ => {}
        }
    }
    if (min, max) == (Some(1), Some(65535)) {
        (min, max) = (None, None);
    }
    check_ports(protocol.as_deref(), min, max)?;
    if let Some((ip, len)) = prefix {
        if ip.is_ipv4() != (ethertype == "IPv4") {
            return Err(bad(
                "SecurityGroupRuleParameterConflict",
                format!("Conflicting value ethertype {ethertype} for CIDR {ip}/{len}"),
            ));
        }
    }
    if let Some(p) = protocol.as_deref().filter(|p| ethertype == "IPv4" && IPV6_ONLY.contains(p)) {
        return Err(bad(
            "SecurityGroupEthertypeConflictWithProtocol",
            format!("Invalid ethertype {ethertype} for protocol {p}."),
        ));
    }
    if prefix.is_some() && group.is_some() {
        return Err(bad(
            "SecurityGroupMultipleRemoteEntites",
            "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.",
        ));
    }
    let mut std = Standard::new(String::new());
    if let Some(d) = description {
        std.description = d;
    }
    Ok(SecurityGroupRule {
        id: uuid::Uuid::new_v4().to_string(),
        security_group_id: sg_id,
        direction,
        ethertype: ethertype.into(),
        protocol,
        port_range_min: min,
        port_range_max: max,
        remote_ip_prefix: prefix.map(|(ip, len)| format!("{ip}/{len}")),
        normalized_cidr: prefix.map(|(ip, len)| normalize(ip, len)),
        remote_group_id: group,
        remote_address_group_id: None,
        tenant_id: project.clone(),
        project_id: project,
        std,
    })
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

/// The fields two rules must share to be the same rule (neutron
/// `_rule_to_key`): protocols compare by number, and a prefix of every
/// address is the same as none; prefixes otherwise compare as written
/// (host bits included).
fn same(a: &SecurityGroupRule, b: &SecurityGroupRule) -> bool {
    fn prefix(r: &SecurityGroupRule) -> Option<String> {
        let p = r.remote_ip_prefix.as_deref()?;
        match p.split_once('/').map(|(ip, len)| (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()))
        {
            Some((Ok(ip), Ok(0))) if ip.is_unspecified() => None,
            Some((Ok(ip), Ok(len))) => Some(format!("{ip}/{len}")),
            _ => Some(p.to_string()),
        }
    }
    a.security_group_id == b.security_group_id
        && a.direction == b.direction
        && a.ethertype == b.ethertype
        && a.protocol.as_deref().and_then(protocol_number)
            == b.protocol.as_deref().and_then(protocol_number)
        && a.port_range_min == b.port_range_min
        && a.port_range_max == b.port_range_max
        && prefix(a) == prefix(b)
        && a.remote_group_id == b.remote_group_id
        && a.remote_address_group_id == b.remote_address_group_id
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
        for m in &items {
            let r = build_rule(m, ctx.new_project(m)?)?;
            // A remote group that does not exist, whatever its form, is
            // a 404 like Neutron's (checked before the rule's own group).
            if let Some(g) = &r.remote_group_id {
                load(ctx, &mut tx, g).await?;
            }
            load(ctx, &mut tx, &r.security_group_id).await?;
            out.push(r);
        }
        for (i, r) in out.iter().enumerate() {
            if out[..i].iter().any(|e| same(e, r)) {
                return Err(NeutronError::conflict("DuplicateSecurityGroupRuleInPost", "Duplicate Security Group Rule in POST."));
            }
        }
        // `same` rules share their group: only the groups' own rules count.
        let mut existing: Vec<SecurityGroupRule> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for r in &out {
            if !seen.contains(&r.security_group_id.as_str()) {
                seen.push(&r.security_group_id);
                existing.extend(store::group_rules(&mut tx, &r.security_group_id).await?);
            }
        }
        for r in &out {
            if let Some(dup) = existing.iter().find(|e| same(e, r)) {
                return Err(NeutronError::conflict("SecurityGroupRuleExists", format!("Security group rule already exists. Rule id is {}.", dup.id)));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test bodies are objects"),
        }
    }

    fn rule(extra: Value) -> NResult<SecurityGroupRule> {
        let mut m = obj(json!({"security_group_id": "sg", "direction": "ingress"}));
        m.extend(obj(extra));
        build_rule(&m, "p".into())
    }

    #[test]
    fn every_accepted_protocol_name_is_one_the_translation_knows() {
        for n in PROTOCOL_NAMES {
            assert!(protocol_number(n).is_some(), "{n}");
        }
    }

    #[test]
    fn protocols_are_names_or_numbers_up_to_255() {
        let p = |v: Value| rule(json!({"protocol": v})).map(|r| r.protocol);
        assert_eq!(p(json!(17)).expect("int"), Some("17".into()));
        assert_eq!(p(json!(" 6")).expect("string"), Some("6".into()));
        assert_eq!(p(json!("TCP")).expect("name"), Some("tcp".into()));
        assert_eq!(p(json!("any")).expect("any"), None);
        for bad in [json!(256), json!(-1), json!(1.5), json!(false), json!([]), json!("x")] {
            let e = p(bad.clone()).expect_err("bad");
            assert_eq!(e.kind, "SecurityGroupRuleInvalidProtocol", "{bad}");
        }
    }

    #[test]
    fn ports_are_checked_before_the_protocol_decides_on_them() {
        let e = rule(json!({"protocol": "icmp", "port_range_min": -1})).expect_err("neg");
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("SecurityGroupInvalidPortValue", "Invalid value for port -1")
        );
        let e = rule(json!({"protocol": "tcp", "port_range_min": 5})).expect_err("half");
        assert_eq!(e.kind, "SecurityGroupInvalidPortRange");
        let r = rule(json!({"protocol": "tcp", "port_range_min": "1", "port_range_max": 65535}))
            .expect("all ports");
        assert_eq!((r.port_range_min, r.port_range_max), (None, None));
    }
}
