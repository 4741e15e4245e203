//! MLflow tracking: experiments, runs, metrics, params, tags, inputs and
//! outputs.

use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_core::model::*;
use tandem_store::{CreateRun, SearchQuery, SearchRuns, UpdateRun};

use crate::error::{ApiError, ApiResult};
use crate::extract::{lenient, Message, Ws};
use crate::page::PageBody;
use crate::AppState;

type Reply = ApiResult<Json<Value>>;

/// Routes under both `/api/2.0/mlflow` and `/ajax-api/2.0/mlflow`.
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"] {
        router = router
            .route(&format!("{prefix}/experiments/create"), post(create_experiment))
            .route(&format!("{prefix}/experiments/get"), get(get_experiment))
            .route(
                &format!("{prefix}/experiments/get-by-name"),
                get(get_experiment_by_name),
            )
            .route(
                &format!("{prefix}/experiments/search"),
                post(search_experiments).get(search_experiments),
            )
            .route(&format!("{prefix}/experiments/update"), post(update_experiment))
            .route(&format!("{prefix}/experiments/delete"), post(delete_experiment))
            .route(&format!("{prefix}/experiments/restore"), post(restore_experiment))
            .route(
                &format!("{prefix}/experiments/set-experiment-tag"),
                post(set_experiment_tag),
            )
            .route(
                &format!("{prefix}/experiments/delete-experiment-tag"),
                post(delete_experiment_tag),
            )
            .route(&format!("{prefix}/runs/create"), post(create_run))
            .route(&format!("{prefix}/runs/get"), get(get_run))
            .route(&format!("{prefix}/runs/update"), post(update_run))
            .route(&format!("{prefix}/runs/delete"), post(delete_run))
            .route(&format!("{prefix}/runs/restore"), post(restore_run))
            .route(
                &format!("{prefix}/runs/search"),
                post(search_runs).get(search_runs),
            )
            .route(&format!("{prefix}/runs/log-metric"), post(log_metric))
            .route(&format!("{prefix}/runs/log-parameter"), post(log_param))
            .route(&format!("{prefix}/runs/set-tag"), post(set_tag))
            .route(&format!("{prefix}/runs/delete-tag"), post(delete_tag))
            .route(&format!("{prefix}/runs/log-batch"), post(log_batch))
            .route(&format!("{prefix}/runs/log-model"), post(log_model))
            .route(&format!("{prefix}/runs/log-inputs"), post(log_inputs))
            .route(&format!("{prefix}/runs/outputs"), post(log_outputs))
            .route(&format!("{prefix}/metrics/get-history"), get(get_metric_history))
            .route(
                &format!("{prefix}/metrics/get-history-bulk-interval"),
                get(get_metric_history_bulk_interval),
            );
    }
    router
}

pub(crate) fn required(value: Option<String>, name: &str) -> ApiResult<String> {
    match value {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ApiError::missing(name)),
    }
}

fn run_id_of(run_id: Option<String>, run_uuid: Option<String>) -> ApiResult<String> {
    let run_id = run_id
        .filter(|id| !id.is_empty())
        .or(run_uuid.filter(|id| !id.is_empty()));
    let run_id = required(run_id, "run_id")?;
    tandem_core::validation::validate_run_id(&run_id, "run_id")?;
    Ok(run_id)
}

fn max_results(value: Option<i64>, default: i64, limit: i64) -> ApiResult<usize> {
    let value = value.unwrap_or(default);
    tandem_core::validation::validate_max_results(value, limit)?;
    Ok(value as usize)
}

fn view_type(value: Option<String>) -> ApiResult<ViewType> {
    match value.as_deref() {
        None | Some("") | Some("ACTIVE_ONLY") | Some("1") => Ok(ViewType::ActiveOnly),
        Some("DELETED_ONLY") | Some("2") => Ok(ViewType::DeletedOnly),
        Some("ALL") | Some("3") => Ok(ViewType::All),
        Some(other) => Err(ApiError::invalid(format!(
            "Invalid value '{other}' for parameter 'view_type': use ACTIVE_ONLY, DELETED_ONLY or ALL"
        ))),
    }
}

