//! Experiment search: MLflow's `SearchExperimentsUtils`.
//!
//! Fields: `name` and `experiment_id` (strings; a list only for
//! `experiment_id`), `creation_time` and `last_update_time` (numbers), and
//! `tags.<key>` (strings; also `IS [NOT] NULL`). Prefixes are `attribute.`,
//! `tag.` and `tags.` only (not `attributes.`: MLflow rejects it here).
//! Default order: `creation_time DESC, experiment_id ASC`; when `order_by` is
//! given without `experiment_id`, `experiment_id DESC` breaks ties.

use super::compare::{
    check_comparator, list_literal, number_literal, numeric_or_str, satisfies, sort_by_keys, string_literal,
    Cmp, Lhs, Literal, SortValue, KEY_VALUE_NULLABLE, NUMERIC, STRING,
};
use super::identifier::{registry_identifier, KeyType};
use super::page_token::paginate;
use super::parser::{parse_filter, parse_order_by, ClauseListStyle, RawComparison, RawValue};
use super::runs_sql::{EntitySql, SqlClause, SqlCmp, TextTest};
use super::Page;
use crate::error::{Error, Result};
use crate::model::Experiment;

const ATTRIBUTES: &[&str] = &["name", "experiment_id", "creation_time", "last_update_time"];
const NUMERIC_ATTRIBUTES: &[&str] = &["creation_time", "last_update_time"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExperimentAttribute {
    Name,
    ExperimentId,
    CreationTime,
    LastUpdateTime,
}

impl ExperimentAttribute {
    fn from_key(key: &str) -> Self {
        match key {
            "name" => ExperimentAttribute::Name,
            "experiment_id" => ExperimentAttribute::ExperimentId,
            "creation_time" => ExperimentAttribute::CreationTime,
            "last_update_time" => ExperimentAttribute::LastUpdateTime,
            other => unreachable!("attribute key {other:?} was validated"),
        }
    }

    fn value(self, experiment: &Experiment) -> Lhs<'_> {
        match self {
            ExperimentAttribute::Name => Lhs::Str(&experiment.name),
            ExperimentAttribute::ExperimentId => Lhs::Str(&experiment.experiment_id),
            ExperimentAttribute::CreationTime => Lhs::Int(experiment.creation_time),
            ExperimentAttribute::LastUpdateTime => Lhs::Int(experiment.last_update_time),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ExperimentField {
    Attribute(ExperimentAttribute),
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
struct ExperimentClause {
    field: ExperimentField,
    cmp: Cmp,
    value: Literal,
}

/// Filters, orders and paginates experiments (already restricted to the
/// requested view type).
pub fn search_experiments(
    experiments: Vec<Experiment>,
    filter: &str,
    order_by: &[String],
    max_results: usize,
    page_token: Option<&str>,
) -> Result<Page<Experiment>> {
    let clauses = parse_filter(filter, ClauseListStyle::Plain)?
        .into_iter()
        .map(resolve)
        .collect::<Result<Vec<_>>>()?;
    let keys = order_keys(order_by)?;
    let mut experiments: Vec<Experiment> = experiments
        .into_iter()
        .filter(|e| clauses.iter().all(|c| experiment_matches(e, c)))
        .collect();
    sort_by_keys(&mut experiments, &keys, |experiment, attribute| {
        match attribute.value(experiment) {
            // Experiment ids are numeric in MLflow; order them as numbers.
            Lhs::Str(id) if *attribute == ExperimentAttribute::ExperimentId => numeric_or_str(id),
            Lhs::Str(s) => SortValue::Str(s),
            Lhs::Int(i) => SortValue::Int(i),
            Lhs::Float(f) => SortValue::Float(f),
        }
    });
    paginate(experiments, page_token, max_results)
}

/// A search's whole order, MLflow's tie-breaker included.
fn order_keys(order_by: &[String]) -> Result<Vec<(ExperimentAttribute, bool)>> {
    let mut keys = if order_by.is_empty() {
        vec![
            (ExperimentAttribute::CreationTime, false),
            (ExperimentAttribute::ExperimentId, true),
        ]
    } else {
        order_by
            .iter()
            .map(|entry| parse_experiment_order_by(entry))
            .collect::<Result<Vec<_>>>()?
    };
    if !keys
        .iter()
        .any(|(attribute, _)| *attribute == ExperimentAttribute::ExperimentId)
    {
        keys.push((ExperimentAttribute::ExperimentId, false));
    }
    Ok(keys)
}

/// What a database can do of a search of experiments by `filter` and
/// `order_by` (both validated here, with `search_experiments`' errors):
/// its clauses on the columns of `experiments` and on `experiment_tags`,
/// and its order, cut after the name (names are unique in a workspace, so
/// nothing after one decides).
pub fn experiment_search_sql(filter: &str, order_by: &[String]) -> Result<EntitySql> {
    let clauses = parse_filter(filter, ClauseListStyle::Plain)?
        .into_iter()
        .map(resolve)
        .collect::<Result<Vec<_>>>()?;
    let count = clauses.len();
    let clauses: Vec<SqlClause> = clauses.into_iter().filter_map(sql_clause).collect();
    let mut order = Vec::new();
    for (attribute, ascending) in order_keys(order_by)? {
        let column = match attribute {
            ExperimentAttribute::Name => "name",
            ExperimentAttribute::ExperimentId => "experiment_id",
            ExperimentAttribute::CreationTime => "creation_time",
            ExperimentAttribute::LastUpdateTime => "last_update_time",
        };
        order.push((column, ascending));
        if matches!(
            attribute,
            ExperimentAttribute::Name | ExperimentAttribute::ExperimentId
        ) {
            break;
        }
    }
    Ok(EntitySql {
        complete: clauses.len() == count,
        clauses,
        order,
    })
}

/// A clause a database decides exactly, if it is one.
fn sql_clause(clause: ExperimentClause) -> Option<SqlClause> {
    match clause.field {
        ExperimentField::Tag(key) => Some(SqlClause::Tag {
            key,
            test: TextTest::from_clause(clause.cmp, clause.value)?,
        }),
        ExperimentField::Attribute(attribute) => match attribute {
            ExperimentAttribute::CreationTime | ExperimentAttribute::LastUpdateTime => match clause.value {
                Literal::Number(number) => Some(SqlClause::Time {
                    column: if attribute == ExperimentAttribute::CreationTime {
                        "creation_time"
                    } else {
                        "last_update_time"
                    },
                    cmp: SqlCmp::from_cmp(clause.cmp)?,
                    value: number.integer?,
                }),
                _ => None,
            },
            ExperimentAttribute::Name | ExperimentAttribute::ExperimentId => {
                match TextTest::from_clause(clause.cmp, clause.value)? {
                    TextTest::Present | TextTest::Absent => None,
                    test => Some(SqlClause::Attribute {
                        column: if attribute == ExperimentAttribute::Name {
                            "name"
                        } else {
                            "experiment_id"
                        },
                        test,
                    }),
                }
            }
        },
    }
}

/// Whether a search by `filter` compares tags: if not, a store may give
/// [`search_experiments`] experiments without their tags and load the
/// page's whole afterwards — the page is the same.
pub fn experiment_search_needs_tags(filter: &str) -> Result<bool> {
    Ok(parse_filter(filter, ClauseListStyle::Plain)?
        .into_iter()
        .map(resolve)
        .collect::<Result<Vec<_>>>()?
        .iter()
        .any(|clause| matches!(clause.field, ExperimentField::Tag(_))))
}

/// `SearchExperimentsUtils._get_comparison` with `SearchUtils._get_value`.
fn resolve(comparison: RawComparison) -> Result<ExperimentClause> {
    let (key_type, key) = registry_identifier(&comparison.identifier, ATTRIBUTES)?;
    let is_null_check = comparison.value == RawValue::None;
    if is_null_check && key_type != KeyType::Tag {
        return Err(Error::invalid(format!(
            "IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
        )));
    }
    let numeric = key_type == KeyType::Attribute && NUMERIC_ATTRIBUTES.contains(&key.as_str());
    let raw = &comparison.value;
    let text = raw.text();
    let value = if is_null_check {
        Literal::None
    } else if key_type == KeyType::Tag {
        match string_literal(raw) {
            Some(string) => Literal::Str(string?),
            None => {
                return Err(Error::invalid(format!(
                    "Expected a quoted string value for tag (e.g. 'my-value'). Got value {text}"
                )))
            }
        }
    } else if numeric {
        Literal::Number(number_literal(raw).ok_or_else(|| {
            Error::invalid(format!(
                "Expected numeric value type for numeric attribute: {key}. Found {text}"
            ))
        })?)
    } else if let Some(string) = string_literal(raw) {
        Literal::Str(string?)
    } else if let Some(list) = list_literal(raw) {
        if key != "experiment_id" {
            return Err(Error::invalid(
                "Only ['experiment_id'] attributes support comparison with a list of quoted string values.",
            ));
        }
        Literal::List(list?)
    } else {
        return Err(Error::invalid(format!(
            "Expected a quoted string value for attributes. Got value {text}"
        )));
    };
    let allowed = match key_type {
        KeyType::Tag => KEY_VALUE_NULLABLE,
        _ if numeric => NUMERIC,
        _ => STRING,
    };
    let cmp = check_comparator(&comparison.comparator, allowed)?;
    let field = match key_type {
        KeyType::Tag => ExperimentField::Tag(key),
        _ => ExperimentField::Attribute(ExperimentAttribute::from_key(&key)),
    };
    Ok(ExperimentClause { field, cmp, value })
}

fn experiment_matches(experiment: &Experiment, clause: &ExperimentClause) -> bool {
    let lhs = match &clause.field {
        ExperimentField::Attribute(attribute) => Some(attribute.value(experiment)),
        ExperimentField::Tag(key) => experiment
            .tags
            .iter()
            .find(|t| &t.key == key)
            .map(|t| Lhs::Str(&t.value)),
    };
    satisfies(lhs, clause.cmp, &clause.value)
}

/// `SearchExperimentsUtils.parse_order_by_for_search_experiments`.
fn parse_experiment_order_by(entry: &str) -> Result<(ExperimentAttribute, bool)> {
    let (identifier, ascending) = parse_order_by(entry)?;
    match registry_identifier(identifier.trim(), ATTRIBUTES)? {
        (KeyType::Attribute, key) => Ok((ExperimentAttribute::from_key(&key), ascending)),
        (key_type, _) => Err(Error::invalid(format!(
            "Invalid order_by entity: {}",
            key_type.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LifecycleStage, Tag};

    fn experiment(id: &str, name: &str, created: i64, updated: i64, tags: &[(&str, &str)]) -> Experiment {
        Experiment {
            experiment_id: id.to_string(),
            name: name.to_string(),
            artifact_location: format!("s3://bucket/{id}"),
            lifecycle_stage: LifecycleStage::Active,
            last_update_time: updated,
            creation_time: created,
            tags: tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
        }
    }

    fn fixture() -> Vec<Experiment> {
        vec![
            experiment("0", "Default", 100, 900, &[]),
            experiment(
                "9",
                "fraud-detection",
                300,
                300,
                &[("team", "risk"), ("env", "prod")],
            ),
            experiment("10", "Fraud Model v2", 300, 500, &[("team", "Risk Ops")]),
            experiment("11", "churn", 200, 200, &[("env", "dev"), ("my key", "x")]),
        ]
    }

    fn ids(page: &Page<Experiment>) -> Vec<String> {
        page.items.iter().map(|e| e.experiment_id.clone()).collect()
    }

    fn search(filter: &str) -> Vec<String> {
        ids(&search_experiments(fixture(), filter, &[], 100, None).unwrap())
    }

    fn sorted(order_by: &[&str]) -> Vec<String> {
        let order_by: Vec<String> = order_by.iter().map(|s| s.to_string()).collect();
        ids(&search_experiments(fixture(), "", &order_by, 100, None).unwrap())
    }

    fn error(filter: &str) -> String {
        let error = search_experiments(vec![], filter, &[], 100, None).unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::InvalidParameterValue);
        error.message
    }

    #[test]
    fn default_order_is_creation_time_desc_then_id_asc() {
        // 9 and 10 share a creation time: ids ascend, numerically.
        assert_eq!(search(""), ["9", "10", "11", "0"]);
    }

    #[test]
    fn name_comparators() {
        assert_eq!(search("name = 'churn'"), ["11"]);
        assert_eq!(search("attribute.name != 'churn'"), ["9", "10", "0"]);
        assert_eq!(search("name LIKE 'fraud%'"), ["9"]);
        assert_eq!(search("name ILIKE 'fraud%'"), ["9", "10"]);
        assert_eq!(search("name ILIKE '%V_'"), ["10"]);
        assert_eq!(search("`name` = \"Default\""), ["0"]);
    }

    #[test]
    fn experiment_id_comparators_and_lists() {
        assert_eq!(search("experiment_id = '10'"), ["10"]);
        assert_eq!(search("experiment_id IN ('0', '11', '99')"), ["11", "0"]);
        assert_eq!(search("experiment_id NOT IN ('0', '11')"), ["9", "10"]);
    }

    #[test]
    fn numeric_attributes() {
        assert_eq!(search("creation_time > 200"), ["9", "10"]);
        assert_eq!(search("creation_time >= 200"), ["9", "10", "11"]);
        assert_eq!(search("creation_time < 200"), ["0"]);
        assert_eq!(search("creation_time <= 200.5"), ["11", "0"]);
        assert_eq!(search("last_update_time = 500"), ["10"]);
        assert_eq!(search("last_update_time != 500"), ["9", "11", "0"]);
    }

    #[test]
    fn tags_including_null_checks() {
        assert_eq!(search("tags.team = 'risk'"), ["9"]);
        assert_eq!(search("tag.team ILIKE 'risk%'"), ["9", "10"]);
        assert_eq!(search("tags.team LIKE 'Risk%'"), ["10"]);
        assert_eq!(search("tags.team != 'risk'"), ["10"]);
        assert_eq!(search("tags.team IS NULL"), ["11", "0"]);
        assert_eq!(search("tags.env IS NOT NULL"), ["9", "11"]);
        assert_eq!(search("tags.`my key` = 'x'"), ["11"]);
        assert_eq!(search("tags.\"my key\" IS NOT NULL"), ["11"]);
    }

    #[test]
    fn clauses_are_anded() {
        assert_eq!(search("name ILIKE '%fraud%' AND tags.env = 'prod'"), ["9"]);
        assert_eq!(search("creation_time > 100 and tags.team IS NULL"), ["11"]);
    }

    #[test]
    fn malformed_filters() {
        assert_eq!(
            error("name = 'a' OR name = 'b'"),
            "Invalid clause(s) in filter string: OR"
        );
        assert_eq!(
            error("attributes.name = 'a'"),
            "Invalid entity type 'attributes'. Valid entity types are ('attribute', 'tag', 'tags')"
        );
        assert_eq!(
            error("metrics.x > 1"),
            "Invalid entity type 'metrics'. Valid entity types are ('attribute', 'tag', 'tags')"
        );
        assert_eq!(
            error("lifecycle_stage = 'active'"),
            "Invalid attribute key 'lifecycle_stage' specified. Valid keys are '{'name', 'experiment_id', \
             'creation_time', 'last_update_time'}'"
        );
        assert_eq!(
            error("name IN ('a')"),
            "Only ['experiment_id'] attributes support comparison with a list of quoted string values."
        );
        assert_eq!(
            error("experiment_id = 1"),
            "Expected a quoted string value for attributes. Got value 1"
        );
        assert_eq!(
            error("creation_time > '5'"),
            "Expected numeric value type for numeric attribute: creation_time. Found '5'"
        );
        assert_eq!(
            error("name IS NULL"),
            "IS NULL / IS NOT NULL is only supported for tags, not for attribute 'name'"
        );
        assert_eq!(
            error("tags.x = 5"),
            "Expected a quoted string value for tag (e.g. 'my-value'). Got value 5"
        );
        assert_eq!(
            error("name > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}'"
        );
        assert_eq!(
            error("tags.x > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'}'"
        );
        assert_eq!(
            error("creation_time LIKE 5"),
            "Invalid comparator 'LIKE' not one of '{'>', '>=', '!=', '=', '<', '<='}'"
        );
    }

    #[test]
    fn order_by_with_tie_breakers() {
        assert_eq!(sorted(&["name"]), ["0", "10", "11", "9"]);
        assert_eq!(sorted(&["name DESC"]), ["9", "11", "10", "0"]);
        // Ties on creation_time break by experiment_id DESC when order_by omits it.
        assert_eq!(sorted(&["creation_time"]), ["0", "11", "10", "9"]);
        assert_eq!(sorted(&["creation_time DESC"]), ["10", "9", "11", "0"]);
        assert_eq!(
            sorted(&["creation_time DESC", "experiment_id ASC"]),
            ["9", "10", "11", "0"]
        );
        assert_eq!(sorted(&["last_update_time DESC"]), ["0", "10", "9", "11"]);
        assert_eq!(sorted(&["experiment_id"]), ["0", "9", "10", "11"]);
        assert_eq!(sorted(&["attribute.experiment_id DESC"]), ["11", "10", "9", "0"]);
    }

    #[test]
    fn malformed_order_by() {
        let message = |entry: &str| {
            search_experiments(fixture(), "", &[entry.to_string()], 10, None)
                .unwrap_err()
                .message
        };
        assert_eq!(message("tags.team"), "Invalid order_by entity: tag");
        assert!(message("lifecycle_stage").starts_with("Invalid attribute key 'lifecycle_stage' specified."));
        assert_eq!(
            message("name sideways"),
            "Invalid ordering key in order_by clause 'name sideways'."
        );
    }

    #[test]
    fn paginates() {
        let first = search_experiments(fixture(), "", &[], 3, None).unwrap();
        assert_eq!(ids(&first), ["9", "10", "11"]);
        let second = search_experiments(fixture(), "", &[], 3, first.next_page_token.as_deref()).unwrap();
        assert_eq!(ids(&second), ["0"]);
        assert_eq!(second.next_page_token, None);
    }
}
