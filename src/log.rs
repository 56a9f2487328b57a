//! Runtime logging, runc-compatible: `--log FILE` and `--log-format text|json`.
//!
//! containerd's shim reads the last `{"level":"error","msg":...}` object of the file; podman
//! parses the file as one JSON object (and reuses a container's file across restarts), so
//! in JSON format, unless --debug, the error that ends a command replaces what the file
//! held and is its only line.
//!
//! Every message is one line: control characters (a newline in a user's value, a terminal
//! escape) are escaped here, once, for stderr and for the file in both formats.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    /// Opened once, at start-up (close-on-exec, O_APPEND): the forks that write debug lines
    /// later (the init, exec's process) may have changed root and cwd by then.
    file: Option<File>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets the log destination once, at start-up: a relative `file` is taken from the cwd
/// corten was started in, and the file is opened (created) now, as runc does.
pub fn init(file: Option<PathBuf>, format: Format, debug: bool) -> Result<()> {
    let file = match file.filter(|f| !f.as_os_str().is_empty()) {
        Some(path) => {
            let path =
                std::path::absolute(&path).with_context(|| format!("--log {}", path.display()))?;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(&path)
                .with_context(|| format!("open log file {}", path.display()))?;
            Some(f)
        }
        None => None,
    };
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
    Ok(())
}

pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

/// Writes a debug line (only with `--debug`).
pub fn debug(msg: &str) {
    if debug_enabled() {
        write("debug", msg);
    }
}

/// Writes a warning line.
pub fn warn(msg: &str) {
    write("warning", msg);
}

/// Writes the error that ends the command.
pub fn error(msg: &str) {
    write("error", msg);
}

/// The error that ends the command: to the log file, and to stderr as `corten: MSG`,
/// one line.
pub fn fail(msg: &str) {
    let msg = one_line(msg);
    error(&msg);
    eprintln!("corten: {msg}");
}

/// `msg` with its control characters escaped as Rust writes them (`\n`, `\r`,
/// `\u{1b}`), so that it stays one line and can't drive a terminal.
pub fn one_line(msg: &str) -> String {
    if !msg.chars().any(char::is_control) {
        return msg.to_string();
    }
    let mut out = String::with_capacity(msg.len() + 16);
    for c in msg.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn write(level: &str, msg: &str) {
    let Some(logger) = LOGGER.get() else { return };
    let msg = &one_line(msg);
    let line = match logger.format {
        Format::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": rfc3339_now()}).to_string()
        }
        Format::Text => format!("time={:?} level={level} msg={msg:?}", rfc3339_now()),
    };
    match &logger.file {
        Some(f) => {
            let mut f: &File = f;
            if level == "error" && logger.format == Format::Json && !logger.debug {
                // Appending to an emptied file writes from its start.
                let _ = f.set_len(0);
            }
            // One write per line: processes sharing the file don't interleave.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
        // Without --log, warnings and debug lines go to stderr; the final error is printed
        // by the CLI itself.
        None if level != "error" => eprintln!("{line}"),
        None => {}
    }
}

/// The current time as RFC 3339 with nanoseconds, UTC (the spec's `created` format).
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats a UNIX time as `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ` (civil-from-days, Howard Hinnant).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_control_characters() {
        assert_eq!(super::one_line("plain: ünïcode"), "plain: ünïcode");
        assert_eq!(
            super::one_line("a\nb\r\tc\u{1b}[2J\u{7f}\u{85}"),
            "a\\nb\\r\\tc\\u{1b}[2J\\u{7f}\\u{85}"
        );
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339(1_709_251_200, 5),
            "2024-03-01T00:00:00.000000005Z"
        );
        assert_eq!(
            super::rfc3339(951_782_400, 0),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
