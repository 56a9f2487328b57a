//! `checkpoint` and `restore` with CRIU (the guest's Debian criu; it cannot initialise on
//! the host's kernel): a busybox shell loop counting into a file it keeps open is dumped
//! and restored, and goes on counting from where it stopped, as the same pid in its pid
//! namespace, in a cgroup with the same limits. With --leave-running the original runs on;
//! a pre-dump followed by a dump on it (--parent-path) restores too; and the failures are
//! one line that leaves nothing behind. The same bodies run with runc (the reference).

use std::fs;
use std::path::Path;
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
    let mut c = Container::new(test);
    c.set("/linux/resources", json!({"memory": {"limit": MEMORY}}));
    // The counter writes into its rootfs, which the host reads.
    c.set("/root/readonly", json!(false));
    c.sh(COUNTER);
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
        // a restored task "exited, status=1"), where corten's restore goes on. Said, not
        // hidden.
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
