//! One declaration per top-level kind; the generic handlers in
//! [`super::generic`] do the rest (parse, tenancy, validation, reference
//! checks, guards, commit, render).
//!
//! A kind is declared with [`kind!`] in the file of its concern
//! (`devices.rs`, `ports.rs`, `chains.rs`, `groups.rs`, `hosts.rs`, `lb.rs`)
//! and listed once in [`registry`]. The declaration gives:
//!
//! * its [`Desc`]: messages, media type, root-document names, verbs, and the
//!   parents it is also listed and created under (`/bridges/{id}/ports`);
//! * its tenant field, if it has one;
//! * its references, each with what a delete of the referenced object does
//!   to the referrer ([`OnDelete`]): they are checked to exist and be
//!   visible on every write, touched as guards, and applied by
//!   [`delete_with_rules`] to whatever refers to a deleted object;
//! * hooks for what differs: [`Kind::sample`] (OpenAPI), derived fields and
//!   side objects ([`Kind::on_create`], [`Kind::on_update`]), cascades to
//!   owned objects ([`Kind::on_delete`]) and link fields ([`Kind::links`]).
//!
//! Adding a kind (a Neutron network, a BGP peer, a VTEP) is its model type,
//! an [`ObjectKind`] variant, one `kind!` block and one line in
//! [`registry`].
//!
//! Delete rules (also in the crate README):
//!
//! | deleting | does |
//! |---|---|
//! | bridge | deletes its ports (as below), DHCP subnets and hosts, MAC and ARP entries |
//! | router | deletes its ports (as below) and routes; clears `routerId` of its load balancer |
//! | port | unlinks the peer, deletes routes via the port and its MAC entries; 409 if a mirror or a redirect rule targets it |
//! | chain | 409 if another chain's jump rule targets it; else deletes its rules and clears device and port filters (and a router's forward and local-redirect chains) that name it |
//! | rule | removes it from its chain's order |
//! | port group | 409 if a rule refers to it; else removes it from its member ports |
//! | IP address group | 409 if a rule refers to it; else deletes its addresses |
//! | mirror | removes it from the mirror lists of ports, bridges and routers (MidoNet's CLEAR binding) |
//! | tunnel zone | deletes its memberships |
//! | host | 409 if alive; else unbinds its ports, drops memberships and interfaces |
//! | load balancer | 409 if pools or VIPs exist; clears the router's `loadBalancerId` |
//! | pool | 409 if VIPs use it; else deletes its members |
//! | health monitor | 409 if a pool uses it |

use std::collections::{HashMap, HashSet};
use std::future::Future;

use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::ctx::Ctx;
use super::Builder;
use crate::db::{self, Tx};
use crate::error::ApiError;

/// Which verbs the generic handlers serve for a kind.
#[derive(Debug, Clone, Copy)]
pub struct Verbs {
    pub list: bool,
    pub create: bool,
    pub get: bool,
    pub update: bool,
    pub delete: bool,
}

pub const ALL: Verbs = Verbs { list: true, create: true, get: true, update: true, delete: true };
const NO_CREATE: Verbs = Verbs { create: false, ..ALL };
const GET_DELETE: Verbs =
    Verbs { list: false, create: false, get: true, update: false, delete: true };

/// Static description of a kind.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    /// Singular, for messages ("bridge").
    pub what: &'static str,
    /// Vendor media type without prefix/suffix ("Bridge-v4").
    pub media: &'static str,
    /// Root-document key of the collection, if it has one.
    pub root: Option<&'static str>,
    /// Root-document key of the `{id}` template.
    pub template: &'static str,
    /// Hosts and tunnel zones: tenants get 403.
    pub admin_only: bool,
    pub verbs: Verbs,
    /// Kinds under which this one is also listed and created:
    /// `/<parent>/{id}/<segment>` ([`Kind::in_parent`] decides membership).
    pub parents: &'static [ObjectKind],
}

impl Desc {
    /// A kind with every verb, no parents, visible to tenants.
    pub const fn new(
        what: &'static str,
        media: &'static str,
        root: Option<&'static str>,
        template: &'static str,
    ) -> Desc {
        Desc { what, media, root, template, admin_only: false, verbs: ALL, parents: &[] }
    }
    const fn admin_only(self) -> Desc {
        Desc { admin_only: true, ..self }
    }
    const fn verbs(self, verbs: Verbs) -> Desc {
        Desc { verbs, ..self }
    }
    const fn under(self, parents: &'static [ObjectKind]) -> Desc {
        Desc { parents, ..self }
    }
}

