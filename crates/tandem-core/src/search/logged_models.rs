//! Logged model search: MLflow's `SearchLoggedModelsUtils`, with the
//! structured `order_by` of the SearchLoggedModels API.
//!
//! Fields: `metrics.<key>` (numbers), `params.<key>` and `tags.<key>`
//! (strings; no IS NULL), the string attributes `name`, `model_id`,
//! `model_type`, `status` (`READY`, `PENDING`, `FAILED`, `UNSPECIFIED`, as
//! MLflow's entity spells it) and `source_run_id` (lists allowed for all), and
//! the numeric attributes `creation_timestamp` / `creation_time` and
//! `last_updated_timestamp` / `last_updated_time`.
//!
//! A metric clause holds when any of the model's values for that key (on one
//! of the `datasets`, when given) satisfies it, as in MLflow's SQL store. With
//! `datasets` but no metric clause, only models with some metric on one of the
//! datasets are returned. Deleted models are never returned.
//! Default order: `creation_timestamp` descending, then `model_id`.

use super::compare::{
    check_comparator, list_literal, number_literal, satisfies, sort_by_keys, string_literal, Cmp, Lhs,
    Literal, SortValue, KEY_VALUE, NUMERIC, STRING,
};
use super::identifier::{tracking_identifier, KeyType};
use super::page_token::paginate;
use super::parser::{parse_filter, ClauseListStyle, RawComparison, RawValue};
use super::{LoggedModelDataset, LoggedModelOrder, Page};
use crate::error::{Error, Result};
use crate::model::{LifecycleStage, LoggedModel, LoggedModelStatus, Metric};

const ATTRIBUTES: &[&str] = &[
    "name",
    "model_id",
    "model_type",
    "status",
    "source_run_id",
    "creation_timestamp",
    "creation_time",
    "last_updated_timestamp",
    "last_updated_time",
];
const NUMERIC_ATTRIBUTES: &[&str] = &[
    "creation_timestamp",
    "creation_time",
    "last_updated_timestamp",
    "last_updated_time",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelAttribute {
    Name,
    ModelId,
    ModelType,
    Status,
    SourceRunId,
    CreationTimestamp,
    LastUpdatedTimestamp,
}

impl ModelAttribute {
    fn from_key(key: &str) -> Self {
        match key {
            "name" => ModelAttribute::Name,
            "model_id" => ModelAttribute::ModelId,
            "model_type" => ModelAttribute::ModelType,
            "status" => ModelAttribute::Status,
            "source_run_id" => ModelAttribute::SourceRunId,
            "creation_timestamp" | "creation_time" => ModelAttribute::CreationTimestamp,
            "last_updated_timestamp" | "last_updated_time" => ModelAttribute::LastUpdatedTimestamp,
            other => unreachable!("attribute key {other:?} was validated"),
        }
    }

    fn value(self, model: &LoggedModel) -> Option<Lhs<'_>> {
        let info = &model.info;
        match self {
            ModelAttribute::Name => Some(Lhs::Str(&info.name)),
            ModelAttribute::ModelId => Some(Lhs::Str(&info.model_id)),
            ModelAttribute::ModelType => info.model_type.as_deref().map(Lhs::Str),
            ModelAttribute::Status => Some(Lhs::Str(status_name(info.status))),
            ModelAttribute::SourceRunId => info.source_run_id.as_deref().map(Lhs::Str),
            ModelAttribute::CreationTimestamp => Some(Lhs::Int(info.creation_timestamp_ms)),
            ModelAttribute::LastUpdatedTimestamp => Some(Lhs::Int(info.last_updated_timestamp_ms)),
        }
    }
}

/// The status as MLflow's `LoggedModelStatus` entity spells it.
fn status_name(status: LoggedModelStatus) -> &'static str {
    match status {
        LoggedModelStatus::LoggedModelStatusUnspecified => "UNSPECIFIED",
        LoggedModelStatus::LoggedModelPending => "PENDING",
        LoggedModelStatus::LoggedModelReady => "READY",
        LoggedModelStatus::LoggedModelUploadFailed => "FAILED",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelField {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(ModelAttribute),
}

#[derive(Debug, Clone, PartialEq)]
struct ModelClause {
    field: ModelField,
    cmp: Cmp,
    value: Literal,
}

/// A validated `order_by` entry.
#[derive(Debug, Clone, PartialEq)]
enum SortField<'o> {
    Attribute(ModelAttribute),
    Metric {
        key: &'o str,
        dataset_name: Option<&'o str>,
        dataset_digest: Option<&'o str>,
    },
}

