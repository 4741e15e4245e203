//! The gate every request of a region passes: the permission its route
//! declares ([`required`]), who the caller is (`Authorization`, verified by
//! [`tandem_auth::Authenticator`]), and whether the caller's role
//! assignments grant that permission in the route's scope.
//!
//! The table is the one place routes declare what they need; a route it
//! does not know is refused (500) in every mode, with or without
//! authentication, so a route added without a declaration fails the first
//! test that calls it. `tests/route_permissions.rs` in `tandem-server`
//! checks the table against the routers' own documents and runs the
//! route × role matrix.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tandem_auth::{AuthError, Authenticator, Identity};
use tandem_core::access::Permission;
use tandem_core::ErrorKind;

use crate::error::ApiError;

/// Who is calling, as handlers see it (a request extension).
#[derive(Debug, Clone)]
pub enum Caller {
    /// The server runs without authentication: everything is allowed.
    Open,
    Authenticated(Identity),
}

impl Caller {
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Authenticated(identity) => Some(&identity.name),
        }
    }

    /// Refuses unless the caller holds `permission` (for `workspace`).
    pub fn require(&self, permission: Permission, workspace: Option<&str>) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Authenticated(identity) => {
                if identity.grants.allows(permission, workspace) {
                    Ok(())
                } else {
                    Err(denied(&identity.name, permission, workspace))
                }
            }
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        // Without the gate (this crate's router alone, as its own tests
        // use it) there is no authentication: open. The server always
        // installs the gate, and its tests prove that it does.
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller::Open))
    }
}

pub(crate) fn denied(name: &str, permission: Permission, workspace: Option<&str>) -> ApiError {
    let roles: Vec<&str> = tandem_core::access::Role::ALL
        .into_iter()
        .filter(|role| role.grants(permission))
        .map(|role| role.as_str())
        .collect();
    ApiError::new(
        ErrorKind::PermissionDenied,
        format!(
            "Permission denied: '{name}' lacks the '{}' permission {} (granted by {})",
            permission.as_str(),
            match workspace {
                Some(workspace) if permission.workspace_scoped() => format!("in workspace '{workspace}'"),
                _ => "on the deployment".to_string(),
            },
            if roles.is_empty() {
                "only the deployment's replication secret".to_string()
            } else {
                roles.join(", ")
            }
        ),
    )
}

pub(crate) fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, message)
}

