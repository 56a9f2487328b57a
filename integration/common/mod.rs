//! Shared helpers of the integration suite (and the guest suite, which includes this
//! module by path): one file per concern, all re-exported here so tests write
//! `common::Container`, `common::rt`, ...
//!
//! - `run`: locating the runtime and running it with a timeout (`rt`, `Out`).
//! - `temp`: unique ids and self-removing temporary directories.
//! - `bundle`: the busybox rootfs, capability tables and the base config.json.
//! - `container`: the `Container` guard that cleans everything up on drop.
//! - `spec`: `Container::set`, config edits checked against the runtime-spec's fields.
//! - `procfs`: parsing mountinfo, /proc status and sectioned container output.
//! - `terminal`: console sockets, ptys and tmux.
//! - `systemd`: asking systemd about units (systemctl, a unit's cgroup, a unit gone).
//!
//! A test that cannot run on a host (or against the runtime under test) ends with
//! `skip!("why")`, which prints a visible, countable `SKIP: <test>: <why>` line: never a
//! silent early `return`.

mod bundle;
mod container;
mod procfs;
mod run;
mod spec;
mod systemd;
mod temp;
mod terminal;

pub use bundle::*;
pub use container::*;
pub use procfs::*;
pub use run::*;
pub use systemd::*;
pub use temp::*;
pub use terminal::*;

use std::io::Write;
use std::time::{Duration, Instant};

/// Any single runtime invocation taking longer than this is killed and the
/// test fails (a hang must not block CI).
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for a container to reach an expected state.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(20);

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Poll `cond` until it is true or `timeout` elapses; returns the last result.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Prints the line of a test that cannot run here: `SKIP: <test>: <why>`. Written straight
/// to stderr, past the test harness's output capture, so the line shows in every run and
/// `cargo test 2>&1 | grep -c '^SKIP:'` counts the skipped tests.
pub fn skipped(test: &str, why: &str) {
    let line = format!("SKIP: {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The harness's name of a test (`module::test`) from the type name of a function nested in
/// it (`crate::module::test::here`): what `skip!` prints.
pub fn test_name(nested_fn: &str) -> &str {
    let name = nested_fn.strip_suffix("::here").unwrap_or(nested_fn);
    name.split_once("::").map_or(name, |(_crate, rest)| rest)
}

/// Skips the calling test: prints `SKIP: <test>: <why>` (`skipped`; the arguments are
/// `format!`'s) and returns from the test.
macro_rules! skip {
    ($($why:tt)+) => {{
        fn here() {}
        let test = $crate::common::test_name(std::any::type_name_of_val(&here));
        $crate::common::skipped(test, &format!($($why)+));
        return;
    }};
}
pub(crate) use skip;
