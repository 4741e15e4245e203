//! Sampling metric histories for charts across runs, as MLflow's
//! `get-history-bulk-interval` does (its UI charts with it): steps are
//! sampled evenly over the union of the runs' steps in a range, each run's
//! first and last step kept, and each run's rows bounded.

/// MLflow's bound on the sample per run.
pub const MAX_RESULTS_PER_RUN: i64 = 2500;
/// MLflow's bound on the runs of one request.
pub const MAX_RUNS: usize = 100;

/// The steps to return, given every run's steps (any order), at most about
/// `max_results` of them within `[start, end]` (None: from 0 to the last
/// step), plus every run's minimum and maximum inside the range.
pub fn sampled_steps(runs: &[Vec<i64>], max_results: usize, range: Option<(i64, i64)>) -> Vec<i64> {
    let max_results = max_results.max(1);
    let mut extremes: std::collections::BTreeSet<i64> = runs
        .iter()
        .filter(|steps| !steps.is_empty())
        .flat_map(|steps| {
            [
                *steps.iter().min().expect("non-empty"),
                *steps.iter().max().expect("non-empty"),
            ]
        })
        .collect();
    let all: std::collections::BTreeSet<i64> = runs.iter().flatten().copied().collect();
    let all: Vec<i64> = all.into_iter().collect();
    let (start, end) = range.unwrap_or((0, all.last().copied().unwrap_or(0)));
    extremes.retain(|step| (start..=end).contains(step));
    let from = all.partition_point(|step| *step < start);
    let to = all.partition_point(|step| *step <= end);
    let mut sampled: std::collections::BTreeSet<i64> = if to - from <= max_results {
        all[from..to].iter().copied().collect()
    } else {
        let interval = (to - from) as f64 / max_results as f64;
        let mut sampled: std::collections::BTreeSet<i64> = (0..max_results)
            .map(|i| from + (i as f64 * interval) as usize)
            .filter(|index| *index < to)
            .map(|index| all[index])
            .collect();
        sampled.insert(all[to - 1]);
        sampled
    };
    sampled.extend(extremes);
    sampled.into_iter().collect()
}

/// At most `max_results` evenly spaced indices into `total` items, the
/// first and the last always among them (MLflow's rounding: half to even).
pub fn evenly_spaced_indices(total: usize, max_results: usize) -> Vec<usize> {
    if total == 0 {
        return Vec::new();
    }
    if total <= max_results {
        return (0..total).collect();
    }
    if max_results <= 1 {
        return vec![total - 1];
    }
    let step = (total - 1) as f64 / (max_results - 1) as f64;
    let indices: std::collections::BTreeSet<usize> = (0..max_results)
        .map(|i| (i as f64 * step).round_ties_even() as usize)
        .collect();
    indices.into_iter().collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_steps_are_all_kept() {
        assert_eq!(
            sampled_steps(&[vec![0, 1, 2], vec![1, 5]], 10, None),
            vec![0, 1, 2, 5]
        );
    }

    #[test]
    fn many_steps_are_sampled_evenly_keeping_each_runs_ends() {
        let long: Vec<i64> = (0..10_000).collect();
        let short = vec![3, 17];
        let steps = sampled_steps(&[long, short], 100, None);
        assert!(steps.len() <= 104, "{}", steps.len());
        for kept in [0, 3, 17, 9_999] {
            assert!(steps.contains(&kept), "{kept}");
        }
        assert!(steps.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_range_bounds_the_sample() {
        let steps = sampled_steps(&[(0..100).collect()], 5, Some((10, 20)));
        assert!(steps.iter().all(|step| (10..=20).contains(step)), "{steps:?}");
        assert!(steps.contains(&20));
    }

    #[test]
    fn indices_are_spread_like_mlflows() {
        assert_eq!(evenly_spaced_indices(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(evenly_spaced_indices(5, 1), vec![4]);
        assert_eq!(evenly_spaced_indices(10, 3), vec![0, 4, 9]); // 4.5 rounds to even
        assert!(evenly_spaced_indices(0, 3).is_empty());
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
