//! Input checked at the edge: every command checks the container id before it builds a
//! path (runc's rule, "invalid container ID format"), and `delete` removes nothing corten
//! did not make.

use crate::common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};

/// A scratch area: `base/root` (the --root), `base/victim` (a sibling that must survive),
/// `base/work` (the cwd the runtime runs in). Every directory a hostile path can name
/// holds an invalid config.json, so neither `spec` nor `create` can succeed there.
struct Scratch {
    base: TempDir,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let base = TempDir::new(tag);
        for d in ["root", "victim", "work"] {
            fs::create_dir(base.join(d)).unwrap();
        }
        for d in [".", "root", "victim", "work"] {
            fs::write(base.join(d).join("config.json"), "{}").unwrap();
        }
        fs::write(base.join("victim/data"), "precious").unwrap();
        fs::write(base.join("root/keep"), "keep").unwrap();
        Scratch { base }
    }

    fn root(&self) -> String {
        self.base.join("root").to_string_lossy().into_owned()
    }

    fn victim(&self) -> String {
        self.base.join("victim").to_string_lossy().into_owned()
    }

    /// `RUNTIME --root ROOT ARGS...` from `base/work` (ARGS as given when they have their
    /// own --root).
    fn rt(&self, args: &[&str]) -> Out {
        let root = self.root();
        let mut full = vec!["--root", root.as_str()];
        if args.contains(&"--root") {
            full.clear();
        }
        full.extend_from_slice(args);
        rt_in(&self.base.join("work"), &full)
    }

    /// Every path under base with what it is (file content, link target, type).
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(self.base.path(), &mut out);
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let t = e.file_type().unwrap();
        let what = if t.is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if t.is_dir() {
            walk(&p, out);
            "dir".to_string()
        } else if t.is_socket() {
            "socket".to_string()
        } else {
            format!("file {:?}", fs::read_to_string(&p).unwrap_or_default())
        };
        out.insert(p, what);
    }
}

/// A failure as the project wants it: non-zero exit, exactly one line on stderr that
/// starts with "corten:", no control character in it, no panic.
fn one_clear_line(out: &Out) {
    assert!(
        !out.success() && out.code.is_some(),
        "should have failed:\n{out}"
    );
    assert_no_panic(out);
    let body = out.stderr.strip_suffix('\n').unwrap_or(&out.stderr);
    assert!(
        body.starts_with("corten: ") && !body.is_empty(),
        "stderr should be one line starting with 'corten: ':\n{out}"
    );
    assert!(
        !body.chars().any(|c| c.is_control()),
        "stderr should be one line without control characters:\n{out:?}"
    );
}

/// The commands that take a container id, with `ID` where it goes.
const ID_COMMANDS: &[&[&str]] = &[
    &["state", "ID"],
    &["start", "ID"],
    &["kill", "ID", "KILL"],
    &["kill", "-a", "ID", "KILL"],
    &["delete", "ID"],
    &["delete", "-f", "ID"],
    &["delete", "--force", "ID"],
    &["pause", "ID"],
    &["resume", "ID"],
    &["ps", "ID"],
    &["ps", "-f", "json", "ID"],
    &["events", "ID"],
    &["events", "--stats", "ID"],
    &["update", "--pids-limit", "10", "ID"],
    &["exec", "ID", "true"],
    &["exec", "-d", "ID", "true"],
    &["create", "--bundle", "BUNDLE", "ID"],
    &["run", "-d", "--bundle", "BUNDLE", "ID"],
];

/// Ids that name something outside the container's own directory under --root.
fn attack_ids(s: &Scratch) -> Vec<String> {
    vec![
        "../victim".into(),
        s.victim(),
        "".into(),
        ".".into(),
        "..".into(),
        "root/../../victim".into(),
        "a/b".into(),
        "victim/".into(),
    ]
}

#[test]
fn every_command_checks_the_id() {
    if is_runc() {
        return;
    }
    let s = Scratch::new("ids");
    // A real bundle, so that create/run would get as far as making the state dir.
    let c = sleeper("ids");
    c.write_config();
    let bundle = c.bundle_str();
    let before = s.snapshot();
    for id in attack_ids(&s) {
        for cmd in ID_COMMANDS {
            let args: Vec<&str> = cmd
                .iter()
                .map(|a| match *a {
                    "ID" => id.as_str(),
                    "BUNDLE" => bundle.as_str(),
                    other => other,
                })
                .collect();
            let out = s.rt(&args);
            one_clear_line(&out);
            assert!(
                out.stderr.contains("invalid container ID format"),
                "{args:?}: {out}"
            );
            assert_eq!(s.snapshot(), before, "{args:?} changed the files:\n{out}");
        }
    }
}

/// `delete` of a valid id removes a directory without state.json only if it is what a
/// killed `create` leaves: a real directory holding nothing but corten's own files.
#[test]
fn delete_removes_only_corten_state_dirs() {
    if is_runc() {
        return;
    }
    let s = Scratch::new("del-own");
    let root = s.base.join("root");
    // Someone else's directory in the root, and a link to the victim.
    fs::create_dir(root.join("notours")).unwrap();
    fs::write(root.join("notours/data"), "x").unwrap();
    symlink(s.base.join("victim"), root.join("link")).unwrap();
    symlink(s.base.join("victim/data"), root.join("filelink")).unwrap();
    let before = s.snapshot();
    for id in ["notours", "link", "filelink", "keep"] {
        for force in [false, true] {
            let mut args = vec!["delete"];
            if force {
                args.push("-f");
            }
            args.push(id);
            let out = s.rt(&args);
            one_clear_line(&out);
            assert_eq!(s.snapshot(), before, "{args:?} changed the files:\n{out}");
        }
    }
    // What a create killed early leaves: an empty dir, or the start socket and a state
    // file being written. `delete -f` removes them.
    fs::create_dir(root.join("empty")).unwrap();
    fs::create_dir(root.join("half")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(root.join("half/start.sock")).unwrap();
    fs::write(root.join("half/.state.json.123.tmp"), "{").unwrap();
    for id in ["empty", "half"] {
        s.rt(&["delete", "-f", id]).ok();
        assert!(!root.join(id).exists(), "{id} was not removed");
    }
    assert_eq!(s.snapshot(), before);
}
