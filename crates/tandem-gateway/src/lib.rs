//! The deployment's global endpoint (`tandem gateway`): one URL for the
//! MLflow client and the Tandem API, whichever region is primary.
//!
//! The gateway knows the regions from the deployment file. A
//! [`PrimaryTracker`] keeps its view of them current (today by polling every
//! region's status, see [`tracker`]); every request is routed by method and
//! path ([`route`]) to the primary, or for what any region may serve, to a
//! healthy region when the primary does not answer, and forwarded with its
//! body streamed both ways ([`proxy`]). Requests that cannot have changed
//! anything are retried across a failover. The gateway answers `/health`,
//! `/ready` (200 once it knows a primary) and `/gateway/status` (what it
//! knows of each region) itself.
//!
//! Architecture invariant: the gateway holds no workspace state and knows no
//! store, journal or storage. It reaches regions only over their public HTTP
//! API, so a region behind it behaves exactly as one reached directly, and
//! it never buffers an artifact.
//!
//! API boundary: [`GatewayConfig`], [`serve`], [`Gateway`] (for tests that
//! drive its router), [`LeaderSource`] (where the primary comes from).

pub mod proxy;
pub mod route;
pub mod tracker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tandem_core::journal::AssetClass;
use tandem_deployment::Deployment;
use tokio::net::TcpListener;

pub use proxy::{MAX_BUFFERED_BODY, REGION_HEADER};
pub use tracker::{
    DeploymentView, Leader, LeaderSource, Observation, PollingLeaderSource, PrimaryTracker, RegionReport,
};

/// How often the regions are asked for their status.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long one status request may take before its region counts as down.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long opening a connection to a region may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request waits, retrying, for a region to serve it.
pub const DEFAULT_FAILOVER_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot build the gateway's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("gateway i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot reach the deployment's witness: {0}")]
    Witness(String),
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The regions the gateway fronts and each class's continuity level,
    /// which says which regions may serve a request.
    pub deployment: Deployment,
    /// Time between two observations of the regions: bounds how long the
    /// gateway keeps sending requests to a primary that was replaced.
    pub poll_interval: Duration,
    /// Bound on one region's status request, so one stalled region does not
    /// hold up the view of the others.
    pub probe_timeout: Duration,
    /// Bound on opening a connection to a region for a proxied request: past
    /// it, the request certainly was not sent and may go elsewhere.
    pub connect_timeout: Duration,
    /// How long a request may wait, retrying, for a region to serve it: long
    /// enough to ride out a failover, short enough that a client learns of
    /// an outage.
    pub failover_wait: Duration,
    /// Serve HTTPS with this certificate (`--tls-cert`, `--tls-key`).
    pub tls: Option<tandem_http::tls::Tls>,
    /// A build of MLflow's web UI to serve at `/mlflow/` (`--mlflow-ui`);
    /// its API calls are proxied like any other request.
    pub mlflow_ui: Option<std::path::PathBuf>,
}

impl GatewayConfig {
    /// The defaults for `deployment`.
    pub fn new(deployment: Deployment) -> Self {
        GatewayConfig {
            deployment,
            poll_interval: DEFAULT_POLL_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            failover_wait: DEFAULT_FAILOVER_WAIT,
            tls: None,
            mlflow_ui: None,
        }
    }
}

/// A running gateway's state: its view of the deployment and its proxy.
pub struct Gateway {
    proxy: proxy::Proxy,
    tls: Option<tandem_http::tls::Tls>,
    mlflow_ui: Option<std::path::PathBuf>,
}

impl Gateway {
    /// A gateway over `config`'s regions, polling their status, and
    /// following the witness when the deployment has one.
    pub fn new(config: &GatewayConfig) -> Result<Arc<Self>, GatewayError> {
        let source = PollingLeaderSource::with_trust(
            config.deployment.regions().to_vec(),
            config.probe_timeout,
            config.deployment.replication_secret.as_deref(),
            config.deployment.ca_pem.as_deref(),
        )?;
        let witness = config
            .deployment
            .open_witness()
            .map_err(|error| GatewayError::Witness(error.to_string()))?;
        match witness {
            Some(witness) => Self::with_source(
                config,
                Box::new(tracker::WitnessLeaderSource::new(
                    source,
                    witness,
                    config.probe_timeout,
                )),
            ),
            None => Self::with_source(config, Box::new(source)),
        }
    }

