//! What the endpoint serves that nobody creates: the version documents,
//! the service catalog of a token, the one domain and the three roles.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{
    caller, collection, json_response, KsError, Urls, DOMAIN_ID, DOMAIN_NAME, REGION, VERSION,
};
use crate::auth::Role;
use crate::Cluster;

fn version_json(urls: &Urls) -> Value {
    json!({
        "id": VERSION,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/v3/", urls.identity)}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json",
        }],
    })
}

pub(super) async fn versions(urls: Urls) -> Response {
    let body = json!({"versions": {"values": [version_json(&urls)]}});
    json_response(StatusCode::MULTIPLE_CHOICES, &body)
}

pub(super) async fn version(urls: Urls) -> Response {
    json_response(StatusCode::OK, &json!({"version": version_json(&urls)}))
}
pub(super) fn domain_ref() -> Value {
    json!({"id": DOMAIN_ID, "name": DOMAIN_NAME})
}
/// The roles a role holds on its projects.
pub(super) fn role_names(role: &Role) -> &'static [&'static str] {
    match role {
        Role::Admin => &["admin", "member", "reader"],
        Role::Tenant(_) => &["member", "reader"],
    }
}

pub(super) fn role_json(name: &str, urls: &Urls) -> Value {
    json!({
        "id": name,
        "name": name,
        "domain_id": null,
        "description": null,
        "options": {},
        "links": {"self": format!("{}/v3/roles/{name}", urls.identity)},
    })
}

pub(super) fn catalog(urls: &Urls) -> Value {
    let service = |kind: &str, name: &str, url: &str| {
        let endpoints: Vec<Value> = ["public", "internal", "admin"]
            .iter()
            .map(|iface| {
                json!({
                    "id": format!("{name}-{iface}"),
                    "interface": iface,
                    "region": REGION,
                    "region_id": REGION,
                    "url": url,
                })
            })
            .collect();
        json!({"type": kind, "name": name, "id": name, "endpoints": endpoints})
    };
    json!([
        service("network", "neutron", &urls.network),
        service("identity", "keystone", &urls.identity),
    ])
}
fn domain_json(urls: &Urls) -> Value {
    json!({
        "id": DOMAIN_ID,
        "name": DOMAIN_NAME,
        "description": "The default domain",
        "enabled": true,
        "tags": [],
        "options": {},
        "links": {"self": format!("{}/v3/domains/{DOMAIN_ID}", urls.identity)},
    })
}

pub(super) async fn list_domains(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, KsError> {
    caller(&cluster, &headers).await?;
    let wanted = q.get("name").is_none_or(|n| n == DOMAIN_NAME);
    let items = if wanted { vec![domain_json(&urls)] } else { Vec::new() };
    Ok(collection("domains", items, format!("{}/v3/domains", urls.identity)))
}

pub(super) async fn get_domain(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, KsError> {
    caller(&cluster, &headers).await?;
    if id != DOMAIN_ID {
        return Err(KsError::not_found(format!("Could not find domain: {id}.")));
    }
    Ok(json_response(StatusCode::OK, &json!({"domain": domain_json(&urls)})))
}

pub(super) async fn list_roles(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, KsError> {
    caller(&cluster, &headers).await?;
    let items = role_names(&Role::Admin)
        .iter()
        .filter(|r| q.get("name").is_none_or(|n| n == *r))
        .map(|r| role_json(r, &urls))
        .collect();
    Ok(collection("roles", items, format!("{}/v3/roles", urls.identity)))
}

pub(super) async fn get_role(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, KsError> {
    caller(&cluster, &headers).await?;
    let name = role_names(&Role::Admin)
        .iter()
        .find(|r| **r == id)
        .ok_or_else(|| KsError::not_found(format!("Could not find role: {id}.")))?;
    Ok(json_response(StatusCode::OK, &json!({"role": role_json(name, &urls)})))
}
