//! containerd (Debian 12's 1.6, its io.containerd.runc.v2 shim) with the runtime under
//! test as its runc binary: a daemon of its own (root, state, socket in a temp dir) and
//! `ctr run --rootfs` on a busybox root made here, so no image and no network are needed.
//! With cgroupfs (the shim's default) the container's cgroup is `/<namespace>/<id>`; with
//! systemd cgroups (`SystemdCgroup = true`, Kubernetes' setting) it is the scope the
//! runtime makes from cgroupsPath `slice:prefix:name`.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::systemd::{assert_unit_gone, assert_unit_runs, on_systemd_host, read_cg};
use crate::{on_v2_host, run_engine};

struct Containerd {
    child: Option<Child>,
    dir: TempDir,
    address: String,
    ns: String,
    ids: Vec<String>,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = TempDir::short("gctd");
        let address = dir.join("c.sock").to_string_lossy().into_owned();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        make_rootfs(&dir.join("rootfs"));
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd (in the guest image)");
        let c = Containerd {
            child: Some(child),
            ns: format!("gctd{}", std::process::id()),
            dir,
            address,
            ids: Vec::new(),
        };
        assert!(
            poll_until(Duration::from_secs(60), || c.ctr(&["version"]).success()),
            "containerd did not start:\n{}",
            fs::read_to_string(c.dir.join("containerd.log")).unwrap_or_default()
        );
        c
    }

    fn ctr(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("ctr");
        cmd.args(["--address", &self.address, "--namespace", &self.ns])
            .args(args);
        run_engine(self.dir.path(), &mut cmd, format!("ctr {}", args.join(" ")))
    }

    /// `ctr task exec` of `sh -c SCRIPT` in task `id` (exec id x1, fifos in the test's dir).
    fn exec_sh(&self, id: &str, script: &str) -> Out {
        let fifo = self.dir.join("fifo").to_string_lossy().into_owned();
        self.ctr(&[
            "task",
            "exec",
            "--fifo-dir",
            &fifo,
            "--exec-id",
            "x1",
            id,
            "sh",
            "-c",
            script,
        ])
    }

    /// `ctr run --runc-binary <runtime> --env PATH=... FLAGS --rootfs <rootfs> ID ARGS...`
    /// (without an image config, the process has no PATH of its own)
    fn run(&mut self, flags: &[&str], id: &str, args: &[&str]) -> Out {
        self.ids.push(id.to_string());
        let fifo = self.dir.join("fifo").to_string_lossy().into_owned();
        let rootfs = self.dir.join("rootfs").to_string_lossy().into_owned();
        let rt = runtime().to_string_lossy().into_owned();
        let mut a = vec![
            "run",
            "--fifo-dir",
            &fifo,
            "--runc-binary",
            &rt,
            "--env",
            DEFAULT_PATH,
        ];
        a.extend_from_slice(flags);
        a.extend_from_slice(&["--rootfs", &rootfs, id]);
        a.extend_from_slice(args);
        self.ctr(&a)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn cgroup(&self, id: &str) -> std::path::PathBuf {
        std::path::Path::new("/sys/fs/cgroup")
            .join(&self.ns)
            .join(id)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in self.ids.clone() {
            let _ = self.ctr(&["task", "kill", "--all", "--signal", "KILL", &id]);
            let _ = self.ctr(&["task", "delete", "--force", &id]);
            let _ = self.ctr(&["container", "delete", &id]);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(&self.ns));
    }
}

/// `ctr run --rm` (output, exit code, the `/<ns>/<id>` cgroup as the container sees it),
/// then `run -d`, `task exec`, `task kill` (TERM, trapped: exit 7), `task delete`:
/// memory.max lands, and the cgroup comes and goes with the container.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn containerd_cgroupfs_run_exec_kill() {
    if !on_v2_host("containerd_cgroupfs_run_exec_kill") {
        return;
    }
    let mut c = Containerd::start();
    let id = unique_id("gctd-run");
    let out = c.run(
        &["--rm", "--memory-limit", "67108864"],
        &id,
        &[
            "sh",
            "-c",
            "sed -n 's/^0:://p' /proc/self/cgroup; echo hello; exit 3",
        ],
    );
    assert_eq!(out.code, Some(3), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    // No cgroup namespace in containerd 1.6's default spec: the host's path shows.
    assert_eq!(
        lines.first().copied(),
        Some(format!("/{}/{id}", c.ns).as_str()),
        "the container's cgroup should be /<ns>/<id>:\n{out}"
    );
    assert_eq!(lines.get(1), Some(&"hello"), "{out}");
    assert!(!c.cgroup(&id).exists(), "--rm left the cgroup");

    let id = unique_id("gctd-det");
    c.run(
        &["-d", "--memory-limit", "67108864"],
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.2; done",
        ],
    )
    .ok();
    let cg = c.cgroup(&id);
    assert_eq!(
        fs::read_to_string(cg.join("memory.max")).unwrap().trim(),
        "67108864"
    );
    let out = c.exec_sh(&id, "grep '^0::' /proc/self/cgroup; echo exec-ok");
    out.ok();
    assert!(out.stdout.contains("exec-ok"), "{out}");
    let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(!procs.trim().is_empty(), "no process in {}", cg.display());
    c.ctr(&["task", "kill", "--signal", "TERM", &id]).ok();
    assert!(
        poll_until(Duration::from_secs(20), || c
            .ctr(&["task", "ls"])
            .stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))),
        "{}",
        c.ctr(&["task", "ls"])
    );
    // ctr warns of the task's non-zero exit status.
    let out = c.ctr(&["task", "delete", &id]);
    out.ok();
    assert!(
        out.stderr.contains("exit code 7"),
        "the TERM trap's exit status: {out}"
    );
    c.ctr(&["container", "delete", &id]).ok();
    assert!(
        poll_until(STATE_TIMEOUT, || !cg.exists()),
        "task delete left the cgroup {}",
        cg.display()
    );
}

