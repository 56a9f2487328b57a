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

// Moved to the shared helpers (the CRI tests use them too); the guest's tests import them from here.
pub use crate::common::{assert_unit_gone, systemctl, unit_cgroup};

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
    skipped(test, "needs systemd as init");
    false
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
    c.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:corten:{}", c.id)),
    );
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 99}}),
    );
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
    c.set("/linux/cgroupsPath", json!("/not/a/unit"));
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
    c.set(
        "/linux/cgroupsPath",
        json!(format!("a--b.slice:corten:{}", c.id)),
    );
    c.write_config();
    let bundle = c.bundle_str();
    let out = c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id]);
    let words = ["invalid slice name: a--b.slice"];
    assert_err(&out, &words, &words);
    assert!(!c.root_entry_exists(), "state left by a refused create");
}

/// `systemctl show UNIT -p NAME --value`.
fn show(unit: &str, name: &str) -> String {
    systemctl(&["show", unit, "-p", name, "--value"])
}

/// A sleeper whose cgroup is the unit named by cgroupsPath `system.slice:corten:<id>`
/// (scope `corten-<id>.scope`), and that unit's name.
fn sd_sleeper(tag: &str) -> (Container, String) {
    let mut c = Container::new(tag);
    c.remove_namespace("cgroup");
    c.args(&["sleep", "100"]);
    let unit = format!("corten-{}.scope", c.id);
    c.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:corten:{}", c.id)),
    );
    (c, unit)
}

/// `--systemd-cgroup create`.
fn sd_create(c: &Container) -> Out {
    c.write_config();
    let bundle = c.bundle_str();
    c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id])
}

/// Kills and deletes `c`, then checks that no unit named after it is left, nor `dir`.
fn delete_leaves_nothing(c: &Container, dir: &Path) {
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", Duration::from_secs(10));
    c.delete().ok();
    let units = systemctl(&["list-units", "--all", "--no-legend"]);
    assert!(!units.contains(&c.id), "unit left after delete:\n{units}");
    assert!(!dir.exists(), "{} left after delete", dir.display());
}

/// A cgroupsPath name ending in `.slice` makes that slice the container's unit (runc's
/// rule): the slice is active with its limits, holds the init, and goes with `delete`.
/// runc (1.1, cgroup v2) asks systemd to put the pid in the slice with PIDs=, which
/// systemd refuses for slices; corten starts the slice and moves the init in through
/// cgroupfs, as runc's v1 driver does: checked with corten only.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn slice_unit_holds_the_container() {
    if !on_systemd_host("slice_unit_holds_the_container") {
        return;
    }
    let (mut c, _) = sd_sleeper("g-sd-slice");
    let unit = format!("system-{}.slice", c.id.replace('-', "_"));
    c.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:corten:{unit}")),
    );
    c.set("/linux/resources", json!({"memory": {"limit": 67108864}}));
    let out = sd_create(&c);
    if is_runc() {
        assert_err(&out, &[], &["Cannot set property PIDs"]);
        return;
    }
    out.ok();
    let dir = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    assert_eq!(systemctl(&["is-active", &unit]), "active");
    assert_eq!(show(&unit, "ControlGroup"), format!("/system.slice/{unit}"));
    assert_eq!(show(&unit, "MemoryMax"), "67108864");
    let pid = c.state()["pid"].as_i64().unwrap();
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "init {pid} in {}: {procs}",
        dir.display()
    );
    assert_eq!(
        fs::read_to_string(dir.join("memory.max")).unwrap().trim(),
        "67108864"
    );
    c.start_ok();
    let seen = c.exec_sh("cat /proc/self/cgroup");
    assert_eq!(seen.ok().stdout.trim(), format!("0::/system.slice/{unit}"));
    delete_leaves_nothing(&c, &dir);
    // A slice that systemd would place outside the parent slice is refused.
    let (mut c, _) = sd_sleeper("g-sd-slice-out");
    c.set(
        "/linux/cgroupsPath",
        json!("system.slice:corten:gsdelsewhere.slice"),
    );
    let out = sd_create(&c);
    if !is_runc() {
        assert_err(
            &out,
            &[
                "systemd places the slice gsdelsewhere.slice at /gsdelsewhere.slice, not in system.slice",
            ],
            &[],
        );
    }
}

