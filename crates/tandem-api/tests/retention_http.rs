//! Soft delete with retention over HTTP: workspace delete, recover, purge
//! and settings; deleted items listed, recovered and purged; MLflow's
//! registry answering as MLflow does for deleted models; purged artifacts
//! collected from storage (never the workspace's files).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tandem_api::{router, AppState, Limits};
use tandem_artifacts::{ArtifactKey, ArtifactStore};
use tandem_store::{MetadataStore, SqlStore, StoreOptions};
use tower::ServiceExt;

struct Server {
    app: axum::Router,
    store: Arc<dyn MetadataStore>,
    artifacts: ArtifactStore,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("metadata.db").display());
    let store: Arc<dyn MetadataStore> =
        Arc::new(SqlStore::open(StoreOptions::new(url, "test")).await.unwrap());
    let artifacts = ArtifactStore::open(
        &format!("file://{}", dir.path().join("artifacts").display()),
        &HashMap::new(),
    )
    .unwrap();
    let app = router(AppState::standalone(
        store.clone(),
        artifacts.clone(),
        Limits::default(),
    ));
    Server {
        app,
        store,
        artifacts,
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
        let payload = if method == "GET" || body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let (status, bytes) = self.call(method, uri, payload).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }));
        (status, value)
    }

    async fn ok(&self, method: &str, uri: &str, body: Value) -> Value {
        let (status, value) = self.json(method, uri, body).await;
        assert!(status.is_success(), "{method} {uri}: {status} {value}");
        value
    }

    async fn stored_keys(&self, prefix: &str) -> Vec<String> {
        let key = ArtifactKey::parse(prefix).unwrap();
        self.artifacts
            .list_recursive(Some(&key))
            .await
            .unwrap()
            .into_iter()
            .map(|listing| listing.path)
            .collect()
    }
}