/// The MLflow API's routes, as they follow `/api/2.0/` or `/ajax-api/2.0/`,
/// with what each method needs. Searches sent as POST only read.
const MLFLOW_ROUTES: &[(&str, &[(Method, Permission)])] = {
    use Permission::{Read as R, Write as W};
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PATCH: Method = Method::PATCH;
    const DELETE: Method = Method::DELETE;
    const PUT: Method = Method::PUT;
    &[
        ("mlflow/experiments/create", &[(POST, W)]),
        ("mlflow/experiments/get", &[(GET, R)]),
        ("mlflow/experiments/get-by-name", &[(GET, R)]),
        ("mlflow/experiments/search", &[(GET, R), (POST, R)]),
        ("mlflow/experiments/update", &[(POST, W)]),
        ("mlflow/experiments/delete", &[(POST, W)]),
        ("mlflow/experiments/restore", &[(POST, W)]),
        ("mlflow/experiments/set-experiment-tag", &[(POST, W)]),
        ("mlflow/experiments/delete-experiment-tag", &[(POST, W)]),
        ("mlflow/runs/create", &[(POST, W)]),
        ("mlflow/runs/get", &[(GET, R)]),
        ("mlflow/runs/update", &[(POST, W)]),
        ("mlflow/runs/delete", &[(POST, W)]),
        ("mlflow/runs/restore", &[(POST, W)]),
        ("mlflow/runs/search", &[(GET, R), (POST, R)]),
        ("mlflow/runs/log-metric", &[(POST, W)]),
        ("mlflow/runs/log-parameter", &[(POST, W)]),
        ("mlflow/runs/set-tag", &[(POST, W)]),
        ("mlflow/runs/delete-tag", &[(POST, W)]),
        ("mlflow/runs/log-batch", &[(POST, W)]),
        ("mlflow/runs/log-model", &[(POST, W)]),
        ("mlflow/runs/log-inputs", &[(POST, W)]),
        ("mlflow/runs/outputs", &[(POST, W)]),
        ("mlflow/metrics/get-history", &[(GET, R)]),
        ("mlflow/metrics/get-history-bulk-interval", &[(GET, R)]),
        ("mlflow/metrics/get-history-bulk", &[(GET, R)]),
        ("mlflow/experiments/search-datasets", &[(POST, R)]),
        // The UI's upload of one small file to a run.
        ("mlflow/upload-artifact", &[(POST, W)]),
        // MLflow's AI gateway proxy: always the empty gateway.
        ("mlflow/gateway-proxy", &[(GET, R), (POST, R)]),
        ("mlflow/artifacts/list", &[(GET, R)]),
        ("mlflow/logged-models", &[(POST, W)]),
        ("mlflow/logged-models/search", &[(POST, R)]),
        (
            "mlflow/logged-models/{model_id}",
            &[(GET, R), (PATCH, W), (DELETE, W)],
        ),
        ("mlflow/logged-models/{model_id}/tags", &[(PATCH, W)]),
        ("mlflow/logged-models/{model_id}/tags/{tag_key}", &[(DELETE, W)]),
        ("mlflow/logged-models/{model_id}/params", &[(POST, W)]),
        ("mlflow/logged-models/{model_id}/artifacts/files", &[(GET, R)]),
        (
            "mlflow/logged-models/{model_id}/artifacts/directories",
            &[(GET, R)],
        ),
        ("mlflow/registered-models/create", &[(POST, W)]),
        ("mlflow/registered-models/rename", &[(POST, W)]),
        ("mlflow/registered-models/update", &[(PATCH, W)]),
        ("mlflow/registered-models/delete", &[(DELETE, W)]),
        ("mlflow/registered-models/get", &[(GET, R)]),
        ("mlflow/registered-models/search", &[(GET, R)]),
        (
            "mlflow/registered-models/get-latest-versions",
            &[(GET, R), (POST, R)],
        ),
        ("mlflow/registered-models/set-tag", &[(POST, W)]),
        ("mlflow/registered-models/delete-tag", &[(DELETE, W)]),
        (
            "mlflow/registered-models/alias",
            &[(GET, R), (POST, W), (DELETE, W)],
        ),
        ("mlflow/model-versions/create", &[(POST, W)]),
        ("mlflow/model-versions/update", &[(PATCH, W)]),
        ("mlflow/model-versions/transition-stage", &[(POST, W)]),
        ("mlflow/model-versions/delete", &[(DELETE, W)]),
        ("mlflow/model-versions/get", &[(GET, R)]),
        ("mlflow/model-versions/search", &[(GET, R)]),
        ("mlflow/model-versions/get-download-uri", &[(GET, R)]),
        ("mlflow/model-versions/set-tag", &[(POST, W)]),
        ("mlflow/model-versions/delete-tag", &[(DELETE, W)]),
        ("mlflow-artifacts/artifacts", &[(GET, R)]),
        (
            "mlflow-artifacts/artifacts/{*path}",
            &[(GET, R), (PUT, W), (DELETE, W)],
        ),
        // Direct multipart uploads: each writes (or abandons) an artifact.
        ("mlflow-artifacts/mpu/create/{*path}", &[(POST, W)]),
        ("mlflow-artifacts/mpu/complete/{*path}", &[(POST, W)]),
        ("mlflow-artifacts/mpu/abort/{*path}", &[(POST, W)]),
    ]
};

/// What MLflow's web UI reads outside the REST API (downloads by run and
/// model version, GraphQL), at the root and under `/w/{workspace}`. Its
/// GraphQL fields only read (MLflow's "mutations" there are searches).
const MLFLOW_UI_ROUTES: &[(&str, &[(Method, Permission)])] = {
    use Permission::Read as R;
    &[
        ("/get-artifact", &[(Method::GET, R)]),
        ("/model-versions/get-artifact", &[(Method::GET, R)]),
        ("/graphql", &[(Method::GET, R), (Method::POST, R)]),
    ]
};

