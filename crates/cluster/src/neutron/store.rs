//! Neutron objects in the store, and the executor of translation plans.
//!
//! ```text
//! /midonet/v1/neutron/<collection>/<id>   a Neutron object (JSON)
//! /midonet/v1/neutron/plans/<unit>        the keys its last plan wrote
//! /midonet/v1/neutron/owner/<midonet-id>  the unit that owns a MidoNet object
//! /midonet/v1/neutron/index/<collection>/<project>/<id>   "" (quota counts)
//! /midonet/v1/neutron/net_ports/<network>/<port>  the port's MAC and addresses
//! /midonet/v1/neutron/by/<collection>/<field>/<value>/<id>   see below
//! /midonet/v1/neutron/index_version       the version the indexes are complete in
//! ```
//!
//! The `by/` entries find objects by a field's value:
//!
//! | collection | field | value of the entry | read by |
//! |---|---|---|---|
//! | ports | `device_id` | its `device_owner` | a router's interfaces and gateway |
//! | ports | `security_groups` (each) | "" | group delete (in use?) |
//! | ports | `interface_subnet`: subnets of a router interface | the router id | floating IP association |
//! | floatingips | `port_id`, `router_id`, `floating_network_id` | "" | port, router, network writes |
//! | security_group_rules | `security_group_id`, `remote_group_id` | "" | a group's rules |
//!
//! A value is one key segment (`%` and `/` escaped). A network's subnets
//! are its `subnets` list, and a subnet's ports are among its network's
//! `net_ports`; neither needs an index of its own.
//!
//! # Invariant: an object's entries change only with the object
//!
//! Every entry is a function of one object's value ([`entries`]), and
//! [`put`] and [`delete`] write the difference between the entries of the
//! object's previous value (the one the transaction read, and compares
//! on) and of its new value, in the object's transaction. So reads of an
//! index inside a transaction see its own writes, and an update that moves
//! a port to another device or group, or a floating IP to another port,
//! leaves nothing behind. Lookups ([`find_by`]) list an index prefix and
//! read the objects it names, so write paths cost what they touch, not
//! the size of the cloud; only the list endpoints read whole collections.
//!
//! A store written by a version with fewer indexes is indexed once at
//! cluster start, before the Neutron API serves ([`build_indexes`]), as the
//! reverse-reference index is ([`crate::refs`], whose rule for replicas of
//! other versions applies here too: a replica that does not keep these
//! indexes must not write Neutron objects once the marker is present;
//! after one did, delete `/midonet/v1/neutron/index_version` and restart
//! a replica to rebuild them).
//!
//! [`replan`] writes a unit's new plan and deletes what its previous plan
//! (as recorded, not as recomputed: a newer translation may plan
//! differently) wrote and the new one does not. Objects that did not
//! change are not rewritten, so agents see no churn. Ports keep the tunnel
//! key they were given; new ones get the next from the counter, in the
//! same transaction. The `replan_*` functions load what a unit's pure
//! translation needs and run it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use midonet_model::kind::ObjectKind;
use midonet_model::{Host, Port};
use midonet_store::{Compare, CompareOp, Store, StoreError, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::ipam::Cidr;
use super::translate::{self, Plan};
use super::types::{self, owner};
use crate::db::Tx;
use crate::error::ApiError;

pub const PREFIX: &str = "/midonet/v1/neutron/";

pub const NETWORKS: &str = "networks";
pub const SUBNETS: &str = "subnets";
pub const SUBNETPOOLS: &str = "subnetpools";
pub const PORTS: &str = "ports";
pub const ROUTERS: &str = "routers";
pub const FLOATINGIPS: &str = "floatingips";
pub const SECURITY_GROUPS: &str = "security_groups";
pub const SECURITY_GROUP_RULES: &str = "security_group_rules";
pub const QUOTAS: &str = "quotas";

pub fn key(coll: &str, id: &str) -> String {
    format!("{PREFIX}{coll}/{id}")
}
fn plan_key(unit: &str) -> String {
    format!("{PREFIX}plans/{unit}")
}
/// The marker of a MidoNet object that the Neutron translation owns.
pub fn owner_key(id: Uuid) -> String {
    format!("{PREFIX}owner/{id}")
}

pub async fn get<T: DeserializeOwned>(
    tx: &mut Tx,
    coll: &str,
    id: &str,
) -> Result<Option<T>, ApiError> {
    if id.is_empty() || id.contains('/') {
        return Ok(None);
    }
    tx.get(&key(coll, id)).await
}

pub async fn all<T: DeserializeOwned>(tx: &mut Tx, coll: &str) -> Result<Vec<T>, ApiError> {
    tx.list(&format!("{PREFIX}{coll}/")).await
}

fn index_key(coll: &str, project: &str, id: &str) -> String {
    format!("{PREFIX}index/{coll}/{project}/{id}")
}
fn net_port_key(net: &str, id: &str) -> String {
    format!("{PREFIX}net_ports/{net}/{id}")
}

/// A field's value as one key segment: `%` and `/` escaped, so that a
/// `device_id` holding a `/` stays one segment and prefixes stay exact.
fn segment(v: &str) -> String {
    v.replace('%', "%25").replace('/', "%2F")
}

/// The prefix of the objects of `coll` whose `field` holds `value`.
fn by_prefix(coll: &str, field: &str, value: &str) -> String {
    format!("{PREFIX}by/{coll}/{field}/{}/", segment(value))
}

/// The prefixes every index entry lives under (for [`build_indexes`]).
const ENTRY_PREFIXES: [&str; 3] = ["index/", "net_ports/", "by/"];

/// The collections whose objects have index entries.
const INDEXED: [&str; 9] = [
    NETWORKS,
    SUBNETS,
    SUBNETPOOLS,
    PORTS,
    ROUTERS,
    FLOATINGIPS,
    SECURITY_GROUPS,
    SECURITY_GROUP_RULES,
    QUOTAS,
];

/// Index entries (key → value) of an object of `coll`: a function of
/// the object alone, so that a write moves them by a diff and
/// [`build_indexes`] can recompute them.
fn entries(coll: &str, id: &str, v: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let s = |f: &str| v.get(f).and_then(Value::as_str).filter(|x| !x.is_empty());
    let mut by = |field: &str, value: &str, rec: &str| {
        out.insert(format!("{}{id}", by_prefix(coll, field, value)), rec.as_bytes().to_vec());
    };
    match coll {
        PORTS => {
            if let Some(d) = s("device_id") {
                by("device_id", d, s("device_owner").unwrap_or_default());
            }
            for g in v.get("security_groups").and_then(Value::as_array).into_iter().flatten() {
                by("security_groups", g.as_str().unwrap_or_default(), "");
            }
            if let (Some(owner::ROUTER_INTERFACE), Some(router)) =
                (s("device_owner"), s("device_id"))
            {
                for f in v.get("fixed_ips").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(sub) = f.get("subnet_id").and_then(Value::as_str) {
                        by("interface_subnet", sub, router);
                    }
                }
            }
        }
        FLOATINGIPS => {
            for f in ["port_id", "router_id", "floating_network_id"] {
                if let Some(x) = s(f) {
                    by(f, x, "");
                }
            }
        }
        SECURITY_GROUP_RULES => {
            for f in ["security_group_id", "remote_group_id"] {
                if let Some(x) = s(f) {
                    by(f, x, "");
                }
            }
        }
        _ => {}
    }
    if let Some(p) = v.get("project_id").and_then(Value::as_str) {
        out.insert(index_key(coll, p, id), Vec::new());
    }
    if coll == PORTS {
        let net = v.get("network_id").and_then(Value::as_str).unwrap_or_default();
        let addrs = serde_json::json!({
            "id": id, "network_id": net, "mac_address": v.get("mac_address"),
            "fixed_ips": v.get("fixed_ips"),
        });
        out.insert(
            net_port_key(net, id),
            serde_json::to_vec(&addrs).expect("JSON values always serialize"),
        );
    }
    out
}

