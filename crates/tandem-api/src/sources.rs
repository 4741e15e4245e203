//! Model version sources, refused or accepted as MLflow 3.17's server does
//! (`_validate_source_run`, `_validate_source_model`,
//! `_validate_non_local_source_contains_relative_paths`): no local paths
//! (they would point the registry at the server's own disk), no relative
//! segments after any amount of percent-decoding, no NUL, and a `runs:/`,
//! `models:/<id>` or `mlflow-artifacts` source must lie in the run or
//! logged model the request names.

use tandem_store::WorkspaceRef;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// A URI split as Python's `urllib.parse.urlparse` splits it (what MLflow's
/// checks look at): scheme, network location, path.
#[derive(Debug, PartialEq, Eq)]
struct Parsed<'a> {
    scheme: String,
    netloc: &'a str,
    path: &'a str,
}

fn parse(uri: &str) -> Parsed<'_> {
    let (scheme, rest) = match uri.split_once(':') {
        Some((scheme, rest))
            if scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (scheme.to_ascii_lowercase(), rest)
        }
        _ => (String::new(), uri),
    };
    let rest = rest.split(['#']).next().unwrap_or("");
    let rest = rest.split(['?']).next().unwrap_or("");
    let (netloc, path) = match rest.strip_prefix("//") {
        Some(after) => match after.find('/') {
            Some(at) => (&after[..at], &after[at..]),
            None => (after, ""),
        },
        None => ("", rest),
    };
    // urlparse keeps `;params` of the last segment apart from the path.
    let path = match path.rfind('/') {
        Some(slash) => match path[slash..].find(';') {
            Some(semi) => &path[..slash + semi],
            None => path,
        },
        None => path.split(';').next().unwrap_or(""),
    };
    Parsed { scheme, netloc, path }
}

