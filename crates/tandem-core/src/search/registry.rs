//! Model registry search: MLflow's `SearchModelUtils` (registered models) and
//! `SearchModelVersionUtils` (model versions), as its registry stores apply
//! them.
//!
//! Both searches, like MLflow's stores, hide prompts (the registry also holds
//! prompt-engineering "prompts", tagged `mlflow.prompt.is_prompt = 'true'`)
//! unless the filter itself mentions that tag: MLflow's
//! `add_prompt_filter_string` appends ``tag.`mlflow.prompt.is_prompt` !=
//! 'true'``. A model without the tag counts as not a prompt for that tag's
//! comparisons.

use super::compare::{
    check_comparator, list_literal, number_literal, numeric_or_str, satisfies, sort_by_keys, string_literal,
    Cmp, Lhs, Literal, SortValue, KEY_VALUE, NUMERIC, STRING,
};
use super::identifier::{registry_identifier, KeyType};
use super::page_token::paginate;
use super::parser::{parse_filter, parse_order_by, ClauseListStyle, RawComparison, RawValue};
use super::runs_sql::{EntitySql, SqlClause, TextTest};
use super::Page;
use crate::error::{Error, Result};
use crate::model::{ModelVersion, RegisteredModel, Tag};

/// The tag that marks registry entries that are prompts.
const IS_PROMPT_TAG: &str = "mlflow.prompt.is_prompt";
/// Model versions in this stage are deleted and never returned.
const STAGE_DELETED_INTERNAL: &str = "Deleted_Internal";

