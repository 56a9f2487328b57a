//! Behaviour where corten once did less than runc, each seen with a real config: the
//! loopback device of a new network namespace is up, a cgroup namespace needs no cgroup
//! mount, scheduler flags take the spec's spelling, devices may live outside /dev, a mount
//! destination may be a dangling symlink, and bind sources only host root can reach still
//! mount in a user namespace (made by `create` as detached clones, which must not stay
//! peers of a shared host mount). Each test observes what the container sees.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{Container, TempDir, bind, poll_until, skip, sleeper, unique_id};

/// IFF_UP | IFF_LOOPBACK and IFF_LOOPBACK, as /sys/class/net/lo/flags shows them.
const LO_UP: &str = "0x9";
const LO_DOWN: &str = "0x8";

#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    let mut c = Container::new("lo-up");
    // A server and a client on 127.0.0.1; the client retries until the server listens.
    let out = c.run_sh(
        "echo served-over-loopback > /dev/shm/msg; nc -l -p 8080 < /dev/shm/msg & \
         for i in $(seq 50); do nc 127.0.0.1 8080 < /dev/null && break; sleep 0.1; done; \
         echo flags=$(cat /sys/class/net/lo/flags)",
    );
    assert!(
        out.contains("served-over-loopback"),
        "the client did not get the server's bytes:\n{out}"
    );
    assert!(out.contains(&format!("flags={LO_UP}")), "{out}");
    // Also where the network namespace belongs to a new user namespace.
    let mut c = Container::new("lo-up-userns");
    crate::userns::user_ns(&mut c, 100000);
    let out = c.run_sh("echo flags=$(cat /sys/class/net/lo/flags)");
    assert!(out.contains(&format!("flags={LO_UP}")), "{out}");
}

/// A process holding a new network namespace of its own (its `lo` down).
struct NetnsHolder(Child);

impl NetnsHolder {
    fn start() -> Option<NetnsHolder> {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .ok()?;
        let holder = NetnsHolder(child);
        let own = fs::read_link("/proc/self/ns/net").ok()?;
        let path = holder.path();
        poll_until(Duration::from_secs(5), || {
            fs::read_link(&path).is_ok_and(|ns| ns != own)
        })
        .then_some(holder)
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn joined_network_namespace_is_left_as_it_is() {
    let Some(holder) = NetnsHolder::start() else {
        skip!("`unshare --net` failed");
    };
    let mut c = Container::new("lo-joined");
    for ns in c.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = json!(holder.path());
        }
    }
    let out = c.run_sh("echo flags=$(cat /sys/class/net/lo/flags)");
    assert!(out.contains(&format!("flags={LO_DOWN}")), "{out}");
}

#[test]
fn cgroup_namespace_without_a_cgroup_mount() {
    let mut c = Container::new("cgns-nomount");
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/sys/fs/cgroup");
    // The process loses CAP_SYS_ADMIN (Docker's defaults): the namespace must be made
    // before that.
    let out = c.run_sh("cat /proc/self/cgroup");
    assert!(!out.trim().is_empty(), "{out}");
    for line in out.lines() {
        assert!(
            line.ends_with(":/"),
            "not at the root of its cgroup namespace: {line:?}\n{out}"
        );
    }
    assert!(!out.contains(&c.id), "{out}");
}

#[test]
fn scheduler_flags_take_the_specs_spelling() {
    let mut c = Container::new("sched-flags");
    c.set(
        "/process/scheduler",
        json!({
            "policy": "SCHED_OTHER",
            "nice": -5,
            "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"]
        }),
    );
    // Field 19 of stat is the nice value: the shell keeps -5, a child it forks (cut) is
    // reset to 0 by SCHED_RESET_ON_FORK.
    let script = "echo shell=$(cut -d' ' -f19 /proc/$$/stat); \
         cut -d' ' -f19 /proc/self/stat | sed 's/^/child=/'; echo end";
    let out = c.run_sh(script);
    assert!(out.contains("shell=-5"), "{out}");
    assert!(out.contains("child=0"), "reset on fork not applied:\n{out}");
    // The same spelling in an `exec --process` file.
    let c = sleeper("sched-flags-exec");
    c.create_ok();
    c.start_ok();
    let tmp = TempDir::new("process");
    let file = tmp.join("process.json");
    let process = json!({"args": ["sh", "-c", script], "cwd": "/",
        "scheduler": {"policy": "SCHED_OTHER", "nice": -3, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}});
    fs::write(&file, process.to_string()).unwrap();
    let out = c.rt(&["exec", "--process", file.to_str().unwrap(), &c.id]);
    let out = &out.ok().stdout;
    assert!(out.contains("shell=-3"), "{out}");
    assert!(out.contains("child=0"), "reset on fork not applied:\n{out}");
}

