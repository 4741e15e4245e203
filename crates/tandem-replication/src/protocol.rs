//! The replication protocol's endpoints, served by every region:
//!
//! - `GET /api/tandem/v1/replication/journal?after=N&region=R`: the journal
//!   after N as NDJSON lines `{"record": …}`, kept open, with a
//!   `{"heartbeat": {"head": H}}` line after every batch of records and every
//!   second when idle;
//! - `GET /api/tandem/v1/replication/artifacts/{workspace_id}/{path}?sha256=D`:
//!   an artifact's bytes by workspace id (409 if the content is no longer D,
//!   410 if it is gone), and the same for a file of the file share under
//!   `…/replication/files/…`;
//! - `POST /api/tandem/v1/replication/ack {"region", "applied"}`.
//!
//! - `POST /api/tandem/v1/replication/promote {"from", "expected_epoch", "head"}`:
//!   a planned failover's handover to this region;
//! - `POST /api/tandem/v1/replication/reapply {"holder", "record"}`: at the
//!   primary, re-applies a change another region holds in quarantine;
//! - `GET /api/tandem/v1/replication/quarantine/{id}`: a quarantined
//!   artifact write's bytes.
//!
//! These require `Authorization: Bearer <replication secret>` when the
//! deployment has one. Also, for operators: `GET /api/tandem/v1/regions`
//! (roles, readiness, positions, lag, RPO per class), `GET /metrics` (Prometheus),
//! `POST /api/tandem/v1/failover {"to", "force"}`, and the quarantine:
//! `GET /api/tandem/v1/divergence[/{id}]`, `POST
//! /api/tandem/v1/divergence/{id}/apply`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tandem_api::openapi::{tags, ErrorBody};
use tandem_artifacts::ArtifactKey;
use tandem_core::journal::ContentArea;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{now_millis, Region, Role};

const PAGE: i64 = 500;
const HEARTBEAT: Duration = Duration::from_secs(1);

fn api() -> OpenApiRouter<Arc<Region>> {
    OpenApiRouter::new()
        .routes(routes!(journal))
        .routes(routes!(artifact))
        .routes(routes!(file))
        .routes(routes!(ack))
        .routes(routes!(promote))
        .routes(routes!(reapply))
        .routes(routes!(quarantined_bytes))
        .routes(routes!(failover))
        .routes(routes!(list_divergence))
        .routes(routes!(get_divergence))
        .routes(routes!(apply_divergence))
        .routes(routes!(regions))
        .routes(routes!(beyond_fork))
        .routes(routes!(fingerprint))
        .routes(routes!(fingerprint_rows))
        .routes(routes!(run_verify, last_verify))
        .routes(routes!(crate::doctor::doctor))
}

pub fn routes(region: Arc<Region>) -> Router {
    api()
        .split_for_parts()
        .0
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            region.clone(),
            crate::replicas::forward_to_holder,
        ))
        .with_state(region)
}

/// The name of the replication secret's security scheme in the document.
const SECRET_SCHEME: &str = "replication_secret";

/// The OpenAPI document of the replication, failover and quarantine
/// operations, with the replication secret as a bearer scheme.
pub fn openapi_part() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
    let mut doc = api().split_for_parts().1;
    doc.merge(crate::diagnostics::openapi_part());
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            SECRET_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    doc
}

/// A JSON document whose shape is the server's own (status reports,
/// failover reports, journal records): documented as an object.
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)] // A document type.
pub(crate) struct Document(serde_json::Value);

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error_code": code, "message": message.into() })),
    )
        .into_response()
}

/// Checks the bearer token against the replication secret, in time that
/// does not depend on where they differ; the refusal to send, if any.
pub(crate) fn unauthorized(region: &Region, headers: &HeaderMap) -> Option<Response> {
    let secret = region.secret()?;
    (!tandem_http::presents_bearer(headers, secret)).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "replication requires the deployment's replication secret",
        )
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JournalQuery {
    /// Records after this position; also says the caller applied it.
    after: Option<i64>,
    /// The following region's name.
    region: Option<String>,
}

/// Marks a peer's stream open while it lives.
struct StreamGuard {
    region: Arc<Region>,
    peer: Option<String>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(peer) = &self.peer {
            self.region.set_streaming(peer, false);
        }
    }
}