/// A filter clause on a registry entity; `A` is the entity's attribute enum.
#[derive(Debug, Clone, PartialEq)]
enum RegistryField<A> {
    Attribute(A),
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
struct RegistryClause<A> {
    field: RegistryField<A>,
    cmp: Cmp,
    value: Literal,
}

/// The clause MLflow adds to exclude prompts, unless the filter mentions the
/// prompt tag itself.
fn prompt_exclusion<A>(filter: &str) -> Option<RegistryClause<A>> {
    (!filter.contains(IS_PROMPT_TAG)).then(|| RegistryClause {
        field: RegistryField::Tag(IS_PROMPT_TAG.to_string()),
        cmp: Cmp::Ne,
        value: Literal::Str("true".to_string()),
    })
}

/// Evaluates a tag clause, with MLflow's special case: an entity without the
/// prompt tag matches `= 'false'` and `!= 'true'` on it.
fn tag_matches(tags: &[Tag], key: &str, cmp: Cmp, value: &Literal) -> bool {
    let lhs = tags.iter().find(|t| t.key == key).map(|t| Lhs::Str(&t.value));
    if key == IS_PROMPT_TAG && lhs.is_none() {
        let value = match value {
            Literal::Str(value) => value.as_str(),
            _ => return false,
        };
        return (cmp == Cmp::Eq && value == "false") || (cmp == Cmp::Ne && value == "true");
    }
    satisfies(lhs, cmp, value)
}

/// The tag value of a registry filter: a quoted string.
fn tag_value(raw: &RawValue) -> Result<Literal> {
    match string_literal(raw) {
        Some(string) => string.map(Literal::Str),
        None => Err(Error::invalid(format!(
            "Expected a quoted string value for tag (e.g. 'my-value'). Got value {}",
            raw.text()
        ))),
    }
}

fn order_by_error(key_type: KeyType) -> Error {
    Error::invalid(format!("Invalid order_by entity: {}", key_type.name()))
}

// ---------------------------------------------------------------- registered models

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelAttribute {
    Name,
    CreationTimestamp,
    LastUpdatedTimestamp,
}

/// Registered models are searchable by name only (and tags).
const MODEL_SEARCH_ATTRIBUTES: &[&str] = &["name"];
/// Orderable: the file store's keys plus `timestamp`, which the SQL store
/// accepts (as `last_updated_timestamp`) and the MLflow UI sends.
const MODEL_ORDER_BY_ATTRIBUTES: &[&str] = &[
    "name",
    "creation_timestamp",
    "last_updated_timestamp",
    "timestamp",
];

/// Filters, orders and paginates registered models. Default order: name.
/// Filters and orders read a model's name, times and tags only: a store
/// may give it models without their versions and aliases and load the
/// page's whole afterwards.
pub fn search_registered_models(
    models: Vec<RegisteredModel>,
    filter: &str,
    order_by: &[String],
    max_results: usize,
    page_token: Option<&str>,
) -> Result<Page<RegisteredModel>> {
    let mut clauses = parse_filter(filter, ClauseListStyle::Plain)?
        .into_iter()
        .map(resolve_model)
        .collect::<Result<Vec<_>>>()?;
    clauses.extend(prompt_exclusion(filter));
    let keys = model_order_keys(order_by)?;
    let mut models: Vec<RegisteredModel> = models
        .into_iter()
        .filter(|m| clauses.iter().all(|c| model_matches(m, c)))
        .collect();
    sort_by_keys(&mut models, &keys, |model, attribute| match attribute {
        ModelAttribute::Name => SortValue::Str(&model.name),
        ModelAttribute::CreationTimestamp => SortValue::Int(model.creation_timestamp),
        ModelAttribute::LastUpdatedTimestamp => SortValue::Int(model.last_updated_timestamp),
    });
    paginate(models, page_token, max_results)
}

/// A model search's whole order: the name breaks ties.
fn model_order_keys(order_by: &[String]) -> Result<Vec<(ModelAttribute, bool)>> {
    let mut keys = order_by
        .iter()
        .map(|entry| parse_model_order_by(entry))
        .collect::<Result<Vec<_>>>()?;
    if !keys
        .iter()
        .any(|(attribute, _)| *attribute == ModelAttribute::Name)
    {
        keys.push((ModelAttribute::Name, true));
    }
    Ok(keys)
}

/// What a database can do of a search of registered models by `filter` and
/// `order_by` (both validated here, with `search_registered_models`'
/// errors): its clauses on `registered_models.name` and on
/// `registered_model_tags` (the prompt exclusion as [`SqlClause::NotTagged`]),
/// and its order on `registered_models`' columns, cut after the (unique)
/// name.
pub fn registered_model_search_sql(filter: &str, order_by: &[String]) -> Result<EntitySql> {
    let mut clauses = parse_filter(filter, ClauseListStyle::Plain)?
        .into_iter()
        .map(resolve_model)
        .collect::<Result<Vec<_>>>()?;
    clauses.extend(prompt_exclusion(filter));
    let count = clauses.len();
    let clauses: Vec<SqlClause> = clauses
        .into_iter()
        .filter_map(|clause| match clause.field {
            // A model without the prompt tag is no prompt: only `!= 'true'`
            // is a plain absence of a value.
            RegistryField::Tag(key) if key == IS_PROMPT_TAG => match (clause.cmp, clause.value) {
                (Cmp::Ne, Literal::Str(value)) if value == "true" => {
                    Some(SqlClause::NotTagged { key, value })
                }
                _ => None,
            },
            RegistryField::Tag(key) => Some(SqlClause::Tag {
                key,
                test: TextTest::from_clause(clause.cmp, clause.value)?,
            }),
            RegistryField::Attribute(_) => match TextTest::from_clause(clause.cmp, clause.value)? {
                TextTest::Present | TextTest::Absent => None,
                test => Some(SqlClause::Attribute { column: "name", test }),
            },
        })
        .collect();
    let mut order = Vec::new();
    for (attribute, ascending) in model_order_keys(order_by)? {
        order.push((
            match attribute {
                ModelAttribute::Name => "name",
                ModelAttribute::CreationTimestamp => "creation_time",
                ModelAttribute::LastUpdatedTimestamp => "last_updated_time",
            },
            ascending,
        ));
        if attribute == ModelAttribute::Name {
            break;
        }
    }
    Ok(EntitySql {
        complete: clauses.len() == count,
        clauses,
        order,
    })
}

/// `SearchModelUtils._get_comparison` and `_get_value`.
fn resolve_model(comparison: RawComparison) -> Result<RegistryClause<ModelAttribute>> {
    let (key_type, key) = registry_identifier(&comparison.identifier, MODEL_SEARCH_ATTRIBUTES)?;
    let raw = &comparison.value;
    let (field, allowed, value) = match key_type {
        KeyType::Tag => {
            let value = if *raw == RawValue::None {
                Literal::None
            } else {
                tag_value(raw)?
            };
            (RegistryField::Tag(key), KEY_VALUE, value)
        }
        _ => {
            let value = if let Some(string) = string_literal(raw) {
                Literal::Str(string?)
            } else if let Some(list) = list_literal(raw) {
                Literal::List(list?)
            } else {
                return Err(Error::invalid(format!(
                    "Expected a quoted string value or a list of quoted string values for attributes. Got value {}",
                    raw.text()
                )));
            };
            (RegistryField::Attribute(ModelAttribute::Name), STRING, value)
        }
    };
    let cmp = check_comparator(&comparison.comparator, allowed)?;
    Ok(RegistryClause { field, cmp, value })
}

fn model_matches(model: &RegisteredModel, clause: &RegistryClause<ModelAttribute>) -> bool {
    match &clause.field {
        RegistryField::Attribute(_) => satisfies(Some(Lhs::Str(&model.name)), clause.cmp, &clause.value),
        RegistryField::Tag(key) => tag_matches(&model.tags, key, clause.cmp, &clause.value),
    }
}

fn parse_model_order_by(entry: &str) -> Result<(ModelAttribute, bool)> {
    let (identifier, ascending) = parse_order_by(entry)?;
    let (key_type, key) = registry_identifier(identifier.trim(), MODEL_ORDER_BY_ATTRIBUTES)?;
    if key_type != KeyType::Attribute {
        return Err(order_by_error(key_type));
    }
    let attribute = match key.as_str() {
        "name" => ModelAttribute::Name,
        "creation_timestamp" => ModelAttribute::CreationTimestamp,
        _ => ModelAttribute::LastUpdatedTimestamp,
    };
    Ok((attribute, ascending))
}

// ---------------------------------------------------------------- model versions

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionAttribute {
    Name,
    RunId,
    SourcePath,
    VersionNumber,
    CreationTimestamp,
    LastUpdatedTimestamp,
}

const VERSION_SEARCH_ATTRIBUTES: &[&str] = &["name", "version_number", "run_id", "source_path"];
const VERSION_ORDER_BY_ATTRIBUTES: &[&str] = &[
    "name",
    "version_number",
    "creation_timestamp",
    "last_updated_timestamp",
];
const VERSION_NUMERIC_ATTRIBUTES: &[&str] =
    &["version_number", "creation_timestamp", "last_updated_timestamp"];
const VERSION_LIST_ATTRIBUTES: &[&str] = &["name", "run_id"];

impl VersionAttribute {
    fn from_key(key: &str) -> Self {
        match key {
            "name" => VersionAttribute::Name,
            "run_id" => VersionAttribute::RunId,
            "source_path" => VersionAttribute::SourcePath,
            "version_number" => VersionAttribute::VersionNumber,
            "creation_timestamp" => VersionAttribute::CreationTimestamp,
            "last_updated_timestamp" => VersionAttribute::LastUpdatedTimestamp,
            other => unreachable!("attribute key {other:?} was validated"),
        }
    }

