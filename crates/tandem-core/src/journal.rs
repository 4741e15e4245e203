//! The journal: the ordered, versioned record of every change to a region's
//! workspaces.
//!
//! Every state change is expressed as a [`Change`] and appended, in the same
//! transaction that applies it, as a [`JournalRecord`]. A change carries every
//! value its application needs (generated ids, timestamps, run names), so that
//! applying the same records in the same order to an empty store rebuilds the
//! same state, in this region or another. That is the contract replication,
//! backup and point-in-time restore stand on.
//!
//! Format versions: `FORMAT_VERSION` is written into every record. A reader
//! accepts every version up to its own and upgrades older payloads in
//! [`JournalRecord::decode_change`]; a record from a newer writer is refused
//! rather than misread.

use serde::{Deserialize, Serialize};

use crate::model::{
    DatasetInput, LoggedModelStatus, Metric, Millis, ModelInput, ModelOutput, ModelVersionStatus, Param,
    RunStatus, Tag,
};

/// The journal format this build writes. Version 2 added `seen` (the causal
/// context of writes to multi-writer classes); version 1 records have none
/// and read unchanged. Version 3 made `registered_model_deleted` and
/// `model_version_deleted` soft deletes (recoverable during the workspace's
/// retention); in records of format 2 and older they were hard deletes and
/// are read as [`Change::RegisteredModelPurged`] / [`Change::ModelVersionPurged`].
/// Version 4 added `file_written` and `file_deleted` (the workspace file
/// share); older records read unchanged. Version 5 added
/// `workspace_quota_set`; older records read unchanged. Version 6 added
/// principals, tokens and role assignments (the `access` class) and the
/// record's `principal`; older records have none and read unchanged.
/// Version 7 added `kept_as` to `registered_model_deleted` and
/// `registered_model_restored`: a deleted registered model is kept under
/// another key and its name is free at once, as in MLflow; older records
/// have none and read unchanged (the deleted model kept its name).
/// Version 8 added `origin_recorded` (where an imported object came from);
/// older records read unchanged. Version 9 added `experiment_moved_out` and
/// `registered_model_moved_out` (`tandem move`); older records read
/// unchanged.
pub const FORMAT_VERSION: i32 = 9;

/// The first format in which `registered_model_deleted` and
/// `model_version_deleted` are soft deletes.
pub const SOFT_DELETE_FORMAT: i32 = 3;

/// One record of the journal. Decoding a whole record (the replication
/// stream, the quarantine) upgrades its change from the record's `format`,
/// like [`JournalRecord::decode_change`] does for a stored payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawJournalRecord")]
pub struct JournalRecord {
    /// Gap-free, strictly increasing position in this region's journal.
    pub seq: i64,
    /// The workspace the change belongs to (its stable id, not its name).
    pub workspace_id: String,
    /// Hybrid logical clock at the origin: orders changes across regions and
    /// decides last-writer-wins conflicts.
    pub hlc: u64,
    /// The region where the change was first accepted.
    pub origin_region: String,
    /// The change's position in the origin region's journal; equal to `seq`
    /// for local changes. Replicated changes keep it so that each region can
    /// recognise (and skip) records it already has.
    pub origin_seq: i64,
    /// Leadership epoch the origin held when it accepted the change (fencing).
    pub epoch: i64,
    /// Format version of `change`.
    pub format: i32,
    /// Wall-clock time the record was written, for people reading the journal.
    pub recorded_at: Millis,
    pub change: Change,
    /// Set on changes of a multi-writer (`hot-hot`) class only: for every
    /// other origin region, the highest `origin_seq` of its changes the
    /// writing region had applied when it accepted this one. It tells a
    /// region merging this record which earlier versions the writer saw
    /// (causally later: no conflict) and which it did not (concurrent: a
    /// conflict, resolved by [`crate::merge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<std::collections::BTreeMap<String, i64>>,
    /// Who caused the change: the authenticated principal of the request,
    /// `tandem:<task>` for the server's own work (purge, bootstrap), None
    /// where nobody authenticated (a server without authentication, or
    /// records older than format 6). The audit reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// A record as written, before its change is upgraded to this build's format.
#[derive(Deserialize)]
struct RawJournalRecord {
    seq: i64,
    workspace_id: String,
    hlc: u64,
    origin_region: String,
    origin_seq: i64,
    epoch: i64,
    format: i32,
    recorded_at: Millis,
    change: Change,
    #[serde(default)]
    seen: Option<std::collections::BTreeMap<String, i64>>,
    #[serde(default)]
    principal: Option<String>,
}

impl From<RawJournalRecord> for JournalRecord {
    fn from(raw: RawJournalRecord) -> Self {
        JournalRecord {
            seq: raw.seq,
            workspace_id: raw.workspace_id,
            hlc: raw.hlc,
            origin_region: raw.origin_region,
            origin_seq: raw.origin_seq,
            epoch: raw.epoch,
            format: raw.format,
            recorded_at: raw.recorded_at,
            change: if raw.format < SOFT_DELETE_FORMAT {
                upgrade_hard_delete(raw.change)
            } else {
                raw.change
            },
            seen: raw.seen,
            principal: raw.principal,
        }
    }
}

impl JournalRecord {
    /// Decodes a stored payload written in format `format`. Older formats are
    /// upgraded here, newer ones refused.
    pub fn decode_change(format: i32, payload: &str) -> Result<Change, String> {
        if format > FORMAT_VERSION {
            return Err(format!(
                "journal record has format {format}, newer than this build's {FORMAT_VERSION}"
            ));
        }
        let change =
            serde_json::from_str(payload).map_err(|err| format!("undecodable journal payload: {err}"))?;
        Ok(if format < SOFT_DELETE_FORMAT {
            upgrade_hard_delete(change)
        } else {
            change
        })
    }

