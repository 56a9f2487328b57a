//! containerd (Debian's 1.6, its io.containerd.runc.v2 shim) with corten as the runc binary:
//! `ctr run --runc-binary corten`. The shim calls corten with `--root <dir> --log
//! <bundle>/log.json --log-format json`, reads the last error object of that log, maps
//! "container not running" / "does not exist" to its own errors, deletes containers that
//! are already gone with `delete --force`, and lists processes with `ps --format json`. The
//! daemon and its client are containerd_daemon.rs.

use std::fs;
use std::time::Duration;

use super::containerd_daemon::Containerd;
use super::*;

/// A plain run: output, exit code, the `/<ns>/<id>` cgroup, and nothing left afterwards.
#[test]
fn containerd_run_output_exit_code_and_cleanup() {
    let c = Containerd::start();
    let id = c.id("ctd-run");
    let out = c.run(
        &["--rm"],
        &id,
        &[
            "sh",
            "-c",
            "echo hello from corten; grep -E '^[0-9]+:pids:' /proc/self/cgroup; exit 3",
        ],
    );
    assert_eq!(out.code, Some(3), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hello from corten"), "{out}");
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.ends_with(&format!(":pids:/{}/{id}", c.ns))),
        "containerd's cgroupsPath /<ns>/<id> should be used:\n{out}"
    );
    assert!(!c.state_dir(&id).exists(), "corten state left behind");
    assert!(
        !cgroup_exists(&format!("{}/{id}", c.ns)),
        "cgroup left behind"
    );
    assert!(c.ctr(&["container", "ls", "-q"]).stdout.trim().is_empty());
}

/// run -d, then `task exec`, `task ps` (corten ps --format json), pause/resume (the
/// freezer), kill, and the shim's view of a stopped container's errors.
#[test]
fn containerd_detached_exec_ps_pause_resume_kill() {
    let c = Containerd::start();
    let id = c.id("ctd-detached");
    c.run(&["-d"], &id, &["sleep", "1000"]).ok();
    assert_eq!(c.task_status(&id), "RUNNING");
    assert!(
        c.state_dir(&id).join("state.json").exists(),
        "the shim's --root should hold corten's state"
    );
    let pid = c.task_pid(&id);

    let out = c.exec("e1", &[], &id, &["sh", "-c", "echo in exec; id -u; exit 5"]);
    assert_eq!(out.code, Some(5), "{out}");
    assert_eq!(out.stdout, "in exec\n0\n", "{out}");
    let out = c.exec("e2", &["--user", "1000"], &id, &["id", "-u"]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "1000"), "{out}");
    // An exec whose program is missing: the error comes from corten's log.json.
    let out = c.exec("e3", &[], &id, &["/nope"]);
    out.fails();
    assert!(
        out.stderr
            .contains(r#"OCI runtime exec failed: exec "/nope": no such file or directory"#),
        "{out}"
    );

    // task ps: the shim runs `corten ps --format json`.
    let out = c.ctr(&["task", "ps", &id]);
    out.ok();
    let pids: Vec<i32> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(pids, vec![pid], "{out}");

    c.ctr(&["task", "pause", &id]).ok();
    assert_eq!(c.task_status(&id), "PAUSED");
    let freezer = cgroup_v1_file("freezer", &format!("{}/{id}", c.ns), "freezer.state");
    if freezer.exists() {
        assert_eq!(fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    }
    c.ctr(&["task", "resume", &id]).ok();
    assert_eq!(c.task_status(&id), "RUNNING");

    // kill --all with SIGKILL (sleep as pid 1 ignores SIGTERM).
    c.ctr(&["task", "kill", "--all", "--signal", "KILL", &id])
        .ok();
    assert!(
        poll_until(Duration::from_secs(10), || c.task_status(&id) == "STOPPED"),
        "the task did not stop"
    );
    // A kill of a stopped task: corten says "container not running", the shim maps it.
    let out = c.ctr(&["task", "kill", "--signal", "KILL", &id]);
    out.fails();
    assert!(out.stderr.contains("process already finished"), "{out}");
    c.ctr(&["task", "delete", &id]).ok();
    c.ctr(&["container", "delete", &id]).ok();
    assert!(!c.state_dir(&id).exists(), "corten state left behind");
    assert!(
        !cgroup_exists(&format!("{}/{id}", c.ns)),
        "cgroup left behind"
    );
}

/// A failing create: containerd reports the error corten wrote to log.json (the shim's
/// "OCI runtime create failed: <last error object's msg>"), and cleans up with
/// `delete --force` of a container corten never finished making.
#[test]
fn containerd_error_from_log_json() {
    let c = Containerd::start();
    for (arg, want) in [
        (
            "/nonexistent",
            r#"exec "/nonexistent": no such file or directory"#,
        ),
        ("/etc/passwd", r#"exec "/etc/passwd": permission denied"#),
    ] {
        let id = c.id("ctd-err");
        let out = c.run(&["--rm"], &id, &[arg]);
        out.fails();
        assert!(
            out.stderr
                .contains(&format!("OCI runtime create failed: {want}: unknown")),
            "{out}"
        );
        assert!(!c.state_dir(&id).exists(), "corten state left behind");
        assert!(
            !cgroup_exists(&format!("{}/{id}", c.ns)),
            "cgroup left behind"
        );
        let _ = c.ctr(&["container", "delete", &id]);
    }
}

/// Terminals: `ctr run -t` in a tmux window (the container's pty gets the window's size,
/// typed input reaches it, the exit code comes back) and `ctr task exec -t` on a pty.
#[test]
fn containerd_tty_run_and_exec() {
    let c = Containerd::start();
    let id = c.id("ctd-tty");
    let line = sh_line(&c.run_command(&["--rm", "-t"], &id, &["sh"]));
    let tmux = Tmux::start(c.dir.path(), &line, 90, 25);
    // (capture-pane trims the prompt's trailing space)
    tmux.wait_for_text("/ #");
    tmux.type_line("stty size; tty; echo typed-$((6*7))");
    let screen = tmux.wait_for_text("typed-42");
    assert!(screen.contains("25 90\n/dev/pts/0\n"), "{screen}");
    tmux.type_line("exit 5");
    tmux.wait_for_text("exit=5");
    drop(tmux);

    let id = c.id("ctd-tty-exec");
    c.run(&["-d"], &id, &["sleep", "1000"]).ok();
    let cmd = c.exec_command(
        "x1",
        &["-t"],
        &id,
        &["sh", "-c", "tty; [ -t 0 ] && echo stdin-tty; exit 3"],
    );
    let out = under_script(c.dir.path(), &sh_line(&cmd));
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    assert!(out.stdout.contains("stdin-tty"), "{out}");
    c.ctr(&["task", "kill", "--signal", "KILL", &id]).ok();
}
