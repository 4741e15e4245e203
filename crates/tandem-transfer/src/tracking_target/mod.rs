//! Writing a source into an MLflow tracking server: `tandem export
//! --workspace W --to <TRACKING_URI>` (an `mlflow server`, or any server
//! speaking MLflow's REST API with its artifact proxy).
//!
//! MLflow's API writes an object piece by piece and chooses ids and most
//! times itself, so what comes across differs from an import into Tandem:
//! - kept: experiments' names, tags and lifecycle; runs' names, status,
//!   start and end times, user, params, tags, parent links (rewritten),
//!   complete metric histories (NaN and ±Inf too), dataset inputs,
//!   logged-model inputs and outputs, artifacts byte for byte; logged
//!   models' names, types, params, tags, status and artifacts; registered
//!   models' descriptions and tags, and versions under their own numbers
//!   (a gap is made by creating and deleting a placeholder version, which
//!   MLflow's numbering counts), with stages, aliases, tags, descriptions
//!   and sources pointing at the copies.
//! - not kept, MLflow sets them: the ids of experiments, runs and logged
//!   models; creation and update times of experiments, logged models,
//!   registered models and versions.
//!
//! Every experiment, run, logged model and registered model copied carries
//! the tag `tandem.origin` (`{"source", "id", "digest"}`). A later export
//! finds its copies by it, leaves alone what did not change, finishes what
//! an interrupted export left half-written (a run or logged model gets its
//! digest only once complete) and writes only the difference: missing
//! metric points, params and files; changed tags, status, versions.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_core::model::{Experiment, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, Run, Tag};
use tandem_core::transfer::{ImportAction, ObjectKind, OnConflict};

use crate::copy::{
    check_held, normalize_logged_model, normalize_run, object_digest, proxied_path, proxy_url, send_artifact,
    Copied, CopyOptions, Owner, Progress, Report,
};
use crate::endpoint::Endpoint;
use crate::select::{needed_runs, select_experiments, select_registered_models, select_runs};
use crate::source::{encode_segment, Listing, Source, TrackingSource};
use crate::TransferError;

mod registry;

/// The tag naming where a copied object came from.
pub const ORIGIN_TAG: &str = "tandem.origin";
/// The tag of a version made only to keep a gap in the numbering.
const PLACEHOLDER_TAG: &str = "tandem.placeholder";
/// MLflow's limits for one `log-batch`.
const METRICS_PER_BATCH: usize = 1000;
const PARAMS_PER_BATCH: usize = 100;
const TAGS_PER_BATCH: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OriginTag {
    source: String,
    id: String,
    /// The digest of what was copied; empty until the copy is complete.
    #[serde(default)]
    digest: String,
}

impl OriginTag {
    fn tag(&self) -> Tag {
        Tag {
            key: ORIGIN_TAG.to_string(),
            value: serde_json::to_string(self).expect("origins encode"),
        }
    }
}

/// The origin a target object's tags name, when it came from `source`.
fn origin_of(tags: &[Tag], source: &str) -> Option<OriginTag> {
    tags.iter()
        .find(|tag| tag.key == ORIGIN_TAG)
        .and_then(|tag| serde_json::from_str::<OriginTag>(&tag.value).ok())
        .filter(|origin| origin.source == source)
}

/// The tags of `wanted` whose value `held` lacks or differs on (the origin
/// tag aside: it is written last).
fn changed_tags(wanted: &[Tag], held: &[Tag]) -> Vec<Tag> {
    let held: HashMap<&str, &str> = held
        .iter()
        .map(|tag| (tag.key.as_str(), tag.value.as_str()))
        .collect();
    wanted
        .iter()
        .filter(|tag| tag.key != ORIGIN_TAG && held.get(tag.key.as_str()) != Some(&tag.value.as_str()))
        .cloned()
        .collect()
}

fn tag_list(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|tag| json!({"key": tag.key, "value": tag.value}))
            .collect(),
    )
}

