//! A Keystone v3 identity endpoint over the cluster's own users, for
//! OpenStack clients (openstacksdk, python-openstackclient, tempest) that
//! authenticate with a password and want a service catalog.
//!
//! ```text
//!  nested at /identity (Neutron listener) or /neutron/identity (main port)
//!
//!  GET  /identity                 300 {"versions":{"values":[v3]}}
//!  GET  /identity/v3              200 {"version": v3}
//!  POST /identity/v3/auth/tokens  password | token (rescope)
//!       └─► 201 X-Subject-Token: <token>  {"token": {user, project, roles, catalog}}
//!                                              │
//!            catalog: network  → http://<host><mount>/     (Neutron)
//!                     identity → http://<host><mount>/identity
//!  GET|HEAD|DELETE /identity/v3/auth/tokens   X-Subject-Token: validate, revoke
//!  GET  /identity/v3/{projects,auth/projects,users/<u>/projects,domains,roles}
//!
//!  admin only (403 otherwise), in the store (crate::accounts):
//!  POST /v3/projects   201 {"project"}   409 name taken   DELETE /v3/projects/<id>  204
//!  POST /v3/users      201 {"user"}      409 name taken   DELETE /v3/users/<id>     204
//!  GET  /v3/users[/<id>]
//!  PUT|HEAD|DELETE /v3/projects/<p>/users/<u>/roles/<role>   204 (404 if one is unknown)
//!  GET  /v3/projects/<p>/users/<u>/roles
//! ```
//!
//! Tokens are [`crate::auth`]'s: a Keystone token works as `X-Auth-Token`
//! on `/midonet-api` and the reverse, and its [`Session::project`] is the
//! project it is scoped to.
//!
//! What there is to know about:
//!
//! * config users are `[[auth.users]]`; such a user's id is its name, its
//!   domain is `default` (`Default`);
//! * config projects are the `[[tenants]]` (id, name defaulting to the
//!   id), the tenants of users and `auth.admin_project`;
//! * roles: a config admin holds `admin`, `member` and `reader` on every
//!   project; a config tenant user holds `member` and `reader` on its
//!   tenant only, and asking for any other scope is a 401, as Keystone
//!   answers it;
//! * store users and projects are made by admins over the API, as
//!   tempest's dynamic credentials do (see [`crate::accounts`]): ids are 32
//!   hex digits, names may not collide with the config's (409); a store
//!   user holds the roles assigned to it, one of `admin`, `member` and
//!   `reader`, on projects of either kind. Its token maps `admin` to an
//!   admin session and anything else to a tenant session of the project,
//!   and is re-checked against the store at each use: deleting the user,
//!   the project or the role stops it. The config cannot be changed over
//!   the API (deleting or assigning to its users and projects is a 403).
//!
//! A token request without a scope gets the user's default project (its
//! tenant, or `admin_project` for admins) rather than an unscoped token:
//! OpenStack clients need a project to do anything. A system scope is an
//! admin's `admin_project`. With auth disabled anyone gets an admin token
//! on the project asked for, known or not.
//!
//! URLs in answers come from the request: `http://` + `Host` + the path the
//! router is nested at (the request's original path without the part the
//! router matched). A proxy in front must keep `Host`; `public_url` is not
//! used, as it names the MidoNet API, and the Neutron listener is another
//! port.
//!
//! Errors have Keystone's shape, `{"error": {"code", "title", "message"}}`;
//! the message names the request field at fault. A wrong password and an
//! unknown user get the same 401, so the answer does not tell which names
//! exist.
//!
//! Not served: changing users and projects (`PATCH`), creating roles and
//! domains, role assignments on domains and the system, groups,
//! `/v3/role_assignments`, application credentials, multi-factor rules,
//! `allow_expired`; store users on `/midonet-api/login`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::accounts;
use crate::auth::{Role, Session};
use crate::Cluster;

/// The identity API version served (Keystone Ussuri's).
pub const VERSION: &str = "v3.14";
/// The region of every catalog endpoint.
pub const REGION: &str = "RegionOne";
/// The one domain.
pub const DOMAIN_ID: &str = "default";
/// Its name.
pub const DOMAIN_NAME: &str = "Default";

/// [`router`] nested at `at` (`/identity`, `/neutron/identity`), and
/// `at/` as well: a nested router cannot match its mount point with a
/// trailing `/` (axum routes `at` to the inner `/` and nothing to `at/`).
/// Merge it into the application.
pub fn routes_at(at: &str) -> Router<Arc<Cluster>> {
    let at = at.trim_end_matches('/');
    Router::new().nest(at, router()).route(&format!("{at}/"), get(versions))
}

/// The routes, to nest at `/identity` (the mount point decides the URLs of
/// the catalog: see the module doc); [`routes_at`] also serves `/identity/`.
pub fn router() -> Router<Arc<Cluster>> {
    Router::new()
        .route("/", get(versions))
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .route("/v3/auth/tokens", get(validate).post(issue).delete(revoke))
        .route("/v3/auth/projects", get(auth_projects))
        .route("/v3/projects", get(list_projects).post(create_project))
        .route("/v3/projects/{id}", get(get_project).delete(delete_project))
        .route("/v3/projects/{project}/users/{user}/roles", get(list_user_roles))
        .route(
            "/v3/projects/{project}/users/{user}/roles/{role}",
            put(assign_role).head(check_role).delete(unassign_role),
        )
        .route("/v3/users", get(list_users).post(create_user))
        .route("/v3/users/{id}", get(get_user).delete(delete_user))
        .route("/v3/users/{id}/projects", get(user_projects))
        .route("/v3/domains", get(list_domains))
        .route("/v3/domains/{id}", get(get_domain))
        .route("/v3/roles", get(list_roles))
        .route("/v3/roles/{id}", get(get_role))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

/// An error in Keystone's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KsError {
    pub status: StatusCode,
    pub message: String,
}

