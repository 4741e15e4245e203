//! Readiness, as distinct from liveness. `/health` answers 200 as long as
//! the process serves HTTP at all; `/ready` answers 200 only when the region
//! can serve its role, and otherwise 503 with what is missing, so that a
//! process supervisor, the gateway and tests route to a region, or wait for
//! it, on what it can actually do rather than on whether it listens.
//!
//! A region on its own is ready once its store answers and holds the
//! bootstrap data (the `default` workspace). A region of a deployment adds
//! its role's conditions (see `tandem_replication::Region`'s readiness):
//! leadership settled with the witness, and a secondary caught up with its
//! primary.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use tandem_core::model::ViewType;
use tandem_store::{MetadataStore, DEFAULT_EXPERIMENT_ID, DEFAULT_WORKSPACE};

use crate::AppState;

/// One condition of readiness and what was found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// `store`, `bootstrap`, `leadership`, `caught_up`.
    pub name: &'static str,
    pub ok: bool,
    /// What was found: for a failed check, what is missing and why.
    pub detail: String,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The answer of `/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// `standalone`, `primary` or `secondary`.
    pub role: String,
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Ready when every check passed.
    pub fn new(role: impl Into<String>, checks: Vec<Check>) -> Self {
        Readiness {
            ready: checks.iter().all(|check| check.ok),
            role: role.into(),
            checks,
        }
    }

    /// What is missing, in one line ("" when ready).
    pub fn missing(&self) -> String {
        self.checks
            .iter()
            .filter(|check| !check.ok)
            .map(|check| format!("{}: {}", check.name, check.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Where `/ready` gets its answer.
#[async_trait]
pub trait ReadinessProbe: Send + Sync {
    async fn readiness(&self) -> Readiness;
}

/// A region without a deployment: its store and its bootstrap data.
pub struct StandaloneReadiness {
    pub store: Arc<dyn MetadataStore>,
}

#[async_trait]
impl ReadinessProbe for StandaloneReadiness {
    async fn readiness(&self) -> Readiness {
        let store = store_check(self.store.as_ref()).await;
        let bootstrap = if store.ok {
            bootstrap_check(self.store.as_ref(), true).await
        } else {
            Check::fail("bootstrap", "the store does not answer")
        };
        Readiness::new("standalone", vec![store, bootstrap])
    }
}

/// Whether the store answers a query.
pub async fn store_check(store: &dyn MetadataStore) -> Check {
    match store.journal_position().await {
        Ok(position) => Check::pass(
            "store",
            format!("journal head {}, epoch {}", position.head, position.epoch),
        ),
        Err(error) => Check::fail("store", format!("the metadata store does not answer: {error}")),
    }
}

/// Whether the store holds the deployment's bootstrap: the `default`
/// workspace, and (when `with_default_experiment`, i.e. tracking is
/// replicated here) its default experiment, which the same transaction
/// created.
pub async fn bootstrap_check(store: &dyn MetadataStore, with_default_experiment: bool) -> Check {
    let workspaces = match store.list_workspaces(ViewType::All).await {
        Ok(workspaces) => workspaces,
        Err(error) => return Check::fail("bootstrap", format!("cannot list workspaces: {error}")),
    };
    let Some(workspace) = workspaces.into_iter().find(|w| w.name == DEFAULT_WORKSPACE) else {
        return Check::fail(
            "bootstrap",
            format!("the '{DEFAULT_WORKSPACE}' workspace is not here yet"),
        );
    };
    if with_default_experiment {
        let scope = tandem_store::WorkspaceRef {
            workspace_id: workspace.workspace_id.clone(),
            name: workspace.name.clone(),
        };
        if store.get_experiment(&scope, DEFAULT_EXPERIMENT_ID).await.is_err() {
            return Check::fail(
                "bootstrap",
                format!("the '{DEFAULT_WORKSPACE}' workspace is here but not its default experiment yet"),
            );
        }
    }
    Check::pass(
        "bootstrap",
        format!("the '{DEFAULT_WORKSPACE}' workspace is here"),
    )
}

/// `GET /ready`: 200 with the checks, or 503 with MLflow's error JSON
/// saying what is missing, and the checks.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let readiness = state.readiness.readiness().await;
    let mut body = json!(readiness);
    if readiness.ready {
        return (StatusCode::OK, Json(body)).into_response();
    }
    body["error_code"] = json!("TEMPORARILY_UNAVAILABLE");
    body["message"] = json!(format!("not ready: {}", readiness.missing()));
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
