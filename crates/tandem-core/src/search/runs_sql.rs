//! What of a run search a database can evaluate: the clauses it decides
//! exactly as the grammar does ([`SqlClause`]: the whole filter, or the
//! clauses that narrow what a search reads when others need the grammar),
//! and the orders it can sort by ([`SqlOrderKey`]). The store renders them; `search_runs` stays the
//! definition that the store's conformance suite holds both to.

use super::compare::{Cmp, Literal};
use super::runs::{parse_run_filter, parse_run_order_by, RunAttribute, RunClause, RunField};

/// One key of an order the database can evaluate alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlOrderKey {
    /// A column of `runs` (`start_time`, `end_time`, `run_id`).
    Column(&'static str),
    /// The latest value of a metric (NaN after numbers, missing last).
    Metric(String),
}

/// When the database decides a search's filter alone (see
/// [`run_search_sql_filter`]) and it orders only by start or end time or by
/// metrics, the database can filter, order and page it alone: its full
/// order, with MLflow's tie-breakers (start time descending, run id), as
/// (key, ascending). Missing values sort last in either direction and NaN
/// just before them, as `search_runs` sorts.
pub fn run_search_sql_order(filter: &str, order_by: &[String]) -> Option<Vec<(SqlOrderKey, bool)>> {
    run_search_sql_filter(filter)?;
    let mut keys = Vec::new();
    for entry in order_by {
        let (field, ascending) = parse_run_order_by(entry).ok()?;
        let key = match field {
            RunField::Attribute(RunAttribute::StartTime) => SqlOrderKey::Column("start_time"),
            RunField::Attribute(RunAttribute::EndTime) => SqlOrderKey::Column("end_time"),
            RunField::Metric(key) => SqlOrderKey::Metric(key),
            _ => return None,
        };
        keys.push((key, ascending));
    }
    keys.push((SqlOrderKey::Column("start_time"), false));
    keys.push((SqlOrderKey::Column("run_id"), true));
    // A key already ordered by decides nothing the second time.
    let mut seen = Vec::new();
    keys.retain(|(key, _)| {
        let first = !seen.contains(key);
        seen.push(key.clone());
        first
    });
    Some(keys)
}

/// A comparison of the six a database evaluates as the grammar does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlCmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl SqlCmp {
    pub(super) fn from_cmp(cmp: Cmp) -> Option<SqlCmp> {
        Some(match cmp {
            Cmp::Eq => SqlCmp::Eq,
            Cmp::Ne => SqlCmp::Ne,
            Cmp::Gt => SqlCmp::Gt,
            Cmp::Ge => SqlCmp::Ge,
            Cmp::Lt => SqlCmp::Lt,
            Cmp::Le => SqlCmp::Le,
            _ => return None,
        })
    }

    /// The SQL operator.
    pub fn as_sql(self) -> &'static str {
        match self {
            SqlCmp::Eq => "=",
            SqlCmp::Ne => "<>",
            SqlCmp::Gt => ">",
            SqlCmp::Ge => ">=",
            SqlCmp::Lt => "<",
            SqlCmp::Le => "<=",
        }
    }
}

/// A test of a text value that a database decides exactly: equality and
/// lists compare bytes, and `Like` is MLflow's case-sensitive LIKE (`%`,
/// `_`, nothing escaped), which a store must render as such (SQLite's own
/// LIKE ignores ASCII case; its GLOB does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextTest {
    Equals(String),
    Differs(String),
    Like(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    /// MLflow's ILIKE: `%`, `_`, nothing escaped, every character compared
    /// by its Unicode lower case (`search::ilike`). A store decides it
    /// exactly only with that function; otherwise it may widen it to narrow
    /// what a search reads and leave the decision to the grammar.
    ILike(String),
    /// The key is there (`IS NOT NULL`).
    Present,
    /// The key is not there (`IS NULL`).
    Absent,
}

impl TextTest {
    pub(super) fn from_clause(cmp: Cmp, value: Literal) -> Option<TextTest> {
        Some(match (cmp, value) {
            (Cmp::Eq, Literal::Str(value)) => TextTest::Equals(value),
            (Cmp::Ne, Literal::Str(value)) => TextTest::Differs(value),
            (Cmp::Like, Literal::Str(pattern)) => TextTest::Like(pattern),
            (Cmp::ILike, Literal::Str(pattern)) => TextTest::ILike(pattern),
            (Cmp::In, Literal::List(values)) => TextTest::In(values),
            (Cmp::NotIn, Literal::List(values)) => TextTest::NotIn(values),
            (Cmp::IsNotNull, Literal::None) => TextTest::Present,
            (Cmp::IsNull, Literal::None) => TextTest::Absent,
            // Orderings of text depend on the database's collation: the
            // grammar decides.
            _ => return None,
        })
    }
}

