//! Forwarding one request to a region, and retrying it across a failover
//! when that cannot change its outcome.
//!
//! Bodies stream both ways: a response's bytes go to the client as the
//! region sends them, and a request body larger than [`MAX_BUFFERED_BODY`]
//! (or of unknown length) goes to the region as the client sends it. Memory
//! per request is therefore bounded by socket buffers, whatever the size of
//! an artifact.
//!
//! # When a request is sent again
//!
//! A request is sent again (to the region the refreshed view then names)
//! only if its body can be sent again and sending it again cannot apply a
//! change twice:
//!
//! - **not delivered**: the connection to the region could not be opened,
//!   so no byte of the request left the gateway (any request);
//! - **refused as not primary**: the region answered 403 with MLflow's
//!   `PERMISSION_DENIED` naming the primary (it is a secondary, or a deposed
//!   primary). A region decides that inside the write's transaction, before
//!   journaling, so the change certainly did not happen (any request);
//! - **reads** (see [`crate::route`]) also after a connection that broke
//!   once the request was sent, and after a 503 `TEMPORARILY_UNAVAILABLE`.
//!
//! A write that broke after it was sent, or that a region answered with 503
//! (a `sync` write's confirmation can time out after its commit), is never
//! re-sent: the client gets the region's answer, or a 503 saying the outcome
//! is unknown. Bodies of at most [`MAX_BUFFERED_BODY`] bytes with a declared
//! length (every MLflow JSON call) are buffered, so they can be re-sent; a
//! streamed body can be re-sent only if it was never read, and once read,
//! the client gets a 503 telling it to retry. Retries stop after the
//! configured failover wait (15 s by default), with a backoff from 100 ms
//! to 1 s; a request that finds no region to serve it waits the same way
//! for one to appear. When the gateway shuts down, waiting requests are
//! answered 503 at once (a waiting request is one that no region took, so
//! it certainly did not apply), so that stopping is not held up by a
//! failover in progress.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::json;
use tandem_deployment::Deployment;
use tokio::time::Instant;

use crate::route::{choose_target, classify, placement, Placement, RequestRoute, Target};
use crate::tracker::{describe_transport_error, DeploymentView, PrimaryTracker};

/// Request bodies up to this size with a declared length are read whole
/// before sending, so the request can be sent again after a failure.
pub const MAX_BUFFERED_BODY: u64 = 1024 * 1024;
/// Error answers of regions up to this size are read to see whether they
/// call for a retry.
const MAX_INSPECTED_ERROR: u64 = 64 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a region may take to start answering a request (uploads aside).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The response header naming the region that answered.
pub const REGION_HEADER: &str = "x-tandem-region";

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway sets itself.
const NOT_FORWARDED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Forwards requests to the regions of one deployment.
pub struct Proxy {
    pub(crate) deployment: Deployment,
    pub(crate) tracker: Arc<PrimaryTracker>,
    pub(crate) http: reqwest::Client,
    failover_wait: Duration,
    /// Set when the gateway shuts down: requests waiting to be retried give
    /// up at once instead of holding the graceful shutdown for up to the
    /// failover wait.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A request body, kept in the form that says whether it can be sent again.
enum RequestBody {
    Empty,
    /// Read whole: can be sent any number of times.
    Buffered(Bytes),
    /// Streamed from the client: can be sent only while nobody has read it.
    Streamed(Arc<Mutex<Option<BodyDataStream>>>),
}

impl RequestBody {
    async fn prepare(headers: &HeaderMap, body: Body) -> Result<RequestBody, Response> {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        match (length, chunked) {
            // HTTP/1.1: neither a length nor chunked coding means no body.
            (None, false) => Ok(RequestBody::Empty),
            (Some(length), false) if length <= MAX_BUFFERED_BODY => {
                match axum::body::to_bytes(body, length as usize).await {
                    Ok(bytes) => Ok(RequestBody::Buffered(bytes)),
                    Err(error) => Err(mlflow_error(
                        StatusCode::BAD_REQUEST,
                        "BAD_REQUEST",
                        format!("cannot read the request body: {error}"),
                    )),
                }
            }
            _ => Ok(RequestBody::Streamed(Arc::new(Mutex::new(Some(
                body.into_data_stream(),
            ))))),
        }
    }

