//! The Tandem API (`/api/tandem/v1`) and the server's informational
//! endpoints (`/health`, `/ready` (see [`crate::ready`]), `/version`,
//! MLflow's `server-info`).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_core::merge::Conflict;
use tandem_core::model::{ViewType, Workspace};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::{decode, lenient};
use crate::openapi::{tags, ErrorBody};
use crate::AppState;

/// Records fetched from the store per step of a journal stream: bounds the
/// memory a stream holds however long the journal is.
const JOURNAL_PAGE: i64 = 1000;

/// The server's informational endpoints (not part of the Tandem API's
/// document: they are the same on every process).
pub(crate) fn info_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(crate::ready::ready))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/ajax-api/3.0/mlflow/server-info", get(server_info))
}

/// MLflow's `server-info` under a workspace's prefix (`/w/{workspace}`):
/// the client asks it relative to its tracking URI, so one pointed at
/// `/w/<name>` with a workspace set finds workspaces on too.
pub(crate) fn scoped_info_routes() -> Router<AppState> {
    Router::new()
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/ajax-api/3.0/mlflow/server-info", get(server_info))
}

/// Workspaces, the journal, the region's position and merge conflicts.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(
            get_workspace,
            delete_workspace,
            crate::retention::update_workspace
        ))
        .routes(routes!(journal))
        .routes(routes!(region))
        .routes(routes!(conflicts))
}

/// `{"workspace": …}`: the answer of every call on one workspace.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkspaceResponse {
    pub workspace: Workspace,
}

#[derive(Serialize, ToSchema)]
struct WorkspaceList {
    workspaces: Vec<Workspace>,
}

#[derive(Serialize, ToSchema)]
struct ConflictList {
    conflicts: Vec<Conflict>,
}

/// Where this region's journal stands.
#[derive(Serialize, ToSchema)]
struct RegionPosition {
    /// The region's name.
    region: String,
    /// The leadership epoch the region's journal is in.
    epoch: i64,
    /// The position of the newest record.
    journal_head: i64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ConflictsQuery {
    /// Only this workspace's conflicts (name or id).
    workspace: Option<String>,
    /// At most this many (default 1000).
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    limit: Option<i64>,
}

/// Conflicts between concurrent writes of hot-hot classes that this region
/// merged, newest first, each with both versions.
#[utoipa::path(get, path = "/api/tandem/v1/conflicts", tag = tags::JOURNAL,
    params(ConflictsQuery),
    responses(
        (status = 200, description = "Conflicts, newest first", body = ConflictList),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn conflicts(
    State(state): State<AppState>,
    Query(query): Query<Value>,
) -> ApiResult<Json<ConflictList>> {
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
    Ok(Json(ConflictList { conflicts }))
}

/// A workspace's id from its name or id, deleted workspaces included.
async fn workspace_id_of(state: &AppState, name: &str) -> ApiResult<String> {
    let all = state.store.list_workspaces(ViewType::All).await?;
    all.into_iter()
        .find(|workspace| workspace.name == name || workspace.workspace_id == name)
        .map(|workspace| workspace.workspace_id)
        .ok_or_else(|| ApiError::not_found(format!("Workspace '{name}' does not exist")))
}

async fn server_info(State(state): State<AppState>) -> Json<Value> {
    // Workspaces are on: the client's `X-MLFLOW-WORKSPACE` header selects
    // one as `/w/<name>/` does, and MLflow's workspace API serves them.
    Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": true,
        "trace_archival_enabled": false,
        // As MLflow: whether the storage takes parts at presigned URLs
        // (`mpu/create`); the client then uploads large files that way.
        "multipart_uploads_enabled": state.artifacts.direct_uploads(),
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": [],
        "server": "tandem",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListWorkspacesQuery {
    /// Only deleted workspaces (kept until their retention ends).
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    deleted: Option<bool>,
    /// Active and deleted workspaces.
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    all: Option<bool>,
}

/// The workspaces: active ones, or deleted ones, or all.
#[utoipa::path(get, path = "/api/tandem/v1/workspaces", tag = tags::WORKSPACES,
    params(ListWorkspacesQuery),
    responses(
        (status = 200, description = "The workspaces", body = WorkspaceList),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
    ))]
async fn list_workspaces(
    State(state): State<AppState>,
    Query(query): Query<Value>,
) -> ApiResult<Json<WorkspaceList>> {
    let query: ListWorkspacesQuery = decode(query)?;
    let view = match (query.all.unwrap_or(false), query.deleted.unwrap_or(false)) {
        (true, _) => ViewType::All,
        (false, true) => ViewType::DeletedOnly,
        (false, false) => ViewType::ActiveOnly,
    };
    let workspaces = state.store.list_workspaces(view).await?;
    Ok(Json(WorkspaceList { workspaces }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateWorkspaceRequest {
    /// The workspace's name, as it appears in URLs (`/w/<name>`).
    #[schema(required)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Days a deleted item is kept before it is purged (1 to 90; default 14).
    #[serde(default)]
    retention_days: Option<i64>,
    /// Once on, never off: nothing is purged before its retention ends.
    #[serde(default)]
    purge_protection: Option<bool>,
}

/// Creates a workspace.
#[utoipa::path(post, path = "/api/tandem/v1/workspaces", tag = tags::WORKSPACES,
    request_body = CreateWorkspaceRequest,
    responses(
        (status = 201, description = "Created", body = WorkspaceResponse),
        (status = 400, description = "Malformed or invalid request", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
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
    Ok((StatusCode::CREATED, Json(WorkspaceResponse { workspace })).into_response())
}

/// A workspace by name or id, deleted workspaces included (they show their
/// deletion time and when they will be purged).
#[utoipa::path(get, path = "/api/tandem/v1/workspaces/{name}", tag = tags::WORKSPACES,
    params(("name" = String, Path, description = "The workspace's name or id")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceResponse),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn get_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkspaceResponse>> {
    let workspace = state.store.find_workspace(&name).await?;
    Ok(Json(WorkspaceResponse { workspace }))
}

/// Deletes a workspace softly: it is kept, recoverable, until its retention
/// ends.
#[utoipa::path(delete, path = "/api/tandem/v1/workspaces/{name}", tag = tags::WORKSPACES,
    params(("name" = String, Path, description = "The workspace's name or id")),
    responses(
        (status = 200, description = "The deleted workspace", body = WorkspaceResponse),
        (status = 400, description = "The workspace cannot be deleted (the default workspace)", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn delete_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkspaceResponse>> {
    let workspace = state.store.delete_workspace(&name).await?;
    Ok(Json(WorkspaceResponse { workspace }))
}

/// This region's name, epoch and journal head.
#[utoipa::path(get, path = "/api/tandem/v1/region", tag = tags::JOURNAL,
    responses((status = 200, description = "Where the journal stands", body = RegionPosition)))]
async fn region(State(state): State<AppState>) -> ApiResult<Json<RegionPosition>> {
    let position = state.store.journal_position().await?;
    Ok(Json(RegionPosition {
        region: position.region,
        epoch: position.epoch,
        journal_head: position.head,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct JournalQuery {
    /// Records after this position (default 0: from the start).
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    after: Option<i64>,
    /// Only this workspace's records (name or id).
    workspace: Option<String>,
    /// At most this many records.
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    limit: Option<i64>,
}

/// Streams the journal after a position as newline-delimited JSON records,
/// reading it page by page so a long journal never sits in memory.
#[utoipa::path(get, path = "/api/tandem/v1/journal", tag = tags::JOURNAL,
    params(JournalQuery),
    responses(
        (status = 200, description = "One journal record (JSON) per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
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
