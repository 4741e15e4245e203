//! The copy itself: read the source in MLflow's shapes, map ids, write each
//! object whole into the target, copy and verify artifacts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use tandem_core::model::{ArtifactEntry, LoggedModel, ModelVersion, RegisteredModel, Run};
use tandem_core::transfer::{
    digest_json, ImportAction, ImportOutcome, ImportRequest, ObjectKind, OnConflict, Origin, TransferObject,
    TRANSFER_FORMAT,
};

mod delete;
mod files;
mod runs;

use files::verify;
pub(crate) use files::{check_held, proxied_path, proxy_url, send_artifact, Owner};

use crate::endpoint::Endpoint;
use crate::select::{needed_runs, select_experiments, select_registered_models, select_runs};
use crate::source::{encode_segment, Listing, Source};
use crate::TransferError;

/// Experiments whose runs are being listed at the source at once.
const LISTINGS_AHEAD: usize = 3;
/// Runs planned (of any number of experiments) before they are written
/// together: a pass that changes a few runs in each of many experiments
/// writes them all at once, not an experiment at a time.
const WRITE_AT: usize = 512;

/// What to copy, and where.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// How the target names the source in its origins (the source's
    /// tracking URI, without credentials).
    pub source_key: String,
    /// The target workspace's name.
    pub workspace: String,
    pub on_conflict: OnConflict,
    /// Copy deleted experiments and runs too (as deleted). Runs a copied
    /// model version was made from come along deleted or not.
    pub include_deleted: bool,
    /// Only these experiments (names or ids); every one when empty.
    pub experiments: Vec<String>,
    /// Only these registered models (with the runs and logged models their
    /// versions need); every one when empty and no experiment is named.
    pub registered_models: Vec<String>,
    /// Only the runs this MLflow search filter selects (runs a copied
    /// model version was made from come along regardless).
    pub run_filter: Option<String>,
    /// Read the source and compare it with the target's origins, but write
    /// nothing: the report counts what a copy would create or update.
    pub dry_run: bool,
    /// Delete (softly) the target's copies of objects the source no longer
    /// holds (or holds deleted, unless deleted ones are copied too).
    pub delete: bool,
}

/// A step of the copy, for a progress bar.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
    pub bytes: u64,
}

/// What happened to the objects of one kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KindCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Copies deleted because the source no longer holds their original.
    pub deleted: u64,
}

impl KindCounts {
    pub(crate) fn count(&mut self, action: ImportAction) {
        match action {
            ImportAction::Created => self.created += 1,
            ImportAction::Updated => self.updated += 1,
            ImportAction::Unchanged => self.unchanged += 1,
            ImportAction::Skipped => self.skipped += 1,
        }
    }
}

/// One object that did not come across, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub source_id: String,
    pub message: String,
}

impl Report {
    /// Lists one object as failed, unless the failure is the whole side's
    /// (then the copy stops, saying where).
    pub(crate) fn fail(
        &mut self,
        kind: ObjectKind,
        source_id: &str,
        error: &TransferError,
    ) -> Result<(), TransferError> {
        if error.is_fatal() {
            return Err(error.stopped_at(&format!("{} {source_id}", kind.as_str())));
        }
        self.failures.push(Failure {
            kind: kind.as_str(),
            source_id: source_id.to_string(),
            message: error.to_string(),
        });
        match kind {
            ObjectKind::Experiment => self.experiments.failed += 1,
            ObjectKind::Run => self.runs.failed += 1,
            ObjectKind::LoggedModel => self.logged_models.failed += 1,
            ObjectKind::RegisteredModel => self.registered_models.failed += 1,
        }
        Ok(())
    }
}