/// containerd's runc shim with systemd cgroups (`SystemdCgroup = true`, the Kubernetes
/// setting; `ctr run --runc-systemd-cgroup` sets the same shim option) and cgroupsPath
/// `system.slice:gctd:<id>`: the runtime makes the scope `gctd-<id>.scope`, `run --rm`
/// runs in it, a detached container's unit is active in `systemctl status` with
/// `--memory-limit` as MemoryMax and in memory.max, `task exec` joins it, `task kill`
/// TERMs the init (trapped: exit 7), and after `task delete` no unit and no cgroup are left.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn containerd_systemd_cgroup_run_exec_kill() {
    if !on_systemd_host("containerd_systemd_cgroup_run_exec_kill") {
        return;
    }
    let mut c = Containerd::start();
    let id = unique_id("g-ctd-sd");
    let cgroup = format!("system.slice:gctd:{id}");
    let unit = format!("gctd-{id}.scope");
    let out = c.run(
        &[
            "--rm",
            "--runc-systemd-cgroup",
            "--cgroup",
            &cgroup,
            "--memory-limit",
            "67108864",
        ],
        &id,
        &[
            "sh",
            "-c",
            "sed -n 's/^0:://p' /proc/self/cgroup; echo hello; exit 3",
        ],
    );
    assert_eq!(out.code, Some(3), "{out}\n{}", c.log());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [format!("/system.slice/{unit}").as_str(), "hello"],
        "{out}"
    );
    assert_unit_gone(&unit, &Path::new("/sys/fs/cgroup/system.slice").join(&unit));

    let id = unique_id("g-ctd-sd");
    let cgroup = format!("system.slice:gctd:{id}");
    let unit = format!("gctd-{id}.scope");
    c.run(
        &[
            "-d",
            "--runc-systemd-cgroup",
            "--cgroup",
            &cgroup,
            "--memory-limit",
            "67108864",
        ],
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.2; done",
        ],
    )
    .ok();
    let pid = c
        .ctr(&["task", "ls"])
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        .unwrap_or_else(|| panic!("no task {id}: {}", c.ctr(&["task", "ls"])));
    let dir = assert_unit_runs(&unit, &pid, &[("MemoryMax", "67108864")]);
    assert_eq!(dir, Path::new("/sys/fs/cgroup/system.slice").join(&unit));
    assert_eq!(read_cg(&dir, "memory.max"), "67108864");
    let out = c.exec_sh(&id, "sed -n 's/^0:://p' /proc/self/cgroup");
    out.ok();
    assert_eq!(out.stdout.trim(), format!("/system.slice/{unit}"), "{out}");
    c.ctr(&["task", "kill", "--signal", "TERM", &id]).ok();
    assert!(
        poll_until(Duration::from_secs(20), || c
            .ctr(&["task", "ls"])
            .stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))),
        "{}",
        c.ctr(&["task", "ls"])
    );
    let out = c.ctr(&["task", "delete", &id]);
    let log = c
        .dir
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.ns)
        .join(&id)
        .join("log.json");
    assert!(
        out.success(),
        "{out}\nthe runtime's log:\n{}\ncontainerd's log:\n{}",
        fs::read_to_string(&log).unwrap_or_default(),
        c.log()
    );
    assert!(
        out.stderr.contains("exit code 7"),
        "the TERM trap's exit status: {out}"
    );
    c.ctr(&["container", "delete", &id]).ok();
    assert_unit_gone(&unit, &dir);
}
