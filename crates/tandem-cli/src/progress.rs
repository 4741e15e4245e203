//! Progress bars on stderr for long operations (backups, restores, uploads,
//! verification), drawn with `indicatif` only when stderr is a terminal, so
//! logs and pipes stay clean. The server streams `{phase, done, total, unit}`
//! lines; each phase gets its own bar (a spinner when the total is unknown),
//! byte counts are shown as sizes with a rate and an ETA.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

pub struct ProgressLine {
    bar: Option<ProgressBar>,
    phase: String,
    /// Whether the bar is drawn at all: false in pipes, logs and tests.
    visible: bool,
}

impl ProgressLine {
    pub fn new() -> ProgressLine {
        ProgressLine::with_target(ProgressDrawTarget::stderr())
    }

    fn with_target(target: ProgressDrawTarget) -> ProgressLine {
        ProgressLine {
            bar: None,
            phase: String::new(),
            visible: !target.is_hidden(),
        }
    }

    /// Shows `{phase, done, total, unit}`: a new bar when the phase changes.
    pub fn update(&mut self, progress: &Value) {
        if !self.visible {
            return;
        }
        let phase = progress["phase"].as_str().unwrap_or("working");
        let done = progress["done"].as_u64().unwrap_or(0);
        let total = progress["total"].as_u64().unwrap_or(0);
        let unit = progress["unit"].as_str().unwrap_or("");
        if self.bar.is_none() || self.phase != phase {
            self.finish();
            self.bar = Some(new_bar(phase, total, unit));
            self.phase = phase.to_string();
        }
        let bar = self.bar.as_ref().expect("made above");
        if total > 0 && bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    }

    /// Clears the bar (before the result is printed).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The style of a phase's bar: sizes for bytes, counts with their unit
/// otherwise, a spinner while the total is unknown.
fn style(total: u64, unit: &str) -> ProgressStyle {
    let template = match (total > 0, unit == "bytes") {
        (true, true) => "{msg} [{wide_bar}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        (true, false) => "{msg} [{wide_bar}] {percent:>3}% {pos}/{len} {prefix} eta {eta}",
        (false, true) => "{spinner} {msg}: {bytes} {bytes_per_sec}",
        (false, false) => "{spinner} {msg}: {pos} {prefix}",
    };
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("#>-")
}

fn new_bar(phase: &str, total: u64, unit: &str) -> ProgressBar {
    let bar = if total > 0 {
        ProgressBar::new(total)
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(style(total, unit));
    bar.set_message(phase.to_string());
    bar.set_prefix(unit.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_is_valid() {
        for (total, unit) in [(10, "bytes"), (10, "records"), (0, "bytes"), (0, "files")] {
            let _ = style(total, unit);
        }
    }

    #[test]
    fn nothing_is_drawn_where_nobody_sees_it() {
        let mut line = ProgressLine::with_target(ProgressDrawTarget::hidden());
        line.update(&json!({"phase": "copying", "done": 5, "total": 10, "unit": "files"}));
        assert!(line.bar.is_none());
    }

    #[test]
    fn a_new_phase_gets_a_new_bar_and_positions_follow() {
        let mut line = ProgressLine {
            bar: None,
            phase: String::new(),
            visible: true,
        };
        line.update(&json!({"phase": "archiving", "done": 3, "total": 0, "unit": "records"}));
        assert_eq!(line.bar.as_ref().unwrap().position(), 3);
        line.update(&json!({"phase": "copying", "done": 5, "total": 10, "unit": "bytes"}));
        assert_eq!(line.phase, "copying");
        let bar = line.bar.as_ref().unwrap();
        assert_eq!((bar.position(), bar.length()), (5, Some(10)));
        line.finish();
        assert!(line.bar.is_none());
    }
}
