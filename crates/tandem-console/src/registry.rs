//! The model registry's pages: registered models, a model's versions with
//! their stages, aliases and source runs, one version, and a logged model.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use tandem_api::extract::Ws;
use tandem_api::AppState;
use tandem_core::model::format_utc;
use tandem_store::SearchQuery;

use crate::pages::{base, layout, message_page, store_error};

#[derive(Deserialize)]
pub(crate) struct ModelsQuery {
    #[serde(default)]
    filter: String,
    page_token: Option<String>,
}

/// A filter on a name, quoted so that any name works.
fn name_is(name: &str) -> String {
    if name.contains('\'') {
        format!("name = \"{}\"", name.replace('"', "\\\""))
    } else {
        format!("name = '{name}'")
    }
}

pub(crate) async fn models(
    State(state): State<AppState>,
    Ws(ws): Ws,
    Query(query): Query<ModelsQuery>,
) -> Response {
    let page = match state
        .store
        .search_registered_models(
            &ws,
            SearchQuery {
                filter: query.filter.clone(),
                max_results: 100,
                order_by: vec!["name ASC".to_string()],
                page_token: query.page_token.clone(),
                ..SearchQuery::default()
            },
        )
        .await
    {
        Ok(page) => page,
        Err(error) => return store_error(error),
    };
    let prefix = base(&ws);
    layout(
        "Models",
        &prefix,
        html! {
            h1 { "Registered models" span.workspace { " in " (ws.name) } }
            form.search method="get" {
                input name="filter" value=(query.filter) placeholder="name LIKE '%clf%'" size="40";
                button { "Search" }
            }
            table.models {
                thead { tr { th { "Name" } th { "Latest versions" } th { "Aliases" } th { "Last update" } } }
                tbody {
                    @for model in &page.items {
                        tr {
                            td { a href={ (prefix) "/models/" (model.name) } { (model.name) } }
                            td { @for version in &model.latest_versions { span.version { "v" (version.version) " (" (version.current_stage) ") " } } }
                            td { @for alias in &model.aliases { span.alias { "@" (alias.alias) "→v" (alias.version) " " } } }
                            td { (format_utc(model.last_updated_timestamp)) }
                        }
                    }
                }
            }
            @if page.items.is_empty() { p.empty { "No registered model matches." } }
            @if let Some(token) = &page.next_page_token {
                a.next href={ "?filter=" (query.filter) "&page_token=" (token) } { "Next page" }
            }
        },
    )
    .into_response()
}

pub(crate) async fn model(
    State(state): State<AppState>,
    Ws(ws): Ws,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(name) = params.get("name") else {
        return message_page(StatusCode::NOT_FOUND, "Not found", "No model in the address.");
    };
    let model = match state.store.get_registered_model(&ws, name).await {
        Ok(model) => model,
        Err(error) => return store_error(error),
    };
    let versions = match state
        .store
        .search_model_versions(
            &ws,
            SearchQuery {
                filter: name_is(name),
                max_results: 1000,
                order_by: vec!["version_number DESC".to_string()],
                ..SearchQuery::default()
            },
        )
        .await
    {
        Ok(page) => page.items,
        Err(error) => return store_error(error),
    };
    let prefix = base(&ws);
    layout(
        &model.name,
        &prefix,
        html! {
            p.crumbs { a href={ (prefix) "/models" } { "Registered models" } }
            h1 { (model.name) }
            @if !model.description.is_empty() { p.description { (model.description) } }
            table.kv { @for tag in &model.tags { tr { th { (tag.key) } td { (tag.value) } } } }
            h2 { "Versions" }
            table.versions {
                thead { tr { th { "Version" } th { "Stage" } th { "Aliases" } th { "Source run" } th { "Status" } th { "Created" } } }
                tbody {
                    @for version in &versions {
                        tr {
                            td { a href={ (prefix) "/models/" (model.name) "/versions/" (version.version) } { "v" (version.version) } }
                            td { (version.current_stage) }
                            td { @for alias in &version.aliases { span.alias { "@" (alias) " " } } }
                            td { @if !version.run_id.is_empty() { a href={ (prefix) "/runs/" (version.run_id) } { (version.run_id) } } }
                            td { (format!("{:?}", version.status).to_uppercase()) }
                            td { (format_utc(version.creation_timestamp)) }
                        }
                    }
                }
            }
            @if versions.is_empty() { p.empty { "No version yet." } }
        },
    )
    .into_response()
}

