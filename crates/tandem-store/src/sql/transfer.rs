//! Objects copied from another server (`tandem import`, `sync`): each one
//! written whole, as ordinary changes in one transaction with its
//! [`Origin`], so a copy replicates and backs up like any write, and a second
//! copy of the same source object updates the first instead of duplicating
//! it. See `tandem_core::transfer` for the protocol.

use std::collections::{HashMap, HashSet};

use tandem_core::journal::{AssetClass, Change};
use tandem_core::model::*;
use tandem_core::transfer::{
    ImportAction, ImportOutcome, ImportRequest, ObjectKind, OnConflict, Origin, TransferObject,
    TRANSFER_FORMAT,
};
use tandem_core::validation as rules;
use tandem_core::{ids, Error};

use super::ops::{append_to_uri, invalid, not_found};
use super::rows::Columns;
use super::{load, SqlStore, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::WorkspaceRef;

/// Metric points per journaled change: a chunk of history is several
/// records, none of them large.
const POINTS_PER_CHANGE: usize = 5_000;

/// A copy's changes, written by [`SqlStore::finish`] in one transaction.
struct Plan {
    target_id: String,
    artifact_uri: String,
    created: bool,
    changes: Vec<Change>,
}

impl SqlStore {
    pub(super) async fn transfer_origins_impl(
        &self,
        ws: &WorkspaceRef,
        source: &str,
    ) -> StoreResult<Vec<Origin>> {
        // A model's copy deleted since (through MLflow's API, or its
        // registered model's name given away) reads as deleted, so the next
        // copy brings back what the source still holds. Through the read
        // pool: every pass of a copy starts with these, one per object.
        let rows = self.read_pool.cells(
            "SELECT o.source, o.kind, o.source_id, o.target_id, \
                    CASE WHEN o.kind = 'registered_model' AND NOT EXISTS (SELECT 1 FROM registered_models m \
                              WHERE m.workspace_id = o.workspace_id AND m.name = o.target_id AND m.deletion_time IS NULL) \
                           THEN $3 \
                         WHEN o.kind = 'logged_model' AND NOT EXISTS (SELECT 1 FROM logged_models l \
                              WHERE l.workspace_id = o.workspace_id AND l.model_id = o.target_id AND l.lifecycle_stage = 'active') \
                           THEN $3 \
                         ELSE o.digest END AS digest, \
                    o.time \
             FROM transfer_origins o WHERE o.workspace_id = $1 AND o.source = $2 ORDER BY o.kind, o.source_id",
            &[&ws.workspace_id, source, tandem_core::transfer::DELETED_DIGEST],
        )
        .await?;
        rows.into_iter().map(|mut row| origin_row(&mut row)).collect()
    }

    pub(super) async fn import_object_impl(
        &self,
        ws: &WorkspaceRef,
        request: ImportRequest,
    ) -> StoreResult<ImportOutcome> {
        if request.format > TRANSFER_FORMAT {
            return Err(invalid(format!(
                "This object is in transfer format {}, newer than this server's {TRANSFER_FORMAT}: upgrade the target server",
                request.format
            )));
        }
        if request.source.trim().is_empty() || request.source_id.is_empty() {
            return Err(invalid(
                "An imported object needs its source and its id there".to_string(),
            ));
        }
        let kind = request.object.kind();
        let origin = self.origin(ws, &request.source, kind, &request.source_id).await?;
        let ImportRequest {
            source,
            source_id,
            on_conflict,
            digest,
            object,
            ..
        } = request;
        let plan = match object {
            TransferObject::Experiment { experiment } => {
                self.plan_experiment(ws, origin.as_ref(), &source, experiment, on_conflict)
                    .await?
            }
            TransferObject::Run { run, metrics } => {
                self.plan_run(ws, origin.as_ref(), run, metrics, digest.is_some())
                    .await?
            }
            TransferObject::LoggedModel { model } => {
                self.plan_logged_model(ws, origin.as_ref(), model).await?
            }
            TransferObject::RegisteredModel { model, versions } => {
                self.plan_registered_model(ws, origin.as_ref(), &source, model, versions, on_conflict)
                    .await?
            }
        };
        let Some(plan) = plan else {
            return Ok(ImportOutcome {
                action: ImportAction::Skipped,
                target_id: String::new(),
                artifact_uri: String::new(),
                changes: 0,
            });
        };
        let digest = digest.unwrap_or_default();
        let same_origin = origin
            .as_ref()
            .is_some_and(|origin| origin.target_id == plan.target_id && origin.digest == digest);
        if plan.changes.is_empty() && same_origin {
            return Ok(ImportOutcome {
                action: ImportAction::Unchanged,
                target_id: plan.target_id,
                artifact_uri: plan.artifact_uri,
                changes: 0,
            });
        }
        let action = if plan.created {
            ImportAction::Created
        } else {
            ImportAction::Updated
        };
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let mut changes = plan.changes;
        if !same_origin {
            changes.push(Change::OriginRecorded {
                origin: Origin {
                    source,
                    kind,
                    source_id,
                    target_id: plan.target_id.clone(),
                    digest,
                    time: write.now,
                },
            });
        }
        let count = changes.len() as i64;
        self.record_all(&mut write, changes).await?;
        Self::commit(write).await?;
        Ok(ImportOutcome {
            action,
            target_id: plan.target_id,
            artifact_uri: plan.artifact_uri,
            changes: count,
        })
    }

    async fn record_all(&self, write: &mut WriteTx, changes: Vec<Change>) -> StoreResult<()> {
        for change in changes {
            self.record(write, change).await?;
        }
        Ok(())
    }

    async fn origin(
        &self,
        ws: &WorkspaceRef,
        source: &str,
        kind: ObjectKind,
        source_id: &str,
    ) -> StoreResult<Option<Origin>> {
        let row = sqlx::query(
            "SELECT source, kind, source_id, target_id, digest, time FROM transfer_origins \
             WHERE workspace_id = $1 AND source = $2 AND kind = $3 AND source_id = $4",
        )
        .bind(&ws.workspace_id)
        .bind(source)
        .bind(kind.as_str())
        .bind(source_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|mut row| origin_row(&mut row)).transpose()
    }

    async fn plan_experiment(
        &self,
        ws: &WorkspaceRef,
        origin: Option<&Origin>,
        source: &str,
        experiment: Experiment,
        on_conflict: OnConflict,
    ) -> StoreResult<Option<Plan>> {
        rules::validate_experiment_name(&experiment.name)?;
        for tag in &experiment.tags {
            rules::validate_experiment_tag(tag)?;
        }
        let mut existing = match origin {
            Some(origin) => load::experiment(&self.pool, &ws.workspace_id, &origin.target_id).await?,
            None => None,
        };
        let mut name = experiment.name.clone();
        if existing.is_none() {
            // Every MLflow server has a Default experiment "0": it is the
            // target's own Default, not a clash.
            let default = experiment.experiment_id == "0" && experiment.name == "Default";
            if let Some(clash) = load::experiment_by_name(&self.pool, &ws.workspace_id, &name).await? {
                if default && clash.experiment_id == "0" {
                    existing = Some(clash);
                } else {
                    match on_conflict {
                        OnConflict::Refuse => {
                            return Err(StoreError::Domain(Error::already_exists(format!(
                                "Experiment '{name}' exists in workspace '{}' (id {}) and was not copied from {source}: \
                                 pass --on-conflict merge to copy into it, rename to copy beside it, or skip to leave it out",
                                ws.name, clash.experiment_id
                            ))))
                        }
                        OnConflict::Skip => return Ok(None),
                        OnConflict::Merge => existing = Some(clash),
                        OnConflict::Rename => {
                            name = self.free_experiment_name(ws, &name, source).await?;
                        }
                    }
                }
            }
        }
        let mut changes = Vec::new();
        let Some(current) = existing else {
            let next: i64 =
                sqlx::query_scalar("SELECT next_experiment_id FROM workspaces WHERE workspace_id = $1")
                    .bind(&ws.workspace_id)
                    .fetch_one(&self.pool)
                    .await?;
            let experiment_id = self.allocate_id(AssetClass::Tracking, next.max(1)).to_string();
            changes.push(Self::experiment_created_change(
                experiment_id.clone(),
                &name,
                None,
                experiment.tags.clone(),
                experiment.creation_time,
            ));
            if experiment.lifecycle_stage == LifecycleStage::Deleted {
                changes.push(Change::ExperimentDeleted {
                    experiment_id: experiment_id.clone(),
                    time: experiment.last_update_time,
                });
            } else if experiment.last_update_time > experiment.creation_time {
                // The source's last update time: the only change with a
                // time that leaves an experiment as it is.
                changes.push(Change::ExperimentRenamed {
                    experiment_id: experiment_id.clone(),
                    name,
                    time: experiment.last_update_time,
                });
            }
            return Ok(Some(Plan {
                target_id: experiment_id,
                artifact_uri: String::new(),
                created: true,
                changes,
            }));
        };
        let id = current.experiment_id.clone();
        let renamed_for_clash = name != experiment.name;
        if !renamed_for_clash && current.name != experiment.name && current.experiment_id != "0" {
            if load::experiment_by_name(&self.pool, &ws.workspace_id, &experiment.name)
                .await?
                .is_some()
            {
                return Err(StoreError::Domain(Error::already_exists(format!(
                    "Experiment '{}' was renamed at the source, but workspace '{}' holds that name for another experiment",
                    experiment.name, ws.name
                ))));
            }
            changes.push(Change::ExperimentRenamed {
                experiment_id: id.clone(),
                name: experiment.name.clone(),
                time: experiment.last_update_time,
            });
        }
        for tag in differing(&current.tags, &experiment.tags) {
            changes.push(Change::ExperimentTagSet {
                experiment_id: id.clone(),
                tag,
            });
        }
        match (current.lifecycle_stage, experiment.lifecycle_stage) {
            (LifecycleStage::Active, LifecycleStage::Deleted) => changes.push(Change::ExperimentDeleted {
                experiment_id: id.clone(),
                time: experiment.last_update_time,
            }),
            (LifecycleStage::Deleted, LifecycleStage::Active) => changes.push(Change::ExperimentRestored {
                experiment_id: id.clone(),
                time: experiment.last_update_time,
            }),
            _ => {}
        }
        Ok(Some(Plan {
            target_id: id,
            artifact_uri: String::new(),
            created: false,
            changes,
        }))
    }

    /// `<name> (from <host>)`, then numbered, for `--on-conflict rename`.
    async fn free_experiment_name(&self, ws: &WorkspaceRef, name: &str, source: &str) -> StoreResult<String> {
        let from = source_label(source);
        for attempt in 1..=100 {
            let candidate = if attempt == 1 {
                format!("{name} (from {from})")
            } else {
                format!("{name} (from {from}) {attempt}")
            };
            if load::experiment_by_name(&self.pool, &ws.workspace_id, &candidate)
                .await?
                .is_none()
            {
                return Ok(candidate);
            }
        }
        Err(invalid(format!(
            "No free name for experiment '{name}' after 100 attempts"
        )))
    }

    async fn plan_run(
        &self,
        ws: &WorkspaceRef,
        origin: Option<&Origin>,
        run: Run,
        metrics: Vec<Metric>,
        complete: bool,
    ) -> StoreResult<Option<Plan>> {
        // A run stays active until its copy completes: its artifacts are
        // uploaded through the proxy, which writes only to active runs.
        let wanted_stage = if complete {
            run.info.lifecycle_stage
        } else {
            LifecycleStage::Active
        };
        if metrics.len() > tandem_core::transfer::HISTORY_CHUNK {
            return Err(invalid(format!(
                "A run's history comes in chunks of at most {} points; this one has {}",
                tandem_core::transfer::HISTORY_CHUNK,
                metrics.len()
            )));
        }
        for (index, tag) in run.data.tags.iter().enumerate() {
            rules::validate_run_tag(tag, &format!("tags[{index}]"))?;
        }
        for param in &run.data.params {
            rules::validate_param(param, "params")?;
        }
        for metric in &metrics {
            rules::validate_metric(metric, "metrics")?;
        }
        let existing = match origin {
            Some(origin) => load::run(&self.pool, &ws.workspace_id, &origin.target_id).await?,
            None => None,
        };
        let mut changes = Vec::new();
        let Some(current) = existing else {
            let experiment = load::experiment(&self.pool, &ws.workspace_id, &run.info.experiment_id)
                .await?
                .ok_or_else(|| {
                    not_found(format!(
                        "No Experiment with id={} exists here: copy the run's experiment first",
                        run.info.experiment_id
                    ))
                })?;
            let wanted = run.info.run_id.clone();
            let run_id = if valid_id(&wanted) && load::run_info(&self.pool, &wanted).await?.is_none() {
                wanted
            } else {
                ids::new_run_id()
            };
            let artifact_uri = append_to_uri(&experiment.artifact_location, &[&run_id, "artifacts"]);
            changes.extend(run_arrival(
                &run,
                &run_id,
                &experiment.experiment_id,
                &artifact_uri,
                metrics,
            ));
            if wanted_stage == LifecycleStage::Deleted {
                changes.push(Change::RunDeleted {
                    run_id: run_id.clone(),
                    time: self.now(),
                });
            }
            return Ok(Some(Plan {
                target_id: run_id,
                artifact_uri,
                created: true,
                changes,
            }));
        };
        let run_id = current.info.run_id.clone();
        let tags = differing(&current.data.tags, &run.data.tags);
        let params = differing(&current.data.params, &run.data.params);
        if !tags.is_empty() || !params.is_empty() {
            changes.push(Change::RunDataLogged {
                run_id: run_id.clone(),
                metrics: Vec::new(),
                params,
                tags,
            });
        }
        let source_tags: HashSet<&str> = run.data.tags.iter().map(|tag| tag.key.as_str()).collect();
        for tag in &current.data.tags {
            if !source_tags.contains(tag.key.as_str()) {
                changes.push(Change::RunTagDeleted {
                    run_id: run_id.clone(),
                    key: tag.key.clone(),
                });
            }
        }
        push_inputs_outputs(&mut changes, &run_id, &run, Some(&current));
        if current.info.status != run.info.status
            || current.info.end_time != run.info.end_time
            || current.info.run_name != run.info.run_name
        {
            changes.push(Change::RunUpdated {
                run_id: run_id.clone(),
                status: Some(run.info.status),
                end_time: run.info.end_time,
                run_name: (current.info.run_name != run.info.run_name && !run.info.run_name.is_empty())
                    .then(|| run.info.run_name.clone()),
            });
        }
        if !metrics.is_empty() {
            let held = self.points_held(&run_id, &metrics).await?;
            let fresh: Vec<Metric> = metrics
                .into_iter()
                .filter(|metric| !held.contains(&point_key(metric)))
                .collect();
            push_points(&mut changes, &run_id, fresh);
        }
        match (current.info.lifecycle_stage, wanted_stage) {
            (LifecycleStage::Active, LifecycleStage::Deleted) => changes.push(Change::RunDeleted {
                run_id: run_id.clone(),
                time: self.now(),
            }),
            (LifecycleStage::Deleted, LifecycleStage::Active) => changes.push(Change::RunRestored {
                run_id: run_id.clone(),
            }),
            _ => {}
        }
        Ok(Some(Plan {
            target_id: run_id,
            artifact_uri: current.info.artifact_uri,
            created: false,
            changes,
        }))
    }

    /// The points of `metrics`' keys the run already holds. Read through
    /// the read pool (around sqlx's `Any` rows): a changed run copied
    /// again has its whole history compared, and decoding it row by row
    /// through `Any` was most of an incremental pass's time at the target.
    async fn points_held(&self, run_id: &str, metrics: &[Metric]) -> StoreResult<HashSet<PointKey>> {
        let keys: HashSet<&str> = metrics.iter().map(|metric| metric.key.as_str()).collect();
        let mut held = HashSet::new();
        for key in keys {
            let points = self
                .read_pool
                .page(run_id, key, super::history::Start::First, i64::MAX)
                .await?;
            held.extend(points.iter().map(|point| point_key(&point.metric(key, run_id))));
        }
        Ok(held)
    }

    async fn plan_logged_model(
        &self,
        ws: &WorkspaceRef,
        origin: Option<&Origin>,
        model: LoggedModel,
    ) -> StoreResult<Option<Plan>> {
        rules::validate_logged_model_name(&model.info.name)?;
        for param in &model.data.params {
            rules::validate_param(param, "params")?;
        }
        for tag in &model.info.tags {
            rules::validate_run_tag(tag, "tags")?;
        }
        let existing = match origin {
            Some(origin) => load::logged_models_where(
                &self.pool,
                &ws.workspace_id,
                "AND m.model_id = $2",
                std::slice::from_ref(&origin.target_id),
            )
            .await?
            .into_iter()
            .next(),
            None => None,
        };
        let info = model.info;
        let mut changes = Vec::new();
        let Some(current) = existing else {
            let experiment = load::experiment(&self.pool, &ws.workspace_id, &info.experiment_id)
                .await?
                .ok_or_else(|| {
                    not_found(format!(
                        "No Experiment with id={} exists here: copy the logged model's experiment first",
                        info.experiment_id
                    ))
                })?;
            let taken: Option<String> =
                sqlx::query_scalar("SELECT model_id FROM logged_models WHERE model_id = $1")
                    .bind(&info.model_id)
                    .fetch_optional(&self.pool)
                    .await?;
            let model_id = if valid_id(&info.model_id) && taken.is_none() {
                info.model_id.clone()
            } else {
                ids::new_logged_model_id()
            };
            let artifact_uri =
                append_to_uri(&experiment.artifact_location, &["models", &model_id, "artifacts"]);
            changes.extend(logged_model_arrival(
                &info,
                &model.data.params,
                &model_id,
                &experiment.experiment_id,
                &artifact_uri,
            ));
            return Ok(Some(Plan {
                target_id: model_id,
                artifact_uri,
                created: true,
                changes,
            }));
        };
        let model_id = current.info.model_id.clone();
        // Deleted here, live at the source (restored there, or the copy
        // deleted by hand): a copy follows the source.
        if current.info.lifecycle_stage == LifecycleStage::Deleted
            && info.lifecycle_stage == LifecycleStage::Active
        {
            changes.push(Change::LoggedModelRestored {
                model_id: model_id.clone(),
                time: self.now(),
            });
        }
        let tags = differing(&current.info.tags, &info.tags);
        if !tags.is_empty() {
            changes.push(Change::LoggedModelTagsSet {
                model_id: model_id.clone(),
                tags,
                time: info.last_updated_timestamp_ms,
            });
        }
        let params = differing(&current.data.params, &model.data.params);
        if !params.is_empty() {
            changes.push(Change::LoggedModelParamsLogged {
                model_id: model_id.clone(),
                params,
                time: info.last_updated_timestamp_ms,
            });
        }
        if current.info.status != info.status || current.info.status_message != info.status_message {
            changes.push(Change::LoggedModelUpdated {
                model_id: model_id.clone(),
                status: info.status,
                status_message: info.status_message.clone(),
                time: info.last_updated_timestamp_ms,
            });
        }
        Ok(Some(Plan {
            target_id: model_id,
            artifact_uri: current.info.artifact_uri,
            created: false,
            changes,
        }))
    }

    async fn plan_registered_model(
        &self,
        ws: &WorkspaceRef,
        origin: Option<&Origin>,
        source: &str,
        model: RegisteredModel,
        versions: Vec<ModelVersion>,
        on_conflict: OnConflict,
    ) -> StoreResult<Option<Plan>> {
        rules::validate_model_name(&model.name)?;
        for tag in model
            .tags
            .iter()
            .chain(versions.iter().flat_map(|version| version.tags.iter()))
        {
            rules::validate_registry_tag(tag)?;
        }
        for alias in &model.aliases {
            rules::validate_alias_name(&alias.alias)?;
        }
        let mut numbers = HashSet::new();
        for version in &versions {
            let number = rules::parse_model_version(&version.version)?;
            if !numbers.insert(number) {
                return Err(invalid(format!(
                    "Registered model '{}' lists version {number} twice",
                    model.name
                )));
            }
            if canonical_stage(&version.current_stage).is_none() {
                return Err(invalid(format!(
                    "Invalid Model Version stage: {}. Value must be one of None, Staging, Production, Archived.",
                    version.current_stage
                )));
            }
        }
        let mut existing = match origin {
            Some(origin) => self.registered_model_here(ws, &origin.target_id).await?,
            None => None,
        };
        let mut name = model.name.clone();
        if existing.is_none() {
            if let Some(clash) = self.registered_model_here(ws, &name).await? {
                match on_conflict {
                    OnConflict::Refuse => {
                        return Err(StoreError::Domain(Error::already_exists(format!(
                            "Registered model '{name}' exists in workspace '{}' and was not copied from {source}: \
                             pass --on-conflict merge to copy into it, rename to copy beside it, or skip to leave it out",
                            ws.name
                        ))))
                    }
                    OnConflict::Skip => return Ok(None),
                    OnConflict::Merge => existing = Some(clash),
                    OnConflict::Rename => {
                        let from = source_label(source);
                        let mut attempt = 1;
                        loop {
                            let candidate = if attempt == 1 {
                                format!("{name}-from-{from}")
                            } else {
                                format!("{name}-from-{from}-{attempt}")
                            };
                            if self.registered_model_here(ws, &candidate).await?.is_none() {
                                name = candidate;
                                break;
                            }
                            attempt += 1;
                            if attempt > 100 {
                                return Err(invalid(format!("No free name for registered model '{name}'")));
                            }
                        }
                        rules::validate_model_name(&name)?;
                    }
                }
            }
        }
        let mut changes = Vec::new();
        let created = existing.is_none();
        let (current_versions, current_aliases) = match &existing {
            None => {
                changes.push(Change::RegisteredModelCreated {
                    name: name.clone(),
                    description: model.description.clone(),
                    user_id: model.user_id.clone(),
                    tags: model.tags.clone(),
                    time: model.creation_timestamp,
                });
                (HashMap::new(), Vec::new())
            }
            Some(current) => {
                name = current.name.clone();
                if current.description != model.description {
                    changes.push(Change::RegisteredModelUpdated {
                        name: name.clone(),
                        description: model.description.clone(),
                        time: model.last_updated_timestamp,
                    });
                }
                for tag in differing(&current.tags, &model.tags) {
                    changes.push(Change::RegisteredModelTagSet {
                        name: name.clone(),
                        tag,
                    });
                }
                let versions = load::model_versions_where(
                    &self.pool,
                    &ws.workspace_id,
                    "AND v.name = $2",
                    std::slice::from_ref(&name),
                )
                .await?;
                (
                    versions
                        .into_iter()
                        .map(|version| (version.version.clone(), version))
                        .collect::<HashMap<_, _>>(),
                    current.aliases.clone(),
                )
            }
        };
        let mut sorted = versions;
        sorted.sort_by_key(|version| version.version.parse::<i64>().unwrap_or(i64::MAX));
        for version in &sorted {
            self.plan_version(
                ws,
                &name,
                version,
                current_versions.get(&version.version),
                &mut changes,
            )
            .await?;
        }
        for alias in &model.aliases {
            let held = current_aliases
                .iter()
                .any(|have| have.alias == alias.alias && have.version == alias.version);
            if !held {
                changes.push(Change::RegisteredModelAliasSet {
                    name: name.clone(),
                    alias: alias.alias.clone(),
                    version: alias.version.clone(),
                });
            }
        }
        if !changes.is_empty() {
            // The source's last update time, which every change above kept
            // at or below.
            changes.push(Change::RegisteredModelUpdated {
                name: name.clone(),
                description: model.description.clone(),
                time: model.last_updated_timestamp,
            });
        }
        Ok(Some(Plan {
            target_id: name,
            artifact_uri: String::new(),
            created,
            changes,
        }))
    }

    async fn plan_version(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &ModelVersion,
        current: Option<&ModelVersion>,
        changes: &mut Vec<Change>,
    ) -> StoreResult<()> {
        let stage = canonical_stage(&version.current_stage).unwrap_or("None");
        let Some(current) = current else {
            if !version.run_id.is_empty() && load::run_info(&self.pool, &version.run_id).await?.is_none() {
                return Err(not_found(format!(
                    "Version {} of '{name}' was made from run {}, which is not here: copy its run first",
                    version.version, version.run_id
                )));
            }
            let mut storage_location = version.source.clone();
            if !version.model_id.is_empty() || version.source.starts_with("models:/m-") {
                let model_id = if version.model_id.is_empty() {
                    version
                        .source
                        .trim_start_matches("models:/")
                        .trim_end_matches('/')
                } else {
                    version.model_id.as_str()
                };
                let logged = self.logged_model_in(ws, model_id).await.map_err(|_| {
                    not_found(format!(
                        "Version {} of '{name}' was made from logged model {model_id}, which is not here: copy it first",
                        version.version
                    ))
                })?;
                if version.source.starts_with("models:/") {
                    storage_location = logged.info.artifact_uri.clone();
                }
            }
            changes.extend(version_arrival(name, version, storage_location));
            return Ok(());
        };
        if current.current_stage != stage {
            changes.push(Change::ModelVersionStageSet {
                name: name.to_string(),
                version: version.version.clone(),
                stage: stage.to_string(),
                archived_versions: Vec::new(),
                time: version.last_updated_timestamp,
            });
        }
        for tag in differing(&current.tags, &version.tags) {
            changes.push(Change::ModelVersionTagSet {
                name: name.to_string(),
                version: version.version.clone(),
                tag,
            });
        }
        if current.description != version.description
            || current.last_updated_timestamp < version.last_updated_timestamp
        {
            changes.push(Change::ModelVersionUpdated {
                name: name.to_string(),
                version: version.version.clone(),
                description: version.description.clone(),
                time: version.last_updated_timestamp,
            });
        }
        Ok(())
    }

    async fn registered_model_here(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> StoreResult<Option<RegisteredModel>> {
        Ok(load::registered_models_where(
            &self.pool,
            &ws.workspace_id,
            "AND m.name = $2",
            &[name.to_string()],
        )
        .await?
        .into_iter()
        .next())
    }
}

/// A key and value, as tags and params both are.
trait KeyValue: Clone {
    fn key(&self) -> &str;
    fn value(&self) -> &str;
}

impl KeyValue for Tag {
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
}

impl KeyValue for Param {
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
}

/// The entries of `wanted` that `have` lacks or holds with another value.
fn differing<T: KeyValue>(have: &[T], wanted: &[T]) -> Vec<T> {
    let have: HashMap<&str, &str> = have.iter().map(|entry| (entry.key(), entry.value())).collect();
    wanted
        .iter()
        .filter(|entry| have.get(entry.key()) != Some(&entry.value()))
        .cloned()
        .collect()
}

/// An origin from its columns: source, kind, source id, target id,
/// digest, time.
fn origin_row(row: &mut impl Columns) -> StoreResult<Origin> {
    let kind = row.text(1)?;
    Ok(Origin {
        source: row.text(0)?,
        kind: ObjectKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown kind of copied object '{kind}'")))?,
        source_id: row.text(2)?,
        target_id: row.text(3)?,
        digest: row.text(4)?,
        time: row.int(5)?,
    })
}

/// The host of a source URI, for names made for `--on-conflict rename`.
fn source_label(source: &str) -> String {
    let rest = source.split_once("://").map_or(source, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or(rest);
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Whether an id from another server can be kept here as it is: MLflow's
/// run and model ids are hex (logged models with `m-`), and an id becomes
/// a path segment of the artifact store.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

type PointKey = (String, i64, i64, u64, String, String, String);

fn point_key(metric: &Metric) -> PointKey {
    let bits = if metric.value.is_nan() {
        f64::NAN.to_bits()
    } else {
        metric.value.to_bits()
    };
    (
        metric.key.clone(),
        metric.step,
        metric.timestamp,
        bits,
        metric.model_id.clone().unwrap_or_default(),
        metric.dataset_name.clone().unwrap_or_default(),
        metric.dataset_digest.clone().unwrap_or_default(),
    )
}

/// The changes that create `run` here as `run_id`, in `experiment_id`
/// with its artifacts under `artifact_uri`, with `metrics` (its whole
/// history or a first chunk of it): everything but its deletion, which
/// callers time themselves.
pub(super) fn run_arrival(
    run: &Run,
    run_id: &str,
    experiment_id: &str,
    artifact_uri: &str,
    metrics: Vec<Metric>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut tags = run.data.tags.clone();
    if !tags.iter().any(|tag| tag.key == RUN_NAME_TAG) && !run.info.run_name.is_empty() {
        tags.push(Tag::new(RUN_NAME_TAG, run.info.run_name.clone()));
    }
    changes.push(Change::RunCreated {
        run_id: run_id.to_string(),
        experiment_id: experiment_id.to_string(),
        run_name: run.info.run_name.clone(),
        user_id: run.info.user_id.clone(),
        start_time: run.info.start_time,
        artifact_uri: artifact_uri.to_string(),
        tags,
    });
    if !run.data.params.is_empty() {
        changes.push(Change::RunDataLogged {
            run_id: run_id.to_string(),
            metrics: Vec::new(),
            params: run.data.params.clone(),
            tags: Vec::new(),
        });
    }
    push_inputs_outputs(&mut changes, run_id, run, None);
    changes.push(Change::RunUpdated {
        run_id: run_id.to_string(),
        status: Some(run.info.status),
        end_time: run.info.end_time,
        run_name: None,
    });
    push_points(&mut changes, run_id, metrics);
    changes
}

/// The changes that create logged model `info` here as `model_id`.
pub(super) fn logged_model_arrival(
    info: &LoggedModelInfo,
    params: &[Param],
    model_id: &str,
    experiment_id: &str,
    artifact_uri: &str,
) -> Vec<Change> {
    vec![
        Change::LoggedModelCreated {
            model_id: model_id.to_string(),
            experiment_id: experiment_id.to_string(),
            name: info.name.clone(),
            artifact_uri: artifact_uri.to_string(),
            status: info.status,
            creator_id: info.creator_id.clone(),
            model_type: info.model_type.clone().filter(|kind| !kind.is_empty()),
            source_run_id: info.source_run_id.clone().filter(|id| !id.is_empty()),
            tags: info.tags.clone(),
            params: params.to_vec(),
            time: info.creation_timestamp_ms,
        },
        Change::LoggedModelUpdated {
            model_id: model_id.to_string(),
            status: info.status,
            status_message: info.status_message.clone(),
            time: info.last_updated_timestamp_ms,
        },
    ]
}

/// The changes that create `version` of registered model `name` here,
/// its files at `storage_location`.
pub(super) fn version_arrival(name: &str, version: &ModelVersion, storage_location: String) -> Vec<Change> {
    let stage = canonical_stage(&version.current_stage).unwrap_or("None");
    let mut changes = Vec::new();
    changes.push(Change::ModelVersionCreated {
        name: name.to_string(),
        version: version.version.clone(),
        source: version.source.clone(),
        storage_location,
        run_id: version.run_id.clone(),
        run_link: version.run_link.clone(),
        description: version.description.clone(),
        user_id: version.user_id.clone(),
        model_id: version.model_id.clone(),
        status: version.status,
        tags: version.tags.clone(),
        time: version.creation_timestamp,
    });
    if stage != "None" {
        changes.push(Change::ModelVersionStageSet {
            name: name.to_string(),
            version: version.version.clone(),
            stage: stage.to_string(),
            archived_versions: Vec::new(),
            time: version.last_updated_timestamp,
        });
    }
    if version.last_updated_timestamp > version.creation_timestamp {
        changes.push(Change::ModelVersionUpdated {
            name: name.to_string(),
            version: version.version.clone(),
            description: version.description.clone(),
            time: version.last_updated_timestamp,
        });
    }
    changes
}

fn push_points(changes: &mut Vec<Change>, run_id: &str, metrics: Vec<Metric>) {
    let mut metrics = metrics;
    for metric in &mut metrics {
        metric.run_id = None;
    }
    for chunk in metrics.chunks(POINTS_PER_CHANGE) {
        changes.push(Change::RunDataLogged {
            run_id: run_id.to_string(),
            metrics: chunk.to_vec(),
            params: Vec::new(),
            tags: Vec::new(),
        });
    }
}

/// The run's dataset inputs, model inputs and outputs the target lacks.
pub(super) fn push_inputs_outputs(changes: &mut Vec<Change>, run_id: &str, run: &Run, current: Option<&Run>) {
    let datasets: Vec<DatasetInput> = run
        .inputs
        .dataset_inputs
        .iter()
        .filter(|input| current.is_none_or(|current| !current.inputs.dataset_inputs.contains(input)))
        .cloned()
        .collect();
    let models: Vec<ModelInput> = run
        .inputs
        .model_inputs
        .iter()
        .filter(|input| current.is_none_or(|current| !current.inputs.model_inputs.contains(input)))
        .cloned()
        .collect();
    if !datasets.is_empty() || !models.is_empty() {
        changes.push(Change::RunInputsLogged {
            run_id: run_id.to_string(),
            datasets,
            models,
        });
    }
    let outputs: Vec<ModelOutput> = run
        .outputs
        .model_outputs
        .iter()
        .filter(|output| current.is_none_or(|current| !current.outputs.model_outputs.contains(output)))
        .cloned()
        .collect();
    if !outputs.is_empty() {
        changes.push(Change::RunOutputsLogged {
            run_id: run_id.to_string(),
            models: outputs,
        });
    }
}