/// Keystone's message for every failed authentication.
pub const UNAUTHORIZED: &str = "The request you have made requires authentication.";

impl KsError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        KsError { status, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
}

impl From<midonet_store::StoreError> for KsError {
    fn from(e: midonet_store::StoreError) -> Self {
        crate::error::ApiError::from(e).into()
    }
}

impl From<accounts::AccountError> for KsError {
    fn from(e: accounts::AccountError) -> Self {
        match e {
            accounts::AccountError::Conflict(m) => KsError::conflict(m),
            accounts::AccountError::NotFound(m) => KsError::not_found(m),
            accounts::AccountError::Store(e) => e.into(),
        }
    }
}

impl From<crate::error::ApiError> for KsError {
    fn from(e: crate::error::ApiError) -> Self {
        KsError::new(e.status, e.message)
    }
}

impl IntoResponse for KsError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "title": title,
            "message": self.message,
        }});
        json_response(self.status, &body)
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn not_found(OriginalUri(uri): OriginalUri) -> KsError {
    KsError::not_found(format!("Could not find {}.", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method) -> KsError {
    KsError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here."))
}

// ---------------------------------------------------------------- URLs

/// The absolute URLs of this mount: the identity endpoint and the network
/// endpoint (the mount's parent, with a trailing `/` as Neutron's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    /// `http://host/neutron/identity`, no trailing `/`.
    pub identity: String,
    /// `http://host/neutron/`.
    pub network: String,
}

impl Urls {
    /// From the `Host` header, the request's original path and the path
    /// the router matched inside its mount.
    pub fn from_paths(host: &str, original: &str, inner: &str) -> Urls {
        let trimmed = original.trim_end_matches('/');
        let mount = if original != inner {
            trimmed.strip_suffix(inner.trim_end_matches('/')).unwrap_or(trimmed)
        } else {
            // Not nested (or a route added next to the nest): the mount
            // is the path up to the first `identity` segment.
            let mut end = None;
            let mut at = 0;
            for seg in original.split('/') {
                at += seg.len();
                if seg == "identity" {
                    end = Some(at);
                    break;
                }
                at += 1;
            }
            end.map_or("", |e| &original[..e])
        };
        let parent = match mount.strip_suffix("/identity") {
            Some(p) => p,
            None => mount.rsplit_once('/').map_or("", |(p, _)| p),
        };
        Urls {
            identity: format!("http://{host}{mount}"),
            network: format!("http://{host}{parent}/"),
        }
    }
}

impl FromRequestParts<Arc<Cluster>> for Urls {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        cluster: &Arc<Cluster>,
    ) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| cluster.config.listen.to_string(), str::to_string);
        let inner = parts.uri.path();
        let original = parts.extensions.get::<OriginalUri>().map_or(inner, |o| o.0.path());
        let mut urls = Urls::from_paths(&host, original, inner);
        if cluster.config.api_tls.enabled() {
            for u in [&mut urls.identity, &mut urls.network] {
                *u = u.replacen("http://", "https://", 1);
            }
        }
        Ok(urls)
    }
}

// ------------------------------------------------------ the token request

/// Which project a token request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name(String),
}

/// The scope asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No scope: the user's default project.
    Default,
    /// `auth.scope.system`: an admin's `admin_project`.
    System,
    /// `auth.scope.project`; `default_domain` is false when the request
    /// named another domain, where nothing exists.
    Project { by: ProjectRef, default_domain: bool },
}

/// Who authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `password.user` by name or id (the same here), with its password.
    Password { user: String, password: String, default_domain: bool },
    /// `token.id`: rescope a token.
    Token { id: String },
}

/// A decoded `POST /v3/auth/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub methods: Vec<String>,
    pub identity: Identity,
    pub scope: Scope,
}

/// `path.key`, or `key` at the top.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The member `key` of the object `v` found at `path`, or 400 when `v` is
/// not an object. `null` counts as absent.
fn member<'a>(v: &'a Value, path: &str, key: &str) -> Result<Option<&'a Value>, KsError> {
    match v {
        Value::Object(m) => Ok(m.get(key).filter(|x| !x.is_null())),
        _ if path.is_empty() => Err(KsError::bad_request("the body must be a JSON object")),
        _ => Err(KsError::bad_request(format!("`{path}` must be an object"))),
    }
}

/// A required member that must be an object.
fn object<'a>(v: &'a Value, path: &str, key: &str) -> Result<&'a Value, KsError> {
    let full = join(path, key);
    match member(v, path, key)? {
        Some(x @ Value::Object(_)) => Ok(x),
        Some(_) => Err(KsError::bad_request(format!("`{full}` must be an object"))),
        None => Err(KsError::bad_request(format!("Expecting to find `{full}` in the request"))),
    }
}

/// An optional member that must be a non-empty string.
fn string(v: &Value, path: &str, key: &str) -> Result<Option<String>, KsError> {
    match member(v, path, key)? {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => {
            Err(KsError::bad_request(format!("`{}` must be a non-empty string", join(path, key))))
        }
    }
}

/// Whether an optional `domain` member of the object at `path` names the
/// default domain (by id or name, case aside); absent counts as default.
fn in_default_domain(v: &Value, path: &str) -> Result<bool, KsError> {
    let Some(d) = member(v, path, "domain")? else { return Ok(true) };
    let at = format!("{path}.domain");
    let id = string(d, &at, "id")?;
    let name = string(d, &at, "name")?;
    if id.is_none() && name.is_none() {
        return Err(KsError::bad_request(format!("`{at}` needs an `id` or a `name`")));
    }
    let default =
        |s: &Option<String>| s.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("default"));
    Ok(default(&id) && default(&name))
}

