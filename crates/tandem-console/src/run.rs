//! A run (overview with source, parent and child runs, params, metrics with
//! charts that zoom, tags, datasets, logged models, artifacts with
//! previews), deleting and restoring it, and a comparison of runs with
//! overlaid charts and a param/metric diff.

use axum::extract::{Form, MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;
use tandem_api::access::Caller;
use tandem_api::extract::Ws;
use tandem_api::AppState;
use tandem_core::access::Permission;
use tandem_core::model::{LifecycleStage, Run, ViewType};
use tandem_store::{SearchLoggedModels, SearchRuns};

use crate::artifacts;
use crate::chart::{self, Axis};
use crate::pages::{base, can, duration, layout, message_page, store_error, time};
use crate::session::{csrf_for, guard_change};

/// Child runs listed on a run's page.
const CHILDREN: usize = 100;

#[derive(Deserialize, Default)]
pub(crate) struct ChartQuery {
    #[serde(default)]
    axis: String,
    #[serde(default)]
    log: bool,
    /// A zoomed x range (inclusive), from a drag on a chart.
    from: Option<i64>,
    to: Option<i64>,
}

impl ChartQuery {
    fn axis(&self) -> Axis {
        if self.axis == "time" {
            Axis::Time
        } else {
            Axis::Step
        }
    }

    fn range(&self) -> Option<(i64, i64)> {
        match (self.from, self.to) {
            (Some(from), Some(to)) if from <= to => Some((from, to)),
            (Some(from), None) => Some((from, i64::MAX)),
            (None, Some(to)) => Some((i64::MIN, to)),
            _ => None,
        }
    }

    /// The links that switch axis and scale and reset the zoom, keeping
    /// `keep` (the runs of a comparison) in the query.
    fn options(&self, keep: &str) -> Markup {
        let link = |axis: &str, log: bool, zoom: bool| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("axis", axis);
            if log {
                query.append_pair("log", "true");
            }
            if zoom {
                if let Some(from) = self.from {
                    query.append_pair("from", &from.to_string());
                }
                if let Some(to) = self.to {
                    query.append_pair("to", &to.to_string());
                }
            }
            let query = query.finish();
            if keep.is_empty() {
                format!("?{query}")
            } else {
                format!("?{keep}&{query}")
            }
        };
        let axis = if self.axis == "time" { "time" } else { "step" };
        html! {
            p.chart-options {
                a href=(link("step", self.log, false)) aria-current=[(axis == "step").then_some("true")] { "by step" } " · "
                a href=(link("time", self.log, false)) aria-current=[(axis == "time").then_some("true")] { "by time" } " · "
                a href=(link(axis, !self.log, true)) { @if self.log { "linear scale" } @else { "log scale" } }
                @if self.range().is_some() {
                    " · " a.reset-zoom href=(link(axis, self.log, false)) { "reset zoom" }
                }
                " " span.hint { "(drag across a chart to zoom)" }
            }
        }
    }
}

/// The x of an envelope's points, as the chart draws them.
fn points(envelope: &tandem_core::history::HistoryEnvelope) -> Vec<(f64, f64)> {
    envelope.points.iter().map(|(x, y)| (*x as f64, *y)).collect()
}

fn caption(key: &str, envelope: &tandem_core::history::HistoryEnvelope) -> String {
    if envelope.downsampled {
        format!(
            "{key} — {} points, drawn from {} (each bucket's min and max)",
            envelope.total,
            envelope.points.len()
        )
    } else {
        format!("{key} — {} points", envelope.total)
    }
}

fn tag<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.data
        .tags
        .iter()
        .find(|tag| tag.key == key)
        .map(|tag| tag.value.as_str())
}