    /// Whether the body can still be sent (again).
    fn replayable(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Buffered(_) => true,
            RequestBody::Streamed(slot) => slot.lock().expect("body lock poisoned").is_some(),
        }
    }

    /// The body for one attempt; None when there is no body.
    fn for_attempt(&self) -> Option<reqwest::Body> {
        match self {
            RequestBody::Empty => None,
            RequestBody::Buffered(bytes) => Some(reqwest::Body::from(bytes.clone())),
            RequestBody::Streamed(slot) => Some(reqwest::Body::wrap_stream(LazyBody {
                slot: slot.clone(),
                taken: None,
            })),
        }
    }

    fn is_streamed(&self) -> bool {
        matches!(self, RequestBody::Streamed(_))
    }
}

/// A streamed request body that leaves its slot only when first read: if a
/// connection fails before the region reads any of it, the body is still
/// in the slot and the request can go to another region.
struct LazyBody {
    slot: Arc<Mutex<Option<BodyDataStream>>>,
    taken: Option<BodyDataStream>,
}

impl Stream for LazyBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.taken.is_none() {
            let taken = self.slot.lock().expect("body lock poisoned").take();
            match taken {
                Some(stream) => self.taken = Some(stream),
                None => return Poll::Ready(None),
            }
        }
        let stream = self.taken.as_mut().expect("taken above");
        Pin::new(stream).poll_next(context)
    }
}

/// Why an attempt did not produce the answer to give the client.
enum Failure {
    /// No region may serve the request now.
    NoTarget,
    /// The connection could not be opened: nothing was sent.
    NotDelivered { region: String, error: String },
    /// The connection broke after the request was (perhaps) sent.
    Broken { region: String, error: String },
    /// The region refused the request because it is not the primary.
    NotPrimary { region: String, answer: BufferedAnswer },
    /// The region answered 503 TEMPORARILY_UNAVAILABLE.
    Unavailable { region: String, answer: BufferedAnswer },
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::NoTarget => "no region can serve it".to_string(),
            Failure::NotDelivered { region, error } => format!("region '{region}' is unreachable ({error})"),
            Failure::Broken { region, error } => {
                format!("the connection to region '{region}' broke ({error})")
            }
            Failure::NotPrimary { region, answer } => {
                format!("region '{region}' is not the primary ({})", answer.message)
            }
            Failure::Unavailable { region, answer } => {
                format!(
                    "region '{region}' is temporarily unavailable ({})",
                    answer.message
                )
            }
        }
    }

    fn region(&self) -> Option<&str> {
        match self {
            Failure::NoTarget => None,
            Failure::NotDelivered { region, .. }
            | Failure::Broken { region, .. }
            | Failure::NotPrimary { region, .. }
            | Failure::Unavailable { region, .. } => Some(region),
        }
    }
}

/// A region's small error answer, read whole to decide on a retry and given
/// to the client as it was if there is no retry.
struct BufferedAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    message: String,
}

impl BufferedAnswer {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// What a region answered.
enum Answer {
    /// Give it to the client.
    Deliver(Response),
    NotPrimary(BufferedAnswer),
    Unavailable(BufferedAnswer),
}

/// MLflow's error JSON.
pub(crate) fn mlflow_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "error_code": code, "message": message.into() })),
    )
        .into_response()
}

fn unavailable(message: impl Into<String>) -> Response {
    mlflow_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "TEMPORARILY_UNAVAILABLE",
        message,
    )
}

