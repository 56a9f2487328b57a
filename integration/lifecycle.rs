//! Container lifecycle: create, start, state, kill, delete, run, list, spec.

use crate::common::*;
use serde_json::{Value, json};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pid_of(state: &Value) -> i64 {
    state["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("state has no numeric pid: {state}"))
}

/// Assert that `state` fails with "does not exist" for this container.
fn assert_gone(c: &Container) {
    let out = c.state_out();
    assert_err(
        &out,
        &[&format!("container \"{}\" does not exist", c.id)],
        &["does not exist"],
    );
    assert!(
        !c.root_entry_exists(),
        "--root still has an entry for {}",
        c.id
    );
}

/// Spec (runtime.md, Create): "Upon successful completion of this operation the `status`
/// property of this container MUST be `created`."
/// Spec (runtime.md, Lifecycle): "While the resources requested in the `config.json` MUST be
/// created, the user-specified program (from `process`) MUST NOT be run at this time."
#[test]
fn create_reports_created_state_and_pid_file() {
    let c = sleeper("create-state");
    let pid_file = c.bundle().join("container.pid");
    let bundle = c.bundle_str();
    c.create_with_pid_file(&pid_file);

    let st = c.state();
    assert_eq!(st["id"], c.id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    let pid = pid_of(&st);
    assert!(pid > 0, "pid must be > 0: {st}");
    assert_eq!(st["bundle"], bundle.as_str(), "{st}");
    assert_eq!(st["rootfs"], c.rootfs().to_string_lossy().as_ref(), "{st}");
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert!(
        st["created"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    // runc's `state` prints owner empty (`list` names the user).
    assert_eq!(st["owner"], "", "{st}");

    // The pid file holds the same pid, and that process exists.
    let from_file = fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(from_file.trim(), pid.to_string(), "pid file content");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} not alive"
    );

    // The user process has not been started yet: the container's init is not
    // running `sleep` (it waits for `start`).
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).starts_with("sleep"),
        "process already exec'd before start"
    );
}

