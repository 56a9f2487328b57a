//! The container guard: one container under test with its own bundle and `--root`,
//! driven through the runtime's commands and force-deleted on drop (even if the test
//! panicked), and the host-side checks for leftovers.

use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// One container under test: its id, its own bundle (rootfs + config), and a
/// `--root` state directory (possibly shared with other containers). On drop,
/// runs `delete -f` and removes the temporary directories, even if the test
/// panicked.
pub struct Container {
    pub id: String,
    /// Written to `<bundle>/config.json` by `write_config` (and by `create`
    /// and `run`); tests tweak it freely before that.
    pub config: Value,
    root: Arc<TempDir>,
    bundle: TempDir,
}

impl Container {
    /// A container with a fresh bundle and its own `--root`.
    pub fn new(test: &str) -> Container {
        Container::with_root(test, Arc::new(TempDir::new("root")))
    }

    /// A container with a fresh bundle, in a `--root` shared with others.
    pub fn with_root(test: &str, root: Arc<TempDir>) -> Container {
        let id = unique_id(test);
        let bundle = TempDir::new("bundle");
        make_rootfs(&bundle.join("rootfs"));
        let config = base_config(&id);
        Container {
            id,
            config,
            root,
            bundle,
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn root_arc(&self) -> Arc<TempDir> {
        self.root.clone()
    }

    pub fn bundle(&self) -> &Path {
        self.bundle.path()
    }

    pub fn bundle_str(&self) -> String {
        self.bundle().to_string_lossy().into_owned()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Set process.args.
    pub fn args(&mut self, args: &[&str]) -> &mut Container {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Set process.args to `sh -c SCRIPT`.
    pub fn sh(&mut self, script: &str) -> &mut Container {
        self.args(&["sh", "-c", script])
    }

    /// Append a mount to the config.
    pub fn add_mount(&mut self, mount: Value) -> &mut Container {
        self.config["mounts"].as_array_mut().unwrap().push(mount);
        self
    }

    /// Remove a namespace type from linux.namespaces.
    pub fn remove_namespace(&mut self, ns: &str) -> &mut Container {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != ns);
        self
    }

    pub fn write_config(&self) {
        fs::write(
            self.bundle.join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// `RUNTIME --root ROOT ARGS...`
    pub fn rt(&self, args: &[&str]) -> Out {
        let root = self.root().to_string_lossy().into_owned();
        let mut full = vec!["--root", root.as_str()];
        full.extend_from_slice(args);
        rt(&full)
    }

    /// Write config.json and `create --bundle B ID` (result not checked).
    pub fn create(&self) -> Out {
        self.write_config();
        let bundle = self.bundle_str();
        self.rt(&["create", "--bundle", &bundle, &self.id])
    }

    /// Write config.json and `create --bundle B --pid-file F ID`, which must succeed.
    pub fn create_with_pid_file(&self, pid_file: &Path) {
        self.write_config();
        let bundle = self.bundle_str();
        let pid_file = pid_file.to_string_lossy().into_owned();
        self.rt(&[
            "create",
            "--bundle",
            &bundle,
            "--pid-file",
            &pid_file,
            &self.id,
        ])
        .ok();
    }

    /// The name of the bundle directory (its last path component).
    pub fn bundle_name(&self) -> String {
        self.bundle()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `create` that must succeed.
    pub fn create_ok(&self) {
        self.create().ok();
    }

    pub fn start(&self) -> Out {
        self.rt(&["start", &self.id])
    }

    pub fn start_ok(&self) {
        self.start().ok();
    }

    /// `kill ID [SIG]` (result not checked).
    pub fn kill(&self, sig: Option<&str>) -> Out {
        match sig {
            Some(s) => self.rt(&["kill", &self.id, s]),
            None => self.rt(&["kill", &self.id]),
        }
    }

    pub fn delete(&self) -> Out {
        self.rt(&["delete", &self.id])
    }

    /// Raw `exec ID sh -c SCRIPT`.
    pub fn exec_sh(&self, script: &str) -> Out {
        self.rt(&["exec", &self.id, "sh", "-c", script])
    }

    /// Raw `state ID`.
    pub fn state_out(&self) -> Out {
        self.rt(&["state", &self.id])
    }

    /// `state ID`, which must succeed, parsed.
    pub fn state(&self) -> Value {
        let out = self.state_out();
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"))
    }

    /// Poll `state` until its status is `want`; panics after `timeout`.
    pub fn wait_status(&self, want: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let out = self.state_out();
            if out.success() {
                let st: Value = serde_json::from_str(&out.stdout)
                    .unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"));
                if st["status"] == want {
                    return st;
                }
                if start.elapsed() > timeout {
                    panic!(
                        "container {} did not become {want:?}; last state: {st}",
                        self.id
                    );
                }
            } else if start.elapsed() > timeout {
                panic!("container {} did not become {want:?}:\n{out}", self.id);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Write config.json and `run [EXTRA...] --bundle B ID` in the foreground;
    /// the container's stdout/stderr end up in the returned Out.
    pub fn run(&self, extra: &[&str]) -> Out {
        self.write_config();
        let bundle = self.bundle_str();
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", &bundle, &self.id]);
        self.rt(&args)
    }

    /// Run the configured process in the foreground; it must exit 0. Returns
    /// the container's stdout.
    pub fn run_ok(&self) -> String {
        let out = self.run(&[]);
        out.ok();
        out.stdout
    }

    /// Run `sh -c SCRIPT` in the foreground; it must exit 0. Returns stdout.
    pub fn run_sh(&mut self, script: &str) -> String {
        self.sh(script);
        self.run_ok()
    }

    /// The container's entry (if any) in its --root directory.
    pub fn root_entry_exists(&self) -> bool {
        fs::read_dir(self.root())
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy() == self.id)
            })
            .unwrap_or(false)
    }

    /// Assert that nothing of this container remains: no --root entry, no
    /// process referring to the bundle, no host mount under the bundle, no
    /// cgroup directory named after the id. Polls briefly, since a killed
    /// process may take a moment to disappear.
    pub fn assert_no_leftovers(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let problems = self.leftovers();
            if problems.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "container {} left things behind:\n  {}",
                    self.id,
                    problems.join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn leftovers(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.root_entry_exists() {
            problems.push(format!(
                "state entry {}",
                self.root().join(&self.id).display()
            ));
        }
        let bundle = self.bundle_str();
        for pid in pids() {
            if pid == std::process::id() {
                continue;
            }
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            if cmdline.contains(&bundle) || cmdline.contains(&self.id) {
                problems.push(format!("process {pid}: {cmdline}"));
                continue;
            }
            for link in ["cwd", "root"] {
                if let Ok(t) = fs::read_link(format!("/proc/{pid}/{link}"))
                    && t.to_string_lossy().starts_with(&bundle)
                {
                    problems.push(format!("process {pid} has {link} {}", t.display()));
                }
            }
        }
        if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
            for line in mi.lines().filter(|l| l.contains(&bundle)) {
                problems.push(format!("host mount: {line}"));
            }
        }
        for dir in cgroup_dirs_named(&self.id) {
            problems.push(format!("cgroup {}", dir.display()));
        }
        problems
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let root = self.root().to_string_lossy().into_owned();
        let _ = try_rt(
            &["--root", &root, "delete", "-f", &self.id],
            RUNTIME_TIMEOUT,
        );
        // The TempDirs (bundle, and root once its last user is gone) are
        // removed when the fields drop.
    }
}

/// All pids currently in /proc.
pub fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Cgroup directories `/sys/fs/cgroup/<hierarchy>/<name>` (and
/// `/sys/fs/cgroup/<name>` on a pure v2 host) that exist.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    if base.join(name).is_dir() {
        found.push(base.join(name));
    }
    if let Ok(rd) = fs::read_dir(base) {
        for e in rd.flatten() {
            let p = e.path().join(name);
            if p.is_dir() {
                found.push(p);
            }
        }
    }
    found
}

/// A container that runs `sleep 100`.
pub fn sleeper(test: &str) -> Container {
    let mut c = Container::new(test);
    c.args(&["sleep", "100"]);
    c
}