/// One clause of a filter that a database decides exactly as
/// `search_runs` does.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlClause {
    /// The latest value of metric `key` against a finite number: a NaN
    /// satisfies only `Ne`, a run without the metric nothing.
    Metric { key: String, cmp: SqlCmp, value: f64 },
    /// Param `key`'s value: a run without it satisfies only `Absent`.
    Param { key: String, test: TextTest },
    /// Tag `key`'s value: a run without it satisfies only `Absent`.
    Tag { key: String, test: TextTest },
    /// A text column of `runs` (never `Present`/`Absent`).
    Attribute { column: &'static str, test: TextTest },
    /// A time column of `runs` against an integer: a run without the time
    /// satisfies nothing.
    Time {
        column: &'static str,
        cmp: SqlCmp,
        value: i64,
    },
    /// No tag `key` whose value is `value` (the registry's prompt tag: an
    /// entity without it is not a prompt).
    NotTagged { key: String, value: String },
}

/// What a database can do of an experiment or registered-model search
/// (`experiment_search_sql`, `registered_model_search_sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySql {
    /// The filter's clauses a database decides exactly (ILIKE: see
    /// [`TextTest::ILike`]); each narrows what a search reads.
    pub clauses: Vec<SqlClause>,
    /// Every clause of the filter is among `clauses`: with them the
    /// database decides the filter alone.
    pub complete: bool,
    /// The search's whole order as the entity's columns, ascending or not,
    /// cut after its unique name. `experiment_id` is ordered as MLflow
    /// orders ids: as numbers (a database may only when every id is a
    /// canonical one, see [`EntitySql::orders_ids`]).
    pub order: Vec<(&'static str, bool)>,
}

impl EntitySql {
    /// Whether the order reaches the experiment id (ties of the keys
    /// before it are possible), so a database must order ids as numbers.
    pub fn orders_ids(&self) -> bool {
        self.order.iter().any(|(column, _)| *column == "experiment_id")
    }
}

/// `filter` as clauses a database decides exactly (ILIKE where it has
/// MLflow's case folding: see [`TextTest::ILike`]), or None if any clause
/// needs the grammar (orderings of text, datasets, numbers that are not
/// finite or, for times, not integers). An empty filter is no
/// clause.
pub fn run_search_sql_filter(filter: &str) -> Option<Vec<SqlClause>> {
    parse_run_filter(filter)
        .ok()?
        .into_iter()
        .map(sql_clause)
        .collect()
}

/// The clauses of `filter` a database can decide, to narrow the runs a
/// search reads when others need the grammar: a filter is a conjunction,
/// so every run it matches satisfies each of them.
pub fn run_search_prefilters(filter: &str) -> Vec<SqlClause> {
    let Ok(clauses) = parse_run_filter(filter) else {
        return Vec::new();
    };
    clauses.into_iter().filter_map(sql_clause).collect()
}

fn sql_clause(clause: RunClause) -> Option<SqlClause> {
    match clause.field {
        RunField::Metric(key) => match clause.value {
            Literal::Number(number) if number.value.is_finite() => Some(SqlClause::Metric {
                key,
                cmp: SqlCmp::from_cmp(clause.cmp)?,
                value: number.value,
            }),
            _ => None,
        },
        RunField::Param(key) => Some(SqlClause::Param {
            key,
            test: TextTest::from_clause(clause.cmp, clause.value)?,
        }),
        RunField::Tag(key) => Some(SqlClause::Tag {
            key,
            test: TextTest::from_clause(clause.cmp, clause.value)?,
        }),
        RunField::Attribute(attribute) => {
            let column = attribute_column(attribute);
            match attribute {
                RunAttribute::StartTime | RunAttribute::EndTime => match clause.value {
                    Literal::Number(number) => Some(SqlClause::Time {
                        column,
                        cmp: SqlCmp::from_cmp(clause.cmp)?,
                        value: number.integer?,
                    }),
                    _ => None,
                },
                _ => match TextTest::from_clause(clause.cmp, clause.value)? {
                    TextTest::Present | TextTest::Absent => None,
                    test => Some(SqlClause::Attribute { column, test }),
                },
            }
        }
        RunField::Dataset(_) => None,
    }
}

/// The column of `runs` that holds an attribute.
fn attribute_column(attribute: RunAttribute) -> &'static str {
    match attribute {
        RunAttribute::RunId => "run_id",
        RunAttribute::RunName => "run_name",
        RunAttribute::UserId => "user_id",
        RunAttribute::Status => "status",
        RunAttribute::ArtifactUri => "artifact_uri",
        RunAttribute::StartTime => "start_time",
        RunAttribute::EndTime => "end_time",
    }
}
