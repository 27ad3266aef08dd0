//! The OpenStack Neutron v2.0 API, served by the cluster over the same
//! store as the MidoNet API: one source of truth, one transaction per
//! change (no second copy to drift, unlike MidoNet's C3PO).
//!
//! ```text
//!  openstack / SDK / tempest ──HTTP──► :9696 (own listener)  or  :8181/neutron
//!     NCtx (X-Auth-Token → Session, project, base URL, query)
//!     ├─ GET /  /v2.0  /v2.0/extensions          discovery
//!     ├─ networks subnets subnetpools ports routers floatingips
//!     │  security-groups security-group-rules quotas
//!     │        parse body (body.rs) → check → txn! {
//!     │            read Neutron objects (compared on commit)
//!     │            write the Neutron object
//!     │            translate::* (pure) → store::replan (write the difference)
//!     │        }
//!     └─ list: filters, fields, sort_key/sort_dir, limit/marker/page_reverse
//! ```
//!
//! Neutron objects live under `/midonet/v1/neutron/<collection>/<id>`,
//! outside the topology key space, so agents never see them; the MidoNet
//! objects they translate to are ordinary topology objects, read-only over
//! the MidoNet API (409) while Neutron owns them.
//!
//! Visibility follows Neutron: an admin sees everything; a member sees its
//! project's objects, plus shared and external networks and their subnets.
//! Others' objects are 404, as if they did not exist. A token whose only
//! role is `reader` sees what a member sees and changes nothing: any
//! method but `GET` and `HEAD` is a 403 `PolicyNotAuthorized` before the
//! handler runs (see [`crate::auth`], "Readers").

mod agent;
pub mod body;
pub mod error;
pub mod ipam;
mod network;
mod port;
mod quota;
mod router;
mod secgroup;
pub mod store;
mod subnet;
mod subnetpool;
mod tag;
pub mod translate;
pub mod types;

use std::cmp::Ordering;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{json, Map, Value};

use self::error::{NResult, NeutronError};
use crate::auth::Session;
use crate::db::Tx;
use crate::Cluster;

/// [`crate::txn!`] for Neutron handlers: the body's errors are
/// [`NeutronError`]s; conflicts and store failures convert to them.
#[macro_export]
macro_rules! ntxn {
    ($cluster:expr, $tx:ident => $body:expr) => {
        $crate::txn!($cluster, $tx as $crate::neutron::error::NeutronError => $body)
    };
}

/// The project of objects created without one under `--no-auth`.
pub const DEFAULT_PROJECT: &str = "admin";

/// Per-request context of the Neutron API.
pub struct NCtx {
    pub cluster: Arc<Cluster>,
    pub session: Session,
    /// Absolute URL of the endpoint root (`http://host:9696` or
    /// `http://host:8181/neutron`), without a trailing slash.
    pub base: String,
    /// The query, repeated keys kept.
    pub query: Vec<(String, String)>,
}

impl FromRequestParts<Arc<Cluster>> for NCtx {
    type Rejection = NeutronError;

    async fn from_request_parts(
        parts: &mut Parts,
        cluster: &Arc<Cluster>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts.headers.get("x-auth-token").and_then(|v| v.to_str().ok());
        let session = cluster.auth.check_request(token, &parts.method).await.map_err(|e| {
            // A reader's write: 403 as Neutron's policy engine answers it.
            let (status, kind) = match e.status {
                StatusCode::FORBIDDEN => (e.status, "PolicyNotAuthorized"),
                _ => (StatusCode::UNAUTHORIZED, "HTTPUnauthorized"),
            };
            NeutronError::new(status, kind, e.message)
        })?;
        let base = endpoint_base(parts, cluster);
        let query = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (crate::api::ctx::percent_decode(k), crate::api::ctx::percent_decode(v))
            })
            .collect();
        Ok(NCtx { cluster: cluster.clone(), session, base, query })
    }
}

