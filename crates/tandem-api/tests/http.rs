//! The HTTP surface, driven in-process: MLflow's JSON conventions, its error
//! codes and statuses, and refusal of bad input with nothing changed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tandem_api::{router, AppState, Limits};
use tandem_artifacts::ArtifactStore;
use tandem_store::{MetadataStore, SqlStore, StoreOptions};
use tower::ServiceExt;

struct Server {
    app: axum::Router,
    store: Arc<dyn MetadataStore>,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("metadata.db").display());
    let store: Arc<dyn MetadataStore> =
        Arc::new(SqlStore::open(StoreOptions::new(url, "test")).await.unwrap());
    let artifacts = ArtifactStore::open("memory://", &HashMap::new()).unwrap();
    let limits = Limits {
        max_json_body: 64 * 1024,
        max_artifact_size: Some(1024 * 1024),
        model_version_source: None,
    };
    let app = router(AppState::standalone(store.clone(), artifacts, limits));
    Server {
        app,
        store,
        _dir: dir,
    }
}

impl Server {
    async fn call(&self, method: &str, uri: &str, body: Body) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    async fn json(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let payload = if method == "GET" {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let (status, bytes) = self.call(method, uri, payload).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }));
        (status, value)
    }

    async fn raw(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let (status, bytes) = self.call(method, uri, Body::from(body.to_string())).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn head(&self) -> i64 {
        self.store.journal_position().await.unwrap().head
    }

    async fn new_run(&self) -> String {
        let (status, body) = self
            .json(
                "POST",
                "/api/2.0/mlflow/runs/create",
                json!({"experiment_id": "0"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["run"]["info"]["run_id"].as_str().unwrap().to_string()
    }
}

fn assert_error(status: StatusCode, body: &Value, expected_status: StatusCode, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn non_finite_metrics_and_int64_strings_follow_mlflow_json() {
    let server = server().await;
    let run_id = server.new_run().await;
    // int64 as a string, NaN and Infinity as strings: proto3 JSON as the client sends it.
    let (status, body) = server
        .json(
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run_id, "metrics": [
                {"key": "nan", "value": "NaN", "timestamp": "1700000000000", "step": "3"},
                {"key": "inf", "value": "Infinity", "timestamp": 1, "step": 0},
                {"key": "neg", "value": "-Infinity", "timestamp": 1, "step": 0}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}), "empty responses are {{}}");
    let (_, body) = server
        .json(
            "GET",
            &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"),
            json!({}),
        )
        .await;
    let metrics = body["run"]["data"]["metrics"].as_array().unwrap();
    let value_of = |key: &str| metrics.iter().find(|m| m["key"] == key).unwrap()["value"].clone();
    assert_eq!(value_of("nan"), json!("NaN"));
    assert_eq!(value_of("inf"), json!("Infinity"));
    assert_eq!(value_of("neg"), json!("-Infinity"));
    let nan = metrics.iter().find(|m| m["key"] == "nan").unwrap();
    // int64 fields come back as numbers; enums by name.
    assert_eq!(nan["timestamp"], json!(1_700_000_000_000_i64));
    assert_eq!(nan["step"], json!(3));
    assert_eq!(body["run"]["info"]["status"], json!("RUNNING"));
    assert_eq!(body["run"]["info"]["lifecycle_stage"], json!("active"));
}

#[tokio::test]
async fn get_parameters_come_from_the_query_string() {
    let server = server().await;
    let (status, body) = server
        .json(
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=0",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["experiment"]["name"], "Default");
    let (status, body) = server
        .json(
            "GET",
            "/api/2.0/mlflow/registered-models/search?max_results=5&order_by=name%20ASC",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .json(
            "GET",
            "/api/2.0/mlflow/registered-models/search?max_results=lots",
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn bad_requests_get_precise_errors_and_change_nothing() {
    let server = server().await;
    let run_id = server.new_run().await;
    let before = server.head().await;

    let (status, body) = server
        .raw("POST", "/api/2.0/mlflow/experiments/create", "{\"name\": ")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert!(
        body["message"].as_str().unwrap().contains("Malformed JSON"),
        "{body}"
    );

    let (status, body) = server
        .raw("POST", "/api/2.0/mlflow/experiments/create", "[1, 2]")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");

    let (status, body) = server
        .json(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "x", "colour": "red"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "names the field: {body}"
    );

    let (status, body) = server
        .json("POST", "/api/2.0/mlflow/experiments/create", json!({"name": 5}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(body["message"].as_str().unwrap().contains("name"), "{body}");

    let (status, body) = server
        .json("POST", "/api/2.0/mlflow/experiments/create", json!({}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Missing value for required parameter 'name'"),
        "{body}"
    );

    let (status, body) = server
        .json(
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run_id, "metrics": [{"key": "m", "value": {"nested": 1}, "timestamp": 1}]}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(
        body["message"].as_str().unwrap().contains("metrics[0].value"),
        "{body}"
    );

    let huge = json!({"run_id": run_id, "params": [{"key": "p", "value": "x".repeat(70 * 1024)}]});
    let (status, body) = server.json("POST", "/api/2.0/mlflow/runs/log-batch", huge).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(
        body["message"].as_str().unwrap().contains("exceeds the limit"),
        "{body}"
    );

    let (status, body) = server
        .json(
            "POST",
            "/api/2.0/mlflow/runs/log-parameter",
            json!({"run_id": run_id, "key": "k".repeat(251), "value": "v"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");

    let (status, body) = server
        .json(
            "GET",
            "/api/2.0/mlflow/runs/get?run_id=0123456789abcdef0123456789abcdef",
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");

    let (status, body) = server
        .json(
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": "m"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after_model = server.head().await;
    let (status, body) = server
        .json(
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": "m"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS");

    let (status, body) = server
        .json(
            "GET",
            "/w/nowhere/api/2.0/mlflow/experiments/get?experiment_id=0",
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");

    // Only the one successful write was journaled.
    assert_eq!(after_model, before + 1);
    assert_eq!(server.head().await, after_model);
}

#[tokio::test]
async fn artifacts_stream_in_and_out_and_never_escape_their_owner() {
    let server = server().await;
    let run_id = server.new_run().await;
    let base = format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (status, _) = server
        .call(
            "PUT",
            &format!("{base}/dir/data.bin"),
            Body::from(payload.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, bytes) = server
        .call("GET", &format!("{base}/dir/data.bin"), Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, payload);
    let (_, listing) = server
        .json(
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts?path=0/{run_id}/artifacts"),
            json!({}),
        )
        .await;
    assert_eq!(listing, json!({"files": [{"path": "dir", "is_dir": true}]}));
    let (_, listing) = server
        .json(
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts?path=0/{run_id}/artifacts/dir"),
            json!({}),
        )
        .await;
    assert_eq!(
        listing,
        json!({"files": [{"path": "data.bin", "is_dir": false, "file_size": 300000}]})
    );

    // The journal holds the artifact's size and digest.
    let records = server.store.journal_after(0, None, 1000).await.unwrap();
    let written = records
        .iter()
        .rev()
        .find(|r| r.change.kind() == "artifact_written")
        .unwrap();
    let encoded = serde_json::to_value(&written.change).unwrap();
    assert_eq!(encoded["size"], json!(300000));
    assert_eq!(encoded["sha256"].as_str().unwrap().len(), 64);

    let before = server.head().await;
    for bad in [
        format!("{base}/../../../escape.txt"),
        format!("{base}/%2e%2e/%2e%2e/escape.txt"),
        format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/other/x.txt"),
        "/api/2.0/mlflow-artifacts/artifacts/0/0123456789abcdef0123456789abcdef/artifacts/x".to_string(),
        "/api/2.0/mlflow-artifacts/artifacts//etc/passwd".to_string(),
    ] {
        let (status, bytes) = server.call("PUT", &bad, Body::from("nope")).await;
        assert!(status.is_client_error(), "{bad}: {status}");
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(body["error_code"].is_string(), "{bad}: {body}");
    }
    let (status, bytes) = server
        .call(
            "PUT",
            &format!("{base}/too-big.bin"),
            Body::from(vec![0u8; 2 * 1024 * 1024]),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let (status, _) = server
        .call("GET", &format!("{base}/too-big.bin"), Body::empty())
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused upload leaves nothing behind"
    );
    assert_eq!(server.head().await, before);

    let (status, _) = server.call("DELETE", &format!("{base}/dir"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .call("GET", &format!("{base}/dir/data.bin"), Body::empty())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn workspaces_isolate_the_mlflow_api() {
    let server = server().await;
    let (status, body) = server
        .json(
            "POST",
            "/api/tandem/v1/workspaces",
            json!({"name": "team-a", "description": "a"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .json(
            "POST",
            "/w/team-a/api/2.0/mlflow/experiments/create",
            json!({"name": "only-in-a"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server
        .json(
            "GET",
            "/w/team-a/api/2.0/mlflow/experiments/get-by-name?experiment_name=only-in-a",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .json(
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=only-in-a",
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
    let (status, body) = server
        .json("POST", "/api/tandem/v1/workspaces", json!({"name": "team-a"}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS");
    let (status, body) = server.json("GET", "/api/tandem/v1/workspaces", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["default", "team-a"]);
    let (status, _) = server
        .json("DELETE", "/api/tandem/v1/workspaces/team-a", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .json(
            "GET",
            "/w/team-a/api/2.0/mlflow/experiments/get?experiment_id=0",
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn the_journal_streams_as_ndjson_from_any_position() {
    let server = server().await;
    for name in ["a", "b", "c"] {
        server
            .json(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                json!({"name": name}),
            )
            .await;
    }
    let (status, bytes) = server
        .call("GET", "/api/tandem/v1/journal?after=2", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    let records: Vec<Value> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        records
            .iter()
            .map(|r| r["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(records[0]["change"]["type"], "experiment_created");
    assert_eq!(records[0]["format"], tandem_core::journal::FORMAT_VERSION);
    assert_eq!(records[0]["origin_region"], "test");
    let (status, bytes) = server
        .call("GET", "/api/tandem/v1/journal?after=0&limit=2", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(bytes).unwrap().lines().count(), 2);
    let (status, body) = server
        .json("GET", "/api/tandem/v1/journal?after=-1", json!({}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    let (status, body) = server
        .json("GET", "/api/tandem/v1/journal?bogus=1", json!({}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn ready_is_distinct_from_alive() {
    let server = server().await;
    let (status, body) = server.json("GET", "/ready", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["role"], "standalone");
    let checks: Vec<(&str, bool)> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| (check["name"].as_str().unwrap(), check["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(checks, [("store", true), ("bootstrap", true)]);
}

/// A region policy whose region does not serve workspace data yet.
struct NotYetServing;

impl tandem_store::RegionPolicy for NotYetServing {
    fn check_write(
        &self,
        _class: Option<tandem_core::journal::AssetClass>,
    ) -> Result<(), tandem_core::Error> {
        Ok(())
    }

    fn check_serving(&self) -> Result<(), tandem_core::Error> {
        Err(tandem_core::Error::new(
            tandem_core::ErrorKind::Unavailable,
            "region 'westus' is not ready: the default workspace has not arrived",
        ))
    }
}

#[tokio::test]
async fn a_region_that_does_not_serve_yet_refuses_workspace_requests_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("metadata.db").display());
    let store: Arc<dyn MetadataStore> =
        Arc::new(SqlStore::open(StoreOptions::new(url, "test")).await.unwrap());
    let artifacts = ArtifactStore::open("memory://", &HashMap::new()).unwrap();
    let mut state = AppState::standalone(store.clone(), artifacts, Limits::default());
    state.policy = Arc::new(NotYetServing);
    let server = Server {
        app: router(state),
        store: store.clone(),
        _dir: dir,
    };
    let head = store.journal_position().await.unwrap().head;
    for (method, uri, body) in [
        (
            "POST",
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "early"}),
        ),
        (
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=0",
            Value::Null,
        ),
        (
            "POST",
            "/w/default/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"]}),
        ),
        ("GET", "/api/tandem/v1/workspaces", Value::Null),
    ] {
        let (status, answer) = server.json(method, uri, body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {answer}"
        );
        assert_eq!(answer["error_code"], "TEMPORARILY_UNAVAILABLE", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("not ready"),
            "{answer}"
        );
    }
    assert_eq!(
        store.journal_position().await.unwrap().head,
        head,
        "nothing was written"
    );
    // The region's own endpoints answer.
    for uri in ["/health", "/version", "/api/tandem/v1/journal?after=0"] {
        let (status, _) = server.call("GET", uri, Body::empty()).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
}