/// The entries of a stored value (none for a missing or undecodable one).
fn entries_of(coll: &str, id: &str, raw: Option<&[u8]>) -> BTreeMap<String, Vec<u8>> {
    match raw.map(serde_json::from_slice::<Value>) {
        Some(Ok(v)) => entries(coll, id, &v),
        _ => BTreeMap::new(),
    }
}

/// Writes the difference between two sets of entries.
fn write_diff(tx: &mut Tx, old: &BTreeMap<String, Vec<u8>>, new: BTreeMap<String, Vec<u8>>) {
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        tx.delete(k);
    }
    for (k, v) in new {
        if old.get(&k) != Some(&v) {
            tx.put_raw(&k, v);
        }
    }
}

/// Writes a Neutron object and moves its index entries from its previous
/// value's to its new value's.
///
/// The previous value is the one this transaction read: every update
/// loads the object before it changes it. A key the transaction never
/// read is a new object (a fresh id): it is compared as missing on
/// commit ([`Tx::assume_missing`]), so a write of an object not read
/// first fails instead of leaving its old entries behind.
pub fn put<T: Serialize>(tx: &mut Tx, coll: &str, id: &str, obj: &T) {
    let v = serde_json::to_value(obj).expect("Neutron objects always serialize");
    let k = key(coll, id);
    tx.assume_missing(&k);
    let old = entries_of(coll, id, tx.peek(&k).flatten());
    write_diff(tx, &old, entries(coll, id, &v));
    tx.put(&k, &v);
}

