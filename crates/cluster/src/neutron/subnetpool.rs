//! `/v2.0/subnetpools` (the `subnet_allocation` extension): prefixes that
//! subnets take their CIDRs from, checked and allocated as Neutron's
//! `ipam/subnet_alloc.py` does.
//!
//! ```text
//!  POST /v2.0/subnets {subnetpool_id, prefixlen?}      no cidr: the first free /prefixlen
//!  POST /v2.0/subnets {subnetpool_id, cidr}            the cidr, if free in the pool
//!        └─ in the subnet's create transaction:
//!           get pool ─► checks (version, min..max, quota) ─► ipam::free_blocks
//!           ─► pool._allocations += (subnet, cidr) ─► put pool, put subnet
//!  DELETE /v2.0/subnets/{id}                           its allocation goes (release)
//!  DELETE /v2.0/subnetpools/{id}                       400 while it has allocations
//! ```
//!
//! A pool holds no addresses itself: it is a Neutron object only, with no
//! MidoNet translation. Its allocations live in the pool object, so every
//! allocation and release rewrites it; concurrent allocations from one
//! pool (on this node or another) conflict on commit and the loser retries
//! seeing the winner's CIDR, which a scan of the subnets could not ensure.
//! A pool is a project's; shared pools are seen (and allocated from) by
//! every project, and only admins share one or make one a default.
//!
//! Defaults and bounds follow Neutron: `min_prefixlen` 8 (IPv4) or 64
//! (IPv6), `max_prefixlen` the address size, `default_prefixlen` the
//! minimum; `min <= default <= max <= 32|128`, else
//! `IllegalSubnetPoolPrefixBounds`. Neutron does not compare the bounds
//! with the prefixes' own lengths, and neither does this: a /16 pool with
//! the default /8 `default_prefixlen` refuses a subnet without
//! `prefixlen` for want of space, as Neutron's does.
//!
//! Two of Neutron's answers are kept although they look odd: deleting a
//! pool in use is a 400 `SubnetPoolDeleteError` (not a 409), and a
//! `default_quota` of 0 means no limit. Neutron answers
//! `SubnetAllocationError` with a 500 (it maps to no HTTP class there);
//! here it is a 409, the pool's state being what refuses the request.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::body::{self, check_keys};
use super::error::{NResult, NeutronError};
use super::ipam::{self, Cidr};
use super::network::created;
use super::store::{self, SUBNETPOOLS};
use super::types::{Allocation, Standard, Subnet, SubnetPool};
use super::NCtx;
use crate::db::Tx;
use crate::ntxn;

const CREATE: &[&str] = &[
    "name",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "default_quota",
    "shared",
    "is_default",
    "address_scope_id",
    "description",
    "tenant_id",
    "project_id",
];
const UPDATE: &[&str] = &[
    "name",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "default_quota",
    "is_default",
    "address_scope_id",
    "description",
];
const READ_ONLY: &[&str] = &["id", "ip_version", "shared", "tenant_id", "project_id"];

pub fn not_found(id: &str) -> NeutronError {
    NeutronError::not_found("SubnetPoolNotFound", "Subnet pool", id)
}

/// Whether the caller sees the pool: its own, and shared ones.
pub fn visible(ctx: &NCtx, p: &SubnetPool) -> bool {
    ctx.owns(&p.project_id) || p.shared
}

/// Loads a pool the caller may see (404 otherwise).
pub async fn load(ctx: &NCtx, tx: &mut Tx, id: &str) -> NResult<SubnetPool> {
    match store::get::<SubnetPool>(tx, SUBNETPOOLS, id).await? {
        Some(p) if visible(ctx, &p) => Ok(p),
        _ => Err(not_found(id)),
    }
}

fn bad(kind: &str, message: impl Into<String>) -> NeutronError {
    NeutronError::new(StatusCode::BAD_REQUEST, kind, message)
}

/// The address size and Neutron's default `min_prefixlen` of a version.
fn version_bounds(v4: bool) -> (i64, i64) {
    if v4 {
        (32, 8)
    } else {
        (128, 64)
    }
}

