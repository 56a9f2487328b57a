//! The systemd cgroup driver across a container's life (issue 14): `update` through
//! SetUnitProperties and the files, `pause`/`resume`, `ps`, `events`, `kill --all` on the
//! unit's cgroup, and `delete` leaving no unit and no cgroup behind: after `run`, after the
//! container exited by itself, after a create killed midway, and with --force.

use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::systemd::{on_systemd_host, systemctl};

/// A container in the scope `corten-<id>.scope` of system.slice (cgroupsPath
/// `system.slice:corten:<id>`), run with `--systemd-cgroup`.
struct Scoped {
    c: Container,
    unit: String,
}

impl Scoped {
    fn new(test: &str) -> Scoped {
        let mut c = Container::new(test);
        c.set(
            "/linux/cgroupsPath",
            json!(format!("system.slice:corten:{}", c.id)),
        );
        let unit = format!("corten-{}.scope", c.id);
        Scoped { c, unit }
    }

    fn dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup/system.slice").join(&self.unit)
    }

    fn file(&self, name: &str) -> String {
        let p = self.dir().join(name);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// `--systemd-cgroup ARGS...`
    fn sd(&self, args: &[&str]) -> Out {
        let mut full = vec!["--systemd-cgroup"];
        full.extend_from_slice(args);
        self.c.rt(&full)
    }

    fn create(&self) -> Out {
        self.c.write_config();
        let bundle = self.c.bundle_str();
        self.sd(&["create", "--bundle", &bundle, &self.c.id])
    }

    /// Nothing of the unit is left: not listed, `systemctl status` does not know it, and
    /// its cgroup directory is gone.
    fn assert_no_unit(&self) {
        let units = systemctl(&["list-units", "--all", "--no-legend"]);
        assert!(
            !units.contains(&self.unit),
            "unit {} left:\n{units}",
            self.unit
        );
        let out = Command::new("systemctl")
            .args(["status", &self.unit])
            .output()
            .expect("systemctl status");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("could not be found"),
            "systemctl status {}:\n{text}",
            self.unit
        );
        assert!(!self.dir().exists(), "{} left", self.dir().display());
    }
}