/// MLflow's user endpoints (`mlflow server --app-name basic-auth`): the
/// handlers let a caller read itself and change its own password.
const MLFLOW_USER_ROUTES: &[(&str, &[(Method, Permission)])] = {
    use Permission::{Administer as A, Authenticated as U};
    &[
        ("/api/2.0/mlflow/users/create", &[(Method::POST, A)]),
        ("/api/2.0/mlflow/users/get", &[(Method::GET, U)]),
        ("/api/2.0/mlflow/users/current", &[(Method::GET, U)]),
        ("/api/2.0/mlflow/users/update-password", &[(Method::PATCH, U)]),
        ("/api/2.0/mlflow/users/update-admin", &[(Method::PATCH, A)]),
        ("/api/2.0/mlflow/users/delete", &[(Method::DELETE, A)]),
        ("/api/2.0/mlflow/users/list", &[(Method::GET, A)]),
        ("/ajax-api/2.0/mlflow/users/current", &[(Method::GET, U)]),
        ("/ajax-api/2.0/mlflow/users/list", &[(Method::GET, A)]),
    ]
};

/// Every other route of a region (and of the gateway and the witness,
/// which share paths), by its template.
const ROUTES: &[(&str, &[(Method, Permission)])] = {
    use Permission::*;
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PATCH: Method = Method::PATCH;
    const DELETE: Method = Method::DELETE;
    const PUT: Method = Method::PUT;
    &[
        ("/health", &[(GET, Public)]),
        ("/ready", &[(GET, Public)]),
        ("/version", &[(GET, Public)]),
        ("/api/3.0/mlflow/server-info", &[(GET, Public)]),
        ("/ajax-api/3.0/mlflow/server-info", &[(GET, Public)]),
        // Also under a workspace's prefix: the client asks it relative to
        // its tracking URI before it sends a workspace header.
        ("/w/{workspace}/api/3.0/mlflow/server-info", &[(GET, Public)]),
        ("/w/{workspace}/ajax-api/3.0/mlflow/server-info", &[(GET, Public)]),
        // MLflow's workspace API: the same permissions as Tandem's own
        // workspace routes below (the list handler shows each caller only
        // the workspaces it may read).
        (
            "/api/3.0/mlflow/workspaces",
            &[(GET, Authenticated), (POST, Operate)],
        ),
        (
            "/ajax-api/3.0/mlflow/workspaces",
            &[(GET, Authenticated), (POST, Operate)],
        ),
        (
            "/api/3.0/mlflow/workspaces/{name}",
            &[(GET, Read), (PATCH, Manage), (DELETE, Operate)],
        ),
        (
            "/ajax-api/3.0/mlflow/workspaces/{name}",
            &[(GET, Read), (PATCH, Manage), (DELETE, Operate)],
        ),
        ("/api/tandem/v1/openapi.json", &[(GET, Public)]),
        // MLflow's UI asks whether to send usage telemetry; the answer is
        // always "no", and records sent anyway are dropped unread.
        (
            "/ajax-api/3.0/mlflow/ui-telemetry",
            &[(GET, Public), (POST, Public)],
        ),
        // The searches of MLflow's UI's GenAI views (Tandem keeps no
        // traces: they find nothing, but only in a workspace one may read).
        ("/ajax-api/3.0/mlflow/traces/search", &[(POST, Read)]),
        ("/ajax-api/3.0/mlflow/traces/metrics", &[(POST, Read)]),
        ("/ajax-api/3.0/mlflow/datasets/search", &[(POST, Read)]),
        // MLflow's UI itself (`--mlflow-ui`): its page and files hold no
        // data; what it shows comes from the API, behind this gate.
        ("/mlflow", &[(GET, Public)]),
        ("/mlflow/", &[(GET, Public)]),
        ("/mlflow/static-files/{*path}", &[(GET, Public)]),
        ("/metrics", &[(GET, Operate)]),
        // Workspaces and their lifecycle.
        (
            "/api/tandem/v1/workspaces",
            &[(GET, Authenticated), (POST, Operate)],
        ),
        (
            "/api/tandem/v1/workspaces/{name}",
            &[(GET, Read), (PATCH, Manage), (DELETE, Operate)],
        ),
        ("/api/tandem/v1/workspaces/{name}/recover", &[(POST, Operate)]),
        ("/api/tandem/v1/workspaces/{name}/purge", &[(POST, Operate)]),
        ("/api/tandem/v1/workspaces/{name}/deleted", &[(GET, Read)]),
        (
            "/api/tandem/v1/workspaces/{name}/deleted/{kind}/{id}/recover",
            &[(POST, Manage)],
        ),
        (
            "/api/tandem/v1/workspaces/{name}/deleted/{kind}/{id}/purge",
            &[(POST, Manage)],
        ),
        // Copies from other servers (`tandem import`, `sync`).
        ("/api/tandem/v1/workspaces/{workspace}/import", &[(POST, Write)]),
        // `tandem move`: Write here; the handler checks Write in the destination.
        ("/api/tandem/v1/workspaces/{workspace}/move", &[(POST, Write)]),
        (
            "/api/tandem/v1/workspaces/{workspace}/import/origins",
            &[(GET, Read)],
        ),
        // The file share.
        ("/api/tandem/v1/workspaces/{workspace}/files", &[(GET, Read)]),
        (
            "/api/tandem/v1/workspaces/{workspace}/files/{*path}",
            &[(GET, Read), (PUT, Write), (DELETE, Write)],
        ),
        // Continuity: operators only.
        ("/api/tandem/v1/salvage/{workspace_id}", &[(DELETE, Operate)]),
        ("/api/tandem/v1/salvage/{workspace_id}/files", &[(GET, Operate)]),
        (
            "/api/tandem/v1/salvage/{workspace_id}/files/{*path}",
            &[(GET, Operate)],
        ),
        ("/api/tandem/v1/gc", &[(GET, Operate)]),
        ("/api/tandem/v1/conflicts", &[(GET, Operate)]),
        ("/api/tandem/v1/region", &[(GET, Operate)]),
        ("/api/tandem/v1/journal", &[(GET, Operate)]),
        ("/api/tandem/v1/backups", &[(GET, Operate), (POST, Operate)]),
        ("/api/tandem/v1/backups/verify", &[(POST, Operate)]),
        ("/api/tandem/v1/backups/prune", &[(POST, Operate)]),
        ("/api/tandem/v1/restores", &[(POST, Operate)]),
        ("/api/tandem/v1/regions", &[(GET, Operate)]),
        ("/api/tandem/v1/failover", &[(POST, Operate)]),
        ("/api/tandem/v1/divergence", &[(GET, Operate)]),
        ("/api/tandem/v1/divergence/{id}", &[(GET, Operate)]),
        ("/api/tandem/v1/divergence/{id}/apply", &[(POST, Operate)]),
        ("/api/tandem/v1/verify", &[(GET, Operate), (POST, Operate)]),
        ("/api/tandem/v1/diagnostics", &[(GET, Operate)]),
        ("/api/tandem/v1/doctor", &[(GET, Operate)]),
        // Region to region.
        ("/api/tandem/v1/replication/journal", &[(GET, Replicate)]),
        (
            "/api/tandem/v1/replication/artifacts/{workspace_id}/{*path}",
            &[(GET, Replicate)],
        ),
        (
            "/api/tandem/v1/replication/files/{workspace_id}/{*path}",
            &[(GET, Replicate)],
        ),
        ("/api/tandem/v1/replication/ack", &[(POST, Replicate)]),
        ("/api/tandem/v1/replication/promote", &[(POST, Replicate)]),
        ("/api/tandem/v1/replication/reapply", &[(POST, Replicate)]),
        ("/api/tandem/v1/replication/quarantine/{id}", &[(GET, Replicate)]),
        ("/api/tandem/v1/replication/fingerprint", &[(GET, Replicate)]),
        (
            "/api/tandem/v1/replication/fingerprint/{workspace_id}/{table}",
            &[(GET, Replicate)],
        ),
        ("/api/tandem/v1/replication/beyond-fork", &[(POST, Replicate)]),
        ("/api/tandem/v1/replication/hello", &[(GET, Replicate)]),
        // Principals, tokens, role assignments. The handlers narrow
        // `Authenticated` (your own tokens and password; role assignments
        // of workspaces you own).
        ("/api/tandem/v1/whoami", &[(GET, Authenticated)]),
        (
            "/api/tandem/v1/principals",
            &[(GET, Administer), (POST, Administer)],
        ),
        (
            "/api/tandem/v1/principals/{name}",
            &[(GET, Administer), (PATCH, Administer), (DELETE, Administer)],
        ),
        (
            "/api/tandem/v1/tokens",
            &[(GET, Authenticated), (POST, Authenticated)],
        ),
        ("/api/tandem/v1/tokens/{token_id}", &[(DELETE, Authenticated)]),
        (
            "/api/tandem/v1/roles",
            &[
                (GET, Authenticated),
                (POST, Authenticated),
                (DELETE, Authenticated),
            ],
        ),
    ]
};