    /// A gateway that learns the primary from `source`.
    pub fn with_source(
        config: &GatewayConfig,
        source: Box<dyn LeaderSource>,
    ) -> Result<Arc<Self>, GatewayError> {
        let tracker = PrimaryTracker::new(source, config.poll_interval);
        let proxy = proxy::Proxy::new(
            config.deployment.clone(),
            tracker,
            config.connect_timeout,
            config.failover_wait,
        )?;
        Ok(Arc::new(Gateway {
            proxy,
            tls: config.tls.clone(),
            mlflow_ui: config.mlflow_ui.clone(),
        }))
    }

    pub fn tracker(&self) -> &Arc<PrimaryTracker> {
        &self.proxy.tracker
    }

    /// `/health`, `/gateway/status`, the gateway's own `/metrics`, and
    /// everything else proxied. Proxied requests are counted under a route
    /// label naming their class and kind (`proxy tracking read`), not their
    /// path.
    pub fn router(self: &Arc<Self>) -> Router {
        let router = Router::new()
            .route("/health", get(|| async { "OK" }))
            .route("/ready", get(ready))
            .route(
                "/gateway/status",
                get(status).route_layer(axum::middleware::from_fn_with_state(self.clone(), operators_only)),
            )
            .route(
                "/metrics",
                get(tandem_telemetry::metrics_handler)
                    .route_layer(axum::middleware::from_fn_with_state(self.clone(), operators_only)),
            )
            .fallback(forward)
            .with_state(self.clone());
        let Some(dir) = &self.mlflow_ui else {
            return tandem_telemetry::instrument(router, "gateway");
        };
        // MLflow's UI: its page and files from here, its API calls (under
        // `/mlflow/`, relative to its page) proxied at their own paths.
        let router = router.merge(tandem_http::web_app::routes("/mlflow", dir.clone()));
        tandem_http::web_app::under_prefix("/mlflow", tandem_telemetry::instrument(router, "gateway"))
    }

    /// What the gateway knows: the primary, each region's health and role,
    /// and where each class's reads and writes go.
    pub fn status(&self) -> serde_json::Value {
        let view = self.tracker().view();
        let deployment = &self.proxy.deployment;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_millis() as u64)
            .unwrap_or(0);
        let classes: Vec<_> = AssetClass::ALL
            .into_iter()
            .map(|class| {
                let level = deployment.policy(class).level;
                let route = |read| route::RequestRoute {
                    class: Some(class),
                    read,
                    replicated: true,
                };
                json!({
                    "class": class.as_str(),
                    "level": level.as_str(),
                    "reads": route::placement(route(true), deployment).describe(),
                    "writes": route::placement(route(false), deployment).describe(),
                })
            })
            .collect();
        json!({
            "deployment": deployment.name,
            "source": self.tracker().source_name(),
            "primary": view.primary(),
            "observed_at_ms": view.observed_at_ms,
            "observation_age_seconds": (view.observed_at_ms > 0)
                .then(|| now_ms.saturating_sub(view.observed_at_ms) as f64 / 1000.0),
            "regions": view.observation.regions,
            "classes": classes,
        })
    }
}

/// `GET /ready`: 200 once the gateway knows a primary (it can serve writes
/// as well as reads), 503 with what it knows of each region otherwise.
async fn ready(State(gateway): State<Arc<Gateway>>) -> Response {
    let view = gateway.tracker().view();
    match view.primary() {
        Some(leader) => (
            StatusCode::OK,
            Json(json!({ "ready": true, "primary": leader.region })),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ready": false,
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": format!("not ready: no primary region is known ({})", view.summary()),
            })),
        )
            .into_response(),
    }
}

