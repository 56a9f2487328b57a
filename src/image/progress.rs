//! Pull progress: a bar per layer (bytes, rate, ETA) on a terminal, one line per step
//! otherwise, nothing with -q or --json.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

enum Mode {
    Bars(MultiProgress),
    Plain,
    Quiet,
}

pub struct Progress {
    mode: Mode,
    /// The layer bars, to tell when they are all finished.
    bars: std::sync::Mutex<Vec<ProgressBar>>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stdout()))
        } else {
            Mode::Plain
        };
        Progress {
            mode,
            bars: Default::default(),
        }
    }

    pub fn step(&self, msg: &str) {
        match &self.mode {
            Mode::Bars(m) => {
                let bars = self.bars.lock().unwrap();
                if !bars.is_empty() && bars.iter().all(ProgressBar::is_finished) {
                    // Nothing redraws the finished bars any more: print below them (the
                    // cursor is still on the last bar's line), not above.
                    crate::outln!("\n{msg}");
                } else {
                    let _ = m.println(msg);
                }
            }
            Mode::Plain => crate::outln!("{msg}"),
            Mode::Quiet => {}
        }
    }

    /// A bar for one layer of `size` bytes.
    pub fn layer(&self, label: &str, size: u64) -> LayerBar {
        let bar = match &self.mode {
            Mode::Bars(m) => {
                let b = m.add(ProgressBar::new(size));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
                b.set_prefix(label.to_string());
                b.enable_steady_tick(Duration::from_millis(200));
                self.bars.lock().unwrap().push(b.clone());
                Some(b)
            }
            _ => None,
        };
        LayerBar {
            bar,
            plain: matches!(self.mode, Mode::Plain),
            label: label.to_string(),
        }
    }
}

pub struct LayerBar {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
}

impl LayerBar {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Ends the layer's line with `msg` ("downloaded", "cached", "unpacked").
    pub fn done(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(msg.to_string());
        } else if self.plain {
            crate::outln!("{} {msg}", self.label);
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }
}
