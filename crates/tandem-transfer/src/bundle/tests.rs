//! A bundle gives back what it was written from: a source held in memory
//! here (the end-to-end tests export real Tandem workspaces), written to a
//! local directory and read back method by method.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tandem_core::model::{Experiment, LoggedModel, Metric, ModelVersion, RegisteredModel, Run};
use tandem_core::transfer::OnConflict;

use super::{export, BundleSource};
use crate::copy::{CopyOptions, Progress};
use crate::source::{ByteStream, Listing, Source};
use crate::TransferError;

#[derive(Default)]
struct Held {
    experiments: Vec<Experiment>,
    runs: HashMap<String, Vec<Run>>,
    histories: HashMap<(String, String), Vec<Metric>>,
    files: HashMap<String, Vec<(String, Bytes)>>,
    models: HashMap<String, Vec<LoggedModel>>,
    registered: Vec<(RegisteredModel, Vec<ModelVersion>)>,
}

fn listing(files: Option<&Vec<(String, Bytes)>>) -> Listing {
    let mut out: Listing = files
        .into_iter()
        .flatten()
        .map(|(path, bytes)| (path.clone(), bytes.len() as i64))
        .collect();
    out.sort();
    out
}

fn open(files: Option<&Vec<(String, Bytes)>>, path: &str) -> Result<ByteStream, TransferError> {
    let bytes = files
        .into_iter()
        .flatten()
        .find(|(held, _)| held == path)
        .map(|(_, bytes)| bytes.clone())
        .ok_or_else(|| TransferError::Integrity(format!("no {path}")))?;
    // In two chunks, as a download arrives.
    let (a, b) = bytes.split_at(bytes.len() / 2);
    Ok(futures::stream::iter([Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))]).boxed())
}

