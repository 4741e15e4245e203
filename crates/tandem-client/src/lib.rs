//! A client of the Tandem HTTP API. The CLI uses nothing else to reach a
//! server, so everything the CLI can do, a user's script can do over HTTP.
//!
//! Architecture invariant: no access to a store or storage, only HTTP.

use futures::{Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tandem_core::journal::JournalRecord;
use tandem_core::merge::Conflict;
use tandem_core::model::Workspace;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached, or the exchange broke.
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    /// The server's answer could not be understood.
    #[error("unexpected response from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The MLflow-style error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

#[derive(Debug, Clone)]
pub struct TandemClient {
    base: String,
    http: reqwest::Client,
}

impl TandemClient {
    pub fn new(base: &str) -> ClientResult<Self> {
        let base = base.trim_end_matches('/').to_string();
        url::Url::parse(&base).map_err(|error| ClientError::Transport {
            url: base.clone(),
            message: error.to_string(),
        })?;
        Ok(TandemClient {
            base,
            http: reqwest::Client::new(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> ClientResult<reqwest::Response> {
        let response = request.send().await.map_err(|error| ClientError::Transport {
            url: url.to_string(),
            message: error.to_string(),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(ClientError::Api {
            status,
            code: body["error_code"].as_str().unwrap_or("HTTP_ERROR").to_string(),
            message: body["message"].as_str().map(str::to_string).unwrap_or(text),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        field: &str,
    ) -> ClientResult<T> {
        let response = self.send(request, url).await?;
        let mut body: Value = response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))?;
        serde_json::from_value(body[field].take())
            .map_err(|error| ClientError::Decode(format!("{field}: {error}")))
    }

    pub async fn health(&self) -> ClientResult<()> {
        let url = self.url("/health");
        self.send(self.http.get(&url), &url).await.map(|_| ())
    }

    pub async fn list_workspaces(&self, deleted: bool) -> ClientResult<Vec<Workspace>> {
        let url = self.url("/api/tandem/v1/workspaces");
        let request = self.http.get(&url).query(&[("deleted", deleted)]);
        self.json(request, &url, "workspaces").await
    }

    pub async fn create_workspace(&self, name: &str, description: &str) -> ClientResult<Workspace> {
        let url = self.url("/api/tandem/v1/workspaces");
        let request = self
            .http
            .post(&url)
            .json(&json!({ "name": name, "description": description }));
        self.json(request, &url, "workspace").await
    }

    pub async fn get_workspace(&self, name: &str) -> ClientResult<Workspace> {
        let url = self.url(&format!("/api/tandem/v1/workspaces/{name}"));
        self.json(self.http.get(&url), &url, "workspace").await
    }

    pub async fn delete_workspace(&self, name: &str) -> ClientResult<Workspace> {
        let url = self.url(&format!("/api/tandem/v1/workspaces/{name}"));
        self.json(self.http.delete(&url), &url, "workspace").await
    }

    /// The deployment's status as this region sees it: roles, positions,
    /// lag, RPO per class.
    pub async fn regions(&self) -> ClientResult<Value> {
        let url = self.url("/api/tandem/v1/regions");
        let response = self.send(self.http.get(&url), &url).await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Conflicts between concurrent writes of hot-hot classes merged by this
    /// region, newest first.
    pub async fn conflicts(
        &self,
        workspace: Option<&str>,
        limit: Option<i64>,
    ) -> ClientResult<Vec<Conflict>> {
        let url = self.url("/api/tandem/v1/conflicts");
        let mut query = Vec::new();
        if let Some(workspace) = workspace {
            query.push(("workspace", workspace.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.json(self.http.get(&url).query(&query), &url, "conflicts")
            .await
    }

    /// Streams journal records after `after`, decoded one line at a time.
    pub async fn journal(
        &self,
        after: i64,
        workspace: Option<&str>,
        limit: Option<i64>,
    ) -> ClientResult<impl Stream<Item = ClientResult<JournalRecord>>> {
        let url = self.url("/api/tandem/v1/journal");
        let mut query = vec![("after", after.to_string())];
        if let Some(workspace) = workspace {
            query.push(("workspace", workspace.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let response = self.send(self.http.get(&url).query(&query), &url).await?;
        let transport_url = url.clone();
        let chunks = response
            .bytes_stream()
            .map_err(move |error| ClientError::Transport {
                url: transport_url.clone(),
                message: error.to_string(),
            });
        // Re-split the byte stream on newlines: chunks need not align with records.
        let lines = chunks
            .scan(Vec::<u8>::new(), |pending, chunk| {
                let output: Vec<ClientResult<Vec<u8>>> = match chunk {
                    Ok(bytes) => {
                        pending.extend_from_slice(&bytes);
                        let mut lines = Vec::new();
                        while let Some(position) = pending.iter().position(|byte| *byte == b'\n') {
                            let line: Vec<u8> = pending.drain(..=position).collect();
                            lines.push(Ok(line));
                        }
                        lines
                    }
                    Err(error) => vec![Err(error)],
                };
                futures::future::ready(Some(futures::stream::iter(output)))
            })
            .flatten();
        Ok(lines.map(|line| {
            let line = line?;
            serde_json::from_slice::<JournalRecord>(&line)
                .map_err(|error| ClientError::Decode(error.to_string()))
        }))
    }
}
