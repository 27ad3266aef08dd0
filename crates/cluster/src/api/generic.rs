//! Generic handlers for every [`Kind`]: list, create, get, update, delete,
//! and the same for sub-collections whose members are top-level objects
//! (`/bridges/{id}/ports`, `/chains/{id}/rules`, ...).
//!
//! Every write runs in [`txn!`](crate::txn): read what the decision needs,
//! check, write, commit with compares, retry on conflict.

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use midonet_model::kind::ObjectKind;
use serde_json::Value;
use uuid::Uuid;

use super::ctx::{no_content, Ctx};
use super::kinds::{delete_with_rules, Env, Kind};
use crate::db::Tx;
use crate::error::ApiError;
use crate::txn;

/// Parses an id from a URI; a malformed id names nothing, so 404.
pub fn parse_id(what: &str, s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s.trim()).map_err(|_| ApiError::not_found(format!("{what} {s}")))
}

/// The tenant that owns an object: `None` if the object does not exist,
/// `Some(None)` for objects without a tenant (hosts, tunnel zones, objects
/// an admin created without one). Follows parents (port → device, rule →
/// chain, member → pool → load balancer).
pub async fn owner_of(
    tx: &mut Tx,
    kind: ObjectKind,
    id: Uuid,
) -> Result<Option<Option<String>>, ApiError> {
    let (mut kind, mut id) = (kind, id);
    for _ in 0..4 {
        let key = kind.key(&[&id.to_string()]);
        let Some(v) = tx.get::<Value>(&key).await? else {
            return Ok(None);
        };
        let field =
            |name: &str| v.get(name).and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok());
        let next = match kind {
            ObjectKind::Port => {
                let k = if v.get("type").and_then(Value::as_str) == Some("Router") {
                    ObjectKind::Router
                } else {
                    ObjectKind::Bridge
                };
                (k, field("deviceId"))
            }
            ObjectKind::Route => (ObjectKind::Router, field("routerId")),
            ObjectKind::Rule => (ObjectKind::Chain, field("chainId")),
            ObjectKind::Pool | ObjectKind::Vip => {
                (ObjectKind::LoadBalancer, field("loadBalancerId"))
            }
            ObjectKind::PoolMember => (ObjectKind::Pool, field("poolId")),
            _ => {
                return Ok(Some(v.get("tenantId").and_then(Value::as_str).map(str::to_string)));
            }
        };
        match next {
            (k, Some(i)) => {
                kind = k;
                id = i;
            }
            (_, None) => return Ok(Some(None)),
        }
    }
    Ok(Some(None))
}

/// The owner of an object already loaded.
pub async fn owner<T: Kind>(tx: &mut Tx, obj: &T) -> Result<Option<String>, ApiError> {
    if let Some(t) = obj.own_tenant() {
        return Ok(t.map(str::to_string));
    }
    match obj.parent() {
        Some((k, id)) => Ok(owner_of(tx, k, id).await?.flatten()),
        None => Ok(None),
    }
}

/// Loads an object the caller may see, or 404.
pub async fn load_visible<T: Kind>(tx: &mut Tx, ctx: &Ctx, id: Uuid) -> Result<T, ApiError> {
    let key = T::KIND.key(&[&id.to_string()]);
    let obj: T =
        tx.get(&key).await?.ok_or_else(|| ApiError::not_found(format!("{} {id}", T::DESC.what)))?;
    if !ctx.session.is_admin() {
        let o = owner(tx, &obj).await?;
        if !ctx.sees(o.as_deref()) {
            return Err(ApiError::not_found(format!("{} {id}", T::DESC.what)));
        }
    }
    Ok(obj)
}

/// Checks that a parent exists and is visible (404 otherwise).
pub async fn check_parent(
    tx: &mut Tx,
    ctx: &Ctx,
    kind: ObjectKind,
    id: Uuid,
) -> Result<(), ApiError> {
    let what = kind.segment().trim_end_matches('s').replace('_', " ");
    match owner_of(tx, kind, id).await? {
        Some(o) if ctx.sees(o.as_deref()) => Ok(()),
        _ => Err(ApiError::not_found(format!("{what} {id}"))),
    }
}

/// Every referenced id must exist and be visible to the caller (400 naming
/// the field); each is touched as a guard (see `db`).
pub async fn check_refs<T: Kind>(tx: &mut Tx, ctx: &Ctx, obj: &T) -> Result<(), ApiError> {
    for (field, kind, id) in obj.refs() {
        match owner_of(tx, kind, id).await? {
            Some(o) if ctx.sees(o.as_deref()) => tx.touch(id),
            _ => {
                let what = kind.segment().trim_end_matches('s').replace('_', " ");
                return Err(ApiError::field(field, format!("{what} {id} does not exist")));
            }
        }
    }
    if let Some((_, pid)) = obj.parent() {
        tx.touch(pid);
    }
    Ok(())
}

