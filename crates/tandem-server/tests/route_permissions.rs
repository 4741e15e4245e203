//! Every route declares the permission it needs, and the gate enforces it:
//! the table is checked against the routers' own OpenAPI documents (every
//! documented operation, of a region alone and of a region in a
//! deployment, has a declaration), then the route × role matrix runs
//! against a real server with authentication: anonymous callers get 401
//! on everything but the public probes, and each built-in role gets 403
//! exactly where its assignments do not grant the route's permission.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{json, Value};
use tandem_core::access::{Grant, Grants, Permission, Role};
use tandem_server::ServerConfig;

mod support;

#[test]
fn every_documented_operation_declares_a_permission() {
    for deployment in [false, true] {
        let doc = tandem_server::openapi(deployment);
        let operations = tandem_api::openapi::operations(&doc);
        assert!(operations.len() >= 20);
        for (method, path) in operations {
            // The document writes axum's catch-all `{*path}` as `{path}`.
            let routed = path.replace("{path}", "{*path}");
            assert!(
                tandem_api::access::required(&method, &path).is_some()
                    || tandem_api::access::required(&method, &routed).is_some(),
                "{method} {path} is documented but declares no permission"
            );
        }
    }
    // And nothing is public but the probes, the document, the sign-in page,
    // the console's stylesheet and script, and MLflow's UI's page, files and
    // telemetry switch (which answers "off" and reads or keeps nothing).
    for (method, path, permission) in tandem_api::access::declared_routes() {
        if permission == Permission::Public {
            let public = (method == Method::GET
                && [
                    "/health",
                    "/ready",
                    "/version",
                    "/api/tandem/v1/openapi.json",
                    "/api/3.0/mlflow/server-info",
                    "/ajax-api/3.0/mlflow/server-info",
                    "/w/{workspace}/api/3.0/mlflow/server-info",
                    "/w/{workspace}/ajax-api/3.0/mlflow/server-info",
                    "/console.css",
                    "/console.js",
                    "/login",
                    "/ajax-api/3.0/mlflow/ui-telemetry",
                    "/mlflow",
                    "/mlflow/",
                    "/mlflow/static-files/{*path}",
                ]
                .contains(&path.as_str()))
                || (method == Method::POST
                    && ["/login", "/ajax-api/3.0/mlflow/ui-telemetry"].contains(&path.as_str()));
            assert!(public, "{method} {path} is public");
        }
    }
}

