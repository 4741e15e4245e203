//! The pages: experiments, a run table, a run (params, metrics with charts,
//! tags, artifacts), a comparison of runs, and the deployment.

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use tandem_api::access::Caller;
use tandem_api::extract::Ws;
use tandem_api::AppState;
use tandem_core::access::Permission;
use tandem_core::model::{format_utc, Run, ViewType};
use tandem_store::{SearchQuery, SearchRuns, StoreError, WorkspaceRef, DEFAULT_WORKSPACE};

use crate::chart;
use crate::session::{csrf_for, guard_change};

/// The path prefix of a workspace's pages.
pub(crate) fn base(ws: &WorkspaceRef) -> String {
    if ws.name == DEFAULT_WORKSPACE {
        String::new()
    } else {
        format!("/w/{}", ws.name)
    }
}

fn time(millis: Option<i64>) -> String {
    millis.map(format_utc).unwrap_or_else(|| "–".to_string())
}

fn duration(run: &Run) -> String {
    match (run.info.start_time, run.info.end_time) {
        (Some(start), Some(end)) if end >= start => {
            let seconds = (end - start) as f64 / 1000.0;
            if seconds < 60.0 {
                format!("{seconds:.1} s")
            } else if seconds < 3600.0 {
                format!("{:.1} min", seconds / 60.0)
            } else {
                format!("{:.1} h", seconds / 3600.0)
            }
        }
        _ => "–".to_string(),
    }
}

/// The page around every page's content.
pub(crate) fn layout(title: &str, workspace_base: &str, content: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    // No icon to fetch: every request the page makes is one it needs.
                    link rel="icon" href="data:,";
                    title { (title) " · Tandem" }
                    link rel="stylesheet" href="/console.css";
                    script src="/console.js" defer {}
                }
                body {
                    header.top {
                        a.brand href={ (workspace_base) "/" } { "Tandem" }
                        nav {
                            a href={ (workspace_base) "/" } { "Experiments" }
                            a href={ (workspace_base) "/models" } { "Models" }
                            a href={ (workspace_base) "/deleted" } { "Deleted" }
                            a href="/deployment" { "Deployment" }
                            a href="/audit" { "Audit" }
                        }
                        form.switcher method="get" action="/" data-switcher="" {
                            label { "Workspace " input name="workspace" placeholder="default" size="12"; }
                        }
                    }
                    main { (content) }
                }
            }
        }
        .into_string(),
    )
}

/// A page that says what went wrong, with its status: never a blank page
/// or a stack trace.
pub(crate) fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    (
        status,
        layout(
            title,
            "",
            html! {
                h1 { (title) }
                p.error role="alert" { (message) }
                p { a href="/" { "Back to the experiments" } }
            },
        ),
    )
        .into_response()
}

pub(crate) fn store_error(error: StoreError) -> Response {
    let error = tandem_api::error::ApiError::from(error);
    let title = match error.status().as_u16() {
        404 => "Not found",
        403 => "Not allowed",
        409 => "Not possible now",
        503 => "Unavailable",
        _ => "Something went wrong",
    };
    message_page(error.status(), title, &error.message)
}

fn can(caller: &Caller, permission: Permission, ws: &WorkspaceRef) -> bool {
    caller.require(permission, Some(&ws.name)).is_ok()
}

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

