//! The admin API: projects, users and role assignments in the store
//! ([`crate::accounts`]), as tempest's dynamic credentials make them.
//! Every write is an admin's (403 otherwise); the config's users and
//! projects cannot be changed here (403).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::catalog::{role_json, role_names};
use super::project::{all_projects, known_projects, project_json, projects_of, Project};
use super::request::{member, object, string};
use super::{admin, caller, collection, json_response, KsError, Urls, DOMAIN_ID};
use crate::accounts;
use crate::auth::Role;
use crate::Cluster;

/// The request body's object `key` (`{"project": {...}}`).
fn body_object(body: &Bytes, key: &str) -> Result<Value, KsError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| KsError::bad_request(format!("the body is not valid JSON: {e}")))?;
    Ok(object(&v, "", key)?.clone())
}

/// An optional string member, `null` counting as absent.
fn opt_string(v: &Value, path: &str, key: &str) -> Result<Option<String>, KsError> {
    match member(v, path, key)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(KsError::bad_request(format!("`{path}.{key}` must be a string"))),
    }
}

fn opt_bool(v: &Value, path: &str, key: &str) -> Result<Option<bool>, KsError> {
    match member(v, path, key)? {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(KsError::bad_request(format!("`{path}.{key}` must be a boolean"))),
    }
}

/// A required name of at most `max` characters.
fn name_of(v: &Value, path: &str, max: usize) -> Result<String, KsError> {
    let name = string(v, path, "name")?.ok_or_else(|| {
        KsError::bad_request(format!("Expecting to find `{path}.name` in the request"))
    })?;
    if name.chars().count() > max || name.trim().is_empty() {
        return Err(KsError::bad_request(format!(
            "`{path}.name` must be 1 to {max} characters, not all blank"
        )));
    }
    Ok(name)
}

/// 404 unless `domain_id` (when given) is the one domain.
fn only_default_domain(v: &Value, path: &str) -> Result<(), KsError> {
    match opt_string(v, path, "domain_id")? {
        Some(d) if d != DOMAIN_ID => {
            Err(KsError::not_found(format!("Could not find domain: {d}.")))
        }
        _ => Ok(()),
    }
}

fn created(key: &str, item: Value) -> Response {
    json_response(StatusCode::CREATED, &json!({ key: item }))
}

pub(super) async fn create_project(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:create_project").await?;
    let p = body_object(&body, "project")?;
    let name = name_of(&p, "project", 64)?;
    only_default_domain(&p, "project")?;
    if opt_bool(&p, "project", "is_domain")? == Some(true) {
        return Err(KsError::bad_request("`project.is_domain`: only the default domain exists"));
    }
    if let Some(parent) = opt_string(&p, "project", "parent_id")?.filter(|id| id != DOMAIN_ID) {
        return Err(KsError::bad_request(format!(
            "`project.parent_id` {parent}: projects are not nested here"
        )));
    }
    let description = opt_string(&p, "project", "description")?.unwrap_or_default();
    let enabled = opt_bool(&p, "project", "enabled")?.unwrap_or(true);
    // A config project's name or id, taken as a scope name, would be ambiguous.
    if known_projects(&cluster).iter().any(|k| k.name == name || k.id == name) {
        return Err(KsError::conflict(format!(
            "Duplicate entry found with name {name} at domain ID {DOMAIN_ID}."
        )));
    }
    let made = accounts::create_project(&cluster.store, &name, &description, enabled).await?;
    tracing::info!(id = made.id, name, "keystone project created");
    Ok(created("project", project_json(&made.into(), &urls)))
}

