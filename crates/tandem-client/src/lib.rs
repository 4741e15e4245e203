//! A client of the Tandem HTTP API. The CLI uses nothing else to reach a
//! server, so everything the CLI can do, a user's script can do over HTTP.
//!
//! Architecture invariant: no access to a store or storage, only HTTP.
//!
//! Every method addresses the client's base URL, which may be the
//! deployment's gateway or one region directly: a forced failover and the
//! quarantine of divergent records are per region, so the CLI builds a client
//! per region URL with [`TandemClient::at`].

mod access;
mod backup;
mod files;
mod retention;

pub use files::{Download, FileListing, SalvageListing, SalvagedFile};

pub use retention::DeletedItem;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_core::diagnostics::{RegionDiagnostics, DIAGNOSTICS_FORMAT};
use tandem_core::journal::JournalRecord;
use tandem_core::merge::Conflict;
mod restore;
pub use restore::{RestoreProgress, RestoreResult, RestoreSpec};

use tandem_core::model::{Millis, Workspace};

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

    /// Whether the server answered that the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("RESOURCE_DOES_NOT_EXIST")
    }
}

/// One region of the deployment, as `GET /api/tandem/v1/regions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionEntry {
    pub name: String,
    /// Where the region's API answers: the address to use for requests that
    /// must reach this region itself.
    pub url: String,
    /// `primary` or `secondary`, as the answering region sees it.
    #[serde(default)]
    pub role: String,
}

/// What a failover did (`POST /api/tandem/v1/failover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverReport {
    /// The primary before the failover, when known.
    pub from: Option<String>,
    /// The new primary.
    pub to: String,
    /// The new primary's leadership epoch.
    pub epoch: i64,
    /// Planned (handover by the old primary) or forced (taken by the target).
    pub planned: bool,
    /// Planned: the old primary's journal head, every record of which the
    /// new primary held before it took over.
    pub records_confirmed: Option<i64>,
    /// Whether the new epoch's fork holds every record the old primary had.
    pub zero_loss: bool,
    /// Forced: records the old primary holds past the new epoch's fork,
    /// counted in its journal once it stepped down (what its quarantine
    /// takes); None when they could not be counted.
    pub records_possibly_lost: Option<i64>,
    /// Whether `records_possibly_lost` is a count.
    #[serde(default)]
    pub loss_known: bool,
    /// Loss unknown: at least this many records are lost.
    #[serde(default)]
    pub loss_lower_bound: Option<i64>,
    /// Loss unknown: why.
    #[serde(default)]
    pub loss_reason: Option<String>,
    /// Forced over a primary that was still serving, as the caller accepted.
    #[serde(default)]
    pub accepted_data_loss: bool,
    pub duration_ms: u64,
    /// Where the new epoch forked from each region's journal.
    #[serde(default)]
    pub fork: BTreeMap<String, i64>,
}

/// A journal record a region set aside because a newer epoch voided it (a
/// deposed primary's write no one else had), kept until someone decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergentRecord {
    /// `<origin region>-<origin seq>`: the same in every region holding it.
    pub id: String,
    /// Its position in the holding region's journal.
    pub seq: i64,
    pub voided_by_epoch: i64,
    pub reason: String,
    pub found_at: Millis,
    /// `quarantined` or `applied`.
    pub status: String,
    /// For an artifact write, where its bytes are: `pending`, `kept` or `missing`.
    #[serde(default)]
    pub artifact_state: Option<String>,
    /// The journal position, at the primary that re-applied it, of the new change.
    #[serde(default)]
    pub applied_seq: Option<i64>,
    #[serde(default)]
    pub applied_at: Option<Millis>,
    pub record: JournalRecord,
}

/// One region's quarantine (`GET /api/tandem/v1/divergence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionDivergence {
    /// The region that answered, whose quarantine this is.
    pub region: String,
    pub records: Vec<DivergentRecord>,
}

/// One quarantined record and the region holding it
/// (`GET /api/tandem/v1/divergence/{id}` and its `apply`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldDivergentRecord {
    pub region: String,
    pub record: DivergentRecord,
}

