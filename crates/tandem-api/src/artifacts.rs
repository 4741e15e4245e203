//! MLflow's artifact proxy. Bytes stream between the client and the region's
//! storage without being buffered whole: an upload is hashed and written in
//! parts as it arrives, and becomes visible (and is journaled with its size
//! and SHA-256) only once complete.
//!
//! Storage layout: `workspaces/<workspace_id>/artifacts/<path>`, where `path`
//! is the MLflow artifact path (`<experiment>/<run>/artifacts/…`). The
//! workspace id, not its name, keeps storage stable across renames and lets
//! files be salvaged after a workspace is gone.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_artifacts::{ArtifactError, ArtifactKey};
use tandem_store::WorkspaceRef;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Message, Ws};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in ["/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts"] {
        router = router
            .route(&format!("{prefix}/artifacts"), get(list_artifacts))
            .route(
                &format!("{prefix}/artifacts/{{*path}}"),
                get(download_artifact)
                    .put(upload_artifact)
                    .delete(delete_artifact),
            );
    }
    for prefix in ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"] {
        router = router.route(&format!("{prefix}/artifacts/list"), get(list_run_artifacts));
    }
    router.merge(crate::multipart::routes())
}

/// The storage key of an artifact path of a workspace.
pub(crate) fn storage_key(ws: &WorkspaceRef, path: Option<&ArtifactKey>) -> ApiResult<ArtifactKey> {
    Ok(tandem_artifacts::workspace_artifact_key(&ws.workspace_id, path)?)
}

/// The path of a read (a download): `.` segments stand for their directory,
/// as in MLflow.
fn read_path(params: &HashMap<String, String>) -> ApiResult<ArtifactKey> {
    let path = params.get("path").map(String::as_str).unwrap_or("");
    check_path_is_safe(path)?;
    Ok(ArtifactKey::parse(&without_dot_segments(path))?)
}

/// The path of a write (an upload or a delete): checked as MLflow checks
/// it, and then stricter than MLflow, which would write `a/./x` to `a/x`:
/// a write names its file exactly, without `.` segments (the official
/// client's HTTP library removes them from the URL before sending, so only
/// a hand-made request has them).
fn write_path(params: &HashMap<String, String>) -> ApiResult<ArtifactKey> {
    let path = params.get("path").map(String::as_str).unwrap_or("");
    check_path_is_safe(path)?;
    Ok(ArtifactKey::parse(path)?)
}

/// MLflow's `validate_path_is_safe`: a path the client gives is refused
/// (400 `Invalid path`) when, percent-decoded until it no longer changes,
/// it holds a `#`, a `..` segment, or is absolute (POSIX or Windows). `.`
/// segments are allowed, as in MLflow, where the client asks for `.` to
/// mean the root (`download_artifacts(run_id=…, artifact_path=".")`);
/// [`without_dot_segments`] drops them from reads. The path is then used
/// as it came (MLflow goes on with the decoded one: a file named
/// `a%20b` would become `a b`), and still goes through
/// [`ArtifactKey::parse`], Tandem's own refusals.
pub(crate) fn check_path_is_safe(path: &str) -> ApiResult<()> {
    let invalid = || ApiError::invalid("Invalid path");
    let mut decoded = path.to_string();
    let mut settled = false;
    for _ in 0..10 {
        let next = percent_encoding::percent_decode_str(&decoded)
            .decode_utf8()
            .map_err(|_| invalid())?
            .into_owned();
        if next == decoded {
            settled = true;
            break;
        }
        decoded = next;
    }
    if !settled {
        return Err(invalid());
    }
    let bytes = decoded.as_bytes();
    let windows_drive = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'/' | b'\\');
    let traversal = decoded.split('/').any(|segment| segment == "..");
    if decoded.contains('#')
        || traversal
        || decoded.starts_with('/')
        || decoded.starts_with('\\')
        || windows_drive
    {
        return Err(invalid());
    }
    Ok(())
}

