//! corten-image against a real registry (Debian's docker-registry on loopback): layers,
//! whiteouts and links, platforms, token auth, hostile layers, tampering, the store
//! commands, the offline sources, and the pulled bundle running under corten.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::common::TempDir;
use crate::image_support::*;

fn main_image() -> Image {
    let mut l1 = base_entries();
    l1.extend([
        E::Dir("del/", 0o755),
        E::File("del/file", "to delete", 0o644),
        E::File("del/keep", "kept", 0o644),
        E::Dir("deldir/", 0o755),
        E::File("deldir/a", "a", 0o644),
        E::Dir("opq/", 0o755),
        E::File("opq/old", "old", 0o644),
        E::Dir("opq/sub/", 0o755),
        E::File("opq/sub/old2", "old2", 0o644),
        E::File("flip", "a file first", 0o644),
        E::Dir("d2f/", 0o755),
        E::File("d2f/x", "x", 0o644),
        E::File("links/orig", "original", 0o644),
    ]);
    let l2 = vec![
        E::File("del/.wh.file", "", 0o644),
        E::File(".wh.deldir", "", 0o644),
        E::Dir("opq/", 0o755),
        E::File("opq/new", "new in the opaque layer", 0o644),
        E::File("opq/.wh..wh..opq", "", 0o644),
        E::Dir("flip/", 0o755),
        E::File("flip/inner", "now a dir", 0o644),
        E::File("d2f", "dir became file", 0o644),
        E::FileX("usr/bin/suid", "setuid", 0o4755, 0, 0, vec![]),
        E::FileX("usr/bin/sgid", "setgid", 0o2750, 1000, 2000, vec![]),
        E::FileX(
            "xattr",
            "has xattrs",
            0o644,
            0,
            0,
            vec![("user.corten", "hello")],
        ),
        E::Hardlink("links/hard", "links/orig"),
        E::Symlink("links/abs", "/etc/passwd"),
        E::Symlink("links/rel", "../etc/passwd"),
        E::Fifo("fifo"),
    ];
    let l3 = vec![
        E::File("flip", "a file again", 0o600),
        E::Dir("app/", 0o755),
        E::File("app/data.txt", "from the zstd layer", 0o644),
        E::Hardlink("links/bb", "bin/busybox"),
    ];
    let l4 = vec![
        E::Dir("work/", 0o755),
        E::File("work/plain.txt", "plain tar", 0o644),
    ];
    image(
        vec![
            (l1, Comp::Gzip),
            (l2, Comp::Gzip),
            (l3, Comp::Zstd),
            (l4, Comp::Plain),
        ],
        json!({
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo default-cmd"],
            "Env": ["PATH=/usr/bin:/bin", "GREETING=hello world"],
            "WorkingDir": "/work",
            "User": "app",
            "Labels": {"org.opencontainers.image.os": "label-wins", "maintainer": "corten"},
            "StopSignal": "SIGQUIT",
            "ExposedPorts": {"80/tcp": {}},
        }),
        "amd64",
        None,
    )
}

fn lgetxattr(p: &Path, name: &str) -> Option<String> {
    let cp = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let cn = CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: cp and cn are NUL-terminated C strings and buf a live buffer of buf.len()
    // bytes, all borrowed for the call only.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

fn pull_cmd(args: &[&str]) -> crate::common::Out {
    let mut a = vec!["pull"];
    a.extend_from_slice(args);
    image_cmd(&a, &[])
}

fn pull_ok(args: &[&str]) -> Value {
    let mut a = vec!["pull", "--json"];
    a.extend_from_slice(args);
    let out = image_cmd(&a, &[]);
    out.ok();
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("--json output ({e}):\n{out}"))
}

