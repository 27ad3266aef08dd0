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
//!   read-only when `reader` is its only role there (403 for any write on
//!   the MidoNet and Neutron APIs: [`crate::auth`], "Readers"), and is
//!   re-checked against the store at each use: deleting the user, the
//!   project or the role stops it, granting `member` lets it write. The
//!   config cannot be changed over the API (deleting or assigning to its
//!   users and projects is a 403). This endpoint's own writes are an
//!   admin's, so a reader makes none; it may still get, validate and
//!   revoke its own tokens.
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
//!
//! The parts:
//!
//! ```text
//!  mod.rs      routes, Keystone's error body, URLs of the mount, the caller
//!  request.rs  POST /v3/auth/tokens bodies, decoded and checked
//!  token.rs    issue, validate and revoke tokens; their JSON body
//!  project.rs  projects (config and store) and which a user may scope to
//!  catalog.rs  what nobody creates: versions, the catalog, the domain, roles
//!  admin.rs    the admin API: projects, users and role assignments
//! ```

mod admin;
mod catalog;
mod project;
mod request;
mod token;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};

use self::admin::{
    assign_role, check_role, create_project, create_user, delete_project, delete_user, get_user,
    list_user_roles, list_users, unassign_role,
};
use self::catalog::{get_domain, get_role, list_domains, list_roles, version, versions};
pub use self::project::{all_projects, known_projects, resolve_scope, Project};
use self::project::{auth_projects, get_project, list_projects, user_projects};
pub use self::request::{parse_auth_request, AuthRequest, Identity, ProjectRef, Scope};
use self::token::{issue, revoke, validate};
pub use self::token::{keystone_time, token_body};
use crate::accounts;
use crate::auth::Session;
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
fn collection(key: &str, items: Vec<Value>, self_url: String) -> Response {
    let body = json!({
        key: items,
        "links": {"self": self_url, "previous": null, "next": null},
    });
    json_response(StatusCode::OK, &body)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn errors_have_keystones_shape() {
        let r = KsError::unauthorized(UNAUTHORIZED).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
