//! Pages of a metric history and rows of searches read through SQLite's C
//! API (`tandem_sqlite`), on connections of a read-only pool of their own.
//! The history query is `history::page_sql`, the one PostgreSQL runs too,
//! so the store's conformance suite judges both.

use std::ffi::c_int;
use std::ptr::NonNull;
use std::str::FromStr;

use libsqlite3_sys as ffi;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tandem_core::history::{HistoryPoint, PointTexts};

use super::history::{page_sql, Start};
use super::rows::Cell;
use crate::error::{StoreError, StoreResult, WriteOutcome};
use tandem_sqlite::Statement;

/// A pool of read-only connections to the store's SQLite file. An
/// in-memory database has no file another connection could open (nor
/// could the store's writes, which run on a connection of their own).
pub(super) async fn open(url: &str, max_connections: u32) -> StoreResult<SqlitePool> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::Domain(tandem_core::Error::invalid(
            "an in-memory SQLite database cannot hold a metadata store: give a file",
        )));
    }
    // The file exists (the store's migrations ran): read-only, never
    // created from here.
    let options = SqliteConnectOptions::from_str(url)
        .map_err(StoreError::database)?
        .create_if_missing(false)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(10))
        // Searches read tens of thousands of rows: 8 MiB of pages each
        // (SQLite's default is 2) keeps their indexes' hot pages here.
        .pragma("cache_size", "-8192");
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .after_connect(|connection, _| {
            Box::pin(async move {
                let mut handle = connection.lock_handle().await?;
                register_ilike(handle.as_raw_handle())
                    .map_err(|error| sqlx::Error::Configuration(error.into()))
            })
        })
        .connect_with(options)
        .await
        .map_err(StoreError::database)
}

/// The SQL function of the read connections that is MLflow's ILIKE
/// (`ILIKE(value, pattern)`, `tandem_core::search::ilike`): SQLite's LIKE
/// folds only ASCII letters, so with it a search's ILIKE is decided by the
/// database as the grammar decides it.
pub(super) const ILIKE: &str = "mlflow_ilike";