    pub fn encode_change(change: &Change) -> String {
        serde_json::to_string(change).expect("journal changes always encode")
    }
}

/// Before format 3 a registered model's or a model version's deletion
/// removed it for good: read it as the purge it was (artifacts were never
/// removed by it, hence `keep_artifacts`).
fn upgrade_hard_delete(change: Change) -> Change {
    match change {
        Change::RegisteredModelDeleted { name, time, .. } => Change::RegisteredModelPurged { name, time },
        Change::ModelVersionDeleted { name, version, time } => {
            Change::ModelVersionPurged { name, version, time }
        }
        other => other,
    }
}

/// A typed change to a workspace. Each variant is the complete, deterministic
/// description of one accepted write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    WorkspaceCreated {
        workspace_id: String,
        name: String,
        description: String,
        time: Millis,
    },
    WorkspaceUpdated {
        description: String,
        time: Millis,
    },
    WorkspaceDeleted {
        time: Millis,
    },
    WorkspaceRestored {
        time: Millis,
    },
    /// Retention and purge protection of the workspace. Purge protection
    /// never goes from on to off (the store refuses it; `apply` keeps it on
    /// whatever a record says, so even a forged record cannot lift it).
    WorkspaceRetentionSet {
        retention_days: i64,
        purge_protection: bool,
        time: Millis,
    },
    /// The workspace's storage quota: bytes of artifacts and files it may
    /// hold (None: no quota). Format 5.
    WorkspaceQuotaSet {
        storage_quota: Option<i64>,
        time: Millis,
    },
    /// The workspace and every row of it are gone for good. With
    /// `keep_artifacts` false, every region removes the workspace's
    /// artifacts (never its files) from its own storage.
    WorkspacePurged {
        keep_artifacts: bool,
        time: Millis,
    },
    /// A deleted experiment is gone with its runs and logged models.
    ExperimentPurged {
        experiment_id: String,
        keep_artifacts: bool,
        time: Millis,
    },
    RunPurged {
        run_id: String,
        keep_artifacts: bool,
        time: Millis,
    },
    LoggedModelRestored {
        model_id: String,
        time: Millis,
    },
    LoggedModelPurged {
        model_id: String,
        keep_artifacts: bool,
        time: Millis,
    },
    /// A deleted registered model is back under `name` (its old name, or
    /// a new one given at recovery). `kept_as` (format 7): the key it was
    /// kept under while deleted, which its rows and its versions' rows
    /// move back from; None for a model deleted in place (format <= 6).
    RegisteredModelRestored {
        name: String,
        time: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept_as: Option<String>,
    },
    /// A registered model is gone with its versions, tags and aliases (a
    /// version's files belong to its run or logged model, so no artifact
    /// is removed).
    RegisteredModelPurged {
        name: String,
        time: Millis,
    },
    ModelVersionRestored {
        name: String,
        version: String,
        time: Millis,
    },
    /// An experiment left this workspace for another of the deployment
    /// (`tandem move`, format 9): gone from here with its runs, logged
    /// models and artifact index, as a purge is, its bytes queued for
    /// collection. The same transaction journals its arrival in
    /// `to_workspace_id` as ordinary creations (there as `to_experiment_id`),
    /// after copying its artifacts there, so each workspace's journal alone
    /// still rebuilds that workspace.
    ExperimentMovedOut {
        experiment_id: String,
        to_workspace_id: String,
        to_experiment_id: String,
        time: Millis,
    },
    /// A registered model left this workspace for another (format 9), with
    /// its versions, tags and aliases; it arrives there as ordinary
    /// creations in the same transaction. Its versions' files belong to
    /// runs and logged models, which move on their own.
    RegisteredModelMovedOut {
        name: String,
        to_workspace_id: String,
        time: Millis,
    },
    ModelVersionPurged {
        name: String,
        version: String,
        time: Millis,
    },

    ExperimentCreated {
        experiment_id: String,
        name: String,
        artifact_location: String,
        tags: Vec<Tag>,
        time: Millis,
    },
    ExperimentRenamed {
        experiment_id: String,
        name: String,
        time: Millis,
    },
    ExperimentDeleted {
        experiment_id: String,
        time: Millis,
    },
    ExperimentRestored {
        experiment_id: String,
        time: Millis,
    },
    ExperimentTagSet {
        experiment_id: String,
        tag: Tag,
    },
    ExperimentTagDeleted {
        experiment_id: String,
        key: String,
    },

    RunCreated {
        run_id: String,
        experiment_id: String,
        run_name: String,
        user_id: String,
        start_time: Option<Millis>,
        artifact_uri: String,
        tags: Vec<Tag>,
    },
    RunUpdated {
        run_id: String,
        status: Option<RunStatus>,
        end_time: Option<Millis>,
        run_name: Option<String>,
    },
    RunDeleted {
        run_id: String,
        time: Millis,
    },
    RunRestored {
        run_id: String,
    },
    /// `log-metric`, `log-parameter`, `set-tag` and `log-batch` all journal as
    /// one batch, applied atomically.
    RunDataLogged {
        run_id: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        metrics: Vec<Metric>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        params: Vec<Param>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<Tag>,
    },
    RunTagDeleted {
        run_id: String,
        key: String,
    },
    RunInputsLogged {
        run_id: String,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    },
    RunOutputsLogged {
        run_id: String,
        models: Vec<ModelOutput>,
    },

    LoggedModelCreated {
        model_id: String,
        experiment_id: String,
        name: String,
        artifact_uri: String,
        status: LoggedModelStatus,
        creator_id: String,
        model_type: Option<String>,
        source_run_id: Option<String>,
        tags: Vec<Tag>,
        params: Vec<Param>,
        time: Millis,
    },
    LoggedModelUpdated {
        model_id: String,
        status: LoggedModelStatus,
        status_message: Option<String>,
        time: Millis,
    },
    LoggedModelTagsSet {
        model_id: String,
        tags: Vec<Tag>,
        time: Millis,
    },
    LoggedModelTagDeleted {
        model_id: String,
        key: String,
        time: Millis,
    },
    LoggedModelParamsLogged {
        model_id: String,
        params: Vec<Param>,
        time: Millis,
    },
    LoggedModelDeleted {
        model_id: String,
        time: Millis,
    },

    RegisteredModelCreated {
        name: String,
        description: String,
        user_id: String,
        tags: Vec<Tag>,
        time: Millis,
    },
    RegisteredModelRenamed {
        name: String,
        new_name: String,
        time: Millis,
    },
    RegisteredModelUpdated {
        name: String,
        description: String,
        time: Millis,
    },
    /// A registered model is deleted softly (format >= 3). With `kept_as`
    /// (format 7) its rows, versions, tags and aliases move to that key
    /// (`name:<hex>`, never a valid model name, since names cannot hold
    /// ':'), so the name is free at once, as in MLflow; the model stays
    /// recoverable by that key for the workspace's retention. Without it
    /// (format <= 6) the model kept its name until recovered or purged.
    /// A model already deleted in place may be moved aside later by this
    /// change with its original `time`.
    RegisteredModelDeleted {
        name: String,
        time: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept_as: Option<String>,
    },
    RegisteredModelTagSet {
        name: String,
        tag: Tag,
    },
    RegisteredModelTagDeleted {
        name: String,
        key: String,
    },
    RegisteredModelAliasSet {
        name: String,
        alias: String,
        version: String,
    },
    RegisteredModelAliasDeleted {
        name: String,
        alias: String,
    },

    ModelVersionCreated {
        name: String,
        version: String,
        source: String,
        /// Where the version's files are: `source` itself, or what a
        /// `models:/` source resolved to when the version was created.
        storage_location: String,
        run_id: String,
        run_link: String,
        description: String,
        user_id: String,
        model_id: String,
        status: ModelVersionStatus,
        tags: Vec<Tag>,
        time: Millis,
    },
    ModelVersionUpdated {
        name: String,
        version: String,
        description: String,
        time: Millis,
    },
    /// A stage transition, with the other versions it archived listed
    /// explicitly so that applying it does not depend on a flag's semantics.
    ModelVersionStageSet {
        name: String,
        version: String,
        stage: String,
        archived_versions: Vec<String>,
        time: Millis,
    },
    ModelVersionDeleted {
        name: String,
        version: String,
        time: Millis,
    },
    ModelVersionTagSet {
        name: String,
        version: String,
        tag: Tag,
    },
    ModelVersionTagDeleted {
        name: String,
        version: String,
        key: String,
    },

    /// An object copied from another server (`tandem import`/`sync`) is
    /// here as `origin.target_id` (format 8): what makes a copy idempotent
    /// and incremental. Written in the transaction that writes the copy.
    /// Of the tracking class whatever the object's kind, so all of a
    /// workspace's origins replicate together.
    OriginRecorded {
        origin: crate::transfer::Origin,
    },

    /// An artifact was written: its content is in the region's storage under
    /// `path` (relative to the workspace's artifact root), with this size and
    /// digest. Replication copies it by digest; backup stores it by digest.
    ArtifactWritten {
        path: String,
        size: i64,
        sha256: String,
        time: Millis,
    },
    ArtifactDeleted {
        path: String,
    },

    /// A file of the workspace's file share (notebooks and other files) was
    /// written: its content is in the region's storage under `path`, relative
    /// to the share's root `workspaces/<id>/files/`. Copied and backed up by
    /// digest like an artifact.
    FileWritten {
        path: String,
        size: i64,
        sha256: String,
        time: Millis,
    },
    /// A file, or a whole directory of the file share, was deleted.
    FileDeleted {
        path: String,
    },

    /// A region became primary: the first record of every epoch, written
    /// by the new primary (workspace id empty: it belongs to the
    /// deployment). `fork` is, for every origin region, the highest
    /// `origin_seq` of its changes the new primary had applied: the history
    /// the new epoch continues. A change of an older epoch beyond the fork
    /// of the epoch that followed it never reached the new primary; every
    /// region that holds one voids it and keeps it in its divergence
    /// quarantine.
    EpochBegan {
        epoch: i64,
        primary: String,
        fork: std::collections::BTreeMap<String, i64>,
        time: Millis,
    },

    // Principals, tokens and role assignments: deployment-wide records of
    // the `access` class (format 6). Only hashes are journaled: a password
    // as its Argon2id PHC string, a token as its SHA-256.
    PrincipalCreated {
        name: String,
        /// [`crate::access::USER`] or [`crate::access::SERVICE`].
        kind: String,
        password_hash: Option<String>,
        time: Millis,
    },
    PrincipalPasswordSet {
        name: String,
        password_hash: Option<String>,
        time: Millis,
    },
    PrincipalDisabled {
        name: String,
        disabled: bool,
        time: Millis,
    },
    /// The principal, its tokens and its role assignments are gone.
    PrincipalDeleted {
        name: String,
        time: Millis,
    },
    TokenCreated {
        token_id: String,
        principal: String,
        token_hash: String,
        description: String,
        expires_at: Option<Millis>,
        time: Millis,
    },
    TokenRevoked {
        token_id: String,
        time: Millis,
    },
    /// `workspace_id` None: the whole deployment.
    RoleAssigned {
        principal: String,
        role: crate::access::Role,
        workspace_id: Option<String>,
        time: Millis,
    },
    RoleRemoved {
        principal: String,
        role: crate::access::Role,
        workspace_id: Option<String>,
        time: Millis,
    },
}

