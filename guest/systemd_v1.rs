//! cgroup v1 with systemd: the guest booted with systemd.unified_cgroup_hierarchy=0
//! (`hack/guest.sh test --v1`; a full `hack/guest.sh test` boots it after the v2 run), where
//! systemd mounts a hierarchy per v1 controller (plus name=systemd, and cgroup2 at
//! /sys/fs/cgroup/unified: hybrid). The systemd driver (`--systemd-cgroup`) works there as
//! runc's v1 driver: the scope is in every hierarchy, systemd knows its limits under their
//! v1 names, the v1 files have them, and `delete` leaves nothing in any hierarchy. A
//! cgroupfs container runs there too. Elsewhere these tests skip visibly.

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::common::*;

/// The hierarchies these tests look into (the directory names the guest's systemd mounts;
/// cpu and cpuacct are symlinks to cpu,cpuacct).
const HIERARCHIES: [&str; 8] = [
    "systemd", "memory", "cpu", "pids", "devices", "freezer", "cpuset", "blkio",
];

/// One test at a time: on v1, systemd moves the processes outside its units to the root of
/// a hierarchy when a unit's start enables that controller for a slice (a scope's
/// BlockIOAccounting, say), which would pull a cgroupfs container running alongside out
/// of its cgroup there (with runc as with corten).
static SERIAL: Mutex<()> = Mutex::new(());

pub(crate) fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// True in the guest booted on cgroup v1 (its kernel command line says so), where every
/// hierarchy above and systemd must be there (a panic otherwise); elsewhere a visible skip.
pub(crate) fn on_v1_systemd_host(test: &str) -> bool {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if !cmdline
        .split_whitespace()
        .any(|a| a == "systemd.unified_cgroup_hierarchy=0")
    {
        skipped(
            test,
            "needs the guest booted on cgroup v1 with systemd (hack/guest.sh test --v1)",
        );
        return false;
    }
    assert!(
        Path::new("/run/systemd/system").exists(),
        "{test}: systemd is not running"
    );
    for h in HIERARCHIES {
        let p = Path::new("/sys/fs/cgroup").join(h);
        assert!(
            p.join("cgroup.procs").exists(),
            "{test}: no v1 hierarchy at {}",
            p.display()
        );
    }
    true
}

/// `systemctl ARGS...`: its stdout, trimmed (whatever the exit code).
fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("systemctl (in the guest)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A cgroup file, trimmed.
fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// `<cgroup>` in every hierarchy (and the unified one of a hybrid host) that has it.
fn dirs_left(cgroup: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for e in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = e.path().join(cgroup.trim_start_matches('/'));
        if p.is_dir() {
            left.push(p);
        }
    }
    left
}

