//! The backup layer's error, mapped once to MLflow's `{error_code, message}`
//! at the HTTP boundary (`http`).

use tandem_artifacts::ArtifactError;
use tandem_core::{Error as DomainError, ErrorKind};
use tandem_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A refusal with a kind the caller understands: bad request, unknown
    /// backup, a repository whose content fails verification, …
    #[error("{0}")]
    Domain(DomainError),
    /// The repository's storage failed (unreachable, permission, …).
    #[error("backup repository {url}: {message}")]
    Repository { url: String, message: String },
    /// The region's own storage failed while reading or writing artifacts.
    #[error("region storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type BackupResult<T> = Result<T, BackupError>;

impl BackupError {
    pub fn invalid(message: impl Into<String>) -> Self {
        BackupError::Domain(DomainError::invalid(message.into()))
    }

    /// A request naming what the server's configuration does not allow.
    pub fn permission(message: impl Into<String>) -> Self {
        BackupError::Domain(DomainError::new(
            tandem_core::ErrorKind::PermissionDenied,
            message.into(),
        ))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        BackupError::Domain(DomainError::not_found(message.into()))
    }

    /// Content of the repository that is not what its manifest says.
    pub fn corrupt(message: impl Into<String>) -> Self {
        BackupError::Domain(DomainError::new(ErrorKind::InvalidState, message.into()))
    }

    /// The repository does not hold what is needed (an archive that ends
    /// before the point asked for, a gap, a missing blob).
    pub fn incomplete(message: impl Into<String>) -> Self {
        BackupError::Domain(DomainError::new(ErrorKind::InvalidState, message.into()))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        BackupError::Domain(DomainError::new(ErrorKind::ResourceAlreadyExists, message.into()))
    }

    pub fn repository(url: &str, error: impl std::fmt::Display) -> Self {
        BackupError::Repository {
            url: url.to_string(),
            message: error.to_string(),
        }
    }

    pub fn storage(error: ArtifactError) -> Self {
        BackupError::Storage(error.to_string())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Domain(error) => error.kind,
            BackupError::Store(StoreError::Domain(error)) => error.kind,
            BackupError::Repository { .. } | BackupError::Storage(_) => ErrorKind::Unavailable,
            BackupError::Store(_) => ErrorKind::Internal,
        }
    }
}

impl From<ArtifactError> for BackupError {
    fn from(error: ArtifactError) -> Self {
        BackupError::storage(error)
    }
}

impl From<crate::format::FormatError> for BackupError {
    fn from(error: crate::format::FormatError) -> Self {
        BackupError::corrupt(error.0)
    }
}