/// Decodes a token request. Errors are 400s naming the field; a method
/// this endpoint does not serve is a 401, as Keystone answers it.
pub fn parse_auth_request(body: &Value) -> Result<AuthRequest, KsError> {
    let auth = object(body, "", "auth")?;
    let identity = object(auth, "auth", "identity")?;
    let methods: Vec<String> = match member(identity, "auth.identity", "methods")? {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                KsError::bad_request("`auth.identity.methods` must be a list of strings")
            })?,
        Some(_) => {
            return Err(KsError::bad_request(
                "`auth.identity.methods` must be a non-empty list of strings",
            ))
        }
        None => {
            return Err(KsError::bad_request(
                "Expecting to find `auth.identity.methods` in the request",
            ))
        }
    };
    let who = if methods.iter().any(|m| m == "password") {
        let password = object(identity, "auth.identity", "password")?;
        let user = object(password, "auth.identity.password", "user")?;
        let at = "auth.identity.password.user";
        let name = string(user, at, "name")?;
        let id = string(user, at, "id")?;
        // A user's id is its name; the domain only matters for a name.
        let (user_name, default_domain) = match (name, id) {
            (Some(n), _) => (n, in_default_domain(user, at)?),
            (None, Some(i)) => (i, true),
            (None, None) => {
                return Err(KsError::bad_request(format!("`{at}` needs a `name` or an `id`")))
            }
        };
        let secret = match member(user, at, "password")? {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(KsError::bad_request(format!("`{at}.password` must be a string")))
            }
            None => {
                return Err(KsError::bad_request(format!(
                    "Expecting to find `{at}.password` in the request"
                )))
            }
        };
        Identity::Password { user: user_name, password: secret, default_domain }
    } else if methods.iter().any(|m| m == "token") {
        let token = object(identity, "auth.identity", "token")?;
        let id = string(token, "auth.identity.token", "id")?.ok_or_else(|| {
            KsError::bad_request("Expecting to find `auth.identity.token.id` in the request")
        })?;
        Identity::Token { id }
    } else {
        return Err(KsError::unauthorized(format!(
            "Attempted to authenticate with an unsupported method: {} (use password or token)",
            methods.join(", ")
        )));
    };
    let scope = match member(auth, "auth", "scope")? {
        None => Scope::Default,
        Some(Value::String(s)) if s == "unscoped" => Scope::Default,
        Some(scope @ Value::Object(_)) => {
            if let Some(p) = member(scope, "auth.scope", "project")? {
                let at = "auth.scope.project";
                let by = match (string(p, at, "id")?, string(p, at, "name")?) {
                    (Some(id), _) => ProjectRef::Id(id),
                    (None, Some(name)) => ProjectRef::Name(name),
                    (None, None) => {
                        return Err(KsError::bad_request(format!(
                            "`{at}` needs an `id` or a `name`"
                        )))
                    }
                };
                let default_domain = match by {
                    ProjectRef::Id(_) => true,
                    ProjectRef::Name(_) => in_default_domain(p, at)?,
                };
                Scope::Project { by, default_domain }
            } else if member(scope, "auth.scope", "system")?.is_some() {
                Scope::System
            } else if member(scope, "auth.scope", "domain")?.is_some() {
                return Err(KsError::unauthorized(
                    "domain-scoped tokens are not served: scope to a project or the system",
                ));
            } else {
                Scope::Default
            }
        }
        Some(_) => return Err(KsError::bad_request("`auth.scope` must be an object")),
    };
    Ok(AuthRequest { methods, identity: who, scope })
}

// ------------------------------------------------------------- projects

/// A Keystone project: a MidoNet tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    /// Made over the API ([`crate::accounts`]), not in the config.
    pub stored: bool,
}

impl Project {
    /// A config project.
    pub fn new(id: &str, name: &str) -> Project {
        Project {
            id: id.to_string(),
            name: name.to_string(),
            description: String::new(),
            enabled: true,
            stored: false,
        }
    }
    fn unnamed(id: &str) -> Project {
        Self::new(id, id)
    }
}

impl From<accounts::StoredProject> for Project {
    fn from(p: accounts::StoredProject) -> Project {
        Project {
            id: p.id,
            name: p.name,
            description: p.description,
            enabled: p.enabled,
            stored: true,
        }
    }
}

/// Every project: `[[tenants]]`, users' tenants and `admin_project`,
/// sorted by id.
pub fn known_projects(cluster: &Cluster) -> Vec<Project> {
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for t in &cluster.config.tenants {
        let name = if t.name.is_empty() { t.id.clone() } else { t.name.clone() };
        by_id.insert(t.id.clone(), name);
    }
    let extra = cluster.auth.user_tenants().chain([cluster.auth.admin_project()]);
    for id in extra {
        by_id.entry(id.to_string()).or_insert_with(|| id.to_string());
    }
    by_id.into_iter().map(|(id, name)| Project::new(&id, &name)).collect()
}

/// [`known_projects`] and the projects made over the API, config first.
pub async fn all_projects(cluster: &Cluster) -> Result<Vec<Project>, KsError> {
    let mut all = known_projects(cluster);
    let stored = accounts::list_projects(&cluster.store).await?;
    all.extend(stored.into_iter().map(Project::from));
    Ok(all)
}

/// A project by id, then by name.
fn find_project<'a>(projects: &'a [Project], key: &str) -> Option<&'a Project> {
    projects.iter().find(|p| p.id == key).or_else(|| projects.iter().find(|p| p.name == key))
}

/// The projects a role may scope to.
fn projects_of<'a>(projects: &'a [Project], role: &Role) -> Vec<&'a Project> {
    match role {
        Role::Admin => projects.iter().collect(),
        Role::Tenant(t) => projects.iter().filter(|p| &p.id == t).collect(),
    }
}