/// The web console's pages of a workspace (`tandem-console`), at the root
/// for the default workspace and under `/w/{workspace}`.
const CONSOLE_WORKSPACE_ROUTES: &[(&str, &[(Method, Permission)])] = {
    use Permission::{Read as R, Write as W};
    &[
        ("/", &[(Method::GET, R)]),
        ("/experiments", &[(Method::POST, W)]),
        ("/experiments/{experiment_id}", &[(Method::GET, R)]),
        ("/experiments/{experiment_id}/rename", &[(Method::POST, W)]),
        ("/experiments/{experiment_id}/delete", &[(Method::POST, W)]),
        ("/experiments/{experiment_id}/restore", &[(Method::POST, W)]),
        ("/experiments/{experiment_id}/models", &[(Method::GET, R)]),
        ("/logged-models/{model_id}", &[(Method::GET, R)]),
        ("/artifact", &[(Method::GET, R)]),
        ("/runs/{run_id}", &[(Method::GET, R)]),
        ("/runs/{run_id}/delete", &[(Method::POST, W)]),
        ("/runs/{run_id}/restore", &[(Method::POST, W)]),
        ("/compare", &[(Method::GET, R)]),
        ("/models", &[(Method::GET, R)]),
        ("/models/{name}", &[(Method::GET, R)]),
        ("/models/{name}/versions/{version}", &[(Method::GET, R)]),
        ("/deleted", &[(Method::GET, R)]),
        (
            "/deleted/{kind}/{id}/recover",
            &[(Method::POST, Permission::Manage)],
        ),
        (
            "/deleted/{kind}/{id}/purge",
            &[(Method::POST, Permission::Manage)],
        ),
    ]
};

