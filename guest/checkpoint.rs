//! `checkpoint` and `restore` with CRIU (the guest's Debian criu; it cannot initialise on
//! the host's kernel): a busybox shell loop counting into a file it keeps open is dumped
//! and restored, and goes on counting from where it stopped, as the same pid in its pid
//! namespace, in a cgroup with the same limits. With --leave-running the original runs on;
//! a pre-dump followed by a dump on it (--parent-path) restores too; and the failures are
//! one line that leaves nothing behind. Then runc's other flags, each on its own flow: a
//! terminal given back through `restore --console-socket`, --file-locks, --ext-unix-sk,
//! --empty-ns network, a paused container, a page server, lazy pages with --status-fd and
//! `criu lazy-pages`, --lsm-mount-context. The same bodies run with runc (the reference).

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::{cgroup_file, on_v2_host};

/// memory.max the counter runs under (64 MiB), kept across a restore.
pub(crate) const MEMORY: u64 = 67108864;

/// A container whose shell counts 1, 2, 3... every 0.2 s: appended to /count through fd 3
/// (kept open), written to stdout (/log, inside the rootfs: CRIU dumps only files it can
/// reach from the container) and to /cur.
pub(crate) fn counter(test: &str) -> Container {
    counter_with(test, "")
}

/// The counter, started after the shell commands `first` (e.g. taking a lock).
fn counter_with(test: &str, first: &str) -> Container {
    let mut c = Container::new(test);
    c.set("/linux/resources", json!({"memory": {"limit": MEMORY}}));
    // The counter writes into its rootfs, which the host reads.
    c.set("/root/readonly", json!(false));
    c.sh(&format!("{first} {COUNTER}"));
    c
}

/// The counter's shell script (`sh -c`).
pub(crate) const COUNTER: &str = "exec </dev/null >/log 2>&1 3>>/count; i=0; \
    while true; do i=$((i+1)); echo $i >&3; echo $i; echo $i >/cur.tmp; \
    mv /cur.tmp /cur; sleep 0.2; done";

/// The counter's latest value (0 before its first).
pub(crate) fn current(c: &Container) -> u64 {
    current_in(&c.rootfs())
}