/// The journal after a position, kept open: NDJSON lines `{"record": …}`,
/// and `{"heartbeat": {"head": H}}` after each batch and every second idle.
#[utoipa::path(get, path = "/api/tandem/v1/replication/journal", tag = tags::REPLICATION, operation_id = "replication_journal",
    params(JournalQuery),
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "NDJSON stream of records and heartbeats", content_type = "application/x-ndjson", body = String),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
    ))]
async fn journal(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Query(query): Query<JournalQuery>,
) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    let after = query.after.unwrap_or(0).max(0);
    if let Some(peer) = &query.region {
        // Asking for the records after N says N is durably applied there.
        region.acknowledge(peer, after);
        region.set_streaming(peer, true);
    }
    let guard = StreamGuard {
        region: region.clone(),
        peer: query.region.clone(),
    };
    let head = region.store.subscribe_head();
    // The first heartbeat goes out at once, not after a second of silence:
    // the head it carries is what a follower must reach to be caught up
    // (and ready).
    let greeted = false;
    let stream = futures::stream::unfold(
        (guard, head, after, greeted),
        |(guard, mut head, position, greeted)| async move {
            loop {
                let records = match guard.region.store.journal_after(position, None, PAGE).await {
                    Ok(records) => records,
                    Err(error) => {
                        tracing::error!(%error, "cannot read the journal for replication");
                        return Some((
                            Err(std::io::Error::other(error.to_string())),
                            (guard, head, position, greeted),
                        ));
                    }
                };
                if let Some(last) = records.last() {
                    let next = last.seq;
                    let mut chunk = Vec::with_capacity(records.len() * 256);
                    for record in &records {
                        serde_json::to_writer(&mut chunk, &json!({ "record": record }))
                            .expect("records encode");
                        chunk.push(b'\n');
                    }
                    // The head as of now, so the follower knows how far behind it
                    // is even while records keep coming (not only when idle).
                    let current = (*head.borrow()).max(next);
                    serde_json::to_writer(&mut chunk, &json!({ "heartbeat": { "head": current } }))
                        .expect("heartbeats encode");
                    chunk.push(b'\n');
                    return Some((Ok(bytes::Bytes::from(chunk)), (guard, head, next, true)));
                }
                if !greeted {
                    let line = format!("{}\n", json!({ "heartbeat": { "head": *head.borrow() } }));
                    return Some((Ok(bytes::Bytes::from(line)), (guard, head, position, true)));
                }
                let region = guard.region.clone();
                tokio::select! {
                    changed = head.changed() => match changed {
                        Ok(()) => continue,
                        Err(_) => return None,
                    },
                    _ = region.stopped() => return None,
                    _ = tokio::time::sleep(HEARTBEAT) => {
                        let line = format!("{}\n", json!({ "heartbeat": { "head": *head.borrow() } }));
                        return Some((Ok(bytes::Bytes::from(line)), (guard, head, position, true)));
                    }
                }
            }
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ArtifactQuery {
    /// The content expected (409 if the bytes are no longer these).
    sha256: Option<String>,
}

/// An artifact's bytes by workspace id, for a following region.
#[utoipa::path(get, path = "/api/tandem/v1/replication/artifacts/{workspace_id}/{*path}", tag = tags::REPLICATION, operation_id = "replication_artifact",
    params(
        ("workspace_id" = String, Path, description = "The workspace's id"),
        ("path" = String, Path, description = "The artifact's path in the workspace's storage"),
        ArtifactQuery,
    ),
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
        (status = 409, description = "The content is no longer the one asked for", body = ErrorBody),
        (status = 410, description = "The artifact is gone", body = ErrorBody),
    ))]
async fn artifact(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ArtifactQuery>,
) -> Response {
    content(&region, &headers, &params, &query, ContentArea::Artifacts).await
}

/// A file of the file share's bytes by workspace id, for a following region.
#[utoipa::path(get, path = "/api/tandem/v1/replication/files/{workspace_id}/{*path}", tag = tags::REPLICATION, operation_id = "replication_file",
    params(
        ("workspace_id" = String, Path, description = "The workspace's id"),
        ("path" = String, Path, description = "The file's path in the share"),
        ArtifactQuery,
    ),
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
        (status = 409, description = "The content is no longer the one asked for", body = ErrorBody),
        (status = 410, description = "The file is gone", body = ErrorBody),
    ))]
async fn file(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<ArtifactQuery>,
) -> Response {
    content(&region, &headers, &params, &query, ContentArea::Files).await
}

