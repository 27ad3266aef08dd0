//! The per-request context: who is calling, which base URL to write into
//! links, which media types to answer with, and body parsing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::auth::Session;
use crate::db::Tx;
use crate::error::ApiError;
use crate::Cluster;

/// Path of the API under the server root.
pub const API_PREFIX: &str = "/midonet-api";
/// Media type prefix of MidoNet's vendor types.
pub const VENDOR: &str = "application/vnd.org.midonet.";

/// Per-request context, extracted before any handler runs. Extracting it
/// authenticates the caller (401) and checks `Accept` (406).
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    pub session: Session,
    /// Absolute base URL of the API, without a trailing slash.
    pub base: String,
    /// The client asked for vendor media types: answer with them.
    pub vendor: bool,
    pub query: HashMap<String, String>,
    pub method: Method,
    content_type: Option<String>,
}

impl FromRequestParts<Arc<Cluster>> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        cluster: &Arc<Cluster>,
    ) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let token = header_str(headers, "x-auth-token");
        let session = cluster.auth.check_request(token, &parts.method).await?;
        let accept = header_str(headers, "accept").unwrap_or("");
        if !accept_ok(accept) {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "cannot answer with `{accept}`: use application/json or a MidoNet vendor type"
                ),
            ));
        }
        let base = base_url(cluster, headers);
        let query = parse_query(parts.uri.query().unwrap_or(""));
        Ok(Ctx {
            cluster: cluster.clone(),
            session,
            base,
            vendor: accept.contains("vnd.org.midonet"),
            query,
            method: parts.method.clone(),
            content_type: header_str(headers, "content-type").map(str::to_string),
        })
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The API base URL: the configured public URL, else built from `Host`.
pub fn base_url(cluster: &Cluster, headers: &HeaderMap) -> String {
    if !cluster.config.public_url.is_empty() {
        return cluster.config.public_url.trim_end_matches('/').to_string();
    }
    let host = header_str(headers, "host")
        .map(str::to_string)
        .unwrap_or_else(|| cluster.config.listen.to_string());
    format!("{}://{host}{API_PREFIX}", cluster.config.api_scheme())
}

fn accept_ok(accept: &str) -> bool {
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|item| {
        let t = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        t == "*/*"
            || t == "application/*"
            || t == "application/json"
            || t.ends_with("+json")
            || t.starts_with(VENDOR)
            || t == "text/*"
            || t == "text/plain"
    })
}

fn content_type_ok(ct: &str) -> bool {
    let t = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    t == "application/json" || t.ends_with("+json") || t.starts_with(VENDOR) || t.is_empty()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Ctx {
    /// Absolute URI of an API path (`/bridges/<id>`).
    pub fn uri(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn tx(&self) -> Tx {
        self.cluster.tx()
    }

    /// Whether the caller may see an object owned by `owner`.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self.session.tenant() {
            None => true,
            Some(t) => owner == Some(t),
        }
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.session.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("{what} are managed by administrators only")))
        }
    }

    /// The `tenant_id` query filter, if any.
    pub fn tenant_filter(&self) -> Option<&str> {
        self.query.get("tenant_id").map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Decodes a request body into `T`, naming the field at fault.
    pub fn parse<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ApiError> {
        if let Some(ct) = &self.content_type {
            if !body.is_empty() && !content_type_ok(ct) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("cannot read `{ct}`: send application/json or a MidoNet vendor type"),
                ));
            }
        }
        parse_json(body)
    }

    fn media_header(&self, media: &str) -> HeaderValue {
        if self.vendor {
            HeaderValue::from_str(&format!("{VENDOR}{media}+json"))
                .unwrap_or(HeaderValue::from_static("application/json"))
        } else {
            HeaderValue::from_static("application/json")
        }
    }

    /// 200 with one object.
    pub fn one(&self, media: &str, v: Value) -> Response {
        let mut r = (StatusCode::OK, v.to_string()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, self.media_header(media));
        r
    }

    /// 200 with a bare JSON array.
    pub fn many(&self, media: &str, items: Vec<Value>) -> Response {
        let mut r = (StatusCode::OK, Value::Array(items).to_string()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, self.media_header(&format!("collection.{media}")));
        r
    }

    /// 201 with an absolute `Location` and the new object.
    pub fn created(&self, media: &str, location: &str, v: Value) -> Response {
        let mut r = (StatusCode::CREATED, v.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, self.media_header(media));
        if let Ok(loc) = HeaderValue::from_str(location) {
            h.insert(header::LOCATION, loc);
        }
        r
    }
}