/// `run` of `true` with the systemd driver, three times: each is quick (durations printed
/// with --nocapture, no assertion on them: the guest is emulated) and leaves no unit.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_run_leaves_no_unit() {
    if !on_systemd_host("systemd_run_leaves_no_unit") {
        return;
    }
    for i in 0..3 {
        let mut s = Scoped::new("g-sdl-run");
        s.c.args(&["true"]);
        s.c.write_config();
        let bundle = s.c.bundle_str();
        let t = Instant::now();
        let out = s.sd(&["run", "--bundle", &bundle, &s.c.id]);
        eprintln!("systemd run {i}: {:?}", t.elapsed());
        out.ok();
        s.assert_no_unit();
        // The same, step by step.
        let mut s = Scoped::new("g-sdl-steps");
        s.c.args(&["true"]);
        let t = Instant::now();
        s.create().ok();
        let created = t.elapsed();
        s.c.start_ok();
        let started = t.elapsed();
        s.c.wait_status("stopped", Duration::from_secs(30));
        let stopped = t.elapsed();
        let active = systemctl(&["is-active", &s.unit]);
        s.c.delete().ok();
        eprintln!(
            "systemd steps {i}: create {created:?}, start {:?}, stopped {:?}, delete {:?} (unit {active} before delete)",
            started - created,
            stopped - started,
            t.elapsed() - stopped
        );
        s.assert_no_unit();
    }
    // As the guest benchmark does: the runtime's own `spec` (empty cgroupsPath, the
    // driver's default unit name), no terminal, output to /dev/null.
    let bundle = TempDir::new("g-sdl-spec");
    make_rootfs(&bundle.join("rootfs"));
    rt_in(bundle.path(), &["spec"]).ok();
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["true"]);
    std::fs::write(&path, config.to_string()).unwrap();
    let root = TempDir::new("g-sdl-spec-root");
    let (root_s, bundle_s) = (
        root.path().to_string_lossy().into_owned(),
        bundle.path().to_string_lossy().into_owned(),
    );
    for i in 0..3 {
        let id = unique_id("g-sdl-bench");
        let t = Instant::now();
        let status = Command::new(runtime())
            .args([
                "--root",
                &root_s,
                "--systemd-cgroup",
                "run",
                "--bundle",
                &bundle_s,
                &id,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run");
        eprintln!("systemd run (spec bundle) {i}: {:?}", t.elapsed());
        assert!(status.success(), "run {id}: {status}");
        let units = systemctl(&["list-units", "--all", "--no-legend"]);
        assert!(!units.contains(&id), "unit of {id} left:\n{units}");
    }
}

/// A running `sleep 100` in its scope.
fn sleeping_scope(test: &str, resources: serde_json::Value) -> Scoped {
    let mut s = Scoped::new(test);
    s.c.args(&["sleep", "100"]);
    s.c.set("/linux/resources", resources);
    s.create().ok();
    s.c.start_ok();
    s
}

/// `update` of a systemd-driver container (the state records the unit: no flag needed)
/// tells systemd (`systemctl show`) and writes the files.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_update_sets_unit_properties_and_files() {
    if !on_systemd_host("systemd_update_sets_unit_properties_and_files") {
        return;
    }
    let s = sleeping_scope(
        "g-sdl-update",
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}}),
    );
    s.c.rt(&[
        "update",
        "--memory",
        "134217728",
        "--pids-limit",
        "8",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        &s.c.id,
    ])
    .ok();
    let show = |p: &str| systemctl(&["show", &s.unit, "-p", p, "--value"]);
    assert_eq!(show("MemoryMax"), "134217728");
    assert_eq!(show("TasksMax"), "8");
    assert_eq!(show("CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(s.file("memory.max"), "134217728");
    assert_eq!(s.file("pids.max"), "8");
    assert_eq!(s.file("cpu.max"), "50000 100000");
    // And with the flag given again, as engines that pass it to every command do.
    s.sd(&["update", "--memory", "100663296", &s.c.id]).ok();
    assert_eq!(show("MemoryMax"), "100663296");
    assert_eq!(s.file("memory.max"), "100663296");
    assert_eq!(s.file("pids.max"), "8", "an update keeps the other limits");
}

/// pause/resume freeze and thaw the unit's cgroup.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_pause_resume_freeze_the_unit() {
    if !on_systemd_host("systemd_pause_resume_freeze_the_unit") {
        return;
    }
    let s = sleeping_scope("g-sdl-pause", json!({}));
    s.c.rt(&["pause", &s.c.id]).ok();
    assert_eq!(s.c.state()["status"], "paused");
    assert_eq!(s.file("cgroup.freeze"), "1");
    assert!(
        s.file("cgroup.events").lines().any(|l| l == "frozen 1"),
        "cgroup.events: {}",
        s.file("cgroup.events")
    );
    s.c.rt(&["resume", &s.c.id]).ok();
    assert_eq!(s.c.state()["status"], "running");
    assert_eq!(s.file("cgroup.freeze"), "0");
    assert!(s.file("cgroup.events").lines().any(|l| l == "frozen 0"));
    assert_eq!(systemctl(&["is-active", &s.unit]), "active");
}

/// The processes of the unit's cgroup, sorted.
fn procs(s: &Scoped) -> Vec<i64> {
    let mut v: Vec<i64> = s
        .file("cgroup.procs")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// `ps` lists the processes of the unit's cgroup; `events --stats` reads its files.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_ps_and_stats_read_the_unit() {
    if !on_systemd_host("systemd_ps_and_stats_read_the_unit") {
        return;
    }
    let mut s = Scoped::new("g-sdl-ps");
    s.c.sh("sleep 100 & sleep 100 & wait");
    s.c.config["linux"]["resources"] =
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 33}});
    s.create().ok();
    s.c.start_ok();
    assert!(
        poll_until(Duration::from_secs(10), || procs(&s).len() == 3),
        "not 3 processes in the unit: {:?}",
        procs(&s)
    );
    let out = s.c.rt(&["ps", "--format", "json", &s.c.id]);
    out.ok();
    let mut listed: Vec<i64> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    listed.sort_unstable();
    assert_eq!(listed, procs(&s), "ps vs the unit's cgroup.procs");
    let out = s.c.rt(&["events", "--stats", &s.c.id]);
    out.ok();
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    let d = &v["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 67108864, "{v}");
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert_eq!(d["pids"]["limit"], 33, "{v}");
    assert_eq!(d["pids"]["current"], 3, "{v}");
}

