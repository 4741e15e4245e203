//! Types of soft delete with retention: what a deleted item looks like, the
//! kinds that can be recovered and purged, workspace retention settings and
//! the region's garbage-collection queue.

use serde::{Deserialize, Serialize};
use tandem_core::model::Millis;

/// The kinds of items inside a workspace that can be deleted, recovered and
/// purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeletedKind {
    Experiment,
    Run,
    LoggedModel,
    RegisteredModel,
    ModelVersion,
}

impl DeletedKind {
    pub const ALL: [DeletedKind; 5] = [
        DeletedKind::Experiment,
        DeletedKind::Run,
        DeletedKind::LoggedModel,
        DeletedKind::RegisteredModel,
        DeletedKind::ModelVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletedKind::Experiment => "experiment",
            DeletedKind::Run => "run",
            DeletedKind::LoggedModel => "logged_model",
            DeletedKind::RegisteredModel => "registered_model",
            DeletedKind::ModelVersion => "model_version",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        DeletedKind::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// One deleted item, kept until `purge_after`. A model version's id is
/// `name/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeletedItem {
    pub kind: DeletedKind,
    pub id: String,
    pub name: String,
    pub deletion_time: Millis,
    pub purge_after: Millis,
}

/// Settings given when a workspace is created (None: the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceSettings {
    pub retention_days: Option<i64>,
    pub purge_protection: Option<bool>,
}

/// A change to a workspace's description or retention settings; None keeps
/// the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceUpdate {
    pub description: Option<String>,
    pub retention_days: Option<i64>,
    pub purge_protection: Option<bool>,
    /// `Some(None)` removes the quota; `Some(Some(bytes))` sets it.
    pub storage_quota: Option<Option<i64>>,
}

/// A storage prefix of purged items waiting to be removed from this
/// region's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcEntry {
    pub prefix: String,
    pub workspace_id: String,
    pub attempts: i64,
}

/// What one pass of the automatic purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub workspaces: usize,
    pub items: usize,
}