/// Where in a workspace's storage a change's bytes live: its MLflow
/// artifacts (`workspaces/<id>/artifacts/`) or its file share
/// (`workspaces/<id>/files/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentArea {
    Artifacts,
    Files,
}

impl ContentArea {
    /// The directory under `workspaces/<id>/`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentArea::Artifacts => "artifacts",
            ContentArea::Files => "files",
        }
    }

    pub fn parse(value: &str) -> Option<ContentArea> {
        match value {
            "artifacts" => Some(ContentArea::Artifacts),
            "files" => Some(ContentArea::Files),
            _ => None,
        }
    }
}

/// See [`Change::written_content`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenContent<'a> {
    pub area: ContentArea,
    pub path: &'a str,
    pub size: i64,
    pub sha256: &'a str,
}

/// The workspace id of deployment-wide records ([`Change::EpochBegan`]).
pub const DEPLOYMENT_RECORD: &str = "";

/// The asset classes a deployment sets continuity levels for. Artifacts
/// belong to the class of what owns them (today: runs and logged models,
/// hence tracking); the file share is the `files` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetClass {
    Tracking,
    Registry,
    Assets,
    Files,
    Access,
}

impl AssetClass {
    pub const ALL: [AssetClass; 5] = [
        AssetClass::Tracking,
        AssetClass::Registry,
        AssetClass::Assets,
        AssetClass::Files,
        AssetClass::Access,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetClass::Tracking => "tracking",
            AssetClass::Registry => "registry",
            AssetClass::Assets => "assets",
            AssetClass::Files => "files",
            AssetClass::Access => "access",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        AssetClass::ALL.into_iter().find(|class| class.as_str() == value)
    }
}