/// How long opening a connection may take. Commands that ask every region
/// in turn must not hang on one that is partitioned away; requests
/// themselves have no limit, since a planned failover waits for catch-up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a read of a region's status or quarantine may take, answer
/// included. A region that accepts connections but never answers (stopped,
/// overloaded, or a gateway waiting on one) must not hang a command that asks
/// every region; the gateway's own retries for a read last 15 s.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

pub type ClientResult<T> = Result<T, ClientError>;

#[derive(Debug, Clone)]
pub struct TandemClient {
    base: String,
    http: reqwest::Client,
}

/// How a client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// An API token (`Authorization: Bearer`).
    Token(String),
    /// A user's name and password (HTTP Basic).
    Password { username: String, password: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(***)"),
            Credentials::Password { username, .. } => write!(f, "Password({username}, ***)"),
        }
    }
}

impl Credentials {
    fn header(&self) -> ClientResult<reqwest::header::HeaderValue> {
        use base64::Engine;
        let value = match self {
            Credentials::Token(token) => format!("Bearer {}", token.trim()),
            Credentials::Password { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
        };
        let mut header = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
            ClientError::Decode("credentials hold characters a header cannot carry".to_string())
        })?;
        header.set_sensitive(true);
        Ok(header)
    }
}

impl TandemClient {
    pub fn new(base: &str) -> ClientResult<Self> {
        Self::with_credentials(base, None)
    }

    /// A client that sends `credentials` with every request.
    pub fn with_credentials(base: &str, credentials: Option<&Credentials>) -> ClientResult<Self> {
        Self::with_options(base, credentials, None)
    }

