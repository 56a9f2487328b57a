//! podman (Debian 12's 4.3) with `--cgroup-manager cgroupfs --runtime <the runtime under
//! test>` in the guest: run with output and exit code, and --memory enforced in the v2 file
//! the container sees. Storage, state and config all live in a temp dir of the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::on_v2_host;

pub const IMAGE: &str = "localhost/corten-guest:latest";

/// A podman with everything under its own temp dir, an imported busybox image, and the
/// runtime under test.
pub struct Podman {
    dir: TempDir,
    /// podman's cgroup manager: "cgroupfs", or "systemd" (podman's default; guest/systemd.rs).
    manager: &'static str,
}

impl Podman {
    fn new() -> Podman {
        Podman::with_manager("cgroupfs")
    }

    pub fn with_manager(manager: &'static str) -> Podman {
        let dir = TempDir::short("gpm");
        let conf = format!(
            "[engine]\ncgroup_manager = \"{manager}\"\nevents_logger = \"file\"\n\
             events_logfile_path = \"{}\"\nlock_type = \"file\"\nruntime = \"under-test\"\n\
             [engine.runtimes]\nunder-test = [\"{}\"]\n",
            dir.join("events.log").display(),
            runtime().display()
        );
        fs::write(dir.join("containers.conf"), conf).unwrap();
        let tar = image_tar(dir.path());
        let p = Podman { dir, manager };
        p.podman(&["import", &tar.to_string_lossy(), IMAGE]).ok();
        p
    }

    pub fn podman(&self, args: &[&str]) -> Out {
        let d = |s: &str| self.dir.join(s).to_string_lossy().into_owned();
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", d("containers.conf"))
            .args(["--root", &d("root"), "--runroot", &d("runroot")])
            .args(["--tmpdir", &d("tmp"), "--cgroup-manager", self.manager])
            .args(["--events-backend", "file", "--storage-driver", "overlay"])
            .args(args)
            .output()
            .expect("podman (in the guest image)");
        Out {
            cmd: format!("podman {}", args.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The busybox image (IMAGE) as a tar for `podman import`, made in `dir`: `dir`/rootfs.tar.
pub fn image_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs);
    // A copy, not make_rootfs's hard link: other tests' links change its ctime, which
    // tar reports as "file changed as we read it".
    let bb = rootfs.join("bin/busybox");
    fs::remove_file(&bb).unwrap();
    fs::copy("/bin/busybox", &bb).unwrap();
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .args([
            "-C",
            &rootfs.to_string_lossy(),
            "-cf",
            &tar.to_string_lossy(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success(), "tar of the rootfs");
    tar
}

impl Podman {
    /// `podman run --rm --network none FLAGS... IMAGE sh -c SCRIPT`
    pub fn run_rm(&self, flags: &[&str], script: &str) -> Out {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        self.podman(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.podman(&["system", "reset", "--force"]);
    }
}

/// `podman run --rm --memory 64m`: the output, the exit code, memory.max as the container
/// sees it, and an OOM-killed init gives 137.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn podman_cgroupfs_run_memory() {
    if !on_v2_host("podman_cgroupfs_run_memory") {
        return;
    }
    let p = Podman::new();
    let out = p.run_rm(
        &["--memory", "64m"],
        "cat /sys/fs/cgroup/memory.max; grep '^0::' /proc/self/cgroup; echo hello; exit 3",
    );
    assert_eq!(out.code, Some(3), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["67108864", "0::/", "hello"], "{out}");
    let out = p.run_rm(
        &["--memory", "32m", "--memory-swap", "32m"],
        "dd if=/dev/zero of=/dev/null bs=104857600 count=1",
    );
    assert_eq!(out.code, Some(137), "{out}");
    let out = p.podman(&["ps", "-a", "-q"]);
    assert_eq!(out.stdout.trim(), "", "--rm left containers: {out}");
}

/// The detached lifecycle: `podman run -d` (a TERM-trapping init), `exec` into it (its
/// cgroup as the container sees it, and pids.max), `stop` (TERM, then the runtime's kill),
/// `rm`; the cgroup goes with the container.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn podman_cgroupfs_detached_exec_stop_rm() {
    if !on_v2_host("podman_cgroupfs_detached_exec_stop_rm") {
        return;
    }
    let p = Podman::new();
    let out = p.podman(&[
        "run",
        "-d",
        "--network",
        "none",
        "--pids-limit",
        "42",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo term; exit 7' TERM; echo up; while :; do sleep 0.2; done",
    ]);
    out.ok();
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{out}");
    assert!(
        poll_until(STATE_TIMEOUT, || p
            .podman(&["logs", &id])
            .stdout
            .contains("up")),
        "no output: {}",
        p.podman(&["logs", &id])
    );
    let out = p.podman(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids.max; grep '^0::' /proc/self/cgroup; echo exec-ok",
    ]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["42", "0::/", "exec-ok"], "{out}");
    // The container's cgroup on the host holds the init (and only the container's).
    let inspect = p.podman(&["inspect", "--format", "{{.State.Pid}}", &id]);
    inspect.ok();
    let pid = inspect.stdout.trim().to_string();
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let cg_dir = std::path::Path::new("/sys/fs/cgroup").join(
        cg.trim()
            .strip_prefix("0::/")
            .unwrap_or_else(|| panic!("{cg}")),
    );
    assert_eq!(
        fs::read_to_string(cg_dir.join("pids.max")).unwrap().trim(),
        "42"
    );
    p.podman(&["stop", "--time", "5", &id]).ok();
    let out = p.podman(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        &id,
    ]);
    assert_eq!(out.stdout.trim(), "exited 7", "{out}");
    assert!(p.podman(&["logs", &id]).stdout.contains("term"));
    p.podman(&["rm", &id]).ok();
    assert_eq!(p.podman(&["ps", "-a", "-q"]).stdout.trim(), "");
    assert!(
        poll_until(STATE_TIMEOUT, || !cg_dir.exists()),
        "rm left the cgroup {}",
        cg_dir.display()
    );
}
