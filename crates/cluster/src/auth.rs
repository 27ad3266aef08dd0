//! Authentication (login with HTTP Basic → token) and the caller's role.
//!
//! ```text
//! POST /login  Authorization: Basic b64(user:pw) [X-Auth-Project]
//!    └─► 200  Set-Cookie: sessionId=<token>; Expires=..; Path=/   body {"key","expires"}
//! POST /neutron/identity/v3/auth/tokens (crate::identity, Keystone v3)
//!    └─► 201  X-Subject-Token: <token>                       scoped to a project
//! any other call  X-Auth-Token: <token>  ─► Session { user, role, project }
//!    missing/unknown/expired token ─► 401 + WWW-Authenticate (the client logs in again)
//!    not ours, `keystone_url` set  ─► GET {keystone_url}/v3/auth/tokens (check_async)
//! ```
//!
//! Tokens carry their session and are signed, so that every replica over
//! one store accepts every replica's tokens and a restart forgets nothing:
//!
//! ```text
//!  token = b64url(payload JSON {u, r, p, e, n}) "." b64url(HMAC-SHA256(key, payload))
//!  key   = meta/token_key in the store: 32 random bytes, made once (CAS) by
//!          the first replica, read by the others (`Auth::use_key`)
//!  revoked: meta/revoked_tokens/<sha256(token)>, leased until the token's
//!          own expiry; every replica watches the prefix (`crate::tasks`)
//! ```
//!
//! Before the store's key is loaded (tests building an [`Auth`] alone) a
//! random key of the process signs, which is the old per-replica behaviour.
//!
//! A token carries the project it is scoped to: a tenant user's is always
//! its tenant; an admin's is the project it asked [`crate::identity`] for
//! (else `admin_project`), and none from `/login`. The project does not
//! limit an admin: it is the default owner of what the token creates.
//!
//! A store user's token (one made over the identity admin API, see
//! [`crate::accounts`]) also carries the user's id; [`Auth::check_live`]
//! reads the user's roles on the token's project from the store at each
//! use, so deleting the user, project or role stops the token at once.
//!
//! With auth disabled every call is an admin call and `/login` hands out a
//! token to anyone, so clients that always log in keep working.
//!
//! # Readers
//!
//! Keystone's `reader` role may look but not touch (Keystone's and
//! Neutron's default policies): a session whose only role on its project
//! is `reader` is [`Session::read_only`], and [`Auth::check_request`], the
//! one check the MidoNet and Neutron APIs make before any handler, answers
//! anything but `GET` and `HEAD` from it with 403. `admin`, `member` or any
//! other role (a deployment's own, e.g. `_member_`) may write, as before:
//!
//! ```text
//!  roles on the project     session                       may
//!  admin (+ anything)       Role::Admin                   everything
//!  member, any but reader   Role::Tenant(p)               read, write p's objects
//!  reader only              Role::Tenant(p), read_only    read p's objects
//! ```
//!
//! The roles come from the store at each use for store users (granting
//! `member` to a reader lets its tokens write at once), from an external
//! Keystone's token body (cached with it), and config users hold `member`.
//! The identity endpoint's own writes are an admin's anyway.
//!
//! # External Keystone
//!
//! With `auth.keystone_url` set, [`Auth::check_async`] asks that Keystone
//! about tokens this cluster did not issue (the token validates itself:
//! `X-Auth-Token` and `X-Subject-Token` are the same, which Keystone's
//! default policy allows), and trusts a positive answer for
//! [`EXTERNAL_CACHE`]: a token revoked there keeps working here that long.
//! Failures are not cached, so a burst of bad tokens is a burst of requests
//! to Keystone. [`Auth::check`] stays local and synchronous; request
//! handlers use `check_async`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, RoleName, UserConfig};
use crate::error::ApiError;

/// Keystone's read-only role (see the module doc, "Readers").
pub const READER: &str = "reader";

/// What the caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Sees and changes everything.
    Admin,
    /// Sees and changes only objects of this tenant.
    Tenant(String),
}

/// How long a token an external Keystone vouched for is trusted without
/// asking again.
pub const EXTERNAL_CACHE: Duration = Duration::from_secs(60);