/// The rootfs of `main_image`, seen from the host: whiteouts, opaque directories, type
/// changes, setuid/setgid, ownership, xattrs, hard and symbolic links, a fifo, modes and
/// mtimes. The same checks hold for a copied rootfs and an overlay one.
fn check_rootfs(rf: &Path) {
    assert!(!rf.join("del/file").exists(), "whiteout removed del/file");
    assert_eq!(read(&rf.join("del/keep")), "kept");
    assert!(
        !rf.join("deldir").exists(),
        "whiteout removed the directory"
    );
    assert!(
        !rf.join("opq/old").exists() && !rf.join("opq/sub").exists(),
        "opaque dir hides lower entries"
    );
    assert_eq!(
        read(&rf.join("opq/new")),
        "new in the opaque layer",
        "opaque keeps its own layer's entries"
    );
    assert!(rf.join("flip").is_file(), "file → dir → file");
    assert_eq!(read(&rf.join("flip")), "a file again");
    assert_eq!(
        fs::metadata(rf.join("flip")).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(read(&rf.join("d2f")), "dir became file");
    let suid = fs::metadata(rf.join("usr/bin/suid")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    let sgid = fs::metadata(rf.join("usr/bin/sgid")).unwrap();
    assert_eq!(sgid.permissions().mode() & 0o7777, 0o2750, "setgid kept");
    assert_eq!((sgid.uid(), sgid.gid()), (1000, 2000), "ownership");
    assert_eq!(
        lgetxattr(&rf.join("xattr"), "user.corten").as_deref(),
        Some("hello")
    );
    let orig = fs::metadata(rf.join("links/orig")).unwrap();
    let hard = fs::metadata(rf.join("links/hard")).unwrap();
    assert_eq!(orig.ino(), hard.ino(), "hardlink in the same layer");
    assert_eq!(
        fs::metadata(rf.join("links/bb")).unwrap().ino(),
        fs::metadata(rf.join("bin/busybox")).unwrap().ino(),
        "hardlink to a lower layer's file"
    );
    assert_eq!(
        fs::read_link(rf.join("links/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(rf.join("links/rel")).unwrap(),
        Path::new("../etc/passwd")
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(rf.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        fs::metadata(rf.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(rf.join("work/plain.txt")).unwrap().mtime(),
        1_700_000_000
    );
}

#[test]
fn image_pull_layers_store_and_run() {
    let reg = Registry::start();
    let tmp = TempDir::new("img");
    let img = main_image();
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", "test/main", false, None);
    let store = tmp.join("store");
    let store_s = store.to_str().unwrap();
    let r = format!("{}/test/main:v1", reg.host());
    let bundle = tmp.join("bundle");
    let script = "id; pwd; echo \"G=$GREETING\"; echo \"H=$HOME\"; cat /app/data.txt; echo; cat /work/plain.txt";
    let summary = pull_ok(&[
        "--copy",
        "--store",
        store_s,
        &r,
        bundle.to_str().unwrap(),
        "--",
        script,
    ]);
    assert_eq!(summary["rootfs"], "copy");
    assert_eq!(summary["ref"], r);
    // skopeo may re-serialize the manifest: its digest is the registry's.
    let digest = summary["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{summary}");
    assert_eq!(summary["platform"], "linux/amd64");
    assert_eq!(summary["layers"], 4);
    assert!(summary["bytes"].as_u64().unwrap() > 0);

    let rf = bundle.join("rootfs");
    check_rootfs(&rf);

    // config.json from the image config.
    let cfg: Value = serde_json::from_str(&read(&bundle.join("config.json"))).unwrap();
    let p = &cfg["process"];
    assert_eq!(p["args"], json!(["/bin/sh", "-c", script]));
    assert_eq!(p["cwd"], "/work");
    assert_eq!(
        p["user"],
        json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]})
    );
    assert_eq!(p["terminal"], false);
    let env: Vec<&str> = p["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"PATH=/usr/bin:/bin") && env.contains(&"GREETING=hello world"),
        "{env:?}"
    );
    assert!(env.contains(&"HOME=/home/app"), "{env:?}");
    let ann = &cfg["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.os"], "label-wins",
        "labels win"
    );
    assert_eq!(ann["org.opencontainers.image.stopSignal"], "SIGQUIT");
    assert_eq!(ann["org.opencontainers.image.exposedPorts"], "80/tcp");
    assert_eq!(ann["maintainer"], "corten");
    assert!(
        cfg["linux"]["namespaces"].as_array().unwrap().len() >= 5,
        "the default spec's namespaces"
    );

    // The container sees the image's user, cwd, env and files.
    let out = run_bundle(&bundle);
    assert!(out.contains("uid=1000(app) gid=1000(app)"), "{out}");
    assert!(out.contains("2000(extra)"), "{out}");
    assert!(out.contains("\n/work\n"), "{out}");
    assert!(
        out.contains("G=hello world") && out.contains("H=/home/app"),
        "{out}"
    );
    assert!(
        out.contains("from the zstd layer") && out.contains("plain tar"),
        "{out}"
    );

    // With --copy, the store keeps each layer uncompressed under its diff_id; a second pull applies those
    // copies: it downloads nothing and needs no compressed layer (removed here to show
    // it). The default Cmd is used without `--`.
    let cfg: Value = serde_json::from_slice(&img.config.data).unwrap();
    let diff_ids: Vec<&str> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let blob = |d: &str| store.join("blobs/sha256").join(&d[7..]);
    for d in &diff_ids {
        assert!(blob(d).is_file(), "unpacked layer {d} cached");
    }
    // The layers as the registry serves them (skopeo may have rewritten some).
    let manifest: Value = serde_json::from_slice(&fs::read(blob(&digest)).unwrap()).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        if !diff_ids.contains(&d) {
            fs::remove_file(blob(d)).unwrap();
        }
    }
    let b2 = tmp.join("bundle2");
    let s2 = pull_ok(&["--copy", "--store", store_s, &r, b2.to_str().unwrap()]);
    assert_eq!(s2["bytes"], 0, "warm store: nothing downloaded: {s2}");
    assert!(run_bundle(&b2).contains("default-cmd"));
    for f in ["app/data.txt", "work/plain.txt", "etc/passwd"] {
        assert_eq!(read(&rf.join(f)), read(&b2.join("rootfs").join(f)), "{f}");
    }

    // A non-empty bundle is refused without --force.
    let out = pull_cmd(&["--copy", "--store", store_s, &r, b2.to_str().unwrap()]);
    assert_image_err(&out, &["not empty", "--force"]);
    pull_cmd(&[
        "--copy",
        "--force",
        "--store",
        store_s,
        &r,
        b2.to_str().unwrap(),
    ])
    .ok();

    // images / inspect / rm / prune.
    let out = image_cmd(&["images", "--store", store_s], &[]);
    out.ok();
    assert!(
        out.stdout.contains(&r) && out.stdout.contains(&digest),
        "{out}"
    );
    assert!(out.stdout.contains("UNPACKED"), "{out}");
    // The uncompressed size: the layer tars the store holds.
    let out = image_cmd(&["images", "--json", "--store", store_s], &[]);
    out.ok();
    let rows: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let tars: u64 = diff_ids
        .iter()
        .map(|d| fs::metadata(blob(d)).unwrap().len())
        .sum();
    assert_eq!(rows[0]["unpacked"], tars, "{rows}");
    let out = image_cmd(&["inspect", "--store", store_s, &r], &[]);
    out.ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["platform"], "linux/amd64");
    assert_eq!(v["config"]["config"]["User"], "app");
    assert_eq!(v["manifest"]["layers"].as_array().unwrap().len(), 4);
    let blobs = || fs::read_dir(store.join("blobs/sha256")).unwrap().count();
    // The compressed layers removed above stay gone: the unpacked copies served the
    // --force pull too.
    let mut held = diff_ids.clone();
    held.sort();
    held.dedup();
    assert_eq!(
        blobs(),
        2 + held.len(),
        "manifest, config, layers: {held:?}"
    );
    fs::write(store.join("blobs/sha256").join("0".repeat(64)), "orphan").unwrap();
    image_cmd(&["prune", "--store", store_s], &[]).ok();
    assert_eq!(
        blobs(),
        2 + held.len(),
        "prune removes only the orphan, keeps the unpacked layers"
    );
    image_cmd(&["rm", "--store", store_s, &r], &[]).ok();
    assert_eq!(blobs(), 0, "rm removes the image's blobs");
    assert_image_err(
        &image_cmd(&["rm", "--store", store_s, &r], &[]),
        &["not in the store"],
    );
}