/// 204.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Decodes JSON into `T`; errors are 400s naming the field where serde (or
/// a look at the body) can tell which one it was.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = strip_position(&inner.to_string());
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request(format!("the body is not valid JSON: {msg}")));
            }
            // serde_path_to_error writes `a.b[2].c`, with `?` for a step it
            // could not name: keep the steps before it.
            let known = path.split('?').next().unwrap_or("").trim_matches('.');
            let field = if known.is_empty() {
                guess_field::<T>(body, &msg)
            } else if known.starts_with('[') {
                // A struct decoded from an array: serde reads fields by
                // position, so there is no field name to give.
                return Err(ApiError::bad_request(format!("invalid body at {known}: {msg}")));
            } else {
                Some(known.to_string())
            };
            Err(match field {
                Some(f) => ApiError::field(f, msg),
                None => ApiError::bad_request(format!("invalid body: {msg}")),
            })
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Finds the field of an error that serde could not locate (inside
/// flattened structs and tagged enums, which serde buffers before decoding):
/// the field whose value the message quotes, or the one `missing field `x``
/// misses.
///
/// Several keys may hold the quoted value, the body may repeat a key (serde
/// then decodes one of the copies, which one depending on the type), and
/// `x` may be missing from a nested object. So a field is named only when
/// the body itself shows it is the cause: without that key's copies that
/// hold the value, the error goes away or changes, and without the other
/// keys' copies it stays the same; `x` is missing from the one object where
/// adding `"x": null` changes the error. When no field or more than one
/// passes, the field cannot be known and none is named (the 400 still
/// carries serde's message): a wrong name sends the client after a field
/// that is fine. The probes decode edited copies of the body, on the error
/// path only.
///
/// Rejected: looking the value up in a `serde_json::Value` of the body (what
/// this did first): a map keeps only the last copy of a repeated key, so
/// `{"dlType":"2p48", "dlType":"2", "x":"2p48"}` named `x`; and naming `x`
/// as is, which for `{"tpSrc": {"end": 80}}` on a rule named `start`.
fn guess_field<T: DeserializeOwned>(body: &[u8], msg: &str) -> Option<String> {
    let tree: Node = serde_json::from_slice(body).ok()?;
    // The message `T` gives for the body edited so, if it still fails.
    let error_of = |edit: &Edit<'_>| -> Option<String> {
        let mut text = String::with_capacity(body.len() + 32);
        tree.write(&mut Vec::new(), edit, &mut text);
        serde_json::from_str::<T>(&text).err().map(|e| strip_position(&e.to_string()))
    };
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let missing = rest.split('`').next()?;
        let mut lacking = Vec::new();
        tree.objects_without(missing, &mut Vec::new(), "", &mut lacking);
        if lacking.len() > MAX_SUSPECTS {
            return None;
        }
        let mut causes = lacking.iter().filter(|(at, _)| {
            let edit = Edit { drop: &[], insert: Some((at, missing)) };
            error_of(&edit).as_deref() != Some(msg)
        });
        return match (causes.next(), causes.next()) {
            (Some((_, path)), None) if path.is_empty() => Some(missing.to_string()),
            (Some((_, path)), None) => Some(format!("{path}.{missing}")),
            _ => None,
        };
    }
    let quoted = msg.split('`').nth(1)?;
    let mut holders = Vec::new();
    tree.find(quoted, &mut Vec::new(), "", &mut holders);
    let mut names: Vec<&str> = holders.iter().map(|(_, name)| name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() > MAX_SUSPECTS {
        return None;
    }
    // The message without the holders that `pick` picks.
    let error_without = |pick: &dyn Fn(&str) -> bool| -> Option<String> {
        let drop: Vec<&[usize]> =
            holders.iter().filter(|(_, name)| pick(name)).map(|(at, _)| at.as_slice()).collect();
        error_of(&Edit { drop: &drop, insert: None })
    };
    let mut causes = names.iter().filter(|&&name| {
        let without_it = error_without(&|n| n == name);
        let only_it =
            if names.len() == 1 { Some(msg.to_string()) } else { error_without(&|n| n != name) };
        without_it.as_deref() != Some(msg) && only_it.as_deref() == Some(msg)
    });
    match (causes.next(), causes.next()) {
        (Some(name), None) => Some(name.to_string()),
        _ => None,
    }
}

