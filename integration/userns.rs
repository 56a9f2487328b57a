//! User namespaces: id maps written by the parent, root inside mapped to an unprivileged
//! host id, devices bound from the host, sysfs without a network namespace, bad maps
//! refused; and rootless corten, run by a real unprivileged user the test makes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::{Container, Out, TempDir, assert_err, bind, runtime, unique_id};

const HOST_BASE: u32 = 100000;

/// A new user namespace mapping container ids 0..65536 to `host`..
pub fn user_ns(c: &mut Container, host: u32) {
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    c.set("/linux/uidMappings", map.clone());
    c.set("/linux/gidMappings", map);
}

/// A host directory owned by `uid`, bind-mounted at /shared.
fn shared_dir(c: &mut Container, tmp: &TempDir, uid: u32) {
    let dir = tmp.join("shared");
    fs::create_dir(&dir).unwrap();
    // The rootfs belongs to the host's root, unmapped here: the mount point must exist.
    fs::create_dir(c.rootfs().join("shared")).unwrap();
    nix::unistd::chown(
        &dir,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
    )
    .unwrap();
    c.add_mount(bind("/shared", &dir, &["rbind", "rw"]));
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_id() {
    let tmp = TempDir::new("userns");
    let mut c = Container::new("userns-root");
    user_ns(&mut c, HOST_BASE);
    shared_dir(&mut c, &tmp, HOST_BASE);
    let out = c.run_sh(
        "id; cat /proc/self/uid_map /proc/self/gid_map; touch /shared/by-root; \
         grep CapEff /proc/self/status",
    );
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
    let maps: Vec<&str> = out
        .lines()
        .filter(|l| l.split_whitespace().count() == 3)
        .collect();
    assert_eq!(maps.len(), 2, "{out}");
    for m in maps {
        let v: Vec<&str> = m.split_whitespace().collect();
        assert_eq!(v, ["0", "100000", "65536"], "{out}");
    }
    // Root inside is uid 100000 outside.
    let meta = fs::metadata(tmp.join("shared/by-root")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (HOST_BASE, HOST_BASE));
    assert!(
        !out.contains("CapEff:\t0000000000000000"),
        "root keeps its caps: {out}"
    );
    c.assert_no_leftovers();
}

#[test]
fn user_namespace_process_user_and_groups_map_too() {
    let tmp = TempDir::new("userns");
    let mut c = Container::new("userns-user");
    user_ns(&mut c, HOST_BASE);
    shared_dir(&mut c, &tmp, HOST_BASE + 1000);
    c.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]}),
    );
    let out = c.run_sh("id -u; id -g; id -G; touch /shared/by-user");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000", "1000"], "{out}");
    assert!(lines[2].split_whitespace().any(|g| g == "2000"), "{out}");
    let meta = fs::metadata(tmp.join("shared/by-user")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (HOST_BASE + 1000, HOST_BASE + 1000)
    );
}

