//! The bundle's records and manifest (see the module documentation for the
//! layout). Versioned: [`BUNDLE_FORMAT`] grows with every change a reader
//! of an older format could misread.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tandem_core::model::{Experiment, LoggedModel, Metric, ModelVersion, RegisteredModel, Run};

/// The layout this build writes, and the newest it reads.
pub const BUNDLE_FORMAT: u32 = 1;

/// What `manifest.json` says `kind` is, so that another JSON file is not
/// mistaken for a bundle.
pub(crate) const KIND: &str = "tandem-bundle";

pub(crate) const MANIFEST: &str = "manifest.json";

/// The bundle's table of contents, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub kind: String,
    /// When the export finished (milliseconds since the epoch).
    pub created: i64,
    /// The Tandem version that wrote it.
    pub written_by: String,
    /// The source's tracking URI (no credentials): importing the bundle
    /// records origins under it, as a direct import would.
    pub source: String,
    pub selection: Selection,
    pub counts: Counts,
    /// Experiment ids, in the order they are imported.
    pub experiments: Vec<String>,
    /// Registered model record numbers, in order.
    pub registered_models: Vec<u64>,
    /// Every record file: its size and SHA-256.
    pub records: BTreeMap<String, RecordDigest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    pub experiments: Vec<String>,
    pub registered_models: Vec<String>,
    pub run_filter: Option<String>,
    pub include_deleted: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub experiments: u64,
    pub runs: u64,
    pub logged_models: u64,
    pub registered_models: u64,
    pub model_versions: u64,
    pub metric_points: u64,
    /// Distinct blobs (artifacts with the same bytes share one).
    pub blobs: u64,
    pub blob_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordDigest {
    pub size: u64,
    pub sha256: String,
}

/// One artifact file: where it goes and which blob holds its bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlobRef {
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExperimentRecord {
    pub experiment: Experiment,
    /// Parents before their children.
    pub runs: Vec<String>,
    pub logged_models: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRecord {
    pub run: Run,
    pub artifacts: Vec<BlobRef>,
}

/// A run's metric histories: every point of every key.
pub(crate) type HistoryRecord = BTreeMap<String, Vec<Metric>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoggedModelRecord {
    pub model: LoggedModel,
    pub artifacts: Vec<BlobRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisteredModelRecord {
    pub model: RegisteredModel,
    pub versions: Vec<ModelVersion>,
}

/// A file name for an id: the id itself when it is a plain name (MLflow's
/// ids are), else a digest of it, so no id can reach outside its folder.
pub(crate) fn file_name(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !id.starts_with("x-");
    if plain {
        id.to_string()
    } else {
        format!("x-{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

pub(crate) fn experiment_path(id: &str) -> String {
    format!("experiments/{}.json", file_name(id))
}

pub(crate) fn run_path(id: &str) -> String {
    format!("runs/{}.json", file_name(id))
}

pub(crate) fn history_path(id: &str) -> String {
    format!("histories/{}.json", file_name(id))
}

pub(crate) fn logged_model_path(id: &str) -> String {
    format!("logged-models/{}.json", file_name(id))
}

pub(crate) fn registered_model_path(number: u64) -> String {
    format!("registered-models/{number}.json")
}

pub(crate) fn blob_path(sha256: &str) -> String {
    format!("blobs/{}/{sha256}", &sha256[..2])
}

/// A SHA-256 as the bundle names blobs: 64 lowercase hex digits.
pub(crate) fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_names_that_stay_in_their_folder() {
        assert_eq!(run_path("0123abcd"), "runs/0123abcd.json");
        assert_eq!(logged_model_path("m-42"), "logged-models/m-42.json");
        for hostile in ["../x", "a/b", "", ".", "x-abc", "a b"] {
            let name = file_name(hostile);
            assert!(name.starts_with("x-") && name.len() == 66, "{hostile} -> {name}");
        }
        assert_ne!(file_name("a/b"), file_name("a/c"));
    }

    #[test]
    fn a_manifest_with_an_unknown_field_is_not_read() {
        let text = r#"{"format":1,"kind":"tandem-bundle","created":0,"written_by":"t","source":"s",
            "selection":{"experiments":[],"registered_models":[],"run_filter":null,"include_deleted":false},
            "counts":{"experiments":0,"runs":0,"logged_models":0,"registered_models":0,"model_versions":0,
            "metric_points":0,"blobs":0,"blob_bytes":0},"experiments":[],"registered_models":[],"records":{}}"#;
        assert!(serde_json::from_str::<Manifest>(text).is_ok());
        let extra = text.replacen("\"format\":1,", "\"format\":1,\"surprise\":true,", 1);
        assert!(serde_json::from_str::<Manifest>(&extra).is_err());
    }
}
