//! Run search: MLflow's `SearchUtils` (filter, sort, paginate) as its file
//! store applies it.
//!
//! Fields: `metrics.<key>` (the latest value; numbers only), `params.<key>`
//! and `tags.<key>` (strings; also `IS [NOT] NULL`), the attributes `run_id`,
//! `run_name` (alias `` `Run Name` `` and friends), `user_id`, `status`,
//! `artifact_uri` (strings; lists only for `run_id`), `start_time` (alias
//! `created`) and `end_time` (numbers), and `datasets.name` / `.digest` /
//! `.context` (true when any of the run's dataset inputs matches).
//! Default order: `start_time` descending, then `run_id`.

use super::compare::{
    check_comparator, list_literal, number_literal, satisfies, sort_by_keys, string_literal, Cmp, Lhs,
    Literal, SortValue, KEY_VALUE_NULLABLE, NUMERIC, STRING,
};
use super::identifier::{tracking_identifier, KeyType};
use super::page_token::paginate;
use super::parser::{parse_filter, parse_order_by, ClauseListStyle, RawComparison, RawValue};
use super::Page;
use crate::error::{Error, Result};
use crate::model::Run;

/// The input tag of a dataset input that `datasets.context` compares.
const DATASET_CONTEXT_TAG: &str = "mlflow.data.context";

