//! The container's file system view: /proc, /dev, devices, masked and
//! read-only paths, the read-only root, bind and tmpfs mounts, sysctls and
//! pivot_root.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn proc_is_the_containers_own() {
    let mut c = Container::new("proc");
    // The glob is expanded by the shell itself (no child process exists yet),
    // so pid 1 must be the only process of the pid namespace.
    let out = c.run_sh(
        "for p in /proc/[0-9]*; do echo ${p#/proc/}; done; echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    let pids: Vec<&str> = s[""].lines().collect();
    assert_eq!(
        pids,
        vec!["1"],
        "pids visible in the container's /proc:\n{out}"
    );
    let mounts = parse_mountinfo(&s["mountinfo"]);
    let proc_mount = find_mount(&mounts, "/proc").expect("/proc is mounted");
    assert_eq!(proc_mount.fstype, "proc", "{proc_mount:?}");
}

#[test]
fn dev_has_standard_devices_and_links() {
    let mut c = Container::new("dev");
    let out = c.run_sh(
        "stat -c '%n|%F|%t:%T' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; \
         echo @@links; \
         for l in fd stdin stdout stderr ptmx; do echo \"$l|$(readlink /dev/$l)\"; done; \
         echo @@use; \
         head -c 4 /dev/zero | od -An -tx1 | tr -d ' '; \
         echo discard > /dev/null && echo null-ok; \
         head -c 8 /dev/urandom | wc -c; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    let devs: Vec<&str> = s[""].lines().collect();
    let cs = "character special file";
    assert_eq!(
        devs,
        vec![
            format!("/dev/null|{cs}|1:3"),
            format!("/dev/zero|{cs}|1:5"),
            format!("/dev/full|{cs}|1:7"),
            format!("/dev/random|{cs}|1:8"),
            format!("/dev/urandom|{cs}|1:9"),
            format!("/dev/tty|{cs}|5:0"),
        ],
        "{out}"
    );
    let links: Vec<&str> = s["links"].lines().collect();
    assert_eq!(
        links,
        vec![
            "fd|/proc/self/fd",
            "stdin|/proc/self/fd/0",
            "stdout|/proc/self/fd/1",
            "stderr|/proc/self/fd/2",
            "ptmx|pts/ptmx",
        ],
        "{out}"
    );
    let used: Vec<&str> = s["use"].lines().map(str::trim).collect();
    assert_eq!(used, vec!["00000000", "null-ok", "8"], "{out}");

    let mounts = parse_mountinfo(&s["mountinfo"]);
    for (mp, fstype) in [
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let m = find_mount(&mounts, mp).unwrap_or_else(|| panic!("{mp} not mounted:\n{out}"));
        assert_eq!(m.fstype, fstype, "{m:?}");
    }
    let sys = find_mount(&mounts, "/sys").unwrap();
    assert!(sys.has_opt("ro"), "/sys should be read-only: {sys:?}");
}

#[test]
fn linux_devices_are_created() {
    let mut c = Container::new("devices");
    c.set(
        "/linux/devices",
        json!([{
            "path": "/dev/mydev", "type": "c", "major": 1, "minor": 7,
            "fileMode": 0o666, "uid": 0, "gid": 0
        }]),
    );
    let out = c.run_sh("stat -c '%F|%t:%T|%a|%u|%g' /dev/mydev");
    assert_eq!(out.trim(), "character special file|1:7|666|0|0");
}

#[test]
fn masked_paths_are_empty() {
    let mut c = Container::new("masked");
    // Only check paths that exist (and have content) on this host's kernel.
    let files: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
        "/proc/timer_stats",
    ]
    .into_iter()
    .filter(|f| Path::new(f).is_file())
    .collect();
    let dirs: Vec<&str> = ["/sys/firmware", "/proc/acpi", "/proc/asound", "/proc/scsi"]
        .into_iter()
        .filter(|d| Path::new(d).is_dir())
        .collect();
    assert!(
        !files.is_empty() && !dirs.is_empty(),
        "no masked path candidates exist on this host"
    );
    let mut script = String::new();
    for f in &files {
        script.push_str(&format!("echo \"{f}|$(cat {f} | wc -c)\"; "));
    }
    for d in &dirs {
        script.push_str(&format!("echo \"{d}|$(ls -A {d} | wc -l)\"; "));
    }
    let out = c.run_sh(&script);
    for f in &files {
        assert!(
            out.lines().any(|l| l.trim() == format!("{f}|0")),
            "masked file {f} is readable in the container:\n{out}"
        );
    }
    for d in &dirs {
        assert!(
            out.lines().any(|l| l.trim() == format!("{d}|0")),
            "masked dir {d} is not empty in the container:\n{out}"
        );
    }
    // The check is meaningful: at least one of them has content on the host.
    let host_content = files
        .iter()
        .any(|f| *f != "/proc/kcore" && fs::read(f).map(|b| !b.is_empty()).unwrap_or(false))
        || dirs.iter().any(|d| {
            fs::read_dir(d)
                .map(|mut r| r.next().is_some())
                .unwrap_or(false)
        });
    assert!(
        host_content,
        "all masked candidates are empty on the host too"
    );
}

