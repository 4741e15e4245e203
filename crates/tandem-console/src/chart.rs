//! Metric charts drawn on the server as SVG: a history of any length is
//! downsampled to at most `MAX_BUCKETS` buckets along the x axis, each
//! keeping its first, minimum, maximum and last point, so spikes survive
//! (MLflow's `get-history-bulk-interval` idea) and the page carries a few
//! thousand points at most.

use std::fmt::Write;

use tandem_core::model::Metric;

/// Buckets along the x axis; each keeps up to four points.
pub const MAX_BUCKETS: usize = 500;

/// The x of a point: its step, or its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Step,
    Time,
}

fn x_of(metric: &Metric, axis: Axis) -> f64 {
    match axis {
        Axis::Step => metric.step as f64,
        Axis::Time => metric.timestamp as f64,
    }
}

/// The points to draw, in x order: every point when there are few, else
/// per bucket the first, the minimum, the maximum and the last.
pub fn downsample(history: &[Metric], axis: Axis) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = history
        .iter()
        .filter(|metric| metric.value.is_finite())
        .map(|metric| (x_of(metric, axis), metric.value))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    if points.len() <= MAX_BUCKETS * 4 {
        return points;
    }
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let width = ((last - first) / MAX_BUCKETS as f64).max(f64::MIN_POSITIVE);
    let mut kept = Vec::with_capacity(MAX_BUCKETS * 4);
    let mut start = 0;
    while start < points.len() {
        let bucket = (((points[start].0 - first) / width) as usize).min(MAX_BUCKETS - 1);
        let mut end = start;
        while end < points.len()
            && (((points[end].0 - first) / width) as usize).min(MAX_BUCKETS - 1) == bucket
        {
            end += 1;
        }
        let slice = &points[start..end];
        let min = slice
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("non-empty");
        let max = slice
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("non-empty");
        let mut chosen = vec![slice[0], min, max, slice[slice.len() - 1]];
        chosen.sort_by(|a, b| a.0.total_cmp(&b.0));
        chosen.dedup();
        kept.extend(chosen);
        start = end;
    }
    kept
}

/// An SVG line chart of `points` (already downsampled), `log` for a log
/// scale of y (non-positive values are left out then).
pub fn svg(points: &[(f64, f64)], log: bool, label: &str) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 220.0;
    const LEFT: f64 = 64.0;
    const BOTTOM: f64 = 28.0;
    let points: Vec<(f64, f64)> = points
        .iter()
        .filter(|(_, y)| !log || *y > 0.0)
        .map(|(x, y)| (*x, if log { y.log10() } else { *y }))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        tandem_api::access::html_escape(label)
    );
    if points.is_empty() {
        out.push_str(r#"<text x="50%" y="50%" text-anchor="middle">no points to draw</text></svg>"#);
        return out;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in &points {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - 8.0);
    let sy = |y: f64| 8.0 + (1.0 - (y - y0) / (y1 - y0)) * (HEIGHT - BOTTOM - 8.0);
    let show = |y: f64| {
        if log {
            format!("{:.3e}", 10f64.powf(y))
        } else {
            format!("{y:.4}")
        }
    };
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}"/><line class="axis" x1="{LEFT}" y1="8" x2="{LEFT}" y2="{b}"/>"#,
        b = HEIGHT - BOTTOM,
        r = WIDTH - 8.0
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="16" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
        LEFT - 4.0,
        show(y1),
        LEFT - 4.0,
        HEIGHT - BOTTOM,
        show(y0)
    );
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="{}">{x0}</text><text x="{}" y="{}" text-anchor="end">{x1}</text>"#,
        HEIGHT - 8.0,
        WIDTH - 8.0,
        HEIGHT - 8.0
    );
    out.push_str(r#"<polyline class="series" fill="none" points=""#);
    for (x, y) in &points {
        let _ = write!(out, "{:.1},{:.1} ", sx(*x), sy(*y));
    }
    out.push_str(r#""/></svg>"#);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(step: i64, value: f64) -> Metric {
        Metric {
            key: "loss".into(),
            value,
            timestamp: 1_000 + step,
            step,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        }
    }

    #[test]
    fn a_million_points_become_a_few_thousand_and_keep_their_extremes() {
        let mut history: Vec<Metric> = (0..1_000_000)
            .map(|step| metric(step, (step % 97) as f64))
            .collect();
        history[654_321].value = 1e9; // a spike
        history[123_456].value = -1e9;
        let points = downsample(&history, Axis::Step);
        assert!(points.len() <= MAX_BUCKETS * 4, "{}", points.len());
        assert!(points.len() > MAX_BUCKETS, "{}", points.len());
        assert!(points.iter().any(|(x, y)| *x == 654_321.0 && *y == 1e9));
        assert!(points.iter().any(|(x, y)| *x == 123_456.0 && *y == -1e9));
        assert_eq!(points.first().unwrap().0, 0.0);
        assert_eq!(points.last().unwrap().0, 999_999.0);
        assert!(points.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    }

    #[test]
    fn few_points_are_kept_whole_and_non_finite_ones_left_out() {
        let history = vec![metric(2, 0.5), metric(1, f64::NAN), metric(0, 1.0)];
        assert_eq!(downsample(&history, Axis::Step), vec![(0.0, 1.0), (2.0, 0.5)]);
    }

    #[test]
    fn the_svg_escapes_its_label_and_draws_every_point() {
        let chart = svg(&[(0.0, 1.0), (1.0, 0.1), (2.0, 0.01)], true, "<loss>");
        assert!(chart.contains("&lt;loss&gt;") && !chart.contains("<loss>"));
        assert_eq!(chart.matches(',').count(), 3, "{chart}");
        assert!(svg(&[], false, "x").contains("no points"));
    }
}