/// `org.systemd.property.<Name>` annotations become the unit's properties (runc's
/// parsing: GVariant text, `<x>Sec` in seconds given as `<x>USec`); malformed ones are
/// refused before anything is made.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn annotations_become_unit_properties() {
    if !on_systemd_host("annotations_become_unit_properties") {
        return;
    }
    let (mut c, unit) = sd_sleeper("g-sd-ann");
    c.set(
        "/annotations",
        json!({
            "org.systemd.property.CollectMode": "'inactive-or-failed'",
            "org.systemd.property.TimeoutStopUSec": "uint64 1000000",
            "org.systemd.property.RuntimeMaxSec": "3600",
            "org.systemd.property.CPUWeight": "uint64 42",
            "org.systemd.property.Description": "'a corten test'"
        }),
    );
    sd_create(&c).ok();
    assert_eq!(systemctl(&["is-active", &unit]), "active");
    assert_eq!(show(&unit, "CollectMode"), "inactive-or-failed");
    assert_eq!(show(&unit, "TimeoutStopUSec"), "1s");
    assert_eq!(show(&unit, "RuntimeMaxUSec"), "1h");
    assert_eq!(show(&unit, "CPUWeight"), "42");
    assert_eq!(show(&unit, "Description"), "a corten test");
    let dir = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    assert_eq!(
        fs::read_to_string(dir.join("cpu.weight")).unwrap().trim(),
        "42"
    );
    delete_leaves_nothing(&c, &dir);

    for (name, value, words) in [
        ("Foo_Bar", "1", "name incorrect"),
        ("Ab", "1", "name incorrect"),
        ("CollectMode", "inactive", "value parse error"),
        ("TimeoutStopSec", "'1'", "value parse error"),
    ] {
        let (mut c, unit) = sd_sleeper("g-sd-annbad");
        let key = format!("org.systemd.property.{name}");
        c.set("/annotations", json!({ key.clone(): value }));
        let out = sd_create(&c);
        assert_err(&out, &[&key, words], &[words]);
        assert!(!c.root_entry_exists(), "state left by a refused create");
        assert_eq!(systemctl(&["is-active", &unit]), "inactive", "{unit}");
    }
}

/// The disk the guest's root is on, as (major, minor).
fn root_disk() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").unwrap().dev();
    (libc::major(dev), libc::minor(dev))
}

/// blockIO becomes IOWeight and IO*Max properties (device paths /dev/block/M:m) and the
/// io.weight / io.max files of the unit's cgroup. runc (v2) writes only the files: the
/// properties are checked with corten.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn block_io_becomes_io_properties() {
    if !on_systemd_host("block_io_becomes_io_properties") {
        return;
    }
    let (major, minor) = root_disk();
    let (mut c, unit) = sd_sleeper("g-sd-io");
    c.set(
        "/linux/resources",
        json!({"blockIO": {
            "weight": 500,
            "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": 2097152}],
            "throttleReadIOPSDevice": [{"major": major, "minor": minor, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 30}]
        }}),
    );
    sd_create(&c).ok();
    let dir = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    assert_eq!(
        fs::read_to_string(dir.join("io.max")).unwrap().trim(),
        format!("{major}:{minor} rbps=1048576 wbps=2097152 riops=100 wiops=30")
    );
    let weight = fs::read_to_string(dir.join("io.weight")).unwrap();
    if is_runc() {
        eprintln!(
            "block_io_becomes_io_properties: runc: io.weight {weight:?}, IOWeight={:?}",
            show(&unit, "IOWeight")
        );
    } else {
        assert_eq!(weight.lines().next(), Some("default 4950"), "{weight}");
        let dev = format!("/dev/block/{major}:{minor}");
        assert_eq!(show(&unit, "IOWeight"), "4950");
        assert_eq!(show(&unit, "IOReadBandwidthMax"), format!("{dev} 1048576"));
        assert_eq!(show(&unit, "IOWriteBandwidthMax"), format!("{dev} 2097152"));
        assert_eq!(show(&unit, "IOReadIOPSMax"), format!("{dev} 100"));
        assert_eq!(show(&unit, "IOWriteIOPSMax"), format!("{dev} 30"));
    }
    delete_leaves_nothing(&c, &dir);
}