    /// The version's value; an empty run id is no run id.
    fn value(self, version: &ModelVersion) -> Option<Lhs<'_>> {
        match self {
            VersionAttribute::Name => Some(Lhs::Str(&version.name)),
            VersionAttribute::RunId => (!version.run_id.is_empty()).then_some(Lhs::Str(&version.run_id)),
            VersionAttribute::SourcePath => Some(Lhs::Str(&version.source)),
            VersionAttribute::VersionNumber => version.version.parse().ok().map(Lhs::Int),
            VersionAttribute::CreationTimestamp => Some(Lhs::Int(version.creation_timestamp)),
            VersionAttribute::LastUpdatedTimestamp => Some(Lhs::Int(version.last_updated_timestamp)),
        }
    }
}

/// Filters, orders and paginates model versions. Default order:
/// `last_updated_timestamp DESC, name ASC, version_number DESC`.
pub fn search_model_versions(
    versions: Vec<ModelVersion>,
    filter: &str,
    order_by: &[String],
    max_results: usize,
    page_token: Option<&str>,
) -> Result<Page<ModelVersion>> {
    let mut clauses = parse_filter(filter, ClauseListStyle::Plain)?
        .into_iter()
        .map(resolve_version)
        .collect::<Result<Vec<_>>>()?;
    clauses.extend(prompt_exclusion(filter));
    let mut keys = if order_by.is_empty() {
        vec![
            (VersionAttribute::LastUpdatedTimestamp, false),
            (VersionAttribute::Name, true),
            (VersionAttribute::VersionNumber, false),
        ]
    } else {
        order_by
            .iter()
            .map(|entry| parse_version_order_by(entry))
            .collect::<Result<Vec<_>>>()?
    };
    if !keys
        .iter()
        .any(|(attribute, _)| *attribute == VersionAttribute::Name)
    {
        keys.push((VersionAttribute::Name, true));
    }
    keys.push((VersionAttribute::VersionNumber, false));
    let mut versions: Vec<ModelVersion> = versions
        .into_iter()
        .filter(|v| v.current_stage != STAGE_DELETED_INTERNAL)
        .filter(|v| clauses.iter().all(|c| version_matches(v, c)))
        .collect();
    sort_by_keys(&mut versions, &keys, |version, attribute| {
        match attribute.value(version) {
            None => SortValue::Missing,
            Some(Lhs::Str(s)) if *attribute == VersionAttribute::VersionNumber => numeric_or_str(s),
            Some(Lhs::Str(s)) => SortValue::Str(s),
            Some(Lhs::Int(i)) => SortValue::Int(i),
            Some(Lhs::Float(f)) => SortValue::Float(f),
        }
    });
    paginate(versions, page_token, max_results)
}