/// Filters, orders and paginates logged models (already restricted to the
/// requested experiments). `datasets` restricts which metric values the
/// filter's metric clauses look at.
pub fn search_logged_models(
    models: Vec<LoggedModel>,
    filter: &str,
    datasets: &[LoggedModelDataset],
    order_by: &[LoggedModelOrder],
    max_results: usize,
    page_token: Option<&str>,
) -> Result<Page<LoggedModel>> {
    if datasets.iter().any(|d| d.dataset_name.is_empty()) {
        return Err(Error::invalid(
            "`dataset_name` in the `datasets` clause must be specified.",
        ));
    }
    let clauses = parse_filter(filter, ClauseListStyle::Quoted)?
        .into_iter()
        .map(resolve)
        .collect::<Result<Vec<_>>>()?;
    let mut keys = order_by.iter().map(parse_order).collect::<Result<Vec<_>>>()?;
    if !keys
        .iter()
        .any(|(field, _)| *field == SortField::Attribute(ModelAttribute::CreationTimestamp))
    {
        keys.push((SortField::Attribute(ModelAttribute::CreationTimestamp), false));
    }
    if !keys
        .iter()
        .any(|(field, _)| *field == SortField::Attribute(ModelAttribute::ModelId))
    {
        keys.push((SortField::Attribute(ModelAttribute::ModelId), true));
    }
    let has_metric_clause = clauses.iter().any(|c| matches!(c.field, ModelField::Metric(_)));
    let mut models: Vec<LoggedModel> = models
        .into_iter()
        .filter(|m| m.info.lifecycle_stage != LifecycleStage::Deleted)
        .filter(|m| {
            has_metric_clause
                || datasets.is_empty()
                || m.data
                    .metrics
                    .iter()
                    .any(|metric| on_any_dataset(metric, datasets))
        })
        .filter(|m| clauses.iter().all(|c| model_matches(m, c, datasets)))
        .collect();
    sort_by_keys(&mut models, &keys, sort_value);
    paginate(models, page_token, max_results)
}

/// `SearchUtils._is_metric_on_dataset`, for any of `datasets`; true when no
/// datasets are given.
fn on_any_dataset(metric: &Metric, datasets: &[LoggedModelDataset]) -> bool {
    datasets.is_empty()
        || datasets.iter().any(|dataset| {
            metric.dataset_name.as_deref() == Some(dataset.dataset_name.as_str())
                && (dataset.dataset_digest.is_none() || metric.dataset_digest == dataset.dataset_digest)
        })
}

/// `SearchUtils._get_comparison` with `SearchLoggedModelsUtils`' fields, and
/// the comparator checks MLflow makes while evaluating.
fn resolve(comparison: RawComparison) -> Result<ModelClause> {
    let (key_type, key) = tracking_identifier(&comparison.identifier, ATTRIBUTES)?;
    if key_type == KeyType::Dataset {
        return Err(Error::invalid(
            "Invalid entity type: 'datasets'. Expected one of ['attributes', 'metrics', 'params', 'tags'].",
        ));
    }
    let raw = &comparison.value;
    let text = raw.text();
    let is_null_check = *raw == RawValue::None;
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
        match key_type {
            KeyType::Metric => Literal::Number(number_literal(raw).ok_or_else(|| {
                Error::invalid(format!("Expected numeric value type for metric. Found {text}"))
            })?),
            KeyType::Param | KeyType::Tag => match string_literal(raw) {
                Some(string) => Literal::Str(string?),
                None => {
                    return Err(Error::invalid(format!(
                        "Expected a quoted string value for {} (e.g. 'my-value'). Got value {text}",
                        key_type.name()
                    )))
                }
            },
            _ if numeric_attribute => Literal::Number(number_literal(raw).ok_or_else(|| {
                Error::invalid(format!(
                    "Expected numeric value type for numeric attribute: {key}. Found {text}"
                ))
            })?),
            _ => match (string_literal(raw), list_literal(raw)) {
                (Some(string), _) => Literal::Str(string?),
                (None, Some(list)) => Literal::List(list?),
                (None, None) => {
                    return Err(Error::invalid(format!(
                        "Expected a quoted string value for attributes. Got value {text}"
                    )))
                }
            },
        }
    };
    let allowed = match key_type {
        KeyType::Metric => NUMERIC,
        KeyType::Param | KeyType::Tag => KEY_VALUE,
        _ if numeric_attribute => NUMERIC,
        _ => STRING,
    };
    let cmp = check_comparator(&comparison.comparator, allowed)?;
    let field = match key_type {
        KeyType::Metric => ModelField::Metric(key),
        KeyType::Param => ModelField::Param(key),
        KeyType::Tag => ModelField::Tag(key),
        _ => ModelField::Attribute(ModelAttribute::from_key(&key)),
    };
    Ok(ModelClause { field, cmp, value })
}