/// What deleting a referenced object does to an object that refers to it
/// (MidoNet's storage bindings: `CLEAR`, `ERROR`, `CASCADE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// The reference is removed from the referrer, in the same transaction.
    Clear,
    /// The delete is refused with 409 naming the referrer and the field.
    Restrict,
    /// The referrer is deleted too. Only for kinds that have no delete
    /// rules and no referrers of their own (routes, pool members).
    Cascade,
}

/// One reference field of a kind and its delete rule.
#[derive(Debug, Clone, Copy)]
pub struct RefRule {
    /// REST field name.
    pub field: &'static str,
    /// Kind of the referenced object.
    pub to: ObjectKind,
    pub on_delete: OnDelete,
}

/// Runtime state and derived values needed to render a batch of objects.
#[derive(Default)]
pub struct Env {
    pub active_ports: HashSet<Uuid>,
    pub alive_hosts: HashSet<Uuid>,
    /// The datapath provider each live host's agent registered with (hosts
    /// whose agent did not say are absent).
    pub host_datapaths: HashMap<Uuid, String>,
    pub rule_positions: HashMap<Uuid, u32>,
}

type Fut<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// A top-level stored kind served by the generic handlers. Implemented
/// through [`kind!`], which writes the descriptor, id, tenant and reference
/// items; the hooks have defaults.
pub trait Kind: Stored + Validate + Clone + Send + Sync + 'static {
    const DESC: Desc;
    /// Reference fields and their delete rules.
    const REFS: &'static [RefRule];
    fn id(&self) -> Uuid;
    fn set_id(&mut self, id: Uuid);
    /// The kind's own `tenantId` field, for kinds that have one.
    fn tenant_mut(&mut self) -> Option<&mut Option<String>>;
    /// `Some(tenant)` for kinds with their own `tenantId`.
    fn own_tenant(&self) -> Option<Option<&str>>;
    /// Ids this object refers to: (REST field, kind, id).
    fn refs(&self) -> Vec<(&'static str, ObjectKind, Uuid)>;
    /// Removes `id` from reference `field`; false if the field cannot be
    /// cleared (a required id).
    fn clear_ref(&mut self, field: &str, id: Uuid) -> bool;
    /// The object this one belongs to (port → device, rule → chain, ...).
    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        None
    }
    /// Sets the parent from a sub-collection URI.
    fn set_parent(&mut self, _kind: ObjectKind, _id: Uuid) {}
    /// Whether the object is listed under `/<kind>/{id}/<segment>`.
    fn in_parent(&self, kind: ObjectKind, id: Uuid) -> bool {
        self.parent() == Some((kind, id))
    }
    /// Fills required parent fields into a body posted to a sub-collection
    /// before it is decoded (a pool posted under a load balancer has no
    /// `loadBalancerId` of its own).
    fn child_body(_parent: ObjectKind, _id: Uuid, _body: &mut Map<String, Value>) {}
    /// An example value (OpenAPI).
    fn sample() -> Self;
    /// Derived fields and side objects of a create (after validation).
    fn on_create<'a>(&'a mut self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Keeps read-only fields of `old` and checks what changed.
    fn on_update<'a>(&'a mut self, _old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Deletes what the object owns (ports of a bridge, rules of a chain,
    /// ...). References to it are handled by [`delete_with_rules`] from
    /// [`Kind::REFS`] of every kind.
    fn on_delete<'a>(&'a self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Link fields and runtime state added to the DTO.
    fn links(&self, _ctx: &Ctx, _env: &Env, _m: &mut Map<String, Value>) {}
    /// Loads what [`Kind::links`] needs for a batch.
    fn load_env<'a>(_tx: &'a mut Tx, _env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Loads what [`Kind::links`] needs for this one object (cheaper than
    /// the batch when runtime state is a key per object).
    fn load_env_one<'a>(&'a self, tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Self::load_env(tx, env)
    }
}

