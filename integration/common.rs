//! Shared helpers: locating the runtime, running it with a timeout, building
//! bundles, and the `Container` guard that cleans everything up on drop.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Any single runtime invocation taking longer than this is killed and the
/// test fails (a hang must not block CI).
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for a container to reach an expected state.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(20);

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------
// Locating the runtime
// ---------------------------------------------------------------------------

/// The runtime binary under test.
pub fn runtime() -> PathBuf {
    match std::env::var_os("CORTEN_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_corten")),
    }
}

/// True when the suite is being validated against runc (the reference
/// implementation) rather than corten; used only to accept runc's wording of
/// error messages.
pub fn is_runc() -> bool {
    runtime()
        .file_name()
        .map(|n| n.to_string_lossy().contains("runc"))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// Unique names and temporary directories
// ---------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next_n() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A container id unique to this test process and call:
/// `corten-it-<test>-<pid>-<n>`.
pub fn unique_id(test: &str) -> String {
    format!("corten-it-{}-{}-{}", test, std::process::id(), next_n())
}

/// The canonical temp dir (so paths compare equal to what a runtime reports).
fn temp_base() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let t = std::env::temp_dir();
        fs::canonicalize(&t).unwrap_or(t)
    })
    .clone()
}

/// A uniquely named directory under the system temp dir, removed on drop
/// (after lazily detaching any mount a buggy runtime might have left in it).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = temp_base().join(format!(
            "corten-it-{}-{}-{}-{}",
            tag,
            std::process::id(),
            next_n(),
            nanos()
        ));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }

    /// Like `new` with a short name (`cit-<tag>-<pid>-<n>`), for tools that limit path
    /// lengths (podman's runroot: 50 characters).
    pub fn short(tag: &str) -> TempDir {
        let path = temp_base().join(format!("cit-{tag}-{}-{}", std::process::id(), next_n()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Mounts can be stacked (a shared mount may receive propagated copies): repeat
        // until none is left.
        for _ in 0..10 {
            if !detach_mounts_under(&self.path) {
                break;
            }
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Lazily unmount every mount of this (host) mount namespace that lies under
/// `dir`, deepest first, so that removing `dir` never descends into a mount.
/// Returns whether there was any.
fn detach_mounts_under(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<String> = parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| mp == &prefix || mp.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let any = !points.is_empty();
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    any
}

// ---------------------------------------------------------------------------
// Running the runtime
// ---------------------------------------------------------------------------

/// The outcome of one runtime invocation.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmd: String,
    /// Exit code; `None` if the runtime itself was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Assert exit status 0 and no panic output; returns self for chaining.
    pub fn ok(&self) -> &Out {
        assert!(self.success(), "command failed unexpectedly:\n{self}");
        assert_no_panic(self);
        self
    }

    /// Assert a non-zero exit status.
    pub fn fails(&self) -> &Out {
        assert!(
            !self.success() && self.code.is_some(),
            "command should have failed with a non-zero exit status:\n{self}"
        );
        assert_no_panic(self);
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  $ {}\n  exit code: {:?}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

/// The runtime must never print a Rust panic or a backtrace.
pub fn assert_no_panic(out: &Out) {
    for text in [&out.stdout, &out.stderr] {
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("panicked") && !lower.contains("backtrace"),
            "runtime output contains panic/backtrace text:\n{out}"
        );
    }
}

/// Assert that `out` is a clean failure.
///
/// With corten: non-zero exit, stderr is exactly one line starting with
/// `corten: ` and containing every string of `corten` (case-insensitively:
/// e.g. strerror texts). With runc (validation
/// of the suite): stderr contains at least one of `runc` (case-insensitive).
/// In both cases: no panic/backtrace text.
pub fn assert_err(out: &Out, corten: &[&str], runc: &[&str]) {
    out.fails();
    if is_runc() {
        let lower = out.stderr.to_lowercase();
        assert!(
            runc.iter().any(|s| lower.contains(&s.to_lowercase())),
            "stderr should contain one of {runc:?}:\n{out}"
        );
    } else {
        let trimmed = out.stderr.trim();
        assert_eq!(
            trimmed.lines().count(),
            1,
            "error output should be exactly one line:\n{out}"
        );
        assert!(
            trimmed.starts_with("corten: "),
            "error output should start with 'corten: ':\n{out}"
        );
        let lower = trimmed.to_lowercase();
        for s in corten {
            assert!(
                lower.contains(&s.to_lowercase()),
                "stderr should contain {s:?}:\n{out}"
            );
        }
    }
}

/// Run the runtime with `args`, stdin from /dev/null and stdout/stderr
/// captured through files (not pipes: a detached container inherits them and
/// would keep a pipe open forever). Panics if it runs longer than
/// RUNTIME_TIMEOUT (after killing it).
pub fn rt(args: &[&str]) -> Out {
    match try_rt(args, RUNTIME_TIMEOUT) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// `rt` run from the working directory `cwd` (for relative paths in the arguments).
pub fn rt_in(cwd: &Path, args: &[&str]) -> Out {
    match try_rt_in(Some(cwd), args, RUNTIME_TIMEOUT) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// Like `rt` but never panics (for use in Drop).
pub fn try_rt(args: &[&str], timeout: Duration) -> Result<Out, String> {
    try_rt_in(None, args, timeout)
}

fn try_rt_in(cwd: Option<&Path>, args: &[&str], timeout: Duration) -> Result<Out, String> {
    let bin = runtime();
    let cmd = format!("{} {}", bin.display(), shell_join(args));
    let base = temp_base().join(format!(
        "corten-it-out-{}-{}-{}",
        std::process::id(),
        next_n(),
        nanos()
    ));
    let out_path = base.with_extension("stdout");
    let err_path = base.with_extension("stderr");
    let result = (|| {
        let out_file = fs::File::create(&out_path).map_err(|e| format!("{cmd}: {e}"))?;
        let err_file = fs::File::create(&err_path).map_err(|e| format!("{cmd}: {e}"))?;
        let mut command = Command::new(&bin);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .map_err(|e| format!("cannot execute runtime {}: {e}", bin.display()))?;
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(format!("{cmd}: wait: {e}")),
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = fs::read_to_string(&out_path).unwrap_or_default();
                let stderr = fs::read_to_string(&err_path).unwrap_or_default();
                return Err(format!(
                    "runtime timed out after {timeout:?} and was killed:\n  $ {cmd}\n  --- stdout ---\n{stdout}\n  --- stderr ---\n{stderr}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Out {
            cmd: cmd.clone(),
            code: status.code(),
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        })
    })();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    result
}

fn shell_join(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// Applet names of the host busybox (computed once).
fn busybox_applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("these tests need a static busybox at /bin/busybox");
        assert!(out.status.success(), "/bin/busybox --list failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "busybox" && !l.contains('/'))
            .map(String::from)
            .collect()
    })
}

/// Put busybox (hard link, or copy across file systems) at `dest`.
pub fn install_busybox(dest: &Path) {
    if fs::hard_link("/bin/busybox", dest).is_err() {
        fs::copy("/bin/busybox", dest)
            .unwrap_or_else(|e| panic!("copy /bin/busybox to {}: {e}", dest.display()));
    }
}

/// Populate `rootfs` with busybox, its applet links (pointing to
/// /bin/busybox, valid inside the container), the usual directories and
/// /etc/passwd + /etc/group.
pub fn make_rootfs(rootfs: &Path) {
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "etc",
        "root",
        "home/test",
    ] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    install_busybox(&rootfs.join("bin/busybox"));
    for applet in busybox_applets() {
        let link = rootfs.join("bin").join(applet);
        match std::os::unix::fs::symlink("/bin/busybox", &link) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => panic!("symlink {}: {e}", link.display()),
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         test:x:1000:1000:test user:/home/test:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\n\
         wheel:x:10:test\n\
         uucp:x:20:test\n\
         test:x:1000:\n\
         extra:x:2000:test\n\
         nogroup:x:65534:\n",
    )
    .unwrap();
}

/// Capabilities granted by Docker by default.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Linux capability number of a `CAP_*` name.
pub fn cap_number(name: &str) -> u32 {
    const NAMES: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("unknown capability {name}")) as u32
}

/// Bit mask of a set of capability names, as shown in /proc/PID/status.
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0u64, |m, n| m | (1u64 << cap_number(n)))
}

/// The base config.json: the shape of `runc spec` output (non-terminal), with
/// Docker's default capabilities, a cgroup namespace and mount, and an
/// explicit cgroupsPath `/<id>` so tests know where the cgroup lives.
pub fn base_config(id: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": DOCKER_DEFAULT_CAPS,
                "effective": DOCKER_DEFAULT_CAPS,
                "permitted": DOCKER_DEFAULT_CAPS
            },
            "rlimits": [
                { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }
            ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "corten",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            {
                "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
            },
            {
                "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
            },
            {
                "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
            },
            {
                "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]
            },
            {
                "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"]
            },
            {
                "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }
        ],
        "linux": {
            "cgroupsPath": format!("/{id}"),
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" },
                { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A bind mount entry for config.json.
pub fn bind(dest: &str, src: &Path, options: &[&str]) -> Value {
    json!({
        "destination": dest, "type": "bind",
        "source": src.to_string_lossy(), "options": options
    })
}

// ---------------------------------------------------------------------------
// The container guard
// ---------------------------------------------------------------------------

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

    /// Run the configured process in the foreground: (exit code, stdout).
    pub fn run_capture(&self) -> (Option<i32>, String) {
        let out = self.run(&[]);
        assert_no_panic(&out);
        (out.code, out.stdout)
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

// ---------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub root: String,
    pub mount_point: String,
    pub mount_opts: Vec<String>,
    /// The optional fields (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_opts: Vec<String>,
}

impl MountInfo {
    /// Whether `opt` is among the per-mount or the superblock options.
    pub fn has_opt(&self, opt: &str) -> bool {
        self.mount_opts.iter().any(|o| o == opt) || self.super_opts.iter().any(|o| o == opt)
    }
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 6 || r.is_empty() {
                return None;
            }
            let split = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
            Some(MountInfo {
                root: unescape_mountinfo(l[3]),
                mount_point: unescape_mountinfo(l[4]),
                mount_opts: split(l[5]),
                optional: l[6..].iter().map(|s| s.to_string()).collect(),
                fstype: r[0].to_string(),
                source: r.get(1).map(|s| s.to_string()).unwrap_or_default(),
                super_opts: r.get(2).map(|s| split(s)).unwrap_or_default(),
            })
        })
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The last mount at `mount_point` in a mountinfo text (the visible one).
pub fn find_mount(mounts: &[MountInfo], mount_point: &str) -> Option<MountInfo> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .cloned()
}

/// Split container output into sections introduced by lines `@@NAME`.
/// Text before the first marker goes to section "".
pub fn sections(stdout: &str) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert(String::new(), String::new());
    let mut cur = String::new();
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            cur = name.trim().to_string();
            map.entry(cur.clone()).or_default();
        } else {
            let s = map.entry(cur.clone()).or_default();
            s.push_str(line);
            s.push('\n');
        }
    }
    map
}