/// An artifact's or file's bytes, if they are still the content `sha256`
/// names.
async fn content(
    region: &Region,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    query: &ArtifactQuery,
    area: ContentArea,
) -> Response {
    if let Some(response) = unauthorized(region, headers) {
        return response;
    }
    let workspace_id = params.get("workspace_id").cloned().unwrap_or_default();
    let path = params.get("path").cloned().unwrap_or_default();
    let key = match crate::content::storage_key(&workspace_id, area, &path) {
        Ok(key) => key,
        Err(err) => return error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", err),
    };
    if let Some(expected) = &query.sha256 {
        let noun = crate::content::noun(area);
        match crate::content::recorded(region, &workspace_id, area, &path).await {
            Ok(Some((_, sha256))) if &sha256 == expected => {}
            Ok(Some(_)) => {
                return error(
                    StatusCode::CONFLICT,
                    "RESOURCE_CONFLICT",
                    format!("the {noun} was overwritten since"),
                )
            }
            Ok(None) => {
                return error(
                    StatusCode::GONE,
                    "RESOURCE_DOES_NOT_EXIST",
                    format!("the {noun} was deleted since"),
                )
            }
            Err(err) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    err.to_string(),
                )
            }
        }
    }
    stream_bytes(region, &key, StatusCode::GONE).await
}

/// Streams the bytes at `key`; `missing` is the status when there are none.
async fn stream_bytes(region: &Region, key: &ArtifactKey, missing: StatusCode) -> Response {
    match region.artifacts.get_stream(key).await {
        Ok((size, stream)) => (
            [
                (header::CONTENT_LENGTH, size.to_string()),
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(err) if err.is_not_found() => error(missing, "RESOURCE_DOES_NOT_EXIST", err.to_string()),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            err.to_string(),
        ),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Ack {
    /// The acknowledging region.
    region: String,
    /// The position it applied durably.
    applied: i64,
}

/// A following region's acknowledgement of what it applied.
#[utoipa::path(post, path = "/api/tandem/v1/replication/ack", tag = tags::REPLICATION, operation_id = "replication_ack",
    request_body = Ack,
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "Recorded", body = Document),
        (status = 400, description = "Unknown region or malformed body", body = ErrorBody),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
    ))]
async fn ack(State(region): State<Arc<Region>>, headers: HeaderMap, Json(ack): Json<Ack>) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    if region.deployment.region(&ack.region).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            format!("unknown region '{}'", ack.region),
        );
    }
    region.acknowledge(&ack.region, ack.applied);
    Json(json!({})).into_response()
}