/// The kinds' prefixes of the changes whose asset class is `Access` or
/// none: see [`Change::kind_touches_access`].
pub const ACCESS_KIND_PREFIXES: [&str; 5] = ["principal_", "token_", "role_", "workspace_", "epoch_"];

impl Change {
    /// The asset class the change belongs to, or None for workspace
    /// lifecycle changes, which every class depends on and which therefore
    /// always replicate.
    pub fn asset_class(&self) -> Option<AssetClass> {
        match self {
            Change::WorkspaceCreated { .. }
            | Change::WorkspaceUpdated { .. }
            | Change::WorkspaceDeleted { .. }
            | Change::WorkspaceRestored { .. }
            | Change::WorkspaceRetentionSet { .. }
            | Change::WorkspaceQuotaSet { .. }
            | Change::WorkspacePurged { .. }
            | Change::EpochBegan { .. } => None,
            Change::PrincipalCreated { .. }
            | Change::PrincipalPasswordSet { .. }
            | Change::PrincipalDisabled { .. }
            | Change::PrincipalDeleted { .. }
            | Change::TokenCreated { .. }
            | Change::TokenRevoked { .. }
            | Change::RoleAssigned { .. }
            | Change::RoleRemoved { .. } => Some(AssetClass::Access),
            Change::RegisteredModelCreated { .. }
            | Change::RegisteredModelRenamed { .. }
            | Change::RegisteredModelUpdated { .. }
            | Change::RegisteredModelDeleted { .. }
            | Change::RegisteredModelTagSet { .. }
            | Change::RegisteredModelTagDeleted { .. }
            | Change::RegisteredModelAliasSet { .. }
            | Change::RegisteredModelAliasDeleted { .. }
            | Change::ModelVersionCreated { .. }
            | Change::ModelVersionUpdated { .. }
            | Change::ModelVersionStageSet { .. }
            | Change::ModelVersionDeleted { .. }
            | Change::ModelVersionTagSet { .. }
            | Change::ModelVersionTagDeleted { .. }
            | Change::RegisteredModelRestored { .. }
            | Change::RegisteredModelPurged { .. }
            | Change::RegisteredModelMovedOut { .. }
            | Change::ModelVersionRestored { .. }
            | Change::ModelVersionPurged { .. } => Some(AssetClass::Registry),
            Change::FileWritten { .. } | Change::FileDeleted { .. } => Some(AssetClass::Files),
            _ => Some(AssetClass::Tracking),
        }
    }

