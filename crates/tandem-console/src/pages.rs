//! What every page shares (the layout, the error page, the workspace's
//! path prefix, formatting), the deployment page and the static assets.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use tandem_api::access::Caller;
use tandem_core::access::Permission;
use tandem_core::model::{format_utc, Run};
use tandem_store::{StoreError, WorkspaceRef, DEFAULT_WORKSPACE};

/// The path prefix of a workspace's pages.
pub(crate) fn base(ws: &WorkspaceRef) -> String {
    if ws.name == DEFAULT_WORKSPACE {
        String::new()
    } else {
        format!("/w/{}", ws.name)
    }
}

pub(crate) fn time(millis: Option<i64>) -> String {
    millis.map(format_utc).unwrap_or_else(|| "–".to_string())
}

pub(crate) fn duration(run: &Run) -> String {
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

/// The workspace a page prefix names (`/w/<name>`, or the default).
fn workspace_name(workspace_base: &str) -> &str {
    workspace_base.strip_prefix("/w/").unwrap_or(DEFAULT_WORKSPACE)
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
                            a href="/continuity" { "Continuity" }
                            a href="/audit" { "Audit" }
                        }
                        form.switcher method="get" action="/" data-switcher="" {
                            label { "Workspace " input name="workspace" list="workspace-list" value=(workspace_name(workspace_base)) placeholder="default" size="12"; }
                            datalist #workspace-list {}
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
        400 => "Invalid request",
        404 => "Not found",
        403 => "Not allowed",
        409 => "Not possible now",
        503 => "Unavailable",
        _ => "Something went wrong",
    };
    message_page(error.status(), title, &error.message)
}

pub(crate) fn can(caller: &Caller, permission: Permission, ws: &WorkspaceRef) -> bool {
    caller.require(permission, Some(&ws.name)).is_ok()
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
                h2 { "The gateway's view" }
                div #gateway-view { p { "Loading…" } }
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
