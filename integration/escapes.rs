//! A regression test for every container-escape class that hit runc, crun or
//! youki: the runtime binary overwritten through /proc/<pid>/exe, leaked fds
//! and cwd, mount destinations and /dev, /proc, /sys swapped for symlinks
//! (statically and racing), look-alike /proc mounts, a hostile /dev/null or
//! /dev/console, inheritable capabilities, and hostile bundles.
//!
//! Each test asserts what can be observed from the host (a host file's
//! content and mode, host mounts, a host directory's entries, the runtime
//! binary's bytes) and from inside the container. Host directories that a
//! hole would reach are made shared mounts and the containers get
//! `rootfsPropagation: shared`, so that a mount landing on them inside the
//! container's mount namespace would show up in the host's mountinfo.

use crate::common::*;
use nix::mount::{MsFlags, mount};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Everything under `dir` (relative path → kind, mode, owner, content), to
/// prove a host directory or file was left alone.
pub(crate) fn snapshot(path: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(meta) = fs::symlink_metadata(p) else {
            return;
        };
        let rel = p.strip_prefix(base).unwrap().to_path_buf();
        let what = if meta.file_type().is_symlink() {
            format!("link {:?}", fs::read_link(p).ok())
        } else if meta.is_file() {
            format!("file {:?}", fs::read(p).ok())
        } else {
            "dir".to_string()
        };
        out.insert(
            rel,
            format!("{what} {:o} {}:{}", meta.mode(), meta.uid(), meta.gid()),
        );
        if meta.is_dir() {
            let mut entries: Vec<_> = fs::read_dir(p).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                walk(base, &e.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(path, path, &mut out);
    out
}

/// Host mount points at or under `dir`.
pub(crate) fn host_mounts_under(dir: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy().to_string();
    parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| mp == &prefix || mp.starts_with(&format!("{prefix}/")))
        .collect()
}

/// A host directory an escape would reach, bind-mounted onto itself and made
/// shared: a mount made on it (or under it) in a container's mount namespace
/// with `rootfsPropagation: shared` comes back to the host. The TempDir
/// detaches its mounts when dropped.
pub(crate) fn shared_host_dir(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    let p = d.path();
    mount(Some(p), p, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind onto itself");
    mount(
        None::<&str>,
        p,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .expect("make shared");
    d
}

/// Asserts that the shared host dir `d` holds nothing and carries no mount
/// but its own.
fn assert_untouched(d: &TempDir, what: &str) {
    let snap = snapshot(d.path());
    assert_eq!(
        snap.len(),
        1,
        "{what}: the host directory {} received entries: {snap:#?}",
        d.path().display()
    );
    let mounts = host_mounts_under(d.path());
    assert_eq!(
        mounts,
        vec![d.path().to_string_lossy().to_string()],
        "{what}: a mount reached the host directory"
    );
}

/// The same absolute path inside the rootfs (where an absolute symlink to
/// `host` resolves when confined to the rootfs).
fn in_rootfs(rootfs: &Path, host: &Path) -> PathBuf {
    rootfs.join(host.strip_prefix("/").unwrap())
}

/// A relative symlink target from `rootfs/<name>` that climbs far above the
/// rootfs and then descends to `host` (only "../"s clamp it to the rootfs).
fn climbing(host: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(24),
        host.strip_prefix("/").unwrap().display()
    )
}

/// Drops the default /dev mounts, so the image's own /dev is used.
fn without_dev_mounts(c: &mut Container) {
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
}

/// The container's output must be a clean success or a clean one-line error.
fn clean_outcome(out: &Out) -> bool {
    assert_no_panic(out);
    if !out.success() {
        assert!(
            is_runc() || out.stderr.trim().starts_with("corten: "),
            "unclean failure:\n{out}"
        );
    }
    out.success()
}

// ---------------------------------------------------------------------------
// 1. CVE-2019-5736: the runtime binary through /proc/<pid>/exe
// ---------------------------------------------------------------------------

/// The bytes of the runtime binary under test.
fn runtime_bytes() -> Vec<u8> {
    fs::read(runtime()).unwrap()
}

/// Opening the parked init's exe for writing fails, and so does reopening a
/// read-only fd of it for writing after the init is gone (the original
/// exploit's second step). The host binary is unchanged.
#[test]
fn cve_2019_5736_init_exe_cannot_be_written_from_the_host_side() {
    let before = runtime_bytes();
    let c = sleeper("exe-host");
    c.create_ok();
    let pid = c.state()["pid"].as_i64().unwrap();
    let exe = format!("/proc/{pid}/exe");
    let held = fs::File::open(&exe).unwrap_or_else(|e| panic!("open {exe}: {e}"));
    let direct = fs::OpenOptions::new().write(true).open(&exe);
    assert!(direct.is_err(), "{exe} could be opened for writing");

    c.rt(&["delete", "-f", &c.id]).ok();
    assert!(
        poll_until(STATE_TIMEOUT, || !Path::new(&format!("/proc/{pid}"))
            .exists()),
        "the init did not exit"
    );
    let reopen = format!("/proc/self/fd/{}", held.as_raw_fd());
    // O_APPEND: even a "successful" attempt must not truncate the binary.
    match fs::OpenOptions::new().append(true).open(&reopen) {
        Err(e) => assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::EROFS | libc::EPERM | libc::EACCES)
            ),
            "reopening the exe for writing failed for an unexpected reason: {e}"
        ),
        Ok(mut f) => {
            // A sealed memfd can be opened but not written.
            let w = f.write_all(b"EVIL").and_then(|_| f.flush());
            assert!(
                w.is_err(),
                "the runtime's exe was writable after the init exited"
            );
        }
    }
    assert!(runtime_bytes() == before, "the runtime binary changed");
}