/// The entries of the tree `rf` with what a rootfs's user sees of each: type, mode,
/// owner, size, mtime (not for directories: removing an entry sets theirs), link target
/// or content, and the `user.corten` xattr; sorted by path.
fn tree(rf: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                sha256_hex(&fs::read(&p).unwrap())
            } else {
                String::new()
            };
            let mtime = if m.is_dir() { 0 } else { m.mtime() };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.push(format!(
                "{rel} mode={:o} {}:{} size={} mtime={mtime} {what} x={:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                if m.is_dir() { 0 } else { m.len() },
                lgetxattr(&p, "user.corten"),
            ));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(rf, rf, &mut out);
    out.sort();
    out
}

/// Whether an overlay is mounted at `p` (in the host's mount namespace).
fn overlay_mounted(p: &Path) -> bool {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    crate::common::parse_mountinfo(&text)
        .iter()
        .any(|m| Path::new(&m.mount_point) == p && m.fstype == "overlay")
}

/// Overlay bundles: the layers unpacked once in the store, the rootfs an overlay whose
/// content is the copied rootfs's, writes private to each bundle, prune keeping what live
/// bundles use, umount/mount, rm-bundle.
#[test]
fn image_overlay_bundles() {
    if !nix::unistd::geteuid().is_root() {
        crate::common::skip!("overlay bundles need root");
    }
    let reg = Registry::start();
    let tmp = TempDir::new("imgov");
    let img = main_image();
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", "test/overlay", false, None);
    let store = tmp.join("store");
    let store_s = store.to_str().unwrap();
    let r = format!("{}/test/overlay:v1", reg.host());
    let (ov, ov2, cp) = (tmp.join("ov"), tmp.join("ov2"), tmp.join("cp"));
    let script = "cat /app/data.txt; echo; cat /work/plain.txt";
    let s = pull_ok(&["--store", store_s, &r, ov.to_str().unwrap(), "--", script]);
    assert_eq!(s["rootfs"], "overlay", "{s}");
    assert!(overlay_mounted(&ov.join("rootfs")));
    check_rootfs(&ov.join("rootfs"));
    pull_ok(&["--copy", "--store", store_s, &r, cp.to_str().unwrap()]);
    check_rootfs(&cp.join("rootfs"));
    assert_eq!(
        tree(&ov.join("rootfs")),
        tree(&cp.join("rootfs")),
        "the overlay shows what the copy holds"
    );
    let layer_dirs = || fs::read_dir(store.join("layers")).unwrap().count();
    assert_eq!(layer_dirs(), 4, "each layer unpacked once");
    let out = run_bundle(&ov);
    assert!(
        out.contains("from the zstd layer") && out.contains("plain tar"),
        "{out}"
    );

    // A second bundle: nothing downloaded or unpacked, its writes its own.
    let s2 = pull_ok(&["--store", store_s, &r, ov2.to_str().unwrap()]);
    assert_eq!(s2["bytes"], 0, "{s2}");
    assert_eq!(layer_dirs(), 4, "the layers are shared");
    fs::write(ov.join("rootfs/app/data.txt"), "changed in ov").unwrap();
    fs::write(ov.join("rootfs/new.txt"), "new in ov").unwrap();
    assert_eq!(
        read(&ov2.join("rootfs/app/data.txt")),
        "from the zstd layer"
    );
    assert!(!ov2.join("rootfs/new.txt").exists());
    assert!(
        ov.join(".overlay/upper/new.txt").is_file(),
        "written to ov's upper"
    );

    // With the image removed, prune keeps what the live bundles use.
    image_cmd(&["rm", "--store", store_s, &r], &[]).ok();
    image_cmd(&["prune", "--store", store_s], &[]).ok();
    assert_eq!(layer_dirs(), 4, "prune keeps the bundles' layers");
    assert!(run_bundle(&ov2).contains("default-cmd"));

    // umount / mount: the bundle's writes survive.
    image_cmd(&["umount", ov.to_str().unwrap()], &[]).ok();
    assert!(!overlay_mounted(&ov.join("rootfs")));
    assert!(
        !ov.join("rootfs/app").exists(),
        "unmounted: an empty directory"
    );
    image_cmd(&["mount", ov.to_str().unwrap()], &[]).ok();
    assert!(overlay_mounted(&ov.join("rootfs")));
    assert_eq!(read(&ov.join("rootfs/app/data.txt")), "changed in ov");
    let out = image_cmd(&["mount", ov.to_str().unwrap()], &[]);
    out.ok();
    assert!(out.stdout.contains("already mounted"), "{out}");
    assert_image_err(
        &image_cmd(&["mount", cp.to_str().unwrap()], &[]),
        &["not an overlay bundle"],
    );

    // --force replaces an overlay bundle: one fresh mount, the old upper gone.
    fs::write(ov2.join("rootfs/scratch"), "old").unwrap();
    image_cmd(
        &[
            "pull",
            "-q",
            "--force",
            "--store",
            store_s,
            &r,
            ov2.to_str().unwrap(),
        ],
        &[],
    )
    .ok();
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = crate::common::parse_mountinfo(&text);
    let on = |p: &Path| {
        mounts
            .iter()
            .filter(|m| Path::new(&m.mount_point) == p)
            .count()
    };
    assert_eq!(on(&ov2.join("rootfs")), 1, "one mount");
    assert!(!ov2.join("rootfs/scratch").exists());

    // rm-bundle leaves nothing: no mount, no directory, no reference; then prune frees
    // the layers.
    for b in [&ov, &ov2, &cp] {
        image_cmd(&["rm-bundle", b.to_str().unwrap()], &[]).ok();
        assert!(!b.exists(), "{} removed", b.display());
        assert!(!overlay_mounted(&b.join("rootfs")));
    }
    assert_eq!(fs::read_dir(store.join("bundles")).unwrap().count(), 0);
    // (the --force pull recorded the image again)
    image_cmd(&["rm", "--store", store_s, &r], &[]).ok();
    image_cmd(&["prune", "--store", store_s], &[]).ok();
    assert_eq!(layer_dirs(), 0, "prune removes the layers no bundle uses");
    assert_eq!(fs::read_dir(store.join("blobs/sha256")).unwrap().count(), 0);
    assert_image_err(
        &image_cmd(&["rm-bundle", ov.to_str().unwrap()], &[]),
        &["not a bundle"],
    );
}