/// The latest value of the counter running on `rootfs`.
pub(crate) fn current_in(rootfs: &Path) -> u64 {
    fs::read_to_string(rootfs.join("cur"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the counter is past `n`.
pub(crate) fn wait_past(c: &Container, n: u64, what: &str) -> u64 {
    wait_past_in(&c.rootfs(), n, what)
}

/// Waits until the counter running on `rootfs` is past `n`.
pub(crate) fn wait_past_in(rootfs: &Path, n: u64, what: &str) -> u64 {
    assert!(
        poll_until(Duration::from_secs(60), || current_in(rootfs) > n),
        "{what}: the counter did not go past {n} (log: {:?})",
        fs::read_to_string(rootfs.join("log")).unwrap_or_default()
    );
    current_in(rootfs)
}

/// The container init's host pid (from `state`) and its pid in its own pid namespace.
fn pids(c: &Container) -> (u32, u32) {
    let st = c.state();
    let pid = st["pid"].as_u64().unwrap() as u32;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status_field(&status, "NSpid").unwrap();
    let inner = nspid.split_whitespace().last().unwrap().parse().unwrap();
    (pid, inner)
}

/// /count holds 1, 2, 3, ... with no gap and no restart.
pub(crate) fn assert_counted_on(c: &Container) {
    assert_consecutive(c, "count");
}

/// The file `name` of the rootfs holds 1, 2, 3, ... one a line: nothing lost or repeated.
fn assert_consecutive(c: &Container, name: &str) {
    assert_consecutive_in(&c.rootfs(), name);
}

/// The file `name` of `rootfs` holds 1, 2, 3, ... one a line.
pub(crate) fn assert_consecutive_in(rootfs: &Path, name: &str) {
    let text = fs::read_to_string(rootfs.join(name)).unwrap();
    for (i, line) in text.lines().enumerate() {
        assert_eq!(
            line.trim(),
            (i + 1).to_string(),
            "/{name} does not go on from where it stopped:\n{text}"
        );
    }
}

pub(crate) fn checkpoint(c: &Container, extra: &[&str]) -> Out {
    let mut args = vec!["checkpoint"];
    args.extend_from_slice(extra);
    args.push(&c.id);
    c.rt(&args)
}

pub(crate) fn restore(c: &Container, images: &Path, work: &Path) -> Out {
    let bundle = c.bundle_str();
    c.rt(&[
        "restore",
        "-d",
        "--image-path",
        images.to_str().unwrap(),
        "--work-path",
        work.to_str().unwrap(),
        "-b",
        &bundle,
        &c.id,
    ])
}

/// A CRIU failure's log, for the assertion message.
pub(crate) fn criu_log(work: &Path) -> String {
    let mut out = String::new();
    for name in ["dump.log", "pre-dump.log", "restore.log"] {
        if let Ok(t) = fs::read_to_string(work.join(name)) {
            let tail: Vec<&str> = t.lines().rev().take(25).collect();
            out.push_str(&format!("--- {name} (last lines)\n"));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

pub(crate) fn guest_ready(test: &str) -> bool {
    on_v2_host(test) && criu_found(test)
}

/// criu is installed (in the guest it must be; elsewhere a visible skip).
pub(crate) fn criu_found(test: &str) -> bool {
    let found = std::process::Command::new("criu")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CORTEN_GUEST").is_none(),
            "{test}: criu is missing in the guest"
        );
        skipped(test, "needs criu (the guest has it)");
    }
    found
}

#[test]
#[ignore = "guest only"]
fn restored_counter_goes_on_where_it_stopped() {
    if !guest_ready("checkpoint::restored_counter_goes_on_where_it_stopped") {
        return;
    }
    let c = counter("ckpt-counter");
    c.create_ok();
    c.start_ok();
    wait_past(&c, 3, "before the checkpoint");
    let (_, nspid) = pids(&c);
    let dir = TempDir::new("ckpt");
    let (images, work) = (dir.join("images"), dir.join("work"));
    let img = format!("--image-path={}", images.display());
    let wrk = format!("--work-path={}", work.display());
    let out = checkpoint(&c, &[&img, &wrk]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    // As runc: the checkpointed container is gone, its id free for the restore.
    assert!(
        !c.state_out().success(),
        "the container outlived its checkpoint"
    );
    let stopped_at = current(&c);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        current(&c),
        stopped_at,
        "the counter ran on after the checkpoint"
    );

    let out = restore(&c, &images, &work);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    c.wait_status("running", Duration::from_secs(10));
    wait_past(&c, stopped_at + 2, "after the restore");
    assert_counted_on(&c);
    let (pid, nspid_after) = pids(&c);
    assert_eq!(nspid_after, nspid, "not the same pid in its pid namespace");
    let fd3 = fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
    assert!(
        fd3.to_string_lossy().ends_with("/count"),
        "fd 3 is {}",
        fd3.display()
    );
    assert_eq!(cgroup_file(&c.id, "memory.max"), MEMORY.to_string());
    let procs = cgroup_file(&c.id, "cgroup.procs");
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "the restored init {pid} is not in the container's cgroup: {procs}"
    );
}

#[test]
#[ignore = "guest only"]
fn leave_running_keeps_the_original() {
    if !guest_ready("checkpoint::leave_running_keeps_the_original") {
        return;
    }
    let c = counter("ckpt-leave");
    c.create_ok();
    c.start_ok();
    wait_past(&c, 2, "before the checkpoint");
    let (pid, _) = pids(&c);
    let dir = TempDir::new("ckpt");
    let (images, work) = (dir.join("images"), dir.join("work"));
    let img = format!("--image-path={}", images.display());
    let wrk = format!("--work-path={}", work.display());
    let out = checkpoint(&c, &["--leave-running", &img, &wrk]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    assert!(images.join("descriptors.json").exists());
    let st = c.wait_status("running", Duration::from_secs(5));
    assert_eq!(st["pid"].as_u64(), Some(u64::from(pid)));
    let n = current(&c);
    wait_past(&c, n + 2, "after --leave-running");
    assert_counted_on(&c);
}

#[test]
#[ignore = "guest only"]
fn pre_dump_then_dump_restores() {
    if !guest_ready("checkpoint::pre_dump_then_dump_restores") {
        return;
    }
    let c = counter("ckpt-predump");
    c.create_ok();
    c.start_ok();
    wait_past(&c, 2, "before the pre-dump");
    let dir = TempDir::new("ckpt");
    let (parent, images, work) = (dir.join("parent"), dir.join("images"), dir.join("work"));
    let par = format!("--image-path={}", parent.display());
    let wrk = format!("--work-path={}", work.display());
    let out = checkpoint(&c, &["--pre-dump", &par, &wrk]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    c.wait_status("running", Duration::from_secs(5));
    let n = current(&c);
    wait_past(&c, n + 1, "after the pre-dump");
    // The parent is named relative to the image directory, as CRIU takes it.
    let img = format!("--image-path={}", images.display());
    let out = checkpoint(&c, &["--parent-path=../parent", &img, &wrk]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    let stopped_at = current(&c);
    let out = restore(&c, &images, &work);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    wait_past(&c, stopped_at + 2, "after the restore");
    assert_counted_on(&c);
}

#[test]
#[ignore = "guest only"]
fn checkpoint_and_restore_failures_are_clean() {
    if !guest_ready("checkpoint::checkpoint_and_restore_failures_are_clean") {
        return;
    }
    let dir = TempDir::new("ckpt");
    // A stopped container cannot be checkpointed.
    let mut stopped = Container::new("ckpt-stopped");
    stopped.args(&["true"]);
    stopped.create_ok();
    stopped.start_ok();
    stopped.wait_status("stopped", Duration::from_secs(30));
    let img = format!("--image-path={}", dir.join("stopped").display());
    let out = checkpoint(&stopped, &[&img]);
    assert_err(&out, &["not running"], &["not running", "stopped"]);

    // A restore into an id that exists keeps that container.
    let c = counter("ckpt-exists");
    c.create_ok();
    c.start_ok();
    let (images, work) = (dir.join("images"), dir.join("work"));
    let i = format!("--image-path={}", images.display());
    let w = format!("--work-path={}", work.display());
    let out = checkpoint(&c, &["--leave-running", &i, &w]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    let out = restore(&c, &images, &work);
    assert_err(&out, &["already exists"], &["exists"]);
    c.wait_status("running", Duration::from_secs(5));

    // A corrupt image directory: CRIU's error, one line, nothing left.
    let other = counter("ckpt-corrupt");
    other.write_config();
    let bad = dir.join("bad");
    fs::create_dir(&bad).unwrap();
    fs::copy(
        images.join("descriptors.json"),
        bad.join("descriptors.json"),
    )
    .unwrap();
    fs::write(bad.join("inventory.img"), b"not an image").unwrap();
    let out = restore(&other, &bad, &dir.join("badwork"));
    assert_err(&out, &["criu", "restore"], &["criu", "restore", "fail"]);
    other.assert_no_leftovers();
}

/// With the systemd cgroup driver the restored counter is in a scope of the same name,
/// with its limit (CRIU joins the scope first, its tasks are restored there).
#[test]
#[ignore = "guest only"]
fn restore_with_the_systemd_driver() {
    let test = "checkpoint::restore_with_the_systemd_driver";
    if !guest_ready(test) || !crate::systemd::on_systemd_host(test) {
        return;
    }
    let mut c = counter("ckpt-sd");
    let unit = format!("ckpt-{}.scope", c.id);
    c.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:ckpt:{}", c.id)),
    );
    c.write_config();
    let bundle = c.bundle_str();
    c.rt(&["--systemd-cgroup", "create", "--bundle", &bundle, &c.id])
        .ok();
    c.rt(&["--systemd-cgroup", "start", &c.id]).ok();
    wait_past(&c, 2, "before the checkpoint");
    let dir = TempDir::new("ckpt");
    let (images, work) = (dir.join("images"), dir.join("work"));
    let img = format!("--image-path={}", images.display());
    let wrk = format!("--work-path={}", work.display());
    let out = c.rt(&["--systemd-cgroup", "checkpoint", &img, &wrk, &c.id]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    let stopped_at = current(&c);
    let out = c.rt(&[
        "--systemd-cgroup",
        "restore",
        "-d",
        &img,
        &wrk,
        "-b",
        &bundle,
        &c.id,
    ]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    wait_past(&c, stopped_at + 2, "after the restore");
    assert_counted_on(&c);
    let (pid, _) = pids(&c);
    let cg = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    assert_eq!(
        crate::systemd::read_cg(&cg, "memory.max"),
        MEMORY.to_string()
    );
    let procs = crate::systemd::read_cg(&cg, "cgroup.procs");
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "the restored init {pid} is not in {unit}: {procs}"
    );
    c.rt(&["--systemd-cgroup", "delete", "-f", &c.id]).ok();
}

/// podman (4.3, conmon) checkpoints and restores a container running under the runtime,
/// in place and through an exported tarball as a new container.
#[test]
#[ignore = "guest only"]
fn podman_checkpoint_restore() {
    if !guest_ready("checkpoint::podman_checkpoint_restore") {
        return;
    }
    let p = crate::podman::Podman::with_manager("cgroupfs");
    let name = format!("ckpt-pm-{}", std::process::id());
    let script = "i=0; while true; do i=$((i+1)); echo $i >/cur; sleep 0.2; done";
    let run = [
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        crate::podman::IMAGE,
        "sh",
        "-c",
        script,
    ];
    p.podman(&run).ok();
    let cur = |n: &str| -> u64 {
        let out = p.podman(&["exec", n, "cat", "/cur"]);
        out.stdout.trim().parse().unwrap_or(0)
    };
    assert!(poll_until(Duration::from_secs(60), || cur(&name) > 2));
    p.podman(&["container", "checkpoint", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "exited");
    p.podman(&["container", "restore", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "running");
    let before = cur(&name);
    assert!(before > 2, "the restored counter starts over: {before}");
    assert!(poll_until(Duration::from_secs(30), || cur(&name) > before));

    let tmp = TempDir::new("pm-ckpt");
    let tar = tmp.join("ckpt.tar.gz").to_string_lossy().into_owned();
    p.podman(&["container", "checkpoint", "--export", &tar, &name])
        .ok();
    let copy = format!("{name}-copy");
    p.podman(&["container", "restore", "--import", &tar, "--name", &copy])
        .ok();
    let at = cur(&copy);
    assert!(at >= before, "the imported counter starts over: {at}");
    assert!(poll_until(Duration::from_secs(30), || cur(&copy) > at));
}

/// A TCP connection inside the container (busybox nc over its loopback): the checkpoint
/// refuses it without --tcp-established, and with the flag the restored pair goes on
/// talking over the same connection, nothing lost or repeated.
#[test]
#[ignore = "guest only"]
fn tcp_established_connection_survives() {
    if !guest_ready("checkpoint::tcp_established_connection_survives") {
        return;
    }
    let mut c = Container::new("ckpt-tcp");
    c.set("/root/readonly", json!(false));
    // The server's stdin never ends (busybox nc stops reading at its EOF).
    c.sh(
        "exec </dev/null >/log 2>&1; sleep 1000000 | nc -l -p 4321 >/received & sleep 1; \
         i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done | nc 127.0.0.1 4321",
    );
    c.create_ok();
    c.start_ok();
    let received = |c: &Container| -> u64 {
        fs::read_to_string(c.rootfs().join("received"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .max()
            .unwrap_or(0)
    };
    assert!(
        poll_until(Duration::from_secs(60), || received(&c) > 2),
        "nothing received (log: {:?})",
        fs::read_to_string(c.rootfs().join("log")).unwrap_or_default()
    );
    let dir = TempDir::new("ckpt");
    let (images, work) = (dir.join("images"), dir.join("work"));
    let img = format!("--image-path={}", images.display());
    let wrk = format!("--work-path={}", work.display());
    let out = checkpoint(&c, &[&img, &wrk]);
    assert!(
        !out.success(),
        "a connected socket was dumped without --tcp-established"
    );
    c.wait_status("running", Duration::from_secs(10));
    let _ = fs::remove_dir_all(&images);
    let out = checkpoint(&c, &["--tcp-established", &img, &wrk]);
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    let stopped_at = received(&c);
    let bundle = c.bundle_str();
    let out = c.rt(&[
        "restore",
        "-d",
        "--tcp-established",
        &img,
        &wrk,
        "-b",
        &bundle,
        &c.id,
    ]);
    if is_runc() && !out.success() {
        // Seen in the guest: runc 1.1.5 dumps the connection but its restore fails (CRIU:
        // a restored task "exited, status=1"): both dump the network namespace empty, and
        // runc leaves the new one's loopback device down, where corten brings it up. Said,
        // not hidden.
        skipped(
            "checkpoint::tcp_established_connection_survives",
            &format!(
                "runc's restore of the connection failed: {}",
                out.stderr.trim()
            ),
        );
        return;
    }
    assert!(out.success(), "{out}\n{}", criu_log(&work));
    assert!(
        poll_until(Duration::from_secs(30), || received(&c) > stopped_at + 2),
        "the connection carried nothing after the restore (at {stopped_at})"
    );
    assert_consecutive(&c, "received");
}

/// A terminal container (`terminal: true`, its pty master sent to a console socket): the
/// restore sends the new master to `restore --console-socket` (CRIU's orphan-pts-master),
/// and the shell answers a line typed there.
#[test]
#[ignore = "guest only"]
fn restore_sends_the_terminal_to_the_console_socket() {
    if !guest_ready("checkpoint::restore_sends_the_terminal_to_the_console_socket") {
        return;
    }
    let mut c = Container::new("ckpt-tty");
    c.set("/process/terminal", json!(true));
    c.sh("while read l; do echo \"ponG $l\"; done");
    c.write_config();
    let bundle = c.bundle_str();
    let sock = ConsoleSocket::new();
    let s = sock.path_str();
    c.rt(&["create", "--bundle", &bundle, "--console-socket", &s, &c.id])
        .ok();
    let (master, _) = sock.recv_master();
    c.start_ok();
    write_pty(&master, "Ping1\n");
    read_pty(&master, Some("ponG Ping1"));
    let dir = TempDir::new("ckpt");
    checkpoint_ok(&c, &dir, &[]);
    drop(master);
    let sock = ConsoleSocket::new();
    restore_ok(&c, &dir, &["--console-socket", &sock.path_str()]);
    let (master, _) = sock.recv_master();
    c.wait_status("running", Duration::from_secs(10));
    write_pty(&master, "Ping2\n");
    read_pty(&master, Some("ponG Ping2"));
}

/// `--image-path=` and `--work-path=` arguments for the directories `images` and `work` of
/// `dir`.
fn dirs(dir: &TempDir) -> (String, String) {
    (
        format!("--image-path={}", dir.join("images").display()),
        format!("--work-path={}", dir.join("work").display()),
    )
}

/// Creates and starts the counter `c` and waits for it to count past 2.
fn start_counting(c: &Container) {
    c.create_ok();
    c.start_ok();
    wait_past(c, 2, "before the checkpoint");
}

/// `checkpoint EXTRA` into the image and work directories of `dir` ([`dirs`]), which must
/// succeed.
fn checkpoint_ok(c: &Container, dir: &TempDir, extra: &[&str]) {
    let (img, wrk) = dirs(dir);
    let mut args = extra.to_vec();
    args.extend([img.as_str(), wrk.as_str()]);
    let out = checkpoint(c, &args);
    assert!(out.success(), "{out}\n{}", criu_log(&dir.join("work")));
}

/// `restore -d EXTRA` from the image and work directories of `dir`, which must succeed.
fn restore_ok(c: &Container, dir: &TempDir, extra: &[&str]) {
    let (img, wrk) = dirs(dir);
    let bundle = c.bundle_str();
    let mut args = vec!["restore", "-d"];
    args.extend_from_slice(extra);
    args.extend([
        img.as_str(),
        wrk.as_str(),
        "-b",
        bundle.as_str(),
        c.id.as_str(),
    ]);
    let out = c.rt(&args);
    assert!(out.success(), "{out}\n{}", criu_log(&dir.join("work")));
}

/// The restored counter goes on past `stopped_at`, nothing lost or repeated.
fn counts_on(c: &Container, stopped_at: u64) {
    wait_past(c, stopped_at + 2, "after the restore");
    assert_counted_on(c);
}

/// Copies the host's program `prog` and the libraries it links (ldd's list) into `rootfs`,
/// at the same paths.
fn install_host_program(rootfs: &Path, prog: &str) {
    let out = std::process::Command::new("ldd")
        .arg(prog)
        .output()
        .unwrap();
    let libs = String::from_utf8_lossy(&out.stdout).into_owned();
    let files = libs
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .chain([prog]);
    for f in files {
        let dest = rootfs.join(f.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(f, &dest).unwrap_or_else(|e| panic!("copy {f} to {}: {e}", dest.display()));
    }
}

/// Whether the host can take the lock on `file` (util-linux flock, not waiting).
fn lock_free(file: &Path) -> bool {
    std::process::Command::new("flock")
        .args(["-n"])
        .arg(file)
        .arg("true")
        .status()
        .unwrap()
        .success()
}

/// A counter holding an flock on /lock (util-linux's flock, copied in with its libraries:
/// busybox has none; a lock the test takes and hands over with --preserve-fds is on a file
/// of the host's mount, which CRIU cannot dump): the checkpoint refuses it without --file-locks (CRIU's error
/// quoted, one line, the container left running, no image directory left), and with the
/// flag the restored counter holds the lock again.
#[test]
#[ignore = "guest only"]
fn file_locks_are_refused_or_kept() {
    if !guest_ready("checkpoint::file_locks_are_refused_or_kept") {
        return;
    }
    let c = counter_with("ckpt-lock", "exec 4>>/lock; /usr/bin/flock -x 4;");
    install_host_program(&c.rootfs(), "/usr/bin/flock");
    let dir = TempDir::new("ckpt");
    let lock = c.rootfs().join("lock");
    start_counting(&c);
    assert!(
        !lock_free(&lock),
        "the container does not hold its lock (log: {:?}; /proc/locks: {:?})",
        fs::read_to_string(c.rootfs().join("log")).unwrap_or_default(),
        fs::read_to_string("/proc/locks").unwrap_or_default()
    );
    let (img, wrk) = dirs(&dir);
    let out = checkpoint(&c, &[&img, &wrk]);
    assert_err(&out, &["criu dump failed", "lock"], &["criu failed"]);
    c.wait_status("running", Duration::from_secs(10));
    if !is_runc() {
        assert!(!dir.join("images").exists(), "the image directory is left");
    }
    let _ = fs::remove_dir_all(dir.join("images"));
    checkpoint_ok(&c, &dir, &["--file-locks"]);
    assert!(lock_free(&lock), "the lock outlived the checkpoint");
    let stopped_at = current(&c);
    restore_ok(&c, &dir, &["--file-locks"]);
    counts_on(&c, stopped_at);
    assert!(!lock_free(&lock), "the restored container lost its lock");
}

/// Runs the runtime (`--root` of `c`, then `args`) in the background through /bin/sh after
/// the shell commands `first` (e.g. `exec 5>FILE && `: fds for it), with stdout `stdout`
/// and stderr into `err`.
fn spawn_rt(
    c: &Container,
    args: &[&str],
    first: &str,
    stdout: Stdio,
    err: &Path,
) -> std::process::Child {
    let root = c.root().to_string_lossy().into_owned();
    std::process::Command::new("/bin/sh")
        .args(["-c", &format!("{first}exec \"$@\""), "sh"])
        .arg(runtime())
        .args(["--root", &root])
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(fs::File::create(err).unwrap())
        .spawn()
        .expect("spawn /bin/sh")
}

/// Waits (up to `timeout`) for a child of `spawn_rt` and returns its outcome.
fn finish(mut child: std::process::Child, err: &Path, what: &str, timeout: Duration) -> Out {
    let exited = poll_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let out = Out {
        cmd: what.to_string(),
        code: status.code(),
        stdout: String::new(),
        stderr: fs::read_to_string(err).unwrap_or_default(),
    };
    assert!(exited, "timed out and killed:\n{out}");
    out
}

/// The numbers the counter sent to `sock` (a datagram each, "N\n") until one is at least
/// `until`, or, with None, until a second passes without any; panics after 60 s.
fn read_numbers(sock: &std::os::unix::net::UnixDatagram, until: Option<u64>) -> Vec<u64> {
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut nums = Vec::new();
    loop {
        if until.is_some_and(|u| nums.last().is_some_and(|l| *l >= u)) {
            return nums;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {until:?} from the socket: {nums:?}"
        );
        let mut buf = [0u8; 64];
        match sock.recv(&mut buf) {
            Ok(n) => nums.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .filter_map(|l| l.trim().parse::<u64>().ok()),
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if until.is_none() {
                    return nums;
                }
            }
            Err(e) => panic!("read the socket: {e}"),
        }
    }
}

/// The counter's stdout is a unix datagram socket connected to one the test bound (outside
/// the container: CRIU supports external datagram sockets only, "Ext stream not supported"
/// for a stream): the checkpoint refuses it without --ext-unix-sk; with it the dump
/// succeeds, and the restore (--ext-unix-sk), where CRIU connects the socket again to the
/// name inside the container, counts on from where it stopped into the test's socket. The
/// name is in a directory bound into the container at its host path, so that it resolves
/// there (elsewhere CRIU's connect fails: "No such file or directory").
#[test]
#[ignore = "guest only"]
fn ext_unix_sk_dumps_a_socket_connected_outside() {
    let test = "checkpoint::ext_unix_sk_dumps_a_socket_connected_outside";
    if !guest_ready(test) {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let mut c = Container::new("ckpt-unix");
    c.set("/root/readonly", json!(false));
    // CRIU finds a socket's peer through sock_diag in the container's network namespace:
    // the peer must be there (a peer in another one is "not found" with or without the
    // flag), so the container shares the host's.
    c.remove_namespace("network");
    c.sh("exec </dev/null 2>/log; i=0; \
         while true; do i=$((i+1)); echo $i; sleep 0.2; done");
    let dir = TempDir::new("ckpt");
    let shared = dir.join("shared");
    fs::create_dir(&shared).unwrap();
    c.add_mount(bind(&shared.to_string_lossy(), &shared, &["rbind"]));
    c.write_config();
    let err = dir.join("rt.err");
    let bundle = c.bundle_str();
    let name = shared.join("ext.sock");
    let ours = UnixDatagram::bind(&name).unwrap();
    let connected = || {
        let s = UnixDatagram::unbound().unwrap();
        s.connect(&name).unwrap();
        Stdio::from(std::os::fd::OwnedFd::from(s))
    };
    let child = spawn_rt(
        &c,
        &["create", "--bundle", &bundle, &c.id],
        "",
        connected(),
        &err,
    );
    finish(child, &err, "create", RUNTIME_TIMEOUT).ok();
    c.start_ok();
    read_numbers(&ours, Some(3));
    let (img, wrk) = dirs(&dir);
    let out = checkpoint(&c, &[&img, &wrk]);
    assert_err(&out, &["criu dump failed"], &["criu failed"]);
    c.wait_status("running", Duration::from_secs(10));
    let _ = fs::remove_dir_all(dir.join("images"));
    checkpoint_ok(&c, &dir, &["--ext-unix-sk"]);
    let before = read_numbers(&ours, None);
    let stopped_at = *before.last().unwrap();
    let mut child = spawn_rt(
        &c,
        &[
            "restore",
            "-d",
            "--ext-unix-sk",
            &img,
            &wrk,
            "-b",
            &bundle,
            &c.id,
        ],
        "",
        Stdio::null(),
        &err,
    );
    let restored = poll_until(RUNTIME_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    assert!(restored, "restore hangs: {}", criu_log(&dir.join("work")));
    let out = finish(child, &err, "restore --ext-unix-sk", RUNTIME_TIMEOUT);
    assert!(out.success(), "{out}\n{}", criu_log(&dir.join("work")));
    let after = read_numbers(&ours, Some(stopped_at + 3));
    let expect: Vec<u64> = (stopped_at + 1..=*after.last().unwrap()).collect();
    assert_eq!(
        after, expect,
        "the restored counter does not go on at {stopped_at}"
    );
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> NetNs {
        let name = unique_id("ckpt-netns");
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        NetNs(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// The inode of a namespace file (`/proc/PID/ns/net`, a bind under /run/netns).
fn ns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}

/// The config's namespaces with the network namespace at `path`.
fn net_at(c: &Container, path: &str) -> serde_json::Value {
    let namespaces: Vec<serde_json::Value> = c.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            if n["type"] == "network" {
                json!({"type": "network", "path": path})
            } else {
                n.clone()
            }
        })
        .collect();
    json!(namespaces)
}

/// A counter in a prepared network namespace (named by path in the config, as in runc's
/// test "checkpoint and restore in external network namespace") is checkpointed with
/// `--empty-ns network`; the restore (`--empty-ns network`, the config now naming another
/// prepared namespace) puts it in that one, and it counts on. (Without a path both runc
/// and corten restore into a new, empty namespace: seen in the guest.)
#[test]
#[ignore = "guest only"]
fn empty_network_ns_restores_into_a_prepared_one() {
    if !guest_ready("checkpoint::empty_network_ns_restores_into_a_prepared_one") {
        return;
    }
    let (first, netns) = (NetNs::new(), NetNs::new());
    let mut c = counter("ckpt-emptyns");
    c.set("/linux/namespaces", net_at(&c, &first.path()));
    start_counting(&c);
    let dir = TempDir::new("ckpt");
    checkpoint_ok(&c, &dir, &["--empty-ns", "network"]);
    let stopped_at = current(&c);
    c.set("/linux/namespaces", net_at(&c, &netns.path()));
    c.write_config();
    restore_ok(&c, &dir, &["--empty-ns", "network"]);
    counts_on(&c, stopped_at);
    let (pid, _) = pids(&c);
    assert_eq!(
        ns_inode(&format!("/proc/{pid}/ns/net")),
        ns_inode(&netns.path()),
        "the restored counter is not in the prepared network namespace"
    );
}

/// A TCP port for one test's page server, different for each test and each run.
fn port(n: u16) -> u16 {
    20000 + (std::process::id() % 2000) as u16 * 4 + n
}

/// Whether something listens on TCP `port` (/proc/net/tcp, state 0A).
fn listening(port: u16) -> bool {
    let tcp = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

/// A CRIU daemon the test started (page-server, lazy-pages), killed on drop if it is still
/// running.
struct Daemon(std::process::Child, &'static str);

impl Daemon {
    fn start(what: &'static str, args: &[&str], log: &Path) -> Daemon {
        let child = std::process::Command::new("criu")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start criu {what}: {e}"));
        Daemon(child, what)
    }

    /// Waits for it to end by itself (60 s): its exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let done = poll_until(Duration::from_secs(60), || {
            matches!(self.0.try_wait(), Ok(Some(_)))
        });
        assert!(done, "criu {} did not end", self.1);
        self.0.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Live migration's final dump through a page server (`criu page-server`): the memory
/// pages go to the server's directory, the rest to the image directory; both together
/// restore.
#[test]
#[ignore = "guest only"]
fn page_server_receives_the_pages() {
    if !guest_ready("checkpoint::page_server_receives_the_pages") {
        return;
    }
    let c = counter("ckpt-ps");
    start_counting(&c);
    let dir = TempDir::new("ckpt");
    let served = dir.join("served");
    fs::create_dir(&served).unwrap();
    let p = port(0);
    let served_s = served.to_string_lossy().into_owned();
    let mut server = Daemon::start(
        "page-server",
        &["page-server", "-D", &served_s, "--port", &p.to_string()],
        &dir.join("page-server.err"),
    );
    assert!(
        poll_until(Duration::from_secs(30), || listening(p)),
        "criu page-server does not listen on {p}"
    );
    checkpoint_ok(&c, &dir, &[&format!("--page-server=127.0.0.1:{p}")]);
    assert!(server.wait().success(), "criu page-server failed");
    let images = dir.join("images");
    let pages: Vec<String> = fs::read_dir(&served)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        pages.iter().any(|n| n.starts_with("pages-")),
        "the page server received no pages: {pages:?}"
    );
    assert!(
        !fs::read_dir(&images).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("pages-")),
        "the pages were written locally too"
    );
    for n in &pages {
        fs::copy(served.join(n), images.join(n)).unwrap();
    }
    let stopped_at = current(&c);
    restore_ok(&c, &dir, &[]);
    counts_on(&c, stopped_at);
}

/// Lazy migration (runc's "checkpoint --lazy-pages and restore"): the checkpoint serves the
/// pages itself and says so on --status-fd (a \0); `criu lazy-pages` fetches them for a
/// restore under a new id (the original lives until the last page is sent), which counts
/// on; the checkpoint ends once the pages are all sent.
#[test]
#[ignore = "guest only"]
fn lazy_pages_restore_fetches_from_the_checkpoint() {
    let test = "checkpoint::lazy_pages_restore_fetches_from_the_checkpoint";
    if !guest_ready(test) {
        return;
    }
    let uffd = std::process::Command::new("criu")
        .args(["check", "--feature", "uffd-noncoop"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !uffd {
        skipped(
            test,
            "criu check --feature uffd-noncoop: no userfaultfd here",
        );
        return;
    }
    let c = counter("ckpt-lazy");
    start_counting(&c);
    let dir = TempDir::new("ckpt");
    let (img, wrk) = dirs(&dir);
    let p = port(1);
    let ps = format!("--page-server=127.0.0.1:{p}");
    let status = dir.join("status");
    let err = dir.join("checkpoint.err");
    let ckpt = spawn_rt(
        &c,
        &[
            "checkpoint",
            "--lazy-pages",
            &ps,
            "--status-fd",
            "5",
            &img,
            &wrk,
            &c.id,
        ],
        &format!("exec 5>{} && ", status.display()),
        Stdio::null(),
        &err,
    );
    let ready = poll_until(Duration::from_secs(60), || {
        fs::metadata(&status).is_ok_and(|m| m.len() > 0)
    });
    assert!(
        ready,
        "nothing on --status-fd: {}\n{}",
        fs::read_to_string(&err).unwrap_or_default(),
        criu_log(&dir.join("work"))
    );
    assert_eq!(fs::read(&status).unwrap(), [0], "--status-fd got not a \\0");
    let images = dir.join("images");
    assert!(images.join("inventory.img").exists());
    let images_s = images.to_string_lossy().into_owned();
    let port_s = p.to_string();
    let mut lazy = Daemon::start(
        "lazy-pages",
        &[
            "lazy-pages",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
            &port_s,
            "-D",
            &images_s,
        ],
        &dir.join("lazy-pages.err"),
    );
    // The restored container: a new id, the same rootfs (its files are open in the image).
    let mut r = Container::with_root("ckpt-lazy-r", c.root_arc());
    r.config = c.config.clone();
    r.set("/root/path", json!(c.rootfs().to_string_lossy()));
    r.set("/linux/cgroupsPath", json!(format!("/{}", r.id)));
    r.write_config();
    let bundle = r.bundle_str();
    // CRIU's restore finds the lazy-pages daemon's socket in its work directory, which
    // is the daemon's image directory (as in runc's test).
    let rwork = format!("--work-path={}", images.display());
    let out = r.rt(&[
        "restore",
        "-d",
        "--lazy-pages",
        &img,
        &rwork,
        "-b",
        &bundle,
        &r.id,
    ]);
    assert!(out.success(), "{out}\n{}", criu_log(&images));
    let out = finish(
        ckpt,
        &err,
        "checkpoint --lazy-pages",
        Duration::from_secs(60),
    );
    assert!(out.success(), "{out}\n{}", criu_log(&dir.join("work")));
    assert!(lazy.wait().success(), "criu lazy-pages failed");
    r.wait_status("running", Duration::from_secs(10));
    counts_on(&c, current(&c));
}

/// `restore --lsm-mount-context` reaches CRIU (rpc.proto's lsm_mount_context, CRIU 3.16+).
/// CRIU uses it only for mounts that had a `context=` option, which an AppArmor guest has
/// none of: what is observable here is that the restore takes it and the counter goes on.
#[test]
#[ignore = "guest only"]
fn lsm_mount_context_is_accepted() {
    let test = "checkpoint::lsm_mount_context_is_accepted";
    if !guest_ready(test) {
        return;
    }
    let c = counter("ckpt-lsmctx");
    start_counting(&c);
    let dir = TempDir::new("ckpt");
    checkpoint_ok(&c, &dir, &[]);
    let stopped_at = current(&c);
    let (img, wrk) = dirs(&dir);
    let bundle = c.bundle_str();
    let out = c.rt(&[
        "restore",
        "-d",
        "--lsm-mount-context",
        "system_u:object_r:container_file_t:s0:c1,c2",
        &img,
        &wrk,
        "-b",
        &bundle,
        &c.id,
    ]);
    if is_runc() && !out.success() && out.stderr.contains("flag provided but not defined") {
        skipped(test, "runc 1.1.5 has no --lsm-mount-context");
        return;
    }
    assert!(out.success(), "{out}\n{}", criu_log(&dir.join("work")));
    counts_on(&c, stopped_at);
}

/// A paused container, as runc 1.1.5 does in this guest: `checkpoint --leave-running`
/// dumps it and leaves it paused (still frozen, not counting); a plain checkpoint dumps it
/// and removes it; its restore runs (not paused: the new cgroup is thawed) and counts on.
#[test]
#[ignore = "guest only"]
fn paused_container_checkpoints_and_restores_running() {
    if !guest_ready("checkpoint::paused_container_checkpoints_and_restores_running") {
        return;
    }
    let c = counter("ckpt-paused");
    c.create_ok();
    c.start_ok();
    wait_past(&c, 2, "before the pause");
    c.rt(&["pause", &c.id]).ok();
    c.wait_status("paused", Duration::from_secs(10));
    let at = current(&c);
    let dir = TempDir::new("ckpt");
    checkpoint_ok(&c, &dir, &["--leave-running"]);
    c.wait_status("paused", Duration::from_secs(10));
    assert_eq!(cgroup_file(&c.id, "cgroup.freeze"), "1");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        current(&c),
        at,
        "the paused counter ran after --leave-running"
    );
    let _ = fs::remove_dir_all(dir.join("images"));
    checkpoint_ok(&c, &dir, &[]);
    assert!(
        !c.state_out().success(),
        "the paused container outlived its checkpoint"
    );
    restore_ok(&c, &dir, &[]);
    c.wait_status("running", Duration::from_secs(10));
    counts_on(&c, at);
    assert_eq!(cgroup_file(&c.id, "cgroup.freeze"), "0");
}

/// A veth link between the host and a container's own network namespace (what CNI's
/// bridge plugin makes for podman, docker, containerd), deleted on drop.
struct Veth(String);

impl Veth {
    /// `host` on the host, `eth0` (10.199.0.2/24, up) in the network namespace of `pid`.
    fn into_ns_of(pid: u32) -> Veth {
        let host = format!("ckv{}", std::process::id() % 100_000);
        let sh = format!(
            "ip link add {host} type veth peer name eth0 netns {pid} && \
             nsenter -t {pid} -n ip addr add 10.199.0.2/24 dev eth0 && \
             nsenter -t {pid} -n ip link set eth0 up && ip link set {host} up"
        );
        let ok = std::process::Command::new("sh")
            .args(["-c", &sh])
            .status()
            .unwrap()
            .success();
        let v = Veth(host);
        assert!(ok, "{sh}");
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

/// A counter whose own network namespace has a veth link to the host, as an engine's
/// network plugin sets it up: the namespace is dumped empty, as runc always does ("runc
/// doesn't manage network devices"; CRIU could not restore the veth: "Unknown peer net
/// namespace"), and the restored counter counts on in a namespace with only `lo`.
#[test]
#[ignore = "guest only"]
fn veth_in_the_network_namespace() {
    if !guest_ready("checkpoint::veth_in_the_network_namespace") {
        return;
    }
    let c = counter("ckpt-veth");
    start_counting(&c);
    let (pid, _) = pids(&c);
    let _veth = Veth::into_ns_of(pid);
    let dir = TempDir::new("ckpt");
    checkpoint_ok(&c, &dir, &[]);
    let stopped_at = current(&c);
    restore_ok(&c, &dir, &[]);
    counts_on(&c, stopped_at);
    let (pid, _) = pids(&c);
    let dev = fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let links: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim()))
        .collect();
    assert_eq!(links, ["lo"], "the restored network namespace is not empty");
}
