//! MLflow's input rules, with its limits and wording, so the client sees the
//! same errors it would from MLflow's own server. Every check runs before a
//! change is built: a request that fails here changes nothing.

use crate::error::{Error, Result};
use crate::model::{Metric, Param, Tag};

pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_EXPERIMENT_TAG_KEY_LENGTH: usize = 250;
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20000;
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_MODEL_REGISTRY_TAG_KEY_LENGTH: usize = 250;
pub const MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH: usize = 100_000;
pub const MAX_REGISTERED_MODEL_ALIAS_LENGTH: usize = 255;
pub const MAX_DATASET_NAME_SIZE: usize = 500;
pub const MAX_DATASET_DIGEST_SIZE: usize = 36;
pub const MAX_DATASET_SCHEMA_SIZE: usize = 1_048_575;
pub const MAX_DATASET_SOURCE_SIZE: usize = 65_535;
pub const MAX_DATASET_PROFILE_SIZE: usize = 16_777_215;
pub const MAX_INPUT_TAG_KEY_SIZE: usize = 255;
pub const MAX_INPUT_TAG_VALUE_SIZE: usize = 500;
pub const MAX_RESULTS_PER_PAGE: i64 = 50_000;
/// Experiments one search may name. MLflow's SQL store has no bound and
/// fails inside the database past the engine's variable limit (SQLite:
/// 32,766); a clear 400 up front, well under every engine's limit.
pub const MAX_EXPERIMENT_IDS_PER_SEARCH: usize = 10_000;

/// Refuses a search over more experiments than one statement may name.
pub fn validate_search_experiment_ids(ids: &[String]) -> Result<()> {
    if ids.len() > MAX_EXPERIMENT_IDS_PER_SEARCH {
        return Err(Error::invalid(format!(
            "A search may name at most {MAX_EXPERIMENT_IDS_PER_SEARCH} experiment_ids, got {}; search fewer experiments per call",
            ids.len()
        )));
    }
    Ok(())
}
/// MLflow's limit for `log-batch` request bodies.
pub const MAX_BATCH_LOG_REQUEST_SIZE: usize = 1_000_000;
pub const MAX_WORKSPACE_NAME_LENGTH: usize = 63;

const BAD_CHARACTERS_MESSAGE: &str = "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).";
const MISSING_KEY_NAME_MESSAGE: &str = "A key name must be provided.";

fn render_value(value: &str) -> String {
    format!("'{value}'")
}

pub fn invalid_value(path: &str, value: &str, message: Option<&str>) -> Error {
    match message {
        Some(message) => Error::invalid(format!(
            "Invalid value {} for parameter '{path}' supplied: {message}",
            render_value(value)
        )),
        None => Error::invalid(format!(
            "Invalid value {} for parameter '{path}' supplied.",
            render_value(value)
        )),
    }
}

pub fn missing_value(path: &str) -> Error {
    Error::invalid(format!("Missing value for required parameter '{path}'."))
}

pub fn exceeds_maximum_length(path: &str, limit: usize) -> Error {
    Error::invalid(format!(
        "'{path}' exceeds the maximum length of {limit} characters"
    ))
}

/// Python's `posixpath.normpath`, which MLflow uses to reject names that
/// would alias other names when used as file paths.
pub fn posix_normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial_slashes = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        if component.is_empty() || component == "." {
            continue;
        }
        if component != ".." || (initial_slashes == 0 && parts.is_empty()) || parts.last() == Some(&"..") {
            parts.push(component);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let joined = parts.join("/");
    let normalized = format!("{}{}", "/".repeat(initial_slashes), joined);
    if normalized.is_empty() {
        ".".to_string()
    } else {
        normalized
    }
}

fn path_not_unique(name: &str) -> bool {
    let norm = posix_normpath(name);
    norm != name || norm == "." || norm.starts_with("..") || norm.starts_with('/')
}

fn bad_path_message(name: &str) -> String {
    format!(
        "Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '{}'",
        posix_normpath(name)
    )
}

fn valid_name_characters(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':'))
}

fn validate_entity_name(name: &str, path: &str) -> Result<()> {
    if !valid_name_characters(name) {
        return Err(invalid_value(path, name, Some(BAD_CHARACTERS_MESSAGE)));
    }
    if path_not_unique(name) {
        return Err(invalid_value(path, name, Some(&bad_path_message(name))));
    }
    Ok(())
}