#[test]
fn readonly_paths_refuse_writes() {
    let mut c = Container::new("ropaths");
    // Writing the domain name is harmless even if it succeeded (own UTS
    // namespace); /proc/sysrq-trigger is only checked through mountinfo.
    let out = c.run_sh(
        "(echo corten > /proc/sys/kernel/domainname) 2>&1; echo rc=$?; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    assert!(s[""].contains("Read-only file system"), "{out}");
    assert!(s[""].contains("rc=1"), "{out}");
    let mounts = parse_mountinfo(&s["mountinfo"]);
    for p in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        if !Path::new(p).exists() {
            continue;
        }
        let m = find_mount(&mounts, p).unwrap_or_else(|| panic!("{p} is not a mount:\n{out}"));
        assert!(
            m.mount_opts.iter().any(|o| o == "ro"),
            "{p} not read-only: {m:?}"
        );
    }
}

/// Spec (config.md, Root): "If true then the root filesystem MUST be read-only inside the
/// container, defaults to false."
#[test]
fn readonly_root_refuses_writes_but_tmpfs_is_writable() {
    let mut c = Container::new("roroot");
    c.add_mount(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777"]
    }));
    let out = c.run_sh(
        "(touch /x) 2>&1; echo rc=$?; touch /tmp/y && echo tmp-ok; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    assert!(s[""].contains("Read-only file system"), "{out}");
    assert!(s[""].contains("rc=1"), "{out}");
    assert!(s[""].contains("tmp-ok"), "{out}");
    assert!(!c.rootfs().join("x").exists());
    let mounts = parse_mountinfo(&s["mountinfo"]);
    let root = find_mount(&mounts, "/").expect("/ in mountinfo");
    assert!(root.mount_opts.iter().any(|o| o == "ro"), "{root:?}");
}

/// Spec (config.md, Root): "If true then the root filesystem MUST be read-only inside the
/// container, defaults to false."
#[test]
fn writable_root_when_not_readonly() {
    let mut c = Container::new("rwroot");
    c.set("/root/readonly", json!(false));
    let out = c.run_sh("echo written > /from-container && echo ok");
    assert_eq!(out.trim(), "ok");
    assert_eq!(
        fs::read_to_string(c.rootfs().join("from-container")).unwrap(),
        "written\n"
    );
}