#[test]
fn devices_outside_dev_are_created() {
    let mut c = Container::new("dev-outside");
    c.set(
        "/linux/devices",
        json!([
            {"path": "/foo-dev", "type": "c", "major": 1, "minor": 3, "fileMode": 438},
            {"path": "/mnt/x/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 420}
        ]),
    );
    let out = c.run_sh(
        "stat -c '%n %F %t,%T %a' /foo-dev /mnt/x/zero; \
         echo data > /foo-dev && echo wrote-null; \
         echo zero-bytes=$(head -c 4 /mnt/x/zero | wc -c)",
    );
    assert!(
        out.contains("/foo-dev character special file 1,3 666"),
        "{out}"
    );
    assert!(
        out.contains("/mnt/x/zero character special file 1,5 644"),
        "{out}"
    );
    assert!(out.contains("wrote-null"), "{out}");
    assert!(out.contains("zero-bytes=4"), "{out}");
}

#[test]
fn dangling_symlink_destinations_are_created_inside_the_rootfs() {
    let host = TempDir::new("dangling");
    let conf = host.join("app.conf");
    fs::write(&conf, "conf-content\n").unwrap();
    let mut c = Container::new("dangling-dest");
    let rootfs = c.rootfs();
    // Absolute, relative, and relative climbing past the root (clamped to it).
    let outside = unique_id("outside");
    std::os::unix::fs::symlink("/nonexistent/deep", rootfs.join("data")).unwrap();
    std::os::unix::fs::symlink("../conf/app.conf", rootfs.join("etc/app.conf")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../{outside}"),
        rootfs.join("escape"),
    )
    .unwrap();
    c.add_mount(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}));
    c.add_mount(bind("/etc/app.conf", &conf, &["bind", "ro"]));
    c.add_mount(json!({"destination": "/escape", "type": "tmpfs", "source": "tmpfs"}));
    let out = c.run_sh(&format!(
        "grep -c ' /nonexistent/deep tmpfs ' /proc/mounts; cat /etc/app.conf /conf/app.conf; \
         grep -c ' /{outside} tmpfs ' /proc/mounts; echo end"
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["1", "conf-content", "conf-content", "1", "end"],
        "{out}"
    );
    assert!(rootfs.join("nonexistent/deep").is_dir());
    assert!(rootfs.join("conf/app.conf").is_file());
    assert!(rootfs.join(&outside).is_dir());
    assert!(
        !std::path::Path::new("/").join(&outside).exists(),
        "created outside the rootfs"
    );
}

/// Also: a clone of a shared host mount does not stay the host's peer (mounts made under
/// it in the container must not reach the host).
#[test]
fn bind_sources_only_host_root_reaches_mount_in_a_user_namespace() {
    let host = crate::escapes::shared_host_dir("private-src");
    let private = host.join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir_all(private.join("data")).unwrap();
    fs::create_dir_all(private.join("rw/sub")).unwrap();
    fs::write(private.join("data/file"), "dir-content\n").unwrap();
    fs::write(private.join("file.txt"), "file-content\n").unwrap();
    let mut c = Container::new("userns-private");
    crate::userns::user_ns(&mut c, 100000);
    with_sys_admin(&mut c);
    // The rootfs belongs to the host's root, unmapped here: the mount points must exist.
    fs::create_dir(c.rootfs().join("data")).unwrap();
    fs::create_dir(c.rootfs().join("rw")).unwrap();
    fs::write(c.rootfs().join("file.txt"), "").unwrap();
    c.add_mount(bind("/data", &private.join("data"), &["rbind", "ro"]));
    c.add_mount(bind("/file.txt", &private.join("file.txt"), &["bind"]));
    c.add_mount(bind("/rw", &private.join("rw"), &["rbind", "rw"]));
    let out = c.run_sh(
        "cat /data/file /file.txt; touch /data/new 2>/dev/null || echo read-only; \
         grep ' /data ' /proc/mounts | grep -c ' ro,'; \
         mount -t tmpfs tmpfs /rw/sub && echo mounted",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["dir-content", "file-content", "read-only", "1", "mounted"],
        "{out}"
    );
    assert_no_mount_came_back(&host);
}

/// An id-mapped bind is a clone too: of a shared host mount, it must not stay the host's
/// peer either.
#[test]
fn idmapped_bind_of_a_shared_host_mount_keeps_container_mounts_in() {
    let host = crate::escapes::shared_host_dir("idmap-shared");
    fs::create_dir_all(host.join("src/sub")).unwrap();
    let map = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    let mut c = Container::new("idmap-shared");
    c.add_mount(json!({"destination": "/mnt/id", "type": "bind",
        "source": host.join("src"), "options": ["rbind", "rw", "idmap"],
        "uidMappings": map, "gidMappings": map}));
    with_sys_admin(&mut c);
    let out = c.run_sh("mount -t tmpfs tmpfs /mnt/id/sub && echo mounted");
    assert_eq!(out.trim(), "mounted");
    assert_no_mount_came_back(&host);
}

/// A bind made by `create` gets the /proc checks of any other bind.
#[test]
fn bind_onto_proc_is_refused_in_a_user_namespace_too() {
    let fake = TempDir::new("fakeproc");
    let mut c = Container::new("userns-fakeproc");
    crate::userns::user_ns(&mut c, 100000);
    c.add_mount(bind("/proc", fake.path(), &["rbind"]));
    let out = c.create();
    crate::common::assert_err(&out, &["/proc", "not a procfs"], &["not of type proc"]);
    c.assert_no_leftovers();
}

/// Lets the container's root mount things (the propagation tests).
fn with_sys_admin(c: &mut Container) {
    for set in ["bounding", "effective", "permitted"] {
        let caps = c.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap();
        caps.push(json!("CAP_SYS_ADMIN"));
    }
}

/// The shared host directory `host` carries no mount but its own.
fn assert_no_mount_came_back(host: &TempDir) {
    assert_eq!(
        crate::escapes::host_mounts_under(host.path()),
        [host.path().to_string_lossy()],
        "a mount made in the container reached the host"
    );
}
