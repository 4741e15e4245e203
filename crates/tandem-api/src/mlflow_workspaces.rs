//! MLflow's workspace API (`/api/3.0/mlflow/workspaces`, MLflow 3.x with
//! `--enable-workspaces`) over Tandem's workspaces, so `mlflow.set_workspace`
//! and `MLFLOW_WORKSPACE` work against Tandem: the same workspaces as
//! `/w/<name>/` and `/api/tandem/v1/workspaces`, in MLflow's shapes, status
//! codes (201 on create, 204 on delete) and name rule.
//!
//! What Tandem does not have is refused, never ignored: a workspace keeps
//! its artifacts in the region's storage (replicated and backed up with it),
//! so a per-workspace `default_artifact_root` or trace archival location is
//! refused; `SET_DEFAULT` deletion (moving the workspace's contents into
//! `default`) is refused. A delete is Tandem's soft delete: the workspace
//! and everything in it stay recoverable (`POST
//! /api/tandem/v1/workspaces/<name>/recover`) until its retention ends, which
//! is why `RESTRICT` (MLflow's default, "refuse if it still holds
//! resources") deletes too: nothing is lost that recovery cannot bring back.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tandem_core::access::Permission;
use tandem_core::model::{ViewType, Workspace};
use tandem_store::retention::{WorkspaceSettings, WorkspaceUpdate};
use tandem_store::DEFAULT_WORKSPACE;

use crate::access::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::decode_slice;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/3.0/mlflow/workspaces",
            get(list_workspaces).post(create_workspace),
        )
        .route(
            "/ajax-api/3.0/mlflow/workspaces",
            get(list_workspaces).post(create_workspace),
        )
        .route(
            "/api/3.0/mlflow/workspaces/{name}",
            get(get_workspace)
                .patch(update_workspace)
                .delete(delete_workspace),
        )
        .route(
            "/ajax-api/3.0/mlflow/workspaces/{name}",
            get(get_workspace)
                .patch(update_workspace)
                .delete(delete_workspace),
        )
}

/// Names MLflow reserves because they collide with its own URL segments.
const RESERVED_NAMES: [&str; 4] = ["workspaces", "api", "ajax-api", "static-files"];
const MIN_NAME_LENGTH: usize = 2;
const MAX_NAME_LENGTH: usize = 63;

/// MLflow's workspace name rule (a Kubernetes DNS label of 2 to 63
/// characters, minus its reserved names), with MLflow's messages. Tandem's
/// own rule is the same alphabet from 1 character, so every name this
/// accepts Tandem accepts.
fn validate_mlflow_name(name: &str) -> ApiResult<()> {
    let length = name.chars().count();
    if !(MIN_NAME_LENGTH..=MAX_NAME_LENGTH).contains(&length) {
        return Err(ApiError::invalid(format!(
            "Workspace name '{name}' must be between {MIN_NAME_LENGTH} and {MAX_NAME_LENGTH} characters."
        )));
    }
    let bytes = name.as_bytes();
    let edge = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let inner = |byte: &u8| edge(*byte) || *byte == b'-';
    if !(edge(bytes[0]) && edge(bytes[bytes.len() - 1]) && bytes.iter().all(inner)) {
        return Err(ApiError::invalid(format!(
            "Workspace name '{name}' must match the pattern ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ \
             (lowercase alphanumeric with optional internal hyphens)."
        )));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(ApiError::invalid(format!(
            "Workspace name '{name}' is reserved and cannot be used."
        )));
    }
    Ok(())
}

/// A workspace in MLflow's `Workspace` message: its name and description
/// (absent when empty). Tandem's other fields (id, retention, deletion) are
/// in its own API.
fn to_mlflow(workspace: &Workspace) -> Value {
    let mut message = Map::new();
    message.insert("name".to_string(), json!(workspace.name));
    if !workspace.description.is_empty() {
        message.insert("description".to_string(), json!(workspace.description));
    }
    Value::Object(message)
}

/// An active workspace by name for the routes that name one: MLflow's name
/// rule first (its error for a malformed name), except for a workspace
/// created under Tandem's wider rule (one character), which is served.
async fn active_workspace(state: &AppState, name: &str) -> ApiResult<Workspace> {
    match state.store.resolve_workspace(name).await {
        Ok(ws) => Ok(state.store.find_workspace(&ws.workspace_id).await?),
        Err(error) => {
            if name != DEFAULT_WORKSPACE {
                validate_mlflow_name(name)?;
            }
            Err(error.into())
        }
    }
}

/// `trace_archival_config` of a request: its location and retention.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TraceArchivalConfig {
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    retention: Option<String>,
}

