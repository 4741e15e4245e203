//! Resolving an identifier (`metrics.acc`, ``tags.`a b` ``, `name`) to the
//! kind of field it names and its key.
//!
//! MLflow has two flavours. The tracking searches (runs, logged models) accept
//! every entity prefix and its aliases (`metric`/`metrics`, `param`/`params`/
//! `parameter`/`parameters`, `tag`/`tags`, `attribute`/`attributes`/`attr`/
//! `run`, `dataset`/`datasets`); the experiment and registry searches accept
//! exactly `attribute`, `tag` and `tags`. In both, the text is split at its
//! first dot, a bare name is an attribute, and the key loses one pair of
//! quotes and then one pair of backquotes.

use super::compare::python_set;
use super::parser::{strip_quotes, trim_backticks};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl KeyType {
    /// MLflow's name for the kind, as its messages print it.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Metric => "metric",
            KeyType::Param => "parameter",
            KeyType::Tag => "tag",
            KeyType::Attribute => "attribute",
            KeyType::Dataset => "dataset",
        }
    }
}

/// The dataset fields a run filter may name (`datasets.<key>`).
pub(crate) const DATASET_KEYS: &[&str] = &["name", "digest", "context"];

/// The tracking flavour (`SearchUtils._get_identifier`).
pub(crate) fn tracking_identifier(identifier: &str, valid_attributes: &[&str]) -> Result<(KeyType, String)> {
    let (key_type, key) = match identifier.split_once('.') {
        None => (KeyType::Attribute, identifier),
        Some((entity, key)) => (tracking_entity(trim_backticks(entity))?, key),
    };
    let key = trim_backticks(strip_quotes(key)).to_string();
    check_key(key_type, &key, valid_attributes)?;
    if key_type == KeyType::Dataset && !DATASET_KEYS.contains(&key.as_str()) {
        return Err(Error::invalid(format!(
            "Invalid dataset key '{key}' specified. Valid keys are '{}'",
            python_set(DATASET_KEYS)
        )));
    }
    Ok((key_type, key))
}

fn tracking_entity(entity: &str) -> Result<KeyType> {
    Ok(match entity {
        "metric" | "metrics" => KeyType::Metric,
        "parameter" | "parameters" | "param" | "params" => KeyType::Param,
        "tag" | "tags" => KeyType::Tag,
        "attribute" | "attributes" | "attr" | "run" => KeyType::Attribute,
        "dataset" | "datasets" => KeyType::Dataset,
        _ => {
            return Err(Error::invalid(format!(
            "Invalid entity type '{entity}'. Valid values are ['metric', 'parameter', 'tag', 'attribute', \
                 'dataset']"
        )))
        }
    })
}

/// The experiment and registry flavour (`SearchExperimentsUtils._get_identifier`).
pub(crate) fn registry_identifier(identifier: &str, valid_attributes: &[&str]) -> Result<(KeyType, String)> {
    let (key_type, key) = match identifier.split_once('.') {
        None => (KeyType::Attribute, identifier),
        Some(("attribute", key)) => (KeyType::Attribute, key),
        Some(("tag" | "tags", key)) => (KeyType::Tag, key),
        Some((entity, _)) => {
            return Err(Error::invalid(format!(
                "Invalid entity type '{entity}'. Valid entity types are ('attribute', 'tag', 'tags')"
            )))
        }
    };
    let key = trim_backticks(strip_quotes(key)).to_string();
    check_key(key_type, &key, valid_attributes)?;
    Ok((key_type, key))
}

