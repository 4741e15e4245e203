//! Tandem's HTTP surface.
//!
//! - MLflow's REST API (`/api/2.0/mlflow/…`, also under `/ajax-api/`), as the
//!   official 3.x client uses it, for the `default` workspace at the root and
//!   for any workspace under `/w/<workspace>/`;
//! - MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/…`), streaming bytes
//!   between the client and the region's storage;
//! - MLflow's workspace API (`/api/3.0/mlflow/workspaces`) and its
//!   `X-MLFLOW-WORKSPACE` header, which selects a workspace as `/w/<name>/`
//!   does (see [`extract::requested_workspace`]);
//! - the Tandem API (`/api/tandem/v1/…`): workspaces, the journal, the
//!   workspace file share and its salvage.
//!
//! Architecture invariant: this is the only crate that knows HTTP and JSON
//! request shapes. It holds no state of its own; every change goes through
//! [`tandem_store::MetadataStore`], every byte through
//! [`tandem_artifacts::ArtifactStore`]. Errors of every layer are mapped to
//! MLflow's error JSON once, in [`error`].

pub mod access;
mod artifacts;
pub mod error;
pub mod extract;
mod files;
mod graphql;
mod mlflow_ui;
mod mlflow_workspaces;
mod models;
mod moving;
pub mod multipart;
pub mod openapi;
mod page;
mod principals;
pub mod ready;
mod retention;
mod sources;
mod tandem;
pub mod tasks;
mod tracking;
mod transfer;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tandem_artifacts::ArtifactStore;
use tandem_core::journal::AssetClass;
use tandem_store::{written, MetadataStore, RegionPolicy};

/// Limits on what a request may carry.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON request body, in bytes.
    pub max_json_body: usize,
    /// Largest single artifact upload, in bytes (None: unlimited).
    pub max_artifact_size: Option<u64>,
    /// What every model version source must match somewhere (MLflow's
    /// `MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX`), when set.
    pub model_version_source: Option<regex::Regex>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_body: 16 * 1024 * 1024,
            max_artifact_size: None,
            model_version_source: None,
        }
    }
}

/// What every handler needs: the region's store and storage, and the
/// region's policy (role and replication) for reads and acknowledgements.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn MetadataStore>,
    pub artifacts: ArtifactStore,
    pub limits: Limits,
    pub policy: Arc<dyn RegionPolicy>,
    /// What `/ready` answers: the region's own conditions when it is part
    /// of a deployment.
    pub readiness: Arc<dyn ready::ReadinessProbe>,
}

impl AppState {
    /// A region on its own (no deployment): every read and write allowed.
    pub fn standalone(store: Arc<dyn MetadataStore>, artifacts: ArtifactStore, limits: Limits) -> Self {
        AppState {
            readiness: Arc::new(ready::StandaloneReadiness { store: store.clone() }),
            store,
            artifacts,
            limits,
            policy: Arc::new(tandem_store::Standalone),
        }
    }
}

/// An upload's declared `Content-Length` (0 when absent: streamed).
pub(crate) fn declared_length(headers: &axum::http::HeaderMap) -> i64 {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(0)
}

/// The asset class an MLflow route serves, for read checks.
fn class_of_path(path: &str) -> Option<AssetClass> {
    if path.contains("/mlflow/workspaces") {
        // Workspaces themselves, like Tandem's own workspace API.
        None
    } else if path.contains("/registered-models") || path.contains("/model-versions") {
        Some(AssetClass::Registry)
    } else if path.contains("/mlflow/")
        || path.contains("/mlflow-artifacts/")
        || path.ends_with("/get-artifact")
        || path.ends_with("/graphql")
    {
        Some(AssetClass::Tracking)
    } else if path.starts_with("/api/tandem/v1/workspaces/") && path.contains("/files") {
        Some(AssetClass::Files)
    } else {
        None
    }
}

/// Whether a request reads or writes workspace data (MLflow's API, the
/// artifact proxy, workspaces and their files), as opposed to the region's
/// own endpoints (health, status, replication, backups).
fn workspace_scoped(path: &str) -> bool {
    class_of_path(path).is_some()
        || path.starts_with("/w/")
        || path.starts_with("/api/tandem/v1/workspaces")
        || path.contains("/mlflow/workspaces")
}

/// Applies the region policy around every request: workspace data is not
/// served before the region holds the deployment's bootstrap; reads of a
/// class this region may not serve are refused; a successful write is
/// acknowledged only when the policy says so (synchronous replication).
async fn region_policy(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if workspace_scoped(&path) {
        // Before this check, a hot-hot secondary that had not yet received
        // the default workspace answered writes to it with 404.
        if let Err(error) = state.policy.check_serving() {
            return error::ApiError::from(error).into_response();
        }
    }
    let reads_only = request.method() == Method::GET
        || path.ends_with("/search")
        || path.ends_with("/get-latest-versions")
        || path.ends_with("/search-datasets")
        || path.ends_with("/graphql");
    if reads_only {
        if let Some(class) = class_of_path(&path) {
            if let Err(error) = state.policy.check_read(class) {
                return error::ApiError::from(error).into_response();
            }
        }
    }
    let (response, appended) = written::scope(next.run(request)).await;
    if response.status().is_success() && !appended.is_empty() {
        if let Err(error) = state.policy.acknowledge(&appended).await {
            return error::ApiError::from(error).into_response();
        }
    }
    response
}

/// This crate's part of the Tandem API (`/api/tandem/v1`), with its
/// OpenAPI document: workspaces, retention, files, the journal.
fn tandem_api() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(tandem::routes())
        .merge(retention::routes())
        .merge(files::routes())
        .merge(principals::routes())
        .merge(transfer::routes())
        .merge(moving::routes())
}

/// The OpenAPI document of this crate's part of the Tandem API, for
/// [`openapi::finish`].
pub fn openapi_part() -> utoipa::openapi::OpenApi {
    tandem_api().split_for_parts().1
}

/// The whole API. Workspace-scoped routes are mounted twice: at the root for
/// the default workspace, and under `/w/{workspace}`.
pub fn router(state: AppState) -> Router {
    let scoped = || {
        Router::new()
            .merge(tracking::routes())
            .merge(models::routes())
            .merge(artifacts::routes())
            .merge(mlflow_ui::routes())
    };
    Router::new()
        .merge(scoped())
        .nest("/w/{workspace}", scoped().merge(tandem::scoped_info_routes()))
        .merge(tandem::info_routes())
        .merge(mlflow_workspaces::routes())
        .merge(mlflow_ui::root_routes())
        .merge(principals::mlflow_user_routes())
        .merge(tandem_api().split_for_parts().0)
        // Bodies are read by our extractors with their own limits (JSON) or
        // streamed without buffering (artifacts).
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), region_policy))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
