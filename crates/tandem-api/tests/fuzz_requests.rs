//! Fuzzing (property-based, bounded) of the JSON request decoders, through
//! the whole router: arbitrary bodies — random JSON shaped like MLflow's
//! requests (right and wrong types, huge numbers, deep nesting, unknown
//! fields) and raw bytes — sent to MLflow's and Tandem's endpoints are
//! answered, and never with a 5xx: a client's mistake is a 4xx with MLflow's
//! error JSON, and the server does not panic.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};
use tandem_api::{router, AppState, Limits};
use tandem_artifacts::ArtifactStore;
use tandem_store::{MetadataStore, SqlStore, StoreOptions};
use tower::ServiceExt;

const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/api/2.0/mlflow/experiments/create"),
    ("POST", "/api/2.0/mlflow/experiments/search"),
    ("GET", "/api/2.0/mlflow/experiments/get"),
    ("POST", "/api/2.0/mlflow/runs/create"),
    ("POST", "/api/2.0/mlflow/runs/update"),
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("POST", "/api/2.0/mlflow/runs/log-metric"),
    ("POST", "/api/2.0/mlflow/runs/log-parameter"),
    ("POST", "/api/2.0/mlflow/runs/set-tag"),
    ("POST", "/api/2.0/mlflow/runs/search"),
    ("GET", "/api/2.0/mlflow/metrics/get-history"),
    ("POST", "/api/2.0/mlflow/runs/log-inputs"),
    ("POST", "/api/2.0/mlflow/registered-models/create"),
    ("GET", "/api/2.0/mlflow/registered-models/search"),
    ("POST", "/api/2.0/mlflow/model-versions/create"),
    ("POST", "/api/2.0/mlflow/logged-models"),
    ("POST", "/api/2.0/mlflow/logged-models/search"),
    ("POST", "/api/tandem/v1/workspaces"),
    ("PATCH", "/api/tandem/v1/workspaces/default"),
];

const FIELDS: &[&str] = &[
    "name",
    "experiment_id",
    "experiment_ids",
    "run_id",
    "key",
    "value",
    "timestamp",
    "step",
    "metrics",
    "params",
    "tags",
    "filter",
    "max_results",
    "order_by",
    "page_token",
    "run_view_type",
    "status",
    "end_time",
    "start_time",
    "source",
    "description",
    "artifact_location",
    "retention_days",
    "storage_quota",
    "purge_protection",
    "datasets",
    "inputs",
    "model_id",
    "version",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        Just(Value::from("NaN")),
        Just(Value::from("99999999999999999999999999")),
        Just(Value::from("-1")),
        Just(Value::from("0")),
        "\\PC{0,24}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..6).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A request body: an object of MLflow-like fields, any JSON, or raw bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec((prop::sample::select(FIELDS), value()), 0..8).prop_map(|entries| {
            let object: Map<String, Value> = entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::to_vec(&Value::Object(object)).unwrap()
        }),
        value().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[test]
fn arbitrary_bodies_get_client_errors_never_server_errors() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = runtime.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("metadata.db").display());
        let store: Arc<dyn MetadataStore> =
            Arc::new(SqlStore::open(StoreOptions::new(url, "fuzz")).await.unwrap());
        let artifacts = ArtifactStore::open("memory://", &HashMap::new()).unwrap();
        router(AppState::standalone(store, artifacts, Limits::default()))
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1500);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (prop::sample::select(ENDPOINTS), body());
    runner
        .run(&strategy, |((method, path), body)| {
            let (status, answer) = runtime.block_on(async {
                let uri = if method == "GET" {
                    // GET takes its parameters from the query string.
                    let query: String = String::from_utf8_lossy(&body)
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "=&_-.".contains(*c))
                        .collect();
                    format!("{path}?{query}")
                } else {
                    path.to_string()
                };
                let request = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                (status, bytes)
            });
            prop_assert!(
                !status.is_server_error(),
                "{method} {path} with {:?}: {status} {}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&answer)
            );
            if status.is_client_error() {
                let error: Value = serde_json::from_slice(&answer).map_err(|e| {
                    TestCaseError::fail(format!(
                        "{method} {path}: {status} without JSON ({e}): {answer:?}"
                    ))
                })?;
                prop_assert!(
                    error["error_code"].is_string() && error["message"].is_string(),
                    "{error}"
                );
            }
            Ok(())
        })
        .unwrap();
}
