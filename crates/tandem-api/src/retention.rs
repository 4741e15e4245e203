//! The Tandem API of soft delete with retention: recover and purge a
//! workspace, change its retention settings, and list, recover and purge
//! the deleted items inside a workspace. Also the region's
//! garbage-collection queue, for operators and tests.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tandem_core::model::Workspace;
use tandem_store::retention::{DeletedItem, DeletedKind, WorkspaceUpdate};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::decode_slice;
use crate::openapi::{tags, ErrorBody};
use crate::tandem::WorkspaceResponse;
use crate::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recover_workspace))
        .routes(routes!(purge_workspace))
        .routes(routes!(list_deleted))
        .routes(routes!(recover_item))
        .routes(routes!(purge_item))
        .routes(routes!(gc_queue))
}

/// The optional body of a purge: empty means every field at its default.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    /// Forget the metadata but leave the stored bytes (to salvage them).
    #[serde(default)]
    keep_artifacts: bool,
}

/// The optional body of a recovery: empty means under its own name.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverRequest {
    /// A registered model only: the name to recover it under, when its
    /// own name has been taken again since it was deleted. Its versions,
    /// tags and aliases follow it.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct PurgedWorkspace {
    workspace: Workspace,
    purged: bool,
    keep_artifacts: bool,
}

#[derive(Serialize, ToSchema)]
struct DeletedList {
    deleted: Vec<DeletedItem>,
}

/// Which item a call recovered or purged.
#[derive(Serialize, ToSchema)]
struct ItemRef {
    kind: DeletedKind,
    id: String,
}

#[derive(Serialize, ToSchema)]
struct RecoveredItem {
    recovered: ItemRef,
    /// The name a registered model was recovered under, if a new one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct PurgedItem {
    purged: ItemRef,
    keep_artifacts: bool,
}

/// A storage prefix waiting to be removed.
#[derive(Serialize, ToSchema)]
struct GcPending {
    prefix: String,
    workspace_id: String,
    attempts: i64,
}

#[derive(Serialize, ToSchema)]
struct GcQueue {
    pending: Vec<GcPending>,
}

/// An optional JSON body: empty means every field at its default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode_slice(body)
}

fn kind(value: &str) -> ApiResult<DeletedKind> {
    DeletedKind::parse(value).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown kind '{value}': expected one of {}",
            DeletedKind::ALL.map(DeletedKind::as_str).join(", ")
        ))
    })
}

