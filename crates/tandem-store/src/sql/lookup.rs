//! Lookups the operations share: an active experiment or run, a logged
//! model, registered model or version of a workspace, a workspace's row,
//! and the change that creates an experiment.

use super::ops::{ensure_active, invalid, not_found};
use super::{load, SqlStore};
use crate::error::StoreResult;
use crate::*;
use tandem_core::journal::Change;
use tandem_core::model::*;
use tandem_core::validation as rules;

impl SqlStore {
    pub(super) async fn ensure_experiment_active(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
    ) -> StoreResult<Experiment> {
        let experiment = self.get_experiment(ws, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(invalid(format!(
                "The experiment {experiment_id} must be in the 'active' state. Current state is {}.",
                experiment.lifecycle_stage.as_str()
            )));
        }
        Ok(experiment)
    }

    pub(crate) async fn run_info_in(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<RunInfo> {
        match load::run_info(&self.pool, run_id).await? {
            Some((workspace_id, info)) if workspace_id == ws.workspace_id => Ok(info),
            _ => Err(not_found(format!("Run with id={run_id} not found"))),
        }
    }

    pub(super) async fn active_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<RunInfo> {
        let info = self.run_info_in(ws, run_id).await?;
        ensure_active(&info)?;
        Ok(info)
    }

    pub(super) async fn logged_model_in(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
    ) -> StoreResult<LoggedModel> {
        let models = load::logged_models_where(
            &self.pool,
            &ws.workspace_id,
            "AND m.model_id = $2",
            &[model_id.to_string()],
        )
        .await?;
        match models.into_iter().next() {
            Some(model) if model.info.lifecycle_stage == LifecycleStage::Active => Ok(model),
            _ => Err(not_found(format!("Logged model with ID '{model_id}' not found."))),
        }
    }

    pub(super) async fn registered_model_exists(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<()> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM registered_models WHERE workspace_id = $1 AND name = $2 AND deletion_time IS NULL",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(not_found(format!("Registered Model with name={name} not found"))),
        }
    }

    pub(super) async fn model_version_in(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<ModelVersion> {
        let number = rules::parse_model_version(version)?;
        let versions = load::model_versions_where(
            &self.pool,
            &ws.workspace_id,
            "AND v.name = $2 AND v.version = CAST($3 AS BIGINT)",
            &[name.to_string(), number.to_string()],
        )
        .await?;
        versions
            .into_iter()
            .next()
            .ok_or_else(|| not_found(format!("Model Version (name={name}, version={number}) not found")))
    }

    pub(super) async fn workspace_row(&self, name: &str, view: ViewType) -> StoreResult<Option<Workspace>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM workspaces WHERE name = $1",
            load::WORKSPACE_COLUMNS
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let workspace = load::workspace_from_row(&row)?;
            if view.includes(workspace.lifecycle_stage) {
                return Ok(Some(workspace));
            }
        }
        Ok(None)
    }

    /// Creates the `default` workspace on first start, through the journal
    /// like any other.
    pub(super) async fn ensure_default_workspace(&self) -> StoreResult<()> {
        if self
            .workspace_row(DEFAULT_WORKSPACE, ViewType::All)
            .await?
            .is_none()
        {
            self.create_workspace(
                DEFAULT_WORKSPACE,
                "The default workspace, also served at the API root",
            )
            .await?;
        }
        Ok(())
    }

    pub(super) fn default_artifact_location(experiment_id: &str) -> String {
        format!("mlflow-artifacts:/{experiment_id}")
    }

    /// The change that creates an experiment, its artifact location defaulted
    /// to the artifact proxy's `mlflow-artifacts:/<id>`.
    pub(super) fn experiment_created_change(
        experiment_id: String,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<Tag>,
        time: Millis,
    ) -> Change {
        let artifact_location = match artifact_location {
            Some(location) if !location.is_empty() => location.to_string(),
            _ => Self::default_artifact_location(&experiment_id),
        };
        Change::ExperimentCreated {
            experiment_id,
            name: name.to_string(),
            artifact_location,
            tags,
            time,
        }
    }
}