/// The console's other routes.
const CONSOLE_ROUTES: &[(&str, &[(Method, Permission)])] = {
    use Permission::*;
    &[
        ("/login", &[(Method::GET, Public), (Method::POST, Public)]),
        ("/logout", &[(Method::POST, Authenticated)]),
        // The page is a frame; its data comes from `/api/tandem/v1/regions`
        // (Operate), which it fetches with the viewer's session.
        ("/deployment", &[(Method::GET, Authenticated)]),
        ("/audit", &[(Method::GET, Operate)]),
        // A frame whose script reads the continuity API (Operate) with the
        // viewer's session; the page itself is for operators too.
        ("/continuity", &[(Method::GET, Operate)]),
        ("/console.css", &[(Method::GET, Public)]),
        ("/console.js", &[(Method::GET, Public)]),
    ]
};

/// Whether `route` is one of the console's (HTML answers: a sign-in page
/// rather than a 401).
pub fn is_console_route(route: &str) -> bool {
    let scoped = match route.strip_prefix("/w/{workspace}") {
        Some("") => "/",
        Some(rest) => rest,
        None => route,
    };
    CONSOLE_WORKSPACE_ROUTES.iter().any(|(path, _)| *path == scoped)
        || CONSOLE_ROUTES.iter().any(|(path, _)| *path == route)
}

/// The console's session token, from the request's `tandem_session` cookie.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    tandem_http::cookie(headers, "tandem_session")
}

fn lookup(table: &[(&str, &[(Method, Permission)])], method: &Method, route: &str) -> Option<Permission> {
    let (_, methods) = table.iter().find(|(template, _)| *template == route)?;
    // HEAD is answered by GET handlers.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    methods
        .iter()
        .find(|(declared, _)| declared == method)
        .map(|(_, permission)| *permission)
}

/// The permission the route `route` (a template, as routed) declares for
/// `method`, or None if it declares none.
pub fn required(method: &Method, route: &str) -> Option<Permission> {
    let scoped = route.strip_prefix("/w/{workspace}").unwrap_or(route);
    for prefix in ["/api/2.0/", "/ajax-api/2.0/"] {
        if let Some(rest) = scoped.strip_prefix(prefix) {
            if let Some(permission) = lookup(MLFLOW_ROUTES, method, rest) {
                return Some(permission);
            }
        }
    }
    let console = if scoped.is_empty() { "/" } else { scoped };
    if let Some(permission) = lookup(CONSOLE_WORKSPACE_ROUTES, method, console) {
        return Some(permission);
    }
    if let Some(permission) = lookup(MLFLOW_UI_ROUTES, method, scoped) {
        return Some(permission);
    }
    if scoped.len() == route.len() {
        lookup(MLFLOW_USER_ROUTES, method, route)
            .or_else(|| lookup(CONSOLE_ROUTES, method, route))
            .or_else(|| lookup(ROUTES, method, route))
    } else {
        lookup(ROUTES, method, route)
    }
}

