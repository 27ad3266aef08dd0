//! The REST API: MidoNet 5.x resources under `/midonet-api`.
//!
//! ```text
//!  request ─► observe (metrics, panic guard, JSON 404/405) ─► route
//!     ─► Ctx extractor (token → Session, Accept check, base URL)
//!     ─► handler: generic::<Kind> (table-driven) | sub::* | root/login/...
//!     ─► txn! { read, check, write } ─► Store
//! ```
//!
//! Routes are registered through [`Builder`], which records a [`RouteDoc`]
//! for each verb; the OpenAPI document is generated from that list, so it
//! cannot drift from what is served.

pub mod ctx;
pub mod generic;
pub mod kinds;
pub mod openapi;
pub mod sub;
pub mod trace;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Extension;
use futures::FutureExt;
use midonet_model::kind::ObjectKind;
use serde_json::{json, Map, Value};

use self::ctx::{Ctx, API_PREFIX};
use self::kinds::Kind;
use crate::error::ApiError;
use crate::Cluster;

/// One documented verb of one route.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub path: String,
    pub method: &'static str,
    pub summary: String,
    /// Component schema of the body/response object, if any.
    pub schema: Option<&'static str>,
    /// The response is an array of `schema`.
    pub list: bool,
    /// Success status.
    pub status: u16,
    /// Whether the request has a JSON body.
    pub body: bool,
}

/// Registers routes and their documentation together.
pub struct Builder {
    router: axum::Router<Arc<Cluster>>,
    docs: Vec<RouteDoc>,
}

/// Shorthand for a doc entry: (method, summary, schema, list, status, body).
pub type D = (&'static str, String, Option<&'static str>, bool, u16, bool);

impl Builder {
    fn new() -> Self {
        Builder { router: axum::Router::new(), docs: Vec::new() }
    }

    /// Adds `path` (relative to the API prefix) with its verbs.
    pub fn route(mut self, path: &str, mr: MethodRouter<Arc<Cluster>>, docs: Vec<D>) -> Self {
        let full = format!("{API_PREFIX}{path}");
        for (method, summary, schema, list, status, body) in docs {
            self.docs.push(RouteDoc {
                path: full.clone(),
                method,
                summary,
                schema,
                list,
                status,
                body,
            });
        }
        self.router = self.router.route(&full, mr);
        self
    }

    /// The table-driven routes of one kind: its collection, `{id}`, and
    /// its collection under each parent kind.
    fn kind<T: Kind>(self) -> Self {
        let d = T::DESC;
        let seg = T::KIND.segment();
        let schema = d.media;
        let mut coll = MethodRouter::new();
        let mut coll_docs = Vec::new();
        if d.verbs.list {
            coll = coll.get(generic::list::<T>);
            coll_docs.push(doc::list(&format!("List {}s", d.what), schema));
        }
        if d.verbs.create {
            coll = coll.post(generic::create::<T>);
            coll_docs.push(doc::create(&format!("Create a {}", d.what), schema));
        }
        let mut one = MethodRouter::new();
        let mut one_docs = Vec::new();
        if d.verbs.get {
            one = one.get(generic::get_one::<T>);
            one_docs.push(doc::get(&format!("Get a {}", d.what), schema));
        }
        if d.verbs.update {
            one = one.put(generic::update::<T>);
            one_docs.push(doc::replace(&format!("Replace a {}", d.what), schema));
        }
        if d.verbs.delete {
            one = one.delete(generic::delete::<T>);
            one_docs.push(doc::delete(&format!("Delete a {}", d.what)));
        }
        let mut b = self;
        if !coll_docs.is_empty() {
            b = b.route(&format!("/{seg}"), coll, coll_docs);
        }
        b = b.route(&format!("/{seg}/{{id}}"), one, one_docs);
        for &parent in d.parents {
            let of = parent.segment().trim_end_matches('s').replace('_', " ");
            let mr: MethodRouter<Arc<Cluster>> =
                get(move |ctx: Ctx, Path(id): Path<String>| async move {
                    generic::list_children::<T>(&ctx, parent, &id).await
                })
                .post(
                    move |ctx: Ctx, Path(id): Path<String>, body: Bytes| async move {
                        generic::create_child::<T>(&ctx, parent, &id, &body).await
                    },
                );
            b = b.route(
                &format!("/{}/{{id}}/{seg}", parent.segment()),
                mr,
                vec![
                    doc::list(&format!("List the {}s of a {of}", d.what), schema),
                    doc::create(&format!("Create a {} in a {of}", d.what), schema),
                ],
            );
        }
        b
    }
}

