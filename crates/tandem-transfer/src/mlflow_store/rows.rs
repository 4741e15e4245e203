//! Queries on an MLflow database: placeholders written `?` and numbered
//! for PostgreSQL, and typed reads of the columns (every number is `CAST`
//! in the SQL, so SQLite's loose typing and PostgreSQL's
//! `int4`/`int8`/`boolean` decode alike). PostgreSQL is read through
//! sqlx's `Any` driver; SQLite through its C API (`tandem_sqlite`), which
//! reads a store's runs several times faster than sqlx's per-row hand-off.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row as _, SqlitePool};
use tandem_core::model::{Metric, Tag};
use tandem_sqlite::Cell;

use crate::TransferError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The names of the database's tables.
    pub(super) fn tables_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Dialect::Postgres => {
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = current_schema()"
            }
        }
    }

    /// `column` as a condition names it when no index should be chosen by
    /// it. MLflow's SQLite file has no planner statistics, and for
    /// `metrics.key = ? AND run_uuid IN (…)` SQLite takes the primary key
    /// (`key` first: every row of the table when runs log one metric) over
    /// the index on `(run_uuid, key, step)`; a unary `+` keeps it off
    /// (measured: 92 ms → 10 ms for 20 runs of a 1,000,000-point table).
    /// PostgreSQL's planner has statistics and needs no hint.
    pub(super) fn not_by_index(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("+{column}"),
            Dialect::Postgres => column.to_string(),
        }
    }

    /// `sql` with its `?` placeholders as this dialect writes them (the
    /// queries here hold no `?` inside a string).
    fn placeholders(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql.to_string(),
            Dialect::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut number = 0;
                for c in sql.chars() {
                    if c == '?' {
                        number += 1;
                        out.push_str(&format!("${number}"));
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

enum Bind {
    Text(String),
    I64(i64),
}

/// The connections to an MLflow database.
#[derive(Clone)]
pub(super) enum Pool {
    Postgres(AnyPool),
    Sqlite(SqlitePool),
}

/// A row read from either.
pub(super) enum Row {
    Any(AnyRow),
    Cells(Vec<Cell>),
}

/// A query with its bound values.
pub(super) struct Query {
    dialect: Dialect,
    sql: String,
    binds: Vec<Bind>,
}

impl Query {
    pub(super) fn new(dialect: Dialect, sql: impl Into<String>) -> Query {
        Query {
            dialect,
            sql: sql.into(),
            binds: Vec::new(),
        }
    }

    pub(super) fn bind_text(mut self, value: &str) -> Query {
        self.binds.push(Bind::Text(value.to_string()));
        self
    }

    pub(super) fn bind_i64(mut self, value: i64) -> Query {
        self.binds.push(Bind::I64(value));
        self
    }

    /// Every row; an error names the store (`key`) and what failed.
    pub(super) async fn fetch(self, pool: &Pool, key: &str) -> Result<Vec<Row>, TransferError> {
        let sql = self.dialect.placeholders(&self.sql);
        match pool {
            Pool::Postgres(pool) => {
                let mut query = sqlx::query(&sql);
                for bind in self.binds {
                    query = match bind {
                        Bind::Text(value) => query.bind(value),
                        Bind::I64(value) => query.bind(value),
                    };
                }
                let rows = query.fetch_all(pool).await.map_err(|error| match error {
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                        TransferError::Transport {
                            url: key.to_string(),
                            message: error.to_string(),
                        }
                    }
                    other => TransferError::Decode(format!("{key}: {other} (in: {})", self.sql)),
                })?;
                Ok(rows.into_iter().map(Row::Any).collect())
            }
            Pool::Sqlite(pool) => {
                let values: Vec<tandem_sqlite::Value<'_>> = self
                    .binds
                    .iter()
                    .map(|bind| match bind {
                        Bind::Text(value) => tandem_sqlite::Value::Text(value),
                        Bind::I64(value) => tandem_sqlite::Value::Int(*value),
                    })
                    .collect();
                let rows = tandem_sqlite::rows(pool, &sql, &values)
                    .await
                    .map_err(|error| match error {
                        tandem_sqlite::Error::Pool(error) => TransferError::Transport {
                            url: key.to_string(),
                            message: error.to_string(),
                        },
                        other => TransferError::Decode(format!("{key}: {other} (in: {})", self.sql)),
                    })?;
                Ok(rows.into_iter().map(Row::Cells).collect())
            }
        }
    }
}

/// `?, ?, …` for an `IN` list of `count` values.
pub(super) fn marks(count: usize) -> String {
    vec!["?"; count].join(", ")
}

fn decode_error(at: usize, error: impl std::fmt::Display) -> TransferError {
    TransferError::Decode(format!("column {at}: {error}"))
}

fn cell(cells: &[Cell], at: usize) -> Result<&Cell, TransferError> {
    cells.get(at).ok_or_else(|| decode_error(at, "no such column"))
}

pub(super) fn opt_text(row: &Row, at: usize) -> Result<Option<String>, TransferError> {
    match row {
        Row::Any(row) => row
            .try_get::<Option<String>, _>(at)
            .map_err(|error| decode_error(at, error)),
        Row::Cells(cells) => match cell(cells, at)? {
            Cell::Null => Ok(None),
            Cell::Text(text) => Ok(Some(text.clone())),
            other => Err(decode_error(at, format!("expected text, found {other:?}"))),
        },
    }
}

pub(super) fn text(row: &Row, at: usize) -> Result<String, TransferError> {
    opt_text(row, at)?.ok_or_else(|| TransferError::Decode(format!("column {at} is NULL")))
}

pub(super) fn opt_i64(row: &Row, at: usize) -> Result<Option<i64>, TransferError> {
    match row {
        Row::Any(row) => row
            .try_get::<Option<i64>, _>(at)
            .map_err(|error| decode_error(at, error)),
        Row::Cells(cells) => match cell(cells, at)? {
            Cell::Null => Ok(None),
            Cell::Int(value) => Ok(Some(*value)),
            other => Err(decode_error(at, format!("expected an integer, found {other:?}"))),
        },
    }
}

pub(super) fn i64(row: &Row, at: usize) -> Result<i64, TransferError> {
    opt_i64(row, at)?.ok_or_else(|| TransferError::Decode(format!("column {at} is NULL")))
}

pub(super) fn opt_f64(row: &Row, at: usize) -> Result<Option<f64>, TransferError> {
    match row {
        Row::Any(row) => row
            .try_get::<Option<f64>, _>(at)
            .map_err(|error| decode_error(at, error)),
        Row::Cells(cells) => match cell(cells, at)? {
            Cell::Null => Ok(None),
            Cell::Real(value) => Ok(Some(*value)),
            // SQLite keeps a whole REAL as an integer when the column's
            // affinity lets it.
            Cell::Int(value) => Ok(Some(*value as f64)),
            other => Err(decode_error(at, format!("expected a number, found {other:?}"))),
        },
    }
}

/// A tag from its key at column `at` and its value (NULL: empty) after it.
pub(super) fn tag(row: &Row, at: usize) -> Result<Tag, TransferError> {
    Ok(Tag::new(
        text(row, at)?,
        opt_text(row, at + 1)?.unwrap_or_default(),
    ))
}

/// The columns [`metric`] reads, of the `metrics` or `latest_metrics` row
/// aliased `alias`.
pub(super) fn metric_columns(alias: &str) -> String {
    format!(
        "{alias}.key, CAST({alias}.value AS DOUBLE PRECISION), CAST({alias}.timestamp AS BIGINT), \
         CAST({alias}.step AS BIGINT), CAST(CASE WHEN {alias}.is_nan THEN 1 ELSE 0 END AS BIGINT)"
    )
}

/// A metric point from [`metric_columns`] starting at column `at`: a NaN
/// is MLflow's row with `is_nan` set (its value is 0).
pub(super) fn metric(row: &Row, at: usize) -> Result<Metric, TransferError> {
    let is_nan = opt_i64(row, at + 4)?.unwrap_or(0) != 0;
    Ok(Metric {
        key: text(row, at)?,
        value: if is_nan {
            f64::NAN
        } else {
            opt_f64(row, at + 1)?.unwrap_or(0.0)
        },
        timestamp: opt_i64(row, at + 2)?.unwrap_or(0),
        step: opt_i64(row, at + 3)?.unwrap_or(0),
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            Dialect::Postgres.placeholders("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(Dialect::Sqlite.placeholders("a = ?"), "a = ?");
        assert_eq!(Dialect::Sqlite.not_by_index("x.key"), "+x.key");
        assert_eq!(Dialect::Postgres.not_by_index("x.key"), "x.key");
        assert_eq!(marks(3), "?, ?, ?");
    }
}