/// `SearchModelVersionUtils._get_comparison` and `_get_value`, and the
/// `int(value)` MLflow applies to numeric attributes when evaluating.
fn resolve_version(comparison: RawComparison) -> Result<RegistryClause<VersionAttribute>> {
    let (key_type, key) = registry_identifier(&comparison.identifier, VERSION_SEARCH_ATTRIBUTES)?;
    let raw = &comparison.value;
    let text = raw.text();
    if key_type == KeyType::Tag {
        let value = if *raw == RawValue::None {
            Literal::None
        } else {
            tag_value(raw)?
        };
        let cmp = check_comparator(&comparison.comparator, KEY_VALUE)?;
        return Ok(RegistryClause {
            field: RegistryField::Tag(key),
            cmp,
            value,
        });
    }
    let numeric = VERSION_NUMERIC_ATTRIBUTES.contains(&key.as_str());
    let value = if let Some(string) = string_literal(raw) {
        Literal::Str(string?)
    } else if let Some(list) = list_literal(raw) {
        if !VERSION_LIST_ATTRIBUTES.contains(&key.as_str()) {
            return Err(Error::invalid(
                "Only ['name', 'run_id'] attributes support comparison with a list of quoted string values.",
            ));
        }
        Literal::List(list?)
    } else if let Some(number) = number_literal(raw) {
        if !numeric {
            return Err(Error::invalid(
                "Only the '{'version_number', 'creation_timestamp', 'last_updated_timestamp'}' attributes support \
                 comparison with numeric values.",
            ));
        }
        Literal::Number(number)
    } else {
        return Err(Error::invalid(format!(
            "Expected a quoted string value or a list of quoted string values for attributes. Got value {text}"
        )));
    };
    let (cmp, value) = if numeric {
        // MLflow compares `int(value)`: a quoted integer is accepted and a
        // fraction truncates (`version_number = 2.5` is version 2).
        let integer = match &value {
            Literal::Number(number) => number.integer.unwrap_or(number.value.trunc() as i64),
            Literal::Str(string) => string.trim().parse::<i64>().map_err(|_| {
                Error::invalid(format!(
                    "Expected numeric value type for numeric attribute: {key}. Found {text}"
                ))
            })?,
            _ => unreachable!("lists were rejected for numeric attributes"),
        };
        let cmp = check_comparator(&comparison.comparator, NUMERIC)?;
        (cmp, Literal::Number(super::compare::Number::from_i64(integer)))
    } else {
        (check_comparator(&comparison.comparator, STRING)?, value)
    };
    Ok(RegistryClause {
        field: RegistryField::Attribute(VersionAttribute::from_key(&key)),
        cmp,
        value,
    })
}

