//! Pull progress: a bar per layer (bytes, rate, ETA) on a terminal, one line per step
//! otherwise (with a byte count every few seconds while a layer downloads), nothing with
//! -q or --json.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Without a terminal, how often a downloading layer prints its byte count.
const PLAIN_EVERY: Duration = Duration::from_secs(3);

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
            size,
            got: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

pub struct LayerBar {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
    size: u64,
    /// Plain mode: bytes downloaded, and when the count was last printed.
    got: AtomicU64,
    last: Mutex<Instant>,
}

impl LayerBar {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        } else if self.plain {
            let got = self.got.fetch_add(n, Ordering::Relaxed) + n;
            let mut last = self.last.lock().unwrap();
            if last.elapsed() >= PLAIN_EVERY && got < self.size {
                *last = Instant::now();
                crate::outln!(
                    "{} downloading {} of {}",
                    self.label,
                    HumanBytes(got),
                    HumanBytes(self.size)
                );
            }
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
