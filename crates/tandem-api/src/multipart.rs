//! MLflow 3's direct multipart artifact uploads
//! (`POST /api/2.0/mlflow-artifacts/mpu/create|complete|abort/{path}`):
//! the client asks for an upload, PUTs each part itself to a presigned URL
//! of the region's bucket, then asks for completion with the parts' ETags.
//! The bytes never pass through the server.
//!
//! As in MLflow, `{path}` is the directory (the run's or logged model's
//! artifact root and the client's `artifact_path`) and the body's `path` is
//! the client's local file, of which only the name is used. On storage
//! without direct uploads (local directory, memory, GCS without a service
//! account key) every call answers
//! MLflow's `NOT_IMPLEMENTED` "Multipart upload is not supported for the
//! current artifact repository", which makes the official client fall back
//! to a proxied PUT.
//!
//! A completed upload is read back once for its size and SHA-256 and
//! recorded exactly as a proxied upload is (`ArtifactWritten`), so
//! replication, backups and listings treat it like any artifact.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_artifacts::{ArtifactKey, UploadedPart};
use tandem_core::ErrorKind;
use tandem_store::WorkspaceRef;

use crate::artifacts::{check_path_is_safe, record_upload, storage_key};
use crate::error::{ApiError, ApiResult};
use crate::extract::{lenient, Message, Ws};
use crate::AppState;

/// How long a part's presigned URL stays valid, unless uploads count as
/// abandoned sooner (`TANDEM_ABANDONED_UPLOAD_AFTER_MS`; the region's
/// background task aborts them then, and their URLs expire with them).
pub const PART_URL_TTL: Duration = Duration::from_secs(6 * 60 * 60);

/// MLflow's `_UnsupportedMultipartUploadException.MESSAGE`: the client
/// matches the start of the error message to fall back to a proxied PUT.
const UNSUPPORTED: &str = "Multipart upload is not supported for the current artifact repository";

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in ["/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts"] {
        router = router
            .route(&format!("{prefix}/mpu/create/{{*path}}"), post(create))
            .route(&format!("{prefix}/mpu/complete/{{*path}}"), post(complete))
            .route(&format!("{prefix}/mpu/abort/{{*path}}"), post(abort));
    }
    router
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    path: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    num_parts: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    part_number: Option<i64>,
    etag: Option<String>,
    // The part's URL, which MLflow's Azure repository reads block ids from;
    // here block ids follow from the upload id and part number.
    #[allow(dead_code)]
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    path: Option<String>,
    upload_id: Option<String>,
    parts: Option<Vec<Part>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbortRequest {
    path: Option<String>,
    upload_id: Option<String>,
}

fn supported(state: &AppState) -> ApiResult<()> {
    if state.artifacts.direct_uploads() {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::NotImplemented, UNSUPPORTED))
    }
}

/// The artifact path an upload writes: the URL's directory and the name of
/// the client's file (`os.path.basename` of the body's `path`, as MLflow's
/// repositories take it), checked as every artifact write is.
fn target(params: &HashMap<String, String>, file: Option<&str>) -> ApiResult<ArtifactKey> {
    let dir = params.get("path").map(String::as_str).unwrap_or("");
    check_path_is_safe(dir)?;
    let file = file
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::missing("path"))?;
    let name = file.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || name == "." {
        return Err(ApiError::invalid(format!("'{file}' names no file")));
    }
    let joined = match dir.trim_end_matches('/') {
        "" => name.to_string(),
        dir => format!("{dir}/{name}"),
    };
    check_path_is_safe(&joined)?;
    Ok(ArtifactKey::parse(&joined)?)
}

/// What every route checks first, in MLflow's order: the URL's directory,
/// then whether the storage takes direct uploads at all, then the file.
fn checked_target(
    state: &AppState,
    params: &HashMap<String, String>,
    file: Option<&str>,
) -> ApiResult<ArtifactKey> {
    check_path_is_safe(params.get("path").map(String::as_str).unwrap_or(""))?;
    supported(state)?;
    target(params, file)
}

fn upload_id(given: Option<String>) -> ApiResult<String> {
    given
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::missing("upload_id"))
}

