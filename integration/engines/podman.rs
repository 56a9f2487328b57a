//! podman (Debian's 4.3, with conmon) with `--runtime corten`: cgroupfs manager, file
//! events and locks, everything under a temp dir; `runtime_supports_json` names corten,
//! so podman passes `--log-format=json --log F` to create and exec and parses F as one
//! JSON object. podman calls start/kill/pause/resume/delete with no --root: corten's
//! default root must be the one conmon's create used.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::common::{Out, TempDir, is_runc};

const IMAGE: &str = "localhost/corten-it:latest";

struct Podman {
    dir: TempDir,
    /// Every container id seen, for cleanup.
    ids: Mutex<Vec<String>>,
    _shared: Shared,
}

/// The state root corten uses when given no --root (as root).
fn default_root() -> PathBuf {
    PathBuf::from(if is_runc() {
        "/run/runc"
    } else {
        "/run/corten"
    })
}

/// `name=soft:hard` no higher than this process's hard limit (root here may lack
/// CAP_SYS_RESOURCE, and podman's defaults for root are far above the hard limits).
fn ulimit(name: &str, res: libc::__rlimit_resource_t, want: u64) -> String {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(res, &mut r) };
    let v = want.min(r.rlim_max);
    format!("\"{name}={v}:{v}\"")
}

