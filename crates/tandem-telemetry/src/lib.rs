//! Prometheus metrics for every Tandem process (region, gateway, witness).
//!
//! Instrumentation goes through the `metrics` facade (`metrics::counter!`,
//! `histogram!`, `gauge!`) wherever an event happens — the store's commits,
//! the follower's applies, backups, purges, the garbage collector — and this
//! crate installs the one recorder of the process, the Prometheus exporter of
//! `metrics-exporter-prometheus`, which renders them at `GET /metrics`.
//! [`instrument`] adds per-route request metrics to a router.
//!
//! Architecture invariant: knows nothing of Tandem's domain; it names no
//! workspace, journal or store. Metric names are `tandem_…`, durations are
//! `…_seconds` histograms with the buckets of [`LATENCY_BUCKETS`].

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of every `…_seconds` metric: from half a millisecond (a
/// cached read) to half a minute (a long upload or a slow commit).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// The process's Prometheus recorder, installed the first time it is asked
/// for. Several servers in one process (tests) share it; a process where
/// another recorder was installed first still renders, without the events.
pub fn recorder() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &LATENCY_BUCKETS)
            .expect("the latency buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Only tests that install their own recorder get here.
            eprintln!("tandem-telemetry: another metrics recorder is installed; /metrics shows none of this process's events");
        }
        describe();
        PROCESS
            .get_or_init(metrics_process::Collector::default)
            .describe();
        handle
    })
}

/// Help texts of the metrics recorded outside this crate, in one place so
/// `/metrics` documents every series whoever records it.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "tandem_http_requests_total",
        "HTTP requests answered, by service, method, route template and status."
    );
    describe_histogram!(
        "tandem_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response's headers, by service, method and route template."
    );
    describe_gauge!(
        "tandem_http_requests_in_flight",
        "Requests being handled now, by service."
    );
    describe_histogram!(
        "tandem_store_write_seconds",
        Unit::Seconds,
        "Duration of a metadata write transaction, from taking the writer to its commit, by backend."
    );
    describe_histogram!(
        "tandem_store_commit_seconds",
        Unit::Seconds,
        "Duration of a metadata commit, by backend; on SQLite with synchronous=FULL this is the WAL fsync."
    );
    describe_counter!(
        "tandem_auth_verifications_total",
        "Credentials checked by the access gate, by outcome (ok, refused, error) and whether the cache answered."
    );
    describe_counter!(
        "tandem_auth_denied_total",
        "Authenticated requests refused for lack of the route's permission (403)."
    );
    describe_counter!(
        "tandem_store_commits_total",
        "Metadata write transactions, by backend and outcome (committed or failed)."
    );
    describe_counter!(
        "tandem_journal_records_total",
        "Journal records appended to this region's journal (its own writes and records applied from other regions)."
    );
    describe_counter!(
        "tandem_replication_records_applied_total",
        "Journal records applied from another region, by source region."
    );
    describe_counter!(
        "tandem_replication_content_bytes_total",
        "Bytes of artifacts and files copied from another region, by source region."
    );
    describe_histogram!(
        "tandem_replication_apply_seconds",
        Unit::Seconds,
        "Time to apply one replicated record (its content copied first), by source region."
    );
    describe_counter!(
        "tandem_replication_stream_restarts_total",
        "Journal streams from a source region that broke and were reopened, by source region."
    );
    describe_counter!(
        "tandem_backups_total",
        "Backups made, by kind (full or incremental) and outcome."
    );
    describe_histogram!(
        "tandem_backup_duration_seconds",
        Unit::Seconds,
        "Duration of a backup, by kind."
    );
    describe_counter!(
        "tandem_archive_records_total",
        "Journal records archived to the backup repository."
    );
    describe_counter!(
        "tandem_purged_total",
        "Items purged after their retention, by kind."
    );
    describe_counter!(
        "tandem_gc_prefixes_total",
        "Storage prefixes the garbage collector handled, by outcome (deleted, failed)."
    );
    describe_gauge!("tandem_journal_head", "Last journal position of this region.");
    describe_gauge!("tandem_epoch", "Leadership epoch of this region.");
    describe_gauge!("tandem_is_primary", "1 if this region is the primary.");
    describe_gauge!(
        "tandem_replication_applied",
        "Journal position a region has applied, as the reporting region sees it."
    );
    describe_gauge!(
        "tandem_replication_lag_records",
        "Records a region has not applied, as the reporting region sees it."
    );
    describe_gauge!(
        "tandem_replication_lag_seconds",
        "Age of the oldest record a region lacks, as the reporting region sees it."
    );
    describe_gauge!("tandem_rpo_seconds", "Current RPO of an asset class.");
    describe_gauge!(
        "tandem_writes_refused",
        "1 while writes of the class are refused for lag past max_rpo."
    );
    describe_counter!(
        "tandem_verify_runs_total",
        "Verifications of the replicas, by outcome: equal, different, incomplete (a region unreachable or a workspace that kept changing)."
    );
    describe_histogram!(
        "tandem_verify_seconds",
        Unit::Seconds,
        "Time a verification of every region's replicas takes."
    );
    describe_gauge!(
        "tandem_verify_differences",
        "Objects that differed between regions at the last verification."
    );
    describe_gauge!(
        "tandem_verify_last_run_timestamp_seconds",
        "When the last verification of the replicas finished (Unix time)."
    );
    describe_gauge!(
        "tandem_verify_last_success_timestamp_seconds",
        "When a verification last found every replica equal (Unix time)."
    );
    describe_histogram!(
        "tandem_witness_persist_seconds",
        Unit::Seconds,
        "Time the embedded witness takes to write its state durably (write, fsync, rename)."
    );
}