    /// [`Self::with_credentials`], also trusting the PEM CA `ca_pem` for
    /// `https://` servers (`--ca-file`, `TANDEM_CA_FILE`).
    pub fn with_options(
        base: &str,
        credentials: Option<&Credentials>,
        ca_pem: Option<&[u8]>,
    ) -> ClientResult<Self> {
        let base = base.trim_end_matches('/').to_string();
        url::Url::parse(&base).map_err(|error| ClientError::Transport {
            url: base.clone(),
            message: error.to_string(),
        })?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(credentials) = credentials {
            headers.insert(reqwest::header::AUTHORIZATION, credentials.header()?);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .default_headers(headers);
        if let Some(pem) = ca_pem {
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|error| ClientError::Transport {
                    url: base.clone(),
                    message: format!("the CA file is not valid PEM: {error}"),
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|error| ClientError::Transport {
            url: base.clone(),
            message: error.to_string(),
        })?;
        Ok(TandemClient { base, http })
    }

    /// A client of another base URL (typically one region of the
    /// deployment) sharing this one's connection pool.
    pub fn at(&self, base: &str) -> ClientResult<Self> {
        let base = base.trim_end_matches('/').to_string();
        url::Url::parse(&base).map_err(|error| ClientError::Transport {
            url: base.clone(),
            message: error.to_string(),
        })?;
        Ok(TandemClient {
            base,
            http: self.http.clone(),
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
            message: with_causes(&error),
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

    /// Moves experiments and registered models from `workspace` to
    /// another of the deployment, in one transaction (`tandem move`).
    pub async fn move_objects(
        &self,
        workspace: &str,
        request: &tandem_core::transfer::MoveRequest,
    ) -> ClientResult<tandem_core::transfer::MoveOutcome> {
        let url = self.url(&format!("/api/tandem/v1/workspaces/{workspace}/move"));
        self.whole(self.http.post(&url).json(request), &url).await
    }

    /// The deployment's status as this region sees it: roles, positions,
    /// lag, RPO per class.
    pub async fn regions(&self) -> ClientResult<Value> {
        let url = self.url("/api/tandem/v1/regions");
        let response = self.send(self.http.get(&url).timeout(READ_TIMEOUT), &url).await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// The deployment's regions and their URLs, as the answering region
    /// knows them from the deployment file.
    pub async fn region_list(&self) -> ClientResult<Vec<RegionEntry>> {
        let url = self.url("/api/tandem/v1/regions");
        self.json(self.http.get(&url).timeout(READ_TIMEOUT), &url, "regions")
            .await
    }

    /// What this region sees of its own part in a failover: its clock, the
    /// witness, its storage, its peers' view of its secret, its backups,
    /// its deployment's digest (`tandem doctor`). Must be sent to the
    /// region itself, not the gateway.
    pub async fn diagnostics(&self) -> ClientResult<RegionDiagnostics> {
        let url = self.url("/api/tandem/v1/diagnostics");
        let diagnostics: RegionDiagnostics = self
            .whole(self.http.get(&url).timeout(READ_TIMEOUT), &url)
            .await?;
        if diagnostics.format > DIAGNOSTICS_FORMAT {
            return Err(ClientError::Decode(format!(
                "diagnostics format {} is newer than this client's {DIAGNOSTICS_FORMAT}; upgrade tandem",
                diagnostics.format
            )));
        }
        Ok(diagnostics)
    }

    /// Makes `to` the primary. Planned (`force = false`): sent to the current
    /// primary (or the gateway), which hands over once `to` holds its whole
    /// journal. Forced: sent to region `to` itself, which takes leadership
    /// from a primary that is gone.
    /// `force` takes leadership at the target (send it to the target);
    /// `accept_data_loss` lets it do so while the primary still serves.
    pub async fn failover(
        &self,
        to: &str,
        force: bool,
        accept_data_loss: bool,
    ) -> ClientResult<FailoverReport> {
        let url = self.url("/api/tandem/v1/failover");
        let request = self
            .http
            .post(&url)
            .json(&json!({ "to": to, "force": force, "accept_data_loss": accept_data_loss }));
        self.whole(request, &url).await
    }

    /// `tandem verify`: every region's replica of every workspace (or one)
    /// compared; the report names what differs.
    pub async fn verify(&self, workspace: Option<&str>) -> ClientResult<Value> {
        let url = self.url("/api/tandem/v1/verify");
        let request = self.http.post(&url).json(&json!({ "workspace": workspace }));
        self.whole(request, &url).await
    }

    /// This region's quarantine: records a newer epoch voided.
    pub async fn divergence(&self) -> ClientResult<RegionDivergence> {
        let url = self.url("/api/tandem/v1/divergence");
        self.whole(self.http.get(&url).timeout(READ_TIMEOUT), &url).await
    }

    /// One record of this region's quarantine; `RESOURCE_DOES_NOT_EXIST` when
    /// this region does not hold it.
    pub async fn divergent_record(&self, id: &str) -> ClientResult<HeldDivergentRecord> {
        let url = self.url(&format!("/api/tandem/v1/divergence/{}", path_segment(id)));
        self.whole(self.http.get(&url).timeout(READ_TIMEOUT), &url).await
    }

    /// Re-applies a quarantined record as a new change at the primary. Must
    /// be sent to a region holding the record (it forwards to the primary).
    pub async fn apply_divergent_record(&self, id: &str) -> ClientResult<HeldDivergentRecord> {
        let url = self.url(&format!("/api/tandem/v1/divergence/{}/apply", path_segment(id)));
        self.whole(self.http.post(&url), &url).await
    }

    /// Decodes the whole response body as `T`.
    async fn whole<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> ClientResult<T> {
        let response = self.send(request, url).await?;
        let body: Value = response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))?;
        serde_json::from_value(body).map_err(|error| ClientError::Decode(error.to_string()))
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

/// An error and its causes, `: `-separated: reqwest's own message ("error
/// sending request") says nothing of what went wrong (refused, timed out).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

/// Percent-encodes one path segment, so an id can never address another route.
fn path_segment(value: &str) -> String {
    let mut url = url::Url::parse("http://segment.invalid/").expect("a constant URL parses");
    url.path_segments_mut()
        .expect("an http URL has path segments")
        .push(value);
    url.path().trim_start_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("eastus-12"), "eastus-12");
        assert_eq!(path_segment("../apply"), "..%2Fapply");
        assert_eq!(path_segment("a b?c"), "a%20b%3Fc");
    }

    #[test]
    fn a_client_at_another_url_keeps_its_own_base() {
        let gateway = TandemClient::new("http://127.0.0.1:5080/").unwrap();
        let region = gateway.at("http://127.0.0.1:6001/").unwrap();
        assert_eq!(gateway.base_url(), "http://127.0.0.1:5080");
        assert_eq!(region.base_url(), "http://127.0.0.1:6001");
        assert!(gateway.at("not a url").is_err());
    }
}
