//! Rows for reads that several paths share: the entity loaders (`load`)
//! read their columns by position through [`Columns`], from whichever
//! [`RowSource`] the caller has — the store's pool through sqlx's `Any`
//! driver, or the read pool ([`ReadPool`]) whose rows are plain [`Cell`]s
//! (SQLite) or PostgreSQL's rows decoded column by column ([`ReadRow`]).
//! A search of a thousand runs reads ~20,000 rows; through `Any` each
//! crosses threads (SQLite) and converts every value, which costs several
//! times the read itself, so searches take the read pool.

use std::future::Future;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::read_pool::ReadPool;
use crate::error::{StoreError, StoreResult};

/// One column of a row read by the read pool.
pub(super) use tandem_sqlite::Cell;

fn text_of(cell: Cell) -> StoreResult<String> {
    match cell {
        Cell::Text(text) => Ok(text),
        other => Err(StoreError::Corrupt(format!("expected text, found {other:?}"))),
    }
}

fn int_of(cell: &Cell) -> StoreResult<i64> {
    match cell {
        Cell::Int(value) => Ok(*value),
        other => Err(StoreError::Corrupt(format!(
            "expected an integer, found {other:?}"
        ))),
    }
}

/// A row's columns by position (the order of the statement's `SELECT`).
/// Taking `&mut self` lets a row of cells hand its strings over.
pub(super) trait Columns {
    fn text(&mut self, index: usize) -> StoreResult<String>;
    /// A text column borrowed from the row (to look something up by it).
    fn text_ref(&mut self, index: usize) -> StoreResult<&str>;
    fn int(&mut self, index: usize) -> StoreResult<i64>;
    fn optional_int(&mut self, index: usize) -> StoreResult<Option<i64>>;
    fn real(&mut self, index: usize) -> StoreResult<f64>;
}

impl Columns for AnyRow {
    fn text(&mut self, index: usize) -> StoreResult<String> {
        Ok(self.try_get(index)?)
    }

    fn text_ref(&mut self, index: usize) -> StoreResult<&str> {
        Ok(self.try_get(index)?)
    }

    fn int(&mut self, index: usize) -> StoreResult<i64> {
        Ok(self.try_get(index)?)
    }

    fn optional_int(&mut self, index: usize) -> StoreResult<Option<i64>> {
        Ok(self.try_get(index)?)
    }

    fn real(&mut self, index: usize) -> StoreResult<f64> {
        Ok(self.try_get(index)?)
    }
}

impl Columns for Vec<Cell> {
    fn text(&mut self, index: usize) -> StoreResult<String> {
        text_of(std::mem::replace(cell(self, index)?, Cell::Null))
    }

    fn text_ref(&mut self, index: usize) -> StoreResult<&str> {
        match cell(self, index)? {
            Cell::Text(text) => Ok(text),
            other => Err(StoreError::Corrupt(format!("expected text, found {other:?}"))),
        }
    }

    fn int(&mut self, index: usize) -> StoreResult<i64> {
        int_of(cell(self, index)?)
    }

    fn optional_int(&mut self, index: usize) -> StoreResult<Option<i64>> {
        match cell(self, index)? {
            Cell::Null => Ok(None),
            other => int_of(other).map(Some),
        }
    }

    fn real(&mut self, index: usize) -> StoreResult<f64> {
        match cell(self, index)? {
            Cell::Real(value) => Ok(*value),
            // SQLite keeps a REAL column's integral values as integers
            // when they were written as such.
            Cell::Int(value) => Ok(*value as f64),
            other => Err(StoreError::Corrupt(format!("expected a number, found {other:?}"))),
        }
    }
}

/// A row of the read pool: cells stepped out of SQLite, or PostgreSQL's
/// own row, whose columns are decoded only when asked for (a page of runs
/// is ~20,000 rows: no vector of cells, no type looked up by name per cell).
pub(super) enum ReadRow {
    Cells(Vec<Cell>),
    Postgres(sqlx::postgres::PgRow),
}

impl Columns for ReadRow {
    fn text(&mut self, index: usize) -> StoreResult<String> {
        match self {
            ReadRow::Cells(cells) => cells.text(index),
            ReadRow::Postgres(row) => pg_value(row, index),
        }
    }

