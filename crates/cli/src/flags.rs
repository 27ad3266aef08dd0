//! A resource's flags, derived from the fields of its model type.
//!
//! The model describes every REST field of every object: its name and the
//! JSON it takes ([`midonet_model::schema`], checked against the structs by
//! the compiler). A resource has one flag per field of its model type, in
//! the model's order, taken from the first of:
//!
//! 1. the row its table entry writes out for the field
//!    ([`ResourceSpec::flags`]), where the model cannot say it: the flag is
//!    not named after the field (`--network` sets `networkAddress` and
//!    `networkLength`), the parsing is special (`--nw-proto tcp`), or the
//!    help says more than the field name (`--weight`: "default 100; lower
//!    wins");
//! 2. the field's [`COMMON`] flag (`--tenant`, `--admin-state-up`, the
//!    filter chains);
//! 3. the field alone: `inboundMirrorIds`, a list of mirror ids, becomes
//!    `--inbound-mirrors A,B,...`, parsed as mirror ids; a reference to
//!    objects that have names (chains, bridges) also takes a name.
//!
//! Fields that must not be flags are listed in the row's `no_flag` (read-only,
//! set from the parent's URI, or changed by another verb); `id` never is a
//! flag, since it is the server's to assign and the argument of show, update
//! and delete. So a field added to a model struct becomes a flag with no edit
//! here, and the tests below fail when a row names a field the model lacks.
//!
//! Rejected: deriving everything, help included, from the field name. The
//! result was correct but less clear (`--next-hop-gateway` "next hop gateway"
//! says less than "next-hop IP address"), so rows keep their help where it
//! tells more; and the rule flags stay written out whole, because their names
//! (`--nw-src` for `nwSrcAddress`/`nwSrcLength`) and parsing are the
//! CLI's own vocabulary.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use midonet_model::schema::{Described, Field, Shape, Target};
use midonet_model::topology::Stored;
use midonet_model::ObjectKind;

use crate::fields::{FieldSpec, Kind};
use crate::resources::{ResourceSpec, RESOURCES};

/// The model type behind a resource.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The stored kind, so that other resources' flags naming these objects
    /// resolve names through this resource.
    pub kind: Option<ObjectKind>,
    pub fields: fn() -> &'static [Field],
}

/// A stored model type.
pub const fn stored<T: Described + Stored>() -> Option<Model> {
    Some(Model { kind: Some(T::KIND), fields: T::fields })
}

/// A model type that is a view, not stored on its own (bindings).
pub const fn view<T: Described>() -> Option<Model> {
    Some(Model { kind: None, fields: T::fields })
}

/// A flag written out in a resource's row; what it leaves `None` is
/// derived from the model field named by `key`.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// JSON key it sets.
    pub key: &'static str,
    /// Flag name, when it is not the field's (see [`flag_name`]).
    pub flag: Option<&'static str>,
    /// Parsing, when the field's shape does not say it (see [`kind_of`]).
    pub kind: Option<Kind>,
    pub help: &'static str,
}

/// A flag written out whole: name, key, parsing and help.
pub const fn f(flag: &'static str, key: &'static str, kind: Kind, help: &'static str) -> Flag {
    Flag { key, flag: Some(flag), kind: Some(kind), help }
}

/// The flag of model field `key` with this help; name and parsing derived.
pub const fn h(key: &'static str, help: &'static str) -> Flag {
    Flag { key, flag: None, kind: None, help }
}

/// Flags of fields that mean the same on every object that has them.
pub const COMMON: &[Flag] = &[
    f("tenant", "tenantId", Kind::Str, "tenant (project) id"),
    h("adminStateUp", "administrative state (true/false)"),
    h("inboundFilterId", "chain applied to packets entering"),
    h("outboundFilterId", "chain applied to packets leaving"),
];

/// The flags of `spec` (computed once for all resources).
pub fn of(spec: &ResourceSpec) -> &'static [FieldSpec] {
    static ALL: OnceLock<HashMap<&'static str, Vec<FieldSpec>>> = OnceLock::new();
    let all = ALL.get_or_init(|| RESOURCES.iter().map(|r| (r.name, derive(r))).collect());
    all.get(spec.name).map_or(&[], Vec::as_slice)
}

/// The model fields of `spec` (none for resources without a model type).
pub fn model_fields(spec: &ResourceSpec) -> &'static [Field] {
    spec.model.map_or(&[], |m| (m.fields)())
}