/// The copy's summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub source: String,
    pub workspace: String,
    pub experiments: KindCounts,
    pub runs: KindCounts,
    pub logged_models: KindCounts,
    pub registered_models: KindCounts,
    pub model_versions: u64,
    pub metric_points: u64,
    pub artifacts_copied: u64,
    pub artifact_bytes: u64,
    pub failures: Vec<Failure>,
    /// `delete` was asked but the pass had failures, so nothing was deleted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deletions_withheld: bool,
    pub seconds: f64,
}

/// A copied run or logged model: its id and artifact root here, and its
/// artifact root at the source (to rewrite model version sources).
#[derive(Debug, Clone)]
pub(crate) struct Copied {
    pub(crate) target_id: String,
    pub(crate) source_uri: String,
    pub(crate) target_uri: Option<String>,
}

struct Copier<'a> {
    source: &'a dyn Source,
    target: &'a Endpoint,
    options: &'a CopyOptions,
    progress: &'a (dyn Fn(&Progress) + Sync),
    origins: HashMap<(ObjectKind, String), Origin>,
    /// What the source listed in this pass, for `delete`.
    seen: HashSet<(ObjectKind, String)>,
    experiments: HashMap<String, String>,
    runs: HashMap<String, Copied>,
    models: HashMap<String, Copied>,
    report: Report,
    /// Artifact bytes sent so far, for progress (the report counts each
    /// object's once it is written whole).
    streamed: AtomicU64,
    /// Runs planned and not yet written, of every experiment planned since
    /// the last write.
    pending_runs: Vec<runs::Planned>,
    /// Experiments (source id, target id) whose logged models are copied
    /// once their runs are written (a model names its run).
    pending_models: Vec<(String, String)>,
    runs_listed: u64,
    runs_done: u64,
}

