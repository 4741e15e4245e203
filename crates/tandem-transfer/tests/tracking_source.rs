//! `TrackingSource::histories` against a small fake of MLflow's history
//! routes (a stand-in: what is tested is how the reader splits, cuts and
//! retries requests, which a real `mlflow server` exercises only with the
//! sizes a test can afford; the e2e import covers a real one). The fake
//! answers `get-history-bulk` as MLflow 3.17 does — the asked runs' points
//! sorted by run id, then step and timestamp, cut after `max_results` —
//! and `get-history` a page at a time with an offset token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tandem_transfer::{Auth, Endpoint, Source, TrackingSource};

/// A run's points: (step, timestamp, value).
type History = Vec<(i64, i64, f64)>;

struct Fake {
    histories: HashMap<String, History>,
    bulk_route: bool,
    bulk_requests: AtomicUsize,
    page_requests: AtomicUsize,
}

fn query(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn point(run_id: Option<&str>, (step, timestamp, value): (i64, i64, f64)) -> Value {
    let mut point = json!({"key": "loss", "value": value, "timestamp": timestamp, "step": step});
    if let Some(run_id) = run_id {
        point["run_id"] = json!(run_id);
    }
    point
}

async fn bulk(State(fake): State<Arc<Fake>>, RawQuery(raw): RawQuery) -> Response {
    if !fake.bulk_route {
        return StatusCode::NOT_FOUND.into_response();
    }
    fake.bulk_requests.fetch_add(1, Ordering::Relaxed);
    let query = query(raw);
    let limit: usize = query
        .iter()
        .find(|(key, _)| key == "max_results")
        .map(|(_, value)| value.parse().unwrap())
        .unwrap();
    let mut runs: Vec<&str> = query
        .iter()
        .filter(|(key, _)| key == "run_id")
        .map(|(_, value)| value.as_str())
        .collect();
    assert!(runs.len() <= 100, "MLflow refuses more than 100 runs a request");
    runs.sort();
    let mut points = Vec::new();
    for run in runs {
        let mut history = fake.histories.get(run).cloned().unwrap_or_default();
        history.sort_by_key(|&(step, timestamp, _)| (step, timestamp));
        points.extend(history.into_iter().map(|p| point(Some(run), p)));
    }
    points.truncate(limit);
    Json(json!({ "metrics": points })).into_response()
}

async fn paged(State(fake): State<Arc<Fake>>, RawQuery(raw): RawQuery) -> Response {
    fake.page_requests.fetch_add(1, Ordering::Relaxed);
    let query: HashMap<String, String> = query(raw).into_iter().collect();
    let history = fake.histories.get(&query["run_id"]).cloned().unwrap_or_default();
    let size: usize = query["max_results"].parse().unwrap();
    let offset: usize = query.get("page_token").map_or(0, |token| token.parse().unwrap());
    let page: Vec<Value> = history
        .iter()
        .skip(offset)
        .take(size)
        .map(|&p| point(None, p))
        .collect();
    let mut answer = json!({ "metrics": page });
    if offset + size < history.len() {
        answer["next_page_token"] = json!((offset + size).to_string());
    }
    Json(answer).into_response()
}

async fn serve(fake: Arc<Fake>) -> String {
    let app = Router::new()
        .route("/ajax-api/2.0/mlflow/metrics/get-history-bulk", get(bulk))
        .route("/api/2.0/mlflow/metrics/get-history", get(paged))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// 150 runs of 1 to 300 points; one of 60,000 (it fills requests alone),
/// one of 24,999 and one of 25,001 (a request's size, either side), with
/// two points a step; one run without points.
fn histories() -> HashMap<String, History> {
    let mut histories = HashMap::new();
    for run in 0..150u32 {
        let points = 1 + (run * 37) % 300;
        let history = (0..points)
            .map(|step| {
                (
                    i64::from(step),
                    1_000 + i64::from(step),
                    f64::from(run) + f64::from(step) / 1_000.0,
                )
            })
            .collect();
        histories.insert(format!("run-{run:03}"), history);
    }
    for (name, points) in [
        ("run-070-big", 60_000u32),
        ("run-100-edge", 24_999),
        ("run-101-edge", 25_001),
    ] {
        let history = (0..points)
            .map(|i| (i64::from(i / 2), i64::from(i), f64::from(i)))
            .collect();
        histories.insert(name.to_string(), history);
    }
    histories.insert("run-empty".to_string(), Vec::new());
    histories
}

type Histories = HashMap<String, History>;

/// What the reader returned, what it should have, and the fake's counts.
async fn read_all(bulk_route: bool) -> (Arc<Fake>, Histories, Histories) {
    let fake = Arc::new(Fake {
        histories: histories(),
        bulk_route,
        bulk_requests: AtomicUsize::new(0),
        page_requests: AtomicUsize::new(0),
    });
    let base = serve(fake.clone()).await;
    let source = TrackingSource::new(Endpoint::new(&base, &Auth::None).unwrap());
    let run_ids: Vec<String> = fake.histories.keys().cloned().collect();
    let read: Histories = source
        .histories("loss", &run_ids)
        .await
        .unwrap()
        .into_iter()
        .map(|(run, points)| {
            let points = points
                .into_iter()
                .map(|m| (m.step, m.timestamp, m.value))
                .collect();
            (run, points)
        })
        .collect();
    let wanted: Histories = fake
        .histories
        .iter()
        .filter(|(_, history)| !history.is_empty())
        .map(|(run, history)| (run.clone(), history.clone()))
        .collect();
    (fake, read, wanted)
}

#[tokio::test]
async fn bulk_reads_return_every_point_of_every_run_once() {
    let (fake, read, wanted) = read_all(true).await;
    assert_eq!(read.len(), wanted.len());
    for (run, history) in &wanted {
        assert_eq!(read.get(run), Some(history), "run {run}");
    }
    // ~132,000 points: a handful of bulk requests; the runs too big for a
    // request read page by page (the 60,000-point one in three pages).
    let bulk = fake.bulk_requests.load(Ordering::Relaxed);
    let pages = fake.page_requests.load(Ordering::Relaxed);
    assert!(bulk <= 16, "{bulk} bulk requests");
    assert!((3..=8).contains(&pages), "{pages} pages of single histories");
}

#[tokio::test]
async fn a_server_without_the_bulk_route_is_read_run_by_run() {
    let (fake, read, wanted) = read_all(false).await;
    assert_eq!(read, wanted);
    assert_eq!(fake.bulk_requests.load(Ordering::Relaxed), 0);
    // At least a page a run, the empty one included.
    assert!(fake.page_requests.load(Ordering::Relaxed) > wanted.len());
}