fn model_matches(model: &LoggedModel, clause: &ModelClause, datasets: &[LoggedModelDataset]) -> bool {
    let (cmp, value) = (clause.cmp, &clause.value);
    let lhs = match &clause.field {
        ModelField::Metric(key) => {
            return model
                .data
                .metrics
                .iter()
                .filter(|metric| &metric.key == key && on_any_dataset(metric, datasets))
                .any(|metric| satisfies(Some(Lhs::Float(metric.value)), cmp, value));
        }
        ModelField::Param(key) => model
            .data
            .params
            .iter()
            .find(|p| &p.key == key)
            .map(|p| Lhs::Str(&p.value)),
        ModelField::Tag(key) => model
            .info
            .tags
            .iter()
            .find(|t| &t.key == key)
            .map(|t| Lhs::Str(&t.value)),
        ModelField::Attribute(attribute) => attribute.value(model),
    };
    satisfies(lhs, cmp, value)
}

/// `SearchLoggedModelsUtils.parse_order_by_for_logged_models`.
fn parse_order(order: &LoggedModelOrder) -> Result<(SortField<'_>, bool)> {
    let field_name = order.field_name.as_str();
    if field_name.is_empty() {
        return Err(Error::invalid(
            "`field_name` in the `order_by` clause must be specified.",
        ));
    }
    if order.dataset_digest.is_some() && order.dataset_name.is_none() {
        return Err(Error::invalid(
            "`dataset_digest` can only be specified if `dataset_name` is also specified.",
        ));
    }
    let field = match field_name.split_once('.') {
        Some(("metrics", key)) => SortField::Metric {
            key,
            dataset_name: order.dataset_name.as_deref(),
            dataset_digest: order.dataset_digest.as_deref(),
        },
        Some((entity, _)) => {
            return Err(Error::invalid(format!(
                "Invalid order by field name: {entity}, only `metrics.<name>` is allowed."
            )))
        }
        None => {
            let field_name = field_name.trim();
            if !ATTRIBUTES.contains(&field_name) {
                return Err(Error::invalid(format!(
                    "Invalid order by field name: {field_name}."
                )));
            }
            SortField::Attribute(ModelAttribute::from_key(field_name))
        }
    };
    Ok((field, order.ascending))
}

