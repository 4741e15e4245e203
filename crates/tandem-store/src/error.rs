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

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// A database's error reply with a given code, as a driver reports it.
    #[derive(Debug)]
    struct Reply(&'static str);

    impl std::fmt::Display for Reply {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Reply {}

    impl sqlx::error::DatabaseError for Reply {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn reply(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Reply(code)))
    }

    #[test]
    fn full_storage_is_told_apart_from_other_failures() {
        // SQLITE_FULL, PostgreSQL's disk_full, and ENOSPC from the OS.
        for error in [
            reply("13"),
            reply("53100"),
            sqlx::Error::Io(std::io::Error::from_raw_os_error(28)),
        ] {
            assert!(matches!(StoreError::database(error), StoreError::Full { .. }));
        }
        assert!(matches!(
            StoreError::commit(reply("53100")),
            StoreError::Full { .. }
        ));
        assert_eq!(StoreError::database(reply("13")).kind(), ErrorKind::StorageFull);
        // SQLITE_CONSTRAINT, unique_violation, a reset connection: not full,
        // and a failed commit's outcome stays unknown.
        for error in [
            reply("19"),
            reply("23505"),
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ] {
            assert!(matches!(
                StoreError::database(error),
                StoreError::Database {
                    outcome: WriteOutcome::Aborted,
                    ..
                }
            ));
        }
        assert!(matches!(
            StoreError::commit(reply("08006")),
            StoreError::Database {
                outcome: WriteOutcome::Unknown,
                ..
            }
        ));
    }
}
