//! Sub-resources that are not top-level objects: links, host interfaces and
//! bindings, tunnel zone and port group memberships, IP address group
//! addresses, DHCP, and the MAC/ARP tables. (Children that are top-level
//! objects, such as `/bridges/{id}/ports`, come from each kind's
//! declaration in [`super::kinds`].)
//!
//! Each file registers its own routes next to its handlers.

use midonet_model::kind::ObjectKind;
use serde_json::Value;

use super::Builder;
use crate::error::ApiError;

mod dhcp;
mod groups;
mod hosts;
mod links;
mod tables;

pub fn routes(b: Builder) -> Builder {
    let b = links::routes(b);
    let b = hosts::routes(b);
    let b = groups::routes(b);
    let b = dhcp::routes(b);
    tables::routes(b)
}

/// A stored sub-object as a DTO: its JSON, `uri` and link fields.
fn obj_dto<T: serde::Serialize>(obj: &T, uri: String, links: &[(&str, String)]) -> Value {
    let mut v = serde_json::to_value(obj).expect("model objects always serialize");
    if let Value::Object(m) = &mut v {
        m.insert("uri".into(), Value::String(uri));
        for (k, l) in links {
            m.insert((*k).to_string(), Value::String(l.clone()));
        }
    }
    v
}

fn prefix_of(kind: ObjectKind, parts: &[&str]) -> String {
    format!("{}/", kind.key(parts))
}

fn conflict_exists(what: String) -> ApiError {
    ApiError::conflict(format!("{what} already exists"))
}

/// The `uri` of a DTO just built, for `Location`.
fn location(dto: &Value) -> String {
    dto["uri"].as_str().unwrap_or_default().to_string()
}