/// The status document behind `GET /api/tandem/v1/regions` and `tandem status`.
pub async fn status(region: &Region) -> serde_json::Value {
    let position = region.store.journal_position().await.ok();
    let head = position.as_ref().map(|p| p.head).unwrap_or_default();
    let epoch = position.as_ref().map(|p| p.epoch).unwrap_or_default();
    let now = now_millis();
    let primary = region.primary_name();
    let mut regions = Vec::new();
    for spec in region.deployment.regions() {
        let role = if spec.name == primary {
            "primary"
        } else {
            "secondary"
        };
        let mut entry = json!({ "name": spec.name, "url": spec.url, "role": role, "pair": spec.pair });
        if !spec.replicas.is_empty() {
            entry["replicas"] = json!(spec.replicas);
        }
        if spec.name == region.name {
            entry["journal_head"] = json!(head);
            entry["epoch"] = json!(epoch);
            entry["this_region"] = json!(true);
        }
        let followed_by_peer = region.is_primary() || region.multi_writer();
        match region.role() {
            _ if spec.name != region.name && followed_by_peer => {
                let peer = region.peers().get(&spec.name).cloned().unwrap_or_default();
                let pending = region
                    .store
                    .unreplicated_since(peer.applied)
                    .await
                    .unwrap_or_default();
                let lag_records: i64 = pending.iter().map(|p| p.records).sum();
                let lag_bytes: i64 = pending.iter().map(|p| p.bytes).sum();
                let oldest = pending.iter().map(|p| p.oldest_recorded_at).min();
                entry["applied"] = json!(peer.applied);
                entry["streaming"] = json!(peer.streaming);
                entry["acknowledged_at"] = json!(peer.acknowledged_at);
                entry["lag_records"] = json!(lag_records);
                entry["lag_bytes"] = json!(lag_bytes);
                entry["lag_seconds"] = json!(oldest.map(|t| (now - t) as f64 / 1000.0).unwrap_or(0.0));
            }
            _ if spec.name == region.name && !region.sources().is_empty() => {
                let states = region.follow_states();
                entry["following"] = json!(states.values().collect::<Vec<_>>());
                // The headline figures: the primary's stream, else the
                // furthest-behind source.
                let follow = match region.role() {
                    Role::Secondary { primary } if states.contains_key(&primary) => states[&primary].clone(),
                    _ => states
                        .values()
                        .max_by_key(|state| state.source_head - state.applied)
                        .cloned()
                        .unwrap_or_default(),
                };
                entry["applied"] = json!(follow.applied);
                entry["source_head"] = json!(follow.source_head);
                entry["lag_records"] = json!((follow.source_head - follow.applied).max(0));
                entry["connected"] = json!(follow.connected);
                entry["records_applied"] = json!(follow.records_applied);
                entry["artifacts_copied"] = json!(follow.artifacts_copied);
                entry["artifact_bytes_copied"] = json!(follow.artifact_bytes_copied);
                entry["last_error"] = json!(follow.last_error);
                entry["lag_seconds"] = json!(if follow.source_head > follow.applied {
                    follow
                        .last_applied_recorded_at
                        .map(|t| (now - t) as f64 / 1000.0)
                        .unwrap_or(0.0)
                } else {
                    0.0
                });
            }
            _ => {}
        }
        regions.push(entry);
    }
    let readiness = tandem_api::ready::ReadinessProbe::readiness(region).await;
    let lag = region.class_lag();
    let classes: Vec<_> = region
        .deployment
        .classes()
        .map(|(class, policy)| {
            let class_lag = lag.get(&class).copied().unwrap_or_default();
            json!({
                "class": class.as_str(),
                "level": policy.level.as_str(),
                "sync": policy.sync,
                "max_rpo_seconds": policy.max_rpo.map(|d| d.as_secs_f64()),
                "rpo_seconds": class_lag.rpo_ms as f64 / 1000.0,
                "lag_records": class_lag.records,
                "lag_bytes": class_lag.bytes,
                "refusing_writes": class_lag.refusing_writes,
            })
        })
        .collect();
    json!({
        "deployment": region.deployment.name,
        "region": region.name,
        "role": if region.is_primary() { "primary" } else { "secondary" },
        "accepting_writes": region.accepting_writes(),
        // What `/ready` says; the gateway routes only to ready regions.
        "ready": readiness.ready,
        "readiness": readiness.checks,
        "handing_over": region.handing_over.load(std::sync::atomic::Ordering::Acquire),
        // Which process answered, and which runs the region's duties
        // (several replicas may share the region's database).
        "replica": {
            "id": region.replica(),
            "url": region.url(),
            "holds_duties": region.holds_duties(),
            "shared_database": region.shared(),
        },
        "duty_holder": region.holder(),
        "replicas": replicas_seen(region),
        "restoring": region.restoring(),
        "primary": primary,
        "epoch": epoch,
        "witness": region.deployment.witness.as_ref().map(|spec| json!({
            "kind": match &spec.kind {
                tandem_deployment::WitnessKind::Etcd { .. } => "etcd",
                tandem_deployment::WitnessKind::Embedded { .. } => "embedded",
            },
            "ttl_seconds": spec.ttl.as_secs_f64(),
            "renew_interval_seconds": spec.renew_interval.as_secs_f64(),
            "retry_timeout_seconds": spec.retry_timeout.as_secs_f64(),
            "leading": region.leadership.lock().expect("leadership lock poisoned").as_ref().map(|lease| lease.epoch),
        })),
        "failover": {
            "mode": match region.deployment.failover.mode {
                tandem_deployment::FailoverMode::Automatic => "automatic",
                tandem_deployment::FailoverMode::Manual => "manual",
            },
            "grace_period_seconds": region.deployment.failover.grace_period.as_secs_f64(),
            "maximum_lag_on_failover": region.deployment.failover.maximum_lag_on_failover,
        },
        "journal_head": head,
        "regions": regions,
        "classes": classes,
        "epochs": region.store.epochs().await.unwrap_or_default(),
        "last_failover": region.last_failover.lock().unwrap().clone(),
    })
}

