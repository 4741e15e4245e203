//! The Tandem API's OpenAPI document, generated from the handlers.
//!
//! Every `/api/tandem/v1` route is registered through a
//! [`utoipa_axum::router::OpenApiRouter`] with `routes!(handler)`: the path
//! and method a handler is routed on are the ones its `#[utoipa::path]`
//! annotation documents, so the document cannot list a route the server does
//! not serve, nor miss one (a test in `tandem-server` refuses Tandem API
//! paths registered with axum's plain `route`). Each crate that serves part of
//! the API (this one, replication, backups, restores) contributes its part;
//! the server merges them with [`finish`] and serves the result at
//! [`OPENAPI_PATH`].

use axum::http::Method;
use serde::Serialize;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::OpenApi;
use utoipa::ToSchema;

/// Where the server serves the document.
pub const OPENAPI_PATH: &str = "/api/tandem/v1/openapi.json";

/// Tags that group the operations.
pub mod tags {
    pub const WORKSPACES: &str = "workspaces";
    pub const RETENTION: &str = "retention";
    pub const FILES: &str = "files";
    pub const JOURNAL: &str = "journal";
    pub const REPLICATION: &str = "replication";
    pub const BACKUPS: &str = "backups";
    pub const ACCESS: &str = "access";
}

/// MLflow's error JSON, which every error of the API answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// MLflow's error code, e.g. `INVALID_PARAMETER_VALUE`,
    /// `RESOURCE_DOES_NOT_EXIST`, `INVALID_STATE`.
    pub error_code: String,
    /// What went wrong, for a person.
    pub message: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tandem API",
        description = "Tandem's own API: workspaces and their retention, the workspace file share, the journal, replication and failover, backups and restores. MLflow's REST API, which Tandem also serves, is documented by MLflow.",
    ),
    tags(
        (name = "workspaces", description = "Workspaces: the unit of isolation."),
        (name = "access", description = "Principals (users and service principals), API tokens and role assignments."),
        (name = "retention", description = "Soft delete: recover or purge workspaces and deleted items."),
        (name = "files", description = "A workspace's file share, and salvage of purged workspaces' storage."),
        (name = "journal", description = "The ordered journal of every change, and merge conflicts."),
        (name = "replication", description = "Regions, replication, failover and the divergence quarantine."),
        (name = "backups", description = "Backups, their verification and pruning, and point-in-time restores."),
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The document from every part of the API: info, tags and shared schemas,
/// each part's paths, and paths in OpenAPI's template syntax (axum's
/// catch-all `{*path}` becomes `{path}`).
pub fn finish(parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    for part in parts {
        doc.merge(part);
    }
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    doc
}

/// Every documented operation: its method and path template (`{name}`
/// placeholders, as in the document).
pub fn operations(doc: &OpenApi) -> Vec<(Method, String)> {
    let mut operations = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            (HttpMethod::Get, Method::GET, item.get.is_some()),
            (HttpMethod::Post, Method::POST, item.post.is_some()),
            (HttpMethod::Put, Method::PUT, item.put.is_some()),
            (HttpMethod::Patch, Method::PATCH, item.patch.is_some()),
            (HttpMethod::Delete, Method::DELETE, item.delete.is_some()),
            (HttpMethod::Head, Method::HEAD, item.head.is_some()),
        ];
        for (_, method, present) in methods {
            if present {
                operations.push((method, path.clone()));
            }
        }
    }
    operations
}

/// `GET /api/tandem/v1/openapi.json` for a finished document.
pub fn handler(doc: OpenApi) -> axum::routing::MethodRouter {
    let body = std::sync::Arc::new(doc.to_pretty_json().expect("an OpenAPI document serializes"));
    axum::routing::get(move || {
        let body = body.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.as_ref().clone(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_part_documents_its_operations_with_errors_and_plain_templates() {
        let doc = finish([crate::openapi_part()]);
        let operations = operations(&doc);
        assert!(operations.contains(&(Method::POST, "/api/tandem/v1/workspaces".into())));
        assert!(operations.contains(&(Method::PATCH, "/api/tandem/v1/workspaces/{name}".into())));
        assert!(operations.contains(&(
            Method::PUT,
            "/api/tandem/v1/workspaces/{workspace}/files/{path}".into()
        )));
        assert!(operations.iter().all(|(_, path)| !path.contains('*')));
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["info"]["title"], "Tandem API");
        let create = &json["paths"]["/api/tandem/v1/workspaces"]["post"];
        assert!(
            create["responses"]["400"]["content"]["application/json"].is_object(),
            "{create}"
        );
        assert!(json["components"]["schemas"]["Workspace"].is_object());
    }
}
