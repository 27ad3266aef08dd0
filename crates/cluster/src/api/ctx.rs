//! The per-request context: who is calling, which base URL to write into
//! links, which media types to answer with, and body parsing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
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
        let session = cluster.auth.check(token)?;
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
    format!("http://{host}{API_PREFIX}")
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

fn percent_decode(s: &str) -> String {
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
        Tx::new(self.cluster.store.clone())
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
            let field = if path.is_empty() || path == "." || path == "?" {
                guess_field(body, &msg)
            } else {
                Some(path.trim_start_matches('.').to_string())
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
/// flattened structs): `missing field `x``, or the key whose value the
/// message quotes.
fn guess_field(body: &[u8], msg: &str) -> Option<String> {
    if let Some(rest) = msg.strip_prefix("missing field `") {
        return rest.split('`').next().map(str::to_string);
    }
    let quoted = msg.split('`').nth(1)?;
    let v: Value = serde_json::from_slice(body).ok()?;
    find_key_with_value(&v, quoted, "")
}

fn find_key_with_value(v: &Value, needle: &str, prefix: &str) -> Option<String> {
    let obj = v.as_object()?;
    for (k, val) in obj {
        let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let text = match val {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        if text.as_deref() == Some(needle) {
            return Some(name);
        }
        if val.is_object() {
            if let Some(f) = find_key_with_value(val, needle, &name) {
                return Some(f);
            }
        }
    }
    None
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