/// An image of 70 layers (more than one mount(2) option page holds: the overlay is made
/// with fsconfig's lowerdir+), pulled by two pulls at once: both bundles hold every layer,
/// each unpacked once. Unprivileged (or root of a user namespace), a pull says it copies
/// and makes a plain rootfs.
#[test]
fn image_overlay_many_layers_concurrent_pulls_and_unprivileged() {
    if !nix::unistd::geteuid().is_root() {
        crate::common::skip!("overlay bundles need root");
    }
    let reg = Registry::start();
    let tmp = TempDir::new("imgmany");
    let layers: Vec<(Vec<E>, Comp)> = (0..70)
        .map(|i| {
            let name: &'static str = Box::leak(format!("f{i}").into_boxed_str());
            (vec![E::File(name, "x", 0o644)], Comp::Gzip)
        })
        .collect();
    let img = image(layers, json!({"Cmd": ["true"]}), "amd64", None);
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", "test/many", false, None);
    let store = tmp.join("store");
    let r = format!("{}/test/many:v1", reg.host());
    let bundles = [tmp.join("b1"), tmp.join("b2")];
    let outs: Vec<crate::common::Out> = std::thread::scope(|s| {
        let hs: Vec<_> = bundles
            .iter()
            .map(|b| {
                let (store, r) = (&store, &r);
                s.spawn(move || {
                    let args = [
                        "pull",
                        "-q",
                        "--store",
                        store.to_str().unwrap(),
                        r,
                        b.to_str().unwrap(),
                    ];
                    image_cmd(&args, &[])
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (b, out) in bundles.iter().zip(&outs) {
        out.ok();
        assert!(overlay_mounted(&b.join("rootfs")), "{}", b.display());
        for i in [0, 35, 69] {
            assert_eq!(read(&b.join(format!("rootfs/f{i}"))), "x");
        }
    }
    assert_eq!(fs::read_dir(store.join("layers")).unwrap().count(), 70);

    // Not root: a copy, with one line saying so.
    let home = tmp.join("nobody");
    fs::create_dir(&home).unwrap();
    nix::unistd::chown(&home, Some(65534.into()), Some(65534.into())).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(image_bin())
        .args(["pull", "--store"])
        .arg(home.join("store"))
        .arg(format!("oci:{}:v1", tmp.join("layout").display()))
        .arg(home.join("b"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("--copy")).count(),
        1,
        "one line says why it copies: {err}"
    );
    assert!(err.contains("overlay bundles need root"), "{err}");
    assert!(!overlay_mounted(&home.join("b/rootfs")));
    assert_eq!(read(&home.join("b/rootfs/f69")), "x");

    // Root of a user namespace can't set the layers' trusted xattrs: a copy too.
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--"])
        .arg(image_bin())
        .args(["pull", "--store"])
        .arg(tmp.join("userns-store"))
        .arg(format!("oci:{}:v1", tmp.join("layout").display()))
        .arg(tmp.join("b-userns"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("outside a user namespace") && err.contains("--copy"),
        "{err}"
    );
    assert_eq!(read(&tmp.join("b-userns/rootfs/f0")), "x");
}

fn arch_image(arch: &str, variant: Option<&str>) -> Image {
    let mut l = base_entries();
    let tag: &'static str = Box::leak(
        format!(
            "{arch}{}",
            variant.map(|v| format!("/{v}")).unwrap_or_default()
        )
        .into_boxed_str(),
    );
    l.push(E::File("arch.txt", tag, 0o644));
    image(
        vec![(l, Comp::Gzip)],
        json!({"Cmd": ["cat", "/arch.txt"]}),
        arch,
        variant,
    )
}

#[test]
fn image_platforms_from_index_and_manifest_list() {
    let reg = Registry::start();
    let tmp = TempDir::new("img");
    let amd = arch_image("amd64", None);
    let arm = arch_image("arm64", Some("v8"));
    // An attestation manifest, as buildx attaches: unknown/unknown.
    let (att_layer, _) = layer(&[E::File("intoto.json", "{}", 0o644)], Comp::Plain);
    let att_cfg = Blob::new("application/vnd.oci.image.config.v1+json", b"{}".to_vec());
    let att = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": att_cfg.desc(), "layers": [att_layer.desc()]}),
        )
        .unwrap(),
    );
    // The attestation first: it must be skipped, not chosen.
    let oci_index = index_of(
        &[&amd, &arm],
        "application/vnd.oci.image.index.v1+json",
        Some(&att),
    );
    let mut blobs: Vec<&Blob> = vec![&oci_index, &att, &att_cfg, &att_layer];
    for i in [&amd, &arm] {
        blobs.extend([&i.config, &i.manifest]);
        blobs.extend(i.layers.iter());
    }
    write_layout(&tmp.join("layout"), &blobs, &[("multi", &oci_index)]);
    reg.push(&tmp.join("layout"), "multi", "test/oci-index", true, None);

    // A docker manifest list, pushed through the registry API with docker media types.
    let list_repo = "test/docker-list";
    let mut docker_ms = Vec::new();
    for i in [&amd, &arm] {
        reg.put_blob(list_repo, &i.config.data);
        let mut layers = Vec::new();
        for l in &i.layers {
            reg.put_blob(list_repo, &l.data);
            layers.push(
                json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                               "digest": l.digest, "size": l.data.len()}),
            );
        }
        let m = Blob::new(
            "application/vnd.docker.distribution.manifest.v2+json",
            serde_json::to_vec(&json!({"schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": i.config.digest, "size": i.config.data.len()},
                "layers": layers}))
            .unwrap(),
        );
        reg.put_manifest(list_repo, &m.digest, &m.media_type, &m.data);
        let mut d = m.desc();
        d["platform"] = i.platform();
        docker_ms.push(d);
    }
    let list_mt = "application/vnd.docker.distribution.manifest.list.v2+json";
    let list = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": list_mt, "manifests": docker_ms}),
    )
    .unwrap();
    reg.put_manifest(list_repo, "multi", list_mt, &list);

    let store = tmp.join("store");
    let store_s = store.to_str().unwrap();
    for repo in ["test/oci-index", list_repo] {
        let r = format!("{}/{repo}:multi", reg.host());
        let b = tmp.join(format!("{}-host", repo.replace('/', "-")));
        let s = pull_ok(&["--store", store_s, &r, b.to_str().unwrap()]);
        assert_eq!(s["platform"], "linux/amd64", "{s}");
        assert_eq!(read(&b.join("rootfs/arch.txt")), "amd64");
        assert!(run_bundle(&b).contains("amd64"));
        // arm64 implies variant v8.
        let b = tmp.join(format!("{}-arm", repo.replace('/', "-")));
        let out = pull_cmd(&[
            "--json",
            "--store",
            store_s,
            "--platform",
            "linux/arm64",
            &r,
            b.to_str().unwrap(),
        ]);
        out.ok();
        let s: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(s["platform"], "linux/arm64/v8", "{s}");
        // One line warns that it is not this host's platform.
        let warn: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(warn.len(), 1, "{out}");
        assert!(
            warn[0].contains("warning") && warn[0].contains("linux/arm64/v8"),
            "{out}"
        );
        assert_eq!(read(&b.join("rootfs/arch.txt")), "arm64/v8");
        // No match: the error lists what the image has, and nothing is left.
        let b = tmp.join("none");
        let out = pull_cmd(&[
            "--store",
            store_s,
            "--platform",
            "linux/s390x",
            &r,
            b.to_str().unwrap(),
        ]);
        assert_image_err(&out, &["linux/s390x", "linux/amd64, linux/arm64/v8"]);
        assert!(!b.exists());
    }
    let out = image_cmd(
        &[
            "inspect",
            "--store",
            store_s,
            "--platform",
            "linux/arm64",
            &format!("{}/test/oci-index:multi", reg.host()),
        ],
        &[],
    );
    out.ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["platform"], "linux/arm64/v8");
    assert!(
        v["index"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{v}"
    );
}

