//! The workspace file share (notebooks and other files) and its salvage.
//!
//! - `GET  /api/tandem/v1/workspaces/{ws}/files[?path=P]`: the files at or
//!   under `P` (every file without it), from the index;
//! - `PUT|GET|DELETE /api/tandem/v1/workspaces/{ws}/files/{path}`: upload
//!   (streamed, hashed, journaled as `file_written` once whole), download
//!   (with `Range`), delete a file or a whole directory;
//! - `GET /api/tandem/v1/salvage/{workspace_id}/files[/{path}]`: what storage
//!   holds under `workspaces/<workspace_id>/files/`, read from storage itself,
//!   so it works after the workspace was deleted or purged;
//! - `DELETE /api/tandem/v1/salvage/{workspace_id}`: purges that storage for
//!   good, refused while the workspace still exists (active or deleted).
//!
//! Bytes live at `workspaces/<workspace_id>/files/<path>` in the region's
//! storage; purging a workspace removes its index rows but never these
//! bytes (the garbage collector only ever takes `…/artifacts/` prefixes).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tandem_artifacts::ArtifactKey;
use tandem_core::model::{FileEntry, LifecycleStage};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::Ws;
use crate::openapi::{tags, ErrorBody};
use crate::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_files))
        .routes(routes!(download_file, upload_file, delete_file))
        .routes(routes!(purge_storage))
        .routes(routes!(salvage_list))
        .routes(routes!(salvage_download))
}

#[derive(Serialize, ToSchema)]
struct FileWritten {
    file: FileEntry,
}

#[derive(Serialize, ToSchema)]
struct FilesDeleted {
    /// The files removed (one, or every file under a directory).
    deleted: Vec<FileEntry>,
}

#[derive(Serialize, ToSchema)]
struct ShareListing {
    workspace: String,
    workspace_id: String,
    files: Vec<FileEntry>,
    /// Total size of the files listed.
    bytes: i64,
}

#[derive(Serialize, ToSchema)]
struct SalvageFile {
    path: String,
    size: u64,
}

#[derive(Serialize, ToSchema)]
struct SalvageListing {
    workspace_id: String,
    /// `active`, `deleted` or `gone` (purged, or never known here).
    workspace_state: String,
    /// The workspace's name while it exists.
    workspace: Option<String>,
    files: Vec<SalvageFile>,
    bytes: u64,
}

#[derive(Serialize, ToSchema)]
struct StoragePurged {
    workspace_id: String,
    removed_objects: u64,
}

/// A file share path: relative, normalized, no `..` (see [`ArtifactKey`]).
fn file_path(params: &HashMap<String, String>) -> ApiResult<ArtifactKey> {
    parse_file_path(params.get("path").map(String::as_str).unwrap_or(""))
}

fn parse_file_path(path: &str) -> ApiResult<ArtifactKey> {
    if path.trim_matches('/').is_empty() {
        return Err(ApiError::invalid("a file path is required"));
    }
    // The key's own message speaks of artifact paths.
    ArtifactKey::parse(path)
        .map_err(|error| ApiError::invalid(error.to_string().replacen("artifact path", "file path", 1)))
}

fn file_key(workspace_id: &str, path: Option<&ArtifactKey>) -> ApiResult<ArtifactKey> {
    Ok(tandem_artifacts::workspace_file_key(workspace_id, path)?)
}

/// A workspace id as a salvage route takes it: one plain path segment.
fn workspace_id(params: &HashMap<String, String>) -> ApiResult<String> {
    let id = params.get("workspace_id").cloned().unwrap_or_default();
    let plain = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain {
        return Err(ApiError::invalid(format!("'{id}' is not a workspace id")));
    }
    Ok(id)
}

/// Writes a file of the share (streamed, hashed; journaled once whole).
#[utoipa::path(put, path = "/api/tandem/v1/workspaces/{workspace}/files/{*path}", tag = tags::FILES,
    params(
        ("workspace" = String, Path, description = "The workspace's name"),
        ("path" = String, Path, description = "The file's path in the share (relative, no `..`)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored", body = FileWritten),
        (status = 400, description = "Invalid path, a directory in the way, or the upload was cut off", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
        (status = 507, description = "Storage is full, or the workspace's storage quota would be exceeded; nothing was written", body = ErrorBody),
    ))]
