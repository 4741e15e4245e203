//! Moving experiments and registered models between two workspaces of the
//! deployment (`tandem move`), online, in one transaction.
//!
//! The source workspace journals the departure (`experiment_moved_out`,
//! `registered_model_moved_out`: a purge that names where the object went);
//! the destination journals the arrival as the ordinary creations an import
//! writes (experiment, runs with their whole histories, logged models,
//! registered models with their versions, and an `artifact_written` for each
//! artifact, whose bytes the caller copied there beforehand). So each
//! workspace's journal alone still rebuilds that workspace — what per-workspace
//! backups, restores and replication stand on — and moving back undoes a
//! move: runs and logged models keep their ids, registered models their
//! names and version numbers, and an experiment its id wherever it is free.
//!
//! A move is planned against committed state (to learn which bytes to copy),
//! then planned again under the writer lock and written only if nothing it
//! depends on changed in between (`MoveCommit::Changed` otherwise).

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::Row;
use tandem_core::journal::{AssetClass, Change};
use tandem_core::model::*;
use tandem_core::transfer::{MoveOutcome, MoveRequest, MovedExperiment};
use tandem_core::Error;

use super::ops::{invalid, not_found};
use super::transfer::{logged_model_arrival, run_arrival, version_arrival};
use super::{load, SqlStore};
use crate::error::{StoreError, StoreResult};
use crate::{proxied_artifact_path, MoveCommit, MovePlan, MovedArtifact, WorkspaceRef};

/// An experiment the plan takes, and where its proxied files go.
struct Taken {
    experiment: Experiment,
    to_id: String,
    /// The experiment's root in the proxy's storage here and there (None:
    /// its files live outside Tandem's storage, at a custom location).
    roots: Option<(String, String)>,
}