#[test]
fn image_token_auth() {
    let reg = Registry::start_token_auth();
    let tmp = TempDir::new("img");
    let img = arch_image("amd64", None);
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(
        &tmp.join("layout"),
        "v1",
        "public/app",
        false,
        Some("admin:secret"),
    );
    reg.push(
        &tmp.join("layout"),
        "v1",
        "private/app",
        false,
        Some("admin:secret"),
    );
    let store = tmp.join("store");
    let store_s = store.to_str().unwrap();
    let tokens = &reg.tokens.as_ref().unwrap().requests;
    tokens.lock().unwrap().clear();

    // Anonymous pull of a public repository goes through the 401 challenge.
    let pubref = format!("{}/public/app:v1", reg.host());
    let b = tmp.join("pub");
    pull_ok(&["--store", store_s, &pubref, b.to_str().unwrap()]);
    assert!(run_bundle(&b).contains("amd64"));
    let log = tokens.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| l == "anonymous repository:public/app:pull"),
        "{log:?}"
    );

    // A private repository needs credentials.
    let privref = format!("{}/private/app:v1", reg.host());
    let b = tmp.join("priv");
    let out = pull_cmd(&["--store", store_s, &privref, b.to_str().unwrap()]);
    assert_image_err(&out, &["denied", "authentication required"]);
    assert!(!b.exists());
    let out = pull_cmd(&[
        "--store",
        store_s,
        "--creds",
        "alice:wrong",
        &privref,
        b.to_str().unwrap(),
    ]);
    assert_image_err(&out, &["refused"]);
    assert!(!b.exists());
    pull_ok(&[
        "--store",
        store_s,
        "--creds",
        "alice:wonderland",
        &privref,
        b.to_str().unwrap(),
    ]);
    assert!(
        tokens
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "alice repository:private/app:pull")
    );

    // Credentials from a docker config.json: `auths`, or a docker-credential helper
    // (credsStore, or credHelpers for this registry, which wins; a failing one is named in
    // the error).
    let home = tmp.join("home");
    fs::create_dir_all(home.join(".docker")).unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "alice:wonderland",
    );
    let bin = tmp.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = |name: &str, body: &str| {
        let p = bin.join(format!("docker-credential-{name}"));
        fs::write(
            &p,
            format!("#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\n{body}\n"),
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    };
    helper(
        "store",
        &format!(
            "[ \"$server\" = {} ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
             echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"alice\",\"Secret\":\"wonderland\"}}'",
            reg.host()
        ),
    );
    helper("broken", "echo 'cannot reach the keyring' >&2; exit 1");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let env = [
        ("HOME", home.to_str().unwrap()),
        ("DOCKER_CONFIG", ""),
        ("PATH", path.as_str()),
    ];
    let pull_with = |cfg: Value, b: &str| {
        fs::write(home.join(".docker/config.json"), cfg.to_string()).unwrap();
        let b = tmp.join(b);
        let args = [
            "pull",
            "-q",
            "--store",
            store_s,
            &privref,
            b.to_str().unwrap(),
        ];
        (image_cmd(&args, &env), b)
    };
    let (out, b) = pull_with(json!({"auths": {reg.host(): {"auth": auth}}}), "priv2");
    out.ok();
    assert_eq!(read(&b.join("rootfs/arch.txt")), "amd64");

    let (out, b) = pull_with(json!({"credsStore": "store"}), "helper1");
    out.ok();
    assert_eq!(read(&b.join("rootfs/arch.txt")), "amd64");
    let (out, b) = pull_with(
        json!({"credsStore": "broken", "credHelpers": {reg.host(): "store"}}),
        "helper2",
    );
    out.ok();
    assert!(b.join("rootfs/arch.txt").is_file());
    let (out, b) = pull_with(json!({"credsStore": "broken"}), "helper3");
    assert_image_err(
        &out,
        &[
            "docker-credential-broken failed: cannot reach the keyring",
            "give --creds",
        ],
    );
    assert!(!b.exists());
}

