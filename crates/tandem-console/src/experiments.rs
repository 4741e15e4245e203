//! Experiments: the list, create, rename, delete and restore, and an
//! experiment's runs table.

use axum::extract::{Form, MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use tandem_api::access::Caller;
use tandem_api::extract::Ws;
use tandem_api::AppState;
use tandem_core::access::Permission;
use tandem_core::model::{format_utc, LifecycleStage, Run, ViewType};
use tandem_store::{SearchLoggedModels, SearchQuery, SearchRuns, StoreError};

use crate::pages::{base, can, duration, layout, message_page, store_error, time};
use crate::session::{csrf_for, guard_change};

#[derive(Deserialize)]
pub(crate) struct ExperimentsQuery {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    deleted: bool,
    page_token: Option<String>,
}

pub(crate) async fn experiments(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<ExperimentsQuery>,
) -> Response {
    let page = match state
        .store
        .search_experiments(
            &ws,
            SearchQuery {
                filter: query.filter.clone(),
                view_type: if query.deleted {
                    ViewType::DeletedOnly
                } else {
                    ViewType::ActiveOnly
                },
                max_results: 100,
                order_by: vec!["last_update_time DESC".to_string()],
                page_token: query.page_token.clone(),
            },
        )
        .await
    {
        Ok(page) => page,
        Err(error) => return store_error(error),
    };
    let prefix = base(&ws);
    let writer = can(&caller, Permission::Write, &ws);
    layout(
        "Experiments",
        &prefix,
        html! {
            h1 { "Experiments" span.workspace { " in " (ws.name) } }
            form.search method="get" {
                input name="filter" value=(query.filter) placeholder="name LIKE '%vision%'" size="40";
                label { input type="checkbox" name="deleted" value="true" checked[query.deleted]; " deleted" }
                button { "Search" }
            }
            table.experiments {
                thead { tr { th { "Name" } th { "ID" } th { "Last update" } } }
                tbody {
                    @for experiment in &page.items {
                        tr {
                            td { a href={ (prefix) "/experiments/" (experiment.experiment_id) } { (experiment.name) } }
                            td { (experiment.experiment_id) }
                            td { (format_utc(experiment.last_update_time)) }
                        }
                    }
                }
            }
            @if page.items.is_empty() { p.empty { "No experiment matches." } }
            @if let Some(token) = &page.next_page_token {
                a.next href={ "?filter=" (query.filter) "&page_token=" (token) } { "Next page" }
            }
            @if writer {
                form.create method="post" action={ (prefix) "/experiments" } {
                    input type="hidden" name="csrf" value=(csrf_for(&headers));
                    input name="name" placeholder="new experiment" required;
                    button { "Create" }
                }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct CreateExperiment {
    name: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn create_experiment(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<CreateExperiment>,
) -> Response {
    if let Some(refused) = guard_change(&headers, &caller, &form.csrf) {
        return refused;
    }
    match state
        .store
        .create_experiment(&ws, form.name.trim(), None, Vec::new())
        .await
    {
        Ok(id) => Redirect::to(&format!("{}/experiments/{id}", base(&ws))).into_response(),
        Err(error) => store_error(error),
    }
}

/// The experiment the address names, or the page that says why not.
async fn experiment_of(
    state: &AppState,
    ws: &tandem_store::WorkspaceRef,
    params: &std::collections::HashMap<String, String>,
) -> Result<tandem_core::model::Experiment, Response> {
    let Some(experiment_id) = params.get("experiment_id") else {
        return Err(message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No experiment in the address.",
        ));
    };
    state
        .store
        .get_experiment(ws, experiment_id)
        .await
        .map_err(store_error)
}

/// Runs on a page of the runs table.
const PAGE: usize = 100;
/// Columns shown when the user chose none: the first metrics and params
/// found on the page.
const DEFAULT_METRICS: usize = 8;
const DEFAULT_PARAMS: usize = 6;

/// What the runs table shows: the filter, the order, the page, the chosen
/// columns (`metrics.k`, `params.k`, `tags.k`). Read from the raw query,
/// since columns repeat (`col=…&col=…`).
#[derive(Default)]
struct RunsView {
    filter: String,
    order_by: String,
    page_token: Option<String>,
    deleted: bool,
    columns: Vec<String>,
}

impl RunsView {
    fn parse(raw: Option<String>) -> RunsView {
        let mut view = RunsView::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "filter" => view.filter = value.into_owned(),
                "order_by" => view.order_by = value.into_owned(),
                "page_token" if !value.is_empty() => view.page_token = Some(value.into_owned()),
                "deleted" => view.deleted = value == "true",
                "col" if !value.is_empty() && !view.columns.contains(&value.to_string()) => {
                    view.columns.push(value.into_owned())
                }
                _ => {}
            }
        }
        if view.order_by.trim().is_empty() {
            view.order_by = "attributes.start_time DESC".to_string();
        }
        view
    }

    /// This view's query string with `order_by` and `page_token` replaced.
    fn query(&self, order_by: &str, page_token: Option<&str>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("filter", &self.filter)
            .append_pair("order_by", order_by);
        if self.deleted {
            query.append_pair("deleted", "true");
        }
        for column in &self.columns {
            query.append_pair("col", column);
        }
        if let Some(token) = page_token {
            query.append_pair("page_token", token);
        }
        query.finish()
    }

    /// The link that sorts by `column`, descending first, then ascending.
    fn sort(&self, column: &str) -> String {
        let descending = format!("{column} DESC");
        let next = if self.order_by == descending {
            format!("{column} ASC")
        } else {
            descending
        };
        self.query(&next, None)
    }
}

/// A column of the table: its kind (`metrics`, `params`, `tags`) and key.
fn split_column(column: &str) -> Option<(&str, &str)> {
    let (kind, key) = column.split_once('.')?;
    matches!(kind, "metrics" | "params" | "tags").then_some((kind, key))
}

fn cell(run: &Run, kind: &str, key: &str) -> String {
    match kind {
        "metrics" => run
            .latest_metric(key)
            .map(|metric| format!("{:.4}", metric.value))
            .unwrap_or_default(),
        "params" => run.param(key).unwrap_or_default().to_string(),
        _ => run
            .data
            .tags
            .iter()
            .find(|tag| tag.key == key)
            .map(|tag| tag.value.clone())
            .unwrap_or_default(),
    }
}

/// Backticks a key for MLflow's order-by grammar.
fn quoted(kind: &str, key: &str) -> String {
    format!("{kind}.`{}`", key.replace('`', "``"))
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let experiment = match experiment_of(&state, &ws, &params).await {
        Ok(experiment) => experiment,
        Err(page) => return page,
    };
    let experiment_id = &experiment.experiment_id;
    let view = RunsView::parse(raw);
    let page = match state
        .store
        .search_runs(
            &ws,
            SearchRuns {
                experiment_ids: vec![experiment_id.clone()],
                filter: view.filter.clone(),
                view_type: if view.deleted {
                    ViewType::DeletedOnly
                } else {
                    ViewType::ActiveOnly
                },
                max_results: PAGE,
                order_by: vec![view.order_by.clone()],
                page_token: view.page_token.clone(),
            },
        )
        .await
    {
        Ok(page) => page,
        // A malformed filter or order is the user's to fix: say so on the page.
        Err(StoreError::Domain(error)) if error.kind == tandem_core::ErrorKind::InvalidParameterValue => {
            return message_page(StatusCode::BAD_REQUEST, "Invalid search", &error.message)
        }
        Err(error) => return store_error(error),
    };
    // The keys found on this page, for the column chooser.
    let mut available: Vec<String> = Vec::new();
    for run in &page.items {
        available.extend(
            run.data
                .metrics
                .iter()
                .map(|metric| format!("metrics.{}", metric.key)),
        );
        available.extend(
            run.data
                .params
                .iter()
                .map(|param| format!("params.{}", param.key)),
        );
        available.extend(
            run.data
                .tags
                .iter()
                .filter(|tag| !tag.key.starts_with("mlflow."))
                .map(|tag| format!("tags.{}", tag.key)),
        );
    }
    available.sort();
    available.dedup();
    let columns: Vec<String> = if view.columns.is_empty() {
        let metrics = available
            .iter()
            .filter(|c| c.starts_with("metrics."))
            .take(DEFAULT_METRICS);
        let params = available
            .iter()
            .filter(|c| c.starts_with("params."))
            .take(DEFAULT_PARAMS);
        metrics.chain(params).cloned().collect()
    } else {
        view.columns
            .iter()
            .filter(|c| split_column(c).is_some())
            .cloned()
            .collect()
    };
    let mut choices = available.clone();
    for column in &columns {
        if !choices.contains(column) {
            choices.push(column.clone());
        }
    }
    let prefix = base(&ws);
    let writer = can(&caller, Permission::Write, &ws);
    let deleted = experiment.lifecycle_stage == LifecycleStage::Deleted;
    let csrf = csrf_for(&headers);
    let action = |what: &str| format!("{prefix}/experiments/{}/{what}", experiment.experiment_id);
    layout(
        &experiment.name,
        &prefix,
        html! {
            h1 { (experiment.name) span.id { " #" (experiment.experiment_id) } @if deleted { span.badge { " deleted" } } }
            nav.tabs {
                a aria-current="page" href={ (prefix) "/experiments/" (experiment.experiment_id) } { "Runs" }
                a href=(action("models")) { "Logged models" }
            }
            @if writer {
                div.actions {
                    @if !deleted {
                        form.inline method="post" action=(action("rename")) {
                            input type="hidden" name="csrf" value=(csrf);
                            input name="name" value=(experiment.name) required aria-label="New name";
                            button { "Rename" }
                        }
                    }
                    form.inline method="post" action=(action(if deleted { "restore" } else { "delete" })) data-confirm=[(!deleted).then_some("Delete this experiment and its runs? They can be restored until the workspace's retention purges them.")] {
                        input type="hidden" name="csrf" value=(csrf);
                        button.danger { @if deleted { "Restore experiment" } @else { "Delete experiment" } }
                    }
                }
            }
            form.search method="get" {
                input name="filter" value=(view.filter) placeholder="metrics.loss < 0.5 and params.lr = '0.01'" size="60" aria-label="Filter";
                input type="hidden" name="order_by" value=(view.order_by);
                @for column in &view.columns { input type="hidden" name="col" value=(column); }
                label { input type="checkbox" name="deleted" value="true" checked[view.deleted]; " deleted" }
                button { "Filter" }
            }
            @if !choices.is_empty() {
                details.columns {
                    summary { "Columns" }
                    form method="get" {
                        input type="hidden" name="filter" value=(view.filter);
                        input type="hidden" name="order_by" value=(view.order_by);
                        @if view.deleted { input type="hidden" name="deleted" value="true"; }
                        @for choice in &choices {
                            label.choice { input type="checkbox" name="col" value=(choice) checked[columns.contains(choice)]; " " (choice) }
                        }
                        button { "Show columns" }
                    }
                }
            }
            form #compare method="get" action={ (prefix) "/compare" } {
                table.runs {
                    thead {
                        tr {
                            th {}
                            th { a href={ "?" (view.sort("attributes.run_name")) } { "Run" } }
                            th { a href={ "?" (view.sort("attributes.status")) } { "Status" } }
                            th { a href={ "?" (view.sort("attributes.start_time")) } { "Started" } }
                            th { "Duration" }
                            th { a href={ "?" (view.sort("attributes.user_id")) } { "User" } }
                            @for column in &columns {
                                @if let Some((kind, key)) = split_column(column) {
                                    th class=(kind) { a href={ "?" (view.sort(&quoted(kind, key))) } { (key) } }
                                }
                            }
                        }
                    }
                    tbody {
                        @for run in &page.items {
                            tr {
                                td { input type="checkbox" name="runs" value=(run.info.run_id) aria-label={ "Select " (run.info.run_name) }; }
                                td { a href={ (prefix) "/runs/" (run.info.run_id) } { (run.info.run_name) } }
                                td { (format!("{:?}", run.info.status).to_uppercase()) }
                                td { (time(run.info.start_time)) }
                                td { (duration(run)) }
                                td { (run.info.user_id) }
                                @for column in &columns {
                                    @if let Some((kind, key)) = split_column(column) {
                                        td class=[(kind == "metrics").then_some("number")] { (cell(run, kind, key)) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if page.items.is_empty() { p.empty { "No run matches." } }
                button { "Compare selected" }
            }
            p.paging {
                @if view.page_token.is_some() { a.first href={ "?" (view.query(&view.order_by, None)) } { "First page" } " " }
                @if let Some(token) = &page.next_page_token {
                    a.next href={ "?" (view.query(&view.order_by, Some(token))) } { "Next page" }
                }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct RenameForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    csrf: String,
}

type Params = Path<std::collections::HashMap<String, String>>;

/// `POST …/experiments/{id}/rename|delete|restore`: one handler, the
/// action read from the route that matched.
pub(crate) async fn change_experiment(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    route: MatchedPath,
    Path(params): Params,
    Form(form): Form<RenameForm>,
) -> Response {
    if let Some(refused) = guard_change(&headers, &caller, &form.csrf) {
        return refused;
    }
    let Some(experiment_id) = params.get("experiment_id") else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No experiment in the address.",
        );
    };
    let outcome = match route.as_str().rsplit('/').next() {
        Some("rename") => {
            state
                .store
                .rename_experiment(&ws, experiment_id, form.name.trim())
                .await
        }
        Some("delete") => state.store.delete_experiment(&ws, experiment_id).await,
        Some("restore") => state.store.restore_experiment(&ws, experiment_id).await,
        _ => {
            return message_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "No such change of an experiment.",
            )
        }
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("{}/experiments/{experiment_id}", base(&ws))).into_response(),
        Err(error) => store_error(error),
    }
}

/// An experiment's logged models.
pub(crate) async fn logged_models(
    State(state): State<AppState>,
    Ws(ws): Ws,
    Path(params): Params,
) -> Response {
    let experiment = match experiment_of(&state, &ws, &params).await {
        Ok(experiment) => experiment,
        Err(page) => return page,
    };
    let experiment_id = &experiment.experiment_id;
    let models = match state
        .store
        .search_logged_models(
            &ws,
            SearchLoggedModels {
                experiment_ids: vec![experiment_id.clone()],
                max_results: PAGE,
                ..SearchLoggedModels::default()
            },
        )
        .await
    {
        Ok(page) => page.items,
        Err(error) => return store_error(error),
    };
    let prefix = base(&ws);
    layout(
        &format!("{} · logged models", experiment.name),
        &prefix,
        html! {
            h1 { (experiment.name) span.id { " #" (experiment.experiment_id) } }
            nav.tabs {
                a href={ (prefix) "/experiments/" (experiment.experiment_id) } { "Runs" }
                a aria-current="page" href={ (prefix) "/experiments/" (experiment.experiment_id) "/models" } { "Logged models" }
            }
            @if models.is_empty() { p.empty { "No logged model." } }
            @else {
                table.models {
                    thead { tr { th { "Name" } th { "Model ID" } th { "Status" } th { "Type" } th { "Source run" } th { "Created" } } }
                    tbody {
                        @for model in &models {
                            tr {
                                td { a href={ (prefix) "/logged-models/" (model.info.model_id) } { (model.info.name) } }
                                td { code { (model.info.model_id) } }
                                td { (format!("{:?}", model.info.status).to_uppercase()) }
                                td { (model.info.model_type.as_deref().unwrap_or("")) }
                                td { @if let Some(run) = &model.info.source_run_id { a href={ (prefix) "/runs/" (run) } { (run) } } }
                                td { (format_utc(model.info.creation_timestamp_ms)) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}