/// Deletes a Neutron object and its index entries.
pub async fn delete(tx: &mut Tx, coll: &str, id: &str) -> Result<(), ApiError> {
    let k = key(coll, id);
    let old = tx.get_raw(&k).await?;
    write_diff(tx, &entries_of(coll, id, old.as_deref()), BTreeMap::new());
    tx.delete(&k);
    Ok(())
}

/// The ids of a project's objects of a collection (from its index).
pub async fn project_ids(tx: &mut Tx, coll: &str, project: &str) -> Result<Vec<String>, ApiError> {
    let prefix = format!("{PREFIX}index/{coll}/{project}/");
    let keys = tx.list_raw(&prefix).await?;
    Ok(keys.into_iter().filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string)).collect())
}

/// How many objects of a collection a project has.
pub async fn count(tx: &mut Tx, coll: &str, project: &str) -> Result<usize, ApiError> {
    Ok(tx.list_raw(&format!("{PREFIX}index/{coll}/{project}/")).await?.len())
}

/// The MACs and addresses of a network's ports.
pub async fn network_ports(tx: &mut Tx, net: &str) -> Result<Vec<types::PortAddrs>, ApiError> {
    tx.list(&format!("{PREFIX}net_ports/{net}/")).await
}

/// The ids (and entry values) of the objects of `coll` whose `field`
/// holds `value`, through the `by/` index.
pub async fn ids_by(
    tx: &mut Tx,
    coll: &str,
    field: &str,
    value: &str,
) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let prefix = by_prefix(coll, field, value);
    let raw = tx.list_raw(&prefix).await?;
    Ok(raw.into_iter().map(|(k, v)| (k[prefix.len()..].to_string(), v)).collect())
}

/// The objects of `coll` whose `field` holds `value`, read in one round
/// trip (and compared on commit), in id order.
pub async fn find_by<T: DeserializeOwned>(
    tx: &mut Tx,
    coll: &str,
    field: &str,
    value: &str,
) -> Result<Vec<T>, ApiError> {
    let keys: Vec<String> =
        ids_by(tx, coll, field, value).await?.iter().map(|(id, _)| key(coll, id)).collect();
    tx.prefetch(&keys).await?;
    let mut out = Vec::with_capacity(keys.len());
    for k in &keys {
        out.extend(tx.get::<T>(k).await?);
    }
    Ok(out)
}

