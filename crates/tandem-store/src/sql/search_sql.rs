//! A search's clauses as SQL conditions (`SqlClause`, from
//! `tandem_core::search`), for runs, experiments and registered models: text
//! tested as MLflow's grammar tests it on each backend, a key's value as an
//! `EXISTS` on its key-value table.

use tandem_core::search::{SqlClause, SqlCmp, TextTest};

use super::Backend;

/// What a search's clauses test: the row's alias in the query, and how a
/// key-value table (`kv`) joins it.
pub(super) struct Subject {
    /// Its table, its alias there and its key column in the workspace.
    pub(super) table: &'static str,
    pub(super) alias: &'static str,
    pub(super) key: &'static str,
    /// What keeps a search to live rows (`AND …`), if anything.
    pub(super) live: &'static str,
    join: &'static str,
    tags: &'static str,
    params: &'static str,
}

impl Subject {
    /// A run, `r` (its params, tags and latest metrics).
    pub(super) const RUN: Subject = Subject {
        table: "runs",
        alias: "r",
        key: "run_id",
        live: "",
        join: "kv.run_id = r.run_id",
        tags: "run_tags",
        params: "run_params",
    };
    /// An experiment, `e` (its tags).
    pub(super) const EXPERIMENT: Subject = Subject {
        table: "experiments",
        alias: "e",
        key: "experiment_id",
        live: "",
        join: "kv.workspace_id = e.workspace_id AND kv.experiment_id = e.experiment_id",
        tags: "experiment_tags",
        params: "",
    };
    /// A registered model, `m` (its tags).
    pub(super) const REGISTERED_MODEL: Subject = Subject {
        table: "registered_models",
        alias: "m",
        key: "name",
        // A deleted model's row stays until it is purged.
        live: "AND m.deletion_time IS NULL",
        join: "kv.workspace_id = m.workspace_id AND kv.name = m.name",
        tags: "registered_model_tags",
        params: "",
    };
}

/// Adds `clauses` to a search's `condition` (`AND …` each), their keys and
/// values bound after `arguments` (as text, cast where compared as numbers).
/// Metrics and params are a run's only.
pub(super) fn add_clauses(
    condition: &mut String,
    arguments: &mut Vec<String>,
    clauses: Vec<SqlClause>,
    backend: Backend,
    subject: &Subject,
) {
    let alias = subject.alias;
    for clause in clauses {
        let sql = match clause {
            SqlClause::Metric { key, cmp, value } => {
                let key = bind(arguments, key);
                let value = bind(arguments, value.to_string());
                let test = match cmp {
                    // NaN differs from every number; it satisfies no other comparison.
                    SqlCmp::Ne => {
                        format!("(mf.is_nan <> 0 OR mf.value <> CAST({value} AS DOUBLE PRECISION))")
                    }
                    cmp => format!(
                        "mf.is_nan = 0 AND mf.value {} CAST({value} AS DOUBLE PRECISION)",
                        cmp.as_sql()
                    ),
                };
                format!("EXISTS (SELECT 1 FROM latest_metrics mf WHERE mf.run_id = r.run_id AND mf.key = {key} AND {test})")
            }
            SqlClause::Param { key, test } => {
                key_value_test(subject.params, subject.join, key, test, arguments, backend)
            }
            SqlClause::Tag { key, test } => {
                key_value_test(subject.tags, subject.join, key, test, arguments, backend)
            }
            SqlClause::NotTagged { key, value } => {
                let key = bind(arguments, key);
                let value = bind(arguments, value);
                format!(
                    "NOT EXISTS (SELECT 1 FROM {} kv WHERE {} AND kv.key = {key} AND kv.value = {value})",
                    subject.tags, subject.join
                )
            }
            SqlClause::Attribute { column, test } => {
                text_test(&format!("{alias}.{column}"), test, arguments, backend)
            }
            SqlClause::Time { column, cmp, value } => {
                let value = bind(arguments, value.to_string());
                format!("{alias}.{column} {} CAST({value} AS BIGINT)", cmp.as_sql())
            }
        };
        condition.push_str(" AND ");
        condition.push_str(&sql);
    }
}

/// Whether `backend` decides `clauses` exactly: SQLite's read connections
/// have MLflow's ILIKE itself; PostgreSQL decides an ILIKE exactly only
/// for an ASCII pattern (`text_test` widens the others).
pub(super) fn decides(clauses: &[SqlClause], backend: Backend) -> bool {
    backend == Backend::Sqlite
        || clauses.iter().all(|clause| match clause {
            SqlClause::Param { test, .. }
            | SqlClause::Tag { test, .. }
            | SqlClause::Attribute { test, .. } => {
                !matches!(test, TextTest::ILike(pattern) if !pattern.is_ascii())
            }
            _ => true,
        })
}

/// Binds `value` after `arguments` (`$1` is the workspace id): its placeholder.
fn bind(arguments: &mut Vec<String>, value: String) -> String {
    arguments.push(value);
    format!("${}", arguments.len() + 1)
}

