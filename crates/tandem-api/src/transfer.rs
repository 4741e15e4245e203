//! The import endpoint `tandem import` and `tandem sync` write through
//! (see `tandem_core::transfer`):
//!
//! - `POST /api/tandem/v1/workspaces/{workspace}/import`: one object, whole
//!   (an experiment, a run with a chunk of its history, a logged model, a
//!   registered model with its versions), written in one transaction with
//!   its origin; answers what was done, the object's id here and, for runs
//!   and logged models, the artifacts already under its root (so the copier
//!   uploads only what is missing or different);
//! - `GET /api/tandem/v1/workspaces/{workspace}/import/origins?source=S`:
//!   what this workspace holds of source `S` (ids and digests), which a copy
//!   reads first to skip what is unchanged and to resume.
//!
//! Artifacts travel through the ordinary artifact proxy, so each is hashed
//! and journaled like any upload.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tandem_core::model::ArtifactEntry;
use tandem_core::transfer::{ImportAction, ImportOutcome, ImportRequest, Origin, TransferObject};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Message, Ws};
use crate::openapi::{tags, ErrorBody};
use crate::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_object))
        .routes(routes!(list_origins))
}

/// The import endpoint's answer: the outcome, and the artifacts already
/// under the object's root, relative to it.
#[derive(Serialize, ToSchema)]
struct ImportReply {
    #[schema(value_type = Object)]
    #[serde(flatten)]
    outcome: ImportOutcome,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    artifacts: Vec<ArtifactEntry>,
}

#[derive(Serialize, ToSchema)]
struct OriginList {
    #[schema(value_type = Vec<Object>)]
    origins: Vec<Origin>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OriginQuery {
    /// The source, as the copier names it (`http://host:5000`, …).
    source: String,
}

/// Writes one object copied from another server, whole.
#[utoipa::path(post, path = "/api/tandem/v1/workspaces/{workspace}/import", tag = tags::WORKSPACES,
    params(("workspace" = String, Path, description = "The workspace's name")),
    request_body(content = Object, description = "An ImportRequest (tandem_core::transfer): format, source, source_id, on_conflict, digest, object"),
    responses(
        (status = 200, description = "Created, updated, unchanged or skipped", body = ImportReply),
        (status = 400, description = "Invalid object, or a newer transfer format", body = ErrorBody),
        (status = 404, description = "No such workspace, or an object it refers to is not here yet", body = ErrorBody),
        (status = 409, description = "A name held here by an object that was not copied from this source", body = ErrorBody),
    ))]
async fn import_object(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Message(request): Message<ImportRequest>,
) -> ApiResult<Json<ImportReply>> {
    if let TransferObject::RegisteredModel { versions, .. } = &request.object {
        // A copied version is held to the rules of a new one: its source
        // may not point at this server's disk or outside its run's files.
        for version in versions {
            if let Some(pattern) = &state.limits.model_version_source {
                if !pattern.is_match(&version.source) {
                    return Err(ApiError::invalid(format!(
                        "Invalid model version source: '{}'.",
                        version.source
                    )));
                }
            }
            crate::sources::validate(&state, &ws, &version.source, &version.run_id, &version.model_id)
                .await?;
        }
    }
    let kind = request.object.kind();
    let source = request.source.clone();
    let outcome = state.store.import_object(&ws, request).await?;
    if outcome.action != ImportAction::Unchanged && outcome.action != ImportAction::Skipped {
        tracing::info!(workspace = %ws.name, kind = kind.as_str(), %source, target = %outcome.target_id,
            action = ?outcome.action, changes = outcome.changes, "imported");
    }
    let artifacts = match tandem_store::proxied_artifact_path(&outcome.artifact_uri) {
        Some(root) if !root.is_empty() => {
            let prefix = format!("{root}/");
            state
                .store
                .list_artifact_entries(&ws, &prefix)
                .await?
                .into_iter()
                .filter_map(|entry| {
                    let path = entry.path.strip_prefix(&prefix)?.to_string();
                    Some(ArtifactEntry { path, ..entry })
                })
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(Json(ImportReply { outcome, artifacts }))
}

/// What this workspace holds of a source: each copied object's id here and
/// the digest it was last copied with.
#[utoipa::path(get, path = "/api/tandem/v1/workspaces/{workspace}/import/origins", tag = tags::WORKSPACES,
    params(("workspace" = String, Path, description = "The workspace's name"), OriginQuery),
    responses(
        (status = 200, description = "The origins", body = OriginList),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn list_origins(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Query(query): Query<OriginQuery>,
) -> ApiResult<Json<OriginList>> {
    let origins = state.store.transfer_origins(&ws, &query.source).await?;
    Ok(Json(OriginList { origins }))
}
