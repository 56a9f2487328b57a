//! A containerd daemon of a test's own (Debian's 1.6: root, state, sockets and config in a
//! temp dir) and its `ctr` client, torn down with everything it made on drop (tasks,
//! shims, the runtime's containers, cgroups, shim sockets). The ctr tests (containerd.rs)
//! run containers through it; the CRI tests (cri_suite.rs, also in the guest suite) start
//! it with the CRI plugin.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::common::{Out, TempDir, poll_until, unique_id};
use crate::image_support::sha256_hex;

/// A containerd of its own (root, state, sockets, config in a temp dir), with the test
/// image imported in a namespace of its own (so containers' cgroups are `/<ns>/<id>`).
/// The CRI tests (cri_suite.rs) start one with the CRI plugin instead (`start_in`).
pub(crate) struct Containerd {
    child: Option<Child>,
    pub(crate) dir: TempDir,
    pub(crate) address: String,
    pub(crate) ns: String,
    /// The cgroup (in every hierarchy) its containers live under, removed on drop.
    pub(crate) cgroup: String,
    ids: Mutex<Vec<String>>,
    _shared: Shared,
}

pub(crate) const IMAGE: &str = "localhost/corten-it:latest";

impl Containerd {
    pub(crate) fn start() -> Containerd {
        let dir = TempDir::new("containerd");
        let ns = dir_name(&dir);
        let c = Containerd::start_in(dir, ns.clone(), ns, "\"io.containerd.grpc.v1.cri\", ", "");
        c.import(IMAGE, &["/bin/sh"]);
        c
    }

    /// A containerd in `dir` whose clients use namespace `ns` and whose containers' cgroups
    /// are under `cgroup`; `disabled` lists extra plugins to disable (`"name", ...`) and
    /// `plugins` is more TOML for the config (the CRI plugin's section).
    pub(crate) fn start_in(
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
    pub(crate) fn import(&self, name: &str, cmd: &[&str]) {
        let base = name.strip_suffix(":latest").unwrap_or(name);
        let archive = self
            .dir
            .join(format!("{}.tar", sha256_hex(base.as_bytes())));
        write_oci_archive(&archive, cmd);
        let archive = archive.to_string_lossy().into_owned();
        self.ctr(&["image", "import", "--base-name", base, &archive])
            .ok();
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` for this daemon and namespace.
    pub(crate) fn cmd(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.args(["--address", &self.address, "--namespace", &self.ns]);
        cmd
    }

    pub(crate) fn ctr(&self, args: &[&str]) -> Out {
        run_cmd(self.dir.path(), self.cmd().args(args), None, CMD_TIMEOUT)
    }

    pub(crate) fn fifo_dir(&self) -> String {
        self.dir.join("fifo").to_string_lossy().into_owned()
    }

    /// The runc root the shim passes to corten (`--runc-root`), per namespace.
    pub(crate) fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// A fresh container id (remembered for cleanup).
    pub(crate) fn id(&self, tag: &str) -> String {
        let id = unique_id(tag);
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// `ctr run [flags] --runc-binary corten IMAGE ID ARGS...`
    pub(crate) fn run(&self, flags: &[&str], id: &str, args: &[&str]) -> Out {
        run_cmd(
            self.dir.path(),
            &mut self.run_command(flags, id, args),
            None,
            CMD_TIMEOUT,
        )
    }

    pub(crate) fn run_command(&self, flags: &[&str], id: &str, args: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("run").args(["--fifo-dir", &self.fifo_dir()]);
        cmd.args(["--runc-binary", &corten_path()])
            .arg("--runc-root")
            .arg(self.runc_root());
        cmd.args(flags).args([IMAGE, id]).args(args);
        cmd
    }

    /// `ctr task exec --exec-id EXEC [flags] ID ARGS...` as a Command.
    pub(crate) fn exec_command(
        &self,
        exec_id: &str,
        flags: &[&str],
        id: &str,
        args: &[&str],
    ) -> Command {
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
    pub(crate) fn exec(&self, exec_id: &str, flags: &[&str], id: &str, args: &[&str]) -> Out {
        let mut cmd = self.exec_command(exec_id, flags, id, args);
        run_cmd(self.dir.path(), &mut cmd, None, CMD_TIMEOUT)
    }

    /// The state dir corten keeps for `id` under the shim's root.
    pub(crate) fn state_dir(&self, id: &str) -> PathBuf {
        self.runc_root().join(&self.ns).join(id)
    }

    /// `ctr task ls` → STATUS of `id`.
    pub(crate) fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        out.ok();
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("<none>")
            .to_string()
    }

    pub(crate) fn task_pid(&self, id: &str) -> i32 {
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
