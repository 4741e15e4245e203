//! What this region can say about its own part in a failover, for
//! `tandem doctor`:
//!
//! - `GET /api/tandem/v1/diagnostics`: a [`RegionDiagnostics`] document —
//!   its wall clock, a round trip to the witness, one real write to its
//!   metadata database and to its artifact storage (and the room left on
//!   its local volumes), one authenticated call to every other region,
//!   the backup repository as it sees it, the digest of the deployment it
//!   loaded, its TLS certificate;
//! - `GET /api/tandem/v1/replication/hello`: the call a peer makes to learn
//!   whether this region accepts its replication secret (authenticated
//!   like every replication endpoint; no effect).
//!
//! Everything here is measured when asked, never cached: a doctor that
//! reports what was true a minute ago would pass a failover that fails now.
//! One diagnostics run at a time per region (the rest wait), so the probes
//! cannot be multiplied into load by asking often.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use tandem_artifacts::ArtifactKey;
use tandem_core::diagnostics::{
    BackupReport, PeerOutcome, PeerProbe, RegionDiagnostics, StorageProbe, TlsReport, VolumeSpace,
    WitnessProbe, WriteProbe, DIAGNOSTICS_FORMAT,
};
use tandem_deployment::WitnessKind;

use crate::{now_millis, Region};

/// How long one peer may take to answer the secret probe.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long reading the backup repository may take before the report says
/// it could not.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the artifact storage probe writes: a prefix no workspace, backup
/// or quarantine key can take (they start `workspaces/`, `quarantine/`).
pub const PROBE_PREFIX: &str = "_tandem/diagnostics";

/// What the region's backup repository says (implemented by
/// `tandem-backup`, which this crate cannot depend on).
#[async_trait]
pub trait BackupReporter: Send + Sync {
    async fn report(&self) -> BackupReport;
}

/// What the server knows of this region that the replication runtime does
/// not: where it keeps data on local disks, how it names its database,
/// its backups, its TLS.
pub struct DiagnosticSources {
    /// Local directories the region writes to, each with what lives there
    /// (`data`, `metadata`, `artifacts`).
    pub volumes: Vec<(String, PathBuf)>,
    /// The metadata database's URL, password hidden.
    pub metadata_target: String,
    pub backups: Option<Arc<dyn BackupReporter>>,
    pub tls: TlsReport,
}

struct Diagnostics {
    region: Arc<Region>,
    sources: DiagnosticSources,
    /// One run at a time (see the module's documentation).
    running: tokio::sync::Mutex<()>,
    /// Makes every artifact probe's key unique within this process.
    probes: AtomicU64,
}

pub fn routes(region: Arc<Region>, sources: DiagnosticSources) -> Router {
    let state = Arc::new(Diagnostics {
        region,
        sources,
        running: tokio::sync::Mutex::new(()),
        probes: AtomicU64::new(0),
    });
    api().split_for_parts().0.with_state(state)
}

fn api() -> utoipa_axum::router::OpenApiRouter<Arc<Diagnostics>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(diagnostics))
        .routes(utoipa_axum::routes!(hello))
}

/// The OpenAPI document of the diagnostics operations.
pub fn openapi_part() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// A peer's check that this region accepts its replication secret.
#[utoipa::path(get, path = "/api/tandem/v1/replication/hello", tag = tandem_api::openapi::tags::REPLICATION,
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "`{region, deployment}`: the secret was accepted", body = crate::protocol::Document),
        (status = 401, description = "Wrong or missing replication secret", body = tandem_api::openapi::ErrorBody),
    ))]
async fn hello(State(state): State<Arc<Diagnostics>>, headers: HeaderMap) -> Response {
    let region = &state.region;
    if let Some(refusal) = crate::protocol::unauthorized(region, &headers) {
        return refusal;
    }
    Json(json!({ "region": region.name, "deployment": region.deployment.name })).into_response()
}

/// What only this region can see, for `tandem doctor`: its clock, the
/// witness from here, storage taking writes and free space, peers
/// accepting the secret, backups, its deployment definition and digest.
#[utoipa::path(get, path = "/api/tandem/v1/diagnostics", tag = tandem_api::openapi::tags::REPLICATION,
    responses((status = 200, description = "The region's diagnostics", body = crate::protocol::Document)))]