/// The attack from inside: a container sharing the pid namespace of a second
/// container's parked init finds it, opens /proc/<pid>/exe, tries to write it
/// directly, waits for the init to go away and tries again through its fd.
#[test]
fn cve_2019_5736_init_exe_cannot_be_written_from_a_container() {
    let before = runtime_bytes();
    let out_dir = TempDir::new("exe-out");
    let mut victim = sleeper("exe-victim");
    let mut attacker = Container::new("exe-attacker");
    attacker.add_mount(bind("/out", out_dir.path(), &["bind", "rw"]));
    // The strongest attacker: allowed to look into other processes (without
    // CAP_SYS_PTRACE the kernel already refuses to open the exe).
    for set in ["bounding", "effective", "permitted"] {
        attacker.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_PTRACE"));
    }
    // Finds the victim's parked init by its id on its command line ("create
    // ... ID"). The pattern's last letter is bracketed so that the grep
    // processes' own command lines never match it.
    let (head, last) = victim.id.split_at(victim.id.len() - 1);
    let script = r#"log=/out/log
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] && continue
    grep -qs -- 'PATTERN' $d/cmdline && break 2
  done
  sleep 0.05
done
if command exec 3< /proc/$p/exe; then echo open-ro-ok >> $log; else echo open-ro-failed >> $log; fi
if (echo EVIL >> /proc/$p/exe) 2>> $log; then echo write-direct-ok >> $log; else echo write-direct-failed >> $log; fi
touch /out/found
while [ -d /proc/$p ]; do sleep 0.05; done
if (echo EVIL >> /proc/self/fd/3) 2>> $log; then echo write-fd-ok >> $log; else echo write-fd-failed >> $log; fi
touch /out/done
sleep 100"#
        .replace("PATTERN", &format!("{head}[{last}]"));
    attacker.sh(&script);
    attacker.create_ok();
    attacker.start_ok();
    let apid = attacker.state()["pid"].as_i64().unwrap();

    for ns in victim.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "pid" {
            ns["path"] = json!(format!("/proc/{apid}/ns/pid"));
        }
    }
    victim.create_ok();
    let found = poll_until(STATE_TIMEOUT, || out_dir.join("found").exists());
    victim.rt(&["delete", "-f", &victim.id]).ok();
    let log = || fs::read_to_string(out_dir.join("log")).unwrap_or_default();
    assert!(found, "the attacker never saw the init:\n{}", log());
    assert!(
        poll_until(STATE_TIMEOUT, || out_dir.join("done").exists()),
        "the attacker did not finish:\n{}",
        log()
    );
    let log = log();
    assert!(
        log.contains("open-ro-ok"),
        "the exe could not be opened at all:\n{log}"
    );
    assert!(
        log.contains("write-direct-failed") && log.contains("write-fd-failed"),
        "a write to the runtime's exe succeeded:\n{log}"
    );
    assert!(
        runtime_bytes() == before,
        "the runtime binary changed:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// 2. CVE-2024-21626: leaked fds and a cwd outside the rootfs
// ---------------------------------------------------------------------------

/// The init parked by `create` holds no directory (what a cwd of
/// /proc/self/fd/N would reach); the started process holds only 0-2
/// (process.rs checks that). Regular files the caller leaked to the runtime
/// without close-on-exec are held until the exec closes them.
#[test]
fn cve_2024_21626_parked_init_holds_no_directory() {
    let c = sleeper("fds-parked");
    c.create_ok();
    let pid = c.state()["pid"].as_i64().unwrap();
    let mut held = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if fs::metadata(e.path()).is_ok_and(|m| m.is_dir()) {
            held.push(format!(
                "{:?} -> {:?}",
                e.file_name(),
                fs::read_link(e.path())
            ));
        }
    }
    assert!(
        held.is_empty(),
        "the parked init holds directories {held:?}"
    );
}

