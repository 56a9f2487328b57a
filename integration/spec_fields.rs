//! Less common config.json fields and CLI options, observed from inside the
//! container or from the host: joining namespaces by path, time namespace
//! offsets, mount propagation, recursive read-only binds, --no-pivot,
//! --preserve-fds / LISTEN_FDS, --version, the state document through the
//! lifecycle, text logs, and a create killed at random moments.

use crate::common::*;
use nix::mount::{MsFlags, mount};
use serde_json::{Value, json};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pid_of(state: &Value) -> i64 {
    state["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("state has no numeric pid: {state}"))
}

/// The target of /proc/PID/ns/NS, e.g. `net:[4026531840]`.
fn ns_link(pid: impl std::fmt::Display, ns: &str) -> String {
    let p = format!("/proc/{pid}/ns/{ns}");
    fs::read_link(&p)
        .unwrap_or_else(|e| panic!("readlink {p}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The descriptors listed by `ls -l /proc/$$/fd` (see only_stdio_fds_are_open).
pub fn listed_fds(ls_output: &str) -> Vec<String> {
    ls_output
        .lines()
        .filter(|l| l.starts_with('l'))
        .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
        .map(String::from)
        .collect()
}

fn has_optional(m: &MountInfo, prefix: &str) -> bool {
    m.optional.iter().any(|o| o.starts_with(prefix))
}

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

#[test]
fn joins_namespaces_by_path() {
    let mut a = sleeper("ns-owner");
    a.set("/hostname", json!("aaa"));
    a.create_ok();
    a.start_ok();
    let st = a.wait_status("running", STATE_TIMEOUT);
    let a_pid = pid_of(&st);
    let want: Vec<String> = ["net", "uts", "ipc"]
        .iter()
        .map(|ns| ns_link(a_pid, ns))
        .collect();
    // A really has namespaces of its own, so joining them is observable.
    for (i, ns) in ["net", "uts", "ipc"].iter().enumerate() {
        assert_ne!(want[i], ns_link("self", ns), "A shares the host's {ns} ns");
    }

    let mut b = Container::new("ns-joiner");
    // A hostname needs a new uts namespace; B joins A's.
    b.config.as_object_mut().unwrap().remove("hostname");
    for n in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        let ns = match n["type"].as_str().unwrap() {
            "uts" => "uts",
            "network" => "net",
            "ipc" => "ipc",
            _ => continue,
        };
        n["path"] = json!(format!("/proc/{a_pid}/ns/{ns}"));
    }
    let out = b.run_sh(
        "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/uts; \
         readlink /proc/self/ns/ipc",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["aaa", want[0].as_str(), want[1].as_str(), want[2].as_str()],
        "B should see A's hostname and namespaces"
    );
}

/// A namespace type not listed is inherited (config-linux.md), the mount namespace too: the
/// container's mounts are made in the runtime's, under its rootfs (as runc and crun do),
/// and `delete` (or a failed create) detaches every one of them.
#[test]
fn no_mount_namespace_inherits_the_hosts_and_delete_detaches_the_mounts() {
    let mut c = sleeper("no-mntns");
    c.remove_namespace("mount");
    c.create_ok();
    let st = c.state();
    let pid = pid_of(&st);
    assert_eq!(ns_link(pid, "mnt"), ns_link("self", "mnt"));
    let rootfs = c.rootfs().to_string_lossy().into_owned();
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mi
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&rootfs))
        .collect();
    for want in ["", "/proc", "/dev", "/dev/pts", "/sys"] {
        assert!(
            ours.contains(&format!("{rootfs}{want}").as_str()),
            "{rootfs}{want} not mounted: {ours:?}"
        );
    }
    c.start_ok();
    let out = c.exec_sh(
        "ls /proc/self/fd >/dev/null && echo procfs; ls /sys/kernel >/dev/null && echo sysfs",
    );
    assert_eq!(out.ok().stdout, "procfs\nsysfs\n");
    c.rt(&["delete", "-f", &c.id]).ok();
    c.assert_no_leftovers();

    // A create that fails after its mounts (a hook) leaves none of them.
    let mut c = sleeper("no-mntns-fail");
    c.remove_namespace("mount");
    c.set(
        "/hooks",
        json!({"createContainer": [{"path": "/bin/false"}]}),
    );
    assert!(c.create().code != Some(0));
    c.assert_no_leftovers();
}

#[test]
fn time_namespace_offsets() {
    const YEAR: f64 = 86400.0 * 365.0;
    let host_uptime = || -> f64 {
        let t = fs::read_to_string("/proc/uptime").unwrap();
        t.split_whitespace().next().unwrap().parse().unwrap()
    };
    let before = host_uptime();
    assert!(
        before < YEAR - 3600.0,
        "host uptime {before}s is too large for this test to tell the offset apart"
    );

    let mut c = Container::new("timens");
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "time" }));
    c.set(
        "/linux/timeOffsets",
        json!({
            "boottime": { "secs": 86400 * 365, "nanosecs": 0 },
            "monotonic": { "secs": 86400 * 365, "nanosecs": 0 }
        }),
    );
    c.sh("cat /proc/uptime; readlink /proc/self/ns/time");
    let run = c.run(&[]);
    if is_runc() && !run.success() {
        eprintln!("{run}");
        skip!("this runc does not support time namespaces");
    }
    run.ok();
    let out = run.stdout;
    let after = host_uptime();
    let lines: Vec<&str> = out.lines().collect();
    let up: f64 = lines
        .first()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in the output:\n{out}"));
    assert!(
        up >= before + YEAR - 5.0 && up <= after + YEAR + 60.0,
        "container uptime {up}s should be the host's ({before}..{after}s) plus one year:\n{out}"
    );
    assert_ne!(
        lines.get(1).copied().unwrap_or(""),
        ns_link("self", "time"),
        "the container shares the host's time namespace:\n{out}"
    );
}

