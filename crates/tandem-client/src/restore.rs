//! `POST /api/tandem/v1/restores`: a restore into the region this client
//! talks to, its progress streamed as NDJSON lines.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tandem_core::model::Millis;

use crate::{with_causes, ClientError, ClientResult, TandemClient};

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
    /// reported it (`ClientError::Api` with the MLflow-style code).
    pub async fn restore(
        &self,
        spec: &RestoreSpec,
        mut progress: impl FnMut(&RestoreProgress),
    ) -> ClientResult<RestoreResult> {
        let url = self.url("/api/tandem/v1/restores");
        let response = self.send(self.http.post(&url).json(spec), &url).await?;
        let status = response.status().as_u16();
        let mut body = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        loop {
            while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let value: Value = serde_json::from_slice(&line)
                    .map_err(|error| ClientError::Decode(format!("restore progress line: {error}")))?;
                if let Some(line) = value.get("progress") {
                    if let Ok(line) = serde_json::from_value::<RestoreProgress>(line.clone()) {
                        progress(&line);
                    }
                } else if let Some(result) = value.get("result") {
                    return serde_json::from_value(result.clone())
                        .map_err(|error| ClientError::Decode(format!("restore result: {error}")));
                } else if let Some(error) = value.get("error") {
                    return Err(ClientError::Api {
                        status,
                        code: error["error_code"]
                            .as_str()
                            .unwrap_or("INTERNAL_ERROR")
                            .to_string(),
                        message: error["message"].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
            match body.next().await {
                Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                Some(Err(error)) => {
                    return Err(ClientError::Transport {
                        url,
                        message: format!(
                            "the restore's progress stream broke ({}); the restore itself goes on or \
                             ended all or nothing at the server: check the workspace list",
                            with_causes(&error)
                        ),
                    })
                }
                None => {
                    return Err(ClientError::Decode(
                        "the restore's progress stream ended without a result".to_string(),
                    ))
                }
            }
        }
    }
}