/// A safe path without its `.` segments: `.` and `./` are the root (`""`),
/// `a/./b` is `a/b`.
pub(crate) fn without_dot_segments(path: &str) -> String {
    let trailing_slash = path.ends_with('/');
    let kept: Vec<&str> = path.split('/').filter(|segment| *segment != ".").collect();
    let mut joined = kept.join("/");
    if trailing_slash && !joined.is_empty() && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

async fn upload_artifact(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let path = write_path(&params)?;
    store_artifact(&state, &ws, &path, crate::declared_length(&headers), body).await?;
    Ok(Json(json!({})))
}

/// Streams `body` to the artifact `path` (relative to the workspace's
/// proxied root), under its owner's and the workspace's checks, and records
/// it; bytes nothing could record are removed.
pub(crate) async fn store_artifact(
    state: &AppState,
    ws: &WorkspaceRef,
    path: &ArtifactKey,
    declared_length: i64,
    body: Body,
) -> ApiResult<()> {
    state.store.check_artifact_owner(ws, path.as_str(), true).await?;
    // Refused before a byte is stored when the declared size cannot fit.
    state
        .store
        .check_storage_quota(ws, "artifacts", path.as_str(), declared_length)
        .await?;
    let key = storage_key(ws, Some(path))?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let outcome = state
        .artifacts
        .put_stream(&key, Box::pin(stream), state.limits.max_artifact_size)
        .await?;
    record_upload(state, ws, path, &key, &outcome).await?;
    tracing::debug!(workspace = %ws.name, path = path.as_str(), size = outcome.size, sha256 = %outcome.sha256, "stored artifact");
    Ok(())
}

/// Records bytes now complete at `key` (artifact `path`) in the store,
/// which journals them (`ArtifactWritten`, size and SHA-256): the one way
/// an upload, proxied or direct, becomes a listed artifact.
pub(crate) async fn record_upload(
    state: &AppState,
    ws: &WorkspaceRef,
    path: &ArtifactKey,
    key: &ArtifactKey,
    outcome: &tandem_artifacts::PutOutcome,
) -> ApiResult<()> {
    if let Err(error) = state
        .store
        .record_artifact(ws, path.as_str(), outcome.size as i64, &outcome.sha256)
        .await
    {
        // The owner was purged while the bytes were streaming (the store
        // checks it again under its writer lock), or the workspace's quota
        // has no room for them: nothing will ever index these bytes, so
        // remove them rather than leave them behind.
        if let tandem_store::StoreError::Domain(domain) = &error {
            if matches!(
                domain.kind,
                tandem_core::ErrorKind::PermissionDenied
                    | tandem_core::ErrorKind::ResourceDoesNotExist
                    | tandem_core::ErrorKind::StorageFull
            ) {
                if let Err(cleanup) = state.artifacts.delete(key).await {
                    tracing::warn!(key = key.as_str(), %cleanup, "could not remove an orphaned upload");
                }
            }
        }
        return Err(error.into());
    }
    Ok(())
}

fn content_type(path: &str) -> &'static str {
    let extension = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" | "py" | "md" | "yaml" | "yml" | "mlmodel" | "toml" | "cfg" | "ini" => "text/plain",
        "json" => "application/json",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Parses a single `bytes=START-END` range (END inclusive, either may be open).
fn parse_range(headers: &HeaderMap, size: u64) -> Option<(u64, u64)> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            (size.saturating_sub(suffix), size)
        }
        (start, "") => (start.parse().ok()?, size),
        (start, end) => (
            start.parse().ok()?,
            end.parse::<u64>().ok()?.saturating_add(1).min(size),
        ),
    };
    (start < end && end <= size).then_some((start, end))
}

async fn download_artifact(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = read_path(&params)?;
    let key = storage_key(&ws, Some(&path))?;
    serve_bytes(&state, &key, path.as_str(), &headers).await
}

/// Streams the bytes at `key` as a download named after the last segment of
/// `path`, honouring a single `Range` (artifacts, the file share, salvage).
pub(crate) async fn serve_bytes(
    state: &AppState,
    key: &ArtifactKey,
    path: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let file_name = path.rsplit('/').next().unwrap_or("artifact").replace('"', "");
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        response_headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if headers.contains_key(header::RANGE) {
        let size = state.artifacts.head(key).await?.ok_or_else(|| {
            ApiError::from(ArtifactError::NotFound {
                path: path.to_string(),
            })
        })?;
        if let Some((start, end)) = parse_range(headers, size) {
            let bytes = state.artifacts.get_range(key, start, end).await?;
            response_headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)).expect("ascii header"),
            );
            return Ok((StatusCode::PARTIAL_CONTENT, response_headers, bytes).into_response());
        }
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{size}"))],
        )
            .into_response());
    }
    let (size, stream) = state.artifacts.get_stream(key).await?;
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok((StatusCode::OK, response_headers, Body::from_stream(stream)).into_response())
}