#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    order_by: String,
    page_token: Option<String>,
    #[serde(default)]
    deleted: bool,
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    Ws(ws): Ws,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Query(query): Query<RunsQuery>,
) -> Response {
    let Some(experiment_id) = params.get("experiment_id") else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No experiment in the address.",
        );
    };
    let experiment = match state.store.get_experiment(&ws, experiment_id).await {
        Ok(experiment) => experiment,
        Err(error) => return store_error(error),
    };
    let order_by = if query.order_by.trim().is_empty() {
        "attributes.start_time DESC".to_string()
    } else {
        query.order_by.clone()
    };
    let page = match state
        .store
        .search_runs(
            &ws,
            SearchRuns {
                experiment_ids: vec![experiment_id.clone()],
                filter: query.filter.clone(),
                view_type: if query.deleted {
                    ViewType::DeletedOnly
                } else {
                    ViewType::ActiveOnly
                },
                max_results: 100,
                order_by: vec![order_by.clone()],
                page_token: query.page_token.clone(),
            },
        )
        .await
    {
        Ok(page) => page,
        // A malformed filter is the user's to fix: say so on the page.
        Err(StoreError::Domain(error)) if error.kind == tandem_core::ErrorKind::InvalidParameterValue => {
            return message_page(StatusCode::BAD_REQUEST, "Invalid search", &error.message)
        }
        Err(error) => return store_error(error),
    };
    let mut metric_keys: Vec<&str> = page
        .items
        .iter()
        .flat_map(|run| run.data.metrics.iter().map(|metric| metric.key.as_str()))
        .collect();
    metric_keys.sort_unstable();
    metric_keys.dedup();
    metric_keys.truncate(8);
    let mut param_keys: Vec<&str> = page
        .items
        .iter()
        .flat_map(|run| run.data.params.iter().map(|param| param.key.as_str()))
        .collect();
    param_keys.sort_unstable();
    param_keys.dedup();
    param_keys.truncate(6);
    let prefix = base(&ws);
    let sort = |column: &str| {
        let descending = format!("{column} DESC");
        let next = if order_by == descending {
            format!("{column} ASC")
        } else {
            descending
        };
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", &query.filter)
            .append_pair("order_by", &next)
            .finish()
    };
    layout(
        &experiment.name,
        &prefix,
        html! {
            h1 { (experiment.name) span.id { " #" (experiment.experiment_id) } }
            form.search method="get" {
                input name="filter" value=(query.filter) placeholder="metrics.loss < 0.5 and params.lr = '0.01'" size="60";
                input type="hidden" name="order_by" value=(order_by);
                label { input type="checkbox" name="deleted" value="true" checked[query.deleted]; " deleted" }
                button { "Filter" }
            }
            form #compare method="get" action={ (prefix) "/compare" } {
                table.runs {
                    thead {
                        tr {
                            th {}
                            th { a href={ "?" (sort("attributes.run_name")) } { "Run" } }
                            th { a href={ "?" (sort("attributes.status")) } { "Status" } }
                            th { a href={ "?" (sort("attributes.start_time")) } { "Started" } }
                            th { "Duration" }
                            th { a href={ "?" (sort("attributes.user_id")) } { "User" } }
                            @for key in &metric_keys { th.metric { a href={ "?" (sort(&format!("metrics.`{key}`"))) } { (key) } } }
                            @for key in &param_keys { th.param { a href={ "?" (sort(&format!("params.`{key}`"))) } { (key) } } }
                        }
                    }
                    tbody {
                        @for run in &page.items {
                            tr {
                                td { input type="checkbox" name="runs" value=(run.info.run_id); }
                                td { a href={ (prefix) "/runs/" (run.info.run_id) } { (run.info.run_name) } }
                                td { (format!("{:?}", run.info.status).to_uppercase()) }
                                td { (time(run.info.start_time)) }
                                td { (duration(run)) }
                                td { (run.info.user_id) }
                                @for key in &metric_keys {
                                    td.number { (run.latest_metric(key).map(|metric| format!("{:.4}", metric.value)).unwrap_or_default()) }
                                }
                                @for key in &param_keys { td { (run.param(key).unwrap_or("")) } }
                            }
                        }
                    }
                }
                @if page.items.is_empty() { p.empty { "No run matches." } }
                button { "Compare selected" }
            }
            @if let Some(token) = &page.next_page_token {
                a.next href={ "?" (url::form_urlencoded::Serializer::new(String::new()).append_pair("filter", &query.filter).append_pair("order_by", &order_by).append_pair("page_token", token).finish()) } { "Next page" }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct RunQuery {
    #[serde(default)]
    axis: String,
    #[serde(default)]
    log: bool,
}

pub(crate) async fn run(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Query(query): Query<RunQuery>,
) -> Response {
    let Some(run_id) = params.get("run_id") else {
        return message_page(StatusCode::NOT_FOUND, "Not found", "No run in the address.");
    };
    let run = match state.store.get_run(&ws, run_id).await {
        Ok(run) => run,
        Err(error) => return store_error(error),
    };
    let axis = if query.axis == "time" {
        chart::Axis::Time
    } else {
        chart::Axis::Step
    };
    let mut charts = Vec::new();
    for metric in &run.data.metrics {
        let history = match state
            .store
            .get_metric_history(&ws, run_id, &metric.key, None, None)
            .await
        {
            Ok(page) => page.items,
            Err(error) => return store_error(error),
        };
        let points = chart::downsample(&history, axis);
        charts.push((
            metric.key.clone(),
            history.len(),
            chart::svg(&points, query.log, &metric.key),
        ));
    }
    let artifacts = match tandem_store::proxied_artifact_path(&run.info.artifact_uri) {
        Some(root) => match state
            .store
            .list_artifact_entries(&ws, &format!("{}/", root.trim_end_matches('/')))
            .await
        {
            Ok(entries) => entries
                .into_iter()
                .map(|entry| {
                    let relative = entry
                        .path
                        .strip_prefix(&format!("{}/", root.trim_end_matches('/')))
                        .unwrap_or(&entry.path)
                        .to_string();
                    (relative, entry.path, entry.size)
                })
                .collect::<Vec<_>>(),
            Err(error) => return store_error(error),
        },
        None => Vec::new(),
    };
    let prefix = base(&ws);
    let writer = can(&caller, Permission::Write, &ws);
    let deleted = run.info.lifecycle_stage == tandem_core::model::LifecycleStage::Deleted;
    let parent = run
        .data
        .tags
        .iter()
        .find(|tag| tag.key == "mlflow.parentRunId")
        .map(|tag| tag.value.clone());
    layout(
        &run.info.run_name,
        &prefix,
        html! {
            p.crumbs { a href={ (prefix) "/experiments/" (run.info.experiment_id) } { "Experiment " (run.info.experiment_id) } }
            h1 { (run.info.run_name) @if deleted { span.badge { " deleted" } } }
            dl.overview {
                dt { "Run ID" } dd { code { (run.info.run_id) } }
                dt { "Status" } dd { (format!("{:?}", run.info.status).to_uppercase()) }
                dt { "Started" } dd { (time(run.info.start_time)) }
                dt { "Ended" } dd { (time(run.info.end_time)) }
                dt { "Duration" } dd { (duration(&run)) }
                dt { "User" } dd { (run.info.user_id) }
                @if let Some(parent) = &parent {
                    dt { "Parent run" } dd { a href={ (prefix) "/runs/" (parent) } { (parent) } }
                }
            }
            @if writer {
                form.inline method="post" action={ (prefix) "/runs/" (run.info.run_id) @if deleted { "/restore" } @else { "/delete" } } {
                    input type="hidden" name="csrf" value=(csrf_for(&headers));
                    button.danger { @if deleted { "Restore run" } @else { "Delete run" } }
                }
            }
            h2 { "Parameters" }
            table.kv { @for param in &run.data.params { tr { th { (param.key) } td { (param.value) } } } }
            h2 { "Metrics" }
            p.chart-options {
                a href="?axis=step" { "by step" } " · " a href="?axis=time" { "by time" } " · "
                a href={ "?axis=" (query.axis) "&log=" (!query.log) } { @if query.log { "linear scale" } @else { "log scale" } }
            }
            @for (key, count, svg) in &charts {
                figure.metric {
                    figcaption { (key) " — " (count) " points" }
                    (PreEscaped(svg))
                }
            }
            h2 { "Tags" }
            table.kv { @for tag in &run.data.tags { tr { th { (tag.key) } td { (tag.value) } } } }
            @if !run.inputs.dataset_inputs.is_empty() {
                h2 { "Datasets" }
                ul { @for input in &run.inputs.dataset_inputs { li { (input.dataset.name) " (" (input.dataset.digest) ")" } } }
            }
            h2 { "Artifacts" }
            @if artifacts.is_empty() { p.empty { "No artifact." } }
            ul.artifacts {
                @for (relative, path, size) in &artifacts {
                    li {
                        a download href={ (prefix) "/api/2.0/mlflow-artifacts/artifacts/" (path) } { (relative) }
                        " " span.size { (size) " bytes" }
                    }
                }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn change_run(
    state: AppState,
    ws: WorkspaceRef,
    caller: Caller,
    headers: HeaderMap,
    run_id: Option<&String>,
    csrf: &str,
    delete: bool,
) -> Response {
    if let Some(refused) = guard_change(&headers, &caller, csrf) {
        return refused;
    }
    let Some(run_id) = run_id else {
        return message_page(StatusCode::NOT_FOUND, "Not found", "No run in the address.");
    };
    let outcome = if delete {
        state.store.delete_run(&ws, run_id).await
    } else {
        state.store.restore_run(&ws, run_id).await
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("{}/runs/{run_id}", base(&ws))).into_response(),
        Err(error) => store_error(error),
    }
}

pub(crate) async fn delete_run(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Form(form): Form<CsrfForm>,
) -> Response {
    change_run(state, ws, caller, headers, params.get("run_id"), &form.csrf, true).await
}

pub(crate) async fn restore_run(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Form(form): Form<CsrfForm>,
) -> Response {
    change_run(
        state,
        ws,
        caller,
        headers,
        params.get("run_id"),
        &form.csrf,
        false,
    )
    .await
}

/// Selected runs side by side: every param and metric, differences marked.
pub(crate) async fn compare(
    State(state): State<AppState>,
    Ws(ws): Ws,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let ids: Vec<String> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "runs")
        .map(|(_, value)| value.into_owned())
        .collect();
    if ids.len() < 2 {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Pick runs",
            "Select at least two runs to compare.",
        );
    }
    let mut runs = Vec::new();
    for id in ids.iter().take(10) {
        match state.store.get_run(&ws, id).await {
            Ok(run) => runs.push(run),
            Err(error) => return store_error(error),
        }
    }
    let mut params: Vec<String> = runs
        .iter()
        .flat_map(|run| run.data.params.iter().map(|p| p.key.clone()))
        .collect();
    params.sort();
    params.dedup();
    let mut metrics: Vec<String> = runs
        .iter()
        .flat_map(|run| run.data.metrics.iter().map(|m| m.key.clone()))
        .collect();
    metrics.sort();
    metrics.dedup();
    let prefix = base(&ws);
    layout(
        "Compare runs",
        &prefix,
        html! {
            h1 { "Compare " (runs.len()) " runs" }
            table.compare {
                thead { tr { th {} @for run in &runs { th { a href={ (prefix) "/runs/" (run.info.run_id) } { (run.info.run_name) } } } } }
                tbody {
                    @for key in &params {
                        @let values: Vec<&str> = runs.iter().map(|run| run.param(key).unwrap_or("")).collect();
                        tr.differs[values.windows(2).any(|pair| pair[0] != pair[1])] {
                            th { "param " (key) } @for value in &values { td { (value) } }
                        }
                    }
                    @for key in &metrics {
                        @let values: Vec<String> = runs.iter().map(|run| run.latest_metric(key).map(|m| format!("{:.4}", m.value)).unwrap_or_default()).collect();
                        tr.differs[values.windows(2).any(|pair| pair[0] != pair[1])] {
                            th { "metric " (key) } @for value in &values { td.number { (value) } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// The deployment: regions, roles, lag and RPO, refreshed by the page's
/// script from `/api/tandem/v1/regions` every two seconds.
pub(crate) async fn deployment(in_deployment: bool) -> Response {
    layout(
        "Deployment",
        "",
        html! {
            h1 { "Deployment" }
            @if in_deployment {
                p.note { "Roles, epochs, replication positions, lag and RPO per class, as the region answering sees them; refreshed every 2 s." }
                div #deployment data-source="/api/tandem/v1/regions" { p { "Loading…" } }
            } @else {
                p.note { "This region runs on its own: no deployment file, so no other region, replication or failover. Start a deployment with `tandem up`, or give the server --deployment FILE." }
            }
        },
    )
    .into_response()
}

pub(crate) async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/console.js"),
    )
        .into_response()
}
