//! `POST /midonet-api/trace`: simulate a packet entering a port and return
//! the step-by-step trace. Owned by the simulation work; until it lands the
//! route answers 501 so clients get a clear message.

use axum::body::Bytes;
use axum::http::StatusCode;

use super::ctx::Ctx;
use crate::error::ApiError;

pub async fn trace(_ctx: Ctx, _body: Bytes) -> Result<axum::response::Response, ApiError> {
    Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "trace is not implemented yet"))
}