/// process.cwd through /proc/self/fd/N: never a directory outside the rootfs,
/// not even one the caller passed with --preserve-fds.
#[test]
fn cve_2024_21626_cwd_through_proc_self_fd_is_refused() {
    let host = TempDir::new("cwd-host");
    for n in 3..=8 {
        let mut c = Container::new("cwd-fd");
        c.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        c.args(&["touch", "escaped"]);
        let out = c.run(&[]);
        assert_err(&out, &[&format!("/proc/self/fd/{n}")], &["cwd", "chdir"]);
        c.assert_no_leftovers();
    }
    let mut c = Container::new("cwd-preserved");
    c.set("/process/cwd", json!("/proc/self/fd/3"));
    c.args(&["touch", "escaped"]);
    c.write_config();
    let bundle = c.bundle_str();
    let out = rt_with_fd3(
        &c,
        &["run", "--preserve-fds", "1", "--bundle", &bundle, &c.id],
        host.path(),
        false,
    );
    assert_err(&out, &["/proc/self/fd/3"], &["cwd", "chdir"]);
    c.assert_no_leftovers();
    assert_eq!(
        snapshot(host.path()).len(),
        1,
        "a file was created on the host"
    );
}

// ---------------------------------------------------------------------------
// 3. CVE-2021-30465, CVE-2024-45310: mount destinations through symlinks
// ---------------------------------------------------------------------------

/// Absolute and climbing relative symlinks to a host directory, as mount
/// destinations: the mounts (and the directories made for them) land at the
/// symlink's target inside the rootfs; the host directory stays untouched.
#[test]
fn cve_2021_30465_mount_destination_symlinks_stay_in_the_rootfs() {
    let host = shared_host_dir("dest-host");
    let src = TempDir::new("dest-src");
    fs::write(src.join("from-src"), "src\n").unwrap();
    let mut c = Container::new("dest-symlink");
    let rootfs = c.rootfs();
    symlink(host.path(), rootfs.join("abs")).unwrap();
    symlink(climbing(host.path()), rootfs.join("rel")).unwrap();
    fs::create_dir_all(in_rootfs(&rootfs, host.path())).unwrap();
    c.set("/linux/rootfsPropagation", json!("shared"));
    c.add_mount(json!({
        "destination": "/abs/tmpfs", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]
    }));
    c.add_mount(bind("/rel/bind", src.path(), &["bind", "ro"]));
    let out = c.run_sh(
        "echo x > /abs/tmpfs/written; cat /rel/bind/from-src; (touch /rel/bind/new) 2>/dev/null; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    assert_eq!(s[""].trim(), "src", "{out}");
    let mounts = parse_mountinfo(&s["mountinfo"]);
    let h = host.path().to_string_lossy().to_string();
    let at = |sub: &str| {
        find_mount(&mounts, &format!("{h}/{sub}"))
            .unwrap_or_else(|| panic!("no mount at {h}/{sub} inside the container:\n{out}"))
    };
    assert_eq!(at("tmpfs").fstype, "tmpfs", "{out}");
    assert!(at("bind").mount_opts.iter().any(|o| o == "ro"), "{out}");
    assert!(in_rootfs(&rootfs, host.path()).join("bind").is_dir());
    assert_eq!(snapshot(src.path()).len(), 2, "the ro source was written");
    assert_untouched(&host, "symlinked mount destinations");
}