fn hostile(reg: &Registry, tmp: &TempDir, name: &str, entries: Vec<E>) -> String {
    let mut l = base_entries();
    l.extend(entries);
    let img = image(
        vec![(l, Comp::Gzip)],
        json!({"Cmd": ["true"]}),
        "amd64",
        None,
    );
    let dir = tmp.join(format!("layout-{name}"));
    layout_of(&dir, &img, "v1");
    reg.push(&dir, "v1", &format!("hostile/{name}"), false, None);
    format!("{}/hostile/{name}:v1", reg.host())
}

#[test]
fn image_hostile_layers_are_refused() {
    let reg = Registry::start();
    let tmp = TempDir::new("img");
    let outside = TempDir::new("outside");
    let out_s: &'static str = Box::leak(
        outside
            .path()
            .to_str()
            .unwrap()
            .to_string()
            .into_boxed_str(),
    );
    let dotdot: &'static str =
        Box::leak(format!("../../../../../../..{out_s}/dotdot").into_boxed_str());
    let cases = vec![
        ("dotdot", vec![E::Raw(dotdot, "escaped")], "'..'"),
        (
            "absolute",
            vec![E::Raw(
                Box::leak(format!("{out_s}/abs").into_boxed_str()),
                "escaped",
            )],
            "absolute path",
        ),
        (
            "symlink",
            vec![
                E::Symlink("evil", out_s),
                E::File("evil/pwned", "escaped", 0o644),
            ],
            "outside the rootfs",
        ),
        (
            "hardlink",
            vec![
                E::Symlink("etcl", "/etc"),
                E::Hardlink("stolen", "etcl/hostname"),
            ],
            "outside the rootfs",
        ),
    ];
    let store = tmp.join("store");
    for (name, entries, want) in cases {
        let r = hostile(&reg, &tmp, name, entries);
        let b = tmp.join(format!("bundle-{name}"));
        let out = pull_cmd(&["--store", store.to_str().unwrap(), &r, b.to_str().unwrap()]);
        assert_image_err(&out, &[want]);
        assert!(!b.exists(), "{name}: the bundle was removed");
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{name}: nothing written outside"
        );
    }
}

