//! MLflow's search semantics: filter strings, ordering and pagination for
//! runs, experiments, registered models, model versions and logged models.
//!
//! Why it is here: the unchanged MLflow client sends MLflow's filter grammar
//! (``metrics.acc > 0.9 AND tags.`team` = 'ml'``), `order_by` strings and
//! opaque page tokens, and users see the errors. So this is a port of MLflow
//! 3.17's `mlflow/utils/search_utils.py` (`SearchUtils` and its per-entity
//! subclasses) as its file stores apply it: in memory, over whole entities.
//! The store hands us the candidates (already restricted to the requested
//! experiments and view type) and we filter, sort and cut one page. Keeping
//! this pure is what makes it testable against MLflow's behaviour case by
//! case, and keeps the storage layer free of query-language concerns.
//!
//! How it is built, in layers:
//! - `lexer`: a filter or order-by string to tokens (what sqlparse gives
//!   MLflow, reduced to what its grammar uses);
//! - `parser`: tokens to an untyped AST of AND-ed `RawComparison`s,
//!   and `order_by` entries to (identifier, direction);
//! - `identifier`: `metrics.x` / ``tags.`a b` `` / `name` to a field kind and key;
//! - `compare`: typed comparators and literals, the comparison and LIKE
//!   semantics, and the sort order of values (NaN, then missing, last);
//! - one module per entity (`runs`, `experiments`, `registry`,
//!   `logged_models`) that resolves the AST against that entity's fields
//!   with MLflow's per-entity rules and messages, evaluates and sorts;
//! - `page_token`: MLflow's offset tokens, and cursors for metric histories.
//!
//! Every malformed filter, `order_by` or page token is an
//! [`Error::invalid`](crate::Error::invalid) (INVALID_PARAMETER_VALUE) with
//! MLflow's message where MLflow has a deliberate one. Where MLflow would only
//! fail while evaluating a candidate (an unsupported comparator, say), we fail
//! at parse time instead, so an empty result set does not hide a bad filter.

mod compare;
mod experiments;
mod identifier;
mod lexer;
mod logged_models;
mod page_token;
mod parser;
mod registry;
mod runs;
mod runs_sql;

pub use compare::ilike;
pub use experiments::{experiment_search_needs_tags, experiment_search_sql, search_experiments};
pub use logged_models::search_logged_models;
pub use page_token::{
    decode_history_token, decode_page_token, encode_history_token, encode_page_token, HistoryCursor,
    HistoryPosition,
};
pub use registry::{registered_model_search_sql, search_model_versions, search_registered_models};
pub use runs::{run_search_needs, search_runs, validate_run_filter, RunSearchNeeds};
pub use runs_sql::{
    run_search_prefilters, run_search_sql_filter, run_search_sql_order, EntitySql, SqlClause, SqlCmp,
    SqlOrderKey, TextTest,
};

/// One page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present only when more results follow this page.
    pub next_page_token: Option<String>,
}

/// One entry of search-logged-models' structured `order_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedModelOrder {
    /// An attribute (`name`, `creation_timestamp`, ...) or `metrics.<key>`.
    pub field_name: String,
    pub ascending: bool,
    /// For a metric: only its values on this dataset count.
    pub dataset_name: Option<String>,
    /// For a metric: only its values on this dataset digest count; needs `dataset_name`.
    pub dataset_digest: Option<String>,
}

/// Dataset restriction for logged-model metric filters (SearchLoggedModels
/// `datasets` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedModelDataset {
    pub dataset_name: String,
    pub dataset_digest: Option<String>,
}
