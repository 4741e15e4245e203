//! Moving objects between servers: what `tandem import`, `export` and `sync`
//! hand to a target workspace, and what the target remembers of where its
//! copies came from.
//!
//! The copier reads objects from a source (an MLflow tracking server, another
//! Tandem workspace) in MLflow's own shapes and gives each to the target's
//! import endpoint *whole*: an experiment with its tags, a run with its
//! params, tags, inputs, outputs and a chunk of its metric history, a logged
//! model, a registered model with every version. The target writes each one
//! as ordinary journal changes in one transaction (so it replicates, backs
//! up and restores like any write) together with an [`Origin`]: which source
//! object it copies, under which id it lives here, and the digest of what was
//! copied. The origins are what make a copy idempotent, resumable and
//! incremental: an object whose origin carries the digest the source shows
//! now is skipped; one without an origin but with a clashing name is a
//! conflict, decided by [`OnConflict`].
//!
//! The copier maps ids (a run keeps its id where the target has none such;
//! experiment ids follow the target's numbering) and rewrites the references
//! between objects (an experiment id in a run, `mlflow.parentRunId`, a model
//! version's run, logged model and source) before it sends an object, so the
//! target only ever checks and writes what it is given.
//!
//! The format of these documents is [`TRANSFER_FORMAT`]; a target refuses a
//! newer one rather than misread it.

use serde::{Deserialize, Serialize};

use crate::model::{Experiment, LoggedModel, Metric, Millis, ModelVersion, RegisteredModel, Run};

/// The version of the documents below. 1: experiments, runs (history in
/// chunks), logged models, registered models with their versions.
pub const TRANSFER_FORMAT: i32 = 1;

/// How many metric points one run document carries at most: a run's history
/// is sent in chunks of this size, so no request (and no transaction) grows
/// with the history.
pub const HISTORY_CHUNK: usize = 50_000;

/// The kinds of objects a copy moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Experiment,
    Run,
    LoggedModel,
    RegisteredModel,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Experiment => "experiment",
            ObjectKind::Run => "run",
            ObjectKind::LoggedModel => "logged_model",
            ObjectKind::RegisteredModel => "registered_model",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            ObjectKind::Experiment,
            ObjectKind::Run,
            ObjectKind::LoggedModel,
            ObjectKind::RegisteredModel,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// What the target does with an experiment or registered model whose name
/// it already holds for an object that did not come from this source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Refuse the object (the default): the copy lists it as failed.
    #[default]
    Refuse,
    /// Copy it under a new name: `<name> (from <source host>)`, then with a
    /// number if that is taken too.
    Rename,
    /// Adopt the target's object as the copy: its runs, versions and tags
    /// join it.
    Merge,
    /// Leave it (and what belongs to it) out; the copy lists it as skipped.
    Skip,
}

impl OnConflict {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "refuse" => Some(Self::Refuse),
            "rename" => Some(Self::Rename),
            "merge" => Some(Self::Merge),
            "skip" => Some(Self::Skip),
            _ => None,
        }
    }
}

/// The digest of an origin whose copy is deleted: recorded when `--delete`
/// follows a deletion at the source, and reported by the origins endpoint
/// for a logged or registered model whose copy is no longer live (deleted
/// through MLflow's API, which records no origin). A copy whose origin
/// says this is never unchanged: the source's object, when it is there
/// (restored, perhaps unchanged), is copied again.
pub const DELETED_DIGEST: &str = "deleted";

/// Where a copied object came from. Kept in the target workspace (journaled
/// as `origin_recorded`); one per (source, kind, source id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The source, as the copier names it: a tracking URI with its
    /// workspace (`http://host:5000`, `https://host/w/team-a`), never with
    /// credentials.
    pub source: String,
    pub kind: ObjectKind,
    pub source_id: String,
    /// The object's id here (a registered model's name).
    pub target_id: String,
    /// The digest of the source object as last copied whole; empty while a
    /// copy of it is under way (a run's history is sent in chunks).
    pub digest: String,
    pub time: Millis,
}

/// One object, whole, for the import endpoint. References to other objects
/// are already the target's ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransferObject {
    Experiment {
        /// MLflow's experiment: `experiment_id` is the source's id; name,
        /// tags, lifecycle and times are copied.
        experiment: Experiment,
    },
    Run {
        /// MLflow's run: `info.run_id` is the id wanted here,
        /// `info.experiment_id` the target's experiment; `data.metrics`
        /// (the latest values) is ignored, `metrics` carries history.
        run: Run,
        /// A chunk of the run's metric history (at most [`HISTORY_CHUNK`]
        /// points); points the target already holds are left out.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        metrics: Vec<Metric>,
    },
    LoggedModel {
        /// `info.model_id` is the id wanted here, `info.experiment_id` and
        /// `info.source_run_id` the target's.
        model: LoggedModel,
    },
    RegisteredModel {
        model: RegisteredModel,
        /// Every version, with its number (gaps kept), stage, tags,
        /// description, times and aliases; `run_id`, `model_id` and
        /// `source` already point at the target's copies.
        #[serde(default)]
        versions: Vec<ModelVersion>,
    },
}

