//! How `ws-daemon ctl` shows progress reports: a bar on a terminal, else plain lines on stderr (one
//! per phase and at most one every few seconds in between), so logs of scripts stay readable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wsd_proto::wsdaemon::ProgressResponse;

/// Plain lines between phase changes come at most this often.
const LINE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Bar,
    Lines,
}

impl Display {
    pub fn for_stderr(plain: bool) -> Display {
        if !plain && std::io::stderr().is_terminal() {
            Display::Bar
        } else {
            Display::Lines
        }
    }

    pub fn start(self, id: &str) -> Shown {
        let bar = match self {
            Display::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            Display::Lines => None,
        };
        Shown {
            id: id.to_string(),
            bar,
            last_phase: None,
            last_line: None,
        }
    }
}

/// The progress of one operation as it is being shown.
pub struct Shown {
    id: String,
    bar: Option<ProgressBar>,
    last_phase: Option<String>,
    last_line: Option<Instant>,
}

impl Shown {
    pub fn show(&mut self, r: &ProgressResponse) {
        if r.operation.is_empty() {
            return;
        }
        match &self.bar {
            Some(bar) => show_on_bar(bar, &self.id, r),
            None => {
                let phase_changed = self.last_phase.as_deref() != Some(r.phase.as_str());
                let due = self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY);
                if phase_changed || due || r.done {
                    eprintln!("{}", line(&self.id, r));
                    self.last_phase = Some(r.phase.clone());
                    self.last_line = Some(Instant::now());
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.finish();
    }
}

fn show_on_bar(bar: &ProgressBar, id: &str, r: &ProgressResponse) {
    let style = if r.bytes_total > 0 {
        bar.set_length(r.bytes_total);
        "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {msg}"
    } else {
        bar.unset_length();
        "{spinner} {prefix} {bytes} {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(style)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{id} {}", r.operation));
    bar.set_position(r.bytes_done);
    bar.set_message(format!("{} ({})", r.phase, files(r)));
    if r.done {
        bar.finish_and_clear();
        eprintln!("{}", line(id, r));
    }
}

/// One plain line: "ws-1 backup: writing changed files, 12.0 MiB of 64.0 MiB, 3 of 8 files, 1.3 s".
pub fn line(id: &str, r: &ProgressResponse) -> String {
    let bytes = if r.bytes_total > 0 {
        format!("{} of {}", size(r.bytes_done), size(r.bytes_total))
    } else {
        size(r.bytes_done)
    };
    let mut text = format!(
        "{id} {}: {}, {bytes}, {}, {:.1} s",
        r.operation,
        r.phase,
        files(r),
        r.elapsed_secs
    );
    if !r.error.is_empty() {
        text.push_str(": ");
        text.push_str(&r.error);
    }
    text
}

fn files(r: &ProgressResponse) -> String {
    if r.files_total > 0 {
        format!("{} of {} files", r.files_done, r.files_total)
    } else {
        format!("{} files", r.files_done)
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_what_is_known() {
        let r = ProgressResponse {
            operation: "backup".into(),
            phase: "writing changed files".into(),
            bytes_done: 12 << 20,
            bytes_total: 64 << 20,
            files_done: 3,
            files_total: 8,
            elapsed_secs: 1.26,
            ..Default::default()
        };
        assert_eq!(
            line("ws-1", &r),
            "ws-1 backup: writing changed files, 12.0 MiB of 64.0 MiB, 3 of 8 files, 1.3 s"
        );
        let r = ProgressResponse {
            operation: "init".into(),
            phase: "failed".into(),
            bytes_done: 100,
            done: true,
            error: "no backup found".into(),
            ..Default::default()
        };
        assert_eq!(
            line("ws-1", &r),
            "ws-1 init: failed, 100 B, 0 files, 0.0 s: no backup found"
        );
    }

    #[test]
    fn plain_lines_come_on_phase_changes_and_not_for_every_report() {
        let mut shown = Display::Lines.start("w");
        let mut r = ProgressResponse {
            operation: "backup".into(),
            phase: "reading".into(),
            ..Default::default()
        };
        shown.show(&r);
        let first = shown.last_line.expect("first line printed");
        r.bytes_done = 10;
        shown.show(&r);
        assert_eq!(
            shown.last_line,
            Some(first),
            "same phase within the interval"
        );
        r.phase = "uploading".into();
        shown.show(&r);
        assert_ne!(shown.last_line, Some(first), "a new phase is printed");
    }
}
