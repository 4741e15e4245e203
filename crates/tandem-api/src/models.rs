//! MLflow 3 logged models and the model registry (registered models, model
//! versions, tags, aliases, stages).

use axum::extract::{Path, State};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use tandem_core::model::*;
use tandem_core::search::{LoggedModelDataset, LoggedModelOrder};
use tandem_store::{CreateLoggedModel, CreateModelVersion, SearchLoggedModels, SearchQuery};

use crate::error::{ApiError, ApiResult};
use crate::extract::{lenient, Message, Ws};
use crate::page::PageBody;
use crate::tracking::required;
use crate::AppState;

type Reply = ApiResult<Json<Value>>;
type PageReply<T> = ApiResult<Json<PageBody<T>>>;

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"] {
        router = router
            .route(&format!("{prefix}/logged-models"), post(create_logged_model))
            .route(
                &format!("{prefix}/logged-models/search"),
                post(search_logged_models),
            )
            .route(
                &format!("{prefix}/logged-models/{{model_id}}"),
                get(get_logged_model)
                    .patch(finalize_logged_model)
                    .delete(delete_logged_model),
            )
            .route(
                &format!("{prefix}/logged-models/{{model_id}}/tags"),
                patch(set_logged_model_tags),
            )
            .route(
                &format!("{prefix}/logged-models/{{model_id}}/tags/{{tag_key}}"),
                delete(delete_logged_model_tag),
            )
            .route(
                &format!("{prefix}/logged-models/{{model_id}}/params"),
                post(log_logged_model_params),
            )
            .route(
                &format!("{prefix}/registered-models/create"),
                post(create_registered_model),
            )
            .route(
                &format!("{prefix}/registered-models/rename"),
                post(rename_registered_model),
            )
            .route(
                &format!("{prefix}/registered-models/update"),
                patch(update_registered_model),
            )
            .route(
                &format!("{prefix}/registered-models/delete"),
                delete(delete_registered_model),
            )
            .route(
                &format!("{prefix}/registered-models/get"),
                get(get_registered_model),
            )
            .route(
                &format!("{prefix}/registered-models/search"),
                get(search_registered_models),
            )
            .route(
                &format!("{prefix}/registered-models/get-latest-versions"),
                post(get_latest_versions).get(get_latest_versions),
            )
            .route(
                &format!("{prefix}/registered-models/set-tag"),
                post(set_registered_model_tag),
            )
            .route(
                &format!("{prefix}/registered-models/delete-tag"),
                delete(delete_registered_model_tag),
            )
            .route(
                &format!("{prefix}/registered-models/alias"),
                post(set_alias).delete(delete_alias).get(get_version_by_alias),
            )
            .route(
                &format!("{prefix}/model-versions/create"),
                post(create_model_version),
            )
            .route(
                &format!("{prefix}/model-versions/update"),
                patch(update_model_version),
            )
            .route(
                &format!("{prefix}/model-versions/transition-stage"),
                post(transition_stage),
            )
            .route(
                &format!("{prefix}/model-versions/delete"),
                delete(delete_model_version),
            )
            .route(&format!("{prefix}/model-versions/get"), get(get_model_version))
            .route(
                &format!("{prefix}/model-versions/search"),
                get(search_model_versions),
            )
            .route(
                &format!("{prefix}/model-versions/get-download-uri"),
                get(get_download_uri),
            )
            .route(
                &format!("{prefix}/model-versions/set-tag"),
                post(set_model_version_tag),
            )
            .route(
                &format!("{prefix}/model-versions/delete-tag"),
                delete(delete_model_version_tag),
            );
    }
    router
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValue {
    key: Option<String>,
    value: Option<String>,
}

fn key_values(items: Vec<KeyValue>, field: &str) -> ApiResult<Vec<(String, String)>> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            Ok((
                required(item.key, &format!("{field}[{index}].key"))?,
                item.value.unwrap_or_default(),
            ))
        })
        .collect()
}

fn max_results(value: Option<i64>, default: i64, limit: i64) -> ApiResult<usize> {
    let value = value.unwrap_or(default);
    tandem_core::validation::validate_max_results(value, limit)?;
    Ok(value as usize)
}