/// Spec (runtime.md, Start): "Upon successful completion of this operation the `status`
/// property of this container MUST be `running`."
/// Spec (runtime.md, Delete): "Deleting a container MUST delete the resources that were created
/// during the `create` step."
#[test]
fn start_runs_then_kill_and_delete_remove_it() {
    let c = sleeper("start-kill-delete");
    c.create_ok();
    let created_pid = pid_of(&c.state());
    c.start_ok();
    let st = c.wait_status("running", STATE_TIMEOUT);
    assert_eq!(pid_of(&st), created_pid, "pid changed across start");
    // The process is now the user's `sleep 100`.
    assert!(
        poll_until(STATE_TIMEOUT, || {
            fs::read(format!("/proc/{created_pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default()
                .starts_with("sleep 100")
        }),
        "container process is not `sleep 100`"
    );

    c.kill(Some("KILL")).ok();
    let st = c.wait_status("stopped", STATE_TIMEOUT);
    assert_eq!(st["id"], c.id.as_str());

    c.delete().ok();
    assert_gone(&c);
}

/// Send `sig` (None = the default, SIGTERM) until the container stops. A
/// signal arriving before the shell has installed its trap is ignored (the
/// container process is pid 1 of its namespace), hence the retries.
fn kill_until_stopped(c: &Container, sig: Option<&str>) -> Value {
    let start = Instant::now();
    let mut first = true;
    loop {
        let st = c.state();
        if st["status"] == "stopped" {
            return st;
        }
        let out = c.kill(sig);
        if first {
            out.ok();
            first = false;
        }
        if start.elapsed() > STATE_TIMEOUT {
            panic!("container did not stop on signal {sig:?}: {st}");
        }
        if poll_until(Duration::from_millis(300), || {
            c.state()["status"] == "stopped"
        }) {
            return c.state();
        }
    }
}

/// Spec (runtime.md, Kill): "This operation MUST send the specified signal to the container
/// process."
#[test]
fn kill_by_name_kill() {
    let c = sleeper("kill-name");
    c.create_ok();
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
    // Signal 0 only checks that the init is alive (kill(2)'s meaning).
    c.kill(Some("0")).ok();
    assert_eq!(c.state()["status"], "running");
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", STATE_TIMEOUT);
}

/// Spec (runtime.md, Kill): "This operation MUST send the specified signal to the container
/// process."
#[test]
fn kill_by_number_9() {
    let c = sleeper("kill-number");
    c.create_ok();
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
    c.kill(Some("9")).ok();
    c.wait_status("stopped", STATE_TIMEOUT);
}

#[test]
fn kill_by_name_sigterm_reaches_trap() {
    let mut c = Container::new("kill-sigterm");
    c.sh("trap 'exit 0' TERM; sleep 100 & wait");
    c.create_ok();
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
    kill_until_stopped(&c, Some("SIGTERM"));
}

#[test]
fn kill_default_signal_is_term() {
    let mut c = Container::new("kill-default");
    // Only TERM is trapped: if the default were KILL the container would also
    // stop, so make the trap leave evidence in a host-visible bind mount.
    let shared = TempDir::new("killdefault");
    c.add_mount(json!({
        "destination": "/shared", "type": "bind",
        "source": shared.path().to_string_lossy(),
        "options": ["bind", "rw"]
    }));
    c.sh("trap 'echo got-term > /shared/sig; exit 0' TERM; sleep 100 & wait");
    c.create_ok();
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
    kill_until_stopped(&c, None);
    let sig = fs::read_to_string(shared.join("sig")).unwrap_or_default();
    assert_eq!(
        sig.trim(),
        "got-term",
        "default kill signal was not SIGTERM"
    );
}

#[test]
fn kill_all_stops_container() {
    let mut c = Container::new("kill-all");
    c.sh("sleep 100 & sleep 100 & wait");
    c.create_ok();
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
    c.rt(&["kill", "--all", &c.id, "KILL"]).ok();
    c.wait_status("stopped", STATE_TIMEOUT);
}

/// Without a pid namespace of its own the init's death takes nothing along: SIGKILL goes
/// to every process of the container's cgroup (runc's Signal), none survives.
#[test]
fn kill_without_a_pid_namespace_kills_the_whole_cgroup() {
    let mut c = Container::new("kill-shared-pidns");
    c.remove_namespace("pid");
    c.sh("sleep 1001 & sleep 1002 & wait");
    c.create_ok();
    c.start_ok();
    let procs = format!("/sys/fs/cgroup/pids/{}/cgroup.procs", c.id);
    let count = || fs::read_to_string(&procs).map_or(0, |p| p.lines().count());
    assert!(poll_until(STATE_TIMEOUT, || count() == 3), "{}", count());
    c.kill(Some("KILL")).ok();
    assert!(
        poll_until(STATE_TIMEOUT, || count() == 0),
        "left in the cgroup: {:?}",
        fs::read_to_string(&procs)
    );
    c.wait_status("stopped", STATE_TIMEOUT);
    c.delete().ok();
    c.assert_no_leftovers();
}

#[test]
fn run_passes_exit_status_through() {
    let mut c = Container::new("run-exit");
    c.sh("echo before-exit; exit 7");
    let out = c.run(&[]);
    assert_eq!(out.code, Some(7), "exit status not passed through:\n{out}");
    assert!(out.stdout.contains("before-exit"), "{out}");
    assert_no_panic(&out);
    // A foreground run deletes the container when it exits.
    assert_gone(&c);
}

#[test]
fn run_signal_death_is_128_plus_n() {
    let mut c = Container::new("run-signal");
    // Without a pid namespace the shell is not an init process, so it can
    // SIGKILL itself (an init ignores signals it has no handler for).
    c.remove_namespace("pid");
    c.sh("kill -9 $$; echo survived");
    let out = c.run(&[]);
    assert_eq!(out.code, Some(137), "expected 128+9:\n{out}");
    assert!(!out.stdout.contains("survived"), "{out}");
    assert_no_panic(&out);
}

#[test]
fn run_killed_from_outside_is_128_plus_n() {
    let mut c = Container::new("run-killed");
    c.args(&["sleep", "100"]);
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| c.run(&[]));
        c.wait_status("running", STATE_TIMEOUT);
        c.kill(Some("KILL")).ok();
        h.join().expect("run thread panicked")
    });
    assert_eq!(out.code, Some(137), "expected 128+9:\n{out}");
    assert_no_panic(&out);
}