/// A field `Name:` of a /proc/PID/status text, trimmed.
pub fn status_field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// Poll `cond` until it is true or `timeout` elapses; returns the last result.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Run the runtime (`--root ROOT ARGS...`) with `file` (or a directory) open on fd 3, through
/// `/bin/sh` so that, with `listen`, LISTEN_FDS=1 and LISTEN_PID=<the
/// runtime's own pid> can be set as a socket-activation manager would.
pub fn rt_with_fd3(c: &Container, args: &[&str], file: &Path, listen: bool) -> Out {
    let io = TempDir::new("fd3-io");
    let root = c.root().to_string_lossy().into_owned();
    let script = if listen {
        "f=$1; shift; export LISTEN_FDS=1 LISTEN_PID=$$; exec \"$@\" 3<\"$f\""
    } else {
        "f=$1; shift; exec \"$@\" 3<\"$f\""
    };
    let mut child = Command::new("/bin/sh")
        .args(["-c", script, "sh"])
        .arg(file)
        .arg(runtime())
        .args(["--root", &root])
        .args(args)
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(fs::File::create(io.join("out")).unwrap())
        .stderr(fs::File::create(io.join("err")).unwrap())
        .spawn()
        .expect("spawn /bin/sh");
    let exited = poll_until(RUNTIME_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let out = Out {
        cmd: format!("(fd 3 < {}) runtime --root {root} {args:?}", file.display()),
        code: status.code(),
        stdout: fs::read_to_string(io.join("out")).unwrap_or_default(),
        stderr: fs::read_to_string(io.join("err")).unwrap_or_default(),
    };
    assert!(exited, "runtime timed out and was killed:\n{out}");
    out
}

/// A container that runs `sleep 100`.
pub fn sleeper(test: &str) -> Container {
    let mut c = Container::new(test);
    c.args(&["sleep", "100"]);
    c
}

/// Runs this test binary's ignored test `name` in a process of its own and asserts it
/// passed. With `setup`, the child runs in a private mount namespace (`unshare -m`) after
/// the shell commands in `setup`. For tests that change process-wide state (subreaper,
/// mounts) that the parallel tests of the harness must not see.
pub fn assert_child_test_passes(name: &str, setup: Option<&str>) {
    let exe = std::env::current_exe().unwrap();
    let args = [
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let out = match setup {
        None => std::process::Command::new(&exe).args(args).output(),
        Some(setup) => std::process::Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                &format!("set -e; {setup}; exec \"$@\""),
                "sh",
            ])
            .arg(&exe)
            .args(args)
            .output(),
    }
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child test {name} failed:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// Terminals
// ---------------------------------------------------------------------------

/// A unix socket listening for a runtime's pty master (`--console-socket`), as engines
/// (containerd's shim, conmon) listen.
pub struct ConsoleSocket {
    _dir: TempDir,
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> ConsoleSocket {
        let dir = TempDir::new("console");
        let path = dir.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener.set_nonblocking(true).unwrap();
        ConsoleSocket {
            _dir: dir,
            path,
            listener,
        }
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// A connection made so far, if any (never waits).
    fn accept(&self) -> Option<std::os::unix::net::UnixStream> {
        self.listener.accept().ok().map(|(s, _)| s)
    }

    /// Whether a runtime has connected.
    pub fn was_connected(&self) -> bool {
        self.accept().is_some()
    }

    /// Accepts the runtime's connection and receives what it sent: the fd (SCM_RIGHTS)
    /// and the message that came with it. Panics if nothing comes in STATE_TIMEOUT.
    pub fn recv_master(&self) -> (std::os::fd::OwnedFd, Vec<u8>) {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
        let mut stream = None;
        assert!(
            poll_until(STATE_TIMEOUT, || {
                stream = self.accept();
                stream.is_some()
            }),
            "nothing connected to the console socket"
        );
        let stream = stream.unwrap();
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(STATE_TIMEOUT)).unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on the console socket");
        let mut fds: Vec<OwnedFd> = Vec::new();
        for cmsg in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(got) = cmsg {
                // SAFETY: SCM_RIGHTS installed these fds for us; nothing else owns them.
                fds.extend(
                    got.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let n = msg.bytes;
        assert_eq!(fds.len(), 1, "expected exactly one fd, got {}", fds.len());
        (fds.pop().unwrap(), buf[..n].to_vec())
    }
}

/// What a pty master shows (with "\r\n" as "\n") until `until` appears, or, with None,
/// until no process holds the terminal any more. Panics after STATE_TIMEOUT.
pub fn read_pty(master: &std::os::fd::OwnedFd, until: Option<&str>) -> String {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&out).replace("\r\n", "\n");
        if until.is_some_and(|u| text.contains(u)) {
            return text;
        }
        assert!(
            start.elapsed() < STATE_TIMEOUT,
            "terminal output did not show {until:?} in time:\n{text}"
        );
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                assert!(until.is_none(), "terminal closed before {until:?}:\n{text}");
                return text;
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("read the terminal: {e}"),
        }
    }
}

