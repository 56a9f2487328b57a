//! Checkpoint and restore through an engine and on the cgroup v1 host (the guest's criu):
//! containerd 1.6's `ctr container checkpoint --task --rw` and `ctr container restore
//! --live --rw` with the runtime under test as the runc shim's binary (the shim runs
//! `checkpoint --leave-running` on the paused task, then `restore --detach --pid-file` for
//! the new task), and `checkpoint`/`restore` of a counter whose config mounts the cgroup
//! filesystem, in the guest booted on cgroup v1, where each hierarchy's mount is external
//! to CRIU (as runc declares them). The counter is guest/checkpoint.rs's; the same bodies
//! run with runc (the reference).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checkpoint::{
    COUNTER, MEMORY, assert_consecutive_in, assert_counted_on, checkpoint, counter, criu_found,
    criu_log, current, current_in, guest_ready, restore, wait_past, wait_past_in,
};
use crate::common::*;
use crate::engines::containerd_daemon::Containerd;
use crate::run_engine;
use crate::systemd_v1::{on_v1_systemd_host, serial};

/// `ctr ARGS...` for this daemon, with the guest's engine timeout; shown as it ends (on
/// the test's stderr, uncaptured: a hung step is seen before the guest's timeout).
fn ctr(c: &Containerd, args: &[&str]) -> Out {
    let out = run_engine(
        c.dir.path(),
        c.cmd().args(args),
        format!("ctr {}", args.join(" ")),
    );
    progress(&format!("ctr {}: exit {:?}", args.join(" "), out.code));
    out
}

/// Fails the test unless `out` succeeded, with it and `more()`.
fn succeeded(out: &Out, more: impl Fn() -> String) {
    if !out.success() {
        panic!("{out}\n{}", more());
    }
    progress(&format!("{}: ok", out.cmd));
}

/// Panics are shown on stderr as they happen (and then as usual): a cleanup that hangs
/// after a failed step would otherwise keep the message until the guest's timeout.
fn show_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            progress(&format!("panic: {info}"));
            default(info);
        }));
    });
}

/// One line of progress on stderr, past the harness's capture.
fn progress(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "checkpoint_engines: {line}");
}

/// The task's bundle (rootfs, the runtime's log.json, criu-dump.log on a failed dump).
fn bundle(c: &Containerd, id: &str) -> PathBuf {
    c.dir
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.ns)
        .join(id)
}

/// What went wrong, for an assertion message: the runtime's log, CRIU's dump log as the
/// shim keeps it, and containerd's log.
fn logs(c: &Containerd, id: &str) -> String {
    let b = bundle(c, id);
    let read = |p: PathBuf| fs::read_to_string(p).unwrap_or_default();
    format!(
        "the runtime's log:\n{}\ncriu-dump.log:\n{}\ncontainerd's log:\n{}",
        read(b.join("log.json")),
        read(b.join("criu-dump.log")),
        c.log()
    )
}

/// The counter (64 MiB memory limit) run by containerd, checkpointed with `ctr c
/// checkpoint --task --rw` (the task is paused, dumped with --leave-running and resumed:
/// it counts on), killed and deleted with its container, then restored from the
/// checkpoint image with `ctr c restore --live --rw`: the new task counts on from where
/// the checkpoint was taken (the rw layer and the memory both from the checkpoint), with
/// its memory limit.
#[test]
#[ignore = "guest only"]
fn containerd_checkpoint_and_restore() {
    if !guest_ready("checkpoint_engines::containerd_checkpoint_and_restore") {
        return;
    }
    show_panics();
    let c = Containerd::start();
    progress("containerd started");
    let id = c.id("g-ckpt-ctd");
    let mut run = c.run_command(
        &["-d", "--memory-limit", &MEMORY.to_string()],
        &id,
        &["sh", "-c", COUNTER],
    );
    run_engine(c.dir.path(), &mut run, format!("ctr run -d ... {id}")).ok();
    let rootfs = bundle(&c, &id).join("rootfs");
    wait_past_in(&rootfs, 3, "before the checkpoint");

    let image = format!("localhost/{id}:checkpoint");
    let out = ctr(
        &c,
        &["container", "checkpoint", "--task", "--rw", &id, &image],
    );
    succeeded(&out, || logs(&c, &id));
    assert_eq!(c.task_status(&id), "RUNNING", "after ctr c checkpoint");
    let n = current_in(&rootfs);
    wait_past_in(
        &rootfs,
        n + 1,
        "after the checkpoint (it leaves the task running)",
    );

    ctr(&c, &["task", "kill", "--signal", "KILL", &id]).ok();
    assert!(
        poll_until(Duration::from_secs(30), || c.task_status(&id) == "STOPPED"),
        "the task did not stop: {}",
        c.task_status(&id)
    );
    ctr(&c, &["task", "delete", &id]).ok();
    ctr(&c, &["container", "delete", &id]).ok();

    let out = ctr(&c, &["container", "restore", "--live", "--rw", &id, &image]);
    succeeded(&out, || logs(&c, &id));
    assert!(
        poll_until(Duration::from_secs(30), || c.task_status(&id) == "RUNNING"),
        "the restored task is {}\n{}",
        c.task_status(&id),
        logs(&c, &id)
    );
    let restored_at = current_in(&rootfs);
    wait_past_in(&rootfs, restored_at + 2, "after the restore");
    // The rw layer is the checkpoint's, and the count goes on from there: no gap, no
    // restart.
    assert_consecutive_in(&rootfs, "count");
    let pid = c.task_pid(&id);
    let cg = Path::new("/sys/fs/cgroup").join(&c.ns).join(&id);
    let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "the restored task {pid} is not in {}: {procs:?}",
        cg.display()
    );
    assert_eq!(
        fs::read_to_string(cg.join("memory.max")).unwrap().trim(),
        MEMORY.to_string()
    );
}