/// The region's replicas alive in the last seconds; which holds the duties
/// is the holder's own word (its document), not each one's last heartbeat.
fn replicas_seen(region: &Region) -> Vec<serde_json::Value> {
    let holder = region.holder().map(|holder| holder.replica);
    region
        .replicas_seen()
        .into_iter()
        .map(|seen| {
            json!({
                "replica": seen.replica,
                "url": seen.url,
                "holds_duties": holder.as_deref() == Some(seen.replica.as_str()),
                "seen_at": seen.seen_at,
            })
        })
        .collect()
}

/// The deployment as this region sees it: roles, readiness, journal
/// positions, lag and RPO per class, epochs (what `tandem status` shows).
#[utoipa::path(get, path = "/api/tandem/v1/regions", tag = tags::REPLICATION,
    responses((status = 200, description = "The deployment's status", body = Document)))]
async fn regions(State(region): State<Arc<Region>>) -> Json<serde_json::Value> {
    Json(status(&region).await)
}

/// `GET /metrics`: the process's series (requests, store, replication,
/// backups, collection) with the deployment's gauges brought up to date
/// first, from the same document `GET /api/tandem/v1/regions` answers.
async fn metrics(State(region): State<Arc<Region>>) -> Response {
    let document = status(&region).await;
    set_deployment_gauges(&region.name, region.is_primary(), &document);
    tandem_telemetry::render()
}

/// Sets the gauges of the deployment's state as this region sees it.
fn set_deployment_gauges(this: &str, primary: bool, document: &serde_json::Value) {
    use metrics::gauge;
    let number = |value: &serde_json::Value| value.as_f64().unwrap_or(0.0);
    let this = this.to_string();
    gauge!("tandem_journal_head", "region" => this.clone()).set(number(&document["journal_head"]));
    gauge!("tandem_epoch", "region" => this.clone()).set(number(&document["epoch"]));
    gauge!("tandem_is_primary", "region" => this.clone()).set(f64::from(u8::from(primary)));
    for entry in document["regions"].as_array().into_iter().flatten() {
        if entry.get("applied").is_none() {
            continue;
        }
        let name = entry["name"].as_str().unwrap_or_default().to_string();
        let labels = [("region", name), ("reporter", this.clone())];
        gauge!("tandem_replication_applied", &labels).set(number(&entry["applied"]));
        gauge!("tandem_replication_lag_records", &labels).set(number(&entry["lag_records"]));
        gauge!("tandem_replication_lag_seconds", &labels).set(number(&entry["lag_seconds"]));
    }
    for class in document["classes"].as_array().into_iter().flatten() {
        let name = class["class"].as_str().unwrap_or_default().to_string();
        let labels = [("region", this.clone()), ("class", name)];
        gauge!("tandem_rpo_seconds", &labels).set(number(&class["rpo_seconds"]));
        let refused = class["refusing_writes"].as_bool().unwrap_or(false);
        gauge!("tandem_writes_refused", &labels).set(f64::from(u8::from(refused)));
    }
}

pub(crate) fn unavailable(message: String) -> Response {
    refuse(tandem_core::Error::new(
        tandem_core::ErrorKind::Unavailable,
        message,
    ))
}

fn refuse(error: tandem_core::Error) -> Response {
    tandem_api::error::ApiError::from(error).into_response()
}

fn store_refusal(error: tandem_store::StoreError) -> Response {
    tandem_api::error::ApiError::from(error).into_response()
}

/// A planned failover's handover to this region (sent by the primary).
#[utoipa::path(post, path = "/api/tandem/v1/replication/promote", tag = tags::REPLICATION,
    request_body = Document,
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "Promoted", body = Document),
        (status = 400, description = "Malformed request or stale epoch", body = ErrorBody),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
    ))]