/// 409 for a write to an object the Neutron translation owns: changing it
/// here would be undone (or break) on the next Neutron change.
pub async fn refuse_neutron_owned<T: Kind>(tx: &mut Tx, id: Uuid) -> Result<(), ApiError> {
    if crate::neutron::store::is_owned(tx, id).await? {
        return Err(ApiError::conflict(format!(
            "{} {id} is managed by the Neutron API: change it there",
            T::DESC.what
        )));
    }
    Ok(())
}

/// The DTO: model JSON + `uri` + link fields + runtime state.
pub fn render<T: Kind>(ctx: &Ctx, env: &Env, obj: &T) -> Value {
    let mut v = serde_json::to_value(obj).expect("model objects always serialize");
    if let Value::Object(m) = &mut v {
        m.insert(
            "uri".into(),
            Value::String(ctx.uri(&format!("/{}/{}", T::KIND.segment(), obj.id()))),
        );
        obj.links(ctx, env, m);
    }
    v
}

async fn render_fresh<T: Kind>(ctx: &Ctx, obj: &T) -> Result<Value, ApiError> {
    let mut tx = ctx.tx();
    let mut env = Env::default();
    obj.load_env_one(&mut tx, &mut env).await?;
    Ok(render(ctx, &env, obj))
}

fn gate<T: Kind>(ctx: &Ctx) -> Result<(), ApiError> {
    if T::DESC.admin_only {
        ctx.require_admin(T::KIND.segment())?;
    }
    Ok(())
}

/// Lists objects the caller may see, optionally only children of a parent.
pub async fn list_filtered<T: Kind>(
    ctx: &Ctx,
    keep: impl Fn(&T) -> bool,
) -> Result<Response, ApiError> {
    gate::<T>(ctx)?;
    let mut tx = ctx.tx();
    let objs: Vec<T> = tx.list(&T::KIND.prefix()).await?;
    let mut env = Env::default();
    T::load_env(&mut tx, &mut env).await?;
    let filter = ctx.tenant_filter().map(str::to_string);
    let mut out = Vec::new();
    for o in objs.iter().filter(|o| keep(o)) {
        if !ctx.session.is_admin() || filter.is_some() {
            let own = owner(&mut tx, o).await?;
            if !ctx.sees(own.as_deref()) {
                continue;
            }
            if filter.is_some() && own != filter {
                continue;
            }
        }
        out.push(render(ctx, &env, o));
    }
    Ok(ctx.many(T::DESC.media, out))
}

pub async fn list<T: Kind>(ctx: Ctx) -> Result<Response, ApiError> {
    list_filtered::<T>(&ctx, |_| true).await
}

pub async fn get_one<T: Kind>(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    gate::<T>(&ctx)?;
    let id = parse_id(T::DESC.what, &id)?;
    let mut tx = ctx.tx();
    let obj: T = load_visible(&mut tx, &ctx, id).await?;
    let mut env = Env::default();
    obj.load_env_one(&mut tx, &mut env).await?;
    Ok(ctx.one(T::DESC.media, render(&ctx, &env, &obj)))
}

/// Create steps shared by top-level and sub-collection creates.
async fn prepare_create<T: Kind>(
    tx: &mut Tx,
    ctx: &Ctx,
    obj: &mut T,
    parent: Option<(ObjectKind, Uuid)>,
) -> Result<(), ApiError> {
    if obj.id().is_nil() {
        obj.set_id(Uuid::new_v4());
    }
    // One round trip for what every create reads.
    let mut first = vec![obj.store_key()];
    if let Some((pk, pid)) = parent {
        first.push(pk.key(&[&pid.to_string()]));
    }
    tx.prefetch(&first).await?;
    if tx.exists(&obj.store_key()).await? {
        return Err(
            ApiError::conflict(format!("{} {} already exists", T::DESC.what, obj.id())).on("id")
        );
    }
    let session_tenant = ctx.session.tenant().map(str::to_string);
    if let (Some(t), Some(st)) = (obj.tenant_mut(), session_tenant) {
        match t {
            Some(x) if *x != st => {
                return Err(ApiError::forbidden(format!(
                    "you may only create objects of your own tenant `{st}`, not `{x}`"
                )))
            }
            _ => *t = Some(st),
        }
    }
    if let Some((pk, pid)) = parent {
        check_parent(tx, ctx, pk, pid).await?;
        obj.set_parent(pk, pid);
    }
    obj.validate()?;
    obj.on_create(tx, ctx).await?;
    check_refs(tx, ctx, &*obj).await?;
    tx.put(&obj.store_key(), &*obj);
    Ok(())
}

