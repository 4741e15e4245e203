//! Metric histories made small for charts: the bounds of MLflow's
//! `get-history-bulk-interval` (its UI charts with it; the store samples
//! each run's rows as MLflow 3.17 does, `NTILE` buckets plus the last row)
//! and the envelope of one history Tandem's console draws.

use crate::model::Metric;
use crate::search::Page;

/// A page of one run's metric history as the store reads it: the run and
/// key once, then each point's numbers. A page is up to 25,000 points; as
/// `Metric`s each point took 144 bytes and two copies of strings every
/// point shares (the key and the run id), built and dropped for nothing
/// but writing them out again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryPage {
    pub run_id: String,
    pub key: String,
    /// In the history's order (step, timestamp, value, then the texts).
    pub points: Vec<HistoryPoint>,
    /// Present only when more points follow this page.
    pub next_page_token: Option<String>,
}

/// One point of a [`HistoryPage`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    /// NaN for a NaN point.
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    /// The model and dataset the point was logged for, when it has any
    /// (nearly no point has: boxed, they cost the rest one word).
    pub texts: Option<Box<PointTexts>>,
}

/// What a point may carry besides its numbers; each `None` when empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointTexts {
    pub model_id: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

impl PointTexts {
    /// The texts, or `None` when all three are empty.
    pub fn of(
        model_id: Option<String>,
        dataset_name: Option<String>,
        dataset_digest: Option<String>,
    ) -> Option<Box<Self>> {
        let texts = PointTexts {
            model_id: model_id.filter(|text| !text.is_empty()),
            dataset_name: dataset_name.filter(|text| !text.is_empty()),
            dataset_digest: dataset_digest.filter(|text| !text.is_empty()),
        };
        (texts != PointTexts::default()).then(|| Box::new(texts))
    }
}

impl HistoryPoint {
    /// The point as MLflow's `Metric` of `key` in `run_id`.
    pub fn metric(&self, key: &str, run_id: &str) -> Metric {
        let texts = self.texts.as_deref();
        let text = |pick: fn(&PointTexts) -> &Option<String>| texts.and_then(|texts| pick(texts).clone());
        Metric {
            key: key.to_string(),
            value: self.value,
            timestamp: self.timestamp,
            step: self.step,
            dataset_name: text(|texts| &texts.dataset_name),
            dataset_digest: text(|texts| &texts.dataset_digest),
            model_id: text(|texts| &texts.model_id),
            run_id: Some(run_id.to_string()),
        }
    }
}

impl HistoryPage {
    /// The page's points as MLflow's `Metric`s (each with its key and run).
    pub fn metrics(&self) -> Vec<Metric> {
        self.points
            .iter()
            .map(|point| point.metric(&self.key, &self.run_id))
            .collect()
    }

    /// The page as a page of MLflow's `Metric`s.
    pub fn into_metric_page(self) -> Page<Metric> {
        Page {
            items: self.metrics(),
            next_page_token: self.next_page_token,
        }
    }
}

/// MLflow's bound on the sample per run.
pub const MAX_RESULTS_PER_RUN: i64 = 2500;
/// MLflow's bound on the runs of one request.
pub const MAX_RUNS: usize = 100;

/// Which x a chart of one history is drawn along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryAxis {
    Step,
    /// The point's timestamp (milliseconds).
    Time,
}

/// One history made small enough to chart: every point when there are few,
/// else, per bucket of x, the bucket's minimum and maximum, so spikes
/// survive whatever the history's length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryEnvelope {
    /// Points in the range (NaN left out).
    pub total: u64,
    /// (x, value), in x order.
    pub points: Vec<(i64, f64)>,
    /// Whether `points` are buckets' extremes rather than every point.
    pub downsampled: bool,
}

/// One bucket of x of a long history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryBucket {
    pub first_x: i64,
    pub last_x: i64,
    pub min: f64,
    pub max: f64,
}