/// A metric point as `log-batch` takes it, its logged model mapped.
fn point(metric: &Metric, models: &HashMap<String, Copied>) -> Value {
    let mut metric = metric.clone();
    metric.run_id = None;
    if let Some(model) = metric.model_id.as_ref().and_then(|id| models.get(id)) {
        metric.model_id = Some(model.target_id.clone());
    }
    serde_json::to_value(&metric).expect("metrics encode")
}

/// A point's identity in a history (NaN compared by its bits).
fn point_key(metric: &Metric) -> (i64, i64, u64) {
    let value = if metric.value.is_nan() {
        f64::NAN
    } else {
        metric.value
    };
    (metric.step, metric.timestamp, value.to_bits())
}

/// A run or a logged model, as [`Writer::triage`] sees it.
trait Copyable {
    fn id(&self) -> &str;
    fn artifact_uri(&self) -> &str;
    fn tags(&self) -> &[Tag];
}

impl Copyable for Run {
    fn id(&self) -> &str {
        &self.info.run_id
    }
    fn artifact_uri(&self) -> &str {
        &self.info.artifact_uri
    }
    fn tags(&self) -> &[Tag] {
        &self.data.tags
    }
}

impl Copyable for LoggedModel {
    fn id(&self) -> &str {
        &self.info.model_id
    }
    fn artifact_uri(&self) -> &str {
        &self.info.artifact_uri
    }
    fn tags(&self) -> &[Tag] {
        &self.info.tags
    }
}

/// A run or logged model to write, with what it was compared by.
struct Pending<T> {
    object: T,
    listing: Listing,
    digest: String,
    existing: Option<T>,
}

struct Writer<'a> {
    source: &'a dyn Source,
    target: &'a Endpoint,
    /// The target read as a source: its experiments, runs, histories, files.
    reader: TrackingSource,
    options: &'a CopyOptions,
    progress: &'a (dyn Fn(&Progress) + Sync),
    experiments: Vec<Experiment>,
    runs: HashMap<String, Copied>,
    models: HashMap<String, Copied>,
    /// Deleted at the source: deleted at the target once every version
    /// that needs them exists.
    doomed_runs: Vec<String>,
    doomed_experiments: Vec<String>,
    report: Report,
}