#[async_trait]
impl Source for Held {
    fn key(&self) -> String {
        "http://source.example:5000".to_string()
    }
    async fn experiments(&self, _include_deleted: bool) -> Result<Vec<Experiment>, TransferError> {
        Ok(self.experiments.clone())
    }
    async fn runs(&self, experiment_id: &str, _filter: Option<&str>) -> Result<Vec<Run>, TransferError> {
        Ok(self.runs.get(experiment_id).cloned().unwrap_or_default())
    }
    async fn history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, TransferError> {
        Ok(self
            .histories
            .get(&(run_id.to_string(), key.to_string()))
            .cloned()
            .unwrap_or_default())
    }
    async fn run_artifacts(&self, run_id: &str) -> Result<Listing, TransferError> {
        Ok(listing(self.files.get(run_id)))
    }
    async fn open_run_artifact(&self, run_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        open(self.files.get(run_id), path)
    }
    async fn logged_models(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<Result<LoggedModel, TransferError>>, TransferError> {
        Ok(self
            .models
            .get(experiment_id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(Ok)
            .collect())
    }
    async fn model_artifacts(&self, model_id: &str) -> Result<Listing, TransferError> {
        Ok(listing(self.files.get(model_id)))
    }
    async fn open_model_artifact(&self, model_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        open(self.files.get(model_id), path)
    }
    async fn registered_models(
        &self,
        named: &[String],
    ) -> Result<Vec<(RegisteredModel, Vec<ModelVersion>)>, TransferError> {
        Ok(self
            .registered
            .iter()
            .filter(|(model, _)| named.is_empty() || named.contains(&model.name))
            .cloned()
            .collect())
    }
}

fn held() -> Held {
    let experiment: Experiment = serde_json::from_value(json!({
        "experiment_id": "7", "name": "churn", "artifact_location": "mlflow-artifacts:/7",
        "lifecycle_stage": "active", "last_update_time": 20, "creation_time": 10,
        "tags": [{"key": "team", "value": "a"}],
    }))
    .unwrap();
    let run = |id: &str, parent: Option<&str>| -> Run {
        let mut tags = vec![json!({"key": "mlflow.runName", "value": id})];
        if let Some(parent) = parent {
            tags.push(json!({"key": "mlflow.parentRunId", "value": parent}));
        }
        serde_json::from_value(json!({
            "info": {"run_id": id, "run_uuid": id, "run_name": id, "experiment_id": "7",
                     "status": "FINISHED", "start_time": 100, "end_time": 200,
                     "artifact_uri": format!("mlflow-artifacts:/7/{id}/artifacts"), "lifecycle_stage": "active"},
            "data": {"metrics": [{"key": "loss", "value": "NaN", "timestamp": 5, "step": 2}],
                     "params": [{"key": "lr", "value": "0.1"}], "tags": tags},
        }))
        .unwrap()
    };
    let point = |value: f64, step: i64| Metric {
        key: "loss".to_string(),
        value,
        timestamp: 1_000 + step,
        step,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    };
    let model: LoggedModel = serde_json::from_value(json!({
        "info": {"model_id": "m-1", "experiment_id": "7", "name": "packaged", "creation_timestamp_ms": 1,
                 "last_updated_timestamp_ms": 2, "artifact_uri": "mlflow-artifacts:/7/models/m-1/artifacts",
                 "status": "LOGGED_MODEL_READY", "source_run_id": "parent"},
    }))
    .unwrap();
    let registered: RegisteredModel = serde_json::from_value(json!({
        "name": "clf", "creation_timestamp": 1, "last_updated_timestamp": 2,
        "aliases": [{"alias": "champion", "version": "3"}],
    }))
    .unwrap();
    let version = |number: &str| -> ModelVersion {
        serde_json::from_value(json!({
            "name": "clf", "version": number, "creation_timestamp": 1, "last_updated_timestamp": 2,
            "current_stage": "Production", "source": "runs:/parent/model", "run_id": "parent", "status": "READY",
        }))
        .unwrap()
    };
    let weights = Bytes::from((0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let mut held = Held::default();
    held.experiments.push(experiment);
    held.runs.insert(
        "7".into(),
        vec![run("parent", None), run("child", Some("parent"))],
    );
    held.histories.insert(
        ("parent".into(), "loss".into()),
        vec![point(0.5, 0), point(f64::INFINITY, 1), point(f64::NAN, 2)],
    );
    held.files.insert(
        "parent".into(),
        vec![
            ("model/weights.bin".into(), weights.clone()),
            ("notes.txt".into(), Bytes::from("hi\n")),
        ],
    );
    // The same bytes twice: one blob.
    held.files
        .insert("child".into(), vec![("copy/weights.bin".into(), weights)]);
    held.files.insert(
        "m-1".into(),
        vec![("MLmodel".into(), Bytes::from("flavors: {}\n"))],
    );
    held.models.insert("7".into(), vec![model]);
    held.registered
        .push((registered, vec![version("1"), version("3")]));
    held
}

fn options() -> CopyOptions {
    CopyOptions {
        source_key: String::new(),
        workspace: "default".into(),
        on_conflict: OnConflict::Refuse,
        include_deleted: true,
        experiments: Vec::new(),
        registered_models: Vec::new(),
        run_filter: None,
        dry_run: false,
        delete: false,
    }
}

fn quiet(_: &Progress) {}

async fn read(stream: ByteStream) -> Result<Vec<u8>, TransferError> {
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    Ok(chunks.concat())
}

#[tokio::test]
async fn a_bundle_reads_back_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bundle", dir.path().display());
    let source = held();
    let report = export(&source, &url, &options(), &quiet).await.unwrap();
    assert_eq!(report.counts.runs, 2);
    assert_eq!(
        report.counts.metric_points, 3,
        "the parent's three points; the child logged none"
    );
    assert_eq!(report.artifacts, 4);
    assert_eq!(report.counts.blobs, 3, "the same bytes are one blob");
    assert_eq!(report.counts.model_versions, 2);

    let bundle = BundleSource::open(&url).await.unwrap();
    assert_eq!(bundle.key(), source.key());
    assert_eq!(
        bundle.check_records().await.unwrap(),
        7,
        "an experiment, two runs and their histories, a logged model, a registered model"
    );
    assert_eq!(bundle.verify(&|_, _| {}).await.unwrap(), 3);
    let mut experiment = source.experiments[0].clone();
    experiment.tags.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(bundle.experiments(true).await.unwrap(), vec![experiment]);
    let runs = bundle.runs("7", None).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|run| run.info.run_id.as_str()).collect();
    assert_eq!(ids, ["parent", "child"], "parents first");
    let history = bundle.history("parent", "loss").await.unwrap();
    let values: Vec<String> = history.iter().map(|point| format!("{:?}", point.value)).collect();
    assert_eq!(values, ["0.5", "inf", "NaN"]);
    assert!(bundle.history("child", "loss").await.unwrap().is_empty());
    for owner in ["parent", "child"] {
        assert_eq!(
            bundle.run_artifacts(owner).await.unwrap(),
            source.run_artifacts(owner).await.unwrap()
        );
        for (path, _) in source.run_artifacts(owner).await.unwrap() {
            let got = read(bundle.open_run_artifact(owner, &path).await.unwrap())
                .await
                .unwrap();
            let want = read(source.open_run_artifact(owner, &path).await.unwrap())
                .await
                .unwrap();
            assert_eq!(got, want, "{owner}/{path}");
        }
    }
    let models = bundle.logged_models("7").await.unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].as_ref().unwrap().info.model_id, "m-1");
    assert_eq!(
        bundle.model_artifacts("m-1").await.unwrap(),
        vec![("MLmodel".to_string(), 12)]
    );
    let registered = bundle.registered_models(&[]).await.unwrap();
    assert_eq!(registered, source.registered);
    assert!(bundle
        .registered_models(&["other".into()])
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        bundle.runs("7", Some("params.lr = '1'")).await,
        Err(TransferError::Usage(_))
    ));

    // A second export to the same place is refused; the bundle stays.
    let again = export(&source, &url, &options(), &quiet).await.unwrap_err();
    assert!(matches!(again, TransferError::Exists(_)), "{again}");
}