/// The width of each of `buckets` buckets covering `[low, high]`, never 0
/// and never overflowing (`high - low` may span all of `i64`).
pub fn bucket_width(low: i64, high: i64, buckets: usize) -> i64 {
    let span = (high as i128 - low as i128 + 1).max(1);
    let buckets = buckets.max(1) as i128;
    ((span + buckets - 1) / buckets).clamp(1, i64::MAX as i128) as i64
}

/// The points a line through `buckets` (in x order) draws: each bucket's
/// minimum and maximum, at its first and last x, in the order that
/// continues the line from the bucket before (so a flat stretch stays flat
/// instead of zig-zagging). Infinite extremes are left out.
pub fn envelope_points(buckets: &[HistoryBucket]) -> Vec<(i64, f64)> {
    let mut points: Vec<(i64, f64)> = Vec::with_capacity(buckets.len() * 2);
    for bucket in buckets {
        let previous = points.last().map(|(_, value)| *value);
        let low_first = match previous {
            Some(previous) => (previous - bucket.min).abs() <= (previous - bucket.max).abs(),
            None => true,
        };
        let (first, second) = if low_first {
            (bucket.min, bucket.max)
        } else {
            (bucket.max, bucket.min)
        };
        if first.is_finite() {
            points.push((bucket.first_x, first));
        }
        if second.is_finite() && (bucket.max != bucket.min || bucket.first_x != bucket.last_x) {
            points.push((bucket.last_x, second));
        }
    }
    points
}

/// The 0-based positions at which SQL's `NTILE(buckets)` starts each bucket
/// over `rows` ordered rows: as many buckets as there are rows at most, the
/// first `rows % buckets` of them one row longer.
pub fn ntile_starts(rows: u64, buckets: u64) -> Vec<u64> {
    let buckets = buckets.min(rows);
    if buckets == 0 {
        return Vec::new();
    }
    let (size, longer) = (rows / buckets, rows % buckets);
    (0..buckets)
        .map(|bucket| bucket * size + bucket.min(longer))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntile_starts_are_where_sql_starts_its_buckets() {
        // 10 rows in 4 buckets: sizes 3, 3, 2, 2.
        assert_eq!(ntile_starts(10, 4), vec![0, 3, 6, 8]);
        assert_eq!(ntile_starts(3, 5), vec![0, 1, 2]);
        assert_eq!(ntile_starts(0, 5), Vec::<u64>::new());
        assert_eq!(ntile_starts(7, 1), vec![0]);
    }

    #[test]
    fn bucket_widths_cover_the_range_without_overflow() {
        assert_eq!(bucket_width(0, 999, 500), 2);
        assert_eq!(bucket_width(0, 1000, 500), 3);
        assert_eq!(bucket_width(5, 5, 500), 1);
        assert!(bucket_width(i64::MIN, i64::MAX, 500) > 0);
        let width = bucket_width(i64::MIN, i64::MAX, 500);
        assert!(((i64::MAX as i128 - i64::MIN as i128) / width as i128) < 500);
    }

    #[test]
    fn envelopes_keep_extremes_in_the_order_that_continues_the_line() {
        let buckets = [
            HistoryBucket {
                first_x: 0,
                last_x: 9,
                min: 1.0,
                max: 5.0,
            },
            HistoryBucket {
                first_x: 10,
                last_x: 19,
                min: 4.0,
                max: 9.0,
            },
            HistoryBucket {
                first_x: 20,
                last_x: 20,
                min: 3.0,
                max: 3.0,
            },
            HistoryBucket {
                first_x: 30,
                last_x: 39,
                min: f64::NEG_INFINITY,
                max: 2.0,
            },
        ];
        assert_eq!(
            envelope_points(&buckets),
            vec![(0, 1.0), (9, 5.0), (10, 4.0), (19, 9.0), (20, 3.0), (30, 2.0)]
        );
    }
}
