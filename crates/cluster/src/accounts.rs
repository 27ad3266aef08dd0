//! Projects, users and role assignments made through the Keystone admin API
//! ([`crate::identity`]), kept in the store so that every replica sees them
//! (tempest's dynamic credentials make a project and users per test class
//! and delete them afterwards). The config's `[[auth.users]]` and
//! `[[tenants]]` live beside them, untouched: names may not collide.
//!
//! ```text
//!  /midonet/v1/meta/identity/
//!    projects/<id>                  JSON StoredProject
//!    project_names/<name>           <id>   the name is taken (unique in the domain)
//!    users/<id>                     JSON StoredUser (a salted hash, never the password)
//!    user_names/<name>              <id>
//!    roles/<user id>/<project id>/<role>   ""   one key per assignment
//! ```
//!
//! Every write is one transaction: a create compares the id and name keys
//! missing, so two replicas creating one name give one 201 and one 409; an
//! assignment compares its user (and a store project) present, so it never
//! outlives a user deleted meanwhile. Deleting a user deletes its
//! assignments under `roles/<user id>/`; deleting a project scans `roles/`
//! for the assignments on it (an assignment made between the scan and the
//! delete stays behind, naming a project nobody can scope to any more).
//!
//! A token names a store user by id ([`crate::auth::Session::user_id`]);
//! each use reads `roles/<user id>/<project id>/`, so a deleted user, a
//! deleted project or a removed role stops its tokens at once on every
//! replica. Tokens of config users never read the store.
//!
//! Passwords: PBKDF2-HMAC-SHA256 (RFC 8018 section 5.2) with a random
//! 16-byte salt and [`ITERATIONS`] rounds, the count stored with the hash so
//! that it can grow. Config users' `password_sha256` is one unsalted round;
//! a salted slow hash was chosen because these users are made over the API,
//! by whoever holds an admin token, with passwords nobody vetted. Rejected:
//! argon2 (another dependency; `ring`, already built for TLS, has PBKDF2).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use base64::Engine as _;
use midonet_store::{Compare, Store, StoreError, Txn, TxnOp};
use serde::{Deserialize, Serialize};

/// PBKDF2 rounds for new passwords: tens of milliseconds of one core, paid
/// at user creation and at each password login (tokens are checked by
/// signature and one store read).
pub const ITERATIONS: u32 = 100_000;

/// The scheme name stored with a hash.
const SCHEME: &str = "pbkdf2-sha256";

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The name is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// Nothing by that id (404).
    #[error("{0}")]
    NotFound(String),
    #[error("store")]
    Store(#[from] StoreError),
}

/// A project made over the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProject {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A user made over the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    pub id: String,
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub default_project_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// `None`: the user cannot log in with a password.
    #[serde(default)]
    pub password: Option<PasswordHash>,
}

fn yes() -> bool {
    true
}

/// A salted password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHash {
    pub scheme: String,
    pub iterations: u32,
    /// Base64 (standard, no padding).
    pub salt: String,
    pub hash: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

impl PasswordHash {
    /// A fresh salt and the hash of `password` under it.
    pub fn new(password: &str) -> PasswordHash {
        Self::with(password, rand::random::<[u8; 16]>(), ITERATIONS)
    }

    fn with(password: &str, salt: [u8; 16], iterations: u32) -> PasswordHash {
        let mut out = [0u8; 32];
        let rounds = NonZeroU32::new(iterations).expect("iterations are positive");
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            password.as_bytes(),
            &mut out,
        );
        PasswordHash {
            scheme: SCHEME.into(),
            iterations,
            salt: b64().encode(salt),
            hash: b64().encode(out),
        }
    }

    /// Whether `password` hashes to this (ring compares in constant time).
    pub fn matches(&self, password: &str) -> bool {
        let (Some(rounds), true) = (NonZeroU32::new(self.iterations), self.scheme == SCHEME) else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (b64().decode(&self.salt), b64().decode(&self.hash)) else {
            return false;
        };
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            password.as_bytes(),
            &hash,
        )
        .is_ok()
    }
}