/// How long the external Keystone may take to answer.
const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Tokens of the external Keystone remembered at most; past it the cache
/// starts over (it only saves round trips).
const EXTERNAL_CACHE_ENTRIES: usize = 10_000;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// When the token stops working (for an external Keystone's token:
    /// until when this cluster trusts it without asking again).
    pub expires: SystemTime,
    /// The Keystone project the token is scoped to: a tenant user's tenant,
    /// an admin's chosen project, `None` for an admin from `/login` or with
    /// auth disabled.
    pub project: Option<String>,
    /// The id of a user made over the identity API ([`crate::accounts`]),
    /// whose roles are re-read from the store at each use; `None` for a
    /// config user (whose id is its name).
    pub user_id: Option<String>,
    /// The user holds only `reader` on the project: it may read, not
    /// write ([`Session::check_method`]). Never set for an admin.
    pub read_only: bool,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    /// 403 for a request that may change something (any method but `GET`
    /// and `HEAD`) from a [`Session::read_only`] session.
    pub fn check_method(&self, method: &Method) -> Result<(), ApiError> {
        if !self.read_only || method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        let project = self.project.as_deref().or(self.tenant()).unwrap_or_default();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{method} is not allowed: user `{}` holds only the reader role on project \
                 `{project}`, which may GET and HEAD; a member or admin may write",
                self.user
            ),
        ))
    }
    pub fn tenant(&self) -> Option<&str> {
        match &self.role {
            Role::Admin => None,
            Role::Tenant(t) => Some(t),
        }
    }
}

/// Users, the token signing key, and revoked tokens.
pub struct Auth {
    enabled: bool,
    ttl: Duration,
    admin_project: String,
    users: Vec<UserConfig>,
    key: parking_lot::RwLock<[u8; 32]>,
    /// sha256 of a revoked token → when it would have expired.
    revoked: Mutex<HashMap<[u8; 32], SystemTime>>,
    external: Option<External>,
    /// Where store users' roles are read ([`Auth::attach_store`]); unset
    /// in tests building an [`Auth`] alone, where no store user exists.
    store: std::sync::OnceLock<std::sync::Arc<dyn midonet_store::Store>>,
}

/// `meta/token_key`: the signing key every replica shares.
pub fn token_key_key() -> String {
    format!("{}meta/token_key", midonet_proto::KEY_ROOT)
}

/// Prefix of revoked tokens' digests.
pub fn revoked_prefix() -> String {
    format!("{}meta/revoked_tokens/", midonet_proto::KEY_ROOT)
}

/// The store's signing key, made by whichever replica comes first.
pub async fn shared_key(
    store: &std::sync::Arc<dyn midonet_store::Store>,
) -> Result<[u8; 32], midonet_store::StoreError> {
    use midonet_store::{Compare, Txn, TxnOp};
    let key = token_key_key();
    loop {
        if let Some(kv) = store.get(key.as_bytes()).await? {
            if let Ok(k) = <[u8; 32]>::try_from(kv.value.as_slice()) {
                return Ok(k);
            }
        }
        let fresh: [u8; 32] = rand::random();
        // Only if still missing: a racing replica's key wins and is read back.
        store
            .txn(
                Txn::new()
                    .when([Compare::missing(key.clone())])
                    .and_then([TxnOp::put(key.clone(), fresh.to_vec())]),
            )
            .await?;
    }
}

/// Records a revoked token in the store for the other replicas, leased to
/// vanish when the token would have expired.
pub async fn record_revocation(
    store: &std::sync::Arc<dyn midonet_store::Store>,
    token: &str,
    until: SystemTime,
) -> Result<(), midonet_store::StoreError> {
    let left = until.duration_since(SystemTime::now()).map_or(1, |d| d.as_secs().max(1));
    let lease = store.grant_lease(i64::try_from(left).unwrap_or(i64::MAX)).await?;
    let key =
        format!("{}{}", revoked_prefix(), midonet_proto::credential::hex(&Auth::digest(token)));
    store.put(key.as_bytes(), secs(until).to_string().as_bytes(), Some(lease.id)).await?;
    Ok(())
}

