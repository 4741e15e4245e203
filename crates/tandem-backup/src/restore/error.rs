//! Why a restore was refused or failed. Mapped once to MLflow-style error
//! codes at the HTTP boundary ([`RestoreError::error_code`]).

use tandem_core::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The request itself is wrong (missing or conflicting options).
    #[error("{0}")]
    Invalid(String),
    /// The backup, workspace or region asked for is not in the repository.
    #[error("{0}")]
    NotFound(String),
    /// The target holds something the restore would overwrite.
    #[error("{0}")]
    AlreadyExists(String),
    /// The repository does not hold what the restore needs (the archive
    /// ends before the target, has a gap, misses a blob).
    #[error("{0}")]
    Incomplete(String),
    /// An object of the repository is not what its manifest says.
    #[error("{0}")]
    Corrupt(String),
    /// Reading the repository or writing the target's storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The target's metadata store refused or failed.
    #[error(transparent)]
    Store(#[from] tandem_store::StoreError),
}

impl RestoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RestoreError::Invalid(_) => ErrorKind::InvalidParameterValue,
            RestoreError::NotFound(_) => ErrorKind::ResourceDoesNotExist,
            RestoreError::AlreadyExists(_) => ErrorKind::ResourceAlreadyExists,
            RestoreError::Incomplete(_) | RestoreError::Corrupt(_) => ErrorKind::InvalidState,
            RestoreError::Storage(_) => ErrorKind::Internal,
            RestoreError::Store(error) => error.kind(),
        }
    }

    /// The MLflow-style code clients see.
    pub fn error_code(&self) -> &'static str {
        self.kind().mlflow_code()
    }
}

impl From<tandem_artifacts::ArtifactError> for RestoreError {
    fn from(error: tandem_artifacts::ArtifactError) -> Self {
        RestoreError::Storage(error.to_string())
    }
}

impl From<crate::format::FormatError> for RestoreError {
    fn from(error: crate::format::FormatError) -> Self {
        RestoreError::Corrupt(error.0)
    }
}
