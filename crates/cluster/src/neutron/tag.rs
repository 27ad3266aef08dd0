//! Tags on Neutron resources (the `tag` extension's API, on every
//! resource that carries standard attributes here): networks, subnets,
//! subnet pools, ports, routers, floating IPs and security groups.
//!
//! ```text
//!  GET    /v2.0/{resources}/{id}/tags          {"tags": [...]}
//!  PUT    /v2.0/{resources}/{id}/tags          {"tags": [...]} replaces them all (200)
//!  DELETE /v2.0/{resources}/{id}/tags          removes them all (204)
//!  GET    /v2.0/{resources}/{id}/tags/{tag}    204, or 404 TagNotFound
//!  PUT    /v2.0/{resources}/{id}/tags/{tag}    adds one (201)
//!  DELETE /v2.0/{resources}/{id}/tags/{tag}    204, or 404 TagNotFound
//!  GET    /v2.0/{resources}?tags=a,b           filters: tags, tags-any, not-tags, not-tags-any
//! ```
//!
//! A tag changes no forwarding decision, so a tag write rewrites the
//! Neutron object only (a new revision, as Neutron bumps it), never its
//! MidoNet translation. Reading tags needs to see the object; changing them
//! needs to own it (a shared network's or pool's tags are its owner's).

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::error::{NResult, NeutronError};
use super::store::{
    self, FLOATINGIPS, NETWORKS, PORTS, ROUTERS, SECURITY_GROUPS, SUBNETPOOLS, SUBNETS,
};
use super::types::Standard;
use super::NCtx;
use crate::ntxn;

/// Neutron's `MAX_TAG_LEN`.
const MAX_TAG_LEN: usize = 255;
/// Neutron's `MAX_TAGS` per resource.
const MAX_TAGS: usize = 50;

/// The filters on tags a list takes (comma-separated values).
pub const FILTERS: &[&str] = &["tags", "tags-any", "not-tags", "not-tags-any"];

/// URL collection → (store collection, what a 404 calls it).
fn collection(resources: &str) -> NResult<(&'static str, &'static str)> {
    Ok(match resources {
        "networks" => (NETWORKS, "Network"),
        "subnets" => (SUBNETS, "Subnet"),
        "subnetpools" => (SUBNETPOOLS, "SubnetPool"),
        "ports" => (PORTS, "Port"),
        "routers" => (ROUTERS, "Router"),
        "floatingips" => (FLOATINGIPS, "FloatingIP"),
        "security-groups" => (SECURITY_GROUPS, "SecurityGroup"),
        _ => {
            return Err(NeutronError::new(
                StatusCode::NOT_FOUND,
                "HTTPNotFound",
                format!("The resource could not be found: /v2.0/{resources}"),
            ))
        }
    })
}

fn tag_not_found(tag: &str) -> NeutronError {
    NeutronError::new(
        StatusCode::NOT_FOUND,
        "TagNotFound",
        format!("Tag {tag} could not be found."),
    )
}

fn check_tag(tag: &str) -> NResult<()> {
    if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN {
        return Err(NeutronError::invalid(
            "tags",
            format!("'{tag}' is not a valid tag: 1 to {MAX_TAG_LEN} characters"),
        ));
    }
    Ok(())
}

/// The object as stored, if the caller may see it (`write`: change it).
async fn load(
    ctx: &NCtx,
    tx: &mut crate::db::Tx,
    resources: &str,
    id: &str,
    write: bool,
) -> NResult<(&'static str, Value)> {
    let (coll, what) = collection(resources)?;
    let v = store::get::<Value>(tx, coll, id).await?;
    let seen = v.as_ref().is_some_and(|v| {
        let owned = v.get("project_id").and_then(Value::as_str).is_some_and(|p| ctx.owns(p));
        let shared = v.get("shared") == Some(&Value::Bool(true));
        let public = (coll == NETWORKS
            && (shared || v.get("router:external") == Some(&Value::Bool(true))))
            || (coll == SUBNETPOOLS && shared);
        owned || (!write && public)
    });
    match v {
        Some(v) if seen => Ok((coll, v)),
        _ => Err(NeutronError::not_found(&format!("{what}NotFound"), what, id)),
    }
}