impl SqlStore {
    pub(super) async fn plan_move_impl(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &MoveRequest,
        ids: &BTreeMap<String, String>,
    ) -> StoreResult<MovePlan> {
        if from.workspace_id == to.workspace_id {
            return Err(invalid(format!(
                "Nothing to move: the source and the destination are both workspace '{}'",
                from.name
            )));
        }
        if request.experiments.is_empty() && request.registered_models.is_empty() {
            return Err(invalid(
                "Name at least one experiment or registered model to move".to_string(),
            ));
        }
        let taken = self.take_experiments(from, to, request, ids).await?;
        let models = self.take_registered_models(from, to, request).await?;

        let mut outcome = MoveOutcome {
            from: from.name.clone(),
            to: to.name.clone(),
            registered_models: models.iter().map(|(model, _)| model.name.clone()).collect(),
            dry_run: request.dry_run,
            ..MoveOutcome::default()
        };
        let mut departures = Vec::new();
        let mut arrivals = Vec::new();
        let mut artifacts = Vec::new();
        let mut moved_runs = HashSet::new();
        let mut moved_logged_models = HashSet::new();
        for take in &taken {
            let experiment = &take.experiment;
            let old_id = &experiment.experiment_id;
            outcome.experiments.push(MovedExperiment {
                name: experiment.name.clone(),
                from_id: old_id.clone(),
                to_id: take.to_id.clone(),
            });
            departures.push(Change::ExperimentMovedOut {
                experiment_id: old_id.clone(),
                to_workspace_id: to.workspace_id.clone(),
                to_experiment_id: take.to_id.clone(),
                time: 0,
            });
            let location = match &take.roots {
                Some((from_root, to_root))
                    if experiment.artifact_location.starts_with("mlflow-artifacts:") =>
                {
                    rebase(&experiment.artifact_location, from_root, to_root)
                }
                _ => experiment.artifact_location.clone(),
            };
            arrivals.push(Change::ExperimentCreated {
                experiment_id: take.to_id.clone(),
                name: experiment.name.clone(),
                artifact_location: location,
                tags: experiment.tags.clone(),
                time: experiment.creation_time,
            });
            arrivals.push(Change::ExperimentRenamed {
                experiment_id: take.to_id.clone(),
                name: experiment.name.clone(),
                time: experiment.last_update_time,
            });
            if experiment.lifecycle_stage == LifecycleStage::Deleted {
                arrivals.push(Change::ExperimentDeleted {
                    experiment_id: take.to_id.clone(),
                    time: experiment.last_update_time,
                });
            }
            let runs = load::runs_where(
                &self.pool,
                &from.workspace_id,
                "AND r.experiment_id = $2",
                std::slice::from_ref(old_id),
            )
            .await?;
            let deleted: HashMap<String, Option<i64>> = sqlx::query(
                "SELECT run_id, deleted_time FROM runs WHERE workspace_id = $1 AND experiment_id = $2",
            )
            .bind(&from.workspace_id)
            .bind(old_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("run_id")?, row.try_get("deleted_time")?)))
            .collect::<StoreResult<_>>()?;
            let mut runs = runs;
            runs.sort_by(|a, b| a.info.run_id.cmp(&b.info.run_id));
            for run in runs {
                let run_id = run.info.run_id.clone();
                let metrics = self.whole_history(&run_id).await?;
                outcome.runs += 1;
                outcome.metric_points += metrics.len() as u64;
                let uri = match &take.roots {
                    Some((from_root, to_root)) => rebase(&run.info.artifact_uri, from_root, to_root),
                    None => run.info.artifact_uri.clone(),
                };
                arrivals.extend(run_arrival(&run, &run_id, &take.to_id, &uri, metrics));
                if run.info.lifecycle_stage == LifecycleStage::Deleted {
                    arrivals.push(Change::RunDeleted {
                        run_id: run_id.clone(),
                        time: deleted.get(&run_id).copied().flatten().unwrap_or_default(),
                    });
                }
                moved_runs.insert(run_id);
            }
            let logged = load::logged_models_where(
                &self.pool,
                &from.workspace_id,
                "AND m.experiment_id = $2",
                std::slice::from_ref(old_id),
            )
            .await?;
            for model in logged {
                let info = &model.info;
                let uri = match &take.roots {
                    Some((from_root, to_root)) => rebase(&info.artifact_uri, from_root, to_root),
                    None => info.artifact_uri.clone(),
                };
                arrivals.extend(logged_model_arrival(
                    info,
                    &model.data.params,
                    &info.model_id,
                    &take.to_id,
                    &uri,
                ));
                if info.lifecycle_stage == LifecycleStage::Deleted {
                    arrivals.push(Change::LoggedModelDeleted {
                        model_id: info.model_id.clone(),
                        time: info.last_updated_timestamp_ms,
                    });
                }
                outcome.logged_models += 1;
                moved_logged_models.insert(info.model_id.clone());
            }
            if let Some((from_root, to_root)) = &take.roots {
                for (path, size, sha256, created_at) in
                    self.artifacts_under(&from.workspace_id, from_root).await?
                {
                    let to_path = format!("{to_root}{}", &path[from_root.len()..]);
                    outcome.artifacts += 1;
                    outcome.artifact_bytes += size.max(0) as u64;
                    arrivals.push(Change::ArtifactWritten {
                        path: to_path.clone(),
                        size,
                        sha256: sha256.clone(),
                        time: created_at,
                    });
                    artifacts.push(MovedArtifact {
                        from_path: path,
                        to_path,
                        size,
                        sha256,
                    });
                }
            }
        }

        let roots: Vec<(&str, &str)> = taken
            .iter()
            .filter_map(|take| take.roots.as_ref())
            .map(|(from_root, to_root)| (from_root.as_str(), to_root.as_str()))
            .collect();
        self.check_references(from, &taken, &models, &moved_runs, &moved_logged_models)
            .await?;
        for (model, versions) in &models {
            departures.push(Change::RegisteredModelMovedOut {
                name: model.name.clone(),
                to_workspace_id: to.workspace_id.clone(),
                time: 0,
            });
            arrivals.push(Change::RegisteredModelCreated {
                name: model.name.clone(),
                description: model.description.clone(),
                user_id: model.user_id.clone(),
                tags: model.tags.clone(),
                time: model.creation_timestamp,
            });
            for (version, storage_location) in versions {
                let mut version = version.clone();
                let mut storage_location = storage_location.clone();
                for (from_root, to_root) in &roots {
                    version.source = rebase(&version.source, from_root, to_root);
                    storage_location = rebase(&storage_location, from_root, to_root);
                }
                arrivals.extend(version_arrival(&model.name, &version, storage_location));
                outcome.model_versions += 1;
            }
            for alias in &model.aliases {
                arrivals.push(Change::RegisteredModelAliasSet {
                    name: model.name.clone(),
                    alias: alias.alias.clone(),
                    version: alias.version.clone(),
                });
            }
            arrivals.push(Change::RegisteredModelUpdated {
                name: model.name.clone(),
                description: model.description.clone(),
                time: model.last_updated_timestamp,
            });
        }
        // Registered models leave first: nothing here then refers to the
        // runs and logged models that leave after them.
        departures.sort_by_key(|change| !matches!(change, Change::RegisteredModelMovedOut { .. }));
        outcome.changes = (departures.len() + arrivals.len()) as u64;
        Ok(MovePlan {
            outcome,
            artifacts,
            departures,
            arrivals,
            experiment_ids: taken
                .iter()
                .map(|take| (take.experiment.experiment_id.clone(), take.to_id.clone()))
                .collect(),
        })
    }

    pub(super) async fn commit_move_impl(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &MoveRequest,
        planned: &MovePlan,
    ) -> StoreResult<MoveCommit> {
        let mut write = self.begin_write(&from.workspace_id).await?;
        // Every writer waits for the lock we hold (and on PostgreSQL for the
        // journal head we locked), so what we read now is what we write over.
        let plan = self
            .plan_move_impl(from, to, request, &planned.experiment_ids)
            .await?;
        if canonical(&plan.arrivals) != canonical(&planned.arrivals) || plan.artifacts != planned.artifacts {
            return Ok(MoveCommit::Changed(Box::new(plan)));
        }
        let now = write.now;
        for mut change in plan.departures {
            match &mut change {
                Change::ExperimentMovedOut { time, .. } | Change::RegisteredModelMovedOut { time, .. } => {
                    *time = now
                }
                _ => {}
            }
            self.record(&mut write, change).await?;
        }
        write.workspace_id = to.workspace_id.clone();
        for change in plan.arrivals {
            self.record(&mut write, change).await?;
        }
        Self::commit(write).await?;
        Ok(MoveCommit::Committed(plan.outcome))
    }

    /// The experiments `request` names, each with its id in the destination.
    async fn take_experiments(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &MoveRequest,
        ids: &BTreeMap<String, String>,
    ) -> StoreResult<Vec<Taken>> {
        let mut taken: Vec<Taken> = Vec::new();
        let mut used = HashSet::new();
        let mut floor: i64 =
            sqlx::query_scalar("SELECT next_experiment_id FROM workspaces WHERE workspace_id = $1")
                .bind(&to.workspace_id)
                .fetch_one(&self.pool)
                .await?;
        for spec in &request.experiments {
            let found = match load::experiment(&self.pool, &from.workspace_id, spec).await? {
                Some(experiment) => Some(experiment),
                None => load::experiment_by_name(&self.pool, &from.workspace_id, spec).await?,
            };
            let experiment = found.ok_or_else(|| {
                not_found(format!(
                    "No experiment '{spec}' (by id or name) in workspace '{}'",
                    from.name
                ))
            })?;
            if taken
                .iter()
                .any(|take| take.experiment.experiment_id == experiment.experiment_id)
            {
                continue;
            }
            if experiment.experiment_id == "0" {
                return Err(invalid(format!(
                    "The Default experiment (id 0) belongs to workspace '{}' and cannot move",
                    from.name
                )));
            }
            if let Some(clash) =
                load::experiment_by_name(&self.pool, &to.workspace_id, &experiment.name).await?
            {
                return Err(StoreError::Domain(Error::already_exists(format!(
                    "Workspace '{}' already has an experiment named '{}' (id {}): rename one of them first",
                    to.name, experiment.name, clash.experiment_id
                ))));
            }
            let hinted = ids.get(&experiment.experiment_id);
            let to_id = match hinted {
                Some(id) if self.experiment_id_free(to, id, &used).await? => id.clone(),
                _ if self
                    .experiment_id_free(to, &experiment.experiment_id, &used)
                    .await? =>
                {
                    experiment.experiment_id.clone()
                }
                _ => loop {
                    let candidate = self.allocate_id(AssetClass::Tracking, floor.max(1)).to_string();
                    floor = candidate.parse::<i64>().unwrap_or(floor) + 1;
                    if self.experiment_id_free(to, &candidate, &used).await? {
                        break candidate;
                    }
                },
            };
            used.insert(to_id.clone());
            let roots = proxied_artifact_path(&experiment.artifact_location)
                .filter(|root| !root.is_empty())
                .map(|root| {
                    let to_root = if root == experiment.experiment_id {
                        to_id.clone()
                    } else {
                        root.clone()
                    };
                    (root, to_root)
                });
            if let Some((_, to_root)) = &roots {
                if !self.artifacts_under(&to.workspace_id, to_root).await?.is_empty() {
                    return Err(StoreError::Domain(Error::already_exists(format!(
                        "Workspace '{}' already holds artifacts under '{to_root}/', where experiment '{}' would put its own",
                        to.name, experiment.name
                    ))));
                }
            }
            taken.push(Taken {
                experiment,
                to_id,
                roots,
            });
        }
        Ok(taken)
    }

    /// Whether `id` names no experiment of `to` and was not given to
    /// another experiment of this move.
    async fn experiment_id_free(
        &self,
        to: &WorkspaceRef,
        id: &str,
        used: &HashSet<String>,
    ) -> StoreResult<bool> {
        Ok(!used.contains(id)
            && load::experiment(&self.pool, &to.workspace_id, id)
                .await?
                .is_none())
    }

    /// The registered models `request` names, each with its live versions
    /// and their storage locations.
    async fn take_registered_models(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &MoveRequest,
    ) -> StoreResult<Vec<(RegisteredModel, Vec<(ModelVersion, String)>)>> {
        let mut models: Vec<(RegisteredModel, Vec<(ModelVersion, String)>)> = Vec::new();
        for name in &request.registered_models {
            if models.iter().any(|(model, _)| &model.name == name) {
                continue;
            }
            let model = load::registered_models_where(
                &self.pool,
                &from.workspace_id,
                "AND m.name = $2",
                std::slice::from_ref(name),
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                not_found(format!(
                    "No registered model '{name}' in workspace '{}'",
                    from.name
                ))
            })?;
            let clash: Option<String> = sqlx::query_scalar(
                "SELECT name FROM registered_models WHERE workspace_id = $1 AND name = $2",
            )
            .bind(&to.workspace_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
            if clash.is_some() {
                return Err(StoreError::Domain(Error::already_exists(format!(
                    "Workspace '{}' already has a registered model named '{name}': rename one of them first",
                    to.name
                ))));
            }
            let deleted: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM model_versions WHERE workspace_id = $1 AND name = $2 AND deletion_time IS NOT NULL",
            )
            .bind(&from.workspace_id)
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
            if deleted > 0 {
                return Err(invalid(format!(
                    "Registered model '{name}' has {deleted} deleted version(s) kept for recovery: recover or purge them before moving it"
                )));
            }
            let versions = load::model_versions_where(
                &self.pool,
                &from.workspace_id,
                "AND v.name = $2",
                std::slice::from_ref(name),
            )
            .await?;
            let locations: HashMap<String, String> = sqlx::query(
                "SELECT version, storage_location FROM model_versions WHERE workspace_id = $1 AND name = $2",
            )
            .bind(&from.workspace_id)
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("version")?.to_string(),
                    row.try_get("storage_location")?,
                ))
            })
            .collect::<StoreResult<_>>()?;
            let versions = versions
                .into_iter()
                .map(|version| {
                    let location = locations.get(&version.version).cloned().unwrap_or_default();
                    (version, location)
                })
                .collect();
            models.push((model, versions));
        }
        Ok(models)
    }

    /// Refuses a move that would leave a reference across the two
    /// workspaces: a version staying here made from a run or logged model
    /// that leaves, or a version leaving made from one that stays.
    async fn check_references(
        &self,
        from: &WorkspaceRef,
        taken: &[Taken],
        models: &[(RegisteredModel, Vec<(ModelVersion, String)>)],
        moved_runs: &HashSet<String>,
        moved_logged_models: &HashSet<String>,
    ) -> StoreResult<()> {
        let moving_models: HashSet<&str> = models.iter().map(|(model, _)| model.name.as_str()).collect();
        let from_roots: Vec<&str> = taken
            .iter()
            .filter_map(|take| take.roots.as_ref().map(|(root, _)| root.as_str()))
            .collect();
        let under_moved_root = |location: &str| {
            proxied_artifact_path(location).is_some_and(|path| {
                from_roots
                    .iter()
                    .any(|root| path == *root || path.starts_with(&format!("{root}/")))
            })
        };
        let mut problems = Vec::new();
        let rows = sqlx::query(
            "SELECT name, version, run_id, model_id, storage_location FROM model_versions \
             WHERE workspace_id = $1 ORDER BY name, version",
        )
        .bind(&from.workspace_id)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let name: String = row.try_get("name")?;
            let version: i64 = row.try_get("version")?;
            let run_id: String = row.try_get("run_id")?;
            let model_id: String = row.try_get("model_id")?;
            let location: String = row.try_get("storage_location")?;
            let uses_moved = (!run_id.is_empty() && moved_runs.contains(&run_id))
                || (!model_id.is_empty() && moved_logged_models.contains(&model_id))
                || under_moved_root(&location);
            if moving_models.contains(name.as_str()) {
                let staying_run = !run_id.is_empty() && !moved_runs.contains(&run_id);
                let staying_model = !model_id.is_empty() && !moved_logged_models.contains(&model_id);
                let staying_files =
                    proxied_artifact_path(&location).is_some() && !under_moved_root(&location);
                if staying_run || staying_model || staying_files {
                    let what = if staying_run {
                        self.run_owner(from, &run_id).await?
                    } else if staying_model {
                        format!("logged model {model_id}")
                    } else {
                        format!("files at {location}")
                    };
                    problems.push(format!(
                        "version {version} of registered model '{name}' is made from {what}, which stays in '{}'",
                        from.name
                    ));
                }
            } else if uses_moved {
                problems.push(format!(
                    "version {version} of registered model '{name}' is made from a run or logged model that moves: move '{name}' too (--registered-model)"
                ));
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Domain(Error::invalid(format!(
                "This move would break {} reference(s) between workspaces: {}",
                problems.len(),
                problems.join("; ")
            ))));
        }
        Ok(())
    }

    /// "run R of experiment 'E' (--experiment E)", for messages.
    async fn run_owner(&self, from: &WorkspaceRef, run_id: &str) -> StoreResult<String> {
        let experiment: Option<String> = sqlx::query_scalar(
            "SELECT e.name FROM runs r JOIN experiments e ON e.workspace_id = r.workspace_id AND e.experiment_id = r.experiment_id \
             WHERE r.run_id = $1 AND r.workspace_id = $2",
        )
        .bind(run_id)
        .bind(&from.workspace_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match experiment {
            Some(name) => format!("run {run_id} of experiment '{name}' (move it too: --experiment '{name}')"),
            None => format!("run {run_id}"),
        })
    }

    /// Every metric point of a run, in key order.
    async fn whole_history(&self, run_id: &str) -> StoreResult<Vec<Metric>> {
        let rows = sqlx::query(
            "SELECT key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics \
             WHERE run_id = $1 ORDER BY key, timestamp, step, value",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let mut metric = load::metric_row(row, run_id)?;
                metric.run_id = None;
                Ok(metric)
            })
            .collect()
    }

    /// The artifact index under `root/`: (path, size, sha256, written at).
    async fn artifacts_under(
        &self,
        workspace_id: &str,
        root: &str,
    ) -> StoreResult<Vec<(String, i64, String, i64)>> {
        // '0' is the character after '/': the range is exactly `root/…`.
        let rows = sqlx::query(
            "SELECT path, size, sha256, created_at FROM artifacts \
             WHERE workspace_id = $1 AND path >= $2 AND path < $3 ORDER BY path",
        )
        .bind(workspace_id)
        .bind(format!("{root}/"))
        .bind(format!("{root}0"))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("path")?,
                    row.try_get("size")?,
                    row.try_get("sha256")?,
                    row.try_get("created_at")?,
                ))
            })
            .collect()
    }
}