/// The storage settings MLflow lets a workspace carry, which Tandem refuses
/// unless empty (MLflow's "unset").
fn refuse_storage_settings(
    default_artifact_root: Option<&str>,
    trace_archival: Option<&TraceArchivalConfig>,
) -> ApiResult<()> {
    if default_artifact_root.is_some_and(|root| !root.trim().is_empty()) {
        return Err(ApiError::invalid(
            "Tandem keeps every workspace's artifacts in the region's storage, replicated and backed up \
             with the workspace: a per-workspace 'default_artifact_root' is not supported (leave it unset)",
        ));
    }
    if let Some(config) = trace_archival {
        let set = |value: &Option<String>| value.as_deref().is_some_and(|text| !text.trim().is_empty());
        if set(&config.location) || set(&config.retention) {
            return Err(ApiError::invalid(
                "Tandem does not archive traces: 'trace_archival_config' is not supported (leave it unset)",
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWorkspace {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    default_artifact_root: Option<String>,
    #[serde(default)]
    trace_archival_config: Option<TraceArchivalConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateWorkspace {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    default_artifact_root: Option<String>,
    #[serde(default)]
    trace_archival_config: Option<TraceArchivalConfig>,
}

/// A JSON object body; an empty body is an empty message.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => decode_slice(b"{}"),
        Some(b'{') => decode_slice(bytes),
        Some(_) => Err(ApiError::bad_request("the request body must be a JSON object")),
    }
}

/// The active workspaces the caller may read, or all of them for those
/// who create and delete workspaces (operators, admins) and without
/// authentication: a workspace's name is otherwise the business of those
/// with a role in it, and MLflow's client offers the list as "the
/// workspaces available to the current user".
async fn list_workspaces(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let sees_all = caller.require(Permission::Operate, None).is_ok();
    let workspaces: Vec<Value> = state
        .store
        .list_workspaces(ViewType::ActiveOnly)
        .await?
        .iter()
        .filter(|workspace| sees_all || caller.require(Permission::Read, Some(&workspace.name)).is_ok())
        .map(to_mlflow)
        .collect();
    Ok(Json(json!({ "workspaces": workspaces })))
}

async fn create_workspace(State(state): State<AppState>, bytes: axum::body::Bytes) -> ApiResult<Response> {
    let request: CreateWorkspace = body(&bytes)?;
    let name = request.name.ok_or_else(|| ApiError::missing("name"))?;
    if name == DEFAULT_WORKSPACE {
        return Err(ApiError::invalid(format!(
            "The '{DEFAULT_WORKSPACE}' workspace is reserved and cannot be created"
        )));
    }
    validate_mlflow_name(&name)?;
    refuse_storage_settings(
        request.default_artifact_root.as_deref(),
        request.trace_archival_config.as_ref(),
    )?;
    let workspace = state
        .store
        .create_workspace_with(
            &name,
            &request.description.unwrap_or_default(),
            WorkspaceSettings::default(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "workspace": to_mlflow(&workspace) })),
    )
        .into_response())
}

async fn get_workspace(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let workspace = active_workspace(&state, &name).await?;
    Ok(Json(json!({ "workspace": to_mlflow(&workspace) })))
}

async fn update_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let request: UpdateWorkspace = body(&bytes)?;
    let archival_keys = request
        .trace_archival_config
        .as_ref()
        .is_some_and(|config| config.location.is_some() || config.retention.is_some());
    if request.description.is_none() && request.default_artifact_root.is_none() && !archival_keys {
        return Err(ApiError::invalid("Workspace update must have at least one key"));
    }
    let workspace = active_workspace(&state, &name).await?;
    refuse_storage_settings(
        request.default_artifact_root.as_deref(),
        request.trace_archival_config.as_ref(),
    )?;
    let update = WorkspaceUpdate {
        description: request.description,
        ..WorkspaceUpdate::default()
    };
    let workspace = state
        .store
        .update_workspace(&workspace.workspace_id, update)
        .await?;
    Ok(Json(json!({ "workspace": to_mlflow(&workspace) })))
}

#[derive(Deserialize)]
struct DeleteQuery {
    mode: Option<String>,
}

/// MLflow's deletion modes.
const DELETION_MODES: [&str; 3] = ["SET_DEFAULT", "CASCADE", "RESTRICT"];

async fn delete_workspace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    if name == DEFAULT_WORKSPACE {
        return Err(ApiError::invalid(format!(
            "The '{DEFAULT_WORKSPACE}' workspace is reserved and cannot be deleted"
        )));
    }
    let mode = query.mode.unwrap_or_else(|| "RESTRICT".to_string());
    if !DELETION_MODES.contains(&mode.as_str()) {
        return Err(ApiError::invalid(format!(
            "Invalid deletion mode '{mode}'. Must be one of: {}",
            DELETION_MODES.join(", ")
        )));
    }
    if mode == "SET_DEFAULT" {
        return Err(ApiError::invalid(
            "Tandem does not move a workspace's contents into 'default': deletion mode SET_DEFAULT is not \
             supported. RESTRICT and CASCADE delete softly: the workspace and everything in it are kept, \
             recoverable with POST /api/tandem/v1/workspaces/<name>/recover, until its retention ends",
        ));
    }
    let workspace = active_workspace(&state, &name).await?;
    state.store.delete_workspace(&workspace.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_mlflows_rule() {
        for good in ["team-a", "ab", "a1", &"x".repeat(63)] {
            assert!(validate_mlflow_name(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("a", "between 2 and 63"),
            (&"x".repeat(64), "between 2 and 63"),
            ("Team-A", "must match the pattern"),
            ("-ab", "must match the pattern"),
            ("ab-", "must match the pattern"),
            ("a_b", "must match the pattern"),
            ("api", "is reserved"),
            ("ajax-api", "is reserved"),
        ] {
            let error = validate_mlflow_name(bad).unwrap_err();
            assert!(error.message.contains(says), "{bad}: {}", error.message);
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
    }
}