/// Whether any object of `coll` has `field` holding `value`.
pub async fn any_by(tx: &mut Tx, coll: &str, field: &str, value: &str) -> Result<bool, ApiError> {
    Ok(!ids_by(tx, coll, field, value).await?.is_empty())
}

/// The ports whose `device_id` is `device`.
pub async fn device_ports(tx: &mut Tx, device: &str) -> Result<Vec<types::Port>, ApiError> {
    find_by(tx, PORTS, "device_id", device).await
}

/// The rules of a security group.
pub async fn group_rules(
    tx: &mut Tx,
    group: &str,
) -> Result<Vec<types::SecurityGroupRule>, ApiError> {
    find_by(tx, SECURITY_GROUP_RULES, "security_group_id", group).await
}

/// The router interface ports on a subnet, with their routers' ids.
pub async fn subnet_interfaces(
    tx: &mut Tx,
    subnet: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    Ok(ids_by(tx, PORTS, "interface_subnet", subnet)
        .await?
        .into_iter()
        .map(|(port, router)| (port, String::from_utf8_lossy(&router).into_owned()))
        .collect())
}

/// The version of the index layout this code writes and trusts: a change
/// of [`entries`] bumps it, so that the next start rebuilds.
pub const INDEX_VERSION: u32 = 1;
/// The version the store's indexes are complete in (missing: 0, a store
/// written before the `by/` entries).
pub const INDEX_VERSION_KEY: &str = "/midonet/v1/neutron/index_version";

/// Operations per store transaction of a build: below etcd's default
/// `--max-txn-ops` (128), which also bounds the compares.
const BATCH_OPS: usize = 100;
/// Passes a build makes when concurrent writes keep failing its batches.
const BUILD_PASSES: u32 = 5;

/// What [`build_indexes`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    /// The marker named this version or a later one: nothing read.
    AlreadyComplete,
    /// Entries were corrected for this many objects, then the marker put.
    Indexed { objects: usize },
    /// Concurrent writes failed a batch on every pass: no marker.
    GaveUp,
}