/// A field that holds references: an optional id, a list, or a required id.
trait RefField {
    fn push_refs(&self, field: &'static str, kind: ObjectKind, out: &mut Vec<RefOf>);
    /// Removes `id`; false if this shape cannot lose it.
    fn clear(&mut self, id: Uuid) -> bool;
}

type RefOf = (&'static str, ObjectKind, Uuid);

impl<T> RefField for Option<Id<T>> {
    fn push_refs(&self, field: &'static str, kind: ObjectKind, out: &mut Vec<RefOf>) {
        if let Some(id) = self {
            out.push((field, kind, id.uuid()));
        }
    }
    fn clear(&mut self, id: Uuid) -> bool {
        if self.is_some_and(|x| x.uuid() == id) {
            *self = None;
        }
        true
    }
}

impl<T> RefField for Vec<Id<T>> {
    fn push_refs(&self, field: &'static str, kind: ObjectKind, out: &mut Vec<RefOf>) {
        out.extend(self.iter().map(|id| (field, kind, id.uuid())));
    }
    fn clear(&mut self, id: Uuid) -> bool {
        self.retain(|x| x.uuid() != id);
        true
    }
}

impl<T> RefField for Id<T> {
    fn push_refs(&self, field: &'static str, kind: ObjectKind, out: &mut Vec<RefOf>) {
        out.push((field, kind, self.uuid()));
    }
    fn clear(&mut self, _id: Uuid) -> bool {
        false
    }
}

/// Implements [`Kind`] for a model type:
///
/// ```text
/// kind! {
///     Bridge = Desc::new("bridge", "Bridge-v4", Some("bridges"), "bridgeTemplate");
///     tenant: tenant_id;
///     refs: [
///         "inboundFilterId": inbound_filter_id => Chain, Restrict;
///         "portGroup": condition.port_group => PortGroup, Restrict;
///     ]
///     fn sample() -> Self { ... }
///     // other hooks
/// }
/// ```
///
/// Every kind has an `id` field; `tenant:` names its tenant field, if any.
/// Each reference is `"restField": path.to.field => TargetKind, OnDelete;`
/// where the field is an `Option<Id<_>>`, a `Vec<Id<_>>` or an `Id<_>`.
macro_rules! kind {
    (
        $t:ty = $desc:expr;
        $(tenant: $tenant:ident;)?
        refs: [$($field:literal: $($path:ident).+ => $to:ident, $rule:ident;)*]
        $($hooks:tt)*
    ) => {
        impl $crate::api::kinds::Kind for $t {
            const DESC: $crate::api::kinds::Desc = $desc;
            const REFS: &'static [$crate::api::kinds::RefRule] = &[$(
                $crate::api::kinds::RefRule {
                    field: $field,
                    to: midonet_model::ObjectKind::$to,
                    on_delete: $crate::api::kinds::OnDelete::$rule,
                },
            )*];
            fn id(&self) -> uuid::Uuid {
                self.id.uuid()
            }
            fn set_id(&mut self, id: uuid::Uuid) {
                self.id = id.into();
            }
            fn tenant_mut(&mut self) -> Option<&mut Option<String>> {
                kind!(@tenant_mut self $($tenant)?)
            }
            fn own_tenant(&self) -> Option<Option<&str>> {
                kind!(@own_tenant self $($tenant)?)
            }
            #[allow(unused_mut)]
            fn refs(&self) -> Vec<(&'static str, midonet_model::ObjectKind, uuid::Uuid)> {
                let mut out = Vec::new();
                $($crate::api::kinds::RefField::push_refs(
                    &self.$($path).+, $field, midonet_model::ObjectKind::$to, &mut out,
                );)*
                out
            }
            #[allow(unused_variables)]
            fn clear_ref(&mut self, field: &str, id: uuid::Uuid) -> bool {
                match field {
                    $($field => $crate::api::kinds::RefField::clear(&mut self.$($path).+, id),)*
                    _ => false,
                }
            }
            $($hooks)*
        }
    };
    (@tenant_mut $s:ident $tenant:ident) => { Some(&mut $s.$tenant) };
    (@tenant_mut $s:ident) => { None };
    (@own_tenant $s:ident $tenant:ident) => { Some($s.$tenant.as_deref()) };
    (@own_tenant $s:ident) => { None };
}