/// Absolute URL of the endpoint root this request came in through.
fn endpoint_base(parts: &Parts, cluster: &Cluster) -> String {
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path().to_string(), |u| u.path().to_string());
    let prefix = path
        .find("/v2.0")
        .map_or_else(|| path.trim_end_matches('/').to_string(), |i| path[..i].to_string());
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| cluster.config.listen.to_string(), str::to_string);
    format!("{}://{host}{prefix}", cluster.config.api_scheme())
}

/// The endpoint's root URL, for the one document served without a token.
pub struct Base(String);

impl FromRequestParts<Arc<Cluster>> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        cluster: &Arc<Cluster>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Base(endpoint_base(parts, cluster)))
    }
}

impl NCtx {
    pub fn tx(&self) -> Tx {
        self.cluster.tx()
    }
    pub fn is_admin(&self) -> bool {
        self.session.is_admin()
    }
    /// The caller's project: what new objects belong to by default.
    pub fn project(&self) -> String {
        match self.session.tenant() {
            Some(t) => t.to_string(),
            None => self.session.project.clone().unwrap_or_else(|| {
                if self.cluster.auth.enabled() {
                    self.cluster.auth.admin_project().to_string()
                } else {
                    DEFAULT_PROJECT.to_string()
                }
            }),
        }
    }
    /// Whether the caller may see an object of `project`.
    pub fn owns(&self, project: &str) -> bool {
        self.is_admin() || self.session.tenant() == Some(project)
    }
    /// The project of a new object: the body's `project_id`/`tenant_id`
    /// (only admins may name another project than their own), else the
    /// caller's.
    pub fn new_project(&self, m: &Map<String, Value>) -> NResult<String> {
        let given = body::opt_string(m, "project_id")?.or(body::opt_string(m, "tenant_id")?);
        if let (Some(p), Some(t)) =
            (body::opt_string(m, "project_id")?, body::opt_string(m, "tenant_id")?)
        {
            if p != t {
                return Err(NeutronError::bad_request("'project_id' and 'tenant_id' do not match"));
            }
        }
        match given {
            Some(p) if p.is_empty() => Err(NeutronError::invalid("project_id", "'' is too short")),
            Some(p) if !self.is_admin() && p != self.project() => {
                Err(NeutronError::forbidden("Only admin can create a resource for another project"))
            }
            Some(p) => Ok(p),
            None => Ok(self.project()),
        }
    }
    /// Values of a query key.
    pub fn query_all(&self, key: &str) -> Vec<&str> {
        self.query.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
    fn fields(&self) -> Vec<String> {
        self.query_all("fields")
            .into_iter()
            .flat_map(|f| f.split(','))
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Keeps only the requested `fields` (all when none are asked for) and
/// drops bookkeeping (`_`-prefixed) attributes.
pub fn project_fields(v: &mut Value, fields: &[String]) {
    if let Value::Object(m) = v {
        m.retain(|k, _| !k.starts_with('_'));
        if !fields.is_empty() {
            m.retain(|k, _| fields.iter().any(|f| f == k));
        }
    }
}

/// `200 {"<singular>": {...}}` (or 201 for creates).
pub fn one(ctx: &NCtx, status: StatusCode, singular: &str, mut v: Value) -> Response {
    project_fields(&mut v, &ctx.fields());
    json_response(status, &json!({ singular: v }))
}

/// `201 {"<plural>": [...]}` for a bulk create.
pub fn bulk(plural: &str, items: Vec<Value>) -> Response {
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut v| {
            project_fields(&mut v, &[]);
            v
        })
        .collect();
    json_response(StatusCode::CREATED, &json!({ plural: items }))
}

pub fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Query keys that are not attribute filters.
const RESERVED: &[&str] =
    &["fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse", "verbose"];

/// Whether an attribute value matches one filter value (query strings
/// carry everything as text: `True`, `4`, `ip_address=10.0.0.5`).
fn filter_matches(attr: &Value, want: &str) -> bool {
    match attr {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want.eq_ignore_ascii_case("none"),
        Value::Array(items) => match want.split_once('=') {
            // fixed_ips=ip_address_substr=10.0.0 (ip-substring-filtering)
            Some(("ip_address_substr", v)) => items.iter().any(|i| {
                i.get("ip_address").and_then(Value::as_str).is_some_and(|a| a.contains(v))
            }),
            // fixed_ips=ip_address=10.0.0.5, fixed_ips=subnet_id=<id>
            Some((k, v)) => items.iter().any(|i| i.get(k).and_then(Value::as_str) == Some(v)),
            None => items.iter().any(|i| filter_matches(i, want)),
        },
        Value::Object(_) => false,
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

/// A list answer: filters, sort, marker/limit paging with links, fields.
pub fn list(ctx: &NCtx, plural: &str, path: &str, mut items: Vec<Value>) -> NResult<Response> {
    // Filters: each key must match one of its values.
    let mut keys: Vec<&str> =
        ctx.query.iter().map(|(k, _)| k.as_str()).filter(|k| !RESERVED.contains(k)).collect();
    keys.dedup();
    for k in keys {
        if tag::FILTERS.contains(&k) {
            let wants = ctx.query_all(k);
            items.retain(|v| tag::matches(k, &wants, v));
            continue;
        }
        // A filter on an attribute the resource does not have is ignored,
        // as by Neutron without the filter-validation extension (which we
        // do not list): clients written for that still get their lists.
        if !items.iter().any(|v| v.get(k).is_some()) {
            continue;
        }
        let wants = ctx.query_all(k);
        items.retain(|v| {
            let attr = v.get(k).unwrap_or(&Value::Null);
            wants.iter().any(|w| filter_matches(attr, w))
        });
    }
    // Sort: sort_key/sort_dir pairs, then id for a stable order.
    let sort_keys = ctx.query_all("sort_key");
    let dirs = ctx.query_all("sort_dir");
    for (i, d) in dirs.iter().enumerate() {
        if !matches!(*d, "asc" | "desc") {
            return Err(NeutronError::bad_request(format!(
                "Sort direction '{d}' is not supported: use 'asc' or 'desc'"
            )));
        }
        if i >= sort_keys.len() {
            return Err(NeutronError::bad_request(
                "The number of sort_keys and sort_dirs must be same",
            ));
        }
    }
    if let Some(bad) =
        sort_keys.iter().find(|k| items.first().is_some_and(|v| v.get(**k).is_none()))
    {
        return Err(NeutronError::bad_request(format!(
            "'{bad}' is an invalid attribute for sort_keys"
        )));
    }
    let reverse =
        ctx.query_all("page_reverse").first().is_some_and(|v| v.eq_ignore_ascii_case("true"));
    items.sort_by(|a, b| {
        for (i, k) in sort_keys.iter().enumerate() {
            let o =
                cmp_values(a.get(*k).unwrap_or(&Value::Null), b.get(*k).unwrap_or(&Value::Null));
            let o = if dirs.get(i) == Some(&"desc") { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        cmp_values(&a["id"], &b["id"])
    });
    if reverse {
        items.reverse();
    }
    let limit = match ctx.query_all("limit").first() {
        None => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => {
                return Err(NeutronError::bad_request(format!(
                    "Limit must be an integer 0 or greater and not '{l}'"
                )))
            }
        },
    };
    let marker = ctx.query_all("marker").first().map(|m| m.to_string());
    if let Some(m) = &marker {
        let pos = items.iter().position(|v| v["id"].as_str() == Some(m.as_str()));
        let Some(pos) = pos else {
            return Err(NeutronError::new(
                StatusCode::NOT_FOUND,
                "MarkerNotFound",
                format!("Marker {m} could not be found."),
            ));
        };
        items.drain(..=pos);
    }
    let mut links = Vec::new();
    if let Some(n) = limit {
        let more = items.len() > n;
        items.truncate(n);
        let page = |rel: &str, marker: &str, rev: bool| {
            let mut q: Vec<String> = ctx
                .query
                .iter()
                .filter(|(k, _)| k != "marker" && k != "page_reverse")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            q.push(format!("marker={marker}"));
            if rev {
                q.push("page_reverse=True".into());
            }
            json!({"rel": rel, "href": format!("{}/v2.0/{path}?{}", ctx.base, q.join("&"))})
        };
        let (first, last) = (
            items.first().and_then(|v| v["id"].as_str()).map(str::to_string),
            items.last().and_then(|v| v["id"].as_str()).map(str::to_string),
        );
        if more {
            if let Some(l) = &last {
                links.push(page("next", l, reverse));
            }
        }
        if marker.is_some() {
            if let Some(f) = &first {
                links.push(page("previous", f, !reverse));
            }
        }
        if reverse {
            items.reverse();
            links.reverse();
        }
    }
    let fields = ctx.fields();
    for v in &mut items {
        project_fields(v, &fields);
    }
    let mut out = Map::new();
    out.insert(plural.to_string(), Value::Array(items));
    if !links.is_empty() {
        out.insert(format!("{plural}_links"), Value::Array(links));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}

// ---------------------------------------------------------------- discovery

/// The extensions this server implements (and only those: clients branch
/// on the list).
const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("security-group", "security-group", "The security groups extension."),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP. For example PXE boot options to DHCP clients can be specified (e.g. tftp-server, server-ip-address, bootfile-name)"),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("sorting", "Sorting support", "Enabled sorting support."),
    ("pagination", "Pagination support", "Enabled pagination support."),
    ("fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource"),
    ("tag", "Tag support", "Enables to set tag on resources (networks, subnets, subnet pools, ports, routers, floating IPs, security groups here)."),
    ("tag-ext", "Tag support for resources: subnet, subnetpool, port, router", "Extends tag support to more L2 and L3 resources."),
    ("standard-attr-tag", "Tag support for resources with standard attribute: trunk, policy, security_group, floatingip", "Enables to set tag on resources with standard attribute."),
    ("service-type", "Neutron Service Type Management", "API for retrieving service providers for Neutron advanced services"),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    ("ip-substring-filtering", "IP address substring filtering", "Provides IP address substring filtering when listing ports"),
];

fn extension_json(alias: &str, name: &str, description: &str) -> Value {
    json!({"alias": alias, "name": name, "description": description,
           "updated": "2026-12-01T00:00:00-00:00", "links": []})
}

/// `GET /`: the version document (`openstack` reads it before each
/// command). Served without a token, as Neutron's: version discovery
/// happens before a client has one, and the document names nothing but
/// the endpoint.
pub async fn versions(Base(base): Base) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"versions": [{"id": "v2.0", "status": "CURRENT",
            "links": [{"href": format!("{base}/v2.0/"), "rel": "self"}]}]}),
    )
}

async fn v2_root(ctx: NCtx) -> Response {
    let res: Vec<Value> = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("subnetpool", "subnetpools"),
        ("port", "ports"),
        ("router", "routers"),
        ("floatingip", "floatingips"),
        ("security_group", "security-groups"),
        ("security_group_rule", "security-group-rules"),
        ("quota", "quotas"),
    ]
    .iter()
    .map(|(n, c)| {
        json!({"name": n, "collection": c.replace('-', "_"),
               "links": [{"rel": "self", "href": format!("{}/v2.0/{c}", ctx.base)}]})
    })
    .collect();
    json_response(StatusCode::OK, &json!({ "resources": res }))
}