async fn create(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Message(request): Message<CreateRequest>,
) -> ApiResult<Json<Value>> {
    let path = checked_target(&state, &params, request.path.as_deref())?;
    state.store.check_artifact_owner(&ws, path.as_str(), true).await?;
    // The size is unknown until completion, where the store checks it
    // again; a workspace already at its quota is refused here.
    state
        .store
        .check_storage_quota(&ws, "artifacts", path.as_str(), 0)
        .await?;
    let num_parts = request.num_parts.unwrap_or(0);
    let num_parts = u32::try_from(num_parts)
        .ok()
        .filter(|n| (1..=tandem_artifacts::MAX_DIRECT_PARTS).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "num_parts must be between 1 and {}, not {num_parts}",
                tandem_artifacts::MAX_DIRECT_PARTS
            ))
        })?;
    let key = storage_key(&ws, Some(&path))?;
    let upload = state
        .artifacts
        .create_direct_upload(&key, num_parts, PART_URL_TTL)
        .await?;
    tracing::info!(workspace = %ws.name, path = path.as_str(), upload_id = %upload.upload_id, num_parts, "direct upload created");
    let credentials: Vec<Value> = upload
        .parts
        .iter()
        .map(|part| {
            let headers: serde_json::Map<String, Value> = part
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), json!(value)))
                .collect();
            json!({ "url": part.url, "part_number": part.part_number, "headers": headers })
        })
        .collect();
    Ok(Json(
        json!({ "upload_id": upload.upload_id, "credentials": credentials }),
    ))
}

async fn complete(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Message(request): Message<CompleteRequest>,
) -> ApiResult<Json<Value>> {
    let path = checked_target(&state, &params, request.path.as_deref())?;
    let upload_id = upload_id(request.upload_id)?;
    let parts = request.parts.ok_or_else(|| ApiError::missing("parts"))?;
    let parts = parts
        .into_iter()
        .map(|part| {
            let part_number = part
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ApiError::invalid("every part needs a part_number between 1 and 10000"))?;
            Ok(UploadedPart {
                part_number,
                etag: part.etag,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    state.store.check_artifact_owner(&ws, path.as_str(), true).await?;
    let key = storage_key(&ws, Some(&path))?;
    let outcome = state
        .artifacts
        .complete_direct_upload(&key, &upload_id, &parts, state.limits.max_artifact_size)
        .await?;
    record_upload(&state, &ws, &path, &key, &outcome).await?;
    tracing::info!(workspace = %ws.name, path = path.as_str(), %upload_id, size = outcome.size, sha256 = %outcome.sha256, "direct upload completed");
    Ok(Json(json!({})))
}

/// No owner check: an upload whose run was deleted meanwhile can still be
/// aborted (the gate requires Write on the workspace, and only an upload
/// this server opened for this path is found).
async fn abort(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Message(request): Message<AbortRequest>,
) -> ApiResult<Json<Value>> {
    let path = checked_target(&state, &params, request.path.as_deref())?;
    let upload_id = upload_id(request.upload_id)?;
    abort_in(&state, &ws, &path, &upload_id).await?;
    Ok(Json(json!({})))
}

async fn abort_in(state: &AppState, ws: &WorkspaceRef, path: &ArtifactKey, upload_id: &str) -> ApiResult<()> {
    let key = storage_key(ws, Some(path))?;
    state.artifacts.abort_direct_upload(&key, upload_id).await?;
    tracing::info!(workspace = %ws.name, path = path.as_str(), %upload_id, "direct upload aborted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(dir: &str) -> HashMap<String, String> {
        HashMap::from([("path".to_string(), dir.to_string())])
    }

    #[test]
    fn the_target_is_the_directory_and_the_local_file_name() {
        let key = target(&params("1/abc/artifacts/sub"), Some("/tmp/x/model.bin")).unwrap();
        assert_eq!(key.as_str(), "1/abc/artifacts/sub/model.bin");
        let key = target(&params("1/abc/artifacts/"), Some("model.bin")).unwrap();
        assert_eq!(key.as_str(), "1/abc/artifacts/model.bin");
        for (dir, file) in [
            ("1/../x", "f"),
            ("1/abc", "/tmp/.."),
            ("1/abc", "a#b"),
            ("/etc", "f"),
        ] {
            assert!(target(&params(dir), Some(file)).is_err(), "{dir} {file}");
        }
        let missing = target(&params("1/abc"), None).unwrap_err();
        assert!(missing.message.contains("'path'"), "{}", missing.message);
        assert!(target(&params("1/abc"), Some("/tmp/dir/")).is_err());
    }
}