/// Doc entries by verb shape.
pub mod doc {
    use super::D;

    /// `GET` of a collection of `schema`.
    pub fn list(summary: &str, schema: &'static str) -> D {
        ("get", summary.to_string(), Some(schema), true, 200, false)
    }
    /// `GET` of one `schema`.
    pub fn get(summary: &str, schema: &'static str) -> D {
        ("get", summary.to_string(), Some(schema), false, 200, false)
    }
    /// `POST` of a `schema` body, 201.
    pub fn create(summary: &str, schema: &'static str) -> D {
        ("post", summary.to_string(), Some(schema), false, 201, true)
    }
    /// `PUT` of a `schema` body, 204.
    pub fn replace(summary: &str, schema: &'static str) -> D {
        ("put", summary.to_string(), Some(schema), false, 204, true)
    }
    /// `DELETE`, 204.
    pub fn delete(summary: &str) -> D {
        ("delete", summary.to_string(), None, false, 204, false)
    }
}

/// Builds the whole HTTP application for a cluster.
pub fn app(cluster: Arc<Cluster>) -> axum::Router {
    let b = Builder::new()
        .route(
            "",
            get(root),
            vec![(
                "get",
                "The root document: collection URIs and templates".into(),
                None,
                false,
                200,
                false,
            )],
        )
        .route("/", get(root), vec![])
        .route(
            "/login",
            post(login),
            vec![(
                "post",
                "Log in with HTTP Basic; returns a token (also as Set-Cookie sessionId)".into(),
                None,
                false,
                200,
                false,
            )],
        )
        .route(
            "/system_state",
            get(system_state),
            vec![("get", "Cluster state".into(), None, false, 200, false)],
        )
        .route(
            "/tenants",
            get(tenants),
            vec![("get", "List tenants in use".into(), None, true, 200, false)],
        )
        .route(
            "/tenants/{id}",
            get(tenant),
            vec![("get", "Get a tenant".into(), None, false, 200, false)],
        );
    let b = kinds::registry().into_iter().fold(b, |b, k| (k.routes)(b));
    let b = sub::routes(b);
    let b = b.route(
        "/trace",
        post(trace::trace),
        vec![(
            "post",
            "Simulate a packet from a port and return the trace".into(),
            None,
            false,
            200,
            true,
        )],
    );
    let Builder { router, mut docs } = b;
    docs.push(RouteDoc {
        path: format!("{API_PREFIX}/openapi.json"),
        method: "get",
        summary: "This document".into(),
        schema: None,
        list: false,
        status: 200,
        body: false,
    });
    let doc = Arc::new(openapi::document(&docs));
    router
        .route(&format!("{API_PREFIX}/openapi.json"), get(openapi_json))
        .route("/metrics", get(metrics))
        .merge(crate::identity::routes_at("/neutron/identity"))
        .nest("/neutron", crate::neutron::routes())
        .route("/neutron/", get(crate::neutron::versions))
        .fallback(fallback)
        .layer(Extension(doc))
        .layer(middleware::from_fn_with_state(cluster.clone(), observe))
        .with_state(cluster)
}

/// Metrics, JSON bodies for axum's own 404/405, and the last-resort panic
/// guard (a bug answers 500; no client input is meant to reach it).
pub(crate) async fn observe(
    State(cluster): State<Arc<Cluster>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let req = match read_body(req).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let resp = match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(%method, route, "handler panicked");
            ApiError::internal("internal error").into_response()
        }
    };
    let resp = if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && !resp.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = resp.headers().get(header::ALLOW).cloned();
        let mut r =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here"))
                .into_response();
        if let Some(a) = allow {
            r.headers_mut().insert(header::ALLOW, a);
        }
        r
    } else {
        resp
    };
    let status = resp.status().as_u16();
    cluster.metrics.request(method.as_str(), &route, status, start.elapsed().as_secs_f64());
    tracing::debug!(%method, route, status, "request");
    resp
}

/// The largest request body either API reads (axum's default limit, which
/// the JSON extractors apply too).
const BODY_LIMIT: usize = 2 << 20;

/// Reads a request's whole body before any handler runs, whatever its
/// method (midonetclient sends `{}` with its GETs). A request refused
/// before its body is read (a 401, a reader's 403) would otherwise leave
/// the body unread; the server then closes the connection after its answer,
/// and a client that sent the body after its headers, or reuses the
/// connection for its next request, sees the connection end instead of the
/// answer (a flake in the identity tests, and what urllib3 reports as
/// "Remote end closed connection without response"). An empty body costs
/// nothing to read.
async fn read_body(req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body: larger than {BODY_LIMIT} bytes, or not read whole: {e}"),
        )
    })?;
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