/// The changes as a sorted list of their encodings: two plans that write
/// the same changes are equal whatever order the state was read in (each
/// plan's own order is what it applies in).
fn canonical(changes: &[Change]) -> Vec<String> {
    let mut encoded: Vec<String> = changes
        .iter()
        .map(tandem_core::journal::JournalRecord::encode_change)
        .collect();
    encoded.sort_unstable();
    encoded
}

/// `uri` with the proxied root `from_root` replaced by `to_root`; any other
/// URI as it is.
fn rebase(uri: &str, from_root: &str, to_root: &str) -> String {
    if from_root == to_root {
        return uri.to_string();
    }
    match proxied_artifact_path(uri) {
        Some(path) if path == from_root => format!("mlflow-artifacts:/{to_root}"),
        Some(path) if path.starts_with(&format!("{from_root}/")) => {
            format!("mlflow-artifacts:/{to_root}{}", &path[from_root.len()..])
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::rebase;

    #[test]
    fn rebase_moves_only_uris_under_the_root() {
        assert_eq!(
            rebase("mlflow-artifacts:/3/abc/artifacts", "3", "7"),
            "mlflow-artifacts:/7/abc/artifacts"
        );
        assert_eq!(rebase("mlflow-artifacts:/3", "3", "7"), "mlflow-artifacts:/7");
        assert_eq!(
            rebase("mlflow-artifacts:/30/abc", "3", "7"),
            "mlflow-artifacts:/30/abc"
        );
        assert_eq!(rebase("runs:/abc/model", "3", "7"), "runs:/abc/model");
        assert_eq!(rebase("s3://bucket/3/abc", "3", "7"), "s3://bucket/3/abc");
    }
}
