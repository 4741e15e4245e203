//! The store's second pool, for large reads around sqlx's `Any` layer
//! (see [`ReadPool`]).

use tandem_core::history::HistoryPoint;

use super::history::Start;
use super::rows::{Cell, ReadRow};
use super::{pg_history, sqlite_reader, Backend};
use crate::error::{StoreError, StoreResult};

/// Pools for the large reads (history pages, searches) that go around
/// sqlx's `Any` layer, whose per-value conversions (and, on SQLite, per-row
/// hand-off between threads) cost several times the read itself: a
/// history page is up to 25,000 points, a page of runs ~20,000 rows.
pub(super) enum ReadPool {
    /// Read-only connections to the SQLite file, stepped through SQLite's
    /// C API (`sqlite_reader`).
    Sqlite(sqlx::SqlitePool),
    /// Typed rows, from a small pool of its own; history pages from
    /// another, whose connections have sorting off.
    Postgres {
        pool: sqlx::PgPool,
        history: sqlx::PgPool,
    },
}

impl ReadPool {
    pub(super) async fn open(url: &str, backend: Backend, max_connections: u32) -> StoreResult<Self> {
        // A few connections are enough for the pages being read at one
        // time (each SQLite connection is a thread of sqlx's).
        let max_connections = max_connections.clamp(1, 4);
        match backend {
            Backend::Sqlite => Ok(ReadPool::Sqlite(sqlite_reader::open(url, max_connections).await?)),
            Backend::Postgres => {
                // One process per read: the server answers many requests
                // at once, and a page walked in order of an index (a run
                // search ordered by a metric) split among parallel workers
                // cost several times the CPU and more wall time (measured
                // at 100,000 runs: 180 ms in parallel, 23 ms alone).
                let options = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .map_err(StoreError::database)?
                    .options([("max_parallel_workers_per_gather", "0")]);
                let pool_options = || {
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(max_connections)
                        .test_before_acquire(false)
                };
                // A history page is a range of the metrics key, already in
                // order; the planner only reads it so when it expects many
                // points. For a run written since the table's last ANALYZE
                // it expects a handful (none of its ids in the statistics)
                // and chose to read all the key's points and sort them for
                // each page: 106 ms instead of 21 for the first page of
                // 200,000 points, the sort spilling to disk. On connections
                // with sorting off the index's order is the only plan left
                // (read-only: that is all they are for). A pool of their own,
                // so that the setting costs a page no round trip; opened
                // when first needed.
                let history = pool_options()
                    .max_connections(max_connections.min(2))
                    .connect_lazy_with(
                        options
                            .clone()
                            .options([("enable_sort", "off"), ("default_transaction_read_only", "on")]),
                    );
                let pool = pool_options()
                    .connect_with(options)
                    .await
                    .map_err(StoreError::database)?;
                Ok(ReadPool::Postgres { pool, history })
            }
        }
    }

    /// Every row of `sql` (`$N` parameters bound to `arguments` as text),
    /// each as its columns.
    pub(super) async fn cells(&self, sql: &str, arguments: &[&str]) -> StoreResult<Vec<Vec<Cell>>> {
        match self {
            ReadPool::Sqlite(pool) => sqlite_reader::rows(pool, sql, arguments).await,
            ReadPool::Postgres { pool, .. } => {
                let mut query = sqlx::query(sql);
                for argument in arguments {
                    query = query.bind(*argument);
                }
                let rows = query.fetch_all(pool).await.map_err(StoreError::database)?;
                rows.iter().map(pg_cells).collect()
            }
        }
    }

    /// Every row of `sql` like [`ReadPool::cells`], PostgreSQL's rows kept
    /// as they came (their columns decoded when read).
    pub(super) async fn read_rows(&self, sql: &str, arguments: &[&str]) -> StoreResult<Vec<ReadRow>> {
        match self {
            ReadPool::Sqlite(pool) => Ok(sqlite_reader::rows(pool, sql, arguments)
                .await?
                .into_iter()
                .map(ReadRow::Cells)
                .collect()),
            ReadPool::Postgres { pool, .. } => {
                let mut query = sqlx::query(sql);
                for argument in arguments {
                    query = query.bind(*argument);
                }
                let rows = query.fetch_all(pool).await.map_err(StoreError::database)?;
                Ok(rows.into_iter().map(ReadRow::Postgres).collect())
            }
        }
    }

    /// Up to `limit` points of `run_id`'s `key` from `start`.
    pub(super) async fn page(
        &self,
        run_id: &str,
        key: &str,
        start: Start<'_>,
        limit: i64,
    ) -> StoreResult<Vec<HistoryPoint>> {
        match self {
            ReadPool::Sqlite(pool) => sqlite_reader::metric_page(pool, run_id, key, start, limit).await,
            ReadPool::Postgres { history, .. } => pg_history::page(history, run_id, key, start, limit).await,
        }
    }
}

/// A PostgreSQL row's columns as cells, by their types.
fn pg_cells(row: &sqlx::postgres::PgRow) -> StoreResult<Vec<Cell>> {
    use sqlx::{Column, Row, TypeInfo, ValueRef};
    let mut cells = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        if row.try_get_raw(index).map_err(StoreError::database)?.is_null() {
            cells.push(Cell::Null);
            continue;
        }
        let get = |error: sqlx::Error| StoreError::database(error);
        cells.push(match column.type_info().name() {
            "INT8" => Cell::Int(row.try_get::<i64, _>(index).map_err(get)?),
            "INT4" => Cell::Int(row.try_get::<i32, _>(index).map_err(get)?.into()),
            "INT2" => Cell::Int(row.try_get::<i16, _>(index).map_err(get)?.into()),
            "BOOL" => Cell::Int(row.try_get::<bool, _>(index).map_err(get)?.into()),
            "FLOAT8" => Cell::Real(row.try_get::<f64, _>(index).map_err(get)?),
            "FLOAT4" => Cell::Real(row.try_get::<f32, _>(index).map_err(get)?.into()),
            _ => Cell::Text(row.try_get::<String, _>(index).map_err(get)?),
        });
    }
    Ok(cells)
}
