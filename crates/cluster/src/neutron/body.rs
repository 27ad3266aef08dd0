//! Reading Neutron request bodies: the `{"<resource>": {...}}` envelope (or
//! `{"<resources>": [...]}` for bulk creates), unknown attributes refused,
//! each attribute type-checked with Neutron's messages.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{NResult, NeutronError};

/// The objects of a create: one, or several for a bulk create (`true`).
pub fn envelope(
    body: &[u8],
    singular: &str,
    plural: &str,
) -> NResult<(Vec<Map<String, Value>>, bool)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| NeutronError::bad_request(format!("Malformed request body: {e}")))?;
    let Value::Object(mut top) = v else {
        return Err(NeutronError::bad_request("Malformed request body: not a JSON object"));
    };
    if let Some(one) = top.remove(singular) {
        return match one {
            Value::Object(m) => Ok((vec![m], false)),
            _ => Err(NeutronError::bad_request(format!(
                "Malformed request body: '{singular}' must be an object"
            ))),
        };
    }
    if let Some(many) = top.remove(plural) {
        let Value::Array(items) = many else {
            return Err(NeutronError::bad_request(format!(
                "Malformed request body: '{plural}' must be a list"
            )));
        };
        if items.is_empty() {
            return Err(NeutronError::bad_request(format!(
                "Resources required: '{plural}' is empty"
            )));
        }
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            match i {
                Value::Object(m) => out.push(m),
                _ => {
                    return Err(NeutronError::bad_request(format!(
                        "Malformed request body: the items of '{plural}' must be objects"
                    )))
                }
            }
        }
        return Ok((out, true));
    }
    Err(NeutronError::bad_request(format!("Resource body required: expected '{singular}'")))
}

/// The object of an update: `{"<resource>": {...}}`.
pub fn update_envelope(body: &[u8], singular: &str) -> NResult<Map<String, Value>> {
    let (mut v, bulk) = envelope(body, singular, "\u{0}")?;
    if bulk || v.len() != 1 {
        return Err(NeutronError::bad_request(format!(
            "Resource body required: expected '{singular}'"
        )));
    }
    Ok(v.remove(0))
}

/// Refuses attributes outside `allowed` (`Unrecognized attribute(s)`) and
/// those in `read_only` (which Neutron also refuses).
pub fn check_keys(m: &Map<String, Value>, allowed: &[&str]) -> NResult<()> {
    let unknown: Vec<&str> =
        m.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(NeutronError::bad_request(format!(
            "Unrecognized attribute(s) '{}'",
            unknown.join(", ")
        )))
    }
}

/// A string attribute; `null` counts as absent.
pub fn opt_string(m: &Map<String, Value>, k: &str) -> NResult<Option<String>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(NeutronError::invalid(k, format!("{v} is not a valid string"))),
    }
}

/// A string attribute of at most `max` characters.
pub fn string_max(m: &Map<String, Value>, k: &str, max: usize) -> NResult<Option<String>> {
    let s = opt_string(m, k)?;
    if let Some(s) = &s {
        if s.chars().count() > max {
            return Err(NeutronError::invalid(k, format!("'{s}' exceeds maximum length of {max}")));
        }
    }
    Ok(s)
}

/// A nullable attribute that may be set to `null` explicitly:
/// `None` = absent, `Some(None)` = null.
pub fn nullable_string(m: &Map<String, Value>, k: &str) -> NResult<Option<Option<String>>> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(v) => Err(NeutronError::invalid(k, format!("{v} is not a valid string"))),
    }
}

/// A boolean: JSON booleans, and the strings Neutron converts.
pub fn opt_bool(m: &Map<String, Value>, k: &str) -> NResult<Option<bool>> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(v) => {
            Err(NeutronError::invalid(k, format!("'{}' cannot be converted to boolean", show(v))))
        }
    }
}

/// An integer, or a numeric string; `null` counts as absent.
pub fn opt_int(m: &Map<String, Value>, k: &str) -> NResult<Option<i64>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| NeutronError::invalid(k, format!("'{s}' is not an integer"))),
        Some(v) => Err(NeutronError::invalid(k, format!("'{}' is not an integer", show(v)))),
    }
}

/// A UUID attribute.
pub fn opt_uuid(m: &Map<String, Value>, k: &str) -> NResult<Option<String>> {
    match opt_string(m, k)? {
        None => Ok(None),
        Some(s) => {
            check_uuid(k, &s)?;
            Ok(Some(s))
        }
    }
}

pub fn check_uuid(k: &str, s: &str) -> NResult<()> {
    Uuid::parse_str(s)
        .map(|_| ())
        .map_err(|_| NeutronError::invalid(k, format!("'{s}' is not a valid UUID")))
}

/// A list attribute (`null` is absent).
pub fn opt_list<'a>(m: &'a Map<String, Value>, k: &str) -> NResult<Option<&'a Vec<Value>>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(NeutronError::invalid(k, format!("'{}' is not a list", show(v)))),
    }
}

/// A list of strings.
pub fn opt_strings(m: &Map<String, Value>, k: &str) -> NResult<Option<Vec<String>>> {
    let Some(a) = opt_list(m, k)? else { return Ok(None) };
    a.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            v => Err(NeutronError::invalid(k, format!("'{}' is not a valid string", show(v)))),
        })
        .collect::<NResult<Vec<_>>>()
        .map(Some)
}

/// An object of string keys (binding:profile).
pub fn opt_object(m: &Map<String, Value>, k: &str) -> NResult<Option<Map<String, Value>>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o.clone())),
        Some(v) => Err(NeutronError::invalid(k, format!("'{}' is not a dictionary", show(v)))),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test objects are objects"),
        }
    }

    #[test]
    fn envelopes_single_and_bulk() {
        let (v, bulk) =
            envelope(br#"{"network":{"name":"a"}}"#, "network", "networks").expect("one");
        assert_eq!((v.len(), bulk), (1, false));
        let (v, bulk) =
            envelope(br#"{"networks":[{"name":"a"},{"name":"b"}]}"#, "network", "networks")
                .expect("bulk");
        assert_eq!((v.len(), bulk), (2, true));
        for bad in
            [&b"nope"[..], b"[]", br#"{"net":{}}"#, br#"{"network":[]}"#, br#"{"networks":[]}"#]
        {
            let e = envelope(bad, "network", "networks").expect_err("bad");
            assert_eq!(e.status.as_u16(), 400, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn attributes_are_typed_with_neutron_messages() {
        let m = obj(json!({"a": "True", "b": 3, "c": "x", "d": null, "u": "nope"}));
        assert_eq!(opt_bool(&m, "a").expect("bool"), Some(true));
        assert!(opt_bool(&m, "c").expect_err("bad").message.contains("Invalid input for c"));
        assert_eq!(opt_int(&m, "b").expect("int"), Some(3));
        assert_eq!(opt_string(&m, "d").expect("null"), None);
        assert_eq!(nullable_string(&m, "d").expect("null"), Some(None));
        assert!(opt_uuid(&m, "u").expect_err("uuid").message.contains("not a valid UUID"));
        let e = check_keys(&m, &["a", "b"]).expect_err("unknown");
        assert!(e.message.starts_with("Unrecognized attribute(s)"), "{}", e.message);
    }
}