/// Copies `source` into the target's workspace `options.workspace`.
pub async fn copy(
    source: &dyn Source,
    target: &Endpoint,
    options: &CopyOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Report, TransferError> {
    let started = Instant::now();
    let mut copier = Copier {
        source,
        target,
        options,
        progress,
        origins: HashMap::new(),
        seen: HashSet::new(),
        experiments: HashMap::new(),
        runs: HashMap::new(),
        models: HashMap::new(),
        report: Report {
            source: options.source_key.clone(),
            workspace: options.workspace.clone(),
            ..Report::default()
        },
        streamed: AtomicU64::new(0),
        pending_runs: Vec::new(),
        pending_models: Vec::new(),
        runs_listed: 0,
        runs_done: 0,
    };
    let phase = Instant::now();
    copier.load_origins().await?;
    tracing::debug!(
        origins = copier.origins.len(),
        ms = ms(phase),
        "read the target's origins"
    );
    // Registered models first as a reading: their versions name runs (even
    // deleted ones) and logged models that must come along.
    let phase = Instant::now();
    let registered = select_registered_models(source, options).await?;
    tracing::debug!(
        models = registered.len(),
        ms = ms(phase),
        "read the source's registered models"
    );
    let needed_runs = needed_runs(&registered);
    copier.copy_experiments(&needed_runs).await?;
    let phase = Instant::now();
    copier.copy_registered_models(registered).await?;
    tracing::debug!(ms = ms(phase), "copied the registered models");
    if options.delete {
        copier.delete_vanished().await?;
    }
    copier.report.seconds = started.elapsed().as_secs_f64();
    Ok(copier.report)
}

impl Copier<'_> {
    fn workspace_path(&self, rest: &str) -> String {
        format!(
            "api/tandem/v1/workspaces/{}/{rest}",
            encode_segment(&self.options.workspace)
        )
    }

    async fn load_origins(&mut self) -> Result<(), TransferError> {
        let path = self.workspace_path("import/origins");
        let answer: Value = self
            .target
            .get_json(&path, &[("source", self.options.source_key.clone())])
            .await?;
        let origins: Vec<Origin> = serde_json::from_value(answer["origins"].clone())
            .map_err(|error| TransferError::Decode(format!("origins: {error}")))?;
        for origin in origins {
            self.origins
                .insert((origin.kind, origin.source_id.clone()), origin);
        }
        Ok(())
    }

    fn unchanged(&self, kind: ObjectKind, source_id: &str, digest: &str) -> Option<String> {
        self.origins
            .get(&(kind, source_id.to_string()))
            .filter(|origin| origin.digest == digest)
            .map(|origin| origin.target_id.clone())
    }

    async fn import(
        &self,
        source_id: &str,
        digest: Option<String>,
        object: TransferObject,
    ) -> Result<(ImportOutcome, Vec<ArtifactEntry>), TransferError> {
        let request = ImportRequest {
            format: TRANSFER_FORMAT,
            source: self.options.source_key.clone(),
            source_id: source_id.to_string(),
            on_conflict: self.options.on_conflict,
            digest,
            object,
        };
        let body =
            serde_json::to_value(&request).map_err(|error| TransferError::Decode(error.to_string()))?;
        let answer: Value = self
            .target
            .post_json(&self.workspace_path("import"), &body)
            .await?;
        let outcome: ImportOutcome = serde_json::from_value(answer.clone())
            .map_err(|error| TransferError::Decode(format!("import answer: {error}")))?;
        let artifacts: Vec<ArtifactEntry> = match answer.get("artifacts") {
            Some(list) => serde_json::from_value(list.clone())
                .map_err(|error| TransferError::Decode(format!("import answer: {error}")))?,
            None => Vec::new(),
        };
        Ok((outcome, artifacts))
    }

    fn fail(
        &mut self,
        kind: ObjectKind,
        source_id: &str,
        error: &TransferError,
    ) -> Result<(), TransferError> {
        self.report.fail(kind, source_id, error)
    }

    /// A dry run's count of an object a copy would write: an update when
    /// the target holds an earlier copy of it, else a creation.
    fn would_copy(&mut self, kind: ObjectKind, source_id: &str) {
        let action = if self.origins.contains_key(&(kind, source_id.to_string())) {
            ImportAction::Updated
        } else {
            ImportAction::Created
        };
        match kind {
            ObjectKind::Experiment => self.report.experiments.count(action),
            ObjectKind::Run => self.report.runs.count(action),
            ObjectKind::LoggedModel => self.report.logged_models.count(action),
            ObjectKind::RegisteredModel => self.report.registered_models.count(action),
        }
    }

    fn tick(&self, phase: &'static str, done: u64, total: u64) {
        (self.progress)(&Progress {
            phase,
            done,
            total,
            bytes: self.streamed.load(Ordering::Relaxed),
        });
    }

    async fn copy_experiments(&mut self, needed_runs: &HashSet<String>) -> Result<(), TransferError> {
        let experiments = select_experiments(self.source, self.options).await?;
        let total = experiments.len() as u64;
        // The runs of the next experiments are listed while this one is
        // copied: a search is most of what a pass over an unchanged source
        // costs it, and a server answers several at once.
        let (source, options) = (self.source, self.options);
        let mut listings = futures::stream::iter(experiments.iter().map(|(experiment, whole)| {
            select_runs(source, options, &experiment.experiment_id, *whole, needed_runs)
        }))
        .buffered(LISTINGS_AHEAD);
        for (done, (mut experiment, _)) in experiments.clone().into_iter().enumerate() {
            self.tick("experiments", done as u64, total);
            let waited = Instant::now();
            let runs = listings.next().await.expect("a listing per experiment");
            let waited = ms(waited);
            experiment.tags.sort_by(|a, b| a.key.cmp(&b.key));
            experiment.artifact_location = String::new();
            let source_id = experiment.experiment_id.clone();
            self.seen.insert((ObjectKind::Experiment, source_id.clone()));
            let digest = digest_json(&serde_json::to_value(&experiment).expect("experiments encode"));
            let target_id = match self.unchanged(ObjectKind::Experiment, &source_id, &digest) {
                Some(target_id) => {
                    self.report.experiments.unchanged += 1;
                    target_id
                }
                None if self.options.dry_run => {
                    self.would_copy(ObjectKind::Experiment, &source_id);
                    source_id.clone()
                }
                None => match self
                    .import(
                        &source_id,
                        Some(digest),
                        TransferObject::Experiment { experiment },
                    )
                    .await
                {
                    Ok((outcome, _)) => {
                        self.report.experiments.count(outcome.action);
                        if outcome.action == ImportAction::Skipped {
                            continue;
                        }
                        outcome.target_id
                    }
                    Err(error) => {
                        self.fail(ObjectKind::Experiment, &source_id, &error)?;
                        continue;
                    }
                },
            };
            self.experiments.insert(source_id.clone(), target_id.clone());
            let runs = runs?;
            let listed = runs.len();
            // What a pass spends where, for `TANDEM_LOG=tandem_transfer=debug`.
            tracing::debug!(experiment = %source_id, runs = listed, waited_for_listing_ms = waited, "listed an experiment");
            self.plan_runs(runs, &target_id).await?;
            self.pending_models.push((source_id, target_id));
            if self.pending_runs.len() >= WRITE_AT {
                self.write_planned_experiments().await?;
            }
        }
        self.write_planned_experiments().await?;
        self.tick("experiments", total, total);
        Ok(())
    }

    /// Writes the runs planned so far, then the logged models of their
    /// experiments.
    async fn write_planned_experiments(&mut self) -> Result<(), TransferError> {
        let phase = Instant::now();
        let runs = self.pending_runs.len();
        self.write_pending().await?;
        let runs_ms = ms(phase);
        let phase = Instant::now();
        for (source, target) in std::mem::take(&mut self.pending_models) {
            self.copy_logged_models(&source, &target).await?;
        }
        tracing::debug!(
            runs,
            runs_ms,
            logged_models_ms = ms(phase),
            "wrote what was planned"
        );
        Ok(())
    }

    /// Whether a run or logged model needs no writing: the target holds it
    /// with this digest (counted unchanged), or the pass is a dry run
    /// (counted as what it would be). Either way it is remembered, for the
    /// versions that name it.
    fn settled(&mut self, kind: ObjectKind, source_id: &str, source_uri: &str, digest: &str) -> bool {
        let unchanged = self.unchanged(kind, source_id, digest);
        if unchanged.is_none() && !self.options.dry_run {
            return false;
        }
        match unchanged {
            Some(_) if kind == ObjectKind::Run => self.report.runs.unchanged += 1,
            Some(_) => self.report.logged_models.unchanged += 1,
            None => self.would_copy(kind, source_id),
        }
        let copied = Copied {
            target_id: unchanged.unwrap_or_else(|| source_id.to_string()),
            source_uri: source_uri.to_string(),
            target_uri: None,
        };
        match kind {
            ObjectKind::Run => self.runs.insert(source_id.to_string(), copied),
            _ => self.models.insert(source_id.to_string(), copied),
        };
        true
    }

    /// Copies the files the target lacks (by path and size) under `root`,
    /// hashing each as it streams; returns (path, size, sha256) of each.
    async fn copy_artifacts(
        &self,
        listing: &Listing,
        held: &[ArtifactEntry],
        root: &str,
        owner: Owner<'_>,
    ) -> Result<Vec<(String, i64, String)>, TransferError> {
        let held: HashMap<&str, i64> = held
            .iter()
            .map(|entry| (entry.path.as_str(), entry.size))
            .collect();
        let mut uploaded = Vec::new();
        for (path, size) in listing {
            if held.get(path.as_str()) == Some(size) {
                continue;
            }
            let target_url = self.artifact_url(&format!("{root}/{path}"))?;
            let (length, digest) =
                send_artifact(self.source, owner, path, *size, self.target, &target_url).await?;
            self.streamed.fetch_add(length as u64, Ordering::Relaxed);
            uploaded.push((path.clone(), length, digest));
        }
        Ok(uploaded)
    }

    fn artifact_url(&self, path: &str) -> Result<String, TransferError> {
        proxy_url(
            &self.target.url(&format!(
                "w/{}/api/2.0/mlflow-artifacts/artifacts",
                encode_segment(&self.options.workspace)
            )),
            path,
        )
    }

    async fn copy_logged_models(
        &mut self,
        source_experiment: &str,
        target_experiment: &str,
    ) -> Result<(), TransferError> {
        for listed in self.source.logged_models(source_experiment).await? {
            let model: LoggedModel = match listed {
                Ok(model) => model,
                Err(error) => {
                    self.fail(ObjectKind::LoggedModel, "?", &error)?;
                    continue;
                }
            };
            let source_id = model.info.model_id.clone();
            self.seen.insert((ObjectKind::LoggedModel, source_id.clone()));
            if let Err(error) = self.copy_logged_model(model, target_experiment).await {
                self.fail(ObjectKind::LoggedModel, &source_id, &error)?;
            }
        }
        Ok(())
    }

    async fn copy_logged_model(
        &mut self,
        mut model: LoggedModel,
        target_experiment: &str,
    ) -> Result<(), TransferError> {
        let source_id = model.info.model_id.clone();
        let source_uri = model.info.artifact_uri.clone();
        normalize_logged_model(&mut model);
        let listing = self.source.model_artifacts(&source_id).await?;
        let digest = object_digest("model", &model, &listing);
        if self.settled(ObjectKind::LoggedModel, &source_id, &source_uri, &digest) {
            return Ok(());
        }
        let mut target_model = model.clone();
        target_model.info.experiment_id = target_experiment.to_string();
        if let Some(origin) = self.origins.get(&(ObjectKind::LoggedModel, source_id.clone())) {
            target_model.info.model_id = origin.target_id.clone();
        }
        if let Some(run) = target_model
            .info
            .source_run_id
            .as_ref()
            .and_then(|id| self.runs.get(id))
        {
            target_model.info.source_run_id = Some(run.target_id.clone());
        }
        let (first, held) = self
            .import(
                &source_id,
                None,
                TransferObject::LoggedModel {
                    model: target_model.clone(),
                },
            )
            .await?;
        target_model.info.model_id = first.target_id.clone();
        let mut action = first.action;
        if !listing.is_empty() {
            let root = proxied_path(&first.artifact_uri).ok_or_else(|| {
                TransferError::Integrity(format!(
                    "logged model {}'s artifacts live at {}, outside the target's artifact proxy",
                    first.target_id, first.artifact_uri
                ))
            })?;
            let uploaded = self
                .copy_artifacts(&listing, &held, &root, Owner::Model(&source_id))
                .await?;
            if !uploaded.is_empty() {
                let (_, now_held) = self
                    .import(
                        &source_id,
                        None,
                        TransferObject::LoggedModel {
                            model: target_model.clone(),
                        },
                    )
                    .await?;
                verify(&uploaded, &now_held)?;
                self.report.artifacts_copied += uploaded.len() as u64;
                self.report.artifact_bytes += uploaded.iter().map(|(_, size, _)| *size as u64).sum::<u64>();
                if action == ImportAction::Unchanged {
                    action = ImportAction::Updated;
                }
            }
        }
        self.import(
            &source_id,
            Some(digest),
            TransferObject::LoggedModel { model: target_model },
        )
        .await?;
        self.report.logged_models.count(action);
        self.models.insert(
            source_id,
            Copied {
                target_id: first.target_id,
                source_uri,
                target_uri: Some(first.artifact_uri),
            },
        );
        Ok(())
    }

    async fn copy_registered_models(
        &mut self,
        registered: Vec<(RegisteredModel, Vec<ModelVersion>)>,
    ) -> Result<(), TransferError> {
        let total = registered.len() as u64;
        for (done, (model, versions)) in registered.into_iter().enumerate() {
            self.tick("registered models", done as u64, total);
            let source_id = model.name.clone();
            self.seen.insert((ObjectKind::RegisteredModel, source_id.clone()));
            if let Err(error) = self.copy_registered_model(model, versions).await {
                self.fail(ObjectKind::RegisteredModel, &source_id, &error)?;
            }
        }
        self.tick("registered models", total, total);
        Ok(())
    }

    async fn copy_registered_model(
        &mut self,
        model: RegisteredModel,
        mut versions: Vec<ModelVersion>,
    ) -> Result<(), TransferError> {
        let source_id = model.name.clone();
        for version in &mut versions {
            version.tags.sort_by(|a, b| a.key.cmp(&b.key));
            version.aliases.sort();
        }
        let digest = digest_json(&json!({"model": model, "versions": versions}));
        if self
            .unchanged(ObjectKind::RegisteredModel, &source_id, &digest)
            .is_some()
        {
            self.report.registered_models.unchanged += 1;
            return Ok(());
        }
        if self.options.dry_run {
            self.would_copy(ObjectKind::RegisteredModel, &source_id);
            self.report.model_versions += versions.len() as u64;
            return Ok(());
        }
        let mut mapped = Vec::with_capacity(versions.len());
        for mut version in versions {
            self.map_version(&mut version).await?;
            mapped.push(version);
        }
        let count = mapped.len() as u64;
        let (outcome, _) = self
            .import(
                &source_id,
                Some(digest),
                TransferObject::RegisteredModel {
                    model,
                    versions: mapped,
                },
            )
            .await?;
        self.report.registered_models.count(outcome.action);
        if outcome.action != ImportAction::Skipped {
            self.report.model_versions += count;
        }
        Ok(())
    }

    /// Points a version at the target's copies of its run and logged model.
    async fn map_version(&mut self, version: &mut ModelVersion) -> Result<(), TransferError> {
        if let Some(run) = self.runs.get(&version.run_id) {
            if run.target_uri.is_none() && version.source.starts_with(&run.source_uri) {
                let target_uri = self.target_run_uri(&run.target_id).await?;
                if let Some(run) = self.runs.get_mut(&version.run_id) {
                    run.target_uri = Some(target_uri);
                }
            }
        }
        rewrite_version(version, &self.runs, &self.models)
    }

    async fn target_run_uri(&self, run_id: &str) -> Result<String, TransferError> {
        let path = format!(
            "w/{}/api/2.0/mlflow/runs/get",
            encode_segment(&self.options.workspace)
        );
        let answer: Value = self
            .target
            .get_json(&path, &[("run_id", run_id.to_string())])
            .await?;
        answer["run"]["info"]["artifact_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| TransferError::Decode(format!("run {run_id} without an artifact URI")))
    }
}

/// A version as the target takes it: its run, logged model and source
/// rewritten to the target's copies (whose artifact roots are known).
pub(crate) fn rewrite_version(
    version: &mut ModelVersion,
    runs: &HashMap<String, Copied>,
    models: &HashMap<String, Copied>,
) -> Result<(), TransferError> {
    version.name.clear();
    let source = version.source.clone();
    if !version.run_id.is_empty() {
        let run = runs.get(&version.run_id).ok_or_else(|| {
            TransferError::Integrity(format!(
                "version {} was made from run {}, which was not copied",
                version.version, version.run_id
            ))
        })?;
        if let (Some(rest), Some(target_uri)) = (source.strip_prefix(&run.source_uri), &run.target_uri) {
            version.source = format!("{target_uri}{rest}");
        } else if let Some(rest) = source.strip_prefix(&format!("runs:/{}", version.run_id)) {
            version.source = format!("runs:/{}{rest}", run.target_id);
        }
        version.run_id = run.target_id.clone();
        version.run_link.clear();
    }
    // MLflow's version search leaves `model_id` out; a `models:/m-…` source
    // names the logged model (as the server that made it read it).
    if version.model_id.is_empty() {
        if let Some(named) = source.strip_prefix("models:/m-") {
            let named = named.trim_end_matches('/');
            if !named.contains('/') {
                version.model_id = format!("m-{named}");
            }
        }
    }
    if !version.model_id.is_empty() {
        let model = models.get(&version.model_id).ok_or_else(|| {
            TransferError::Integrity(format!(
                "version {} was made from logged model {}, which was not copied",
                version.version, version.model_id
            ))
        })?;
        if let Some(rest) = source.strip_prefix(&format!("models:/{}", version.model_id)) {
            version.source = format!("models:/{}{rest}", model.target_id);
        } else if let (Some(rest), Some(target_uri)) =
            (source.strip_prefix(&model.source_uri), model.target_uri.as_ref())
        {
            version.source = format!("{target_uri}{rest}");
        }
        version.model_id = model.target_id.clone();
    }
    Ok(())
}

/// A run as its digest sees it: tags, params and metrics in key order.
pub(crate) fn normalize_run(run: &mut Run) {
    run.data.tags.sort_by(|a, b| a.key.cmp(&b.key));
    run.data.params.sort_by(|a, b| a.key.cmp(&b.key));
    run.data.metrics.sort_by(|a, b| a.key.cmp(&b.key));
}

/// A logged model as its digest sees it: tags and params in key order;
/// registrations and metrics left out (they are the registry's and the
/// runs').
pub(crate) fn normalize_logged_model(model: &mut LoggedModel) {
    model.info.tags.sort_by(|a, b| a.key.cmp(&b.key));
    model.data.params.sort_by(|a, b| a.key.cmp(&b.key));
    model.info.registrations.clear();
    model.data.metrics.clear();
}

/// Milliseconds since `since`, for the phase timings logged at debug level.
pub(crate) fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// What a copy of a run or logged model is compared by.
pub(crate) fn object_digest(field: &str, object: &impl Serialize, listing: &Listing) -> String {
    digest_json(&json!({field: object, "artifacts": listing}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::parents_first;

    fn run(id: &str, parent: Option<&str>, start: i64) -> Run {
        let mut tags = Vec::new();
        if let Some(parent) = parent {
            tags.push(tandem_core::model::Tag::new("mlflow.parentRunId", parent));
        }
        serde_json::from_value(json!({
            "info": {"run_id": id, "run_uuid": id, "run_name": id, "experiment_id": "1", "status": "FINISHED",
                     "start_time": start, "artifact_uri": "", "lifecycle_stage": "active"},
            "data": {"tags": tags},
        }))
        .unwrap()
    }

    #[test]
    fn parents_come_before_their_children() {
        let runs = vec![
            run("c", Some("b"), 1),
            run("b", Some("a"), 2),
            run("a", None, 3),
            run("x", None, 0),
        ];
        let order: Vec<String> = parents_first(runs)
            .into_iter()
            .map(|run| run.info.run_id)
            .collect();
        assert_eq!(order, ["x", "a", "b", "c"]);
    }

    #[test]
    fn proxied_paths_and_segments() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/x").as_deref(),
            Some("1/x")
        );
        assert_eq!(proxied_path("s3://bucket/x"), None);
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn verification_names_the_differing_file() {
        let held = vec![ArtifactEntry {
            path: "a.txt".to_string(),
            size: 3,
            sha256: "x".to_string(),
            created_at: 0,
        }];
        assert!(verify(&[("a.txt".to_string(), 3, "x".to_string())], &held).is_ok());
        let error = verify(&[("a.txt".to_string(), 3, "y".to_string())], &held).unwrap_err();
        assert!(error.to_string().contains("a.txt"));
        assert!(verify(&[("b.txt".to_string(), 1, "z".to_string())], &held).is_err());
    }
}