/// Spec (config.md, Linux mount options): `bind` and `ro` are in the table of options
/// "Runtimes MUST/SHOULD/MAY implement" with the requirement MUST.
#[test]
fn bind_mount_read_only() {
    let host = TempDir::new("bindro");
    fs::write(host.join("hello.txt"), "host-data\n").unwrap();
    let mut c = Container::new("bind-ro");
    c.add_mount(bind("/data", host.path(), &["bind", "ro"]));
    let out = c.run_sh("cat /data/hello.txt; (touch /data/new) 2>&1; echo rc=$?");
    assert!(out.contains("host-data"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(!host.join("new").exists());
}

#[test]
fn bind_mount_read_write_is_visible_on_host() {
    let host = TempDir::new("bindrw");
    fs::write(host.join("hello.txt"), "host-data\n").unwrap();
    let mut c = Container::new("bind-rw");
    c.add_mount(bind("/data", host.path(), &["bind", "rw"]));
    let out = c.run_sh("cat /data/hello.txt; echo from-container > /data/out.txt && echo written");
    assert!(out.contains("host-data"), "{out}");
    assert!(out.contains("written"), "{out}");
    assert_eq!(
        fs::read_to_string(host.join("out.txt")).unwrap(),
        "from-container\n"
    );
}

/// Spec (config.md, Linux mount options): `nosuid` and `noexec` are in the table of options
/// "Runtimes MUST/SHOULD/MAY implement" with the requirement MUST.
#[test]
fn bind_mount_nosuid_noexec() {
    let host = TempDir::new("bindnoexec");
    fs::copy("/bin/busybox", host.join("busybox")).unwrap();
    let mut c = Container::new("bind-noexec");
    c.add_mount(bind("/data", host.path(), &["bind", "nosuid", "noexec"]));
    c.add_mount(bind("/exec", host.path(), &["bind"]));
    let out = c.run_sh(
        "(/data/busybox true) 2>&1; echo rc=$?; /exec/busybox echo exec-ok; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    assert!(s[""].contains("Permission denied"), "{out}");
    assert!(s[""].contains("rc=126"), "{out}");
    assert!(
        s[""].contains("exec-ok"),
        "control mount should allow exec:\n{out}"
    );
    let mounts = parse_mountinfo(&s["mountinfo"]);
    let data = find_mount(&mounts, "/data").expect("/data mounted");
    assert!(data.mount_opts.iter().any(|o| o == "nosuid"), "{data:?}");
    assert!(data.mount_opts.iter().any(|o| o == "noexec"), "{data:?}");
    let exec = find_mount(&mounts, "/exec").expect("/exec mounted");
    assert!(!exec.mount_opts.iter().any(|o| o == "noexec"), "{exec:?}");
}

#[test]
fn tmpfs_mount_with_size_and_mode() {
    let mut c = Container::new("tmpfs");
    c.add_mount(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=2m", "mode=1770"]
    }));
    let out = c.run_sh("stat -c %a /scratch; echo @@mountinfo; cat /proc/self/mountinfo");
    let s = sections(&out);
    assert_eq!(s[""].trim(), "1770", "{out}");
    let m = find_mount(&parse_mountinfo(&s["mountinfo"]), "/scratch").expect("/scratch mounted");
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.has_opt("size=2048k"), "{m:?}");
    assert!(m.has_opt("mode=1770"), "{m:?}");
    assert!(m.has_opt("nosuid") && m.has_opt("nodev"), "{m:?}");
}

