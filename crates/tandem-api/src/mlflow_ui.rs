//! The endpoints MLflow's own web UI calls that its Python client does not:
//! artifact downloads by run, model version and logged model, the datasets
//! of experiments, bulk metric histories, the UI's telemetry switch
//! (answered "off") and its AI gateway (answered "none"). `POST /graphql` is in [`crate::graphql`].
//!
//! Every download goes through the artifact proxy's storage, under the
//! artifact root the run, version or model names: a request never chooses
//! where the server reads.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_artifacts::ArtifactKey;
use tandem_store::WorkspaceRef;

use crate::artifacts::{check_path_is_safe, listing, serve_bytes, storage_key, without_dot_segments};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Message, Ws};
use crate::AppState;

/// MLflow's limits for these endpoints (`handlers.py`).
const MAX_RUNS_PER_BULK_HISTORY: usize = 100;
const MAX_BULK_HISTORY_RESULTS: usize = 25_000;
const MAX_EXPERIMENTS_PER_DATASET_SEARCH: usize = 20;
const MAX_DATASET_SUMMARIES: usize = 1_000;

/// Routes served at the root (default workspace) and under `/w/{workspace}`.
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/get-artifact", get(run_artifact))
        .route("/model-versions/get-artifact", get(model_version_artifact))
        .route(
            "/graphql",
            get(crate::graphql::graphql).post(crate::graphql::graphql),
        );
    for prefix in ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"] {
        router = router
            .route(
                &format!("{prefix}/experiments/search-datasets"),
                post(search_datasets),
            )
            .route(
                &format!("{prefix}/metrics/get-history-bulk"),
                get(metric_history_bulk),
            )
            .route(&format!("{prefix}/upload-artifact"), post(upload_run_artifact))
            .route(
                &format!("{prefix}/logged-models/{{model_id}}/artifacts/files"),
                get(logged_model_artifact),
            )
            .route(
                &format!("{prefix}/logged-models/{{model_id}}/artifacts/directories"),
                get(list_logged_model_artifacts),
            )
            .route(
                &format!("{prefix}/gateway-proxy"),
                get(empty_ai_gateway).post(empty_ai_gateway),
            );
    }
    router
}

/// Routes only at the root: the UI's telemetry switch, and the searches of
/// its GenAI views, which find nothing (Tandem keeps no traces and no
/// evaluation datasets) in the workspace the UI's header names.
pub(crate) fn root_routes() -> Router<AppState> {
    let mut router = Router::new().route(
        "/ajax-api/3.0/mlflow/ui-telemetry",
        get(telemetry_config).post(telemetry_records),
    );
    for path in GENAI_SEARCHES {
        router = router.route(path, post(nothing_found));
    }
    router
}

/// The GenAI views' searches (traces, their metrics, evaluation datasets).
pub const GENAI_SEARCHES: [&str; 3] = [
    "/ajax-api/3.0/mlflow/traces/search",
    "/ajax-api/3.0/mlflow/traces/metrics",
    "/ajax-api/3.0/mlflow/datasets/search",
];

/// An empty answer in MLflow's JSON (empty lists are left out), after the
/// workspace is resolved.
async fn nothing_found(Ws(_): Ws) -> Json<Value> {
    Json(json!({}))
}

/// A path inside an artifact root, checked by MLflow's rule
/// ([`check_path_is_safe`]: `Invalid path`), `.` segments dropped; `.` or
/// nothing is the root itself (None).
fn relative_path(path: Option<&str>, name: &str) -> ApiResult<Option<ArtifactKey>> {
    let Some(path) = path else {
        return Err(ApiError::missing(name));
    };
    check_path_is_safe(path)?;
    let path = without_dot_segments(path);
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    Ok(Some(ArtifactKey::parse(trimmed)?))
}

/// The storage key of `path` under the proxied artifact root `root_uri`.
fn key_under(
    ws: &WorkspaceRef,
    root_uri: &str,
    path: Option<&ArtifactKey>,
    owner: &str,
) -> ApiResult<(ArtifactKey, String)> {
    let root = tandem_store::proxied_artifact_path(root_uri).ok_or_else(|| {
        ApiError::invalid(format!(
            "{owner} stores its artifacts at '{root_uri}', outside this server's artifact proxy"
        ))
    })?;
    let full = match path {
        Some(path) if root.is_empty() => path.as_str().to_string(),
        Some(path) => format!("{root}/{}", path.as_str()),
        None => root,
    };
    let key = ArtifactKey::parse(&full)?;
    Ok((storage_key(ws, Some(&key))?, full))
}

#[derive(Deserialize)]
struct RunArtifactQuery {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
}

/// `GET /get-artifact?run_uuid=…&path=…`: one file of a run, as a download.
async fn run_artifact(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Query(query): Query<RunArtifactQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run_id = query
        .run_id
        .or(query.run_uuid)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::missing("run_id"))?;
    let path = relative_path(query.path.as_deref(), "path")?.ok_or_else(|| ApiError::missing("path"))?;
    let run = state.store.get_run(&ws, &run_id).await?;
    let (key, full) = key_under(&ws, &run.info.artifact_uri, Some(&path), &format!("run {run_id}"))?;
    serve_bytes(&state, &key, &full, &headers).await
}