/// `RunInfo.get_searchable_attributes()` plus MLflow's aliases.
const SEARCH_ATTRIBUTES: &[&str] = &[
    "run_id",
    "run_name",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "artifact_uri",
    "created",
    "Created",
    "run name",
    "Run name",
    "Run Name",
];
/// Orderable: the same without the `run name` spellings.
const ORDER_BY_ATTRIBUTES: &[&str] = &[
    "run_id",
    "run_name",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "artifact_uri",
    "created",
    "Created",
];
const NUMERIC_ATTRIBUTES: &[&str] = &["start_time", "end_time", "created", "Created"];
/// Attributes that may be compared with a list (`IN`, `NOT IN`).
const LIST_ATTRIBUTES: &[&str] = &["run_id"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunAttribute {
    RunId,
    RunName,
    UserId,
    Status,
    ArtifactUri,
    StartTime,
    EndTime,
}

impl RunAttribute {
    /// Resolves a valid attribute key, translating MLflow's aliases.
    fn from_key(key: &str) -> Self {
        match key {
            "run_id" => RunAttribute::RunId,
            "run_name" | "run name" | "Run name" | "Run Name" => RunAttribute::RunName,
            "user_id" => RunAttribute::UserId,
            "status" => RunAttribute::Status,
            "artifact_uri" => RunAttribute::ArtifactUri,
            "start_time" | "created" | "Created" => RunAttribute::StartTime,
            "end_time" => RunAttribute::EndTime,
            other => unreachable!("attribute key {other:?} was validated"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DatasetField {
    Name,
    Digest,
    Context,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RunField {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(RunAttribute),
    Dataset(DatasetField),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct RunClause {
    pub(super) field: RunField,
    pub(super) cmp: Cmp,
    pub(super) value: Literal,
}

/// Parses a filter without evaluating it, for early validation.
pub fn validate_run_filter(filter: &str) -> Result<()> {
    parse_run_filter(filter).map(drop)
}

/// What a search reads of each run beyond its info: the metric, param and
/// tag keys its filter and order name, and whether it compares datasets. A
/// store may load only these to filter and order every run, then load the
/// page's runs whole: [`search_runs`] gives the same page either way.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSearchNeeds {
    pub metrics: std::collections::BTreeSet<String>,
    pub params: std::collections::BTreeSet<String>,
    pub tags: std::collections::BTreeSet<String>,
    pub datasets: bool,
}

/// The keys a search by `filter` ordered by `order_by` reads.
pub fn run_search_needs(filter: &str, order_by: &[String]) -> Result<RunSearchNeeds> {
    let mut needs = RunSearchNeeds::default();
    let fields = parse_run_filter(filter)?
        .into_iter()
        .map(|clause| clause.field)
        .chain(
            order_by
                .iter()
                .map(|entry| parse_run_order_by(entry).map(|(field, _)| field))
                .collect::<Result<Vec<_>>>()?,
        );
    for field in fields {
        match field {
            RunField::Metric(key) => drop(needs.metrics.insert(key)),
            RunField::Param(key) => drop(needs.params.insert(key)),
            RunField::Tag(key) => drop(needs.tags.insert(key)),
            RunField::Dataset(_) => needs.datasets = true,
            RunField::Attribute(_) => {}
        }
    }
    Ok(needs)
}

/// Filters, orders and paginates runs. `runs` already restricted to the
/// requested experiments and run_view_type. Run.data.metrics holds the latest
/// value per key.
pub fn search_runs(
    runs: Vec<Run>,
    filter: &str,
    order_by: &[String],
    max_results: usize,
    page_token: Option<&str>,
) -> Result<Page<Run>> {
    let clauses = parse_run_filter(filter)?;
    let mut keys = order_by
        .iter()
        .map(|entry| parse_run_order_by(entry))
        .collect::<Result<Vec<_>>>()?;
    // MLflow first sorts by start_time DESC, run_id, then (stably) by each
    // order_by entry: ties in every entry keep that order.
    keys.push((RunField::Attribute(RunAttribute::StartTime), false));
    keys.push((RunField::Attribute(RunAttribute::RunId), true));
    let mut runs: Vec<Run> = runs
        .into_iter()
        .filter(|run| clauses.iter().all(|c| run_matches(run, c)))
        .collect();
    sort_by_keys(&mut runs, &keys, sort_value);
    paginate(runs, page_token, max_results)
}

pub(super) fn parse_run_filter(filter: &str) -> Result<Vec<RunClause>> {
    parse_filter(filter, ClauseListStyle::Quoted)?
        .into_iter()
        .map(resolve)
        .collect()
}

/// Types one comparison: `SearchUtils._get_comparison` and `_get_value`, plus
/// the comparator checks MLflow makes while evaluating (`is_metric`, ...).
fn resolve(comparison: RawComparison) -> Result<RunClause> {
    let (key_type, key) = tracking_identifier(&comparison.identifier, SEARCH_ATTRIBUTES)?;
    let is_null_check = comparison.value == RawValue::None;
    if is_null_check && !matches!(key_type, KeyType::Tag | KeyType::Param) {
        return Err(Error::invalid(format!(
            "IS NULL / IS NOT NULL is only supported for tags and params, not for '{}' '{key}'",
            key_type.name()
        )));
    }
    let numeric_attribute = key_type == KeyType::Attribute && NUMERIC_ATTRIBUTES.contains(&key.as_str());
    let value = if is_null_check {
        Literal::None
    } else {
        value(key_type, &key, numeric_attribute, &comparison.value)?
    };
    let allowed = match key_type {
        KeyType::Metric => NUMERIC,
        KeyType::Param | KeyType::Tag => KEY_VALUE_NULLABLE,
        KeyType::Attribute if numeric_attribute => NUMERIC,
        KeyType::Attribute | KeyType::Dataset => STRING,
    };
    let cmp = check_comparator(&comparison.comparator, allowed)?;
    let field = match key_type {
        KeyType::Metric => RunField::Metric(key),
        KeyType::Param => RunField::Param(key),
        KeyType::Tag => RunField::Tag(key),
        KeyType::Attribute => RunField::Attribute(RunAttribute::from_key(&key)),
        KeyType::Dataset => RunField::Dataset(match key.as_str() {
            "name" => DatasetField::Name,
            "digest" => DatasetField::Digest,
            _ => DatasetField::Context,
        }),
    };
    Ok(RunClause { field, cmp, value })
}

fn value(key_type: KeyType, key: &str, numeric_attribute: bool, raw: &RawValue) -> Result<Literal> {
    let text = raw.text();
    match key_type {
        KeyType::Metric => number_literal(raw)
            .map(Literal::Number)
            .ok_or_else(|| Error::invalid(format!("Expected numeric value type for metric. Found {text}"))),
        KeyType::Param | KeyType::Tag => match string_literal(raw) {
            Some(string) => string.map(Literal::Str),
            None => Err(Error::invalid(format!(
                "Expected a quoted string value for {} (e.g. 'my-value'). Got value {text}",
                key_type.name()
            ))),
        },
        KeyType::Attribute if numeric_attribute => {
            number_literal(raw).map(Literal::Number).ok_or_else(|| {
                Error::invalid(format!(
                    "Expected numeric value type for numeric attribute: {key}. Found {text}"
                ))
            })
        }
        KeyType::Attribute => {
            if let Some(string) = string_literal(raw) {
                return string.map(Literal::Str);
            }
            match list_literal(raw) {
                Some(list) => {
                    if !LIST_ATTRIBUTES.contains(&key) {
                        return Err(Error::invalid(
                            "Only ['run_id'] attributes support comparison with a list of quoted string values.",
                        ));
                    }
                    list.map(Literal::List)
                }
                None => Err(Error::invalid(format!(
                    "Expected a quoted string value for attributes. Got value {text}"
                ))),
            }
        }
        KeyType::Dataset => match (string_literal(raw), list_literal(raw)) {
            (Some(string), _) => string.map(Literal::Str),
            (None, Some(list)) => list.map(Literal::List),
            (None, None) => Err(Error::invalid(format!(
                "Expected a quoted string value for dataset attributes. Got value {text}"
            ))),
        },
    }
}

fn attribute_value(run: &Run, attribute: RunAttribute) -> Option<Lhs<'_>> {
    let info = &run.info;
    match attribute {
        RunAttribute::RunId => Some(Lhs::Str(&info.run_id)),
        RunAttribute::RunName => Some(Lhs::Str(&info.run_name)),
        RunAttribute::UserId => Some(Lhs::Str(&info.user_id)),
        RunAttribute::Status => Some(Lhs::Str(info.status.as_str())),
        RunAttribute::ArtifactUri => Some(Lhs::Str(&info.artifact_uri)),
        RunAttribute::StartTime => info.start_time.map(Lhs::Int),
        RunAttribute::EndTime => info.end_time.map(Lhs::Int),
    }
}

/// `SearchUtils._does_run_match_clause`.
fn run_matches(run: &Run, clause: &RunClause) -> bool {
    let (cmp, value) = (clause.cmp, &clause.value);
    let lhs = match &clause.field {
        RunField::Metric(key) => run.latest_metric(key).map(|metric| Lhs::Float(metric.value)),
        RunField::Param(key) => run.param(key).map(Lhs::Str),
        RunField::Tag(key) => run.tag(key).map(Lhs::Str),
        RunField::Attribute(attribute) => attribute_value(run, *attribute),
        RunField::Dataset(field) => {
            let inputs = &run.inputs.dataset_inputs;
            return match field {
                DatasetField::Name => inputs
                    .iter()
                    .any(|input| satisfies(Some(Lhs::Str(&input.dataset.name)), cmp, value)),
                DatasetField::Digest => inputs
                    .iter()
                    .any(|input| satisfies(Some(Lhs::Str(&input.dataset.digest)), cmp, value)),
                DatasetField::Context => inputs
                    .iter()
                    .flat_map(|input| &input.tags)
                    .filter(|tag| tag.key == DATASET_CONTEXT_TAG)
                    .any(|tag| satisfies(Some(Lhs::Str(&tag.value)), cmp, value)),
            };
        }
    };
    satisfies(lhs, cmp, value)
}

/// `SearchUtils.parse_order_by_for_search_runs`.
pub(super) fn parse_run_order_by(entry: &str) -> Result<(RunField, bool)> {
    let (identifier, ascending) = parse_order_by(entry)?;
    let (key_type, key) = tracking_identifier(identifier.trim(), ORDER_BY_ATTRIBUTES)?;
    let field = match key_type {
        KeyType::Metric => RunField::Metric(key),
        KeyType::Param => RunField::Param(key),
        KeyType::Tag => RunField::Tag(key),
        KeyType::Attribute => RunField::Attribute(RunAttribute::from_key(&key)),
        KeyType::Dataset => return Err(Error::invalid("Invalid order_by entity type 'dataset'")),
    };
    Ok((field, ascending))
}

/// `SearchUtils._get_value_for_sort`: the value, or missing.
fn sort_value<'a>(run: &'a Run, field: &RunField) -> SortValue<'a> {
    let lhs = match field {
        RunField::Metric(key) => run.latest_metric(key).map(|metric| Lhs::Float(metric.value)),
        RunField::Param(key) => run.param(key).map(Lhs::Str),
        RunField::Tag(key) => run.tag(key).map(Lhs::Str),
        RunField::Attribute(attribute) => attribute_value(run, *attribute),
        RunField::Dataset(_) => None,
    };
    match lhs {
        None => SortValue::Missing,
        Some(Lhs::Str(s)) => SortValue::Str(s),
        Some(Lhs::Int(i)) => SortValue::Int(i),
        Some(Lhs::Float(f)) => SortValue::Float(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Dataset, DatasetInput, LifecycleStage, Metric, Param, RunData, RunInfo, RunStatus, Tag,
    };

    fn run(id: &str, start_time: i64) -> Run {
        Run {
            info: RunInfo {
                run_id: id.to_string(),
                run_uuid: id.to_string(),
                run_name: format!("name-{id}"),
                experiment_id: "0".to_string(),
                user_id: "alice".to_string(),
                status: RunStatus::Finished,
                start_time: Some(start_time),
                end_time: None,
                artifact_uri: format!("s3://bucket/{id}/artifacts"),
                lifecycle_stage: LifecycleStage::Active,
            },
            data: RunData::default(),
            inputs: Default::default(),
            outputs: Default::default(),
        }
    }

    fn metric(run: Run, key: &str, value: f64) -> Run {
        let mut run = run;
        run.data.metrics.push(Metric {
            key: key.to_string(),
            value,
            timestamp: 0,
            step: 0,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        });
        run
    }

    fn param(run: Run, key: &str, value: &str) -> Run {
        let mut run = run;
        run.data.params.push(Param {
            key: key.to_string(),
            value: value.to_string(),
        });
        run
    }

    fn tag(run: Run, key: &str, value: &str) -> Run {
        let mut run = run;
        run.data.tags.push(Tag::new(key, value));
        run
    }

    fn dataset(run: Run, name: &str, digest: &str, context: Option<&str>) -> Run {
        let mut run = run;
        run.inputs.dataset_inputs.push(DatasetInput {
            tags: context
                .map(|c| vec![Tag::new(DATASET_CONTEXT_TAG, c)])
                .unwrap_or_default(),
            dataset: Dataset {
                name: name.to_string(),
                digest: digest.to_string(),
                source_type: "local".to_string(),
                source: "file:///data".to_string(),
                schema: None,
                profile: None,
            },
        });
        run
    }

    /// Four runs covering metrics (including NaN and a missing one), params,
    /// tags, statuses, end times and datasets.
    fn fixture() -> Vec<Run> {
        let a = tag(
            param(
                metric(metric(run("a", 100), "acc", 0.9), "loss", 0.1),
                "lr",
                "0.01",
            ),
            "team",
            "ml",
        );
        let a = dataset(a, "train-set", "d1", Some("training"));
        let mut b = tag(
            param(metric(run("b", 200), "acc", 0.5), "lr", "0.1"),
            "team",
            "ML-Ops",
        );
        b.info.status = RunStatus::Failed;
        b.info.end_time = Some(250);
        b.info.user_id = "bob".to_string();
        let b = dataset(
            dataset(b, "eval-set", "d2", Some("evaluation")),
            "train-set",
            "d3",
            None,
        );
        let c = tag(metric(run("c", 300), "acc", f64::NAN), "my key", "spaced");
        let mut d = param(run("d", 400), "lr", "0.01");
        d.info.status = RunStatus::Running;
        d.info.run_name = "Special Run".to_string();
        vec![a, b, c, d]
    }

    fn ids(page: &Page<Run>) -> Vec<&str> {
        page.items.iter().map(|r| r.info.run_id.as_str()).collect()
    }

    fn search(filter: &str) -> Vec<String> {
        let page = search_runs(fixture(), filter, &[], 100, None).unwrap();
        ids(&page).into_iter().map(String::from).collect()
    }

    fn sorted(order_by: &[&str]) -> Vec<String> {
        let order_by: Vec<String> = order_by.iter().map(|s| s.to_string()).collect();
        let page = search_runs(fixture(), "", &order_by, 100, None).unwrap();
        ids(&page).into_iter().map(String::from).collect()
    }

    fn error(filter: &str) -> String {
        let error = search_runs(fixture(), filter, &[], 100, None).unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::InvalidParameterValue);
        // Validation alone reports the same error.
        assert_eq!(validate_run_filter(filter).unwrap_err(), error);
        error.message
    }

    #[test]
    fn empty_filter_returns_all_in_default_order() {
        assert_eq!(search(""), ["d", "c", "b", "a"]);
    }

    #[test]
    fn metric_comparators() {
        assert_eq!(search("metrics.acc > 0.5"), ["a"]);
        assert_eq!(search("metrics.acc >= 0.5"), ["b", "a"]);
        assert_eq!(search("metrics.acc < 0.9"), ["b"]);
        assert_eq!(search("metrics.acc <= 0.9"), ["b", "a"]);
        assert_eq!(search("metrics.acc = 0.5"), ["b"]);
        // NaN differs from everything; a run without the metric never matches.
        assert_eq!(search("metrics.acc != 0.5"), ["c", "a"]);
        assert_eq!(search("metric.loss < 1"), ["a"]);
        assert_eq!(search("metrics.acc > -1e3"), ["b", "a"]);
        assert_eq!(search("metrics.acc > .6"), ["a"]);
    }

    #[test]
    fn param_and_tag_comparators() {
        assert_eq!(search("params.lr = '0.01'"), ["d", "a"]);
        assert_eq!(search("params.lr != '0.01'"), ["b"]);
        assert_eq!(search("param.lr LIKE '0.0%'"), ["d", "a"]);
        assert_eq!(search("parameters.lr like '0._1'"), ["d", "a"]);
        assert_eq!(search("tags.team = 'ml'"), ["a"]);
        assert_eq!(search("tags.team LIKE 'ml%'"), ["a"]);
        assert_eq!(search("tags.team ILIKE 'ml%'"), ["b", "a"]);
        assert_eq!(search("tags.team ilike '%OPS'"), ["b"]);
        assert_eq!(search("tag.team != 'ml'"), ["b"]);
        assert_eq!(search("tags.\"team\" = \"ml\""), ["a"]);
    }

    #[test]
    fn is_null_and_is_not_null_for_tags_and_params() {
        assert_eq!(search("tags.team IS NULL"), ["d", "c"]);
        assert_eq!(search("tags.team IS NOT NULL"), ["b", "a"]);
        assert_eq!(search("params.lr is null"), ["c"]);
        assert_eq!(search("params.lr is not null AND tags.team IS NULL"), ["d"]);
    }

    #[test]
    fn backquoted_and_quoted_keys() {
        assert_eq!(search("tags.`my key` = 'spaced'"), ["c"]);
        assert_eq!(search("tags.\"my key\" = 'spaced'"), ["c"]);
        assert_eq!(search("`tags`.`my key` LIKE 'sp%'"), ["c"]);
    }

    #[test]
    fn string_attributes() {
        assert_eq!(search("attributes.status = 'FAILED'"), ["b"]);
        assert_eq!(search("status != 'FINISHED'"), ["d", "b"]);
        assert_eq!(search("attribute.user_id = 'bob'"), ["b"]);
        assert_eq!(search("attr.run_name LIKE 'name-%'"), ["c", "b", "a"]);
        assert_eq!(search("`Run Name` = 'Special Run'"), ["d"]);
        assert_eq!(search("attributes.`run name` ILIKE 'special%'"), ["d"]);
        assert_eq!(search("run.artifact_uri LIKE '%/b/%'"), ["b"]);
        assert_eq!(search("run_id IN ('a', 'c', 'zzz')"), ["c", "a"]);
        assert_eq!(search("attributes.run_id NOT IN ('a', \"c\")"), ["d", "b"]);
        assert_eq!(search("run_id = 'b'"), ["b"]);
    }

    #[test]
    fn numeric_attributes() {
        assert_eq!(search("attributes.start_time > 200"), ["d", "c"]);
        assert_eq!(search("start_time >= 200"), ["d", "c", "b"]);
        assert_eq!(search("created < 200"), ["a"]);
        assert_eq!(search("Created = 300"), ["c"]);
        assert_eq!(search("start_time != 300"), ["d", "b", "a"]);
        assert_eq!(search("start_time <= 150.5"), ["a"]);
        // Only b has an end time; the others do not match.
        assert_eq!(search("end_time > 0"), ["b"]);
    }

    #[test]
    fn dataset_fields_match_any_input() {
        assert_eq!(search("datasets.name = 'train-set'"), ["b", "a"]);
        assert_eq!(search("dataset.name = 'eval-set'"), ["b"]);
        assert_eq!(search("datasets.digest IN ('d1', 'd2')"), ["b", "a"]);
        assert_eq!(search("datasets.context = 'training'"), ["a"]);
        assert_eq!(search("datasets.context LIKE '%ion'"), ["b"]);
        assert_eq!(search("datasets.context LIKE '%n%'"), ["b", "a"]);
        assert_eq!(search("datasets.name NOT IN ('train-set')"), ["b"]);
        assert_eq!(search("datasets.name != 'nothing'"), ["b", "a"]);
    }

    #[test]
    fn clauses_are_anded() {
        assert_eq!(
            search("metrics.acc > 0 and params.lr = '0.1' AND tags.team ILIKE 'ml%'"),
            ["b"]
        );
        assert_eq!(
            search("metrics.acc > 0.6 AND params.lr = '0.1'"),
            Vec::<String>::new()
        );
        assert_eq!(
            search("params.lr = '0.01' AND start_time > 100 AND status = 'RUNNING'"),
            ["d"]
        );
    }

    #[test]
    fn malformed_filters_are_invalid_parameter_values() {
        assert_eq!(
            error("params.lr = '0.01' OR tags.team = 'ml'"),
            "Invalid clause(s) in filter string: 'OR'"
        );
        assert_eq!(
            error("foo.bar = 'x'"),
            "Invalid entity type 'foo'. Valid values are ['metric', 'parameter', 'tag', 'attribute', 'dataset']"
        );
        assert_eq!(
            error("attributes.lifecycle_stage = 'active'"),
            "Invalid attribute key 'lifecycle_stage' specified. Valid keys are '{'run_id', 'run_name', 'user_id', \
             'status', 'start_time', 'end_time', 'artifact_uri', 'created', 'Created', 'run name', 'Run name', \
             'Run Name'}'"
        );
        assert_eq!(
            error("metrics.acc = '1'"),
            "Expected numeric value type for metric. Found '1'"
        );
        assert_eq!(
            error("metrics.acc = NaN"),
            "Expected numeric value type for metric. Found NaN"
        );
        assert_eq!(
            error("metrics.acc = 1e"),
            "Expected numeric value type for metric. Found 1e"
        );
        assert_eq!(
            error("tags.team = 1"),
            "Expected a quoted string value for tag (e.g. 'my-value'). Got value 1"
        );
        assert_eq!(
            error("params.lr = 1"),
            "Expected a quoted string value for parameter (e.g. 'my-value'). Got value 1"
        );
        assert_eq!(
            error("tags.team = ml"),
            "Parameter value is either not quoted or unidentified quote types used for string value ml. Use either \
             single or double quotes."
        );
        assert_eq!(
            error("start_time > '5'"),
            "Expected numeric value type for numeric attribute: start_time. Found '5'"
        );
        assert_eq!(
            error("run_name = 5"),
            "Expected a quoted string value for attributes. Got value 5"
        );
        assert_eq!(
            error("status IN ('FINISHED')"),
            "Only ['run_id'] attributes support comparison with a list of quoted string values."
        );
        assert_eq!(
            error("metrics.acc IS NULL"),
            "IS NULL / IS NOT NULL is only supported for tags and params, not for 'metric' 'acc'"
        );
        assert_eq!(
            error("end_time IS NULL"),
            "IS NULL / IS NOT NULL is only supported for tags and params, not for 'attribute' 'end_time'"
        );
        assert_eq!(
            error("datasets.foo = 'x'"),
            "Invalid dataset key 'foo' specified. Valid keys are '{'name', 'digest', 'context'}'"
        );
        assert_eq!(
            error("datasets.name IS NULL"),
            "IS NULL / IS NOT NULL is only supported for tags and params, not for 'dataset' 'name'"
        );
    }

    #[test]
    fn unsupported_comparators_are_rejected_even_without_candidates() {
        let message = |filter: &str| search_runs(vec![], filter, &[], 10, None).unwrap_err().message;
        assert_eq!(
            message("params.lr > '0.1'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'}'"
        );
        assert_eq!(
            message("metrics.acc LIKE 1"),
            "Invalid comparator 'LIKE' not one of '{'>', '>=', '!=', '=', '<', '<='}'"
        );
        assert_eq!(
            message("metrics.acc == 1"),
            "Invalid comparator '==' not one of '{'>', '>=', '!=', '=', '<', '<='}'"
        );
        assert_eq!(
            message("metrics.acc <> 1"),
            "Invalid comparator '<>' not one of '{'>', '>=', '!=', '=', '<', '<='}'"
        );
        assert_eq!(
            message("tags.team NOT LIKE 'x'"),
            "Invalid comparator 'NOT LIKE' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'}'"
        );
        assert_eq!(
            message("run_name > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}'"
        );
        assert_eq!(
            message("start_time LIKE 5"),
            "Invalid comparator 'LIKE' not one of '{'>', '>=', '!=', '=', '<', '<='}'"
        );
        assert_eq!(
            message("datasets.name > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}'"
        );
        assert!(validate_run_filter("metrics.acc > 1 AND tags.x IS NULL AND run_id IN ('a')").is_ok());
    }

    #[test]
    fn order_by_metric_with_nan_and_missing_last() {
        // acc: a=0.9, b=0.5, c=NaN, d missing.
        assert_eq!(sorted(&["metrics.acc"]), ["b", "a", "c", "d"]);
        assert_eq!(sorted(&["metrics.acc ASC"]), ["b", "a", "c", "d"]);
        assert_eq!(sorted(&["metrics.acc DESC"]), ["a", "b", "c", "d"]);
        assert_eq!(sorted(&["metrics.`acc` desc"]), ["a", "b", "c", "d"]);
    }

    #[test]
    fn order_by_ties_fall_back_to_later_keys_then_default_order() {
        // lr: a=0.01, b=0.1, d=0.01, c missing. Ties (a, d) keep start_time DESC.
        assert_eq!(sorted(&["params.lr"]), ["d", "a", "b", "c"]);
        assert_eq!(sorted(&["params.lr DESC"]), ["b", "d", "a", "c"]);
        // A second key breaks the tie.
        assert_eq!(
            sorted(&["params.lr", "attributes.start_time ASC"]),
            ["a", "d", "b", "c"]
        );
        assert_eq!(sorted(&["status", "metrics.acc DESC"]), ["b", "a", "c", "d"]);
    }

    #[test]
    fn order_by_attributes_and_tags() {
        assert_eq!(sorted(&["start_time"]), ["a", "b", "c", "d"]);
        assert_eq!(sorted(&["created DESC"]), ["d", "c", "b", "a"]);
        assert_eq!(sorted(&["attribute.run_name"]), ["d", "a", "b", "c"]);
        // Only b has an end time; missing values go last either way.
        assert_eq!(sorted(&["end_time DESC"]), ["b", "d", "c", "a"]);
        assert_eq!(sorted(&["end_time"]), ["b", "d", "c", "a"]);
        assert_eq!(sorted(&["tags.`my key`"]), ["c", "d", "b", "a"]);
        assert_eq!(sorted(&["tags.team"]), ["b", "a", "d", "c"]);
    }

    #[test]
    fn default_order_breaks_start_time_ties_by_run_id() {
        let runs = vec![run("z", 5), run("m", 5), run("a", 5), run("q", 9), run("none", 0)];
        let mut runs = runs;
        runs[4].info.start_time = None;
        let page = search_runs(runs, "", &[], 10, None).unwrap();
        assert_eq!(ids(&page), ["q", "a", "m", "z", "none"]);
    }

    #[test]
    fn malformed_order_by_is_invalid() {
        let message = |entry: &str| {
            search_runs(fixture(), "", &[entry.to_string()], 10, None)
                .unwrap_err()
                .message
        };
        assert_eq!(
            message("metrics.acc DOWN"),
            "Invalid ordering key in order_by clause 'metrics.acc DOWN'."
        );
        assert_eq!(
            message("metrics.acc ASC DESC"),
            "Invalid order_by clause 'metrics.acc ASC DESC'. Could not be parsed."
        );
        assert_eq!(
            message("foo.bar"),
            "Invalid entity type 'foo'. Valid values are ['metric', 'parameter', 'tag', 'attribute', 'dataset']"
        );
        assert!(message("`Run Name`").starts_with("Invalid attribute key 'Run Name' specified."));
        assert!(message("experiment_id").starts_with("Invalid attribute key 'experiment_id' specified."));
        assert_eq!(message("datasets.name"), "Invalid order_by entity type 'dataset'");
    }

    #[test]
    fn paginates_over_several_pages() {
        let runs: Vec<Run> = (0..7).map(|i| run(&format!("r{i}"), i)).collect();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = search_runs(runs.clone(), "", &[], 3, token.as_deref()).unwrap();
            pages += 1;
            seen.extend(ids(&page).into_iter().map(String::from));
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]);
        // The token is MLflow's, pointing at the next offset.
        let first = search_runs(runs.clone(), "", &[], 3, None).unwrap();
        assert_eq!(first.next_page_token.as_deref().map(decode_token), Some(3));
        assert_eq!(
            search_runs(runs, "", &[], 3, Some("garbage!"))
                .unwrap_err()
                .message,
            "Invalid page token, could not base64-decode"
        );
    }

    fn decode_token(token: &str) -> usize {
        crate::search::decode_page_token(token).unwrap()
    }

    #[test]
    fn filtering_happens_before_pagination() {
        let page = search_runs(
            fixture(),
            "params.lr = '0.01'",
            &["start_time".to_string()],
            1,
            None,
        )
        .unwrap();
        assert_eq!(ids(&page), ["a"]);
        let next = search_runs(
            fixture(),
            "params.lr = '0.01'",
            &["start_time".to_string()],
            1,
            page.next_page_token.as_deref(),
        )
        .unwrap();
        assert_eq!(ids(&next), ["d"]);
        assert_eq!(next.next_page_token, None);
    }
}