fn derive(spec: &ResourceSpec) -> Vec<FieldSpec> {
    let model = model_fields(spec);
    let resolve = |row: &Flag, mf: Option<&Field>| FieldSpec {
        flag: match (row.flag, mf) {
            (Some(name), _) => Cow::Borrowed(name),
            (None, Some(mf)) => Cow::Owned(flag_name(mf)),
            (None, None) => Cow::Borrowed(row.key),
        },
        key: row.key,
        kind: row.kind.or(mf.map(kind_of)).unwrap_or(Kind::Str),
        help: Cow::Borrowed(row.help),
    };
    // The length half of a written-out `ADDR/LEN` flag has no flag of its own.
    let is_cidr_len =
        |name: &str| spec.flags.iter().any(|r| matches!(r.kind, Some(Kind::Cidr(l)) if l == name));
    let mut out = Vec::new();
    for mf in model {
        let name = mf.name.as_str();
        if let Some(row) = spec.flags.iter().find(|r| r.key == name) {
            out.push(resolve(row, Some(mf)));
        } else if name == "id" || spec.no_flag.contains(&name) || is_cidr_len(name) {
            continue;
        } else if let Some(common) = COMMON.iter().find(|c| c.key == name) {
            out.push(resolve(common, Some(mf)));
        } else {
            let kind = kind_of(mf);
            out.push(FieldSpec {
                flag: Cow::Owned(flag_name(mf)),
                key: name,
                kind,
                help: Cow::Owned(help_of(mf, kind)),
            });
        }
    }
    // Rows for keys the model does not describe (a resource without a model).
    for row in spec.flags.iter().filter(|r| model.iter().all(|m| m.name != r.key)) {
        out.push(resolve(row, None));
    }
    out
}

/// The CLI resource whose objects an id of `kind` names.
fn resource_of(target: Target) -> Option<&'static str> {
    let Target::Kind(kind) = target else { return None };
    RESOURCES.iter().find(|r| r.model.and_then(|m| m.kind) == Some(kind)).map(|r| r.name)
}

/// How a field's flag is parsed, from the field's shape.
pub fn kind_of(f: &Field) -> Kind {
    match f.shape {
        Shape::Ref(t) => match (resource_of(t), f.many) {
            (Some(r), false) => Kind::Ref(r),
            (Some(r), true) => Kind::RefList(r),
            // A bridge-or-router id: taken as given, a name would be ambiguous.
            (None, false) => Kind::Str,
            (None, true) => Kind::List,
        },
        Shape::Object => Kind::Json,
        _ if f.many => Kind::List,
        Shape::Int => Kind::Int,
        Shape::Bool => Kind::Bool,
        Shape::PortRange => Kind::Range,
        Shape::Text | Shape::Ip | Shape::Mac | Shape::MacMask | Shape::Choice(_) => Kind::Str,
    }
}

/// The field's name without the `Id`/`Ids` of a reference: `inboundFilterId`
/// → `inboundFilter`, `inboundMirrorIds` → `inboundMirrors`.
fn stem(f: &Field) -> Cow<'_, str> {
    let name = f.name.as_str();
    if let Shape::Ref(_) = f.shape {
        if let Some(s) = name.strip_suffix("Ids") {
            return Cow::Owned(format!("{s}s"));
        }
        if let Some(s) = name.strip_suffix("Id") {
            return Cow::Borrowed(s);
        }
    }
    Cow::Borrowed(name)
}

/// `inboundMirrorIds` → `inbound-mirrors`, `interfaceMTU` → `interface-mtu`.
pub fn flag_name(f: &Field) -> String {
    kebab(&stem(f))
}

