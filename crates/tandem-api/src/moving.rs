//! `POST /api/tandem/v1/workspaces/{workspace}/move`: experiments and
//! registered models leave this workspace for another of the deployment,
//! online (`tandem move`; MLflow's `mlflow db move-resources`, which needs
//! the server stopped).
//!
//! The store plans the move; the artifacts it takes are copied to the
//! destination's keys (a server-side copy, a hard link on a local disk);
//! then the store writes the move in one transaction if nothing it takes
//! changed meanwhile, or answers the new plan, whose extra artifacts are
//! copied before trying again. The source's bytes are collected after the
//! commit like a purge's. A failed move leaves nothing: its copies are
//! removed and no change is written.

use std::collections::HashSet;

use axum::extract::State;
use axum::Json;
use tandem_artifacts::ArtifactKey;
use tandem_core::access::Permission;
use tandem_core::transfer::{MoveOutcome, MoveRequest};
use tandem_core::ErrorKind;
use tandem_store::{MoveCommit, MovedArtifact};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Message, Ws};
use crate::openapi::{tags, ErrorBody};
use crate::AppState;

/// Plans tried before giving up on a source that keeps changing.
const ATTEMPTS: usize = 5;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(move_objects))
}

/// Moves experiments (with their runs, logged models and artifacts) and
/// registered models (with their versions) to another workspace.
#[utoipa::path(post, path = "/api/tandem/v1/workspaces/{workspace}/move", tag = tags::WORKSPACES,
    params(("workspace" = String, Path, description = "The workspace they leave")),
    request_body(content = Object, description = "A MoveRequest (tandem_core::transfer): to, experiments, registered_models, dry_run"),
    responses(
        (status = 200, description = "Moved (or, with dry_run, what would move)", body = Object),
        (status = 400, description = "Nothing named, the Default experiment, a name the destination holds, or a reference the move would break", body = ErrorBody),
        (status = 403, description = "The caller may not write to both workspaces", body = ErrorBody),
        (status = 404, description = "No such workspace, experiment or registered model", body = ErrorBody),
        (status = 409, description = "What the move takes kept changing while it was copied", body = ErrorBody),
        (status = 507, description = "The destination's storage is full: nothing moved", body = ErrorBody),
    ))]
async fn move_objects(
    Ws(from): Ws,
    caller: Caller,
    State(state): State<AppState>,
    Message(request): Message<MoveRequest>,
) -> ApiResult<Json<MoveOutcome>> {
    let to = state.store.resolve_workspace(&request.to).await?;
    // The route's permission is checked in the source; the destination
    // is written too.
    caller.require(Permission::Write, Some(&to.name))?;
    let mut plan = state.store.plan_move(&from, &to, &request).await?;
    if request.dry_run {
        return Ok(Json(plan.outcome));
    }
    // Sets: a move of many thousands of files must not compare each with
    // every other.
    let mut copied: HashSet<MovedArtifact> = HashSet::new();
    let mut created: HashSet<ArtifactKey> = HashSet::new();
    // From the first copy to the commit, no garbage collection: one that
    // found the destination's prefix ownerless (queued by a purge, or by a
    // move out of it) would delete what is copied there before the commit
    // gives it its owner.
    let _fence = state.store.artifact_fence(false).await?;
    for _ in 0..ATTEMPTS {
        let result = async {
            for artifact in &plan.artifacts {
                if !copied.contains(artifact) {
                    copy_one(
                        &state,
                        &from.workspace_id,
                        &to.workspace_id,
                        artifact,
                        &mut created,
                    )
                    .await?;
                    copied.insert(artifact.clone());
                }
            }
            Ok::<_, ApiError>(state.store.commit_move(&from, &to, &request, &plan).await?)
        }
        .await;
        match result {
            Ok(MoveCommit::Committed(outcome)) => {
                let kept = kept_keys(&plan.artifacts, &to.workspace_id);
                let stale: Vec<&ArtifactKey> = created.iter().filter(|key| !kept.contains(*key)).collect();
                for key in stale {
                    let _ = state.artifacts.delete(key).await;
                }
                tracing::info!(from = %from.name, to = %to.name, experiments = outcome.experiments.len(),
                    registered_models = outcome.registered_models.len(), runs = outcome.runs,
                    artifacts = outcome.artifacts, changes = outcome.changes, "moved");
                return Ok(Json(outcome));
            }
            Ok(MoveCommit::Changed(replanned)) => plan = *replanned,
            Err(error) => {
                remove(&state, &created).await;
                return Err(error);
            }
        }
    }
    remove(&state, &created).await;
    Err(ApiError::new(
        ErrorKind::InvalidState,
        format!(
            "What this move takes from workspace '{}' kept changing while it was copied ({ATTEMPTS} attempts): try again when writes to it pause",
            from.name
        ),
    ))
}

/// Copies one artifact to its key in the destination and checks its size.
async fn copy_one(
    state: &AppState,
    from_id: &str,
    to_id: &str,
    artifact: &MovedArtifact,
    created: &mut HashSet<ArtifactKey>,
) -> ApiResult<()> {
    let source = tandem_artifacts::workspace_content_key(from_id, "artifacts", &artifact.from_path)?;
    let target = tandem_artifacts::workspace_content_key(to_id, "artifacts", &artifact.to_path)?;
    created.insert(target.clone());
    state.artifacts.copy(&source, &target).await?;
    match state.artifacts.head(&target).await? {
        Some(size) if size as i64 == artifact.size => Ok(()),
        found => Err(ApiError::new(
            ErrorKind::InvalidState,
            format!(
                "artifact '{}' is {} bytes in storage but {} in the index: nothing was moved",
                artifact.from_path,
                found
                    .map(|size| size.to_string())
                    .unwrap_or_else(|| "missing".into()),
                artifact.size
            ),
        )),
    }
}

/// The committed plan's artifacts' keys in `to_id`.
fn kept_keys(artifacts: &[MovedArtifact], to_id: &str) -> HashSet<ArtifactKey> {
    artifacts
        .iter()
        .filter_map(|artifact| {
            tandem_artifacts::workspace_content_key(to_id, "artifacts", &artifact.to_path).ok()
        })
        .collect()
}

async fn remove(state: &AppState, keys: &HashSet<ArtifactKey>) {
    for key in keys {
        if let Err(error) = state.artifacts.delete(key).await {
            tracing::warn!(key = %key, %error, "cannot remove an artifact copied for a move that did not happen");
        }
    }
}