/// The methods the table declares for `route`.
fn declared_methods(route: &str) -> Vec<Method> {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]
    .into_iter()
    .filter(|method| required(method, route).is_some())
    .collect()
}

/// Every (method, template) the table declares, `/w/{workspace}` and
/// `/ajax-api` forms of MLflow's routes included: for tests.
pub fn declared_routes() -> Vec<(Method, String, Permission)> {
    let mut routes = Vec::new();
    for (path, methods) in MLFLOW_ROUTES {
        for base in ["", "/w/{workspace}"] {
            for prefix in ["/api/2.0/", "/ajax-api/2.0/"] {
                for (method, permission) in methods.iter() {
                    routes.push((method.clone(), format!("{base}{prefix}{path}"), *permission));
                }
            }
        }
    }
    for (path, methods) in MLFLOW_UI_ROUTES {
        for base in ["", "/w/{workspace}"] {
            for (method, permission) in methods.iter() {
                routes.push((method.clone(), format!("{base}{path}"), *permission));
            }
        }
    }
    for (path, methods) in CONSOLE_WORKSPACE_ROUTES {
        for (method, permission) in methods.iter() {
            routes.push((method.clone(), path.to_string(), *permission));
            let nested = if *path == "/" {
                String::new()
            } else {
                path.to_string()
            };
            routes.push((method.clone(), format!("/w/{{workspace}}{nested}"), *permission));
        }
    }
    for (path, methods) in MLFLOW_USER_ROUTES.iter().chain(CONSOLE_ROUTES).chain(ROUTES) {
        for (method, permission) in methods.iter() {
            routes.push((method.clone(), path.to_string(), *permission));
        }
    }
    routes
}

/// The workspace (by name) a request is about, for workspace permissions:
/// `/w/{workspace}/…`, `/api/tandem/v1/workspaces/{name}/…`, MLflow's
/// `/api/3.0/mlflow/workspaces/{name}`, or for MLflow's routes and the
/// console's pages the `X-MLFLOW-WORKSPACE` header, else the default
/// workspace. The name comes from [`crate::extract::requested_workspace`],
/// the rule the `Ws` extractor applies too, so the gate authorizes the
/// workspace the handler serves; a header naming another workspace than
/// the path is refused here.
fn workspace_of(route: &str, path: &str, headers: &header::HeaderMap) -> Result<Option<String>, ApiError> {
    let segment = |index: usize| {
        path.split('/')
            .nth(index)
            .map(percent_decode)
            .filter(|segment| !segment.is_empty())
    };
    if route.ends_with("/mlflow/server-info") || route.ends_with("/mlflow/workspaces") {
        // Server-info answers whatever the header says, as MLflow's does.
        Ok(None)
    } else if route == "/w/{workspace}" || route.starts_with("/w/{workspace}/") {
        let from_path = segment(2);
        crate::extract::requested_workspace(from_path.as_deref(), headers).map(Some)
    } else if route.starts_with("/api/tandem/v1/workspaces/{") || is_mlflow_workspace_route(route) {
        // The workspace API names its workspace in the path; the client
        // sends no header there, and one sent is ignored, as MLflow does.
        Ok(segment(5))
    } else if route.contains("/mlflow")
        || CONSOLE_WORKSPACE_ROUTES.iter().any(|(path, _)| *path == route)
        || MLFLOW_UI_ROUTES.iter().any(|(path, _)| *path == route)
    {
        crate::extract::requested_workspace(None, headers).map(Some)
    } else {
        Ok(None)
    }
}

