//! containerd (Debian's 1.6, its io.containerd.runc.v2 shim) with corten as the runc binary:
//! `ctr run --runc-binary corten`. The shim calls corten with `--root <dir> --log
//! <bundle>/log.json --log-format json`, reads the last error object of that log, maps
//! "container not running" / "does not exist" to its own errors, deletes containers that
//! are already gone with `delete --force`, and lists processes with `ps --format json`.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::common::{Out, TempDir, unique_id};

/// A containerd of its own (root, state, sockets, config in a temp dir), with the test
/// image imported in a namespace of its own (so containers' cgroups are `/<ns>/<id>`).
/// The CRI tests (cri.rs) start one with the CRI plugin instead (`start_cri`).
pub(super) struct Containerd {
    child: Option<Child>,
    pub(super) dir: TempDir,
    pub(super) address: String,
    pub(super) ns: String,
    /// The cgroup (in every hierarchy) its containers live under, removed on drop.
    pub(super) cgroup: String,
    ids: Mutex<Vec<String>>,
    _shared: Shared,
}

pub(super) const IMAGE: &str = "localhost/corten-it:latest";

impl Containerd {
    fn start() -> Containerd {
        let dir = TempDir::new("containerd");
        let ns = dir_name(&dir);
        let c = Containerd::start_in(dir, ns.clone(), ns, "\"io.containerd.grpc.v1.cri\", ", "");
        c.import(IMAGE, &["/bin/sh"]);
        c
    }

    /// A containerd in `dir` whose clients use namespace `ns` and whose containers' cgroups
    /// are under `cgroup`; `disabled` lists extra plugins to disable (`"name", ...`) and
    /// `plugins` is more TOML for the config (the CRI plugin's section).
    pub(super) fn start_in(
        dir: TempDir,
        ns: String,
        cgroup: String,
        disabled: &str,
        plugins: &str,
    ) -> Containerd {
        let shared = Shared::hold("containerd");
        let address = dir.join("c.sock").to_string_lossy().into_owned();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}"io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[debug]
  level = "info"
{plugins}"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("these tests need containerd (hack/install-deps.sh)");
        let c = Containerd {
            child: Some(child),
            dir,
            address,
            ns,
            cgroup,
            ids: Mutex::new(Vec::new()),
            _shared: shared,
        };
        let up = poll_until(Duration::from_secs(20), || {
            Command::new("ctr")
                .args(["--address", &c.address, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(up, "containerd did not start:\n{}", c.log());
        c
    }

    /// Imports the test image as `name` (`<base>:latest`) whose command is `cmd`.
    pub(super) fn import(&self, name: &str, cmd: &[&str]) {
        let base = name.strip_suffix(":latest").unwrap_or(name);
        let archive = self
            .dir
            .join(format!("{}.tar", sha256_hex(base.as_bytes())));
        write_oci_archive(&archive, cmd);
        let archive = archive.to_string_lossy().into_owned();
        self.ctr(&["image", "import", "--base-name", base, &archive])
            .ok();
    }

    pub(super) fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` for this daemon and namespace.
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.args(["--address", &self.address, "--namespace", &self.ns]);
        cmd
    }

    pub(super) fn ctr(&self, args: &[&str]) -> Out {
        run_cmd(self.dir.path(), self.cmd().args(args), None, CMD_TIMEOUT)
    }

    fn fifo_dir(&self) -> String {
        self.dir.join("fifo").to_string_lossy().into_owned()
    }

    /// The runc root the shim passes to corten (`--runc-root`), per namespace.
    pub(super) fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// A fresh container id (remembered for cleanup).
    fn id(&self, tag: &str) -> String {
        let id = unique_id(tag);
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// `ctr run [flags] --runc-binary corten IMAGE ID ARGS...`
    fn run(&self, flags: &[&str], id: &str, args: &[&str]) -> Out {
        run_cmd(
            self.dir.path(),
            &mut self.run_command(flags, id, args),
            None,
            CMD_TIMEOUT,
        )
    }

    fn run_command(&self, flags: &[&str], id: &str, args: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("run").args(["--fifo-dir", &self.fifo_dir()]);
        cmd.args(["--runc-binary", &corten_path()])
            .arg("--runc-root")
            .arg(self.runc_root());
        cmd.args(flags).args([IMAGE, id]).args(args);
        cmd
    }

    /// `ctr task exec --exec-id EXEC [flags] ID ARGS...` as a Command.
    fn exec_command(&self, exec_id: &str, flags: &[&str], id: &str, args: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.args([
            "task",
            "exec",
            "--fifo-dir",
            &self.fifo_dir(),
            "--exec-id",
            exec_id,
        ]);
        cmd.args(flags).arg(id).args(args);
        cmd
    }

    /// `ctr task exec --exec-id EXEC [flags] ID ARGS...`
    fn exec(&self, exec_id: &str, flags: &[&str], id: &str, args: &[&str]) -> Out {
        let mut cmd = self.exec_command(exec_id, flags, id, args);
        run_cmd(self.dir.path(), &mut cmd, None, CMD_TIMEOUT)
    }

    /// The state dir corten keeps for `id` under the shim's root.
    fn state_dir(&self, id: &str) -> PathBuf {
        self.runc_root().join(&self.ns).join(id)
    }

    /// `ctr task ls` → STATUS of `id`.
    fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        out.ok();
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("<none>")
            .to_string()
    }

    fn task_pid(&self, id: &str) -> i32 {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no task {id}:\n{out}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first, through containerd (the shims clean up after themselves) ...
        let ids = self.ids.lock().map(|v| v.clone()).unwrap_or_default();
        for id in &ids {
            for args in [
                &["task", "kill", "--all", "--signal", "KILL", id][..],
                &["task", "delete", "--force", id],
                &["container", "delete", id],
            ] {
                quietly(self.cmd().args(args));
            }
        }
        // ... then the daemon, and whatever of this test is still running.
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
        kill_procs_mentioning(&self.address);
        delete_all_in(&self.runc_root().join(&self.ns));
        remove_cgroup_tree(&self.cgroup);
        for id in &ids {
            let _ = fs::remove_file(shim_socket(&self.address, &self.ns, id));
        }
        // TempDir's drop detaches the snapshot mounts and removes everything.
    }
}

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