/// Path parameters of nested routes also include `workspace`; take ours.
fn path_param(params: &HashMap<String, String>, name: &str) -> ApiResult<String> {
    params.get(name).cloned().ok_or_else(|| ApiError::missing(name))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLoggedModelRequest {
    experiment_id: Option<String>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_logged_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<CreateLoggedModelRequest>,
) -> Reply {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let model = state
        .store
        .create_logged_model(
            &ws,
            CreateLoggedModel {
                experiment_id,
                name: request.name.filter(|name| !name.is_empty()),
                model_type: request.model_type,
                source_run_id: request.source_run_id,
                params: key_values(request.params, "params")?
                    .into_iter()
                    .map(|(key, value)| Param { key, value })
                    .collect(),
                tags: key_values(request.tags, "tags")?
                    .into_iter()
                    .map(|(key, value)| Tag { key, value })
                    .collect(),
                creator_id: String::new(),
            },
        )
        .await?;
    Ok(Json(json!({ "model": model })))
}

async fn get_logged_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let model_id = path_param(&params, "model_id")?;
    let model = state.store.get_logged_model(&ws, &model_id).await?;
    Ok(Json(json!({ "model": model })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalizeRequest {
    model_id: Option<String>,
    status: Option<Value>,
}

fn logged_model_status(value: Option<Value>) -> ApiResult<LoggedModelStatus> {
    let parsed = match &value {
        Some(Value::String(name)) => LoggedModelStatus::parse(name),
        Some(Value::Number(number)) => match number.as_i64() {
            Some(0) => Some(LoggedModelStatus::LoggedModelStatusUnspecified),
            Some(1) => Some(LoggedModelStatus::LoggedModelPending),
            Some(2) => Some(LoggedModelStatus::LoggedModelReady),
            Some(3) => Some(LoggedModelStatus::LoggedModelUploadFailed),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| match value {
        None => ApiError::missing("status"),
        Some(other) => ApiError::invalid(format!("Invalid value {other} for parameter 'status' supplied.")),
    })
}

async fn finalize_logged_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Message(request): Message<FinalizeRequest>,
) -> Reply {
    let model_id = path_param(&params, "model_id")?;
    let _ = request.model_id;
    let status = logged_model_status(request.status)?;
    let model = state.store.finalize_logged_model(&ws, &model_id, status).await?;
    Ok(Json(json!({ "model": model })))
}

async fn delete_logged_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let model_id = path_param(&params, "model_id")?;
    state.store.delete_logged_model(&ws, &model_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLoggedModelTagsRequest {
    model_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn set_logged_model_tags(
    Ws(ws): Ws,
    state: State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Message(request): Message<SetLoggedModelTagsRequest>,
) -> Reply {
    let model_id = path_param(&params, "model_id")?;
    let _ = request.model_id;
    let tags = key_values(request.tags, "tags")?
        .into_iter()
        .map(|(key, value)| Tag { key, value })
        .collect();
    state.store.set_logged_model_tags(&ws, &model_id, tags).await?;
    let model = state.store.get_logged_model(&ws, &model_id).await?;
    Ok(Json(json!({ "model": model })))
}

async fn delete_logged_model_tag(
    Ws(ws): Ws,
    state: State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let model_id = path_param(&params, "model_id")?;
    let key = path_param(&params, "tag_key")?;
    state.store.delete_logged_model_tag(&ws, &model_id, &key).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLoggedModelParamsRequest {
    model_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
}

async fn log_logged_model_params(
    Ws(ws): Ws,
    state: State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Message(request): Message<LogLoggedModelParamsRequest>,
) -> Reply {
    let model_id = path_param(&params, "model_id")?;
    let _ = request.model_id;
    let params = key_values(request.params, "params")?
        .into_iter()
        .map(|(key, value)| Param { key, value })
        .collect();
    state
        .store
        .log_logged_model_params(&ws, &model_id, params)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetFilter {
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBy {
    field_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    ascending: Option<bool>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchLoggedModelsRequest {
    #[serde(default)]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetFilter>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<OrderBy>,
    page_token: Option<String>,
}

async fn search_logged_models(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<SearchLoggedModelsRequest>,
) -> PageReply<LoggedModel> {
    let datasets = request
        .datasets
        .into_iter()
        .enumerate()
        .map(|(index, dataset)| {
            Ok(LoggedModelDataset {
                dataset_name: required(dataset.dataset_name, &format!("datasets[{index}].dataset_name"))?,
                dataset_digest: dataset.dataset_digest.filter(|digest| !digest.is_empty()),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let order_by = request
        .order_by
        .into_iter()
        .enumerate()
        .map(|(index, order)| {
            Ok(LoggedModelOrder {
                field_name: required(order.field_name, &format!("order_by[{index}].field_name"))?,
                ascending: order.ascending.unwrap_or(true),
                dataset_name: order.dataset_name.filter(|name| !name.is_empty()),
                dataset_digest: order.dataset_digest.filter(|digest| !digest.is_empty()),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let page = state
        .store
        .search_logged_models(
            &ws,
            SearchLoggedModels {
                experiment_ids: request.experiment_ids,
                filter: request.filter.unwrap_or_default(),
                datasets,
                max_results: max_results(request.max_results, 100, 50_000)?,
                order_by,
                page_token: request.page_token.filter(|token| !token.is_empty()),
            },
        )
        .await?;
    Ok(Json(PageBody::new("models", page.items, page.next_page_token)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRegisteredModelRequest {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    description: Option<String>,
    deployment_job_id: Option<String>,
}

async fn create_registered_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<CreateRegisteredModelRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let _ = request.deployment_job_id;
    let tags = key_values(request.tags, "tags")?
        .into_iter()
        .map(|(key, value)| Tag { key, value })
        .collect();
    let model = state
        .store
        .create_registered_model(&ws, &name, &request.description.unwrap_or_default(), tags, "")
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    name: Option<String>,
}

async fn get_registered_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<NameRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let model = state.store.get_registered_model(&ws, &name).await?;
    Ok(Json(json!({ "registered_model": model })))
}

async fn delete_registered_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<NameRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    state.store.delete_registered_model(&ws, &name).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameRequest {
    name: Option<String>,
    new_name: Option<String>,
}

async fn rename_registered_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<RenameRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let new_name = required(request.new_name, "new_name")?;
    let model = state.store.rename_registered_model(&ws, &name, &new_name).await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRegisteredModelRequest {
    name: Option<String>,
    description: Option<String>,
    deployment_job_id: Option<String>,
}

async fn update_registered_model(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<UpdateRegisteredModelRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let _ = request.deployment_job_id;
    let model = state
        .store
        .update_registered_model(&ws, &name, &request.description.unwrap_or_default())
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrySearchRequest {
    filter: Option<String>,
    #[serde(default, deserialize_with = "lenient::int64_opt")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    page_token: Option<String>,
}

impl RegistrySearchRequest {
    fn query(self, default_max: i64, limit: i64) -> ApiResult<SearchQuery> {
        Ok(SearchQuery {
            filter: self.filter.unwrap_or_default(),
            view_type: ViewType::ActiveOnly,
            max_results: max_results(self.max_results, default_max, limit)?,
            order_by: self.order_by,
            page_token: self.page_token.filter(|token| !token.is_empty()),
        })
    }
}

async fn search_registered_models(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<RegistrySearchRequest>,
) -> PageReply<RegisteredModel> {
    let page = state
        .store
        .search_registered_models(&ws, request.query(100, 1000)?)
        .await?;
    Ok(Json(PageBody::new(
        "registered_models",
        page.items,
        page.next_page_token,
    )))
}

async fn search_model_versions(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<RegistrySearchRequest>,
) -> PageReply<ModelVersion> {
    let page = state
        .store
        .search_model_versions(&ws, request.query(10_000, 200_000)?)
        .await?;
    Ok(Json(PageBody::new(
        "model_versions",
        page.items,
        page.next_page_token,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatestVersionsRequest {
    name: Option<String>,
    #[serde(default)]
    stages: Vec<String>,
}

async fn get_latest_versions(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<LatestVersionsRequest>,
) -> PageReply<ModelVersion> {
    let name = required(request.name, "name")?;
    let versions = state
        .store
        .get_latest_versions(&ws, &name, &request.stages)
        .await?;
    Ok(Json(PageBody::new("model_versions", versions, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameTagRequest {
    name: Option<String>,
    version: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

async fn set_registered_model_tag(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<NameTagRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let key = required(request.key, "key")?;
    let value = request.value.ok_or_else(|| ApiError::missing("value"))?;
    state
        .store
        .set_registered_model_tag(&ws, &name, Tag::new(key, value))
        .await?;
    Ok(Json(json!({})))
}

async fn delete_registered_model_tag(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<NameTagRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let key = required(request.key, "key")?;
    state.store.delete_registered_model_tag(&ws, &name, &key).await?;
    Ok(Json(json!({})))
}

async fn set_model_version_tag(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<NameTagRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let version = required(request.version, "version")?;
    let key = required(request.key, "key")?;
    let value = request.value.ok_or_else(|| ApiError::missing("value"))?;
    state
        .store
        .set_model_version_tag(&ws, &name, &version, Tag::new(key, value))
        .await?;
    Ok(Json(json!({})))
}

async fn delete_model_version_tag(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<NameTagRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let version = required(request.version, "version")?;
    let key = required(request.key, "key")?;
    state
        .store
        .delete_model_version_tag(&ws, &name, &version, &key)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasRequest {
    name: Option<String>,
    alias: Option<String>,
    version: Option<String>,
}

async fn set_alias(Ws(ws): Ws, state: State<AppState>, Message(request): Message<AliasRequest>) -> Reply {
    let name = required(request.name, "name")?;
    let alias = required(request.alias, "alias")?;
    let version = required(request.version, "version")?;
    state
        .store
        .set_registered_model_alias(&ws, &name, &alias, &version)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_alias(Ws(ws): Ws, state: State<AppState>, Message(request): Message<AliasRequest>) -> Reply {
    let name = required(request.name, "name")?;
    let alias = required(request.alias, "alias")?;
    state
        .store
        .delete_registered_model_alias(&ws, &name, &alias)
        .await?;
    Ok(Json(json!({})))
}

async fn get_version_by_alias(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<AliasRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let alias = required(request.alias, "alias")?;
    let version = state.store.get_model_version_by_alias(&ws, &name, &alias).await?;
    Ok(Json(json!({ "model_version": version })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateModelVersionRequest {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    run_link: Option<String>,
    description: Option<String>,
    model_id: Option<String>,
}

async fn create_model_version(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<CreateModelVersionRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let source = required(request.source, "source")?;
    // The operator's pattern first, as `mlflow server` checks it.
    if let Some(pattern) = &state.limits.model_version_source {
        if !pattern.is_match(&source) {
            return Err(ApiError::invalid(format!(
                "Invalid model version source: '{source}'."
            )));
        }
    }
    let run_id = request.run_id.unwrap_or_default();
    let model_id = request.model_id.unwrap_or_default();
    crate::sources::validate(&state, &ws, &source, &run_id, &model_id).await?;
    let tags = key_values(request.tags, "tags")?
        .into_iter()
        .map(|(key, value)| Tag { key, value })
        .collect();
    let version = state
        .store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name,
                source,
                run_id,
                run_link: request.run_link.unwrap_or_default(),
                description: request.description.unwrap_or_default(),
                tags,
                model_id,
                user_id: String::new(),
            },
        )
        .await?;
    Ok(Json(json!({ "model_version": version })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionRequest {
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
}

async fn get_model_version(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<VersionRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let version = required(request.version, "version")?;
    let version = state.store.get_model_version(&ws, &name, &version).await?;
    Ok(Json(json!({ "model_version": version })))
}

async fn update_model_version(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<VersionRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let version = required(request.version, "version")?;
    let version = state
        .store
        .update_model_version(&ws, &name, &version, &request.description.unwrap_or_default())
        .await?;
    Ok(Json(json!({ "model_version": version })))
}

async fn delete_model_version(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<VersionRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let version = required(request.version, "version")?;
    state.store.delete_model_version(&ws, &name, &version).await?;
    Ok(Json(json!({})))
}

async fn get_download_uri(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<VersionRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let version = required(request.version, "version")?;
    let uri = state
        .store
        .get_model_version_download_uri(&ws, &name, &version)
        .await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionRequest {
    name: Option<String>,
    version: Option<String>,
    stage: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    archive_existing_versions: Option<bool>,
}

async fn transition_stage(
    Ws(ws): Ws,
    state: State<AppState>,
    Message(request): Message<TransitionRequest>,
) -> Reply {
    let name = required(request.name, "name")?;
    let version = required(request.version, "version")?;
    let stage = required(request.stage, "stage")?;
    let version = state
        .store
        .transition_model_version_stage(
            &ws,
            &name,
            &version,
            &stage,
            request.archive_existing_versions.unwrap_or(false),
        )
        .await?;
    Ok(Json(json!({ "model_version": version })))
}
