//! The reverse-reference index: for every id, the topology objects whose
//! stored JSON mentions it, so that deletes and bindings read their
//! referrers instead of whole kinds.
//!
//! ```text
//! /midonet/v1/meta/refs/<target-id>/<segment>/<id parts...>   ""   one per (target, referrer)
//! /midonet/v1/meta/refs-index                                 "1"  the index is complete (format 1)
//! ```
//!
//! An entry names the referrer by its store key without [`KEY_ROOT`], so
//! `refs/<id>/ports/` lists exactly the ports that mention `<id>`.
//!
//! # What counts as a mention
//!
//! Every hyphenated, lowercase UUID-shaped string anywhere in the value
//! ([`mentions`]), except the object's own id: the same test as the
//! substring search that [`crate::api::kinds::mentioning`] falls back to,
//! so the index answers what the search would (a name holding an id
//! included), and needs no knowledge of any kind's fields. Topology
//! objects are the keys [`ObjectKind::parse_key`] knows; nothing under
//! `/midonet/v1/meta/`, `/midonet/v1/state/` or `/midonet/v1/neutron/` is
//! indexed (Neutron's own objects are found through its indexes,
//! [`crate::neutron::store`]).
//!
//! # Invariant: entries of an object change only with the object
//!
//! [`crate::db::Tx::commit`] adds and removes an object's entries
//! ([`changes`]) in the store transaction that writes the object, diffing
//! against the previous value it compares on. Host registration, the one
//! writer of topology objects outside `Tx` (it needs a lease on the same
//! transaction), does the same ([`crate::topology_service`]). So every
//! entry of a referrer `R` is written only together with `R`, under a
//! compare on `R`'s revision, and the index is exact at every revision.
//!
//! The writers of topology objects, audited for this:
//!
//! | writer | how |
//! |---|---|
//! | REST API (`api`), Neutron plans (`neutron::store`), health-check ports (`lb_checker`) | `Tx` |
//! | `RegisterHost`, `ReportInterfaces` (hosts, host interfaces) | `IndexedWrite` in [`crate::topology_service`] |
//! | agent state, SNAT and checker claims, singletons, credentials, revoked tokens | not objects: `state/` or `meta/` keys |
//!
//! # Building it for a store written without it
//!
//! [`build`] runs at cluster start: if the marker does not name this
//! format, it reads every topology object and every entry and, per
//! referrer whose entries differ from what its value mentions, writes the
//! difference under a compare on the referrer's revision (a concurrent
//! write of it fails the batch and the build reads again). Builds on
//! several replicas at once write the same entries, so they are harmless
//! to each other. The marker is put in the transaction of the last batch,
//! once every earlier batch committed. Until the marker names this format,
//! [`crate::db::Tx::refs_ready`] is false and lookups scan whole kinds as
//! before. The rule for replicas of versions that do not maintain the index
//! is in ARCHITECTURE.md (§9, departure 17).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use midonet_model::kind::{ObjectKind, KEY_ROOT};
use midonet_store::{Compare, CompareOp, Store, StoreError, Txn, TxnOp};
use uuid::Uuid;

/// Prefix of the index entries.
pub const PREFIX: &str = "/midonet/v1/meta/refs/";
/// Present, holding [`FORMAT`], once every object is indexed.
pub const MARKER: &str = "/midonet/v1/meta/refs-index";
/// The format of the entries this version writes and trusts. A change of
/// what [`mentions`] finds or of the key layout bumps it, so that the next
/// start rebuilds.
pub const FORMAT: &str = "1";

/// Operations per store transaction of a build: below etcd's default
/// `--max-txn-ops` (128), which also bounds the compares.
const BATCH_OPS: usize = 100;
/// Passes a build makes when concurrent writes keep failing its batches.
const BUILD_PASSES: u32 = 5;

/// Whether `key` is a topology object, whose mentions are indexed.
pub fn is_indexed(key: &[u8]) -> bool {
    std::str::from_utf8(key).is_ok_and(|k| ObjectKind::parse_key(k).is_some())
}

/// The ids the stored value of `key` mentions, without its own id (the
/// single id part of a top-level object's key; sub-objects such as tunnel
/// zone members mention their parents, which are also their key parts, and
/// keep them: a host's memberships are found through the host).
pub fn mentions(key: &str, value: &[u8]) -> BTreeSet<Uuid> {
    let own = match ObjectKind::parse_key(key) {
        Some((_, parts)) if parts.len() == 1 => parts[0].parse::<Uuid>().ok(),
        _ => None,
    };
    let mut out = BTreeSet::new();
    // Every offset, overlapping ones included: the substring search this
    // replaces would find an id starting inside the tail of another.
    for start in 0..value.len().saturating_sub(35) {
        if let Some(id) = uuid_at(&value[start..start + 36]) {
            if Some(id) != own {
                out.insert(id);
            }
        }
    }
    out
}