#[test]
fn run_detached_returns_while_running() {
    let c = sleeper("run-detached");
    let start = Instant::now();
    c.run(&["-d"]).ok();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "run -d did not return promptly"
    );
    let st = c.wait_status("running", STATE_TIMEOUT);
    let pid = pid_of(&st);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn run_detached_with_pid_file() {
    let c = sleeper("run-pidfile");
    let pid_file = c.bundle().join("run.pid");
    let pid_file_s = pid_file.to_string_lossy().into_owned();
    c.run(&["-d", "--pid-file", &pid_file_s]).ok();
    let st = c.wait_status("running", STATE_TIMEOUT);
    let from_file = fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(from_file.trim(), pid_of(&st).to_string());
}

#[test]
fn list_json_and_quiet() {
    let c = sleeper("list");
    c.create_ok();

    let out = c.rt(&["list", "-f", "json"]);
    out.ok();
    let list: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("list -f json is not JSON ({e}):\n{out}"));
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"));
    let entry = entries
        .iter()
        .find(|e| e["id"] == c.id.as_str())
        .unwrap_or_else(|| panic!("id missing from list:\n{out}"));
    assert_eq!(entry["status"], "created", "{entry}");
    assert!(entry["pid"].as_i64().is_some_and(|p| p > 0), "{entry}");
    assert_eq!(entry["bundle"], c.bundle_str().as_str(), "{entry}");
    assert_eq!(entry["owner"], "root", "{entry}");
    // runc's key order (scripts match on it), for list and for state.
    let order = [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ];
    let state = c.state_out();
    for text in [&out.stdout, &state.ok().stdout] {
        let at: Vec<usize> = order
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).expect(k))
            .collect();
        assert!(at.is_sorted(), "keys out of runc's order:\n{text}");
    }

    let out = c.rt(&["list", "-q"]);
    out.ok();
    let ids: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(ids, vec![c.id.as_str()], "list -q:\n{out}");

    // The default table format mentions the id and status too.
    let out = c.rt(&["list"]);
    out.ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(c.id.as_str()))
        .unwrap_or_else(|| panic!("id missing from list:\n{out}"));
    assert!(line.contains("created"), "{line}");
}

#[test]
fn list_empty_root() {
    let root = TempDir::new("emptyroot");
    let r = root.path().to_string_lossy().into_owned();
    let out = rt(&["--root", &r, "list", "-q"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "", "{out}");
}

#[test]
fn concurrent_creates_in_same_root() {
    let root = Arc::new(TempDir::new("sharedroot"));
    let mut a = Container::with_root("conc-a", root.clone());
    let mut b = Container::with_root("conc-b", root.clone());
    a.args(&["sleep", "100"]);
    b.args(&["sleep", "100"]);
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.create());
        let hb = s.spawn(|| b.create());
        (ha.join().unwrap(), hb.join().unwrap())
    });
    ra.ok();
    rb.ok();
    assert_eq!(a.state()["status"], "created");
    assert_eq!(b.state()["status"], "created");
    assert_ne!(a.state()["pid"], b.state()["pid"]);

    let out = a.rt(&["list", "-q"]);
    out.ok();
    let mut ids: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ids.sort();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{out}");

    std::thread::scope(|s| {
        let ha = s.spawn(|| a.start());
        let hb = s.spawn(|| b.start());
        ha.join().unwrap().ok();
        hb.join().unwrap().ok();
    });
    a.wait_status("running", STATE_TIMEOUT);
    b.wait_status("running", STATE_TIMEOUT);

    // Deleting one leaves the other alone.
    a.rt(&["delete", "-f", &a.id]).ok();
    assert_gone(&a);
    assert_eq!(b.state()["status"], "running");
}

#[test]
fn id_can_be_reused_after_delete() {
    let c = sleeper("reuse");
    c.create_ok();
    let first_pid = pid_of(&c.state());
    c.rt(&["delete", "-f", &c.id]).ok();
    assert_gone(&c);

    c.create_ok();
    let st = c.state();
    assert_eq!(st["status"], "created");
    assert_ne!(pid_of(&st), first_pid);
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
}

