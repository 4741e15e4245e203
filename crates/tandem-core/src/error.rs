//! The domain error: a closed set of kinds that map one-to-one onto MLflow's
//! error codes at the API boundary, plus a human message.

use std::fmt;

/// What went wrong, in the vocabulary the MLflow client understands. The
/// client's control flow depends on these (for example `get_experiment_by_name`
/// treats `RESOURCE_DOES_NOT_EXIST` as "absent", and `set_experiment` creates
/// the experiment then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidParameterValue,
    ResourceDoesNotExist,
    ResourceAlreadyExists,
    InvalidState,
    BadRequest,
    PermissionDenied,
    /// No credentials, or credentials that prove nobody (wrong password,
    /// unknown, expired or revoked token, disabled principal): 401.
    Unauthenticated,
    RequestLimitExceeded,
    /// The region refuses the request: it is not the primary for the class
    /// (or is fenced). Certainly not applied; the message names the primary.
    NotPrimary,
    /// The region cannot take the write now (a secondary lags past the
    /// class's maximum RPO, or did not confirm a synchronous write in time).
    /// The client may retry later.
    Unavailable,
    /// The server's storage (metadata database or artifact store) has no
    /// room. Nothing was written; retrying helps only once space is freed.
    StorageFull,
    /// The server does not offer this operation (MLflow's
    /// `NOT_IMPLEMENTED`, 501): e.g. direct multipart uploads on storage
    /// without them, which the client answers by uploading through the proxy.
    NotImplemented,
    Internal,
}

impl ErrorKind {
    /// MLflow's `ErrorCode` name for this kind.
    pub fn mlflow_code(self) -> &'static str {
        match self {
            ErrorKind::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorKind::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorKind::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorKind::InvalidState => "INVALID_STATE",
            ErrorKind::BadRequest => "BAD_REQUEST",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::Unauthenticated => "UNAUTHENTICATED",
            ErrorKind::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            // 4xx and not retried by the client: it must go to the primary.
            ErrorKind::NotPrimary => "PERMISSION_DENIED",
            ErrorKind::Unavailable => "TEMPORARILY_UNAVAILABLE",
            ErrorKind::StorageFull => "RESOURCE_EXHAUSTED",
            ErrorKind::NotImplemented => "NOT_IMPLEMENTED",
            ErrorKind::Internal => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status this kind is answered with: MLflow's for its codes.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidParameterValue | ErrorKind::ResourceAlreadyExists | ErrorKind::BadRequest => {
                400
            }
            ErrorKind::ResourceDoesNotExist => 404,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::PermissionDenied | ErrorKind::NotPrimary => 403,
            ErrorKind::RequestLimitExceeded => 429,
            ErrorKind::Unavailable => 503,
            // 507 Insufficient Storage: not among the statuses the MLflow
            // client retries, so a full disk fails the call at once instead
            // of after minutes of backoff.
            ErrorKind::StorageFull => 507,
            ErrorKind::NotImplemented => 501,
            // MLflow answers INVALID_STATE with 500, which its client
            // retries for minutes; here it is always a refusal the caller
            // can act on (the resource is not in a state that allows the
            // request), so 409 Conflict: never retried, never a server fault.
            ErrorKind::InvalidState => 409,
            ErrorKind::Internal => 500,
        }
    }
}

/// A domain error. The message is lowercase-first where we write it, and
/// follows MLflow's wording where the client or users match on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceDoesNotExist, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceAlreadyExists, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.mlflow_code(), self.message)
    }
}

impl std::error::Error for Error {}
