//! linux.cgroupsPath (config-linux.md, "Cgroups path") confinement: the path can't leave
//! the cgroup hierarchy, the root cgroup is refused (also inside a cgroup namespace), a cgroup that existed before
//! `create` is joined but never emptied or removed, and `delete`, `kill` and a failed
//! `create` reach only the container's own processes. Every case has a bystander process
//! that must survive; the tests are built so that a runtime with the bug can only hit
//! processes the test made (the root cgroup case runs in a cgroup namespace rooted at a
//! test-made cgroup).

use crate::common::*;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the tests put their bystanders: the v1 pids hierarchy.
const PIDS_HIERARCHY: &str = "/sys/fs/cgroup/pids";

/// The v1 pids hierarchy (None on a host without it: the tests skip).
fn pids_hierarchy() -> Option<PathBuf> {
    let p = PathBuf::from(PIDS_HIERARCHY);
    p.join("cgroup.procs").exists().then_some(p)
}

/// A `sleep` made by the test, killed and reaped on drop.
struct Bystander(Child);

impl Bystander {
    fn spawn() -> Bystander {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        Bystander(child)
    }

    /// Started and moved into the cgroup `dir`.
    fn in_cgroup(dir: &Path) -> Bystander {
        let b = Bystander::spawn();
        fs::write(dir.join("cgroup.procs"), b.pid().to_string())
            .unwrap_or_else(|e| panic!("move {} into {}: {e}", b.pid(), dir.display()));
        b
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Still running: not our zombie, not even after a moment (a process killed just now
    /// may still be on its way out).
    fn alive(&mut self) -> bool {
        !poll_until(Duration::from_millis(300), || {
            self.0.try_wait().unwrap().is_some()
        })
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Cgroup directories made by the test (shallowest first), removed deepest first on drop.
struct TestCgroups(Vec<PathBuf>);

impl TestCgroups {
    fn make(dirs: &[PathBuf]) -> TestCgroups {
        for d in dirs {
            fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        TestCgroups(dirs.to_vec())
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            poll_until(Duration::from_secs(2), || {
                fs::remove_dir(d).is_ok() || !d.exists()
            });
        }
    }
}

fn members(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Alive and not a zombie (for processes that are not our children).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

fn init_pid(c: &Container) -> u32 {
    c.state()["pid"].as_u64().expect("pid in state") as u32
}

/// A cgroup that exists before `create` (here with a process of its own and a
/// sub-cgroup with another) is joined: `delete -f` and `kill --all` leave both processes
/// and both directories alone, while the container's init goes and the levels corten
/// made in the other hierarchies are removed.
#[test]
fn a_joined_cgroup_keeps_its_other_processes_and_sub_cgroups() {
    let Some(pids) = pids_hierarchy() else {
        skip!("no v1 pids hierarchy at {PIDS_HIERARCHY}");
    };
    let name = unique_id("cg-joined");
    let p = pids.join(&name);
    let other = p.join("other");
    let _cgroups = TestCgroups::make(&[p.clone(), other.clone()]);
    let mut in_p = Bystander::in_cgroup(&p);
    let mut in_other = Bystander::in_cgroup(&other);

    let mut a = sleeper("cg-joined-a");
    a.set("/linux/cgroupsPath", json!(format!("/{name}")));
    a.create_ok();
    a.start_ok();
    let init = init_pid(&a);
    assert!(members(&p).contains(&init), "init {init} not in {p:?}");
    a.rt(&["delete", "-f", &a.id]).ok();
    assert!(poll_until(STATE_TIMEOUT, || !running(init)), "init left");
    assert!(
        in_p.alive(),
        "delete -f killed a process of the joined cgroup"
    );
    assert!(
        in_other.alive(),
        "delete -f killed a process of a sub-cgroup"
    );
    assert!(
        other.is_dir(),
        "delete -f removed the joined cgroup's sub-cgroup"
    );
    assert!(p.is_dir(), "delete -f removed the joined cgroup");
    assert!(
        poll_until(STATE_TIMEOUT, || members(&p) == [in_p.pid()]),
        "{:?}",
        members(&p)
    );
    // Where corten made it (the other hierarchies), it is gone again.
    assert!(
        !Path::new("/sys/fs/cgroup/memory").join(&name).exists(),
        "the cgroup corten made in memory is left"
    );

    let mut b = sleeper("cg-joined-b");
    b.set("/linux/cgroupsPath", json!(format!("/{name}")));
    b.create_ok();
    b.start_ok();
    let init = init_pid(&b);
    b.rt(&["kill", "--all", &b.id, "KILL"]).ok();
    b.wait_status("stopped", STATE_TIMEOUT);
    assert!(
        in_p.alive() && in_other.alive(),
        "kill --all reached processes that are not the container's"
    );
    assert!(poll_until(STATE_TIMEOUT, || !running(init)));
    b.delete().ok();
    assert!(in_p.alive() && in_other.alive() && other.is_dir());
    a.assert_no_leftovers();
    b.assert_no_leftovers();
}

/// Without a pid namespace, `delete -f` kills the processes of the container's own
/// cgroup (the init's death takes nothing along), but not a process in a sub-cgroup that
/// someone else made there.
#[test]
fn shared_pid_ns_delete_kills_only_the_containers_own_cgroup() {
    let Some(pids) = pids_hierarchy() else {
        skip!("no v1 pids hierarchy at {PIDS_HIERARCHY}");
    };
    let mut c = Container::new("cg-sharedpid");
    c.remove_namespace("pid");
    c.sh("sleep 1001 & sleep 1002 & wait");
    c.create_ok();
    c.start_ok();
    let mine = pids.join(&c.id);
    assert!(poll_until(STATE_TIMEOUT, || members(&mine).len() == 3));
    let theirs = members(&mine);
    let foreign = mine.join("foreign");
    let cgroups = TestCgroups::make(std::slice::from_ref(&foreign));
    let mut bystander = Bystander::in_cgroup(&foreign);

    let out = c.rt(&["delete", "-f", &c.id]);
    out.ok();
    assert!(
        poll_until(STATE_TIMEOUT, || theirs.iter().all(|&p| !running(p))),
        "container processes left: {theirs:?}"
    );
    assert!(
        bystander.alive(),
        "delete -f killed a process of a foreign sub-cgroup"
    );
    assert!(foreign.is_dir());
    // Busy with the foreign process, the container's pids cgroup stays (with a warning).
    assert!(out.stderr.contains("could not remove cgroup"), "{out}");
    drop(bystander);
    drop(cgroups);
    let _ = fs::remove_dir(&mine);
    c.assert_no_leftovers();
}

/// ".." can't climb out of the hierarchy: the path is cleaned as an absolute one and
/// made inside each cgroup mount, so a plain directory holding a file named cgroup.procs
/// (listing a bystander) is never written to or acted on, not even by a failed create.
/// (Its own cgroup.procs is a directory: a runtime with the bug can't write a pid there
/// that a later kill would find after it was reused.)
#[test]
fn dotdot_in_cgroups_path_stays_inside_the_hierarchy() {
    let Some(pids) = pids_hierarchy() else {
        skip!("no v1 pids hierarchy at {PIDS_HIERARCHY}");
    };
    let decoy = TempDir::new("cg-decoy");
    let x = decoy.join("x");
    fs::create_dir_all(x.join("sub")).unwrap();
    fs::create_dir_all(x.join("cgroup.procs")).unwrap();
    // Declared before the container: reaped only after its guard's `delete -f`.
    let mut bystander = Bystander::spawn();
    let listed = format!("{}\n", bystander.pid());
    fs::write(x.join("sub/cgroup.procs"), &listed).unwrap();

    let inside = decoy.path().strip_prefix("/").unwrap().join("x");
    let seen = decoy.join("seen");
    let mut c = sleeper("cg-dotdot");
    c.config["linux"]["cgroupsPath"] =
        json!(format!("/../../../../../../..{}/x", decoy.path().display()));
    // A failing createRuntime hook rolls the create back once the cgroup is in place; it
    // first records whether the cgroup is where it belongs.
    let check = format!(
        "test -d {} && echo made > {}; exit 1",
        pids.join(&inside).display(),
        seen.display()
    );
    c.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", check]}]});
    let out = c.create();
    out.fails();
    assert!(
        bystander.alive(),
        "a failed create killed a pid listed in {x:?}\n{out}"
    );
    assert_eq!(
        fs::read_to_string(x.join("sub/cgroup.procs")).unwrap(),
        listed
    );
    assert_eq!(
        fs::read_to_string(&seen).unwrap_or_default().trim(),
        "made",
        "the cgroup was not made at {}\n{out}",
        pids.join(&inside).display()
    );
    // Removed again, with the levels corten made above it.
    let top = inside.components().next().unwrap();
    for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(
            !h.path().join(top).exists(),
            "left: {}",
            h.path().join(top).display()
        );
    }
    c.assert_no_leftovers();
}

/// cgroupsPath "/" (and "." where the runtime's own cgroup is the root) would make the
/// root cgroup the container's: refused. Run inside a cgroup namespace rooted at a
/// test-made cgroup, with only the pids hierarchy mounted (a private mount namespace), so
/// that a runtime that took "/" and emptied it at `delete -f` could only kill the
/// processes of this test. The state root is a tmpfs of that mount namespace too.
#[test]
fn the_root_cgroup_is_refused_inside_a_cgroup_namespace() {
    let Some(pids) = pids_hierarchy() else {
        skip!("no v1 pids hierarchy at {PIDS_HIERARCHY}");
    };
    let t = pids.join(unique_id("cg-nsroot"));
    let _cgroups = TestCgroups::make(std::slice::from_ref(&t));
    let mut c = sleeper("cg-nsroot");
    c.set("/linux/cgroupsPath", json!("/"));
    c.write_config();
    let state_root = TempDir::new("cg-nsroot-state");
    let inner = r#"
        set -e
        mount -t tmpfs tmpfs "$ROOT"
        for m in $(awk '$9=="cgroup" || $9=="cgroup2" {print $5}' /proc/self/mountinfo | sort -r); do
            umount "$m"
        done
        mount -t cgroup -o pids cgroup /sys/fs/cgroup/pids
        sleep 1000 </dev/null >/dev/null 2>&1 &
        echo "bystander $!"
        echo "in $(grep :pids: /proc/self/cgroup)"
        set +e
        for p in / . ; do
            sed -i "s|\"cgroupsPath\": \"[^\"]*\"|\"cgroupsPath\": \"$p\"|" "$B/config.json"
            "$RT" --root "$ROOT" create --bundle "$B" "$ID" 2>&1
            echo "create $p: $?"
            "$RT" --root "$ROOT" start "$ID" 2>&1
            echo "members $(cat /sys/fs/cgroup/pids/cgroup.procs | tr "\n" " ")"
            "$RT" --root "$ROOT" delete -f "$ID" 2>&1
            echo "delete $p: $?"
        done
    "#;
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare --mount --cgroup --propagation private sh -c '{}'",
        t.display(),
        inner.replace('\'', "'\\''")
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("ROOT", state_root.path())
        .env("B", c.bundle())
        .env("ID", &c.id)
        .env("RT", runtime())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bystander: Option<u32> = text
        .lines()
        .find_map(|l| l.strip_prefix("bystander "))
        .and_then(|p| p.trim().parse().ok());
    // Killed, it may still be on its way out (its pipes closed before it is a zombie).
    let alive = bystander.is_some_and(|p| !poll_until(Duration::from_millis(500), || !running(p)));
    // Everything in the test's cgroup is the test's: stop it before judging.
    for pid in members(&t) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    poll_until(Duration::from_secs(2), || members(&t).is_empty());
    assert!(bystander.is_some(), "the namespace was not set up:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("in ") && l.ends_with(":pids:/")),
        "not at the root of its cgroup namespace:\n{text}"
    );
    assert!(alive, "delete -f killed the namespace's processes:\n{text}");
    assert!(
        text.contains("is the root cgroup, which can't be a container's cgroup"),
        "cgroupsPath \"/\" not refused:\n{text}"
    );
    assert!(
        text.contains("resolves to the root cgroup of /sys/fs/cgroup/pids"),
        "cgroupsPath \".\" not refused:\n{text}"
    );
    assert!(
        text.contains("create /: 1") && text.contains("create .: 1"),
        "{text}"
    );
}

/// A cgroupsPath the kernel can't take is refused before anything is made (it used to
/// take 91 s of retries to fail), and nothing is left.
#[test]
fn invalid_cgroup_names_are_refused_at_once() {
    for (path, why) in [
        ("/a\u{0}b", "contains a NUL byte"),
        ("/a\nb", "can't contain a newline"),
    ] {
        let mut c = sleeper("cg-badname");
        c.set("/linux/cgroupsPath", json!(path));
        let start = Instant::now();
        let out = c.create();
        assert_err(&out, &["linux.cgroupsPath", why], &["cgroup"]);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{path:?} took {:?} to fail",
            start.elapsed()
        );
        c.assert_no_leftovers();
    }
}

/// Sub-cgroups the container makes itself (cgroup namespace, rw cgroup mount) are the
/// container's: `delete -f` removes them with its cgroup, their processes gone with its
/// pid namespace.
#[test]
fn sub_cgroups_made_inside_the_container_go_with_it() {
    let Some(pids) = pids_hierarchy() else {
        skip!("no v1 pids hierarchy at {PIDS_HIERARCHY}");
    };
    let mut c = Container::new("cg-inner");
    for m in c.config["mounts"].as_array_mut().unwrap() {
        if m["type"] == "cgroup" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
        }
    }
    c.sh("mkdir /sys/fs/cgroup/pids/inner; sleep 1001 & echo $! > /sys/fs/cgroup/pids/inner/cgroup.procs; wait");
    c.create_ok();
    c.start_ok();
    let inner = pids.join(&c.id).join("inner");
    assert!(
        poll_until(STATE_TIMEOUT, || members(&inner).len() == 1),
        "nothing in {inner:?}"
    );
    let sleeper = members(&inner)[0];
    c.rt(&["delete", "-f", &c.id]).ok();
    assert!(poll_until(STATE_TIMEOUT, || !running(sleeper)));
    assert!(!inner.exists());
    c.assert_no_leftovers();
}