pub fn validate_length(entity: &str, limit: usize, value: &str) -> Result<()> {
    if value.chars().count() > limit {
        return Err(exceeds_maximum_length(entity, limit));
    }
    Ok(())
}

fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

pub fn validate_metric(metric: &Metric, path: &str) -> Result<()> {
    let name_path = join_path(path, "key");
    if metric.key.is_empty() && path.is_empty() {
        return Err(invalid_value(
            &name_path,
            "",
            Some(&format!("Metric name cannot be None. {MISSING_KEY_NAME_MESSAGE}")),
        ));
    }
    validate_entity_name(&metric.key, &name_path)?;
    if metric.timestamp < 0 {
        return Err(invalid_value(
            &join_path(path, "timestamp"),
            &metric.timestamp.to_string(),
            Some(&format!(
                "metric '{}' (value={}). Timestamp must be a nonnegative long (64-bit integer) ",
                metric.key, metric.value
            )),
        ));
    }
    validate_length("Metric name", MAX_ENTITY_KEY_LENGTH, &metric.key)
}

pub fn validate_param(param: &Param, path: &str) -> Result<()> {
    validate_entity_name(&param.key, &join_path(path, "key"))?;
    validate_length("Param key", MAX_ENTITY_KEY_LENGTH, &param.key)?;
    validate_length("Param value", MAX_PARAM_VAL_LENGTH, &param.value)
}

pub fn validate_tag_name(key: &str, path: &str) -> Result<()> {
    validate_entity_name(key, path)
}

pub fn validate_run_tag(tag: &Tag, path: &str) -> Result<()> {
    let key_path = join_path(path, "key");
    validate_tag_name(&tag.key, &key_path)?;
    validate_length(&key_path, MAX_ENTITY_KEY_LENGTH, &tag.key)?;
    validate_length(&join_path(path, "value"), MAX_TAG_VAL_LENGTH, &tag.value)
}

pub fn validate_experiment_tag(tag: &Tag) -> Result<()> {
    validate_tag_name(&tag.key, "key")?;
    validate_length("key", MAX_EXPERIMENT_TAG_KEY_LENGTH, &tag.key)?;
    validate_length("value", MAX_EXPERIMENT_TAG_VAL_LENGTH, &tag.value)
}

pub fn validate_registry_tag(tag: &Tag) -> Result<()> {
    validate_tag_name(&tag.key, "key")?;
    validate_length("key", MAX_MODEL_REGISTRY_TAG_KEY_LENGTH, &tag.key)?;
    validate_length("value", MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH, &tag.value)
}

pub fn validate_batch_limits(metrics: usize, params: usize, tags: usize) -> Result<()> {
    let check = |entity: &str, limit: usize, length: usize| {
        if length > limit {
            Err(Error::invalid(format!(
                "A batch logging request can contain at most {limit} {entity}. Got {length} {entity}. Please split up {entity} across multiple requests and try again."
            )))
        } else {
            Ok(())
        }
    };
    check("metrics", MAX_METRICS_PER_BATCH, metrics)?;
    check("params", MAX_PARAMS_TAGS_PER_BATCH, params)?;
    check("tags", MAX_PARAMS_TAGS_PER_BATCH, tags)?;
    check(
        "metrics, params, and tags",
        MAX_ENTITIES_PER_BATCH,
        metrics + params + tags,
    )
}

/// Rejects two values for one param key in a single batch, as MLflow does.
pub fn validate_param_keys_unique(params: &[Param]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = Vec::new();
    for param in params {
        if !seen.insert(param.key.as_str()) {
            duplicates.push(format!("'{}'", param.key));
        }
    }
    if duplicates.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Duplicate parameter keys have been submitted: [{}]. Please ensure the request contains only one param value per param key.",
            duplicates.join(", ")
        )))
    }
}

pub fn validate_experiment_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("Invalid experiment name: '{name}'")));
    }
    validate_length("name", MAX_EXPERIMENT_NAME_LENGTH, name)
}

pub fn validate_artifact_location(location: &str) -> Result<()> {
    if location.starts_with("runs:") {
        return Err(Error::invalid(format!(
            "Artifact location cannot be a runs:/ URI. Given: '{location}'"
        )));
    }
    Ok(())
}