/// `/midonet/v1/meta/identity/`.
pub fn prefix() -> String {
    format!("{}meta/identity/", midonet_proto::KEY_ROOT)
}
fn project_key(id: &str) -> String {
    format!("{}projects/{id}", prefix())
}
fn project_name_key(name: &str) -> String {
    format!("{}project_names/{name}", prefix())
}
fn user_key(id: &str) -> String {
    format!("{}users/{id}", prefix())
}
fn user_name_key(name: &str) -> String {
    format!("{}user_names/{name}", prefix())
}
fn roles_prefix() -> String {
    format!("{}roles/", prefix())
}
/// `roles/<user>/<project>/`: the user's roles on the project.
fn user_project_roles(user: &str, project: &str) -> String {
    format!("{}{user}/{project}/", roles_prefix())
}
fn assignment_key(user: &str, project: &str, role: &str) -> String {
    format!("{}{role}", user_project_roles(user, project))
}

/// A Keystone-style id: 32 hex digits.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

type Db = Arc<dyn Store>;

async fn get_json<T: serde::de::DeserializeOwned>(
    store: &Db,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let Some(kv) = store.get(key.as_bytes()).await? else { return Ok(None) };
    // A record this version cannot read counts as absent rather than failing
    // every listing.
    Ok(serde_json::from_slice(&kv.value).ok())
}