/// Offsets without a time namespace of the container's own are refused before anything
/// is made (runc's check), not silently dropped.
#[test]
fn time_offsets_without_a_time_namespace_are_refused() {
    let mut c = sleeper("timens-none");
    c.set("/linux/timeOffsets", json!({"monotonic": {"secs": 3600}}));
    let want = "time namespace offsets specified, but time namespace isn't enabled in the config";
    assert_err(&c.create(), &[want], &[want]);
    c.assert_no_leftovers();
}

// ---------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------

/// Each rootfsPropagation value starts a container whose root mount has it (mountinfo's
/// optional fields for "/"); unbindable must not stop the rootfs being bound first.
#[test]
fn rootfs_propagation_values_hold_for_the_root() {
    for (value, want) in [
        ("unbindable", "unbindable"),
        ("runbindable", "unbindable"),
        ("shared", "shared:"),
        ("private", ""),
    ] {
        let mut c = Container::new("rootprop");
        c.set("/linux/rootfsPropagation", json!(value));
        let out = c.run_sh("awk '$5 == \"/\" {print $7}' /proc/self/mountinfo");
        let fields = out.trim();
        if want.is_empty() {
            assert!(
                !fields.contains("shared:") && !fields.contains("master:"),
                "{value}: {fields:?}"
            );
        } else {
            assert!(fields.contains(want), "{value}: {fields:?}");
        }
    }
}