/// Copies `source` into the MLflow tracking server `target`.
pub async fn copy_to_tracking(
    source: &dyn Source,
    target: &Endpoint,
    options: &CopyOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Report, TransferError> {
    let started = Instant::now();
    let mut writer = Writer {
        source,
        target,
        reader: TrackingSource::new(target.clone()),
        options,
        progress,
        experiments: Vec::new(),
        runs: HashMap::new(),
        models: HashMap::new(),
        doomed_runs: Vec::new(),
        doomed_experiments: Vec::new(),
        report: Report {
            source: options.source_key.clone(),
            workspace: target.base().to_string(),
            ..Report::default()
        },
    };
    writer.experiments = writer.reader.experiments(true).await?;
    let registered = select_registered_models(source, options).await?;
    let needed = needed_runs(&registered);
    let selected = select_experiments(source, options).await?;
    let total = selected.len() as u64;
    for (done, (experiment, whole)) in selected.into_iter().enumerate() {
        writer.tick("experiments", done as u64, total);
        let source_id = experiment.experiment_id.clone();
        if let Err(error) = writer.copy_experiment(experiment, whole, &needed).await {
            writer.report.fail(ObjectKind::Experiment, &source_id, &error)?;
        }
    }
    writer.tick("experiments", total, total);
    let held = writer.reader.registered_models(&[]).await?;
    let total = registered.len() as u64;
    for (done, (model, versions)) in registered.into_iter().enumerate() {
        writer.tick("registered models", done as u64, total);
        let name = model.name.clone();
        if let Err(error) = writer.copy_registered_model(model, versions, &held).await {
            writer.report.fail(ObjectKind::RegisteredModel, &name, &error)?;
        }
    }
    writer.tick("registered models", total, total);
    writer.delete_what_was_deleted().await?;
    writer.report.seconds = started.elapsed().as_secs_f64();
    Ok(writer.report)
}

impl Writer<'_> {
    fn tick(&self, phase: &'static str, done: u64, total: u64) {
        (self.progress)(&Progress {
            phase,
            done,
            total,
            bytes: self.report.artifact_bytes,
        });
    }

    fn origin(&self, id: &str, digest: &str) -> OriginTag {
        OriginTag {
            source: self.options.source_key.clone(),
            id: id.to_string(),
            digest: digest.to_string(),
        }
    }

    async fn post(&self, route: &str, body: Value) -> Result<Value, TransferError> {
        self.target
            .post_json(&format!("api/2.0/mlflow/{route}"), &body)
            .await
    }

    async fn call(&self, method: Method, route: &str, body: Value) -> Result<Value, TransferError> {
        self.target
            .call_json(method, &format!("api/2.0/mlflow/{route}"), &body)
            .await
    }

    /// A name clash the options do not resolve, as the target's refusal.
    fn clash(&self, what: &str, name: &str) -> TransferError {
        TransferError::Api {
            url: self.target.base().to_string(),
            status: 409,
            code: "RESOURCE_ALREADY_EXISTS".to_string(),
            message: format!(
                "{what} '{name}' exists there and was not copied from {}: pass --on-conflict merge to copy into it, rename to copy beside it, or skip to leave it out",
                self.options.source_key
            ),
        }
    }

    /// `<name> (from <source host>)`, then numbered, free among `taken`.
    fn free_name(&self, name: &str, taken: impl Fn(&str) -> bool) -> String {
        let host = url::Url::parse(&self.options.source_key)
            .ok()
            .and_then(|url| url.host_str().map(str::to_string))
            .unwrap_or_else(|| "elsewhere".to_string());
        let base = format!("{name} (from {host})");
        let mut candidate = base.clone();
        let mut number = 2;
        while taken(&candidate) {
            candidate = format!("{base} {number}");
            number += 1;
        }
        candidate
    }

    /// The target's copy of `experiment` (made now if there is none), and
    /// whether it was made now; None when a clash is to be skipped.
    async fn target_experiment(
        &mut self,
        experiment: &Experiment,
    ) -> Result<Option<(Experiment, bool)>, TransferError> {
        let key = &self.options.source_key;
        if let Some(found) = self.experiments.iter().find(|held| {
            origin_of(&held.tags, key).is_some_and(|origin| origin.id == experiment.experiment_id)
        }) {
            return Ok(Some((found.clone(), false)));
        }
        let mut name = experiment.name.clone();
        if let Some(clash) = self.experiments.iter().find(|held| held.name == name) {
            // Both sides' default experiment is the same one.
            let default = experiment.experiment_id == "0" && clash.experiment_id == "0";
            match self.options.on_conflict {
                _ if default => return Ok(Some((clash.clone(), false))),
                OnConflict::Merge => return Ok(Some((clash.clone(), false))),
                OnConflict::Skip => return Ok(None),
                OnConflict::Refuse => return Err(self.clash("experiment", &name)),
                OnConflict::Rename => {
                    name = self.free_name(&name, |candidate| {
                        self.experiments.iter().any(|held| held.name == candidate)
                    });
                }
            }
        }
        let mut tags: Vec<Tag> = experiment
            .tags
            .iter()
            .filter(|tag| tag.key != ORIGIN_TAG)
            .cloned()
            .collect();
        tags.push(self.origin(&experiment.experiment_id, "").tag());
        let answer = self
            .post(
                "experiments/create",
                json!({"name": name, "tags": tag_list(&tags)}),
            )
            .await?;
        let experiment_id = answer["experiment_id"]
            .as_str()
            .ok_or_else(|| TransferError::Decode("experiments/create without an experiment_id".to_string()))?
            .to_string();
        let created = Experiment {
            experiment_id,
            name,
            artifact_location: String::new(),
            lifecycle_stage: LifecycleStage::Active,
            last_update_time: 0,
            creation_time: 0,
            tags,
        };
        self.experiments.push(created.clone());
        Ok(Some((created, true)))
    }

    async fn copy_experiment(
        &mut self,
        experiment: Experiment,
        whole: bool,
        needed: &HashSet<String>,
    ) -> Result<(), TransferError> {
        let source_id = experiment.experiment_id.clone();
        let Some((target, created)) = self.target_experiment(&experiment).await? else {
            self.report.experiments.skipped += 1;
            return Ok(());
        };
        let target_id = target.experiment_id.clone();
        let mut changed = false;
        let mut tags = changed_tags(&experiment.tags, &target.tags);
        if origin_of(&target.tags, &self.options.source_key).is_none() {
            tags.push(self.origin(&source_id, "").tag());
        }
        for tag in tags {
            changed = true;
            self.post(
                "experiments/set-experiment-tag",
                json!({"experiment_id": target_id, "key": tag.key, "value": tag.value}),
            )
            .await?;
        }

        // What differs from the copies the target holds.
        let runs = select_runs(self.source, self.options, &source_id, whole, needed).await?;
        let mut held_runs: HashMap<String, Run> = HashMap::new();
        let mut held_models: HashMap<String, LoggedModel> = HashMap::new();
        if !created {
            for run in self.reader.runs(&target_id, None).await? {
                if let Some(origin) = origin_of(&run.data.tags, &self.options.source_key) {
                    held_runs.insert(origin.id, run);
                }
            }
            for model in self.reader.logged_models(&target_id).await?.into_iter().flatten() {
                if let Some(origin) = origin_of(&model.info.tags, &self.options.source_key) {
                    held_models.insert(origin.id, model);
                }
            }
        }
        let mut pending_runs = Vec::new();
        for mut run in runs {
            normalize_run(&mut run);
            let listing = self.source.run_artifacts(&run.info.run_id).await?;
            let existing = held_runs.remove(&run.info.run_id);
            let pending = Pending {
                digest: object_digest("run", &run, &listing),
                object: run,
                listing,
                existing,
            };
            pending_runs.extend(self.triage(ObjectKind::Run, pending));
        }
        let mut pending_models = Vec::new();
        for listed in self.source.logged_models(&source_id).await? {
            let mut model = match listed {
                Ok(model) => model,
                Err(error) => {
                    self.report.fail(ObjectKind::LoggedModel, "?", &error)?;
                    continue;
                }
            };
            normalize_logged_model(&mut model);
            let listing = self.source.model_artifacts(&model.info.model_id).await?;
            let existing = held_models.remove(&model.info.model_id);
            let pending = Pending {
                digest: object_digest("model", &model, &listing),
                object: model,
                listing,
                existing,
            };
            pending_models.extend(self.triage(ObjectKind::LoggedModel, pending));
        }

        // A deleted copy takes no writes: it is restored for them, and
        // deleted again at the end when the source's is deleted.
        let deleted_here = target.lifecycle_stage == LifecycleStage::Deleted;
        let deleted_there = experiment.lifecycle_stage == LifecycleStage::Deleted;
        let writes = !pending_runs.is_empty() || !pending_models.is_empty();
        if deleted_here && (writes || !deleted_there) {
            self.post("experiments/restore", json!({"experiment_id": target_id}))
                .await?;
            changed = true;
        }
        if deleted_there && (!deleted_here || writes) {
            self.doomed_experiments.push(target_id.clone());
            changed = true;
        }
        let action = match (created, changed) {
            (true, _) => ImportAction::Created,
            (false, true) => ImportAction::Updated,
            (false, false) => ImportAction::Unchanged,
        };
        self.report.experiments.count(action);

        // Runs first (logged models name them), then logged models (metric
        // points and outputs name those), then each run's content.
        let total = pending_runs.len() as u64;
        let mut made = Vec::new();
        for (done, pending) in pending_runs.into_iter().enumerate() {
            self.tick("runs", done as u64, total);
            let id = pending.object.info.run_id.clone();
            match self.ensure_run(&pending, &target_id).await {
                Ok(copied) => made.push((pending, copied)),
                Err(error) => self.report.fail(ObjectKind::Run, &id, &error)?,
            }
        }
        for pending in pending_models {
            let id = pending.object.info.model_id.clone();
            if let Err(error) = self.copy_logged_model(pending, &target_id).await {
                self.report.fail(ObjectKind::LoggedModel, &id, &error)?;
            }
        }
        for (done, (pending, copied)) in made.into_iter().enumerate() {
            self.tick("runs", done as u64, total);
            let id = pending.object.info.run_id.clone();
            if let Err(error) = self.fill_run(pending, copied).await {
                self.report.fail(ObjectKind::Run, &id, &error)?;
            }
        }
        self.tick("runs", total, total);
        Ok(())
    }

    /// The target's run for `pending`: the one it holds, or a new one with
    /// the source's name, user, start time and tags.
    async fn ensure_run(
        &mut self,
        pending: &Pending<Run>,
        experiment_id: &str,
    ) -> Result<Copied, TransferError> {
        let run = &pending.object;
        let copied = match &pending.existing {
            Some(held) => Copied {
                target_id: held.info.run_id.clone(),
                source_uri: run.info.artifact_uri.clone(),
                target_uri: Some(held.info.artifact_uri.clone()),
            },
            None => {
                let mut tags = self.run_tags(run);
                tags.push(self.origin(&run.info.run_id, "").tag());
                let mut body = json!({
                    "experiment_id": experiment_id,
                    "run_name": run.info.run_name,
                    "user_id": run.info.user_id,
                    "tags": tag_list(&tags),
                });
                if let Some(start) = run.info.start_time {
                    body["start_time"] = json!(start);
                }
                let answer = self.post("runs/create", body).await?;
                let info = &answer["run"]["info"];
                let (Some(target_id), Some(uri)) = (info["run_id"].as_str(), info["artifact_uri"].as_str())
                else {
                    return Err(TransferError::Decode(
                        "runs/create without a run id or artifact URI".to_string(),
                    ));
                };
                Copied {
                    target_id: target_id.to_string(),
                    source_uri: run.info.artifact_uri.clone(),
                    target_uri: Some(uri.to_string()),
                }
            }
        };
        self.runs.insert(run.info.run_id.clone(), copied.clone());
        Ok(copied)
    }

    /// The run's tags with its parent link pointing at the parent's copy.
    fn run_tags(&self, run: &Run) -> Vec<Tag> {
        run.data
            .tags
            .iter()
            .filter(|tag| tag.key != ORIGIN_TAG)
            .map(|tag| match self.runs.get(&tag.value) {
                Some(parent) if tag.key == "mlflow.parentRunId" => Tag {
                    key: tag.key.clone(),
                    value: parent.target_id.clone(),
                },
                _ => tag.clone(),
            })
            .collect()
    }

    fn model_id(&self, id: &str) -> String {
        self.models
            .get(id)
            .map(|model| model.target_id.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// Everything of a run the target lacks; its digest last.
    async fn fill_run(&mut self, pending: Pending<Run>, copied: Copied) -> Result<(), TransferError> {
        let Pending {
            object: run,
            listing,
            digest,
            existing,
        } = pending;
        let source_id = run.info.run_id.clone();
        let run_id = copied.target_id.clone();
        if existing
            .as_ref()
            .is_some_and(|held| held.info.lifecycle_stage == LifecycleStage::Deleted)
        {
            self.post("runs/restore", json!({"run_id": run_id})).await?;
        }
        let held_params: HashSet<&str> = existing
            .iter()
            .flat_map(|held| &held.data.params)
            .map(|param| param.key.as_str())
            .collect();
        let params: Vec<Value> = run
            .data
            .params
            .iter()
            .filter(|param| !held_params.contains(param.key.as_str()))
            .map(|param| json!({"key": param.key, "value": param.value}))
            .collect();
        for batch in params.chunks(PARAMS_PER_BATCH) {
            self.post("runs/log-batch", json!({"run_id": run_id, "params": batch}))
                .await?;
        }
        if let Some(held) = &existing {
            let tags = changed_tags(&self.run_tags(&run), &held.data.tags);
            for batch in tags.chunks(TAGS_PER_BATCH) {
                self.post(
                    "runs/log-batch",
                    json!({"run_id": run_id, "tags": tag_list(batch)}),
                )
                .await?;
            }
        }

        let held_keys: HashSet<&str> = existing
            .iter()
            .flat_map(|held| &held.data.metrics)
            .map(|metric| metric.key.as_str())
            .collect();
        for metric in &run.data.metrics {
            let mut history = self.source.history(&source_id, &metric.key).await?;
            if held_keys.contains(metric.key.as_str()) {
                let have: HashSet<(i64, i64, u64)> = self
                    .reader
                    .history(&run_id, &metric.key)
                    .await?
                    .iter()
                    .map(point_key)
                    .collect();
                history.retain(|point| !have.contains(&point_key(point)));
            }
            for batch in history.chunks(METRICS_PER_BATCH) {
                let points: Vec<Value> = batch.iter().map(|metric| point(metric, &self.models)).collect();
                self.post("runs/log-batch", json!({"run_id": run_id, "metrics": points}))
                    .await?;
                self.report.metric_points += batch.len() as u64;
            }
        }

        let inputs_of = |run: &Run| {
            let mut datasets: Vec<(String, String)> = run
                .inputs
                .dataset_inputs
                .iter()
                .map(|input| (input.dataset.name.clone(), input.dataset.digest.clone()))
                .collect();
            datasets.sort();
            datasets
        };
        let model_inputs: Vec<Value> = run
            .inputs
            .model_inputs
            .iter()
            .map(|input| json!({"model_id": self.model_id(&input.model_id)}))
            .collect();
        let held_inputs = existing.as_ref().map(inputs_of).unwrap_or_default();
        let held_model_inputs = existing.as_ref().map_or(0, |held| held.inputs.model_inputs.len());
        if inputs_of(&run) != held_inputs || run.inputs.model_inputs.len() != held_model_inputs {
            let mut body = json!({"run_id": run_id, "datasets": run.inputs.dataset_inputs});
            if !model_inputs.is_empty() {
                body["models"] = json!(model_inputs);
            }
            self.post("runs/log-inputs", body).await?;
        }
        if run.outputs.model_outputs.len()
            != existing
                .as_ref()
                .map_or(0, |held| held.outputs.model_outputs.len())
        {
            let outputs: Vec<Value> = run
                .outputs
                .model_outputs
                .iter()
                .map(|output| json!({"model_id": self.model_id(&output.model_id), "step": output.step}))
                .collect();
            self.post("runs/outputs", json!({"run_id": run_id, "models": outputs}))
                .await?;
        }

        if !listing.is_empty() {
            let held_files = match existing {
                Some(_) => self.reader.run_artifacts(&run_id).await?,
                None => Vec::new(),
            };
            let root = copied.target_uri.as_deref().unwrap_or_default();
            self.send_files(&listing, &held_files, root, Owner::Run(&source_id))
                .await?;
            self.check_files(&listing, &self.reader.run_artifacts(&run_id).await?)?;
        }

        let status_differs = existing.as_ref().is_none_or(|held| {
            held.info.status != run.info.status
                || held.info.end_time != run.info.end_time
                || held.info.run_name != run.info.run_name
        });
        if status_differs {
            let mut body =
                json!({"run_id": run_id, "status": run.info.status, "run_name": run.info.run_name});
            if let Some(end) = run.info.end_time {
                body["end_time"] = json!(end);
            }
            self.post("runs/update", body).await?;
        }
        let origin = self.origin(&source_id, &digest).tag();
        self.post(
            "runs/set-tag",
            json!({"run_id": run_id, "key": origin.key, "value": origin.value}),
        )
        .await?;
        if run.info.lifecycle_stage == LifecycleStage::Deleted {
            self.doomed_runs.push(run_id);
        }
        let action = match existing {
            Some(_) => ImportAction::Updated,
            None => ImportAction::Created,
        };
        self.report.runs.count(action);
        Ok(())
    }

    /// Uploads the files of `listing` the target lacks (by path and size)
    /// under the artifact root `root` (an `mlflow-artifacts:` URI).
    async fn send_files(
        &mut self,
        listing: &Listing,
        held: &Listing,
        root: &str,
        owner: Owner<'_>,
    ) -> Result<(), TransferError> {
        let Some(root) = proxied_path(root) else {
            return Err(TransferError::Integrity(format!(
                "the target keeps these artifacts at {root}, outside its artifact proxy (start `mlflow server` with --serve-artifacts, the default)"
            )));
        };
        let held: HashMap<&str, i64> = held.iter().map(|(path, size)| (path.as_str(), *size)).collect();
        let base = self.target.url("api/2.0/mlflow-artifacts/artifacts");
        for (path, size) in listing {
            if held.get(path.as_str()) == Some(size) {
                continue;
            }
            let url = proxy_url(&base, &format!("{root}/{path}"))?;
            let (length, _) = send_artifact(self.source, owner, path, *size, self.target, &url).await?;
            self.report.artifacts_copied += 1;
            self.report.artifact_bytes += length as u64;
        }
        Ok(())
    }

    /// Every file of `listing` is at the target with its size (MLflow keeps
    /// no digest: the bytes were hashed and counted as they went).
    fn check_files(&self, listing: &Listing, held: &Listing) -> Result<(), TransferError> {
        let held: HashMap<&str, (i64, Option<&str>)> = held
            .iter()
            .map(|(path, size)| (path.as_str(), (*size, None)))
            .collect();
        check_held(
            listing.iter().map(|(path, size)| (path.as_str(), (*size, None))),
            &held,
        )
    }

    /// The pending copy, or None (counted unchanged, its copy remembered)
    /// when the target's copy carries the current digest.
    fn triage<T: Copyable>(&mut self, kind: ObjectKind, pending: Pending<T>) -> Option<Pending<T>> {
        let current = pending.existing.as_ref().filter(|held| {
            origin_of(held.tags(), &self.options.source_key).map(|origin| origin.digest)
                == Some(pending.digest.clone())
        });
        let Some(current) = current else {
            return Some(pending);
        };
        let copied = Copied {
            target_id: current.id().to_string(),
            source_uri: pending.object.artifact_uri().to_string(),
            target_uri: Some(current.artifact_uri().to_string()),
        };
        let source_id = pending.object.id().to_string();
        match kind {
            ObjectKind::LoggedModel => {
                self.report.logged_models.unchanged += 1;
                self.models.insert(source_id, copied);
            }
            _ => {
                self.report.runs.unchanged += 1;
                self.runs.insert(source_id, copied);
            }
        }
        None
    }

    async fn copy_logged_model(
        &mut self,
        pending: Pending<LoggedModel>,
        experiment_id: &str,
    ) -> Result<(), TransferError> {
        let Pending {
            object: model,
            listing,
            digest,
            existing,
        } = pending;
        let source_id = model.info.model_id.clone();
        let (model_id, artifact_uri, held_status) = match &existing {
            Some(held) => {
                let model_id = held.info.model_id.clone();
                let tags = changed_tags(&model.info.tags, &held.info.tags);
                if !tags.is_empty() {
                    self.call(
                        Method::PATCH,
                        &format!("logged-models/{}/tags", encode_segment(&model_id)),
                        json!({"tags": tag_list(&tags)}),
                    )
                    .await?;
                }
                let held_params: HashSet<&str> =
                    held.data.params.iter().map(|param| param.key.as_str()).collect();
                let params: Vec<Value> = model
                    .data
                    .params
                    .iter()
                    .filter(|param| !held_params.contains(param.key.as_str()))
                    .map(|param| json!({"key": param.key, "value": param.value}))
                    .collect();
                if !params.is_empty() {
                    self.post(
                        &format!("logged-models/{}/params", encode_segment(&model_id)),
                        json!({"model_id": model_id, "params": params}),
                    )
                    .await?;
                }
                (model_id, held.info.artifact_uri.clone(), held.info.status)
            }
            None => {
                let mut tags: Vec<Tag> = model
                    .info
                    .tags
                    .iter()
                    .filter(|tag| tag.key != ORIGIN_TAG)
                    .cloned()
                    .collect();
                tags.push(self.origin(&source_id, "").tag());
                let mut body = json!({
                    "experiment_id": experiment_id,
                    "name": model.info.name,
                    "tags": tag_list(&tags),
                    "params": model.data.params.iter().map(|param| json!({"key": param.key, "value": param.value})).collect::<Vec<_>>(),
                });
                if let Some(kind) = &model.info.model_type {
                    body["model_type"] = json!(kind);
                }
                if let Some(run) = &model.info.source_run_id {
                    body["source_run_id"] = json!(self
                        .runs
                        .get(run)
                        .map(|copied| copied.target_id.clone())
                        .unwrap_or_else(|| run.clone()));
                }
                let answer = self.post("logged-models", body).await?;
                let info = &answer["model"]["info"];
                let (Some(model_id), Some(uri)) = (info["model_id"].as_str(), info["artifact_uri"].as_str())
                else {
                    return Err(TransferError::Decode(
                        "logged-models without a model id or artifact URI".to_string(),
                    ));
                };
                (
                    model_id.to_string(),
                    uri.to_string(),
                    LoggedModelStatus::LoggedModelPending,
                )
            }
        };
        if !listing.is_empty() {
            let held_files = match existing {
                Some(_) => self.reader.model_artifacts(&model_id).await?,
                None => Vec::new(),
            };
            self.send_files(&listing, &held_files, &artifact_uri, Owner::Model(&source_id))
                .await?;
            self.check_files(&listing, &self.reader.model_artifacts(&model_id).await?)?;
        }
        if model.info.status != held_status
            && matches!(
                model.info.status,
                LoggedModelStatus::LoggedModelReady | LoggedModelStatus::LoggedModelUploadFailed
            )
        {
            self.call(
                Method::PATCH,
                &format!("logged-models/{}", encode_segment(&model_id)),
                json!({"model_id": model_id, "status": model.info.status}),
            )
            .await?;
        }
        let origin = self.origin(&source_id, &digest).tag();
        self.call(
            Method::PATCH,
            &format!("logged-models/{}/tags", encode_segment(&model_id)),
            json!({"tags": tag_list(&[origin])}),
        )
        .await?;
        self.report.logged_models.count(match existing {
            Some(_) => ImportAction::Updated,
            None => ImportAction::Created,
        });
        self.models.insert(
            source_id,
            Copied {
                target_id: model_id,
                source_uri: model.info.artifact_uri.clone(),
                target_uri: Some(artifact_uri),
            },
        );
        Ok(())
    }

    /// Runs and experiments deleted at the source, deleted at the target
    /// now that every version made from them exists.
    async fn delete_what_was_deleted(&mut self) -> Result<(), TransferError> {
        for run_id in std::mem::take(&mut self.doomed_runs) {
            if let Err(error) = self.post("runs/delete", json!({"run_id": run_id})).await {
                self.report.fail(ObjectKind::Run, &run_id, &error)?;
            }
        }
        for experiment_id in std::mem::take(&mut self.doomed_experiments) {
            if let Err(error) = self
                .post("experiments/delete", json!({"experiment_id": experiment_id}))
                .await
            {
                self.report.fail(ObjectKind::Experiment, &experiment_id, &error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: key.to_string(),
            value: value.to_string(),
        }
    }

    #[test]
    fn origins_are_read_only_for_their_source() {
        let origin = OriginTag {
            source: "http://a".to_string(),
            id: "7".to_string(),
            digest: "d".to_string(),
        };
        let tags = vec![tag("x", "1"), origin.tag()];
        assert_eq!(origin_of(&tags, "http://a"), Some(origin));
        assert_eq!(origin_of(&tags, "http://b"), None);
        assert_eq!(origin_of(&[tag(ORIGIN_TAG, "not json")], "http://a"), None);
    }

    #[test]
    fn changed_tags_leave_out_equal_ones_and_the_origin() {
        let wanted = vec![tag("a", "1"), tag("b", "2"), tag(ORIGIN_TAG, "{}")];
        let held = vec![tag("a", "1"), tag("b", "3")];
        assert_eq!(changed_tags(&wanted, &held), vec![tag("b", "2")]);
    }

    #[test]
    fn nan_points_are_the_same_point() {
        let metric = |value: f64| Metric {
            key: "k".to_string(),
            value,
            timestamp: 5,
            step: 1,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        };
        assert_eq!(point_key(&metric(f64::NAN)), point_key(&metric(-f64::NAN)));
        assert_ne!(point_key(&metric(1.0)), point_key(&metric(2.0)));
        let encoded = point(&metric(f64::INFINITY), &HashMap::new());
        assert_eq!(encoded["value"], json!("Infinity"));
    }
}
