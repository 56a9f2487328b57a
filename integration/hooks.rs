//! OCI hooks: where and when each kind runs, what it gets (state on stdin, argv, env,
//! namespaces, fds), and what a failing or hanging hook does to the lifecycle.
//!
//! The hooks are shell scripts. Host-side ones (prestart, createRuntime, createContainer,
//! poststart, poststop: their paths resolve on the host) live in the test's temp dir and
//! use the host's /bin/sh; startContainer's path resolves in the container, so its script
//! is in the rootfs and runs with busybox sh. Each records what it saw into `out/`, which
//! the container sees as /out.

use crate::common::*;
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CREATE_KINDS: [&str; 3] = ["prestart", "createRuntime", "createContainer"];
const ALL_KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];
/// The exact environment the hooks are given.
const HOOK_ENV: [&str; 3] = ["PATH=/usr/bin:/bin", "HOOK_VAR=two words", "EMPTY="];

/// Records stdin, argv, environ, mount and pid namespace of the shell itself, then appends
/// the kind to `order`. The shell's pid is read from /proc/self/stat (a builtin's
/// redirection is the shell's own), because createContainer runs in the container's pid
/// namespace with the host's /proc still mounted: `$$` would name another process there.
const RECORD: &str = r#"kind=$1; out=$2
read -r me _ < /proc/self/stat
cat > "$out/$kind.stdin"
tr '\0' '\n' < /proc/$me/cmdline > "$out/$kind.argv"
tr '\0' '\n' < /proc/$me/environ > "$out/$kind.env"
readlink /proc/$me/ns/mnt > "$out/$kind.mnt"
readlink /proc/$me/ns/pid > "$out/$kind.pidns"
echo "$kind" >> "$out/order"
"#;

/// Fails after saying why on stderr (and something on stdout).
const FAIL: &str = "#!/bin/sh\necho \"some output of $1\"\necho \"boom from $1\" >&2\necho \"$1\" >> \"$2/order\"\nexit 1\n";

struct HookDir {
    dir: TempDir,
}