/// Spec (runtime.md, Create): "If the ID provided is not unique across all containers within
/// the scope of the runtime, or is not valid in any other way, the implementation MUST generate
/// an error and a new container MUST NOT be created."
#[test]
fn create_with_live_id_fails() {
    let c = sleeper("dup");
    c.create_ok();
    let st1 = c.state();
    let out = c.create();
    assert_err(
        &out,
        &[&format!("container \"{}\" already exists", c.id)],
        &["already exists"],
    );
    // The first container is untouched.
    let st2 = c.state();
    assert_eq!(st2["status"], "created");
    assert_eq!(st1["pid"], st2["pid"]);
}

/// Spec (runtime.md, Query State): "Attempting to query a container that does not exist MUST
/// generate an error."
#[test]
fn delete_stopped_container() {
    let mut c = Container::new("delete-stopped");
    c.sh("exit 0");
    c.create_ok();
    c.start_ok();
    c.wait_status("stopped", STATE_TIMEOUT);
    c.delete().ok();
    assert_gone(&c);
}

#[test]
fn delete_force_running_container() {
    let c = sleeper("delete-force");
    c.create_ok();
    c.start_ok();
    let pid = pid_of(&c.wait_status("running", STATE_TIMEOUT));
    c.rt(&["delete", "-f", &c.id]).ok();
    assert_gone(&c);
    assert!(
        poll_until(STATE_TIMEOUT, || {
            // Gone, or a zombie waiting to be reaped by its new parent.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                        .unwrap_or(false)
                })
                .unwrap_or(true)
        }),
        "container process {pid} still alive after delete -f"
    );
    assert!(
        cgroup_dirs_named(&c.id).is_empty(),
        "cgroup left after delete -f: {:?}",
        cgroup_dirs_named(&c.id)
    );
}

/// Spec (runtime.md, Lifecycle): "The container MUST be destroyed by undoing the steps
/// performed during create phase (step 2)."
#[test]
fn delete_force_created_container() {
    let c = sleeper("delete-force-created");
    c.create_ok();
    c.rt(&["delete", "-f", &c.id]).ok();
    assert_gone(&c);
    c.assert_no_leftovers();
}

#[test]
fn spec_writes_a_valid_config() {
    let dir = TempDir::new("spec");
    let d = dir.path().to_string_lossy().into_owned();
    rt(&["spec", "-b", &d]).ok();
    let text = fs::read_to_string(dir.join("config.json")).expect("spec wrote config.json");
    let cfg: Value = serde_json::from_str(&text).expect("spec's config.json parses");
    let v = cfg["ociVersion"].as_str().expect("ociVersion is a string");
    assert!(v.starts_with("1."), "ociVersion {v}");
    assert!(cfg["process"]["args"].is_array(), "{cfg}");
    assert_eq!(cfg["root"]["path"], "rootfs", "{cfg}");
    assert!(cfg["mounts"].as_array().is_some_and(|m| !m.is_empty()));
    assert!(cfg["linux"]["namespaces"].is_array());
}

/// Spec (runtime.md, State): "`annotations` (map, OPTIONAL) contains the list of annotations
/// associated with the container."
#[test]
fn annotations_appear_in_state() {
    let mut c = sleeper("annotations");
    c.set(
        "/annotations",
        json!({
            "org.corten.test": "yes",
            "com.example.key": "some value"
        }),
    );
    c.create_ok();
    let st = c.state();
    assert_eq!(st["annotations"]["org.corten.test"], "yes", "{st}");
    assert_eq!(st["annotations"]["com.example.key"], "some value", "{st}");
}

/// Spec (runtime.md, Kill): "When the process in the container is stopped, irrespective of it
/// being as a result of a `kill` operation or any other reason, the `status` property of this
/// container MUST be `stopped`."
#[test]
fn container_exits_on_its_own_and_is_stopped() {
    let mut c = Container::new("self-exit");
    c.sh("exit 3");
    c.create_ok();
    c.start_ok();
    let st = c.wait_status("stopped", STATE_TIMEOUT);
    assert_eq!(st["id"], c.id.as_str());
}