/// mknod is not allowed in a user namespace: the devices are the host's nodes, bound.
/// Without a network namespace of its own, sysfs can't be mounted: /sys is the host's,
/// bound read-only.
#[test]
fn user_namespace_devices_are_host_binds_and_sysfs_without_netns_is_bound() {
    let mut c = Container::new("userns-dev");
    user_ns(&mut c, HOST_BASE);
    c.remove_namespace("network");
    let out = c.run_sh(
        "echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; \
         awk '$5 == \"/dev/null\" || $5 == \"/dev/zero\" || $5 == \"/sys\" {print $5, $6}' \
         /proc/self/mountinfo; ls /sys/class >/dev/null && echo sys-ok; \
         touch /sys/x 2>&1; true",
    );
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.contains("00 00 00 00"), "{out}");
    assert!(
        out.contains("/dev/null rw"),
        "/dev/null is a bind mount: {out}"
    );
    assert!(out.contains("/dev/zero rw"), "{out}");
    assert!(out.contains("/sys ro"), "/sys is read-only: {out}");
    assert!(out.contains("sys-ok"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    c.assert_no_leftovers();
}

#[test]
fn bad_id_mappings_are_refused_before_anything_runs() {
    type Tweak = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tweak, &str)> = vec![
        (
            "overlap",
            Box::new(|l: &mut Value| {
                l["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10},
                                          {"containerID": 5, "hostID": 200000, "size": 10}]);
            }),
            "overlap in the container's ids",
        ),
        (
            "size0",
            Box::new(|l: &mut Value| {
                l["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 0}]);
            }),
            "size 0",
        ),
        (
            "past",
            Box::new(|l: &mut Value| {
                l["uidMappings"] = json!([{"containerID": 0, "hostID": 4294967295u32, "size": 2}]);
            }),
            "runs past id 4294967295",
        ),
        (
            "nomaps",
            Box::new(|l: &mut Value| {
                l.as_object_mut().unwrap().remove("gidMappings");
            }),
            "needs linux.gidMappings",
        ),
        (
            "nons",
            Box::new(|l: &mut Value| {
                l["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "user");
            }),
            "no user namespace",
        ),
    ];
    for (name, tweak, want) in cases {
        let mut c = Container::new(&format!("userns-bad-{name}"));
        user_ns(&mut c, HOST_BASE);
        tweak(&mut c.config["linux"]);
        let out = c.create();
        assert_err(&out, &[want], &[]);
        c.assert_no_leftovers();
    }
}

/// A user made for one test, removed (with anything it still runs) when dropped.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn new() -> TestUser {
        let name = format!("crt{}", &unique_id("u").replace(['-', '.'], "")[..]);
        let name: String = name.chars().take(30).collect();
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("run useradd");
        assert!(out.status.success(), "useradd: {out:?}");
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        TestUser { name, uid, gid }
    }

    /// Runs the runtime as this user, with `XDG_RUNTIME_DIR=xdg`, in `dir`. Output goes
    /// through files, not pipes: a detached container keeps its stdio open.
    fn rt(&self, xdg: &Path, dir: &Path, args: &[&str]) -> Out {
        let files = TempDir::new("rootless-out");
        let (o, e) = (files.join("out"), files.join("err"));
        let status = Command::new("setpriv")
            .args([
                &format!("--reuid={}", self.uid),
                &format!("--regid={}", self.gid),
                "--clear-groups",
                "--",
            ])
            .arg(runtime())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("XDG_RUNTIME_DIR", xdg)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .status()
            .expect("run setpriv");
        Out {
            cmd: format!("[as {}] corten {}", self.name, args.join(" ")),
            code: status.code(),
            stdout: fs::read_to_string(&o).unwrap_or_default(),
            stderr: fs::read_to_string(&e).unwrap_or_default(),
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-U", &self.uid.to_string()])
            .status();
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

#[test]
fn rootless_corten_is_run_by_an_unprivileged_user() {
    let user = TestUser::new();
    let tmp = TempDir::new("rootless");
    let xdg = tmp.join("xdg");
    let bundle = tmp.join("bundle");
    for d in [&xdg, &bundle] {
        fs::create_dir(d).unwrap();
        nix::unistd::chown(
            d,
            Some(nix::unistd::Uid::from_raw(user.uid)),
            Some(nix::unistd::Gid::from_raw(user.gid)),
        )
        .unwrap();
    }
    fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).unwrap();
    crate::common::make_rootfs(&bundle.join("rootfs"));

    // The user's own `spec --rootless`, with our command and no terminal.
    user.rt(&xdg, &bundle, &["spec", "--rootless"]).ok();
    let cfg_path = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_str(&fs::read_to_string(&cfg_path).unwrap()).unwrap();
    assert_eq!(
        cfg["linux"]["uidMappings"][0]["hostID"], user.uid,
        "spec --rootless maps the caller"
    );
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!([
        "sh",
        "-c",
        "id; cat /proc/self/uid_map /proc/self/setgroups"
    ]);
    fs::write(&cfg_path, cfg.to_string()).unwrap();

    let id = unique_id("rootless");
    let out = user.rt(&xdg, &bundle, &["run", &id]);
    out.ok();
    assert!(out.stdout.contains("uid=0(root) gid=0(root)"), "{out}");
    let map: Vec<String> = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().count() == 3)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(map, ["0", &user.uid.to_string(), "1"], "{out}");
    assert!(out.stdout.contains("deny"), "setgroups denied: {out}");
    // No cgroup is delegated to this user here: a warning, not a failure.
    assert!(out.stderr.contains("rootless: no cgroup"), "{out}");

    // Detached: the state lives under $XDG_RUNTIME_DIR/corten; the process is the user's.
    cfg["process"]["args"] = json!(["sleep", "100"]);
    fs::write(&cfg_path, cfg.to_string()).unwrap();
    let id = unique_id("rootless-d");
    user.rt(&xdg, &bundle, &["run", "-d", &id]).ok();
    assert!(xdg.join("corten").join(&id).join("state.json").is_file());
    let state: Value =
        serde_json::from_str(&user.rt(&xdg, &bundle, &["state", &id]).ok().stdout).unwrap();
    assert_eq!(state["status"], "running");
    let pid = state["pid"].as_i64().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some(user.uid.to_string().as_str()),
        "{uid_line}"
    );
    let list = user.rt(&xdg, &bundle, &["list", "-q"]);
    assert!(list.ok().stdout.lines().any(|l| l == id), "{list}");
    user.rt(&xdg, &bundle, &["delete", "-f", &id]).ok();
    assert!(!xdg.join("corten").join(&id).exists());
    // Killed: gone, or a zombie its new parent has yet to reap.
    let gone = crate::common::poll_until(std::time::Duration::from_secs(3), || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| s.contains("State:\tZ"))
            .unwrap_or(true)
    });
    assert!(gone, "process {pid} still runs after delete -f");
}
