//! The OpenAPI document matches what the server routes: every documented
//! operation reaches a handler (no router 404 or 405), and no `/api/tandem/v1`
//! route is registered where the document cannot see it.

use std::path::{Path, PathBuf};

use tandem_server::ServerConfig;

mod support;

/// A router's own refusals: 405, or 404 with an empty body (every handler's
/// 404 carries MLflow's error JSON).
fn unrouted(status: reqwest::StatusCode, body: &str) -> bool {
    status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        || (status == reqwest::StatusCode::NOT_FOUND && body.trim().is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data: Some(dir.path().to_path_buf()),
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = support::Running::start(config, listener).await;
    let (base, http) = (server.base.clone(), server.http.clone());

    let served: serde_json::Value = http
        .get(format!("{base}{}", tandem_api::openapi::OPENAPI_PATH))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc = tandem_server::openapi(false);
    assert_eq!(
        served,
        serde_json::to_value(&doc).unwrap(),
        "the server serves its document"
    );

    let operations = tandem_api::openapi::operations(&doc);
    assert!(operations.len() >= 20, "{operations:?}");
    // Generated clients name their methods after operation ids.
    let mut ids = std::collections::BTreeSet::new();
    for deployment in [false, true] {
        ids.clear();
        let json = serde_json::to_value(tandem_server::openapi(deployment)).unwrap();
        for item in json["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                let id = operation["operationId"].as_str().unwrap().to_string();
                assert!(ids.insert(id.clone()), "operation id {id} is not unique");
            }
        }
    }
    for (method, template) in operations {
        // Placeholders get a value no resource has: the handler answers
        // (404 with a body, 400, …) while the router would answer 404/405
        // with nothing. Repositories point into the test's own directory.
        let mut path = template.clone();
        while let Some(start) = path.find('{') {
            let end = path[start..].find('}').unwrap() + start;
            path.replace_range(start..=end, "nothing-here");
        }
        let query = if template == "/api/tandem/v1/backups" && method == reqwest::Method::GET {
            format!("?from=file://{}", dir.path().join("no-repo").display())
        } else {
            String::new()
        };
        let response = http
            .request(method.clone(), format!("{base}{path}{query}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(!unrouted(status, &body), "{method} {template}: {status} {body:?}");
    }

    server.stop().await;
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// A route of the Tandem API registered with axum's plain `.route(…)`
/// would be served but missing from the document: every one goes through
/// `OpenApiRouter::routes(routes!(handler))`, whose path is the handler's
/// documented one.
#[test]
fn no_tandem_api_route_bypasses_the_document() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in [
        "tandem-api",
        "tandem-backup",
        "tandem-replication",
        "tandem-server",
    ] {
        rust_files(&crates.join(krate).join("src"), &mut files);
    }
    let mut offenders = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let compact: String = text.split_whitespace().collect();
        if compact.contains(".route(\"/api/tandem/v1") {
            offenders.push(file.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "plain .route(\"/api/tandem/v1…\") in {offenders:?}"
    );
}