fn forwarded_headers(headers: &HeaderMap, drop_length: bool) -> HeaderMap {
    // Headers named in `Connection` are hop-by-hop too.
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut forwarded = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let lower = name.as_str();
        if NOT_FORWARDED.contains(&lower)
            || named_by_connection.iter().any(|named| named == lower)
            || name == header::HOST
            || (drop_length && name == header::CONTENT_LENGTH)
        {
            continue;
        }
        forwarded.append(name.clone(), value.clone());
    }
    forwarded
}

impl Proxy {
    pub(crate) fn new(
        deployment: Deployment,
        tracker: Arc<PrimaryTracker>,
        connect_timeout: Duration,
        failover_wait: Duration,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true);
        if let Some(pem) = &deployment.ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build()?;
        Ok(Proxy {
            deployment,
            tracker,
            http,
            failover_wait,
            stopping: tokio::sync::watch::channel(false).0,
        })
    }

    /// The gateway is shutting down: requests waiting for a region answer
    /// now (503) rather than wait out the failover.
    pub(crate) fn stop_waiting(&self) {
        self.stopping.send_replace(true);
    }

    async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Serves one client request: routes it, forwards it, retries it where
    /// that is safe, and answers.
    pub(crate) async fn handle(&self, request: Request) -> Response {
        let started = Instant::now();
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let (parts, body) = request.into_parts();
        let route = classify(&parts.method, parts.uri.path());
        let placement = placement(route, &self.deployment);
        let body = match RequestBody::prepare(&parts.headers, body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let deadline = started + self.failover_wait;
        let mut backoff = FIRST_BACKOFF;
        let mut view = self.tracker.view();
        if view.observed_at_ms == 0 {
            view = self.tracker.refresh(view.version).await;
        }
        let mut attempts = 0u32;
        loop {
            let failure = match choose_target(&view, placement) {
                None => Failure::NoTarget,
                Some(target) => {
                    attempts += 1;
                    match self.attempt(&target, &parts, &body, route, client).await {
                        Ok(response) => {
                            tracing::debug!(
                                method = %parts.method,
                                path = parts.uri.path(),
                                region = %target.region,
                                primary = target.primary,
                                status = response.status().as_u16(),
                                attempts,
                                "proxied"
                            );
                            return response;
                        }
                        Err(Outcome::Final(response)) => return response,
                        Err(Outcome::Failed(failure)) => failure,
                    }
                }
            };
            if !body.replayable() {
                tracing::warn!(
                    method = %parts.method,
                    path = parts.uri.path(),
                    reason = %failure.describe(),
                    "cannot resend a streamed request body that was already sent"
                );
                return unavailable(format!(
                    "{}; the request body was already streamed to region '{}' and the gateway does not keep streamed bodies, so it cannot send it again: retry the request",
                    failure.describe(),
                    failure.region().unwrap_or("?")
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    method = %parts.method,
                    path = parts.uri.path(),
                    attempts,
                    reason = %failure.describe(),
                    regions = %view.summary(),
                    "giving up on the request"
                );
                return give_up(failure, &view, placement, route, started.elapsed());
            }
            let pause = backoff.min(deadline - now);
            if matches!(failure, Failure::NoTarget) {
                tracing::debug!(
                    method = %parts.method,
                    path = parts.uri.path(),
                    regions = %view.summary(),
                    retry_in_ms = pause.as_millis() as u64,
                    "no region can serve the request yet; waiting"
                );
            } else {
                tracing::info!(
                    method = %parts.method,
                    path = parts.uri.path(),
                    attempts,
                    reason = %failure.describe(),
                    retry_in_ms = pause.as_millis() as u64,
                    "request not served; retrying once the deployment is observed again"
                );
            }
            let known = view.primary().map(|leader| leader.region.clone());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.tracker.new_primary(known.as_deref()) => {}
                _ = self.stopped() => {
                    tracing::info!(
                        method = %parts.method,
                        path = parts.uri.path(),
                        reason = %failure.describe(),
                        "the gateway is shutting down: not waiting for a region any longer"
                    );
                    return unavailable(format!(
                        "the gateway is shutting down and {}: retry the request",
                        failure.describe()
                    ));
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            view = self.tracker.refresh(view.version).await;
        }
    }

    /// Sends the request once to `target`.
    async fn attempt(
        &self,
        target: &Target,
        parts: &Parts,
        body: &RequestBody,
        route: RequestRoute,
        client: Option<std::net::IpAddr>,
    ) -> Result<Response, Outcome> {
        let path_and_query = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        let url = format!("{}{path_and_query}", target.url);
        let mut headers = forwarded_headers(&parts.headers, !body.is_streamed());
        if let Some(host) = parts.headers.get(header::HOST) {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
        if let Some(ip) = client.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), ip);
        }
        let mut request = self.http.request(parts.method.clone(), &url).headers(headers);
        if let Some(body) = body.for_attempt() {
            request = request.body(body);
        }
        // A region that accepts connections but never answers (a stopped
        // process) must not hold a request forever. Uploads are exempt: their
        // answer comes only after the whole body went up.
        let sent = if parts.method == axum::http::Method::PUT {
            request.send().await
        } else {
            match tokio::time::timeout(ANSWER_TIMEOUT, request.send()).await {
                Ok(sent) => sent,
                Err(_) => {
                    let description = format!("no answer within {}s", ANSWER_TIMEOUT.as_secs());
                    self.tracker.mark_unreachable(&target.region, &description);
                    if route.read {
                        return Err(Outcome::Failed(Failure::Broken {
                            region: target.region.clone(),
                            error: description,
                        }));
                    }
                    return Err(Outcome::Final(unavailable(format!(
                        "region '{}' did not answer within {}s; the write may or may not have been applied",
                        target.region,
                        ANSWER_TIMEOUT.as_secs()
                    ))));
                }
            }
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let description = describe_transport_error(&error);
                if error.is_connect() {
                    self.tracker.mark_unreachable(&target.region, &description);
                    return Err(Outcome::Failed(Failure::NotDelivered {
                        region: target.region.clone(),
                        error: description,
                    }));
                }
                if !route.read {
                    tracing::warn!(
                        method = %parts.method,
                        path = parts.uri.path(),
                        region = %target.region,
                        error = %description,
                        "a write's connection broke after it was sent; not retrying it"
                    );
                    return Err(Outcome::Final(unavailable(format!(
                        "the connection to region '{}' broke after the request was sent ({description}): the change may or may not have been applied",
                        target.region
                    ))));
                }
                return Err(Outcome::Failed(Failure::Broken {
                    region: target.region.clone(),
                    error: description,
                }));
            }
        };
        match inspect(response, &target.region).await {
            Answer::Deliver(response) => Ok(response),
            Answer::NotPrimary(answer) => Err(Outcome::Failed(Failure::NotPrimary {
                region: target.region.clone(),
                answer,
            })),
            Answer::Unavailable(answer) if route.read => Err(Outcome::Failed(Failure::Unavailable {
                region: target.region.clone(),
                answer,
            })),
            // A write refused as unavailable may have been committed (a
            // sync write whose confirmation timed out): its answer stands.
            Answer::Unavailable(answer) => Ok(answer.into_response()),
        }
    }
}