/// A destination through a symlink to a host directory that has no
/// counterpart in the rootfs: created inside the rootfs, or refused; never
/// created on the host.
#[test]
fn cve_2024_45310_dangling_destination_symlink_creates_nothing_on_the_host() {
    let host = shared_host_dir("dangle-host");
    let target = host.join("made-by-runtime");
    let mut c = Container::new("dest-dangling");
    symlink(&target, c.rootfs().join("dangling")).unwrap();
    c.set("/linux/rootfsPropagation", json!("shared"));
    c.add_mount(json!({
        "destination": "/dangling/sub", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]
    }));
    c.args(&["true"]);
    let out = c.run(&[]);
    if clean_outcome(&out) {
        assert!(in_rootfs(&c.rootfs(), &target).join("sub").is_dir());
    }
    c.assert_no_leftovers();
    assert_untouched(&host, "dangling destination symlink");
}

/// A thread swaps mount destinations between a directory and a symlink to a
/// host directory (absolute and climbing) in a tight loop while containers
/// sharing that rootfs are created, started and deleted. Whatever each
/// container's fate, the host directory never receives a file or a mount, and
/// a read-only volume is never writable.
#[test]
fn cve_2021_30465_racing_destination_symlinks_never_reach_the_host() {
    let host = shared_host_dir("race-host");
    let ro_src = TempDir::new("race-ro");
    let rootfs_dir = TempDir::new("race-rootfs");
    let rootfs = rootfs_dir.join("rootfs");
    make_rootfs(&rootfs);
    fs::create_dir_all(in_rootfs(&rootfs, host.path())).unwrap();
    for (name, link) in [
        ("abs", host.path().to_string_lossy().to_string()),
        ("rel", climbing(host.path())),
        // To the root: a swap after the mount must not move the "ro" of
        // /up/vol onto the tmpfs at /vol.
        ("up", "/".to_string()),
    ] {
        fs::create_dir(rootfs.join(name)).unwrap();
        symlink(&link, rootfs.join(format!("{name}-link"))).unwrap();
    }
    let file_src = rootfs_dir.join("file-src");
    fs::write(&file_src, "file\n").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let rootfs = rootfs.clone();
        std::thread::spawn(move || {
            let dir = fs::File::open(&rootfs).unwrap();
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for name in ["abs", "rel", "up"] {
                    let link = format!("{name}-link");
                    nix::fcntl::renameat2(
                        &dir,
                        name,
                        &dir,
                        link.as_str(),
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    )
                    .unwrap();
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let root = Arc::new(TempDir::new("race-root"));
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..20 {
        let mut c = Container::with_root("race", root.clone());
        c.set("/root/path", json!(rootfs.to_string_lossy()));
        c.set("/linux/rootfsPropagation", json!("shared"));
        c.add_mount(json!({
            "destination": "/vol", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]
        }));
        c.add_mount(json!({
            "destination": "/abs/a/b", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]
        }));
        c.add_mount(bind("/abs/f", &file_src, &["bind", "ro"]));
        c.add_mount(bind("/rel/d", ro_src.path(), &["bind", "ro"]));
        c.add_mount(bind("/up/vol", ro_src.path(), &["bind", "ro"]));
        c.sh("for d in /rel/d /up/vol /vol /abs /rel; do touch $d/escaped-$$ 2>/dev/null; done; true");
        let out = c.run(&[]);
        if clean_outcome(&out) {
            ok += 1;
        } else {
            failed += 1;
            eprintln!("race: refused: {}", out.stderr.trim());
        }
        drop(c);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("race: {ok} containers ran, {failed} refused, {swaps} swaps");
    assert_eq!(
        snapshot(ro_src.path()).len(),
        1,
        "a read-only volume was written"
    );
    assert_untouched(&host, "racing destination symlinks");
    assert!(
        host_mounts_under(rootfs_dir.path()).is_empty(),
        "mounts left under the shared rootfs"
    );
}

// ---------------------------------------------------------------------------
// 4. CVE-2019-16884, CVE-2019-19921, CVE-2023-27561: fake /proc and /sys
// ---------------------------------------------------------------------------

/// /proc or /sys of the image as a symlink (into the rootfs or climbing out
/// of it): the proc/sysfs mount is refused, never made through the link.
#[test]
fn cve_2019_16884_proc_or_sys_symlink_is_refused() {
    let host = shared_host_dir("procsym-host");
    for dir in ["proc", "sys"] {
        // Into the rootfs, climbing out of it, and dangling.
        for link in ["/tmp".to_string(), climbing(host.path()), "/nowhere".into()] {
            let mut c = sleeper("procsym");
            let rootfs = c.rootfs();
            fs::remove_dir(rootfs.join(dir)).unwrap();
            symlink(&link, rootfs.join(dir)).unwrap();
            fs::create_dir_all(in_rootfs(&rootfs, host.path())).unwrap();
            c.set("/linux/rootfsPropagation", json!("shared"));
            let before = snapshot(&rootfs.join("tmp"));
            let out = c.create();
            assert_err(
                &out,
                &[&format!("/{dir}"), "must be mounted on ordinary directory"],
                &["symlink", "must be mounted on"],
            );
            c.assert_no_leftovers();
            assert_eq!(
                snapshot(&rootfs.join("tmp")),
                before,
                "something was created through /{dir} -> {link}"
            );
        }
    }
    assert_untouched(&host, "/proc or /sys symlink");
}

/// Something other than procfs at /proc (a tmpfs, a bind of a directory) is
/// refused: the runtime's writes to /proc/self/... must reach the kernel.
#[test]
fn cve_2019_19921_non_procfs_at_proc_is_refused() {
    let fake = TempDir::new("fakeproc");
    fs::create_dir(fake.join("self")).unwrap();
    fs::write(fake.join("self/oom_score_adj"), "fake\n").unwrap();
    let before = snapshot(fake.path());
    let tmpfs = json!({ "destination": "/proc", "type": "tmpfs", "source": "tmpfs" });
    for m in [tmpfs, bind("/proc", fake.path(), &["rbind"])] {
        let mut c = sleeper("fakeproc");
        c.set("/process/oomScoreAdj", json!(100));
        let mounts = c.config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/proc");
        mounts.insert(0, m);
        let out = c.create();
        assert_err(&out, &["/proc", "not a procfs"], &["not of type proc"]);
        c.assert_no_leftovers();
    }
    assert_eq!(snapshot(fake.path()), before, "the fake /proc was written");
}

/// A bind mount into /proc, directly or through an image symlink into it
/// (the shape of CVE-2019-19921 / CVE-2023-27561: a file mounted over
/// /proc/self/... so the runtime's procfs write lands in it), is refused;
/// the lxcfs files remain mountable, as with runc.
#[test]
fn cve_2023_27561_mounts_inside_proc_are_refused() {
    let files = TempDir::new("inproc");
    let f = files.join("fake");
    fs::write(&f, "0\n").unwrap();
    let before = snapshot(files.path());
    for (link, dest) in [
        (None, "/proc/self/oom_score_adj"),
        (None, "/proc/sys/kernel/core_pattern"),
        (Some("/proc/self"), "/evil/oom_score_adj"),
        (Some("../proc/sys/net"), "/evil/ipv4/ip_forward"),
    ] {
        let mut c = sleeper("inproc");
        c.set("/process/oomScoreAdj", json!(100));
        c.set("/linux/sysctl", json!({ "net.ipv4.ip_forward": "1" }));
        if let Some(link) = link {
            symlink(link, c.rootfs().join("evil")).unwrap();
        }
        c.add_mount(bind(dest, &f, &["bind"]));
        let out = c.create();
        assert_err(&out, &["inside /proc"], &["inside /proc"]);
        c.assert_no_leftovers();
    }
    assert_eq!(
        snapshot(files.path()),
        before,
        "the bind source was written"
    );

    let mut c = Container::new("lxcfs");
    fs::write(&f, "4242.00 1.00\n").unwrap();
    c.add_mount(bind("/proc/uptime", &f, &["bind", "ro"]));
    assert_eq!(c.run_sh("cat /proc/uptime").trim(), "4242.00 1.00");
}

// ---------------------------------------------------------------------------
// 5. CVE-2025-31133, CVE-2025-52565: hostile /dev/null and /dev/console
// ---------------------------------------------------------------------------

/// A host file that a hole would clobber, with distinctive content and mode.
pub(crate) fn sentinel(dir: &TempDir, name: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, format!("sentinel {name}\n")).unwrap();
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    p
}

/// A masked file the host's kernel gives content (so masking is observable).
fn masked_file_with_content() -> &'static str {
    ["/proc/timer_list", "/proc/keys", "/proc/sched_debug"]
        .into_iter()
        .find(|f| fs::read(f).map(|b| !b.is_empty()).unwrap_or(false))
        .expect("no masked /proc file has content on this host")
}