fn stored_version(raw: Option<&[u8]>) -> u32 {
    raw.and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The object an entry key belongs to: (collection, id).
fn entry_owner(k: &str) -> Option<(&str, &str)> {
    let rest = k.strip_prefix(PREFIX)?;
    let (kind, rest) = rest.split_once('/')?;
    let coll = match kind {
        "index" | "by" => rest.split_once('/')?.0,
        "net_ports" => PORTS,
        _ => return None,
    };
    let id = rest.rsplit_once('/')?.1;
    Some((coll, id))
}

/// Builds the Neutron indexes of a store written by a version that kept
/// fewer of them (or none), and marks them complete in
/// [`INDEX_VERSION_KEY`]. Run at cluster start, before the Neutron API
/// serves; idempotent and safe on several replicas at once (the same
/// scheme as [`crate::refs::build`]): per object whose entries differ from
/// what its value wants, the difference is written under a compare on the
/// object's revision, in batches, the marker with the last.
pub async fn build_indexes(store: &Arc<dyn Store>) -> Result<Built, StoreError> {
    for _ in 0..BUILD_PASSES {
        let marker = store.get(INDEX_VERSION_KEY.as_bytes()).await?;
        if stored_version(marker.as_ref().map(|kv| kv.value.as_slice())) >= INDEX_VERSION {
            return Ok(Built::AlreadyComplete);
        }
        if let Some(objects) = build_pass(store).await? {
            return Ok(Built::Indexed { objects });
        }
    }
    Ok(Built::GaveUp)
}

/// One pass: the entries, then the objects (an object written in between
/// moved its entries toward what its value read here wants, so the
/// difference stays exact); `None` if a batch failed its compares.
async fn build_pass(store: &Arc<dyn Store>) -> Result<Option<usize>, StoreError> {
    type Entries = BTreeMap<String, Vec<u8>>;
    let mut have: BTreeMap<(String, String), Entries> = BTreeMap::new();
    for p in ENTRY_PREFIXES {
        for kv in store.range(format!("{PREFIX}{p}").as_bytes()).await?.kvs {
            let Ok(k) = String::from_utf8(kv.key) else { continue };
            let Some((coll, id)) = entry_owner(&k) else { continue };
            let owner = (coll.to_string(), id.to_string());
            have.entry(owner).or_default().insert(k, kv.value);
        }
    }
    let mut objects: BTreeMap<(String, String), (i64, Vec<u8>)> = BTreeMap::new();
    for coll in INDEXED {
        let prefix = format!("{PREFIX}{coll}/");
        for kv in store.range(prefix.as_bytes()).await?.kvs {
            let Ok(k) = String::from_utf8(kv.key) else { continue };
            let id = k[prefix.len()..].to_string();
            if id.contains('/') {
                // Not an object of the collection (its entries could not
                // name it).
                continue;
            }
            objects.insert((coll.to_string(), id), (kv.mod_revision, kv.value));
        }
    }
    let owners: BTreeSet<&(String, String)> = have.keys().chain(objects.keys()).collect();
    let mut batches: Vec<(Vec<Compare>, Vec<TxnOp>)> = vec![(Vec::new(), Vec::new())];
    let mut count = 0;
    let none = Entries::new();
    for owner in owners {
        let (coll, id) = (owner.0.as_str(), owner.1.as_str());
        let (rev, want) = match objects.get(owner) {
            Some((rev, v)) => (*rev, entries_of(coll, id, Some(v))),
            // Compared as missing: entries of a deleted object.
            None => (0, Entries::new()),
        };
        let had = have.get(owner).unwrap_or(&none);
        if *had == want {
            continue;
        }
        count += 1;
        let mut ops: Vec<TxnOp> = had
            .keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| TxnOp::delete(k.clone()))
            .collect();
        ops.extend(
            want.into_iter().filter(|(k, v)| had.get(k) != Some(v)).map(|(k, v)| TxnOp::put(k, v)),
        );
        let last = batches.last_mut().expect("starts with one batch");
        if !last.1.is_empty() && last.1.len() + ops.len() > BATCH_OPS {
            batches.push((Vec::new(), Vec::new()));
        }
        let last = batches.last_mut().expect("starts with one batch");
        last.0.push(Compare::mod_revision(key(coll, id), CompareOp::Equal, rev));
        last.1.extend(ops);
    }
    let n = batches.len();
    for (i, (compares, mut ops)) in batches.into_iter().enumerate() {
        if i + 1 == n {
            ops.push(TxnOp::put(INDEX_VERSION_KEY, INDEX_VERSION.to_string()));
        }
        if !store.txn(Txn::new().when(compares).and_then(ops)).await?.succeeded {
            return Ok(None);
        }
    }
    Ok(Some(count))
}

/// Whether a MidoNet object belongs to the Neutron translation.
pub async fn is_owned(tx: &mut Tx, id: Uuid) -> Result<bool, ApiError> {
    tx.exists(&owner_key(id)).await
}

/// The id of a top-level MidoNet object's key (`/midonet/v1/<kind>/<id>`).
fn top_level_id(k: &str) -> Option<Uuid> {
    let (_, parts) = ObjectKind::parse_key(k)?;
    match parts.as_slice() {
        [id] => id.parse().ok(),
        _ => None,
    }
}