/// An id-mapped bind (mounts[].uidMappings/gidMappings): on-disk ids `containerID + n` show
/// as `hostID + n` inside, what the container writes lands on disk mapped back, and the
/// source keeps its owners. Both maps and a bind are required.
#[test]
fn idmapped_bind_mount_maps_owners_both_ways() {
    use std::os::unix::fs::MetadataExt;
    let src = TempDir::new("idmap-src");
    fs::write(src.join("rootfile"), "r").unwrap();
    fs::write(src.join("userfile"), "u").unwrap();
    std::os::unix::fs::chown(src.join("userfile"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(src.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let map = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    let mount = json!({"destination": "/mnt/id", "type": "bind", "source": src.path(),
                       "options": ["bind", "rw", "idmap"],
                       "uidMappings": map, "gidMappings": map});
    let mut c = Container::new("idmap");
    c.add_mount(mount.clone());
    c.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let out = c.run_sh(
        "stat -c '%n %u:%g' /mnt/id/rootfile /mnt/id/userfile; touch /mnt/id/made; \
         stat -c '%n %u:%g' /mnt/id/made",
    );
    assert_eq!(
        out,
        "/mnt/id/rootfile 1000:1000\n/mnt/id/userfile 65534:65534\n/mnt/id/made 1000:1000\n"
    );
    let made = fs::metadata(src.join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0), "written through the map");
    let user = fs::metadata(src.join("userfile")).unwrap();
    assert_eq!(
        (user.uid(), user.gid()),
        (1000, 1000),
        "the source is untouched"
    );
    c.assert_no_leftovers();

    let mut only_uids = mount.clone();
    only_uids.as_object_mut().unwrap().remove("gidMappings");
    let mut tmpfs = mount;
    tmpfs["type"] = json!("tmpfs");
    tmpfs["options"] = json!(["idmap"]);
    for (m, why) in [
        (only_uids, "needs both uidMappings and gidMappings"),
        (tmpfs, "only bind mounts can be id-mapped"),
    ] {
        let mut c = Container::new("idmap-bad");
        c.add_mount(m);
        assert_err(&c.create(), &["/mnt/id", why], &["mapping"]);
        c.assert_no_leftovers();
    }
}

/// A tmpfs without mode= over an image directory takes that directory's mode, special bits
/// included (runc's rule); over a new directory it keeps tmpfs's 1777.
#[test]
fn tmpfs_without_mode_keeps_the_covered_directorys_mode() {
    let mut c = Container::new("tmpfs-mode");
    let dir = c.rootfs().join("data");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o7777)).unwrap();
    for dest in ["/data", "/fresh"] {
        c.add_mount(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev"]}),
        );
    }
    let out = c.run_sh("stat -c %A /data /fresh");
    assert_eq!(out, "drwsrwsrwt\ndrwxrwxrwt\n");
}

