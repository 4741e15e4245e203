//! [`EmbeddedWitnessServer`]: the state machine behind a mutex, persisted before any change
//! is answered, served over HTTP with axum.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::persist;
use super::state::{GrantContext, Holder, WitnessState};
use super::wire::{
    CampaignRequest, CampaignResponse, ErrorBody, LeaderResponse, LeaseRequest, SeizeRequest, WireLeaderInfo,
    WireLeadership, CAMPAIGN_PATH, HEALTH_PATH, LEADER_PATH, READY_PATH, RENEW_PATH, RESIGN_PATH, SEIZE_PATH,
};
use crate::error::{Result, WitnessError};
use crate::leadership::{check_region, to_unix_ms};
use crate::timings::check_ttl;

/// The embedded witness: one process on one host holding the leader lease of a deployment.
/// Its state lives in memory and in `<data dir>/witness-state.json`; run one server per
/// data directory.
#[derive(Clone)]
pub struct EmbeddedWitnessServer {
    shared: Arc<Shared>,
    tls: Option<tandem_http::tls::Tls>,
}

struct Shared {
    data_dir: PathBuf,
    /// One mutex serialises every operation, persistence included: the witness handles a
    /// few requests per second per region, and serial order is what makes a campaign
    /// atomic.
    state: Mutex<WitnessState>,
    /// Why the state could not be written the last time it changed: the
    /// witness grants nothing it cannot persist, so it is not ready.
    persist_error: std::sync::Mutex<Option<String>>,
    /// The deployment's replication secret: when set, every call but
    /// `/health` and `/ready` must present it as a bearer token.
    secret: Option<String>,
}

impl EmbeddedWitnessServer {
    /// Opens (creating if needed) the witness's data directory and restores its state. A
    /// holder found there gets a full TTL from now, since the time spent down is unknown.
    pub async fn open(data_dir: PathBuf) -> Result<Self> {
        let directory = data_dir.clone();
        let persisted = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&directory).map_err(|error| {
                WitnessError::Unavailable(format!("cannot create {}: {error}", directory.display()))
            })?;
            persist::load(&directory)
        })
        .await
        .map_err(|error| WitnessError::Unavailable(format!("state loading task failed: {error}")))??;
        let state = match persisted {
            Some(persisted) => WitnessState::restore(persisted, Instant::now())?,
            None => WitnessState::empty(),
        };
        tracing::info!(
            data_dir = %data_dir.display(),
            revision = state.revision,
            leader = state.holder.as_ref().map(|holder| holder.region.as_str()),
            "embedded witness state restored"
        );
        Ok(EmbeddedWitnessServer {
            shared: Arc::new(Shared {
                data_dir,
                state: Mutex::new(state),
                persist_error: std::sync::Mutex::new(None),
                secret: None,
            }),
            tls: None,
        })
    }

    /// Requires `secret` (the deployment's replication secret) of every
    /// call but `/health` and `/ready`; without one the witness answers
    /// anyone who reaches it.
    pub fn with_secret(self, secret: Option<String>) -> Self {
        let shared = match Arc::try_unwrap(self.shared) {
            Ok(mut shared) => {
                shared.secret = secret.filter(|secret| !secret.is_empty());
                shared
            }
            Err(_) => panic!("with_secret is called before the witness serves"),
        };
        EmbeddedWitnessServer {
            shared: Arc::new(shared),
            tls: self.tls,
        }
    }

    /// Serves HTTPS with this certificate.
    pub fn with_tls(mut self, tls: Option<tandem_http::tls::Tls>) -> Self {
        self.tls = tls;
        self
    }

    /// The witness's HTTP routes (see the `wire` module for the protocol),
    /// `/health` (the process answers) and `/ready` (its state is loaded and
    /// the last change to it was persisted).
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route(HEALTH_PATH, get(|| async { "OK" }))
            .route(READY_PATH, get(ready))
            .route(CAMPAIGN_PATH, post(campaign))
            .route(RENEW_PATH, post(renew))
            .route(RESIGN_PATH, post(resign))
            .route(SEIZE_PATH, post(seize))
            .route(LEADER_PATH, get(leader))
            .route("/metrics", get(tandem_telemetry::metrics_handler))
            .route_layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                authenticate,
            ))
            .with_state(self.shared.clone());
        tandem_telemetry::instrument(router, "witness")
    }

    /// Serves the witness on `listener` until `shutdown` resolves, then finishes the
    /// requests in flight.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let address = listener
            .local_addr()
            .map_err(|error| WitnessError::Unavailable(format!("listener has no address: {error}")))?;
        tracing::info!(%address, "embedded witness listening");
        // The connection cap, timeouts and TCP_NODELAY of every Tandem server.
        let limits = tandem_http::ServeLimits::from_env()
            .map_err(WitnessError::Unavailable)?
            .fitted_to_fd_limit();
        let router = self.router();
        tandem_http::serve_with(listener, router, limits, self.tls, "witness", shutdown)
            .await
            .map_err(|error| WitnessError::Unavailable(format!("embedded witness server failed: {error}")))?;
        tracing::info!(%address, "embedded witness stopped");
        Ok(())
    }
}

