//! `tandem export --to <bundle URL>`: a source's selected objects written
//! as a bundle, the manifest last.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tandem_artifacts::{ArtifactKey, ArtifactStore};

use super::format::{
    blob_path, experiment_path, history_path, logged_model_path, registered_model_path, run_path, BlobRef,
    Counts, ExperimentRecord, HistoryRecord, LoggedModelRecord, Manifest, RecordDigest,
    RegisteredModelRecord, Selection, BUNDLE_FORMAT, KIND, MANIFEST,
};
use super::{open_storage, storage_error};
use crate::copy::{CopyOptions, Progress};
use crate::select::{needed_runs, select_experiments, select_registered_models, select_runs};
use crate::source::{Listing, Source};
use crate::TransferError;

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub bundle: String,
    pub source: String,
    pub format: u32,
    pub counts: Counts,
    /// Artifact files written (a blob shared by several counts once in
    /// `counts.blobs`).
    pub artifacts: u64,
    pub seconds: f64,
}

struct Writer<'a> {
    url: &'a str,
    storage: ArtifactStore,
    source: &'a dyn Source,
    progress: &'a (dyn Fn(&Progress) + Sync),
    records: BTreeMap<String, RecordDigest>,
    blobs: HashSet<String>,
    counts: Counts,
    artifacts: u64,
    incoming: u64,
}