fn register_ilike(db: NonNull<ffi::sqlite3>) -> Result<(), String> {
    // SAFETY: `db` is a live handle locked for this thread; the name is a
    // NUL-terminated constant; the callback only reads its arguments.
    let rc = unsafe {
        ffi::sqlite3_create_function_v2(
            db.as_ptr(),
            c"mlflow_ilike".as_ptr(),
            2,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC,
            std::ptr::null_mut(),
            Some(ilike),
            None,
            None,
            None,
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(format!(
            "cannot define {ILIKE} on a read connection (SQLite error {rc})"
        ))
    }
}

/// `mlflow_ilike(value, pattern)`: 1 or 0, NULL when either is NULL.
unsafe extern "C" fn ilike(
    context: *mut ffi::sqlite3_context,
    count: c_int,
    arguments: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite passes `count` (2, as registered) live values.
    let arguments = unsafe { std::slice::from_raw_parts(arguments, count as usize) };
    let text = |value: *mut ffi::sqlite3_value| -> Option<&str> {
        // SAFETY: the value is live for the call; its text (converted to
        // UTF-8 by SQLite) is `sqlite3_value_bytes` long.
        unsafe {
            let pointer = ffi::sqlite3_value_text(value);
            if pointer.is_null() {
                return None;
            }
            let length = ffi::sqlite3_value_bytes(value) as usize;
            std::str::from_utf8(std::slice::from_raw_parts(pointer, length)).ok()
        }
    };
    match (
        arguments.first().and_then(|v| text(*v)),
        arguments.get(1).and_then(|v| text(*v)),
    ) {
        // SAFETY: `context` is the call's.
        (Some(value), Some(pattern)) => unsafe {
            ffi::sqlite3_result_int(context, c_int::from(tandem_core::search::ilike(value, pattern)))
        },
        _ => unsafe { ffi::sqlite3_result_null(context) },
    }
}

/// Up to `limit` points of `run_id`'s `key` from `start`, in the metrics
/// key's order.
pub(super) async fn metric_page(
    pool: &SqlitePool,
    run_id: &str,
    key: &str,
    start: Start<'_>,
    limit: i64,
) -> StoreResult<Vec<HistoryPoint>> {
    tandem_sqlite::with_handle(pool, |db| read_page(db, run_id, key, &start, limit))
        .await
        .map_err(store_error)
}

/// Every row of `sql` (`$N` parameters, bound to `arguments` as text in
/// order), each as its columns: for reads of whole tables that sqlx's
/// per-row hand-off would make several times slower.
pub(super) async fn rows(pool: &SqlitePool, sql: &str, arguments: &[&str]) -> StoreResult<Vec<Vec<Cell>>> {
    let sql = numbered(sql, arguments.len());
    let values: Vec<tandem_sqlite::Value<'_>> =
        arguments.iter().map(|a| tandem_sqlite::Value::Text(a)).collect();
    tandem_sqlite::rows(pool, &sql, &values)
        .await
        .map_err(store_error)
}

/// `sql` with `$1`…`$count` written `?1`…: SQLite reads `$4` as a
/// parameter named "$4", numbered by first appearance, where `?4` is the
/// fourth. One pass (a page of runs binds hundreds of ids).
fn numbered(sql: &str, count: usize) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let parameter = after[..digits].parse::<usize>().ok();
        match parameter {
            Some(n) if (1..=count).contains(&n) => out.push('?'),
            _ => out.push('$'),
        }
        out.push_str(&after[..digits]);
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn read_page(
    db: NonNull<ffi::sqlite3>,
    run_id: &str,
    key: &str,
    start: &Start<'_>,
    limit: i64,
) -> tandem_sqlite::Result<Vec<HistoryPoint>> {
    let sql = numbered(&page_sql(start), 10);
    let statement = Statement::prepare(db, &sql)?;
    statement.bind_text(1, run_id)?;
    statement.bind_text(2, key)?;
    statement.bind_i64(3, limit)?;
    match start {
        Start::First => {}
        Start::Offset(offset) => statement.bind_i64(4, *offset)?,
        Start::After(after) => {
            statement.bind_i64(4, after.step)?;
            statement.bind_i64(5, after.timestamp)?;
            statement.bind_f64(6, f64::from_bits(after.value_bits))?;
            statement.bind_i64(7, after.is_nan)?;
            statement.bind_text(8, &after.model_id)?;
            statement.bind_text(9, &after.dataset_name)?;
            statement.bind_text(10, &after.dataset_digest)?;
        }
    }
    let mut points = Vec::with_capacity(limit.clamp(0, 25_000) as usize);
    while statement.step()? {
        let is_nan = statement.column_i64(3) != 0;
        points.push(HistoryPoint {
            value: if is_nan { f64::NAN } else { statement.column_f64(2) },
            timestamp: statement.column_i64(0),
            step: statement.column_i64(1),
            texts: PointTexts::of(
                statement.column_text(4)?,
                statement.column_text(5)?,
                statement.column_text(6)?,
            ),
        });
    }
    Ok(points)
}

/// A read's error as the store's: a full disk is `Full`, what failed to
/// decode is `Corrupt`.
fn store_error(error: tandem_sqlite::Error) -> StoreError {
    match error {
        tandem_sqlite::Error::Pool(error) => StoreError::database(error),
        tandem_sqlite::Error::NotUtf8 { column } => {
            StoreError::Corrupt(format!("column {column} is not UTF-8"))
        }
        error if error.is_full() => StoreError::Full {
            message: error.to_string(),
        },
        error => StoreError::Database {
            message: error.to_string(),
            outcome: WriteOutcome::Aborted,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn numbered_parameters_become_positional_and_nothing_else_changes() {
        assert_eq!(
            numbered("a = $1 AND b IN ($2, $10) AND c = '$x' AND d = $11 AND e = $", 10),
            "a = ?1 AND b IN (?2, ?10) AND c = '$x' AND d = $11 AND e = $"
        );
        assert_eq!(numbered("no parameters", 3), "no parameters");
    }
}