/// Recovers a deleted workspace with everything in it.
#[utoipa::path(post, path = "/api/tandem/v1/workspaces/{name}/recover", tag = tags::RETENTION,
    params(("name" = String, Path, description = "The workspace's name or id")),
    responses(
        (status = 200, description = "The recovered workspace", body = WorkspaceResponse),
        (status = 400, description = "The workspace is not deleted, or its name is taken", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn recover_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkspaceResponse>> {
    let workspace = state.store.recover_workspace(&name).await?;
    Ok(Json(WorkspaceResponse { workspace }))
}

/// Purges a deleted workspace now: its metadata, and its stored bytes
/// unless `keep_artifacts`.
#[utoipa::path(post, path = "/api/tandem/v1/workspaces/{name}/purge", tag = tags::RETENTION,
    params(("name" = String, Path, description = "The workspace's name or id")),
    request_body(content = Option<PurgeRequest>, description = "Optional; empty means defaults"),
    responses(
        (status = 200, description = "Purged", body = PurgedWorkspace),
        (status = 400, description = "Malformed request, the workspace is not deleted, or purge protection holds it", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn purge_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<PurgedWorkspace>> {
    let request = optional_body::<PurgeRequest>(&body)?;
    let workspace = state.store.purge_workspace(&name, request.keep_artifacts).await?;
    Ok(Json(PurgedWorkspace {
        workspace,
        purged: true,
        keep_artifacts: request.keep_artifacts,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateWorkspaceRequest {
    description: Option<String>,
    /// Days a deleted item is kept (1 to 90).
    retention_days: Option<i64>,
    /// Once on, never off.
    purge_protection: Option<bool>,
    /// Bytes of artifacts and files the workspace may hold; `null` removes
    /// the quota.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    storage_quota: Option<Option<i64>>,
}

/// A field that may be given as `null`: `Some(None)`, unlike absent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

/// Changes a workspace's description, retention settings or storage quota.
#[utoipa::path(patch, path = "/api/tandem/v1/workspaces/{name}", tag = tags::WORKSPACES,
    params(("name" = String, Path, description = "The workspace's name or id")),
    request_body = UpdateWorkspaceRequest,
    responses(
        (status = 200, description = "The updated workspace", body = WorkspaceResponse),
        (status = 400, description = "Malformed or invalid request (nothing to update, retention out of range, turning purge protection off)", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
pub(crate) async fn update_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<WorkspaceResponse>> {
    let request: UpdateWorkspaceRequest = decode_slice(&body)?;
    if request.description.is_none()
        && request.retention_days.is_none()
        && request.purge_protection.is_none()
        && request.storage_quota.is_none()
    {
        return Err(ApiError::invalid(
            "nothing to update: give description, retention_days, purge_protection or storage_quota",
        ));
    }
    let workspace = state
        .store
        .update_workspace(
            &name,
            WorkspaceUpdate {
                description: request.description,
                retention_days: request.retention_days,
                purge_protection: request.purge_protection,
                storage_quota: request.storage_quota,
            },
        )
        .await?;
    Ok(Json(WorkspaceResponse { workspace }))
}

/// The deleted items of a workspace, each with when it will be purged.
#[utoipa::path(get, path = "/api/tandem/v1/workspaces/{name}/deleted", tag = tags::RETENTION,
    params(("name" = String, Path, description = "The workspace's name or id")),
    responses(
        (status = 200, description = "Deleted items", body = DeletedList),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn list_deleted(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<DeletedList>> {
    let ws = state.store.resolve_workspace(&name).await?;
    let deleted = state.store.list_deleted(&ws).await?;
    Ok(Json(DeletedList { deleted }))
}

/// Recovers a deleted item (an experiment with its runs, a run, a model…).
///
/// A deleted registered model frees its name at once, as in MLflow: its id
/// is `name:<hex>` (or, when only one deleted model has it, its name). If
/// the name has been taken again, the recovery is refused (400
/// `RESOURCE_ALREADY_EXISTS`, as MLflow answers a taken name) unless the body gives a new name,
/// `{"name": "NEW_NAME"}`; the model and its versions, tags and aliases are
/// recovered under it.
#[utoipa::path(post, path = "/api/tandem/v1/workspaces/{name}/deleted/{kind}/{id}/recover", tag = tags::RETENTION,
    params(
        ("name" = String, Path, description = "The workspace's name or id"),
        ("kind" = DeletedKind, Path, description = "What the item is"),
        ("id" = String, Path, description = "The item's id (a model version: `name/version`; a registered model: `name:<hex>`, or its name if only one deleted model has it)"),
    ),
    request_body(content = Option<RecoverRequest>, description = "Optional; `{\"name\": \"NEW_NAME\"}` recovers a registered model under a new name"),
    responses(
        (status = 200, description = "Recovered", body = RecoveredItem),
        (status = 400, description = "Unknown kind, malformed body, the item cannot be recovered, or (`RESOURCE_ALREADY_EXISTS`) the registered model's name or the new name is held by an active model: give a new name", body = ErrorBody),
        (status = 404, description = "No such deleted item", body = ErrorBody),
    ))]
async fn recover_item(
    State(state): State<AppState>,
    Path((name, kind_name, id)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<RecoveredItem>> {
    let kind = kind(&kind_name)?;
    let request = optional_body::<RecoverRequest>(&body)?;
    let ws = state.store.resolve_workspace(&name).await?;
    state
        .store
        .recover_deleted_as(&ws, kind, &id, request.name.as_deref())
        .await?;
    Ok(Json(RecoveredItem {
        recovered: ItemRef { kind, id },
        name: request.name,
    }))
}

/// Purges a deleted item now.
#[utoipa::path(post, path = "/api/tandem/v1/workspaces/{name}/deleted/{kind}/{id}/purge", tag = tags::RETENTION,
    params(
        ("name" = String, Path, description = "The workspace's name or id"),
        ("kind" = DeletedKind, Path, description = "What the item is"),
        ("id" = String, Path, description = "The item's id (a model version: `name/version`)"),
    ),
    request_body(content = Option<PurgeRequest>, description = "Optional; empty means defaults"),
    responses(
        (status = 200, description = "Purged", body = PurgedItem),
        (status = 400, description = "Unknown kind, malformed body, or purge protection holds it", body = ErrorBody),
        (status = 404, description = "No such deleted item", body = ErrorBody),
    ))]
async fn purge_item(
    State(state): State<AppState>,
    Path((name, kind_name, id)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<PurgedItem>> {
    let kind = kind(&kind_name)?;
    let request = optional_body::<PurgeRequest>(&body)?;
    let ws = state.store.resolve_workspace(&name).await?;
    state
        .store
        .purge_deleted(&ws, kind, &id, request.keep_artifacts)
        .await?;
    Ok(Json(PurgedItem {
        purged: ItemRef { kind, id },
        keep_artifacts: request.keep_artifacts,
    }))
}

/// The region's garbage-collection queue: storage prefixes of purged items
/// not yet removed.
#[utoipa::path(get, path = "/api/tandem/v1/gc", tag = tags::RETENTION,
    responses((status = 200, description = "Pending removals", body = GcQueue)))]
async fn gc_queue(State(state): State<AppState>) -> ApiResult<Json<GcQueue>> {
    let pending = state
        .store
        .gc_pending()
        .await?
        .into_iter()
        .map(|entry| GcPending {
            prefix: entry.prefix,
            workspace_id: entry.workspace_id,
            attempts: entry.attempts,
        })
        .collect();
    Ok(Json(GcQueue { pending }))
}