/// The answer once retrying is over.
fn give_up(
    failure: Failure,
    view: &DeploymentView,
    placement: Placement,
    route: RequestRoute,
    waited: Duration,
) -> Response {
    let waited = waited.as_secs_f64();
    match failure {
        Failure::NotPrimary { answer, .. } | Failure::Unavailable { answer, .. } => answer.into_response(),
        Failure::NoTarget => {
            let needs = match placement {
                Placement::PrimaryOnly if route.read => "this read needs the primary region",
                Placement::PrimaryOnly => "writes need the primary region",
                Placement::PrimaryThenAnyHealthy => "no region answers",
            };
            unavailable(format!(
                "no primary region is known to the gateway and {needs}; waited {waited:.1}s ({}): retry later",
                view.summary()
            ))
        }
        failure @ (Failure::NotDelivered { .. } | Failure::Broken { .. }) => unavailable(format!(
            "{}, and no region took the request within {waited:.1}s ({}): retry later",
            failure.describe(),
            view.summary()
        )),
    }
}

/// How an attempt ended when it produced no response to deliver.
enum Outcome {
    /// Answer the client with this; no retry.
    Final(Response),
    /// Maybe retry.
    Failed(Failure),
}

/// Reads a region's small 403 and 503 answers to tell a refusal that calls
/// for a retry from one to give the client; everything else streams through.
async fn inspect(response: reqwest::Response, region: &str) -> Answer {
    let status = response.status();
    let mut headers = forwarded_headers(response.headers(), false);
    if let Ok(value) = HeaderValue::from_str(region) {
        headers.insert(HeaderName::from_static(REGION_HEADER), value);
    }
    let small = response
        .content_length()
        .is_some_and(|length| length <= MAX_INSPECTED_ERROR);
    let inspected = status == StatusCode::FORBIDDEN || status == StatusCode::SERVICE_UNAVAILABLE;
    if !(inspected && small) {
        let mut delivered = Response::new(Body::from_stream(response.bytes_stream()));
        *delivered.status_mut() = status;
        *delivered.headers_mut() = headers;
        return Answer::Deliver(delivered);
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => {
            // The answer broke off; the client gets what a broken region
            // gives, a 503 (the request was refused either way).
            return Answer::Deliver(unavailable(format!(
                "region '{region}' answered {status} but the answer broke off ({})",
                describe_transport_error(&error)
            )));
        }
    };
    let document: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let code = document["error_code"].as_str().unwrap_or_default();
    let message = document["message"].as_str().unwrap_or_default().to_string();
    let answer = BufferedAnswer {
        status,
        headers,
        body,
        message,
    };
    if status == StatusCode::FORBIDDEN && is_not_primary_refusal(code, &answer.message) {
        Answer::NotPrimary(answer)
    } else if status == StatusCode::SERVICE_UNAVAILABLE && code == "TEMPORARILY_UNAVAILABLE" {
        Answer::Unavailable(answer)
    } else {
        Answer::Deliver(answer.into_response())
    }
}

