//! Tokens: `POST /v3/auth/tokens` issues one (password, or a token to
//! rescope), `GET`/`HEAD` validates and `DELETE` revokes one; and the
//! `{"token": ...}` body Keystone answers with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::catalog::{catalog, domain_ref, role_names};
use super::project::{all_projects, resolve_scope, Project};
use super::request::{parse_auth_request, Identity, ProjectRef, Scope};
// `header` brings both of mod.rs's: axum's header module and its fn header.
use super::{caller, header, json_response, KsError, Urls, DOMAIN_NAME, UNAUTHORIZED};
use crate::accounts;
use crate::auth::{Role, Session};
use crate::Cluster;

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

pub(super) async fn issue(
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
    let project_id = Some(project.id.clone());
    // A config user holds `member` (or `admin`): only a store reader reads only.
    let read_only = crate::auth::reads_only(&roles);
    let session = Session { user, role, expires, project: project_id, user_id, read_only };
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
pub(super) async fn validate(
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

pub(super) async fn revoke(
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

#[cfg(test)]
mod tests {
    use super::super::project::tests::projects;
    use super::*;

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
            read_only: false,
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
            read_only: false,
        };
        let b = token_body("tok", &login, &[], &["password".into()], &projects(), ttl, &urls, true);
        assert!(b["token"].get("project").is_none() && b["token"].get("catalog").is_none());
    }
}