/// A revocation key and value as [`record_revocation`] wrote them.
pub fn parse_revocation(key: &[u8], value: &[u8]) -> Option<([u8; 32], SystemTime)> {
    let hex = std::str::from_utf8(key).ok()?.strip_prefix(&revoked_prefix())?;
    let d = midonet_proto::credential::unhex32(hex)?;
    let until: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    Some((d, SystemTime::UNIX_EPOCH + Duration::from_secs(until)))
}

/// The token's payload.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    /// User.
    u: String,
    /// Role: `None` for admin, the tenant otherwise.
    r: Option<String>,
    /// Project.
    p: Option<String>,
    /// Expiry, seconds since the epoch.
    e: u64,
    /// Nonce: two tokens of one second differ.
    n: u64,
    /// A store user's id (absent for config users, and in older tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<String>,
    /// Read-only (absent when false, and in older tokens, which were all
    /// read-write; a store user's is read again at each use anyway).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ro: bool,
}

fn hmac(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    // RFC 2104 with SHA-256 (64-byte blocks).
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(opad).chain_update(inner).finalize().into()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a token says, when its signature holds: the session, live or not.
enum Verified {
    Live(Session),
    Expired,
    Revoked,
}

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Self {
        let url = cfg.keystone_url.trim().trim_end_matches('/');
        let url = url.strip_suffix("/v3").unwrap_or(url);
        Auth {
            enabled: cfg.enabled,
            ttl: Duration::from_secs(cfg.token_ttl_secs.max(1)),
            admin_project: cfg.admin_project.trim().to_string(),
            users: cfg.users.clone(),
            key: parking_lot::RwLock::new(rand::random()),
            revoked: Mutex::new(HashMap::new()),
            external: (!url.is_empty()).then(|| External::new(url)),
            store: std::sync::OnceLock::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Reads store users' roles from `store` (the cluster's) from now on.
    pub fn attach_store(&self, store: std::sync::Arc<dyn midonet_store::Store>) {
        let _ = self.store.set(store);
    }

    /// Signs and checks with `key` from now on (the store's, shared by every
    /// replica: see [`shared_key`]).
    pub fn use_key(&self, key: [u8; 32]) {
        *self.key.write() = key;
    }

    /// Records a revocation (this replica's or, through the store watch,
    /// another's) until the token would have expired anyway.
    pub fn note_revoked(&self, digest: [u8; 32], until: SystemTime) {
        let mut r = self.revoked.lock();
        let now = SystemTime::now();
        r.retain(|_, t| *t > now);
        r.insert(digest, until);
    }

    /// sha256 of a token: how revocations name it.
    pub fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.trim().as_bytes()).into()
    }

    fn verify(&self, token: &str) -> Option<Verified> {
        let (payload, mac) = token.trim().split_once('.')?;
        let mac = b64().decode(mac).ok()?;
        if !constant_time_eq(&mac, &hmac(&self.key.read(), payload.as_bytes())) {
            return None;
        }
        let c: Claims = serde_json::from_slice(&b64().decode(payload).ok()?).ok()?;
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(c.e);
        if expires <= SystemTime::now() {
            return Some(Verified::Expired);
        }
        if self.revoked.lock().contains_key(&Self::digest(token)) {
            return Some(Verified::Revoked);
        }
        let role = c.r.map_or(Role::Admin, Role::Tenant);
        let (user, project, user_id, read_only) = (c.u, c.p, c.i, c.ro);
        Some(Verified::Live(Session { user, role, expires, project, user_id, read_only }))
    }

    /// Lifetime of a new token.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The project of admins' tokens that name no other (`auth.admin_project`).
    pub fn admin_project(&self) -> &str {
        &self.admin_project
    }

    /// The names of configured users.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| u.name.as_str())
    }

    /// Tenants named by configured users.
    pub fn user_tenants(&self) -> impl Iterator<Item = &str> {
        self.users.iter().filter_map(|u| u.tenant.as_deref())
    }

    fn role_of(u: &UserConfig) -> Role {
        match u.role {
            RoleName::Admin => Role::Admin,
            RoleName::Tenant => Role::Tenant(u.tenant.clone().unwrap_or_default()),
        }
    }

    /// Checks an `Authorization: Basic` header and issues a token.
    pub fn login(&self, authorization: Option<&str>) -> Result<(String, Session), ApiError> {
        if !self.enabled {
            let user = authorization
                .and_then(|h| decode_basic(h).ok())
                .map_or_else(|| "anonymous".to_string(), |(u, _)| u);
            return Ok(self.issue(&user, Role::Admin));
        }
        let header = authorization
            .ok_or_else(|| ApiError::unauthorized("log in with HTTP Basic credentials"))?;
        let (name, password) = decode_basic(header)?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == name && password_matches(u, &password))
            .ok_or_else(|| ApiError::unauthorized("wrong user name or password"))?;
        Ok(self.issue(&user.name, Self::role_of(user)))
    }

    /// Issues a token for a configured user without a password (tests and
    /// in-process tools). `None` if the user is unknown.
    pub fn token_for(&self, user: &str) -> Option<String> {
        if !self.enabled {
            return Some(self.issue(user, Role::Admin).0);
        }
        let u = self.users.iter().find(|u| u.name == user)?;
        Some(self.issue(&u.name, Self::role_of(u)).0)
    }

    /// Issues a token with an explicit role, scoped to no project unless
    /// the role is a tenant's.
    pub fn issue(&self, user: &str, role: Role) -> (String, Session) {
        self.issue_scoped(user, role, None)
    }

    /// Issues a token scoped to `project`. A tenant's token is always
    /// scoped to its tenant, whatever `project` says: callers check the
    /// scope a tenant asks for before ([`crate::identity`] does).
    pub fn issue_scoped(&self, user: &str, role: Role, project: Option<&str>) -> (String, Session) {
        let session = Session {
            user: user.to_string(),
            project: project.map(str::to_string),
            role,
            expires: SystemTime::now() + self.ttl,
            user_id: None,
            read_only: false,
        };
        let session = scoped(session);
        (self.issue_session(session.clone()), session)
    }

    /// Stores a session as a new token, with the session's own expiry (a
    /// Keystone rescope keeps the expiry of the token it came from).
    pub fn issue_session(&self, session: Session) -> String {
        let s = scoped(session);
        let claims = Claims {
            u: s.user,
            r: match s.role {
                Role::Admin => None,
                Role::Tenant(t) => Some(t),
            },
            p: s.project,
            e: secs(s.expires),
            n: rand::random(),
            i: s.user_id,
            ro: s.read_only,
        };
        let payload = b64().encode(serde_json::to_vec(&claims).expect("plain struct serializes"));
        let mac = b64().encode(hmac(&self.key.read(), payload.as_bytes()));
        format!("{payload}.{mac}")
    }

    /// The live session of a token this cluster issued, whether auth is
    /// enabled or not (Keystone token validation).
    pub fn lookup(&self, token: &str) -> Option<Session> {
        match self.verify(token)? {
            Verified::Live(s) => Some(s),
            Verified::Expired | Verified::Revoked => None,
        }
    }

    /// Revokes a token on this replica; `false` if it was not live. The
    /// caller records it in the store for the others ([`revoked_prefix`]).
    pub fn revoke(&self, token: &str) -> bool {
        let Some(s) = self.lookup(token) else { return false };
        self.note_revoked(Self::digest(token), s.expires);
        true
    }

    /// The name and role of a configured user whose password this is.
    /// Ignores whether auth is enabled (the caller decides).
    pub fn authenticate(&self, name: &str, password: &str) -> Option<(String, Role)> {
        let user = self.users.iter().find(|u| u.name == name && password_matches(u, password))?;
        Some((user.name.clone(), Self::role_of(user)))
    }

    /// The role of a configured user.
    pub fn user_role(&self, name: &str) -> Option<Role> {
        self.users.iter().find(|u| u.name == name).map(Self::role_of)
    }

    /// The session of an `X-Auth-Token` this cluster issued, or 401.
    /// Local only: see [`Auth::check_async`] for an external Keystone.
    pub fn check(&self, token: Option<&str>) -> Result<Session, ApiError> {
        if !self.enabled {
            return Ok(Session {
                user: "admin".into(),
                role: Role::Admin,
                expires: SystemTime::now() + self.ttl,
                project: None,
                user_id: None,
                read_only: false,
            });
        }
        let token = token.ok_or_else(|| {
            ApiError::unauthorized("missing X-Auth-Token: log in at /midonet-api/login first")
        })?;
        match self.verify(token) {
            Some(Verified::Live(s)) => Ok(s),
            Some(Verified::Expired) => Err(ApiError::unauthorized("token expired: log in again")),
            Some(Verified::Revoked) | None => {
                Err(ApiError::unauthorized("unknown token: log in again"))
            }
        }
    }

    /// [`Auth::check_async`], then [`Session::check_method`]: the session
    /// of an API request (401), if it may make it (403). The MidoNet and
    /// Neutron APIs authenticate every request here.
    pub async fn check_request(
        &self,
        token: Option<&str>,
        method: &Method,
    ) -> Result<Session, ApiError> {
        let s = self.check_async(token).await?;
        s.check_method(method)?;
        Ok(s)
    }

    /// [`Auth::check_live`], and for a token this cluster never issued, when
    /// `auth.keystone_url` is set, the external Keystone's word (cached for
    /// [`EXTERNAL_CACHE`]). An expired local token stays a 401 without
    /// asking. 503 when that Keystone cannot be reached.
    pub async fn check_async(&self, token: Option<&str>) -> Result<Session, ApiError> {
        let (Some(external), Some(token), true) = (&self.external, token, self.enabled) else {
            return self.check_live(token).await;
        };
        let token = token.trim();
        let ours = self.verify(token).is_some();
        if ours {
            return self.check_live(Some(token)).await;
        }
        external.check(token).await
    }

    /// [`Auth::check`], and for a store user's token its roles read again
    /// from the store: 401 once the user, the project or its last role on
    /// the project is gone; an `admin` role taken away makes it a tenant,
    /// and it is read-only while `reader` is its only role ([`reads_only`]).
    /// Config users' tokens do not touch the store.
    pub async fn check_live(&self, token: Option<&str>) -> Result<Session, ApiError> {
        let s = self.check(token)?;
        self.still_live(s).await
    }

    /// [`Auth::lookup`] with a store user's roles read again (see
    /// [`Auth::check_live`]); `None` when the token or its user is gone.
    pub async fn lookup_live(&self, token: &str) -> Result<Option<Session>, ApiError> {
        let Some(s) = self.lookup(token) else { return Ok(None) };
        match self.still_live(s).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn still_live(&self, mut s: Session) -> Result<Session, ApiError> {
        let (Some(user), Some(store)) = (&s.user_id, self.store.get()) else { return Ok(s) };
        let gone = || ApiError::unauthorized("the token's user or its role on the project is gone");
        let project = s.project.clone().ok_or_else(gone)?;
        let roles =
            crate::accounts::roles_on(store, user, &project).await.map_err(ApiError::from)?;
        if roles.is_empty() {
            return Err(gone());
        }
        s.role = role_from_names(&roles, &project);
        s.read_only = reads_only(&roles);
        Ok(s)
    }
}