async fn promote(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Json(request): Json<crate::leadership::PromoteRequest>,
) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    let initiator = request.initiated_by.clone().or_else(tandem_store::actor::current);
    match tandem_store::actor::scope(initiator, crate::leadership::promote(&region, request)).await {
        Ok(promoted) => Json(promoted).into_response(),
        Err(error) => refuse(error),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FailoverRequest {
    /// The region to make primary.
    to: String,
    /// Take the lease whoever holds it (sent to the target itself).
    #[serde(default)]
    force: bool,
    /// With `force`: proceed even though the primary is reachable and
    /// serving, losing the writes it acknowledged that the target lacks.
    #[serde(default)]
    accept_data_loss: bool,
}

/// `tandem failover`: planned at the primary; forced at the target itself.
#[utoipa::path(post, path = "/api/tandem/v1/failover", tag = tags::REPLICATION,
    request_body = FailoverRequest,
    responses(
        (status = 200, description = "The failover's report", body = Document),
        (status = 400, description = "Malformed request, or sent to the wrong region", body = ErrorBody),
        (status = 409, description = "The failover cannot proceed now (INVALID_STATE): for a forced one, the primary is reachable and serving and `accept_data_loss` is not set", body = ErrorBody),
    ))]
async fn failover(State(region): State<Arc<Region>>, Json(request): Json<FailoverRequest>) -> Response {
    let outcome = if request.force {
        if request.to != region.name {
            let url = region
                .deployment
                .region(&request.to)
                .map(|spec| spec.url.clone())
                .unwrap_or_default();
            return refuse(tandem_core::Error::invalid(format!(
                "a forced failover is sent to its target: region '{}' ({url}), not '{}'",
                request.to, region.name
            )));
        }
        crate::leadership::forced_failover(&region, request.accept_data_loss).await
    } else {
        crate::leadership::planned_failover(&region, &request.to).await
    };
    match outcome {
        Ok(report) => Json(report).into_response(),
        Err(error) => refuse(error),
    }
}

/// The records this region holds in quarantine (written past a fork).
#[utoipa::path(get, path = "/api/tandem/v1/divergence", tag = tags::REPLICATION,
    responses((status = 200, description = "Quarantined records", body = Document)))]
async fn list_divergence(State(region): State<Arc<Region>>) -> Response {
    match region.store.list_divergence().await {
        Ok(records) => Json(json!({ "region": region.name, "records": records })).into_response(),
        Err(error) => store_refusal(error),
    }
}

/// One quarantined record.
#[utoipa::path(get, path = "/api/tandem/v1/divergence/{id}", tag = tags::REPLICATION,
    params(("id" = String, Path, description = "The quarantined record's id")),
    responses(
        (status = 200, description = "The record", body = Document),
        (status = 404, description = "No such record", body = ErrorBody),
    ))]
async fn get_divergence(State(region): State<Arc<Region>>, Path(id): Path<String>) -> Response {
    match region.store.get_divergence(&id).await {
        Ok(record) => Json(json!({ "region": region.name, "record": record })).into_response(),
        Err(error) => store_refusal(error),
    }
}

/// Re-applies a change this region holds in quarantine: here if this
/// region is the primary, else by handing it to the primary.
#[utoipa::path(post, path = "/api/tandem/v1/divergence/{id}/apply", tag = tags::REPLICATION,
    params(("id" = String, Path, description = "The quarantined record's id")),
    responses(
        (status = 200, description = "Applied at the primary", body = Document),
        (status = 400, description = "The change no longer applies", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
    ))]
async fn apply_divergence(State(region): State<Arc<Region>>, Path(id): Path<String>) -> Response {
    match crate::quarantine::apply(&region, &id).await {
        Ok(record) => Json(json!({ "region": region.name, "record": record })).into_response(),
        Err(error) => refuse(error),
    }
}

#[derive(Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReapplyRequest {
    /// The region that holds the record in quarantine.
    pub holder: String,
    #[schema(value_type = Object)]
    pub record: tandem_core::journal::JournalRecord,
}

/// At the primary: re-applies a change another region holds in quarantine.
#[utoipa::path(post, path = "/api/tandem/v1/replication/reapply", tag = tags::REPLICATION,
    request_body = ReapplyRequest,
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "Applied; the new record's position", body = Document),
        (status = 400, description = "The change no longer applies", body = ErrorBody),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
    ))]
async fn reapply(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Json(request): Json<ReapplyRequest>,
) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    match crate::quarantine::reapply_here(&region, &request.holder, &request.record).await {
        Ok(seq) => Json(json!({ "applied_seq": seq })).into_response(),
        Err(error) => refuse(error),
    }
}

/// A quarantined artifact write's bytes.
#[utoipa::path(get, path = "/api/tandem/v1/replication/quarantine/{id}", tag = tags::REPLICATION,
    params(("id" = String, Path, description = "The quarantined record's id")),
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
        (status = 404, description = "No such bytes", body = ErrorBody),
    ))]
