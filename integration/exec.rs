//! `exec`: a new process inside a created or running container, with runc's flags. What
//! it sees (namespaces, cgroup, identity, env, cwd, fds) and what the caller gets (exit
//! status, pid file, errors).

use std::fs;
use std::time::Duration;

use serde_json::json;

use crate::common::{Container, TempDir, assert_err, sleeper};

/// A running sleeper container.
fn running(test: &str) -> Container {
    let c = sleeper(test);
    c.create_ok();
    c.start_ok();
    c
}

/// `exec -d --pid-file F ID sleep 30`; returns the pid.
fn exec_detached_sleep(c: &Container) -> i32 {
    let tmp = TempDir::new("exec");
    let pid_file = tmp.join("pid");
    exec(
        c,
        &[
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &c.id,
            "sleep",
            "30",
        ],
    )
    .ok();
    fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn exec(c: &Container, args: &[&str]) -> crate::common::Out {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    c.rt(&full)
}

#[test]
fn exec_joins_the_container_and_passes_the_exit_status() {
    let c = running("exec-join");
    let out = exec(
        &c,
        &[
            &c.id,
            "sh",
            "-c",
            "hostname; ps -o pid,comm | grep -c sleep; readlink /proc/1/exe; \
             cat /proc/self/cgroup | grep -c ':/$'; ls /proc/self/fd | tr '\\n' ' '; exit 3",
        ],
    );
    assert_eq!(out.code, Some(3), "the exit status passes through: {out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "corten", "uts namespace: {out}");
    assert_eq!(
        lines[1], "1",
        "pid namespace: the sleeper is visible: {out}"
    );
    assert_eq!(lines[2], "/bin/busybox", "mount namespace: {out}");
    assert_ne!(
        lines[3], "0",
        "cgroup namespace rooted at the container's: {out}"
    );
    // ls itself holds one fd for the directory it reads.
    assert_eq!(lines[4].trim(), "0 1 2 3", "only stdio leaks in: {out}");

    // The host sees it in the container's cgroup while it runs.
    let pid = exec_detached_sleep(&c);
    let procs = fs::read_to_string(format!("/sys/fs/cgroup/pids/{}/cgroup.procs", c.id))
        .expect("the container's pids cgroup");
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "exec'd pid {pid} in the cgroup: {procs}"
    );
    let ns = |p: i32, n: &str| fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    let init = c.state()["pid"].as_i64().unwrap() as i32;
    for n in ["pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        assert_eq!(ns(pid, n), ns(init, n), "{n} namespace");
    }
    c.rt(&["delete", "-f", &c.id]).ok();
    c.assert_no_leftovers();
}

#[test]
fn exec_flags_set_the_process() {
    let c = running("exec-flags");
    let out = exec(
        &c,
        &[
            "--cwd",
            "/tmp",
            "-e",
            "TERM=dumb",
            "-e",
            "EXTRA=1",
            "-u",
            "1000:1000",
            "-g",
            "2000",
            "--no-new-privs",
            &c.id,
            "sh",
            "-c",
            "pwd; echo $TERM $EXTRA; id -u; id -g; id -G; grep NoNewPrivs /proc/self/status",
        ],
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "/tmp", "{out}");
    assert_eq!(lines[1], "dumb 1", "-e replaces and adds: {out}");
    assert_eq!(lines[2..4], ["1000", "1000"], "{out}");
    assert!(lines[4].split_whitespace().any(|g| g == "2000"), "{out}");
    assert!(lines[5].ends_with('1'), "{out}");

    // --cap adds to the bounding, effective and permitted sets.
    let out = exec(
        &c,
        &[
            "--cap",
            "CAP_SYS_TIME",
            &c.id,
            "grep",
            "CapEff",
            "/proc/self/status",
        ],
    );
    let eff = u64::from_str_radix(out.ok().stdout.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 25), 0, "CAP_SYS_TIME (25) effective: {out}");
    let out = exec(&c, &[&c.id, "grep", "CapEff", "/proc/self/status"]);
    let eff = u64::from_str_radix(out.ok().stdout.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(eff & (1 << 25), 0, "not without --cap: {out}");

    // --process: a whole process object.
    let tmp = TempDir::new("exec");
    let p = tmp.join("process.json");
    fs::write(
        &p,
        json!({"args": ["sh", "-c", "echo $FROM; pwd; id -u"], "cwd": "/etc",
               "env": ["FROM=process.json", "PATH=/bin"], "user": {"uid": 7, "gid": 7}})
        .to_string(),
    )
    .unwrap();
    let out = exec(&c, &["--process", p.to_str().unwrap(), &c.id]);
    assert_eq!(out.ok().stdout, "process.json\n/etc\n7\n", "{out}");
    // No user is root (runc's default); an unknown capability is an error naming it.
    fs::write(&p, json!({"args": ["id", "-u"], "cwd": "/"}).to_string()).unwrap();
    let out = exec(&c, &["--process", p.to_str().unwrap(), &c.id]);
    assert_eq!(out.ok().stdout, "0\n", "{out}");
    fs::write(
        &p,
        json!({"args": ["id", "-u"], "cwd": "/",
               "capabilities": {"bounding": ["CAP_KILL", "CAP_NOPE"]}})
        .to_string(),
    )
    .unwrap();
    let out = exec(&c, &["--process", p.to_str().unwrap(), &c.id]);
    assert!(
        out.code == Some(255) && out.stderr.contains("CAP_NOPE"),
        "{out}"
    );
}

#[test]
fn exec_in_a_created_container_and_refusals() {
    let c = sleeper("exec-states");
    c.create_ok();
    let out = exec(&c, &[&c.id, "cat", "/proc/1/cmdline"]);
    // The parked init is a fork of `corten create` (no re-exec).
    assert!(
        out.ok().stdout.contains("create"),
        "the parked init is pid 1: {out}"
    );
    assert_eq!(c.state()["status"], "created", "exec does not start it");
    c.start_ok();

    c.rt(&["pause", &c.id]).ok();
    assert_err(
        &exec(&c, &[&c.id, "true"]),
        &["cannot exec in a paused container", "--ignore-paused"],
        &["paused"],
    );
    c.rt(&["resume", &c.id]).ok();

    assert_err(
        &exec(&c, &[&c.id, "no-such-program"]),
        &["executable file not found in $PATH"],
        &["executable file not found"],
    );
    assert_err(
        &exec(&c, &["--user", "bob", &c.id, "true"]),
        &["--user", "UID[:GID]"],
        &[],
    );

    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", Duration::from_secs(5));
    assert_err(
        &exec(&c, &[&c.id, "true"]),
        &["cannot exec in a stopped container"],
        &["stopped"],
    );
    assert_err(
        &c.rt(&["exec", "no-such-container", "true"]),
        &["does not exist"],
        &["does not exist"],
    );
    c.rt(&["delete", &c.id]).ok();
    c.assert_no_leftovers();
}

/// runc's exec fails with 255 (fatalWithCode), apart from the statuses its process passes
/// through; the other commands keep 1. A pid file that can't be written fails the exec,
/// and the process does not stay behind.
#[test]
fn exec_failures_exit_255() {
    let c = running("exec-255");
    let unknown = c.rt(&["exec", "no-such-container", "true"]);
    assert_err(&unknown, &["does not exist"], &["does not exist"]);
    assert_eq!(unknown.code, Some(255), "{unknown}");
    let missing = exec(&c, &[&c.id, "no-such-program"]);
    assert_err(&missing, &["executable file not found"], &["not found"]);
    assert_eq!(missing.code, Some(255), "{missing}");
    let pid_file = exec(
        &c,
        &["--pid-file", "/non-existent/dir/file", &c.id, "sleep", "30"],
    );
    assert_err(&pid_file, &["/non-existent/dir/file"], &["no such file"]);
    assert_eq!(pid_file.code, Some(255), "{pid_file}");
    let init = c.state()["pid"].as_i64().unwrap().to_string();
    let procs = format!("/sys/fs/cgroup/pids/{}/cgroup.procs", c.id);
    let only_init = crate::common::poll_until(Duration::from_secs(5), || {
        fs::read_to_string(&procs).is_ok_and(|p| p.lines().eq([init.as_str()]))
    });
    assert!(
        only_init,
        "the process was killed: {:?}",
        fs::read_to_string(&procs)
    );
    assert_eq!(exec(&c, &[&c.id, "sh", "-c", "exit 7"]).code, Some(7));
    let kill = c.rt(&["kill", "no-such-container"]);
    assert_eq!(kill.code, Some(1), "not exec: 1 {kill}");
}

/// `--log` with a relative path is the caller's cwd's, even for the lines written inside
/// the container (after it changed root and cwd), and debug lines stay out of the output.
#[test]
fn exec_debug_log_relative_to_the_callers_cwd() {
    let c = running("exec-log");
    let cwd = TempDir::new("exec-log");
    let root = c.root().to_string_lossy().into_owned();
    let out = crate::common::rt_in(
        cwd.path(),
        &[
            "--root", &root, "--debug", "--log", "log.out", "exec", &c.id, "true",
        ],
    );
    out.ok();
    assert!(!out.stderr.contains("level=debug"), "{out}");
    assert!(!out.stdout.contains("level=debug"), "{out}");
    let log = fs::read_to_string(cwd.join("log.out"))
        .unwrap_or_else(|e| panic!("log.out in the caller's cwd: {e}\n{out}"));
    assert!(log.contains("level=debug"), "{log}");
    assert!(
        log.contains("setns_init: about to exec"),
        "from inside: {log}"
    );
    assert!(!c.rootfs().join("log.out").exists(), "not the container's");
}

/// `--cgroup`, as runc's "exec --cgroup sub-cgroups [v1]": a path for every hierarchy or,
/// repeatable, per controller; the sub-cgroups must exist below the container's.
#[test]
fn exec_cgroup_sub_cgroups() {
    let c = running("exec-subcg");
    let cg = |args: &[&str]| {
        let mut full = vec!["exec"];
        for a in args {
            full.extend(["--cgroup", a]);
        }
        full.extend([c.id.as_str(), "cat", "/proc/self/cgroup"]);
        c.rt(&full)
    };
    let failed = |out: &crate::common::Out, want: &[&str]| {
        assert_err(out, want, want);
        assert_eq!(out.code, Some(255), "{out}");
    };
    failed(&cg(&[".."]), &[" .. is not a sub cgroup path"]);
    let missing = [
        "adding pid",
        "/nonexistent/cgroup.procs: no such file or directory",
    ];
    failed(&cg(&["nonexistent"]), &missing);
    failed(&cg(&["cpu:nonexistent"]), &missing);
    failed(&cg(&["whaaat:/"]), &["unknown controller whaaat"]);
    failed(
        &cg(&["memory:/", "plain"]),
        &["missing <controller>: prefix"],
    );

    // The container's own cgroup, implicitly and explicitly ("/"): its cgroup namespace's
    // root.
    for args in [&[][..], &["/"]] {
        let out = cg(args);
        let lines: Vec<&str> = out.ok().stdout.lines().collect();
        assert!(lines.iter().all(|l| l.ends_with(":/")), "{args:?}: {out}");
    }
    for (ctrl, sub) in [
        ("memory", "submem"),
        ("cpu", "subcpu"),
        ("cpuacct", "subcpu"),
    ] {
        fs::create_dir(format!("/sys/fs/cgroup/{ctrl}/{}/{sub}", c.id)).unwrap();
    }
    let out = cg(&["memory:submem", "cpu,cpuacct:subcpu"]);
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    for want in [
        ":memory:/submem",
        ":cpu:/subcpu",
        ":cpuacct:/subcpu",
        ":pids:/",
    ] {
        assert!(lines.iter().any(|l| l.ends_with(want)), "{want}: {out}");
    }
    // Delete removes the sub-cgroups with the container's.
    c.rt(&["delete", "-f", &c.id]).ok();
    c.assert_no_leftovers();
}

#[test]
fn exec_preserves_fds_when_asked() {
    use crate::common::rt_with_fd3;
    use crate::spec_fields::{fd_file, listed_fds};
    let c = running("exec-fds");
    let dir = TempDir::new("exec-fds");
    let file = fd_file(&dir);
    // Not last: busybox sh runs a last command in its own process, and ls's directory fd
    // would show up in the listing.
    let script = "cat <&3; ls -l /proc/$$/fd; echo end";
    let out = rt_with_fd3(
        &c,
        &["exec", "--preserve-fds", "1", &c.id, "sh", "-c", script],
        &file,
        false,
    );
    assert!(out.ok().stdout.starts_with("hello-fd\n"), "{out}");
    assert_eq!(listed_fds(&out.stdout), ["0", "1", "2", "3"], "{out}");
    let out = rt_with_fd3(&c, &["exec", &c.id, "sh", "-c", script], &file, false);
    assert_eq!(
        listed_fds(&out.stdout),
        ["0", "1", "2"],
        "not without it: {out}"
    );
}

#[test]
fn exec_enters_the_user_namespace_first() {
    let mut c = sleeper("exec-userns");
    crate::userns::user_ns(&mut c, 100000);
    c.create_ok();
    c.start_ok();
    let out = exec(&c, &[&c.id, "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let words: Vec<&str> = out.ok().stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "100000", "65536"], "{out}");
    let pid = exec_detached_sleep(&c);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t100000\t")),
        "root inside is 100000 outside: {status}"
    );
}

/// execCPUAffinity applies to exec'd processes: `initial` until the process is in the
/// cgroup, then `final`.
#[test]
fn exec_applies_exec_cpu_affinity() {
    let c = running("exec-affinity");
    let tmp = TempDir::new("exec");
    let p = tmp.join("process.json");
    let cpus = |aff: serde_json::Value| {
        fs::write(
            &p,
            json!({"args": ["grep", "Cpus_allowed_list", "/proc/self/status"], "cwd": "/",
                   "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
                   "execCPUAffinity": aff})
            .to_string(),
        )
        .unwrap();
        let out = exec(&c, &["--process", p.to_str().unwrap(), &c.id]);
        out.ok()
            .stdout
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(cpus(json!({"initial": "0"})), "0");
    assert_eq!(cpus(json!({"initial": "0", "final": "1"})), "1");
    assert_eq!(cpus(json!({"final": "0-1"})), "0-1");
}

/// CVE-2019-5736 during exec: the `corten exec` process (whose image the exec'd process
/// runs until its execve) can't be opened for writing through /proc/<pid>/exe.
#[test]
fn exec_binary_is_not_writable_through_proc_exe() {
    let c = running("exec-5736");
    let mut child = std::process::Command::new(crate::common::runtime())
        .args([
            "--root",
            c.root().to_str().unwrap(),
            "exec",
            &c.id,
            "sleep",
            "3",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let exe = format!("/proc/{}/exe", child.id());
    // Wait until it has re-executed itself from the protected copy.
    crate::common::poll_until(Duration::from_secs(5), || {
        fs::read_link(&exe).is_ok_and(|p| p != crate::common::runtime())
    });
    // The attack: hold the exe (O_PATH) and reopen it for writing once the runtime has
    // exited (then ETXTBSY no longer protects it).
    use std::os::unix::fs::OpenOptionsExt;
    let held = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&exe)
        .expect("hold /proc/<pid>/exe");
    child.wait().unwrap();
    use std::os::fd::AsRawFd;
    let err = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()))
        .expect_err("the runtime binary reopened for writing");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EROFS | libc::EPERM | libc::EACCES)
        ),
        "{err}"
    );
}