    fn text_ref(&mut self, index: usize) -> StoreResult<&str> {
        match self {
            ReadRow::Cells(cells) => cells.text_ref(index),
            ReadRow::Postgres(row) => row.try_get(index).map_err(StoreError::database),
        }
    }

    fn int(&mut self, index: usize) -> StoreResult<i64> {
        match self {
            ReadRow::Cells(cells) => cells.int(index),
            ReadRow::Postgres(row) => pg_int(row, index)?.ok_or_else(|| {
                StoreError::Corrupt(format!("expected an integer in column {index}, found NULL"))
            }),
        }
    }

    fn optional_int(&mut self, index: usize) -> StoreResult<Option<i64>> {
        match self {
            ReadRow::Cells(cells) => cells.optional_int(index),
            ReadRow::Postgres(row) => pg_int(row, index),
        }
    }

    fn real(&mut self, index: usize) -> StoreResult<f64> {
        match self {
            ReadRow::Cells(cells) => cells.real(index),
            ReadRow::Postgres(row) => pg_value(row, index),
        }
    }
}

/// Column `index` of a PostgreSQL row as `T`, whose type sqlx checks.
fn pg_value<T>(row: &sqlx::postgres::PgRow, index: usize) -> StoreResult<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(index).map_err(StoreError::database)
}

/// An integer column of any width (the schema's `INTEGER` and `BIGINT`).
fn pg_int(row: &sqlx::postgres::PgRow, index: usize) -> StoreResult<Option<i64>> {
    use sqlx::{Column, TypeInfo};
    let column = row
        .columns()
        .get(index)
        .ok_or_else(|| StoreError::Corrupt(format!("column {index} asked of a row of {}", row.len())))?;
    match column.type_info().name() {
        "INT4" => Ok(pg_value::<Option<i32>>(row, index)?.map(i64::from)),
        "INT2" => Ok(pg_value::<Option<i16>>(row, index)?.map(i64::from)),
        "BOOL" => Ok(pg_value::<Option<bool>>(row, index)?.map(i64::from)),
        _ => pg_value(row, index),
    }
}

fn cell(row: &mut [Cell], index: usize) -> StoreResult<&mut Cell> {
    let width = row.len();
    row.get_mut(index)
        .ok_or_else(|| StoreError::Corrupt(format!("column {index} asked of a row of {width}")))
}

/// Where a multi-statement read gets its rows: `sql` with `arguments`
/// bound as `$1`, `$2`, … (as text).
pub(super) trait RowSource: Sync {
    type Row: Columns + Send;

    fn rows(&self, sql: &str, arguments: &[&str])
        -> impl Future<Output = StoreResult<Vec<Self::Row>>> + Send;

    /// Whether a list of values may be bound as one PostgreSQL text array
    /// (`CAST($n AS TEXT[])`, see [`pg_text_array`]) rather than one
    /// parameter each: one value to bind and a statement planned alike
    /// whatever the list's length.
    fn binds_arrays(&self) -> bool {
        false
    }
}

/// `values` as a PostgreSQL array literal of text: each element quoted,
/// its backslashes and double quotes escaped.
pub(super) fn pg_text_array(values: &[String]) -> String {
    let mut literal = String::with_capacity(values.iter().map(|v| v.len() + 3).sum::<usize>() + 2);
    literal.push('{');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

impl RowSource for AnyPool {
    type Row = AnyRow;

    async fn rows(&self, sql: &str, arguments: &[&str]) -> StoreResult<Vec<AnyRow>> {
        let mut query = sqlx::query(sql);
        for argument in arguments {
            query = query.bind(argument.to_string());
        }
        Ok(query.fetch_all(self).await?)
    }
}

impl RowSource for ReadPool {
    type Row = ReadRow;

    async fn rows(&self, sql: &str, arguments: &[&str]) -> StoreResult<Vec<ReadRow>> {
        self.read_rows(sql, arguments).await
    }

    fn binds_arrays(&self) -> bool {
        matches!(self, ReadPool::Postgres { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::pg_text_array;

    #[test]
    fn text_arrays_quote_every_element() {
        let values = [
            "a".to_string(),
            "b,c".to_string(),
            "q\"\\".to_string(),
            String::new(),
            "NULL".to_string(),
        ];
        assert_eq!(pg_text_array(&values), r#"{"a","b,c","q\"\\","","NULL"}"#);
        assert_eq!(pg_text_array(&[]), "{}");
    }
}