/// The `prefixes` of a body: valid CIDRs of one version, at least one.
fn prefixes_of(m: &Map<String, Value>) -> NResult<Option<Vec<Cidr>>> {
    let Some(list) = body::opt_strings(m, "prefixes")? else { return Ok(None) };
    let cidrs = list
        .iter()
        .map(|c| Cidr::parse(c).map_err(|e| NeutronError::invalid("prefixes", e)))
        .collect::<NResult<Vec<_>>>()?;
    let Some(first) = cidrs.first() else {
        return Err(bad("EmptySubnetPoolPrefixList", "Empty subnet pool prefix list."));
    };
    if cidrs.iter().any(|c| c.is_v4() != first.is_v4()) {
        return Err(mixed_versions());
    }
    Ok(Some(cidrs))
}

fn mixed_versions() -> NeutronError {
    bad("PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
}

/// A prefix length or quota: a non-negative integer.
fn non_negative(m: &Map<String, Value>, k: &str) -> NResult<Option<i64>> {
    match body::opt_int(m, k)? {
        Some(v) if v < 0 => Err(NeutronError::invalid(k, format!("'{v}' should be non-negative"))),
        v => Ok(v),
    }
}

fn illegal_bounds(kind: &str, len: i64, base: &str, base_len: i64) -> NeutronError {
    bad(
        "IllegalSubnetPoolPrefixBounds",
        format!("Illegal prefix bounds: {kind}={len}, {base}={base_len}."),
    )
}

/// Neutron's `SubnetPoolHelper` checks, in its order.
fn check_bounds(min: i64, max: i64, default: i64, bits: i64) -> NResult<()> {
    if min > max {
        return Err(illegal_bounds("min_prefixlen", min, "max_prefixlen", max));
    }
    if max > bits {
        return Err(illegal_bounds("max_prefixlen", max, "ip_version_max", bits));
    }
    if default < min {
        return Err(illegal_bounds("default_prefixlen", default, "min_prefixlen", min));
    }
    if default > max {
        return Err(illegal_bounds("default_prefixlen", default, "max_prefixlen", max));
    }
    Ok(())
}

/// `address_scope_id` may only be null: without the address-scope
/// extension Neutron does not know the attribute at all.
fn check_address_scope(m: &Map<String, Value>) -> NResult<()> {
    match m.get("address_scope_id") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(NeutronError::bad_request("Unrecognized attribute(s) 'address_scope_id'")),
    }
}

/// `default_quota`: absent, null (no limit) or a non-negative integer.
fn quota_of(m: &Map<String, Value>) -> NResult<Option<Option<i64>>> {
    match m.get("default_quota") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(_) => Ok(Some(non_negative(m, "default_quota")?)),
    }
}

fn names(p: &mut SubnetPool, m: &Map<String, Value>) -> NResult<()> {
    if let Some(v) = body::string_max(m, "name", 255)? {
        p.name = v;
    }
    if let Some(v) = body::string_max(m, "description", 255)? {
        p.std.description = v;
    }
    Ok(())
}

fn shown(prefixes: &[Cidr]) -> Vec<String> {
    ipam::compact(prefixes).iter().map(ToString::to_string).collect()
}

fn parse_all(list: &[String]) -> Vec<Cidr> {
    list.iter().filter_map(|c| Cidr::parse(c).ok()).collect()
}