/// Serials of the keyrings named `_ses.<id>` in a /proc/keys text.
fn session_keyrings(keys: &str, id: &str) -> Vec<String> {
    let name = format!("_ses.{id}:");
    keys.lines()
        .filter(|l| l.split_whitespace().nth(8) == Some(name.as_str()))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// A sleeper whose /proc/keys is not masked, created with `create_flags`, started.
fn keyring_container(test: &str, create_flags: &[&str]) -> Container {
    let mut c = sleeper(test);
    let masked = c.config["linux"]["maskedPaths"].as_array_mut().unwrap();
    masked.retain(|p| p != "/proc/keys");
    c.write_config();
    let bundle = c.bundle_str();
    let mut args = vec!["create"];
    args.extend_from_slice(create_flags);
    args.extend_from_slice(&["--bundle", &bundle, &c.id]);
    c.rt(&args).ok();
    c.start_ok();
    c
}

/// As runc's setns init: the exec'd process joins the container's session keyring, the
/// very one its init made (a user sees only keyrings it possesses in /proc/keys); a
/// container made with --no-new-keyring leaves the caller's.
#[test]
fn exec_joins_the_containers_session_keyring() {
    let c = keyring_container("exec-keyring", &[]);
    let host = session_keyrings(&fs::read_to_string("/proc/keys").unwrap(), &c.id);
    assert_eq!(host.len(), 1, "the init's _ses.{} keyring", c.id);
    let out = exec(&c, &["-u", "1000", &c.id, "cat", "/proc/keys"]);
    assert_eq!(
        session_keyrings(&out.ok().stdout, &c.id),
        host,
        "the exec'd process possesses the init's keyring: {out}"
    );

    let c = keyring_container("exec-nokeyring", &["--no-new-keyring"]);
    let out = exec(&c, &["-u", "1000", &c.id, "cat", "/proc/keys"]);
    assert_eq!(
        session_keyrings(&out.ok().stdout, &c.id),
        Vec::<String>::new(),
        "{out}"
    );
}
