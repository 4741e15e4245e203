//! A metric history reduced for a chart in the database: a history of a
//! million points is never read whole, only its count and range, then one
//! row per bucket of x with the bucket's extremes (`GROUP BY` over the
//! run's and key's slice of the metrics key).

use sqlx::Row;
use tandem_core::history::{self, HistoryAxis, HistoryBucket, HistoryEnvelope};
use tandem_core::model::Metric;

use super::SqlStore;
use crate::error::StoreResult;
use crate::WorkspaceRef;

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

    /// The distinct steps of `key` in `run_id`, ascending: what MLflow's
    /// bulk-interval sampling needs, read as integers from the metrics key
    /// instead of decoding every point.
    pub(crate) async fn metric_steps_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
    ) -> StoreResult<Vec<i64>> {
        self.run_info_in(ws, run_id).await?;
        let rows =
            sqlx::query("SELECT DISTINCT step FROM metrics WHERE run_id = $1 AND key = $2 ORDER BY step")
                .bind(run_id)
                .bind(key)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<i64, _>("step")?))
            .collect()
    }

    /// The points of `key` in `run_id` at `steps` (any order), ordered by
    /// step, timestamp and value.
    pub(crate) async fn metric_history_at_steps_impl(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        steps: &[i64],
    ) -> StoreResult<Vec<Metric>> {
        self.run_info_in(ws, run_id).await?;
        let mut steps = steps.to_vec();
        steps.sort_unstable();
        steps.dedup();
        let mut points = Vec::new();
        // Bounded lists of bind parameters, well under every backend's limit.
        for chunk in steps.chunks(500) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics \
                 WHERE run_id = $1 AND key = $2 AND step IN ({}) ORDER BY step, timestamp, value",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(run_id).bind(key);
            for step in chunk {
                query = query.bind(*step);
            }
            for row in query.fetch_all(&self.pool).await? {
                points.push(super::load::metric_row(&row, run_id)?);
            }
        }
        Ok(points)
    }
}