/// Writes `unit`'s plan: see the module docs.
pub async fn replan(tx: &mut Tx, unit: &str, plan: Plan) -> Result<(), ApiError> {
    let old: Vec<String> = tx.get(&plan_key(unit)).await?.unwrap_or_default();
    let new_keys: HashSet<&str> = plan.objects.iter().map(|(k, _)| k.as_str()).collect();
    for k in old.iter().filter(|k| !new_keys.contains(k.as_str())) {
        tx.delete(k);
        if let Some(id) = top_level_id(k) {
            tx.delete(&owner_key(id));
        }
    }
    let keys: Vec<String> = plan.objects.iter().map(|(k, _)| k.clone()).collect();
    tx.prefetch(&keys).await?;
    let port_prefix = ObjectKind::Port.prefix();
    for (k, mut v) in plan.objects {
        let current: Option<Value> = tx.get(&k).await?;
        if k.starts_with(&port_prefix) {
            let key =
                match current.as_ref().and_then(|c| c.get("tunnelKey")).and_then(Value::as_u64) {
                    Some(t) if t > 0 => t,
                    _ => u64::from(tx.alloc_tunnel_key().await?),
                };
            v["tunnelKey"] = Value::from(key);
        }
        if current.as_ref() != Some(&v) {
            tx.put(&k, &v);
        }
        if let Some(id) = top_level_id(&k) {
            if current.is_none() {
                tx.put_raw(&owner_key(id), unit.as_bytes().to_vec());
            }
        }
    }
    if keys.is_empty() {
        if !old.is_empty() {
            tx.delete(&plan_key(unit));
        }
    } else if keys != old {
        tx.put(&plan_key(unit), &keys);
    }
    Ok(())
}