async fn list_json<T: serde::de::DeserializeOwned>(
    store: &Db,
    prefix: &str,
) -> Result<Vec<T>, StoreError> {
    let r = store.range(prefix.as_bytes()).await?;
    Ok(r.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
}

/// Creates a project; 409 if the name is taken in the store (the caller
/// checks the config's names).
pub async fn create_project(
    store: &Db,
    name: &str,
    description: &str,
    enabled: bool,
) -> Result<StoredProject, AccountError> {
    let p = StoredProject {
        id: new_id(),
        name: name.to_string(),
        description: description.to_string(),
        enabled,
    };
    let value = serde_json::to_vec(&p).expect("plain struct serializes");
    put_named(store, project_key(&p.id), project_name_key(name), &p.id, value, name).await?;
    Ok(p)
}

pub async fn get_project(store: &Db, id: &str) -> Result<Option<StoredProject>, StoreError> {
    get_json(store, &project_key(id)).await
}

pub async fn list_projects(store: &Db) -> Result<Vec<StoredProject>, StoreError> {
    list_json(store, &format!("{}projects/", prefix())).await
}

/// Deletes a project and the role assignments on it.
pub async fn delete_project(store: &Db, id: &str) -> Result<(), AccountError> {
    let p: StoredProject = get_json(store, &project_key(id))
        .await?
        .ok_or_else(|| AccountError::NotFound(format!("Could not find project: {id}.")))?;
    let mut ops = vec![TxnOp::delete(project_key(id)), TxnOp::delete(project_name_key(&p.name))];
    let all = store.range(roles_prefix().as_bytes()).await?;
    for kv in &all.kvs {
        let on_it = parse_assignment(&kv.key).is_some_and(|(_, project, _)| project == id);
        if on_it {
            ops.push(TxnOp::delete(kv.key.clone()));
        }
    }
    let r = store.txn(Txn::new().when([Compare::exists(project_key(id))]).and_then(ops)).await?;
    if !r.succeeded {
        return Err(AccountError::NotFound(format!("Could not find project: {id}.")));
    }
    Ok(())
}

/// Creates a user; 409 if the name is taken in the store.
pub async fn create_user(store: &Db, mut user: StoredUser) -> Result<StoredUser, AccountError> {
    user.id = new_id();
    let value = serde_json::to_vec(&user).expect("plain struct serializes");
    let (key, name_key) = (user_key(&user.id), user_name_key(&user.name));
    put_named(store, key, name_key, &user.id, value, &user.name).await?;
    Ok(user)
}

/// Writes a new object at `key` and its name index `name_key` (holding
/// `id`) in one transaction, only if neither exists: a taken name is
/// Keystone's 409.
async fn put_named(
    store: &Db,
    key: String,
    name_key: String,
    id: &str,
    value: Vec<u8>,
    name: &str,
) -> Result<(), AccountError> {
    let r = store
        .txn(
            Txn::new()
                .when([Compare::missing(key.clone()), Compare::missing(name_key.clone())])
                .and_then([TxnOp::put(key, value), TxnOp::put(name_key, id.to_string())]),
        )
        .await?;
    if !r.succeeded {
        return Err(AccountError::Conflict(format!(
            "Duplicate entry found with name {name} at domain ID default."
        )));
    }
    Ok(())
}

pub async fn get_user(store: &Db, id: &str) -> Result<Option<StoredUser>, StoreError> {
    get_json(store, &user_key(id)).await
}

pub async fn list_users(store: &Db) -> Result<Vec<StoredUser>, StoreError> {
    list_json(store, &format!("{}users/", prefix())).await
}

/// A user by name, then by id (a token request's `user.id` or `user.name`).
pub async fn find_user(store: &Db, key: &str) -> Result<Option<StoredUser>, StoreError> {
    if let Some(kv) = store.get(user_name_key(key).as_bytes()).await? {
        if let Ok(id) = std::str::from_utf8(&kv.value) {
            if let Some(u) = get_user(store, id).await? {
                return Ok(Some(u));
            }
        }
    }
    get_user(store, key).await
}

/// Deletes a user and its role assignments.
pub async fn delete_user(store: &Db, id: &str) -> Result<(), AccountError> {
    let u = get_user(store, id)
        .await?
        .ok_or_else(|| AccountError::NotFound(format!("Could not find user: {id}.")))?;
    let r = store
        .txn(Txn::new().when([Compare::exists(user_key(id))]).and_then([
            TxnOp::delete(user_key(id)),
            TxnOp::delete(user_name_key(&u.name)),
            TxnOp::delete_prefix(format!("{}{id}/", roles_prefix())),
        ]))
        .await?;
    if !r.succeeded {
        return Err(AccountError::NotFound(format!("Could not find user: {id}.")));
    }
    Ok(())
}

/// The user of a token request whose password this is, enabled.
pub async fn authenticate(
    store: &Db,
    key: &str,
    password: &str,
) -> Result<Option<StoredUser>, StoreError> {
    let Some(u) = find_user(store, key).await? else { return Ok(None) };
    let ok = u.enabled && u.password.as_ref().is_some_and(|h| h.matches(password));
    Ok(ok.then_some(u))
}

/// Gives `user` the role on `project` (idempotent). `store_project`: the
/// project is a store one, which must still exist.
pub async fn assign(
    store: &Db,
    user: &str,
    project: &str,
    role: &str,
    store_project: bool,
) -> Result<(), AccountError> {
    let mut when = vec![Compare::exists(user_key(user))];
    if store_project {
        when.push(Compare::exists(project_key(project)));
    }
    let r = store
        .txn(
            Txn::new()
                .when(when)
                .and_then([TxnOp::put(assignment_key(user, project, role), Vec::new())]),
        )
        .await?;
    if !r.succeeded {
        return Err(AccountError::NotFound(format!(
            "Could not find user {user} or project {project}."
        )));
    }
    Ok(())
}

/// Takes the role away; 404 if the user did not have it.
pub async fn unassign(
    store: &Db,
    user: &str,
    project: &str,
    role: &str,
) -> Result<(), AccountError> {
    let r = store.delete(assignment_key(user, project, role).as_bytes()).await?;
    if r.deleted == 0 {
        return Err(AccountError::NotFound(format!(
            "Could not find role assignment with role: {role}, user or group: {user}, project, domain, or system: {project}."
        )));
    }
    Ok(())
}

/// The user's roles on the project, sorted.
pub async fn roles_on(store: &Db, user: &str, project: &str) -> Result<Vec<String>, StoreError> {
    let at = user_project_roles(user, project);
    let r = store.range(at.as_bytes()).await?;
    Ok(r.kvs
        .iter()
        .filter_map(|kv| std::str::from_utf8(&kv.key).ok()?.strip_prefix(&at).map(str::to_string))
        .filter(|role| !role.contains('/'))
        .collect())
}

/// Every project the user has a role on, with the roles.
pub async fn assignments_of(
    store: &Db,
    user: &str,
) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let r = store.range(format!("{}{user}/", roles_prefix()).as_bytes()).await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, project, role) in r.kvs.iter().filter_map(|kv| parse_assignment(&kv.key)) {
        out.entry(project).or_default().push(role);
    }
    Ok(out)
}

