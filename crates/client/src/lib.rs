//! midonet-client: a small blocking client for the MidoNet 5.x REST API.
//!
//! This is the L2 adapter the `midonet` CLI (and tests) use to talk to a
//! cluster. It speaks the same protocol as the Python `midonetclient` 5.2.0
//! (its login, media types and paging), so it works against our cluster and
//! against a real MidoNet API server alike:
//!
//! ```text
//!   Client::new(base, auth)
//!     │  first request ──► POST {base}/login   (HTTP Basic + X-Auth-Project)
//!     │                    ◄── Set-Cookie: sessionId=<token>  or body {"key": <token>}
//!     │  every request ──► X-Auth-Token: <token>
//!     │  401 ──► log in again once, retry once
//!     └─ root() ──► GET {base}  → {"bridges": "<abs uri>", "bridgeTemplate": ".../{id}", ...}
//! ```
//!
//! Design:
//! * **Discovery, not URL building.** Callers ask the root document for
//!   collection URIs and templates ([`Client::root_link`], [`Client::template`])
//!   and follow link fields of fetched objects, so the client does not care how
//!   the server lays out its paths. Relative paths are still accepted by every
//!   verb (joined to the base URL) for servers or tests that want them.
//! * **Objects stay `serde_json::Value`.** The CLI shows and edits whatever the
//!   server sends, including fields this crate does not know; typed models live
//!   in `midonet-model`.
//! * **Update is PUT of the whole object**, as MidoNet expects: callers GET,
//!   change fields, PUT back.
//! * **Several replicas.** `base` may list several cluster replicas'
//!   base URLs, separated by commas. A request that cannot connect (refused,
//!   unreachable, no such host: it never reached a server, so even a POST
//!   is safe to send again) goes to the next replica, with its URL moved
//!   onto that replica's base; the replica that answered is used from then
//!   on. Tokens are valid on every replica, so nobody logs in again.
//!   A failure after connecting (a reset or timeout mid-request) moves on
//!   too for requests that may be repeated (GET, PUT, DELETE, and login);
//!   for a POST it is returned, since the replica may have applied it.
//!   Likewise a 503 (the replica's store unavailable: an etcd member gone,
//!   an election) is retried on the next replica, with pauses, for up to
//!   [`UNAVAILABLE_PATIENCE`], except for a POST.
//! * **Errors keep the server's JSON** (`{"message","code","field"?}`), so a
//!   user sees `400 Bad Request: field `portAddress`: ...` rather than a bare
//!   status line.
//!
//! Rejected: an async client (the CLI does one request at a time and must stay
//! small) and a per-resource typed API (it would duplicate `midonet-model` and
//! break whenever the server adds a field).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// Media type sent as `Accept` when fetching the root document; MidoNet
/// servers select the Application-v5 representation with it.
pub const APPLICATION_MEDIA_TYPE: &str = "application/vnd.org.midonet.Application-v5+json";

/// How the client authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials: for clusters running with auth disabled.
    None,
    /// A token obtained elsewhere, sent as `X-Auth-Token` as is (no re-login
    /// possible on 401).
    Token(String),
    /// Log in at `{base}/login` with HTTP Basic, optionally scoped to a project.
    Password { user: String, password: String, project: Option<String> },
}

// Written by hand so that passwords and tokens never end up in logs or panics.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Token(_) => f.write_str("Auth::Token(..)"),
            Auth::Password { user, project, .. } => f
                .debug_struct("Auth::Password")
                .field("user", user)
                .field("project", project)
                .finish_non_exhaustive(),
        }
    }
}

/// The JSON error body a MidoNet server returns (`Error-v1`), plus whatever
/// else it carried (validation violations, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code of the response.
    pub status: u16,
    /// Reason phrase of the status line (`Bad Request`).
    pub reason: String,
    /// `message` from the body, or the raw body text if it was not JSON.
    pub message: String,
    /// `field` from the body, when the server names the offending field.
    pub field: Option<String>,
    /// The whole body as JSON, when it was JSON.
    pub body: Option<Value>,
}