/// The gateway's own status and metrics are for the deployment's
/// operators. The gateway keeps no principals: it asks a region who the
/// caller is (`/api/tandem/v1/whoami` with the caller's `Authorization`)
/// and lets through a region without authentication, the Operator and Admin
/// roles, and the deployment's replication secret.
async fn operators_only(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    // A console session (its cookie) counts as a bearer token, as at a region.
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .cloned()
        .or_else(|| {
            tandem_http::cookie(request.headers(), "tandem_session")
                .and_then(|token| axum::http::HeaderValue::from_str(&format!("Bearer {token}")).ok())
        });
    let quiet = tandem_http::from_console(request.headers());
    if let Some(secret) = &gateway.proxy.deployment.replication_secret {
        if tandem_http::presents_bearer(request.headers(), secret) {
            return next.run(request).await;
        }
    }
    // The primary first, then any region: the status matters most when
    // the primary is gone.
    let view = gateway.tracker().view();
    let mut candidates: Vec<String> = view
        .primary()
        .map(|leader| leader.url.clone())
        .into_iter()
        .collect();
    for region in gateway.proxy.deployment.regions() {
        if !candidates.contains(&region.url) {
            candidates.push(region.url.clone());
        }
    }
    let refusal = |status: StatusCode, code: &str, message: String| {
        let mut response = (status, Json(json!({ "error_code": code, "message": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED && !quiet {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Basic realm="mlflow""#),
            );
        }
        response
    };
    let mut answered = None;
    let mut failures = Vec::new();
    for url in &candidates {
        let mut ask = gateway
            .proxy
            .http
            .get(format!("{url}/api/tandem/v1/whoami"))
            .timeout(std::time::Duration::from_secs(2));
        if let Some(presented) = &presented {
            ask = ask.header(axum::http::header::AUTHORIZATION, presented.clone());
        }
        match ask.send().await {
            Ok(answer) => {
                answered = Some((url.clone(), answer));
                break;
            }
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    let Some((url, answer)) = answered else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            format!(
                "no region answers to check the caller's credentials ({})",
                failures.join("; ")
            ),
        );
    };
    if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "You are not authenticated: the gateway's status and metrics are for the deployment's operators"
                .to_string(),
        );
    }
    let me: serde_json::Value = match answer.json().await {
        Ok(me) => me,
        Err(error) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                format!("unreadable answer from region at {url}: {error}"),
            )
        }
    };
    let operator = me["authentication"] == json!(false)
        || me["roles"].as_array().is_some_and(|roles| {
            roles.iter().any(|grant| {
                grant["workspace"].is_null() && matches!(grant["role"].as_str(), Some("Operator" | "Admin"))
            })
        });
    if operator {
        return next.run(request).await;
    }
    refusal(
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        format!(
            "Permission denied: '{}' lacks the 'operate' permission on the deployment (granted by Operator, Admin)",
            me["name"].as_str().unwrap_or("?")
        ),
    )
}

async fn status(State(gateway): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    Json(gateway.status())
}

async fn forward(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let route = route::classify(request.method(), request.uri().path());
    let label = format!(
        "proxy {} {}",
        route.class.map(|class| class.as_str()).unwrap_or("tandem"),
        if route.read { "read" } else { "write" }
    );
    let mut response = gateway.proxy.handle(request).await.into_response();
    response
        .extensions_mut()
        .insert(tandem_telemetry::RouteLabel(label));
    response
}

/// Serves the gateway on `listener` until `shutdown` resolves, then finishes
/// the requests in flight.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let gateway = Gateway::new(&config)?;
    serve_gateway(gateway, listener, shutdown).await
}

/// Serves an already built gateway (see [`Gateway::with_source`]).
pub async fn serve_gateway(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let wait_for_stop = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let tracking = tokio::spawn(gateway.tracker().clone().run(wait_for_stop(stopped.clone())));
    // Requests waiting out a failover give up as soon as the shutdown
    // begins; the graceful shutdown below then waits only for requests a
    // region is actually serving.
    let waiting = {
        let gateway = gateway.clone();
        let stopped = wait_for_stop(stopped.clone());
        tokio::spawn(async move {
            stopped.await;
            gateway.proxy.stop_waiting();
        })
    };
    tracing::info!(
        address = %listener.local_addr()?,
        deployment = %gateway.proxy.deployment.name,
        regions = %gateway.proxy.deployment.regions().iter().map(|r| format!("{}={}", r.name, r.url)).collect::<Vec<_>>().join(", "),
        "tandem gateway listening"
    );
    // Connection cap, timeouts and fd-exhaustion-safe accepts as in the
    // regions; the client's address reaches handlers as `ConnectInfo`.
    let limits = tandem_http::ServeLimits::from_env()
        .map_err(std::io::Error::other)?
        .fitted_to_fd_limit();
    tandem_http::serve_with(
        listener,
        gateway.router(),
        limits,
        gateway.tls.clone(),
        "gateway",
        wait_for_stop(stopped),
    )
    .await?;
    let _ = tracking.await;
    let _ = waiting.await;
    tracing::info!("tandem gateway stopped");
    Ok(())
}