/// MLflow's `/api/3.0/mlflow/workspaces/{name}` (and its `/ajax-api` form).
fn is_mlflow_workspace_route(route: &str) -> bool {
    route == "/api/3.0/mlflow/workspaces/{name}" || route == "/ajax-api/3.0/mlflow/workspaces/{name}"
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&segment[index + 1..index + 3], 16) {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A 401, with MLflow's `Basic` challenge unless the console's script
/// asked (see [`tandem_http::from_console`]).
fn challenge(error: ApiError, quiet: bool) -> Response {
    let mut response = error.into_response();
    if quiet {
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    response
}

/// A console page asked for without a session: the sign-in page, which
/// comes back here after.
fn to_sign_in(request: &Request, error: &str) -> Response {
    let next = request
        .uri()
        .path_and_query()
        .map(|value| value.as_str())
        .unwrap_or("/");
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("next", next);
    if !error.is_empty() {
        query.append_pair("error", error);
    }
    let mut response = axum::response::Redirect::to(&format!("/login?{}", query.finish())).into_response();
    if !error.is_empty() {
        // The cookie names a session that no longer works: drop it.
        response.headers_mut().insert(
            header::SET_COOKIE,
            axum::http::HeaderValue::from_static(
                "tandem_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        );
    }
    response
}

/// Text made safe inside HTML (and its attributes).
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the gate needs: the authenticator, or None for a server that runs
/// without authentication.
#[derive(Clone)]
pub struct Gate {
    pub authenticator: Option<Arc<Authenticator>>,
}

/// Puts every route of `app` behind the gate.
pub fn gate(app: Router, gate: Gate) -> Router {
    app.layer(axum::middleware::from_fn_with_state(gate, check))
}

async fn check(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
    else {
        // Nothing matched: the router answers 404 (or 405) itself.
        return next.run(request).await;
    };
    let Some(permission) = required(request.method(), &route) else {
        let declared = declared_methods(&route);
        if !declared.is_empty() {
            // A method the route does not serve: what the router would
            // answer. (A method served but not declared lands here too, and
            // is refused alike: fail closed.)
            let allow = declared.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            return (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, allow)],
            )
                .into_response();
        }
        tracing::error!(method = %request.method(), route, "route declares no permission: refused");
        return ApiError::new(
            ErrorKind::Internal,
            format!(
                "route {} {route} declares no permission; refused",
                request.method()
            ),
        )
        .into_response();
    };
    let Some(authenticator) = gate.authenticator else {
        request.extensions_mut().insert(Caller::Open);
        return next.run(request).await;
    };
    // A browser's console session: its cookie counts as a bearer token.
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes().to_vec())
        .or_else(|| session_cookie(request.headers()).map(|token| format!("Bearer {token}").into_bytes()));
    let console = is_console_route(&route);
    let quiet = tandem_http::from_console(request.headers());
    let identity = match authenticator.authenticate(header.as_deref()).await {
        Ok(identity) => identity,
        // A public route answers whatever the credentials.
        Err(_) if permission == Permission::Public => None,
        Err(AuthError::Missing) => None,
        Err(AuthError::Invalid(_)) if console => {
            return to_sign_in(&request, "Your session has ended: sign in again.");
        }
        Err(AuthError::Invalid(reason)) => {
            return challenge(unauthenticated(format!("Authentication failed: {reason}")), quiet);
        }
        Err(AuthError::Store(error)) => return ApiError::from(error).into_response(),
    };
    let Some(identity) = identity else {
        if permission == Permission::Public {
            return next.run(request).await;
        }
        if console {
            return to_sign_in(&request, "");
        }
        return challenge(
            unauthenticated(
                "You are not authenticated: send HTTP Basic credentials (MLFLOW_TRACKING_USERNAME and \
                 MLFLOW_TRACKING_PASSWORD) or a token (MLFLOW_TRACKING_TOKEN)",
            ),
            quiet,
        );
    };
    let workspace = match workspace_of(&route, request.uri().path(), request.headers()) {
        Ok(workspace) => workspace,
        Err(error) => return error.into_response(),
    };
    let allowed = if permission == Permission::Replicate {
        identity.name == tandem_auth::REPLICATION_PRINCIPAL
    } else {
        identity.grants.allows(permission, workspace.as_deref())
    };
    if !allowed {
        metrics::counter!("tandem_auth_denied_total").increment(1);
        let refusal = denied(&identity.name, permission, workspace.as_deref());
        if console {
            return (
                axum::http::StatusCode::FORBIDDEN,
                axum::response::Html(format!(
                    "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not allowed · Tandem</title>\
                     <link rel=\"stylesheet\" href=\"/console.css\"></head><body><main><h1>Not allowed</h1>\
                     <p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Back</a></p></main></body></html>",
                    html_escape(&refusal.message)
                )),
            )
                .into_response();
        }
        return refusal.into_response();
    }
    let name = identity.name.clone();
    request.extensions_mut().insert(Caller::Authenticated(identity));
    tandem_store::actor::scope(Some(name), next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_routes_resolve_under_every_prefix() {
        for route in [
            "/api/2.0/mlflow/runs/log-batch",
            "/ajax-api/2.0/mlflow/runs/log-batch",
            "/w/{workspace}/api/2.0/mlflow/runs/log-batch",
        ] {
            assert_eq!(required(&Method::POST, route), Some(Permission::Write), "{route}");
            assert_eq!(required(&Method::GET, route), None, "{route}");
        }
        assert_eq!(
            required(&Method::POST, "/api/2.0/mlflow/runs/search"),
            Some(Permission::Read)
        );
        assert_eq!(required(&Method::HEAD, "/health"), Some(Permission::Public));
        assert_eq!(required(&Method::GET, "/api/tandem/v1/nope"), None);
        // User routes only at the root.
        assert_eq!(
            required(&Method::GET, "/w/{workspace}/api/2.0/mlflow/users/list"),
            None
        );
    }

    fn of(route: &str, path: &str) -> Option<String> {
        workspace_of(route, path, &header::HeaderMap::new()).unwrap()
    }

    fn with_header(value: &'static str) -> header::HeaderMap {
        let mut headers = header::HeaderMap::new();
        headers.insert("x-mlflow-workspace", header::HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn workspaces_come_from_the_path() {
        assert_eq!(
            of(
                "/w/{workspace}/api/2.0/mlflow/runs/get",
                "/w/team%20a/api/2.0/mlflow/runs/get"
            ),
            Some("team a".to_string())
        );
        assert_eq!(
            of(
                "/api/tandem/v1/workspaces/{name}/deleted",
                "/api/tandem/v1/workspaces/w1/deleted"
            ),
            Some("w1".to_string())
        );
        assert_eq!(
            of(
                "/ajax-api/3.0/mlflow/workspaces/{name}",
                "/ajax-api/3.0/mlflow/workspaces/team-a"
            ),
            Some("team-a".to_string())
        );
        assert_eq!(
            of("/api/2.0/mlflow/runs/get", "/api/2.0/mlflow/runs/get"),
            Some("default".to_string())
        );
        assert_eq!(of("/api/tandem/v1/journal", "/api/tandem/v1/journal"), None);
        assert_eq!(
            of("/api/3.0/mlflow/workspaces", "/api/3.0/mlflow/workspaces"),
            None
        );
    }

    #[test]
    fn the_workspace_header_selects_like_the_path_and_never_against_it() {
        let team_a = with_header(" team-a ");
        let root = "/api/2.0/mlflow/runs/log-batch";
        assert_eq!(
            workspace_of(root, root, &team_a).unwrap(),
            Some("team-a".to_string())
        );
        let scoped = "/w/{workspace}/api/2.0/mlflow/runs/log-batch";
        assert_eq!(
            workspace_of(scoped, "/w/team-a/api/2.0/mlflow/runs/log-batch", &team_a).unwrap(),
            Some("team-a".to_string())
        );
        let conflict = workspace_of(scoped, "/w/team-b/api/2.0/mlflow/runs/log-batch", &team_a).unwrap_err();
        assert_eq!(conflict.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(conflict.message.contains("'team-b'") && conflict.message.contains("'team-a'"));
        // An empty header is no header, as in MLflow.
        assert_eq!(
            workspace_of(root, root, &with_header("  ")).unwrap(),
            Some("default".to_string())
        );
        // The workspace API names its workspace in the path; server-info
        // answers whatever the header says.
        let named = "/api/3.0/mlflow/workspaces/{name}";
        assert_eq!(
            workspace_of(named, "/api/3.0/mlflow/workspaces/team-b", &team_a).unwrap(),
            Some("team-b".to_string())
        );
        let info = "/api/3.0/mlflow/server-info";
        assert_eq!(workspace_of(info, info, &team_a).unwrap(), None);
        assert_eq!(
            workspace_of(
                "/w/{workspace}/api/3.0/mlflow/server-info",
                "/w/team-b/api/3.0/mlflow/server-info",
                &team_a
            )
            .unwrap(),
            None
        );
    }
}