/// `GET /v2.0/service-providers`: who implements each service. The one
/// service here is the L3 router (NAT included), done by the cluster's
/// own translation, not a plugin driver.
async fn service_providers(ctx: NCtx) -> NResult<Response> {
    let items = vec![json!({"service_type": "L3_ROUTER_NAT", "name": "midonet", "default": true})];
    list(&ctx, "service_providers", "service-providers", items)
}

async fn extensions(_ctx: NCtx) -> Response {
    let list: Vec<Value> = EXTENSIONS.iter().map(|(a, n, d)| extension_json(a, n, d)).collect();
    json_response(StatusCode::OK, &json!({ "extensions": list }))
}

async fn extension(
    _ctx: NCtx,
    axum::extract::Path(alias): axum::extract::Path<String>,
) -> NResult<Response> {
    let (a, n, d) = EXTENSIONS.iter().find(|(a, _, _)| *a == alias).ok_or_else(|| {
        NeutronError::new(
            StatusCode::NOT_FOUND,
            "ExtensionNotFound",
            format!("Extension with alias {alias} does not exist"),
        )
    })?;
    Ok(json_response(StatusCode::OK, &json!({ "extension": extension_json(a, n, d) })))
}

async fn fallback(uri: axum::http::Uri) -> NeutronError {
    NeutronError::new(
        StatusCode::NOT_FOUND,
        "HTTPNotFound",
        format!("The resource could not be found: {}", uri.path()),
    )
}

