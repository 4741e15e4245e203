//! The store's error: a domain refusal, or a database failure that says
//! whether the write certainly did not happen.

use tandem_core::{Error as DomainError, ErrorKind};

/// Whether a failed write may still have been applied. Retry and failover
/// logic needs to know: an aborted write can be retried anywhere; an unknown
/// one must be checked first (the commit may have reached the disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The transaction certainly did not commit.
    Aborted,
    /// The failure happened while committing; the write may or may not be
    /// durable.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request was refused by the domain rules; nothing changed.
    #[error("{0}")]
    Domain(#[from] DomainError),
    /// The database failed.
    #[error("metadata database error ({outcome:?}): {message}")]
    Database { message: String, outcome: WriteOutcome },
    /// The journal or a stored row could not be decoded.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Domain(error) => error.kind,
            StoreError::Database { .. } | StoreError::Corrupt(_) => ErrorKind::Internal,
        }
    }
    pub fn database(error: sqlx::Error) -> Self {
        StoreError::Database {
            message: error.to_string(),
            outcome: WriteOutcome::Aborted,
        }
    }
    pub fn commit(error: sqlx::Error) -> Self {
        StoreError::Database {
            message: error.to_string(),
            outcome: WriteOutcome::Unknown,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::database(error)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