/// Writes `source`'s objects chosen by `options` (experiments, registered
/// models, run filter, deleted ones) as a bundle at `to`, which must not
/// hold one already.
pub async fn export(
    source: &dyn Source,
    to: &str,
    options: &CopyOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<ExportReport, TransferError> {
    let started = Instant::now();
    let storage = open_storage(to)?;
    let manifest_key = key(MANIFEST)?;
    match storage.head(&manifest_key).await {
        Ok(Some(_)) => {
            return Err(TransferError::Exists(format!(
                "{to} already holds a bundle: export to an empty location (or delete that bundle first)"
            )))
        }
        Ok(None) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(storage_error(to, "the manifest", error)),
    }
    let mut writer = Writer {
        url: to,
        storage,
        source,
        progress,
        records: BTreeMap::new(),
        blobs: HashSet::new(),
        counts: Counts::default(),
        artifacts: 0,
        incoming: 0,
    };
    let registered = select_registered_models(source, options).await?;
    let needed_runs = needed_runs(&registered);
    let experiments = select_experiments(source, options).await?;
    let total = experiments.len() as u64;
    let mut experiment_ids = Vec::new();
    for (done, (mut experiment, whole)) in experiments.into_iter().enumerate() {
        writer.tick("experiments", done as u64, total);
        let runs = select_runs(source, options, &experiment.experiment_id, whole, &needed_runs).await?;
        let mut run_ids = Vec::with_capacity(runs.len());
        for run in runs {
            run_ids.push(run.info.run_id.clone());
            writer.run(run).await?;
        }
        let mut model_ids = Vec::new();
        for model in source.logged_models(&experiment.experiment_id).await? {
            let model = model?;
            model_ids.push(model.info.model_id.clone());
            writer.logged_model(model).await?;
        }
        experiment.tags.sort_by(|a, b| a.key.cmp(&b.key));
        let id = experiment.experiment_id.clone();
        writer
            .record(
                &experiment_path(&id),
                &ExperimentRecord {
                    experiment,
                    runs: run_ids,
                    logged_models: model_ids,
                },
            )
            .await?;
        writer.counts.experiments += 1;
        experiment_ids.push(id);
    }
    writer.tick("experiments", total, total);
    let mut numbers = Vec::new();
    for (number, (model, versions)) in registered.into_iter().enumerate() {
        let number = number as u64;
        writer.counts.registered_models += 1;
        writer.counts.model_versions += versions.len() as u64;
        writer
            .record(
                &registered_model_path(number),
                &RegisteredModelRecord { model, versions },
            )
            .await?;
        numbers.push(number);
    }
    let manifest = Manifest {
        format: BUNDLE_FORMAT,
        kind: KIND.to_string(),
        created: now_millis(),
        written_by: format!("tandem {}", env!("CARGO_PKG_VERSION")),
        source: source.key(),
        selection: Selection {
            experiments: options.experiments.clone(),
            registered_models: options.registered_models.clone(),
            run_filter: options.run_filter.clone(),
            include_deleted: options.include_deleted,
        },
        counts: writer.counts.clone(),
        experiments: experiment_ids,
        registered_models: numbers,
        records: std::mem::take(&mut writer.records),
    };
    let text = serde_json::to_vec_pretty(&manifest).expect("manifests encode");
    writer
        .storage
        .put_bytes(&manifest_key, Bytes::from(text))
        .await
        .map_err(|error| storage_error(to, MANIFEST, error))?;
    Ok(ExportReport {
        bundle: to.to_string(),
        source: manifest.source,
        format: BUNDLE_FORMAT,
        counts: manifest.counts,
        artifacts: writer.artifacts,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Whose artifacts are being written.
#[derive(Clone, Copy)]
enum Whose<'a> {
    Run(&'a str),
    Model(&'a str),
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn key(path: &str) -> Result<ArtifactKey, TransferError> {
    ArtifactKey::parse(path).map_err(|error| TransferError::Integrity(error.to_string()))
}

impl Writer<'_> {
    fn tick(&self, phase: &'static str, done: u64, total: u64) {
        (self.progress)(&Progress {
            phase,
            done,
            total,
            bytes: self.counts.blob_bytes,
        });
    }

    async fn record(&mut self, path: &str, value: &impl Serialize) -> Result<(), TransferError> {
        let text = serde_json::to_vec(value).map_err(|error| TransferError::Decode(error.to_string()))?;
        let digest = RecordDigest {
            size: text.len() as u64,
            sha256: hex::encode(Sha256::digest(&text)),
        };
        self.storage
            .put_bytes(&key(path)?, Bytes::from(text))
            .await
            .map_err(|error| storage_error(self.url, path, error))?;
        self.records.insert(path.to_string(), digest);
        Ok(())
    }

    async fn run(&mut self, mut run: tandem_core::model::Run) -> Result<(), TransferError> {
        let id = run.info.run_id.clone();
        run.data.tags.sort_by(|a, b| a.key.cmp(&b.key));
        run.data.params.sort_by(|a, b| a.key.cmp(&b.key));
        run.data.metrics.sort_by(|a, b| a.key.cmp(&b.key));
        let mut history = HistoryRecord::new();
        for metric in &run.data.metrics {
            let points = self.source.history(&id, &metric.key).await?;
            self.counts.metric_points += points.len() as u64;
            history.insert(metric.key.clone(), points);
        }
        let listing = self.source.run_artifacts(&id).await?;
        let artifacts = self.blobs(&listing, Whose::Run(&id)).await?;
        self.record(&history_path(&id), &history).await?;
        self.record(&run_path(&id), &super::format::RunRecord { run, artifacts })
            .await?;
        self.counts.runs += 1;
        Ok(())
    }

    async fn logged_model(
        &mut self,
        mut model: tandem_core::model::LoggedModel,
    ) -> Result<(), TransferError> {
        let id = model.info.model_id.clone();
        model.info.tags.sort_by(|a, b| a.key.cmp(&b.key));
        model.data.params.sort_by(|a, b| a.key.cmp(&b.key));
        let listing = self.source.model_artifacts(&id).await?;
        let artifacts = self.blobs(&listing, Whose::Model(&id)).await?;
        self.record(&logged_model_path(&id), &LoggedModelRecord { model, artifacts })
            .await?;
        self.counts.logged_models += 1;
        Ok(())
    }

    /// Streams each file into the bundle under its SHA-256 (once per
    /// distinct content), checking its size against the listing.
    async fn blobs(&mut self, listing: &Listing, whose: Whose<'_>) -> Result<Vec<BlobRef>, TransferError> {
        let mut refs = Vec::with_capacity(listing.len());
        for (path, size) in listing {
            let stream = match whose {
                Whose::Run(id) => self.source.open_run_artifact(id, path).await?,
                Whose::Model(id) => self.source.open_model_artifact(id, path).await?,
            };
            // Written under a name of its own first: the blob's name is its
            // digest, known only once every byte went through.
            self.incoming += 1;
            let incoming = key(&format!("incoming/{}-{}", std::process::id(), self.incoming))?;
            let stream = stream.map_err(|error| std::io::Error::other(error.to_string()));
            let written = self
                .storage
                .put_stream(&incoming, Box::pin(stream), None)
                .await
                .map_err(|error| storage_error(self.url, &format!("artifact {path}"), error))?;
            if written.size != *size as u64 {
                let _ = self.storage.delete(&incoming).await;
                return Err(TransferError::Integrity(format!(
                    "artifact {path}: the source listed {size} bytes but sent {} (did it change during the export?)",
                    written.size
                )));
            }
            let blob = key(&blob_path(&written.sha256))?;
            if !self.blobs.contains(&written.sha256) {
                let held =
                    matches!(self.storage.head(&blob).await, Ok(Some(length)) if length == written.size);
                if !held {
                    self.storage
                        .copy(&incoming, &blob)
                        .await
                        .map_err(|error| storage_error(self.url, &format!("artifact {path}"), error))?;
                }
                self.blobs.insert(written.sha256.clone());
                self.counts.blobs += 1;
                self.counts.blob_bytes += written.size;
            }
            let _ = self.storage.delete(&incoming).await;
            self.artifacts += 1;
            refs.push(BlobRef {
                path: path.clone(),
                size: *size,
                sha256: written.sha256,
            });
            self.tick("artifacts", self.artifacts, 0);
        }
        Ok(refs)
    }
}
