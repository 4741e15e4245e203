//! Experiments and runs (their params, tags, metrics, inputs and outputs):
//! what `MetadataStore`'s tracking methods do, kept apart from `ops.rs`'s
//! other operations.

use super::ops::{append_to_uri, artifact_owner_check, ensure_active, invalid, not_found};
use super::{load, SqlStore};
use crate::error::{StoreError, StoreResult};
use crate::*;
use sqlx::Row;
use tandem_core::journal::{AssetClass, Change};
use tandem_core::model::RUN_NAME_TAG;
use tandem_core::model::*;
use tandem_core::validation as rules;
use tandem_core::{ids, names, Error};

impl SqlStore {
    pub(super) async fn create_experiment_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<Tag>,
    ) -> StoreResult<String> {
        rules::validate_experiment_name(name)?;
        if let Some(location) = artifact_location {
            rules::validate_artifact_location(location)?;
        }
        for tag in &tags {
            rules::validate_experiment_tag(tag)?;
        }
        let mut write = self.begin_write(&ws.workspace_id).await?;
        // An experiment whose runs would store their artifacts inside
        // another run's (or logged model's) artifacts would lose them when
        // that owner is purged and its root collected.
        if let Some(path) = artifact_location.and_then(proxied_artifact_path) {
            if !path.is_empty()
                && artifact_owner_check(&mut write.tx, ws, &path, false)
                    .await
                    .is_ok()
            {
                return Err(invalid(format!(
                    "Artifact location '{}' lies inside the artifacts of an existing run or logged model; \
                     an experiment's artifacts must not live inside another owner's, whose purge would remove them. \
                     Choose a location outside every run's and logged model's artifacts (or leave it empty)",
                    artifact_location.unwrap_or_default()
                )));
            }
        }
        // On the write's connection: the state checked is the state written
        // to, with the writes before this one in the shared transaction.
        let existing = sqlx::query(
            "SELECT experiment_id, lifecycle_stage FROM experiments WHERE workspace_id = $1 AND name = $2",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .fetch_optional(&mut *write.tx)
        .await?;
        if let Some(existing) = existing {
            let id: String = existing.try_get("experiment_id")?;
            let stage: String = existing.try_get("lifecycle_stage")?;
            let state = if stage == "deleted" { " (deleted)" } else { "" };
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Experiment(name={name}) already exists{state}. Error: experiment {id} holds this name"
            ))));
        }
        let next: i64 =
            sqlx::query_scalar("SELECT next_experiment_id FROM workspaces WHERE workspace_id = $1")
                .bind(&ws.workspace_id)
                .fetch_one(&mut *write.tx)
                .await?;
        let experiment_id = self.allocate_id(AssetClass::Tracking, next.max(1)).to_string();
        let change =
            Self::experiment_created_change(experiment_id.clone(), name, artifact_location, tags, write.now);
        self.record(&mut write, change).await?;
        Self::commit(write).await?;
        Ok(experiment_id)
    }

    pub(super) async fn get_experiment_impl(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
    ) -> StoreResult<Experiment> {
        load::experiment(&self.pool, &ws.workspace_id, experiment_id)
            .await?
            .ok_or_else(|| not_found(format!("No Experiment with id={experiment_id} exists")))
    }

    pub(super) async fn get_experiment_by_name_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> StoreResult<Experiment> {
        load::experiment_by_name(&self.pool, &ws.workspace_id, name)
            .await?
            .ok_or_else(|| not_found(format!("Could not find experiment with name '{name}'")))
    }

    pub(super) async fn rename_experiment_impl(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        new_name: &str,
    ) -> StoreResult<()> {
        rules::validate_experiment_name(new_name)?;
        let experiment = self.get_experiment(ws, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(StoreError::Domain(Error::invalid(format!(
                "Cannot rename a non-active experiment {experiment_id}."
            ))));
        }
        if experiment.name == new_name {
            return Ok(());
        }
        if load::experiment_by_name(&self.pool, &ws.workspace_id, new_name)
            .await?
            .is_some()
        {
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Experiment(name={new_name}) already exists."
            ))));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::ExperimentRenamed {
                experiment_id: experiment_id.to_string(),
                name: new_name.to_string(),
                time,
            },
        )
        .await
    }

    pub(super) async fn delete_experiment_impl(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
    ) -> StoreResult<()> {
        if experiment_id == DEFAULT_EXPERIMENT_ID {
            return Err(invalid(format!(
                "Cannot delete the default experiment '{DEFAULT_EXPERIMENT_ID}'. This is an internally reserved experiment."
            )));
        }
        self.get_experiment(ws, experiment_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::ExperimentDeleted {
                experiment_id: experiment_id.to_string(),
                time,
            },
        )
        .await
    }

    pub(super) async fn restore_experiment_impl(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
    ) -> StoreResult<()> {
        let experiment = self.get_experiment(ws, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Deleted {
            return Err(invalid(format!(
                "Cannot restore an active experiment {experiment_id}. Current state is active."
            )));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::ExperimentRestored {
                experiment_id: experiment_id.to_string(),
                time,
            },
        )
        .await
    }

    pub(super) async fn set_experiment_tag_impl(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        tag: Tag,
    ) -> StoreResult<()> {
        rules::validate_experiment_tag(&tag)?;
        self.ensure_experiment_active(ws, experiment_id).await?;
        self.write_one(
            ws,
            Change::ExperimentTagSet {
                experiment_id: experiment_id.to_string(),
                tag,
            },
        )
        .await
    }

    pub(super) async fn delete_experiment_tag_impl(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        key: &str,
    ) -> StoreResult<()> {
        let experiment = self.ensure_experiment_active(ws, experiment_id).await?;
        if !experiment.tags.iter().any(|tag| tag.key == key) {
            return Err(not_found(format!(
                "No tag with name: {key} in experiment with id {experiment_id}"
            )));
        }
        self.write_one(
            ws,
            Change::ExperimentTagDeleted {
                experiment_id: experiment_id.to_string(),
                key: key.to_string(),
            },
        )
        .await
    }

    pub(super) async fn create_run_impl(&self, ws: &WorkspaceRef, request: CreateRun) -> StoreResult<Run> {
        for (index, tag) in request.tags.iter().enumerate() {
            rules::validate_run_tag(tag, &format!("tags[{index}]"))?;
        }
        let experiment = self.ensure_experiment_active(ws, &request.experiment_id).await?;
        let tag_name = request
            .tags
            .iter()
            .find(|tag| tag.key == RUN_NAME_TAG)
            .map(|tag| tag.value.clone());
        let requested_name = request.run_name.filter(|name| !name.is_empty());
        if let (Some(name), Some(tag_name)) = (&requested_name, &tag_name) {
            if name != tag_name {
                return Err(invalid(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='{name}', mlflow.runName='{tag_name}')."
                )));
            }
        }
        let run_name = requested_name
            .or(tag_name.clone())
            .unwrap_or_else(names::random_run_name);
        let mut tags = request.tags;
        if tag_name.is_none() {
            tags.push(Tag::new(RUN_NAME_TAG, run_name.clone()));
        }
        let run_id = ids::new_run_id();
        let artifact_uri = append_to_uri(&experiment.artifact_location, &[&run_id, "artifacts"]);
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let start_time = Some(request.start_time.unwrap_or(write.now));
        self.record(
            &mut write,
            Change::RunCreated {
                run_id: run_id.clone(),
                experiment_id: request.experiment_id.clone(),
                run_name,
                user_id: request.user_id,
                start_time,
                artifact_uri,
                tags,
            },
        )
        .await?;
        Self::commit(write).await?;
        self.get_run(ws, &run_id).await
    }

    pub(super) async fn get_run_impl(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<Run> {
        load::run(&self.pool, &ws.workspace_id, run_id)
            .await?
            .ok_or_else(|| not_found(format!("Run with id={run_id} not found")))
    }

    pub(super) async fn update_run_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        update: UpdateRun,
    ) -> StoreResult<RunInfo> {
        self.active_run(ws, run_id).await?;
        let run_name = update.run_name.filter(|name| !name.is_empty());
        if let Some(name) = &run_name {
            rules::validate_run_tag(&Tag::new(RUN_NAME_TAG, name.clone()), "run_name")?;
        }
        self.write_one(
            ws,
            Change::RunUpdated {
                run_id: run_id.to_string(),
                status: update.status,
                end_time: update.end_time,
                run_name,
            },
        )
        .await?;
        self.run_info_in(ws, run_id).await
    }

    pub(super) async fn delete_run_impl(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()> {
        self.run_info_in(ws, run_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::RunDeleted {
                run_id: run_id.to_string(),
                time,
            },
        )
        .await
    }

    pub(super) async fn restore_run_impl(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()> {
        self.run_info_in(ws, run_id).await?;
        self.write_one(
            ws,
            Change::RunRestored {
                run_id: run_id.to_string(),
            },
        )
        .await
    }

    pub(super) async fn log_batch_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> StoreResult<()> {
        rules::validate_batch_limits(metrics.len(), params.len(), tags.len())?;
        rules::validate_param_keys_unique(&params)?;
        // A batch repeats a few keys many times (a key per series, a metric per
        // step): a key found valid once is valid again, so only its first
        // occurrence pays for the checks of its name.
        let mut valid_keys: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (index, metric) in metrics.iter().enumerate() {
            if metric.timestamp >= 0 && valid_keys.contains(metric.key.as_str()) {
                continue;
            }
            rules::validate_metric(metric, &format!("metrics[{index}]"))?;
            valid_keys.insert(&metric.key);
        }
        for (index, param) in params.iter().enumerate() {
            rules::validate_param(param, &format!("params[{index}]"))?;
        }
        for (index, tag) in tags.iter().enumerate() {
            rules::validate_run_tag(tag, &format!("tags[{index}]"))?;
        }
        if metrics.is_empty() && params.is_empty() && tags.is_empty() {
            self.active_run(ws, run_id).await?;
            return Ok(());
        }
        let mut write = self.begin_write(&ws.workspace_id).await?;
        if self.backend == super::Backend::Postgres && !self.multi_writer(AssetClass::Tracking) {
            self.log_run_data_in_one_statement(&mut write, run_id, metrics, params, tags)
                .await?;
            return Self::commit(write).await;
        }
        // Validated inside the write, on its connection: the state checked is
        // the state written to, and on SQLite the writer's page cache holds
        // these pages already.
        let info = match load::run_info(&mut *write.tx, run_id).await? {
            Some((workspace_id, info)) if workspace_id == ws.workspace_id => info,
            _ => return Err(not_found(format!("Run with id={run_id} not found"))),
        };
        ensure_active(&info)?;
        if !params.is_empty() {
            // Only the keys being logged: a run may hold thousands of params.
            let keys: Vec<String> = (0..params.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT key, value FROM run_params WHERE run_id = $1 AND key IN ({})",
                keys.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(run_id);
            for param in &params {
                query = query.bind(&param.key);
            }
            let rows = query.fetch_all(&mut *write.tx).await?;
            for row in rows {
                let key: String = row.try_get("key")?;
                let value: String = row.try_get("value")?;
                if let Some(new) = params
                    .iter()
                    .find(|param| param.key == key && param.value != value)
                {
                    return Err(invalid(format!(
                        "Changing param values is not allowed. Param with key='{key}' was already logged with value='{value}' for run ID='{run_id}'. Attempted logging new value '{}'.",
                        new.value
                    )));
                }
            }
        }
        self.record(
            &mut write,
            Change::RunDataLogged {
                run_id: run_id.to_string(),
                metrics,
                params,
                tags,
            },
        )
        .await?;
        Self::commit(write).await
    }

    pub(super) async fn delete_run_tag_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
    ) -> StoreResult<()> {
        self.active_run(ws, run_id).await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM run_tags WHERE run_id = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        if found.is_none() {
            return Err(not_found(format!(
                "No tag with name: {key} in run with id {run_id}"
            )));
        }
        self.write_one(
            ws,
            Change::RunTagDeleted {
                run_id: run_id.to_string(),
                key: key.to_string(),
            },
        )
        .await
    }

    pub(super) async fn log_inputs_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> StoreResult<()> {
        for input in &datasets {
            let dataset = &input.dataset;
            rules::validate_length("Dataset name", rules::MAX_DATASET_NAME_SIZE, &dataset.name)?;
            rules::validate_length("Dataset digest", rules::MAX_DATASET_DIGEST_SIZE, &dataset.digest)?;
            rules::validate_length("Dataset source", rules::MAX_DATASET_SOURCE_SIZE, &dataset.source)?;
            if let Some(schema) = &dataset.schema {
                rules::validate_length("Dataset schema", rules::MAX_DATASET_SCHEMA_SIZE, schema)?;
            }
            if let Some(profile) = &dataset.profile {
                rules::validate_length("Dataset profile", rules::MAX_DATASET_PROFILE_SIZE, profile)?;
            }
            for tag in &input.tags {
                rules::validate_length("InputTag key", rules::MAX_INPUT_TAG_KEY_SIZE, &tag.key)?;
                rules::validate_length("InputTag value", rules::MAX_INPUT_TAG_VALUE_SIZE, &tag.value)?;
            }
        }
        self.active_run(ws, run_id).await?;
        if datasets.is_empty() && models.is_empty() {
            return Ok(());
        }
        self.write_one(
            ws,
            Change::RunInputsLogged {
                run_id: run_id.to_string(),
                datasets,
                models,
            },
        )
        .await
    }

    pub(super) async fn log_outputs_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        models: Vec<ModelOutput>,
    ) -> StoreResult<()> {
        self.active_run(ws, run_id).await?;
        if models.is_empty() {
            return Ok(());
        }
        self.write_one(
            ws,
            Change::RunOutputsLogged {
                run_id: run_id.to_string(),
                models,
            },
        )
        .await
    }
}
