//! The web console: server-rendered HTML (maud) with a little script, served
//! by every region at `/` for the default workspace and at `/w/<workspace>`
//! for any other, behind the same access gate as the API.
//!
//! Why server-rendered: nothing to build or fetch at run time (no
//! JavaScript toolchain, no CDN), pages that work from one request, and the
//! same store calls, validation and permissions as the API. Charts are SVG
//! drawn on the server from a history the store reduced to each bucket's
//! extremes ([`chart`]).
//!
//! Sign-in (`/login`) checks a password (or takes a token) and mints an API
//! token for the session, kept in an `HttpOnly`, `SameSite=Strict` cookie
//! the gate reads like a bearer token; every form that changes something
//! carries a CSRF token derived from the session, and, on a server without
//! authentication, a change must come from the console's own origin.

mod artifacts;
pub mod chart;
mod continuity;
mod experiments;
mod operations;
mod pages;
mod registry;
mod run;
mod session;

use axum::routing::{get, post};
use axum::Router;
use tandem_api::AppState;

pub use session::SESSION_COOKIE;

/// The console's pages of one workspace (mounted at the root for the
/// default workspace and under `/w/{workspace}`).
fn workspace_pages() -> Router<AppState> {
    Router::new()
        .route("/", get(experiments::experiments))
        .route("/experiments", post(experiments::create_experiment))
        .route("/experiments/{experiment_id}", get(experiments::runs))
        .route(
            "/experiments/{experiment_id}/rename",
            post(experiments::change_experiment),
        )
        .route(
            "/experiments/{experiment_id}/delete",
            post(experiments::change_experiment),
        )
        .route(
            "/experiments/{experiment_id}/restore",
            post(experiments::change_experiment),
        )
        .route(
            "/experiments/{experiment_id}/models",
            get(experiments::logged_models),
        )
        .route("/logged-models/{model_id}", get(registry::logged_model))
        .route("/artifact", get(artifacts::preview))
        .route("/runs/{run_id}", get(run::run))
        .route("/runs/{run_id}/delete", post(run::change_run))
        .route("/runs/{run_id}/restore", post(run::change_run))
        .route("/compare", get(run::compare))
        .route("/models", get(registry::models))
        .route("/models/{name}", get(registry::model))
        .route("/models/{name}/versions/{version}", get(registry::version))
        .route("/deleted", get(continuity::deleted))
        .route("/deleted/{kind}/{id}/recover", post(continuity::recover))
        .route("/deleted/{kind}/{id}/purge", post(continuity::purge))
}

/// Every console route, for the region's router; `deployment` says whether
/// the region belongs to one (the deployment page has regions to show).
pub fn routes(deployment: bool) -> Router<AppState> {
    Router::new()
        .merge(workspace_pages())
        .nest("/w/{workspace}", workspace_pages())
        // A workspace's home with its trailing slash (the header's links).
        .route("/w/{workspace}/", get(experiments::experiments))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/audit", get(continuity::audit))
        .route("/deployment", get(move || pages::deployment(deployment)))
        .route("/continuity", get(move || operations::page(deployment)))
        .route("/console.css", get(pages::stylesheet))
        .route("/console.js", get(pages::script))
}