async fn upload_file(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<FileWritten>> {
    let path = file_path(&params)?;
    state.store.check_file_write(&ws, path.as_str()).await?;
    state
        .store
        .check_storage_quota(&ws, "files", path.as_str(), crate::declared_length(&headers))
        .await?;
    let key = file_key(&ws.workspace_id, Some(&path))?;
    let existed = state.artifacts.head(&key).await?.is_some();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let outcome = state
        .artifacts
        .put_stream(&key, Box::pin(stream), state.limits.max_artifact_size)
        .await?;
    match state
        .store
        .record_file(&ws, path.as_str(), outcome.size as i64, &outcome.sha256)
        .await
    {
        Ok(entry) => {
            tracing::info!(workspace = %ws.name, path = path.as_str(), size = outcome.size, sha256 = %outcome.sha256, "stored file");
            Ok(Json(FileWritten { file: entry }))
        }
        Err(error) => {
            // The workspace was deleted, or a conflicting path written, while
            // the bytes streamed (checked again under the writer lock). New
            // bytes nothing indexes are removed; bytes that replaced an
            // earlier file stay, as that file's storage is the share's (and
            // salvage's) and a deleted workspace's share is never cleaned.
            if !existed {
                if let Err(cleanup) = state.artifacts.delete(&key).await {
                    tracing::warn!(key = key.as_str(), %cleanup, "could not remove an unindexed upload");
                }
            }
            Err(error.into())
        }
    }
}

/// Reads a file of the share (`Range` supported).
#[utoipa::path(get, path = "/api/tandem/v1/workspaces/{workspace}/files/{*path}", tag = tags::FILES,
    params(
        ("workspace" = String, Path, description = "The workspace's name"),
        ("path" = String, Path, description = "The file's path in the share"),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
async fn download_file(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = file_path(&params)?;
    let indexed = state.store.list_files(&ws, path.as_str()).await?;
    if !indexed.iter().any(|entry| entry.path == path.as_str()) {
        let what = if indexed.is_empty() {
            "No file"
        } else {
            "A directory, not a file,"
        };
        return Err(ApiError::from(tandem_core::Error::not_found(format!(
            "{what} '{}' in the file share of workspace '{}'",
            path.as_str(),
            ws.name
        ))));
    }
    let key = file_key(&ws.workspace_id, Some(&path))?;
    crate::artifacts::serve_bytes(&state, &key, path.as_str(), &headers).await
}

/// Deletes a file, or a directory with every file under it.
#[utoipa::path(delete, path = "/api/tandem/v1/workspaces/{workspace}/files/{*path}", tag = tags::FILES,
    params(
        ("workspace" = String, Path, description = "The workspace's name"),
        ("path" = String, Path, description = "A file's or a directory's path in the share"),
    ),
    responses(
        (status = 200, description = "What was deleted", body = FilesDeleted),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
async fn delete_file(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<FilesDeleted>> {
    let path = file_path(&params)?;
    // Journal first: if storage then fails, the index no longer lists the
    // files and what is left in storage is only reachable by salvage.
    let removed = state.store.delete_file(&ws, path.as_str()).await?;
    let key = file_key(&ws.workspace_id, Some(&path))?;
    state.artifacts.delete_path(&key).await?;
    Ok(Json(FilesDeleted { deleted: removed }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only the files at or under this path.
    path: Option<String>,
}

/// The files of a workspace's share, from its index.
#[utoipa::path(get, path = "/api/tandem/v1/workspaces/{workspace}/files", tag = tags::FILES,
    params(("workspace" = String, Path, description = "The workspace's name"), ListQuery),
    responses(
        (status = 200, description = "The files", body = ShareListing),
        (status = 400, description = "Invalid path", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn list_files(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ShareListing>> {
    let prefix = match query.path.as_deref().map(|p| p.trim_matches('/')) {
        None | Some("") => String::new(),
        Some(path) => parse_file_path(path)?.as_str().to_string(),
    };
    let files = state.store.list_files(&ws, &prefix).await?;
    let bytes: i64 = files.iter().map(|file| file.size).sum();
    Ok(Json(ShareListing {
        workspace: ws.name,
        workspace_id: ws.workspace_id,
        files,
        bytes,
    }))
}

/// The state of the workspace that owned a share: `active`, `deleted`, or
/// `gone` (purged, or never known here).
async fn owner_state(state: &AppState, workspace_id: &str) -> ApiResult<(&'static str, Option<String>)> {
    match state.store.find_workspace(workspace_id).await {
        Ok(workspace) if workspace.workspace_id == workspace_id => Ok((
            match workspace.lifecycle_stage {
                LifecycleStage::Active => "active",
                LifecycleStage::Deleted => "deleted",
            },
            Some(workspace.name),
        )),
        Ok(_) => Ok(("gone", None)),
        Err(tandem_store::StoreError::Domain(error))
            if error.kind == tandem_core::ErrorKind::ResourceDoesNotExist =>
        {
            Ok(("gone", None))
        }
        Err(error) => Err(error.into()),
    }
}

/// What storage holds of a workspace's file share, read from storage itself
/// (so it works after the workspace was deleted or purged).
#[utoipa::path(get, path = "/api/tandem/v1/salvage/{workspace_id}/files", tag = tags::FILES,
    params(("workspace_id" = String, Path, description = "The workspace's id")),
    responses(
        (status = 200, description = "The files storage holds", body = SalvageListing),
        (status = 400, description = "Not a workspace id", body = ErrorBody),
    ))]
async fn salvage_list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<SalvageListing>> {
    let workspace_id = workspace_id(&params)?;
    let root = file_key(&workspace_id, None)?;
    let strip = format!("{}/", root.as_str());
    let listing = state.artifacts.list_recursive(Some(&root)).await?;
    let files: Vec<SalvageFile> = listing
        .iter()
        .filter(|entry| !entry.is_dir)
        .filter_map(|entry| {
            let path = entry.path.strip_prefix(&strip)?;
            Some(SalvageFile {
                path: path.to_string(),
                size: entry.size.unwrap_or(0),
            })
        })
        .collect();
    let bytes: u64 = listing.iter().filter_map(|entry| entry.size).sum();
    let (workspace_state, name) = owner_state(&state, &workspace_id).await?;
    Ok(Json(SalvageListing {
        workspace_id,
        workspace_state: workspace_state.to_string(),
        workspace: name,
        files,
        bytes,
    }))
}

/// Reads a salvaged file (`Range` supported).
#[utoipa::path(get, path = "/api/tandem/v1/salvage/{workspace_id}/files/{*path}", tag = tags::FILES,
    params(
        ("workspace_id" = String, Path, description = "The workspace's id"),
        ("path" = String, Path, description = "The file's path in the share"),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
async fn salvage_download(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let workspace_id = workspace_id(&params)?;
    let path = file_path(&params)?;
    let key = file_key(&workspace_id, Some(&path))?;
    crate::artifacts::serve_bytes(&state, &key, path.as_str(), &headers).await
}

/// Removes everything the region's storage still holds for a workspace that
/// no longer exists (its salvageable files, and artifacts a purge kept).
#[utoipa::path(delete, path = "/api/tandem/v1/salvage/{workspace_id}", tag = tags::FILES,
    params(("workspace_id" = String, Path, description = "The workspace's id")),
    responses(
        (status = 200, description = "Removed", body = StoragePurged),
        (status = 400, description = "The workspace still exists (active or deleted)", body = ErrorBody),
    ))]
async fn purge_storage(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<StoragePurged>> {
    let workspace_id = workspace_id(&params)?;
    let (workspace_state, name) = owner_state(&state, &workspace_id).await?;
    if workspace_state != "gone" {
        return Err(ApiError::from(tandem_core::Error::invalid_state(format!(
            "Workspace '{}' ({workspace_id}) is {workspace_state}: its storage is purged only after the workspace is; purge the workspace first",
            name.unwrap_or_default()
        ))));
    }
    let root = ArtifactKey::parse(&format!("workspaces/{workspace_id}")).map_err(ApiError::from)?;
    let removed = state.artifacts.delete_prefix(&root).await?;
    tracing::info!(%workspace_id, removed, "purged a workspace's storage");
    Ok(Json(StoragePurged {
        workspace_id,
        removed_objects: removed as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salvage_takes_only_plain_workspace_ids() {
        let params = |id: &str| HashMap::from([("workspace_id".to_string(), id.to_string())]);
        assert!(workspace_id(&params("0123abcd-ef")).is_ok());
        for bad in ["", "..", "a/b", "a b", "%2e%2e"] {
            assert!(workspace_id(&params(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_paths_refuse_traversal_and_emptiness() {
        let params = |path: &str| HashMap::from([("path".to_string(), path.to_string())]);
        assert_eq!(file_path(&params("nb/a.ipynb")).unwrap().as_str(), "nb/a.ipynb");
        for bad in ["", "/", "../x", "a/../../x"] {
            assert!(file_path(&params(bad)).is_err(), "{bad}");
        }
    }
}