/// The UUID spelled by 36 bytes in the hyphenated lowercase form
/// (`Uuid::hyphenated`), which is how every id is stored.
fn uuid_at(b: &[u8]) -> Option<Uuid> {
    let shaped = b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
    });
    if !shaped {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The entry saying that the object at `referrer` mentions `target`.
pub fn entry_key(target: Uuid, referrer: &str) -> String {
    format!("{PREFIX}{target}/{}", referrer.strip_prefix(KEY_ROOT).unwrap_or(referrer))
}

/// The prefix of the entries of `target` whose referrer is of `kind`.
pub fn kind_prefix(target: Uuid, kind: ObjectKind) -> String {
    format!("{PREFIX}{target}/{}/", kind.segment())
}

/// Splits an entry key into its target and the referrer's store key.
pub fn parse_entry(entry: &str) -> Option<(Uuid, String)> {
    let rest = entry.strip_prefix(PREFIX)?;
    let (target, referrer) = rest.split_once('/')?;
    Some((target.parse().ok()?, format!("{KEY_ROOT}{referrer}")))
}

/// The index operations for the object at `key` going from `old` to `new`
/// (`None`: absent). Empty for keys that are not topology objects.
pub fn changes(key: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> Vec<TxnOp> {
    if !is_indexed(key.as_bytes()) {
        return Vec::new();
    }
    let before = old.map(|v| mentions(key, v)).unwrap_or_default();
    let after = new.map(|v| mentions(key, v)).unwrap_or_default();
    let removed = before.difference(&after).map(|t| TxnOp::delete(entry_key(*t, key)));
    let added = after.difference(&before).map(|t| TxnOp::put(entry_key(*t, key), Vec::new()));
    removed.chain(added).collect()
}

/// Whether a marker value says the index is complete in this format.
pub fn is_complete(marker: Option<&[u8]>) -> bool {
    marker == Some(FORMAT.as_bytes())
}

/// What [`build`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    /// The marker named this format: nothing read.
    AlreadyComplete,
    /// Entries were written for this many referrers, then the marker.
    Indexed { referrers: usize },
    /// Concurrent writes failed a batch on every pass: no marker, lookups
    /// keep scanning until the next start builds.
    GaveUp,
}

/// Builds the index of a store written without it, or with another
/// format, and marks it complete (see the module docs). Idempotent and
/// safe to run on every replica at once.
pub async fn build(store: &Arc<dyn Store>) -> Result<Built, StoreError> {
    for _ in 0..BUILD_PASSES {
        let marker = store.get(MARKER.as_bytes()).await?;
        if is_complete(marker.as_ref().map(|kv| kv.value.as_slice())) {
            return Ok(Built::AlreadyComplete);
        }
        if let Some(referrers) = build_pass(store).await? {
            return Ok(Built::Indexed { referrers });
        }
    }
    Ok(Built::GaveUp)
}

/// One pass: reads the entries, then the objects, and writes the
/// difference. `None` if a batch failed its compares.
async fn build_pass(store: &Arc<dyn Store>) -> Result<Option<usize>, StoreError> {
    // Entries first, objects second: an object written in between has
    // entries that are a diff from its previous value, and the difference
    // written below is still exact (its entries can only have moved
    // toward what the value read here mentions).
    let mut have: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    for kv in store.range(PREFIX.as_bytes()).await?.kvs {
        if let Some((target, referrer)) = std::str::from_utf8(&kv.key).ok().and_then(parse_entry) {
            have.entry(referrer).or_default().insert(target);
        }
    }
    let mut objects: BTreeMap<String, (i64, Vec<u8>)> = BTreeMap::new();
    for kind in ObjectKind::ALL {
        for kv in store.range(kind.prefix().as_bytes()).await?.kvs {
            if let Ok(key) = String::from_utf8(kv.key) {
                if is_indexed(key.as_bytes()) {
                    objects.insert(key, (kv.mod_revision, kv.value));
                }
            }
        }
    }
    let referrers: BTreeSet<&String> = have.keys().chain(objects.keys()).collect();
    let mut batches: Vec<(Vec<Compare>, Vec<TxnOp>)> = vec![(Vec::new(), Vec::new())];
    let mut count = 0;
    for key in referrers {
        let (rev, want) = match objects.get(key) {
            Some((rev, value)) => (*rev, mentions(key, value)),
            // Compared as missing: entries of a deleted object.
            None => (0, BTreeSet::new()),
        };
        let had = have.get(key).cloned().unwrap_or_default();
        if had == want {
            continue;
        }
        count += 1;
        let mut ops: Vec<TxnOp> =
            had.difference(&want).map(|t| TxnOp::delete(entry_key(*t, key))).collect();
        ops.extend(want.difference(&had).map(|t| TxnOp::put(entry_key(*t, key), Vec::new())));
        let last = batches.last_mut().expect("starts with one batch");
        if !last.1.is_empty() && last.1.len() + ops.len() > BATCH_OPS {
            batches.push((Vec::new(), Vec::new()));
        }
        let last = batches.last_mut().expect("starts with one batch");
        last.0.push(Compare::mod_revision(key.clone(), CompareOp::Equal, rev));
        last.1.extend(ops);
    }
    let n = batches.len();
    for (i, (compares, mut ops)) in batches.into_iter().enumerate() {
        if i + 1 == n {
            ops.push(TxnOp::put(MARKER, FORMAT));
        }
        if !store.txn(Txn::new().when(compares).and_then(ops)).await?.succeeded {
            return Ok(None);
        }
    }
    Ok(Some(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0a3c1b52-7d1e-4c55-9a5e-2f4b6c8d0e11";
    const B: &str = "1b4d2c63-8e2f-4d66-8b6f-3a5c7d9e1f22";

    fn id(s: &str) -> Uuid {
        s.parse().expect("test id")
    }

    #[test]
    fn mentions_are_the_ids_in_the_value_but_the_objects_own() {
        let key = format!("/midonet/v1/ports/{A}");
        let value = format!(r#"{{"id":"{A}","deviceId":"{B}","name":"x"}}"#);
        assert_eq!(mentions(&key, value.as_bytes()), BTreeSet::from([id(B)]));
    }

    #[test]
    fn sub_objects_keep_the_ids_of_their_key() {
        let key = format!("/midonet/v1/tunnel_zone_hosts/{A}/{B}");
        let value = format!(r#"{{"tunnelZoneId":"{A}","hostId":"{B}"}}"#);
        assert_eq!(mentions(&key, value.as_bytes()), BTreeSet::from([id(A), id(B)]));
    }

    #[test]
    fn only_lowercase_hyphenated_ids_count_and_overlaps_are_found() {
        let upper = A.to_uppercase();
        let simple = A.replace('-', "");
        // An id followed by "-xxxx-xxxx-xxxx-xxxxxxxxxxxx": a second
        // id-shaped string starts 28 bytes in, inside the first.
        let tail = &B[8..];
        let overlapping = format!("{A}{tail}");
        let second = format!("{}{tail}", &A[28..]);
        let value = format!(r#"["{upper}","{simple}","{overlapping}"]"#);
        let got = mentions("/midonet/v1/rules/x", value.as_bytes());
        assert_eq!(got, BTreeSet::from([id(A), id(&second)]));
    }

    #[test]
    fn changes_add_and_remove_only_the_difference() {
        let key = format!("/midonet/v1/ports/{A}");
        let old = format!(r#"{{"deviceId":"{B}"}}"#);
        let c = Uuid::new_v4();
        let new = format!(r#"{{"deviceId":"{c}"}}"#);
        let ops = changes(&key, Some(old.as_bytes()), Some(new.as_bytes()));
        assert_eq!(
            ops,
            vec![
                TxnOp::delete(format!("{PREFIX}{B}/ports/{A}")),
                TxnOp::put(format!("{PREFIX}{c}/ports/{A}"), Vec::new()),
            ]
        );
        assert!(changes(&key, Some(new.as_bytes()), Some(new.as_bytes())).is_empty());
        assert!(changes("/midonet/v1/meta/x", None, Some(new.as_bytes())).is_empty());
    }

    #[test]
    fn entry_keys_round_trip() {
        let referrer = format!("/midonet/v1/tunnel_zone_hosts/{A}/{B}");
        let e = entry_key(id(B), &referrer);
        assert!(e.starts_with(&kind_prefix(id(B), ObjectKind::TunnelZoneHost)));
        assert_eq!(parse_entry(&e), Some((id(B), referrer)));
    }
}
