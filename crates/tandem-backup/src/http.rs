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
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_artifacts::ArtifactStore;
use tandem_core::ErrorKind;
use tandem_store::MetadataStore;

use crate::create::{create_backup, CreateOptions};
use crate::error::BackupError;
use crate::prune::{parse_ttl, prune, Retention};
use crate::repo::Repository;
use crate::verify::verify;
use crate::Progress;

/// What the endpoints work with: the region's store and storage.
#[derive(Clone)]
pub struct BackupService {
    pub store: Arc<dyn MetadataStore>,
    pub storage: ArtifactStore,
    pub region: String,
}

pub fn routes(service: BackupService) -> Router {
    Router::new()
        .route("/api/tandem/v1/backups", get(list).post(create))
        .route("/api/tandem/v1/backups/verify", post(verify_backups))
        .route("/api/tandem/v1/backups/prune", post(prune_backups))
        .with_state(service)
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
    tokio::spawn(async move {
        let line = match work(progress).await {
            Ok(result) => json!({ "result": result }),
            Err(error) => {
                tracing::warn!(%error, "backup operation failed");
                json!({ "error": error_json(&error) })
            }
        };
        let _ = sender.send(line);
    });
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    to: String,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    full: bool,
}

async fn create(State(service): State<BackupService>, body: Bytes) -> Response {
    let request: CreateRequest = match decode(&body) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let repo = match Repository::open(&request.to) {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    from: String,
}

async fn list(Query(query): Query<Value>) -> Response {
    let query: ListQuery = match serde_json::from_value(query) {
        Ok(query) => query,
        Err(error) => return refuse(BackupError::invalid(format!("Malformed query: {error}"))),
    };
    let outcome = async {
        let repo = Repository::open(&query.from)?;
        let info = repo.info().await?;
        let manifests = repo.manifests().await?;
        let regions = repo.regions().await?;
        let mut archives = Vec::new();
        for region in regions {
            let segments = repo.segments(&region).await?;
            archives.push(json!({
                "region": region,
                "segments": segments.len(),
                "first_seq": segments.first().map(|s| s.first_seq),
                "last_seq": segments.last().map(|s| s.last_seq),
                "last_recorded_at": segments.last().map(|s| s.last_recorded_at),
            }));
        }
        let backups: Vec<Value> = manifests
            .iter()
            .map(|m| {
                json!({
                    "id": m.id, "kind": m.kind, "base": m.base, "region": m.region, "position": m.position,
                    "position_recorded_at": m.position_recorded_at, "created_at": m.created_at,
                    "workspace": m.workspace,
                    "workspaces": m.workspaces.iter().map(|w| json!({"workspace_id": w.workspace_id, "name": w.name, "records": w.records, "artifacts": w.artifacts.len(), "files": w.files.len()})).collect::<Vec<_>>(),
                    "copied_bytes": m.copied_bytes, "copied_blobs": m.copied_blobs,
                })
            })
            .collect();
        Ok::<_, BackupError>(json!({ "repository": repo.url(), "format": info.format, "backups": backups, "archives": archives }))
    }
    .await;
    match outcome {
        Ok(value) => Json(value).into_response(),
        Err(error) => refuse(error),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    from: String,
    #[serde(default)]
    backup: Option<String>,
}

async fn verify_backups(body: Bytes) -> Response {
    let request: VerifyRequest = match decode(&body) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let repo = match Repository::open(&request.from) {
        Ok(repo) => repo,
        Err(error) => return refuse(error),
    };
    ndjson(move |progress| async move {
        let report = verify(&repo, request.backup.as_deref(), progress.as_ref()).await?;
        Ok(serde_json::to_value(report).expect("reports encode"))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneRequest {
    from: String,
    #[serde(default)]
    keep: Option<u32>,
    /// A duration: `30d`, `12h`, …
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn prune_backups(State(service): State<BackupService>, body: Bytes) -> Response {
    let request: PruneRequest = match decode(&body) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let checked = (|| {
        let ttl = request.ttl.as_deref().map(parse_ttl).transpose()?;
        let retention = Retention::new(request.keep, ttl)?;
        Ok::<_, BackupError>((Repository::open(&request.from)?, retention))
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