/// `GET /metrics`: every series of the process in Prometheus's text format.
pub async fn metrics_handler() -> Response {
    render()
}

/// The rendered exposition as a response.
pub fn render() -> Response {
    let handle = recorder();
    // The process's own figures (resident memory, CPU seconds, open file
    // descriptors, threads) are read at each scrape.
    if let Some(process) = PROCESS.get() {
        process.collect();
    }
    let body = handle.render();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Adds request metrics (count by status, latency histogram, requests in
/// flight) to every route of `router`, labelled with `service` and the
/// route's template (`/w/{workspace}/api/2.0/mlflow/runs/create`), never the
/// concrete path, so the number of series stays bounded.
pub fn instrument<S>(router: Router<S>, service: &'static str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    recorder();
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        track(service, request, next)
    }))
}

/// A route label chosen by the handler, for requests no route template
/// describes (the gateway's proxied requests): put it in the response's
/// extensions and [`instrument`] uses it instead of `unmatched`.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

async fn track(service: &'static str, request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string());
    let method = method_label(request.method());
    let in_flight = metrics::gauge!("tandem_http_requests_in_flight", "service" => service);
    in_flight.increment(1.0);
    let started = Instant::now();
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    let route = matched
        .or_else(|| {
            response
                .extensions()
                .get::<RouteLabel>()
                .map(|label| label.0.clone())
        })
        .unwrap_or_else(|| "unmatched".to_string());
    let status = status_label(response.status());
    metrics::histogram!(
        "tandem_http_request_duration_seconds",
        "service" => service, "method" => method, "route" => route.clone()
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "tandem_http_requests_total",
        "service" => service, "method" => method, "route" => route, "status" => status
    )
    .increment(1);
    response
}

/// Methods outside HTTP's own set are one label, so a client cannot grow
/// the series without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_label(status: StatusCode) -> &'static str {
    // Static strings for the statuses Tandem answers; others by class.
    match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        416 => "416",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        507 => "507",
        code if code < 300 => "2xx",
        code if code < 400 => "3xx",
        code if code < 500 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn series(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let router = instrument(
            Router::new()
                .route("/items/{id}", get(|| async { "item" }))
                .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR })),
            "unit-test",
        );
        for path in ["/items/1", "/items/2", "/fail", "/nothing-here"] {
            let response = router
                .clone()
                .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let _ = response;
        }
        let text = recorder().render();
        let counted = series(&text, "tandem_http_requests_total{");
        let find = |route: &str, status: &str| {
            counted
                .iter()
                .find(|line| {
                    line.contains("service=\"unit-test\"")
                        && line.contains(&format!("route=\"{route}\""))
                        && line.contains(&format!("status=\"{status}\""))
                })
                .cloned()
                .unwrap_or_else(|| panic!("no series for {route} {status} in:\n{text}"))
        };
        // Both item requests land in one series of the template.
        assert!(find("/items/{id}", "200").ends_with(" 2"), "{text}");
        assert!(find("/fail", "500").ends_with(" 1"));
        assert!(find("unmatched", "404").ends_with(" 1"));
        assert!(
            !text.contains("/items/1"),
            "a concrete path became a label:\n{text}"
        );
        // Latency is a histogram with the shared buckets.
        assert!(text.contains("tandem_http_request_duration_seconds_bucket{"));
        assert!(text.contains("le=\"0.0005\""));
        assert!(text.contains("# HELP tandem_http_requests_total"));
    }

    #[test]
    fn unusual_methods_and_statuses_share_a_label() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "4xx");
        assert_eq!(status_label(StatusCode::NOT_FOUND), "404");
    }
}
