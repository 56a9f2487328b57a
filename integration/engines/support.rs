//! The plumbing of the engine tests (shared by the integration suite's engines/ and the
//! guest suite, which includes this file by path for its CRI tests): running an engine's
//! commands with a timeout, the test image (busybox-static, as a rootfs tar or an OCI
//! archive), cleanup of what engines leave behind (processes, cgroups, shim sockets, CNI
//! leftovers) and running clients on a terminal. Test-free: the tests are in the files of
//! each engine.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Out, TempDir, assert_no_panic, runtime, sh_quote};
use crate::image_support::{Comp, E, base_entries, image, layer_tar, layout_of, sha256_hex};

/// The longest any one engine command may take.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with stdin from `input` (or /dev/null) and stdout/stderr captured through files
/// in `dir` (a detached container or shim may inherit them: a pipe would never close).
/// Kills it after `timeout`.
pub fn run_cmd(dir: &Path, cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Out {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (out_path, err_path) = (dir.join(format!("out-{n}")), dir.join(format!("err-{n}")));
    let desc = format!("{cmd:?}");
    // In the test's dir: conmon, for one, writes an `oom` file into its working directory.
    cmd.current_dir(dir)
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{desc}: {e} (hack/install-deps.sh installs the engines)"));
    if let Some(data) = input {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(data);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = Out {
        cmd: desc,
        code: status.and_then(|s| s.code()),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = fs::remove_file(out_path);
    let _ = fs::remove_file(err_path);
    assert!(status.is_some(), "timed out after {timeout:?}:\n{out}");
    assert_no_panic(&out);
    out
}

/// A TempDir's own name (unique to the test that made it).
pub fn dir_name(dir: &TempDir) -> String {
    let name = dir.path().file_name().unwrap_or_default();
    name.to_string_lossy().into_owned()
}

/// Runs `cmd` for cleanup: output and status ignored.
pub fn quietly(cmd: &mut Command) {
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The runtime under test, as a string for engine configs.
pub fn corten_path() -> String {
    runtime().to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------

/// The entries of the test image: busybox with every applet, users root and app (1000),
/// and /pause (an infra command for podman pods).
fn image_entries() -> Vec<E> {
    let mut v = base_entries();
    let have: Vec<String> = v
        .iter()
        .filter_map(|e| match e {
            E::Symlink(p, _) => Some(p.to_string()),
            _ => None,
        })
        .collect();
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("these tests need /bin/busybox");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        let p = format!("bin/{applet}");
        if applet != "busybox" && !have.contains(&p) {
            v.push(E::Symlink(Box::leak(p.into_boxed_str()), "busybox"));
        }
    }
    v.push(E::Dir("root/", 0o700));
    v.push(E::Dir("run/", 0o755));
    v.push(E::Dir("var/", 0o755));
    v.push(E::Dir("var/tmp/", 0o1777));
    v.push(E::File(
        "pause",
        "#!/bin/sh\nexec sleep 2147483647\n",
        0o755,
    ));
    v
}

/// A plain tar of the image's root filesystem (for `podman import` and `docker import`).
pub fn write_rootfs_tar(dest: &Path) {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    fs::write(dest, TAR.get_or_init(|| layer_tar(&image_entries()))).unwrap();
}

/// An OCI archive (a tar of an OCI layout, tag `latest`, command `cmd`) for `ctr image
/// import`.
pub fn write_oci_archive(dest: &Path, cmd: &[&str]) {
    let dir = TempDir::new("oci-layout");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let img = image(
        vec![(image_entries(), Comp::Plain)],
        json!({"Cmd": cmd, "Env": [crate::common::DEFAULT_PATH]}),
        arch,
        None,
    );
    layout_of(dir.path(), &img, "latest");
    let mut b = tar::Builder::new(fs::File::create(dest).unwrap());
    b.append_dir_all(".", dir.path()).unwrap();
    b.finish().unwrap();
}

// ---------------------------------------------------------------------------
// Cleanup
// ---------------------------------------------------------------------------

/// SIGKILLs every process whose command line mentions `needle` (a test's own temp dir or
/// socket: daemons, shims and conmons of that test only).
pub fn kill_procs_mentioning(needle: &str) {
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == me || !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle)
            && let Ok(pid) = name.parse::<i32>()
        {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Sends SIGTERM to `pid` and waits up to `grace` for it to exit (it must be our child),
/// then SIGKILL.
pub fn stop_child(child: &mut std::process::Child, grace: Duration) {
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The cgroup v1 hierarchies and the v2 one, wherever they are mounted.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter(|l| {
            let fs_type = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            matches!(fs_type, Some("cgroup" | "cgroup2"))
        })
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

/// Kills whatever is left in cgroup `rel` (e.g. `/corten-it-ns`) in every hierarchy and
/// removes it and everything below it.
pub fn remove_cgroup_tree(rel: &str) {
    fn rm(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        for _ in 0..50 {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: kill(2) has no memory effects.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            let _ = fs::write(dir.join("freezer.state"), "THAWED");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    for h in cgroup_hierarchies() {
        rm(&h.join(rel));
    }
}

/// Is there a directory for cgroup `rel` in any hierarchy?
pub fn cgroup_exists(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    cgroup_hierarchies().iter().any(|h| h.join(rel).is_dir())
}

/// A cgroup v1 controller's file for cgroup `rel` (e.g. ("memory", "/a/b",
/// "memory.limit_in_bytes")).
pub fn cgroup_v1_file(controller: &str, rel: &str, file: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(rel.trim_start_matches('/'))
        .join(file)
}

/// Shared machine-wide things an engine makes and never removes (containerd's shim
/// socket dir, podman's libpod_parent cgroup, CNI's cache and portmap's chains). Each test
/// using them holds a `Shared` while it runs; the last one to finish removes what is left
/// of them if it is empty, so tests of this process never remove one under another.
pub struct Shared {
    what: &'static str,
}

static USERS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

impl Shared {
    pub fn hold(what: &'static str) -> Shared {
        USERS.lock().unwrap_or_else(|e| e.into_inner()).push(what);
        Shared { what }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = users.iter().position(|w| *w == self.what) {
            users.remove(i);
        }
        if users.contains(&self.what) {
            return;
        }
        match self.what {
            "containerd" => {
                let _ = fs::remove_dir("/run/containerd/s");
                let _ = fs::remove_dir("/run/containerd");
            }
            "cni" => super::cri_suite::remove_cni_leftovers(),
            "kubepods" => super::cri_suite::remove_kubepods_slices(),
            // Empty directories only: nothing is killed in a cgroup that isn't a test's.
            "podman" => {
                for h in cgroup_hierarchies() {
                    rmdir_tree(&h.join("libpod_parent"));
                }
            }
            _ => {}
        }
    }
}

/// Removes the empty directories of a tree, deepest first.
fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The socket containerd's runc shim listens on for container `id` (it removes it when it
/// exits; one killed by a failed test's cleanup leaves it).
pub fn shim_socket(address: &str, ns: &str, id: &str) -> PathBuf {
    PathBuf::from("/run/containerd/s").join(sha256_hex(format!("{address}/{ns}/{id}").as_bytes()))
}

/// Deletes (with the runtime under test, `--root root`) every container left in `root`.
pub fn delete_all_in(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        quietly(
            Command::new(runtime())
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", &id]),
        );
    }
}

// ---------------------------------------------------------------------------
// Terminals
// ---------------------------------------------------------------------------

/// A command line for sh: `env K=V ... PROGRAM ARGS...`, all quoted.
pub fn sh_line(cmd: &Command) -> String {
    let mut words = vec!["env".to_string()];
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            words.push(sh_quote(&format!(
                "{}={}",
                k.to_string_lossy(),
                v.to_string_lossy()
            )));
        }
    }
    words.push(sh_quote(&cmd.get_program().to_string_lossy()));
    words.extend(cmd.get_args().map(|a| sh_quote(&a.to_string_lossy())));
    words.join(" ")
}

/// `script -qec LINE /dev/null`: LINE runs on a fresh pty (as an engine's client on a
/// terminal); returns what it printed (with the pty's \r\n) and its exit code.
pub fn under_script(dir: &Path, line: &str) -> Out {
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", line, "/dev/null"]);
    run_cmd(dir, &mut cmd, None, CMD_TIMEOUT)
}
