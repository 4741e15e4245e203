//! `tandem import --from <bundle URL>`: a bundle read as a [`Source`], each
//! record checked against the manifest and each blob against its name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tandem_artifacts::{ArtifactKey, ArtifactStore};
use tandem_core::model::{
    Experiment, LifecycleStage, LoggedModel, Metric, ModelVersion, RegisteredModel, Run,
};

use super::format::{
    blob_path, experiment_path, history_path, is_sha256, logged_model_path, registered_model_path, run_path,
    BlobRef, ExperimentRecord, HistoryRecord, LoggedModelRecord, Manifest, RegisteredModelRecord, RunRecord,
    BUNDLE_FORMAT, KIND, MANIFEST,
};
use super::{open_storage, storage_error};
use crate::source::{ByteStream, Listing, Source};
use crate::TransferError;

pub struct BundleSource {
    url: String,
    storage: ArtifactStore,
    manifest: Manifest,
    /// The artifacts of the runs and logged models read so far.
    artifacts: Mutex<HashMap<String, Vec<BlobRef>>>,
    /// The last run's histories: a copy asks for each key in turn.
    histories: Mutex<Option<(String, Arc<HistoryRecord>)>>,
}

impl BundleSource {
    /// Opens the bundle at `url`: its manifest must be there, of a format
    /// this build reads.
    pub async fn open(url: &str) -> Result<BundleSource, TransferError> {
        let storage = open_storage(url)?;
        let bytes = match read_all(&storage, MANIFEST).await {
            Ok(bytes) => bytes,
            Err(error) if error.is_not_found() => {
                return Err(TransferError::Bundle(format!(
                    "{url} holds no bundle: there is no {MANIFEST} (an export that did not finish leaves none; export again)"
                )))
            }
            Err(error) => return Err(storage_error(url, MANIFEST, error)),
        };
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|error| TransferError::Bundle(format!("{url}: {MANIFEST} is not JSON: {error}")))?;
        if value.get("kind").and_then(Value::as_str) != Some(KIND) {
            return Err(TransferError::Bundle(format!(
                "{url}: {MANIFEST} does not describe a Tandem bundle"
            )));
        }
        match value.get("format").and_then(Value::as_u64) {
            Some(format) if format > BUNDLE_FORMAT as u64 => {
                return Err(TransferError::Bundle(format!(
                    "{url} is a bundle of format {format}, newer than this tandem reads ({BUNDLE_FORMAT} at most): upgrade tandem to import it"
                )))
            }
            Some(_) => {}
            None => {
                return Err(TransferError::Bundle(format!(
                    "{url}: {MANIFEST} has no format number"
                )))
            }
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|error| TransferError::Bundle(format!("{url}: {MANIFEST} is damaged: {error}")))?;
        Ok(BundleSource {
            url: url.to_string(),
            storage,
            manifest,
            artifacts: Mutex::default(),
            histories: Mutex::default(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads every record, checking each against the manifest: an import
    /// does this first, so a damaged record stops it before it writes.
    pub async fn check_records(&self) -> Result<u64, TransferError> {
        for path in self.manifest.records.keys() {
            self.record_bytes(path).await?;
        }
        Ok(self.manifest.records.len() as u64)
    }

    /// Reads every record and every blob, checking each against the
    /// manifest and its name; calls `tick(done, total)` as it goes.
    /// Returns the number of blobs read.
    pub async fn verify(&self, tick: &(dyn Fn(u64, u64) + Sync)) -> Result<u64, TransferError> {
        let mut blobs = std::collections::BTreeSet::new();
        let records: Vec<&String> = self.manifest.records.keys().collect();
        for path in &records {
            let bytes = self.record_bytes(path).await?;
            let collect = |artifacts: &[BlobRef], blobs: &mut std::collections::BTreeSet<(String, i64)>| {
                for artifact in artifacts {
                    blobs.insert((artifact.sha256.clone(), artifact.size));
                }
            };
            if path.starts_with("runs/") {
                collect(&parse::<RunRecord>(path, &bytes)?.artifacts, &mut blobs);
            } else if path.starts_with("logged-models/") {
                collect(&parse::<LoggedModelRecord>(path, &bytes)?.artifacts, &mut blobs);
            }
        }
        let total = blobs.len() as u64;
        for (done, (sha256, size)) in blobs.iter().enumerate() {
            tick(done as u64, total);
            let stream = self.open_blob(&format!("blob {sha256}"), sha256, *size).await?;
            stream.try_for_each(|_| async { Ok(()) }).await?;
        }
        tick(total, total);
        Ok(total)
    }

    async fn record_bytes(&self, path: &str) -> Result<Bytes, TransferError> {
        let Some(expected) = self.manifest.records.get(path) else {
            return Err(TransferError::Bundle(format!(
                "{}: the manifest lists no record {path}: the bundle is damaged",
                self.url
            )));
        };
        let bytes = read_all(&self.storage, path).await.map_err(|error| {
            if error.is_not_found() {
                TransferError::Bundle(format!(
                    "{}: record {path} is missing: the bundle is damaged",
                    self.url
                ))
            } else {
                storage_error(&self.url, path, error)
            }
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != expected.size || digest != expected.sha256 {
            return Err(TransferError::Bundle(format!(
                "{}: record {path} is damaged: {} bytes with SHA-256 {digest}, the manifest says {} bytes with {}",
                self.url,
                bytes.len(),
                expected.size,
                expected.sha256
            )));
        }
        Ok(bytes)
    }

    async fn record<T: DeserializeOwned>(&self, path: &str) -> Result<T, TransferError> {
        let bytes = self.record_bytes(path).await?;
        parse(path, &bytes)
    }

    fn remember(&self, id: &str, artifacts: Vec<BlobRef>) {
        self.artifacts
            .lock()
            .expect("artifacts lock")
            .insert(id.to_string(), artifacts);
    }

    async fn listed(&self, id: &str, path: String, run: bool) -> Result<Vec<BlobRef>, TransferError> {
        if let Some(known) = self.artifacts.lock().expect("artifacts lock").get(id) {
            return Ok(known.clone());
        }
        let artifacts = if run {
            self.record::<RunRecord>(&path).await?.artifacts
        } else {
            self.record::<LoggedModelRecord>(&path).await?.artifacts
        };
        self.remember(id, artifacts.clone());
        Ok(artifacts)
    }

    async fn open_artifact(
        &self,
        owner: &str,
        artifacts: Vec<BlobRef>,
        path: &str,
    ) -> Result<ByteStream, TransferError> {
        let Some(artifact) = artifacts.into_iter().find(|artifact| artifact.path == path) else {
            return Err(TransferError::Integrity(format!(
                "{owner} has no artifact {path} in the bundle"
            )));
        };
        self.open_blob(
            &format!("{owner}'s artifact {path}"),
            &artifact.sha256,
            artifact.size,
        )
        .await
    }

    /// A blob's bytes, checked as they stream: a blob whose bytes do not
    /// hash to its name ends in an error instead of its last chunk.
    async fn open_blob(&self, what: &str, sha256: &str, size: i64) -> Result<ByteStream, TransferError> {
        if !is_sha256(sha256) {
            return Err(TransferError::Integrity(format!(
                "{what}: {sha256:?} is not a SHA-256: the bundle is damaged"
            )));
        }
        let key = ArtifactKey::parse(&blob_path(sha256))
            .map_err(|error| TransferError::Integrity(error.to_string()))?;
        let (_, stream) = self.storage.get_stream(&key).await.map_err(|error| {
            if error.is_not_found() {
                TransferError::Integrity(format!(
                    "{what}: blob {sha256} is missing from the bundle: the bundle is damaged (export it again)"
                ))
            } else {
                storage_error(&self.url, &format!("blob {sha256}"), error)
            }
        })?;
        let state = Arc::new(Mutex::new((Sha256::new(), 0i64)));
        let tap = state.clone();
        let url = self.url.clone();
        let read = stream
            .map_err(move |error| storage_error(&url, "a blob", error))
            .map_ok(move |chunk| {
                let mut state = tap.lock().expect("digest lock");
                state.0.update(&chunk);
                state.1 += chunk.len() as i64;
                Some(chunk)
            });
        let what = what.to_string();
        let expected = sha256.to_string();
        let check = futures::stream::once(async move {
            let (digest, length) = {
                let mut state = state.lock().expect("digest lock");
                (hex::encode(std::mem::take(&mut state.0).finalize()), state.1)
            };
            if digest == expected && length == size {
                Ok(None)
            } else {
                Err(TransferError::Integrity(format!(
                    "{what}: blob {expected} is damaged: its {length} bytes hash to {digest} (expected {size} bytes); export the bundle again"
                )))
            }
        });
        Ok(read
            .chain(check)
            .try_filter_map(|chunk| async move { Ok(chunk) })
            .boxed())
    }
}

fn parse<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, TransferError> {
    serde_json::from_slice(bytes)
        .map_err(|error| TransferError::Bundle(format!("record {path} cannot be read: {error}")))
}

async fn read_all(storage: &ArtifactStore, path: &str) -> Result<Bytes, tandem_artifacts::ArtifactError> {
    let key = ArtifactKey::parse(path)?;
    let (_, stream) = storage.get_stream(&key).await?;
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    Ok(Bytes::from(chunks.concat()))
}

fn listing(artifacts: &[BlobRef]) -> Listing {
    let mut files: Listing = artifacts
        .iter()
        .map(|artifact| (artifact.path.clone(), artifact.size))
        .collect();
    files.sort();
    files
}

#[async_trait]
impl Source for BundleSource {
    fn key(&self) -> String {
        self.manifest.source.clone()
    }

    async fn experiments(&self, include_deleted: bool) -> Result<Vec<Experiment>, TransferError> {
        let mut out = Vec::new();
        for id in &self.manifest.experiments {
            let record: ExperimentRecord = self.record(&experiment_path(id)).await?;
            if include_deleted || record.experiment.lifecycle_stage != LifecycleStage::Deleted {
                out.push(record.experiment);
            }
        }
        Ok(out)
    }

    async fn runs(&self, experiment_id: &str, filter: Option<&str>) -> Result<Vec<Run>, TransferError> {
        if filter.is_some() {
            return Err(TransferError::Usage(
                "a bundle is imported as it was exported: --run-filter chooses runs when exporting"
                    .to_string(),
            ));
        }
        let record: ExperimentRecord = self.record(&experiment_path(experiment_id)).await?;
        let mut out = Vec::with_capacity(record.runs.len());
        for id in &record.runs {
            let run: RunRecord = self.record(&run_path(id)).await?;
            self.remember(id, run.artifacts);
            out.push(run.run);
        }
        Ok(out)
    }

    async fn history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, TransferError> {
        let cached = self
            .histories
            .lock()
            .expect("history lock")
            .as_ref()
            .filter(|(id, _)| id == run_id)
            .map(|(_, record)| record.clone());
        let record = match cached {
            Some(record) => record,
            None => {
                let record: Arc<HistoryRecord> = Arc::new(self.record(&history_path(run_id)).await?);
                *self.histories.lock().expect("history lock") = Some((run_id.to_string(), record.clone()));
                record
            }
        };
        Ok(record.get(key).cloned().unwrap_or_default())
    }

    async fn run_artifacts(&self, run_id: &str) -> Result<Listing, TransferError> {
        Ok(listing(&self.listed(run_id, run_path(run_id), true).await?))
    }

    async fn open_run_artifact(&self, run_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        let artifacts = self.listed(run_id, run_path(run_id), true).await?;
        self.open_artifact(&format!("run {run_id}"), artifacts, path)
            .await
    }

    async fn logged_models(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<Result<LoggedModel, TransferError>>, TransferError> {
        let record: ExperimentRecord = self.record(&experiment_path(experiment_id)).await?;
        let mut out = Vec::with_capacity(record.logged_models.len());
        for id in &record.logged_models {
            match self.record::<LoggedModelRecord>(&logged_model_path(id)).await {
                Ok(model) => {
                    self.remember(id, model.artifacts);
                    out.push(Ok(model.model));
                }
                Err(error) => out.push(Err(error)),
            }
        }
        Ok(out)
    }

    async fn model_artifacts(&self, model_id: &str) -> Result<Listing, TransferError> {
        Ok(listing(
            &self.listed(model_id, logged_model_path(model_id), false).await?,
        ))
    }

    async fn open_model_artifact(&self, model_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        let artifacts = self.listed(model_id, logged_model_path(model_id), false).await?;
        self.open_artifact(&format!("logged model {model_id}"), artifacts, path)
            .await
    }

    async fn registered_models(
        &self,
        named: &[String],
    ) -> Result<Vec<(RegisteredModel, Vec<ModelVersion>)>, TransferError> {
        let mut out = Vec::new();
        for number in &self.manifest.registered_models {
            let record: RegisteredModelRecord = self.record(&registered_model_path(*number)).await?;
            if named.is_empty() || named.contains(&record.model.name) {
                out.push((record.model, record.versions));
            }
        }
        Ok(out)
    }
}