pub fn validate_run_id(run_id: &str, path: &str) -> Result<()> {
    let mut chars = run_id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if !first_ok || !rest_ok || run_id.chars().count() > 256 {
        return Err(invalid_value(path, run_id, None));
    }
    Ok(())
}

pub fn validate_model_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(missing_value("name"));
    }
    if name.contains('/') || name.contains(':') {
        return Err(Error::invalid(format!(
            "Invalid model name '{name}'. Names cannot contain '/' or ':'."
        )));
    }
    if path_not_unique(name) {
        return Err(invalid_value("name", name, Some(&bad_path_message(name))));
    }
    Ok(())
}

pub fn parse_model_version(version: &str) -> Result<i64> {
    version.trim().parse::<i64>().map_err(|_| {
        Error::invalid(format!(
            "Parameter 'version' must be an integer, got '{version}'."
        ))
    })
}

pub fn validate_alias_name(alias: &str) -> Result<()> {
    if alias.is_empty() {
        return Err(Error::invalid("Registered model alias name cannot be empty."));
    }
    if !alias.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
        return Err(Error::invalid(format!(
            "Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), and dashes (-)."
        )));
    }
    validate_length(
        "Registered model alias name",
        MAX_REGISTERED_MODEL_ALIAS_LENGTH,
        alias,
    )?;
    if alias.eq_ignore_ascii_case("latest") {
        return Err(Error::invalid(
            "'latest' alias name (case insensitive) is reserved.",
        ));
    }
    let mut chars = alias.chars();
    if matches!(chars.next(), Some('v' | 'V')) && alias.len() > 1 && chars.all(|c| c.is_ascii_digit()) {
        return Err(Error::invalid(format!(
            "Version alias name '{alias}' is reserved."
        )));
    }
    Ok(())
}

pub fn validate_logged_model_name(name: &str) -> Result<()> {
    const BAD: [char; 6] = ['/', ':', '.', '%', '"', '\''];
    if name.is_empty() || name.contains(BAD) {
        return Err(Error::invalid(format!(
            "Invalid model name ('{name}') provided. Model name must be a non-empty string and cannot contain the following characters: ('/', ':', '.', '%', '\"', \"'\")"
        )));
    }
    Ok(())
}

/// Workspace names appear in URLs and storage paths, so they are kept to the
/// DNS-label alphabet.
pub fn validate_workspace_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_WORKSPACE_NAME_LENGTH
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        return Err(Error::invalid(format!(
            "Invalid workspace name '{name}': use 1 to {MAX_WORKSPACE_NAME_LENGTH} lowercase letters, digits and dashes, not starting or ending with a dash"
        )));
    }
    Ok(())
}

pub fn validate_max_results(max_results: i64, limit: i64) -> Result<()> {
    if max_results <= 0 || max_results > limit {
        return Err(Error::invalid(format!(
            "Invalid value {max_results} for parameter 'max_results' supplied. It must be at most {limit}, and greater than 0."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_matches_python() {
        for (input, expected) in [
            ("a/b", "a/b"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("/a", "/a"),
            ("a/", "a"),
            ("..", ".."),
            ("a/../..", ".."),
            ("", "."),
            ("//a", "//a"),
            ("///a", "/a"),
        ] {
            assert_eq!(posix_normpath(input), expected, "{input}");
        }
    }

    #[test]
    fn names_that_alias_paths_are_rejected() {
        for bad in ["", ".", "/", "..", "//", "a//b", "a/./b", "/a", "a/", "\\", "./"] {
            assert!(validate_tag_name(bad, "key").is_err(), "{bad:?} accepted");
        }
        for good in ["a", "Ab-5_", "a/b/c", "a.b.c", ".a", "b.", "a b/c d", "a:b"] {
            assert!(validate_tag_name(good, "key").is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn aliases_reserved_names() {
        assert!(validate_alias_name("champion").is_ok());
        assert!(validate_alias_name("latest").is_err());
        assert!(validate_alias_name("v3").is_err());
        assert!(validate_alias_name("bad alias").is_err());
    }

    #[test]
    fn batch_limits() {
        assert!(validate_batch_limits(1000, 0, 0).is_ok());
        assert!(validate_batch_limits(1001, 0, 0).is_err());
        assert!(validate_batch_limits(900, 100, 1).is_err());
    }
}