async fn quarantined_bytes(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    let key = match crate::quarantine::bytes_key(&id) {
        Ok(key) => key,
        Err(error) => return refuse(error),
    };
    stream_bytes(&region, &key, StatusCode::NOT_FOUND).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FingerprintQuery {
    /// Only this workspace (by id).
    workspace_id: Option<String>,
}

/// This region's fingerprints of its workspaces, for `tandem verify`.
#[utoipa::path(get, path = "/api/tandem/v1/replication/fingerprint", tag = tags::REPLICATION,
    params(FingerprintQuery),
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "Per workspace and class: the changes held and each table's digest", body = Document),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
    ))]
async fn fingerprint(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Query(query): Query<FingerprintQuery>,
) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    match crate::verify::local_fingerprints(&region, query.workspace_id.as_deref()).await {
        Ok(fingerprints) => Json(fingerprints).into_response(),
        Err(error) => store_refusal(error),
    }
}

/// One table's rows of one workspace, with their digests.
#[utoipa::path(get, path = "/api/tandem/v1/replication/fingerprint/{workspace_id}/{table}", tag = tags::REPLICATION,
    params(
        ("workspace_id" = String, Path, description = "The workspace's id"),
        ("table" = String, Path, description = "A state table, or `artifact_bytes` / `file_bytes`"),
    ),
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "The rows' keys and digests", body = Document),
        (status = 400, description = "Not a state table", body = ErrorBody),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
    ))]
async fn fingerprint_rows(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    Path((workspace_id, table)): Path<(String, String)>,
) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    match crate::verify::local_rows(&region, &workspace_id, &table).await {
        Ok(rows) => Json(rows).into_response(),
        Err(error) => store_refusal(error),
    }
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// Only this workspace (name or id).
    #[serde(default)]
    workspace: Option<String>,
}

/// `tandem verify`: compares every region's replica of every workspace (or
/// one) and names the objects that differ.
#[utoipa::path(post, path = "/api/tandem/v1/verify", tag = tags::REPLICATION,
    request_body(content = Option<VerifyRequest>, description = "Optional; empty means every workspace"),
    responses(
        (status = 200, description = "The report (`ok`: every workspace equal in every region)", body = Document),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
async fn run_verify(State(region): State<Arc<Region>>, body: axum::body::Bytes) -> Response {
    let request: VerifyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        VerifyRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => {
                return refuse(tandem_core::Error::invalid(format!(
                    "Malformed verify request: {error}"
                )))
            }
        }
    };
    match crate::verify::verify(&region, request.workspace.as_deref()).await {
        Ok(report) => Json(report).into_response(),
        Err(error) => refuse(error),
    }
}

/// The last verification this region ran (on demand or periodically).
#[utoipa::path(get, path = "/api/tandem/v1/verify", tag = tags::REPLICATION,
    responses(
        (status = 200, description = "The last report", body = Document),
        (status = 404, description = "This region has not verified yet", body = ErrorBody),
    ))]
async fn last_verify(State(region): State<Arc<Region>>) -> Response {
    let last = region.last_verify.lock().unwrap().clone();
    match last {
        Some(report) => Json(report).into_response(),
        None => refuse(tandem_core::Error::not_found(format!(
            "region '{}' has not verified its replicas since it started",
            region.name
        ))),
    }
}

/// At a deposed primary: how many of its records the epoch `epoch`, forked
/// at `fork`, fences (what its quarantine takes), for the new primary's
/// forced-failover report.
#[utoipa::path(post, path = "/api/tandem/v1/replication/beyond-fork", tag = tags::REPLICATION,
    request_body = Document,
    security(("replication_secret" = [])),
    responses(
        (status = 200, description = "`{region, records}`", body = Document),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Wrong or missing replication secret", body = ErrorBody),
    ))]
async fn beyond_fork(
    State(region): State<Arc<Region>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = unauthorized(&region, &headers) {
        return response;
    }
    let request: crate::forced::BeyondForkRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return refuse(tandem_core::Error::invalid(format!("Malformed request: {error}"))),
    };
    match region
        .store
        .records_beyond_fork(request.epoch, &request.fork)
        .await
    {
        Ok(records) => Json(crate::forced::BeyondFork {
            region: region.name.clone(),
            records,
        })
        .into_response(),
        Err(error) => store_refusal(error),
    }
}