impl Podman {
    fn new() -> Podman {
        let shared = Shared::hold("podman");
        let dir = TempDir::short("pm");
        let conf = format!(
            r#"[containers]
default_ulimits = [{nofile}, {nproc}]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"
lock_type = "file"
tmp_dir = "{tmp}"
static_dir = "{stat}"
volume_path = "{volumes}"
runtime = "corten"
runtime_supports_json = ["corten", "crun", "runc"]
[engine.runtimes]
corten = ["{corten}"]
"#,
            nofile = ulimit("nofile", libc::RLIMIT_NOFILE, 1024),
            nproc = ulimit("nproc", libc::RLIMIT_NPROC, 4096),
            events = dir.join("events.log").display(),
            tmp = dir.join("tmp").display(),
            stat = dir.join("static").display(),
            volumes = dir.join("volumes").display(),
            corten = corten_path(),
        );
        fs::write(dir.join("containers.conf"), conf).unwrap();
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("root").display(),
            dir.join("runroot").display()
        );
        fs::write(dir.join("storage.conf"), storage).unwrap();
        let p = Podman {
            dir,
            ids: Mutex::new(Vec::new()),
            _shared: shared,
        };
        let tar = p.dir.join("rootfs.tar");
        write_rootfs_tar(&tar);
        p.podman(&["import", &tar.to_string_lossy(), IMAGE]).ok();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let d = |s: &str| self.dir.join(s).to_string_lossy().into_owned();
        let mut c = Command::new("podman");
        c.current_dir(self.dir.path())
            .env("CONTAINERS_CONF", d("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d("storage.conf"))
            .args(["--root", &d("root"), "--runroot", &d("runroot")])
            .args(["--tmpdir", &d("tmp"), "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .args(args);
        c
    }

    fn podman(&self, args: &[&str]) -> Out {
        run_cmd(self.dir.path(), &mut self.cmd(args), None, CMD_TIMEOUT)
    }

    /// `podman run --network none ARGS...`
    fn run(&self, args: &[&str]) -> Out {
        let mut a = vec!["run", "--network", "none"];
        a.extend(args);
        self.podman(&a)
    }

    /// `podman run -d --name NAME --network none [flags] IMAGE ARGS...` → the full id.
    fn run_detached(&self, name: &str, flags: &[&str], args: &[&str]) -> String {
        let mut a = vec!["-d", "--name", name];
        a.extend(flags);
        a.push(IMAGE);
        a.extend(args);
        let out = self.run(&a);
        out.ok();
        let id = out.stdout.trim().to_string();
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        let out = self.podman(&["inspect", "--format", format, name]);
        out.ok();
        out.stdout.trim().to_string()
    }

    /// A container name unique to this test.
    fn name(&self, tag: &str) -> String {
        format!("{tag}-{}", dir_name(&self.dir))
    }
}

/// The container's cgroup as podman's cgroupfs manager names it.
fn libpod_cgroup(id: &str) -> String {
    format!("libpod_parent/libpod-{id}")
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut ids = self.ids.lock().map(|v| v.clone()).unwrap_or_default();
        let list = self.cmd(&["ps", "-a", "-q", "--no-trunc"]).output();
        if let Ok(o) = list {
            ids.extend(
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(String::from),
            );
        }
        for args in [
            &["pod", "rm", "--all", "--force"][..],
            &["rm", "--all", "--force", "--time", "0"],
        ] {
            quietly(&mut self.cmd(args));
        }
        kill_procs_mentioning(&self.dir.path().to_string_lossy());
        for id in &ids {
            if default_root().join(id).exists() {
                quietly(Command::new(runtime()).args(["delete", "--force", id]));
            }
            remove_cgroup_tree(&libpod_cgroup(id));
            remove_cgroup_tree(&format!("libpod_parent/{id}"));
        }
    }
}

/// run --rm: the output, the exit code, and nothing left of the container (corten's state
/// under its default root, the cgroup).
#[test]
fn podman_run_rm_output_and_exit_code() {
    let p = Podman::new();
    let cidfile = p.dir.join("cid");
    let out = p.run(&[
        "--rm",
        "--cidfile",
        &cidfile.to_string_lossy(),
        IMAGE,
        "sh",
        "-c",
        "echo hello from corten; ulimit -n; exit 7",
    ]);
    assert_eq!(out.code, Some(7), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hello from corten"), "{out}");
    let id = fs::read_to_string(&cidfile).unwrap().trim().to_string();
    p.ids.lock().unwrap().push(id.clone());
    assert!(
        !default_root().join(&id).exists(),
        "state left in the default root"
    );
    assert!(!cgroup_exists(&libpod_cgroup(&id)), "cgroup left behind");
}

/// run -d, exec (as the image user and -u), top, pause/unpause (the freezer), stop (SIGTERM
/// then SIGKILL: sleep as pid 1 ignores SIGTERM) and rm; the memory limit on the host.
#[test]
fn podman_detached_exec_top_pause_stop_rm() {
    let p = Podman::new();
    let name = p.name("pm-detached");
    let id = p.run_detached(&name, &["--memory", "48m"], &["sleep", "1000"]);
    // podman's start/exec/... name no --root: the state is in corten's default root.
    assert!(
        default_root().join(&id).join("state.json").exists(),
        "corten's default root should hold the container"
    );
    let cg = libpod_cgroup(&id);
    let limit = cgroup_v1_file("memory", &cg, "memory.limit_in_bytes");
    if limit.exists() {
        assert_eq!(fs::read_to_string(&limit).unwrap().trim(), "50331648");
    }

    let out = p.podman(&["exec", &name, "sh", "-c", "echo in exec; exit 4"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(4), "in exec\n"),
        "{out}"
    );
    let out = p.podman(&["exec", "-u", "0", &name, "id", "-u"]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "0"), "{out}");
    let out = p.podman(&[
        "exec",
        "-u",
        "1000",
        "-w",
        "/tmp",
        "-e",
        "X=y",
        &name,
        "sh",
        "-c",
        "id -u; pwd; echo $X",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "1000\n/tmp\ny\n"),
        "{out}"
    );
    let out = p.podman(&["top", &name]);
    out.ok();
    assert!(out.stdout.contains("sleep 1000"), "{out}");

    p.podman(&["pause", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "paused");
    let freezer = cgroup_v1_file("freezer", &cg, "freezer.state");
    if freezer.exists() {
        assert_eq!(fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    }
    p.podman(&["unpause", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "running");

    p.podman(&["stop", "--time", "1", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect(&name, "{{.State.ExitCode}}"), "137");
    p.podman(&["rm", &name]).ok();
    assert!(
        !default_root().join(&id).exists(),
        "state left in the default root"
    );
    assert!(!cgroup_exists(&cg), "cgroup left behind");
}

/// --memory is enforced: the limit is in the container's cgroup and a process that grows
/// past it is OOM-killed.
#[test]
fn podman_memory_limit_enforced() {
    let p = Podman::new();
    let out = p.run(&[
        "--rm",
        "--memory",
        "32m",
        IMAGE,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         tail /dev/zero; echo tail=$?",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "33554432\ntail=137\n", "{out}");
}

/// podman's default seccomp profile is loaded (filter mode), and unconfined means none.
#[test]
fn podman_default_seccomp_profile_active() {
    let p = Podman::new();
    let grep = ["grep", "-E", "^Seccomp(_filters)?:", "/proc/self/status"];
    let mut a = vec!["--rm", IMAGE];
    a.extend(grep);
    let out = p.run(&a);
    out.ok();
    assert!(out.stdout.contains("Seccomp:\t2\n"), "{out}");
    assert!(!out.stdout.contains("Seccomp_filters:\t0"), "{out}");
    let mut a = vec!["--rm", "--security-opt", "seccomp=unconfined", IMAGE];
    a.extend(grep);
    let out = p.run(&a);
    out.ok();
    assert!(out.stdout.contains("Seccomp:\t0\n"), "{out}");
}

/// podman's exit codes from corten's errors: 127 for a missing executable ("no such file or
/// directory", "executable file not found"), 126 for one that can't be executed
/// ("permission denied"); the message comes from the JSON log (not doubled "corten:
/// corten:", which is what podman prints when it falls back to stderr), also when a
/// container's log file is reused by a second start.
#[test]
fn podman_missing_executable_127_and_errors_from_the_json_log() {
    let p = Podman::new();
    for (arg, code, want) in [
        ("/nope", 127, r#"exec "/nope": no such file or directory"#),
        (
            "nosuchcmd",
            127,
            r#"exec "nosuchcmd": executable file not found in $PATH"#,
        ),
        (
            "/etc/passwd",
            126,
            r#"exec "/etc/passwd": permission denied"#,
        ),
    ] {
        let out = p.run(&["--rm", IMAGE, arg]);
        assert_eq!(out.code, Some(code), "{out}");
        assert!(
            out.stderr.contains(&format!("Error: corten: {want}")),
            "{out}"
        );
        assert!(
            !out.stderr.contains("corten: corten:"),
            "log not parsed:\n{out}"
        );
    }
    // The same container started twice: its oci-log is reused.
    let name = p.name("pm-bad");
    p.podman(&[
        "create",
        "--name",
        &name,
        "--network",
        "none",
        IMAGE,
        "/nope",
    ])
    .ok();
    for _ in 0..2 {
        let out = p.podman(&["start", &name]);
        out.fails();
        assert!(
            out.stderr
                .contains(r#": corten: exec "/nope": no such file or directory"#)
                && !out.stderr.contains("corten: corten:"),
            "{out}"
        );
    }
    // exec of a missing program in a running container.
    let name = p.name("pm-exec");
    p.run_detached(&name, &[], &["sleep", "1000"]);
    let out = p.podman(&["exec", &name, "/nope"]);
    assert_eq!(out.code, Some(127), "{out}");
    let out = p.podman(&["exec", &name, "/etc/passwd"]);
    assert_eq!(out.code, Some(126), "{out}");
}

/// --read-only with --tmpfs: the mounts podman adds carry `tmpcopyup` (the tmpfs starts
/// with the image's content of that directory).
#[test]
fn podman_read_only_with_tmpfs_copyup() {
    let p = Podman::new();
    let out = p.run(&[
        "--rm",
        "--read-only",
        "--tmpfs",
        "/home",
        IMAGE,
        "sh",
        "-c",
        "ls /home; touch /home/app/new && echo home-writable; touch /x",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "app\nhome-writable\n", "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

/// --pid host: podman stops the container with `kill --all` (no pid namespace of its own
/// to tear down), which must reach every process in its cgroup.
#[test]
fn podman_pid_host_stop_kills_all() {
    let p = Podman::new();
    let name = p.name("pm-pidhost");
    let id = p.run_detached(&name, &["--pid", "host"], &["sleep", "1001"]);
    p.podman(&["exec", "-d", &name, "sleep", "1002"]).ok();
    let procs = cgroup_v1_file("pids", &libpod_cgroup(&id), "cgroup.procs");
    let mut pids: Vec<i32> = Vec::new();
    assert!(
        poll_until(Duration::from_secs(10), || {
            pids = fs::read_to_string(&procs)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect();
            pids.len() == 2
        }),
        "two processes expected in the cgroup: {pids:?}"
    );
    p.podman(&["stop", "--time", "10", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.ExitCode}}"), "143");
    for pid in pids {
        assert!(
            poll_until(Duration::from_secs(5), || !PathBuf::from(format!(
                "/proc/{pid}"
            ))
            .exists()),
            "pid {pid} survived the stop"
        );
    }
    p.podman(&["rm", &name]).ok();
}

const NS_LINKS: &str = "readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc";

/// A pod: the infra container (our image's /pause) holds the namespaces another container
/// joins (by path).
#[test]
fn podman_pod_containers_share_namespaces() {
    let p = Podman::new();
    let pod = p.name("pm-pod");
    p.podman(&[
        "pod",
        "create",
        "--name",
        &pod,
        "--network",
        "none",
        "--infra-image",
        IMAGE,
        "--infra-command",
        "/pause",
    ])
    .ok();
    let out = p.podman(&["run", "--rm", "--pod", &pod, IMAGE, "sh", "-c", NS_LINKS]);
    out.ok();
    let pod_id = p.podman(&["pod", "inspect", "--format", "{{.ID}}", &pod]);
    pod_id.ok();
    // podman's own cgroup for the pod (it leaves it in the named hierarchies).
    p.ids.lock().unwrap().push(pod_id.stdout.trim().to_string());
    let infra = p.podman(&["pod", "inspect", "--format", "{{.InfraContainerID}}", &pod]);
    infra.ok();
    let infra = infra.stdout.trim().to_string();
    p.ids.lock().unwrap().push(infra.clone());
    let inside = p.podman(&["exec", &infra, "sh", "-c", NS_LINKS]);
    inside.ok();
    assert_eq!(out.stdout, inside.stdout);
    assert_eq!(out.stdout.lines().count(), 2, "{out}");
    let mine = fs::read_link("/proc/self/ns/uts").unwrap();
    assert!(!out.stdout.contains(&*mine.to_string_lossy()), "{out}");
    p.podman(&["pod", "rm", "--force", &pod]).ok();
}

/// --uidmap/--gidmap: podman makes a user namespace and corten enters it with the maps.
#[test]
fn podman_user_namespace_maps() {
    let p = Podman::new();
    let out = p.run(&[
        "--rm",
        "--uidmap",
        "0:200000:65536",
        "--gidmap",
        "0:200000:65536",
        IMAGE,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map /proc/self/gid_map | xargs; touch /tmp/x && echo ok",
    ]);
    out.ok();
    assert_eq!(
        out.stdout, "0\n0 200000 65536 0 200000 65536\nok\n",
        "{out}"
    );
}

/// Terminals: `run -t` on a pty (script) and `run -it` in a tmux window (size, typed input,
/// exit code); `exec -t`; `run -i` and `exec -i` with stdin from a pipe.
#[test]
fn podman_tty_and_interactive() {
    let p = Podman::new();
    let line = sh_line(&p.cmd(&[
        "run",
        "--rm",
        "-t",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "tty; [ -t 0 ] && echo stdin-tty; exit 4",
    ]));
    let out = under_script(p.dir.path(), &line);
    assert_eq!(out.code, Some(4), "{out}");
    assert!(
        out.stdout
            .replace('\r', "")
            .contains("/dev/pts/0\nstdin-tty"),
        "{out}"
    );

    let line = sh_line(&p.cmd(&["run", "--rm", "-it", "--network", "none", IMAGE, "sh"]));
    let tmux = Tmux::start(p.dir.path(), &line, 100, 30);
    // (capture-pane trims the prompt's trailing space)
    tmux.wait_for_text("/ #");
    tmux.type_line("stty size; echo typed-$((6*7))");
    let screen = tmux.wait_for_text("typed-42");
    assert!(screen.contains("30 100\n"), "{screen}");
    tmux.type_line("exit 5");
    tmux.wait_for_text("exit=5");
    drop(tmux);

    // stdin reaches the process, and its end is the process's EOF.
    let mut cmd = p.cmd(&[
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "cat; exit 6",
    ]);
    let out = run_cmd(p.dir.path(), &mut cmd, Some(b"from-stdin\n"), CMD_TIMEOUT);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(6), "from-stdin\n"),
        "{out}"
    );

    let name = p.name("pm-tty");
    p.run_detached(&name, &[], &["sleep", "1000"]);
    let line = sh_line(&p.cmd(&["exec", "-t", &name, "sh", "-c", "tty; exit 2"]));
    let out = under_script(p.dir.path(), &line);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    let mut cmd = p.cmd(&["exec", "-i", &name, "sh"]);
    let out = run_cmd(
        p.dir.path(),
        &mut cmd,
        Some(b"echo exec-stdin; exit 3\n"),
        CMD_TIMEOUT,
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(3), "exec-stdin\n"),
        "{out}"
    );
}
