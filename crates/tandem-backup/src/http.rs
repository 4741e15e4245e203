//! The backup endpoints of the Tandem API, served by every region:
//!
//! - `POST /api/tandem/v1/backups` `{to, workspace?, full?}`: create a backup;
//! - `GET /api/tandem/v1/backups?from=URL`: the repository's backups;
//! - `POST /api/tandem/v1/backups/verify` `{from, backup?}`;
//! - `POST /api/tandem/v1/backups/prune` `{from, keep?, ttl?, dry_run?}`.
//!
//! Long operations answer NDJSON, one JSON object per line:
//! `{"progress": {phase, done, total, unit}}` lines as the work goes, then
//! `{"result": …}` or `{"error": {error_code, message}}` — the HTTP status is
//! sent before the outcome is known, so the last line is what counts.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_artifacts::ArtifactStore;
use tandem_core::model::Millis;
use tandem_core::ErrorKind;
use tandem_store::MetadataStore;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::create::{create_backup, CreateOptions};
use crate::error::BackupError;
use crate::format::{BackupKind, BackupManifest};
use crate::prune::{parse_ttl, prune, PruneReport, Retention};
use crate::repo::Repository;
use crate::verify::{verify, VerifyReport};
use crate::Progress;

/// The OpenAPI tag of the backup and restore operations.
pub(crate) const TAG: &str = "backups";

/// MLflow's error JSON, as the API's other errors (same schema name, so
/// the merged document holds one).
#[derive(ToSchema)]
#[allow(dead_code)] // A document type: the body is built by `error_json`.
pub(crate) struct ErrorBody {
    error_code: String,
    message: String,
}

/// One line of a long operation's NDJSON answer: `progress` lines as the
/// work goes, then one line with `result` or `error` (the HTTP status is
/// sent before the outcome is known, so the last line is what counts).
#[derive(ToSchema)]
#[allow(dead_code)] // A document type: lines are built by `ndjson`.
pub(crate) struct StreamLine<T> {
    progress: Option<Progress>,
    result: Option<T>,
    error: Option<ErrorBody>,
}

/// What the endpoints work with: the region's store and storage.
#[derive(Clone)]
pub struct BackupService {
    pub store: Arc<dyn MetadataStore>,
    pub storage: ArtifactStore,
    pub region: String,
    /// The repositories requests may name.
    pub policy: Arc<crate::policy::RepositoryPolicy>,
}

impl BackupService {
    /// Opens the repository a request names, if the policy allows it.
    fn open(&self, url: &str) -> Result<Repository, BackupError> {
        self.policy.check(url)?;
        Repository::open(url)
    }
}

fn api() -> OpenApiRouter<BackupService> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(verify_backups))
        .routes(routes!(prune_backups))
}

pub fn routes(service: BackupService) -> Router {
    api().split_for_parts().0.with_state(service)
}

/// The OpenAPI document of the backup operations (restores included).
pub fn openapi_part() -> utoipa::openapi::OpenApi {
    let mut doc = api().split_for_parts().1;
    doc.merge(crate::restore::http::openapi_part());
    doc
}

/// MLflow's error JSON and status for a backup error.
pub fn error_json(error: &BackupError) -> Value {
    json!({ "error_code": error.kind().mlflow_code(), "message": error.to_string() })
}

fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn refuse(error: BackupError) -> Response {
    (status_of(error.kind()), Json(error_json(&error))).into_response()
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BackupError> {
    serde_json::from_slice(body).map_err(|error| BackupError::invalid(format!("Malformed request: {error}")))
}

/// Runs `work` in the background and streams its progress and outcome.
pub(crate) fn ndjson<F, Fut>(work: F) -> Response
where
    F: FnOnce(Arc<dyn Fn(Progress) + Send + Sync>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Value, BackupError>> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let progress_sender = sender.clone();
    let progress: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(move |progress: Progress| {
        let _ = progress_sender.send(json!({ "progress": progress }));
    });
    // The work outlives the request's task: it keeps the request's author,
    // whom every record it journals names.
    let author = tandem_store::actor::current();
    tokio::spawn(tandem_store::actor::scope(author, async move {
        let line = match work(progress).await {
            Ok(result) => json!({ "result": result }),
            Err(error) => {
                tracing::warn!(%error, "backup operation failed");
                json!({ "error": error_json(&error) })
            }
        };
        let _ = sender.send(line);
    }));
    let lines = futures::stream::unfold(receiver, |mut receiver| async move {
        let value = receiver.recv().await?;
        let mut line = serde_json::to_vec(&value).expect("json encodes");
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(Bytes::from(line)), receiver))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .expect("static response parts")
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    /// The repository: `file:///dir`, `s3://bucket/prefix`, `az://…`, `gs://…`.
    to: String,
    /// Only this workspace (default: every workspace of the region).
    #[serde(default)]
    workspace: Option<String>,
    /// A full backup even when an incremental one could build on the last.
    #[serde(default)]
    full: bool,
}

/// Creates a backup (full, or incremental on the repository's last one).
#[utoipa::path(post, path = "/api/tandem/v1/backups", tag = TAG, operation_id = "create_backup",
    request_body = CreateRequest,
    responses(
        (status = 200, description = "NDJSON: progress lines, then the manifest or the error", content_type = "application/x-ndjson", body = StreamLine<BackupManifest>),
        (status = 400, description = "Malformed request or repository URL", body = ErrorBody),
    ))]
async fn create(State(service): State<BackupService>, body: Bytes) -> Response {
    let request: CreateRequest = match decode(&body) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let repo = match service.open(&request.to) {
        Ok(repo) => repo,
        Err(error) => return refuse(error),
    };
    ndjson(move |progress| async move {
        let options = CreateOptions {
            workspace: request.workspace,
            full: request.full,
        };
        let manifest = create_backup(
            service.store.as_ref(),
            &service.storage,
            &service.region,
            &repo,
            &options,
            progress.as_ref(),
        )
        .await?;
        Ok(serde_json::to_value(manifest).expect("manifests encode"))
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The repository's URL.
    from: String,
}

/// A workspace in a backup, summarized.
#[derive(Serialize, ToSchema)]
struct WorkspaceSummary {
    workspace_id: String,
    name: String,
    records: i64,
    artifacts: usize,
    files: usize,
}

#[derive(Serialize, ToSchema)]
struct BackupSummary {
    id: String,
    kind: BackupKind,
    base: Option<String>,
    region: String,
    position: i64,
    position_recorded_at: Millis,
    created_at: Millis,
    workspace: Option<String>,
    workspaces: Vec<WorkspaceSummary>,
    copied_bytes: i64,
    copied_blobs: i64,
}

/// A region's archived journal in the repository.
#[derive(Serialize, ToSchema)]
struct ArchiveSummary {
    region: String,
    segments: usize,
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    last_recorded_at: Option<Millis>,
}

#[derive(Serialize, ToSchema)]
struct BackupListing {
    repository: String,
    format: u32,
    backups: Vec<BackupSummary>,
    archives: Vec<ArchiveSummary>,
}

/// The repository's backups and archived journals.
#[utoipa::path(get, path = "/api/tandem/v1/backups", tag = TAG, operation_id = "list_backups",
    params(ListQuery),
    responses(
        (status = 200, description = "The repository's contents", body = BackupListing),
        (status = 400, description = "Malformed query or repository URL", body = ErrorBody),
        (status = 404, description = "No repository there", body = ErrorBody),
    ))]
