//! `rest_body`: REST request bodies of every object kind, decoded the way
//! the API does (`cluster::api::ctx::parse_json`: serde with the model's
//! lenient field decoders) and validated (`model::Validate`).
//!
//! ```text
//!  [kind selector (1)] [JSON body]      kind = ObjectKind::ALL[selector % len]
//! ```
//!
//! What must hold:
//!
//! * a body that does not decode is a 400, and a field it names is one of
//!   the object's (`Described::fields`; a nested `tpSrc.start` by its first
//!   part);
//! * a validation error names a REST (camelCase) field of the object;
//! * decode → encode → decode gives the same object, which validates the
//!   same way (the store keeps the encoding, agents decode it);
//! * a valid object's store key reads back as its kind, and the agent's
//!   `Topology::apply` accepts the stored bytes under that key.

use std::fmt::Debug;

use midonet_cluster::api::ctx::parse_json;
use midonet_model::schema::Described;
use midonet_model::topology::Stored;
use midonet_model::*;

pub fn rest_body(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let kind = ObjectKind::ALL[usize::from(sel) % ObjectKind::ALL.len()];
    // No wildcard: a new kind does not compile until it is fuzzed too.
    match kind {
        ObjectKind::Bridge => check::<Bridge>(body),
        ObjectKind::Router => check::<Router>(body),
        ObjectKind::Port => check::<Port>(body),
        ObjectKind::Route => check::<Route>(body),
        ObjectKind::Chain => check::<Chain>(body),
        ObjectKind::Rule => check::<Rule>(body),
        ObjectKind::PortGroup => check::<PortGroup>(body),
        ObjectKind::IpAddrGroup => check::<IpAddrGroup>(body),
        ObjectKind::IpAddrGroupAddr => check::<IpAddrGroupAddr>(body),
        ObjectKind::Host => check::<Host>(body),
        ObjectKind::HostInterface => check::<HostInterface>(body),
        ObjectKind::TunnelZone => check::<TunnelZone>(body),
        ObjectKind::TunnelZoneHost => check::<TunnelZoneHost>(body),
        ObjectKind::DhcpSubnet => check::<DhcpSubnet>(body),
        // The subnet comes from the URI (`/bridges/{id}/dhcp/{subnet}/hosts`,
        // an existing subnet's key), not from the body.
        ObjectKind::DhcpHost => check_with::<DhcpHost>(body, |h| h.subnet = "10.0.0.0_24".into()),
        ObjectKind::MacTableEntry => check::<MacTableEntry>(body),
        ObjectKind::ArpTableEntry => check::<ArpTableEntry>(body),
        ObjectKind::LoadBalancer => check::<LoadBalancer>(body),
        ObjectKind::Pool => check::<Pool>(body),
        ObjectKind::PoolMember => check::<PoolMember>(body),
        ObjectKind::Vip => check::<Vip>(body),
        ObjectKind::HealthMonitor => check::<HealthMonitor>(body),
        ObjectKind::Mirror => check::<Mirror>(body),
    }
}

/// A REST field path: `name`, `name.sub`, `name[3].sub`.
fn is_field_path(f: &str) -> bool {
    !f.is_empty()
        && f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_'))
}

/// Whether `path` starts with a field of `T`.
fn is_field_of<T: Described>(path: &str) -> bool {
    let top = path.split(['.', '[']).next().unwrap_or(path);
    T::fields().iter().any(|f| f.name == top)
}

fn check<T: Stored + Described + Validate + PartialEq + Debug>(body: &[u8]) {
    check_with::<T>(body, |_| {});
}

/// [`check`], with `from_uri` setting what the cluster takes from the
/// request's URI rather than from its body.
fn check_with<T: Stored + Described + Validate + PartialEq + Debug>(
    body: &[u8],
    from_uri: impl Fn(&mut T),
) {
    let mut obj: T = match parse_json(body) {
        Ok(o) => o,
        Err(e) => {
            assert_eq!(e.status.as_u16(), 400, "bad bodies are 400s: {e}");
            if let Some(f) = &e.field {
                assert!(is_field_path(f) && is_field_of::<T>(f), "the error names a field: {e}");
            }
            return;
        }
    };
    from_uri(&mut obj);
    let verdict = obj.validate();
    let bytes = serde_json::to_vec(&obj).expect("a decoded object encodes");
    if let Err(e) = &verdict {
        // A REST (camelCase) name; it may be a field the body left out
        // (`interfaceName` missing beside `hostId`), which the encoding
        // then skips too, so it is not looked up in the object.
        let camel = e.field.starts_with(|c: char| c.is_ascii_lowercase());
        let ok = is_field_path(&e.field) && camel && is_field_of::<T>(&e.field);
        assert!(ok, "validation names a REST field: {e}");
    }
    let again: T = parse_json(&bytes).unwrap_or_else(|e| {
        panic!("own encoding decodes: {e}: {}", String::from_utf8_lossy(&bytes))
    });
    assert_eq!(again, obj, "decode → encode → decode: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(again.validate(), verdict, "validates the same after a round trip");
    if verdict.is_err() {
        return;
    }
    let key = obj.store_key();
    let parsed = ObjectKind::parse_key(&key).map(|(k, _)| k);
    assert_eq!(parsed, Some(T::KIND), "store key reads back: {key}");
    let mut topo = Topology::default();
    if let Err(e) = topo.apply(&key, Some(&bytes)) {
        panic!("agents decode what is stored: {e}: {key}");
    }
}