/// `tmpcopyup` (podman's --read-only and --tmpfs): the tmpfs starts with a copy of the
/// directory it covers (files, subdirectories, symlinks, fifos, modes and owners), the
/// image's files stay untouched, and `ro` applies after the copy.
#[test]
fn tmpfs_copyup_copies_the_covered_directory() {
    let mut c = Container::new("copyup");
    let data = c.rootfs().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("f"), "image-data\n").unwrap();
    fs::set_permissions(data.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(data.join("sub/g"), "deep\n").unwrap();
    std::os::unix::fs::chown(data.join("sub/g"), Some(1000), Some(2000)).unwrap();
    std::os::unix::fs::symlink("../f", data.join("sub/link")).unwrap();
    // (runc 1.1 fails on fifos: lchown after a copy it never made.)
    if !is_runc() {
        nix::unistd::mkfifo(
            &data.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
    }
    fs::create_dir_all(c.rootfs().join("rodata")).unwrap();
    fs::write(c.rootfs().join("rodata/r"), "ro-data\n").unwrap();
    c.add_mount(json!({
        "destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "tmpcopyup", "mode=755"]
    }));
    c.add_mount(json!({
        "destination": "/rodata", "type": "tmpfs", "source": "tmpfs",
        "options": ["tmpcopyup", "ro"]
    }));
    let out = c.run_sh(
        "cat /data/f /data/sub/g /data/sub/link; stat -c '%a %u:%g %F' /data/f /data/sub/g /data/fifo; \
         readlink /data/sub/link; echo changed > /data/f; cat /rodata/r; \
         (touch /rodata/x) 2>&1; echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    let mut want = vec![
        "image-data",
        "deep",
        "image-data",
        "640 0:0 regular file",
        "644 1000:2000 regular file",
        "600 0:0 fifo",
        "../f",
        "ro-data",
        "touch: /rodata/x: Read-only file system",
    ];
    if is_runc() {
        want.retain(|l| !l.ends_with("fifo"));
    }
    let got: Vec<&str> = s[""]
        .lines()
        .filter(|l| !l.contains("/data/fifo"))
        .collect();
    assert_eq!(got, want, "{out}");
    let mounts = parse_mountinfo(&s["mountinfo"]);
    let m = find_mount(&mounts, "/data").expect("/data mounted");
    assert_eq!(m.fstype, "tmpfs");
    let ro = find_mount(&mounts, "/rodata").expect("/rodata mounted");
    assert!(ro.mount_opts.iter().any(|o| o == "ro"), "{ro:?}");
    // The write went to the tmpfs, not to the image.
    assert_eq!(fs::read_to_string(data.join("f")).unwrap(), "image-data\n");
}

#[test]
fn missing_mount_destination_is_created() {
    let mut c = Container::new("mkdest");
    c.add_mount(json!({
        "destination": "/a/b/c", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    let out = c.run_sh(
        "test -d /a/b/c && echo isdir; touch /a/b/c/f && echo writable; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    assert!(
        s[""].contains("isdir") && s[""].contains("writable"),
        "{out}"
    );
    let m = find_mount(&parse_mountinfo(&s["mountinfo"]), "/a/b/c").expect("/a/b/c mounted");
    assert_eq!(m.fstype, "tmpfs");
}

#[test]
fn sysctl_in_network_namespace() {
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut c = Container::new("sysctl");
    c.set("/linux/sysctl", json!({ "net.ipv4.ip_forward": "1" }));
    let out = c.run_sh("cat /proc/sys/net/ipv4/ip_forward");
    assert_eq!(out.trim(), "1");
    let host_after = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(host_before, host_after, "the host's sysctl changed");
}

#[test]
fn pivot_root_hides_host_filesystem() {
    let mut c = Container::new("pivot");
    assert!(Path::new("/etc/debian_version").exists() || Path::new("/etc/os-release").exists());
    let out = c.run_sh(
        "for f in /etc/debian_version /etc/os-release; do test -e $f && echo \"host-file $f\"; done; \
         echo @@root; ls -a /proc/1/root/; \
         echo @@passwd; cat /etc/passwd; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    assert!(!s[""].contains("host-file"), "host files visible:\n{out}");
    let listing: Vec<&str> = s["root"].lines().collect();
    for want in ["bin", "etc", "proc", "dev", "sys", "tmp"] {
        assert!(
            listing.contains(&want),
            "{want} missing from /proc/1/root:\n{out}"
        );
    }
    assert!(s["passwd"].contains("test:x:1000:1000"), "{out}");

    let mounts = parse_mountinfo(&s["mountinfo"]);
    let roots: Vec<&MountInfo> = mounts.iter().filter(|m| m.mount_point == "/").collect();
    assert_eq!(
        roots.len(),
        1,
        "exactly one mount at /:\n{}",
        s["mountinfo"]
    );
    // The root mount is the bundle's rootfs directory (a bind mount of it):
    // its root within its file system ends with <bundle dir name>/rootfs.
    let bundle_name = c.bundle_name();
    assert!(
        roots[0].root.ends_with(&format!("{bundle_name}/rootfs")),
        "root mount is not the bundle rootfs: {:?}",
        roots[0]
    );
}

#[test]
fn cgroup_namespace_and_mount() {
    let mut c = Container::new("cgroupns");
    let out = c.run_sh("cat /proc/self/cgroup; echo @@mountinfo; cat /proc/self/mountinfo");
    let s = sections(&out);
    // In a cgroup namespace the container's own cgroup is its root "/".
    for line in s[""].lines().filter(|l| !l.is_empty()) {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        assert!(
            !path.contains(&c.id),
            "cgroup path leaks the host hierarchy: {line}\n{out}"
        );
    }
    let mounts = parse_mountinfo(&s["mountinfo"]);
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_point.starts_with("/sys/fs/cgroup")),
        "no cgroup mount:\n{out}"
    );
}