pub(crate) async fn version(
    State(state): State<AppState>,
    Ws(ws): Ws,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Response {
    let (Some(name), Some(number)) = (params.get("name"), params.get("version")) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No model version in the address.",
        );
    };
    let version = match state.store.get_model_version(&ws, name, number).await {
        Ok(version) => version,
        Err(error) => return store_error(error),
    };
    let prefix = base(&ws);
    layout(
        &format!("{} v{}", version.name, version.version),
        &prefix,
        html! {
            p.crumbs { a href={ (prefix) "/models/" (version.name) } { (version.name) } }
            h1 { (version.name) " v" (version.version) }
            dl.overview {
                dt { "Stage" } dd { (version.current_stage) }
                dt { "Aliases" } dd { @for alias in &version.aliases { "@" (alias) " " } }
                dt { "Status" } dd { (format!("{:?}", version.status).to_uppercase()) }
                dt { "Created" } dd { (format_utc(version.creation_timestamp)) }
                dt { "Source" } dd { code { (version.source) } }
                @if !version.run_id.is_empty() {
                    dt { "Source run" } dd { a href={ (prefix) "/runs/" (version.run_id) } { (version.run_id) } }
                }
                @if !version.model_id.is_empty() {
                    dt { "Logged model" } dd { a href={ (prefix) "/logged-models/" (version.model_id) } { (version.model_id) } }
                }
            }
            @if !version.description.is_empty() { p.description { (version.description) } }
            table.kv { @for tag in &version.tags { tr { th { (tag.key) } td { (tag.value) } } } }
        },
    )
    .into_response()
}

/// A logged model: overview, params, metrics, tags, registrations and
/// artifacts with previews.
pub(crate) async fn logged_model(
    State(state): State<AppState>,
    Ws(ws): Ws,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(model_id) = params.get("model_id") else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No logged model in the address.",
        );
    };
    let model = match state.store.get_logged_model(&ws, model_id).await {
        Ok(model) => model,
        Err(error) => return store_error(error),
    };
    let listed = match crate::artifacts::listing(&state, &ws, &model.info.artifact_uri).await {
        Ok(listed) => listed,
        Err(page) => return page,
    };
    let prefix = base(&ws);
    let info = &model.info;
    layout(
        &info.name,
        &prefix,
        html! {
            p.crumbs { a href={ (prefix) "/experiments/" (info.experiment_id) "/models" } { "Experiment " (info.experiment_id) " · logged models" } }
            h1 { (info.name) }
            dl.overview {
                dt { "Model ID" } dd { code { (info.model_id) } }
                dt { "Status" } dd { (format!("{:?}", info.status).to_uppercase())
                    @if let Some(message) = &info.status_message { " — " (message) } }
                @if let Some(kind) = &info.model_type { dt { "Type" } dd { (kind) } }
                dt { "Created" } dd { (format_utc(info.creation_timestamp_ms)) }
                @if !info.creator_id.is_empty() { dt { "Creator" } dd { (info.creator_id) } }
                @if let Some(run) = &info.source_run_id {
                    dt { "Source run" } dd { a href={ (prefix) "/runs/" (run) } { (run) } }
                }
                @if !info.registrations.is_empty() {
                    dt { "Registered as" } dd {
                        @for registration in &info.registrations {
                            a href={ (prefix) "/models/" (registration.name) "/versions/" (registration.version) } { (registration.name) " v" (registration.version) } " "
                        }
                    }
                }
            }
            h2 { "Parameters" }
            @if model.data.params.is_empty() { p.empty { "No parameter." } }
            table.kv { @for param in &model.data.params { tr { th { (param.key) } td { (param.value) } } } }
            h2 { "Metrics" }
            @if model.data.metrics.is_empty() { p.empty { "No metric." } }
            table.kv { @for metric in &model.data.metrics { tr { th { (metric.key) } td.number { (format!("{:.4}", metric.value)) " (step " (metric.step) ")" } } } }
            h2 { "Tags" }
            table.kv { @for tag in &info.tags { tr { th { (tag.key) } td { (tag.value) } } } }
            h2 { "Artifacts" }
            (crate::artifacts::table(&prefix, &listed))
        },
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_name_is_quoted() {
        assert_eq!(super::name_is("clf"), "name = 'clf'");
        assert_eq!(super::name_is("bob's"), "name = \"bob's\"");
    }
}