    /// The bytes a change put in the region's storage, if it is an artifact
    /// or file write: replication copies them, backups keep them, restores
    /// put them back, all by digest.
    pub fn written_content(&self) -> Option<WrittenContent<'_>> {
        match self {
            Change::ArtifactWritten {
                path, size, sha256, ..
            } => Some(WrittenContent {
                area: ContentArea::Artifacts,
                path,
                size: *size,
                sha256,
            }),
            Change::FileWritten {
                path, size, sha256, ..
            } => Some(WrittenContent {
                area: ContentArea::Files,
                path,
                size: *size,
                sha256,
            }),
            _ => None,
        }
    }

    /// The storage path (a file or a directory) a change removed, if it is an
    /// artifact or file delete.
    pub fn deleted_content(&self) -> Option<(ContentArea, &str)> {
        match self {
            Change::ArtifactDeleted { path } => Some((ContentArea::Artifacts, path)),
            Change::FileDeleted { path } => Some((ContentArea::Files, path)),
            _ => None,
        }
    }

    /// Whether a record of `kind` (see [`Change::kind`]) is one whose
    /// `asset_class` is `Access` or none (principals, tokens, role
    /// assignments, workspaces' lifecycle, epochs): what caches of verified
    /// credentials depend on. Read from the kind alone, by the prefixes in
    /// [`ACCESS_KIND_PREFIXES`] (the stored journal can be filtered by them).
    pub fn kind_touches_access(kind: &str) -> bool {
        ACCESS_KIND_PREFIXES.iter().any(|prefix| kind.starts_with(prefix))
    }

    /// A short stable name for the variant, stored beside the payload so that
    /// the journal can be filtered without decoding every record.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::WorkspaceCreated { .. } => "workspace_created",
            Change::WorkspaceUpdated { .. } => "workspace_updated",
            Change::WorkspaceDeleted { .. } => "workspace_deleted",
            Change::WorkspaceRestored { .. } => "workspace_restored",
            Change::ExperimentCreated { .. } => "experiment_created",
            Change::ExperimentRenamed { .. } => "experiment_renamed",
            Change::ExperimentDeleted { .. } => "experiment_deleted",
            Change::ExperimentRestored { .. } => "experiment_restored",
            Change::ExperimentTagSet { .. } => "experiment_tag_set",
            Change::ExperimentTagDeleted { .. } => "experiment_tag_deleted",
            Change::RunCreated { .. } => "run_created",
            Change::RunUpdated { .. } => "run_updated",
            Change::RunDeleted { .. } => "run_deleted",
            Change::RunRestored { .. } => "run_restored",
            Change::RunDataLogged { .. } => "run_data_logged",
            Change::RunTagDeleted { .. } => "run_tag_deleted",
            Change::RunInputsLogged { .. } => "run_inputs_logged",
            Change::RunOutputsLogged { .. } => "run_outputs_logged",
            Change::LoggedModelCreated { .. } => "logged_model_created",
            Change::LoggedModelUpdated { .. } => "logged_model_updated",
            Change::LoggedModelTagsSet { .. } => "logged_model_tags_set",
            Change::LoggedModelTagDeleted { .. } => "logged_model_tag_deleted",
            Change::LoggedModelParamsLogged { .. } => "logged_model_params_logged",
            Change::LoggedModelDeleted { .. } => "logged_model_deleted",
            Change::RegisteredModelCreated { .. } => "registered_model_created",
            Change::RegisteredModelRenamed { .. } => "registered_model_renamed",
            Change::RegisteredModelUpdated { .. } => "registered_model_updated",
            Change::RegisteredModelDeleted { .. } => "registered_model_deleted",
            Change::RegisteredModelTagSet { .. } => "registered_model_tag_set",
            Change::RegisteredModelTagDeleted { .. } => "registered_model_tag_deleted",
            Change::RegisteredModelAliasSet { .. } => "registered_model_alias_set",
            Change::RegisteredModelAliasDeleted { .. } => "registered_model_alias_deleted",
            Change::ModelVersionCreated { .. } => "model_version_created",
            Change::ModelVersionUpdated { .. } => "model_version_updated",
            Change::ModelVersionStageSet { .. } => "model_version_stage_set",
            Change::ModelVersionDeleted { .. } => "model_version_deleted",
            Change::ModelVersionTagSet { .. } => "model_version_tag_set",
            Change::ModelVersionTagDeleted { .. } => "model_version_tag_deleted",
            Change::OriginRecorded { .. } => "origin_recorded",
            Change::ArtifactWritten { .. } => "artifact_written",
            Change::ArtifactDeleted { .. } => "artifact_deleted",
            Change::FileWritten { .. } => "file_written",
            Change::FileDeleted { .. } => "file_deleted",
            Change::EpochBegan { .. } => "epoch_began",
            Change::PrincipalCreated { .. } => "principal_created",
            Change::PrincipalPasswordSet { .. } => "principal_password_set",
            Change::PrincipalDisabled { .. } => "principal_disabled",
            Change::PrincipalDeleted { .. } => "principal_deleted",
            Change::TokenCreated { .. } => "token_created",
            Change::TokenRevoked { .. } => "token_revoked",
            Change::RoleAssigned { .. } => "role_assigned",
            Change::RoleRemoved { .. } => "role_removed",
            Change::WorkspaceRetentionSet { .. } => "workspace_retention_set",
            Change::WorkspaceQuotaSet { .. } => "workspace_quota_set",
            Change::WorkspacePurged { .. } => "workspace_purged",
            Change::ExperimentPurged { .. } => "experiment_purged",
            Change::ExperimentMovedOut { .. } => "experiment_moved_out",
            Change::RegisteredModelMovedOut { .. } => "registered_model_moved_out",
            Change::RunPurged { .. } => "run_purged",
            Change::LoggedModelRestored { .. } => "logged_model_restored",
            Change::LoggedModelPurged { .. } => "logged_model_purged",
            Change::RegisteredModelRestored { .. } => "registered_model_restored",
            Change::RegisteredModelPurged { .. } => "registered_model_purged",
            Change::ModelVersionRestored { .. } => "model_version_restored",
            Change::ModelVersionPurged { .. } => "model_version_purged",
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_access_kind_prefixes_name_exactly_the_access_and_classless_changes() {
        use super::{AssetClass, Change};
        use crate::access::Role;
        let touching = vec![
            Change::WorkspaceCreated {
                workspace_id: "w".into(),
                name: "n".into(),
                description: String::new(),
                time: 1,
            },
            Change::WorkspaceUpdated {
                description: String::new(),
                time: 1,
            },
            Change::WorkspaceDeleted { time: 1 },
            Change::WorkspaceRestored { time: 1 },
            Change::WorkspaceRetentionSet {
                retention_days: 7,
                purge_protection: false,
                time: 1,
            },
            Change::WorkspaceQuotaSet {
                storage_quota: None,
                time: 1,
            },
            Change::WorkspacePurged {
                keep_artifacts: false,
                time: 1,
            },
            Change::EpochBegan {
                epoch: 2,
                primary: "a".into(),
                fork: Default::default(),
                time: 1,
            },
            Change::PrincipalCreated {
                name: "p".into(),
                kind: "user".into(),
                password_hash: None,
                time: 1,
            },
            Change::PrincipalPasswordSet {
                name: "p".into(),
                password_hash: None,
                time: 1,
            },
            Change::PrincipalDisabled {
                name: "p".into(),
                disabled: true,
                time: 1,
            },
            Change::PrincipalDeleted {
                name: "p".into(),
                time: 1,
            },
            Change::TokenCreated {
                token_id: "t".into(),
                principal: "p".into(),
                token_hash: "h".into(),
                description: String::new(),
                expires_at: None,
                time: 1,
            },
            Change::TokenRevoked {
                token_id: "t".into(),
                time: 1,
            },
            Change::RoleAssigned {
                principal: "p".into(),
                role: Role::Reader,
                workspace_id: None,
                time: 1,
            },
            Change::RoleRemoved {
                principal: "p".into(),
                role: Role::Reader,
                workspace_id: None,
                time: 1,
            },
        ];
        for change in &touching {
            assert!(
                change
                    .asset_class()
                    .is_none_or(|class| class == AssetClass::Access),
                "{}",
                change.kind()
            );
            assert!(Change::kind_touches_access(change.kind()), "{}", change.kind());
        }
        // Every other class's kinds (listed by `kind`) fall outside them.
        for kind in [
            "experiment_created",
            "run_created",
            "run_data_logged",
            "logged_model_created",
            "registered_model_created",
            "model_version_created",
            "artifact_written",
            "file_written",
            "origin_recorded",
        ] {
            assert!(!Change::kind_touches_access(kind), "{kind}");
        }
    }

    use super::*;

    #[test]
    fn non_finite_metrics_round_trip_through_the_payload() {
        let change = Change::RunDataLogged {
            run_id: "r".into(),
            metrics: vec![
                Metric {
                    key: "nan".into(),
                    value: f64::NAN,
                    timestamp: 1,
                    step: 0,
                    dataset_name: None,
                    dataset_digest: None,
                    model_id: None,
                    run_id: None,
                },
                Metric {
                    key: "inf".into(),
                    value: f64::NEG_INFINITY,
                    timestamp: 1,
                    step: 0,
                    dataset_name: None,
                    dataset_digest: None,
                    model_id: None,
                    run_id: None,
                },
            ],
            params: vec![],
            tags: vec![],
        };
        let payload = JournalRecord::encode_change(&change);
        assert!(
            payload.contains("\"NaN\"") && payload.contains("\"-Infinity\""),
            "{payload}"
        );
        let Change::RunDataLogged { metrics, .. } =
            JournalRecord::decode_change(FORMAT_VERSION, &payload).unwrap()
        else {
            panic!("wrong variant")
        };
        assert!(metrics[0].value.is_nan());
        assert_eq!(metrics[1].value, f64::NEG_INFINITY);
    }

    #[test]
    fn registry_deletes_of_format_2_and_older_read_as_purges() {
        let model = r#"{"type":"registered_model_deleted","name":"m","time":5}"#;
        let version = r#"{"type":"model_version_deleted","name":"m","version":"2","time":6}"#;
        for format in [1, 2] {
            assert_eq!(
                JournalRecord::decode_change(format, model).unwrap(),
                Change::RegisteredModelPurged {
                    name: "m".into(),
                    time: 5
                }
            );
            assert_eq!(
                JournalRecord::decode_change(format, version).unwrap(),
                Change::ModelVersionPurged {
                    name: "m".into(),
                    version: "2".into(),
                    time: 6
                }
            );
        }
        // From format 3 on they are soft deletes, read as written.
        assert_eq!(
            JournalRecord::decode_change(3, model).unwrap(),
            Change::RegisteredModelDeleted {
                name: "m".into(),
                time: 5,
                kept_as: None,
            }
        );
        assert_eq!(
            JournalRecord::decode_change(3, version).unwrap().kind(),
            "model_version_deleted"
        );
        // Other kinds are untouched by the upgrade.
        let run = r#"{"type":"run_deleted","run_id":"r","time":1}"#;
        assert_eq!(
            JournalRecord::decode_change(2, run).unwrap().kind(),
            "run_deleted"
        );
    }

    #[test]
    fn whole_records_of_format_2_upgrade_their_registry_deletes() {
        let record = |format: i32| {
            format!(
                r#"{{"seq":1,"workspace_id":"w","hlc":1,"origin_region":"r","origin_seq":1,"epoch":1,"format":{format},"recorded_at":1,"change":{{"type":"registered_model_deleted","name":"m","time":5}}}}"#
            )
        };
        let old: JournalRecord = serde_json::from_str(&record(2)).unwrap();
        assert_eq!(old.change.kind(), "registered_model_purged");
        let new: JournalRecord = serde_json::from_str(&record(3)).unwrap();
        assert_eq!(new.change.kind(), "registered_model_deleted");
        // And a record round-trips unchanged.
        assert_eq!(
            serde_json::from_str::<JournalRecord>(&serde_json::to_string(&new).unwrap()).unwrap(),
            new
        );
    }

    #[test]
    fn registry_deletes_before_format_7_kept_the_name() {
        let old = r#"{"type":"registered_model_deleted","name":"m","time":5}"#;
        for format in [3, 6, 7] {
            assert_eq!(
                JournalRecord::decode_change(format, old).unwrap(),
                Change::RegisteredModelDeleted {
                    name: "m".into(),
                    time: 5,
                    kept_as: None,
                }
            );
        }
        let restored = r#"{"type":"registered_model_restored","name":"m","time":5}"#;
        assert_eq!(
            JournalRecord::decode_change(6, restored).unwrap(),
            Change::RegisteredModelRestored {
                name: "m".into(),
                time: 5,
                kept_as: None,
            }
        );
        let new = Change::RegisteredModelDeleted {
            name: "m".into(),
            time: 5,
            kept_as: Some("m:0123abcd".into()),
        };
        let payload = JournalRecord::encode_change(&new);
        assert!(payload.contains("\"kept_as\":\"m:0123abcd\""), "{payload}");
        assert_eq!(
            JournalRecord::decode_change(FORMAT_VERSION, &payload).unwrap(),
            new
        );
        // Without a key, the payload is what format 6 wrote.
        let in_place = Change::RegisteredModelDeleted {
            name: "m".into(),
            time: 5,
            kept_as: None,
        };
        assert_eq!(JournalRecord::encode_change(&in_place), old);
    }

    #[test]
    fn a_newer_format_is_refused_not_misread() {
        let error = JournalRecord::decode_change(FORMAT_VERSION + 1, "{}").unwrap_err();
        assert!(error.contains("newer"), "{error}");
    }
}