fn build(ctx: &NCtx, m: &Map<String, Value>) -> NResult<SubnetPool> {
    check_keys(m, CREATE)?;
    check_address_scope(m)?;
    let prefixes = prefixes_of(m)?.ok_or_else(|| {
        NeutronError::bad_request(
            "Failed to parse request. Required attribute 'prefixes' not specified",
        )
    })?;
    let v4 = prefixes[0].is_v4();
    let (bits, default_min) = version_bounds(v4);
    let min = non_negative(m, "min_prefixlen")?.unwrap_or(default_min);
    let max = non_negative(m, "max_prefixlen")?.unwrap_or(bits);
    let default = non_negative(m, "default_prefixlen")?.unwrap_or(min);
    check_bounds(min, max, default, bits)?;
    let shared = body::opt_bool(m, "shared")?.unwrap_or(false);
    let is_default = body::opt_bool(m, "is_default")?.unwrap_or(false);
    for (attr, on) in [("shared", shared), ("is_default", is_default)] {
        if on && !ctx.is_admin() {
            return Err(NeutronError::forbidden(format!(
                "(rule:create_subnetpool:{attr}) is disallowed by policy"
            )));
        }
    }
    let project = ctx.new_project(m)?;
    let mut p = SubnetPool {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        tenant_id: project.clone(),
        project_id: project,
        prefixes: shown(&prefixes),
        ip_version: if v4 { 4 } else { 6 },
        // check_bounds holds them to 0..=128.
        default_prefixlen: default as u8,
        min_prefixlen: min as u8,
        max_prefixlen: max as u8,
        default_quota: quota_of(m)?.flatten(),
        shared,
        is_default,
        address_scope_id: None,
        std: Standard::new(String::new()),
        allocations: Vec::new(),
    };
    names(&mut p, m)?;
    Ok(p)
}

/// An update's changes: prefixes may grow, never shrink; the bounds are
/// checked again with the values they leave.
fn apply_update(p: &mut SubnetPool, m: &Map<String, Value>) -> NResult<()> {
    names(p, m)?;
    if let Some(new) = prefixes_of(m)? {
        if new[0].version() != p.ip_version {
            return Err(mixed_versions());
        }
        if !ipam::covers(&new, &parse_all(&p.prefixes)) {
            return Err(bad(
                "IllegalSubnetPoolPrefixUpdate",
                "Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes.",
            ));
        }
        p.prefixes = shown(&new);
    }
    let (bits, _) = version_bounds(p.ip_version == 4);
    let min = non_negative(m, "min_prefixlen")?.unwrap_or(i64::from(p.min_prefixlen));
    let max = non_negative(m, "max_prefixlen")?.unwrap_or(i64::from(p.max_prefixlen));
    let default = non_negative(m, "default_prefixlen")?.unwrap_or(i64::from(p.default_prefixlen));
    check_bounds(min, max, default, bits)?;
    (p.min_prefixlen, p.max_prefixlen, p.default_prefixlen) = (min as u8, max as u8, default as u8);
    if let Some(q) = quota_of(m)? {
        p.default_quota = q;
    }
    if let Some(d) = body::opt_bool(m, "is_default")? {
        p.is_default = d;
    }
    Ok(())
}

/// One default pool per IP version (Neutron's `InvalidInput`).
async fn check_one_default(tx: &mut Tx, p: &SubnetPool) -> NResult<()> {
    if !p.is_default {
        return Ok(());
    }
    let pools: Vec<SubnetPool> = store::all(tx, SUBNETPOOLS).await?;
    if pools.iter().any(|o| o.id != p.id && o.is_default && o.ip_version == p.ip_version) {
        return Err(NeutronError::invalid_input(
            "A default subnetpool for this IP family has already been set. Only one default may exist per IP family",
        ));
    }
    Ok(())
}

fn render(p: &SubnetPool) -> Value {
    serde_json::to_value(p).unwrap_or_default()
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    let mut tx = ctx.tx();
    let items: Vec<Value> = store::all::<SubnetPool>(&mut tx, SUBNETPOOLS)
        .await?
        .iter()
        .filter(|p| visible(&ctx, p))
        .map(render)
        .collect();
    super::list(&ctx, "subnetpools", "subnetpools", items)
}

pub async fn show(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let p = load(&ctx, &mut ctx.tx(), &id).await?;
    Ok(super::one(&ctx, StatusCode::OK, "subnetpool", render(&p)))
}

pub async fn create(ctx: NCtx, body: Bytes) -> NResult<Response> {
    let (items, bulk) = body::envelope(&body, "subnetpool", "subnetpools")?;
    let pools = items.iter().map(|m| build(&ctx, m)).collect::<NResult<Vec<_>>>()?;
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        // Written one by one, so a later pool of the batch sees the
        // earlier ones (two defaults of one version in a batch are refused).
        for p in &pools {
            check_one_default(&mut tx, p).await?;
            store::put(&mut tx, SUBNETPOOLS, &p.id, p);
        }
        Ok::<_, NeutronError>(())
    })?;
    Ok(created(ctx, "subnetpool", "subnetpools", bulk, pools.iter().map(render).collect()))
}