/// `kill --all` signals every process of the unit's cgroup (no pid namespace, so the
/// init's death alone would leave the others); then `delete` leaves nothing.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_kill_all_empties_the_unit() {
    if !on_systemd_host("systemd_kill_all_empties_the_unit") {
        return;
    }
    let mut s = Scoped::new("g-sdl-killall");
    s.c.remove_namespace("pid");
    s.c.sh("sleep 100 & sleep 100 & wait");
    s.create().ok();
    s.c.start_ok();
    assert!(
        poll_until(Duration::from_secs(10), || procs(&s).len() == 3),
        "not 3 processes in the unit: {:?}",
        procs(&s)
    );
    s.c.rt(&["kill", "--all", &s.c.id, "TERM"]).ok();
    assert!(
        poll_until(Duration::from_secs(10), || !s.dir().exists()
            || procs(&s).is_empty()),
        "processes left in the unit: {:?}",
        procs(&s)
    );
    s.c.wait_status("stopped", Duration::from_secs(10));
    s.c.delete().ok();
    s.assert_no_unit();
}

/// `events` (the stream) reports an OOM kill in the container's cgroup.
fn assert_oom_event(c: &Container, hog_in_container: &[&str]) {
    let root = c.root().to_string_lossy().into_owned();
    let mut ev = Command::new(runtime())
        .args(["--root", &root, "events", "--interval", "1s", &c.id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn events");
    let stdout = ev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first stats line: events is watching.
    let first = rx.recv_timeout(Duration::from_secs(30));
    let mut args = vec!["exec", c.id.as_str()];
    args.extend_from_slice(hog_in_container);
    let out = c.rt(&args);
    assert_eq!(out.code, Some(137), "the hog was not OOM-killed:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = vec![format!("{first:?}")];
    let mut oom = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains(r#""type":"oom""#) {
                    oom = true;
                    break;
                }
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    let _ = ev.kill();
    let _ = ev.wait();
    assert!(oom, "no oom event; events printed:\n{}", seen.join("\n"));
}

const HOG: [&str; 5] = [
    "dd",
    "if=/dev/zero",
    "of=/dev/null",
    "bs=104857600",
    "count=1",
];

/// `events` reports the OOM kill of a process in a systemd-driver container.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_events_report_oom() {
    if !on_systemd_host("systemd_events_report_oom") {
        return;
    }
    let s = sleeping_scope(
        "g-sdl-oom",
        json!({"memory": {"limit": 33554432, "swap": 33554432}}),
    );
    assert_oom_event(&s.c, &HOG);
}

/// The same with the cgroupfs driver.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn cgroupfs_events_report_oom() {
    if !on_systemd_host("cgroupfs_events_report_oom") {
        return;
    }
    let mut c = Container::new("g-fs-oom");
    c.args(&["sleep", "100"]);
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 33554432, "swap": 33554432}}),
    );
    c.create_ok();
    c.start_ok();
    assert_oom_event(&c, &HOG);
}

/// delete of a container whose init exited by itself: the scope may be gone already
/// (systemd collects an empty one); delete returns at once and leaves nothing.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_delete_after_exit() {
    if !on_systemd_host("systemd_delete_after_exit") {
        return;
    }
    for pause in [0, 1500] {
        let mut s = Scoped::new("g-sdl-exited");
        s.c.args(&["true"]);
        s.create().ok();
        s.c.start_ok();
        s.c.wait_status("stopped", Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(pause));
        let t = Instant::now();
        s.c.delete().ok();
        eprintln!(
            "delete {pause} ms after the exit: {:?} (unit was {})",
            t.elapsed(),
            systemctl(&["is-active", &s.unit])
        );
        s.assert_no_unit();
    }
}

/// delete of a container whose unit failed (systemd stopped it at its RuntimeMaxSec, given
/// as an `org.systemd.property.` annotation, and killed it at TimeoutStopSec): the failed unit is cleared, not left listed.
/// The stop job of a failed unit ends "done" and leaves it failed, so delete must reset it
/// whatever the job said (seen once as a flake of systemd_delete_after_killed_create).
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_delete_clears_a_failed_unit() {
    if !on_systemd_host("systemd_delete_clears_a_failed_unit") {
        return;
    }
    let mut s = Scoped::new("g-sdl-failed");
    s.c.args(&["sleep", "100"]);
    // A few seconds, so that even runc's create (slow under emulation) is done first; the
    // sleep is the pid namespace's init, which ignores SIGTERM: systemd kills it soon after.
    s.c.config["annotations"] = json!({
        "org.systemd.property.RuntimeMaxSec": "uint64 4",
        "org.systemd.property.TimeoutStopUSec": "uint64 500000"
    });
    s.create().ok();
    s.c.start_ok();
    assert!(
        poll_until(Duration::from_secs(20), || systemctl(&[
            "is-failed",
            &s.unit
        ]) == "failed"),
        "{} never failed: {}",
        s.unit,
        systemctl(&["status", &s.unit])
    );
    s.c.wait_status("stopped", Duration::from_secs(10));
    s.c.delete().ok();
    if is_runc() && systemctl(&["is-failed", &s.unit]) == "failed" {
        eprintln!("runc left the failed unit {} (cleared here)", s.unit);
        let _ = Command::new("systemctl")
            .args(["reset-failed", &s.unit])
            .output();
    }
    s.assert_no_unit();
}

