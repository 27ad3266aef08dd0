//! Errors: [`ApiError`] is what a client sees (status, message, field);
//! [`ClusterError`] is why the cluster could not start or keep serving.

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use midonet_model::FieldError;
use midonet_store::StoreError;
use serde_json::json;

/// Media type of error bodies (MidoNet's `Error-v1`).
pub const ERROR_MEDIA_TYPE: &str = "application/vnd.org.midonet.Error-v1+json";

/// An error answered to an API client. Every variant of client input maps to
/// a 4xx here; 500/503 only come from the store or from a bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The REST field at fault, when one is.
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} field `{field}`: {}", self.status.as_u16(), self.message),
            None => write!(f, "{} {}", self.status.as_u16(), self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), field: None }
    }
    /// 400 naming the field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// Sets the field on any error (a 409 about `peerId`, a 404 about `hostId`).
    pub fn on(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::field(e.field, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, source = ?std::error::Error::source(&e), "store operation failed");
        match e {
            StoreError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the topology store is unavailable")
            }
            StoreError::InvalidArgument(m) => {
                // Too many operations for the backend's limits: the request
                // was valid, the deployment is too small for it.
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the store refused the transaction: {m}"),
                )
            }
            other => ApiError::internal(format!("store failure: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.message, "code": self.status.as_u16() });
        if let Some(f) = &self.field {
            body["field"] = json!(f);
            body["violations"] = json!([{ "property": f, "message": self.message }]);
        }
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ERROR_MEDIA_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"midonet\""));
        }
        resp
    }
}

/// Why the cluster could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read config file {path}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file is not valid")]
    ConfigParse(#[source] toml::de::Error),
    #[error("invalid config: {0}")]
    ConfigInvalid(String),
    #[error("cannot open the topology store")]
    Store(#[source] StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("http server failed")]
    Serve(#[source] std::io::Error),
    /// The Neutron API answers from its indexes, so it does not serve
    /// without them (`neutron::store::build_indexes`).
    #[error("cannot build the Neutron API's indexes")]
    NeutronIndexes(#[source] StoreError),
    #[error(
        "the Neutron API's indexes were not built: concurrent writes kept failing its batches"
    )]
    NeutronIndexesBusy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_names_field_and_uses_error_media_type() {
        let resp = ApiError::field("portAddress", "bad").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], ERROR_MEDIA_TYPE);
        let resp = ApiError::unauthorized("login").into_response();
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