/// A container with memory, cpu and pids limits in the scope `corten-<id>.scope` of
/// system.slice: the scope is in name=systemd and every controller's hierarchy (the init
/// in each, as its /proc/<pid>/cgroup says), the v1 files hold the limits, systemd knows
/// them under their v1 names (MemoryLimit, CPUShares), pause freezes it through the v1
/// freezer, and `delete` leaves no unit and no directory in any hierarchy.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the guest booted on cgroup v1"]
fn scope_in_every_v1_hierarchy() {
    if !on_v1_systemd_host("scope_in_every_v1_hierarchy") {
        return;
    }
    let _serial = serial();
    let mut c = Container::new("g-sdv1-scope");
    c.args(&["sleep", "100"]);
    let unit = format!("corten-{}.scope", c.id);
    c.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:corten:{}", c.id)),
    );
    c.set(
        "/linux/resources",
        json!({
            "memory": {"limit": 67108864},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 99}
        }),
    );
    c.write_config();
    let bundle = c.bundle_str();
    c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id])
        .ok();
    c.start_ok();
    let cgroup = format!("/system.slice/{unit}");
    let pid = c.state()["pid"].as_i64().unwrap();
    for h in HIERARCHIES {
        let dir = Path::new("/sys/fs/cgroup").join(h).join(&cgroup[1..]);
        let procs = read(&dir.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "init {pid} not in {}: {procs:?}",
            dir.display()
        );
    }
    // /proc/<pid>/cgroup: the scope in every hierarchy runc joins (and the unified one,
    // where systemd put it); rdma and misc are not joined.
    let seen = read(&PathBuf::from(format!("/proc/{pid}/cgroup")));
    for line in seen.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap(), f.next().unwrap());
        if ctrls == "rdma" || ctrls == "misc" {
            continue;
        }
        assert_eq!(path, cgroup, "init {pid}'s cgroup for {ctrls:?}:\n{seen}");
    }
    let sys = |h: &str, f: &str| {
        read(
            &Path::new("/sys/fs/cgroup")
                .join(h)
                .join(&cgroup[1..])
                .join(f),
        )
    };
    assert_eq!(sys("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(sys("cpu", "cpu.shares"), "512");
    assert_eq!(sys("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(sys("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(sys("pids", "pids.max"), "99");
    assert_eq!(systemctl(&["is-active", &unit]), "active");
    let show = |p: &str| systemctl(&["show", &unit, "-p", p, "--value"]);
    assert_eq!(show("MemoryLimit"), "67108864");
    assert_eq!(show("CPUShares"), "512");
    assert_eq!(show("CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(show("TasksMax"), "99");
    assert_eq!(show("Delegate"), "yes");
    c.rt(&["pause", &c.id]).ok();
    assert_eq!(sys("freezer", "freezer.state"), "FROZEN");
    c.rt(&["resume", &c.id]).ok();
    assert_eq!(sys("freezer", "freezer.state"), "THAWED");
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", Duration::from_secs(10));
    c.delete().ok();
    let units = systemctl(&["list-units", "--all", "--no-legend"]);
    assert!(!units.contains(&c.id), "unit left after delete:\n{units}");
    let left = dirs_left(&cgroup);
    assert!(left.is_empty(), "left after delete: {left:?}");
}

/// The cgroupfs driver on the same host: the container's `/<id>` in each hierarchy with
/// its limits, the init in it, and nothing left after `delete`.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the guest booted on cgroup v1"]
fn cgroupfs_container_on_v1() {
    if !on_v1_systemd_host("cgroupfs_container_on_v1") {
        return;
    }
    let _serial = serial();
    let mut c = Container::new("g-sdv1-fs");
    c.args(&["sleep", "100"]);
    c.set(
        "/linux/resources",
        json!({
            "memory": {"limit": 33554432},
            "cpu": {"quota": 20000, "period": 100000},
            "pids": {"limit": 42}
        }),
    );
    c.create_ok();
    c.start_ok();
    let pid = c.state()["pid"].as_i64().unwrap();
    let dir = |h: &str| Path::new("/sys/fs/cgroup").join(h).join(&c.id);
    for h in HIERARCHIES {
        let procs = read(&dir(h).join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "init {pid} not in {}: {procs:?}; /proc/{pid}/cgroup:\n{}",
            dir(h).display(),
            read(&PathBuf::from(format!("/proc/{pid}/cgroup")))
        );
    }
    assert_eq!(
        read(&dir("memory").join("memory.limit_in_bytes")),
        "33554432"
    );
    assert_eq!(read(&dir("cpu").join("cpu.cfs_quota_us")), "20000");
    assert_eq!(read(&dir("pids").join("pids.max")), "42");
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", Duration::from_secs(10));
    c.delete().ok();
    let left = dirs_left(&c.id);
    assert!(left.is_empty(), "left after delete: {left:?}");
}

/// A create that fails once the scope would be started (linux.resources.unified, which v1
/// can't have) is refused with runc's words and leaves no unit and no directory in any
/// hierarchy.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the guest booted on cgroup v1"]
fn refused_create_leaves_nothing_on_v1() {
    if !on_v1_systemd_host("refused_create_leaves_nothing_on_v1") {
        return;
    }
    let _serial = serial();
    let mut c = Container::new("g-sdv1-bad");
    c.args(&["true"]);
    c.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:corten:{}", c.id)),
    );
    c.set(
        "/linux/resources",
        json!({"unified": {"memory.high": "1000000"}}),
    );
    c.write_config();
    let bundle = c.bundle_str();
    let out = c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id]);
    let words = ["cannot use unified on cgroup v1"];
    assert_err(&out, &words, &words);
    let units = systemctl(&["list-units", "--all", "--no-legend"]);
    assert!(!units.contains(&c.id), "unit left:\n{units}");
    let left = dirs_left(&format!("/system.slice/corten-{}.scope", c.id));
    assert!(left.is_empty(), "left: {left:?}");
}
