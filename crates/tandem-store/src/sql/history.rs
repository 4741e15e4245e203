//! A metric history reduced for a chart in the database: a history of a
//! million points is never read whole, only its count and range, then one
//! row per bucket of x with the bucket's extremes (`GROUP BY` over the
//! run's and key's slice of the metrics key).

use sqlx::Row;
use tandem_core::history::{self, HistoryAxis, HistoryBucket, HistoryEnvelope};
use tandem_core::model::Metric;
use tandem_core::search::HistoryCursor;

use super::SqlStore;
use crate::error::StoreResult;
use crate::WorkspaceRef;

/// Where a history page starts: at the first point, after a cursor, or at
/// an offset (tokens MLflow wrote).
pub(super) enum Start<'a> {
    /// The first page (no `OFFSET` to skip).
    First,
    Offset(i64),
    After(&'a HistoryCursor),
}

/// The history page query for `start`, in numbered parameters: `$1` the
/// run, `$2` the key, `$3` the limit, then (but for the first page) `$4`
/// the offset or `$4`…`$10` the cursor. In the metrics key's order, so a
/// page is a range of the key.
pub(super) fn page_sql(start: &Start<'_>) -> String {
    const COLUMNS: &str =
        "SELECT timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics";
    const ORDER: &str = "ORDER BY step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest";
    match start {
        Start::First => format!("{COLUMNS} WHERE run_id = $1 AND key = $2 {ORDER} LIMIT $3"),
        Start::Offset(_) => format!("{COLUMNS} WHERE run_id = $1 AND key = $2 {ORDER} LIMIT $3 OFFSET $4"),
        Start::After(_) => format!(
            "{COLUMNS} WHERE run_id = $1 AND key = $2 AND \
             (step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest) > \
             ($4, $5, $6, $7, $8, $9, $10) {ORDER} LIMIT $3"
        ),
    }
}

