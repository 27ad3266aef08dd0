//! Projects: the config's (`[[tenants]]`, users' tenants,
//! `admin_project`) and the store's ([`crate::accounts`]); which one a
//! token request gets; and the read side of `/v3/projects`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::request::{ProjectRef, Scope};
use super::{caller, collection, json_response, KsError, Urls, DOMAIN_ID, DOMAIN_NAME};
use crate::accounts;
use crate::auth::{Role, Session};
use crate::Cluster;

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
    pub(super) fn unnamed(id: &str) -> Project {
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
pub(super) fn projects_of<'a>(projects: &'a [Project], role: &Role) -> Vec<&'a Project> {
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
pub(super) fn project_json(p: &Project, urls: &Urls) -> Value {
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

pub(super) async fn list_projects(
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

pub(super) async fn get_project(
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

pub(super) async fn user_projects(
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

pub(super) async fn auth_projects(
    State(cluster): State<Arc<Cluster>>,
    urls: Urls,
    headers: HeaderMap,
) -> Result<Response, KsError> {
    let me = caller(&cluster, &headers).await?;
    let items = visible(&cluster, &me).await?.iter().map(|p| project_json(p, &urls)).collect();
    Ok(collection("projects", items, format!("{}/v3/auth/projects", urls.identity)))
}

#[cfg(test)]
pub(super) mod tests {
    use axum::http::StatusCode;

    use super::*;

    pub(in crate::identity) fn projects() -> Vec<Project> {
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
}