pub async fn update(ctx: NCtx, Path(id): Path<String>, body: Bytes) -> NResult<Response> {
    let m = body::update_envelope(&body, "subnetpool")?;
    for ro in READ_ONLY {
        if m.contains_key(*ro) {
            return Err(NeutronError::bad_request(format!(
                "Cannot update read-only attribute {ro}"
            )));
        }
    }
    check_keys(&m, UPDATE)?;
    check_address_scope(&m)?;
    let ctx = &ctx;
    let p = ntxn!(ctx.cluster, tx => {
        let mut p = load(ctx, &mut tx, &id).await?;
        if !ctx.owns(&p.project_id) {
            return Err(not_found(&id));
        }
        let was_default = p.is_default;
        apply_update(&mut p, &m)?;
        if p.is_default != was_default && !ctx.is_admin() {
            return Err(NeutronError::forbidden(
                "(rule:update_subnetpool:is_default) is disallowed by policy",
            ));
        }
        check_one_default(&mut tx, &p).await?;
        p.std.touch();
        store::put(&mut tx, SUBNETPOOLS, &p.id, &p);
        Ok::<_, NeutronError>(p)
    })?;
    Ok(super::one(ctx, StatusCode::OK, "subnetpool", render(&p)))
}

pub async fn delete(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let p = load(ctx, &mut tx, &id).await?;
        if !ctx.owns(&p.project_id) {
            return Err(not_found(&id));
        }
        if !p.allocations.is_empty() {
            return Err(bad(
                "SubnetPoolDeleteError",
                "Unable to delete subnet pool: Subnet pool has existing allocations.",
            ));
        }
        store::delete(&mut tx, SUBNETPOOLS, &id).await?;
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}

// ------------------------------------------------------------ allocation

/// What a subnet create asks of a pool.
#[derive(Debug, Clone)]
pub struct Request {
    /// `None`: the default pool of the version (`use_default_subnetpool`).
    pub pool_id: Option<String>,
    /// A specific CIDR, or any free one of `prefixlen` (else the pool's
    /// `default_prefixlen`).
    pub cidr: Option<Cidr>,
    pub prefixlen: Option<i64>,
    /// The body's `ip_version`, if given.
    pub ip_version: Option<u8>,
}

fn allocation_error(reason: impl std::fmt::Display) -> NeutronError {
    NeutronError::conflict("SubnetAllocationError", format!("Failed to allocate subnet: {reason}."))
}

/// The pool a request names, or the default one of its version.
async fn pool_of(ctx: &NCtx, tx: &mut Tx, req: &Request) -> NResult<SubnetPool> {
    if let Some(id) = &req.pool_id {
        return load(ctx, tx, id).await;
    }
    let version = match (req.cidr, req.ip_version) {
        (Some(c), _) => c.version(),
        (None, Some(v)) => v,
        (None, None) => {
            return Err(NeutronError::bad_resource(
                "subnets",
                "ip_version must be specified in the absence of cidr and subnetpool_id",
            ))
        }
    };
    let pools: Vec<SubnetPool> = store::all(tx, SUBNETPOOLS).await?;
    pools
        .into_iter()
        .find(|p| p.is_default && p.ip_version == version && visible(ctx, p))
        .ok_or_else(|| {
            NeutronError::bad_resource(
                "subnets",
                format!("No default subnetpool found for IPv{version}"),
            )
        })
}