/// /dev bind-mounted from a host directory whose `null` is a symlink to a
/// host file, or a regular file: masking never mounts it (or what it points
/// to) over the masked paths, and never writes it.
#[test]
fn cve_2025_31133_masking_ignores_a_hostile_dev_null() {
    let files = TempDir::new("null-host");
    let secret = sentinel(&files, "secret");
    let masked = masked_file_with_content();
    for kind in ["symlink", "file"] {
        let dev = TempDir::new("null-dev");
        match kind {
            "symlink" => symlink(&secret, dev.join("null")).unwrap(),
            _ => fs::write(dev.join("null"), "not the null device\n").unwrap(),
        }
        let before = (snapshot(files.path()), snapshot(dev.path()));
        let mut c = Container::new("null");
        without_dev_mounts(&mut c);
        c.add_mount(bind("/dev", dev.path(), &["bind"]));
        fs::write(c.rootfs().join("etc/private"), "private\n").unwrap();
        c.config["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/etc/private"));
        let out = c.run_sh(&format!(
            "wc -c < {masked}; wc -c < /etc/private; echo @@mountinfo; cat /proc/self/mountinfo"
        ));
        let s = sections(&out);
        let sizes: Vec<&str> = s[""].split_whitespace().collect();
        assert_eq!(
            sizes,
            ["0", "0"],
            "{kind}: masked paths are readable:\n{out}"
        );
        for p in [masked, "/etc/private"] {
            let m = find_mount(&parse_mountinfo(&s["mountinfo"]), p)
                .unwrap_or_else(|| panic!("{p} is not masked:\n{out}"));
            assert_eq!(m.fstype, "devtmpfs", "{kind}: {p} masked with {m:?}");
        }
        assert_eq!(
            (snapshot(files.path()), snapshot(dev.path())),
            before,
            "{kind}: host files changed"
        );
        assert_eq!(
            fs::read_to_string(c.rootfs().join("etc/private")).unwrap(),
            "private\n"
        );
    }
}

