//! The Tandem API (`/api/tandem/v1`) and the server's informational
//! endpoints (`/health`, `/ready` (see [`crate::ready`]), `/version`,
//! MLflow's `server-info`).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_core::model::ViewType;

use crate::error::{ApiError, ApiResult};
use crate::extract::{decode, lenient};
use crate::AppState;

/// Records fetched from the store per step of a journal stream: bounds the
/// memory a stream holds however long the journal is.
const JOURNAL_PAGE: i64 = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(crate::ready::ready))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/ajax-api/3.0/mlflow/server-info", get(server_info))
        .route(
            "/api/tandem/v1/workspaces",
            get(list_workspaces).post(create_workspace),
        )
        .route(
            "/api/tandem/v1/workspaces/{name}",
            get(get_workspace)
                .delete(delete_workspace)
                .patch(crate::retention::update_workspace),
        )
        .route("/api/tandem/v1/journal", get(journal))
        .route("/api/tandem/v1/region", get(region))
        .route("/api/tandem/v1/conflicts", get(conflicts))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConflictsQuery {
    workspace: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    limit: Option<i64>,
}

/// Conflicts between concurrent writes of hot-hot classes that this region
/// merged, newest first, each with both versions.
async fn conflicts(State(state): State<AppState>, Query(query): Query<Value>) -> ApiResult<Json<Value>> {
    let query: ConflictsQuery = decode(query)?;
    let limit = query.limit.unwrap_or(1000);
    if limit <= 0 {
        return Err(ApiError::invalid("'limit' must be positive"));
    }
    let workspace_id = match query.workspace {
        Some(name) => Some(workspace_id_of(&state, &name).await?),
        None => None,
    };
    let conflicts = state.store.list_conflicts(workspace_id.as_deref(), limit).await?;
    Ok(Json(json!({ "conflicts": conflicts })))
}

/// A workspace's id from its name or id, deleted workspaces included.
async fn workspace_id_of(state: &AppState, name: &str) -> ApiResult<String> {
    let all = state.store.list_workspaces(ViewType::All).await?;
    all.into_iter()
        .find(|workspace| workspace.name == name || workspace.workspace_id == name)
        .map(|workspace| workspace.workspace_id)
        .ok_or_else(|| ApiError::not_found(format!("Workspace '{name}' does not exist")))
}

async fn server_info() -> Json<Value> {
    // Workspaces are addressed by URL path here, not by MLflow's workspace
    // header, so the client is told MLflow workspaces are off.
    Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": [],
        "server": "tandem",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListWorkspacesQuery {
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    deleted: Option<bool>,
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    all: Option<bool>,
}

async fn list_workspaces(
    State(state): State<AppState>,
    Query(query): Query<Value>,
) -> ApiResult<Json<Value>> {
    let query: ListWorkspacesQuery = decode(query)?;
    let view = match (query.all.unwrap_or(false), query.deleted.unwrap_or(false)) {
        (true, _) => ViewType::All,
        (false, true) => ViewType::DeletedOnly,
        (false, false) => ViewType::ActiveOnly,
    };
    let workspaces = state.store.list_workspaces(view).await?;
    Ok(Json(json!({ "workspaces": workspaces })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWorkspaceRequest {
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    retention_days: Option<i64>,
    #[serde(default)]
    purge_protection: Option<bool>,
}

async fn create_workspace(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("Malformed JSON in request body: {error}")))?;
    let request: CreateWorkspaceRequest = decode(value)?;
    let name = request
        .name
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::missing("name"))?;
    let workspace = state
        .store
        .create_workspace_with(
            &name,
            &request.description.unwrap_or_default(),
            tandem_store::retention::WorkspaceSettings {
                retention_days: request.retention_days,
                purge_protection: request.purge_protection,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "workspace": workspace })).into_response(),
    )
        .into_response())
}

async fn get_workspace(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    // By name or id, deleted workspaces included (they show their
    // deletion time and when they will be purged).
    let workspace = state.store.find_workspace(&name).await?;
    Ok(Json(json!({ "workspace": workspace })))
}

async fn delete_workspace(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let workspace = state.store.delete_workspace(&name).await?;
    Ok(Json(json!({ "workspace": workspace })))
}

async fn region(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let position = state.store.journal_position().await?;
    Ok(Json(json!({
        "region": position.region,
        "epoch": position.epoch,
        "journal_head": position.head,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalQuery {
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    after: Option<i64>,
    workspace: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    limit: Option<i64>,
}

/// Streams the journal after a position as newline-delimited JSON records,
/// reading it page by page so a long journal never sits in memory.
async fn journal(State(state): State<AppState>, Query(query): Query<Value>) -> ApiResult<Response> {
    let query: JournalQuery = decode(query)?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid(
            "'after' must be a journal position (0 or more)",
        ));
    }
    let limit = query.limit.unwrap_or(i64::MAX);
    if limit <= 0 {
        return Err(ApiError::invalid("'limit' must be positive"));
    }
    let workspace_id = match query.workspace {
        Some(name) => Some(workspace_id_of(&state, &name).await?),
        None => None,
    };
    let store = state.store.clone();
    let stream = futures::stream::try_unfold((after, 0i64), move |(position, sent)| {
        let store = store.clone();
        let workspace_id = workspace_id.clone();
        async move {
            if sent >= limit {
                return Ok::<_, std::io::Error>(None);
            }
            let page = JOURNAL_PAGE.min(limit - sent);
            let records = store
                .journal_after(position, workspace_id.as_deref(), page)
                .await
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            let Some(last) = records.last() else {
                return Ok(None);
            };
            let next_position = last.seq;
            let mut chunk = Vec::with_capacity(records.len() * 256);
            for record in &records {
                serde_json::to_writer(&mut chunk, record).map_err(std::io::Error::other)?;
                chunk.push(b'\n');
            }
            Ok(Some((
                bytes::Bytes::from(chunk),
                (next_position, sent + records.len() as i64),
            )))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