/// Takes the subnet's CIDR from its pool, inside the subnet's create
/// transaction: checks the request against the pool (version, prefix
/// length bounds, the project's quota), picks or checks the CIDR against
/// the pool's free space and records it in the pool. Returns the CIDR and
/// the pool's id.
pub async fn allocate(
    ctx: &NCtx,
    tx: &mut Tx,
    req: &Request,
    subnet_id: &str,
    project: &str,
) -> NResult<(Cidr, String)> {
    let mut p = pool_of(ctx, tx, req).await?;
    let version = req.cidr.map(|c| c.version()).or(req.ip_version);
    if let Some(v) = version.filter(|v| *v != p.ip_version) {
        return Err(NeutronError::bad_resource(
            "subnets",
            format!("Cannot allocate IPv{v} subnet from IPv{} subnet pool", p.ip_version),
        ));
    }
    let len = match (req.cidr, req.prefixlen) {
        (Some(c), _) => i64::from(c.len),
        (None, Some(l)) => l,
        (None, None) => i64::from(p.default_prefixlen),
    };
    if len > i64::from(p.max_prefixlen) {
        return Err(bad(
            "MaxPrefixSubnetAllocationError",
            format!(
                "Unable to allocate subnet with prefix length {len}, maximum allowed prefix is {}.",
                p.max_prefixlen
            ),
        ));
    }
    if len < i64::from(p.min_prefixlen) {
        return Err(bad(
            "MinPrefixSubnetAllocationError",
            format!(
                "Unable to allocate subnet with prefix length {len}, minimum allowed prefix is {}.",
                p.min_prefixlen
            ),
        ));
    }
    // min..=max lies within 0..=128 (checked when the pool was written).
    let len = len as u8;
    if let Some(quota) = p.default_quota.filter(|q| *q > 0) {
        let unit: i32 = if p.ip_version == 4 { 32 } else { 64 };
        let units = |l: u8| 2f64.powi(unit - i32::from(l));
        let used: f64 = p
            .allocations
            .iter()
            .filter(|a| a.project_id == project)
            .filter_map(|a| Cidr::parse(&a.cidr).ok())
            .map(|c| units(c.len))
            .sum();
        if used + units(len) > quota as f64 {
            return Err(NeutronError::conflict(
                "SubnetPoolQuotaExceeded",
                "Per-tenant subnet pool prefix quota exceeded.",
            ));
        }
    }
    let prefixes = parse_all(&p.prefixes);
    let used: Vec<Cidr> = p.allocations.iter().filter_map(|a| Cidr::parse(&a.cidr).ok()).collect();
    let cidr = match req.cidr {
        Some(c) if ipam::is_free(&prefixes, &used, &c) => c,
        Some(_) => {
            return Err(allocation_error(
                "Cannot allocate requested subnet from the available set of prefixes",
            ))
        }
        None => ipam::allocate_prefix(&prefixes, &used, len).ok_or_else(|| {
            allocation_error(format!("Insufficient prefix space to allocate subnet size /{len}"))
        })?,
    };
    p.allocations.push(Allocation {
        subnet_id: subnet_id.to_string(),
        cidr: cidr.to_string(),
        project_id: project.to_string(),
    });
    store::put(tx, SUBNETPOOLS, &p.id, &p);
    Ok((cidr, p.id))
}

/// Gives a deleted subnet's CIDR back to its pool.
pub async fn release(tx: &mut Tx, s: &Subnet) -> NResult<()> {
    let Some(id) = &s.subnetpool_id else { return Ok(()) };
    if let Some(mut p) = store::get::<SubnetPool>(tx, SUBNETPOOLS, id).await? {
        p.allocations.retain(|a| a.subnet_id != s.id);
        store::put(tx, SUBNETPOOLS, &p.id, &p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_in_neutrons_order() {
        check_bounds(8, 32, 8, 32).expect("defaults");
        check_bounds(64, 128, 64, 128).expect("v6 defaults");
        let e = check_bounds(24, 16, 24, 32).expect_err("min > max");
        assert_eq!(e.kind, "IllegalSubnetPoolPrefixBounds");
        assert_eq!(e.message, "Illegal prefix bounds: min_prefixlen=24, max_prefixlen=16.");
        let e = check_bounds(8, 33, 8, 32).expect_err("max > 32");
        assert_eq!(e.message, "Illegal prefix bounds: max_prefixlen=33, ip_version_max=32.");
        let e = check_bounds(16, 28, 8, 32).expect_err("default < min");
        assert!(e.message.contains("default_prefixlen=8, min_prefixlen=16"), "{}", e.message);
        let e = check_bounds(16, 28, 30, 32).expect_err("default > max");
        assert!(e.message.contains("default_prefixlen=30, max_prefixlen=28"), "{}", e.message);
    }
}