/// `(user, project, role)` of an assignment key. A project id may hold a
/// `/` (config tenants are free-form); user ids and role names do not.
fn parse_assignment(key: &[u8]) -> Option<(String, String, String)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(&roles_prefix())?;
    let (user, rest) = rest.split_once('/')?;
    let (project, role) = rest.rsplit_once('/')?;
    Some((user.to_string(), project.to_string(), role.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_are_salted_and_checked() {
        // Few rounds: the test checks the scheme, not the cost.
        let h = PasswordHash::with("s3cret", [7; 16], 10);
        assert!(h.matches("s3cret"));
        assert!(!h.matches("s3cre") && !h.matches(""));
        assert!(!h.hash.contains("s3cret") && !h.salt.is_empty());
        let other_salt = PasswordHash::with("s3cret", [8; 16], 10);
        assert_ne!(h.hash, other_salt.hash, "the salt changes the hash");
        let more = PasswordHash::with("s3cret", [7; 16], 11);
        assert_ne!(h.hash, more.hash, "the rounds change the hash");
        assert!(more.matches("s3cret"));
        // RFC 7914 section 11's PBKDF2-HMAC-SHA256 vector (P "passwd", S "salt", c 1).
        let mut out = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(1).expect("positive"),
            b"salt",
            b"passwd",
            &mut out,
        );
        assert_eq!(midonet_proto::credential::hex(&out[..8]), "55ac046e56e3089f");
        // An unknown scheme or a broken record never matches.
        let bad = PasswordHash { scheme: "md5".into(), ..h.clone() };
        assert!(!bad.matches("s3cret"));
        let bad = PasswordHash { salt: "!".into(), ..h };
        assert!(!bad.matches("s3cret"));
    }

    #[test]
    fn assignment_keys_round_trip() {
        let k = assignment_key("u1", "p/with/slashes", "member");
        assert_eq!(
            parse_assignment(k.as_bytes()),
            Some(("u1".into(), "p/with/slashes".into(), "member".into()))
        );
        assert!(k.starts_with(&user_project_roles("u1", "p/with/slashes")));
    }

    #[tokio::test]
    async fn users_projects_and_roles_live_in_the_store() {
        let store: Db = midonet_store::connect("memory:").await.expect("memory store");
        let p = create_project(&store, "p1", "d", true).await.expect("created");
        assert_eq!(p.id.len(), 32);
        let dup = create_project(&store, "p1", "", true).await.expect_err("taken");
        assert!(matches!(dup, AccountError::Conflict(_)));
        let u = StoredUser {
            id: String::new(),
            name: "u1".into(),
            enabled: true,
            default_project_id: None,
            description: None,
            email: None,
            password: Some(PasswordHash::with("pw", [1; 16], 10)),
        };
        let u = create_user(&store, u).await.expect("created");
        assert!(matches!(
            create_user(&store, u.clone()).await.expect_err("taken"),
            AccountError::Conflict(_)
        ));
        assert_eq!(
            authenticate(&store, "u1", "pw").await.expect("read").map(|u| u.id),
            Some(u.id.clone())
        );
        assert_eq!(
            authenticate(&store, &u.id, "pw").await.expect("read").map(|u| u.name),
            Some("u1".into())
        );
        assert_eq!(authenticate(&store, "u1", "nope").await.expect("read"), None);
        assign(&store, &u.id, &p.id, "member", true).await.expect("assigned");
        assign(&store, &u.id, &p.id, "member", true).await.expect("again: idempotent");
        assign(&store, &u.id, "cfg-tenant", "reader", false).await.expect("config project");
        assert_eq!(roles_on(&store, &u.id, &p.id).await.expect("read"), ["member"]);
        assert_eq!(assignments_of(&store, &u.id).await.expect("read").len(), 2);
        assert!(assign(&store, "nobody", &p.id, "member", true).await.is_err());
        // A project's deletion takes its assignments; a user's all of its own.
        delete_project(&store, &p.id).await.expect("deleted");
        assert!(roles_on(&store, &u.id, &p.id).await.expect("read").is_empty());
        assert!(matches!(
            delete_project(&store, &p.id).await.expect_err("gone"),
            AccountError::NotFound(_)
        ));
        create_project(&store, "p1", "", true).await.expect("the name is free again");
        delete_user(&store, &u.id).await.expect("deleted");
        assert!(assignments_of(&store, &u.id).await.expect("read").is_empty());
        assert_eq!(find_user(&store, "u1").await.expect("read"), None);
    }
}