/// The most `POST …/upload-artifact` takes, as in MLflow.
const MAX_UPLOAD: usize = 10 * 1024 * 1024;

/// `POST …/upload-artifact?run_uuid=…&path=…` with the file as the body:
/// what MLflow's UI uploads to a run (at most 10 MB), refused in MLflow's
/// words and order; the empty answer MLflow gives.
async fn upload_run_artifact(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Query(query): Query<RunArtifactQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let run_id = query
        .run_uuid
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid("Request must specify run_uuid."))?;
    let path = query
        .path
        .filter(|path| !path.is_empty())
        .ok_or_else(|| ApiError::invalid("Request must specify path."))?;
    check_path_is_safe(&path)?;
    let too_large = || ApiError::invalid("Artifact size is too large. Max size is 10MB.");
    if crate::declared_length(&headers) > MAX_UPLOAD as i64 {
        return Err(too_large());
    }
    let data = axum::body::to_bytes(body, MAX_UPLOAD + 1)
        .await
        .map_err(|_| too_large())?;
    if data.is_empty() {
        return Err(ApiError::invalid("Request must specify data."));
    }
    if data.len() > MAX_UPLOAD {
        return Err(too_large());
    }
    let relative =
        relative_path(Some(&path), "path")?.ok_or_else(|| ApiError::invalid("Request must specify path."))?;
    let run = state.store.get_run(&ws, &run_id).await?;
    let (_, full) = key_under(
        &ws,
        &run.info.artifact_uri,
        Some(&relative),
        &format!("run {run_id}"),
    )?;
    let key = ArtifactKey::parse(&full)?;
    let length = data.len() as i64;
    crate::artifacts::store_artifact(&state, &ws, &key, length, axum::body::Body::from(data)).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::empty(),
    )
        .into_response())
}

#[derive(Deserialize)]
struct VersionArtifactQuery {
    name: Option<String>,
    version: Option<String>,
    path: Option<String>,
}

/// `GET /model-versions/get-artifact?name=…&version=…&path=…`: one file of a
/// model version, under the version's download URI.
async fn model_version_artifact(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Query(query): Query<VersionArtifactQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let name = crate::tracking::required(query.name, "name")?;
    let version = crate::tracking::required(query.version, "version")?;
    let path = relative_path(query.path.as_deref(), "path")?.ok_or_else(|| ApiError::missing("path"))?;
    let uri = state
        .store
        .get_model_version_download_uri(&ws, &name, &version)
        .await?;
    let owner = format!("model version {name}/{version}");
    let (key, full) = key_under(&ws, &uri, Some(&path), &owner)?;
    serve_bytes(&state, &key, &full, &headers).await
}