/// A test of the value of `key` in `table` (`run_params`, `run_tags`, …),
/// joined to its subject by `join`.
fn key_value_test(
    table: &str,
    join: &str,
    key: String,
    test: TextTest,
    arguments: &mut Vec<String>,
    backend: Backend,
) -> String {
    let key = bind(arguments, key);
    let row = format!("SELECT 1 FROM {table} kv WHERE {join} AND kv.key = {key}");
    match test {
        TextTest::Present => format!("EXISTS ({row})"),
        TextTest::Absent => format!("NOT EXISTS ({row})"),
        // PostgreSQL indexes params and tags by key and the value's first
        // `INDEXED_CHARS` characters (migration 18). A shorter value equals
        // a value exactly when it equals that prefix, which the index alone
        // answers; a longer one is tested whole too.
        TextTest::Equals(value) if backend == Backend::Postgres => {
            let short = value.chars().count() < INDEXED_CHARS;
            let value = bind(arguments, value);
            if short {
                format!("EXISTS ({row} AND LEFT(kv.value, {INDEXED_CHARS}) = {value})")
            } else {
                format!(
                    "EXISTS ({row} AND LEFT(kv.value, {INDEXED_CHARS}) = LEFT({value}, {INDEXED_CHARS}) AND kv.value = {value})"
                )
            }
        }
        test => format!(
            "EXISTS ({row} AND {})",
            text_test("kv.value", test, arguments, backend)
        ),
    }
}

/// How many of a param's or tag's first characters PostgreSQL's
/// `run_params_by_key` and `run_tags_by_key` hold.
const INDEXED_CHARS: usize = 100;

/// `column` tested as the grammar tests text: bytes compared, LIKE
/// case-sensitive with nothing escaped (SQLite's GLOB with the pattern
/// translated; PostgreSQL's LIKE with `ESCAPE ''`).
fn text_test(column: &str, test: TextTest, arguments: &mut Vec<String>, backend: Backend) -> String {
    match test {
        TextTest::Equals(value) => format!("{column} = {}", bind(arguments, value)),
        TextTest::Differs(value) => format!("{column} <> {}", bind(arguments, value)),
        TextTest::Like(pattern) => match backend {
            Backend::Sqlite => format!("{column} GLOB {}", bind(arguments, glob_pattern(&pattern))),
            Backend::Postgres => format!("{column} LIKE {} ESCAPE ''", bind(arguments, pattern)),
        },
        // SQLite's read connections have MLflow's ILIKE itself
        // (`sqlite_reader::ILIKE`). On PostgreSQL an ASCII pattern is
        // decided exactly without the database's own case folding (which
        // depends on its locale): a value's character matches an ASCII
        // pattern character when their Unicode lower cases are equal, and
        // the only characters whose lower case is an ASCII character are
        // ASCII's capitals and the Kelvin sign, so folding those two by
        // `translate` and the pattern by ASCII is MLflow's ILIKE. Other
        // patterns do not narrow: the grammar decides (`decides`).
        TextTest::ILike(pattern) => match backend {
            Backend::Sqlite => format!(
                "{}({column}, {})",
                super::sqlite_reader::ILIKE,
                bind(arguments, pattern)
            ),
            Backend::Postgres if pattern.is_ascii() => format!(
                "TRANSLATE({column}, '{CAPITALS}', '{SMALL}') LIKE {} ESCAPE ''",
                bind(arguments, pattern.to_ascii_lowercase())
            ),
            Backend::Postgres => "1 = 1".to_string(),
        },
        TextTest::In(values) if values.is_empty() => "1 = 0".to_string(),
        TextTest::NotIn(values) if values.is_empty() => "1 = 1".to_string(),
        TextTest::In(values) => {
            let list: Vec<String> = values.into_iter().map(|value| bind(arguments, value)).collect();
            format!("{column} IN ({})", list.join(", "))
        }
        TextTest::NotIn(values) => {
            let list: Vec<String> = values.into_iter().map(|value| bind(arguments, value)).collect();
            format!("{column} NOT IN ({})", list.join(", "))
        }
        TextTest::Present => format!("{column} IS NOT NULL"),
        TextTest::Absent => format!("{column} IS NULL"),
    }
}

/// The characters whose Unicode lower case is one ASCII character other
/// than themselves (ASCII's capitals and the Kelvin sign, U+212A), and
/// those lower cases: `tests::only_these_fold_to_ascii` checks the list.
const CAPITALS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ\u{212A}";
const SMALL: &str = "abcdefghijklmnopqrstuvwxyzk";

/// MLflow's LIKE pattern (`%`, `_`, nothing escaped) as a SQLite GLOB
/// pattern: `*` and `?` for the wildcards, GLOB's own specials bracketed.
fn glob_pattern(pattern: &str) -> String {
    let mut glob = String::with_capacity(pattern.len() + 8);
    for character in pattern.chars() {
        match character {
            '%' => glob.push('*'),
            '_' => glob.push('?'),
            '*' => glob.push_str("[*]"),
            '?' => glob.push_str("[?]"),
            '[' => glob.push_str("[[]"),
            other => glob.push(other),
        }
    }
    glob
}

#[cfg(test)]
mod tests {
    use super::{glob_pattern, CAPITALS, SMALL};

    #[test]
    fn only_these_fold_to_ascii() {
        let folding: Vec<(char, char)> = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter_map(|c| {
                let mut lower = c.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(l), None) if l.is_ascii() && l != c => Some((c, l)),
                    _ => None,
                }
            })
            .collect();
        let listed: Vec<(char, char)> = CAPITALS.chars().zip(SMALL.chars()).collect();
        assert_eq!(folding, listed);
        assert_eq!(CAPITALS.chars().count(), SMALL.chars().count());
    }

    #[test]
    fn postgres_statistics_fold_as_searches_do() {
        // The planner uses `run_tags_folded` only for this very expression.
        let migration = include_str!("../../migrations/postgres/0018_runs_by_key.sql");
        assert!(migration.contains(&format!("(TRANSLATE(value, '{CAPITALS}', '{SMALL}'))")));
    }

    #[test]
    fn like_patterns_become_globs_that_match_the_same() {
        assert_eq!(glob_pattern("a%b_c"), "a*b?c");
        assert_eq!(glob_pattern("*?[x]%"), "[*][?][[]x]*");
        assert_eq!(glob_pattern("100\\%"), "100\\*");
    }
}