async fn delete_artifact(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let path = write_path(&params)?;
    state
        .store
        .check_artifact_owner(&ws, path.as_str(), false)
        .await?;
    let key = storage_key(&ws, Some(&path))?;
    // Journal first: if storage then fails, the index no longer lists the
    // file, and the bytes left behind are garbage for collection rather than
    // a listed artifact that cannot be read.
    state.store.delete_artifact(&ws, path.as_str()).await?;
    state.artifacts.delete_path(&key).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ListQuery {
    path: Option<String>,
}

async fn list_under(state: &AppState, ws: &WorkspaceRef, path: Option<&str>) -> ApiResult<Vec<Value>> {
    let path = path.map(without_dot_segments);
    let path = match path
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(path) => Some(ArtifactKey::parse(path)?),
        None => None,
    };
    let key = storage_key(ws, path.as_ref())?;
    let prefix = format!("{}/", key.as_str());
    let listing = state.artifacts.list(Some(&key)).await?;
    Ok(listing
        .into_iter()
        .filter_map(|entry| {
            let relative = entry
                .path
                .strip_prefix(&prefix)?
                .trim_end_matches('/')
                .to_string();
            if relative.is_empty() {
                return None;
            }
            let mut file = json!({ "path": relative, "is_dir": entry.is_dir });
            if let (false, Some(size)) = (entry.is_dir, entry.size) {
                file["file_size"] = json!(size);
            }
            Some(file)
        })
        .collect())
}

async fn list_artifacts(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(path) = &query.path {
        check_path_is_safe(path)?;
    }
    let files = list_under(&state, &ws, query.path.as_deref()).await?;
    let mut body = json!({});
    if !files.is_empty() {
        body["files"] = json!(files);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRunArtifactsRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
    page_token: Option<String>,
}

/// `artifacts/list` by run id: lists under the run's artifact root.
async fn list_run_artifacts(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Message(request): Message<ListRunArtifactsRequest>,
) -> ApiResult<Json<Value>> {
    let run_id = request
        .run_id
        .or(request.run_uuid)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::missing("run_id"))?;
    let _ = request.page_token;
    // Checked before the run is looked up, as MLflow does. The path as the
    // client gave it prefixes the listed names, as `posixpath.join` does in
    // MLflow: `.` lists `./a`, `dir/` lists `dir/a`.
    let given = request.path.unwrap_or_default();
    check_path_is_safe(&given)?;
    let run = state.store.get_run(&ws, &run_id).await?;
    let root = tandem_store::proxied_artifact_path(&run.info.artifact_uri).ok_or_else(|| {
        ApiError::invalid(format!(
            "run {run_id} stores its artifacts at '{}', outside this server's artifact proxy",
            run.info.artifact_uri
        ))
    })?;
    let normalized = without_dot_segments(&given);
    let sub = normalized.trim_matches('/');
    let listed = if sub.is_empty() {
        root.clone()
    } else {
        format!("{root}/{sub}")
    };
    Ok(Json(
        listing(&state, &ws, &run.info.artifact_uri, &listed, &given).await?,
    ))
}

/// MLflow's `ListArtifacts` answer for storage path `listed` under the
/// artifact root `root_uri`: each file named after `given` (the path the
/// client asked for, as `posixpath.join` names it in MLflow: `.` lists
/// `./a`, `dir/` lists `dir/a`), and the root's URI.
pub(crate) async fn listing(
    state: &AppState,
    ws: &WorkspaceRef,
    root_uri: &str,
    listed: &str,
    given: &str,
) -> ApiResult<Value> {
    let files: Vec<Value> = list_under(state, ws, Some(listed))
        .await?
        .into_iter()
        .map(|mut file| {
            if !given.is_empty() {
                let relative = file["path"].as_str().unwrap_or_default().to_string();
                let separator = if given.ends_with('/') { "" } else { "/" };
                file["path"] = json!(format!("{given}{separator}{relative}"));
            }
            file
        })
        .collect();
    let mut body = json!({ "root_uri": root_uri });
    if !files.is_empty() {
        body["files"] = json!(files);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_as_mlflow_validate_path_is_safe_checks_them() {
        for refused in [
            "..",
            "../x",
            "a/../../x",
            "a/..",
            "/etc",
            "\\\\server\\share",
            "C:/x",
            "c:\\x",
            "a#b",
            "%2e%2e/x",
            "%252e%252e/x",
            "a/%2F..%2F/x",
        ] {
            let error = check_path_is_safe(refused).expect_err(refused);
            assert_eq!(error.message, "Invalid path", "{refused}");
            assert_eq!(error.kind, tandem_core::ErrorKind::InvalidParameterValue);
        }
        for allowed in [".", "a/./b", "a..b/c", "a%20b", "a%25b", ""] {
            assert!(check_path_is_safe(allowed).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn dot_segments_stand_for_the_directory_they_are_in() {
        assert_eq!(without_dot_segments("."), "");
        assert_eq!(without_dot_segments("./"), "");
        assert_eq!(without_dot_segments("./a/./b/."), "a/b");
        assert_eq!(without_dot_segments("a/./b/"), "a/b/");
        assert_eq!(without_dot_segments("a.b/.c"), "a.b/.c");
    }
}