impl HookDir {
    /// Scripts on the host and in `c`'s rootfs, and `out/` mounted at /out.
    fn new(c: &mut Container) -> HookDir {
        let dir = TempDir::new("hooks");
        fs::create_dir(dir.join("out")).unwrap();
        fs::write(dir.join("record.sh"), RECORD).unwrap();
        fs::write(c.rootfs().join("record.sh"), RECORD).unwrap();
        write_script(&dir.join("fail.sh"), FAIL);
        write_script(&c.rootfs().join("fail.sh"), FAIL);
        c.add_mount(bind("/out", &dir.join("out"), &["bind", "rw"]));
        HookDir { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// A recording hook of `kind`, with its paths where that kind resolves them.
    fn record(&self, kind: &str) -> Value {
        if kind == "startContainer" {
            // busybox picks its applet by argv[0].
            return json!({"path": "/bin/sh", "args": ["sh", "/record.sh", kind, "/out"], "env": HOOK_ENV});
        }
        json!({
            "path": "/bin/sh",
            "args": [format!("argv0-{kind}"), self.path("record.sh"), kind, self.out()],
            "env": HOOK_ENV
        })
    }

    /// A hook of `kind` that exits 1; its own path is the script.
    fn fail(&self, kind: &str) -> Value {
        let (path, out) = if kind == "startContainer" {
            ("/fail.sh".to_string(), "/out".to_string())
        } else {
            (
                self.path("fail.sh"),
                self.out().to_string_lossy().into_owned(),
            )
        };
        json!({"path": path, "args": ["fail.sh", kind, out], "env": HOOK_ENV})
    }

    fn order(&self) -> Vec<String> {
        fs::read_to_string(self.out().join("order"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn read(&self, kind: &str, what: &str) -> String {
        let p = self.out().join(format!("{kind}.{what}"));
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn state(&self, kind: &str) -> Value {
        let text = self.read(kind, "stdin");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind} stdin {text:?}: {e}"))
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// config.json's hooks: `kind` -> the hooks of that kind.
fn set_hooks(c: &mut Container, hooks: &[(&str, Value)]) {
    let mut obj = serde_json::Map::new();
    for (kind, hook) in hooks {
        obj.entry(kind.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(hook.clone());
    }
    c.set("/hooks", Value::Object(obj));
}

fn ns_of(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every hook at its point of the lifecycle: order, status, state, argv, exact env, and
/// the namespaces each runs in.
///
/// Spec (config.md, POSIX-platform Hooks): "Hooks MUST be called in the listed order."
/// Spec (config.md, POSIX-platform Hooks): "The state of the container MUST be passed to hooks
/// over stdin so that they may do work appropriate to the current state of the container."
/// Spec (config.md, CreateContainer Hooks): "The `createContainer` hooks MUST be called after
/// the `createRuntime` hooks."
/// Spec (config.md, CreateContainer Hooks): "The `createContainer` hooks MUST be executed in
/// the container namespace."
/// Spec (config.md, StartContainer Hooks): "The `startContainer` hooks' path MUST resolve in
/// the container namespace."
#[test]
fn every_hook_runs_in_order_with_its_state_and_namespaces() {
    let mut c = sleeper("hooks-all");
    let h = HookDir::new(&mut c);
    // A big one too: more than a sync message or a pipe buffer holds.
    let big = "x".repeat(100_000);
    c.set(
        "/annotations",
        json!({"org.example.key": "value", "org.example.big": big}),
    );
    let hooks: Vec<(&str, Value)> = ALL_KINDS.iter().map(|k| (*k, h.record(k))).collect();
    set_hooks(&mut c, &hooks);

    c.create_ok();
    assert_eq!(h.order(), strings(&CREATE_KINDS));
    let pid = c.state()["pid"].as_i64().unwrap();
    c.start_ok();
    assert_eq!(h.order(), strings(&ALL_KINDS[..5]));
    let container_mnt = ns_of(&pid.to_string(), "mnt");
    let container_pidns = ns_of(&pid.to_string(), "pid");
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", STATE_TIMEOUT);
    c.delete().ok();
    assert_eq!(h.order(), strings(&ALL_KINDS));
    c.assert_no_leftovers();

    let host_mnt = ns_of("self", "mnt");
    let host_pidns = ns_of("self", "pid");
    assert_ne!(host_mnt, container_mnt);
    let bundle = c.bundle_str();
    for kind in ALL_KINDS {
        let mut st = h.state(kind);
        let got_big = st["annotations"]
            .as_object_mut()
            .and_then(|a| a.remove("org.example.big"));
        assert_eq!(got_big, Some(json!(big)), "{kind}: the big annotation");
        // The create hooks run after the environment is made: "created" (the spec's
        // lifecycle, runtime-tools, crun); runc says "creating" there.
        let status = match kind {
            "poststart" => "running",
            "poststop" => "stopped",
            _ if is_runc() && kind != "startContainer" => "creating",
            _ => "created",
        };
        assert_eq!(st["status"], status, "{kind}: {st}");
        assert_eq!(st["id"], c.id.as_str(), "{kind}: {st}");
        assert_eq!(st["bundle"], bundle.as_str(), "{kind}: {st}");
        assert_eq!(
            st["annotations"]["org.example.key"], "value",
            "{kind}: {st}"
        );
        assert!(st["ociVersion"].is_string(), "{kind}: {st}");
        if kind == "poststop" {
            assert!(st["pid"].as_i64().unwrap_or(0) == 0, "{kind}: {st}");
        } else {
            assert_eq!(st["pid"], pid, "{kind}: {st}");
        }
        assert_eq!(
            h.read(kind, "env").lines().collect::<Vec<_>>(),
            HOOK_ENV,
            "{kind}: the env is exactly the hook's"
        );
        let argv: Vec<String> = h.read(kind, "argv").lines().map(String::from).collect();
        let (argv0, script, out) = if kind == "startContainer" {
            (
                "sh".to_string(),
                "/record.sh".to_string(),
                "/out".to_string(),
            )
        } else {
            (
                format!("argv0-{kind}"),
                h.path("record.sh"),
                h.out().to_string_lossy().into_owned(),
            )
        };
        assert_eq!(argv, [argv0, script, kind.to_string(), out], "{kind}");
        let (mnt, pidns) = (h.read(kind, "mnt"), h.read(kind, "pidns"));
        if matches!(kind, "createContainer" | "startContainer") {
            assert_eq!(mnt.trim(), container_mnt, "{kind} runs in the container");
            assert_eq!(
                pidns.trim(),
                container_pidns,
                "{kind} runs in the container"
            );
        } else {
            assert_eq!(mnt.trim(), host_mnt, "{kind} runs in the runtime namespace");
            assert_eq!(
                pidns.trim(),
                host_pidns,
                "{kind} runs in the runtime namespace"
            );
        }
    }
}

/// In a new user namespace too: the init's hooks run as its root (an unprivileged host
/// id), the others as the runtime's user.
#[test]
fn hooks_run_in_a_user_namespace_container() {
    let mut c = Container::new("hooks-userns");
    c.args(&["true"]);
    crate::userns::user_ns(&mut c, 100000);
    let h = HookDir::new(&mut c);
    // The mount point must exist (the rootfs is the host root's, unmapped inside), and
    // the init's hooks write as uid 100000.
    fs::create_dir(c.rootfs().join("out")).unwrap();
    fs::write(h.out().join("order"), "").unwrap();
    for p in [h.out(), h.out().join("order")] {
        let uid = Some(nix::unistd::Uid::from_raw(100000));
        nix::unistd::chown(&p, uid, None).unwrap();
    }
    let hooks: Vec<(&str, Value)> = ALL_KINDS.iter().map(|k| (*k, h.record(k))).collect();
    set_hooks(&mut c, &hooks);
    c.run_ok();
    assert_eq!(h.order(), strings(&ALL_KINDS));
    assert_ne!(
        h.read("createContainer", "mnt").trim(),
        ns_of("self", "mnt")
    );
    assert_eq!(h.read("createRuntime", "mnt").trim(), ns_of("self", "mnt"));
    c.assert_no_leftovers();
}

/// `run` (create, start, wait, delete) runs all of them, in order.
#[test]
fn run_runs_every_hook() {
    let mut c = Container::new("hooks-run");
    c.args(&["true"]);
    let h = HookDir::new(&mut c);
    let hooks: Vec<(&str, Value)> = ALL_KINDS.iter().map(|k| (*k, h.record(k))).collect();
    set_hooks(&mut c, &hooks);
    c.run_ok();
    assert_eq!(h.order(), strings(&ALL_KINDS));
    c.assert_no_leftovers();
}

/// Writes the shell's own environment, as execve gave it (NUL-separated), to
/// `$out/$kind.environ`.
const RECORD_ENVIRON: &str = r#"kind=$1; out=$2
read -r me _ < /proc/self/stat
cat /proc/$me/environ > "$out/$kind.environ"
"#;

/// The NUL-separated entries of an environ file, sorted.
fn environ_entries(raw: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    v.sort();
    v
}

/// A hook without `env` inherits one, exactly as runc's do. runc runs hooks as Go
/// exec.Cmds with `Env: c.Env` (libcontainer/configs: `func (c Command) Run`), and a nil
/// Env means the environment of the process running the hook: runc's own for prestart,
/// createRuntime, poststart and poststop; for createContainer and startContainer that of
/// `runc init`, which has cleared its environment and set process.env
/// (libcontainer/init_linux.go, populateProcessEnvironment), and which adds HOME from the
/// container's /etc/passwd (setupUser) after createContainer and before startContainer.
/// runc 1.1.5 (`CORTEN_TEST_RUNTIME=runc`) passes this test.
#[test]
fn hooks_without_env_inherit_as_runc_does() {
    let mut c = Container::new("hooks-env-inherit");
    c.args(&["true"]);
    c.set(
        "/process/env",
        json!(["PATH=/bin:/usr/bin", "ONE=two", "FOO=bar", "ONE=three"]),
    );
    let h = HookDir::new(&mut c);
    fs::write(h.dir.join("environ.sh"), RECORD_ENVIRON).unwrap();
    fs::write(c.rootfs().join("environ.sh"), RECORD_ENVIRON).unwrap();
    let hooks: Vec<(&str, Value)> = ALL_KINDS
        .iter()
        .map(|&kind| {
            let hook = if kind == "startContainer" {
                json!({"path": "/bin/sh", "args": ["sh", "/environ.sh", kind, "/out"]})
            } else {
                json!({"path": "/bin/sh", "args": ["sh", h.path("environ.sh"), kind, h.out()]})
            };
            (kind, hook)
        })
        .collect();
    set_hooks(&mut c, &hooks);
    c.run_ok();
    c.assert_no_leftovers();
    let seen = |kind: &str| {
        let p = h.out().join(format!("{kind}.environ"));
        environ_entries(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
    };
    // The runtime ran with the test's own environment.
    let mut ours: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    ours.sort();
    for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
        assert_eq!(seen(kind), ours, "{kind}: the runtime's environment");
    }
    // process.env with the last value of a variable set twice.
    let process = strings(&["FOO=bar", "ONE=three", "PATH=/bin:/usr/bin"]);
    assert_eq!(seen("createContainer"), process, "createContainer");
    let mut with_home = process.clone();
    with_home.insert(1, "HOME=/root".into());
    assert_eq!(seen("startContainer"), with_home, "startContainer");
}

/// A failing prestart, createRuntime or createContainer hook fails `create` with an error
/// naming it and quoting its stderr; the later hooks don't run, nothing is left, and the
/// lifecycle goes on at delete: the poststop hooks run.
///
/// Spec (runtime.md, Errors): "Unless otherwise stated, generating an error MUST leave the
/// state of the environment as if the operation were never attempted - modulo any possible
/// trivial ancillary changes such as logging."
#[test]
fn a_failing_create_hook_fails_create_and_leaves_nothing() {
    for (i, failing) in CREATE_KINDS.iter().enumerate() {
        let mut c = sleeper("hooks-create-fail");
        let h = HookDir::new(&mut c);
        let mut hooks: Vec<(&str, Value)> = Vec::new();
        for kind in &CREATE_KINDS[..i] {
            hooks.push((kind, h.record(kind)));
        }
        hooks.push((failing, h.fail(failing)));
        for kind in &ALL_KINDS[i + 1..] {
            hooks.push((kind, h.record(kind)));
        }
        set_hooks(&mut c, &hooks);
        let out = c.create();
        let script = h.path("fail.sh");
        assert_err(
            &out,
            &[
                &format!("error running {failing} hook #0: {script}"),
                "exit status 1",
                &format!("boom from {failing}"),
            ],
            &["hook", "exit status 1"],
        );
        c.assert_no_leftovers();
        let mut want = strings(&CREATE_KINDS[..=i]);
        want.push("poststop".into());
        assert_eq!(h.order(), want, "{failing}");
        assert_eq!(h.state("poststop")["status"], "stopped");
    }
}

/// A hook that outlives its timeout is killed (with what it started) and named in the
/// error; create fails long before the hook's 100 s.
#[test]
fn a_hook_past_its_timeout_is_killed() {
    let mut c = sleeper("hooks-timeout");
    let h = HookDir::new(&mut c);
    let pidfile = h.out().join("sleep.pid");
    let script = format!("sleep 100 & echo $! > {}; wait", pidfile.display());
    let hook = json!({"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 1});
    set_hooks(&mut c, &[("createRuntime", hook)]);
    let started = Instant::now();
    let out = c.create();
    assert_err(
        &out,
        &[
            "error running createRuntime hook #0: /bin/sh",
            "timed out after 1s",
        ],
        &["timeout"],
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    c.assert_no_leftovers();
    let sleep_pid = fs::read_to_string(&pidfile).unwrap();
    let gone = poll_until(Duration::from_secs(5), || {
        fs::read_to_string(format!("/proc/{}/stat", sleep_pid.trim()))
            .map(|s| s.contains(") Z ") || !s.contains("(sleep)"))
            .unwrap_or(true)
    });
    assert!(gone, "the hook's sleep {sleep_pid} survived the timeout");
}

/// The init's own hook (createContainer) obeys its timeout too.
#[test]
fn a_create_container_hook_past_its_timeout_is_killed() {
    let mut c = sleeper("hooks-timeout-cc");
    let hook = json!({"path": "/bin/sh", "args": ["sh", "-c", "sleep 100"], "timeout": 1});
    set_hooks(&mut c, &[("createContainer", hook)]);
    let out = c.create();
    assert_err(
        &out,
        &[
            "error running createContainer hook #0: /bin/sh",
            "timed out after 1s",
        ],
        &["timeout"],
    );
    c.assert_no_leftovers();
}

/// `start_container`, then recording poststart and poststop hooks.
fn set_start_hooks(c: &mut Container, h: &HookDir, start_container: Value) {
    let hooks = [
        ("startContainer", start_container),
        ("poststart", h.record("poststart")),
        ("poststop", h.record("poststop")),
    ];
    set_hooks(c, &hooks);
}

/// A failing startContainer hook fails `start`; the user program never runs, the
/// container is stopped, and delete (with the poststop hooks) works.
#[test]
fn a_failing_start_container_hook_fails_start() {
    let mut c = Container::new("hooks-start-fail");
    c.sh("touch /out/program-ran; sleep 100");
    let h = HookDir::new(&mut c);
    set_start_hooks(&mut c, &h, h.fail("startContainer"));
    c.create_ok();
    let out = c.start();
    if is_runc() {
        // runc reports success before its init runs the hook, which then fails.
        out.ok();
    } else {
        assert_err(
            &out,
            &[
                "error running startContainer hook #0: /fail.sh",
                "exit status 1",
                "boom from startContainer",
            ],
            &[],
        );
    }
    c.wait_status("stopped", STATE_TIMEOUT);
    assert!(!h.out().join("program-ran").exists());
    c.delete().ok();
    assert_eq!(h.order(), strings(&["startContainer", "poststop"]));
    c.assert_no_leftovers();
}

/// A created sleeper whose `kind` hooks are one that fails, then one that records.
fn failing_then_recording(kind: &str) -> (Container, HookDir) {
    let mut c = sleeper(&format!("hooks-{kind}-fail"));
    let h = HookDir::new(&mut c);
    set_hooks(&mut c, &[(kind, h.fail(kind)), (kind, h.record(kind))]);
    c.create_ok();
    (c, h)
}

/// `out` succeeded with a warning quoting the failing `kind` hook, and both hooks ran.
fn assert_warned(out: &Out, h: &HookDir, kind: &str) {
    out.ok();
    if !is_runc() {
        for want in [
            "warning",
            &format!("error running {kind} hook #0: "),
            &format!("boom from {kind}"),
        ] {
            assert!(out.stderr.contains(want), "{want:?} missing:\n{out}");
        }
    }
    assert_eq!(h.order(), strings(&[kind, kind]));
}

/// `out` failed with the error of the failing poststart hook #0 (the recording hook after
/// it never ran), the container is gone (`list` is empty, nothing left on the host) and
/// its poststop hooks ran: the lifecycle went on at "destroyed" (spec 1.3, runtime.md
/// step 9: generate an error, stop the container, continue at step 12).
fn assert_poststart_failure_left_nothing(out: &Out, c: &Container, h: &HookDir) {
    out.fails();
    if !is_runc() {
        for want in ["error running poststart hook #0: ", "boom from poststart"] {
            assert!(out.stderr.contains(want), "{want:?} missing:\n{out}");
        }
    }
    c.assert_no_leftovers();
    assert_eq!(c.rt(&["list", "-q"]).ok().stdout, "");
    assert_eq!(h.order(), strings(&["poststart", "poststop"]));
    assert_eq!(h.state("poststop")["status"], "stopped");
}

/// A container of `test` whose poststart hooks are one that fails, then one that records,
/// with a recording poststop hook.
fn poststart_fails(test: &str) -> (Container, HookDir) {
    let mut c = sleeper(test);
    let h = HookDir::new(&mut c);
    let hooks = [
        ("poststart", h.fail("poststart")),
        ("poststart", h.record("poststart")),
        ("poststop", h.record("poststop")),
    ];
    set_hooks(&mut c, &hooks);
    (c, h)
}

/// A failing poststart hook fails `start`, which stops and removes the container, as
/// runc does with a failing poststart hook in the operation that runs it (runc runs them
/// at the end of `create`/`run`, libcontainer/container_linux.go `start`: terminate the
/// init, return the error; the caller destroys the container, utils_linux.go runner.run).
#[test]
fn a_failing_poststart_hook_fails_start_and_leaves_nothing() {
    let (c, h) = poststart_fails("hooks-poststart-fail");
    if is_runc() {
        // runc's create runs the poststart hooks.
        let out = c.create();
        return assert_poststart_failure_left_nothing(&out, &c, &h);
    }
    c.create_ok();
    assert_poststart_failure_left_nothing(&c.start(), &c, &h);
}

/// `run`, attached or detached: a failing poststart hook is its error and nothing is left
/// (runc's runner.run destroys the container on any error).
#[test]
fn a_failing_poststart_hook_fails_run_and_leaves_nothing() {
    for detach in [false, true] {
        let (c, h) = poststart_fails("hooks-run-poststart-fail");
        let out = c.run(if detach { &["-d"] } else { &[] });
        assert_poststart_failure_left_nothing(&out, &c, &h);
    }
}

/// `run --keep` keeps the container after a failure, as runc's does (runner.run destroys
/// only without --keep): stopped, its poststop hooks waiting for `delete`.
#[test]
fn a_failing_poststart_hook_with_run_keep_leaves_it_stopped() {
    let (c, h) = poststart_fails("hooks-run-keep-poststart-fail");
    c.run(&["--keep"]).fails();
    c.wait_status("stopped", STATE_TIMEOUT);
    assert_eq!(h.order(), strings(&["poststart"]));
    c.delete().ok();
    assert_eq!(h.order(), strings(&["poststart", "poststop"]));
    c.assert_no_leftovers();
}

/// A failing poststop hook is a warning: delete succeeds, the next poststop hook runs.
///
/// Spec (runtime.md, Lifecycle): "If any poststop hook fails, the runtime MUST log a warning,
/// but the remaining hooks and lifecycle continue as if the hook had succeeded."
#[test]
fn a_failing_poststop_hook_is_a_warning() {
    let (c, h) = failing_then_recording("poststop");
    c.start_ok();
    assert_warned(&c.rt(&["delete", "-f", &c.id]), &h, "poststop");
    c.assert_no_leftovers();
}

/// Deleting a container that was created but never started still runs poststop, and
/// only that.
///
/// Spec (config.md, Poststop): "The `poststop` hooks MUST be called after the container is
/// deleted but before the `delete` operation returns."
#[test]
fn deleting_a_created_container_runs_poststop() {
    let mut c = sleeper("hooks-created-delete");
    let h = HookDir::new(&mut c);
    set_start_hooks(&mut c, &h, h.record("startContainer"));
    c.create_ok();
    c.delete().ok();
    assert_eq!(h.order(), strings(&["poststop"]));
    assert_eq!(h.state("poststop")["status"], "stopped");
    c.assert_no_leftovers();
}

/// Hooks get fds 0-2 only: not the fd the caller preserved for the container, not the
/// runtime's sockets, locks or pipes.
#[test]
fn hooks_get_only_stdio() {
    let mut c = sleeper("hooks-fds");
    let h = HookDir::new(&mut c);
    let marker = h.dir.join("preserved-marker");
    fs::write(&marker, "x").unwrap();
    let list = |kind: &str, out: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("exec ls -l /proc/self/fd > {out}/{kind}.fds")]});
    let out_dir = h.out().to_string_lossy().into_owned();
    set_hooks(
        &mut c,
        &[
            ("createRuntime", list("createRuntime", &out_dir)),
            ("createContainer", list("createContainer", &out_dir)),
            ("startContainer", list("startContainer", "/out")),
            ("poststart", list("poststart", &out_dir)),
        ],
    );
    c.write_config();
    let bundle = c.bundle_str();
    rt_with_fd3(
        &c,
        &["create", "--preserve-fds", "1", "--bundle", &bundle, &c.id],
        &marker,
        false,
    )
    .ok();
    c.start_ok();
    for kind in [
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
    ] {
        let text = h.read(kind, "fds");
        let fds: Vec<u32> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(8)?.parse().ok())
            .collect();
        // 0-2, and 3: ls's own handle on /proc/self/fd.
        assert_eq!(fds, [0, 1, 2, 3], "{kind}:\n{text}");
        assert!(!text.contains("preserved-marker"), "{kind}:\n{text}");
    }
    c.rt(&["delete", "-f", &c.id]).ok();
    c.assert_no_leftovers();
}

/// Hooks are checked before anything is made: absolute paths, positive timeouts.
///
/// Spec (config.md, POSIX-platform Hooks): "This specification extends the IEEE standard in
/// that **`path`** MUST be absolute."
/// Spec (config.md, POSIX-platform Hooks): "If set, `timeout` MUST be greater than zero."
#[test]
fn invalid_hooks_are_refused() {
    for (hook, want) in [
        (json!({"path": "relative/hook"}), "not an absolute path"),
        (
            json!({"path": "/bin/true", "timeout": 0}),
            "greater than zero",
        ),
    ] {
        let mut c = sleeper("hooks-invalid");
        set_hooks(&mut c, &[("createRuntime", hook)]);
        let out = c.create();
        if is_runc() {
            out.fails();
        } else {
            assert_err(&out, &["hooks.createRuntime[0]", want], &[]);
        }
        c.assert_no_leftovers();
    }
}
