//! `POST /api/tandem/v1/restores`: a restore into the region this client
//! talks to, its progress streamed as NDJSON lines.

use serde::{Deserialize, Serialize};
use tandem_core::model::Millis;

use crate::{ClientError, ClientResult, TandemClient};

/// What to restore (the request body; see tandem-backup's `restore::http`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSpec {
    pub from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// RFC 3339 text or milliseconds since the epoch (as text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_name: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreProgress {
    pub phase: String,
    pub done: u64,
    pub total: u64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    pub workspace: String,
    pub workspace_id: String,
    pub source_region: String,
    pub position: i64,
    pub position_recorded_at: Millis,
    pub records: i64,
    pub artifacts: u64,
    /// Files of the workspace's file share (absent from older servers).
    #[serde(default)]
    pub files: u64,
    pub bytes: u64,
}

impl TandemClient {
    /// Runs a restore in this client's region, calling `progress` for each
    /// progress line; the restore's result, or its error as the server
    /// reported it (`ClientError::Api` with the MLflow-style code). A restore
    /// is all or nothing at the server whether or not this client follows it
    /// to the end.
    pub async fn restore(
        &self,
        spec: &RestoreSpec,
        mut progress: impl FnMut(&RestoreProgress),
    ) -> ClientResult<RestoreResult> {
        let body = serde_json::to_value(spec).expect("restore specs encode");
        let result = self
            .ndjson_operation("/api/tandem/v1/restores", body, |line| {
                if let Ok(line) = serde_json::from_value::<RestoreProgress>(line.clone()) {
                    progress(&line);
                }
            })
            .await?;
        serde_json::from_value(result)
            .map_err(|error| ClientError::Decode(format!("restore result: {error}")))
    }
}