#[test]
fn rootfs_propagation_and_bind_propagation() {
    let out_dir = TempDir::new("prop-out");
    let mut c = Container::new("propagation");
    let bundle = c.bundle().to_path_buf();
    // Make the bundle a shared mount on the host (the host's / is private
    // here), so that "rslave" has a master to follow. The bundle TempDir
    // detaches every mount under it when the container guard drops.
    mount(
        Some(&bundle),
        &bundle,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind the bundle onto itself");
    mount(
        None::<&str>,
        &bundle,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .expect("make the bundle mount shared");
    for d in ["shared-src", "private-src"] {
        fs::create_dir(bundle.join(d)).unwrap();
    }
    fs::create_dir_all(c.rootfs().join("mnt/fromhost")).unwrap();

    c.set("/linux/rootfsPropagation", json!("rslave"));
    // Both sources lie on the (now slave) copy of the shared bundle mount: a
    // plain bind of them would be a slave too.
    c.add_mount(bind(
        "/mnt/shared",
        &bundle.join("shared-src"),
        &["rbind", "rshared"],
    ));
    c.add_mount(bind(
        "/mnt/private",
        &bundle.join("private-src"),
        &["bind", "private"],
    ));
    c.add_mount(bind("/out", out_dir.path(), &["bind", "rw"]));
    c.sh(
        "cat /proc/self/mountinfo > /out/mountinfo; ls /mnt/fromhost > /out/ls; \
         touch /out/done",
    );
    c.create_ok();

    // A mount made on the host under the rootfs after create reaches the
    // container (its root is a slave of the host's mount).
    let fromhost = c.rootfs().join("mnt/fromhost");
    mount(
        Some("tmpfs"),
        &fromhost,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=64k"),
    )
    .expect("mount a tmpfs under the rootfs on the host");
    fs::write(fromhost.join("marker"), "x").unwrap();

    c.start_ok();
    assert!(
        poll_until(STATE_TIMEOUT, || out_dir.join("done").exists()),
        "the container did not finish"
    );
    let text = fs::read_to_string(out_dir.join("mountinfo")).unwrap();
    let mounts = parse_mountinfo(&text);
    let get =
        |mp: &str| find_mount(&mounts, mp).unwrap_or_else(|| panic!("no mount at {mp}:\n{text}"));

    let root = get("/");
    assert!(
        has_optional(&root, "master:") && !has_optional(&root, "shared:"),
        "rootfsPropagation rslave: / should be a slave (master:N), got {:?}:\n{text}",
        root.optional
    );
    let shared = get("/mnt/shared");
    assert!(
        has_optional(&shared, "shared:"),
        "rshared bind should be shared, got {:?}:\n{text}",
        shared.optional
    );
    let private = get("/mnt/private");
    assert!(
        !has_optional(&private, "shared:") && !has_optional(&private, "master:"),
        "private bind should have no propagation, got {:?}:\n{text}",
        private.optional
    );
    let fh = get("/mnt/fromhost");
    assert_eq!(fh.fstype, "tmpfs", "{text}");
    assert_eq!(
        fs::read_to_string(out_dir.join("ls")).unwrap().trim(),
        "marker",
        "host mount did not propagate into the container"
    );

    // Nothing propagated back from the container to the host.
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let rootfs = c.rootfs().to_string_lossy().into_owned();
    for m in parse_mountinfo(&host) {
        if let Some(rest) = m.mount_point.strip_prefix(&rootfs) {
            assert_eq!(
                rest, "/mnt/fromhost",
                "container mount propagated to the host: {m:?}"
            );
        }
    }
}

/// A host temp dir D with a tmpfs mounted at D/sub (detached when D drops).
fn dir_with_submount(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    let sub = d.join("sub");
    fs::create_dir(&sub).unwrap();
    mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=64k,mode=755"),
    )
    .expect("mount tmpfs on the host");
    d
}

const TOUCH_BOTH: &str = "(touch /data/x) 2>&1; echo rc1=$?; (touch /data/sub/y) 2>&1; echo rc2=$?";

#[test]
fn recursive_read_only_bind() {
    let host = dir_with_submount("rro");
    let mut c = Container::new("rro");
    c.add_mount(bind("/data", host.path(), &["rbind", "rro"]));
    let out = c.run_sh(TOUCH_BOTH);
    if is_runc() && out.contains("rc2=0") {
        eprintln!("{out}");
        skip!("this runc does not support rro");
    }
    assert!(out.contains("rc1=1") && out.contains("rc2=1"), "{out}");
    assert_eq!(
        out.matches("Read-only file system").count(),
        2,
        "both touches should fail with EROFS:\n{out}"
    );
    assert!(!host.join("x").exists() && !host.join("sub/y").exists());
}

#[test]
fn read_only_rbind_is_not_recursive() {
    let host = dir_with_submount("rbind-ro");
    let mut c = Container::new("rbind-ro");
    c.add_mount(bind("/data", host.path(), &["rbind", "ro"]));
    let out = c.run_sh(TOUCH_BOTH);
    assert!(out.contains("rc1=1"), "/data should be read-only:\n{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(
        out.contains("rc2=0"),
        "/data/sub (a submount) should stay writable with plain ro:\n{out}"
    );
    assert!(!host.join("x").exists());
    assert!(host.join("sub/y").exists(), "write to /data/sub/y not seen");
}

#[test]
fn no_pivot_still_confines_the_rootfs() {
    let mut c = Container::new("no-pivot");
    assert!(Path::new("/etc/debian_version").exists() || Path::new("/etc/os-release").exists());
    c.sh(
        "for f in /etc/debian_version /etc/os-release; do test -e $f && echo \"host-file $f\"; done; \
         echo @@ls; ls /; echo @@up; cd /..; ls; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let out = c.run(&["--no-pivot"]);
    out.ok();
    let s = sections(&out.stdout);
    assert!(!s[""].contains("host-file"), "host files visible:\n{out}");
    for sec in ["ls", "up"] {
        let listing: Vec<&str> = s[sec].lines().collect();
        for want in ["bin", "proc", "etc", "dev", "tmp"] {
            assert!(listing.contains(&want), "{want} missing from ls:\n{out}");
        }
    }
    let mounts = parse_mountinfo(&s["mountinfo"]);
    let root = find_mount(&mounts, "/")
        .unwrap_or_else(|| panic!("no / in mountinfo:\n{}", s["mountinfo"]));
    let bundle_name = c.bundle_name();
    assert!(
        root.root.ends_with(&format!("{bundle_name}/rootfs")),
        "/ is not the bundle rootfs: {root:?}\n{}",
        s["mountinfo"]
    );
    assert!(
        find_mount(&mounts, "/proc").is_some_and(|m| m.fstype == "proc"),
        "{}",
        s["mountinfo"]
    );
}

/// runc's msMoveRoot: with --no-pivot the host's /proc and /sys stay in the mount
/// namespace, outside the chroot, unless they are taken away first. A full, unmasked proc
/// there would let a nested user namespace mount a fresh proc (the kernel only refuses
/// when no fully visible proc exists: mnt_already_visible). With them gone, the container's
/// own /proc, with its masked paths, is all there is: the mount is refused, as it is in a
/// pivoted container.
#[test]
fn no_pivot_hides_the_hosts_proc_and_sysfs() {
    let caps = ["CAP_SYS_ADMIN", "CAP_SETFCAP"];
    let try_mount = |no_pivot: bool| {
        let mut c = Container::new(if no_pivot {
            "no-pivot-proc"
        } else {
            "pivot-proc"
        });
        c.set("/root/readonly", json!(false));
        for set in ["bounding", "effective", "permitted"] {
            let list = c.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap();
            list.extend(caps.iter().map(|c| json!(c)));
        }
        c.sh(
            "mkdir -p /p && unshare -mrpf sh -c 'mount -t proc proc /p && echo mounted'; \
             echo rc=$?",
        );
        c.run(if no_pivot {
            &["--no-pivot"][..]
        } else {
            &[][..]
        })
    };
    for no_pivot in [true, false] {
        let out = try_mount(no_pivot);
        out.ok();
        assert!(
            !out.stdout.contains("mounted") && out.stdout.contains("rc=1"),
            "no_pivot={no_pivot}: a new proc was mounted:\n{out}"
        );
        assert!(
            out.stderr.contains("permission denied"),
            "no_pivot={no_pivot}: {out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Inherited file descriptors
// ---------------------------------------------------------------------------

pub fn fd_file(dir: &TempDir) -> std::path::PathBuf {
    let f = dir.join("fd3.txt");
    fs::write(&f, "hello-fd\n").unwrap();
    f
}

#[test]
fn preserve_fds_passes_fd_3() {
    let dir = TempDir::new("preserve");
    let file = fd_file(&dir);
    let mut c = Container::new("preserve-fds");
    c.sh("cat <&3; echo @@fds; ls -l /proc/$$/fd; echo end");
    c.write_config();
    let bundle = c.bundle_str();
    let out = rt_with_fd3(
        &c,
        &["run", "--preserve-fds", "1", "--bundle", &bundle, &c.id],
        &file,
        false,
    );
    out.ok();
    let s = sections(&out.stdout);
    assert_eq!(s[""], "hello-fd\n", "{out}");
    assert_eq!(listed_fds(&s["fds"]), vec!["0", "1", "2", "3"], "{out}");
}

#[test]
fn open_fd_is_not_passed_without_preserve_fds() {
    let dir = TempDir::new("nopreserve");
    let file = fd_file(&dir);
    let mut c = Container::new("no-preserve-fds");
    c.sh("ls -l /proc/$$/fd; echo end");
    c.write_config();
    let bundle = c.bundle_str();
    let out = rt_with_fd3(&c, &["run", "--bundle", &bundle, &c.id], &file, false);
    out.ok();
    assert_eq!(listed_fds(&out.stdout), vec!["0", "1", "2"], "{out}");
}

#[test]
fn listen_fds_are_passed_with_listen_pid_1() {
    let dir = TempDir::new("listen");
    let file = fd_file(&dir);
    let mut c = Container::new("listen-fds");
    c.sh("cat <&3; echo @@env; env; echo @@fds; ls -l /proc/$$/fd; echo end");
    c.write_config();
    let bundle = c.bundle_str();
    let out = rt_with_fd3(&c, &["run", "--bundle", &bundle, &c.id], &file, true);
    out.ok();
    let s = sections(&out.stdout);
    assert_eq!(s[""], "hello-fd\n", "{out}");
    let env: Vec<&str> = s["env"].lines().collect();
    assert!(env.contains(&"LISTEN_FDS=1"), "{out}");
    assert!(env.contains(&"LISTEN_PID=1"), "{out}");
    assert_eq!(listed_fds(&s["fds"]), vec!["0", "1", "2", "3"], "{out}");
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

#[test]
fn version_output_like_runc() {
    if is_runc() {
        return; // runc prints "runc version ..."
    }
    for flag in ["--version", "-v"] {
        let out = rt(&[flag]);
        out.ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert!(lines.len() >= 3, "{out}");
        assert!(
            lines[0].starts_with("corten version ") && lines[0].len() > "corten version ".len(),
            "{out}"
        );
        assert!(
            lines[1].starts_with("commit: ") && lines[1].len() > "commit: ".len(),
            "{out}"
        );
        assert!(lines[2].starts_with("spec: 1."), "{out}");
        assert!(out.stderr.is_empty(), "{out}");
    }
}

#[test]
fn text_log_format() {
    let logs = TempDir::new("textlog");
    let log = logs.join("runtime.log");
    let log_s = log.to_string_lossy().into_owned();
    let mut c = Container::new("textlog");
    c.args(&["no-such-command-xyz"]);
    c.write_config();
    let bundle = c.bundle_str();
    let out = c.rt(&[
        "--log",
        &log_s,
        "--log-format",
        "text",
        "create",
        "--bundle",
        &bundle,
        &c.id,
    ]);
    assert_err(
        &out,
        &["no-such-command-xyz", "executable file not found"],
        &["executable file not found"],
    );
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("log file {log_s}: {e}\n{out}"));
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("level=error"))
        .unwrap_or_else(|| panic!("no level=error line in the log:\n{text}"));
    assert!(!line.trim_start().starts_with('{'), "not text: {line}");
    assert!(
        line.contains("no-such-command-xyz") && line.contains("executable file not found"),
        "{line}"
    );
    c.assert_no_leftovers();
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/// `YYYY-MM-DDTHH:MM:SS.fffZ` (RFC 3339 in UTC with a fraction, as runc writes it).
fn assert_rfc3339(s: &str) {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let ok = b.len() >= 22
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..b.len() - 1)
        && b[b.len() - 1] == b'Z';
    assert!(
        ok,
        "created is not RFC 3339 (YYYY-MM-DDTHH:MM:SS.fffZ): {s:?}"
    );
}

/// Spec (runtime.md, State): "`status` (string, REQUIRED) is the runtime state of the
/// container." "`pid` (int, REQUIRED when `status` is `created` or `running` on Linux,
/// OPTIONAL on other platforms) is the ID of the container process, as seen by the host."
/// "`bundle` (string, REQUIRED) is the absolute path to the container's bundle directory."
#[test]
fn state_json_through_the_lifecycle() {
    let ctl = TempDir::new("state-ctl");
    let mut c = Container::new("state-life");
    c.add_mount(bind("/ctl", ctl.path(), &["bind", "rw"]));
    c.sh("while [ ! -e /ctl/go ]; do sleep 0.05; done; exit 0");
    let bundle = c.bundle_str();
    let pid_file = ctl.join("pid");
    c.create_with_pid_file(&pid_file);

    let st = c.state();
    assert_eq!(st["id"], c.id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    let pid = pid_of(&st);
    assert!(pid > 0, "{st}");
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert_eq!(st["bundle"], bundle.as_str(), "{st}");
    assert_eq!(st["rootfs"], c.rootfs().to_string_lossy().as_ref(), "{st}");
    let created = st["created"]
        .as_str()
        .unwrap_or_else(|| panic!("no created: {st}"))
        .to_string();
    assert_rfc3339(&created);
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{st}"
    );

    c.start_ok();
    let st = c.wait_status("running", STATE_TIMEOUT);
    assert_eq!(pid_of(&st), pid, "pid changed across start: {st}");
    assert_eq!(st["created"], created.as_str(), "{st}");
    assert_eq!(st["bundle"], bundle.as_str(), "{st}");

    fs::write(ctl.join("go"), "").unwrap();
    let st = c.wait_status("stopped", STATE_TIMEOUT);
    let stopped_pid = pid_of(&st);
    if is_runc() {
        assert!(stopped_pid == 0 || stopped_pid == pid, "{st}");
    } else {
        assert_eq!(stopped_pid, 0, "a stopped container reports pid 0: {st}");
    }
    assert_eq!(st["created"], created.as_str(), "{st}");
    assert_eq!(st["bundle"], bundle.as_str(), "{st}");
    assert_eq!(st["rootfs"], c.rootfs().to_string_lossy().as_ref(), "{st}");

    c.delete().ok();
    c.assert_no_leftovers();
}

// ---------------------------------------------------------------------------
// Chaos
// ---------------------------------------------------------------------------

/// Live processes belonging to the container: cmdline mentioning its bundle
/// or id, or a member of its cgroup (cgroupsPath is `/<id>`).
fn live_processes_of(c: &Container) -> Vec<(i32, String)> {
    let bundle = c.bundle_str();
    let in_cgroup = format!("/{}", c.id);
    let mut found = Vec::new();
    for pid in pids() {
        if pid == std::process::id() {
            continue;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
        if state.is_none_or(|s| s.starts_with('Z') || s.starts_with('X')) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let member = cgroups.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            path == in_cgroup || path.starts_with(&format!("{in_cgroup}/"))
        });
        if cmdline.contains(&bundle) || cmdline.contains(&c.id) || member {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let ppid = status_field(&status, "PPid").unwrap_or_default();
            let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            found.push((
                pid as i32,
                format!("pid {pid} (ppid {ppid}, wchan {wchan}) {cmdline}"),
            ));
        }
    }
    found
}

/// Cleans up after a runtime that failed to: SIGKILLs the container's
/// remaining processes (so that `delete -f` cannot block on them), runs
/// `delete -f`, then removes the cgroup directories named after the id. Drops
/// before the `Container` it refers to.
struct ChaosCleanup<'a>(&'a Container);

impl Drop for ChaosCleanup<'_> {
    fn drop(&mut self) {
        let c = self.0;
        for (pid, _) in live_processes_of(c) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = poll_until(Duration::from_secs(2), || live_processes_of(c).is_empty());
        let root = c.root().to_string_lossy().into_owned();
        let _ = try_rt(
            &["--root", &root, "delete", "-f", &c.id],
            Duration::from_secs(5),
        );
        for dir in cgroup_dirs_named(&c.id) {
            let _ = poll_until(Duration::from_secs(1), || {
                fs::remove_dir(&dir).is_ok() || !dir.exists()
            });
        }
    }
}

#[test]
fn killed_create_leaves_nothing_after_delete() {
    for delay in [0u64, 1, 2, 3, 5, 8, 13] {
        let c = sleeper(&format!("killed-create-{delay}"));
        let _cleanup = ChaosCleanup(&c);
        c.write_config();
        let root = c.root().to_string_lossy().into_owned();
        let bundle = c.bundle_str();
        let mut child = Command::new(runtime())
            .args(["--root", &root, "create", "--bundle", &bundle, &c.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn create");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();

        let describe = |procs: Vec<(i32, String)>| -> String {
            procs
                .into_iter()
                .map(|(_, d)| d)
                .collect::<Vec<_>>()
                .join("\n  ")
        };
        let out = try_rt(
            &["--root", &root, "delete", "-f", &c.id],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| {
            panic!(
                "create killed at {delay} ms: delete -f hung: {e}\n\
                 container processes still alive:\n  {}",
                describe(live_processes_of(&c))
            )
        });
        assert!(
            out.success(),
            "delete -f after create killed at {delay} ms:\n{out}"
        );
        assert_no_panic(&out);
        let start = Instant::now();
        let mut procs = live_processes_of(&c);
        while !procs.is_empty() && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
            procs = live_processes_of(&c);
        }
        assert!(
            procs.is_empty(),
            "create killed at {delay} ms, then delete -f: processes left:\n  {}",
            describe(procs)
        );
        assert!(
            cgroup_dirs_named(&c.id).is_empty(),
            "create killed at {delay} ms, then delete -f: cgroups left: {:?}",
            cgroup_dirs_named(&c.id)
        );
        c.assert_no_leftovers();
    }
}

/// The tests' typed config edits (`Container::set`) refuse a field the runtime-spec does
/// not have, at the pointer or inside the value, so a misspelt key fails the test.
#[test]
#[should_panic(expected = "/linux/cgroupPath: the runtime-spec config has no such field")]
fn set_refuses_a_misspelt_field() {
    Container::new("set-misspelt").set("/linux/cgroupPath", json!("/x"));
}

#[test]
#[should_panic(
    expected = "/linux/resources/memory/limt: the runtime-spec config has no such field"
)]
fn set_refuses_a_misspelt_field_inside_the_value() {
    Container::new("set-misspelt-inside").set("/linux/resources", json!({"memory": {"limt": 1}}));
}