/// The latest value (by timestamp, then step) of the metric on the ordered
/// dataset, or an attribute's value.
fn sort_value<'a>(model: &'a LoggedModel, field: &SortField<'_>) -> SortValue<'a> {
    let lhs = match field {
        SortField::Metric {
            key,
            dataset_name,
            dataset_digest,
        } => model
            .data
            .metrics
            .iter()
            .filter(|m| {
                m.key == *key
                    && dataset_name.is_none_or(|name| m.dataset_name.as_deref() == Some(name))
                    && dataset_digest.is_none_or(|digest| m.dataset_digest.as_deref() == Some(digest))
            })
            .max_by_key(|m| (m.timestamp, m.step))
            .map(|m| Lhs::Float(m.value)),
        SortField::Attribute(attribute) => attribute.value(model),
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
    use crate::model::{LoggedModelData, LoggedModelInfo, Param, Tag};

    fn logged_model(id: &str, name: &str, created: i64) -> LoggedModel {
        LoggedModel {
            info: LoggedModelInfo {
                model_id: id.to_string(),
                experiment_id: "1".to_string(),
                name: name.to_string(),
                creation_timestamp_ms: created,
                last_updated_timestamp_ms: created + 5,
                artifact_uri: format!("s3://bucket/models/{id}"),
                status: LoggedModelStatus::LoggedModelReady,
                creator_id: String::new(),
                model_type: None,
                source_run_id: None,
                status_message: None,
                tags: vec![],
                registrations: vec![],
                lifecycle_stage: LifecycleStage::Active,
            },
            data: LoggedModelData::default(),
        }
    }

    fn metric(key: &str, value: f64, timestamp: i64, dataset: Option<(&str, &str)>) -> Metric {
        Metric {
            key: key.to_string(),
            value,
            timestamp,
            step: 0,
            dataset_name: dataset.map(|(name, _)| name.to_string()),
            dataset_digest: dataset.map(|(_, digest)| digest.to_string()),
            model_id: None,
            run_id: None,
        }
    }

    /// m-a: acc 0.8 on eval/e1 and 0.6 on train/t1; m-b: acc 0.9 (no dataset)
    /// and NaN loss; m-c: no metrics, pending; m-d: deleted.
    fn fixture() -> Vec<LoggedModel> {
        let mut a = logged_model("m-a", "classifier", 100);
        a.info.model_type = Some("sklearn".to_string());
        a.info.source_run_id = Some("run-1".to_string());
        a.info.tags = vec![Tag::new("team", "ml")];
        a.data.params = vec![Param {
            key: "alpha".to_string(),
            value: "0.5".to_string(),
        }];
        a.data.metrics = vec![
            metric("acc", 0.8, 10, Some(("eval", "e1"))),
            metric("acc", 0.6, 20, Some(("train", "t1"))),
        ];
        let mut b = logged_model("m-b", "Classifier-2", 200);
        b.info.tags = vec![Tag::new("team", "ML Ops")];
        b.data.params = vec![Param {
            key: "alpha".to_string(),
            value: "0.1".to_string(),
        }];
        b.data.metrics = vec![metric("acc", 0.9, 10, None), metric("loss", f64::NAN, 10, None)];
        let mut c = logged_model("m-c", "regressor", 200);
        c.info.status = LoggedModelStatus::LoggedModelPending;
        c.info.source_run_id = Some("run-2".to_string());
        let mut d = logged_model("m-d", "deleted", 300);
        d.info.lifecycle_stage = LifecycleStage::Deleted;
        vec![a, b, c, d]
    }

    fn ids(page: &Page<LoggedModel>) -> Vec<String> {
        page.items.iter().map(|m| m.info.model_id.clone()).collect()
    }

    fn search(filter: &str) -> Vec<String> {
        ids(&search_logged_models(fixture(), filter, &[], &[], 100, None).unwrap())
    }

    fn search_on(filter: &str, datasets: &[(&str, Option<&str>)]) -> Vec<String> {
        let datasets: Vec<LoggedModelDataset> = datasets
            .iter()
            .map(|(name, digest)| LoggedModelDataset {
                dataset_name: name.to_string(),
                dataset_digest: digest.map(String::from),
            })
            .collect();
        ids(&search_logged_models(fixture(), filter, &datasets, &[], 100, None).unwrap())
    }

    fn order(field_name: &str, ascending: bool) -> LoggedModelOrder {
        LoggedModelOrder {
            field_name: field_name.to_string(),
            ascending,
            dataset_name: None,
            dataset_digest: None,
        }
    }

    fn sorted(order_by: &[LoggedModelOrder]) -> Vec<String> {
        ids(&search_logged_models(fixture(), "", &[], order_by, 100, None).unwrap())
    }

    fn error(filter: &str) -> String {
        let error = search_logged_models(vec![], filter, &[], &[], 100, None).unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::InvalidParameterValue);
        error.message
    }

    #[test]
    fn default_order_is_creation_desc_then_model_id_and_hides_deleted() {
        assert_eq!(search(""), ["m-b", "m-c", "m-a"]);
    }

    #[test]
    fn string_attributes() {
        assert_eq!(search("name = 'classifier'"), ["m-a"]);
        assert_eq!(search("name != 'classifier'"), ["m-b", "m-c"]);
        assert_eq!(search("name LIKE 'class%'"), ["m-a"]);
        assert_eq!(search("name ILIKE 'class%'"), ["m-b", "m-a"]);
        assert_eq!(search("model_id IN ('m-a', 'm-c', 'm-d')"), ["m-c", "m-a"]);
        assert_eq!(search("attributes.model_id NOT IN ('m-a')"), ["m-b", "m-c"]);
        assert_eq!(search("status = 'READY'"), ["m-b", "m-a"]);
        assert_eq!(search("status = 'PENDING'"), ["m-c"]);
        assert_eq!(search("source_run_id = 'run-1'"), ["m-a"]);
        // Models without a source run or model type never match.
        assert_eq!(search("source_run_id != 'run-1'"), ["m-c"]);
        assert_eq!(search("model_type = 'sklearn'"), ["m-a"]);
    }

    #[test]
    fn numeric_attributes() {
        assert_eq!(search("creation_timestamp > 100"), ["m-b", "m-c"]);
        assert_eq!(search("creation_time <= 100"), ["m-a"]);
        assert_eq!(search("last_updated_timestamp = 205"), ["m-b", "m-c"]);
        assert_eq!(search("last_updated_time != 205"), ["m-a"]);
        assert_eq!(
            search("creation_timestamp >= 200 AND creation_timestamp < 201"),
            ["m-b", "m-c"]
        );
    }

    #[test]
    fn params_tags_and_metrics() {
        assert_eq!(search("params.alpha = '0.5'"), ["m-a"]);
        assert_eq!(search("params.alpha LIKE '0.%'"), ["m-b", "m-a"]);
        assert_eq!(search("tags.team ILIKE 'ml%'"), ["m-b", "m-a"]);
        assert_eq!(search("tags.team != 'ml'"), ["m-b"]);
        // Any value of the metric may satisfy the clause.
        assert_eq!(search("metrics.acc > 0.85"), ["m-b"]);
        assert_eq!(search("metrics.acc < 0.7"), ["m-a"]);
        assert_eq!(search("metrics.acc >= 0.8"), ["m-b", "m-a"]);
        assert_eq!(search("metrics.loss = 0"), Vec::<String>::new());
        assert_eq!(search("metrics.loss != 0"), ["m-b"]);
        assert_eq!(
            search("metrics.acc > 0.5 AND tags.team = 'ml' AND status = 'READY'"),
            ["m-a"]
        );
    }

    #[test]
    fn datasets_restrict_metric_clauses() {
        assert_eq!(search_on("metrics.acc > 0.7", &[("eval", None)]), ["m-a"]);
        assert_eq!(
            search_on("metrics.acc > 0.7", &[("train", None)]),
            Vec::<String>::new()
        );
        assert_eq!(search_on("metrics.acc < 0.7", &[("train", Some("t1"))]), ["m-a"]);
        assert_eq!(
            search_on("metrics.acc < 0.7", &[("train", Some("other"))]),
            Vec::<String>::new()
        );
        assert_eq!(
            search_on("metrics.acc > 0", &[("eval", None), ("train", None)]),
            ["m-a"]
        );
        // Without a metric clause, datasets keep the models with metrics on them.
        assert_eq!(search_on("", &[("eval", None)]), ["m-a"]);
        assert_eq!(
            search_on("name != 'x'", &[("nothing", None)]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn malformed_filters() {
        assert_eq!(
            error("name = 'a' OR name = 'b'"),
            "Invalid clause(s) in filter string: 'OR'"
        );
        assert!(error("artifact_uri = 'x'").starts_with("Invalid attribute key 'artifact_uri' specified."));
        assert_eq!(
            error("datasets.name = 'x'"),
            "Invalid entity type: 'datasets'. Expected one of ['attributes', 'metrics', 'params', 'tags']."
        );
        assert_eq!(
            error("tags.x IS NULL"),
            "Invalid comparator 'IS NULL' not one of '{'!=', '=', 'LIKE', 'ILIKE'}'"
        );
        assert_eq!(
            error("name IS NULL"),
            "IS NULL / IS NOT NULL is only supported for tags and params, not for 'attribute' 'name'"
        );
        assert_eq!(
            error("metrics.acc = 'x'"),
            "Expected numeric value type for metric. Found 'x'"
        );
        assert_eq!(
            error("creation_time > 'x'"),
            "Expected numeric value type for numeric attribute: creation_time. Found 'x'"
        );
        assert_eq!(
            error("name > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}'"
        );
        assert_eq!(
            error("name = 3"),
            "Expected a quoted string value for attributes. Got value 3"
        );
    }

    #[test]
    fn order_by_attributes() {
        assert_eq!(sorted(&[order("name", true)]), ["m-b", "m-a", "m-c"]);
        assert_eq!(sorted(&[order("name", false)]), ["m-c", "m-a", "m-b"]);
        // m-b and m-c tie on creation time: model_id breaks it, ascending.
        assert_eq!(
            sorted(&[order("creation_timestamp", true)]),
            ["m-a", "m-b", "m-c"]
        );
        assert_eq!(sorted(&[order("creation_time", false)]), ["m-b", "m-c", "m-a"]);
        assert_eq!(sorted(&[order("model_id", false)]), ["m-c", "m-b", "m-a"]);
        // Missing values go last in both directions.
        assert_eq!(sorted(&[order("source_run_id", true)]), ["m-a", "m-c", "m-b"]);
        assert_eq!(sorted(&[order("source_run_id", false)]), ["m-c", "m-a", "m-b"]);
    }

    #[test]
    fn order_by_metrics_with_datasets_nan_and_missing() {
        // acc latest: m-a 0.6 (train, newer), m-b 0.9, m-c missing.
        assert_eq!(sorted(&[order("metrics.acc", true)]), ["m-a", "m-b", "m-c"]);
        assert_eq!(sorted(&[order("metrics.acc", false)]), ["m-b", "m-a", "m-c"]);
        let on_eval = LoggedModelOrder {
            dataset_name: Some("eval".to_string()),
            ..order("metrics.acc", false)
        };
        // Only m-a has acc on eval; the others are missing (then creation desc, model_id).
        assert_eq!(sorted(&[on_eval]), ["m-a", "m-b", "m-c"]);
        let on_digest = LoggedModelOrder {
            dataset_name: Some("train".to_string()),
            dataset_digest: Some("nope".to_string()),
            ..order("metrics.acc", true)
        };
        assert_eq!(sorted(&[on_digest]), ["m-b", "m-c", "m-a"]);
        // NaN sorts after numbers and before missing values.
        let mut models = fixture();
        models[0].data.metrics.push(metric("loss", 0.5, 1, None));
        let page =
            search_logged_models(models.clone(), "", &[], &[order("metrics.loss", true)], 10, None).unwrap();
        assert_eq!(ids(&page), ["m-a", "m-b", "m-c"]);
        let page = search_logged_models(models, "", &[], &[order("metrics.loss", false)], 10, None).unwrap();
        assert_eq!(ids(&page), ["m-a", "m-b", "m-c"]);
    }

    #[test]
    fn malformed_order_by_and_datasets() {
        let message = |order_by: LoggedModelOrder| {
            search_logged_models(fixture(), "", &[], &[order_by], 10, None)
                .unwrap_err()
                .message
        };
        assert_eq!(
            message(order("params.alpha", true)),
            "Invalid order by field name: params, only `metrics.<name>` is allowed."
        );
        assert_eq!(
            message(order("artifact_uri", true)),
            "Invalid order by field name: artifact_uri."
        );
        assert_eq!(
            message(order("", true)),
            "`field_name` in the `order_by` clause must be specified."
        );
        assert_eq!(
            message(LoggedModelOrder {
                dataset_digest: Some("d".to_string()),
                ..order("metrics.acc", true)
            }),
            "`dataset_digest` can only be specified if `dataset_name` is also specified."
        );
        let datasets = [LoggedModelDataset {
            dataset_name: String::new(),
            dataset_digest: None,
        }];
        assert_eq!(
            search_logged_models(fixture(), "", &datasets, &[], 10, None)
                .unwrap_err()
                .message,
            "`dataset_name` in the `datasets` clause must be specified."
        );
    }

    #[test]
    fn paginates() {
        let first = search_logged_models(fixture(), "", &[], &[], 2, None).unwrap();
        assert_eq!(ids(&first), ["m-b", "m-c"]);
        let second =
            search_logged_models(fixture(), "", &[], &[], 2, first.next_page_token.as_deref()).unwrap();
        assert_eq!(ids(&second), ["m-a"]);
        assert_eq!(second.next_page_token, None);
    }
}