mod chains;
mod devices;
mod groups;
mod hosts;
mod lb;
pub(crate) use lb::router_of;
mod ports;

pub use ports::SYSTEM_ROUTE_LOCAL;

fn key_of(kind: ObjectKind, id: Uuid) -> String {
    kind.key(&[&id.to_string()])
}

fn link(m: &mut Map<String, Value>, name: &str, value: String) {
    m.insert(name.to_string(), Value::String(value));
}

fn link_opt<T>(m: &mut Map<String, Value>, ctx: &Ctx, name: &str, coll: &str, id: Option<Id<T>>) {
    if let Some(id) = id {
        link(m, name, ctx.uri(&format!("/{coll}/{id}")));
    }
}

/// Reads every object of a kind.
pub async fn all<T: Stored>(tx: &mut Tx) -> Result<Vec<T>, ApiError> {
    tx.list(&T::KIND.prefix()).await
}

/// The objects of kind `T` whose stored JSON mentions `id`, other than
/// the object whose id is `id` (an object never needs to find itself).
/// Every object that refers to `id` is among them (ids are stored as their
/// lowercase hyphenated string). They come from the reverse-reference
/// index ([`crate::refs`], one range and one batched read, however many
/// objects the kind has); until the index is complete, from a substring
/// search over the kind's raw values. Callers still check the decoded
/// field, so a mention elsewhere (a name holding the id) costs a decode,
/// never a wrong answer.
pub async fn mentioning<T: Stored>(tx: &mut Tx, id: Uuid) -> Result<Vec<T>, ApiError> {
    let found = if tx.refs_ready().await? {
        tx.referrers(id, T::KIND).await?
    } else {
        scan(tx, T::KIND, id).await?
    };
    found
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| ApiError::internal(format!("stored object {k} does not decode: {e}")))
        })
        .collect()
}

/// [`mentioning`] without the index: every object of `kind` is read and
/// searched for `id` (which has the same answer as the index: the
/// object's own id aside, an id is mentioned iff its string is in the
/// value).
async fn scan(tx: &mut Tx, kind: ObjectKind, id: Uuid) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let needle = id.hyphenated().to_string();
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let own = key_of(kind, id);
    Ok(tx
        .list_raw(&kind.prefix())
        .await?
        .into_iter()
        .filter(|(k, v)| *k != own && finder.find(v).is_some())
        .collect())
}

/// Deletes every key under `<kind>/<parent>/` (sub-objects of a parent).
async fn delete_under(tx: &mut Tx, kind: ObjectKind, parent: Uuid) -> Result<(), ApiError> {
    let prefix = format!("{}/", kind.key(&[&parent.to_string()]));
    for (k, _) in tx.list_raw(&prefix).await? {
        tx.delete(&k);
    }
    Ok(())
}

fn in_use(what: &str, id: Uuid, by: &str, by_id: impl std::fmt::Display, field: &str) -> ApiError {
    ApiError::conflict(format!("{what} {id} is in use: {by} {by_id} refers to it in `{field}`"))
}

/// Deletes an object in `tx` with its delete rules: its guard first (so a
/// referrer committed after the scans below fails the transaction), what it
/// owns ([`Kind::on_delete`]), then the references to it as every kind's
/// [`Kind::REFS`] say, then the object.
pub async fn delete_with_rules<T: Kind>(tx: &mut Tx, ctx: &Ctx, obj: &T) -> Result<(), ApiError> {
    tx.guard_and_drop(obj.id()).await?;
    obj.on_delete(tx, ctx).await?;
    for k in registry() {
        (k.release)(tx, T::DESC.what, T::KIND, obj.id()).await?;
    }
    tx.delete(&obj.store_key());
    Ok(())
}