/// The session role of Keystone role names held on `project`: `admin`
/// makes an admin; any other (`member`, `reader`, ...) a tenant of the
/// project, as [`session_from_keystone`] maps an external token.
pub fn role_from_names<S: AsRef<str>>(roles: &[S], project: &str) -> Role {
    if roles.iter().any(|r| r.as_ref() == "admin") {
        Role::Admin
    } else {
        Role::Tenant(project.to_string())
    }
}

/// Whether Keystone role names held on a project allow reading only: none
/// is other than `reader` (compared case aside, as oslo.policy's role
/// check does), so `admin`, `member` or a deployment's own role may write.
/// No role at all allows no more than reading.
pub fn reads_only<S: AsRef<str>>(roles: &[S]) -> bool {
    roles.iter().all(|r| r.as_ref().eq_ignore_ascii_case(READER))
}

/// A tenant's session is scoped to its tenant; an admin's is never
/// read-only. Also rounds the expiry down to whole seconds, as the token
/// carries it.
fn scoped(mut s: Session) -> Session {
    match &s.role {
        Role::Tenant(t) => s.project = Some(t.clone()),
        Role::Admin => s.read_only = false,
    }
    s.expires = whole_secs(s.expires);
    s
}

/// `t` without its fraction of a second (what a token can say).
pub fn whole_secs(t: SystemTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs(t))
}