impl SqlStore {
    pub(crate) async fn metric_history_envelope_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        axis: HistoryAxis,
        range: Option<(i64, i64)>,
        buckets: usize,
    ) -> StoreResult<HistoryEnvelope> {
        self.run_info_in(ws, run_id).await?;
        // A column name, never the caller's text.
        let x = match axis {
            HistoryAxis::Step => "step",
            HistoryAxis::Time => "timestamp",
        };
        let (low, high) = range.unwrap_or((i64::MIN, i64::MAX));
        let slice =
            format!("FROM metrics WHERE run_id = $1 AND key = $2 AND is_nan = 0 AND {x} >= $3 AND {x} <= $4");
        let stats = sqlx::query(&format!(
            "SELECT COUNT(*) AS n, MIN({x}) AS low, MAX({x}) AS high {slice}"
        ))
        .bind(run_id)
        .bind(key)
        .bind(low)
        .bind(high)
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = stats.try_get("n")?;
        if total == 0 {
            return Ok(HistoryEnvelope::default());
        }
        let buckets = buckets.max(1);
        if total as usize <= buckets * 2 {
            let rows = sqlx::query(&format!(
                "SELECT {x} AS x, value {slice} ORDER BY {x}, step, timestamp, value"
            ))
            .bind(run_id)
            .bind(key)
            .bind(low)
            .bind(high)
            .fetch_all(&self.pool)
            .await?;
            let points = rows
                .iter()
                .map(|row| Ok((row.try_get::<i64, _>("x")?, row.try_get::<f64, _>("value")?)))
                .collect::<StoreResult<Vec<_>>>()?;
            return Ok(HistoryEnvelope {
                total: total as u64,
                points,
                downsampled: false,
            });
        }
        let (first, last): (i64, i64) = (stats.try_get("low")?, stats.try_get("high")?);
        let width = history::bucket_width(first, last, buckets);
        // `x - first` cannot overflow: both lie in [first, last], and the
        // width keeps the quotient below `buckets`.
        let rows = sqlx::query(&format!(
            "SELECT ({x} - $5) / $6 AS bucket, MIN({x}) AS first_x, MAX({x}) AS last_x, \
             MIN(value) AS low_value, MAX(value) AS high_value {slice} GROUP BY ({x} - $5) / $6 ORDER BY bucket"
        ))
        .bind(run_id)
        .bind(key)
        .bind(first)
        .bind(last)
        .bind(first)
        .bind(width)
        .fetch_all(&self.pool)
        .await?;
        let buckets = rows
            .iter()
            .map(|row| {
                Ok(HistoryBucket {
                    first_x: row.try_get("first_x")?,
                    last_x: row.try_get("last_x")?,
                    min: row.try_get("low_value")?,
                    max: row.try_get("high_value")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(HistoryEnvelope {
            total: total as u64,
            points: history::envelope_points(&buckets),
            downsampled: true,
        })
    }

    /// MLflow 3.17's bulk-interval sample of `key` in `run_id`: the rows
    /// (within `range` of steps) ordered by step, timestamp, value and NaN,
    /// cut into `max_results` buckets as SQL's `NTILE` cuts them, the first
    /// row of each bucket, and the last row of all in place of the last
    /// sampled one when it is not already there (appended while there is
    /// room). Done in the database: never more than about `max_results`
    /// rows are read, however long the history.
    pub(crate) async fn metric_history_sampled_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        max_results: usize,
        range: Option<(i64, i64)>,
    ) -> StoreResult<Vec<Metric>> {
        self.run_info_in(ws, run_id).await?;
        let (low, high) = range.unwrap_or((i64::MIN, i64::MAX));
        let columns = "key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest";
        let slice = "FROM metrics WHERE run_id = $1 AND key = $2 AND step >= $3 AND step <= $4";
        let order = "step, timestamp, value, is_nan";
        let buckets = max_results.clamp(1, history::MAX_RESULTS_PER_RUN as usize);
        // Where SQL's `NTILE(buckets)` would start each bucket over the
        // slice's rows: computed from their count, so the database numbers
        // the rows once, in the order of the metrics key (no sort, no second
        // window), and returns only those rows.
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {slice}"))
            .bind(run_id)
            .bind(key)
            .bind(low)
            .bind(high)
            .fetch_one(&self.pool)
            .await?;
        let starts = history::ntile_starts(total.max(0) as u64, buckets as u64);
        let mut points = Vec::new();
        if !starts.is_empty() {
            // Row numbers we computed, written into the statement.
            let wanted: Vec<String> = starts.iter().map(|start| (start + 1).to_string()).collect();
            let sampled = format!(
                "SELECT {columns} FROM (\
                   SELECT {columns}, ROW_NUMBER() OVER (ORDER BY {order}) AS rn {slice}\
                 ) numbered WHERE rn IN ({}) ORDER BY {order}",
                wanted.join(", ")
            );
            for row in sqlx::query(&sampled)
                .bind(run_id)
                .bind(key)
                .bind(low)
                .bind(high)
                .fetch_all(&self.pool)
                .await?
            {
                points.push(super::load::metric_row(&row, run_id)?);
            }
        }
        let last = sqlx::query(&format!(
            "SELECT {columns} {slice} ORDER BY step DESC, timestamp DESC, value DESC, is_nan DESC LIMIT 1"
        ))
        .bind(run_id)
        .bind(key)
        .bind(low)
        .bind(high)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = last {
            let last = super::load::metric_row(&row, run_id)?;
            let same = |a: &Metric, b: &Metric| {
                (a.step, a.timestamp) == (b.step, b.timestamp)
                    && (a.value == b.value || (a.value.is_nan() && b.value.is_nan()))
            };
            match points.last() {
                Some(sampled) if same(sampled, &last) => {}
                _ if points.len() >= buckets => *points.last_mut().expect("full") = last,
                _ => points.push(last),
            }
        }
        Ok(points)
    }
}