pub(crate) async fn run(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Query(query): Query<ChartQuery>,
) -> Response {
    let Some(run_id) = params.get("run_id") else {
        return message_page(StatusCode::NOT_FOUND, "Not found", "No run in the address.");
    };
    let run = match state.store.get_run(&ws, run_id).await {
        Ok(run) => run,
        Err(error) => return store_error(error),
    };
    let mut charts = Vec::new();
    for metric in &run.data.metrics {
        let envelope = match state
            .store
            .metric_history_envelope(
                &ws,
                run_id,
                &metric.key,
                query.axis(),
                query.range(),
                chart::MAX_BUCKETS,
            )
            .await
        {
            Ok(envelope) => envelope,
            Err(error) => return store_error(error),
        };
        charts.push((
            caption(&metric.key, &envelope),
            chart::svg(&points(&envelope), query.log, &metric.key),
        ));
    }
    let children = match state
        .store
        .search_runs(
            &ws,
            SearchRuns {
                experiment_ids: vec![run.info.experiment_id.clone()],
                filter: format!("tags.mlflow.parentRunId = '{}'", run.info.run_id),
                view_type: ViewType::ActiveOnly,
                max_results: CHILDREN,
                order_by: vec!["attributes.start_time ASC".to_string()],
                page_token: None,
            },
        )
        .await
    {
        Ok(page) => page,
        Err(error) => return store_error(error),
    };
    let models = match state
        .store
        .search_logged_models(
            &ws,
            SearchLoggedModels {
                experiment_ids: vec![run.info.experiment_id.clone()],
                filter: format!("source_run_id = '{}'", run.info.run_id),
                max_results: 50,
                ..SearchLoggedModels::default()
            },
        )
        .await
    {
        Ok(page) => page.items,
        Err(error) => return store_error(error),
    };
    let listed = match artifacts::listing(&state, &ws, &run.info.artifact_uri).await {
        Ok(listed) => listed,
        Err(page) => return page,
    };
    let prefix = base(&ws);
    let writer = can(&caller, Permission::Write, &ws);
    let deleted = run.info.lifecycle_stage == LifecycleStage::Deleted;
    let parent = tag(&run, "mlflow.parentRunId");
    let (system_tags, user_tags): (Vec<_>, Vec<_>) = run
        .data
        .tags
        .iter()
        .partition(|tag| tag.key.starts_with("mlflow."));
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
                @if let Some(source) = tag(&run, "mlflow.source.name") {
                    dt { "Source" } dd {
                        code { (source) }
                        @if let Some(kind) = tag(&run, "mlflow.source.type") { " (" (kind.to_lowercase()) ")" }
                        @if let Some(commit) = tag(&run, "mlflow.source.git.commit") { " @ " code { (commit.chars().take(12).collect::<String>()) } }
                    }
                }
                @if let Some(parent) = parent {
                    dt { "Parent run" } dd { a href={ (prefix) "/runs/" (parent) } { (parent) } }
                }
            }
            @if writer {
                form.inline method="post" action={ (prefix) "/runs/" (run.info.run_id) @if deleted { "/restore" } @else { "/delete" } } {
                    input type="hidden" name="csrf" value=(csrf_for(&headers));
                    button.danger { @if deleted { "Restore run" } @else { "Delete run" } }
                }
            }
            @if !children.items.is_empty() {
                h2 { "Child runs" }
                table.runs.children {
                    thead { tr { th { "Run" } th { "Status" } th { "Started" } th { "Duration" } } }
                    tbody {
                        @for child in &children.items {
                            tr {
                                td { a href={ (prefix) "/runs/" (child.info.run_id) } { (child.info.run_name) } }
                                td { (format!("{:?}", child.info.status).to_uppercase()) }
                                td { (time(child.info.start_time)) }
                                td { (duration(child)) }
                            }
                        }
                    }
                }
                @if children.next_page_token.is_some() {
                    p.note { "The first " (CHILDREN) " child runs; " a href={ (prefix) "/experiments/" (run.info.experiment_id) "?filter=" (format!("tags.mlflow.parentRunId%20%3D%20%27{}%27", run.info.run_id)) } { "all of them" } "." }
                }
            }
            h2 { "Parameters" }
            @if run.data.params.is_empty() { p.empty { "No parameter." } }
            table.kv { @for param in &run.data.params { tr { th { (param.key) } td { (param.value) } } } }
            h2 { "Metrics" }
            @if run.data.metrics.is_empty() { p.empty { "No metric." } }
            @else {
                (query.options(""))
                @for (caption, svg) in &charts {
                    figure.metric {
                        figcaption { (caption) }
                        (PreEscaped(svg))
                    }
                }
            }
            h2 { "Tags" }
            table.kv { @for tag in &user_tags { tr { th { (tag.key) } td { (tag.value) } } } }
            @if !system_tags.is_empty() {
                details.system-tags {
                    summary { (system_tags.len()) " system tags" }
                    table.kv { @for tag in &system_tags { tr { th { (tag.key) } td { (tag.value) } } } }
                }
            }
            @if !run.inputs.dataset_inputs.is_empty() {
                h2 { "Datasets" }
                table.kv {
                    @for input in &run.inputs.dataset_inputs {
                        tr {
                            th { (input.dataset.name) }
                            td { "digest " code { (input.dataset.digest) } " · " (input.dataset.source_type)
                                @for tag in &input.tags { " · " (tag.key) "=" (tag.value) } }
                        }
                    }
                }
            }
            @if !models.is_empty() {
                h2 { "Logged models" }
                ul.models {
                    @for model in &models {
                        li { a href={ (prefix) "/logged-models/" (model.info.model_id) } { (model.info.name) } " " span.id { (model.info.model_id) } }
                    }
                }
            }
            h2 { "Artifacts" }
            (artifacts::table(&prefix, &listed))
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST …/runs/{id}/delete|restore`: one handler, the action read from
/// the route that matched.
pub(crate) async fn change_run(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    route: MatchedPath,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = guard_change(&headers, &caller, &form.csrf) {
        return refused;
    }
    let Some(run_id) = params.get("run_id") else {
        return message_page(StatusCode::NOT_FOUND, "Not found", "No run in the address.");
    };
    let outcome = match route.as_str().rsplit('/').next() {
        Some("delete") => state.store.delete_run(&ws, run_id).await,
        Some("restore") => state.store.restore_run(&ws, run_id).await,
        _ => return message_page(StatusCode::NOT_FOUND, "Not found", "No such change of a run."),
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("{}/runs/{run_id}", base(&ws))).into_response(),
        Err(error) => store_error(error),
    }
}

/// Runs compared at most.
const COMPARED: usize = 10;

/// Selected runs side by side: one chart per metric with every run's
/// history overlaid, and every param and metric, differences marked.
pub(crate) async fn compare(
    State(state): State<AppState>,
    Ws(ws): Ws,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    let mut ids: Vec<String> = pairs
        .iter()
        .filter(|(key, _)| key == "runs")
        .map(|(_, value)| value.clone())
        .collect();
    ids.dedup();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let query = ChartQuery {
        axis: value("axis").unwrap_or_default(),
        log: value("log").as_deref() == Some("true"),
        from: value("from").and_then(|from| from.parse().ok()),
        to: value("to").and_then(|to| to.parse().ok()),
    };
    if ids.len() < 2 {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Pick runs",
            "Select at least two runs to compare.",
        );
    }
    if ids.len() > COMPARED {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Too many runs",
            &format!(
                "Compare at most {COMPARED} runs at once ({} selected).",
                ids.len()
            ),
        );
    }
    let mut runs = Vec::new();
    for id in &ids {
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
    let mut charts = Vec::new();
    for key in &metrics {
        let mut series = Vec::new();
        for run in runs.iter().filter(|run| run.latest_metric(key).is_some()) {
            match state
                .store
                .metric_history_envelope(
                    &ws,
                    &run.info.run_id,
                    key,
                    query.axis(),
                    query.range(),
                    chart::MAX_BUCKETS,
                )
                .await
            {
                Ok(envelope) => series.push((run.info.run_name.as_str(), points(&envelope))),
                Err(error) => return store_error(error),
            }
        }
        charts.push((key.clone(), chart::overlay(&series, query.log, key)));
    }
    let keep = ids
        .iter()
        .map(|id| {
            format!(
                "runs={}",
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
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
            @if !charts.is_empty() {
                h2 { "Metrics" }
                (query.options(&keep))
                @for (key, svg) in &charts {
                    figure.metric { figcaption { (key) } (PreEscaped(svg)) }
                }
            }
        },
    )
    .into_response()
}