/// The image's /dev (no /dev tmpfs) with /dev/null, /dev/console, /dev/ptmx
/// and /dev/tty symlinks to host files and /dev/fd to a host directory:
/// devices are made in the rootfs, the host files keep content and mode and
/// get no mount.
#[test]
fn cve_2025_52565_image_dev_symlinks_are_not_followed() {
    let files = shared_host_dir("console-host");
    let mut c = Container::new("console");
    without_dev_mounts(&mut c);
    c.set("/linux/rootfsPropagation", json!("shared"));
    let dev = c.rootfs().join("dev");
    for name in ["null", "console", "ptmx", "tty", "zero"] {
        symlink(sentinel(&files, name), dev.join(name)).unwrap();
    }
    symlink(files.path(), dev.join("fd")).unwrap();
    let before = snapshot(files.path());
    let out = c.run_sh(
        "stat -c '%n|%F|%t:%T' /dev/null /dev/zero /dev/tty; echo x > /dev/null; \
         echo @@mountinfo; cat /proc/self/mountinfo",
    );
    let s = sections(&out);
    let cs = "character special file";
    let want = [
        format!("/dev/null|{cs}|1:3"),
        format!("/dev/zero|{cs}|1:5"),
        format!("/dev/tty|{cs}|5:0"),
    ];
    assert_eq!(s[""].lines().collect::<Vec<_>>(), want, "{out}");
    assert!(
        find_mount(&parse_mountinfo(&s["mountinfo"]), "/dev/console").is_none(),
        "{out}"
    );
    assert_eq!(snapshot(files.path()), before, "host files changed");
    assert_eq!(
        host_mounts_under(files.path()),
        vec![files.path().to_string_lossy().to_string()]
    );
}