/// Whether a 403 is a region's refusal as not the primary. Regions answer
/// MLflow's `PERMISSION_DENIED` (the client must not retry the same region)
/// with a message naming the primary; a denial for lack of rights (the
/// access gate's, which starts "Permission denied:" and may quote a
/// principal whose name says "primary") is not one.
pub fn is_not_primary_refusal(code: &str, message: &str) -> bool {
    code == "PERMISSION_DENIED" && !message.starts_with("Permission denied:") && message.contains("primary")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_as_not_primary_are_told_from_other_denials() {
        assert!(is_not_primary_refusal(
            "PERMISSION_DENIED",
            "region 'westus' is a read-only secondary (tracking is hot-warm here): send writes to the primary region 'eastus' at http://127.0.0.1:1"
        ));
        assert!(!is_not_primary_refusal(
            "PERMISSION_DENIED",
            "token lacks the Contributor role"
        ));
        assert!(!is_not_primary_refusal("INVALID_PARAMETER_VALUE", "primary"));
        assert!(!is_not_primary_refusal(
            "PERMISSION_DENIED",
            "Permission denied: 'primary-bot' lacks the 'write' permission in workspace 'default'"
        ));
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::HOST, HeaderValue::from_static("gateway:5080"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer token"));
        // MLflow's workspace header selects the workspace in the region: it
        // passes unchanged.
        headers.insert("x-mlflow-workspace", HeaderValue::from_static("team-a"));
        let forwarded = forwarded_headers(&headers, true);
        let names: Vec<&str> = forwarded.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["content-type", "authorization", "x-mlflow-workspace"]);
        assert_eq!(forwarded["x-mlflow-workspace"], "team-a");
        assert!(forwarded_headers(&headers, false).contains_key(header::CONTENT_LENGTH));
    }
}