async fn diagnostics(State(state): State<Arc<Diagnostics>>) -> Json<RegionDiagnostics> {
    let _one_at_a_time = state.running.lock().await;
    let received_at_ms = now_millis();
    let region = &state.region;
    let (witness, storage, peers, backups) = tokio::join!(
        probe_witness(region),
        probe_storage(&state),
        probe_peers(region),
        report_backups(&state.sources),
    );
    Json(RegionDiagnostics {
        format: DIAGNOSTICS_FORMAT,
        region: region.name.clone(),
        deployment: region.deployment.name.clone(),
        received_at_ms,
        deployment_digest: region.deployment.digest().to_string(),
        deployment_definition: region.deployment.definition().clone(),
        witness,
        storage,
        peers,
        backups,
        tls: state.sources.tls.clone(),
        verification: region.last_verify.lock().unwrap().as_ref().map(|report| {
            tandem_core::diagnostics::VerificationSummary {
                verified_by: report.verified_by.clone(),
                finished_at_ms: report.finished_at,
                ok: report.ok,
                differences: report.differences,
                unreachable: report.unreachable.keys().cloned().collect(),
                unverified_workspaces: report
                    .workspaces
                    .iter()
                    .filter(|w| w.status == "unverified")
                    .count(),
            }
        }),
        verify_interval_ms: region
            .deployment
            .verify_interval
            .map(|interval| interval.as_millis() as u64),
        answered_at_ms: now_millis(),
    })
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// One `leader()` round trip to the witness this region uses.
async fn probe_witness(region: &Region) -> Option<WitnessProbe> {
    let spec = region.deployment.witness.as_ref()?;
    let witness = region.witness.as_ref()?;
    let (kind, endpoints) = match &spec.kind {
        WitnessKind::Etcd { endpoints } => ("etcd", endpoints.clone()),
        WitnessKind::Embedded { url } => ("embedded", vec![url.clone()]),
    };
    let started = Instant::now();
    // The client has its own request timeout; this bounds retries inside it.
    let answer = tokio::time::timeout(spec.retry_timeout * 2, witness.leader()).await;
    let round_trip_ms = elapsed_ms(started);
    let (error, leader, epoch) = match answer {
        Ok(Ok(Some(leader))) => (None, Some(leader.region), Some(leader.epoch)),
        Ok(Ok(None)) => (None, None, None),
        Ok(Err(error)) => (Some(error.to_string()), None, None),
        Err(_) => (
            Some(format!(
                "no answer within {:.1}s",
                (spec.retry_timeout * 2).as_secs_f64()
            )),
            None,
            None,
        ),
    };
    Some(WitnessProbe {
        kind: kind.to_string(),
        endpoints,
        retry_timeout_ms: u64::try_from(spec.retry_timeout.as_millis()).unwrap_or(u64::MAX),
        round_trip_ms,
        error,
        leader,
        epoch,
    })
}

async fn probe_storage(state: &Diagnostics) -> StorageProbe {
    let (metadata, artifacts, volumes) = tokio::join!(
        probe_metadata(state),
        probe_artifacts(state),
        volume_space(state.sources.volumes.clone()),
    );
    StorageProbe {
        metadata,
        artifacts,
        volumes,
    }
}

async fn probe_metadata(state: &Diagnostics) -> WriteProbe {
    let started = Instant::now();
    let outcome = state.region.store.probe_write().await;
    WriteProbe {
        target: state.sources.metadata_target.clone(),
        duration_ms: elapsed_ms(started),
        error: outcome.err().map(|error| error.to_string()),
    }
}

/// Writes a small object under [`PROBE_PREFIX`], reads it back, compares,
/// deletes it.
async fn probe_artifacts(state: &Diagnostics) -> WriteProbe {
    let storage = &state.region.artifacts;
    let started = Instant::now();
    let sequence = state.probes.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}-{}-{sequence}", state.region.name, now_millis());
    let outcome = async {
        let key = ArtifactKey::parse(&format!("{PROBE_PREFIX}/{name}")).map_err(|error| error.to_string())?;
        let body = Bytes::from(format!("tandem doctor probe {name}\n"));
        storage
            .put_bytes(&key, body.clone())
            .await
            .map_err(|error| format!("write: {error}"))?;
        let read = async {
            let (_, mut stream) = storage.get_stream(&key).await?;
            let mut read = Vec::with_capacity(body.len());
            while let Some(chunk) = stream.next().await {
                read.extend_from_slice(&chunk?);
            }
            Ok::<_, tandem_artifacts::ArtifactError>(read)
        }
        .await;
        // Deleted whatever the read found: a probe never stays behind.
        let deleted = storage.delete(&key).await;
        let read = read.map_err(|error| format!("read back: {error}"))?;
        if read != body {
            return Err(format!(
                "read back {} bytes that differ from the {} written",
                read.len(),
                body.len()
            ));
        }
        deleted.map_err(|error| format!("delete: {error}"))
    }
    .await;
    WriteProbe {
        target: storage.url().to_string(),
        duration_ms: elapsed_ms(started),
        error: outcome.err(),
    }
}