// ---------------------------------------------------------------------------
// 6. /dev as a symlink in the image
// ---------------------------------------------------------------------------

/// The image's /dev is an absolute or climbing symlink to a host directory
/// (with and without a /dev tmpfs in the config): the /dev mounts, device
/// nodes and /dev symlinks all land at the link's target inside the rootfs.
#[test]
fn dev_symlink_in_the_image_stays_in_the_rootfs() {
    let host = shared_host_dir("devlink-host");
    for absolute in [true, false] {
        for tmpfs in [true, false] {
            let what = format!("absolute={absolute} tmpfs={tmpfs}");
            let mut c = Container::new("devlink");
            let rootfs = c.rootfs();
            fs::remove_dir(rootfs.join("dev")).unwrap();
            let link = if absolute {
                host.path().to_string_lossy().to_string()
            } else {
                climbing(host.path())
            };
            symlink(&link, rootfs.join("dev")).unwrap();
            let inside = in_rootfs(&rootfs, host.path());
            fs::create_dir_all(&inside).unwrap();
            if !tmpfs {
                without_dev_mounts(&mut c);
            }
            c.set("/linux/rootfsPropagation", json!("shared"));
            c.set("/linux/devices", json!([{
                "path": "/dev/extra/mydev", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666
            }]));
            let out = c.run_sh(
                "stat -L -c '%n|%t:%T' /dev/null /dev/extra/mydev; readlink /dev/ptmx; readlink /dev/fd",
            );
            let want = [
                "/dev/null|1:3",
                "/dev/extra/mydev|1:7",
                "pts/ptmx",
                "/proc/self/fd",
            ];
            assert_eq!(out.lines().collect::<Vec<_>>(), want, "{what}:\n{out}");
            if !tmpfs {
                assert!(
                    inside.join("null").exists(),
                    "{what}: /dev/null not in the rootfs"
                );
            }
            c.assert_no_leftovers();
            assert_untouched(&host, &what);
        }
    }
}

// ---------------------------------------------------------------------------
// 7. CVE-2022-29162: inheritable capabilities
// ---------------------------------------------------------------------------