/// Refuses every call but the probes unless it presents the secret (when
/// the witness has one): seizing or resigning the lease is the power to
/// stop a deployment's writes.
async fn authenticate(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let Some(secret) = &shared.secret else {
        return next.run(request).await;
    };
    if path == HEALTH_PATH || path == READY_PATH {
        return next.run(request).await;
    }
    let equal = tandem_http::presents_bearer(request.headers(), secret);
    if equal {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(ErrorBody {
            error_code: "UNAUTHENTICATED".to_string(),
            message: "the witness answers the deployment's regions only: present its replication secret"
                .to_string(),
        }),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Runs the embedded witness with its state in `data_dir` on `listener` until `shutdown`
/// resolves: what a `tandem witness` command calls.
pub async fn serve_embedded(
    listener: TcpListener,
    data_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    EmbeddedWitnessServer::open(data_dir)
        .await?
        .serve(listener, shutdown)
        .await
}

impl Shared {
    /// Applies `operation` to a copy of the state and makes the copy current, after
    /// writing it to disk if its persisted form changed. A failed write leaves the old
    /// state in place and answers `Unavailable`, so nothing is granted that is not on disk.
    async fn apply<T>(&self, operation: impl FnOnce(&mut WitnessState) -> Result<T>) -> Result<T> {
        let mut current = self.state.lock().await;
        let mut next = current.clone();
        // An operation that fails may still have expired a lease; that is kept too.
        let outcome = operation(&mut next);
        let persisted = next.persisted();
        if persisted != current.persisted() {
            let data_dir = self.data_dir.clone();
            let written = tokio::task::spawn_blocking(move || persist::store(&data_dir, &persisted))
                .await
                .map_err(|error| WitnessError::Unavailable(format!("state writing task failed: {error}")))
                .and_then(|written| written);
            *self.persist_error.lock().expect("persist error lock poisoned") =
                written.as_ref().err().map(|error| error.to_string());
            written?;
        }
        *current = next;
        outcome
    }
}

fn grant_context() -> GrantContext {
    // Lease ids are random so that a leadership cannot be renewed by guessing its id from
    // its epoch; zero is avoided because etcd uses it for "no lease".
    let lease_id = (rand::random::<i64>() & i64::MAX).max(1);
    GrantContext {
        now: Instant::now(),
        wall_clock_ms: to_unix_ms(SystemTime::now()),
        lease_id,
    }
}

fn wire_leadership(holder: &Holder) -> WireLeadership {
    WireLeadership {
        region: holder.region.clone(),
        epoch: holder.epoch,
        lease_id: holder.lease_id,
        ttl_seconds: holder.ttl.as_secs(),
        acquired_at_ms: holder.acquired_at_ms,
    }
}

fn checked_ttl(ttl_seconds: u64) -> Result<Duration> {
    let ttl = Duration::from_secs(ttl_seconds);
    check_ttl(ttl)?;
    Ok(ttl)
}

/// A [`WitnessError`] as an HTTP response.
struct ApiError(WitnessError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            WitnessError::LeaseLost | WitnessError::Conflict(_) => StatusCode::CONFLICT,
            WitnessError::Invalid(_) => StatusCode::BAD_REQUEST,
            WitnessError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(ErrorBody::from(&self.0))).into_response()
    }
}

impl From<WitnessError> for ApiError {
    fn from(error: WitnessError) -> Self {
        ApiError(error)
    }
}

type ApiResult<T> = std::result::Result<Json<T>, ApiError>;

async fn campaign(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<CampaignRequest>,
) -> ApiResult<CampaignResponse> {
    check_region(&request.region)?;
    let ttl = checked_ttl(request.ttl_seconds)?;
    let context = grant_context();
    let granted = shared
        .apply(|state| Ok(state.campaign(&request.region, ttl, context)))
        .await?;
    if let Some(holder) = &granted {
        tracing::info!(region = %holder.region, epoch = holder.epoch, "granted leadership");
    }
    Ok(Json(CampaignResponse {
        leadership: granted.as_ref().map(wire_leadership),
    }))
}

async fn seize(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<SeizeRequest>,
) -> ApiResult<WireLeadership> {
    check_region(&request.region)?;
    let ttl = checked_ttl(request.ttl_seconds)?;
    let context = grant_context();
    let holder = shared
        .apply(|state| state.seize(&request.region, ttl, request.expected_epoch, context))
        .await?;
    tracing::warn!(
        region = %holder.region,
        epoch = holder.epoch,
        expected_epoch = ?request.expected_epoch,
        "leadership seized"
    );
    Ok(Json(wire_leadership(&holder)))
}

