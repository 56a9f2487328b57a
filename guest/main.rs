//! The guest suite: tests that need a production-shaped host, a pure cgroup v2 hierarchy
//! with its controllers (systemd, Debian 12, kernel 6.1), which this project's own
//! machines (cgroup v1 hybrid) can't be. `hack/guest.sh` builds this binary on the host
//! (static), boots the Debian guest under qemu and runs it there, with corten and then with
//! runc (the reference) through `CORTEN_TEST_RUNTIME`; tests are written like the host's
//! integration tests and share their helpers (integration/common/). The same guest
//! booted on cgroup v1 (systemd.unified_cgroup_hierarchy=0) runs the tests of `systemd_v1`,
//! which skip elsewhere.
//!
//! Every test is `#[ignore]`d with the reason "guest only", so a plain `cargo test` on a
//! host lists them as ignored (visibly, and counted) rather than passing them unrun; the
//! guest runs them with `--include-ignored`. Run by hand on a host without cgroup v2
//! controllers they print a `SKIP:` line; in the guest (`CORTEN_GUEST=1`) a missing
//! prerequisite fails.

#![deny(clippy::undocumented_unsafe_blocks)]

mod apparmor;
mod cgroup_v2;
mod checkpoint;
mod checkpoint_engines;
// The guest suite uses a part of the integration suite's helpers (no terminals, no
// mountinfo parsing): what only the integration suite uses is not dead code.
#[allow(dead_code)]
#[path = "../integration/common/mod.rs"]
mod common;
mod containerd;
mod cri;
mod docker;
// The CRI tests' daemon and bodies, shared with the integration suite (its engines/, by
// path; test-free files only) with the helpers they need: guest/cri.rs runs them with the
// systemd cgroup driver.
#[allow(dead_code)]
#[path = "../integration/engines"]
mod engines {
    pub mod containerd_daemon;
    pub mod cri_suite;
    pub mod support;
    pub use support::*;
}
// The test image builders (integration/image_support.rs) the CRI tests import images with.
#[path = "../integration/image_support.rs"]
mod image_support;
mod limits;
mod podman;
mod rootless;
mod systemd;
mod systemd_life;
mod systemd_v1;

use std::fs;
use std::path::PathBuf;

/// The controllers the guest suite relies on.
const CONTROLLERS: [&str; 4] = ["cpu", "memory", "pids", "io"];

/// True on a pure cgroup v2 host with the controllers (`CONTROLLERS`). Elsewhere prints a
/// visible skip line for `test` and returns false, or panics in the guest (`CORTEN_GUEST`),
/// where skipping would hide a broken guest.
pub fn on_v2_host(test: &str) -> bool {
    let controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    let have: Vec<&str> = controllers.split_whitespace().collect();
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !have.contains(c))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "needs a pure cgroup v2 host with the controllers {missing:?} (hack/guest.sh runs it in one)"
    );
    assert!(std::env::var_os("CORTEN_GUEST").is_none(), "{test}: {why}");
    common::skipped(test, &why);
    false
}

/// The cgroup directory of a container whose cgroupsPath is `/<id>` (common::base_config).
pub fn cgroup_dir(id: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup").join(id)
}

/// One file of that cgroup, trimmed.
pub fn cgroup_file(id: &str, file: &str) -> String {
    let p = cgroup_dir(id).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The value of `key` in a flat-keyed cgroup file (memory.events, cpu.stat, pids.events).
pub fn cgroup_key(id: &str, file: &str, key: &str) -> u64 {
    let text = cgroup_file(id, file);
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {file}:\n{text}"))
}

/// How long one engine command (podman, docker, ctr) may take in the emulated guest.
pub const ENGINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Runs an engine's client `cmd` with stdin from /dev/null and stdout and stderr in files
/// of `dir` (a detached container, shim or conmon may inherit them: a pipe would never
/// close), killed after ENGINE_TIMEOUT: its exit code (None when killed) and output, with
/// `what` as its command line.
pub fn run_engine(
    dir: &std::path::Path,
    cmd: &mut std::process::Command,
    what: String,
) -> common::Out {
    use std::process::Stdio;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let (out_path, err_path) = (dir.join(format!(".out-{n}")), dir.join(format!(".err-{n}")));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e} (in the guest image)"));
    let exited = common::poll_until(ENGINE_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let read = |p: &std::path::Path| {
        let s = fs::read_to_string(p).unwrap_or_default();
        let _ = fs::remove_file(p);
        s
    };
    let mut stderr = read(&err_path);
    if !exited {
        // What hung: the runtimes, shims and engines still running, and where they wait.
        let ps = std::process::Command::new("ps")
            .args(["-eo", "pid,ppid,stat,wchan:24,args"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ps: Vec<&str> = ps
            .lines()
            .filter(|l| {
                [
                    "corten",
                    "runc",
                    "shim",
                    "containerd",
                    "conmon",
                    "ctr ",
                    "podman",
                    "docker",
                ]
                .iter()
                .any(|w| l.contains(w))
            })
            .collect();
        stderr.push_str(&format!(
            "\n(killed after {ENGINE_TIMEOUT:?}; processes then:)\n{}",
            ps.join("\n")
        ));
    }
    common::Out {
        cmd: what,
        code: if exited { status.code() } else { None },
        stdout: read(&out_path),
        stderr,
    }
}