#[test]
fn image_tampered_blob_unknown_tag_and_offline_sources() {
    let reg = Registry::start();
    let tmp = TempDir::new("img");
    let img = arch_image("amd64", None);
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", "test/tamper", false, None);
    let store = tmp.join("store");
    let store_s = store.to_str().unwrap();

    let unknown = format!("{}/test/tamper:nope", reg.host());
    let b = tmp.join("b");
    assert_image_err(
        &pull_cmd(&["--store", store_s, &unknown, b.to_str().unwrap()]),
        &[&format!("image {unknown} not found")],
    );
    assert!(!b.exists());

    // Same size, different bytes: the digest check must catch it.
    let layer = &img.layers[0];
    let data = reg.blob_data(&layer.digest);
    let mut bytes = fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    let out = pull_cmd(&[
        "--store",
        store_s,
        &format!("{}/test/tamper:v1", reg.host()),
        b.to_str().unwrap(),
    ]);
    let got = format!("sha256:{}", sha256_hex(&bytes));
    assert_image_err(&out, &["digest mismatch", &layer.digest, &got]);
    assert!(!b.exists(), "no partial bundle");
    let hex = layer.digest.trim_start_matches("sha256:");
    assert!(
        !store.join("blobs/sha256").join(hex).exists(),
        "no bad blob in the store"
    );
    assert_eq!(
        fs::read_dir(store.join("ingest")).unwrap().count(),
        0,
        "no partial download kept"
    );

    // oci:DIR:TAG.
    let b = tmp.join("oci");
    let s = pull_ok(&[
        "--store",
        store_s,
        &format!("oci:{}:v1", tmp.join("layout").display()),
        b.to_str().unwrap(),
    ]);
    assert_eq!(s["digest"], img.manifest.digest);
    assert!(run_bundle(&b).contains("amd64"));

    // oci-archive:FILE[:TAG]: a tar of the layout, as skopeo and buildah write it.
    let oar = tmp.join("layout.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(tmp.join("layout"))
        .arg("-cf")
        .arg(&oar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    for (i, src) in [
        format!("oci-archive:{}:v1", oar.display()),
        format!("oci-archive:{}", oar.display()),
    ]
    .iter()
    .enumerate()
    {
        let b = tmp.join(format!("ociar{i}"));
        let s = pull_ok(&["--store", store_s, src, b.to_str().unwrap()]);
        assert_eq!(s["digest"], img.manifest.digest);
        assert_eq!(s["ref"], src.as_str());
        assert_eq!(read(&b.join("rootfs/arch.txt")), "amd64");
    }
    assert_image_err(
        &pull_cmd(&[
            "--store",
            store_s,
            &format!("oci-archive:{}:nope", oar.display()),
            tmp.join("ociar-nope").to_str().unwrap(),
        ]),
        &["not found"],
    );
    assert_image_err(
        &pull_cmd(&[
            "--store",
            store_s,
            &format!("oci-archive:{}", tmp.join("saved-missing.tar").display()),
            tmp.join("ociar-missing").to_str().unwrap(),
        ]),
        &["saved-missing.tar"],
    );
    // With --json, the error is a JSON object on stdout.
    let missing = format!("oci-archive:{}", tmp.join("saved-missing.tar").display());
    let out = pull_cmd(&["--json", "--store", store_s, &missing, "/nonexistent/b"]);
    out.fails();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        v["error"].as_str().unwrap().contains("saved-missing.tar"),
        "{out}"
    );
    assert!(out.stderr.is_empty(), "{out}");

    // docker-archive:FILE, as `docker save` writes it (uncompressed layers).
    let (l, diff) = crate::image_support::layer(&base_entries_with("docker save"), Comp::Plain);
    let cfg = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["cat", "/arch.txt"]}, "rootfs": {"type": "layers", "diff_ids": [diff]}}))
    .unwrap();
    let cfg_name = format!("{}.json", sha256_hex(&cfg));
    let mut ar = tar::Builder::new(Vec::new());
    let mut add = |p: &str, d: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        ar.append_data(&mut h, p, d).unwrap();
    };
    add(&cfg_name, &cfg);
    add("abc123/layer.tar", &l.data);
    add(
        "manifest.json",
        json!([{"Config": cfg_name, "RepoTags": ["x:latest"], "Layers": ["abc123/layer.tar"]}])
            .to_string()
            .as_bytes(),
    );
    fs::write(tmp.join("saved.tar"), ar.into_inner().unwrap()).unwrap();
    let b = tmp.join("archive");
    pull_ok(&[
        "--store",
        store_s,
        &format!("docker-archive:{}", tmp.join("saved.tar").display()),
        b.to_str().unwrap(),
    ]);
    assert!(run_bundle(&b).contains("docker save"));
    let _ = Arc::new(HashMap::<u8, u8>::new());
}