async fn renew(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<LeaseRequest>,
) -> ApiResult<serde_json::Value> {
    let now = Instant::now();
    shared
        .apply(|state| state.renew(request.epoch, request.lease_id, now))
        .await?;
    Ok(Json(serde_json::json!({})))
}

async fn resign(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<LeaseRequest>,
) -> ApiResult<serde_json::Value> {
    let now = Instant::now();
    shared
        .apply(|state| {
            state.resign(request.epoch, request.lease_id, now);
            Ok(())
        })
        .await?;
    tracing::info!(epoch = request.epoch, "leadership resigned");
    Ok(Json(serde_json::json!({})))
}

/// `GET /ready`: 200 while the witness can grant and persist leadership,
/// 503 with the reason otherwise.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let revision = shared.state.lock().await.revision;
    let persist_error = shared
        .persist_error
        .lock()
        .expect("persist error lock poisoned")
        .clone();
    match persist_error {
        None => (
            StatusCode::OK,
            Json(serde_json::json!({ "ready": true, "revision": revision })),
        )
            .into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "ready": false,
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": format!("not ready: the witness cannot persist its state: {error}"),
                "revision": revision,
            })),
        )
            .into_response(),
    }
}

async fn leader(State(shared): State<Arc<Shared>>) -> ApiResult<LeaderResponse> {
    let now = Instant::now();
    let leader = shared
        .apply(|state| {
            Ok(state.leader(now).map(|holder| WireLeaderInfo {
                region: holder.region.clone(),
                epoch: holder.epoch,
                acquired_at_ms: holder.acquired_at_ms,
                ttl_remaining_ms: Some(
                    u64::try_from(holder.expires_at.saturating_duration_since(now).as_millis())
                        .unwrap_or(u64::MAX),
                ),
            }))
        })
        .await?;
    Ok(Json(LeaderResponse { leader }))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
        let response = http.get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    #[tokio::test]
    async fn with_a_secret_only_the_regions_may_campaign_seize_or_read() {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedWitnessServer::open(dir.path().join("witness"))
            .await
            .unwrap()
            .with_secret(Some("s3cret".to_string()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        assert_eq!(get(&http, &format!("{url}{HEALTH_PATH}")).await.0, 200);
        assert_eq!(get(&http, &format!("{url}{READY_PATH}")).await.0, 200);
        let seize = serde_json::json!({ "region": "westus", "ttl_seconds": 6 });
        for token in [None, Some("wrong"), Some("s3cre")] {
            let mut request = http.post(format!("{url}{SEIZE_PATH}")).json(&seize);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 401, "{token:?}");
            let mut request = http.get(format!("{url}{LEADER_PATH}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            assert_eq!(request.send().await.unwrap().status().as_u16(), 401);
        }
        // Nothing was seized; the regions' client, with the secret, works.
        let witness = crate::HttpWitness::new(&url, Duration::from_secs(5))
            .unwrap()
            .with_secret(Some("s3cret"), None, Duration::from_secs(5))
            .unwrap();
        use crate::Witness;
        assert!(witness.leader().await.unwrap().is_none());
        let _ = stop.send(());
        serving.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn ready_only_while_the_state_can_be_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("witness");
        let server = EmbeddedWitnessServer::open(data.clone()).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        assert_eq!(
            get(&http, &format!("{url}{HEALTH_PATH}")).await,
            (200, "OK".to_string())
        );
        let (status, body) = get(&http, &format!("{url}{READY_PATH}")).await;
        assert_eq!(status, 200, "{body}");

        // Its data directory is replaced by a file: a grant cannot be
        // persisted, so it is refused and the witness is not ready.
        std::fs::remove_dir_all(&data).unwrap();
        std::fs::write(&data, "not a directory").unwrap();
        let campaign = |region: &'static str| {
            http.post(format!("{url}{CAMPAIGN_PATH}"))
                .json(&serde_json::json!({ "region": region, "ttl_seconds": 6 }))
                .send()
        };
        assert_eq!(campaign("eastus").await.unwrap().status().as_u16(), 503);
        let (status, body) = get(&http, &format!("{url}{READY_PATH}")).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("cannot persist its state"), "{body}");

        // Writable again: the next grant is persisted and it is ready.
        std::fs::remove_file(&data).unwrap();
        std::fs::create_dir(&data).unwrap();
        assert_eq!(campaign("westus").await.unwrap().status().as_u16(), 200);
        let (status, body) = get(&http, &format!("{url}{READY_PATH}")).await;
        assert_eq!(status, 200, "{body}");

        let _ = stop.send(());
        serving.await.unwrap().unwrap();
    }
}
