//! The Tandem API of soft delete with retention: recover and purge a
//! workspace, change its retention settings, and list, recover and purge
//! the deleted items inside a workspace. Also the region's
//! garbage-collection queue, for operators and tests.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_store::retention::{DeletedKind, WorkspaceUpdate};

use crate::error::{ApiError, ApiResult};
use crate::extract::decode_slice;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/tandem/v1/workspaces/{name}/recover",
            post(recover_workspace),
        )
        .route("/api/tandem/v1/workspaces/{name}/purge", post(purge_workspace))
        .route("/api/tandem/v1/workspaces/{name}/deleted", get(list_deleted))
        .route(
            "/api/tandem/v1/workspaces/{name}/deleted/{kind}/{id}/recover",
            post(recover_item),
        )
        .route(
            "/api/tandem/v1/workspaces/{name}/deleted/{kind}/{id}/purge",
            post(purge_item),
        )
        .route("/api/tandem/v1/gc", get(gc_queue))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    #[serde(default)]
    keep_artifacts: bool,
}

/// An optional JSON body: empty means every field at its default.
fn purge_request(body: &[u8]) -> ApiResult<PurgeRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PurgeRequest::default());
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

async fn recover_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let workspace = state.store.recover_workspace(&name).await?;
    Ok(Json(json!({ "workspace": workspace })))
}

async fn purge_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let request = purge_request(&body)?;
    let workspace = state.store.purge_workspace(&name, request.keep_artifacts).await?;
    Ok(Json(json!({
        "workspace": workspace,
        "purged": true,
        "keep_artifacts": request.keep_artifacts,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateWorkspaceRequest {
    description: Option<String>,
    retention_days: Option<i64>,
    purge_protection: Option<bool>,
}

/// `PATCH /api/tandem/v1/workspaces/{name}` (mounted on the workspace's route).
pub(crate) async fn update_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let request: UpdateWorkspaceRequest = decode_slice(&body)?;
    if request.description.is_none() && request.retention_days.is_none() && request.purge_protection.is_none()
    {
        return Err(ApiError::invalid(
            "nothing to update: give description, retention_days or purge_protection",
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
            },
        )
        .await?;
    Ok(Json(json!({ "workspace": workspace })))
}

async fn list_deleted(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let ws = state.store.resolve_workspace(&name).await?;
    let items = state.store.list_deleted(&ws).await?;
    Ok(Json(json!({ "deleted": items })))
}

async fn recover_item(
    State(state): State<AppState>,
    Path((name, kind_name, id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let kind = kind(&kind_name)?;
    let ws = state.store.resolve_workspace(&name).await?;
    state.store.recover_deleted(&ws, kind, &id).await?;
    Ok(Json(json!({ "recovered": { "kind": kind, "id": id } })))
}

async fn purge_item(
    State(state): State<AppState>,
    Path((name, kind_name, id)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let kind = kind(&kind_name)?;
    let request = purge_request(&body)?;
    let ws = state.store.resolve_workspace(&name).await?;
    state
        .store
        .purge_deleted(&ws, kind, &id, request.keep_artifacts)
        .await?;
    Ok(Json(json!({
        "purged": { "kind": kind, "id": id },
        "keep_artifacts": request.keep_artifacts,
    })))
}

async fn gc_queue(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let entries = state.store.gc_pending().await?;
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|entry| {
            json!({
                "prefix": entry.prefix,
                "workspace_id": entry.workspace_id,
                "attempts": entry.attempts,
            })
        })
        .collect();
    Ok(Json(json!({ "pending": entries })))
}
