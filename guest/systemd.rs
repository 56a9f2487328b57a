//! The systemd cgroup driver (`--systemd-cgroup`) against the guest's real systemd: the
//! container's cgroup is the transient scope named by cgroupsPath `slice:prefix:name`,
//! systemd knows its limits (`systemctl show`), the cgroup files have them, and `delete`
//! leaves no unit and no cgroup behind. Malformed cgroupsPath values get runc's error.

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::on_v2_host;

/// `systemctl ARGS...`: its stdout, trimmed (whatever the exit code).
pub fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("systemctl (in the guest)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// True where systemd runs (the guest); elsewhere a visible skip.
pub fn on_systemd_host(test: &str) -> bool {
    if !on_v2_host(test) {
        return false;
    }
    if Path::new("/run/systemd/system").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CORTEN_GUEST").is_none(),
        "{test}: systemd is not running in the guest"
    );
    eprintln!("SKIP: {test}: needs systemd as init");
    false
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

/// A container's unit as an engine left it running: `systemctl status` knows it (exit 0,
/// active), `systemctl show` has each (property, value) of `props`, and its cgroup holds
/// `pid`. Returns the unit's cgroup directory.
pub fn assert_unit_runs(unit: &str, pid: &str, props: &[(&str, &str)]) -> PathBuf {
    let status = Command::new("systemctl")
        .args(["status", "--no-pager", unit])
        .output()
        .expect("systemctl (in the guest)");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && text.contains("Active: active"),
        "systemctl status {unit}:\n{text}"
    );
    for (prop, want) in props {
        assert_eq!(
            systemctl(&["show", unit, "-p", prop, "--value"]),
            *want,
            "systemctl show {unit} -p {prop}"
        );
    }
    let dir = unit_cgroup(unit);
    // The init is in the unit's cgroup, or below it when it delegates (systemd inside).
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/')));
    assert!(
        own.as_ref().is_some_and(|p| p.starts_with(&dir)),
        "the container's init {pid} is in {own:?}, not in {} or below",
        dir.display()
    );
    dir
}

/// One file of a cgroup directory, trimmed.
pub fn read_cg(dir: &Path, file: &str) -> String {
    let p = dir.join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
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

/// The scope `corten-<id>.scope` in system.slice holds the container, with its memory
/// limit known to systemd and written to memory.max; `delete` stops it and its cgroup goes.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn scope_holds_the_container_and_goes_with_it() {
    if !on_systemd_host("scope_holds_the_container_and_goes_with_it") {
        return;
    }
    let mut c = Container::new("g-sd-scope");
    c.remove_namespace("cgroup");
    c.args(&["sleep", "100"]);
    let unit = format!("corten-{}.scope", c.id);
    c.config["linux"]["cgroupsPath"] = json!(format!("system.slice:corten:{}", c.id));
    c.config["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 99}});
    c.write_config();
    let bundle = c.bundle_str();
    c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id])
        .ok();
    c.start_ok();
    let dir = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    let seen = c.exec_sh("cat /proc/self/cgroup");
    seen.ok();
    assert_eq!(
        seen.stdout.trim(),
        format!("0::/system.slice/{unit}"),
        "the container's cgroup"
    );
    let pid = c.state()["pid"].as_i64().unwrap();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "init {pid} in {}: {procs}",
        dir.display()
    );
    assert_eq!(systemctl(&["is-active", &unit]), "active");
    assert_eq!(
        systemctl(&["show", &unit, "-p", "MemoryMax", "--value"]),
        "67108864"
    );
    assert_eq!(
        systemctl(&["show", &unit, "-p", "TasksMax", "--value"]),
        "99"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("memory.max"))
            .unwrap()
            .trim(),
        "67108864"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("pids.max"))
            .unwrap()
            .trim(),
        "99"
    );
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", Duration::from_secs(10));
    c.delete().ok();
    let units = systemctl(&["list-units", "--all", "--no-legend"]);
    assert!(!units.contains(&c.id), "unit left after delete:\n{units}");
    assert!(!dir.exists(), "{} left after delete", dir.display());
}

/// cgroupsPath not of the form slice:prefix:name is refused with runc's words, and
/// nothing is left.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn malformed_cgroups_path_is_refused() {
    if !on_systemd_host("malformed_cgroups_path_is_refused") {
        return;
    }
    let mut c = Container::new("g-sd-bad");
    c.config["linux"]["cgroupsPath"] = json!("/not/a/unit");
    c.write_config();
    let bundle = c.bundle_str();
    let out = c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id]);
    // runc's log escapes the quotes: the words between them.
    assert_err(
        &out,
        &[
            r#"expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, got "/not/a/unit" instead"#,
        ],
        &["expected cgroupsPath to be of format \\\"slice:prefix:name\\\" for systemd cgroups"],
    );
    assert!(!c.root_entry_exists(), "state left by a refused create");
    let mut c = Container::new("g-sd-badslice");
    c.config["linux"]["cgroupsPath"] = json!(format!("a--b.slice:corten:{}", c.id));
    c.write_config();
    let bundle = c.bundle_str();
    let out = c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id]);
    let words = ["invalid slice name: a--b.slice"];
    assert_err(&out, &words, &words);
    assert!(!c.root_entry_exists(), "state left by a refused create");
}