/// Device rules become DevicePolicy=strict + DeviceAllow (runc's
/// generateDeviceProperties), and inside the container a device outside the rules can
/// be made (mknod is allowed) but not opened, while /dev/null can.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn device_rules_become_device_properties() {
    if !on_systemd_host("device_rules_become_device_properties") {
        return;
    }
    let (major, minor) = root_disk();
    let (mut c, unit) = sd_sleeper("g-sd-dev");
    c.set(
        "/linux/resources",
        json!({"devices": [{"allow": false, "access": "rwm"}]}),
    );
    c.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_MKNOD"));
    for set in ["effective", "permitted"] {
        let caps = c.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap();
        if !caps.contains(&json!("CAP_MKNOD")) {
            caps.push(json!("CAP_MKNOD"));
        }
    }
    sd_create(&c).ok();
    c.start_ok();
    assert_eq!(show(&unit, "DevicePolicy"), "strict");
    let allow = show(&unit, "DeviceAllow");
    for want in [
        "/dev/char/1:3 rwm",
        "/dev/char/5:2 rwm",
        "char-* m",
        "block-* m",
    ] {
        assert!(allow.contains(want), "DeviceAllow lacks {want}: {allow}");
    }
    // c 136:* (the ptys): corten names the major, Debian 12's runc (1.1) its group.
    assert!(
        allow.contains("char-136 rwm") || allow.contains("char-pts rwm"),
        "DeviceAllow lacks the ptys: {allow}"
    );
    let out = c.exec_sh(&format!(
        "mknod /dev/xdisk b {major} {minor} && (head -c1 /dev/xdisk >/dev/null && echo opened || echo denied); echo x > /dev/null && echo null-ok"
    ));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["denied", "null-ok"], "{out}");
    let dir = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    delete_leaves_nothing(&c, &dir);
}

/// A unit of the container's name already there: a failed leftover is reset and the
/// create goes on (runc's retry); an active one, not corten's, makes create fail and is
/// left running.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn existing_unit_is_reset_if_failed_and_never_stopped() {
    if !on_systemd_host("existing_unit_is_reset_if_failed_and_never_stopped") {
        return;
    }
    // A failed scope of the same name: killed by its RuntimeMaxSec.
    let (c, unit) = sd_sleeper("g-sd-exists");
    let name = unit.trim_end_matches(".scope").to_string();
    let st = Command::new("systemd-run")
        .args([
            "--quiet",
            "--scope",
            "--unit",
            &name,
            "-p",
            "RuntimeMaxSec=1",
            "sleep",
            "30",
        ])
        .status()
        .unwrap();
    assert!(!st.success(), "the scope's command should be killed");
    assert!(
        poll_until(Duration::from_secs(10), || systemctl(&["is-failed", &unit])
            == "failed"),
        "{unit} not failed: {}",
        systemctl(&["status", &unit])
    );
    sd_create(&c).ok();
    // runc 1.1 (Debian 12's) takes UnitExists for success and goes on without a unit of
    // its own; the reset and retry are runc 1.2's.
    if is_runc() && systemctl(&["is-active", &unit]) == "failed" {
        eprintln!(
            "existing_unit_is_reset_if_failed_and_never_stopped: runc ignores UnitExists (runc < 1.2): the rest is checked with corten only"
        );
        // Its delete leaves the failed unit (not its own) as it was: cleared here. With
        // an active unit it would join that unit's cgroup, and its delete stop the unit.
        c.kill(Some("KILL")).ok();
        c.wait_status("stopped", Duration::from_secs(10));
        c.delete().ok();
        let _ = Command::new("systemctl")
            .args(["reset-failed", &unit])
            .output();
        return;
    }
    assert_eq!(systemctl(&["is-active", &unit]), "active");
    let dir = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    delete_leaves_nothing(&c, &dir);

    // An active scope of the same name, not the runtime's.
    let (c, unit) = sd_sleeper("g-sd-busy");
    let name = unit.trim_end_matches(".scope").to_string();
    let mut other = Foreign(
        Command::new("systemd-run")
            .args(["--quiet", "--scope", "--unit", &name, "sleep", "60"])
            .spawn()
            .unwrap(),
        unit.clone(),
    );
    assert!(
        poll_until(Duration::from_secs(10), || systemctl(&["is-active", &unit])
            == "active"),
        "{unit} not active"
    );
    let out = sd_create(&c);
    // systemd 252: "Unit X was already loaded or has a fragment file."
    assert_err(&out, &[&unit, "UnitExists", "already"], &["already"]);
    assert!(!c.root_entry_exists(), "state left by a refused create");
    assert_eq!(
        systemctl(&["is-active", &unit]),
        "active",
        "the other unit was touched"
    );
    assert!(
        other.0.try_wait().unwrap().is_none(),
        "the other unit's process died"
    );
}

/// A process this test started in a scope of its own: killed, and its unit reset.
struct Foreign(std::process::Child, String);

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = Command::new("systemctl")
            .args(["reset-failed", &self.1])
            .status();
    }
}