/// delete --force of a running container stops its unit.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_delete_force_running() {
    if !on_systemd_host("systemd_delete_force_running") {
        return;
    }
    let s = sleeping_scope("g-sdl-force", json!({}));
    assert_eq!(systemctl(&["is-active", &s.unit]), "active");
    let t = Instant::now();
    s.c.rt(&["delete", "--force", &s.c.id]).ok();
    eprintln!("delete --force of a running container: {:?}", t.elapsed());
    s.assert_no_unit();
    assert!(!s.c.root_entry_exists(), "state left");
}

/// A create SIGKILLed at different points (the createRuntime hook sleeps, so the unit is
/// up with the init in it while the create is still running): `delete --force` leaves no
/// unit, no cgroup and no state. With runc (which does not promise it) a unit left is reported.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_delete_after_killed_create() {
    if !on_systemd_host("systemd_delete_after_killed_create") {
        return;
    }
    // Kill once the unit is up (during the hook), then at fixed delays after the start.
    for delay in [None, Some(0), Some(30), Some(100), Some(250), Some(600)] {
        let mut s = Scoped::new("g-sdl-killed");
        s.c.args(&["sleep", "100"]);
        s.c.config["hooks"] =
            json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "5"]}]});
        s.c.write_config();
        let root = s.c.root().to_string_lossy().into_owned();
        let bundle = s.c.bundle_str();
        let mut child = Command::new(runtime())
            .args([
                "--root",
                &root,
                "--systemd-cgroup",
                "create",
                "--bundle",
                &bundle,
                &s.c.id,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn create");
        let t = Instant::now();
        match delay {
            None => assert!(
                poll_until(Duration::from_secs(30), || systemctl(&[
                    "is-active",
                    &s.unit
                ]) == "active"),
                "unit {} never active",
                s.unit
            ),
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
        let _ = child.kill();
        let _ = child.wait();
        let was = systemctl(&["is-active", &s.unit]);
        let out = s.c.rt(&["delete", "--force", &s.c.id]);
        eprintln!(
            "create killed after {:?} (unit {was}): delete --force {:?}",
            t.elapsed(),
            out.code
        );
        if is_runc() {
            // runc, the reference, does not promise this: a create killed after the
            // unit started but before the state was written leaves runc's delete
            // nothing to find, and the unit with its runc init stays. Reported, then
            // stopped here so that the next round starts clean.
            let gone = poll_until(Duration::from_secs(10), || {
                !s.dir().exists() && systemctl(&["is-active", &s.unit]) != "active"
            });
            if !gone {
                eprintln!("runc left the unit {} (stopping it)", s.unit);
                systemctl(&["stop", &s.unit]);
                let _ = Command::new("systemctl")
                    .args(["reset-failed", &s.unit])
                    .output();
            }
        } else {
            out.ok();
            assert!(!s.c.root_entry_exists(), "state left");
        }
        s.assert_no_unit();
    }
}

/// A create killed while systemd was starting its unit leaves the state written before
/// StartTransientUnit (the unit named, not marked started) and, where the init outlived
/// the create, a unit holding the init. Made here from a complete create by rewriting its
/// state as it was then: `delete --force` knows the unit for corten's by the init in it,
/// stops it and removes its cgroup before returning. corten's own state format.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn systemd_delete_adopts_the_unit_of_a_create_killed_while_starting_it() {
    let test = "systemd_delete_adopts_the_unit_of_a_create_killed_while_starting_it";
    if !on_systemd_host(test) {
        return;
    }
    if is_runc() {
        skip!("corten's state format");
    }
    let mut s = Scoped::new("g-sdl-adopt");
    s.c.args(&["sleep", "100"]);
    s.create().ok();
    assert_eq!(systemctl(&["is-active", &s.unit]), "active");
    let path = s.c.root().join(&s.c.id).join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["phase"] = json!("creating");
    let cg = &mut state["cgroup"];
    cg["systemd"]["started"] = json!(false);
    cg.as_object_mut().unwrap().remove("made");
    cg["dirs"][0].as_object_mut().unwrap().remove("created");
    std::fs::write(&path, state.to_string()).unwrap();
    s.c.rt(&["delete", "--force", &s.c.id]).ok();
    s.assert_no_unit();
    assert!(!s.c.root_entry_exists(), "state left");
}