impl TransferObject {
    pub fn kind(&self) -> ObjectKind {
        match self {
            TransferObject::Experiment { .. } => ObjectKind::Experiment,
            TransferObject::Run { .. } => ObjectKind::Run,
            TransferObject::LoggedModel { .. } => ObjectKind::LoggedModel,
            TransferObject::RegisteredModel { .. } => ObjectKind::RegisteredModel,
        }
    }
}

/// A request to the import endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRequest {
    /// [`TRANSFER_FORMAT`] of the sender.
    pub format: i32,
    pub source: String,
    /// The object's id at the source (a registered model's name).
    pub source_id: String,
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// The source object's digest: present on the request that completes
    /// the object (the last chunk of a run, after its artifacts), absent on
    /// the ones before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub object: TransferObject,
}

/// What the target did with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportAction {
    /// It was not here: created.
    Created,
    /// It was here (copied before, or adopted by `merge`): brought up to date.
    Updated,
    /// It was here with the same digest: nothing written.
    Unchanged,
    /// Left out by `on_conflict: skip`.
    Skipped,
}

/// The import endpoint's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportOutcome {
    pub action: ImportAction,
    /// The object's id here (empty when skipped).
    pub target_id: String,
    /// Where its artifacts go here (runs and logged models).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact_uri: String,
    /// How many changes were journaled.
    pub changes: i64,
}

/// A move inside one deployment (`tandem move`): experiments (by name or
/// id) and registered models (by name) leave the workspace the request is
/// sent to for workspace `to`, whole, in one transaction. Runs and logged
/// models keep their ids, registered models their names and version
/// numbers; an experiment keeps its id unless `to` holds it. What a moved
/// object refers to must move with it (a version's run, the versions made
/// from a moved run): the server names what is missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The destination workspace's name.
    pub to: String,
    #[serde(default)]
    pub experiments: Vec<String>,
    #[serde(default)]
    pub registered_models: Vec<String>,
    /// Plan and check only: nothing is copied or written.
    #[serde(default)]
    pub dry_run: bool,
}

/// One experiment a move took: its name and its id on either side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedExperiment {
    pub name: String,
    pub from_id: String,
    pub to_id: String,
}

/// What a move did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveOutcome {
    pub from: String,
    pub to: String,
    pub experiments: Vec<MovedExperiment>,
    pub registered_models: Vec<String>,
    pub runs: u64,
    pub logged_models: u64,
    pub model_versions: u64,
    pub metric_points: u64,
    pub artifacts: u64,
    pub artifact_bytes: u64,
    /// Journal changes written (or to be written) in the one transaction.
    pub changes: u64,
    pub dry_run: bool,
}

/// The digest of an object as the copier computes it: SHA-256 of its
/// canonical JSON (serde_json writes fields in declaration order and maps
/// sorted), hex. Used only to tell "changed since copied" from "unchanged".
pub fn digest_json(value: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(value).expect("JSON values encode");
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_names() {
        for kind in [
            ObjectKind::Experiment,
            ObjectKind::Run,
            ObjectKind::LoggedModel,
            ObjectKind::RegisteredModel,
        ] {
            assert_eq!(ObjectKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ObjectKind::parse("dataset"), None);
    }

    #[test]
    fn a_request_reads_back_as_written() {
        let text = r#"{"format":1,"source":"http://h:5000","source_id":"1","object":{"kind":"experiment","experiment":{"experiment_id":"1","name":"e","artifact_location":"","lifecycle_stage":"active","last_update_time":2,"creation_time":1}}}"#;
        let request: ImportRequest = serde_json::from_str(text).unwrap();
        assert_eq!(request.on_conflict, OnConflict::Refuse);
        assert_eq!(request.object.kind(), ObjectKind::Experiment);
        let again: ImportRequest = serde_json::from_str(&serde_json::to_string(&request).unwrap()).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn digests_differ_with_content() {
        let a = digest_json(&serde_json::json!({"a": 1}));
        assert_eq!(a, digest_json(&serde_json::json!({"a": 1})));
        assert_ne!(a, digest_json(&serde_json::json!({"a": 2})));
        assert_eq!(a.len(), 64);
    }
}