async fn fallback(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("{method} {}: resource", uri.path()))
}

async fn metrics(State(cluster): State<Arc<Cluster>>) -> Response {
    let mut r = cluster.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn openapi_json(Extension(doc): Extension<Arc<Value>>) -> Response {
    let mut r = doc.to_string().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn root(ctx: Ctx) -> Response {
    let mut m = Map::new();
    m.insert("uri".into(), json!(ctx.base));
    m.insert("version".into(), json!("v5.0"));
    for k in kinds::registry() {
        let coll = ctx.uri(&format!("/{}", k.segment));
        if let Some(name) = k.desc.root {
            m.insert(name.into(), json!(coll));
        }
        m.insert(k.desc.template.into(), json!(format!("{coll}/{{id}}")));
    }
    let tenants = ctx.uri("/tenants");
    m.insert("tenants".into(), json!(tenants));
    m.insert("tenantTemplate".into(), json!(format!("{tenants}/{{id}}")));
    m.insert("systemState".into(), json!(ctx.uri("/system_state")));
    m.insert("traceRequests".into(), json!(ctx.uri("/trace")));
    m.insert("openApi".into(), json!(ctx.uri("/openapi.json")));
    ctx.one("Application-v5", Value::Object(m))
}

async fn login(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    _body: Bytes,
) -> Result<Response, ApiError> {
    let authz = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let (token, session) = cluster.auth.login(authz)?;
    let expires = httpdate::fmt_http_date(session.expires);
    tracing::info!(user = session.user, "login");
    let body = json!({ "key": token, "expires": expires });
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.org.midonet.Token-v1+json"),
    );
    let cookie = format!("sessionId={token}; Expires={expires}; Path=/");
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal("bad cookie"))?,
    );
    Ok(r)
}

async fn system_state(ctx: Ctx) -> Response {
    ctx.one(
        "SystemState-v2",
        json!({
            "state": "ACTIVE",
            "availability": "READWRITE",
            "information": null,
            "version": "5.0",
            "uri": ctx.uri("/system_state"),
        }),
    )
}

/// Every tenant id in use or configured.
async fn tenant_ids(ctx: &Ctx) -> Result<BTreeSet<String>, ApiError> {
    let mut tx = ctx.tx();
    let mut ids: BTreeSet<String> =
        ctx.cluster.config.tenants.iter().map(|t| t.id.clone()).collect();
    ids.extend(ctx.cluster.auth.user_tenants().map(str::to_string));
    for kind in [
        ObjectKind::Bridge,
        ObjectKind::Router,
        ObjectKind::Chain,
        ObjectKind::PortGroup,
        ObjectKind::IpAddrGroup,
        ObjectKind::LoadBalancer,
        ObjectKind::HealthMonitor,
        ObjectKind::Mirror,
    ] {
        for v in tx.list::<Value>(&kind.prefix()).await? {
            if let Some(t) = v.get("tenantId").and_then(Value::as_str) {
                ids.insert(t.to_string());
            }
        }
    }
    if let Some(t) = ctx.session.tenant() {
        ids.retain(|i| i == t);
    }
    Ok(ids)
}

fn tenant_dto(ctx: &Ctx, id: &str) -> Value {
    let name = ctx
        .cluster
        .config
        .tenants
        .iter()
        .find(|t| t.id == id && !t.name.is_empty())
        .map_or(id.to_string(), |t| t.name.clone());
    let q = |c: &str| ctx.uri(&format!("/{c}?tenant_id={id}"));
    json!({
        "id": id,
        "name": name,
        "uri": ctx.uri(&format!("/tenants/{id}")),
        "bridges": q("bridges"),
        "routers": q("routers"),
        "chains": q("chains"),
        "portGroups": q("port_groups"),
    })
}

async fn tenants(ctx: Ctx) -> Result<Response, ApiError> {
    let ids = tenant_ids(&ctx).await?;
    Ok(ctx.many("Tenant-v2", ids.iter().map(|i| tenant_dto(&ctx, i)).collect()))
}

async fn tenant(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let ids = tenant_ids(&ctx).await?;
    if !ids.contains(&id) {
        return Err(ApiError::not_found(format!("tenant {id}")));
    }
    Ok(ctx.one("Tenant-v2", tenant_dto(&ctx, &id)))
}