fn unquote_plus(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn unquote(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Decoded until decoding changes nothing.
fn fully(text: &str, decode: fn(&str) -> String) -> String {
    let mut text = text.to_string();
    // Each round shortens the text; bounded all the same.
    for _ in 0..64 {
        let decoded = decode(&text);
        if decoded == text {
            break;
        }
        text = decoded;
    }
    text
}

/// `is_local_uri`: no scheme, or `file:` on this host.
fn is_local(source: &str) -> ApiResult<bool> {
    let parsed = parse(source);
    match parsed.scheme.as_str() {
        "" => Ok(true),
        "file" => {
            let host = parsed
                .netloc
                .rsplit('@')
                .next()
                .unwrap_or("")
                .split(':')
                .next()
                .unwrap_or("");
            if host.is_empty()
                || host == "."
                || host.starts_with("localhost")
                || host.starts_with("127.0.0.1")
            {
                Ok(true)
            } else {
                Err(ApiError::invalid(format!(
                    "{source} is not a valid remote uri. For remote access on windows, please consider using a different scheme such as SMB (e.g. smb://<hostname>/<path>)."
                )))
            }
        }
        _ => Ok(false),
    }
}

/// Lexically resolved, as `pathlib.Path(path).resolve()` would give for a
/// path free of symbolic links; None for a relative path (it would resolve
/// against the server's working directory, so never to itself).
fn resolved(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn relative_paths_refused(source: &str) -> ApiResult<()> {
    let decoded = fully(source, unquote_plus);
    let mut path = parse(&decoded).path.trim_end_matches('/').to_string();
    while path.contains("//") {
        path = path.replace("//", "/");
    }
    let relative = path.contains('\0')
        || decoded.split('/').any(|segment| segment == "..")
        || resolved(&path).as_deref() != Some(path.as_str());
    if relative {
        return Err(ApiError::invalid(format!(
            "Invalid model version source: '{source}'. If supplying a source as an http, https, local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided without relative path references present. Please provide an absolute path."
        )));
    }
    Ok(())
}

fn not_within(source: &str, id_name: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid model version source: '{source}'. The {id_name} request parameter must identify the resource that contains the source."
    ))
}

/// Scheme, authority and decoded path segments, for comparing a source
/// with an artifact root.
fn normalized(uri: &str) -> (String, String, Vec<String>) {
    let parsed = parse(uri);
    let parts = parsed
        .path
        .split('/')
        .filter(|part| !part.is_empty())
        .map(|part| fully(part, unquote))
        .collect();
    (parsed.scheme, parsed.netloc.to_ascii_lowercase(), parts)
}

fn within_root(source: &str, root: &str) -> bool {
    let (source_scheme, source_authority, source_parts) = normalized(source);
    let (root_scheme, root_authority, root_parts) = normalized(root);
    source_scheme == root_scheme
        && source_authority == root_authority
        && !root_parts.is_empty()
        && source_parts.starts_with(&root_parts)
}

fn is_artifact_source(source: &str) -> bool {
    let (scheme, _, parts) = normalized(source);
    if scheme == "mlflow-artifacts" {
        return true;
    }
    let route = ["api", "2.0", "mlflow-artifacts", "artifacts"];
    (scheme == "http" || scheme == "https") && parts.windows(route.len()).any(|window| window == route)
}

/// The logged model a `models:/` source names, if it names one (a single
/// segment, not `name/version` or `name@alias`).
fn model_id_of(path: &str) -> Option<&str> {
    let path = path.trim_start_matches('/');
    (!path.is_empty() && !path.contains('/') && !path.contains('@')).then_some(path)
}

/// Refuses `source` for a new version of a registered model made from
/// `run_id` or `model_id` (either may be empty), as MLflow does.
pub(crate) async fn validate(
    state: &AppState,
    ws: &WorkspaceRef,
    source: &str,
    run_id: &str,
    model_id: &str,
) -> ApiResult<()> {
    let by_model = !model_id.is_empty();
    let id_name = if by_model { "model_id" } else { "run_id" };
    if is_local(source)? {
        let (id, what) = if by_model {
            ("model_id", "model_id")
        } else {
            ("run_id", "run_id")
        };
        // Tandem's runs and logged models keep their artifacts behind its
        // proxy, never in a local directory a local source could lie in.
        return Err(ApiError::invalid(format!(
            "Invalid model version source: '{source}'. To use a local path as a model version source, the {id} request parameter has to be specified and the local path has to be contained within the artifact directory of the run specified by the {what}."
        )));
    }
    relative_paths_refused(source)?;
    let parsed = parse(source);
    match parsed.scheme.as_str() {
        "runs" if by_model => return Err(not_within(source, id_name)),
        "runs" => {
            let source_run = parsed
                .path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("");
            return if parsed.netloc.is_empty() && source_run == run_id && !run_id.is_empty() {
                Ok(())
            } else {
                Err(not_within(source, "run_id"))
            };
        }
        "models" => {
            if !parsed.netloc.is_empty() {
                return Err(not_within(source, "model_id"));
            }
            match model_id_of(parsed.path) {
                Some(named) if by_model && named == model_id => return Ok(()),
                Some(_) => return Err(not_within(source, "model_id")),
                None => {}
            }
        }
        _ => {}
    }
    if is_artifact_source(source) {
        let root = if by_model {
            match state.store.get_logged_model(ws, model_id).await {
                Ok(model) => model.info.artifact_uri,
                Err(_) => return Err(not_within(source, id_name)),
            }
        } else if run_id.is_empty() {
            return Err(not_within(source, id_name));
        } else {
            match state.store.get_run(ws, run_id).await {
                Ok(run) => run.info.artifact_uri,
                Err(_) => return Err(not_within(source, id_name)),
            }
        };
        if !within_root(source, &root) {
            return Err(not_within(source, id_name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_as_urlparse_splits_them() {
        assert_eq!(
            parse("s3://bucket/a/b?x=1#f"),
            Parsed {
                scheme: "s3".into(),
                netloc: "bucket",
                path: "/a/b"
            }
        );
        assert_eq!(
            parse("runs:/abc/model"),
            Parsed {
                scheme: "runs".into(),
                netloc: "",
                path: "/abc/model"
            }
        );
        assert_eq!(parse("/tmp/x").scheme, "");
        assert_eq!(parse("http://h/a;p").path, "/a");
    }

    #[test]
    fn relative_segments_are_refused_however_encoded() {
        for source in [
            "mlflow-artifacts://host:5000/../../../../",
            "http://host:5000/api/2.0/mlflow-artifacts/artifacts/../../../../",
            "https://host/api/2.0/mlflow-artifacts/artifacts/..%2f..%2f..%2fetc",
            "s3:/my_bucket/models/path/../../other/path",
            "mlflow-artifacts://host:5000/..%252f..%252f",
            "http://host:5000/api/2.0/mlflow-artifacts/artifacts%00",
            "ftp://host/a/./b",
            "s3://bucket",
        ] {
            assert!(relative_paths_refused(source).is_err(), "{source}");
        }
        for source in [
            "s3://bucket/model",
            "runs:/abc/model",
            "models:/m-1",
            "gs://b/x/y/",
        ] {
            assert!(relative_paths_refused(source).is_ok(), "{source}");
        }
    }

    #[test]
    fn local_paths_and_roots() {
        assert!(is_local("/tmp/model").unwrap());
        assert!(is_local("file:///tmp/model").unwrap());
        assert!(is_local("file://localhost/tmp").unwrap());
        assert!(is_local("file://remote/tmp").is_err());
        assert!(!is_local("s3://b/x").unwrap());
        assert!(within_root(
            "mlflow-artifacts:/1/abc/artifacts/model",
            "mlflow-artifacts:/1/abc/artifacts"
        ));
        assert!(!within_root(
            "mlflow-artifacts:/1/abd/artifacts/model",
            "mlflow-artifacts:/1/abc/artifacts"
        ));
        assert!(within_root(
            "mlflow-artifacts:/1/a%62c/artifacts/m",
            "mlflow-artifacts:/1/abc/artifacts"
        ));
        assert!(is_artifact_source(
            "https://h/x/api/2.0/mlflow-artifacts/artifacts/1/a"
        ));
        assert!(!is_artifact_source("https://h/x/other"));
        assert_eq!(model_id_of("/m-123"), Some("m-123"));
        assert_eq!(model_id_of("/clf/2"), None);
        assert_eq!(model_id_of("/clf@champion"), None);
    }
}
