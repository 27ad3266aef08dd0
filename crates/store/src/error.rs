//! Errors of the store contract, the same for every backend.

use crate::types::{LeaseId, Revision};

/// A boxed cause kept in [`StoreError::source`](std::error::Error::source).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
///
/// Callers match on the first four variants: they are expected conditions
/// with a defined recovery. The rest are failures of the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested revision is older than the compaction point: its
    /// history is gone. A watcher recovers by re-listing (`range`) and
    /// watching from the listing's revision + 1.
    #[error("revision compacted, history starts at {compact_revision}")]
    Compacted { compact_revision: Revision },

    /// The requested revision is newer than the store's current revision.
    #[error("revision {0} is in the future")]
    FutureRevision(Revision),

    /// The lease does not exist (never granted, expired or revoked).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),

    /// The request is malformed: empty key, the same key written twice in
    /// one transaction, too many operations, non-positive TTL...
    #[error("invalid request: {0}")]
    InvalidArgument(String),

    /// The backend cannot be reached right now (etcd down, no leader,
    /// timeout). Retrying later may succeed.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),

    /// Any other backend failure (I/O, corruption, unexpected response).
    #[error("store backend failed")]
    Backend(#[source] BoxError),

    /// Stored bytes could not be decoded (embedded backend).
    #[error("corrupt store record: {0}")]
    Corrupt(String),

    /// [`crate::connect`] was given a URL it does not understand.
    #[error("invalid store url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
}

impl StoreError {
    pub(crate) fn backend(e: impl Into<BoxError>) -> Self {
        StoreError::Backend(e.into())
    }

    /// True for errors after which retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