fn check_key(key_type: KeyType, key: &str, valid_attributes: &[&str]) -> Result<()> {
    if key_type == KeyType::Attribute && !valid_attributes.contains(&key) {
        return Err(Error::invalid(format!(
            "Invalid attribute key '{key}' specified. Valid keys are '{}'",
            python_set(valid_attributes)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTRS: &[&str] = &["run_id", "Run Name"];

    #[test]
    fn tracking_prefixes_and_aliases() {
        for (identifier, key_type, key) in [
            ("metric.a", KeyType::Metric, "a"),
            ("metrics.`my key`", KeyType::Metric, "my key"),
            ("metrics.\"my key\"", KeyType::Metric, "my key"),
            ("metrics.'my key'", KeyType::Metric, "my key"),
            ("`metrics`.a", KeyType::Metric, "a"),
            ("param.a", KeyType::Param, "a"),
            ("params.a", KeyType::Param, "a"),
            ("parameter.a", KeyType::Param, "a"),
            ("parameters.a", KeyType::Param, "a"),
            ("tag.a", KeyType::Tag, "a"),
            ("tags.mlflow.user", KeyType::Tag, "mlflow.user"),
            ("attribute.run_id", KeyType::Attribute, "run_id"),
            ("attributes.run_id", KeyType::Attribute, "run_id"),
            ("attr.run_id", KeyType::Attribute, "run_id"),
            ("run.run_id", KeyType::Attribute, "run_id"),
            ("run_id", KeyType::Attribute, "run_id"),
            ("`Run Name`", KeyType::Attribute, "Run Name"),
            ("dataset.name", KeyType::Dataset, "name"),
            ("datasets.context", KeyType::Dataset, "context"),
        ] {
            assert_eq!(
                tracking_identifier(identifier, ATTRS).unwrap(),
                (key_type, key.to_string()),
                "{identifier}"
            );
        }
    }

    #[test]
    fn tracking_errors() {
        let err = |identifier: &str| tracking_identifier(identifier, ATTRS).unwrap_err().message;
        assert_eq!(
            err("foo.bar"),
            "Invalid entity type 'foo'. Valid values are ['metric', 'parameter', 'tag', 'attribute', 'dataset']"
        );
        // Entity prefixes are case-sensitive, and only backquotes are trimmed from them.
        assert!(err("TAGS.x").starts_with("Invalid entity type 'TAGS'"));
        assert!(err("\"metrics\".x").starts_with("Invalid entity type '\"metrics\"'"));
        assert!(err("`metrics.x`").starts_with("Invalid entity type '`metrics'"));
        assert_eq!(
            err("attributes.foo"),
            "Invalid attribute key 'foo' specified. Valid keys are '{'run_id', 'Run Name'}'"
        );
        assert_eq!(
            err("datasets.foo"),
            "Invalid dataset key 'foo' specified. Valid keys are '{'name', 'digest', 'context'}'"
        );
    }

    #[test]
    fn registry_flavour_accepts_only_attribute_and_tags() {
        let attrs = &["name"];
        assert_eq!(
            registry_identifier("name", attrs).unwrap(),
            (KeyType::Attribute, "name".into())
        );
        assert_eq!(
            registry_identifier("`name`", attrs).unwrap(),
            (KeyType::Attribute, "name".into())
        );
        assert_eq!(
            registry_identifier("attribute.name", attrs).unwrap(),
            (KeyType::Attribute, "name".into())
        );
        assert_eq!(
            registry_identifier("tag.`a b`", attrs).unwrap(),
            (KeyType::Tag, "a b".into())
        );
        assert_eq!(
            registry_identifier("tags.\"x\"", attrs).unwrap(),
            (KeyType::Tag, "x".into())
        );
        assert_eq!(
            registry_identifier("attributes.name", attrs).unwrap_err().message,
            "Invalid entity type 'attributes'. Valid entity types are ('attribute', 'tag', 'tags')"
        );
        assert_eq!(
            registry_identifier("params.x", attrs).unwrap_err().message,
            "Invalid entity type 'params'. Valid entity types are ('attribute', 'tag', 'tags')"
        );
        assert_eq!(
            registry_identifier("run_id", attrs).unwrap_err().message,
            "Invalid attribute key 'run_id' specified. Valid keys are '{'name'}'"
        );
    }
}