/// The project a token request gets, or why not (401, as Keystone). A
/// project named by name is matched by name first, then by id (clients
/// that know only tenant ids send them as names); by id, by id only.
/// `open` (auth disabled) accepts a project nobody configured.
pub fn resolve_scope(
    role: &Role,
    scope: &Scope,
    projects: &[Project],
    admin_project: &str,
    open: bool,
) -> Result<Project, KsError> {
    let by_id = |id: &str| projects.iter().find(|p| p.id == id).cloned();
    let default_of = |role: &Role| match role {
        Role::Admin => by_id(admin_project).unwrap_or_else(|| Project::unnamed(admin_project)),
        Role::Tenant(t) => by_id(t).unwrap_or_else(|| Project::unnamed(t)),
    };
    match scope {
        Scope::Default => Ok(default_of(role)),
        Scope::System if *role == Role::Admin => Ok(default_of(role)),
        Scope::System => {
            Err(KsError::unauthorized("only admins may take a system scope: scope to your project"))
        }
        Scope::Project { by, default_domain } => {
            let (key, found) = match by {
                ProjectRef::Id(id) => (id, by_id(id)),
                ProjectRef::Name(name) => (
                    name,
                    projects
                        .iter()
                        .find(|p| &p.name == name)
                        .or_else(|| projects.iter().find(|p| &p.id == name))
                        .cloned(),
                ),
            };
            let found = found.filter(|_| *default_domain);
            let project = match found {
                Some(p) => p,
                None if open => Project::unnamed(key),
                None => {
                    return Err(KsError::unauthorized(format!(
                        "Could not find project `{key}` in domain {DOMAIN_NAME}"
                    )))
                }
            };
            match role {
                Role::Tenant(t) if &project.id != t => Err(KsError::unauthorized(format!(
                    "the user has no role on project `{key}`: scope to its own project `{t}`"
                ))),
                _ => Ok(project),
            }
        }
    }
}

fn domain_ref() -> Value {
    json!({"id": DOMAIN_ID, "name": DOMAIN_NAME})
}

fn project_json(p: &Project, urls: &Urls) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "domain_id": DOMAIN_ID,
        "description": p.description,
        "enabled": p.enabled,
        "is_domain": false,
        "parent_id": DOMAIN_ID,
        "tags": [],
        "options": {},
        "links": {"self": format!("{}/v3/projects/{}", urls.identity, p.id)},
    })
}

fn collection(key: &str, items: Vec<Value>, self_url: String) -> Response {
    let body = json!({
        key: items,
        "links": {"self": self_url, "previous": null, "next": null},
    });
    json_response(StatusCode::OK, &body)
}

// ---------------------------------------------------------------- tokens

/// Keystone's time format: RFC 3339, UTC, microseconds, `Z`.
pub fn keystone_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, counted
/// in 400-year eras of 146097 days that start on a 1 March, so that the
/// leap day falls at the end of each year of the count.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from 1 March
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// A token's audit id: 22 URL-safe characters derived from the token, so
/// that logs can name a token without holding it.
fn audit_id(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// The roles a role holds on its projects.
fn role_names(role: &Role) -> &'static [&'static str] {
    match role {
        Role::Admin => &["admin", "member", "reader"],
        Role::Tenant(_) => &["member", "reader"],
    }
}

fn role_json(name: &str, urls: &Urls) -> Value {
    json!({
        "id": name,
        "name": name,
        "domain_id": null,
        "description": null,
        "options": {},
        "links": {"self": format!("{}/v3/roles/{name}", urls.identity)},
    })
}

fn catalog(urls: &Urls) -> Value {
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

/// The `{"token": ...}` body of a session, holding `roles` on its project.
/// A session without a project (an admin's from `/login`) is an unscoped
/// token: no project, roles or catalog.
#[allow(clippy::too_many_arguments)] // each is a part of the body; a struct would only rename them
pub fn token_body(
    token: &str,
    s: &Session,
    roles: &[String],
    methods: &[String],
    projects: &[Project],
    ttl: Duration,
    urls: &Urls,
    with_catalog: bool,
) -> Value {
    let issued = s.expires.checked_sub(ttl).unwrap_or(UNIX_EPOCH).min(SystemTime::now());
    let mut t = json!({
        "methods": methods,
        "expires_at": keystone_time(s.expires),
        "issued_at": keystone_time(issued),
        "audit_ids": [audit_id(token)],
        "user": {
            "id": s.user_id.as_deref().unwrap_or(&s.user),
            "name": s.user,
            "domain": domain_ref(),
            "password_expires_at": null,
        },
    });
    if let Some(id) = &s.project {
        let p =
            projects.iter().find(|p| &p.id == id).cloned().unwrap_or_else(|| Project::unnamed(id));
        t["project"] = json!({"id": p.id, "name": p.name, "domain": domain_ref()});
        t["roles"] = roles.iter().map(|r| json!({"id": r, "name": r})).collect();
        t["is_domain"] = json!(false);
        if with_catalog {
            t["catalog"] = catalog(urls);
        }
    }
    json!({ "token": t })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty())
}

/// The caller's session from `X-Auth-Token` (local tokens only: an
/// external Keystone's tokens are for its own identity endpoint).
async fn caller(cluster: &Cluster, h: &HeaderMap) -> Result<Session, KsError> {
    let token = header(h, "x-auth-token");
    if token.is_none() && cluster.auth.enabled() {
        return Err(KsError::unauthorized(format!("{UNAUTHORIZED} Send an X-Auth-Token.")));
    }
    cluster.auth.check_live(token).await.map_err(KsError::from)
}

/// The caller, who must be an admin for `action` (Keystone's policy name,
/// e.g. `identity:create_user`); 403 otherwise.
async fn admin(cluster: &Cluster, h: &HeaderMap, action: &str) -> Result<Session, KsError> {
    let me = caller(cluster, h).await?;
    if !me.is_admin() {
        return Err(KsError::forbidden(format!(
            "You are not authorized to perform the requested action: {action}."
        )));
    }
    Ok(me)
}

