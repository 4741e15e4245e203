//! Tandem's HTTP surface.
//!
//! - MLflow's REST API (`/api/2.0/mlflow/…`, also under `/ajax-api/`), as the
//!   official 3.x client uses it, for the `default` workspace at the root and
//!   for any workspace under `/w/<workspace>/`;
//! - MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/…`), streaming bytes
//!   between the client and the region's storage;
//! - the Tandem API (`/api/tandem/v1/…`): workspaces and the journal.
//!
//! Architecture invariant: this is the only crate that knows HTTP and JSON
//! request shapes. It holds no state of its own; every change goes through
//! [`tandem_store::MetadataStore`], every byte through
//! [`tandem_artifacts::ArtifactStore`]. Errors of every layer are mapped to
//! MLflow's error JSON once, in [`error`].

mod artifacts;
pub mod error;
pub mod extract;
mod models;
mod tandem;
mod tracking;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tandem_artifacts::ArtifactStore;
use tandem_store::MetadataStore;

/// Limits on what a request may carry.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON request body, in bytes.
    pub max_json_body: usize,
    /// Largest single artifact upload, in bytes (None: unlimited).
    pub max_artifact_size: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_body: 16 * 1024 * 1024,
            max_artifact_size: None,
        }
    }
}

/// What every handler needs: the region's store and storage.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn MetadataStore>,
    pub artifacts: ArtifactStore,
    pub limits: Limits,
}

/// The whole API. Workspace-scoped routes are mounted twice: at the root for
/// the default workspace, and under `/w/{workspace}`.
pub fn router(state: AppState) -> Router {
    let scoped = || {
        Router::new()
            .merge(tracking::routes())
            .merge(models::routes())
            .merge(artifacts::routes())
    };
    Router::new()
        .merge(scoped())
        .nest("/w/{workspace}", scoped())
        .merge(tandem::routes())
        // Bodies are read by our extractors with their own limits (JSON) or
        // streamed without buffering (artifacts).
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