fn kebab(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            // A new word starts at `aB`, `1B`, and at the last capital of
            // an acronym followed by a word (`MTUSize` → `mtu-size`).
            if !prev.is_ascii_uppercase() || next_lower {
                out.push('-');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Help for a field nobody has written help for: its name in words and
/// what the flag takes.
fn help_of(f: &Field, kind: Kind) -> String {
    let words = kebab(&stem(f)).replace('-', " ");
    // Names resolve through a collection whose objects have a `name`.
    let named = |r: &str| {
        crate::resources::find(r).is_some_and(|spec| {
            spec.collection.is_some() && model_fields(spec).iter().any(|m| m.name == "name")
        })
    };
    match (kind, f.shape) {
        (Kind::Ref(r), _) if named(r) => format!("{words} ({r} id or name)"),
        (Kind::Ref(r), _) => format!("{words} ({r} id)"),
        (Kind::RefList(r), _) if named(r) => format!("{words} ({r} ids or names, comma-separated)"),
        (Kind::RefList(r), _) => format!("{words} ({r} ids, comma-separated)"),
        (Kind::List, _) => format!("{words} (comma-separated)"),
        (Kind::Json, _) => format!("{words} as JSON"),
        (Kind::Bool, _) => format!("{words} (true/false)"),
        (_, Shape::Choice(names)) => format!("{words}: {}", names.join(", ")),
        _ => words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{find, Col};
    use std::collections::HashSet;

    fn keys_of(cols: &[(&str, Col)]) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for (_, c) in cols {
            match *c {
                Col::Key(k) | Col::Range(k) => keys.push(k),
                Col::Cidr(a, l) => keys.extend([a, l]),
                Col::Conditions => {}
            }
        }
        keys
    }

    /// Whether one of `flags` sets `key` (as its key, or as the length of a
    /// CIDR flag).
    fn sets(flags: &[FieldSpec], key: &str) -> bool {
        flags.iter().any(|fs| fs.key == key || matches!(fs.kind, Kind::Cidr(len) if len == key))
    }

    /// The test the resource table exists to pass: nothing in the model is
    /// forgotten, nothing in the table is stale.
    #[test]
    fn every_model_field_has_a_flag_a_column_or_a_reason() {
        for r in RESOURCES {
            let model = model_fields(r);
            let flags = r.fields();
            let cols = keys_of(r.columns);
            for mf in model {
                let n = mf.name.as_str();
                assert!(
                    n == "id" || sets(flags, n) || cols.contains(&n) || r.no_flag.contains(&n),
                    "{}: model field `{n}` has no flag, no column and no `no_flag` entry",
                    r.name
                );
            }
            if r.model.is_none() {
                continue;
            }
            let known: HashSet<&str> = model.iter().map(|m| m.name.as_str()).collect();
            let written =
                r.flags.iter().map(|row| row.key).chain(r.flags.iter().filter_map(|row| {
                    match row.kind {
                        Some(Kind::Cidr(len)) => Some(len),
                        _ => None,
                    }
                }));
            for k in written.chain(r.no_flag.iter().copied()).chain(cols) {
                assert!(known.contains(k), "{}: `{k}` is not a field of the model", r.name);
            }
        }
    }

    #[test]
    fn rows_without_a_model_field_say_everything() {
        for r in RESOURCES {
            for row in r.flags {
                if model_fields(r).iter().all(|m| m.name != row.key) {
                    assert!(
                        row.flag.is_some() && row.kind.is_some(),
                        "{}: --{} sets `{}`, which the model does not describe",
                        r.name,
                        row.flag.unwrap_or(row.key),
                        row.key
                    );
                }
            }
        }
    }

    fn flag<'a>(r: &str, name: &str) -> &'a FieldSpec {
        let spec = find(r).expect("resource");
        spec.fields().iter().find(|fs| fs.flag == name).unwrap_or_else(|| panic!("{r} --{name}"))
    }

    #[test]
    fn model_fields_without_a_row_become_flags() {
        let m = flag("bridge", "inbound-mirrors");
        assert_eq!((m.key, m.kind), ("inboundMirrorIds", Kind::RefList("mirror")));
        // Mirrors have no name to look them up by.
        assert_eq!(m.help, "inbound mirrors (mirror ids, comma-separated)");
        let lb = flag("router", "load-balancer");
        assert_eq!(lb.help, "load balancer (load-balancer id)");
        let f = flag("router", "local-redirect-chain");
        assert_eq!(f.help, "local redirect chain (chain id or name)");
        let t = flag("bridge", "tenant");
        assert_eq!((t.key, t.kind), ("tenantId", Kind::Str));
        assert_eq!(f.kind, Kind::Ref("chain"));
        let h = flag("tunnel-zone-member", "host");
        assert_eq!((h.key, h.kind), ("hostId", Kind::Ref("host")));
        // No flag for what the server owns or another verb sets.
        let port = find("port").expect("port");
        for key in
            ["id", "deviceId", "tunnelKey", "peerId", "hostId", "portGroupIds", "networkLength"]
        {
            assert!(port.fields().iter().all(|fs| fs.key != key), "port has a flag for {key}");
        }
    }

    #[test]
    fn derived_names() {
        let fl = |name: &str, shape, many| flag_name(&Field { name: name.into(), shape, many });
        let chain = Shape::Ref(Target::Kind(midonet_model::ObjectKind::Chain));
        assert_eq!(fl("inboundFilterId", chain, false), "inbound-filter");
        assert_eq!(fl("ruleIds", chain, true), "rules");
        assert_eq!(fl("vifId", Shape::Text, false), "vif-id");
        assert_eq!(fl("interfaceMTU", Shape::Int, false), "interface-mtu");
        assert_eq!(fl("opt121Routes", Shape::Object, true), "opt121-routes");
    }
}