pub(super) async fn delete_project(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:delete_project").await?;
    if known_projects(&cluster).iter().any(|p| p.id == id) {
        return Err(KsError::forbidden(format!(
            "project {id} is in the cluster's config file: remove it there"
        )));
    }
    accounts::delete_project(&cluster.store, &id).await?;
    tracing::info!(id, "keystone project deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn user_json(u: &accounts::StoredUser, urls: &Urls) -> Value {
    let mut j = json!({
        "id": u.id,
        "name": u.name,
        "domain_id": DOMAIN_ID,
        "enabled": u.enabled,
        "password_expires_at": null,
        "options": {},
        "links": {"self": format!("{}/v3/users/{}", urls.identity, u.id)},
    });
    for (key, v) in [
        ("default_project_id", &u.default_project_id),
        ("description", &u.description),
        ("email", &u.email),
    ] {
        if let Some(v) = v {
            j[key] = json!(v);
        }
    }
    j
}

/// A config user as the API shows it: its id is its name.
fn config_user_json(name: &str, role: &Role, urls: &Urls) -> Value {
    let mut j = json!({
        "id": name,
        "name": name,
        "domain_id": DOMAIN_ID,
        "enabled": true,
        "password_expires_at": null,
        "options": {},
        "links": {"self": format!("{}/v3/users/{name}", urls.identity)},
    });
    if let Role::Tenant(t) = role {
        j["default_project_id"] = json!(t);
    }
    j
}

pub(super) async fn create_user(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:create_user").await?;
    let u = body_object(&body, "user")?;
    let name = name_of(&u, "user", 255)?;
    only_default_domain(&u, "user")?;
    if cluster.auth.user_role(&name).is_some() {
        return Err(KsError::conflict(format!(
            "Duplicate entry found with name {name} at domain ID {DOMAIN_ID}."
        )));
    }
    let password = opt_string(&u, "user", "password")?;
    let user = accounts::StoredUser {
        id: String::new(),
        name: name.clone(),
        enabled: opt_bool(&u, "user", "enabled")?.unwrap_or(true),
        default_project_id: opt_string(&u, "user", "default_project_id")?,
        description: opt_string(&u, "user", "description")?,
        email: opt_string(&u, "user", "email")?,
        // PBKDF2 takes tens of milliseconds: off the async workers.
        password: match password {
            Some(pw) => Some(
                tokio::task::spawn_blocking(move || accounts::PasswordHash::new(&pw))
                    .await
                    .map_err(|_| {
                        KsError::new(StatusCode::INTERNAL_SERVER_ERROR, "hashing failed")
                    })?,
            ),
            None => None,
        },
    };
    let made = accounts::create_user(&cluster.store, user).await?;
    tracing::info!(id = made.id, name, "keystone user created");
    Ok(created("user", user_json(&made, &urls)))
}

pub(super) async fn list_users(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:list_users").await?;
    let mut items: Vec<Value> = cluster
        .auth
        .user_names()
        .filter_map(|n| Some((n, cluster.auth.user_role(n)?)))
        .map(|(n, role)| config_user_json(n, &role, &urls))
        .collect();
    let stored = accounts::list_users(&cluster.store).await?;
    items.extend(stored.iter().map(|u| user_json(u, &urls)));
    items.retain(|u| q.get("name").is_none_or(|n| u["name"] == json!(n)));
    items.retain(|_| q.get("domain_id").is_none_or(|d| d == DOMAIN_ID));
    Ok(collection("users", items, format!("{}/v3/users", urls.identity)))
}

pub(super) async fn get_user(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, KsError> {
    let me = caller(&cluster, &headers).await?;
    let own = me.user == id || me.user_id.as_deref() == Some(id.as_str());
    if !me.is_admin() && !own {
        return Err(KsError::forbidden(
            "You are not authorized to perform the requested action: identity:get_user.",
        ));
    }
    let item = match cluster.auth.user_role(&id) {
        Some(role) => config_user_json(&id, &role, &urls),
        None => {
            let u = accounts::get_user(&cluster.store, &id)
                .await?
                .ok_or_else(|| KsError::not_found(format!("Could not find user: {id}.")))?;
            user_json(&u, &urls)
        }
    };
    Ok(json_response(StatusCode::OK, &json!({ "user": item })))
}

pub(super) async fn delete_user(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:delete_user").await?;
    if cluster.auth.user_role(&id).is_some() {
        return Err(KsError::forbidden(format!(
            "user {id} is in the cluster's config file: remove it there"
        )));
    }
    accounts::delete_user(&cluster.store, &id).await?;
    tracing::info!(id, "keystone user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The project, store user and role of an assignment path, each checked
/// (404 naming the one missing). Config users' roles come from the config
/// file: 403.
async fn assignment(
    cluster: &Cluster,
    project: &str,
    user: &str,
    role: &str,
) -> Result<(Project, accounts::StoredUser, &'static str), KsError> {
    let role = role_names(&Role::Admin)
        .iter()
        .find(|r| **r == role)
        .ok_or_else(|| KsError::not_found(format!("Could not find role: {role}.")))?;
    let projects = all_projects(cluster).await?;
    let p = projects
        .into_iter()
        .find(|p| p.id == project)
        .ok_or_else(|| KsError::not_found(format!("Could not find project: {project}.")))?;
    if cluster.auth.user_role(user).is_some() {
        return Err(KsError::forbidden(format!(
            "user {user} is in the cluster's config file: its role is set there"
        )));
    }
    let u = accounts::get_user(&cluster.store, user)
        .await?
        .ok_or_else(|| KsError::not_found(format!("Could not find user: {user}.")))?;
    Ok((p, u, role))
}

type AssignmentPath = Path<(String, String, String)>;

pub(super) async fn assign_role(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path((project, user, role)): AssignmentPath,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:create_grant").await?;
    let (p, u, role) = assignment(&cluster, &project, &user, &role).await?;
    accounts::assign(&cluster.store, &u.id, &p.id, role, p.stored).await?;
    tracing::info!(user = u.name, project = p.id, role, "keystone role assigned");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn check_role(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path((project, user, role)): AssignmentPath,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:check_grant").await?;
    let (p, u, role) = assignment(&cluster, &project, &user, &role).await?;
    let held = accounts::roles_on(&cluster.store, &u.id, &p.id).await?;
    if !held.iter().any(|r| r == role) {
        return Err(KsError::not_found(format!(
            "Could not find role assignment with role: {role}, user or group: {user}, project, domain, or system: {project}."
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn unassign_role(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path((project, user, role)): AssignmentPath,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:revoke_grant").await?;
    let (p, u, role) = assignment(&cluster, &project, &user, &role).await?;
    accounts::unassign(&cluster.store, &u.id, &p.id, role).await?;
    tracing::info!(user = u.name, project = p.id, role, "keystone role unassigned");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_user_roles(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Path((project, user)): Path<(String, String)>,
) -> Result<Response, KsError> {
    admin(&cluster, &headers, "identity:list_grants").await?;
    let roles: Vec<String> = match cluster.auth.user_role(&user) {
        Some(role) => {
            let projects = known_projects(&cluster);
            let on = projects_of(&projects, &role).iter().any(|p| p.id == project);
            if on {
                role_names(&role).iter().map(|r| r.to_string()).collect()
            } else {
                Vec::new()
            }
        }
        None => {
            let (p, u, _) = assignment(&cluster, &project, &user, "member").await?;
            accounts::roles_on(&cluster.store, &u.id, &p.id).await?
        }
    };
    let items = roles.iter().map(|r| role_json(r, &urls)).collect();
    let at = format!("{}/v3/projects/{project}/users/{user}/roles", urls.identity);
    Ok(collection("roles", items, at))
}
