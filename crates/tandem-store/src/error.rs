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
    /// The database's storage has no room (SQLite's SQLITE_FULL, an ENOSPC
    /// under it, PostgreSQL's disk_full): the transaction was rolled back.
    #[error("metadata storage is full: {message}")]
    Full { message: String },
    /// The journal or a stored row could not be decoded.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Domain(error) => error.kind,
            StoreError::Full { .. } => ErrorKind::StorageFull,
            StoreError::Database { .. } | StoreError::Corrupt(_) => ErrorKind::Internal,
        }
    }
    pub fn database(error: sqlx::Error) -> Self {
        if is_full(&error) {
            return StoreError::Full {
                message: error.to_string(),
            };
        }
        StoreError::Database {
            message: error.to_string(),
            outcome: WriteOutcome::Aborted,
        }
    }
    /// A failed commit: its outcome is unknown, unless the database said it
    /// had no room, which both SQLite and PostgreSQL answer by rolling back.
    pub fn commit(error: sqlx::Error) -> Self {
        if is_full(&error) {
            return StoreError::Full {
                message: error.to_string(),
            };
        }
        StoreError::Database {
            message: error.to_string(),
            outcome: WriteOutcome::Unknown,
        }
    }
}

/// Whether `error` says the database's storage is full.
fn is_full(error: &sqlx::Error) -> bool {
    match error {
        // SQLite reports SQLITE_FULL (13) as its code; PostgreSQL
        // disk_full (53100), e.g. "could not extend file".
        sqlx::Error::Database(database) => matches!(database.code().as_deref(), Some("13") | Some("53100")),
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28),
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::database(error)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
