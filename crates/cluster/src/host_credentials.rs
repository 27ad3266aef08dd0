//! Host credentials in the store: issue, revoke, check.
//!
//! ```text
//!  issue(host)  ─> put meta/host_credentials/<host> = {sha256, issuedAt}   (replaces: rotation)
//!  revoke(host) ─> txn{ delete that key } ; revoke the host's session lease (cut off now)
//!  check(token) ─> get meta/host_credentials/<token.host>; digest equal? ─> HostId
//! ```
//!
//! The record lives under `meta/`, which the topology stream never sends
//! (see [`crate::topology_service`]): agents cannot read each other's
//! digests. The token format is [`midonet_proto::credential::Token`].
//!
//! Positive checks are cached for [`CACHE_TTL`] per replica, so a revoked
//! credential may still be accepted for that long on a replica that checked
//! it just before; its session lease is revoked at once, which ends the
//! agent's state writes immediately everywhere.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use midonet_model::HostId;
use midonet_proto::credential::Token;
use midonet_proto::{keys, Liveness};
use midonet_store::{LeaseId, Store, StoreError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How long one replica trusts a credential it has checked.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// `meta/host_credentials/<host>`.
pub fn key(host: &HostId) -> String {
    format!("{}meta/host_credentials/{host}", midonet_proto::KEY_ROOT)
}

/// What the store keeps of a credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub sha256: String,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
}

/// Makes a new credential for `host`, replacing any earlier one.
pub async fn issue(store: &Arc<dyn Store>, host: HostId) -> Result<Token, StoreError> {
    let token = Token::generate(&host.to_string()).expect("a HostId is a UUID");
    let issued_at =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rec = Record { sha256: token.digest(), issued_at };
    let value = serde_json::to_vec(&rec).expect("plain struct serializes");
    store.put(key(&host).as_bytes(), &value, None).await?;
    Ok(token)
}

/// The stored record of `host`'s credential, if it has one.
pub async fn record(store: &Arc<dyn Store>, host: HostId) -> Result<Option<Record>, StoreError> {
    let kv = store.get(key(&host).as_bytes()).await?;
    Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

/// Removes `host`'s credential and ends its current session; false when it
/// had none.
pub async fn revoke(store: &Arc<dyn Store>, host: HostId) -> Result<bool, StoreError> {
    let had = store.delete(key(&host).as_bytes()).await?.deleted > 0;
    if let Some(kv) = store.get(keys::host_alive(&host.to_string()).as_bytes()).await? {
        if let Ok(l) = serde_json::from_slice::<Liveness>(&kv.value) {
            match store.revoke_lease(LeaseId(l.session)).await {
                Ok(()) | Err(StoreError::LeaseNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(had)
}

/// Why a credential was not accepted (the caller sees only "unauthenticated").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization` metadata.
    Missing,
    /// Not a token.
    Malformed,
    /// No credential issued for the host, or another secret.
    Unknown,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
        }
    }
}

/// Checks tokens against the store, remembering good ones briefly.
#[derive(Default)]
pub struct Checker {
    /// digest of the presented token → (host, when checked).
    cache: Mutex<HashMap<String, (HostId, Instant)>>,
}

impl Checker {
    /// The host an `authorization` metadata value proves to be.
    pub async fn check(
        &self,
        store: &Arc<dyn Store>,
        authorization: Option<&str>,
    ) -> Result<Result<HostId, Refusal>, StoreError> {
        let Some(value) = authorization else { return Ok(Err(Refusal::Missing)) };
        let Some(token) = Token::from_bearer(value) else { return Ok(Err(Refusal::Malformed)) };
        let digest = token.digest();
        if let Some((host, at)) = self.cache.lock().get(&digest) {
            if at.elapsed() < CACHE_TTL {
                return Ok(Ok(*host));
            }
        }
        let host: HostId = token.host().parse().expect("a token's host is a UUID");
        let ok = record(store, host).await?.is_some_and(|r| token.matches(&r.sha256));
        if !ok {
            return Ok(Err(Refusal::Unknown));
        }
        let mut cache = self.cache.lock();
        // Bounded by the number of enrolled hosts, except for rotations:
        // drop stale entries whenever it grows past a few thousand.
        if cache.len() > 4096 {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(digest, (host, Instant::now()));
        Ok(Ok(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn issue_check_rotate_revoke() {
        let store = midonet_store::connect("memory:").await.expect("store");
        let host = HostId::random();
        let checker = Checker::default();
        let check = |v: Option<String>| {
            let (store, checker) = (store.clone(), &checker);
            async move { checker.check(&store, v.as_deref()).await.expect("store") }
        };
        assert_eq!(check(None).await, Err(Refusal::Missing));
        assert_eq!(check(Some("Bearer nope".into())).await, Err(Refusal::Malformed));
        let stranger = Token::generate(&host.to_string()).expect("uuid");
        assert_eq!(check(Some(stranger.bearer())).await, Err(Refusal::Unknown), "never issued");

        let t1 = issue(&store, host).await.expect("issue");
        assert_eq!(check(Some(t1.bearer())).await, Ok(host));
        let rec = record(&store, host).await.expect("get").expect("record");
        assert_eq!(rec.sha256, t1.digest(), "only the digest is stored");

        // Rotation: the new one works, the old one no longer (past the cache).
        let t2 = issue(&store, host).await.expect("issue again");
        assert_eq!(check(Some(t2.bearer())).await, Ok(host));
        let fresh = Checker::default();
        assert_eq!(
            fresh.check(&store, Some(&t1.bearer())).await.expect("store"),
            Err(Refusal::Unknown)
        );

        // Revocation removes the record and the live session.
        let lease = store.grant_lease(10).await.expect("lease");
        let alive = Liveness::of(host.to_string(), lease.id.0);
        store
            .put(
                keys::host_alive(&host.to_string()).as_bytes(),
                &serde_json::to_vec(&alive).expect("json"),
                Some(lease.id),
            )
            .await
            .expect("put");
        assert!(revoke(&store, host).await.expect("revoke"));
        assert!(!revoke(&store, host).await.expect("revoke again"), "nothing left");
        assert!(store.keep_alive(lease.id).await.is_err(), "the session ended");
        assert_eq!(
            Checker::default().check(&store, Some(&t2.bearer())).await.expect("store"),
            Err(Refusal::Unknown)
        );
    }
}
