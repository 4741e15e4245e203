//! Reads of SQLite through its C API, on a connection of a sqlx pool.
//!
//! Through sqlx every row crosses from the connection's worker thread to the
//! async side over a channel and becomes a row of values, each allocated:
//! profiling a 200,000-point history read put thread hand-offs, futex waits
//! and allocations at about 80% of the server's CPU, and reading an MLflow
//! store's runs cost three times what SQLite spends on them. Here a
//! statement is stepped on the connection's own handle, locked for the
//! duration as sqlx documents (`SqliteConnection::lock_handle`), and the
//! caller reads each row's columns as native values.
//!
//! Used by Tandem's metadata store (history pages, searches) and by the
//! copier's reader of an MLflow server's SQLite file.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::SqlitePool;

pub use libsqlite3_sys::sqlite3 as RawConnection;

/// What went wrong reading.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had from the pool.
    #[error("{0}")]
    Pool(#[from] sqlx::Error),
    /// SQLite refused the statement or a step of it.
    #[error("SQLite error {code}: {message}")]
    Sqlite { code: c_int, message: String },
    /// A text column held bytes that are not UTF-8.
    #[error("column {column} is not UTF-8")]
    NotUtf8 { column: c_int },
}

impl Error {
    /// The database or its disk is full (`SQLITE_FULL`).
    pub fn is_full(&self) -> bool {
        matches!(self, Error::Sqlite { code, .. } if code & 0xff == ffi::SQLITE_FULL)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A value bound to a parameter.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Text(&'a str),
    Int(i64),
    Real(f64),
}

/// One column of a row read by [`rows`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// Runs `read` on the handle of a connection of `pool`, locked for it.
pub async fn with_handle<T>(
    pool: &SqlitePool,
    read: impl FnOnce(NonNull<RawConnection>) -> Result<T>,
) -> Result<T> {
    let mut connection = pool.acquire().await?;
    let mut handle = connection.lock_handle().await?;
    let db = handle.as_raw_handle();
    // Thousands of rows are stepped without a yield: on the multi-threaded
    // runtime, tell it this worker is busy.
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| read(db)),
        _ => read(db),
    }
}