/// On the guest booted on cgroup v1: the counter, whose config mounts the cgroup
/// filesystem (a tmpfs with one mount per hierarchy, in its cgroup namespace), is
/// checkpointed and restored; it counts on, its memory limit is in memory.limit_in_bytes
/// again, and inside the container /sys/fs/cgroup/memory is the new cgroup's directory.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the guest booted on cgroup v1"]
fn counter_restored_on_v1() {
    let test = "checkpoint_engines::counter_restored_on_v1";
    if !on_v1_systemd_host(test) || !criu_found(test) {
        return;
    }
    show_panics();
    let _serial = serial();
    let c = counter("ckpt-v1");
    c.create_ok();
    c.start_ok();
    wait_past(&c, 3, "before the checkpoint");
    let host_limit = Path::new("/sys/fs/cgroup/memory")
        .join(&c.id)
        .join("memory.limit_in_bytes");
    let limits = |pid: u64| {
        let inside = format!("/proc/{pid}/root/sys/fs/cgroup/memory/memory.limit_in_bytes");
        let read = |p: &Path| {
            fs::read_to_string(p)
                .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
                .trim()
                .to_string()
        };
        (read(&host_limit), read(Path::new(&inside)))
    };
    let pid = c.state()["pid"].as_u64().unwrap();
    let want = (MEMORY.to_string(), MEMORY.to_string());
    assert_eq!(limits(pid), want, "before the checkpoint (host, container)");

    let dir = TempDir::new("ckpt");
    let (images, work) = (dir.join("images"), dir.join("work"));
    let img = format!("--image-path={}", images.display());
    let wrk = format!("--work-path={}", work.display());
    let out = checkpoint(&c, &[&img, &wrk]);
    succeeded(&out, || criu_log(&work));
    assert!(
        !c.state_out().success(),
        "the container outlived its checkpoint"
    );
    assert!(
        !host_limit.exists(),
        "the checkpoint left the memory cgroup"
    );
    let stopped_at = current(&c);

    let out = restore(&c, &images, &work);
    succeeded(&out, || criu_log(&work));
    let st = c.wait_status("running", Duration::from_secs(10));
    wait_past(&c, stopped_at + 2, "after the restore");
    assert_counted_on(&c);
    let pid = st["pid"].as_u64().unwrap();
    assert_eq!(limits(pid), want, "after the restore (host, container)");
    let procs = fs::read_to_string(
        Path::new("/sys/fs/cgroup/memory")
            .join(&c.id)
            .join("cgroup.procs"),
    )
    .unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "the restored init {pid} is not in its memory cgroup: {procs:?}; /proc/{pid}/cgroup:\n{}",
        fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
    );
    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    assert!(
        mounts.contains(" /sys/fs/cgroup/memory "),
        "no memory hierarchy mounted in the restored container:\n{mounts}"
    );

    // A restore that CRIU fails late (the image's memory pages removed): one line quoting
    // CRIU's log, and nothing left in any hierarchy, no mount, no process.
    let other = counter("ckpt-v1-bad");
    other.write_config();
    let bad = dir.join("bad");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&images)
        .arg(&bad)
        .status()
        .unwrap();
    assert!(cp.success(), "cp -a {}", images.display());
    for e in fs::read_dir(&bad).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("pages-") {
            fs::remove_file(e.path()).unwrap();
        }
    }
    let out = restore(&other, &bad, &dir.join("badwork"));
    progress(&format!("{}: {:?}", out.cmd, out.stderr.trim()));
    assert_err(
        &out,
        &["criu restore", "Error ("],
        &["criu", "restore", "fail"],
    );
    other.assert_no_leftovers();
    c.wait_status("running", Duration::from_secs(5));
}
