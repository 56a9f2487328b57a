//! Asking systemd about units (the systemd cgroup driver's scopes and slices): shared by
//! the guest suite's systemd tests and the CRI tests with `SystemdCgroup = true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::poll_until;

/// `systemctl ARGS...`: its stdout, trimmed (whatever the exit code).
pub fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("systemctl (in the guest)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The cgroup directory systemd gives `unit` (its ControlGroup property).
pub fn unit_cgroup(unit: &str) -> PathBuf {
    let cg = systemctl(&["show", unit, "-p", "ControlGroup", "--value"]);
    assert!(
        cg.starts_with('/'),
        "{unit} has no cgroup: {}",
        systemctl(&["status", unit])
    );
    Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/'))
}

/// After the container is removed: no unit named `unit` is listed (any state), and its
/// cgroup directory `dir` is gone.
pub fn assert_unit_gone(unit: &str, dir: &Path) {
    let gone = poll_until(Duration::from_secs(20), || {
        !systemctl(&["list-units", "--all", "--no-legend", "--plain"]).contains(unit)
            && !dir.exists()
    });
    assert!(
        gone,
        "left after removal: unit {unit} ({}), cgroup {} (exists: {})",
        systemctl(&["show", unit, "-p", "ActiveState,LoadState", "--value"]),
        dir.display(),
        dir.exists()
    );
}