async fn volume_space(volumes: Vec<(String, PathBuf)>) -> Vec<VolumeSpace> {
    tokio::task::spawn_blocking(move || {
        volumes
            .into_iter()
            .map(|(label, path)| {
                let mut space = VolumeSpace {
                    label,
                    path: path.display().to_string(),
                    total_bytes: 0,
                    available_bytes: 0,
                    error: None,
                };
                match rustix::fs::statvfs(&path) {
                    Ok(stats) => {
                        space.total_bytes = stats.f_blocks.saturating_mul(stats.f_frsize);
                        space.available_bytes = stats.f_bavail.saturating_mul(stats.f_frsize);
                    }
                    Err(error) => space.error = Some(error.to_string()),
                }
                space
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Asks every other region, with this region's replication secret, to
/// accept it.
async fn probe_peers(region: &Region) -> Vec<PeerProbe> {
    let peers = region
        .deployment
        .regions()
        .iter()
        .filter(|spec| spec.name != region.name)
        .map(|spec| async move {
            let url = format!("{}/api/tandem/v1/replication/hello", spec.url);
            let started = Instant::now();
            let request = region.authorized(region.http.get(&url).timeout(PEER_TIMEOUT));
            let (outcome, detail) = match request.send().await {
                Ok(response) if response.status().is_success() => (PeerOutcome::Accepted, None),
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    let message = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|value| value["message"].as_str().map(str::to_string))
                        .unwrap_or(body);
                    let outcome = if status == reqwest::StatusCode::UNAUTHORIZED {
                        PeerOutcome::Refused
                    } else {
                        PeerOutcome::Failed
                    };
                    (outcome, Some(format!("{status}: {message}")))
                }
                Err(error) => (PeerOutcome::Unreachable, Some(root_cause(&error))),
            };
            PeerProbe {
                region: spec.name.clone(),
                url: spec.url.clone(),
                outcome,
                round_trip_ms: elapsed_ms(started),
                detail,
            }
        });
    futures::future::join_all(peers).await
}

async fn report_backups(sources: &DiagnosticSources) -> Option<BackupReport> {
    let reporter = sources.backups.as_ref()?;
    Some(
        match tokio::time::timeout(BACKUP_TIMEOUT, reporter.report()).await {
            Ok(report) => report,
            Err(_) => BackupReport {
                repository: String::new(),
                error: Some(format!(
                    "the backup repository did not answer within {}s",
                    BACKUP_TIMEOUT.as_secs()
                )),
                schedule_seconds: None,
                archive_interval_seconds: 0.0,
                latest: None,
                workspaces: Vec::new(),
                journal_head: 0,
                archived_to: None,
            },
        },
    )
}

/// The innermost cause of an error: reqwest's own message ("error sending
/// request for url …") hides whether the connection was refused or timed
/// out, which is what the operator needs to read.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut innermost = error;
    while let Some(inner) = innermost.source() {
        innermost = inner;
    }
    innermost.to_string()
}