/// Applies `T`'s delete rules for references to the object `(target, id)`
/// being deleted: clears, cascades, or refuses with 409.
async fn release<T: Kind>(
    tx: &mut Tx,
    what: &'static str,
    target: ObjectKind,
    id: Uuid,
) -> Result<(), ApiError> {
    if !T::REFS.iter().any(|r| r.to == target) {
        return Ok(());
    }
    for mut obj in mentioning::<T>(tx, id).await? {
        let mut changed = false;
        for (field, kind, to) in obj.refs() {
            if kind != target || to != id {
                continue;
            }
            let rule = T::REFS.iter().find(|r| r.field == field).map(|r| r.on_delete);
            match rule.unwrap_or(OnDelete::Restrict) {
                OnDelete::Restrict => {
                    return Err(in_use(what, id, T::DESC.what, obj.id(), field));
                }
                OnDelete::Cascade => {
                    tx.delete(&obj.store_key());
                    changed = false;
                    break;
                }
                OnDelete::Clear => {
                    if !obj.clear_ref(field, id) {
                        return Err(ApiError::internal(format!(
                            "{}.{field} is required and cannot be cleared",
                            T::DESC.what
                        )));
                    }
                    changed = true;
                }
            }
        }
        if changed {
            tx.put(&obj.store_key(), &obj);
        }
    }
    Ok(())
}

type ReleaseFn = for<'a> fn(&'a mut Tx, &'static str, ObjectKind, Uuid) -> Fut<'a, ()>;

/// What the API needs to know of every kind without naming its type.
pub struct KindInfo {
    pub segment: &'static str,
    pub desc: Desc,
    /// The sample as JSON (OpenAPI).
    pub sample: fn() -> Value,
    /// Registers the kind's routes (collection, `{id}`, under parents).
    pub routes: fn(Builder) -> Builder,
    release: ReleaseFn,
    /// Reference fields declared `Clear` that cannot be cleared.
    #[cfg(test)]
    unclearable: fn() -> Vec<&'static str>,
}

fn info<T: Kind>() -> KindInfo {
    KindInfo {
        segment: T::KIND.segment(),
        desc: T::DESC,
        sample: || serde_json::to_value(T::sample()).expect("samples serialize"),
        routes: Builder::kind::<T>,
        release: |tx, what, target, id| Box::pin(release::<T>(tx, what, target, id)),
        #[cfg(test)]
        unclearable: || {
            let mut obj = T::sample();
            T::REFS
                .iter()
                .filter(|r| r.on_delete == OnDelete::Clear)
                .filter(|r| !obj.clear_ref(r.field, Uuid::nil()))
                .map(|r| r.field)
                .collect()
        },
    }
}

/// Every kind served by the generic handlers, in root-document order (which
/// is also the order delete rules visit referrers).
pub fn registry() -> [KindInfo; 16] {
    [
        info::<Bridge>(),
        info::<Router>(),
        info::<Port>(),
        info::<Route>(),
        info::<Chain>(),
        info::<Rule>(),
        info::<PortGroup>(),
        info::<IpAddrGroup>(),
        info::<Host>(),
        info::<TunnelZone>(),
        info::<LoadBalancer>(),
        info::<Pool>(),
        info::<PoolMember>(),
        info::<Vip>(),
        info::<HealthMonitor>(),
        info::<Mirror>(),
    ]
}

/// Ids with a runtime state entry under `/midonet/v1/state/<what>/<id>/...`.
pub async fn state_ids(tx: &mut Tx, what: &str) -> Result<HashSet<Uuid>, ApiError> {
    let prefix = format!("{}{what}/", db::STATE_PREFIX);
    Ok(tx
        .list_raw(&prefix)
        .await?
        .into_iter()
        .filter_map(|(k, _)| k[prefix.len()..].split('/').next().and_then(|i| i.parse().ok()))
        .collect())
}

/// The values of the state keys `<what>/<id>/<leaf>`, by id.
pub async fn state_values(
    tx: &mut Tx,
    what: &str,
    leaf: &str,
) -> Result<Vec<(Uuid, Vec<u8>)>, ApiError> {
    let prefix = format!("{}{what}/", db::STATE_PREFIX);
    Ok(tx
        .list_raw(&prefix)
        .await?
        .into_iter()
        .filter_map(|(k, v)| {
            let id = k[prefix.len()..].strip_suffix(leaf)?.strip_suffix('/')?;
            Some((id.parse().ok()?, v))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A required id cannot be cleared, so its delete rule must not be
    /// `Clear` (the delete would fail with 500 instead).
    #[test]
    fn only_clearable_references_are_declared_clear() {
        for k in registry() {
            assert_eq!((k.unclearable)(), Vec::<&str>::new(), "{}", k.desc.what);
        }
    }
}
