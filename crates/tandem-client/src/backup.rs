//! Backups: create, list, verify and prune, over the NDJSON progress protocol of
//! `/api/tandem/v1/backups` (progress lines, then a result or an error).

use futures::StreamExt;
use serde_json::{json, Value};

use crate::{ClientError, ClientResult, TandemClient};

impl TandemClient {
    /// Sends a long operation and follows its NDJSON answer: every
    /// `{"progress": …}` line goes to `on_progress`; the final `result` is
    /// returned, a final `error` becomes [`ClientError::Api`].
    pub async fn ndjson_operation(
        &self,
        path: &str,
        body: Value,
        mut on_progress: impl FnMut(&Value),
    ) -> ClientResult<Value> {
        let url = self.url(path);
        let response = self.send(self.http.post(&url).json(&body), &url).await?;
        let mut stream = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let broken = |message: String| ClientError::Transport {
            url: url.clone(),
            message,
        };
        loop {
            while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: Value = serde_json::from_slice(&line)
                    .map_err(|error| ClientError::Decode(format!("progress line: {error}")))?;
                if let Some(progress) = value.get("progress") {
                    on_progress(progress);
                } else if let Some(result) = value.get("result") {
                    return Ok(result.clone());
                } else if let Some(error) = value.get("error") {
                    return Err(ClientError::Api {
                        status: 200,
                        code: error["error_code"]
                            .as_str()
                            .unwrap_or("INTERNAL_ERROR")
                            .to_string(),
                        message: error["message"].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
            match stream.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(error)) => {
                    return Err(broken(format!(
                        "the operation's answer broke off ({}); the operation itself goes on or ended at the server",
                        crate::with_causes(&error)
                    )))
                }
                None => return Err(broken("the server ended the answer without a result".to_string())),
            }
        }
    }

    pub async fn create_backup(
        &self,
        to: &str,
        workspace: Option<&str>,
        full: bool,
        on_progress: impl FnMut(&Value),
    ) -> ClientResult<Value> {
        let body = json!({ "to": to, "workspace": workspace, "full": full });
        self.ndjson_operation("/api/tandem/v1/backups", body, on_progress)
            .await
    }

    /// Applies a retention (`keep` newest backups of each series, or those
    /// younger than `ttl`, e.g. "30d") to a repository; `dry_run` reports
    /// what would go without deleting.
    pub async fn prune_backups(
        &self,
        from: &str,
        keep: Option<u32>,
        ttl: Option<&str>,
        dry_run: bool,
        on_progress: impl FnMut(&Value),
    ) -> ClientResult<Value> {
        let body = json!({ "from": from, "keep": keep, "ttl": ttl, "dry_run": dry_run });
        self.ndjson_operation("/api/tandem/v1/backups/prune", body, on_progress)
            .await
    }

    pub async fn list_backups(&self, from: &str) -> ClientResult<Value> {
        let url = self.url("/api/tandem/v1/backups");
        let response = self
            .send(self.http.get(&url).query(&[("from", from)]), &url)
            .await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    pub async fn verify_backups(
        &self,
        from: &str,
        backup: Option<&str>,
        on_progress: impl FnMut(&Value),
    ) -> ClientResult<Value> {
        let body = json!({ "from": from, "backup": backup });
        self.ndjson_operation("/api/tandem/v1/backups/verify", body, on_progress)
            .await
    }
}