async fn list(State(service): State<BackupService>, Query(query): Query<Value>) -> Response {
    let query: ListQuery = match serde_json::from_value(query) {
        Ok(query) => query,
        Err(error) => return refuse(BackupError::invalid(format!("Malformed query: {error}"))),
    };
    let outcome = async {
        let repo = service.open(&query.from)?;
        let info = repo.info().await?;
        let manifests = repo.manifests().await?;
        let regions = repo.regions().await?;
        let mut archives = Vec::new();
        for region in regions {
            let segments = repo.segments(&region).await?;
            archives.push(ArchiveSummary {
                segments: segments.len(),
                first_seq: segments.first().map(|s| s.first_seq),
                last_seq: segments.last().map(|s| s.last_seq),
                last_recorded_at: segments.last().map(|s| s.last_recorded_at),
                region,
            });
        }
        let backups = manifests
            .into_iter()
            .map(|m| BackupSummary {
                workspaces: m
                    .workspaces
                    .iter()
                    .map(|w| WorkspaceSummary {
                        workspace_id: w.workspace_id.clone(),
                        name: w.name.clone(),
                        records: w.records,
                        artifacts: w.artifacts.len(),
                        files: w.files.len(),
                    })
                    .collect(),
                id: m.id,
                kind: m.kind,
                base: m.base,
                region: m.region,
                position: m.position,
                position_recorded_at: m.position_recorded_at,
                created_at: m.created_at,
                workspace: m.workspace,
                copied_bytes: m.copied_bytes,
                copied_blobs: m.copied_blobs,
            })
            .collect();
        Ok::<_, BackupError>(BackupListing {
            repository: repo.url().to_string(),
            format: info.format,
            backups,
            archives,
        })
    }
    .await;
    match outcome {
        Ok(value) => Json(value).into_response(),
        Err(error) => refuse(error),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// The repository's URL.
    from: String,
    /// Only this backup (with its base); default: every backup.
    #[serde(default)]
    backup: Option<String>,
}

/// Checks every object a backup needs: present, with its size and digest.
#[utoipa::path(post, path = "/api/tandem/v1/backups/verify", tag = TAG,
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "NDJSON: progress lines, then the report or the error", content_type = "application/x-ndjson", body = StreamLine<VerifyReport>),
        (status = 400, description = "Malformed request or repository URL", body = ErrorBody),
    ))]
async fn verify_backups(State(service): State<BackupService>, body: Bytes) -> Response {
    let request: VerifyRequest = match decode(&body) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let repo = match service.open(&request.from) {
        Ok(repo) => repo,
        Err(error) => return refuse(error),
    };
    ndjson(move |progress| async move {
        let report = verify(&repo, request.backup.as_deref(), progress.as_ref()).await?;
        Ok(serde_json::to_value(report).expect("reports encode"))
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PruneRequest {
    /// The repository's URL.
    from: String,
    /// Keep this many newest backups of each series.
    #[serde(default)]
    keep: Option<u32>,
    /// Keep backups younger than this: `30d`, `12h`, …
    #[serde(default)]
    ttl: Option<String>,
    /// Report what would be deleted, delete nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Deletes the backups retention no longer keeps, and what only they used.
#[utoipa::path(post, path = "/api/tandem/v1/backups/prune", tag = TAG,
    request_body = PruneRequest,
    responses(
        (status = 200, description = "NDJSON: progress lines, then the report or the error", content_type = "application/x-ndjson", body = StreamLine<PruneReport>),
        (status = 400, description = "Malformed request, retention or repository URL", body = ErrorBody),
    ))]
async fn prune_backups(State(service): State<BackupService>, body: Bytes) -> Response {
    let request: PruneRequest = match decode(&body) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let checked = (|| {
        let ttl = request.ttl.as_deref().map(parse_ttl).transpose()?;
        let retention = Retention::new(request.keep, ttl)?;
        Ok::<_, BackupError>((service.open(&request.from)?, retention))
    })();
    let (repo, retention) = match checked {
        Ok(checked) => checked,
        Err(error) => return refuse(error),
    };
    ndjson(move |progress| async move {
        let report = prune(
            &repo,
            Some(&service.storage),
            retention,
            crate::now_millis(),
            request.dry_run,
            progress.as_ref(),
        )
        .await?;
        Ok(serde_json::to_value(report).expect("reports encode"))
    })
}
