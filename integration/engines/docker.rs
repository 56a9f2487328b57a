//! dockerd (Debian's docker.io 20.10, with the containerd it starts itself) with
//! `--add-runtime corten=<path>` and `docker run --runtime corten`. The client is Debian's
//! /usr/bin/docker, the one that matches this daemon (whatever else is on PATH).

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;
use crate::common::{Out, TempDir};

const DOCKER: &str = "/usr/bin/docker";
const IMAGE: &str = "corten-it:latest";

struct Dockerd {
    child: Option<Child>,
    dir: TempDir,
    host: String,
    cgroup_parent: String,
    _shared: (Shared, Shared),
}

impl Dockerd {
    fn start() -> Dockerd {
        let shared = (Shared::hold("containerd"), Shared::hold("docker"));
        let dir = TempDir::new("dockerd");
        let host = format!("unix://{}", dir.join("d.sock").display());
        let name = dir_name(&dir);
        let cgroup_parent = format!("/{name}");
        let corten = corten_path();
        // daemon.json: the README's way of naming a runtime (checked as corten-json), and
        // the trust key kept out of /etc/docker.
        let config = json!({
            "runtimes": {"corten-json": {"path": corten}},
            "deprecated-key-path": dir.join("key.json"),
        });
        fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args(["-H", &host, "--add-runtime", &format!("corten={corten}")])
            .args(["--cgroup-parent", &cgroup_parent])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args([
                "--ip-forward=false",
                "--ip-masq=false",
                "--storage-driver=overlay2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("these tests need dockerd (docker.io, hack/install-deps.sh)");
        let d = Dockerd {
            child: Some(child),
            dir,
            host,
            cgroup_parent,
            _shared: shared,
        };
        let up = poll_until(Duration::from_secs(60), || {
            d.cmd(&["version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(
            up,
            "dockerd did not start:\n{}",
            fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
        );
        let tar = d.dir.join("rootfs.tar");
        write_rootfs_tar(&tar);
        d.docker(&["import", &tar.to_string_lossy(), IMAGE]).ok();
        d
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", self.dir.join("client"))
            .args(["-H", &self.host])
            .args(args);
        c
    }

    fn docker(&self, args: &[&str]) -> Out {
        run_cmd(self.dir.path(), &mut self.cmd(args), None, CMD_TIMEOUT)
    }

    /// `docker run --rm --runtime RUNTIME --network none IMAGE ARGS...`
    fn run_rm(&self, runtime: &str, args: &[&str]) -> Out {
        let mut a = vec![
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--network",
            "none",
            IMAGE,
        ];
        a.extend(args);
        self.docker(&a)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        let out = self.docker(&["inspect", "--format", format, name]);
        out.ok();
        out.stdout.trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self
            .cmd(&["ps", "-a", "-q", "--no-trunc"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            quietly(&mut self.cmd(&["rm", "--force", id]));
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(15));
        }
        // dockerd's own containerd and its shims, if the daemon did not stop them.
        let exec_root = self.dir.join("exec");
        kill_procs_mentioning(&exec_root.to_string_lossy());
        delete_all_in(&exec_root.join("runtime-runc/moby"));
        remove_cgroup_tree(&self.cgroup_parent);
        let address = exec_root.join("containerd/containerd.sock");
        for id in ids.split_whitespace() {
            let _ = fs::remove_file(shim_socket(&address.to_string_lossy(), "moby", id));
        }
        let _ = fs::remove_dir("/run/docker/plugins");
        let _ = fs::remove_dir("/run/docker");
    }
}

/// `docker run --runtime corten`: output and exit code, the default seccomp profile, the
/// daemon.json-named runtime, a missing executable (127); then run -d, exec (also -u),
/// top (corten ps --format json), stop (SIGTERM, then SIGKILL), rm.
#[test]
fn docker_run_exec_stop() {
    let d = Dockerd::start();
    let out = d.run_rm(
        "corten",
        &[
            "sh",
            "-c",
            "echo hello from corten; grep -E '^Seccomp:' /proc/self/status; exit 4",
        ],
    );
    assert_eq!(out.code, Some(4), "{out}");
    assert_eq!(out.stdout, "hello from corten\nSeccomp:\t2\n", "{out}");
    let out = d.run_rm("corten-json", &["echo", "json"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "json\n"),
        "{out}"
    );
    let out = d.run_rm("corten", &["/nope"]);
    assert_eq!(out.code, Some(127), "{out}");
    assert!(
        out.stderr
            .contains(r#"OCI runtime create failed: exec "/nope": no such file or directory"#),
        "{out}"
    );

    let name = format!("dk-{}", dir_name(&d.dir));
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        "corten",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "1000",
    ]);
    out.ok();
    let id = out.stdout.trim().to_string();
    // dockerd gives every runc-like runtime the root <exec-root>/runtime-runc/moby.
    let state = d.dir.join("exec/runtime-runc/moby").join(&id);
    assert!(
        state.join("state.json").exists(),
        "corten's state should be under dockerd's exec root"
    );
    let out = d.docker(&["exec", &name, "sh", "-c", "echo in exec; exit 6"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(6), "in exec\n"),
        "{out}"
    );
    let out = d.docker(&["exec", "-u", "1000:1000", &name, "id"]);
    out.ok();
    assert!(out.stdout.starts_with("uid=1000"), "{out}");
    // Terminals: run -t and exec -t from a client on a pty.
    let line = sh_line(&d.cmd(&["exec", "-t", &name, "sh", "-c", "tty; exit 2"]));
    let out = under_script(d.dir.path(), &line);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    let line = sh_line(&d.cmd(&[
        "run",
        "--rm",
        "-t",
        "--runtime",
        "corten",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "tty; [ -t 0 ] && echo stdin-tty; exit 3",
    ]));
    let out = under_script(d.dir.path(), &line);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(
        out.stdout
            .replace('\r', "")
            .contains("/dev/pts/0\nstdin-tty"),
        "{out}"
    );
    let out = d.docker(&["top", &name]);
    out.ok();
    assert!(out.stdout.contains("sleep 1000"), "{out}");
    let cg = format!("{}/{id}", d.cgroup_parent);
    assert!(
        cgroup_exists(&cg),
        "the container's cgroup under --cgroup-parent"
    );
    d.docker(&["stop", "--time", "1", &name]).ok();
    assert_eq!(d.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(d.inspect(&name, "{{.State.ExitCode}}"), "137");
    d.docker(&["rm", &name]).ok();
    assert!(!state.exists(), "corten state left behind");
    assert!(!cgroup_exists(&cg), "cgroup left behind");
}