/// The Neutron API's routes, relative to its mount point.
pub fn routes() -> axum::Router<Arc<Cluster>> {
    axum::Router::new()
        .route("/", get(versions))
        .route("/v2.0", get(v2_root))
        .route("/v2.0/", get(v2_root))
        .route("/v2.0/extensions", get(extensions))
        .route("/v2.0/extensions/{alias}", get(extension))
        .route("/v2.0/service-providers", get(service_providers))
        .route("/v2.0/agents", get(agent::list))
        .route("/v2.0/agents/{id}", get(agent::show))
        .route("/v2.0/networks", get(network::list).post(network::create))
        .route(
            "/v2.0/networks/{id}",
            get(network::show).put(network::update).delete(network::delete),
        )
        .route("/v2.0/subnets", get(subnet::list).post(subnet::create))
        .route("/v2.0/subnets/{id}", get(subnet::show).put(subnet::update).delete(subnet::delete))
        .route("/v2.0/subnetpools", get(subnetpool::list).post(subnetpool::create))
        .route(
            "/v2.0/subnetpools/{id}",
            get(subnetpool::show).put(subnetpool::update).delete(subnetpool::delete),
        )
        .route("/v2.0/ports", get(port::list).post(port::create))
        .route("/v2.0/ports/{id}", get(port::show).put(port::update).delete(port::delete))
        .route("/v2.0/routers", get(router::list).post(router::create))
        .route("/v2.0/routers/{id}", get(router::show).put(router::update).delete(router::delete))
        .route("/v2.0/routers/{id}/add_router_interface", put(router::add_interface))
        .route("/v2.0/routers/{id}/remove_router_interface", put(router::remove_interface))
        .route("/v2.0/floatingips", get(router::list_fips).post(router::create_fip))
        .route(
            "/v2.0/floatingips/{id}",
            get(router::show_fip).put(router::update_fip).delete(router::delete_fip),
        )
        .route("/v2.0/security-groups", get(secgroup::list).post(secgroup::create))
        .route(
            "/v2.0/security-groups/{id}",
            get(secgroup::show).put(secgroup::update).delete(secgroup::delete),
        )
        .route("/v2.0/security-group-rules", get(secgroup::list_rules).post(secgroup::create_rule))
        .route(
            "/v2.0/security-group-rules/{id}",
            get(secgroup::show_rule).delete(secgroup::delete_rule),
        )
        .route(
            "/v2.0/{resources}/{id}/tags",
            get(tag::list).put(tag::replace).delete(tag::remove_all),
        )
        .route(
            "/v2.0/{resources}/{id}/tags/{tag}",
            get(tag::check).put(tag::add).delete(tag::remove),
        )
        .route("/v2.0/quotas", get(quota::list))
        .route("/v2.0/quotas/{project}", get(quota::show).put(quota::update).delete(quota::reset))
        .route("/v2.0/quotas/{project}/default", get(quota::defaults))
        .fallback(fallback)
}

/// The Neutron API as a whole application, for its own listener, with
/// the Keystone-compatible identity endpoint at `/identity`, and the main
/// API's request metrics and last-resort panic guard.
pub fn app(cluster: Arc<Cluster>) -> axum::Router {
    axum::Router::new()
        .merge(crate::identity::routes_at("/identity"))
        .merge(routes())
        .layer(axum::middleware::from_fn_with_state(cluster.clone(), crate::api::observe))
        .with_state(cluster)
}