/// Every row of `sql` (`?N` or `?` parameters, bound to `values` in
/// order), each as its columns.
pub async fn rows(pool: &SqlitePool, sql: &str, values: &[Value<'_>]) -> Result<Vec<Vec<Cell>>> {
    with_handle(pool, |db| {
        let statement = Statement::prepare(db, sql)?;
        for (index, value) in values.iter().enumerate() {
            statement.bind(index as c_int + 1, *value)?;
        }
        let columns = statement.column_count();
        let mut rows = Vec::new();
        while statement.step()? {
            let mut row = Vec::with_capacity(columns as usize);
            for column in 0..columns {
                row.push(statement.cell(column)?);
            }
            rows.push(row);
        }
        Ok(rows)
    })
    .await
}

/// A prepared statement, finalized when dropped.
pub struct Statement {
    db: NonNull<RawConnection>,
    raw: NonNull<ffi::sqlite3_stmt>,
}

impl Statement {
    /// Prepares `sql` on `db`, a live connection handle locked for this
    /// thread's use (as [`with_handle`] gives it).
    pub fn prepare(db: NonNull<RawConnection>, sql: &str) -> Result<Statement> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: `db` is a live connection handle locked for this thread's
        // use (sqlx's `LockedSqliteHandle`); `sql` is valid for its length.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db.as_ptr(),
                sql.as_ptr().cast::<c_char>(),
                sql.len() as c_int,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        match NonNull::new(raw) {
            Some(raw) if rc == ffi::SQLITE_OK => Ok(Statement { db, raw }),
            _ => Err(error(db, rc)),
        }
    }

    fn check(&self, rc: c_int) -> Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error(self.db, rc))
        }
    }

    /// Binds parameter `index` (from 1).
    pub fn bind(&self, index: c_int, value: Value<'_>) -> Result<()> {
        match value {
            Value::Text(text) => self.bind_text(index, text),
            Value::Int(int) => self.bind_i64(index, int),
            Value::Real(real) => self.bind_f64(index, real),
        }
    }

    pub fn bind_text(&self, index: c_int, value: &str) -> Result<()> {
        // SAFETY: the statement is live; SQLITE_TRANSIENT makes SQLite copy
        // the bytes before this call returns.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.raw.as_ptr(),
                index,
                value.as_ptr().cast::<c_char>(),
                value.len() as c_int,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc)
    }

    pub fn bind_i64(&self, index: c_int, value: i64) -> Result<()> {
        // SAFETY: the statement is live.
        self.check(unsafe { ffi::sqlite3_bind_int64(self.raw.as_ptr(), index, value) })
    }

    pub fn bind_f64(&self, index: c_int, value: f64) -> Result<()> {
        // SAFETY: the statement is live.
        self.check(unsafe { ffi::sqlite3_bind_double(self.raw.as_ptr(), index, value) })
    }

    /// True while there is a row to read.
    pub fn step(&self) -> Result<bool> {
        // SAFETY: the statement is live and used by this thread only.
        match unsafe { ffi::sqlite3_step(self.raw.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            rc => Err(error(self.db, rc)),
        }
    }

    pub fn column_count(&self) -> c_int {
        // SAFETY: the statement is live.
        unsafe { ffi::sqlite3_column_count(self.raw.as_ptr()) }
    }

    pub fn column_i64(&self, index: c_int) -> i64 {
        // SAFETY: called after a step that returned a row.
        unsafe { ffi::sqlite3_column_int64(self.raw.as_ptr(), index) }
    }

    pub fn column_f64(&self, index: c_int) -> f64 {
        // SAFETY: called after a step that returned a row.
        unsafe { ffi::sqlite3_column_double(self.raw.as_ptr(), index) }
    }

    /// A text column, None when NULL or empty.
    pub fn column_text(&self, index: c_int) -> Result<Option<String>> {
        // SAFETY: called after a step that returned a row; the pointer stays
        // valid until the next step, and the bytes are copied before that.
        let bytes = unsafe {
            let text = ffi::sqlite3_column_text(self.raw.as_ptr(), index);
            let len = ffi::sqlite3_column_bytes(self.raw.as_ptr(), index);
            if text.is_null() || len <= 0 {
                return Ok(None);
            }
            std::slice::from_raw_parts(text, len as usize)
        };
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| Error::NotUtf8 { column: index })
    }

    /// A column as its stored type gives it (a blob as text).
    pub fn cell(&self, index: c_int) -> Result<Cell> {
        // SAFETY: called after a step that returned a row.
        let kind = unsafe { ffi::sqlite3_column_type(self.raw.as_ptr(), index) };
        Ok(match kind {
            ffi::SQLITE_INTEGER => Cell::Int(self.column_i64(index)),
            ffi::SQLITE_FLOAT => Cell::Real(self.column_f64(index)),
            ffi::SQLITE_NULL => Cell::Null,
            _ => Cell::Text(self.column_text(index)?.unwrap_or_default()),
        })
    }
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: finalized exactly once, here.
        unsafe {
            ffi::sqlite3_finalize(self.raw.as_ptr());
        }
    }
}

fn error(db: NonNull<RawConnection>, rc: c_int) -> Error {
    // SAFETY: `db` is live; the message is copied at once.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db.as_ptr());
        if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    };
    Error::Sqlite { code: rc, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_come_back_as_their_types_and_errors_say_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (a TEXT, b INTEGER, c REAL, d TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('x', 1, 1.5, NULL), ('y', 2, 2.5, 'z')")
            .execute(&pool)
            .await
            .unwrap();
        let read = rows(
            &pool,
            "SELECT a, b, c, d FROM t WHERE b >= ? ORDER BY b",
            &[Value::Int(1)],
        )
        .await
        .unwrap();
        assert_eq!(
            read,
            vec![
                vec![Cell::Text("x".into()), Cell::Int(1), Cell::Real(1.5), Cell::Null],
                vec![
                    Cell::Text("y".into()),
                    Cell::Int(2),
                    Cell::Real(2.5),
                    Cell::Text("z".into())
                ],
            ]
        );
        let one = rows(
            &pool,
            "SELECT a FROM t WHERE a = ?1 AND d = ?2",
            &[Value::Text("y"), Value::Text("z")],
        )
        .await
        .unwrap();
        assert_eq!(one, vec![vec![Cell::Text("y".into())]]);
        let error = rows(&pool, "SELECT missing_column FROM t", &[])
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("no such column: missing_column"),
            "{error}"
        );
        assert!(!error.is_full());
    }
}
