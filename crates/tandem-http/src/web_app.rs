//! A single-page web app built elsewhere (MLflow's UI: a directory with an
//! `index.html` and its files under `static-files/`), served under a path
//! prefix beside the API it calls.
//!
//! Such an app addresses its API relative to its page (`ajax-api/2.0/…`,
//! `graphql`), so from `/mlflow/` its calls arrive as `/mlflow/ajax-api/…`.
//! [`under_prefix`] sends those to the API's own paths before routing, so
//! they meet the same routes, gate and policies as every other client's.
//! Only the index and `static-files/` are the app's own, and they are
//! read from its directory alone (`ServeDir` refuses paths that climb out).

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// Where the app's own files are, under its prefix.
pub const STATIC_DIR: &str = "static-files";

/// `dir` if it holds a web app build (an `index.html`), else why not.
pub fn checked_build(dir: &std::path::Path) -> Result<PathBuf, String> {
    if dir.join("index.html").is_file() {
        Ok(dir.to_path_buf())
    } else {
        Err(format!(
            "{} is not a web app build: it has no index.html (for MLflow's UI, give the \
             mlflow/server/js/build directory of an installed mlflow package)",
            dir.display()
        ))
    }
}

/// The app's own routes, to merge into a router (and put behind its gate):
/// `{prefix}` (redirected to `{prefix}/`), the index at `{prefix}/`, and
/// `{prefix}/static-files/{*path}` from `dir`.
pub fn routes(prefix: &'static str, dir: PathBuf) -> Router {
    let index = dir.join("index.html");
    let files = ServeDir::new(dir);
    Router::new()
        .route(
            prefix,
            get(move || async move { Redirect::permanent(&format!("{prefix}/")) }),
        )
        .route(
            &format!("{prefix}/"),
            get(move |request: Request| async move {
                serve(ServeFile::new(index), request, "/".parse().ok()).await
            }),
        )
        .route(
            &format!("{prefix}/{STATIC_DIR}/{{*path}}"),
            get(move |Path(path): Path<String>, request: Request| async move {
                let uri = format!("/{path}").parse::<Uri>().ok();
                serve(files, request, uri).await
            }),
        )
}

async fn serve<S>(service: S, mut request: Request, uri: Option<Uri>) -> Response
where
    S: tower::Service<Request<Body>, Error = std::convert::Infallible> + Send,
    S::Response: IntoResponse,
    S::Future: Send,
{
    let Some(uri) = uri else {
        return StatusCode::NOT_FOUND.into_response();
    };
    *request.uri_mut() = uri;
    match service.oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

/// `app`, with every request under `{prefix}/` that is not the app's own
/// (index, `static-files/`) sent to the path without the prefix.
pub fn under_prefix(prefix: &'static str, app: Router) -> Router {
    // Around the whole router, not as its layer: a router's layers run
    // after it has routed, too late to change the path.
    let rewrite = tower::util::MapRequestLayer::new(move |mut request: Request| {
        if let Some(stripped) = api_path(prefix, request.uri()) {
            *request.uri_mut() = stripped;
        }
        request
    });
    Router::new().fallback_service(tower::Layer::layer(&rewrite, app))
}

/// The API path a request under the app's prefix stands for, if it is one.
fn api_path(prefix: &str, uri: &Uri) -> Option<Uri> {
    let rest = uri.path().strip_prefix(prefix)?;
    if !rest.starts_with('/') || rest == "/" || rest.starts_with(&format!("/{STATIC_DIR}/")) {
        return None;
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_string(),
    };
    path_and_query.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apps_calls_lose_the_prefix() {
        let rewritten = |path: &str| api_path("/mlflow", &path.parse().unwrap()).map(|uri| uri.to_string());
        assert_eq!(
            rewritten("/mlflow/ajax-api/2.0/mlflow/runs/search?x=1").as_deref(),
            Some("/ajax-api/2.0/mlflow/runs/search?x=1")
        );
        assert_eq!(rewritten("/mlflow/graphql").as_deref(), Some("/graphql"));
        assert_eq!(rewritten("/mlflow/"), None);
        assert_eq!(rewritten("/mlflow"), None);
        assert_eq!(rewritten("/mlflow/static-files/static/js/main.js"), None);
        assert_eq!(rewritten("/mlflowx/graphql"), None);
        assert_eq!(rewritten("/api/2.0/mlflow/runs/get"), None);
    }
}