/// How many fields [`guess_field`] tries (one or two decodes each) before
/// giving up: bounds the work a crafted body can cause.
const MAX_SUSPECTS: usize = 8;

/// A JSON document that keeps every copy of a repeated key, in order, so
/// that [`guess_field`] can edit it and decode the result as serde would
/// have decoded the body.
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Leaf(Value),
}

/// What [`Node::write`] changes: members and items left out (by position:
/// the index in each enclosing object or array), and a `"key": null` added
/// to one object.
struct Edit<'a> {
    drop: &'a [&'a [usize]],
    insert: Option<(&'a [usize], &'a str)>,
}

impl Node {
    /// The members of an object (with their keys) or the items of an array.
    fn children(&self) -> Vec<(Option<&str>, &Node)> {
        match self {
            Node::Object(entries) => entries.iter().map(|(k, c)| (Some(k.as_str()), c)).collect(),
            Node::Array(items) => items.iter().map(|c| (None, c)).collect(),
            Node::Leaf(_) => Vec::new(),
        }
    }

    /// Calls `each` with the position and field path (`a.b`, `a[2].b`) of
    /// every child; a top-level array has no field names, so none.
    fn walk(
        &self,
        at: &mut Vec<usize>,
        path: &str,
        mut each: impl FnMut(&mut Vec<usize>, &str, &Node),
    ) {
        if path.is_empty() && matches!(self, Node::Array(_)) {
            return;
        }
        for (i, (key, child)) in self.children().into_iter().enumerate() {
            let name = match key {
                Some(k) if path.is_empty() => k.to_string(),
                Some(k) => format!("{path}.{k}"),
                None => format!("{path}[{i}]"),
            };
            at.push(i);
            each(at, &name, child);
            at.pop();
        }
    }