impl ApiError {
    fn from_response(status: u16, reason: &str, text: &str) -> ApiError {
        let body: Option<Value> = serde_json::from_str(text).ok();
        let message = body
            .as_ref()
            .and_then(|b| b.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| text.trim().to_owned());
        let field =
            body.as_ref().and_then(|b| b.get("field")).and_then(Value::as_str).map(str::to_owned);
        ApiError {
            status,
            reason: if reason.is_empty() {
                default_reason(status).to_owned()
            } else {
                reason.to_owned()
            },
            message,
            field,
            body,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)?;
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        // Validation errors in MidoNet carry a list of violations; show them,
        // they are usually the most precise part.
        if let Some(violations) =
            self.body.as_ref().and_then(|b| b.get("violations")).and_then(Value::as_array)
        {
            for v in violations {
                let prop = v.get("property").and_then(Value::as_str).unwrap_or("?");
                let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
                // The headline already says this one.
                if self.field.as_deref() == Some(prop) && msg == self.message {
                    continue;
                }
                write!(f, "; `{prop}`: {msg}")?;
            }
        }
        Ok(())
    }
}

fn default_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Everything that can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect or DNS failed: nothing is listening at the URL. Only
    /// the innermost cause is kept: ureq's own chain repeats the URL and the
    /// OS error several times.
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// A CA file given for TLS cannot be used.
    #[error("CA certificates {path}: {what}")]
    Tls { path: String, what: String },
    /// Any other transport-level failure (reset, timeout, TLS, bad URL).
    #[error("{method} {url} failed")]
    Transport {
        method: &'static str,
        url: String,
        #[source]
        source: Box<ureq::Transport>,
    },
    /// Login at `{base}/login` was refused.
    #[error("login as `{user}` failed: {error}")]
    Login { user: String, error: Box<ApiError> },
    /// The server requires authentication and the configured auth could not
    /// provide it (no credentials, or a token that was rejected).
    #[error("{method} {url}: {error}")]
    Unauthorized { method: &'static str, url: String, error: Box<ApiError> },
    /// The server answered with an error status.
    #[error("{error}")]
    Api { method: &'static str, url: String, error: Box<ApiError> },
    /// The response was not what the protocol promises (bad JSON, no Location).
    #[error("unexpected response to {method} {url}: {what}")]
    Protocol { method: &'static str, url: String, what: String },
    /// The root document has no such link.
    #[error("the API root has no `{0}` link (is this a MidoNet 5.x API?)")]
    MissingLink(String),
}

impl ClientError {
    /// HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { error, .. }
            | ClientError::Unauthorized { error, .. }
            | ClientError::Login { error, .. } => Some(error.status),
            _ => None,
        }
    }

    /// The server's error body, if this is an API error.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api { error, .. }
            | ClientError::Unauthorized { error, .. }
            | ClientError::Login { error, .. } => Some(error),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A raw response: status line, the headers we use, and body text.
struct Reply {
    status: u16,
    reason: String,
    location: Option<String>,
    set_cookie: Vec<String>,
    text: String,
}

/// How long a request that may be repeated is retried while replicas
/// answer 503 (their store unavailable): longer than an etcd election.
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(10);

/// A blocking MidoNet REST client. Cheap to share by reference; interior
/// state (token, cached root) sits behind mutexes.
pub struct Client {
    /// The replicas' base URLs, without trailing slash; `current` indexes
    /// the one that answered last.
    bases: Vec<String>,
    current: AtomicUsize,
    auth: Auth,
    agent: ureq::Agent,
    token: Mutex<Option<String>>,
    root: Mutex<Option<Value>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("bases", &self.bases)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the API at `base_url` (e.g.
    /// `http://127.0.0.1:8181/midonet-api`), or at any of several replicas
    /// given as base URLs separated by commas. Does no I/O: login and
    /// discovery happen on the first request.
    pub fn new(base_url: &str, auth: Auth) -> Client {
        let token = match &auth {
            Auth::Token(t) => Some(t.clone()),
            _ => None,
        };
        let mut bases: Vec<String> = base_url
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        if bases.is_empty() {
            bases.push(String::new());
        }
        Client {
            bases,
            current: AtomicUsize::new(0),
            auth,
            agent: Self::agent(None),
            token: Mutex::new(token),
            root: Mutex::new(None),
        }
    }

    /// The same client trusting exactly the CA certificates in `ca_pem`
    /// (PEM) for `https` URLs, instead of the built-in public roots.
    pub fn with_ca(mut self, ca_pem: &Path) -> Result<Client> {
        use rustls::pki_types::pem::PemObject;
        let bad = |what: String| ClientError::Tls { path: ca_pem.display().to_string(), what };
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_pem)
            .map_err(|e| bad(e.to_string()))?;
        for c in certs {
            roots.add(c.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        self.agent = Self::agent(Some(Arc::new(tls)));
        Ok(self)
    }

    fn agent(tls: Option<Arc<rustls::ClientConfig>>) -> ureq::Agent {
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            // MidoNet never answers API calls with 3xx; following one would
            // silently turn a POST into a GET.
            .redirects(0);
        if let Some(tls) = tls {
            b = b.tls_config(tls);
        }
        b.build()
    }

    /// The base URL in use (the replica that answered last), without
    /// trailing slash.
    pub fn base_url(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed)]
    }

    /// Every replica's base URL, in the order given.
    pub fn base_urls(&self) -> &[String] {
        &self.bases
    }

    /// The configured authentication.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The current token, if logged in or given one.
    pub fn token(&self) -> Option<String> {
        self.token.lock().expect("token mutex poisoned").clone()
    }

    /// Replaces the current token (e.g. one cached from an earlier run).
    /// With [`Auth::Password`] a rejected token is replaced by logging in.
    pub fn set_token(&self, token: Option<String>) {
        *self.token.lock().expect("token mutex poisoned") = token;
    }

    /// Turns a path relative to the base URL into an absolute URL; absolute
    /// URLs pass through unchanged.
    pub fn url(&self, path_or_uri: &str) -> String {
        if path_or_uri.starts_with("http://") || path_or_uri.starts_with("https://") {
            path_or_uri.to_owned()
        } else if path_or_uri.is_empty() {
            self.base_url().to_owned()
        } else {
            format!("{}/{}", self.base_url(), path_or_uri.trim_start_matches('/'))
        }
    }

    /// Logs in with the configured user and password, storing the token.
    /// A no-op for [`Auth::None`] and [`Auth::Token`].
    pub fn login(&self) -> Result<()> {
        let Auth::Password { user, password, project } = &self.auth else {
            return Ok(());
        };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let login = |url: &str| {
            let mut req = self
                .agent
                .post(url)
                .set("Authorization", &format!("Basic {basic}"))
                .set("Content-Type", "application/json");
            if let Some(p) = project {
                req = req.set("X-Auth-Project", p);
            }
            self.finish("POST", url, req.send_string("{}"))
        };
        let (url, reply) = self.failover(&format!("{}/login", self.base_url()), true, login)?;
        if reply.status >= 300 {
            return Err(ClientError::Login {
                user: user.clone(),
                error: Box::new(ApiError::from_response(reply.status, &reply.reason, &reply.text)),
            });
        }
        let token = token_from_login(&reply.set_cookie, &reply.text).ok_or_else(|| {
            ClientError::Protocol {
                method: "POST",
                url: url.clone(),
                what: "login answer has neither a Set-Cookie sessionId nor a body `key`".into(),
            }
        })?;
        *self.token.lock().expect("token mutex poisoned") = Some(token);
        Ok(())
    }

    /// Sends one request with auth, logging in first if needed and once more
    /// on a 401. Returns the reply for any status; errors are mapped by the
    /// caller-facing verbs.
    fn send(&self, method: &'static str, url: &str, body: Option<&Value>) -> Result<Reply> {
        if matches!(self.auth, Auth::Password { .. }) && self.token().is_none() {
            self.login()?;
        }
        let mut url = url.to_owned();
        let mut reply = self.send_once(method, &url, body)?;
        // A replica whose store is unavailable (an etcd member gone, an
        // election under way) answers 503: a request that may be repeated
        // goes to the next replica, with growing pauses, for a while.
        let mut pause = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while reply.status == 503 && method != "POST" && waited < UNAVAILABLE_PATIENCE {
            std::thread::sleep(pause);
            waited += pause;
            pause = (pause * 2).min(Duration::from_secs(1));
            if let Some(next) = self.next_replica(&url) {
                url = next;
            }
            reply = self.send_once(method, &url, body)?;
        }
        if reply.status == 401 && matches!(self.auth, Auth::Password { .. }) {
            // The token may have expired (or the server restarted): log in
            // again and retry once, like midonetclient does.
            self.login()?;
            return self.send_once(method, &url, body);
        }
        Ok(reply)
    }

    /// `url` moved onto the replica after the one in use, which becomes the
    /// one in use; `None` with one replica or a URL on none of them.
    fn next_replica(&self, url: &str) -> Option<String> {
        let n = self.bases.len();
        let on = self.replica_of(url).filter(|_| n > 1)?;
        let next = (self.current.load(Ordering::Relaxed) + 1) % n;
        self.current.store(next, Ordering::Relaxed);
        Some(self.rebase(url, on, next))
    }

    /// Which replica `url` is on.
    fn replica_of(&self, url: &str) -> Option<usize> {
        self.bases.iter().position(|b| on_base(url, b))
    }

    /// `url`, which is on replica `from`, moved onto replica `to`.
    fn rebase(&self, url: &str, from: usize, to: usize) -> String {
        format!("{}{}", self.bases[to], &url[self.bases[from].len()..])
    }

    fn send_once(&self, method: &'static str, url: &str, body: Option<&Value>) -> Result<Reply> {
        let send = |url: &str| {
            let mut req = self.agent.request(method, url);
            if let Some(t) = self.token() {
                req = req.set("X-Auth-Token", &t);
            }
            req = if self.bases.iter().any(|b| b == url) {
                req.set("Accept", APPLICATION_MEDIA_TYPE)
            } else {
                req.set("Accept", "application/json")
            };
            let result = match body {
                Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
                None => req.call(),
            };
            self.finish(method, url, result)
        };
        let repeatable = method != "POST";
        self.failover(url, repeatable, send).map(|(_, reply)| reply)
    }

    /// Calls `attempt` with `url`, and while it cannot connect (or, if
    /// `repeatable`, fails in transport at all), with `url` moved onto each
    /// other replica's base in turn (see the module docs). Returns the URL
    /// that answered with the answer.
    fn failover<T>(
        &self,
        url: &str,
        repeatable: bool,
        attempt: impl Fn(&str) -> Result<T>,
    ) -> Result<(String, T)> {
        let n = self.bases.len();
        // A URL on none of the replicas is tried alone.
        let Some(on) = self.replica_of(url) else {
            return attempt(url).map(|r| (url.to_owned(), r));
        };
        let mut refused = Vec::new();
        for k in 0..n {
            let i = (on + k) % n;
            let here = self.rebase(url, on, i);
            match attempt(&here) {
                Err(ClientError::Connect { reason, .. }) => refused.push((i, reason)),
                Err(ClientError::Transport { source, .. }) if repeatable && k + 1 < n => {
                    refused.push((i, innermost(&*source)));
                }
                Ok(r) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok((here, r));
                }
                Err(e) => return Err(e),
            }
        }
        let reason = match refused.as_slice() {
            [(_, only)] => only.clone(),
            all => all
                .iter()
                .map(|(i, r)| format!("{}: {r}", self.bases[*i]))
                .collect::<Vec<_>>()
                .join("; "),
        };
        Err(ClientError::Connect { url: self.bases.join(", "), reason })
    }

    fn finish(
        &self,
        method: &'static str,
        url: &str,
        result: std::result::Result<ureq::Response, ureq::Error>,
    ) -> Result<Reply> {
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                return Err(match t.kind() {
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                        ClientError::Connect { url: url.to_owned(), reason: innermost(&t) }
                    }
                    _ => {
                        ClientError::Transport { method, url: url.to_owned(), source: Box::new(t) }
                    }
                })
            }
        };
        let status = resp.status();
        let reason = resp.status_text().to_owned();
        let location = resp.header("Location").map(str::to_owned);
        let set_cookie = resp.all("Set-Cookie").into_iter().map(str::to_owned).collect();
        let text = resp.into_string().map_err(|e| ClientError::Protocol {
            method,
            url: url.to_owned(),
            what: format!("cannot read body: {e}"),
        })?;
        Ok(Reply { status, reason, location, set_cookie, text })
    }

    /// Maps an error status to a [`ClientError`]; passes success through.
    fn check(&self, method: &'static str, url: &str, reply: Reply) -> Result<Reply> {
        if reply.status < 300 {
            return Ok(reply);
        }
        let error = Box::new(ApiError::from_response(reply.status, &reply.reason, &reply.text));
        if reply.status == 401 {
            return Err(ClientError::Unauthorized { method, url: url.to_owned(), error });
        }
        Err(ClientError::Api { method, url: url.to_owned(), error })
    }

    fn request(&self, method: &'static str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let url = self.url(path);
        let reply = self.send(method, &url, body)?;
        self.check(method, &url, reply)
    }

    fn parse(method: &'static str, url: &str, text: &str) -> Result<Value> {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text).map_err(|e| ClientError::Protocol {
            method,
            url: url.to_owned(),
            what: format!("body is not JSON: {e}"),
        })
    }

    /// The root (discovery) document, fetched once and cached.
    pub fn root(&self) -> Result<Value> {
        if let Some(r) = self.root.lock().expect("root mutex poisoned").as_ref() {
            return Ok(r.clone());
        }
        let root = self.get(self.base_url())?;
        *self.root.lock().expect("root mutex poisoned") = Some(root.clone());
        Ok(root)
    }

    /// A link from the root document, e.g. `root_link("bridges")`.
    pub fn root_link(&self, key: &str) -> Result<String> {
        self.root()?
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::MissingLink(key.to_owned()))
    }

    /// Fills a root URI template (`bridgeTemplate`) with an id.
    pub fn template(&self, key: &str, id: &str) -> Result<String> {
        Ok(self.root_link(key)?.replace("{id}", id))
    }

    /// `GET` a collection; the server returns a bare JSON array.
    pub fn list(&self, path: &str) -> Result<Vec<Value>> {
        let url = self.url(path);
        match self.get(&url)? {
            Value::Array(items) => Ok(items),
            Value::Null => Ok(Vec::new()),
            other => Err(ClientError::Protocol {
                method: "GET",
                url,
                what: format!("expected a JSON array, got {}", short(&other.to_string(), 80)),
            }),
        }
    }

    /// `GET` one object (or any JSON document).
    pub fn get(&self, path: &str) -> Result<Value> {
        let url = self.url(path);
        let reply = self.request("GET", &url, None)?;
        Self::parse("GET", &url, &reply.text)
    }

    /// `POST` a new object to a collection, then `GET` it from the
    /// `Location` the server answered with. Returns the created object.
    pub fn create(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let reply = self.request("POST", &url, Some(body))?;
        match reply.location {
            Some(loc) => self.get(&self.resolve_location(&url, &loc)),
            // Some servers answer 200 with the object instead of 201+Location;
            // accept that rather than fail a write that happened.
            None if !reply.text.trim().is_empty() => Self::parse("POST", &url, &reply.text),
            None => Err(ClientError::Protocol {
                method: "POST",
                url,
                what: "201 without a Location header".into(),
            }),
        }
    }

    /// `PUT` the whole object at `uri`, then `GET` it back.
    pub fn update(&self, uri: &str, body: &Value) -> Result<Value> {
        let url = self.url(uri);
        let reply = self.request("PUT", &url, Some(body))?;
        if reply.status == 200 && !reply.text.trim().is_empty() {
            return Self::parse("PUT", &url, &reply.text);
        }
        self.get(&url)
    }

    /// `DELETE` the object at `uri`.
    pub fn delete(&self, uri: &str) -> Result<()> {
        self.request("DELETE", uri, None).map(|_| ())
    }

    /// `POST` an action body (port link, trace request, ...). Returns the
    /// response body if there is one, else the object at `Location` if the
    /// server created one, else `null`.
    pub fn post_json(&self, uri: &str, body: &Value) -> Result<Value> {
        let url = self.url(uri);
        let reply = self.request("POST", &url, Some(body))?;
        if !reply.text.trim().is_empty() {
            return Self::parse("POST", &url, &reply.text);
        }
        match reply.location {
            Some(loc) => self.get(&self.resolve_location(&url, &loc)),
            None => Ok(Value::Null),
        }
    }

    /// `PUT` without reading back: for actions whose target is not a
    /// fetchable object.
    pub fn put_json(&self, uri: &str, body: &Value) -> Result<Value> {
        let url = self.url(uri);
        let reply = self.request("PUT", &url, Some(body))?;
        Self::parse("PUT", &url, &reply.text)
    }

    /// Location should be absolute (MidoNet clients require it), but be
    /// lenient with a path-absolute one.
    fn resolve_location(&self, request_url: &str, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            return loc.to_owned();
        }
        let origin_end = request_url
            .find("://")
            .and_then(|i| request_url[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(request_url.len());
        if loc.starts_with('/') {
            format!("{}{}", &request_url[..origin_end], loc)
        } else {
            format!("{}/{}", request_url.trim_end_matches('/'), loc)
        }
    }
}

