//! `/v2.0/quotas`: per-project limits, checked in the transaction of
//! every create (Neutron's defaults unless set; -1 is unlimited).
//!
//! The count a create reads (the project's index entries) is not compared
//! on commit, so creates running at once could together pass a limit.
//! Every create under a limit therefore reads the project's guard key for
//! the resource (before the count), and those that would bring the
//! project within [`SLACK`] objects of its limit also write it: near the
//! limit creates conflict and are retried one after the other, each
//! seeing the others' objects, while far from it they only read the key
//! and do not conflict with each other. Passing the limit would take more
//! than `SLACK` creates of one project committing at once.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::body::{self, check_keys};
use super::error::{NResult, NeutronError};
use super::store::{self, QUOTAS};
use super::types::Quota;
use super::NCtx;
use crate::db::Tx;
use crate::ntxn;

/// A counted resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Res {
    Network,
    Subnet,
    Port,
    Router,
    FloatingIp,
    SecurityGroup,
    SecurityGroupRule,
}

impl Res {
    fn name(self) -> &'static str {
        match self {
            Res::Network => "network",
            Res::Subnet => "subnet",
            Res::Port => "port",
            Res::Router => "router",
            Res::FloatingIp => "floatingip",
            Res::SecurityGroup => "security_group",
            Res::SecurityGroupRule => "security_group_rule",
        }
    }
    fn collection(self) -> &'static str {
        match self {
            Res::Network => store::NETWORKS,
            Res::Subnet => store::SUBNETS,
            Res::Port => store::PORTS,
            Res::Router => store::ROUTERS,
            Res::FloatingIp => store::FLOATINGIPS,
            Res::SecurityGroup => store::SECURITY_GROUPS,
            Res::SecurityGroupRule => store::SECURITY_GROUP_RULES,
        }
    }
    fn limit(self, q: &Quota) -> i64 {
        match self {
            Res::Network => q.network,
            Res::Subnet => q.subnet,
            Res::Port => q.port,
            Res::Router => q.router,
            Res::FloatingIp => q.floatingip,
            Res::SecurityGroup => q.security_group,
            Res::SecurityGroupRule => q.security_group_rule,
        }
    }
}

async fn quota_of(tx: &mut Tx, project: &str) -> NResult<Quota> {
    Ok(store::get::<Quota>(tx, QUOTAS, project).await?.unwrap_or_default())
}

/// How close to its limit a project's creates start to go one at a time
/// (see the module docs).
pub const SLACK: i64 = 64;

fn guard_key(project: &str, res: Res) -> String {
    format!("{}quota_guard/{project}/{}", store::PREFIX, res.name())
}

/// 409 `OverQuota` if adding these objects passes a project's limit.
pub async fn check_many(tx: &mut Tx, adds: impl Iterator<Item = (&str, Res)>) -> NResult<()> {
    let mut wanted: Vec<(String, Res, i64)> = Vec::new();
    for (p, r) in adds {
        match wanted.iter_mut().find(|(wp, wr, _)| wp == p && *wr == r) {
            Some(w) => w.2 += 1,
            None => wanted.push((p.to_string(), r, 1)),
        }
    }
    for (project, res, n) in wanted {
        let q = quota_of(tx, &project).await?;
        let limit = res.limit(&q);
        if limit < 0 {
            continue;
        }
        // The guard is read before the count: a create near the limit that
        // commits after this read changes the guard, so this transaction
        // cannot commit on a count that missed that create.
        let k = guard_key(&project, res);
        let seen = tx.get_raw(&k).await?.unwrap_or_default();
        let used = store::count(tx, res.collection(), &project).await? as i64;
        if used + n > limit {
            return Err(NeutronError::conflict(
                "OverQuota",
                format!("Quota exceeded for resources: ['{}'].", res.name()),
            ));
        }
        if used + n + SLACK > limit {
            tx.put_raw(&k, vec![seen.first().copied().unwrap_or(0).wrapping_add(1)]);
        }
    }
    Ok(())
}

fn render(q: &Quota, project: Option<&str>) -> Value {
    let mut v = serde_json::to_value(q).unwrap_or_default();
    if let Some(p) = project {
        v["project_id"] = json!(p);
        v["tenant_id"] = json!(p);
    }
    v
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    if !ctx.is_admin() {
        return Err(NeutronError::forbidden("(rule:get_quota) is disallowed by policy"));
    }
    let mut tx = ctx.tx();
    let raw = tx.list_raw(&format!("{}{QUOTAS}/", store::PREFIX)).await?;
    let mut out = Vec::new();
    for (k, v) in raw {
        let project = k.rsplit('/').next().unwrap_or_default().to_string();
        if let Ok(q) = serde_json::from_slice::<Quota>(&v) {
            out.push(render(&q, Some(&project)));
        }
    }
    Ok(super::json_response(StatusCode::OK, &json!({ "quotas": out })))
}

fn may_see(ctx: &NCtx, project: &str) -> NResult<()> {
    if ctx.owns(project) {
        Ok(())
    } else {
        Err(NeutronError::forbidden("(rule:get_quota) is disallowed by policy"))
    }
}

pub async fn show(ctx: NCtx, Path(project): Path<String>) -> NResult<Response> {
    may_see(&ctx, &project)?;
    let q = quota_of(&mut ctx.tx(), &project).await?;
    Ok(super::json_response(StatusCode::OK, &json!({ "quota": render(&q, None) })))
}

pub async fn defaults(ctx: NCtx, Path(project): Path<String>) -> NResult<Response> {
    may_see(&ctx, &project)?;
    Ok(super::json_response(
        StatusCode::OK,
        &json!({ "quota": render(&Quota::default(), Some(&project)) }),
    ))
}

pub async fn update(ctx: NCtx, Path(project): Path<String>, body: Bytes) -> NResult<Response> {
    if !ctx.is_admin() {
        return Err(NeutronError::forbidden("(rule:update_quota) is disallowed by policy"));
    }
    let m = body::update_envelope(&body, "quota")?;
    check_keys(
        &m,
        &[
            "network",
            "subnet",
            "port",
            "router",
            "floatingip",
            "security_group",
            "security_group_rule",
        ],
    )?;
    let ctx = &ctx;
    let q = ntxn!(ctx.cluster, tx => {
        let mut q = quota_of(&mut tx, &project).await?;
        for (k, slot) in [
            ("network", &mut q.network),
            ("subnet", &mut q.subnet),
            ("port", &mut q.port),
            ("router", &mut q.router),
            ("floatingip", &mut q.floatingip),
            ("security_group", &mut q.security_group),
            ("security_group_rule", &mut q.security_group_rule),
        ] {
            if let Some(v) = body::opt_int(&m, k)? {
                if v < -1 {
                    return Err(NeutronError::invalid(k, format!("'{v}' should be greater than or equal to -1")));
                }
                *slot = v;
            }
        }
        store::put(&mut tx, QUOTAS, &project, &q);
        Ok::<_, NeutronError>(q)
    })?;
    Ok(super::json_response(StatusCode::OK, &json!({ "quota": render(&q, None) })))
}

pub async fn reset(ctx: NCtx, Path(project): Path<String>) -> NResult<Response> {
    if !ctx.is_admin() {
        return Err(NeutronError::forbidden("(rule:delete_quota) is disallowed by policy"));
    }
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        store::delete(&mut tx, QUOTAS, &project).await?;
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}