fn token_response(
    status: StatusCode,
    token: &str,
    body: Option<&Value>,
) -> Result<Response, KsError> {
    let mut r = match body {
        Some(b) => json_response(status, b),
        None => status.into_response(),
    };
    let value = HeaderValue::from_str(token)
        .map_err(|_| KsError::bad_request("the token is not a valid header value"))?;
    r.headers_mut().insert("x-subject-token", value);
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("X-Auth-Token"));
    Ok(r)
}

/// Who a token request authenticated.
enum Who {
    /// A config user (or anyone with auth disabled), with its role.
    Config(Role),
    /// A store user, by id: its roles depend on the project.
    Stored(String),
}

async fn issue(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    body: Bytes,
) -> Result<Response, KsError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| KsError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let req = parse_auth_request(&v)?;
    let auth = &cluster.auth;
    let open = !auth.enabled();
    let fresh = || SystemTime::now() + auth.ttl();
    let (user, who, expires) = match &req.identity {
        Identity::Password { user, .. } if open => {
            (user.clone(), Who::Config(Role::Admin), fresh())
        }
        Identity::Password { user, password, default_domain } => {
            let refused = || {
                tracing::info!(user, "keystone: authentication failed");
                KsError::unauthorized(UNAUTHORIZED)
            };
            if !default_domain {
                return Err(refused());
            }
            if let Some((name, role)) = auth.authenticate(user, password) {
                (name, Who::Config(role), fresh())
            } else if auth.user_role(user).is_some() {
                // A config user with a wrong password: no store read.
                return Err(refused());
            } else {
                let u = accounts::authenticate(&cluster.store, user, password)
                    .await?
                    .ok_or_else(refused)?;
                (u.name, Who::Stored(u.id), fresh())
            }
        }
        // A rescoped token ends when the token it came from ends.
        Identity::Token { id } => match auth.lookup_live(id).await? {
            Some(s) => {
                let who = s.user_id.map_or(Who::Config(s.role), Who::Stored);
                (s.user, who, s.expires)
            }
            None if open => ("admin".to_string(), Who::Config(Role::Admin), fresh()),
            None => return Err(KsError::unauthorized(format!("Could not find token: {id}"))),
        },
    };
    let projects = all_projects(&cluster).await?;
    let (project, role, roles, user_id) = match who {
        Who::Config(role) => {
            let p = resolve_scope(&role, &req.scope, &projects, auth.admin_project(), open)?;
            let roles = role_names(&role).iter().map(|r| r.to_string()).collect();
            (p, role, roles, None)
        }
        Who::Stored(id) => {
            let (p, roles) = store_scope(&cluster, &id, &req.scope, &projects).await?;
            (p.clone(), crate::auth::role_from_names(&roles, &p.id), roles, Some(id))
        }
    };
    let expires = crate::auth::whole_secs(expires);
    let session = Session { user, role, expires, project: Some(project.id.clone()), user_id };
    let token = auth.issue_session(session.clone());
    tracing::info!(user = session.user, project = project.id, "keystone token issued");
    let body =
        token_body(&token, &session, &roles, &req.methods, &projects, auth.ttl(), &urls, true);
    token_response(StatusCode::CREATED, &token, Some(&body))
}

/// The project a store user's token request gets and the user's roles on
/// it, or why not (401, as Keystone). Unscoped: the user's default project
/// if it has a role there, else the first project it has a role on. A
/// system scope is for config admins only.
async fn store_scope(
    cluster: &Cluster,
    user: &str,
    scope: &Scope,
    projects: &[Project],
) -> Result<(Project, Vec<String>), KsError> {
    let held = accounts::assignments_of(&cluster.store, user).await?;
    let usable = |p: &&Project| p.enabled;
    let (key, project) = match scope {
        Scope::System => {
            return Err(KsError::unauthorized(
                "only the config's admins may take a system scope: scope to a project",
            ))
        }
        Scope::Default => {
            let default = accounts::get_user(&cluster.store, user)
                .await?
                .and_then(|u| u.default_project_id)
                .filter(|p| held.contains_key(p));
            let id = default
                .or_else(|| held.keys().find(|id| projects.iter().any(|p| &p.id == *id)).cloned());
            let id = id.ok_or_else(|| {
                KsError::unauthorized("the user has no role on any project: assign it one")
            })?;
            (id.clone(), projects.iter().filter(usable).find(|p| p.id == id).cloned())
        }
        Scope::Project { by, default_domain } => {
            let found = match by {
                ProjectRef::Id(id) => (id, projects.iter().find(|p| &p.id == id)),
                ProjectRef::Name(name) => (
                    name,
                    projects
                        .iter()
                        .find(|p| &p.name == name)
                        .or_else(|| projects.iter().find(|p| &p.id == name)),
                ),
            };
            (found.0.clone(), found.1.filter(usable).filter(|_| *default_domain).cloned())
        }
    };
    let project = project.ok_or_else(|| {
        KsError::unauthorized(format!("Could not find project `{key}` in domain {DOMAIN_NAME}"))
    })?;
    match held.get(&project.id) {
        Some(roles) if !roles.is_empty() => Ok((project, roles.clone())),
        _ => Err(KsError::unauthorized(format!("the user has no role on project `{key}`"))),
    }
}

/// The role names a live session holds on its project: a store user's
/// assignments, a config user's fixed set.
async fn session_roles(cluster: &Cluster, s: &Session) -> Result<Vec<String>, KsError> {
    match (&s.user_id, &s.project) {
        (Some(user), Some(project)) => Ok(accounts::roles_on(&cluster.store, user, project).await?),
        _ => Ok(role_names(&s.role).iter().map(|r| r.to_string()).collect()),
    }
}