/// Replans a network (after it or one of its subnets changed); a deleted
/// network plans nothing.
pub async fn replan_network(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("network/{id}");
    let Some(net) = get::<types::Network>(tx, NETWORKS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let subnets = subnets_of(tx, &net).await?;
    replan(tx, &unit, translate::network(&net, &subnets)).await
}

/// The subnets of a network, in its order.
pub async fn subnets_of(tx: &mut Tx, net: &types::Network) -> Result<Vec<types::Subnet>, ApiError> {
    let mut out = Vec::new();
    for sid in &net.subnets {
        if let Some(s) = get::<types::Subnet>(tx, SUBNETS, sid).await? {
            out.push(s);
        }
    }
    Ok(out)
}

/// The host a `binding:host_id` names (by name, or by id).
pub async fn find_host(tx: &mut Tx, name: &str) -> Result<Option<Host>, ApiError> {
    if name.is_empty() {
        return Ok(None);
    }
    let hosts: Vec<Host> = crate::api::kinds::all(tx).await?;
    Ok(hosts.into_iter().find(|h| h.name == name || h.id.to_string() == name))
}

/// Replans a port; a deleted port plans nothing.
pub async fn replan_port(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("port/{id}");
    let Some(p) = get::<types::Port>(tx, PORTS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let subnets = match get::<types::Network>(tx, NETWORKS, &p.network_id).await? {
        Some(net) => subnets_of(tx, &net).await?,
        None => Vec::new(),
    };
    let host = find_host(tx, &p.binding_host_id).await?.map(|h| h.id);
    let ctx = translate::PortCtx { subnets: &subnets, host };
    replan(tx, &unit, translate::port(&p, &ctx)).await
}

/// Replans a router (after it, its gateway, interfaces or floating IPs
/// changed); a deleted router plans nothing.
pub async fn replan_router(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("router/{id}");
    let Some(r) = get::<types::Router>(tx, ROUTERS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let ports = device_ports(tx, id).await?;
    let subnet_keys: Vec<String> =
        ports.iter().flat_map(|p| &p.fixed_ips).map(|f| key(SUBNETS, &f.subnet_id)).collect();
    tx.prefetch(&subnet_keys).await?;
    let mut subnets: HashMap<String, types::Subnet> = HashMap::new();
    for f in ports.iter().flat_map(|p| &p.fixed_ips) {
        if let Some(s) = get::<types::Subnet>(tx, SUBNETS, &f.subnet_id).await? {
            subnets.insert(s.id.clone(), s);
        }
    }
    let mut interfaces = Vec::new();
    let mut gateway = None;
    for p in &ports {
        let is_gw = p.device_owner == owner::ROUTER_GATEWAY;
        if !is_gw && p.device_owner != owner::ROUTER_INTERFACE {
            continue;
        }
        for f in &p.fixed_ips {
            let Some(s) = subnets.get(&f.subnet_id) else { continue };
            let Ok(c) = Cidr::parse(&s.cidr) else { continue };
            interfaces.push(translate::Interface { port_id: p.id.clone(), cidr: c });
            if is_gw && gateway.is_none() && c.is_v4() {
                if let Ok(ip) = f.ip_address.parse() {
                    gateway = Some(translate::Gateway {
                        port_id: p.id.clone(),
                        mac: p.mac_address.clone(),
                        ip,
                        next_hop: s.gateway_ip.as_deref().and_then(|g| g.parse().ok()),
                        network_id: p.network_id.clone(),
                        enable_snat: r.external_gateway_info.as_ref().is_none_or(|g| g.enable_snat),
                    });
                }
            }
        }
    }
    let mut fips = Vec::new();
    for f in find_by::<types::FloatingIp>(tx, FLOATINGIPS, "router_id", id).await? {
        let (Ok(address), Some(Ok(fixed))) =
            (f.floating_ip_address.parse(), f.fixed_ip_address.as_deref().map(str::parse))
        else {
            continue;
        };
        fips.push(translate::Floating { id: f.id.clone(), address, fixed });
    }
    fips.sort_by(|a, b| a.id.cmp(&b.id));
    replan(tx, &unit, translate::router(&r, gateway.as_ref(), &interfaces, &fips)).await
}

/// Replans a security group (after it or its rules changed).
pub async fn replan_sg(tx: &mut Tx, id: &str) -> Result<(), ApiError> {
    let unit = format!("sg/{id}");
    let Some(sg) = get::<types::SecurityGroup>(tx, SECURITY_GROUPS, id).await? else {
        return replan(tx, &unit, Plan::default()).await;
    };
    let mut rules = group_rules(tx, id).await?;
    rules.sort_by(|a, b| (&a.std.created_at, &a.id).cmp(&(&b.std.created_at, &b.id)));
    replan(tx, &unit, translate::security_group(&sg, &rules)).await
}

/// Whether an agent has the port bound now.
pub async fn port_active(tx: &mut Tx, id: &str) -> Result<bool, ApiError> {
    let Ok(u) = id.parse::<Uuid>() else { return Ok(false) };
    tx.exists(&crate::db::port_active_key(u)).await
}

/// The MidoNet port of a Neutron port, if planned.
pub async fn midonet_port(tx: &mut Tx, id: &str) -> Result<Option<Port>, ApiError> {
    let Ok(u) = id.parse::<Uuid>() else { return Ok(None) };
    tx.get(&ObjectKind::Port.key(&[&u.to_string()])).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_names_its_object_and_values_stay_one_segment() {
        let port = serde_json::json!({
            "id": "p1", "project_id": "alice", "network_id": "n1", "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.3"}],
            "device_id": "vm/1%", "device_owner": "compute:nova", "security_groups": ["g1", "g2"],
        });
        let e = entries(PORTS, "p1", &port);
        assert!(e.contains_key(&format!("{PREFIX}by/ports/device_id/vm%2F1%25/p1")), "{e:?}");
        assert_eq!(e.len(), 5, "device, two groups, project, network: {e:?}");
        for k in e.keys() {
            assert_eq!(entry_owner(k), Some((PORTS, "p1")), "{k}");
        }
        let fip = serde_json::json!({"id": "f1", "project_id": "", "port_id": "p1",
                                     "router_id": null, "floating_network_id": "x"});
        let e = entries(FLOATINGIPS, "f1", &fip);
        assert_eq!(e.len(), 3, "port, network, project: {e:?}");
        for k in e.keys() {
            assert_eq!(entry_owner(k), Some((FLOATINGIPS, "f1")), "{k}");
        }
    }

    #[test]
    fn a_router_interface_is_found_by_its_subnets() {
        let port = serde_json::json!({
            "id": "p1", "device_id": "r1", "device_owner": owner::ROUTER_INTERFACE,
            "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.1"}],
        });
        let e = entries(PORTS, "p1", &port);
        assert_eq!(
            e.get(&format!("{PREFIX}by/ports/interface_subnet/s1/p1")),
            Some(&b"r1".to_vec())
        );
    }
}