fn base_entries_with(arch_txt: &'static str) -> Vec<E> {
    let mut l = base_entries();
    l.push(E::File("arch.txt", arch_txt, 0o644));
    l
}

/// A full filesystem, under the bundle or under the store, is named as such; the bundle
/// is removed and no partial blob enters the store.
#[test]
fn image_disk_full_is_named_and_leaves_nothing() {
    let reg = Registry::start();
    let tmp = TempDir::new("img");
    let img = arch_image("amd64", None);
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", "test/full", false, None);
    let r = format!("{}/test/full:v1", reg.host());
    // Small enough for neither the unpacked busybox nor its compressed layer.
    let small = tmp.join("small");
    fs::create_dir(&small).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64k"),
    )
    .expect("mount a small tmpfs");

    // A copied rootfs fills the bundle's file system (an overlay's upper would not).
    let store = tmp.join("store");
    let bundle = small.join("bundle");
    let out = pull_cmd(&[
        "--copy",
        "--store",
        store.to_str().unwrap(),
        &r,
        bundle.to_str().unwrap(),
    ]);
    assert_image_err(&out, &["disk full", "No space left on device"]);
    assert!(!bundle.exists(), "the failed bundle is removed");

    let small_store = small.join("store");
    let bundle = tmp.join("bundle");
    let out = pull_cmd(&[
        "--store",
        small_store.to_str().unwrap(),
        &r,
        bundle.to_str().unwrap(),
    ]);
    assert_image_err(&out, &["disk full", "blob"]);
    assert!(!bundle.exists(), "the failed bundle is removed");
    for e in fs::read_dir(small_store.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let hex = sha256_hex(&fs::read(e.path()).unwrap());
        assert_eq!(
            e.file_name().to_str().unwrap(),
            hex,
            "only whole, verified blobs in the store"
        );
    }
    assert_eq!(
        fs::read_dir(small_store.join("layers")).unwrap().count(),
        0,
        "no partly unpacked layer in the store"
    );
}