#[test]
fn create_joins_a_new_session_keyring_unless_told_not_to() {
    // runc's behaviour: the init joins a fresh session keyring named "_ses.<id>", so the
    // container can't reach keys of the session it was started from; the host's
    // /proc/keys lists it.
    let keyring_listed = |id: &str| {
        std::fs::read_to_string("/proc/keys")
            .unwrap()
            .lines()
            .any(|l| {
                l.ends_with(&format!("_ses.{id}: empty")) || l.contains(&format!(" _ses.{id}:"))
            })
    };
    let mut c = Container::new("keyring");
    c.args(&["sleep", "100"]);
    c.create_ok();
    assert!(
        keyring_listed(&c.id),
        "no _ses.{} keyring in /proc/keys",
        c.id
    );

    let mut c2 = Container::new("nokeyring");
    c2.args(&["sleep", "100"]);
    c2.write_config();
    let bundle = c2.bundle_str();
    c2.rt(&["create", "--no-new-keyring", "--bundle", &bundle, &c2.id])
        .ok();
    assert!(
        !keyring_listed(&c2.id),
        "--no-new-keyring still made _ses.{}",
        c2.id
    );
}

/// containerd's shim and conmon are subreapers: once `create` exits, the init must be
/// their child, to wait for. Runs `subreaper_child` as its own process, since making the
/// test harness a subreaper would collect every parallel test's orphans.
#[test]
fn init_is_left_to_the_callers_subreaper() {
    assert_child_test_passes("lifecycle::subreaper_child", None);
}

#[test]
#[ignore = "run by init_is_left_to_the_callers_subreaper in its own process"]
fn subreaper_child() {
    assert!(nix::sys::prctl::set_child_subreaper(true).is_ok());
    let c = sleeper("subreaper");
    c.create_ok();
    let pid = pid_of(&c.state());
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        ppid,
        std::process::id(),
        "the init was not reparented to the subreaper"
    );
    c.start_ok();
    c.kill(Some("KILL")).ok();
    // As the subreaper we reap it; then it is stopped.
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None).unwrap();
    assert!(
        matches!(
            status,
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
        ),
        "{status:?}"
    );
    assert_eq!(c.state()["status"], "stopped");
}

#[test]
fn features_document_is_valid_and_truthful() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let out = rt(&["features"]);
    out.ok();
    let f: oci_spec::runtime::Features = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not a features document ({e}):\n{out}"));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    // The max version is the one `state` reports.
    let c = sleeper("features");
    c.create_ok();
    assert_eq!(
        f.oci_version_max(),
        c.state()["ociVersion"].as_str().unwrap()
    );
    assert!(
        v["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "rro"),
        "{v}"
    );
    assert!(
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "time"),
        "{v}"
    );
    assert_eq!(v["linux"]["cgroup"]["v1"], true);
    assert_eq!(
        v["hooks"],
        json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ])
    );
    assert_eq!(v["linux"]["seccomp"]["enabled"], true);
    assert_eq!(v["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    let opts = v["mountOptions"].as_array().unwrap();
    assert!(opts.iter().any(|o| o == "idmap") && opts.iter().any(|o| o == "ridmap"));
}

/// A state root deeper than a unix socket address can name (108 bytes) still works: the
/// start socket is reached through /proc/self/fd.
#[test]
fn a_long_state_root_works() {
    let c = crate::common::sleeper("long-root");
    let deep = c.root().join("a".repeat(60)).join("b".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let deep_s = deep.to_str().unwrap();
    c.write_config();
    let bundle = c.bundle_str();
    crate::common::rt(&["--root", deep_s, "create", "--bundle", &bundle, &c.id]).ok();
    crate::common::rt(&["--root", deep_s, "start", &c.id]).ok();
    let out = crate::common::rt(&["--root", deep_s, "state", &c.id]);
    assert!(out.ok().stdout.contains("\"running\""), "{out}");
    crate::common::rt(&["--root", deep_s, "delete", "-f", &c.id]).ok();
    c.assert_no_leftovers();
}