    /// Collects the position and field path of every scalar whose text is
    /// `needle` as serde quotes it (strings trimmed, as the model's lenient
    /// decoders read them).
    fn find(
        &self,
        needle: &str,
        at: &mut Vec<usize>,
        path: &str,
        out: &mut Vec<(Vec<usize>, String)>,
    ) {
        if let Node::Leaf(v) = self {
            let text = match v {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            if !path.is_empty() && text.as_deref() == Some(needle) {
                out.push((at.clone(), path.to_string()));
            }
            return;
        }
        self.walk(at, path, |at, name, child| child.find(needle, at, name, out));
    }

    /// Collects the position and path of every object (this one included)
    /// that has no member `key`.
    fn objects_without(
        &self,
        key: &str,
        at: &mut Vec<usize>,
        path: &str,
        out: &mut Vec<(Vec<usize>, String)>,
    ) {
        if let Node::Object(entries) = self {
            if entries.iter().all(|(k, _)| k != key) {
                out.push((at.clone(), path.to_string()));
            }
        }
        self.walk(at, path, |at, name, child| child.objects_without(key, at, name, out));
    }

    /// Writes the document as JSON, edited.
    fn write(&self, at: &mut Vec<usize>, edit: &Edit<'_>, out: &mut String) {
        let (open, close) = match self {
            Node::Object(_) => ('{', '}'),
            Node::Array(_) => ('[', ']'),
            Node::Leaf(v) => {
                out.push_str(&v.to_string());
                return;
            }
        };
        out.push(open);
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
        };
        for (i, (key, child)) in self.children().into_iter().enumerate() {
            at.push(i);
            if !edit.drop.contains(&at.as_slice()) {
                sep(out);
                if let Some(k) = key {
                    out.push_str(&Value::String(k.to_string()).to_string());
                    out.push(':');
                }
                child.write(at, edit, out);
            }
            at.pop();
        }
        if let Some((_, key)) = edit.insert.filter(|(there, _)| *there == at.as_slice()) {
            sep(out);
            out.push_str(&Value::String(key.to_string()).to_string());
            out.push_str(":null");
        }
        out.push(close);
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Leaf(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Leaf(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Leaf(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Leaf(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Leaf(Value::String(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Leaf(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midonet_model::{Port, Rule};

    #[test]
    fn serde_errors_name_the_field() {
        let e = parse_json::<Port>(br#"{"type":"Router","networkLength":"abc"}"#).expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("networkLength"), "{e}");
        // Inside the flattened condition of a rule.
        let e = parse_json::<Rule>(br#"{"type":"accept","nwProto":"tcp"}"#).expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("nwProto"), "{e}");
        let e = parse_json::<Rule>(br#"{"type":"bogus"}"#).expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("type"), "{e}");
        let e =
            parse_json::<midonet_model::DhcpSubnet>(br#"{"subnetLength":24}"#).expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("subnetPrefix"), "{e}");
        let e = parse_json::<Port>(b"{not json").expect_err("bad");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.field.is_none());
    }

    /// Found by the `rest_body` fuzz target (fuzz/corpus/rest_body/
    /// crash-guess-field-duplicate-key, whose first byte picks `Rule`):
    /// serde decodes the first `dlType` (`2p48`, not a number), and the
    /// error named `dlTyp+`, an unknown key that holds the same text, because
    /// the value was looked up in a map that keeps only the last `dlType`.
    #[test]
    fn duplicate_key_error_names_the_copy_at_fault() {
        // The input byte for byte (after the kind selector), DEL included.
        let body = concat!(
            r#"{"thainId":"6f1c1d2e-0000-4000-8000-000000000001","Nposition":2,"#,
            r#""dlType":"2p48","dlSrc":"02:20:0000000000000001","name":"h1","#,
            r#""addd":",f0c1d0001","Nposition":2,"dlType":"2","Nposition":2,"#,
            r#""dlTyp+":"2p48","dlSrc":"p48","dlSrc":"01:00:00:"#,
            "\u{7f}",
            r#"00:00:01","dlSrcMassk":"ff:ff:f:0-"}"#,
        );
        let e = parse_json::<Rule>(body.as_bytes()).expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("dlType"), "{e}");
        assert!(e.message.contains("`2p48`"), "{e}");
    }

    #[test]
    fn a_field_that_cannot_be_told_is_not_named() {
        // Two fields hold the value the error quotes and each alone gives the
        // same error: either could be at fault, so neither is named.
        let e = parse_json::<Rule>(br#"{"type":"accept","dlType":"x","nwProto":"x"}"#)
            .expect_err("bad");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.field.is_none(), "{e}");
        assert!(e.message.contains("`x`"), "{e}");
        // An unknown key holding the same text is not the cause.
        let e =
            parse_json::<Rule>(br#"{"type":"accept","dlType":"x","dlTypo":"x"}"#).expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("dlType"), "{e}");
    }

    #[test]
    fn a_field_missing_inside_a_flattened_struct_is_named_with_its_object() {
        // `tpSrc` is in the rule's flattened condition: serde gives no path.
        let e = parse_json::<Rule>(br#"{"type":"accept","tpSrc":{"end":80}}"#).expect_err("bad");
        assert_eq!(e.field.as_deref(), Some("tpSrc.start"), "{e}");
        // Missing from two objects: the one serde reached first (adding
        // `start` to the other one leaves the error as it is).
        let e = parse_json::<Rule>(br#"{"type":"accept","tpSrc":{"end":80},"tpDst":{"end":80}}"#)
            .expect_err("bad");
        assert!(e.message.contains("missing field `start`"), "{e}");
        assert_eq!(e.field.as_deref(), Some("tpSrc.start"), "{e}");
    }

    /// Found by the `rest_body` stable replay: serde decodes a struct from
    /// an array by position, and the error named the field `[0]`.
    #[test]
    fn an_array_body_names_no_field() {
        let e = parse_json::<midonet_model::DhcpSubnet>(b"[1,2]").expect_err("bad");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.field.is_none(), "{e}");
        assert!(e.message.starts_with("invalid body at [0]: "), "{e}");
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        let p: Port = parse_json(b"").expect("empty ok");
        assert!(p.admin_state_up);
    }

    #[test]
    fn accept_and_content_types() {
        for ok in [
            "",
            "*/*",
            "application/json",
            "application/vnd.org.midonet.Bridge-v4+json",
            "text/html, */*;q=0.8",
        ] {
            assert!(accept_ok(ok), "{ok}");
        }
        assert!(!accept_ok("text/html"));
        assert!(!accept_ok("application/xml"));
        assert!(content_type_ok("application/vnd.org.midonet.PortLink-v1+json"));
        assert!(!content_type_ok("application/x-www-form-urlencoded"));
    }

    #[test]
    fn query_strings_decode() {
        let q = parse_query("tenant_id=t%201&x=a+b&flag");
        assert_eq!(q["tenant_id"], "t 1");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["flag"], "");
    }
}
