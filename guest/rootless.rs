//! Rootless with the systemd cgroup driver: a real non-root user with a systemd user
//! session (`loginctl enable-linger`) and subuid/subgid ranges, made by the test and
//! removed in Drop. The container's unit is the user's systemd's, so its cgroup is in the
//! user's delegated subtree (`/user.slice/user-UID.slice/user@UID.service/...`) where the
//! user's limits are enforced: rootless podman on its default (systemd) cgroup manager,
//! and the runtime run by the user directly, as a plain user and as root of a user
//! namespace (podman's way).

use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::podman::{IMAGE, image_tar};
use crate::systemd::on_systemd_host;

/// How long the user's systemd (and its D-Bus) may take to come up under emulation.
const SESSION_TIMEOUT: Duration = Duration::from_secs(180);

/// A user made for one test: its home, subordinate ids, and a lingering systemd user
/// session; everything goes in Drop (session stopped, user and home removed).
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn run(cmd: &str, args: &[&str]) -> Out {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} (in the guest): {e}"));
    Out {
        cmd: format!("{cmd} {}", args.join(" ")),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl TestUser {
    /// `name` with subordinate ids from `subids` (65536 of them).
    fn new(name: &str, subids: u32) -> TestUser {
        // A user left by an interrupted run goes first.
        TestUser::remove(name);
        run("useradd", &["--create-home", "--shell", "/bin/sh", name]).ok();
        let id = |flag: &str| -> u32 {
            let out = run("id", &[flag, name]);
            out.ok();
            out.stdout.trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let mut user = TestUser {
            name: name.to_string(),
            uid,
            gid,
            home: PathBuf::from(format!("/home/{name}")),
        };
        // useradd may have given ranges already (SUB_UID_COUNT): only when it did not.
        let has = |file: &str| {
            fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&format!("{name}:")))
        };
        let range = format!("{subids}-{}", subids + 65535);
        if !has("/etc/subuid") {
            run("usermod", &["--add-subuids", &range, name]).ok();
        }
        if !has("/etc/subgid") {
            run("usermod", &["--add-subgids", &range, name]).ok();
        }
        run("loginctl", &["enable-linger", name]).ok();
        let unit = format!("user@{uid}.service");
        let bus = PathBuf::from(format!("/run/user/{uid}/bus"));
        let up = poll_until(SESSION_TIMEOUT, || {
            run("systemctl", &["is-active", &unit]).stdout.trim() == "active" && bus.exists()
        });
        assert!(
            up,
            "{unit} not up with its bus {}: {}",
            bus.display(),
            run("systemctl", &["status", &unit])
        );
        user.home = fs::canonicalize(&user.home).unwrap();
        user
    }

    /// `env ARGS...` as the user (runuser: no login session, as a service would), with the
    /// user's XDG_RUNTIME_DIR and HOME, in its home.
    fn cmd(&self, args: &[&str]) -> Out {
        let xdg = format!("XDG_RUNTIME_DIR=/run/user/{}", self.uid);
        let home = format!("HOME={}", self.home.display());
        let mut all = vec!["-u", &self.name, "--", "env", &xdg, &home];
        all.extend_from_slice(args);
        let out = Command::new("runuser")
            .args(&all)
            .current_dir(&self.home)
            .output()
            .expect("runuser (in the guest)");
        Out {
            cmd: format!("[{}] {}", self.name, args.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `systemctl --user ARGS...` of the user's systemd: stdout, trimmed.
    fn systemctl(&self, args: &[&str]) -> String {
        let mut all = vec!["systemctl", "--user"];
        all.extend_from_slice(args);
        self.cmd(&all).stdout.trim().to_string()
    }

    /// The user's systemd's own cgroup, where its units' are.
    fn manager_cgroup(&self) -> String {
        format!(
            "/user.slice/user-{uid}.slice/user@{uid}.service",
            uid = self.uid
        )
    }

    fn remove(name: &str) {
        if run("id", &["-u", name]).code != Some(0) {
            return;
        }
        let uid = run("id", &["-u", name]).stdout.trim().to_string();
        let _ = run("loginctl", &["disable-linger", name]);
        let _ = run("systemctl", &["stop", &format!("user@{uid}.service")]);
        let _ = run("loginctl", &["terminate-user", name]);
        let _ = run("userdel", &["--remove", "--force", name]);
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        TestUser::remove(&self.name);
    }
}

/// The runtime under test where the user can run it (the guest's /guest may not be
/// reachable for it): a copy in a world-readable temp dir.
fn runtime_for_users(dir: &TempDir) -> PathBuf {
    let src = runtime();
    let dst = dir.join(src.file_name().unwrap());
    fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

/// The cgroup of `pid` as the host's root cgroup namespace sees it.
fn cgroup_of(pid: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.trim()
        .strip_prefix("0::")
        .unwrap_or_else(|| panic!("/proc/{pid}/cgroup: {text}"))
        .to_string()
}

/// Rootless podman as a real user with its default cgroup manager (systemd) and the
/// runtime under test: `--memory 64m` is memory.max in the container, and a detached
/// container's scope `libpod-<id>.scope` is the user's systemd's, in its delegated
/// subtree, with the limit known to the user's systemd and in the file; gone after rm.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn rootless_podman_systemd_memory() {
    if !on_systemd_host("rootless_podman_systemd_memory") {
        return;
    }
    let user = TestUser::new("g-rlpod", 3_000_000);
    let dir = TempDir::short("grl");
    let rt = runtime_for_users(&dir);
    let conf = dir.join("containers.conf");
    fs::write(
        &conf,
        format!(
            "[engine]\nevents_logger = \"file\"\nruntime = \"under-test\"\n\
             [engine.runtimes]\nunder-test = [\"{}\"]\n",
            rt.display()
        ),
    )
    .unwrap();
    let tar = image_tar(dir.path());
    let conf_env = format!("CONTAINERS_CONF={}", conf.display());
    let podman = |args: &[&str]| {
        let mut all = vec![conf_env.as_str(), "podman"];
        all.extend_from_slice(args);
        user.cmd(&all)
    };
    let info = podman(&[
        "info",
        "--format",
        "{{.Host.CgroupManager}} {{.Host.OCIRuntime.Path}}",
    ]);
    info.ok();
    assert_eq!(
        info.stdout.trim(),
        format!("systemd {}", rt.display()),
        "podman's defaults for the user: {info}"
    );
    podman(&["import", &tar.to_string_lossy(), IMAGE]).ok();
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "64m",
        IMAGE,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max; echo hi",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["67108864", "hi"], "{out}");

    let out = podman(&[
        "run",
        "-d",
        "--network",
        "none",
        "--memory",
        "64m",
        IMAGE,
        "sleep",
        "100",
    ]);
    out.ok();
    let cid = out.stdout.trim().to_string();
    let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &cid]);
    pid.ok();
    let cg = cgroup_of(pid.stdout.trim());
    let unit = format!("libpod-{cid}.scope");
    assert!(
        cg.starts_with(&format!("{}/", user.manager_cgroup())) && cg.contains(&unit),
        "the container's cgroup {cg}: not {unit} of the user's systemd"
    );
    let scope = cg[..cg.find(&unit).unwrap() + unit.len()].to_string();
    let scope_dir = Path::new("/sys/fs/cgroup").join(scope.trim_start_matches('/'));
    assert_eq!(user.systemctl(&["is-active", &unit]), "active", "{unit}");
    assert_eq!(
        user.systemctl(&["show", &unit, "-p", "MemoryMax", "--value"]),
        "67108864"
    );
    assert_eq!(
        fs::read_to_string(scope_dir.join("memory.max"))
            .unwrap()
            .trim(),
        "67108864"
    );
    podman(&["rm", "--force", "--time", "0", &cid]).ok();
    let units = user.systemctl(&["list-units", "--all", "--no-legend"]);
    assert!(!units.contains(&cid), "unit left after rm:\n{units}");
    assert!(
        poll_until(STATE_TIMEOUT, || !scope_dir.exists()),
        "{} left after rm",
        scope_dir.display()
    );
    let _ = podman(&["system", "reset", "--force"]);
}

/// A bundle for the user's runtime: busybox (owned by root, readable), the container as
/// root of its user namespace when `userns` maps it, `script` as its process, 64 MiB and
/// 50 pids, cgroupsPath `:g-rl:<id>` (the unit `g-rl-<id>.scope` in user.slice).
fn user_bundle(dir: &Path, id: &str, userns: Option<(u32, u32)>, script: &str) -> PathBuf {
    let bundle = dir.join(id);
    fs::create_dir(&bundle).unwrap();
    fs::set_permissions(&bundle, fs::Permissions::from_mode(0o755)).unwrap();
    make_rootfs(&bundle.join("rootfs"));
    let mut c = base_config(id);
    c["process"]["args"] = json!(["sh", "-c", script]);
    c["linux"]["cgroupsPath"] = json!(format!(":g-rl:{id}"));
    c["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}});
    // As runc's rootless spec: no cgroup or network namespace, /sys bound from the host
    // (the container sees its cgroup at its full path), devpts without gid=5.
    let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "network" && n["type"] != "cgroup");
    let mounts = c["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["type"] != "cgroup");
    for m in mounts.iter_mut() {
        if m["type"] == "sysfs" {
            *m = json!({"destination": "/sys", "type": "none", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        } else if m["type"] == "devpts" {
            m["options"]
                .as_array_mut()
                .unwrap()
                .retain(|o| o != "gid=5");
        }
    }
    if let Some((uid, gid)) = userns {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    }
    fs::write(
        bundle.join("config.json"),
        serde_json::to_string_pretty(&c).unwrap(),
    )
    .unwrap();
    bundle
}

/// What the rootless container prints: its cgroup and that cgroup's memory.max and
/// pids.max (through the host's /sys, bound in).
const SHOW_CGROUP: &str = "p=$(sed -n 's/^0:://p' /proc/self/cgroup); echo $p; \
     cat /sys/fs/cgroup$p/memory.max /sys/fs/cgroup$p/pids.max";

/// The runtime run by the user itself with `--systemd-cgroup`, both ways a rootless
/// runtime is run: as the user (the container in its own user namespace), and as root of
/// podman's user namespace (`podman unshare`, where rootless podman runs the runtime; the
/// runtime finds the user outside); and through the user's session bus rather than its
/// systemd's private socket. Every way the unit is the user's systemd's scope
/// `g-rl-<id>.scope` in user.slice of its delegated subtree, holding the limits, and
/// `run` leaves no unit and no cgroup.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn rootless_runtime_systemd_cgroup() {
    if !on_systemd_host("rootless_runtime_systemd_cgroup") {
        return;
    }
    let user = TestUser::new("g-rlrun", 3_100_000);
    let dir = TempDir::short("grr");
    let rt = runtime_for_users(&dir);
    let rt = rt.to_string_lossy().into_owned();
    let state = format!("{}/state", user.home.display());
    // No systemd/private under that XDG_RUNTIME_DIR: the session bus (dbus-daemon).
    let no_xdg = format!("XDG_RUNTIME_DIR={}", dir.join("none").display());
    let session_bus = format!(
        "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{}/bus",
        user.uid
    );
    for (how, id, userns, prefix) in [
        (
            "as the user",
            "g-rl-plain",
            Some((user.uid, user.gid)),
            vec![],
        ),
        (
            "through the session bus",
            "g-rl-bus",
            Some((user.uid, user.gid)),
            vec!["env", no_xdg.as_str(), session_bus.as_str()],
        ),
        (
            "in podman unshare",
            "g-rl-unshare",
            None,
            vec!["podman", "unshare"],
        ),
    ] {
        let bundle = user_bundle(dir.path(), id, userns, SHOW_CGROUP);
        let bundle = bundle.to_string_lossy().into_owned();
        let mut args = prefix.clone();
        args.extend_from_slice(&[
            &rt,
            "--root",
            &state,
            "--systemd-cgroup",
            "run",
            "--bundle",
            &bundle,
            id,
        ]);
        let out = user.cmd(&args);
        assert_eq!(out.code, Some(0), "{how}: {out}");
        let unit = format!("g-rl-{id}.scope");
        let want = format!("{}/user.slice/{unit}", user.manager_cgroup());
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines, [want.as_str(), "67108864", "50"], "{how}: {out}");
        let units = user.systemctl(&["list-units", "--all", "--no-legend"]);
        assert!(
            !units.contains(&unit),
            "{how}: unit left after run:\n{units}"
        );
        let cg_dir = Path::new("/sys/fs/cgroup").join(want.trim_start_matches('/'));
        assert!(
            poll_until(STATE_TIMEOUT, || !cg_dir.exists()),
            "{how}: {} left after run",
            cg_dir.display()
        );
    }
}