/// Accepts a view type given by name or by number, as proto3 JSON allows.
fn enum_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => Ok(Some(name)),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an enum name, got {other}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagMessage {
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

fn tags_of(tags: Vec<TagMessage>, field: &str) -> ApiResult<Vec<Tag>> {
    tags.into_iter()
        .enumerate()
        .map(|(index, tag)| {
            let key = required(tag.key, &format!("{field}[{index}].key"))?;
            Ok(Tag::new(key, tag.value.unwrap_or_default()))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateExperimentRequest {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<TagMessage>,
}

async fn create_experiment(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<CreateExperimentRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let tags = tags_of(request.tags, "tags")?;
    let experiment_id = state
        .store
        .create_experiment(&ws, &name, request.artifact_location.as_deref(), tags)
        .await?;
    Ok(Json(json!({ "experiment_id": experiment_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentIdRequest {
    experiment_id: Option<String>,
}

async fn get_experiment(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<ExperimentIdRequest>,
) -> Reply {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let experiment = state.store.get_experiment(&ws, &experiment_id).await?;
    Ok(Json(json!({ "experiment": experiment })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentByNameRequest {
    experiment_name: Option<String>,
}

async fn get_experiment_by_name(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<ExperimentByNameRequest>,
) -> Reply {
    let name = required(request.experiment_name, "experiment_name")?;
    let experiment = state.store.get_experiment_by_name(&ws, &name).await?;
    Ok(Json(json!({ "experiment": experiment })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchExperimentsRequest {
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
    #[serde(default, deserialize_with = "enum_string")]
    view_type: Option<String>,
}

async fn search_experiments(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<SearchExperimentsRequest>,
) -> ApiResult<Json<PageBody<Experiment>>> {
    let page = state
        .store
        .search_experiments(
            &ws,
            SearchQuery {
                filter: request.filter.unwrap_or_default(),
                view_type: view_type(request.view_type)?,
                max_results: max_results(request.max_results, 1000, 50_000)?,
                order_by: request.order_by,
                page_token: request.page_token.filter(|token| !token.is_empty()),
            },
        )
        .await?;
    Ok(Json(PageBody::new(
        "experiments",
        page.items,
        page.next_page_token,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateExperimentRequest {
    experiment_id: Option<String>,
    new_name: Option<String>,
}

async fn update_experiment(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<UpdateExperimentRequest>,
) -> Reply {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let new_name = required(request.new_name, "new_name")?;
    state
        .store
        .rename_experiment(&ws, &experiment_id, &new_name)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_experiment(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<ExperimentIdRequest>,
) -> Reply {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    state.store.delete_experiment(&ws, &experiment_id).await?;
    Ok(Json(json!({})))
}

async fn restore_experiment(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<ExperimentIdRequest>,
) -> Reply {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    state.store.restore_experiment(&ws, &experiment_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentTagRequest {
    experiment_id: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

async fn set_experiment_tag(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<ExperimentTagRequest>,
) -> Reply {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let key = required(request.key, "key")?;
    let value = request.value.ok_or_else(|| ApiError::missing("value"))?;
    state
        .store
        .set_experiment_tag(&ws, &experiment_id, Tag::new(key, value))
        .await?;
    Ok(Json(json!({})))
}

async fn delete_experiment_tag(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<ExperimentTagRequest>,
) -> Reply {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let key = required(request.key, "key")?;
    state
        .store
        .delete_experiment_tag(&ws, &experiment_id, &key)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRunRequest {
    experiment_id: Option<String>,
    user_id: Option<String>,
    run_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<TagMessage>,
}

async fn create_run(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<CreateRunRequest>,
) -> Reply {
    let run = state
        .store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: request
                    .experiment_id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| "0".to_string()),
                user_id: request.user_id.unwrap_or_default(),
                start_time: request.start_time,
                run_name: request.run_name,
                tags: tags_of(request.tags, "tags")?,
            },
        )
        .await?;
    Ok(Json(json!({ "run": run })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunIdRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

async fn get_run(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<RunIdRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    let run = state.store.get_run(&ws, &run_id).await?;
    Ok(Json(json!({ "run": run })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRunRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default, deserialize_with = "enum_string")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

fn run_status(value: &str) -> ApiResult<RunStatus> {
    let by_number = match value {
        "1" => Some(RunStatus::Running),
        "2" => Some(RunStatus::Scheduled),
        "3" => Some(RunStatus::Finished),
        "4" => Some(RunStatus::Failed),
        "5" => Some(RunStatus::Killed),
        _ => None,
    };
    by_number.or_else(|| RunStatus::parse(value)).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid value '{value}' for parameter 'status': use RUNNING, SCHEDULED, FINISHED, FAILED or KILLED"
        ))
    })
}

async fn update_run(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<UpdateRunRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    let status = request.status.as_deref().map(run_status).transpose()?;
    let info = state
        .store
        .update_run(
            &ws,
            &run_id,
            UpdateRun {
                status,
                end_time: request.end_time,
                run_name: request.run_name,
            },
        )
        .await?;
    Ok(Json(json!({ "run_info": info })))
}

async fn delete_run(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<RunIdRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    state.store.delete_run(&ws, &run_id).await?;
    Ok(Json(json!({})))
}

async fn restore_run(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<RunIdRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    state.store.restore_run(&ws, &run_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRunsRequest {
    #[serde(default)]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "enum_string")]
    run_view_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    page_token: Option<String>,
}

async fn search_runs(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<SearchRunsRequest>,
) -> ApiResult<Json<RunsPage>> {
    let page = state
        .store
        .search_runs(
            &ws,
            SearchRuns {
                experiment_ids: request.experiment_ids,
                filter: request.filter.unwrap_or_default(),
                view_type: view_type(request.run_view_type)?,
                max_results: max_results(request.max_results, 1000, 50_000)?,
                order_by: request.order_by,
                page_token: request.page_token.filter(|token| !token.is_empty()),
            },
        )
        .await?;
    Ok(Json(RunsPage {
        runs: page.items,
        next_page_token: page.next_page_token,
    }))
}

/// A page of `runs/search`, serialized straight from the runs (a page of
/// 1,000 runs through `serde_json::Value` cost more than reading them).
#[derive(serde::Serialize)]
struct RunsPage {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runs: Vec<Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricMessage {
    key: Option<String>,
    #[serde(default, with = "optional_float")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    step: Option<i64>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
    model_id: Option<String>,
    /// Accepted because the message has it; the run is the request's.
    #[serde(rename = "run_id")]
    _run_id: Option<String>,
}

mod optional_float {
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wrapper(#[serde(with = "tandem_core::model::float_json")] f64);
        let value: Option<Wrapper> = serde::Deserialize::deserialize(deserializer)?;
        Ok(value.map(|Wrapper(value)| value))
    }
}

/// A metric of a request; `path` names it in errors (`metrics[3].`), and is
/// only formatted when there is an error to report. Key, value and
/// timestamp are required, in that order, as MLflow checks them: a metric
/// without a timestamp is refused rather than given the server's clock.
fn metric_of(message: MetricMessage, path: impl Fn() -> String) -> ApiResult<Metric> {
    let key = match message.key {
        Some(key) if !key.is_empty() => key,
        _ => return Err(ApiError::missing(&format!("{}key", path()))),
    };
    let value = message
        .value
        .ok_or_else(|| ApiError::missing(&format!("{}value", path())))?;
    let timestamp = message
        .timestamp
        .ok_or_else(|| ApiError::missing(&format!("{}timestamp", path())))?;
    Ok(Metric {
        key,
        value,
        timestamp,
        step: message.step.unwrap_or(0),
        dataset_name: message.dataset_name.filter(|v| !v.is_empty()),
        dataset_digest: message.dataset_digest.filter(|v| !v.is_empty()),
        model_id: message.model_id.filter(|v| !v.is_empty()),
        run_id: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogMetricRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(default, with = "optional_float")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    step: Option<i64>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
    model_id: Option<String>,
}

async fn log_metric(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<LogMetricRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    let metric = metric_of(
        MetricMessage {
            key: request.key,
            value: request.value,
            timestamp: request.timestamp,
            step: request.step,
            dataset_name: request.dataset_name,
            dataset_digest: request.dataset_digest,
            model_id: request.model_id,
            _run_id: None,
        },
        String::new,
    )?;
    state
        .store
        .log_batch(&ws, &run_id, vec![metric], vec![], vec![])
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValueRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

async fn log_param(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<KeyValueRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    let key = required(request.key, "key")?;
    let param = Param {
        key,
        value: request.value.unwrap_or_default(),
    };
    state
        .store
        .log_batch(&ws, &run_id, vec![], vec![param], vec![])
        .await?;
    Ok(Json(json!({})))
}

async fn set_tag(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<KeyValueRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    let key = required(request.key, "key")?;
    let tag = Tag::new(key, request.value.unwrap_or_default());
    state
        .store
        .log_batch(&ws, &run_id, vec![], vec![], vec![tag])
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteTagRequest {
    run_id: Option<String>,
    key: Option<String>,
}

async fn delete_tag(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<DeleteTagRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, None)?;
    let key = required(request.key, "key")?;
    state.store.delete_run_tag(&ws, &run_id, &key).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogBatchRequest {
    run_id: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricMessage>,
    #[serde(default)]
    params: Vec<TagMessage>,
    #[serde(default)]
    tags: Vec<TagMessage>,
}

async fn log_batch(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<LogBatchRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, None)?;
    let metrics = request
        .metrics
        .into_iter()
        .enumerate()
        .map(|(index, metric)| metric_of(metric, || format!("metrics[{index}].")))
        .collect::<ApiResult<Vec<_>>>()?;
    let params = tags_of(request.params, "params")?
        .into_iter()
        .map(|tag| Param {
            key: tag.key,
            value: tag.value,
        })
        .collect();
    let tags = tags_of(request.tags, "tags")?;
    state.store.log_batch(&ws, &run_id, metrics, params, tags).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogModelRequest {
    run_id: Option<String>,
    model_json: Option<String>,
}

/// MLflow 2's model history: the model's JSON is appended to the run's
/// `mlflow.log-model.history` tag.
async fn log_model(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<LogModelRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, None)?;
    let model_json = required(request.model_json, "model_json")?;
    let model: Value = serde_json::from_str(&model_json)
        .map_err(|error| ApiError::invalid(format!("Invalid value for parameter 'model_json': {error}")))?;
    let run = state.store.get_run(&ws, &run_id).await?;
    let mut history: Vec<Value> = run
        .tag("mlflow.log-model.history")
        .and_then(|existing| serde_json::from_str(existing).ok())
        .unwrap_or_default();
    history.push(model);
    let tag = Tag::new("mlflow.log-model.history", Value::Array(history).to_string());
    state
        .store
        .log_batch(&ws, &run_id, vec![], vec![], vec![tag])
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogInputsRequest {
    run_id: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetInput>,
    #[serde(default)]
    models: Vec<ModelInput>,
}

async fn log_inputs(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<LogInputsRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, None)?;
    state
        .store
        .log_inputs(&ws, &run_id, request.datasets, request.models)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogOutputsRequest {
    run_id: Option<String>,
    #[serde(default)]
    models: Vec<ModelOutputMessage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelOutputMessage {
    model_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    step: Option<i64>,
}

async fn log_outputs(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<LogOutputsRequest>,
) -> Reply {
    let run_id = run_id_of(request.run_id, None)?;
    let models = request
        .models
        .into_iter()
        .enumerate()
        .map(|(index, model)| {
            Ok(ModelOutput {
                model_id: required(model.model_id, &format!("models[{index}].model_id"))?,
                step: model.step.unwrap_or(0),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    state.store.log_outputs(&ws, &run_id, models).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricHistoryRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: Option<String>,
    page_token: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    max_results: Option<i64>,
}

async fn get_metric_history(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<MetricHistoryRequest>,
) -> ApiResult<axum::response::Response> {
    let run_id = run_id_of(request.run_id, request.run_uuid)?;
    let key = required(request.metric_key, "metric_key")?;
    let max_results = match request.max_results {
        Some(value) => Some(max_results(Some(value), value, 25_000_000)?),
        None => None,
    };
    let page = state
        .store
        .get_metric_history(
            &ws,
            &run_id,
            &key,
            max_results,
            request.page_token.as_deref().filter(|t| !t.is_empty()),
        )
        .await?;
    let body = crate::page::history_json(&page).map_err(|error| {
        ApiError::new(
            tandem_core::ErrorKind::Internal,
            format!("writing a history page: {error}"),
        )
    })?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkIntervalRequest {
    #[serde(default)]
    run_ids: Vec<String>,
    metric_key: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    start_step: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    end_step: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    max_results: Option<i64>,
}

/// `GET …/metrics/get-history-bulk-interval`: one metric of up to 100 runs,
/// sampled over a step range (what MLflow's UI charts with), in MLflow's
/// shape: `{"metrics": [{key, value, timestamp, step, run_id}]}`.
async fn get_metric_history_bulk_interval(
    Ws(ws): Ws,
    state: axum::extract::State<AppState>,
    Message(request): Message<BulkIntervalRequest>,
) -> Reply {
    use tandem_core::history;
    if request.run_ids.is_empty() {
        return Err(ApiError::missing("run_ids"));
    }
    if request.run_ids.len() > history::MAX_RUNS {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulkInterval request must specify at most {} run_ids. Received {} run_ids.",
            history::MAX_RUNS,
            request.run_ids.len()
        )));
    }
    let key = required(request.metric_key, "metric_key")?;
    let max_results = request.max_results.unwrap_or(history::MAX_RESULTS_PER_RUN);
    if !(1..=history::MAX_RESULTS_PER_RUN).contains(&max_results) {
        return Err(ApiError::invalid(format!(
            "max_results must be between 1 and {}.",
            history::MAX_RESULTS_PER_RUN
        )));
    }
    let range = match (request.start_step, request.end_step) {
        (Some(start), Some(end)) if start > end => {
            return Err(ApiError::invalid(format!(
                "end_step must be greater than start_step. Found start_step={start} and end_step={end}."
            )))
        }
        (Some(start), Some(end)) => Some((start, end)),
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                "If either start step or end step are specified, both must be specified.",
            ))
        }
    };
    let mut metrics = Vec::new();
    for run_id in &request.run_ids {
        tandem_core::validation::validate_run_id(run_id, "run_ids")?;
    }
    for run_id in &request.run_ids {
        let sampled = state
            .store
            .metric_history_sampled(&ws, run_id, &key, max_results as usize, range)
            .await?;
        metrics.extend(sampled);
    }
    let mut body = json!({});
    if !metrics.is_empty() {
        body["metrics"] = json!(metrics);
    }
    Ok(Json(body))
}