/// With the runtime's own `spec` (and the suite's base config, see
/// process.rs), the inheritable and ambient sets are empty; they hold only
/// what the config lists.
#[test]
fn cve_2022_29162_inheritable_capabilities_only_when_asked() {
    let mut c = Container::new("capinh");
    let dir = TempDir::new("spec");
    c.rt(&["spec", "--bundle", &dir.path().to_string_lossy()])
        .ok();
    let spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    c.set(
        "/process/capabilities",
        spec["process"]["capabilities"].clone(),
    );
    let out = c.run_sh("grep Cap /proc/$$/status");
    assert_eq!(
        status_field(&out, "CapInh").as_deref(),
        Some("0000000000000000"),
        "{out}"
    );
    assert_eq!(
        status_field(&out, "CapAmb").as_deref(),
        Some("0000000000000000"),
        "{out}"
    );

    c.set("/process/capabilities/inheritable", json!(["CAP_KILL"]));
    let out = c.run_sh("grep Cap /proc/$$/status");
    let inh = u64::from_str_radix(&status_field(&out, "CapInh").unwrap(), 16).unwrap();
    assert_eq!(inh, cap_mask(&["CAP_KILL"]), "{out}");
}

// ---------------------------------------------------------------------------
// 8. Hostile bundles
// ---------------------------------------------------------------------------

/// root.path being the host's / (directly, or through a symlink in the
/// bundle) is refused before anything is made.
#[test]
fn root_path_resolving_to_host_root_is_refused() {
    for root in ["/", "hostroot", "hostroot/"] {
        let mut c = sleeper("rootslash");
        let _ = symlink("/", c.bundle().join("hostroot"));
        c.set("/root/path", json!(root));
        let out = c.create();
        assert_err(&out, &["root.path", "/"], &["rootfs", "root"]);
        c.assert_no_leftovers();
    }
}

/// Destinations with ".." stay in the rootfs (clamped at its root); sources
/// are host paths, ".." included, and relative ones are relative to the
/// bundle.
#[test]
fn dotdot_in_mount_destinations_and_sources() {
    let host = shared_host_dir("dotdot-host");
    let mut c = Container::new("dotdot");
    let bundle = c.bundle().to_path_buf();
    fs::create_dir(bundle.join("data")).unwrap();
    fs::write(bundle.join("data/file"), "bundle-data\n").unwrap();
    let h = host.path().to_string_lossy().to_string();
    let up = "/..".repeat(24);
    c.set("/linux/rootfsPropagation", json!("shared"));
    c.add_mount(json!({
        "destination": format!("{up}{h}/tmpfs"), "type": "tmpfs", "source": "tmpfs"
    }));
    c.add_mount(json!({
        "destination": "/rel", "type": "bind", "source": "data", "options": ["bind", "ro"]
    }));
    let dotted = format!("{}/../{}/data", bundle.display(), c.bundle_name());
    c.add_mount(bind("/dotted", Path::new(&dotted), &["bind", "ro"]));
    let out = c.run_sh(&format!(
        "cat /rel/file /dotted/file; touch {h}/tmpfs/x && echo written; \
         echo @@mountinfo; cat /proc/self/mountinfo"
    ));
    let s = sections(&out);
    assert_eq!(s[""], "bundle-data\nbundle-data\nwritten\n", "{out}");
    let m = find_mount(&parse_mountinfo(&s["mountinfo"]), &format!("{h}/tmpfs"))
        .unwrap_or_else(|| panic!("the tmpfs is not at {h}/tmpfs in the container:\n{out}"));
    assert_eq!(m.fstype, "tmpfs");
    assert!(in_rootfs(&c.rootfs(), host.path()).join("tmpfs").is_dir());
    assert_untouched(&host, "destination with ..");
}

/// CVE-2024-21626's class while parked: an fd the caller of `create` leaked (not
/// close-on-exec, not preserved) is not held by the container's init in `created`.
#[test]
fn parked_init_holds_no_leaked_caller_fd() {
    let dir = TempDir::new("leak");
    let file = crate::spec_fields::fd_file(&dir);
    let c = sleeper("parked-leak");
    c.write_config();
    let bundle = c.bundle_str();
    crate::common::rt_with_fd3(&c, &["create", "--bundle", &bundle, &c.id], &file, false).ok();
    let pid = c.state()["pid"].as_i64().unwrap();
    let held: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        !held.iter().any(|p| p == &file.display().to_string()),
        "the parked init holds the leaked fd: {held:?}"
    );
}
