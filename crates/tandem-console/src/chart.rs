//! Metric charts drawn on the server as SVG. The points come from the
//! store's `metric_history_envelope`: a history of any length arrives as
//! at most a few thousand points (each bucket's minimum and maximum, MLflow's
//! `get-history-bulk-interval` idea), so the page stays small and spikes
//! survive. One chart can overlay several runs' series (the comparison).

use std::fmt::Write;

pub use tandem_core::history::HistoryAxis as Axis;

/// Buckets along the x axis; each keeps its minimum and maximum.
pub const MAX_BUCKETS: usize = 1_000;

/// Series colours, in order (the stylesheet's palette).
const COLOURS: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#db2777",
];

/// Plot geometry shared with the page's script (zooming maps a drag back
/// to x through `data-x0`, `data-x1`, `data-left` and `data-right`).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const BOTTOM: f64 = 28.0;

/// An SVG line chart of one series of `points` (x order), `log` for a log
/// scale of y (non-positive values are left out then).
pub fn svg(points: &[(f64, f64)], log: bool, label: &str) -> String {
    overlay(&[("", points.to_vec())], log, label)
}

/// One chart of several named series (runs) on shared axes, with a legend
/// when there is more than one.
pub fn overlay(series: &[(&str, Vec<(f64, f64)>)], log: bool, label: &str) -> String {
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, points)| {
            let points = points
                .iter()
                .filter(|(_, y)| y.is_finite() && (!log || *y > 0.0))
                .map(|(x, y)| (*x, if log { y.log10() } else { *y }))
                .collect();
            (*name, points)
        })
        .collect();
    let all = series.iter().flat_map(|(_, points)| points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut any = false;
    for (x, y) in all {
        any = true;
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    let mut out = String::new();
    let label = tandem_api::access::html_escape(label);
    if !any {
        let _ = write!(
            out,
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}"><text x="50%" y="50%" text-anchor="middle">no points to draw</text></svg>"#
        );
        return out;
    }
    let (shown_x0, shown_x1) = (x0, x1);
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" data-x0="{x0}" data-x1="{x1}" data-left="{LEFT}" data-right="{}" data-width="{WIDTH}">"#,
        WIDTH - RIGHT
    );
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT);
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
        r = WIDTH - RIGHT
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
        r#"<text x="{LEFT}" y="{}">{shown_x0}</text><text x="{}" y="{}" text-anchor="end">{shown_x1}</text>"#,
        HEIGHT - 8.0,
        WIDTH - RIGHT,
        HEIGHT - 8.0
    );
    for (index, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let _ = write!(
            out,
            r#"<polyline class="series" fill="none" stroke="{colour}" data-series="{}" points=""#,
            tandem_api::access::html_escape(name)
        );
        for (x, y) in points {
            let _ = write!(out, "{:.1},{:.1} ", sx(*x), sy(*y));
        }
        out.push_str(r#""/>"#);
    }
    if series.len() > 1 {
        for (index, (name, _)) in series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let y = 14.0 + 14.0 * index as f64;
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="10" height="3" fill="{colour}"/><text class="legend" x="{}" y="{y}">{}</text>"#,
                WIDTH - 150.0,
                y - 4.0,
                WIDTH - 136.0,
                tandem_api::access::html_escape(name)
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_escapes_its_label_and_draws_every_point() {
        let chart = svg(&[(0.0, 1.0), (1.0, 0.1), (2.0, 0.01)], true, "<loss>");
        assert!(chart.contains("&lt;loss&gt;") && !chart.contains("<loss>"));
        assert_eq!(chart.matches(',').count(), 3, "{chart}");
        assert!(svg(&[], false, "x").contains("no points"));
        // Non-finite values are not drawn.
        let chart = svg(&[(0.0, f64::INFINITY), (1.0, 2.0)], false, "x");
        assert_eq!(chart.matches(',').count(), 1, "{chart}");
    }

    #[test]
    fn overlaid_series_share_axes_and_get_a_legend() {
        let chart = overlay(
            &[
                ("run <a>", vec![(0.0, 1.0), (10.0, 2.0)]),
                ("run b", vec![(5.0, 3.0)]),
            ],
            false,
            "loss",
        );
        assert_eq!(chart.matches("<polyline").count(), 2);
        assert!(chart.contains(r#"data-x0="0" data-x1="10""#), "{chart}");
        assert!(chart.contains("run &lt;a&gt;") && chart.contains(">run b</text>"));
        assert!(chart.contains(COLOURS[0]) && chart.contains(COLOURS[1]));
    }
}