/// A role and its workspace (None: the deployment).
type Assignment = (Role, Option<&'static str>);

/// A concrete path for a route template.
fn fill(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{workspace}" | "{name}" => "default".to_string(),
            "{*path}" => "probe/file.txt".to_string(),
            s if s.starts_with('{') => "probe-0".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_by_role_matrix_of_a_region_on_its_own() {
    route_by_role_matrix(false).await;
}

/// In a deployment (of one region, its own primary) the replication
/// protocol's routes are served too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_by_role_matrix_of_a_region_in_a_deployment() {
    route_by_role_matrix(true).await;
}

const SECRET: &str = "matrix-replication-secret";

async fn route_by_role_matrix(deployment: bool) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let deployment = deployment.then(|| {
        let path = dir.path().join("deployment.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"matrix\"\nprimary = \"eastus\"\nreplication_secret = \"{SECRET}\"\n\n\
                 [[regions]]\nname = \"eastus\"\nurl = \"http://{address}\"\n"
            ),
        )
        .unwrap();
        path
    });
    let config = ServerConfig {
        data: Some(dir.path().join("data")),
        region: "eastus".to_string(),
        auth: true,
        deployment: deployment.clone(),
        ..ServerConfig::default()
    };
    let server = support::Running::start(config, listener).await;
    let (base, http) = (server.base.clone(), server.http.clone());
    // In a deployment the admin appears once the region leads.
    let token_file = dir.path().join("data").join("admin.token");
    let mut admin = String::new();
    for _ in 0..400 {
        if let Ok(token) = std::fs::read_to_string(&token_file) {
            let answer = http
                .get(format!("{base}/api/tandem/v1/whoami"))
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap();
            if answer.status().is_success() {
                admin = token.trim().to_string();
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!admin.is_empty(), "the admin was never created");

    // One principal per role (Reader, Contributor and Owner of `default`,
    // Operator and Admin of the deployment) and one with no role at all.
    let roles: Vec<(&str, Option<Assignment>)> = vec![
        ("nobody", None),
        ("reader", Some((Role::Reader, Some("default")))),
        ("contributor", Some((Role::Contributor, Some("default")))),
        ("owner", Some((Role::Owner, Some("default")))),
        ("operator", Some((Role::Operator, None))),
        ("admin2", Some((Role::Admin, None))),
    ];
    let mut tokens = BTreeMap::new();
    for (name, role) in &roles {
        let roles: Vec<Value> = role
            .iter()
            .map(|(role, workspace)| json!({ "role": role.as_str(), "workspace": workspace }))
            .collect();
        let created: Value = http
            .post(format!("{base}/api/tandem/v1/principals"))
            .bearer_auth(&admin)
            .json(&json!({ "name": name, "kind": "service", "roles": roles }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.insert(*name, created["token"].as_str().expect("a token").to_string());
    }

    let mut checked = 0;
    for (method, template, permission) in tandem_api::access::declared_routes() {
        let url = format!("{base}{}", fill(&template));
        let send = |token: Option<&str>| {
            let mut request = http.request(method.clone(), &url).json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        let anonymous = send(None).await.unwrap();
        let status = anonymous.status().as_u16();
        let location = anonymous
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = anonymous.text().await.unwrap_or_default();
        if status == 404 && body.trim().is_empty() {
            // Not routed here (the replication protocol needs a deployment).
            continue;
        }
        checked += 1;
        if permission == Permission::Public {
            assert!(
                status != 401 && status != 403,
                "{method} {template}: public, answered {status}"
            );
            continue;
        }
        if tandem_api::access::is_console_route(&template) {
            assert!(
                status == 303 && location.starts_with("/login?next="),
                "{method} {template}: anonymous got {status} {location} {body}"
            );
        } else {
            assert_eq!(status, 401, "{method} {template}: anonymous got {status} {body}");
        }
        for (name, role) in &roles {
            let grants = Grants(
                role.iter()
                    .map(|(role, workspace)| Grant {
                        role: *role,
                        workspace: workspace.map(str::to_string),
                    })
                    .collect(),
            );
            // Every route of a workspace permission names one (the
            // default's at the root, `default` filled in elsewhere).
            let workspace = permission.workspace_scoped().then_some("default");
            let allowed = grants.allows(permission, workspace);
            let response = send(Some(&tokens[name])).await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, 401, "{method} {template} as {name}: {body}");
            if !allowed {
                assert_eq!(
                    status, 403,
                    "{method} {template} as {name} must be refused: {body}"
                );
                assert!(
                    body.contains("PERMISSION_DENIED") || body.contains("Permission denied:"),
                    "{body}"
                );
            } else if permission != Permission::Authenticated {
                // Handlers of `Authenticated` routes narrow further (your
                // own tokens; assignments of workspaces you own).
                assert!(
                    status != 403 || !body.contains("Permission denied:"),
                    "{method} {template} as {name} must pass the gate: {status} {body}"
                );
            }
        }
    }
    assert!(checked > 100, "only {checked} routes checked");
    if deployment.is_some() {
        // The regions' own credential passes the gate and the handlers.
        let journal = http
            .get(format!(
                "{base}/api/tandem/v1/replication/journal?after=0&region=probe"
            ))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(journal.status().as_u16(), 200);
        drop(journal);
        let regions = http
            .get(format!("{base}/api/tandem/v1/regions"))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(regions.status().as_u16(), 200);
    }

    server.stop().await;
}

/// The routes registered with axum's plain `.route(…)` (MLflow's API, the
/// artifact proxy, MLflow's user endpoints, the probes — the Tandem API
/// goes through `routes!`, checked against the OpenAPI documents above),
/// read from the routers' sources: every (method, path) declares a
/// permission. A route added without one fails here before any request.
#[test]
fn every_plain_route_of_the_sources_declares_a_permission() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let prefixes = [
        "/api/2.0/mlflow",
        "/ajax-api/2.0/mlflow",
        "/api/2.0/mlflow-artifacts",
        "/ajax-api/2.0/mlflow-artifacts",
    ];
    let mut checked = 0;
    for file in [
        "tracking.rs",
        "models.rs",
        "artifacts.rs",
        "multipart.rs",
        "principals.rs",
        "tandem.rs",
        "mlflow_workspaces.rs",
    ] {
        let text = std::fs::read_to_string(crates.join("tandem-api/src").join(file)).unwrap();
        let compact: String = text.split_whitespace().collect();
        for call in compact.split(".route(").skip(1) {
            // Only the call's own arguments: up to its closing parenthesis.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(index, _)| index)
                .unwrap_or(call.len());
            let call = &call[..end];
            let (path, rest, templated) = if let Some(rest) = call.strip_prefix("&format!(\"{prefix}") {
                let end = rest.find('"').unwrap();
                (
                    rest[..end].replace("{{", "{").replace("}}", "}"),
                    &rest[end..],
                    true,
                )
            } else if let Some(rest) = call.strip_prefix('"') {
                let end = rest.find('"').unwrap();
                (rest[..end].to_string(), &rest[end..], false)
            } else {
                panic!(
                    "{file}: a route whose path is not a literal: .route({})",
                    &call[..call.len().min(60)]
                );
            };
            let methods: Vec<Method> = [
                ("get(", Method::GET),
                ("post(", Method::POST),
                ("put(", Method::PUT),
                ("patch(", Method::PATCH),
                ("delete(", Method::DELETE),
            ]
            .into_iter()
            .filter(|(token, _)| {
                [",", ".", "("]
                    .iter()
                    .any(|before| rest.contains(&format!("{before}{token}")))
            })
            .map(|(_, method)| method)
            .collect();
            assert!(!methods.is_empty(), "{file}: no method for {path}");
            for method in methods {
                let declared = if templated {
                    prefixes.iter().any(|prefix| {
                        tandem_api::access::required(&method, &format!("{prefix}{path}")).is_some()
                    })
                } else {
                    tandem_api::access::required(&method, &path).is_some()
                };
                assert!(
                    declared,
                    "{file}: {method} {path} declares no permission in tandem_api::access"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "only {checked} routes found: the scan is broken");
}