fn tags_of(v: &Value) -> Vec<String> {
    v.get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Writes `tags` into the object, with a new revision.
fn store_tags(tx: &mut crate::db::Tx, coll: &str, id: &str, mut v: Value, tags: &[String]) {
    let mut std: Standard =
        serde_json::from_value(v.clone()).unwrap_or_else(|_| Standard::new(String::new()));
    std.touch();
    if let Some(m) = v.as_object_mut() {
        m.insert("tags".into(), json!(tags));
        m.insert("updated_at".into(), json!(std.updated_at));
        m.insert("revision_number".into(), json!(std.revision_number));
    }
    store::put(tx, coll, id, &v);
}

pub async fn list(ctx: NCtx, Path((resources, id)): Path<(String, String)>) -> NResult<Response> {
    let (_, v) = load(&ctx, &mut ctx.tx(), &resources, &id, false).await?;
    Ok(super::json_response(StatusCode::OK, &json!({ "tags": tags_of(&v) })))
}

pub async fn check(
    ctx: NCtx,
    Path((resources, id, tag)): Path<(String, String, String)>,
) -> NResult<Response> {
    let (_, v) = load(&ctx, &mut ctx.tx(), &resources, &id, false).await?;
    if !tags_of(&v).contains(&tag) {
        return Err(tag_not_found(&tag));
    }
    Ok(super::no_content())
}

pub async fn replace(
    ctx: NCtx,
    Path((resources, id)): Path<(String, String)>,
    body: Bytes,
) -> NResult<Response> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| NeutronError::bad_request(format!("Malformed request body: {e}")))?;
    let Some(Value::Array(items)) = body.get("tags") else {
        return Err(NeutronError::bad_request(
            "Invalid input for tags. Reason: a list is required.",
        ));
    };
    let mut tags: Vec<String> = Vec::new();
    for t in items {
        let Some(t) = t.as_str() else {
            return Err(NeutronError::invalid("tags", format!("{t} is not a valid string")));
        };
        check_tag(t)?;
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_string());
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(NeutronError::invalid("tags", format!("at most {MAX_TAGS} tags per resource")));
    }
    let ctx = &ctx;
    let tags = ntxn!(ctx.cluster, tx => {
        let (coll, v) = load(ctx, &mut tx, &resources, &id, true).await?;
        store_tags(&mut tx, coll, &id, v, &tags);
        Ok::<_, NeutronError>(tags.clone())
    })?;
    Ok(super::json_response(StatusCode::OK, &json!({ "tags": tags })))
}

pub async fn add(
    ctx: NCtx,
    Path((resources, id, tag)): Path<(String, String, String)>,
) -> NResult<Response> {
    check_tag(&tag)?;
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let (coll, v) = load(ctx, &mut tx, &resources, &id, true).await?;
        let mut tags = tags_of(&v);
        if !tags.contains(&tag) {
            if tags.len() >= MAX_TAGS {
                return Err(NeutronError::invalid("tags", format!("at most {MAX_TAGS} tags per resource")));
            }
            tags.push(tag.clone());
            store_tags(&mut tx, coll, &id, v, &tags);
        }
        Ok::<_, NeutronError>(())
    })?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::CREATED))
}

pub async fn remove_all(
    ctx: NCtx,
    Path((resources, id)): Path<(String, String)>,
) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let (coll, v) = load(ctx, &mut tx, &resources, &id, true).await?;
        if !tags_of(&v).is_empty() {
            store_tags(&mut tx, coll, &id, v, &[]);
        }
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}

pub async fn remove(
    ctx: NCtx,
    Path((resources, id, tag)): Path<(String, String, String)>,
) -> NResult<Response> {
    let ctx = &ctx;
    ntxn!(ctx.cluster, tx => {
        let (coll, v) = load(ctx, &mut tx, &resources, &id, true).await?;
        let mut tags = tags_of(&v);
        let before = tags.len();
        tags.retain(|t| *t != tag);
        if tags.len() == before {
            return Err(tag_not_found(&tag));
        }
        store_tags(&mut tx, coll, &id, v, &tags);
        Ok::<_, NeutronError>(())
    })?;
    Ok(super::no_content())
}

/// Whether an object's `tags` pass one tag filter: `tags=a,b` (all of
/// them), `tags-any` (one of them), `not-tags` (not all of them),
/// `not-tags-any` (none of them). Repeated filters are joined, as Neutron
/// joins them.
pub fn matches(filter: &str, wants: &[&str], v: &Value) -> bool {
    let have = tags_of(v);
    let wanted: Vec<&str> =
        wants.iter().flat_map(|w| w.split(',')).map(str::trim).filter(|t| !t.is_empty()).collect();
    let all = wanted.iter().all(|t| have.iter().any(|h| h == t));
    let any = wanted.iter().any(|t| have.iter().any(|h| h == t));
    match filter {
        "tags" => all,
        "tags-any" => any,
        "not-tags" => !all,
        "not-tags-any" => !any,
        _ => true,
    }
}