/// Creates an object (under `parent` when posted to a sub-collection).
pub async fn create_in<T: Kind>(
    ctx: &Ctx,
    body: &[u8],
    parent: Option<(ObjectKind, Uuid)>,
) -> Result<Response, ApiError> {
    gate::<T>(ctx)?;
    let parsed: T = ctx.parse(body)?;
    let obj = txn!(ctx.cluster, tx => {
        let mut obj = parsed.clone();
        prepare_create(&mut tx, ctx, &mut obj, parent).await?;
        Ok(obj)
    })?;
    let v = render_fresh(ctx, &obj).await?;
    let loc = ctx.uri(&format!("/{}/{}", T::KIND.segment(), obj.id()));
    Ok(ctx.created(T::DESC.media, &loc, v))
}

pub async fn create<T: Kind>(ctx: Ctx, body: Bytes) -> Result<Response, ApiError> {
    create_in::<T>(&ctx, &body, None).await
}

pub async fn update<T: Kind>(
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    gate::<T>(&ctx)?;
    let id = parse_id(T::DESC.what, &id)?;
    let parsed: T = ctx.parse(&body)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old: T = load_visible(&mut tx, ctx, id).await?;
        refuse_neutron_owned::<T>(&mut tx, id).await?;
        let mut obj = parsed.clone();
        if !obj.id().is_nil() && obj.id() != id {
            return Err(ApiError::field("id", format!("the body's id {} is not the URI's {id}", obj.id())));
        }
        obj.set_id(id);
        let old_tenant = old.own_tenant().map(|t| t.map(str::to_string));
        let is_admin = ctx.session.is_admin();
        if let (Some(t), Some(old_t)) = (obj.tenant_mut(), old_tenant) {
            match t {
                None => *t = old_t,
                Some(x) if Some(x.as_str()) != old_t.as_deref() && !is_admin => {
                    return Err(ApiError::forbidden("only administrators change an object's tenant"));
                }
                Some(_) => {}
            }
        }
        // Read-only fields (a port's type and device, ...) come back from
        // `old` first, so a PUT body that omits them validates as the
        // object it replaces.
        obj.on_update(&old, &mut tx, ctx).await?;
        obj.validate()?;
        check_refs(&mut tx, ctx, &obj).await?;
        tx.put(&obj.store_key(), &obj);
        Ok(())
    })?;
    Ok(no_content())
}

pub async fn delete<T: Kind>(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    gate::<T>(&ctx)?;
    let id = parse_id(T::DESC.what, &id)?;
    let ctx = &ctx;
    txn!(ctx.cluster, tx => {
        let old: T = load_visible(&mut tx, ctx, id).await?;
        refuse_neutron_owned::<T>(&mut tx, id).await?;
        delete_with_rules(&mut tx, ctx, &old).await
    })?;
    Ok(no_content())
}

/// `GET /<parents>/{id}/<children>`.
pub async fn list_children<T: Kind>(
    ctx: &Ctx,
    parent: ObjectKind,
    pid: &str,
) -> Result<Response, ApiError> {
    let pid = parse_id(parent.segment(), pid)?;
    check_parent(&mut ctx.tx(), ctx, parent, pid).await?;
    if T::KIND == ObjectKind::Rule {
        return list_rules(ctx, pid).await;
    }
    list_filtered::<T>(ctx, |o| o.in_parent(parent, pid)).await
}

/// Rules of a chain, in chain order.
async fn list_rules(ctx: &Ctx, chain: Uuid) -> Result<Response, ApiError> {
    use midonet_model::{Chain, Rule};
    let mut tx = ctx.tx();
    let c: Chain = tx
        .get(&ObjectKind::Chain.key(&[&chain.to_string()]))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("chain {chain}")))?;
    let mut env = Env::default();
    let mut out = Vec::new();
    for (i, rid) in c.rule_ids.iter().enumerate() {
        env.rule_positions.insert(rid.uuid(), i as u32 + 1);
    }
    for rid in &c.rule_ids {
        if let Some(r) = tx.get::<Rule>(&ObjectKind::Rule.key(&[&rid.to_string()])).await? {
            out.push(render(ctx, &env, &r));
        }
    }
    Ok(ctx.many(Rule::DESC.media, out))
}

/// `POST /<parents>/{id}/<children>`.
pub async fn create_child<T: Kind>(
    ctx: &Ctx,
    parent: ObjectKind,
    pid: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let pid = parse_id(parent.segment(), pid)?;
    // Parse leniently first so the parent's id can be filled in; a body
    // that is not a JSON object goes through unchanged and fails decoding
    // with the usual message.
    let patched = match super::ctx::parse_json::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            T::child_body(parent, pid, &mut m);
            Value::Object(m).to_string().into_bytes()
        }
        _ => body.to_vec(),
    };
    create_in::<T>(ctx, &patched, Some((parent, pid))).await
}