fn assert_error(status: StatusCode, body: &Value, expected_status: StatusCode, code: &str) -> String {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    body["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn workspaces_delete_recover_purge_and_settings() {
    let server = server().await;
    let (status, body) = server
        .json(
            "POST",
            "/api/tandem/v1/workspaces",
            json!({"name": "bad", "retention_days": 91}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    let body = server
        .ok(
            "POST",
            "/api/tandem/v1/workspaces",
            json!({"name": "team", "retention_days": 30, "purge_protection": true}),
        )
        .await;
    assert_eq!(body["workspace"]["retention_days"], 30);
    assert_eq!(body["workspace"]["purge_protection"], true);
    let id = body["workspace"]["workspace_id"].as_str().unwrap().to_string();

    let body = server
        .ok(
            "PATCH",
            "/api/tandem/v1/workspaces/team",
            json!({"retention_days": 7, "description": "d"}),
        )
        .await;
    assert_eq!(body["workspace"]["retention_days"], 7);
    assert_eq!(body["workspace"]["description"], "d");
    let (status, body) = server
        .json(
            "PATCH",
            "/api/tandem/v1/workspaces/team",
            json!({"purge_protection": false}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "INVALID_STATE");
    let (status, body) = server
        .json("PATCH", "/api/tandem/v1/workspaces/team", json!({"retention": 7}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");

    let body = server
        .ok("DELETE", "/api/tandem/v1/workspaces/team", Value::Null)
        .await;
    assert!(body["workspace"]["deletion_time"].is_i64(), "{body}");
    assert_eq!(
        body["workspace"]["purge_after"].as_i64().unwrap()
            - body["workspace"]["deletion_time"].as_i64().unwrap(),
        7 * 86_400_000
    );
    // The MLflow API of a deleted workspace says so, and how to recover it.
    let (status, body) = server
        .json(
            "GET",
            "/w/team/api/2.0/mlflow/experiments/get?experiment_id=0",
            Value::Null,
        )
        .await;
    let message = assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
    assert!(
        message.contains("was deleted") && message.contains("recover"),
        "{message}"
    );
    // The name is reserved.
    let (status, body) = server
        .json("POST", "/api/tandem/v1/workspaces", json!({"name": "team"}))
        .await;
    let message = assert_error(status, &body, StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS");
    assert!(message.contains(&id) && message.contains("recover"), "{message}");
    // Listed only with `deleted` (or `all`); addressable by name or id.
    let active = server.ok("GET", "/api/tandem/v1/workspaces", Value::Null).await;
    assert!(!active.to_string().contains("\"team\""));
    let deleted = server
        .ok("GET", "/api/tandem/v1/workspaces?deleted=true", Value::Null)
        .await;
    assert_eq!(deleted["workspaces"][0]["name"], "team");
    let by_id = server
        .ok("GET", &format!("/api/tandem/v1/workspaces/{id}"), Value::Null)
        .await;
    assert_eq!(by_id["workspace"]["lifecycle_stage"], "deleted");
    // Only recover or purge: purge protection refuses the purge, naming the date.
    let (status, body) = server
        .json(
            "POST",
            "/api/tandem/v1/workspaces/team/purge",
            json!({"keep_artifacts": true}),
        )
        .await;
    let message = assert_error(status, &body, StatusCode::CONFLICT, "INVALID_STATE");
    assert!(message.contains("cannot be purged before 20"), "{message}");
    let (status, body) = server
        .json(
            "PATCH",
            "/api/tandem/v1/workspaces/team",
            json!({"retention_days": 9}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "INVALID_STATE");
    let body = server
        .ok(
            "POST",
            &format!("/api/tandem/v1/workspaces/{id}/recover"),
            Value::Null,
        )
        .await;
    assert_eq!(body["workspace"]["lifecycle_stage"], "active");
    server
        .ok(
            "POST",
            "/w/team/api/2.0/mlflow/experiments/create",
            json!({"name": "back"}),
        )
        .await;

    // Without protection: purged at once; then the name is free.
    server
        .ok("POST", "/api/tandem/v1/workspaces", json!({"name": "tmp"}))
        .await;
    let (status, body) = server
        .json("POST", "/api/tandem/v1/workspaces/tmp/purge", Value::Null)
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "INVALID_STATE");
    server
        .ok("DELETE", "/api/tandem/v1/workspaces/tmp", Value::Null)
        .await;
    let (status, body) = server
        .json(
            "POST",
            "/api/tandem/v1/workspaces/tmp/purge",
            json!({"keep": true}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    server
        .ok("POST", "/api/tandem/v1/workspaces/tmp/purge", Value::Null)
        .await;
    let (status, _) = server
        .json("GET", "/api/tandem/v1/workspaces/tmp", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server
        .ok("POST", "/api/tandem/v1/workspaces", json!({"name": "tmp"}))
        .await;
}

#[tokio::test]
async fn registered_models_are_soft_deleted_and_recovered_with_versions_and_aliases() {
    let server = server().await;
    let api = "/api/2.0/mlflow";
    server
        .ok(
            "POST",
            &format!("{api}/registered-models/create"),
            json!({"name": "clf"}),
        )
        .await;
    for n in 1..=2 {
        server
            .ok(
                "POST",
                &format!("{api}/model-versions/create"),
                json!({"name": "clf", "source": format!("s3://b/{n}")}),
            )
            .await;
    }
    server
        .ok(
            "POST",
            &format!("{api}/registered-models/alias"),
            json!({"name": "clf", "alias": "prod", "version": "2"}),
        )
        .await;
    server
        .ok(
            "DELETE",
            &format!("{api}/registered-models/delete"),
            json!({"name": "clf"}),
        )
        .await;
    let (status, body) = server
        .json(
            "GET",
            &format!("{api}/registered-models/get?name=clf"),
            Value::Null,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
    let (status, body) = server
        .json(
            "GET",
            &format!("{api}/registered-models/alias?name=clf&alias=prod"),
            Value::Null,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
    let listed = server
        .ok("GET", "/api/tandem/v1/workspaces/default/deleted", Value::Null)
        .await;
    let items = listed["deleted"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["kind"], "registered_model");
    assert_eq!(items[0]["name"], "clf");
    assert!(items[0]["id"].as_str().unwrap().starts_with("clf:"), "{listed}");
    assert!(items[0]["purge_after"].as_i64().unwrap() > items[0]["deletion_time"].as_i64().unwrap());
    let (status, body) = server
        .json(
            "POST",
            "/api/tandem/v1/workspaces/default/deleted/secret/x/recover",
            Value::Null,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    server
        .ok(
            "POST",
            "/api/tandem/v1/workspaces/default/deleted/registered_model/clf/recover",
            Value::Null,
        )
        .await;
    let body = server
        .ok(
            "GET",
            &format!("{api}/registered-models/alias?name=clf&alias=prod"),
            Value::Null,
        )
        .await;
    assert_eq!(body["model_version"]["version"], "2");

    // A version, addressed as name/version (URL-encoded), purged for good.
    server
        .ok(
            "DELETE",
            &format!("{api}/model-versions/delete"),
            json!({"name": "clf", "version": "1"}),
        )
        .await;
    let listed = server
        .ok("GET", "/api/tandem/v1/workspaces/default/deleted", Value::Null)
        .await;
    assert_eq!(listed["deleted"][0]["id"], "clf/1");
    server
        .ok(
            "POST",
            "/api/tandem/v1/workspaces/default/deleted/model_version/clf%2F1/purge",
            Value::Null,
        )
        .await;
    let listed = server
        .ok("GET", "/api/tandem/v1/workspaces/default/deleted", Value::Null)
        .await;
    assert_eq!(listed["deleted"], json!([]));
    let (status, body) = server
        .json(
            "POST",
            "/api/tandem/v1/workspaces/default/deleted/model_version/clf%2F1/recover",
            Value::Null,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn purged_artifacts_are_collected_but_files_stay() {
    let server = server().await;
    let run = server
        .ok(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": "0"}),
        )
        .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let kept = server
        .ok(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": "0"}),
        )
        .await;
    let kept_id = kept["run"]["info"]["run_id"].as_str().unwrap().to_string();
    for id in [&run_id, &kept_id] {
        let (status, _) = server
            .call(
                "PUT",
                &format!("/api/2.0/mlflow-artifacts/artifacts/0/{id}/artifacts/model.bin"),
                Body::from(vec![7u8; 1000]),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let ws = server.store.resolve_workspace("default").await.unwrap();
    let root = format!("workspaces/{}", ws.workspace_id);
    assert_eq!(server.stored_keys(&root).await.len(), 2);

    for id in [&run_id, &kept_id] {
        server
            .ok("POST", "/api/2.0/mlflow/runs/delete", json!({"run_id": id}))
            .await;
    }
    server
        .ok(
            "POST",
            &format!("/api/tandem/v1/workspaces/default/deleted/run/{kept_id}/purge"),
            json!({"keep_artifacts": true}),
        )
        .await;
    server
        .ok(
            "POST",
            &format!("/api/tandem/v1/workspaces/default/deleted/run/{run_id}/purge"),
            Value::Null,
        )
        .await;
    let queue = server.ok("GET", "/api/tandem/v1/gc", Value::Null).await;
    assert_eq!(queue["pending"].as_array().unwrap().len(), 1, "{queue}");
    assert_eq!(
        tandem_api::tasks::collect_garbage(server.store.as_ref(), &server.artifacts).await,
        1
    );
    let left = server.stored_keys(&root).await;
    assert_eq!(
        left,
        vec![format!("{root}/artifacts/0/{kept_id}/artifacts/model.bin")]
    );
    // Nothing left to do; collecting again is harmless.
    assert_eq!(
        tandem_api::tasks::collect_garbage(server.store.as_ref(), &server.artifacts).await,
        0
    );
    // An upload to the purged run is refused, and leaves nothing behind.
    let (status, _) = server
        .call(
            "PUT",
            &format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/late.bin"),
            Body::from(vec![1u8; 10]),
        )
        .await;
    assert!(!status.is_success());
    assert_eq!(server.stored_keys(&root).await.len(), 1);

    // A workspace purge collects its artifacts, never its files.
    server
        .ok("POST", "/api/tandem/v1/workspaces", json!({"name": "team"}))
        .await;
    let team = server.store.resolve_workspace("team").await.unwrap();
    let team_run = server
        .ok(
            "POST",
            "/w/team/api/2.0/mlflow/runs/create",
            json!({"experiment_id": "0"}),
        )
        .await;
    let team_run_id = team_run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let (status, _) = server
        .call(
            "PUT",
            &format!("/w/team/api/2.0/mlflow-artifacts/artifacts/0/{team_run_id}/artifacts/a.txt"),
            Body::from("a"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let notebook =
        ArtifactKey::parse(&format!("workspaces/{}/files/notebook.ipynb", team.workspace_id)).unwrap();
    server.artifacts.put_bytes(&notebook, "{}".into()).await.unwrap();
    server
        .ok("DELETE", "/api/tandem/v1/workspaces/team", Value::Null)
        .await;
    server
        .ok("POST", "/api/tandem/v1/workspaces/team/purge", Value::Null)
        .await;
    tandem_api::tasks::collect_garbage(server.store.as_ref(), &server.artifacts).await;
    assert_eq!(
        server
            .stored_keys(&format!("workspaces/{}", team.workspace_id))
            .await,
        vec![notebook.as_str().to_string()]
    );
}

#[tokio::test]
async fn an_upload_racing_the_purge_of_its_run_leaves_no_bytes_behind() {
    use bytes::Bytes;
    let server = server().await;
    let run = server
        .ok(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": "0"}),
        )
        .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    // A body that sends one chunk, says so, and waits to be told to finish:
    // by its first chunk the owner check has passed.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let body = futures::stream::unfold(
        (0, Some(started_tx), Some(finish_rx)),
        |(step, started, finish)| async move {
            match step {
                0 => {
                    let _ = started.unwrap().send(());
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 4096])),
                        (1, None, finish),
                    ))
                }
                1 => {
                    let _ = finish.unwrap().await;
                    Some((Ok(Bytes::from(vec![2u8; 4096])), (2, None, None)))
                }
                _ => None,
            }
        },
    );
    let request = Request::builder()
        .method("PUT")
        .uri(format!(
            "/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/big.bin"
        ))
        .body(Body::from_stream(body))
        .unwrap();
    let upload = tokio::spawn(server.app.clone().oneshot(request));
    started_rx.await.unwrap();

    let ws = server.store.resolve_workspace("default").await.unwrap();
    server.store.delete_run(&ws, &run_id).await.unwrap();
    server
        .store
        .purge_deleted(&ws, tandem_store::retention::DeletedKind::Run, &run_id, false)
        .await
        .unwrap();
    // The purge's collection runs first: nothing is there yet.
    assert_eq!(
        tandem_api::tasks::collect_garbage(server.store.as_ref(), &server.artifacts).await,
        1
    );
    finish_tx.send(()).unwrap();
    let response = upload.await.unwrap().unwrap();
    assert!(!response.status().is_success(), "{}", response.status());
    assert_eq!(
        server
            .stored_keys(&format!("workspaces/{}", ws.workspace_id))
            .await,
        Vec::<String>::new(),
        "the upload finished after the purge must not leave its bytes"
    );
    assert!(server
        .store
        .list_artifact_entries(&ws, "")
        .await
        .unwrap()
        .is_empty());
}

/// An experiment whose location lies inside a run's artifacts is refused
/// now, but may exist from before (or arrive from an older peer): purging
/// the outer run must then spare the nested live run's bytes and index,
/// and collect only the purged run's own.
#[tokio::test]
async fn collection_spares_a_live_run_nested_inside_a_purged_runs_root() {
    let server = server().await;
    let outer = server
        .ok(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": "0"}),
        )
        .await["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let upload = |path: String, bytes: Vec<u8>| {
        let server = &server;
        async move {
            let (status, body) = server.call("PUT", &path, Body::from(bytes)).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        }
    };
    upload(
        format!("/api/2.0/mlflow-artifacts/artifacts/0/{outer}/artifacts/model.bin"),
        vec![1u8; 100],
    )
    .await;

    // Refused through the API...
    let nested_location = format!("mlflow-artifacts:/0/{outer}/artifacts/nested");
    let (status, body) = server
        .json(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "nested", "artifact_location": nested_location}),
        )
        .await;
    let message = assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(
        message.contains("inside the artifacts of an existing run"),
        "{message}"
    );
    // ...but it can arrive as a record another region accepted earlier.
    let ws = server.store.resolve_workspace("default").await.unwrap();
    let record = tandem_core::journal::JournalRecord {
        seq: 0,
        workspace_id: ws.workspace_id.clone(),
        hlc: 1,
        origin_region: "older-peer".to_string(),
        origin_seq: 1,
        epoch: 0,
        format: tandem_core::journal::FORMAT_VERSION,
        recorded_at: 1,
        change: tandem_core::journal::Change::ExperimentCreated {
            experiment_id: "77".to_string(),
            name: "nested".to_string(),
            artifact_location: nested_location,
            tags: vec![],
            time: 1,
        },
        seen: None,
        principal: None,
    };
    assert!(server.store.apply_record(&record).await.unwrap());
    let inner = server
        .ok(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": "77"}),
        )
        .await["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let inner_path = format!("0/{outer}/artifacts/nested/{inner}/artifacts/live.bin");
    upload(
        format!("/api/2.0/mlflow-artifacts/artifacts/{inner_path}"),
        vec![2u8; 50],
    )
    .await;

    server
        .ok("POST", "/api/2.0/mlflow/runs/delete", json!({"run_id": outer}))
        .await;
    server
        .ok(
            "POST",
            &format!("/api/tandem/v1/workspaces/default/deleted/run/{outer}/purge"),
            Value::Null,
        )
        .await;
    assert_eq!(
        tandem_api::tasks::collect_garbage(server.store.as_ref(), &server.artifacts).await,
        1
    );
    let root = format!("workspaces/{}/artifacts", ws.workspace_id);
    assert_eq!(
        server.stored_keys(&root).await,
        vec![format!("{root}/{inner_path}")]
    );
    let (status, bytes) = server
        .call(
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{inner_path}"),
            Body::empty(),
        )
        .await;
    assert_eq!((status, bytes), (StatusCode::OK, vec![2u8; 50]));
    // The live run's index survived the purge of the outer root.
    let listed = server
        .ok(
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts?path=0/{outer}/artifacts/nested/{inner}/artifacts"),
            Value::Null,
        )
        .await;
    assert_eq!(listed["files"][0]["path"], "live.bin", "{listed}");
}