/// The external Keystone of `auth.keystone_url` and the tokens it vouched
/// for (each session's `expires` is the end of its time in the cache).
struct External {
    /// Without a trailing `/` or `/v3`.
    url: String,
    agent: ureq::Agent,
    cache: Mutex<HashMap<String, Session>>,
}

impl External {
    fn new(url: &str) -> Self {
        External {
            url: url.to_string(),
            agent: ureq::AgentBuilder::new().timeout(EXTERNAL_TIMEOUT).build(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn check(&self, token: &str) -> Result<Session, ApiError> {
        let now = SystemTime::now();
        if let Some(s) = self.cache.lock().get(token).filter(|s| s.expires > now) {
            return Ok(s.clone());
        }
        let url = format!("{}/v3/auth/tokens", self.url);
        let (agent, subject) = (self.agent.clone(), token.to_string());
        // ureq blocks: off the async workers.
        let body = tokio::task::spawn_blocking(move || validate_remote(&agent, &url, &subject))
            .await
            .map_err(|_| ApiError::internal("the Keystone token check did not finish"))??;
        let session = session_from_keystone(&body, SystemTime::now() + EXTERNAL_CACHE)?;
        let mut cache = self.cache.lock();
        cache.retain(|_, s| s.expires > now);
        if cache.len() >= EXTERNAL_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(token.to_string(), session.clone());
        Ok(session)
    }
}

/// `GET {url}` with the token as both caller and subject: the body of a
/// 200, 401 for any 4xx (Keystone does not know the token), 503 otherwise.
fn validate_remote(agent: &ureq::Agent, url: &str, token: &str) -> Result<Value, ApiError> {
    let unavailable = |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
    let resp = agent
        .get(url)
        .set("X-Auth-Token", token)
        .set("X-Subject-Token", token)
        .set("Accept", "application/json")
        .call();
    match resp {
        Ok(r) => r.into_json::<Value>().map_err(|e| {
            unavailable(format!("Keystone at {url} answered an unreadable body: {e}"))
        }),
        Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) => {
            Err(ApiError::unauthorized("unknown token: log in again"))
        }
        Err(ureq::Error::Status(code, _)) => {
            Err(unavailable(format!("Keystone at {url} answered {code}")))
        }
        Err(e) => Err(unavailable(format!("Keystone at {url} is unreachable: {e}"))),
    }
}

/// The session a Keystone token body (`{"token": {...}}`) describes: user
/// name, project id and roles; role `admin` makes an admin, anything else
/// a tenant of the project, read-only when its only role is `reader`
/// ([`reads_only`]). A token scoped to no project gives a tenant nothing
/// to own, so it is a 401 unless it is an admin's.
pub fn session_from_keystone(body: &Value, expires: SystemTime) -> Result<Session, ApiError> {
    let bad = |what: &str| ApiError::unauthorized(format!("Keystone's token has no {what}"));
    let token = body.get("token").ok_or_else(|| bad("`token`"))?;
    let user = token
        .pointer("/user/name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`token.user.name`"))?
        .to_string();
    let project = token.pointer("/project/id").and_then(Value::as_str).map(str::to_string);
    let roles: Vec<&str> = token
        .get("roles")
        .and_then(Value::as_array)
        .map(|rs| rs.iter().filter_map(|r| r.get("name").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    let admin = roles.contains(&"admin");
    let role = match (admin, &project) {
        (true, _) => Role::Admin,
        (false, Some(p)) => Role::Tenant(p.clone()),
        (false, None) => return Err(bad("`token.project.id` (scope it to a project)")),
    };
    let read_only = !admin && reads_only(&roles);
    Ok(Session { user, role, expires, project, user_id: None, read_only })
}

fn decode_basic(header: &str) -> Result<(String, String), ApiError> {
    let bad =
        || ApiError::unauthorized("malformed Authorization header: expected Basic credentials");
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (u, p) = text.split_once(':').ok_or_else(bad)?;
    Ok((u.to_string(), p.to_string()))
}

fn password_matches(u: &UserConfig, password: &str) -> bool {
    if let Some(p) = &u.password {
        return constant_time_eq(p.as_bytes(), password.as_bytes());
    }
    if let Some(h) = &u.password_sha256 {
        let digest = Sha256::digest(password.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        return constant_time_eq(hex.as_bytes(), h.trim().to_ascii_lowercase().as_bytes());
    }
    false
}

/// Compares without an early exit, so timing does not tell how much of a
/// password matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    }

    fn auth() -> Auth {
        Auth::new(&auth_config())
    }

    fn auth_config() -> AuthConfig {
        let mut cfg = AuthConfig::default();
        cfg.users.push(UserConfig::new("admin", "pw", RoleName::Admin, None));
        let hash: String = Sha256::digest(b"secret").iter().map(|b| format!("{b:02x}")).collect();
        cfg.users.push(UserConfig {
            name: "alice".into(),
            password: None,
            password_sha256: Some(hash),
            role: RoleName::Tenant,
            tenant: Some("t1".into()),
        });
        cfg
    }

    #[test]
    fn login_then_check_gives_role() {
        let a = auth();
        let (tok, s) = a.login(Some(&basic("admin", "pw"))).expect("admin login");
        assert!(s.is_admin());
        assert_eq!(a.check(Some(&tok)).expect("valid").user, "admin");
        let (tok, s) = a.login(Some(&basic("alice", "secret"))).expect("hashed login");
        assert_eq!(s.tenant(), Some("t1"));
        assert_eq!(a.check(Some(&tok)).expect("valid").role, Role::Tenant("t1".into()));
    }

    #[test]
    fn bad_credentials_and_tokens_are_401() {
        let a = auth();
        for h in [basic("admin", "nope"), basic("eve", "pw"), "Bearer x".into(), "Basic !!".into()]
        {
            assert_eq!(a.login(Some(&h)).expect_err("rejected").status.as_u16(), 401, "{h}");
        }
        assert_eq!(a.check(None).expect_err("missing").status.as_u16(), 401);
        assert_eq!(a.check(Some("deadbeef")).expect_err("unknown").status.as_u16(), 401);
    }

    #[test]
    fn disabled_auth_makes_everyone_admin() {
        let a = Auth::new(&AuthConfig { enabled: false, ..AuthConfig::default() });
        let s = a.check(None).expect("no token needed");
        assert!(s.is_admin());
        assert_eq!(s.project, None);
        assert!(a.login(None).expect("anyone").1.is_admin());
    }

    #[test]
    fn tokens_carry_their_project() {
        let a = auth();
        let (_, s) = a.login(Some(&basic("admin", "pw"))).expect("admin login");
        assert_eq!(s.project, None, "/login scopes an admin to nothing");
        let (_, s) = a.login(Some(&basic("alice", "secret"))).expect("tenant login");
        assert_eq!(s.project.as_deref(), Some("t1"));
        let (tok, s) = a.issue_scoped("admin", Role::Admin, Some("t9"));
        assert_eq!(s.project.as_deref(), Some("t9"));
        assert_eq!(a.check(Some(&tok)).expect("valid").project.as_deref(), Some("t9"));
        // A tenant is scoped to its tenant whatever the caller says.
        let (_, s) = a.issue_scoped("alice", Role::Tenant("t1".into()), Some("t9"));
        assert_eq!(s.project.as_deref(), Some("t1"));
    }

    #[test]
    fn lookup_revoke_and_authenticate() {
        let a = auth();
        assert_eq!(
            a.authenticate("alice", "secret"),
            Some(("alice".into(), Role::Tenant("t1".into())))
        );
        assert_eq!(a.authenticate("alice", "pw"), None);
        assert_eq!(a.user_role("admin"), Some(Role::Admin));
        assert_eq!(a.user_role("eve"), None);
        let (tok, s) = a.issue_scoped("admin", Role::Admin, Some("admin"));
        assert_eq!(a.lookup(&tok), Some(s));
        assert!(a.revoke(&tok));
        assert!(!a.revoke(&tok), "already gone");
        assert_eq!(a.lookup(&tok), None);
        assert_eq!(a.check(Some(&tok)).expect_err("revoked").status.as_u16(), 401);
        // A session stored with a past expiry is not live.
        let old = Session {
            user: "admin".into(),
            role: Role::Admin,
            expires: SystemTime::now() - Duration::from_secs(1),
            project: None,
            user_id: None,
            read_only: false,
        };
        let tok = a.issue_session(old);
        assert_eq!(a.lookup(&tok), None);
        assert!(a.check(Some(&tok)).expect_err("expired").message.contains("expired"));
    }

    #[tokio::test]
    async fn check_async_without_keystone_is_check() {
        let a = auth();
        let (tok, s) = a.issue("admin", Role::Admin);
        assert_eq!(a.check_async(Some(&tok)).await.expect("local"), s);
        assert_eq!(a.check_async(Some("feed")).await.expect_err("unknown").status.as_u16(), 401);
        assert_eq!(a.check_async(None).await.expect_err("missing").status.as_u16(), 401);
    }

    #[tokio::test]
    async fn unreachable_keystone_is_503_but_local_tokens_still_work() {
        // Port 9 (discard) on the loopback: nothing listens, the connection
        // is refused at once.
        let cfg = AuthConfig { keystone_url: "http://127.0.0.1:9/v3/".into(), ..auth_config() };
        let a = Auth::new(&cfg);
        assert_eq!(a.external.as_ref().map(|e| e.url.as_str()), Some("http://127.0.0.1:9"));
        let (tok, _) = a.issue("admin", Role::Admin);
        assert!(a.check_async(Some(&tok)).await.expect("local").is_admin());
        let e = a.check_async(Some("feed")).await.expect_err("unreachable");
        assert_eq!(e.status.as_u16(), 503, "{e}");
    }

    #[test]
    fn keystone_bodies_make_sessions() {
        let at = SystemTime::now();
        let body = serde_json::json!({"token": {
            "user": {"id": "u1", "name": "carol"},
            "project": {"id": "p1", "name": "proj"},
            "roles": [{"id": "r", "name": "member"}, {"id": "r2", "name": "reader"}],
        }});
        let s = session_from_keystone(&body, at).expect("member");
        assert_eq!((s.user.as_str(), s.project.as_deref()), ("carol", Some("p1")));
        assert_eq!(s.role, Role::Tenant("p1".into()));
        let mut admin = body.clone();
        admin["token"]["roles"][1]["name"] = "admin".into();
        assert_eq!(session_from_keystone(&admin, at).expect("admin").role, Role::Admin);
        let mut unscoped = body.clone();
        unscoped["token"].as_object_mut().expect("object").remove("project");
        let e = session_from_keystone(&unscoped, at).expect_err("no project");
        assert!(e.message.contains("token.project.id"), "{e}");
        let e = session_from_keystone(&serde_json::json!({"token": {}}), at).expect_err("no user");
        assert!(e.message.contains("token.user.name"), "{e}");
        // Only `reader` (any case): read-only; with `member`: not.
        assert!(!s.read_only);
        let mut reader = body.clone();
        reader["token"]["roles"] = serde_json::json!([{"name": "Reader"}]);
        let s = session_from_keystone(&reader, at).expect("reader");
        assert_eq!((s.role, s.read_only), (Role::Tenant("p1".into()), true));
    }

    #[test]
    fn readers_read_and_members_write() {
        assert!(reads_only(&["reader"]) && reads_only(&["READER"]) && reads_only::<&str>(&[]));
        for roles in [&["reader", "member"][..], &["_member_"], &["admin"], &["reader", "x"]] {
            assert!(!reads_only(roles), "{roles:?}");
        }
        let a = auth();
        let reader = Session { read_only: true, ..a.issue("carol", Role::Tenant("p1".into())).1 };
        let tok = a.issue_session(reader.clone());
        let s = a.check(Some(&tok)).expect("live");
        assert!(s.read_only, "the token carries it");
        for m in [Method::GET, Method::HEAD] {
            s.check_method(&m).expect("reads");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS] {
            let e = s.check_method(&m).expect_err("writes");
            assert_eq!(e.status, StatusCode::FORBIDDEN);
            assert!(e.message.contains("reader role on project `p1`"), "{e}");
        }
        // A member's token, and an admin's even if asked read-only, write.
        let (tok, _) = a.issue("alice", Role::Tenant("t1".into()));
        a.check(Some(&tok)).expect("live").check_method(&Method::POST).expect("member");
        let admin = Session { read_only: true, ..reader };
        let admin = Session { role: Role::Admin, ..admin };
        let tok = a.issue_session(admin);
        assert!(!a.check(Some(&tok)).expect("live").read_only);
    }
}