fn version_matches(version: &ModelVersion, clause: &RegistryClause<VersionAttribute>) -> bool {
    match &clause.field {
        RegistryField::Attribute(attribute) => satisfies(attribute.value(version), clause.cmp, &clause.value),
        RegistryField::Tag(key) => tag_matches(&version.tags, key, clause.cmp, &clause.value),
    }
}

fn parse_version_order_by(entry: &str) -> Result<(VersionAttribute, bool)> {
    let (identifier, ascending) = parse_order_by(entry)?;
    match registry_identifier(identifier.trim(), VERSION_ORDER_BY_ATTRIBUTES)? {
        (KeyType::Attribute, key) => Ok((VersionAttribute::from_key(&key), ascending)),
        (key_type, _) => Err(order_by_error(key_type)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelVersionStatus;

    fn model(name: &str, created: i64, updated: i64, tags: &[(&str, &str)]) -> RegisteredModel {
        RegisteredModel {
            name: name.to_string(),
            creation_timestamp: created,
            last_updated_timestamp: updated,
            user_id: String::new(),
            description: String::new(),
            latest_versions: vec![],
            tags: tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
            aliases: vec![],
        }
    }

    fn models() -> Vec<RegisteredModel> {
        vec![
            model("fraud", 100, 500, &[("team", "risk")]),
            model("Churn", 200, 200, &[("team", "growth"), ("my key", "v")]),
            model("churn-v2", 300, 500, &[]),
            model("summarize", 400, 400, &[(IS_PROMPT_TAG, "true")]),
            model("was-prompt", 500, 100, &[(IS_PROMPT_TAG, "false")]),
        ]
    }

    fn names(page: &Page<RegisteredModel>) -> Vec<String> {
        page.items.iter().map(|m| m.name.clone()).collect()
    }

    fn search_models(filter: &str, order_by: &[&str]) -> Vec<String> {
        let order_by: Vec<String> = order_by.iter().map(|s| s.to_string()).collect();
        names(&search_registered_models(models(), filter, &order_by, 100, None).unwrap())
    }

    fn model_error(filter: &str) -> String {
        let error = search_registered_models(vec![], filter, &[], 100, None).unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::InvalidParameterValue);
        error.message
    }

    #[test]
    fn registered_models_default_to_name_order_without_prompts() {
        assert_eq!(
            search_models("", &[]),
            ["Churn", "churn-v2", "fraud", "was-prompt"]
        );
    }

    #[test]
    fn registered_model_name_comparators() {
        assert_eq!(search_models("name = 'fraud'", &[]), ["fraud"]);
        assert_eq!(
            search_models("name != 'fraud'", &[]),
            ["Churn", "churn-v2", "was-prompt"]
        );
        assert_eq!(search_models("name LIKE 'churn%'", &[]), ["churn-v2"]);
        assert_eq!(search_models("name ILIKE 'churn%'", &[]), ["Churn", "churn-v2"]);
        assert_eq!(
            search_models("attribute.name IN ('fraud', 'Churn')", &[]),
            ["Churn", "fraud"]
        );
        assert_eq!(
            search_models("name NOT IN ('fraud', 'Churn')", &[]),
            ["churn-v2", "was-prompt"]
        );
        assert_eq!(search_models("`name` = \"fraud\"", &[]), ["fraud"]);
    }

    #[test]
    fn registered_model_tags() {
        assert_eq!(search_models("tags.team = 'risk'", &[]), ["fraud"]);
        assert_eq!(search_models("tag.team != 'risk'", &[]), ["Churn"]);
        assert_eq!(search_models("tags.team LIKE 'g%'", &[]), ["Churn"]);
        assert_eq!(search_models("tags.team ILIKE 'RISK'", &[]), ["fraud"]);
        assert_eq!(
            search_models("tags.`my key` = 'v' AND name ILIKE 'c%'", &[]),
            ["Churn"]
        );
    }

    #[test]
    fn prompts_are_returned_only_when_asked_for() {
        assert_eq!(
            search_models("tags.`mlflow.prompt.is_prompt` = 'true'", &[]),
            ["summarize"]
        );
        // Models without the tag count as not prompts.
        assert_eq!(
            search_models("tags.`mlflow.prompt.is_prompt` = 'false'", &[]),
            ["Churn", "churn-v2", "fraud", "was-prompt"]
        );
        assert_eq!(
            search_models("tags.`mlflow.prompt.is_prompt` != 'true'", &[]),
            ["Churn", "churn-v2", "fraud", "was-prompt"]
        );
        assert_eq!(
            search_models("tags.`mlflow.prompt.is_prompt` LIKE '%'", &[]),
            ["summarize", "was-prompt"]
        );
    }

    #[test]
    fn registered_model_order_by() {
        assert_eq!(
            search_models("", &["name DESC"]),
            ["was-prompt", "fraud", "churn-v2", "Churn"]
        );
        // Ties on last_updated_timestamp break by name.
        assert_eq!(
            search_models("", &["last_updated_timestamp DESC"]),
            ["churn-v2", "fraud", "Churn", "was-prompt"]
        );
        assert_eq!(
            search_models("", &["timestamp"]),
            ["was-prompt", "Churn", "churn-v2", "fraud"]
        );
        assert_eq!(
            search_models("", &["creation_timestamp DESC"]),
            ["was-prompt", "churn-v2", "Churn", "fraud"]
        );
        assert_eq!(
            search_models("", &["last_updated_timestamp DESC", "name DESC"]),
            ["fraud", "churn-v2", "Churn", "was-prompt"]
        );
    }

    #[test]
    fn registered_model_errors() {
        assert_eq!(
            model_error("name = 'a' OR name = 'b'"),
            "Invalid clause(s) in filter string: OR"
        );
        assert_eq!(
            model_error("run_id = 'a'"),
            "Invalid attribute key 'run_id' specified. Valid keys are '{'name'}'"
        );
        assert_eq!(
            model_error("params.x = 'a'"),
            "Invalid entity type 'params'. Valid entity types are ('attribute', 'tag', 'tags')"
        );
        assert_eq!(
            model_error("name = 1"),
            "Expected a quoted string value or a list of quoted string values for attributes. Got value 1"
        );
        assert_eq!(
            model_error("tags.x IN ('a')"),
            "Expected a quoted string value for tag (e.g. 'my-value'). Got value ('a')"
        );
        assert_eq!(
            model_error("tags.x IS NULL"),
            "Invalid comparator 'IS NULL' not one of '{'!=', '=', 'LIKE', 'ILIKE'}'"
        );
        assert_eq!(
            model_error("name > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}'"
        );
        let order_error = |entry: &str| {
            search_registered_models(models(), "", &[entry.to_string()], 10, None)
                .unwrap_err()
                .message
        };
        assert_eq!(order_error("tags.team"), "Invalid order_by entity: tag");
        assert!(order_error("version").starts_with("Invalid attribute key 'version' specified."));
    }

    #[test]
    fn registered_models_paginate() {
        let first = search_registered_models(models(), "", &[], 2, None).unwrap();
        assert_eq!(names(&first), ["Churn", "churn-v2"]);
        let second =
            search_registered_models(models(), "", &[], 2, first.next_page_token.as_deref()).unwrap();
        assert_eq!(names(&second), ["fraud", "was-prompt"]);
        assert_eq!(second.next_page_token, None);
    }

    fn version(name: &str, number: u32, updated: i64, run_id: &str, tags: &[(&str, &str)]) -> ModelVersion {
        ModelVersion {
            name: name.to_string(),
            version: number.to_string(),
            creation_timestamp: i64::from(number) * 10,
            last_updated_timestamp: updated,
            user_id: String::new(),
            current_stage: "None".to_string(),
            description: String::new(),
            source: format!("models:/m-{name}-{number}"),
            run_id: run_id.to_string(),
            status: ModelVersionStatus::Ready,
            status_message: String::new(),
            tags: tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
            run_link: String::new(),
            aliases: vec![],
            model_id: String::new(),
        }
    }

    fn versions() -> Vec<ModelVersion> {
        let mut deleted = version("fraud", 4, 999, "r9", &[]);
        deleted.current_stage = STAGE_DELETED_INTERNAL.to_string();
        vec![
            version("fraud", 1, 100, "r1", &[("stage", "old")]),
            version("fraud", 2, 300, "r2", &[("stage", "candidate")]),
            version("fraud", 10, 300, "", &[]),
            version("churn", 1, 300, "r1", &[("stage", "prod")]),
            version("prompt", 1, 500, "", &[(IS_PROMPT_TAG, "true")]),
            deleted,
        ]
    }

    fn labels(page: &Page<ModelVersion>) -> Vec<String> {
        page.items
            .iter()
            .map(|v| format!("{}/{}", v.name, v.version))
            .collect()
    }

    fn search_versions(filter: &str, order_by: &[&str]) -> Vec<String> {
        let order_by: Vec<String> = order_by.iter().map(|s| s.to_string()).collect();
        labels(&search_model_versions(versions(), filter, &order_by, 100, None).unwrap())
    }

    fn version_error(filter: &str) -> String {
        search_model_versions(vec![], filter, &[], 100, None)
            .unwrap_err()
            .message
    }

    #[test]
    fn model_versions_default_order_hides_deleted_and_prompts() {
        // last_updated DESC, then name ASC, then version DESC (numerically).
        assert_eq!(
            search_versions("", &[]),
            ["churn/1", "fraud/10", "fraud/2", "fraud/1"]
        );
    }

    #[test]
    fn model_version_string_attributes() {
        assert_eq!(
            search_versions("name = 'fraud'", &[]),
            ["fraud/10", "fraud/2", "fraud/1"]
        );
        assert_eq!(search_versions("name IN ('churn')", &[]), ["churn/1"]);
        assert_eq!(search_versions("run_id = 'r1'", &[]), ["churn/1", "fraud/1"]);
        assert_eq!(
            search_versions("run_id IN ('r1', 'r2')", &[]),
            ["churn/1", "fraud/2", "fraud/1"]
        );
        // A version without a run never matches a run_id comparison.
        assert_eq!(search_versions("run_id != 'r1'", &[]), ["fraud/2"]);
        assert_eq!(
            search_versions("run_id NOT IN ('r2')", &[]),
            ["churn/1", "fraud/1"]
        );
        assert_eq!(
            search_versions("source_path = 'models:/m-fraud-2'", &[]),
            ["fraud/2"]
        );
        assert_eq!(
            search_versions("source_path LIKE '%-1'", &[]),
            ["churn/1", "fraud/1"]
        );
        assert_eq!(
            search_versions("name ILIKE 'FR%' AND run_id = 'r1'", &[]),
            ["fraud/1"]
        );
    }

    #[test]
    fn model_version_numbers() {
        assert_eq!(search_versions("version_number = 2", &[]), ["fraud/2"]);
        assert_eq!(
            search_versions("version_number > 1", &[]),
            ["fraud/10", "fraud/2"]
        );
        assert_eq!(
            search_versions("version_number >= 2 AND name = 'fraud'", &[]),
            ["fraud/10", "fraud/2"]
        );
        assert_eq!(search_versions("version_number < 2", &[]), ["churn/1", "fraud/1"]);
        assert_eq!(
            search_versions("version_number != 1", &[]),
            ["fraud/10", "fraud/2"]
        );
        // MLflow truncates with int(): 2.9 is 2, and a quoted integer is accepted.
        assert_eq!(search_versions("version_number = 2.9", &[]), ["fraud/2"]);
        assert_eq!(
            search_versions("version_number <= '1'", &[]),
            ["churn/1", "fraud/1"]
        );
    }

    #[test]
    fn model_version_tags() {
        assert_eq!(search_versions("tags.stage = 'prod'", &[]), ["churn/1"]);
        assert_eq!(
            search_versions("tags.stage != 'prod'", &[]),
            ["fraud/2", "fraud/1"]
        );
        assert_eq!(
            search_versions("tag.stage LIKE '%d%'", &[]),
            ["churn/1", "fraud/2", "fraud/1"]
        );
        assert_eq!(
            search_versions("tags.`mlflow.prompt.is_prompt` = 'true'", &[]),
            ["prompt/1"]
        );
    }

    #[test]
    fn model_version_order_by() {
        assert_eq!(
            search_versions("", &["version_number"]),
            ["churn/1", "fraud/1", "fraud/2", "fraud/10"]
        );
        assert_eq!(
            search_versions("", &["version_number DESC"]),
            ["fraud/10", "fraud/2", "churn/1", "fraud/1"]
        );
        assert_eq!(
            search_versions("", &["name DESC"]),
            ["fraud/10", "fraud/2", "fraud/1", "churn/1"]
        );
        assert_eq!(
            search_versions("", &["creation_timestamp"]),
            ["churn/1", "fraud/1", "fraud/2", "fraud/10"]
        );
        assert_eq!(
            search_versions("", &["last_updated_timestamp", "name DESC"]),
            ["fraud/1", "fraud/10", "fraud/2", "churn/1"]
        );
    }

    #[test]
    fn model_version_errors() {
        assert_eq!(
            version_error("creation_timestamp > 1"),
            "Invalid attribute key 'creation_timestamp' specified. Valid keys are '{'name', 'version_number', \
             'run_id', 'source_path'}'"
        );
        assert_eq!(
            version_error("source_path IN ('x')"),
            "Only ['name', 'run_id'] attributes support comparison with a list of quoted string values."
        );
        assert_eq!(
            version_error("name = 3"),
            "Only the '{'version_number', 'creation_timestamp', 'last_updated_timestamp'}' attributes support \
             comparison with numeric values."
        );
        assert_eq!(
            version_error("version_number = 'abc'"),
            "Expected numeric value type for numeric attribute: version_number. Found 'abc'"
        );
        assert_eq!(
            version_error("version_number LIKE '1'"),
            "Invalid comparator 'LIKE' not one of '{'>', '>=', '!=', '=', '<', '<='}'"
        );
        assert_eq!(
            version_error("run_id > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}'"
        );
        assert_eq!(
            version_error("tags.x IS NOT NULL"),
            "Invalid comparator 'IS NOT NULL' not one of '{'!=', '=', 'LIKE', 'ILIKE'}'"
        );
        assert_eq!(
            version_error("name = 'a' OR run_id = 'b'"),
            "Invalid clause(s) in filter string: OR"
        );
        let order_error = |entry: &str| {
            search_model_versions(versions(), "", &[entry.to_string()], 10, None)
                .unwrap_err()
                .message
        };
        assert_eq!(order_error("tags.stage"), "Invalid order_by entity: tag");
        assert!(order_error("run_id").starts_with("Invalid attribute key 'run_id' specified."));
    }

    #[test]
    fn model_versions_paginate() {
        let first = search_model_versions(versions(), "", &[], 3, None).unwrap();
        assert_eq!(labels(&first), ["churn/1", "fraud/10", "fraud/2"]);
        let second = search_model_versions(versions(), "", &[], 3, first.next_page_token.as_deref()).unwrap();
        assert_eq!(labels(&second), ["fraud/1"]);
        assert_eq!(second.next_page_token, None);
    }
}