/// The subject token's session, if the caller may see it (admins see all,
/// a user its own tokens).
async fn subject(cluster: &Cluster, h: &HeaderMap) -> Result<(String, Session), KsError> {
    let me = caller(cluster, h).await?;
    let token = header(h, "x-subject-token")
        .ok_or_else(|| KsError::bad_request("Expecting to find the `X-Subject-Token` header"))?;
    let s = cluster
        .auth
        .lookup_live(token)
        .await?
        .ok_or_else(|| KsError::not_found(format!("Could not find token: {token}")))?;
    if !me.is_admin() && me.user != s.user {
        return Err(KsError::forbidden("only admins may look at other users' tokens"));
    }
    Ok((token.to_string(), s))
}

/// `GET` (and `HEAD`, which axum answers from `GET` without the body).
async fn validate(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, KsError> {
    let (token, s) = subject(&cluster, &headers).await?;
    let projects = all_projects(&cluster).await?;
    let roles = session_roles(&cluster, &s).await?;
    let methods = ["password".to_string()];
    let with_catalog = !q.contains_key("nocatalog");
    let ttl = cluster.auth.ttl();
    let body = token_body(&token, &s, &roles, &methods, &projects, ttl, &urls, with_catalog);
    token_response(StatusCode::OK, &token, Some(&body))
}

async fn revoke(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
) -> Result<Response, KsError> {
    let (token, s) = subject(&cluster, &headers).await?;
    if !cluster.auth.revoke(&token) {
        return Err(KsError::not_found(format!("Could not find token: {token}")));
    }
    // The other replicas learn it from the store.
    if let Err(e) = crate::auth::record_revocation(&cluster.store, &token, s.expires).await {
        tracing::warn!(error = %e, "a revoked token could not be recorded for the other replicas");
    }
    tracing::info!(user = s.user, "keystone token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------- other resources

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

async fn versions(urls: Urls) -> Response {
    let body = json!({"versions": {"values": [version_json(&urls)]}});
    json_response(StatusCode::MULTIPLE_CHOICES, &body)
}

async fn version(urls: Urls) -> Response {
    json_response(StatusCode::OK, &json!({"version": version_json(&urls)}))
}

/// The projects a session may see: all for admins (and with auth
/// disabled), its tenant's for a config tenant, those it has a role on for
/// a store user.
async fn visible(cluster: &Cluster, s: &Session) -> Result<Vec<Project>, KsError> {
    let projects = all_projects(cluster).await?;
    match (&s.user_id, &s.role) {
        (Some(user), Role::Tenant(_)) => user_projects_of(cluster, user, projects).await,
        _ => Ok(projects_of(&projects, &s.role).into_iter().cloned().collect()),
    }
}

/// The projects a store user has a role on.
async fn user_projects_of(
    cluster: &Cluster,
    user: &str,
    projects: Vec<Project>,
) -> Result<Vec<Project>, KsError> {
    let held = accounts::assignments_of(&cluster.store, user).await?;
    Ok(projects.into_iter().filter(|p| held.contains_key(&p.id)).collect())
}

async fn list_projects(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, KsError> {
    let me = caller(&cluster, &headers).await?;
    let items = visible(&cluster, &me)
        .await?
        .iter()
        .filter(|p| q.get("name").is_none_or(|n| &p.name == n))
        .filter(|p| q.get("id").is_none_or(|i| &p.id == i))
        .filter(|_| q.get("domain_id").is_none_or(|d| d == DOMAIN_ID))
        .map(|p| project_json(p, &urls))
        .collect();
    Ok(collection("projects", items, format!("{}/v3/projects", urls.identity)))
}

async fn get_project(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, KsError> {
    let me = caller(&cluster, &headers).await?;
    let projects = visible(&cluster, &me).await?;
    let p = find_project(&projects, &id)
        .ok_or_else(|| KsError::not_found(format!("Could not find project: {id}.")))?;
    Ok(json_response(StatusCode::OK, &json!({"project": project_json(p, &urls)})))
}

async fn user_projects(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Response, KsError> {
    let me = caller(&cluster, &headers).await?;
    let own = me.user == user || me.user_id.as_deref() == Some(user.as_str());
    if !me.is_admin() && !own {
        return Err(KsError::forbidden("only admins may list other users' projects"));
    }
    let projects = all_projects(&cluster).await?;
    let mine = match cluster.auth.user_role(&user) {
        Some(role) => projects_of(&projects, &role).into_iter().cloned().collect(),
        None => match accounts::get_user(&cluster.store, &user).await? {
            Some(u) => user_projects_of(&cluster, &u.id, projects).await?,
            None if !cluster.auth.enabled() => projects,
            None => return Err(KsError::not_found(format!("Could not find user: {user}."))),
        },
    };
    let items = mine.iter().map(|p| project_json(p, &urls)).collect();
    Ok(collection("projects", items, format!("{}/v3/users/{user}/projects", urls.identity)))
}

async fn auth_projects(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
) -> Result<Response, KsError> {
    let me = caller(&cluster, &headers).await?;
    let items = visible(&cluster, &me).await?.iter().map(|p| project_json(p, &urls)).collect();
    Ok(collection("projects", items, format!("{}/v3/auth/projects", urls.identity)))
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

async fn list_domains(
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

async fn get_domain(
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

async fn list_roles(
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

async fn get_role(
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

// ------------------------------------------------- the admin API (writes)

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

async fn create_project(
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

async fn delete_project(
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

async fn create_user(
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

async fn list_users(
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

async fn get_user(
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

async fn delete_user(
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

async fn assign_role(
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

async fn check_role(
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

async fn unassign_role(
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

async fn list_user_roles(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn password_body(user: Value, scope: Option<Value>) -> Value {
        let mut b = json!({"auth": {"identity": {
            "methods": ["password"],
            "password": {"user": user},
        }}});
        if let Some(s) = scope {
            b["auth"]["scope"] = s;
        }
        b
    }

    #[test]
    fn password_requests_parse() {
        let user = json!({"name": "alice", "domain": {"name": "Default"}, "password": "pw"});
        let scope = json!({"project": {"name": "t1", "domain": {"id": "default"}}});
        let r = parse_auth_request(&password_body(user.clone(), Some(scope))).expect("valid");
        assert_eq!(r.methods, ["password"]);
        assert_eq!(
            r.identity,
            Identity::Password {
                user: "alice".into(),
                password: "pw".into(),
                default_domain: true
            }
        );
        assert_eq!(
            r.scope,
            Scope::Project { by: ProjectRef::Name("t1".into()), default_domain: true }
        );
        // By user id, scoped by project id, and to the system.
        let by_id = json!({"id": "alice", "password": "pw"});
        let r = parse_auth_request(&password_body(
            by_id.clone(),
            Some(json!({"project": {"id": "p"}})),
        ))
        .expect("valid");
        assert!(matches!(r.identity, Identity::Password { ref user, .. } if user == "alice"));
        assert_eq!(
            r.scope,
            Scope::Project { by: ProjectRef::Id("p".into()), default_domain: true }
        );
        let r = parse_auth_request(&password_body(
            by_id.clone(),
            Some(json!({"system": {"all": true}})),
        ))
        .expect("valid");
        assert_eq!(r.scope, Scope::System);
        let r = parse_auth_request(&password_body(by_id, None)).expect("valid");
        assert_eq!(r.scope, Scope::Default);
        // Another domain parses; it resolves to nothing.
        let other = json!({"name": "alice", "domain": {"name": "Other"}, "password": "pw"});
        let r = parse_auth_request(&password_body(other, None)).expect("valid");
        assert!(matches!(r.identity, Identity::Password { default_domain: false, .. }));
    }

    #[test]
    fn token_requests_parse() {
        let b = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "abc"}},
                       "scope": {"project": {"name": "t2", "domain": {"name": "default"}}}}});
        let r = parse_auth_request(&b).expect("valid");
        assert_eq!(r.identity, Identity::Token { id: "abc".into() });
        assert_eq!(
            r.scope,
            Scope::Project { by: ProjectRef::Name("t2".into()), default_domain: true }
        );
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "the body must be a JSON object"),
            (json!({}), "`auth`"),
            (json!({"auth": 1}), "`auth` must be an object"),
            (json!({"auth": {}}), "`auth.identity`"),
            (json!({"auth": {"identity": {}}}), "`auth.identity.methods`"),
            (json!({"auth": {"identity": {"methods": []}}}), "`auth.identity.methods`"),
            (json!({"auth": {"identity": {"methods": [1]}}}), "`auth.identity.methods`"),
            (json!({"auth": {"identity": {"methods": ["password"]}}}), "`auth.identity.password`"),
            (
                password_body(json!("alice"), None),
                "`auth.identity.password.user` must be an object",
            ),
            (password_body(json!({"password": "pw"}), None), "`auth.identity.password.user`"),
            (password_body(json!({"name": "a"}), None), "`auth.identity.password.user.password`"),
            (
                password_body(json!({"name": 7, "password": "pw"}), None),
                "`auth.identity.password.user.name`",
            ),
            (
                password_body(json!({"name": "a", "password": "pw", "domain": {}}), None),
                "`auth.identity.password.user.domain`",
            ),
            (password_body(json!({"id": "a", "password": "pw"}), Some(json!(3))), "`auth.scope`"),
            (
                password_body(json!({"id": "a", "password": "pw"}), Some(json!({"project": {}}))),
                "`auth.scope.project`",
            ),
            (
                json!({"auth": {"identity": {"methods": ["token"], "token": {}}}}),
                "`auth.identity.token.id`",
            ),
        ];
        for (body, needle) in cases {
            let e = parse_auth_request(&body).expect_err("malformed");
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}: {e:?}");
            assert!(e.message.contains(needle), "{body}: {} lacks {needle}", e.message);
        }
        // A method not served is a 401, as Keystone answers it.
        let e = parse_auth_request(&json!({"auth": {"identity": {"methods": ["totp"]}}}))
            .expect_err("unsupported");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
    }

    fn projects() -> Vec<Project> {
        vec![
            Project::new("admin", "admin"),
            Project::new("t1", "Tenant One"),
            Project::unnamed("t2"),
        ]
    }

    fn project(by: ProjectRef) -> Scope {
        Scope::Project { by, default_domain: true }
    }

    #[test]
    fn scopes_resolve_by_role() {
        let ps = projects();
        let alice = Role::Tenant("t1".into());
        let resolve = |role: &Role, scope: Scope| resolve_scope(role, &scope, &ps, "admin", false);
        // Defaults: the tenant, the admin project.
        assert_eq!(resolve(&alice, Scope::Default).expect("own").id, "t1");
        assert_eq!(resolve(&Role::Admin, Scope::Default).expect("admin").id, "admin");
        assert_eq!(resolve(&Role::Admin, Scope::System).expect("system").id, "admin");
        // By name, by id, and an id given as a name.
        let by_name = resolve(&alice, project(ProjectRef::Name("Tenant One".into())));
        assert_eq!(by_name.expect("name"), ps[1]);
        assert_eq!(resolve(&alice, project(ProjectRef::Id("t1".into()))).expect("id").id, "t1");
        assert_eq!(resolve(&alice, project(ProjectRef::Name("t1".into()))).expect("id").id, "t1");
        // An id is not a name.
        let e = resolve(&Role::Admin, project(ProjectRef::Id("Tenant One".into())));
        assert_eq!(e.expect_err("no such id").status, StatusCode::UNAUTHORIZED);
        // Admins anywhere known; tenants only home; nobody elsewhere.
        assert_eq!(
            resolve(&Role::Admin, project(ProjectRef::Id("t2".into()))).expect("t2").id,
            "t2"
        );
        for scope in [
            project(ProjectRef::Id("t2".into())),
            project(ProjectRef::Name("admin".into())),
            Scope::System,
        ] {
            let e = resolve(&alice, scope.clone()).expect_err("not hers");
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{scope:?}");
        }
        let e = resolve(&Role::Admin, project(ProjectRef::Name("nope".into())));
        assert_eq!(e.expect_err("unknown").status, StatusCode::UNAUTHORIZED);
        let foreign = Scope::Project { by: ProjectRef::Name("t2".into()), default_domain: false };
        assert_eq!(
            resolve(&Role::Admin, foreign).expect_err("other domain").status,
            StatusCode::UNAUTHORIZED
        );
        // With auth off, an unknown project is taken as asked.
        let open = resolve_scope(
            &Role::Admin,
            &project(ProjectRef::Name("new".into())),
            &ps,
            "admin",
            true,
        );
        assert_eq!(open.expect("open"), Project::unnamed("new"));
    }

    #[test]
    fn urls_come_from_the_mount() {
        let u = Urls::from_paths("h:9696", "/identity/v3/auth/tokens", "/v3/auth/tokens");
        assert_eq!(u.identity, "http://h:9696/identity");
        assert_eq!(u.network, "http://h:9696/");
        let u = Urls::from_paths("h", "/neutron/identity/v3/", "/v3/");
        assert_eq!(
            (u.identity.as_str(), u.network.as_str()),
            ("http://h/neutron/identity", "http://h/neutron/")
        );
        // The mount point itself, nested (inner `/`) or routed beside it.
        for (original, inner) in
            [("/neutron/identity", "/"), ("/neutron/identity/", "/neutron/identity/")]
        {
            let u = Urls::from_paths("h", original, inner);
            assert_eq!(u.identity, "http://h/neutron/identity", "{original}");
            assert_eq!(u.network, "http://h/neutron/", "{original}");
        }
        // A project called `identity` does not confuse it.
        let u = Urls::from_paths("h", "/identity/v3/projects/identity", "/v3/projects/identity");
        assert_eq!(u.identity, "http://h/identity");
        // Mounted under another name: its parent serves the network.
        let u = Urls::from_paths("h", "/x/keystone/v3", "/v3");
        assert_eq!(
            (u.identity.as_str(), u.network.as_str()),
            ("http://h/x/keystone", "http://h/x/")
        );
    }

    #[test]
    fn times_are_rfc3339_with_microseconds() {
        assert_eq!(keystone_time(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T23:59:59.123456Z: a leap day, late in the day.
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 123_456_789);
        assert_eq!(keystone_time(t), "2024-02-29T23:59:59.123456Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
        assert_eq!(keystone_time(t), "2100-01-01T00:00:00.000000Z");
        // Day by day across 1999-2101 against a plain count.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        let month_len = |y: u64, m: u64| match m {
            2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        for days in 0..48_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn token_bodies_have_keystones_shape() {
        let urls = Urls::from_paths("h:9696", "/identity/v3/auth/tokens", "/v3/auth/tokens");
        // In the past, so that `issued_at` is not clamped to now.
        let expires = UNIX_EPOCH + Duration::from_secs(946_688_400); // 2000-01-01T01:00Z
        let ttl = Duration::from_secs(3600);
        let s = Session {
            user: "alice".into(),
            role: Role::Tenant("t1".into()),
            expires,
            project: Some("t1".into()),
            user_id: None,
        };
        let roles = ["member".to_string(), "reader".to_string()];
        let b = token_body("tok", &s, &roles, &["password".into()], &projects(), ttl, &urls, true);
        let t = &b["token"];
        assert_eq!(t["expires_at"], "2000-01-01T01:00:00.000000Z");
        assert_eq!(t["issued_at"], "2000-01-01T00:00:00.000000Z");
        assert_eq!(t["audit_ids"][0].as_str().map(str::len), Some(22));
        assert_eq!(
            t["user"],
            json!({"id": "alice", "name": "alice", "domain": {"id": "default", "name": "Default"}, "password_expires_at": null})
        );
        assert_eq!(
            t["project"],
            json!({"id": "t1", "name": "Tenant One", "domain": {"id": "default", "name": "Default"}})
        );
        assert_eq!(
            t["roles"],
            json!([{"id": "member", "name": "member"}, {"id": "reader", "name": "reader"}])
        );
        assert_eq!(t["is_domain"], false);
        let cat = t["catalog"].as_array().expect("catalog");
        assert_eq!(cat.len(), 2);
        assert_eq!(
            (cat[0]["type"].as_str(), cat[0]["name"].as_str()),
            (Some("network"), Some("neutron"))
        );
        assert_eq!(
            (cat[1]["type"].as_str(), cat[1]["name"].as_str()),
            (Some("identity"), Some("keystone"))
        );
        let eps = cat[0]["endpoints"].as_array().expect("endpoints");
        let ifaces: Vec<&str> = eps.iter().filter_map(|e| e["interface"].as_str()).collect();
        assert_eq!(ifaces, ["public", "internal", "admin"]);
        assert!(eps.iter().all(|e| e["url"] == "http://h:9696/"
            && e["region_id"] == "RegionOne"
            && e["region"] == "RegionOne"));
        assert_eq!(cat[1]["endpoints"][0]["url"], "http://h:9696/identity");
        // Without the catalog; and an admin from /login is unscoped.
        let b = token_body("tok", &s, &roles, &["password".into()], &projects(), ttl, &urls, false);
        assert!(b["token"].get("catalog").is_none());
        let login = Session {
            user: "admin".into(),
            role: Role::Admin,
            expires,
            project: None,
            user_id: None,
        };
        let b = token_body("tok", &login, &[], &["password".into()], &projects(), ttl, &urls, true);
        assert!(b["token"].get("project").is_none() && b["token"].get("catalog").is_none());
    }

    #[test]
    fn errors_have_keystones_shape() {
        let r = KsError::unauthorized(UNAUTHORIZED).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
