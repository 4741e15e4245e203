//! The API's error: every failure below (domain refusal, database, storage,
//! malformed request) is mapped here, once, to MLflow's error JSON
//! `{"error_code": …, "message": …}` and the HTTP status MLflow uses for that
//! code. The client's control flow depends on both.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tandem_artifacts::ArtifactError;
use tandem_core::{Error as DomainError, ErrorKind};
use tandem_store::{StoreError, WriteOutcome};

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceDoesNotExist, message)
    }
    pub fn missing(parameter: &str) -> Self {
        Self::invalid(format!(
            "Missing value for required parameter '{parameter}'. See the API docs for more information about request parameters."
        ))
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        ApiError {
            kind: error.kind,
            message: error.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Domain(error) => error.into(),
            StoreError::Database { message, outcome } => {
                tracing::error!(%message, ?outcome, "metadata database error");
                let hint = match outcome {
                    WriteOutcome::Aborted => "the change was not applied",
                    WriteOutcome::Unknown => "the change may or may not have been applied",
                };
                ApiError::new(
                    ErrorKind::Internal,
                    format!("metadata database error ({hint}): {message}"),
                )
            }
            StoreError::Full { message } => {
                tracing::error!(%message, "metadata storage is full");
                ApiError::new(
                    ErrorKind::StorageFull,
                    format!("metadata storage is full; nothing was written: {message}"),
                )
            }
            StoreError::Corrupt(message) => {
                tracing::error!(%message, "corrupt metadata");
                ApiError::new(ErrorKind::Internal, format!("corrupt metadata: {message}"))
            }
        }
    }
}

impl From<ArtifactError> for ApiError {
    fn from(error: ArtifactError) -> Self {
        match &error {
            ArtifactError::InvalidPath { .. } => ApiError::invalid(error.to_string()),
            ArtifactError::NotFound { .. } => ApiError::not_found(error.to_string()),
            // Named by the artifact path the client gave, not the storage key.
            ArtifactError::UnknownUpload { upload_id, .. } => ApiError::not_found(format!(
                "No open multipart upload '{upload_id}' for this artifact path: this server did not \
                 create it for the path, or it was completed, aborted or expired"
            )),
            ArtifactError::TooLarge { .. } => ApiError::invalid(error.to_string()),
            ArtifactError::BodyInterrupted { .. } => ApiError::bad_request(error.to_string()),
            ArtifactError::StorageFull { .. } => {
                tracing::error!(%error, "artifact storage is full");
                ApiError::new(
                    ErrorKind::StorageFull,
                    format!("artifact storage is full; nothing was written: {error}"),
                )
            }
            _ => {
                tracing::error!(%error, "artifact storage error");
                ApiError::new(ErrorKind::Internal, error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error_code": self.kind.mlflow_code(),
            "message": self.message,
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if self.kind == ErrorKind::Unauthenticated {
            // What MLflow's basic-auth app answers, so clients and browsers
            // know to offer credentials.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Basic realm="mlflow""#),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
