//! Standard output for both programs. `println!` panics when the reader has gone away
//! (`corten features | head`); these write instead and end the program quietly on EPIPE,
//! with the status a shell reports for SIGPIPE (141), as runc ends in that case.
//! SIGPIPE itself stays ignored, so a hook or peer closing a pipe or socket never kills
//! corten mid-operation.

use std::io::Write;

/// Writes `args` to stdout and flushes; exits 141 if stdout is a broken pipe.
pub fn write(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(128 + libc::SIGPIPE);
        }
        // Nowhere sensible to report it but stderr.
        let _ = writeln!(std::io::stderr(), "corten: write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `print!` that never panics (see the module doc).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}

/// `println!` that never panics (see the module doc).
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}