#[tokio::test]
async fn a_damaged_blob_ends_its_stream_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bundle", dir.path().display());
    export(&held(), &url, &options(), &quiet).await.unwrap();
    let bundle = BundleSource::open(&url).await.unwrap();
    let blob = walk(dir.path())
        .into_iter()
        .find(|path| {
            path.to_string_lossy().contains("/blobs/") && std::fs::metadata(path).unwrap().len() == 3
        })
        .expect("the notes blob");
    std::fs::write(&blob, b"ho\n").unwrap();
    let error = read(bundle.open_run_artifact("parent", "notes.txt").await.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, TransferError::Integrity(_)), "{error}");
    assert!(error.to_string().contains("is damaged"), "{error}");
    // The other files still read.
    assert_eq!(
        read(bundle.open_model_artifact("m-1", "MLmodel").await.unwrap())
            .await
            .unwrap(),
        b"flavors: {}\n"
    );
    std::fs::remove_file(&blob).unwrap();
    let error = match bundle.open_run_artifact("parent", "notes.txt").await {
        Ok(_) => panic!("a missing blob opened"),
        Err(error) => error,
    };
    assert!(error.to_string().contains("missing from the bundle"), "{error}");
}

#[tokio::test]
async fn damaged_records_and_newer_or_unfinished_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bundle", dir.path().display());
    export(&held(), &url, &options(), &quiet).await.unwrap();
    let root = dir.path().join("bundle");
    let record = root.join("runs/child.json");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("\"child\"", "\"chilt\"")).unwrap();
    let bundle = BundleSource::open(&url).await.unwrap();
    let error = bundle.check_records().await.unwrap_err();
    assert!(matches!(error, TransferError::Bundle(_)), "{error}");
    assert!(
        error.to_string().contains("record runs/child.json is damaged"),
        "{error}"
    );

    let manifest_path = root.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["format"] = json!(super::BUNDLE_FORMAT + 1);
    manifest["new_field"] = json!(true);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let error = BundleSource::open(&url).await.err().unwrap();
    assert!(
        error.to_string().contains("newer than this tandem reads"),
        "{error}"
    );

    std::fs::remove_file(&manifest_path).unwrap();
    let error = BundleSource::open(&url).await.err().unwrap();
    assert!(matches!(error, TransferError::Bundle(_)), "{error}");
    assert!(error.to_string().contains("did not finish"), "{error}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