/// Types `text` into a pty master.
pub fn write_pty(master: &std::os::fd::OwnedFd, text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let n = nix::unistd::write(master, rest).expect("write to the terminal");
        rest = &rest[n..];
    }
}

/// Runs the shell command line `cmd` on a terminal of its own under util-linux `script`,
/// with `input` typed into it: (exit status, what the terminal showed, "\r\n" as "\n").
/// Panics after RUNTIME_TIMEOUT (after killing it).
pub fn on_terminal(cmd: &str, input: &str) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("these tests need util-linux script");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    // Kept open until the end: an EOF would reach the terminal as one.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let exited = poll_until(RUNTIME_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&reader.join().unwrap()).replace("\r\n", "\n");
    assert!(exited, "timed out on a terminal: {cmd}\n{text}");
    (status.code(), text)
}

// ---------------------------------------------------------------------------
// Terminals: shell command lines, tmux
// ---------------------------------------------------------------------------

/// How long a terminal session may take to show what a test waits for.
const TMUX_TIMEOUT: Duration = Duration::from_secs(60);

/// `arg` quoted for sh.
pub fn sh_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A detached tmux server of a test's own (socket in its dir), running one command in a
/// window of a given size; killed on drop.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Runs `line` (then `echo exit=$?` and a wait, so its end stays readable) in a
    /// `cols`x`rows` window.
    pub fn start(dir: &Path, line: &str, cols: u16, rows: u16) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let script = format!("{line}; echo exit=$?; sleep 60");
        let (x, y) = (cols.to_string(), rows.to_string());
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x", &x, "-y", &y, &script])
            .output()
            .expect("these tests need tmux");
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env("TERM", "xterm")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"]);
        c
    }

    /// Types `keys` and Enter.
    pub fn type_line(&self, keys: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "t", "-l", keys])
            .status()
            .is_ok_and(|s| s.success())
            && self
                .cmd()
                .args(["send-keys", "-t", "t", "Enter"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "tmux send-keys failed");
    }

    pub fn screen(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p", "-t", "t"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the screen contains `text`; returns the screen.
    pub fn wait_for_text(&self, text: &str) -> String {
        let mut screen = String::new();
        let seen = poll_until(TMUX_TIMEOUT, || {
            screen = self.screen();
            screen.contains(text)
        });
        assert!(seen, "{text:?} never showed on the terminal:\n{screen}");
        screen
    }

    /// (rows, columns) of the pane.
    pub fn size(&self) -> (u32, u32) {
        let out = self
            .cmd()
            .args([
                "display-message",
                "-p",
                "-t",
                "t",
                "#{pane_height} #{pane_width}",
            ])
            .output()
            .expect("tmux display-message");
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u32> = s.split_whitespace().map(|v| v.parse().unwrap()).collect();
        (v[0], v[1])
    }

    /// Resizes the window (the program on it gets SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        let (x, y) = (cols.to_string(), rows.to_string());
        let ok = self
            .cmd()
            .args(["resize-window", "-t", "t", "-x", &x, "-y", &y])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tmux resize-window failed");
    }

    /// Waits until the screen has a line that is exactly `line` (trimmed).
    pub fn wait_for_line(&self, line: &str) -> String {
        let mut screen = String::new();
        let seen = poll_until(TMUX_TIMEOUT, || {
            screen = self.screen();
            screen.lines().any(|l| l.trim() == line)
        });
        assert!(seen, "no line {line:?} on the terminal:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