/// `GET …/logged-models/{model_id}/artifacts/files?artifact_file_path=…`.
async fn logged_model_artifact(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // Under `/w/{ws}/` the path holds the workspace too: take the model's by name.
    let model_id = model_id_of(&params)?;
    let path = match query.get("artifact_file_path").filter(|path| !path.is_empty()) {
        Some(path) => relative_path(Some(path), "artifact_file_path")?,
        None => None,
    }
    .ok_or_else(|| {
        ApiError::bad_request("Request must include the \"artifact_file_path\" query parameter.")
    })?;
    let model = state.store.get_logged_model(&ws, &model_id).await?;
    let owner = format!("logged model {model_id}");
    let (key, full) = key_under(&ws, &model.info.artifact_uri, Some(&path), &owner)?;
    serve_bytes(&state, &key, &full, &headers).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListModelArtifactsRequest {
    artifact_directory_path: Option<String>,
    page_token: Option<String>,
}

fn model_id_of(params: &HashMap<String, String>) -> ApiResult<String> {
    params
        .get("model_id")
        .cloned()
        .ok_or_else(|| ApiError::invalid("missing the logged model id in the path"))
}

/// `GET …/logged-models/{model_id}/artifacts/directories`: a logged model's
/// files, as `artifacts/list` lists a run's.
async fn list_logged_model_artifacts(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Message(request): Message<ListModelArtifactsRequest>,
) -> ApiResult<Json<Value>> {
    // Under `/w/{ws}/` the path holds the workspace too: take the model's by name.
    let model_id = model_id_of(&params)?;
    let _ = request.page_token;
    let sub = match request.artifact_directory_path.as_deref() {
        Some(path) => relative_path(Some(path), "artifact_directory_path")?,
        None => None,
    };
    let model = state.store.get_logged_model(&ws, &model_id).await?;
    let owner = format!("logged model {model_id}");
    let (_, listed) = key_under(&ws, &model.info.artifact_uri, sub.as_ref(), &owner)?;
    let given = sub.as_ref().map(|sub| sub.as_str()).unwrap_or_default();
    Ok(Json(
        listing(&state, &ws, &model.info.artifact_uri, &listed, given).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchDatasetsRequest {
    #[serde(default)]
    experiment_ids: Vec<String>,
}

/// `POST …/experiments/search-datasets`: the datasets the experiments' runs
/// used, for the UI's dataset filter.
async fn search_datasets(
    Ws(ws): Ws,
    State(state): State<AppState>,
    Message(request): Message<SearchDatasetsRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        search_datasets_body(&state, &ws, &request.experiment_ids).await?,
    ))
}

async fn search_datasets_body(
    state: &AppState,
    ws: &WorkspaceRef,
    experiment_ids: &[String],
) -> ApiResult<Value> {
    if experiment_ids.is_empty() {
        return Err(ApiError::invalid(
            "SearchDatasets request must specify at least one experiment_id.",
        ));
    }
    if experiment_ids.len() > MAX_EXPERIMENTS_PER_DATASET_SEARCH {
        return Err(ApiError::invalid(format!(
            "SearchDatasets request cannot specify more than {MAX_EXPERIMENTS_PER_DATASET_SEARCH} experiment_ids. \
             Received {} experiment_ids.",
            experiment_ids.len()
        )));
    }
    let summaries = state
        .store
        .search_datasets(ws, experiment_ids, MAX_DATASET_SUMMARIES)
        .await?;
    let mut body = json!({});
    if !summaries.is_empty() {
        body["dataset_summaries"] = json!(summaries);
    }
    Ok(body)
}

/// `GET …/metrics/get-history-bulk?run_id=…&run_id=…&metric_key=…`: the
/// whole history of one metric of up to 100 runs, each point with its run.
async fn metric_history_bulk(
    Ws(ws): Ws,
    State(state): State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> ApiResult<Json<Value>> {
    let mut run_ids = Vec::new();
    let mut metric_key = None;
    let mut max_results = MAX_BULK_HISTORY_RESULTS;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "run_id" => run_ids.push(value.into_owned()),
            "metric_key" => metric_key = Some(value.into_owned()),
            "max_results" => {
                max_results = value
                    .parse::<usize>()
                    .map_err(|_| {
                        ApiError::invalid(format!("Invalid value '{value}' for parameter 'max_results'"))
                    })?
                    .min(MAX_BULK_HISTORY_RESULTS)
            }
            _ => {}
        }
    }
    if run_ids.is_empty() {
        return Err(ApiError::invalid(
            "GetMetricHistoryBulk request must specify at least one run_id.",
        ));
    }
    if run_ids.len() > MAX_RUNS_PER_BULK_HISTORY {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulk request cannot specify more than {MAX_RUNS_PER_BULK_HISTORY} run_ids. \
             Received {} run_ids.",
            run_ids.len()
        )));
    }
    let metric_key = metric_key
        .ok_or_else(|| ApiError::invalid("GetMetricHistoryBulk request must specify a metric_key."))?;
    run_ids.sort();
    let mut metrics = Vec::new();
    for run_id in &run_ids {
        tandem_core::validation::validate_run_id(run_id, "run_id")?;
        let mut page_token: Option<String> = None;
        let mut points = Vec::new();
        loop {
            let page = state
                .store
                .get_metric_history(&ws, run_id, &metric_key, Some(max_results), page_token.as_deref())
                .await?;
            points.extend(page.metrics());
            match page.next_page_token {
                Some(token) if points.len() < max_results => page_token = Some(token),
                _ => break,
            }
        }
        points.sort_by(|a, b| {
            (a.timestamp, a.step)
                .cmp(&(b.timestamp, b.step))
                .then(a.value.total_cmp(&b.value))
        });
        for mut point in points {
            point.run_id = Some(run_id.clone());
            metrics.push(point);
        }
        if metrics.len() >= max_results {
            break;
        }
    }
    metrics.truncate(max_results);
    let mut body = json!({});
    if !metrics.is_empty() {
        body["metrics"] = json!(metrics);
    }
    Ok(Json(body))
}

/// MLflow's AI gateway, which Tandem does not run: answered as `mlflow
/// server` answers when none is configured, an empty one.
async fn empty_ai_gateway() -> Json<Value> {
    Json(json!({ "endpoints": [] }))
}

/// The UI asks whether to send usage telemetry: never, from Tandem.
async fn telemetry_config() -> Json<Value> {
    Json(json!({
        "disable_ui_telemetry": true,
        "disable_ui_events": [],
        "ui_rollout_percentage": 0,
    }))
}

/// Records the UI sends anyway are dropped, as MLflow drops them when its
/// telemetry is off.
async fn telemetry_records() -> Json<Value> {
    Json(json!({ "status": "disabled" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_their_root() {
        assert_eq!(relative_path(Some("."), "path").unwrap(), None);
        assert_eq!(relative_path(Some(""), "path").unwrap(), None);
        assert_eq!(
            relative_path(Some("model/./MLmodel"), "path")
                .unwrap()
                .unwrap()
                .as_str(),
            "model/MLmodel"
        );
        for bad in ["../x", "a/../../b", "/etc/passwd", "..%2fx", ".."] {
            let error = relative_path(Some(bad), "path").unwrap_err();
            assert_eq!(error.message, "Invalid path", "{bad}");
        }
        assert!(relative_path(None, "path").is_err());
    }
}
