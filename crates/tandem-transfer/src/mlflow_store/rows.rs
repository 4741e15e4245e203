//! Queries on an MLflow database through sqlx's `Any` driver: placeholders
//! written `?` and numbered for PostgreSQL, and typed reads of the columns
//! (every number is `CAST` in the SQL, so SQLite's loose typing and
//! PostgreSQL's `int4`/`int8`/`boolean` decode alike).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tandem_core::model::{Metric, Tag};

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
    pub(super) async fn fetch(self, pool: &AnyPool, key: &str) -> Result<Vec<AnyRow>, TransferError> {
        let sql = self.dialect.placeholders(&self.sql);
        let mut query = sqlx::query(&sql);
        for bind in self.binds {
            query = match bind {
                Bind::Text(value) => query.bind(value),
                Bind::I64(value) => query.bind(value),
            };
        }
        query.fetch_all(pool).await.map_err(|error| match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                TransferError::Transport {
                    url: key.to_string(),
                    message: error.to_string(),
                }
            }
            other => TransferError::Decode(format!("{key}: {other} (in: {})", self.sql)),
        })
    }
}

/// `?, ?, …` for an `IN` list of `count` values.
pub(super) fn marks(count: usize) -> String {
    vec!["?"; count].join(", ")
}

fn decode_error(at: usize, error: sqlx::Error) -> TransferError {
    TransferError::Decode(format!("column {at}: {error}"))
}

pub(super) fn opt_text(row: &AnyRow, at: usize) -> Result<Option<String>, TransferError> {
    row.try_get::<Option<String>, _>(at)
        .map_err(|error| decode_error(at, error))
}

pub(super) fn text(row: &AnyRow, at: usize) -> Result<String, TransferError> {
    opt_text(row, at)?.ok_or_else(|| TransferError::Decode(format!("column {at} is NULL")))
}

pub(super) fn opt_i64(row: &AnyRow, at: usize) -> Result<Option<i64>, TransferError> {
    row.try_get::<Option<i64>, _>(at)
        .map_err(|error| decode_error(at, error))
}

pub(super) fn i64(row: &AnyRow, at: usize) -> Result<i64, TransferError> {
    opt_i64(row, at)?.ok_or_else(|| TransferError::Decode(format!("column {at} is NULL")))
}

pub(super) fn opt_f64(row: &AnyRow, at: usize) -> Result<Option<f64>, TransferError> {
    row.try_get::<Option<f64>, _>(at)
        .map_err(|error| decode_error(at, error))
}

/// A tag from its key at column `at` and its value (NULL: empty) after it.
pub(super) fn tag(row: &AnyRow, at: usize) -> Result<Tag, TransferError> {
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
pub(super) fn metric(row: &AnyRow, at: usize) -> Result<Metric, TransferError> {
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
        assert_eq!(marks(3), "?, ?, ?");
    }
}