/// The token from a login answer: the value of the first `name=value` pair
/// of a `Set-Cookie` header (what midonetclient parses), else the body `key`.
fn token_from_login(set_cookie: &[String], body: &str) -> Option<String> {
    for c in set_cookie {
        let first = c.split(';').next().unwrap_or("");
        if let Some((_, v)) = first.split_once('=') {
            let v = v.trim();
            if !v.is_empty() {
                return Some(v.to_owned());
            }
        }
    }
    serde_json::from_str::<Value>(body).ok()?.get("key")?.as_str().map(str::to_owned)
}

/// Whether `url` is `base` or under it.
fn on_base(url: &str, base: &str) -> bool {
    !base.is_empty()
        && url
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// Text of the innermost cause of an error.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_prefers_cookie_then_body_key() {
        let cookies = vec!["sessionId=abc123; Expires=Wed, 21 Oct 2026 07:28:00 GMT".to_owned()];
        assert_eq!(token_from_login(&cookies, "{}").as_deref(), Some("abc123"));
        assert_eq!(token_from_login(&[], r#"{"key":"k1","expires":"x"}"#).as_deref(), Some("k1"));
        assert_eq!(token_from_login(&[], "not json"), None);
    }

    #[test]
    fn api_error_names_field_and_message() {
        let e = ApiError::from_response(
            400,
            "Bad Request",
            r#"{"message":"not an IPv4 address","code":400,"field":"portAddress"}"#,
        );
        assert_eq!(e.to_string(), "400 Bad Request: field `portAddress`: not an IPv4 address");
        let plain = ApiError::from_response(404, "", "no such thing\n");
        assert_eq!(plain.to_string(), "404 Not Found: no such thing");
    }

    #[test]
    fn api_error_lists_violations() {
        let e = ApiError::from_response(
            400,
            "Bad Request",
            r#"{"message":"invalid","code":400,"violations":[{"property":"name","message":"too long"}]}"#,
        );
        assert_eq!(e.to_string(), "400 Bad Request: invalid; `name`: too long");
        let dup = ApiError::from_response(
            400,
            "Bad Request",
            r#"{"message":"bad ip","code":400,"field":"portAddress","violations":[{"property":"portAddress","message":"bad ip"}]}"#,
        );
        assert_eq!(dup.to_string(), "400 Bad Request: field `portAddress`: bad ip");
    }

    #[test]
    fn url_joins_relative_and_keeps_absolute() {
        let c = Client::new("http://h:1/midonet-api/", Auth::None);
        assert_eq!(c.base_url(), "http://h:1/midonet-api");
        assert_eq!(c.url("bridges"), "http://h:1/midonet-api/bridges");
        assert_eq!(c.url("/bridges"), "http://h:1/midonet-api/bridges");
        assert_eq!(c.url("http://x/y"), "http://x/y");
        assert_eq!(c.url(""), "http://h:1/midonet-api");
    }

    #[test]
    fn location_resolution_is_lenient() {
        let c = Client::new("http://h:1/midonet-api", Auth::None);
        let req = "http://h:1/midonet-api/bridges";
        assert_eq!(
            c.resolve_location(req, "http://h:1/midonet-api/bridges/1"),
            "http://h:1/midonet-api/bridges/1"
        );
        assert_eq!(
            c.resolve_location(req, "/midonet-api/bridges/1"),
            "http://h:1/midonet-api/bridges/1"
        );
        assert_eq!(c.resolve_location(req, "1"), "http://h:1/midonet-api/bridges/1");
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = Auth::Password {
            user: "admin".into(),
            password: "s3cret".into(),
            project: Some("p".into()),
        };
        let s = format!("{a:?}");
        assert!(s.contains("admin") && !s.contains("s3cret"), "{s}");
        assert!(!format!("{:?}", Auth::Token("tok".into())).contains("tok\""));
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        // Bind then drop a listener to get a local port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}/midonet-api"), Auth::None);
        let err = c.get("").expect_err("nothing listens");
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        let text = err.to_string();
        assert_eq!(text.matches("127.0.0.1").count(), 1, "{text}");
        assert!(text.contains("refused"), "{text}");
        assert!(err.status().is_none());
    }
}
