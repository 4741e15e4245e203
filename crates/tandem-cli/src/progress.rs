//! A progress line on stderr for long operations (backups, restores,
//! uploads), drawn only when stderr is a terminal so logs and pipes stay
//! clean.

use std::io::{IsTerminal, Write};

use serde_json::Value;

pub struct ProgressLine {
    enabled: bool,
    drawn: bool,
}

impl ProgressLine {
    pub fn new() -> ProgressLine {
        ProgressLine {
            enabled: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// Draws `{phase, done, total, unit}` as `phase [#####     ] 42% 420/1000 unit`.
    pub fn update(&mut self, progress: &Value) {
        if !self.enabled {
            return;
        }
        let phase = progress["phase"].as_str().unwrap_or("working");
        let done = progress["done"].as_i64().unwrap_or(0);
        let total = progress["total"].as_i64().unwrap_or(0);
        let unit = progress["unit"].as_str().unwrap_or("");
        let line = render(phase, done, total, unit);
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
        self.drawn = true;
    }

    /// Clears the line (before the result is printed).
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

pub fn render(phase: &str, done: i64, total: i64, unit: &str) -> String {
    const WIDTH: i64 = 30;
    if total <= 0 {
        return format!("{phase}: {done} {unit}");
    }
    let done = done.clamp(0, total);
    let filled = done * WIDTH / total;
    format!(
        "{phase} [{}{}] {:>3}% {done}/{total} {unit}",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize),
        done * 100 / total
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_a_bar() {
        assert_eq!(
            super::render("copying", 5, 10, "files"),
            "copying [###############               ]  50% 5/10 files"
        );
        assert_eq!(
            super::render("archiving", 3, 0, "records"),
            "archiving: 3 records"
        );
    }
}
