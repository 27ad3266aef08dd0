//! Neutron's error body: `{"NeutronError": {"type", "message", "detail"}}`.
//!
//! Clients branch on the status (the SDK maps 404/409/400 to exception
//! classes) and on `type` (python-neutronclient maps it to `<type>Client`),
//! so both follow Neutron's own names.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

/// An error answered by the Neutron API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeutronError {
    pub status: StatusCode,
    /// Neutron's exception name (`NetworkNotFound`, `IpAddressAlreadyAllocated`).
    pub kind: String,
    pub message: String,
}

/// Shorthand for handler results.
pub type NResult<T> = Result<T, NeutronError>;

impl NeutronError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        NeutronError { status, kind: kind.to_string(), message: message.into() }
    }
    /// 400 `HTTPBadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", message)
    }
    /// 400 for one attribute, in Neutron's words.
    pub fn invalid(attr: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("Invalid input for {attr}. Reason: {reason}."))
    }
    /// 400 `InvalidInput` (a consistency error across attributes).
    pub fn invalid_input(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            format!("Invalid input for operation: {reason}."),
        )
    }
    /// 400 `BadRequest`, Neutron's `Bad <resource> request: ...` (a
    /// request that makes no sense as a whole).
    pub fn bad_resource(resource: &str, msg: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", format!("Bad {resource} request: {msg}."))
    }
    /// 404 with the resource's own type (`NetworkNotFound`, ...).
    pub fn not_found(kind: &str, what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, format!("{what} {id} could not be found."))
    }
    pub fn conflict(kind: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "HTTPForbidden", message)
    }
}

impl std::fmt::Display for NeutronError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.kind, self.message)
    }
}

impl From<ApiError> for NeutronError {
    fn from(e: ApiError) -> Self {
        let kind = match e.status {
            StatusCode::BAD_REQUEST => "HTTPBadRequest",
            StatusCode::UNAUTHORIZED => "HTTPUnauthorized",
            StatusCode::FORBIDDEN => "HTTPForbidden",
            StatusCode::NOT_FOUND => "HTTPNotFound",
            StatusCode::CONFLICT => "HTTPConflict",
            StatusCode::METHOD_NOT_ALLOWED => "HTTPMethodNotAllowed",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            _ => "HTTPInternalServerError",
        };
        NeutronError { status: e.status, kind: kind.into(), message: e.message }
    }
}

impl IntoResponse for NeutronError {
    fn into_response(self) -> Response {
        let body = json!({"NeutronError": {
            "type": self.kind,
            "message": self.message,
            "detail": "",
        }});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        resp
    }
}
